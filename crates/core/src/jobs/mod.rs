//! Jobs: a backup, drill, prune, status or mirror run as one function that owns its lease,
//! its alerts, the audit row, the failure record (`<db>/last_failure.json`, and its history
//! `<db>/failures.json`) and its evidence.
//! The CLI commands and `pgdrill serve` are both thin callers: they pass typed settings and
//! inputs in, and render (or summarise) the typed report that comes back.
//!
//! Contracts every job keeps:
//! - it never exits the process and never reads the process environment: the caller hands
//!   it the [`Env`] map it built once at the edge;
//! - what people should see while it runs (a lapsed lease taken over, an alert channel that
//!   failed, a drill's warnings) goes through [`Events`], never straight to stderr;
//! - a job another host holds the lease of ends in `Error::Locked` without alerting.

pub mod backup;
pub mod drill;
pub mod failures;
pub mod mirror;
mod notify;
pub mod prune;
pub mod slot;
pub mod status;

pub use notify::Notifier;

use crate::cancel::Cancel;
use crate::config::{Env, Settings};
use crate::ids::DbName;
use crate::lease::{self, Lease};
use crate::progress::Progress;
use crate::Result;
use pgdrill_store::Store;
use std::sync::Arc;

/// How long a job's store lease lasts before another host may take it over (renewed while
/// the job runs).
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Where a job reports to the person (or daemon log) watching it.
pub trait Events: Send + Sync {
    /// Progress of the job, for people (stderr when not `--quiet`, the daemon's log).
    fn info(&self, msg: &str);
    /// Something worth attention that does not fail the job.
    fn warn(&self, msg: &str);
    /// Detail shown with `-v`.
    fn debug(&self, msg: &str) {
        let _ = msg;
    }
    /// Shows `progress` while the returned guard lives (a terminal's progress line).
    fn progress(&self, progress: Arc<Progress>) -> Box<dyn std::any::Any + Send> {
        let _ = progress;
        Box::new(())
    }
}

/// Events nobody watches (tests, callers that only want the report).
pub struct Silent;

impl Events for Silent {
    fn info(&self, _: &str) {}
    fn warn(&self, _: &str) {}
}

/// What every job runs with: the store, the validated settings, the environment map the edge
/// built, the cancel token (a signal, or the daemon's shutdown grace running out), and where
/// to report.
pub struct JobEnv<'a> {
    pub store: &'a Store,
    pub settings: &'a Settings,
    pub env: &'a Env,
    pub cancel: Cancel,
    pub events: &'a dyn Events,
    /// A scheduled run: the fire time it is for (`serve`); `None` for commands. See
    /// [`slot`].
    pub slot: Option<crate::time::Timestamp>,
}

impl JobEnv<'_> {
    /// The store lease of `db` for a job named `job`; says when the clocks disagree or a
    /// lapsed lease was taken over.
    pub async fn lease(&self, db: &DbName, job: &str) -> Result<Lease> {
        let held = lease::acquire(self.store, db, job, slot::lease_ttl()).await?;
        warn_lease(self.events, db, &held);
        Ok(held)
    }

    pub fn notifier(&self) -> Result<Notifier<'_>> {
        Notifier::new(&self.settings.alerts, self.env, self.store, self.events)
    }
}

/// What a job says when it takes a lease: a clock far off the store's, a lapsed lease taken over.
pub fn warn_lease(events: &dyn Events, what: &dyn std::fmt::Display, held: &Lease) {
    if let Some(w) = held.skew_warning() {
        events.warn(&w);
    }
    if let Some(prev) = &held.took_over_from {
        events.warn(&format!(
            "took over a stale lease of {what} held by a {} job on {} (pid {})",
            prev.job, prev.host, prev.pid
        ));
    }
}
