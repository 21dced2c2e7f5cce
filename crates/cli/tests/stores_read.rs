//! Several stores, the read side (DESIGN.md §9): three stores (a moto S3 server, a second
//! moto server, a folder) holding copies that disagree, made with the testkit's store-to-store
//! copy (manifest last). One source cluster, four backups:
//! - `list`/`status --json` show which store lacks a copy (schema-validated);
//! - `show latest --from-store`, and an unknown store name (exit 2 with the names);
//! - `verify` checks every store's copy and reports the one corrupt store (exit 3); a corrupt
//!   copy read by `export` fails naming the other stores, read only with `--from-store`;
//! - `prune` keeps 3 in two stores and 1 in the one with `[store.retention] keep_last = 1`;
//! - `drill --from-store` records the store it read from in its result;
//! - with the first store's server stopped, `restore latest` reads the newest copy over the
//!   reachable stores from the store holding it, says so, and the rows match the source;
//!   `status` says the primary cannot be read and still lists the other stores' copies.

mod common;
use common::*;
use pgdrill_testkit as tk;
use serde_json::Value;
use tk::copies::{complete_backups, copy_backup, open_store};

fn env_of(s3: &tk::S3Server) -> Vec<(String, String)> {
    s3.env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
        .collect()
}

fn stores_of(v: &Value, id: &str) -> Vec<String> {
    v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .find(|b| b["backup_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {v}"))["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .map(|s| s.as_str().expect("name").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_fall_back_over_stores_that_disagree_and_each_store_keeps_its_own_retention() {
    let src = source(None).await;
    let mut s3a = tk::S3Server::start();
    let s3b = tk::S3Server::start();
    s3a.create_bucket("pg-primary");
    s3b.create_bucket("pg-offsite");
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let local = d.join("local");
    std::fs::create_dir_all(&local).expect("mkdir");
    let env_s3 = env_of(&s3a);
    let (ea, eb) = (s3a.endpoint(), s3b.endpoint());
    // Backups are written to the primary alone (one [store]), then copied.
    std::fs::write(
        d.join("one.toml"),
        format!(
            "[store]\nurl = \"s3://pg-primary/pg\"\nendpoint = \"{ea}\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n"
        ),
    )
    .expect("one.toml");
    std::fs::write(
        d.join("pgdrill.toml"),
        format!(
            "[retention]\nkeep_last = 3\n\
             [[store]]\nname = \"primary\"\nurl = \"s3://pg-primary/pg\"\nendpoint = \"{ea}\"\nretry_seconds = 1\ntimeout_seconds = 5\n\
             [[store]]\nname = \"offsite\"\nurl = \"s3://pg-offsite/pg\"\nendpoint = \"{eb}\"\nretry_seconds = 1\n\
             [store.retention]\nkeep_last = 1\nkeep_min = 1\n\
             [[store]]\nname = \"local\"\nurl = \"{}\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            local.display()
        ),
    )
    .expect("pgdrill.toml");
    let mut env: Vec<(&str, &str)> = env_s3
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("SRC", src.url.as_str()));
    let go = |args: &[&str]| run(d, args, &env);

    let primary = open_store("s3://pg-primary/pg", Some(&ea), &env_s3);
    let offsite = open_store("s3://pg-offsite/pg", Some(&eb), &env_s3);
    let folder = open_store(&local.display().to_string(), None, &[]);
    // In the order taken (two backups of one second do not sort by id).
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..4 {
        go(&["--config", "one.toml", "backup"]).ok();
        let new: Vec<String> = complete_backups(&primary, "app")
            .await
            .into_iter()
            .filter(|id| !ids.contains(id))
            .collect();
        assert_eq!(new.len(), 1, "{new:?}");
        ids.extend(new);
    }
    // Offsite misses the newest backup; the folder holds all four.
    for id in &ids {
        copy_backup(&primary, &folder, "app", id).await;
        if id != &ids[3] {
            copy_backup(&primary, &offsite, "app", id).await;
        }
    }
    let (b2, b3, b4) = (&ids[1], &ids[2], &ids[3]);

    // list: each backup once, with the stores holding it.
    let out = go(&["--json", "list"]);
    let v = out.ok().json();
    tk::schema::assert_valid("list.schema.json", &v);
    assert_eq!(stores_of(&v, b4), ["primary", "local"], "{v}");
    assert_eq!(stores_of(&v, b3), ["primary", "offsite", "local"], "{v}");
    assert!(out.stdout.contains("\"stores\""));
    let human = go(&["list"]);
    assert!(human.ok().stdout.contains("STORES"), "{}", human.stdout);

    // status: the missing copy of the newest backup is named, with its store.
    let out = go(&["--json", "status"]);
    out.code(1);
    let v = out.json();
    tk::schema::assert_valid("status.schema.json", &v);
    let db = &v["databases"][0];
    let slo = db["slos"]
        .as_array()
        .expect("slos")
        .iter()
        .find(|s| s["name"] == "backup_copies")
        .unwrap_or_else(|| panic!("no backup_copies SLO: {v}"));
    assert_eq!(slo["ok"], false, "{slo}");
    let detail = slo["detail"].as_str().expect("detail");
    assert!(
        detail.contains("offsite") && detail.contains(b4.as_str()),
        "{detail}"
    );
    let offsite_doc = v["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .find(|s| s["name"] == "offsite")
        .expect("offsite");
    assert_eq!(offsite_doc["missing"][0], format!("app/{b4}"), "{v}");
    assert_eq!(offsite_doc["newest_backup"], b3.as_str(), "{v}");
    assert_eq!(offsite_doc["backups"], 3, "{v}");

    // --from-store: that store's latest; an unknown name lists the known ones.
    let v = go(&["--json", "show", "latest", "--from-store", "offsite"])
        .ok()
        .json();
    assert_eq!(v["backup_id"], b3.as_str());
    assert_eq!(v["store"], "offsite");
    let v = go(&["--json", "show", "latest"]).ok().json();
    assert_eq!(v["backup_id"], b4.as_str());
    assert_eq!(v["store"], "primary");
    let out = go(&["show", "latest", "--from-store", "nope"]);
    out.code(2);
    assert!(
        out.stderr.contains("primary, offsite, local"),
        "{}",
        out.stderr
    );

    // verify: every store's copy; the folder's corrupt copy of b2 is reported as such.
    let dump = local.join("app/backups").join(b2).join("dump.pgc.zst");
    let mut bytes = std::fs::read(&dump).expect("dump");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).expect("corrupt");
    let out = go(&["--json", "verify", b2]);
    out.code(3);
    let v = out.json();
    tk::schema::assert_valid("verify.schema.json", &v);
    let verdicts: Vec<(String, bool)> = v["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .map(|s| {
            (
                s["store"].as_str().unwrap_or("").to_string(),
                s["ok"] == true,
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("primary".to_string(), true),
            ("offsite".to_string(), true),
            ("local".to_string(), false)
        ],
        "{v}"
    );
    // Reading the corrupt copy fails (exit 3): never silently replaced by another store's.
    let out = go(&[
        "export",
        b2,
        "--from-store",
        "local",
        "-o",
        &d.join("b2.pgc").display().to_string(),
    ]);
    out.code(3);
    // The primary's copy of b2 corrupt too: reading it fails and names the other stores,
    // whose copies are only read when asked for.
    let key = format!("app/backups/{b2}/dump.pgc.zst");
    let mut bytes = primary.get(&key).await.expect("get").to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    primary.put(&key, bytes.into()).await.expect("put");
    let file = d.join("b2-primary.pgc");
    let out = go(&["export", b2, "-o", &file.display().to_string()]);
    out.code(3);
    assert!(
        out.stderr.contains("store primary") && out.stderr.contains("--from-store"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("offsite"), "{}", out.stderr);
    assert!(!file.exists(), "nothing exported from a corrupt copy");
    let out = go(&[
        "export",
        b2,
        "--from-store",
        "offsite",
        "-o",
        &file.display().to_string(),
    ]);
    out.ok();

    // prune: each store by its own retention (3, offsite 1); the newest of each is kept.
    let out = go(&["--json", "prune"]);
    let v = out.ok().json();
    tk::schema::assert_valid("prune.schema.json", &v);
    let mut kept = ids[1..].to_vec();
    kept.sort();
    assert_eq!(complete_backups(&primary, "app").await, kept);
    assert_eq!(complete_backups(&offsite, "app").await, vec![b3.clone()]);
    assert_eq!(complete_backups(&folder, "app").await, kept);

    // A drill reads from the store asked for and records it in its evidence (kept in the
    // primary, as the lease is).
    let out = go(&["--json", "drill", "--from-store", "local"]);
    let v = out.ok().json();
    tk::schema::assert_valid("drill.schema.json", &v);
    assert_eq!(v["backup"]["id"], b4.as_str(), "{v}");
    assert_eq!(v["backup"]["store"], "local", "{v}");

    // The primary's server stops: restore reads the newest copy over the reachable stores
    // (b4, in the folder; offsite's newest is b3), says so, and the data is the source's.
    s3a.kill_now();
    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    let target = src.cluster.url("fallback");
    let out = go(&["--json", "restore", "latest", "--target", &target]);
    let v = out.ok().json();
    tk::schema::assert_valid("restore.schema.json", &v);
    assert_eq!(v["backup_id"], b4.as_str(), "{v}");
    assert_eq!(v["store"], "local", "{v}");
    assert!(
        out.stderr.contains("store primary cannot be read"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("store offsite has no copy of the newest backup"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("reading backup {b4} of app from store local")),
        "{}",
        out.stderr
    );
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    // status with the primary down: violated, the primary named, the other copies listed.
    let out = go(&["--json", "status"]);
    out.code(1);
    let v = out.json();
    tk::schema::assert_valid("status.schema.json", &v);
    let slos = &v["databases"][0]["slos"];
    assert_eq!(slos[0]["name"], "primary_store", "{v}");
    let by_name = |n: &str| {
        v["stores"]
            .as_array()
            .expect("stores")
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}: {v}"))
    };
    assert_eq!(by_name("primary")["reachable"], false, "{v}");
    assert_eq!(by_name("local")["backups"], 3, "{v}");
    assert_eq!(by_name("offsite")["newest_backup"], b3.as_str(), "{v}");
}
