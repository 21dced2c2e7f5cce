use super::Output;
use crate::cli::DiffArgs;
use crate::context::Ctx;
use pgdrill_core::diff::{self, DiffJob};
use pgdrill_core::progress::Progress;
use pgdrill_core::restore::{self, RestoreJob};
use pgdrill_core::{catalog, readers, Error, Result};
use pgdrill_pg::cluster::{Cluster, ClusterOptions};
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
    let db = ctx.one_database_of(&stores).await?;
    let src = ctx
        .source(
            &stores,
            &db,
            args.backup.as_deref().unwrap_or("latest"),
            args.at.as_deref(),
        )
        .await?;
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
    let url = args.target.clone().or_else(|| {
        ctx.env
            .get("PGDRILL_TARGET_URL")
            .cloned()
            .filter(|s| !s.is_empty())
    });
    let mut cluster = None;
    let target = match url {
        Some(url) => {
            let env: Vec<(String, String)> = ctx
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ConnSpec::parse_with_env(&url, &env)?
        }
        None if other.is_some() => {
            let major = first.manifest.restore_major();
            let install = tools.pick_server_with(major, &first.manifest.content.extensions)?;
            ctx.ui.info(format!(
                "starting a throwaway PostgreSQL {} cluster for the scratch databases",
                install.version
            ));
            let c = tokio::task::spawn_blocking(move || Cluster::start(ClusterOptions::new(install)))
                .await
                .map_err(|e| Error::Failed(format!("the cluster start crashed: {e}")))?
                .map_err(|e| Error::Failed(format!("cannot start a throwaway cluster: {e}")))?;
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
    let source = ctx
        .settings
        .databases
        .iter()
        .find(|d| d.name == db)
        .and_then(|d| d.source_spec(&ctx.env).ok());
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
        tokio::task::spawn_blocking(move || c.stop())
            .await
            .map_err(|e| Error::Failed(format!("the cluster stop crashed: {e}")))?
            .map_err(|e| Error::Failed(format!("cannot stop the throwaway cluster: {e}")))?;
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
