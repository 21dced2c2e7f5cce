//! Time: one `Timestamp` type, and the one place times read from manifests, drill results
//! and records are parsed and formatted.
//!
//! pgdrill settles on **jiff**: schedules and retention need civil time in IANA zones with
//! DST rules (jiff bundles the tz database and resolves skipped or repeated local times
//! explicitly; chrono would need chrono-tz and its own DST handling), and jiff's
//! `Timestamp` is an instant with no time-zone type parameter to carry around. chrono remains
//! only behind the conversions below, where a stored format depends on its serde
//! (`last_failure.json`, leases, alert de-dup state, mirror snapshots: byte-identical
//! output), until those fields get a serde adapter of their own.

pub use jiff::Timestamp;

/// An RFC 3339 time as manifests and drill results write it (`Z` or an offset); `None`
/// when it is not one.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// Whole seconds, UTC, `Z`: `2026-11-21T02:00:00Z` (what chrono's
/// `to_rfc3339_opts(SecondsFormat::Secs, true)` wrote).
pub fn rfc3339_secs(t: Timestamp) -> String {
    format!("{t:.0}")
}

/// Seconds from `earlier` to `later`, truncated toward zero (negative when `later` is
/// earlier).
pub fn seconds_between(earlier: Timestamp, later: Timestamp) -> i64 {
    later.duration_since(earlier).as_secs()
}

/// Serde for a `Timestamp` field that chrono's `DateTime<Utc>` wrote before: RFC 3339 in UTC
/// with `Z`, and 0, 3, 6 or 9 fractional digits, the fewest that hold the nanoseconds
/// (chrono's `SecondsFormat::AutoSi`), so the stored text stays byte-identical.
pub mod chrono_compat {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: Timestamp) -> String {
        let nanos = t.subsec_nanosecond();
        let digits = if nanos == 0 {
            0
        } else if nanos % 1_000_000 == 0 {
            3
        } else if nanos % 1_000 == 0 {
            6
        } else {
            9
        };
        format!("{t:.digits$}")
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

/// The instant a chrono time stands for (for the records that still serialise with chrono).
pub fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The same instant as a chrono time (for the drill's and mirror's arithmetic, not yet moved).
pub fn to_chrono(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// A duration for people: `0.4s`, `29m42s`, `2h05m`.
pub fn human_secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_like_the_stored_times() {
        let t = parse("2026-11-21T02:00:00.123+01:00").expect("offset");
        assert_eq!(rfc3339_secs(t), "2026-11-21T01:00:00Z");
        assert_eq!(
            parse("2026-11-21T02:00:00Z").map(rfc3339_secs).as_deref(),
            Some("2026-11-21T02:00:00Z")
        );
        assert!(parse("yesterday").is_none());
        let a = parse("2026-11-21T02:00:00Z").expect("a");
        let b = parse("2026-11-21T02:00:01.900Z").expect("b");
        assert_eq!(seconds_between(a, b), 1);
        assert_eq!(seconds_between(b, a), -1);
        let c = chrono::DateTime::parse_from_rfc3339("2026-11-21T02:00:01.900Z")
            .expect("chrono")
            .with_timezone(&chrono::Utc);
        assert_eq!(from_chrono(c), b);
        assert_eq!(to_chrono(b), c);
    }

    #[test]
    fn chrono_compat_writes_what_chrono_wrote() {
        for text in [
            "2026-12-06T06:40:53Z",
            "2026-12-06T06:40:53.120Z",
            "2026-12-06T06:40:53.000120Z",
            "2026-12-06T06:40:53.000000120Z",
            "2026-12-06T06:40:53.123456789Z",
        ] {
            let c = chrono::DateTime::parse_from_rfc3339(text)
                .expect("chrono")
                .with_timezone(&chrono::Utc);
            let by_chrono = serde_json::to_string(&c).expect("chrono json");
            let ours = format!("\"{}\"", chrono_compat::format(from_chrono(c)));
            assert_eq!(ours, by_chrono, "{text}");
        }
    }
}
