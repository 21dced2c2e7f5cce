//! The history of failed jobs of a database: `<db>/failures.json`, the last
//! [`KEEP`] failures oldest first, appended whenever `<db>/last_failure.json` is written and
//! never cleared by a success (the dashboard marks them on its charts). Best effort, like the
//! failure record: a store that is down cannot record anything, and a failure is never made
//! worse by its own bookkeeping.

use crate::ids::DbName;
use crate::status::FailureRecord;
use pgdrill_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// Failures kept per database; older ones are dropped.
pub const KEEP: usize = 50;

/// What `<db>/failures.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FailureHistory {
    pub format_version: u32,
    /// Oldest first, at most [`KEEP`].
    pub failures: Vec<FailureRecord>,
}

/// The largest history object read (50 records of bounded messages fit many times over).
const MAX_BYTES: u64 = 4 * 1024 * 1024;

pub fn key(db: &DbName) -> String {
    format!("{db}/failures.json")
}

/// Appends `rec`, keeping the last [`KEEP`]. A compare-and-swap on the object's ETag (create
/// if absent), retried a few times, so two hosts recording at once both land.
pub async fn append(store: &Store, db: &DbName, rec: FailureRecord) {
    for _ in 0..4 {
        let (mut history, etag) = match store.get_prefix(&key(db), MAX_BYTES).await {
            Ok((body, info)) => (
                serde_json::from_slice::<FailureHistory>(&body).unwrap_or_default(),
                info.etag,
            ),
            Err(StoreError::NotFound { .. }) => (FailureHistory::default(), None),
            Err(_) => return,
        };
        history.format_version = 1;
        history.failures.push(rec.clone());
        history.failures.sort_by_key(|f| f.at);
        let extra = history.failures.len().saturating_sub(KEEP);
        history.failures.drain(..extra);
        let Ok(body) = serde_json::to_vec_pretty(&history) else {
            return;
        };
        let written = match etag {
            Some(e) => store.put_if_match(&key(db), body.into(), &e).await,
            None => store.put_if_absent(&key(db), body.into()).await,
        };
        match written {
            Ok(_) => return,
            // Someone else wrote meanwhile: read again and retry.
            Err(StoreError::AlreadyExists { .. } | StoreError::NotFound { .. }) => continue,
            Err(_) => return,
        }
    }
}

/// The recorded failures, oldest first; none when the object is missing or unreadable.
pub async fn read(store: &Store, db: &DbName) -> Vec<FailureRecord> {
    match store.get_prefix(&key(db), MAX_BYTES).await {
        Ok((body, _)) => serde_json::from_slice::<FailureHistory>(&body)
            .map(|h| h.failures)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[tokio::test]
    async fn keeps_the_last_fifty_failures_in_time_order_through_successes() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        let db = DbName::parse("app").expect("db");
        assert!(read(&store, &db).await.is_empty());
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().expect("t");
        for i in 0..(KEEP as i64 + 5) {
            let rec = FailureRecord {
                job: "backup".into(),
                at: crate::time::add_secs(t0, i * 60),
                message: format!("failure {i}"),
            };
            append(&store, &db, rec).await;
            if i == 2 {
                // A success clears last_failure.json, never the history.
                crate::status::clear_failure(&store, &db).await;
            }
        }
        let h = read(&store, &db).await;
        assert_eq!(h.len(), KEEP);
        assert_eq!(h[0].message, "failure 5");
        assert_eq!(h[KEEP - 1].message, format!("failure {}", KEEP + 4));
        assert!(h.windows(2).all(|w| w[0].at < w[1].at));
        let raw: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("app/failures.json")).expect("file"),
        )
        .expect("json");
        assert_eq!(raw["format_version"], 1);
        assert_eq!(raw["failures"][0]["job"], "backup");
    }
}
