//! Secrets never leak (issue 2, points 6–8; DESIGN.md §8): the source password, the S3 secret
//! key and the encryption passphrase are canaries that must not appear in pgdrill's stdout or
//! stderr (`--json` or not, `-v`), in any stored object (manifest, SHA256SUMS, dump), in an
//! exported file, in the argv of pg_dump, nor in any error message. The password reaches
//! pg_dump only through a 0600 PGPASSFILE that is gone after the run.

mod common;
use common::*;
use pgdrill_testkit as tk;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Every canary starts with this; no legitimate output contains it.
const CANARY: &str = "CANARY";

fn canary(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{CANARY}_{kind}_{:x}{nanos:x}", std::process::id())
}

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    if let Some(i) = text.find(CANARY) {
        let start = i.saturating_sub(120);
        let end = (i + 80).min(text.len());
        panic!(
            "a secret leaked into {what}: …{}…",
            String::from_utf8_lossy(&text.as_bytes()[start..end])
        );
    }
}

#[track_caller]
fn assert_clean_bytes(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "a secret leaked into {what}"
    );
}

/// Runs pgdrill and checks that neither stream carries a canary.
#[track_caller]
fn run_clean(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = run(dir, args, env);
    let what = format!("the output of `pgdrill {}`", args.join(" "));
    assert_clean(&format!("stdout of {what}"), &out.stdout);
    assert_clean(&format!("stderr of {what}"), &out.stderr);
    out
}

/// A shim bin dir whose `pg_dump` records, per call, its argv, its `/proc` cmdline, its
/// parent's cmdline, the names (not values) of its `PG*` variables, and its PGPASSFILE's
/// path and mode; then it execs the real pg_dump.
fn recording_shim(dir: &Path, major: u32) -> (PathBuf, PathBuf) {
    let real = tk::pg_bin("pg_dump", major);
    let shim = dir.join("shim");
    std::fs::create_dir_all(&shim).expect("mkdir shim");
    let log = dir.join("pg_dump-calls.log");
    let script = format!(
        r#"#!/bin/bash
REAL='{real}'
LOG='{log}'
case "$1" in --version|-V) exec "$REAL" "$@" ;; esac
{{
  echo "call"
  echo "argv: $*"
  echo "cmdline: $(tr '\0' ' ' < /proc/$$/cmdline)"
  echo "parent-cmdline: $(tr '\0' ' ' < /proc/$PPID/cmdline)"
  echo "pg-vars: $(env | grep '^PG' | cut -d= -f1 | sort | tr '\n' ' ')"
  echo "env-names: $(env | cut -d= -f1 | sort | tr '\n' ' ')"
  echo "passfile: $PGPASSFILE"
  echo "passfile-mode: $(stat -c %a "$PGPASSFILE" 2>/dev/null)"
}} >> "$LOG"
exec "$REAL" "$@"
"#,
        real = real.display(),
        log = log.display()
    );
    let p = shim.join("pg_dump");
    std::fs::write(&p, script).expect("write shim");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod shim");
    let real_dir = real.parent().expect("bin dir");
    for tool in ["pg_restore", "psql", "pg_dumpall"] {
        let t = real_dir.join(tool);
        if t.exists() {
            std::os::unix::fs::symlink(&t, shim.join(tool)).expect("symlink");
        }
    }
    (shim, log)
}

/// The recorded pg_dump calls, one block of `key: value` lines each.
fn recorded_calls(log: &Path) -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert_clean("pg_dump's argv, cmdline or environment names", &text);
    let mut calls: Vec<Vec<(String, String)>> = Vec::new();
    for line in text.lines() {
        if line == "call" {
            calls.push(Vec::new());
        } else if let (Some(c), Some((k, v))) = (calls.last_mut(), line.split_once(": ")) {
            c.push((k.to_string(), v.trim().to_string()));
        } else if let (Some(c), Some(k)) = (calls.last_mut(), line.strip_suffix(':')) {
            c.push((k.to_string(), String::new()));
        }
    }
    calls
}

fn field<'a>(call: &'a [(String, String)], key: &str) -> &'a str {
    call.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} recorded: {call:?}"))
}

/// Checks the pg_dump calls recorded so far: `expected` calls, the password only through a
/// private PGPASSFILE that no longer exists, never PGPASSWORD.
#[track_caller]
fn assert_password_only_via_passfile(log: &Path, expected: usize) {
    let calls = recorded_calls(log);
    assert_eq!(calls.len(), expected, "pg_dump calls recorded: {calls:?}");
    for call in &calls {
        let vars: Vec<&str> = field(call, "pg-vars").split_whitespace().collect();
        assert!(
            !vars.contains(&"PGPASSWORD"),
            "PGPASSWORD must not be used: {vars:?}"
        );
        assert!(vars.contains(&"PGPASSFILE"), "no PGPASSFILE: {vars:?}");
        // pgdrill's other secrets (S3 keys, the passphrase variable, the source URL) are not
        // in pg_dump's environment at all.
        let names: Vec<&str> = field(call, "env-names").split_whitespace().collect();
        for secret in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "PASS",
            "PGDRILL_SOURCE_URL",
        ] {
            assert!(
                !names.contains(&secret),
                "{secret} reached pg_dump: {names:?}"
            );
        }
        let passfile = field(call, "passfile");
        assert!(!passfile.is_empty(), "PGPASSFILE is empty");
        assert_eq!(
            field(call, "passfile-mode"),
            "600",
            "the password file must be private"
        );
        assert!(
            !Path::new(passfile).exists(),
            "the password file {passfile} outlived the backup"
        );
        let argv = field(call, "argv");
        assert!(argv.contains("--format=custom"), "argv: {argv}");
    }
}

/// Every object in a bucket, fetched whole.
fn s3_objects(s3: &tk::S3Server, bucket: &str) -> Vec<(String, String)> {
    s3.list_keys(bucket)
        .into_iter()
        .map(|k| {
            let (status, body) = s3
                .request("GET", &format!("/{bucket}/{k}"), &[])
                .expect("GET object");
            assert_eq!(status, 200, "GET {k}");
            (k, body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_appear_nowhere_in_outputs_objects_or_argv() {
    let src = source(None).await;
    let pw = canary("PG_PW");
    let admin = tk::connect(&src.cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("alter role postgres password '{pw}'"))
        .await
        .expect("alter role");
    let url = format!(
        "postgresql://postgres:{pw}@127.0.0.1:{}/app",
        src.cluster.port()
    );
    let s3_secret = canary("S3_SECRET");
    let passphrase = canary("PASSPHRASE");
    let mut s3 = tk::S3Server::start();
    s3.create_bucket("backups");

    let dir = tempfile::tempdir().expect("tmp");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    let (shim, log) = recording_shim(dir.path(), src.cluster.version().major);
    let shim_s = shim.display().to_string();
    let tmp_s = tmp.display().to_string();
    let s3_env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_SECRET_ACCESS_KEY" {
                (k, s3_secret.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    let mut env = env_refs(&s3_env);
    env.extend([
        ("PGDRILL_SOURCE_URL", url.as_str()),
        ("PGDRILL_STORE", "s3://backups/team"),
        ("PGDRILL_PG_BIN", shim_s.as_str()),
        ("PASS", passphrase.as_str()),
        ("TMPDIR", tmp_s.as_str()),
    ]);
    let p = ["--passphrase-env", "PASS"];

    // Backups to S3, --json and human with -v.
    let first = run_clean(dir.path(), &["--json", "backup", p[0], p[1]], &env);
    first.ok();
    let id = first.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    run_clean(dir.path(), &["-v", "backup", p[0], p[1]], &env).ok();
    assert_password_only_via_passfile(&log, 2);

    // Every read command, --json and human with -v.
    for flags in [&["--json"][..], &["-v"][..]] {
        let with = |args: &[&str]| -> Vec<String> {
            flags
                .iter()
                .chain(args)
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        for args in [
            with(&["list"]),
            with(&["show", "latest"]),
            with(&["show", &id]),
            with(&["verify", "latest", p[0], p[1]]),
            with(&["export", "latest", "-o", "out.pgc", p[0], p[1]]),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_clean(dir.path(), &args, &env).ok();
        }
        let exported = std::fs::read(dir.path().join("out.pgc")).expect("exported file");
        assert!(
            exported.starts_with(b"PGDMP"),
            "export must write a pg_dump archive"
        );
        assert_clean_bytes("the exported archive", &exported);
        let sums = std::fs::read(dir.path().join("out.pgc.sha256")).expect("sha256 file");
        assert_clean_bytes("the exported .sha256", &sums);
        std::fs::remove_file(dir.path().join("out.pgc")).expect("rm");
    }

    // Every stored object: manifests, SHA256SUMS, encrypted dumps.
    let objects = s3_objects(&s3, "backups");
    let names: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names
            .iter()
            .filter(|k| k.ends_with("manifest.json"))
            .count()
            == 2
            && names.iter().any(|k| k.ends_with("SHA256SUMS"))
            && names.iter().any(|k| k.ends_with("dump.pgc.zst.age")),
        "unexpected objects: {names:?}"
    );
    for (k, body) in &objects {
        assert_clean(&format!("stored object {k}"), body);
    }
    let manifest = &objects
        .iter()
        .find(|(k, _)| k.ends_with(&format!("{id}/manifest.json")))
        .expect("manifest")
        .1;
    assert!(
        manifest.contains("postgresql://postgres@127.0.0.1"),
        "the manifest should name the source, redacted: {manifest}"
    );

    // A wrong passphrase: exit 4, and neither passphrase is echoed.
    let wrong = canary("WRONG_PASSPHRASE");
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "PASS");
    bad.push(("PASS", wrong.as_str()));
    run_clean(
        dir.path(),
        &[
            "--json", "-v", "export", "latest", "-o", "bad.pgc", p[0], p[1],
        ],
        &bad,
    )
    .code(4);

    // The same to a local folder: read every file the backup wrote.
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let local = run_clean(
        dir.path(),
        &["--json", "-v", "backup", "--store", &store_s, p[0], p[1]],
        &env,
    );
    local.ok();
    let files = files_below(&store);
    // The backup's four objects and the database's catalog.json.
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(files.iter().any(|f| f == "app/catalog.json"), "{files:?}");
    for f in &files {
        let bytes = std::fs::read(store.join(f)).expect("read stored file");
        assert_clean_bytes(&format!("stored file {f}"), &bytes);
    }
    assert_password_only_via_passfile(&log, 3);
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").flatten().collect();
    assert!(left.is_empty(), "files left in TMPDIR: {left:?}");
    s3.kill_now();
}

/// Error paths: a wrong password, unreachable servers and malformed URLs holding a secret
/// fail with a message that does not echo it.
#[tokio::test(flavor = "multi_thread")]
async fn error_messages_never_echo_secrets() {
    let cluster = tk::cluster(None);
    empty_db(&cluster, "app").await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let closed_port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        l.local_addr().expect("addr").port()
    };
    let wrong_pw = canary("WRONG_PG_PW");
    let cases: Vec<(String, i32, &str)> = vec![
        (
            format!(
                "postgresql://postgres:{wrong_pw}@127.0.0.1:{}/app",
                cluster.port()
            ),
            1,
            "password authentication failed",
        ),
        (
            format!(
                "postgresql://u:{}@127.0.0.1:{closed_port}/app",
                canary("PW")
            ),
            1,
            "cannot connect",
        ),
        (
            format!(
                "postgresql://u@127.0.0.1:{closed_port}/app?password={}&sslmode=disable",
                canary("PW")
            ),
            1,
            "cannot connect",
        ),
        (
            format!("postgresql://u:{}@127.0.0.1:notaport/app", canary("PW")),
            2,
            "port",
        ),
        (
            format!("mysql://u:{}@127.0.0.1/app", canary("PW")),
            2,
            "postgresql://",
        ),
        // Passwords with an unencoded '/' or '?' (base64 passwords often hold a '/'): once
        // echoed whole, once split into the port and the database name.
        (
            format!(
                "postgresql://postgres:{}/x@127.0.0.1:{}/app",
                canary("PW"),
                cluster.port()
            ),
            2,
            "percent-encode",
        ),
        (
            format!(
                "postgresql://postgres:12/{}@127.0.0.1:{}/app",
                canary("PW"),
                cluster.port()
            ),
            2,
            "percent-encode",
        ),
        (
            format!(
                "postgresql://postgres:{}?x@127.0.0.1:{}/app",
                canary("PW"),
                cluster.port()
            ),
            2,
            "percent-encode",
        ),
    ];
    for (source, code, needle) in &cases {
        for flags in [&["--json"][..], &["-v"][..]] {
            // As an environment variable and as a flag.
            let mut args: Vec<&str> = flags.to_vec();
            args.extend(["backup", "--store", &store_s]);
            let out = run_clean(dir.path(), &args, &[("PGDRILL_SOURCE_URL", source)]);
            out.code(*code);
            assert!(out.stderr.contains(needle), "{needle:?}: {}", out.stderr);
            args.extend(["--source", source]);
            let out = run_clean(dir.path(), &args, &[]);
            out.code(*code);
        }
    }
    // Failures may be recorded in the store (for `status`, and their history for the
    // dashboard); the records must be clean too.
    for f in files_below(&store) {
        assert!(
            f == "app/last_failure.json" || f == "app/failures.json",
            "unexpected file in the store: {f}"
        );
        let bytes = std::fs::read(store.join(&f)).expect("read record");
        assert_clean_bytes(&format!("stored file {f}"), &bytes);
    }

    // An S3 endpoint that is down, with a canary secret key: the error names the store only.
    let s3_secret = canary("S3_SECRET");
    let endpoint = format!("http://127.0.0.1:{closed_port}");
    let s3_env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "pgdrill-test"),
        ("AWS_SECRET_ACCESS_KEY", s3_secret.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    for flags in [&["--json"][..], &["-v"][..]] {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["list", "--store", "s3://backups/team"]);
        let out = run_clean(dir.path(), &args, &s3_env);
        assert_ne!(out.code, 0, "listing a dead S3 endpoint must fail");
    }
}

/// Store URLs with credentials in them are refused without echoing the credentials.
#[test]
fn bad_store_urls_do_not_echo_credentials() {
    let dir = tempfile::tempdir().expect("tmp");
    for url in [
        format!("s3://AKIDEXAMPLE:{}@bucket/prefix", canary("S3_SECRET")),
        format!("ftp://user:{}@host/backups", canary("PW")),
        format!("https://user:{}@host/backups", canary("PW")),
    ] {
        for flags in [&["--json"][..], &["-v"][..]] {
            let mut args: Vec<&str> = flags.to_vec();
            args.extend(["list", "--store", &url]);
            run_clean(dir.path(), &args, &[]).code(2);
            let mut args: Vec<&str> = flags.to_vec();
            args.push("list");
            run_clean(dir.path(), &args, &[("PGDRILL_STORE", &url)]).code(2);
        }
    }
}

/// A store URL in the config file is parsed when the config loads: an unusable one fails
/// there (exit 2), naming the key, without echoing credentials.
#[test]
fn bad_store_url_in_the_config_fails_at_load() {
    let dir = tempfile::tempdir().expect("tmp");
    for url in [
        "gs://bucket/prefix".to_string(),
        format!("s3://bucket/prefix?secret={}", canary("QUERY")),
    ] {
        let config = dir.path().join("pgdrill.toml");
        std::fs::write(&config, format!("[store]\nurl = {url:?}\n")).expect("write config");
        let config = config.to_str().expect("utf-8");
        let out = run_clean(dir.path(), &["--config", config, "list"], &[]);
        out.code(2);
        assert!(
            out.stderr.contains("[store] url: the store URL") && out.stderr.contains("not usable"),
            "{}",
            out.stderr
        );
    }
}
