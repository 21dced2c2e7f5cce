//! Mirror retention: plan which snapshots to keep (a pure function), delete the other
//! manifests, then sweep objects no kept snapshot references (mark and sweep).
//!
//! Runs under the mirror's lease, like `mirror run`: a run stores objects before its manifest
//! exists, and a sweep at that moment would take them away.

use super::{keys, list_snapshots, read_snapshot, MirrorName};
use crate::ids::SnapshotId;
use crate::time::{self, Timestamp};
use crate::{Error, Result};
use pgdrill_store::Store;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KeptSnapshot {
    pub snapshot_id: SnapshotId,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MirrorPrunePlan {
    pub name: MirrorName,
    pub dry_run: bool,
    /// Newest first.
    pub keep: Vec<KeptSnapshot>,
    pub delete_snapshots: Vec<SnapshotId>,
    /// Store keys of objects no kept snapshot references.
    pub delete_objects: Vec<String>,
    pub delete_bytes: u64,
    /// Distinct objects the kept snapshots reference.
    pub referenced_objects: u64,
}

/// Which snapshots to keep: the newest `keep_last` (at least one) and every snapshot taken in
/// the last `keep_within_days`. `snapshots` are oldest first; returns (kept newest first with
/// reasons, deleted oldest first).
pub fn plan_keep(
    snapshots: &[(SnapshotId, Timestamp)],
    keep_last: usize,
    keep_within_days: Option<u64>,
    now: Timestamp,
) -> (Vec<KeptSnapshot>, Vec<SnapshotId>) {
    let keep_last = keep_last.max(1);
    let cutoff = keep_within_days.map(|d| time::add_secs(now, -(d.min(100_000) as i64) * 86_400));
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for (i, (id, time)) in snapshots.iter().enumerate().rev() {
        let rank = snapshots.len() - 1 - i;
        let mut reasons = Vec::new();
        if rank == 0 {
            reasons.push("newest".to_string());
        } else if rank < keep_last {
            reasons.push(format!("one of the newest {keep_last}"));
        }
        if let (Some(c), Some(d)) = (cutoff, keep_within_days) {
            if *time >= c {
                reasons.push(format!("within {d} days"));
            }
        }
        if reasons.is_empty() {
            delete.push(id.clone());
        } else {
            keep.push(KeptSnapshot {
                snapshot_id: id.clone(),
                reasons,
            });
        }
    }
    delete.reverse();
    (keep, delete)
}

/// Plans and (unless `dry_run`) applies retention for mirror `name`. Manifests go first, so
/// a snapshot never names a deleted object; objects are swept only when every kept manifest
/// was read (an unreadable one stops the sweep: exit 3, nothing deleted).
pub async fn prune_mirror(
    store: &Store,
    name: &MirrorName,
    keep_last: usize,
    keep_within_days: Option<u64>,
    dry_run: bool,
) -> Result<MirrorPrunePlan> {
    let lease = if dry_run {
        None
    } else {
        Some(super::lock(store, name, "prune").await?)
    };
    let out = prune_locked(store, name, keep_last, keep_within_days, dry_run).await;
    if let Some(l) = lease {
        l.release().await;
    }
    out
}

async fn prune_locked(
    store: &Store,
    name: &MirrorName,
    keep_last: usize,
    keep_within_days: Option<u64>,
    dry_run: bool,
) -> Result<MirrorPrunePlan> {
    let snaps: Vec<(SnapshotId, Timestamp)> = list_snapshots(store, name)
        .await?
        .into_iter()
        .map(|s| (s.snapshot_id, s.time))
        .collect();
    let (keep, delete_snapshots) = plan_keep(&snaps, keep_last, keep_within_days, Timestamp::now());
    let mut referenced = HashSet::new();
    for k in &keep {
        let m = read_snapshot(store, name, &k.snapshot_id)
            .await
            .map_err(|e| {
                Error::Integrity(format!(
                    "mirror {name}: cannot read kept snapshot {} ({e}); nothing was pruned",
                    k.snapshot_id
                ))
            })?;
        referenced.extend(m.objects.into_iter().map(|e| e.sha256));
    }
    let mut delete_objects = Vec::new();
    let mut delete_bytes = 0;
    if !keep.is_empty() {
        for o in store.list(&keys::objects_prefix(name)).await? {
            let Some(file) = o.key.rsplit('/').next() else {
                continue;
            };
            // Only content-addressed objects are swept; anything else is left for a person.
            if super::is_sha256(file)
                && o.key == keys::object(name, file)
                && !referenced.contains(file)
            {
                delete_bytes += o.size;
                delete_objects.push(o.key);
            }
        }
    }
    delete_objects.sort();
    if !dry_run {
        for id in &delete_snapshots {
            store.delete(&keys::snapshot(name, id)).await?;
        }
        for key in &delete_objects {
            store.delete(key).await?;
        }
    }
    Ok(MirrorPrunePlan {
        name: name.clone(),
        dry_run,
        keep,
        delete_snapshots,
        delete_objects,
        delete_bytes,
        referenced_objects: referenced.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_newest_last_n_and_recent() {
        let day = |d: u32| time::parse(&format!("2026-01-{d:02}T00:00:00Z")).expect("t");
        let snaps: Vec<_> = (1..=6).map(|d| (SnapshotId::new(day(d)), day(d))).collect();
        let (keep, del) = plan_keep(&snaps, 2, None, day(7));
        assert_eq!(keep.len(), 2);
        assert_eq!(keep[0].snapshot_id, snaps[5].0);
        assert_eq!(keep[0].reasons, vec!["newest"]);
        assert_eq!(
            del,
            snaps[..4].iter().map(|s| s.0.clone()).collect::<Vec<_>>()
        );
        let (keep, del) = plan_keep(&snaps, 0, Some(3), day(7));
        assert_eq!(keep.len(), 3, "days 4..6 are within 3 days of day 7");
        assert_eq!(del.len(), 3);
        let (keep, _) = plan_keep(&snaps, 0, Some(0), day(30));
        assert_eq!(keep.len(), 1, "the newest is always kept");
        assert!(plan_keep(&[], 1, None, day(1)).0.is_empty());
    }
}
