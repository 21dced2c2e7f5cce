//! Read marks: a restore, verify or export marks the backup it reads with a small object
//! `<db>/readers/<backup-id>/<owner>.json`, rewritten every third of [`READ_MARK_TTL`] while it
//! runs and deleted at its end. `prune` keeps a backup with a live mark (and deletes marks
//! that lapsed, left by readers that died).
//!
//! A mark is live while the store's time minus the mark's last-modified time (both the
//! store's clock, as for leases) is under [`READ_MARK_TTL`]; no host's clock is trusted.

use crate::clock::Clock;
use crate::ids::{BackupId, DbName};
use crate::{layout, Error, Result};
use bytes::Bytes;
use pgdrill_store::Store;
use std::collections::BTreeSet;

/// How long a mark lives after its last rewrite, by the store's clock.
pub const READ_MARK_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// A mark held by a running reader; renewed in the background until [`ReadMark::release`]
/// (a dropped mark stops being renewed and lapses).
pub struct ReadMark {
    store: Store,
    /// `None` when the mark could not be written (see `warning`).
    key: Option<String>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Set when the mark could not be written (read-only credentials, a store error): the
    /// read goes on unprotected, and the caller says so.
    pub warning: Option<String>,
}

impl Drop for ReadMark {
    fn drop(&mut self) {
        if let Some(r) = &self.renewer {
            r.abort();
        }
    }
}

/// Marks backup `id` of `db` as being read by `job` (restore, verify, export). Fails when the
/// backup's manifest is gone by the time the mark is written (pruned meanwhile). A mark that
/// cannot be written does not stop the read: the returned mark then carries a warning.
pub async fn mark(store: &Store, db: &DbName, id: &BackupId, job: &str) -> Result<ReadMark> {
    mark_with_ttl(store, db, id, job, READ_MARK_TTL).await
}

async fn mark_with_ttl(
    store: &Store,
    db: &DbName,
    id: &BackupId,
    job: &str,
    ttl: std::time::Duration,
) -> Result<ReadMark> {
    let host = crate::lease::hostname();
    let pid = std::process::id();
    let owner = format!("{host}-{pid}-{:08x}", rand::random::<u32>());
    let key = layout::read_mark(db, id, &owner);
    let body = Bytes::from(
        serde_json::to_vec_pretty(&serde_json::json!({
            "host": host,
            "pid": pid,
            "job": job,
            "backup_id": id,
            "started_at": crate::time::chrono_compat::format(Clock::process().now()),
            "ttl_seconds": ttl.as_secs(),
        }))
        .unwrap_or_default(),
    );
    if let Err(e) = store.put(&key, body.clone()).await {
        return Ok(ReadMark {
            store: store.clone(),
            key: None,
            renewer: None,
            warning: Some(format!(
                "could not mark backup {id} as being read ({e}), so a prune running meanwhile may delete it"
            )),
        });
    }
    if !store
        .exists(&layout::backup_object(db, id, layout::MANIFEST))
        .await?
    {
        let _ = store.delete(&key).await;
        return Err(Error::Failed(format!(
            "backup {id} of {db} was deleted (pruned) just as this {job} started: pick another backup"
        )));
    }
    let renewer = {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                // A failed rewrite is tried again next time; the mark has ttl to spare.
                let _ = store.put(&key, body.clone()).await;
            }
        })
    };
    Ok(ReadMark {
        store: store.clone(),
        key: Some(key),
        renewer: Some(renewer),
        warning: None,
    })
}

impl ReadMark {
    /// Stops renewing and deletes the mark.
    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Some(key) = self.key.take() {
            let _ = self.store.delete(&key).await;
        }
    }
}

/// The marks of `db`'s backups at `store_now` (Unix seconds, the store's clock): the backups
/// being read, and the keys of lapsed marks.
pub async fn scan(
    store: &Store,
    db: &DbName,
    store_now: i64,
) -> Result<(BTreeSet<BackupId>, Vec<String>)> {
    let ttl = READ_MARK_TTL.as_secs() as i64;
    let mut live = BTreeSet::new();
    let mut lapsed = Vec::new();
    for o in store.list(&layout::read_marks_prefix(db)).await? {
        let id = o
            .key
            .rsplit('/')
            .nth(1)
            .and_then(|s| BackupId::parse(s).ok());
        match id {
            Some(id) if store_now - o.last_modified < ttl => {
                live.insert(id);
            }
            _ => lapsed.push(o.key),
        }
    }
    Ok((live, lapsed))
}

/// Whether backup `id` has a live mark at `store_now` (one LIST of its marks).
pub async fn scan_backup(
    store: &Store,
    db: &DbName,
    id: &BackupId,
    store_now: i64,
) -> Result<bool> {
    let ttl = READ_MARK_TTL.as_secs() as i64;
    let prefix = format!("{}/{id}", layout::read_marks_prefix(db));
    Ok(store
        .list(&prefix)
        .await?
        .iter()
        .any(|o| store_now - o.last_modified < ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mark_is_live_until_released_and_lapses_by_the_store_clock() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        let db = DbName::parse("app").expect("db");
        let id = BackupId::parse("20260101T000000Z-abcd").expect("id");
        assert!(
            mark(&store, &db, &id, "restore").await.is_err(),
            "no manifest"
        );
        store
            .put(
                &layout::backup_object(&db, &id, layout::MANIFEST),
                Bytes::from_static(b"{}"),
            )
            .await
            .expect("manifest");
        let m = mark(&store, &db, &id, "restore").await.expect("mark");
        let now = crate::time::Timestamp::now().as_second();
        let (live, lapsed) = scan(&store, &db, now).await.expect("scan");
        assert!(live.contains(&id) && lapsed.is_empty());
        let (live, lapsed) = scan(&store, &db, now + 3600).await.expect("scan");
        assert!(live.is_empty() && lapsed.len() == 1);
        m.release().await;
        let (live, lapsed) = scan(&store, &db, now).await.expect("scan");
        assert!(live.is_empty() && lapsed.is_empty());
    }

    #[tokio::test]
    async fn a_mark_that_cannot_be_written_warns_and_lets_the_read_go_on() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        let db = DbName::parse("app").expect("db");
        let id = BackupId::parse("20260101T000000Z-abcd").expect("id");
        // A file where the marks' folder should be: every mark write fails.
        std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
        std::fs::write(dir.path().join("app/readers"), b"").expect("block");
        let m = mark(&store, &db, &id, "restore").await.expect("not fatal");
        assert!(m
            .warning
            .as_deref()
            .unwrap_or("")
            .contains("could not mark"));
        m.release().await;
    }
}
