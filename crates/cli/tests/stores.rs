//! Several stores (DESIGN.md §9, the write side): every backup lands complete in each
//! configured store (a moto S3 server, a second moto S3 server behind a fault proxy, a
//! folder), streamed once; a store that fails mid-backup leaves the backup degraded (exit 1,
//! `backup_degraded`, failure recorded) with the other copies valid and nothing in the failed
//! store; `copy --to` backfills it, a second `copy` does nothing, and a tampered object is
//! never copied (exit 3, no manifest in the target); a store whose copy arrives corrupted
//! fails its own check (ETag against pgdrill's MD5s) and is dropped the same way; `copy`
//! waits for no one: it fails (exit 6) while another job holds the database's lease, and
//! copies the drill evidence with `--all`. One source cluster for all of it.

mod common;
mod fault_proxy;
use common::*;
use fault_proxy::FaultProxy;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The object names of backup `id` in an S3 bucket under prefix `pg/`.
fn s3_names(s3: &tk::S3Server, bucket: &str, id: &str) -> BTreeSet<String> {
    let dir = format!("pg/app/backups/{id}/");
    s3.list_keys(bucket)
        .into_iter()
        .filter_map(|k| k.strip_prefix(&dir).map(str::to_string))
        .collect()
}

/// The object names of backup `id` in the folder store.
fn folder_names(folder: &Path, id: &str) -> BTreeSet<String> {
    std::fs::read_dir(folder.join("app/backups").join(id))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn s3_text(s3: &tk::S3Server, bucket: &str, id: &str, name: &str) -> String {
    let (status, body) = s3
        .request("GET", &format!("/{bucket}/pg/app/backups/{id}/{name}"), &[])
        .expect("get");
    assert_eq!(status, 200, "{bucket} {id} {name}: {body}");
    body
}

/// The three copies of `id` hold the same objects, the same SHA256SUMS and the same manifest.
fn assert_three_copies(s3a: &tk::S3Server, s3b: &tk::S3Server, folder: &Path, id: &str) {
    let names = folder_names(folder, id);
    assert!(names.contains("manifest.json"), "{names:?}");
    assert!(names.contains("SHA256SUMS"), "{names:?}");
    assert_eq!(s3_names(s3a, "backups", id), names, "primary vs local");
    assert_eq!(s3_names(s3b, "offsite", id), names, "offsite vs local");
    for name in ["manifest.json", "SHA256SUMS"] {
        let local =
            std::fs::read_to_string(folder.join("app/backups").join(id).join(name)).expect("read");
        assert_eq!(s3_text(s3a, "backups", id, name), local, "{name}");
        assert_eq!(s3_text(s3b, "offsite", id, name), local, "{name}");
    }
}

fn copies(b: &Value) -> Vec<(String, bool)> {
    b["backups"][0]["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .map(|c| {
            (
                c["store"].as_str().unwrap_or("").to_string(),
                c["ok"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_goes_to_every_store_degrades_when_one_fails_and_copy_backfills_it() {
    let t0 = std::time::Instant::now();
    let src = source(None).await;
    let s3a = tk::S3Server::start();
    s3a.create_bucket("backups");
    let s3b = tk::S3Server::start();
    s3b.create_bucket("offsite");
    let proxy = FaultProxy::start(&s3b.endpoint());
    let (hook, seen) = receiver();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let folder = d.join("local");
    std::fs::write(
        d.join("pgdrill.toml"),
        format!(
            "[encryption]\npassphrase_env = \"PASS\"\n\
             [alerts]\nwebhook_url_env = \"HOOK\"\ndedup_minutes = 0\n\
             [[store]]\nname = \"primary\"\nurl = \"s3://backups/pg\"\n\
             [[store]]\nname = \"offsite\"\nurl = \"s3://offsite/pg\"\nendpoint = \"{}\"\n\
             timeout_seconds = 2\nretry_seconds = 1\nchecksum = \"etag\"\n\
             [[store]]\nname = \"local\"\nurl = \"{}\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            proxy.endpoint,
            folder.display()
        ),
    )
    .expect("config");
    let aws = s3a.env();
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("SRC", src.url.as_str()),
        ("PASS", "several-stores-passphrase"),
        ("HOOK", hook.as_str()),
    ]);

    eprintln!("step 1 at {:?}", t0.elapsed());
    // 1. One backup, three complete copies, identical; the folder's restores the source.
    let out = run(d, &["--json", "backup"], &env);
    out.ok();
    let b = out.json();
    tk::schema::assert_valid("backup.schema.json", &b);
    assert_eq!(
        copies(&b),
        [
            ("primary".into(), true),
            ("offsite".into(), true),
            ("local".into(), true)
        ],
        "{b}"
    );
    let id1 = b["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_three_copies(&s3a, &s3b, &folder, &id1);
    let target = empty_db(&src.cluster, "from_local").await;
    let folder_url = folder.display().to_string();
    run(
        d,
        &[
            "restore",
            "latest",
            "--store",
            &folder_url,
            "--name",
            "app",
            "--target",
            &target,
        ],
        &env,
    )
    .ok();
    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    eprintln!("step 2 at {:?}", t0.elapsed());
    // 2. A parallel dump (directory layout) fans out too.
    let out = run(d, &["--json", "backup", "--jobs", "2"], &env);
    out.ok();
    let b = out.json();
    assert!(copies(&b).iter().all(|(_, ok)| *ok), "{b}");
    let id2 = b["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        folder_names(&folder, &id2).contains("toc.dat.zst.age"),
        "{:?}",
        folder_names(&folder, &id2)
    );
    assert_three_copies(&s3a, &s3b, &folder, &id2);

    eprintln!("step 3 at {:?}", t0.elapsed());
    // 3. The offsite store stalls every part upload: its copy fails mid-upload, the backup
    //    is degraded (exit 1), the other two copies are complete, nothing is left offsite.
    proxy.stall("partNumber=");
    let out = run(d, &["--json", "backup"], &env);
    out.code(1);
    let b = out.json();
    tk::schema::assert_valid("backup.schema.json", &b);
    assert_eq!(
        copies(&b),
        [
            ("primary".into(), true),
            ("offsite".into(), false),
            ("local".into(), true)
        ],
        "{b}"
    );
    let offsite = &b["backups"][0]["copies"][1];
    assert!(
        offsite["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{b}"
    );
    assert_eq!(offsite["stored_bytes"], 0, "{b}");
    assert!(out.stderr.contains("degraded"), "{}", out.stderr);
    let id3 = b["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    proxy.clear();
    assert!(
        s3_names(&s3b, "offsite", &id3).is_empty(),
        "{:?}",
        s3b.list_keys("offsite")
    );
    let stalled = proxy
        .requests()
        .iter()
        .filter(|r| r.contains("partNumber="))
        .count();
    assert!(stalled >= 1, "{:?}", proxy.requests());
    for store in ["s3://backups/pg", folder_url.as_str()] {
        run(
            d,
            &["verify", &id3, "--store", store, "--name", "app"],
            &env,
        )
        .ok();
    }
    let alerts = seen.lock().expect("lock").clone();
    let degraded: Vec<&String> = alerts
        .iter()
        .filter(|a| a.contains("\"backup_degraded\""))
        .collect();
    assert_eq!(degraded.len(), 1, "{alerts:?}");
    assert!(
        degraded[0].contains("offsite") && degraded[0].contains(&id3),
        "{}",
        degraded[0]
    );
    let failures = s3_text_at(&s3a, "/backups/pg/app/failures.json");
    assert!(
        failures.contains("degraded") && failures.contains("offsite"),
        "{failures}"
    );

    eprintln!("step 4 at {:?}", t0.elapsed());
    // 4. `copy --to offsite` backfills it (no key needed); a second copy does nothing.
    let no_key: Vec<(&str, &str)> = env.iter().copied().filter(|(k, _)| *k != "PASS").collect();
    let out = run(d, &["--json", "copy", &id3, "--to", "offsite"], &no_key);
    out.ok();
    let c = out.json();
    tk::schema::assert_valid("copy.schema.json", &c);
    assert_eq!(c["from"], "primary", "{c}");
    assert_eq!(c["copied"].as_array().map(Vec::len), Some(1), "{c}");
    assert_three_copies(&s3a, &s3b, &folder, &id3);
    // The parallel backup's copy (directory layout) gone from offsite: `copy --all` puts it
    // back and skips the others; run again, it does nothing.
    delete_backup(&s3b, "offsite", &id2);
    let out = run(d, &["--json", "copy", "--all", "--to", "offsite"], &no_key);
    out.ok();
    let c = out.json();
    assert_eq!(c["copied"].as_array().map(Vec::len), Some(1), "{c}");
    assert_eq!(c["copied"][0]["backup_id"], id2.as_str(), "{c}");
    assert_eq!(c["skipped"].as_array().map(Vec::len), Some(2), "{c}");
    assert_three_copies(&s3a, &s3b, &folder, &id2);
    let out = run(d, &["--json", "copy", "--all", "--to", "offsite"], &no_key);
    out.ok();
    let c = out.json();
    assert_eq!(c["copied"].as_array().map(Vec::len), Some(0), "{c}");
    assert_eq!(c["skipped"].as_array().map(Vec::len), Some(3), "{c}");
    let offsite_env: Vec<(String, String)> = s3b.env();
    let mut verify_env: Vec<(&str, &str)> = offsite_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    verify_env.push(("PASS", "several-stores-passphrase"));
    run(
        d,
        &[
            "verify",
            &id3,
            "--store",
            "s3://offsite/pg",
            "--name",
            "app",
        ],
        &verify_env,
    )
    .ok();

    eprintln!("step 5 at {:?}", t0.elapsed());
    // 5. A tampered object is never copied: exit 3, no manifest in the target.
    delete_backup(&s3b, "offsite", &id1);
    let dump = folder
        .join("app/backups")
        .join(&id1)
        .join("dump.pgc.zst.age");
    let mut bytes = std::fs::read(&dump).expect("read dump");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&dump, bytes).expect("tamper");
    let out = run(
        d,
        &["--json", "copy", &id1, "--from", "local", "--to", "offsite"],
        &no_key,
    );
    out.code(3);
    let c = out.json();
    assert!(
        c["failures"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("dump.pgc.zst.age")),
        "{c}"
    );
    assert!(
        s3_names(&s3b, "offsite", &id1).is_empty(),
        "{:?}",
        s3b.list_keys("offsite")
    );

    // Unknown store names are bad input.
    let out = run(d, &["copy", "latest", "--to", "nowhere"], &no_key);
    out.code(2);
    assert!(out.stderr.contains("offsite"), "{}", out.stderr);

    eprintln!("step 6 at {:?}", t0.elapsed());
    // 6. Issue 19: each copy's digest checked per store. The link to offsite changes a byte
    //    of every part: the store acknowledges each, and only offsite's own check (the ETag
    //    it answers against the MD5s pgdrill computed) can tell. That copy is dropped, the
    //    backup degraded, the other two copies complete and valid.
    proxy.corrupt("partNumber=");
    let out = run(d, &["--json", "backup"], &env);
    proxy.clear();
    out.code(1);
    let b = out.json();
    tk::schema::assert_valid("backup.schema.json", &b);
    assert_eq!(
        copies(&b),
        [
            ("primary".into(), true),
            ("offsite".into(), false),
            ("local".into(), true)
        ],
        "{b}"
    );
    let checks: Vec<&str> = b["backups"][0]["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .map(|c| c["check"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(checks, ["size", "etag", "reread"], "{b}");
    let why = b["backups"][0]["copies"][1]["error"].as_str().unwrap_or("");
    assert!(
        why.contains("etag check") && why.contains("not what was sent"),
        "{b}"
    );
    let id6 = b["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        s3_names(&s3b, "offsite", &id6).is_empty(),
        "{:?}",
        s3b.list_keys("offsite")
    );
    for store in ["s3://backups/pg", folder_url.as_str()] {
        run(
            d,
            &["verify", &id6, "--store", store, "--name", "app"],
            &env,
        )
        .ok();
    }

    eprintln!("step 7 at {:?}", t0.elapsed());
    // 7. `copy` takes the database's lease (in the primary store) like every other writer:
    //    while another job holds it, nothing is copied (exit 6). Once it is free, `copy --all`
    //    backfills the backups and the drill evidence (result.json last), and releases it.
    let lease = r#"{"owner":"o","host":"prunehost","pid":7,"job":"prune","acquired_at":"2026-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z","ttl_seconds":3600}"#;
    put_s3(&s3a, "/backups/pg/app/lease.json", lease.as_bytes());
    let out = run(d, &["--json", "copy", "--all", "--to", "offsite"], &no_key);
    out.code(6);
    let c = out.json();
    tk::schema::assert_valid("copy.schema.json", &c);
    assert_eq!(c["copied"].as_array().map(Vec::len), Some(0), "{c}");
    let why = c["failures"][0]["error"].as_str().unwrap_or("");
    assert!(why.contains("prunehost"), "{c}");
    assert!(
        s3_names(&s3b, "offsite", &id6).is_empty(),
        "copied under a held lease"
    );
    let (status, body) = s3a
        .request("DELETE", "/backups/pg/app/lease.json", &[])
        .expect("delete");
    assert!(status < 300, "{body}");
    let drill = "pg/app/drills/20261206T030000Z-beef";
    put_s3(&s3a, &format!("/backups/{drill}/drill.log"), b"log");
    put_s3(&s3a, &format!("/backups/{drill}/result.json"), b"{}");
    let out = run(d, &["--json", "copy", "--all", "--to", "offsite"], &no_key);
    out.ok();
    let c = out.json();
    tk::schema::assert_valid("copy.schema.json", &c);
    let copied: Vec<&str> = c["copied"]
        .as_array()
        .expect("copied")
        .iter()
        .filter_map(|b| b["backup_id"].as_str())
        .collect();
    assert!(copied.contains(&id6.as_str()), "{c}");
    assert_eq!(c["drills"][0]["drill_id"], "20261206T030000Z-beef", "{c}");
    assert_eq!(c["drills"][0]["files"], 2, "{c}");
    assert_eq!(
        s3_text_at(&s3b, &format!("/offsite/{drill}/result.json")),
        "{}"
    );
    assert_three_copies(&s3a, &s3b, &folder, &id6);
    let (status, _) = s3a
        .request("GET", "/backups/pg/app/lease.json", &[])
        .expect("get");
    assert_eq!(status, 404, "the copy released its lease");
    // Evidence already there is not copied again.
    let out = run(d, &["--json", "copy", "--all", "--to", "offsite"], &no_key);
    out.ok();
    assert_eq!(out.json()["drills"].as_array().map(Vec::len), Some(0));
}

fn put_s3(s3: &tk::S3Server, path: &str, body: &[u8]) {
    let (status, text) = s3.request("PUT", path, body).expect("put");
    assert!(status < 300, "{path}: {text}");
}

fn s3_text_at(s3: &tk::S3Server, path: &str) -> String {
    let (status, body) = s3.request("GET", path, &[]).expect("get");
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Deletes every object of backup `id` from an S3 bucket.
fn delete_backup(s3: &tk::S3Server, bucket: &str, id: &str) {
    for key in s3.list_keys(bucket) {
        if key.contains(id) {
            let (status, body) = s3
                .request("DELETE", &format!("/{bucket}/{key}"), &[])
                .expect("delete");
            assert!(status < 300, "{key}: {body}");
        }
    }
    assert!(s3_names(s3, bucket, id).is_empty());
}
