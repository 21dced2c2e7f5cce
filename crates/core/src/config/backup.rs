//! `[backup]`, `[encryption]` and `[compression]`: how a backup is taken and stored.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// `[backup]`
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// How long pg_dump waits for a table lock at its start (another session holding an
    /// `ACCESS EXCLUSIVE` lock) before the backup fails naming the holder (default 300).
    pub lock_wait_timeout_seconds: Option<u64>,
    /// pg_dump processes (default 1); above 1, a parallel dump (`pg_dump -Fd -j N`) stored
    /// one object per file of the archive directory.
    pub jobs: Option<u32>,
    /// Where a parallel dump's spool directory goes (default: the temp directory).
    pub spool_dir: Option<String>,
    /// A parallel dump's bytes on disk not yet read, in MiB, above which pg_dump is paused
    /// until the uploads caught up (default 64).
    pub spool_window_mib: Option<u64>,
}

/// Default of `[backup] spool_window_mib`, in bytes.
pub const DEFAULT_SPOOL_WINDOW: u64 = 64 << 20;

/// The largest `[backup] jobs` / `backup --jobs`.
pub const MAX_BACKUP_JOBS: u32 = 64;

pub(super) fn backup_jobs(b: &BackupSection) -> Result<u32> {
    match b.jobs {
        Some(n) if n == 0 || n > MAX_BACKUP_JOBS => Err(Error::Invalid(format!(
            "[backup] jobs = {n} is out of range: give 1 to {MAX_BACKUP_JOBS}"
        ))),
        n => Ok(n.unwrap_or(1)),
    }
}

/// Default of `[backup] lock_wait_timeout_seconds`.
pub const DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS: u64 = 300;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    #[serde(default)]
    pub recipients: Vec<String>,
    pub passphrase_env: Option<String>,
    pub identity_file: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub level: Option<i32>,
    pub threads: Option<u32>,
}

pub(super) fn lock_wait_timeout(b: &BackupSection) -> Result<std::time::Duration> {
    match b.lock_wait_timeout_seconds {
        Some(0) => Err(Error::Invalid(
            "[backup] lock_wait_timeout_seconds = 0 would let pg_dump wait forever for a lock: give a number of seconds (default 300)".into(),
        )),
        t => Ok(std::time::Duration::from_secs(
            t.unwrap_or(DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS),
        )),
    }
}

/// `[backup] spool_window_mib` in bytes, clamped to 1 MiB .. 1 TiB.
pub(super) fn spool_window(b: &BackupSection) -> u64 {
    b.spool_window_mib
        .map(|m| m.clamp(1, 1 << 20) << 20)
        .unwrap_or(DEFAULT_SPOOL_WINDOW)
}

/// `[compression] level` (default 2): a zstd level from 1 to 19.
pub(super) fn compression_level(c: &CompressionSection) -> Result<i32> {
    let level = c.level.unwrap_or(2);
    if !(1..=19).contains(&level) {
        return Err(Error::Invalid(format!(
            "compression.level {level} is out of range: use 1 (fastest) to 19 (smallest)"
        )));
    }
    Ok(level)
}
