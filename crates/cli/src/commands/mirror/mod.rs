//! `pgdrill mirror run|list|verify|restore|parity|prune` (docs/MIRROR.md).

mod read;

pub use crate::cli::mirror::{MirrorArgs, MirrorCommand, PruneArgs, RunArgs};

use super::Output;
use crate::context::Ctx;
use crate::ui::{human_bytes, table};
use pgdrill_core::jobs::{self, mirror::MirrorEntry};
use pgdrill_core::mirror::{self, MirrorPrunePlan};
use pgdrill_core::Result;
use pgdrill_store::Store;
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &MirrorArgs) -> Result<Output> {
    let store = ctx.store()?;
    match &args.command {
        MirrorCommand::Run(a) => run_mirrors(ctx, &store, a).await,
        MirrorCommand::List => list(ctx, &store).await,
        MirrorCommand::Verify(a) => read::verify(ctx, &store, a).await,
        MirrorCommand::Restore(a) => read::restore(ctx, &store, a).await,
        MirrorCommand::Parity(a) => read::parity(ctx, &store, a).await,
        MirrorCommand::Prune(a) => prune(ctx, &store, a).await,
    }
}

/// The one mirror a read command is about (`--name`, the only configured one, or the only
/// one in the store).
async fn select_one(ctx: &Ctx, store: &Store) -> Result<jobs::mirror::MirrorTarget> {
    jobs::mirror::select_one(&ctx.settings, ctx.name.as_deref(), store).await
}

fn store_place(ctx: &Ctx) -> Result<Option<pgdrill_core::mirror::Place>> {
    jobs::mirror::store_place(&ctx.settings)
}

/// Runs every selected mirror (the mirror job); a source that suddenly shrank or a failed
/// run alerts.
pub async fn run_mirrors(ctx: &Ctx, store: &Store, args: &RunArgs) -> Result<Output> {
    let input = jobs::mirror::RunInput {
        name: ctx.name.as_deref(),
        from: args.from.clone(),
        allow_drop: args.allow_drop,
        concurrency: args.concurrency,
    };
    let entries = jobs::mirror::run(&ctx.job_env(store), &input).await?;
    Ok(render_run(entries))
}

/// What `mirror run` prints (a source that shrank past its limit is an error on stderr too).
pub fn render_run(entries: Vec<MirrorEntry>) -> Output {
    let (mut reports, mut failures, mut human) = (Vec::new(), Vec::new(), String::new());
    let mut exit_code = 0;
    for entry in entries {
        match entry {
            MirrorEntry::Ran(r) => {
                if let Some(d) = &r.source_drop {
                    eprintln!("error: mirror {}: {}", r.name, d.message);
                    human.push_str(&format!(
                        "{}: no snapshot recorded: {}\n",
                        r.name, d.message
                    ));
                    exit_code = exit_code.max(1);
                } else {
                    human.push_str(&format!(
                        "{}: snapshot {} of {} objects ({}): {} copied ({}), {} unchanged, {} already stored{}\n",
                        r.name,
                        r.snapshot_id.as_ref().map(|i| i.to_string()).unwrap_or_default(),
                        r.objects,
                        human_bytes(r.bytes),
                        r.copied,
                        human_bytes(r.copied_bytes),
                        r.skipped_unchanged,
                        r.skipped_existing,
                        if r.vanished.is_empty() { String::new() } else { format!(", {} vanished during the run", r.vanished.len()) }
                    ));
                }
                reports.push(serde_json::to_value(&*r).unwrap_or_default());
            }
            MirrorEntry::Failed(name, e) => {
                exit_code = exit_code.max(e.exit_code());
                failures.push(
                    json!({"name": name, "error": e.to_string(), "exit_code": e.exit_code()}),
                );
            }
        }
    }
    Output {
        json: json!({"mirrors": reports, "failures": failures}),
        human,
        exit_code,
    }
}

async fn list(ctx: &Ctx, store: &Store) -> Result<Output> {
    let t = select_one(ctx, store).await?;
    let snaps = mirror::list_snapshots(store, &t.name).await?;
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.snapshot_id.to_string(),
                super::local_time(
                    &ctx.settings.schedule.tz,
                    &pgdrill_core::time::chrono_compat::to_rfc3339(s.time),
                ),
                human_bytes(s.manifest_bytes),
            ]
        })
        .collect();
    Ok(Output::ok(
        json!({"name": t.name, "snapshots": snaps}),
        table(&["SNAPSHOT", "TIME", "MANIFEST"], &rows),
    ))
}

/// Snapshot and object retention of every selected mirror (also run by `pgdrill prune`).
pub async fn prune(ctx: &Ctx, store: &Store, args: &PruneArgs) -> Result<Output> {
    let overrides = jobs::mirror::PruneOverrides {
        dry_run: args.dry_run,
        keep_last: args.keep_last,
        keep_within_days: args.keep_within_days,
    };
    let plans = jobs::mirror::prune(&ctx.job_env(store), ctx.name.as_deref(), &overrides).await?;
    Ok(render_prune(&plans))
}

/// What `mirror prune` (and `pgdrill prune`, for the mirrors) prints.
pub fn render_prune(plans: &[MirrorPrunePlan]) -> Output {
    let mut docs = Vec::new();
    let mut human = String::new();
    for p in plans {
        human.push_str(&format!(
            "mirror {}: {} snapshots kept, {} deleted, {} unreferenced objects ({}) deleted{}\n",
            p.name,
            p.keep.len(),
            p.delete_snapshots.len(),
            p.delete_objects.len(),
            human_bytes(p.delete_bytes),
            if p.dry_run {
                " (dry run: nothing was deleted)"
            } else {
                ""
            }
        ));
        let mut rows: Vec<Vec<String>> = p
            .keep
            .iter()
            .map(|k| {
                vec![
                    k.snapshot_id.to_string(),
                    "keep".into(),
                    k.reasons.join("; "),
                ]
            })
            .collect();
        rows.extend(
            p.delete_snapshots
                .iter()
                .map(|id| vec![id.to_string(), "delete".into(), String::new()]),
        );
        human.push_str(&table(&["SNAPSHOT", "ACTION", "WHY"], &rows));
        docs.push(serde_json::to_value(p).unwrap_or_default());
    }
    Output::ok(json!({"prune": docs}), human)
}
