//! One storage conformance suite, run against every backend: a local folder, a real
//! S3-protocol server (moto) on loopback, and each of them behind the fault-injection wrapper
//! (which must pass every key it is not told to drop through unchanged). Each clause of the
//! contract on `pgdrill_store::Store` has a check here. A hand-written server answering 500
//! stands in only where a real server cannot be made to fail on demand.
//!
//! (One file of about 870 lines: one suite, the contract's clauses in order, run against every
//! backend by the same driver.)

use bytes::Bytes;
use futures::TryStreamExt;
use pgdrill_store::{Store, StoreError, StoreErrorKind, StoreKind, StoreLocation, StoreOptions};
use pgdrill_testkit::S3Server;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const NONE: [&str; 0] = [];

/// Awaits a store call and panics with the call's text when it fails.
macro_rules! ok {
    ($call:expr) => {
        $call
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", stringify!($call)))
    };
}

/// What a backend keeps outside its objects while an upload is open: staged part files in a
/// local folder, pending multipart uploads on S3. Must be empty once an upload is finished,
/// aborted or dropped.
type Leftovers<'a> = &'a (dyn Fn() -> Vec<String> + Sync);

/// Every clause of the contract on `pgdrill_store::Store`; leaves the store empty.
async fn conformance(store: &Store, leftovers: Leftovers<'_>) {
    put_get_head_delete(store).await;
    put_if_absent(store).await;
    put_if_match(store).await;
    ranges_and_streams(store).await;
    range_edges(store).await;
    listing(store).await;
    odd_keys(store).await;
    multipart_finish(store, leftovers).await;
    multipart_abort_and_drop(store, leftovers).await;
    killed_upload_leftovers(store, leftovers).await;
    assert_eq!(listed(store, "").await, NONE);
}

async fn put_get_head_delete(store: &Store) {
    let key = "basic/obj.bin";
    ok!(store.put(key, "first version".into()));
    assert_eq!(ok!(store.get(key)), "first version");
    let first = ok!(store.head(key));
    assert_eq!((first.key.as_str(), first.size), (key, 13));
    assert!(first.last_modified > 1_600_000_000, "{first:?}");
    if store.kind() == StoreKind::S3 {
        assert!(first.etag.as_ref().is_some_and(|e| !e.is_empty()));
    }
    // A shorter overwrite: no tail of the old content may survive.
    ok!(store.put(key, "v2".into()));
    assert_eq!(ok!(store.get(key)), "v2");
    let second = ok!(store.head(key));
    assert_eq!(second.size, 2);
    if first.etag.is_some() {
        assert_ne!(first.etag, second.etag, "an overwrite must change the etag");
    }
    assert!(ok!(store.exists(key)));

    let missing = "basic/missing";
    not_found(store.get(missing).await, missing);
    not_found(store.head(missing).await, missing);
    not_found(
        store.get_stream(missing).await.map(|(size, _)| size),
        missing,
    );
    assert!(!ok!(store.exists(missing)));
    ok!(store.delete(key));
    assert!(!ok!(store.exists(key)));
    ok!(store.delete(key)); // again: deleting a missing key is Ok
    ok!(store.delete(missing));
}

async fn put_if_absent(store: &Store) {
    let key = "lease/lock";
    // Absent: created, with the ETag a compare-and-swap then matches.
    let etag = ok!(store.put_if_absent(key, "owner-1".into()));
    if let Some(etag) = &etag {
        assert_eq!(ok!(store.head(key)).etag.as_ref(), Some(etag));
    }
    // Present: refused as a conflict, and the object is untouched.
    match store.put_if_absent(key, "owner-2".into()).await {
        Err(e @ StoreError::AlreadyExists { .. }) => {
            assert_eq!(e.kind(), StoreErrorKind::Conflict);
            assert!(!e.is_retryable());
            assert!(e.to_string().contains(key), "{e}");
        }
        other => panic!("second put_if_absent: {other:?}"),
    }
    assert_eq!(ok!(store.get(key)), "owner-1");
    // Present after an unconditional put too.
    ok!(store.put(key, "overwritten".into()));
    let again = store.put_if_absent(key, "owner-4".into()).await;
    assert_eq!(again.map_err(|e| e.kind()), Err(StoreErrorKind::Conflict));
    assert_eq!(ok!(store.get(key)), "overwritten");
    ok!(store.delete(key));
    // Absent again once deleted.
    ok!(store.put_if_absent(key, "owner-3".into()));
    assert_eq!(ok!(store.get(key)), "owner-3");
    ok!(store.delete(key));

    // Of many racing creates, exactly one wins (what taking a lease relies on).
    let racers = (0..8).map(|i| {
        let store = store.clone();
        async move {
            store
                .put_if_absent("lease/race", format!("r{i}").into())
                .await
        }
    });
    let results = futures::future::join_all(racers).await;
    let won: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e:?}");
        }
    }
    assert_eq!(ok!(store.get("lease/race")), format!("r{}", won[0]));
    ok!(store.delete("lease/race"));
}

async fn put_if_match(store: &Store) {
    let key = "lease/cas";
    ok!(store.put(key, "v1".into()));
    let v1 = ok!(store.head(key))
        .etag
        .expect("every backend gives ETags");
    // Match: replaced, and the new ETag is the object's.
    let v2 = ok!(store.put_if_match(key, "v2".into(), &v1));
    assert_eq!(ok!(store.get(key)), "v2");
    let head = ok!(store.head(key));
    assert_ne!(
        head.etag.as_deref(),
        Some(v1.as_str()),
        "the ETag must change"
    );
    if let Some(v2) = &v2 {
        assert_eq!(head.etag.as_ref(), Some(v2));
    }
    // Mismatch (a stale ETag): a conflict, and the object is untouched.
    match store.put_if_match(key, "v3".into(), &v1).await {
        Err(e @ StoreError::AlreadyExists { .. }) => {
            assert_eq!(e.kind(), StoreErrorKind::Conflict);
            assert!(e.to_string().contains(key), "{e}");
        }
        other => panic!("put_if_match with a stale etag: {other:?}"),
    }
    assert_eq!(ok!(store.get(key)), "v2");
    // A made-up ETag never matches.
    let made_up = store
        .put_if_match(key, "v4".into(), "\"not-an-etag\"")
        .await;
    assert_eq!(made_up.map_err(|e| e.kind()), Err(StoreErrorKind::Conflict));
    assert_eq!(ok!(store.get(key)), "v2");
    // The current ETag (from head) matches again: a renewal chain.
    let current = ok!(store.head(key)).etag.expect("etag");
    ok!(store.put_if_match(key, "v5".into(), &current));
    assert_eq!(ok!(store.get(key)), "v5");
    // Gone: not found, and nothing is created.
    let last = ok!(store.head(key)).etag.expect("etag");
    ok!(store.delete(key));
    match store.put_if_match(key, "v6".into(), &last).await {
        Err(e) => assert_eq!(e.kind(), StoreErrorKind::NotFound, "{e:?}"),
        Ok(t) => panic!("put_if_match of a deleted key wrote it ({t:?})"),
    }
    assert!(!ok!(store.exists(key)));
}

async fn ranges_and_streams(store: &Store) {
    let data = Bytes::from(pseudo_random(300_000, 7));
    ok!(store.put("read/blob", data.clone()));
    for r in [0..1, 65_530..131_080, 299_990..300_000] {
        let got = ok!(store.get_range("read/blob", r.clone()));
        let want = &data[r.start as usize..r.end as usize];
        assert_same_bytes(&format!("range {r:?}"), &got, want);
    }
    // A prefix comes with the whole object's size and the ETag a pinned read accepts; a
    // prefix longer than the object is the object.
    let head = ok!(store.head("read/blob"));
    let (prefix, info) = ok!(store.get_prefix("read/blob", 65_536));
    assert_same_bytes("prefix", &prefix, &data[..65_536]);
    assert_eq!((info.size, &info.etag), (300_000, &head.etag));
    let pinned = ok!(store.get_range_pinned("read/blob", 10..20, info.etag.as_deref()));
    assert_same_bytes("pinned", &pinned, &data[10..20]);
    let (all, info) = ok!(store.get_prefix("read/blob", 1 << 20));
    assert_same_bytes("long prefix", &all, &data);
    assert_eq!(info.size, 300_000);
    let (size, stream) = ok!(store.get_stream("read/blob"));
    assert_eq!(size, 300_000);
    let chunks: Vec<Bytes> = ok!(stream.try_collect::<Vec<_>>());
    assert_same_bytes("stream", &chunks.concat(), &data);
    ok!(store.delete("read/blob"));

    // Larger than one ranged GET of a streamed read: the pieces join up in order.
    let big: Vec<u8> = (0..(2 * pgdrill_store::STREAM_CHUNK + 1234) as usize)
        .map(|i| (i % 251) as u8)
        .collect();
    ok!(store.put("read/big", Bytes::from(big.clone())));
    let (size, stream) = ok!(store.get_stream("read/big"));
    assert_eq!(size, big.len() as u64);
    let chunks: Vec<Bytes> = ok!(stream.try_collect::<Vec<_>>());
    assert_same_bytes("big stream", &chunks.concat(), &big);
    ok!(store.delete("read/big"));
}

/// Ranged reads at the object's edges, and a pinned read of a replaced object.
async fn range_edges(store: &Store) {
    let key = "read/edges";
    ok!(store.put(key, "0123456789".into()));
    assert_eq!(ok!(store.get_range(key, 0..10)), "0123456789");
    assert_eq!(ok!(store.get_range(key, 9..10)), "9");
    // An end past the object's end is cut to it.
    assert_eq!(ok!(store.get_range(key, 4..1000)), "456789");
    // A start at or past the end is an error, not empty bytes.
    for r in [10..12, 20..30] {
        let got = store.get_range(key, r.clone()).await;
        assert!(got.is_err(), "range {r:?} of 10 bytes: {got:?}");
    }
    let missing = store.get_range("read/none", 0..1).await;
    assert_eq!(missing.map_err(|e| e.kind()), Err(StoreErrorKind::NotFound));
    let missing = store.get_prefix("read/none", 10).await;
    assert_eq!(missing.map_err(|e| e.kind()), Err(StoreErrorKind::NotFound));
    // A read pinned to an ETag the object no longer has fails instead of mixing versions.
    let old = ok!(store.head(key)).etag;
    ok!(store.put(key, "abcdefghij".into()));
    match store.get_range_pinned(key, 0..4, old.as_deref()).await {
        Err(e) => assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e:?}"),
        Ok(b) => panic!("a pinned read of a replaced object answered {b:?}"),
    }
    let new = ok!(store.head(key)).etag;
    assert_eq!(
        ok!(store.get_range_pinned(key, 0..4, new.as_deref())),
        "abcd"
    );
    assert_eq!(ok!(store.get_range_pinned(key, 6..10, None)), "ghij");
    ok!(store.delete(key));
}

async fn listing(store: &Store) {
    // Sorted; "ls/ab/" shares a string prefix with "ls/a/" and must not leak into it.
    let all: Vec<&str> = "ls/a.txt ls/a/1 ls/a/b/2 ls/a/b/c/3 ls/ab/4 ls/b/5"
        .split(' ')
        .collect();
    for &k in &all {
        ok!(store.put(k, k.into()));
    }
    let infos = ok!(store.list("ls"));
    assert!(infos.iter().all(|o| o.size == o.key.len() as u64));
    assert_eq!(listed(store, "ls").await, all);
    let a = ["ls/a/1", "ls/a/b/2", "ls/a/b/c/3"];
    assert_eq!(listed(store, "ls/a").await, a);
    assert_eq!(listed(store, "ls/a/").await, a);
    assert_eq!(listed(store, "ls/ab").await, ["ls/ab/4"]);
    assert_eq!(listed(store, "ls/none").await, NONE);
    assert_eq!(ok!(store.list_dirs("ls")), ["a", "ab", "b"]);
    assert_eq!(ok!(store.list_dirs("ls/a")), ["b"]);
    assert_eq!(ok!(store.list_dirs("ls/none")), NONE);
    for k in all {
        ok!(store.delete(k));
    }
    // A listing that starts after a write or a delete returned reflects it.
    for i in 0..5 {
        let k = format!("ls/fresh/{i}");
        ok!(store.put(&k, "x".into()));
        assert!(
            listed(store, "ls/fresh").await.contains(&k),
            "{k} not listed"
        );
        ok!(store.delete(&k));
        assert_eq!(listed(store, "ls/fresh").await, NONE, "{k} still listed");
    }
}

async fn odd_keys(store: &Store) {
    let mut odd = vec!["odd/with space/file name.txt", "odd/x/a+b=c&d.txt"];
    odd.push("odd/ünïcödé/日本語 ✓.bin");
    for &k in &odd {
        ok!(store.put(k, k.into()));
        assert_eq!(ok!(store.get(k)), k);
        assert_eq!(ok!(store.head(k)).key, k);
    }
    assert_eq!(listed(store, "odd").await, odd);
    assert_eq!(ok!(store.list_dirs("odd")), ["with space", "x", "ünïcödé"]);
    for k in odd {
        ok!(store.delete(k));
        assert!(!ok!(store.exists(k)), "{k}");
    }
}

async fn multipart_finish(store: &Store, leftovers: Leftovers<'_>) {
    let key = "mp/big.bin";
    let data = Bytes::from(pseudo_random(12 * MIB + 12_345, 42));
    let mut up = ok!(store.upload(key, 5 * MIB, 2));
    let mut at = 0;
    for len in [1, 4093, 3 * MIB, 2 * MIB + 17, 7, 5 * MIB - 1, usize::MAX] {
        let end = at + len.min(data.len() - at);
        ok!(up.write(data.slice(at..end)));
        at = end;
        // Parts are uploading or uploaded by now, yet nothing is visible.
        assert!(!ok!(store.exists(key)), "visible at {at} bytes");
        assert_eq!(listed(store, "mp").await, NONE, "listed at {at} bytes");
    }
    assert_eq!(up.bytes(), data.len() as u64);
    assert!(!leftovers().is_empty(), "the probe sees no open upload");
    assert_eq!(ok!(up.finish()), data.len() as u64);
    assert_eq!(ok!(store.head(key)).size, data.len() as u64);
    assert_same_bytes("multipart", &ok!(store.get(key)), &data);
    assert_eq!(listed(store, "mp").await, [key]);
    assert_eq!(leftovers(), NONE, "left behind by finish");
    ok!(store.delete(key));
}

async fn multipart_abort_and_drop(store: &Store, leftovers: Leftovers<'_>) {
    let data = Bytes::from(pseudo_random(11 * MIB, 9));
    for (key, drop_it) in [("mp/aborted.bin", false), ("mp/dropped.bin", true)] {
        let mut up = ok!(store.upload(key, 5 * MIB, 2));
        // The third write waits for capacity: at least one part has reached the store.
        for (a, b) in [(0, 6 * MIB), (6 * MIB, 11 * MIB), (0, 1)] {
            ok!(up.write(data.slice(a..b)));
        }
        assert!(!leftovers().is_empty(), "{key}: the probe sees nothing");
        if drop_it {
            drop(up);
            // The abort runs in the background: give it a bounded time.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !leftovers().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            ok!(up.abort());
        }
        assert_eq!(leftovers(), NONE, "{key}: left behind");
        assert!(!ok!(store.exists(key)), "{key} exists");
        assert_eq!(listed(store, "mp").await, NONE, "{key} listed");
    }
}

/// An upload whose process died (never finished, aborted or dropped) is found by
/// `staged_parts` below its prefix only, with a plausible time, and removed by
/// `delete_staged_part` (twice is fine).
async fn killed_upload_leftovers(store: &Store, leftovers: Leftovers<'_>) {
    let key = "staged/db/dump.bin";
    let mut up = ok!(store.upload(key, 5 * MIB, 2));
    ok!(up.write(Bytes::from(vec![3u8; 6 * MIB])));
    ok!(up.write(Bytes::from_static(b"x"))); // waits until the first part is stored
    std::mem::forget(up); // as if the process was killed: no abort
    let parts = ok!(store.staged_parts("staged"));
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert!(parts[0].key.starts_with(key), "{parts:?}");
    assert!(
        (1_000_000_000..=unix_now() + 60).contains(&parts[0].last_modified),
        "{parts:?}"
    );
    // (Compared by key: a local part file may still be growing.)
    let keys = |parts: &[pgdrill_store::StagedUpload]| {
        parts
            .iter()
            .map(|p| (p.key.clone(), p.upload_id.clone()))
            .collect::<Vec<_>>()
    };
    let whole = ok!(store.staged_parts(""));
    assert_eq!(keys(&whole), keys(&parts), "the whole store");
    assert_eq!(ok!(store.staged_parts("other")), []);
    assert!(!ok!(store.exists(key)));
    assert_eq!(listed(store, "staged").await, NONE);
    ok!(store.delete_staged_part(&parts[0]));
    ok!(store.delete_staged_part(&parts[0]));
    assert_eq!(ok!(store.staged_parts("")), []);
    assert_eq!(leftovers(), NONE, "left behind by delete_staged_part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let url = root.to_str().expect("utf-8 temp path");
    let store = open(url, &StoreOptions::default());
    assert_eq!(store.kind(), StoreKind::Local);
    assert!(store.display().starts_with("file:///"), "{store:?}");
    // LocalFileSystem stages uploads as `<path>#<n>` next to the destination.
    let staged = || files_under(&root).into_iter().filter(|f| f.contains('#'));
    conformance(&store, &|| staged().collect()).await;
    assert_eq!(files_under(&root), NONE, "files left on disk");
    // Behind the fault-injection wrapper, every key it does not drop behaves the same.
    let wrapped = store.with_dropped_puts("manifest.json");
    conformance(&wrapped, &|| staged().collect()).await;
    assert_eq!(files_under(&root), NONE, "files left on disk");
    dropped_puts(&wrapped).await;
}

/// The fault-injection wrapper itself: writes of the keys it drops are acknowledged and lost
/// (as by a store answering 200 and losing the object), whatever the kind of write.
async fn dropped_puts(store: &Store) {
    let key = "db/backups/x/manifest.json";
    ok!(store.put(key, "m".into()));
    ok!(store.put_if_absent(key, "m".into()));
    let mut up = ok!(store.upload(key, 5 * MIB, 2));
    ok!(up.write(Bytes::from(vec![7u8; 6 * MIB])));
    ok!(up.finish());
    assert!(!ok!(store.exists(key)), "a dropped write was stored");
    assert_eq!(listed(store, "db").await, NONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_conforms() {
    let s3 = S3Server::start();
    s3.create_bucket("conformance");
    let opts = StoreOptions {
        env: s3.env(),
        ..Default::default()
    };
    let store = open("s3://conformance/some/prefix", &opts);
    assert_eq!(store.kind(), StoreKind::S3);
    // A neighbour whose prefix extends ours as a string: listing must not pick it up.
    let sibling = open("s3://conformance/some/prefix-sibling", &opts);
    ok!(sibling.put("ls/a/1", "sibling".into()));
    conformance(&store, &|| pending_uploads(&s3, "conformance")).await;
    // Behind the fault-injection wrapper, every key it does not drop behaves the same.
    let wrapped = store.clone().with_dropped_puts("manifest.json");
    conformance(&wrapped, &|| pending_uploads(&s3, "conformance")).await;
    dropped_puts(&wrapped).await;
    assert_eq!(pending_uploads(&s3, "conformance"), NONE);

    ok!(store.put("rel/x", "x".into()));
    assert_eq!(listed(&store, "").await, ["rel/x"]);
    let mut raw = s3.list_keys("conformance");
    raw.sort();
    assert_eq!(raw, ["some/prefix-sibling/ls/a/1", "some/prefix/rel/x"]);
}

/// Issue 16.8: an S3 multipart upload left open by a killed process (its handle never
/// finished, aborted or dropped) was invisible to `staged_parts`, so nothing ever aborted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lists_and_aborts_uploads_left_open() {
    let s3 = S3Server::start();
    s3.create_bucket("leftover");
    let opts = StoreOptions {
        env: s3.env(),
        ..Default::default()
    };
    let store = open("s3://leftover/pg", &opts);
    let sibling = open("s3://leftover/pg-other", &opts);
    let key = "app/backups/20200101T000000Z-abcd/dump.pgc.zst.age";
    for s in [&store, &sibling] {
        let mut up = ok!(s.upload(key, 5 * MIB, 2));
        ok!(up.write(Bytes::from(vec![1u8; 6 * MIB])));
        ok!(up.write(Bytes::from_static(b"x"))); // waits until the first part is stored
        std::mem::forget(up); // as if the process was killed: no abort
    }
    let parts = ok!(store.staged_parts("app/backups"));
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].key, key);
    assert!(parts[0].upload_id.is_some());
    // When the upload started, by the server (moto says 2010-11-10T20:48:33Z of every one).
    assert!(
        (1_000_000_000..=unix_now()).contains(&parts[0].last_modified),
        "{parts:?}"
    );
    // (Compared by key: a local part file may still be growing.)
    let keys = |parts: &[pgdrill_store::StagedUpload]| {
        parts
            .iter()
            .map(|p| (p.key.clone(), p.upload_id.clone()))
            .collect::<Vec<_>>()
    };
    let whole = ok!(store.staged_parts(""));
    assert_eq!(keys(&whole), keys(&parts), "the whole store");
    assert_eq!(ok!(store.staged_parts("other")), []);
    assert_eq!(pending_uploads(&s3, "leftover").len(), 2);

    ok!(store.delete_staged_part(&parts[0]));
    ok!(store.delete_staged_part(&parts[0])); // already gone: not an error
    assert_eq!(ok!(store.staged_parts("")), []);
    assert_eq!(
        pending_uploads(&s3, "leftover"),
        [format!("pg-other/{key}")],
        "the neighbouring store's upload is not ours to abort"
    );
    assert_eq!(ok!(sibling.staged_parts("")).len(), 1);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A bucket that does not exist is named with its endpoint (no S3 XML) by every call whose
/// answer has a body.
#[tokio::test]
async fn missing_bucket_is_named_with_its_endpoint() {
    let s3 = S3Server::start();
    let opts = StoreOptions {
        env: s3.env(),
        ..Default::default()
    };
    let store = open("s3://no-such-bucket/p", &opts);
    let want = format!(
        "bucket no-such-bucket does not exist at {}: create it, or fix the bucket name in the store URL",
        s3.endpoint()
    );
    let errors = [
        store.get("db/manifest.json").await.map(|_| ()),
        store.list("db/").await.map(|_| ()),
        store.list_dirs("").await.map(|_| ()),
        store.put("db/x", "x".into()).await.map(|_| ()),
        store.staged_parts("db").await.map(|_| ()),
    ];
    // (A HEAD answer has no body to tell a missing bucket from a missing object.)
    for (i, r) in errors.into_iter().enumerate() {
        match r {
            Err(e @ StoreError::NoBucket { .. }) => assert_eq!(e.to_string(), want, "call {i}"),
            other => panic!("call {i}: {other:?}"),
        }
    }
}

/// The `R2_ACCESS_KEY_ID` path: credentials and endpoint passed by name, no `AWS_*` at all.
#[tokio::test]
async fn s3_credentials_from_named_options() {
    let s3 = S3Server::start();
    s3.create_bucket("named");
    let opts = StoreOptions {
        endpoint: Some(s3.endpoint()),
        access_key_id: Some("named-key-id".into()),
        secret_access_key: Some("named-secret".into()),
        ..Default::default()
    };
    let store = open("s3://named/p", &opts);
    ok!(store.put("hello", "hi".into()));
    assert_eq!(ok!(store.get("hello")), "hi");
    assert_eq!(listed(&store, "").await, ["hello"]);
    assert_eq!(s3.list_keys("named"), ["p/hello"]);

    let mut half = opts.clone();
    half.secret_access_key = None;
    match Store::open(&location("s3://named/p"), &half) {
        Err(e @ StoreError::BadUrl { .. }) => assert!(!e.to_string().contains("named-key-id")),
        other => panic!("a key id without a secret: {other:?}"),
    }
}

#[test]
fn store_urls_parse() {
    let s3 = |b: &str, p: &str| {
        Some(StoreLocation::S3 {
            bucket: b.into(),
            prefix: p.into(),
        })
    };
    assert_eq!(StoreLocation::parse("s3://b").ok(), s3("b", ""));
    assert_eq!(StoreLocation::parse(" s3://b//p/q// ").ok(), s3("b", "p/q"));
    let local = Some(StoreLocation::Folder {
        path: "/var/bk".into(),
    });
    assert_eq!(StoreLocation::parse("/var/bk").ok(), local);
    assert_eq!("file:///var/bk".parse::<StoreLocation>().ok(), local);
    for bad in
        "s3:// | s3:///p | file://rel | https://b/p | s3://k:s@b/p | s3://b/p?k=v |  ".split('|')
    {
        let parsed = StoreLocation::parse(bad);
        assert!(matches!(parsed, Err(StoreError::BadUrl { .. })), "{bad:?}");
        let kind = parsed.map_err(|e| e.kind());
        assert_eq!(kind, Err(StoreErrorKind::Invalid), "{bad:?}");
    }
    // A prefix with an empty segment cannot name objects; refuse it when opening.
    let opened = Store::open(&location("s3://b/a//c"), &StoreOptions::default());
    assert_eq!(
        opened.map(|_| ()).map_err(|e| e.kind()),
        Err(StoreErrorKind::Invalid)
    );
    // What a location shows is what it parses back from, and what the store says it is.
    let loc = location("s3://b/some/prefix/");
    assert_eq!(loc.to_string(), "s3://b/some/prefix");
    assert_eq!(
        (loc.bucket(), loc.prefix()),
        (Some("b"), Some("some/prefix"))
    );
    assert_eq!(loc.kind(), StoreKind::S3);
    let store = loc.open(&StoreOptions::default()).expect("open");
    assert_eq!(store.display(), loc.to_string());
}

#[test]
fn debug_output_hides_secrets() {
    let canary = "CANARY-s3cr3t-7f3a";
    let opts = StoreOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        access_key_id: Some("key-id".into()),
        secret_access_key: Some(canary.into()),
        session_token: Some(canary.into()),
        env: vec![("AWS_SECRET_ACCESS_KEY".into(), canary.into())],
        ..Default::default()
    };
    for shown in [format!("{opts:?}"), format!("{opts:#?}")] {
        assert!(!shown.contains(canary), "{shown}");
        assert!(shown.contains("127.0.0.1:9"), "{shown}");
    }
    let store = open("s3://b/p", &opts);
    assert!(!format!("{store:?} {}", store.display()).contains(canary));
}

#[tokio::test]
async fn put_gives_up_on_a_server_answering_500() {
    const KEY_ID: &str = "fault-key-id";
    const SECRET: &str = "fault-secret-canary";
    let (endpoint, finish) = serve_500(40);
    let opts = StoreOptions {
        endpoint: Some(endpoint),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key: Some(SECRET.into()),
        // The default window (30 s) with a short one: retried until it has passed, no longer.
        retry_window: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let store = open("s3://faulty/p", &opts);
    let started = Instant::now();
    let err = store.put("db/k", "payload".into()).await;
    let err = err.expect_err("put against a server answering 500");
    let took = started.elapsed();
    let heads = finish();
    let msg = err.to_string();
    eprintln!("gave up after {} requests in {took:?}: {msg}", heads.len());
    assert!(err.is_retryable(), "{err:?}");
    assert!(!msg.contains('\n') && msg.contains("db/k"), "{msg}");
    // Retried with backoff over the retry window, then given up.
    assert!((3..40).contains(&heads.len()), "{} requests", heads.len());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "gave up after {took:?}"
    );
    // The named credentials sign the requests; the secret itself never travels.
    for h in &heads {
        assert!(h.starts_with("PUT /faulty/p/db/k "), "{h}");
        assert!(h.contains(&format!("Credential={KEY_ID}/")), "{h}");
        assert!(!h.contains(SECRET), "{h}");
    }
    assert!(!msg.contains(SECRET), "{msg}");
}

/// The signed requests `object_store` does not make (listing open multipart uploads) are
/// bounded and retried like its own, signed with the store's credentials, and keep them out
/// of what they say.
#[tokio::test]
async fn listing_open_uploads_gives_up_on_a_server_answering_500() {
    const KEY_ID: &str = "fault-key-id";
    const SECRET: &str = "fault-secret-canary";
    const TOKEN: &str = "fault-token-canary";
    let (endpoint, finish) = serve_500(40);
    let opts = StoreOptions {
        endpoint: Some(endpoint),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key: Some(SECRET.into()),
        session_token: Some(TOKEN.into()),
        retry_window: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let store = open("s3://faulty/p", &opts);
    let started = Instant::now();
    let err = store
        .staged_parts("db")
        .await
        .expect_err("a server answering 500");
    let took = started.elapsed();
    let heads = finish();
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && msg.contains("db") && msg.contains("HTTP 500"),
        "{msg}"
    );
    assert!((3..40).contains(&heads.len()), "{} requests", heads.len());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "gave up after {took:?}"
    );
    for h in &heads {
        let lower = h.to_ascii_lowercase();
        assert!(
            h.starts_with("GET /faulty?uploads&prefix=p%2Fdb%2F "),
            "{h}"
        );
        assert!(h.contains(&format!("Credential={KEY_ID}/")), "{h}");
        assert!(
            lower.contains("x-amz-security-token: fault-token-canary"),
            "{h}"
        );
        assert!(!h.contains(SECRET), "{h}");
    }
    assert!(!msg.contains(SECRET) && !msg.contains(TOKEN), "{msg}");
    assert!(!format!("{store:?}").contains(SECRET));
}

/// Credentials without `s3:ListBucketMultipartUploads`: refused at once (not retried over the
/// window), as a refusal `prune` can report and get on with.
#[tokio::test]
async fn refused_upload_listing_is_denied_at_once() {
    let (endpoint, finish) = serve_status(5, "403 Forbidden", "AccessDenied");
    let opts = StoreOptions {
        endpoint: Some(endpoint),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        retry_window: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let store = open("s3://faulty/p", &opts);
    let err = store.staged_parts("db").await.expect_err("refused");
    assert_eq!(finish().len(), 1, "a refusal was retried");
    assert!(matches!(err, StoreError::Denied { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

/// A bounded fake S3 endpoint answering every request with 500 and a multi-line S3 error
/// body, one request per connection. It stops after `max` requests, after 60 s, or when the
/// returned function is called; that function gives back the request heads it saw.
fn serve_500(max: usize) -> (String, impl FnOnce() -> Vec<String>) {
    serve_status(max, "500 Internal Server Error", "InternalError")
}

/// [`serve_500`] answering `status` with the S3 error `code`.
fn serve_status(
    max: usize,
    status: &'static str,
    code: &'static str,
) -> (String, impl FnOnce() -> Vec<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut heads = Vec::new();
        while heads.len() < max && !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => heads.extend(answer(conn, status, code)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        heads
    });
    let finish = move || {
        stop.store(true, Ordering::SeqCst);
        thread.join().expect("fake server thread")
    };
    (endpoint, finish)
}

/// Reads one request, body included (closing on unread data would reset the connection
/// instead of answering), and answers 500. `None` on I/O errors.
fn answer(mut conn: TcpStream, status: &str, code: &str) -> Option<String> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let (mut buf, mut chunk, mut head, mut want) = (Vec::new(), [0u8; 4096], None, usize::MAX);
    while buf.len() < want {
        let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
            let lower = text.to_ascii_lowercase();
            let len = lower
                .split("content-length:")
                .nth(1)
                .and_then(|v| v.lines().next());
            want = end + 4 + len.and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            head = Some(text);
        }
    }
    let body = format!(
        "<?xml version=\"1.0\"?>\n<Error><Code>{code}</Code>\n\
         <Message>We encountered an internal error.\nPlease try again.</Message></Error>"
    );
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).ok()?;
    head
}

fn location(url: &str) -> StoreLocation {
    url.parse().unwrap_or_else(|e| panic!("parsing {url}: {e}"))
}

fn open(url: &str, opts: &StoreOptions) -> Store {
    Store::open(&location(url), opts).unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// Keys of the multipart uploads moto still holds open in `bucket`.
fn pending_uploads(s3: &S3Server, bucket: &str) -> Vec<String> {
    let (status, body) = s3
        .request("GET", &format!("/{bucket}?uploads"), &[])
        .expect("list");
    assert_eq!(status, 200, "listing multipart uploads: {body}");
    body.split("<Upload>")
        .skip(1)
        .filter_map(|u| u.split("<Key>").nth(1)?.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

/// Every regular file below `root`, relative, sorted.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Keys below `prefix`, sorted.
async fn listed(store: &Store, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = ok!(store.list(prefix)).into_iter().map(|o| o.key).collect();
    keys.sort();
    keys
}

fn not_found<T: std::fmt::Debug>(res: Result<T, StoreError>, missing: &str) {
    match res {
        Err(StoreError::NotFound { key }) => assert_eq!(key, missing),
        other => panic!("reading missing {missing}: {other:?}"),
    }
}

/// Byte equality that reports lengths and the first difference instead of dumping MiBs.
fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        let (g, w) = (got.len(), want.len());
        panic!("{what}: got {g} bytes, want {w}; first difference at {at:?}");
    }
}

/// Deterministic incompressible bytes (xorshift64).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 32) as u8
    };
    (0..len).map(|_| next()).collect()
}
