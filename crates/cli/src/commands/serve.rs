//! `serve`: the daemon. Scheduling, HTTP, metrics and the dashboard live in pgdrill-server;
//! this file hands it a runner that runs the same core jobs ([`pgdrill_core::jobs`]) as
//! `pgdrill backup`, `drill`, `prune`, `status` and `mirror run`, one database at a time.

use super::Output;
use crate::cli::ServeArgs;
use crate::context::Ctx;
use pgdrill_core::cancel::Cancel;
use pgdrill_core::jobs::{
    self,
    drill::{DrillEntry, DrillReport},
};
use pgdrill_core::time::Timestamp;
use pgdrill_core::{Error, Result};
use pgdrill_server::{
    Daemon, JobFuture, JobKey, JobKind, JobLog, JobOutcome, JobRunner, Level, LogRecord, LogSink,
    ServeConfig,
};
use serde_json::json;
use std::sync::Arc;

pub async fn run(ctx: &Ctx, args: &ServeArgs) -> Result<Output> {
    let mut config = ServeConfig::from_settings(
        &ctx.settings.schedule,
        &ctx.settings.serve,
        &ctx.env,
        args.listen.as_deref(),
    )?;
    config.drill_coverage = ctx.settings.coverage.as_ref().map(|c| c.max_concurrent);
    config.drill_coverage_days = ctx.settings.coverage.as_ref().map(|c| c.days);
    let store = ctx.store()?;
    let databases = ctx.databases_to_list(&store).await?;
    if databases.is_empty() {
        return Err(Error::Invalid(
            "serve has nothing to do: add a [[database]] entry (or --source URL) to back up and drill"
                .into(),
        ));
    }
    let listen = config.listen;
    let ui = ctx.ui;
    let json_log = args.log_format == "json";
    let log: LogSink = Arc::new(move |r: &LogRecord| {
        let line = log_line(json_log, Timestamp::now(), r);
        // Warnings and errors are shown even with --quiet.
        if r.level >= Level::Warn {
            eprintln!("{line}");
        } else {
            ui.info(line);
        }
    });
    let runner = CliRunner {
        ctx,
        log: log.clone(),
        fresh: std::cell::RefCell::new(None),
    };
    let stores = ctx
        .stores()?
        .into_iter()
        .map(|(s, store)| (s.name, store))
        .collect();
    pgdrill_server::run(Daemon {
        config,
        store,
        stores,
        databases,
        policy: {
            // As `status` judges it: with drill coverage, a drill is due once per window.
            let mut p = ctx.settings.policy.clone();
            if let Some(c) = &ctx.settings.coverage {
                p.drill_max_age_days = p.drill_max_age_days.or(Some(c.days));
            }
            p
        },
        runner: &runner,
        shutdown: ctx.cancel.clone(),
        clock: Arc::new(pgdrill_server::SystemClock),
        log,
    })
    .await?;
    Ok(Output::ok(
        json!({"serve": {"listen": listen.to_string(), "stopped": true}}),
        String::new(),
    ))
}

struct CliRunner<'c> {
    ctx: &'c Ctx,
    /// The settings and fleet of the last `[[server]]` discovery, once one ran.
    fresh: std::cell::RefCell<Option<(pgdrill_core::config::Settings, pgdrill_core::fleet::Fleet)>>,
    /// A job's own messages, warnings and stages become daemon log lines naming the job.
    log: LogSink,
}

impl JobRunner for CliRunner<'_> {
    fn supports(&self, kind: JobKind) -> bool {
        let _ = kind;
        true
    }

    fn discover(&self) -> pgdrill_server::jobs::DiscoverFuture<'_> {
        Box::pin(async move {
            if self.ctx.settings.servers.is_empty() {
                return None;
            }
            let mut ctx = self.ctx.for_job(None, self.ctx.cancel.clone());
            if let Err(e) = ctx.discover().await {
                self.ctx.ui.warn(format!("serve: discovery: {e}"));
                return None;
            }
            let store = ctx.store().ok()?;
            let names = ctx.databases_to_list(&store).await.ok()?;
            *self.fresh.borrow_mut() = Some((ctx.settings, ctx.fleet));
            Some(names)
        })
    }

    fn run<'a>(
        &'a self,
        job: &'a JobKey,
        slot: Option<Timestamp>,
        cancel: Cancel,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            let mut ctx = self
                .ctx
                .for_job(job.database.as_ref().map(|d| d.as_str()), cancel);
            if let Some((settings, fleet)) = self.fresh.borrow().clone() {
                ctx.settings = settings;
                ctx.fleet = fleet;
            }
            // A database dropped from its server (or excluded) keeps prune and status only.
            if let Some(db) = &job.database {
                let retired = ctx.fleet.retired().any(|d| d == db);
                if retired && matches!(job.kind, JobKind::Backup | JobKind::Drill) {
                    return JobOutcome {
                        ok: true,
                        skipped: true,
                        summary: format!(
                            "{db} is no longer backed up from its server: nothing to {}",
                            job.kind.name()
                        ),
                        retry: false,
                    };
                }
                // Another replica on the same store already did this slot's run.
                if let Some(done) = slot_done(&ctx, job.kind, db, slot).await {
                    return JobOutcome {
                        ok: true,
                        skipped: true,
                        summary: done,
                        retry: false,
                    };
                }
            }
            let events = JobLog {
                sink: self.log.clone(),
                key: job.clone(),
                verbose: ctx.ui.verbose > 0,
            };
            let summary = run_job(&ctx, job, slot, &events).await;
            outcome(job.kind, summary)
        })
    }
}

/// Runs one scheduled job through the same core job as its command, and says how it went:
/// `Ok((ok, summary))`, or the error that stopped it.
async fn run_job(
    ctx: &Ctx,
    job: &JobKey,
    slot: Option<Timestamp>,
    events: &JobLog,
) -> Result<(bool, String)> {
    let store = ctx.store()?;
    let mut jx = ctx.job_env(&store);
    jx.events = events;
    jx.slot = slot;
    let name = ctx.name.as_deref();
    match job.kind {
        JobKind::Backup => {
            let keys = ctx.encryption_keys()?;
            let tools = pgdrill_core::backup::Tools::found(ctx.tools());
            let input = jobs::backup::BackupInput {
                databases: ctx.settings.select(name)?,
                keys: &keys,
                tools: &tools,
                configured: true,
                jobs: None,
                stores: ctx.named_stores(&store)?,
            };
            let r = jobs::backup::run(&jx, input).await?;
            let done = r.done.iter().map(|m| {
                format!(
                    "backup {} ({} stored)",
                    m.backup_id,
                    pgdrill_core::summary::human_bytes(m.stored_bytes)
                )
            });
            let failed = r.failures.iter().map(|(_, e)| e.to_string());
            let degraded = r.copies.iter().flatten().filter(|c| !c.ok).map(|c| {
                format!(
                    "store {} lacks its copy: {}",
                    c.store,
                    c.error.as_deref().unwrap_or("the copy failed")
                )
            });
            let summary = done
                .chain(failed)
                .chain(degraded)
                .collect::<Vec<_>>()
                .join("; ");
            let all_copies = r.copies.iter().flatten().all(|c| c.ok);
            Ok((r.failures.is_empty() && all_copies, summary))
        }
        JobKind::Drill => {
            // The evidence goes to the store (the dashboard serves it from there); the
            // local copy is only a by-product, kept out of the daemon's working dir.
            let dir = tempfile::tempdir().map_err(|e| {
                Error::Failed(format!(
                    "cannot create a folder for the drill evidence: {e}"
                ))
            })?;
            let tools = ctx.tools();
            let read_from = ctx.read_stores()?;
            let input = jobs::drill::DrillInput {
                name,
                selector: "latest",
                target: None,
                report_dir: Some(dir.path().join("report")),
                keep: false,
                keep_on_failure: false,
                jobs: None,
                major: None,
                keys: ctx.decryption_keys()?,
                tools: &tools,
                read_from: &read_from,
            };
            let r = jobs::drill::run(&jx, input).await?;
            Ok((r.exit_code() == 0, drill_summary(&r)))
        }
        JobKind::Prune => {
            let databases = ctx.databases_to_list(&store).await?;
            let stores = ctx.stores()?;
            let r = jobs::prune::run(&jx, &stores, databases, name, false).await?;
            let lines: Vec<String> = r
                .databases
                .iter()
                .map(|(db, o)| {
                    let p = &o.plan;
                    let at = o
                        .store
                        .as_ref()
                        .map(|s| format!(" in store {s}"))
                        .unwrap_or_default();
                    format!(
                        "{db}{at}: {} kept, {} deleted, {} incomplete removed",
                        p.keep.len(),
                        p.delete.len(),
                        p.delete_incomplete.len()
                    )
                })
                .collect();
            let mirrors = r.mirrors.as_deref().unwrap_or_default();
            let mirror_lines = super::mirror::render_prune(mirrors).human;
            let mirror_lines = mirror_lines.lines().filter(|l| l.contains(" kept, "));
            let all: Vec<&str> = lines
                .iter()
                .map(String::as_str)
                .chain(mirror_lines)
                .collect();
            let all: Vec<&str> = all
                .into_iter()
                .chain(r.store_errors.iter().map(String::as_str))
                .collect();
            Ok((r.store_errors.is_empty(), all.join("; ")))
        }
        JobKind::Status => {
            let databases = ctx.databases_to_list(&store).await?;
            let stores = ctx.stores()?;
            let report = jobs::status::run_fleet(&jx, &stores, databases, &ctx.fleet).await?;
            let mut violated: Vec<&str> = report
                .databases
                .iter()
                .flat_map(|d| d.slos.iter())
                .filter(|slo| !slo.ok)
                .map(|slo| slo.name.as_str())
                .collect();
            if report.coverage.as_ref().is_some_and(|c| !c.ok) {
                violated.push("drill_coverage");
            }
            Ok(status_outcome(&violated))
        }
        JobKind::Mirror => {
            let input = jobs::mirror::RunInput {
                name,
                ..Default::default()
            };
            let entries = jobs::mirror::run(&jx, &input).await?;
            let out = super::mirror::render_run(entries);
            let first = out.human.lines().next().unwrap_or_default().to_string();
            Ok((out.exit_code == 0, first))
        }
    }
}

/// Why a scheduled backup or drill of `db` for `slot` need not run: the store shows one
/// started at or after the slot's fire time (another replica's). A store that cannot be read
/// answers `None`: the job then runs and meets the same store itself.
async fn slot_done(
    ctx: &Ctx,
    kind: JobKind,
    db: &pgdrill_core::ids::DbName,
    slot: Option<Timestamp>,
) -> Option<String> {
    use pgdrill_core::jobs::slot::{self, Recorded};
    let recorded = match kind {
        JobKind::Backup => Recorded::Backup,
        JobKind::Drill => Recorded::Drill,
        _ => return None,
    };
    let slot = slot?;
    let store = ctx.store().ok()?;
    let what = slot::done(&store, db, recorded, slot).await.ok()??;
    Some(format!(
        "the run due at {slot} was already done by another instance ({what})"
    ))
}

/// One daemon log line at `ts`: `2026-12-06T08:20:00.123Z INFO  serve: ...` (RFC 3339,
/// UTC, the level), or with `json` one object `{"ts", "level", "component", "msg"}` plus
/// `job`, `database`, `backup_id`, `drill_id` where known ([`pgdrill_server::log`]).
fn log_line(json: bool, ts: Timestamp, r: &LogRecord) -> String {
    let ts = pgdrill_core::time::rfc3339_millis(ts);
    pgdrill_server::log::render(json, &ts, r)
}

/// The status job's verdict is the SLO verdict: a violated SLO is not an "ok" job (the
/// dashboard, the log line and `pgdrill_job_last_run_ok` would otherwise show a green "ok"
/// next to "SLO violated").
fn status_outcome(violated: &[&str]) -> (bool, String) {
    if violated.is_empty() {
        (true, "all SLOs met".into())
    } else {
        (false, format!("SLO violated: {}", violated.join(", ")))
    }
}

/// One line about a drill run: the drill's id, verdict and checks, or the first database
/// that could not be drilled.
fn drill_summary(r: &DrillReport) -> String {
    if let [DrillEntry::Ran(o)] = r.entries.as_slice() {
        let d = &o.result;
        return format!(
            "drill {} {}: {}/{} checks passed{}",
            d.drill_id,
            d.verdict,
            d.checks.iter().filter(|c| c.passed).count(),
            d.checks.len(),
            d.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    match r.entries.first() {
        Some(DrillEntry::Ran(o)) => super::drill::render(&o.result)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        Some(DrillEntry::CouldNotRun(db, e)) => format!("{db}: cannot drill: {e}"),
        None => String::new(),
    }
}

/// A job's verdict and one line about it: a backup or prune that failed for any database, or
/// a failing drill, is not ok; a job another host holds the lease of is skipped.
fn outcome(kind: JobKind, result: Result<(bool, String)>) -> JobOutcome {
    let _ = kind;
    match result {
        Ok((ok, summary)) => JobOutcome {
            ok,
            skipped: false,
            summary,
            retry: false,
        },
        Err(e) => {
            // Another host or daemon runs this job now: not a failure of this one; tried
            // again later in case it dies holding the lease.
            let locked = matches!(e, Error::Locked(_));
            JobOutcome {
                ok: false,
                skipped: locked,
                summary: e.to_string(),
                retry: locked,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_log_lines_carry_a_utc_timestamp_as_text_or_json() {
        let ts: Timestamp = "2026-12-06T08:20:00.5Z".parse().expect("ts");
        assert_eq!(
            log_line(false, ts, &LogRecord::info("stopped")),
            "2026-12-06T08:20:00.500Z INFO  serve: stopped"
        );
        let line = log_line(
            true,
            ts,
            &LogRecord::info("backup of app failed in 1.0s: \"quoted\"\nnext"),
        );
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["ts"], "2026-12-06T08:20:00.500Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["component"], "serve");
        assert_eq!(v["msg"], "backup of app failed in 1.0s: \"quoted\"\nnext");
    }

    #[test]
    fn a_violated_slo_is_not_an_ok_status_job() {
        let (ok, summary) = status_outcome(&["drill_freshness", "rto"]);
        assert!(!ok, "{summary}");
        assert_eq!(summary, "SLO violated: drill_freshness, rto");
        let o = outcome(JobKind::Status, Ok((ok, summary)));
        assert!(!o.ok && !o.skipped);
        assert_eq!(status_outcome(&[]), (true, "all SLOs met".to_string()));
    }

    #[test]
    fn lease_conflict_is_a_skipped_job_not_a_failure() {
        for kind in [JobKind::Backup, JobKind::Drill, JobKind::Prune] {
            let o = outcome(
                kind,
                Err(Error::Locked("app is locked by a backup job".into())),
            );
            assert!(o.skipped && !o.ok, "{kind:?}");
            let o = outcome(kind, Err(Error::Failed("pg_dump failed".into())));
            assert!(!o.skipped && !o.ok, "{kind:?}");
        }
    }
}
