use crate::check::{self, Md5Parts};
use crate::health::Health;
use crate::{CopyCheck, Store, StoreError};
use bytes::Bytes;
use object_store::{MultipartUpload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// A multipart upload in progress.
///
/// Contract: nothing is visible at the key until [`Upload::finish`] succeeds. Dropping an
/// unfinished upload aborts it in the background (best effort); call [`Upload::abort`] to
/// wait for the abort. [`Upload::finish`] also runs the store's [`CopyCheck`] on the
/// completed object: one that fails it is deleted and never reported finished.
pub struct Upload {
    key: String,
    writer: Option<WriteMultipart>,
    max_in_flight: usize,
    bytes: u64,
    health: Arc<Health>,
    store: Store,
    verify: Verify,
}

/// What the upload keeps to check the completed object.
enum Verify {
    None,
    /// The MD5 of each part, in order (`etag`).
    Etag(Arc<Mutex<Vec<[u8; 16]>>>),
    /// The SHA-256 of every byte queued (a folder re-reads its file).
    Reread(Sha256),
}

impl Upload {
    pub(crate) fn new(
        store: Store,
        key: &str,
        inner: Box<dyn MultipartUpload>,
        part_size: usize,
        max_in_flight: usize,
    ) -> Self {
        let (inner, verify): (Box<dyn MultipartUpload>, _) = match store.copy_check() {
            CopyCheck::Etag => {
                let md5s = Arc::new(Mutex::new(Vec::new()));
                let parts = Md5Parts {
                    inner,
                    md5s: md5s.clone(),
                };
                (Box::new(parts), Verify::Etag(md5s))
            }
            CopyCheck::Reread => (inner, Verify::Reread(Sha256::new())),
            CopyCheck::Size | CopyCheck::Sha256 => (inner, Verify::None),
        };
        Upload {
            key: key.to_string(),
            writer: Some(WriteMultipart::new_with_chunk_size(
                inner,
                part_size.max(5 << 20),
            )),
            max_in_flight: max_in_flight.max(1),
            bytes: 0,
            health: store.health.clone(),
            store,
            verify,
        }
    }

    /// Queues `data`; waits while `max_in_flight` parts are already uploading, which is
    /// what gives the pipeline its backpressure.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        let writer = self.writer.as_mut().ok_or_else(|| StoreError::Backend {
            action: "write to",
            key: self.key.clone(),
            detail: "the upload was already finished or aborted".into(),
            retryable: false,
        })?;
        let key = &self.key;
        self.health
            .run(
                "upload a part of",
                key,
                writer.wait_for_capacity(self.max_in_flight),
                |e| StoreError::from_backend("upload a part of", key, e),
            )
            .await
            .map_err(|e| check::digest_refused(self.store.copy_check(), e))?;
        self.bytes += data.len() as u64;
        if let Verify::Reread(h) = &mut self.verify {
            h.update(&data);
        }
        writer.put(data);
        Ok(())
    }

    /// Bytes queued so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Uploads what is left and completes the upload, making the object visible.
    pub async fn finish(mut self) -> Result<u64, StoreError> {
        let writer = self.writer.take().ok_or_else(|| StoreError::Backend {
            action: "finish",
            key: self.key.clone(),
            detail: "the upload was already finished or aborted".into(),
            retryable: false,
        })?;
        // Wait for every part first: object_store's `finish` returns early on a failed part
        // without aborting, which would leave the multipart upload open on S3.
        let mut writer = writer;
        let key = &self.key;
        let parts = self
            .health
            .run("upload a part of", key, writer.wait_for_capacity(0), |e| {
                StoreError::from_backend("upload a part of", key, e)
            })
            .await
            .map_err(|e| check::digest_refused(self.store.copy_check(), e));
        if let Err(e) = parts {
            let abort = writer.abort();
            let _ = self
                .health
                .run("abort the upload of", key, abort, |e| {
                    StoreError::from_backend("abort the upload of", key, e)
                })
                .await;
            return Err(e);
        }
        let done = self
            .health
            .run("complete the upload of", key, writer.finish(), |e| {
                StoreError::from_backend("complete the upload of", key, e)
            })
            .await
            .map_err(|e| check::digest_refused(self.store.copy_check(), e))?;
        let verify = std::mem::replace(&mut self.verify, Verify::None);
        let checked = match verify {
            Verify::None => Ok(()),
            Verify::Etag(md5s) => {
                let want = md5s
                    .lock()
                    .map(|m| check::multipart_etag(&m))
                    .unwrap_or_default();
                match done.e_tag.as_deref().map(check::bare_etag) {
                    Some(got) if got == want => Ok(()),
                    got => Err(format!(
                        "the store answered ETag {} for parts whose ETag is {want}",
                        got.unwrap_or_else(|| "(none)".into())
                    )),
                }
            }
            Verify::Reread(h) => self.store.reread(key, h.finalize().into()).await,
        };
        match checked {
            Ok(()) => Ok(self.bytes),
            Err(detail) => Err(self.store.mismatch(key, detail).await),
        }
    }

    /// Aborts the upload and waits for the store to discard the parts.
    pub async fn abort(mut self) -> Result<(), StoreError> {
        if let Some(writer) = self.writer.take() {
            let key = &self.key;
            self.health
                .run("abort the upload of", key, writer.abort(), |e| {
                    StoreError::from_backend("abort the upload of", key, e)
                })
                .await?;
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = writer.abort().await;
                });
            }
        }
    }
}
