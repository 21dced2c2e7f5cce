//! Reading the stored dump for the streamed restore: the dump index and the object's first
//! bytes, ranged GETs pinned to the ETag with one read ahead, age and zstd decoding from the
//! frame that holds a byte, and the whole-object digest check.
//!
//! (About 450 lines: the range reader, the age chunk arithmetic and the seeking decoder
//! depend on one another and read best together.)

use crate::frames::DumpIndex;
use crate::manifest::StoredObject;
use crate::pipeline::Digested;
use crate::progress::Progress;
use crate::restore::RestoreJob;
use crate::verify::{decode_object, ReadOpts};
use crate::{layout, Error, Result};
use bytes::Bytes;
use pgdrill_pg::archive::{self};
use pgdrill_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes per ranged GET.
pub(super) const WINDOW: u64 = 4 << 20;

/// A backup's dump index, and what the store says of the dump object it describes.
pub(crate) struct Loaded {
    pub(crate) index: DumpIndex,
    /// Size and ETag of the stored dump (every ranged read is pinned to that version).
    pub(super) object: pgdrill_store::ObjectInfo,
    /// The dump's first [`PREFIX`] bytes (its header and TOC), read with its size and ETag.
    pub(crate) prefix: Bytes,
}

/// Bytes of the stored dump read with its size and ETag, before anything else: they hold
/// the archive's header and table of contents, so the schema can be restored without
/// another round trip to the store.
pub(super) const PREFIX: u64 = 256 << 10;

/// The backup's dump index, if it has one (`None`: restore by spooling instead), read
/// while the dump object is looked up.
pub(crate) async fn load_index(
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
pub(crate) async fn read_toc(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    loaded: &Loaded,
) -> Result<archive::Toc> {
    let key = layout::backup_object(&job.manifest.database, &job.manifest.backup_id, &dump.name);
    let src = Source::new(
        job,
        dump,
        key,
        loaded.object.etag.clone(),
        loaded.prefix.clone(),
        loaded.index.clone(),
    );
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

pub(super) async fn read_index(
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
pub(super) const MAX_INDEX: u64 = 256 << 20;

/// A `Vec` sink that refuses to grow past `cap` bytes.
pub(super) struct Capped {
    pub(super) buf: Vec<u8>,
    pub(super) cap: usize,
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
pub(super) struct Source {
    pub(super) store: Store,
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) etag: Option<String>,
    pub(super) name: String,
    pub(super) encrypted: bool,
    pub(super) keys: Arc<crate::crypto::DecryptionKeys>,
    pub(super) index: Arc<DumpIndex>,
    /// Stored offset of the first age chunk (after the header and the nonce), derived from
    /// the sizes; `None` when they do not add up (reads are then not bounded ahead).
    pub(super) payload_start: Option<u64>,
    /// The object's first bytes, already read (served without a GET).
    pub(super) prefix: Bytes,
    pub(super) rt: tokio::runtime::Handle,
    /// Bytes the ranged GETs brought from the store (a table restore reports it).
    pub(super) fetched: Arc<AtomicU64>,
    /// Raw bytes of table data the lanes decoded ([`Source::copy_data`]), also added to
    /// `progress` once the data stage shows (`counting`; the lanes start decoding while the
    /// schema goes in, and the schema stage is not theirs).
    pub(super) loaded: Arc<AtomicU64>,
    pub(super) progress: Option<Arc<Progress>>,
    pub(super) counting: Arc<std::sync::atomic::AtomicBool>,
}

impl Source {
    /// The stored dump `dump` of `job`'s backup at `key`, its ranged reads pinned to `etag`,
    /// its first bytes (`prefix`) already read and its frame index; nothing counted yet, no
    /// progress (the streamed restore sets `progress`).
    pub(super) fn new(
        job: &RestoreJob<'_>,
        dump: &StoredObject,
        key: String,
        etag: Option<String>,
        prefix: Bytes,
        index: DumpIndex,
    ) -> Source {
        Source {
            store: job.store.clone(),
            key,
            size: dump.size,
            etag,
            name: dump.name.clone(),
            encrypted: job.manifest.encrypted(),
            keys: job.read.keys.clone(),
            payload_start: age_payload_start(dump.size, index.compressed_size),
            prefix,
            index: Arc::new(index),
            rt: tokio::runtime::Handle::current(),
            fetched: Arc::default(),
            loaded: Arc::default(),
            progress: None,
            counting: Arc::default(),
        }
    }
}

pub(super) trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// One lane's reader of the compressed stream (decrypted), positioned by seeking.
pub(super) struct Plain {
    pub(super) reader: Box<dyn ReadSeek>,
    /// Stored offset past which the current copy needs nothing: shared with the
    /// [`RangeReader`] below, which fetches and reads ahead only up to it.
    pub(super) limit: Arc<AtomicU64>,
}

/// Plaintext bytes per age chunk, and the chunk's tag.
pub(super) const AGE_CHUNK: u64 = 64 << 10;
pub(super) const AGE_TAG: u64 = 16;
/// Read beyond a copy's last frame that a decoder may still ask for (zstd's input buffer,
/// a partial age chunk).
pub(super) const SLACK: u64 = 256 << 10;
/// Bytes per GET past the limit (an age header, a decoder's last read): on demand only.
pub(super) const ON_DEMAND: u64 = 64 << 10;

/// Where the age payload's chunks start in an encrypted object of `stored` bytes holding
/// `compressed` plaintext bytes: header, 16-byte nonce, then chunks of 64 KiB plus a tag
/// (at least one).
pub(super) fn age_payload_start(stored: u64, compressed: u64) -> Option<u64> {
    let chunks = compressed.div_ceil(AGE_CHUNK).max(1);
    let payload = 16 + compressed + chunks * AGE_TAG;
    stored
        .checked_sub(payload)
        .filter(|header| (1..=1 << 20).contains(header))
        .map(|header| header + 16)
}

impl Source {
    pub(super) fn open(&self) -> Result<Plain> {
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
    pub(super) fn stored_end(&self, end: u64) -> u64 {
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
    pub(super) fn copy(
        &self,
        plain: &mut Plain,
        from: u64,
        to: u64,
        out: &mut impl Write,
    ) -> io::Result<()> {
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

impl Source {
    /// [`Source::copy`] of table data the lanes load: counted in `loaded` and `progress`.
    pub(super) fn copy_data(
        &self,
        plain: &mut Plain,
        from: u64,
        to: u64,
        out: &mut impl Write,
    ) -> io::Result<()> {
        let mut metered = Metered {
            inner: out,
            src: self,
        };
        self.copy(plain, from, to, &mut metered)
    }
}

/// Counts what goes through it as loaded data.
struct Metered<'a, W> {
    inner: W,
    src: &'a Source,
}

impl<W: Write> Write for Metered<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.src.loaded.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(p) = self.src.progress.as_ref() {
            if self.src.counting.load(Ordering::Relaxed) {
                p.add(n as u64);
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies exactly `n` bytes from `r` to `w`.
pub(super) fn pump(
    r: &mut impl Read,
    w: &mut impl Write,
    mut n: u64,
    buf: &mut [u8],
) -> io::Result<()> {
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
pub(super) type Fetch = tokio::task::JoinHandle<std::result::Result<Bytes, StoreError>>;

/// A blocking `Read + Seek` over a stored object: ranged GETs of up to [`WINDOW`] bytes,
/// the next one fetched while the current one is read, neither past the current copy's
/// limit (beyond it, small GETs on demand only).
pub(super) struct RangeReader {
    pub(super) src: Source,
    pub(super) pos: u64,
    pub(super) buf: Bytes,
    pub(super) buf_start: u64,
    /// The GET in flight for the bytes after the buffer: (offset, length, handle).
    pub(super) ahead: Option<(u64, u64, Fetch)>,
    /// Bytes per GET: small at first (a lane may need only the TOC), growing to [`WINDOW`].
    pub(super) window: u64,
    pub(super) limit: Arc<AtomicU64>,
}

impl RangeReader {
    /// Bytes to fetch at `at`: the window, cut at the limit; past it, [`ON_DEMAND`] at a time.
    pub(super) fn span(&self, at: u64) -> u64 {
        let limit = self.limit.load(Ordering::Relaxed);
        let len = if at < limit {
            self.window.min(limit - at)
        } else {
            ON_DEMAND
        };
        len.min(self.src.size - at)
    }

    pub(super) fn fill(&mut self) -> io::Result<()> {
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

/// Size and SHA-256 of the stored object, read front to back.
pub(super) async fn stored_digest(src: &Source, progress: &Progress) -> Result<Digested> {
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

pub(super) fn fetch_range(
    src: &Source,
    start: u64,
    step: u64,
) -> tokio::task::JoinHandle<std::result::Result<Bytes, StoreError>> {
    let (store, key, etag) = (src.store.clone(), src.key.clone(), src.etag.clone());
    let fetched = src.fetched.clone();
    let end = (start + step).min(src.size);
    src.rt.spawn(async move {
        let got = store
            .get_range_pinned(&key, start..end, etag.as_deref())
            .await;
        if let Ok(b) = &got {
            fetched.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        got
    })
}

pub(super) fn read_error(src: &Source, e: StoreError) -> Error {
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

pub(super) fn decode_error(src: &Source, e: io::Error) -> Error {
    Error::Integrity(format!(
        "{} is corrupt or truncated ({e}); restore from another backup",
        src.key
    ))
}
