//! Start-up: what the daemon checks and reads once before its loop, and the timetable, job
//! states and HTTP app it builds from its configuration.

use super::{Daemon, LOAD_AHEAD};
use crate::app::App;
use crate::jobs::{JobKey, JobKind};
use crate::log::LogRecord;
use crate::schedule::Schedule;
use crate::state::{self, DbData, JobState, State};
use crate::timetable::Timetable;
use futures::stream::StreamExt;
use pgdrill_core::{Error, Result};
use std::sync::Arc;

/// Refuses a schedule for a kind of job this build cannot run.
pub(super) fn check_supported(d: &Daemon<'_>) -> Result<()> {
    for (kind, _) in &d.config.schedules {
        if !d.runner.supports(*kind) {
            return Err(Error::Invalid(format!(
                "schedule.{} is set, but this build cannot run {} jobs: remove the key",
                kind.name(),
                kind.name()
            )));
        }
    }
    Ok(())
}

pub(super) async fn bind(d: &Daemon<'_>) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(d.config.listen)
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot listen on {}: {e} (pick another address with --listen)",
                d.config.listen
            ))
        })
}

/// The store view of every configured database, a few at once (the store's round trips
/// overlap); a database that cannot be read is logged and kept with its error.
pub(super) async fn load_databases(d: &Daemon<'_>) -> Vec<DbData> {
    let dbs: Vec<DbData> = futures::stream::iter(&d.databases)
        .map(|name| state::load_all(&d.stores, &d.store, name, None))
        .buffered(LOAD_AHEAD)
        .collect()
        .await;
    for db in dbs.iter().filter(|x| x.error.is_some()) {
        (d.log)(&LogRecord {
            database: Some(db.name.to_string()),
            ..LogRecord::warn(format!(
                "{}: {}",
                db.name,
                db.error.as_deref().unwrap_or_default()
            ))
        });
    }
    dbs
}

/// One job per schedule and database (a mirror job is one for the whole store).
pub(super) fn scheduled_jobs(d: &Daemon<'_>) -> Vec<(JobKey, Schedule)> {
    let mut jobs = Vec::new();
    for (kind, schedule) in &d.config.schedules {
        if *kind == JobKind::Mirror {
            jobs.push((
                JobKey {
                    kind: *kind,
                    database: None,
                },
                schedule.clone(),
            ));
        } else {
            for db in &d.databases {
                let key = JobKey {
                    kind: *kind,
                    database: Some(db.clone()),
                };
                jobs.push((key, schedule.clone()));
            }
        }
    }
    jobs
}

/// A random delay of up to `max` seconds added to each fire time (none for 0).
pub(super) fn jitter(max: u64) -> impl FnMut() -> u64 {
    move || {
        if max == 0 {
            0
        } else {
            rand::random::<u64>() % (max + 1)
        }
    }
}

/// A job as the daemon starts out knowing it: no run of its own yet.
pub(super) fn new_job_state(key: JobKey, schedule: &Schedule) -> JobState {
    JobState {
        key,
        schedule: schedule.to_string(),
        next_run: None,
        pending: false,
        running_since: None,
        last_started: None,
        last_duration_seconds: None,
        last_ok: None,
        last_summary: None,
        last_success: None,
        runs_ok: 0,
        runs_failed: 0,
    }
}

/// The state of every job in `table` once it has started, with each job's last success as
/// the store shows it.
pub(super) fn job_states(table: &Timetable, dbs: &[DbData]) -> Vec<JobState> {
    table
        .entries
        .iter()
        .map(|e| JobState {
            next_run: e.next_start,
            pending: e.pending,
            last_success: find(dbs, &e.key).and_then(|x| x.last_success(e.key.kind)),
            ..new_job_state(e.key.clone(), &e.schedule)
        })
        .collect()
}

/// The store view of a job's database.
pub(super) fn find<'a>(dbs: &'a [DbData], key: &JobKey) -> Option<&'a DbData> {
    dbs.iter().find(|x| Some(&x.name) == key.database.as_ref())
}

/// Logs each job that start-up found due because the store's last run is too old.
pub(super) fn log_missed_runs(d: &Daemon<'_>, table: &Timetable, now: jiff::Timestamp) {
    for e in table
        .entries
        .iter()
        .filter(|e| e.pending && e.key.kind != JobKind::Status)
    {
        (d.log)(&LogRecord::info(format!(
            "{} missed a scheduled run (the store's last one is older than {}); running it once now",
            e.key,
            e.schedule
                .prev_at_or_before(now, &d.config.tz)
                .map(|t| t.to_string())
                .unwrap_or_default()
        )).job(&e.key));
    }
}

/// What the HTTP endpoint serves from.
pub(super) fn app(d: &Daemon<'_>, state: Arc<State>) -> App {
    App {
        state,
        store: d.store.clone(),
        auth: d.config.auth.clone(),
        tz: d.config.tz.clone(),
        tz_name: d.config.tz_name.clone(),
        policy: d.policy.clone(),
        drill_window: pgdrill_core::status::DrillWindow::new(
            &d.policy,
            d.config
                .schedules
                .iter()
                .find(|(k, _)| *k == JobKind::Drill)
                .map(|(_, s)| s),
            &d.config.tz,
            d.config.jitter_seconds,
        ),
        store_display: d.store.display().to_string(),
        clock: d.clock.clone(),
    }
}
