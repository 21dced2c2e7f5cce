use super::*;
use crate::catalog::tests::manifest;

fn setup() -> (tempfile::TempDir, Store, DbName) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    (dir, store, DbName::parse("app").expect("db"))
}

/// A backup written as an older pgdrill writes it: the manifest, no catalog update.
async fn put_backup(store: &Store, db: &DbName, id: &str, snapshot: &str) {
    let key = layout::backup_object(db, &BackupId::parse(id).expect("id"), layout::MANIFEST);
    let json = serde_json::to_vec(&manifest(id, snapshot)).expect("json");
    store.put(&key, json.into()).await.expect("put");
}

async fn stored(store: &Store, db: &DbName) -> CatalogFile {
    let bytes = store.get(&layout::catalog_key(db)).await.expect("catalog");
    serde_json::from_slice(&bytes).expect("catalog json")
}

fn ids(l: &Listing) -> Vec<String> {
    l.complete.iter().map(|m| m.backup_id.to_string()).collect()
}

fn pgdrill_core_summary(m: &crate::manifest::Manifest) -> serde_json::Value {
    crate::summary::backup(m)
}

fn stored_ids(c: &CatalogFile) -> Vec<String> {
    c.backups.iter().map(|e| e.id.to_string()).collect()
}

#[tokio::test]
async fn a_missing_catalog_is_rebuilt_from_the_manifests() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    put_backup(&store, &db, "20261102T020000Z-bbbb", "2026-11-02T02:00:01Z").await;
    // An incomplete folder: listed as such, not in the catalog.
    let partial = layout::backup_object(
        &db,
        &BackupId::parse("20261103T020000Z-cccc").expect("id"),
        "dump.pgc.zst",
    );
    store.put(&partial, "x".into()).await.expect("put");
    assert!(!store.exists(&layout::catalog_key(&db)).await.expect("head"));

    let cached = list(&store, &db).await.expect("cached");
    let truth = crate::catalog::list(&store, &db).await.expect("list");
    assert_eq!(ids(&cached), ids(&truth));
    assert_eq!(
        ids(&cached),
        ["20261102T020000Z-bbbb", "20261101T020000Z-aaaa"]
    );
    assert_eq!(cached.incomplete.len(), 1);
    assert_eq!(cached.incomplete[0].0.as_str(), "20261103T020000Z-cccc");
    // The same manifests as far as the catalog keeps them (every field its readers use).
    for (c, t) in cached.complete.iter().zip(&truth.complete) {
        assert_eq!(c, &BackupSummary::of(t).to_manifest(&db, &t.backup_id));
        assert_eq!(
            (
                &c.backup_id,
                &c.database,
                &c.snapshot,
                &c.started_at,
                &c.finished_at
            ),
            (
                &t.backup_id,
                &t.database,
                &t.snapshot,
                &t.started_at,
                &t.finished_at
            )
        );
        assert_eq!(
            (c.raw_bytes, c.stored_bytes, &c.stage_seconds, &c.encryption),
            (t.raw_bytes, t.stored_bytes, &t.stage_seconds, &t.encryption)
        );
        assert_eq!(c.content.tables.len(), t.content.tables.len());
        assert_eq!(c.encrypted(), t.encrypted());
        assert_eq!(c.server.version, t.server.version);
        assert_eq!(
            pgdrill_core_summary(c),
            pgdrill_core_summary(t),
            "list --json and the API show the same"
        );
    }
    let file = stored(&store, &db).await;
    assert_eq!(file.format_version, FORMAT_VERSION);
    assert_eq!(stored_ids(&file), ids(&truth));
}

#[tokio::test]
async fn a_current_catalog_is_served_without_reading_the_manifests() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    update(&store, &db).await;
    // Mark the cached entry (its stamp still matches the manifest): a reader that shows the
    // mark read the catalog, not the manifest.
    let mut file = stored(&store, &db).await;
    file.backups[0].summary.as_mut().expect("m").raw_bytes = 4242;
    let key = layout::catalog_key(&db);
    store
        .put(&key, serde_json::to_vec(&file).expect("json").into())
        .await
        .expect("put");
    let etag = store.head(&key).await.expect("head").etag;
    let l = list(&store, &db).await.expect("cached");
    assert_eq!(l.complete[0].raw_bytes, 4242);
    assert_eq!(
        store.head(&key).await.expect("head").etag,
        etag,
        "a current catalog is not written again"
    );
    // The manifest rewritten (a new stamp): read again.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    let l = list(&store, &db).await.expect("cached");
    assert_eq!(l.complete[0].raw_bytes, 0);
    assert_eq!(
        stored(&store, &db).await.backups[0]
            .summary
            .as_ref()
            .expect("m")
            .raw_bytes,
        0
    );
}

#[tokio::test]
async fn a_stale_catalog_is_rebuilt_after_a_backup_by_an_older_version_and_a_manual_delete() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    put_backup(&store, &db, "20261102T020000Z-bbbb", "2026-11-02T02:00:01Z").await;
    update(&store, &db).await;
    assert_eq!(stored(&store, &db).await.backups.len(), 2);

    // An older pgdrill adds a backup (no catalog update) ...
    put_backup(&store, &db, "20261103T020000Z-cccc", "2026-11-03T02:00:01Z").await;
    // ... and an operator deletes one by hand.
    let gone = BackupId::parse("20261101T020000Z-aaaa").expect("id");
    store
        .delete(&layout::backup_object(&db, &gone, layout::MANIFEST))
        .await
        .expect("delete");

    let want = ["20261103T020000Z-cccc", "20261102T020000Z-bbbb"];
    let l = list(&store, &db).await.expect("cached");
    assert_eq!(ids(&l), want);
    assert_eq!(
        ids(&crate::catalog::list(&store, &db).await.expect("list")),
        want
    );
    assert_eq!(stored_ids(&stored(&store, &db).await), want);

    // A damaged manifest is listed as unreadable, as by `list`, and cached as such.
    let bad = BackupId::parse("20261104T020000Z-dddd").expect("id");
    store
        .put(
            &layout::backup_object(&db, &bad, layout::MANIFEST),
            "{no".into(),
        )
        .await
        .expect("put");
    let l = list(&store, &db).await.expect("cached");
    assert_eq!(l.unreadable.len(), 1);
    assert_eq!(l.unreadable[0].0, bad);
    assert!(stored(&store, &db).await.backups[0].unreadable.is_some());
}

#[tokio::test]
async fn an_unreadable_catalog_is_rebuilt_and_a_newer_format_left_alone() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    let key = layout::catalog_key(&db);
    store.put(&key, "{garbage".into()).await.expect("put");
    assert_eq!(list(&store, &db).await.expect("cached").complete.len(), 1);
    assert_eq!(stored(&store, &db).await.backups.len(), 1);

    let newer = serde_json::json!({"format_version": FORMAT_VERSION + 1, "backups": []});
    store
        .put(&key, serde_json::to_vec(&newer).expect("json").into())
        .await
        .expect("put");
    assert_eq!(list(&store, &db).await.expect("cached").complete.len(), 1);
    let raw: serde_json::Value =
        serde_json::from_slice(&store.get(&key).await.expect("get")).expect("json");
    assert_eq!(raw, newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_keep_every_entry() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-0000", "2026-11-01T02:00:01Z").await;
    update(&store, &db).await;
    // Eight jobs each write a backup and update the catalog at once.
    let mut tasks = Vec::new();
    for i in 1..=8 {
        let (store, db) = (store.clone(), db.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("2026110{i}T020000Z-000{i}");
            put_backup(&store, &db, &id, &format!("2026-11-0{i}T02:00:01Z")).await;
            update(&store, &db).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // The stored catalog itself (not a reader's repair) holds all nine.
    assert_eq!(stored(&store, &db).await.backups.len(), 9);
}

#[tokio::test]
async fn a_swap_against_a_changed_catalog_is_refused_and_retried() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    let before = read(&store, &db).await.expect("read");
    assert!(!before.exists);
    update(&store, &db).await;
    // A writer that read before the update cannot overwrite it ...
    let key = layout::catalog_key(&db);
    let stale = CatalogFile::default();
    assert!(matches!(
        write(&store, &db, &stale, None).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let etag = store.head(&key).await.expect("head").etag.expect("etag");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    put_backup(&store, &db, "20261102T020000Z-bbbb", "2026-11-02T02:00:01Z").await;
    update(&store, &db).await;
    assert!(matches!(
        write(&store, &db, &stale, Some(&etag)).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(stored(&store, &db).await.backups.len(), 2);
}

#[tokio::test]
async fn drill_results_are_cached_like_manifests() {
    let (_dir, store, db) = setup();
    let result = |id: &str, at: &str| {
        serde_json::json!({
            "schema_version": 1, "drill_id": id, "database": "app", "verdict": "pass",
            "started_at": at, "finished_at": at, "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
            "backup": {"id": "x", "snapshot_time": at, "finished_at": at, "server_version": "15", "pg_dump_version": "15", "objects": []},
            "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
            "stages": [], "rpo": {"minutes": null, "target_minutes": null, "passed": null},
            "rto": {"minutes": null, "target_minutes": null, "passed": null}, "checks": [], "error": null, "policy": {}
        })
    };
    for (id, at) in [
        ("20261101T040000Z-0000", "2026-11-01T04:00:00Z"),
        ("20261102T040000Z-0000", "2026-11-02T04:00:00Z"),
    ] {
        let key = layout::drill_object(&db, &DrillId::parse(id).expect("id"), "result.json");
        let body = serde_json::to_vec(&result(id, at)).expect("json");
        store.put(&key, body.into()).await.expect("put");
    }
    // A drill in progress has no result yet.
    let running = DrillId::parse("20261103T040000Z-0000").expect("id");
    store
        .put(&layout::drill_object(&db, &running, "log.txt"), "x".into())
        .await
        .expect("put");
    let cached = load(&store, &db).await.expect("load");
    let truth = crate::drill::list(&store, &db).await.expect("drills");
    assert_eq!(cached.drills, truth);
    assert_eq!(cached.drills.len(), 2);
    assert_eq!(stored(&store, &db).await.drills.len(), 2);
}

/// The same on an S3-protocol server, where the swap is `If-Match`: a missing catalog is
/// built, one stale after a hand-deleted manifest and a backup without an update is rebuilt,
/// and eight jobs updating at once keep every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_s3_the_catalog_is_rebuilt_and_concurrent_updates_keep_every_entry() {
    let s3 = pgdrill_testkit::S3Server::start();
    s3.create_bucket("catalog");
    let opts = pgdrill_store::StoreOptions {
        env: s3.env(),
        ..Default::default()
    };
    let store = pgdrill_store::StoreLocation::parse("s3://catalog/fleet")
        .expect("url")
        .open(&opts)
        .expect("open");
    let db = DbName::parse("app").expect("db");
    put_backup(&store, &db, "20261101T020000Z-0000", "2026-11-01T02:00:01Z").await;
    put_backup(&store, &db, "20261101T030000Z-0000", "2026-11-01T03:00:01Z").await;
    assert_eq!(list(&store, &db).await.expect("cached").complete.len(), 2);
    assert_eq!(stored(&store, &db).await.backups.len(), 2);
    let gone = BackupId::parse("20261101T030000Z-0000").expect("id");
    store
        .delete(&layout::backup_object(&db, &gone, layout::MANIFEST))
        .await
        .expect("delete");
    let mut tasks = Vec::new();
    for i in 1..=8 {
        let (store, db) = (store.clone(), db.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("2026110{i}T040000Z-000{i}");
            put_backup(&store, &db, &id, &format!("2026-11-0{i}T04:00:01Z")).await;
            update(&store, &db).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let file = stored(&store, &db).await;
    assert_eq!(file.backups.len(), 9, "{:?}", stored_ids(&file));
    assert!(!stored_ids(&file).contains(&gone.to_string()));
    let truth = crate::catalog::list(&store, &db).await.expect("list");
    assert_eq!(stored_ids(&file), ids(&truth));
}

/// Format 1 kept whole manifests under `manifest`: such a catalog, even with stamps that
/// still match, is rebuilt (never read as entries without a summary) and replaced.
#[tokio::test]
async fn a_format_1_catalog_is_rebuilt_not_misread() {
    let (_dir, store, db) = setup();
    let id = "20261101T020000Z-aaaa";
    put_backup(&store, &db, id, "2026-11-01T02:00:01Z").await;
    let key = layout::backup_object(&db, &BackupId::parse(id).expect("id"), layout::MANIFEST);
    let stamp = store.head(&key).await.expect("head").etag.expect("etag");
    let mut m = serde_json::to_value(manifest(id, "2026-11-01T02:00:01Z")).expect("json");
    m["raw_bytes"] = 4242.into();
    let v1 = serde_json::json!({
        "format_version": 1,
        "backups": [{"id": id, "stamp": stamp, "manifest": m}],
        "drills": [],
    });
    store
        .put(&layout::catalog_key(&db), v1.to_string().into())
        .await
        .expect("put");
    let l = list(&store, &db).await.expect("cached");
    assert_eq!(ids(&l), [id]);
    assert!(l.unreadable.is_empty(), "{:?}", l.unreadable);
    assert_eq!(l.complete[0].raw_bytes, 0, "read from the manifest");
    let file = stored(&store, &db).await;
    assert_eq!(file.format_version, FORMAT_VERSION);
    assert!(file.backups[0].summary.is_some());
}

/// What the folder-level LIST must still see, each without a catalog update: a backup
/// that was in progress (an incomplete folder) when the catalog was written and got its
/// manifest since; a manifest deleted while its folder stays (a prune that found a reader's
/// mark); a drill folder that got its `result.json` since.
#[tokio::test]
async fn changes_inside_known_folders_are_seen_without_an_update() {
    let (_dir, store, db) = setup();
    let (a, b) = ("20261101T020000Z-aaaa", "20261102T020000Z-bbbb");
    put_backup(&store, &db, a, "2026-11-01T02:00:01Z").await;
    let b_id = BackupId::parse(b).expect("id");
    store
        .put(
            &layout::backup_object(&db, &b_id, "dump.pgc.zst"),
            "x".into(),
        )
        .await
        .expect("put");
    let drill = DrillId::parse("20261103T040000Z-0000").expect("id");
    store
        .put(&layout::drill_object(&db, &drill, "log.txt"), "x".into())
        .await
        .expect("put");
    let l = list(&store, &db).await.expect("first");
    assert_eq!((ids(&l), l.incomplete.len()), (vec![a.to_string()], 1));
    assert!(stored(&store, &db).await.drills.is_empty());

    // The manifest lands in the known folder; the drill's result in its folder.
    put_backup(&store, &db, b, "2026-11-02T02:00:01Z").await;
    let result = serde_json::json!({
        "schema_version": 1, "drill_id": drill.as_str(), "database": "app", "verdict": "pass",
        "started_at": "2026-11-03T04:00:00Z", "finished_at": "2026-11-03T04:05:00Z",
        "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
        "backup": {"id": b, "snapshot_time": "2026-11-02T02:00:01Z", "finished_at": "2026-11-02T02:00:01Z", "server_version": "15", "pg_dump_version": "15", "objects": []},
        "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
        "stages": [], "rpo": {"minutes": null, "target_minutes": null, "passed": null},
        "rto": {"minutes": null, "target_minutes": null, "passed": null}, "checks": [], "error": null, "policy": {}
    });
    store
        .put(
            &layout::drill_object(&db, &drill, "result.json"),
            serde_json::to_vec(&result).expect("json").into(),
        )
        .await
        .expect("put");
    let c = load(&store, &db).await.expect("second");
    assert_eq!(ids(&c.listing), [b, a]);
    assert!(c.listing.incomplete.is_empty());
    assert_eq!(c.drills.len(), 1);
    assert_eq!(c.drills[0].drill_id, drill.as_str());

    // The newest manifest deleted, its dump kept: gone from the listing, incomplete again.
    store
        .delete(&layout::backup_object(&db, &b_id, layout::MANIFEST))
        .await
        .expect("delete");
    let l = list(&store, &db).await.expect("third");
    assert_eq!(ids(&l), [a]);
    assert_eq!(l.incomplete.len(), 1);
    assert_eq!(l.incomplete[0].0, b_id);
    assert_eq!(stored_ids(&stored(&store, &db).await), [a]);
}

/// A backup's manifest written as `publish` writes it (create-if-absent), returning the
/// manifest, with `raw_bytes` changed after the write (so an entry showing 4242 was taken
/// from the manifest handed over, not read back), and the store's copy with the manifest's
/// stamp as the store lists it (as `publish` sees it).
async fn write_backup(store: &Store, db: &DbName, id: &str) -> (Manifest, StoreCopy) {
    let snapshot = format!("{}-{}-{}T00:00:01Z", &id[0..4], &id[4..6], &id[6..8]);
    let v = manifest(id, &snapshot);
    let json = serde_json::to_vec(&v).expect("json");
    let mut m: Manifest = serde_json::from_value(v).expect("manifest");
    let key = layout::backup_object(db, &m.backup_id, layout::MANIFEST);
    store
        .put_if_absent(&key, json.into())
        .await
        .expect("create");
    let listed = store
        .list(&layout::backup_dir(db, &m.backup_id))
        .await
        .expect("list");
    let stamp = listed
        .iter()
        .find(|o| o.key == key)
        .map(pgdrill_store::ObjectInfo::stamp);
    m.raw_bytes = 4242;
    let copy = StoreCopy {
        store: "default".into(),
        ok: true,
        check: "size".into(),
        error: None,
        stored_bytes: 1,
        seconds: 0.0,
        manifest_stamp: stamp,
    };
    (m, copy)
}

fn raw_bytes(c: &CatalogFile) -> Vec<(String, u64)> {
    c.backups
        .iter()
        .map(|e| {
            (
                e.id.to_string(),
                e.summary.as_ref().map(|s| s.raw_bytes).unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// A backup's update begun beside its dump: the catalog read and listed first, then, once
/// the manifest is written, its entry added from the manifest handed over (not read back),
/// stamped so that readers find it current (no rewrite, no manifest read).
#[tokio::test]
async fn a_prefetched_update_adds_the_written_manifest_without_reading_it() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    update(&store, &db).await;
    let catalogs = Prefetch::start(vec![Some(store.clone())], &db);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (m, copy) = write_backup(&store, &db, "20261102T020000Z-bbbb").await;
    catalogs.update(&m, &[copy]).await;
    let file = stored(&store, &db).await;
    assert_eq!(
        raw_bytes(&file),
        [
            ("20261102T020000Z-bbbb".to_string(), 4242),
            ("20261101T020000Z-aaaa".to_string(), 0)
        ]
    );
    // Its stamp is the one the store lists: a reader serves it as it is.
    let key = layout::catalog_key(&db);
    let etag = store.head(&key).await.expect("head").etag;
    let l = list(&store, &db).await.expect("cached");
    assert_eq!(l.complete[0].raw_bytes, 4242);
    assert_eq!(store.head(&key).await.expect("head").etag, etag);
}

/// The catalog changed between the early read and the swap (another job's update): the
/// swap is refused and the update starts again from a fresh read, keeping both entries.
#[tokio::test]
async fn a_prefetched_update_against_a_changed_catalog_reads_again() {
    let (_dir, store, db) = setup();
    put_backup(&store, &db, "20261101T020000Z-aaaa", "2026-11-01T02:00:01Z").await;
    update(&store, &db).await;
    let catalogs = Prefetch::start(vec![Some(store.clone())], &db);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    put_backup(&store, &db, "20261101T030000Z-cccc", "2026-11-01T03:00:01Z").await;
    update(&store, &db).await;
    let (m, copy) = write_backup(&store, &db, "20261102T020000Z-bbbb").await;
    catalogs.update(&m, &[copy]).await;
    assert_eq!(
        raw_bytes(&stored(&store, &db).await),
        [
            ("20261102T020000Z-bbbb".to_string(), 4242),
            ("20261101T030000Z-cccc".to_string(), 0),
            ("20261101T020000Z-aaaa".to_string(), 0)
        ]
    );
}

/// A copy without the manifest's stamp: listed again (after the early read), the
/// manifest's entry stamped as listed, still not read back. A copy that failed in a second
/// store leaves that store's catalog alone; a third store's good copy gets its catalog; a
/// missing catalog is created.
#[tokio::test]
async fn without_a_stamp_the_listed_one_is_taken_and_failed_copies_are_left_alone() {
    let (_dir, store, db) = setup();
    let other_dir = tempfile::tempdir().expect("tmp");
    let other = Store::open_folder(other_dir.path()).expect("store");
    let third_dir = tempfile::tempdir().expect("tmp");
    let third = Store::open_folder(third_dir.path()).expect("store");
    let catalogs = Prefetch::start(
        vec![
            Some(store.clone()),
            Some(other.clone()),
            Some(third.clone()),
        ],
        &db,
    );
    let (m, mut copy) = write_backup(&store, &db, "20261102T020000Z-bbbb").await;
    copy.manifest_stamp = None;
    let failed = StoreCopy {
        store: "other".into(),
        ok: false,
        manifest_stamp: None,
        ..copy.clone()
    };
    let (_, good) = write_backup(&third, &db, "20261102T020000Z-bbbb").await;
    catalogs.update(&m, &[copy, failed, good]).await;
    assert_eq!(
        raw_bytes(&stored(&third, &db).await),
        [("20261102T020000Z-bbbb".to_string(), 4242)]
    );
    let file = stored(&store, &db).await;
    assert_eq!(
        raw_bytes(&file),
        [("20261102T020000Z-bbbb".to_string(), 4242)]
    );
    let key = layout::backup_object(&db, &m.backup_id, layout::MANIFEST);
    assert_eq!(
        Some(file.backups[0].stamp.clone()),
        store.head(&key).await.expect("head").etag
    );
    assert!(!other.exists(&layout::catalog_key(&db)).await.expect("head"));
}

/// A primary whose copy failed (it may be down) gets no catalog update, and one left out at
/// the start (found unreachable) gets no request at all; the good copy's store is updated.
#[tokio::test]
async fn a_failed_or_left_out_primary_is_not_updated() {
    let (_dir, store, db) = setup();
    let second_dir = tempfile::tempdir().expect("tmp");
    let second = Store::open_folder(second_dir.path()).expect("store");
    for (left_out, id) in [
        (false, "20261102T020000Z-cccc"),
        (true, "20261103T020000Z-dddd"),
    ] {
        let primary = (!left_out).then(|| store.clone());
        let catalogs = Prefetch::start(vec![primary, Some(second.clone())], &db);
        let (m, good) = write_backup(&second, &db, id).await;
        let failed = StoreCopy {
            store: "primary".into(),
            ok: false,
            manifest_stamp: None,
            ..good.clone()
        };
        catalogs.update(&m, &[failed, good]).await;
        assert!(!store.exists(&layout::catalog_key(&db)).await.expect("head"));
        let file = stored(&second, &db).await;
        assert!(raw_bytes(&file).contains(&(id.to_string(), 4242)), "{id}");
    }
}
