//! The lanes: each takes its tasks (stealing from the fullest queue when idle), loads them
//! by its own COPY or by a pg_restore fed on stdin, and reports the tables whose data is all
//! in to the per-table tail (own post-data entries, then ANALYZE).

use super::deal::Task;
use super::deps::id_list;
use super::source::{decode_error, Plain, Source};
use crate::cancel::{Cancel, CancelHandle};
use crate::progress::Progress;
use crate::restore::command::{self, list_file, PgRestore};
use crate::restore::verdict::verdict;
use crate::restore::{interrupted, RestoreJob};
use crate::{Error, Result};
use pgdrill_pg::archive::{self};
use pgdrill_pg::{client, PgInstall};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// State the lanes share.
pub(super) struct Lanes {
    /// Each lane's own tasks; an idle lane takes the last task of the fullest queue.
    pub(super) queues: Vec<Mutex<std::collections::VecDeque<Task>>>,
    /// Parts of each table's data still to load.
    pub(super) parts: Mutex<HashMap<i64, usize>>,
    pub(super) ignored: Mutex<Vec<String>>,
    /// The archive's header and TOC, which every data task's input starts with.
    pub(super) head: Arc<Vec<u8>>,
    /// The archive's integer width (for the block starts and ends written between parts).
    pub(super) int_size: usize,
    /// Tables whose data pgdrill COPYs itself: dump id → (COPY statement, table name).
    /// Empty when the archive rules that out (see [`direct_copies`]).
    pub(super) copies: HashMap<i64, (String, String)>,
    /// Session settings for pgdrill's own COPY connections (as pg_restore sets them).
    pub(super) session: String,
    /// Where a lane reports a table whose data is all in (closed when the lanes are done).
    pub(super) finished: Mutex<Option<tokio::sync::mpsc::UnboundedSender<i64>>>,
    /// Becomes true when the schema is restored: no COPY starts before.
    pub(super) schema: tokio::sync::watch::Receiver<bool>,
    /// Rows of each table (TABLE DATA id), as the backup counted them: the progress's
    /// rows done grow by a table's rows when it is all in.
    pub(super) rows: HashMap<i64, u64>,
    /// Rows each completed COPY of pgdrill's own loaded (summed over a table's parts).
    pub(super) copied: Mutex<HashMap<i64, u64>>,
}

impl Lanes {
    /// Waits until the schema is restored (or the restore stops).
    pub(super) async fn schema_ready(&self, mut stopped: Cancel) -> Result<()> {
        let mut rx = self.schema.clone();
        tokio::select! {
            r = rx.wait_for(|ready| *ready) => r.map(|_| ()).map_err(|_| interrupted()),
            _ = stopped.cancelled() => Err(interrupted()),
        }
    }
}

impl Lanes {
    pub(super) fn next(&self, lane: usize) -> Option<Task> {
        if let Some(t) = self.queues.get(lane)?.lock().ok()?.pop_front() {
            return Some(t);
        }
        let fullest = self
            .queues
            .iter()
            .max_by_key(|q| q.lock().map(|q| q.len()).unwrap_or(0))?;
        let mut q = fullest.lock().ok()?;
        q.pop_back()
    }
}

pub(super) async fn lane(
    n: usize,
    runner: &Runner<'_, '_>,
    src: &Source,
    shared: Arc<Lanes>,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<()> {
    let mut plain: Option<Plain> = None;
    // The lane's own connection for the COPYs it runs itself, opened on first use.
    let mut conn: Option<tokio_postgres::Client> = None;
    loop {
        if stopped.is_cancelled() {
            return Ok(());
        }
        let Some(task) = shared.next(n) else {
            return Ok(());
        };
        let direct =
            !task.pieces.is_empty() && task.entries.iter().all(|id| shared.copies.contains_key(id));
        let r = if direct {
            runner
                .copy_task(
                    src,
                    &shared,
                    &task,
                    plain.take(),
                    &mut conn,
                    stopped.clone(),
                )
                .await
        } else {
            match shared.schema_ready(stopped.clone()).await {
                Ok(()) => {
                    runner
                        .data_task(
                            src,
                            &shared.head,
                            shared.int_size,
                            &task,
                            plain.take(),
                            stopped.clone(),
                        )
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let (reader, ignored) = match r {
            Ok(x) => x,
            Err(e) => {
                stop.cancel();
                return Err(e);
            }
        };
        plain = reader;
        if let Ok(mut g) = shared.ignored.lock() {
            g.extend(ignored);
        }
        shared.task_done(&task, src.progress.as_ref())?;
    }
}

impl Lanes {
    /// Bookkeeping after `task` loaded: tables whose last part just loaded count in the
    /// progress and go to the tail driver (indexes, ANALYZE).
    pub(super) fn task_done(&self, task: &Task, progress: Option<&Arc<Progress>>) -> Result<()> {
        let finished: Vec<i64> = {
            let mut parts = self.parts.lock().map_err(|_| interrupted())?;
            task.entries
                .iter()
                .filter(|id| {
                    parts.get_mut(id).is_some_and(|n| {
                        *n -= 1;
                        *n == 0
                    })
                })
                .copied()
                .collect()
        };
        if let Some(p) = progress {
            for id in &finished {
                p.add_item_rows(self.rows.get(id).copied().unwrap_or(0));
            }
        }
        if let Ok(tx) = self.finished.lock() {
            for id in finished {
                if let Some(tx) = tx.as_ref() {
                    let _ = tx.send(id);
                }
            }
        }
        Ok(())
    }
}

/// Per-table work once its data is in: its own post-data entries, then ANALYZE.
pub(super) struct Tails<'a, 'r, 'j> {
    pub(super) runner: &'a Runner<'r, 'j>,
    pub(super) head_file: &'a Path,
    /// Session settings of its index builds ([`beside_lanes`]).
    pub(super) beside: &'static [(&'static str, &'static str)],
    pub(super) own_post: &'a HashMap<i64, Vec<i64>>,
    pub(super) names: &'a HashMap<i64, String>,
    /// Tables with enough data to be worth their own pg_restore and ANALYZE early.
    pub(super) big: &'a HashSet<i64>,
    pub(super) done_post: Mutex<HashSet<i64>>,
    pub(super) analyzed: Mutex<HashSet<String>>,
    pub(super) ignored: Mutex<Vec<String>>,
    pub(super) failure: Mutex<Option<Error>>,
}

impl Tails<'_, '_, '_> {
    pub(super) async fn run(&self, data_id: i64, mut stopped: Cancel) -> Result<()> {
        let Some(table) = self
            .names
            .get(&data_id)
            .filter(|_| self.big.contains(&data_id))
        else {
            return Ok(());
        };
        if let Some(post) = self.own_post.get(&data_id) {
            let list = list_file(&id_list(post))?;
            let ignored = self
                .runner
                .file(
                    list.path(),
                    None,
                    self.beside,
                    self.head_file,
                    stopped.clone(),
                )
                .await?;
            if let Ok(mut g) = self.ignored.lock() {
                g.extend(ignored);
            }
            if let Ok(mut d) = self.done_post.lock() {
                d.extend(post.iter().copied());
            }
        }
        let c = client::connect(&self.runner.job.target).await?;
        let sql = format!("analyze {table}");
        tokio::select! {
            r = c.batch_execute(&sql) => r.map_err(|e| Error::Failed(format!(
                "ANALYZE failed after the restore: {}",
                client::describe(&e)
            )))?,
            _ = stopped.cancelled() => return Err(interrupted()),
        }
        if let Ok(mut a) = self.analyzed.lock() {
            a.insert(table.clone());
        }
        Ok(())
    }
}

/// Runs pg_restore with the restore's common options.
pub(super) struct Runner<'a, 'j> {
    pub(super) job: &'a RestoreJob<'j>,
    pub(super) install: &'a PgInstall,
    pub(super) passfile: Option<&'a Path>,
}

impl Runner<'_, '_> {
    /// pg_restore over the TOC `file` with the entries of `list`, and `jobs` workers;
    /// returns the allowlisted errors.
    pub(super) async fn file(
        &self,
        list: &Path,
        jobs: Option<u32>,
        settings: &[(&str, &str)],
        file: &Path,
        mut stopped: Cancel,
    ) -> Result<Vec<String>> {
        let run = PgRestore {
            list: Some(list),
            jobs,
            file: Some(file),
            settings,
            ..PgRestore::default()
        };
        let cmd = run.command(self.job, self.install, self.passfile);
        let (status, lines) = command::run(cmd, &mut stopped).await?;
        verdict(Some(status), &lines, self.job.ignore_errors, false)
    }

    /// The entries `ids` by `pg_restore -j` from the TOC `file`, with no more workers (each a
    /// connection) than entries.
    pub(super) async fn entries(
        &self,
        ids: &[i64],
        jobs: u32,
        file: &Path,
        stopped: Cancel,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = list_file(&id_list(ids))?;
        let workers = jobs
            .min(u32::try_from(ids.len()).unwrap_or(u32::MAX))
            .max(1);
        self.file(list.path(), Some(workers), &[], file, stopped)
            .await
    }

    /// One data task: pg_restore `--use-list` fed the TOC and the task's bytes on stdin.
    /// Hands the lane's reader back for the next task.
    pub(super) async fn data_task(
        &self,
        src: &Source,
        head: &Arc<Vec<u8>>,
        int_size: usize,
        task: &Task,
        plain: Option<Plain>,
        mut stopped: Cancel,
    ) -> Result<(Option<Plain>, Vec<String>)> {
        let list = list_file(&id_list(&task.entries))?;
        let run = PgRestore {
            list: Some(list.path()),
            ..PgRestore::default()
        };
        let mut proc = command::spawn(run.command(self.job, self.install, self.passfile))?;
        let Some(stdin) = proc.take_stdin() else {
            return Err(Error::Failed("cannot connect to pg_restore's input".into()));
        };
        let feeder = {
            let (src, head, task) = (src.clone(), head.clone(), task.clone());
            tokio::task::spawn_blocking(move || feed(&src, &head, int_size, &task, plain, stdin))
        };
        let status = command::wait(&mut proc, &mut stopped).await;
        let fed = feeder
            .await
            .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))?;
        let lines = proc.stderr_lines();
        let status = status?;
        let plain = match fed {
            Ok(p) => Some(p),
            // The dump could not be read or decrypted: that, not pg_restore's complaint
            // about its input ending, is the cause.
            Err(e @ (Error::Integrity(_) | Error::Key(_))) => return Err(e),
            Err(e) => {
                verdict(Some(status), &lines, self.job.ignore_errors, false)?;
                return Err(e);
            }
        };
        let ignored = verdict(Some(status), &lines, self.job.ignore_errors, false)?;
        Ok((plain, ignored))
    }
}

/// Writes the TOC and the task's pieces into pg_restore's stdin (blocking).
pub(super) fn feed(
    src: &Source,
    head: &[u8],
    int_size: usize,
    task: &Task,
    plain: Option<Plain>,
    stdin: std::process::ChildStdin,
) -> Result<Plain> {
    let mut plain = match plain {
        Some(p) => p,
        None => src.open()?,
    };
    // Writes go straight to the pipe: `copy` hands over 1 MiB at a time, and a larger pipe
    // means fewer wake-ups (best effort: the default 64 KiB works too).
    let _ = rustix::pipe::fcntl_setpipe_size(&stdin, 1 << 20);
    let mut out = stdin;
    let broken = |e: io::Error| Error::Failed(format!("pg_restore stopped reading its input: {e}"));
    out.write_all(head).map_err(broken)?;
    for p in &task.pieces {
        if let Some(id) = p.open {
            out.write_all(&archive::copy_block_start(id, int_size))
                .map_err(broken)?;
        }
        let mut sink = Flag {
            inner: &mut out,
            failed: false,
        };
        if let Err(e) = src.copy_data(&mut plain, p.from, p.to, &mut sink) {
            return Err(if sink.failed {
                broken(e)
            } else {
                decode_error(src, e)
            });
        }
        if p.close {
            out.write_all(&archive::copy_block_end(int_size))
                .map_err(broken)?;
        }
    }
    out.flush().map_err(broken)?;
    Ok(plain)
}

/// Tells a failing destination from a failing source.
pub(super) struct Flag<W> {
    pub(super) inner: W,
    pub(super) failed: bool,
}

impl<W: Write> Write for Flag<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}
