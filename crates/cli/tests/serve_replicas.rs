//! Two `pgdrill serve` replicas on one store (issue 19, "Scale"): each scheduled backup runs
//! once per slot, the other replica skipping it without a failure; and a replica killed
//! (SIGKILL) while it holds a database's lease has its job taken over by the other once the
//! lease lapses; a status alert is sent once, not once per replica.

mod common;
mod serve_support;
use common::*;
use pgdrill_testkit as tk;
use serve_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The job lease's ttl in these tests (the replicas retry a locked run every quarter of it).
const TTL_SECS: u64 = 6;

fn config(dir: &Path, store: &Path, backup: &str, jitter: u64) {
    std::fs::write(
        dir.join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n\
             [schedule]\nbackup = \"{backup}\"\nstatus = \"off\"\ndrill = \"off\"\nprune = \"off\"\n\
             jitter_seconds = {jitter}\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            store.display()
        ),
    )
    .expect("config");
}

/// A running replica: its process, its log file, and the TMPDIR marking it and its children.
struct Replica {
    child: Child,
    log: PathBuf,
    marker: String,
}

impl Replica {
    fn start(dir: &Path, name: &str, src: &str, pg_bin: Option<&Path>) -> Replica {
        Replica::start_with(dir, name, src, pg_bin, &[])
    }

    /// [`Replica::start`] with more environment variables.
    fn start_with(
        dir: &Path,
        name: &str,
        src: &str,
        pg_bin: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Replica {
        let tmp = dir.join(format!("tmp-{name}"));
        std::fs::create_dir_all(&tmp).expect("tmp");
        let log = dir.join(format!("{name}.log"));
        let mut c = cmd(dir);
        c.args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
            .env("SRC", src)
            .env("TMPDIR", &tmp)
            .env("PGDRILL_TEST_LEASE_TTL_SECS", TTL_SECS.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        if let Some(bin) = pg_bin {
            c.env("PGDRILL_PG_BIN", bin);
        }
        c.envs(env.iter().copied());
        Replica {
            child: c.spawn().expect("start serve"),
            log,
            marker: format!("TMPDIR={}", tmp.display()),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.log()
    }

    /// SIGKILL for the replica and everything it started (a sleeping pg_dump shim).
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in marked_processes(&self.marker) {
            let pid = p.split(':').next().unwrap_or_default().to_string();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// `(backup id, started_at)` of the complete backups.
fn complete(store: &Path) -> Vec<(String, String)> {
    backup_ids(store, "app")
        .into_iter()
        .filter_map(|id| {
            let m =
                std::fs::read(store.join("app/backups").join(&id).join("manifest.json")).ok()?;
            let m: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
            Some((
                id,
                m["started_at"].as_str().expect("started_at").to_string(),
            ))
        })
        .collect()
}

fn wait_for(secs: u64, what: &str, logs: &dyn Fn() -> String, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_run_each_backup_once_and_take_over_a_dead_ones_job() {
    let src = source(None).await;

    // 1. Same schedule (every 4 s, epoch-aligned; and the run missed at start, which both
    //    catch up at once), each replica starting up to 3 s late at random: the later one
    //    often starts after the earlier one finished and released the lease, and must see
    //    that slot's backup in the store.
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    config(dir.path(), &store, "every 4s", 3);
    let a = Replica::start(dir.path(), "a", &src.url, None);
    let b = Replica::start(dir.path(), "b", &src.url, None);
    let logs = || format!("a:\n{}\nb:\n{}", a.log(), b.log());
    wait_for(40, "four backups", &logs, || complete(&store).len() >= 4);
    let (la, lb) = (a.stop(), b.stop());
    let backups = complete(&store);
    // One backup per 4-second slot: no two started within one slot.
    let mut slots: Vec<i64> = backups
        .iter()
        .map(|(_, t)| {
            let t: pgdrill_core::time::Timestamp = t.parse().expect("started_at");
            t.as_second().div_euclid(4)
        })
        .collect();
    let n = slots.len();
    slots.dedup();
    assert_eq!(
        slots.len(),
        n,
        "two backups in one slot: {backups:?}\na:\n{la}\nb:\n{lb}"
    );
    // The replica that did not run a slot skipped it, and nothing failed.
    let all = format!("{la}\n{lb}");
    assert!(all.contains("skipped"), "{all}");
    for bad in [" ERROR ", "failed", "panicked"] {
        assert!(!all.contains(bad), "{bad}: {all}");
    }

    // 2. Replica A takes the (missed) backup and hangs in pg_dump holding the lease; B finds
    //    it locked. A is killed; B takes the job over once A's lease lapsed.
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    config(dir.path(), &store, "every 1h", 0);
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(&shim).expect("shim");
    let major = src.cluster.version().major;
    for tool in ["pg_dump", "pg_dumpall"] {
        let real = tk::pg_bin(tool, major);
        let pause = if tool == "pg_dump" { 600 } else { 0 };
        std::fs::write(
            shim.join(tool),
            format!(
                "#!/bin/sh\ncase \"$1\" in --version) exec '{r}' --version;; esac\nsleep {pause}\nexec '{r}' \"$@\"\n",
                r = real.display()
            ),
        )
        .expect("write shim");
        Command::new("chmod")
            .args(["+x", &shim.join(tool).display().to_string()])
            .status()
            .expect("chmod");
    }
    let a = Replica::start(dir.path(), "a", &src.url, Some(&shim));
    let lease = store.join("app/lease.json");
    wait_for(30, "replica a to take the lease", &|| a.log(), || {
        lease.exists()
    });
    let b = Replica::start(dir.path(), "b", &src.url, None);
    wait_for(30, "replica b to find the lease held", &|| b.log(), || {
        b.log().contains("skipped (another job holds the lease")
    });
    a.kill9();
    let killed = Instant::now();
    wait_for(
        TTL_SECS * 6,
        "replica b to take the backup over",
        &|| b.log(),
        || complete(&store).len() == 1,
    );
    let lb = b.stop();
    assert!(
        killed.elapsed() >= Duration::from_secs(TTL_SECS / 2),
        "taken over before the lease could lapse\n{lb}"
    );
    assert!(lb.contains("took over a stale lease"), "{lb}");
    assert_eq!(complete(&store).len(), 1, "{lb}");
    for bad in [" ERROR ", "panicked"] {
        assert!(!lb.contains(bad), "{bad}: {lb}");
    }
}

/// Issue 19: two replicas run the status job at the same slots (every 2 s, no jitter); a
/// violated SLO (no backup at all) is alerted once, by the replica holding the status-alert
/// lease, not once per replica.
#[test]
fn two_replicas_send_a_status_alert_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let (hook, seen) = receiver();
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[alerts]\nwebhook_url_env = \"HOOK\"\n\
             [schedule]\nbackup = \"off\"\nstatus = \"every 2s\"\ndrill = \"off\"\nprune = \"off\"\n\
             jitter_seconds = 0\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            store.display()
        ),
    )
    .expect("config");
    let src = "postgresql://nobody@127.0.0.1:1/app?connect_timeout=2";
    let start = |name: &str| Replica::start_with(dir.path(), name, src, None, &[("HOOK", &hook)]);
    let a = start("a");
    let b = start("b");
    let logs = || format!("a:\n{}\nb:\n{}", a.log(), b.log());
    let violated = || {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|x| x.contains("\"slo_violated\""))
            .count()
    };
    wait_for(30, "a status alert", &logs, || violated() >= 1);
    // Several more status slots on both replicas.
    std::thread::sleep(Duration::from_secs(7));
    let (la, lb) = (a.stop(), b.stop());
    assert_eq!(
        violated(),
        1,
        "a:\n{la}\nb:\n{lb}\n{:?}",
        seen.lock().expect("lock")
    );
}
