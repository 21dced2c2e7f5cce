//! `pgdrill backup`: runs the backup job ([`pgdrill_core::jobs::backup`]) and prints each
//! backup's id.

use super::Output;
use crate::context::Ctx;
use crate::ui::{human_bytes, human_secs};
use pgdrill_core::alert::EventKind;
use pgdrill_core::ids::DbName;
use pgdrill_core::jobs::backup::{self, BackupInput, BackupReport};
use pgdrill_core::Result;
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &crate::cli::BackupArgs) -> Result<Output> {
    // The tools' probes (`pg_config`, `pg_dump --version`) run while the lease is taken
    // and the snapshot opened.
    let tools = pgdrill_core::backup::Tools::discover();
    // A server that could not be listed fails the run (exit 1) and alerts, after the others'
    // databases are backed up.
    let unlisted = ctx.fleet.errors();
    let databases = match ctx.settings.select(ctx.name.as_deref()) {
        Ok(d) => d,
        Err(e) => return Err(unlisted.into_iter().next().map(|(_, e)| e).unwrap_or(e)),
    };
    let store = ctx.store()?;
    if ctx.name.is_none() && !unlisted.is_empty() {
        let jx = ctx.job_env(&store);
        let notifier = jx.notifier()?;
        for (server, e) in &unlisted {
            notifier
                .send(
                    EventKind::BackupFailed,
                    server,
                    e.to_string(),
                    json!({"server": server}),
                )
                .await;
        }
    }
    let keys = ctx.encryption_keys()?;
    if !keys.enabled() {
        ctx.ui.warn("backups are not encrypted: set [encryption] recipients or passphrase_env (or --recipient)");
    }
    let input = BackupInput {
        databases,
        keys: &keys,
        tools: &tools,
        configured: ctx.config_path.is_some(),
        jobs: args.jobs,
        stores: ctx.named_stores(&store)?,
    };
    let mut report = match backup::run(&ctx.job_env(&store), input).await {
        Ok(r) => r,
        Err(e) if unlisted.is_empty() || ctx.name.is_some() => return Err(e),
        Err(e) => {
            ctx.ui.warn(e.to_string());
            BackupReport::default()
        }
    };
    if ctx.name.is_none() {
        for (server, e) in unlisted {
            if let Ok(n) = DbName::parse(&server) {
                report.failures.push((n, e));
            }
        }
    }
    Ok(render(ctx, &report))
}

fn render(ctx: &Ctx, report: &BackupReport) -> Output {
    let done = &report.done;
    let mut human = String::new();
    for m in done {
        human.push_str(&format!("{}\n", m.backup_id));
        ctx.ui.info(format!(
            "{}: {} raw, {} stored, {} tables, {} in {}",
            m.database,
            human_bytes(m.raw_bytes),
            human_bytes(m.stored_bytes),
            m.content.tables.len(),
            if m.encrypted() {
                "encrypted"
            } else {
                "not encrypted"
            },
            human_secs(m.stage_seconds.get("total").copied().unwrap_or(0.0)),
        ));
    }
    let summaries: Vec<_> = done
        .iter()
        .zip(
            report
                .stages
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .zip(
            report
                .copies
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .map(|((m, stages), copies)| {
            json!({
                "copies": copies.cloned().unwrap_or_default(),
                "stages": stages.cloned().unwrap_or_default(),
                "database": m.database,
                "backup_id": m.backup_id,
                "raw_bytes": m.raw_bytes,
                "stored_bytes": m.stored_bytes,
                "tables": m.content.tables.len(),
                "duration_seconds": m.stage_seconds.get("total"),
                "snapshot_time": m.snapshot.time,
            })
        })
        .collect();
    let failures: Vec<_> = report
        .failures
        .iter()
        .map(|(db, e)| json!({"database": db, "error": e.to_string(), "exit_code": e.exit_code()}))
        .collect();
    // A backup missing from a store is degraded: the run failed (exit 1), the copies that
    // completed stay valid.
    let degraded = report.copies.iter().flatten().any(|c| !c.ok);
    for (m, copies) in done.iter().zip(&report.copies) {
        for c in copies.iter().filter(|c| !c.ok) {
            ctx.ui.warn(format!(
                "backup {} is degraded: store {} lacks its copy: {}",
                m.backup_id,
                c.store,
                c.error.as_deref().unwrap_or("the copy failed")
            ));
        }
    }
    Output {
        exit_code: if failures.is_empty() && !degraded {
            0
        } else {
            1
        },
        json: json!({"backups": summaries, "failures": failures}),
        human,
    }
}
