//! `[database.drill] source`: what a drill restores. `pgdrill` (the default) is pgdrill's own
//! backups; `pgbackrest`, `barman-cloud` and `command` are physical backups made by another
//! tool, fetched into a throwaway data directory and recovered (`drill::source`). Typed at
//! load: every mistake is exit 2 naming the key.

use crate::time::{self, Timestamp};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The drill-level keys a physical source adds to `[database.drill]`.
pub const PHYSICAL_KEYS: &[&str] = &[
    "source",
    "target_time",
    "recovery_timeout_seconds",
    "dbname",
    "user",
    "env",
    "pgbackrest",
    "barman_cloud",
    "command",
];

/// A drill of a physical backup (`source` other than `pgdrill`).
#[derive(Clone, Debug, PartialEq)]
pub struct PhysicalDrill {
    pub source: PhysicalSource,
    /// `recovery_target_time` (with `recovery_target_action = promote`); `None`: replay all WAL.
    pub target_time: Option<Timestamp>,
    /// How long recovery may take (default 30 min).
    pub recovery_timeout: Duration,
    /// The database the checks connect to (default: the `[[database]]` name).
    pub dbname: Option<String>,
    /// The role the checks connect as (default `postgres`), trusted on the private socket.
    pub user: String,
    /// Environment variables passed to the tool and to the restored server's
    /// `restore_command` (credentials, `PGBACKREST_*`), by name.
    pub env: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PhysicalSource {
    PgBackRest(PgBackRestSource),
    BarmanCloud(BarmanCloudSource),
    Command(CommandSource),
}

impl PhysicalSource {
    /// The `source` value, as result.json records it.
    pub fn kind(&self) -> &'static str {
        match self {
            PhysicalSource::PgBackRest(_) => "pgbackrest",
            PhysicalSource::BarmanCloud(_) => "barman-cloud",
            PhysicalSource::Command(_) => "command",
        }
    }
}

/// `[database.drill.pgbackrest]`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBackRestSource {
    pub stanza: String,
    /// `--config` (default: pgBackRest's own, `/etc/pgbackrest/pgbackrest.conf`).
    pub config: Option<PathBuf>,
    /// More options, each passed as `--key=value` (`repo1-path`, `repo`, ...); secrets belong
    /// in the config file or `PGBACKREST_*` variables named in `env`.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// A backup set label (default: the newest, or the newest before `target_time`).
    pub set: Option<String>,
}

/// `[database.drill.barman_cloud]`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarmanCloudSource {
    /// `s3://bucket/prefix`
    pub url: String,
    pub server_name: String,
    pub endpoint_url: Option<String>,
    /// `--cloud-provider` (default aws-s3).
    pub cloud_provider: Option<String>,
    /// A backup id (default: the newest, or the newest ended before `target_time`).
    pub backup_id: Option<String>,
    /// Variables holding the credentials, handed to barman as `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (default: those variables themselves).
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub region: Option<String>,
}

/// `[database.drill.command]`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    /// argv: the program fills `$PGDRILL_DATA_DIR` (no shell).
    pub run: Vec<String>,
    /// The `restore_command` recovery uses (e.g. `wal-g wal-fetch %f %p`); without it the
    /// server only replays the WAL the data directory holds.
    pub restore_command: Option<String>,
    #[serde(default = "default_fetch_timeout")]
    pub timeout_seconds: u64,
}

fn default_fetch_timeout() -> u64 {
    6 * 3600
}

/// Reads `source` and its keys from a `[database.drill]` table: `None` for pgdrill's own
/// backups. The keys are checked in a fixed order, so that of several mistakes the same one
/// is reported first.
pub fn physical_from_table(t: &toml::Table, db: &str) -> Result<Option<PhysicalDrill>> {
    let t = DrillTable { t, db };
    let kind = t.kind()?;
    let Some(source) = t.source(kind)? else {
        return Ok(None);
    };
    t.refuse_other_sources(&source, kind)?;
    let target_time = t.target_time(&source)?;
    let recovery_timeout = t.recovery_timeout()?;
    let env = t.env()?;
    Ok(Some(PhysicalDrill {
        source,
        target_time,
        recovery_timeout,
        dbname: t.text("dbname")?,
        user: t.text("user")?.unwrap_or_else(|| "postgres".into()),
        env,
    }))
}

/// One database's `[database.drill]` table, read key by key; every error names the
/// database and the key.
struct DrillTable<'a> {
    t: &'a toml::Table,
    db: &'a str,
}

impl<'a> DrillTable<'a> {
    fn bad(&self, key: &str, what: &str) -> Error {
        Error::Invalid(format!(
            "database {}: [database.drill] {key} {what}",
            self.db
        ))
    }

    /// `source` (default "pgdrill"), not yet checked against the known kinds.
    fn kind(&self) -> Result<&'a str> {
        match self.t.get("source") {
            None => Ok("pgdrill"),
            Some(toml::Value::String(s)) => Ok(s.as_str()),
            Some(v) => Err(self.bad(
                "source",
                &format!(
                    "= {v} must be one of \"pgdrill\", \"pgbackrest\", \"barman-cloud\", \"command\""
                ),
            )),
        }
    }

    /// The physical source `kind` names, typed from its own table; `None` for pgdrill's own
    /// backups, which refuse the physical keys (they would be ignored silently).
    fn source(&self, kind: &str) -> Result<Option<PhysicalSource>> {
        let source = match kind {
            "pgdrill" => {
                if let Some(k) = PHYSICAL_KEYS[1..].iter().find(|k| self.t.contains_key(**k)) {
                    return Err(self.bad(k, "applies to a physical source only: set source = \"pgbackrest\", \"barman-cloud\" or \"command\""));
                }
                return Ok(None);
            }
            "pgbackrest" => {
                let s: PgBackRestSource = self.section("pgbackrest", kind)?;
                if s.stanza.trim().is_empty() {
                    return Err(self.bad("pgbackrest.stanza", "must name the stanza"));
                }
                PhysicalSource::PgBackRest(s)
            }
            "barman-cloud" => {
                let s: BarmanCloudSource = self.section("barman_cloud", kind)?;
                if !s.url.contains("://") {
                    return Err(self.bad("barman_cloud.url", &format!("= {:?} must be a bucket URL such as s3://bucket/prefix", s.url)));
                }
                if s.server_name.trim().is_empty() {
                    return Err(self.bad("barman_cloud.server_name", "must name the server"));
                }
                PhysicalSource::BarmanCloud(s)
            }
            "command" => {
                let s: CommandSource = self.section("command", kind)?;
                if s.run.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(self.bad("command.run", "must be a program and its arguments, e.g. run = [\"/usr/local/bin/fetch-backup\", \"--latest\"]"));
                }
                PhysicalSource::Command(s)
            }
            other => return Err(self.bad("source", &format!("= {other:?} is not a source: use \"pgdrill\", \"pgbackrest\", \"barman-cloud\" or \"command\""))),
        };
        Ok(Some(source))
    }

    /// The `[database.drill.<name>]` table `source = kind` needs, typed.
    fn section<T: serde::de::DeserializeOwned>(&self, name: &str, kind: &str) -> Result<T> {
        let value = match self.t.get(name) {
            None => {
                return Err(Error::Invalid(format!(
                    "database {}: source = \"{kind}\" needs a [database.drill.{name}] table",
                    self.db
                )))
            }
            Some(v @ toml::Value::Table(_)) => v.clone(),
            Some(_) => {
                return Err(self.bad(name, &format!("must be a table ([database.drill.{name}])")))
            }
        };
        value.try_into().map_err(|e: toml::de::Error| {
            Error::Invalid(format!(
                "database {}: [database.drill.{name}] is invalid: {}",
                self.db,
                e.message().split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        })
    }

    /// The tables of the other sources would be ignored silently: refused.
    fn refuse_other_sources(&self, source: &PhysicalSource, kind: &str) -> Result<()> {
        let own = match source {
            PhysicalSource::PgBackRest(_) => "pgbackrest",
            PhysicalSource::BarmanCloud(_) => "barman_cloud",
            PhysicalSource::Command(_) => "command",
        };
        for other in ["pgbackrest", "barman_cloud", "command"] {
            if other != own && self.t.contains_key(other) {
                return Err(self.bad(
                    other,
                    &format!("does not apply to source = \"{kind}\": remove it"),
                ));
            }
        }
        Ok(())
    }

    /// `target_time`, a string or a TOML datetime, with its time zone. A command source
    /// recovers to a time only with a `restore_command` (recovery to a time fetches WAL).
    fn target_time(&self, source: &PhysicalSource) -> Result<Option<Timestamp>> {
        let target_time = match self.t.get("target_time") {
            None => None,
            Some(toml::Value::String(s)) => Some(time::parse(s).ok_or_else(|| {
                self.bad(
                    "target_time",
                    &format!(
                        "= {s:?} is not an RFC 3339 time: write it like \"2026-11-21T02:00:00Z\""
                    ),
                )
            })?),
            Some(toml::Value::Datetime(d)) => {
                Some(time::parse(&d.to_string()).ok_or_else(|| {
                    self.bad(
                        "target_time",
                        "needs a time zone: write it like 2026-11-21T02:00:00Z",
                    )
                })?)
            }
            Some(v) => return Err(self.bad("target_time", &format!("= {v} is not a time"))),
        };
        if let (PhysicalSource::Command(c), Some(_)) = (source, target_time) {
            if c.restore_command.is_none() {
                return Err(self.bad(
                    "target_time",
                    "needs [database.drill.command] restore_command: recovery to a time fetches WAL",
                ));
            }
        }
        Ok(target_time)
    }

    /// `recovery_timeout_seconds` (default 30 minutes).
    fn recovery_timeout(&self) -> Result<Duration> {
        match self.t.get("recovery_timeout_seconds") {
            None => Ok(Duration::from_secs(1800)),
            Some(toml::Value::Integer(n)) if *n > 0 => Ok(Duration::from_secs(*n as u64)),
            Some(v) => Err(self.bad(
                "recovery_timeout_seconds",
                &format!("= {v} must be a positive number of seconds"),
            )),
        }
    }

    /// An optional non-empty string.
    fn text(&self, key: &str) -> Result<Option<String>> {
        match self.t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(v) => Err(self.bad(key, &format!("= {v} must be a non-empty string"))),
        }
    }

    /// `env`: the names of the variables passed to the tool and the `restore_command`.
    fn env(&self) -> Result<Vec<String>> {
        match self.t.get("env") {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    self.bad(
                        "env",
                        "must list variable names, e.g. env = [\"PGBACKREST_REPO1_CIPHER_PASS\"]",
                    )
                }),
            Some(v) => Err(self.bad("env", &format!("= {v} must list variable names"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<PhysicalDrill>> {
        let t: toml::Table = text.parse().expect("toml");
        physical_from_table(&t, "app")
    }

    #[test]
    fn each_source_is_typed() {
        assert_eq!(parse("").expect("default"), None);
        assert_eq!(parse("source = \"pgdrill\"").expect("pgdrill"), None);
        let p = parse(
            "source = \"pgbackrest\"\ntarget_time = \"2026-11-21T02:00:00Z\"\n[pgbackrest]\nstanza = \"main\"\noptions = { repo1-path = \"/r\" }\n",
        )
        .expect("ok")
        .expect("physical");
        assert_eq!(p.source.kind(), "pgbackrest");
        assert!(p.target_time.is_some());
        assert_eq!(p.user, "postgres");
        let p = parse(
            "source = \"barman-cloud\"\n[barman_cloud]\nurl = \"s3://b/p\"\nserver_name = \"pg\"\n",
        )
        .expect("ok")
        .expect("physical");
        assert_eq!(p.source.kind(), "barman-cloud");
        let p = parse("source = \"command\"\n[command]\nrun = [\"/bin/fetch\"]\n")
            .expect("ok")
            .expect("physical");
        assert_eq!(p.source.kind(), "command");
    }

    #[test]
    fn mistakes_are_exit_2_naming_the_key() {
        for (text, key) in [
            ("source = \"tape\"", "source"),
            ("source = \"pgbackrest\"", "[database.drill.pgbackrest]"),
            ("source = \"pgbackrest\"\n[pgbackrest]\nstanza = \"m\"\nrepo = 1\n", "pgbackrest"),
            ("source = \"barman-cloud\"\n[barman_cloud]\nurl = \"bucket\"\nserver_name = \"pg\"\n", "barman_cloud.url"),
            ("source = \"command\"\n[command]\nrun = []\n", "command.run"),
            ("source = \"command\"\ntarget_time = \"2026-11-21T02:00:00Z\"\n[command]\nrun = [\"x\"]\n", "target_time"),
            ("source = \"pgbackrest\"\ntarget_time = \"yesterday\"\n[pgbackrest]\nstanza = \"m\"\n", "target_time"),
            ("source = \"pgbackrest\"\nrecovery_timeout_seconds = 0\n[pgbackrest]\nstanza = \"m\"\n", "recovery_timeout_seconds"),
            ("source = \"pgbackrest\"\n[pgbackrest]\nstanza = \"m\"\n[command]\nrun = [\"x\"]\n", "command"),
            ("target_time = \"2026-11-21T02:00:00Z\"", "target_time"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.exit_code(), 2, "{text}");
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }
}
