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
