use crate::health::Health;
use crate::StoreError;
use bytes::Bytes;
use object_store::{MultipartUpload, WriteMultipart};
use std::sync::Arc;

/// A multipart upload in progress.
///
/// Contract: nothing is visible at the key until [`Upload::finish`] succeeds. Dropping an
/// unfinished upload aborts it in the background (best effort); call [`Upload::abort`] to
/// wait for the abort.
pub struct Upload {
    key: String,
    writer: Option<WriteMultipart>,
    max_in_flight: usize,
    bytes: u64,
    health: Arc<Health>,
}

impl Upload {
    pub(crate) fn new(
        key: &str,
        inner: Box<dyn MultipartUpload>,
        part_size: usize,
        max_in_flight: usize,
        health: Arc<Health>,
    ) -> Self {
        Upload {
            key: key.to_string(),
            writer: Some(WriteMultipart::new_with_chunk_size(
                inner,
                part_size.max(5 << 20),
            )),
            max_in_flight: max_in_flight.max(1),
            bytes: 0,
            health,
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
            .await?;
        self.bytes += data.len() as u64;
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
            .await;
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
        self.health
            .run("complete the upload of", key, writer.finish(), |e| {
                StoreError::from_backend("complete the upload of", key, e)
            })
            .await?;
        Ok(self.bytes)
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
