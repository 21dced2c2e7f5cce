//! `manifest.json`: the record of one complete backup (docs/FORMAT.md). It is written last;
//! its presence is what makes a backup complete.

use crate::ids::{BackupId, DbName};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change; readers refuse versions they do not know.
pub const FORMAT_VERSION: u32 = 1;
/// The format version of a backup in the directory layout (`layout: "directory"`: a
/// parallel dump stored one object per file); older pgdrill versions refuse it.
pub const FORMAT_VERSION_DIRECTORY: u32 = 2;
/// `layout` of a parallel backup.
pub const LAYOUT_DIRECTORY: &str = "directory";

/// The largest object (and raw dump) size a manifest may record: 1 PiB, far above any
/// object store's object limit, far below what would overflow an offset computation.
pub const MAX_OBJECT_SIZE: u64 = 1 << 50;

/// An object name a manifest may list: one path segment of letters, digits, `.`, `_` and
/// `-`, not starting with a dot (so never `..`, never a path, never empty).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: ToolInfo,
    pub backup_id: BackupId,
    pub database: DbName,
    pub source: SourceInfo,
    pub server: ServerInfo,
    pub pg_dump: DumpTool,
    pub snapshot: SnapshotInfo,
    pub started_at: String,
    pub finished_at: String,
    /// Seconds per stage (`snapshot`, `dump`, `upload_finish`, ...).
    pub stage_seconds: BTreeMap<String, f64>,
    /// Bytes of the raw pg_dump stream and stored bytes over all objects.
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub compression: Compression,
    pub encryption: Encryption,
    pub objects: Vec<StoredObject>,
    pub content: Content,
    pub policy: serde_json::Value,
    pub host: String,
    /// `directory` for a parallel dump (`pg_dump -Fd`, one object per file of the archive,
    /// format version 2); absent for the single custom-format dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// With the directory layout: the most local disk the dump's spool took at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_peak_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

/// The source as it may be shown: no password, no secret parameters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    /// The source database's encoding and libc locale (since 0.1: absent in older
    /// manifests); a restore creates its database with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_collate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_ctype: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: u32,
    pub version_string: String,
    pub system_identifier: Option<String>,
    pub database_size_bytes: Option<i64>,
    pub in_recovery: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DumpTool {
    pub path: String,
    pub version: String,
    /// Arguments as run (no secret can be among them: connection settings go by env).
    pub args: Vec<String>,
    /// Whether the dump re-creates its database on restore (`--create` was given).
    #[serde(default)]
    pub creates_database: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotInfo {
    /// Whether pg_dump ran inside the exported snapshot the row counts come from.
    pub exported: bool,
    pub id: Option<String>,
    /// Snapshot time (RFC 3339 UTC): the point the backup restores to.
    pub time: String,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Encryption {
    /// `none` or `age`.
    pub scheme: String,
    /// Fingerprints (sha256 of the recipient string, first 16 hex) of X25519 recipients.
    pub recipient_fingerprints: Vec<String>,
    /// Whether the data is (also) decryptable with a passphrase.
    pub passphrase: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredObject {
    /// File name inside the backup folder (`dump.pgc.zst.age`).
    pub name: String,
    /// `dump` or `globals`.
    pub kind: String,
    pub size: u64,
    pub sha256: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    /// Directory layout: the file of the archive directory the object decodes to
    /// (`toc.dat`, `3366.dat`, `blob_16385.dat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Directory layout: the COPY rows of a table's data file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// What the dump holds, learned from the archive stream as it passed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Content {
    pub archive_version: String,
    pub tables: Vec<TableRows>,
    pub schemas: Vec<String>,
    pub extensions: Vec<String>,
    pub schema_fingerprint: String,
    pub large_objects: u64,
    pub toc_entries: usize,
    /// Set when the content could not be learned (row counts are then missing).
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableRows {
    pub schema: String,
    pub name: String,
    pub rows: u64,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and checks a stored manifest; anything off is an integrity failure (exit 3).
    pub fn from_json(bytes: &[u8], key: &str) -> Result<Manifest> {
        let probe: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::Integrity(format!(
                "{key} is not valid JSON ({e}); the backup cannot be trusted"
            ))
        })?;
        let version = probe.get("format_version").and_then(|v| v.as_u64());
        let known = [FORMAT_VERSION, FORMAT_VERSION_DIRECTORY].map(u64::from);
        if !version.is_some_and(|v| known.contains(&v)) {
            return Err(Error::Integrity(match version {
                Some(v) => format!(
                    "{key} has format_version {v}, this pgdrill reads {FORMAT_VERSION} and {FORMAT_VERSION_DIRECTORY}: upgrade pgdrill"
                ),
                None => format!(
                    "{key} has no valid format_version; the backup cannot be trusted"
                ),
            }));
        }
        let m: Manifest = serde_json::from_value(probe).map_err(|e| {
            Error::Integrity(format!(
                "{key} is not a valid manifest ({e}); the backup cannot be trusted"
            ))
        })?;
        if m.is_directory() != (m.format_version == FORMAT_VERSION_DIRECTORY) {
            return Err(Error::Integrity(format!(
                "{key} is an invalid manifest: format_version {} does not go with layout {:?}; the backup cannot be trusted",
                m.format_version, m.layout
            )));
        }
        if m.dump_object().is_none() {
            return Err(Error::Integrity(format!("{key} lists no dump object")));
        }
        m.check_bounds(key)?;
        Ok(m)
    }

    /// Every object name is a plain file name inside the backup's folder, and every size is
    /// below [`MAX_OBJECT_SIZE`]: nothing a manifest says may point a read elsewhere or size
    /// an allocation (the read path also checks each size against the stored object's).
    fn check_bounds(&self, key: &str) -> Result<()> {
        let invalid = |field: String, why: &str| {
            Err(Error::Integrity(format!(
                "{key} is an invalid manifest: {field} {why}; the backup cannot be trusted"
            )))
        };
        for (i, o) in self.objects.iter().enumerate() {
            if !is_plain_name(&o.name) {
                return invalid(
                    format!("objects[{i}].name {:?}", o.name),
                    "is not a plain object name inside the backup's folder",
                );
            }
            if self.objects[..i].iter().any(|p| p.name == o.name) {
                return invalid(format!("objects[{i}].name {:?}", o.name), "is listed twice");
            }
            if o.file.as_deref().is_some_and(|f| !is_plain_name(f))
                || (self.is_directory() && o.kind != "globals" && o.file.is_none())
            {
                return invalid(
                    format!("objects[{i}].file {:?}", o.file),
                    "is not a plain file name of the archive directory",
                );
            }
            for (field, v) in [("size", o.size), ("raw_size", o.raw_size)] {
                if v > MAX_OBJECT_SIZE {
                    return invalid(
                        format!("objects[{i}].{field} ({v})"),
                        "is larger than any object pgdrill writes",
                    );
                }
            }
        }
        for (field, v) in [
            ("raw_bytes", self.raw_bytes),
            ("stored_bytes", self.stored_bytes),
        ] {
            if v > MAX_OBJECT_SIZE {
                return invalid(
                    format!("{field} ({v})"),
                    "is larger than any backup pgdrill writes",
                );
            }
        }
        Ok(())
    }

    /// A parallel dump stored one object per file of a directory-format archive.
    pub fn is_directory(&self) -> bool {
        self.layout.as_deref() == Some(LAYOUT_DIRECTORY)
    }

    /// The archive file an object decodes to (directory layout): `file`, whose name is
    /// checked like an object's.
    pub fn archive_file(o: &StoredObject) -> Option<&str> {
        o.file.as_deref().filter(|f| is_plain_name(f))
    }

    pub fn dump_object(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.kind == "dump")
    }

    /// Major version of the pg_dump that made the dump (pg_restore must be at least this).
    pub fn dump_major(&self) -> u32 {
        self.pg_dump
            .version
            .split('.')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The oldest server major the dump loads into: the source server's, and 17 for a dump
    /// of pg_dump 17 or newer (its pg_restore sets `transaction_timeout`, which PostgreSQL
    /// 17 introduced; the dump itself holds only what the source server had).
    pub fn restore_major(&self) -> u32 {
        let tools_floor = if self.dump_major() >= 17 { 17 } else { 0 };
        (self.server.version_num / 10000).max(tools_floor)
    }

    pub fn encrypted(&self) -> bool {
        self.encryption.scheme != "none"
    }

    pub fn table_rows(&self) -> BTreeMap<(String, String), u64> {
        self.content
            .tables
            .iter()
            .map(|t| ((t.schema.clone(), t.name.clone()), t.rows))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_loads_into_the_server_major_and_17_for_pg_dump_17_or_newer() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "tool": {"name": "pgdrill", "version": "0"},
            "backup_id": "20261121T020000Z-7f3a", "database": "app",
            "source": {"url": "u", "host": "h", "port": 5432, "dbname": "app", "user": "u"},
            "server": {"version": "15.18", "version_num": 150018, "version_string": "", "system_identifier": null, "database_size_bytes": null, "in_recovery": false},
            "pg_dump": {"path": "p", "version": "18.6", "args": []},
            "snapshot": {"exported": true, "id": null, "time": "t", "note": null},
            "started_at": "s", "finished_at": "f", "stage_seconds": {}, "raw_bytes": 0, "stored_bytes": 0,
            "compression": {"algorithm": "zstd", "level": 3},
            "encryption": {"scheme": "none", "recipient_fingerprints": [], "passphrase": false},
            "objects": [], "content": {"archive_version": "1.16", "tables": [], "schemas": [], "extensions": [], "schema_fingerprint": "", "large_objects": 0, "toc_entries": 0},
            "policy": {}, "host": "h"
        }))
        .expect("manifest");
        assert_eq!(m.dump_major(), 18);
        assert_eq!(m.restore_major(), 17);
        m.server.version_num = 180001;
        assert_eq!(m.restore_major(), 18);
        m.server.version_num = 150018;
        m.pg_dump.version = "15.18".into();
        assert_eq!(m.restore_major(), 15);
    }

    fn directory_manifest(version: u32, layout: Option<&str>, file: Option<&str>) -> Vec<u8> {
        let mut object = serde_json::json!({"name": "toc.dat.zst", "kind": "dump", "size": 1,
            "sha256": "a", "raw_size": 1, "raw_sha256": "b"});
        if let Some(f) = file {
            object["file"] = f.into();
        }
        let mut m = serde_json::json!({
            "format_version": version, "tool": {"name": "pgdrill", "version": "0"},
            "backup_id": "20261121T020000Z-7f3a", "database": "app",
            "source": {"url": "u", "host": "h", "port": 5432, "dbname": "app", "user": "u"},
            "server": {"version": "15.18", "version_num": 150018, "version_string": "", "system_identifier": null, "database_size_bytes": null, "in_recovery": false},
            "pg_dump": {"path": "p", "version": "18.6", "args": []},
            "snapshot": {"exported": true, "id": null, "time": "t", "note": null},
            "started_at": "s", "finished_at": "f", "stage_seconds": {}, "raw_bytes": 0, "stored_bytes": 0,
            "compression": {"algorithm": "zstd", "level": 3},
            "encryption": {"scheme": "none", "recipient_fingerprints": [], "passphrase": false},
            "objects": [object], "content": {"archive_version": "1.16", "tables": [], "schemas": [], "extensions": [], "schema_fingerprint": "", "large_objects": 0, "toc_entries": 0},
            "policy": {}, "host": "h"
        });
        if let Some(l) = layout {
            m["layout"] = l.into();
        }
        serde_json::to_vec(&m).expect("json")
    }

    #[test]
    fn the_directory_layout_is_format_2_and_names_each_objects_file() {
        let m = Manifest::from_json(
            &directory_manifest(2, Some("directory"), Some("toc.dat")),
            "m.json",
        )
        .expect("format 2");
        assert!(m.is_directory());
        assert_eq!(Manifest::archive_file(&m.objects[0]), Some("toc.dat"));
        for (bytes, why) in [
            (
                directory_manifest(1, Some("directory"), Some("toc.dat")),
                "layout in format 1",
            ),
            (
                directory_manifest(2, None, Some("toc.dat")),
                "format 2 without layout",
            ),
            (directory_manifest(2, Some("directory"), None), "no file"),
            (
                directory_manifest(2, Some("directory"), Some("../x")),
                "a path",
            ),
        ] {
            let e = Manifest::from_json(&bytes, "m.json").expect_err(why);
            assert_eq!(e.exit_code(), 3, "{why}: {e}");
        }
        // The single layout keeps parsing as before.
        let single = Manifest::from_json(&directory_manifest(1, None, None), "m.json").expect("v1");
        assert!(!single.is_directory());
    }

    #[test]
    fn an_unknown_format_version_is_named_plainly() {
        let e = Manifest::from_json(br#"{"format_version": 3}"#, "m.json").expect_err("v3");
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (
                3,
                "m.json has format_version 3, this pgdrill reads 1 and 2: upgrade pgdrill".into()
            )
        );
        let e = Manifest::from_json(br#"{"format_version": "x"}"#, "m.json").expect_err("bad");
        assert!(!e.to_string().contains("None"), "{e}");
    }
}
