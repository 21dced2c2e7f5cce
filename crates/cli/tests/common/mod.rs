//! Shared harness for the CLI integration tests: run the real binary with a controlled
//! environment, and start sources with the testkit fixture.
#![allow(dead_code)]

use pgdrill_testkit as tk;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgdrill"))
}

/// The PostgreSQL bin dirs the test machine has (system + scripts/setup-test-deps.sh).
pub fn pg_paths() -> String {
    let mut dirs: Vec<String> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(tk::TEST_DEPS_ROOT) {
        for e in rd.flatten() {
            let bin = e.path().join("bin");
            if e.file_name().to_string_lossy().starts_with("pg") && bin.is_dir() {
                dirs.push(bin.display().to_string());
            }
        }
    }
    dirs.sort();
    dirs.join(":")
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }
}

/// A `pgdrill` command with a clean environment: PATH, HOME, and the test PG dirs only.
pub fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        )
        .env("PGDRILL_PG_PATHS", pg_paths())
        .current_dir(cwd)
        .stdin(Stdio::null());
    c
}

pub fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = cmd(cwd);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run pgdrill");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A source cluster with database `app` holding the testkit fixture.
pub struct Source {
    pub cluster: tk::Cluster,
    pub url: String,
}

pub async fn source(major: Option<u32>) -> Source {
    let cluster = tk::cluster(major);
    let url = empty_db(&cluster, "app").await;
    tk::load_fixture(&url).await;
    Source { cluster, url }
}

/// Creates an empty LATIN1 database (C collation) on a cluster and returns its URL.
pub async fn latin1_db(cluster: &tk::Cluster, name: &str) -> String {
    let admin = tk::connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!(
            "create database \"{name}\" encoding 'LATIN1' lc_collate 'C' lc_ctype 'C' template template0"
        ))
        .await
        .expect("latin1 database");
    cluster.url(name)
}

/// Creates an empty database on a cluster and returns its URL.
pub async fn empty_db(cluster: &tk::Cluster, name: &str) -> String {
    let admin = tk::connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("create database \"{name}\""))
        .await
        .expect("create db");
    cluster.url(name)
}

/// pg_dump for fingerprints: the newest with full client tools.
pub fn pg_dump() -> PathBuf {
    tk::pg_bin("pg_dump", 0)
}

pub fn backup_ids(store: &Path, db: &str) -> Vec<String> {
    let dir = store.join(db).join("backups");
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Every file below `dir` (relative paths), for "nothing was left behind" checks.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `init --generate-key` in `dir`: writes a private identity file `pgdrill-age.key` there
/// (mode 0600, checked) and returns its recipient; the generated config is removed.
pub fn generate_key(dir: &Path) -> String {
    let out = run(
        dir,
        &["--json", "init", "--generate-key", "--path", "pgdrill.toml"],
        &[],
    );
    out.ok();
    let j = out.json();
    let key = dir.join("pgdrill-age.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "identity file must be private");
    std::fs::remove_file(dir.join("pgdrill.toml")).expect("rm config");
    j["recipient"].as_str().expect("recipient").to_string()
}

/// Lowercase hex SHA-256 of `bytes`, computed by `sha256sum` (not by the code under test).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Borrowed `(name, value)` pairs of an owned environment, as [`run`] takes them.
pub fn env_refs(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A local webhook receiver: answers 200 and records each request's body.
pub fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
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
            log.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}
