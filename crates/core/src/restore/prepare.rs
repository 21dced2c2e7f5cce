//! What the preflight reads before anything is changed: the archive's table of contents
//! (from the dump index's frames, else from the head of the dump) and the target's facts,
//! handed to the pure decisions of module `preflight` and, for Supabase backups, module
//! `supabase`; plus the grants on extension members that run after the restore.

use super::{check_cancel, plan, preflight, stream, supabase, RestoreJob, TargetInfo};
use crate::manifest::StoredObject;
use crate::verify::decode_object;
use crate::{Error, Result};
use pgdrill_pg::client;
use pgdrill_pg::ConnSpec;
use std::io::Write;

/// What the preflight decided: the `--use-list` (when anything is left out), the roles to
/// create, and what is not restored and why.
pub(super) struct Planned {
    pub(super) list: Option<String>,
    /// Grants on extension members, run after the restore one by one (see
    /// `preflight::extension_member_grants`): (what, SQL).
    pub(super) deferred: Vec<(String, String)>,
    pub(super) create_roles: Vec<String>,
    pub(super) skipped: Vec<String>,
    pub(super) notes: Vec<String>,
    /// Supabase platform rows load after the other data (a serial pg_restore).
    pub(super) reorder: bool,
    /// The archive's encoding (its `ENCODING` entry): the target database's when the
    /// manifest does not record the source's (older versions).
    pub(super) encoding: Option<String>,
}

/// The preflight (module `preflight`) and, for Supabase backups, the platform plan (module
/// `supabase`): everything decided from the archive's table of contents and the target
/// before anything is changed.
///
/// With `head_only` (a dry run), a backup without a dump index is read only as far as its
/// table of contents (and its digests are not checked).
pub(super) async fn prepare(
    job: &RestoreJob<'_>,
    info: &TargetInfo,
    admin: &ConnSpec,
    dump: &StoredObject,
    loaded: Option<&stream::Loaded>,
    head_only: bool,
) -> Result<Planned> {
    let toc = match loaded {
        Some(l) => stream::read_toc(job, dump, l).await?,
        None => read_toc_fallback(job, dump, head_only).await?,
    };
    check_cancel(job)?;
    let items = &toc.items;
    let target = (info.exists && !info.create_mode).then_some(&job.target);
    let facts = preflight::facts(admin, target, items).await?;
    let mut skips = preflight::skips(items, &facts, job.skip_extensions)?;
    let mut deferred = Vec::new();
    if info.supabase {
        for (id, what, sql) in preflight::extension_member_grants(items, &skips) {
            skips.insert(id, String::new());
            deferred.push((what, sql));
        }
    }
    let by_id: std::collections::HashMap<i64, &pgdrill_pg::archive::TocItem> =
        items.iter().map(|i| (i.dump_id, i)).collect();
    let mut skipped: Vec<String> = skips
        .iter()
        .filter(|(_, why)| !why.is_empty())
        .map(|(id, why)| {
            let what = by_id
                .get(id)
                .map(|i| preflight::describe(i))
                .unwrap_or_default();
            format!("{what}: {why}")
        })
        .collect();
    let mut list = preflight::list_text(items, &skips);
    let mut notes = Vec::new();
    let mut reorder = false;
    if info.supabase {
        let p = supabase::plan(
            job,
            admin,
            &info.platform_schemas,
            info.exists,
            &list,
            items,
        )
        .await?;
        list = p.list;
        skipped.extend(p.skipped);
        notes.extend(p.notes);
        reorder = p.reorder;
    }
    let kept = preflight::kept_ids(&list);
    let (needed, wanted) = preflight::roles(items, &kept, info.supabase);
    let create_roles = preflight::roles_to_create(&needed, &wanted, &facts, &mut notes)?;
    let filtered = kept.len() < items.len();
    Ok(Planned {
        deferred,
        list: filtered.then_some(list),
        create_roles,
        skipped,
        notes,
        reorder,
        encoding: toc.encoding(),
    })
}

impl Planned {
    /// What the plan needs of it.
    pub(super) fn summary(&self) -> plan::Preflight {
        plan::Preflight {
            use_list: self.list.is_some(),
            reorder: self.reorder,
            create_roles: self.create_roles.clone(),
            skipped: self.skipped.clone(),
            notes: self.notes.clone(),
            deferred: self.deferred.len(),
        }
    }
}

/// Runs the deferred grants one by one on the restored database; returns those that failed,
/// as `skipped` lines.
pub(super) async fn run_deferred(target: &ConnSpec, deferred: &[(String, String)]) -> Vec<String> {
    let c = match client::connect(target).await {
        Ok(c) => c,
        Err(e) => return vec![format!("grants on extension objects: cannot connect ({e})")],
    };
    let mut missed = Vec::new();
    for (what, sql) in deferred {
        let run = format!("begin; {sql}; commit;");
        if let Err(e) = c.batch_execute(&run).await {
            let _ = c.batch_execute("rollback").await;
            let why = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            missed.push(format!(
                "{what}: the target's version of the extension refused it ({why})"
            ));
        }
    }
    missed
}

/// The table of contents of a backup without a dump index: the dump is decoded (and its
/// digests checked) and its first bytes kept, up to a bound. With `head_only`, decoding
/// stops as soon as the table of contents is complete.
async fn read_toc_fallback(
    job: &RestoreJob<'_>,
    dump: &StoredObject,
    head_only: bool,
) -> Result<pgdrill_pg::archive::Toc> {
    /// More than the TOC of any real database (5,000 tables take about 2 MiB).
    const MAX_TOC: usize = 256 << 20;
    type Parsed = std::sync::Arc<std::sync::Mutex<Option<pgdrill_pg::archive::Toc>>>;
    struct Head {
        buf: Vec<u8>,
        /// With `head_only`: the TOC once it parses, and the size at which to try next.
        parsed: Option<(Parsed, usize)>,
    }
    impl Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = MAX_TOC.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&buf[..buf.len().min(room)]);
            if let Some((slot, next)) = &mut self.parsed {
                if self.buf.len() >= *next {
                    *next = next.saturating_mul(2);
                    if let Ok(toc) = pgdrill_pg::archive::read_toc_items(&self.buf[..]) {
                        if let Ok(mut s) = slot.lock() {
                            *s = Some(toc);
                        }
                        return Err(std::io::Error::other("the table of contents is read"));
                    }
                }
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let slot: Parsed = Default::default();
    let sink = Head {
        buf: Vec::new(),
        parsed: head_only.then(|| (slot.clone(), 64 << 10)),
    };
    let decoded = decode_object(job.store, job.manifest, dump, sink, &job.read).await;
    if let Some(toc) = slot.lock().ok().and_then(|mut s| s.take()) {
        return Ok(toc);
    }
    let (_, head) = decoded?;
    pgdrill_pg::archive::read_toc_items(&head.buf[..])
        .map_err(|e| Error::Integrity(format!("the dump's table of contents cannot be read: {e}")))
}
