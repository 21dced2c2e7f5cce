//! Command-line definitions (DESIGN.md §8). Parsing only: validation happens in `context`.
//!
//! Every command's help shows its own options first, then the global ones, then only the
//! connection flags it reads (the others are still accepted, hidden); its examples follow.

/// `pgdrill mirror`'s arguments.
pub mod mirror;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

const MAIN_AFTER_HELP: &str = "\
Examples:
  pgdrill demo                          # the whole job on a throwaway database, nothing to configure
  pgdrill init --generate-key           # write pgdrill.toml and an age key pair
  pgdrill backup && pgdrill drill       # back up, then prove the backup restores
  pgdrill <command> --help              # a command's options and examples

Exit codes:
  0  success
  1  the operation ran and failed (backup failed, a drill check failed, an SLO is violated)
  2  bad input or bad config
  3  integrity failure (checksum mismatch, truncated or corrupt object, invalid manifest)
  4  wrong or missing decryption key
  5  refused by a safety guard (nothing was changed)
  6  locked (another job holds the lease)";

const GLOBAL: &str = "Global options";
const CONNECTION: &str = "Connection options (instead of a config file)";

/// The whole command line. `Parser` and `CommandFactory` are implemented by hand (below) so
/// that parsing and `--help` both use [`command`].
#[derive(Args, Debug)]
#[command(
    version = env!("CARGO_PKG_VERSION"),
    about = "Back PostgreSQL up to object storage, restore it safely, and prove on a schedule that the backups restore.",
    long_about = "Back PostgreSQL up to object storage, restore it safely, and prove on a schedule that the backups restore.\n\n\
        Settings come from pgdrill.toml (see `pgdrill init`), PGDRILL_* environment variables and flags; \
        flags win over the environment, the environment over the file.",
    after_help = MAIN_AFTER_HELP
)]
pub struct Cli {
    /// Config file [env: PGDRILL_CONFIG; default: ./pgdrill.toml when present]
    #[arg(long, global = true, env = "PGDRILL_CONFIG", hide_env = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// One JSON document on stdout; logs stay on stderr
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// More detail on stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: ConnFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that stand in for a config file.
#[derive(Args, Debug, Default, Clone)]
pub struct ConnFlags {
    /// Source database URL [env: PGDRILL_SOURCE_URL]; prefer the variable, argv is visible to other users
    #[arg(long, global = true, value_name = "URL", help_heading = CONNECTION)]
    pub source: Option<String>,
    /// Store: a folder, file:///path or s3://bucket/prefix [env: PGDRILL_STORE_URL]
    #[arg(long, global = true, value_name = "URL", help_heading = CONNECTION)]
    pub store: Option<String>,
    /// Database name in the store (default: the URL's database name, or every configured one)
    #[arg(long, global = true, value_name = "DB", help_heading = CONNECTION)]
    pub name: Option<String>,
    /// age X25519 recipient to encrypt new backups to (repeatable)
    #[arg(long = "recipient", global = true, value_name = "AGE_PUBKEY", help_heading = CONNECTION)]
    pub recipients: Vec<String>,
    /// Name of the environment variable holding the encryption passphrase
    #[arg(long, global = true, value_name = "VAR", help_heading = CONNECTION)]
    pub passphrase_env: Option<String>,
    /// age identity file that decrypts backups
    #[arg(long, global = true, value_name = "FILE", help_heading = CONNECTION)]
    pub identity: Option<PathBuf>,
    /// Read from this configured store only ([[store]] name); default: the first, in config order, that holds the backup and is reachable
    #[arg(long, global = true, hide = true, value_name = "NAME", help_heading = CONNECTION)]
    pub from_store: Option<String>,
}

/// The connection flags (argument ids) each command reads; the rest are hidden in its help.
fn conn_flags_of(command: &str) -> &'static [&'static str] {
    const ALL: &[&str] = &[
        "source",
        "store",
        "name",
        "recipients",
        "passphrase_env",
        "identity",
    ];
    match command {
        "init" | "demo" => &[],
        "copy" => &["name"],
        "backup" => &["source", "store", "name", "recipients", "passphrase_env"],
        "drills" | "prune" | "status" | "mirror" => &["store", "name"],
        "list" | "show" => &["store", "name", "from_store"],
        "verify" | "export" => &["store", "name", "passphrase_env", "identity", "from_store"],
        "restore" | "drill" => &[
            "source",
            "store",
            "name",
            "passphrase_env",
            "identity",
            "from_store",
        ],
        "diff" => &[
            "source",
            "store",
            "name",
            "recipients",
            "passphrase_env",
            "identity",
            "from_store",
        ],
        _ => ALL,
    }
}

/// The command line with each subcommand's help limited to the flags it reads.
pub fn command() -> clap::Command {
    let mut cmd = Cli::augment_args(clap::Command::new("pgdrill"));
    let conn: Vec<clap::Arg> = ConnFlags::augment_args(clap::Command::new("conn"))
        .get_arguments()
        .cloned()
        .collect();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let keep = conn_flags_of(&name);
        // A subcommand that already has an argument of a global's id does not receive the
        // global: a hidden copy keeps it parsed (and global) there, just not shown.
        let mut added: Vec<clap::Arg> = conn
            .iter()
            .filter(|a| a.get_id() != "from_store" && !keep.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        // `--from-store` is hidden unless the command reads from a store it picks: a visible
        // copy there (so the commands that do not read it keep their help as it was).
        if keep.contains(&"from_store") {
            added.extend(
                conn.iter()
                    .filter(|a| a.get_id() == "from_store")
                    .map(|a| a.clone().hide(false)),
            );
        }
        cmd = cmd.mut_subcommand(&name, |sc| sc.args(added));
    }
    cmd.mut_subcommand("mirror", |m| {
        MIRROR_EXAMPLES.iter().fold(m, |m, (sub, examples)| {
            m.mut_subcommand(*sub, |s| s.after_help(*examples))
        })
    })
}

/// Examples of the `mirror` subcommands (their arguments live in `commands::mirror::args`).
const MIRROR_EXAMPLES: &[(&str, &str)] = &[
    (
        "run",
        "Examples:\n  pgdrill mirror run                           # every [[mirror]] entry\n  pgdrill mirror run --name uploads --from s3://app-uploads/orders",
    ),
    (
        "list",
        "Examples:\n  pgdrill mirror list --name uploads\n  pgdrill mirror list --json",
    ),
    (
        "verify",
        "Examples:\n  pgdrill mirror verify                        # the latest snapshot\n  pgdrill mirror verify 20261121T020000Z-1a2b --name uploads",
    ),
    (
        "restore",
        "Examples:\n  pgdrill mirror restore latest --to ./uploads-restored\n  pgdrill mirror restore --at 2026-11-21T02:00:00Z --to s3://restore-bucket/uploads",
    ),
    (
        "parity",
        "Examples:\n  pgdrill mirror parity --with s3://app-uploads/orders\n  pgdrill mirror parity latest --with ./uploads-restored",
    ),
    (
        "prune",
        "Examples:\n  pgdrill mirror prune --dry-run\n  pgdrill mirror prune --keep-last 14",
    ),
];

impl CommandFactory for Cli {
    fn command() -> clap::Command {
        command()
    }
    fn command_for_update() -> clap::Command {
        command()
    }
}

impl Parser for Cli {}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a commented pgdrill.toml (and an age key pair with --generate-key)
    ///
    /// The file lists every setting with its default; fill in the store and one [[database]]
    /// entry. With --generate-key, an age identity is written with mode 0600 and its public
    /// recipient goes into [encryption] recipients: keep the identity off the database host.
    #[command(after_help = "\
Examples:
  pgdrill init --generate-key                  # ./pgdrill.toml and ./pgdrill-age.key
  pgdrill init --path /etc/pgdrill/pgdrill.toml
  pgdrill init --force                         # overwrite an existing file")]
    Init(InitArgs),
    /// Back up the configured databases (or --source); prints the backup id
    ///
    /// pg_dump streams through SHA-256, zstd and age into the store; manifest.json is written
    /// last, so a failed backup never looks like one. Use the database's direct URL, not a
    /// pooler's.
    #[command(after_help = "\
Examples:
  pgdrill backup                               # every [[database]] in pgdrill.toml
  pgdrill backup --name app                    # one of them
  PGDRILL_SOURCE_URL=postgresql://app@db:5432/app pgdrill backup --store s3://bucket/pg --recipient age1...
  pgdrill backup --jobs 4                      # pg_dump -Fd -j 4, one object per table")]
    Backup(BackupArgs),
    /// Complete backups, newest first
    ///
    /// A backup without its manifest (failed or still running) is never listed.
    #[command(after_help = "\
Examples:
  pgdrill list
  pgdrill list --name app --json
  pgdrill list --store /var/backups/pgdrill")]
    List,
    /// Show a backup's manifest in readable form
    ///
    /// Tables with their row counts at the snapshot, versions, sizes, digests and the policy
    /// in force; --json prints all of it.
    #[command(after_help = "\
Examples:
  pgdrill show                                 # the latest backup
  pgdrill show 20261121T020000Z-7f3a --json")]
    Show(SelectArgs),
    /// Re-read every stored byte of a backup and check it end to end
    ///
    /// Size, SHA-256, decryption, decompression and the raw SHA-256 of every object; exit 3 on
    /// any mismatch, 4 when the key does not open it.
    #[command(after_help = "\
Examples:
  pgdrill verify latest
  pgdrill verify --all --identity pgdrill-age.key")]
    Verify(VerifyArgs),
    /// Write a backup as a plain pg_dump archive plus FILE.sha256
    ///
    /// The archive restores with pg_restore alone; it is renamed into place only after every
    /// digest matched.
    #[command(after_help = "\
Examples:
  pgdrill export latest -o app.pgc && sha256sum -c app.pgc.sha256
  pg_restore --no-owner -d postgresql://localhost/app_copy app.pgc")]
    Export(ExportArgs),
    /// Copy backups into another configured store ([[store]] entries), e.g. a new offsite one
    ///
    /// The stored objects are copied as they are (no key needed), each checked against the
    /// manifest's sha256 while it streams; the manifest is written last in the target.
    /// Backups already complete there are skipped; one incomplete in the source is not copied.
    /// Exit 2 for an unknown store name, 3 when an object does not match its manifest.
    #[command(after_help = "\
Examples:
  pgdrill copy latest --to offsite             # the latest backup, from the first other store
  pgdrill copy --all --to offsite --from primary
  pgdrill copy 20261121T020000Z-7f3a --to local --name app --json")]
    Copy(CopyArgs),
    /// Restore a backup into a target database (guarded: never over the source)
    ///
    /// Refused (exit 5, nothing changed) when the target is the source, is listed in
    /// protected_targets, or is not empty without --clean. A missing target database is created.
    #[command(after_help = "\
Examples:
  pgdrill restore latest --target postgresql://app@staging:5432/app_restore
  pgdrill restore latest --target postgresql://app@staging:5432/app_restore --dry-run   # the plan only
  pgdrill restore latest --ephemeral --keep    # a throwaway local cluster, left running
  pgdrill restore 20261121T020000Z-7f3a --target \"$STAGING_URL\" --clean --jobs 4
  pgdrill restore latest --table public.orders --target \"$APP_URL\" --into-schema orders_back
  pgdrill restore --at 2026-11-21T09:00:00Z --table public.orders --target \"$STAGING_URL\"")]
    Restore(RestoreArgs),
    /// Rows added, removed and changed in one table since a backup (or between two backups)
    ///
    /// The backup's table is restored (its frames only) into a scratch database on the
    /// target's server, then both sides are read in primary-key order (whole-row hash without
    /// one) with bounded memory. The live database is only read; the scratch database is
    /// dropped. Two backups without --target compare in a throwaway local cluster.
    #[command(after_help = "\
Examples:
  pgdrill diff latest --table public.orders --target \"$APP_URL\"
  pgdrill diff --at 2026-11-21T09:00:00Z --table public.orders --target \"$APP_URL\" --sql undo.sql
  pgdrill diff 20261120T020000Z-1a2b 20261121T020000Z-7f3a --table public.orders")]
    Diff(DiffArgs),
    /// Restore into a throwaway cluster (or --target server), run the checks, measure RPO/RTO, write evidence
    ///
    /// The checks come from [database.drill] (row counts equal to the backup's snapshot always
    /// run). Evidence: result.json, report.md, report.html and drill.log, locally and in the
    /// store. Exit 0 only if everything passed.
    #[command(after_help = "\
Examples:
  pgdrill drill                                # the latest backup of every database
  pgdrill drill --name app --report-dir ./evidence
  pgdrill drill --keep-on-failure              # keep the restored database to look into")]
    Drill(DrillArgs),
    /// Past drills from the store with verdict, RTO and RPO
    #[command(after_help = "\
Examples:
  pgdrill drills
  pgdrill drills --name app --json")]
    Drills,
    /// A self-contained demo: throwaway source database, backup to a folder, drill, report
    ///
    /// Needs a PostgreSQL server installed (initdb); changes nothing outside --dir.
    #[command(after_help = "\
Examples:
  pgdrill demo
  pgdrill demo --dir /tmp/pgdrill-demo --json")]
    Demo(DemoArgs),
    /// Delete backups the retention rules no longer keep (--dry-run prints the plan)
    ///
    /// Never deletes the newest complete backup nor the one the last passing drill used;
    /// [retention] sets the rules.
    #[command(after_help = "\
Examples:
  pgdrill prune --dry-run
  pgdrill backup && pgdrill prune              # in cron")]
    Prune(PruneArgs),
    /// SLOs: backup freshness, drill freshness, RTO/RPO, size anomaly; exit 1 when violated
    #[command(after_help = "\
Examples:
  pgdrill status
  pgdrill status --prometheus /var/lib/node_exporter/pgdrill.prom")]
    Status(StatusArgs),
    /// Preflight: database, privileges, tool versions, store round trip, keys, disk, drill target
    ///
    /// Each check prints ok or FAIL with a hint; exit 1 if any failed. Run it after editing
    /// pgdrill.toml and on every new host.
    #[command(after_help = "\
Examples:
  pgdrill doctor
  pgdrill doctor --json")]
    Doctor,
    /// Run the [schedule] (backups, drills, prune, status) with /metrics, /healthz and a dashboard
    #[command(after_help = "\
Examples:
  pgdrill serve
  pgdrill serve --listen 0.0.0.0:9187")]
    Serve(ServeArgs),
    /// Uploads buckets: copy a bucket or folder into the store with point-in-time snapshots
    #[command(after_help = "\
Examples:
  pgdrill mirror run
  pgdrill mirror restore --at 2026-11-21T02:00:00Z --to ./uploads-restored")]
    Mirror(mirror::MirrorArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address for /metrics, /healthz and the dashboard (default [serve] listen, 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Daemon log lines: `text` (an RFC 3339 UTC timestamp, the level, then the message) or
    /// `json` (one object a line with ts, level, component, msg, and job, database and
    /// backup_id where known, for log shippers).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
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
    /// Upgrade rehearsal: restore into a throwaway cluster of this newer PostgreSQL major
    /// (an installed one; `pgdrill doctor` lists them) and run the same checks.
    #[arg(long, value_name = "N", conflicts_with = "target")]
    pub major: Option<u32>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's store and reports.
    #[arg(long, default_value = "pgdrill-demo")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["backup", "at"])))]
pub struct RestoreArgs {
    /// A backup id or `latest`.
    pub backup: Option<String>,
    /// The backup with the newest snapshot at or before this RFC 3339 time (instead of an id).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Restore only this table (SCHEMA.TABLE; repeatable), with its indexes, constraints,
    /// owned sequences, policies, comments, grants and partitions, reading only its part of
    /// the dump. Never over an existing table.
    #[arg(long = "table", value_name = "SCHEMA.TABLE", conflicts_with_all = ["ephemeral", "clean", "globals", "allow_create"])]
    pub tables: Vec<String>,
    /// Restore every table of this schema (repeatable), as --table does.
    #[arg(long = "schema", value_name = "NAME", conflicts_with_all = ["ephemeral", "clean", "globals", "allow_create"])]
    pub schemas: Vec<String>,
    /// With --table/--schema: put the restored tables into this new schema (it must not
    /// exist yet); the only way a table restore goes into the source or a protected database.
    #[arg(long, value_name = "NAME")]
    pub into_schema: Option<String>,
    /// Target database URL [env: PGDRILL_TARGET_URL]; created when missing.
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
#[command(group(clap::ArgGroup::new("which").required(true).args(["backup", "at"])))]
pub struct DiffArgs {
    /// A backup id or `latest` (compared from).
    pub backup: Option<String>,
    /// A second backup id (compared to) instead of the live --target database.
    pub other: Option<String>,
    /// The backup with the newest snapshot at or before this RFC 3339 time (instead of an id).
    #[arg(long, value_name = "TIME", conflicts_with = "other")]
    pub at: Option<String>,
    /// The table to compare (SCHEMA.TABLE).
    #[arg(long, value_name = "SCHEMA.TABLE")]
    pub table: String,
    /// The live database compared [env: PGDRILL_TARGET_URL]; with two backups, only the
    /// server that hosts the scratch databases.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Sample rows shown of each kind.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub samples: usize,
    /// Write the SQL that puts the live table back to the backup's rows into FILE (one
    /// transaction; review it before running it).
    #[arg(long, value_name = "FILE")]
    pub sql: Option<PathBuf>,
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
pub struct BackupArgs {
    /// Parallel pg_dump processes [config: [backup] jobs]: above 1, `pg_dump -Fd -j N`, each
    /// table's data file stored as its own object while it is written.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
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
pub struct CopyArgs {
    /// A backup id or `latest`.
    #[arg(required_unless_present = "all")]
    pub backup: Option<String>,
    /// Copy every complete backup (of every database, or of --name).
    #[arg(long, conflicts_with = "backup")]
    pub all: bool,
    /// The store to copy into (its [[store]] name).
    #[arg(long, value_name = "STORE-NAME")]
    pub to: String,
    /// The store to copy from (default: the first configured store other than --to).
    #[arg(long, value_name = "STORE-NAME")]
    pub from: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A backup id or `latest`.
    pub backup: String,
    /// Output file (a pg_dump custom-format archive).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}
