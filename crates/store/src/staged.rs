//! What an upload that never completed (a killed backup's) leaves outside the store's objects:
//! on a local folder the `<key>#<n>` files it staged its parts in, on S3 the open multipart
//! upload itself, which keeps its parts (and costs storage) until it is aborted.

use crate::{Store, StoreError};

/// One unfinished upload's leftovers, as [`Store::staged_parts`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedUpload {
    /// A local part file's path relative to the store (`<key>#<n>`), or on S3 the key relative
    /// to the store prefix that the open multipart upload was writing.
    pub key: String,
    /// Bytes staged; 0 on S3, which does not say in its listing.
    pub size: u64,
    /// Seconds since the Unix epoch: a part file's modification time, or when the S3
    /// multipart upload was started (by the store's clock).
    pub last_modified: i64,
    /// The S3 multipart upload's id; `None` for a local part file.
    pub upload_id: Option<String>,
}

impl Store {
    /// Unfinished uploads below `prefix`: on a local folder, the `<key>#<n>` files an upload
    /// stages its parts in until it completes (left behind when the process was killed), with
    /// their size and modification time; on S3, the multipart uploads open below `prefix`
    /// (`ListMultipartUploads`), with the time each was started. An upload in progress is
    /// listed too: callers judge by age.
    pub async fn staged_parts(&self, prefix: &str) -> Result<Vec<StagedUpload>, StoreError> {
        let full = self.path(prefix)?.to_string();
        if let Some(s3) = self.s3.clone() {
            let list_prefix = if full.is_empty() {
                String::new()
            } else {
                format!("{full}/")
            };
            let list = s3.list(&list_prefix);
            let open = self
                .call("list unfinished uploads below", prefix, list)
                .await?;
            let own = match &self.prefix {
                Some(p) => format!("{p}/"),
                None => String::new(),
            };
            return Ok(open
                .into_iter()
                .filter_map(|u| {
                    Some(StagedUpload {
                        key: u.key.strip_prefix(&own)?.to_string(),
                        size: 0,
                        last_modified: u.initiated,
                        upload_id: Some(u.upload_id),
                    })
                })
                .collect());
        }
        let Some(root) = self.local_root.clone() else {
            return Ok(Vec::new());
        };
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk_parts(&root, &root.join(&prefix), &mut out);
            out
        })
        .await
        .map_err(|e| StoreError::Backend {
            action: "list unfinished uploads below",
            key: String::new(),
            detail: e.to_string(),
            retryable: false,
        })
    }

    /// Removes what [`Store::staged_parts`] listed: deletes a local part file (and the folders
    /// it leaves empty), or aborts the S3 multipart upload (which frees its parts). Removing
    /// what is already gone is not an error.
    pub async fn delete_staged_part(&self, part: &StagedUpload) -> Result<(), StoreError> {
        if let (Some(s3), Some(id)) = (self.s3.clone(), &part.upload_id) {
            let full = self.path(&part.key)?.to_string();
            let abort = s3.abort(&full, id);
            return self
                .call("abort the unfinished upload of", &part.key, abort)
                .await;
        }
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let key = part.key.as_str();
        if !is_part_file(key) || key.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(StoreError::InvalidKey {
                key: key.to_string(),
                reason: "not an upload part file".into(),
            });
        }
        let file = root.join(key);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Backend {
                    action: "delete",
                    key: key.to_string(),
                    detail: e.to_string(),
                    retryable: false,
                })
            }
        }
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| *d != root.as_path()) {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// `name#<digits>`: a local upload's staged part file.
fn is_part_file(key: &str) -> bool {
    key.rsplit_once('#').is_some_and(|(name, n)| {
        !name.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

fn walk_parts(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<StagedUpload>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk_parts(root, &path, out);
            continue;
        }
        let Some(key) = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if meta.is_file() && is_part_file(&key) {
            let last_modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            out.push(StagedUpload {
                key,
                size: meta.len(),
                last_modified,
                upload_id: None,
            });
        }
    }
}
