//! Checksum parity: the store against a snapshot (`verify`), and a destination against a
//! snapshot (`parity`, for restores and the `mirror_parity` drill check).

use super::{keys, Location, MirrorName, SnapshotEntry, SnapshotManifest};
use crate::ids::SnapshotId;
use crate::progress::Progress;
use crate::{Error, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use pgdrill_store::{Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The stored object is not there.
    Missing,
    /// Its bytes do not hash to its address, or its size is not the manifest's.
    Corrupt,
}

/// One stored object that does not match its snapshot.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The store key of the object.
    pub object: String,
    /// The source keys whose content it is.
    pub keys: Vec<String>,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub name: MirrorName,
    pub snapshot_id: SnapshotId,
    pub objects: u64,
    pub distinct_objects: u64,
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
}

/// Re-reads every distinct object of `manifest` from the store and checks its SHA-256 and
/// size. Differences are returned in the report; store errors other than "not found" are `Err`.
pub async fn verify_snapshot(
    store: &Store,
    manifest: &SnapshotManifest,
    concurrency: usize,
    progress: &Progress,
) -> Result<VerifyReport> {
    let name = &manifest.name;
    let mut by_sha: BTreeMap<&str, Vec<&SnapshotEntry>> = BTreeMap::new();
    for e in &manifest.objects {
        by_sha.entry(e.sha256.as_str()).or_default().push(e);
    }
    progress.stage(&format!("verify mirror {name} {}", manifest.snapshot_id));
    progress.set_total(by_sha.values().map(|v| v[0].size).sum());
    let checks = futures::stream::iter(by_sha.iter())
        .map(|(sha, entries)| async move {
            let object = keys::object(name, sha);
            let found = read_digest(store, &object, progress).await;
            (object, *sha, entries, found)
        })
        .buffer_unordered(concurrency.max(1));
    futures::pin_mut!(checks);
    let mut problems = Vec::new();
    let mut bytes_read = 0;
    while let Some((object, sha, entries, found)) = checks.next().await {
        let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        let problem = |kind, detail: String| Problem {
            kind,
            object: object.clone(),
            keys: keys.clone(),
            detail,
        };
        match found? {
            None => problems.push(problem(ProblemKind::Missing, "not in the store".into())),
            Some((got, size)) => {
                bytes_read += size;
                if got != sha {
                    problems.push(problem(
                        ProblemKind::Corrupt,
                        format!("its content hashes to {got}"),
                    ));
                } else if let Some(e) = entries.iter().find(|e| e.size != size) {
                    problems.push(problem(
                        ProblemKind::Corrupt,
                        format!(
                            "{size} bytes stored, the manifest says {} for {}",
                            e.size, e.key
                        ),
                    ));
                }
            }
        }
    }
    problems.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(VerifyReport {
        name: name.clone(),
        snapshot_id: manifest.snapshot_id.clone(),
        objects: manifest.objects.len() as u64,
        distinct_objects: by_sha.len() as u64,
        bytes_read,
        problems,
    })
}

async fn read_digest(
    store: &Store,
    object: &str,
    progress: &Progress,
) -> Result<Option<(String, u64)>> {
    match store.get_stream(object).await {
        Ok((_, s)) => {
            let s: BoxStream<'static, std::io::Result<Bytes>> =
                s.map_err(std::io::Error::other).boxed();
            Ok(Some(digest(s, object, Some(progress)).await?))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// SHA-256 and length of a stream.
pub(crate) async fn digest(
    mut s: BoxStream<'static, std::io::Result<Bytes>>,
    what: &str,
    progress: Option<&Progress>,
) -> Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::Failed(format!("read {what}: {e}")))?;
        h.update(&chunk);
        n += chunk.len() as u64;
        if let Some(p) = progress {
            p.add(chunk.len() as u64);
        }
    }
    Ok((hex::encode(h.finalize()), n))
}

/// A destination object whose content is not the snapshot's.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Difference {
    pub key: String,
    pub expected_sha256: String,
    pub expected_size: u64,
    pub actual_sha256: Option<String>,
    pub actual_size: u64,
}

/// A destination compared with a snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct ParityReport {
    pub snapshot_id: SnapshotId,
    pub destination: String,
    pub objects: u64,
    pub matching: u64,
    /// In the snapshot, not at the destination.
    pub missing: Vec<String>,
    /// At the destination, not in the snapshot.
    pub extra: Vec<String>,
    pub different: Vec<Difference>,
}

impl ParityReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty()
    }
}

/// Compares `dest` with snapshot `snapshot` of mirror `name`: every snapshot object must be
/// there with the same SHA-256 (each is read and hashed), and nothing else may be.
pub async fn parity(
    store: &Store,
    name: &MirrorName,
    snapshot: &SnapshotId,
    dest: &Location,
) -> Result<ParityReport> {
    let manifest = super::read_snapshot(store, name, snapshot).await?;
    parity_with(&manifest, dest, super::DEFAULT_CONCURRENCY).await
}

/// [`parity`] with a manifest already read.
pub async fn parity_with(
    manifest: &SnapshotManifest,
    dest: &Location,
    concurrency: usize,
) -> Result<ParityReport> {
    let listing = dest.list().await?;
    let present: HashMap<&str, u64> = listing
        .objects
        .iter()
        .map(|o| (o.key.as_str(), o.size))
        .collect();
    let wanted: HashMap<&str, &SnapshotEntry> = manifest
        .objects
        .iter()
        .map(|e| (e.key.as_str(), e))
        .collect();
    let mut report = ParityReport {
        snapshot_id: manifest.snapshot_id.clone(),
        destination: dest.place().to_string(),
        objects: manifest.objects.len() as u64,
        matching: 0,
        missing: Vec::new(),
        extra: listing
            .objects
            .iter()
            .filter(|o| !wanted.contains_key(o.key.as_str()))
            .map(|o| o.key.clone())
            .collect(),
        different: Vec::new(),
    };
    let mut to_hash = Vec::new();
    for e in &manifest.objects {
        match present.get(e.key.as_str()) {
            None => report.missing.push(e.key.clone()),
            Some(&size) if size != e.size => report.different.push(Difference {
                key: e.key.clone(),
                expected_sha256: e.sha256.clone(),
                expected_size: e.size,
                actual_sha256: None,
                actual_size: size,
            }),
            Some(_) => to_hash.push(e),
        }
    }
    let hashed = futures::stream::iter(to_hash)
        .map(|e| async move {
            let got = match dest.read(&e.key).await? {
                Some(s) => Some(digest(s, &e.key, None).await?),
                None => None,
            };
            Ok::<_, Error>((e, got))
        })
        .buffer_unordered(concurrency.max(1));
    futures::pin_mut!(hashed);
    while let Some(r) = hashed.next().await {
        match r? {
            (e, None) => report.missing.push(e.key.clone()),
            (e, Some((sha, size))) if sha == e.sha256 && size == e.size => report.matching += 1,
            (e, Some((sha, size))) => report.different.push(Difference {
                key: e.key.clone(),
                expected_sha256: e.sha256.clone(),
                expected_size: e.size,
                actual_sha256: Some(sha),
                actual_size: size,
            }),
        }
    }
    report.missing.sort();
    report.extra.sort();
    report.different.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(report)
}
