//! A table restore from a parallel backup (directory layout, one object per file of the
//! archive directory): the archive's `toc.dat` object and the selected tables' data objects
//! only, each decoded whole with its digests checked, into a small archive directory that
//! `pg_restore` reads like the custom layout's partial archive (same selection, same
//! `--use-list`).

use super::{final_names, select, Selection, TableRequest};
use crate::manifest::{Manifest, StoredObject};
use crate::restore::{check_cancel, RestoreJob};
use crate::verify::decode_object;
use crate::{Error, Result};
use pgdrill_pg::archive::TocItem;
use std::path::{Path, PathBuf};

/// What the plan and the run share.
pub(super) struct Prepared {
    /// The archive's `toc.dat`, as decoded (checked).
    toc: Vec<u8>,
    toc_object: StoredObject,
    pub(super) items: Vec<TocItem>,
    pub(super) sel: Selection,
    pub(super) finals: Vec<(String, String)>,
    /// Every object of the archive (not the globals), for the report's totals.
    archive: Vec<StoredObject>,
}

/// The archive file of `o`: its `file`, checked like an object's name.
fn file_of<'a>(m: &Manifest, o: &'a StoredObject) -> Result<&'a str> {
    Manifest::archive_file(o).ok_or_else(|| {
        Error::Integrity(format!(
            "the manifest of {} names no archive file for {}; restore from another backup",
            m.backup_id, o.name
        ))
    })
}

pub(super) async fn prepare(job: &RestoreJob<'_>, req: &TableRequest) -> Result<Prepared> {
    if let Some(s) = &req.into_schema {
        super::target::check_schema_name(s)?;
    }
    let m = job.manifest;
    let archive: Vec<StoredObject> = m
        .objects
        .iter()
        .filter(|o| o.kind != "globals")
        .cloned()
        .collect();
    let toc_object = archive
        .iter()
        .find(|o| Manifest::archive_file(o) == Some("toc.dat"))
        .cloned()
        .ok_or_else(|| {
            Error::Integrity(format!(
                "the manifest of {} lists no toc.dat; restore from another backup",
                m.backup_id
            ))
        })?;
    job.read.progress.stage("read the table of contents");
    let (_, toc) = decode_object(job.store, m, &toc_object, Vec::new(), &job.read).await?;
    let parsed = pgdrill_pg::archive::read_toc_items(&toc[..]).map_err(|e| {
        Error::Integrity(format!(
            "the dump's table of contents cannot be read ({e}); restore from another backup"
        ))
    })?;
    let sel = select(&parsed.items, &req.tables, &req.schemas)?;
    let finals = final_names(&sel.tables, req.into_schema.as_deref())?;
    Ok(Prepared {
        toc,
        toc_object,
        items: parsed.items,
        sel,
        finals,
        archive,
    })
}

impl Prepared {
    /// The data objects of the selected tables' `TABLE DATA` entries (`<dump id>.dat`).
    fn data_objects(&self, m: &Manifest) -> Result<Vec<&StoredObject>> {
        self.sel
            .data
            .iter()
            .map(|id| {
                let want = format!("{id}.dat");
                self.archive
                    .iter()
                    .find(|o| Manifest::archive_file(o) == Some(want.as_str()))
                    .ok_or_else(|| {
                        Error::Integrity(format!(
                            "backup {} has no object for the data file {want} its table of contents names; restore from another backup",
                            m.backup_id
                        ))
                    })
            })
            .collect()
    }

    /// The objects read: `toc.dat` and the tables' data.
    pub(super) fn reads(&self, m: &Manifest) -> Result<Vec<&StoredObject>> {
        let mut v = vec![&self.toc_object];
        v.extend(self.data_objects(m)?);
        Ok(v)
    }

    /// (objects read, stored bytes of those, objects in the archive, its stored bytes)
    pub(super) fn sizes(&self, m: &Manifest) -> Result<(usize, u64, usize, u64)> {
        let reads = self.reads(m)?;
        Ok((
            reads.len(),
            reads.iter().map(|o| o.size).sum(),
            self.archive.len(),
            self.archive.iter().map(|o| o.size).sum(),
        ))
    }

    /// Writes `toc.dat` and the tables' data files into `dir/tables` (each data object
    /// decoded and checked): the archive directory pg_restore reads, and the stored bytes
    /// read for the data files.
    pub(super) async fn fetch(&self, job: &RestoreJob<'_>, dir: &Path) -> Result<(PathBuf, u64)> {
        let out = dir.join("tables");
        std::fs::create_dir(&out)
            .map_err(|e| Error::Failed(format!("cannot create a temp folder: {e}")))?;
        std::fs::write(out.join("toc.dat"), &self.toc)
            .map_err(|e| Error::Failed(format!("cannot write a temp file: {e}")))?;
        let mut fetched = 0;
        for o in self.data_objects(job.manifest)? {
            check_cancel(job)?;
            let path = out.join(file_of(job.manifest, o)?);
            let f = std::fs::File::create(&path)
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            let (_, w) = decode_object(
                job.store,
                job.manifest,
                o,
                std::io::BufWriter::with_capacity(1 << 20, f),
                &job.read,
            )
            .await?;
            w.into_inner()
                .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
            fetched += o.size;
        }
        Ok((out, fetched))
    }
}
