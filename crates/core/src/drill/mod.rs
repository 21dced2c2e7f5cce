//! Drills: pick a backup → restore into a target (a fresh database on a configured server,
//! or a throwaway local cluster) → run the checks → RPO/RTO against the policy → evidence
//! (result.json, report.md, report.html, drill.log) locally and in the store.
//!
//! (One file of about 490 lines: `run` is the drill's timeline, each stage recording its own
//! timing and log lines into the same evidence, read top to bottom; checks, evidence, redaction
//! and the check kinds live in the submodules.)

pub mod checks;
mod command;
pub mod evidence;
mod http;
mod mirror_check;
mod redact;
mod source;

pub use source::probe as probe_physical_source;
mod storage_check;
pub mod upgrade;

use crate::cancel::Cancel;
use crate::catalog;
use crate::config::{DatabaseSettings, Env, Policy};
use crate::crypto::DecryptionKeys;
use crate::ids::DrillId;
use crate::layout;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::restore::{self, RestoreJob};
use crate::time::{self, Timestamp};
use crate::{Error, Result};
use checks::{CheckCtx, CheckResult};
use evidence::*;
use pgdrill_pg::cluster::{Cluster, ClusterOptions};
use pgdrill_pg::{client, ConnSpec, PgTools};
use pgdrill_store::Store;
use redact::{command_url, secrets, source_url_vars};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub struct DrillJob<'a> {
    /// Where the evidence goes (and, without `read_from`, the backup is read from): the
    /// primary store.
    pub store: &'a Store,
    /// The stores the backup may be read from, in order ([`crate::stores`]: the first that
    /// holds it and is reachable); empty: `store` alone.
    pub read_from: &'a crate::stores::Stores,
    pub db: &'a DatabaseSettings,
    /// `latest` or a backup id.
    pub selector: &'a str,
    /// A server to restore on (a fresh database is created there); `None` = throwaway cluster.
    pub target: Option<ConnSpec>,
    pub tools: &'a PgTools,
    pub keys: Arc<DecryptionKeys>,
    pub policy: &'a Policy,
    pub protected_targets: &'a [crate::protect::ProtectedTarget],
    pub ignore_errors: &'a [String],
    /// `[restore] skip_extensions`.
    pub skip_extensions: &'a [String],
    /// `[restore] maintenance_work_mem`.
    pub maintenance_work_mem: Option<crate::config::MemorySize>,
    pub jobs: u32,
    /// `--major`: restore into a throwaway cluster of this (newer) major, an upgrade
    /// rehearsal; the evidence records both versions (`upgrade`).
    pub major: Option<u32>,
    pub env: &'a Env,
    /// Where evidence is written locally (default ./pgdrill-reports/<drill-id>/).
    pub report_dir: Option<PathBuf>,
    pub keep: bool,
    pub keep_on_failure: bool,
    /// `[[mirror]]` entries, for `mirror_parity` checks.
    pub mirrors: &'a [crate::mirror::MirrorSection],
    pub progress: Arc<Progress>,
    pub cancel: Cancel,
}

pub struct DrillOutcome {
    pub result: DrillResult,
    pub report_dir: PathBuf,
    /// Set when the restored database was kept: its URL (throwaway credentials) and how to stop it.
    pub kept: Option<(String, Option<String>)>,
    /// The drill's exit code (DESIGN.md §8): 0 pass, 1 fail, 3 the backup is corrupt, 4 the
    /// key does not open it.
    pub exit_code: u8,
}

/// Timestamped lines for drill.log.
struct Log {
    start: Instant,
    lines: Vec<String>,
}

impl Log {
    /// Seconds since the drill started.
    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn say(&mut self, msg: impl AsRef<str>) {
        let t = self.start.elapsed().as_secs_f64();
        self.lines.push(format!("[{:>8.2}s] {}", t, msg.as_ref()));
    }
}

pub async fn run(job: DrillJob<'_>) -> Result<DrillOutcome> {
    // A physical backup made by another tool (pgBackRest, barman-cloud, a command).
    let db = job.db;
    if let Some(p) = &db.drill_settings.physical {
        if let Some(n) = job.major {
            return Err(Error::Invalid(format!(
                "--major {n} rehearses an upgrade from pgdrill's own (logical) backups; {} is drilled from a physical backup, which only its own major can recover: leave out --major",
                db.name
            )));
        }
        return source::run(job, p).await;
    }
    let started_at = Timestamp::now();
    let id = DrillId::new(started_at);
    let mut log = Log {
        start: Instant::now(),
        lines: Vec::new(),
    };
    let specs = checks::parse_checks(&job.db.drill, job.env)?;
    let skipped_rule = checks::skipped_rule(&job.db.drill)?;
    let (store, store_name, listing, resolved) = pick_backup(&job).await?;
    let (manifest, warnings) = (resolved.manifest, resolved.warnings);
    for w in &warnings {
        log.say(format!("warning: {w}"));
    }
    log.say(format!(
        "drill {id} of {} backup {} (snapshot {})",
        job.db.name, manifest.backup_id, manifest.snapshot.time
    ));
    let snapshots: Vec<Timestamp> = listing
        .complete
        .iter()
        .filter_map(|m| time::parse(&m.snapshot.time))
        .collect();

    // Every stage of the timeline starts at its offset from the drill's start.
    let mut stages = vec![Stage::new("select backup", 0.0, log.elapsed())];
    // Target: a fresh database on the configured server, or a throwaway cluster.
    let t_target = log.elapsed();
    let mut cluster: Option<Cluster> = None;
    let (target, target_kind) = match &job.target {
        Some(_) if job.major.is_some() => {
            return Err(Error::Invalid(
                "--major restores into a throwaway cluster of that major: leave out the drill's target (--target, target_url_env)".into(),
            ))
        }
        Some(t) => (
            t.with_dbname(&format!(
                "pgdrill_drill_{}",
                id.as_str().to_ascii_lowercase().replace('-', "_")
            )),
            "server",
        ),
        None => {
            let install = match job.major {
                Some(n) => upgrade::install(job.tools, &manifest, n)?,
                None => job
                    .tools
                    .pick_server_with(manifest.restore_major(), &manifest.content.extensions)?,
            };
            log.say(format!(
                "starting a throwaway PostgreSQL {} cluster (source server {}, pg_dump {})",
                install.version, manifest.server.version, manifest.pg_dump.version
            ));
            job.progress.stage("start cluster");
            let c =
                tokio::task::spawn_blocking(move || Cluster::start(ClusterOptions::new(install)))
                    .await
                    .map_err(|e| Error::Failed(format!("the cluster start crashed: {e}")))?
                    .map_err(|e| Error::Failed(format!("cannot start a throwaway cluster: {e}")))?;
            let url = c.url(&manifest.source.dbname);
            cluster = Some(c);
            stages.push(Stage::new(
                "start throwaway cluster",
                t_target,
                log.elapsed() - t_target,
            ));
            (ConnSpec::parse_with_env(&url, &[])?, "ephemeral")
        }
    };
    log.say(format!("target {} ({target_kind})", target.redacted()));

    let t_restore = Instant::now();
    let base = log.elapsed();
    let restored = restore::run(RestoreJob {
        store,
        manifest: &manifest,
        target: target.clone(),
        source: job.db.source_spec(job.env).ok(),
        // A throwaway cluster this drill started cannot be anyone's protected server (and
        // would match an entry such as `localhost` by spelling).
        protected_targets: if cluster.is_some() {
            &[]
        } else {
            job.protected_targets
        },
        tools: job.tools,
        read: restore::read_opts(
            job.keys.clone(),
            job.progress.clone(),
            job.cancel.clone(),
            job.jobs,
        ),
        jobs: job.jobs,
        clean: false,
        allow_create: false,
        ignore_errors: job.ignore_errors,
        maintenance_work_mem: job.maintenance_work_mem.clone(),
        spool_dir: None,
        globals: false,
        spool: false,
        skip_extensions: job.skip_extensions,
    })
    .await;
    // A corrupt copy fails the drill (exit 3); the other stores holding the backup are named.
    let restored = match (restored, store_name) {
        (Err(e), Some(name)) => {
            Err(crate::stores::integrity_hint(e, job.read_from, name, &manifest).await)
        }
        (r, _) => r,
    };
    let mut error = None;
    let mut check_results: Vec<CheckResult> = Vec::new();
    let mut rto_seconds = None;
    let mut target_version = None;
    match &restored {
        Ok(r) => {
            log.say(format!(
                "restored in {:.1}s with {} (download {:.1}s, restore {:.1}s, analyze {:.1}s)",
                r.total_seconds,
                r.pg_restore,
                r.download_seconds,
                r.restore_seconds,
                r.analyze_seconds
            ));
            for s in &r.stages {
                log.say(format!("restore {}", crate::progress::describe(s)));
            }
            for e in &r.ignored_errors {
                log.say(format!("pg_restore error allowlisted: {e}"));
            }
            // What `verify` would fail on fails the drill too, though the restore did
            // without it (a missing or corrupt dump index).
            if !r.damaged.is_empty() {
                let said = r.damaged.join("; ");
                log.say(format!("the backup is damaged: {said}"));
                error = Some(said);
            }
            // What the restore's own timings leave out of its total comes first: the
            // guards, the plan and creating the database.
            let download = if r.mode == "spool" {
                r.download_seconds
            } else {
                0.0
            };
            let prepare =
                (r.total_seconds - download - r.restore_seconds - r.analyze_seconds).max(0.0);
            stages.push(Stage::new("prepare restore", base, prepare));
            let at = base + prepare;
            if r.mode == "spool" {
                stages.push(Stage::new("download", at, r.download_seconds));
                stages.push(Stage::new(
                    "restore",
                    at + r.download_seconds,
                    r.restore_seconds,
                ));
            } else {
                stages.push(Stage::new("download + restore", at, r.restore_seconds));
            }
            stages.push(Stage::new(
                "analyze",
                at + download + r.restore_seconds,
                r.analyze_seconds,
            ));
            rto_seconds = Some(r.total_seconds);
        }
        Err(e) => {
            log.say(format!("restore failed: {e}"));
            stages.push(Stage::new(
                "restore",
                base,
                t_restore.elapsed().as_secs_f64(),
            ));
            error = Some(e.to_string());
        }
    }

    if restored.is_ok() {
        job.progress.stage("checks");
        let t_checks = log.elapsed();
        let tc = Instant::now();
        match client::connect(&target).await {
            Ok(c) => {
                target_version = client::server_facts(&c, &target)
                    .await
                    .ok()
                    .map(|f| f.version.to_string());
                let results = run_checks(
                    &job,
                    &specs,
                    &c,
                    &target,
                    Some(&manifest),
                    &manifest.snapshot.time,
                    &mut log,
                )
                .await;
                check_results.extend(results);
                if let (Some(allow), Ok(r)) = (&skipped_rule, &restored) {
                    let r = checks::skipped_check(&r.skipped, allow);
                    log.say(format!(
                        "check {:?}: {} — {}",
                        r.name,
                        if r.passed { "pass" } else { "FAIL" },
                        r.actual
                    ));
                    check_results.push(r);
                }
            }
            Err(e) => {
                error = Some(format!("cannot connect to the restored database: {e}"));
                log.say(error.clone().unwrap_or_default());
            }
        }
        stages.push(Stage::new("checks", t_checks, tc.elapsed().as_secs_f64()));
    }

    let finished_at = Timestamp::now();
    let rpo = rpo(&manifest, &snapshots, started_at, job.policy);
    let rto = Target::evaluate(rto_seconds.map(|s| s / 60.0), job.policy.rto_minutes);
    let verdict_pass = error.is_none()
        && check_results.len() == specs.len() + usize::from(skipped_rule.is_some())
        && check_results.iter().all(|c| c.passed)
        && rpo.passed != Some(false)
        && rto.passed != Some(false);

    // Clean up unless asked to keep.
    let keep = job.keep || (job.keep_on_failure && !verdict_pass);
    let t_cleanup = log.elapsed();
    let mut kept = None;
    if keep && restored.is_ok() {
        let stop = cluster.take().map(|c| c.keep().stop_command);
        // A throwaway cluster's password is only known to us; a configured server's is the
        // user's own secret and is never printed.
        let url = match job.target {
            Some(_) => target.redacted(),
            None => command_url(&target),
        };
        kept = Some((url, stop));
        log.say("the restored database was kept (--keep)");
    } else {
        if job.target.is_some() && restored.is_ok() {
            let admin = target.with_dbname("postgres");
            if let Ok(c) = client::connect(&admin).await {
                match client::drop_database(&c, &admin, &target.dbname).await {
                    Ok(()) => log.say(format!("dropped {}", target.dbname)),
                    Err(e) => log.say(format!("could not drop {}: {e}", target.dbname)),
                }
            }
        }
        if let Some(c) = cluster.take() {
            let stopped = tokio::task::spawn_blocking(move || c.stop()).await;
            log.say(match stopped {
                Ok(Ok(())) => "the throwaway cluster was stopped and removed".to_string(),
                other => format!("the throwaway cluster did not stop cleanly: {other:?}"),
            });
        }
    }
    stages.push(Stage::new(
        if keep { "keep target" } else { "clean up" },
        t_cleanup,
        log.elapsed() - t_cleanup,
    ));
    stages.push(Stage::new("total", 0.0, log.elapsed()));

    let secrets = secrets(
        &target,
        job.db.source_spec(job.env).ok().as_ref(),
        &specs,
        job.env,
    );
    let mut result = DrillResult {
        schema_version: RESULT_SCHEMA_VERSION,
        drill_id: id.to_string(),
        database: job.db.name.to_string(),
        source: "pgdrill".into(),
        verdict: Verdict::from_passed(verdict_pass),
        started_at: time::rfc3339_millis(started_at),
        finished_at: time::rfc3339_millis(finished_at),
        tool: ToolVersion {
            name: "pgdrill".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        host: crate::lease::hostname(),
        backup: BackupRef {
            store: store_name.map(str::to_string),
            ..BackupRef::from_manifest(&manifest)
        },
        target: TargetInfo {
            kind: target_kind.into(),
            url: target.redacted(),
            server_version: target_version,
            kept: kept.is_some(),
        },
        stages,
        rpo,
        rto,
        checks: check_results,
        created_roles: restored
            .as_ref()
            .map(|r| r.created_roles.clone())
            .unwrap_or_default(),
        skipped: restored
            .as_ref()
            .map(|r| r.skipped.clone())
            .unwrap_or_default(),
        error,
        warnings,
        policy: serde_json::to_value(job.policy).unwrap_or_default(),
        recovery: None,
        upgrade: None,
    };
    if let Some(n) = job.major {
        result.upgrade = Some(upgrade::evidence(&manifest, n, &result.target));
    }
    // A backup that cannot be read fails the drill as it fails a restore: integrity (3) or
    // key (4), not just "failed" (1).
    let exit_code = match &restored {
        Err(e @ (Error::Integrity(_) | Error::Key(_))) => e.exit_code(),
        Ok(r) if !r.damaged.is_empty() => 3,
        _ if verdict_pass => 0,
        _ => 1,
    };
    conclude(&job, &id, result, &log, &secrets, kept, exit_code).await
}

/// How every drill ends: its result scrubbed of `secrets`, the evidence written to the store
/// and to the report directory (`pgdrill-reports/<id>` unless the job names one).
async fn conclude(
    job: &DrillJob<'_>,
    id: &DrillId,
    mut result: DrillResult,
    log: &Log,
    secrets: &[String],
    kept: Option<(String, Option<String>)>,
    exit_code: u8,
) -> Result<DrillOutcome> {
    let report_dir = job
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("pgdrill-reports").join(id.as_str()));
    scrub_result(&mut result, secrets);
    write_evidence(
        job.store,
        &job.db.name,
        id,
        &result,
        &log.lines,
        &report_dir,
        secrets,
    )
    .await?;
    Ok(DrillOutcome {
        result,
        report_dir,
        kept,
        exit_code,
    })
}

/// The backup a drill restores, the store it is read from (its name, when the stores are
/// named), that store's listing (for the RPO), and what choosing it passed over (warnings).
async fn pick_backup<'a>(
    job: &DrillJob<'a>,
) -> Result<(
    &'a Store,
    Option<&'a str>,
    catalog::Listing,
    catalog::Resolved,
)> {
    let db = &job.db.name;
    let (store, name) = match job.read_from {
        [] => (job.store, None),
        [(s, store)] => (store, Some(s.name.as_str())),
        many => {
            let src = crate::stores::resolve(many, db, job.selector).await?;
            let mut resolved = src.resolved;
            for line in src.passed_over.iter().rev() {
                resolved.warnings.insert(
                    0,
                    format!("{line}; reading from store {} instead", src.name),
                );
            }
            let listing = catalog::list(src.store, db).await?;
            return Ok((src.store, Some(src.name), listing, resolved));
        }
    };
    let listing = catalog::list(store, db).await?;
    // `latest` means what it means for `restore latest` (from the listing read anyway).
    let resolved = if job.selector == "latest" {
        catalog::latest_in(store, db, &listing)?
    } else {
        catalog::resolve(store, db, job.selector).await?
    };
    Ok((store, name, listing, resolved))
}

/// Runs `specs` in order against the restored database, each verdict a line of drill.log;
/// stops early when the drill is cancelled. Both kinds of drill (pgdrill's own backups and
/// physical ones, `source`) run their checks through it.
async fn run_checks(
    job: &DrillJob<'_>,
    specs: &[checks::CheckSpec],
    client: &tokio_postgres::Client,
    target: &ConnSpec,
    manifest: Option<&Manifest>,
    backup_time: &str,
    log: &mut Log,
) -> Vec<CheckResult> {
    let hidden_env = source_url_vars(job.env, job.db.source_spec(job.env).ok().as_ref());
    let mut lines = Vec::new();
    let mut results = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut ctx = CheckCtx {
            client,
            target,
            manifest,
            backup_time,
            env: job.env,
            log: &mut lines,
            hidden_env: &hidden_env,
            store: job.store,
            mirrors: job.mirrors,
        };
        let r = checks::run_check(spec, &mut ctx).await;
        log.lines.append(&mut lines);
        log.say(format!(
            "check {:?} ({}): {} — {}",
            r.name,
            r.kind,
            if r.passed { "pass" } else { "FAIL" },
            r.actual
        ));
        results.push(r);
        if job.cancel.is_cancelled() {
            break;
        }
    }
    results
}

/// RPO = drill start − the backup's snapshot time, and the worst gap between consecutive
/// complete backups within the retention window.
fn rpo(m: &Manifest, snapshots: &[Timestamp], now: Timestamp, policy: &Policy) -> Target {
    let snap = time::parse(&m.snapshot.time).unwrap_or(now);
    let current = time::seconds_between(snap, now) as f64 / 60.0;
    let window_secs = (policy.retention_days.unwrap_or(30) as i64).saturating_mul(86_400);
    let since = time::add_secs(now, -window_secs);
    let mut times: Vec<Timestamp> = snapshots.iter().copied().filter(|t| *t >= since).collect();
    times.sort();
    // One backup has no gap between backups: none is reported rather than 0.
    let worst_gap = times
        .windows(2)
        .map(|w| time::seconds_between(w[0], w[1]) as f64 / 60.0)
        .reduce(f64::max);
    let mut t = Target::evaluate(Some(current), policy.rpo_minutes);
    t.set_worst_gap(worst_gap);
    if let (Some(limit), Some(p), Some(gap)) = (policy.rpo_minutes, t.passed, worst_gap) {
        t.passed = Some(p && gap <= limit as f64);
    }
    t
}

/// Past drills of one database from the store, newest first.
pub async fn list(store: &Store, db: &crate::ids::DbName) -> Result<Vec<DrillResult>> {
    let mut out = Vec::new();
    for dir in store.list_dirs(&layout::drills_prefix(db)).await? {
        let Ok(id) = DrillId::parse(&dir) else {
            continue;
        };
        match store
            .get(&layout::drill_object(db, &id, "result.json"))
            .await
        {
            Ok(bytes) => {
                if let Ok(r) = serde_json::from_slice::<DrillResult>(&bytes) {
                    out.push(r);
                }
            }
            Err(pgdrill_store::StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    sort_newest_first(&mut out);
    Ok(out)
}

/// Newest first by start time (milliseconds), then id: ids only have second resolution and a
/// random suffix, so two drills started within one second would otherwise sort at random.
pub fn sort_newest_first(results: &mut [DrillResult]) {
    results.sort_by(|a, b| {
        (b.started_at.as_str(), b.drill_id.as_str())
            .cmp(&(a.started_at.as_str(), a.drill_id.as_str()))
    });
}
