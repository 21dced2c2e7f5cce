//! The read path: stream a stored object, check its size and SHA-256, decrypt, decompress
//! and check the raw digest. Used by `verify`, `export` and restores.

use crate::cancel::Cancel;
use crate::crypto::DecryptionKeys;
use crate::layout;
use crate::manifest::{Manifest, StoredObject};
use crate::pipeline::{BlockReader, Digested, HashReader, HashWriter};
use crate::progress::Progress;
use crate::{Error, Result};
use futures::StreamExt;
use pgdrill_store::Store;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How objects are read: keys, progress, cancellation and download parallelism.
#[derive(Clone)]
pub struct ReadOpts {
    pub keys: Arc<DecryptionKeys>,
    pub progress: Arc<Progress>,
    pub cancel: Cancel,
    /// Ranged GETs in flight; 1 = one sequential stream.
    pub parallel: usize,
}

/// Size of one ranged GET when downloading in parallel.
const RANGE_SIZE: u64 = 16 << 20;

/// The stored object must have the size the manifest records: a different size is a
/// truncated or replaced object, and the manifest's number must not size anything.
fn check_size(key: &str, stored: u64, recorded: u64) -> Result<()> {
    if stored != recorded {
        return Err(Error::Integrity(format!(
            "{key} is corrupt or truncated: the store holds {stored} bytes but the manifest records {recorded}; restore from another backup"
        )));
    }
    Ok(())
}

/// A listed object the store does not have is an integrity failure (exit 3) naming it; any
/// other store error keeps its own kind.
pub(crate) fn stored_object_error(key: &str, e: pgdrill_store::StoreError) -> Error {
    match e {
        pgdrill_store::StoreError::NotFound { .. } => missing_object(key),
        other => other.into(),
    }
}

/// The integrity error for an object the manifest lists but the store does not have.
pub(crate) fn missing_object(key: &str) -> Error {
    Error::Integrity(format!(
        "{key} is missing from the store though the backup's manifest lists it; restore from another backup"
    ))
}

/// The object's bytes in order: one GET, or `parallel` ranged GETs in flight whose results
/// are delivered in order (memory: at most `parallel` ranges). Fails before reading when the
/// stored object's size differs from `size` (the manifest's).
async fn open_stream(
    store: &Store,
    key: &str,
    size: u64,
    parallel: usize,
) -> Result<
    futures::stream::BoxStream<
        'static,
        std::result::Result<bytes::Bytes, pgdrill_store::StoreError>,
    >,
> {
    if parallel <= 1 || size <= RANGE_SIZE {
        let (stored, stream) = store
            .get_stream(key)
            .await
            .map_err(|e| stored_object_error(key, e))?;
        check_size(key, stored, size)?;
        return Ok(stream);
    }
    let head = store
        .head(key)
        .await
        .map_err(|e| stored_object_error(key, e))?;
    check_size(key, head.size, size)?;
    let store = store.clone();
    let key = key.to_string();
    let ranges = (0..size.div_ceil(RANGE_SIZE)).map(move |i| {
        let start = i * RANGE_SIZE;
        start..(start + RANGE_SIZE).min(size)
    });
    let stream = futures::stream::iter(ranges)
        .map(move |r| {
            let (store, key) = (store.clone(), key.clone());
            async move { store.get_range(&key, r).await }
        })
        .buffered(parallel);
    Ok(stream.boxed())
}

/// Digests seen while decoding one object.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Decoded {
    pub name: String,
    pub stored_bytes: u64,
    pub stored_sha256: String,
    pub raw_bytes: u64,
    pub raw_sha256: String,
}

/// A writer that remembers whether its own writes failed, so a failing destination is not
/// mistaken for a corrupt source.
struct Flagged<W> {
    inner: W,
    failed: Arc<AtomicBool>,
}

impl<W: Write> Write for Flagged<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .write(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}

/// Streams `object` of backup `m` into `sink` as raw pg_dump bytes and checks every digest.
/// On any mismatch the error is an integrity error naming the object; `sink` may have
/// received bytes by then, so callers spool or use a throwaway target.
pub async fn decode_object<W: Write + Send + 'static>(
    store: &Store,
    m: &Manifest,
    object: &StoredObject,
    sink: W,
    opts: &ReadOpts,
) -> Result<(Decoded, W)> {
    let key = layout::backup_object(&m.database, &m.backup_id, &object.name);
    let mut stream = open_stream(store, &key, object.size, opts.parallel).await?;
    let (keys, progress, cancel) = (
        opts.keys.clone(),
        opts.progress.clone(),
        opts.cancel.clone(),
    );
    progress.set_total(object.size);
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(8);
    let store_failed = Arc::new(AtomicBool::new(false));
    let sink_failed = Arc::new(AtomicBool::new(false));
    let encrypted = m.encrypted();
    let name = object.name.clone();
    let sink_flag = sink_failed.clone();
    let prog = progress.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        decode_blocking(
            BlockReader::new(rx),
            encrypted,
            &keys,
            &name,
            sink,
            sink_flag,
            prog,
        )
    });
    let mut cancel = cancel;
    let feed = async {
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| {
                store_failed.store(true, Ordering::Relaxed);
                io::Error::other(e.to_string())
            });
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    };
    let interrupted = tokio::select! {
        _ = feed => false,
        _ = cancel.cancelled() => true,
    };
    drop(tx);
    let outcome = decoder
        .await
        .map_err(|e| Error::Failed(format!("the decode stage crashed: {e}")))?;
    if interrupted {
        return Err(Error::Failed("interrupted by a signal".into()));
    }
    let (decoded, sink) = match outcome {
        Ok(x) => x,
        Err(DecodeFail::Sink(e)) => {
            return Err(Error::Failed(format!("cannot write the output: {e}")))
        }
        Err(DecodeFail::Other(_)) if store_failed.load(Ordering::Relaxed) => {
            return Err(Error::Failed(format!(
                "reading {key} from the store failed; try again"
            )))
        }
        Err(DecodeFail::Key(e)) => return Err(e),
        Err(DecodeFail::Other(e)) => {
            return Err(Error::Integrity(format!(
                "{key} is corrupt or truncated ({e}); restore from another backup"
            )))
        }
    };
    check_digests(&key, object, &decoded)?;
    Ok((decoded, sink))
}

enum DecodeFail {
    Key(Error),
    Sink(io::Error),
    Other(String),
}

fn decode_blocking<W: Write>(
    input: BlockReader,
    encrypted: bool,
    keys: &DecryptionKeys,
    name: &str,
    sink: W,
    sink_failed: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> std::result::Result<(Decoded, W), DecodeFail> {
    let mut stored = HashReader::new(ProgressReader {
        inner: input,
        progress,
    });
    let mut out = HashWriter::new(Flagged {
        inner: sink,
        failed: sink_failed.clone(),
    });
    let copied = {
        let plain: Box<dyn Read + '_> = if encrypted {
            match keys.decrypt(&mut stored, name) {
                Ok(r) => r,
                Err(Error::Key(m)) => return Err(DecodeFail::Key(Error::Key(m))),
                Err(e) => return Err(DecodeFail::Other(e.to_string())),
            }
        } else {
            Box::new(&mut stored)
        };
        zstd::stream::read::Decoder::new(plain).and_then(|mut z| io::copy(&mut z, &mut out))
    };
    if let Err(e) = copied {
        if sink_failed.load(Ordering::Relaxed) {
            return Err(DecodeFail::Sink(e));
        }
        return Err(DecodeFail::Other(e.to_string()));
    }
    out.flush().map_err(DecodeFail::Sink)?;
    let stored_d: Digested = stored
        .drain_and_finish()
        .map_err(|e| DecodeFail::Other(e.to_string()))?;
    let (flagged, raw_d) = out.finish();
    Ok((
        Decoded {
            name: name.to_string(),
            stored_bytes: stored_d.bytes,
            stored_sha256: stored_d.sha256,
            raw_bytes: raw_d.bytes,
            raw_sha256: raw_d.sha256,
        },
        flagged.inner,
    ))
}

struct ProgressReader<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

fn check_digests(key: &str, o: &StoredObject, d: &Decoded) -> Result<()> {
    if d.stored_bytes != o.size {
        return Err(Error::Integrity(format!(
            "{key} has {} bytes but the manifest records {}: the object is truncated or was replaced",
            d.stored_bytes, o.size
        )));
    }
    if d.stored_sha256 != o.sha256 {
        return Err(Error::Integrity(format!(
            "{key} does not match its SHA-256 in the manifest: the object is corrupt"
        )));
    }
    if d.raw_sha256 != o.raw_sha256 || d.raw_bytes != o.raw_size {
        return Err(Error::Integrity(format!(
            "{key} decodes to a dump that does not match the manifest's raw SHA-256"
        )));
    }
    Ok(())
}

/// Re-reads every stored object of a backup and checks it end to end.
pub async fn verify(store: &Store, m: &Manifest, opts: &ReadOpts) -> Result<Vec<Decoded>> {
    let mut out = Vec::new();
    check_sums_file(store, m).await?;
    for o in &m.objects {
        opts.progress.stage(&format!("verify {}", o.name));
        let (d, _) = decode_object(store, m, o, io::sink(), opts).await?;
        out.push(d);
    }
    Ok(out)
}

/// SHA256SUMS must agree with the manifest.
async fn check_sums_file(store: &Store, m: &Manifest) -> Result<()> {
    let key = layout::backup_object(&m.database, &m.backup_id, layout::SHA256SUMS);
    let text = store
        .get(&key)
        .await
        .map_err(|e| stored_object_error(&key, e))?;
    let text = String::from_utf8_lossy(&text);
    for o in &m.objects {
        let line = format!("{}  {}", o.sha256, o.name);
        if !text.lines().any(|l| l == line) {
            return Err(Error::Integrity(format!(
                "{key} does not list {} with the manifest's digest",
                o.name
            )));
        }
    }
    Ok(())
}

/// Writes the plain pg_dump archive of a backup to `out` (via a temp file renamed only after
/// every digest matched) and `out.sha256` in `sha256sum -c` format.
pub async fn export(store: &Store, m: &Manifest, out: &Path, opts: &ReadOpts) -> Result<Decoded> {
    if m.is_directory() {
        return export_directory(store, m, out, opts).await;
    }
    let dump = m
        .dump_object()
        .ok_or_else(|| Error::Integrity("the manifest lists no dump".into()))?
        .clone();
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = out
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a file path", out.display())))?
        .to_string_lossy()
        .to_string();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.partial-"))
        .tempfile_in(&dir)
        .map_err(|e| Error::Invalid(format!("cannot write in {}: {e}", dir.display())))?;
    let (tmp_file, tmp_path) = tmp.into_parts();
    opts.progress.stage("export");
    let (decoded, file) = decode_object(store, m, &dump, tmp_file, opts).await?;
    file.sync_all()
        .map_err(|e| Error::Failed(format!("cannot flush {}: {e}", out.display())))?;
    tmp_path
        .persist(out)
        .map_err(|e| Error::Failed(format!("cannot move the export to {}: {e}", out.display())))?;
    let sums = format!("{}  {}\n", decoded.raw_sha256, file_name);
    std::fs::write(dir.join(format!("{file_name}.sha256")), sums)
        .map_err(|e| Error::Failed(format!("cannot write {}.sha256: {e}", out.display())))?;
    Ok(decoded)
}

/// Downloads and checks every object of directory-layout backup `m` into `dir` (which must
/// exist), `parallel` objects at a time. Returns the raw bytes written.
pub async fn fill_directory(
    store: &Store,
    m: &Manifest,
    dir: &Path,
    opts: &ReadOpts,
    parallel: usize,
) -> Result<u64> {
    let objects: Vec<(&StoredObject, &str)> = m
        .objects
        .iter()
        .filter(|o| o.kind != "globals")
        .map(|o| {
            Manifest::archive_file(o).map(|f| (o, f)).ok_or_else(|| {
                Error::Integrity(format!(
                    "the manifest of {} names no archive file for {}",
                    m.backup_id, o.name
                ))
            })
        })
        .collect::<Result<_>>()?;
    use futures::TryStreamExt;
    let written: Vec<u64> = futures::stream::iter(objects)
        .map(|(o, file)| async move {
            let path = dir.join(file);
            let f = std::fs::File::create(&path)
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            let (d, w) = decode_object(
                store,
                m,
                o,
                std::io::BufWriter::with_capacity(1 << 20, f),
                opts,
            )
            .await?;
            w.into_inner()
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            Ok::<u64, Error>(d.raw_bytes)
        })
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<u64>>()
        .await?;
    Ok(written.iter().sum())
}

/// `export` of a parallel backup: a plain directory-format archive at `out` (filled as a
/// hidden sibling, renamed only after every digest matched; `pg_restore -Fd -j N out`
/// reads it) and `out.sha256` listing each file (`sha256sum -c` beside `out`).
async fn export_directory(
    store: &Store,
    m: &Manifest,
    out: &Path,
    opts: &ReadOpts,
) -> Result<Decoded> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = out
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a directory path", out.display())))?
        .to_string_lossy()
        .to_string();
    if out.exists() {
        return Err(Error::Invalid(format!(
            "{} exists: a parallel backup exports to a new directory; give another path",
            out.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(&dir)
        .map_err(|e| Error::Invalid(format!("cannot write in {}: {e}", dir.display())))?;
    opts.progress.stage("export");
    let raw = fill_directory(store, m, tmp.path(), opts, 4).await?;
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, out)
        .map_err(|e| Error::Failed(format!("cannot move the export to {}: {e}", out.display())))?;
    let sums: String = m
        .objects
        .iter()
        .filter_map(|o| {
            Some(format!(
                "{}  {name}/{}\n",
                o.raw_sha256,
                Manifest::archive_file(o)?
            ))
        })
        .collect();
    std::fs::write(dir.join(format!("{name}.sha256")), &sums)
        .map_err(|e| Error::Failed(format!("cannot write {}.sha256: {e}", out.display())))?;
    Ok(Decoded {
        name,
        stored_bytes: m.stored_bytes,
        stored_sha256: String::new(),
        raw_bytes: raw,
        raw_sha256: {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(sums.as_bytes()))
        },
    })
}
