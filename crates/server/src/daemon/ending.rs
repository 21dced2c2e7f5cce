//! The end of a job and of the daemon: recording a finished job, and at shutdown waiting for
//! the running ones within the grace before aborting them.

use super::{Daemon, Running, ABORT_BOUND};
use crate::jobs::{JobKey, JobOutcome};
use crate::log::{Level, LogRecord};
use crate::state::State;
use futures::stream::StreamExt;
use pgdrill_core::cancel::CancelHandle;
use std::time::Duration;

/// Stops the daemon's jobs: waits up to the shutdown grace for the running ones, then aborts
/// them and waits [`ABORT_BOUND`] more before leaving any behind.
pub(super) async fn stop(
    d: &Daemon<'_>,
    state: &State,
    running: &mut Running<'_>,
    keys: &mut Vec<JobKey>,
    abort_handle: CancelHandle,
) {
    state.set_stopping();
    if !running.is_empty() {
        (d.log)(&LogRecord::info(format!(
            "stopping; waiting up to {}s for {} running job(s)",
            d.config.shutdown_grace.as_secs(),
            running.len()
        )));
    }
    let drained = drain(d, state, running, keys, d.config.shutdown_grace).await;
    if !drained {
        (d.log)(&LogRecord::warn(
            "the shutdown grace is over; aborting the running job(s)",
        ));
        abort_handle.cancel();
        if !drain(d, state, running, keys, ABORT_BOUND).await {
            (d.log)(&LogRecord::new(
                Level::Error,
                "a job did not stop after it was aborted; leaving it behind",
            ));
        }
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
pub(super) fn finish(
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
