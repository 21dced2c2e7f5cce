//! Bytes pgdrill writes into archives: the start and end of a COPY block, and the data
//! offsets a piped dump lacks.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::data::COPY_TRAILER;
use super::header::{BLK_BLOBS, BLK_DATA, OFFSET_POS_SET};
use super::wire::BUF_SIZE;
use super::{read_front, ArchiveError, Result};

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
