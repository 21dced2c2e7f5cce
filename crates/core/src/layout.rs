//! Object keys of the store layout (docs/FORMAT.md). The only place that spells them.

use crate::ids::{BackupId, DbName, DrillId};

pub const MANIFEST: &str = "manifest.json";
pub const SHA256SUMS: &str = "SHA256SUMS";

pub fn backups_prefix(db: &DbName) -> String {
    format!("{db}/backups")
}

pub fn backup_dir(db: &DbName, id: &BackupId) -> String {
    format!("{db}/backups/{id}")
}

pub fn backup_object(db: &DbName, id: &BackupId, name: &str) -> String {
    format!("{db}/backups/{id}/{name}")
}

pub fn drills_prefix(db: &DbName) -> String {
    format!("{db}/drills")
}

pub fn drill_object(db: &DbName, id: &DrillId, name: &str) -> String {
    format!("{db}/drills/{id}/{name}")
}

/// Marks of running readers (restore, verify, export): `<db>/readers/<backup-id>/<owner>.json`.
pub fn read_marks_prefix(db: &DbName) -> String {
    format!("{db}/readers")
}

pub fn read_mark(db: &DbName, id: &BackupId, owner: &str) -> String {
    format!("{db}/readers/{id}/{owner}.json")
}

/// The per-database catalog (a cache of the manifests and drill results, docs/FORMAT.md).
pub fn catalog_key(db: &DbName) -> String {
    format!("{db}/catalog.json")
}

pub fn lease_key(db: &DbName) -> String {
    format!("{db}/lease.json")
}

/// The stored name of the dump: `dump.pgc.zst` plus `.age` when encrypted.
pub fn dump_object_name(encrypted: bool) -> String {
    if encrypted {
        "dump.pgc.zst.age".into()
    } else {
        "dump.pgc.zst".into()
    }
}

/// The dump index (frame and block offsets for ranged restores).
pub fn index_object_name(encrypted: bool) -> String {
    if encrypted {
        "dump.index.json.zst.age".into()
    } else {
        "dump.index.json.zst".into()
    }
}

pub fn globals_object_name(encrypted: bool) -> String {
    if encrypted {
        "globals.sql.zst.age".into()
    } else {
        "globals.sql.zst".into()
    }
}
