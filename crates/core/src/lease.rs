//! One job per database at a time, across hosts: a lease object `<db>/lease.json` created
//! with put-if-absent, renewed by compare-and-swap while the job runs, released at the end.
//! A live lease held by someone else is exit 6; a lapsed one is taken over (and logged).
//!
//! Whether a lease lapsed is judged by the store's clock alone, never by a host's: its age is
//! the store's "now" (the last-modified time of a probe object written for the purpose) minus
//! the lease object's last-modified time (set by the store at each renewal), compared with the
//! lease's `ttl_seconds`. Two times from one clock, so a host whose clock is hours off can
//! neither take over a live lease nor make one look older than it is.
//!
//! The holder fences itself: a renewal that finds the lease replaced, or that cannot reach the
//! store for two thirds of the ttl, marks the lease lost and fires [`Lease::lost_signal`]; and
//! before a job publishes anything (a backup's manifest, a prune's deletions) it calls
//! [`Lease::confirm`], which checks that the lease object still carries the ETag of its own
//! last write. Nobody else can take the lease over before a third of the ttl has passed after
//! that, which is far longer than writing one manifest takes. A backup to several stores whose
//! lease store stopped answering uses [`Lease::confirm_or_recent`] instead: the same check,
//! except that an unreachable lease store is vouched for by the last renewal alone.

use crate::cancel::{Cancel, CancelHandle};
use crate::clock::Clock;
use crate::ids::DbName;
use crate::layout;
use crate::time::{self, SignedDuration, Timestamp};
use crate::{Error, Result};
use bytes::Bytes;
use pgdrill_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// Local and store clocks further apart than this are reported.
pub const SKEW_WARN_SECONDS: i64 = 60;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub job: String,
    /// By the holder's clock: for people reading the object, never for deciding.
    #[serde(with = "time::chrono_compat")]
    pub acquired_at: Timestamp,
    /// By the holder's clock: for people reading the object, never for deciding.
    #[serde(with = "time::chrono_compat")]
    pub expires_at: Timestamp,
    /// How long the lease lives after its last renewal, by the store's clock. Missing in
    /// leases written before it existed: the reader's own ttl is used then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

impl LeaseRecord {
    fn holder(&self) -> String {
        format!("a {} job on {} (pid {})", self.job, self.host, self.pid)
    }
}

/// What the holder knows of its lease.
struct Held {
    record: LeaseRecord,
    etag: Option<String>,
    /// When the last write of the lease succeeded (local monotonic clock).
    renewed: Instant,
    /// Why the lease is no longer ours, once it is not.
    lost: Option<String>,
}

/// A held lease; renews itself in the background until `release` (or drop, which stops the
/// renewal and lets the lease lapse).
pub struct Lease {
    store: Store,
    key: String,
    what: String,
    ttl: std::time::Duration,
    clock: Clock,
    state: Arc<Mutex<Held>>,
    renewer: tokio::task::JoinHandle<()>,
    lost: Cancel,
    /// Set when a lapsed lease was taken over: who held it.
    pub took_over_from: Option<LeaseRecord>,
    /// The store's clock minus this host's, in seconds, measured when the lease was written.
    pub clock_skew: i64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn record(job: &str, ttl: std::time::Duration, now: Timestamp) -> LeaseRecord {
    let host = hostname();
    let pid = std::process::id();
    LeaseRecord {
        owner: format!("{host}:{pid}:{}", rand::random::<u32>()),
        host,
        pid,
        job: job.to_string(),
        acquired_at: now,
        expires_at: after(now, ttl),
        ttl_seconds: Some(ttl.as_secs().max(1)),
    }
}

/// `ttl` after `now` (ten minutes when `ttl` is beyond any date).
fn after(now: Timestamp, ttl: std::time::Duration) -> Timestamp {
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_mins(10));
    now.saturating_add(ttl).unwrap_or(now)
}

fn body(r: &LeaseRecord) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(r).unwrap_or_default())
}

/// Acquires the lease of `db` for `job` (backup, drill, prune) for `ttl`, renewed every ttl/3.
pub async fn acquire(
    store: &Store,
    db: &DbName,
    job: &str,
    ttl: std::time::Duration,
) -> Result<Lease> {
    acquire_key(store, &layout::lease_key(db), db.as_str(), job, ttl).await
}

/// Like [`acquire`] for a lease object at `key` (e.g. a mirror's); `what` names it in messages.
pub async fn acquire_key(
    store: &Store,
    key: &str,
    what: &str,
    job: &str,
    ttl: std::time::Duration,
) -> Result<Lease> {
    acquire_with(store, key, what, job, ttl, Clock::process()).await
}

/// [`acquire_key`] with the local clock given (tests shift it).
pub async fn acquire_with(
    store: &Store,
    key: &str,
    what: &str,
    job: &str,
    ttl: std::time::Duration,
    clock: Clock,
) -> Result<Lease> {
    let mine = record(job, ttl, clock.now());
    let before = clock.now();
    let (etag, took_over_from) = match store.put_if_absent(key, body(&mine)).await {
        Ok(etag) => (etag, None),
        Err(StoreError::AlreadyExists { .. }) => {
            take_over_if_lapsed(store, key, what, &mine, ttl, clock).await?
        }
        Err(e) => return Err(e.into()),
    };
    // The store's time of our own write measures how far this host's clock is off.
    let written = store.head(key).await?;
    let clock_skew = written.last_modified - midpoint(before, clock.now());
    let etag = etag.or(written.etag);
    let (handle, lost) = Cancel::new();
    let state = Arc::new(Mutex::new(Held {
        record: mine,
        etag,
        renewed: Instant::now(),
        lost: None,
    }));
    let renewer = tokio::spawn(renew(
        store.clone(),
        key.to_string(),
        ttl,
        clock,
        state.clone(),
        handle,
    ));
    Ok(Lease {
        store: store.clone(),
        key: key.to_string(),
        what: what.to_string(),
        ttl,
        clock,
        state,
        renewer,
        lost,
        took_over_from,
        clock_skew,
    })
}

fn midpoint(a: Timestamp, b: Timestamp) -> i64 {
    (a.as_second() + b.as_second()) / 2
}

/// The store's current time (Unix seconds) and the store's clock minus this host's: the
/// last-modified time the store gives a probe object written next to `key`.
pub async fn store_clock(store: &Store, key: &str, clock: Clock) -> Result<(i64, i64)> {
    let probe = format!("{}.clock", key.strip_suffix(".json").unwrap_or(key));
    let before = clock.now();
    store
        .put(&probe, Bytes::from(time::chrono_compat::to_rfc3339(before)))
        .await?;
    let info = store.head(&probe).await;
    let after = clock.now();
    let _ = store.delete(&probe).await;
    let now = info?.last_modified;
    Ok((now, now - midpoint(before, after)))
}

/// "2 h 5 min ahead of" / "40 s behind": this host's clock against the store's.
pub fn describe_skew(store_minus_local: i64) -> String {
    let s = store_minus_local.unsigned_abs();
    // Whole minutes, rounded: a measurement is good to a second or two.
    let m = (s + 30) / 60;
    let amount = match s {
        0..=119 => format!("{s} s"),
        _ if m < 120 => format!("{m} min"),
        _ => format!("{} h {} min", m / 60, m % 60),
    };
    let side = if store_minus_local < 0 {
        "ahead of"
    } else {
        "behind"
    };
    format!("this host's clock is {amount} {side} the store's clock")
}

async fn take_over_if_lapsed(
    store: &Store,
    key: &str,
    what: &str,
    mine: &LeaseRecord,
    ttl: std::time::Duration,
    clock: Clock,
) -> Result<(Option<String>, Option<LeaseRecord>)> {
    let info = store.head(key).await?;
    let current: Option<LeaseRecord> = store
        .get(key)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (store_now, skew) = store_clock(store, key, clock).await?;
    let lease_ttl = current
        .as_ref()
        .and_then(|c| c.ttl_seconds)
        .unwrap_or(ttl.as_secs()) as i64;
    let age = store_now - info.last_modified;
    if age < lease_ttl {
        let who = current
            .as_ref()
            .map(LeaseRecord::holder)
            .unwrap_or_else(|| "another job".into());
        let skew_note = if skew.abs() > SKEW_WARN_SECONDS {
            format!(
                " (note: {}; leases are judged by the store's clock)",
                describe_skew(skew)
            )
        } else {
            String::new()
        };
        return Err(Error::Locked(format!(
            "{what} is locked by {who}, renewed {age} s ago by the store's clock: wait for it, or if it died the lease lapses {} s after its last renewal{skew_note}",
            lease_ttl
        )));
    }
    let etag = info.etag.ok_or_else(|| {
        Error::Failed(format!(
            "the store gave no ETag for {key}; cannot take the lease over safely"
        ))
    })?;
    let new = store
        .put_if_match(key, body(mine), &etag)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => Error::Locked(format!(
                "another job took the lease of {what} at the same moment; try again"
            )),
            other => other.into(),
        })?;
    Ok((new, current))
}

/// Who holds the lease at `key` now, for messages.
async fn holder(store: &Store, key: &str) -> String {
    match store.get(key).await {
        Ok(b) => serde_json::from_slice::<LeaseRecord>(&b)
            .map(|r| r.holder())
            .unwrap_or_else(|_| "an unreadable lease".into()),
        Err(StoreError::NotFound { .. }) => "nobody (the lease object was deleted)".into(),
        Err(e) => format!("an unknown holder ({e})"),
    }
}

/// Renews every ttl/3 (every ttl/15 after a failed try); marks the lease lost when it was
/// replaced, or when two thirds of the ttl passed without a successful renewal (before
/// anyone else may judge it lapsed).
async fn renew(
    store: Store,
    key: String,
    ttl: std::time::Duration,
    clock: Clock,
    state: Arc<Mutex<Held>>,
    lost: CancelHandle,
) {
    let mut wait = ttl / 3;
    loop {
        tokio::time::sleep(wait).await;
        let mut g = state.lock().await;
        let Some(etag) = g.etag.clone() else {
            g.lost = Some("the store gave no ETag to renew it by".into());
            break;
        };
        g.record.expires_at = after(clock.now(), ttl);
        match store.put_if_match(&key, body(&g.record), &etag).await {
            Ok(new) => {
                g.etag = match new {
                    Some(e) => Some(e),
                    None => store.head(&key).await.ok().and_then(|i| i.etag),
                };
                g.renewed = Instant::now();
                wait = ttl / 3;
            }
            Err(StoreError::AlreadyExists { .. }) | Err(StoreError::NotFound { .. }) => {
                g.lost = Some(format!(
                    "it was taken over by {}",
                    holder(&store, &key).await
                ));
                break;
            }
            Err(e) => {
                if g.renewed.elapsed() >= ttl * 2 / 3 {
                    g.lost = Some(format!(
                        "it could not be renewed for {} s ({e})",
                        g.renewed.elapsed().as_secs()
                    ));
                    break;
                }
                wait = ttl / 15;
            }
        }
    }
    lost.cancel();
}

impl Lease {
    /// Fires when the lease is lost (taken over, or not renewable in time): the job must stop.
    pub fn lost_signal(&self) -> Cancel {
        self.lost.clone()
    }

    /// The lease's key in the store.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Why the lease is lost, as the error the job should end with; `None` while it is held.
    pub async fn lost(&self) -> Option<Error> {
        let g = self.state.lock().await;
        g.lost.as_ref().map(|why| self.lost_error(why))
    }

    fn lost_error(&self, why: &str) -> Error {
        Error::Failed(format!(
            "this job no longer holds the lease of {} ({why}), so it stopped before publishing anything",
            self.what
        ))
    }

    /// The fencing check before publishing: fails unless the lease object still carries the
    /// ETag of this holder's last write and that write is recent enough that nobody could
    /// have judged the lease lapsed.
    pub async fn confirm(&self) -> Result<()> {
        self.check(false).await.map(|_| ())
    }

    /// [`confirm`](Lease::confirm) for a job that publishes to stores other than the lease's
    /// (a backup to several stores whose lease store went down meanwhile): when the lease's
    /// store cannot be reached, the lease still counts as held on the strength of its last
    /// renewal, which must be under two thirds of the ttl old as for `confirm`. Nobody may
    /// judge it lapsed before the whole ttl has passed after that renewal by the store's
    /// clock, and a store nobody can reach cannot be written by a taker either.
    /// `Ok(Some(why))` then, for the log; a lease found replaced, lost, or too old to vouch
    /// for is an error as with `confirm`.
    pub async fn confirm_or_recent(&self) -> Result<Option<String>> {
        self.check(true).await
    }

    async fn check(&self, tolerate_unreachable: bool) -> Result<Option<String>> {
        let g = self.state.lock().await;
        if let Some(why) = &g.lost {
            return Err(self.lost_error(why));
        }
        if g.renewed.elapsed() >= self.ttl * 2 / 3 {
            return Err(self.lost_error(&format!(
                "it was last renewed {} s ago",
                g.renewed.elapsed().as_secs()
            )));
        }
        let current = match self.store.head(&self.key).await {
            Ok(info) => info.etag,
            Err(StoreError::NotFound { .. }) => None,
            // The age checked above leaves at least a third of the ttl before anyone may
            // judge the lease lapsed, reachable or not.
            Err(e) if tolerate_unreachable => {
                return Ok(Some(format!(
                    "the lease of {} cannot be confirmed in its store ({e}); it was renewed {} s ago, well within its {} s, so it is still this job's",
                    self.what,
                    g.renewed.elapsed().as_secs(),
                    self.ttl.as_secs()
                )))
            }
            Err(e) => {
                return Err(Error::Failed(format!(
                    "cannot confirm this job still holds the lease of {}, so it stopped before publishing anything: {e}",
                    self.what
                )))
            }
        };
        if current.is_none() || current != g.etag {
            let who = holder(&self.store, &self.key).await;
            return Err(self.lost_error(&format!("it was taken over by {who}")));
        }
        Ok(None)
    }

    /// Now by the store's clock (this host's clock corrected by the skew measured when the
    /// lease was written).
    pub fn store_now(&self) -> Timestamp {
        time::add_secs(self.clock.now(), self.clock_skew)
    }

    /// Now, for naming and dating: this host's clock, unless it is more than a minute off the
    /// store's, then the store's (measured to a second or so, so not used when close).
    pub fn trusted_now(&self) -> Timestamp {
        if self.clock_skew.abs() > SKEW_WARN_SECONDS {
            self.store_now()
        } else {
            self.clock.now()
        }
    }

    /// A warning when this host's clock and the store's differ by more than a minute.
    pub fn skew_warning(&self) -> Option<String> {
        (self.clock_skew.abs() > SKEW_WARN_SECONDS).then(|| {
            format!(
                "{}: fix its time sync (NTP); pgdrill judges leases and prune ages by the store's clock",
                describe_skew(self.clock_skew)
            )
        })
    }

    /// Stops renewing and deletes the lease if it is still ours.
    pub async fn release(self) {
        self.renewer.abort();
        let g = self.state.lock().await;
        if let Ok(info) = self.store.head(&self.key).await {
            if info.etag.is_some() && info.etag == g.etag {
                let _ = self.store.delete(&self.key).await;
            }
        }
    }
}

/// This host's name, recorded in leases, manifests and drill evidence: the kernel's (from
/// `/proc`, else `uname`), never an environment variable (nothing in the core reads the
/// environment).
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .trim()
                .to_string()
        });
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}
#[cfg(test)]
mod tests;
