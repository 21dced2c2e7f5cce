//! Shared by the drill tests (`drill.rs`, `drill_checks.rs`): a source cluster with a small
//! fixture, a config file in a temp dir, the real binary, a bounded local HTTP server, a
//! shim `PGDRILL_PG_BIN` that records which PostgreSQL programs pgdrill ran, and a structural
//! validator for `docs/result.schema.json`.
#![allow(dead_code)]

use crate::common::*;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// psql of the system PostgreSQL 15, for `command` checks.
pub const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// Good and deliberately broken objects side by side, so one backup serves every check:
/// `audit_log` is empty, without RLS and without policy; `"Workflow"` has RLS but no policy;
/// `broken._prisma_migrations` holds a failed migration (finished_at null),
/// `fresh._prisma_migrations` none; `inventory` has 3 negative quantities.
pub const CHECKS_SQL: &str = r#"
create extension citext;
create table "_prisma_migrations" (id varchar(36) primary key, checksum varchar(64) not null,
  finished_at timestamptz, migration_name varchar(255) not null, logs text,
  rolled_back_at timestamptz, started_at timestamptz not null default now(),
  applied_steps_count int not null default 0);
insert into "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
  values ('m1', 'c1', now(), '20260101000000_init', 1), ('m2', 'c2', now(), '20260201000000_events', 1);
create schema broken;
create table broken."_prisma_migrations" (like public."_prisma_migrations" including all);
insert into broken."_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
  values ('m1', 'c1', now(), '20260101000000_init', 1), ('m2', 'c2', null, '20260201000000_events', 0);
create schema fresh;
create table fresh."_prisma_migrations" (like public."_prisma_migrations" including all);
create table "Organization" (id int primary key, name citext not null);
insert into "Organization" values (1, 'acme'), (2, 'globex'), (3, 'initech');
create table "Event" (id int generated always as identity primary key,
  org_id int not null references "Organization", title text not null);
insert into "Event" (org_id, title) select 1 + g % 3, 'event ' || g from generate_series(1, 200) g;
alter table "Organization" enable row level security;
create policy org_isolation on "Organization" using (id = current_setting('app.org_id', true)::int);
alter table "Event" enable row level security;
create policy event_isolation on "Event" using (org_id = current_setting('app.org_id', true)::int);
create table "Workflow" (id int primary key, name text);
insert into "Workflow" values (1, 'onboarding');
alter table "Workflow" enable row level security;
create table audit_log (id int primary key, note text);
create table inventory (sku text primary key, qty int not null);
insert into inventory values ('a', 5), ('b', -1), ('c', -2), ('d', -3), ('e', 10);
"#;

/// A source cluster (newest server) with database `app` loaded from `sql`, a temp dir holding
/// `pgdrill.toml`, and a local-folder store in it.
pub struct Bench {
    pub cluster: tk::Cluster,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

impl Bench {
    pub async fn new(sql: &str) -> Bench {
        let cluster = tk::cluster(None);
        let url = empty_db(&cluster, "app").await;
        tk::connect(&url)
            .await
            .batch_execute(sql)
            .await
            .expect("load the fixture");
        let dir = tempfile::tempdir().expect("tmp");
        let store = dir.path().join("store");
        Bench {
            cluster,
            url,
            dir,
            store,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store_s(&self) -> String {
        self.store.display().to_string()
    }

    /// The server as a `--target`: a fresh database is created there per drill.
    pub fn server_url(&self) -> String {
        self.cluster.url("postgres")
    }

    /// Writes `pgdrill.toml`: the store, `policy` (TOML lines for `[policy]`), database
    /// `app` from `APP_DB_URL`, then `drill` (the `[database.drill]` part, checks included).
    pub fn config(&self, policy: &str, drill: &str) {
        let text = format!(
            "[store]\nurl = \"{}\"\n\n[policy]\n{policy}\n\n[[database]]\nname = \"app\"\nurl_env = \"APP_DB_URL\"\n\n{drill}\n",
            self.store_s()
        );
        std::fs::write(self.path().join("pgdrill.toml"), text).expect("write config");
    }

    /// Runs pgdrill in the bench dir with `APP_DB_URL` set, plus `env`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut all = vec![("APP_DB_URL", self.url.as_str())];
        all.extend_from_slice(env);
        run(self.path(), args, &all)
    }

    /// Backs up `app` with the current config; returns the backup id.
    pub fn backup(&self) -> String {
        let out = self.run(&["--json", "backup"], &[]);
        out.ok();
        out.json()["backups"][0]["backup_id"]
            .as_str()
            .expect("backup id")
            .to_string()
    }

    /// `pgdrill --json drill <extra>` with `env`.
    pub fn drill(&self, extra: &[&str], env: &[(&str, &str)]) -> Out {
        let mut args = vec!["--json", "drill"];
        args.extend_from_slice(extra);
        self.run(&args, env)
    }

    /// Path of a stored backup's manifest.
    pub fn manifest_path(&self, id: &str) -> PathBuf {
        self.store.join(format!("app/backups/{id}/manifest.json"))
    }

    /// Rewrites a stored manifest through `edit` (the drill code trusts what it reads there).
    pub fn edit_manifest(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        let p = self.manifest_path(id);
        let mut m: Value =
            serde_json::from_slice(&std::fs::read(&p).expect("read manifest")).expect("json");
        edit(&mut m);
        std::fs::write(&p, serde_json::to_vec_pretty(&m).expect("ser")).expect("write manifest");
    }

    /// Databases on the bench server whose name starts with `pgdrill_drill_`.
    pub async fn drill_databases(&self) -> Vec<String> {
        let c = tk::connect(&self.server_url()).await;
        c.query(
            "select datname from pg_database where datname like 'pgdrill\\_drill\\_%' order by 1",
            &[],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|r| r.get(0))
        .collect()
    }
}

/// The check in a drill's `--json` result by name; panics with the whole result otherwise.
pub fn check<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name:?} in {result:#}"))
}

/// Asserts a check's `passed` and that its `actual` contains `actual_has`.
#[track_caller]
pub fn assert_check(result: &Value, name: &str, passed: bool, actual_has: &str) {
    let c = check(result, name);
    assert_eq!(c["passed"], passed, "check {name:?}: {c:#}");
    let actual = c["actual"].as_str().expect("actual");
    assert!(
        actual.contains(actual_has),
        "check {name:?}: actual {actual:?} should contain {actual_has:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A bounded HTTP server on 127.0.0.1:0.

/// Answers scripted responses (one per connection, `Connection: close`), records each
/// request's head, and stops by itself after the script or after 60 s.
pub struct HttpServer {
    pub base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(script: &[(u16, &str)]) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Vec<(u16, String)> = script.iter().map(|(s, b)| (*s, b.to_string())).collect();
        let (reqs, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while served < script.len() && Instant::now() < deadline {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let mut conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if let Ok(mut r) = reqs.lock() {
                    r.push(String::from_utf8_lossy(&head).into_owned());
                }
                let (status, body) = &script[served];
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
                let _ = conn.flush();
                served += 1;
            }
        });
        HttpServer {
            base,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The value of `header` (case-insensitive) in request `i`.
    pub fn header(&self, i: usize, header: &str) -> Option<String> {
        let reqs = self.requests();
        let head = reqs.get(i)?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(header)
                .then(|| v.trim().to_string())
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A shim PGDRILL_PG_BIN: one install (the newest server) whose programs append their name
// and arguments to a log before running the real one, so a test knows exactly which
// PostgreSQL programs a pgdrill run started (initdb = a throwaway cluster, pg_restore = a
// restore) and where its cluster lived.

pub struct Shims {
    _dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub log: PathBuf,
}

impl Shims {
    pub fn new() -> Shims {
        let install = tk::server_install(None);
        let dir = tempfile::Builder::new()
            .prefix("pgdrill-shims-")
            .tempdir()
            .expect("tmp");
        // The server runs as an unprivileged user when the tests run as root: it must be
        // able to reach the shims and append to the log.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let log = dir.path().join("calls.log");
        std::fs::write(&log, "").expect("log");
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        for e in std::fs::read_dir(&install.bin_dir)
            .expect("bin dir")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let real = std::fs::canonicalize(e.path()).expect("real path");
            let shim = bin.join(&name);
            std::fs::write(
                &shim,
                format!(
                    "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexec '{}' \"$@\"\n",
                    log.display(),
                    real.display()
                ),
            )
            .expect("shim");
            std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Shims {
            _dir: dir,
            bin,
            log,
        }
    }

    pub fn bin_s(&self) -> String {
        self.bin.display().to_string()
    }

    /// Every call except version probes, as "program args".
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.ends_with("--version") && !l.ends_with("-V"))
            .map(str::to_string)
            .collect()
    }
}

/// Live processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

/// Panics unless `doc` matches `docs/result.schema.json` (the validator is
/// `pgdrill_testkit::schema`, shared with `docs/schemas/`).
#[track_caller]
pub fn assert_valid_result(doc: &Value) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/result.schema.json");
    pgdrill_testkit::schema::assert_valid(p.to_str().expect("utf8 path"), doc);
}

/// The four evidence files of a drill.
pub const EVIDENCE: [&str; 4] = ["drill.log", "report.html", "report.md", "result.json"];

/// Asserts `dir` holds exactly the four evidence files and returns their text.
#[track_caller]
pub fn evidence_in(dir: &Path) -> Vec<(String, String)> {
    assert_eq!(
        files_below(dir),
        EVIDENCE.to_vec(),
        "evidence in {}",
        dir.display()
    );
    EVIDENCE
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(dir.join(f)).expect("read evidence"),
            )
        })
        .collect()
}
