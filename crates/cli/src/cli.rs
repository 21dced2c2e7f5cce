//! Command-line definitions (DESIGN.md §8). Parsing only: validation happens in `context`.

/// `pgdrill mirror`'s arguments.
pub mod mirror;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation ran and failed (backup failed, a drill check failed, an SLO is violated)
  2  bad input or bad config
  3  integrity failure (checksum mismatch, truncated or corrupt object, invalid manifest)
  4  wrong or missing decryption key
  5  refused by a safety guard (nothing was changed)
  6  locked (another job holds the lease)";

#[derive(Parser, Debug)]
#[command(
    name = "pgdrill",
    version,
    about = "Back PostgreSQL up to object storage, restore it safely, and prove on a schedule that the backups restore.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Config file (default: ./pgdrill.toml when present; env PGDRILL_CONFIG).
    #[arg(long, global = true, env = "PGDRILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// One JSON document on stdout; logs stay on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: ConnFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that stand in for a config file.
#[derive(Args, Debug, Default, Clone)]
pub struct ConnFlags {
    /// Source database URL (env PGDRILL_SOURCE_URL). Prefer the env variable: argv is visible to other users.
    #[arg(long, global = true, value_name = "URL")]
    pub source: Option<String>,
    /// Store: a folder, file:///path or s3://bucket/prefix (env PGDRILL_STORE).
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Database name in the store (default: the URL's database name).
    #[arg(long, global = true, value_name = "DB")]
    pub name: Option<String>,
    /// age X25519 recipient to encrypt new backups to (repeatable).
    #[arg(long = "recipient", global = true, value_name = "AGE_PUBKEY")]
    pub recipients: Vec<String>,
    /// Name of the environment variable holding the encryption passphrase.
    #[arg(long, global = true, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// age identity file used to decrypt (restore, verify, export, drill).
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a commented pgdrill.toml (and an age key pair with --generate-key).
    Init(InitArgs),
    /// Back up the configured databases (or --source); prints the backup id.
    Backup,
    /// Complete backups, newest first.
    List,
    /// Show a backup's manifest in readable form.
    Show(SelectArgs),
    /// Re-read every stored byte of a backup and check it end to end.
    Verify(VerifyArgs),
    /// Write a backup as a plain pg_dump archive plus FILE.sha256.
    Export(ExportArgs),
    /// Restore a backup into a target database (guarded: never over the source).
    Restore(RestoreArgs),
    /// Restore into a throwaway cluster (or --target server), run the checks, measure RPO/RTO, write evidence.
    Drill(DrillArgs),
    /// Past drills from the store with verdict, RTO and RPO.
    Drills,
    /// A self-contained demo: throwaway source database, backup to a folder, drill, report.
    Demo(DemoArgs),
    /// Delete backups the retention rules no longer keep (--dry-run prints the plan).
    Prune(PruneArgs),
    /// SLOs: backup freshness, drill freshness, RTO/RPO, size anomaly; exit 1 when violated.
    Status(StatusArgs),
    /// Preflight: database, privileges, tool versions, store round trip, keys, disk, drill target.
    Doctor,
    /// Run the [schedule] (backups, drills, prune, status) with /metrics, /healthz and a dashboard.
    Serve(ServeArgs),
    /// Uploads buckets: copy a bucket or folder into the store with point-in-time snapshots.
    Mirror(mirror::MirrorArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address for /metrics, /healthz and the dashboard (default [serve] listen, 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Print the plan, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Also write Prometheus text to FILE (node_exporter textfile collector), atomically.
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// A backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
    /// A server to drill on (a fresh database is created there and dropped afterwards);
    /// default: [database.drill] target_url_env, then a throwaway local cluster.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Where to write the evidence (default ./pgdrill-reports/<drill-id>/).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Keep the restored database (and throwaway cluster) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Keep it only when the drill fails.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Parallel pg_restore jobs.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<u32>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's store and reports.
    #[arg(long, default_value = "pgdrill-demo")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup id or `latest`.
    pub backup: String,
    /// Target database URL (env PGDRILL_TARGET_URL); created when missing.
    #[arg(long, value_name = "URL", conflicts_with = "ephemeral")]
    pub target: Option<String>,
    /// Restore into a throwaway local cluster instead of --target.
    #[arg(long)]
    pub ephemeral: bool,
    /// With --ephemeral: leave the cluster running and print its URL and stop command.
    #[arg(long, requires = "ephemeral")]
    pub keep: bool,
    /// Parallel pg_restore jobs. Into a new database, table data streams from the store
    /// into N pg_restore runs; otherwise the dump is spooled to a temp file first.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<u32>,
    /// With --jobs > 1: download and verify the whole dump into a temp file before
    /// pg_restore starts, instead of streaming it.
    #[arg(long)]
    pub spool: bool,
    /// Replace what the dump contains in a non-empty target (pg_restore --clean --if-exists).
    #[arg(long)]
    pub clean: bool,
    /// Also restore roles and other globals (off by default).
    #[arg(long)]
    pub globals: bool,
    /// Allow a dump made with --create to re-create its database.
    #[arg(long)]
    pub allow_create: bool,
    /// Print the restore plan (mode, jobs, target database, what is skipped and why, the
    /// steps) after the guards and the preflight, and change nothing.
    #[arg(long, conflicts_with = "ephemeral")]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Also write an age identity file (mode 0600) and put its recipient in the config.
    #[arg(long)]
    pub generate_key: bool,
    /// Where to write the config (default ./pgdrill.toml, or --config).
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// A backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A backup id or `latest`.
    pub backup: Option<String>,
    /// Verify every complete backup.
    #[arg(long, conflicts_with = "backup")]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A backup id or `latest`.
    pub backup: String,
    /// Output file (a pg_dump custom-format archive).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}
