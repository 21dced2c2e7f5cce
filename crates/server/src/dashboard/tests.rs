use super::section::zoned_times;
use super::tables::{drills_table, stores_table};
use super::*;

#[test]
fn escaping_and_units() {
    assert_eq!(
        esc("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
    assert_eq!(url_seg("a b/c"), "a%20b%2Fc");
    assert_eq!(bytes(1536.0), "1.5 KiB");
    assert_eq!(bytes(12.0), "12 B");
    assert_eq!(secs(30.0), "30 s");
    assert_eq!(secs(91.0), "1.5 min");
    assert_eq!(secs(600.0), "10 min");
    assert_eq!(ago(7200), "2.0 h ago");
    assert_eq!(ago(-120), "in 2 min");
    assert_eq!(short("abcdef", 4), "abc…");
    assert_eq!(short("abc", 4), "abc");
    assert_eq!(
        humane_text("backup b1 of app completed (20276229 bytes stored)"),
        "backup b1 of app completed (19.3 MiB stored)"
    );
    assert_eq!(
        humane_text("12 bytes, x3 bytes, 1.5 bytes"),
        "12 B, x3 bytes, 1.5 bytes"
    );
    assert_eq!(humane_text("no sizes"), "no sizes");
    let berlin = TimeZone::get("Europe/Berlin").expect("tz");
    assert_eq!(
        zoned_times(
            "last passing drill 2026-12-06T04:00:00Z (one this month)",
            &berlin
        ),
        "last passing drill 2026-12-06 05:00:00 CET (one this month)"
    );
}

#[test]
fn the_drills_table_names_what_made_the_backup() {
    let drill = |source: Option<&str>| -> pgdrill_core::drill::evidence::DrillResult {
        let mut v = serde_json::json!({
            "schema_version": 1, "drill_id": "20261206T040000Z-1", "database": "app",
            "verdict": "pass", "started_at": "2026-12-06T04:00:00Z",
            "finished_at": "2026-12-06T04:01:00Z",
            "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
            "backup": {"id": "20261121-020000F", "snapshot_time": "2026-12-06T02:00:00Z",
                       "finished_at": "2026-12-06T02:00:00Z", "server_version": "15.18",
                       "pg_dump_version": "n/a", "objects": []},
            "target": {"kind": "ephemeral", "url": "postgresql://x", "server_version": "15.18",
                       "kept": false},
            "stages": [], "rpo": {"minutes": 1.0, "target_minutes": null, "passed": null},
            "rto": {"minutes": 1.0, "target_minutes": null, "passed": null},
            "checks": [], "error": null, "policy": {}
        });
        if let Some(s) = source {
            v["source"] = s.into();
        }
        serde_json::from_value(v).expect("drill")
    };
    let d = DbData {
        name: pgdrill_core::ids::DbName::parse("app").expect("db"),
        backups: Vec::new(),
        drills: vec![drill(Some("pgbackrest")), drill(None)],
        failure: None,
        failures: Vec::new(),
        damaged: Vec::new(),
        error: None,
        copies: Vec::new(),
    };
    let mut h = String::new();
    drills_table(&mut h, &d, &TimeZone::UTC);
    assert!(h.contains("<th>Source</th>"), "{h}");
    assert!(h.contains("<td>pgbackrest</td>"), "{h}");
    // A result written before sources existed reads as pgdrill's own.
    assert!(h.contains("<td>pgdrill</td>"), "{h}");
}

#[test]
fn the_stores_table_names_the_store_missing_a_copy() {
    use pgdrill_core::ids::BackupId;
    use pgdrill_core::status::copies::Listed;
    let id = BackupId::parse("20261206T020000Z-aaaa").expect("id");
    let t = "2026-12-06T02:00:01Z".to_string();
    let d = DbData {
        name: pgdrill_core::ids::DbName::parse("app").expect("db"),
        backups: Vec::new(),
        drills: Vec::new(),
        failure: None,
        failures: Vec::new(),
        damaged: Vec::new(),
        error: None,
        copies: vec![
            Listed {
                store: "primary".into(),
                complete: Ok(vec![(id.clone(), t.clone())]),
            },
            Listed {
                store: "offsite".into(),
                complete: Ok(Vec::new()),
            },
            Listed {
                store: "local".into(),
                complete: Err("connection refused".into()),
            },
        ],
    };
    let now: Timestamp = "2026-12-06T03:00:00Z".parse().expect("now");
    let st = d.status(
        &pgdrill_core::config::Policy::default(),
        &pgdrill_core::status::DrillWindow::Days(30),
        now,
    );
    assert!(st.slos.iter().any(|s| s.name == "backup_copies" && !s.ok));
    let mut h = String::new();
    stores_table(&mut h, &st, &TimeZone::UTC);
    assert!(h.contains("<h3>Stores</h3>"), "{h}");
    assert!(h.contains("offsite") && h.contains("missing copies"), "{h}");
    assert!(h.contains(id.as_str()), "{h}");
    assert!(
        h.contains("unreachable") && h.contains("connection refused"),
        "{h}"
    );
}

/// A fleet larger than a page: every database has an overview line on every page, and
/// each one's full section is on exactly one page; a small fleet's page is unchanged.
#[test]
fn a_large_fleet_is_paged_and_every_database_is_on_one_page() {
    use crate::state::State;
    use pgdrill_core::ids::DbName;
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tmp");
    let store = pgdrill_store::Store::open_folder(dir.path()).expect("store");
    let app = |n: usize| {
        let dbs = (0..n)
            .map(|i| DbData {
                name: DbName::parse(&format!("db{i:03}")).expect("db"),
                backups: Vec::new(),
                drills: Vec::new(),
                failure: None,
                failures: Vec::new(),
                damaged: Vec::new(),
                error: None,
                copies: Vec::new(),
            })
            .collect();
        App {
            state: Arc::new(State::new(Vec::new(), dbs, Timestamp::now())),
            store: store.clone(),
            auth: Default::default(),
            tz: TimeZone::UTC,
            tz_name: "UTC".into(),
            policy: Default::default(),
            drill_window: pgdrill_core::status::DrillWindow::Days(30),
            store_display: "x".into(),
            clock: Arc::new(crate::SystemClock),
            coverage_days: None,
        }
    };
    let small = render(&app(3));
    assert!(small.contains("<title>pgdrill: db000, db001, db002</title>"));
    assert!(!small.contains("table class=fleet"));
    assert_eq!(small.matches("<section class=db id=\"db-").count(), 3);

    let n = PAGE_SIZE * 2 + 5;
    let fleet = app(n);
    let mut seen = Vec::new();
    for p in 1..=3 {
        let h = render_page(&fleet, &format!("page={p}"));
        assert!(h.contains(&format!("<title>pgdrill: {n} databases</title>")));
        assert_eq!(h.matches("<tr><td class=t><a href=\"/?page=").count(), n);
        for i in 0..n {
            if h.contains(&format!("<section class=db id=\"db-db{i:03}\">")) {
                seen.push(i);
                assert!(h.contains(&format!("<a href=\"/?page={p}#db-db{i:03}\">")));
            }
        }
    }
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // The first page by default; a page past the end is the last.
    assert_eq!(
        render(&fleet).matches("<section class=db id=\"db-").count(),
        PAGE_SIZE
    );
    assert!(render_page(&fleet, "page=99").contains("<section class=db id=\"db-db044\">"));
}
