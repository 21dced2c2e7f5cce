use crate::StoreError;
use bytes::Bytes;
use object_store::{MultipartUpload, WriteMultipart};

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
}

impl Upload {
    pub(crate) fn new(
        key: &str,
        inner: Box<dyn MultipartUpload>,
        part_size: usize,
        max_in_flight: usize,
    ) -> Self {
        Upload {
            key: key.to_string(),
            writer: Some(WriteMultipart::new_with_chunk_size(
                inner,
                part_size.max(5 << 20),
            )),
            max_in_flight: max_in_flight.max(1),
            bytes: 0,
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
        writer
            .wait_for_capacity(self.max_in_flight)
            .await
            .map_err(|e| StoreError::from_backend("upload a part of", &self.key, e))?;
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
        if let Err(e) = writer.wait_for_capacity(0).await {
            let _ = writer.abort().await;
            return Err(StoreError::from_backend("upload a part of", &self.key, e));
        }
        writer
            .finish()
            .await
            .map_err(|e| StoreError::from_backend("complete the upload of", &self.key, e))?;
        Ok(self.bytes)
    }

    /// Aborts the upload and waits for the store to discard the parts.
    pub async fn abort(mut self) -> Result<(), StoreError> {
        if let Some(writer) = self.writer.take() {
            writer
                .abort()
                .await
                .map_err(|e| StoreError::from_backend("abort the upload of", &self.key, e))?;
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
