//! One backup: snapshot → pg_dump → sha256(raw) + archive parser → zstd → age →
//! sha256(stored) → multipart upload → SHA256SUMS → manifest (written last, put-if-absent).
//! Any failure aborts the upload and writes no manifest.

use crate::cancel::Cancel;
use crate::config::{DatabaseSettings, Policy};
use crate::crypto::EncryptionKeys;
use crate::frames::{DumpIndex, FramedEncoder};
use crate::ids::BackupId;
use crate::layout;
use crate::manifest::*;
use crate::pipeline::{BlockSender, Digested, HashWriter, StdBlockReader};
use crate::progress::Progress;
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use pgdrill_pg::archive::{parse_archive, ArchiveSummary};
use pgdrill_pg::child;
use pgdrill_pg::client::SnapshotSession;
use pgdrill_pg::{ConnSpec, PgInstall, PgTools};
use pgdrill_store::Store;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

mod locks;

const READ_CHUNK: usize = 1 << 20;

/// Everything one backup needs, resolved by the caller.
pub struct BackupJob<'a> {
    pub store: &'a Store,
    pub db: &'a DatabaseSettings,
    pub source: ConnSpec,
    pub keys: &'a EncryptionKeys,
    pub tools: &'a PgTools,
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
}

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

/// Runs one backup; returns the manifest written.
pub async fn run(job: BackupJob<'_>) -> Result<Manifest> {
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
    let session = SnapshotSession::open(&job.source).await?;
    let t_snapshot = started.elapsed().as_secs_f64();
    let install = job.tools.pick("pg_dump", session.facts.version.major)?;
    let result = dump_and_upload(&job, &id, &session, &install).await;
    session.close().await;
    let (stream, summary) = result?;
    let mut extra = Vec::new();
    if let Ok(s) = &summary {
        let index = DumpIndex {
            version: 1,
            raw_size: stream.raw.bytes,
            compressed_size: stream.compressed,
            frames: stream.frames.clone(),
            toc_end: s.toc_end,
            blocks: s.blocks.clone(),
        };
        // Without a consistent index a restore reads the dump front to back: still correct.
        if index.check().is_ok() {
            match upload_index(&job, &id, &index).await {
                Ok(o) => extra.push(o),
                Err(e) => {
                    delete_backup_objects(&job, &id).await;
                    return Err(e);
                }
            }
        }
    }
    if job.db.globals {
        match globals_and_upload(&job, &id, stream.facts.version.major).await {
            Ok(o) => extra.push(o),
            Err(e) => {
                // Nothing half-written: the dump already uploaded goes too.
                delete_backup_objects(&job, &id).await;
                return Err(e);
            }
        }
    }
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
    let mut manifest = build_manifest(&job, &id, &install, stream, summary, times);
    manifest.objects.extend(extra);
    publish(&job, &manifest).await?;
    Ok(manifest)
}

async fn delete_backup_objects(job: &BackupJob<'_>, id: &BackupId) {
    if let Ok(objects) = job.store.list(&layout::backup_dir(&job.db.name, id)).await {
        for o in objects {
            let _ = job.store.delete(&o.key).await;
        }
    }
}

/// Stores the dump index (JSON, through zstd and age like the dump).
async fn upload_index(
    job: &BackupJob<'_>,
    id: &BackupId,
    index: &DumpIndex,
) -> Result<StoredObject> {
    let json = serde_json::to_vec(index)
        .map_err(|e| Error::Failed(format!("cannot encode the dump index: {e}")))?;
    let io_err = |e: std::io::Error| Error::Failed(format!("cannot encode the dump index: {e}"));
    let compressed = zstd::bulk::compress(&json, 3).map_err(io_err)?;
    let mut sink = job.keys.wrap(HashWriter::new(Vec::new()))?;
    sink.write_all(&compressed).map_err(io_err)?;
    let (bytes, stored) = sink.finish().map_err(io_err)?.finish();
    let name = layout::index_object_name(job.keys.enabled());
    job.store
        .put(
            &layout::backup_object(&job.db.name, id, &name),
            Bytes::from(bytes),
        )
        .await?;
    Ok(StoredObject {
        name,
        kind: "index".into(),
        size: stored.bytes,
        sha256: stored.sha256,
        raw_size: json.len() as u64,
        raw_sha256: hex::encode(Sha256::digest(&json)),
    })
}

/// The completion rule, trusting no acknowledgement: every object is confirmed stored with
/// its size, SHA256SUMS is written and confirmed, the lease is confirmed still ours, then the
/// manifest is written with put-if-absent and confirmed stored and listed. Any failure
/// deletes what the backup stored (its manifest included) and publishes nothing.
async fn publish(job: &BackupJob<'_>, m: &Manifest) -> Result<()> {
    let store = job.store;
    let sums: String = m
        .objects
        .iter()
        .map(|o| format!("{}  {}\n", o.sha256, o.name))
        .collect();
    let before_manifest = async {
        for o in &m.objects {
            confirm_stored(store, m, &o.name, o.size).await?;
        }
        let sums_len = sums.len() as u64;
        store
            .put(
                &layout::backup_object(&m.database, &m.backup_id, layout::SHA256SUMS),
                Bytes::from(sums),
            )
            .await?;
        confirm_stored(store, m, layout::SHA256SUMS, sums_len).await?;
        if let Some(lease) = job.lease {
            lease.confirm().await?;
        }
        Ok::<_, Error>(())
    };
    if let Err(e) = before_manifest.await {
        delete_backup_objects(job, &m.backup_id).await;
        return Err(e);
    }
    let json = m.to_json();
    let json_len = json.len() as u64;
    let key = layout::backup_object(&m.database, &m.backup_id, layout::MANIFEST);
    // An existing manifest is another backup's (ids are unique): never clean up after this.
    store.put_if_absent(&key, Bytes::from(json)).await?;
    let after = async {
        confirm_stored(store, m, layout::MANIFEST, json_len).await?;
        let listed = store
            .list(&layout::backup_dir(&m.database, &m.backup_id))
            .await?;
        if !listed.iter().any(|o| o.key == key) {
            return Err(Error::Failed(format!(
                "the store acknowledged {} of backup {} and reads it back but does not list it, so the backup would never be found: nothing was published",
                layout::MANIFEST,
                m.backup_id
            )));
        }
        Ok(())
    };
    if let Err(e) = after.await {
        delete_backup_objects(job, &m.backup_id).await;
        return Err(e);
    }
    Ok(())
}

/// Fails unless the store holds `name` of backup `m` with `size` bytes (one HEAD).
async fn confirm_stored(store: &Store, m: &Manifest, name: &str, size: u64) -> Result<()> {
    let key = layout::backup_object(&m.database, &m.backup_id, name);
    let lost = |what: String| {
        Error::Failed(format!(
            "the store acknowledged {name} of backup {} but {what}: nothing was published; check the store's health",
            m.backup_id
        ))
    };
    match store.head(&key).await {
        Ok(info) if info.size == size => Ok(()),
        Ok(info) => Err(lost(format!(
            "holds {} bytes of the {size} written",
            info.size
        ))),
        Err(pgdrill_store::StoreError::NotFound { .. }) => Err(lost("does not have it".into())),
        Err(e) => Err(e.into()),
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

struct EncodeOut {
    raw: Digested,
    stored: Digested,
    /// `[raw, compressed]` offsets of the zstd frames.
    frames: Vec<[u64; 2]>,
    compressed: u64,
}

/// The blocking stage: reads pg_dump's stdout, feeds the parser, compresses, encrypts and
/// hands blocks to the uploader.
fn encode_stage(
    mut stdout: std::process::ChildStdout,
    parse_tx: Option<std::sync::mpsc::SyncSender<Bytes>>,
    keys: EncryptionKeys,
    level: i32,
    threads: u32,
    out_tx: tokio::sync::mpsc::Sender<Bytes>,
    progress: Arc<Progress>,
) -> Result<EncodeOut> {
    let io_err =
        |e: std::io::Error| Error::Failed(format!("the compression/encryption stage failed: {e}"));
    let hashed = HashWriter::new(BlockSender::new(out_tx, READ_CHUNK));
    let sink = keys.wrap(hashed)?;
    // Independent frames, so that a parallel restore can start decoding at any of them.
    let mut z = FramedEncoder::new(sink, level, threads).map_err(io_err)?;
    let mut raw_hash = Sha256::new();
    let mut raw_bytes = 0u64;
    let mut parser_alive = true;
    loop {
        let mut buf = BytesMut::zeroed(READ_CHUNK);
        let n = fill(&mut stdout, &mut buf)
            .map_err(|e| Error::Failed(format!("cannot read pg_dump's output: {e}")))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let chunk = buf.freeze();
        raw_hash.update(&chunk);
        raw_bytes += n as u64;
        progress.add(n as u64);
        if let (true, Some(tx)) = (parser_alive, &parse_tx) {
            parser_alive = tx.send(chunk.clone()).is_ok();
        }
        z.write_all(&chunk).map_err(io_err)?;
    }
    drop(parse_tx);
    let (sink, frames, compressed) = z.finish().map_err(io_err)?;
    let hashed = sink.finish().map_err(io_err)?;
    let (sender, stored) = hashed.finish();
    sender.finish().map_err(io_err)?;
    Ok(EncodeOut {
        raw: Digested {
            sha256: hex::encode(raw_hash.finalize()),
            bytes: raw_bytes,
        },
        stored,
        frames,
        compressed,
    })
}

/// Reads until `buf` is full or the stream ends (a pipe returns at most 64 KiB per read; a
/// full chunk keeps the per-chunk costs, allocation and hand-offs, small).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn worker_threads(configured: u32) -> u32 {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

async fn dump_and_upload(
    job: &BackupJob<'_>,
    id: &BackupId,
    session: &SnapshotSession,
    install: &PgInstall,
) -> Result<(StreamResult, std::result::Result<ArchiveSummary, String>)> {
    let t0 = Instant::now();
    let object_name = layout::dump_object_name(job.keys.enabled());
    let key = layout::backup_object(&job.db.name, id, &object_name);
    let part_size = session
        .facts
        .database_size_bytes
        .map(|s| (s.max(0) as usize / 9000).next_multiple_of(1 << 20))
        .unwrap_or(0)
        .max(job.part_size);
    let args = dump_args(job, session.snapshot_id.as_deref());
    job.progress.stage("dump");
    let streamed = stream_child(job, &key, part_size, install, "pg_dump", &args, true).await?;
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

/// Roles and tablespaces (`pg_dumpall --globals-only --no-role-passwords`), stored as
/// `globals.sql.zst[.age]` through the same stages as the dump.
async fn globals_and_upload(
    job: &BackupJob<'_>,
    id: &BackupId,
    server_major: u32,
) -> Result<StoredObject> {
    let install = job.tools.pick("pg_dumpall", server_major)?;
    let name = layout::globals_object_name(job.keys.enabled());
    let key = layout::backup_object(&job.db.name, id, &name);
    let args = vec![
        "--globals-only".to_string(),
        "--no-role-passwords".to_string(),
        "--no-password".to_string(),
        format!("--database={}", job.source.dbname),
    ];
    job.progress.stage("globals");
    let s = stream_child(
        job,
        &key,
        job.part_size,
        &install,
        "pg_dumpall",
        &args,
        false,
    )
    .await?;
    Ok(StoredObject {
        name,
        kind: "globals".into(),
        size: s.stored.bytes,
        sha256: s.stored.sha256,
        raw_size: s.raw.bytes,
        raw_sha256: s.raw.sha256,
    })
}

/// What one streamed child produced.
struct Streamed {
    raw: Digested,
    stored: Digested,
    summary: Option<std::result::Result<ArchiveSummary, String>>,
    frames: Vec<[u64; 2]>,
    compressed: u64,
}

/// Runs `tool` (pg_dump or pg_dumpall) and streams its stdout through sha256, the optional
/// archive parser, zstd and age into a multipart upload of `key`. Commit explicitly: the
/// upload completes only when the child exited 0, wrote something, and nothing else failed;
/// otherwise (or on a signal) the child is killed and the upload aborted.
async fn stream_child(
    job: &BackupJob<'_>,
    key: &str,
    part_size: usize,
    install: &PgInstall,
    tool: &str,
    args: &[String],
    parse: bool,
) -> Result<Streamed> {
    let mut upload = job.store.upload(key, part_size, job.max_in_flight).await?;
    let passfile = job
        .source
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let mut child = match spawn_tool(
        install,
        tool,
        args,
        &job.source,
        passfile.as_ref().map(|f| f.path()),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = upload.abort().await;
            return Err(e);
        }
    };
    let Some(stdout) = child.take_stdout() else {
        child.kill();
        let _ = upload.abort().await;
        return Err(Error::Failed(format!("cannot capture {tool}'s output")));
    };
    let (parse_tx, parser) = if parse {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(16);
        let handle = std::thread::spawn(move || {
            parse_archive(StdBlockReader::new(rx)).map_err(|e| e.to_string())
        });
        (Some(tx), Some(handle))
    } else {
        (None, None)
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let keys = job.keys.clone();
    let (level, threads) = (
        job.compression_level,
        worker_threads(job.compression_threads),
    );
    let progress = job.progress.clone();
    let encoder = tokio::task::spawn_blocking(move || {
        encode_stage(stdout, parse_tx, keys, level, threads, out_tx, progress)
    });

    let mut cancel = job.cancel.clone();
    let pump = async {
        while let Some(block) = out_rx.recv().await {
            upload.write(block).await?;
        }
        Ok::<(), pgdrill_store::StoreError>(())
    };
    let (pumped, interrupted) = tokio::select! {
        r = pump => (r, false),
        _ = cancel.cancelled() => (Ok(()), true),
    };
    if pumped.is_err() || interrupted {
        child.kill();
    }
    drop(out_rx);
    let encoded = encoder
        .await
        .map_err(|e| Error::Failed(format!("the compression stage crashed: {e}")))?;
    let status = child.wait().await.ok();
    let stderr_tail = child.stderr_lines();
    let summary = parser.map(|p| {
        p.join()
            .unwrap_or_else(|_| Err("the archive parser crashed".into()))
    });
    drop(passfile);

    let failure = if interrupted {
        Some(Error::Failed(
            "the backup was interrupted by a signal; the partial upload was aborted and no manifest was written".into(),
        ))
    } else if let Err(e) = pumped {
        Some(
            Error::from(e)
                .map_message(|m| format!("the upload failed, so the backup was aborted: {m}")),
        )
    } else if !status.map(|s| s.success()).unwrap_or(false) {
        let msg = match locks::timed_out_tables(&stderr_tail) {
            Some(tables) if tool == "pg_dump" => {
                locks::describe(&job.source, &tables, job.lock_wait_timeout).await
            }
            _ => tool_failure(tool, status, &stderr_tail),
        };
        Some(Error::Failed(msg))
    } else if let Err(e) = &encoded {
        Some(Error::Failed(e.to_string()))
    } else if encoded.as_ref().map(|e| e.raw.bytes == 0).unwrap_or(false) {
        Some(Error::Failed(format!(
            "{tool} exited successfully but wrote nothing; the backup was aborted"
        )))
    } else {
        None
    };
    if let Some(e) = failure {
        let _ = upload.abort().await;
        return Err(e);
    }
    let encoded = encoded?;
    job.progress.stage("finish upload");
    if let Err(e) = upload.finish().await {
        return Err(Error::Failed(format!(
            "the upload could not be completed: {e}"
        )));
    }
    Ok(Streamed {
        raw: encoded.raw,
        stored: encoded.stored,
        summary,
        frames: encoded.frames,
        compressed: encoded.compressed,
    })
}

fn tool_failure(tool: &str, status: Option<std::process::ExitStatus>, stderr: &[String]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "failed".to_string(),
        },
        None => "could not be waited for".to_string(),
    };
    let detail = stderr
        .iter()
        .rev()
        .find(|l| l.contains("error") || l.contains("FATAL"))
        .or_else(|| stderr.last())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    let hint = if stderr
        .iter()
        .any(|l| l.contains("invalid snapshot identifier"))
    {
        " (a transaction-mode pooler between pgdrill and the server? use the direct connection URL)"
    } else {
        ""
    };
    format!(
        "{tool} {how}{detail}{hint}; the partial upload was aborted and no manifest was written"
    )
}

struct Times {
    started_at: String,
    finished_at: String,
    stage_seconds: BTreeMap<String, f64>,
}

fn build_manifest(
    job: &BackupJob<'_>,
    id: &BackupId,
    install: &PgInstall,
    stream: StreamResult,
    summary: std::result::Result<ArchiveSummary, String>,
    times: Times,
) -> Manifest {
    let content = match summary {
        Ok(s) => Content {
            archive_version: s.archive_version,
            tables: s
                .tables
                .into_iter()
                .map(|t| TableRows {
                    schema: t.schema,
                    name: t.name,
                    rows: t.rows,
                })
                .collect(),
            schemas: s.schemas,
            extensions: s.extensions,
            schema_fingerprint: s.schema_fingerprint,
            large_objects: s.large_objects,
            toc_entries: s.entries,
            note: None,
        },
        Err(e) => Content {
            note: Some(format!(
                "the archive could not be parsed, so no row counts were recorded: {e}"
            )),
            ..Content::default()
        },
    };
    let creates_database = job
        .db
        .pg_dump_args
        .iter()
        .any(|a| a == "--create" || a == "-C");
    Manifest {
        format_version: FORMAT_VERSION,
        tool: ToolInfo {
            name: "pgdrill".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        backup_id: id.clone(),
        database: job.db.name.clone(),
        source: SourceInfo {
            url: job.source.redacted(),
            host: job.source.host.clone(),
            port: job.source.port,
            dbname: job.source.dbname.clone(),
            user: job.source.user.clone(),
            encoding: stream.facts.encoding.clone(),
            lc_collate: stream.facts.lc_collate.clone(),
            lc_ctype: stream.facts.lc_ctype.clone(),
        },
        server: ServerInfo {
            version: stream.facts.version.to_string(),
            version_num: stream.facts.version_num,
            version_string: stream.facts.version_string.clone(),
            system_identifier: stream.facts.system_identifier.clone(),
            database_size_bytes: stream.facts.database_size_bytes,
            in_recovery: stream.facts.in_recovery,
        },
        pg_dump: DumpTool {
            path: install.bin("pg_dump").display().to_string(),
            version: install.version.to_string(),
            args: stream.args.clone(),
            creates_database,
        },
        snapshot: SnapshotInfo {
            exported: stream.snapshot_id.is_some(),
            id: stream.snapshot_id.clone(),
            time: stream.snapshot_time.clone(),
            note: stream.snapshot_note.clone(),
        },
        started_at: times.started_at,
        finished_at: times.finished_at,
        stage_seconds: times.stage_seconds,
        raw_bytes: stream.raw.bytes,
        stored_bytes: stream.stored.bytes,
        compression: Compression {
            algorithm: "zstd".into(),
            level: job.compression_level,
        },
        encryption: Encryption {
            scheme: if job.keys.enabled() {
                "age".into()
            } else {
                "none".into()
            },
            recipient_fingerprints: job.keys.fingerprints(),
            passphrase: job.keys.has_passphrase(),
        },
        objects: vec![StoredObject {
            name: stream.object_name.clone(),
            kind: "dump".into(),
            size: stream.stored.bytes,
            sha256: stream.stored.sha256.clone(),
            raw_size: stream.raw.bytes,
            raw_sha256: stream.raw.sha256.clone(),
        }],
        content,
        policy: serde_json::to_value(job.policy).unwrap_or_default(),
        host: hostname(),
    }
}

/// Moved to the lease (a leaf below the backup); kept here for callers.
pub use crate::lease::hostname;

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
