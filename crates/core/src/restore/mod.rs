//! Restore: guards first (exit 5, nothing touched), then a plan, then download → verify →
//! pg_restore.
//!
//! - `guards`: what must hold before anything is touched, and what the target holds;
//! - `prepare` (I/O) feeds `preflight` and `supabase` (pure): the table of contents against
//!   the target, deciding what is skipped, which roles are created, the `--use-list`;
//! - `plan`: the pure [`RestorePlan`] (mode pipe/spool/stream, jobs and lanes, the target
//!   database, the steps in order), which `restore --dry-run` prints;
//! - execution: `spool` (pipe and spool), `stream` (ranged reads into N lanes), `analyze`,
//!   `globals`, `cleanup` (create and drop the target database), with pg_restore built and
//!   run by `command` and judged by `verdict`.
//!
//! Integrity before visibility:
//! - `jobs == 1` streams into pg_restore but holds back the stream's last bytes until every
//!   digest matched, so pg_restore cannot finish (or commit) a corrupt or truncated dump;
//! - `jobs > 1` spools to a temp file and verifies before pg_restore starts (or streams into
//!   a database it created, which is dropped on any failure);
//! - a database pgdrill created is dropped on any failure; an existing database (`--clean`)
//!   is restored in one transaction when `jobs == 1`, so a failure leaves it as it was.
//!
//! A signal (the [`Cancel`] token) stops pg_restore at any stage: SIGTERM first, so that it
//! cancels its server queries and stops its parallel workers, then SIGKILL.
//!
//! Backups of Supabase projects get the handling of `docs/SUPABASE.md` (module `supabase`).

mod analyze;
mod cleanup;
mod command;
mod directory;
mod globals;
mod guards;
mod plan;
mod preflight;
mod prepare;
mod spool;
mod sql;
mod stream;
mod supabase;
pub mod table;
mod verdict;

pub use command::trace_item_counts_for_tests;
pub use plan::{resolve_jobs, Database, Mode, RestorePlan, MAX_JOBS};
pub use spool::{free_bytes, Holdback};
pub use sql::unquote_ident;
pub use verdict::pg_restore_failure;

use crate::cancel::Cancel;
use crate::manifest::{Manifest, StoredObject};
use crate::progress::Progress;
use crate::verify::ReadOpts;
use crate::{Error, Result};
use cleanup::{create_target, undo_create};
use command::list_file;
use guards::{inspect, maintenance_db, TargetInfo};
use pgdrill_pg::{ConnSpec, PgTools};
use pgdrill_store::Store;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct RestoreJob<'a> {
    pub store: &'a Store,
    pub manifest: &'a Manifest,
    pub target: ConnSpec,
    /// The configured source of this database, when known (guard: never restore over it).
    pub source: Option<ConnSpec>,
    pub protected_targets: &'a [crate::protect::ProtectedTarget],
    pub tools: &'a PgTools,
    pub read: ReadOpts,
    pub jobs: u32,
    pub clean: bool,
    pub allow_create: bool,
    /// Substrings of pg_restore error lines that do not fail the restore.
    pub ignore_errors: &'a [String],
    /// `maintenance_work_mem` for pg_restore's sessions (`[restore] maintenance_work_mem`);
    /// `None`: the server's setting.
    pub maintenance_work_mem: Option<crate::config::MemorySize>,
    pub spool_dir: Option<PathBuf>,
    /// Also restore roles and tablespaces from the backup's globals object.
    pub globals: bool,
    /// With `jobs > 1`: download and verify into a spool file before pg_restore starts,
    /// even where the streamed restore applies.
    pub spool: bool,
    /// Extensions not to restore (`[restore] skip_extensions`), with their comments and
    /// grants.
    pub skip_extensions: &'a [String],
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    pub backup_id: String,
    pub target: String,
    pub created_database: bool,
    /// pg_restore jobs actually used.
    pub jobs: u32,
    /// `stream` (ranged reads into parallel pg_restore runs), `spool` (download and verify
    /// into a temp file, then `pg_restore -j`) or `pipe` (one pg_restore reading the stream).
    pub mode: String,
    pub pg_restore: String,
    pub download_seconds: f64,
    pub restore_seconds: f64,
    pub analyze_seconds: f64,
    pub total_seconds: f64,
    /// pg_restore errors that the allowlist covered.
    pub ignored_errors: Vec<String>,
    /// `supabase` when the backup is a Supabase project's (docs/SUPABASE.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Roles created (NOLOGIN) on the target before the restore: the backup's entries name
    /// them and the target lacked them. Dropped again when the restore fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub created_roles: Vec<String>,
    /// Archive entries deliberately not restored, each with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// How the restore deviated from the defaults, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Objects of the backup found missing or corrupt that the restore did without (its dump
    /// index: the dump was restored from a spool file instead): `verify` fails on them, and
    /// so does a drill.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
    /// The restore's stages in order (name, start, duration, bytes, tables), as the
    /// terminal's progress line showed them.
    pub stages: Vec<crate::progress::StageRecord>,
}

fn interrupted() -> Error {
    Error::Failed("the restore was interrupted by a signal".into())
}

fn check_cancel(job: &RestoreJob<'_>) -> Result<()> {
    if job.read.cancel.is_cancelled() {
        return Err(interrupted());
    }
    Ok(())
}

/// What a failed restore left in the target, for its message.
#[derive(Default)]
struct Traces {
    /// pg_restore wrote into the existing target database outside one transaction (or
    /// dropped it to re-create it): a failure leaves it changed.
    changed: AtomicBool,
    /// The database this restore created was dropped again.
    dropped: AtomicBool,
}

/// Restores a backup into `job.target`. A failure says whether the target database was
/// changed: left partly restored, or untouched (a database created for the restore is
/// dropped again).
pub async fn run(job: RestoreJob<'_>) -> Result<RestoreReport> {
    let traces = Traces::default();
    let db = job.target.dbname.clone();
    run_traced(job, &traces).await.map_err(|e| {
        if matches!(e, Error::Refused(_)) {
            return e;
        }
        let note = if traces.changed.load(Ordering::SeqCst) {
            format!(
                "the target database `{db}` WAS CHANGED: it is partly restored (restore again with --clean, or drop it)"
            )
        } else if traces.dropped.load(Ordering::SeqCst) {
            format!("the database `{db}` this restore created was dropped again; nothing else was changed")
        } else if e.to_string().contains("unchanged") {
            return e;
        } else {
            format!("the target database `{db}` was not changed")
        };
        cleanup::with_note(e, Some(note))
    })
}

/// pg_restore's version and path, for the report.
fn describe(install: &pgdrill_pg::PgInstall) -> String {
    format!(
        "{} ({})",
        install.version,
        install.bin("pg_restore").display()
    )
}

/// The plan's inputs that the options and the manifest give.
fn options(job: &RestoreJob<'_>, pg_restore: String) -> plan::Options {
    plan::Options {
        backup_id: job.manifest.backup_id.to_string(),
        target: job.target.redacted(),
        dbname: job.target.dbname.clone(),
        jobs: job.jobs,
        spool: job.spool,
        clean: job.clean,
        globals: job.globals,
        encoding_recorded: job.manifest.source.encoding.is_some(),
        pg_restore,
    }
}

fn dump_object(job: &RestoreJob<'_>) -> Result<StoredObject> {
    job.manifest
        .dump_object()
        .cloned()
        .ok_or_else(|| Error::Integrity("the manifest lists no dump".into()))
}

/// The dump index's state for the plan. A directory-layout backup needs none: its manifest
/// lists one object per table, which the streamed restore reads directly.
fn index_state(job: &RestoreJob<'_>, index: &Result<Option<stream::Loaded>>) -> plan::Index {
    if job.manifest.is_directory() {
        return plan::Index::Usable;
    }
    match index {
        Ok(Some(_)) => plan::Index::Usable,
        Ok(None) => plan::Index::Missing,
        Err(e) => plan::Index::Unusable(e.to_string()),
    }
}

/// `restore --dry-run`: the guards and the preflight, then the plan. Nothing is changed and
/// nothing is written anywhere: the target is only read, and of the backup only the
/// manifest, the dump index and the dump's table of contents.
pub async fn dry_run(job: RestoreJob<'_>) -> Result<RestorePlan> {
    let dump = dump_object(&job)?;
    let admin = job.target.with_dbname(&maintenance_db(&job.target));
    let (info, index) = tokio::join!(inspect(&job), stream::load_index(&job, &dump));
    let info = info?;
    let install = job.tools.pick("pg_restore", job.manifest.dump_major())?;
    if job.globals {
        globals::object(&job)?;
    }
    let loaded = index.as_ref().ok().and_then(Option::as_ref);
    let planned = prepare::prepare(&job, &info, &admin, &dump, loaded, true).await?;
    let mut plan = RestorePlan::build(
        &options(&job, describe(&install)),
        &info.facts(),
        &index_state(&job, &index),
        &planned.summary(),
    );
    directory_steps(&job, &mut plan);
    Ok(plan)
}

async fn run_traced(job: RestoreJob<'_>, traces: &Traces) -> Result<RestoreReport> {
    let t0 = Instant::now();
    let dump = dump_object(&job)?;
    let admin = job.target.with_dbname(&maintenance_db(&job.target));
    // Only a database created here is dropped on failure (or one `pg_restore --create` made).
    let created = AtomicBool::new(false);
    // The dump index (small) and the dump's first bytes are read while the target is
    // inspected: the preflight reads the table of contents from them, and a streamed
    // restore its data. Reading the store changes nothing. When it will stream into a new
    // database as a superuser (who can create whatever the preflight finds missing), the
    // database is created as soon as the guards pass, while the index is on its way.
    let (info, early_index) = tokio::join!(
        async {
            let info = inspect(&job).await?;
            let install = job.tools.pick("pg_restore", job.manifest.dump_major())?;
            let opts = options(&job, describe(&install));
            if plan::early_create(&opts, &info.facts()) {
                create_target(&job, &info, &admin, &created, None).await?;
            }
            Ok::<_, Error>((info, install, opts))
        },
        stream::load_index(&job, &dump)
    );
    let (info, install, opts) = info?;
    if info.exists || info.create_mode {
        // Nothing to create: the guards' connection is not needed any more.
        drop(info.admin.lock().ok().and_then(|mut c| c.take()));
    }
    // From here on, a failure drops what was created.
    let abandon = |e: Error| undo_create(&job, &admin, &created, traces, e);

    // A listed index the store does not have, or that does not match its digests, does not
    // stop a restore (the dump alone is enough) but is reported as what it is.
    let damaged: Vec<String> = match &early_index {
        Err(e @ Error::Integrity(_)) => vec![e.to_string()],
        _ => Vec::new(),
    };
    job.read.progress.stage("read the table of contents");
    let loaded = early_index.as_ref().ok().and_then(Option::as_ref);
    let planned = match prepare::prepare(&job, &info, &admin, &dump, loaded, false).await {
        Ok(p) => p,
        Err(e) => return Err(abandon(e).await),
    };
    let mut plan = RestorePlan::build(
        &opts,
        &info.facts(),
        &index_state(&job, &early_index),
        &planned.summary(),
    );
    directory_steps(&job, &mut plan);
    let list_guard = match planned.list.as_deref().map(list_file).transpose() {
        Ok(f) => f,
        Err(e) => return Err(abandon(e).await),
    };
    let list = list_guard.as_ref().map(|f| f.path());
    if let Err(e) = check_cancel(&job) {
        return Err(abandon(e).await);
    }

    let mut notes = plan.notes.clone();
    if job.manifest.is_directory() && plan.mode != Mode::Stream {
        notes.push(
            "a parallel backup (directory layout): every object was downloaded and checked into a spool directory, then restored with pg_restore -Fd".into(),
        );
    }
    if job.globals {
        notes.extend(globals::restore(&job, &admin).await?);
        check_cancel(&job)?;
    }
    let created_roles = match preflight::create_roles(&admin, &plan.create_roles).await {
        Ok(r) => r,
        Err(e) => return Err(abandon(e).await),
    };
    let index = match early_index {
        Ok(Some(i)) if plan.mode == Mode::Stream => Some(i),
        _ => None,
    };
    if let Err(e) = check_cancel(&job) {
        preflight::drop_roles(&admin, &created_roles).await;
        return Err(abandon(e).await);
    }
    let archive_encoding = planned.encoding.clone();
    let create = async {
        let creates = matches!(plan.database, Database::Create | Database::CreateEarly);
        if creates && !created.load(Ordering::SeqCst) {
            create_target(&job, &info, &admin, &created, archive_encoding).await?;
        }
        Ok::<(), Error>(())
    };
    let outcome = async {
        if plan.mode == Mode::Stream && job.manifest.is_directory() {
            // A parallel backup: the lanes read each table's object directly.
            let s = stream::restore_objects(&job, &install, plan.jobs, info.version_num, create)
                .await?;
            return Ok(((s.download, s.restore, s.ignored, s.notes), s.analyze));
        }
        if let Some(index) = index {
            // The database is created while the dump's table of contents is fetched.
            let s = stream::restore(
                &job,
                &install,
                &dump,
                index,
                plan.jobs,
                info.version_num,
                create,
            )
            .await?;
            return Ok(((s.download, s.restore, s.ignored, s.notes), s.analyze));
        }
        create.await?;
        let r = match plan.mode {
            // A parallel backup: its objects into a spool directory, then pg_restore -Fd.
            _ if job.manifest.is_directory() => {
                directory::restore(&job, &install, &plan, list, &created, traces).await?
            }
            Mode::Pipe => spool::pipe(&job, &install, &dump, &plan, list).await?,
            _ => spool::spool(&job, &install, &dump, &plan, list, &created, traces).await?,
        };
        check_cancel(&job)?;
        job.read.progress.stage("analyze");
        let ta = Instant::now();
        let mut cancel = job.read.cancel.clone();
        tokio::select! {
            r = analyze::analyze(&job.target, plan.jobs) => r?,
            _ = cancel.cancelled() => return Err(interrupted()),
        }
        let (download, restore, ignored) = r;
        Ok::<_, Error>((
            (download, restore, ignored, Vec::new()),
            ta.elapsed().as_secs_f64(),
        ))
    }
    .await;
    drop(list_guard);
    let mut skipped = plan.skipped.clone();
    if outcome.is_ok() && !planned.deferred.is_empty() {
        skipped.extend(prepare::run_deferred(&job.target, &planned.deferred).await);
    }
    job.read.progress.finish();
    match outcome {
        Ok(((download, restore, ignored, more_notes), analyze)) => Ok(RestoreReport {
            backup_id: job.manifest.backup_id.to_string(),
            target: job.target.redacted(),
            created_database: !info.exists,
            jobs: plan.jobs,
            mode: plan.mode.name().to_string(),
            pg_restore: plan.pg_restore.clone(),
            download_seconds: download,
            restore_seconds: restore,
            analyze_seconds: analyze,
            total_seconds: t0.elapsed().as_secs_f64(),
            ignored_errors: ignored,
            profile: plan.profile.clone(),
            created_roles,
            skipped,
            notes: info
                .create_notes
                .lock()
                .map(|n| n.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(notes)
                .chain(more_notes)
                .collect(),
            damaged,
            stages: job.read.progress.stages(),
        }),
        Err(e) => {
            let e = undo_create(&job, &admin, &created, traces, e).await;
            preflight::drop_roles(&admin, &created_roles).await;
            Err(e)
        }
    }
}

/// The streamed restore of a directory-layout backup reads objects, not ranges of one
/// dump: its plan says so.
fn directory_steps(job: &RestoreJob<'_>, plan: &mut RestorePlan) {
    if !job.manifest.is_directory() {
        return;
    }
    let n = plan.jobs;
    for step in &mut plan.steps {
        if plan.mode == Mode::Stream && step.starts_with("load the data on") {
            *step = format!("load the data on {n} lanes, each table's object streamed from the store into its COPY, its size and SHA-256 checked before the COPY completes");
        } else if step.starts_with("stream the dump into pg_restore") {
            *step = "download every object of the parallel backup into a spool directory (free space checked), verify its digests, then pg_restore -Fd from it".into();
        } else if step.starts_with("download the dump into a spool file") {
            *step = "download every object of the parallel backup into a spool directory (free space checked) and verify its digests".into();
        }
    }
}

/// Progress and cancellation for a restore, bundled for callers.
pub fn read_opts(
    keys: Arc<crate::crypto::DecryptionKeys>,
    progress: Arc<Progress>,
    cancel: Cancel,
    jobs: u32,
) -> ReadOpts {
    ReadOpts {
        keys,
        progress,
        cancel,
        parallel: jobs.max(1) as usize * 2,
    }
}
