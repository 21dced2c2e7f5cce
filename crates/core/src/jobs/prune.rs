//! The prune job: every database's backups by the retention policy, each under its lease
//! (a dry run takes none and deletes nothing), then the mirrors' snapshots.

use super::JobEnv;
use crate::ids::DbName;
use crate::mirror::MirrorPrunePlan;
use crate::prune::{self, PruneOutcome};
use crate::Result;

pub struct PruneReport {
    /// One entry per database and store (stores in config order; `PruneOutcome::store`
    /// names it when several are configured).
    pub databases: Vec<(DbName, PruneOutcome)>,
    /// With several stores: the stores that could not be pruned, one sentence each (the
    /// others still were).
    pub store_errors: Vec<String>,
    /// `None` when no mirror is configured, or `--name` names a database, not a mirror.
    pub mirrors: Option<Vec<MirrorPrunePlan>>,
}

/// Prunes `databases`, then (when `name` is unset or names a mirror) the configured mirrors.
/// With several `stores` (primary first, the job's store), each is pruned by its own
/// `[store.retention]` (else `[retention]`), under the database's lease in the primary; a
/// passing drill's backup stays in every store.
pub async fn run(
    jx: &JobEnv<'_>,
    stores: &crate::stores::Stores,
    databases: Vec<DbName>,
    name: Option<&str>,
    dry_run: bool,
) -> Result<PruneReport> {
    let mut out = Vec::new();
    let mut store_errors = Vec::new();
    for db in databases {
        let held = if dry_run {
            None
        } else {
            Some(jx.lease(&db, "prune").await?)
        };
        let mut outcomes = Vec::new();
        if stores.len() < 2 {
            // One store: its own `[store.retention]` when it has one.
            let policy = stores
                .first()
                .and_then(|(s, _)| s.retention.as_ref())
                .unwrap_or(&jx.settings.retention);
            let o = prune::run(jx.store, &db, policy, dry_run, held.as_ref()).await;
            outcomes.push(o);
        } else {
            for (s, store) in stores {
                let policy = s.retention.as_ref().unwrap_or(&jx.settings.retention);
                let o = prune::run_in(store, jx.store, &db, policy, dry_run, held.as_ref()).await;
                match o {
                    Ok(mut o) => {
                        o.store = Some(s.name.clone());
                        outcomes.push(Ok(o));
                    }
                    Err(e @ crate::Error::Store { .. }) => {
                        let msg = format!("store {} was not pruned for {db}: {e}", s.name);
                        jx.events.warn(&msg);
                        store_errors.push(msg);
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
        }
        if let Some(l) = held {
            l.release().await;
            crate::catalog_cache::update(jx.store, &db).await;
        }
        for o in outcomes {
            let o = o?;
            if let Some(n) = &o.plan.note {
                jx.events.warn(n);
            }
            for (id, why) in &o.unreadable {
                jx.events.warn(&format!(
                    "backup {id} of {db} has an unreadable manifest, so prune keeps it: {why}; check it with `pgdrill verify {id}` and delete the folder by hand if it is garbage"
                ));
            }
            out.push((db.clone(), o));
        }
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
        store_errors,
        mirrors,
    })
}
