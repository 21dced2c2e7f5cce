//! The pipe and spool restores: one pg_restore over the whole archive, reading the stream
//! (its last bytes held back until the digests matched) or a verified spool file; and the
//! two steps of a `pg_dump --create` dump.

use super::command::{list_command, list_file, spawn, wait, PgRestore, STOP_GRACE};
use super::plan::{Database, RestorePlan};
use super::verdict::{classify, is_error_line, tail, verdict};
use super::{check_cancel, command, RestoreJob, Traces};
use crate::manifest::StoredObject;
use crate::verify::decode_object;
use crate::{Error, Result};
use pgdrill_pg::PgInstall;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The pg_restore options the plan sets for a run over the whole archive.
fn whole_archive<'a>(plan: &RestorePlan, list: Option<&'a Path>) -> PgRestore<'a> {
    PgRestore {
        create: plan.database == Database::FromDump,
        clean: plan.clean,
        single_txn: plan.single_transaction,
        privileges: plan.privileges,
        list,
        ..PgRestore::default()
    }
}

/// The pipe restore: one pg_restore reading the decoded stream on stdin, its last bytes
/// held back until the digests matched. Returns (download seconds: until the last byte was
/// read, restore seconds: until pg_restore ended, ignored errors); the two overlap.
pub(super) async fn pipe(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    dump: &StoredObject,
    plan: &RestorePlan,
    list: Option<&Path>,
) -> Result<(f64, f64, Vec<String>)> {
    let passfile = job
        .target
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let pf = passfile.as_ref().map(|f| f.path());
    let single_txn = plan.single_transaction;
    let mut cancel = job.read.cancel.clone();
    let t = Instant::now();
    job.read.progress.stage("download + restore");
    let cmd = whole_archive(plan, list).command(job, install, pf);
    let mut proc = spawn(cmd)?;
    let Some(stdin) = proc.take_stdin() else {
        return Err(Error::Failed("cannot connect to pg_restore's input".into()));
    };
    let watcher = {
        let mut c = cancel.clone();
        proc.terminate_on(async move { c.cancelled().await })
    };
    let decoded = decode_object(
        job.store,
        job.manifest,
        dump,
        Holdback::new(stdin),
        &job.read,
    )
    .await;
    let held = match decoded {
        Ok((_, held)) => held,
        Err(e) => {
            watcher.finish().await;
            // Whether pg_restore stopped by itself (its verdict matters) or is still
            // waiting for input (the failure was upstream: stop it, blame the stream).
            let status = proc.exited_within(Duration::from_millis(300)).await;
            proc.stop(STOP_GRACE).await;
            let lines = proc.stderr_lines();
            check_cancel(job)?;
            return Err(explain_early_stop(job, dump, e, status, &lines, single_txn).await);
        }
    };
    // Every byte is read: what pg_restore does now is the last table's rows and then the
    // indexes and constraints (post-data), which can take long; a stage of its own.
    let download = t.elapsed().as_secs_f64();
    job.read.progress.stage("restore: indexes and constraints");
    // pg_restore may still be busy with the held-back tail: the watcher stays on.
    let released = held.release();
    watcher.finish().await;
    let status = wait(&mut proc, &mut cancel).await;
    let lines = proc.stderr_lines();
    let status = status?;
    if let Err(e) = released {
        return Err(verdict(Some(status), &lines, job.ignore_errors, single_txn)
            .err()
            .unwrap_or_else(|| {
                Error::Failed(format!("pg_restore stopped reading the dump: {e}"))
            }));
    }
    let ignored = verdict(Some(status), &lines, job.ignore_errors, single_txn)?;
    Ok((download, t.elapsed().as_secs_f64(), ignored))
}

/// The spool restore: the dump downloaded and verified into a temp file, then
/// `pg_restore -j N` (after `create_from_dump` for a `--create` dump). Returns (download
/// seconds, restore seconds, ignored errors).
pub(super) async fn spool(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    dump: &StoredObject,
    plan: &RestorePlan,
    list: Option<&Path>,
    created: &AtomicBool,
    traces: &Traces,
) -> Result<(f64, f64, Vec<String>)> {
    let passfile = job
        .target
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let pf = passfile.as_ref().map(|f| f.path());
    let spool = spool_file(job)?;
    // Should pgdrill be killed outright, the spool goes too (see `pgdrill_pg::reaper`).
    let _reaper =
        pgdrill_pg::reaper::Reaper::arm(pgdrill_pg::reaper::Watch::Nothing, Some(spool.path()));
    let t = Instant::now();
    job.read.progress.stage("download");
    let file = spool
        .reopen()
        .map_err(|e| Error::Failed(format!("cannot open the spool file: {e}")))?;
    let (_, file) = decode_object(
        job.store,
        job.manifest,
        dump,
        std::io::BufWriter::with_capacity(1 << 20, file),
        &job.read,
    )
    .await?;
    // No fsync: the spool is a throwaway file pg_restore reads back at once.
    let mut file = file
        .into_inner()
        .map_err(|e| Error::Failed(format!("cannot write the spool file: {e}")))?;
    // Our dumps came through a pipe, so their TOC has no data offsets; set them as
    // pg_dump does for files, or every pg_restore worker scans for its blocks.
    let patched =
        tokio::task::spawn_blocking(move || pgdrill_pg::archive::set_data_offsets(&mut file))
            .await
            .map_err(|e| Error::Failed(format!("the spool stage crashed: {e}")))?;
    if let Err(e) = patched {
        // Only a speed-up: pg_restore still reads an archive without offsets.
        job.read
            .progress
            .stage(&format!("restore (data offsets not set: {e})"));
    }
    let download = t.elapsed().as_secs_f64();
    check_cancel(job)?;
    let (restore, ignored) =
        run_spooled(job, install, plan, list, created, traces, spool.path(), pf).await?;
    Ok((download, restore, ignored))
}

/// pg_restore over a verified spool (a custom-format file or an archive directory), after
/// `create_from_dump` for a `--create` dump. Returns (restore seconds, ignored errors).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_spooled(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    plan: &RestorePlan,
    list: Option<&Path>,
    created: &AtomicBool,
    traces: &Traces,
    archive: &Path,
    pf: Option<&Path>,
) -> Result<(f64, Vec<String>)> {
    let new_database = plan.database != Database::Existing;
    let mut cancel = job.read.cancel.clone();
    let t = Instant::now();
    let mut run = PgRestore {
        jobs: Some(plan.jobs),
        file: Some(archive),
        ..whole_archive(plan, list)
    };
    if run.create {
        job.read.progress.stage("create the database");
        // With --clean, pg_restore drops the existing database first.
        if !new_database {
            traces.changed.store(true, Ordering::SeqCst);
        }
        create_from_dump(job, install, &run, pf).await?;
        if new_database {
            created.store(true, Ordering::SeqCst);
        }
        // The rest goes into that new, empty database: nothing to clean.
        run.create = false;
        run.clean = false;
    }
    job.read.progress.stage("restore");
    if !new_database && !run.single_txn {
        traces.changed.store(true, Ordering::SeqCst);
    }
    // The items done of those the archive's list selects, from pg_restore's --verbose lines.
    let (status, lines) =
        command::run_counted(job, install, &run, pf, &job.read.progress, &mut cancel).await?;
    let ignored = verdict(Some(status), &lines, job.ignore_errors, run.single_txn)?;
    Ok((t.elapsed().as_secs_f64(), ignored))
}

/// `pg_restore --create`, first step: creates the dump's database (with its settings and
/// comment) and nothing else, stopping at the first error. The guards saw no such database
/// (or `--clean` replaces it), but one created since, by someone else, must be neither restored
/// into nor dropped on failure: a second step restores the rest once this one succeeded.
pub(super) async fn create_from_dump(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    run: &PgRestore<'_>,
    passfile: Option<&Path>,
) -> Result<()> {
    let spool = run
        .file
        .ok_or_else(|| Error::Failed("the database step needs the spool file".into()))?;
    // With --create, pg_restore restores the DATABASE entries whatever the list says; the list
    // adds the database's comment and security labels.
    let mut ls = spawn(list_command(job, install, spool))?;
    let stdout = ls.take_stdout();
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if let Some(mut s) = stdout {
            std::io::Read::read_to_end(&mut s, &mut out)?;
        }
        Ok::<_, std::io::Error>(out)
    });
    let status = wait(&mut ls, &mut job.read.cancel.clone()).await?;
    let out = read
        .await
        .map_err(|e| Error::Failed(format!("pg_restore --list crashed: {e}")))?
        .map_err(|e| Error::Failed(format!("cannot run pg_restore --list: {e}")))?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "pg_restore --list cannot read the dump ({status}): {}",
            ls.stderr_lines().join("\n").trim()
        )));
    }
    let list = list_file(&database_entries(&String::from_utf8_lossy(&out)))?;
    let step = PgRestore {
        jobs: Some(1),
        single_txn: false,
        exit_on_error: true,
        list: Some(list.path()),
        ..run.clone()
    };
    let cmd = step.command(job, install, passfile);
    let (status, lines) = command::run(cmd, &mut job.read.cancel.clone()).await?;
    if status.success() {
        return Ok(());
    }
    let (failing, _) = classify(&lines, &[]);
    let db = &job.target.dbname;
    if !job.clean
        && failing
            .iter()
            .any(|l| l.contains(&format!("database \"{db}\" already exists")))
    {
        return Err(Error::Refused(format!(
            "the database `{db}` was created on the target by someone else after the checks passed; nothing was restored into it or dropped (restore elsewhere, or pass --clean to replace it)"
        )));
    }
    Err(Error::Failed(format!(
        "pg_restore could not create the database `{db}`, so nothing was restored: {}",
        if failing.is_empty() {
            tail(&lines, 3)
        } else {
            failing.join(" ;; ")
        }
    )))
}

/// The entries of a `pg_restore --list --create` that belong to the database object itself.
pub(super) fn database_entries(toc: &str) -> String {
    toc.lines()
        .filter(|l| {
            // "ID; CATALOG OID DESC SCHEMA NAME OWNER"; the database's are "DATABASE - app ..."
            // and "COMMENT - DATABASE app ...".
            let rest = l.splitn(4, ' ').nth(3).unwrap_or("");
            !l.starts_with(';') && (rest.starts_with("DATABASE ") || rest.contains(" - DATABASE "))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The stream into pg_restore ended early: a corrupt or undecryptable object, a store
/// failure, or pg_restore itself stopped reading. pg_restore may stop *because* the bytes were
/// corrupt before the digest could tell, so the object is re-checked before blaming it.
pub(super) async fn explain_early_stop(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    e: Error,
    status: Option<ExitStatus>,
    lines: &[String],
    single_txn: bool,
) -> Error {
    if matches!(e, Error::Integrity(_) | Error::Key(_)) {
        return e;
    }
    job.read.progress.stage("verify the stored dump");
    if let Err(v @ (Error::Integrity(_) | Error::Key(_))) =
        decode_object(job.store, job.manifest, dump, std::io::sink(), &job.read).await
    {
        return v;
    }
    let rolled_back = if single_txn {
        "; the restore ran in one transaction, which was rolled back, so the target is unchanged"
    } else {
        ""
    };
    // pg_restore complaining that its input ended is the consequence of the stream stopping,
    // not a cause: then the stream's own error is the one to report.
    let (mut failing, _) = classify(lines, &[]);
    failing.retain(|l| !l.contains("could not read from input file") && !l.contains("end of file"));
    if failing.is_empty() && lines.iter().any(|l| is_error_line(l)) {
        return e;
    }
    if failing.is_empty() {
        return match status {
            Some(s) if !s.success() => Error::Failed(format!(
                "pg_restore stopped before the end of the dump ({s}): {}{rolled_back}",
                tail(lines, 3)
            )),
            _ => e,
        };
    }
    Error::Failed(format!(
        "pg_restore stopped before the end of the dump: {}{rolled_back}",
        failing
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ;; ")
    ))
}

/// Bytes an unprivileged user may still write in the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

pub(super) fn spool_file(job: &RestoreJob<'_>) -> Result<tempfile::NamedTempFile> {
    let dir = spool_base(
        job,
        "the parallel restore spools",
        "free space, set TMPDIR, or use --jobs 1 (no spool)",
    )?;
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

/// The folder a restore spools into (`--spool-dir`, else the temp directory), once it has
/// room for the dump's raw size and a margin; else an error naming `what` and what to do.
pub(super) fn spool_base(job: &RestoreJob<'_>, what: &str, advice: &str) -> Result<PathBuf> {
    let dir = job.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let raw = job.manifest.raw_bytes;
    let need = raw.saturating_add(raw / 10).saturating_add(64 << 20);
    let free = free_bytes(&dir).map_err(|e| {
        Error::Invalid(format!("cannot check free space in {}: {e}", dir.display()))
    })?;
    if free < need {
        return Err(Error::Failed(format!(
            "{} has {} MiB free but {what} {} MiB: {advice}",
            dir.display(),
            free >> 20,
            need >> 20
        )));
    }
    Ok(dir)
}

/// Holds back the last bytes written until `release`, so the consumer cannot reach the end
/// of the stream before the producer has verified it.
pub struct Holdback<W: Write> {
    inner: W,
    tail: Vec<u8>,
}

pub(super) const HOLD: usize = 64 << 10;

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
    fn the_database_step_lists_only_the_database_itself() {
        let toc =
            ";\n; Archive created at 2026-12-03\n;\n3344; 1262 16384 DATABASE - app postgres\n\
3345; 0 0 COMMENT - DATABASE app postgres\n3346; 0 0 DATABASE PROPERTIES - app postgres\n\
214; 1259 16388 TABLE public t postgres\n215; 0 0 COMMENT public TABLE t postgres\n\
3338; 0 16388 TABLE DATA public t postgres\n";
        assert_eq!(
            database_entries(toc),
            "3344; 1262 16384 DATABASE - app postgres\n3345; 0 0 COMMENT - DATABASE app postgres\n\
3346; 0 0 DATABASE PROPERTIES - app postgres\n"
        );
    }
}
