//! Backup and drill ids: UTC time plus a short random suffix, so ids sort by time and two
//! hosts starting together never collide (`20261121T020000Z-7f3a`).

use crate::time::{self, Timestamp};
use rand::Rng;
use std::fmt;

/// Splits `schema.table` (default schema `public`), unquoting each part.
pub fn split_table(t: &str) -> (String, String) {
    match t.split_once('.') {
        Some((s, n)) => (
            s.trim_matches('"').to_string(),
            n.trim_matches('"').to_string(),
        ),
        None => ("public".to_string(), t.trim_matches('"').to_string()),
    }
}

macro_rules! time_id {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(at: Timestamp) -> Self {
                let suffix: u16 = rand::thread_rng().gen();
                $name(format!("{}-{:04x}", time::compact_secs(at), suffix))
            }

            pub fn parse(s: &str) -> Result<Self, String> {
                let (time, suffix) = s
                    .split_once('-')
                    .ok_or_else(|| format!("{s:?} is not a {} id (like 20261121T020000Z-7f3a)", $what))?;
                let ok_suffix = suffix.len() == 4 && suffix.chars().all(|c| c.is_ascii_hexdigit());
                if time::parse_compact_secs(time).is_none() || !ok_suffix {
                    return Err(format!("{s:?} is not a {} id (like 20261121T020000Z-7f3a)", $what));
                }
                Ok($name(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The time encoded in the id.
            pub fn time(&self) -> Option<Timestamp> {
                let time = self.0.split('-').next()?;
                time::parse_compact_secs(time)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

time_id!(BackupId, "backup");
time_id!(DrillId, "drill");
time_id!(SnapshotId, "snapshot");

/// A database's name in the store: a safe single path segment.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DbName(String);

impl DbName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(DbName(s.to_string()))
        } else {
            Err(format!(
                "{s:?} cannot name a database in the store: use letters, digits, '-', '_' or '.' (set name = \"...\")"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DbName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DbName::parse(&s)
    }
}

impl From<DbName> for String {
    fn from(n: DbName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = BackupId::new(time::parse("2026-11-21T02:00:00Z").expect("t"));
        let b = BackupId::new(time::parse("2026-11-21T08:00:00Z").expect("t"));
        assert!(a < b);
        assert!(a.as_str().starts_with("20261121T020000Z-"));
        assert_eq!(BackupId::parse(a.as_str()).expect("parse"), a);
        assert_eq!(a.time(), time::parse("2026-11-21T02:00:00Z"));
        let d = DrillId::new(time::parse("2026-01-02T03:04:05Z").expect("t"));
        let (time, suffix) = d.as_str().split_once('-').expect("suffix");
        assert_eq!(time, "20260102T030405Z");
        assert!(suffix.len() == 4 && suffix.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(
            BackupId::parse("20261321T020000Z-7f3a").is_err(),
            "month 13"
        );
        assert!(BackupId::parse("20261121T020000-7f3a").is_err());
        assert!(BackupId::parse("latest").is_err());
        assert!(BackupId::parse("20261121T020000Z-zzzz").is_err());
    }

    #[test]
    fn db_names_are_single_safe_segments() {
        assert!(DbName::parse("app_prod-1").is_ok());
        for bad in ["", "..", "a/b", "a b", "ü"] {
            assert!(DbName::parse(bad).is_err(), "{bad}");
        }
    }
}
