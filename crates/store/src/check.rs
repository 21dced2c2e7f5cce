//! How a store proves that the copy it holds is the bytes pgdrill sent (DESIGN.md §9, "each
//! copy's digest checked"), per store: a fan-out backup hashes its stream once, but each
//! store receives its own copy, over its own connection, onto its own disks.
//!
//! - [`CopyCheck::Sha256`]: every PUT and every part carries `x-amz-checksum-sha256`, the
//!   SHA-256 the S3 client (object_store) computes of the request body it is about to send;
//!   the service recomputes it on receipt and refuses the request (400 `BadDigest`, which
//!   pgdrill reports as the copy failing its check) when they differ. So it catches what
//!   changes the bytes between the client and the service (the network, a proxy, the
//!   service's receiving end), not what changed them in pgdrill before the request was built,
//!   nor what the service does to them once accepted; the multipart completion only repeats
//!   the checksums the service answered for the parts. AWS S3 and MinIO check it; Backblaze
//!   B2 refuses the header; moto accepts it without checking it (the test of this check puts
//!   a link that checks as S3 does in front of moto); s3s-fs (the benchmark's server) checks
//!   it on a PUT, not on parts.
//! - [`CopyCheck::Etag`]: pgdrill computes the MD5 of each PUT and each part and compares the
//!   ETag the service answers (the MD5, or for a multipart upload the MD5 of the parts' MD5s
//!   followed by `-<parts>`). Valid only where ETags are MD5s: unencrypted or SSE-S3 buckets
//!   of AWS S3, Cloudflare R2 (multipart uploads begun since June 2023, as documented),
//!   MinIO without encryption, Ceph RGW, moto, s3s-fs; not SSE-KMS or SSE-C buckets.
//! - [`CopyCheck::Reread`] (a local folder, always): the file is fsynced, read back and its
//!   SHA-256 compared with what was written. The read may come from the page cache: it
//!   catches what went wrong between pgdrill and the file system (a short write, a broken
//!   network mount), not later decay of the medium, which `verify` finds.
//! - [`CopyCheck::Size`]: only the size, which the backup confirms with a HEAD anyway.

use crate::StoreError;
use async_trait::async_trait;
use md5::{Digest, Md5};
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use sha2::Sha256;
use std::sync::{Arc, Mutex};

/// How each copy written to one store is checked; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyCheck {
    Size,
    Sha256,
    Etag,
    Reread,
}

impl CopyCheck {
    /// The name used in the configuration (`checksum = "..."`) and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyCheck::Size => "size",
            CopyCheck::Sha256 => "sha256",
            CopyCheck::Etag => "etag",
            CopyCheck::Reread => "reread",
        }
    }

    /// Parses a `checksum` setting of an S3 store: `sha256`, `etag` or `none` (the size
    /// only). `reread` is a folder store's and not a choice.
    pub fn parse(s: &str) -> Option<CopyCheck> {
        match s {
            "sha256" => Some(CopyCheck::Sha256),
            "etag" => Some(CopyCheck::Etag),
            "none" | "size" => Some(CopyCheck::Size),
            _ => None,
        }
    }

    /// The safe default at an S3 endpoint (`None`: AWS S3 itself): `sha256` at AWS S3, which
    /// checks it whatever the bucket's encryption; `etag` at Cloudflare R2, whose ETags are
    /// documented MD5s (and whose support of the checksum headers came late); else `size`,
    /// since an unknown service may refuse the checksum header (B2 does) or answer ETags
    /// that are not MD5s (SSE-KMS, some MinIO setups).
    pub fn default_for(endpoint: Option<&str>) -> CopyCheck {
        let Some(ep) = endpoint else {
            return CopyCheck::Sha256;
        };
        let host = url::Url::parse(ep)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if host.ends_with(".amazonaws.com") {
            CopyCheck::Sha256
        } else if host.ends_with(".r2.cloudflarestorage.com") {
            CopyCheck::Etag
        } else {
            CopyCheck::Size
        }
    }
}

impl std::fmt::Display for CopyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// With `sha256`, the service refusing a body whose SHA-256 is not the one sent (S3's 400
/// `BadDigest`) is that copy failing its check: [`StoreError::Mismatch`] (nothing was
/// stored). Any other error is returned as it is.
pub(crate) fn digest_refused(check: CopyCheck, e: StoreError) -> StoreError {
    match e {
        StoreError::Backend { key, detail, .. }
            if check == CopyCheck::Sha256 && detail.contains("BadDigest") =>
        {
            let said = detail
                .find("(BadDigest")
                .and_then(|i| Some(&detail[i + 1..i + detail[i..].find(')')?]))
                .unwrap_or("BadDigest");
            StoreError::Mismatch {
                key,
                check: check.as_str(),
                detail: format!(
                    "the store refused the bytes it received, whose SHA-256 is not the one sent ({said})"
                ),
            }
        }
        e => e,
    }
}

/// The MD5 of `bytes` as 16 raw bytes.
pub(crate) fn md5(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// The ETag S3 gives a multipart upload of parts with these MD5s: the MD5 of their
/// concatenation, `-`, the number of parts. No part at all is completed as one empty part.
pub(crate) fn multipart_etag(parts: &[[u8; 16]]) -> String {
    let empty = [md5(b"")];
    let parts = if parts.is_empty() { &empty[..] } else { parts };
    let mut all = Md5::new();
    for p in parts {
        all.update(p);
    }
    format!("{}-{}", hex::encode(all.finalize()), parts.len())
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Flushes `file` to its device.
pub(crate) fn fsync(file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()
}

/// A SHA-256 being computed (what a folder's re-read hashes).
#[derive(Default)]
pub(crate) struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// A multipart upload that records the MD5 of each part it is given, in part order, before
/// handing it on: what the completed upload's ETag is compared with (`etag`).
#[derive(Debug)]
pub(crate) struct Md5Parts {
    pub(crate) inner: Box<dyn MultipartUpload>,
    pub(crate) md5s: Arc<Mutex<Vec<[u8; 16]>>>,
}

#[async_trait]
impl MultipartUpload for Md5Parts {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let mut h = Md5::new();
        for chunk in data.iter() {
            h.update(chunk);
        }
        if let Ok(mut m) = self.md5s.lock() {
            m.push(h.finalize().into());
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// An ETag as compared: without quotes, lowercase.
pub(crate) fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_checks_only_what_the_service_is_known_to_support() {
        assert_eq!(CopyCheck::default_for(None), CopyCheck::Sha256);
        let aws = "https://s3.eu-west-1.amazonaws.com";
        assert_eq!(CopyCheck::default_for(Some(aws)), CopyCheck::Sha256);
        let r2 = "https://0123abcd.r2.cloudflarestorage.com";
        assert_eq!(CopyCheck::default_for(Some(r2)), CopyCheck::Etag);
        let b2 = "https://s3.us-west-004.backblazeb2.com";
        assert_eq!(CopyCheck::default_for(Some(b2)), CopyCheck::Size);
        let minio = "http://127.0.0.1:9000";
        assert_eq!(CopyCheck::default_for(Some(minio)), CopyCheck::Size);
        // A look-alike host is not AWS.
        let fake = "https://amazonaws.com.example.org";
        assert_eq!(CopyCheck::default_for(Some(fake)), CopyCheck::Size);
    }

    #[test]
    fn settings_parse_and_print_back() {
        for c in [CopyCheck::Sha256, CopyCheck::Etag, CopyCheck::Size] {
            assert_eq!(CopyCheck::parse(c.as_str()), Some(c));
        }
        assert_eq!(CopyCheck::parse("none"), Some(CopyCheck::Size));
        assert_eq!(CopyCheck::parse("reread"), None);
        assert_eq!(CopyCheck::parse("md5"), None);
    }

    #[test]
    fn a_refused_digest_is_a_failed_sha256_check_only() {
        let refused = || {
            StoreError::Backend {
            action: "write",
            key: "db/a".into(),
            detail: "the store answered HTTP 400 Bad Request (BadDigest: The SHA256 you specified did not match the calculated checksum.), check the store URL".into(),
            retryable: true,
        }
        };
        match digest_refused(CopyCheck::Sha256, refused()) {
            StoreError::Mismatch { key, check, detail } => {
                assert_eq!((key.as_str(), check), ("db/a", "sha256"));
                assert!(
                    detail.ends_with("(BadDigest: The SHA256 you specified did not match the calculated checksum.)"),
                    "{detail}"
                );
            }
            e => panic!("{e}"),
        }
        let e = digest_refused(CopyCheck::Size, refused());
        assert!(matches!(e, StoreError::Backend { .. }), "{e}");
    }

    #[test]
    fn multipart_etags_are_the_md5_of_the_part_md5s() {
        // Known value: S3's ETag of a two-part upload of "a" and "b".
        let (a, b) = (md5(b"a"), md5(b"b"));
        let mut cat = Vec::new();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        assert_eq!(
            multipart_etag(&[a, b]),
            format!("{}-2", hex::encode(md5(&cat)))
        );
        assert_eq!(
            multipart_etag(&[]),
            format!("{}-1", hex::encode(md5(&md5(b""))))
        );
        assert_eq!(bare_etag("\"ABC-2\""), "abc-2");
    }
}
