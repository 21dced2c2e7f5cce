//! `restore --table` / `--schema`: a few tables back from a backup without reading the rest.
//!
//! plan: the dump index and the archive's TOC (ranged reads) → `select` (pure: the tables,
//! their partitions and everything that belongs to them alone; foreign keys to tables not
//! restored are skipped and listed) → the byte ranges (header + TOC, the tables' data
//! blocks) → the zstd frames holding them.
//!
//! execute: those frames only are fetched by ranged GETs pinned to the object's ETag,
//! decrypted and decoded whole (age chunks authenticated, every frame's checksum checked)
//! into a small archive file (header, TOC, those blocks; data offsets set), then
//! - into another database: `pg_restore --use-list` of the selection, in one transaction;
//! - `--into-schema NEW`: the same into a scratch database on the target's server (with the
//!   functions and types the tables use), where the tables move into `NEW` (indexes,
//!   constraints, owned sequences and policies follow them); then `pg_dump --schema=NEW` of
//!   the scratch database is restored into the target in one transaction, and the scratch
//!   database is dropped. PostgreSQL renames, so no definition text is rewritten.

mod directory;
mod exec;
mod plan;
mod select;
mod target;

pub use plan::{dry_run, TablePlan};
pub use select::{list_text, select, without_missing_roles, Selection};

use super::stream::{self, Loaded};
use super::{check_cancel, dump_object, RestoreJob};
use crate::manifest::StoredObject;
use crate::{Error, Result};
use exec::{direct, retarget, via_scratch};
use pgdrill_pg::archive::TocItem;
use pgdrill_pg::ConnSpec;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to restore.
#[derive(Clone, Debug, Default)]
pub struct TableRequest {
    /// (schema, name) of each `--table`.
    pub tables: Vec<(String, String)>,
    /// Every table of each `--schema`.
    pub schemas: Vec<String>,
    /// `--into-schema`: a new schema that receives every restored table.
    pub into_schema: Option<String>,
    /// The target is a new scratch database (a diff's): like `into_schema`, the guards for
    /// the source and protected targets do not apply to a database that does not exist yet.
    pub scratch: bool,
}

/// One restored table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableRows {
    pub table: String,
    /// Its name in the backup.
    pub from: String,
    /// Rows in the backup (the manifest's count), when it has data.
    pub rows: Option<u64>,
}

/// What a table restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableReport {
    pub backup_id: String,
    pub target: String,
    pub tables: Vec<TableRows>,
    pub into_schema: Option<String>,
    pub created_database: bool,
    pub skipped: Vec<String>,
    /// Bytes read from the store: the dump's frames read, its first bytes and the dump index.
    pub bytes_read: u64,
    /// The stored dump's size (what a whole restore reads).
    pub dump_bytes: u64,
    /// zstd frames read (of a parallel backup: objects read, `toc.dat` and the tables'
    /// data files), of `frames_total`.
    pub frames_read: usize,
    pub frames_total: usize,
    /// Compressed bytes of the frames read (what a reader must fetch at least).
    pub frames_bytes: u64,
    pub download_seconds: f64,
    pub restore_seconds: f64,
    pub total_seconds: f64,
}

/// What the plan and the run share.
struct Prepared {
    /// The archive's raw bytes up to the end of the frame holding the TOC's end (header and
    /// TOC are `..toc_end`), and the bytes read from the store for them.
    head: Vec<u8>,
    head_bytes: u64,
    toc_end: usize,
    /// Parts of the tables' blocks within `head`, in order.
    held: Vec<(u64, u64)>,
    /// Parts past it, fetched by ranged reads, in order.
    dump: StoredObject,
    loaded: Loaded,
    items: Vec<TocItem>,
    sel: Selection,
    ranges: Vec<(u64, u64)>,
    frames: Vec<usize>,
    index_bytes: u64,
    finals: Vec<(String, String)>,
}

async fn prepare(job: &RestoreJob<'_>, req: &TableRequest) -> Result<Prepared> {
    if let Some(s) = &req.into_schema {
        target::check_schema_name(s)?;
    }
    let dump = dump_object(job)?;
    let loaded = stream::load_index(job, &dump).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "backup {} has no dump index (an older pgdrill made it), so its tables cannot be read alone: restore it whole into another database",
            job.manifest.backup_id
        ))
    })?;
    // The frames holding the header and TOC are decoded whole (their checksums checked) and
    // kept: the first tables' data often shares the last of them.
    let idx = &loaded.index;
    let last = idx.frames.partition_point(|f| f[0] < idx.toc_end.max(1));
    let head_end = idx.frames.get(last).map_or(idx.raw_size, |f| f[0]);
    let (head_read, head) =
        stream::extract(job, &dump, &loaded, vec![(0, head_end)], Vec::new()).await?;
    let toc_end = usize::try_from(idx.toc_end)
        .unwrap_or(usize::MAX)
        .min(head.len());
    let toc = pgdrill_pg::archive::read_toc_items(&head[..toc_end]).map_err(|e| {
        Error::Integrity(format!(
            "the dump's table of contents cannot be read ({e}); restore from another backup"
        ))
    })?;
    let sel = select(&toc.items, &req.tables, &req.schemas)?;
    let mut blocks: Vec<(u64, u64)> = idx
        .blocks
        .iter()
        .filter(|b| sel.data.contains(&b.id))
        .map(|b| (b.start, b.end))
        .collect();
    blocks.sort_unstable();
    let mut all = vec![(0, idx.toc_end)];
    all.extend(blocks.iter().copied());
    let frames = stream::frames_touched(&idx.frames, &all);
    // What the head already holds is copied from it; the rest is fetched.
    let (held, ranges) = split_at(&blocks, head_end);
    let index_bytes = job
        .manifest
        .objects
        .iter()
        .filter(|o| o.kind == "index")
        .map(|o| o.size)
        .sum();
    let finals = final_names(&sel.tables, req.into_schema.as_deref())?;
    // The first bytes (read with the index) and the frames holding the rest of the TOC.
    let head_bytes = loaded.prefix.len() as u64 + head_read.fetched;
    Ok(Prepared {
        toc_end,
        held,
        head,
        head_bytes,
        dump,
        loaded,
        items: toc.items,
        sel,
        ranges,
        frames,
        index_bytes,
        finals,
    })
}

/// Raw byte ranges `(start, end)`.
type Ranges = Vec<(u64, u64)>;

/// Splits sorted `blocks` at raw offset `at`: the parts before it, the parts from it.
fn split_at(blocks: &[(u64, u64)], at: u64) -> (Ranges, Ranges) {
    let before = blocks
        .iter()
        .filter(|(a, _)| *a < at)
        .map(|&(a, b)| (a, b.min(at)))
        .collect();
    let after = blocks
        .iter()
        .filter(|(_, b)| *b > at)
        .map(|&(a, b)| (a.max(at), b))
        .collect();
    (before, after)
}

/// The restored tables' names in the target.
fn final_names(tables: &[(String, String)], into: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(into) = into else {
        return Ok(tables.to_vec());
    };
    let mut seen = BTreeSet::new();
    for (_, n) in tables {
        if !seen.insert(n) {
            return Err(Error::Invalid(format!(
                "two restored tables are named `{n}`, and --into-schema puts them in one schema: restore them one at a time"
            )));
        }
    }
    Ok(tables
        .iter()
        .map(|(_, n)| (into.to_string(), n.clone()))
        .collect())
}

fn dotted(t: &[(String, String)]) -> Vec<String> {
    t.iter().map(|(s, n)| format!("{s}.{n}")).collect()
}

/// Compressed bytes of the frames read.
fn frames_bytes(p: &Prepared) -> u64 {
    let idx = &p.loaded.index;
    p.frames
        .iter()
        .map(|&i| {
            let end = idx.frames.get(i + 1).map_or(idx.compressed_size, |f| f[1]);
            end - idx.frames[i][1]
        })
        .sum()
}

/// About what a table restore reads: the frames and the index (the first bytes belong to
/// the first frame).
fn estimate(p: &Prepared) -> u64 {
    frames_bytes(p) + p.index_bytes
}

/// The archive a table restore reads: the custom-format dump (by ranges of its zstd
/// frames) or a parallel backup's objects (directory layout).
enum Archive {
    Custom(Box<Prepared>),
    Directory(Box<directory::Prepared>),
}

impl Archive {
    async fn prepare(job: &RestoreJob<'_>, req: &TableRequest) -> Result<Archive> {
        Ok(if job.manifest.is_directory() {
            Archive::Directory(Box::new(directory::prepare(job, req).await?))
        } else {
            Archive::Custom(Box::new(prepare(job, req).await?))
        })
    }

    fn picked(&self) -> (&[TocItem], &Selection) {
        match self {
            Archive::Custom(p) => (&p.items, &p.sel),
            Archive::Directory(p) => (&p.items, &p.sel),
        }
    }

    fn finals(&self) -> &[(String, String)] {
        match self {
            Archive::Custom(p) => &p.finals,
            Archive::Directory(p) => &p.finals,
        }
    }

    /// The relations the restore creates under their final names, which the target must not
    /// hold yet: the tables, and (without `--into-schema`, which moves them into the new
    /// schema) the shared sequences their definitions need.
    fn occupied(&self, into: Option<&str>) -> Vec<(String, String)> {
        let mut names = self.finals().to_vec();
        if into.is_none() {
            names.extend(self.picked().1.sequences.iter().cloned());
        }
        names
    }

    /// Leaves out the entries needing roles the target lacks.
    fn without_missing_roles(&mut self, roles: &BTreeSet<String>) {
        let (items, sel) = match self {
            Archive::Custom(p) => (&p.items, &mut p.sel),
            Archive::Directory(p) => (&p.items, &mut p.sel),
        };
        select::without_missing_roles(items, sel, roles);
    }
}

/// What a table restore read, for its report.
struct Reads {
    bytes_read: u64,
    dump_bytes: u64,
    frames_read: usize,
    frames_total: usize,
    frames_bytes: u64,
}

/// Writes the custom layout's partial archive (header, TOC, the tables' blocks; data
/// offsets set) into `dir`: its path and what was read.
async fn fetch_custom(job: &RestoreJob<'_>, p: &Prepared, dir: &Path) -> Result<(PathBuf, Reads)> {
    let part = dir.join("tables.pgc");
    let mut file = std::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&part)
        .map_err(|e| Error::Failed(format!("cannot create a temp file: {e}")))?;
    let mut parts = vec![&p.head[..p.toc_end]];
    for &(a, b) in &p.held {
        let part = usize::try_from(a)
            .ok()
            .zip(usize::try_from(b).ok())
            .and_then(|(a, b)| p.head.get(a..b))
            .ok_or_else(|| {
                Error::Integrity(
                    "the dump index places a block past the frames read; restore from another backup"
                        .into(),
                )
            })?;
        parts.push(part);
    }
    for part in parts {
        std::io::Write::write_all(&mut file, part)
            .map_err(|e| Error::Failed(format!("cannot write a temp file: {e}")))?;
    }
    let (ex, mut file) = stream::extract(job, &p.dump, &p.loaded, p.ranges.clone(), file).await?;
    pgdrill_pg::archive::set_data_offsets(&mut file).map_err(|e| {
        Error::Integrity(format!(
            "the tables' part of the dump cannot be read ({e}); restore from another backup"
        ))
    })?;
    drop(file);
    let reads = Reads {
        bytes_read: p.head_bytes + ex.fetched + p.index_bytes,
        dump_bytes: p.dump.size,
        frames_read: p.frames.len(),
        frames_bytes: frames_bytes(p),
        frames_total: p.loaded.index.frames.len(),
    };
    Ok((part, reads))
}

/// Writes the directory layout's small archive directory into `dir`: its path and what was
/// read (the "frames" are objects here: `toc.dat` and the tables' data files).
async fn fetch_directory(
    job: &RestoreJob<'_>,
    p: &directory::Prepared,
    dir: &Path,
) -> Result<(PathBuf, Reads)> {
    let (out, _) = p.fetch(job, dir).await?;
    let (read, read_bytes, total, total_bytes) = p.sizes(job.manifest)?;
    let reads = Reads {
        bytes_read: read_bytes,
        dump_bytes: total_bytes,
        frames_read: read,
        frames_bytes: read_bytes,
        frames_total: total,
    };
    Ok((out, reads))
}

/// Restores the requested tables into `job.target`.
pub async fn run(job: RestoreJob<'_>, req: &TableRequest) -> Result<TableReport> {
    let t0 = Instant::now();
    let mut a = Archive::prepare(&job, req).await?;
    let into = req.into_schema.as_deref();
    let t = target::inspect(&job, into, &a.occupied(into), req.scratch).await?;
    a.without_missing_roles(&t.roles);
    if req.scratch && t.exists {
        return Err(Error::Refused(format!(
            "the scratch database `{}` exists already; nothing was changed",
            job.target.dbname
        )));
    }
    let install = job.tools.pick("pg_restore", job.manifest.dump_major())?;
    check_cancel(&job)?;
    job.read.progress.stage(match &a {
        Archive::Custom(_) => "download the tables' frames",
        Archive::Directory(_) => "download the tables' objects",
    });
    let dir = match &job.spool_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("pgdrill-table-")
            .tempdir_in(d),
        None => tempfile::Builder::new().prefix("pgdrill-table-").tempdir(),
    }
    .map_err(|e| Error::Failed(format!("cannot create a temp folder: {e}")))?;
    let (part, reads) = match &a {
        Archive::Custom(p) => fetch_custom(&job, p, dir.path()).await?,
        Archive::Directory(p) => fetch_directory(&job, p, dir.path()).await?,
    };
    let download = t0.elapsed().as_secs_f64();
    check_cancel(&job)?;
    job.read.progress.stage("restore the tables");
    let t1 = Instant::now();
    if !t.exists && req.scratch {
        target::create_scratch(&job, &job.target.dbname).await?;
    } else if !t.exists {
        target::create_database(&job, &job.target.dbname).await?;
    }
    let done = match into {
        None => direct(&job, &install, a.picked(), &part, !t.exists).await,
        Some(s) => {
            via_scratch(
                &job,
                &install,
                a.picked(),
                &part,
                s,
                dir.path(),
                t.version_num,
            )
            .await
        }
    };
    let done = match done {
        Ok(()) => target::analyze(&job.target, a.finals()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        let note = if t.exists {
            "the target database was not changed".to_string()
        } else {
            match target::drop_database(&job, &job.target.dbname).await {
                Ok(()) => format!(
                    "the database `{}` this restore created was dropped again",
                    job.target.dbname
                ),
                Err(d) => format!("the database this restore created is left behind: {d}"),
            }
        };
        return Err(super::cleanup::with_note(e, Some(note)));
    }
    let restore = t1.elapsed().as_secs_f64();
    let (_, sel) = a.picked();
    let tables = sel
        .tables
        .iter()
        .zip(a.finals())
        .map(|((s, n), (fs, f))| TableRows {
            table: format!("{fs}.{f}"),
            from: format!("{s}.{n}"),
            rows: job
                .manifest
                .content
                .tables
                .iter()
                .find(|c| &c.schema == s && &c.name == n)
                .map(|c| c.rows),
        })
        .collect();
    Ok(TableReport {
        backup_id: job.manifest.backup_id.to_string(),
        target: job.target.redacted(),
        tables,
        into_schema: req.into_schema.clone(),
        created_database: !t.exists,
        skipped: sel.skipped.clone(),
        bytes_read: reads.bytes_read,
        dump_bytes: reads.dump_bytes,
        frames_read: reads.frames_read,
        frames_bytes: reads.frames_bytes,
        frames_total: reads.frames_total,
        download_seconds: download,
        restore_seconds: restore,
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// For `diff`: restores `table` of `manifest` into a new scratch database named
/// `pgdrill_diff_<random>` on `job.target`'s server (the caller drops it with
/// [`drop_scratch`]).
pub(crate) async fn into_scratch(
    job: &RestoreJob<'_>,
    manifest: &crate::manifest::Manifest,
    table: (String, String),
) -> Result<(ConnSpec, TableReport)> {
    let name = format!("pgdrill_diff_{:08x}", rand::random::<u32>());
    let mut sub = retarget(job, job.target.with_dbname(&name));
    sub.manifest = manifest;
    let req = TableRequest {
        tables: vec![table],
        scratch: true,
        ..TableRequest::default()
    };
    let report = run(sub, &req).await?;
    Ok((job.target.with_dbname(&name), report))
}

/// Drops a database [`into_scratch`] made.
pub(crate) async fn drop_scratch(job: &RestoreJob<'_>, spec: &ConnSpec) -> Result<()> {
    target::drop_database(job, &spec.dbname).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_are_split_at_the_end_of_what_the_head_holds() {
        let blocks = [(10, 20), (30, 60), (70, 80)];
        let (held, fetched) = super::split_at(&blocks, 40);
        assert_eq!(held, vec![(10, 20), (30, 40)]);
        assert_eq!(fetched, vec![(40, 60), (70, 80)]);
        assert_eq!(super::split_at(&blocks, 5), (vec![], blocks.to_vec()));
    }
}
