use super::*;

fn policy() -> Policy {
    Policy {
        freshness_alert_minutes: Some(480),
        ..Policy::default()
    }
}

fn t(s: &str) -> Timestamp {
    time::parse(s).expect("time")
}

#[test]
fn no_backup_and_no_drill_violate_both_slos() {
    let s = evaluate(
        "app",
        &[],
        &[],
        None,
        &policy(),
        DrillWindow::CalendarMonth,
        t("2026-11-21T00:00:00Z"),
    );
    assert!(!s.ok());
    assert_eq!(s.slos.iter().filter(|x| !x.ok).count(), 2);
    let text = prometheus(&[s]);
    assert!(text.contains("pgdrill_slo_ok{database=\"app\",slo=\"backup_freshness\"} 0"));
    assert!(text.contains("# TYPE pgdrill_backups gauge"));
}

#[test]
fn drill_window_is_the_calendar_month_or_n_days() {
    let d = |verdict: &str, at: &str| {
        let mut r: DrillResult = serde_json::from_value(serde_json::json!({
                "schema_version": 1, "drill_id": "20261101T000000Z-0000", "database": "app", "verdict": verdict,
                "started_at": at, "finished_at": at, "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
                "backup": {"id": "x", "snapshot_time": at, "finished_at": at, "server_version": "15", "pg_dump_version": "15", "objects": []},
                "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
                "stages": [], "rpo": {"minutes": null, "target_minutes": null, "passed": null},
                "rto": {"minutes": null, "target_minutes": null, "passed": null}, "checks": [], "error": null, "policy": {}
            }))
            .expect("drill");
        r.verdict = serde_json::from_value(serde_json::json!(verdict)).expect("verdict");
        r
    };
    let now = t("2026-12-02T00:00:00Z");
    let last_month = vec![d("pass", "2026-11-30T00:00:00Z")];
    let s = evaluate(
        "app",
        &[],
        &last_month,
        None,
        &policy(),
        DrillWindow::CalendarMonth,
        now,
    );
    assert!(
        !s.slos
            .iter()
            .find(|x| x.name == "drill_freshness")
            .expect("slo")
            .ok
    );
    let s = evaluate(
        "app",
        &[],
        &last_month,
        None,
        &policy(),
        DrillWindow::Days(7),
        now,
    );
    assert!(
        s.slos
            .iter()
            .find(|x| x.name == "drill_freshness")
            .expect("slo")
            .ok
    );
    let failing_now = vec![
        d("fail", "2026-12-01T00:00:00Z"),
        d("pass", "2026-12-01T00:00:00Z"),
    ];
    let s = evaluate(
        "app",
        &[],
        &failing_now,
        None,
        &policy(),
        DrillWindow::CalendarMonth,
        now,
    );
    assert!(
        s.slos
            .iter()
            .find(|x| x.name == "drill_freshness")
            .expect("slo")
            .ok
    );
}

fn passing_drill(at: &str) -> DrillResult {
    serde_json::from_value(serde_json::json!({
        "schema_version": 1, "drill_id": "20261101T040000Z-0000", "database": "app", "verdict": "pass",
        "started_at": at, "finished_at": at, "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
        "backup": {"id": "x", "snapshot_time": at, "finished_at": at, "server_version": "15", "pg_dump_version": "15", "objects": []},
        "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
        "stages": [], "rpo": {"minutes": null, "target_minutes": null, "passed": null},
        "rto": {"minutes": null, "target_minutes": null, "passed": null}, "checks": [], "error": null, "policy": {}
    }))
    .expect("drill")
}

fn drill_slo(drills: &[DrillResult], window: &DrillWindow, now: &str) -> Slo {
    let s = evaluate("app", &[], drills, None, &policy(), window.clone(), t(now));
    s.slos
        .into_iter()
        .find(|x| x.name == "drill_freshness")
        .expect("slo")
}

#[test]
fn a_scheduled_drill_is_late_only_after_its_due_fire_time_and_grace() {
    let first_sunday = crate::schedule::Schedule::parse("first_sunday").expect("schedule");
    let window = DrillWindow::new(&policy(), Some(&first_sunday), &jiff::tz::TimeZone::UTC, 0);
    // November's drill passed on its first Sunday (2026-11-01, 04:00).
    let november = vec![passing_drill("2026-11-01T04:05:00Z")];
    // The 1st of December, before its first Sunday (the 6th): November's drill still counts
    // (the calendar month would call it late).
    let s = drill_slo(&november, &window, "2026-12-01T09:00:00Z");
    assert!(s.ok, "{}", s.detail);
    assert!(s.detail.contains("2026-11-01T04:00:00Z"), "{}", s.detail);
    assert!(
        !drill_slo(
            &november,
            &DrillWindow::CalendarMonth,
            "2026-12-01T09:00:00Z"
        )
        .ok
    );
    // The first Sunday itself, within the grace: still fine.
    assert!(drill_slo(&november, &window, "2026-12-06T20:00:00Z").ok);
    // Past the first Sunday and its grace with no drill since: violated.
    let s = drill_slo(&november, &window, "2026-12-08T00:00:00Z");
    assert!(!s.ok, "{}", s.detail);
    assert!(s.detail.contains("2026-12-06T04:00:00Z"), "{}", s.detail);
    // A drill that passed on that Sunday makes it fine again.
    let december = vec![passing_drill("2026-12-06T04:02:00Z")];
    assert!(drill_slo(&december, &window, "2026-12-08T00:00:00Z").ok);
    // Never drilled, a slot long due: violated.
    assert!(!drill_slo(&[], &window, "2026-12-01T09:00:00Z").ok);
    // The jitter widens the grace.
    let jittered = DrillWindow::new(
        &policy(),
        Some(&first_sunday),
        &jiff::tz::TimeZone::UTC,
        2 * 86_400,
    );
    assert!(drill_slo(&november, &jittered, "2026-12-08T00:00:00Z").ok);
}

#[test]
fn drill_window_without_a_schedule_keeps_the_calendar_month_or_max_age() {
    let utc = jiff::tz::TimeZone::UTC;
    assert!(matches!(
        DrillWindow::new(&policy(), None, &utc, 0),
        DrillWindow::CalendarMonth
    ));
    let off = crate::schedule::Schedule::parse("off").expect("off");
    assert!(matches!(
        DrillWindow::new(&policy(), Some(&off), &utc, 0),
        DrillWindow::CalendarMonth
    ));
    let sunday = crate::schedule::Schedule::parse("first_sunday").expect("schedule");
    let max_age = Policy {
        drill_max_age_days: Some(7),
        ..policy()
    };
    assert!(matches!(
        DrillWindow::new(&max_age, Some(&sunday), &utc, 0),
        DrillWindow::Days(7)
    ));
}
