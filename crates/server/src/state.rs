//! What the scheduler and the HTTP side share: the jobs' state, a cached view of the store
//! (backups, drills, the last failure and the failure history per database) and the scheduler's heartbeat. Locks are
//! held only to copy data in or out, never across an await.

use crate::jobs::JobKey;
use crate::timetable::LastRun;
use jiff::Timestamp;
use pgdrill_core::config::Policy;
use pgdrill_core::drill::evidence::DrillResult;
use pgdrill_core::ids::DbName;
use pgdrill_core::manifest::Manifest;
use pgdrill_core::status::{self, DbStatus, DrillWindow, FailureRecord};
use pgdrill_store::Store;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

/// The scheduler's view of one job, for /metrics and the dashboard.
#[derive(Clone, Debug)]
pub struct JobState {
    pub key: JobKey,
    pub schedule: String,
    pub next_run: Option<Timestamp>,
    pub pending: bool,
    pub running_since: Option<Timestamp>,
    pub last_started: Option<Timestamp>,
    pub last_duration_seconds: Option<f64>,
    pub last_ok: Option<bool>,
    pub last_summary: Option<String>,
    pub last_success: Option<Timestamp>,
    /// Runs this daemon finished since it started (Prometheus `_total` counters).
    pub runs_ok: u64,
    pub runs_failed: u64,
}

/// One database as the store shows it.
#[derive(Clone, Debug)]
pub struct DbData {
    pub name: DbName,
    /// Complete backups, newest first.
    pub backups: Vec<Manifest>,
    /// Drills, newest first.
    pub drills: Vec<DrillResult>,
    pub failure: Option<FailureRecord>,
    /// The failed jobs kept in `<db>/failures.json`, oldest first (marks on the charts).
    pub failures: Vec<FailureRecord>,
    /// Backups whose manifest cannot be read, with the reason (a status violation).
    pub damaged: Vec<(pgdrill_core::ids::BackupId, String)>,
    /// Set when the store could not be read; the lists are then the previous ones.
    pub error: Option<String>,
    /// With several stores: what each holds of this database (the `backup_copies` SLO,
    /// the per-store metrics and the dashboard's stores table); empty with one store.
    pub copies: Vec<status::copies::Listed>,
}

impl DbData {
    /// The SLOs at `now` (whole seconds, as the dashboard and /metrics show them).
    pub fn status(&self, policy: &Policy, window: &DrillWindow, now: Timestamp) -> DbStatus {
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let mut s = status::evaluate(
            self.name.as_str(),
            &self.backups,
            &self.drills,
            self.failure.clone(),
            policy,
            window.clone(),
            now,
        );
        s.add_damaged_manifests(&self.damaged);
        if !self.copies.is_empty() {
            let (copies, slo) =
                status::copies::evaluate(&self.copies, s.freshness_threshold_seconds, now);
            s.stores = copies;
            s.slos.push(slo);
        }
        s
    }

    /// When the store last saw this job done (backups: the newest backup's end; drills:
    /// the newest drill's end), for the catch-up at start.
    pub fn last_run(&self, kind: crate::jobs::JobKind) -> LastRun {
        use crate::jobs::JobKind;
        if self.error.is_some() {
            return LastRun::Unknown;
        }
        let t = match kind {
            JobKind::Backup => self.backups.first().map(|m| m.finished_at.as_str()),
            JobKind::Drill => self.drills.first().map(|d| d.finished_at.as_str()),
            JobKind::Status => return LastRun::Never,
            JobKind::Prune | JobKind::Mirror => return LastRun::Unknown,
        };
        match t.map(pgdrill_core::time::parse) {
            None => LastRun::Never,
            Some(Some(t)) => LastRun::At(t),
            Some(None) => LastRun::Unknown,
        }
    }

    /// The last successful run the store shows (a passing drill for drills).
    pub fn last_success(&self, kind: crate::jobs::JobKind) -> Option<Timestamp> {
        use crate::jobs::JobKind;
        let t = match kind {
            JobKind::Backup => self.backups.first().map(|m| m.finished_at.as_str()),
            JobKind::Drill => self
                .drills
                .iter()
                .find(|d| d.passed())
                .map(|d| d.finished_at.as_str()),
            _ => None,
        };
        t.and_then(|s| s.parse().ok())
    }
}

/// Reads one database's backups, drills and last failure from the store.
pub async fn load(store: &Store, name: &DbName, previous: Option<&DbData>) -> DbData {
    let listed = async {
        let c = pgdrill_core::catalog_cache::load(store, name).await?;
        Ok::<_, pgdrill_core::Error>((c.listing, c.drills))
    }
    .await;
    match listed {
        Ok((listing, drills)) => DbData {
            name: name.clone(),
            backups: listing.complete,
            damaged: listing.unreadable,
            drills,
            failure: status::read_failure(store, name).await,
            failures: pgdrill_core::jobs::failures::read(store, name).await,
            error: None,
            copies: Vec::new(),
        },
        Err(e) => {
            let mut d = previous.cloned().unwrap_or(DbData {
                name: name.clone(),
                backups: Vec::new(),
                damaged: Vec::new(),
                drills: Vec::new(),
                failure: None,
                failures: Vec::new(),
                error: None,
                copies: Vec::new(),
            });
            d.error = Some(format!("cannot read the store: {e}"));
            d
        }
    }
}

/// [`load`] with every store's copies of the database when `stores` (primary first, named)
/// holds more than one; the primary's listing is the one already read.
pub async fn load_all(
    stores: &[(String, Store)],
    primary: &Store,
    name: &DbName,
    previous: Option<&DbData>,
) -> DbData {
    let mut d = load(primary, name, previous).await;
    if stores.len() < 2 {
        return d;
    }
    let ids = |ms: &[Manifest]| {
        ms.iter()
            .map(|m| (m.backup_id.clone(), m.snapshot.time.clone()))
            .collect::<Vec<_>>()
    };
    let mut copies = Vec::new();
    for (i, (store_name, store)) in stores.iter().enumerate() {
        let complete = match (i, &d.error) {
            (0, None) => Ok(ids(&d.backups)),
            (0, Some(e)) => Err(e.clone()),
            _ => pgdrill_core::catalog_cache::list(store, name)
                .await
                .map(|l| ids(&l.complete))
                .map_err(|e| e.to_string()),
        };
        copies.push(status::copies::Listed {
            store: store_name.clone(),
            complete,
        });
    }
    d.copies = copies;
    d
}

pub struct State {
    jobs: Mutex<Vec<JobState>>,
    dbs: RwLock<Vec<DbData>>,
    heartbeat: AtomicI64,
    stopping: AtomicBool,
    /// Wakes the refresher: a job ended, the store changed.
    pub refresh: tokio::sync::Notify,
    pub started: Timestamp,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    pub fn new(jobs: Vec<JobState>, dbs: Vec<DbData>, now: Timestamp) -> State {
        State {
            jobs: Mutex::new(jobs),
            dbs: RwLock::new(dbs),
            heartbeat: AtomicI64::new(now.as_second()),
            stopping: AtomicBool::new(false),
            refresh: tokio::sync::Notify::new(),
            started: now,
        }
    }

    pub fn jobs(&self) -> Vec<JobState> {
        lock(&self.jobs).clone()
    }

    pub fn update_job(&self, key: &JobKey, f: impl FnOnce(&mut JobState)) {
        if let Some(j) = lock(&self.jobs).iter_mut().find(|j| &j.key == key) {
            f(j);
        }
    }

    pub fn dbs(&self) -> Vec<DbData> {
        self.dbs
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// `f` over the databases without copying them (the dashboard reads a page of a fleet).
    pub fn read_dbs<R>(&self, f: impl FnOnce(&[DbData]) -> R) -> R {
        let g = self.dbs.read().unwrap_or_else(|p| p.into_inner());
        f(&g)
    }

    /// Replaces the view of the databases `dbs` names; others (added meanwhile) stay.
    pub fn set_dbs(&self, mut dbs: Vec<DbData>) {
        let mut g = self.dbs.write().unwrap_or_else(|p| p.into_inner());
        for old in g.iter() {
            if !dbs.iter().any(|d| d.name == old.name) {
                dbs.push(old.clone());
            }
        }
        *g = dbs;
    }

    /// A database found while running (server discovery), with its jobs.
    pub fn add_database(&self, db: DbData, jobs: Vec<JobState>) {
        {
            let mut g = self.dbs.write().unwrap_or_else(|p| p.into_inner());
            if !g.iter().any(|d| d.name == db.name) {
                g.push(db);
            }
        }
        let mut j = lock(&self.jobs);
        for job in jobs {
            if !j.iter().any(|x| x.key == job.key) {
                j.push(job);
            }
        }
    }

    pub fn beat(&self, now: Timestamp) {
        self.heartbeat.store(now.as_second(), Ordering::Relaxed);
    }

    /// Seconds since the scheduler loop last went round.
    pub fn heartbeat_age(&self, now: Timestamp) -> i64 {
        now.as_second() - self.heartbeat.load(Ordering::Relaxed)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}
