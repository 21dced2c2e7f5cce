//! `doctor`'s store checks: a round trip of every operation pgdrill relies on (multipart,
//! listing, conditional put, delete), the store's clock, and uploads a killed process left.

use super::{fail, pass, Check};
use crate::context::Ctx;
use bytes::Bytes;
use pgdrill_core::clock::Clock;
use pgdrill_core::lease;
use pgdrill_store::{Store, StoreError, StoreKind};

/// Known provider quirks, named by endpoint.
pub(super) fn quirks(store: &Store) -> Option<&'static str> {
    let d = store.display();
    if d.contains("r2.cloudflarestorage.com") {
        Some("Cloudflare R2: region must be \"auto\"; all multipart parts but the last must be the same size (pgdrill's are)")
    } else if d.contains("backblazeb2.com") {
        Some("Backblaze B2: use the S3 endpoint s3.<region>.backblazeb2.com and an application key with listFiles/deleteFiles; lifecycle rules may keep hidden versions")
    } else if d.contains("oraclecloud.com") {
        Some("Oracle OCI: use <namespace>.compat.objectstorage.<region>.oraclecloud.com with path_style = true and a Customer Secret Key")
    } else {
        None
    }
}

pub(super) async fn store_round_trip(store: &Store) -> Vec<Check> {
    let base = format!(".pgdrill-doctor/{:08x}", rand_u32());
    let mut out = Vec::new();
    let quirk = quirks(store).map(|q| format!(" ({q})")).unwrap_or_default();
    let step = |name: &str, r: std::result::Result<String, String>, hint: &str| match r {
        Ok(d) => pass(&format!("store: {name}"), d),
        Err(e) => fail(&format!("store: {name}"), e, hint),
    };
    let small = format!("{base}/small");
    out.push(step(
        "put",
        store
            .put(&small, Bytes::from_static(b"pgdrill doctor"))
            .await
            .map(|_| format!("wrote to {}{quirk}", store.display()))
            .map_err(|e| e.to_string()),
        "check the bucket, endpoint, region and credentials",
    ));
    let big = format!("{base}/multipart");
    let multipart = async {
        let mut up = store
            .upload(&big, 5 << 20, 2)
            .await
            .map_err(|e| e.to_string())?;
        up.write(Bytes::from(vec![7u8; (5 << 20) + 1024]))
            .await
            .map_err(|e| e.to_string())?;
        up.finish().await.map_err(|e| e.to_string())?;
        let info = store.head(&big).await.map_err(|e| e.to_string())?;
        if info.size != (5 << 20) + 1024 {
            return Err(format!(
                "the object has {} bytes after a 2-part upload",
                info.size
            ));
        }
        Ok("2-part upload completed".to_string())
    };
    out.push(step("multipart", multipart.await, "the credentials need multipart permissions (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload)"));
    let listed = store
        .list(&base)
        .await
        .map_err(|e| e.to_string())
        .and_then(|l| {
            if l.len() >= 2 {
                Ok(format!("{} objects listed", l.len()))
            } else {
                Err(format!("listed {} objects, expected 2", l.len()))
            }
        });
    out.push(step("list", listed, "the credentials need ListBucket"));
    let cond = format!("{base}/conditional");
    let conditional = async {
        let etag = store
            .put_if_absent(&cond, Bytes::from_static(b"1"))
            .await
            .map_err(|e| e.to_string())?;
        match store.put_if_absent(&cond, Bytes::from_static(b"2")).await {
            Err(StoreError::AlreadyExists { .. }) => {}
            Ok(_) => return Err("a second create succeeded: the store ignores If-None-Match, so manifests and leases are not protected".to_string()),
            Err(e) => return Err(e.to_string()),
        }
        // Leases renew by compare-and-swap: a stale ETag must be refused, the current one
        // accepted.
        let Some(etag) = etag else {
            return Err(
                "the store returned no ETag for a new object, so leases cannot be renewed safely"
                    .to_string(),
            );
        };
        match store
            .put_if_match(&cond, Bytes::from_static(b"3"), "\"pgdrill-doctor-stale\"")
            .await
        {
            Err(StoreError::AlreadyExists { .. }) => {}
            Ok(_) => return Err("a replace with a stale ETag succeeded: the store ignores If-Match, so two hosts could both hold a lease".to_string()),
            Err(e) => return Err(e.to_string()),
        }
        store
            .put_if_match(&cond, Bytes::from_static(b"4"), &etag)
            .await
            .map_err(|e| format!("a replace with the current ETag failed: {e}"))?;
        Ok("a second create and a stale replace were refused, a current replace accepted (If-None-Match and If-Match work)".to_string())
    };
    out.push(step(
        "conditional put",
        conditional.await,
        "use a provider or version that supports conditional writes (AWS S3, R2, B2, MinIO ≥ 2024)",
    ));
    let ranged = store
        .get_range(&small, 8..14)
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| {
            if b.as_ref() == b"doctor" {
                Ok("bytes 8..14 read back".to_string())
            } else {
                Err("a ranged read returned the wrong bytes".to_string())
            }
        });
    out.push(step(
        "ranged get",
        ranged,
        "parallel restores need ranged GETs",
    ));
    let mut deleted = Ok("test objects deleted".to_string());
    for k in [&small, &big, &cond] {
        if let Err(e) = store.delete(k).await {
            deleted = Err(e.to_string());
        }
    }
    out.push(step("delete", deleted, "prune needs DeleteObject"));
    out.push(clock(store, &base).await);
    out
}

/// This host's clock against the store's (the last-modified time it gives a new object):
/// leases and prune ages are judged by the store's clock, but backup ids and messages use
/// the host's.
pub(super) async fn clock(store: &Store, base: &str) -> Check {
    let probe = format!("{base}/clock.json");
    match lease::store_clock(store, &probe, Clock::process()).await {
        Ok((_, skew)) if skew.abs() > lease::SKEW_WARN_SECONDS => fail(
            "store: clock",
            lease::describe_skew(skew),
            "fix this host's time sync (NTP): pgdrill judges leases and prune ages by the store's clock, but names backups by this host's",
        ),
        Ok((_, skew)) => pass(
            "store: clock",
            format!("within {} s of the store's clock", skew.abs().max(1)),
        ),
        Err(e) => fail(
            "store: clock",
            e.to_string(),
            "the store must report when an object was written",
        ),
    }
}

/// What uploads that never completed (a killed backup's) left behind: part files in a folder,
/// open multipart uploads on S3; those older than the grace period after which `prune`
/// removes them.
pub(super) async fn unfinished_uploads(ctx: &Ctx, store: &Store) -> Check {
    const NAME: &str = "store: unfinished uploads";
    let grace_hours = ctx.settings.retention.incomplete_grace_hours;
    let now = Clock::process().now().as_second();
    match store.staged_parts("").await {
        Ok(parts) => {
            let stale: Vec<_> = parts
                .iter()
                .filter(|p| now - p.last_modified > grace_hours as i64 * 3600)
                .collect();
            if stale.is_empty() {
                pass(NAME, format!("none older than {grace_hours} h"))
            } else if store.kind() == StoreKind::S3 {
                fail(
                    NAME,
                    format!(
                        "{} multipart uploads left open older than {grace_hours} h, e.g. {}",
                        stale.len(),
                        stale[0].key
                    ),
                    "run `pgdrill prune`, which aborts them",
                )
            } else {
                fail(
                    NAME,
                    format!(
                        "{} part files of unfinished uploads older than {grace_hours} h ({}), e.g. {}",
                        stale.len(),
                        pgdrill_core::summary::human_bytes(stale.iter().map(|p| p.size).sum::<u64>()),
                        stale[0].key
                    ),
                    "run `pgdrill prune`, which removes them",
                )
            }
        }
        Err(e @ StoreError::Denied { .. }) if store.kind() == StoreKind::S3 => fail(
            NAME,
            e.to_string(),
            "allow s3:ListBucketMultipartUploads and s3:AbortMultipartUpload on the bucket, for `prune`",
        ),
        Err(e) if store.kind() == StoreKind::S3 => {
            fail(NAME, e.to_string(), "fix the store check above first")
        }
        Err(e) => fail(NAME, e.to_string(), "check the store folder's permissions"),
    }
}

pub(super) fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or(0)
}
