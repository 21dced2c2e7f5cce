//! The restore plan: how a restore runs (pipe, spool or streamed), on how many jobs and
//! lanes, what happens to the target database, which roles are created, what is not
//! restored and why, and the steps in order. A pure function of the restore's options,
//! what the guards learned about the target, the dump index's state and the preflight's
//! decisions: `restore::run` executes it, `restore --dry-run` prints it.
//!
//! `--jobs` is resolved ([`resolve_jobs`]) and clamped here only.
//!
//! (Over 400 lines: more than half of it is the snapshot tests of representative plans.)

use serde::Serialize;

/// Most pg_restore jobs (and lanes) a restore uses.
pub const MAX_JOBS: u32 = 64;

/// The restore's jobs: the flag, else the configured value, else 1; within `1..=64`.
pub fn resolve_jobs(flag: Option<u32>, configured: Option<u32>) -> u32 {
    clamp_jobs(flag.or(configured).unwrap_or(1))
}

fn clamp_jobs(jobs: u32) -> u32 {
    jobs.clamp(1, MAX_JOBS)
}

/// How the archive reaches pg_restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One pg_restore reading the stream; its last bytes held back until the digests match.
    Pipe,
    /// Downloaded and verified into a temp file first, then `pg_restore -j N`.
    Spool,
    /// Ranged reads into N lanes beside a whole-object digest check (module `stream`).
    Stream,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pipe => "pipe",
            Mode::Spool => "spool",
            Mode::Stream => "stream",
        }
    }
}

/// What happens to the target database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Database {
    /// It exists (empty, or replaced with `--clean`).
    Existing,
    /// pgdrill creates it (and drops it again on failure).
    Create,
    /// pgdrill creates it as soon as the guards pass, while the table of contents is read.
    CreateEarly,
    /// The dump creates it (`pg_dump --create`, `--allow-create`).
    FromDump,
}

/// The restore's own options.
#[derive(Clone, Debug)]
pub(super) struct Options {
    pub(super) backup_id: String,
    /// The target, redacted.
    pub(super) target: String,
    pub(super) dbname: String,
    pub(super) jobs: u32,
    pub(super) spool: bool,
    pub(super) clean: bool,
    pub(super) globals: bool,
    /// The manifest records the source's encoding (older ones do not: the database is then
    /// created once the table of contents is read).
    pub(super) encoding_recorded: bool,
    /// pg_restore's version and path.
    pub(super) pg_restore: String,
}

/// What the guards learned about the target.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Target {
    pub(super) exists: bool,
    /// The dump creates its database (`pg_dump --create`).
    pub(super) create_mode: bool,
    pub(super) supabase: bool,
    pub(super) superuser: bool,
}

/// The backup's dump index.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Index {
    Missing,
    Usable,
    /// Missing from the store, or damaged: why.
    Unusable(String),
}

/// What the preflight decided from the table of contents and the target.
#[derive(Clone, Debug, Default)]
pub(super) struct Preflight {
    /// Entries are left out (a `--use-list`).
    pub(super) use_list: bool,
    /// Supabase platform rows load after the other data (a serial pg_restore).
    pub(super) reorder: bool,
    pub(super) create_roles: Vec<String>,
    pub(super) skipped: Vec<String>,
    pub(super) notes: Vec<String>,
    /// Grants on extension members run one by one after the restore.
    pub(super) deferred: usize,
}

/// Whether the database is created as soon as the guards pass: a streamed restore into a
/// new database by a superuser (who can create whatever the preflight finds missing).
pub(super) fn early_create(o: &Options, t: &Target) -> bool {
    may_stream(o)
        && t.superuser
        && !o.globals
        && !t.exists
        && !t.create_mode
        && !t.supabase
        && o.encoding_recorded
}

fn may_stream(o: &Options) -> bool {
    !o.spool && clamp_jobs(o.jobs) > 1
}

/// How a restore runs, decided before anything is changed.
#[derive(Clone, Debug, Serialize)]
pub struct RestorePlan {
    pub backup_id: String,
    pub target: String,
    pub pg_restore: String,
    pub mode: Mode,
    /// pg_restore jobs (and lanes when streamed).
    pub jobs: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanes: Option<u32>,
    pub database: Database,
    pub single_transaction: bool,
    pub clean: bool,
    /// GRANTs restored (Supabase backups), else `--no-privileges`.
    pub privileges: bool,
    /// Some entries are left out (`pg_restore --use-list`).
    pub use_list: bool,
    pub globals: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Roles created NOLOGIN before the restore (dropped again on failure).
    pub create_roles: Vec<String>,
    /// Archive entries not restored, each with the reason.
    pub skipped: Vec<String>,
    /// How the restore deviates from the defaults, and why.
    pub notes: Vec<String>,
    /// What happens, in order.
    pub steps: Vec<String>,
}

impl RestorePlan {
    pub(super) fn build(o: &Options, t: &Target, index: &Index, p: &Preflight) -> RestorePlan {
        let requested = clamp_jobs(o.jobs);
        let mut notes = p.notes.clone();
        let stream_shape = may_stream(o) && !t.exists && !t.create_mode && !p.use_list;
        if let (true, Index::Unusable(why)) = (stream_shape, index) {
            notes.push(format!(
                "the dump index could not be used ({why}); restored from a spool file instead"
            ));
        }
        let mut jobs = requested;
        if p.reorder {
            if jobs > 1 {
                notes.push("pg_restore ran serially: the Supabase platform tables' rows load in foreign-key order".to_string());
            }
            jobs = 1;
        }
        let mode = if stream_shape && *index == Index::Usable {
            Mode::Stream
        } else if requested > 1 || t.create_mode || p.reorder {
            Mode::Spool
        } else {
            Mode::Pipe
        };
        let database = if t.create_mode {
            Database::FromDump
        } else if t.exists {
            Database::Existing
        } else if early_create(o, t) {
            Database::CreateEarly
        } else {
            Database::Create
        };
        let single_transaction = t.exists && !t.create_mode && jobs == 1 && mode != Mode::Stream;
        let mut plan = RestorePlan {
            backup_id: o.backup_id.clone(),
            target: o.target.clone(),
            pg_restore: o.pg_restore.clone(),
            mode,
            jobs,
            lanes: (mode == Mode::Stream).then_some(jobs),
            database,
            single_transaction,
            clean: o.clean,
            privileges: t.supabase,
            use_list: p.use_list,
            globals: o.globals,
            profile: t.supabase.then(|| "supabase".to_string()),
            create_roles: p.create_roles.clone(),
            skipped: p.skipped.clone(),
            notes,
            steps: Vec::new(),
        };
        plan.steps = plan.steps_in_order(&o.dbname, p.deferred);
        plan
    }

    fn steps_in_order(&self, db: &str, deferred: usize) -> Vec<String> {
        let n = self.jobs;
        let mut s = Vec::new();
        if self.database == Database::CreateEarly {
            s.push(format!("create the database `{db}` as the guards pass, while the table of contents is read (dropped again on failure)"));
        }
        if self.globals {
            s.push("restore roles and tablespaces from the backup's globals (psql; existing ones are kept)".into());
        }
        if !self.create_roles.is_empty() {
            s.push(format!(
                "create the roles the backup names, NOLOGIN: {} (dropped again on failure)",
                self.create_roles.join(", ")
            ));
        }
        if self.database == Database::Create {
            s.push(format!(
                "create the database `{db}` (dropped again on failure)"
            ));
        }
        let list = if self.use_list {
            ", leaving out what is listed as not restored"
        } else {
            ""
        };
        let clean = if self.clean {
            ", replacing what the dump contains (--clean --if-exists)"
        } else {
            ""
        };
        match self.mode {
            Mode::Stream => {
                s.push("restore the schema (pre-data entries) from the table of contents".into());
                s.push(format!("load the data on {n} lanes from ranged reads of the stored dump, its size and SHA-256 checked beside"));
                s.push("give each large table its own indexes and constraints, then ANALYZE, as soon as its data is in".into());
                s.push(format!("restore the remaining post-data entries (pg_restore -j {n}) and ANALYZE the other tables"));
                s.push(
                    "ANALYZE materialized views and tables whose statistics need their indexes"
                        .into(),
                );
            }
            Mode::Spool => {
                s.push("download the dump into a spool file (free space checked) and verify its digests".into());
                if self.database == Database::FromDump {
                    s.push(format!("create the database `{db}` from the dump (pg_restore --create: the database, its settings and comment)"));
                }
                s.push(format!(
                    "pg_restore -j {n} from the spool file{list}{clean}"
                ));
                s.push(format!("ANALYZE every table ({n} session(s))"));
            }
            Mode::Pipe => {
                let txn = if self.single_transaction {
                    " in one transaction (a failure leaves the target unchanged)"
                } else {
                    ""
                };
                s.push(format!("stream the dump into pg_restore, its last 64 KiB held back until the digests match{list}{clean}{txn}"));
                s.push("ANALYZE every table".into());
            }
        }
        if deferred > 0 {
            s.push(format!(
                "run {deferred} grant(s) on extension members one by one"
            ));
        }
        s
    }

    /// The plan as text, for `restore --dry-run`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "restore plan for {} into {} (nothing was changed)\n",
            self.backup_id, self.target
        );
        let lanes = self
            .lanes
            .map(|l| format!(", {l} lanes"))
            .unwrap_or_default();
        out.push_str(&format!(
            "mode: {} ({} job(s){lanes})\n",
            self.mode.name(),
            self.jobs
        ));
        let db = match self.database {
            Database::Existing => "existing",
            Database::Create | Database::CreateEarly => "created by the restore",
            Database::FromDump => "created by the dump (--create)",
        };
        out.push_str(&format!("database: {db}\n"));
        out.push_str(&format!("pg_restore: {}\n", self.pg_restore));
        if let Some(p) = &self.profile {
            out.push_str(&format!("profile: {p} (docs/SUPABASE.md)\n"));
        }
        out.push_str("steps:\n");
        for (k, step) in self.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {step}\n", k + 1));
        }
        for s in &self.skipped {
            out.push_str(&format!("not restored: {s}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests;
