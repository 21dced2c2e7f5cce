//! Data blocks: reading them front to back, counting COPY rows and recording split points.

use std::collections::HashMap;
use std::io::BufRead;

use super::header::{Compression, BLK_BLOBS, BLK_DATA};
use super::toc::TocEntry;
use super::wire::Wire;
use super::{ArchiveError, DataBlock, Result, TableCount, MAX_SPLITS, SPLIT_EVERY};

/// End-of-copy trailer pg_dump writes after each table's COPY rows: `\.` and three newlines.
pub(super) const COPY_TRAILER: &[u8; 5] = b"\\.\n\n\n";

/// What a data block is expected to hold.
pub(super) enum Expect {
    /// COPY rows of `tables[index]`.
    Copy(usize),
    /// A TABLE DATA entry without a COPY statement (`pg_dump --inserts`).
    Inserts,
    /// Large objects (BLOBS).
    LargeObjects,
    /// Some other entry with data: read past it.
    Other,
}

pub(super) struct Pending {
    label: String,
    expect: Expect,
    seen: bool,
}

pub(super) struct DataPhase {
    pub(super) compression: Compression,
    pub(super) by_id: HashMap<i64, Pending>,
    pub(super) tables: Vec<TableCount>,
    pub(super) large_objects: u64,
    pub(super) blocks: Vec<DataBlock>,
}

impl DataPhase {
    pub(super) fn new(toc: &[TocEntry], compression: Compression) -> Self {
        let mut tables = Vec::new();
        let mut by_id = HashMap::new();
        for entry in toc.iter().filter(|e| e.has_data) {
            let label = format!("{} {}.{}", entry.desc, entry.namespace, entry.tag);
            let expect = match entry.desc.as_str() {
                "TABLE DATA" if entry.is_copy => {
                    tables.push(TableCount {
                        schema: entry.namespace.clone(),
                        name: entry.tag.clone(),
                        rows: 0,
                        data_bytes: 0,
                    });
                    Expect::Copy(tables.len() - 1)
                }
                "TABLE DATA" => Expect::Inserts,
                "BLOBS" => Expect::LargeObjects,
                _ => Expect::Other,
            };
            let pending = Pending {
                label,
                expect,
                seen: false,
            };
            by_id.insert(entry.dump_id, pending);
        }
        DataPhase {
            compression,
            by_id,
            tables,
            large_objects: 0,
            blocks: Vec::new(),
        }
    }

    /// Reads blocks until the input ends cleanly between two blocks.
    pub(super) fn read_blocks<R: BufRead>(&mut self, ar: &mut Wire<R>) -> Result<()> {
        loop {
            let start = ar.src.pos;
            let Some(kind) = ar.src.try_byte()? else {
                return Ok(());
            };
            let id = ar.int("data block id")?;
            let splits = self.read_block(ar, kind, id)?;
            self.blocks.push(DataBlock {
                id,
                start,
                end: ar.src.pos,
                splits,
            });
        }
    }

    /// Reads the body of the block of type `kind` for TOC entry `id`; returns its split points.
    pub(super) fn read_block<R: BufRead>(
        &mut self,
        ar: &mut Wire<R>,
        kind: u8,
        id: i64,
    ) -> Result<Vec<u64>> {
        let pending = self
            .by_id
            .get_mut(&id)
            .ok_or_else(|| ar.corrupt(format!("data block for unknown TOC entry {id}")))?;
        if std::mem::replace(&mut pending.seen, true) {
            return Err(ar.corrupt(format!("second data block for {}", pending.label)));
        }
        if self.compression != Compression::None {
            return Err(ArchiveError::Unsupported(format!(
                "table data is compressed ({}); row counting needs an uncompressed archive: run pg_dump with -Z0",
                self.compression.name()
            )));
        }
        match (kind, &pending.expect) {
            (BLK_DATA, Expect::Copy(index)) => count_copy_rows(ar, &mut self.tables[*index]),
            (BLK_DATA, Expect::Inserts) => Err(ArchiveError::Unsupported(format!(
                "{} is INSERT statements, not COPY rows: run pg_dump without --inserts",
                pending.label
            ))),
            (BLK_DATA, Expect::Other) => skip_chunks(ar).map(|()| Vec::new()),
            (BLK_BLOBS, Expect::LargeObjects) => {
                self.large_objects += skip_large_objects(ar)?;
                Ok(Vec::new())
            }
            _ => Err(ar.corrupt(format!("data block of type {kind} for {}", pending.label))),
        }
    }

    /// Every entry the TOC announced data for must have had its block.
    pub(super) fn check_complete(&self) -> Result<()> {
        let mut missing: Vec<&str> = self
            .by_id
            .values()
            .filter(|p| !p.seen)
            .map(|p| p.label.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        Err(ArchiveError::Corrupt(format!(
            "archive ends before the data of {} entries ({}{})",
            missing.len(),
            missing[..missing.len().min(5)].join(", "),
            if missing.len() > 5 { ", ..." } else { "" }
        )))
    }
}

/// Running row count over one table's COPY text, fed piece by piece.
#[derive(Default)]
pub(super) struct CopyCounter {
    newlines: u64,
    bytes: u64,
    /// The last (up to) `TAIL` bytes seen, at the end of the array.
    tail: [u8; TAIL],
    tail_len: usize,
}

/// Bytes of the data's end kept to check the trailer and what precedes it.
pub(super) const TAIL: usize = COPY_TRAILER.len() + 1;

impl CopyCounter {
    pub(super) fn feed(&mut self, piece: &[u8]) {
        self.newlines += memchr::memchr_iter(b'\n', piece).count() as u64;
        self.bytes += piece.len() as u64;
        if piece.len() >= TAIL {
            self.tail.copy_from_slice(&piece[piece.len() - TAIL..]);
            self.tail_len = TAIL;
        } else {
            self.tail.copy_within(piece.len().., 0);
            self.tail[TAIL - piece.len()..].copy_from_slice(piece);
            self.tail_len = (self.tail_len + piece.len()).min(TAIL);
        }
    }

    /// (rows, data bytes) once the trailer is checked and taken off.
    pub(super) fn finish(&self) -> Option<(u64, u64)> {
        let trailer_len = COPY_TRAILER.len() as u64;
        let tail = &self.tail[TAIL - self.tail_len..];
        if !tail.ends_with(COPY_TRAILER) {
            return None;
        }
        // The trailer starts the data or follows a row's newline.
        let starts_line = self.bytes == trailer_len || tail.first() == Some(&b'\n');
        let trailer_newlines = 3;
        starts_line.then(|| (self.newlines - trailer_newlines, self.bytes - trailer_len))
    }
}

/// Split points of one table's data: chunk offsets where a row starts, about every `every`
/// bytes, thinned out (every other one dropped, spacing doubled) past [`MAX_SPLITS`].
pub(super) struct Splits {
    points: Vec<u64>,
    every: u64,
    next: u64,
}

impl Splits {
    pub(super) fn new(start: u64) -> Self {
        Splits {
            points: Vec::new(),
            every: SPLIT_EVERY,
            next: start + SPLIT_EVERY,
        }
    }

    /// A chunk header at `pos`; `at_row_start` when the data before it ends a row.
    pub(super) fn chunk(&mut self, pos: u64, at_row_start: bool) {
        if at_row_start && pos >= self.next {
            self.points.push(pos);
            if self.points.len() > MAX_SPLITS {
                let mut i = 0;
                self.points.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
                self.every *= 2;
            }
            self.next = pos + self.every;
        }
    }
}

/// Counts the rows of one COPY block; returns the offsets of chunk headers where a row
/// starts, about every [`SPLIT_EVERY`] bytes (at most [`MAX_SPLITS`], spaced wider as needed).
pub(super) fn count_copy_rows<R: BufRead>(
    ar: &mut Wire<R>,
    table: &mut TableCount,
) -> Result<Vec<u64>> {
    let mut counter = CopyCounter::default();
    let mut splits = Splits::new(ar.src.pos);
    // The data so far ends a row: the next chunk starts one.
    let mut at_row_start = true;
    loop {
        if buffered_chunks(ar, &mut counter, &mut splits, &mut at_row_start)? {
            break;
        }
        // One chunk the careful way: it crosses the end of the buffer (or is malformed).
        splits.chunk(ar.src.pos, at_row_start);
        let len = ar.count("data chunk length")?;
        if len == 0 {
            break;
        }
        ar.src.stream(len, "table data", |piece| {
            counter.feed(piece);
            at_row_start = piece.last() == Some(&b'\n');
        })?;
    }
    let mut splits = splits.points;
    // A split right before the trailer chunk would cut off no rows.
    let trailer_chunk = COPY_TRAILER.len() as u64 + 1 + ar.int_size as u64;
    let end = ar.src.pos;
    splits.retain(|&p| p + trailer_chunk + 1 + ar.int_size as u64 + 1 < end);
    let (rows, bytes) = counter.finish().ok_or_else(|| {
        ar.corrupt(format!(
            "COPY data of {}.{} does not end with pg_dump's \\. trailer",
            table.schema, table.name
        ))
    })?;
    table.rows = rows;
    table.data_bytes = bytes;
    Ok(splits)
}

/// The fast path of [`count_copy_rows`]: the chunks that lie whole in the read buffer, read
/// straight from it (pg_dump writes one chunk per row). Stops at the first chunk that does
/// not, leaving it to the byte-by-byte readers; true at the block's end (length 0).
pub(super) fn buffered_chunks<R: BufRead>(
    ar: &mut Wire<R>,
    counter: &mut CopyCounter,
    splits: &mut Splits,
    at_row_start: &mut bool,
) -> Result<bool> {
    let int_size = ar.int_size;
    let header = 1 + int_size;
    let start = ar.src.pos;
    let buf = ar.src.buffered()?;
    let mut at = 0;
    let mut ended = false;
    while let Some(head) = buf.get(at..at + header) {
        // A sign byte other than 0 (positive) is left to `Wire::count` to report.
        if head[0] != 0 {
            break;
        }
        let mut magnitude = [0u8; 8];
        magnitude[..int_size].copy_from_slice(&head[1..]);
        let len = u64::from_le_bytes(magnitude);
        let Some(piece) = usize::try_from(len)
            .ok()
            .and_then(|len| buf.get(at + header..(at + header).checked_add(len)?))
        else {
            break;
        };
        if i64::try_from(len).is_err() {
            break;
        }
        splits.chunk(start + at as u64, *at_row_start);
        at += header + piece.len();
        if piece.is_empty() {
            ended = true;
            break;
        }
        counter.feed(piece);
        *at_row_start = piece.last() == Some(&b'\n');
    }
    ar.src.advance(at);
    Ok(ended)
}

/// Reads past `Int length, bytes` chunks up to the zero length.
pub(super) fn skip_chunks<R: BufRead>(ar: &mut Wire<R>) -> Result<()> {
    loop {
        let len = ar.count("data chunk length")?;
        if len == 0 {
            return Ok(());
        }
        ar.src.stream(len, "data chunk", |_| {})?;
    }
}

/// Reads past a large-object block (`Int oid`, chunks; ... oid 0) and counts the objects.
pub(super) fn skip_large_objects<R: BufRead>(ar: &mut Wire<R>) -> Result<u64> {
    let mut count = 0;
    // Oids above 2^31 are written as negative Ints, so only zero ends the block.
    while ar.int("large object oid")? != 0 {
        skip_chunks(ar)?;
        count += 1;
    }
    Ok(count)
}
