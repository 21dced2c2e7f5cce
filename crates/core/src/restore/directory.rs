//! Restoring a backup in the directory layout (a parallel dump, one object per file of the
//! archive directory): every object downloaded, decrypted and checked into a spool directory,
//! then one `pg_restore -Fd -j N` over it. Nothing reaches the target before every digest of
//! every object matched.

use super::plan::RestorePlan;
use super::spool::{free_bytes, run_spooled};
use super::{check_cancel, RestoreJob, Traces};
use crate::manifest::{Manifest, StoredObject};
use crate::verify::{decode_object, ReadOpts};
use crate::{Error, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use pgdrill_pg::PgInstall;
use pgdrill_store::Store;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Downloads and checks every object of directory-layout backup `m` into `dir` (which must
/// exist), `parallel` objects at a time. Returns the raw bytes written.
pub async fn fill_directory(
    store: &Store,
    m: &Manifest,
    dir: &Path,
    opts: &ReadOpts,
    parallel: usize,
) -> Result<u64> {
    let objects: Vec<(&StoredObject, &str)> = m
        .objects
        .iter()
        .filter(|o| o.kind != "globals")
        .map(|o| {
            Manifest::archive_file(o).map(|f| (o, f)).ok_or_else(|| {
                Error::Integrity(format!(
                    "the manifest of {} names no archive file for {}",
                    m.backup_id, o.name
                ))
            })
        })
        .collect::<Result<_>>()?;
    let written: Vec<u64> = stream::iter(objects)
        .map(|(o, file)| async move {
            let path = dir.join(file);
            let f = std::fs::File::create(&path)
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            let (d, w) = decode_object(
                store,
                m,
                o,
                std::io::BufWriter::with_capacity(1 << 20, f),
                opts,
            )
            .await?;
            w.into_inner()
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            Ok::<u64, Error>(d.raw_bytes)
        })
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await?;
    Ok(written.iter().sum())
}

/// The restore of a directory-layout backup. Returns (download seconds, restore seconds,
/// ignored errors).
pub(super) async fn restore(
    job: &RestoreJob<'_>,
    install: &PgInstall,
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
    let base = job.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let raw = job.manifest.raw_bytes;
    let need = raw.saturating_add(raw / 10).saturating_add(64 << 20);
    let free = free_bytes(&base).map_err(|e| {
        Error::Invalid(format!(
            "cannot check free space in {}: {e}",
            base.display()
        ))
    })?;
    if free < need {
        return Err(Error::Failed(format!(
            "{} has {} MiB free but the restore of a parallel backup spools {} MiB: free space or set TMPDIR",
            base.display(),
            free >> 20,
            need >> 20
        )));
    }
    let spool = tempfile::Builder::new()
        .prefix("pgdrill-spool-")
        .tempdir_in(&base)
        .map_err(|e| {
            Error::Failed(format!(
                "cannot create a spool directory in {}: {e}",
                base.display()
            ))
        })?;
    let t = Instant::now();
    job.read.progress.stage("download");
    fill_directory(
        job.store,
        job.manifest,
        spool.path(),
        &job.read,
        plan.jobs as usize,
    )
    .await?;
    let download = t.elapsed().as_secs_f64();
    check_cancel(job)?;
    let (restore, ignored) =
        run_spooled(job, install, plan, list, created, traces, spool.path(), pf).await?;
    Ok((download, restore, ignored))
}
