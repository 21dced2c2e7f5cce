//! Reading `[[database.drill.check]]` entries: kinds, required keys, expected values; every
//! mistake is exit 2 before anything is restored.

use super::{CheckKind, CheckSpec};
use crate::env::{interpolate, Env};
use crate::{Error, Result};

/// Parses and validates the checks of a `[database.drill]` table; `row_counts` is added
/// unless `row_counts = false`. Fails with exit 2 before anything is restored.
pub fn parse_checks(drill: &toml::Table, env: &Env) -> Result<Vec<CheckSpec>> {
    // A misspelt key (`[[database.drill.checks]]`, `row_count = false`) would otherwise be
    // ignored silently and the drill would pass with fewer checks than configured.
    const KEYS: &[&str] = &[
        "check",
        "row_counts",
        "target_url_env",
        "jobs",
        "fail_on_skipped",
        "allow_skipped",
    ];
    // A physical source's keys are typed at config load (`config::drill_source`).
    let physical = crate::config::PHYSICAL_KEYS;
    if let Some(k) = drill
        .keys()
        .find(|k| !KEYS.contains(&k.as_str()) && !physical.contains(&k.as_str()))
    {
        return Err(Error::Invalid(format!(
            "[database.drill] has an unknown key {k:?}: the keys are {}, {} (checks go in [[database.drill.check]])",
            KEYS.join(", "),
            physical.join(", ")
        )));
    }
    if let Some(v) = drill.get("row_counts").filter(|v| !v.is_bool()) {
        return Err(Error::Invalid(format!(
            "[database.drill] row_counts must be true or false, not {v}"
        )));
    }
    let mut out = Vec::new();
    let row_counts = drill
        .get("row_counts")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    if row_counts {
        out.push(CheckSpec {
            name: "row counts equal the backup's snapshot".into(),
            kind: CheckKind::RowCounts {},
        });
    }
    let list = match drill.get("check") {
        None => return Ok(out),
        Some(toml::Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(Error::Invalid(
                "database.drill.check must be an array of tables ([[database.drill.check]])".into(),
            ))
        }
    };
    for (i, raw) in list.into_iter().enumerate() {
        let mut table = match raw {
            toml::Value::Table(t) => t,
            _ => {
                return Err(Error::Invalid(format!(
                    "drill check #{} is not a table",
                    i + 1
                )))
            }
        };
        let kind = table
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("?")
            .to_string();
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) => s,
            _ => format!("{kind} #{}", i + 1),
        };
        let kind_v: CheckKind =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    Error::Invalid(format!(
                        "drill check {name:?} is invalid: {}",
                        e.to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    ))
                })?;
        validate(&name, &kind_v, env)?;
        out.push(CheckSpec { name, kind: kind_v });
    }
    Ok(out)
}

pub(super) fn validate(name: &str, k: &CheckKind, env: &Env) -> Result<()> {
    let bad = |m: &str| Err(Error::Invalid(format!("drill check {name:?}: {m}")));
    match k {
        CheckKind::TablesNonempty { tables }
        | CheckKind::RlsEnabled { tables }
        | CheckKind::PoliciesPresent { tables }
            if tables.is_empty() =>
        {
            bad("list at least one table in tables = [...]")
        }
        CheckKind::Migrations {
            framework: None,
            table: None,
        } => bad("set framework (prisma, alembic, rails, django, flyway) or table"),
        CheckKind::Migrations {
            framework: Some(f), ..
        } if migrations_table(f).is_none() => {
            bad("framework must be prisma, alembic, rails, django or flyway")
        }
        CheckKind::Sql { query, expect, .. } => {
            if query.trim().is_empty() {
                return bad("query is empty");
            }
            parse_expect(expect)
                .map(|_| ())
                .map_err(|m| Error::Invalid(format!("drill check {name:?}: {m}")))
        }
        CheckKind::Http {
            url,
            bearer_token_env,
            method,
            ..
        } => {
            interpolate(url, env, &format!("drill check {name:?} url"))?;
            if !["GET", "HEAD", "POST"].contains(&method.to_ascii_uppercase().as_str()) {
                return bad("method must be GET, HEAD or POST");
            }
            if let Some(v) = bearer_token_env {
                if env.get(v).map(|s| s.is_empty()).unwrap_or(true) {
                    return bad(&format!("bearer_token_env names {v}, which is not set"));
                }
            }
            Ok(())
        }
        CheckKind::Command { run, .. } if run.trim().is_empty() => bad("run is empty"),
        CheckKind::MirrorParity { mirror, .. } | CheckKind::StorageObjects { mirror, .. }
            if crate::mirror::MirrorName::parse(mirror).is_err() =>
        {
            bad("mirror must name a mirror (letters, digits, '-', '_' or '.')")
        }
        CheckKind::StorageObjects { key, .. } if !key.contains("{name}") => {
            bad("key must contain {name} (e.g. \"{bucket}/{name}\")")
        }
        _ => Ok(()),
    }
}

pub(super) fn migrations_table(framework: &str) -> Option<(&'static str, &'static str)> {
    Some(match framework {
        "prisma" => ("public", "_prisma_migrations"),
        "alembic" => ("public", "alembic_version"),
        "rails" => ("public", "schema_migrations"),
        "django" => ("public", "django_migrations"),
        "flyway" => ("public", "flyway_schema_history"),
        _ => return None,
    })
}

/// What an `sql` check expects.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// First column of the single row, compared with an operator.
    Compare(String, String),
    /// The exact set of rows (order ignored), each as text cells.
    Rows(Vec<Vec<String>>),
}

pub fn parse_expect(v: &toml::Value) -> std::result::Result<Expect, String> {
    match v {
        toml::Value::Integer(i) => Ok(Expect::Compare("=".into(), i.to_string())),
        toml::Value::Float(f) => Ok(Expect::Compare("=".into(), f.to_string())),
        toml::Value::Boolean(b) => Ok(Expect::Compare(
            "=".into(),
            if *b { "t".into() } else { "f".into() },
        )),
        toml::Value::String(s) => {
            let s = s.trim();
            for op in [">=", "<=", "!=", "<>", ">", "<", "="] {
                if let Some(rest) = s.strip_prefix(op) {
                    return Ok(Expect::Compare(
                        op.replace("<>", "!="),
                        rest.trim().to_string(),
                    ));
                }
            }
            Ok(Expect::Compare("=".into(), s.to_string()))
        }
        toml::Value::Array(rows) => rows
            .iter()
            .map(|r| match r {
                toml::Value::Array(cells) => Ok(cells.iter().map(cell_text).collect()),
                other => Ok(vec![cell_text(other)]),
            })
            .collect::<std::result::Result<Vec<_>, String>>()
            .map(Expect::Rows),
        _ => Err("expect must be a number, a comparison like \"> 0\", or a list of rows".into()),
    }
}

pub(super) fn cell_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => {
            if *b {
                "t".into()
            } else {
                "f".into()
            }
        }
        other => other.to_string(),
    }
}

pub(super) fn compare(op: &str, actual: &str, expected: &str) -> bool {
    if let (Ok(a), Ok(e)) = (actual.parse::<f64>(), expected.parse::<f64>()) {
        return match op {
            ">" => a > e,
            ">=" => a >= e,
            "<" => a < e,
            "<=" => a <= e,
            "!=" => a != e,
            _ => a == e,
        };
    }
    match op {
        "!=" => actual != expected,
        "=" => actual == expected,
        _ => false,
    }
}
