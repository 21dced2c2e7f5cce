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

use super::deal::Task;
use super::deps::large_object;
use super::lanes::{Lanes, Runner};
use crate::cancel::{Cancel, CancelHandle};
use crate::frames::DumpIndex;
use crate::manifest::{Manifest, StoredObject};
use crate::progress::Progress;
use crate::restore::command::list_file;
use crate::restore::RestoreJob;
use crate::verify::{decode_object, ReadOpts};
use crate::{Error, Result};
use pgdrill_pg::archive::{DataBlock, Section, Toc};
use pgdrill_store::Store;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
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

    pub(super) fn data_object(&self, id: i64) -> Option<&StoredObject> {
        self.by_file.get(&format!("{id}.dat"))
    }

    /// Streams `object` into `sink` (counted as loaded table data when `metered`), its
    /// digests checked at the end.
    pub(super) async fn decode<W: Write + Send + 'static>(
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
}

/// An object decoded into memory, never more than `cap` bytes (its manifest's raw size):
/// bytes beyond are dropped, and the digest check that follows fails on them (exit 3).
pub(super) struct Bounded {
    pub(super) buf: Vec<u8>,
    pub(super) cap: usize,
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
