//! The parallel backup (`jobs > 1`): `pg_dump -Fd -j N -Z0` into a spool directory, each
//! table's data file stored as its own object while pg_dump writes it (module `follow`),
//! `toc.dat` and the large-object files once pg_dump ended. The spool holds only what pg_dump
//! wrote and pgdrill has not read yet: when that passes the window, pg_dump is paused
//! (SIGSTOP to its process group) until the followers caught up. Any failure (pg_dump, one
//! upload, a signal) aborts every upload and deletes what was stored; no manifest is written.

use super::follow::{self, Env, FileTask, Followed, Shared};
use super::stream::tool_failure;
use super::{locks, BackupJob};
use crate::ids::BackupId;
use crate::layout;
use crate::manifest::StoredObject;
use crate::{Error, Result};
use pgdrill_pg::archive::{parse_directory_toc, ArchiveSummary, DirectoryToc};
use pgdrill_pg::child;
use pgdrill_pg::client::SnapshotSession;
use pgdrill_pg::reaper::{Reaper, Watch};
use pgdrill_pg::PgInstall;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the parallel dump produced.
pub(super) struct DirectoryDump {
    pub(super) seconds: f64,
    pub(super) args: Vec<String>,
    pub(super) objects: Vec<StoredObject>,
    pub(super) summary: std::result::Result<ArchiveSummary, String>,
    pub(super) raw_bytes: u64,
    pub(super) stored_bytes: u64,
    /// The most disk the spool directory took at once (allocated blocks, sampled).
    pub(super) peak_spool_bytes: u64,
}

/// The arguments recorded in the manifest (the spool path is added when run).
fn dump_args(job: &BackupJob<'_>, jobs: u32, snapshot: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--format=directory".to_string(),
        "--compress=0".to_string(),
        format!("--jobs={jobs}"),
        "--verbose".to_string(),
        "--no-password".to_string(),
    ];
    if let Some(s) = snapshot {
        args.push(format!("--snapshot={s}"));
    }
    args.push(locks::pg_dump_arg(job.lock_wait_timeout));
    args.extend(job.db.pg_dump_args.iter().cloned());
    args
}

/// `<dump id>.dat`: a table's (or sequence's, or other entry's) data file.
fn dump_id_of(file: &str) -> Option<i64> {
    file.strip_suffix(".dat")?.parse().ok()
}

/// Sends `sig` to pg_dump's process group (pg_dump and its workers).
fn signal_group(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

pub(super) async fn dump(
    job: &BackupJob<'_>,
    targets: &Arc<super::fanout::Targets>,
    id: &BackupId,
    session: &SnapshotSession,
    install: &PgInstall,
    jobs: u32,
) -> Result<DirectoryDump> {
    let t0 = Instant::now();
    let base = job.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let spool = tempfile::Builder::new()
        .prefix("pgdrill-dump-")
        .tempdir_in(&base)
        .map_err(|e| {
            Error::Failed(format!(
                "cannot create the dump's spool directory in {}: {e}; set [backup] spool_dir or TMPDIR",
                base.display()
            ))
        })?;
    // Should pgdrill be killed outright, the spool goes too (see `pgdrill_pg::reaper`).
    let _spool_reaper = Reaper::arm(Watch::Nothing, Some(spool.path()));
    let out = spool.path().join("dump");
    let args = dump_args(job, jobs, session.snapshot_id.as_deref());
    let shared = Arc::new(Shared::default());
    let dir_key = layout::backup_dir(&job.db.name, id);
    let mut env = Env::new(job, targets, dir_key, shared.clone());
    // Several uploads at once: smaller parts and fewer in flight each keep memory near the
    // single stream's, while a big table's object still stays under S3's 10,000 parts.
    env.sizing.floor = session
        .facts
        .database_size_bytes
        .map(|s| (s.max(0) as usize / 9000).next_multiple_of(1 << 20))
        .unwrap_or(0)
        .max(8 << 20);
    env.sizing.jobs = jobs as usize;
    job.progress.stage("dump");
    if let Some((n, from)) = super::dump_estimate(None, session.facts.database_size_bytes) {
        job.progress.set_estimate(n, from);
    }
    let result = run_dump(job, install, &args, &out, env.clone()).await;
    let result = match result {
        Ok(r) => Ok(r),
        Err(e) => {
            shared.aborted.store(true, Ordering::SeqCst);
            Err(e)
        }
    };
    let (mut followed, peak, out_dir) = match result {
        Ok(r) => r,
        Err(e) => {
            targets.delete_everywhere(&job.db.name, id).await;
            return Err(e);
        }
    };
    job.progress.stage("store the table of contents");
    // Read before it is stored: storing releases a file's disk blocks.
    let toc = read_toc(&out_dir.join("toc.dat"));
    let rest = store_rest(&out_dir, &followed, env).await;
    let rest = match rest {
        Ok(r) => r,
        Err(e) => {
            targets.delete_everywhere(&job.db.name, id).await;
            return Err(e);
        }
    };
    followed.extend(rest);
    let summary = toc.and_then(|t| summarize(t, &followed));
    drop(spool);
    // toc.dat first (kind `dump`: the archive's entry point), then the data files by name.
    followed.sort_by(|a, b| (a.file != "toc.dat", &a.file).cmp(&(b.file != "toc.dat", &b.file)));
    let objects: Vec<StoredObject> = followed
        .iter()
        .map(|f| StoredObject {
            name: f.object.clone(),
            kind: kind_of(&f.file).into(),
            size: f.stored.bytes,
            sha256: f.stored.sha256.clone(),
            raw_size: f.raw.bytes,
            raw_sha256: f.raw.sha256.clone(),
            file: Some(f.file.clone()),
            rows: f.rows.filter(|_| dump_id_of(&f.file).is_some()),
        })
        .collect();
    Ok(DirectoryDump {
        seconds: t0.elapsed().as_secs_f64(),
        args,
        raw_bytes: objects.iter().map(|o| o.raw_size).sum(),
        stored_bytes: objects.iter().map(|o| o.size).sum(),
        objects,
        summary,
        peak_spool_bytes: peak,
    })
}

fn kind_of(file: &str) -> &'static str {
    if file == "toc.dat" {
        "dump"
    } else if dump_id_of(file).is_some() {
        "data"
    } else {
        "blobs"
    }
}

/// Runs pg_dump and follows its data files until it ended and every follower committed.
/// Returns what was stored, the peak spool size and the archive directory.
async fn run_dump(
    job: &BackupJob<'_>,
    install: &PgInstall,
    args: &[String],
    out: &Path,
    env: Env,
) -> Result<(Vec<Followed>, u64, PathBuf)> {
    let shared = env.shared.clone();
    let passfile = job
        .source
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let mut cmd = child::command(
        &install.bin("pg_dump"),
        &job.source,
        passfile.as_ref().map(|f| f.path()),
    );
    cmd.args(args)
        .arg(format!("--file={}", out.display()))
        .process_group(0);
    let hook_shared = shared.clone();
    let hook: child::LineHook = Box::new(move |line: &str| {
        // `pg_dump: finished item 3366 TABLE DATA t1` (pg_backup_archiver.c).
        if let Some(rest) = line.split("finished item ").nth(1) {
            if let Some(Ok(id)) = rest.split_whitespace().next().map(str::parse::<i64>) {
                if let Ok(mut s) = hook_shared.finished.lock() {
                    s.insert(id);
                }
            }
        }
    });
    let mut proc = child::Child::spawn_watching(cmd, child::Keep::LAST, Some(hook))
        .map_err(|e| Error::Failed(e.to_string()))?;
    let pid = proc.pid();
    // A pg_dump must never outlive pgdrill. Paused, it would hold its snapshot and its table
    // locks on the source for good (the kernel's SIGHUP to an orphaned stopped group ends it
    // too); running, it would go on loading the source to fill a spool nobody reads.
    let _reaper = Reaper::arm(Watch::Group(pid), out.parent());
    let mut followers = tokio::task::JoinSet::new();
    // Files given a follower; of those, the ones still being read (and how far).
    let mut seen: HashSet<String> = HashSet::new();
    let mut active: HashMap<String, Arc<AtomicU64>> = HashMap::new();
    let mut done: Vec<Followed> = Vec::new();
    let mut failure: Option<Error> = None;
    let mut status = None;
    let (mut paused, mut peak) = (false, 0u64);
    let window = job.spool_window.max(1 << 20);
    let mut cancel = job.cancel.clone();
    loop {
        if status.is_none() {
            match proc.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    if s.success() {
                        shared.exited_ok.store(true, Ordering::SeqCst);
                    } else if failure.is_none() {
                        let lines = proc.stderr_lines();
                        let msg = match locks::timed_out_tables(&lines) {
                            Some(tables) => {
                                locks::describe(&job.source, &tables, job.lock_wait_timeout).await
                            }
                            None => tool_failure("pg_dump", Some(s), &lines),
                        };
                        failure = Some(Error::Failed(msg));
                    }
                }
                Ok(None) => {}
                Err(e) => failure = Some(Error::Failed(format!("cannot wait for pg_dump: {e}"))),
            }
        }
        // One pass over the spool: new data files get a follower (the rest waits for
        // pg_dump's end), the disk in use is summed, and what is written but not read yet.
        let (mut unread, mut in_use, mut entries) = (0u64, 0u64, 0usize);
        if let Ok(rd) = std::fs::read_dir(out) {
            for e in rd.flatten() {
                entries += 1;
                let meta = e.metadata().ok();
                in_use += meta.as_ref().map(|m| m.blocks() * 512).unwrap_or(0);
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(dump_id) = dump_id_of(&file) else {
                    continue;
                };
                if let Some(read) = active.get(&file) {
                    let size = meta.map(|m| m.len()).unwrap_or(0);
                    unread += size.saturating_sub(read.load(Ordering::SeqCst));
                }
                if !seen.insert(file.clone()) {
                    continue;
                }
                let read = Arc::new(AtomicU64::new(0));
                active.insert(file.clone(), read.clone());
                let task = FileTask {
                    path: e.path(),
                    file,
                    dump_id: Some(dump_id),
                    read,
                };
                followers.spawn(follow::store_file(env.clone(), task));
            }
        }
        // A spool of many files (large objects) is looked at less often.
        let interval =
            Duration::from_millis(20 + (entries / 100) as u64).min(Duration::from_secs(1));
        if status.is_none() {
            if !paused && unread > window {
                signal_group(pid, rustix::process::Signal::STOP);
                paused = true;
            } else if paused && unread <= window / 2 {
                signal_group(pid, rustix::process::Signal::CONT);
                paused = false;
            }
        }
        peak = peak.max(in_use);
        while let Some(joined) = followers.try_join_next() {
            match joined {
                Ok(Ok(f)) => {
                    active.remove(&f.file);
                    done.push(f);
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(Error::Failed(format!("a storing task crashed: {e}")));
                }
            }
        }
        if failure.is_none() && shared.aborted.load(Ordering::SeqCst) {
            failure = Some(Error::Failed("the backup was aborted".into()));
        }
        if failure.is_some() {
            break;
        }
        if status.is_some() && followers.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => {
                failure = Some(Error::Failed(
                    "the backup was interrupted by a signal; the partial uploads were aborted and no manifest was written".into(),
                ));
                break;
            }
        }
    }
    if let Some(e) = failure {
        shared.aborted.store(true, Ordering::SeqCst);
        if status.is_none() {
            signal_group(pid, rustix::process::Signal::KILL);
            signal_group(pid, rustix::process::Signal::CONT);
            let _ = proc.wait().await;
        }
        // Every follower aborts its upload on its own once it sees the flag.
        while followers.join_next().await.is_some() {}
        return Err(e);
    }
    drop(passfile);
    Ok((done, peak, out.to_path_buf()))
}

/// Stores the files pg_dump wrote that no follower took (toc.dat, large objects), now that
/// pg_dump ended, a few at a time.
async fn store_rest(out: &Path, followed: &[Followed], env: Env) -> Result<Vec<Followed>> {
    let mut files: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| Error::Failed(format!("cannot read the dump directory: {e}")))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| !followed.iter().any(|d| &d.file == f))
        .collect();
    files.sort();
    if !files.iter().any(|f| f == "toc.dat") {
        return Err(Error::Failed(
            "pg_dump exited successfully but wrote no toc.dat; the backup was aborted".into(),
        ));
    }
    let mut out_objects = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    let mut pending = files.into_iter();
    loop {
        while set.len() < 4 {
            let Some(file) = pending.next() else { break };
            if !crate::manifest::is_plain_name(&file) {
                env.shared.aborted.store(true, Ordering::SeqCst);
                return Err(Error::Failed(format!(
                    "pg_dump wrote an unexpected file {file:?}; the backup was aborted"
                )));
            }
            let task = FileTask {
                path: out.join(&file),
                file,
                dump_id: None,
                read: Arc::new(AtomicU64::new(0)),
            };
            set.spawn(follow::store_file(env.clone(), task));
        }
        match set.join_next().await {
            None => break,
            Some(Ok(Ok(f))) => out_objects.push(f),
            Some(Ok(Err(e))) => {
                env.shared.aborted.store(true, Ordering::SeqCst);
                while set.join_next().await.is_some() {}
                return Err(e);
            }
            Some(Err(e)) => {
                env.shared.aborted.store(true, Ordering::SeqCst);
                while set.join_next().await.is_some() {}
                return Err(Error::Failed(format!("a storing task crashed: {e}")));
            }
        }
    }
    Ok(out_objects)
}

fn read_toc(path: &Path) -> std::result::Result<DirectoryToc, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read toc.dat: {e}"))?;
    parse_directory_toc(std::io::BufReader::new(file)).map_err(|e| e.to_string())
}

/// The content summary: toc.dat's, with each table's rows from its data file.
fn summarize(
    parsed: DirectoryToc,
    followed: &[Followed],
) -> std::result::Result<ArchiveSummary, String> {
    let rows: BTreeMap<&str, Option<u64>> =
        followed.iter().map(|f| (f.file.as_str(), f.rows)).collect();
    let mut summary = parsed.summary;
    for entry in parsed
        .entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA" && e.is_copy)
    {
        let n = rows
            .get(entry.file.as_str())
            .copied()
            .flatten()
            .ok_or_else(|| {
                format!(
                    "the data file {} of {}.{} is missing or not COPY text",
                    entry.file, entry.namespace, entry.tag
                )
            })?;
        if let Some(t) = summary
            .tables
            .iter_mut()
            .find(|t| t.schema == entry.namespace && t.name == entry.tag && t.rows == 0)
        {
            t.rows = n;
        }
    }
    summary.large_objects = followed
        .iter()
        .filter(|f| f.file.starts_with("blob_") && f.file.ends_with(".dat"))
        .count() as u64;
    Ok(summary)
}
