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
//!    lanes finish together (see [`plan`]).
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

use super::{check_cancel, interrupted, list_file, verdict, Proc, RestoreJob};
use crate::cancel::{Cancel, CancelHandle};
use crate::frames::DumpIndex;
use crate::manifest::StoredObject;
use crate::pipeline::Digested;
use crate::progress::Progress;
use crate::verify::{decode_object, ReadOpts};
use crate::{layout, Error, Result};
use bytes::Bytes;
use pgdrill_pg::archive::{self, Section, Toc};
use pgdrill_pg::{client, PgInstall};
use pgdrill_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Tables with at least this much data get their indexes and ANALYZE as soon as they are
/// loaded; smaller ones in the final phase.
const TAIL_MIN: u64 = 8 << 20;

/// Smallest part a large table is cut into.
const MIN_PART: u64 = 4 << 20;
/// Most small blocks restored by one pg_restore.
const MAX_GROUP: usize = 200;
/// Bytes per ranged GET.
const WINDOW: u64 = 4 << 20;

/// What the streamed restore measured.
pub(super) struct Streamed {
    pub download: f64,
    pub restore: f64,
    pub analyze: f64,
    pub ignored: Vec<String>,
    pub notes: Vec<String>,
}

/// The backup's dump index, if it has one (`None`: restore by spooling instead).
pub(super) async fn load_index(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
) -> Result<Option<DumpIndex>> {
    let Some(obj) = job.manifest.objects.iter().find(|o| o.kind == "index") else {
        return Ok(None);
    };
    let opts = ReadOpts {
        keys: job.read.keys.clone(),
        progress: Progress::new(),
        cancel: job.read.cancel.clone(),
        parallel: 1,
    };
    let (_, json) = decode_object(job.store, job.manifest, obj, Vec::new(), &opts).await?;
    let index: DumpIndex = serde_json::from_slice(&json)
        .map_err(|e| Error::Integrity(format!("the dump index is not valid JSON ({e})")))?;
    index.check()?;
    if index.raw_size != dump.raw_size {
        return Err(Error::Integrity(
            "the dump index describes a dump of another size".into(),
        ));
    }
    Ok(Some(index))
}

/// Everything a lane needs to read the stored dump.
#[derive(Clone)]
struct Source {
    store: Store,
    key: String,
    size: u64,
    etag: Option<String>,
    name: String,
    encrypted: bool,
    keys: Arc<crate::crypto::DecryptionKeys>,
    index: Arc<DumpIndex>,
    rt: tokio::runtime::Handle,
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// One lane's reader of the compressed stream (decrypted), positioned by seeking.
struct Plain(Box<dyn ReadSeek>);

impl Source {
    fn open(&self) -> Result<Plain> {
        let ranges = RangeReader {
            src: self.clone(),
            pos: 0,
            buf: Bytes::new(),
            buf_start: 0,
            ahead: None,
            window: WINDOW / 16,
        };
        if self.encrypted {
            Ok(Plain(Box::new(
                self.keys.decrypt_stream(ranges, &self.name)?,
            )))
        } else {
            Ok(Plain(Box::new(ranges)))
        }
    }

    /// Copies raw archive bytes `from..to` into `out`, decoding from the frame that holds
    /// `from`.
    fn copy(&self, plain: &mut Plain, from: u64, to: u64, out: &mut impl Write) -> io::Result<()> {
        let (raw, compressed) = self.index.frame_for(from);
        plain.0.seek(SeekFrom::Start(compressed))?;
        let mut z = zstd::stream::read::Decoder::new(&mut plain.0)?;
        let mut buf = vec![0u8; 1 << 20];
        pump(&mut z, &mut io::sink(), from - raw, &mut buf)?;
        pump(&mut z, out, to - from, &mut buf)
    }
}

/// Copies exactly `n` bytes from `r` to `w`.
fn pump(r: &mut impl Read, w: &mut impl Write, mut n: u64, buf: &mut [u8]) -> io::Result<()> {
    while n > 0 {
        let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the dump ends early",
            ));
        }
        w.write_all(&buf[..got])?;
        n -= got as u64;
    }
    Ok(())
}

/// A blocking `Read + Seek` over a stored object: ranged GETs of [`WINDOW`] bytes, the next
/// one fetched while the current one is read.
struct RangeReader {
    src: Source,
    pos: u64,
    buf: Bytes,
    buf_start: u64,
    ahead: Option<(
        u64,
        tokio::task::JoinHandle<std::result::Result<Bytes, StoreError>>,
    )>,
    /// Bytes per GET: small at first (a lane may need only the TOC), growing to [`WINDOW`].
    window: u64,
}

impl RangeReader {
    fn fetch(&self, start: u64) -> tokio::task::JoinHandle<std::result::Result<Bytes, StoreError>> {
        fetch_range(&self.src, start, self.window)
    }

    fn fill(&mut self) -> io::Result<()> {
        let handle = match self.ahead.take() {
            Some((at, h)) if at == self.pos => h,
            Some((_, h)) => {
                h.abort();
                self.fetch(self.pos)
            }
            None => self.fetch(self.pos),
        };
        let bytes = self
            .src
            .rt
            .block_on(handle)
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        let want = (self.pos + self.window).min(self.src.size) - self.pos;
        if bytes.len() as u64 != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stored object is shorter than the manifest says",
            ));
        }
        self.buf = bytes;
        self.buf_start = self.pos;
        self.window = (self.window * 4).min(WINDOW);
        let next = self.pos + want;
        if next < self.src.size {
            self.ahead = Some((next, self.fetch(next)));
        }
        Ok(())
    }
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.src.size {
            return Ok(0);
        }
        let end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= end {
            self.fill()?;
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.src.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        if let Some((_, h)) = self.ahead.take() {
            h.abort();
        }
    }
}

/// A piece of a task's input after the header and TOC.
#[derive(Clone, Debug, PartialEq)]
struct Piece {
    /// Write a table-data block start for this dump id first (a part after the first).
    open: Option<i64>,
    from: u64,
    to: u64,
    /// End the block after the bytes (a part before the last).
    close: bool,
}

/// One pg_restore run of the data section.
#[derive(Clone, Debug, PartialEq)]
struct Task {
    /// Entries for `--use-list`, in archive order.
    entries: Vec<i64>,
    pieces: Vec<Piece>,
    bytes: u64,
}

/// Large-object entries (metadata, data, comments, ACLs): pg_restore treats them all as
/// data whatever their section, so they are restored together, in TOC order, in one run.
fn large_object(i: &archive::TocItem) -> bool {
    matches!(
        i.desc.as_str(),
        "BLOB" | "BLOB METADATA" | "BLOBS" | "LARGE OBJECT" | "LARGE OBJECTS"
    ) || (matches!(i.desc.as_str(), "ACL" | "COMMENT" | "SECURITY LABEL")
        && i.tag.starts_with("LARGE OBJECT"))
}

/// `--use-list` text of the entries of `section` (large objects excluded).
fn section_list(toc: &Toc, section: Section) -> String {
    toc.items
        .iter()
        .filter(|i| i.section == section && !large_object(i))
        .map(|i| format!("{};\n", i.dump_id))
        .collect()
}

/// Blocks smaller than this are restored in runs of neighbours, several per pg_restore.
const SMALL: u64 = 1 << 20;

/// What one lane will load, in order, and how many parts each table's data has.
///
/// Work units (a block, or a run of small neighbouring blocks) are dealt largest first and
/// wrapped around the lanes, each lane taking `total / jobs` bytes: a unit that does not fit
/// is cut at a recorded row boundary, its rest going to the next lane (McNaughton's rule).
/// So the lanes finish together even when one table is most of the dump; the parts of a cut
/// table load concurrently. Tables whose physical row order matters are never cut.
fn plan(toc: &Toc, index: &DumpIndex, jobs: u32) -> (Vec<Vec<Task>>, HashMap<i64, usize>) {
    let jobs = jobs.max(1) as usize;
    let data: Vec<&archive::TocItem> = toc
        .items
        .iter()
        .filter(|i| i.section == Section::Data && !large_object(i))
        .collect();
    let ordered: HashSet<i64> = toc
        .items
        .iter()
        .filter(|i| i.orders_rows)
        .flat_map(|i| i.deps.iter().copied())
        .collect();
    let items: HashMap<i64, &archive::TocItem> = data.iter().map(|i| (i.dump_id, *i)).collect();
    let splittable = |b: &archive::DataBlock| {
        items
            .get(&b.id)
            .is_some_and(|i| i.desc == "TABLE DATA" && !i.deps.iter().any(|d| ordered.contains(d)))
            && !b.splits.is_empty()
    };

    // Work units: big blocks alone, small neighbours together.
    let mut units: Vec<Task> = Vec::new();
    let mut cuttable: Vec<Option<&archive::DataBlock>> = Vec::new();
    let mut group: Option<Task> = None;
    for b in index.blocks.iter().filter(|b| items.contains_key(&b.id)) {
        let size = b.end - b.start;
        if size >= SMALL {
            if let Some(g) = group.take() {
                units.push(g);
                cuttable.push(None);
            }
            units.push(Task::whole(b));
            cuttable.push(splittable(b).then_some(b));
            continue;
        }
        let g = group.get_or_insert_with(|| Task {
            entries: Vec::new(),
            pieces: vec![Piece {
                open: None,
                from: b.start,
                to: b.start,
                close: false,
            }],
            bytes: 0,
        });
        if let Some(p) = g.pieces.last_mut() {
            p.to = b.end;
        }
        g.entries.push(b.id);
        g.bytes += size;
        if g.bytes >= 16 * SMALL || g.entries.len() >= MAX_GROUP {
            units.push(group.take().unwrap_or_else(|| unreachable!()));
            cuttable.push(None);
        }
    }
    if let Some(g) = group.take() {
        units.push(g);
        cuttable.push(None);
    }
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| units[b].bytes.cmp(&units[a].bytes));

    let total: u64 = units.iter().map(|u| u.bytes).sum();
    let target = total.div_ceil(jobs as u64).max(1);
    let mut lanes: Vec<Vec<Task>> = vec![Vec::new(); jobs];
    let mut parts: HashMap<i64, usize> = HashMap::new();
    let (mut lane, mut filled) = (0usize, 0u64);
    for i in order {
        let unit = &units[i];
        for id in &unit.entries {
            parts.insert(*id, 1);
        }
        let Some(block) = cuttable[i] else {
            lanes[lane].push(unit.clone());
            filled += unit.bytes;
            if filled >= target && lane + 1 < jobs {
                (lane, filled) = (lane + 1, 0);
            }
            continue;
        };
        // Deal the block's bytes, cutting where a lane is full.
        let mut from = block.start;
        let mut n = 0;
        while from < block.end {
            let room = target.saturating_sub(filled);
            let cut = (lane + 1 < jobs)
                .then(|| cut_near(block, from, from + room))
                .flatten();
            let to = cut.unwrap_or(block.end);
            lanes[lane].push(Task {
                entries: vec![block.id],
                pieces: vec![Piece {
                    open: (from > block.start).then_some(block.id),
                    from,
                    to,
                    close: to < block.end,
                }],
                bytes: to - from,
            });
            n += 1;
            filled += to - from;
            if filled >= target.saturating_sub(MIN_PART / 2) && lane + 1 < jobs {
                (lane, filled) = (lane + 1, 0);
            }
            from = to;
        }
        parts.insert(block.id, n);
    }
    // Data entries without a block (sequence values, ...): one run, on the lightest lane.
    let rest: Vec<i64> = data
        .iter()
        .filter(|i| !parts.contains_key(&i.dump_id))
        .map(|i| i.dump_id)
        .collect();
    let light = |lanes: &Vec<Vec<Task>>| {
        (0..jobs)
            .min_by_key(|&l| lanes[l].iter().map(|t| t.bytes).sum::<u64>())
            .unwrap_or(0)
    };
    if !rest.is_empty() {
        let l = light(&lanes);
        lanes[l].push(Task {
            entries: rest,
            pieces: Vec::new(),
            bytes: 0,
        });
    }
    // Large objects: created, filled and commented in one run, in TOC order.
    let los: Vec<i64> = toc
        .items
        .iter()
        .filter(|i| large_object(i))
        .map(|i| i.dump_id)
        .collect();
    if !los.is_empty() {
        let ids: HashSet<i64> = los.iter().copied().collect();
        let pieces: Vec<Piece> = index
            .blocks
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| Piece {
                open: None,
                from: b.start,
                to: b.end,
                close: false,
            })
            .collect();
        let bytes = pieces.iter().map(|p| p.to - p.from).sum();
        let l = light(&lanes);
        lanes[l].insert(
            0,
            Task {
                entries: los,
                pieces,
                bytes,
            },
        );
    }
    (lanes, parts)
}

impl Task {
    fn whole(b: &archive::DataBlock) -> Task {
        Task {
            entries: vec![b.id],
            pieces: vec![Piece {
                open: None,
                from: b.start,
                to: b.end,
                close: false,
            }],
            bytes: b.end - b.start,
        }
    }
}

/// The recorded split point of `b` nearest to `want`, if it leaves at least [`MIN_PART`]
/// on both sides (between `from` and the block's end).
fn cut_near(b: &archive::DataBlock, from: u64, want: u64) -> Option<u64> {
    b.splits
        .iter()
        .copied()
        .filter(|&s| s >= from + MIN_PART && s + MIN_PART <= b.end)
        .min_by_key(|&s| s.abs_diff(want))
}

/// Runs the streamed restore into `job.target` (a database pgdrill just created).
pub(super) async fn restore(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    dump: &StoredObject,
    index: DumpIndex,
    jobs: u32,
) -> Result<Streamed> {
    let key = layout::backup_object(&job.manifest.database, &job.manifest.backup_id, &dump.name);
    let meta = job.store.head(&key).await?;
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
        index: Arc::new(index),
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
    let result = run_stages(job, install, &src, jobs, stop.clone(), stopped).await;
    forward.abort();
    result
}

async fn run_stages(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    src: &Source,
    jobs: u32,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<Streamed> {
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
    let outcome = stages(job, install, src, jobs, stop.clone(), stopped.clone()).await;
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

/// Size and SHA-256 of the stored object, read front to back.
async fn stored_digest(src: &Source, progress: &Progress) -> Result<Digested> {
    let mut hasher = Sha256::new();
    let mut at = 0u64;
    let step = 16 << 20;
    let mut next = Some(fetch_range(src, 0, step));
    while let Some(h) = next.take() {
        let bytes = h
            .await
            .map_err(|e| Error::Failed(format!("the digest check crashed: {e}")))?
            .map_err(|e| read_error(src, e))?;
        if bytes.is_empty() && at < src.size {
            return Err(Error::Integrity(format!(
                "{} is truncated; restore from another backup",
                src.key
            )));
        }
        let len = bytes.len() as u64;
        at += len;
        if at < src.size {
            next = Some(fetch_range(src, at, step));
        }
        let b = bytes.clone();
        hasher = tokio::task::spawn_blocking(move || {
            hasher.update(&b);
            hasher
        })
        .await
        .map_err(|e| Error::Failed(format!("the digest check crashed: {e}")))?;
        progress.add(len);
    }
    Ok(Digested {
        sha256: hex::encode(hasher.finalize()),
        bytes: at,
    })
}

fn fetch_range(
    src: &Source,
    start: u64,
    step: u64,
) -> tokio::task::JoinHandle<std::result::Result<Bytes, StoreError>> {
    let (store, key, etag) = (src.store.clone(), src.key.clone(), src.etag.clone());
    let end = (start + step).min(src.size);
    src.rt.spawn(async move {
        store
            .get_range_pinned(&key, start..end, etag.as_deref())
            .await
    })
}

fn read_error(src: &Source, e: StoreError) -> Error {
    let msg = e.to_string();
    if msg.contains("412") || msg.to_ascii_lowercase().contains("precondition") {
        return Error::Integrity(format!(
            "{} was replaced during the restore; restore again",
            src.key
        ));
    }
    Error::Failed(format!(
        "reading {} from the store failed: {msg}; try again",
        src.key
    ))
}

type StageOut = (f64, f64, Vec<String>, Vec<String>);

/// pre-data, data lanes, post-data, final ANALYZE.
async fn stages(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    src: &Source,
    jobs: u32,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<StageOut> {
    let t0 = Instant::now();
    // Header and TOC.
    let head = {
        let src = src.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let mut plain = src.open()?;
            let mut head = Vec::new();
            src.copy(&mut plain, 0, src.index.toc_end, &mut head)
                .map_err(|e| decode_error(&src, e))?;
            Ok(head)
        })
        .await
        .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))??
    };
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

    job.read.progress.stage("restore: schema");
    let pre_list = list_file(&section_list(&toc, Section::PreData))?;
    ignored.extend(
        runner
            .file(
                &[&format!("--use-list={}", pre_list.path().display())],
                head_file.path(),
                stopped.clone(),
            )
            .await?,
    );

    let (lanes_plan, parts) = plan(&toc, &src.index, jobs);
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
    job.read
        .progress
        .stage(&format!("restore: data ({n_tasks} tasks on {jobs} lanes)"));
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
        finished: Mutex::new(Some(done_tx)),
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
    let lanes = async {
        let r = futures::future::join_all(lanes).await;
        // No more tables will finish: closing the channel ends the tail driver.
        if let Ok(mut tx) = shared.finished.lock() {
            tx.take();
        }
        r
    };
    // Each table whose data is all in gets its own indexes and constraints (the post-data
    // entries that depend on it alone) and then its ANALYZE, while the lanes load on.
    let tails = Tails {
        runner: &runner,
        head_file: head_file.path(),
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
    let (results, ()) = futures::future::join(lanes, driver).await;
    // The first real failure, not the interruptions it caused elsewhere.
    let mut failures: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
    if let Some(e) = tails.failure.lock().ok().and_then(|mut f| f.take()) {
        failures.insert(0, e);
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

    // What is left of post-data (foreign keys, entries on several tables, ...), and beside it
    // the ANALYZE of tables not analyzed yet.
    job.read
        .progress
        .stage("restore: indexes, constraints and ANALYZE");
    let analyzed = tails.analyzed.lock().map(|g| g.clone()).unwrap_or_default();
    let done_post = tails
        .done_post
        .lock()
        .map(|g| g.clone())
        .unwrap_or_default();
    let rest: String = toc
        .items
        .iter()
        .filter(|i| i.section == Section::PostData && !large_object(i))
        .filter(|i| !done_post.contains(&i.dump_id))
        .map(|i| format!("{};\n", i.dump_id))
        .collect();
    let post_list = list_file(&rest)?;
    let post_args = [
        format!("--use-list={}", post_list.path().display()),
        format!("--jobs={jobs}"),
    ];
    let post_args: Vec<&str> = post_args.iter().map(String::as_str).collect();
    let post = async {
        if rest.is_empty() {
            return Ok(Vec::new());
        }
        runner
            .file(&post_args, head_file.path(), stopped.clone())
            .await
    };
    let loaded = super::analyze_pass(&job.target, jobs, super::AnalyzePass::Loaded(&analyzed));
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
        r = super::analyze_pass(&job.target, jobs, super::AnalyzePass::Dependent(&analyzed)) => r?,
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

fn decode_error(src: &Source, e: io::Error) -> Error {
    Error::Integrity(format!(
        "{} is corrupt or truncated ({e}); restore from another backup",
        src.key
    ))
}

fn qualified(schema: &str, name: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        name.replace('"', "\"\"")
    )
}

/// State the lanes share.
struct Lanes {
    /// Each lane's own tasks; an idle lane takes the last task of the fullest queue.
    queues: Vec<Mutex<std::collections::VecDeque<Task>>>,
    /// Parts of each table's data still to load.
    parts: Mutex<HashMap<i64, usize>>,
    ignored: Mutex<Vec<String>>,
    /// The archive's header and TOC, which every data task's input starts with.
    head: Arc<Vec<u8>>,
    /// The archive's integer width (for the block starts and ends written between parts).
    int_size: usize,
    /// Where a lane reports a table whose data is all in (closed when the lanes are done).
    finished: Mutex<Option<tokio::sync::mpsc::UnboundedSender<i64>>>,
}

impl Lanes {
    fn next(&self, lane: usize) -> Option<Task> {
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

async fn lane(
    n: usize,
    runner: &Runner<'_, '_>,
    src: &Source,
    shared: Arc<Lanes>,
    stop: Arc<CancelHandle>,
    stopped: Cancel,
) -> Result<()> {
    let mut plain: Option<Plain> = None;
    loop {
        if stopped.is_cancelled() {
            return Ok(());
        }
        let Some(task) = shared.next(n) else {
            return Ok(());
        };
        let r = runner
            .data_task(
                src,
                &shared.head,
                shared.int_size,
                &task,
                plain.take(),
                stopped.clone(),
            )
            .await;
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
        // Tables whose last part just loaded go to the tail driver (indexes, ANALYZE).
        let finished: Vec<i64> = {
            let mut parts = shared.parts.lock().map_err(|_| interrupted())?;
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
        if let Ok(tx) = shared.finished.lock() {
            for id in finished {
                if let Some(tx) = tx.as_ref() {
                    let _ = tx.send(id);
                }
            }
        }
    }
}

/// The post-data entries that belong to one table's data alone: all their dependencies are
/// that table or pre-data objects (its indexes, primary key, checks, triggers, ...; not
/// foreign keys, which also need the referenced table). Keyed by TABLE DATA dump id.
fn table_post_data(toc: &Toc) -> HashMap<i64, Vec<i64>> {
    let by_id: HashMap<i64, &archive::TocItem> = toc.items.iter().map(|i| (i.dump_id, i)).collect();
    // TABLE entry → its TABLE DATA entry.
    let data_of: HashMap<i64, i64> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .flat_map(|d| {
            d.deps
                .iter()
                .filter(|t| by_id.get(t).is_some_and(|t| t.desc == "TABLE"))
                .map(move |t| (*t, d.dump_id))
        })
        .collect();
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for p in toc
        .items
        .iter()
        .filter(|i| i.section == Section::PostData && !large_object(i))
    {
        let tables: HashSet<i64> = p
            .deps
            .iter()
            .filter(|d| data_of.contains_key(d))
            .copied()
            .collect();
        let others_pre = p.deps.iter().all(|d| {
            tables.contains(d)
                || by_id
                    .get(d)
                    .is_some_and(|i| i.section == Section::PreData && !large_object(i))
        });
        if tables.len() == 1 && others_pre {
            if let Some(data) = tables.iter().next().and_then(|t| data_of.get(t)) {
                out.entry(*data).or_default().push(p.dump_id);
            }
        }
    }
    out
}

/// Per-table work once its data is in: its own post-data entries, then ANALYZE.
struct Tails<'a, 'r, 'j> {
    runner: &'a Runner<'r, 'j>,
    head_file: &'a Path,
    own_post: &'a HashMap<i64, Vec<i64>>,
    names: &'a HashMap<i64, String>,
    /// Tables with enough data to be worth their own pg_restore and ANALYZE early.
    big: &'a HashSet<i64>,
    done_post: Mutex<HashSet<i64>>,
    analyzed: Mutex<HashSet<String>>,
    ignored: Mutex<Vec<String>>,
    failure: Mutex<Option<Error>>,
}

impl Tails<'_, '_, '_> {
    async fn run(&self, data_id: i64, mut stopped: Cancel) -> Result<()> {
        let Some(table) = self
            .names
            .get(&data_id)
            .filter(|_| self.big.contains(&data_id))
        else {
            return Ok(());
        };
        if let Some(post) = self.own_post.get(&data_id) {
            let text: String = post.iter().map(|id| format!("{id};\n")).collect();
            let list = list_file(&text)?;
            let arg = format!("--use-list={}", list.path().display());
            let ignored = self
                .runner
                .file(&[&arg], self.head_file, stopped.clone())
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
struct Runner<'a, 'j> {
    job: &'a RestoreJob<'j>,
    install: &'a PgInstall,
    passfile: Option<&'a Path>,
}

impl Runner<'_, '_> {
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(self.install.bin("pg_restore"));
        cmd.arg(format!("--dbname={}", self.job.target.dbname))
            .args(["--no-owner", "--no-privileges", "--no-password"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.job.target.configure_child(&mut cmd, self.passfile);
        cmd
    }

    /// pg_restore reading `file`; returns the allowlisted errors.
    async fn file(&self, extra: &[&str], file: &Path, mut stopped: Cancel) -> Result<Vec<String>> {
        let mut cmd = self.command(extra);
        cmd.arg(file).stdin(Stdio::null());
        let mut proc = Proc::spawn(cmd, self.install)?;
        let stderr = proc
            .child
            .stderr
            .take()
            .ok_or_else(|| Error::Failed("cannot read pg_restore's errors".into()))?;
        let errors = super::collect_lines(stderr);
        let status = proc.wait(&mut stopped).await;
        let lines = errors.join().unwrap_or_default();
        verdict(Some(status?), &lines, self.job.ignore_errors, false)
    }

    /// One data task: pg_restore `--use-list` fed the TOC and the task's bytes on stdin.
    /// Hands the lane's reader back for the next task.
    async fn data_task(
        &self,
        src: &Source,
        head: &Arc<Vec<u8>>,
        int_size: usize,
        task: &Task,
        plain: Option<Plain>,
        mut stopped: Cancel,
    ) -> Result<(Option<Plain>, Vec<String>)> {
        let text: String = task.entries.iter().map(|id| format!("{id};\n")).collect();
        let list = list_file(&text)?;
        let mut cmd = self.command(&[&format!("--use-list={}", list.path().display())]);
        cmd.stdin(Stdio::piped());
        let mut proc = Proc::spawn(cmd, self.install)?;
        let (Some(stdin), Some(stderr)) = (proc.child.stdin.take(), proc.child.stderr.take())
        else {
            return Err(Error::Failed("cannot connect to pg_restore's input".into()));
        };
        let errors = super::collect_lines(stderr);
        let feeder = {
            let (src, head, task) = (src.clone(), head.clone(), task.clone());
            tokio::task::spawn_blocking(move || feed(&src, &head, int_size, &task, plain, stdin))
        };
        let status = proc.wait(&mut stopped).await;
        let fed = feeder
            .await
            .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))?;
        let lines = errors.join().unwrap_or_default();
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
fn feed(
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
        if let Err(e) = src.copy(&mut plain, p.from, p.to, &mut sink) {
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
struct Flag<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Flag<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdrill_pg::archive::{DataBlock, TocItem};

    fn item(id: i64, desc: &str, section: Section, deps: Vec<i64>, orders: bool) -> TocItem {
        TocItem {
            dump_id: id,
            desc: desc.into(),
            namespace: "public".into(),
            tag: format!("t{id}"),
            section,
            deps,
            orders_rows: orders,
        }
    }

    fn index(blocks: Vec<DataBlock>) -> DumpIndex {
        let end = blocks.last().map(|b| b.end).unwrap_or(100);
        DumpIndex {
            version: 1,
            raw_size: end,
            compressed_size: 0,
            frames: vec![[0, 0]],
            toc_end: 100,
            blocks,
        }
    }

    #[test]
    fn lanes_get_equal_shares_cutting_large_tables_at_split_points() {
        let mb = 1u64 << 20;
        let big = DataBlock {
            id: 10,
            start: 100,
            end: 100 + 64 * mb,
            splits: (1..16).map(|k| 100 + k * 4 * mb).collect(),
        };
        let mid = DataBlock {
            id: 11,
            start: big.end,
            end: big.end + 16 * mb,
            splits: vec![big.end + 4 * mb, big.end + 8 * mb, big.end + 12 * mb],
        };
        let small1 = DataBlock {
            id: 12,
            start: mid.end,
            end: mid.end + 1000,
            splits: vec![],
        };
        let small2 = DataBlock {
            id: 13,
            start: small1.end,
            end: small1.end + 2000,
            splits: vec![],
        };
        let toc = Toc {
            int_size: 4,
            items: vec![
                item(1, "TABLE", Section::PreData, vec![], false),
                item(2, "TABLE", Section::PreData, vec![], false),
                item(10, "TABLE DATA", Section::Data, vec![1], false),
                item(11, "TABLE DATA", Section::Data, vec![2], false),
                item(12, "TABLE DATA", Section::Data, vec![], false),
                item(13, "TABLE DATA", Section::Data, vec![], false),
                item(14, "SEQUENCE SET", Section::Data, vec![], false),
            ],
        };
        let ix = index(vec![
            big.clone(),
            mid.clone(),
            small1.clone(),
            small2.clone(),
        ]);
        let (lanes, parts) = plan(&toc, &ix, 2);
        assert_eq!(lanes.len(), 2);
        let load = |l: &Vec<Task>| l.iter().map(|t| t.bytes).sum::<u64>();
        let (a, b) = (load(&lanes[0]), load(&lanes[1]));
        assert!(a.abs_diff(b) <= 4 * mb, "balanced: {a} vs {b}");
        // The big table is cut once, at a split point; each part covers its own range.
        assert_eq!(parts[&10], 2, "{lanes:?}");
        let big_parts: Vec<&Task> = lanes
            .iter()
            .flatten()
            .filter(|t| t.entries == vec![10])
            .collect();
        let covered: u64 = big_parts.iter().map(|t| t.bytes).sum();
        assert_eq!(covered, big.end - big.start);
        let first = big_parts
            .iter()
            .find(|t| t.pieces[0].from == big.start)
            .expect("first");
        assert_eq!(first.pieces[0].open, None);
        assert!(first.pieces[0].close);
        assert!(big.splits.contains(&first.pieces[0].to));
        let last = big_parts
            .iter()
            .find(|t| t.pieces[0].to == big.end)
            .expect("last");
        assert_eq!(last.pieces[0].open, Some(10));
        assert!(!last.pieces[0].close);
        // Small neighbours: one task reading one range; entries without data on their own.
        let group = lanes
            .iter()
            .flatten()
            .find(|t| t.entries == vec![12, 13])
            .expect("group");
        assert_eq!(
            (group.pieces[0].from, group.pieces[0].to),
            (small1.start, small2.end)
        );
        assert!(lanes
            .iter()
            .flatten()
            .any(|t| t.entries == vec![14] && t.pieces.is_empty()));

        // A BRIN index or CLUSTER ON on the table keeps its data in one piece.
        let mut toc2 = toc.clone();
        toc2.items
            .push(item(20, "INDEX", Section::PostData, vec![1], true));
        let (lanes, parts) = plan(&toc2, &ix, 2);
        assert_eq!(parts[&10], 1);
        assert_eq!(
            lanes
                .iter()
                .flatten()
                .filter(|t| t.entries == vec![10])
                .count(),
            1
        );
        // One lane: nothing is cut.
        let (_, parts) = plan(&toc, &ix, 1);
        assert!(parts.values().all(|&n| n == 1));
    }
}
