//! `mirror verify`, `mirror restore` and `mirror parity`: commands that read snapshots.

use super::{select_one, store_place};
use crate::cli::mirror::{ParityArgs, RestoreArgs, VerifyArgs};
use crate::commands::Output;
use crate::context::Ctx;
use crate::ui::{human_bytes, table};
use pgdrill_core::jobs::mirror::MirrorTarget as Target;
use pgdrill_core::mirror::{self, Location, Place, RestoreOptions, SnapshotManifest};
use pgdrill_core::progress::Progress;
use pgdrill_core::time;
use pgdrill_core::{Error, Result};
use pgdrill_store::Store;
use serde_json::json;

pub(super) async fn verify(ctx: &Ctx, store: &Store, args: &VerifyArgs) -> Result<Output> {
    let t = select_one(ctx, store).await?;
    let manifest = mirror::resolve(store, &t.name, &args.snapshot).await?;
    let progress = Progress::new();
    let _guard = ctx.ui.progress(progress.clone());
    let r =
        mirror::verify_snapshot(store, &manifest, mirror::DEFAULT_CONCURRENCY, &progress).await?;
    let mut human = format!(
        "mirror {} snapshot {}: {} objects, {} distinct, {} read: ",
        r.name,
        r.snapshot_id,
        r.objects,
        r.distinct_objects,
        human_bytes(r.bytes_read)
    );
    if r.problems.is_empty() {
        human.push_str("all match their SHA-256\n");
    } else {
        human.push_str(&format!("{} differ\n", r.problems.len()));
        let rows: Vec<Vec<String>> = r
            .problems
            .iter()
            .map(|p| {
                vec![
                    p.object.clone(),
                    format!("{:?}", p.kind).to_lowercase(),
                    p.keys.join(", "),
                    p.detail.clone(),
                ]
            })
            .collect();
        human.push_str(&table(&["OBJECT", "PROBLEM", "KEYS", "DETAIL"], &rows));
        for p in &r.problems {
            eprintln!("error: {} ({}): {}", p.object, p.keys.join(", "), p.detail);
        }
    }
    let exit_code = if r.problems.is_empty() { 0 } else { 3 };
    Ok(Output {
        json: json!({"verify": r}),
        human,
        exit_code,
    })
}

async fn pick(
    store: &Store,
    t: &Target,
    snapshot: Option<&str>,
    at: Option<&str>,
) -> Result<SnapshotManifest> {
    let Some(at) = at else {
        return mirror::resolve(store, &t.name, snapshot.unwrap_or("latest")).await;
    };
    let time = at.parse::<time::Timestamp>().map_err(|e| {
        Error::Invalid(format!(
            "--at {at:?} is not an RFC 3339 time (2026-11-21T02:00:00Z): {e}"
        ))
    })?;
    mirror::snapshot_at(store, &t.name, time)
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "mirror {} has no snapshot taken at or before {at}",
                t.name
            ))
        })
}

pub(super) async fn restore(ctx: &Ctx, store: &Store, args: &RestoreArgs) -> Result<Output> {
    let t = select_one(ctx, store).await?;
    let manifest = pick(store, &t, args.snapshot.as_deref(), args.at.as_deref()).await?;
    let opts = t.options(&ctx.env)?;
    let dest = Location::open(&args.to, &opts)?;
    let mut sources = Vec::new();
    if let Some(s) = &t.section {
        sources.push(Place::describe(&s.from.parse()?, &opts)?);
    }
    let progress = Progress::new();
    let _guard = ctx.ui.progress(progress.clone());
    let r = mirror::restore_snapshot(
        store,
        &manifest,
        &dest,
        &RestoreOptions {
            delete: args.delete,
            force: args.force,
            store_place: store_place(ctx)?,
            sources,
            concurrency: args.concurrency,
        },
        &progress,
    )
    .await?;
    let human = format!(
        "restored snapshot {} ({}) of mirror {}: {} objects, {} to {}{}\n",
        r.snapshot_id,
        crate::commands::local_time(
            &ctx.settings.schedule.tz,
            &time::chrono_compat::to_rfc3339(r.snapshot_time)
        ),
        t.name,
        r.objects,
        human_bytes(r.bytes),
        r.destination,
        if args.delete {
            format!("; {} extra objects deleted", r.deleted.len())
        } else {
            String::new()
        }
    );
    Ok(Output::ok(json!({"restore": r}), human))
}

pub(super) async fn parity(ctx: &Ctx, store: &Store, args: &ParityArgs) -> Result<Output> {
    let t = select_one(ctx, store).await?;
    let manifest = mirror::resolve(store, &t.name, &args.snapshot).await?;
    let dest = Location::open(&args.with, &t.options(&ctx.env)?)?;
    let r = mirror::parity_with(&manifest, &dest, mirror::DEFAULT_CONCURRENCY).await?;
    let mut human = format!(
        "{} vs snapshot {}: {} of {} match, {} missing, {} extra, {} different\n",
        r.destination,
        r.snapshot_id,
        r.matching,
        r.objects,
        r.missing.len(),
        r.extra.len(),
        r.different.len()
    );
    let mut rows: Vec<Vec<String>> = r
        .missing
        .iter()
        .map(|k| vec![k.clone(), "missing".into()])
        .collect();
    rows.extend(r.extra.iter().map(|k| vec![k.clone(), "extra".into()]));
    rows.extend(
        r.different
            .iter()
            .map(|d| vec![d.key.clone(), "different".into()]),
    );
    if !rows.is_empty() {
        human.push_str(&table(&["KEY", "DIFFERENCE"], &rows));
    }
    let exit_code = if r.is_ok() { 0 } else { 1 };
    Ok(Output {
        json: json!({"parity": r}),
        human,
        exit_code,
    })
}
