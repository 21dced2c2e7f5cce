//! The streamed restore of a directory-layout backup (`backup --jobs N`: one object per
//! file of pg_dump's `-Fd` directory). The phases are those of the custom layout (module
//! `stages`); what differs is where a lane's data comes from:
//!
//! - `toc.dat` (small) is decoded and checked into a temporary directory of its own: the
//!   schema and the post-data entries are restored from it (`pg_restore -Fd` reads only
//!   `toc.dat` for entries without data);
//! - a table's data is its own object, streamed from the store (decrypted, decompressed, its
//!   stored and raw SHA-256 checked as it passes) into the lane's own COPY, which is
//!   completed only once the object's digests matched; when pgdrill cannot COPY itself (an
//!   archive not in UTF8), into a named pipe `<dump id>.dat` that `pg_restore -Fd` reads;
//! - the large objects' files reach one `pg_restore -Fd` the same way, each through a named
//!   pipe in the order their `blobs*.toc` lists them.
//!
//! Local disk: `toc.dat` and the `blobs*.toc` lists only; memory: a few MiB per lane (the
//! decoder's bounded channel). An object whose digest does not match fails the restore
//! (the database it created is dropped).

use super::copy::Feed;
use super::deal::Task;
use super::deps::large_object;
use super::lanes::{Lanes, Runner};
use crate::cancel::{Cancel, CancelHandle};
use crate::frames::DumpIndex;
use crate::manifest::{Manifest, StoredObject};
use crate::progress::Progress;
use crate::restore::command::{self, list_file, PgRestore};
use crate::restore::verdict::verdict;
use crate::restore::{interrupted, RestoreJob};
use crate::verify::{decode_object, ReadOpts};
use crate::{Error, Result};
use pgdrill_pg::archive::{DataBlock, Section, Toc};
use pgdrill_pg::client;
use pgdrill_store::Store;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What the lanes of a directory-layout restore read from.
pub(super) struct Objects {
    pub(super) store: Store,
    pub(super) manifest: Manifest,
    /// Each archive file's object (`3366.dat`, `toc.dat`, `blobs.toc`, `blob_16403.dat`).
    pub(super) by_file: HashMap<String, StoredObject>,
    /// One block per data object, in TOC order, at consecutive offsets (no split points):
    /// what [`super::deal::deal`] deals.
    pub(super) index: DumpIndex,
    /// The large-object entries (restored together by one pg_restore).
    pub(super) large_objects: HashSet<i64>,
    /// A directory holding only the decoded `toc.dat`.
    pub(super) dir: tempfile::TempDir,
    pub(super) keys: Arc<crate::crypto::DecryptionKeys>,
    /// Raw bytes of table data the lanes decoded; added to `progress` once `counting`.
    pub(super) loaded: Arc<AtomicU64>,
    pub(super) counting: Arc<AtomicBool>,
    pub(super) progress: Arc<Progress>,
}

/// Options for decoding one object: no progress of its own (the lanes count raw bytes),
/// one sequential stream, stopped by `stopped`.
fn quiet(keys: &Arc<crate::crypto::DecryptionKeys>, stopped: Cancel) -> ReadOpts {
    ReadOpts {
        keys: keys.clone(),
        progress: Progress::new(),
        cancel: stopped,
        parallel: 1,
    }
}

/// The decoded `toc.dat` (its digests checked).
pub(super) async fn read_toc_dat(job: &RestoreJob<'_>) -> Result<Vec<u8>> {
    let dump = job
        .manifest
        .dump_object()
        .ok_or_else(|| Error::Integrity("the manifest lists no toc.dat".into()))?;
    let sink = Bounded {
        buf: Vec::new(),
        cap: usize::try_from(dump.raw_size).unwrap_or(usize::MAX),
    };
    let opts = quiet(&job.read.keys, job.read.cancel.clone());
    let (_, head) = decode_object(job.store, job.manifest, dump, sink, &opts).await?;
    Ok(head.buf)
}

impl Objects {
    /// The objects of `job`'s backup, with `toc` (from the bytes `head`) written to a
    /// directory of its own.
    pub(super) fn new(job: &RestoreJob<'_>, toc: &Toc, head: &[u8]) -> Result<Objects> {
        let m = job.manifest;
        let by_file: HashMap<String, StoredObject> = m
            .objects
            .iter()
            .filter(|o| o.kind != "globals")
            .filter_map(|o| Some((Manifest::archive_file(o)?.to_string(), o.clone())))
            .collect();
        let mut blocks = Vec::new();
        let mut at = 0u64;
        for i in toc
            .items
            .iter()
            .filter(|i| i.section == Section::Data && !large_object(i))
        {
            let Some(o) = by_file.get(&format!("{}.dat", i.dump_id)) else {
                if i.desc == "TABLE DATA" {
                    return Err(Error::Integrity(format!(
                        "the manifest of {} lists no object for the data of {}.{} ({}.dat); restore from another backup",
                        m.backup_id, i.namespace, i.tag, i.dump_id
                    )));
                }
                continue;
            };
            blocks.push(DataBlock {
                id: i.dump_id,
                start: at,
                end: at + o.raw_size,
                splits: Vec::new(),
            });
            at += o.raw_size;
        }
        let dir = tempfile::Builder::new()
            .prefix("pgdrill-toc-")
            .tempdir()
            .map_err(|e| Error::Failed(format!("cannot write the table of contents file: {e}")))?;
        std::fs::write(dir.path().join("toc.dat"), head)
            .map_err(|e| Error::Failed(format!("cannot write the table of contents file: {e}")))?;
        Ok(Objects {
            store: job.store.clone(),
            manifest: m.clone(),
            by_file,
            index: DumpIndex {
                version: 1,
                raw_size: at,
                compressed_size: 0,
                frames: Vec::new(),
                toc_end: 0,
                blocks,
            },
            large_objects: toc
                .items
                .iter()
                .filter(|i| large_object(i))
                .map(|i| i.dump_id)
                .collect(),
            dir,
            keys: job.read.keys.clone(),
            loaded: Arc::default(),
            counting: Arc::default(),
            progress: job.read.progress.clone(),
        })
    }

    fn data_object(&self, id: i64) -> Option<&StoredObject> {
        self.by_file.get(&format!("{id}.dat"))
    }

    /// Streams `object` into `sink` (counted as loaded table data when `metered`), its
    /// digests checked at the end.
    async fn decode<W: Write + Send + 'static>(
        self: &Arc<Self>,
        object: &StoredObject,
        sink: W,
        metered: bool,
        stopped: Cancel,
    ) -> Result<W> {
        let sink = Metered {
            inner: sink,
            objs: metered.then(|| self.clone()),
        };
        let opts = quiet(&self.keys, stopped);
        let (_, sink) = decode_object(&self.store, &self.manifest, object, sink, &opts).await?;
        Ok(sink.inner)
    }
}

/// Counts what goes through it as loaded data.
struct Metered<W> {
    inner: W,
    objs: Option<Arc<Objects>>,
}

impl<W: Write> Write for Metered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(o) = self.objs.as_ref() {
            o.loaded.fetch_add(n as u64, Ordering::Relaxed);
            if o.counting.load(Ordering::Relaxed) {
                o.progress.add(n as u64);
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One lane of a directory-layout restore: takes tasks like [`super::lanes::lane`] does.
pub(super) async fn lane(
    n: usize,
    runner: &Runner<'_, '_>,
    objs: Arc<Objects>,
    shared: Arc<Lanes>,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<()> {
    let mut conn: Option<tokio_postgres::Client> = None;
    loop {
        if stopped.is_cancelled() {
            return Ok(());
        }
        let Some(task) = shared.next(n) else {
            return Ok(());
        };
        let r = runner
            .object_task(&objs, &shared, &task, &mut conn, stopped.clone())
            .await;
        match r {
            Ok(ignored) => {
                if let Ok(mut g) = shared.ignored.lock() {
                    g.extend(ignored);
                }
            }
            Err(e) => {
                stop.cancel();
                return Err(e);
            }
        }
        shared.task_done(&task, Some(&objs.progress))?;
    }
}

impl Runner<'_, '_> {
    /// One task: large objects by pg_restore over named pipes; tables by the lane's own
    /// COPY when it can, else each by pg_restore over a named pipe; data entries without a
    /// file (sequence values, ...) by pg_restore from `toc.dat` alone.
    async fn object_task(
        &self,
        objs: &Arc<Objects>,
        shared: &Lanes,
        task: &Task,
        conn: &mut Option<tokio_postgres::Client>,
        stopped: Cancel,
    ) -> Result<Vec<String>> {
        if task
            .entries
            .iter()
            .any(|id| objs.large_objects.contains(id))
        {
            shared.schema_ready(stopped.clone()).await?;
            return self.large_objects(objs, task, stopped).await;
        }
        let (with_file, without): (Vec<i64>, Vec<i64>) = task
            .entries
            .iter()
            .partition(|id| objs.data_object(**id).is_some());
        let mut ignored = Vec::new();
        let direct = with_file.iter().all(|id| shared.copies.contains_key(id));
        if !with_file.is_empty() && direct {
            ignored.extend(
                self.copy_objects(objs, shared, &with_file, conn, stopped.clone())
                    .await?,
            );
        } else if !with_file.is_empty() {
            shared.schema_ready(stopped.clone()).await?;
            for id in &with_file {
                let file = format!("{id}.dat");
                let o = objs.data_object(*id).cloned().into_iter();
                let piped: Vec<(String, StoredObject)> = o.map(|o| (file.clone(), o)).collect();
                ignored.extend(
                    self.piped(objs, &[*id], &[], piped, true, stopped.clone())
                        .await?,
                );
            }
        }
        if !without.is_empty() {
            shared.schema_ready(stopped.clone()).await?;
            let list = list_file(&super::deps::id_list(&without))?;
            ignored.extend(
                self.file(list.path(), None, &[], objs.dir.path(), stopped)
                    .await?,
            );
        }
        Ok(ignored)
    }

    /// The tables `ids` loaded by the lane's own COPY, each object streamed into it; a COPY
    /// is completed only after its object's digests matched, otherwise aborted.
    async fn copy_objects(
        &self,
        objs: &Arc<Objects>,
        shared: &Lanes,
        ids: &[i64],
        conn: &mut Option<tokio_postgres::Client>,
        mut stopped: Cancel,
    ) -> Result<Vec<String>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Feed>(8);
        let feeder = {
            let (objs, ids, stopped) = (objs.clone(), ids.to_vec(), stopped.clone());
            tokio::spawn(async move { feed_objects(&objs, ids, &tx, stopped).await })
        };
        let task = Task {
            entries: ids.to_vec(),
            pieces: Vec::new(),
            bytes: 0,
        };
        let wait = stopped.clone();
        let sent = async {
            if conn.is_none() {
                let c = client::connect(&self.job.target).await?;
                c.batch_execute(&shared.session).await.map_err(|e| {
                    Error::Failed(format!(
                        "setting up a restore session failed: {}",
                        client::describe(&e)
                    ))
                })?;
                *conn = Some(c);
            }
            let c = conn.as_ref().ok_or_else(interrupted)?;
            shared.schema_ready(wait).await?;
            self.send_copies(c, shared, &task, rx).await
        };
        let sent = tokio::select! {
            r = sent => r,
            _ = stopped.cancelled() => Err(interrupted()),
        };
        if sent.is_err() {
            feeder.abort();
        }
        let fed = match feeder.await {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => Err(interrupted()),
            Err(e) => Err(Error::Failed(format!("the restore stage crashed: {e}"))),
        };
        match (fed, sent) {
            (Err(e @ (Error::Integrity(_) | Error::Key(_))), _) => Err(e),
            (_, Err(e)) => {
                // The connection may be mid-COPY: never reuse it.
                *conn = None;
                Err(e)
            }
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(ignored)) => {
                check_rows(shared, ids, &ignored)?;
                Ok(ignored)
            }
        }
    }

    /// The large-object entries of `task` in one `pg_restore -Fd`: the `blobs*.toc` lists
    /// decoded into its directory, each large object's file a named pipe fed in the order
    /// the lists name them.
    async fn large_objects(
        &self,
        objs: &Arc<Objects>,
        task: &Task,
        stopped: Cancel,
    ) -> Result<Vec<String>> {
        let lists: Vec<(String, StoredObject)> = objs
            .by_file
            .iter()
            .filter(|(f, o)| o.kind == "blobs" && f.ends_with(".toc"))
            .map(|(f, o)| (f.clone(), o.clone()))
            .collect();
        let mut ordered: Vec<(String, StoredObject)> = Vec::new();
        let mut texts = Vec::new();
        for (file, o) in &lists {
            let sink = Bounded {
                buf: Vec::new(),
                cap: usize::try_from(o.raw_size).unwrap_or(usize::MAX),
            };
            let text = objs.decode(o, sink, false, stopped.clone()).await?.buf;
            texts.push((file.clone(), text));
        }
        // pg_restore reads the lists in the order of the BLOBS entries (one list before
        // PostgreSQL 17, one per entry since), each list line by line.
        let rank = |file: &str| {
            let id = file
                .strip_prefix("blobs_")
                .and_then(|f| f.strip_suffix(".toc"))
                .and_then(|f| f.parse::<i64>().ok());
            id.and_then(|id| task.entries.iter().position(|e| *e == id))
                .unwrap_or(0)
        };
        texts.sort_by_key(|(f, _)| rank(f));
        for (file, text) in &texts {
            for line in String::from_utf8_lossy(text).lines() {
                let Some(name) = line.split_whitespace().nth(1) else {
                    continue;
                };
                let o = objs.by_file.get(name).ok_or_else(|| {
                    Error::Integrity(format!(
                        "{file} names {name}, which the manifest does not list; restore from another backup"
                    ))
                })?;
                ordered.push((name.to_string(), o.clone()));
            }
        }
        self.piped(objs, &task.entries, &texts, ordered, false, stopped)
            .await
    }

    /// `pg_restore -Fd -L <entries>` over a directory of its own: `toc.dat`, the `regular`
    /// files as given, and each of `piped` a named pipe fed (in order) from its object.
    async fn piped(
        &self,
        objs: &Arc<Objects>,
        entries: &[i64],
        regular: &[(String, Vec<u8>)],
        piped: Vec<(String, StoredObject)>,
        metered: bool,
        mut stopped: Cancel,
    ) -> Result<Vec<String>> {
        let failed =
            |e: io::Error| Error::Failed(format!("cannot prepare pg_restore's input: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("pgdrill-pipes-")
            .tempdir()
            .map_err(failed)?;
        let toc = dir.path().join("toc.dat");
        std::fs::hard_link(objs.dir.path().join("toc.dat"), &toc)
            .or_else(|_| std::fs::copy(objs.dir.path().join("toc.dat"), &toc).map(|_| ()))
            .map_err(failed)?;
        for (file, bytes) in regular {
            std::fs::write(dir.path().join(file), bytes).map_err(failed)?;
        }
        for (file, _) in &piped {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                dir.path().join(file),
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            )
            .map_err(|e| failed(e.into()))?;
        }
        let list = list_file(&super::deps::id_list(entries))?;
        let run = PgRestore {
            list: Some(list.path()),
            file: Some(dir.path()),
            ..PgRestore::default()
        };
        let mut proc = command::spawn(run.command(self.job, self.install, self.passfile))?;
        let exited = Arc::new(AtomicBool::new(false));
        let feeder = {
            let (objs, exited, stopped) = (objs.clone(), exited.clone(), stopped.clone());
            let base = dir.path().to_path_buf();
            tokio::spawn(async move {
                for (file, o) in piped {
                    let pipe = Pipe {
                        path: base.join(&file),
                        file: None,
                        exited: exited.clone(),
                    };
                    objs.decode(&o, pipe, metered, stopped.clone()).await?;
                }
                Ok::<(), Error>(())
            })
        };
        let status = command::wait(&mut proc, &mut stopped).await;
        exited.store(true, Ordering::SeqCst);
        let fed = feeder
            .await
            .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))?;
        let lines = proc.stderr_lines();
        let status = status?;
        match fed {
            Err(e @ (Error::Integrity(_) | Error::Key(_))) => Err(e),
            Err(e) => {
                verdict(Some(status), &lines, self.job.ignore_errors, false)?;
                Err(e)
            }
            Ok(()) => verdict(Some(status), &lines, self.job.ignore_errors, false),
        }
    }
}

/// Objects at most this large are fetched and decoded ahead (into memory, a few at a
/// time) while the COPY of the one before them runs: a task of many small tables is not one
/// store round trip after another.
const PREFETCH_MAX: u64 = 1 << 20;
/// Small objects decoded ahead per lane.
const PREFETCH: usize = 4;

/// What [`feed_objects`] has ready for the COPY: a small object decoded whole (its
/// digests matched), or a large one to stream.
enum Ready {
    Whole(i64, Vec<u8>),
    Stream(i64, StoredObject),
}

/// Feeds the COPYs of the tables `ids`: each object decoded into `tx` between its
/// `Start` and `End`, the `End` (which completes the COPY) sent only after its digests
/// matched.
async fn feed_objects(
    objs: &Arc<Objects>,
    ids: Vec<i64>,
    tx: &tokio::sync::mpsc::Sender<Feed>,
    stopped: Cancel,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let ready = futures::stream::iter(ids)
        .filter_map(|id| {
            let o = objs.data_object(id).cloned();
            async move { o.map(|o| (id, o)) }
        })
        .map(|(id, o)| {
            let (objs, stopped) = (objs.clone(), stopped.clone());
            async move {
                if o.raw_size > PREFETCH_MAX {
                    return Ok(Ready::Stream(id, o));
                }
                let sink = Bounded {
                    buf: Vec::new(),
                    cap: usize::try_from(o.raw_size).unwrap_or(usize::MAX),
                };
                let got = objs.decode(&o, sink, true, stopped).await?;
                Ok::<_, Error>(Ready::Whole(id, got.buf))
            }
        })
        .buffered(PREFETCH);
    futures::pin_mut!(ready);
    while let Some(r) = ready.try_next().await? {
        let id = match &r {
            Ready::Whole(id, _) | Ready::Stream(id, _) => *id,
        };
        if tx.send(Feed::Start(id)).await.is_err() {
            return Ok(());
        }
        match r {
            Ready::Whole(_, bytes) => {
                let all = bytes::Bytes::from(bytes);
                for at in (0..all.len()).step_by(super::copy::COPY_BATCH) {
                    let data = all.slice(at..(at + super::copy::COPY_BATCH).min(all.len()));
                    if tx.send(Feed::Data(data)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ready::Stream(_, o) => {
                let sink = Batches::new(tx.clone());
                objs.decode(&o, sink, true, stopped.clone()).await?;
            }
        }
        // The digests matched: the COPY may complete.
        if tx.send(Feed::End).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Each table's COPY loaded the rows the backup counted in its object (a table whose COPY
/// failed with an allowlisted error is not checked).
fn check_rows(shared: &Lanes, ids: &[i64], ignored: &[String]) -> Result<()> {
    let copied = shared.copied.lock().map_err(|_| interrupted())?;
    for id in ids {
        let (Some(want), Some(got)) = (shared.rows.get(id), copied.get(id)) else {
            continue;
        };
        let name = shared.copies.get(id).map(|c| c.1.as_str()).unwrap_or("?");
        if want != got && !ignored.iter().any(|l| l.contains(name)) {
            return Err(Error::Integrity(format!(
                "{name}: the restore loaded {got} rows but the backup counted {want}; restore from another backup"
            )));
        }
    }
    Ok(())
}

/// An object decoded into memory, never more than `cap` bytes (its manifest's raw size):
/// bytes beyond are dropped, and the digest check that follows fails on them (exit 3).
struct Bounded {
    buf: Vec<u8>,
    cap: usize,
}

impl Write for Bounded {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&b[..b.len().min(room)]);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decoded bytes gathered into COPY messages for the lane's COPY (blocking sends: the
/// decoder runs on a blocking thread).
struct Batches {
    tx: tokio::sync::mpsc::Sender<Feed>,
    out: bytes::BytesMut,
}

impl Batches {
    fn new(tx: tokio::sync::mpsc::Sender<Feed>) -> Self {
        Batches {
            tx,
            out: bytes::BytesMut::new(),
        }
    }
}

impl Write for Batches {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        if self.out.len() >= super::copy::COPY_BATCH {
            self.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let data = self.out.split().freeze();
        self.tx
            .blocking_send(Feed::Data(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the COPY stopped"))
    }
}

/// The writing end of a named pipe, opened on first use, once pg_restore opened it for
/// reading (never blocking on a pg_restore that exited without reading it).
struct Pipe {
    path: PathBuf,
    file: Option<std::fs::File>,
    exited: Arc<AtomicBool>,
}

impl Pipe {
    fn open(&mut self) -> io::Result<&mut std::fs::File> {
        if self.file.is_none() {
            self.file = Some(open_pipe(&self.path, &self.exited)?);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the pipe is not open"))
    }
}

/// Opens the named pipe at `path` for writing once a reader has it open, polling (a
/// non-blocking open fails with ENXIO until then); gives up when `exited` is set.
pub(super) fn open_pipe(path: &Path, exited: &AtomicBool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path);
        match opened {
            Ok(f) => {
                let flags = rustix::fs::fcntl_getfl(&f)?;
                rustix::fs::fcntl_setfl(&f, flags - rustix::fs::OFlags::NONBLOCK)?;
                return Ok(f);
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                if exited.load(Ordering::SeqCst) {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "pg_restore ended without reading its input",
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.open()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Opened even when nothing was written: an empty file still ends for its reader.
        self.open()?.flush()
    }
}
