//! Copying one source object into the store by content.
//!
//! The address (SHA-256) is known only after the last byte, and our store wrapper has no
//! server-side copy, so a large object is spooled to a local temp file while it is hashed and
//! then uploaded from that file (multipart) to `objects/<sha256>`; a small one (up to
//! [`MEMORY_MAX`]) is held in memory and written with put-if-absent. Either way the object key
//! is only ever written with bytes whose digest is its name: the spool is hashed a second time
//! as it is uploaded and the upload is aborted, not finished, on a mismatch.

use super::{keys, MirrorName};
use crate::progress::Progress;
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pgdrill_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Objects up to this size are buffered in memory; larger ones are spooled to disk.
pub(crate) const MEMORY_MAX: usize = 8 << 20;
/// Multipart part size for large objects, and parts in flight per upload.
const PART_SIZE: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 2;

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Uploaded to the store.
    Copied,
    /// Hashed, and the store already held that content.
    Existed,
}

#[derive(Clone, Debug)]
pub(crate) struct Copied {
    pub sha256: String,
    pub size: u64,
    pub outcome: Outcome,
}

/// Everything a transfer shares with the others of its run.
pub(crate) struct Shared<'a> {
    pub store: &'a Store,
    pub name: &'a MirrorName,
    pub spool_dir: &'a Path,
    /// Bounds how many large uploads (each holding up to PART_SIZE × PARTS_IN_FLIGHT) run.
    pub large: &'a Semaphore,
    pub progress: &'a Progress,
}

enum Buffer {
    Memory(BytesMut),
    Spool(tokio::fs::File),
}

/// Copies `stream` (one source object) into the store. `Ok` with the digest, size and whether
/// bytes were uploaded.
pub(crate) async fn copy_into_store(
    shared: &Shared<'_>,
    key: &str,
    mut stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
) -> Result<Copied> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = Buffer::Memory(BytesMut::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Failed(format!("read {key} from the source: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        shared.progress.add(chunk.len() as u64);
        buf = match buf {
            Buffer::Memory(mut m) if m.len() + chunk.len() <= MEMORY_MAX => {
                m.extend_from_slice(&chunk);
                Buffer::Memory(m)
            }
            Buffer::Memory(m) => {
                let mut f = spool_file(shared.spool_dir).await?;
                write_spool(&mut f, &m).await?;
                write_spool(&mut f, &chunk).await?;
                Buffer::Spool(f)
            }
            Buffer::Spool(mut f) => {
                write_spool(&mut f, &chunk).await?;
                Buffer::Spool(f)
            }
        };
    }
    let sha256 = hex::encode(hasher.finalize());
    let object = keys::object(shared.name, &sha256);
    let done = |outcome| Copied {
        sha256: sha256.clone(),
        size,
        outcome,
    };
    if shared.store.exists(&object).await? {
        return Ok(done(Outcome::Existed));
    }
    match buf {
        Buffer::Memory(m) => match shared.store.put_if_absent(&object, m.freeze()).await {
            Ok(_) => Ok(done(Outcome::Copied)),
            // The same content arrived from another key of this run meanwhile.
            Err(StoreError::AlreadyExists { .. }) => Ok(done(Outcome::Existed)),
            Err(e) => Err(Error::from(e).context(format!("store {key}"))),
        },
        Buffer::Spool(f) => {
            let _permit = shared
                .large
                .acquire()
                .await
                .map_err(|_| Error::Failed("the transfer pool closed".into()))?;
            upload_spool(shared.store, &object, &sha256, f).await?;
            Ok(done(Outcome::Copied))
        }
    }
}

async fn spool_file(dir: &Path) -> Result<tokio::fs::File> {
    let f = tempfile::tempfile_in(dir).map_err(|e| {
        Error::Failed(format!(
            "cannot create a spool file in {} (set TMPDIR to a folder with room): {e}",
            dir.display()
        ))
    })?;
    Ok(tokio::fs::File::from_std(f))
}

async fn write_spool(f: &mut tokio::fs::File, data: &[u8]) -> Result<()> {
    f.write_all(data)
        .await
        .map_err(|e| Error::Failed(format!("write the spool file (is the disk full?): {e}")))
}

/// Uploads the spool to `object` by multipart, re-hashing it; aborts on any mismatch.
async fn upload_spool(
    store: &Store,
    object: &str,
    sha256: &str,
    mut f: tokio::fs::File,
) -> Result<()> {
    let spool_err = |e: std::io::Error| Error::Failed(format!("read the spool file: {e}"));
    f.flush().await.map_err(spool_err)?;
    f.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(spool_err)?;
    let mut upload = store.upload(object, PART_SIZE, PARTS_IN_FLIGHT).await?;
    let mut hasher = Sha256::new();
    loop {
        let mut part = BytesMut::zeroed(PART_SIZE);
        let mut filled = 0;
        while filled < PART_SIZE {
            match f.read(&mut part[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = upload.abort().await;
                    return Err(spool_err(e));
                }
            }
        }
        if filled == 0 {
            break;
        }
        part.truncate(filled);
        hasher.update(&part);
        if let Err(e) = upload.write(part.freeze()).await {
            let _ = upload.abort().await;
            return Err(e.into());
        }
    }
    if hex::encode(hasher.finalize()) != sha256 {
        let _ = upload.abort().await;
        return Err(Error::Failed(format!(
            "the spooled copy of {object} changed on local disk; nothing was stored"
        )));
    }
    upload.finish().await?;
    Ok(())
}
