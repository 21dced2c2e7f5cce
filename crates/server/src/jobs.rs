//! What the scheduler runs, and the narrow interface through which it runs it.

use jiff::Timestamp;
use pgdrill_core::cancel::Cancel;
use pgdrill_core::ids::DbName;
use std::future::Future;
use std::pin::Pin;

/// Job kinds, in the order they run when several are due for one database at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Backup,
    Drill,
    Prune,
    Status,
    /// Hook for `mirror` (DESIGN.md §7): one job for the whole store, not per database.
    Mirror,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Drill => "drill",
            JobKind::Prune => "prune",
            JobKind::Status => "status",
            JobKind::Mirror => "mirror",
        }
    }

    /// Read-only jobs run next to another job of the same database; the others take turns
    /// (and take the store lease, which also keeps other hosts out).
    pub fn exclusive(self) -> bool {
        !matches!(self, JobKind::Status)
    }

    /// Whether a job of this kind waits while `running` runs for the same database: exclusive
    /// jobs wait for each other; status runs alongside drills and prunes (a long drill must
    /// not silence the SLO checks) but waits for a backup, which is about to change freshness.
    pub fn waits_for(self, running: JobKind) -> bool {
        match self {
            JobKind::Status => running == JobKind::Backup,
            k => k.exclusive() && running.exclusive(),
        }
    }
}

/// One scheduled job: a kind, and the database it is about (`None` for store-wide jobs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub kind: JobKind,
    pub database: Option<DbName>,
}

impl JobKey {
    pub fn database_label(&self) -> &str {
        self.database.as_ref().map(|d| d.as_str()).unwrap_or("")
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.database {
            Some(d) => write!(f, "{} of {d}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOutcome {
    /// The job did what it is for (a backup completed, a drill passed, status was evaluated).
    pub ok: bool,
    /// Nothing ran: another job (on another host, or another daemon) holds the database's
    /// lease. Neither a success nor a failure; the job's last result stays as it was.
    pub skipped: bool,
    /// One line for the log and the dashboard.
    pub summary: String,
    /// Skipped because another host holds the lease now: try the same run again later (it
    /// may have died holding it). False when the run was done elsewhere or is not wanted.
    pub retry: bool,
}

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = JobOutcome> + 'a>>;

/// Runs jobs for the scheduler. Contract:
/// - `run` runs one job to its end and reports it; it never panics and never exits the
///   process. Errors are outcomes (`ok: false`), not `Err`.
/// - The runner takes the store lease where the job needs one (as the CLI commands do), so
///   a job another host is running ends as a skipped outcome naming the lock, with `retry`.
/// - `slot` is the fire time the run is for: a run the store shows done for that slot (by
///   another replica) ends as a skipped outcome without `retry`.
/// - `cancel` fires when the daemon's shutdown grace is over: the job must then stop its
///   children, abort uploads and return promptly. Before that, shutdown waits for it.
/// - The future need not be `Send`: the scheduler drives it on its own task.
pub trait JobRunner {
    /// Whether `kind` can run at all (a configured schedule for an unsupported kind is a
    /// config error at start rather than a failure every time it fires).
    fn supports(&self, kind: JobKind) -> bool;
    fn run<'a>(&'a self, job: &'a JobKey, slot: Option<Timestamp>, cancel: Cancel)
        -> JobFuture<'a>;

    /// The databases per-database jobs run for, discovered again (`[[server]]` entries);
    /// `None` when the set is fixed. The scheduler asks every few minutes and schedules the
    /// new ones; later `run` calls must know them.
    fn discover(&self) -> DiscoverFuture<'_> {
        Box::pin(async { None })
    }
}

pub type DiscoverFuture<'a> = Pin<Box<dyn Future<Output = Option<Vec<DbName>>> + 'a>>;
