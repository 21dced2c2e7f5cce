//! `pgdrill serve`: the scheduler, the HTTP endpoint (`/healthz`, `/metrics`, the read-only
//! dashboard and the drills' reports). The jobs themselves are run through a
//! [`jobs::JobRunner`] the caller provides, so this crate never depends on the CLI.
//!
//! - [`schedule`]: schedules and their fire times, pure (`next_after`, `prev_at_or_before`);
//! - [`timetable`]: which jobs are due and may start, pure (catch-up, one job per database);
//! - [`daemon`]: the loop that runs them, with shutdown grace;
//! - [`http`], [`metrics`], [`dashboard`], [`charts`]: what it serves.

pub mod api;
pub mod app;
pub mod charts;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod http;
pub mod jobs;
pub mod log;
pub mod metrics;
pub mod response;
/// Schedules are parsed in the core crate, so every command validates `[schedule]` at
/// config load.
pub use pgdrill_core::schedule;
pub mod state;
pub mod timetable;

pub use config::ServeConfig;
pub use daemon::{run, Clock, Daemon, SystemClock};
pub use jobs::{JobFuture, JobKey, JobKind, JobOutcome, JobRunner};
pub use log::{JobLog, Level, LogRecord, LogSink};
pub use schedule::Schedule;
