//! `pgdrill prune` and `pgdrill status`: run their jobs ([`pgdrill_core::jobs`]) and render.

use super::Output;
use crate::cli::{PruneArgs, StatusArgs};
use crate::context::Ctx;
use crate::ui::{table, table_or};
use pgdrill_core::jobs;
use pgdrill_core::status;
use pgdrill_core::{Error, Result};
use serde_json::json;

pub async fn prune(ctx: &Ctx, args: &PruneArgs) -> Result<Output> {
    let store = ctx.store()?;
    let stores = ctx.stores()?;
    let databases = ctx.databases_to_list(&store).await?;
    let report = jobs::prune::run(
        &ctx.job_env(&store),
        &stores,
        databases,
        ctx.name.as_deref(),
        args.dry_run,
    )
    .await?;
    let mut human = String::new();
    let mut docs = Vec::new();
    for (db, out) in &report.databases {
        let p = &out.plan;
        // With several stores, each store's plan is its own (`[store.retention]`).
        let at = out
            .store
            .as_ref()
            .map(|s| format!(" in store {s}"))
            .unwrap_or_default();
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
            "{db}{at}: {} kept, {} deleted{}, {} incomplete removed\n",
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
                "{db}: {} {} part files of unfinished uploads (killed backups), {}\n",
                if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                },
                files.len(),
                pgdrill_core::summary::human_bytes(files.iter().map(|p| p.size).sum::<u64>())
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
        let mut doc = json!({
            "database": db,
            "dry_run": args.dry_run,
            "keep": p.keep.iter().map(|(id, r)| json!({"backup_id": id, "reasons": r})).collect::<Vec<_>>(),
            "delete": p.delete,
            "delete_incomplete": p.delete_incomplete,
            "deleted_objects": out.deleted_objects,
            "stale_parts": out.stale_parts.iter().map(|p| &p.key).collect::<Vec<_>>(),
            "unreadable": out.unreadable.iter().map(|(id, why)| json!({"backup_id": id, "error": why})).collect::<Vec<_>>(),
            "note": p.note,
        });
        if let Some(s) = &out.store {
            doc["store"] = json!(s);
        }
        docs.push(doc);
    }
    if docs.is_empty() {
        human.push_str(&format!(
            "nothing to prune: {} holds no backups yet\n",
            store.display()
        ));
    }
    let mut out = json!({"prune": docs});
    for e in &report.store_errors {
        human.push_str(&format!("FAILED {e}\n"));
    }
    if !report.store_errors.is_empty() {
        out["store_errors"] = json!(report.store_errors);
    }
    if let Some(plans) = &report.mirrors {
        let m = super::mirror::render_prune(plans);
        human.push_str(&m.human);
        out["mirrors"] = m.json["prune"].clone();
    }
    let failed = !report.store_errors.is_empty();
    Ok(Output {
        json: out,
        human,
        exit_code: u8::from(failed),
    })
}

pub async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<Output> {
    let store = ctx.store()?;
    let databases = ctx.databases_to_list(&store).await?;
    let stores = ctx.stores()?;
    let report =
        jobs::status::run_fleet(&ctx.job_env(&store), &stores, databases, &ctx.fleet).await?;
    let statuses = &report.databases;
    if let Some(path) = &args.prometheus {
        write_atomic(path, &status::prometheus(statuses))?;
    }
    let tz = &ctx.settings.schedule.tz;
    let mut rows: Vec<Vec<String>> = statuses
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
                    super::local_times_in(tz, &slo.detail),
                ]
            })
        })
        .collect();
    if let Some(c) = &report.coverage {
        rows.push(vec![
            "(all)".into(),
            "drill_coverage".into(),
            if c.ok { "ok".into() } else { "VIOLATED".into() },
            super::local_times_in(tz, &c.detail()),
        ]);
    }
    for (server, e) in ctx.fleet.errors() {
        rows.push(vec![
            format!("({server})"),
            "discovery".into(),
            "FAILED".into(),
            e.to_string(),
        ]);
    }
    let violated = !report.ok() || !ctx.fleet.errors().is_empty();
    let mut human = table(&["DATABASE", "SLO", "STATE", "DETAIL"], &rows);
    let mut json = json!({"ok": !violated, "databases": statuses});
    if let Some(c) = &report.coverage {
        json["coverage"] = json!(c);
    }
    if !report.stores.is_empty() {
        json["stores"] = json!(report.stores);
        let rows: Vec<Vec<String>> = report
            .stores
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    if s.reachable {
                        "yes".into()
                    } else {
                        "NO".into()
                    },
                    s.backups.to_string(),
                    s.newest_backup
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "none".into()),
                    if s.missing.is_empty() {
                        "none".into()
                    } else {
                        s.missing.join(", ")
                    },
                ]
            })
            .collect();
        human.push('\n');
        human.push_str(&table(
            &["STORE", "REACHABLE", "BACKUPS", "NEWEST", "MISSING"],
            &rows,
        ));
    }
    if !ctx.fleet.servers.is_empty() {
        json["servers"] = json!(ctx.fleet.servers);
    }
    Ok(Output {
        json,
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
