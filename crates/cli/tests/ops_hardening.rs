//! Operational hardening (issues 16 and 24): secrets kept out of the throwaway cluster and
//! `$TMPDIR`, stalls bounded, dying targets cleaned up, `serve` alive under load.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;
use std::path::Path;

/// Pids of live processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(_, _, cmd)| cmd.contains(needle))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Runs `sh -c script` and asserts it succeeded.
fn sh(script: &str) {
    let st = std::process::Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("sh");
    assert!(st.success(), "{script} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn throwaway_cluster_environment_has_no_secrets() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    let store_s = store.display().to_string();
    let aws = "aws-secret-canary-5d1e0c";
    let token = "session-token-canary-77ab";
    let other = "postgresql://u:other-db-canary-19fe@db.invalid/x";
    let out = run(
        dir.path(),
        &["--json", "drill", "latest", "--store", &store_s, "--keep"],
        &[
            ("PGDRILL_SOURCE_URL", &src.url),
            ("AWS_ACCESS_KEY_ID", "AKIACANARY"),
            ("AWS_SECRET_ACCESS_KEY", aws),
            ("AWS_SESSION_TOKEN", token),
            ("DATABASE_URL", other),
            ("TMPDIR", &tmp_s),
        ],
    );
    out.ok();
    let stop = out.json()["kept"][0]["stop_command"]
        .as_str()
        .unwrap_or_else(|| panic!("no stop command: {}", out.stdout))
        .to_string();

    // Every process of the kept cluster (postmaster and its children) lives under TMPDIR.
    let pids = pids_with(&tmp_s);
    let mut seen = 0;
    let mut leaks = Vec::new();
    for pid in &pids {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        seen += 1;
        let env = String::from_utf8_lossy(&raw).replace('\0', "\n");
        for canary in [
            aws,
            token,
            "AKIACANARY",
            "other-db-canary",
            src.cluster.password(),
        ] {
            if env.contains(canary) {
                leaks.push(format!("pid {pid} has {canary:?} in its environment"));
            }
        }
        for var in ["PGDRILL_SOURCE_URL=", "AWS_", "DATABASE_URL="] {
            if env.lines().any(|l| l.starts_with(var)) {
                leaks.push(format!("pid {pid} has {var} in its environment"));
            }
        }
    }
    sh(&stop);
    assert!(seen > 0, "no process of the kept cluster under {tmp_s}");
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Names of the pgpass files in `dir`.
fn pgpass_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pgdrill-pgpass-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `cond` every 50 ms for up to `secs`; panics with `what` on timeout.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn kill(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_backup_leaves_no_pgpass_file() {
    let src = source(None).await;
    // pg_dump waits on this lock, so the backup is surely mid-way when it is killed.
    let locker = tk::connect(&src.url).await;
    locker
        .batch_execute("begin; lock table app.customers in access exclusive mode")
        .await
        .expect("lock");
    let dir = tempfile::tempdir().expect("tmp");
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let tmp_s = tmp.path().display().to_string();
    let store_s = dir.path().join("store").display().to_string();
    let mut c = cmd(dir.path());
    c.args(["--json", "backup", "--store", &store_s])
        .env("PGDRILL_SOURCE_URL", &src.url)
        .env("TMPDIR", &tmp_s)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("spawn backup");
    let pid = child.id();
    let mut pg_dump = None;
    wait_until(30, "pg_dump started with its password file", || {
        pg_dump = processes()
            .into_iter()
            .find(|(_, ppid, cmd)| *ppid == pid && cmd.contains("pg_dump"))
            .map(|p| p.0);
        pg_dump.is_some() && !pgpass_files(tmp.path()).is_empty()
    });
    kill(pid, "-KILL");
    let _ = child.wait();
    if let Some(p) = pg_dump {
        kill(p, "-KILL");
    }
    locker.batch_execute("rollback").await.expect("unlock");
    let left = pgpass_files(tmp.path());
    assert_eq!(left.len(), 1, "SIGKILL leaves the file: {left:?}");

    // Any next command removes it; a file still held by a live pgdrill is kept.
    let live = pgdrill_pg::passfile::PassFile::create_in(tmp.path(), "live").expect("live");
    run(
        dir.path(),
        &["--json", "list", "--store", &store_s],
        &[("TMPDIR", &tmp_s)],
    )
    .ok();
    let name = live
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    assert_eq!(
        pgpass_files(tmp.path()),
        name.into_iter().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn group_readable_identity_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(
        dir.path(),
        &["--json", "init", "--generate-key", "--path", "pgdrill.toml"],
        &[],
    );
    out.ok();
    let recipient = out.json()["recipient"]
        .as_str()
        .expect("recipient")
        .to_string();
    std::fs::remove_file(dir.path().join("pgdrill.toml")).expect("rm config");
    let key = dir.path().join("pgdrill-age.key");
    let key_s = key.display().to_string();
    let store_s = dir.path().join("store").display().to_string();
    run(
        dir.path(),
        &["backup", "--store", &store_s, "--recipient", &recipient],
        &[("PGDRILL_SOURCE_URL", &src.url)],
    )
    .ok();
    let verify = || {
        run(
            dir.path(),
            &[
                "verify",
                "latest",
                "--store",
                &store_s,
                "--identity",
                &key_s,
            ],
            &[],
        )
    };
    let private = verify();
    private.ok();
    assert!(!private.stderr.contains("chmod 600"), "{}", private.stderr);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let exposed = verify();
    exposed.ok();
    assert!(
        exposed.stderr.contains("warning: the identity file")
            && exposed.stderr.contains(&format!("chmod 600 {key_s}")),
        "{}",
        exposed.stderr
    );
}
