//! The lanes' own COPY of a parallel backup's tables: each table's object streamed (or, when
//! small, decoded ahead) into the COPY, which completes only once the object's digests
//! matched, then its rows checked against the manifest.

use super::copy::Feed;
use super::deal::Task;
use super::lanes::{Lanes, Runner};
use super::objects::{Bounded, Objects};
use crate::cancel::Cancel;
use crate::manifest::StoredObject;
use crate::restore::interrupted;
use crate::{Error, Result};
use std::io::{self, Write};
use std::sync::Arc;

impl Runner<'_, '_> {
    /// The tables `ids` loaded by the lane's own COPY, each object streamed into it; a COPY
    /// is completed only after its object's digests matched, otherwise aborted.
    pub(super) async fn copy_objects(
        &self,
        objs: &Arc<Objects>,
        shared: &Lanes,
        ids: &[i64],
        conn: &mut Option<tokio_postgres::Client>,
        mut stopped: Cancel,
    ) -> Result<Vec<String>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Feed>(8);
        let feeder = {
            let (objs, ids, stopped) = (objs.clone(), ids.to_vec(), stopped.clone());
            tokio::spawn(async move { feed_objects(&objs, ids, &tx, stopped).await })
        };
        let task = Task {
            entries: ids.to_vec(),
            pieces: Vec::new(),
            bytes: 0,
        };
        let wait = stopped.clone();
        let sent = async {
            let c = self.lane_connection(conn, shared).await?;
            shared.schema_ready(wait).await?;
            self.send_copies(c, shared, &task, rx).await
        };
        let sent = tokio::select! {
            r = sent => r,
            _ = stopped.cancelled() => Err(interrupted()),
        };
        if sent.is_err() {
            feeder.abort();
        }
        let fed = match feeder.await {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => Err(interrupted()),
            Err(e) => Err(Error::Failed(format!("the restore stage crashed: {e}"))),
        };
        match (fed, sent) {
            (Err(e @ (Error::Integrity(_) | Error::Key(_))), _) => Err(e),
            (_, Err(e)) => {
                // The connection may be mid-COPY: never reuse it.
                *conn = None;
                Err(e)
            }
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(ignored)) => {
                check_rows(shared, ids, &ignored)?;
                Ok(ignored)
            }
        }
    }
}

/// Objects at most this large are fetched and decoded ahead (into memory, a few at a
/// time) while the COPY of the one before them runs: a task of many small tables is not one
/// store round trip after another.
const PREFETCH_MAX: u64 = 1 << 20;
/// Small objects decoded ahead per lane.
const PREFETCH: usize = 4;

/// What [`feed_objects`] has ready for the COPY: a small object decoded whole (its
/// digests matched), or a large one to stream.
enum Ready {
    Whole(i64, Vec<u8>),
    Stream(i64, StoredObject),
}

/// Feeds the COPYs of the tables `ids`: each object decoded into `tx` between its
/// `Start` and `End`, the `End` (which completes the COPY) sent only after its digests
/// matched.
async fn feed_objects(
    objs: &Arc<Objects>,
    ids: Vec<i64>,
    tx: &tokio::sync::mpsc::Sender<Feed>,
    stopped: Cancel,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let ready = futures::stream::iter(ids)
        .filter_map(|id| {
            let o = objs.data_object(id).cloned();
            async move { o.map(|o| (id, o)) }
        })
        .map(|(id, o)| {
            let (objs, stopped) = (objs.clone(), stopped.clone());
            async move {
                if o.raw_size > PREFETCH_MAX {
                    return Ok(Ready::Stream(id, o));
                }
                let sink = Bounded {
                    buf: Vec::new(),
                    cap: usize::try_from(o.raw_size).unwrap_or(usize::MAX),
                };
                let got = objs.decode(&o, sink, true, stopped).await?;
                Ok::<_, Error>(Ready::Whole(id, got.buf))
            }
        })
        .buffered(PREFETCH);
    futures::pin_mut!(ready);
    while let Some(r) = ready.try_next().await? {
        let id = match &r {
            Ready::Whole(id, _) | Ready::Stream(id, _) => *id,
        };
        if tx.send(Feed::Start(id)).await.is_err() {
            return Ok(());
        }
        match r {
            Ready::Whole(_, bytes) => {
                let all = bytes::Bytes::from(bytes);
                for at in (0..all.len()).step_by(super::copy::COPY_BATCH) {
                    let data = all.slice(at..(at + super::copy::COPY_BATCH).min(all.len()));
                    if tx.send(Feed::Data(data)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ready::Stream(_, o) => {
                let sink = Batches::new(tx.clone());
                objs.decode(&o, sink, true, stopped.clone()).await?;
            }
        }
        // The digests matched: the COPY may complete.
        if tx.send(Feed::End).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Each table's COPY loaded the rows the backup counted in its object (a table whose COPY
/// failed with an allowlisted error is not checked).
fn check_rows(shared: &Lanes, ids: &[i64], ignored: &[String]) -> Result<()> {
    let copied = shared.copied.lock().map_err(|_| interrupted())?;
    for id in ids {
        let (Some(want), Some(got)) = (shared.rows.get(id), copied.get(id)) else {
            continue;
        };
        let name = shared.copies.get(id).map(|c| c.1.as_str()).unwrap_or("?");
        if want != got && !ignored.iter().any(|l| l.contains(name)) {
            return Err(Error::Integrity(format!(
                "{name}: the restore loaded {got} rows but the backup counted {want}; restore from another backup"
            )));
        }
    }
    Ok(())
}

/// Decoded bytes gathered into COPY messages for the lane's COPY (blocking sends: the
/// decoder runs on a blocking thread).
struct Batches {
    tx: tokio::sync::mpsc::Sender<Feed>,
    out: bytes::BytesMut,
}

impl Batches {
    fn new(tx: tokio::sync::mpsc::Sender<Feed>) -> Self {
        Batches {
            tx,
            out: bytes::BytesMut::new(),
        }
    }
}

impl Write for Batches {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        if self.out.len() >= super::copy::COPY_BATCH {
            self.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let data = self.out.split().freeze();
        self.tx
            .blocking_send(Feed::Data(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the COPY stopped"))
    }
}
