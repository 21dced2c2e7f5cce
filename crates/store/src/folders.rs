//! [`Store::list_folders_with`]: which folders below a prefix hold an object of a given
//! name, with its metadata. On S3 the LIST answer carries every object's size, time and
//! ETag anyway (one request per 1,000 keys); on a folder each costs a `stat`, and
//! object_store's recursive walk makes three per file (following links, then the object's
//! metadata) and reads every folder, which at 500 databases × 600 objects was most of a
//! fleet read's CPU time.

use crate::{ObjectInfo, Store, StoreError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

impl Store {
    /// The folders one level below `prefix`, each with its object `<folder>/<name>` when it
    /// has one, sorted by folder name: what a catalog needs to see which backups (or
    /// drills) are complete, at the cost of one LIST on S3 (recursive, the same requests as
    /// [`Store::list`]) and, on a folder, one directory read plus one `stat` per folder
    /// (not a read of every folder).
    pub async fn list_folders_with(
        &self,
        prefix: &str,
        name: &'static str,
    ) -> Result<Vec<(String, Option<ObjectInfo>)>, StoreError> {
        let prefix = prefix.trim_end_matches('/').to_string();
        let Some(root) = self.local_root.clone() else {
            let mut by: std::collections::BTreeMap<String, Option<ObjectInfo>> = Default::default();
            let own = format!("{prefix}/");
            for o in self.list(&prefix).await? {
                let Some((folder, rest)) = o.key.strip_prefix(&own).and_then(|r| r.split_once('/'))
                else {
                    continue;
                };
                let folder = folder.to_string();
                let found = rest == name;
                let e = by.entry(folder).or_default();
                if found {
                    *e = Some(o);
                }
            }
            return Ok(by.into_iter().collect());
        };
        self.path(&prefix)?;
        let key = prefix.clone();
        let fail = |detail: String| StoreError::Backend {
            action: "list",
            key: key.clone(),
            detail,
            retryable: false,
        };
        tokio::task::spawn_blocking(move || folders_with(&root, &prefix, name))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))
    }
}

fn folders_with(
    root: &Path,
    prefix: &str,
    name: &str,
) -> std::io::Result<Vec<(String, Option<ObjectInfo>)>> {
    let dir = root.join(prefix);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Ok(folder) = entry.file_name().into_string() else {
            continue;
        };
        let mut kind = entry.file_type()?;
        if kind.is_symlink() {
            match std::fs::metadata(entry.path()) {
                Ok(m) => kind = m.file_type(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        if !kind.is_dir() {
            continue;
        }
        let info = match std::fs::metadata(entry.path().join(name)) {
            Ok(m) if m.is_file() => Some(info(format!("{prefix}/{folder}/{name}"), &m)),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        out.push((folder, info));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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
    async fn folders_with_an_object_agree_with_the_full_listing() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        for key in [
            "app/backups/a/manifest.json",
            "app/backups/a/dump",
            "app/backups/b/dump",
        ] {
            store
                .put(key, Bytes::from_static(b"{}"))
                .await
                .expect("put");
        }
        std::fs::write(dir.path().join("app/backups/b/manifest.json#7"), b"x").expect("part");
        let got = store
            .list_folders_with("app/backups/", "manifest.json")
            .await
            .expect("folders");
        let full = store.list("app/backups/a").await.expect("list");
        let manifest = full
            .into_iter()
            .find(|o| o.key == "app/backups/a/manifest.json")
            .expect("manifest");
        assert_eq!(
            got,
            vec![("a".to_string(), Some(manifest)), ("b".to_string(), None)]
        );
        assert!(store
            .list_folders_with("gone", "manifest.json")
            .await
            .expect("gone")
            .is_empty());
    }
}
