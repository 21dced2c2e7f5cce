//! `pgdrill demo`: the whole job on embedded defaults, with nothing to configure. A
//! throwaway source database with sample data, an encrypted backup to a local folder, a
//! drill into a throwaway cluster with checks, and the report printed.

use super::Output;
use crate::cli::DemoArgs;
use crate::context::Ctx;
use pgdrill_core::backup::{self, BackupJob};
use pgdrill_core::config::{DatabaseSettings, Policy, SourceRef};
use pgdrill_core::crypto::{generate_identity, DecryptionKeys, EncryptionKeys};
use pgdrill_core::drill::{self, DrillJob};
use pgdrill_core::ids::DbName;
use pgdrill_core::progress::Progress;
use pgdrill_core::time;
use pgdrill_core::{Error, Result};
use pgdrill_pg::cluster::{Cluster, ClusterOptions};
use pgdrill_pg::{PgTools, Secret};
use pgdrill_store::Store;
use serde_json::json;
use std::sync::Arc;

const DEMO_SQL: &str = r#"
create table customers (id bigint generated always as identity primary key, email text not null unique, name text not null, created_at timestamptz not null default now());
create table orders (id bigint generated always as identity primary key, customer_id bigint not null references customers(id), total_cents bigint not null check (total_cents >= 0), status text not null, placed_at timestamptz not null);
create table order_items (order_id bigint not null references orders(id), sku text not null, quantity int not null, price_cents bigint not null, primary key (order_id, sku));
create table "_prisma_migrations" (id varchar(36) primary key, checksum varchar(64) not null, finished_at timestamptz, migration_name varchar(255) not null, logs text, rolled_back_at timestamptz, started_at timestamptz not null default now(), applied_steps_count int not null default 0);
insert into "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count) values
  ('0001', 'c0ffee', now(), '20260101000000_init', 1), ('0002', 'beef', now(), '20260301000000_orders', 1);
insert into customers (email, name) select 'customer' || g || '@example.com', 'Customer ' || g from generate_series(1, 2000) g;
insert into orders (customer_id, total_cents, status, placed_at)
  select 1 + (g % 2000), (g * 37) % 50000, (array['paid','shipped','refunded'])[1 + g % 3], now() - (g || ' minutes')::interval from generate_series(1, 20000) g;
insert into order_items select o.id, 'SKU-' || (o.id % 97), 1 + o.id % 4, 1999 from orders o;
alter table orders enable row level security;
create policy orders_by_customer on orders using (customer_id = current_setting('app.customer_id', true)::bigint);
"#;

const DEMO_CHECKS: &str = r#"
[[check]]
name = "key tables are not empty"
kind = "tables_nonempty"
tables = ["customers", "orders", "order_items"]

[[check]]
name = "Prisma migrations applied"
kind = "migrations"
framework = "prisma"

[[check]]
name = "row level security on orders"
kind = "rls_enabled"
tables = ["orders"]

[[check]]
name = "orders have a policy"
kind = "policies_present"
tables = ["orders"]

[[check]]
name = "no order without items"
kind = "sql"
query = "select count(*) from orders o where not exists (select 1 from order_items i where i.order_id = o.id)"
expect = 0
"#;

pub async fn run(ctx: &Ctx, args: &DemoArgs) -> Result<Output> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
    let tools = PgTools::discover();
    let install = tools.pick_server(0)?;
    ctx.ui.info(format!(
        "1/4 starting a throwaway PostgreSQL {} source database with sample data",
        install.version
    ));
    let source = tokio::task::spawn_blocking(move || Cluster::start(ClusterOptions::new(install)))
        .await
        .map_err(|e| Error::Failed(format!("the cluster start crashed: {e}")))?
        .map_err(|e| Error::Failed(format!("cannot start the demo source cluster: {e}")))?;
    let result = demo_with_source(ctx, args, &tools, &source).await;
    let _ = tokio::task::spawn_blocking(move || source.stop()).await;
    result
}

async fn demo_with_source(
    ctx: &Ctx,
    args: &DemoArgs,
    tools: &PgTools,
    source: &Cluster,
) -> Result<Output> {
    let dir = &args.dir;
    let admin = pgdrill_pg::ConnSpec::parse_with_env(&source.url("postgres"), &[])?;
    let c = pgdrill_pg::client::connect(&admin).await?;
    c.batch_execute("create database shop")
        .await
        .map_err(|e| Error::Failed(pgdrill_pg::client::describe(&e)))?;
    let spec = pgdrill_pg::ConnSpec::parse_with_env(&source.url("shop"), &[])?;
    let shop = pgdrill_pg::client::connect(&spec).await?;
    shop.batch_execute(DEMO_SQL)
        .await
        .map_err(|e| Error::Failed(pgdrill_pg::client::describe(&e)))?;

    let key_path = dir.join("demo-age.key");
    if !key_path.exists() {
        let (identity, _) =
            generate_identity(&time::chrono_compat::to_rfc3339(time::Timestamp::now()));
        write_private(&key_path, &identity)?;
    }
    let recipients = pgdrill_core::crypto::identity_file_recipients(&key_path)?;
    let enc = EncryptionKeys::new(&recipients, None)?;
    let dec = Arc::new(DecryptionKeys::new(std::slice::from_ref(&key_path), None)?);
    let store = Store::open_folder(dir.join("store"))?;
    let db = DatabaseSettings {
        name: DbName::parse("shop").map_err(Error::Invalid)?,
        source: Some(SourceRef::Url(Secret::new(source.url("shop")))),
        pg_dump_args: vec![],
        globals: false,
        globals_passwords: false,
        server: None,
        drill: DEMO_CHECKS
            .parse::<toml::Table>()
            .map_err(|e| Error::Invalid(e.to_string()))?,
        drill_settings: Default::default(),
        audit: None,
    };
    let policy = Policy {
        rpo_minutes: Some(60),
        rto_minutes: Some(30),
        retention_days: Some(30),
        ..Policy::default()
    };

    ctx.ui.info(format!(
        "2/4 backing up shop to {} (zstd + age, manifest written last)",
        store.display()
    ));
    let progress = Progress::new();
    let found = backup::Tools::found(tools.clone());
    let manifest = backup::run(BackupJob {
        store: &store,
        stores: &[],
        db: &db,
        source: spec.clone(),
        keys: &enc,
        tools: &found,
        compression_level: 2,
        compression_threads: 0,
        part_size: 16 << 20,
        max_in_flight: 4,
        lock_wait_timeout: std::time::Duration::from_secs(
            pgdrill_core::config::DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS,
        ),
        policy: &policy,
        progress,
        cancel: ctx.cancel.clone(),
        lease: None,
        jobs: 1,
        spool_dir: None,
        spool_window: backup::DEFAULT_SPOOL_WINDOW,
        globals_from: None,
    })
    .await?
    .manifest;
    ctx.ui.info(format!(
        "   backup {}: {} tables, {} rows, {} raw → {} stored",
        manifest.backup_id,
        manifest.content.tables.len(),
        manifest.content.tables.iter().map(|t| t.rows).sum::<u64>(),
        pgdrill_core::summary::human_bytes(manifest.raw_bytes),
        pgdrill_core::summary::human_bytes(manifest.stored_bytes)
    ));
    ctx.ui
        .info("3/4 drilling it: restore into a throwaway cluster, run the checks, measure RPO/RTO");
    let env = ctx.env.clone();
    let outcome = drill::run(DrillJob {
        store: &store,
        read_from: &[],
        db: &db,
        selector: "latest",
        target: None,
        tools,
        keys: dec,
        policy: &policy,
        protected_targets: &[],
        ignore_errors: &[],
        skip_extensions: &[],
        maintenance_work_mem: None,
        jobs: 1,
        major: None,
        env: &env,
        // Named by the drill id once it is known, as everywhere else (see below).
        report_dir: Some(
            dir.join("reports")
                .join(format!(".drill-of-{}", manifest.backup_id)),
        ),
        keep: false,
        keep_on_failure: false,
        mirrors: &[],
        progress: Progress::new(),
        cancel: ctx.cancel.clone(),
    })
    .await?;
    let report_dir = dir.join("reports").join(&outcome.result.drill_id);
    std::fs::rename(&outcome.report_dir, &report_dir).map_err(|e| {
        Error::Failed(format!(
            "cannot rename {} to {}: {e}",
            outcome.report_dir.display(),
            report_dir.display()
        ))
    })?;
    let outcome = drill::DrillOutcome {
        report_dir,
        ..outcome
    };
    if ctx.ui.json {
        ctx.ui.info(format!(
            "4/4 evidence written to {}",
            outcome.report_dir.display()
        ));
    } else {
        ctx.ui.info("4/4 the report (also in report.md):");
    }
    let md = std::fs::read_to_string(outcome.report_dir.join("report.md")).unwrap_or_default();
    let human = format!(
        "{md}\nEvidence: {dir}/report.html, result.json, report.md, drill.log (also in the store under shop/drills/).\nStore: {store}  ·  key: {key}\n",
        dir = outcome.report_dir.display(),
        store = store.display(),
        key = key_path.display()
    );
    let exit_code = if outcome.result.passed() { 0 } else { 1 };
    let json = json!({"backup": manifest.backup_id, "drill": outcome.result, "report_dir": outcome.report_dir});
    Ok(Output {
        json,
        human,
        exit_code,
    })
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))
}
