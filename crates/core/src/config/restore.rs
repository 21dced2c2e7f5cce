//! `[restore]`, typed at load: `maintenance_work_mem` is parsed once into a [`MemorySize`].

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestoreSection {
    pub jobs: Option<u32>,
    /// pg_restore error lines (substrings) that do not fail a restore.
    #[serde(default)]
    pub ignore_errors: Vec<String>,
    /// Extensions not to restore (with their comments and grants), e.g. an untrusted
    /// extension a non-superuser cannot create and the restore can go without.
    #[serde(default)]
    pub skip_extensions: Vec<String>,
    /// `maintenance_work_mem` of the restore's pg_restore sessions (index builds, foreign
    /// keys), e.g. `"1GB"`. Default: the server's setting.
    pub maintenance_work_mem: Option<String>,
}

/// `[restore]` as the restore reads it: `maintenance_work_mem` parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestoreSettings {
    pub jobs: Option<u32>,
    /// pg_restore error lines (substrings) that do not fail a restore.
    pub ignore_errors: Vec<String>,
    /// Extensions not to restore.
    pub skip_extensions: Vec<String>,
    /// `maintenance_work_mem` of the restore's pg_restore sessions; `None`: the server's.
    pub maintenance_work_mem: Option<MemorySize>,
}

impl RestoreSettings {
    /// Fails (exit 2, naming the key) when `maintenance_work_mem` is no memory size.
    pub fn from_section(s: &RestoreSection) -> Result<RestoreSettings> {
        let maintenance_work_mem = match &s.maintenance_work_mem {
            None => None,
            Some(v) => Some(MemorySize::parse(v).ok_or_else(|| {
                Error::Invalid(format!(
                    "[restore] maintenance_work_mem = \"{v}\" is not a PostgreSQL memory size: write it like \"512MB\" or \"2GB\""
                ))
            })?),
        };
        Ok(RestoreSettings {
            jobs: s.jobs,
            ignore_errors: s.ignore_errors.clone(),
            skip_extensions: s.skip_extensions.clone(),
            maintenance_work_mem,
        })
    }
}

/// A PostgreSQL memory size as a setting such as `maintenance_work_mem` takes it: digits and
/// a unit of kB, MB, GB or TB, or none for kB (anything else could not be passed to the
/// server safely). Kept as written, so the server gets exactly the configured text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySize(String);

impl MemorySize {
    pub fn parse(v: &str) -> Option<MemorySize> {
        let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &v[digits.len()..];
        let valid = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && ["", "kB", "MB", "GB", "TB"].contains(&unit);
        valid.then(|| MemorySize(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MemorySize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(v: &str) -> RestoreSection {
        RestoreSection {
            maintenance_work_mem: Some(v.to_string()),
            ..RestoreSection::default()
        }
    }

    #[test]
    fn maintenance_work_mem_must_be_a_memory_size() {
        for good in ["1GB", "2048", "512MB", "64kB", "1TB"] {
            let s = RestoreSettings::from_section(&section(good)).expect(good);
            assert_eq!(s.maintenance_work_mem.expect(good).as_str(), good);
        }
        let none = RestoreSettings::from_section(&RestoreSection::default()).expect("unset");
        assert_eq!(none.maintenance_work_mem, None);
        for bad in ["lots", "1 GB", "GB", "1.5GB", "-1MB", "1Gb", " 2048 ", ""] {
            let e = RestoreSettings::from_section(&section(bad)).expect_err(bad);
            assert!(matches!(e, Error::Invalid(_)), "{bad}: {e}");
            assert!(
                e.to_string()
                    .starts_with("[restore] maintenance_work_mem = "),
                "{e}"
            );
        }
    }
}
