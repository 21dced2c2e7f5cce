//! Copies of backups in several stores, made object by object through the `pgdrill_store`
//! API as the several-stores write side makes them (DESIGN.md §9): the same keys and bytes in
//! every store, the manifest written last, so a copy is complete once its manifest exists.
//! Tests of the read side (fallback, `list`/`status` per store, per-store retention) use it to
//! set up stores that disagree; tests of the write side can use it as the reference.

use pgdrill_store::{Store, StoreLocation, StoreOptions};

const MANIFEST: &str = "manifest.json";

/// Opens the store at `url` (a folder, or `s3://bucket/prefix` with `endpoint`), with the
/// `env` an S3 store takes its credentials from ([`crate::S3Server::env`]). Panics on error.
pub fn open_store(url: &str, endpoint: Option<&str>, env: &[(String, String)]) -> Store {
    let location = StoreLocation::parse(url).unwrap_or_else(|e| panic!("store url {url}: {e}"));
    let opts = StoreOptions {
        endpoint: endpoint.map(str::to_string),
        env: env.to_vec(),
        ..Default::default()
    };
    location
        .open(&opts)
        .unwrap_or_else(|e| panic!("opening store {url}: {e}"))
}

/// The backup ids of `db` that `store` holds a complete copy of (a manifest), sorted.
pub async fn complete_backups(store: &Store, db: &str) -> Vec<String> {
    let objects = store
        .list(&format!("{db}/backups"))
        .await
        .unwrap_or_else(|e| panic!("listing {db}/backups in {}: {e}", store.display()));
    let mut ids: Vec<String> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(&format!("/{MANIFEST}")))
        .filter_map(|dir| dir.rsplit('/').next().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Copies backup `id` of `db` from `from` to `to`: every object of its folder, then its
/// manifest last. Returns how many objects were copied. Panics on any error.
pub async fn copy_backup(from: &Store, to: &Store, db: &str, id: &str) -> usize {
    let dir = format!("{db}/backups/{id}");
    let objects = from
        .list(&dir)
        .await
        .unwrap_or_else(|e| panic!("listing {dir} in {}: {e}", from.display()));
    assert!(
        objects.iter().any(|o| o.key.ends_with(MANIFEST)),
        "{dir} in {} is not a complete backup",
        from.display()
    );
    let (manifest, rest): (Vec<_>, Vec<_>) = objects
        .iter()
        .partition(|o| o.key == format!("{dir}/{MANIFEST}"));
    for o in rest.iter().chain(manifest.iter()) {
        let bytes = from
            .get(&o.key)
            .await
            .unwrap_or_else(|e| panic!("reading {} from {}: {e}", o.key, from.display()));
        to.put(&o.key, bytes)
            .await
            .unwrap_or_else(|e| panic!("writing {} to {}: {e}", o.key, to.display()));
    }
    objects.len()
}
