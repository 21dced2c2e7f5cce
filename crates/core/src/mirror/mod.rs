//! Uploads buckets (DESIGN.md §7, docs/MIRROR.md): copy a bucket or folder into the store by
//! content, record point-in-time snapshots, verify them, restore them, prune them.
//!
//! Store layout below `<name>/mirror/`:
//! - `objects/<sha256[0..2]>/<sha256>`: one object per distinct content, written once;
//! - `snapshots/<snapshot-id>.json`: a [`SnapshotManifest`], written last with put-if-absent,
//!   so a snapshot exists only when every object it names was stored before it;
//! - `lease.json`: the lease `run` and `prune` hold (one writer per mirror at a time).

pub mod config;
mod location;
mod place;
mod prune;
mod restore;
mod run;
mod transfer;
mod verify;

pub use config::MirrorSection;
pub use location::{Listing, Location, SourceObject};
pub use place::Place;
pub use prune::{plan_keep, prune_mirror, KeptSnapshot, MirrorPrunePlan};
pub use restore::{restore_snapshot, RestoreOptions, RestoreReport};
pub use run::{run, RunJob, RunReport, SourceDrop};
pub use verify::{parity, parity_with, verify_snapshot, Difference, ParityReport, Problem};
pub use verify::{ProblemKind, VerifyReport};

use crate::ids::{DbName, SnapshotId};
use crate::time::{self, Timestamp};
use crate::{Error, Result};
use pgdrill_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The snapshot manifest's format version; readers refuse others (exit 3).
pub const FORMAT_VERSION: u32 = 1;
/// Concurrent transfers when nothing else is configured.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// A run that would record this many percent fewer objects than the previous snapshot stops.
pub const DEFAULT_MAX_DROP_PERCENT: u32 = 50;
/// How long a mirror's lease lives without renewal.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// A mirror's name in the store: one safe path segment (same rule as database names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MirrorName(String);

impl MirrorName {
    pub fn parse(s: &str) -> Result<Self, String> {
        DbName::parse(s).map(|n| MirrorName(n.as_str().to_string())).map_err(|_| {
            format!("{s:?} cannot name a mirror: use letters, digits, '-', '_' or '.' (name = \"uploads\")")
        })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MirrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MirrorName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        MirrorName::parse(&s)
    }
}

impl From<MirrorName> for String {
    fn from(n: MirrorName) -> String {
        n.0
    }
}

/// Store keys of the mirror layout; the only place that spells them.
pub mod keys {
    use super::MirrorName;
    use crate::ids::SnapshotId;

    pub fn root(name: &MirrorName) -> String {
        format!("{name}/mirror")
    }
    pub fn objects_prefix(name: &MirrorName) -> String {
        format!("{name}/mirror/objects")
    }
    /// `sha256` must be 64 lowercase hex digits (checked when manifests are read).
    pub fn object(name: &MirrorName, sha256: &str) -> String {
        format!(
            "{name}/mirror/objects/{}/{sha256}",
            &sha256[..2.min(sha256.len())]
        )
    }
    pub fn snapshots_prefix(name: &MirrorName) -> String {
        format!("{name}/mirror/snapshots")
    }
    pub fn snapshot(name: &MirrorName, id: &SnapshotId) -> String {
        format!("{name}/mirror/snapshots/{id}.json")
    }
    pub fn lease(name: &MirrorName) -> String {
        format!("{name}/mirror/lease.json")
    }
}

/// Which pgdrill wrote a manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

/// `snapshots/<id>.json`: the source as it was listed at `time`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotManifest {
    pub format_version: u32,
    pub tool: Tool,
    pub name: MirrorName,
    pub snapshot_id: SnapshotId,
    /// When the source was listed: the point in time the snapshot stands for.
    #[serde(with = "time::chrono_compat")]
    pub time: Timestamp,
    #[serde(with = "time::chrono_compat")]
    pub finished_at: Timestamp,
    /// Where the objects came from (no credentials).
    pub source: Place,
    pub object_count: u64,
    pub total_bytes: u64,
    /// Every object, sorted by key.
    pub objects: Vec<SnapshotEntry>,
}

/// One source object in a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotEntry {
    /// `/`-separated key relative to the source prefix or folder.
    pub key: String,
    pub size: u64,
    /// SHA-256 of the content; the object is stored at `objects/<sha256[0..2]>/<sha256>`.
    pub sha256: String,
    /// The source's ETag when it has one (S3); with `size`, what "unchanged" is judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The source's version id, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The source's modification time (folders: with nanoseconds).
    #[serde(default, with = "time::chrono_compat::option")]
    pub modified: Option<Timestamp>,
}

impl SnapshotManifest {
    /// Checks what readers rely on: the format version and that every sha256 is a digest
    /// (it becomes part of a store key).
    pub fn validate(&self) -> Result<()> {
        if self.format_version != FORMAT_VERSION {
            return Err(Error::Integrity(format!(
                "snapshot {} has format_version {}, which this pgdrill does not know (it reads {FORMAT_VERSION}); upgrade pgdrill",
                self.snapshot_id, self.format_version
            )));
        }
        if self.object_count != self.objects.len() as u64 {
            return Err(Error::Integrity(format!(
                "snapshot {} is invalid: object_count is {} but it lists {} objects",
                self.snapshot_id,
                self.object_count,
                self.objects.len()
            )));
        }
        if let Some(e) = self.objects.iter().find(|e| !is_sha256(&e.sha256)) {
            return Err(Error::Integrity(format!(
                "snapshot {} is invalid: the entry for {:?} has sha256 {:?}, not 64 hex digits",
                self.snapshot_id, e.key, e.sha256
            )));
        }
        Ok(())
    }
}

pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads and checks one snapshot manifest.
pub async fn read_snapshot(
    store: &Store,
    name: &MirrorName,
    id: &SnapshotId,
) -> Result<SnapshotManifest> {
    let key = keys::snapshot(name, id);
    let bytes = store.get(&key).await.map_err(|e| match e {
        StoreError::NotFound { .. } => Error::Invalid(format!(
            "mirror {name} has no snapshot {id}; `pgdrill mirror list --name {name}` shows them"
        )),
        other => other.into(),
    })?;
    let m: SnapshotManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Integrity(format!("snapshot manifest {key} is not valid: {e}")))?;
    m.validate()?;
    if &m.snapshot_id != id || &m.name != name {
        return Err(Error::Integrity(format!(
            "snapshot manifest {key} names {}/{} instead of itself",
            m.name, m.snapshot_id
        )));
    }
    Ok(m)
}

/// A snapshot as listed: id, exact time when known (else the id's second), manifest size.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SnapshotInfo {
    pub snapshot_id: SnapshotId,
    #[serde(with = "time::chrono_compat")]
    pub time: Timestamp,
    pub manifest_bytes: u64,
}

/// The mirror's snapshots, oldest first. Ids share a second only when runs start within one;
/// those are ordered by their manifests' exact `time`.
pub async fn list_snapshots(store: &Store, name: &MirrorName) -> Result<Vec<SnapshotInfo>> {
    let mut out: Vec<SnapshotInfo> = store
        .list(&keys::snapshots_prefix(name))
        .await?
        .into_iter()
        .filter_map(|o| {
            let file = o.key.rsplit('/').next()?;
            let id = SnapshotId::parse(file.strip_suffix(".json")?).ok()?;
            Some(SnapshotInfo {
                time: id.time()?,
                snapshot_id: id,
                manifest_bytes: o.size,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.time, &a.snapshot_id).cmp(&(b.time, &b.snapshot_id)));
    let mut i = 0;
    while i < out.len() {
        let j = i + out[i..]
            .iter()
            .take_while(|s| s.time == out[i].time)
            .count();
        if j - i > 1 {
            for s in &mut out[i..j] {
                if let Ok(m) = read_snapshot(store, name, &s.snapshot_id).await {
                    s.time = m.time;
                }
            }
        }
        i = j;
    }
    out.sort_by(|a, b| (a.time, &a.snapshot_id).cmp(&(b.time, &b.snapshot_id)));
    Ok(out)
}

/// The newest snapshot taken at or before `time` (its listing time), if any: the uploads that
/// go with a database backup whose snapshot time is `time`.
pub async fn snapshot_at(
    store: &Store,
    name: &MirrorName,
    time: Timestamp,
) -> Result<Option<SnapshotManifest>> {
    // Ids carry the second, manifests the exact time: read candidates newest first until one
    // is at or before `time`.
    for s in list_snapshots(store, name).await?.iter().rev() {
        if s.snapshot_id.time().is_some_and(|t| t > time) {
            continue;
        }
        let m = read_snapshot(store, name, &s.snapshot_id).await?;
        if m.time <= time {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// The newest snapshot, if any.
pub async fn latest(store: &Store, name: &MirrorName) -> Result<Option<SnapshotManifest>> {
    match list_snapshots(store, name).await?.last() {
        Some(s) => Ok(Some(read_snapshot(store, name, &s.snapshot_id).await?)),
        None => Ok(None),
    }
}

/// `latest` or a snapshot id.
pub async fn resolve(store: &Store, name: &MirrorName, selector: &str) -> Result<SnapshotManifest> {
    if selector == "latest" {
        return latest(store, name).await?.ok_or_else(|| {
            Error::Invalid(format!(
                "mirror {name} has no snapshot in {}: run `pgdrill mirror run --name {name}` first",
                store.display()
            ))
        });
    }
    let id =
        SnapshotId::parse(selector).map_err(|e| Error::Invalid(format!("{e}; or use latest")))?;
    read_snapshot(store, name, &id).await
}

/// Mirror names that have a `mirror/` folder in the store.
pub async fn mirrors_in_store(store: &Store) -> Result<Vec<MirrorName>> {
    let mut out = Vec::new();
    for dir in store.list_dirs("").await? {
        let Ok(name) = MirrorName::parse(&dir) else {
            continue;
        };
        if store.list_dirs(&dir).await?.iter().any(|s| s == "mirror") {
            out.push(name);
        }
    }
    Ok(out)
}

/// Takes the mirror's lease (exit 6 when another run or prune holds it).
pub async fn lock(store: &Store, name: &MirrorName, job: &str) -> Result<crate::lease::Lease> {
    crate::lease::acquire_key(
        store,
        &keys::lease(name),
        &format!("mirror {name}"),
        job,
        LEASE_TTL,
    )
    .await
}

pub(crate) fn tool() -> Tool {
    Tool {
        name: "pgdrill".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot manifest's exact text (times as chrono's serde wrote them).
    #[test]
    fn snapshot_manifests_keep_their_text() {
        let text = r#"{"format_version":1,"tool":{"name":"pgdrill","version":"0.1.0"},"name":"files","snapshot_id":"20261206T064053Z-00ff","time":"2026-12-06T06:40:53.123456789Z","finished_at":"2026-12-06T06:40:54.120Z","source":{"kind":"folder","path":"/data"},"object_count":2,"total_bytes":3,"objects":[{"key":"a","size":1,"sha256":"00","modified":"2026-12-06T06:40:00.000120Z"},{"key":"b","size":2,"sha256":"11","etag":"\"e\"","modified":null}]}"#;
        let m: SnapshotManifest = serde_json::from_str(text).expect("manifest");
        assert_eq!(serde_json::to_string(&m).expect("json"), text);
        let info = SnapshotInfo {
            snapshot_id: m.snapshot_id.clone(),
            time: m.time,
            manifest_bytes: 9,
        };
        assert_eq!(
            serde_json::to_string(&info).expect("json"),
            r#"{"snapshot_id":"20261206T064053Z-00ff","time":"2026-12-06T06:40:53.123456789Z","manifest_bytes":9}"#
        );
    }
}
