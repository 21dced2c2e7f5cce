//! The prune job: every database's backups by the retention policy, each under its lease
//! (a dry run takes none and deletes nothing), then the mirrors' snapshots.

use super::JobEnv;
use crate::ids::DbName;
use crate::mirror::MirrorPrunePlan;
use crate::prune::{self, PruneOutcome};
use crate::Result;

pub struct PruneReport {
    pub databases: Vec<(DbName, PruneOutcome)>,
    /// `None` when no mirror is configured, or `--name` names a database, not a mirror.
    pub mirrors: Option<Vec<MirrorPrunePlan>>,
}

/// Prunes `databases`, then (when `name` is unset or names a mirror) the configured mirrors.
pub async fn run(
    jx: &JobEnv<'_>,
    databases: Vec<DbName>,
    name: Option<&str>,
    dry_run: bool,
) -> Result<PruneReport> {
    let policy = &jx.settings.retention;
    let mut out = Vec::new();
    for db in databases {
        let held = if dry_run {
            None
        } else {
            Some(jx.lease(&db, "prune").await?)
        };
        let o = prune::run(jx.store, &db, policy, dry_run, held.as_ref()).await;
        if let Some(l) = held {
            l.release().await;
            crate::catalog::cache::update(jx.store, &db).await;
        }
        let o = o?;
        if let Some(n) = &o.plan.note {
            jx.events.warn(n);
        }
        for (id, why) in &o.unreadable {
            jx.events.warn(&format!(
                "backup {id} of {db} has an unreadable manifest, so prune keeps it: {why}; check it with `pgdrill verify {id}` and delete the folder by hand if it is garbage"
            ));
        }
        out.push((db, o));
    }
    let mirrors = &jx.settings.mirrors;
    let mirror_selected = name
        .map(|n| mirrors.iter().any(|m| m.name == n))
        .unwrap_or(true);
    let mirrors = if !mirrors.is_empty() && mirror_selected {
        let overrides = super::mirror::PruneOverrides {
            dry_run,
            ..Default::default()
        };
        Some(super::mirror::prune(jx, name, &overrides).await?)
    } else {
        None
    };
    Ok(PruneReport {
        databases: out,
        mirrors,
    })
}
