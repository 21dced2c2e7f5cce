//! The `backup_copies` SLO (several stores, DESIGN.md §9): every configured store holds a
//! complete copy of each recent backup. A pure function of what each store listed.

use super::Slo;
use crate::ids::BackupId;
use crate::time::{self, Timestamp};
use serde::Serialize;

/// What one store holds of one database (`status --json`'s `databases[].stores[]`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoreCopies {
    pub store: String,
    pub reachable: bool,
    /// Complete copies in this store.
    pub backups: usize,
    pub newest_backup: Option<BackupId>,
    pub newest_snapshot: Option<String>,
    /// Recent backups (the newest over all stores, and every one within the freshness
    /// threshold) this store has no complete copy of.
    pub missing: Vec<BackupId>,
    /// Why the store could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One store's listing of a database: its complete backups as `(id, snapshot time)`, or
/// the error that kept it from answering.
#[derive(Clone, Debug)]
pub struct Listed {
    pub store: String,
    pub complete: Result<Vec<(BackupId, String)>, String>,
}

/// Each store's copies, and the SLO: violated when a store cannot be read or lacks a
/// recent backup (the newest over every store, and any within `threshold_seconds` of
/// `now`), naming the store and the backups.
pub fn evaluate(
    listed: &[Listed],
    threshold_seconds: i64,
    now: Timestamp,
) -> (Vec<StoreCopies>, Slo) {
    let all: Vec<&(BackupId, String)> = listed
        .iter()
        .filter_map(|l| l.complete.as_ref().ok())
        .flatten()
        .collect();
    let newest = all
        .iter()
        .max_by(|a, b| (a.1.as_str(), &a.0).cmp(&(b.1.as_str(), &b.0)))
        .map(|b| b.0.clone());
    let mut recent: Vec<BackupId> = all
        .iter()
        .filter(|(id, snap)| {
            Some(id) == newest.as_ref()
                || time::parse(snap)
                    .is_some_and(|t| time::seconds_between(t, now) <= threshold_seconds)
        })
        .map(|b| b.0.clone())
        .collect();
    recent.sort();
    recent.dedup();
    let mut problems = Vec::new();
    let copies: Vec<StoreCopies> = listed
        .iter()
        .map(|l| match &l.complete {
            Ok(list) => {
                let newest = list
                    .iter()
                    .max_by(|a, b| (a.1.as_str(), &a.0).cmp(&(b.1.as_str(), &b.0)));
                let missing: Vec<BackupId> = recent
                    .iter()
                    .filter(|id| !list.iter().any(|(x, _)| x == *id))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    let ids: Vec<&str> = missing.iter().map(|i| i.as_str()).collect();
                    problems.push(format!(
                        "store {} has no copy of {} (run `pgdrill copy` to backfill it)",
                        l.store,
                        ids.join(", ")
                    ));
                }
                StoreCopies {
                    store: l.store.clone(),
                    reachable: true,
                    backups: list.len(),
                    newest_backup: newest.map(|n| n.0.clone()),
                    newest_snapshot: newest.map(|n| n.1.clone()),
                    missing,
                    error: None,
                }
            }
            Err(e) => {
                problems.push(format!("store {} cannot be read: {e}", l.store));
                StoreCopies {
                    store: l.store.clone(),
                    reachable: false,
                    backups: 0,
                    newest_backup: None,
                    newest_snapshot: None,
                    missing: Vec::new(),
                    error: Some(e.clone()),
                }
            }
        })
        .collect();
    let names: Vec<&str> = listed.iter().map(|l| l.store.as_str()).collect();
    let slo = Slo {
        name: "backup_copies".into(),
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "every store ({}) holds the {} recent backup(s)",
                names.join(", "),
                recent.len()
            )
        } else {
            problems.join("; ")
        },
    };
    (copies, slo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> BackupId {
        BackupId::parse(s).expect("id")
    }

    #[test]
    fn a_store_missing_the_newest_backup_violates_the_slo_and_is_named() {
        let now = time::parse("2026-11-03T03:00:00Z").expect("now");
        let old = (
            id("20261101T020000Z-aaaa"),
            "2026-11-01T02:00:01Z".to_string(),
        );
        let new = (
            id("20261103T020000Z-bbbb"),
            "2026-11-03T02:00:01Z".to_string(),
        );
        let listed = [
            Listed {
                store: "primary".into(),
                complete: Ok(vec![old.clone(), new.clone()]),
            },
            Listed {
                store: "offsite".into(),
                complete: Ok(vec![old.clone()]),
            },
        ];
        let (copies, slo) = evaluate(&listed, 26 * 3600, now);
        assert!(!slo.ok);
        assert!(
            slo.detail.contains("store offsite") && slo.detail.contains(new.0.as_str()),
            "{}",
            slo.detail
        );
        assert_eq!(copies[1].missing, vec![new.0.clone()]);
        assert_eq!(copies[0].backups, 2);
        assert_eq!(copies[0].newest_backup, Some(new.0.clone()));
        // An old backup missing from one store is not a recent one: fine.
        let listed = [
            Listed {
                store: "primary".into(),
                complete: Ok(vec![old.clone(), new.clone()]),
            },
            Listed {
                store: "offsite".into(),
                complete: Ok(vec![new.clone()]),
            },
        ];
        let (_, slo) = evaluate(&listed, 26 * 3600, now);
        assert!(slo.ok, "{}", slo.detail);
        // A store that cannot be read violates it too.
        let listed = [
            Listed {
                store: "primary".into(),
                complete: Ok(vec![new.clone()]),
            },
            Listed {
                store: "offsite".into(),
                complete: Err("connection refused".into()),
            },
        ];
        let (copies, slo) = evaluate(&listed, 26 * 3600, now);
        assert!(!slo.ok && slo.detail.contains("store offsite cannot be read"));
        assert!(!copies[1].reachable);
    }
}
