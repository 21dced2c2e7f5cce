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
//! The module follows the format's layers, one file each: `wire` (the byte source and the
//! `Int`/`Str`/`Offset` primitives), `header` (magic, version, compression and the format's
//! constants), `toc` (TOC entries, the restore's view of them and the schema fingerprint),
//! `data` (data blocks: row counting and split points), `writer` (bytes pgdrill writes into
//! archives: block starts and ends, data offsets) and `directory` (`pg_dump -Fd`'s `toc.dat`).
//! This file holds the summary types and the one-pass parse. Tests are in `archive/tests.rs`.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};

mod data;
mod directory;
mod header;
mod toc;
mod wire;
mod writer;

pub use directory::{parse_directory_toc, CopyRows, DirectoryEntry, DirectoryToc};
pub use header::BLK_DATA;
pub use toc::{read_toc_items, schema_fingerprint, Section, Toc, TocItem};
pub use writer::{copy_block_end, copy_block_start, encode_int, set_data_offsets};

use data::DataPhase;
use header::{read_header, read_layout, Header};
use toc::{read_toc, TocEntry};
use wire::{Source, Wire, BUF_SIZE};

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

#[cfg(test)]
mod tests;
