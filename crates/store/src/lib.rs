//! The object-store side of pgdrill.
//!
//! One narrow type, [`Store`], over the `object_store` crate: a local folder or any
//! S3-compatible service (AWS S3, Cloudflare R2, Backblaze B2, Oracle OCI, MinIO, Ceph),
//! opened from a [`StoreLocation`] parsed once where the URL enters. Keys are relative to the
//! store's prefix; callers never see the backend. The contract every backend honours is on
//! [`Store`]; `tests/conformance.rs` checks each clause against every backend (a local
//! folder, a real S3-protocol server, and the fault-injection wrapper).
//!
//! (One file of about 450 lines: `Store`'s methods are the contract written on them, one API
//! surface read clause by clause with `tests/conformance.rs`.)

mod check;
mod error;
mod faults;
mod folders;
mod health;
mod location;
mod open;
mod s3_uploads;
mod sigv4;
mod staged;
mod upload;

/// Serialises [`Store::put_if_match`] on local folders within this process.
static LOCAL_SWAP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub use check::CopyCheck;
pub use error::{StoreError, StoreErrorKind};
pub use location::{redact_store_url, StoreLocation};
pub use open::{StoreOptions, DEFAULT_RETRY_WINDOW, DEFAULT_TIMEOUT};
pub use staged::StagedUpload;
pub use upload::Upload;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use std::ops::Range;
use std::sync::Arc;

/// Size of the ranged GETs a large object is streamed by.
pub const STREAM_CHUNK: u64 = 8 << 20;

/// Metadata of one stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store prefix, `/`-separated.
    pub key: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
    pub etag: Option<String>,
}

impl ObjectInfo {
    /// The object's stamp as a listing shows it: its ETag, or its size and time when the
    /// store lists none (s3s-fs, for one, lists no ETags, though its PUT answers with one).
    /// Two listings showing the same stamp show the same object version.
    pub fn stamp(&self) -> String {
        self.etag
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.size, self.last_modified))
    }
}

/// A handle on one store location (folder or bucket + prefix); clones share it.
///
/// # Contract
///
/// What callers may rely on, whatever the backend; `tests/conformance.rs` checks every
/// clause against a local folder, a real S3-protocol server (moto) and the fault-injection
/// wrapper ([`Store::with_dropped_puts`], which passes every other key through unchanged).
///
/// - **Atomic writes.** [`put`](Store::put), [`put_if_absent`](Store::put_if_absent) and
///   [`put_if_match`](Store::put_if_match) replace a whole object: a reader sees the old
///   object or the new one, never a mix or a prefix. An [`Upload`] (multipart) is invisible
///   (to reads, `exists` and listings) until [`Upload::finish`] returns; dropping it or
///   calling [`Upload::abort`] leaves no object behind, and what a killed process left is
///   found by [`staged_parts`](Store::staged_parts).
/// - **Conditional writes.** `put_if_absent` (create-if-absent) fails with
///   [`StoreErrorKind::Conflict`] when the key exists; on S3 it is `If-None-Match: *`, atomic
///   across hosts (AWS S3, R2, B2, MinIO, OCI); on a folder it is an exclusive create, atomic
///   across processes sharing the folder. `put_if_match` (compare-and-swap on the ETag)
///   fails with `Conflict` when the object's ETag is not the one given and with
///   [`StoreErrorKind::NotFound`] when the object is gone; on S3 it is `If-Match`, atomic
///   across hosts; **on a folder it compares then writes**, which is safe only for processes
///   of one host taking turns (leases on a folder store are for one host). Leases
///   (`core::lease`) rely on exactly this: create-if-absent to take, compare-and-swap to
///   renew and to take over a lapsed lease, the ETag as the fencing token.
/// - **Reads.** [`get`](Store::get) reads a whole small object; [`get_range`](Store::get_range)
///   bytes `start..end` (`end` past the object's end is cut to it; a `start` at or past it
///   is an error); [`get_range_pinned`](Store::get_range_pinned) fails with `Conflict`
///   instead of mixing versions when the object was replaced since its ETag was read;
///   [`get_prefix`](Store::get_prefix) the first bytes plus the whole object's size and ETag;
///   [`get_stream`](Store::get_stream) the whole object, by ranged GETs of [`STREAM_CHUNK`]
///   pinned to its ETag on S3. A missing key is `NotFound` for every read and for
///   [`head`](Store::head); [`exists`](Store::exists) turns that into `false`.
/// - **Listing.** [`list`](Store::list) returns every complete object below a prefix, by
///   path segment (`a` never lists `ab/…`), in no guaranteed order;
///   [`list_dirs`](Store::list_dirs) the sorted names one level down. A listing that starts
///   after a write (or delete) returned reflects it: AWS S3 and MinIO list with
///   read-after-write consistency, and a folder renames into place. Objects written while a
///   listing runs may or may not appear. A listing that fails is an error, never a shorter
///   list.
/// - **Delete** removes one key; deleting a missing key succeeds (it is idempotent, so it is
///   safe to retry). On a folder, folders left empty are removed, as object stores have none.
/// - **ETags** change whenever an object is replaced; S3 always returns them, a folder returns
///   one derived from the file's metadata.
/// - **Errors by meaning.** Every failure is a [`StoreError`] whose
///   [`kind`](StoreError::kind) is `NotFound`, `Conflict`, `Transient`, `Denied`, `Invalid`
///   or `Other` ([`StoreErrorKind`]); messages name the key and what to do, never a
///   credential.
/// - **Timeouts and retries are the store's job, not the caller's.** On S3 each request is
///   bounded by [`StoreOptions::timeout`] (60 s) and a failing one (5xx, 429, connection
///   errors) is retried with exponential backoff and jitter for [`StoreOptions::retry_window`]
///   (30 s); a timeout is retried only for requests safe to repeat (reads, listings,
///   unconditional puts, part uploads), never for a conditional put. What is left after that
///   is `Transient` ([`StoreError::is_retryable`]): callers report it (or, like lease renewal,
///   try again on their own schedule), they do not loop on it. `Denied`, `Invalid`,
///   `NotFound` and `Conflict` are never retried. A `Transient` failure of a write leaves
///   the outcome unknown (the store may have applied it), and a conditional put retried
///   after a 5xx may answer `Conflict` to its own first attempt: callers that must know read
///   the object back. Once a call has run out of retries without an answer, the calls that
///   follow get 3 s each for a minute, so cleanup after a failure does not wait the window
///   out again. A folder store neither times out nor retries.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    display: String,
    kind: StoreKind,
    /// The folder of a local store (where unfinished uploads stage their `#<n>` part files).
    local_root: Option<std::path::PathBuf>,
    /// S3: the bucket and the endpoint it is reached at, for messages.
    bucket: Option<(String, String)>,
    /// S3: what lists and aborts the multipart uploads other processes left open.
    s3: Option<Arc<s3_uploads::S3Uploads>>,
    health: Arc<health::Health>,
    /// How each copy written by [`Store::upload`] and [`Store::put_checked`] is checked.
    check: CopyCheck,
}

/// Which kind of backend a store is; used for provider quirks and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    S3,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.display).finish()
    }
}

impl Store {
    /// A store as the user would name it in messages (never contains credentials).
    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// How this store checks each copy it receives ([`CopyCheck`]): a folder re-reads, an S3
    /// store as configured (`checksum`), by default per provider.
    pub fn copy_check(&self) -> CopyCheck {
        self.check
    }

    /// For tests: this store with every write of a key ending in `key_suffix` acknowledged
    /// and not stored (plain, conditional and multipart writes alike), as a store that
    /// answers 200 and loses the object.
    pub fn with_dropped_puts(self, key_suffix: &str) -> Store {
        Store {
            inner: Arc::new(faults::Faulty {
                inner: self.inner,
                suffix: key_suffix.to_string(),
                fault: faults::Fault::Drop,
            }),
            // What this wrapper tests is the checks above the store (a backup's HEADs and
            // listing), so the store's own check of each copy stays out of the way.
            check: CopyCheck::Size,
            ..self
        }
    }

    /// For tests: this store with one byte of every write of a key ending in `key_suffix`
    /// changed on its way (plain puts and each part of an upload), as by a faulty link or
    /// disk; the store answers as if it had received the bytes sent.
    pub fn with_corrupted_writes(self, key_suffix: &str) -> Store {
        Store {
            inner: Arc::new(faults::Faulty {
                inner: self.inner,
                suffix: key_suffix.to_string(),
                fault: faults::Fault::Corrupt,
            }),
            ..self
        }
    }

    /// Runs one backend call under the store's [`health::Health`].
    async fn call<T>(
        &self,
        action: &'static str,
        key: &str,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, StoreError> {
        self.health
            .run(action, key, call, |e| self.fail(action, key, e))
            .await
    }

    /// A backend error as a [`StoreError`]; a bucket that does not exist is named as such.
    fn fail(&self, action: &'static str, key: &str, e: object_store::Error) -> StoreError {
        match &self.bucket {
            Some((bucket, endpoint)) if error::no_such_bucket(&e) => StoreError::NoBucket {
                bucket: bucket.clone(),
                endpoint: endpoint.clone(),
            },
            _ => StoreError::from_backend(action, key, e),
        }
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        let rel = Path::parse(key).map_err(|e| StoreError::InvalidKey {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok(match &self.prefix {
            Some(p) => p.parts().chain(rel.parts()).collect(),
            None => rel,
        })
    }

    fn relative(&self, path: &Path) -> String {
        match &self.prefix {
            Some(p) => path
                .prefix_match(p)
                .map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .unwrap_or_else(|| path.to_string()),
            None => path.to_string(),
        }
    }

    /// Writes `bytes` at `key`, replacing any object there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let put = self.inner.put(&path, PutPayload::from_bytes(bytes));
        self.call("write", key, put).await?;
        Ok(())
    }

    /// [`put`](Store::put), then the store's [`CopyCheck`] of what it holds: the returned
    /// ETag against the MD5 of `bytes` (`etag`), the file read back (a folder); with
    /// `sha256` the service itself refuses a corrupted request (`BadDigest`). A copy that fails its check
    /// is deleted and the error is [`StoreError::Mismatch`]. For keys one writer owns (a
    /// backup's objects): a folder re-read could see a concurrent writer's object.
    pub async fn put_checked(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let put = self.inner.put(&path, PutPayload::from_bytes(bytes.clone()));
        let done = self
            .call("write", key, put)
            .await
            .map_err(|e| check::digest_refused(self.check, e))?;
        let checked = match self.check {
            CopyCheck::Etag => {
                let want = hex::encode(check::md5(&bytes));
                match done.e_tag.as_deref().map(check::bare_etag) {
                    Some(got) if got == want => Ok(()),
                    got => Err(format!(
                        "the store answered ETag {} for content whose MD5 is {want}",
                        got.unwrap_or_else(|| "(none)".into())
                    )),
                }
            }
            CopyCheck::Reread => {
                let want = check::sha256(&bytes);
                self.reread(key, want).await
            }
            CopyCheck::Size | CopyCheck::Sha256 => Ok(()),
        };
        match checked {
            Ok(()) => Ok(()),
            Err(detail) => Err(self.mismatch(key, detail).await),
        }
    }

    /// Deletes a copy that failed its check (best effort) and says so.
    pub(crate) async fn mismatch(&self, key: &str, detail: String) -> StoreError {
        let _ = self.delete(key).await;
        StoreError::Mismatch {
            key: key.to_string(),
            check: self.check.as_str(),
            detail,
        }
    }

    /// A folder's file at `key` fsynced, read back (through the backend, which maps keys
    /// to file names) and its SHA-256 compared with `want`.
    pub(crate) async fn reread(&self, key: &str, want: [u8; 32]) -> Result<(), String> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let path = self.path(key).map_err(|e| e.to_string())?;
        // Best effort: a key whose file name the backend encodes is not found here and is
        // still read back below.
        let file = root.join(path.as_ref());
        let _ = tokio::task::spawn_blocking(move || check::fsync(&file)).await;
        let read = async {
            let mut stream = self.inner.get(&path).await?.into_stream();
            let mut hash = check::Sha256Hasher::default();
            while let Some(chunk) = stream.next().await {
                hash.update(&chunk?);
            }
            Ok::<_, object_store::Error>(hash.finish())
        };
        let got = read
            .await
            .map_err(|e| format!("reading the file back failed: {e}"))?;
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "the file read back has SHA-256 {}, the bytes written {}",
                hex::encode(got),
                hex::encode(want)
            ))
        }
    }

    /// Writes `bytes` at `key` only if nothing is there yet (create-if-absent), returning the
    /// new ETag; [`StoreError::AlreadyExists`] ([`StoreErrorKind::Conflict`]) when something
    /// is. Of several racing creates exactly one succeeds, on every backend.
    pub async fn put_if_absent(
        &self,
        key: &str,
        bytes: Bytes,
    ) -> Result<Option<String>, StoreError> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let put = self
            .inner
            .put_opts(&path, PutPayload::from_bytes(bytes), opts);
        Ok(self.call("create", key, put).await?.e_tag)
    }

    /// Replaces `key` only if its current ETag is `etag` (compare-and-swap), returning the new
    /// ETag; [`StoreError::AlreadyExists`] ([`StoreErrorKind::Conflict`]) when the object
    /// changed meanwhile, [`StoreError::NotFound`] when it is gone (nothing is written either
    /// way). On S3 this is `If-Match`, atomic across hosts. A local folder has no conditional
    /// update: it compares then writes, one call at a time within this process; it is not
    /// atomic across processes that share the folder at the same instant.
    pub async fn put_if_match(
        &self,
        key: &str,
        bytes: Bytes,
        etag: &str,
    ) -> Result<Option<String>, StoreError> {
        let path = self.path(key)?;
        if self.kind == StoreKind::Local {
            // Compare then write, one at a time in this process: two tasks of one process
            // (a backup's catalog updates of several databases, a daemon's jobs) must not
            // both see the old ETag and both write.
            let _turn = LOCAL_SWAP.lock().await;
            let current = self.head(key).await?;
            if current.etag.as_deref() != Some(etag) {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            let put = self.inner.put(&path, PutPayload::from_bytes(bytes));
            return Ok(self.call("replace", key, put).await?.e_tag);
        }
        let opts = PutOptions {
            mode: PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(etag.to_string()),
                version: None,
            }),
            ..Default::default()
        };
        let put = self
            .inner
            .put_opts(&path, PutPayload::from_bytes(bytes), opts);
        match self.call("replace", key, put).await {
            Ok(done) => Ok(done.e_tag),
            // Services differ on `If-Match` of a missing key (AWS answers 404, others 412):
            // the caller is told the same thing by every backend.
            Err(e @ StoreError::AlreadyExists { .. }) => match self.exists(key).await {
                Ok(false) => Err(StoreError::NotFound {
                    key: key.to_string(),
                }),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Reads a whole (small) object into memory: manifests, checksums, leases.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let get = async { self.inner.get(&path).await?.bytes().await };
        self.call("read", key, get).await
    }

    /// Streams an object; the size is the stored object's size at open time. From an object
    /// store, a large object is read by ranged GETs of [`STREAM_CHUNK`] bytes pinned to its
    /// ETag (two in flight), so that every request is bounded by the store's timeout however
    /// large the object, and a stalled one is retried alone.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, StoreError>>), StoreError> {
        if self.kind == StoreKind::S3 {
            let info = self.head(key).await?;
            if info.size > STREAM_CHUNK {
                let (store, owned_key, size) = (self.clone(), key.to_string(), info.size);
                let stream = futures::stream::iter((0..size).step_by(STREAM_CHUNK as usize))
                    .map(move |start| {
                        let (store, key, etag) =
                            (store.clone(), owned_key.clone(), info.etag.clone());
                        let range = start..(start + STREAM_CHUNK).min(size);
                        async move { store.get_range_pinned(&key, range, etag.as_deref()).await }
                    })
                    .buffered(2)
                    .boxed();
                return Ok((size, stream));
            }
        }
        let path = self.path(key)?;
        let res = self.call("read", key, self.inner.get(&path)).await?;
        let size = res.meta.size;
        let owned_key = key.to_string();
        let stream = res
            .into_stream()
            .map_err(move |e| StoreError::from_backend("read", &owned_key, e))
            .boxed();
        Ok((size, stream))
    }

    /// Reads bytes `range` of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        self.call("read a range of", key, self.inner.get_range(&path, range))
            .await
    }

    /// A byte range of the object version whose ETag is `etag` (when given): if the object
    /// was replaced since, the read fails instead of mixing two versions.
    pub async fn get_range_pinned(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let opts = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            if_match: etag.map(str::to_string),
            ..Default::default()
        };
        Ok(self.get_with("read a range of", key, opts).await?.0)
    }

    /// The first `len` bytes of an object (all of it when shorter) and what the store says
    /// of the whole object (size, ETag), in one request.
    pub async fn get_prefix(&self, key: &str, len: u64) -> Result<(Bytes, ObjectInfo), StoreError> {
        let opts = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(0..len)),
            ..Default::default()
        };
        self.get_with("read", key, opts).await
    }

    async fn get_with(
        &self,
        what: &'static str,
        key: &str,
        opts: object_store::GetOptions,
    ) -> Result<(Bytes, ObjectInfo), StoreError> {
        let path = self.path(key)?;
        let get = async {
            let res = self.inner.get_opts(&path, opts).await?;
            let meta = res.meta.clone();
            Ok((res.bytes().await?, meta))
        };
        let (bytes, meta) = self.call(what, key, get).await?;
        Ok((bytes, self.info(meta)))
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.path(key)?;
        let meta = self.call("stat", key, self.inner.head(&path)).await?;
        Ok(self.info(meta))
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn info(&self, meta: object_store::ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: self.relative(&meta.location),
            size: meta.size,
            last_modified: meta.last_modified.timestamp(),
            etag: meta.e_tag,
        }
    }

    /// Every object below `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let path = self.path(prefix)?;
        let list = self.inner.list(Some(&path)).try_collect::<Vec<_>>();
        let metas = self.call("list", prefix, list).await?;
        Ok(metas.into_iter().map(|m| self.info(m)).collect())
    }

    /// The names of the immediate "folders" below `prefix`.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path(prefix)?;
        let res = self
            .call("list", prefix, self.inner.list_with_delimiter(Some(&path)))
            .await?;
        let mut dirs: Vec<String> = res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let delete = async {
            match self.inner.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                r => r,
            }
        };
        self.call("delete", key, delete).await
    }

    /// Starts a multipart upload of `key` with parts of `part_size` bytes and at most
    /// `max_in_flight` parts uploading at once. Nothing is visible until `finish`.
    pub async fn upload(
        &self,
        key: &str,
        part_size: usize,
        max_in_flight: usize,
    ) -> Result<Upload, StoreError> {
        let path = self.path(key)?;
        let inner = self
            .call("start upload of", key, self.inner.put_multipart(&path))
            .await?;
        Ok(Upload::new(
            self.clone(),
            key,
            inner,
            part_size,
            max_in_flight,
        ))
    }
}
