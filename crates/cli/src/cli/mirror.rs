//! `pgdrill mirror` arguments (parsing only).

use clap::{Args, Subcommand};
use pgdrill_core::mirror;

#[derive(Args, Debug)]
pub struct MirrorArgs {
    #[command(subcommand)]
    pub command: MirrorCommand,
}

#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Copy what changed from the source into the store and record a snapshot
    /// (every [[mirror]] entry, or --name N).
    Run(RunArgs),
    /// Snapshots of a mirror, oldest first.
    List,
    /// Re-read every object of a snapshot and check its SHA-256; exit 3 on any difference.
    Verify(VerifyArgs),
    /// Write a snapshot to a bucket or folder (never into the source without --force).
    Restore(RestoreArgs),
    /// Compare a bucket or folder with a snapshot; exit 1 when anything differs.
    Parity(ParityArgs),
    /// Delete old snapshots, then objects no kept snapshot references (--dry-run: plan only).
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Source: s3://bucket/prefix or a folder (default: the [[mirror]] entry's `from`).
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Record the snapshot even if the source shrank by more than max_drop_percent (or is empty).
    #[arg(long)]
    pub allow_drop: bool,
    /// Transfers in flight (default: the entry's `concurrency`, else 8).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A snapshot id or `latest`.
    #[arg(default_value = "latest")]
    pub snapshot: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["snapshot", "at"])))]
pub struct RestoreArgs {
    /// A snapshot id or `latest`.
    pub snapshot: Option<String>,
    /// The newest snapshot taken at or before this RFC 3339 time (e.g. a backup's snapshot time).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Destination: s3://bucket/prefix or a folder.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Allow writing into the mirror's own source.
    #[arg(long)]
    pub force: bool,
    /// Remove destination objects under the prefix that are not in the snapshot.
    #[arg(long)]
    pub delete: bool,
    /// Transfers in flight.
    #[arg(long, value_name = "N", default_value_t = mirror::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
}

#[derive(Args, Debug)]
pub struct ParityArgs {
    /// A snapshot id or `latest`.
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// The bucket or folder to compare: s3://bucket/prefix or a folder.
    #[arg(long, value_name = "URL")]
    pub with: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Print the plan, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep at least this many newest snapshots (default: the entry's keep_last, else 7).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Also keep snapshots younger than this (default: keep_within_days, else policy.retention_days).
    #[arg(long, value_name = "DAYS")]
    pub keep_within_days: Option<u64>,
}
