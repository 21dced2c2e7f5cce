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

/// Lists one database's backups with a single LIST and one GET per manifest.
pub async fn list(store: &Store, db: &DbName) -> Result<Listing> {
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
    let mut listing = Listing::default();
    for (id, (has_manifest, newest)) in folders.into_iter().rev() {
        if !has_manifest {
            listing.incomplete.push((id, newest));
            continue;
        }
        match read_manifest(store, db, &id).await {
            Ok(m) => listing.complete.push(m),
            Err(e) => listing.unreadable.push((id, e.to_string())),
        }
    }
    // Ids sort by time only to the second: order by snapshot time so `latest` is the newest
    // even when two backups started within one second.
    listing.complete.sort_by(|a, b| {
        (b.snapshot.time.as_str(), &b.backup_id).cmp(&(a.snapshot.time.as_str(), &a.backup_id))
    });
    Ok(listing)
}

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
pub async fn resolve(store: &Store, db: &DbName, selector: &str) -> Result<Manifest> {
    if selector == "latest" {
        let listing = list(store, db).await?;
        return listing.complete.into_iter().next().ok_or_else(|| {
            Error::Invalid(format!(
                "there is no complete backup of {db} in {}: run `pgdrill backup` first",
                store.display()
            ))
        });
    }
    let id =
        BackupId::parse(selector).map_err(|e| Error::Invalid(format!("{e}; or use latest")))?;
    read_manifest(store, db, &id).await
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
