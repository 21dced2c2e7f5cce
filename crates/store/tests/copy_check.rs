//! Each store checks the copy it received (`CopyCheck`): a folder re-reads its file, an S3
//! store with `checksum = "etag"` compares the ETag with the MD5s pgdrill computed, one with
//! `checksum = "sha256"` sends `x-amz-checksum-sha256` for the service to check. A copy that
//! fails its check is deleted and the write fails with `StoreError::Mismatch`.

use bytes::Bytes;
use pgdrill_store::{CopyCheck, Store, StoreError, StoreLocation, StoreOptions};
use pgdrill_testkit::S3Server;

const MIB: usize = 1 << 20;

/// A two-part upload and a put through `store`: both must succeed and read back whole.
async fn good_copies(store: &Store) {
    let data: Vec<u8> = (0..6 * MIB).map(|i| (i % 251) as u8).collect();
    let mut up = store.upload("db/good.bin", 5 * MIB, 2).await.expect("open");
    up.write(Bytes::from(data.clone())).await.expect("write");
    assert_eq!(up.finish().await.expect("finish"), data.len() as u64);
    assert_eq!(store.get("db/good.bin").await.expect("get"), data);
    store
        .put_checked("db/small.txt", Bytes::from_static(b"sums"))
        .await
        .expect("put");
    assert_eq!(store.get("db/small.txt").await.expect("get"), "sums");
}

/// Writes of keys ending in `.bad` are corrupted on their way: each must fail its check,
/// name the check, and leave nothing at the key.
async fn corrupted_copies_fail(store: &Store, check: &str) {
    let store = store.clone().with_corrupted_writes(".bad");
    let mut up = store.upload("db/big.bad", 5 * MIB, 2).await.expect("open");
    up.write(Bytes::from(vec![9u8; 6 * MIB]))
        .await
        .expect("write");
    let e = up
        .finish()
        .await
        .expect_err("a corrupted upload must fail its check");
    assert!(
        matches!(&e, StoreError::Mismatch { check: c, .. } if *c == check),
        "{e}"
    );
    assert!(e.to_string().contains("db/big.bad"), "{e}");
    assert!(!store.exists("db/big.bad").await.expect("exists"), "kept");
    let e = store
        .put_checked("db/small.bad", Bytes::from_static(b"x"))
        .await
        .expect_err("a corrupted put must fail its check");
    assert!(matches!(e, StoreError::Mismatch { .. }), "{e}");
    assert!(!store.exists("db/small.bad").await.expect("exists"), "kept");
    // Other keys of the same wrapped store are untouched and pass.
    good_copies(&store).await;
}

#[tokio::test]
async fn a_folder_rereads_each_copy() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("open");
    assert_eq!(store.copy_check(), CopyCheck::Reread);
    corrupted_copies_fail(&store, "reread").await;
    // Keys whose file names the backend encodes are read back too.
    for key in ["odd/with space/a+b=c&d.bin", "odd/ünïcödé/日本語 ✓.bin"] {
        let mut up = store.upload(key, 5 * MIB, 2).await.expect("open");
        up.write(Bytes::from_static(b"odd")).await.expect("write");
        up.finish().await.expect(key);
        store
            .put_checked(&format!("{key}.sums"), Bytes::from_static(b"s"))
            .await
            .expect(key);
    }
}

fn s3_store(s3: &S3Server, bucket: &str, checksum: Option<CopyCheck>) -> Store {
    s3.create_bucket(bucket);
    let opts = StoreOptions {
        env: s3.env(),
        checksum,
        ..Default::default()
    };
    let location = StoreLocation::parse(&format!("s3://{bucket}/p")).expect("url");
    Store::open(&location, &opts).expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_checks_by_etag_and_accepts_sha256_checksums() {
    let s3 = S3Server::start();
    // A custom endpoint's default is the size alone: an unknown service may refuse the
    // checksum header or answer ETags that are not MD5s.
    assert_eq!(s3_store(&s3, "dflt", None).copy_check(), CopyCheck::Size);
    let etag = s3_store(&s3, "etag", Some(CopyCheck::Etag));
    assert_eq!(etag.copy_check(), CopyCheck::Etag);
    corrupted_copies_fail(&etag, "etag").await;
    // moto takes x-amz-checksum-sha256 on puts, parts and the completion (it does not check
    // it; AWS S3, R2 and MinIO do).
    let sha = s3_store(&s3, "sha", Some(CopyCheck::Sha256));
    good_copies(&sha).await;
}
