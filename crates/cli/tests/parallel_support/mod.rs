//! Helpers of `backup_parallel.rs`: the source, disk-use sampling, the stored objects'
//! checks, and the steps of the round-trip test that each check one path through a
//! parallel backup (interrupted backup, standard tools, damaged objects).
#![allow(dead_code)]

use crate::common::*;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};

/// The fixture plus a table much larger than the spool window used below.
pub async fn parallel_source() -> Source {
    let src = source(None).await;
    let c = tk::connect(&src.url).await;
    c.batch_execute(
        "create table big (id bigint primary key, pad text);
         insert into big select g, repeat(md5(g::text), 6) from generate_series(1, 300000) g;
         create table small_one (v int); insert into small_one values (1), (2), (3);
         create sequence counter; select setval('counter', 4242);",
    )
    .await
    .expect("big table");
    src
}

pub fn manifest_of(store: &Path, id: &str) -> Value {
    let text =
        std::fs::read(store.join(format!("app/backups/{id}/manifest.json"))).expect("manifest");
    serde_json::from_slice(&text).expect("json")
}

/// Runs `f` while sampling the allocated bytes below `dir` every `every_ms`; returns its
/// result and the peak.
pub fn peak_allocated_while<T>(dir: &Path, every_ms: u64, f: impl FnOnce() -> T) -> (T, u64) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, dir) = (stop.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(allocated_below(&dir));
                std::thread::sleep(std::time::Duration::from_millis(every_ms));
            }
            peak
        })
    };
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (out, sampler.join().expect("sampler"))
}

/// Allocated bytes of every file below `dir` (holes excluded).
pub fn allocated_below(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += allocated_below(&p);
            } else if let Ok(m) = std::fs::symlink_metadata(&p) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

pub fn pg_restore_dir(url: &str, dir: &Path, jobs: u32) {
    let (args, pw) = tk::conn_args(url);
    let st = Command::new(tk::pg_bin("pg_restore", 0))
        .args(&args)
        .args(["--no-owner", "--no-privileges", "--exit-on-error", "-Fd"])
        .arg(format!("--jobs={jobs}"))
        .arg(dir)
        .env("PGPASSWORD", pw.unwrap_or_default())
        .status()
        .expect("pg_restore");
    assert!(st.success(), "pg_restore -Fd of {} failed", dir.display());
}

/// Sends SIGINT to `child` and waits for it: it must exit 1 saying it was interrupted.
pub fn interrupt(child: Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

/// `list` shows exactly `n` backups.
pub fn assert_listed(dir: &Path, env: &[(&str, &str)], n: usize) {
    let list = run(dir, &["--json", "list"], env);
    list.ok();
    assert_eq!(
        list.json()["backups"].as_array().map(Vec::len),
        Some(n),
        "{}",
        list.stdout
    );
}

/// Command lines of the processes that mention `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// Every object of backup `id` listed with digests matching the stored bytes, nothing else
/// stored, and SHA256SUMS agrees.
pub fn assert_objects_are_the_stored_bytes(store: &Path, id: &str, m: &Value) {
    let objects = m["objects"].as_array().expect("objects");
    let mut names: Vec<String> = objects
        .iter()
        .map(|o| o["name"].as_str().expect("name").to_string())
        .collect();
    for o in objects {
        let bytes = std::fs::read(store.join(format!(
            "app/backups/{id}/{}",
            o["name"].as_str().expect("name")
        )))
        .expect("object");
        assert_eq!(o["size"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(o["sha256"].as_str().expect("sha"), sha256_hex(&bytes));
    }
    assert!(objects
        .iter()
        .any(|o| o["file"] == "toc.dat" && o["kind"] == "dump"));
    assert!(
        objects.iter().filter(|o| o["kind"] == "blobs").count() > 0,
        "large objects stored"
    );
    names.extend(["SHA256SUMS".to_string(), "manifest.json".to_string()]);
    names.sort();
    let mut files: Vec<String> = files_below(&store.join(format!("app/backups/{id}")));
    files.sort();
    assert_eq!(files, names, "nothing but the listed objects");
    let sums =
        std::fs::read_to_string(store.join(format!("app/backups/{id}/SHA256SUMS"))).expect("sums");
    assert_eq!(sums.lines().count(), objects.len());
}

/// Row counts in the manifest's content as the source's, per table.
pub async fn assert_rows_are_the_sources(url: &str, m: &Value) {
    assert!(m["content"]["note"].is_null(), "{}", m["content"]["note"]);
    assert!(m["content"]["tables"].as_array().expect("tables").len() >= 3);
    let c = tk::connect(url).await;
    for t in m["content"]["tables"].as_array().expect("tables") {
        let (s, n) = (
            t["schema"].as_str().expect("s"),
            t["name"].as_str().expect("n"),
        );
        let want: i64 = c
            .query_one(
                &format!(
                    "select count(*) from \"{s}\".\"{}\"",
                    n.replace('"', "\"\"")
                ),
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(t["rows"].as_i64(), Some(want), "rows of {s}.{n}");
    }
    assert!(m["content"]["large_objects"].as_u64().unwrap_or(0) > 0);
}

/// The data stage of a restore report counted every table, its rows and the tables' bytes.
pub fn assert_data_stage_counts(r: &Value, m: &Value, stdout: &str) {
    let data = r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("restore: data"))
        })
        .unwrap_or_else(|| panic!("no data stage: {stdout}"))
        .clone();
    let tables = m["content"]["tables"].as_array().expect("tables");
    let rows: u64 = tables.iter().filter_map(|t| t["rows"].as_u64()).sum();
    assert_eq!(data["items"].as_u64(), Some(tables.len() as u64), "{data}");
    assert_eq!(data["rows"].as_u64(), Some(rows), "{data}");
    assert!(data["bytes"].as_u64().unwrap_or(0) > 40 << 20, "{data}");
    assert!(r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .any(|s| s["name"] == "restore: indexes and constraints"));
}

/// A backup interrupted mid-way (SIGINT once pg_dump is writing): exit 1, every upload
/// aborted, nothing listable but backup `kept`, the spool removed, no pg_dump left running.
pub fn interrupted_backup_leaves_nothing(
    dir: &Path,
    src_url: &str,
    store: &Path,
    spool: &Path,
    kept: &str,
) {
    let mut child = cmd(dir)
        .args(["backup", "--jobs", "2"])
        .env("SRC", src_url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while allocated_below(spool) < (1 << 20) {
        assert!(
            started.elapsed().as_secs() < 60,
            "pg_dump never wrote to the spool"
        );
        assert!(child.try_wait().expect("wait").is_none(), "ended too soon");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    interrupt(child);
    assert_listed(dir, &[], 1);
    // (A folder store may keep the emptied folder: it holds no object and is not listed.)
    for other in backup_ids(store, "app").iter().filter(|b| **b != kept) {
        let left = files_below(&store.join(format!("app/backups/{other}")));
        assert!(left.is_empty(), "objects left behind: {left:?}");
    }
    assert!(
        std::fs::read_dir(spool).expect("spool").next().is_none(),
        "the spool directory is removed"
    );
    let left = processes_mentioning(&spool.display().to_string());
    assert!(left.is_empty(), "pg_dump left running: {left:?}");
}

/// The README's standard-tools path: `age -d | zstd -d` each object of backup `id` into
/// the directory `out`, ready for `pg_restore -Fd`.
pub fn decode_with_standard_tools(key: &Path, store: &Path, id: &str, m: &Value, out: &Path) {
    let objects = m["objects"].as_array().expect("objects");
    assert!(objects.iter().any(|o| o["kind"] == "globals"));
    for o in objects.iter().filter(|o| o["kind"] != "globals") {
        let name = o["name"].as_str().expect("name");
        let file = o["file"].as_str().expect("file");
        assert!(name.ends_with(".zst.age"), "{name}");
        let script = format!(
            "set -o pipefail; age -d -i '{}' '{}' | zstd -q -d -o '{}'",
            key.display(),
            store.join(format!("app/backups/{id}/{name}")).display(),
            out.join(file).display()
        );
        let st = Command::new("bash")
            .args(["-c", &script])
            .status()
            .expect("bash");
        assert!(st.success(), "age -d | zstd -d {name}");
    }
}

/// Flips the byte in the middle of `object` of backup `id`; returns the original bytes.
pub fn flip_a_byte(store: &Path, id: &str, object: &Value) -> (std::path::PathBuf, Vec<u8>) {
    let path = store.join(format!(
        "app/backups/{id}/{}",
        object["name"].as_str().expect("name")
    ));
    let original = std::fs::read(&path).expect("object");
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).expect("flip a byte");
    (path, original)
}

/// `restore latest --target <target> --jobs 2` with a JSON report.
pub fn restore_latest(dir: &Path, target: &str) -> Out {
    run(
        dir,
        &[
            "--json", "restore", "latest", "--target", target, "--jobs", "2",
        ],
        &[],
    )
}
