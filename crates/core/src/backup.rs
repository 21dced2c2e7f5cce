//! One backup: snapshot → pg_dump → sha256(raw) + archive parser → zstd → age →
//! sha256(stored) → multipart upload → SHA256SUMS → manifest (written last, put-if-absent).
//! Any failure aborts the upload and writes no manifest.

use crate::cancel::Cancel;
use crate::config::{DatabaseSettings, Policy};
use crate::crypto::EncryptionKeys;
use crate::frames::DumpIndex;
use crate::ids::BackupId;
use crate::layout;
use crate::manifest::*;
use crate::pipeline::Digested;
use crate::progress::Progress;
use crate::{Error, Result};
use pgdrill_pg::archive::ArchiveSummary;
use pgdrill_pg::child;
use pgdrill_pg::client::SnapshotSession;
use pgdrill_pg::{ConnSpec, PgInstall};
use pgdrill_store::Store;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

mod directory;
mod fanout;
mod follow;
mod locks;
mod manifest;
mod objects;
mod publish;
mod stream;
mod tools;

/// Moved to the lease (a leaf below the backup); kept here for callers.
pub use crate::lease::hostname;
use fanout::{Sizing, Targets};
pub use fanout::{StoreCopy, TargetStore};
use manifest::{build_manifest, Times};
use objects::{copy_globals, globals_and_upload, upload_index};
use publish::publish;
use stream::stream_child;
pub use tools::Tools;

const READ_CHUNK: usize = 1 << 20;

/// Everything one backup needs, resolved by the caller.
pub struct BackupJob<'a> {
    /// The store the job's lease is in (the primary, unless it was unreachable): read for
    /// the previous backup's size.
    pub store: &'a Store,
    /// Every store the backup is written to, with its name and transfer settings, primary
    /// first (DESIGN.md §9); empty: `store` alone, named "default", with `part_size` and
    /// `max_in_flight`.
    pub stores: &'a [TargetStore],
    pub db: &'a DatabaseSettings,
    pub source: ConnSpec,
    pub keys: &'a EncryptionKeys,
    /// The PostgreSQL tools; waited for only once the snapshot is open.
    pub tools: &'a Tools,
    pub compression_level: i32,
    /// zstd worker threads; 0 = one per core.
    pub compression_threads: u32,
    pub part_size: usize,
    pub max_in_flight: usize,
    /// How long pg_dump waits for a table lock before the backup fails naming its holder.
    pub lock_wait_timeout: std::time::Duration,
    pub policy: &'a Policy,
    pub progress: Arc<Progress>,
    pub cancel: Cancel,
    /// The database's lease, held by the caller: confirmed before the manifest is written
    /// (a backup that lost it publishes nothing), and its clock names the backup.
    pub lease: Option<&'a crate::lease::Lease>,
    /// pg_dump processes: above 1, a parallel dump (`pg_dump -Fd -j N`) stored one object per
    /// file (the directory layout).
    pub jobs: u32,
    /// Where a parallel dump's spool directory goes (default: the temp directory).
    pub spool_dir: Option<std::path::PathBuf>,
    /// A parallel dump's unread bytes on disk above which pg_dump is paused.
    pub spool_window: u64,
    /// Globals another backup of the same server took in this run (its object's key and
    /// entry): copied instead of running pg_dumpall again (once per server per run).
    pub globals_from: Option<(String, StoredObject)>,
}

pub use crate::config::DEFAULT_SPOOL_WINDOW;

/// pg_dump options pgdrill sets itself, or that would put a secret in argv.
const FORBIDDEN_ARGS: &[&str] = &[
    "-F",
    "--format",
    "-Z",
    "--compress",
    "-f",
    "--file",
    "-d",
    "--dbname",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
    "--snapshot",
    "-j",
    "--jobs",
    "-W",
    "--password",
];

pub fn check_pg_dump_args(args: &[String]) -> Result<()> {
    for a in args {
        let flag = a.split('=').next().unwrap_or(a);
        let short_joined = FORBIDDEN_ARGS
            .iter()
            .any(|f| f.len() == 2 && a.starts_with(f) && !a.starts_with("--"));
        if FORBIDDEN_ARGS.contains(&flag) || short_joined {
            return Err(Error::Invalid(format!(
                "pg_dump_args may not contain {flag}: pgdrill sets the format, compression, output, snapshot and connection itself"
            )));
        }
    }
    Ok(())
}

fn now_rfc3339() -> String {
    crate::time::rfc3339_millis(crate::time::Timestamp::now())
}

/// A backup written: its manifest, and what became of each store's copy (a copy that
/// failed leaves the backup degraded, complete in the other stores).
#[derive(Debug)]
pub struct Backup {
    pub manifest: Manifest,
    pub copies: Vec<StoreCopy>,
    /// What is worth a line in the job's log about how it was written (a lease vouched for
    /// by its recent renewal while its store was down).
    pub notes: Vec<String>,
}

impl Backup {
    /// The copies that failed.
    pub fn failed_copies(&self) -> impl Iterator<Item = &StoreCopy> {
        self.copies.iter().filter(|c| !c.ok)
    }
}

/// Runs one backup to every store; returns the manifest written and each copy's outcome.
/// Fails (and leaves no manifest anywhere) when no store's copy completed.
pub async fn run(job: BackupJob<'_>) -> Result<Backup> {
    run_with(job, &[]).await
}

/// [`run`], with the stores (by index in `job.stores`) already found unreachable and why:
/// their copies fail from the outset, and nothing is sent to them.
pub async fn run_with(job: BackupJob<'_>, unreachable: &[(usize, String)]) -> Result<Backup> {
    let stores = if job.stores.is_empty() {
        vec![TargetStore {
            name: crate::config::DEFAULT_STORE_NAME.to_string(),
            store: job.store.clone(),
            part_size: job.part_size,
            max_in_flight: job.max_in_flight,
        }]
    } else {
        job.stores.to_vec()
    };
    let targets = Arc::new(Targets::new(stores));
    for (i, why) in unreachable {
        targets.unreachable(*i, why);
    }
    let manifest = run_to(&job, &targets).await?;
    // What a failed store holds of this backup is not a copy: it goes.
    targets
        .delete_failed(&manifest.database, &manifest.backup_id)
        .await;
    Ok(Backup {
        copies: targets.copies(manifest.stored_bytes),
        notes: targets.notes(),
        manifest,
    })
}

async fn run_to(job: &BackupJob<'_>, targets: &Arc<Targets>) -> Result<Manifest> {
    check_pg_dump_args(&job.db.pg_dump_args)?;
    if job.source.looks_like_transaction_pooler() {
        return Err(Error::Invalid(format!(
            "{} looks like a transaction-mode pooler (PgBouncer/Supavisor on 6543), where pg_dump's snapshot cannot be shared: use the direct connection URL (port 5432)",
            job.source.redacted()
        )));
    }
    let started = Instant::now();
    let started_at = now_rfc3339();
    // Named by the store's clock when this host's is more than a minute off it.
    let id = BackupId::new(match job.lease {
        Some(l) => l.trusted_now(),
        None => crate::clock::Clock::process().now(),
    });
    job.progress.stage("snapshot");
    // The previous backup's raw size estimates the dump's: read beside the snapshot and the
    // dump's start, never waited for before pg_dump runs (it only feeds the progress).
    let previous = (job.jobs <= 1).then(|| {
        let (store, db) = (job.store.clone(), job.db.name.clone());
        AbortOnDrop(tokio::spawn(
            async move { previous_raw_size(&store, &db).await },
        ))
    });
    let session = SnapshotSession::open(&job.source).await?;
    let t_snapshot = started.elapsed().as_secs_f64();
    let install = job
        .tools
        .get()
        .await
        .pick("pg_dump", session.facts.version.major)?;
    let (stream, summary, directory) = if job.jobs > 1 {
        let result = directory::dump(job, targets, &id, &session, &install, job.jobs).await;
        let mut stream = StreamResult::of_session(&session);
        session.close().await;
        let d = result?;
        stream.seconds = d.seconds;
        stream.args = d.args.clone();
        stream.raw.bytes = d.raw_bytes;
        stream.stored.bytes = d.stored_bytes;
        let summary = d.summary.clone();
        (stream, summary, Some(d))
    } else {
        let result = dump_and_upload(job, targets, &id, &session, &install, previous).await;
        session.close().await;
        let (stream, summary) = result?;
        (stream, summary, None)
    };
    let index = match (&summary, &directory) {
        (Ok(s), None) => Some(DumpIndex {
            version: 1,
            raw_size: stream.raw.bytes,
            compressed_size: stream.compressed,
            frames: stream.frames.clone(),
            toc_end: s.toc_end,
            blocks: s.blocks.clone(),
        }),
        _ => None,
    };
    // Without a consistent index a restore reads the dump front to back: still correct.
    let index = index.filter(|i| i.check().is_ok());
    // The index is stored while pg_dumpall runs (or the globals are copied).
    let (indexed, globals) = tokio::join!(
        async {
            match &index {
                Some(i) => upload_index(job, targets, &id, i).await.map(Some),
                None => Ok(None),
            }
        },
        async {
            if !job.db.globals {
                return Ok(None);
            }
            match &job.globals_from {
                Some((key, object)) => copy_globals(job, targets, &id, key, object).await,
                None => globals_and_upload(job, targets, &id, stream.facts.version.major).await,
            }
            .map(Some)
        }
    );
    let extra: Vec<StoredObject> = match (indexed, globals) {
        (Ok(i), Ok(g)) => i.into_iter().chain(g).collect(),
        (Err(e), _) | (_, Err(e)) => {
            // Nothing half-written: the dump already uploaded goes too.
            targets.delete_everywhere(&job.db.name, &id).await;
            return Err(e);
        }
    };
    job.progress.stage("manifest");
    let finished_at = now_rfc3339();
    let mut stage_seconds = BTreeMap::new();
    stage_seconds.insert("snapshot".to_string(), t_snapshot);
    stage_seconds.insert("dump_and_upload".to_string(), stream.seconds);
    stage_seconds.insert("total".to_string(), started.elapsed().as_secs_f64());
    let times = Times {
        started_at,
        finished_at,
        stage_seconds,
    };
    let mut manifest = build_manifest(job, &id, &install, stream, summary, times);
    if let Some(d) = directory {
        manifest.format_version = crate::manifest::FORMAT_VERSION_DIRECTORY;
        manifest.layout = Some(crate::manifest::LAYOUT_DIRECTORY.into());
        manifest.spool_peak_bytes = Some(d.peak_spool_bytes);
        manifest.objects = d.objects;
    }
    manifest.objects.extend(extra);
    publish(job, targets, &manifest).await?;
    job.progress.finish();
    Ok(manifest)
}

/// A spawned task that ends with its owner (a failed backup leaves no lookup running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> AbortOnDrop<T> {
    /// The task's result; `None` when it panicked or was aborted.
    async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

/// The raw size of the newest complete backup of `db`, if there is one.
async fn previous_raw_size(store: &Store, db: &crate::ids::DbName) -> Option<u64> {
    let latest = crate::catalog::latest(store, db).await.ok()?;
    latest.manifest.map(|m| m.raw_bytes).filter(|&n| n > 0)
}

/// What the dump's progress counts against: the previous backup's raw size (the best
/// guess: the same dump a little while ago), else `pg_database_size` (larger than the
/// dump: indexes and free space are not dumped), else nothing.
pub fn dump_estimate(
    previous: Option<u64>,
    database_size: Option<i64>,
) -> Option<(u64, &'static str)> {
    match (previous, database_size) {
        (Some(n), _) => Some((n, "previous backup")),
        (None, Some(n)) if n > 0 => Some((n as u64, "pg_database_size")),
        _ => None,
    }
}

/// What the streaming part produced.
struct StreamResult {
    seconds: f64,
    frames: Vec<[u64; 2]>,
    compressed: u64,
    raw: Digested,
    stored: Digested,
    object_name: String,
    args: Vec<String>,
    snapshot_id: Option<String>,
    snapshot_time: String,
    snapshot_note: Option<String>,
    facts: pgdrill_pg::client::ServerFacts,
}

impl StreamResult {
    /// An empty result carrying the session's facts (the parallel dump fills in the rest).
    fn of_session(session: &SnapshotSession) -> StreamResult {
        let empty = Digested {
            sha256: String::new(),
            bytes: 0,
        };
        StreamResult {
            seconds: 0.0,
            frames: Vec::new(),
            compressed: 0,
            raw: empty.clone(),
            stored: empty,
            object_name: String::new(),
            args: Vec::new(),
            snapshot_id: session.snapshot_id.clone(),
            snapshot_time: session.snapshot_time.clone(),
            snapshot_note: session.note.clone(),
            facts: session.facts.clone(),
        }
    }
}

fn dump_args(job: &BackupJob<'_>, snapshot: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--format=custom".to_string(),
        "--compress=0".to_string(),
        "--no-password".to_string(),
    ];
    if let Some(s) = snapshot {
        args.push(format!("--snapshot={s}"));
    }
    // Before the user's arguments, so that a --lock-wait-timeout of theirs wins.
    args.push(locks::pg_dump_arg(job.lock_wait_timeout));
    args.extend(job.db.pg_dump_args.iter().cloned());
    args
}

/// Starts `tool` (pg_dump or pg_dumpall) with its stdout piped (see `pgdrill_pg::child`).
fn spawn_tool(
    install: &PgInstall,
    tool: &str,
    args: &[String],
    source: &ConnSpec,
    passfile: Option<&std::path::Path>,
) -> Result<child::Child> {
    let mut cmd = child::command(&install.bin(tool), source, passfile);
    cmd.args(args).stdout(Stdio::piped());
    // The last lines tool wrote to stderr, for the error message and the log.
    child::Child::spawn(cmd, child::Keep::LAST).map_err(|e| Error::Failed(e.to_string()))
}

async fn dump_and_upload(
    job: &BackupJob<'_>,
    targets: &Arc<Targets>,
    id: &BackupId,
    session: &SnapshotSession,
    install: &PgInstall,
    previous: Option<AbortOnDrop<Option<u64>>>,
) -> Result<(StreamResult, std::result::Result<ArchiveSummary, String>)> {
    let t0 = Instant::now();
    let object_name = layout::dump_object_name(job.keys.enabled());
    let key = layout::backup_object(&job.db.name, id, &object_name);
    // Above each store's part size when the database is large (S3's 10,000 parts).
    let floor = session
        .facts
        .database_size_bytes
        .map(|s| (s.max(0) as usize / 9000).next_multiple_of(1 << 20))
        .unwrap_or(0);
    let sizing = Sizing {
        floor,
        store_part: true,
        jobs: 1,
    };
    let args = dump_args(job, session.snapshot_id.as_deref());
    job.progress.stage("dump");
    // Set while the dump runs (the stream waits for it before the stage ends).
    let database_size = session.facts.database_size_bytes;
    let progress = job.progress.clone();
    let estimate = async move {
        let previous = match previous {
            Some(p) => p.join().await.flatten(),
            None => None,
        };
        if let Some((n, from)) = dump_estimate(previous, database_size) {
            progress.set_estimate(n, from);
        }
    };
    let streamed = stream_child(
        job, targets, &key, sizing, install, "pg_dump", &args, true, estimate,
    )
    .await?;
    let result = StreamResult {
        seconds: t0.elapsed().as_secs_f64(),
        frames: streamed.frames,
        compressed: streamed.compressed,
        raw: streamed.raw,
        stored: streamed.stored,
        object_name,
        args,
        snapshot_id: session.snapshot_id.clone(),
        snapshot_time: session.snapshot_time.clone(),
        snapshot_note: session.note.clone(),
        facts: session.facts.clone(),
    };
    let summary = streamed
        .summary
        .unwrap_or_else(|| Err("the archive was not parsed".into()));
    Ok((result, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_args_that_would_break_the_contract_are_refused() {
        for bad in [
            "-Fp",
            "--format=plain",
            "-f",
            "--dbname=postgres://u:pw@h/x",
            "-Z9",
            "-j4",
        ] {
            assert!(check_pg_dump_args(&[bad.to_string()]).is_err(), "{bad}");
        }
        for ok in [
            "--exclude-table-data=audit",
            "-n",
            "public",
            "--create",
            "-T",
            "--no-comments",
        ] {
            assert!(check_pg_dump_args(&[ok.to_string()]).is_ok(), "{ok}");
        }
    }
}
