//! Restore: guards first (exit 5, nothing touched), then download → verify → pg_restore.
//!
//! Integrity before visibility:
//! - `jobs == 1` streams into pg_restore but holds back the stream's last bytes until every
//!   digest matched, so pg_restore cannot finish (or commit) a corrupt or truncated dump;
//! - `jobs > 1` spools to a temp file and verifies before pg_restore starts;
//! - a database pgdrill created is dropped on any failure; an existing database (`--clean`)
//!   is restored in one transaction when `jobs == 1`, so a failure leaves it as it was.

use crate::cancel::Cancel;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::verify::{decode_object, ReadOpts};
use crate::{Error, Result};
use pgdrill_pg::client;
use pgdrill_pg::{ConnSpec, PgInstall, PgTools};
use pgdrill_store::Store;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct RestoreJob<'a> {
    pub store: &'a Store,
    pub manifest: &'a Manifest,
    pub target: ConnSpec,
    /// The configured source of this database, when known (guard: never restore over it).
    pub source: Option<ConnSpec>,
    pub protected_targets: &'a [String],
    pub tools: &'a PgTools,
    pub read: ReadOpts,
    pub jobs: u32,
    pub clean: bool,
    pub allow_create: bool,
    /// Substrings of pg_restore error lines that do not fail the restore.
    pub ignore_errors: &'a [String],
    pub spool_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    pub backup_id: String,
    pub target: String,
    pub created_database: bool,
    pub jobs: u32,
    pub pg_restore: String,
    pub download_seconds: f64,
    pub restore_seconds: f64,
    pub analyze_seconds: f64,
    pub total_seconds: f64,
    /// pg_restore errors that the allowlist covered.
    pub ignored_errors: Vec<String>,
}

/// Checks every guard without changing anything. Returns whether the target database exists.
pub async fn preflight(job: &RestoreJob<'_>) -> Result<bool> {
    let t = &job.target;
    for p in job.protected_targets {
        if is_protected(t, p) {
            return Err(Error::Refused(format!(
                "{} is listed in protected_targets; nothing was changed (restore somewhere else)",
                t.redacted()
            )));
        }
    }
    let m = job.manifest;
    let same_as_recorded = (
        m.source.host.to_ascii_lowercase(),
        m.source.port,
        m.source.dbname.clone(),
    );
    let fold = |k: (String, u16, String)| {
        ConnSpec {
            host: k.0,
            port: k.1,
            dbname: k.2,
            ..t.clone()
        }
        .identity_key()
    };
    if t.identity_key() == fold(same_as_recorded)
        || job
            .source
            .as_ref()
            .map(|s| s.identity_key() == t.identity_key())
            .unwrap_or(false)
    {
        return Err(Error::Refused(format!(
            "{} is the backup's source database; nothing was changed (restore into another database)",
            t.redacted()
        )));
    }
    if m.pg_dump.creates_database && !job.allow_create {
        return Err(Error::Refused(
            "this dump re-creates its database (pg_dump --create); nothing was changed (pass --allow-create if that is intended)".into(),
        ));
    }
    let admin = t.with_dbname(&maintenance_db(t));
    let client = client::connect(&admin).await?;
    let facts = client::server_facts(&client, &admin).await?;
    if let (Some(a), Some(b)) = (&facts.system_identifier, &m.server.system_identifier) {
        if a == b && t.dbname == m.source.dbname {
            return Err(Error::Refused(format!(
                "{} is on the backup's source server (same system identifier) and has the same database name; nothing was changed",
                t.redacted()
            )));
        }
    }
    let exists = client::database_exists(&client, &admin, &t.dbname).await?;
    if exists {
        let target_client = client::connect(t).await?;
        let objects = client::user_object_count(&target_client, t).await?;
        if objects > 0 && !job.clean {
            return Err(Error::Refused(format!(
                "{} is not empty ({objects} objects); nothing was changed (pass --clean to replace what the dump contains, or restore into a new database)",
                t.redacted()
            )));
        }
    }
    let available = client::available_extensions(&client, &admin).await?;
    let missing: Vec<&String> = m
        .content
        .extensions
        .iter()
        .filter(|e| e.as_str() != "plpgsql" && !available.contains(e))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Failed(format!(
            "the target server lacks extensions the backup uses: {}; install them there first (nothing was restored)",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(exists)
}

fn maintenance_db(t: &ConnSpec) -> String {
    if t.dbname == "postgres" {
        "template1".into()
    } else {
        "postgres".into()
    }
}

fn is_protected(t: &ConnSpec, entry: &str) -> bool {
    if entry.contains("://") {
        return ConnSpec::parse_with_env(entry, &[])
            .map(|p| {
                let (h, port, db) = p.identity_key();
                let (th, tport, tdb) = t.identity_key();
                // A URL without a path protects every database on that server.
                h == th && port == tport && (db == tdb || !entry_has_db(entry))
            })
            .unwrap_or(false);
    }
    t.host.eq_ignore_ascii_case(entry)
}

fn entry_has_db(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split('?').next().unwrap_or("").contains('/'))
        .map(|has| has && !url.split('?').next().unwrap_or("").ends_with('/'))
        .unwrap_or(false)
}

/// Restores a backup into `job.target`.
pub async fn run(job: RestoreJob<'_>) -> Result<RestoreReport> {
    let t0 = Instant::now();
    let exists = preflight(&job).await?;
    let dump_major = job
        .manifest
        .pg_dump
        .version
        .split('.')
        .next()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let install = job.tools.pick("pg_restore", dump_major)?;
    let admin = job.target.with_dbname(&maintenance_db(&job.target));
    if !exists {
        let c = client::connect(&admin).await?;
        client::create_database(&c, &admin, &job.target.dbname).await?;
    }
    let outcome = restore_into(&job, &install, exists).await;
    match outcome {
        Ok((download, restore, ignored)) => {
            job.read.progress.stage("analyze");
            let ta = Instant::now();
            let c = client::connect(&job.target).await?;
            c.batch_execute("analyze").await.map_err(|e| {
                Error::Failed(format!(
                    "ANALYZE failed after the restore: {}",
                    client::describe(&e)
                ))
            })?;
            Ok(RestoreReport {
                backup_id: job.manifest.backup_id.to_string(),
                target: job.target.redacted(),
                created_database: !exists,
                jobs: job.jobs,
                pg_restore: format!(
                    "{} ({})",
                    install.version,
                    install.bin("pg_restore").display()
                ),
                download_seconds: download,
                restore_seconds: restore,
                analyze_seconds: ta.elapsed().as_secs_f64(),
                total_seconds: t0.elapsed().as_secs_f64(),
                ignored_errors: ignored,
            })
        }
        Err(e) => {
            if !exists {
                if let Ok(c) = client::connect(&admin).await {
                    let _ = client::drop_database(&c, &admin, &job.target.dbname).await;
                }
            }
            Err(e)
        }
    }
}

/// Returns (download seconds, restore seconds, ignored errors).
async fn restore_into(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    existed: bool,
) -> Result<(f64, f64, Vec<String>)> {
    let dump = job
        .manifest
        .dump_object()
        .ok_or_else(|| Error::Integrity("the manifest lists no dump".into()))?
        .clone();
    let passfile = job
        .target
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let pf = passfile.as_ref().map(|f| f.path().to_path_buf());
    if job.jobs <= 1 {
        let single_txn = existed;
        let t = Instant::now();
        job.read.progress.stage("download + restore");
        let mut child = spawn_pg_restore(install, job, None, single_txn, pf.as_deref())?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Failed("cannot open pg_restore's input".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::Failed("cannot read pg_restore's errors".into()))?;
        let child = Arc::new(Mutex::new(child));
        let errors = collect_lines(stderr);
        let decoded = decode_object(
            job.store,
            job.manifest,
            &dump,
            Holdback::new(stdin),
            &job.read,
        )
        .await;
        let held = match decoded {
            Ok((_, held)) => held,
            Err(e) => {
                kill(&child);
                let _ = errors.join();
                return Err(e);
            }
        };
        let released = held.release();
        let status = wait(&child).await;
        let lines = errors.join().unwrap_or_default();
        if let Err(e) = released {
            return Err(pg_restore_failure(status, &lines, job.ignore_errors)
                .err()
                .unwrap_or_else(|| {
                    Error::Failed(format!("pg_restore stopped reading the dump: {e}"))
                }));
        }
        let ignored = pg_restore_failure(status, &lines, job.ignore_errors)?;
        let secs = t.elapsed().as_secs_f64();
        Ok((secs, secs, ignored))
    } else {
        let spool = spool_file(job)?;
        let t = Instant::now();
        job.read.progress.stage("download");
        let file = spool
            .reopen()
            .map_err(|e| Error::Failed(format!("cannot open the spool file: {e}")))?;
        let (_, file) = decode_object(
            job.store,
            job.manifest,
            &dump,
            std::io::BufWriter::with_capacity(1 << 20, file),
            &job.read,
        )
        .await?;
        file.into_inner()
            .map_err(|e| Error::Failed(format!("cannot write the spool file: {e}")))?
            .sync_all()
            .map_err(|e| Error::Failed(format!("cannot write the spool file: {e}")))?;
        let download = t.elapsed().as_secs_f64();
        let t = Instant::now();
        job.read.progress.stage("restore");
        let mut child = spawn_pg_restore(install, job, Some(spool.path()), false, pf.as_deref())?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::Failed("cannot read pg_restore's errors".into()))?;
        let child = Arc::new(Mutex::new(child));
        let errors = collect_lines(stderr);
        let mut cancel = job.read.cancel.clone();
        let status = tokio::select! {
            s = wait(&child) => s,
            _ = cancel.cancelled() => { kill(&child); return Err(Error::Failed("the restore was interrupted by a signal".into())); }
        };
        let lines = errors.join().unwrap_or_default();
        let ignored = pg_restore_failure(status, &lines, job.ignore_errors)?;
        Ok((download, t.elapsed().as_secs_f64(), ignored))
    }
}

fn spool_file(job: &RestoreJob<'_>) -> Result<tempfile::NamedTempFile> {
    let dir = job.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let need = job.manifest.raw_bytes + job.manifest.raw_bytes / 10 + (64 << 20);
    let stat = rustix::fs::statvfs(&dir).map_err(|e| {
        Error::Invalid(format!("cannot check free space in {}: {e}", dir.display()))
    })?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < need {
        return Err(Error::Failed(format!(
            "{} has {} MiB free but the parallel restore spools {} MiB: free space, set TMPDIR, or use --jobs 1 (no spool)",
            dir.display(),
            free >> 20,
            need >> 20
        )));
    }
    tempfile::Builder::new()
        .prefix("pgdrill-spool-")
        .tempfile_in(&dir)
        .map_err(|e| {
            Error::Failed(format!(
                "cannot create a spool file in {}: {e}",
                dir.display()
            ))
        })
}

fn spawn_pg_restore(
    install: &PgInstall,
    job: &RestoreJob<'_>,
    file: Option<&std::path::Path>,
    single_txn: bool,
    passfile: Option<&std::path::Path>,
) -> Result<Child> {
    let mut cmd = Command::new(install.bin("pg_restore"));
    cmd.arg(format!("--dbname={}", job.target.dbname)).args([
        "--no-owner",
        "--no-privileges",
        "--no-password",
    ]);
    if job.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if single_txn {
        cmd.arg("--single-transaction");
    }
    if job.manifest.pg_dump.creates_database && job.allow_create {
        cmd.arg("--create");
    }
    match file {
        Some(f) => {
            cmd.arg(format!("--jobs={}", job.jobs)).arg(f);
            cmd.stdin(Stdio::null());
        }
        None => {
            cmd.stdin(Stdio::piped());
        }
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    for v in ConnSpec::inherited_vars_to_clear() {
        cmd.env_remove(v);
    }
    cmd.envs(job.target.child_env(passfile));
    cmd.spawn().map_err(|e| {
        Error::Failed(format!(
            "cannot start {}: {e}",
            install.bin("pg_restore").display()
        ))
    })
}

fn collect_lines(stderr: std::process::ChildStderr) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(stderr);
        std::io::BufRead::lines(reader)
            .map_while(|l| l.ok())
            .take(10_000)
            .collect()
    })
}

fn kill(child: &Arc<Mutex<Child>>) {
    if let Ok(mut c) = child.lock() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

async fn wait(child: &Arc<Mutex<Child>>) -> Option<std::process::ExitStatus> {
    let child = child.clone();
    tokio::task::spawn_blocking(move || child.lock().ok().and_then(|mut c| c.wait().ok()))
        .await
        .ok()
        .flatten()
}

/// pg_restore's verdict: `Ok(ignored errors)` when it succeeded or every error is
/// allowlisted, else an error listing the failing statements.
pub fn pg_restore_failure(
    status: Option<std::process::ExitStatus>,
    lines: &[String],
    allow: &[String],
) -> Result<Vec<String>> {
    let mut failing = Vec::new();
    let mut ignored = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.contains("error:") && !l.contains("errors ignored on restore") {
            let mut entry = l.trim().to_string();
            if let Some(next) = lines
                .get(i + 1)
                .filter(|n| n.trim_start().starts_with("Command was:"))
            {
                entry.push_str(" | ");
                entry.push_str(next.trim());
                i += 1;
            }
            if allow.iter().any(|a| entry.contains(a.as_str())) {
                ignored.push(entry);
            } else {
                failing.push(entry);
            }
        }
        i += 1;
    }
    let ok_status = status.map(|s| s.success()).unwrap_or(false);
    if failing.is_empty() && (ok_status || !ignored.is_empty()) {
        return Ok(ignored);
    }
    if failing.is_empty() {
        let how = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no status".into());
        let tail = lines
            .iter()
            .rev()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(" / ");
        return Err(Error::Failed(format!("pg_restore failed ({how}): {tail}")));
    }
    let shown: Vec<&String> = failing.iter().take(10).collect();
    Err(Error::Failed(format!(
        "pg_restore reported {} error(s), so the restore failed (allowlist known ones in [restore] ignore_errors): {}",
        failing.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ;; ")
    )))
}

/// Holds back the last bytes written until `release`, so the consumer cannot reach the end
/// of the stream before the producer has verified it.
pub struct Holdback<W: Write> {
    inner: W,
    tail: Vec<u8>,
}

const HOLD: usize = 64 << 10;

impl<W: Write> Holdback<W> {
    pub fn new(inner: W) -> Self {
        Holdback {
            inner,
            tail: Vec::with_capacity(2 * HOLD),
        }
    }
    /// Writes the held bytes and closes the stream.
    pub fn release(mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.tail)?;
        self.inner.flush()
    }
}

impl<W: Write> Write for Holdback<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 2 * HOLD {
            let send = self.tail.len() - HOLD;
            self.inner.write_all(&self.tail[..send])?;
            self.tail.drain(..send);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Progress and cancellation for a restore, bundled for callers.
pub fn read_opts(
    keys: Arc<crate::crypto::DecryptionKeys>,
    progress: Arc<Progress>,
    cancel: Cancel,
    jobs: u32,
) -> ReadOpts {
    ReadOpts {
        keys,
        progress,
        cancel,
        parallel: jobs.max(1) as usize * 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdback_keeps_the_tail_until_released() {
        let mut h = Holdback::new(Vec::new());
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        h.write_all(&data).expect("write");
        assert!(h.inner.len() < data.len() - HOLD + 1);
        assert!(h.inner.len() >= data.len() - 2 * HOLD);
        let mut out = Vec::new();
        let Holdback { inner, tail } = h;
        out.extend(inner);
        out.extend(tail);
        assert_eq!(out, data);
    }

    #[test]
    fn pg_restore_errors_are_listed_unless_allowlisted() {
        let lines: Vec<String> = [
            "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
            "Command was: SET transaction_timeout = 0;",
            "pg_restore: error: could not execute query: ERROR:  relation \"x\" already exists",
            "pg_restore: warning: errors ignored on restore: 2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = pg_restore_failure(None, &lines, &[]).expect_err("fails");
        assert!(e.to_string().contains("2 error(s)"));
        assert!(e.to_string().contains("transaction_timeout"));
        let e = pg_restore_failure(None, &lines, &["transaction_timeout".into()])
            .expect_err("one left");
        assert!(e.to_string().contains("1 error(s)"));
        let ok = pg_restore_failure(
            None,
            &lines,
            &["transaction_timeout".into(), "already exists".into()],
        )
        .expect("all allowed");
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn protected_targets_match_hosts_and_urls() {
        let t = ConnSpec::parse_with_env("postgres://u@db.prod:5432/app", &[]).expect("t");
        assert!(is_protected(&t, "db.prod"));
        assert!(is_protected(&t, "postgres://x@db.prod:5432/app"));
        assert!(is_protected(&t, "postgres://x@db.prod:5432/"));
        assert!(!is_protected(&t, "postgres://x@db.prod:5432/other"));
        assert!(!is_protected(&t, "db.staging"));
    }
}
