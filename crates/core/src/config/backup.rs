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
