//! The drill job: per database, under its lease: the drill (restore, checks, evidence in
//! the store and locally), then the alert (passed, failed, or could not run).

use super::JobEnv;
use crate::alert::EventKind;
use crate::config::DatabaseSettings;
use crate::crypto::DecryptionKeys;
use crate::drill::{self, evidence::DrillResult, DrillJob, DrillOutcome};
use crate::ids::DbName;
use crate::progress::Progress;
use crate::{catalog, Error, Result};
use pgdrill_pg::{ConnSpec, PgTools};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// What to drill, and how.
pub struct DrillInput<'a> {
    /// `--name`: that database alone.
    pub name: Option<&'a str>,
    /// `latest` or a backup id.
    pub selector: &'a str,
    /// `--target`: wins over `[database.drill] target_url_env` and `PGDRILL_TARGET_URL`.
    pub target: Option<&'a str>,
    /// Local evidence folder; with several databases each gets `<dir>/<name>` but the first.
    pub report_dir: Option<PathBuf>,
    pub keep: bool,
    pub keep_on_failure: bool,
    /// `--jobs`: wins over `[database.drill] jobs` and `[restore] jobs`.
    pub jobs: Option<u32>,
    /// `--major`: an upgrade rehearsal into a throwaway cluster of that major.
    pub major: Option<u32>,
    pub keys: Arc<DecryptionKeys>,
    pub tools: &'a PgTools,
    /// The stores the backup may be read from, in order (empty: the job's store alone).
    pub read_from: &'a crate::stores::Stores,
}

/// One database's drill, in the order they ran.
pub enum DrillEntry {
    Ran(Box<DrillOutcome>),
    /// With several databases, one that could not be drilled (no complete backup, a bad
    /// setting) is reported beside the others instead of ending the run.
    CouldNotRun(DbName, Error),
}

pub struct DrillReport {
    pub entries: Vec<DrillEntry>,
}

impl DrillReport {
    pub fn results(&self) -> impl Iterator<Item = &DrillOutcome> {
        self.entries.iter().filter_map(|e| match e {
            DrillEntry::Ran(o) => Some(o.as_ref()),
            DrillEntry::CouldNotRun(..) => None,
        })
    }

    pub fn errors(&self) -> impl Iterator<Item = (&DbName, &Error)> {
        self.entries.iter().filter_map(|e| match e {
            DrillEntry::CouldNotRun(d, e) => Some((d, e)),
            DrillEntry::Ran(_) => None,
        })
    }

    /// The run's exit code: the worst drill's (4 key over 3 integrity over 1 failed); a
    /// database that could not be drilled counts as its error's code when that is 3 or 4,
    /// else as a failed drill.
    pub fn exit_code(&self) -> u8 {
        let mut code = self.results().map(|o| o.exit_code).max().unwrap_or(0);
        for (_, e) in self.errors() {
            let c = e.exit_code();
            code = code.max(if matches!(c, 3 | 4) { c } else { 1 });
        }
        code
    }
}

/// The configured databases (or `--name`), else every database the store holds backups of.
async fn databases(jx: &JobEnv<'_>, name: Option<&str>) -> Result<Vec<DatabaseSettings>> {
    let settings = jx.settings;
    if !settings.databases.is_empty() {
        let all: Vec<DatabaseSettings> = settings.select(name)?.into_iter().cloned().collect();
        return match (&settings.coverage, name) {
            // `[drill] coverage_days`: a run drills the least recently proven ones only.
            (Some(c), None) => crate::fleet::coverage::due(jx.store, all, c.max_concurrent).await,
            _ => Ok(all),
        };
    }
    // A config naming only the store: drill every database found in it.
    let mut found = catalog::databases(jx.store).await?;
    // `--name X` means that database alone, whatever else the store holds.
    if let Some(n) = name {
        if !found.iter().any(|f| f.as_str() == n) {
            let names: Vec<&str> = found.iter().map(|f| f.as_str()).collect();
            return Err(Error::Invalid(format!(
                "{} holds no backups of a database named {n} (it has: {}); check --name",
                jx.store.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        found.retain(|f| f.as_str() == n);
    }
    Ok(found
        .into_iter()
        .map(DatabaseSettings::store_only)
        .collect())
}

pub async fn run(jx: &JobEnv<'_>, input: DrillInput<'_>) -> Result<DrillReport> {
    let databases = databases(jx, input.name).await?;
    if databases.is_empty() {
        return Err(Error::Invalid(format!(
            "no database has backups in {}: run `pgdrill backup` first",
            jx.store.display()
        )));
    }
    let notifier = jx.notifier()?;
    let several = databases.len() > 1;
    let mut report = DrillReport {
        entries: Vec::new(),
    };
    for db in &databases {
        // The target and the lease are checked before the drill: their errors end the run.
        let target = target_for(jx, input.target, db)?;
        let progress = Progress::new();
        let _g = jx.events.progress(progress.clone());
        jx.events.info(&format!(
            "drilling {} backup {} into {}",
            db.name,
            input.selector,
            target
                .as_ref()
                .map(|t| t.redacted())
                .unwrap_or_else(|| "a throwaway local cluster".into())
        ));
        let held = jx.lease(&db.name, "drill").await?;
        if let Some(e) = jx.slot_taken(&db.name, super::slot::Recorded::Drill).await {
            held.release().await;
            return Err(e);
        }
        let first = report.results().next().is_none();
        let outcome = drill::run(job(jx, &input, db, target, first, progress)).await;
        held.release().await;
        crate::catalog_cache::update(jx.store, &db.name).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) if several => {
                notifier
                    .send(
                        EventKind::DrillFailed,
                        db.name.as_str(),
                        format!("drill of {} could not run: {e}", db.name),
                        json!({}),
                    )
                    .await;
                report
                    .entries
                    .push(DrillEntry::CouldNotRun(db.name.clone(), e));
                continue;
            }
            Err(e) => return Err(e),
        };
        let r = &outcome.result;
        for w in &r.warnings {
            jx.events.warn(w);
        }
        if let (Some(name), true) = (&r.backup.store, input.read_from.len() > 1) {
            jx.events.info(&format!(
                "drill {} read backup {} of {} from store {name}",
                r.drill_id, r.backup.id, r.database
            ));
        }
        let (kind, summary) = alert_of(r);
        notifier
            .send(
                kind,
                db.name.as_str(),
                summary,
                json!({"drill_id": r.drill_id, "backup_id": r.backup.id}),
            )
            .await;
        report.entries.push(DrillEntry::Ran(Box::new(outcome)));
    }
    Ok(report)
}

/// The core drill's input from the settings and the job's input; `first` is whether no
/// drill of this run has produced a result yet (it gets the report folder itself).
fn job<'a>(
    jx: &'a JobEnv<'_>,
    input: &'a DrillInput<'_>,
    db: &'a DatabaseSettings,
    target: Option<ConnSpec>,
    first: bool,
    progress: Arc<Progress>,
) -> DrillJob<'a> {
    let settings = jx.settings;
    let jobs =
        crate::restore::resolve_jobs(input.jobs.or(db.drill_settings.jobs), settings.restore.jobs);
    DrillJob {
        store: jx.store,
        read_from: input.read_from,
        db,
        selector: input.selector,
        target,
        tools: input.tools,
        keys: input.keys.clone(),
        policy: &settings.policy,
        protected_targets: &settings.protected_targets,
        ignore_errors: &settings.restore.ignore_errors,
        skip_extensions: &settings.restore.skip_extensions,
        maintenance_work_mem: settings.restore.maintenance_work_mem.clone(),
        jobs,
        major: input.major,
        env: jx.env,
        report_dir: input.report_dir.as_ref().map(|d| {
            if first {
                d.clone()
            } else {
                d.join(db.name.as_str())
            }
        }),
        keep: input.keep,
        keep_on_failure: input.keep_on_failure,
        mirrors: &settings.mirrors,
        progress,
        cancel: jx.cancel.clone(),
    }
}

/// The alert a finished drill sends.
fn alert_of(r: &DrillResult) -> (EventKind, String) {
    if r.passed() {
        (
            EventKind::DrillPassed,
            format!(
                "drill {} of {} passed: RTO {}, RPO {}",
                r.drill_id,
                r.database,
                fmt_min(r.rto.minutes),
                fmt_min(r.rpo.minutes)
            ),
        )
    } else {
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        let why = r
            .error
            .clone()
            .unwrap_or_else(|| format!("failed checks: {}", failed.join(", ")));
        (
            EventKind::DrillFailed,
            format!("drill {} of {} failed: {why}", r.drill_id, r.database),
        )
    }
}

/// A duration given in minutes, in the units of [`crate::time::human_secs`] (`0.4s`,
/// `29m42s`, `2h05m`), or `n/a`.
pub fn fmt_min(m: Option<f64>) -> String {
    m.map(|m| crate::time::human_secs(m * 60.0))
        .unwrap_or_else(|| "n/a".into())
}

/// The server a drill restores on: `--target`, else `[database.drill] target_url_env`, else
/// `PGDRILL_TARGET_URL`; `None` means a throwaway local cluster.
fn target_for(
    jx: &JobEnv<'_>,
    flag: Option<&str>,
    db: &DatabaseSettings,
) -> Result<Option<ConnSpec>> {
    let env = crate::env::pairs(jx.env);
    let from_config = db.drill_settings.target_url_env.as_deref().map(|var| {
        jx.env.get(var).cloned().filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::Invalid(format!("[database.drill] target_url_env names {var}, which is not set; export it or pass --target"))
        })
    });
    let url = match (flag, from_config) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(r)) => Some(r?),
        (None, None) => jx
            .env
            .get("PGDRILL_TARGET_URL")
            .cloned()
            .filter(|s| !s.is_empty()),
    };
    url.map(|u| ConnSpec::parse_with_env(&u, &env).map_err(Error::from))
        .transpose()
}
