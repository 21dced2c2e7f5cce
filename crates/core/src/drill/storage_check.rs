//! `storage_objects`: a Supabase project's file metadata (`storage.objects` rows in the
//! restored database) against the uploads mirror's snapshot taken at the backup's time
//! (the newest at or before its snapshot time). Every row must have its file in the
//! snapshot with the size (and, where both sides have one, the ETag) the row records;
//! files no row names are counted as orphans (reported, not a failure).
//!
//! Memory: the snapshot's listing (already in memory) plus one flag per file; the rows are
//! streamed.

use super::checks::CheckCtx;
use crate::mirror::{self, MirrorName};
use crate::time::parse as parse_time;
use futures::{pin_mut, TryStreamExt};
use std::collections::HashMap;

type Outcome = std::result::Result<(bool, String), String>;

/// How a row's file is named in the mirror: `{bucket}` and `{name}` are replaced.
pub const DEFAULT_KEY: &str = "{bucket}/{name}";

pub async fn run(
    mirror_name: &str,
    key: &str,
    ctx: &mut CheckCtx<'_>,
) -> (String, String, Outcome) {
    (
        format!("storage.objects ↔ mirror {mirror_name} ({key})"),
        "every object row has its file, with its size and checksum".into(),
        check(mirror_name, key, ctx).await,
    )
}

/// An ETag as both sides write it: without quotes, lowercased.
fn etag(s: &str) -> String {
    s.trim().trim_matches('"').to_ascii_lowercase()
}

async fn check(mirror_name: &str, key: &str, ctx: &mut CheckCtx<'_>) -> Outcome {
    let name = MirrorName::parse(mirror_name)?;
    let at = parse_time(ctx.backup_time).ok_or("the backup has no snapshot time")?;
    let Some(snap) = mirror::snapshot_at(ctx.store, &name, at)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok((
            false,
            format!(
                "no snapshot of mirror {name} was taken at or before {}",
                ctx.backup_time
            ),
        ));
    };
    // key → (index into the snapshot, seen)
    let mut files: HashMap<&str, (usize, bool)> = snap
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.key.as_str(), (i, false)))
        .collect();
    let rows = ctx
        .client
        .query_raw(
            "select bucket_id, name, coalesce(metadata->>'size', metadata->>'contentLength'), \
             metadata->>'eTag' from storage.objects where name is not null",
            std::iter::empty::<&str>(),
        )
        .await
        .map_err(|e| {
            format!(
                "cannot read storage.objects: {}",
                pgdrill_pg::client::describe(&e)
            )
        })?;
    pin_mut!(rows);
    let (mut total, mut missing, mut wrong) = (0u64, Vec::new(), Vec::new());
    while let Some(r) = rows.try_next().await.map_err(|e| {
        format!(
            "cannot read storage.objects: {}",
            pgdrill_pg::client::describe(&e)
        )
    })? {
        total += 1;
        let bucket: Option<String> = r.get(0);
        let object: String = r.get(1);
        let size: Option<String> = r.get(2);
        let tag: Option<String> = r.get(3);
        let k = key
            .replace("{bucket}", bucket.as_deref().unwrap_or(""))
            .replace("{name}", &object);
        let Some((i, seen)) = files.get_mut(k.as_str()) else {
            missing.push(k);
            continue;
        };
        *seen = true;
        let f = &snap.objects[*i];
        if let Some(s) = size.as_deref().and_then(|s| s.parse::<u64>().ok()) {
            if s != f.size {
                wrong.push(format!(
                    "{k}: size {s} in the row, {} in the mirror",
                    f.size
                ));
                continue;
            }
        }
        if let (Some(a), Some(b)) = (tag.as_deref(), f.etag.as_deref()) {
            if etag(a) != etag(b) {
                wrong.push(format!(
                    "{k}: checksum (ETag) {a} in the row, {b} in the mirror"
                ));
            }
        }
    }
    let orphans = files.values().filter(|(_, seen)| !seen).count();
    ctx.log.push(format!(
        "storage.objects: {total} rows against mirror {name} snapshot {} ({}): {} missing, {} different, {orphans} orphan files",
        snap.snapshot_id,
        snap.time,
        missing.len(),
        wrong.len()
    ));
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if missing.is_empty() && wrong.is_empty() {
        return Ok((
            true,
            format!(
                "{total} object rows all have their file in snapshot {} ({} orphan files)",
                snap.snapshot_id, orphans
            ),
        ));
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} rows without a file ({})",
            missing.len(),
            sample(&missing)
        ));
    }
    if !wrong.is_empty() {
        parts.push(format!("{} files differ ({})", wrong.len(), sample(&wrong)));
    }
    Ok((
        false,
        format!(
            "snapshot {}: {}; {orphans} orphan files",
            snap.snapshot_id,
            parts.join("; ")
        ),
    ))
}
