//! `[store]`: where backups go and how the store is reached; the URL is parsed into a
//! `StoreLocation` at load.

use super::{named_env, Env};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub part_size_mib: Option<u64>,
    pub max_in_flight: Option<u64>,
    /// Bound on one store request, in seconds (default 60); a request that stalls longer is
    /// abandoned and retried when that is safe.
    pub timeout_seconds: Option<u64>,
    /// How long a failing store request is retried, with backoff and jitter (default 30).
    pub retry_seconds: Option<u64>,
}

pub(super) fn store_options(s: &StoreSection, env: &Env) -> Result<pgdrill_store::StoreOptions> {
    let named = |var: &Option<String>, what: &str| named_env(env, var, &format!("store.{what}"));
    Ok(pgdrill_store::StoreOptions {
        endpoint: s.endpoint.clone(),
        region: s.region.clone(),
        path_style: s.path_style,
        access_key_id: named(&s.access_key_id_env, "access_key_id_env")?,
        secret_access_key: named(&s.secret_access_key_env, "secret_access_key_env")?,
        session_token: None,
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timeout: match s.timeout_seconds {
            Some(0) => {
                return Err(Error::Invalid(
                    "[store] timeout_seconds = 0 would fail every request: give at least 1 (default 60)".into(),
                ))
            }
            t => t.map(std::time::Duration::from_secs),
        },
        retry_window: s.retry_seconds.map(std::time::Duration::from_secs),
    })
}

/// `[store] url` (a relative folder there is relative to the config file's folder), else
/// `PGDRILL_STORE`, parsed: an unusable URL fails the load (exit 2).
pub(super) fn store_location(
    s: &StoreSection,
    base_dir: &Path,
    env: &Env,
) -> Result<Option<pgdrill_store::StoreLocation>> {
    let parse = |raw: &str, origin: &str| {
        pgdrill_store::StoreLocation::parse(raw)
            .map_err(|e| Error::Invalid(format!("{origin}: {e}")))
    };
    match (&s.url, env.get("PGDRILL_STORE").filter(|u| !u.is_empty())) {
        (Some(url), _) => Ok(Some(parse(url, "[store] url")?.relative_to(base_dir))),
        (None, Some(url)) => Ok(Some(parse(url, "PGDRILL_STORE")?)),
        (None, None) => Ok(None),
    }
}
