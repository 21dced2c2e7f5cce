//! `mirror run`: list the source, copy what changed (bounded concurrency), write the snapshot
//! manifest last.
//!
//! An object is not read at all when its (key, size, ETag) — or (key, size, mtime) for folders
//! — equals the previous snapshot's entry; otherwise it is read and hashed, and uploaded only
//! when `objects/<sha256>` is not stored yet. An interrupted run therefore resumes without
//! uploading again what it already stored (it re-reads those objects to learn their digest).

use super::transfer::{self, Outcome, Shared};
use super::{keys, Location, MirrorName, Place, SnapshotEntry, SnapshotManifest, SourceObject};
use crate::cancel::Cancel;
use crate::ids::SnapshotId;
use crate::progress::Progress;
use crate::time::{self, Timestamp};
use crate::{Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use pgdrill_store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

pub struct RunJob<'a> {
    pub store: &'a Store,
    pub name: MirrorName,
    pub source: &'a Location,
    /// Where the store itself lives; a source overlapping it is refused (exit 5).
    pub store_place: Option<Place>,
    /// Guard: stop when the object count drops by more than this percentage (0–100).
    pub max_drop_percent: u32,
    /// Record the snapshot even when the guard trips (the deletions are intended).
    pub allow_drop: bool,
    pub concurrency: usize,
    pub progress: Arc<Progress>,
    pub cancel: Cancel,
}

/// Why a run recorded no snapshot although it could read the source.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SourceDrop {
    pub previous_objects: u64,
    pub current_objects: u64,
    pub drop_percent: f64,
    pub max_drop_percent: u32,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub name: MirrorName,
    /// `None` when the drop guard stopped the run.
    pub snapshot_id: Option<SnapshotId>,
    #[serde(with = "time::chrono_compat")]
    pub time: Timestamp,
    pub source: String,
    pub previous: Option<SnapshotId>,
    pub objects: u64,
    pub bytes: u64,
    /// Objects whose bytes were uploaded, and how many bytes.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Unchanged since the previous snapshot: not read at all.
    pub skipped_unchanged: u64,
    /// Read and hashed, but that content was already stored (resumed runs, duplicates, renames).
    pub skipped_existing: u64,
    /// Listed, then gone before they could be read: not in the snapshot.
    pub vanished: Vec<String>,
    /// Passed over by the listing (symlinks, special files, non-UTF-8 names).
    pub skipped: Vec<String>,
    #[serde(rename = "duration_seconds")]
    pub duration_secs: f64,
    /// Set when the guard stopped the run: no snapshot was recorded, nothing was deleted.
    pub source_drop: Option<SourceDrop>,
}

/// Runs one mirror pass under the mirror's lease.
pub async fn run(job: RunJob<'_>) -> Result<RunReport> {
    if let Some(sp) = &job.store_place {
        if sp.overlaps(job.source.place()) {
            return Err(Error::Refused(format!(
                "mirror {}: the source {} overlaps the pgdrill store {sp}: a mirror must not copy the store into itself; pick a source outside the store (nothing was copied)",
                job.name,
                job.source.place()
            )));
        }
    }
    let lease = super::lock(job.store, &job.name, "mirror").await?;
    let out = run_locked(&job).await;
    lease.release().await;
    out
}

async fn run_locked(job: &RunJob<'_>) -> Result<RunReport> {
    let started = std::time::Instant::now();
    let previous = super::latest(job.store, &job.name).await?;
    job.progress.stage(&format!("mirror {}: listing", job.name));
    let time = Timestamp::now();
    let listing = job.source.list().await?;
    let mut report = RunReport {
        name: job.name.clone(),
        snapshot_id: None,
        time,
        source: job.source.place().to_string(),
        previous: previous.as_ref().map(|p| p.snapshot_id.clone()),
        objects: listing.objects.len() as u64,
        bytes: listing.objects.iter().map(|o| o.size).sum(),
        copied: 0,
        copied_bytes: 0,
        skipped_unchanged: 0,
        skipped_existing: 0,
        vanished: Vec::new(),
        skipped: listing.skipped,
        duration_secs: 0.0,
        source_drop: None,
    };
    if !job.allow_drop {
        let prev_count = previous.as_ref().map(|p| p.objects.len() as u64);
        report.source_drop = drop_guard(prev_count, report.objects, job.max_drop_percent);
        if report.source_drop.is_some() {
            report.duration_secs = started.elapsed().as_secs_f64();
            return Ok(report);
        }
    }
    let prev_index: HashMap<&str, &SnapshotEntry> = previous
        .iter()
        .flat_map(|p| p.objects.iter().map(|e| (e.key.as_str(), e)))
        .collect();
    let mut entries = Vec::with_capacity(listing.objects.len());
    let mut todo = Vec::new();
    for o in listing.objects {
        match prev_index.get(o.key.as_str()) {
            Some(e) if unchanged(&o, e) => {
                entries.push(SnapshotEntry {
                    modified: o.modified.or(e.modified),
                    ..(*e).clone()
                });
                report.skipped_unchanged += 1;
            }
            _ => todo.push(o),
        }
    }
    job.progress.stage(&format!(
        "mirror {}: copying {} objects",
        job.name,
        todo.len()
    ));
    job.progress.set_total(todo.iter().map(|o| o.size).sum());
    let spool = tempfile::Builder::new()
        .prefix("pgdrill-mirror-")
        .tempdir()
        .map_err(|e| Error::Failed(format!("cannot create a spool folder (set TMPDIR): {e}")))?;
    let large = tokio::sync::Semaphore::new(2);
    let shared = Shared {
        store: job.store,
        name: &job.name,
        spool_dir: spool.path(),
        large: &large,
        progress: &job.progress,
    };
    let shared = &shared;
    let mut results = futures::stream::iter(todo)
        .map(|o| async move {
            let res = copy_one(shared, job.source, &o).await;
            (o, res)
        })
        .buffer_unordered(job.concurrency.max(1));
    let mut cancel = job.cancel.clone();
    loop {
        let next = tokio::select! {
            n = results.next() => n,
            _ = cancel.cancelled() => {
                return Err(Error::Failed(format!(
                    "mirror {} was cancelled; no snapshot was recorded (a new run resumes)",
                    job.name
                )))
            }
        };
        let Some((o, res)) = next else { break };
        let copied = res.map_err(|e| {
            e.context(format!(
                "mirror {}: copy {} (no snapshot was recorded; run again to resume)",
                job.name, o.key
            ))
        })?;
        let Some(c) = copied else {
            report.vanished.push(o.key);
            continue;
        };
        match c.outcome {
            Outcome::Copied => {
                report.copied += 1;
                report.copied_bytes += c.size;
            }
            Outcome::Existed => report.skipped_existing += 1,
        }
        // An object rewritten between listing and reading is recorded as read, without the
        // listed ETag, so the next run hashes it again instead of trusting a stale match.
        let same = c.size == o.size;
        entries.push(SnapshotEntry {
            key: o.key,
            size: c.size,
            sha256: c.sha256,
            etag: if same { o.etag } else { None },
            version: None,
            modified: if same { o.modified } else { None },
        });
    }
    drop(results);
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    report.vanished.sort();
    let id = SnapshotId::new(time);
    let manifest = SnapshotManifest {
        format_version: super::FORMAT_VERSION,
        tool: super::tool(),
        name: job.name.clone(),
        snapshot_id: id.clone(),
        time,
        finished_at: Timestamp::now(),
        source: job.source.place().clone(),
        object_count: entries.len() as u64,
        total_bytes: entries.iter().map(|e| e.size).sum(),
        objects: entries,
    };
    report.objects = manifest.object_count;
    report.bytes = manifest.total_bytes;
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Failed(format!("encode the snapshot manifest: {e}")))?;
    match job
        .store
        .put_if_absent(&keys::snapshot(&job.name, &id), Bytes::from(body))
        .await
    {
        Ok(_) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(Error::Failed(format!(
                "snapshot {id} of mirror {} already exists (two runs at once?); run again",
                job.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    report.snapshot_id = Some(id);
    report.duration_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `Ok(None)` when the object vanished from the source after the listing.
async fn copy_one(
    shared: &Shared<'_>,
    source: &Location,
    o: &SourceObject,
) -> Result<Option<transfer::Copied>> {
    match source.read(&o.key).await? {
        None => Ok(None),
        Some(stream) => transfer::copy_into_store(shared, &o.key, stream)
            .await
            .map(Some),
    }
}

/// Same key, same size, and the same ETag (S3) or modification time (folders).
fn unchanged(o: &SourceObject, e: &SnapshotEntry) -> bool {
    if o.size != e.size {
        return false;
    }
    match (&o.etag, &e.etag) {
        (Some(a), Some(b)) => a == b,
        (None, None) => o.modified.is_some() && o.modified == e.modified,
        _ => false,
    }
}

/// The guard: an empty listing, or one that shrank by more than `max_percent`.
pub(crate) fn drop_guard(
    previous: Option<u64>,
    current: u64,
    max_percent: u32,
) -> Option<SourceDrop> {
    let prev = previous.unwrap_or(0);
    let pct = if prev == 0 {
        if current == 0 {
            100.0
        } else {
            0.0
        }
    } else {
        (prev.saturating_sub(current)) as f64 * 100.0 / prev as f64
    };
    let message = if current == 0 {
        format!(
            "the source lists no objects{}; no snapshot was recorded and nothing was deleted: check the source location and its credentials, or pass --allow-drop if it is meant to be empty",
            if prev > 0 { format!(" (the previous snapshot had {prev})") } else { String::new() }
        )
    } else if pct > max_percent as f64 {
        format!(
            "the source lists {current} objects, {pct:.0}% fewer than the {prev} of the previous snapshot (more than max_drop_percent = {max_percent}); no snapshot was recorded and nothing was deleted: check the source, or pass --allow-drop if the deletions are intended"
        )
    } else {
        return None;
    };
    Some(SourceDrop {
        previous_objects: prev,
        current_objects: current,
        drop_percent: pct,
        max_drop_percent: max_percent,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_trips_on_empty_and_large_drops_only() {
        assert!(drop_guard(None, 0, 50).is_some());
        assert!(drop_guard(Some(10), 0, 50).is_some());
        assert!(drop_guard(Some(10), 0, 100).is_some(), "empty always trips");
        assert!(drop_guard(Some(10), 4, 50).is_some());
        assert!(drop_guard(Some(10), 5, 50).is_none());
        assert!(drop_guard(Some(10), 20, 50).is_none());
        assert!(drop_guard(None, 3, 50).is_none());
    }

    #[test]
    fn unchanged_needs_etag_or_mtime() {
        let t = Timestamp::new(1_700_000_000, 5).ok();
        let o = SourceObject {
            key: "k".into(),
            size: 3,
            etag: None,
            modified: t,
        };
        let e = SnapshotEntry {
            key: "k".into(),
            size: 3,
            sha256: "0".repeat(64),
            etag: None,
            version: None,
            modified: t,
        };
        assert!(unchanged(&o, &e));
        assert!(!unchanged(
            &SourceObject {
                size: 4,
                ..o.clone()
            },
            &e
        ));
        assert!(!unchanged(
            &SourceObject {
                modified: None,
                ..o.clone()
            },
            &e
        ));
        let o2 = SourceObject {
            etag: Some("\"a\"".into()),
            ..o
        };
        assert!(!unchanged(&o2, &e));
        assert!(unchanged(
            &o2,
            &SnapshotEntry {
                etag: Some("\"a\"".into()),
                ..e
            }
        ));
    }
}
