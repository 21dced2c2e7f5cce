//! Helpers shared by the restore test files: backups, process and database probes.
#![allow(dead_code)]

use crate::common::*;
use pgdrill_testkit as tk;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Content whose every restore fails in pg_restore's data step: a check constraint reads a
/// table whose rows are restored after the checked table's (a real-world pg_restore failure).
pub const FAILS_ON_RESTORE_SQL: &str = "create table z_parent (id int primary key); \
    insert into z_parent values (1); \
    create function has_parent(int) returns boolean language sql stable \
      as 'select exists (select 1 from public.z_parent where id = $1)'; \
    create table a_child (p int check (public.has_parent(p))); \
    insert into a_child values (1);";

/// Backs `src_url` up into the folder store `store` and returns the backup id.
pub fn backup(dir: &Path, store: &Path, src_url: &str, env: &[(&str, &str)]) -> String {
    let store_s = store.display().to_string();
    let mut e = env.to_vec();
    e.push(("PGDRILL_SOURCE_URL", src_url));
    let out = run(dir, &["--json", "backup", "--store", &store_s], &e);
    out.ok();
    out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("backup id")
        .to_string()
}

/// `pgdrill restore` arguments: `restore latest --store S --target T` plus `extra`.
pub fn restore(dir: &Path, store: &Path, target: &str, extra: &[&str]) -> Out {
    restore_env(dir, store, target, extra, &[])
}

pub fn restore_env(
    dir: &Path,
    store: &Path,
    target: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Out {
    let store_s = store.display().to_string();
    let mut args = vec!["--json", "restore", "latest", "--store", &store_s];
    if !target.is_empty() {
        args.extend(["--target", target]);
    }
    args.extend_from_slice(extra);
    run(dir, &args, env)
}

pub async fn db_exists(cluster: &tk::Cluster, name: &str) -> bool {
    let c = tk::connect(&cluster.url("postgres")).await;
    let n: i64 = c
        .query_one(
            "select count(*) from pg_database where datname = $1",
            &[&name],
        )
        .await
        .expect("pg_database")
        .get(0);
    n > 0
}

/// Every process as (pid, parent pid, argv joined by spaces).
pub fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PPid:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        out.push((pid, ppid, cmd.trim().to_string()));
    }
    out
}

/// Waits until `parent` has a child whose argv contains `needle`; returns its pid.
pub fn wait_for_child(parent: u32, needle: &str, timeout: Duration) -> Option<u32> {
    poll(timeout, || {
        processes()
            .into_iter()
            .find(|(_, pp, c)| *pp == parent && c.contains(needle))
            .map(|p| p.0)
    })
}

/// `f()` every 20 ms until it gives something or `timeout` passes.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(t) = f() {
            return Some(t);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until a server process loads rows into database `db` (its process title ends in
/// `COPY`): the data phase of a restore, whether pg_restore or pgdrill's own lanes send them.
pub fn wait_for_copy(db: &str, timeout: Duration) -> bool {
    let marker = format!(" {db} ");
    poll(timeout, || {
        processes()
            .iter()
            .any(|(_, _, c)| {
                c.starts_with("postgres: ") && c.contains(&marker) && c.ends_with("COPY")
            })
            .then_some(())
    })
    .is_some()
}

/// Processes whose argv contains `needle` (after a grace period for them to exit).
pub fn survivors(needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = processes()
            .into_iter()
            .filter(|(p, _, c)| c.contains(needle) && *p != std::process::id())
            .map(|(p, _, c)| format!("{p}: {c}"))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh directory under /tmp that the unprivileged server user can traverse, for
/// `TMPDIR` of a pgdrill run: throwaway clusters and spool files land there.
pub fn shared_tmp() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("pgdrill-rt-")
        .tempdir_in("/tmp")
        .expect("tmp");
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    d
}

/// Entries of `dir` (names only).
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The single dump object of backup `id` of database `db` in folder store `store`.
pub fn dump_object(store: &Path, db: &str, id: &str) -> PathBuf {
    let dir = store.join(db).join("backups").join(id);
    entries(&dir)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dump.pgc"))
        })
        .expect("dump object")
}

/// Runs SQL on `url` and returns the first column of the first row as text.
pub async fn scalar(url: &str, sql: &str) -> String {
    let c = tk::connect(url).await;
    let row = c
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, Option<String>>(0).unwrap_or_default()
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}
