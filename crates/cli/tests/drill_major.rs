//! `drill --major N`: an upgrade rehearsal. A PostgreSQL 15 backup is restored into a
//! throwaway PostgreSQL 18 cluster, the usual checks run, and result.json records both
//! versions (and stays valid against docs/result.schema.json).

mod common;
mod drill_support;
use common::*;
use drill_support::assert_valid_result;
use pgdrill_testkit as tk;

#[tokio::test(flavor = "multi_thread")]
async fn drill_major_18_from_a_15_source_records_both_versions() {
    let cluster = tk::cluster(Some(15));
    let src = empty_db(&cluster, "app").await;
    tk::load_fixture(&src).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store").display().to_string();
    let env = [("PGDRILL_SOURCE_URL", src.as_str())];
    run(dir.path(), &["--json", "backup", "--store", &store], &env).ok();

    let reports = dir.path().join("evidence").display().to_string();
    let out = run(
        dir.path(),
        &[
            "--json",
            "drill",
            "--store",
            &store,
            "--major",
            "18",
            "--report-dir",
            &reports,
        ],
        &env,
    );
    out.ok();
    let r = out.json();
    assert_valid_result(&r);
    assert_eq!(r["verdict"], "pass", "{r}");
    assert_eq!(r["upgrade"]["from_major"], 15, "{r}");
    assert_eq!(r["upgrade"]["to_major"], 18, "{r}");
    assert!(
        r["upgrade"]["from_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("15")),
        "{r}"
    );
    assert!(
        r["upgrade"]["to_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("18")),
        "{r}"
    );
    assert!(
        r["target"]["server_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("18")),
        "{r}"
    );
    let on_disk = std::fs::read_to_string(dir.path().join("evidence").join("result.json"))
        .expect("result.json");
    assert!(on_disk.contains("\"upgrade\""), "{on_disk}");
    let md =
        std::fs::read_to_string(dir.path().join("evidence").join("report.md")).expect("report.md");
    assert!(md.contains("Upgrade rehearsal:** PostgreSQL 15"), "{md}");

    // doctor lists the installed majors.
    let doctor = run(dir.path(), &["--json", "doctor", "--store", &store], &env);
    let majors = doctor.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "postgresql majors")
        .cloned()
        .expect("majors check");
    let detail = majors["detail"].as_str().expect("detail");
    assert!(detail.contains("15.") && detail.contains("18."), "{detail}");

    // A major that is not installed, or older than the source: exit 2, nothing restored.
    let out = run(
        dir.path(),
        &["--json", "drill", "--store", &store, "--major", "11"],
        &env,
    );
    out.code(2);
    let out = run(
        dir.path(),
        &["--json", "drill", "--store", &store, "--major", "99"],
        &env,
    );
    out.code(2);
    assert!(out.stderr.contains("not installed"), "{}", out.stderr);
}
