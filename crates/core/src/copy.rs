//! `pgdrill copy` (DESIGN.md §9): backfills one store with the backups another holds. The
//! stored objects are copied as they are (encrypted, compressed: no key is needed), each
//! streamed (bounded memory: one multipart upload's parts in flight) and checked against the
//! manifest's size and sha256 while it streams; SHA256SUMS is checked against the manifest;
//! every object is confirmed stored in the target; the manifest is written last there
//! (put-if-absent), byte for byte the source's. A copy that fails deletes what it stored and
//! writes no manifest. A backup already complete in the target is skipped; one without its
//! manifest in the source is not copied.
//!
//! Like every other writer of a database's backups, a copy holds the database's lease (in
//! the primary store, where leases live) while it copies that database, and confirms it
//! before each manifest: a prune (or a backup) of the target never runs at the same time, so
//! a copy can neither resurrect a backup retention just deleted nor lose objects to a prune
//! that took its half-copied backup for an abandoned one. With `--all`, the database's drill
//! evidence (`<db>/drills/<drill-id>/`) the target lacks is copied too, `result.json` last:
//! a store that becomes the primary keeps the proof that its backups restore.

use crate::cancel::Cancel;
use crate::ids::{BackupId, DbName};
use crate::lease::Lease;
use crate::manifest::Manifest;
use crate::{catalog, layout, Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use pgdrill_store::{Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Instant;

/// Objects of one backup copied at once.
const OBJECTS_AT_ONCE: usize = 2;

/// A store and its name.
pub struct NamedStore<'a> {
    pub name: &'a str,
    pub store: &'a Store,
}

/// Which backups to copy.
pub enum Selection {
    /// A backup id, or `latest`.
    One(String),
    /// Every complete backup.
    All,
}

pub struct CopyJob<'a> {
    pub from: NamedStore<'a>,
    pub to: NamedStore<'a>,
    pub databases: Vec<DbName>,
    pub selection: Selection,
    /// The target's multipart part size and parts in flight.
    pub part_size: usize,
    pub max_in_flight: usize,
    pub cancel: Cancel,
    /// Where the databases' leases live (the primary store); `None` copies without one.
    pub lease_store: Option<&'a Store>,
}

/// One drill's evidence copied (`--all`).
#[derive(Clone, Debug, Serialize)]
pub struct DrillCopied {
    pub database: DbName,
    pub drill_id: String,
    /// Files copied, `result.json` included.
    pub files: usize,
}

/// One backup copied.
#[derive(Clone, Debug, Serialize)]
pub struct Copied {
    pub database: DbName,
    pub backup_id: BackupId,
    /// Objects copied, the manifest included.
    pub objects: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// One backup not copied, and why (already complete in the target, incomplete in the source).
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub database: DbName,
    pub backup_id: BackupId,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: Vec<Copied>,
    pub skipped: Vec<Skipped>,
    /// Drill evidence copied (`--all`): drills the target had no `result.json` of.
    pub drills: Vec<DrillCopied>,
    /// Backups whose copy failed (nothing of them left in the target), with the error.
    pub failures: Vec<(DbName, Option<BackupId>, Error)>,
}

/// Copies the selected backups; stops early on cancel. `Err` only for a selection that does
/// not resolve (an unknown id, no backup at all).
pub async fn run(job: &CopyJob<'_>) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    for db in &job.databases {
        let ids = match &job.selection {
            Selection::One(sel) => {
                let m = catalog::resolve(job.from.store, db, sel)
                    .await
                    .map_err(|e| match e {
                        Error::Invalid(m) => {
                            Error::Invalid(format!("in store {}: {m}", job.from.name))
                        }
                        other => other,
                    })?
                    .manifest;
                vec![m.backup_id]
            }
            Selection::All => match catalog::list(job.from.store, db).await {
                Ok(listing) => {
                    for (id, _) in listing.incomplete {
                        report.skipped.push(Skipped {
                            database: db.clone(),
                            backup_id: id,
                            reason: format!(
                                "incomplete in store {} (no manifest): not copied",
                                job.from.name
                            ),
                        });
                    }
                    let mut ids: Vec<BackupId> =
                        listing.complete.into_iter().map(|m| m.backup_id).collect();
                    ids.sort();
                    ids
                }
                Err(e) => {
                    report.failures.push((db.clone(), None, e));
                    continue;
                }
            },
        };
        let lease = match job.lease_store {
            Some(store) => {
                let ttl = crate::jobs::slot::lease_ttl();
                match crate::lease::acquire(store, db, "copy", ttl).await {
                    Ok(l) => Some(l),
                    Err(e) if crate::stores::unreachable(&e) => {
                        let e = crate::jobs::prune::primary_only(e, "a copy");
                        report.failures.push((db.clone(), None, e));
                        continue;
                    }
                    Err(e) => {
                        report.failures.push((db.clone(), None, e));
                        continue;
                    }
                }
            }
            None => None,
        };
        copy_database(job, db, ids, lease.as_ref(), &mut report).await;
        if let Some(l) = lease {
            l.release().await;
        }
        if job.cancel.is_cancelled() {
            return Ok(report);
        }
    }
    Ok(report)
}

/// Copies backups `ids` of `db` (and with `--all` its drill evidence) under `lease`.
async fn copy_database(
    job: &CopyJob<'_>,
    db: &DbName,
    ids: Vec<BackupId>,
    lease: Option<&Lease>,
    report: &mut CopyReport,
) {
    for id in ids {
        if job.cancel.is_cancelled() {
            report.failures.push((
                db.clone(),
                Some(id),
                Error::Failed("the copy was interrupted by a signal".into()),
            ));
            return;
        }
        match one(job, db, &id, lease).await {
            Ok(Some(c)) => report.copied.push(c),
            Ok(None) => report.skipped.push(Skipped {
                database: db.clone(),
                backup_id: id,
                reason: format!("already complete in store {}", job.to.name),
            }),
            Err(e) => report.failures.push((db.clone(), Some(id), e)),
        }
    }
    if matches!(job.selection, Selection::All) {
        match copy_drills(job, db, lease).await {
            Ok(mut drills) => report.drills.append(&mut drills),
            Err(e) => report.failures.push((db.clone(), None, e)),
        }
    }
}

/// Copies the drill evidence of `db` the target lacks (no `result.json`), each drill's
/// files with `result.json` last; a drill still running in the source (no `result.json`)
/// is not copied.
async fn copy_drills(
    job: &CopyJob<'_>,
    db: &DbName,
    lease: Option<&Lease>,
) -> Result<Vec<DrillCopied>> {
    let (from, to) = (job.from.store, job.to.store);
    let mut out = Vec::new();
    for dir in from.list_dirs(&layout::drills_prefix(db)).await? {
        let Ok(id) = crate::ids::DrillId::parse(&dir) else {
            continue;
        };
        let result_key = layout::drill_object(db, &id, "result.json");
        if to.exists(&result_key).await? {
            continue;
        }
        let files = from
            .list(&format!("{}/{dir}", layout::drills_prefix(db)))
            .await?;
        if !files.iter().any(|f| f.key == result_key) {
            continue;
        }
        let mut ordered: Vec<&pgdrill_store::ObjectInfo> =
            files.iter().filter(|f| f.key != result_key).collect();
        ordered.extend(files.iter().filter(|f| f.key == result_key));
        if let Some(l) = lease {
            l.confirm().await?;
        }
        for f in &ordered {
            let bytes = from.get(&f.key).await?;
            to.put_checked(&f.key, bytes).await?;
        }
        out.push(DrillCopied {
            database: db.clone(),
            drill_id: dir,
            files: ordered.len(),
        });
    }
    Ok(out)
}

/// Copies backup `id` of `db`; `None` when the target already holds it complete.
async fn one(
    job: &CopyJob<'_>,
    db: &DbName,
    id: &BackupId,
    lease: Option<&Lease>,
) -> Result<Option<Copied>> {
    let started = Instant::now();
    let to = job.to.store;
    let manifest_key = layout::backup_object(db, id, layout::MANIFEST);
    if to.exists(&manifest_key).await? {
        return Ok(None);
    }
    let json = job.from.store.get(&manifest_key).await.map_err(|e| match e {
        StoreError::NotFound { .. } => Error::Invalid(format!(
            "backup {id} of {db} is not complete in store {} (no manifest): there is nothing to copy",
            job.from.name
        )),
        other => other.into(),
    })?;
    let m = Manifest::from_json(&json, &manifest_key)?;
    if &m.backup_id != id || &m.database != db {
        return Err(Error::Integrity(format!(
            "{manifest_key} in store {} describes backup {} of {}: the store was tampered with; nothing was copied",
            job.from.name, m.backup_id, m.database
        )));
    }
    let copied = copy_objects(job, &m).await;
    let bytes = match copied {
        Ok(b) => b,
        Err(e) => {
            delete_copy(to, db, id).await;
            return Err(e);
        }
    };
    // Still ours: no prune or backup of the database ran meanwhile.
    if let Some(l) = lease {
        if let Err(e) = l.confirm().await {
            delete_copy(to, db, id).await;
            return Err(e);
        }
    }
    // Written last, and never over a manifest already there (another copy finished first).
    match to.put_if_absent(&manifest_key, json.clone()).await {
        Ok(_) => {}
        Err(e) if e.kind() == pgdrill_store::StoreErrorKind::Conflict => return Ok(None),
        Err(e) => {
            delete_copy(to, db, id).await;
            return Err(
                Error::from(e).context(format!("write the manifest to store {}", job.to.name))
            );
        }
    }
    if let Err(e) = confirm(to, &manifest_key, json.len() as u64).await {
        delete_copy(to, db, id).await;
        return Err(e);
    }
    Ok(Some(Copied {
        database: db.clone(),
        backup_id: id.clone(),
        objects: m.objects.len() + 2,
        bytes: bytes + json.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Copies every object and SHA256SUMS of `m`, each checked; returns the bytes copied.
async fn copy_objects(job: &CopyJob<'_>, m: &Manifest) -> Result<u64> {
    let copies = futures::stream::iter(m.objects.iter())
        .map(|o| copy_object(job, m, &o.name, o.size, &o.sha256))
        .buffer_unordered(OBJECTS_AT_ONCE);
    let results: Vec<Result<u64>> = copies.collect().await;
    let mut bytes = 0;
    for r in results {
        bytes += r?;
    }
    // SHA256SUMS is derived from the manifest: the source's must say the same.
    let sums: String = m
        .objects
        .iter()
        .map(|o| format!("{}  {}\n", o.sha256, o.name))
        .collect();
    let sums_sha = hex::encode(Sha256::digest(sums.as_bytes()));
    bytes += copy_object(job, m, layout::SHA256SUMS, sums.len() as u64, &sums_sha).await?;
    Ok(bytes)
}

/// Streams one object from the source into the target, checking its size and sha256 on the
/// way; the upload completes only when both match the manifest.
async fn copy_object(
    job: &CopyJob<'_>,
    m: &Manifest,
    name: &str,
    size: u64,
    sha256: &str,
) -> Result<u64> {
    let key = layout::backup_object(&m.database, &m.backup_id, name);
    let (stored, mut stream) = job.from.store.get_stream(&key).await.map_err(|e| match e {
        StoreError::NotFound { .. } => Error::Integrity(format!(
            "{name} of backup {} is missing from store {} although its manifest lists it: run `pgdrill verify {}` there; nothing was copied",
            m.backup_id, job.from.name, m.backup_id
        )),
        other => other.into(),
    })?;
    let mismatch = |what: String| {
        Error::Integrity(format!(
            "{name} of backup {} in store {} {what}: it was changed or damaged there, so it was not copied; run `pgdrill verify {}` on that store",
            m.backup_id, job.from.name, m.backup_id
        ))
    };
    if stored != size {
        return Err(mismatch(format!(
            "has {stored} bytes where the manifest says {size}"
        )));
    }
    let mut upload = job
        .to
        .store
        .upload(&key, job.part_size, job.max_in_flight)
        .await?;
    let mut hash = Sha256::new();
    let mut n = 0u64;
    let pumped = async {
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk?;
            if job.cancel.is_cancelled() {
                return Err(Error::Failed("the copy was interrupted by a signal".into()));
            }
            hash.update(&chunk);
            n += chunk.len() as u64;
            upload.write(chunk).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = pumped {
        let _ = upload.abort().await;
        return Err(e);
    }
    let digest = hex::encode(hash.finalize());
    if n != size || digest != sha256 {
        let _ = upload.abort().await;
        return Err(mismatch(format!(
            "reads as {n} bytes with sha256 {digest} where the manifest says {size} bytes with {sha256}"
        )));
    }
    upload.finish().await?;
    confirm(job.to.store, &key, size).await?;
    Ok(size)
}

/// Fails unless `store` holds `key` with `size` bytes (one HEAD).
async fn confirm(store: &Store, key: &str, size: u64) -> Result<()> {
    match store.head(key).await {
        Ok(info) if info.size == size => Ok(()),
        Ok(info) => Err(Error::Failed(format!(
            "the target store acknowledged {key} but holds {} bytes of the {size} written: nothing was published; check the store's health",
            info.size
        ))),
        Err(StoreError::NotFound { .. }) => Err(Error::Failed(format!(
            "the target store acknowledged {key} but does not have it: nothing was published; check the store's health"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes what the target holds of backup `id` (a copy that failed: best effort).
async fn delete_copy(store: &Store, db: &DbName, id: &BackupId) {
    if let Ok(objects) = store.list(&layout::backup_dir(db, id)).await {
        for o in objects {
            let _ = store.delete(&o.key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: a copy while the primary (where its lease lives) is down takes no lease in
    /// another store and copies nothing; its error says to run it again once the primary
    /// answers.
    #[tokio::test]
    async fn a_copy_fails_while_the_primary_is_down_and_copies_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let primary = Store::open_folder(dir.path().join("r2")).expect("store");
        std::fs::remove_dir(dir.path().join("r2")).expect("rmdir");
        std::fs::write(dir.path().join("r2"), b"not a folder").expect("file");
        let b2 = Store::open_folder(dir.path().join("b2")).expect("store");
        let local = Store::open_folder(dir.path().join("local")).expect("store");
        let id = "20261101T020000Z-aaaa";
        let key = format!("app/backups/{id}/manifest.json");
        b2.put(
            &key,
            Bytes::from(crate::stores::tests::manifest(id, "2026-11-01T02:00:00Z")),
        )
        .await
        .expect("put");
        let (_handle, cancel) = Cancel::new();
        let job = CopyJob {
            from: NamedStore {
                name: "b2",
                store: &b2,
            },
            to: NamedStore {
                name: "local",
                store: &local,
            },
            databases: vec![DbName::parse("app").expect("db")],
            selection: Selection::All,
            part_size: 5 << 20,
            max_in_flight: 2,
            cancel,
            lease_store: Some(&primary),
        };
        let report = run(&job).await.expect("report");
        assert!(report.copied.is_empty());
        let [(_, None, e)] = &report.failures[..] else {
            panic!("{:?}", report.failures);
        };
        assert!(
            e.to_string()
                .contains("a copy takes the database's lease in the primary (first) store only"),
            "{e}"
        );
        assert!(local.list("").await.expect("list").is_empty());
        assert_eq!(b2.list("").await.expect("list").len(), 1, "no lease in b2");
    }
}
