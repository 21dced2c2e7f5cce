//! A backup's entry in `catalog.json` (format 2): the manifest fields `status`, `list`, the
//! dashboard, the API and the metrics read, and nothing else (docs/FORMAT.md). Format 1
//! kept whole manifests (without their object lists): 1.8 KB a backup in the fleet
//! benchmark and far more with a few hundred tables, 180 MB of JSON parsed by every fleet
//! read at 500 × 200; a summary is about 500 bytes whatever the table count.

use crate::ids::{BackupId, DbName};
use crate::manifest::{
    Compression, Content, DumpTool, Encryption, Manifest, ServerInfo, SnapshotInfo, SourceInfo,
    TableRows, ToolInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a catalog keeps of one manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupSummary {
    /// The manifest's own `format_version`.
    pub format_version: u32,
    pub snapshot: SnapshotInfo,
    pub started_at: String,
    pub finished_at: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_seconds: BTreeMap<String, f64>,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// How many tables `content.tables` lists (not which).
    pub tables: usize,
    pub encryption: Encryption,
    /// `server.version`.
    pub server_version: String,
    /// pgdrill's version that wrote the backup (`tool.version`).
    pub tool_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
}

impl BackupSummary {
    pub fn of(m: &Manifest) -> BackupSummary {
        BackupSummary {
            format_version: m.format_version,
            snapshot: m.snapshot.clone(),
            started_at: m.started_at.clone(),
            finished_at: m.finished_at.clone(),
            stage_seconds: m.stage_seconds.clone(),
            raw_bytes: m.raw_bytes,
            stored_bytes: m.stored_bytes,
            tables: m.content.tables.len(),
            encryption: m.encryption.clone(),
            server_version: m.server.version.clone(),
            tool_version: m.tool.version.clone(),
            layout: m.layout.clone(),
        }
    }

    /// The manifest as readers of the catalog get it: the fields above, the others empty
    /// (see [`super::Cached`]). `content.tables` holds one unnamed entry per table, so that
    /// its length is the table count.
    pub fn to_manifest(&self, db: &DbName, id: &BackupId) -> Manifest {
        let empty = String::new;
        Manifest {
            format_version: self.format_version,
            tool: ToolInfo {
                name: "pgdrill".into(),
                version: self.tool_version.clone(),
            },
            backup_id: id.clone(),
            database: db.clone(),
            source: SourceInfo {
                url: empty(),
                host: empty(),
                port: 0,
                dbname: db.to_string(),
                user: empty(),
                encoding: None,
                lc_collate: None,
                lc_ctype: None,
            },
            server: ServerInfo {
                version: self.server_version.clone(),
                version_num: 0,
                version_string: empty(),
                system_identifier: None,
                database_size_bytes: None,
                in_recovery: false,
            },
            pg_dump: DumpTool {
                path: empty(),
                version: empty(),
                args: Vec::new(),
                creates_database: false,
            },
            snapshot: self.snapshot.clone(),
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            stage_seconds: self.stage_seconds.clone(),
            raw_bytes: self.raw_bytes,
            stored_bytes: self.stored_bytes,
            compression: Compression {
                algorithm: empty(),
                level: 0,
            },
            encryption: self.encryption.clone(),
            objects: Vec::new(),
            content: Content {
                tables: vec![
                    TableRows {
                        schema: empty(),
                        name: empty(),
                        rows: 0,
                    };
                    self.tables
                ],
                ..Content::default()
            },
            policy: serde_json::Value::Null,
            host: empty(),
            layout: self.layout.clone(),
            spool_peak_bytes: None,
        }
    }
}
