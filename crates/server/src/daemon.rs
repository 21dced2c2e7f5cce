//! The daemon: binds the HTTP endpoint, catches up missed runs, runs jobs when they are
//! due (one exclusive job per database at a time), keeps the store view fresh, and on
//! shutdown lets running jobs finish within the grace before aborting them.

use crate::app::App;
use crate::config::ServeConfig;
use crate::http;
use crate::jobs::{JobKey, JobKind, JobOutcome, JobRunner};
use crate::log::{Level, LogRecord, LogSink};
use crate::state::{self, DbData, JobState, State};
use crate::timetable::Timetable;
use futures::stream::{FuturesUnordered, StreamExt};
use pgdrill_core::cancel::Cancel;
use pgdrill_core::config::Policy;
use pgdrill_core::ids::DbName;
use pgdrill_core::{Error, Result};
use pgdrill_store::Store;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    for (kind, _) in &d.config.schedules {
        if !d.runner.supports(*kind) {
            return Err(Error::Invalid(format!(
                "schedule.{} is set, but this build cannot run {} jobs: remove the key",
                kind.name(),
                kind.name()
            )));
        }
    }
    let listener = tokio::net::TcpListener::bind(d.config.listen)
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot listen on {}: {e} (pick another address with --listen)",
                d.config.listen
            ))
        })?;
    let now = d.clock.now();
    // A fleet's databases, a few at once (the store's round trips overlap).
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
    let mut table = Timetable::new(jobs, d.config.tz.clone());
    let find = |k: &JobKey| dbs.iter().find(|x| Some(&x.name) == k.database.as_ref());
    let jitter_max = d.config.jitter_seconds;
    let mut jitter = move || {
        if jitter_max == 0 {
            0
        } else {
            rand::random::<u64>() % (jitter_max + 1)
        }
    };
    table.start(
        now,
        |k| {
            find(k)
                .map(|x| x.last_run(k.kind))
                .unwrap_or(crate::timetable::LastRun::Unknown)
        },
        &mut jitter,
    );
    let job_states: Vec<JobState> = table
        .entries
        .iter()
        .map(|e| JobState {
            key: e.key.clone(),
            schedule: e.schedule.to_string(),
            next_run: e.next_start,
            pending: e.pending,
            running_since: None,
            last_started: None,
            last_duration_seconds: None,
            last_ok: None,
            last_summary: None,
            last_success: find(&e.key).and_then(|x| x.last_success(e.key.kind)),
            runs_ok: 0,
            runs_failed: 0,
        })
        .collect();
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
    let state = Arc::new(State::new(job_states, dbs, now));
    let app = Arc::new(App {
        state: state.clone(),
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
    });
    let addr = listener.local_addr().unwrap_or(d.config.listen);
    let http_task = tokio::spawn(http::serve(listener, app));
    let refresher = tokio::spawn(refresh_loop(
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
            cover(&mut table, &state, &running_keys, max, &*d.log);
        }
        let startable = if shutdown.is_cancelled() {
            Vec::new()
        } else {
            table.runnable(&running_keys)
        };
        for key in startable {
            let slot = table.entry(&key).and_then(|e| e.slot);
            table.started(&key);
            state.update_job(&key, |j| {
                j.running_since = Some(now);
                j.last_started = Some(now);
            });
            (d.log)(&LogRecord::info(format!("{key} started")).job(&key));
            running_keys.push(key.clone());
            let (runner, cancel) = (d.runner, abort.clone());
            running.push(Box::pin(async move {
                let t = Instant::now();
                let out = runner.run(&key, slot, cancel).await;
                (key, t.elapsed().as_secs_f64(), out)
            }));
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
                if let Some(key) = finish(&d, &state, &mut running_keys, done) {
                    let wait = (pgdrill_core::jobs::slot::lease_ttl() / 4).max(Duration::from_secs(1));
                    let at = d.clock.now() + jiff::SignedDuration::try_from(wait).unwrap_or_default();
                    table.retry(&key, at);
                }
            }
            Some(found) = discoveries.next(), if !discoveries.is_empty() => {
                if let Some(found) = found {
                    add_databases(&d, &state, &mut table, found, now, &mut jitter);
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    state.set_stopping();
    if !running.is_empty() {
        (d.log)(&LogRecord::info(format!(
            "stopping; waiting up to {}s for {} running job(s)",
            d.config.shutdown_grace.as_secs(),
            running.len()
        )));
    }
    let drained = drain(
        &d,
        &state,
        &mut running,
        &mut running_keys,
        d.config.shutdown_grace,
    )
    .await;
    if !drained {
        (d.log)(&LogRecord::warn(
            "the shutdown grace is over; aborting the running job(s)",
        ));
        abort_handle.cancel();
        if !drain(&d, &state, &mut running, &mut running_keys, ABORT_BOUND).await {
            (d.log)(&LogRecord::new(
                Level::Error,
                "a job did not stop after it was aborted; leaving it behind",
            ));
        }
    }
    http_task.abort();
    refresher.abort();
    (d.log)(&LogRecord::info("stopped"));
    Ok(())
}

/// Schedules the per-database jobs of databases a discovery found that have none yet; they
/// run from their schedules' next fire time on.
fn add_databases(
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
                key: key.clone(),
                schedule: schedule.to_string(),
                next_run: table.entry(&key).and_then(|e| e.next_start),
                pending: false,
                running_since: None,
                last_started: None,
                last_duration_seconds: None,
                last_ok: None,
                last_summary: None,
                last_success: None,
                runs_ok: 0,
                runs_failed: 0,
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
fn cover(
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

/// Waits up to `bound` for every running job; false when some are still running.
async fn drain(
    d: &Daemon<'_>,
    state: &State,
    running: &mut Running<'_>,
    keys: &mut Vec<JobKey>,
    bound: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, running.next()).await {
            Ok(Some(done)) => {
                finish(d, state, keys, done);
            }
            Ok(None) => break,
            Err(_) => return false,
        }
    }
    true
}

/// Records a finished job; returns its key when it is to be tried again (skipped for a lease
/// another host holds).
fn finish(
    d: &Daemon<'_>,
    state: &State,
    keys: &mut Vec<JobKey>,
    done: (JobKey, f64, JobOutcome),
) -> Option<JobKey> {
    let (key, seconds, out) = done;
    keys.retain(|k| k != &key);
    let now = d.clock.now();
    let level = match (out.ok, out.skipped) {
        (true, _) => Level::Info,
        (false, true) => Level::Info,
        (false, false) => Level::Error,
    };
    (d.log)(
        &LogRecord::new(
            level,
            format!("{key} {} in {seconds:.1}s: {}", verdict(&out), out.summary),
        )
        .job(&key),
    );
    state.update_job(&key, |j| {
        j.running_since = None;
        if out.skipped {
            // Someone else ran it: this daemon's last result of the job still stands.
            return;
        }
        j.last_duration_seconds = Some(seconds);
        j.last_ok = Some(out.ok);
        j.last_summary = Some(out.summary.clone());
        if out.ok {
            j.last_success = Some(now);
            j.runs_ok += 1;
        } else {
            j.runs_failed += 1;
        }
    });
    state.refresh.notify_one();
    (out.skipped && out.retry).then_some(key)
}

/// How a finished job is logged.
fn verdict(out: &JobOutcome) -> &'static str {
    if out.skipped && out.retry {
        "skipped (another job holds the lease; tried again later)"
    } else if out.skipped {
        "skipped"
    } else if out.ok {
        "succeeded"
    } else {
        "failed"
    }
}

/// Re-reads the store view after each job and every few minutes.
async fn refresh_loop(store: Store, stores: Vec<(String, Store)>, state: Arc<State>) {
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

#[cfg(test)]
mod verdict_tests {
    use super::*;

    #[test]
    fn lease_conflict_is_logged_as_skipped() {
        let out = |ok, skipped| JobOutcome {
            ok,
            skipped,
            summary: String::new(),
            retry: skipped,
        };
        assert!(verdict(&out(false, true)).starts_with("skipped"));
        assert_eq!(verdict(&out(false, false)), "failed");
        assert_eq!(verdict(&out(true, false)), "succeeded");
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::*;
    use crate::config::Auth;
    use crate::jobs::{DiscoverFuture, JobFuture};
    use crate::schedule::Schedule;
    use std::cell::{Cell, RefCell};

    #[derive(Default)]
    struct Fake {
        ran: RefCell<Vec<JobKey>>,
        drills: Cell<usize>,
        most_drills: Cell<usize>,
    }

    impl JobRunner for Fake {
        fn supports(&self, _: JobKind) -> bool {
            true
        }

        fn run<'a>(
            &'a self,
            job: &'a JobKey,
            _slot: Option<jiff::Timestamp>,
            _cancel: Cancel,
        ) -> JobFuture<'a> {
            Box::pin(async move {
                self.ran.borrow_mut().push(job.clone());
                if job.kind == JobKind::Drill {
                    self.drills.set(self.drills.get() + 1);
                    self.most_drills
                        .set(self.most_drills.get().max(self.drills.get()));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    self.drills.set(self.drills.get() - 1);
                }
                JobOutcome {
                    ok: true,
                    skipped: false,
                    summary: String::new(),
                    retry: false,
                }
            })
        }

        fn discover(&self) -> DiscoverFuture<'_> {
            Box::pin(async { Some(vec![db("main.a"), db("main.b"), db("main.c")]) })
        }
    }

    fn db(s: &str) -> DbName {
        DbName::parse(s).expect("name")
    }

    /// A database a discovery finds while the daemon runs gets its jobs; with drill coverage
    /// at most `max_concurrent` drills run at once, however many are due.
    #[tokio::test(flavor = "multi_thread")]
    async fn discovered_databases_are_scheduled_and_coverage_bounds_drills() {
        let dir = std::env::temp_dir().join(format!(
            "pgdrill-daemon-fleet-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = Store::open_folder(&dir).expect("store");
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            auth: Auth::default(),
            shutdown_grace: Duration::from_secs(5),
            tz: jiff::tz::TimeZone::UTC,
            tz_name: "UTC".into(),
            jitter_seconds: 0,
            schedules: vec![
                (JobKind::Backup, Schedule::every_seconds(1)),
                (JobKind::Drill, Schedule::every_seconds(1)),
            ],
            drill_coverage: Some(1),
            discover_every: Duration::from_millis(500),
        };
        let (handle, shutdown) = Cancel::new();
        let fake = Fake::default();
        let daemon = Daemon {
            stores: Vec::new(),
            config,
            store,
            databases: vec![db("main.a"), db("main.c")],
            policy: Policy::default(),
            runner: &fake,
            shutdown,
            clock: Arc::new(SystemClock),
            log: Arc::new(|_| {}),
        };
        let stop = async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            handle.cancel();
        };
        let (r, _) = tokio::join!(run(daemon), stop);
        r.expect("daemon");
        let _ = std::fs::remove_dir_all(&dir);
        let ran = fake.ran.borrow();
        let of = |kind: JobKind, name: &str| {
            ran.iter()
                .filter(|k| k.kind == kind && k.database.as_ref() == Some(&db(name)))
                .count()
        };
        assert!(of(JobKind::Backup, "main.b") >= 1, "{ran:?}");
        assert!(of(JobKind::Backup, "main.a") >= 1, "{ran:?}");
        assert!(of(JobKind::Drill, "main.a") >= 1, "{ran:?}");
        assert_eq!(fake.most_drills.get(), 1, "{ran:?}");
    }
}
