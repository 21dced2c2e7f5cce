//! One backup written to every configured store (DESIGN.md §9): the blocks pg_dump's stream
//! became are handed to one upload per store (the `Bytes` are shared, not copied), each with
//! its own bounded parts in flight, so memory stays near part size × in flight × stores.
//!
//! Contract: a store that fails (an upload, a put, its checks or its manifest) is marked
//! failed once and for all; its upload is aborted, later writes skip it, and what it stored
//! of this backup is deleted at the end. The others go on. An operation returns an error
//! only when no store is left, the last store's error: with one store, a backup fails
//! exactly as it did before there were several.
//!
//! A store found unreachable before the backup started (its lease could not be taken there,
//! see `jobs::backup`) is failed from the outset ([`Targets::unreachable`]): nothing is sent
//! to it, and nothing is cleaned up there, so a dead store costs the backup no waiting.

use crate::ids::{BackupId, DbName};
use crate::{layout, Error, Result};
use bytes::Bytes;
use futures::future::join_all;
use pgdrill_store::{Store, StoreError, Upload};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A store a backup goes to, with its name and its own transfer settings.
#[derive(Clone, Debug)]
pub struct TargetStore {
    pub name: String,
    pub store: Store,
    /// Multipart part size in bytes (the floor: a large database's parts are larger).
    pub part_size: usize,
    /// Parts in flight to this store.
    pub max_in_flight: usize,
}

/// How one object's uploads are sized, per store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizing {
    /// The smallest part size (from the database's size: S3's 10,000 parts).
    pub(crate) floor: usize,
    /// Whether the store's own part size applies above the floor.
    pub(crate) store_part: bool,
    /// Uploads running at once (a parallel dump's): the store's parts in flight are shared.
    pub(crate) jobs: usize,
}

impl Sizing {
    fn of(self, t: &Target) -> (usize, usize) {
        let part = if self.store_part {
            self.floor.max(t.part_size)
        } else {
            self.floor
        };
        let in_flight = if self.jobs > 1 {
            (t.max_in_flight / self.jobs).max(2)
        } else {
            t.max_in_flight
        };
        (part, in_flight)
    }
}

/// One store a backup is written to.
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) store: Store,
    part_size: usize,
    max_in_flight: usize,
    /// Why this store's copy failed (the first failure), once it did.
    failure: Mutex<Option<String>>,
    /// Seconds from the start to this copy's manifest (or its failure).
    seconds: Mutex<Option<f64>>,
    /// The manifest's stamp as the store listed it (the catalog update's).
    manifest_stamp: Mutex<Option<String>>,
    /// Failed before anything was sent to it (unreachable): nothing to clean up there.
    untouched: AtomicBool,
}

/// What became of one store's copy of a backup (`backup --json` lists them).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoreCopy {
    pub store: String,
    pub ok: bool,
    /// How this store checked the copy it received (`reread`, `sha256`, `etag`, `size`).
    pub check: String,
    pub error: Option<String>,
    pub stored_bytes: u64,
    pub seconds: f64,
    /// The manifest's stamp as the store listed it after writing it (its ETag, or its size
    /// and time on a store that lists none): what the catalog keeps. Not in `--json`.
    #[serde(skip)]
    pub manifest_stamp: Option<String>,
}

/// The stores of one backup, primary first.
pub(crate) struct Targets {
    list: Vec<Target>,
    started: Instant,
    /// What is worth saying about how the backup was written (for the job's log).
    notes: Mutex<Vec<String>>,
}

impl Targets {
    pub(crate) fn new(stores: Vec<TargetStore>) -> Targets {
        Targets {
            list: stores
                .into_iter()
                .map(|t| Target {
                    name: t.name,
                    store: t.store,
                    part_size: t.part_size,
                    max_in_flight: t.max_in_flight,
                    failure: Mutex::new(None),
                    seconds: Mutex::new(None),
                    manifest_stamp: Mutex::new(None),
                    untouched: AtomicBool::new(false),
                })
                .collect(),
            started: Instant::now(),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// How many stores the backup goes to.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn get(&self, i: usize) -> &Target {
        &self.list[i]
    }

    pub(crate) fn is_failed(&self, i: usize) -> bool {
        self.list[i]
            .failure
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(true)
    }

    /// The stores still holding a good copy in the making.
    pub(crate) fn live(&self) -> Vec<usize> {
        (0..self.list.len())
            .filter(|&i| !self.is_failed(i))
            .collect()
    }

    /// Marks store `i` failed with `e` (the first failure is kept).
    pub(crate) fn fail(&self, i: usize, e: &dyn std::fmt::Display) {
        let t = &self.list[i];
        if let Ok(mut f) = t.failure.lock() {
            if f.is_none() {
                *f = Some(e.to_string());
                if let Ok(mut s) = t.seconds.lock() {
                    *s = Some(self.started.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// Marks store `i` failed before anything was written to it (found unreachable): it
    /// gets no request from this backup, not even a cleanup.
    pub(crate) fn unreachable(&self, i: usize, why: &str) {
        if i < self.list.len() {
            self.fail(i, &why);
            self.list[i].untouched.store(true, Ordering::SeqCst);
        }
    }

    /// Whether store `i` may hold something of this backup (it was not failed untouched).
    fn touched(&self, i: usize) -> bool {
        !self.list[i].untouched.load(Ordering::SeqCst)
    }

    /// Keeps `note` for the job's log.
    pub(crate) fn note(&self, note: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(note);
        }
    }

    /// The notes kept so far.
    pub(crate) fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Records that store `i`'s manifest is written (with its listed stamp).
    pub(crate) fn done(&self, i: usize, stamp: Option<String>) {
        if let Ok(mut s) = self.list[i].seconds.lock() {
            *s = Some(self.started.elapsed().as_secs_f64());
        }
        if let Ok(mut e) = self.list[i].manifest_stamp.lock() {
            *e = stamp;
        }
    }

    /// `Ok` while a store is left, else `last` (or the last recorded failure).
    pub(crate) fn any_left(&self, last: Option<Error>) -> Result<()> {
        if !self.live().is_empty() {
            return Ok(());
        }
        Err(last.unwrap_or_else(|| {
            let why = self
                .list
                .iter()
                .rev()
                .find_map(|t| t.failure.lock().ok().and_then(|f| f.clone()))
                .unwrap_or_else(|| "no store was configured".into());
            Error::Failed(why)
        }))
    }

    /// Puts `bytes` at `key` in every live store, in parallel, each copy checked by its
    /// store (`Store::put_checked`).
    pub(crate) async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let live = self.live();
        let results = join_all(
            live.iter()
                .map(|&i| self.list[i].store.put_checked(key, bytes.clone())),
        )
        .await;
        let mut last = None;
        for (i, r) in live.into_iter().zip(results) {
            if let Err(e) = r {
                let e = Error::from(e);
                self.fail(i, &e);
                last = Some(e);
            }
        }
        self.any_left(last)
    }

    /// Deletes what store `i` holds of backup `id` (best effort).
    pub(crate) async fn delete_backup(&self, i: usize, db: &DbName, id: &BackupId) {
        let store = &self.list[i].store;
        if let Ok(objects) = store.list(&layout::backup_dir(db, id)).await {
            for o in objects {
                let _ = store.delete(&o.key).await;
            }
        }
    }

    /// Deletes backup `id` from every store (a backup that failed as a whole).
    pub(crate) async fn delete_everywhere(&self, db: &DbName, id: &BackupId) {
        let touched: Vec<usize> = (0..self.list.len()).filter(|&i| self.touched(i)).collect();
        join_all(touched.into_iter().map(|i| self.delete_backup(i, db, id))).await;
    }

    /// Deletes backup `id` from the stores whose copy failed (the others are complete).
    pub(crate) async fn delete_failed(&self, db: &DbName, id: &BackupId) {
        let failed: Vec<usize> = (0..self.list.len())
            .filter(|&i| self.is_failed(i) && self.touched(i))
            .collect();
        join_all(failed.into_iter().map(|i| self.delete_backup(i, db, id))).await;
    }

    /// Each store's outcome; `stored_bytes` is the copy's size when complete, else 0.
    pub(crate) fn copies(&self, stored_bytes: u64) -> Vec<StoreCopy> {
        self.list
            .iter()
            .map(|t| {
                let error = t.failure.lock().ok().and_then(|f| f.clone());
                StoreCopy {
                    store: t.name.clone(),
                    ok: error.is_none(),
                    check: t.store.copy_check().to_string(),
                    stored_bytes: if error.is_none() { stored_bytes } else { 0 },
                    error,
                    seconds: t
                        .seconds
                        .lock()
                        .ok()
                        .and_then(|s| *s)
                        .unwrap_or_else(|| self.started.elapsed().as_secs_f64()),
                    manifest_stamp: t.manifest_stamp.lock().ok().and_then(|e| e.clone()),
                }
            })
            .collect()
    }
}

/// One multipart upload per live store of the same object.
pub(crate) struct FanUpload {
    targets: Arc<Targets>,
    uploads: Vec<(usize, Option<Upload>)>,
}

impl FanUpload {
    /// Starts the upload of `key` in every live store.
    pub(crate) async fn open(
        targets: &Arc<Targets>,
        key: &str,
        sizing: Sizing,
    ) -> Result<FanUpload> {
        let live = targets.live();
        let opened = join_all(live.iter().map(|&i| {
            let t = &targets.list[i];
            let (part_size, max_in_flight) = sizing.of(t);
            t.store.upload(key, part_size, max_in_flight)
        }))
        .await;
        let mut uploads = Vec::new();
        let mut last = None;
        for (i, r) in live.into_iter().zip(opened) {
            match r {
                Ok(u) => uploads.push((i, Some(u))),
                Err(e) => {
                    let e = Error::from(e);
                    targets.fail(i, &e);
                    last = Some(e);
                }
            }
        }
        if uploads.is_empty() {
            targets.any_left(last)?;
            return Err(Error::Failed("no store is left to write to".into()));
        }
        Ok(FanUpload {
            targets: targets.clone(),
            uploads,
        })
    }

    /// Aborts the uploads of stores another part of the backup found failed.
    async fn drop_failed(&mut self) {
        let targets = &self.targets;
        let mut aborts = Vec::new();
        for (i, u) in self.uploads.iter_mut() {
            if u.is_some() && targets.is_failed(*i) {
                if let Some(u) = u.take() {
                    aborts.push(u.abort());
                }
            }
        }
        join_all(aborts).await;
    }

    /// Queues `data` in every store's upload (each waits for its own capacity); a store
    /// that fails is aborted and left. Fails only when no store is left: with the last
    /// store's error.
    pub(crate) async fn write(&mut self, data: Bytes) -> std::result::Result<(), StoreError> {
        self.drop_failed().await;
        let writes = self.uploads.iter_mut().filter_map(|(i, u)| {
            let data = data.clone();
            u.as_mut().map(|u| async move { (*i, u.write(data).await) })
        });
        let results = join_all(writes).await;
        let mut last = None;
        for (i, r) in results {
            if let Err(e) = r {
                self.targets.fail(i, &e);
                last = Some(e);
            }
        }
        if let Some(e) = last {
            self.drop_failed().await;
            if self.uploads.iter().all(|(_, u)| u.is_none()) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Completes every live store's upload; fails only when none completed.
    pub(crate) async fn finish(mut self) -> std::result::Result<(), StoreError> {
        self.drop_failed().await;
        let targets = self.targets.clone();
        let finishing = self
            .uploads
            .iter_mut()
            .filter_map(|(i, u)| u.take().map(|u| async move { (*i, u.finish().await) }));
        let results = join_all(finishing).await;
        let mut last = None;
        let mut any = false;
        for (i, r) in results {
            match r {
                Ok(_) => any = true,
                Err(e) => {
                    targets.fail(i, &e);
                    last = Some(e);
                }
            }
        }
        match (any, last) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Aborts every store's upload and waits for the stores to discard the parts.
    pub(crate) async fn abort(mut self) {
        let aborts: Vec<_> = self
            .uploads
            .iter_mut()
            .filter_map(|(_, u)| u.take().map(|u| u.abort()))
            .collect();
        join_all(aborts).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, store: Store) -> TargetStore {
        TargetStore {
            name: name.into(),
            store,
            part_size: 5 << 20,
            max_in_flight: 2,
        }
    }

    /// A folder store whose folder is then replaced by a file: every write fails.
    fn broken(dir: &std::path::Path) -> Store {
        let path = dir.join("broken");
        let store = Store::open_folder(&path).expect("open");
        std::fs::remove_dir(&path).expect("rmdir");
        std::fs::write(&path, b"not a folder").expect("file");
        store
    }

    #[tokio::test]
    async fn a_failing_store_is_left_and_the_others_get_every_byte() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = Store::open_folder(dir.path().join("good")).expect("open");
        let targets = Arc::new(Targets::new(vec![
            target("bad", broken(dir.path())),
            target("good", good.clone()),
        ]));
        targets
            .put("a/small", Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert_eq!(targets.live(), vec![1]);
        let mut up = FanUpload::open(
            &targets,
            "a/big",
            Sizing {
                floor: 0,
                store_part: true,
                jobs: 1,
            },
        )
        .await
        .expect("open");
        for _ in 0..3 {
            up.write(Bytes::from(vec![7u8; 3 << 20]))
                .await
                .expect("write");
        }
        up.finish().await.expect("finish");
        assert_eq!(good.get("a/big").await.expect("get").len(), 9 << 20);
        targets.done(1, None);
        let copies = targets.copies(42);
        assert_eq!(copies[0].store, "bad");
        assert!(!copies[0].ok && copies[0].error.is_some() && copies[0].stored_bytes == 0);
        assert!(copies[1].ok && copies[1].error.is_none() && copies[1].stored_bytes == 42);
    }

    /// Issue 19: each store checks its own copy. A store whose copy of the big object
    /// arrives corrupted (a folder re-reads it) is failed and left; the other's is whole.
    #[tokio::test]
    async fn a_store_whose_copy_fails_its_check_is_left() {
        let dir = tempfile::tempdir().expect("tmp");
        let bad = Store::open_folder(dir.path().join("bad"))
            .expect("open")
            .with_corrupted_writes(".bad");
        let good = Store::open_folder(dir.path().join("good")).expect("open");
        let targets = Arc::new(Targets::new(vec![
            target("bad", bad.clone()),
            target("good", good.clone()),
        ]));
        targets
            .put("a/SHA256SUMS", Bytes::from_static(b"sums"))
            .await
            .expect("put");
        assert_eq!(targets.live(), vec![0, 1], "an intact put passes its check");
        let mut up = FanUpload::open(
            &targets,
            "a/dump.bad",
            Sizing {
                floor: 0,
                store_part: true,
                jobs: 1,
            },
        )
        .await
        .expect("open");
        up.write(Bytes::from(vec![5u8; 6 << 20]))
            .await
            .expect("write");
        up.finish().await.expect("finish");
        assert_eq!(targets.live(), vec![1]);
        assert_eq!(good.get("a/dump.bad").await.expect("get").len(), 6 << 20);
        assert!(!bad.exists("a/dump.bad").await.expect("exists"));
        let copies = targets.copies(1);
        assert_eq!((copies[0].ok, copies[0].check.as_str()), (false, "reread"));
        let why = copies[0].error.clone().unwrap_or_default();
        assert!(why.contains("reread check"), "{why}");
        // A corrupted small object fails its store too.
        let targets = Targets::new(vec![target("bad", bad), target("good", good)]);
        targets
            .put("a/index.bad", Bytes::from_static(b"index"))
            .await
            .expect("put");
        assert_eq!(targets.live(), vec![1]);
    }

    /// Issue 19: a store found unreachable before the backup (its lease could not be taken)
    /// gets no request at all: no object, no cleanup; the others get every byte.
    #[tokio::test]
    async fn a_store_failed_as_unreachable_gets_no_request() {
        let dir = tempfile::tempdir().expect("tmp");
        let dead = Store::open_folder(dir.path().join("dead")).expect("open");
        let good = Store::open_folder(dir.path().join("good")).expect("open");
        // Something of another writer under the backup's folder: a cleanup would delete it.
        let db = DbName::parse("app").expect("db");
        let id = BackupId::parse("20261206T020000Z-ab12").expect("id");
        let other = layout::backup_object(&db, &id, "other");
        dead.put(&other, Bytes::from_static(b"o"))
            .await
            .expect("put");
        let targets = Arc::new(Targets::new(vec![
            target("dead", dead.clone()),
            target("good", good.clone()),
        ]));
        targets.unreachable(0, "the store could not be reached when the backup started");
        let key = layout::backup_object(&db, &id, "small");
        targets
            .put(&key, Bytes::from_static(b"x"))
            .await
            .expect("put");
        let mut up = FanUpload::open(
            &targets,
            &layout::backup_object(&db, &id, "big"),
            Sizing {
                floor: 0,
                store_part: true,
                jobs: 1,
            },
        )
        .await
        .expect("open");
        up.write(Bytes::from(vec![1u8; 1 << 20]))
            .await
            .expect("write");
        up.finish().await.expect("finish");
        targets.delete_failed(&db, &id).await;
        assert_eq!(dead.list("").await.expect("list").len(), 1, "untouched");
        assert!(good.exists(&key).await.expect("exists"));
        let copies = targets.copies(1);
        assert!(!copies[0].ok && copies[1].ok);
        assert!(copies[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("could not be reached")));
        targets.delete_everywhere(&db, &id).await;
        assert_eq!(dead.list("").await.expect("list").len(), 1, "untouched");
        assert!(!good.exists(&key).await.expect("exists"));
    }

    #[tokio::test]
    async fn with_every_store_failed_the_last_error_is_returned() {
        let dir = tempfile::tempdir().expect("tmp");
        let targets = Targets::new(vec![target("only", broken(dir.path()))]);
        let e = targets
            .put("a/small", Bytes::from_static(b"x"))
            .await
            .expect_err("no store left");
        assert!(!e.to_string().is_empty());
        assert!(targets.live().is_empty());
        assert!(targets.any_left(None).is_err());
    }
}
