//! `pgdrill diff`: rows added, removed and changed in one table between a backup and a live
//! database, or between two backups.
//!
//! Design (bounded memory whatever the table's size): the backup's table is restored by the
//! table restore (`restore::table`, ranged reads of its frames only) into a scratch database
//! `pgdrill_diff_<random>` on the target's server (two of them for two backups, on a
//! throwaway cluster the caller starts, or the `--target` server); then both sides are read
//! in primary-key order through server-side cursors, a batch at a time, and merged
//! (`merge`). PostgreSQL does the sorting (spilling to disk past `work_mem`); pgdrill holds
//! two batches. Without a primary key rows are matched by whole-row hash (added and removed
//! only, duplicates counted). The scratch databases are dropped at the end, whatever
//! happened; the live database is only read (one repeatable-read, read-only transaction).

mod merge;

pub use merge::{Counts, Samples, Side};

use crate::manifest::Manifest;
use crate::restore::table::{drop_scratch, into_scratch};
use crate::restore::RestoreJob;
use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

/// One diff.
pub struct DiffJob<'a> {
    /// The backup compared (`from`); its `target` is the server that hosts the scratch
    /// databases and, without `other`, the live database compared (`to`).
    pub restore: RestoreJob<'a>,
    /// A second backup (`to`) instead of the live database.
    pub other: Option<&'a Manifest>,
    pub table: (String, String),
    /// Sample rows kept of each kind.
    pub samples: usize,
    /// Write the statements that put the live table back to the backup's rows here.
    pub sql: Option<PathBuf>,
}

/// What a diff found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiffReport {
    pub table: String,
    /// The backup id compared from.
    pub from: String,
    /// The live database (redacted URL) or the second backup id.
    pub to: String,
    /// `primary key` or `whole row`.
    pub matched_by: String,
    pub key: Vec<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// The SQL file written (`--sql`), with one statement per difference.
    pub sql_file: Option<String>,
    /// Bytes read from the store for the backup side(s).
    pub bytes_read: u64,
    pub total_seconds: f64,
}

impl DiffReport {
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut s = format!(
            "{} from {} to {} (rows matched by {}{}):\n  {} added, {} removed, {} changed, {} unchanged ({} rows before, {} after)\n",
            self.table,
            self.from,
            self.to,
            self.matched_by,
            if self.key.is_empty() {
                String::new()
            } else {
                format!(" {}", self.key.join(", "))
            },
            c.added,
            c.removed,
            c.changed,
            c.unchanged,
            c.rows_from,
            c.rows_to
        );
        for (what, rows) in [
            ("added", &c.samples.added),
            ("removed", &c.samples.removed),
            ("changed", &c.samples.changed),
        ] {
            for r in rows {
                s.push_str(&format!("  {what}: {r}\n"));
            }
        }
        if let Some(f) = &self.sql_file {
            s.push_str(&format!(
                "the statements that put the live table back to the backup's rows are in {f}\n"
            ));
        }
        s
    }
}

/// Runs the diff; the scratch databases are dropped whatever happens.
pub async fn run(job: DiffJob<'_>) -> Result<DiffReport> {
    let t0 = Instant::now();
    if job.other.is_some() && job.sql.is_some() {
        return Err(Error::Invalid(
            "--sql writes statements for a live table: compare a backup with --target URL".into(),
        ));
    }
    let r = &job.restore;
    let (scratch, first) = into_scratch(r, r.manifest, job.table.clone()).await?;
    let mut scratches = vec![scratch.clone()];
    let mut bytes = first.bytes_read;
    let outcome = async {
        let to_spec = match job.other {
            Some(m) => {
                let (s, rep) = into_scratch(r, m, job.table.clone()).await?;
                scratches.push(s.clone());
                bytes += rep.bytes_read;
                s
            }
            None => r.target.clone(),
        };
        let side = |spec: &pgdrill_pg::ConnSpec| Side {
            spec: spec.clone(),
            schema: job.table.0.clone(),
            table: job.table.1.clone(),
        };
        let (from, to) = (side(&scratch), side(&to_spec));
        compare(&job, &from, &to).await
    }
    .await;
    for s in &scratches {
        drop_scratch(r, s).await?;
    }
    let (key, counts) = outcome?;
    Ok(DiffReport {
        table: format!("{}.{}", job.table.0, job.table.1),
        from: r.manifest.backup_id.to_string(),
        to: match job.other {
            Some(m) => m.backup_id.to_string(),
            None => r.target.redacted(),
        },
        matched_by: if key.is_empty() {
            "whole row"
        } else {
            "primary key"
        }
        .into(),
        key,
        counts,
        sql_file: job.sql.as_ref().map(|p| p.display().to_string()),
        bytes_read: bytes,
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}

async fn compare(job: &DiffJob<'_>, from: &Side, to: &Side) -> Result<(Vec<String>, Counts)> {
    let key = merge::primary_key(from).await?;
    let mut fr = merge::Reader::open(from, &key).await?;
    let mut tr = merge::Reader::open(to, &key).await?;
    let Some(path) = &job.sql else {
        let c = merge::merge((from, &mut fr), (to, &mut tr), job.samples, None).await?;
        return Ok((key, c));
    };
    let columns = merge::columns(to).await?;
    let io = |e: std::io::Error| Error::Failed(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    use std::io::Write;
    writeln!(
        w,
        "-- pgdrill diff: puts {} back to the rows of backup {}\nbegin;",
        to.qualified(),
        job.restore.manifest.backup_id
    )
    .map_err(io)?;
    let out = merge::SqlOut {
        w: &mut w,
        table: to.qualified(),
        key: key.clone(),
        columns,
    };
    let c = merge::merge((from, &mut fr), (to, &mut tr), job.samples, Some(out)).await?;
    writeln!(w, "commit;").map_err(io)?;
    w.flush().map_err(io)?;
    Ok((key, c))
}
