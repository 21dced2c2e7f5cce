//! What the store holds: complete backups (those with a manifest), incomplete ones, and the
//! resolution of `<ID|latest>`.

use crate::ids::{BackupId, DbName};
use crate::layout;
use crate::manifest::Manifest;
use crate::{Error, Result};
use pgdrill_store::Store;
use std::collections::BTreeMap;

/// The backups of one database as the store lists them.
#[derive(Debug, Default)]
pub struct Listing {
    /// Complete backups, newest first.
    pub complete: Vec<Manifest>,
    /// Backup folders without a manifest (in progress, failed or half-pruned), with the time
    /// of their newest object (Unix seconds).
    pub incomplete: Vec<(BackupId, i64)>,
    /// Folders whose manifest could not be read, with the reason.
    pub unreadable: Vec<(BackupId, String)>,
}

/// Manifests read at once.
pub(crate) const READ_AHEAD: usize = 16;

/// Backup folders of one database, newest id first: `(id, has a manifest, newest object's
/// time)`. One LIST.
async fn folders(store: &Store, db: &DbName) -> Result<Vec<(BackupId, bool, i64)>> {
    let objects = store.list(&layout::backups_prefix(db)).await?;
    let mut folders: BTreeMap<BackupId, (bool, i64)> = BTreeMap::new();
    for o in &objects {
        let mut parts = o.key.rsplitn(2, '/');
        let file = parts.next().unwrap_or_default();
        let dir = parts.next().unwrap_or_default();
        let Some(id) = dir.rsplit('/').next().and_then(|s| BackupId::parse(s).ok()) else {
            continue;
        };
        let e = folders.entry(id).or_insert((false, 0));
        e.0 |= file == layout::MANIFEST;
        e.1 = e.1.max(o.last_modified);
    }
    Ok(folders
        .into_iter()
        .rev()
        .map(|(id, (m, t))| (id, m, t))
        .collect())
}

/// Newest snapshot first (ids sort by time only to the second, so two backups started
/// within one second are ordered by their snapshot).
pub(crate) fn newest_first(a: &Manifest, b: &Manifest) -> std::cmp::Ordering {
    (b.snapshot.time.as_str(), &b.backup_id).cmp(&(a.snapshot.time.as_str(), &a.backup_id))
}

/// The manifests of `ids`, in that order, [`READ_AHEAD`] read at once.
fn manifests<'a>(
    store: &'a Store,
    db: &'a DbName,
    ids: Vec<BackupId>,
) -> impl futures::Stream<Item = (BackupId, Result<Manifest>)> + 'a {
    use futures::StreamExt;
    futures::stream::iter(ids)
        .map(move |id| async move {
            let r = read_manifest(store, db, &id).await;
            (id, r)
        })
        .buffered(READ_AHEAD)
}

/// Lists one database's backups with a single LIST and one GET per manifest
/// ([`READ_AHEAD`] at a time).
pub async fn list(store: &Store, db: &DbName) -> Result<Listing> {
    use futures::StreamExt;
    let mut listing = Listing::default();
    let mut complete = Vec::new();
    for (id, has_manifest, newest) in folders(store, db).await? {
        if has_manifest {
            complete.push(id);
        } else {
            listing.incomplete.push((id, newest));
        }
    }
    let mut read = manifests(store, db, complete);
    while let Some((id, r)) = read.next().await {
        match r {
            Ok(m) => listing.complete.push(m),
            Err(e) if not_a_backup(&e) => listing.unreadable.push((id, e.to_string())),
            // A store that failed (a timeout, throttling) says nothing about the backup:
            // a listing without it would be wrong, not short.
            Err(e) => return Err(e),
        }
    }
    listing.complete.sort_by(newest_first);
    Ok(listing)
}

/// A resolved backup, and what the resolution passed over.
#[derive(Debug)]
pub struct Resolved {
    pub manifest: Manifest,
    /// One sentence per newer backup whose manifest is damaged (`latest` used an older one).
    pub warnings: Vec<String>,
}

/// The result of [`latest`].
#[derive(Debug, Default)]
pub struct Latest {
    pub manifest: Option<Manifest>,
    /// Backups newer than `manifest` whose manifest is damaged (an integrity failure), with
    /// the reason: they would have been `latest`.
    pub damaged: Vec<(BackupId, String)>,
}

/// The complete backup with the newest snapshot, reading manifests newest id first and
/// stopping at ids more than [`LATEST_HORIZON_SECS`] older than the newest snapshot found (a
/// backup's snapshot is taken right after it starts), so that `latest` costs a few GETs
/// however many backups the store holds. Newer backups with a damaged manifest are skipped
/// and reported, never silently.
pub async fn latest(store: &Store, db: &DbName) -> Result<Latest> {
    use futures::StreamExt;
    let ids: Vec<BackupId> = folders(store, db)
        .await?
        .into_iter()
        .filter(|f| f.1)
        .map(|f| f.0)
        .collect();
    let mut best: Option<Manifest> = None;
    let mut damaged = Vec::new();
    let mut read = manifests(store, db, ids);
    while let Some((id, r)) = read.next().await {
        if best.as_ref().is_some_and(|b| beyond_horizon(b, &id)) {
            break;
        }
        let m = match r {
            Ok(m) => m,
            Err(Error::Integrity(e)) => {
                damaged.push((id, e));
                continue;
            }
            Err(e) if not_a_backup(&e) => continue,
            Err(e) => return Err(e),
        };
        if best.as_ref().is_none_or(|b| newest_first(&m, b).is_lt()) {
            best = Some(m);
        }
    }
    damaged.retain(|(id, _)| best.as_ref().is_none_or(|b| maybe_newer(id, b)));
    Ok(Latest {
        manifest: best,
        damaged,
    })
}

/// Backup `id`, whose manifest cannot be read, may be newer than `best`: its id is greater, or
/// it started in the same second (ids order by the second only; its snapshot is unknown).
fn maybe_newer(id: &BackupId, best: &Manifest) -> bool {
    id > &best.backup_id || (id.time().is_some() && id.time() == best.backup_id.time())
}

/// [`latest`] as a [`Resolved`]: warnings for the damaged newer manifests; an integrity error
/// when they leave no complete backup.
pub async fn latest_resolved(store: &Store, db: &DbName) -> Result<Resolved> {
    let l = latest(store, db).await?;
    resolved(store, db, l.manifest, &l.damaged)
}

/// [`latest_of`] over a whole listing: the same backup, with the same warnings as
/// [`latest_resolved`].
pub fn latest_in(store: &Store, db: &DbName, listing: &Listing) -> Result<Resolved> {
    let best = latest_of(&listing.complete).cloned();
    let damaged: Vec<(BackupId, String)> = listing
        .unreadable
        .iter()
        .filter(|(id, _)| best.as_ref().is_none_or(|b| maybe_newer(id, b)))
        .cloned()
        .collect();
    resolved(store, db, best, &damaged)
}

fn resolved(
    store: &Store,
    db: &DbName,
    best: Option<Manifest>,
    damaged: &[(BackupId, String)],
) -> Result<Resolved> {
    let Some(manifest) = best else {
        if let Some((id, why)) = damaged.first() {
            return Err(Error::Integrity(format!(
                "the newest backup {id} of {db} has a damaged manifest ({why}) and there is no older complete backup: run `pgdrill verify --all`, then a new backup"
            )));
        }
        return Err(no_backup(store, db));
    };
    let warnings = damaged
        .iter()
        .map(|(id, why)| {
            format!(
                "backup {id} of {db} is newer than {} but its manifest is damaged ({why}); using {} instead: run `pgdrill verify --all`",
                manifest.backup_id, manifest.backup_id
            )
        })
        .collect();
    Ok(Resolved { manifest, warnings })
}

/// [`latest`] among manifests already read (a [`Listing`]'s), by the same rule.
pub fn latest_of(complete: &[Manifest]) -> Option<&Manifest> {
    let mut by_id: Vec<&Manifest> = complete.iter().collect();
    by_id.sort_by(|a, b| b.backup_id.cmp(&a.backup_id));
    let mut best: Option<&Manifest> = None;
    for m in by_id {
        if best.is_some_and(|b| beyond_horizon(b, &m.backup_id)) {
            break;
        }
        if best.is_none_or(|b| newest_first(m, b).is_lt()) {
            best = Some(m);
        }
    }
    best
}

/// Backup `id` (and every older one) started more than [`LATEST_HORIZON_SECS`] before `best`'s
/// snapshot: it cannot be newer.
fn beyond_horizon(best: &Manifest, id: &BackupId) -> bool {
    let horizon = crate::time::parse(&best.snapshot.time)
        .map(|s| crate::time::add_secs(s, -LATEST_HORIZON_SECS));
    matches!((horizon, id.time()), (Some(h), Some(t)) if t < h)
}

/// The error for a database without a complete backup.
pub fn no_backup(store: &Store, db: &DbName) -> Error {
    Error::Invalid(format!(
        "there is no complete backup of {db} in {}: run `pgdrill backup` first",
        store.display()
    ))
}

/// An invalid manifest, or one removed since the listing, is not a restorable backup (`list`
/// shows it); a store failure (throttling, a timeout) is no reason to pick an older backup.
pub(crate) fn not_a_backup(e: &Error) -> bool {
    matches!(
        e,
        Error::Integrity(_)
            | Error::Invalid(_)
            | Error::Store {
                kind: crate::error::StoreErrorKind::Invalid,
                ..
            }
    )
}

/// How far before the newest snapshot found [`latest`] still looks at backups: a day.
const LATEST_HORIZON_SECS: i64 = 86_400;

pub async fn read_manifest(store: &Store, db: &DbName, id: &BackupId) -> Result<Manifest> {
    let key = layout::backup_object(db, id, layout::MANIFEST);
    let bytes = store.get(&key).await.map_err(|e| match e {
        pgdrill_store::StoreError::NotFound { .. } => Error::Invalid(format!(
            "backup {id} of {db} has no manifest (it does not exist or never completed): run `pgdrill list` to see complete backups"
        )),
        other => other.into(),
    })?;
    let m = Manifest::from_json(&bytes, &key)?;
    if &m.backup_id != id || &m.database != db {
        return Err(Error::Integrity(format!(
            "{key} describes backup {} of {}, not {id} of {db}: the store was tampered with or copied wrongly",
            m.backup_id, m.database
        )));
    }
    Ok(m)
}

/// Resolves `latest` or a backup id to a complete backup's manifest.
pub async fn resolve(store: &Store, db: &DbName, selector: &str) -> Result<Resolved> {
    if selector == "latest" {
        return latest_resolved(store, db).await;
    }
    let id =
        BackupId::parse(selector).map_err(|e| Error::Invalid(format!("{e}; or use latest")))?;
    Ok(Resolved {
        manifest: read_manifest(store, db, &id).await?,
        warnings: Vec::new(),
    })
}

/// `--at TIME`: the complete backup with the newest snapshot not after `at` (RFC 3339).
pub async fn resolve_at(store: &Store, db: &DbName, at: &str) -> Result<Resolved> {
    let when = crate::time::parse(at).ok_or_else(|| {
        Error::Invalid(format!(
            "--at {at:?} is not an RFC 3339 time: write it like 2026-11-21T02:00:00Z"
        ))
    })?;
    let listing = list(store, db).await?;
    let manifest = at_or_before(&listing.complete, when).cloned().ok_or_else(|| {
        Error::Invalid(format!(
            "{db} has no complete backup whose snapshot is at or before {at}: run `pgdrill list` to see the backups and their times"
        ))
    })?;
    Ok(Resolved {
        manifest,
        warnings: Vec::new(),
    })
}

/// The manifest with the newest snapshot time not after `at` (pure; manifests whose
/// snapshot time does not parse are passed over).
pub fn at_or_before(complete: &[Manifest], at: crate::time::Timestamp) -> Option<&Manifest> {
    complete
        .iter()
        .filter_map(|m| crate::time::parse(&m.snapshot.time).map(|t| (t, m)))
        .filter(|(t, _)| *t <= at)
        .max_by(|(ta, a), (tb, b)| ta.cmp(tb).then(a.backup_id.cmp(&b.backup_id)))
        .map(|(_, m)| m)
}

/// Database names that have a `backups/` folder in the store.
pub async fn databases(store: &Store) -> Result<Vec<DbName>> {
    let mut out = Vec::new();
    for dir in store.list_dirs("").await? {
        let Ok(name) = DbName::parse(&dir) else {
            continue;
        };
        let sub = store.list_dirs(&dir).await?;
        if sub.iter().any(|s| s == "backups") {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
