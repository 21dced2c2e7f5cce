//! Progress counters shared between a running job and whoever renders them (the CLI draws a
//! line on a terminal; the daemon exports them). Cheap to update from hot loops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default, Debug)]
pub struct Progress {
    stage: Mutex<String>,
    bytes: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }
    pub fn stage(&self, s: &str) {
        if let Ok(mut g) = self.stage.lock() {
            *g = s.to_string();
        }
        self.bytes.store(0, Ordering::Relaxed);
        self.total.store(0, Ordering::Relaxed);
    }
    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    /// (stage, bytes done, total or 0 when unknown)
    pub fn snapshot(&self) -> (String, u64, u64) {
        let stage = self.stage.lock().map(|g| g.clone()).unwrap_or_default();
        (
            stage,
            self.bytes.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}
