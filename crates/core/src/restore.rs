//! Restore: guards first (exit 5, nothing touched), then download → verify → pg_restore.
//!
//! Integrity before visibility:
//! - `jobs == 1` streams into pg_restore but holds back the stream's last bytes until every
//!   digest matched, so pg_restore cannot finish (or commit) a corrupt or truncated dump;
//! - `jobs > 1` spools to a temp file and verifies before pg_restore starts;
//! - a database pgdrill created is dropped on any failure; an existing database (`--clean`)
//!   is restored in one transaction when `jobs == 1`, so a failure leaves it as it was.
//!
//! A signal (the [`Cancel`] token) stops pg_restore at any stage: SIGTERM first, so that it
//! cancels its server queries and stops its parallel workers, then SIGKILL.
//!
//! Backups of Supabase projects get the handling of `docs/SUPABASE.md` (module `supabase`).

mod cleanup;
mod globals;
mod plan;
mod preflight;
mod sql;
mod stream;
mod supabase;

pub use sql::unquote_ident;

use crate::cancel::Cancel;
use crate::manifest::{Manifest, StoredObject};
use crate::progress::Progress;
use crate::verify::{decode_object, ReadOpts};
use crate::{Error, Result};
use pgdrill_pg::client;
use pgdrill_pg::{ConnSpec, PgInstall, PgTools};
use pgdrill_store::Store;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub maintenance_work_mem: Option<String>,
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
}

/// What the guards learned about the target.
struct TargetInfo {
    exists: bool,
    /// The dump creates its database itself (`pg_dump --create`, restored with `--allow-create`).
    create_mode: bool,
    /// The backup is a Supabase project's (docs/SUPABASE.md).
    supabase: bool,
    /// Supabase platform schemas the target database already has (it is another project).
    platform_schemas: Vec<String>,
    /// The target server's `server_version_num`.
    version_num: u32,
    /// The restoring role is a superuser (it can create any role or extension the dump names).
    superuser: bool,
    /// The connection to the maintenance database the guards used (it creates the target).
    admin: std::sync::Mutex<Option<tokio_postgres::Client>>,
    /// What creating the target database had to change (a locale the server lacks).
    create_notes: std::sync::Mutex<Vec<String>>,
}

/// Checks every guard without changing anything, and learns what the target holds.
async fn inspect(job: &RestoreJob<'_>) -> Result<TargetInfo> {
    let t = &job.target;
    // By spelling first, before connecting anywhere; by server identity below.
    crate::protect::check(job.protected_targets, t, None, "").await?;
    let m = job.manifest;
    let recorded = ConnSpec {
        host: m.source.host.clone(),
        port: m.source.port,
        dbname: m.source.dbname.clone(),
        ..t.clone()
    };
    if t.identity_key() == recorded.identity_key()
        || job
            .source
            .as_ref()
            .is_some_and(|s| s.identity_key() == t.identity_key())
    {
        return Err(Error::Refused(format!(
            "{} is the backup's source database; nothing was changed (restore into another database)",
            t.redacted()
        )));
    }
    let create_mode = m.pg_dump.creates_database;
    if create_mode && !job.allow_create {
        return Err(Error::Refused(
            "this dump re-creates its database (pg_dump --create); nothing was changed (pass --allow-create if that is intended)".into(),
        ));
    }
    if create_mode && t.dbname != m.source.dbname {
        // pg_restore --create restores into the database named in the dump, whatever the
        // target URL says: the guards must look at that database, so the names must agree.
        return Err(Error::Refused(format!(
            "this dump re-creates its database under its own name `{}`, but the target names `{}`; nothing was changed (use a target URL ending in /{} on another server)",
            m.source.dbname, t.dbname, m.source.dbname
        )));
    }
    let admin = t.with_dbname(&maintenance_db(t));
    let client = client::connect(&admin).await?;
    let facts = client::server_facts(&client, &admin).await?;
    crate::protect::check(
        job.protected_targets,
        t,
        facts.system_identifier.as_deref(),
        &admin.dbname,
    )
    .await?;
    if let (Some(a), Some(b)) = (&facts.system_identifier, &m.server.system_identifier) {
        if a == b && t.dbname == m.source.dbname {
            return Err(Error::Refused(format!(
                "{} is on the backup's source server (same system identifier) and has the same database name; nothing was changed",
                t.redacted()
            )));
        }
    }
    let exists = client::database_exists(&client, &admin, &t.dbname).await?;
    let supabase = supabase::is_supabase_backup(m);
    let mut platform_schemas = Vec::new();
    if exists {
        let target_client = client::connect(t).await?;
        if supabase {
            platform_schemas = supabase::target_platform_schemas(t).await?;
        }
        let objects =
            client::user_object_count_excluding(&target_client, t, &platform_schemas).await?;
        if objects > 0 && !job.clean {
            return Err(Error::Refused(format!(
                "{} is not empty ({objects} objects); nothing was changed (pass --clean to replace what the dump contains, or restore into a new database)",
                t.redacted()
            )));
        }
        if create_mode && !job.clean {
            return Err(Error::Refused(format!(
                "{} exists and this dump re-creates it; nothing was changed (pass --clean to drop and re-create it, or drop it first)",
                t.redacted()
            )));
        }
    }
    let available = client::available_extensions(&client, &admin).await?;
    let missing: Vec<&str> = m
        .content
        .extensions
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "plpgsql" && !available.iter().any(|a| a == e))
        .filter(|e| !(supabase && supabase::PLATFORM_EXTENSIONS.contains(e)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Failed(format!(
            "the target server lacks extensions the backup uses: {}; install them there first (nothing was restored)",
            missing.join(", ")
        )));
    }
    Ok(TargetInfo {
        exists,
        create_mode,
        supabase,
        platform_schemas,
        version_num: facts.version_num,
        superuser: is_superuser(&client).await,
        admin: std::sync::Mutex::new(Some(client)),
        create_notes: std::sync::Mutex::new(Vec::new()),
    })
}

async fn is_superuser(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "select rolsuper from pg_roles where rolname = current_user",
        &[],
    )
    .await
    .ok()
    .and_then(|r| r.try_get::<_, bool>(0).ok())
    .unwrap_or(false)
}

fn maintenance_db(t: &ConnSpec) -> String {
    if t.dbname == "postgres" {
        "template1".into()
    } else {
        "postgres".into()
    }
}

/// How pg_restore runs.
#[derive(Clone)]
struct Mode {
    /// Download and verify into a local file first (else stream into pg_restore's stdin).
    spool: bool,
    jobs: u32,
    single_txn: bool,
    /// `pg_restore --create`: the dump creates its database.
    create: bool,
    /// `--clean --if-exists`.
    clean: bool,
    /// Restore GRANTs (else `--no-privileges`).
    privileges: bool,
    /// `--use-list` file: the archive entries to restore, in order.
    list: Option<PathBuf>,
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

async fn run_traced(job: RestoreJob<'_>, traces: &Traces) -> Result<RestoreReport> {
    let t0 = Instant::now();
    check_memory_setting(job.maintenance_work_mem.as_deref())?;
    let dump = job
        .manifest
        .dump_object()
        .ok_or_else(|| Error::Integrity("the manifest lists no dump".into()))?
        .clone();
    let admin = job.target.with_dbname(&maintenance_db(&job.target));
    // Only a database created here is dropped on failure (or one `pg_restore --create` made).
    let created = AtomicBool::new(false);
    // The dump index (small) and the dump's first bytes are read while the target is
    // inspected: the preflight reads the table of contents from them, and a streamed
    // restore its data. Reading the store changes nothing. When it will stream into a new
    // database as a superuser (who can create whatever the preflight finds missing), the
    // database is created as soon as the guards pass, while the index is on its way.
    let may_stream = !job.spool && job.jobs > 1;
    let (info, early_index) = tokio::join!(
        async {
            let info = inspect(&job).await?;
            let install = job.tools.pick("pg_restore", job.manifest.dump_major())?;
            // An older manifest does not record the source's encoding: the database is
            // created once the table of contents (which does) has been read.
            if may_stream
                && info.superuser
                && !job.globals
                && !info.exists
                && !info.create_mode
                && !info.supabase
                && job.manifest.source.encoding.is_some()
            {
                create_target(&job, &info, &admin, &created, None).await?;
            }
            Ok::<_, Error>((info, install))
        },
        stream::load_index(&job, &dump)
    );
    let (info, install) = info?;
    if info.exists || info.create_mode {
        // Nothing to create: the guards' connection is not needed any more.
        drop(info.admin.lock().ok().and_then(|mut c| c.take()));
    }
    // From here on, a failure drops what was created.
    let abandon = |e: Error| undo_create(&job, &admin, &created, traces, e);

    let mut mode = Mode {
        spool: job.jobs > 1 || info.create_mode,
        jobs: job.jobs.max(1),
        single_txn: false,
        create: info.create_mode,
        clean: job.clean,
        privileges: info.supabase,
        list: None,
    };
    let mut notes = Vec::new();
    // A listed index the store does not have, or that does not match its digests, does not
    // stop a restore (the dump alone is enough) but is reported as what it is.
    let damaged: Vec<String> = match &early_index {
        Err(e @ Error::Integrity(_)) => vec![e.to_string()],
        _ => Vec::new(),
    };
    job.read.progress.stage("read the table of contents");
    let loaded = early_index.as_ref().ok().and_then(Option::as_ref);
    let planned = match plan::plan(&job, &info, &admin, &dump, loaded).await {
        Ok(p) => p,
        Err(e) => return Err(abandon(e).await),
    };
    notes.extend(planned.notes.iter().cloned());
    let mut list_guard = None;
    if let Some(list) = &planned.list {
        let f = match list_file(list) {
            Ok(f) => f,
            Err(e) => return Err(abandon(e).await),
        };
        mode.list = Some(f.path().to_path_buf());
        list_guard = Some(f);
    }
    if planned.reorder {
        mode.spool = true;
        if mode.jobs > 1 {
            notes.push("pg_restore ran serially: the Supabase platform tables' rows load in foreign-key order".to_string());
        }
        mode.jobs = 1;
    }
    mode.single_txn = info.exists && !info.create_mode && mode.jobs == 1;
    if let Err(e) = check_cancel(&job) {
        return Err(abandon(e).await);
    }

    if job.globals {
        notes.extend(globals::restore(&job, &admin).await?);
        check_cancel(&job)?;
    }
    let created_roles = match preflight::create_roles(&admin, &planned.create_roles).await {
        Ok(r) => r,
        Err(e) => return Err(abandon(e).await),
    };
    // The streamed restore needs a database it may drop on failure: one created here,
    // and the whole archive (a list, or reordered rows, go through pg_restore's own order).
    let mut index = None;
    if may_stream && !info.exists && !info.create_mode && planned.list.is_none() {
        match early_index {
            Ok(i) => index = i,
            Err(e) => notes.push(format!(
                "the dump index could not be used ({e}); restored from a spool file instead"
            )),
        }
        if let Err(e) = check_cancel(&job) {
            preflight::drop_roles(&admin, &created_roles).await;
            return Err(abandon(e).await);
        }
    }
    let mode_name = match (&index, mode.spool) {
        (Some(_), _) => "stream",
        (None, true) => "spool",
        (None, false) => "pipe",
    };
    let archive_encoding = planned.encoding.clone();
    let create = async {
        if !info.exists && !info.create_mode && !created.load(Ordering::SeqCst) {
            create_target(&job, &info, &admin, &created, archive_encoding).await?;
        }
        Ok::<(), Error>(())
    };
    let outcome = async {
        if let Some(index) = index {
            // The database is created while the dump's table of contents is fetched.
            let s = stream::restore(
                &job,
                &install,
                &dump,
                index,
                mode.jobs,
                info.version_num,
                create,
            )
            .await?;
            return Ok(((s.download, s.restore, s.ignored, s.notes), s.analyze));
        }
        create.await?;
        let r = restore_into(&job, &install, &dump, &mode, &created, traces, !info.exists).await?;
        check_cancel(&job)?;
        job.read.progress.stage("analyze");
        let ta = Instant::now();
        let mut cancel = job.read.cancel.clone();
        tokio::select! {
            r = analyze(&job.target, mode.jobs) => r?,
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
    let mut planned = planned;
    if outcome.is_ok() && !planned.deferred.is_empty() {
        let missed = plan::run_deferred(&job.target, &planned.deferred).await;
        planned.skipped.extend(missed);
    }
    match outcome {
        Ok(((download, restore, ignored, more_notes), analyze)) => Ok(RestoreReport {
            backup_id: job.manifest.backup_id.to_string(),
            target: job.target.redacted(),
            created_database: !info.exists,
            jobs: mode.jobs,
            mode: mode_name.to_string(),
            pg_restore: format!(
                "{} ({})",
                install.version,
                install.bin("pg_restore").display()
            ),
            download_seconds: download,
            restore_seconds: restore,
            analyze_seconds: analyze,
            total_seconds: t0.elapsed().as_secs_f64(),
            ignored_errors: ignored,
            profile: info.supabase.then(|| "supabase".to_string()),
            created_roles,
            skipped: planned.skipped,
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
        }),
        Err(e) => {
            let e = undo_create(&job, &admin, &created, traces, e).await;
            preflight::drop_roles(&admin, &created_roles).await;
            Err(e)
        }
    }
}

/// Creates the target database, on the guards' connection when it is still open.
async fn create_target(
    job: &RestoreJob<'_>,
    info: &TargetInfo,
    admin: &ConnSpec,
    created: &AtomicBool,
    archive_encoding: Option<String>,
) -> Result<()> {
    // The source database's encoding and locale (SQL_ASCII or LATIN1 data cannot be
    // restored into a UTF8 database); an old manifest without them: the archive's encoding
    // and the server's default locale.
    let src = &job.manifest.source;
    let like = client::DbLocale {
        encoding: src.encoding.clone().or(archive_encoding),
        lc_collate: src.lc_collate.clone(),
        lc_ctype: src.lc_ctype.clone(),
    };
    let noted = |note: Option<String>| {
        if let (Some(n), Ok(mut notes)) = (note, info.create_notes.lock()) {
            notes.push(n);
        }
    };
    let kept = info.admin.lock().ok().and_then(|mut c| c.take());
    if let Some(c) = kept.filter(|c| !c.is_closed()) {
        match client::create_database_like(&c, admin, &job.target.dbname, &like).await {
            Ok(note) => {
                created.store(true, Ordering::SeqCst);
                noted(note);
                return Ok(());
            }
            // The guards' connection died while idle: connect anew below.
            Err(_) if c.is_closed() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let c = client::connect(admin).await?;
    let note = client::create_database_like(&c, admin, &job.target.dbname, &like).await?;
    created.store(true, Ordering::SeqCst);
    noted(note);
    Ok(())
}

/// Drops the target database after a failed restore, waiting a bounded time for a target
/// that restarts; returns what to add to the error when it is still there.
/// After a failure: says so plainly when the target went away, and drops the database this
/// restore created (if it did), noting in `traces` whether it is gone or still there.
async fn undo_create(
    job: &RestoreJob<'_>,
    admin: &ConnSpec,
    created: &AtomicBool,
    traces: &Traces,
    e: Error,
) -> Error {
    let e = cleanup::explain_lost_connection(e);
    if !created.load(Ordering::SeqCst) {
        return e;
    }
    let note = drop_target(job, admin).await;
    let flag = if note.is_none() {
        &traces.dropped
    } else {
        &traces.changed
    };
    flag.store(true, Ordering::SeqCst);
    cleanup::with_note(e, note)
}

async fn drop_target(job: &RestoreJob<'_>, admin: &ConnSpec) -> Option<String> {
    cleanup::drop_created(admin, &job.target.dbname).await
}

/// ANALYZE every table, over `jobs` connections at once (as `vacuumdb -j` does), biggest
/// tables first so one large table does not finish last.
async fn analyze(target: &ConnSpec, jobs: u32) -> Result<()> {
    analyze_pass(target, jobs, AnalyzePass::All).await
}

/// Which tables an ANALYZE pass covers.
enum AnalyzePass<'a> {
    All,
    /// Tables and partitioned tables, except those in the set (`"schema"."name"`, quoted),
    /// once their data is in (materialized views are filled later).
    Loaded(&'a std::collections::HashSet<String>),
    /// Materialized views, and tables whose statistics need objects made after the data
    /// (expression indexes, extended statistics), except those in the set (analyzed after
    /// their own indexes already).
    Dependent(&'a std::collections::HashSet<String>),
}

async fn analyze_pass(target: &ConnSpec, jobs: u32, pass: AnalyzePass<'_>) -> Result<()> {
    let fail = |e: tokio_postgres::Error| {
        Error::Failed(format!(
            "ANALYZE failed after the restore: {}",
            client::describe(&e)
        ))
    };
    let c = client::connect(target).await?;
    // The size of a table left out is not read: another session may be building its index
    // (pg_relation_size would wait for that session's lock).
    let left_out: Vec<&str> = match &pass {
        AnalyzePass::Loaded(done) => done.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    let rows = c
        .query(
            "select q, dependent, view from (select '\"' || replace(n.nspname, '\"', '\"\"') \
             || '\".\"' || replace(c.relname, '\"', '\"\"') || '\"' as q, \
             exists (select 1 from pg_index i where i.indrelid = c.oid \
             and i.indexprs is not null) or exists (select 1 from pg_statistic_ext x \
             where x.stxrelid = c.oid) as dependent, c.relkind = 'm' as view, c.oid from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'm', 'p') \
             and n.nspname not in ('pg_catalog', 'information_schema') \
             and n.nspname not like 'pg\\_toast%' \
             and has_schema_privilege(n.oid, 'USAGE') and pg_has_role(c.relowner, 'USAGE')) t \
             order by case when q = any($1) then 0 else pg_relation_size(oid) end desc",
            &[&left_out],
        )
        .await
        .map_err(fail)?;
    let tables: Vec<String> = rows
        .iter()
        .filter(|r| {
            let (name, dependent, view) = (
                r.get::<_, String>(0),
                r.get::<_, bool>(1),
                r.get::<_, bool>(2),
            );
            match pass {
                AnalyzePass::All => true,
                AnalyzePass::Loaded(done) => !view && !done.contains(&name),
                AnalyzePass::Dependent(done) => view || (dependent && !done.contains(&name)),
            }
        })
        .map(|r| r.get(0))
        .collect();
    // No more sessions than tables; the first one is the connection that listed them.
    let n = (jobs.max(1) as usize).min(tables.len());
    let queue = std::sync::Arc::new(std::sync::Mutex::new(tables.into_iter()));
    let mut listing = Some(c);
    let workers = (0..n).map(|_| {
        let (queue, conn) = (queue.clone(), listing.take());
        async move {
            let c = match conn {
                Some(c) => c,
                None => client::connect(target).await?,
            };
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(table) = next else {
                    return Ok::<(), Error>(());
                };
                c.batch_execute(&format!("analyze {table}"))
                    .await
                    .map_err(fail)?;
            }
        }
    });
    for r in futures::future::join_all(workers).await {
        r?;
    }
    Ok(())
}

/// Returns (download seconds, restore seconds, ignored errors).
async fn restore_into(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    dump: &StoredObject,
    mode: &Mode,
    created: &AtomicBool,
    traces: &Traces,
    new_database: bool,
) -> Result<(f64, f64, Vec<String>)> {
    let passfile = job
        .target
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let pf = passfile.as_ref().map(|f| f.path().to_path_buf());
    let mut cancel = job.read.cancel.clone();
    if !mode.spool {
        let t = Instant::now();
        job.read.progress.stage("download + restore");
        let cmd = pg_restore_command(install, job, mode, None, pf.as_deref());
        let mut proc = Proc::spawn(cmd, install)?;
        let stdin = proc.child.stdin.take();
        let stderr = proc.child.stderr.take();
        let (Some(stdin), Some(stderr)) = (stdin, stderr) else {
            return Err(Error::Failed("cannot connect to pg_restore's input".into()));
        };
        let errors = collect_lines(stderr);
        let watcher = Watcher::start(proc.pid(), cancel.clone());
        let decoded = decode_object(
            job.store,
            job.manifest,
            dump,
            Holdback::new(stdin),
            &job.read,
        )
        .await;
        let held = match decoded {
            Ok((_, held)) => held,
            Err(e) => {
                watcher.finish().await;
                // Whether pg_restore stopped by itself (its verdict matters) or is still
                // waiting for input (the failure was upstream: stop it, blame the stream).
                let status = proc.exited_within(Duration::from_millis(300)).await;
                proc.stop().await;
                let lines = errors.join().unwrap_or_default();
                check_cancel(job)?;
                return Err(
                    explain_early_stop(job, dump, e, status, &lines, mode.single_txn).await,
                );
            }
        };
        // pg_restore may still be busy with the held-back tail: the watcher stays on.
        let released = held.release();
        watcher.finish().await;
        let status = proc.wait(&mut cancel).await;
        let lines = errors.join().unwrap_or_default();
        let status = status?;
        if let Err(e) = released {
            return Err(
                verdict(Some(status), &lines, job.ignore_errors, mode.single_txn)
                    .err()
                    .unwrap_or_else(|| {
                        Error::Failed(format!("pg_restore stopped reading the dump: {e}"))
                    }),
            );
        }
        let ignored = verdict(Some(status), &lines, job.ignore_errors, mode.single_txn)?;
        let secs = t.elapsed().as_secs_f64();
        Ok((secs, secs, ignored))
    } else {
        let spool = spool_file(job)?;
        let t = Instant::now();
        job.read.progress.stage("download");
        let file = spool
            .reopen()
            .map_err(|e| Error::Failed(format!("cannot open the spool file: {e}")))?;
        let (_, file) = decode_object(
            job.store,
            job.manifest,
            dump,
            std::io::BufWriter::with_capacity(1 << 20, file),
            &job.read,
        )
        .await?;
        // No fsync: the spool is a throwaway file pg_restore reads back at once.
        let mut file = file
            .into_inner()
            .map_err(|e| Error::Failed(format!("cannot write the spool file: {e}")))?;
        // Our dumps came through a pipe, so their TOC has no data offsets; set them as
        // pg_dump does for files, or every pg_restore worker scans for its blocks.
        let patched =
            tokio::task::spawn_blocking(move || pgdrill_pg::archive::set_data_offsets(&mut file))
                .await
                .map_err(|e| Error::Failed(format!("the spool stage crashed: {e}")))?;
        if let Err(e) = patched {
            // Only a speed-up: pg_restore still reads an archive without offsets.
            job.read
                .progress
                .stage(&format!("restore (data offsets not set: {e})"));
        }
        let download = t.elapsed().as_secs_f64();
        check_cancel(job)?;
        let t = Instant::now();
        let fresh;
        let mut mode = mode;
        if mode.create {
            job.read.progress.stage("create the database");
            // With --clean, pg_restore drops the existing database first.
            if !new_database {
                traces.changed.store(true, Ordering::SeqCst);
            }
            create_from_dump(job, install, mode, spool.path(), pf.as_deref()).await?;
            if new_database {
                created.store(true, Ordering::SeqCst);
            }
            // The rest goes into that new, empty database: nothing to clean.
            fresh = Mode {
                create: false,
                clean: false,
                ..mode.clone()
            };
            mode = &fresh;
        }
        job.read.progress.stage("restore");
        if !new_database && !mode.single_txn {
            traces.changed.store(true, Ordering::SeqCst);
        }
        let cmd = pg_restore_command(install, job, mode, Some(spool.path()), pf.as_deref());
        let (status, lines) = Proc::run(cmd, install, &mut cancel).await?;
        let ignored = verdict(Some(status), &lines, job.ignore_errors, mode.single_txn)?;
        Ok((download, t.elapsed().as_secs_f64(), ignored))
    }
}

/// `pg_restore --create`, first step: creates the dump's database (with its settings and
/// comment) and nothing else, stopping at the first error. The guards saw no such database
/// (or `--clean` replaces it), but one created since, by someone else, must be neither restored
/// into nor dropped on failure: a second step restores the rest once this one succeeded.
async fn create_from_dump(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    mode: &Mode,
    spool: &Path,
    passfile: Option<&Path>,
) -> Result<()> {
    // With --create, pg_restore restores the DATABASE entries whatever the list says; the list
    // adds the database's comment and security labels.
    let mut ls = Command::new(install.bin("pg_restore"));
    ls.args(["--list", "--create"]).arg(spool);
    job.target.configure_child(&mut ls, None);
    let out = tokio::task::spawn_blocking(move || ls.output())
        .await
        .map_err(|e| Error::Failed(format!("pg_restore --list crashed: {e}")))?
        .map_err(|e| Error::Failed(format!("cannot run pg_restore --list: {e}")))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "pg_restore --list cannot read the dump ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let list = list_file(&database_entries(&String::from_utf8_lossy(&out.stdout)))?;
    let step = Mode {
        jobs: 1,
        single_txn: false,
        list: Some(list.path().to_path_buf()),
        ..mode.clone()
    };
    let mut cmd = pg_restore_command(install, job, &step, Some(spool), passfile);
    cmd.arg("--exit-on-error");
    let (status, lines) = Proc::run(cmd, install, &mut job.read.cancel.clone()).await?;
    if status.success() {
        return Ok(());
    }
    let (failing, _) = classify(&lines, &[]);
    let db = &job.target.dbname;
    if !job.clean
        && failing
            .iter()
            .any(|l| l.contains(&format!("database \"{db}\" already exists")))
    {
        return Err(Error::Refused(format!(
            "the database `{db}` was created on the target by someone else after the checks passed; nothing was restored into it or dropped (restore elsewhere, or pass --clean to replace it)"
        )));
    }
    Err(Error::Failed(format!(
        "pg_restore could not create the database `{db}`, so nothing was restored: {}",
        if failing.is_empty() {
            tail(&lines, 3)
        } else {
            failing.join(" ;; ")
        }
    )))
}

/// The entries of a `pg_restore --list --create` that belong to the database object itself.
fn database_entries(toc: &str) -> String {
    toc.lines()
        .filter(|l| {
            // "ID; CATALOG OID DESC SCHEMA NAME OWNER"; the database's are "DATABASE - app ..."
            // and "COMMENT - DATABASE app ...".
            let rest = l.splitn(4, ' ').nth(3).unwrap_or("");
            !l.starts_with(';') && (rest.starts_with("DATABASE ") || rest.contains(" - DATABASE "))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The stream into pg_restore ended early: a corrupt or undecryptable object, a store
/// failure, or pg_restore itself stopped reading. pg_restore may stop *because* the bytes were
/// corrupt before the digest could tell, so the object is re-checked before blaming it.
async fn explain_early_stop(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    e: Error,
    status: Option<ExitStatus>,
    lines: &[String],
    single_txn: bool,
) -> Error {
    if matches!(e, Error::Integrity(_) | Error::Key(_)) {
        return e;
    }
    job.read.progress.stage("verify the stored dump");
    if let Err(v @ (Error::Integrity(_) | Error::Key(_))) =
        decode_object(job.store, job.manifest, dump, std::io::sink(), &job.read).await
    {
        return v;
    }
    let rolled_back = if single_txn {
        "; the restore ran in one transaction, which was rolled back, so the target is unchanged"
    } else {
        ""
    };
    // pg_restore complaining that its input ended is the consequence of the stream stopping,
    // not a cause: then the stream's own error is the one to report.
    let (mut failing, _) = classify(lines, &[]);
    failing.retain(|l| !l.contains("could not read from input file") && !l.contains("end of file"));
    if failing.is_empty() && lines.iter().any(|l| is_error_line(l)) {
        return e;
    }
    if failing.is_empty() {
        return match status {
            Some(s) if !s.success() => Error::Failed(format!(
                "pg_restore stopped before the end of the dump ({s}): {}{rolled_back}",
                tail(lines, 3)
            )),
            _ => e,
        };
    }
    Error::Failed(format!(
        "pg_restore stopped before the end of the dump: {}{rolled_back}",
        failing
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ;; ")
    ))
}

/// `pg_restore --list` of the dump, read from the head of the stored object (pg_restore stops
/// reading after the table of contents, so a large dump is not downloaded for this).
/// A temp file holding a `--use-list`.
fn list_file(text: &str) -> Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("pgdrill-list-")
        .tempfile()
        .map_err(|e| Error::Failed(format!("cannot write a restore list: {e}")))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| Error::Failed(format!("cannot write a restore list: {e}")))?;
    Ok(f)
}

fn spool_file(job: &RestoreJob<'_>) -> Result<tempfile::NamedTempFile> {
    let dir = job.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let raw = job.manifest.raw_bytes;
    let need = raw.saturating_add(raw / 10).saturating_add(64 << 20);
    let stat = rustix::fs::statvfs(&dir).map_err(|e| {
        Error::Invalid(format!("cannot check free space in {}: {e}", dir.display()))
    })?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < need {
        return Err(Error::Failed(format!(
            "{} has {} MiB free but the parallel restore spools {} MiB: free space, set TMPDIR, or use --jobs 1 (no spool)",
            dir.display(),
            free >> 20,
            need >> 20
        )));
    }
    tempfile::Builder::new()
        .prefix("pgdrill-spool-")
        .tempfile_in(&dir)
        .map_err(|e| {
            Error::Failed(format!(
                "cannot create a spool file in {}: {e}",
                dir.display()
            ))
        })
}

fn pg_restore_command(
    install: &PgInstall,
    job: &RestoreJob<'_>,
    mode: &Mode,
    file: Option<&Path>,
    passfile: Option<&Path>,
) -> Command {
    let mut cmd = Command::new(install.bin("pg_restore"));
    // With --create, pg_restore connects to the maintenance database, creates the dump's
    // database (whose name the guards checked equals the target's) and switches to it.
    let db = if mode.create {
        maintenance_db(&job.target)
    } else {
        job.target.dbname.clone()
    };
    cmd.arg(format!("--dbname={db}"))
        .args(["--no-owner", "--no-password"]);
    if !mode.privileges {
        cmd.arg("--no-privileges");
    }
    if mode.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if mode.single_txn {
        cmd.arg("--single-transaction");
    }
    if mode.create {
        cmd.arg("--create");
    }
    if let Some(l) = &mode.list {
        cmd.arg(format!("--use-list={}", l.display()));
    }
    match file {
        Some(f) => {
            cmd.arg(format!("--jobs={}", mode.jobs)).arg(f);
            cmd.stdin(Stdio::null());
        }
        None => {
            cmd.stdin(Stdio::piped());
        }
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    configure_pg_restore(job, &mut cmd, passfile, &[]);
    cmd
}

/// Checks `[restore] maintenance_work_mem` before anything happens: a PostgreSQL memory
/// size (digits and an optional unit).
fn check_memory_setting(configured: Option<&str>) -> Result<()> {
    configured.map_or(Ok(()), crate::config::check_memory_size)
}

/// Connection settings for a pg_restore child: `settings` (server settings for its
/// session), then any `options` the target URL has (so the user's own win), then the
/// restore's `maintenance_work_mem`.
fn configure_pg_restore(
    job: &RestoreJob<'_>,
    cmd: &mut Command,
    passfile: Option<&Path>,
    settings: &[(&str, &str)],
) {
    job.target.configure_child(cmd, passfile);
    if let Some(opts) = pg_options(
        settings,
        job.target.param("options"),
        job.maintenance_work_mem.as_deref(),
    ) {
        cmd.env("PGOPTIONS", opts);
    }
}

/// `PGOPTIONS` for a pg_restore child, if it needs one: see [`configure_pg_restore`].
fn pg_options(
    settings: &[(&str, &str)],
    url_options: Option<&str>,
    maintenance_work_mem: Option<&str>,
) -> Option<String> {
    if settings.is_empty() && maintenance_work_mem.is_none() {
        return None;
    }
    let mut opts: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("-c {k}={v}"))
        .collect();
    opts.extend(url_options.filter(|o| !o.is_empty()).map(str::to_string));
    opts.extend(maintenance_work_mem.map(|m| format!("-c maintenance_work_mem={m}")));
    Some(opts.join(" "))
}

/// A child process that never outlives pgdrill's interest in it.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(mut cmd: Command, install: &PgInstall) -> Result<Proc> {
        let child = cmd.spawn().map_err(|e| {
            Error::Failed(format!(
                "cannot start {}: {e}",
                install.bin("pg_restore").display()
            ))
        })?;
        Ok(Proc { child })
    }

    /// Runs `cmd` (stdin set by the caller, stderr piped) to its end: its exit status and
    /// stderr lines.
    async fn run(
        cmd: Command,
        install: &PgInstall,
        cancel: &mut Cancel,
    ) -> Result<(ExitStatus, Vec<String>)> {
        let mut proc = Proc::spawn(cmd, install)?;
        let stderr = proc
            .child
            .stderr
            .take()
            .ok_or_else(|| Error::Failed("cannot read pg_restore's errors".into()))?;
        let errors = collect_lines(stderr);
        let status = proc.wait(cancel).await;
        let lines = errors.join().unwrap_or_default();
        Ok((status?, lines))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit; on a signal, stops the process and returns the interruption.
    /// The exit is noticed at once (the next stage of a restore waits on it).
    async fn wait(&mut self, cancel: &mut Cancel) -> Result<ExitStatus> {
        let mut exit = exit_notice(self.pid());
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => {}
                Err(e) => return Err(Error::Failed(format!("cannot wait for pg_restore: {e}"))),
            }
            let notice = async {
                match exit.as_mut() {
                    Some(rx) => drop(rx.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = notice => exit = None,
                // A slow poll besides, should the notice never come.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = cancel.cancelled() => {
                    self.stop().await;
                    return Err(interrupted());
                }
            }
        }
    }

    /// The exit status if the process ends within `grace`.
    async fn exited_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process if it still runs: SIGTERM (pg_restore then cancels its queries and
    /// stops its workers), SIGKILL after 5 s. Returns the exit status.
    async fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        send_signal(self.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A notice, as soon as the child `pid` has exited, from a blocking `waitid(WNOWAIT)` on
/// a worker thread; the status is still collected by `try_wait`.
fn exit_notice(pid: u32) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        use rustix::process::{waitid, WaitId, WaitIdOptions};
        let _ = waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        );
        let _ = tx.send(());
    });
    Some(rx)
}

/// Sends `signal` (a name such as `TERM`) to `pid` with the shell's `kill` builtin.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("/bin/sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\"",
            "sh",
            signal,
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends SIGTERM to a child once the job is cancelled, so that a stage blocked on the child
/// (a full pipe) ends too. The child must not be reaped before [`Watcher::finish`].
struct Watcher(tokio::task::JoinHandle<()>);

impl Watcher {
    fn start(pid: u32, mut cancel: Cancel) -> Watcher {
        Watcher(tokio::spawn(async move {
            cancel.cancelled().await;
            send_signal(pid, "TERM");
        }))
    }

    async fn finish(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

fn collect_lines(stderr: std::process::ChildStderr) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(stderr);
        std::io::BufRead::lines(reader)
            .map_while(|l| l.ok())
            .take(10_000)
            .collect()
    })
}

fn tail(lines: &[String], n: usize) -> String {
    lines
        .iter()
        .rev()
        .take(n)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join(" / ")
}

fn is_error_line(l: &str) -> bool {
    l.starts_with("pg_restore: error:")
        || (l.starts_with("pg_restore: [archiver") && l.contains("ERROR"))
}

/// pg_restore's error lines (each with its "Command was:" line): (failing, allowlisted).
fn classify(lines: &[String], allow: &[String]) -> (Vec<String>, Vec<String>) {
    let mut failing = Vec::new();
    let mut ignored = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if is_error_line(l) {
            let mut entry = l.trim().to_string();
            if let Some(next) = lines
                .get(i + 1)
                .filter(|n| n.trim_start().starts_with("Command was:"))
            {
                entry.push_str(" | ");
                entry.push_str(next.trim());
                i += 1;
            }
            if allow.iter().any(|a| entry.contains(a.as_str())) {
                ignored.push(entry);
            } else {
                failing.push(entry);
            }
        }
        i += 1;
    }
    (failing, ignored)
}

/// pg_restore's verdict: `Ok(ignored errors)` when it succeeded or every error is
/// allowlisted, else an error listing the failing statements.
pub fn pg_restore_failure(
    status: Option<ExitStatus>,
    lines: &[String],
    allow: &[String],
) -> Result<Vec<String>> {
    verdict(status, lines, allow, false)
}

/// Like [`pg_restore_failure`]; with `single_txn`, any error means pg_restore stopped and
/// rolled everything back, so even allowlisted errors fail the restore.
fn verdict(
    status: Option<ExitStatus>,
    lines: &[String],
    allow: &[String],
    single_txn: bool,
) -> Result<Vec<String>> {
    let (failing, ignored) = classify(lines, allow);
    let ok_status = status.is_some_and(|s| s.success());
    let how = status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "no status".into());
    if single_txn && (!ok_status || !failing.is_empty() || !ignored.is_empty()) {
        let all: Vec<String> = failing.iter().chain(&ignored).take(10).cloned().collect();
        let why = if all.is_empty() {
            format!("pg_restore failed ({how}): {}", tail(lines, 3))
        } else {
            format!(
                "pg_restore stopped at the first error: {}",
                all.join(" ;; ")
            )
        };
        let hint = if ignored.is_empty() {
            ""
        } else {
            " ([restore] ignore_errors cannot apply inside that one transaction: restore into a new database, or pass --jobs 2 or more, which restores without the transaction and may leave the target partly restored on failure)"
        };
        return Err(Error::Failed(format!(
            "{why}; the restore into the existing database ran in one transaction, which was rolled back, so the target is unchanged{hint}"
        )));
    }
    // pg_restore counts the errors it skipped; every one of them must be allowlisted.
    let reported = lines
        .iter()
        .find_map(|l| l.split("errors ignored on restore:").nth(1))
        .and_then(|n| n.trim().parse::<usize>().ok());
    if failing.is_empty() && (ok_status || (!ignored.is_empty() && reported == Some(ignored.len())))
    {
        return Ok(ignored);
    }
    if failing.is_empty() {
        return Err(Error::Failed(format!(
            "pg_restore failed ({how}): {}",
            tail(lines, 3)
        )));
    }
    let shown: Vec<&String> = failing.iter().take(10).collect();
    Err(Error::Failed(format!(
        "pg_restore reported {} error(s), so the restore failed (allowlist known ones in [restore] ignore_errors): {}",
        failing.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ;; ")
    )))
}

/// Holds back the last bytes written until `release`, so the consumer cannot reach the end
/// of the stream before the producer has verified it.
pub struct Holdback<W: Write> {
    inner: W,
    tail: Vec<u8>,
}

const HOLD: usize = 64 << 10;

impl<W: Write> Holdback<W> {
    pub fn new(inner: W) -> Self {
        Holdback {
            inner,
            tail: Vec::with_capacity(2 * HOLD),
        }
    }
    /// Writes the held bytes and closes the stream.
    pub fn release(mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.tail)?;
        self.inner.flush()
    }
}

impl<W: Write> Write for Holdback<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 2 * HOLD {
            let send = self.tail.len() - HOLD;
            self.inner.write_all(&self.tail[..send])?;
            self.tail.drain(..send);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_restore_sessions_get_settings_that_the_url_can_override() {
        assert_eq!(pg_options(&[], Some("-c work_mem=8MB"), None), None);
        assert_eq!(
            pg_options(
                &[("max_parallel_maintenance_workers", "0")],
                Some("-c max_parallel_maintenance_workers=4"),
                Some("1GB")
            )
            .as_deref(),
            Some("-c max_parallel_maintenance_workers=0 -c max_parallel_maintenance_workers=4 -c maintenance_work_mem=1GB")
        );
        assert_eq!(
            pg_options(&[], None, Some("512MB")).as_deref(),
            Some("-c maintenance_work_mem=512MB")
        );
    }

    #[test]
    fn maintenance_work_mem_must_be_a_memory_size() {
        for good in [None, Some("1GB"), Some("2048"), Some("512MB"), Some("64kB")] {
            assert!(check_memory_setting(good).is_ok(), "{good:?}");
        }
        for bad in ["lots", "1 GB", "GB", "1.5GB", "-1MB", "1Gb", " 2048 ", ""] {
            let e = check_memory_setting(Some(bad)).expect_err(bad);
            assert!(matches!(e, Error::Invalid(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn holdback_keeps_the_tail_until_released() {
        let mut h = Holdback::new(Vec::new());
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        h.write_all(&data).expect("write");
        assert!(h.inner.len() < data.len() - HOLD + 1);
        assert!(h.inner.len() >= data.len() - 2 * HOLD);
        let mut out = Vec::new();
        let Holdback { inner, tail } = h;
        out.extend(inner);
        out.extend(tail);
        assert_eq!(out, data);
    }

    #[test]
    fn pg_restore_errors_are_listed_unless_allowlisted() {
        let lines: Vec<String> = [
            "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
            "Command was: SET transaction_timeout = 0;",
            "pg_restore: error: could not execute query: ERROR:  relation \"x\" already exists",
            "pg_restore: warning: errors ignored on restore: 2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = pg_restore_failure(None, &lines, &[]).expect_err("fails");
        assert!(e.to_string().contains("2 error(s)"));
        assert!(e.to_string().contains("transaction_timeout"));
        let e = pg_restore_failure(None, &lines, &["transaction_timeout".into()])
            .expect_err("one left");
        assert!(e.to_string().contains("1 error(s)"));
        let ok = pg_restore_failure(
            None,
            &lines,
            &["transaction_timeout".into(), "already exists".into()],
        )
        .expect("all allowed");
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn one_transaction_fails_on_any_error_and_counts_must_agree() {
        let allow = ["transaction_timeout".to_string()];
        let lines: Vec<String> = [
            "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
            "Command was: SET transaction_timeout = 0;",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = verdict(None, &lines, &allow, true).expect_err("rolled back");
        assert!(e.to_string().contains("unchanged"), "{e}");
        assert!(e.to_string().contains("ignore_errors"), "{e}");
        // Without pg_restore's own count of skipped errors, it did not go on: a failure.
        assert!(verdict(None, &lines, &allow, false).is_err());
        let mut done = lines.clone();
        done.push("pg_restore: warning: errors ignored on restore: 1".into());
        assert_eq!(verdict(None, &done, &allow, false).expect("ok").len(), 1);
        done.push("pg_restore: error: could not read from input file: end of file".into());
        assert!(verdict(None, &done, &allow, false).is_err());
    }

    #[test]
    fn the_database_step_lists_only_the_database_itself() {
        let toc =
            ";\n; Archive created at 2026-12-03\n;\n3344; 1262 16384 DATABASE - app postgres\n\
3345; 0 0 COMMENT - DATABASE app postgres\n3346; 0 0 DATABASE PROPERTIES - app postgres\n\
214; 1259 16388 TABLE public t postgres\n215; 0 0 COMMENT public TABLE t postgres\n\
3338; 0 16388 TABLE DATA public t postgres\n";
        assert_eq!(
            database_entries(toc),
            "3344; 1262 16384 DATABASE - app postgres\n3345; 0 0 COMMENT - DATABASE app postgres\n\
3346; 0 0 DATABASE PROPERTIES - app postgres\n"
        );
    }
}
