//! `<db>/catalog.json`: `list` and `status` read it and agree with the manifests after
//! backups, a prune, a backup written without a catalog update and a manifest deleted by hand.

mod common;
use common::*;
use std::path::Path;

fn manifests(store: &Path) -> Vec<String> {
    let mut ids: Vec<String> = backup_ids(store, "app")
        .into_iter()
        .filter(|id| {
            store
                .join("app/backups")
                .join(id)
                .join("manifest.json")
                .exists()
        })
        .collect();
    ids.sort();
    ids.reverse();
    ids
}

fn catalog_ids(store: &Path) -> Vec<String> {
    let text = std::fs::read(store.join("app/catalog.json")).expect("catalog.json");
    let c: serde_json::Value = serde_json::from_slice(&text).expect("json");
    assert_eq!(c["format_version"], 2);
    c["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["id"].as_str().expect("id").to_string())
        .collect()
}

/// `list --json`'s ids (newest first) and `status --json`'s count and newest backup.
fn listed(dir: &Path, env: &[(&str, &str)]) -> (Vec<String>, u64, String) {
    let l = run(dir, &["--json", "list"], env);
    l.ok();
    let ids = l.json()["backups"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["backup_id"].as_str().expect("id").to_string())
        .collect();
    let s = run(dir, &["--json", "status"], env);
    let s = &s.json()["databases"][0];
    (
        ids,
        s["backups"].as_u64().expect("count"),
        s["newest_backup"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_status_agree_with_the_manifests_after_backup_and_prune() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let text = format!(
        "[store]\nurl = \"{}\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
        store.display()
    );
    std::fs::write(dir.path().join("pgdrill.toml"), text).expect("config");
    let env = [
        ("SRC", src.url.as_str()),
        ("PGDRILL_RETENTION_KEEP_LAST", "2"),
        ("PGDRILL_RETENTION_KEEP_MIN", "1"),
    ];
    for i in 0..3 {
        if i > 0 {
            // Ids order backups by their second: one backup per second keeps that order
            // the order they were taken in.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        run(dir.path(), &["backup"], &env).ok();
    }
    // Each backup updated the catalog: it holds the three, as the manifests do.
    assert_eq!(manifests(&store).len(), 3);
    assert_eq!(catalog_ids(&store), manifests(&store));

    run(dir.path(), &["prune"], &env).ok();
    let kept = manifests(&store);
    assert_eq!(kept.len(), 2);
    assert_eq!(catalog_ids(&store), kept, "prune updated the catalog");
    let (ids, count, newest) = listed(dir.path(), &env);
    assert_eq!(ids, kept);
    assert_eq!((count, newest.as_str()), (2, kept[0].as_str()));

    // A backup written by a pgdrill that does not know the catalog (here: its folder copied
    // under a newer id, the manifest rewritten to match), and the oldest manifest deleted by
    // hand: both are seen at once, and the catalog is rebuilt.
    let newer = "20991231T000000Z-cafe";
    let from = store.join("app/backups").join(&kept[0]);
    let to = store.join("app/backups").join(newer);
    std::fs::create_dir_all(&to).expect("mkdir");
    for e in std::fs::read_dir(&from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    let m = std::fs::read_to_string(to.join("manifest.json")).expect("manifest");
    std::fs::write(to.join("manifest.json"), m.replace(&kept[0], newer)).expect("write");
    std::fs::remove_file(
        store
            .join("app/backups")
            .join(&kept[1])
            .join("manifest.json"),
    )
    .expect("rm");
    let want = vec![newer.to_string(), kept[0].clone()];
    assert_eq!(manifests(&store), want);
    let (ids, count, newest) = listed(dir.path(), &env);
    assert_eq!(ids, want);
    assert_eq!((count, newest.as_str()), (2, newer));
    assert_eq!(
        catalog_ids(&store),
        want,
        "the reader stored the rebuilt catalog"
    );

    // A catalog deleted by hand is rebuilt the same.
    std::fs::remove_file(store.join("app/catalog.json")).expect("rm");
    assert_eq!(listed(dir.path(), &env).0, want);
    assert_eq!(catalog_ids(&store), want);
}
