//! Hostile manifests and dump indexes: whatever their bytes, parsing never panics or aborts,
//! every size a reader trusts is bounded, and a crafted one is an integrity failure (exit 3).
//! `fixtures/hostile/` is the seed corpus (crafted inputs that once crashed or misled a
//! reader, or could); the property tests mutate valid documents and throw arbitrary bytes.

use pgdrill_core::frames::DumpIndex;
use pgdrill_core::manifest::{Manifest, MAX_OBJECT_SIZE};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::PathBuf;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("seed corpus")
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read seed"))
        })
        .collect();
    out.sort();
    out
}

/// A valid manifest document (the shape `Manifest::to_json` writes).
fn manifest_doc() -> Value {
    json!({
        "format_version": 1, "tool": {"name": "pgdrill", "version": "0"},
        "backup_id": "20261103T020000Z-bbbb", "database": "app",
        "source": {"url": "u", "host": "h", "port": 5432, "dbname": "app", "user": "u"},
        "server": {"version": "15.18", "version_num": 150018, "version_string": "", "system_identifier": null, "database_size_bytes": null, "in_recovery": false},
        "pg_dump": {"path": "p", "version": "15.18", "args": []},
        "snapshot": {"exported": true, "id": null, "time": "2026-11-03T02:00:03Z", "note": null},
        "started_at": "s", "finished_at": "f", "stage_seconds": {}, "raw_bytes": 10, "stored_bytes": 10,
        "compression": {"algorithm": "zstd", "level": 3},
        "encryption": {"scheme": "none", "recipient_fingerprints": [], "passphrase": false},
        "objects": [
            {"name": "dump.pgc.zst", "kind": "dump", "size": 10, "sha256": "", "raw_size": 10, "raw_sha256": ""},
            {"name": "dump.index.json.zst", "kind": "index", "size": 5, "sha256": "", "raw_size": 5, "raw_sha256": ""}
        ],
        "content": {"archive_version": "1.16", "tables": [{"schema": "s", "name": "t", "rows": 3}], "schemas": [], "extensions": [], "schema_fingerprint": "", "large_objects": 0, "toc_entries": 0},
        "policy": {}, "host": "h"
    })
}

fn index_doc() -> Value {
    json!({"version": 1, "raw_size": 100, "compressed_size": 60, "frames": [[0, 0], [50, 30]],
           "toc_end": 10, "blocks": [{"id": 3, "start": 10, "end": 100, "splits": [40]}]})
}

/// What a manifest that parses must guarantee to its readers.
fn assert_bounded(m: &Manifest) {
    assert!(m.raw_bytes <= MAX_OBJECT_SIZE && m.stored_bytes <= MAX_OBJECT_SIZE);
    for o in &m.objects {
        assert!(
            o.size <= MAX_OBJECT_SIZE && o.raw_size <= MAX_OBJECT_SIZE,
            "{o:?}"
        );
        assert!(pgdrill_core::manifest::is_plain_name(&o.name), "{o:?}");
    }
}

/// What an index that passes its check must guarantee: offsets within its sizes.
fn assert_index_bounded(ix: &DumpIndex) {
    assert!(ix.raw_size <= MAX_OBJECT_SIZE && ix.compressed_size <= MAX_OBJECT_SIZE);
    for f in &ix.frames {
        assert!(f[0] <= ix.raw_size && f[1] <= ix.compressed_size);
    }
    for b in &ix.blocks {
        assert!(b.start < b.end && b.end <= ix.raw_size);
        let _ = (ix.frame_for(b.start), ix.frame_end(b.end));
    }
}

/// Peak resident memory of this test process, in MiB (Linux).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[test]
fn hostile_seed_corpus_is_an_integrity_error_every_time() {
    let seeds = corpus();
    assert!(seeds.len() >= 20, "the seed corpus is missing files");
    for (name, bytes) in seeds {
        let err = if name.starts_with("manifest-") {
            Manifest::from_json(&bytes, "app/backups/x/manifest.json").map(|_| ())
        } else if name.starts_with("index-") {
            DumpIndex::from_json(&bytes).map(|_| ())
        } else {
            panic!("{name}: seeds are named manifest-* or index-*")
        }
        .expect_err(&name);
        assert_eq!(err.exit_code(), 3, "{name}: {err}");
    }
    // The valid documents they were made from parse.
    let m = Manifest::from_json(&serde_json::to_vec(&manifest_doc()).expect("json"), "k")
        .expect("valid manifest");
    assert_bounded(&m);
    DumpIndex::from_json(&serde_json::to_vec(&index_doc()).expect("json")).expect("valid index");
}

#[test]
fn huge_object_size_in_manifest_is_integrity_error() {
    let mut doc = manifest_doc();
    doc["objects"][0]["size"] = json!(u64::MAX);
    let e = Manifest::from_json(&serde_json::to_vec(&doc).expect("json"), "k").expect_err("huge");
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("objects[0].size"), "{e}");
    doc["objects"][0]["size"] = json!(10);
    doc["objects"][0]["name"] = json!("../../etc/dump.pgc.zst");
    let e = Manifest::from_json(&serde_json::to_vec(&doc).expect("json"), "k").expect_err("name");
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("objects[0].name"), "{e}");
}

/// The read path checks a (bounded but wrong) size against the stored object before it
/// reads or sizes anything by it.
#[tokio::test]
async fn object_size_other_than_the_stored_one_is_integrity_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = pgdrill_store::Store::open_folder(dir.path()).expect("store");
    let mut doc = manifest_doc();
    doc["objects"][0]["size"] = json!(MAX_OBJECT_SIZE);
    let m = Manifest::from_json(&serde_json::to_vec(&doc).expect("json"), "k").expect("bounded");
    let key = pgdrill_core::layout::backup_object(&m.database, &m.backup_id, "dump.pgc.zst");
    store
        .put(&key, bytes::Bytes::from_static(b"0123456789"))
        .await
        .expect("put");
    let (_handle, cancel) = pgdrill_core::cancel::Cancel::new();
    for parallel in [1, 4] {
        let opts = pgdrill_core::verify::ReadOpts {
            keys: std::sync::Arc::new(
                pgdrill_core::crypto::DecryptionKeys::new(&[], None).expect("keys"),
            ),
            progress: pgdrill_core::progress::Progress::new(),
            cancel: cancel.clone(),
            parallel,
        };
        let e =
            pgdrill_core::verify::decode_object(&store, &m, &m.objects[0], std::io::sink(), &opts)
                .await
                .expect_err("size");
        assert_eq!(e.exit_code(), 3, "{e}");
        assert!(e.to_string().contains("the store holds 10 bytes"), "{e}");
    }
}

/// Replaces the value at a pseudo-random path of `v` (chosen by `pick`) with `with`.
fn mutate(v: &mut Value, pick: u64, with: Value) {
    let next = pick.rotate_right(7) ^ 0x9e37_79b9_7f4a_7c15;
    let i = (pick / 4) as usize;
    match v {
        Value::Object(map) if !map.is_empty() && !pick.is_multiple_of(4) => {
            let k = map.keys().nth(i % map.len()).cloned().unwrap_or_default();
            if let Some(child) = map.get_mut(&k) {
                mutate(child, next, with);
            }
        }
        Value::Array(items) if !items.is_empty() && !pick.is_multiple_of(4) => {
            let n = items.len();
            mutate(&mut items[i % n], next, with);
        }
        _ => *v = with,
    }
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(MAX_OBJECT_SIZE + 1)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(-1)),
        Just(json!(1e300)),
        ".{0,12}".prop_map(|s| json!(s)),
        Just(json!("../x")),
        Just(json!("/abs")),
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
        Just(json!([[0, 0], [u64::MAX, u64::MAX]])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_as_manifest_or_index(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(m) = Manifest::from_json(&bytes, "k") {
            assert_bounded(&m);
        }
        if let Ok(ix) = DumpIndex::from_json(&bytes) {
            assert_index_bounded(&ix);
        }
    }

    #[test]
    fn mutated_manifest_is_bounded_or_an_integrity_error(
        edits in proptest::collection::vec((any::<u64>(), hostile_value()), 1..4),
        cut in any::<u16>(),
        truncate in any::<bool>(),
    ) {
        let mut doc = manifest_doc();
        for (pick, with) in edits {
            mutate(&mut doc, pick, with);
        }
        let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
        if truncate {
            bytes.truncate(cut as usize % (bytes.len() + 1));
        }
        match Manifest::from_json(&bytes, "k") {
            Ok(m) => assert_bounded(&m),
            Err(e) => prop_assert_eq!(e.exit_code(), 3, "{}", e),
        }
    }

    #[test]
    fn mutated_index_is_bounded_or_an_integrity_error(
        edits in proptest::collection::vec((any::<u64>(), hostile_value()), 1..4),
    ) {
        let mut doc = index_doc();
        for (pick, with) in edits {
            mutate(&mut doc, pick, with);
        }
        match DumpIndex::from_json(&serde_json::to_vec(&doc).unwrap_or_default()) {
            Ok(ix) => assert_index_bounded(&ix),
            Err(e) => prop_assert_eq!(e.exit_code(), 3, "{}", e),
        }
    }
}

/// Runs after the others in this binary as often as not; either way a parser that allocated
/// by a number it read (not by the bytes it had) would have shown here or aborted the run.
#[test]
fn parsing_hostile_inputs_stays_within_bounded_memory() {
    for (_, bytes) in corpus() {
        let _ = Manifest::from_json(&bytes, "k");
        let _ = DumpIndex::from_json(&bytes);
    }
    assert!(peak_rss_mib() < 1024, "peak RSS {} MiB", peak_rss_mib());
}
