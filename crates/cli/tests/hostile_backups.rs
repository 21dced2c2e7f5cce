//! Damaged and crafted manifests in the store, as every command meets them: a damaged newest
//! manifest is reported (never silently skipped), a crafted one is an integrity failure
//! (exit 3) before anything is read by its numbers or names, and nothing is touched.

mod common;
mod restore_util;
use common::*;
use restore_util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn manifest_path(store: &Path, id: &str) -> std::path::PathBuf {
    store.join(format!("app/backups/{id}/manifest.json"))
}

fn edit_manifest(store: &Path, id: &str, f: impl FnOnce(&mut Value)) {
    let p = manifest_path(store, id);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
}

/// Runs `pgdrill --json <args> --store <store>` in `dir`.
fn cmd_json(dir: &Path, store: &Path, args: &[&str]) -> Out {
    let store_s = store.display().to_string();
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    all.extend(["--store", &store_s]);
    let tmp = std::env::temp_dir().display().to_string();
    run(dir, &all, &[("TMPDIR", &tmp)])
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_all_reports_truncated_newest_manifest() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let older = backup(dir.path(), &store, &src.url, &[]);
    // Ids order by the second: start the next backup in a later one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let newest = backup(dir.path(), &store, &src.url, &[]);
    assert!(newest > older);
    for damage in ["truncated", "empty", "invalid"] {
        let p = manifest_path(&store, &newest);
        let good = std::fs::read(&p).expect("manifest");
        let bad = match damage {
            "truncated" => good[..good.len() / 2].to_vec(),
            "empty" => Vec::new(),
            _ => b"{\"format_version\": 1, \"backup_id\": 7}".to_vec(),
        };
        std::fs::write(&p, &bad).expect("damage");

        // verify --all: the damaged one is reported and fails the run; the others verified.
        let out = cmd_json(dir.path(), &store, &["verify", "--all"]);
        out.code(3);
        assert!(out.stderr.contains(&newest), "{damage}: {}", out.stderr);
        let j = out.json();
        let rows = j["verified"].as_array().expect("verified");
        assert!(rows
            .iter()
            .any(|r| r["backup_id"] == newest.as_str() && r["ok"] == false));
        assert!(rows
            .iter()
            .any(|r| r["backup_id"] == older.as_str() && r["ok"] == true));

        // status: a violation naming it, not just the older backup's age.
        let out = cmd_json(dir.path(), &store, &["status"]);
        out.code(1);
        let slos = out.json()["databases"][0]["slos"].clone();
        let slo = slos
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "manifest_integrity"))
            .unwrap_or_else(|| panic!("{damage}: no manifest_integrity SLO in {slos}"));
        assert_eq!(slo["ok"], false);
        assert!(slo["detail"].as_str().unwrap_or("").contains(&newest));

        // restore latest: the older backup, with a warning naming the damaged one (stderr in
        // text mode, `warnings` in the JSON document).
        let target = src.cluster.url(&format!("r_{damage}"));
        let out = restore(dir.path(), &store, &target, &[]);
        out.ok();
        let j = out.json();
        assert_eq!(j["backup_id"], older.as_str());
        let w = j["warnings"].as_array().expect("warnings");
        assert!(
            w.len() == 1 && w[0].as_str().unwrap_or("").contains(&newest),
            "{j}"
        );
        assert!(out.stderr.contains("warning:") && out.stderr.contains(&newest));
        let store_s = store.display().to_string();
        let out = run(
            dir.path(),
            &[
                "restore",
                "latest",
                "--store",
                &store_s,
                "--target",
                &src.cluster.url(&format!("t_{damage}")),
            ],
            &[],
        );
        out.ok();
        assert!(
            out.stderr.contains(&format!("warning: backup {newest}")),
            "{}",
            out.stderr
        );
        std::fs::write(&p, &good).expect("repair");
    }

    // drill latest: the warning is in its evidence too.
    std::fs::write(manifest_path(&store, &newest), b"").expect("damage");
    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    let store_s = store.display().to_string();
    let reports = dir.path().join("reports");
    let reports_s = reports.display().to_string();
    let out = run(
        dir.path(),
        &[
            "--json",
            "drill",
            "--store",
            &store_s,
            "--report-dir",
            &reports_s,
        ],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    let j = out.json();
    assert_eq!(j["backup"]["id"], older.as_str());
    assert!(
        j["warnings"][0].as_str().unwrap_or("").contains(&newest),
        "{j}"
    );
    assert!(out.stderr.contains(&newest), "{}", out.stderr);
    let evidence = std::fs::read_to_string(reports.join("result.json")).expect("result.json");
    assert!(evidence.contains(&newest));

    // Only a damaged backup: an integrity failure, not "there is no backup".
    let lone = dir.path().join("lone");
    let id = backup(dir.path(), &lone, &src.url, &[]);
    std::fs::write(manifest_path(&lone, &id), b"{").expect("damage");
    let out = restore(dir.path(), &lone, &src.cluster.url("lone"), &[]);
    out.code(3);
    assert!(out.stderr.contains(&id), "{}", out.stderr);
    assert!(!db_exists(&src.cluster, "lone").await);
}

/// A crafted manifest (a huge object size, an object name outside the backup's folder): every
/// command exits 3 naming the field, and no target database is created.
#[tokio::test(flavor = "multi_thread")]
async fn crafted_manifest_exits_3_naming_the_field_in_every_command() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good");
    let id = backup(dir.path(), &good, &src.url, &[]);
    let crafted: [(&str, &str, Value); 3] = [
        ("huge", "objects[0].size", serde_json::json!(u64::MAX)),
        (
            "dotdot",
            "objects[0].name",
            serde_json::json!("../../other/dump.pgc.zst"),
        ),
        ("abs", "objects[0].name", serde_json::json!("/etc/passwd")),
    ];
    for (name, field, value) in crafted {
        let store = dir.path().join(name);
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&good)
            .arg(&store)
            .status()
            .expect("cp");
        assert!(st.success());
        let key = field.rsplit('.').next().unwrap_or_default().to_string();
        edit_manifest(&store, &id, |m| m["objects"][0][&key] = value);
        let db = format!("c_{name}");
        let target = src.cluster.url(&db);
        let export = dir.path().join(format!("{name}.pgc"));
        let export_s = export.display().to_string();
        let runs: Vec<Vec<&str>> = vec![
            vec!["restore", &id, "--target", &target, "--jobs", "1"],
            vec!["restore", &id, "--target", &target, "--jobs", "2"],
            vec!["restore", "latest", "--target", &target, "--jobs", "2"],
            vec!["verify", &id],
            vec!["verify", "--all"],
            vec!["export", &id, "-o", &export_s],
            vec!["drill", &id, "--target", &target],
        ];
        for args in runs {
            let out = cmd_json(dir.path(), &store, &args);
            out.code(3);
            assert!(
                out.stderr.contains(field) && out.stderr.contains("invalid manifest"),
                "{name} {args:?}: {}",
                out.stderr
            );
        }
        assert!(!db_exists(&src.cluster, &db).await);
        assert!(!export.exists());
    }
}

/// A copy of the folder store `good` at `dir/name` without the backup's object `object`.
fn store_without(dir: &Path, good: &Path, name: &str, id: &str, object: &str) -> PathBuf {
    let store = dir.join(name);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(good)
        .arg(&store)
        .status()
        .expect("cp");
    assert!(st.success());
    std::fs::remove_file(store.join(format!("app/backups/{id}/{object}"))).expect("delete");
    store
}

/// Runs a drill of `id` (`--jobs jobs`) on a throwaway cluster with its evidence in `dir/<name>-reports`.
fn drill(dir: &Path, store: &Path, id: &str, name: &str, jobs: &str) -> (Out, PathBuf) {
    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    let store_s = store.display().to_string();
    let reports = dir.join(format!("{name}-reports"));
    let reports_s = reports.display().to_string();
    let out = run(
        dir,
        &[
            "--json",
            "drill",
            id,
            "--store",
            &store_s,
            "--report-dir",
            &reports_s,
            "--jobs",
            jobs,
        ],
        &[("TMPDIR", &tmp_s)],
    );
    (out, reports)
}

/// A stored object deleted while its manifest is still there: verify, export, restore (every
/// mode) and drill exit 3 naming the object, the drill with its evidence written, and no
/// target database is left.
#[tokio::test(flavor = "multi_thread")]
async fn missing_dump_object_exits_3_naming_it() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good");
    let id = backup(dir.path(), &good, &src.url, &[]);
    let store = store_without(dir.path(), &good, "nodump", &id, "dump.pgc.zst");
    let target = src.cluster.url("m_dump");
    let export = dir.path().join("m.pgc");
    let export_s = export.display().to_string();
    let runs: Vec<Vec<&str>> = vec![
        vec!["verify", &id],
        vec!["verify", "--all"],
        vec!["export", &id, "-o", &export_s],
        vec!["restore", &id, "--target", &target, "--jobs", "1"],
        vec!["restore", &id, "--target", &target, "--jobs", "2"],
        vec![
            "restore", &id, "--target", &target, "--jobs", "2", "--spool",
        ],
    ];
    for args in runs {
        let out = cmd_json(dir.path(), &store, &args);
        out.code(3);
        assert!(
            out.stderr.contains("dump.pgc.zst") && out.stderr.contains("missing"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(!db_exists(&src.cluster, "m_dump").await);
    assert!(!export.exists());

    let (out, reports) = drill(dir.path(), &store, &id, "nodump", "2");
    out.code(3);
    let said = out.json()["error"].as_str().unwrap_or("").to_string();
    assert!(
        said.contains("dump.pgc.zst") && said.contains("missing"),
        "{said}"
    );
    let evidence = std::fs::read_to_string(reports.join("result.json")).expect("result.json");
    let j: Value = serde_json::from_str(&evidence).expect("json");
    assert_eq!(j["verdict"], "fail");
    assert!(
        j["error"].as_str().unwrap_or("").contains("dump.pgc.zst"),
        "{j}"
    );
}

/// A backup whose dump index (listed in its manifest) is missing fails `verify` with exit 3;
/// a drill reports the same (exit 3, evidence naming the index), whatever its `--jobs`.
#[tokio::test(flavor = "multi_thread")]
async fn drill_fails_like_verify_when_the_dump_index_is_missing() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good");
    let id = backup(dir.path(), &good, &src.url, &[]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_path(&good, &id)).expect("read"))
            .expect("json");
    let index = manifest["objects"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["kind"] == "index"))
        .and_then(|o| o["name"].as_str())
        .expect("an index object")
        .to_string();
    let store = store_without(dir.path(), &good, "noindex", &id, &index);

    let out = cmd_json(dir.path(), &store, &["verify", &id]);
    out.code(3);
    assert!(out.stderr.contains(&index), "{}", out.stderr);

    for jobs in ["1", "2"] {
        let (out, reports) = drill(dir.path(), &store, &id, &format!("noindex{jobs}"), jobs);
        out.code(3);
        let said = out.json()["error"].as_str().unwrap_or("").to_string();
        assert!(said.contains(&index) && said.contains("missing"), "{said}");
        let j: Value = serde_json::from_str(
            &std::fs::read_to_string(reports.join("result.json")).expect("result.json"),
        )
        .expect("json");
        assert_eq!(j["verdict"], "fail");
        assert!(j["error"].as_str().unwrap_or("").contains(&index), "{j}");
    }

    // A restore does without the index, but says so.
    let out = cmd_json(
        dir.path(),
        &store,
        &[
            "restore",
            &id,
            "--target",
            &src.cluster.url("m_index"),
            "--jobs",
            "2",
        ],
    );
    out.ok();
    assert!(
        out.stderr.contains("warning:") && out.stderr.contains(&index),
        "{}",
        out.stderr
    );
    assert!(out.json()["damaged"][0]
        .as_str()
        .unwrap_or("")
        .contains(&index));

    // A corrupt index (same size, one byte changed) fails the drill the same way.
    let corrupt = store_without(dir.path(), &good, "badindex", &id, "SHA256SUMS");
    std::fs::copy(
        good.join(format!("app/backups/{id}/SHA256SUMS")),
        corrupt.join(format!("app/backups/{id}/SHA256SUMS")),
    )
    .expect("copy");
    let p = corrupt.join(format!("app/backups/{id}/{index}"));
    let mut bytes = std::fs::read(&p).expect("index");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&p, bytes).expect("write");
    let (out, _) = drill(dir.path(), &corrupt, &id, "badindex", "1");
    out.code(3);
    let said = out.json()["error"].as_str().unwrap_or("").to_string();
    assert!(said.contains(&index), "{said}");

    // The drill on the intact store passes (the check above is about the index alone).
    let (out, _) = drill(dir.path(), &good, &id, "good", "2");
    out.ok();
}
