//! `<db>/catalog.json`: a per-database cache of what `list`, `status` and the dashboard read
//! (docs/FORMAT.md). Derived data: the manifests and drill results stay the truth.
//!
//! Each entry carries the *stamp* (ETag, or size and time) its source object had when it was
//! read. One LIST of the database's `backups/` and `drills/` folders gives every manifest's
//! and result's current stamp ([`Store::list_folders_with`]: on a folder store a directory
//! read and a `stat` per backup, not a walk of every object), so a reader sees at once which entries are still good, which objects are
//! new (written by an older pgdrill that did not update the catalog, or while the catalog
//! write failed), and which are gone (pruned, deleted by hand): it reads only the new or
//! changed ones and drops the gone ones. A missing, unreadable or stale catalog is therefore
//! rebuilt by any reader, and a stale one can never be *served*: the worst a lost update
//! costs is the GETs the catalog exists to save.
//!
//! Writes are compare-and-swap on the catalog's ETag (create-if-absent when there is none),
//! the catalog read *before* the LIST: a writer whose swap succeeds wrote a catalog at least as
//! new as every manifest that existed when it started, and one whose swap fails reads and
//! lists again. Two writers never lose each other's entries.

use crate::backup::StoreCopy;
use crate::catalog::{newest_first, not_a_backup, read_manifest, Listing, READ_AHEAD};
use crate::drill::evidence::DrillResult;
use crate::ids::{BackupId, DbName, DrillId};
use crate::layout;
use crate::manifest::Manifest;
use crate::{Error, Result};
use pgdrill_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

mod entry;
pub use entry::BackupSummary;

/// `format_version` of `catalog.json`. A catalog of another version is rebuilt (format 1
/// kept whole manifests; see [`BackupSummary`]); one of a newer version is never
/// overwritten (a newer pgdrill sharing the store keeps its own).
pub const FORMAT_VERSION: u32 = 2;

/// The largest catalog read (200 backups of a database with a few hundred tables fit many
/// times over); a larger object reads as unreadable and is rebuilt.
const MAX_BYTES: u64 = 256 << 20;

/// Compare-and-swap attempts before giving up on storing the catalog (the listing returned
/// is right either way).
const ATTEMPTS: usize = 4;

/// What `<db>/catalog.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CatalogFile {
    pub format_version: u32,
    /// Backups with a manifest, newest id first.
    pub backups: Vec<BackupEntry>,
    /// Drills with a `result.json`, newest id first.
    #[serde(default)]
    pub drills: Vec<DrillEntry>,
}

/// One backup: the summary of its manifest, or why the manifest cannot be read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupEntry {
    pub id: BackupId,
    /// The manifest object's stamp when it was read.
    pub stamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<BackupSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One drill's `result.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrillEntry {
    pub id: String,
    pub stamp: String,
    pub result: DrillResult,
}

/// A database's backups and drills as the catalog gives them.
#[derive(Debug, Default)]
pub struct Cached {
    /// As [`crate::catalog::list`] returns it, except that each manifest is what the
    /// catalog keeps of it ([`BackupSummary::to_manifest`]): its id, database, snapshot,
    /// start and end, stage seconds, raw and stored bytes, encryption, layout, table count
    /// (`content.tables` has one unnamed entry per table), `server.version` and
    /// `tool.version`; everything else (`objects`, `source`, `pg_dump`, `compression`, the
    /// table names, `policy`, `host`) is empty. Use [`crate::catalog::read_manifest`] for a
    /// whole manifest (restore, verify, prune's deletes, `show`).
    pub listing: Listing,
    /// As [`crate::drill::list`] returns them: newest first.
    pub drills: Vec<DrillResult>,
}

/// [`crate::catalog::list`] through the catalog: one LIST, one GET of the catalog, and a GET per
/// backup the catalog does not know yet. The manifests are summaries (see [`Cached`]).
pub async fn list(store: &Store, db: &DbName) -> Result<Listing> {
    Ok(load(store, db).await?.listing)
}

/// Backups and drills through the catalog (what `status` and the dashboard read), storing
/// the catalog again when it was missing or stale (best effort: a read-only credential
/// still gets the right answer).
pub async fn load(store: &Store, db: &DbName) -> Result<Cached> {
    refresh(store, db).await
}

/// Brings the catalog up to date after a job changed the store (a backup's manifest written,
/// a drill's result, a prune's deletes). Best effort, like the failure record: a store that
/// fails now leaves the catalog stale, and the next reader rebuilds what is missing; the job
/// is never made to fail by its own bookkeeping.
pub async fn update(store: &Store, db: &DbName) {
    let _ = refresh(store, db).await;
}

/// A manifest this process just wrote to a store, with its stamp as the store listed it
/// after the write ([`stamp`]; `publish` lists the backup's folder to confirm it).
struct Written {
    id: BackupId,
    stamp: Option<String>,
    summary: BackupSummary,
}

impl Written {
    fn entry(&self, stamp: String) -> BackupEntry {
        BackupEntry {
            id: self.id.clone(),
            stamp,
            summary: Some(self.summary.clone()),
            unreadable: None,
        }
    }
}

impl Listed {
    /// Adds (or replaces) the entry of `k`, listed before it was written, at its place
    /// (newest id first), with its listed stamp.
    fn add(&mut self, k: &Written) {
        self.backups.retain(|e| e.id != k.id);
        let at = self
            .backups
            .iter()
            .position(|e| e.id.as_str() < k.id.as_str())
            .unwrap_or(self.backups.len());
        let stamp = k.stamp.clone().unwrap_or_default();
        self.backups.insert(at, k.entry(stamp));
    }
}

/// A catalog read, then (when that worked) the store listed and merged with it: the first
/// half of an update, made before the job's own write.
struct Prepared {
    stored: Stored,
    listed: Option<Listed>,
}

async fn prepare(store: &Store, db: &DbName) -> Result<Prepared> {
    let stored = read(store, db).await?;
    // The backup running has a folder without a manifest yet: not listed again.
    let listed = list_entries(store, db, &stored, None, false).await.ok();
    Ok(Prepared { stored, listed })
}

/// A backup's catalog updates begun while it runs ([`Prefetch::start`] beside the dump):
/// each store's catalog read, then its `backups/` and `drills/` listed and the manifests the
/// catalog lacks read, so that once the manifest is written (and listed: its stamp) only the
/// compare-and-swap of the catalog is left. The catalog is still read before the
/// listing, and the swap is on the ETag read: a catalog changed since (a drill's result, a
/// prune) makes the swap fail and the update start again from a fresh read. Dropped, it
/// stops what is still running.
pub struct Prefetch {
    db: DbName,
    /// Per store, in the order of the backup's copies: `None` for one left alone (found
    /// unreachable before the backup began).
    stores: Vec<Option<(Store, tokio::task::JoinHandle<Option<Prepared>>)>>,
}

impl Prefetch {
    /// Starts reading the catalogs of `stores`: the job's store first, then the other
    /// stores of the backup in the order of its copies (`Backup::copies`); `None` for a
    /// store that must get no request (it is neither read now nor updated later).
    pub fn start(stores: Vec<Option<Store>>, db: &DbName) -> Prefetch {
        let stores = stores
            .into_iter()
            .map(|store| {
                store.map(|store| {
                    let (s, db) = (store.clone(), db.clone());
                    let task = tokio::spawn(async move { prepare(&s, &db).await.ok() });
                    (store, task)
                })
            })
            .collect();
        Prefetch {
            db: db.clone(),
            stores,
        }
    }

    /// After backup `m` was written: the catalog of each store holding a good copy (the
    /// job's store also when the backup lists no copies) brought up to date with `m` (never
    /// read back), all at once. Best effort, as [`update`].
    pub async fn update(mut self, m: &Manifest, copies: &[StoreCopy]) {
        let stores = std::mem::take(&mut self.stores);
        let db = &self.db;
        let summary = BackupSummary::of(m);
        futures::future::join_all(stores.into_iter().enumerate().filter_map(|(i, slot)| {
            let (store, task) = slot?;
            let copy = copies.get(i);
            // A failed copy's store (the primary's too: it may be down) is left alone.
            if copy.is_some_and(|c| !c.ok) || (i > 0 && copy.is_none()) {
                task.abort();
                return None;
            }
            let known = copy.map(|c| Written {
                id: m.backup_id.clone(),
                stamp: c.manifest_stamp.clone(),
                summary: summary.clone(),
            });
            Some(async move {
                let first = task.await.ok().flatten();
                let _ = refresh_with(&store, db, first, known.as_ref()).await;
            })
        }))
        .await;
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        for (_, task) in self.stores.iter().flatten() {
            task.abort();
        }
    }
}

/// The catalog and its ETag; an empty one when it is missing or unreadable, `writable`
/// false when it is of a newer format.
struct Stored {
    file: CatalogFile,
    etag: Option<String>,
    exists: bool,
    writable: bool,
}

/// Only the version of a catalog that is not of this one's format (everything else is
/// skipped, not built).
#[derive(Deserialize)]
struct Version {
    format_version: Option<u64>,
}

async fn read(store: &Store, db: &DbName) -> Result<Stored> {
    let key = layout::catalog_key(db);
    let (body, info) = match store.get_prefix(&key, MAX_BYTES).await {
        Ok(got) => got,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Stored {
                file: CatalogFile::default(),
                etag: None,
                exists: false,
                writable: true,
            })
        }
        Err(e) => return Err(e.into()),
    };
    // Parsed once as this format; only when that fails (an older or newer format, a
    // damaged object) is the version looked at.
    let (file, version) = match serde_json::from_slice::<CatalogFile>(&body) {
        Ok(f) if f.format_version == FORMAT_VERSION => (f, Some(u64::from(FORMAT_VERSION))),
        _ => (
            CatalogFile::default(),
            serde_json::from_slice::<Version>(&body)
                .ok()
                .and_then(|v| v.format_version),
        ),
    };
    Ok(Stored {
        file,
        etag: info.etag,
        exists: true,
        writable: version.is_none_or(|v| v <= u64::from(FORMAT_VERSION)),
    })
}

/// What one LIST of `backups/` shows: manifests with their stamps (newest id first), and the
/// folders without one with their newest object's time.
struct Folders {
    manifests: Vec<(BackupId, String)>,
    incomplete: Vec<(BackupId, i64)>,
}

/// One LIST of `backups/` ([`Store::list_folders_with`]: on a folder store one directory
/// read and a `stat` of each folder's manifest); with `incomplete`, a folder without a
/// manifest (rare: a backup running or failed) is listed again for its newest object's
/// time, else it is skipped.
async fn folders(store: &Store, db: &DbName, incomplete: bool) -> Result<Folders> {
    let prefix = layout::backups_prefix(db);
    let mut out = Folders {
        manifests: Vec::new(),
        incomplete: Vec::new(),
    };
    for (folder, manifest) in store
        .list_folders_with(&prefix, layout::MANIFEST)
        .await?
        .into_iter()
        .rev()
    {
        let Ok(id) = BackupId::parse(&folder) else {
            continue;
        };
        match manifest {
            Some(o) => out.manifests.push((id, o.stamp())),
            None if !incomplete => {}
            None => {
                let t = store
                    .list(&format!("{prefix}/{folder}"))
                    .await?
                    .iter()
                    .map(|o| o.last_modified)
                    .max()
                    .unwrap_or(0);
                out.incomplete.push((id, t));
            }
        }
    }
    Ok(out)
}

/// Drill results with their stamps, newest id first. One LIST.
async fn drill_results(store: &Store, db: &DbName) -> Result<Vec<(DrillId, String)>> {
    let mut out = Vec::new();
    for (folder, result) in store
        .list_folders_with(&layout::drills_prefix(db), "result.json")
        .await?
    {
        if let (Ok(id), Some(o)) = (DrillId::parse(&folder), result) {
            out.push((id, o.stamp()));
        }
    }
    out.sort_by(|a, b| b.0.as_str().cmp(a.0.as_str()));
    Ok(out)
}

async fn refresh(store: &Store, db: &DbName) -> Result<Cached> {
    refresh_with(store, db, None, None).await
}

/// What one LIST of `backups/` and one of `drills/` give, made into entries.
struct Listed {
    backups: Vec<BackupEntry>,
    drills: Vec<DrillEntry>,
    incomplete: Vec<(BackupId, i64)>,
}

/// The catalog's entries for what the store lists now (the caller read the catalog
/// first): the old ones whose stamp still matches, the others read. `known`, a manifest the
/// caller just wrote, is taken as it is instead of read back when it is listed with the
/// stamp the caller saw (or, without one, with any stamp: the key is written once,
/// create-if-absent). Without `incomplete` a folder without a manifest is skipped (not
/// listed again for its time).
async fn list_entries(
    store: &Store,
    db: &DbName,
    stored: &Stored,
    known: Option<&Written>,
    incomplete: bool,
) -> Result<Listed> {
    let (folders, drills) =
        futures::try_join!(folders(store, db, incomplete), drill_results(store, db))?;
    let backups = entries(
        &stored.file.backups,
        folders.manifests,
        |id, stamp| async move {
            if let Some(k) = known.filter(|k| k.id == id) {
                if k.stamp.as_ref().is_none_or(|e| *e == stamp) {
                    return Ok(Some(k.entry(stamp)));
                }
            }
            let (summary, unreadable) = match read_manifest(store, db, &id).await {
                Ok(m) => (Some(BackupSummary::of(&m)), None),
                Err(e) if not_a_backup(&e) => (None, Some(e.to_string())),
                Err(e) => return Err(e),
            };
            Ok(Some(BackupEntry {
                id,
                stamp,
                summary,
                unreadable,
            }))
        },
    )
    .await?;
    let drills = entries(&stored.file.drills, drills, |id, stamp| async move {
        match store
            .get(&layout::drill_object(db, &id, "result.json"))
            .await
        {
            // A result that is not valid JSON is left out, as `drill::list` does.
            Ok(bytes) => Ok(serde_json::from_slice::<DrillResult>(&bytes)
                .ok()
                .map(|result| DrillEntry {
                    id: id.as_str().to_string(),
                    stamp,
                    result,
                })),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::from(e)),
        }
    })
    .await?;
    Ok(Listed {
        backups,
        drills,
        incomplete: folders.incomplete,
    })
}

/// Read, list, merge and swap until the swap succeeds (or [`ATTEMPTS`] ran out). `first`:
/// a read (and perhaps a listing after it) made earlier, used by the first attempt only;
/// `known`: a manifest the caller just wrote (see [`list_entries`]). A listing made before
/// `known` was written is used only when `known` has its stamp (its entry is added to it);
/// otherwise the store is listed again, still after the read.
async fn refresh_with(
    store: &Store,
    db: &DbName,
    mut first: Option<Prepared>,
    known: Option<&Written>,
) -> Result<Cached> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The catalog first, then the LIST: see the module comment.
        let (stored, early) = match first.take() {
            Some(p) => (p.stored, p.listed),
            None => (read(store, db).await?, None),
        };
        let listed = match (early, known) {
            (Some(mut l), Some(k)) if k.stamp.is_some() => {
                l.add(k);
                l
            }
            _ => list_entries(store, db, &stored, known, true).await?,
        };
        let Listed {
            backups,
            drills,
            incomplete,
        } = listed;
        let file = CatalogFile {
            format_version: FORMAT_VERSION,
            backups,
            drills,
        };
        let current = stored.exists && same_stamps(&stored.file, &file);
        if current || !stored.writable || attempt > ATTEMPTS {
            return Ok(cached(db, file, incomplete));
        }
        match write(store, db, &file, stored.etag.as_deref()).await {
            Ok(()) => return Ok(cached(db, file, incomplete)),
            // Someone else wrote meanwhile: read, list and merge again.
            Err(StoreError::AlreadyExists { .. } | StoreError::NotFound { .. }) => continue,
            // Read-only credentials, a store that is down: the answer is right anyway.
            Err(_) => return Ok(cached(db, file, incomplete)),
        }
    }
}

async fn write(
    store: &Store,
    db: &DbName,
    file: &CatalogFile,
    etag: Option<&str>,
) -> std::result::Result<(), StoreError> {
    let key = layout::catalog_key(db);
    // A catalog always encodes (plain data); an empty body would only be rebuilt by readers.
    let body = serde_json::to_vec(file).unwrap_or_default();
    match etag {
        Some(e) => store.put_if_match(&key, body.into(), e).await?,
        None => store.put_if_absent(&key, body.into()).await?,
    };
    Ok(())
}

/// An id as a catalog entry names it.
trait Id {
    fn name(&self) -> &str;
}

impl Id for BackupId {
    fn name(&self) -> &str {
        self.as_str()
    }
}

impl Id for DrillId {
    fn name(&self) -> &str {
        self.as_str()
    }
}

/// A catalog entry: found again by its object's id and stamp.
trait Entry: Clone {
    fn key(&self) -> (&str, &str);
}

impl Entry for BackupEntry {
    fn key(&self) -> (&str, &str) {
        (self.id.as_str(), &self.stamp)
    }
}

impl Entry for DrillEntry {
    fn key(&self) -> (&str, &str) {
        (&self.id, &self.stamp)
    }
}

/// The entries for `found` (`(id, stamp)`, in the order wanted): the old catalog's where
/// the stamp still matches, the others made by `read` ([`READ_AHEAD`] at once; `None`
/// leaves the object out). A store failure is an error, as in [`crate::catalog::list`].
async fn entries<E, I, F, Fut>(old: &[E], found: Vec<(I, String)>, read: F) -> Result<Vec<E>>
where
    E: Entry,
    I: Id,
    F: Fn(I, String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<E>>>,
{
    use futures::StreamExt;
    let known: HashMap<(&str, &str), &E> = old.iter().map(|e| (e.key(), e)).collect();
    let mut out = Vec::with_capacity(found.len());
    let mut missing = Vec::new();
    for (i, (id, s)) in found.into_iter().enumerate() {
        match known.get(&(id.name(), s.as_str())) {
            Some(e) => out.push(Some((*e).clone())),
            None => {
                out.push(None);
                missing.push((i, id, s));
            }
        }
    }
    let mut made = futures::stream::iter(missing)
        .map(|(i, id, s)| {
            let r = read(id, s);
            async move { (i, r.await) }
        })
        .buffer_unordered(READ_AHEAD);
    while let Some((i, r)) = made.next().await {
        out[i] = r?;
    }
    Ok(out.into_iter().flatten().collect())
}

/// Whether two catalogs hold the same objects at the same stamps (then their entries are the
/// same: an entry is only ever reused at its stamp).
fn same_stamps(a: &CatalogFile, b: &CatalogFile) -> bool {
    a.format_version == b.format_version
        && a.backups.len() == b.backups.len()
        && a.drills.len() == b.drills.len()
        && a.backups
            .iter()
            .zip(&b.backups)
            .all(|(x, y)| x.id == y.id && x.stamp == y.stamp)
        && a.drills
            .iter()
            .zip(&b.drills)
            .all(|(x, y)| x.id == y.id && x.stamp == y.stamp)
}

fn cached(db: &DbName, file: CatalogFile, incomplete: Vec<(BackupId, i64)>) -> Cached {
    let mut listing = Listing {
        incomplete,
        ..Listing::default()
    };
    for e in file.backups {
        match (e.summary, e.unreadable) {
            (Some(s), _) => listing.complete.push(s.to_manifest(db, &e.id)),
            (None, why) => listing
                .unreadable
                .push((e.id, why.unwrap_or_else(|| "unreadable".into()))),
        }
    }
    listing.complete.sort_by(newest_first);
    let mut drills: Vec<DrillResult> = file.drills.into_iter().map(|e| e.result).collect();
    crate::drill::sort_newest_first(&mut drills);
    Cached { listing, drills }
}

#[cfg(test)]
mod tests;
