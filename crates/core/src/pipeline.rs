//! Streaming stages as filters (pgBackRest style): each passes bytes through and reports its
//! summary (digest, byte count) when the stream ends. Nothing here buffers a whole dump.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read, Write};

/// Digest and size of a stream, read after it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digested {
    pub sha256: String,
    pub bytes: u64,
}

/// Hashes and counts what is written through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    pub fn finish(self) -> (W, Digested) {
        let d = Digested {
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        };
        (self.inner, d)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what is read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// Reads whatever is left (so the digest covers the whole stream), then reports.
    pub fn drain_and_finish(mut self) -> io::Result<Digested> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(Digested {
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        })
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Collects written bytes into blocks of `block` bytes and sends them to the async uploader.
/// A full channel blocks the writer: that is the backpressure that slows pg_dump when the
/// store is slow. A closed channel (the uploader failed) is a broken pipe.
pub struct BlockSender {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: BytesMut,
    block: usize,
}

impl BlockSender {
    pub fn new(tx: tokio::sync::mpsc::Sender<Bytes>, block: usize) -> Self {
        BlockSender {
            tx,
            buf: BytesMut::with_capacity(block),
            block,
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(self.block);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends what is buffered; the channel closes when `self` drops.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Write for BlockSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.block - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.block {
            self.send_buf()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking reader over blocks arriving from an async producer. An `Err` item ends the
/// stream with that error; a closed channel is end of stream.
pub struct BlockReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl BlockReader {
    pub fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Self {
        BlockReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// A blocking reader over a std channel of blocks (the archive parser's input). As a
/// [`BufRead`] it lends the blocks themselves: nothing is copied.
pub struct StdBlockReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl StdBlockReader {
    pub fn new(rx: std::sync::mpsc::Receiver<Bytes>) -> Self {
        StdBlockReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for StdBlockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let current = self.fill_buf()?;
            let n = buf.len().min(current.len());
            buf[..n].copy_from_slice(&current[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for StdBlockReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.current = b,
                Err(_) => break,
            }
        }
        Ok(&self.current)
    }
    fn consume(&mut self, n: usize) {
        let n = n.min(self.current.len());
        bytes::Buf::advance(&mut self.current, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_writer_matches_sha256() {
        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"hello ").expect("w");
        w.write_all(b"world").expect("w");
        let (inner, d) = w.finish();
        assert_eq!(inner, b"hello world");
        assert_eq!(d.bytes, 11);
        assert_eq!(
            d.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn block_sender_and_reader_round_trip_in_blocks() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let h = std::thread::spawn(move || {
            let mut s = BlockSender::new(tx, 1024);
            s.write_all(&data).expect("write");
            s.finish().expect("finish");
        });
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = rx.blocking_recv() {
            sizes.push(b.len());
            got.extend_from_slice(&b);
        }
        h.join().expect("join");
        assert_eq!(got, expected);
        assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 1024));
    }

    #[test]
    fn block_sender_reports_a_closed_upload() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        drop(rx);
        let mut s = BlockSender::new(tx, 4);
        let err = s.write_all(b"12345678").expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn std_block_reader_lends_its_blocks() {
        let (tx, rx) = std::sync::mpsc::channel::<Bytes>();
        let block = Bytes::from_static(b"hello world");
        tx.send(block.clone()).expect("send");
        tx.send(Bytes::new()).expect("send");
        tx.send(Bytes::from_static(b"!")).expect("send");
        drop(tx);
        let mut r = StdBlockReader::new(rx);
        let buf = r.fill_buf().expect("fill");
        assert_eq!(buf.as_ptr(), block.as_ptr(), "the block itself, not a copy");
        r.consume(6);
        let mut rest = String::new();
        r.read_to_string(&mut rest).expect("read");
        assert_eq!(rest, "world!");
        assert!(r.fill_buf().expect("end").is_empty());
    }

    #[test]
    fn hash_reader_drains_the_rest() {
        let mut r = HashReader::new(&b"abcdef"[..]);
        let mut two = [0u8; 2];
        r.read_exact(&mut two).expect("read");
        let d = r.drain_and_finish().expect("finish");
        assert_eq!(d.bytes, 6);
    }
}
