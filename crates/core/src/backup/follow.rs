//! One file of a parallel dump's spool directory, stored as it grows: read behind pg_dump,
//! hashed, its COPY rows counted, compressed, encrypted and uploaded to its own object; what
//! was read is released from the disk at once (holes punched), so the spool holds only what
//! pg_dump wrote and pgdrill has not read yet.

use super::BackupJob;
use crate::crypto::EncryptionKeys;
use crate::pipeline::{BlockSender, Digested, HashWriter};
use crate::progress::Progress;
use crate::{Error, Result};
use bytes::Bytes;
use pgdrill_pg::archive::CopyRows;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the followers and the dump's supervisor share.
#[derive(Default)]
pub(super) struct Shared {
    /// Dump ids pg_dump reported done (`pg_dump: finished item N ...` with `--verbose`).
    pub(super) finished: Mutex<HashSet<i64>>,
    /// pg_dump exited successfully: every file is complete.
    pub(super) exited_ok: AtomicBool,
    /// Something failed: every follower stops and aborts its upload.
    pub(super) aborted: AtomicBool,
}

impl Shared {
    fn complete(&self, dump_id: Option<i64>) -> bool {
        if self.exited_ok.load(Ordering::SeqCst) {
            return true;
        }
        match dump_id {
            Some(id) => self
                .finished
                .lock()
                .map(|s| s.contains(&id))
                .unwrap_or(false),
            None => false,
        }
    }
}

/// What one stored file produced.
pub(super) struct Followed {
    pub(super) file: String,
    pub(super) object: String,
    pub(super) raw: Digested,
    pub(super) stored: Digested,
    /// COPY rows, when the file is a table's data (`<dump id>.dat`) and ends like one.
    pub(super) rows: Option<u64>,
}

/// One file to follow.
pub(super) struct FileTask {
    pub(super) path: PathBuf,
    pub(super) file: String,
    /// The TOC entry the file belongs to (`3366.dat`), when the name says.
    pub(super) dump_id: Option<i64>,
    /// Bytes read so far (the supervisor's measure of what is still on disk).
    pub(super) read: Arc<AtomicU64>,
}

/// Everything a follower needs, owned (it runs as a task of its own).
#[derive(Clone)]
pub(super) struct Env {
    pub(super) targets: Arc<super::fanout::Targets>,
    pub(super) keys: EncryptionKeys,
    pub(super) level: i32,
    /// Every follower's part size, and how many upload at once (sharing each store's parts
    /// in flight).
    pub(super) sizing: super::fanout::Sizing,
    pub(super) progress: Arc<Progress>,
    pub(super) shared: Arc<Shared>,
    /// `<db>/backups/<id>/`
    pub(super) dir_key: String,
}

impl Env {
    pub(super) fn new(
        job: &BackupJob<'_>,
        targets: &Arc<super::fanout::Targets>,
        dir_key: String,
        shared: Arc<Shared>,
    ) -> Env {
        Env {
            targets: targets.clone(),
            keys: job.keys.clone(),
            level: job.compression_level,
            sizing: super::fanout::Sizing {
                floor: job.part_size,
                store_part: false,
                jobs: 1,
            },
            progress: job.progress.clone(),
            shared,
            dir_key,
        }
    }
}

/// The stored name of a spool file: `<file>.zst` plus `.age` when encrypted.
pub(super) fn object_name(file: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{file}.zst.age")
    } else {
        format!("{file}.zst")
    }
}

/// Stores `task`'s file as its own object; commits only when the whole file was read and
/// nothing was aborted.
pub(super) async fn store_file(env: Env, task: FileTask) -> Result<Followed> {
    let object = object_name(&task.file, env.keys.enabled());
    let key = format!("{}/{object}", env.dir_key);
    let mut upload = super::fanout::FanUpload::open(&env.targets, &key, env.sizing).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let shared = env.shared.clone();
    let (keys, level, progress) = (env.keys.clone(), env.level, env.progress.clone());
    let path = task.path.clone();
    let (dump_id, read) = (task.dump_id, task.read.clone());
    let encoder = tokio::task::spawn_blocking(move || {
        encode_file(&path, dump_id, &shared, &keys, level, tx, &read, &progress)
    });
    let mut pumped = Ok(());
    while let Some(block) = rx.recv().await {
        if let Err(e) = upload.write(block).await {
            pumped = Err(e);
            env.shared.aborted.store(true, Ordering::SeqCst);
            break;
        }
    }
    drop(rx);
    let encoded = encoder
        .await
        .map_err(|e| Error::Failed(format!("the compression stage crashed: {e}")));
    let outcome = match (pumped, encoded) {
        (Err(e), _) => Err(Error::from(e).map_message(|m| {
            format!("the upload of {object} failed, so the backup was aborted: {m}")
        })),
        (_, Err(e)) | (_, Ok(Err(e))) => Err(e),
        (Ok(()), Ok(Ok(x))) => Ok(x),
    };
    let (raw, stored, rows) = match outcome {
        Ok(x) => x,
        Err(e) => {
            env.shared.aborted.store(true, Ordering::SeqCst);
            upload.abort().await;
            return Err(e);
        }
    };
    if env.shared.aborted.load(Ordering::SeqCst) {
        upload.abort().await;
        return Err(Error::Failed("the backup was aborted".into()));
    }
    upload.finish().await.map_err(|e| {
        Error::Failed(format!(
            "the upload of {object} could not be completed: {e}"
        ))
    })?;
    Ok(Followed {
        file: task.file,
        object,
        raw,
        stored,
        rows,
    })
}

const READ_BUF: usize = 256 << 10;
/// Holes are punched once this much was read past the last one.
const PUNCH_EVERY: u64 = 1 << 20;
const POLL: Duration = Duration::from_millis(10);

type Encoded = (Digested, Digested, Option<u64>);

/// Reads `path` while pg_dump writes it, until it is complete and read to its end.
#[allow(clippy::too_many_arguments)]
fn encode_file(
    path: &std::path::Path,
    dump_id: Option<i64>,
    shared: &Shared,
    keys: &EncryptionKeys,
    level: i32,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    read: &AtomicU64,
    progress: &Progress,
) -> Result<Encoded> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let io_err = |e: std::io::Error| Error::Failed(format!("cannot store {name} of the dump: {e}"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let sink = keys.wrap(HashWriter::new(BlockSender::new(tx, 1 << 20)))?;
    let mut z = zstd::stream::write::Encoder::new(sink, level).map_err(io_err)?;
    z.include_checksum(true).map_err(io_err)?;
    let mut raw_hash = Sha256::new();
    let mut rows = dump_id.map(|_| CopyRows::default());
    let mut buf = vec![0u8; READ_BUF];
    let (mut pos, mut punched) = (0u64, 0u64);
    loop {
        if shared.aborted.load(Ordering::SeqCst) {
            return Err(Error::Failed("the backup was aborted".into()));
        }
        // Asked before reading: once complete, a read that finds nothing is the end.
        let complete = shared.complete(dump_id);
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            if complete {
                break;
            }
            std::thread::sleep(POLL);
            continue;
        }
        let chunk = &buf[..n];
        raw_hash.update(chunk);
        if let Some(r) = rows.as_mut() {
            r.feed(chunk);
        }
        z.write_all(chunk).map_err(io_err)?;
        pos += n as u64;
        read.store(pos, Ordering::SeqCst);
        progress.add(n as u64);
        let end = pos & !4095;
        if end >= punched + PUNCH_EVERY {
            punch(&file, punched, end - punched);
            punched = end;
        }
    }
    let sink = z.finish().map_err(io_err)?;
    let hashed = sink.finish().map_err(io_err)?;
    let (sender, stored) = hashed.finish();
    sender.finish().map_err(io_err)?;
    punch(&file, 0, pos);
    let raw = Digested {
        sha256: hex::encode(raw_hash.finalize()),
        bytes: pos,
    };
    Ok((raw, stored, rows.and_then(|r| r.finish()).map(|(n, _)| n)))
}

/// Releases `len` bytes at `offset` of `file` from the disk (its size stays). Best effort:
/// a file system without hole punching keeps the bytes until the spool is removed.
fn punch(file: &std::fs::File, offset: u64, len: u64) {
    use rustix::fs::FallocateFlags;
    if len == 0 {
        return;
    }
    let _ = rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    );
}
