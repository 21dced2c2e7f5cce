//! `serve`: the daemon. Scheduling, HTTP, metrics and the dashboard live in pgdrill-server;
//! this file hands it a runner that runs the same core jobs ([`pgdrill_core::jobs`]) as
//! `pgdrill backup`, `drill`, `prune`, `status` and `mirror run`, one database at a time.

use super::Output;
use crate::cli::ServeArgs;
use crate::context::Ctx;
use job::{outcome, run_job};
use pgdrill_core::cancel::Cancel;
use pgdrill_core::time::Timestamp;
use pgdrill_core::{Error, Result};
use pgdrill_server::{
    Daemon, JobFuture, JobKey, JobKind, JobLog, JobOutcome, JobRunner, Level, LogRecord, LogSink,
    ServeConfig,
};
use serde_json::json;
use std::sync::Arc;

mod job;

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
    let log = log_sink(ctx.ui, args.log_format == "json");
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
        policy: daemon_policy(&ctx.settings),
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

/// The daemon's log lines, `json` or text, on the terminal.
fn log_sink(ui: crate::ui::Ui, json: bool) -> LogSink {
    Arc::new(move |r: &LogRecord| {
        let line = log_line(json, Timestamp::now(), r);
        // Warnings and errors are shown even with --quiet.
        if r.level >= Level::Warn {
            eprintln!("{line}");
        } else {
            ui.info(line);
        }
    })
}

/// The policy handed to the daemon, as `status` judges it: with drill coverage, a drill is
/// due once per window.
fn daemon_policy(settings: &pgdrill_core::config::Settings) -> pgdrill_core::config::Policy {
    let mut p = settings.policy.clone();
    if let Some(c) = &settings.coverage {
        p.drill_max_age_days = p.drill_max_age_days.or(Some(c.days));
    }
    p
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
}
