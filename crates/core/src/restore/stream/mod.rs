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
mod lanes;
mod source;
#[cfg(test)]
mod tests;

pub(crate) use source::{load_index, read_toc, Loaded};

use self::copy::*;
use self::deal::*;
use self::deps::*;
use self::lanes::*;
use self::source::*;
use crate::cancel::{Cancel, CancelHandle};
use crate::manifest::StoredObject;
use crate::restore::analyze::{analyze_pass, AnalyzePass};
use crate::restore::command::list_file;
use crate::restore::{check_cancel, interrupted, RestoreJob};
use crate::{layout, Error, Result};
use pgdrill_pg::archive::{self, Section};
use pgdrill_pg::PgInstall;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
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
        store: job.store.clone(),
        key: key.clone(),
        size: dump.size,
        etag: meta.etag.clone(),
        name: dump.name.clone(),
        encrypted: job.manifest.encrypted(),
        keys: job.read.keys.clone(),
        payload_start: age_payload_start(dump.size, index.index.compressed_size),
        prefix,
        index: Arc::new(index.index),
        rt: tokio::runtime::Handle::current(),
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
    let progress = job.read.progress.clone();
    progress.stage("download + restore");
    progress.set_total(src.size);
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
        src,
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
    let (restore_secs, analyze, ignored, notes) = outcome?;
    check_cancel(job)?;
    Ok(Streamed {
        download,
        restore: restore_secs,
        analyze,
        ignored,
        notes,
    })
}

type StageOut = (f64, f64, Vec<String>, Vec<String>);

/// pre-data, data lanes, post-data, final ANALYZE.
#[allow(clippy::too_many_arguments)]
async fn stages(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    src: &Source,
    jobs: u32,
    beside: &'static [(&'static str, &'static str)],
    head: Vec<u8>,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<StageOut> {
    let t0 = Instant::now();
    let toc = archive::read_toc_items(&head[..]).map_err(|e| {
        Error::Integrity(format!("the dump's table of contents cannot be read: {e}"))
    })?;
    let mut head_file = tempfile::Builder::new()
        .prefix("pgdrill-toc-")
        .tempfile()
        .map_err(|e| Error::Failed(format!("cannot write the table of contents file: {e}")))?;
    head_file
        .write_all(&head)
        .and_then(|_| head_file.flush())
        .map_err(|e| Error::Failed(format!("cannot write the table of contents file: {e}")))?;
    let passfile = job
        .target
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let pf = passfile.as_ref().map(|f| f.path().to_path_buf());
    let runner = Runner {
        job,
        install,
        passfile: pf.as_deref(),
    };
    let mut ignored = Vec::new();

    // The schema (pre-data) is restored while the lanes connect and start decoding their
    // first task; no lane starts a COPY before the schema is in.
    job.read.progress.stage("restore: schema");
    let pre_list = list_file(&section_list(&toc, Section::PreData))?;
    let (schema_tx, schema_rx) = tokio::sync::watch::channel(false);
    let pre = async {
        let r = runner
            .file(
                pre_list.path(),
                None,
                &[],
                head_file.path(),
                stopped.clone(),
            )
            .await;
        match &r {
            Ok(_) => {
                let _ = schema_tx.send(true);
            }
            Err(_) => stop.cancel(),
        }
        r
    };
    let (lanes_plan, parts) = deal(&toc, &src.index, jobs, &table_rows(job, &toc));
    let split: usize = parts.values().filter(|&&n| n > 1).count();
    let n_tasks: usize = lanes_plan.iter().map(Vec::len).sum();
    let names: HashMap<i64, String> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .map(|i| (i.dump_id, qualified(&i.namespace, &i.tag)))
        .collect();
    let own_post = table_post_data(&toc);
    // Small tables wait for the final phase: one pg_restore and one connection per table
    // would cost more than they save.
    let big: HashSet<i64> = src
        .index
        .blocks
        .iter()
        .filter(|b| b.end - b.start >= TAIL_MIN)
        .map(|b| b.id)
        .collect();
    let data_stage = format!("restore: data ({n_tasks} tasks on {jobs} lanes)");
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let shared = Arc::new(Lanes {
        queues: lanes_plan
            .into_iter()
            .map(|l| Mutex::new(l.into_iter().collect()))
            .collect(),
        parts: Mutex::new(parts),
        ignored: Mutex::new(Vec::new()),
        head: Arc::new(head),
        int_size: toc.int_size,
        copies: direct_copies(&toc, &names),
        session: session_sql(&toc),
        finished: Mutex::new(Some(done_tx)),
        schema: schema_rx,
    });
    let lanes = (0..jobs.max(1) as usize).map(|n| {
        lane(
            n,
            &runner,
            src,
            shared.clone(),
            stop.clone(),
            stopped.clone(),
        )
    });
    // Once all data is in, what post-data does not involve a large table (the small tables'
    // indexes and constraints, ...) and the small tables' ANALYZE run beside the large
    // tables' own indexes and ANALYZE.
    let early: Vec<i64> = early_post_data(&toc, &own_post, &big);
    let big_names: HashSet<String> = big.iter().filter_map(|id| names.get(id)).cloned().collect();
    let lanes = async {
        let r = futures::future::join_all(lanes).await;
        // No more tables will finish: closing the channel ends the tail driver.
        if let Ok(mut tx) = shared.finished.lock() {
            tx.take();
        }
        if r.iter().any(Result::is_err) || stopped.is_cancelled() {
            return (r, Ok(Vec::new()));
        }
        job.read
            .progress
            .stage("restore: indexes, constraints and ANALYZE");
        let post = runner.entries(&early, jobs, head_file.path(), stopped.clone());
        let loaded = analyze_pass(&job.target, jobs, AnalyzePass::Loaded(&big_names));
        let mut cancel = stopped.clone();
        let after = tokio::select! {
            (post, loaded) = futures::future::join(post, loaded) => loaded.and(post),
            _ = cancel.cancelled() => Err(interrupted()),
        };
        if after.is_err() {
            stop.cancel();
        }
        (r, after)
    };
    // Each table whose data is all in gets its own indexes and constraints (the post-data
    // entries that depend on it alone) and then its ANALYZE, while the lanes load on.
    let tails = Tails {
        runner: &runner,
        head_file: head_file.path(),
        beside,
        own_post: &own_post,
        names: &names,
        big: &big,
        done_post: Mutex::new(HashSet::new()),
        analyzed: Mutex::new(HashSet::new()),
        ignored: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
    };
    let driver = {
        use futures::StreamExt;
        let (tails, stop, stopped) = (&tails, stop.clone(), stopped.clone());
        let finished = futures::stream::unfold(done_rx, |mut rx| async move {
            rx.recv().await.map(|id| (id, rx))
        });
        finished.for_each_concurrent(jobs.max(1) as usize, move |id| {
            let (stop, stopped) = (stop.clone(), stopped.clone());
            async move {
                if stopped.is_cancelled() {
                    return;
                }
                if let Err(e) = tails.run(id, stopped).await {
                    if let Ok(mut f) = tails.failure.lock() {
                        f.get_or_insert(e);
                    }
                    stop.cancel();
                }
            }
        })
    };
    let pre = async {
        let r = pre.await;
        if r.is_ok() {
            job.read.progress.stage(&data_stage);
        }
        r
    };
    let (pre, ((results, early_done), ())) =
        futures::future::join(pre, futures::future::join(lanes, driver)).await;
    // The first real failure, not the interruptions it caused elsewhere.
    let mut failures: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
    match early_done {
        Ok(early_ignored) => ignored.extend(early_ignored),
        Err(e) => failures.push(e),
    }
    if let Some(e) = tails.failure.lock().ok().and_then(|mut f| f.take()) {
        failures.insert(0, e);
    }
    match pre {
        Ok(pre_ignored) => ignored.extend(pre_ignored),
        Err(e) => failures.insert(0, e),
    }
    if !failures.is_empty() {
        stop.cancel();
        let cause = failures
            .iter()
            .position(|e| e.to_string() != interrupted().to_string())
            .unwrap_or(0);
        return Err(failures.swap_remove(cause));
    }
    ignored.extend(shared.ignored.lock().map(|g| g.clone()).unwrap_or_default());
    ignored.extend(tails.ignored.lock().map(|g| g.clone()).unwrap_or_default());
    if stopped.is_cancelled() {
        return Err(interrupted());
    }

    // What is left of post-data (foreign keys to or from large tables, ...), and beside it
    // the ANALYZE of tables not analyzed yet.
    let analyzed = tails.analyzed.lock().map(|g| g.clone()).unwrap_or_default();
    let mut done_post = tails
        .done_post
        .lock()
        .map(|g| g.clone())
        .unwrap_or_default();
    done_post.extend(early.iter().copied());
    let rest: Vec<i64> = toc
        .items
        .iter()
        .filter(|i| i.section == Section::PostData && !large_object(i))
        .filter(|i| !done_post.contains(&i.dump_id))
        .map(|i| i.dump_id)
        .collect();
    let post = runner.entries(&rest, jobs, head_file.path(), stopped.clone());
    // Every table is analyzed by now, unless a large table's tail did not get to it.
    let loaded = async {
        let missed: HashSet<&String> = big_names.difference(&analyzed).collect();
        if missed.is_empty() {
            return Ok(());
        }
        let others: HashSet<String> = names
            .values()
            .filter(|n| !missed.contains(n))
            .cloned()
            .collect();
        analyze_pass(&job.target, jobs, AnalyzePass::Loaded(&others)).await
    };
    let mut cancel = stopped.clone();
    let (post, loaded) = tokio::select! {
        r = futures::future::join(post, loaded) => r,
        _ = cancel.cancelled() => return Err(interrupted()),
    };
    ignored.extend(post?);
    loaded?;
    let restore_secs = t0.elapsed().as_secs_f64();
    let ta = Instant::now();
    tokio::select! {
        r = analyze_pass(&job.target, jobs, AnalyzePass::Dependent(&analyzed)) => r?,
        _ = cancel.cancelled() => return Err(interrupted()),
    }
    let analyze = ta.elapsed().as_secs_f64();
    let mut notes = vec![format!(
        "streamed restore: {jobs} lanes fed by ranged reads, no spool file{}",
        if split > 0 {
            format!("; {split} large table(s) loaded in parts at row boundaries")
        } else {
            String::new()
        }
    )];
    if !analyzed.is_empty() {
        notes.push(format!(
            "{} table(s) got their indexes and ANALYZE as soon as their data was in",
            analyzed.len()
        ));
    }
    Ok((restore_secs, analyze, ignored, notes))
}

fn qualified(schema: &str, name: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        name.replace('"', "\"\"")
    )
}
