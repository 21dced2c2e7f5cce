use super::{target, Output};
use crate::cli::DiffArgs;
use crate::context::Ctx;
use pgdrill_core::diff::{self, DiffJob};
use pgdrill_core::progress::Progress;
use pgdrill_core::restore::{self, RestoreJob};
use pgdrill_core::{catalog, readers, Error, Result};
use pgdrill_pg::ConnSpec;
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &DiffArgs) -> Result<Output> {
    if !args.table.contains('.') {
        return Err(Error::Invalid(format!(
            "--table {:?} needs its schema: write SCHEMA.TABLE (e.g. public.{})",
            args.table, args.table
        )));
    }
    let tools = tokio::task::spawn_blocking(pgdrill_pg::PgTools::discover);
    let stores = ctx.read_stores()?;
    let (db, src) =
        target::resolve_backup(ctx, &stores, args.backup.as_deref(), args.at.as_deref()).await?;
    let (store, store_name, first) = (src.store, src.name, src.resolved);
    // A second backup is read from the same store as the first.
    let other = match &args.other {
        Some(id) => Some(catalog::resolve(store, &db, id).await?),
        None => None,
    };
    let mut warnings = first.warnings.clone();
    warnings.extend(other.iter().flat_map(|o| o.warnings.clone()));
    for w in &warnings {
        ctx.ui.warn(w);
    }
    let keys = ctx.decryption_keys()?;
    let tools = tools
        .await
        .map_err(|e| Error::Failed(format!("looking for PostgreSQL tools crashed: {e}")))?;
    let mut cluster = None;
    let target = match target::target_url(ctx, args.target.as_deref()) {
        Some(url) => target::target_spec(ctx, &url)?,
        None if other.is_some() => {
            let c = target::start_throwaway(
                ctx,
                &tools,
                &first.manifest,
                " for the scratch databases",
            )
            .await?;
            let spec = ConnSpec::parse_with_env(&c.url("postgres"), &[])?;
            cluster = Some(c);
            spec
        }
        None => {
            return Err(Error::Invalid(
                "diff compares a backup with a live database: pass --target URL (or set PGDRILL_TARGET_URL), or name a second backup".into(),
            ))
        }
    };
    let progress = Progress::new();
    let _g = ctx.ui.progress(progress.clone());
    let source = target::source_spec(ctx, &db);
    let job = DiffJob {
        restore: RestoreJob {
            store,
            manifest: &first.manifest,
            target,
            source,
            protected_targets: &ctx.settings.protected_targets,
            tools: &tools,
            read: restore::read_opts(keys, progress, ctx.cancel.clone(), 1),
            jobs: 1,
            clean: false,
            allow_create: false,
            ignore_errors: &ctx.settings.restore.ignore_errors,
            skip_extensions: &ctx.settings.restore.skip_extensions,
            maintenance_work_mem: ctx.settings.restore.maintenance_work_mem.clone(),
            spool_dir: None,
            globals: false,
            spool: false,
        },
        other: other.as_ref().map(|o| &o.manifest),
        table: pgdrill_core::ids::split_table(&args.table),
        samples: args.samples,
        sql: args.sql.clone(),
    };
    let mut marks = vec![readers::mark(store, &db, &first.manifest.backup_id, "diff").await?];
    if let Some(o) = &other {
        marks.push(readers::mark(store, &db, &o.manifest.backup_id, "diff").await?);
    }
    for m in &marks {
        if let Some(w) = &m.warning {
            ctx.ui.warn(w);
        }
    }
    let report = diff::run(job).await;
    for m in marks {
        m.release().await;
    }
    if let Some(c) = cluster {
        target::stop_throwaway(c).await?;
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            return Err(pgdrill_core::stores::integrity_hint(
                e,
                &stores,
                store_name,
                &first.manifest,
            )
            .await)
        }
    };
    let mut json = serde_json::to_value(&report).unwrap_or_default();
    json["warnings"] = json!(warnings);
    json["store"] = json!(store_name);
    Ok(Output::ok(json, report.render()))
}
