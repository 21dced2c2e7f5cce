//! A drill restores the uploads snapshot matching the backup's time alongside the database
//! and checks parity (`mirror_parity`).

mod common;
mod drill_support;
use common::*;
use drill_support::assert_valid_result;

fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (k, v) in files {
        let p = dir.join(k);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, v).expect("write");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_checks_the_uploads_snapshot_of_the_backups_time() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let uploads = dir.path().join("uploads");
    write(
        &uploads,
        &[("orders/1.pdf", "invoice one"), ("photos/a.jpg", "jpeg a")],
    );
    let store = dir.path().join("store");
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[[mirror]]\nname = \"uploads\"\nfrom = \"{}\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n[database.drill]\nrow_counts = false\n\
             [[database.drill.check]]\nname = \"uploads restore\"\nkind = \"mirror_parity\"\nmirror = \"uploads\"\n",
            store.display(),
            uploads.display()
        ),
    )
    .expect("config");
    let env = [("SRC", src.url.as_str())];
    // A backup taken before any uploads snapshot: the check fails, saying so.
    let early = run(dir.path(), &["--json", "backup"], &env);
    early.ok();
    let early_id = early.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run(dir.path(), &["mirror", "run"], &env).ok();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let backup = run(dir.path(), &["--json", "backup"], &env);
    backup.ok();
    // The uploads change after the backup: the drill must use the earlier snapshot.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    write(
        &uploads,
        &[
            ("photos/b.jpg", "jpeg b"),
            ("orders/1.pdf", "invoice one, edited"),
        ],
    );
    run(dir.path(), &["mirror", "run"], &env).ok();

    let out = run(
        dir.path(),
        &["--json", "drill", "latest", "--report-dir", "r1"],
        &env,
    );
    out.ok();
    let j = out.json();
    assert_valid_result(&j);
    assert_eq!(j["checks"][0]["kind"], "mirror_parity");
    assert!(
        j["checks"][0]["actual"]
            .as_str()
            .expect("actual")
            .contains("2 objects restored, all match"),
        "{}",
        j["checks"][0]
    );

    let out = run(
        dir.path(),
        &["--json", "drill", &early_id, "--report-dir", "r2"],
        &env,
    );
    out.code(1);
    assert!(out.json()["checks"][0]["actual"]
        .as_str()
        .expect("actual")
        .contains("no snapshot of mirror uploads"));

    // Corrupt stored uploads fail the check.
    let objects = store.join("uploads/mirror/objects");
    for victim in files_below(&objects) {
        let path = objects.join(victim);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[0] ^= 0xff;
        std::fs::write(&path, bytes).expect("corrupt");
    }
    let out = run(
        dir.path(),
        &["--json", "drill", "latest", "--report-dir", "r3"],
        &env,
    );
    out.code(1);
    assert_eq!(out.json()["checks"][0]["passed"], false);

    // `pgdrill prune` covers the mirror's snapshots too.
    let out = run(dir.path(), &["--json", "prune", "--dry-run"], &env);
    out.ok();
    let mirrors = out.json()["mirrors"]
        .as_array()
        .expect("mirrors in the prune plan")
        .clone();
    assert_eq!(mirrors.len(), 1);
}
