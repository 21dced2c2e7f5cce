//! Several stores with the PRIMARY down (issue 19): a backup still completes, degraded.
//! (a) The primary (a moto S3 server behind a fault proxy) is down when the backup starts:
//! the lease is taken in the next store, the backup lands complete and verifiable in the
//! other two (an S3 server and a folder) and restores the source; exit 1, `backup_degraded`
//! naming the primary, nothing in the primary. (d) The primary back: `status` names it as
//! missing the backup, `copy --to primary` backfills it, and the `backup_copies` SLO is met
//! again. (b) The primary goes down in the middle of the dump's upload (its lease is there):
//! the other copies complete all the same, the lease vouched for by its recent renewal.
//! (c) Every store down: exit 1 with the primary's error, nothing written anywhere.
//! One source cluster for all of it.

mod common;
mod fault_proxy;
use common::*;
use fault_proxy::FaultProxy;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(3600);

/// The keys of backup `id` of `app` in `bucket` (under prefix `pg/`).
fn keys_of(s3: &tk::S3Server, bucket: &str, id: &str) -> Vec<String> {
    s3.list_keys(bucket)
        .into_iter()
        .filter(|k| k.starts_with(&format!("pg/app/backups/{id}/")))
        .collect()
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

fn degraded_primary() -> Vec<(String, bool)> {
    vec![
        ("primary".into(), false),
        ("offsite".into(), true),
        ("local".into(), true),
    ]
}

fn backup_id(b: &Value) -> String {
    b["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// The `backup_copies` SLO of `app` in `status --json`.
fn copies_slo(d: &Path, env: &[(&str, &str)]) -> Value {
    let out = run(d, &["--json", "status"], env);
    let v = out.json();
    v["databases"][0]["slos"]
        .as_array()
        .expect("slos")
        .iter()
        .find(|s| s["name"] == "backup_copies")
        .cloned()
        .unwrap_or_else(|| panic!("no backup_copies SLO: {v}"))
}

/// `verify ID` in each of `stores`.
fn verify_in(d: &Path, id: &str, stores: &[&str], env: &[(&str, &str)]) {
    for store in stores {
        run(d, &["verify", id, "--from-store", store], env).ok();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_completes_degraded_when_the_primary_store_is_down() {
    let t0 = Instant::now();
    let src = source(None).await;
    let s3a = tk::S3Server::start();
    s3a.create_bucket("backups");
    let s3b = tk::S3Server::start();
    s3b.create_bucket("offsite");
    let proxy = FaultProxy::start(&s3a.endpoint());
    let (hook, seen) = receiver();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let folder = d.join("local");
    std::fs::write(
        d.join("pgdrill.toml"),
        format!(
            "[encryption]\npassphrase_env = \"PASS\"\n\
             [alerts]\nwebhook_url_env = \"HOOK\"\ndedup_minutes = 0\n\
             [[store]]\nname = \"primary\"\nurl = \"s3://backups/pg\"\nendpoint = \"{}\"\n\
             timeout_seconds = 2\nretry_seconds = 1\n\
             [[store]]\nname = \"offsite\"\nurl = \"s3://offsite/pg\"\nendpoint = \"{}\"\n\
             [[store]]\nname = \"local\"\nurl = \"{}\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            proxy.endpoint,
            s3b.endpoint(),
            folder.display()
        ),
    )
    .expect("config");
    let aws = s3a.env();
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("SRC", src.url.as_str()),
        ("PASS", "primary-down-passphrase"),
        ("HOOK", hook.as_str()),
    ]);
    let want = tk::fingerprint(&src.url, &pg_dump()).await;

    eprintln!("(a) at {:?}", t0.elapsed());
    // (a) The primary is down from the start: the lease goes to offsite, the backup to
    //     offsite and local; degraded (exit 1), the primary named, nothing in it.
    proxy.down_for(LONG);
    let started = Instant::now();
    let out = run(d, &["--json", "backup"], &env);
    out.code(1);
    let took = started.elapsed();
    let b = out.json();
    tk::schema::assert_valid("backup.schema.json", &b);
    assert_eq!(copies(&b), degraded_primary(), "{b}");
    assert!(
        out.stderr.contains("store primary unreachable")
            && out.stderr.contains("lease taken in offsite"),
        "{}",
        out.stderr
    );
    let why = b["backups"][0]["copies"][0]["error"].as_str().unwrap_or("");
    assert!(why.contains("could not be reached"), "{b}");
    assert!(
        took < Duration::from_secs(45),
        "the dead primary held the backup up for {took:?}"
    );
    let id_a = backup_id(&b);
    assert!(
        s3a.list_keys("backups").is_empty(),
        "{:?}",
        s3a.list_keys("backups")
    );
    assert!(
        !s3b.list_keys("offsite")
            .iter()
            .any(|k| k.ends_with("lease.json")),
        "the lease in offsite was released: {:?}",
        s3b.list_keys("offsite")
    );
    let alerts = seen.lock().expect("lock").clone();
    let degraded: Vec<&String> = alerts
        .iter()
        .filter(|a| a.contains("\"backup_degraded\""))
        .collect();
    assert_eq!(degraded.len(), 1, "{alerts:?}");
    assert!(
        degraded[0].contains("primary") && degraded[0].contains(&id_a),
        "{}",
        degraded[0]
    );
    verify_in(d, &id_a, &["offsite", "local"], &env);
    // Restored from the store it falls back to: the same data as the source.
    let target = empty_db(&src.cluster, "from_degraded").await;
    let out = run(d, &["restore", "latest", "--target", &target], &env);
    out.ok();
    assert!(out.stderr.contains("store offsite"), "{}", out.stderr);
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);
    // `list` answers from the other stores.
    let out = run(d, &["--json", "list"], &env);
    assert!(out.stdout.contains(&id_a), "{}", out.stdout);

    eprintln!("(d) at {:?}", t0.elapsed());
    // (d) The primary back: status names it as lacking the backup; `copy` backfills it.
    proxy.down_for(Duration::ZERO);
    let slo = copies_slo(d, &env);
    assert_eq!(slo["ok"], false, "{slo}");
    let detail = slo["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("primary") && detail.contains(&id_a),
        "{slo}"
    );
    let out = run(d, &["--json", "copy", &id_a, "--to", "primary"], &env);
    out.ok();
    assert_eq!(out.json()["from"], "offsite", "{}", out.stdout);
    assert!(
        keys_of(&s3a, "backups", &id_a)
            .iter()
            .any(|k| k.ends_with("/manifest.json")),
        "{:?}",
        s3a.list_keys("backups")
    );
    let slo = copies_slo(d, &env);
    assert_eq!(slo["ok"], true, "{slo}");
    run(d, &["verify", &id_a, "--from-store", "primary"], &env).ok();

    eprintln!("(b) at {:?}", t0.elapsed());
    // (b) The primary (holding the lease) goes down once the dump's upload is under way:
    //     its copy fails, the others complete and get their manifests.
    proxy.stall("partNumber=");
    let mut c = cmd(d);
    c.args(["--json", "backup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in &env {
        c.env(k, v);
    }
    let child = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.requests().iter().any(|r| r.starts_with("STALLED")) {
        assert!(Instant::now() < deadline, "{:?}", proxy.requests());
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.down_for(LONG);
    let o = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let b: Value = serde_json::from_slice(&o.stdout).expect("json");
    tk::schema::assert_valid("backup.schema.json", &b);
    assert_eq!(copies(&b), degraded_primary(), "{b}\n{stderr}");
    assert!(stderr.contains("still this job's"), "{stderr}");
    let id_b = backup_id(&b);
    verify_in(d, &id_b, &["offsite"], &env);
    proxy.clear();
    proxy.down_for(Duration::ZERO);
    assert!(
        !keys_of(&s3a, "backups", &id_b)
            .iter()
            .any(|k| k.ends_with("/manifest.json")),
        "{:?}",
        s3a.list_keys("backups")
    );
    let degraded = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|a| a.contains("\"backup_degraded\"") && a.contains(&id_b))
        .count();
    assert_eq!(degraded, 1);

    eprintln!("(c) at {:?}", t0.elapsed());
    // (c) Every store down: the backup fails (exit 1) with the primary's error and writes
    //     nothing anywhere.
    let offsite_proxy = FaultProxy::start(&s3b.endpoint());
    offsite_proxy.down_for(LONG);
    proxy.down_for(LONG);
    let d2 = d.join("all-down");
    std::fs::create_dir(&d2).expect("dir");
    std::fs::write(
        d2.join("pgdrill.toml"),
        format!(
            "[encryption]\npassphrase_env = \"PASS\"\n\
             [[store]]\nname = \"primary\"\nurl = \"s3://backups/pg\"\nendpoint = \"{}\"\n\
             timeout_seconds = 2\nretry_seconds = 1\n\
             [[store]]\nname = \"offsite\"\nurl = \"s3://offsite/pg\"\nendpoint = \"{}\"\n\
             timeout_seconds = 2\nretry_seconds = 1\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            proxy.endpoint, offsite_proxy.endpoint
        ),
    )
    .expect("config");
    let (before_a, before_b) = (s3a.list_keys("backups"), s3b.list_keys("offsite"));
    let out = run(&d2, &["--json", "backup"], &env);
    out.code(1);
    let v = out.json();
    let error = v["error"]["message"].as_str().unwrap_or("");
    assert!(error.contains("app/lease.json"), "{v}");
    assert!(!out.stderr.contains("lease taken"), "{}", out.stderr);
    assert!(
        offsite_proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("DOWN") && r.contains("lease.json")),
        "the lease was tried in offsite too: {:?}",
        offsite_proxy.requests()
    );
    proxy.down_for(Duration::ZERO);
    assert_eq!(s3a.list_keys("backups"), before_a);
    assert_eq!(s3b.list_keys("offsite"), before_b);
    eprintln!("done at {:?}", t0.elapsed());
}
