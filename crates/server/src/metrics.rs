//! `/metrics`: the SLO, backup and drill gauges of `pgdrill status` (the same text as
//! `status --prometheus`), plus the daemon's own: per task (a scheduled job: `task` is its
//! kind, since Prometheus owns the label `job`) and database the last success, the last
//! duration, whether it runs now and when it runs next, and counters of the runs since the
//! daemon started; per database the failed checks of the last drill and the bytes all
//! complete backups take in the store. Every series is listed in the README ("Metrics").

use crate::app::App;
use pgdrill_core::status;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, help: &str, rows: Vec<(String, f64)>) {
        self.typed(name, help, "gauge", rows);
    }

    fn counter(&mut self, name: &str, help: &str, rows: Vec<(String, f64)>) {
        self.typed(name, help, "counter", rows);
    }

    fn typed(&mut self, name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            if labels.is_empty() {
                self.0.push_str(&format!("{name} {v}\n"));
            } else {
                self.0.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        }
    }
}

pub fn render(app: &App) -> String {
    let now = app.clock.now();
    let dbs = app.state.dbs();
    let statuses: Vec<_> = dbs
        .iter()
        .map(|d| d.status(&app.policy, &app.drill_window, now))
        .collect();
    // The same gauges as `status --prometheus` first, then the daemon's own.
    let mut out = Out(status::prometheus(&statuses));
    let jobs = app.state.jobs();
    job_gauges(&mut out, &jobs);
    counters(&mut out, &jobs);
    database_gauges(&mut out, &dbs);
    store_gauges(&mut out, &statuses);
    if let Some(days) = app.coverage_days {
        coverage(&mut out, &dbs, days, now);
    }
    out.metric(
        "pgdrill_store_read_ok",
        "0 when the daemon's last read of the database's backups and drills failed.",
        dbs.iter()
            .map(|d| {
                (
                    db_label(d.name.as_str()),
                    if d.error.is_some() { 0.0 } else { 1.0 },
                )
            })
            .collect(),
    );
    out.0
}

/// The `database` label of a database's series.
fn db_label(name: &str) -> String {
    format!("database=\"{}\"", esc(name))
}

/// Per task and database: the last success, the last run's duration and verdict, whether
/// it runs now, and when it runs next.
fn job_gauges(out: &mut Out, jobs: &[crate::state::JobState]) {
    let job_labels = |j: &crate::state::JobState| {
        format!(
            "task=\"{}\",database=\"{}\"",
            j.key.kind.name(),
            esc(j.key.database_label())
        )
    };
    out.metric(
        "pgdrill_job_last_success_timestamp_seconds",
        "When the job last succeeded (backups and passing drills also from the store).",
        jobs.iter()
            .filter_map(|j| {
                j.last_success
                    .map(|t| (job_labels(j), t.as_second() as f64))
            })
            .collect(),
    );
    out.metric(
        "pgdrill_job_duration_seconds",
        "How long the job's last run in this daemon took.",
        jobs.iter()
            .filter_map(|j| j.last_duration_seconds.map(|s| (job_labels(j), s)))
            .collect(),
    );
    out.metric(
        "pgdrill_job_running",
        "1 while the job runs.",
        jobs.iter()
            .map(|j| (job_labels(j), j.running_since.map_or(0.0, |_| 1.0)))
            .collect(),
    );
    out.metric(
        "pgdrill_job_last_run_ok",
        "1 when the job's last run in this daemon succeeded, 0 when it failed.",
        jobs.iter()
            .filter_map(|j| {
                j.last_ok
                    .map(|ok| (job_labels(j), if ok { 1.0 } else { 0.0 }))
            })
            .collect(),
    );
    out.metric(
        "pgdrill_job_next_run_timestamp_seconds",
        "When the job runs next.",
        jobs.iter()
            .filter_map(|j| j.next_run.map(|t| (job_labels(j), t.as_second() as f64)))
            .collect(),
    );
}

/// Per database, from the daemon's store view: the last drill's failed checks and the bytes
/// of all its complete backups.
fn database_gauges(out: &mut Out, dbs: &[crate::state::DbData]) {
    out.metric(
        "pgdrill_check_failures",
        "Checks that failed in the last drill.",
        dbs.iter()
            .filter_map(|d| {
                d.drills.first().map(|r| {
                    let failed = r.checks.iter().filter(|c| !c.passed).count();
                    (db_label(d.name.as_str()), failed as f64)
                })
            })
            .collect(),
    );
    out.metric(
        "pgdrill_all_backups_stored_bytes",
        "Bytes all complete backups of the database take in the store (the newest alone: pgdrill_newest_backup_bytes).",
        dbs.iter()
            .map(|d| {
                let total: u64 = d.backups.iter().map(|m| m.stored_bytes).sum();
                (db_label(d.name.as_str()), total as f64)
            })
            .collect(),
    );
}

/// Several stores: each store's copies of each database (label `store`); no series with one
/// store (its statuses list no copies).
fn store_gauges(out: &mut Out, statuses: &[status::DbStatus]) {
    let copies: Vec<(String, &status::copies::StoreCopies)> = statuses
        .iter()
        .flat_map(|s| {
            s.stores.iter().map(move |c| {
                (
                    format!(
                        "database=\"{}\",store=\"{}\"",
                        esc(&s.database),
                        esc(&c.store)
                    ),
                    c,
                )
            })
        })
        .collect();
    out.metric(
        "pgdrill_store_backups",
        "Complete copies of the database's backups in the store (several stores).",
        copies
            .iter()
            .map(|(l, c)| (l.clone(), c.backups as f64))
            .collect(),
    );
    out.metric(
        "pgdrill_store_reachable",
        "1 when the store answered the daemon's last listing of the database, 0 when not (several stores).",
        copies
            .iter()
            .map(|(l, c)| (l.clone(), if c.reachable { 1.0 } else { 0.0 }))
            .collect(),
    );
    out.metric(
        "pgdrill_store_missing_copies",
        "Recent backups of the database the store has no complete copy of (several stores).",
        copies
            .iter()
            .map(|(l, c)| (l.clone(), c.missing.len() as f64))
            .collect(),
    );
}

/// Drill coverage (`[drill] coverage_days`): the fleet's share of databases proven by a
/// passing drill within the window, how many are overdue, and per database whether it is
/// (what `status` reports as the `drill_coverage` SLO, `pgdrill_core::fleet::coverage`).
fn coverage(
    out: &mut Out,
    dbs: &[crate::state::DbData],
    days: u64,
    now: pgdrill_core::time::Timestamp,
) {
    let last: Vec<_> = dbs
        .iter()
        .map(|d| {
            let passed = d
                .drills
                .iter()
                .filter(|r| r.passed())
                .filter_map(|r| pgdrill_core::time::parse(&r.started_at))
                .max();
            (d.name.clone(), passed)
        })
        .collect();
    let report = pgdrill_core::fleet::coverage::report(&last, days, now);
    let ratio = if report.total == 0 {
        1.0
    } else {
        report.proven as f64 / report.total as f64
    };
    out.metric(
        "pgdrill_drill_coverage_ratio",
        "Databases proven by a passing drill within [drill] coverage_days, of all (1 = every one).",
        vec![(String::new(), ratio)],
    );
    out.metric(
        "pgdrill_drill_coverage_overdue",
        "Databases without a passing drill within [drill] coverage_days.",
        vec![(String::new(), report.overdue.len() as f64)],
    );
    out.metric(
        "pgdrill_drill_coverage_proven",
        "1 when the database passed a drill within [drill] coverage_days, 0 when it is overdue.",
        last.iter()
            .map(|(name, _)| {
                let overdue = report.overdue.iter().any(|o| &o.database == name);
                (db_label(name.as_str()), if overdue { 0.0 } else { 1.0 })
            })
            .collect(),
    );
}

/// Runs this daemon finished since it started, by task and database: backups that
/// completed, drills by outcome, and failures of every task.
fn counters(out: &mut Out, jobs: &[crate::state::JobState]) {
    use crate::jobs::JobKind;
    let db = |j: &crate::state::JobState| db_label(j.key.database_label());
    out.counter(
        "pgdrill_backups_total",
        "Backups this daemon completed since it started.",
        jobs.iter()
            .filter(|j| j.key.kind == JobKind::Backup)
            .map(|j| (db(j), j.runs_ok as f64))
            .collect(),
    );
    out.counter(
        "pgdrill_drills_total",
        "Drills this daemon ran since it started, by outcome (pass or fail).",
        jobs.iter()
            .filter(|j| j.key.kind == JobKind::Drill)
            .flat_map(|j| {
                [
                    (format!("{},outcome=\"pass\"", db(j)), j.runs_ok as f64),
                    (format!("{},outcome=\"fail\"", db(j)), j.runs_failed as f64),
                ]
            })
            .collect(),
    );
    out.counter(
        "pgdrill_failures_total",
        "Failed runs of each task since the daemon started.",
        jobs.iter()
            .map(|j| {
                (
                    format!("task=\"{}\",{}", j.key.kind.name(), db(j)),
                    j.runs_failed as f64,
                )
            })
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DbData, State};
    use pgdrill_core::ids::{BackupId, DbName};
    use pgdrill_core::status::copies::Listed;
    use std::sync::Arc;

    #[test]
    fn per_store_series_carry_a_store_label() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = pgdrill_store::Store::open_folder(dir.path()).expect("store");
        let id = BackupId::parse("20261206T020000Z-aaaa").expect("id");
        let t = "2026-12-06T02:00:01Z".to_string();
        let db = DbData {
            name: DbName::parse("app").expect("db"),
            backups: Vec::new(),
            drills: Vec::new(),
            failure: None,
            failures: Vec::new(),
            damaged: Vec::new(),
            error: None,
            copies: vec![
                Listed {
                    store: "primary".into(),
                    complete: Ok(vec![(id.clone(), t)]),
                },
                Listed {
                    store: "offsite".into(),
                    complete: Err("connection refused".into()),
                },
            ],
        };
        let now = jiff::Timestamp::now();
        let app = App {
            state: Arc::new(State::new(Vec::new(), vec![db], now)),
            store,
            auth: Default::default(),
            tz: jiff::tz::TimeZone::UTC,
            tz_name: "UTC".into(),
            policy: Default::default(),
            drill_window: status::DrillWindow::Days(30),
            store_display: "x".into(),
            clock: Arc::new(crate::SystemClock),
            coverage_days: None,
        };
        let text = render(&app);
        assert!(
            !text.contains("pgdrill_drill_coverage"),
            "no coverage_days: {text}"
        );
        // With [drill] coverage_days: app never passed a drill, so it is overdue.
        let app = App {
            coverage_days: Some(30),
            ..app
        };
        let text = render(&app);
        for line in [
            "pgdrill_drill_coverage_ratio 0\n",
            "pgdrill_drill_coverage_overdue 1\n",
            "pgdrill_drill_coverage_proven{database=\"app\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        for line in [
            "pgdrill_store_backups{database=\"app\",store=\"primary\"} 1",
            "pgdrill_store_reachable{database=\"app\",store=\"offsite\"} 0",
            "pgdrill_store_missing_copies{database=\"app\",store=\"primary\"} 0",
            "pgdrill_slo_ok{database=\"app\",slo=\"backup_copies\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
