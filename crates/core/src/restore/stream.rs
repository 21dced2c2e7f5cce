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
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A backup's dump index, and what the store says of the dump object it describes.
pub(crate) struct Loaded {
    index: DumpIndex,
    /// Size and ETag of the stored dump (every ranged read is pinned to that version).
    object: pgdrill_store::ObjectInfo,
    /// The dump's first [`PREFIX`] bytes (its header and TOC), read with its size and ETag.
    prefix: Bytes,
}

/// Bytes of the stored dump read with its size and ETag, before anything else: they hold
/// the archive's header and table of contents, so the schema can be restored without
/// another round trip to the store.
const PREFIX: u64 = 256 << 10;

/// The backup's dump index, if it has one (`None`: restore by spooling instead), read
/// while the dump object is looked up.
pub(super) async fn load_index(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
) -> Result<Option<Loaded>> {
    let Some(obj) = job.manifest.objects.iter().find(|o| o.kind == "index") else {
        return Ok(None);
    };
    let key = layout::backup_object(&job.manifest.database, &job.manifest.backup_id, &dump.name);
    let (index, prefix) = tokio::join!(
        read_index(job, dump, obj),
        job.store.get_prefix(&key, PREFIX)
    );
    let (prefix, object) = prefix.map_err(|e| crate::verify::stored_object_error(&key, e))?;
    Ok(Some(Loaded {
        index: index?,
        object,
        prefix,
    }))
}

/// The archive's header and table of contents, decoded by ranged reads of the frames that
/// hold them (the restore's preflight reads the entries' definitions before anything runs).
pub(super) async fn read_toc(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    loaded: &Loaded,
) -> Result<archive::Toc> {
    let key = layout::backup_object(&job.manifest.database, &job.manifest.backup_id, &dump.name);
    let src = Source {
        store: job.store.clone(),
        key,
        size: dump.size,
        etag: loaded.object.etag.clone(),
        name: dump.name.clone(),
        encrypted: job.manifest.encrypted(),
        keys: job.read.keys.clone(),
        payload_start: age_payload_start(dump.size, loaded.index.compressed_size),
        prefix: loaded.prefix.clone(),
        index: Arc::new(loaded.index.clone()),
        rt: tokio::runtime::Handle::current(),
    };
    let head = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let mut plain = src.open()?;
        let mut head = Vec::new();
        src.copy(&mut plain, 0, src.index.toc_end, &mut head)
            .map_err(|e| decode_error(&src, e))?;
        Ok(head)
    })
    .await
    .map_err(|e| Error::Failed(format!("reading the table of contents crashed: {e}")))??;
    archive::read_toc_items(&head[..])
        .map_err(|e| Error::Integrity(format!("the dump's table of contents cannot be read: {e}")))
}

async fn read_index(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    obj: &StoredObject,
) -> Result<DumpIndex> {
    let opts = ReadOpts {
        keys: job.read.keys.clone(),
        progress: Progress::new(),
        cancel: job.read.cancel.clone(),
        parallel: 1,
    };
    // The index decodes into memory: no more than the manifest says (and never more than
    // MAX_INDEX), whatever the stored bytes expand to.
    let cap = obj.raw_size.min(MAX_INDEX) as usize;
    let sink = Capped {
        buf: Vec::new(),
        cap,
    };
    let (_, json) = decode_object(job.store, job.manifest, obj, sink, &opts).await?;
    let index = DumpIndex::from_json(&json.buf)?;
    if index.raw_size != dump.raw_size || index.compressed_size > dump.size {
        return Err(Error::Integrity(
            "the dump index describes a dump of another size".into(),
        ));
    }
    Ok(index)
}

/// The largest dump index read into memory (an index is about 100 bytes per table).
const MAX_INDEX: u64 = 256 << 20;

/// A `Vec` sink that refuses to grow past `cap` bytes.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(b.len()) > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the dump index decodes to more bytes than its manifest entry records",
            ));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
    /// Stored offset of the first age chunk (after the header and the nonce), derived from
    /// the sizes; `None` when they do not add up (reads are then not bounded ahead).
    payload_start: Option<u64>,
    /// The object's first bytes, already read (served without a GET).
    prefix: Bytes,
    rt: tokio::runtime::Handle,
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// One lane's reader of the compressed stream (decrypted), positioned by seeking.
struct Plain {
    reader: Box<dyn ReadSeek>,
    /// Stored offset past which the current copy needs nothing: shared with the
    /// [`RangeReader`] below, which fetches and reads ahead only up to it.
    limit: Arc<AtomicU64>,
}

/// Plaintext bytes per age chunk, and the chunk's tag.
const AGE_CHUNK: u64 = 64 << 10;
const AGE_TAG: u64 = 16;
/// Read beyond a copy's last frame that a decoder may still ask for (zstd's input buffer,
/// a partial age chunk).
const SLACK: u64 = 256 << 10;
/// Bytes per GET past the limit (an age header, a decoder's last read): on demand only.
const ON_DEMAND: u64 = 64 << 10;

/// Where the age payload's chunks start in an encrypted object of `stored` bytes holding
/// `compressed` plaintext bytes: header, 16-byte nonce, then chunks of 64 KiB plus a tag
/// (at least one).
fn age_payload_start(stored: u64, compressed: u64) -> Option<u64> {
    let chunks = compressed.div_ceil(AGE_CHUNK).max(1);
    let payload = 16 + compressed + chunks * AGE_TAG;
    stored
        .checked_sub(payload)
        .filter(|header| (1..=1 << 20).contains(header))
        .map(|header| header + 16)
}

impl Source {
    fn open(&self) -> Result<Plain> {
        let limit = Arc::new(AtomicU64::new(0));
        let ranges = RangeReader {
            src: self.clone(),
            pos: 0,
            buf: Bytes::new(),
            buf_start: 0,
            ahead: None,
            window: WINDOW / 16,
            limit: limit.clone(),
        };
        let reader: Box<dyn ReadSeek> = if self.encrypted {
            Box::new(self.keys.decrypt_stream(ranges, &self.name)?)
        } else {
            Box::new(ranges)
        };
        Ok(Plain { reader, limit })
    }

    /// Stored offset just past what decoding compressed bytes up to `end` reads.
    fn stored_end(&self, end: u64) -> u64 {
        let stored = if !self.encrypted {
            Some(end)
        } else {
            self.payload_start
                .map(|p| p + end.div_ceil(AGE_CHUNK) * (AGE_CHUNK + AGE_TAG))
        };
        stored.map_or(self.size, |e| e.saturating_add(SLACK).min(self.size))
    }

    /// Copies raw archive bytes `from..to` into `out`, decoding from the frame that holds
    /// `from`.
    fn copy(&self, plain: &mut Plain, from: u64, to: u64, out: &mut impl Write) -> io::Result<()> {
        let (raw, compressed) = self.index.frame_for(from);
        let end = self.index.frame_end(to.saturating_sub(1).max(from));
        plain.limit.store(self.stored_end(end), Ordering::Relaxed);
        plain.reader.seek(SeekFrom::Start(compressed))?;
        let mut z = zstd::stream::read::Decoder::new(&mut plain.reader)?;
        // Small enough that what the decoder writes is still in cache when it is parsed.
        let mut buf = vec![0u8; 128 << 10];
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

/// A ranged GET in flight.
type Fetch = tokio::task::JoinHandle<std::result::Result<Bytes, StoreError>>;

/// A blocking `Read + Seek` over a stored object: ranged GETs of up to [`WINDOW`] bytes,
/// the next one fetched while the current one is read, neither past the current copy's
/// limit (beyond it, small GETs on demand only).
struct RangeReader {
    src: Source,
    pos: u64,
    buf: Bytes,
    buf_start: u64,
    /// The GET in flight for the bytes after the buffer: (offset, length, handle).
    ahead: Option<(u64, u64, Fetch)>,
    /// Bytes per GET: small at first (a lane may need only the TOC), growing to [`WINDOW`].
    window: u64,
    limit: Arc<AtomicU64>,
}

impl RangeReader {
    /// Bytes to fetch at `at`: the window, cut at the limit; past it, [`ON_DEMAND`] at a time.
    fn span(&self, at: u64) -> u64 {
        let limit = self.limit.load(Ordering::Relaxed);
        let len = if at < limit {
            self.window.min(limit - at)
        } else {
            ON_DEMAND
        };
        len.min(self.src.size - at)
    }

    fn fill(&mut self) -> io::Result<()> {
        let prefix = &self.src.prefix;
        if self.pos < prefix.len() as u64 {
            self.buf = prefix.slice(self.pos as usize..);
            self.buf_start = self.pos;
            return Ok(());
        }
        let (len, handle) = match self.ahead.take() {
            Some((at, len, h)) if at == self.pos => (len, h),
            other => {
                if let Some((_, _, h)) = other {
                    h.abort();
                }
                let len = self.span(self.pos);
                (len, fetch_range(&self.src, self.pos, len))
            }
        };
        let bytes = self
            .src
            .rt
            .block_on(handle)
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        if bytes.len() as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stored object is shorter than the manifest says",
            ));
        }
        self.buf = bytes;
        self.buf_start = self.pos;
        self.window = (self.window * 4).min(WINDOW);
        let next = self.pos + len;
        if next < self.src.size && next < self.limit.load(Ordering::Relaxed) {
            let len = self.span(next);
            self.ahead = Some((next, len, fetch_range(&self.src, next, len)));
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
        if let Some((_, _, h)) = self.ahead.take() {
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

/// COPY spends about as long on a row as on this many bytes of its text (pgbench_accounts'
/// 100-byte rows load at about half the byte rate of 500-byte rows), so a table's load cost
/// is estimated as `bytes + ROW_COST * rows`.
const ROW_COST: u64 = 120;

/// What one lane will load, in order, and how many parts each table's data has.
///
/// Work units (a block, or a run of small neighbouring blocks) are dealt by estimated load
/// cost (bytes and rows), largest first, each to the least loaded lane. A splittable unit
/// that would take that lane past its fair share (`total / jobs`) is instead spread over the
/// lanes, cut at recorded row boundaries so that every lane it reaches ends at the same
/// level ("water-filling"): the largest table is loaded by all lanes at once and is complete
/// early, so its indexes and ANALYZE run while the lanes load the rest, and the lanes finish
/// together. Tables whose physical row order matters are never cut.
fn plan(
    toc: &Toc,
    index: &DumpIndex,
    jobs: u32,
    rows: &HashMap<i64, u64>,
) -> (Vec<Vec<Task>>, HashMap<i64, usize>) {
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
    let cost_of = |b: &archive::DataBlock| {
        (b.end - b.start).saturating_add(rows.get(&b.id).copied().unwrap_or(0) * ROW_COST)
    };

    // Work units: big blocks alone, small neighbours together.
    let mut units: Vec<(Task, u64)> = Vec::new();
    let mut cuttable: Vec<Option<&archive::DataBlock>> = Vec::new();
    let mut group: Option<(Task, u64)> = None;
    for b in index.blocks.iter().filter(|b| items.contains_key(&b.id)) {
        let size = b.end - b.start;
        if size >= SMALL {
            if let Some(g) = group.take() {
                units.push(g);
                cuttable.push(None);
            }
            units.push((Task::whole(b), cost_of(b)));
            cuttable.push(splittable(b).then_some(b));
            continue;
        }
        let (g, cost) = group.get_or_insert_with(|| {
            (
                Task {
                    entries: Vec::new(),
                    pieces: vec![Piece {
                        open: None,
                        from: b.start,
                        to: b.start,
                        close: false,
                    }],
                    bytes: 0,
                },
                0,
            )
        });
        if let Some(p) = g.pieces.last_mut() {
            p.to = b.end;
        }
        g.entries.push(b.id);
        g.bytes += size;
        *cost += cost_of(b);
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
    order.sort_by(|&a, &b| units[b].1.cmp(&units[a].1));

    let total: u64 = units.iter().map(|u| u.1).sum();
    let fair = total.div_ceil(jobs as u64).max(1);
    let mut lanes: Vec<Vec<Task>> = vec![Vec::new(); jobs];
    let mut loads: Vec<u64> = vec![0; jobs];
    let mut parts: HashMap<i64, usize> = HashMap::new();
    for i in order {
        let (unit, cost) = &units[i];
        for id in &unit.entries {
            parts.insert(*id, 1);
        }
        let least = (0..jobs).min_by_key(|&l| loads[l]).unwrap_or(0);
        match cuttable[i] {
            Some(block) if jobs > 1 && loads[least] + cost > fair => {
                let n = water_fill(block, *cost, &mut lanes, &mut loads);
                parts.insert(block.id, n);
            }
            _ => {
                lanes[least].push(unit.clone());
                loads[least] += cost;
            }
        }
    }
    // Data entries without a block (sequence values, ...): one run, on the lightest lane.
    let rest: Vec<i64> = data
        .iter()
        .filter(|i| !parts.contains_key(&i.dump_id))
        .map(|i| i.dump_id)
        .collect();
    let light = |loads: &[u64]| (0..jobs).min_by_key(|&l| loads[l]).unwrap_or(0);
    if !rest.is_empty() {
        let l = light(&loads);
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
        let l = light(&loads);
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

/// Spreads a splittable block of estimated `cost` over the lanes so that every lane it
/// reaches ends at the same level; cuts at the recorded split points nearest to each share.
/// Returns the number of parts.
fn water_fill(
    block: &archive::DataBlock,
    cost: u64,
    lanes: &mut [Vec<Task>],
    loads: &mut [u64],
) -> usize {
    // The level h where the lanes below it have room for exactly `cost`.
    let mut sorted = loads.to_vec();
    sorted.sort_unstable();
    let mut level = u64::MAX;
    let mut below = 0u64;
    for k in 0..sorted.len() {
        below += sorted[k];
        let h = (below + cost) / (k as u64 + 1);
        if sorted.get(k + 1).is_none_or(|&next| h <= next) {
            level = h;
            break;
        }
    }
    let bytes = (block.end - block.start).max(1);
    let mut takers: Vec<usize> = (0..loads.len()).filter(|&l| loads[l] < level).collect();
    takers.sort_by_key(|&l| loads[l]);
    let mut from = block.start;
    let mut n = 0;
    for (k, &lane) in takers.iter().enumerate() {
        if from >= block.end {
            break;
        }
        let share = level.saturating_sub(loads[lane]);
        let want = from.saturating_add(
            u64::try_from(u128::from(share) * u128::from(bytes) / u128::from(cost.max(1)))
                .unwrap_or(u64::MAX),
        );
        let to = if k + 1 == takers.len() {
            block.end
        } else {
            cut_near(block, from, want).unwrap_or(block.end)
        };
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
        loads[lane] += u64::try_from(u128::from(to - from) * u128::from(cost) / u128::from(bytes))
            .unwrap_or(u64::MAX);
        n += 1;
        from = to;
    }
    n
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
    if matches!(e, StoreError::NotFound { .. }) {
        return crate::verify::missing_object(&src.key);
    }
    // The reads are pinned to the object's ETag: a conflict is the object replaced.
    if e.kind() == crate::error::StoreErrorKind::Conflict {
        return Error::Integrity(format!(
            "{} was replaced during the restore; restore again",
            src.key
        ));
    }
    Error::from(e).map_message(|msg| {
        format!(
            "reading {} from the store failed: {msg}; try again",
            src.key
        )
    })
}

type StageOut = (f64, f64, Vec<String>, Vec<String>);

/// Rows of each TABLE DATA entry, from the manifest's counts.
fn table_rows(job: &RestoreJob<'_>, toc: &Toc) -> HashMap<i64, u64> {
    let counts: HashMap<(&str, &str), u64> = job
        .manifest
        .content
        .tables
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t.rows))
        .collect();
    toc.items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .filter_map(|i| {
            Some((
                i.dump_id,
                *counts.get(&(i.namespace.as_str(), i.tag.as_str()))?,
            ))
        })
        .collect()
}

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
                &[&format!("--use-list={}", pre_list.path().display())],
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
    let (lanes_plan, parts) = plan(&toc, &src.index, jobs, &table_rows(job, &toc));
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
        let loaded = super::analyze_pass(&job.target, jobs, super::AnalyzePass::Loaded(&big_names));
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
        super::analyze_pass(&job.target, jobs, super::AnalyzePass::Loaded(&others)).await
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
    /// Tables whose data pgdrill COPYs itself: dump id → (COPY statement, table name).
    /// Empty when the archive rules that out (see [`direct_copies`]).
    copies: HashMap<i64, (String, String)>,
    /// Session settings for pgdrill's own COPY connections (as pg_restore sets them).
    session: String,
    /// Where a lane reports a table whose data is all in (closed when the lanes are done).
    finished: Mutex<Option<tokio::sync::mpsc::UnboundedSender<i64>>>,
    /// Becomes true when the schema is restored: no COPY starts before.
    schema: tokio::sync::watch::Receiver<bool>,
}

impl Lanes {
    /// Waits until the schema is restored (or the restore stops).
    async fn schema_ready(&self, mut stopped: Cancel) -> Result<()> {
        let mut rx = self.schema.clone();
        tokio::select! {
            r = rx.wait_for(|ready| *ready) => r.map(|_| ()).map_err(|_| interrupted()),
            _ = stopped.cancelled() => Err(interrupted()),
        }
    }
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

/// The post-data entries that can run as soon as all data is in, beside the large tables'
/// own entries: none of their dependencies, direct or through another post-data entry, is
/// a large table (`big`: TABLE DATA ids), its data or its own entries; not event triggers.
/// In TOC order.
fn early_post_data(toc: &Toc, own_post: &HashMap<i64, Vec<i64>>, big: &HashSet<i64>) -> Vec<i64> {
    let tables: HashSet<i64> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE")
        .map(|i| i.dump_id)
        .collect();
    let mut blocked: HashSet<i64> = big.clone();
    for i in toc.items.iter().filter(|i| big.contains(&i.dump_id)) {
        // The TABLE entry the large table's data belongs to.
        blocked.extend(i.deps.iter().filter(|d| tables.contains(d)).copied());
    }
    for id in big {
        blocked.extend(own_post.get(id).into_iter().flatten().copied());
    }
    // Event triggers would fire on the large tables' index builds: pg_restore makes them last.
    blocked.extend(
        toc.items
            .iter()
            .filter(|i| i.desc == "EVENT TRIGGER")
            .map(|i| i.dump_id),
    );
    let post: Vec<&archive::TocItem> = toc
        .items
        .iter()
        .filter(|i| i.section == Section::PostData && !large_object(i))
        .filter(|i| !blocked.contains(&i.dump_id))
        .collect();
    // Dependencies may come later in the TOC: repeat until nothing more is blocked.
    loop {
        let before = blocked.len();
        for i in &post {
            if i.deps.iter().any(|d| blocked.contains(d)) {
                blocked.insert(i.dump_id);
            }
        }
        if blocked.len() == before {
            break;
        }
    }
    post.iter()
        .map(|i| i.dump_id)
        .filter(|id| !blocked.contains(id))
        .collect()
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(|id| format!("{id};\n")).collect()
}

/// Per-table work once its data is in: its own post-data entries, then ANALYZE.
struct Tails<'a, 'r, 'j> {
    runner: &'a Runner<'r, 'j>,
    head_file: &'a Path,
    /// Session settings of its index builds ([`beside_lanes`]).
    beside: &'static [(&'static str, &'static str)],
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
            let list = list_file(&id_list(post))?;
            let arg = format!("--use-list={}", list.path().display());
            let ignored = self
                .runner
                .file_with(&[&arg], self.beside, self.head_file, stopped.clone())
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
    fn command(&self, extra: &[&str], settings: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(self.install.bin("pg_restore"));
        cmd.arg(format!("--dbname={}", self.job.target.dbname))
            .args(["--no-owner", "--no-privileges", "--no-password"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        super::configure_pg_restore(self.job, &mut cmd, self.passfile, settings);
        cmd
    }

    /// pg_restore reading `file`; returns the allowlisted errors.
    async fn file(&self, extra: &[&str], file: &Path, stopped: Cancel) -> Result<Vec<String>> {
        self.file_with(extra, &[], file, stopped).await
    }

    /// The entries `ids` by `pg_restore -j` from the TOC `file`, with no more workers (each a
    /// connection) than entries.
    async fn entries(
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
        let args = [
            format!("--use-list={}", list.path().display()),
            format!("--jobs={workers}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.file(&args, file, stopped).await
    }

    /// [`Runner::file`] with server settings for pg_restore's session.
    async fn file_with(
        &self,
        extra: &[&str],
        settings: &[(&str, &str)],
        file: &Path,
        mut stopped: Cancel,
    ) -> Result<Vec<String>> {
        let mut cmd = self.command(extra, settings);
        cmd.arg(file).stdin(Stdio::null());
        let (status, lines) = Proc::run(cmd, self.install, &mut stopped).await?;
        verdict(Some(status), &lines, self.job.ignore_errors, false)
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
        let list = list_file(&id_list(&task.entries))?;
        let mut cmd = self.command(&[&format!("--use-list={}", list.path().display())], &[]);
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

impl Runner<'_, '_> {
    /// One data task loaded by pgdrill itself: the lane's connection runs each table's COPY
    /// statement and sends the rows decoded from the task's pieces, as pg_restore would,
    /// without a pg_restore process and a pipe in between. A COPY is completed only when
    /// its block (or part) was decoded to its end; otherwise it is aborted.
    async fn copy_task(
        &self,
        src: &Source,
        shared: &Lanes,
        task: &Task,
        plain: Option<Plain>,
        conn: &mut Option<tokio_postgres::Client>,
        mut stopped: Cancel,
    ) -> Result<(Option<Plain>, Vec<String>)> {
        // The decoder starts at once; the connection opens meanwhile.
        let (tx, rx) = tokio::sync::mpsc::channel::<Feed>(8);
        let feeder = {
            let (src, task, int_size) = (src.clone(), task.clone(), shared.int_size);
            tokio::task::spawn_blocking(move || feed_copy(&src, int_size, &task, plain, tx))
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
            self.send_copies(c, shared, task, rx).await
        };
        let sent = tokio::select! {
            r = sent => r,
            _ = stopped.cancelled() => Err(interrupted()),
        };
        let fed = feeder
            .await
            .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))?;
        match (fed, sent) {
            // The dump could not be read or decrypted: that is the cause.
            (Err(e @ (Error::Integrity(_) | Error::Key(_))), _) => Err(e),
            (_, Err(e)) => {
                // The connection may be mid-COPY: never reuse it.
                *conn = None;
                Err(e)
            }
            (Err(e), Ok(_)) => Err(e),
            (Ok(p), Ok(ignored)) => Ok((Some(p), ignored)),
        }
    }

    /// Runs the COPYs of one task from the decoder's [`Feed`]s; returns the allowlisted
    /// errors.
    async fn send_copies(
        &self,
        c: &tokio_postgres::Client,
        shared: &Lanes,
        task: &Task,
        mut rx: tokio::sync::mpsc::Receiver<Feed>,
    ) -> Result<Vec<String>> {
        use futures::SinkExt;
        type Sink = std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>;
        let mut ignored = Vec::new();
        let mut sink: Option<Sink> = None;
        let mut table = String::new();
        // Like pg_restore's "COPY failed for table" error: allowlisted, or the end.
        let allow = self.job.ignore_errors;
        let mut failed = |table: &str, e: &tokio_postgres::Error| -> Result<()> {
            let entry = format!(
                "error: COPY failed for table {table}: {}",
                client::describe(e)
            );
            if allow.iter().any(|a| entry.contains(a.as_str())) {
                ignored.push(entry);
                return Ok(());
            }
            Err(Error::Failed(format!(
                "loading the data failed, so the restore failed (allowlist known errors in [restore] ignore_errors): {entry}"
            )))
        };
        while let Some(feed) = rx.recv().await {
            match feed {
                Feed::Start(id) => {
                    let Some((stmt, name)) = shared
                        .copies
                        .get(&id)
                        .filter(|_| task.entries.contains(&id))
                    else {
                        return Err(Error::Integrity(format!(
                            "the dump does not match its index (unexpected data block {id}); restore with --spool"
                        )));
                    };
                    table = name.clone();
                    sink = match c.copy_in::<_, Bytes>(stmt.as_str()).await {
                        Ok(s) => Some(Box::pin(s)),
                        Err(e) => {
                            failed(&table, &e)?;
                            None
                        }
                    };
                }
                Feed::Data(bytes) => {
                    if let Some(s) = sink.as_mut() {
                        if let Err(e) = s.send(bytes).await {
                            sink = None;
                            failed(&table, &e)?;
                        }
                    }
                }
                Feed::End => {
                    if let Some(mut s) = sink.take() {
                        if let Err(e) = s.as_mut().finish().await {
                            failed(&table, &e)?;
                        }
                    }
                }
            }
        }
        // The decoder stopped early (its error says why): an unfinished COPY is aborted
        // when its sink is dropped here.
        drop(sink);
        Ok(ignored)
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

/// The tables whose data the lanes COPY themselves: every `TABLE DATA` entry with a COPY
/// statement, when the archive's blocks are stored uncompressed and its encoding is UTF8
/// (pgdrill's own connections speak UTF8). Otherwise none: pg_restore loads them all.
fn direct_copies(toc: &Toc, names: &HashMap<i64, String>) -> HashMap<i64, (String, String)> {
    let utf8 = toc
        .encoding()
        .is_some_and(|e| e.eq_ignore_ascii_case("UTF8") || e.eq_ignore_ascii_case("UTF-8"));
    if !toc.uncompressed || !utf8 {
        return HashMap::new();
    }
    toc.items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .filter_map(|i| {
            let stmt = i.copy_stmt.as_ref()?;
            let name = names.get(&i.dump_id)?;
            Some((i.dump_id, (stmt.clone(), name.clone())))
        })
        .collect()
}

/// The settings pg_restore gives its sessions (`_doSetFixedOutputState`): the archive's
/// encoding, string syntax and search path, no timeouts, no row security.
fn session_sql(toc: &Toc) -> String {
    let mut sql = String::from(
        "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;\n",
    );
    // PostgreSQL 17+ only, as pg_restore does it.
    sql.push_str(
        "SELECT pg_catalog.set_config('transaction_timeout', '0', false) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout';\n",
    );
    for s in &toc.session {
        sql.push_str(s.trim());
        sql.push('\n');
    }
    sql.push_str(
        "SET check_function_bodies = false; SET xmloption = content; SET client_min_messages = warning; SET row_security = off;",
    );
    sql
}

/// What a lane's decoder hands its COPY sender.
#[derive(Debug)]
enum Feed {
    /// The data of this TABLE DATA entry (or of its next part) starts.
    Start(i64),
    Data(Bytes),
    /// The block (or part) is complete.
    End,
}

/// Where [`Chunks`] stands in the archive's data layout.
#[derive(Clone, Copy, Debug, PartialEq)]
enum At {
    /// Before a block: the block type byte and the dump id.
    Block,
    /// Before a chunk's length.
    Len,
    /// Inside a chunk, this many bytes left.
    Data(u64),
}

/// COPY data sent per message (a row is its own chunk in the archive: they are gathered).
const COPY_BATCH: usize = 256 << 10;

/// Turns decoded archive bytes (data blocks: `BLK_DATA`, dump id, then `Int length, bytes`
/// chunks up to a zero length) into [`Feed`]s: the chunks' contents are the COPY text.
struct Chunks<'a> {
    tx: &'a tokio::sync::mpsc::Sender<Feed>,
    int_size: usize,
    at: At,
    /// A header (block start or chunk length) split across writes.
    partial: Vec<u8>,
    out: bytes::BytesMut,
    /// The receiver went away (the COPY side stopped).
    gone: bool,
}

impl<'a> Chunks<'a> {
    fn new(tx: &'a tokio::sync::mpsc::Sender<Feed>, int_size: usize) -> Self {
        Chunks {
            tx,
            int_size,
            at: At::Block,
            partial: Vec::new(),
            out: bytes::BytesMut::new(),
            gone: false,
        }
    }

    fn send(&mut self, f: Feed) -> io::Result<()> {
        self.tx.blocking_send(f).map_err(|_| {
            self.gone = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "the COPY stopped")
        })
    }

    fn flush_data(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let data = self.out.split().freeze();
        self.send(Feed::Data(data))
    }

    /// A part that starts at a row boundary inside the block of `id`.
    fn open(&mut self, id: i64) -> io::Result<()> {
        self.at = At::Len;
        self.send(Feed::Start(id))
    }

    /// The end of a piece: at a chunk boundary, and the block ended unless `close`.
    fn finish_piece(&mut self, close: bool) -> io::Result<()> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        match (self.at, close) {
            (At::Len, true) if self.partial.is_empty() => {
                self.flush_data()?;
                self.at = At::Block;
                self.send(Feed::End)
            }
            (At::Block, false) if self.partial.is_empty() => Ok(()),
            _ => Err(bad(
                "a data range of the dump index does not end where a block or row does",
            )),
        }
    }

    fn int(&self, b: &[u8]) -> io::Result<i64> {
        let mut v: i64 = 0;
        for (k, byte) in b[1..].iter().enumerate() {
            v |= i64::from(*byte) << (8 * k);
        }
        if b[0] != 0 {
            v = -v;
        }
        Ok(v)
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        while !data.is_empty() {
            match self.at {
                At::Data(left) => {
                    if self.out.capacity() == 0 {
                        // One batch's worth at once, never grown (growing copies it): a
                        // row may be split between two COPY messages, as COPY allows.
                        self.out.reserve(COPY_BATCH);
                    }
                    let room = self.out.capacity() - self.out.len();
                    let take = data
                        .len()
                        .min(room)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.at = if take as u64 == left {
                        At::Len
                    } else {
                        At::Data(left - take as u64)
                    };
                    if self.out.len() == self.out.capacity() {
                        self.flush_data()?;
                    }
                }
                At::Block | At::Len => {
                    let need = if self.at == At::Block { 2 } else { 1 } + self.int_size;
                    let take = (need - self.partial.len()).min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() < need {
                        continue;
                    }
                    // Copied out (no allocation per row: `partial` keeps its buffer).
                    let mut buf = [0u8; 16];
                    buf[..need].copy_from_slice(&self.partial);
                    self.partial.clear();
                    let head = &buf[..need];
                    if self.at == At::Block {
                        if head[0] != archive::BLK_DATA {
                            return Err(bad(format!("unexpected block type {}", head[0])));
                        }
                        let id = self.int(&head[1..])?;
                        self.at = At::Len;
                        self.send(Feed::Start(id))?;
                    } else {
                        let len = self.int(head)?;
                        if len < 0 {
                            return Err(bad(format!("negative chunk length {len}")));
                        }
                        if len == 0 {
                            self.flush_data()?;
                            self.at = At::Block;
                            self.send(Feed::End)?;
                        } else {
                            self.at = At::Data(len as u64);
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decodes the task's pieces into COPY data for [`Runner::copy_task`] (blocking).
fn feed_copy(
    src: &Source,
    int_size: usize,
    task: &Task,
    plain: Option<Plain>,
    tx: tokio::sync::mpsc::Sender<Feed>,
) -> Result<Plain> {
    let mut plain = match plain {
        Some(p) => p,
        None => src.open()?,
    };
    let mut chunks = Chunks::new(&tx, int_size);
    let stopped = |_| Error::Failed("the COPY stopped reading its input".into());
    for p in &task.pieces {
        if let Some(id) = p.open {
            chunks.open(id).map_err(stopped)?;
        }
        if let Err(e) = src.copy(&mut plain, p.from, p.to, &mut chunks) {
            return Err(if chunks.gone {
                stopped(e)
            } else {
                decode_error(src, e)
            });
        }
        if let Err(e) = chunks.finish_piece(p.close) {
            return Err(if chunks.gone {
                stopped(e)
            } else {
                decode_error(src, e)
            });
        }
    }
    Ok(plain)
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
            copy_stmt: (desc == "TABLE DATA").then(|| format!("COPY public.t{id} FROM stdin;\n")),
            defn: String::new(),
            owner: String::new(),
            table_oid: "0".into(),
            oid: "0".into(),
        }
    }

    /// A TOC of `items`: 4-byte ints, uncompressed blocks, no session settings.
    fn toc(items: Vec<TocItem>) -> Toc {
        Toc {
            int_size: 4,
            uncompressed: true,
            session: Vec::new(),
            items,
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

    fn feeds(rx: &mut tokio::sync::mpsc::Receiver<Feed>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            out.push(match f {
                Feed::Start(id) => format!("start {id}"),
                Feed::Data(b) => format!("data {}", String::from_utf8_lossy(&b)),
                Feed::End => "end".into(),
            });
        }
        out
    }

    fn chunk(bytes: &[u8]) -> Vec<u8> {
        let mut v = archive::encode_int(bytes.len() as i64, 4);
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn post_data_that_does_not_involve_a_large_table_runs_early() {
        let post = |id, desc, deps| item(id, desc, Section::PostData, deps, false);
        let toc = toc(vec![
            item(1, "SCHEMA", Section::PreData, vec![], false),
            item(2, "TABLE", Section::PreData, vec![1], false),
            item(3, "TABLE", Section::PreData, vec![1], false),
            item(10, "TABLE DATA", Section::Data, vec![2], false),
            item(11, "TABLE DATA", Section::Data, vec![3], false),
            // A comment on the foreign key below, listed before it.
            post(25, "COMMENT", vec![24]),
            post(20, "CONSTRAINT", vec![2]),
            post(21, "CONSTRAINT", vec![3]),
            post(22, "INDEX", vec![3]),
            // The small table's foreign key to the large one's primary key.
            post(24, "FK CONSTRAINT", vec![3, 20]),
            // The large table's foreign key to the small one.
            post(26, "FK CONSTRAINT", vec![2, 21]),
            // Depends on the schema only.
            post(27, "PUBLICATION", vec![1]),
            // Would fire on the other entries' DDL: always last.
            post(28, "EVENT TRIGGER", vec![]),
        ]);
        let own = table_post_data(&toc);
        assert_eq!(own.get(&10), Some(&vec![20]));
        let big: HashSet<i64> = [10].into();
        assert_eq!(early_post_data(&toc, &own, &big), vec![21, 22, 27]);
        // Without a large table everything but the event trigger is early.
        assert_eq!(
            early_post_data(&toc, &own, &HashSet::new()),
            vec![25, 20, 21, 22, 24, 26, 27]
        );
    }

    #[test]
    fn index_builds_beside_lanes_skip_a_setting_the_server_lacks() {
        assert_eq!(
            beside_lanes(150_018),
            &[("max_parallel_maintenance_workers", "0")]
        );
        assert_eq!(beside_lanes(110_000).len(), 1);
        // PostgreSQL 10 refuses a connection that sets an unknown parameter.
        assert!(beside_lanes(100_023).is_empty());
    }

    #[test]
    fn age_chunks_are_located_from_the_sizes_alone() {
        let (identity, recipient) = crate::crypto::generate_identity("2026-01-01T00:00:00Z");
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("key.txt");
        std::fs::write(&key, identity).expect("key");
        let enc = crate::crypto::EncryptionKeys::new(&[recipient], None).expect("keys");
        for len in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut sink = enc.wrap(Vec::new()).expect("wrap");
            sink.write_all(&plain).expect("write");
            let stored = sink.finish().expect("finish");
            let start = age_payload_start(stored.len() as u64, len as u64).expect("start");
            // Every chunk ends where the mapping says: cutting the object there still
            // decrypts everything before the cut.
            let chunks = (len as u64).div_ceil(AGE_CHUNK).max(1);
            assert_eq!(
                start + (len as u64) + chunks * AGE_TAG,
                stored.len() as u64,
                "{len}"
            );
            if len > 65_536 {
                let cut = (start + AGE_CHUNK + AGE_TAG) as usize;
                let keys = crate::crypto::DecryptionKeys::new(std::slice::from_ref(&key), None)
                    .expect("dk");
                let mut r = keys.decrypt(&stored[..cut], "t").expect("decrypt");
                let mut got = vec![0u8; AGE_CHUNK as usize];
                r.read_exact(&mut got).expect("first chunk");
                assert_eq!(got, plain[..AGE_CHUNK as usize]);
            }
        }
        // Sizes that do not add up give no bound.
        assert_eq!(age_payload_start(100, 200), None);
    }

    #[test]
    fn data_blocks_become_copy_feeds_whatever_the_write_sizes() {
        // Two blocks, a row per chunk, as pg_dump writes them.
        let mut raw = archive::copy_block_start(7, 4);
        raw.extend(chunk(b"1\ta\n"));
        raw.extend(chunk(b"2\tb\n"));
        raw.extend(archive::encode_int(0, 4));
        raw.extend(archive::copy_block_start(8, 4));
        raw.extend(chunk(b"3\tc\n"));
        raw.extend(archive::encode_int(0, 4));
        for step in [1, 3, 7, raw.len()] {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let mut c = Chunks::new(&tx, 4);
            for piece in raw.chunks(step) {
                c.write_all(piece).expect("write");
            }
            c.finish_piece(false).expect("ends after a block");
            assert_eq!(
                feeds(&mut rx),
                [
                    "start 7",
                    "data 1\ta\n2\tb\n",
                    "end",
                    "start 8",
                    "data 3\tc\n",
                    "end"
                ],
                "write size {step}"
            );
        }

        // A part cut at row boundaries: no block header, no end marker of its own.
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let mut c = Chunks::new(&tx, 4);
        c.open(7).expect("open");
        c.write_all(&[chunk(b"4\td\n"), chunk(b"5\te\n")].concat())
            .expect("write");
        c.finish_piece(true).expect("part ends at a row");
        assert_eq!(feeds(&mut rx), ["start 7", "data 4\td\n5\te\n", "end"]);

        // A range ending inside a row, or a block of another kind, is refused.
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let mut c = Chunks::new(&tx, 4);
        c.open(7).expect("open");
        c.write_all(&chunk(b"6\tf\n")[..6]).expect("write");
        assert!(c.finish_piece(true).is_err());
        let mut c = Chunks::new(&tx, 4);
        assert!(c.write_all(&[3u8, 0, 7, 0, 0, 0]).is_err());
    }

    #[test]
    fn rows_beyond_one_batch_go_in_full_batches_split_anywhere() {
        // 3.5 batches of rows of an odd length: rows straddle the batch boundaries.
        let row = b"12345\tsome text of a row\t{\"k\": 1}\n";
        let rows = COPY_BATCH * 7 / 2 / row.len();
        let mut raw = archive::copy_block_start(9, 4);
        for _ in 0..rows {
            raw.extend(chunk(row));
        }
        raw.extend(archive::encode_int(0, 4));
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let mut c = Chunks::new(&tx, 4);
        for piece in raw.chunks(100_000) {
            c.write_all(piece).expect("write");
        }
        c.finish_piece(false).expect("ends after a block");
        drop(c);
        let mut sizes = Vec::new();
        let mut data = Vec::new();
        let mut marks = Vec::new();
        while let Ok(f) = rx.try_recv() {
            match f {
                Feed::Data(b) => {
                    sizes.push(b.len());
                    data.extend_from_slice(&b);
                }
                Feed::Start(id) => marks.push(format!("start {id}")),
                Feed::End => marks.push("end".into()),
            }
        }
        assert_eq!(marks, ["start 9", "end"]);
        assert_eq!(data, row.repeat(rows), "the COPY text, byte for byte");
        assert_eq!(sizes.len(), 4, "{sizes:?}");
        assert!(sizes[..3].iter().all(|&s| s == COPY_BATCH), "{sizes:?}");
    }

    #[test]
    fn the_costliest_table_is_loaded_by_every_lane_first() {
        let mb = 1u64 << 20;
        // Many short rows cost more than few long ones of the same bytes.
        let rowy = DataBlock {
            id: 10,
            start: 100,
            end: 100 + 40 * mb,
            splits: (1..10).map(|k| 100 + k * 4 * mb).collect(),
        };
        let wide = DataBlock {
            id: 11,
            start: rowy.end,
            end: rowy.end + 60 * mb,
            splits: (1..15).map(|k| rowy.end + k * 4 * mb).collect(),
        };
        let toc = toc(vec![
            item(1, "TABLE", Section::PreData, vec![], false),
            item(2, "TABLE", Section::PreData, vec![], false),
            item(10, "TABLE DATA", Section::Data, vec![1], false),
            item(11, "TABLE DATA", Section::Data, vec![2], false),
        ]);
        let ix = index(vec![rowy.clone(), wide.clone()]);
        let rows = HashMap::from([(10, 1_000_000), (11, 10_000)]);
        let (lanes, parts) = plan(&toc, &ix, 2, &rows);
        // Both lanes start on the row-heavy table, each with half of it.
        for lane in &lanes {
            assert_eq!(lane[0].entries, vec![10], "{lanes:?}");
            assert!(lane[0].bytes.abs_diff(20 * mb) <= 4 * mb, "{lanes:?}");
        }
        assert_eq!(parts[&10], 2);
        // Every byte of both tables is dealt exactly once.
        for b in [&rowy, &wide] {
            let mut got: Vec<(u64, u64)> = lanes
                .iter()
                .flatten()
                .filter(|t| t.entries == vec![b.id])
                .map(|t| (t.pieces[0].from, t.pieces[0].to))
                .collect();
            got.sort_unstable();
            assert_eq!(got.first().map(|r| r.0), Some(b.start));
            assert_eq!(got.last().map(|r| r.1), Some(b.end));
            assert!(got.windows(2).all(|w| w[0].1 == w[1].0), "{got:?}");
        }
        // Without the TOC's COPY statements (or with another encoding) pg_restore loads
        // the data: nothing is loaded directly.
        let names = HashMap::from([(10, "a".to_string()), (11, "b".to_string())]);
        assert_eq!(direct_copies(&toc, &names).len(), 0, "no encoding known");
        let mut utf8 = toc.clone();
        utf8.session = vec!["SET client_encoding = 'UTF8';\n".into()];
        assert_eq!(direct_copies(&utf8, &names).len(), 2);
        let mut latin1 = utf8.clone();
        latin1.session = vec!["SET client_encoding = 'LATIN1';\n".into()];
        assert_eq!(direct_copies(&latin1, &names).len(), 0);
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
            uncompressed: true,
            session: vec!["SET client_encoding = 'UTF8';\n".into()],
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
        let (lanes, parts) = plan(&toc, &ix, 2, &HashMap::new());
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
        let (lanes, parts) = plan(&toc2, &ix, 2, &HashMap::new());
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
        let (_, parts) = plan(&toc, &ix, 1, &HashMap::new());
        assert!(parts.values().all(|&n| n == 1));
    }
}
