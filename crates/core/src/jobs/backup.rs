//! The backup job: per database, under its lease: the backup, then the audit row, the alert
//! (succeeded, or recovered after a recorded failure) and the failure record.

use super::JobEnv;
use crate::alert::EventKind;
use crate::backup::{self, Backup, BackupJob, StoreCopy, TargetStore, Tools};
use crate::cancel::Cancel;
use crate::config::DatabaseSettings;
use crate::crypto::EncryptionKeys;
use crate::ids::DbName;
use crate::lease::{self, Lease};
use crate::manifest::{Manifest, StoredObject};
use crate::progress::{Progress, StageRecord};
use crate::{status, Error, Result};
use pgdrill_pg::ConnSpec;
use pgdrill_store::Store;
use serde_json::json;
use std::collections::BTreeMap;

mod failover;
use failover::{notifier_beside, take_lease, Fleet, Home, PRIMARY_REPROBE};

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
    let mut notifier = jx.notifier()?;
    // Once a backup found the primary unreachable, the databases after it take their lease
    // in the next reachable store at once, and their alerts keep their de-duplication state
    // in the store that took the first one's lease (not waited for on the primary again,
    // database after database).
    let mut fleet = Fleet::new(PRIMARY_REPROBE);
    let mut switched = false;
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
        let outcome = one(jx, &input, db, source, &notifier, from, &mut fleet).await;
        if let (false, Some(home)) = (switched, &fleet.passed) {
            if let Ok(n) = super::Notifier::new(&jx.settings.alerts, jx.env, home, jx.events) {
                notifier = n;
                switched = true;
            }
        }
        match outcome {
            Ok((b, stages)) => {
                let Backup {
                    manifest: m,
                    copies,
                    ..
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
    fleet: &mut Fleet,
) -> Result<(Backup, Vec<StageRecord>)> {
    announce(jx, input, db, &source, notifier).await;
    let progress = Progress::new();
    let _guard = jx.events.progress(progress.clone());
    // The lease comes back held after a backup that completed: released beside the
    // bookkeeping that follows.
    let mut primary_unreachable = false;
    let several = input.stores.len() > 1;
    let skip = if several {
        fleet.skip_primary(jx, &db.name).await
    } else {
        None
    };
    let (result, held) = match take_lease(jx, input, &db.name, skip.as_deref()).await {
        Ok((held, home)) => {
            let run = Leased {
                held,
                home,
                skip: skip.as_deref(),
                progress: progress.clone(),
                source,
                globals_from,
            };
            under_lease(jx, input, db, fleet, run, &mut primary_unreachable).await
        }
        Err(e) => (Err(e), None),
    };
    match result {
        Ok(b) => {
            completed(jx, input, db, &b, held, notifier, primary_unreachable).await;
            Ok((b, progress.stages()))
        }
        Err(e) => Err(failed(jx, input, db, e, notifier, fleet).await),
    }
}

/// Logs where the backup goes and sends the "started" event.
async fn announce(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DatabaseSettings,
    source: &ConnSpec,
    notifier: &super::Notifier<'_>,
) {
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
    notifier
        .send(
            EventKind::JobStarted,
            db.name.as_str(),
            format!("backup of {} started", db.name),
            json!({}),
        )
        .await;
}

/// A lease just taken, where, and for what.
struct Leased<'a> {
    held: Lease,
    home: Home,
    /// The primary was passed over because this run found it down earlier (why).
    skip: Option<&'a str>,
    progress: std::sync::Arc<Progress>,
    source: ConnSpec,
    globals_from: Option<(String, StoredObject)>,
}

/// The backup itself, under its lease: the lease set to move on when its store stops
/// answering, the slot judged, the catalogs' prefetch begun, the backup run. The lease (and
/// the prefetch) come back only when the backup completed; on any failure the lease is
/// released here. Sets `primary_unreachable` when the primary was, or became, unreachable.
async fn under_lease(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DatabaseSettings,
    fleet: &mut Fleet,
    run: Leased<'_>,
    primary_unreachable: &mut bool,
) -> (
    Result<Backup>,
    Option<(Lease, crate::catalog_cache::Prefetch)>,
) {
    let Leased {
        held,
        home,
        skip,
        progress,
        source,
        globals_from,
    } = run;
    let several = input.stores.len() > 1;
    match home.passed_over.first() {
        Some((0, why)) => {
            *primary_unreachable = true;
            fleet.primary_down(why, &home.store, skip.is_none());
        }
        // Passed over, then tried when nothing else answered, and it did.
        _ if home.index == 0 => fleet.down = None,
        _ => {}
    }
    if several {
        // A lease store down for long moves the lease on to the next that answers.
        let next = input.stores[home.index + 1..]
            .iter()
            .map(|t| (t.name.clone(), t.store.clone()))
            .collect();
        held.move_on_to(&input.stores[home.index].name, next).await;
    }
    if let Some(e) = slot_taken_in(jx, &home.store, &db.name).await {
        held.release().await;
        return (Err(e), None);
    }
    // The catalogs' updates begin beside the dump (read and listed now, swapped
    // once the manifest is written). A primary found unreachable gets no request.
    let catalogs = crate::catalog_cache::Prefetch::start(
        std::iter::once((!*primary_unreachable).then_some(jx.store))
            .chain(input.stores.iter().skip(1).map(|t| Some(&t.store)))
            .map(|s| s.cloned())
            .collect(),
        &db.name,
    );
    let job = backup_job(
        jx,
        input,
        db,
        &home.store,
        &held,
        &progress,
        source,
        globals_from,
    );
    let r = backup::run_with(job, &home.passed_over).await;
    progress.finish();
    // The lease moved off the primary during the backup and the primary's copy
    // failed too: the primary stopped answering, as if found so at the start (for
    // this backup's bookkeeping and the databases after it). A copy that completed
    // there says the renewal's failure was a passing one.
    let primary_failed = r
        .as_ref()
        .map_or(true, |b| b.copies.first().is_some_and(|c| !c.ok));
    if several
        && home.index == 0
        && primary_failed
        && held.store_name().await != input.stores[0].name
    {
        *primary_unreachable = true;
        let why = format!(
            "the store stopped answering during the backup of {} (its lease moved on)",
            db.name
        );
        fleet.primary_down(&why, &held.store().await, true);
    }
    // Ended by its lost lease: say so rather than "cancelled".
    let r = match (r, held.lost().await) {
        (Err(_), Some(lost)) => Err(lost),
        (r, _) => r,
    };
    if r.is_err() {
        bounded(jx, "releasing the lease", held.release()).await;
        return (r, None);
    }
    (r, Some((held, catalogs)))
}

/// Whether a scheduled run's slot was already used, judged in `store`, the store holding the
/// lease: whoever held it before published there.
async fn slot_taken_in(jx: &JobEnv<'_>, store: &Store, db: &DbName) -> Option<Error> {
    let hjx = JobEnv {
        store,
        settings: jx.settings,
        env: jx.env,
        cancel: jx.cancel.clone(),
        events: jx.events,
        slot: jx.slot,
    };
    hjx.slot_taken(db, super::slot::Recorded::Backup).await
}

/// The backup of `db` to every store, its lease held in `home` (a lost lease stops it as
/// a signal would), with the settings' transfer and compression values.
#[allow(clippy::too_many_arguments)]
fn backup_job<'a>(
    jx: &'a JobEnv<'_>,
    input: &'a BackupInput<'_>,
    db: &'a DatabaseSettings,
    home: &'a Store,
    held: &'a Lease,
    progress: &std::sync::Arc<Progress>,
    source: ConnSpec,
    globals_from: Option<(String, StoredObject)>,
) -> BackupJob<'a> {
    let s = jx.settings;
    BackupJob {
        store: home,
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
        lease: Some(held),
        jobs: input.jobs.unwrap_or(s.backup_jobs),
        spool_dir: s.backup_spool_dir.clone(),
        spool_window: s.backup_spool_window,
        globals_from,
    }
}

/// After a backup that completed (whole or degraded): each store holding a copy gets its
/// catalog updated (derived data, best effort), all at once, beside the lease's release
/// (the manifest is written: nothing here decides whether the backup exists); then the
/// outcome's alert and records, which a reader may follow straight to the catalog. Whether
/// a failure was recorded (for the alert) is read beside them.
async fn completed(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DatabaseSettings,
    b: &Backup,
    held: Option<(Lease, crate::catalog_cache::Prefetch)>,
    notifier: &super::Notifier<'_>,
    primary_unreachable: bool,
) {
    for note in &b.notes {
        jx.events.warn(note);
    }
    // The primary's copy is the first (the only one with one store); one that failed
    // (the primary is down, or was at the start) gets none of the bookkeeping that
    // could wait on it, beyond the bounded failure record `status` reads there: the
    // catalogs are updated only where a copy is good.
    let primary_ok = b.copies.first().is_none_or(|c| c.ok);
    let whole = b.failed_copies().next().is_none();
    let failing = async { whole && status::read_failure(jx.store, &db.name).await.is_some() };
    let was_failing = match held {
        Some((held, catalogs)) => {
            let updated = catalogs.update(&b.manifest, &b.copies);
            let released = bounded(jx, "releasing the lease", held.release());
            tokio::join!(updated, released, failing).2
        }
        None => failing.await,
    };
    if whole {
        succeeded(jx, db, &b.manifest, notifier, was_failing).await;
    } else {
        let elsewhere = (!primary_ok)
            .then(|| notifier_beside(jx, input, b))
            .flatten();
        let notifier = elsewhere.as_ref().unwrap_or(notifier);
        degraded(jx, db, b, notifier, !primary_unreachable).await;
    }
}

/// After a backup that failed or did not start: the failure recorded (bounded; not on a
/// primary this run found down) and alerted, unless another job holds the lease. Gives
/// back the error with its context.
async fn failed(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DatabaseSettings,
    e: Error,
    notifier: &super::Notifier<'_>,
    fleet: &Fleet,
) -> Error {
    let e = e.context(format!("backup of {}", db.name));
    if !matches!(e, Error::Locked(_)) {
        // Not waited for on a primary this run found unreachable.
        let primary_down = fleet.down.is_some();
        let record = async {
            if primary_down {
                return;
            }
            if crate::hints::worth_recording(jx.store, &db.name, &e, input.configured).await {
                status::record_failure(jx.store, &db.name, "backup", &e.to_string()).await;
                let rec = status::FailureRecord {
                    job: "backup".into(),
                    at: crate::time::Timestamp::now(),
                    message: e.to_string(),
                };
                super::failures::append(jx.store, &db.name, rec).await;
            }
        };
        bounded(jx, "recording the failure", record).await;
        notifier
            .send(
                EventKind::BackupFailed,
                db.name.as_str(),
                e.to_string(),
                json!({"exit_code": e.exit_code()}),
            )
            .await;
    }
    e
}

/// How long the bookkeeping after a backup (the lease's release, the failure record) may
/// wait on a store that stopped answering: it is best effort and never holds the job up
/// for the store's whole retry window per request.
const BOOKKEEPING_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs `work` for at most [`BOOKKEEPING_BUDGET`], saying so when it gave up.
async fn bounded(jx: &JobEnv<'_>, what: &str, work: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(BOOKKEEPING_BUDGET, work)
        .await
        .is_err()
    {
        jx.events.warn(&format!(
            "{what} gave up after {} s (the store does not answer); the backup's outcome is not affected",
            BOOKKEEPING_BUDGET.as_secs()
        ));
    }
}

/// After a backup complete in some stores only: the audit row (the backup exists), the
/// `backup_degraded` alert naming the stores that lack their copy, the failure recorded
/// (`record`: not when the primary, where it goes, was just found unreachable).
async fn degraded(
    jx: &JobEnv<'_>,
    db: &DatabaseSettings,
    b: &Backup,
    notifier: &super::Notifier<'_>,
    record: bool,
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
    // In the primary store, where `status` reads it; bounded, since the primary may be the
    // store that is down.
    if record {
        let recorded = async {
            status::record_failure(jx.store, &db.name, "backup", &message).await;
            let rec = status::FailureRecord {
                job: "backup".into(),
                at: crate::time::Timestamp::now(),
                message: message.clone(),
            };
            super::failures::append(jx.store, &db.name, rec).await;
        };
        bounded(jx, "recording the degraded backup", recorded).await;
    }
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
mod tests;
