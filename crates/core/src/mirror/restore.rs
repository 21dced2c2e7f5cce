//! `mirror restore`: write a snapshot's objects to a bucket or folder, each verified against
//! its SHA-256 before it becomes visible (a folder file is renamed into place, an S3 object is
//! put or its multipart upload finished only after the digest matched).

use super::location::{Backend, TEMP_PREFIX};
use super::transfer::MEMORY_MAX;
use super::{keys, Location, Place, SnapshotEntry, SnapshotManifest};
use crate::ids::SnapshotId;
use crate::progress::Progress;
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use pgdrill_store::{Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Remove destination objects that are not in the snapshot (after all writes succeeded).
    pub delete: bool,
    /// Allow writing into the mirror's own source.
    pub force: bool,
    /// Where the pgdrill store lives: a destination overlapping it is always refused.
    pub store_place: Option<Place>,
    /// Locations that count as the mirror's source besides the one recorded in the snapshot
    /// (e.g. the configured `from`, which may have changed since).
    pub sources: Vec<Place>,
    pub concurrency: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub snapshot_id: SnapshotId,
    #[serde(with = "crate::time::chrono_compat")]
    pub snapshot_time: crate::time::Timestamp,
    pub destination: String,
    pub objects: u64,
    pub bytes: u64,
    /// Destination keys removed by `--delete`.
    pub deleted: Vec<String>,
    #[serde(rename = "duration_seconds")]
    pub duration_secs: f64,
}

/// Restores `manifest` into `dest`. Refused (exit 5) when `dest` overlaps the store, or the
/// mirror's source unless `opts.force`; an object whose stored bytes do not match is not
/// written and makes the result an integrity error (exit 3) after the others are restored.
pub async fn restore_snapshot(
    store: &Store,
    manifest: &SnapshotManifest,
    dest: &Location,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreReport> {
    let started = std::time::Instant::now();
    guard(manifest, dest.place(), opts)?;
    if let Backend::Folder(root) = dest.backend() {
        check_folder_keys(manifest)?;
        check_folder_paths(root, manifest).await?;
        tokio::fs::create_dir_all(root)
            .await
            .map_err(|e| Error::Failed(format!("cannot create {}: {e}", root.display())))?;
    }
    progress.stage(&format!(
        "restore mirror {} {}",
        manifest.name, manifest.snapshot_id
    ));
    progress.set_total(manifest.total_bytes);
    // Large S3 writes hold up to three 8 MiB parts each: at most two of them at once.
    let large = tokio::sync::Semaphore::new(2);
    let large = &large;
    let writes = futures::stream::iter(&manifest.objects)
        .map(|e| async move {
            let _permit = match dest.backend() {
                Backend::Bucket(_) if e.size as usize > MEMORY_MAX => large.acquire().await.ok(),
                _ => None,
            };
            (e, restore_one(store, manifest, e, dest, progress).await)
        })
        .buffer_unordered(opts.concurrency.max(1));
    futures::pin_mut!(writes);
    let mut bad = Vec::new();
    while let Some((e, r)) = writes.next().await {
        if let Some(why) = r.map_err(|err| err.context(format!("restore {}", e.key)))? {
            bad.push(format!("{} ({why})", e.key));
        }
    }
    if !bad.is_empty() {
        bad.sort();
        return Err(Error::Integrity(format!(
            "{} of {} objects of snapshot {} failed verification and were not written: {}; the others were restored; run `pgdrill mirror verify`",
            bad.len(),
            manifest.objects.len(),
            manifest.snapshot_id,
            bad.join(", ")
        )));
    }
    let deleted = if opts.delete {
        delete_extra(manifest, dest).await?
    } else {
        Vec::new()
    };
    Ok(RestoreReport {
        snapshot_id: manifest.snapshot_id.clone(),
        snapshot_time: manifest.time,
        destination: dest.place().to_string(),
        objects: manifest.object_count,
        bytes: manifest.total_bytes,
        deleted,
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

fn guard(manifest: &SnapshotManifest, dest: &Place, opts: &RestoreOptions) -> Result<()> {
    if let Some(sp) = &opts.store_place {
        if sp.overlaps(dest) {
            return Err(Error::Refused(format!(
                "the destination {dest} overlaps the pgdrill store {sp}; restore somewhere outside the store (nothing was written)"
            )));
        }
    }
    let source = std::iter::once(&manifest.source)
        .chain(&opts.sources)
        .find(|s| s.overlaps(dest));
    if let (Some(s), false) = (source, opts.force) {
        return Err(Error::Refused(format!(
            "the destination {dest} overlaps the mirror's source {s}: restoring there overwrites live files; pass --force if that is what you want (nothing was written)"
        )));
    }
    Ok(())
}

/// A folder can hold only keys that are plain relative paths, none a folder of another.
fn check_folder_keys(manifest: &SnapshotManifest) -> Result<()> {
    let all: HashSet<&str> = manifest.objects.iter().map(|e| e.key.as_str()).collect();
    let mut bad = Vec::new();
    for e in &manifest.objects {
        let segs: Vec<&str> = e.key.split('/').collect();
        let unsafe_seg = segs
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('\0'));
        let shadowed = (1..segs.len()).any(|i| all.contains(segs[..i].join("/").as_str()));
        if unsafe_seg || shadowed || segs.last().is_some_and(|s| s.starts_with(TEMP_PREFIX)) {
            bad.push(format!("{:?}", e.key));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    bad.truncate(5);
    Err(Error::Invalid(format!(
        "snapshot {} has keys a folder cannot hold ({}); restore it into a bucket instead",
        manifest.snapshot_id,
        bad.join(", ")
    )))
}

/// Before anything is written: refuses (exit 5) a destination where a folder on the way to a
/// key is a symlink, and fails one where it is a file, so that a refusal leaves the
/// destination as it was ([`safe_parent`] checks again while writing).
async fn check_folder_paths(root: &Path, manifest: &SnapshotManifest) -> Result<()> {
    let mut seen = HashSet::new();
    for e in &manifest.objects {
        let segs: Vec<&str> = e.key.split('/').collect();
        let mut dir = root.to_path_buf();
        for seg in &segs[..segs.len().saturating_sub(1)] {
            dir.push(seg);
            if !seen.insert(dir.clone()) {
                continue;
            }
            match tokio::fs::symlink_metadata(&dir).await {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::Refused(format!(
                        "{} is a symlink; restore does not write through symlinks: remove it or restore elsewhere (nothing was written)",
                        dir.display()
                    )))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::Failed(format!(
                        "{} is a file where the snapshot has a folder; remove it or restore elsewhere (nothing was written)",
                        dir.display()
                    )))
                }
                // Nothing below a missing folder exists yet.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
                Err(err) => {
                    return Err(Error::Failed(format!("cannot stat {}: {err}", dir.display())))
                }
            }
        }
    }
    Ok(())
}

/// A temporary file removed when dropped unless it was renamed into place: a restore that
/// stops (an error elsewhere, a signal) leaves no `.pgdrill-tmp-*` file behind.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn kept(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `Ok(Some(why))` when the stored object is missing or does not match (nothing written).
async fn restore_one(
    store: &Store,
    manifest: &SnapshotManifest,
    e: &SnapshotEntry,
    dest: &Location,
    progress: &Progress,
) -> Result<Option<String>> {
    let object = keys::object(&manifest.name, &e.sha256);
    let stream = match store.get_stream(&object).await {
        Ok((_, s)) => s.map_err(std::io::Error::other).boxed(),
        Err(StoreError::NotFound { .. }) => return Ok(Some(format!("{object} is missing"))),
        Err(err) => return Err(err.into()),
    };
    match dest.backend() {
        Backend::Folder(root) => write_file(root, e, stream, progress).await,
        Backend::Bucket(b) => write_object(b, e, stream, progress).await,
    }
}

/// Hashes chunks as they pass; `check` compares with the entry at the end.
struct Check<'a> {
    e: &'a SnapshotEntry,
    h: Sha256,
    n: u64,
    progress: &'a Progress,
}

impl<'a> Check<'a> {
    fn new(e: &'a SnapshotEntry, progress: &'a Progress) -> Self {
        Check {
            e,
            h: Sha256::new(),
            n: 0,
            progress,
        }
    }
    fn update(&mut self, b: &[u8]) {
        self.h.update(b);
        self.n += b.len() as u64;
        self.progress.add(b.len() as u64);
    }
    fn check(self) -> Option<String> {
        let got = hex::encode(self.h.finalize());
        if got == self.e.sha256 && self.n == self.e.size {
            None
        } else {
            Some(format!("stored bytes hash to {got}, {} bytes", self.n))
        }
    }
}

async fn write_file(
    root: &Path,
    e: &SnapshotEntry,
    mut s: BoxStream<'static, std::io::Result<Bytes>>,
    progress: &Progress,
) -> Result<Option<String>> {
    let path = root.join(&e.key);
    let parent = safe_parent(root, &e.key).await?;
    let tmp = parent.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let io = |what: &str, err: std::io::Error| {
        Error::Failed(format!("{what} {}: {err}", path.display()))
    };
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|err| io("create", err))?;
    let guard = TempFile(Some(tmp.clone()));
    let mut check = Check::new(e, progress);
    let res: Result<()> = async {
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|err| Error::Failed(format!("read {}: {err}", e.key)))?;
            check.update(&chunk);
            f.write_all(&chunk).await.map_err(|err| io("write", err))?;
        }
        f.sync_all().await.map_err(|err| io("sync", err))
    }
    .await;
    drop(f);
    let verdict = res.map(|()| check.check())?;
    if verdict.is_some() {
        return Ok(verdict);
    }
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|err| io("rename into", err))?;
    guard.kept();
    Ok(None)
}

/// Creates the folders of `key` below `root`, refusing to go through a symlink (which could
/// lead out of the destination) or a file.
async fn safe_parent(root: &Path, key: &str) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    let segs: Vec<&str> = key.split('/').collect();
    for seg in &segs[..segs.len().saturating_sub(1)] {
        dir.push(seg);
        match tokio::fs::symlink_metadata(&dir).await {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Refused(format!(
                    "{} is a symlink; restore does not write through symlinks (nothing more was written)",
                    dir.display()
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Failed(format!(
                    "{} is a file where the snapshot has a folder; remove it or restore elsewhere",
                    dir.display()
                )))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                match tokio::fs::create_dir(&dir).await {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(err) => {
                        return Err(Error::Failed(format!("cannot create {}: {err}", dir.display())))
                    }
                }
            }
            Err(err) => return Err(Error::Failed(format!("cannot stat {}: {err}", dir.display()))),
        }
    }
    Ok(dir)
}

async fn write_object(
    dest: &Store,
    e: &SnapshotEntry,
    mut s: BoxStream<'static, std::io::Result<Bytes>>,
    progress: &Progress,
) -> Result<Option<String>> {
    let mut check = Check::new(e, progress);
    let read_err = |err: std::io::Error| Error::Failed(format!("read {}: {err}", e.key));
    if e.size as usize <= MEMORY_MAX {
        let mut buf = BytesMut::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(read_err)?;
            check.update(&chunk);
            if buf.len() + chunk.len() > MEMORY_MAX {
                return Ok(Some(format!(
                    "more than the {} bytes of the manifest",
                    e.size
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        if let Some(why) = check.check() {
            return Ok(Some(why));
        }
        dest.put(&e.key, buf.freeze()).await?;
        return Ok(None);
    }
    let mut upload = dest.upload(&e.key, 8 << 20, 2).await?;
    let mut part = BytesMut::new();
    while let Some(chunk) = s.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(err) => {
                let _ = upload.abort().await;
                return Err(read_err(err));
            }
        };
        check.update(&chunk);
        part.extend_from_slice(&chunk);
        if part.len() >= 8 << 20 {
            if let Err(err) = upload.write(part.split().freeze()).await {
                let _ = upload.abort().await;
                return Err(err.into());
            }
        }
    }
    if !part.is_empty() {
        if let Err(err) = upload.write(part.freeze()).await {
            let _ = upload.abort().await;
            return Err(err.into());
        }
    }
    if let Some(why) = check.check() {
        let _ = upload.abort().await;
        return Ok(Some(why));
    }
    upload.finish().await?;
    Ok(None)
}

/// Removes destination objects that are not in the snapshot; returns their keys.
async fn delete_extra(manifest: &SnapshotManifest, dest: &Location) -> Result<Vec<String>> {
    let wanted: HashSet<&str> = manifest.objects.iter().map(|e| e.key.as_str()).collect();
    let extra: Vec<String> = dest
        .list()
        .await?
        .objects
        .into_iter()
        .filter(|o| !wanted.contains(o.key.as_str()))
        .map(|o| o.key)
        .collect();
    for key in &extra {
        match dest.backend() {
            Backend::Folder(root) => {
                let path = root.join(key);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => remove_empty_parents(root, &path).await,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(Error::Failed(format!(
                            "cannot delete {}: {err}",
                            path.display()
                        )))
                    }
                }
            }
            Backend::Bucket(b) => b.delete(key).await?,
        }
    }
    Ok(extra)
}

async fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || tokio::fs::remove_dir(d).await.is_err() {
            break;
        }
        dir = d.parent();
    }
}
