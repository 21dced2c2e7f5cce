//! The lanes' own COPY: archive data blocks decoded into COPY text and sent over the lane's
//! connection with the session settings pg_restore would use (no pg_restore process and no
//! pipe in between).

use super::deal::Task;
use super::lanes::{Lanes, Runner};
use super::source::{decode_error, Plain, Source};
use crate::cancel::Cancel;
use crate::restore::interrupted;
use crate::{Error, Result};
use bytes::Bytes;
use pgdrill_pg::archive::{self, Toc};
use pgdrill_pg::client;
use std::collections::HashMap;
use std::io::{self, Write};

impl Runner<'_, '_> {
    /// The lane's connection to the target, opened with the restore session's settings the
    /// first time a task needs it (both COPY paths share it).
    pub(super) async fn lane_connection<'c>(
        &self,
        conn: &'c mut Option<tokio_postgres::Client>,
        shared: &Lanes,
    ) -> Result<&'c tokio_postgres::Client> {
        if conn.is_none() {
            let c = client::connect(&self.job.target).await?;
            c.batch_execute(&shared.session).await.map_err(|e| {
                Error::Failed(format!(
                    "setting up a restore session failed: {}",
                    client::describe(&e)
                ))
            })?;
            *conn = Some(c);
        }
        conn.as_ref().ok_or_else(interrupted)
    }

    /// One data task loaded by pgdrill itself: the lane's connection runs each table's COPY
    /// statement and sends the rows decoded from the task's pieces, as pg_restore would,
    /// without a pg_restore process and a pipe in between. A COPY is completed only when
    /// its block (or part) was decoded to its end; otherwise it is aborted.
    pub(super) async fn copy_task(
        &self,
        src: &Source,
        shared: &Lanes,
        task: &Task,
        plain: Option<Plain>,
        conn: &mut Option<tokio_postgres::Client>,
        mut stopped: Cancel,
    ) -> Result<(Option<Plain>, Vec<String>)> {
        // The decoder starts at once; the connection opens meanwhile.
        let (tx, rx) = tokio::sync::mpsc::channel::<Feed>(8);
        let feeder = {
            let (src, task, int_size) = (src.clone(), task.clone(), shared.int_size);
            tokio::task::spawn_blocking(move || feed_copy(&src, int_size, &task, plain, tx))
        };
        let wait = stopped.clone();
        let sent = async {
            let c = self.lane_connection(conn, shared).await?;
            shared.schema_ready(wait).await?;
            self.send_copies(c, shared, task, rx).await
        };
        let sent = tokio::select! {
            r = sent => r,
            _ = stopped.cancelled() => Err(interrupted()),
        };
        let fed = feeder
            .await
            .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))?;
        match (fed, sent) {
            // The dump could not be read or decrypted: that is the cause.
            (Err(e @ (Error::Integrity(_) | Error::Key(_))), _) => Err(e),
            (_, Err(e)) => {
                // The connection may be mid-COPY: never reuse it.
                *conn = None;
                Err(e)
            }
            (Err(e), Ok(_)) => Err(e),
            (Ok(p), Ok(ignored)) => Ok((Some(p), ignored)),
        }
    }

    /// Runs the COPYs of one task from the decoder's [`Feed`]s; returns the allowlisted
    /// errors.
    pub(super) async fn send_copies(
        &self,
        c: &tokio_postgres::Client,
        shared: &Lanes,
        task: &Task,
        mut rx: tokio::sync::mpsc::Receiver<Feed>,
    ) -> Result<Vec<String>> {
        use futures::SinkExt;
        type Sink = std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>;
        let mut ignored = Vec::new();
        let mut sink: Option<Sink> = None;
        let mut table = String::new();
        let mut id_of: Option<i64> = None;
        // Like pg_restore's "COPY failed for table" error: allowlisted, or the end.
        let allow = self.job.ignore_errors;
        let mut failed = |table: &str, e: &tokio_postgres::Error| -> Result<()> {
            let entry = format!(
                "error: COPY failed for table {table}: {}",
                client::describe(e)
            );
            if allow.iter().any(|a| entry.contains(a.as_str())) {
                ignored.push(entry);
                return Ok(());
            }
            Err(Error::Failed(format!(
                "loading the data failed, so the restore failed (allowlist known errors in [restore] ignore_errors): {entry}"
            )))
        };
        while let Some(feed) = rx.recv().await {
            match feed {
                Feed::Start(id) => {
                    id_of = Some(id);
                    let Some((stmt, name)) = shared
                        .copies
                        .get(&id)
                        .filter(|_| task.entries.contains(&id))
                    else {
                        return Err(Error::Integrity(format!(
                            "the dump does not match its index (unexpected data block {id}); restore with --spool"
                        )));
                    };
                    table = name.clone();
                    sink = match c.copy_in::<_, Bytes>(stmt.as_str()).await {
                        Ok(s) => Some(Box::pin(s)),
                        Err(e) => {
                            failed(&table, &e)?;
                            None
                        }
                    };
                }
                Feed::Data(bytes) => {
                    if let Some(s) = sink.as_mut() {
                        if let Err(e) = s.send(bytes).await {
                            sink = None;
                            failed(&table, &e)?;
                        }
                    }
                }
                Feed::End => {
                    if let Some(mut s) = sink.take() {
                        match s.as_mut().finish().await {
                            Ok(n) => {
                                if let Ok(mut c) = shared.copied.lock() {
                                    *c.entry(id_of.unwrap_or_default()).or_default() += n;
                                }
                            }
                            Err(e) => failed(&table, &e)?,
                        }
                    }
                }
            }
        }
        // The decoder stopped early (its error says why): an unfinished COPY is aborted
        // when its sink is dropped here.
        drop(sink);
        Ok(ignored)
    }
}

/// The tables whose data the lanes COPY themselves: every `TABLE DATA` entry with a COPY
/// statement, when the archive's blocks are stored uncompressed and its encoding is UTF8
/// (pgdrill's own connections speak UTF8). Otherwise none: pg_restore loads them all.
pub(super) fn direct_copies(
    toc: &Toc,
    names: &HashMap<i64, String>,
) -> HashMap<i64, (String, String)> {
    let utf8 = toc
        .encoding()
        .is_some_and(|e| e.eq_ignore_ascii_case("UTF8") || e.eq_ignore_ascii_case("UTF-8"));
    if !toc.uncompressed || !utf8 {
        return HashMap::new();
    }
    toc.items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .filter_map(|i| {
            let stmt = i.copy_stmt.as_ref()?;
            let name = names.get(&i.dump_id)?;
            Some((i.dump_id, (stmt.clone(), name.clone())))
        })
        .collect()
}

/// The settings pg_restore gives its sessions (`_doSetFixedOutputState`): the archive's
/// encoding, string syntax and search path, no timeouts, no row security.
pub(super) fn session_sql(toc: &Toc) -> String {
    let mut sql = String::from(
        "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;\n",
    );
    // PostgreSQL 17+ only, as pg_restore does it.
    sql.push_str(
        "SELECT pg_catalog.set_config('transaction_timeout', '0', false) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout';\n",
    );
    for s in &toc.session {
        sql.push_str(s.trim());
        sql.push('\n');
    }
    sql.push_str(
        "SET check_function_bodies = false; SET xmloption = content; SET client_min_messages = warning; SET row_security = off;",
    );
    sql
}

/// What a lane's decoder hands its COPY sender.
#[derive(Debug)]
pub(super) enum Feed {
    /// The data of this TABLE DATA entry (or of its next part) starts.
    Start(i64),
    Data(Bytes),
    /// The block (or part) is complete.
    End,
}

/// Where [`Chunks`] stands in the archive's data layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum At {
    /// Before a block: the block type byte and the dump id.
    Block,
    /// Before a chunk's length.
    Len,
    /// Inside a chunk, this many bytes left.
    Data(u64),
}

/// COPY data sent per message (a row is its own chunk in the archive: they are gathered).
pub(super) const COPY_BATCH: usize = 256 << 10;

/// Turns decoded archive bytes (data blocks: `BLK_DATA`, dump id, then `Int length, bytes`
/// chunks up to a zero length) into [`Feed`]s: the chunks' contents are the COPY text.
pub(super) struct Chunks<'a> {
    pub(super) tx: &'a tokio::sync::mpsc::Sender<Feed>,
    pub(super) int_size: usize,
    pub(super) at: At,
    /// A header (block start or chunk length) split across writes.
    pub(super) partial: Vec<u8>,
    pub(super) out: bytes::BytesMut,
    /// The receiver went away (the COPY side stopped).
    pub(super) gone: bool,
}

impl<'a> Chunks<'a> {
    pub(super) fn new(tx: &'a tokio::sync::mpsc::Sender<Feed>, int_size: usize) -> Self {
        Chunks {
            tx,
            int_size,
            at: At::Block,
            partial: Vec::new(),
            out: bytes::BytesMut::new(),
            gone: false,
        }
    }

    pub(super) fn send(&mut self, f: Feed) -> io::Result<()> {
        self.tx.blocking_send(f).map_err(|_| {
            self.gone = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "the COPY stopped")
        })
    }

    pub(super) fn flush_data(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let data = self.out.split().freeze();
        self.send(Feed::Data(data))
    }

    /// A part that starts at a row boundary inside the block of `id`.
    pub(super) fn open(&mut self, id: i64) -> io::Result<()> {
        self.at = At::Len;
        self.send(Feed::Start(id))
    }

    /// The end of a piece: at a chunk boundary, and the block ended unless `close`.
    pub(super) fn finish_piece(&mut self, close: bool) -> io::Result<()> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        match (self.at, close) {
            (At::Len, true) if self.partial.is_empty() => {
                self.flush_data()?;
                self.at = At::Block;
                self.send(Feed::End)
            }
            (At::Block, false) if self.partial.is_empty() => Ok(()),
            _ => Err(bad(
                "a data range of the dump index does not end where a block or row does",
            )),
        }
    }

    pub(super) fn int(&self, b: &[u8]) -> io::Result<i64> {
        let mut v: i64 = 0;
        for (k, byte) in b[1..].iter().enumerate() {
            v |= i64::from(*byte) << (8 * k);
        }
        if b[0] != 0 {
            v = -v;
        }
        Ok(v)
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        while !data.is_empty() {
            match self.at {
                At::Data(left) => {
                    if self.out.capacity() == 0 {
                        // One batch's worth at once, never grown (growing copies it): a
                        // row may be split between two COPY messages, as COPY allows.
                        self.out.reserve(COPY_BATCH);
                    }
                    let room = self.out.capacity() - self.out.len();
                    let take = data
                        .len()
                        .min(room)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.at = if take as u64 == left {
                        At::Len
                    } else {
                        At::Data(left - take as u64)
                    };
                    if self.out.len() == self.out.capacity() {
                        self.flush_data()?;
                    }
                }
                At::Block | At::Len => {
                    let need = if self.at == At::Block { 2 } else { 1 } + self.int_size;
                    let take = (need - self.partial.len()).min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() < need {
                        continue;
                    }
                    // Copied out (no allocation per row: `partial` keeps its buffer).
                    let mut buf = [0u8; 16];
                    buf[..need].copy_from_slice(&self.partial);
                    self.partial.clear();
                    let head = &buf[..need];
                    if self.at == At::Block {
                        if head[0] != archive::BLK_DATA {
                            return Err(bad(format!("unexpected block type {}", head[0])));
                        }
                        let id = self.int(&head[1..])?;
                        self.at = At::Len;
                        self.send(Feed::Start(id))?;
                    } else {
                        let len = self.int(head)?;
                        if len < 0 {
                            return Err(bad(format!("negative chunk length {len}")));
                        }
                        if len == 0 {
                            self.flush_data()?;
                            self.at = At::Block;
                            self.send(Feed::End)?;
                        } else {
                            self.at = At::Data(len as u64);
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decodes the task's pieces into COPY data for [`Runner::copy_task`] (blocking).
pub(super) fn feed_copy(
    src: &Source,
    int_size: usize,
    task: &Task,
    plain: Option<Plain>,
    tx: tokio::sync::mpsc::Sender<Feed>,
) -> Result<Plain> {
    let mut plain = match plain {
        Some(p) => p,
        None => src.open()?,
    };
    let mut chunks = Chunks::new(&tx, int_size);
    let stopped = |_| Error::Failed("the COPY stopped reading its input".into());
    for p in &task.pieces {
        if let Some(id) = p.open {
            chunks.open(id).map_err(stopped)?;
        }
        if let Err(e) = src.copy_data(&mut plain, p.from, p.to, &mut chunks) {
            return Err(if chunks.gone {
                stopped(e)
            } else {
                decode_error(src, e)
            });
        }
        if let Err(e) = chunks.finish_piece(p.close) {
            return Err(if chunks.gone {
                stopped(e)
            } else {
                decode_error(src, e)
            });
        }
    }
    Ok(plain)
}
