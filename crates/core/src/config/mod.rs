//! Settings: `pgdrill.toml`, then `PGDRILL_*` environment variables, then flags (applied by
//! the CLI). Loading is a pure function of (file text, environment) so it is tested without
//! touching the process environment.

use crate::ids::DbName;
use crate::{Error, Result};
use pgdrill_pg::{ConnSpec, Secret};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod backup;
mod database;
mod drill_source;
mod overlay;
mod policy;
mod restore;
mod schedule;
mod server;
mod store;

pub use crate::env::{interpolate, named_env, Env};
pub use backup::{
    BackupSection, CompressionSection, EncryptionSection, DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS,
    DEFAULT_SPOOL_WINDOW,
};
pub use database::{DatabaseSection, DatabaseSettings, DrillSettings, SourceRef};
pub use drill_source::{
    BarmanCloudSource, CommandSource, PgBackRestSource, PhysicalDrill, PhysicalSource,
    PHYSICAL_KEYS,
};
pub use policy::{read_policy_file, Policy};
pub use restore::{MemorySize, RestoreSection, RestoreSettings};
pub use schedule::{
    parse_listen, ScheduleSection, Schedules, ServeSection, ServeSettings, DEFAULT_PRUNE,
    DEFAULT_STATUS,
};
pub use server::{
    glob, Coverage, DrillSection, OverrideSection, ServerSection, ServerSettings,
    PLATFORM_DATABASES,
};
pub use store::{check_store_name, StoreSection, StoreSettings, DEFAULT_STORE_NAME};

use backup::{backup_jobs, compression_level, lock_wait_timeout, spool_window};
use database::all_database_settings;
use overlay::{interpolate_table, one_line, overlay_env};
use policy::effective_policy;
use server::all_server_settings;
use store::primary_transfer;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub policy_file: Option<String>,
    #[serde(default)]
    pub protected_targets: Vec<String>,
    #[serde(default)]
    pub store: StoreSection,
    /// `[[store]]` entries (taken out of the table before the rest is read, since `store`
    /// is either one table or an array of them).
    #[serde(skip)]
    pub stores: Vec<StoreSection>,
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
    /// `[[server]]`: every database of a server (discovered by the fleet module).
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerSection>,
    /// `[drill]`: drill coverage (`coverage_days`, `max_concurrent`).
    #[serde(default)]
    pub drill: DrillSection,
}

/// Settings after file, environment and flags, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The primary store (the first of `stores`), parsed at load (`[store] url`, else
    /// `PGDRILL_STORE`; `--store` overrides).
    pub store_url: Option<pgdrill_store::StoreLocation>,
    pub store_options: pgdrill_store::StoreOptions,
    pub part_size: usize,
    pub max_in_flight: usize,
    /// Every configured store, primary first (`[[store]]`, or the one `[store]` named
    /// "default"); empty when none is configured. `--store URL` replaces them all.
    pub stores: Vec<StoreSettings>,
    /// `[backup] lock_wait_timeout_seconds`.
    pub lock_wait_timeout: std::time::Duration,
    /// `[backup] jobs` (1: the single custom-format stream).
    pub backup_jobs: u32,
    /// `[backup] spool_dir`, resolved against the config's folder.
    pub backup_spool_dir: Option<PathBuf>,
    /// `[backup] spool_window_mib`, in bytes.
    pub backup_spool_window: u64,
    pub recipients: Vec<String>,
    pub passphrase_env: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub compression_level: i32,
    pub compression_threads: u32,
    pub policy: Policy,
    pub protected_targets: Vec<crate::protect::ProtectedTarget>,
    /// `[restore]`, typed.
    pub restore: RestoreSettings,
    /// `[retention]` with the policy's `retention_days` folded in.
    pub retention: crate::retention::RetentionPolicy,
    pub alerts: crate::alert::AlertsSection,
    /// `[schedule]` parsed, with its defaults from the policy.
    pub schedule: Schedules,
    pub serve: ServeSettings,
    pub databases: Vec<DatabaseSettings>,
    /// `[[server]]` entries; their databases join `databases` once discovered
    /// (the fleet module's `discover`).
    pub servers: Vec<ServerSettings>,
    /// `[drill] coverage_days` / `max_concurrent`, when set.
    pub coverage: Option<Coverage>,
    /// `[[mirror]]` entries (uploads buckets), validated; relative folders resolved.
    pub mirrors: Vec<crate::mirror::MirrorSection>,
    /// Where relative paths in the config are resolved.
    pub base_dir: PathBuf,
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
        let many = match value.get("store") {
            Some(toml::Value::Array(_)) => match value.remove("store") {
                Some(toml::Value::Array(entries)) => entries,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let applied = overlay_env(&mut value, env);
        let mut stores = Vec::new();
        for (i, entry) in many.into_iter().enumerate() {
            let s: StoreSection = entry.try_into().map_err(|e: toml::de::Error| {
                Error::Invalid(format!(
                    "{origin}: [[store]] entry {}: {}",
                    i + 1,
                    one_line(&e.to_string())
                ))
            })?;
            stores.push(s);
        }
        let mut file: FileConfig =
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
        file.stores = stores;
        Settings::from_file(file, base_dir, env)
    }

    /// The file's sections validated into settings. They are checked in this order, so that
    /// of several mistakes the same one is reported first; each check lives with its section.
    fn from_file(file: FileConfig, base_dir: &Path, env: &Env) -> Result<Settings> {
        let policy = effective_policy(file.policy_file.as_deref(), &file.policy, base_dir)?;
        let schedule = Schedules::from_section(&file.schedule, &policy)?;
        let retention = crate::retention::RetentionPolicy::from_section(
            &file.retention,
            policy.retention_days,
        )?;
        let serve = ServeSettings::from_section(&file.serve)?;
        file.alerts.check()?;
        let stores = store::stores(
            &file.store,
            &file.stores,
            base_dir,
            env,
            policy.retention_days,
        )?;
        let primary = primary_transfer(&stores, &file.store, env)?;
        let compression_level = compression_level(&file.compression)?;
        let restore = RestoreSettings::from_section(&file.restore)?;
        let databases = all_database_settings(&file.databases, env)?;
        let servers = all_server_settings(&file.servers)?;
        Ok(Settings {
            store_url: stores.first().map(|p| p.location.clone()),
            store_options: primary.options,
            part_size: primary.part_size,
            max_in_flight: primary.max_in_flight,
            stores,
            lock_wait_timeout: lock_wait_timeout(&file.backup)?,
            backup_jobs: backup_jobs(&file.backup)?,
            backup_spool_dir: file.backup.spool_dir.as_ref().map(|d| base_dir.join(d)),
            backup_spool_window: spool_window(&file.backup),
            recipients: file.encryption.recipients.clone(),
            passphrase_env: file.encryption.passphrase_env.clone(),
            identity_files: file
                .encryption
                .identity_file
                .iter()
                .map(|p| base_dir.join(p))
                .collect(),
            compression_level,
            compression_threads: file.compression.threads.unwrap_or(0),
            policy,
            protected_targets: crate::protect::ProtectedTarget::parse_all(&file.protected_targets)?,
            restore,
            retention,
            alerts: file.alerts.clone(),
            schedule,
            serve,
            databases,
            servers,
            coverage: server::coverage(&file.drill)?,
            mirrors: crate::mirror::config::resolve_sections(&file.mirrors, base_dir)?,
            base_dir: base_dir.to_path_buf(),
        })
    }

    /// Replaces every configured store by the one at `location` (`--store URL`), named
    /// "default", keeping the primary's transfer settings.
    pub fn set_store(&mut self, location: pgdrill_store::StoreLocation) {
        let mut one = StoreSettings::from_location(location.clone(), self.store_options.clone());
        one.part_size = self.part_size;
        one.max_in_flight = self.max_in_flight;
        self.stores = vec![one];
        self.store_url = Some(location);
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
        let env_vec = crate::env::pairs(env);
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
                globals_passwords: false,
                server: None,
                drill: toml::Table::new(),
                drill_settings: DrillSettings::default(),
                audit: None,
            });
        }
        Ok(picked)
    }
}

#[cfg(test)]
mod tests;
