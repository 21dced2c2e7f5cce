//! prune, status, leases and the audit row, end to end against real clusters.

mod common;
use common::*;
use pgdrill_testkit as tk;
use std::path::Path;

fn write_config(dir: &Path, store: &Path, extra: &str) {
    let text = format!(
        "[store]\nurl = \"{}\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n{extra}\n",
        store.display()
    );
    std::fs::write(dir.join("pgdrill.toml"), text).expect("config");
}

fn backup(dir: &Path, url: &str) -> String {
    let out = run(dir, &["--json", "backup"], &[("SRC", url)]);
    out.ok();
    out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_by_rule_and_removes_old_incomplete_backups() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(dir.path(), &store, "");
    let ids: Vec<String> = (0..4).map(|_| backup(dir.path(), &src.url)).collect();
    // An incomplete backup folder (no manifest) from long ago, and a fresh one.
    let old = store.join("app/backups/20200101T000000Z-abcd");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("dump.pgc.zst"), b"partial").expect("write");
    let st = std::process::Command::new("touch")
        .args([
            "-d",
            "2020-01-01",
            &old.join("dump.pgc.zst").display().to_string(),
        ])
        .status()
        .expect("touch");
    assert!(st.success());
    let young = store.join("app/backups/20991231T000000Z-abcd");
    std::fs::create_dir_all(&young).expect("mkdir");
    std::fs::write(young.join("dump.pgc.zst"), b"partial").expect("write");

    let env = [
        ("SRC", src.url.as_str()),
        ("PGDRILL_RETENTION_KEEP_LAST", "2"),
        ("PGDRILL_RETENTION_KEEP_MIN", "1"),
    ];
    let dry = run(dir.path(), &["--json", "prune", "--dry-run"], &env);
    dry.ok();
    let plan = &dry.json()["prune"][0];
    assert_eq!(plan["delete"].as_array().expect("delete").len(), 2);
    assert_eq!(
        plan["delete_incomplete"],
        serde_json::json!(["20200101T000000Z-abcd"])
    );
    assert_eq!(
        backup_ids(&store, "app").len(),
        6,
        "a dry run deletes nothing"
    );

    run(dir.path(), &["prune"], &env).ok();
    let mut want = vec![
        ids[2].clone(),
        ids[3].clone(),
        "20991231T000000Z-abcd".to_string(),
    ];
    want.sort();
    assert_eq!(
        backup_ids(&store, "app"),
        want,
        "deleted backups leave no folder behind"
    );
    // Newest first by snapshot time, even for backups started within the same second.
    let listed = run(dir.path(), &["--json", "list"], &env);
    let listed: Vec<String> = listed.json()["backups"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["backup_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, vec![ids[3].clone(), ids[2].clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_exit_codes_follow_each_slo() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(dir.path(), &store, "");
    let env = [("SRC", src.url.as_str())];
    // Nothing yet: freshness and drill SLOs violated.
    let s = run(dir.path(), &["--json", "status"], &env);
    s.code(1);
    let violated = |o: &Out| -> Vec<String> {
        o.json()["databases"][0]["slos"]
            .as_array()
            .expect("slos")
            .iter()
            .filter(|x| x["ok"] == false)
            .map(|x| x["name"].as_str().expect("n").to_string())
            .collect()
    };
    assert_eq!(violated(&s), vec!["backup_freshness", "drill_freshness"]);

    backup(dir.path(), &src.url);
    run(dir.path(), &["drill"], &env).ok();
    let prom = dir.path().join("pgdrill.prom");
    let s = run(
        dir.path(),
        &[
            "--json",
            "status",
            "--prometheus",
            prom.to_str().expect("p"),
        ],
        &env,
    );
    s.code(0);
    let text = std::fs::read_to_string(&prom).expect("prom");
    assert!(
        text.contains("pgdrill_slo_ok{database=\"app\",slo=\"backup_freshness\"} 1"),
        "{text}"
    );
    assert!(text.contains("pgdrill_drill_rto_seconds{database=\"app\"}"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').expect("sample");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad sample {line}"));
    }

    // Freshness threshold of 1 minute, seen two minutes later: violated.
    let s = run(
        dir.path(),
        &["--json", "status"],
        &[
            ("SRC", src.url.as_str()),
            ("PGDRILL_POLICY_FRESHNESS_ALERT_MINUTES", "1"),
            ("PGDRILL_TEST_CLOCK_OFFSET_SECS", "120"),
        ],
    );
    s.code(1);
    assert_eq!(violated(&s), vec!["backup_freshness"]);

    // A much smaller dump: size anomaly.
    let c = tk::connect(&src.url).await;
    c.batch_execute("truncate app.customers cascade")
        .await
        .expect("truncate");
    backup(dir.path(), &src.url);
    let s = run(dir.path(), &["--json", "status"], &env);
    s.code(1);
    assert!(
        violated(&s).contains(&"dump_size".to_string()),
        "{}",
        s.stdout
    );

    // A failed backup: the last run is reported until a backup succeeds again.
    let bad = format!(
        "postgresql://postgres:{}@127.0.0.1:1/app",
        src.cluster.password()
    );
    run(dir.path(), &["backup"], &[("SRC", bad.as_str())]).code(1);
    let s = run(dir.path(), &["--json", "status"], &env);
    assert!(violated(&s).contains(&"last_run".to_string()));
    assert!(!s.stdout.contains(src.cluster.password()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_concurrent_backup_is_locked_out_and_writes_nothing() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(dir.path(), &store, "");
    // A pg_dump that waits before dumping keeps the first backup (and its lease) running.
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(&shim).expect("shim");
    let real = tk::pg_bin("pg_dump", src.cluster.version().major);
    std::fs::write(shim.join("pg_dump"), format!("#!/bin/sh\ncase \"$1\" in --version) exec '{}' --version;; esac\nsleep 3\nexec '{}' \"$@\"\n", real.display(), real.display())).expect("write");
    std::process::Command::new("chmod")
        .args(["+x", &shim.join("pg_dump").display().to_string()])
        .status()
        .expect("chmod");
    let mut first = cmd(dir.path());
    first
        .args(["--json", "backup"])
        .env("SRC", &src.url)
        .env("PGDRILL_PG_BIN", &shim);
    first
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = first.spawn().expect("spawn");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let second = run(dir.path(), &["backup"], &[("SRC", src.url.as_str())]);
    second.code(6);
    assert!(second.stderr.contains("locked"), "{}", second.stderr);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        backup_ids(&store, "app").len(),
        1,
        "only the first backup exists"
    );
    assert!(
        !store.join("app/lease.json").exists(),
        "the lease is released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_lease_is_taken_over_and_the_audit_row_is_written() {
    let src = source(None).await;
    let c = tk::connect(&src.url).await;
    c.batch_execute(
        "create table \"AuditLog\" (id bigserial primary key, \"entityType\" text not null, \"entityId\" text not null, \
         action text not null, metadata jsonb, \"createdAt\" timestamptz not null default now())",
    )
    .await
    .expect("audit table");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(
        dir.path(),
        &store,
        "[database.audit]\ntable = \"AuditLog\"\n",
    );
    std::fs::create_dir_all(store.join("app")).expect("mkdir");
    std::fs::write(
        store.join("app/lease.json"),
        r#"{"owner":"x","host":"deadhost","pid":4242,"job":"backup","acquired_at":"2020-01-01T00:00:00Z","expires_at":"2020-01-01T00:10:00Z"}"#,
    )
    .expect("stale lease");
    // Stale by the store's clock: last written long ago.
    let st = std::process::Command::new("touch")
        .args([
            "-d",
            "2020-01-01",
            &store.join("app/lease.json").display().to_string(),
        ])
        .status()
        .expect("touch");
    assert!(st.success());
    let out = run(
        dir.path(),
        &["--json", "backup"],
        &[("SRC", src.url.as_str())],
    );
    out.ok();
    assert!(
        out.stderr.contains("took over a stale lease") && out.stderr.contains("deadhost"),
        "{}",
        out.stderr
    );
    let id = out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let row = c
        .query_one(
            "select \"entityType\", \"entityId\", metadata->>'backup_id' from \"AuditLog\"",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "DatabaseBackup");
    assert_eq!(row.get::<_, String>(1), id);
    assert_eq!(row.get::<_, String>(2), id);

    // A broken audit table is reported but does not fail the backup.
    c.batch_execute("drop table \"AuditLog\"")
        .await
        .expect("drop");
    let out = run(dir.path(), &["backup"], &[("SRC", src.url.as_str())]);
    out.ok();
    assert!(out.stderr.contains("audit row"), "{}", out.stderr);
}

/// A local HTTP receiver: answers 200 to every request and records "METHOD PATH\nBODY".
fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::thread::JoinHandle<()>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    listener.set_nonblocking(false).expect("blocking");
    let handle = std::thread::spawn(move || {
        // Bounded: at most 40 requests, and the listener dies with the test process.
        for stream in listener.incoming().take(40) {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let first = request
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            log.lock()
                .expect("lock")
                .push(format!("{first}\n{}", String::from_utf8_lossy(&body)));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen, handle)
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_failure_and_recovery_reach_the_webhook_and_pings_without_secrets() {
    let src = source(None).await;
    let (url, seen, _h) = receiver();
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(
        dir.path(),
        &store,
        "[alerts]\nwebhook_url_env = \"HOOK\"\nping_url_env = \"PING\"\n",
    );
    let hook = format!("{url}/hook/CANARY_HOOK_TOKEN");
    let ping = format!("{url}/ping/CANARY_PING_ID");
    let bad = format!(
        "postgresql://postgres:{}@127.0.0.1:1/app",
        src.cluster.password()
    );
    run(
        dir.path(),
        &["backup"],
        &[
            ("SRC", bad.as_str()),
            ("HOOK", hook.as_str()),
            ("PING", ping.as_str()),
        ],
    )
    .code(1);
    run(
        dir.path(),
        &["backup"],
        &[
            ("SRC", src.url.as_str()),
            ("HOOK", hook.as_str()),
            ("PING", ping.as_str()),
        ],
    )
    .ok();
    let seen = seen.lock().expect("lock").clone();
    let paths: Vec<&str> = seen
        .iter()
        .map(|s| s.lines().next().unwrap_or(""))
        .collect();
    assert!(
        paths.contains(&"GET /ping/CANARY_PING_ID/start")
            || paths.contains(&"POST /ping/CANARY_PING_ID/start"),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("/ping/CANARY_PING_ID/fail")),
        "{paths:?}"
    );
    let hooks: Vec<&String> = seen
        .iter()
        .filter(|s| s.starts_with("POST /hook/"))
        .collect();
    assert_eq!(hooks.len(), 2, "one failure and one recovery: {seen:?}");
    assert!(hooks[0].contains("backup_failed"), "{}", hooks[0]);
    assert!(hooks[1].contains("recovered"), "{}", hooks[1]);
    for s in &seen {
        let body = s.split_once('\n').map(|x| x.1).unwrap_or("");
        assert!(
            !body.contains(src.cluster.password()),
            "the database password leaked into an alert"
        );
        assert!(
            !body.contains("CANARY"),
            "a webhook URL token leaked into an alert body"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_a_good_setup_and_names_what_is_broken() {
    let src = source(None).await;
    let s3 = tk::S3Server::start();
    s3.create_bucket("good");
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("k.key");
    let out = run(
        dir.path(),
        &["--json", "init", "--generate-key", "--path", "gen.toml"],
        &[],
    );
    out.ok();
    std::fs::rename(dir.path().join("pgdrill-age.key"), &key).expect("mv key");
    let recipient = out.json()["recipient"].as_str().expect("r").to_string();
    let text = format!(
        "[store]\nurl = \"s3://good/pg\"\n[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"k.key\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n"
    );
    std::fs::write(dir.path().join("pgdrill.toml"), text).expect("config");
    let owned = s3.env();
    let mut env = env_refs(&owned);
    env.push(("SRC", src.url.as_str()));
    let good = run(dir.path(), &["--json", "doctor"], &env);
    good.ok();
    let names: Vec<String> = good.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("n").to_string())
        .collect();
    for want in [
        "store: multipart",
        "store: conditional put",
        "store: ranged get",
        "identity",
        "app: privileges",
        "app: pg_dump",
        "app: drill target",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing check {want}: {names:?}"
        );
    }
    assert!(!good.stdout.contains(src.cluster.password()));
    // Leases rely on compare-and-swap: doctor proves If-Match on the real S3 server.
    let cond = doctor_check_named(
        &good.json(),
        "store: conditional put",
        "conditional put check",
    );
    assert_eq!(cond["ok"], true, "{cond}");
    assert!(
        cond["detail"]
            .as_str()
            .expect("detail")
            .contains("If-Match"),
        "{cond}"
    );

    // A missing bucket and a key that does not match the recipients.
    let broken = "[store]\nurl = \"s3://missing-bucket/pg\"\n[encryption]\nrecipients = [\"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\"]\nidentity_file = \"k.key\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n";
    std::fs::write(dir.path().join("pgdrill.toml"), broken).expect("config");
    let bad = run(dir.path(), &["--json", "doctor"], &env);
    bad.code(1);
    let failed: Vec<String> = bad.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().expect("n").to_string())
        .collect();
    assert!(failed.contains(&"store: put".to_string()), "{failed:?}");
    assert!(failed.contains(&"identity".to_string()), "{failed:?}");
    assert!(
        !bad.stdout.contains(&s3.secret_key().to_string()),
        "the S3 secret leaked"
    );
}

/// Starts a backup whose `pg_dumpall` (the globals, dumped after the dump and its index are
/// stored and before the manifest) waits `secs` seconds, and returns once the dump object is
/// in the store: the backup is then running, holds its lease, and its folder has no manifest.
// The child is handed to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn backup_paused_before_manifest(
    dir: &Path,
    store: &Path,
    src: &Source,
    secs: u32,
) -> (std::process::Child, std::path::PathBuf) {
    let shim = dir.join("shim");
    std::fs::create_dir_all(&shim).expect("shim");
    let major = src.cluster.version().major;
    for (tool, pause) in [("pg_dump", 0), ("pg_dumpall", secs)] {
        let real = tk::pg_bin(tool, major);
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec '{r}' --version;; esac\nsleep {pause}\nexec '{r}' \"$@\"\n",
            r = real.display()
        );
        std::fs::write(shim.join(tool), script).expect("write shim");
        std::process::Command::new("chmod")
            .args(["+x", &shim.join(tool).display().to_string()])
            .status()
            .expect("chmod");
    }
    let mut c = cmd(dir);
    c.args(["--json", "backup"])
        .env("SRC", &src.url)
        .env("PGDRILL_PG_BIN", &shim)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn backup");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ids = backup_ids(store, "app");
        if let Some(id) = ids.last() {
            let folder = store.join("app/backups").join(id);
            if folder.join("dump.pgc.zst").exists() {
                return (child, folder);
            }
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "the backup never stored its dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Issue 24.1: a host whose clock was 2 h ahead judged a running backup's lease expired,
/// took it over, and its prune deleted the backup's dump as "incomplete past the grace
/// period"; the backup then published a manifest with no dump behind it.
#[tokio::test(flavor = "multi_thread")]
async fn skewed_clock_cannot_take_over_live_lease() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(
        dir.path(),
        &store,
        "globals = true\n[retention]\nkeep_last = 5\nincomplete_grace_hours = 1\n",
    );
    let (child, folder) = backup_paused_before_manifest(dir.path(), &store, &src, 8);
    let prune = run(
        dir.path(),
        &["prune"],
        &[
            ("SRC", src.url.as_str()),
            ("PGDRILL_TEST_CLOCK_OFFSET_SECS", "7200"),
        ],
    );
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    prune.code(6);
    assert!(
        prune.stderr.contains("clock"),
        "the skew is named: {}",
        prune.stderr
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        folder.join("dump.pgc.zst").exists(),
        "the running backup's dump was deleted"
    );
    assert!(folder.join("manifest.json").exists(), "{stderr}");
    run(
        dir.path(),
        &["verify", "latest"],
        &[("SRC", src.url.as_str())],
    )
    .ok();
    // doctor names the skew.
    let doctor = run(
        dir.path(),
        &["--json", "doctor"],
        &[
            ("SRC", src.url.as_str()),
            ("PGDRILL_TEST_CLOCK_OFFSET_SECS", "7200"),
        ],
    );
    doctor.code(1);
    let clock = doctor_check_named(&doctor.json(), "store: clock", "a clock check");
    assert_eq!(clock["ok"], false, "{clock}");
    assert!(
        clock["detail"]
            .as_str()
            .unwrap_or("")
            .contains("2 h 0 min ahead"),
        "{clock}"
    );
}

/// Issue 24.1: a backup whose lease was taken over while it ran still wrote its manifest.
#[tokio::test(flavor = "multi_thread")]
async fn backup_that_lost_its_lease_publishes_no_manifest() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(dir.path(), &store, "globals = true\n");
    let (child, folder) = backup_paused_before_manifest(dir.path(), &store, &src, 4);
    // Another host takes the lease over (as a skewed host running an older pgdrill did).
    std::fs::write(
        store.join("app/lease.json"),
        r#"{"owner":"other","host":"otherhost","pid":77,"job":"prune","acquired_at":"2020-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}"#,
    )
    .expect("take the lease");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lease") && stderr.contains("otherhost"),
        "{stderr}"
    );
    assert!(
        !folder.join("manifest.json").exists(),
        "a backup without its lease published a manifest"
    );
    assert!(
        store.join("app/lease.json").exists(),
        "the other holder's lease stays"
    );
}

/// Issue 24.2: a store that answered 200 without storing made backups that exited 0 but
/// never listed (manifest lost) or failed verify (index or SHA256SUMS lost).
#[tokio::test(flavor = "multi_thread")]
async fn dropped_put_fails_backup_before_manifest() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(dir.path(), &store, "");
    for lost in [
        "dump.pgc.zst",
        "dump.index.json.zst",
        "SHA256SUMS",
        "manifest.json",
    ] {
        let out = run(
            dir.path(),
            &["backup"],
            &[("SRC", src.url.as_str()), ("PGDRILL_TEST_DROP_PUT", lost)],
        );
        out.code(1);
        assert!(
            out.stderr.contains(lost) && out.stderr.contains("acknowledged"),
            "{lost}: {}",
            out.stderr
        );
        assert!(
            !files_below(&store)
                .iter()
                .any(|f| f.ends_with("manifest.json")),
            "{lost}: a manifest was left: {:?}",
            files_below(&store)
        );
        let listed = run(
            dir.path(),
            &["--json", "list"],
            &[("SRC", src.url.as_str())],
        );
        listed.ok();
        assert_eq!(listed.json()["backups"], serde_json::json!([]), "{lost}");
    }
    backup(dir.path(), &src.url);
}

/// Issue 16.5: a prune during a restore deleted the backup being read.
#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_backup_being_restored() {
    let src = source(None).await;
    let target = empty_db(&src.cluster, "target").await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(
        dir.path(),
        &store,
        "[retention]\nkeep_last = 1\nkeep_min = 1\n",
    );
    let old = backup(dir.path(), &src.url);
    backup(dir.path(), &src.url);
    // A pg_restore that waits before restoring keeps the restore (and its read) running.
    let real = tk::pg_bin("pg_restore", 0);
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(&shim).expect("shim");
    for e in std::fs::read_dir(real.parent().expect("bin dir"))
        .expect("ls")
        .flatten()
    {
        if e.file_name() != "pg_restore" {
            std::os::unix::fs::symlink(e.path(), shim.join(e.file_name())).expect("symlink");
        }
    }
    std::fs::write(
        shim.join("pg_restore"),
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" --list \"*|*\" --version \"*) ;; *) sleep 5;; esac\nexec '{r}' \"$@\"\n",
            r = real.display()
        ),
    )
    .expect("write shim");
    std::process::Command::new("chmod")
        .args(["+x", &shim.join("pg_restore").display().to_string()])
        .status()
        .expect("chmod");
    let mut restore = cmd(dir.path());
    restore
        .args(["restore", &old, "--target", &target])
        .env("SRC", &src.url)
        .env("PGDRILL_PG_BIN", &shim)
        // Its own password file folder: nothing else on the machine sweeps it meanwhile.
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let restore = restore.spawn().expect("spawn restore");
    let marks = store.join("app/readers").join(&old);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while files_below(&marks).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let env = [("SRC", src.url.as_str())];
    let prune = run(dir.path(), &["--json", "prune"], &env);
    let out = restore.wait_with_output().expect("wait");
    prune.ok();
    assert_eq!(
        prune.json()["prune"][0]["delete"],
        serde_json::json!([]),
        "{}",
        prune.stdout
    );
    assert!(prune.stdout.contains("being read"), "{}", prune.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        backup_ids(&store, "app").len(),
        2,
        "the restored backup stays"
    );
    assert!(files_below(&marks).is_empty(), "the mark is released");
    // With the restore over, the next prune applies the rules.
    let prune = run(dir.path(), &["--json", "prune"], &env);
    prune.ok();
    assert_eq!(prune.json()["prune"][0]["delete"], serde_json::json!([old]));
}

/// Issue 16.8: a killed backup's staged part file (`dump.pgc.zst.age#1`, 16 MiB) survived
/// `prune` whatever the grace period.
#[test]
fn prune_removes_stale_part_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(
        dir.path(),
        &store,
        "[retention]\nkeep_last = 2\nincomplete_grace_hours = 1\n",
    );
    let old = store.join("app/backups/20200101T000000Z-abcd/dump.pgc.zst.age#1");
    let fresh = store.join("app/backups/20991231T000000Z-abcd/dump.pgc.zst#7");
    for p in [&old, &fresh] {
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        std::fs::write(p, vec![0u8; 4096]).expect("write part");
    }
    let st = std::process::Command::new("touch")
        .args(["-d", "2020-01-01", &old.display().to_string()])
        .status()
        .expect("touch");
    assert!(st.success());
    let doctor_check = || {
        let d = run(dir.path(), &["--json", "doctor"], &[]);
        doctor_check_named(&d.json(), "store: unfinished uploads", "the check")
    };
    let before = doctor_check();
    assert_eq!(before["ok"], false, "{before}");
    assert!(
        before["detail"]
            .as_str()
            .unwrap_or("")
            .contains("dump.pgc.zst.age#1"),
        "{before}"
    );

    let dry = run(dir.path(), &["--json", "prune", "--dry-run"], &[]);
    dry.ok();
    assert!(old.exists(), "a dry run deletes nothing");
    let out = run(dir.path(), &["--json", "prune"], &[]);
    out.ok();
    assert_eq!(
        out.json()["prune"][0]["stale_parts"],
        serde_json::json!(["app/backups/20200101T000000Z-abcd/dump.pgc.zst.age#1"]),
        "{}",
        out.stdout
    );
    assert!(!old.exists(), "the stale part file survived prune");
    assert!(!old.parent().expect("dir").exists(), "its folder is gone");
    assert!(fresh.exists(), "a part inside the grace period stays");
    assert_eq!(doctor_check()["ok"], true);
}

/// Issue 16.8 on S3: the multipart upload a killed backup left open (with its parts, which
/// cost storage) survived `prune` forever; `doctor` did not see it.
#[test]
fn prune_aborts_stale_s3_multipart_uploads() {
    let s3 = tk::S3Server::start();
    s3.create_bucket("uploads-left-open");
    let dir = tempfile::tempdir().expect("tmp");
    let config = |grace: u64| {
        let text = format!(
            "[store]\nurl = \"s3://uploads-left-open/pg\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n\
             [retention]\nkeep_last = 2\nincomplete_grace_hours = {grace}\n"
        );
        std::fs::write(dir.path().join("pgdrill.toml"), text).expect("config");
    };
    let owned = s3.env();
    let env = env_refs(&owned);
    // As a backup killed after its first part leaves it: started, one part uploaded.
    let killed = "app/backups/20200101T000000Z-abcd/dump.pgc.zst.age";
    open_multipart_upload(&s3, "uploads-left-open", &format!("pg/{killed}"));
    // Another store's (a neighbouring prefix): never this prune's business.
    let neighbour = "pg-other/app/backups/20200101T000000Z-abcd/dump.pgc.zst";
    open_multipart_upload(&s3, "uploads-left-open", neighbour);
    let both = vec![neighbour.to_string(), format!("pg/{killed}")];
    let doctor_check = || {
        let d = run(dir.path(), &["--json", "doctor"], &env);
        doctor_check_named(&d.json(), "store: unfinished uploads", "the check")
    };

    // Inside the grace period: kept (it may be a backup still running). moto dates every
    // upload 2010-11-10, so "inside" takes a grace period reaching back further than that.
    config(20 * 365 * 24);
    let out = run(dir.path(), &["--json", "prune"], &env);
    out.ok();
    assert_eq!(out.json()["prune"][0]["stale_parts"], serde_json::json!([]));
    assert_eq!(
        open_uploads(&s3, "uploads-left-open"),
        both,
        "an upload inside the grace period was aborted"
    );
    let fresh = doctor_check();
    assert_eq!(fresh["ok"], true, "{fresh}");

    // Past it: reported, left alone by a dry run, aborted by prune.
    config(24);
    let stale = doctor_check();
    assert_eq!(stale["ok"], false, "{stale}");
    assert!(
        stale["detail"].as_str().unwrap_or("").contains(killed),
        "{stale}"
    );
    let dry = run(dir.path(), &["prune", "--dry-run"], &env);
    dry.ok();
    assert!(
        dry.stdout
            .contains("app: would abort 1 multipart uploads left open (killed backups)"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        open_uploads(&s3, "uploads-left-open"),
        both,
        "a dry run aborted an upload"
    );
    let out = run(dir.path(), &["--json", "prune"], &env);
    out.ok();
    assert_eq!(
        out.json()["prune"][0]["stale_parts"],
        serde_json::json!([killed]),
        "{}",
        out.stdout
    );
    assert_eq!(
        open_uploads(&s3, "uploads-left-open"),
        [neighbour],
        "the stale upload survived prune"
    );
    let after = doctor_check();
    assert_eq!(after["ok"], true, "{after}");
}

/// Starts a multipart upload of `key` and uploads its first part, as moto's own client would.
fn open_multipart_upload(s3: &tk::S3Server, bucket: &str, key: &str) {
    let (status, body) = s3
        .request("POST", &format!("/{bucket}/{key}?uploads"), &[])
        .expect("create multipart upload");
    assert_eq!(status, 200, "{body}");
    let id = body
        .split("<UploadId>")
        .nth(1)
        .and_then(|b| b.split("</UploadId>").next())
        .expect("an upload id");
    let (status, body) = s3
        .request(
            "PUT",
            &format!("/{bucket}/{key}?partNumber=1&uploadId={id}"),
            &[7u8; 64 * 1024],
        )
        .expect("upload part");
    assert_eq!(status, 200, "{body}");
}

/// The keys of the multipart uploads open in `bucket`, sorted, as the server lists them.
fn open_uploads(s3: &tk::S3Server, bucket: &str) -> Vec<String> {
    let (status, body) = s3
        .request("GET", &format!("/{bucket}?uploads"), &[])
        .expect("list multipart uploads");
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<String> = body
        .split("<Upload>")
        .skip(1)
        .filter_map(|u| u.split("<Key>").nth(1)?.split("</Key>").next())
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// Issue 24.6: `prune` ran silently when manifests were unreadable.
#[test]
fn prune_warns_and_keeps_backups_with_unreadable_manifests() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    write_config(
        dir.path(),
        &store,
        "[retention]\nkeep_last = 1\nkeep_min = 1\nincomplete_grace_hours = 0\n",
    );
    let folder = store.join("app/backups/20200101T000000Z-abcd");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(
        folder.join("manifest.json"),
        b"{\"format_version\": 1, trunc",
    )
    .expect("write");
    std::fs::write(folder.join("dump.pgc.zst"), b"data").expect("write");
    let out = run(dir.path(), &["--json", "prune"], &[]);
    out.ok();
    assert!(
        out.stderr.contains("unreadable") && out.stderr.contains("20200101T000000Z-abcd"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.json()["prune"][0]["keep"][0]["backup_id"],
        "20200101T000000Z-abcd",
        "{}",
        out.stdout
    );
    assert!(folder.join("dump.pgc.zst").exists(), "the backup was kept");
}

/// The check `name` of a `doctor --json` report; `missing` is the failure message.
fn doctor_check_named(report: &serde_json::Value, name: &str, missing: &str) -> serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .expect(missing)
}
