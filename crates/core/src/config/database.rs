//! `[[database]]` entries: where each source comes from, its pg_dump arguments, its drill
//! settings (typed at load) and its audit row.

use super::Env;
use crate::ids::DbName;
use crate::{Error, Result};
use pgdrill_pg::{ConnSpec, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub name: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    #[serde(default)]
    pub pg_dump_args: Vec<String>,
    /// Also back up roles and tablespaces (`pg_dumpall --globals-only --no-role-passwords`)
    /// as `globals.sql.zst[.age]`; restored only with `restore --globals`.
    #[serde(default)]
    pub globals: bool,
    /// Drill settings and checks, interpreted by the drill module.
    #[serde(default)]
    pub drill: toml::Table,
    /// Optional audit row written into the source after each backup.
    pub audit: Option<crate::audit::AuditSection>,
}

/// Where a source URL comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceRef {
    Url(Secret),
    Env(String),
    /// A database a `[[server]]` discovered: the server's connection, its database replaced.
    Discovered(ConnSpec),
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub name: DbName,
    pub source: Option<SourceRef>,
    pub pg_dump_args: Vec<String>,
    pub globals: bool,
    /// Keep role password hashes in the globals (`[[server]] globals_passwords`).
    pub globals_passwords: bool,
    /// The `[[server]]` this database was discovered on (`None`: a `[[database]]` entry).
    pub server: Option<String>,
    /// The raw `[database.drill]` table: its checks are parsed when a drill runs, with that
    /// run's environment.
    pub drill: toml::Table,
    /// Its own settings, typed at load.
    pub drill_settings: DrillSettings,
    pub audit: Option<crate::audit::AuditSection>,
}

impl DatabaseSettings {
    /// A database known only from the store (no source, no drill settings): what a drill of
    /// a config that names only the store runs with.
    pub fn store_only(name: DbName) -> DatabaseSettings {
        DatabaseSettings {
            name,
            source: None,
            pg_dump_args: vec![],
            globals: false,
            globals_passwords: false,
            server: None,
            drill: toml::Table::new(),
            drill_settings: DrillSettings::default(),
            audit: None,
        }
    }

    /// The source connection; fails (exit 2) when it is not configured or its variable unset.
    pub fn source_spec(&self, env: &Env) -> Result<ConnSpec> {
        let env_vec = crate::env::pairs(env);
        let url = match &self.source {
            Some(SourceRef::Discovered(spec)) => return Ok(spec.clone()),
            Some(SourceRef::Url(u)) => u.expose().to_string(),
            Some(SourceRef::Env(var)) => env.get(var).cloned().filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::Invalid(format!(
                    "database {}: url_env names {var}, which is not set; export it or use --source URL",
                    self.name
                ))
            })?,
            None => {
                return Err(Error::Invalid(format!(
                    "database {} has no source: set url_env in its [[database]] entry or pass --source URL",
                    self.name
                )))
            }
        };
        Ok(ConnSpec::parse_with_env(&url, &env_vec)?)
    }
}

/// `[database.drill]`'s own settings, typed; its checks (`[[database.drill.check]]`) are
/// parsed when the drill runs, with the environment of that run (`drill::checks`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrillSettings {
    /// Restore parallelism of this database's drills (1 to 64).
    pub jobs: Option<u32>,
    /// Variable holding the server drills restore on (a fresh database is created there).
    pub target_url_env: Option<String>,
    /// `source` other than `pgdrill`: a physical backup made by another tool.
    pub physical: Option<super::drill_source::PhysicalDrill>,
}

impl DrillSettings {
    pub fn from_table(t: &toml::Table, db: &str) -> Result<DrillSettings> {
        let jobs = match t.get("jobs") {
            None => None,
            // Clamped as `--jobs` is.
            Some(toml::Value::Integer(j)) => Some((*j).clamp(1, 64) as u32),
            Some(v) => {
                return Err(Error::Invalid(format!(
                    "database {db}: [database.drill] jobs = {v} is not a number: write it like jobs = 4"
                )))
            }
        };
        let target_url_env = match t.get("target_url_env") {
            None => None,
            Some(toml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v) => {
                return Err(Error::Invalid(format!(
                    "database {db}: [database.drill] target_url_env = {v} must name an environment variable"
                )))
            }
        };
        Ok(DrillSettings {
            jobs,
            target_url_env,
            physical: super::drill_source::physical_from_table(t, db)?,
        })
    }
}

/// Every `[[database]]` entry resolved, in order; two with one name are refused (commands
/// select a database by name, so the second could never be reached).
pub(super) fn all_database_settings(
    sections: &[DatabaseSection],
    env: &Env,
) -> Result<Vec<DatabaseSettings>> {
    let mut databases = Vec::new();
    for (i, d) in sections.iter().enumerate() {
        databases.push(database_settings(d, i, env)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in &databases {
        if !seen.insert(d.name.clone()) {
            return Err(Error::Invalid(format!(
                "two [[database]] entries are named {}: give each a distinct name",
                d.name
            )));
        }
    }
    Ok(databases)
}

pub(super) fn database_settings(
    d: &DatabaseSection,
    index: usize,
    env: &Env,
) -> Result<DatabaseSettings> {
    let source = match (&d.url, &d.url_env) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(format!(
                "[[database]] #{} sets both url and url_env: keep one (url_env keeps the secret out of the file)",
                index + 1
            )))
        }
        (Some(u), None) => Some(SourceRef::Url(Secret::new(u.clone()))),
        (None, Some(v)) => Some(SourceRef::Env(v.clone())),
        (None, None) => None,
    };
    let name = match &d.name {
        Some(n) => n.clone(),
        None => {
            let probe = DatabaseSettings {
                source: source.clone(),
                ..DatabaseSettings::store_only(DbName::parse("x").map_err(Error::Invalid)?)
            };
            probe
                .source_spec(env)
                .map(|s| s.dbname)
                .map_err(|_| {
                    Error::Invalid(format!(
                        "[[database]] #{} has no name and no usable URL to take it from: set name = \"...\"",
                        index + 1
                    ))
                })?
        }
    };
    Ok(DatabaseSettings {
        drill_settings: DrillSettings::from_table(&d.drill, &name)?,
        name: DbName::parse(&name).map_err(Error::Invalid)?,
        source,
        pg_dump_args: d.pg_dump_args.clone(),
        globals: d.globals,
        globals_passwords: false,
        server: None,
        drill: d.drill.clone(),
        audit: d.audit.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_settings_are_typed_and_jobs_clamped_like_the_flag() {
        let t: toml::Table = "jobs = 200\ntarget_url_env = \"STAGING\"\n"
            .parse()
            .expect("toml");
        let d = DrillSettings::from_table(&t, "app").expect("drill");
        assert_eq!(d.jobs, Some(64));
        assert_eq!(d.target_url_env.as_deref(), Some("STAGING"));
        for bad in [
            "jobs = \"4\"",
            "target_url_env = 3",
            "target_url_env = \"\"",
        ] {
            let t: toml::Table = bad.parse().expect("toml");
            let e = DrillSettings::from_table(&t, "app").expect_err(bad);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("[database.drill]"), "{e}");
        }
    }
}
