//! `pgdrill mirror`: uploads buckets copied into the store by content, with snapshots, against
//! folders and a real S3-protocol server (source bucket and store bucket).

mod common;
use common::*;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

type Tree = BTreeMap<String, Vec<u8>>;

fn put(root: &Path, key: &str, data: &[u8]) {
    let p = root.join(key);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

/// Deterministic bytes that differ by `seed`.
fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + seed as u64 * 7 + (i as u64 >> 9)) as u8)
        .collect()
}

/// Regular files below `root` (symlinks skipped), by `/`-separated key.
fn tree(root: &Path) -> Tree {
    fn walk(base: &Path, d: &Path, out: &mut Tree) {
        for e in std::fs::read_dir(d).expect("read_dir").flatten() {
            let ft = e.file_type().expect("file_type");
            let p = e.path();
            if ft.is_dir() {
                walk(base, &p, out);
            } else if ft.is_file() {
                let key = p.strip_prefix(base).expect("rel").display().to_string();
                out.insert(key, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// The store's content-addressed objects with their modification times.
fn objects(store: &Path, name: &str) -> BTreeMap<String, SystemTime> {
    let dir = store.join(name).join("mirror/objects");
    if !dir.exists() {
        return BTreeMap::new();
    }
    files_below(&dir)
        .into_iter()
        .filter(|k| !k.contains('#')) // the local store's staging files
        .map(|k| {
            let t = std::fs::metadata(dir.join(&k))
                .and_then(|m| m.modified())
                .expect("mtime");
            (k, t)
        })
        .collect()
}

fn snapshots(store: &Path, name: &str) -> Vec<String> {
    files_below(&store.join(name).join("mirror/snapshots"))
}

fn mirror(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut all = vec!["--json", "--store", "store", "mirror"];
    all.extend_from_slice(args);
    run(dir, &all, env)
}

/// The one report of a successful `mirror run --json`.
fn report(out: &Out) -> Value {
    out.ok();
    out.json()["mirrors"][0].clone()
}

fn counts(r: &Value) -> (u64, u64, u64) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    (n("copied"), n("skipped_unchanged"), n("skipped_existing"))
}

#[test]
fn folder_mirror_is_incremental_dedups_and_restores_each_snapshot_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, src, store) = (dir.path(), dir.path().join("src"), dir.path().join("store"));
    put(&src, "a.txt", b"alpha v1");
    put(&src, "docs/b.txt", b"bravo");
    put(&src, "dup/one.png", &blob(1, 50_000));
    put(&src, "dup/two.png", &blob(1, 50_000));
    put(&src, "big.bin", &blob(2, 9 << 20)); // above the in-memory limit: spooled
    std::os::unix::fs::symlink(src.join("a.txt"), src.join("link.txt")).expect("symlink");
    let v1 = tree(&src);
    let up = ["run", "--name", "up", "--from", "src"];

    let r1 = report(&mirror(d, &up, &[]));
    assert_eq!(counts(&r1), (4, 0, 1), "duplicates are stored once: {r1}");
    assert_eq!(r1["objects"], 5, "the symlink is skipped");
    let before = objects(&store, "up");
    assert_eq!(before.len(), 4);

    let r2 = report(&mirror(d, &up, &[]));
    assert_eq!(
        counts(&r2),
        (0, 5, 0),
        "nothing changed, nothing read: {r2}"
    );
    assert_eq!(objects(&store, "up"), before, "no object was written again");

    put(&src, "a.txt", b"alpha version 2");
    std::fs::remove_file(src.join("docs/b.txt")).expect("rm");
    put(&src, "new/c.txt", b"charlie");
    let v3 = tree(&src);
    let r3 = report(&mirror(d, &up, &[]));
    assert_eq!(
        counts(&r3),
        (2, 3, 0),
        "only the changed and the new file: {r3}"
    );
    let after = objects(&store, "up");
    assert_eq!(
        after.len(),
        6,
        "the deleted file's object stays in the store"
    );
    assert!(before.iter().all(|(k, t)| after.get(k) == Some(t)));
    assert_eq!(snapshots(&store, "up").len(), 3);

    // --at picks the newest snapshot at or before a time: exactly that snapshot's files.
    let t1 = r1["time"].as_str().expect("time");
    let out = mirror(
        d,
        &["restore", "--name", "up", "--at", t1, "--to", "out1"],
        &[],
    );
    out.ok();
    assert_eq!(out.json()["restore"]["snapshot_id"], r1["snapshot_id"]);
    assert_eq!(
        tree(&d.join("out1")),
        v1,
        "deleted-at-source files come back, later ones do not"
    );
    let t3 = r3["time"].as_str().expect("time");
    mirror(
        d,
        &["restore", "--name", "up", "--at", t3, "--to", "out3"],
        &[],
    )
    .ok();
    assert_eq!(tree(&d.join("out3")), v3);
    mirror(
        d,
        &[
            "restore",
            "--name",
            "up",
            "--at",
            "2001-01-01T00:00:00Z",
            "--to",
            "x",
        ],
        &[],
    )
    .code(2);

    // Without --delete nothing is removed at the destination; with it, extra files go.
    let r1_id = r1["snapshot_id"].as_str().expect("id");
    mirror(d, &["restore", "--name", "up", r1_id, "--to", "out3"], &[]).ok();
    assert!(d.join("out3/new/c.txt").exists());
    let out = mirror(
        d,
        &["restore", "--name", "up", r1_id, "--to", "out3", "--delete"],
        &[],
    );
    out.ok();
    assert_eq!(
        out.json()["restore"]["deleted"],
        serde_json::json!(["new/c.txt"])
    );
    assert_eq!(tree(&d.join("out3")), v1);

    // Parity: equal, then one byte different and one extra file.
    mirror(d, &["parity", "--name", "up", r1_id, "--with", "out1"], &[]).ok();
    put(&d.join("out1"), "a.txt", b"alpha v9");
    put(&d.join("out1"), "stray.txt", b"x");
    let out = mirror(d, &["parity", "--name", "up", r1_id, "--with", "out1"], &[]);
    out.code(1);
    let p = &out.json()["parity"];
    assert_eq!(p["different"][0]["key"], "a.txt");
    assert_eq!(p["extra"], serde_json::json!(["stray.txt"]));
}

#[test]
fn verify_names_the_key_of_a_flipped_byte_and_restore_does_not_write_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, src, store) = (dir.path(), dir.path().join("src"), dir.path().join("store"));
    put(&src, "photos/cat.jpg", &blob(3, 20_000));
    put(&src, "readme.txt", b"hello");
    report(&mirror(d, &["run", "--name", "up", "--from", "src"], &[]));
    mirror(d, &["verify", "--name", "up"], &[]).ok();

    let sha = sha256_hex(&blob(3, 20_000));
    let object = store.join(format!("up/mirror/objects/{}/{sha}", &sha[..2]));
    let mut bytes = std::fs::read(&object).expect("read object");
    bytes[100] ^= 0x01;
    std::fs::write(&object, bytes).expect("corrupt");

    let out = mirror(d, &["verify", "--name", "up", "latest"], &[]);
    out.code(3);
    let problems = &out.json()["verify"]["problems"];
    assert_eq!(problems.as_array().expect("problems").len(), 1);
    assert_eq!(problems[0]["kind"], "corrupt");
    assert_eq!(problems[0]["keys"], serde_json::json!(["photos/cat.jpg"]));
    assert!(out.stderr.contains("photos/cat.jpg"), "{}", out.stderr);

    let out = mirror(
        d,
        &["restore", "--name", "up", "latest", "--to", "out"],
        &[],
    );
    out.code(3);
    assert!(out.stderr.contains("photos/cat.jpg"), "{}", out.stderr);
    assert_eq!(
        tree(&d.join("out")).keys().collect::<Vec<_>>(),
        vec!["readme.txt"],
        "the corrupt object is not written, the rest is; no temp file is left"
    );
}

#[test]
fn empty_or_shrunken_source_records_no_snapshot_and_overlaps_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, src, store) = (dir.path(), dir.path().join("src"), dir.path().join("store"));
    std::fs::create_dir_all(&src).expect("mkdir");
    let up = ["run", "--name", "up", "--from", "src"];
    let out = mirror(d, &up, &[]);
    out.code(1);
    assert!(out.stderr.contains("lists no objects"), "{}", out.stderr);
    assert!(snapshots(&store, "up").is_empty());

    for i in 0..4 {
        put(&src, &format!("f{i}"), format!("file {i}").as_bytes());
    }
    report(&mirror(d, &up, &[]));
    for i in 0..3 {
        std::fs::remove_file(src.join(format!("f{i}"))).expect("rm");
    }
    let out = mirror(d, &up, &[]);
    out.code(1);
    let drop = &out.json()["mirrors"][0]["source_drop"];
    assert_eq!(drop["previous_objects"], 4);
    assert_eq!(drop["current_objects"], 1);
    assert!(out.stderr.contains("max_drop_percent"), "{}", out.stderr);
    assert_eq!(
        snapshots(&store, "up").len(),
        1,
        "no snapshot on a 75% drop"
    );
    assert_eq!(objects(&store, "up").len(), 4, "nothing deleted");
    let r = report(&mirror(
        d,
        &["run", "--name", "up", "--from", "src", "--allow-drop"],
        &[],
    ));
    assert_eq!(r["objects"], 1);

    // The store inside the source, or the source inside the store: refused (exit 5).
    put(&store, "up/extra/file", b"x");
    mirror(d, &["run", "--name", "in", "--from", "store/up"], &[]).code(5);
    let out = run(
        d,
        &[
            "--store",
            "src/inner-store",
            "mirror",
            "run",
            "--name",
            "x",
            "--from",
            "src",
        ],
        &[],
    );
    out.code(5);
    assert!(!src.join("inner-store/x").exists(), "nothing was written");
    // Restores: into the store always refused, into the source only with --force.
    mirror(
        d,
        &[
            "restore",
            "--name",
            "up",
            "latest",
            "--to",
            "store/restored",
        ],
        &[],
    )
    .code(5);
    let out = mirror(
        d,
        &["restore", "--name", "up", "latest", "--to", "src/sub"],
        &[],
    );
    out.code(5);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    mirror(
        d,
        &[
            "restore", "--name", "up", "latest", "--to", "src", "--force",
        ],
        &[],
    )
    .ok();
}

#[test]
fn prune_removes_old_snapshots_and_unreferenced_objects_never_the_newest() {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, src, store) = (dir.path(), dir.path().join("src"), dir.path().join("store"));
    let up = ["run", "--name", "up", "--from", "src"];
    put(&src, "a", b"a1");
    put(&src, "b", b"b1");
    put(&src, "keep", b"always");
    report(&mirror(d, &up, &[]));
    put(&src, "a", b"a2-longer");
    report(&mirror(d, &up, &[]));
    std::fs::remove_file(src.join("b")).expect("rm");
    let newest = report(&mirror(d, &up, &[]));
    assert_eq!(objects(&store, "up").len(), 4);

    let out = mirror(
        d,
        &["prune", "--name", "up", "--keep-last", "1", "--dry-run"],
        &[],
    );
    out.ok();
    let plan = &out.json()["prune"][0];
    assert_eq!(plan["delete_snapshots"].as_array().expect("snaps").len(), 2);
    assert_eq!(
        plan["delete_objects"].as_array().expect("objs").len(),
        2,
        "a1 and b1"
    );
    assert_eq!(
        snapshots(&store, "up").len(),
        3,
        "a dry run deletes nothing"
    );
    assert_eq!(objects(&store, "up").len(), 4);

    mirror(d, &["prune", "--name", "up", "--keep-last", "1"], &[]).ok();
    let id = newest["snapshot_id"].as_str().expect("id");
    assert_eq!(snapshots(&store, "up"), vec![format!("{id}.json")]);
    assert_eq!(objects(&store, "up").len(), 2);
    mirror(d, &["verify", "--name", "up"], &[]).ok();
    mirror(
        d,
        &["restore", "--name", "up", "latest", "--to", "out"],
        &[],
    )
    .ok();
    assert_eq!(tree(&d.join("out")), tree(&src));
    let out = mirror(d, &["prune", "--name", "up", "--keep-last", "0"], &[]);
    out.ok();
    assert_eq!(
        out.json()["prune"][0]["keep"][0]["reasons"],
        serde_json::json!(["newest"])
    );
    assert_eq!(snapshots(&store, "up").len(), 1);
}

/// Lines of the moto log that wrote object bytes under `path`.
fn puts(s3: &tk::S3Server, path: &str) -> usize {
    s3.log()
        .lines()
        .filter(|l| l.contains(&format!("\"PUT {path}")))
        .count()
}

#[test]
fn s3_bucket_mirror_uploads_only_what_changed() {
    let s3 = tk::S3Server::start();
    for b in ["src", "store", "restored"] {
        s3.create_bucket(b);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("pgdrill.toml"),
        "[store]\nurl = \"s3://store/pg\"\n[[mirror]]\nname = \"uploads\"\nfrom = \"s3://src/up\"\n",
    )
    .expect("config");
    let env_owned = s3.env();
    let env = env_refs(&env_owned);
    let put_src = |key: &str, body: &[u8]| {
        let (code, text) = s3
            .request("PUT", &format!("/src/up/{key}"), body)
            .expect("put");
        assert_eq!(code, 200, "{text}");
    };
    for i in 0..12 {
        put_src(
            &format!("img/{i}.txt"),
            format!("image number {i}").as_bytes(),
        );
    }
    put_src("copy/of-0.txt", b"image number 0");
    put_src("big/video.bin", &blob(9, 9 << 20)); // multipart into the store
    let (code, _) = s3.request("PUT", "/src/upx/odd", b"x").expect("put");
    assert_eq!(code, 200, "a key beside the prefix, never listed");
    let run_json = |args: &[&str]| {
        let mut all = vec!["--json", "mirror"];
        all.extend_from_slice(args);
        run(d, &all, &env)
    };
    let objects_path = "/store/pg/uploads/mirror/objects/";

    let r1 = report(&run_json(&["run"]));
    let (copied, unchanged, existing) = counts(&r1);
    assert_eq!(r1["objects"], 14);
    assert_eq!((copied + existing, unchanged), (14, 0));
    let stored: Vec<String> = s3
        .list_keys("store")
        .into_iter()
        .filter(|k| k.starts_with("pg/uploads/mirror/objects/"))
        .collect();
    assert_eq!(stored.len(), 13, "the copy is stored once");
    let puts_after_first = puts(&s3, objects_path);
    assert!(puts_after_first >= 13);

    let r2 = report(&run_json(&["run"]));
    assert_eq!(counts(&r2), (0, 14, 0));
    assert_eq!(
        puts(&s3, objects_path),
        puts_after_first,
        "nothing re-uploaded"
    );

    let (code, _) = s3
        .request("DELETE", "/src/up/img/3.txt", &[])
        .expect("delete");
    assert_eq!(code, 204);
    put_src("img/4.txt", b"image number 4, edited");
    let r3 = report(&run_json(&["run"]));
    assert_eq!(counts(&r3), (1, 12, 0), "{r3}");
    assert_eq!(puts(&s3, objects_path), puts_after_first + 1);

    // The first snapshot, deleted object included, into another bucket and a folder.
    let id1 = r1["snapshot_id"].as_str().expect("id");
    run_json(&["restore", id1, "--to", "s3://restored/r1"]).ok();
    let mut keys = s3.list_keys("restored");
    keys.sort();
    assert_eq!(keys.len(), 14);
    assert!(keys.contains(&"r1/img/3.txt".to_string()));
    run_json(&["parity", id1, "--with", "s3://restored/r1"]).ok();
    run_json(&["parity", "latest", "--with", "s3://restored/r1"]).code(1);
    run_json(&["restore", id1, "--to", "folder"]).ok();
    let t = tree(&d.join("folder"));
    assert_eq!(t["big/video.bin"], blob(9, 9 << 20));
    assert_eq!(t["img/4.txt"], b"image number 4");

    // Guards: the source bucket needs --force; the store bucket is never a source or target.
    run_json(&["restore", "latest", "--to", "s3://src/up/sub"]).code(5);
    run_json(&["restore", "latest", "--to", "s3://store/pg/x"]).code(5);
    run_json(&["run", "--name", "loop", "--from", "s3://store/pg/uploads"]).code(5);
    run_json(&["verify"]).ok();
}

#[test]
fn interrupted_s3_run_resumes_copying_only_the_rest() {
    const N: usize = 240;
    let fill = |s3: &tk::S3Server| {
        s3.create_bucket("src");
        for i in 0..N {
            let (code, text) = s3
                .request(
                    "PUT",
                    &format!("/src/p/f{i:03}"),
                    &blob(i as u8, 40_000 + i),
                )
                .expect("put");
            assert_eq!(code, 200, "{text}");
        }
    };
    let config = |d: &Path, s3: &tk::S3Server| {
        std::fs::write(
            d.join("pgdrill.toml"),
            format!(
                "[store]\nurl = \"store\"\n[[mirror]]\nname = \"up\"\nfrom = \"s3://src/p\"\nendpoint = \"{}\"\nconcurrency = 2\n",
                s3.endpoint()
            ),
        )
        .expect("config");
    };
    let dir = tempfile::tempdir().expect("tmp");
    let (d, store) = (dir.path(), dir.path().join("store"));
    let creds = [
        ("AWS_ACCESS_KEY_ID", "k"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut first = tk::S3Server::start();
    fill(&first);
    config(d, &first);

    let mut c = cmd(d);
    c.args(["--json", "mirror", "run"]).envs(creds);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while objects(&store, "up").len() < 30 {
        assert!(
            Instant::now() < deadline,
            "the run copied nothing within 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill_now();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        snapshots(&store, "up").is_empty(),
        "a failed run records no snapshot"
    );
    let done = objects(&store, "up");
    eprintln!(
        "interrupted after {} of {N} objects: {}",
        done.len(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(
        done.len() < N,
        "the run was interrupted ({} of {N} stored)",
        done.len()
    );

    // The same objects on a fresh server: the rerun uploads only what is missing.
    let second = tk::S3Server::start();
    fill(&second);
    config(d, &second);
    let r = report(&run(d, &["--json", "mirror", "run"], &creds));
    assert_eq!(
        counts(&r),
        ((N - done.len()) as u64, 0, done.len() as u64),
        "{r}"
    );
    let all = objects(&store, "up");
    assert_eq!(all.len(), N);
    assert!(
        done.iter().all(|(k, t)| all.get(k) == Some(t)),
        "done objects untouched"
    );
    assert_eq!(snapshots(&store, "up").len(), 1);
}

#[test]
fn a_live_lease_locks_out_run_and_prune_of_that_mirror() {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, src, store) = (dir.path(), dir.path().join("src"), dir.path().join("store"));
    put(&src, "a", b"a");
    report(&mirror(d, &["run", "--name", "up", "--from", "src"], &[]));
    assert!(!store.join("up/mirror/lease.json").exists(), "released");
    put(
        &store,
        "up/mirror/lease.json",
        br#"{"owner":"h:1:2","host":"otherhost","pid":1,"job":"mirror",
            "acquired_at":"2020-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}"#,
    );
    let out = mirror(d, &["run", "--name", "up", "--from", "src"], &[]);
    out.code(6);
    assert!(out.stderr.contains("otherhost"), "{}", out.stderr);
    mirror(d, &["prune", "--name", "up"], &[]).code(6);
    mirror(d, &["prune", "--name", "up", "--dry-run"], &[]).ok();
    assert_eq!(snapshots(&store, "up").len(), 1);
}
