//! Part of an archive by ranged reads: the header and TOC plus chosen data blocks, for a
//! table restore (`restore --table`). Only the zstd frames holding those bytes are fetched;
//! each is decoded to its end, so its content checksum is verified (and, when encrypted,
//! every age chunk read is authenticated): what is read is checked, though the whole
//! object's SHA-256 is not (that would need every byte).

use super::source::{decode_error, pump, Source};
use super::Loaded;
use crate::manifest::StoredObject;
use crate::restore::RestoreJob;
use crate::{layout, Error, Result};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;

/// What [`extract`] read.
pub(crate) struct Extracted {
    /// Bytes the ranged GETs read from the store (the first bytes read with the index are
    /// served from memory and not counted).
    pub fetched: u64,
}

/// Writes raw archive bytes `ranges` (sorted, not overlapping) into `out`, in order.
pub(crate) async fn extract<W: Write + Send + 'static>(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    loaded: &Loaded,
    ranges: Vec<(u64, u64)>,
    mut out: W,
) -> Result<(Extracted, W)> {
    let key = layout::backup_object(&job.manifest.database, &job.manifest.backup_id, &dump.name);
    if loaded.object.size != dump.size {
        return Err(Error::Integrity(format!(
            "{key} has {} bytes but the manifest records {}: the object is truncated or was replaced; restore from another backup",
            loaded.object.size, dump.size
        )));
    }
    let src = Source::new(
        job,
        dump,
        key,
        loaded.object.etag.clone(),
        loaded.prefix.clone(),
        loaded.index.clone(),
    );
    tokio::task::spawn_blocking(move || -> Result<(Extracted, W)> {
        copy_frames(&src, &ranges, &mut out).map_err(|e| match e {
            Copy::Read(e) => e,
            Copy::Io(e) if e.kind() == io::ErrorKind::StorageFull => {
                Error::Failed(format!("cannot write the table's data to a temp file: {e}"))
            }
            Copy::Io(e) => decode_error(&src, e),
        })?;
        out.flush()
            .map_err(|e| Error::Failed(format!("cannot write a temp file: {e}")))?;
        let fetched = src.fetched.load(Ordering::Relaxed);
        Ok((Extracted { fetched }, out))
    })
    .await
    .map_err(|e| Error::Failed(format!("reading the table's data crashed: {e}")))?
}

enum Copy {
    Read(Error),
    Io(io::Error),
}

impl From<io::Error> for Copy {
    fn from(e: io::Error) -> Self {
        Copy::Io(e)
    }
}

/// Indexes of the frames that hold any byte of `ranges`.
pub(crate) fn frames_touched(frames: &[[u64; 2]], ranges: &[(u64, u64)]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for &(a, b) in ranges.iter().filter(|(a, b)| b > a) {
        let first = frames.partition_point(|f| f[0] <= a).saturating_sub(1);
        let last = frames.partition_point(|f| f[0] < b).saturating_sub(1);
        for i in first..=last.max(first) {
            if out.last() != Some(&i) && !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Decodes each frame touched once, whole, keeping the bytes within `ranges`.
fn copy_frames(
    src: &Source,
    ranges: &[(u64, u64)],
    out: &mut impl Write,
) -> std::result::Result<usize, Copy> {
    let idx = &src.index;
    let touched = frames_touched(&idx.frames, ranges);
    let mut plain = src.open().map_err(Copy::Read)?;
    let mut buf = vec![0u8; 128 << 10];
    for &i in &touched {
        let [raw, comp] = idx.frames[i];
        let raw_end = idx.frames.get(i + 1).map_or(idx.raw_size, |f| f[0]);
        let comp_end = idx.frames.get(i + 1).map_or(idx.compressed_size, |f| f[1]);
        plain
            .limit
            .store(src.stored_end(comp_end), Ordering::Relaxed);
        plain.reader.seek(SeekFrom::Start(comp))?;
        let mut z = zstd::stream::read::Decoder::new(&mut plain.reader)?.single_frame();
        let mut at = raw;
        for &(a, b) in ranges.iter().filter(|(a, b)| *b > raw && *a < raw_end) {
            let (s, e) = (a.max(raw), b.min(raw_end));
            pump(&mut z, &mut io::sink(), s - at, &mut buf)?;
            pump(&mut z, out, e - s, &mut buf)?;
            at = e;
        }
        // The rest of the frame, so that the decoder reaches (and checks) its checksum.
        pump(&mut z, &mut io::sink(), raw_end - at, &mut buf)?;
        if z.read(&mut buf[..1])? != 0 {
            return Err(Copy::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "a zstd frame holds more bytes than the dump index says",
            )));
        }
    }
    Ok(touched.len())
}

#[cfg(test)]
mod tests {
    use super::frames_touched;

    #[test]
    fn only_the_frames_holding_the_ranges_are_read() {
        let frames = [[0, 0], [100, 40], [200, 80], [300, 120]];
        assert_eq!(frames_touched(&frames, &[(0, 10)]), vec![0]);
        assert_eq!(
            frames_touched(&frames, &[(0, 10), (250, 310)]),
            vec![0, 2, 3]
        );
        assert_eq!(frames_touched(&frames, &[(99, 101)]), vec![0, 1]);
        assert_eq!(frames_touched(&frames, &[(100, 200)]), vec![1]);
        assert_eq!(frames_touched(&frames, &[(10, 20), (30, 40)]), vec![0]);
        assert!(frames_touched(&frames, &[(5, 5)]).is_empty());
    }
}
