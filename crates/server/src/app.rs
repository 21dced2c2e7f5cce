//! What the HTTP handlers read and the daemon provides: the shared state, the store, the
//! auth rules and the clock. A leaf module, so the daemon, the HTTP server, the dashboard
//! and the metrics all depend on it and none of them on each other's internals.

use crate::config::Auth;
use crate::state::State;
use jiff::Timestamp;
use pgdrill_core::config::Policy;
use pgdrill_store::Store;
use std::sync::Arc;

/// Where the daemon reads the time; tests inject their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Everything a request handler reads.
pub struct App {
    pub state: Arc<State>,
    pub store: Store,
    pub auth: Auth,
    pub tz: jiff::tz::TimeZone,
    pub tz_name: String,
    pub policy: Policy,
    /// How recent a passing drill must be (the policy and the drill schedule).
    pub drill_window: pgdrill_core::status::DrillWindow,
    pub store_display: String,
    pub clock: Arc<dyn Clock>,
    /// `[drill] coverage_days`: the window of the drill coverage series of `/metrics`.
    pub coverage_days: Option<u64>,
}
