//! Restoring a backup in the directory layout (a parallel dump, one object per file of the
//! archive directory): every object downloaded, decrypted and checked into a spool directory,
//! then one `pg_restore -Fd -j N` over it. Nothing reaches the target before every digest of
//! every object matched.

use super::plan::RestorePlan;
use super::spool::{run_spooled, spool_base};
use super::{check_cancel, RestoreJob, Traces};
use crate::verify::fill_directory;
use crate::{Error, Result};
use pgdrill_pg::PgInstall;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

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
    let base = spool_base(
        job,
        "the restore of a parallel backup spools",
        "free space or set TMPDIR",
    )?;
    let spool = tempfile::Builder::new()
        .prefix("pgdrill-spool-")
        .tempdir_in(&base)
        .map_err(|e| {
            Error::Failed(format!(
                "cannot create a spool directory in {}: {e}",
                base.display()
            ))
        })?;
    // Should pgdrill be killed outright, the spool goes too (see `pgdrill_pg::reaper`).
    let _reaper =
        pgdrill_pg::reaper::Reaper::arm(pgdrill_pg::reaper::Watch::Nothing, Some(spool.path()));
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
