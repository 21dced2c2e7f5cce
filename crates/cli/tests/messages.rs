//! What a newcomer reads in the first hour (issue 22): messages that say what is wrong and
//! what to do, and no output that looks broken. Each test is named after what it fixed.

mod common;
use common::*;
use std::path::Path;

fn config(dir: &Path, body: &str) {
    std::fs::write(dir.join("pgdrill.toml"), body).expect("config");
}

#[test]
fn doctor_names_the_unset_url_env_variable_and_how_to_set_it() {
    let dir = tempfile::tempdir().expect("tmp");
    config(
        dir.path(),
        "[store]\nurl = \"./store\"\n[[database]]\nname = \"app\"\nurl_env = \"DATABASE_URL\"\n",
    );
    let out = run(dir.path(), &["doctor"], &[]);
    out.code(1);
    assert!(
        out.stdout.contains(
            "FAIL app: source: database app: url_env names DATABASE_URL, which is not set"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("hint: export DATABASE_URL=postgresql://user:password@host:5432/app"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("no usable source URL"),
        "{}",
        out.stdout
    );
    let j = run(dir.path(), &["--json", "doctor"], &[]);
    let checks = j.json()["checks"].clone();
    let source = checks
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "app: source")
        .cloned()
        .expect("source check");
    assert_eq!(source["ok"], false);
    assert!(source["hint"]
        .as_str()
        .expect("hint")
        .contains("not a pooler"));
}

#[test]
fn doctor_without_url_env_says_to_set_it() {
    let dir = tempfile::tempdir().expect("tmp");
    config(
        dir.path(),
        "[store]\nurl = \"./store\"\n[[database]]\nname = \"app\"\n",
    );
    let out = run(dir.path(), &["doctor"], &[]);
    out.code(1);
    assert!(
        out.stdout.contains("database app has no source")
            && out
                .stdout
                .contains("hint: set url_env in the [[database]] entry, or pass --source URL"),
        "{}",
        out.stdout
    );
}

/// A closed port on loopback: nothing listens on port 1.
const REFUSED: &str = "postgresql://app:pw@127.0.0.1:1/app";

/// A backup of [`REFUSED`] into `store`: it fails with exit 1.
fn backup_refused(dir: &std::path::Path, store: &std::path::Path) -> Out {
    let out = run(
        dir,
        &[
            "backup",
            "--source",
            REFUSED,
            "--store",
            &store.display().to_string(),
        ],
        &[],
    );
    out.code(1);
    out
}

#[test]
fn refused_connection_says_what_to_check_and_leaves_nothing_in_a_new_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let out = backup_refused(dir.path(), &store);
    for want in [
        "cannot connect to postgresql://app@127.0.0.1:1/app",
        "check the host and port",
        "firewall",
        "direct URL, not a pooler's",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want:?} missing:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("pw@"), "{}", out.stderr);
    assert!(
        !store.join("app/last_failure.json").exists(),
        "a database that never answered got a failure record"
    );
}

#[test]
fn refused_connection_of_a_database_with_backups_is_recorded_for_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    // A backup folder of app exists: its database answered before, so an outage counts.
    let old = store.join("app/backups/20260101T000000Z-abcd");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("manifest.json"), b"{}").expect("write");
    backup_refused(dir.path(), &store);
    let record = std::fs::read_to_string(store.join("app/last_failure.json")).expect("record");
    assert!(record.contains("cannot connect"), "{record}");
}

#[test]
fn refused_connection_of_a_configured_database_is_recorded_for_status_and_recovery() {
    let dir = tempfile::tempdir().expect("tmp");
    config(
        dir.path(),
        "[store]\nurl = \"./store\"\n[[database]]\nname = \"app\"\nurl_env = \"DATABASE_URL\"\n",
    );
    let out = run(dir.path(), &["backup"], &[("DATABASE_URL", REFUSED)]);
    out.code(1);
    assert!(
        out.stderr.contains("check the host and port"),
        "{}",
        out.stderr
    );
    let record =
        std::fs::read_to_string(dir.path().join("store/app/last_failure.json")).expect("record");
    assert!(record.contains("cannot connect"), "{record}");
}

#[test]
fn prune_dry_run_on_an_empty_store_says_so_instead_of_an_empty_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let out = run(
        dir.path(),
        &[
            "prune",
            "--dry-run",
            "--store",
            &store.display().to_string(),
        ],
        &[],
    );
    out.ok();
    assert!(
        out.stdout.starts_with("nothing to prune: ") && out.stdout.contains("holds no backups yet"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("BACKUP  ACTION"), "{}", out.stdout);

    // A configured database without backups: its line, and no header without rows.
    config(
        dir.path(),
        &format!(
            "[store]\nurl = \"{}\"\n[[database]]\nname = \"app\"\nurl_env = \"X\"\n",
            store.display()
        ),
    );
    let out = run(dir.path(), &["prune", "--dry-run"], &[]);
    out.ok();
    assert!(
        out.stdout.contains("app: 0 kept, 0 deleted"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("ACTION"), "{}", out.stdout);
}

#[test]
fn the_store_variable_is_named_one_way_and_the_old_spelling_still_works() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let s = store.display().to_string();
    for var in ["PGDRILL_STORE_URL", "PGDRILL_STORE"] {
        let out = run(dir.path(), &["list"], &[(var, &s)]);
        out.ok();
        assert!(
            out.stdout.contains("no complete backups in file://"),
            "{var}: {}",
            out.stdout
        );
    }
    let none = run(dir.path(), &["list"], &[]);
    none.code(2);
    assert!(
        none.stderr.contains("set PGDRILL_STORE_URL,"),
        "{}",
        none.stderr
    );
}

#[test]
fn init_says_what_to_do_next() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["init", "--generate-key"], &[]);
    out.ok();
    assert!(
        out.stdout.contains("next: export DATABASE_URL=") && out.stdout.contains("pgdrill doctor"),
        "{}",
        out.stdout
    );
}
