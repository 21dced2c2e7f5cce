//! pgdrill: back PostgreSQL up to object storage, restore it safely, prove it restores.

mod cli;
mod commands;
mod context;
mod ui;

use clap::Parser;
use cli::{Cli, Command};
use commands::Output;
use context::Ctx;
use pgdrill_core::cancel::{Cancel, CancelHandle};
use pgdrill_core::Error;
use std::process::ExitCode;
use ui::Ui;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let ui = Ui {
        json: cli.json,
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    // Tests of hosts whose clock is wrong shift this process's clock; release builds never do.
    #[cfg(debug_assertions)]
    if let Some(secs) = std::env::var("PGDRILL_TEST_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        pgdrill_core::clock::Clock::set_process_offset(secs);
    }
    // Tests of lease expiry (a killed `serve` replica) shorten the job lease's ttl.
    #[cfg(debug_assertions)]
    if let Some(secs) = std::env::var("PGDRILL_TEST_LEASE_TTL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        pgdrill_core::jobs::slot::set_lease_ttl_for_tests(secs);
    }
    // Tests of a restore's item count keep what pg_restore printed and what was counted.
    #[cfg(debug_assertions)]
    if let Some(file) = std::env::var_os("PGDRILL_TEST_RESTORE_TRACE").filter(|v| !v.is_empty()) {
        pgdrill_core::restore::trace_item_counts_for_tests(file.into());
    }
    // Password files a killed pgdrill left behind (their owner no longer holds their lock).
    pgdrill_pg::passfile::sweep_stale(&std::env::temp_dir());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (handle, cancel) = Cancel::new();
        watch_signals(handle);
        let mut ctx = Ctx::load(&flags(&cli), ui, cancel)?;
        if needs_fleet(&cli.command) {
            ctx.discover().await?;
        }
        dispatch(&cli, &ctx).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    finish(ui, result)
}

/// The flags that override settings, for `Ctx::load`.
fn flags(cli: &Cli) -> context::Flags {
    let c = &cli.conn;
    context::Flags {
        config: cli.config.clone(),
        store: c.store.clone(),
        source: c.source.clone(),
        name: c.name.clone(),
        recipients: c.recipients.clone(),
        passphrase_env: c.passphrase_env.clone(),
        identity: c.identity.clone(),
        from_store: c.from_store.clone(),
    }
}

/// Commands that act on every database: `[[server]]` databases are discovered first.
fn needs_fleet(command: &Command) -> bool {
    matches!(
        command,
        Command::Backup(_)
            | Command::List
            | Command::Drill(_)
            | Command::Prune(_)
            | Command::Status(_)
            | Command::Doctor
            | Command::Serve(_)
    )
}

async fn dispatch(cli: &Cli, ctx: &Ctx) -> Result<Output, Error> {
    match &cli.command {
        Command::Init(a) => commands::init::run(ctx, a),
        Command::Backup(a) => commands::backup::run(ctx, a).await,
        Command::List => commands::catalog::list(ctx).await,
        Command::Show(a) => commands::catalog::show(ctx, a).await,
        Command::Verify(a) => commands::catalog::verify(ctx, a).await,
        Command::Export(a) => commands::catalog::export(ctx, a).await,
        Command::Copy(a) => commands::copy::run(ctx, a).await,
        Command::Restore(a) => commands::restore::run(ctx, a).await,
        Command::Diff(a) => commands::diff::run(ctx, a).await,
        Command::Drill(a) => commands::drill::run(ctx, a).await,
        Command::Drills => commands::drill::list(ctx).await,
        Command::Demo(a) => commands::demo::run(ctx, a).await,
        Command::Prune(a) => commands::operate::prune(ctx, a).await,
        Command::Status(a) => commands::operate::status(ctx, a).await,
        Command::Doctor => commands::doctor::run(ctx).await,
        Command::Serve(a) => commands::serve::run(ctx, a).await,
        Command::Mirror(a) => commands::mirror::run(ctx, a).await,
    }
}

/// SIGINT/SIGTERM cancel the running job, which cleans up and exits non-zero.
fn watch_signals(handle: CancelHandle) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        eprintln!("pgdrill: signal received, stopping and cleaning up");
        handle.cancel();
    });
}

fn finish(ui: Ui, result: Result<Output, Error>) -> ExitCode {
    match result {
        Ok(out) => {
            if ui.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&commands::versioned(out.json))
                        .unwrap_or_default()
                );
            } else {
                print!("{}", out.human);
            }
            ExitCode::from(out.exit_code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if ui.json {
                let doc = serde_json::json!({"schema_version": commands::SCHEMA_VERSION, "error": {"message": e.to_string(), "exit_code": e.exit_code()}});
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            ExitCode::from(e.exit_code())
        }
    }
}
