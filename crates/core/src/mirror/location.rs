//! Where a mirror reads from and a restore writes to: a folder or an S3 bucket + prefix.
//!
//! Folders are walked directly (not through `object_store`) so that symlinks are skipped, a
//! missing folder is an error rather than created empty, and restores can write each file
//! atomically (temp file + rename) without following symlinks out of the destination.

use super::place::Place;
use crate::time::Timestamp;
use crate::{Error, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use pgdrill_store::{Store, StoreError, StoreLocation, StoreOptions};
use std::path::{Path, PathBuf};

/// One object as the source lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceObject {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub modified: Option<Timestamp>,
}

/// What a listing found, and what it passed over (symlinks, special files, odd names).
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<SourceObject>,
    pub skipped: Vec<String>,
}

/// An opened folder or bucket.
pub struct Location {
    place: Place,
    backend: Backend,
}

pub(crate) enum Backend {
    Folder(PathBuf),
    Bucket(Store),
}

impl Location {
    /// Opens `url`. A folder is not created here; S3 is not contacted yet.
    pub fn open(url: &str, opts: &StoreOptions) -> Result<Location> {
        let location: StoreLocation = url.parse()?;
        let place = Place::describe(&location, opts)?;
        let backend = match &place {
            Place::Folder { path } => Backend::Folder(path.clone()),
            Place::S3 { .. } => Backend::Bucket(Store::open(&location, opts)?),
        };
        Ok(Location { place, backend })
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Every object, sorted by key. A missing folder is an error (exit 1), never "empty".
    pub async fn list(&self) -> Result<Listing> {
        let mut listing = match &self.backend {
            Backend::Folder(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || walk(&root))
                    .await
                    .map_err(|e| Error::Failed(format!("listing the folder stopped: {e}")))??
            }
            Backend::Bucket(store) => Listing {
                objects: store
                    .list("")
                    .await?
                    .into_iter()
                    .map(|o| SourceObject {
                        key: o.key,
                        size: o.size,
                        etag: o.etag,
                        modified: Timestamp::from_second(o.last_modified).ok(),
                    })
                    .collect(),
                skipped: Vec::new(),
            },
        };
        listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listing)
    }

    /// Streams one object. `Ok(None)` when it no longer exists.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, std::io::Result<Bytes>>>> {
        match &self.backend {
            Backend::Folder(root) => {
                let path = root.join(key);
                match tokio::fs::File::open(&path).await {
                    Ok(f) => Ok(Some(file_stream(f))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::Failed(format!(
                        "cannot open {}: {e}",
                        path.display()
                    ))),
                }
            }
            Backend::Bucket(store) => match store.get_stream(key).await {
                Ok((_, s)) => Ok(Some(s.map_err(std::io::Error::other).boxed())),
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }
}

const READ_CHUNK: usize = 256 << 10;

/// A file as a stream of chunks of at most 256 KiB.
pub(crate) fn file_stream(f: tokio::fs::File) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::try_unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = bytes::BytesMut::zeroed(READ_CHUNK);
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((buf.freeze(), f)))
    })
    .boxed()
}

/// Prefix of the temp files a restore writes next to their final names.
pub(crate) const TEMP_PREFIX: &str = ".pgdrill-tmp-";

/// Regular files below `root`, keys `/`-separated; symlinks and special files are skipped.
fn walk(root: &Path) -> Result<Listing> {
    let meta = std::fs::metadata(root)
        .map_err(|e| Error::Failed(format!("cannot read the folder {}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a folder",
            root.display()
        )));
    }
    let mut out = Listing::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| Error::Failed(format!("cannot read the folder {}: {e}", dir.display())))?;
        for entry in rd {
            let entry = entry.map_err(|e| {
                Error::Failed(format!("cannot read the folder {}: {e}", dir.display()))
            })?;
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                out.skipped.push(format!(
                    "{prefix}{}: the name is not UTF-8",
                    os_name.to_string_lossy()
                ));
                continue;
            };
            let key = format!("{prefix}{name}");
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let ft = entry.file_type().map_err(|e| {
                Error::Failed(format!("cannot stat {}: {e}", entry.path().display()))
            })?;
            if ft.is_symlink() {
                out.skipped.push(format!("{key}: a symlink"));
            } else if ft.is_dir() {
                stack.push((entry.path(), format!("{key}/")));
            } else if ft.is_file() {
                let md = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(Error::Failed(format!(
                            "cannot stat {}: {e}",
                            entry.path().display()
                        )))
                    }
                };
                out.objects.push(SourceObject {
                    key,
                    size: md.len(),
                    etag: None,
                    modified: md.modified().ok().and_then(|t| Timestamp::try_from(t).ok()),
                });
            } else {
                out.skipped.push(format!("{key}: not a regular file"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_skips_symlinks_and_uses_slash_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/b/c.txt"), b"x").expect("w");
        std::fs::write(dir.path().join("top"), b"yy").expect("w");
        std::os::unix::fs::symlink(dir.path().join("top"), dir.path().join("link")).expect("ln");
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("dirlink")).expect("ln");
        let mut l = walk(dir.path()).expect("walk");
        l.objects.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<_> = l.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, vec!["a/b/c.txt", "top"]);
        assert_eq!(l.skipped.len(), 2);
        assert!(walk(&dir.path().join("missing")).is_err());
    }
}
