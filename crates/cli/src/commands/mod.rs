pub mod backup;
pub mod catalog;
pub mod copy;
pub mod demo;
pub mod diff;
pub mod doctor;
pub mod drill;
pub mod init;
pub mod mirror;
pub mod operate;
pub mod restore;
pub mod serve;
pub mod target;

/// What a command produced: a JSON document for --json, and text for people.
pub struct Output {
    pub json: serde_json::Value,
    pub human: String,
    /// Non-zero when the command ran but its verdict is a failure (e.g. one of several
    /// backups failed); errors that stop a command are returned as `Err` instead.
    pub exit_code: u8,
}

impl Output {
    pub fn ok(json: serde_json::Value, human: String) -> Self {
        Output {
            json,
            human,
            exit_code: 0,
        }
    }
}

/// The version of every `--json` document's layout (`docs/schemas/`): bumped when a field is
/// renamed or removed, not when one is added.
pub const SCHEMA_VERSION: u64 = 1;

/// `doc` with a top-level `schema_version` (an object keeps its own when it has one, as a
/// drill's `result.json` does).
pub fn versioned(doc: serde_json::Value) -> serde_json::Value {
    match doc {
        serde_json::Value::Object(mut m) => {
            m.entry("schema_version")
                .or_insert(serde_json::json!(SCHEMA_VERSION));
            serde_json::Value::Object(m)
        }
        other => serde_json::json!({"schema_version": SCHEMA_VERSION, "result": other}),
    }
}

/// A stored RFC 3339 time for people: in `[schedule] timezone` (UTC by default), to the
/// second, with the zone shown (`2026-11-21 03:00:00 CET`). Text that is not a time is
/// returned as it is.
pub fn local_time(tz: &jiff::tz::TimeZone, text: &str) -> String {
    match pgdrill_core::time::parse(text) {
        Some(t) => pgdrill_core::time::zoned(t, tz),
        None => text.to_string(),
    }
}

/// `text` with every RFC 3339 time in it (`2026-12-06T04:00:00Z`, as the status details and
/// stored messages write them) shown as [`local_time`] does.
pub fn local_times_in(tz: &jiff::tz::TimeZone, text: &str) -> String {
    pgdrill_core::time::zoned_text(text, tz)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_inside_a_detail_are_shown_in_the_zone() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("tz");
        assert_eq!(
            super::local_times_in(
                &berlin,
                "newest backup 2026-11-21T02:00:00Z (3h ago), due by 2026-11-21T08:00:00.500Z"
            ),
            "newest backup 2026-11-21 03:00:00 CET (3h ago), due by 2026-11-21 09:00:00 CET"
        );
        assert_eq!(
            super::local_times_in(&berlin, "no backup; 12 of 20 ok"),
            "no backup; 12 of 20 ok"
        );
    }

    #[test]
    fn local_time_shows_the_configured_zone() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("tz");
        assert_eq!(
            super::local_time(&berlin, "2026-11-21T02:00:00.123Z"),
            "2026-11-21 03:00:00 CET"
        );
        assert_eq!(
            super::local_time(&jiff::tz::TimeZone::UTC, "2026-07-01T00:00:00Z"),
            "2026-07-01 00:00:00 UTC"
        );
        assert_eq!(super::local_time(&jiff::tz::TimeZone::UTC, "n/a"), "n/a");
    }
}
