//! The phases of the streamed restore once the target database exists: the schema, the
//! data on the lanes with each large table's indexes and ANALYZE as soon as it is in, the
//! rest of post-data, the final ANALYZE.

use super::copy::{direct_copies, session_sql};
use super::deal::{deal, table_rows};
use super::deps::{early_post_data, large_object, section_list, table_post_data};
use super::lanes::{lane, Lanes, Runner, Tails};
use super::objects::{self, Objects};
use super::source::Source;
use super::{qualified, TAIL_MIN};
use crate::cancel::{Cancel, CancelHandle};
use crate::restore::analyze::{analyze_pass, AnalyzePass};
use crate::restore::command::list_file;
use crate::restore::{interrupted, RestoreJob};
use crate::{Error, Result};
use futures::future::Either;
use pgdrill_pg::archive::{self, Section, Toc};
use pgdrill_pg::PgInstall;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Seconds of restore and of the final ANALYZE, allowlisted errors, notes, and when the
/// lanes had read all data.
pub(super) type StageOut = (f64, f64, Vec<String>, Vec<String>, Instant);

/// Where the lanes' data comes from.
pub(super) enum Input {
    /// Ranges of the one custom-format dump object (its dump index).
    Ranges(Box<Source>),
    /// One object per data file of a directory-layout backup.
    Objects(Arc<Objects>),
}

impl Input {
    /// The data blocks to deal (for objects: one per data object, never split).
    fn index(&self) -> &crate::frames::DumpIndex {
        match self {
            Input::Ranges(src) => &src.index,
            Input::Objects(o) => &o.index,
        }
    }

    /// Raw table data decoded so far, and the switch that makes it count in the progress.
    fn meters(&self) -> (&AtomicU64, &AtomicBool) {
        match self {
            Input::Ranges(src) => (&src.loaded, &src.counting),
            Input::Objects(o) => (&o.loaded, &o.counting),
        }
    }
}

/// What the phases of the streamed restore share.
struct Phase<'a, 'r, 'j> {
    job: &'a RestoreJob<'j>,
    runner: &'a Runner<'r, 'j>,
    toc: &'a Toc,
    /// The archive's header and TOC as a file (pg_restore's input for the schema and the
    /// post-data entries).
    head_file: &'a Path,
    jobs: u32,
    /// Quoted table name of each TABLE DATA entry.
    names: &'a HashMap<i64, String>,
    /// Tables with at least [`TAIL_MIN`] of data (TABLE DATA ids), and their names.
    big: &'a HashSet<i64>,
    big_names: &'a HashSet<String>,
    /// Post-data entries that run once all data is in, beside the large tables' own.
    early: &'a [i64],
    stop: &'a Arc<CancelHandle>,
    stopped: &'a Cancel,
}

/// What the load phase did.
struct DataIn {
    ignored: Vec<String>,
    /// When the lanes were done.
    loaded_at: Instant,
    /// Tables already analyzed, and post-data entries already restored.
    analyzed: HashSet<String>,
    done_post: HashSet<i64>,
    /// Tables loaded in parts.
    split: usize,
}

/// pre-data, data lanes, post-data, final ANALYZE.
#[allow(clippy::too_many_arguments)]
pub(super) async fn stages(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    input: &Input,
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
    // pg_restore's input for the schema and post-data: the header and TOC as a file, or the
    // directory holding only `toc.dat`.
    let (_head_file, head_path) = match input {
        Input::Ranges(_) => {
            let mut f = tempfile::Builder::new()
                .prefix("pgdrill-toc-")
                .tempfile()
                .map_err(|e| {
                    Error::Failed(format!("cannot write the table of contents file: {e}"))
                })?;
            f.write_all(&head).and_then(|_| f.flush()).map_err(|e| {
                Error::Failed(format!("cannot write the table of contents file: {e}"))
            })?;
            let path = f.path().to_path_buf();
            (Some(f), path)
        }
        Input::Objects(o) => (None, o.dir.path().to_path_buf()),
    };
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
    let names: HashMap<i64, String> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .map(|i| (i.dump_id, qualified(&i.namespace, &i.tag)))
        .collect();
    let own_post = table_post_data(&toc);
    // Small tables wait for the final phase: one pg_restore and one connection per table
    // would cost more than they save.
    let big: HashSet<i64> = input
        .index()
        .blocks
        .iter()
        .filter(|b| b.end - b.start >= TAIL_MIN)
        .map(|b| b.id)
        .collect();
    // Once all data is in, what post-data does not involve a large table (the small tables'
    // indexes and constraints, ...) and the small tables' ANALYZE run beside the large
    // tables' own indexes and ANALYZE.
    let early: Vec<i64> = early_post_data(&toc, &own_post, &big);
    let big_names: HashSet<String> = big.iter().filter_map(|id| names.get(id)).cloned().collect();
    let phase = Phase {
        job,
        runner: &runner,
        toc: &toc,
        head_file: &head_path,
        jobs,
        names: &names,
        big: &big,
        big_names: &big_names,
        early: &early,
        stop: &stop,
        stopped: &stopped,
    };
    let data_in = phase.load(input, head, beside, &own_post).await?;
    phase
        .finish(t0, data_in, matches!(input, Input::Objects(_)))
        .await
}

impl Phase<'_, '_, '_> {
    /// The schema, then the data on the lanes while each large table gets its own indexes
    /// and ANALYZE as soon as it is in, then the early post-data entries.
    async fn load(
        &self,
        input: &Input,
        head: Vec<u8>,
        beside: &'static [(&'static str, &'static str)],
        own_post: &HashMap<i64, Vec<i64>>,
    ) -> Result<DataIn> {
        let (job, runner, toc, jobs) = (self.job, self.runner, self.toc, self.jobs);
        let (stop, stopped) = (self.stop, self.stopped);
        let mut ignored = Vec::new();
        // The schema (pre-data) is restored while the lanes connect and start decoding
        // their first task; no lane starts a COPY before the schema is in.
        job.read.progress.stage("restore: schema");
        let pre_list = list_file(&section_list(toc, Section::PreData))?;
        let rows = table_rows(job, toc);
        let (lanes_plan, parts) = deal(toc, input.index(), jobs, &rows);
        let rows_total: u64 = parts.keys().filter_map(|id| rows.get(id)).sum();
        let split: usize = parts.values().filter(|&&n| n > 1).count();
        let data_bytes: u64 = lanes_plan
            .iter()
            .flatten()
            .flat_map(|t| t.pieces.iter())
            .map(|p| p.to.saturating_sub(p.from))
            .sum();
        let n_tables = parts.len() as u64;
        let progress = &job.read.progress;
        let loaded_at = Mutex::new(None);
        let n_tasks: usize = lanes_plan.iter().map(Vec::len).sum();
        let data_stage = format!("restore: data ({n_tasks} tasks on {jobs} lanes)");
        let (schema_tx, schema_rx) = tokio::sync::watch::channel(false);
        let pre = async {
            let r = runner
                .file(pre_list.path(), None, &[], self.head_file, stopped.clone())
                .await;
            match &r {
                Ok(_) => {
                    // The data stage shows before any COPY may start, so that every table
                    // done counts in it; what the lanes decoded meanwhile counts too.
                    progress.stage(&data_stage);
                    progress.set_total(data_bytes);
                    progress.set_items(n_tables, "tables");
                    progress.set_rows_total(rows_total);
                    let (loaded, counting) = input.meters();
                    counting.store(true, Ordering::Relaxed);
                    progress.set_bytes(loaded.load(Ordering::Relaxed));
                    let _ = schema_tx.send(true);
                }
                Err(_) => stop.cancel(),
            }
            r
        };
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
            copies: direct_copies(toc, self.names),
            session: session_sql(toc),
            finished: Mutex::new(Some(done_tx)),
            schema: schema_rx,
            rows,
            copied: Mutex::default(),
        });
        let lanes = (0..jobs.max(1) as usize).map(|n| match input {
            Input::Ranges(src) => Either::Left(lane(
                n,
                runner,
                src,
                shared.clone(),
                stop.clone(),
                stopped.clone(),
            )),
            Input::Objects(objs) => Either::Right(objects::lane(
                n,
                runner,
                objs.clone(),
                shared.clone(),
                stop.clone(),
                stopped.clone(),
            )),
        });
        let lanes = async {
            let r = futures::future::join_all(lanes).await;
            if let Ok(mut at) = loaded_at.lock() {
                *at = Some(Instant::now());
            }
            // No more tables will finish: closing the channel ends the tail driver.
            if let Ok(mut tx) = shared.finished.lock() {
                tx.take();
            }
            if r.iter().any(Result::is_err) || stopped.is_cancelled() {
                return (r, Ok(Vec::new()));
            }
            progress.set_bytes(input.meters().0.load(Ordering::Relaxed));
            // Index and constraint builds (post-data) are a stage of their own: the data
            // is all in, but the restore is far from done.
            progress.stage("restore: indexes and constraints");
            let post = runner.entries(self.early, jobs, self.head_file, stopped.clone());
            let loaded = analyze_pass(&job.target, jobs, AnalyzePass::Loaded(self.big_names));
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
        // Each table whose data is all in gets its own indexes and constraints (the
        // post-data entries that depend on it alone) and then its ANALYZE, while the lanes
        // load on.
        let tails = Tails {
            runner,
            head_file: self.head_file,
            beside,
            own_post,
            names: self.names,
            big: self.big,
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
        let (pre, ((results, early_done), ())) =
            futures::future::join(pre, futures::future::join(lanes, driver)).await;
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
            return Err(first_cause(failures));
        }
        ignored.extend(shared.ignored.lock().map(|g| g.clone()).unwrap_or_default());
        ignored.extend(tails.ignored.lock().map(|g| g.clone()).unwrap_or_default());
        if stopped.is_cancelled() {
            return Err(interrupted());
        }
        let analyzed = tails.analyzed.lock().map(|g| g.clone()).unwrap_or_default();
        let mut done_post = tails
            .done_post
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        done_post.extend(self.early.iter().copied());
        let loaded_at = loaded_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .unwrap_or_else(Instant::now);
        Ok(DataIn {
            ignored,
            loaded_at,
            analyzed,
            done_post,
            split,
        })
    }

    /// What is left of post-data (foreign keys to or from large tables, ...) with the
    /// ANALYZE of tables not analyzed yet beside it, then the final ANALYZE.
    async fn finish(&self, t0: Instant, data_in: DataIn, objects: bool) -> Result<StageOut> {
        let (job, jobs) = (self.job, self.jobs);
        let DataIn {
            mut ignored,
            loaded_at,
            analyzed,
            done_post,
            split,
        } = data_in;
        let rest: Vec<i64> = self
            .toc
            .items
            .iter()
            .filter(|i| i.section == Section::PostData && !large_object(i))
            .filter(|i| !done_post.contains(&i.dump_id))
            .map(|i| i.dump_id)
            .collect();
        let post = self
            .runner
            .entries(&rest, jobs, self.head_file, self.stopped.clone());
        // Every table is analyzed by now, unless a large table's tail did not get to it.
        let loaded = async {
            let missed: HashSet<&String> = self.big_names.difference(&analyzed).collect();
            if missed.is_empty() {
                return Ok(());
            }
            let others: HashSet<String> = self
                .names
                .values()
                .filter(|n| !missed.contains(n))
                .cloned()
                .collect();
            analyze_pass(&job.target, jobs, AnalyzePass::Loaded(&others)).await
        };
        let mut cancel = self.stopped.clone();
        let (post, loaded) = tokio::select! {
            r = futures::future::join(post, loaded) => r,
            _ = cancel.cancelled() => return Err(interrupted()),
        };
        ignored.extend(post?);
        loaded?;
        let restore_secs = t0.elapsed().as_secs_f64();
        job.read.progress.stage("analyze");
        let ta = Instant::now();
        tokio::select! {
            r = analyze_pass(&job.target, jobs, AnalyzePass::Dependent(&analyzed)) => r?,
            _ = cancel.cancelled() => return Err(interrupted()),
        }
        let analyze = ta.elapsed().as_secs_f64();
        Ok((
            restore_secs,
            analyze,
            ignored,
            notes(jobs, split, &analyzed, objects),
            loaded_at,
        ))
    }
}

/// The first real failure, not the interruptions it caused elsewhere; a damaged object (or
/// a wrong key) before what it may have caused.
pub(super) fn first_cause(mut failures: Vec<Error>) -> Error {
    let cause = failures
        .iter()
        .position(|e| matches!(e, Error::Integrity(_) | Error::Key(_)))
        .or_else(|| {
            failures
                .iter()
                .position(|e| e.to_string() != interrupted().to_string())
        })
        .unwrap_or(0);
    failures.swap_remove(cause)
}

/// The streamed restore's notes for the report.
fn notes(jobs: u32, split: usize, analyzed: &HashSet<String>, objects: bool) -> Vec<String> {
    let mut notes = vec![if objects {
        format!(
            "streamed restore of a parallel backup (directory layout): {jobs} lanes, each table's object read straight from the store, no spool directory"
        )
    } else {
        format!(
            "streamed restore: {jobs} lanes fed by ranged reads, no spool file{}",
            if split > 0 {
                format!("; {split} large table(s) loaded in parts at row boundaries")
            } else {
                String::new()
            }
        )
    }];
    if !analyzed.is_empty() {
        notes.push(format!(
            "{} table(s) got their indexes and ANALYZE as soon as their data was in",
            analyzed.len()
        ));
    }
    notes
}
