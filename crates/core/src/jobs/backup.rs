//! The backup job: per database, under its lease: the backup, then the audit row, the alert
//! (succeeded, or recovered after a recorded failure) and the failure record.

use super::JobEnv;
use crate::alert::EventKind;
use crate::backup::{self, Backup, BackupJob, StoreCopy, TargetStore, Tools};
use crate::cancel::Cancel;
use crate::config::DatabaseSettings;
use crate::crypto::EncryptionKeys;
use crate::ids::DbName;
use crate::manifest::{Manifest, StoredObject};
use crate::progress::{Progress, StageRecord};
use crate::{status, Error, Result};
use pgdrill_pg::ConnSpec;
use serde_json::json;
use std::collections::BTreeMap;

/// What to back up, and with what.
pub struct BackupInput<'a> {
    pub databases: Vec<&'a DatabaseSettings>,
    pub keys: &'a EncryptionKeys,
    /// Found now, or being found while the lease is taken ([`Tools::discover`]).
    pub tools: &'a Tools,
    /// Whether a config file names the databases. A database named only by a URL on the
    /// command line that never answered and has nothing in the store gets no failure record
    /// (see [`crate::hints::worth_recording`]).
    pub configured: bool,
    /// `backup --jobs N`: overrides `[backup] jobs`.
    pub jobs: Option<u32>,
    /// Every configured store with its name and transfer settings, primary (the job's
    /// store) first; empty: the job's store alone.
    pub stores: Vec<TargetStore>,
}

/// Every database's outcome, in the order they ran.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub done: Vec<Manifest>,
    /// The stages of each backup in `done` (same order): name, start, duration, bytes.
    pub stages: Vec<Vec<StageRecord>>,
    /// Each store's copy of each backup in `done` (same order); one that failed leaves the
    /// backup degraded.
    pub copies: Vec<Vec<StoreCopy>>,
    /// Databases whose backup failed or did not start (their error carries the exit code).
    pub failures: Vec<(DbName, Error)>,
}

/// Backs up each database in turn; stops early on cancel. `Err` only when no backup
/// completed: the first error then (with several databases, the others are in the report).
pub async fn run(jx: &JobEnv<'_>, input: BackupInput<'_>) -> Result<BackupReport> {
    let several = input.databases.len() > 1;
    let notifier = jx.notifier()?;
    let mut report = BackupReport::default();
    // Per server: the globals object its first backup of this run stored.
    let mut globals: BTreeMap<String, (String, StoredObject)> = BTreeMap::new();
    for db in input.databases.iter().copied() {
        // A source that is not configured is a settings error: no alert, no failure record.
        let source = match db.source_spec(jx.env) {
            Ok(s) => s,
            Err(e) => {
                report.failures.push((db.name.clone(), e));
                continue;
            }
        };
        let from = db.server.as_ref().and_then(|s| globals.get(s)).cloned();
        match one(jx, &input, db, source, &notifier, from).await {
            Ok((b, stages)) => {
                let Backup {
                    manifest: m,
                    copies,
                } = b;
                if let (Some(server), Some(o)) =
                    (&db.server, m.objects.iter().find(|o| o.kind == "globals"))
                {
                    let key = crate::layout::backup_object(&db.name, &m.backup_id, &o.name);
                    globals
                        .entry(server.clone())
                        .or_insert_with(|| (key, o.clone()));
                }
                report.done.push(m);
                report.stages.push(stages);
                report.copies.push(copies);
            }
            Err(e) => {
                if several {
                    jx.events.warn(&e.to_string());
                }
                report.failures.push((db.name.clone(), e));
            }
        }
        if jx.cancel.is_cancelled() {
            break;
        }
    }
    if report.done.is_empty() && !report.failures.is_empty() {
        return Err(report.failures.swap_remove(0).1);
    }
    Ok(report)
}

async fn one(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DatabaseSettings,
    source: ConnSpec,
    notifier: &super::Notifier<'_>,
    globals_from: Option<(String, StoredObject)>,
) -> Result<(Backup, Vec<StageRecord>)> {
    let to = if input.stores.len() > 1 {
        input
            .stores
            .iter()
            .map(|t| format!("{} ({})", t.name, t.store.display()))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        jx.store.display().to_string()
    };
    jx.events.info(&format!(
        "backing up {} ({}) to {to}",
        db.name,
        source.redacted(),
    ));
    let progress = Progress::new();
    let _guard = jx.events.progress(progress.clone());
    notifier
        .send(
            EventKind::JobStarted,
            db.name.as_str(),
            format!("backup of {} started", db.name),
            json!({}),
        )
        .await;
    // The lease comes back held after a backup that completed: released beside the
    // bookkeeping that follows.
    let (result, held) = match jx.lease(&db.name, "backup").await {
        Ok(held) => 'held: {
            if let Some(e) = jx.slot_taken(&db.name, super::slot::Recorded::Backup).await {
                held.release().await;
                break 'held (Err(e), None);
            }
            // The catalogs' updates begin beside the dump (read and listed now, swapped
            // once the manifest is written).
            let catalogs = crate::catalog_cache::Prefetch::start(
                std::iter::once(jx.store)
                    .chain(input.stores.iter().skip(1).map(|t| &t.store))
                    .cloned()
                    .collect(),
                &db.name,
            );
            let s = jx.settings;
            let job = BackupJob {
                store: jx.store,
                stores: &input.stores,
                db,
                source,
                keys: input.keys,
                tools: input.tools,
                compression_level: s.compression_level,
                compression_threads: s.compression_threads,
                part_size: s.part_size,
                max_in_flight: s.max_in_flight,
                lock_wait_timeout: s.lock_wait_timeout,
                policy: &s.policy,
                progress: progress.clone(),
                // A lost lease stops the backup as a signal would.
                cancel: Cancel::either(&jx.cancel, &held.lost_signal()),
                lease: Some(&held),
                jobs: input.jobs.unwrap_or(s.backup_jobs),
                spool_dir: s.backup_spool_dir.clone(),
                spool_window: s.backup_spool_window,
                globals_from,
            };
            let r = backup::run(job).await;
            progress.finish();
            // Ended by its lost lease: say so rather than "cancelled".
            let r = match (r, held.lost().await) {
                (Err(_), Some(lost)) => Err(lost),
                (r, _) => r,
            };
            if r.is_err() {
                held.release().await;
                break 'held (r, None);
            }
            (r, Some((held, catalogs)))
        }
        Err(e) => (Err(e), None),
    };
    match result {
        Ok(b) => {
            // Each store holding a copy gets its catalog updated (derived data, best effort),
            // all at once, beside the lease's release (the manifest is written: nothing here
            // decides whether the backup exists); then the outcome's alert and records, which
            // a reader may follow straight to the catalog. Whether a failure was recorded
            // (for the alert) is read beside them.
            let whole = b.failed_copies().next().is_none();
            let failing =
                async { whole && status::read_failure(jx.store, &db.name).await.is_some() };
            let was_failing = match held {
                Some((held, catalogs)) => {
                    let updated = catalogs.update(&b.manifest, &b.copies);
                    tokio::join!(updated, held.release(), failing).2
                }
                None => failing.await,
            };
            if whole {
                succeeded(jx, db, &b.manifest, notifier, was_failing).await;
            } else {
                degraded(jx, db, &b, notifier).await;
            }
            Ok((b, progress.stages()))
        }
        Err(e) => {
            let e = e.context(format!("backup of {}", db.name));
            if !matches!(e, Error::Locked(_)) {
                if crate::hints::worth_recording(jx.store, &db.name, &e, input.configured).await {
                    status::record_failure(jx.store, &db.name, "backup", &e.to_string()).await;
                    let rec = status::FailureRecord {
                        job: "backup".into(),
                        at: crate::time::Timestamp::now(),
                        message: e.to_string(),
                    };
                    super::failures::append(jx.store, &db.name, rec).await;
                }
                notifier
                    .send(
                        EventKind::BackupFailed,
                        db.name.as_str(),
                        e.to_string(),
                        json!({"exit_code": e.exit_code()}),
                    )
                    .await;
            }
            Err(e)
        }
    }
}

/// After a backup complete in some stores only: the audit row (the backup exists), the
/// `backup_degraded` alert naming the stores that lack their copy, the failure recorded.
async fn degraded(
    jx: &JobEnv<'_>,
    db: &DatabaseSettings,
    b: &Backup,
    notifier: &super::Notifier<'_>,
) {
    audit_row(jx, db, &b.manifest).await;
    let m = &b.manifest;
    let missing: Vec<String> = b
        .failed_copies()
        .map(|c| {
            format!(
                "{}: {}",
                c.store,
                c.error.as_deref().unwrap_or("the copy failed")
            )
        })
        .collect();
    let names: Vec<&str> = b.failed_copies().map(|c| c.store.as_str()).collect();
    let message = format!(
        "backup {} of {} is degraded: store {} lacks its copy ({}); run `pgdrill copy {} --to {}` once the store is back",
        m.backup_id,
        m.database,
        names.join(", "),
        missing.join("; "),
        m.backup_id,
        names.first().copied().unwrap_or("STORE"),
    );
    jx.events.warn(&message);
    status::record_failure(jx.store, &db.name, "backup", &message).await;
    let rec = status::FailureRecord {
        job: "backup".into(),
        at: crate::time::Timestamp::now(),
        message: message.clone(),
    };
    super::failures::append(jx.store, &db.name, rec).await;
    notifier
        .send(
            EventKind::BackupDegraded,
            db.name.as_str(),
            message,
            json!({"backup_id": m.backup_id, "stores": names, "exit_code": 1}),
        )
        .await;
}

/// The audit row of a backup (best effort).
async fn audit_row(jx: &JobEnv<'_>, db: &DatabaseSettings, m: &Manifest) {
    if let Some(audit) = &db.audit {
        if let Ok(spec) = db.source_spec(jx.env) {
            if let Err(e) = crate::audit::write(&spec, audit, m).await {
                jx.events.warn(&format!(
                    "the audit row for {} was not written (the backup is fine): {e}",
                    m.backup_id
                ));
            }
        }
    }
}

/// After a completed backup: the audit row (best effort), the alert (`was_failing`: a
/// failure was recorded, read after the backup), the failure record cleared.
async fn succeeded(
    jx: &JobEnv<'_>,
    db: &DatabaseSettings,
    m: &Manifest,
    notifier: &super::Notifier<'_>,
    was_failing: bool,
) {
    audit_row(jx, db, m).await;
    let kind = if was_failing {
        EventKind::Recovered
    } else {
        EventKind::BackupSucceeded
    };
    let summary = format!(
        "backup {} of {} completed ({} stored)",
        m.backup_id,
        m.database,
        crate::summary::human_bytes(m.stored_bytes)
    );
    notifier
        .send(
            kind,
            db.name.as_str(),
            summary,
            json!({"backup_id": m.backup_id}),
        )
        .await;
    if was_failing {
        status::clear_failure(jx.store, &db.name).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, Settings};
    use crate::jobs::{JobEnv, Silent};
    use pgdrill_store::Store;
    use std::path::Path;

    /// A database without a source is a settings error: exit 2, nothing recorded as a
    /// failed backup, no lease left behind.
    #[tokio::test]
    async fn a_database_without_a_source_fails_without_a_failure_record() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        let env = Env::new();
        let settings = Settings::load(
            Some("[[database]]\nname = \"app\"\n"),
            "t.toml",
            Path::new("/"),
            &env,
        )
        .expect("settings");
        let (_handle, cancel) = Cancel::new();
        let jx = JobEnv {
            store: &store,
            settings: &settings,
            env: &env,
            cancel,
            events: &Silent,
            slot: None,
        };
        let keys = EncryptionKeys::new(&[], None).expect("keys");
        let tools = Tools::found(pgdrill_pg::PgTools::discover());
        let input = BackupInput {
            databases: settings.select(None).expect("databases"),
            keys: &keys,
            tools: &tools,
            configured: true,
            jobs: None,
            stores: Vec::new(),
        };
        let e = run(&jx, input).await.expect_err("no source");
        assert_eq!(e.exit_code(), 2, "{e}");
        let app = DbName::parse("app").expect("name");
        assert!(status::read_failure(&store, &app).await.is_none());
        assert!(store.list("").await.expect("list").is_empty());
    }

    /// A configured database that does not answer: the failure is recorded, in
    /// last_failure.json and in the history the dashboard reads.
    #[tokio::test]
    async fn a_failed_backup_is_kept_in_the_failure_history() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        let env = Env::new();
        let settings = Settings::load(
            Some("[[database]]\nname = \"app\"\nurl = \"postgresql://u@127.0.0.1:1/app?connect_timeout=2\"\n"),
            "t.toml",
            Path::new("/"),
            &env,
        )
        .expect("settings");
        let (_handle, cancel) = Cancel::new();
        let jx = JobEnv {
            store: &store,
            settings: &settings,
            env: &env,
            cancel,
            events: &Silent,
            slot: None,
        };
        let keys = EncryptionKeys::new(&[], None).expect("keys");
        let tools = Tools::found(pgdrill_pg::PgTools::discover());
        let app = DbName::parse("app").expect("name");
        for _ in 0..2 {
            let input = BackupInput {
                databases: settings.select(None).expect("databases"),
                keys: &keys,
                tools: &tools,
                configured: true,
                jobs: None,
                stores: Vec::new(),
            };
            run(&jx, input)
                .await
                .expect_err("nothing listens on port 1");
        }
        let last = status::read_failure(&store, &app)
            .await
            .expect("last failure");
        let history = super::super::failures::read(&store, &app).await;
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(history[1].message, last.message);
        assert_eq!(history[1].job, "backup");
    }
}
