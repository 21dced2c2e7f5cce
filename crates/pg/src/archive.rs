//! Streaming parser for pg_dump's custom archive format (`pg_dump -Fc`).
//!
//! pgdrill tees `pg_dump -Fc -Z0` stdout into [`parse_archive`] while the same bytes are
//! compressed and uploaded. The parser reads the archive front to back exactly once, never
//! seeks and never holds a data block in memory: table data flows through a fixed-size buffer
//! and rows are counted with `memchr`. What it keeps is proportional to the TOC (the schema),
//! not to the data.
//!
//! # Format contract (pg_backup_archiver.c / pg_backup_custom.c, archive versions 1.12–1.16)
//!
//! * `Int`: one sign byte (0 = positive, 1 = negative) then `int_size` magnitude bytes,
//!   least significant first.
//! * `Str`: an `Int` length then that many bytes; length -1 is SQL NULL.
//! * `Offset`: one flag byte (1 = position not set, 2 = position set, 3 = no data) then
//!   `off_size` bytes of file position, which a streaming reader ignores.
//! * Header: `PGDMP`, major, minor, revision, int_size, off_size, format (1 = custom); since
//!   1.15 a compression-algorithm byte, before that an `Int` compression level (0 = none,
//!   anything else = gzip); seven `Int`s of creation time; `Str` database name, server
//!   version, pg_dump version.
//! * TOC: an `Int` entry count, then per entry: dump id, had-dumper flag, table oid, oid, tag,
//!   desc, section, defn, drop stmt, copy stmt, namespace, tablespace, table AM (1.14+),
//!   relkind `Int` (1.16+), owner, "with oids", dependency `Str`s ended by NULL, and the
//!   custom format's data `Offset`.
//! * Data: until end of file, blocks of `type byte, Int dump id`. Type 1 (table data) is a
//!   run of `Int length, bytes` chunks ended by length 0. Type 3 (large objects) is a run of
//!   `Int oid` each followed by such chunks, ended by oid 0.
//! * Table data is COPY text: one `\n` per row (embedded newlines are escaped as `\n`), and
//!   pg_dump appends the end-of-copy trailer `\.\n\n\n` to every table's data in the archive
//!   (checked against real pg_dump 15, 16 and 18 output). The trailer is required and excluded
//!   from both the row count and `data_bytes`. Without compression pg_dump writes one chunk
//!   per row, so chunk boundaries fall anywhere relative to lines; nothing here relies on them.
//! * Only uncompressed data is read: for a compressed archive the header and TOC are parsed and
//!   the first data block yields [`ArchiveError::Unsupported`].
//!
//! (One file of about 1150 lines: one format parser, whose readers follow the format contract
//! below field by field; its tests are in `archive/tests.rs`.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What one pass over a custom-format archive learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSummary {
    /// Archive format version, e.g. "1.14" (PG 15), "1.15" (PG 16), "1.16" (PG 17/18).
    pub archive_version: String,
    /// Database name recorded in the header.
    pub database: String,
    /// Server ("remote") version string recorded in the header.
    pub server_version: String,
    /// Version string of the pg_dump that wrote the archive.
    pub dump_version: String,
    /// "none", "gzip", "lz4" or "zstd", as the header says.
    pub compression: String,
    /// Every TABLE DATA entry, in TOC order, with its counted rows.
    pub tables: Vec<TableCount>,
    /// SCHEMA entries plus the schemas of dumped tables (so "public" appears), sorted, deduplicated.
    pub schemas: Vec<String>,
    /// EXTENSION entry tags, sorted, deduplicated.
    pub extensions: Vec<String>,
    /// Lowercase hex SHA-256 of the schema-defining TOC entries, see [`schema_fingerprint`].
    pub schema_fingerprint: String,
    /// The TOC has a DATABASE entry.
    pub has_database_entry: bool,
    /// Large objects found in the large-object data blocks.
    pub large_objects: u64,
    /// Number of TOC entries.
    pub entries: usize,
    /// Byte offset where the data blocks start (the end of the header and TOC).
    #[serde(default)]
    pub toc_end: u64,
    /// Every data block, in archive order, with its byte span (see [`DataBlock`]).
    #[serde(default)]
    pub blocks: Vec<DataBlock>,
}

/// Where one data block lies in the archive, for restores that read blocks by range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataBlock {
    /// The TOC entry (dump id) the block belongs to.
    pub id: i64,
    /// Offset of the block's type byte.
    pub start: u64,
    /// Offset just past the block's end marker.
    pub end: u64,
    /// Offsets of chunk headers that start a COPY row, roughly every [`SPLIT_EVERY`] bytes
    /// (sparser for very large tables): the block can be cut there into parts that load
    /// separately. Empty for large objects and small tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<u64>,
}

/// Spacing of recorded split points in a table's data (doubled whenever a block has more
/// than [`MAX_SPLITS`] of them).
pub const SPLIT_EVERY: u64 = 4 << 20;
const MAX_SPLITS: usize = 128;

impl ArchiveSummary {
    /// Sum of the rows of all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// The table `schema.name`, if the archive has data for it.
    pub fn table(&self, schema: &str, name: &str) -> Option<&TableCount> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// Rows of one table as they are in the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub schema: String,
    pub name: String,
    /// Exact number of COPY rows.
    pub rows: u64,
    /// Bytes of COPY text, without pg_dump's `\.` trailer.
    pub data_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The reader failed.
    #[error("reading the archive failed: {0}")]
    Io(#[from] io::Error),
    /// No `PGDMP` magic (or fewer than 5 bytes), or a directory-format `toc.dat`.
    #[error("not a pg_dump custom-format archive (run pg_dump with -Fc)")]
    NotCustomFormat,
    /// A valid archive this parser cannot count: version outside 1.12–1.16, compressed
    /// data, or `--inserts` table data.
    #[error("unsupported archive: {0}")]
    Unsupported(String),
    /// Truncated input (including a clean end before all announced data blocks) or bytes
    /// that do not follow the format.
    #[error("corrupt or truncated archive: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// Reads a custom-format archive from `reader` to its end and summarises it.
///
/// Memory use is bounded by the TOC size, whatever the amount of data. On the first problem
/// it returns the error at once without draining the rest of `reader`: a caller that tees a
/// pipe into this parser must keep its writer side working when the reader is dropped.
/// A summary is only returned when every data block the TOC announces was read completely.
pub fn parse_archive<R: Read>(reader: R) -> Result<ArchiveSummary> {
    parse_archive_buffered(BufReader::with_capacity(BUF_SIZE, reader))
}

/// [`parse_archive`] over a reader that buffers itself: the parser reads straight out of its
/// buffer (a backup feeds it the blocks it already holds in memory, without another copy).
pub fn parse_archive_buffered<R: BufRead>(reader: R) -> Result<ArchiveSummary> {
    let (mut ar, header, toc) = read_front_buffered(reader, false)?;
    let toc_end = ar.src.pos;
    let mut data = DataPhase::new(&toc, header.compression);
    data.read_blocks(&mut ar)?;
    data.check_complete()?;
    let mut summary = summarize(header, toc, data.large_objects, data.tables);
    summary.toc_end = toc_end;
    summary.blocks = data.blocks;
    Ok(summary)
}

/// Reads the header and the TOC; the returned reader stands at the first data block.
fn read_front<R: Read>(
    reader: R,
    directory_ok: bool,
) -> Result<(Wire<BufReader<R>>, Header, Vec<TocEntry>)> {
    read_front_buffered(BufReader::with_capacity(BUF_SIZE, reader), directory_ok)
}

/// [`read_front`] over a reader that buffers itself.
fn read_front_buffered<R: BufRead>(
    reader: R,
    directory_ok: bool,
) -> Result<(Wire<R>, Header, Vec<TocEntry>)> {
    let mut src = Source::new(reader);
    let layout = read_layout(&mut src)?;
    if layout.directory && !directory_ok {
        return Err(ArchiveError::NotCustomFormat);
    }
    let mut ar = Wire {
        src,
        int_size: layout.int_size,
        off_size: layout.off_size,
    };
    let header = read_header(&mut ar, layout)?;
    let toc = read_toc(&mut ar, header.layout.minor, header.layout.directory)?;
    Ok((ar, header, toc))
}

/// One TOC entry as a restore needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocItem {
    pub dump_id: i64,
    pub desc: String,
    pub namespace: String,
    pub tag: String,
    /// The section pg_restore assigns: entries without one (comments, ACLs) follow the
    /// entry before them, as in `ProcessArchiveRestoreOptions`.
    pub section: Section,
    pub deps: Vec<i64>,
    /// Its definition makes a table's physical row order matter (a BRIN index or
    /// `CLUSTER ON`).
    pub orders_rows: bool,
    /// The `COPY ... FROM stdin;` statement its data block is loaded with (table data).
    pub copy_stmt: Option<String>,
    /// The SQL pg_restore runs for it (`CREATE ...`, `GRANT ...`, `COMMENT ...`).
    pub defn: String,
    /// The role named as its owner (empty for entries without one).
    pub owner: String,
    /// The catalog OIDs of the dumped object, as `pg_restore --list` prints them.
    pub table_oid: String,
    pub oid: String,
}

impl TocItem {
    /// The line `pg_restore --list` prints for this entry (`ID; TABLEOID OID DESC NS TAG
    /// OWNER`); pg_restore's `--use-list` reads only its leading id.
    pub fn list_line(&self) -> String {
        let ns = if self.namespace.is_empty() {
            "-"
        } else {
            &self.namespace
        };
        format!(
            "{}; {} {} {} {} {} {}",
            self.dump_id, self.table_oid, self.oid, self.desc, ns, self.tag, self.owner
        )
    }
}

/// pg_restore's `--section`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    PreData,
    Data,
    PostData,
}

/// The header and TOC of an archive (its first `toc_end` bytes).
#[derive(Debug, Clone)]
pub struct Toc {
    pub int_size: usize,
    /// Data blocks are stored as written (no compression inside the archive).
    pub uncompressed: bool,
    /// The session settings pg_restore applies before restoring anything: the definitions
    /// of the `ENCODING`, `STDSTRINGS` and `SEARCHPATH` entries, in TOC order.
    pub session: Vec<String>,
    pub items: Vec<TocItem>,
}

impl Toc {
    /// The archive's client encoding (`UTF8`, `LATIN1`, ...), from its `ENCODING` entry.
    pub fn encoding(&self) -> Option<String> {
        self.session.iter().find_map(|s| {
            let rest = s.trim().strip_prefix("SET client_encoding = '")?;
            Some(rest.split('\'').next()?.to_owned())
        })
    }
}

/// Reads the header and TOC at the start of `reader` (nothing after them).
pub fn read_toc_items<R: Read>(reader: R) -> Result<Toc> {
    // A directory-format toc.dat reads the same (a parallel backup's table of contents).
    let (ar, header, toc) = read_front(reader, true)?;
    let mut current = Section::PreData;
    let session = toc.iter().filter_map(|e| e.session.clone()).collect();
    let items = toc
        .into_iter()
        .map(|e| {
            current = match e.section {
                SECTION_PRE_DATA => Section::PreData,
                SECTION_DATA => Section::Data,
                SECTION_POST_DATA => Section::PostData,
                _ => current,
            };
            TocItem {
                dump_id: e.dump_id,
                desc: e.desc,
                namespace: e.namespace,
                tag: e.tag,
                section: current,
                deps: e.deps,
                orders_rows: e.orders_rows,
                copy_stmt: e.copy_stmt,
                defn: e.defn,
                owner: e.owner,
                table_oid: e.table_oid,
                oid: e.oid,
            }
        })
        .collect();
    Ok(Toc {
        int_size: ar.int_size,
        uncompressed: header.compression == Compression::None,
        session,
        items,
    })
}

/// `Int` encoding of `value` with `int_size` magnitude bytes (pg_backup_archiver's WriteInt).
pub fn encode_int(value: i64, int_size: usize) -> Vec<u8> {
    let mut out = vec![u8::from(value < 0)];
    out.extend_from_slice(&value.unsigned_abs().to_le_bytes()[..int_size.min(8)]);
    out.resize(1 + int_size, 0);
    out
}

/// The end of a COPY data block cut short: pg_dump's end-of-copy trailer as one chunk, then
/// the zero-length chunk that ends a block.
pub fn copy_block_end(int_size: usize) -> Vec<u8> {
    let mut out = encode_int(COPY_TRAILER.len() as i64, int_size);
    out.extend_from_slice(COPY_TRAILER);
    out.extend(encode_int(0, int_size));
    out
}

/// The start of a table data block for TOC entry `id`.
pub fn copy_block_start(id: i64, int_size: usize) -> Vec<u8> {
    let mut out = vec![BLK_DATA];
    out.extend(encode_int(id, int_size));
    out
}

/// Writes each data block's position into its TOC entry, as pg_dump does when its output is
/// seekable. A dump that came through a pipe (as pgdrill's do) has no offsets, so
/// `pg_restore -j` would have to scan the file for every block; with them set it seeks
/// straight there. Scans the TOC, then seeks past the data; returns how many were set.
pub fn set_data_offsets(file: &mut std::fs::File) -> Result<usize> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(0))?;
    let (toc, toc_end, int_size, off_size) = {
        let (ar, _, toc) = read_front(&mut *file, false)?;
        (toc, ar.src.pos, ar.int_size, ar.off_size)
    };
    file.seek(SeekFrom::Start(toc_end))?;
    let blocks = block_positions(&mut *file, toc_end, int_size)?;
    let mut set = 0;
    for entry in toc.iter().filter(|e| e.has_data) {
        let Some(pos) = blocks.get(&entry.dump_id) else {
            continue;
        };
        let mut field = vec![OFFSET_POS_SET];
        field.extend_from_slice(&pos.to_le_bytes()[..off_size.min(8)]);
        field.resize(1 + off_size, 0);
        file.seek(SeekFrom::Start(entry.offset_pos))?;
        file.write_all(&field)?;
        set += 1;
    }
    file.flush()?;
    Ok(set)
}

/// dump id → position of its data block, seeking past chunk contents.
fn block_positions(
    file: &mut std::fs::File,
    start: u64,
    int_size: usize,
) -> Result<BTreeMap<i64, u64>> {
    let mut r = io::BufReader::with_capacity(BUF_SIZE, file);
    let mut pos = start;
    let mut out = BTreeMap::new();
    let int = |r: &mut io::BufReader<&mut std::fs::File>, pos: &mut u64| -> Result<i64> {
        let mut b = [0u8; 9];
        r.read_exact(&mut b[..1 + int_size])?;
        *pos += 1 + int_size as u64;
        let mut mag = [0u8; 8];
        mag[..int_size.min(8)].copy_from_slice(&b[1..1 + int_size.min(8)]);
        let v = i64::try_from(u64::from_le_bytes(mag))
            .map_err(|_| ArchiveError::Corrupt(format!("integer out of range near byte {pos}")))?;
        Ok(if b[0] == 1 { -v } else { v })
    };
    loop {
        let block_pos = pos;
        let mut kind = [0u8; 1];
        match r.read(&mut kind)? {
            0 => break,
            _ => pos += 1,
        }
        let id = int(&mut r, &mut pos)?;
        out.insert(id, block_pos);
        let chunks = |r: &mut io::BufReader<&mut std::fs::File>, pos: &mut u64| -> Result<()> {
            loop {
                let len = int(r, pos)?;
                if len <= 0 {
                    return Ok(());
                }
                r.seek_relative(len)?;
                *pos += len as u64;
            }
        };
        match kind[0] {
            BLK_DATA => chunks(&mut r, &mut pos)?,
            BLK_BLOBS => {
                while int(&mut r, &mut pos)? != 0 {
                    chunks(&mut r, &mut pos)?;
                }
            }
            other => {
                return Err(ArchiveError::Corrupt(format!(
                    "unknown data block type {other} at byte {block_pos}"
                )))
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Byte source

/// Size of the one read buffer; chunks are processed in place from it.
const BUF_SIZE: usize = 64 * 1024;
/// Largest string accepted in the TOC (PostgreSQL's MaxAllocSize, 1 GiB).
const MAX_STR: u64 = 1 << 30;

/// Buffered reader that tracks its position for error messages.
struct Source<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead> Source<R> {
    fn new(reader: R) -> Self {
        Source {
            inner: reader,
            pos: 0,
        }
    }

    /// The buffered bytes, after refilling the buffer if it was empty; empty at end of input.
    fn buffered(&mut self) -> Result<&[u8]> {
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

    fn eof(&self, what: &str) -> ArchiveError {
        ArchiveError::Corrupt(format!(
            "archive ends at byte {} while reading {what}",
            self.pos
        ))
    }

    /// The next byte, or `None` at a clean end of input.
    fn try_byte(&mut self) -> Result<Option<u8>> {
        let Some(&byte) = self.buffered()?.first() else {
            return Ok(None);
        };
        self.advance(1);
        Ok(Some(byte))
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        self.try_byte()?.ok_or_else(|| self.eof(what))
    }

    fn advance(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
    }

    /// Hands the next `len` bytes to `sink` piecewise, straight out of the read buffer.
    fn stream(&mut self, mut len: u64, what: &str, mut sink: impl FnMut(&[u8])) -> Result<()> {
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

    fn exact(&mut self, out: &mut [u8], what: &str) -> Result<()> {
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

// ---------------------------------------------------------------------------------------
// Archive primitives: Int, Str, Offset

/// A [`Source`] plus the integer and offset widths the header declared.
struct Wire<R> {
    src: Source<R>,
    int_size: usize,
    off_size: usize,
}

impl<R: BufRead> Wire<R> {
    /// `ReadInt`: sign byte, then `int_size` little-endian magnitude bytes.
    fn int(&mut self, what: &str) -> Result<i64> {
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
    fn count(&mut self, what: &str) -> Result<u64> {
        let value = self.int(what)?;
        u64::try_from(value).map_err(|_| self.corrupt(format!("negative {what} ({value})")))
    }

    /// `ReadStr`: `Int` length then bytes; a negative length is NULL.
    fn str(&mut self, what: &str) -> Result<Option<Vec<u8>>> {
        let Some(len) = self.str_len(what)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        self.src
            .stream(len, what, |piece| out.extend_from_slice(piece))?;
        Ok(Some(out))
    }

    /// A `Str` as text; NULL becomes "" (the archiver treats them alike for names).
    fn text(&mut self, what: &str) -> Result<String> {
        let bytes = self.str(what)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads past a `Str`; returns false if it was NULL.
    fn skip_str(&mut self, what: &str) -> Result<bool> {
        match self.str_len(what)? {
            Some(len) => self.src.stream(len, what, |_| {}).map(|()| true),
            None => Ok(false),
        }
    }

    fn str_len(&mut self, what: &str) -> Result<Option<u64>> {
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
    fn offset_flag(&mut self, what: &str) -> Result<u8> {
        let flag = self.src.byte(what)?;
        if !(OFFSET_POS_NOT_SET..=OFFSET_NO_DATA).contains(&flag) {
            return Err(self.corrupt(format!("bad data offset flag {flag} in {what}")));
        }
        self.src.stream(self.off_size as u64, what, |_| {})?;
        Ok(flag)
    }

    fn corrupt(&self, msg: String) -> ArchiveError {
        ArchiveError::Corrupt(format!("{msg} (near byte {})", self.src.pos))
    }
}

// ---------------------------------------------------------------------------------------
// Header

const MAGIC: &[u8; 5] = b"PGDMP";
/// `archCustom` in pg_backup.h; a directory-format `toc.dat` has the same magic and format 3.
const FORMAT_CUSTOM: u8 = 1;
/// The format byte of a directory-format archive's `toc.dat` (as pg_dump 15 to 18 write it).
const FORMAT_DIRECTORY: u8 = 3;
/// Oldest archive version read: 1.12 (PostgreSQL 9.0). All fields gated at or below it are
/// therefore always present.
const MIN_MINOR: u8 = 12;
/// Newest archive version whose layout is known: 1.16 (PostgreSQL 17, 18).
const MAX_MINOR: u8 = 16;
/// 1.14 added the table access method to TOC entries.
const V_TABLEAM: u8 = 14;
/// 1.15 replaced the compression level `Int` with a compression algorithm byte.
const V_COMPRESSION_ALGORITHM: u8 = 15;
/// 1.16 added the relkind `Int` to TOC entries.
const V_RELKIND: u8 = 16;

const SECTION_PRE_DATA: i64 = 2;
const SECTION_DATA: i64 = 3;
const SECTION_POST_DATA: i64 = 4;

const OFFSET_POS_NOT_SET: u8 = 1;
const OFFSET_POS_SET: u8 = 2;
const OFFSET_NO_DATA: u8 = 3;

pub const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Lz4,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// `pg_compress_algorithm` as stored since archive 1.15.
    fn from_algorithm(byte: u8) -> Result<Self> {
        match byte {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Lz4),
            3 => Ok(Compression::Zstd),
            other => Err(ArchiveError::Unsupported(format!(
                "unknown compression algorithm {other} in header"
            ))),
        }
    }
}

/// The fixed-width start of the header: how the rest of the archive is encoded.
#[derive(Clone, Copy)]
struct Layout {
    /// A directory-format `toc.dat` (entries name their data files instead of offsets).
    directory: bool,
    minor: u8,
    revision: u8,
    int_size: usize,
    off_size: usize,
}

struct Header {
    layout: Layout,
    compression: Compression,
    database: String,
    server_version: String,
    dump_version: String,
}

/// Reads magic, version, int/offset sizes and format byte.
fn read_layout<R: BufRead>(src: &mut Source<R>) -> Result<Layout> {
    let mut magic = [0u8; 5];
    for slot in &mut magic {
        *slot = src.try_byte()?.ok_or(ArchiveError::NotCustomFormat)?;
    }
    if &magic != MAGIC {
        return Err(ArchiveError::NotCustomFormat);
    }
    let mut fixed = [0u8; 6];
    src.exact(&mut fixed, "archive header")?;
    let [major, minor, revision, int_size, off_size, format] = fixed;
    check_version(major, minor)?;
    if format != FORMAT_CUSTOM && format != FORMAT_DIRECTORY {
        return Err(ArchiveError::NotCustomFormat);
    }
    if !(1..=8).contains(&int_size) || !(1..=16).contains(&off_size) {
        return Err(ArchiveError::Unsupported(format!(
            "integer size {int_size} / offset size {off_size} in header"
        )));
    }
    Ok(Layout {
        directory: format == FORMAT_DIRECTORY,
        minor,
        revision,
        int_size: usize::from(int_size),
        off_size: usize::from(off_size),
    })
}

fn check_version(major: u8, minor: u8) -> Result<()> {
    if major < 1 || (major == 1 && minor < MIN_MINOR) {
        return Err(ArchiveError::Unsupported(format!(
            "archive version {major}.{minor} is older than 1.{MIN_MINOR}"
        )));
    }
    if major > 1 || minor > MAX_MINOR {
        return Err(ArchiveError::Unsupported(format!(
            "archive version {major}.{minor} is newer than 1.{MAX_MINOR}, the newest this parser knows"
        )));
    }
    Ok(())
}

/// Reads the rest of the header: compression, creation time and three strings.
fn read_header<R: BufRead>(ar: &mut Wire<R>, layout: Layout) -> Result<Header> {
    let compression = if layout.minor >= V_COMPRESSION_ALGORITHM {
        Compression::from_algorithm(ar.src.byte("compression algorithm")?)?
    } else if ar.int("compression level")? == 0 {
        Compression::None
    } else {
        Compression::Gzip
    };
    for _ in 0..7 {
        ar.int("creation time")?;
    }
    Ok(Header {
        layout,
        compression,
        database: ar.text("database name")?,
        server_version: ar.text("server version")?,
        dump_version: ar.text("pg_dump version")?,
    })
}

impl Layout {
    fn version(&self) -> String {
        match self.revision {
            0 => format!("1.{}", self.minor),
            rev => format!("1.{}.{rev}", self.minor),
        }
    }
}

// ---------------------------------------------------------------------------------------
// TOC

/// The parts of a TOC entry the summary needs.
struct TocEntry {
    dump_id: i64,
    desc: String,
    tag: String,
    namespace: String,
    /// The entry has a data block in the archive (offset flag is not "no data").
    has_data: bool,
    /// Position of the entry's data offset field (its flag byte) in the archive.
    offset_pos: u64,
    /// The data file a directory-format `toc.dat` names for it.
    file: Option<String>,
    /// `teSection` as stored (1 = none, 2 = pre-data, 3 = data, 4 = post-data).
    section: i64,
    deps: Vec<i64>,
    orders_rows: bool,
    /// Its data is COPY text (it has a COPY statement).
    is_copy: bool,
    copy_stmt: Option<String>,
    /// The definition of a session-setting entry (`ENCODING`, `STDSTRINGS`, `SEARCHPATH`).
    session: Option<String>,
    /// `desc\0namespace\0tag\0defn\0`, if the entry counts for the schema fingerprint.
    fingerprint_part: Option<Vec<u8>>,
    defn: String,
    owner: String,
    table_oid: String,
    oid: String,
}

fn read_toc<R: BufRead>(ar: &mut Wire<R>, minor: u8, directory: bool) -> Result<Vec<TocEntry>> {
    let count = ar.count("TOC entry count")?;
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(read_toc_entry(ar, minor, directory)?);
    }
    Ok(entries)
}

/// One entry, field by field as `ReadToc` and `_ReadExtraToc` read it.
fn read_toc_entry<R: BufRead>(ar: &mut Wire<R>, minor: u8, directory: bool) -> Result<TocEntry> {
    let dump_id = ar.int("TOC entry id")?;
    if dump_id <= 0 {
        return Err(ar.corrupt(format!("TOC entry id {dump_id} out of range")));
    }
    ar.int("had-dumper flag")?;
    let table_oid = ar.str("table oid")?.map(lossy).unwrap_or_default();
    let oid = ar.str("oid")?.map(lossy).unwrap_or_default();
    let tag = ar.str("tag")?.unwrap_or_default();
    let desc = ar.str("desc")?.unwrap_or_default();
    let section = ar.int("section")?;
    let defn = ar.str("defn")?.unwrap_or_default();
    ar.skip_str("drop statement")?;
    let copy_stmt = ar
        .str("copy statement")?
        .filter(|s| !s.is_empty())
        .map(lossy);
    let is_copy = copy_stmt.is_some();
    let namespace = ar.str("namespace")?.unwrap_or_default();
    ar.skip_str("tablespace")?;
    if minor >= V_TABLEAM {
        ar.skip_str("table access method")?;
    }
    if minor >= V_RELKIND {
        ar.int("relkind")?;
    }
    let owner = ar.str("owner")?.map(lossy).unwrap_or_default();
    ar.skip_str("with-oids flag")?;
    let mut deps = Vec::new();
    while let Some(dep) = ar.str("dependency")? {
        if let Ok(id) = String::from_utf8_lossy(&dep).trim().parse() {
            deps.push(id);
        }
    }
    let offset_pos = ar.src.pos;
    let (has_data, file) = if directory {
        // `_WriteExtraToc` of pg_backup_directory.c: the data file's name, or "".
        let file = ar
            .str("data file name")?
            .map(lossy)
            .filter(|f| !f.is_empty());
        (file.is_some(), file)
    } else {
        (ar.offset_flag("data offset")? != OFFSET_NO_DATA, None)
    };
    let fingerprint_part = fingerprint_part(&desc, &namespace, &tag, &defn);
    let orders_rows = {
        let d = String::from_utf8_lossy(&defn).to_ascii_lowercase();
        d.contains(" using brin") || d.contains(" cluster on ")
    };
    let session = matches!(&desc[..], b"ENCODING" | b"STDSTRINGS" | b"SEARCHPATH")
        .then(|| String::from_utf8_lossy(&defn).into_owned());
    Ok(TocEntry {
        defn: lossy(defn),
        owner,
        table_oid,
        oid,
        section,
        deps,
        orders_rows,
        dump_id,
        desc: lossy(desc),
        tag: lossy(tag),
        namespace: lossy(namespace),
        has_data,
        file,
        offset_pos,
        is_copy,
        copy_stmt,
        session,
        fingerprint_part,
    })
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Entry types that carry data or per-dump state rather than schema.
const NON_SCHEMA_DESCS: &[&[u8]] = &[
    b"TABLE DATA",
    b"SEQUENCE SET",
    b"BLOB",
    b"BLOBS",
    b"BLOB METADATA",
    b"LARGE OBJECT",
    b"LARGE OBJECTS",
    b"DATABASE",
    b"DATABASE PROPERTIES",
    b"ENCODING",
    b"STDSTRINGS",
    b"SEARCHPATH",
    b"STATISTICS DATA",
    b"MATERIALIZED VIEW DATA",
];

/// The fingerprint contribution of an entry, or `None` if it does not describe schema.
///
/// Excluded: data entries, per-database and per-dump settings, large objects (whose TOC
/// entries list oids), and COMMENT/ACL/SECURITY LABEL entries on the database itself or on
/// large objects (tags "DATABASE name", "LARGE OBJECT oid"), so the fingerprint follows the
/// schema only, not the data or the database's name. Defns need no cleaning: the random
/// `\restrict` key of pg_dump 17.6+/18 goes only into plain-format output, never into the
/// custom-format TOC (a test checks the fixtures).
fn fingerprint_part(desc: &[u8], namespace: &[u8], tag: &[u8], defn: &[u8]) -> Option<Vec<u8>> {
    let attached = [&b"COMMENT"[..], b"ACL", b"SECURITY LABEL"].contains(&desc);
    let about_db_or_lo =
        attached && (tag.starts_with(b"DATABASE ") || tag.starts_with(b"LARGE OBJECT"));
    if NON_SCHEMA_DESCS.contains(&desc) || about_db_or_lo {
        return None;
    }
    let mut part = Vec::with_capacity(desc.len() + namespace.len() + tag.len() + defn.len() + 4);
    for field in [desc, namespace, tag, defn] {
        part.extend_from_slice(field);
        part.push(0);
    }
    Some(part)
}

/// SHA-256 over the entries' contributions in sorted byte order, so the TOC's order (which
/// follows oids and dump ids) does not matter. Lowercase hex.
pub fn schema_fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut parts: Vec<&[u8]> = parts.into_iter().collect();
    parts.sort_unstable();
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

// ---------------------------------------------------------------------------------------
// Data blocks

/// End-of-copy trailer pg_dump writes after each table's COPY rows: `\.` and three newlines.
const COPY_TRAILER: &[u8; 5] = b"\\.\n\n\n";

/// What a data block is expected to hold.
enum Expect {
    /// COPY rows of `tables[index]`.
    Copy(usize),
    /// A TABLE DATA entry without a COPY statement (`pg_dump --inserts`).
    Inserts,
    /// Large objects (BLOBS).
    LargeObjects,
    /// Some other entry with data: read past it.
    Other,
}

struct Pending {
    label: String,
    expect: Expect,
    seen: bool,
}

struct DataPhase {
    compression: Compression,
    by_id: HashMap<i64, Pending>,
    tables: Vec<TableCount>,
    large_objects: u64,
    blocks: Vec<DataBlock>,
}

impl DataPhase {
    fn new(toc: &[TocEntry], compression: Compression) -> Self {
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
    fn read_blocks<R: BufRead>(&mut self, ar: &mut Wire<R>) -> Result<()> {
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
    fn read_block<R: BufRead>(&mut self, ar: &mut Wire<R>, kind: u8, id: i64) -> Result<Vec<u64>> {
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
    fn check_complete(&self) -> Result<()> {
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
struct CopyCounter {
    newlines: u64,
    bytes: u64,
    /// The last (up to) `TAIL` bytes seen, at the end of the array.
    tail: [u8; TAIL],
    tail_len: usize,
}

/// Bytes of the data's end kept to check the trailer and what precedes it.
const TAIL: usize = COPY_TRAILER.len() + 1;

impl CopyCounter {
    fn feed(&mut self, piece: &[u8]) {
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
    fn finish(&self) -> Option<(u64, u64)> {
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
struct Splits {
    points: Vec<u64>,
    every: u64,
    next: u64,
}

impl Splits {
    fn new(start: u64) -> Self {
        Splits {
            points: Vec::new(),
            every: SPLIT_EVERY,
            next: start + SPLIT_EVERY,
        }
    }

    /// A chunk header at `pos`; `at_row_start` when the data before it ends a row.
    fn chunk(&mut self, pos: u64, at_row_start: bool) {
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
fn count_copy_rows<R: BufRead>(ar: &mut Wire<R>, table: &mut TableCount) -> Result<Vec<u64>> {
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
fn buffered_chunks<R: BufRead>(
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
fn skip_chunks<R: BufRead>(ar: &mut Wire<R>) -> Result<()> {
    loop {
        let len = ar.count("data chunk length")?;
        if len == 0 {
            return Ok(());
        }
        ar.src.stream(len, "data chunk", |_| {})?;
    }
}

/// Reads past a large-object block (`Int oid`, chunks; ... oid 0) and counts the objects.
fn skip_large_objects<R: BufRead>(ar: &mut Wire<R>) -> Result<u64> {
    let mut count = 0;
    // Oids above 2^31 are written as negative Ints, so only zero ends the block.
    while ar.int("large object oid")? != 0 {
        skip_chunks(ar)?;
        count += 1;
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// Summary

fn summarize(
    header: Header,
    toc: Vec<TocEntry>,
    large_objects: u64,
    tables: Vec<TableCount>,
) -> ArchiveSummary {
    let mut schemas = BTreeSet::new();
    let mut extensions = BTreeSet::new();
    for entry in &toc {
        match entry.desc.as_str() {
            "SCHEMA" => schemas.insert(entry.tag.clone()),
            "TABLE" | "TABLE DATA" if !entry.namespace.is_empty() => {
                schemas.insert(entry.namespace.clone())
            }
            "EXTENSION" => extensions.insert(entry.tag.clone()),
            _ => false,
        };
    }
    let fingerprint = schema_fingerprint(toc.iter().filter_map(|e| e.fingerprint_part.as_deref()));
    ArchiveSummary {
        archive_version: header.layout.version(),
        compression: header.compression.name().to_owned(),
        database: header.database,
        server_version: header.server_version,
        dump_version: header.dump_version,
        tables,
        schemas: schemas.into_iter().collect(),
        extensions: extensions.into_iter().collect(),
        schema_fingerprint: fingerprint,
        has_database_entry: toc.iter().any(|e| e.desc == "DATABASE"),
        large_objects,
        entries: toc.len(),
        toc_end: 0,
        blocks: Vec::new(),
    }
}

mod directory;
pub use directory::{parse_directory_toc, CopyRows, DirectoryEntry, DirectoryToc};

#[cfg(test)]
mod tests;
