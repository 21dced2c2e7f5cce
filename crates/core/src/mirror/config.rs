//! `[[mirror]]` entries of pgdrill.toml.

use super::MirrorName;
use crate::env::Env;
use crate::{Error, Result};
use pgdrill_store::{StoreLocation, StoreOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One uploads bucket (or folder) to mirror into the store.
///
/// ```toml
/// [[mirror]]
/// name = "uploads"
/// from = "s3://app-uploads/public"   # or a folder
/// endpoint = "https://<account>.r2.cloudflarestorage.com"
/// access_key_id_env = "UPLOADS_KEY_ID"
/// secret_access_key_env = "UPLOADS_SECRET"
/// keep_last = 7
/// keep_within_days = 30
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorSection {
    pub name: String,
    /// `s3://bucket/prefix`, `file:///path` or a folder (relative to the config file).
    pub from: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    /// Snapshots `prune` keeps at least (default 7; the newest is always kept).
    pub keep_last: Option<u64>,
    /// Also keep every snapshot younger than this (default: policy.retention_days).
    pub keep_within_days: Option<u64>,
    /// A run stops without a snapshot when the source lists more than this percentage fewer
    /// objects than the previous snapshot (default 50).
    pub max_drop_percent: Option<u32>,
    /// Transfers in flight (default 8).
    pub concurrency: Option<u64>,
}

impl MirrorSection {
    pub fn mirror_name(&self) -> Result<MirrorName> {
        MirrorName::parse(&self.name).map_err(|e| Error::Invalid(format!("[[mirror]] {e}")))
    }

    /// How to reach an S3 source (credentials from the named variables, else `AWS_*`).
    pub fn source_options(&self, env: &Env) -> Result<StoreOptions> {
        let named = |var: &Option<String>, what: &str| {
            crate::env::named_env(env, var, &format!("[[mirror]] {}: {what}", self.name))
        };
        Ok(StoreOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            access_key_id: named(&self.access_key_id_env, "access_key_id_env")?,
            secret_access_key: named(&self.secret_access_key_env, "secret_access_key_env")?,
            session_token: None,
            env: crate::env::pairs(env),
            ..Default::default()
        })
    }

    pub fn max_drop_percent(&self) -> u32 {
        self.max_drop_percent
            .unwrap_or(super::DEFAULT_MAX_DROP_PERCENT)
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
            .map(|c| c.clamp(1, 64) as usize)
            .unwrap_or(super::DEFAULT_CONCURRENCY)
    }
}

/// Options for a location named only on the command line: the standard `AWS_*` variables.
pub fn default_options(env: &Env) -> StoreOptions {
    StoreOptions {
        env: crate::env::pairs(env),
        ..Default::default()
    }
}

/// Validates the entries (names, unique, parseable `from`, percentages) and resolves relative
/// folders against `base_dir`.
pub fn resolve_sections(sections: &[MirrorSection], base_dir: &Path) -> Result<Vec<MirrorSection>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in sections {
        let name = s.mirror_name()?;
        if !seen.insert(name.clone()) {
            return Err(Error::Invalid(format!(
                "two [[mirror]] entries are named {name}: give each a distinct name"
            )));
        }
        let mut s = s.clone();
        s.from = match StoreLocation::parse(&s.from)
            .map_err(|e| Error::Invalid(format!("[[mirror]] {name}: from: {e}")))?
        {
            StoreLocation::Folder { path } if path.is_relative() => {
                base_dir.join(path).display().to_string()
            }
            _ => s.from,
        };
        if s.max_drop_percent.is_some_and(|p| p > 100) {
            return Err(Error::Invalid(format!(
                "[[mirror]] {name}: max_drop_percent must be 0 to 100 (100 turns the guard off)"
            )));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_checked_and_folders_resolved() {
        let s = |name: &str, from: &str| MirrorSection {
            name: name.into(),
            from: from.into(),
            ..Default::default()
        };
        let out = resolve_sections(&[s("up", "files"), s("b", "s3://b/p")], Path::new("/etc/x"))
            .expect("ok");
        assert_eq!(out[0].from, "/etc/x/files");
        assert_eq!(out[1].from, "s3://b/p");
        assert!(resolve_sections(&[s("a", "x"), s("a", "y")], Path::new("/")).is_err());
        assert!(resolve_sections(&[s("a/b", "x")], Path::new("/")).is_err());
        assert!(resolve_sections(&[s("a", "gs://x")], Path::new("/")).is_err());
    }

    #[test]
    fn config_file_accepts_mirror_entries() {
        let text = "[[mirror]]\nname = \"uploads\"\nfrom = \"s3://b/u\"\nkeep_last = 3\n";
        let s = crate::config::Settings::load(Some(text), "t", Path::new("/"), &Env::new())
            .expect("load");
        assert_eq!(s.mirrors.len(), 1);
        assert_eq!(s.mirrors[0].keep_last, Some(3));
        let bad = "[[mirror]]\nname = \"u\"\nfrom = \"x\"\nkeep = 3\n";
        assert!(
            crate::config::Settings::load(Some(bad), "t", Path::new("/"), &Env::new()).is_err()
        );
    }
}
