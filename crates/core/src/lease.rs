//! One job per database at a time, across hosts: a lease object `<db>/lease.json` created
//! with put-if-absent, renewed by compare-and-swap while the job runs, released at the end.
//! A live lease held by someone else is exit 6; an expired one is taken over (and logged).

use crate::ids::DbName;
use crate::layout;
use crate::{Error, Result};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use pgdrill_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub job: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A held lease; renews itself in the background until `release` (or drop, which stops the
/// renewal and lets the lease expire).
pub struct Lease {
    store: Store,
    key: String,
    state: Arc<Mutex<(LeaseRecord, Option<String>)>>,
    renewer: tokio::task::JoinHandle<()>,
    /// Set when a stale lease was taken over: who held it.
    pub took_over_from: Option<LeaseRecord>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn record(job: &str, ttl: Duration, now: DateTime<Utc>) -> LeaseRecord {
    let host = crate::backup::hostname();
    let pid = std::process::id();
    LeaseRecord {
        owner: format!("{host}:{pid}:{}", rand::random::<u32>()),
        host,
        pid,
        job: job.to_string(),
        acquired_at: now,
        expires_at: now + ttl,
    }
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
    let (key, db) = (key.to_string(), what);
    let ttl_c = Duration::from_std(ttl).unwrap_or(Duration::minutes(10));
    let mine = record(job, ttl_c, crate::clock::Clock::process().now());
    let mut took_over_from = None;
    let etag = match store.put_if_absent(&key, body(&mine)).await {
        Ok(etag) => etag,
        Err(StoreError::AlreadyExists { .. }) => {
            let info = store.head(&key).await?;
            let current: Option<LeaseRecord> = store
                .get(&key)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(c) = &current {
                if c.expires_at > crate::clock::Clock::process().now() {
                    return Err(Error::Locked(format!(
                        "{db} is locked by a {} job on {} (pid {}) until {}: wait for it, or if it died the lease expires then",
                        c.job,
                        c.host,
                        c.pid,
                        c.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )));
                }
            }
            let etag = info.etag.ok_or_else(|| {
                Error::Failed(format!(
                    "the store gave no ETag for {key}; cannot take the lease over safely"
                ))
            })?;
            let new = store
                .put_if_match(&key, body(&mine), &etag)
                .await
                .map_err(|e| match e {
                    StoreError::AlreadyExists { .. } => Error::Locked(format!(
                        "another job took the lease of {db} at the same moment; try again"
                    )),
                    other => other.into(),
                })?;
            took_over_from = current;
            new
        }
        Err(e) => return Err(e.into()),
    };
    let state = Arc::new(Mutex::new((mine, etag)));
    let renewer = {
        let (store, key, state) = (store.clone(), key.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let mut g = state.lock().await;
                let Some(etag) = g.1.clone() else { break };
                g.0.expires_at = crate::clock::Clock::process().now() + ttl_c;
                match store.put_if_match(&key, body(&g.0), &etag).await {
                    Ok(new) => g.1 = new,
                    Err(_) => break,
                }
            }
        })
    };
    Ok(Lease {
        store: store.clone(),
        key,
        state,
        renewer,
        took_over_from,
    })
}

impl Lease {
    /// Stops renewing and deletes the lease if it is still ours.
    pub async fn release(self) {
        self.renewer.abort();
        let g = self.state.lock().await;
        if let Ok(info) = self.store.head(&self.key).await {
            if info.etag.is_some() && info.etag == g.1 {
                let _ = self.store.delete(&self.key).await;
            }
        }
    }
}
