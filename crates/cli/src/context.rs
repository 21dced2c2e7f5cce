//! The edge: config file + environment + flags, validated once into what commands use.

use crate::ui::Ui;
use pgdrill_core::cancel::Cancel;
use pgdrill_core::config::{Env, Settings};
use pgdrill_core::crypto::{DecryptionKeys, EncryptionKeys};
use pgdrill_core::fleet::{self, Fleet};
use pgdrill_core::ids::DbName;
use pgdrill_core::jobs::{Events, JobEnv};
use pgdrill_core::progress::Progress;
use pgdrill_core::{catalog, stores, Error, Result};
use pgdrill_pg::{PgTools, Secret};
use pgdrill_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Ctx {
    pub settings: Settings,
    pub env: Env,
    pub ui: Ui,
    pub cancel: Cancel,
    pub config_path: Option<PathBuf>,
    pub name: Option<String>,
    /// What `[[server]]` discovery found (empty until [`Ctx::discover`] ran).
    pub fleet: Fleet,
    /// `--from-store NAME` (checked against the configured stores when a command reads).
    pub from_store: Option<String>,
}

/// The flags that override the settings (`--config`, `--store`, `--source`, `--name`,
/// `--recipient`, `--passphrase-env`, `--identity`), as `main` took them from the parsed
/// command line (this module does not depend on the clap definitions).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub store: Option<String>,
    pub source: Option<String>,
    pub name: Option<String>,
    pub recipients: Vec<String>,
    pub passphrase_env: Option<String>,
    pub identity: Option<PathBuf>,
    /// `--from-store NAME`: read commands read from that configured store only.
    pub from_store: Option<String>,
}

impl Ctx {
    pub fn load(flags: &Flags, ui: Ui, cancel: Cancel) -> Result<Ctx> {
        let env: Env = std::env::vars().collect();
        let config_path = match &flags.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("pgdrill.toml")).filter(|p| p.exists()),
        };
        let (text, origin, base_dir) = match &config_path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Error::Invalid(format!("cannot read the config file {}: {e}", p.display()))
                })?;
                let base = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (Some(text), p.display().to_string(), base)
            }
            None => (None, "environment".to_string(), PathBuf::from(".")),
        };
        let mut settings = Settings::load(text.as_deref(), &origin, &base_dir, &env)?;
        if let Some(s) = &flags.store {
            settings.set_store(
                s.parse()
                    .map_err(|e| Error::Invalid(format!("--store: {e}")))?,
            );
        }
        let source = flags.source.clone().or_else(|| {
            env.get("PGDRILL_SOURCE_URL")
                .cloned()
                .filter(|s| !s.is_empty())
        });
        // An explicit `--source` means that database alone, even where a pgdrill.toml
        // configures others.
        let mut name = flags.name.clone();
        if let Some(url) = source {
            let picked =
                settings.set_source_database(Secret::new(url), flags.name.as_deref(), &env)?;
            if flags.source.is_some() {
                name = Some(picked);
            }
        }
        if !flags.recipients.is_empty() {
            settings.recipients = flags.recipients.clone();
        }
        if let Some(v) = &flags.passphrase_env {
            settings.passphrase_env = Some(v.clone());
        }
        if let Some(i) = &flags.identity {
            settings.identity_files = vec![i.clone()];
        }
        if settings.identity_files.is_empty() {
            if let Some(i) = env.get("PGDRILL_IDENTITY").filter(|s| !s.is_empty()) {
                settings.identity_files = vec![PathBuf::from(i)];
            }
        }
        Ok(Ctx {
            settings,
            env,
            ui,
            cancel,
            config_path,
            name,
            fleet: Fleet::default(),
            from_store: flags.from_store.clone(),
        })
    }

    /// Discovers the databases of every `[[server]]` (they join the configured databases)
    /// and, when a store is configured, the ones dropped from their server. A server that
    /// cannot be listed is warned about here and reported by the command.
    pub async fn discover(&mut self) -> Result<()> {
        if self.settings.servers.is_empty() {
            return Ok(());
        }
        let store = self.store().ok();
        self.fleet = fleet::discover(&mut self.settings, &self.env, store.as_ref()).await?;
        for s in &self.fleet.servers {
            if let Some(e) = &s.error {
                self.ui.warn(e);
            }
        }
        Ok(())
    }

    /// The context `serve` runs one job in: the same settings, one database (`--name`), and
    /// the job's own cancel token (fired when the shutdown grace is over).
    pub fn for_job(&self, name: Option<&str>, cancel: Cancel) -> Ctx {
        Ctx {
            settings: self.settings.clone(),
            env: self.env.clone(),
            ui: self.ui,
            cancel,
            config_path: self.config_path.clone(),
            name: name.map(str::to_string),
            fleet: self.fleet.clone(),
            from_store: None,
        }
    }

    /// What a core job runs with: this context's store, settings, environment map, cancel
    /// token, and the terminal for its messages.
    pub fn job_env<'a>(&'a self, store: &'a Store) -> JobEnv<'a> {
        JobEnv {
            store,
            settings: &self.settings,
            env: &self.env,
            cancel: self.cancel.clone(),
            events: &self.ui,
            slot: None,
        }
    }

    /// The primary store (the first configured).
    pub fn store(&self) -> Result<Store> {
        let location = self.settings.store_url.as_ref().ok_or_else(no_store)?;
        self.open_store(location, &self.settings.store_options)
    }

    /// Every configured store, primary first, with its settings (name, retention), opened
    /// (used by the several-stores commands: backup fan-out, copy, fallback).
    /// Opening does not reach the store, so an unreachable one is found by its first request.
    pub fn stores(&self) -> Result<Vec<(pgdrill_core::config::StoreSettings, Store)>> {
        if self.settings.stores.is_empty() {
            return Err(no_store());
        }
        self.settings
            .stores
            .iter()
            .map(|s| Ok((s.clone(), self.open_store(&s.location, &s.options)?)))
            .collect()
    }

    /// The stores a read command may read from: every configured one, or `--from-store`'s
    /// alone (exit 2 naming the stores when it names none of them).
    pub fn read_stores(&self) -> Result<Vec<(pgdrill_core::config::StoreSettings, Store)>> {
        let all = self.stores()?;
        let picked = stores::select(&all, self.from_store.as_deref())?.to_vec();
        Ok(picked)
    }

    /// Resolves `<ID|latest>` (or `--at`) of `db` over `stores` ([`stores::resolve`]) and
    /// says on stderr which store it reads from (when several are configured) and why it
    /// passed over the ones before it.
    pub async fn source<'a>(
        &self,
        stores: &'a stores::Stores,
        db: &DbName,
        selector: &str,
        at: Option<&str>,
    ) -> Result<stores::Source<'a>> {
        let src = match at {
            Some(at) => stores::resolve_at(stores, db, at).await?,
            None => stores::resolve(stores, db, selector).await?,
        };
        for line in &src.passed_over {
            self.ui
                .warn(format!("{line}; reading from store {} instead", src.name));
        }
        if self.settings.stores.len() > 1 {
            self.ui.info(format!(
                "reading backup {} of {db} from store {}",
                src.resolved.manifest.backup_id, src.name
            ));
        }
        Ok(src)
    }

    /// [`Ctx::one_database`] asked of each store in turn until one answers (a store that is
    /// down does not hide the database).
    pub async fn one_database_of(&self, stores: &stores::Stores) -> Result<DbName> {
        let mut last = None;
        for (_, store) in stores {
            match self.one_database(store).await {
                Ok(db) => return Ok(db),
                Err(e @ Error::Store { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(no_store))
    }

    /// Every configured store opened, with its name and transfer settings, primary first (a
    /// backup's targets); the primary is `primary` itself (the job's store), so that both
    /// share one view of the store's health (a store found down fails fast for every caller).
    pub fn named_stores(&self, primary: &Store) -> Result<Vec<pgdrill_core::backup::TargetStore>> {
        let mut stores: Vec<pgdrill_core::backup::TargetStore> = self
            .stores()?
            .into_iter()
            .map(|(s, store)| pgdrill_core::backup::TargetStore {
                name: s.name,
                store,
                part_size: s.part_size,
                max_in_flight: s.max_in_flight,
            })
            .collect();
        if let Some(first) = stores.first_mut() {
            first.store = primary.clone();
        }
        Ok(stores)
    }

    fn open_store(
        &self,
        location: &pgdrill_store::StoreLocation,
        options: &pgdrill_store::StoreOptions,
    ) -> Result<Store> {
        let store = location.open(options)?;
        // Tests of stores that acknowledge writes they lose; release builds never do this.
        #[cfg(debug_assertions)]
        if let Some(suffix) = self
            .env
            .get("PGDRILL_TEST_DROP_PUT")
            .filter(|s| !s.is_empty())
        {
            return Ok(store.with_dropped_puts(suffix));
        }
        Ok(store)
    }

    pub fn encryption_keys(&self) -> Result<EncryptionKeys> {
        EncryptionKeys::new(
            &self.settings.recipients,
            self.settings.passphrase(&self.env)?,
        )
    }

    pub fn decryption_keys(&self) -> Result<Arc<DecryptionKeys>> {
        // An unset passphrase variable only matters for passphrase-encrypted backups, where
        // decryption then says which variable to set.
        let passphrase = self.settings.passphrase(&self.env);
        let unset_var = passphrase
            .is_err()
            .then(|| self.settings.passphrase_env.clone())
            .flatten();
        for f in &self.settings.identity_files {
            if let Some(w) = exposed_identity_file(f) {
                self.ui.warn(w);
            }
        }
        Ok(Arc::new(
            DecryptionKeys::new(
                &self.settings.identity_files,
                passphrase.unwrap_or_default(),
            )?
            .with_unset_passphrase_var(unset_var),
        ))
    }

    pub fn tools(&self) -> PgTools {
        PgTools::discover()
    }

    /// The one database a read command is about: --name, the only configured one, or the
    /// only one found in the store.
    pub async fn one_database(&self, store: &Store) -> Result<DbName> {
        if let Some(n) = &self.name {
            return DbName::parse(n).map_err(Error::Invalid);
        }
        if self.settings.databases.len() == 1 {
            return Ok(self.settings.databases[0].name.clone());
        }
        let found = if self.settings.databases.is_empty() {
            catalog::databases(store).await?
        } else {
            self.settings
                .databases
                .iter()
                .map(|d| d.name.clone())
                .collect()
        };
        match found.len() {
            1 => Ok(found[0].clone()),
            0 => Err(Error::Invalid(format!(
                "no database has backups in {}: run `pgdrill backup` first or check --store",
                store.display()
            ))),
            _ => Err(Error::Invalid(format!(
                "several databases are known ({}): pick one with --name",
                found
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The databases `list` shows: --name, the configured ones (with the servers' databases,
    /// dropped ones included: their backups are still there), or all found in the store.
    pub async fn databases_to_list(&self, store: &Store) -> Result<Vec<DbName>> {
        if let Some(n) = &self.name {
            return Ok(vec![DbName::parse(n).map_err(Error::Invalid)?]);
        }
        if !self.settings.databases.is_empty() || !self.fleet.servers.is_empty() {
            let mut out: Vec<DbName> = self
                .settings
                .databases
                .iter()
                .map(|d| d.name.clone())
                .collect();
            for s in &self.fleet.servers {
                for d in s.databases.iter().chain(&s.dropped).chain(&s.excluded) {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
            }
            return Ok(out);
        }
        catalog::databases(store).await
    }
}

/// A warning when an identity file (a private key) can be read by group or others, as ssh
/// gives for private keys.
pub fn exposed_identity_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the identity file {} is accessible by group or others (mode {mode:03o}): anyone who can read it can decrypt every backup; run chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

/// A job's messages go to stderr, its progress to the terminal's progress line.
impl Events for Ui {
    fn info(&self, msg: &str) {
        Ui::info(self, msg)
    }
    fn warn(&self, msg: &str) {
        Ui::warn(self, msg)
    }
    fn debug(&self, msg: &str) {
        Ui::debug(self, msg)
    }
    fn progress(&self, progress: Arc<Progress>) -> Box<dyn std::any::Any + Send> {
        Box::new(Ui::progress(self, progress))
    }
}

fn no_store() -> Error {
    Error::Invalid(
        "no store is configured: pass --store URL, set PGDRILL_STORE_URL, or set [store] url in pgdrill.toml".into(),
    )
}
