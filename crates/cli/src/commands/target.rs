//! What the commands that load a backup into a database (`restore`, `diff`) share: finding
//! the backup, the target connection, the source's, and the throwaway cluster.

use crate::context::Ctx;
use pgdrill_core::ids::DbName;
use pgdrill_core::manifest::Manifest;
use pgdrill_core::stores::{Source, Stores};
use pgdrill_core::{Error, Result};
use pgdrill_pg::cluster::{Cluster, ClusterOptions};
use pgdrill_pg::{ConnSpec, PgTools};

/// The one database the command is about and its backup `backup` (default `latest`), or the
/// one current `at` a time, over `stores`; says which store it is read from.
pub async fn resolve_backup<'a>(
    ctx: &Ctx,
    stores: &'a Stores,
    backup: Option<&str>,
    at: Option<&str>,
) -> Result<(DbName, Source<'a>)> {
    let db = ctx.one_database_of(stores).await?;
    let src = ctx
        .source(stores, &db, backup.unwrap_or("latest"), at)
        .await?;
    Ok((db, src))
}

/// `--target`, else a non-empty `PGDRILL_TARGET_URL`.
pub fn target_url(ctx: &Ctx, arg: Option<&str>) -> Option<String> {
    arg.map(str::to_owned).or_else(|| {
        ctx.env
            .get("PGDRILL_TARGET_URL")
            .cloned()
            .filter(|s| !s.is_empty())
    })
}

/// A target URL as a connection, its password variables read from the command's environment.
pub fn target_spec(ctx: &Ctx, url: &str) -> Result<ConnSpec> {
    Ok(ConnSpec::parse_with_env(
        url,
        &pgdrill_core::env::pairs(&ctx.env),
    )?)
}

/// The configured source of `db`, when it has one that can be connected to.
pub fn source_spec(ctx: &Ctx, db: &DbName) -> Option<ConnSpec> {
    ctx.settings
        .databases
        .iter()
        .find(|d| &d.name == db)
        .and_then(|d| d.source_spec(&ctx.env).ok())
}

/// Starts a throwaway cluster that can restore `manifest` (its major version or newer, with
/// its extensions), saying so on stderr; `purpose` ends that line.
pub async fn start_throwaway(
    ctx: &Ctx,
    tools: &PgTools,
    manifest: &Manifest,
    purpose: &str,
) -> Result<Cluster> {
    let major = manifest.restore_major();
    let install = tools.pick_server_with(major, &manifest.content.extensions)?;
    ctx.ui.info(format!(
        "starting a throwaway PostgreSQL {} cluster{purpose}",
        install.version
    ));
    tokio::task::spawn_blocking(move || Cluster::start(ClusterOptions::new(install)))
        .await
        .map_err(|e| Error::Failed(format!("the cluster start crashed: {e}")))?
        .map_err(|e| Error::Failed(format!("cannot start a throwaway cluster: {e}")))
}

/// Stops and removes a throwaway cluster.
pub async fn stop_throwaway(c: Cluster) -> Result<()> {
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .map_err(|e| Error::Failed(format!("the cluster stop crashed: {e}")))?
        .map_err(|e| Error::Failed(format!("cannot stop the throwaway cluster: {e}")))
}
