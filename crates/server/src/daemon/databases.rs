//! The daemon's databases beyond start-up: adding those a discovery finds, choosing which
//! pending drills run under drill coverage, and re-reading the store view.

use super::startup::new_job_state;
use super::{Daemon, LOAD_AHEAD, REFRESH_EVERY};
use crate::jobs::{JobKey, JobKind};
use crate::log::LogRecord;
use crate::state::{self, DbData, JobState, State};
use crate::timetable::Timetable;
use futures::stream::StreamExt;
use pgdrill_core::ids::DbName;
use pgdrill_store::Store;
use std::sync::Arc;

/// Schedules the per-database jobs of databases a discovery found that have none yet; they
/// run from their schedules' next fire time on.
pub(super) fn add_databases(
    d: &Daemon<'_>,
    state: &State,
    table: &mut Timetable,
    found: Vec<DbName>,
    now: jiff::Timestamp,
    jitter: &mut dyn FnMut() -> u64,
) {
    let known: Vec<DbName> = state.dbs().into_iter().map(|x| x.name).collect();
    for name in found.into_iter().filter(|n| !known.contains(n)) {
        let mut jobs = Vec::new();
        for (kind, schedule) in d
            .config
            .schedules
            .iter()
            .filter(|(k, _)| *k != JobKind::Mirror)
        {
            let key = JobKey {
                kind: *kind,
                database: Some(name.clone()),
            };
            table.add(key.clone(), schedule.clone(), now, jitter);
            jobs.push(JobState {
                next_run: table.entry(&key).and_then(|e| e.next_start),
                ..new_job_state(key, schedule)
            });
        }
        (d.log)(&LogRecord::info(format!(
            "{name} discovered; its jobs are scheduled"
        )));
        state.add_database(
            DbData {
                name,
                backups: Vec::new(),
                drills: Vec::new(),
                failure: None,
                failures: Vec::new(),
                damaged: Vec::new(),
                error: None,
                copies: Vec::new(),
            },
            jobs,
        );
    }
    state.refresh.notify_one();
}

/// Drill coverage: of the databases whose drill is pending, only the least recently proven
/// ones (at most `max` drills running at once) keep their turn.
pub(super) fn cover(
    table: &mut Timetable,
    state: &State,
    running: &[JobKey],
    max: usize,
    log: &(dyn Fn(&LogRecord) + Send + Sync),
) {
    let pending = table.pending_of(JobKind::Drill);
    if pending.is_empty() {
        return;
    }
    let dbs = state.dbs();
    let last: Vec<_> = pending
        .iter()
        .map(|name| {
            let t = dbs.iter().find(|x| &x.name == name).and_then(|x| {
                x.drills
                    .iter()
                    .filter(|r| r.passed())
                    .filter_map(|r| pgdrill_core::time::parse(&r.started_at))
                    .max()
            });
            (name.clone(), t)
        })
        .collect();
    let busy = running.iter().filter(|k| k.kind == JobKind::Drill).count();
    let chosen = pgdrill_core::fleet::coverage::pick(&last, max.saturating_sub(busy));
    let passed = table.keep_pending(JobKind::Drill, &chosen);
    if !passed.is_empty() {
        log(&LogRecord::info(format!(
            "drill coverage: drilling {} this slot; {} wait for a later slot",
            if chosen.is_empty() {
                "none".to_string()
            } else {
                chosen
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            passed.len()
        )));
    }
}

/// Re-reads the store view after each job and every few minutes.
pub(super) async fn refresh_loop(store: Store, stores: Vec<(String, Store)>, state: Arc<State>) {
    loop {
        tokio::select! {
            _ = state.refresh.notified() => {}
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
        }
        let previous = state.dbs();
        let fresh: Vec<DbData> = futures::stream::iter(previous)
            .map(|prev| {
                let (store, stores) = (store.clone(), stores.clone());
                async move { state::load_all(&stores, &store, &prev.name, Some(&prev)).await }
            })
            .buffered(LOAD_AHEAD)
            .collect()
            .await;
        state.set_dbs(fresh);
    }
}
