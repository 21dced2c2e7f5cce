//! `serve`: the daemon. Scheduling, HTTP, metrics and the dashboard live in pgdrill-server;
//! this file hands it a runner that runs the same command functions as `pgdrill backup`,
//! `drill`, `prune` and `status`, one database at a time (`--name`).

use super::Output;
use crate::cli::{DrillArgs, PruneArgs, ServeArgs, StatusArgs};
use crate::context::Ctx;
use pgdrill_core::cancel::Cancel;
use pgdrill_core::{Error, Result};
use pgdrill_server::{Daemon, JobFuture, JobKey, JobKind, JobOutcome, JobRunner, ServeConfig};
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn run(ctx: &Ctx, args: &ServeArgs) -> Result<Output> {
    let config = ServeConfig::from_sections(
        &ctx.settings.schedule,
        &ctx.settings.serve,
        &ctx.settings.policy,
        &ctx.env,
        args.listen.as_deref(),
    )?;
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
    let runner = CliRunner { ctx };
    pgdrill_server::run(Daemon {
        config,
        store,
        databases,
        policy: ctx.settings.policy.clone(),
        runner: &runner,
        shutdown: ctx.cancel.clone(),
        clock: Arc::new(pgdrill_server::SystemClock),
        log: Arc::new(move |m: &str| ui.info(m)),
    })
    .await?;
    Ok(Output::ok(
        json!({"serve": {"listen": listen.to_string(), "stopped": true}}),
        String::new(),
    ))
}

struct CliRunner<'c> {
    ctx: &'c Ctx,
}

impl JobRunner for CliRunner<'_> {
    fn supports(&self, kind: JobKind) -> bool {
        let _ = kind;
        true
    }

    fn run<'a>(&'a self, job: &'a JobKey, cancel: Cancel) -> JobFuture<'a> {
        Box::pin(async move {
            let ctx = self
                .ctx
                .for_job(job.database.as_ref().map(|d| d.as_str()), cancel);
            let result = match job.kind {
                JobKind::Backup => super::backup::run(&ctx).await,
                JobKind::Drill => {
                    // The evidence goes to the store (the dashboard serves it from there); the
                    // local copy is only a by-product, kept out of the daemon's working dir.
                    let dir = tempfile::tempdir().map_err(|e| {
                        Error::Failed(format!(
                            "cannot create a folder for the drill evidence: {e}"
                        ))
                    });
                    match dir {
                        Ok(dir) => {
                            let args = DrillArgs {
                                backup: "latest".into(),
                                target: None,
                                report_dir: Some(dir.path().join("report")),
                                keep: false,
                                keep_on_failure: false,
                                jobs: None,
                            };
                            super::drill::run(&ctx, &args).await
                        }
                        Err(e) => Err(e),
                    }
                }
                JobKind::Prune => super::operate::prune(&ctx, &PruneArgs { dry_run: false }).await,
                JobKind::Status => {
                    super::operate::status(&ctx, &StatusArgs { prometheus: None }).await
                }
                JobKind::Mirror => match ctx.store() {
                    Ok(store) => {
                        let args = super::mirror::RunArgs {
                            from: None,
                            allow_drop: false,
                            concurrency: None,
                        };
                        super::mirror::run_mirrors(&ctx, &store, &args).await
                    }
                    Err(e) => Err(e),
                },
            };
            outcome(job.kind, result)
        })
    }
}

/// A job's verdict and one line about it: a backup or prune that failed for any database, or
/// a failing drill, is not ok; `status` is ok whenever it could evaluate (its SLO verdict is
/// in the SLO metrics, not in the job's).
fn outcome(kind: JobKind, result: Result<Output>) -> JobOutcome {
    let out = match result {
        Ok(o) => o,
        Err(e) => {
            return JobOutcome {
                ok: false,
                // Another host or daemon runs this job now: not a failure of this one.
                skipped: matches!(e, Error::Locked(_)),
                summary: e.to_string(),
            };
        }
    };
    let j = &out.json;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let summary = match kind {
        JobKind::Backup => {
            let done: Vec<String> = j["backups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    format!(
                        "backup {} ({} bytes stored)",
                        s(&b["backup_id"]),
                        b["stored_bytes"]
                    )
                })
                .collect();
            let failed: Vec<String> = j["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| s(&f["error"]))
                .collect();
            [done, failed].concat().join("; ")
        }
        JobKind::Drill => match j.get("drill_id") {
            Some(id) => format!(
                "drill {} {}: {}/{} checks passed{}",
                s(id),
                s(&j["verdict"]),
                j["checks"].as_array().map_or(0, |c| c
                    .iter()
                    .filter(|c| c["passed"] == json!(true))
                    .count()),
                j["checks"].as_array().map_or(0, Vec::len),
                j["error"]
                    .as_str()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            None => out.human.lines().next().unwrap_or_default().to_string(),
        },
        JobKind::Prune => out
            .human
            .lines()
            .filter(|l| l.contains(" kept, "))
            .collect::<Vec<_>>()
            .join("; "),
        JobKind::Status => {
            let violated: Vec<String> = j["databases"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|d| d["slos"].as_array().cloned().unwrap_or_default())
                .filter(|slo| slo["ok"] == json!(false))
                .map(|slo| s(&slo["name"]))
                .collect();
            if violated.is_empty() {
                "all SLOs met".into()
            } else {
                format!("SLO violated: {}", violated.join(", "))
            }
        }
        JobKind::Mirror => out.human.lines().next().unwrap_or_default().to_string(),
    };
    JobOutcome {
        ok: kind == JobKind::Status || out.exit_code == 0,
        skipped: false,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
