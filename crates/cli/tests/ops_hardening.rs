//! Operational hardening (issues 16 and 24): secrets kept out of the throwaway cluster and
//! `$TMPDIR`, stalls bounded, dying targets cleaned up, `serve` alive under load.

mod common;
mod fault_proxy;
mod restore_util;
use common::*;
use fault_proxy::FaultProxy;
use pgdrill_testkit as tk;
use restore_util::*;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Runs pgdrill like [`run`], but fails the test if it has not exited within `secs`.
fn run_within(secs: u64, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = cmd(cwd);
    c.args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn pgdrill");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pgdrill {args:?} did not exit within {secs} s (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().expect("output");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The S3 server's variables, with the endpoint pointing at `endpoint` instead.
fn s3_env_via(s3: &tk::S3Server, endpoint: &str) -> Vec<(String, String)> {
    s3.env()
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with("AWS_ENDPOINT") {
                (k, endpoint.to_string())
            } else {
                (k, v)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_list_is_an_error_not_empty() {
    let src = source(None).await;
    let s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let proxy = FaultProxy::start(&s3.endpoint());
    let dir = tempfile::tempdir().expect("tmp");
    let owned = s3_env_via(&s3, &proxy.endpoint);
    let mut env = env_refs(&owned);
    env.extend([
        ("PGDRILL_STORE", "s3://backups/pg"),
        ("PGDRILL_STORE_TIMEOUT_SECONDS", "1"),
        ("PGDRILL_STORE_RETRY_SECONDS", "3"),
    ]);
    let mut with_source = env.clone();
    with_source.push(("PGDRILL_SOURCE_URL", &src.url));
    run_within(60, dir.path(), &["--json", "backup"], &with_source).ok();
    run_within(30, dir.path(), &["--json", "list"], &env).ok();

    // The catalog's GET (what `list` reads first) never answers: retried, then an error
    // (exit 1), not "no backups".
    proxy.stall("catalog.json");
    let started = Instant::now();
    let out = run_within(40, dir.path(), &["--json", "list"], &env);
    let took = started.elapsed();
    eprintln!("stalled GET, after {took:?}: {}", out.stderr.trim());
    out.code(1);
    assert!(out.json()["error"]["message"].is_string(), "{}", out.stdout);
    assert!(out.stderr.contains("catalog.json"), "{}", out.stderr);
    let stalled = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("STALLED GET") && r.contains("catalog.json"))
        .count();
    assert!(
        stalled >= 2,
        "the stalled GET was not retried: {:?}",
        proxy.requests()
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // A LIST that never answers: the same.
    proxy.clear();
    proxy.stall("list-type=2");
    let out = run_within(40, dir.path(), &["--json", "list"], &env);
    out.code(1);
    assert!(out.json()["error"]["message"].is_string(), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_blocked_by_lock_names_the_holder() {
    let src = source(None).await;
    let locker = tk::connect(&src.url).await;
    locker
        .batch_execute(
            "set application_name = 'nightly-migration'; begin; \
             lock table app.customers in access exclusive mode",
        )
        .await
        .expect("lock");
    let pid: i32 = locker
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let started = Instant::now();
    let out = run_within(
        60,
        dir.path(),
        &["--json", "backup", "--store", &store_s],
        &[
            ("PGDRILL_SOURCE_URL", &src.url),
            ("PGDRILL_BACKUP_LOCK_WAIT_TIMEOUT_SECONDS", "2"),
        ],
    );
    out.code(1);
    let msg = out.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    eprintln!("{msg}");
    for want in [
        "app.customers",
        &format!("pid {pid}"),
        "nightly-migration",
        &format!("pg_terminate_backend({pid})"),
        "lock_wait_timeout_seconds",
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    assert!(!msg.contains('\n'), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(backup_ids(&store, "app").iter().all(|id| !store
        .join("app/backups")
        .join(id)
        .join("manifest.json")
        .exists()));
    locker.batch_execute("rollback").await.expect("unlock");
}

/// `pg_ctl restart -m immediate` of a test cluster, as the OS user owning its data directory
/// (the server runs unprivileged when the tests run as root).
fn restart_immediately(cluster: &tk::Cluster) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let meta = std::fs::metadata(cluster.data_dir()).expect("data dir");
    let root = cluster
        .data_dir()
        .parent()
        .expect("cluster root")
        .to_path_buf();
    let st = std::process::Command::new(cluster.install().bin("pg_ctl"))
        .arg("-D")
        .arg(cluster.data_dir())
        .arg("-l")
        .arg(cluster.log_path())
        .args(["-w", "-t", "60", "restart", "-m", "immediate"])
        .current_dir(root)
        .uid(meta.uid())
        .gid(meta.gid())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("pg_ctl restart");
    assert!(st.success(), "pg_ctl restart failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_restart_mid_restore_drops_created_database() {
    let src = source(None).await;
    tk::connect(&src.url)
        .await
        .batch_execute(
            "create table app.bulk (id int primary key, payload text not null);
             insert into app.bulk select g, repeat(md5(g::text), 16) from generate_series(1, 400000) g;",
        )
        .await
        .expect("fill");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let store_s = store.display().to_string();
    let target = tk::cluster(None);
    for jobs in ["1", "2"] {
        let db = format!("restarted_{jobs}");
        let url = target.url(&db);
        let mut c = cmd(dir.path());
        c.args([
            "--json", "restore", "latest", "--store", &store_s, "--target", &url, "--jobs", jobs,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let child = c.spawn().expect("spawn restore");
        assert!(
            wait_for_copy(&db, Duration::from_secs(60)),
            "--jobs {jobs}: no COPY into {db} seen"
        );
        restart_immediately(&target);
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        eprintln!("--jobs {jobs}: {}", stderr.trim());
        assert_eq!(o.status.code(), Some(1), "--jobs {jobs}: {stderr}");
        assert!(
            stderr.contains("connection to the target was lost"),
            "--jobs {jobs}: {stderr}"
        );
        assert!(!stderr.contains("ignore_errors"), "--jobs {jobs}: {stderr}");
        assert!(!stderr.contains("\"\""), "--jobs {jobs}: {stderr}");
        assert!(
            !db_exists(&target, &db).await,
            "--jobs {jobs}: {db} was left on the target"
        );
    }
}

/// GET /healthz with a deadline of `within` for the whole answer; the status line's code.
fn healthz_within(port: u16, within: Duration) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(within))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))
}

#[test]
fn healthz_answers_under_idle_connection_flood() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[schedule]\nbackup = \"off\"\ndrill = \"off\"\nprune = \"off\"\nstatus = \"off\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"UNSET_SOURCE_URL\"\n",
            dir.path().join("store").display()
        ),
    )
    .expect("config");
    let mut child = cmd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start serve");
    wait_until(30, "serve answers /healthz", || {
        healthz_within(port, Duration::from_secs(2)) == Ok(200)
    });

    // 200 connections that never send a byte, 100 that send half a request head.
    let mut flood = Vec::new();
    for i in 0..300 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if i >= 200 {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        }
        flood.push(s);
    }
    for round in 0..3 {
        let started = Instant::now();
        let got = healthz_within(port, Duration::from_secs(2));
        let took = started.elapsed();
        if got != Ok(200) || took > Duration::from_secs(2) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("round {round}: /healthz under 300 idle connections: {got:?} after {took:?}");
        }
    }
    drop(flood);
    kill(child.id(), "-TERM");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn unset_passphrase_variable_is_named_not_the_flag() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store_s = dir.path().join("store").display().to_string();
    run(
        dir.path(),
        &["backup", "--store", &store_s, "--passphrase-env", "BK_PASS"],
        &[
            ("PGDRILL_SOURCE_URL", &src.url),
            ("BK_PASS", "correct horse"),
        ],
    )
    .ok();
    let out = run(
        dir.path(),
        &[
            "verify",
            "latest",
            "--store",
            &store_s,
            "--passphrase-env",
            "BK_PASS",
        ],
        &[],
    );
    out.code(4);
    assert!(
        out.stderr.contains("BK_PASS") && out.stderr.contains("is not set"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_bucket_is_named_with_its_endpoint() {
    let s3 = tk::S3Server::start();
    let dir = tempfile::tempdir().expect("tmp");
    let owned = s3.env();
    let env = env_refs(&owned);
    let out = run_within(
        60,
        dir.path(),
        &["list", "--store", "s3://no-such-bucket/pg"],
        &env,
    );
    out.code(2);
    let want = format!("bucket no-such-bucket does not exist at {}", s3.endpoint());
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    assert!(!out.stderr.contains('<'), "raw XML: {}", out.stderr);
}

#[test]
fn refused_mirror_restore_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let src = d.join("src");
    for i in 0..40 {
        let p = src.join(format!("a/f{i:02}"));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, vec![i as u8; 200_000]).expect("write");
    }
    std::fs::create_dir_all(src.join("z/link")).expect("mkdir");
    std::fs::write(src.join("z/link/x"), b"x").expect("write");
    let mirror = |args: &[&str]| {
        let mut all = vec!["--json", "--store", "store", "mirror"];
        all.extend_from_slice(args);
        run(d, &all, &[])
    };
    mirror(&["run", "--name", "up", "--from", "src"]).ok();

    // The destination holds a symlink where the snapshot has the folder z/link.
    let out = d.join("out");
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(out.join("z")).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, out.join("z/link")).expect("symlink");
    let r = mirror(&["restore", "--name", "up", "latest", "--to", "out"]);
    r.code(5);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
    let mut left: Vec<String> = Vec::new();
    for e in walk(&out) {
        left.push(e.strip_prefix(&out).unwrap_or(&e).display().to_string());
    }
    left.sort();
    assert_eq!(left, ["z", "z/link"], "the destination changed");
    assert!(files_below(&elsewhere).is_empty());
}

/// Every entry below `dir` (symlinks not followed).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_waits_out_a_store_restart() {
    let src = source(None).await;
    let s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let proxy = FaultProxy::start(&s3.endpoint());
    let dir = tempfile::tempdir().expect("tmp");
    let owned = s3_env_via(&s3, &proxy.endpoint);
    let mut env = env_refs(&owned);
    env.extend([
        ("PGDRILL_STORE", "s3://backups/pg"),
        ("PGDRILL_SOURCE_URL", src.url.as_str()),
    ]);
    // Every request fails for 8 s (closed unanswered), as while the store restarts.
    proxy.down_for(Duration::from_secs(8));
    let started = Instant::now();
    let out = run_within(90, dir.path(), &["--json", "backup"], &env);
    let took = started.elapsed();
    let refused = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("DOWN"))
        .count();
    eprintln!("{refused} requests refused; the backup took {took:?}");
    out.ok();
    assert!(refused >= 3, "{:?}", proxy.requests());
    assert!(took >= Duration::from_secs(8), "{took:?}");
    run_within(30, dir.path(), &["--json", "verify", "latest"], &env).ok();
}

/// The whole config is validated at load: an invalid schedule or a zero policy duration is
/// refused by every command (not only by `serve`), exit 2, in one sentence naming the key.
#[test]
fn invalid_schedule_and_zero_policy_values_are_refused_by_every_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let cases: [(&str, &str); 6] = [
        ("[schedule]\nbackup = \"0 25 * * *\"\n", "[schedule] backup"),
        ("[schedule]\ndrill = \"sometimes\"\n", "[schedule] drill"),
        (
            "[schedule]\ntimezone = \"Mars/Olympus\"\n",
            "[schedule] timezone",
        ),
        ("[policy]\nrpo_minutes = 0\n", "rpo_minutes"),
        ("[policy]\nretention_days = 0\n", "retention_days"),
        ("[policy]\nrto_minutes = -5\n", "rto_minutes"),
    ];
    for (toml, key) in cases {
        let text = format!("[store]\nurl = \"{}\"\n{toml}", store.display());
        std::fs::write(dir.path().join("pgdrill.toml"), text).expect("config");
        for args in [vec!["status"], vec!["doctor"], vec!["list"]] {
            let out = run(dir.path(), &args, &[]);
            out.code(2);
            let line = out.stderr.trim();
            assert!(
                line.contains(key) && line.lines().count() == 1,
                "{toml} {args:?}: {}",
                out.stderr
            );
        }
    }
    // A valid schedule still loads.
    let text = format!(
        "[store]\nurl = \"{}\"\n[schedule]\nbackup = \"0 3 * * *\"\ndrill = \"first_sunday\"\n[policy]\nrpo_minutes = 60\n",
        store.display()
    );
    std::fs::write(dir.path().join("pgdrill.toml"), text).expect("config");
    let out = run(dir.path(), &["list"], &[]);
    assert_ne!(out.code, 2, "{}", out.stderr);
}

/// Every section is typed at load, so a bad value any job would meet later (a cron of the
/// mirror or prune schedule, the daemon's listen address or half-set basic auth, a drill's
/// `jobs`) is refused by every command given that config with `--config`, exit 2, in one
/// sentence naming the key; before, only `serve` (or the drill) saw it.
#[test]
fn settings_any_job_reads_are_checked_when_the_config_is_loaded() {
    let dir = tempfile::tempdir().expect("tmp");
    let elsewhere = tempfile::tempdir().expect("cwd");
    let store = dir.path().join("store");
    let cases: [(&str, &str); 6] = [
        ("[schedule]\nmirror = \"61 * * * *\"\n", "[schedule] mirror"),
        ("[schedule]\nprune = \"0 3 * * FRI#6\"\n", "[schedule] prune"),
        ("[schedule]\nstatus = \"every\"\n", "[schedule] status"),
        ("[serve]\nlisten = \"localhost\"\n", "serve.listen"),
        ("[serve]\nbasic_auth_user = \"ops\"\n", "basic_auth_password_env"),
        (
            "[[database]]\nname = \"app\"\nurl = \"postgres://u@h/app\"\n[database.drill]\njobs = \"four\"\n",
            "[database.drill] jobs",
        ),
    ];
    let bad = dir.path().join("bad.toml");
    for (toml, key) in cases {
        let text = format!("[store]\nurl = \"{}\"\n{toml}", store.display());
        std::fs::write(&bad, text).expect("config");
        let config = bad.to_str().expect("utf-8 path");
        for command in ["status", "list", "backup", "drill", "prune"] {
            let out = run(elsewhere.path(), &["--config", config, command], &[]);
            out.code(2);
            let line = out.stderr.trim();
            assert!(
                line.contains(key) && line.lines().count() == 1,
                "{toml} {command}: {}",
                out.stderr
            );
        }
    }
}
