//! Fault-injecting decorators, for tests: the store misbehaves in ways real services have.

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use std::sync::Arc;

/// What happens to a write of a key ending in the [`Faulty`] store's suffix.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    /// Acknowledged without being stored (plain, conditional or multipart), as a store that
    /// answers 200 and loses the object.
    Drop,
    /// One byte changed on its way (a plain put's body, each part of a multipart upload); the
    /// store stores what it received. The change happens above the S3 client, which computes
    /// a `sha256` store's checksum of the changed bytes: only `etag` and a folder's re-read
    /// see it (`sha256` is tested through a link instead, `tests/copy_check.rs`).
    Corrupt,
}

/// A store whose writes of keys ending in `suffix` suffer `fault`; everything else passes.
#[derive(Debug)]
pub(crate) struct Faulty {
    pub(crate) inner: Arc<dyn ObjectStore>,
    pub(crate) suffix: String,
    pub(crate) fault: Fault,
}

impl Faulty {
    fn hit(&self, location: &Path) -> bool {
        location.as_ref().ends_with(&self.suffix)
    }
}

fn fake_ack() -> PutResult {
    PutResult {
        e_tag: Some("\"dropped\"".into()),
        version: None,
    }
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({}, {})", self.fault, self.suffix, self.inner)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        match (self.hit(location), self.fault) {
            (true, Fault::Drop) => Ok(fake_ack()),
            (true, Fault::Corrupt) => self.inner.put_opts(location, corrupt(payload), opts).await,
            (false, _) => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(match (self.hit(location), self.fault) {
            (true, Fault::Drop) => Box::new(DroppedUpload(upload)),
            (true, Fault::Corrupt) => Box::new(CorruptedUpload(upload)),
            (false, _) => upload,
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

/// Uploads its parts, then discards them when asked to complete, and says it completed.
#[derive(Debug)]
struct DroppedUpload(Box<dyn MultipartUpload>);

#[async_trait]
impl MultipartUpload for DroppedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.0.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.0.abort().await?;
        Ok(fake_ack())
    }

    async fn abort(&mut self) -> Result<()> {
        self.0.abort().await
    }
}

/// `payload` with its first byte inverted (an empty payload stays empty).
fn corrupt(payload: PutPayload) -> PutPayload {
    let mut bytes: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
    if let Some(b) = bytes.first_mut() {
        *b = !*b;
    }
    PutPayload::from(bytes)
}

/// Hands each part on with one byte changed.
#[derive(Debug)]
struct CorruptedUpload(Box<dyn MultipartUpload>);

#[async_trait]
impl MultipartUpload for CorruptedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.0.put_part(corrupt(data))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.0.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.0.abort().await
    }
}
