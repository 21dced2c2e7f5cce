//! `[store]` (one store, named "default") or `[[store]]` (several, each with a `name`):
//! where backups go and how each store is reached; URLs are parsed into `StoreLocation`s at
//! load. Every configured store receives a complete copy of each backup (DESIGN.md §9).

use super::{named_env, Env};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The store's name (required in `[[store]]`, default "default"): used by `copy --to`,
    /// `--from-store`, `list`, `status` and the metrics.
    pub name: Option<String>,
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
    /// How each copy this (S3) store receives is checked: "sha256", "etag" or "none" (the
    /// size only); default per provider (`pgdrill_store::CopyCheck::default_for`). A folder
    /// always re-reads.
    pub checksum: Option<String>,
    /// This store's own retention (`[store.retention]` after its `[[store]]`), replacing the
    /// top-level `[retention]` for the copies in this store.
    pub retention: Option<crate::retention::RetentionSection>,
}

/// The name of the store of a single `[store]` table (or `PGDRILL_STORE`, or `--store`).
pub const DEFAULT_STORE_NAME: &str = "default";

/// One configured store, resolved.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub name: String,
    pub location: pgdrill_store::StoreLocation,
    pub options: pgdrill_store::StoreOptions,
    /// Multipart part size in bytes.
    pub part_size: usize,
    pub max_in_flight: usize,
    /// This store's retention, when it has its own (else the top-level one applies).
    pub retention: Option<crate::retention::RetentionPolicy>,
}

impl StoreSettings {
    /// The store given by URL alone (`--store`, `PGDRILL_STORE`), named "default", with the
    /// default transfer settings.
    pub fn from_location(
        location: pgdrill_store::StoreLocation,
        options: pgdrill_store::StoreOptions,
    ) -> Self {
        StoreSettings {
            name: DEFAULT_STORE_NAME.into(),
            location,
            options,
            part_size: part_size(&StoreSection::default()),
            max_in_flight: max_in_flight(&StoreSection::default()),
            retention: None,
        }
    }
}

/// How the primary store is reached, which `Settings` keeps beside `stores` (`--store URL`
/// keeps them when it replaces the stores): the first configured store's, or, with none
/// configured, those of `[store]` and the environment.
pub(super) struct PrimaryTransfer {
    pub(super) options: pgdrill_store::StoreOptions,
    pub(super) part_size: usize,
    pub(super) max_in_flight: usize,
}

pub(super) fn primary_transfer(
    stores: &[StoreSettings],
    single: &StoreSection,
    env: &Env,
) -> Result<PrimaryTransfer> {
    Ok(match stores.first() {
        Some(p) => PrimaryTransfer {
            options: p.options.clone(),
            part_size: p.part_size,
            max_in_flight: p.max_in_flight,
        },
        None => PrimaryTransfer {
            options: store_options(single, env)?,
            part_size: part_size(single),
            max_in_flight: max_in_flight(single),
        },
    })
}

pub(super) fn part_size(s: &StoreSection) -> usize {
    (s.part_size_mib.unwrap_or(16).clamp(5, 4096) as usize) << 20
}

pub(super) fn max_in_flight(s: &StoreSection) -> usize {
    s.max_in_flight.unwrap_or(4).clamp(1, 64) as usize
}

/// Checks a store name: 1 to 63 of `a-z 0-9 _ -`, starting with a letter or digit.
pub fn check_store_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "store name {name:?} is not valid: use 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Every configured store, in order: the one `[store]` (or `PGDRILL_STORE`), named "default"
/// unless it names itself, or the `[[store]]` entries (at least one, each with a distinct
/// name and a url).
pub(super) fn stores(
    single: &StoreSection,
    many: &[StoreSection],
    base_dir: &Path,
    env: &Env,
    retention_days: Option<u64>,
) -> Result<Vec<StoreSettings>> {
    if many.is_empty() {
        let Some(location) = store_location(single, base_dir, env)? else {
            return Ok(Vec::new());
        };
        let name = single
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_STORE_NAME.into());
        check_store_name(&name)?;
        return Ok(vec![resolve(single, name, location, env, retention_days)?]);
    }
    let mut out: Vec<StoreSettings> = Vec::new();
    for (i, s) in many.iter().enumerate() {
        let (name, location) = entry_place(i, s, &out, base_dir)?;
        out.push(resolve(s, name, location, env, retention_days)?);
    }
    Ok(out)
}

/// The name and location of `[[store]]` entry `i` (from 0), checked against the entries
/// before it (`earlier`): each needs a name and a url, both its own, or two stores would be
/// one place or could not be told apart.
fn entry_place(
    i: usize,
    s: &StoreSection,
    earlier: &[StoreSettings],
    base_dir: &Path,
) -> Result<(String, pgdrill_store::StoreLocation)> {
    let Some(name) = &s.name else {
        return Err(Error::Invalid(format!(
            "[[store]] entry {} has no name: give each store a name (e.g. name = \"offsite\")",
            i + 1
        )));
    };
    check_store_name(name)?;
    if earlier.iter().any(|o| &o.name == name) {
        return Err(Error::Invalid(format!(
            "two [[store]] entries are named {name}: give each a distinct name"
        )));
    }
    let Some(url) = &s.url else {
        return Err(Error::Invalid(format!(
            "[[store]] {name} has no url: set url (s3://bucket/prefix or a folder)"
        )));
    };
    let location = pgdrill_store::StoreLocation::parse(url)
        .map_err(|e| Error::Invalid(format!("[[store]] {name} url: {e}")))?
        .relative_to(base_dir);
    if let Some(o) = earlier
        .iter()
        .find(|o| o.location.to_string() == location.to_string())
    {
        return Err(Error::Invalid(format!(
            "[[store]] {name} and {} have the same url: each store must be a different place",
            o.name
        )));
    }
    Ok((name.clone(), location))
}

/// A store's settings once its name and location are known: the rest comes from its
/// section (its own `[store.retention]`, with the policy's `retention_days`).
fn resolve(
    s: &StoreSection,
    name: String,
    location: pgdrill_store::StoreLocation,
    env: &Env,
    retention_days: Option<u64>,
) -> Result<StoreSettings> {
    Ok(StoreSettings {
        name,
        location,
        options: store_options(s, env)?,
        part_size: part_size(s),
        max_in_flight: max_in_flight(s),
        retention: s
            .retention
            .as_ref()
            .map(|r| crate::retention::RetentionPolicy::from_section(r, retention_days))
            .transpose()?,
    })
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
        env: crate::env::pairs(env),
        timeout: match s.timeout_seconds {
            Some(0) => {
                return Err(Error::Invalid(
                    "[store] timeout_seconds = 0 would fail every request: give at least 1 (default 60)".into(),
                ))
            }
            t => t.map(std::time::Duration::from_secs),
        },
        retry_window: s.retry_seconds.map(std::time::Duration::from_secs),
        checksum: match &s.checksum {
            None => None,
            Some(c) => Some(pgdrill_store::CopyCheck::parse(c).ok_or_else(|| {
                Error::Invalid(format!(
                    "[store] checksum = {c:?} is not a check: use \"sha256\", \"etag\" or \"none\""
                ))
            })?),
        },
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
