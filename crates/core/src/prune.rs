//! `prune`: plan with [`crate::retention::plan`], then delete. The manifest goes first so a
//! half-deleted backup is never listed as complete.
//!
//! Ages are judged by the store's clock (the lease measured how far this host's is off), and
//! the deletions happen only after the lease is confirmed still ours: a prune on a host whose
//! clock is wrong, or one that lost its lease, deletes nothing of a backup still running.

use crate::ids::{BackupId, DbName};
use crate::lease::Lease;
use crate::retention::{self, Candidate, Plan, RetentionPolicy};
use crate::{catalog, drill, layout, readers, Result};
use pgdrill_store::{StagedUpload, Store};
use std::collections::BTreeSet;

pub struct PruneOutcome {
    /// The store pruned (its name), when several are configured.
    pub store: Option<String>,
    pub plan: Plan,
    pub deleted_objects: usize,
    /// What unfinished uploads left past the grace period: part files on a local folder, open
    /// multipart uploads on S3; removed (aborted) unless this is a dry run.
    pub stale_parts: Vec<StagedUpload>,
    /// Backups whose manifest could not be read (kept), with the reason.
    pub unreadable: Vec<(BackupId, String)>,
}

pub async fn run(
    store: &Store,
    db: &DbName,
    policy: &RetentionPolicy,
    dry_run: bool,
    lease: Option<&Lease>,
) -> Result<PruneOutcome> {
    run_in(store, store, db, policy, dry_run, lease).await
}

/// [`run`] on one of several stores: the drill evidence (which backup a passing drill
/// proved, kept by every store's plan) is read from `evidence`, the primary store.
pub async fn run_in(
    store: &Store,
    evidence: &Store,
    db: &DbName,
    policy: &RetentionPolicy,
    dry_run: bool,
    lease: Option<&Lease>,
) -> Result<PruneOutcome> {
    let listing = catalog::list(store, db).await?;
    let drills = drill::list(evidence, db).await?;
    let protected: Vec<BackupId> = drills
        .iter()
        .find(|d| d.passed())
        .and_then(|d| BackupId::parse(&d.backup.id).ok())
        .into_iter()
        .collect();
    let complete: Vec<Candidate> = listing
        .complete
        .iter()
        .map(|m| Candidate {
            id: m.backup_id.clone(),
            time: crate::time::parse(&m.snapshot.time)
                .or_else(|| crate::time::parse(&m.started_at))
                .unwrap_or_else(|| {
                    jiff::Timestamp::from_second(id_seconds(&m.backup_id))
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                }),
        })
        .collect();
    let incomplete: Vec<(BackupId, jiff::Timestamp)> = listing
        .incomplete
        .iter()
        .map(|(id, secs)| {
            (
                id.clone(),
                jiff::Timestamp::from_second(*secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            )
        })
        .collect();
    // Folders whose manifest is unreadable are kept, and said so: a person must look.
    let now = match lease {
        Some(l) => l.trusted_now(),
        None => crate::clock::Clock::process().now(),
    };
    let mut plan = retention::plan(&complete, &incomplete, &protected, policy, now);
    if let Some(prev) = lease.and_then(|l| l.took_over_from.as_ref()) {
        // The job whose lease lapsed may have been writing one of these; the next prune
        // removes them once they are past the grace period with nobody holding the lease.
        if !plan.delete_incomplete.is_empty() {
            plan.delete_incomplete.clear();
            let note = format!(
                "incomplete backups are kept this time: the lease was taken over from a {} job on {}",
                prev.job, prev.host
            );
            plan.note = Some(match plan.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
    }
    for (id, why) in &listing.unreadable {
        plan.keep.push((
            id.clone(),
            vec![format!(
                "manifest unreadable, kept for a person to look at ({why})"
            )],
        ));
    }
    if !listing.unreadable.is_empty() {
        plan.keep.sort_by(|a, b| b.0.cmp(&a.0));
    }
    // Backups being read (a restore, verify or export running) stay whatever the rules say.
    // Marks are judged by the store's clock, like leases.
    let store_now = lease.map_or(now.as_second(), |l| l.store_now().as_second());
    let (being_read, lapsed_marks) = readers::scan(store, db, store_now).await?;
    keep_being_read(&mut plan, &being_read);
    // Part files a killed backup staged, or the S3 multipart upload it left open (its upload
    // never completed), past the grace period.
    let grace = policy.incomplete_grace_hours as i64 * 3600;
    let stale_parts: Vec<StagedUpload> = if lease.is_some_and(|l| l.took_over_from.is_some()) {
        Vec::new()
    } else {
        match store.staged_parts(&layout::backups_prefix(db)).await {
            Ok(parts) => parts
                .into_iter()
                .filter(|p| store_now - p.last_modified > grace)
                .collect(),
            // Refused or not offered (credentials without s3:ListBucketMultipartUploads, a
            // service without ListMultipartUploads): the rest of the prune still runs, and says so.
            Err(e) if !e.is_retryable() => {
                let note = format!("unfinished uploads were not looked for: {e}");
                plan.note = Some(match plan.note.take() {
                    Some(n) => format!("{n}; {note}"),
                    None => note,
                });
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut deleted_objects = 0;
    if !dry_run {
        if let Some(l) = lease {
            l.confirm().await?;
        }
        for id in &plan.delete {
            store
                .delete(&layout::backup_object(db, id, layout::MANIFEST))
                .await?;
            deleted_objects += 1;
            // A reader marks, then checks the manifest; prune deletes the manifest, then
            // checks the marks: one of the two sees the other. A reader that got in first
            // keeps the objects (the folder is then incomplete, removed past the grace period).
            if readers::scan_backup(store, db, id, store_now).await? {
                continue;
            }
            deleted_objects += delete_folder(store, db, id).await?;
        }
        for id in &plan.delete_incomplete {
            deleted_objects += delete_folder(store, db, id).await?;
        }
        for key in &lapsed_marks {
            store.delete(key).await?;
        }
        for part in &stale_parts {
            store.delete_staged_part(part).await?;
        }
    }
    Ok(PruneOutcome {
        store: None,
        plan,
        deleted_objects,
        stale_parts,
        unreadable: listing.unreadable,
    })
}

fn keep_being_read(plan: &mut Plan, being_read: &BTreeSet<BackupId>) {
    let (read, delete): (Vec<BackupId>, Vec<BackupId>) = plan
        .delete
        .drain(..)
        .partition(|id| being_read.contains(id));
    plan.delete = delete;
    plan.delete_incomplete.retain(|id| !being_read.contains(id));
    if read.is_empty() {
        return;
    }
    for id in read {
        plan.keep.push((
            id,
            vec!["being read (a restore, verify or export is running)".into()],
        ));
    }
    plan.keep.sort_by(|a, b| b.0.cmp(&a.0));
}

fn id_seconds(id: &BackupId) -> i64 {
    id.time().map(|t| t.as_second()).unwrap_or(0)
}

async fn delete_folder(store: &Store, db: &DbName, id: &BackupId) -> Result<usize> {
    let objects = store.list(&layout::backup_dir(db, id)).await?;
    for o in &objects {
        store.delete(&o.key).await?;
    }
    Ok(objects.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::tests::{manifest, put};

    #[tokio::test]
    async fn a_store_without_the_drill_evidence_still_keeps_the_drilled_backup() {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let primary = Store::open_folder(a.path()).expect("primary");
        let offsite = Store::open_folder(b.path()).expect("offsite");
        let db = DbName::parse("app").expect("db");
        let ids = [
            "20261101T020000Z-aaaa",
            "20261102T020000Z-bbbb",
            "20261103T020000Z-cccc",
        ];
        for (i, id) in ids.iter().enumerate() {
            put(
                &offsite,
                id,
                manifest(id, &format!("2026-11-0{}T02:00:01Z", i + 1)),
            )
            .await;
        }
        // The last passing drill (its evidence in the primary) proved the oldest backup.
        let result = serde_json::json!({
            "schema_version": 1, "drill_id": "20261104T000000Z-0000", "database": "app", "verdict": "pass",
            "started_at": "2026-11-04T00:00:00Z", "finished_at": "2026-11-04T00:01:00Z",
            "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
            "backup": {"id": ids[0], "snapshot_time": "2026-11-01T02:00:01Z", "finished_at": "2026-11-01T02:00:01Z",
                       "server_version": "15", "pg_dump_version": "15", "objects": []},
            "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
            "stages": [], "rpo": {"minutes": 1.0, "target_minutes": null, "passed": null},
            "rto": {"minutes": 0.5, "target_minutes": null, "passed": null},
            "checks": [], "error": null, "policy": {}
        });
        primary
            .put(
                "app/drills/20261104T000000Z-0000/result.json",
                serde_json::to_vec(&result).expect("json").into(),
            )
            .await
            .expect("put result");
        let section = retention::RetentionSection {
            keep_last: Some(1),
            keep_min: Some(1),
            ..Default::default()
        };
        let policy = RetentionPolicy::from_section(&section, None).expect("policy");
        let o = run_in(&offsite, &primary, &db, &policy, true, None)
            .await
            .expect("plan");
        let kept: Vec<&str> = o.plan.keep.iter().map(|(id, _)| id.as_str()).collect();
        assert!(kept.contains(&ids[0]), "the drilled backup: {kept:?}");
        assert!(kept.contains(&ids[2]), "the newest: {kept:?}");
        let deleted: Vec<&str> = o.plan.delete.iter().map(|i| i.as_str()).collect();
        assert_eq!(deleted, [ids[1]]);
        // Read from the offsite store alone, nothing protects it.
        let o = run(&offsite, &db, &policy, true, None).await.expect("plan");
        assert_eq!(o.plan.delete.len(), 2);
    }
}
