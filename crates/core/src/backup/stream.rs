//! The blocking half of a backup: a tool's stdout read in blocks, hashed, parsed, compressed
//! by a worker pool and encrypted on its way to the uploader; the tool's failure described.

use super::{locks, spawn_tool, BackupJob, READ_CHUNK};
use crate::crypto::EncryptionKeys;
use crate::frames::FramedEncoder;
use crate::pipeline::{BlockSender, Digested, HashWriter, StdBlockReader};
use crate::progress::Progress;
use crate::{Error, Result};
use bytes::Bytes;
use pgdrill_pg::archive::{parse_archive_buffered, ArchiveSummary};
use pgdrill_pg::PgInstall;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::Arc;

pub(super) struct EncodeOut {
    pub(super) raw: Digested,
    pub(super) stored: Digested,
    /// `[raw, compressed]` offsets of the zstd frames.
    pub(super) frames: Vec<[u64; 2]>,
    pub(super) compressed: u64,
}

/// The blocking stage: reads pg_dump's stdout, feeds the parser, compresses, encrypts and
/// hands blocks to the uploader.
///
/// pg_dump's output is read straight into the frames the compression workers take, and the
/// parser reads the same memory: the bytes are copied once, by the kernel, out of the pipe.
pub(super) fn encode_stage(
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
    let nap = pipe_nap(&stdout);
    loop {
        let mut frame = z.spare_frame();
        let n = fill(&mut stdout, &mut frame, nap, |piece| {
            raw_hash.update(piece);
            raw_bytes += piece.len() as u64;
            progress.add(piece.len() as u64);
        })
        .map_err(|e| Error::Failed(format!("cannot read pg_dump's output: {e}")))?;
        if n == 0 {
            break;
        }
        let full = n == frame.len();
        frame.truncate(n);
        let frame = frame.freeze();
        if let (true, Some(tx)) = (parser_alive, &parse_tx) {
            parser_alive = tx.send(frame.clone()).is_ok();
        }
        z.write_frame(frame).map_err(io_err)?;
        if !full {
            break;
        }
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

/// Size asked for pg_dump's stdout pipe (Linux's default limit for unprivileged processes).
const PIPE_SIZE: usize = 1 << 20;

/// How long to wait when the pipe ran nearly dry, if it is [`PIPE_SIZE`] large: pg_dump
/// writes 4 KiB at a time, and a reader blocked on an empty pipe is woken by each write, so
/// a reader faster than pg_dump would make both switch tasks for every 4 KiB (150,000 times
/// per GiB, most of pg_dump's extra CPU against writing to /dev/null). Waiting instead lets
/// pg_dump write on undisturbed into the large pipe, which 1 ms cannot fill unless pg_dump
/// writes faster than 1 GB/s; then the reads return full and nobody waits.
fn pipe_nap(stdout: &std::process::ChildStdout) -> Option<std::time::Duration> {
    let size = rustix::pipe::fcntl_setpipe_size(stdout, PIPE_SIZE).ok()?;
    (size >= PIPE_SIZE).then_some(std::time::Duration::from_millis(1))
}

/// Reads until `buf` is full or the stream ends, in reads of at most [`READ_CHUNK`] bytes,
/// handing each piece read to `seen` while it is in cache. After a read that found less than
/// a quarter of [`PIPE_SIZE`] waiting, sleeps `nap` (see [`pipe_nap`]).
pub(super) fn fill(
    r: &mut impl Read,
    buf: &mut [u8],
    nap: Option<std::time::Duration>,
    mut seen: impl FnMut(&[u8]),
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let end = buf.len().min(filled + READ_CHUNK);
        match r.read(&mut buf[filled..end]) {
            Ok(0) => break,
            Ok(n) => {
                seen(&buf[filled..filled + n]);
                filled += n;
                if let Some(nap) = nap.filter(|_| n < PIPE_SIZE / 4 && filled < buf.len()) {
                    std::thread::sleep(nap);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(super) fn worker_threads(configured: u32) -> u32 {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// What one streamed child produced.
pub(super) struct Streamed {
    pub(super) raw: Digested,
    pub(super) stored: Digested,
    pub(super) summary: Option<std::result::Result<ArchiveSummary, String>>,
    pub(super) frames: Vec<[u64; 2]>,
    pub(super) compressed: u64,
}

/// Runs `tool` (pg_dump or pg_dumpall) and streams its stdout through sha256, the optional
/// archive parser, zstd and age into a multipart upload of `key`. Commit explicitly: the
/// upload completes only when the child exited 0, wrote something, and nothing else failed;
/// otherwise (or on a signal) the child is killed and the upload aborted. The child starts
/// while the upload is being created (its first bytes take longer than one round trip);
/// `beside` runs while the stream does (the progress estimate), and is waited for before
/// the stream's stage ends.
#[allow(clippy::too_many_arguments)]
pub(super) async fn stream_child(
    job: &BackupJob<'_>,
    targets: &std::sync::Arc<super::fanout::Targets>,
    key: &str,
    sizing: super::fanout::Sizing,
    install: &PgInstall,
    tool: &str,
    args: &[String],
    parse: bool,
    beside: impl std::future::Future<Output = ()>,
) -> Result<Streamed> {
    // The password file must outlive the child: it is dropped (deleted) once it exited.
    let (passfile, mut child) = spawn_child(job, install, tool, args)?;
    // pg_dump connects and reads the catalog meanwhile; its output waits in the pipe.
    let (mut upload, stdout) = open_upload(&mut child, targets, key, sizing, tool).await?;
    let (parse_tx, parser) = spawn_parser(parse);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let encoder = spawn_encoder(job, stdout, parse_tx, out_tx);
    let (pumped, interrupted) = pump(&mut out_rx, &mut upload, beside, job.cancel.clone()).await;
    if pumped.is_err() || interrupted {
        child.kill();
    }
    // Only now (the child killed if need be) does the encoder see the end of its channel.
    drop(out_rx);
    let encoded = encoder
        .await
        .map_err(|e| Error::Failed(format!("the compression stage crashed: {e}")))?;
    let ended = Ended {
        interrupted,
        pumped,
        status: child.wait().await.ok(),
        stderr_tail: child.stderr_lines(),
    };
    let summary = parser.map(join_parser);
    drop(passfile);
    if let Some(e) = failure(job, tool, ended, &encoded).await {
        upload.abort().await;
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

/// Starts `tool` with the source's password (if any) in a temporary password file, which
/// the caller keeps until the child exited.
fn spawn_child(
    job: &BackupJob<'_>,
    install: &PgInstall,
    tool: &str,
    args: &[String],
) -> Result<(
    Option<pgdrill_pg::passfile::PassFile>,
    pgdrill_pg::child::Child,
)> {
    let passfile = job
        .source
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let child = spawn_tool(
        install,
        tool,
        args,
        &job.source,
        passfile.as_ref().map(|f| f.path()),
    )?;
    Ok((passfile, child))
}

/// Opens the upload of `key` in every store while the child starts, and takes the child's
/// stdout. When either fails nothing is left behind: the child is killed and the upload
/// aborted.
async fn open_upload(
    child: &mut pgdrill_pg::child::Child,
    targets: &std::sync::Arc<super::fanout::Targets>,
    key: &str,
    sizing: super::fanout::Sizing,
    tool: &str,
) -> Result<(super::fanout::FanUpload, std::process::ChildStdout)> {
    let upload = match super::fanout::FanUpload::open(targets, key, sizing).await {
        Ok(u) => u,
        Err(e) => {
            child.kill();
            let _ = child.wait().await;
            return Err(e);
        }
    };
    let Some(stdout) = child.take_stdout() else {
        child.kill();
        upload.abort().await;
        return Err(Error::Failed(format!("cannot capture {tool}'s output")));
    };
    Ok((upload, stdout))
}

/// The archive parser's thread: its summary, or why the archive could not be parsed.
type Parser = std::thread::JoinHandle<std::result::Result<ArchiveSummary, String>>;

/// With `parse`, starts the archive parser on a thread of its own, and gives the sender the
/// encode stage hands it whole frames of FRAME_RAW bytes with (shared with the compressor,
/// not copied).
fn spawn_parser(parse: bool) -> (Option<std::sync::mpsc::SyncSender<Bytes>>, Option<Parser>) {
    if !parse {
        return (None, None);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(2);
    let handle = std::thread::spawn(move || {
        parse_archive_buffered(StdBlockReader::new(rx)).map_err(|e| e.to_string())
    });
    (Some(tx), Some(handle))
}

/// The parser's summary; a parser thread that panicked reads as an archive that could not
/// be parsed.
fn join_parser(p: Parser) -> std::result::Result<ArchiveSummary, String> {
    p.join()
        .unwrap_or_else(|_| Err("the archive parser crashed".into()))
}

/// Starts [`encode_stage`] on a blocking thread with the job's keys, compression and
/// progress; its blocks come out of `out_tx`'s receiver.
fn spawn_encoder(
    job: &BackupJob<'_>,
    stdout: std::process::ChildStdout,
    parse_tx: Option<std::sync::mpsc::SyncSender<Bytes>>,
    out_tx: tokio::sync::mpsc::Sender<Bytes>,
) -> tokio::task::JoinHandle<Result<EncodeOut>> {
    let keys = job.keys.clone();
    let (level, threads) = (
        job.compression_level,
        worker_threads(job.compression_threads),
    );
    let progress = job.progress.clone();
    tokio::task::spawn_blocking(move || {
        encode_stage(stdout, parse_tx, keys, level, threads, out_tx, progress)
    })
}

/// Writes the encoder's blocks to the upload until the encoder is done or the upload
/// failed, or until `cancel` fires (then `true`: interrupted). `beside` is waited for once
/// the stream is through, never when it failed.
async fn pump(
    out_rx: &mut tokio::sync::mpsc::Receiver<Bytes>,
    upload: &mut super::fanout::FanUpload,
    beside: impl std::future::Future<Output = ()>,
    mut cancel: crate::cancel::Cancel,
) -> (std::result::Result<(), pgdrill_store::StoreError>, bool) {
    let pump = async {
        while let Some(block) = out_rx.recv().await {
            upload.write(block).await?;
        }
        Ok::<(), pgdrill_store::StoreError>(())
    };
    let pump = async {
        let mut pump = std::pin::pin!(pump);
        let mut beside = std::pin::pin!(beside);
        tokio::select! {
            r = &mut pump => {
                if r.is_ok() {
                    beside.await;
                }
                r
            }
            () = &mut beside => pump.await,
        }
    };
    tokio::select! {
        r = pump => (r, false),
        _ = cancel.cancelled() => (Ok(()), true),
    }
}

/// How the stream ended, apart from the encoder's result.
struct Ended {
    /// A signal cancelled the job.
    interrupted: bool,
    /// Whether every block reached the upload.
    pumped: std::result::Result<(), pgdrill_store::StoreError>,
    /// The child's exit (`None`: it could not be waited for).
    status: Option<std::process::ExitStatus>,
    /// The last lines the child wrote to stderr.
    stderr_tail: Vec<String>,
}

/// Why the upload must not complete, if it must not: the first of an interruption, a failed
/// upload, a failed child (a lock wait that timed out named as such), a failed encoder, or
/// a child that wrote nothing. The order matters: the first cause is the one reported, and
/// the later ones are often its consequences (a killed child, an encoder whose channel
/// closed).
async fn failure(
    job: &BackupJob<'_>,
    tool: &str,
    ended: Ended,
    encoded: &Result<EncodeOut>,
) -> Option<Error> {
    if ended.interrupted {
        return Some(Error::Failed(
            "the backup was interrupted by a signal; the partial upload was aborted and no manifest was written".into(),
        ));
    }
    if let Err(e) = ended.pumped {
        return Some(
            Error::from(e)
                .map_message(|m| format!("the upload failed, so the backup was aborted: {m}")),
        );
    }
    if !ended.status.map(|s| s.success()).unwrap_or(false) {
        let msg = match locks::timed_out_tables(&ended.stderr_tail) {
            Some(tables) if tool == "pg_dump" => {
                locks::describe(&job.source, &tables, job.lock_wait_timeout).await
            }
            _ => tool_failure(tool, ended.status, &ended.stderr_tail),
        };
        return Some(Error::Failed(msg));
    }
    match encoded {
        Err(e) => Some(Error::Failed(e.to_string())),
        Ok(e) if e.raw.bytes == 0 => Some(Error::Failed(format!(
            "{tool} exited successfully but wrote nothing; the backup was aborted"
        ))),
        Ok(_) => None,
    }
}

pub(super) fn tool_failure(
    tool: &str,
    status: Option<std::process::ExitStatus>,
    stderr: &[String],
) -> String {
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
