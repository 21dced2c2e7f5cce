//! One line of a listing, as `list --json`, `drills --json` and the daemon's `/api/v1/`
//! print it (the shapes `docs/schemas/` fixes): sizes in bytes, durations in seconds.

use crate::drill::evidence::DrillResult;
use crate::manifest::Manifest;
use serde_json::{json, Value};

/// `1.5 MiB`: defined in [`crate::progress`] (a leaf module), re-exported for listings.
pub use crate::progress::human_bytes;

/// A complete backup (`list --json`'s `backups[]`, `/api/v1/backups`).
pub fn backup(m: &Manifest) -> Value {
    json!({
        "backup_id": m.backup_id,
        "database": m.database,
        "snapshot_time": m.snapshot.time,
        "finished_at": m.finished_at,
        "duration_seconds": m.stage_seconds.get("total"),
        "raw_bytes": m.raw_bytes,
        "stored_bytes": m.stored_bytes,
        "tables": m.content.tables.len(),
        "encrypted": m.encrypted(),
        "server_version": m.server.version,
    })
}

/// A drill (`drills --json`'s `drills[]`, `/api/v1/drills`). RTO and RPO in seconds (the
/// evidence, `result.json`, keeps its own minutes).
pub fn drill(r: &DrillResult) -> Value {
    let secs = |m: Option<f64>| m.map(|m| m * 60.0);
    let target = |m: Option<u64>| m.map(|m| m.saturating_mul(60));
    json!({
        "drill_id": r.drill_id,
        "database": r.database,
        "source": r.source,
        "verdict": r.verdict,
        "backup_id": r.backup.id,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "rto_seconds": secs(r.rto.minutes),
        "rto_target_seconds": target(r.rto.target_minutes),
        "rto_passed": r.rto.passed,
        "rpo_seconds": secs(r.rpo.minutes),
        "rpo_target_seconds": target(r.rpo.target_minutes),
        "rpo_passed": r.rpo.passed,
        "checks_passed": r.checks.iter().filter(|c| c.passed).count(),
        "checks": r.checks.len(),
        "created_roles": r.created_roles,
        "skipped": r.skipped,
        "error": r.error,
    })
}
