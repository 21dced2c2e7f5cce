//! The archive header (magic, version, integer sizes, compression, names) and the format's
//! constants.

use std::io::BufRead;

use super::wire::{Source, Wire};
use super::{ArchiveError, Result};

pub(super) const MAGIC: &[u8; 5] = b"PGDMP";
/// `archCustom` in pg_backup.h; a directory-format `toc.dat` has the same magic and format 3.
pub(super) const FORMAT_CUSTOM: u8 = 1;
/// The format byte of a directory-format archive's `toc.dat` (as pg_dump 15 to 18 write it).
pub(super) const FORMAT_DIRECTORY: u8 = 3;
/// Oldest archive version read: 1.12 (PostgreSQL 9.0). All fields gated at or below it are
/// therefore always present.
pub(super) const MIN_MINOR: u8 = 12;
/// Newest archive version whose layout is known: 1.16 (PostgreSQL 17, 18).
pub(super) const MAX_MINOR: u8 = 16;
/// 1.14 added the table access method to TOC entries.
pub(super) const V_TABLEAM: u8 = 14;
/// 1.15 replaced the compression level `Int` with a compression algorithm byte.
pub(super) const V_COMPRESSION_ALGORITHM: u8 = 15;
/// 1.16 added the relkind `Int` to TOC entries.
pub(super) const V_RELKIND: u8 = 16;

pub(super) const SECTION_PRE_DATA: i64 = 2;
pub(super) const SECTION_DATA: i64 = 3;
pub(super) const SECTION_POST_DATA: i64 = 4;

pub(super) const OFFSET_POS_NOT_SET: u8 = 1;
pub(super) const OFFSET_POS_SET: u8 = 2;
pub(super) const OFFSET_NO_DATA: u8 = 3;

pub const BLK_DATA: u8 = 1;
pub(super) const BLK_BLOBS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Lz4,
    Zstd,
}

impl Compression {
    pub(super) fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// `pg_compress_algorithm` as stored since archive 1.15.
    pub(super) fn from_algorithm(byte: u8) -> Result<Self> {
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
pub(super) struct Layout {
    /// A directory-format `toc.dat` (entries name their data files instead of offsets).
    pub(super) directory: bool,
    pub(super) minor: u8,
    pub(super) revision: u8,
    pub(super) int_size: usize,
    pub(super) off_size: usize,
}

pub(super) struct Header {
    pub(super) layout: Layout,
    pub(super) compression: Compression,
    pub(super) database: String,
    pub(super) server_version: String,
    pub(super) dump_version: String,
}

/// Reads magic, version, int/offset sizes and format byte.
pub(super) fn read_layout<R: BufRead>(src: &mut Source<R>) -> Result<Layout> {
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

pub(super) fn check_version(major: u8, minor: u8) -> Result<()> {
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
pub(super) fn read_header<R: BufRead>(ar: &mut Wire<R>, layout: Layout) -> Result<Header> {
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
    pub(super) fn version(&self) -> String {
        match self.revision {
            0 => format!("1.{}", self.minor),
            rev => format!("1.{}.{rev}", self.minor),
        }
    }
}
