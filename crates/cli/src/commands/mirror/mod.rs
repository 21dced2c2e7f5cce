//! `pgdrill mirror run|list|verify|restore|parity|prune` (docs/MIRROR.md).

mod args;
mod read;

pub use args::{MirrorArgs, MirrorCommand, PruneArgs, RunArgs};

use super::Output;
use crate::context::Ctx;
use crate::ui::{human_bytes, table};
use pgdrill_core::alert::EventKind;
use pgdrill_core::mirror::{self, config::default_options, Location, MirrorName, MirrorSection};
use pgdrill_core::mirror::{Place, RunJob};
use pgdrill_core::progress::Progress;
use pgdrill_core::{Error, Result};
use pgdrill_store::{Store, StoreOptions};
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

/// A mirror a command acts on, with its config entry when there is one.
struct Target {
    name: MirrorName,
    section: Option<MirrorSection>,
}

impl Target {
    fn options(&self, ctx: &Ctx) -> Result<StoreOptions> {
        match &self.section {
            Some(s) => s.source_options(&ctx.env),
            None => Ok(default_options(&ctx.env)),
        }
    }
}

fn named(ctx: &Ctx, n: &str) -> Result<Target> {
    let name = MirrorName::parse(n).map_err(Error::Invalid)?;
    let section = ctx
        .settings
        .mirrors
        .iter()
        .find(|m| m.name == name.as_str())
        .cloned();
    Ok(Target { name, section })
}

fn configured(ctx: &Ctx) -> Result<Vec<Target>> {
    ctx.settings
        .mirrors
        .iter()
        .map(|s| {
            Ok(Target {
                name: s.mirror_name()?,
                section: Some(s.clone()),
            })
        })
        .collect()
}

/// --name, else every configured mirror, else (when `store` is given) every one in the store.
async fn select(ctx: &Ctx, store: Option<&Store>) -> Result<Vec<Target>> {
    if let Some(n) = &ctx.name {
        return Ok(vec![named(ctx, n)?]);
    }
    let mut found = configured(ctx)?;
    if found.is_empty() {
        if let Some(store) = store {
            for name in mirror::mirrors_in_store(store).await? {
                found.push(named(ctx, name.as_str())?);
            }
        }
    }
    if found.is_empty() {
        return Err(Error::Invalid(
            "no mirror is configured: add a [[mirror]] entry to pgdrill.toml or pass --name N (and --from URL for `mirror run`)".into(),
        ));
    }
    Ok(found)
}

async fn select_one(ctx: &Ctx, store: &Store) -> Result<Target> {
    let mut all = select(ctx, Some(store)).await?;
    if all.len() > 1 {
        let names: Vec<_> = all.iter().map(|t| t.name.to_string()).collect();
        return Err(Error::Invalid(format!(
            "several mirrors are known ({}): pick one with --name",
            names.join(", ")
        )));
    }
    Ok(all.remove(0))
}

fn store_place(ctx: &Ctx) -> Result<Option<Place>> {
    match &ctx.settings.store_url {
        Some(location) => Ok(Some(Place::describe(
            location,
            &ctx.settings.store_options,
        )?)),
        None => Ok(None),
    }
}

/// Runs every selected mirror; a source that suddenly shrank or a failed run alerts.
pub async fn run_mirrors(ctx: &Ctx, store: &Store, args: &RunArgs) -> Result<Output> {
    let notifier = crate::alerts::Notifier::new(ctx, store)?;
    if args.from.is_some() && ctx.name.is_none() {
        return Err(Error::Invalid(
            "--from needs --name (the mirror's name in the store)".into(),
        ));
    }
    let targets = select(ctx, None).await?;
    let several = targets.len() > 1;
    let (mut reports, mut failures, mut human) = (Vec::new(), Vec::new(), String::new());
    let mut exit_code = 0;
    for t in targets {
        let out = run_one(ctx, store, &t, args).await;
        match out {
            Ok(r) => {
                if let Some(d) = &r.source_drop {
                    eprintln!("error: mirror {}: {}", r.name, d.message);
                    let summary = format!(
                        "mirror {}: no snapshot recorded, nothing deleted: {}",
                        r.name, d.message
                    );
                    notifier
                        .send(
                            ctx,
                            EventKind::BackupFailed,
                            &r.name.to_string(),
                            summary,
                            json!({"mirror": r.name}),
                        )
                        .await;
                    human.push_str(&format!(
                        "{}: no snapshot recorded: {}\n",
                        r.name, d.message
                    ));
                    exit_code = exit_code.max(1);
                } else {
                    for s in &r.skipped {
                        ctx.ui.debug(format!("mirror {}: skipped {s}", r.name));
                    }
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
                reports.push(serde_json::to_value(&r).unwrap_or_default());
            }
            Err(e) => {
                let e = e.context(format!("mirror {}", t.name));
                notifier
                    .send(
                        ctx,
                        EventKind::BackupFailed,
                        t.name.as_str(),
                        e.to_string(),
                        json!({"mirror": t.name}),
                    )
                    .await;
                if !several {
                    return Err(e);
                }
                ctx.ui.warn(e.to_string());
                exit_code = exit_code.max(e.exit_code());
                failures.push(
                    json!({"name": t.name, "error": e.to_string(), "exit_code": e.exit_code()}),
                );
            }
        }
        if ctx.cancel.is_cancelled() {
            break;
        }
    }
    Ok(Output {
        json: json!({"mirrors": reports, "failures": failures}),
        human,
        exit_code,
    })
}

async fn run_one(
    ctx: &Ctx,
    store: &Store,
    t: &Target,
    args: &RunArgs,
) -> Result<mirror::RunReport> {
    let from = args
        .from
        .clone()
        .or_else(|| t.section.as_ref().map(|s| s.from.clone()))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "mirror {} has no source: pass --from URL or add a [[mirror]] entry with from = \"...\"",
                t.name
            ))
        })?;
    let source = Location::open(&from, &t.options(ctx)?)?;
    let progress = Progress::new();
    let _guard = ctx.ui.progress(progress.clone());
    let section = t.section.clone().unwrap_or_default();
    mirror::run(RunJob {
        store,
        name: t.name.clone(),
        source: &source,
        store_place: store_place(ctx)?,
        max_drop_percent: section.max_drop_percent(),
        allow_drop: args.allow_drop,
        concurrency: args.concurrency.unwrap_or_else(|| section.concurrency()),
        progress,
        cancel: ctx.cancel.clone(),
    })
    .await
}

async fn list(ctx: &Ctx, store: &Store) -> Result<Output> {
    let t = select_one(ctx, store).await?;
    let snaps = mirror::list_snapshots(store, &t.name).await?;
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.snapshot_id.to_string(),
                s.time.to_rfc3339(),
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
    let mut docs = Vec::new();
    let mut human = String::new();
    for t in select(ctx, Some(store)).await? {
        let s = t.section.clone().unwrap_or_default();
        let keep_last = args
            .keep_last
            .or(s.keep_last.map(|k| k as usize))
            .unwrap_or(7);
        let within = args
            .keep_within_days
            .or(s.keep_within_days)
            .or(ctx.settings.policy.retention_days);
        let p = mirror::prune_mirror(store, &t.name, keep_last, within, args.dry_run).await?;
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
        docs.push(serde_json::to_value(&p).unwrap_or_default());
    }
    Ok(Output::ok(json!({"prune": docs}), human))
}
