//! Temporary pgpass files for libpq children, and the sweep of those a killed pgdrill left.
//!
//! A child gets the password through `PGPASSFILE` (never argv): a 0600 file
//! `$TMPDIR/pgdrill-pgpass-*` that pgdrill deletes when the child is done. A process killed
//! with SIGKILL cannot delete it, so every file carries a shared `flock` held by its owner for
//! the file's life: the kernel drops it when the owner dies, however it dies. [`sweep_stale`]
//! (run at the start of every command) deletes each pgpass file nobody holds a lock on.
//!
//! Creation races with a sweep by another process: the password is written only after the
//! owner holds its lock *and* has checked that the name still points at its file (a sweeper
//! deletes while holding an exclusive lock, so either it sees the owner's lock or the owner
//! sees the name gone and starts over with a new file).

use rustix::fs::{flock, FlockOperation};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Names of pgpass files start with this, in `std::env::temp_dir()`.
pub const PREFIX: &str = "pgdrill-pgpass-";

/// A pgpass file holding one password; deleted when dropped.
#[derive(Debug)]
pub struct PassFile {
    file: tempfile::NamedTempFile,
}

impl PassFile {
    /// Writes `*:*:*:*:<password>` (escaped as libpq wants) into a new 0600 file in
    /// `std::env::temp_dir()`.
    pub fn create(password: &str) -> std::io::Result<PassFile> {
        Self::create_in(&std::env::temp_dir(), password)
    }

    pub fn create_in(dir: &Path, password: &str) -> std::io::Result<PassFile> {
        let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
        for _ in 0..5 {
            // tempfile creates files with mode 0600 and O_EXCL.
            let mut file = tempfile::Builder::new().prefix(PREFIX).tempfile_in(dir)?;
            flock(file.as_file(), FlockOperation::NonBlockingLockShared)?;
            if !same_file(file.as_file(), file.path()) {
                // A sweep deleted the (still empty) file before we held the lock.
                continue;
            }
            writeln!(file, "*:*:*:*:{escaped}")?;
            file.flush()?;
            return Ok(PassFile { file });
        }
        Err(std::io::Error::other(
            "the temporary password file kept disappearing (is another program cleaning TMPDIR?)",
        ))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

fn same_file(f: &std::fs::File, path: &Path) -> bool {
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Deletes the pgpass files in `dir` that belong to this user and whose owner is gone (no
/// process holds a lock on them). Returns the paths deleted. Errors are ignored: a file that
/// cannot be looked at is left alone.
pub fn sweep_stale(dir: &Path) -> Vec<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let mut deleted = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return deleted;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() || meta.uid() != uid {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // Held by a live owner: leave it. Ours now: delete it while holding the lock.
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        if same_file(&file, &path) && std::fs::remove_file(&path).is_ok() {
            deleted.push(path);
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_file_is_kept_and_an_orphan_swept() {
        let dir = tempfile::tempdir().expect("tmp");
        let live = PassFile::create_in(dir.path(), "a:b\\c").expect("create");
        let text = std::fs::read_to_string(live.path()).expect("read");
        assert_eq!(text, "*:*:*:*:a\\:b\\\\c\n");
        // What a killed owner leaves: a file nobody holds a lock on.
        let orphan = dir.path().join(format!("{PREFIX}orphan"));
        std::fs::write(&orphan, "*:*:*:*:secret\n").expect("write");
        let other = dir.path().join("unrelated");
        std::fs::write(&other, "x").expect("write");

        assert_eq!(sweep_stale(dir.path()), vec![orphan.clone()]);
        assert!(live.path().exists());
        assert!(other.exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
        assert!(sweep_stale(dir.path()).is_empty());
    }
}
