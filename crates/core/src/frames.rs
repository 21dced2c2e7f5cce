//! Compression in independent zstd frames, and the dump index that points into them.
//!
//! The dump is cut into frames of [`FRAME_RAW`] raw bytes, each compressed on its own by a
//! pool of worker threads and written in order (pzstd style: no barrier between frames, so
//! the workers stay busy). The result is one ordinary zstd stream (`zstd -d` reads
//! concatenated frames), and a reader can start decoding at any frame: with the frame table
//! and the archive's block offsets in the [`DumpIndex`], a parallel restore fetches and
//! decodes each table's data by byte range instead of reading the dump front to back.

use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::sync::mpsc;

/// Raw bytes per frame: small enough that a reader starting mid-dump wastes little decoding,
/// large enough that the ratio is within 1% of one long frame at the default level.
pub const FRAME_RAW: usize = 8 << 20;

/// The index object of a backup (`dump.index.json.zst[.age]`, kind `index`), see FORMAT.md.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DumpIndex {
    pub version: u32,
    /// Bytes of the raw pg_dump archive.
    pub raw_size: u64,
    /// Bytes of the compressed stream (before encryption).
    pub compressed_size: u64,
    /// `[raw offset, compressed offset]` of every frame start, in order.
    pub frames: Vec<[u64; 2]>,
    /// Where the archive's data blocks start (end of header and TOC).
    pub toc_end: u64,
    /// The archive's data blocks in order, with row-aligned split points.
    pub blocks: Vec<pgdrill_pg::archive::DataBlock>,
}

impl DumpIndex {
    /// The frame to start decoding at to reach raw offset `pos`: (raw, compressed) offsets.
    pub fn frame_for(&self, pos: u64) -> (u64, u64) {
        let i = self.frames.partition_point(|f| f[0] <= pos);
        self.frames
            .get(i.saturating_sub(1))
            .map(|f| (f[0], f[1]))
            .unwrap_or((0, 0))
    }

    /// Compressed offset just past the frame that holds raw offset `pos`.
    pub fn frame_end(&self, pos: u64) -> u64 {
        let i = self.frames.partition_point(|f| f[0] <= pos);
        self.frames.get(i).map_or(self.compressed_size, |f| f[1])
    }

    /// Parses and checks an index object's bytes (already decoded).
    pub fn from_json(bytes: &[u8]) -> Result<DumpIndex> {
        let index: DumpIndex = serde_json::from_slice(bytes)
            .map_err(|e| Error::Integrity(format!("the dump index is not valid JSON ({e})")))?;
        index.check()?;
        Ok(index)
    }

    /// Checks that the index describes a whole archive consistently: every offset within the
    /// sizes it states, and the sizes within [`crate::manifest::MAX_OBJECT_SIZE`], so that
    /// no offset arithmetic on it can overflow.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str| {
            Err(Error::Integrity(format!(
                "the dump index is invalid: {what}"
            )))
        };
        if self.version != 1 {
            return bad("unknown version");
        }
        let max = crate::manifest::MAX_OBJECT_SIZE;
        if self.raw_size > max || self.compressed_size > max {
            return bad("sizes out of range");
        }
        if self.frames.first() != Some(&[0, 0]) {
            return bad("no first frame");
        }
        if self
            .frames
            .windows(2)
            .any(|w| w[1][0] <= w[0][0] || w[1][1] <= w[0][1])
        {
            return bad("frames out of order");
        }
        if self
            .frames
            .last()
            .is_some_and(|f| f[0] > self.raw_size || f[1] > self.compressed_size)
        {
            return bad("a frame starts past the end of the dump");
        }
        let mut at = self.toc_end;
        for b in &self.blocks {
            if b.start != at || b.end <= b.start {
                return bad("blocks do not follow each other");
            }
            if b.splits.iter().any(|&s| s <= b.start || s >= b.end)
                || b.splits.windows(2).any(|w| w[1] <= w[0])
            {
                return bad("split points outside their block");
            }
            at = b.end;
        }
        if at != self.raw_size {
            return bad("blocks do not end at the end of the dump");
        }
        Ok(())
    }
}

type Job = (u64, Bytes);
type Done = (u64, io::Result<Vec<u8>>);

/// A writer that compresses in independent frames on `threads` workers and writes them to
/// `inner` in order, recording where each frame starts.
///
/// Two ways in: [`Write`] (bytes are copied into a frame buffer), or whole frames with
/// [`FramedEncoder::write_frame`], which hands the caller's buffer to a worker without a copy.
/// A caller that fills frames itself takes its buffers from [`FramedEncoder::spare_frame`],
/// which reuses the buffers of frames every worker and reader has let go of.
pub struct FramedEncoder<W: Write> {
    inner: W,
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    workers: Vec<std::thread::JoinHandle<()>>,
    buf: Vec<u8>,
    next_seq: u64,
    write_seq: u64,
    waiting: BTreeMap<u64, Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    raw_pos: u64,
    raw_starts: BTreeMap<u64, u64>,
    frames: Vec<[u64; 2]>,
    written: u64,
    /// Frames handed out, oldest first, to be reused once nobody else holds them.
    recycle: VecDeque<Bytes>,
}

impl<W: Write> FramedEncoder<W> {
    pub fn new(inner: W, level: i32, threads: u32) -> io::Result<Self> {
        let threads = threads.max(1) as usize;
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (done_tx, done) = mpsc::channel::<Done>();
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
            workers.push(std::thread::spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                let Ok((seq, raw)) = job else { return };
                let out = c.compress(&raw);
                drop(raw);
                if tx.send((seq, out)).is_err() {
                    return;
                }
            }));
        }
        Ok(FramedEncoder {
            inner,
            jobs: Some(job_tx),
            done,
            workers,
            buf: Vec::new(),
            next_seq: 0,
            write_seq: 0,
            waiting: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 2,
            raw_pos: 0,
            raw_starts: BTreeMap::new(),
            frames: Vec::new(),
            written: 0,
            recycle: VecDeque::new(),
        })
    }

    /// A buffer of [`FRAME_RAW`] bytes to fill and pass to [`FramedEncoder::write_frame`]:
    /// the oldest frame's, when every worker and reader is done with it, else a new one.
    pub fn spare_frame(&mut self) -> BytesMut {
        if let Some(old) = self.recycle.pop_front() {
            match old.try_into_mut() {
                Ok(mut b) => {
                    b.resize(FRAME_RAW, 0);
                    return b;
                }
                Err(old) => self.recycle.push_front(old),
            }
        }
        BytesMut::zeroed(FRAME_RAW)
    }

    /// Compresses `frame` (at most [`FRAME_RAW`] bytes are best; any size works) as the next
    /// frame, after whatever was written through [`Write`] before it.
    pub fn write_frame(&mut self, frame: Bytes) -> io::Result<()> {
        self.dispatch_buf()?;
        if frame.is_empty() {
            return Ok(());
        }
        // Keep a handle to reuse the buffer; no more than the frames that can be in use at
        // once (in flight, being read elsewhere), so that an old one is let go of.
        if self.recycle.len() > self.max_in_flight + 2 {
            self.recycle.pop_front();
        }
        self.recycle.push_back(frame.clone());
        self.dispatch(frame)
    }

    fn dispatch_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.buf);
        self.dispatch(Bytes::from(raw))
    }

    fn dispatch(&mut self, raw: Bytes) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.raw_starts.insert(seq, self.raw_pos);
        self.raw_pos += raw.len() as u64;
        self.in_flight += 1;
        let sent = self.jobs.as_ref().map(|tx| tx.send((seq, raw)));
        if !matches!(sent, Some(Ok(()))) {
            return Err(io::Error::other("a compression worker stopped"));
        }
        while self.in_flight >= self.max_in_flight {
            self.collect(true)?;
        }
        self.collect(false)
    }

    /// Takes finished frames (waiting for one when `block`) and writes those now in order.
    fn collect(&mut self, block: bool) -> io::Result<()> {
        let mut first = block;
        loop {
            let got = if first {
                first = false;
                self.done
                    .recv()
                    .map_err(|_| io::Error::other("the compression workers stopped"))?
            } else {
                match self.done.try_recv() {
                    Ok(d) => d,
                    Err(_) => break,
                }
            };
            let (seq, out) = got;
            self.waiting.insert(seq, out?);
        }
        while let Some(out) = self.waiting.remove(&self.write_seq) {
            let raw = self.raw_starts.remove(&self.write_seq).unwrap_or(0);
            self.frames.push([raw, self.written]);
            self.inner.write_all(&out)?;
            self.written += out.len() as u64;
            self.write_seq += 1;
            self.in_flight -= 1;
        }
        Ok(())
    }

    /// Compresses what is left and returns the inner writer, the frame table and the
    /// compressed size.
    pub fn finish(mut self) -> io::Result<(W, Vec<[u64; 2]>, u64)> {
        self.dispatch_buf()?;
        while self.in_flight > 0 {
            self.collect(true)?;
        }
        if self.frames.is_empty() {
            // An empty input still makes a valid (empty) zstd stream.
            let out = zstd::bulk::compress(&[], 1)?;
            self.frames.push([0, 0]);
            self.inner.write_all(&out)?;
            self.written += out.len() as u64;
        }
        let FramedEncoder {
            inner,
            jobs,
            workers,
            frames,
            written,
            ..
        } = self;
        drop(jobs);
        for w in workers {
            let _ = w.join();
        }
        Ok((inner, frames, written))
    }
}

impl<W: Write> Write for FramedEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(FRAME_RAW);
        }
        let room = FRAME_RAW - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME_RAW {
            self.dispatch_buf()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn frames_decode_as_one_stream_and_each_from_its_own_start() {
        // Compressible but not trivial: 2.5 frames of text lines.
        let mut raw = Vec::new();
        let mut i = 0u64;
        while raw.len() < FRAME_RAW * 5 / 2 {
            raw.extend_from_slice(
                format!("{i}\t{}\n", i.wrapping_mul(2654435761) % 1000003).as_bytes(),
            );
            i += 1;
        }
        let mut e = FramedEncoder::new(Vec::new(), 2, 2).expect("encoder");
        for chunk in raw.chunks(100_000) {
            e.write_all(chunk).expect("write");
        }
        let (out, frames, size) = e.finish().expect("finish");
        assert_eq!(size, out.len() as u64);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], [0, 0]);
        assert_eq!(frames[1][0], FRAME_RAW as u64);
        // `zstd -d` view: concatenated frames are one stream.
        let mut all = Vec::new();
        zstd::stream::read::Decoder::new(&out[..])
            .expect("decoder")
            .read_to_end(&mut all)
            .expect("decode");
        assert!(all == raw, "whole stream round-trips");
        // Decoding can start at any frame.
        let index = DumpIndex {
            version: 1,
            raw_size: raw.len() as u64,
            compressed_size: size,
            frames: frames.clone(),
            toc_end: raw.len() as u64,
            blocks: Vec::new(),
        };
        index.check().expect("valid index");
        let want = FRAME_RAW as u64 * 2 + 12345;
        let (r, c) = index.frame_for(want);
        assert_eq!(r, FRAME_RAW as u64 * 2);
        let mut tail = Vec::new();
        zstd::stream::read::Decoder::new(&out[c as usize..])
            .expect("decoder")
            .read_to_end(&mut tail)
            .expect("decode");
        assert!(tail[..] == raw[r as usize..], "a frame decodes on its own");
        // The compressed bytes of the frames from `frame_for(a)` to `frame_end(b)` are all
        // that decoding raw bytes a..b needs.
        let (a, b) = (FRAME_RAW as u64 - 10, FRAME_RAW as u64 + 10);
        let (ra, ca) = index.frame_for(a);
        let cb = index.frame_end(b - 1);
        assert_eq!(cb, frames[2][1]);
        assert_eq!(index.frame_end(raw.len() as u64 - 1), size);
        let mut part = Vec::new();
        zstd::stream::read::Decoder::new(&out[ca as usize..cb as usize])
            .expect("decoder")
            .read_to_end(&mut part)
            .expect("decode");
        assert!(part[(a - ra) as usize..(b - ra) as usize] == raw[a as usize..b as usize]);
    }

    #[test]
    fn whole_frames_go_in_without_a_copy_and_their_buffers_come_back() {
        let raw: Vec<u8> = (0..FRAME_RAW * 3 + 1000)
            .map(|i| (i % 7919 % 251) as u8)
            .collect();
        let mut e = FramedEncoder::new(Vec::new(), 2, 2).expect("encoder");
        // A few bytes through `Write` first: they make a frame of their own, in order.
        e.write_all(&raw[..1000]).expect("write");
        let mut held = Vec::new();
        let mut at = 1000;
        while at < raw.len() {
            let mut frame = e.spare_frame();
            assert_eq!(frame.len(), FRAME_RAW);
            let n = FRAME_RAW.min(raw.len() - at);
            frame[..n].copy_from_slice(&raw[at..at + n]);
            frame.truncate(n);
            let frame = frame.freeze();
            // A reader still holding the first frame keeps its buffer from being reused.
            if held.is_empty() {
                held.push(frame.clone());
            }
            e.write_frame(frame).expect("frame");
            at += n;
        }
        let (out, frames, size) = e.finish().expect("finish");
        assert_eq!(size, out.len() as u64);
        let starts: Vec<u64> = frames.iter().map(|f| f[0]).collect();
        assert_eq!(
            starts,
            vec![
                0,
                1000,
                1000 + FRAME_RAW as u64,
                1000 + 2 * FRAME_RAW as u64
            ]
        );
        let mut all = Vec::new();
        zstd::stream::read::Decoder::new(&out[..])
            .expect("decoder")
            .read_to_end(&mut all)
            .expect("decode");
        assert!(all == raw, "round-trips");
        assert!(
            held[0][..] == raw[1000..1000 + FRAME_RAW],
            "a held frame is not reused"
        );
    }

    #[test]
    fn a_frame_nobody_holds_any_more_is_reused() {
        // One worker, two frames in flight at most: the second frame waits for the first.
        let mut e = FramedEncoder::new(Vec::new(), 1, 1).expect("encoder");
        let first = e.spare_frame().freeze();
        let first_at = first.as_ptr() as usize;
        e.write_frame(first).expect("frame");
        e.write_frame(Bytes::from(vec![1u8; 100])).expect("frame");
        let again = e.spare_frame();
        assert_eq!(
            again.as_ptr() as usize,
            first_at,
            "the first frame's buffer"
        );
        assert_eq!(again.len(), FRAME_RAW);
        let (out, frames, _) = e.finish().expect("finish");
        assert_eq!(frames.len(), 2);
        let mut all = Vec::new();
        zstd::stream::read::Decoder::new(&out[..])
            .expect("decoder")
            .read_to_end(&mut all)
            .expect("decode");
        assert_eq!(all.len(), FRAME_RAW + 100);
    }

    #[test]
    fn an_index_whose_blocks_do_not_cover_the_dump_is_refused() {
        let block = pgdrill_pg::archive::DataBlock {
            id: 5,
            start: 10,
            end: 50,
            splits: vec![30],
        };
        let mut ix = DumpIndex {
            version: 1,
            raw_size: 50,
            compressed_size: 9,
            frames: vec![[0, 0]],
            toc_end: 10,
            blocks: vec![block],
        };
        assert!(ix.check().is_ok());
        ix.raw_size = 60;
        assert!(ix.check().is_err());
        ix.raw_size = 50;
        ix.blocks[0].splits = vec![55];
        assert!(ix.check().is_err());
    }
}
