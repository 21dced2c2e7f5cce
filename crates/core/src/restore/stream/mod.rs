//! Streamed parallel restore (`--jobs N`, into a database pgdrill creates, for backups with a
//! dump index). Nothing is spooled and nothing waits for the whole download:
//!
//! 1. The archive's header and TOC (the first `toc_end` bytes) are decoded and written to a
//!    small file; pg_restore creates the schema from it (the pre-data entries, by list).
//! 2. The data section runs on N lanes. Each task is one table's data block, a run of small
//!    blocks, or a part of a large table's block cut at a row boundary the backup recorded.
//!    A lane feeds `pg_restore -L <its entries>` on stdin with the header and TOC followed by
//!    exactly those bytes, fetched by ranged GETs from the frame that holds them, decrypted
//!    (age chunks are authenticated one by one) and decompressed. Work is dealt so that the
//!    lanes finish together (see [`deal::deal`]).
//! 3. As soon as a table's data is all in, its own post-data entries (indexes, primary key,
//!    checks, triggers: those depending on it alone) are restored and it is ANALYZEd, at most
//!    N tables at a time, while the lanes load on (as `pg_restore -j` starts a table's
//!    indexes once its data is in).
//! 4. `pg_restore -j N` restores the remaining post-data entries (foreign keys, ...) while
//!    tables not analyzed yet (partitioned parents, ...) are ANALYZEd beside it; materialized
//!    views and tables with expression indexes or extended statistics not analyzed after
//!    them get a last ANALYZE.
//! 5. Large-object entries run in one pg_restore, in TOC order, on the least loaded lane.
//!
//! Integrity: a separate sequential read of the whole stored object checks its size and
//! SHA-256 while the lanes work (every read is pinned to the object's ETag, so all of them
//! see one version). The restore succeeds only after that check, and any failure (digest,
//! key, pg_restore error, signal) drops the database, which pgdrill created for this restore:
//! nothing restored is left behind.

mod copy;
mod deal;
mod deps;
mod extract;
mod lanes;
mod object_copy;
mod objects;
mod pipes;
mod source;
mod stages;
#[cfg(test)]
mod tests;

pub(crate) use extract::{extract, frames_touched};
pub(crate) use source::{load_index, read_toc, Loaded};

use self::objects::Objects;
use self::source::{decode_error, stored_digest, Source};
use self::stages::{stages, Input};
use crate::cancel::{Cancel, CancelHandle};
use crate::manifest::StoredObject;
use crate::restore::{check_cancel, interrupted, RestoreJob};
use crate::{layout, Error, Result};
use pgdrill_pg::PgInstall;
use std::sync::Arc;
use std::time::Instant;

/// Tables with at least this much data get their indexes and ANALYZE as soon as they are
/// loaded; smaller ones in the final phase.
const TAIL_MIN: u64 = 8 << 20;

/// Session settings of the index builds that run while the lanes load: the lanes already
/// keep `--jobs` sessions busy, so a parallel index build would only add workers competing
/// for the same cores (measured: about 5% more CPU for the whole restore on two cores).
/// A target URL's own `options` override it.
/// The setting exists from PostgreSQL 11 (an older server refuses the connection).
fn beside_lanes(server_version_num: u32) -> &'static [(&'static str, &'static str)] {
    if server_version_num >= 110_000 {
        &[("max_parallel_maintenance_workers", "0")]
    } else {
        &[]
    }
}

/// What the streamed restore measured.
pub(super) struct Streamed {
    pub download: f64,
    pub restore: f64,
    pub analyze: f64,
    pub ignored: Vec<String>,
    pub notes: Vec<String>,
}

/// Runs the streamed restore into `job.target` (a database pgdrill just created).
pub(super) async fn restore(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    dump: &StoredObject,
    index: Loaded,
    jobs: u32,
    server_version_num: u32,
    create: impl std::future::Future<Output = Result<()>>,
) -> Result<Streamed> {
    let key = layout::backup_object(&job.manifest.database, &job.manifest.backup_id, &dump.name);
    let meta = index.object.clone();
    let prefix = index.prefix.clone();
    if meta.size != dump.size {
        return Err(Error::Integrity(format!(
            "{key} has {} bytes but the manifest records {}: the object is truncated or was replaced; restore from another backup",
            meta.size, dump.size
        )));
    }
    let src = Source {
        progress: Some(job.read.progress.clone()),
        ..Source::new(
            job,
            dump,
            key.clone(),
            meta.etag.clone(),
            prefix,
            index.index,
        )
    };
    // One token stops everything: the user's signal or the first failure.
    let (stop, stopped) = Cancel::new();
    let stop = Arc::new(stop);
    let forward = {
        let (mut user, stop) = (job.read.cancel.clone(), stop.clone());
        tokio::spawn(async move {
            user.cancelled().await;
            stop.cancel();
        })
    };
    let beside = beside_lanes(server_version_num);
    let result = run_stages(
        job,
        install,
        &src,
        jobs,
        beside,
        create,
        stop.clone(),
        stopped,
    )
    .await;
    forward.abort();
    result
}

/// Runs the streamed restore of a directory-layout backup (a parallel dump) into
/// `job.target` (a database pgdrill just created): the lanes read one object per table
/// (module `objects`), each object's digests checked as it streams.
pub(super) async fn restore_objects(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    jobs: u32,
    server_version_num: u32,
    create: impl std::future::Future<Output = Result<()>>,
) -> Result<Streamed> {
    let t_stream = Instant::now();
    let (stop, stopped) = Cancel::new();
    let stop = Arc::new(stop);
    let forward = {
        let (mut user, stop) = (job.read.cancel.clone(), stop.clone());
        tokio::spawn(async move {
            user.cancelled().await;
            stop.cancel();
        })
    };
    let run = async {
        // toc.dat (small, its digests checked) while the target database is created.
        let (head, created) = tokio::join!(objects::read_toc_dat(job), create);
        created?;
        let head = head?;
        let toc = pgdrill_pg::archive::read_toc_items(&head[..]).map_err(|e| {
            Error::Integrity(format!("the dump's table of contents cannot be read: {e}"))
        })?;
        let objs = Arc::new(Objects::new(job, &toc, &head)?);
        let beside = beside_lanes(server_version_num);
        stages(
            job,
            install,
            &Input::Objects(objs),
            jobs,
            beside,
            head,
            stop.clone(),
            stopped.clone(),
        )
        .await
    };
    let outcome = run.await;
    forward.abort();
    let (restore_secs, analyze, ignored, notes, loaded_at) = match outcome {
        Err(Error::Integrity(_) | Error::Key(_)) | Ok(_) => outcome?,
        Err(_) if job.read.cancel.is_cancelled() => return Err(interrupted()),
        Err(e) => return Err(e),
    };
    check_cancel(job)?;
    Ok(Streamed {
        download: loaded_at.saturating_duration_since(t_stream).as_secs_f64(),
        restore: restore_secs,
        analyze,
        ignored,
        notes,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_stages(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    src: &Source,
    jobs: u32,
    beside: &'static [(&'static str, &'static str)],
    create: impl std::future::Future<Output = Result<()>>,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<Streamed> {
    let t_stream = Instant::now();
    // Header and TOC, while the target database is created (a failure there ends the
    // restore before anything else starts).
    let head = {
        let src = src.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let mut plain = src.open()?;
            let mut head = Vec::new();
            src.copy(&mut plain, 0, src.index.toc_end, &mut head)
                .map_err(|e| decode_error(&src, e))?;
            Ok(head)
        })
    };
    let (head, created) = tokio::join!(head, create);
    created?;
    let head = head.map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))??;
    // The lanes' decoded bytes are the progress shown (the data stage); this check reads
    // the whole object beside them and counts on its own.
    let progress = Arc::new(crate::progress::Progress::default());
    // The whole-object check runs beside everything else.
    let want = job
        .manifest
        .dump_object()
        .map(|d| d.sha256.clone())
        .unwrap_or_default();
    let verifier = {
        let (src, progress, stop) = (src.clone(), progress.clone(), stop.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = stored_digest(&src, &progress).await.and_then(|d| {
                if d.bytes != src.size || d.sha256 != want {
                    return Err(Error::Integrity(format!(
                        "{} does not match its SHA-256 in the manifest: the object is corrupt; restore from another backup",
                        src.key
                    )));
                }
                Ok(d)
            });
            if r.is_err() {
                stop.cancel();
            }
            r.map(|d| (d, t.elapsed().as_secs_f64()))
        })
    };
    let outcome = stages(
        job,
        install,
        &Input::Ranges(Box::new(src.clone())),
        jobs,
        beside,
        head,
        stop.clone(),
        stopped.clone(),
    )
    .await;
    // A failure elsewhere may be the consequence of a damaged object: the check decides.
    let checked = match outcome {
        Ok(_) => verifier.await,
        // A signal: stop at once, the whole-object check included.
        Err(_) if job.read.cancel.is_cancelled() => {
            verifier.abort();
            return Err(interrupted());
        }
        Err(_) => {
            stop.cancel();
            verifier.await
        }
    };
    let checked = checked.map_err(|e| Error::Failed(format!("the digest check crashed: {e}")))?;
    let (_, download) = match (checked, &outcome) {
        (Err(e @ (Error::Integrity(_) | Error::Key(_))), _) => return Err(e),
        (_, Err(_)) if job.read.cancel.is_cancelled() => return Err(interrupted()),
        (Ok(_), Err(_)) => return Err(outcome.err().unwrap_or_else(interrupted)),
        // The lanes stopped because the check failed: its error is the cause.
        (Err(e), _) => return Err(e),
        (Ok(d), Ok(_)) => d,
    };
    let (restore_secs, analyze, ignored, notes, loaded_at) = outcome?;
    check_cancel(job)?;
    // The download ends when both readers are done: the lanes' last block and the check.
    let lanes_read = loaded_at.saturating_duration_since(t_stream).as_secs_f64();
    Ok(Streamed {
        download: download.max(lanes_read),
        restore: restore_secs,
        analyze,
        ignored,
        notes,
    })
}

fn qualified(schema: &str, name: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        name.replace('"', "\"\"")
    )
}
