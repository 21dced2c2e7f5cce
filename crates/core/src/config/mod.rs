//! Settings: `pgdrill.toml`, then `PGDRILL_*` environment variables, then flags (applied by
//! the CLI). Loading is a pure function of (file text, environment) so it is tested without
//! touching the process environment.

use crate::ids::DbName;
use crate::{Error, Result};
use pgdrill_pg::{ConnSpec, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod typed;

pub use crate::env::{interpolate, named_env, Env};
pub use typed::{
    parse_listen, DrillSettings, Schedules, ServeSettings, DEFAULT_PRUNE, DEFAULT_STATUS,
};

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

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub policy_file: Option<String>,
    #[serde(default)]
    pub protected_targets: Vec<String>,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub backup: BackupSection,
    #[serde(default)]
    pub encryption: EncryptionSection,
    #[serde(default)]
    pub compression: CompressionSection,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub restore: RestoreSection,
    #[serde(default)]
    pub retention: crate::retention::RetentionSection,
    #[serde(default)]
    pub alerts: crate::alert::AlertsSection,
    #[serde(default)]
    pub schedule: ScheduleSection,
    #[serde(default)]
    pub serve: ServeSection,
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabaseSection>,
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<crate::mirror::MirrorSection>,
}

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

/// `[schedule]`: when `pgdrill serve` runs each job. Values are `every <N>s|m|h|d`, a 5-field
/// cron expression (with `DOW#n`), `first_sunday` or `off` ([`crate::schedule`]); they are
/// checked at config load, so every command refuses an invalid one. `backup` defaults to the policy's `logical_export_frequency_minutes`, `drill` to its
/// `monthly_restore_day`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    pub backup: Option<String>,
    pub drill: Option<String>,
    pub prune: Option<String>,
    pub status: Option<String>,
    /// Hook for `mirror` (DESIGN.md §7); a build without it refuses a mirror schedule.
    pub mirror: Option<String>,
    /// IANA time zone the cron expressions are read in (default UTC).
    pub timezone: Option<String>,
    /// Each run starts up to this many seconds late, at random (spreads hosts apart).
    pub jitter_seconds: Option<u64>,
}

/// `[serve]`: the daemon's HTTP endpoint and shutdown.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// Address to listen on (default 127.0.0.1:9187).
    pub listen: Option<String>,
    /// Environment variable holding a bearer token every request but /healthz must carry.
    pub bearer_token_env: Option<String>,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password_env: Option<String>,
    /// How long SIGTERM waits for a running job before aborting it (default 60).
    pub shutdown_grace_seconds: Option<u64>,
}

/// Policy keys, the same names as the JSON policy file of seed 000.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    pub rpo_minutes: Option<u64>,
    pub rto_minutes: Option<u64>,
    pub retention_days: Option<u64>,
    pub logical_export_frequency_minutes: Option<u64>,
    pub monthly_restore_day: Option<String>,
    pub freshness_alert_minutes: Option<u64>,
    /// Drill SLO: a passing drill within this many days (default: this calendar month).
    pub drill_max_age_days: Option<u64>,
    /// Keys pgdrill does not use yet are kept and recorded in manifests.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Policy {
    /// `other`'s set keys win.
    fn overlay(mut self, other: &Policy) -> Policy {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            rpo_minutes,
            rto_minutes,
            retention_days,
            logical_export_frequency_minutes,
            monthly_restore_day,
            freshness_alert_minutes,
            drill_max_age_days
        );
        for (k, v) in &other.extra {
            self.extra.insert(k.clone(), v.clone());
        }
        self
    }

    /// Backup freshness threshold: explicit, else the export frequency plus 2 h, else 8 h.
    pub fn freshness_minutes(&self) -> u64 {
        self.freshness_alert_minutes.unwrap_or_else(|| {
            self.logical_export_frequency_minutes
                .map(|f| f + 120)
                .unwrap_or(480)
        })
    }
}

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
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub name: DbName,
    pub source: Option<SourceRef>,
    pub pg_dump_args: Vec<String>,
    pub globals: bool,
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
            drill: toml::Table::new(),
            drill_settings: DrillSettings::default(),
            audit: None,
        }
    }

    /// The source connection; fails (exit 2) when it is not configured or its variable unset.
    pub fn source_spec(&self, env: &Env) -> Result<ConnSpec> {
        let env_vec: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let url = match &self.source {
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

/// Settings after file, environment and flags, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The store, parsed at load (`[store] url`, else `PGDRILL_STORE`; `--store` overrides).
    pub store_url: Option<pgdrill_store::StoreLocation>,
    pub store_options: pgdrill_store::StoreOptions,
    pub part_size: usize,
    pub max_in_flight: usize,
    /// `[backup] lock_wait_timeout_seconds`.
    pub lock_wait_timeout: std::time::Duration,
    pub recipients: Vec<String>,
    pub passphrase_env: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub compression_level: i32,
    pub compression_threads: u32,
    pub policy: Policy,
    pub protected_targets: Vec<crate::protect::ProtectedTarget>,
    pub restore: RestoreSection,
    /// `[retention]` with the policy's `retention_days` folded in.
    pub retention: crate::retention::RetentionPolicy,
    pub alerts: crate::alert::AlertsSection,
    /// `[schedule]` parsed, with its defaults from the policy.
    pub schedule: Schedules,
    pub serve: ServeSettings,
    pub databases: Vec<DatabaseSettings>,
    /// `[[mirror]]` entries (uploads buckets), validated; relative folders resolved.
    pub mirrors: Vec<crate::mirror::MirrorSection>,
    /// Where relative paths in the config are resolved.
    pub base_dir: PathBuf,
}

/// Policy durations are positive: `rpo_minutes = 0` (or a negative number) would make every
/// check fail, or mean nothing. `monthly_restore_day` is a schedule (the drill's default).
fn check_policy(p: &Policy, origin: &str) -> Result<()> {
    let keys = [
        ("rpo_minutes", p.rpo_minutes),
        ("rto_minutes", p.rto_minutes),
        ("retention_days", p.retention_days),
        (
            "logical_export_frequency_minutes",
            p.logical_export_frequency_minutes,
        ),
        ("freshness_alert_minutes", p.freshness_alert_minutes),
        ("drill_max_age_days", p.drill_max_age_days),
    ];
    for (key, v) in keys {
        if v == Some(0) {
            return Err(Error::Invalid(format!(
                "{origin} {key} = 0 is not a usable value: set it to 1 or more, or remove it"
            )));
        }
    }
    if let Some(day) = &p.monthly_restore_day {
        crate::schedule::Schedule::parse(day).map_err(|e| {
            Error::Invalid(format!(
                "{origin} monthly_restore_day = {day:?} is not a schedule ({e}): write it like \"first_sunday\" or \"0 4 1 * *\""
            ))
        })?;
    }
    Ok(())
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

impl Settings {
    /// Loads settings from an optional config file text and the environment.
    pub fn load(text: Option<&str>, origin: &str, base_dir: &Path, env: &Env) -> Result<Settings> {
        let mut value: toml::Table = match text {
            Some(t) => t.parse::<toml::Table>().map_err(|e| {
                Error::Invalid(format!(
                    "{origin} is not valid TOML: {}",
                    one_line(&e.to_string())
                ))
            })?,
            None => toml::Table::new(),
        };
        interpolate_table(&mut value, env, "")?;
        let applied = overlay_env(&mut value, env);
        let file: FileConfig =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let msg = one_line(&e.to_string());
                    let from_env = applied
                        .iter()
                        .find(|(key, _)| msg.contains(&format!("`{key}`")))
                        .map(|(_, var)| {
                            format!(
                            " (set by the environment variable {var}: unset it or fix its name)"
                        )
                        })
                        .unwrap_or_default();
                    // `integer `-5`, expected u64`: say what is wanted.
                    let hint = if msg.contains("invalid value: integer `-") {
                        " (it cannot be negative: use 1 or more)"
                    } else {
                        ""
                    };
                    Error::Invalid(format!("{origin}: {msg}{hint}{from_env}"))
                })?;
        Settings::from_file(file, base_dir, env)
    }

    fn from_file(file: FileConfig, base_dir: &Path, env: &Env) -> Result<Settings> {
        let mut policy = Policy::default();
        if let Some(pf) = &file.policy_file {
            let path = base_dir.join(pf);
            policy = read_policy_file(&path)?;
            check_policy(&policy, &format!("policy_file {}:", path.display()))?;
        }
        check_policy(&file.policy, "[policy]")?;
        policy = policy.overlay(&file.policy);
        let schedule = Schedules::from_section(&file.schedule, &policy)?;
        let retention = crate::retention::RetentionPolicy::from_section(
            &file.retention,
            policy.retention_days,
        )?;
        let serve = ServeSettings::from_section(&file.serve)?;
        file.alerts.check()?;
        let store_options = store_options(&file.store, env)?;
        let level = file.compression.level.unwrap_or(2);
        if !(1..=19).contains(&level) {
            return Err(Error::Invalid(format!(
                "compression.level {level} is out of range: use 1 (fastest) to 19 (smallest)"
            )));
        }
        if let Some(m) = &file.restore.maintenance_work_mem {
            check_memory_size(m)?;
        }
        let mut databases = Vec::new();
        for (i, d) in file.databases.iter().enumerate() {
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
        Ok(Settings {
            store_url: store_location(&file.store, base_dir, env)?,
            store_options,
            part_size: (file.store.part_size_mib.unwrap_or(16).clamp(5, 4096) as usize) << 20,
            max_in_flight: file.store.max_in_flight.unwrap_or(4).clamp(1, 64) as usize,
            lock_wait_timeout: lock_wait_timeout(&file.backup)?,
            recipients: file.encryption.recipients.clone(),
            passphrase_env: file.encryption.passphrase_env.clone(),
            identity_files: file
                .encryption
                .identity_file
                .iter()
                .map(|p| base_dir.join(p))
                .collect(),
            compression_level: level,
            compression_threads: file.compression.threads.unwrap_or(0),
            policy,
            protected_targets: crate::protect::ProtectedTarget::parse_all(&file.protected_targets)?,
            restore: file.restore.clone(),
            retention,
            alerts: file.alerts.clone(),
            schedule,
            serve,
            databases,
            mirrors: crate::mirror::config::resolve_sections(&file.mirrors, base_dir)?,
            base_dir: base_dir.to_path_buf(),
        })
    }

    /// The passphrase named by `passphrase_env`, if any; an unset variable is an error.
    pub fn passphrase(&self, env: &Env) -> Result<Option<Secret>> {
        match &self.passphrase_env {
            None => Ok(None),
            Some(var) => match env.get(var).filter(|v| !v.is_empty()) {
                Some(v) => Ok(Some(Secret::new(v.clone()))),
                None => Err(Error::Invalid(format!(
                    "the passphrase variable {var} (named by --passphrase-env or passphrase_env) is not set: export it, or remove passphrase_env"
                ))),
            },
        }
    }

    /// The databases a command acts on: the one named, or all of them.
    pub fn select(&self, name: Option<&str>) -> Result<Vec<&DatabaseSettings>> {
        match name {
            Some(n) => {
                let found: Vec<_> = self.databases.iter().filter(|d| d.name.as_str() == n).collect();
                if found.is_empty() {
                    let known: Vec<_> = self.databases.iter().map(|d| d.name.as_str()).collect();
                    return Err(Error::Invalid(format!(
                        "no database named {n} is configured (known: {}); check --name",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    )));
                }
                Ok(found)
            }
            None if self.databases.is_empty() => Err(Error::Invalid(
                "no database is configured: pass --source URL (or set PGDRILL_SOURCE_URL), or add a [[database]] entry to pgdrill.toml".into(),
            )),
            None => Ok(self.databases.iter().collect()),
        }
    }

    /// Adds or replaces the database given on the command line (`--source`, `--name`);
    /// returns its name.
    pub fn set_source_database(
        &mut self,
        url: Secret,
        name: Option<&str>,
        env: &Env,
    ) -> Result<String> {
        let env_vec: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let spec = ConnSpec::parse_with_env(url.expose(), &env_vec)?;
        let name = DbName::parse(name.unwrap_or(&spec.dbname)).map_err(Error::Invalid)?;
        let picked = name.to_string();
        if let Some(d) = self.databases.iter_mut().find(|d| d.name == name) {
            d.source = Some(SourceRef::Url(url));
        } else {
            self.databases.push(DatabaseSettings {
                name,
                source: Some(SourceRef::Url(url)),
                pg_dump_args: Vec::new(),
                globals: false,
                drill: toml::Table::new(),
                drill_settings: DrillSettings::default(),
                audit: None,
            });
        }
        Ok(picked)
    }
}

fn store_options(s: &StoreSection, env: &Env) -> Result<pgdrill_store::StoreOptions> {
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

fn lock_wait_timeout(b: &BackupSection) -> Result<std::time::Duration> {
    match b.lock_wait_timeout_seconds {
        Some(0) => Err(Error::Invalid(
            "[backup] lock_wait_timeout_seconds = 0 would let pg_dump wait forever for a lock: give a number of seconds (default 300)".into(),
        )),
        t => Ok(std::time::Duration::from_secs(
            t.unwrap_or(DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS),
        )),
    }
}

fn database_settings(d: &DatabaseSection, index: usize, env: &Env) -> Result<DatabaseSettings> {
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
                name: DbName::parse("x").map_err(Error::Invalid)?,
                source: source.clone(),
                pg_dump_args: vec![],
                globals: false,
                drill: toml::Table::new(),
                drill_settings: DrillSettings::default(),
                audit: None,
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
        drill: d.drill.clone(),
        audit: d.audit.clone(),
    })
}

/// `[store] url` (a relative folder there is relative to the config file's folder), else
/// `PGDRILL_STORE`, parsed: an unusable URL fails the load (exit 2).
fn store_location(
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

/// Reads the seed-000 style JSON policy file (same key names).
pub fn read_policy_file(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read policy_file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "policy_file {} is not a valid policy ({e})",
            path.display()
        ))
    })
}

/// Replaces `${VAR}` in every string; `$${` stays a literal `${`.
fn interpolate_table(t: &mut toml::Table, env: &Env, path: &str) -> Result<()> {
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

fn interpolate_value(v: &mut toml::Value, env: &Env, path: &str) -> Result<()> {
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
fn overlay_env(t: &mut toml::Table, env: &Env) -> Vec<(String, String)> {
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

fn env_value(key: &str, raw: &str) -> toml::Value {
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

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from `text` alone (no environment).
    fn load(text: &str) -> Result<Settings> {
        Settings::load(Some(text), "t.toml", Path::new("/"), &Env::new())
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_and_interpolates() {
        let text = r#"
            [store]
            url = "s3://${BUCKET}/pgdrill"
            region = "eu-west-1"
            [policy]
            rpo_minutes = 60
            [[database]]
            name = "app"
            url_env = "PROD_DIRECT_URL"
        "#;
        let e = env(&[
            ("BUCKET", "b1"),
            ("PGDRILL_STORE_REGION", "auto"),
            ("PGDRILL_POLICY_RPO_MINUTES", "30"),
            ("PROD_DIRECT_URL", "postgres://u:pw@h/db"),
        ]);
        let s = Settings::load(Some(text), "t.toml", Path::new("/"), &e).expect("load");
        assert_eq!(
            s.store_url.as_ref().map(ToString::to_string).as_deref(),
            Some("s3://b1/pgdrill")
        );
        assert_eq!(s.store_options.region.as_deref(), Some("auto"));
        assert_eq!(s.policy.rpo_minutes, Some(30));
        let spec = s.databases[0].source_spec(&e).expect("spec");
        assert_eq!(spec.dbname, "db");
    }

    #[test]
    fn policy_file_of_seed_000_is_accepted_and_overlaid() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("ops")).expect("mkdir");
        std::fs::write(
            dir.path().join("ops/ops_backup_policy.json"),
            r#"{"rpo_minutes": 60, "rto_minutes": 240, "retention_days": 30,
                "logical_export_frequency_minutes": 360, "monthly_restore_day": "first_sunday"}"#,
        )
        .expect("write");
        let text = "policy_file = \"ops/ops_backup_policy.json\"\n[policy]\nrto_minutes = 120\n";
        let s = Settings::load(Some(text), "t", dir.path(), &Env::new()).expect("load");
        assert_eq!(s.policy.rpo_minutes, Some(60));
        assert_eq!(s.policy.rto_minutes, Some(120));
        assert_eq!(
            s.policy.monthly_restore_day.as_deref(),
            Some("first_sunday")
        );
        assert_eq!(s.policy.freshness_minutes(), 480);
    }

    #[test]
    fn store_url_is_parsed_at_load() {
        let load = |text: &str, vars: &[(&str, &str)]| {
            Settings::load(Some(text), "t.toml", Path::new("/etc/pgdrill"), &env(vars))
        };
        let s = load("[store]\nurl = \"backups\"\n", &[]).expect("relative folder");
        assert_eq!(
            s.store_url.as_ref().and_then(|l| l.folder()),
            Some(Path::new("/etc/pgdrill/backups"))
        );
        let s = load("", &[("PGDRILL_STORE", "s3://b/p/")]).expect("from the environment");
        assert_eq!(s.store_url.as_ref().and_then(|l| l.prefix()), Some("p"));
        assert!(load("", &[("PGDRILL_STORE", "")])
            .expect("empty")
            .store_url
            .is_none());
        for (text, vars, origin) in [
            ("[store]\nurl = \"gs://b/p\"\n", &[][..], "[store] url"),
            (
                "",
                &[("PGDRILL_STORE", "s3://k:CANARY@b/p")][..],
                "PGDRILL_STORE",
            ),
        ] {
            let e = load(text, vars).expect_err("an unusable store URL");
            let m = e.to_string();
            assert_eq!(e.exit_code(), 2, "{m}");
            assert!(m.starts_with(origin) && m.contains("is not usable"), "{m}");
            assert!(!m.contains("CANARY"), "{m}");
        }
    }

    #[test]
    fn store_timeouts_and_lock_wait_come_from_file_or_environment() {
        use std::time::Duration;
        let s = load("").expect("defaults");
        assert_eq!(s.store_options.timeout, None);
        assert_eq!(s.lock_wait_timeout, Duration::from_secs(300));
        let e = env(&[
            ("PGDRILL_STORE_TIMEOUT_SECONDS", "5"),
            ("PGDRILL_STORE_RETRY_SECONDS", "45"),
            ("PGDRILL_BACKUP_LOCK_WAIT_TIMEOUT_SECONDS", "20"),
        ]);
        let s = Settings::load(None, "environment", Path::new("/"), &e).expect("env");
        assert_eq!(s.store_options.timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.store_options.retry_window, Some(Duration::from_secs(45)));
        assert_eq!(s.lock_wait_timeout, Duration::from_secs(20));
        for bad in [
            "[store]\ntimeout_seconds = 0\n",
            "[backup]\nlock_wait_timeout_seconds = 0\n",
        ] {
            let e = load(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }

    #[test]
    fn bad_config_is_invalid_with_a_named_key() {
        let e = load("[store]\nurll = 1\n").expect_err("unknown key");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("urll"), "{e}");
        let e = load("[store]\nurl = \"${NOPE}\"\n").expect_err("unset var");
        assert!(e.to_string().contains("NOPE"));
        let e = load("[compression]\nlevel = 40\n").expect_err("level");
        assert!(e.to_string().contains("compression.level"));
        // Caught when the config is read (doctor, serve), not when a restore starts.
        let e = load("[restore]\nmaintenance_work_mem = \"1GB -c fsync=off\"\n")
            .expect_err("maintenance_work_mem");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("maintenance_work_mem"), "{e}");
        load("[restore]\nmaintenance_work_mem = \"512MB\"\n").expect("a memory size");
    }

    #[test]
    fn several_databases_and_name_from_url() {
        let text = "[[database]]\nurl_env = \"A\"\n[[database]]\nname = \"b\"\nurl_env = \"B\"\n";
        let e = env(&[("A", "postgres://u@h/alpha"), ("B", "postgres://u@h/beta")]);
        let s = Settings::load(Some(text), "t", Path::new("/"), &e).expect("load");
        let names: Vec<_> = s
            .select(None)
            .expect("all")
            .iter()
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(names, vec!["alpha", "b"]);
        assert_eq!(s.select(Some("b")).expect("b").len(), 1);
        assert!(s.select(Some("zzz")).is_err());
    }

    #[test]
    fn an_unknown_key_from_the_environment_names_the_variable() {
        let e = Settings::load(
            None,
            "environment",
            Path::new("/"),
            &env(&[("PGDRILL_STORE_URLL", "x")]),
        )
        .expect_err("typo");
        assert!(e.to_string().contains("PGDRILL_STORE_URLL"), "{e}");
        // Variables with their own meaning are not config keys.
        Settings::load(
            None,
            "environment",
            Path::new("/"),
            &env(&[("PGDRILL_IDENTITY", "/k")]),
        )
        .expect("identity");
    }

    #[test]
    fn alerts_are_checked_at_load_but_their_variables_only_when_sent() {
        let e = load(
            "[alerts.smtp]\nhost = \"mail.example.com\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\ntls = true\nstarttls = true\n",
        )
        .expect_err("tls and starttls");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("alerts.smtp"), "{e}");
        // A variable a cron job's environment lacks does not stop `list` or `status`.
        load("[alerts]\nslack_webhook_env = \"UNSET_SLACK_URL\"\n").expect("loads");
    }

    #[test]
    fn literal_dollar_brace_is_kept() {
        assert_eq!(
            interpolate("a$${X}b$c", &Env::new(), "k").expect("ok"),
            "a${X}b$c"
        );
    }
}
