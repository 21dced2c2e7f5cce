//! `[restore]`, typed at load: `maintenance_work_mem` is parsed once into a [`MemorySize`].

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestoreSection {
    pub jobs: Option<u32>,
    /// pg_restore error lines (substrings) that do not fail a restore.
    #[serde(default)]
    pub ignore_errors: Vec<String>,
    /// Extensions not to restore (with their comments and grants), e.g. an untrusted
    /// extension a non-superuser cannot create and the restore can go without.
    #[serde(default)]
    pub skip_extensions: Vec<String>,
    /// `maintenance_work_mem` of the restore's pg_restore sessions (index builds, foreign
    /// keys), e.g. `"1GB"`. Default: the server's setting.
    pub maintenance_work_mem: Option<String>,
}

/// `[restore] maintenance_work_mem` must be a PostgreSQL memory size (digits and a unit of
/// kB, MB, GB or TB, or none for kB): anything else could not be passed to the server safely.
pub fn check_memory_size(v: &str) -> Result<()> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    if digits.is_empty()
        || !digits.chars().all(|c| c.is_ascii_digit())
        || !["", "kB", "MB", "GB", "TB"].contains(&unit)
    {
        return Err(Error::Invalid(format!(
            "[restore] maintenance_work_mem = \"{v}\" is not a PostgreSQL memory size: write it like \"512MB\" or \"2GB\""
        )));
    }
    Ok(())
}
