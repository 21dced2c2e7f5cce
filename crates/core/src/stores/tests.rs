use super::*;
use crate::layout;

/// A minimal manifest of backup `id` of `app` (for tests of other modules too).
pub(crate) fn manifest(id: &str, snapshot: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format_version": 1, "tool": {"name": "pgdrill", "version": "0"},
        "backup_id": id, "database": "app",
        "source": {"url": "u", "host": "h", "port": 5432, "dbname": "app", "user": "u"},
        "server": {"version": "15.18", "version_num": 150018, "version_string": "", "system_identifier": null, "database_size_bytes": null, "in_recovery": false},
        "pg_dump": {"path": "p", "version": "15.18", "args": []},
        "snapshot": {"exported": true, "id": null, "time": snapshot, "note": null},
        "started_at": "s", "finished_at": "f", "stage_seconds": {}, "raw_bytes": 0, "stored_bytes": 0,
        "compression": {"algorithm": "zstd", "level": 3},
        "encryption": {"scheme": "none", "recipient_fingerprints": [], "passphrase": false},
        "objects": [{"name": "dump.pgc.zst", "kind": "dump", "size": 1, "sha256": "", "raw_size": 1, "raw_sha256": ""}],
        "content": {"archive_version": "1.16", "tables": [], "schemas": [], "extensions": [], "schema_fingerprint": "", "large_objects": 0, "toc_entries": 0},
        "policy": {}, "host": "h"
    }))
    .expect("json")
}

const OLD: &str = "20261101T020000Z-aaaa";
const NEW: &str = "20261102T020000Z-bbbb";

fn named(name: &str, dir: &std::path::Path) -> (StoreSettings, Store) {
    let location: pgdrill_store::StoreLocation = dir.display().to_string().parse().expect("loc");
    let mut s = StoreSettings::from_location(location, Default::default());
    s.name = name.into();
    (s, Store::open_folder(dir).expect("store"))
}

/// Writes `body` as the manifest of backup `id` of `app`.
pub(crate) async fn put(store: &Store, id: &str, body: Vec<u8>) {
    let db = DbName::parse("app").expect("db");
    let key = layout::backup_object(&db, &BackupId::parse(id).expect("id"), layout::MANIFEST);
    store.put(&key, body.into()).await.expect("put");
}

#[tokio::test]
async fn latest_is_the_newest_copy_over_the_stores_read_from_the_first_holding_it() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let stores = vec![
        named("primary", dirs[0].path()),
        named("offsite", dirs[1].path()),
        named("local", dirs[2].path()),
    ];
    let db = DbName::parse("app").expect("db");
    // The primary missed the newest backup; offsite and local hold it.
    put(&stores[0].1, OLD, manifest(OLD, "2026-11-01T02:00:01Z")).await;
    for (_, s) in &stores[1..] {
        put(s, OLD, manifest(OLD, "2026-11-01T02:00:01Z")).await;
        put(s, NEW, manifest(NEW, "2026-11-02T02:00:01Z")).await;
    }
    let src = resolve(&stores, &db, "latest").await.expect("latest");
    assert_eq!(src.name, "offsite");
    assert_eq!(src.resolved.manifest.backup_id.as_str(), NEW);
    assert_eq!(src.passed_over.len(), 1, "{:?}", src.passed_over);
    assert!(
        src.passed_over[0].contains("store primary"),
        "{:?}",
        src.passed_over
    );
    // An id: the first store in order holding it.
    let src = resolve(&stores, &db, OLD).await.expect("old");
    assert_eq!(src.name, "primary");
    assert!(src.passed_over.is_empty());
    let src = resolve(&stores, &db, NEW).await.expect("new");
    assert_eq!(src.name, "offsite");
    assert!(src.passed_over[0].contains("has no copy of backup"));
    // --from-store: that one alone.
    let one = select(&stores, Some("primary")).expect("known");
    let src = resolve(one, &db, "latest").await.expect("primary latest");
    assert_eq!(src.resolved.manifest.backup_id.as_str(), OLD);
    let e = select(&stores, Some("nope")).expect_err("unknown");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("primary, offsite, local"), "{e}");
}

#[tokio::test]
async fn a_damaged_copy_is_reported_with_the_stores_holding_another() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let stores = vec![
        named("primary", dirs[0].path()),
        named("offsite", dirs[1].path()),
    ];
    let db = DbName::parse("app").expect("db");
    put(&stores[0].1, NEW, b"{not json".to_vec()).await;
    put(&stores[1].1, NEW, manifest(NEW, "2026-11-02T02:00:01Z")).await;
    let e = resolve(&stores, &db, NEW).await.expect_err("damaged");
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(e.to_string().contains("store primary"), "{e}");
    assert!(e.to_string().contains("--from-store offsite"), "{e}");
    // `latest` reads the good copy but names the damaged one.
    let src = resolve(&stores, &db, "latest").await.expect("latest");
    assert_eq!(src.name, "offsite");
    assert!(
        src.resolved
            .warnings
            .iter()
            .any(|w| w.contains("store primary")),
        "{:?}",
        src.resolved.warnings
    );
}
