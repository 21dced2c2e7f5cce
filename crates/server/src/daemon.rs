//! The daemon: binds the HTTP endpoint, catches up missed runs, runs jobs when they are
//! due (one exclusive job per database at a time), keeps the store view fresh, and on
//! shutdown lets running jobs finish within the grace before aborting them.
//!
//! [`run`] is the loop; `startup` builds the timetable, job states and HTTP app from the
//! configuration, `databases` adds discovered databases, applies drill coverage and keeps the
//! store view fresh, and `ending` records finished jobs and drains them at shutdown.

use crate::config::ServeConfig;
use crate::http;
use crate::jobs::{JobKey, JobOutcome, JobRunner};
use crate::log::{LogRecord, LogSink};
use crate::state::State;
use crate::timetable::{LastRun, Timetable};
use futures::stream::{FuturesUnordered, StreamExt};
use pgdrill_core::cancel::Cancel;
use pgdrill_core::config::Policy;
use pgdrill_core::ids::DbName;
use pgdrill_core::Result;
use pgdrill_store::Store;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod databases;
mod ending;
mod startup;
#[cfg(test)]
mod tests;

pub use crate::app::{Clock, SystemClock};

/// Longest the loop sleeps between rounds (the /healthz heartbeat).
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// How often the store view is re-read without a job having ended (other hosts' runs).
const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Databases whose store view is read at once.
const LOAD_AHEAD: usize = 8;
/// After the grace is over and jobs were told to abort, how long they get to clean up.
const ABORT_BOUND: Duration = Duration::from_secs(30);

pub struct Daemon<'a> {
    pub config: ServeConfig,
    pub store: Store,
    /// Every configured store, primary first, by name (empty or one: `store` alone), whose
    /// copies `/metrics`, the dashboard and the `backup_copies` SLO show.
    pub stores: Vec<(String, Store)>,
    /// The databases per-database jobs run for.
    pub databases: Vec<DbName>,
    pub policy: Policy,
    pub runner: &'a dyn JobRunner,
    /// Fires on SIGTERM/SIGINT: stop starting jobs, wait for the running ones, return.
    pub shutdown: Cancel,
    pub clock: Arc<dyn Clock>,
    /// Where the log lines go (the CLI renders them with their time to stderr).
    pub log: LogSink,
}

type Running<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = (JobKey, f64, JobOutcome)> + 'a>>>;

/// Runs until `shutdown` fires; returns once every job has ended (or was abandoned after
/// the abort bound) and the listener is closed.
pub async fn run(d: Daemon<'_>) -> Result<()> {
    startup::check_supported(&d)?;
    let listener = startup::bind(&d).await?;
    let now = d.clock.now();
    let dbs = startup::load_databases(&d).await;
    let mut table = Timetable::new(startup::scheduled_jobs(&d), d.config.tz.clone());
    let mut jitter = startup::jitter(d.config.jitter_seconds);
    table.start(
        now,
        |k| {
            startup::find(&dbs, k)
                .map(|x| x.last_run(k.kind))
                .unwrap_or(LastRun::Unknown)
        },
        &mut jitter,
    );
    let job_states = startup::job_states(&table, &dbs);
    startup::log_missed_runs(&d, &table, now);
    let state = Arc::new(State::new(job_states, dbs, now));
    let app = Arc::new(startup::app(&d, state.clone()));
    let addr = listener.local_addr().unwrap_or(d.config.listen);
    let http_task = tokio::spawn(http::serve(listener, app));
    let refresher = tokio::spawn(databases::refresh_loop(
        d.store.clone(),
        d.stores.clone(),
        state.clone(),
    ));
    (d.log)(&LogRecord::info(format!(
        "listening on http://{addr}/ ({} jobs, time zone {})",
        table.entries.len(),
        d.config.tz_name
    )));
    let (abort_handle, abort) = Cancel::new();
    let mut running: Running<'_> = FuturesUnordered::new();
    let mut running_keys: Vec<JobKey> = Vec::new();
    let mut shutdown = d.shutdown.clone();
    let mut discoveries: FuturesUnordered<crate::jobs::DiscoverFuture<'_>> =
        FuturesUnordered::new();
    let mut next_discovery = Instant::now() + d.config.discover_every;
    loop {
        let now = d.clock.now();
        if discoveries.is_empty() && Instant::now() >= next_discovery && !shutdown.is_cancelled() {
            discoveries.push(d.runner.discover());
            next_discovery = Instant::now() + d.config.discover_every;
        }
        state.beat(now);
        table.tick(now, &mut jitter);
        if let Some(max) = d.config.drill_coverage {
            databases::cover(&mut table, &state, &running_keys, max, &*d.log);
        }
        if !shutdown.is_cancelled() {
            let due = table.runnable(&running_keys);
            let jobs = Jobs {
                running: &mut running,
                keys: &mut running_keys,
            };
            start(&d, &mut table, &state, due, jobs, &abort, now);
        }
        for e in &table.entries {
            state.update_job(&e.key, |j| {
                j.next_run = e.next_start;
                j.pending = e.pending;
            });
        }
        let wait = table
            .next_wakeup()
            .map(|w| Duration::try_from(w.duration_since(now)).unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            Some(done) = running.next(), if !running.is_empty() => {
                if let Some(key) = ending::finish(&d, &state, &mut running_keys, done) {
                    let wait = (pgdrill_core::jobs::slot::lease_ttl() / 4).max(Duration::from_secs(1));
                    let at = d.clock.now() + jiff::SignedDuration::try_from(wait).unwrap_or_default();
                    table.retry(&key, at);
                }
            }
            Some(found) = discoveries.next(), if !discoveries.is_empty() => {
                if let Some(found) = found {
                    databases::add_databases(&d, &state, &mut table, found, now, &mut jitter);
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    ending::stop(&d, &state, &mut running, &mut running_keys, abort_handle).await;
    http_task.abort();
    refresher.abort();
    (d.log)(&LogRecord::info("stopped"));
    Ok(())
}

/// The jobs running now: their futures and their keys.
struct Jobs<'r, 'a> {
    running: &'r mut Running<'a>,
    keys: &'r mut Vec<JobKey>,
}

/// Starts the `due` jobs; each gets `abort`, which fires when the shutdown grace is over.
fn start<'a>(
    d: &Daemon<'a>,
    table: &mut Timetable,
    state: &State,
    due: Vec<JobKey>,
    jobs: Jobs<'_, 'a>,
    abort: &Cancel,
    now: jiff::Timestamp,
) {
    for key in due {
        let slot = table.entry(&key).and_then(|e| e.slot);
        table.started(&key);
        state.update_job(&key, |j| {
            j.running_since = Some(now);
            j.last_started = Some(now);
        });
        (d.log)(&LogRecord::info(format!("{key} started")).job(&key));
        jobs.keys.push(key.clone());
        let (runner, cancel) = (d.runner, abort.clone());
        jobs.running.push(Box::pin(async move {
            let t = Instant::now();
            let out = runner.run(&key, slot, cancel).await;
            (key, t.elapsed().as_secs_f64(), out)
        }));
    }
}
