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

/// How long a run goes on passing over a primary found unreachable before it asks it again.
const PRIMARY_REPROBE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long that one request may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a run (several databases) knows of its primary store: once a backup found it
/// unreachable, the next databases take their lease in the next reachable store at once
/// (their primary copy failed from the outset) instead of each waiting out the primary's
/// timeouts and retries; every `reprobe` the primary is asked again with one quick request,
/// and used again once it answers.
struct Fleet {
    reprobe: std::time::Duration,
    /// Why the primary is passed over, and when it was last tried.
    down: Option<(String, std::time::Instant)>,
    /// The store that took the lease when the primary was first passed over.
    passed: Option<Store>,
}

impl Fleet {
    fn new(reprobe: std::time::Duration) -> Self {
        Fleet {
            reprobe,
            down: None,
            passed: None,
        }
    }

    /// Why the primary is to be passed over for the backup of `db` (`None`: try it).
    async fn skip_primary(&mut self, jx: &JobEnv<'_>, db: &DbName) -> Option<String> {
        let (why, tried) = self.down.as_mut()?;
        if tried.elapsed() < self.reprobe {
            return Some(why.clone());
        }
        let key = crate::layout::lease_key(db);
        match tokio::time::timeout(PROBE_TIMEOUT, jx.store.exists(&key)).await {
            Ok(Ok(_)) => {
                jx.events.info(&format!(
                    "the primary store ({}) answers again: the lease of {db} is taken there",
                    jx.store.display()
                ));
                self.down = None;
                None
            }
            _ => {
                *tried = std::time::Instant::now();
                Some(why.clone())
            }
        }
    }

    /// A backup found the primary unreachable (`tried`: just now, not passed over on an
    /// earlier finding) and holds its lease in `home`.
    fn primary_down(&mut self, why: &str, home: &Store, tried: bool) {
        if tried || self.down.is_none() {
            self.down = Some((why.to_string(), std::time::Instant::now()));
        }
        if self.passed.is_none() {
            self.passed = Some(home.clone());
        }
    }
}

/// Where a backup's lease is held: the primary store, or, with several stores when the
/// primary cannot be reached, the first reachable store after it in configured order.
struct Home {
    store: Store,
    /// Its index in `BackupInput::stores` (0 with one store).
    index: usize,
    /// The stores before it, found unreachable (by index in `BackupInput::stores`), and why:
    /// their copies fail at once, without a request.
    passed_over: Vec<(usize, String)>,
}

/// Takes the lease of `db` in the primary store. With several stores, when the primary
/// cannot be reached (a store error other than "not found", after the store's own retries),
/// in the first store after it that can, in configured order, saying so: the backup then
/// goes to every reachable store and ends degraded. A lease another job holds (exit 6) is
/// never passed over. Fails with the primary's error when no store can be reached.
///
/// `skip`: the primary was found unreachable earlier in this run (why): it is passed over
/// without a request, unless no other store can be reached either (then it is tried).
///
/// Two instances that disagree about the primary's reachability may hold leases in two
/// stores and both back up: one extra backup at worst, never a lost or corrupt one (ids are
/// unique, each store's manifest is written last). See docs/ARCHITECTURE.md, "Leases".
async fn take_lease(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DbName,
    skip: Option<&str>,
) -> Result<(Lease, Home)> {
    if let (Some(why), true) = (skip, input.stores.len() > 1) {
        let passed_over = vec![(
            0,
            format!("the store could not be reached earlier in this run, so it was not tried for this backup: {why}"),
        )];
        let said = vec![format!(
            "store {} unreachable earlier in this run",
            input.stores[0].name
        )];
        if let Some(found) = elsewhere(jx, input, db, passed_over, said).await? {
            return Ok(found);
        }
    }
    let first = match jx.lease(db, "backup").await {
        Ok(held) => {
            let home = Home {
                store: jx.store.clone(),
                index: 0,
                passed_over: Vec::new(),
            };
            return Ok((held, home));
        }
        Err(e) if input.stores.len() > 1 && crate::stores::unreachable(&e) => e,
        Err(e) => return Err(e),
    };
    let passed_over = vec![(0, unreachable_at_start(&first))];
    let said = vec![format!(
        "store {} unreachable ({first})",
        input.stores[0].name
    )];
    match elsewhere(jx, input, db, passed_over, said).await? {
        Some(found) => Ok(found),
        None => Err(first),
    }
}

fn unreachable_at_start(e: &Error) -> String {
    format!("the store could not be reached when the backup started: {e}")
}

/// The lease of `db` in the first store after the primary that answers (`None`: none
/// does); `passed_over` and `said` begin with the primary's.
async fn elsewhere(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DbName,
    mut passed_over: Vec<(usize, String)>,
    mut said: Vec<String>,
) -> Result<Option<(Lease, Home)>> {
    for (i, t) in input.stores.iter().enumerate().skip(1) {
        match lease::acquire(&t.store, db, "backup", super::slot::lease_ttl()).await {
            Ok(held) => {
                super::warn_lease(jx.events, db, &held);
                jx.events
                    .warn(&format!("{}; lease taken in {}", said.join("; "), t.name));
                let home = Home {
                    store: t.store.clone(),
                    index: i,
                    passed_over,
                };
                return Ok(Some((held, home)));
            }
            Err(e) if crate::stores::unreachable(&e) => {
                said.push(format!("store {} unreachable ({e})", t.name));
                passed_over.push((i, unreachable_at_start(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// For a backup whose primary copy failed (the primary may be down): a notifier keeping the
/// alerts' de-duplication state in the first store holding the backup, rather than waiting
/// on the primary for it (a duplicate alert at worst).
fn notifier_beside<'a>(
    jx: &JobEnv<'a>,
    input: &BackupInput<'_>,
    b: &Backup,
) -> Option<super::Notifier<'a>> {
    let (t, _) = input.stores.iter().zip(&b.copies).find(|(_, c)| c.ok)?;
    super::Notifier::new(&jx.settings.alerts, jx.env, &t.store, jx.events).ok()
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

    /// Events kept for assertions.
    #[derive(Default)]
    struct Kept(std::sync::Mutex<Vec<String>>);

    impl crate::jobs::Events for Kept {
        fn info(&self, _: &str) {}
        fn warn(&self, msg: &str) {
            if let Ok(mut k) = self.0.lock() {
                k.push(msg.to_string());
            }
        }
    }

    /// A folder store whose folder is then replaced by a file: every request fails.
    fn dead(dir: &Path) -> Store {
        let path = dir.join("dead");
        let store = Store::open_folder(&path).expect("open");
        std::fs::remove_dir(&path).expect("rmdir");
        std::fs::write(&path, b"not a folder").expect("file");
        store
    }

    fn target(name: &str, store: Store) -> TargetStore {
        TargetStore {
            name: name.into(),
            store,
            part_size: 5 << 20,
            max_in_flight: 2,
        }
    }

    /// Issue 19, fleets: a primary found unreachable is passed over without a request until
    /// the re-probe interval has passed; then one quick request decides (still down: passed
    /// over again; answering: used again).
    #[tokio::test]
    async fn a_fleet_passes_a_dead_primary_over_until_it_answers_a_probe() {
        let dir = tempfile::tempdir().expect("tmp");
        let down = dead(dir.path());
        let up = Store::open_folder(dir.path().join("up")).expect("store");
        let b2 = Store::open_folder(dir.path().join("b2")).expect("store");
        let env = Env::new();
        let settings = Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
        let kept = Kept::default();
        let jx = |store| {
            let (_handle, cancel) = Cancel::new();
            JobEnv {
                store,
                settings: &settings,
                env: &env,
                cancel,
                events: &kept,
                slot: None,
            }
        };
        let app = DbName::parse("app").expect("name");
        let mut fleet = Fleet::new(std::time::Duration::from_secs(3600));
        assert_eq!(
            fleet.skip_primary(&jx(&down), &app).await,
            None,
            "not known down"
        );
        fleet.primary_down("gone", &b2, true);
        // Within the interval: passed over without asking, even a store that would answer.
        assert_eq!(
            fleet.skip_primary(&jx(&up), &app).await.as_deref(),
            Some("gone")
        );
        // The interval passed: asked once; still down, then back.
        fleet.reprobe = std::time::Duration::ZERO;
        assert_eq!(
            fleet.skip_primary(&jx(&down), &app).await.as_deref(),
            Some("gone")
        );
        assert!(fleet.down.is_some());
        assert_eq!(fleet.skip_primary(&jx(&up), &app).await, None);
        assert!(fleet.down.is_none());
        // A later finding keeps the first store that took the lease for the alerts.
        fleet.primary_down("again", &up, true);
        assert!(fleet.passed.is_some());
        // The lease passed over a primary known down: the next store, no request to it.
        let input = BackupInput {
            databases: Vec::new(),
            keys: &EncryptionKeys::new(&[], None).expect("keys"),
            tools: &Tools::found(pgdrill_pg::PgTools::discover()),
            configured: true,
            jobs: None,
            stores: vec![target("r2", up.clone()), target("b2", b2.clone())],
        };
        let (held, home) = take_lease(&jx(&up), &input, &app, Some("gone"))
            .await
            .expect("lease");
        assert_eq!(home.index, 1);
        assert!(home.passed_over[0]
            .1
            .contains("could not be reached earlier in this run"));
        assert!(!up.exists("app/lease.json").await.expect("exists"));
        assert!(b2.exists("app/lease.json").await.expect("exists"));
        held.release().await;
    }

    /// Issue 19: a primary that cannot be reached passes the lease to the first reachable
    /// store after it, in order, saying so; a lease held there is still exit 6; with one
    /// store (or none reachable) the primary's error stands.
    #[tokio::test]
    async fn the_lease_goes_to_the_first_reachable_store_when_the_primary_is_down() {
        let dir = tempfile::tempdir().expect("tmp");
        let primary = dead(dir.path());
        let b2 = Store::open_folder(dir.path().join("b2")).expect("store");
        let local = Store::open_folder(dir.path().join("local")).expect("store");
        let env = Env::new();
        let settings = Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
        let (_handle, cancel) = Cancel::new();
        let kept = Kept::default();
        let jx = JobEnv {
            store: &primary,
            settings: &settings,
            env: &env,
            cancel,
            events: &kept,
            slot: None,
        };
        let keys = EncryptionKeys::new(&[], None).expect("keys");
        let tools = Tools::found(pgdrill_pg::PgTools::discover());
        let app = DbName::parse("app").expect("name");
        let input = |stores: Vec<TargetStore>| BackupInput {
            databases: Vec::new(),
            keys: &keys,
            tools: &tools,
            configured: true,
            jobs: None,
            stores,
        };
        let three = input(vec![
            target("r2", primary.clone()),
            target("b2", b2.clone()),
            target("local", local.clone()),
        ]);
        let (held, home) = take_lease(&jx, &three, &app, None).await.expect("lease");
        assert!(b2.exists("app/lease.json").await.expect("exists"));
        assert_eq!(home.passed_over.len(), 1);
        assert_eq!(home.passed_over[0].0, 0);
        let said = kept.0.lock().expect("lock").join("\n");
        assert!(
            said.contains("store r2 unreachable (") && said.contains("lease taken in b2"),
            "{said}"
        );
        // Held there by another job: exit 6, never passed over to the next store.
        let e = take_lease(&jx, &three, &app, None)
            .await
            .err()
            .expect("locked");
        assert_eq!(e.exit_code(), 6, "{e}");
        assert!(!local.exists("app/lease.json").await.expect("exists"));
        held.release().await;
        // One store, or none reachable: the primary's error.
        let one = input(Vec::new());
        let e = take_lease(&jx, &one, &app, None).await.err().expect("down");
        assert!(!matches!(e, Error::Locked(_)), "{e}");
        let none = input(vec![
            target("r2", primary.clone()),
            target("b2", dead(&dir.path().join("b2"))),
        ]);
        let e2 = take_lease(&jx, &none, &app, None)
            .await
            .err()
            .expect("down");
        assert_eq!(e2.to_string(), e.to_string());
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
