//! [`Store::list_sparse`]: a recursive listing that pays for object metadata only where
//! the caller needs it. On S3 the LIST answer carries every object's size, time and ETag
//! anyway (one request per 1,000 keys); on a folder each of those costs a `stat`, and
//! object_store's walk makes three per file (following links, then the object's metadata),
//! which at 500 databases × 600 objects was most of a fleet read's CPU time.

use crate::{ObjectInfo, Store, StoreError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One key of a [`Store::list_sparse`] listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the store prefix, `/`-separated.
    pub key: String,
    /// The object's metadata: always on S3; on a folder only for the keys the caller asked
    /// metadata of.
    pub info: Option<ObjectInfo>,
}

impl Store {
    /// Every object below `prefix` (recursively, by path segment, like [`Store::list`]),
    /// with its metadata when the backend gives it for free (S3) or `stat(key)` is true.
    /// Same requests as [`Store::list`] on S3; on a folder, a directory walk that reads
    /// each file's metadata only when `stat` asks for it (ETags and times as
    /// [`Store::list`] and [`Store::head`] give them).
    pub async fn list_sparse(
        &self,
        prefix: &str,
        stat: fn(&str) -> bool,
    ) -> Result<Vec<Listed>, StoreError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(self
                .list(prefix)
                .await?
                .into_iter()
                .map(|o| Listed {
                    key: o.key.clone(),
                    info: Some(o),
                })
                .collect());
        };
        // Validated as every key is (no `..`, no empty segment).
        self.path(prefix)?;
        let prefix = prefix.trim_end_matches('/').to_string();
        let key = prefix.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let start = if prefix.is_empty() {
                root.clone()
            } else {
                root.join(&prefix)
            };
            walk(&start, &prefix, stat, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| StoreError::Backend {
            action: "list",
            key: key.clone(),
            detail: e.to_string(),
            retryable: false,
        })?
        .map_err(|e| StoreError::Backend {
            action: "list",
            key,
            detail: e.to_string(),
            retryable: false,
        })
    }
}

/// Appends the files below `dir` (whose key is `key`) to `out`. A folder that vanished
/// meanwhile (a prune, a cleanup) lists as empty, as object_store's walk does.
fn walk(
    dir: &Path,
    key: &str,
    stat: fn(&str) -> bool,
    out: &mut Vec<Listed>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let child = if key.is_empty() {
            name.clone()
        } else {
            format!("{key}/{name}")
        };
        let mut kind = entry.file_type()?;
        if kind.is_symlink() {
            // Followed, as object_store's walk does.
            match std::fs::metadata(entry.path()) {
                Ok(m) => kind = m.file_type(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        if kind.is_dir() {
            walk(&entry.path(), &child, stat, out)?;
        } else if kind.is_file() && !staging(&name) {
            let info = if stat(&child) {
                match std::fs::metadata(entry.path()) {
                    Ok(m) => Some(info(child.clone(), &m)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            out.push(Listed { key: child, info });
        }
    }
    Ok(())
}

/// A part file of a write in progress (`name#<digits>`), which no listing shows.
fn staging(name: &str) -> bool {
    matches!(name.split_once('#'), Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What object_store's folder backend says of a file: the same ETag scheme (inode, mtime in
/// microseconds, size), so stamps agree with [`Store::list`] and [`Store::head`].
fn info(key: String, m: &std::fs::Metadata) -> ObjectInfo {
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    ObjectInfo {
        key,
        size: m.len(),
        last_modified: mtime.as_secs() as i64,
        etag: Some(format!(
            "{:x}-{:x}-{:x}",
            m.ino(),
            mtime.as_micros(),
            m.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use bytes::Bytes;

    #[tokio::test]
    async fn a_sparse_folder_listing_agrees_with_the_full_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        for key in [
            "app/backups/a/manifest.json",
            "app/backups/a/dump",
            "app/backups/b/dump",
            "app/drills/d/result.json",
            "apple/backups/x/manifest.json",
        ] {
            store
                .put(key, Bytes::from_static(b"{}"))
                .await
                .expect("put");
        }
        // A write in progress is no object.
        std::fs::write(dir.path().join("app/backups/b/manifest.json#7"), b"x").expect("part");
        let mut full = store.list("app/backups/").await.expect("list");
        full.sort_by(|a, b| a.key.cmp(&b.key));
        let mut sparse = store
            .list_sparse("app/backups/", |k| k.ends_with("/manifest.json"))
            .await
            .expect("sparse");
        sparse.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<&str> = sparse.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(
            keys,
            full.iter().map(|o| o.key.as_str()).collect::<Vec<_>>()
        );
        let manifest = full
            .iter()
            .find(|o| o.key == "app/backups/a/manifest.json")
            .expect("manifest");
        assert_eq!(sparse[1].info.as_ref(), Some(manifest), "{sparse:?}");
        assert_eq!(
            store.head(&manifest.key).await.expect("head").etag,
            manifest.etag
        );
        assert!(sparse[0].info.is_none() && sparse[2].info.is_none());
        // `app` is a path segment: `apple` is not below it; a missing prefix lists nothing.
        let all = store.list_sparse("app", |_| true).await.expect("all");
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|l| l.info.is_some()));
        assert!(store
            .list_sparse("gone/", |_| true)
            .await
            .expect("gone")
            .is_empty());
    }
}
