use super::*;

pub(crate) fn manifest(id: &str, snapshot: &str) -> serde_json::Value {
    serde_json::json!({
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
    })
}

#[tokio::test]
async fn latest_is_the_newest_snapshot_without_reading_every_manifest() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    let db = DbName::parse("app").expect("db");
    let put = |id: &str, json: Vec<u8>| {
        let key = layout::backup_object(&db, &BackupId::parse(id).expect("id"), layout::MANIFEST);
        let store = store.clone();
        async move { store.put(&key, json.into()).await.expect("put") }
    };
    let m = |id: &str, t: &str| serde_json::to_vec(&manifest(id, t)).expect("json");
    assert!(latest(&store, &db).await.expect("empty").manifest.is_none());
    // Three days of backups; the two newest started within one second, the one with the
    // smaller id took its snapshot later.
    put(
        "20261101T020000Z-aaaa",
        m("20261101T020000Z-aaaa", "2026-11-01T02:00:01Z"),
    )
    .await;
    put(
        "20261103T020000Z-bbbb",
        m("20261103T020000Z-bbbb", "2026-11-03T02:00:03Z"),
    )
    .await;
    put(
        "20261103T020000Z-cccc",
        m("20261103T020000Z-cccc", "2026-11-03T02:00:02Z"),
    )
    .await;
    // The newest id has an unreadable manifest: not a restorable backup.
    put("20261104T020000Z-dddd", b"{not json".to_vec()).await;
    let found = latest(&store, &db).await.expect("latest");
    let l = found.manifest.expect("some");
    assert_eq!(l.backup_id.as_str(), "20261103T020000Z-bbbb");
    // ... and it is named, not skipped silently.
    assert_eq!(found.damaged.len(), 1);
    assert_eq!(found.damaged[0].0.as_str(), "20261104T020000Z-dddd");
    assert!(not_a_backup(
        &read_manifest(
            &store,
            &db,
            &BackupId::parse("20261104T020000Z-dddd").expect("id")
        )
        .await
        .expect_err("unreadable")
    ));
    assert!(!not_a_backup(&Error::from(
        pgdrill_store::StoreError::Backend {
            action: "get",
            key: "k".into(),
            detail: "503 SlowDown".into(),
            retryable: true,
        }
    )));
    // `list` agrees, and shows the unreadable one.
    let listing = list(&store, &db).await.expect("list");
    assert_eq!(listing.complete[0].backup_id, l.backup_id);
    assert_eq!(
        latest_of(&listing.complete).map(|m| &m.backup_id),
        Some(&l.backup_id)
    );
    assert_eq!(listing.complete.len(), 3);
    assert_eq!(listing.unreadable.len(), 1);
    // A backup started two days before the newest snapshot is not read for `latest`,
    // even if its snapshot time claims otherwise (a snapshot is taken as a backup starts).
    put(
        "20261101T020000Z-aaaa",
        m("20261101T020000Z-aaaa", "2026-12-01T00:00:00Z"),
    )
    .await;
    let l = latest(&store, &db)
        .await
        .expect("latest")
        .manifest
        .expect("some");
    assert_eq!(l.backup_id.as_str(), "20261103T020000Z-bbbb");
    let listing = list(&store, &db).await.expect("list");
    assert_eq!(
        listing.complete[0].backup_id.as_str(),
        "20261101T020000Z-aaaa"
    );
    // A listing's `latest` is the same backup.
    assert_eq!(
        latest_of(&listing.complete).map(|m| &m.backup_id),
        Some(&l.backup_id)
    );
}

#[tokio::test]
async fn latest_names_a_truncated_empty_or_invalid_newest_manifest() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    let db = DbName::parse("app").expect("db");
    let key =
        |id: &str| layout::backup_object(&db, &BackupId::parse(id).expect("id"), layout::MANIFEST);
    let good = serde_json::to_vec(&manifest("20261103T020000Z-bbbb", "2026-11-03T02:00:03Z"))
        .expect("json");
    let half = good[..good.len() / 2].to_vec();
    for damaged in [half, Vec::new(), b"{\"format_version\": 1}".to_vec()] {
        // Only the damaged one: an integrity failure, not "no backup".
        let dir2 = tempfile::tempdir().expect("tmp");
        let alone = Store::open_folder(dir2.path()).expect("store");
        alone
            .put(&key("20261104T020000Z-dddd"), damaged.clone().into())
            .await
            .expect("put");
        let e = resolve(&alone, &db, "latest").await.expect_err("damaged");
        assert_eq!(e.exit_code(), 3, "{e}");
        assert!(e.to_string().contains("20261104T020000Z-dddd"), "{e}");
        // With an older complete backup: that one, and a warning naming the damaged one.
        store
            .put(&key("20261103T020000Z-bbbb"), good.clone().into())
            .await
            .expect("put");
        store
            .put(&key("20261104T020000Z-dddd"), damaged.into())
            .await
            .expect("put");
        let r = resolve(&store, &db, "latest").await.expect("latest");
        assert_eq!(r.manifest.backup_id.as_str(), "20261103T020000Z-bbbb");
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("20261104T020000Z-dddd"),
            "{:?}",
            r.warnings
        );
        let listing = list(&store, &db).await.expect("list");
        let r = latest_in(&store, &db, &listing).expect("latest_in");
        assert_eq!(r.manifest.backup_id.as_str(), "20261103T020000Z-bbbb");
        assert_eq!(r.warnings.len(), 1);
    }
}

#[tokio::test]
async fn at_picks_the_newest_snapshot_not_after_the_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    let db = DbName::parse("app").expect("db");
    for (id, t) in [
        ("20261101T020000Z-aaaa", "2026-11-01T02:00:01Z"),
        ("20261102T020000Z-bbbb", "2026-11-02T02:00:01Z"),
        ("20261103T020000Z-cccc", "2026-11-03T02:00:01Z"),
    ] {
        let key = layout::backup_object(&db, &BackupId::parse(id).expect("id"), layout::MANIFEST);
        let json = serde_json::to_vec(&manifest(id, t)).expect("json");
        store.put(&key, json.into()).await.expect("put");
    }
    let at = |t: &'static str| {
        let (store, db) = (store.clone(), db.clone());
        async move { resolve_at(&store, &db, t).await }
    };
    let pick = at("2026-11-02T12:00:00Z").await.expect("at");
    assert_eq!(pick.manifest.backup_id.to_string(), "20261102T020000Z-bbbb");
    let exact = at("2026-11-03T02:00:01Z").await.expect("exact");
    assert_eq!(
        exact.manifest.backup_id.to_string(),
        "20261103T020000Z-cccc"
    );
    let e = at("2026-10-01T00:00:00Z").await.expect_err("none before");
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert!(e.to_string().contains("at or before"), "{e}");
    assert!(matches!(at("yesterday").await, Err(Error::Invalid(_))));
}
