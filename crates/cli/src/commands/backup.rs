use super::operate::LEASE_TTL;
use super::Output;
use crate::context::Ctx;
use crate::ui::{human_bytes, human_secs};
use pgdrill_core::alert::EventKind;
use pgdrill_core::backup::{self, BackupJob};
use pgdrill_core::cancel::Cancel;
use pgdrill_core::progress::Progress;
use pgdrill_core::{lease, status};
use pgdrill_core::{Error, Result};
use serde_json::json;

pub async fn run(ctx: &Ctx) -> Result<Output> {
    let databases = ctx.settings.select(ctx.name.as_deref())?;
    let several = databases.len() > 1;
    let store = ctx.store()?;
    let keys = ctx.encryption_keys()?;
    if !keys.enabled() {
        ctx.ui.warn("backups are not encrypted: set [encryption] recipients or passphrase_env (or --recipient)");
    }
    let tools = ctx.tools();
    let notifier = crate::alerts::Notifier::new(ctx, &store)?;
    let mut done = Vec::new();
    let mut failures = Vec::new();
    let mut first_error: Option<Error> = None;
    for db in databases {
        let source = match db.source_spec(&ctx.env) {
            Ok(s) => s,
            Err(e) => {
                failures.push(json!({"database": db.name, "error": e.to_string(), "exit_code": e.exit_code()}));
                first_error.get_or_insert(e);
                continue;
            }
        };
        ctx.ui.info(format!(
            "backing up {} ({}) to {}",
            db.name,
            source.redacted(),
            store.display()
        ));
        let progress = Progress::new();
        let _guard = ctx.ui.progress(progress.clone());
        notifier
            .send(
                ctx,
                EventKind::JobStarted,
                db.name.as_str(),
                format!("backup of {} started", db.name),
                json!({}),
            )
            .await;
        let result = match lease::acquire(&store, &db.name, "backup", LEASE_TTL).await {
            Ok(held) => {
                super::operate::warn_lease(ctx, &db.name, &held);
                let job = BackupJob {
                    store: &store,
                    db,
                    source,
                    keys: &keys,
                    tools: &tools,
                    compression_level: ctx.settings.compression_level,
                    compression_threads: ctx.settings.compression_threads,
                    part_size: ctx.settings.part_size,
                    max_in_flight: ctx.settings.max_in_flight,
                    lock_wait_timeout: ctx.settings.lock_wait_timeout,
                    policy: &ctx.settings.policy,
                    progress,
                    // A lost lease stops the backup as a signal would.
                    cancel: Cancel::either(&ctx.cancel, &held.lost_signal()),
                    lease: Some(&held),
                };
                let r = backup::run(job).await;
                // Ended by its lost lease: say so rather than "cancelled".
                let r = match (r, held.lost().await) {
                    (Err(_), Some(lost)) => Err(lost),
                    (r, _) => r,
                };
                held.release().await;
                r
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(m) => {
                if let Some(audit) = &db.audit {
                    if let Ok(spec) = db.source_spec(&ctx.env) {
                        if let Err(e) = pgdrill_core::audit::write(&spec, audit, &m).await {
                            ctx.ui.warn(format!(
                                "the audit row for {} was not written (the backup is fine): {e}",
                                m.backup_id
                            ));
                        }
                    }
                }
                let was_failing = status::read_failure(&store, &db.name).await.is_some();
                let kind = if was_failing {
                    EventKind::Recovered
                } else {
                    EventKind::BackupSucceeded
                };
                let summary = format!(
                    "backup {} of {} completed ({} bytes stored)",
                    m.backup_id, m.database, m.stored_bytes
                );
                notifier
                    .send(
                        ctx,
                        kind,
                        db.name.as_str(),
                        summary,
                        json!({"backup_id": m.backup_id}),
                    )
                    .await;
                if was_failing {
                    status::clear_failure(&store, &db.name).await;
                }
                done.push(m)
            }
            Err(e) => {
                let e = e.context(format!("backup of {}", db.name));
                if several {
                    ctx.ui.warn(e.to_string());
                }
                if !matches!(e, Error::Locked(_)) {
                    if pgdrill_core::hints::worth_recording(
                        &store,
                        &db.name,
                        &e,
                        ctx.config_path.is_some(),
                    )
                    .await
                    {
                        status::record_failure(&store, &db.name, "backup", &e.to_string()).await;
                    }
                    notifier
                        .send(
                            ctx,
                            EventKind::BackupFailed,
                            db.name.as_str(),
                            e.to_string(),
                            json!({"exit_code": e.exit_code()}),
                        )
                        .await;
                }
                failures.push(json!({"database": db.name, "error": e.to_string(), "exit_code": e.exit_code()}));
                first_error.get_or_insert(e);
            }
        }
        if ctx.cancel.is_cancelled() {
            break;
        }
    }
    if done.is_empty() {
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let mut human = String::new();
    for m in &done {
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
        .map(|m| {
            json!({
                "database": m.database,
                "backup_id": m.backup_id,
                "raw_bytes": m.raw_bytes,
                "stored_bytes": m.stored_bytes,
                "tables": m.content.tables.len(),
                "seconds": m.stage_seconds.get("total"),
                "snapshot_time": m.snapshot.time,
            })
        })
        .collect();
    Ok(Output {
        json: json!({"backups": summaries, "failures": failures}),
        human,
        exit_code: if failures.is_empty() { 0 } else { 1 },
    })
}
