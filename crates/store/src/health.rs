//! Once a call has found the store unreachable (its retries ran out on a transport failure),
//! the calls that follow within [`DOWN_MEMORY`] get [`DOWN_BUDGET`] each until one succeeds:
//! the cleanup after a failure (aborting an upload, releasing a lease, recording an alert)
//! must not wait out the whole retry window again for every call.

use crate::StoreError;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time a call gets while the store is known to be down.
const DOWN_BUDGET: Duration = Duration::from_secs(3);
/// How long a transport failure is remembered.
const DOWN_MEMORY: Duration = Duration::from_secs(60);

/// Shared by a store's clones (and its uploads).
#[derive(Debug, Default)]
pub(crate) struct Health {
    down_since: Mutex<Option<Instant>>,
}

impl Health {
    fn budget(&self) -> Option<Duration> {
        let since = self.down_since.lock().ok().and_then(|d| *d)?;
        (since.elapsed() < DOWN_MEMORY).then_some(DOWN_BUDGET)
    }

    fn set_down(&self, down: bool) {
        if let Ok(mut d) = self.down_since.lock() {
            *d = down.then(Instant::now);
        }
    }

    /// Runs one backend call, mapping its error with `map`.
    pub(crate) async fn run<T>(
        &self,
        action: &'static str,
        key: &str,
        call: impl Future<Output = object_store::Result<T>>,
        map: impl FnOnce(object_store::Error) -> StoreError,
    ) -> Result<T, StoreError> {
        let result = match self.budget() {
            Some(budget) => match tokio::time::timeout(budget, call).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(StoreError::Backend {
                        action,
                        key: key.to_string(),
                        detail: "the store still does not answer (it stopped answering moments ago): check that it is up and reachable".into(),
                        retryable: true,
                    })
                }
            },
            None => call.await,
        };
        match result {
            Ok(v) => {
                self.set_down(false);
                Ok(v)
            }
            Err(e) => {
                if crate::error::is_transport_failure(&e) {
                    self.set_down(true);
                }
                Err(map(e))
            }
        }
    }
}
