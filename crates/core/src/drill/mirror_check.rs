//! `mirror_parity`: restore the uploads snapshot that matches the backup (the newest taken at
//! or before the backup's snapshot time) and check that every file came back byte for byte.
//! The destination is a throwaway folder unless the check names one (`to = "s3://..."`).

use super::checks::CheckCtx;
use crate::mirror::{self, config::default_options, Location, MirrorName, RestoreOptions};
use crate::progress::Progress;
use crate::time::parse as parse_time;

type Outcome = std::result::Result<(bool, String), String>;

pub async fn run(
    mirror_name: &str,
    to: Option<&str>,
    ctx: &mut CheckCtx<'_>,
) -> (String, String, Outcome) {
    let subject = match to {
        Some(t) => format!("mirror {mirror_name} → {t}"),
        None => format!("mirror {mirror_name} → a throwaway folder"),
    };
    let expected = "the snapshot at the backup's time restores with checksum parity".to_string();
    (subject, expected, check(mirror_name, to, ctx).await)
}

async fn check(mirror_name: &str, to: Option<&str>, ctx: &mut CheckCtx<'_>) -> Outcome {
    let name = MirrorName::parse(mirror_name)?;
    let at = parse_time(ctx.backup_time).ok_or("the backup has no snapshot time")?;
    let snap = mirror::snapshot_at(ctx.store, &name, at)
        .await
        .map_err(|e| e.to_string())?;
    let Some(snap) = snap else {
        return Ok((
            false,
            format!(
                "no snapshot of mirror {name} was taken at or before {}",
                ctx.backup_time
            ),
        ));
    };
    let section = ctx.mirrors.iter().find(|m| m.name == mirror_name);
    let options = match section {
        Some(s) => s.source_options(ctx.env).map_err(|e| e.to_string())?,
        None => default_options(ctx.env),
    };
    let tmp =
        tempfile::tempdir().map_err(|e| format!("cannot create a folder to restore into: {e}"))?;
    let url = to
        .map(str::to_string)
        .unwrap_or_else(|| tmp.path().display().to_string());
    let dest = Location::open(&url, &options).map_err(|e| e.to_string())?;
    let opts = RestoreOptions {
        delete: false,
        force: false,
        store_place: None,
        sources: Vec::new(),
        concurrency: 8,
    };
    let restored = mirror::restore_snapshot(ctx.store, &snap, &dest, &opts, &Progress::default())
        .await
        .map_err(|e| e.to_string())?;
    let parity = mirror::parity_with(&snap, &dest, 8)
        .await
        .map_err(|e| e.to_string())?;
    ctx.log.push(format!(
        "mirror {name}: snapshot {} ({}) restored {} objects to {url}",
        snap.snapshot_id, snap.time, restored.objects
    ));
    if parity.is_ok() {
        Ok((
            true,
            format!(
                "snapshot {} ({}): {} objects restored, all match",
                snap.snapshot_id, snap.time, parity.matching
            ),
        ))
    } else {
        Ok((
            false,
            format!(
                "snapshot {}: {} missing, {} extra, {} different",
                snap.snapshot_id,
                parity.missing.len(),
                parity.extra.len(),
                parity.different.len()
            ),
        ))
    }
}
