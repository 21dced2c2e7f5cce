//! prune and status.

use super::Output;
use crate::cli::{PruneArgs, StatusArgs};
use crate::context::Ctx;
use crate::ui::{table, table_or};
use pgdrill_core::alert::EventKind;
use pgdrill_core::retention::RetentionPolicy;
use pgdrill_core::status::{self, DrillWindow};
use pgdrill_core::{catalog, drill, lease, prune, Error, Result};
use serde_json::json;

pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What a job says when it takes a lease: a clock far off the store's, a lapsed lease taken over.
pub fn warn_lease(ctx: &Ctx, what: &impl std::fmt::Display, held: &lease::Lease) {
    if let Some(w) = held.skew_warning() {
        ctx.ui.warn(w);
    }
    if let Some(prev) = &held.took_over_from {
        ctx.ui.warn(format!(
            "took over a stale lease of {what} held by a {} job on {} (pid {})",
            prev.job, prev.host, prev.pid
        ));
    }
}

pub async fn prune(ctx: &Ctx, args: &PruneArgs) -> Result<Output> {
    let store = ctx.store()?;
    let policy =
        RetentionPolicy::from_section(&ctx.settings.retention, ctx.settings.policy.retention_days)?;
    let mut human = String::new();
    let mut docs = Vec::new();
    for db in ctx.databases_to_list(&store).await? {
        let held = if args.dry_run {
            None
        } else {
            let l = lease::acquire(&store, &db, "prune", LEASE_TTL).await?;
            warn_lease(ctx, &db, &l);
            Some(l)
        };
        let out = prune::run(&store, &db, &policy, args.dry_run, held.as_ref()).await;
        if let Some(l) = held {
            l.release().await;
        }
        let out = out?;
        let p = &out.plan;
        if let Some(n) = &p.note {
            ctx.ui.warn(n);
        }
        for (id, why) in &out.unreadable {
            ctx.ui.warn(format!(
                "backup {id} of {db} has an unreadable manifest, so prune keeps it: {why}; check it with `pgdrill verify {id}` and delete the folder by hand if it is garbage"
            ));
        }
        let mut rows: Vec<Vec<String>> = p
            .keep
            .iter()
            .map(|(id, r)| vec![id.to_string(), "keep".into(), r.join("; ")])
            .collect();
        rows.extend(
            p.delete
                .iter()
                .map(|id| vec![id.to_string(), "delete".into(), String::new()]),
        );
        rows.extend(p.delete_incomplete.iter().map(|id| {
            vec![
                id.to_string(),
                "delete".into(),
                "incomplete (no manifest) past the grace period".into(),
            ]
        }));
        human.push_str(&format!(
            "{db}: {} kept, {} deleted{}, {} incomplete removed\n",
            p.keep.len(),
            p.delete.len(),
            if args.dry_run {
                " (dry run: nothing was deleted)"
            } else {
                ""
            },
            p.delete_incomplete.len()
        ));
        human.push_str(&table_or(&["BACKUP", "ACTION", "WHY"], &rows, ""));
        let (uploads, files): (Vec<_>, Vec<_>) =
            out.stale_parts.iter().partition(|p| p.upload_id.is_some());
        if !files.is_empty() {
            human.push_str(&format!(
                "{db}: {} {} part files of unfinished uploads (killed backups), {} bytes\n",
                if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                },
                files.len(),
                files.iter().map(|p| p.size).sum::<u64>()
            ));
        }
        if !uploads.is_empty() {
            human.push_str(&format!(
                "{db}: {} {} multipart uploads left open (killed backups)\n",
                if args.dry_run {
                    "would abort"
                } else {
                    "aborted"
                },
                uploads.len(),
            ));
        }
        docs.push(json!({
            "database": db,
            "dry_run": args.dry_run,
            "keep": p.keep.iter().map(|(id, r)| json!({"backup_id": id, "reasons": r})).collect::<Vec<_>>(),
            "delete": p.delete,
            "delete_incomplete": p.delete_incomplete,
            "deleted_objects": out.deleted_objects,
            "stale_parts": out.stale_parts.iter().map(|p| &p.key).collect::<Vec<_>>(),
            "unreadable": out.unreadable.iter().map(|(id, why)| json!({"backup_id": id, "error": why})).collect::<Vec<_>>(),
            "note": p.note,
        }));
    }
    if docs.is_empty() {
        human.push_str(&format!(
            "nothing to prune: {} holds no backups yet\n",
            store.display()
        ));
    }
    let mut out = json!({"prune": docs});
    let mirror_selected = ctx
        .name
        .as_ref()
        .map(|n| ctx.settings.mirrors.iter().any(|m| &m.name == n))
        .unwrap_or(true);
    if !ctx.settings.mirrors.is_empty() && mirror_selected {
        let args = super::mirror::PruneArgs {
            dry_run: args.dry_run,
            keep_last: None,
            keep_within_days: None,
        };
        let m = super::mirror::prune(ctx, &store, &args).await?;
        human.push_str(&m.human);
        out["mirrors"] = m.json["prune"].clone();
    }
    Ok(Output::ok(out, human))
}

pub async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<Output> {
    let store = ctx.store()?;
    let window = match ctx.settings.policy.drill_max_age_days {
        Some(n) => DrillWindow::Days(n),
        None => DrillWindow::CalendarMonth,
    };
    let mut statuses = Vec::new();
    for db in ctx.databases_to_list(&store).await? {
        let listing = catalog::list(&store, &db).await?;
        let drills = drill::list(&store, &db).await?;
        let failure = status::read_failure(&store, &db).await;
        let mut s = status::evaluate(
            db.as_str(),
            &listing.complete,
            &drills,
            failure,
            &ctx.settings.policy,
            window,
            pgdrill_core::clock::Clock::process().now(),
        );
        s.add_damaged_manifests(&listing.unreadable);
        statuses.push(s);
    }
    let notifier = crate::alerts::Notifier::new(ctx, &store)?;
    for s in &statuses {
        let key = format!("{}/status_state.json", s.database);
        let was_violated = store
            .get(&key)
            .await
            .map(|b| b.as_ref() == b"violated")
            .unwrap_or(false);
        let violated: Vec<String> = s
            .slos
            .iter()
            .filter(|x| !x.ok)
            .map(|x| format!("{}: {}", x.name, x.detail))
            .collect();
        if !violated.is_empty() {
            let summary = format!("SLO violated for {}: {}", s.database, violated.join("; "));
            notifier
                .send(
                    ctx,
                    EventKind::SloViolated,
                    &s.database,
                    summary,
                    json!({"slos": s.slos}),
                )
                .await;
        } else if was_violated {
            notifier
                .send(
                    ctx,
                    EventKind::Recovered,
                    &s.database,
                    format!("all SLOs of {} are met again", s.database),
                    json!({}),
                )
                .await;
        }
        let state: &'static [u8] = if violated.is_empty() {
            b"ok"
        } else {
            b"violated"
        };
        let _ = store.put(&key, bytes::Bytes::from_static(state)).await;
    }
    if statuses.is_empty() {
        return Err(Error::Invalid(format!(
            "no database is configured or has backups in {}",
            store.display()
        )));
    }
    if let Some(path) = &args.prometheus {
        write_atomic(path, &status::prometheus(&statuses))?;
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .flat_map(|s| {
            s.slos.iter().map(move |slo| {
                vec![
                    s.database.clone(),
                    slo.name.clone(),
                    if slo.ok {
                        "ok".into()
                    } else {
                        "VIOLATED".into()
                    },
                    slo.detail.clone(),
                ]
            })
        })
        .collect();
    let violated = statuses.iter().any(|s| !s.ok());
    let human = table(&["DATABASE", "SLO", "STATE", "DETAIL"], &rows);
    Ok(Output {
        json: json!({"ok": !violated, "databases": statuses}),
        human,
        exit_code: if violated { 1 } else { 0 },
    })
}

fn write_atomic(path: &std::path::Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::Invalid(format!("cannot write in {}: {e}", dir.display())))?;
    std::fs::write(tmp.path(), text)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
