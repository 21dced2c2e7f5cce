use super::{target, Output};
use crate::cli::RestoreArgs;
use crate::context::Ctx;
use crate::ui::human_secs;
use pgdrill_core::progress::Progress;
use pgdrill_core::restore::table::{self, TableRequest};
use pgdrill_core::restore::{self, RestoreJob};
use pgdrill_core::{readers, stores, Error, Result};
use pgdrill_pg::ConnSpec;
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &RestoreArgs) -> Result<Output> {
    // Probing the PostgreSQL installs runs a few `--version`s: meanwhile, read the store.
    let tools = tokio::task::spawn_blocking(pgdrill_pg::PgTools::discover);
    let stores = ctx.read_stores()?;
    let (db, src) =
        target::resolve_backup(ctx, &stores, args.backup.as_deref(), args.at.as_deref()).await?;
    let (store, store_name, resolved) = (src.store, src.name, src.resolved);
    let table_req = table_request(args)?;
    for w in &resolved.warnings {
        ctx.ui.warn(w);
    }
    let (manifest, warnings) = (resolved.manifest, resolved.warnings);
    let keys = ctx.decryption_keys()?;
    let tools = tools
        .await
        .map_err(|e| Error::Failed(format!("looking for PostgreSQL tools crashed: {e}")))?;
    let source = target::source_spec(ctx, &db);
    let mut cluster = None;
    let target = if args.ephemeral {
        let c = target::start_throwaway(ctx, &tools, &manifest, "").await?;
        let url = c.url(&manifest.source.dbname);
        cluster = Some(c);
        ConnSpec::parse_with_env(&url, &[])?
    } else {
        let url = target::target_url(ctx, args.target.as_deref()).ok_or_else(|| {
            Error::Invalid(
                "restore needs an explicit target: pass --target URL (or set PGDRILL_TARGET_URL), or use --ephemeral".into(),
            )
        })?;
        target::target_spec(ctx, &url)?
    };
    let jobs = restore::resolve_jobs(args.jobs, ctx.settings.restore.jobs);
    let progress = Progress::new();
    let _g = ctx.ui.progress(progress.clone());
    ctx.ui.info(format!(
        "{} {} of {} into {}",
        if args.dry_run {
            "planning the restore of"
        } else {
            "restoring"
        },
        manifest.backup_id,
        db,
        target.redacted()
    ));
    let job = RestoreJob {
        store,
        manifest: &manifest,
        target,
        source,
        // A throwaway cluster started above is nobody's protected server.
        protected_targets: if cluster.is_some() {
            &[]
        } else {
            &ctx.settings.protected_targets
        },
        tools: &tools,
        read: restore::read_opts(keys, progress, ctx.cancel.clone(), jobs),
        jobs,
        clean: args.clean,
        allow_create: args.allow_create,
        ignore_errors: &ctx.settings.restore.ignore_errors,
        skip_extensions: &ctx.settings.restore.skip_extensions,
        maintenance_work_mem: ctx.settings.restore.maintenance_work_mem.clone(),
        spool_dir: None,
        globals: args.globals,
        spool: args.spool,
    };
    if let Some(req) = table_req {
        let out = tables(ctx, store, &db, job, &req, args.dry_run, warnings).await;
        return with_store(&stores, store_name, &manifest, out).await;
    }
    if args.dry_run {
        // Nothing is changed: no read mark either (only the manifest, the dump index and
        // the table of contents are read).
        let plan = restore::dry_run(job).await?;
        let mut json = serde_json::to_value(&plan).unwrap_or_default();
        json["dry_run"] = json!(true);
        json["warnings"] = json!(warnings);
        json["store"] = json!(store_name);
        return Ok(Output::ok(json, plan.render()));
    }
    // Marked as being read, so a prune meanwhile keeps it.
    let reading = readers::mark(store, &db, &manifest.backup_id, "restore").await?;
    if let Some(w) = &reading.warning {
        ctx.ui.warn(w);
    }
    let report = restore::run(job).await;
    reading.release().await;
    let report = match report {
        Ok(r) => r,
        Err(e) => return Err(stores::integrity_hint(e, &stores, store_name, &manifest).await),
    };
    let mut warnings = warnings;
    for d in &report.damaged {
        let w = format!(
            "the backup is damaged ({d}); the database was restored without it, but `pgdrill verify` fails on this backup: take a new backup"
        );
        ctx.ui.warn(&w);
        warnings.push(w);
    }
    let mut json = serde_json::to_value(&report).unwrap_or_default();
    json["warnings"] = json!(warnings);
    json["store"] = json!(store_name);
    let mut human = format!(
        "restored {} into {} in {} (download {}, restore {}, analyze {})\n",
        report.backup_id,
        report.target,
        human_secs(report.total_seconds),
        human_secs(report.download_seconds),
        human_secs(report.restore_seconds),
        human_secs(report.analyze_seconds)
    );
    for e in &report.ignored_errors {
        human.push_str(&format!("ignored (allowlisted): {e}\n"));
    }
    if let Some(p) = &report.profile {
        human.push_str(&format!(
            "{p} profile (docs/SUPABASE.md): created roles: {}\n",
            if report.created_roles.is_empty() {
                "none".to_string()
            } else {
                report.created_roles.join(", ")
            }
        ));
    }
    for s in &report.skipped {
        human.push_str(&format!("not restored: {s}\n"));
    }
    for n in &report.notes {
        human.push_str(&format!("note: {n}\n"));
    }
    if let Some(c) = cluster {
        if args.keep {
            let url = c.url(&manifest.source.dbname);
            let kept = c.keep();
            human.push_str(&format!(
                "the cluster keeps running:\n  url:  {url}\n  stop: {}\n",
                kept.stop_command
            ));
            json["ephemeral"] =
                json!({"url": url, "data_dir": kept.data_dir, "stop_command": kept.stop_command});
        } else {
            target::stop_throwaway(c).await?;
            human.push_str("the throwaway cluster was stopped and removed\n");
        }
    }
    Ok(Output::ok(json, human))
}

/// `--table`/`--schema`/`--into-schema` as a request (`None`: the whole backup).
fn table_request(args: &RestoreArgs) -> Result<Option<TableRequest>> {
    if args.tables.is_empty() && args.schemas.is_empty() {
        if args.into_schema.is_some() {
            return Err(Error::Invalid(
                "--into-schema goes with --table or --schema: name the tables to restore".into(),
            ));
        }
        return Ok(None);
    }
    if args.jobs.is_some_and(|j| j > 1) || args.spool {
        return Err(Error::Invalid(
            "a table restore runs one pg_restore over the tables' part of the dump: leave out --jobs and --spool".into(),
        ));
    }
    let mut tables = Vec::new();
    for t in &args.tables {
        if !t.contains('.') {
            return Err(Error::Invalid(format!(
                "--table {t:?} needs its schema: write SCHEMA.TABLE (e.g. public.{t})"
            )));
        }
        tables.push(pgdrill_core::ids::split_table(t));
    }
    Ok(Some(TableRequest {
        tables,
        schemas: args.schemas.clone(),
        into_schema: args.into_schema.clone(),
        scratch: false,
    }))
}

/// The table restore (or its plan).
async fn tables(
    ctx: &Ctx,
    store: &pgdrill_store::Store,
    db: &pgdrill_core::ids::DbName,
    job: RestoreJob<'_>,
    req: &TableRequest,
    dry_run: bool,
    warnings: Vec<String>,
) -> Result<Output> {
    if dry_run {
        let plan = table::dry_run(job, req).await?;
        let mut json = serde_json::to_value(&plan).unwrap_or_default();
        json["dry_run"] = json!(true);
        json["warnings"] = json!(warnings);
        return Ok(Output::ok(json, plan.render()));
    }
    let id = job.manifest.backup_id.clone();
    let reading = readers::mark(store, db, &id, "restore").await?;
    if let Some(w) = &reading.warning {
        ctx.ui.warn(w);
    }
    let report = table::run(job, req).await;
    reading.release().await;
    let r = report?;
    let mut json = serde_json::to_value(&r).unwrap_or_default();
    json["warnings"] = json!(warnings);
    let mut human = format!(
        "restored {} table(s) of {} into {} in {} (download {}, restore {})\n",
        r.tables.len(),
        r.backup_id,
        r.target,
        human_secs(r.total_seconds),
        human_secs(r.download_seconds),
        human_secs(r.restore_seconds)
    );
    for t in &r.tables {
        let rows = t.rows.map(|n| format!(" ({n} rows)")).unwrap_or_default();
        if t.table == t.from {
            human.push_str(&format!("  {}{rows}\n", t.table));
        } else {
            human.push_str(&format!("  {} as {}{rows}\n", t.from, t.table));
        }
    }
    human.push_str(&format!(
        "read {} of the stored dump's {} bytes ({} of {} frames)\n",
        r.bytes_read, r.dump_bytes, r.frames_read, r.frames_total
    ));
    for s in &r.skipped {
        human.push_str(&format!("not restored: {s}\n"));
    }
    Ok(Output::ok(json, human))
}

/// A table restore's output with the store it read from (`store` in `--json`), or its
/// integrity error with the other stores holding the backup named.
async fn with_store(
    all: &stores::Stores,
    store_name: &str,
    manifest: &pgdrill_core::manifest::Manifest,
    out: Result<Output>,
) -> Result<Output> {
    match out {
        Ok(mut o) => {
            o.json["store"] = json!(store_name);
            Ok(o)
        }
        Err(e) => Err(stores::integrity_hint(e, all, store_name, manifest).await),
    }
}
