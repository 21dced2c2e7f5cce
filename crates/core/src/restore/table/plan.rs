//! The plan of a table restore (`restore --table ... --dry-run`): the guards run, nothing
//! is changed.

use super::{dotted, estimate, list_text, target, Archive, TableRequest};
use crate::restore::RestoreJob;
use crate::Result;

/// The plan of a table restore (`restore --table ... --dry-run`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TablePlan {
    pub backup_id: String,
    pub target: String,
    /// The tables restored (named ones and their partitions), as in the backup.
    pub tables: Vec<String>,
    /// Their names in the target.
    pub restored_as: Vec<String>,
    pub into_schema: Option<String>,
    /// `existing` or `create`.
    pub database: String,
    /// The archive entries restored (`pg_restore --list` lines).
    pub entries: Vec<String>,
    /// Entries left out, each with the reason (foreign keys to tables not restored, ...).
    pub skipped: Vec<String>,
    /// zstd frames read, of all the dump's frames (of a parallel backup: objects read, of
    /// all its objects).
    pub frames: usize,
    pub frames_total: usize,
    /// About how many bytes are read from the store (the compressed frames and the first
    /// bytes; encrypted dumps add 16 bytes per 64 KiB), and the stored dump's size.
    pub read_estimate_bytes: u64,
    pub dump_bytes: u64,
    pub steps: Vec<String>,
}

/// `restore --table ... --dry-run`: the guards and the plan; nothing is changed.
pub async fn dry_run(job: RestoreJob<'_>, req: &TableRequest) -> Result<TablePlan> {
    let mut a = Archive::prepare(&job, req).await?;
    let into = req.into_schema.as_deref();
    let t = target::inspect(&job, into, &a.occupied(into), req.scratch).await?;
    a.without_missing_roles(&t.roles);
    let (frames, frames_total, estimate, dump_bytes, read) = match &a {
        Archive::Custom(p) => (
            p.frames.len(),
            p.loaded.index.frames.len(),
            estimate(p),
            p.dump.size,
            format!(
                "read the table of contents and {} of {} zstd frames (about {} bytes of {}) by ranged reads, checking each",
                p.frames.len(),
                p.loaded.index.frames.len(),
                estimate(p),
                p.dump.size
            ),
        ),
        Archive::Directory(p) => {
            let (n, bytes, total, total_bytes) = p.sizes(job.manifest)?;
            (
                n,
                total,
                bytes,
                total_bytes,
                format!(
                    "read {n} of the parallel backup's {total} objects (toc.dat and the tables' data files: {bytes} of {total_bytes} stored bytes), checking each"
                ),
            )
        }
    };
    let mut steps = vec![read];
    if !t.exists {
        steps.push(format!("create the database `{}`", job.target.dbname));
    }
    let (items, sel) = a.picked();
    let n = sel.ids.len();
    match into {
        None => steps.push(format!(
            "pg_restore {n} entries ({}) in one transaction",
            dotted(&sel.tables).join(", ")
        )),
        Some(s) => {
            steps.push(format!(
                "pg_restore {n} entries into a scratch database on the target's server and move the tables into schema `{s}` there"
            ));
            steps.push(format!(
                "pg_dump --schema={s} of the scratch database, restored into the target in one transaction; the scratch database is dropped"
            ));
        }
    }
    steps.push("ANALYZE the restored tables".into());
    Ok(TablePlan {
        backup_id: job.manifest.backup_id.to_string(),
        target: job.target.redacted(),
        tables: dotted(&sel.tables),
        restored_as: dotted(a.finals()),
        into_schema: req.into_schema.clone(),
        database: if t.exists { "existing" } else { "create" }.into(),
        entries: list_text(items, &sel.ids)
            .lines()
            .map(str::to_string)
            .collect(),
        skipped: sel.skipped.clone(),
        frames,
        frames_total,
        read_estimate_bytes: estimate,
        dump_bytes,
        steps,
    })
}

impl TablePlan {
    pub fn render(&self) -> String {
        let mut s = format!(
            "table restore plan for backup {} into {} (nothing was changed):\n  tables: {}\n",
            self.backup_id,
            self.target,
            self.tables.join(", ")
        );
        if self.into_schema.is_some() {
            s.push_str(&format!("  restored as: {}\n", self.restored_as.join(", ")));
        }
        s.push_str(&format!(
            "  reads: {} of {} frames, about {} of {} stored bytes\n",
            self.frames, self.frames_total, self.read_estimate_bytes, self.dump_bytes
        ));
        for k in &self.skipped {
            s.push_str(&format!("  not restored: {k}\n"));
        }
        s.push_str("steps:\n");
        for (i, st) in self.steps.iter().enumerate() {
            s.push_str(&format!("  {}. {st}\n", i + 1));
        }
        s
    }
}
