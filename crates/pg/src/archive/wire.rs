//! The byte source under the parser and the archive's primitives: `Int`, `Str`, `Offset`.

use std::io::{self, BufRead};

use super::header::{OFFSET_NO_DATA, OFFSET_POS_NOT_SET};
use super::{ArchiveError, Result};

/// Size of the one read buffer; chunks are processed in place from it.
pub(super) const BUF_SIZE: usize = 64 * 1024;
/// Largest string accepted in the TOC (PostgreSQL's MaxAllocSize, 1 GiB).
pub(super) const MAX_STR: u64 = 1 << 30;

/// Buffered reader that tracks its position for error messages.
pub(super) struct Source<R> {
    pub(super) inner: R,
    pub(super) pos: u64,
}

impl<R: BufRead> Source<R> {
    pub(super) fn new(reader: R) -> Self {
        Source {
            inner: reader,
            pos: 0,
        }
    }

    /// The buffered bytes, after refilling the buffer if it was empty; empty at end of input.
    pub(super) fn buffered(&mut self) -> Result<&[u8]> {
        let n = loop {
            match self.inner.fill_buf() {
                Ok(buf) => break buf.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(&[]);
        }
        // Returns what the call above buffered, without reading (the borrow checker does
        // not let the loop return it).
        Ok(self.inner.fill_buf()?)
    }

    pub(super) fn eof(&self, what: &str) -> ArchiveError {
        ArchiveError::Corrupt(format!(
            "archive ends at byte {} while reading {what}",
            self.pos
        ))
    }

    /// The next byte, or `None` at a clean end of input.
    pub(super) fn try_byte(&mut self) -> Result<Option<u8>> {
        let Some(&byte) = self.buffered()?.first() else {
            return Ok(None);
        };
        self.advance(1);
        Ok(Some(byte))
    }

    pub(super) fn byte(&mut self, what: &str) -> Result<u8> {
        self.try_byte()?.ok_or_else(|| self.eof(what))
    }

    pub(super) fn advance(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
    }

    /// Hands the next `len` bytes to `sink` piecewise, straight out of the read buffer.
    pub(super) fn stream(
        &mut self,
        mut len: u64,
        what: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<()> {
        while len > 0 {
            let buf = self.buffered()?;
            if buf.is_empty() {
                return Err(self.eof(what));
            }
            let take = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            sink(&buf[..take]);
            self.advance(take);
            len -= take as u64;
        }
        Ok(())
    }

    pub(super) fn exact(&mut self, out: &mut [u8], what: &str) -> Result<()> {
        // Fast path: pg_dump writes one chunk per COPY row, so this runs once per row.
        if let Some(bytes) = self.buffered()?.get(..out.len()) {
            out.copy_from_slice(bytes);
            self.advance(out.len());
            return Ok(());
        }
        let mut filled = 0;
        self.stream(out.len() as u64, what, |piece| {
            out[filled..filled + piece.len()].copy_from_slice(piece);
            filled += piece.len();
        })
    }
}

// Archive primitives: Int, Str, Offset

/// A [`Source`] plus the integer and offset widths the header declared.
pub(super) struct Wire<R> {
    pub(super) src: Source<R>,
    pub(super) int_size: usize,
    pub(super) off_size: usize,
}

impl<R: BufRead> Wire<R> {
    /// `ReadInt`: sign byte, then `int_size` little-endian magnitude bytes.
    pub(super) fn int(&mut self, what: &str) -> Result<i64> {
        let sign = self.src.byte(what)?;
        let mut bytes = [0u8; 8];
        self.src.exact(&mut bytes[..self.int_size], what)?;
        let magnitude = i64::try_from(u64::from_le_bytes(bytes))
            .map_err(|_| self.corrupt(format!("integer out of range in {what}")))?;
        match sign {
            0 => Ok(magnitude),
            1 => Ok(-magnitude),
            other => Err(self.corrupt(format!("bad sign byte {other} in {what}"))),
        }
    }

    /// An `Int` that must not be negative (lengths, counts, oids).
    pub(super) fn count(&mut self, what: &str) -> Result<u64> {
        let value = self.int(what)?;
        u64::try_from(value).map_err(|_| self.corrupt(format!("negative {what} ({value})")))
    }

    /// `ReadStr`: `Int` length then bytes; a negative length is NULL.
    pub(super) fn str(&mut self, what: &str) -> Result<Option<Vec<u8>>> {
        let Some(len) = self.str_len(what)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        self.src
            .stream(len, what, |piece| out.extend_from_slice(piece))?;
        Ok(Some(out))
    }

    /// A `Str` as text; NULL becomes "" (the archiver treats them alike for names).
    pub(super) fn text(&mut self, what: &str) -> Result<String> {
        let bytes = self.str(what)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads past a `Str`; returns false if it was NULL.
    pub(super) fn skip_str(&mut self, what: &str) -> Result<bool> {
        match self.str_len(what)? {
            Some(len) => self.src.stream(len, what, |_| {}).map(|()| true),
            None => Ok(false),
        }
    }

    pub(super) fn str_len(&mut self, what: &str) -> Result<Option<u64>> {
        let len = self.int(what)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len.unsigned_abs();
        if len > MAX_STR {
            return Err(self.corrupt(format!("{what} claims {len} bytes")));
        }
        Ok(Some(len))
    }

    /// `ReadOffset`: flag byte then `off_size` position bytes; returns the flag.
    pub(super) fn offset_flag(&mut self, what: &str) -> Result<u8> {
        let flag = self.src.byte(what)?;
        if !(OFFSET_POS_NOT_SET..=OFFSET_NO_DATA).contains(&flag) {
            return Err(self.corrupt(format!("bad data offset flag {flag} in {what}")));
        }
        self.src.stream(self.off_size as u64, what, |_| {})?;
        Ok(flag)
    }

    pub(super) fn corrupt(&self, msg: String) -> ArchiveError {
        ArchiveError::Corrupt(format!("{msg} (near byte {})", self.src.pos))
    }
}
