//! From file text to a TOML table: `${VAR}` interpolation and the `PGDRILL_*` overrides.

use super::{interpolate, Env};
use crate::Result;

/// Sections whose keys `PGDRILL_<SECTION>_<KEY>` may set.
const SECTIONS: &[&str] = &[
    "store",
    "backup",
    "encryption",
    "compression",
    "policy",
    "restore",
    "retention",
    "alerts",
    "schedule",
    "serve",
];

/// Variables with a meaning of their own (not config keys).
const SPECIAL_VARS: &[&str] = &[
    "PGDRILL_CONFIG",
    "PGDRILL_IDENTITY",
    "PGDRILL_SOURCE_URL",
    "PGDRILL_STORE",
    "PGDRILL_TARGET_URL",
    "PGDRILL_PG_BIN",
    "PGDRILL_PG_PATHS",
    "PGDRILL_LOG",
    // Read by debug builds only, by tests (see `clock`).
    "PGDRILL_TEST_CLOCK_OFFSET_SECS",
    "PGDRILL_TEST_DROP_PUT",
    "PGDRILL_TEST_LEASE_TTL_SECS",
    "PGDRILL_TEST_RESTORE_TRACE",
];

/// Keys whose values stay strings even when they look like numbers.
const STRING_KEYS: &[&str] = &[
    "url",
    "endpoint",
    "region",
    "identity_file",
    "monthly_restore_day",
    "name",
];

/// Keys holding lists; from the environment they are comma-separated.
const LIST_KEYS: &[&str] = &[
    "recipients",
    "pg_dump_args",
    "protected_targets",
    "identity_files",
];

/// Replaces `${VAR}` in every string; `$${` stays a literal `${`.
pub(super) fn interpolate_table(t: &mut toml::Table, env: &Env, path: &str) -> Result<()> {
    for (k, v) in t.iter_mut() {
        // Drill checks are interpolated when they run, so a variable only the drill
        // environment sets does not break every other command.
        if k == "drill" {
            continue;
        }
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        interpolate_value(v, env, &p)?;
    }
    Ok(())
}

pub(super) fn interpolate_value(v: &mut toml::Value, env: &Env, path: &str) -> Result<()> {
    match v {
        toml::Value::String(s) => *s = interpolate(s, env, path)?,
        toml::Value::Array(a) => {
            for x in a {
                interpolate_value(x, env, path)?;
            }
        }
        toml::Value::Table(t) => interpolate_table(t, env, path)?,
        _ => {}
    }
    Ok(())
}

/// Applies `PGDRILL_<SECTION>_<KEY>` and `PGDRILL_<KEY>` variables over the file's table.
/// Returns (config key, variable) for every variable applied, so an error about a key can
/// name the variable it came from.
pub(super) fn overlay_env(t: &mut toml::Table, env: &Env) -> Vec<(String, String)> {
    let mut applied = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("PGDRILL_") else {
            continue;
        };
        if SPECIAL_VARS.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let (section, key) = match SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")))
        {
            Some(s) => (Some(*s), lower[s.len() + 1..].to_string()),
            None => (None, lower.clone()),
        };
        let value = env_value(&key, raw);
        let target = match section {
            Some(s) => {
                let entry = t
                    .entry(s.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry.as_table_mut() {
                    Some(tbl) => tbl,
                    None => continue,
                }
            }
            None => &mut *t,
        };
        applied.push((key.clone(), name.clone()));
        target.insert(key, value);
    }
    applied
}

pub(super) fn env_value(key: &str, raw: &str) -> toml::Value {
    if LIST_KEYS.contains(&key) {
        return toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        );
    }
    if STRING_KEYS.contains(&key) || key.ends_with("_env") {
        return toml::Value::String(raw.to_string());
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
