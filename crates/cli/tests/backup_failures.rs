//! Failure is never success (issue 2, points 6–8): every way a backup can fail exits non-zero
//! with one clear sentence, writes no manifest, leaves no staged upload, no password file and
//! no pg_dump process behind.
//!
//! pg_dump misbehaviour is simulated with a shim directory given as `PGDRILL_PG_BIN`: its
//! `pg_dump` answers `--version` like the real one and otherwise runs the real one in a
//! broken way. Every pgdrill run gets a private `TMPDIR` (where its password file goes) and a
//! marker variable that all its descendants inherit, so leftovers are found exactly.

mod common;
use common::*;
use pgdrill_testkit as tk;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A source whose database `app` holds `mb` MiB of random hex text in table `big` (1 KiB per
/// row; zstd only halves hex, so the stored dump is about half the raw size).
async fn big_source(major: Option<u32>, mb: usize) -> Source {
    let cluster = tk::cluster(major);
    let url = empty_db(&cluster, "app").await;
    let c = tk::connect(&url).await;
    c.batch_execute(&format!(
        "create table big (id int primary key, payload text not null);
         insert into big
         select g, (select string_agg(md5(random()::text || g || i), '') from generate_series(1, 32) i)
         from generate_series(1, {}) g;",
        mb * 1024
    ))
    .await
    .expect("fill big");
    Source { cluster, url }
}

/// One pgdrill run's private places: a working dir, the local store, a TMPDIR.
struct Place {
    dir: tempfile::TempDir,
    store: PathBuf,
    tmp: PathBuf,
}

impl Place {
    fn new() -> Place {
        let dir = tempfile::tempdir().expect("tmp");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("mkdir tmp");
        let store = dir.path().join("store");
        Place { dir, store, tmp }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store_s(&self) -> String {
        self.store.display().to_string()
    }

    /// A value no other process on the machine has in its environment.
    fn marker(&self) -> String {
        format!("TEST_PGDRILL_MARK={}", self.dir.path().display())
    }

    /// TMPDIR and the marker, plus `extra`.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("TMPDIR".to_string(), self.tmp.display().to_string()),
            (
                "TEST_PGDRILL_MARK".to_string(),
                self.dir.path().display().to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Out {
        let env = self.env(extra);
        let env = env_refs(&env);
        run(self.path(), args, &env)
    }

    fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> Child {
        let mut c = cmd(self.path());
        c.args(args)
            .envs(self.env(extra))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn pgdrill")
    }
}

/// A shim bin dir whose `pg_dump` forwards `--version` to the real pg_dump (at least `major`)
/// and otherwise runs `body` (bash; `$REAL` is the real pg_dump). The other tools are symlinks.
fn shim(dir: &Path, major: u32, body: &str) -> PathBuf {
    let real = tk::pg_bin("pg_dump", major);
    let shim = dir.join("shim");
    std::fs::create_dir_all(&shim).expect("mkdir shim");
    let script = format!(
        "#!/bin/bash\nREAL='{}'\ncase \"$1\" in --version|-V) exec \"$REAL\" \"$@\" ;; esac\n{body}\n",
        real.display()
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
    shim
}

/// Streams the real dump: the first 12 MiB at full speed, then 1 MiB every 0.2 s. `exec`
/// makes perl the process pgdrill started; the real pg_dump is its child.
const THROTTLED: &str = r#"exec perl -e '$| = 1; my $n = 0; while (read(STDIN, my $b, 1048576)) { print STDOUT $b; $n += length $b; select(undef, undef, undef, 0.2) if $n > 12582912 }' < <("$REAL" "$@")"#;

/// Live processes started (directly or not) by a pgdrill run of `place`.
fn leftovers(place: &Place) -> Vec<String> {
    let marker = place.marker();
    // pgdrill hands its libpq children only an allowlisted environment, which keeps TMPDIR:
    // the run's own TMPDIR marks them as well as the marker marks pgdrill itself.
    let tmpdir = format!("TMPDIR={}", place.tmp.display());
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmdline.is_empty() {
            continue; // zombies and kernel threads
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if environ
            .split(|b| *b == 0)
            .any(|v| v == marker.as_bytes() || v == tmpdir.as_bytes())
        {
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// Nothing pgdrill started may outlive it (a grace of 2 s for a pipe-broken grandchild).
#[track_caller]
fn assert_no_leftover_processes(place: &Place) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = leftovers(place);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("processes started by the failed backup are still running: {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Exit `code`, no panic, exactly one `error:` line that contains every needle, the same
/// error as the JSON document on stdout, and nothing on stderr but pgdrill's own lines.
#[track_caller]
fn assert_one_sentence(out: &Out, code: i32, needles: &[&str]) -> String {
    out.code(code);
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "thread '"] {
        assert!(
            !out.stderr.contains(bad),
            "stderr shows a panic:\n{}",
            out.stderr
        );
    }
    for line in out.stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            ["error: ", "warning: ", "backing up ", "pgdrill: "]
                .iter()
                .any(|p| line.starts_with(p)),
            "unexpected stderr line {line:?} (child output must not leak through):\n{}",
            out.stderr
        );
    }
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{}", out.stderr);
    let msg = errors[0].trim_start_matches("error: ").to_string();
    for n in needles {
        assert!(msg.contains(n), "the error should mention {n:?}: {msg}");
    }
    let j = out.json();
    assert_eq!(j["error"]["exit_code"], code, "{j}");
    assert_eq!(j["error"]["message"], msg.as_str(), "{j}");
    msg
}

/// No backup object in the store (no manifest, no SHA256SUMS, no staged `#` part file): at most
/// the failure record `status` reads (`<db>/last_failure.json`), carrying the printed error;
/// `list` shows no backup, and no password file is left in the run's TMPDIR.
#[track_caller]
/// A backup refused before it started: no backup folder at all, and nothing left behind.
fn assert_nothing_uploaded(place: &Place, msg: &str) {
    assert!(
        !place.store.join("app/backups").exists(),
        "nothing may be uploaded: {:?}",
        files_below(&place.store)
    );
    assert_nothing_left(place, msg);
}

fn assert_nothing_left(place: &Place, msg: &str) {
    let files = files_below(&place.store);
    let record = "app/last_failure.json";
    // The failure history (the last 50 failed jobs) is a record too, not a backup file.
    let history = "app/failures.json";
    let others: Vec<&String> = files
        .iter()
        .filter(|f| *f != record && *f != history)
        .collect();
    assert!(
        others.is_empty(),
        "a failed backup must leave no backup file in the store: {others:?}"
    );
    if files.iter().any(|f| f == record) {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(place.store.join(record)).expect("record"))
                .expect("failure record is JSON");
        assert_eq!(rec["job"], "backup", "{rec}");
        assert_eq!(rec["message"], msg, "{rec}");
        let hist: serde_json::Value =
            serde_json::from_slice(&std::fs::read(place.store.join(history)).expect("history"))
                .expect("failure history is JSON");
        let last = hist["failures"]
            .as_array()
            .and_then(|a| a.last())
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            last["message"], msg,
            "the history ends with this failure: {hist}"
        );
    }
    let list = place.run(&["--json", "list", "--store", &place.store_s()], &[]);
    list.ok();
    assert_eq!(
        list.json()["backups"],
        serde_json::json!([]),
        "list must show no backup"
    );
    let pgpass: Vec<String> = std::fs::read_dir(&place.tmp)
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pgdrill-pgpass-"))
        .collect();
    assert!(pgpass.is_empty(), "password files left behind: {pgpass:?}");
}

/// Waits up to `secs` for `child` to exit; kills it and fails the test on timeout.
fn wait_out(mut child: Child, secs: u64) -> Out {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pgdrill did not exit within {secs} s (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Polls `cond` every 50 ms for up to `secs`; on timeout kills `child` and fails with `what`.
fn wait_for(child: &mut Child, secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("pgdrill exited ({st}) before {what}:\n{err}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {sig} failed");
}

fn staged_files(store: &Path) -> Vec<(String, u64)> {
    files_below(store)
        .into_iter()
        .filter(|f| f.contains('#'))
        .map(|f| {
            let len = std::fs::metadata(store.join(&f))
                .map(|m| m.len())
                .unwrap_or(0);
            (f, len)
        })
        .collect()
}

/// pg_dump dies half-way (exit 1 after 3 MB of a 20 MB dump, then killed by SIGKILL after
/// 3 MB) or succeeds without output: each is exit 1, one sentence, nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_failures_abort_the_backup_and_leave_nothing() {
    let src = big_source(None, 20).await;
    let major = src.cluster.version().major;
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "exits 1 after 3 MB",
            r#""$REAL" "$@" | head -c 3000000; exit 1"#,
            &["pg_dump exited with status 1", "no manifest was written"],
        ),
        (
            "killed by SIGKILL after 3 MB",
            r#""$REAL" "$@" | head -c 3000000; kill -KILL $$"#,
            &["pg_dump was killed by signal 9", "no manifest was written"],
        ),
        (
            "writes nothing and exits 0",
            "exit 0",
            &["pg_dump exited successfully but wrote nothing"],
        ),
    ];
    for (what, body, needles) in cases {
        let place = Place::new();
        let bin = shim(place.path(), major, body);
        let bin_s = bin.display().to_string();
        let out = place.run(
            &["--json", "backup", "--store", &place.store_s()],
            &[("PGDRILL_SOURCE_URL", &src.url), ("PGDRILL_PG_BIN", &bin_s)],
        );
        eprintln!("case {what}: {}", out.stderr.trim());
        let msg = assert_one_sentence(&out, 1, needles);
        assert!(
            !out.stderr.contains(src.cluster.password()),
            "{what}: the password leaked"
        );
        assert_nothing_left(&place, &msg);
        assert_no_leftover_processes(&place);
    }
}

/// A pg_dump older than the server is refused before anything is uploaded, naming both
/// versions.
#[tokio::test(flavor = "multi_thread")]
async fn too_old_pg_dump_is_refused_naming_both_versions() {
    let cluster = tk::cluster(Some(18));
    empty_db(&cluster, "app").await;
    let old = tk::pg_bin_exact("pg_dump", 15);
    let old_version = tk::PgVersion::parse(&String::from_utf8_lossy(
        &std::process::Command::new(&old)
            .arg("--version")
            .output()
            .expect("pg_dump --version")
            .stdout,
    ))
    .expect("version");
    let old_dir = old.parent().expect("dir").display().to_string();
    let place = Place::new();
    let out = place.run(
        &["--json", "backup", "--store", &place.store_s()],
        &[
            ("PGDRILL_SOURCE_URL", &cluster.url("app")),
            ("PGDRILL_PG_BIN", &old_dir),
        ],
    );
    assert!(
        out.code == 1 || out.code == 2,
        "exit 1 or 2 expected, got {}: {}",
        out.code,
        out.stderr
    );
    let msg = assert_one_sentence(
        &out,
        out.code,
        &[&format!("pg_dump {old_version}"), "PostgreSQL 18"],
    );
    assert_nothing_uploaded(&place, &msg);
}

/// A transaction-mode pooler URL (port 6543) is bad input: exit 2, "use the direct URL",
/// and no connection or upload is attempted.
#[tokio::test(flavor = "multi_thread")]
async fn transaction_pooler_url_is_refused_with_exit_2() {
    let place = Place::new();
    let out = place.run(
        &[
            "--json",
            "backup",
            "--store",
            &place.store_s(),
            "--source",
            "postgresql://u:p@127.0.0.1:6543/app",
        ],
        &[],
    );
    let msg = assert_one_sentence(
        &out,
        2,
        &["transaction-mode pooler", "direct connection URL"],
    );
    assert!(!msg.contains("u:p@"), "the password leaked: {msg}");
    assert_nothing_uploaded(&place, &msg);
}

/// SIGINT while the dump streams and a first part is already in the store: exit 1, the
/// multipart upload is aborted (no `#` staged file), no manifest, pg_dump is gone.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_mid_stream_aborts_the_upload() {
    let src = big_source(None, 30).await;
    let place = Place::new();
    let bin = shim(place.path(), src.cluster.version().major, THROTTLED);
    let bin_s = bin.display().to_string();
    let mut child = place.spawn(
        &["--json", "backup", "--store", &place.store_s()],
        &[
            ("PGDRILL_SOURCE_URL", &src.url),
            ("PGDRILL_PG_BIN", &bin_s),
            ("PGDRILL_STORE_PART_SIZE_MIB", "5"),
        ],
    );
    let store = place.store.clone();
    wait_for(&mut child, 30, "a first part in the store", || {
        staged_files(&store).iter().any(|(_, len)| *len > 0)
    });
    assert!(
        !leftovers(&place).is_empty(),
        "the test is broken: pg_dump should be running"
    );
    signal(&child, "-INT");
    let out = wait_out(child, 20);
    let msg = assert_one_sentence(&out, 1, &["interrupted by a signal", "aborted"]);
    assert!(
        staged_files(&place.store).is_empty(),
        "the multipart upload was not aborted"
    );
    assert_nothing_left(&place, &msg);
    assert_no_leftover_processes(&place);
}

/// SIGTERM while pg_dump (the real one, no shim) waits for a table lock: pgdrill must kill it
/// (it would wait forever), abort the upload it opened, and exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_kills_a_stuck_pg_dump_and_aborts_the_upload() {
    let src = big_source(None, 1).await;
    let locker = tk::connect(&src.url).await;
    locker
        .batch_execute("begin; lock table big in access exclusive mode")
        .await
        .expect("lock");
    let place = Place::new();
    let mut child = place.spawn(
        &["--json", "backup", "--store", &place.store_s()],
        &[("PGDRILL_SOURCE_URL", &src.url)],
    );
    let watcher = tk::connect(&src.url).await;
    let waiting = || {
        let watcher = &watcher;
        let n = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                watcher
                    .query_one(
                        "select count(*) from pg_stat_activity \
                         where application_name = 'pg_dump' and wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .expect("pg_stat_activity")
                    .get::<_, i64>(0)
            })
        });
        n > 0
    };
    wait_for(&mut child, 30, "pg_dump waiting for the lock", waiting);
    assert!(
        !staged_files(&place.store).is_empty(),
        "the multipart upload should be open while pg_dump runs"
    );
    signal(&child, "-TERM");
    let out = wait_out(child, 20);
    let msg = assert_one_sentence(&out, 1, &["interrupted by a signal", "aborted"]);
    assert_nothing_left(&place, &msg);
    assert_no_leftover_processes(&place);
    locker.batch_execute("rollback").await.expect("unlock");
}

/// The S3 server dies while parts are being uploaded: exit 1 with a sentence about the
/// upload (not blamed on pg_dump), no hang, no pg_dump left, no password file left.
#[tokio::test(flavor = "multi_thread")]
async fn store_dying_mid_upload_fails_the_backup() {
    let src = big_source(None, 40).await;
    let mut s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let place = Place::new();
    let bin = shim(place.path(), src.cluster.version().major, THROTTLED);
    let bin_s = bin.display().to_string();
    let s3_env = s3.env();
    let mut extra = env_refs(&s3_env);
    extra.extend([
        ("PGDRILL_SOURCE_URL", src.url.as_str()),
        ("PGDRILL_PG_BIN", bin_s.as_str()),
        ("PGDRILL_STORE", "s3://backups/pg"),
        ("PGDRILL_STORE_PART_SIZE_MIB", "5"),
    ]);
    let mut child = place.spawn(&["--json", "backup"], &extra);
    wait_for(&mut child, 30, "a first part uploaded to S3", || {
        s3.log().contains("partNumber=")
    });
    s3.kill_now();
    let started = Instant::now();
    let out = wait_out(child, 60);
    let msg = assert_one_sentence(&out, 1, &["upload"]);
    assert!(
        !msg.contains("pg_dump exited") && !msg.contains("pg_dump was killed"),
        "the failure must be blamed on the store: {msg}"
    );
    eprintln!(
        "exit {:.1} s after the S3 server died: {msg}",
        started.elapsed().as_secs_f64()
    );
    assert_no_leftover_processes(&place);
    let pgpass: Vec<_> = std::fs::read_dir(&place.tmp)
        .expect("tmp")
        .flatten()
        .collect();
    assert!(pgpass.is_empty(), "files left in TMPDIR: {pgpass:?}");
}
