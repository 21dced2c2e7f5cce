//! `manifest.json`: the record of one complete backup (docs/FORMAT.md). It is written last;
//! its presence is what makes a backup complete.

use crate::ids::{BackupId, DbName};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change; readers refuse versions they do not know.
pub const FORMAT_VERSION: u32 = 1;

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
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(Error::Integrity(match version {
                Some(v) => format!(
                    "{key} has format_version {v}, this pgdrill reads {FORMAT_VERSION}: upgrade pgdrill"
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
        if m.dump_object().is_none() {
            return Err(Error::Integrity(format!("{key} lists no dump object")));
        }
        Ok(m)
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

    /// The oldest server major the dump loads into: pg_dump's output loads into its own
    /// major and newer, not older (pg_dump 17+ emits `SET transaction_timeout`).
    pub fn restore_major(&self) -> u32 {
        (self.server.version_num / 10000).max(self.dump_major())
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
    fn a_dump_loads_into_the_newer_of_the_server_and_pg_dump_majors() {
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
        assert_eq!(m.restore_major(), 18);
        m.pg_dump.version = "15.18".into();
        assert_eq!(m.restore_major(), 15);
    }

    #[test]
    fn an_unknown_format_version_is_named_plainly() {
        let e = Manifest::from_json(br#"{"format_version": 2}"#, "m.json").expect_err("v2");
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (
                3,
                "m.json has format_version 2, this pgdrill reads 1: upgrade pgdrill".into()
            )
        );
        let e = Manifest::from_json(br#"{"format_version": "x"}"#, "m.json").expect_err("bad");
        assert!(!e.to_string().contains("None"), "{e}");
    }
}
