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

/// The error of a job (`what`: "a prune", "a copy") whose lease could not be taken because the
/// primary store cannot be reached: such jobs keep their lease in the primary only (see
/// docs/ARCHITECTURE.md, "Leases"), so the sentence says to run it again once it answers.
pub(crate) fn primary_only(e: crate::Error, what: &str) -> crate::Error {
    e.map_message(|m| {
        format!(
            "{m}; {what} takes the database's lease in the primary (first) store only, so run it again once that store answers (backups go on in the other stores meanwhile)"
        )
    })
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
            match jx.lease(&db, "prune").await {
                Ok(held) => Some(held),
                Err(e) if stores.len() > 1 && crate::stores::unreachable(&e) => {
                    return Err(primary_only(e, "a prune"))
                }
                Err(e) => return Err(e),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::Cancel;
    use crate::config::{Env, Settings, StoreSettings};
    use crate::jobs::Silent;
    use pgdrill_store::Store;
    use std::path::Path;

    fn named(name: &str, dir: &Path) -> (StoreSettings, Store) {
        let location: pgdrill_store::StoreLocation =
            dir.display().to_string().parse().expect("loc");
        let mut s = StoreSettings::from_location(location, Default::default());
        s.name = name.into();
        (s, Store::open_folder(dir).expect("store"))
    }

    /// Issue 19: with several stores and the primary down, a prune takes no lease elsewhere
    /// and deletes nothing anywhere; its error says to run it again once the primary answers.
    #[tokio::test]
    async fn a_prune_fails_while_the_primary_is_down_and_touches_no_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let stores = vec![
            named("r2", &dir.path().join("r2")),
            named("b2", &dir.path().join("b2")),
        ];
        // The primary goes away: its folder becomes a file.
        std::fs::remove_dir(dir.path().join("r2")).expect("rmdir");
        std::fs::write(dir.path().join("r2"), b"not a folder").expect("file");
        let b2 = stores[1].1.clone();
        b2.put("app/backups/x/dump", bytes::Bytes::from_static(b"old"))
            .await
            .expect("put");
        let env = Env::new();
        let settings = Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
        let (_handle, cancel) = Cancel::new();
        let jx = JobEnv {
            store: &stores[0].1,
            settings: &settings,
            env: &env,
            cancel,
            events: &Silent,
            slot: None,
        };
        let app = DbName::parse("app").expect("db");
        let e = run(&jx, &stores, vec![app.clone()], None, false)
            .await
            .err()
            .expect("the primary is down");
        assert!(
            e.to_string()
                .ends_with("so run it again once that store answers (backups go on in the other stores meanwhile)"),
            "{e}"
        );
        assert_eq!(
            b2.list("").await.expect("list").len(),
            1,
            "no lease, no deletion in b2"
        );
        // One store: the store's own error, unchanged.
        let e1 = run(&jx, &stores[..1], vec![app], None, false)
            .await
            .err()
            .expect("down");
        assert!(
            !e1.to_string().contains("primary (first) store only"),
            "{e1}"
        );
        assert_eq!(e1.exit_code(), e.exit_code());
    }
}
