//! Time: one `Timestamp` type, and the one place times read from manifests, drill results
//! and records are parsed and formatted.
//!
//! pgdrill settles on **jiff**: schedules and retention need civil time in IANA zones with
//! DST rules (jiff bundles the tz database and resolves skipped or repeated local times
//! explicitly; chrono would need chrono-tz and its own DST handling), and jiff's
//! `Timestamp` is an instant with no time-zone type parameter to carry around. chrono was
//! used before; every format below writes what chrono wrote, byte for byte (the tests pin
//! the text), so stored files read and compare as they did.

pub use jiff::{SignedDuration, Timestamp};

/// An RFC 3339 time as manifests and drill results write it (`Z` or an offset); `None`
/// when it is not one.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// Whole seconds, UTC, `Z`: `2026-11-21T02:00:00Z` (what chrono's
/// `to_rfc3339_opts(SecondsFormat::Secs, true)` wrote; the fraction is cut, not rounded).
pub fn rfc3339_secs(t: Timestamp) -> String {
    format!("{t:.0}")
}

/// Milliseconds, UTC, `Z`: `2026-11-21T02:00:00.120Z`, always three digits (manifests' and
/// drill results' `started_at`/`finished_at`; chrono's `SecondsFormat::Millis`).
pub fn rfc3339_millis(t: Timestamp) -> String {
    format!("{t:.3}")
}

/// PostgreSQL's own spelling, UTC, milliseconds: `2026-11-21 02:00:00.120+00` (a
/// `recovery_target_time`, pgBackRest's `--target`).
pub fn pg_utc_millis(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S%.3f+00").to_string()
}

/// Seconds since the Unix epoch (pgBackRest's backup times, `extract(epoch from ...)`).
pub fn from_epoch_secs(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() {
        return None;
    }
    Timestamp::from_microsecond((secs * 1e6) as i64).ok()
}

/// A civil `YYYY-MM-DD HH:MM:SS` time (optionally followed by ` UTC`/` GMT`, as in a
/// `backup_label`) or a ctime (`Sun Dec  6 09:30:00 2026`, barman's listing), read as UTC;
/// `None` for another zone.
pub fn parse_civil_utc(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let bare = s
        .strip_suffix(" UTC")
        .or_else(|| s.strip_suffix(" GMT"))
        .unwrap_or(s);
    let civil = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", bare)
        .or_else(|_| {
            let squeezed = bare.split_whitespace().collect::<Vec<_>>().join(" ");
            jiff::civil::DateTime::strptime("%a %b %d %H:%M:%S %Y", &squeezed)
        })
        .ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Seconds from `earlier` to `later`, truncated toward zero (negative when `later` is
/// earlier).
pub fn seconds_between(earlier: Timestamp, later: Timestamp) -> i64 {
    later.duration_since(earlier).as_secs()
}

/// `t` moved by `secs` seconds (saturating at the ends of time).
pub fn add_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.saturating_add(SignedDuration::from_secs(secs))
        .unwrap_or(t)
}

/// The compact UTC second of backup, drill and snapshot ids and of S3 request dates:
/// `20261121T020000Z`.
pub fn compact_secs(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Reads [`compact_secs`] back: exactly `YYYYMMDDTHHMMSSZ` and a real UTC time.
pub fn parse_compact_secs(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
        return None;
    }
    parse(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    ))
}

/// An e-mail `Date`: `Sun, 6 Dec 2026 06:40:53 +0000` (chrono's `to_rfc2822` in UTC).
pub fn rfc2822(t: Timestamp) -> String {
    t.strftime("%a, %-d %b %Y %H:%M:%S +0000").to_string()
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

    /// As [`format`] with `+00:00` for `Z` (chrono's `to_rfc3339`, shown to people and written
    /// in key file comments).
    pub fn to_rfc3339(t: Timestamp) -> String {
        let text = format(t);
        format!("{}+00:00", text.strip_suffix('Z').unwrap_or(&text))
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        read::<D::Error>(&text)
    }

    fn read<E: serde::de::Error>(text: &str) -> Result<Timestamp, E> {
        super::parse(text).ok_or_else(|| E::custom(format!("{text:?} is not an RFC 3339 time")))
    }

    /// The same for an `Option<Timestamp>` (`null` when `None`); pair it with
    /// `#[serde(default)]` so a missing field still reads as `None`.
    pub mod option {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&super::format(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| super::read::<D::Error>(&text))
                .transpose()
        }
    }
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

/// `t` for people in `tz`, to the second, with the zone shown (`2026-11-21 03:00:00 CET`).
pub fn zoned(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `text` with every RFC 3339 time in it (`2026-12-06T04:00:00Z`, as status details and stored
/// messages write them) shown by [`zoned`]; the rest unchanged.
pub fn zoned_text(text: &str, tz: &jiff::tz::TimeZone) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match parse(word) {
            Some(t) if word.len() >= 20 && word.contains('T') => out.push_str(&zoned(t, tz)),
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
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
        assert_eq!(add_secs(a, 90), parse("2026-11-21T02:01:30Z").expect("c"));
        assert_eq!(
            add_secs(a, -86_400),
            parse("2026-11-20T02:00:00Z").expect("d")
        );
    }

    /// What chrono wrote for the same instants (its fractions are cut, never rounded).
    #[test]
    fn seconds_and_millis_write_what_chrono_wrote() {
        for (text, secs, millis) in [
            (
                "2026-12-06T06:40:53.999999999Z",
                "2026-12-06T06:40:53Z",
                "2026-12-06T06:40:53.999Z",
            ),
            (
                "2026-12-06T06:40:53Z",
                "2026-12-06T06:40:53Z",
                "2026-12-06T06:40:53.000Z",
            ),
            (
                "2026-12-06T06:40:53.12Z",
                "2026-12-06T06:40:53Z",
                "2026-12-06T06:40:53.120Z",
            ),
        ] {
            let t = parse(text).expect("t");
            assert_eq!(rfc3339_secs(t), secs);
            assert_eq!(rfc3339_millis(t), millis);
        }
        let t = parse("2026-12-06T06:40:53.5Z").expect("t");
        assert_eq!(
            chrono_compat::to_rfc3339(t),
            "2026-12-06T06:40:53.500+00:00"
        );
        assert_eq!(
            chrono_compat::to_rfc3339(parse("2026-12-06T06:40:53Z").expect("t")),
            "2026-12-06T06:40:53+00:00"
        );
    }

    #[test]
    fn compact_seconds_and_mail_dates() {
        let t = parse("2026-01-02T03:04:05.9Z").expect("t");
        assert_eq!(compact_secs(t), "20260102T030405Z");
        assert_eq!(
            parse_compact_secs("20260102T030405Z"),
            parse("2026-01-02T03:04:05Z")
        );
        for bad in [
            "20261321T020000Z",
            "20261121T020000",
            "2026-1121T020000Z",
            "20261121T0200000Z",
            "+2026112T020000Z",
            "",
        ] {
            assert!(parse_compact_secs(bad).is_none(), "{bad}");
        }
        assert_eq!(rfc2822(t), "Fri, 2 Jan 2026 03:04:05 +0000");
        let t = parse("2026-11-21T22:05:09Z").expect("t");
        assert_eq!(rfc2822(t), "Sat, 21 Nov 2026 22:05:09 +0000");
    }

    /// The texts chrono's serde wrote for these instants (checked against chrono 0.4.45
    /// before it was dropped).
    #[test]
    fn chrono_compat_writes_what_chrono_wrote() {
        for text in [
            "2026-12-06T06:40:53Z",
            "2026-12-06T06:40:53.120Z",
            "2026-12-06T06:40:53.000120Z",
            "2026-12-06T06:40:53.000000120Z",
            "2026-12-06T06:40:53.123456789Z",
        ] {
            let t = parse(text).expect("t");
            assert_eq!(chrono_compat::format(t), text);
            let json = serde_json::to_string(&Stamped { at: t, maybe: None }).expect("json");
            assert_eq!(json, format!(r#"{{"at":"{text}","maybe":null}}"#));
        }
        let read: Stamped = serde_json::from_str(
            r#"{"at":"2026-12-06T07:40:53+01:00","maybe":"2026-12-06T06:40:53.5Z"}"#,
        )
        .expect("read");
        assert_eq!(chrono_compat::format(read.at), "2026-12-06T06:40:53Z");
        assert_eq!(
            read.maybe.map(chrono_compat::format).as_deref(),
            Some("2026-12-06T06:40:53.500Z")
        );
        let missing: Stamped =
            serde_json::from_str(r#"{"at":"2026-12-06T06:40:53Z"}"#).expect("missing");
        assert_eq!(missing.maybe, None);
        assert!(serde_json::from_str::<Stamped>(r#"{"at":"yesterday"}"#).is_err());
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Stamped {
        #[serde(with = "chrono_compat")]
        at: Timestamp,
        #[serde(default, with = "chrono_compat::option")]
        maybe: Option<Timestamp>,
    }
}
