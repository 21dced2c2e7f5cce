//! Directory-format archives (`pg_dump -Fd`): `toc.dat` holds the same header and TOC as a
//! custom-format archive, except that each entry names its data file (`3366.dat`,
//! `blobs.toc`) instead of an offset; the data files hold exactly what a custom archive's
//! data chunks would (uncompressed with `-Z0`). Rows are counted per data file with
//! [`CopyRows`], as the file passes.

use super::data::CopyCounter;
use super::{read_front, summarize, ArchiveError, ArchiveSummary, Result, TableCount};
use std::io::Read;

/// One TOC entry of a directory archive that has a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub dump_id: i64,
    pub desc: String,
    pub namespace: String,
    pub tag: String,
    /// The data file's name inside the directory.
    pub file: String,
    /// Its data is COPY rows (a table's data, not `--inserts`).
    pub is_copy: bool,
}

/// What `toc.dat` says: the summary (row counts zero: they are in the data files) and the
/// entries with data files.
#[derive(Debug, Clone)]
pub struct DirectoryToc {
    pub summary: ArchiveSummary,
    pub entries: Vec<DirectoryEntry>,
}

/// Reads a directory archive's `toc.dat`.
pub fn parse_directory_toc<R: Read>(reader: R) -> Result<DirectoryToc> {
    let (_, header, toc) = read_front(reader, true)?;
    if !header.layout.directory {
        return Err(ArchiveError::Unsupported(
            "expected a directory-format toc.dat, found a custom-format archive".into(),
        ));
    }
    let entries: Vec<DirectoryEntry> = toc
        .iter()
        .filter_map(|e| {
            Some(DirectoryEntry {
                dump_id: e.dump_id,
                desc: e.desc.clone(),
                namespace: e.namespace.clone(),
                tag: e.tag.clone(),
                file: e.file.clone()?,
                is_copy: e.is_copy,
            })
        })
        .collect();
    let tables = entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA" && e.is_copy)
        .map(|e| TableCount {
            schema: e.namespace.clone(),
            name: e.tag.clone(),
            rows: 0,
            data_bytes: 0,
        })
        .collect();
    let summary = summarize(header, toc, 0, tables);
    Ok(DirectoryToc { summary, entries })
}

/// Counts the COPY rows of one table's data file (`<dump id>.dat`), fed piece by piece.
#[derive(Default)]
pub struct CopyRows(CopyCounter);

impl CopyRows {
    pub fn feed(&mut self, piece: &[u8]) {
        self.0.feed(piece);
    }

    /// `(rows, data bytes)`, or `None` when the data does not end with pg_dump's `\.`
    /// trailer (not COPY text, or truncated).
    pub fn finish(&self) -> Option<(u64, u64)> {
        self.0.finish()
    }
}
