//! The manifest of a finished backup, built from what the stages measured.

use super::{hostname, BackupJob, StreamResult};
use crate::ids::BackupId;
use crate::manifest::{
    Compression, Content, DumpTool, Encryption, Manifest, ServerInfo, SnapshotInfo, SourceInfo,
    StoredObject, TableRows, ToolInfo, FORMAT_VERSION,
};
use pgdrill_pg::archive::ArchiveSummary;
use pgdrill_pg::PgInstall;
use std::collections::BTreeMap;

pub(super) struct Times {
    pub(super) started_at: String,
    pub(super) finished_at: String,
    pub(super) stage_seconds: BTreeMap<String, f64>,
}

pub(super) fn build_manifest(
    job: &BackupJob<'_>,
    id: &BackupId,
    install: &PgInstall,
    stream: StreamResult,
    summary: std::result::Result<ArchiveSummary, String>,
    times: Times,
) -> Manifest {
    let content = match summary {
        Ok(s) => Content {
            archive_version: s.archive_version,
            tables: s
                .tables
                .into_iter()
                .map(|t| TableRows {
                    schema: t.schema,
                    name: t.name,
                    rows: t.rows,
                })
                .collect(),
            schemas: s.schemas,
            extensions: s.extensions,
            schema_fingerprint: s.schema_fingerprint,
            large_objects: s.large_objects,
            toc_entries: s.entries,
            note: None,
        },
        Err(e) => Content {
            note: Some(format!(
                "the archive could not be parsed, so no row counts were recorded: {e}"
            )),
            ..Content::default()
        },
    };
    let creates_database = job
        .db
        .pg_dump_args
        .iter()
        .any(|a| a == "--create" || a == "-C");
    Manifest {
        format_version: FORMAT_VERSION,
        tool: ToolInfo {
            name: "pgdrill".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        backup_id: id.clone(),
        database: job.db.name.clone(),
        source: SourceInfo {
            url: job.source.redacted(),
            host: job.source.host.clone(),
            port: job.source.port,
            dbname: job.source.dbname.clone(),
            user: job.source.user.clone(),
            encoding: stream.facts.encoding.clone(),
            lc_collate: stream.facts.lc_collate.clone(),
            lc_ctype: stream.facts.lc_ctype.clone(),
        },
        server: ServerInfo {
            version: stream.facts.version.to_string(),
            version_num: stream.facts.version_num,
            version_string: stream.facts.version_string.clone(),
            system_identifier: stream.facts.system_identifier.clone(),
            database_size_bytes: stream.facts.database_size_bytes,
            in_recovery: stream.facts.in_recovery,
        },
        pg_dump: DumpTool {
            path: install.bin("pg_dump").display().to_string(),
            version: install.version.to_string(),
            args: stream.args.clone(),
            creates_database,
        },
        snapshot: SnapshotInfo {
            exported: stream.snapshot_id.is_some(),
            id: stream.snapshot_id.clone(),
            time: stream.snapshot_time.clone(),
            note: stream.snapshot_note.clone(),
        },
        started_at: times.started_at,
        finished_at: times.finished_at,
        stage_seconds: times.stage_seconds,
        raw_bytes: stream.raw.bytes,
        stored_bytes: stream.stored.bytes,
        compression: Compression {
            algorithm: "zstd".into(),
            level: job.compression_level,
        },
        encryption: Encryption {
            scheme: if job.keys.enabled() {
                "age".into()
            } else {
                "none".into()
            },
            recipient_fingerprints: job.keys.fingerprints(),
            passphrase: job.keys.has_passphrase(),
        },
        objects: vec![StoredObject {
            name: stream.object_name.clone(),
            kind: "dump".into(),
            size: stream.stored.bytes,
            sha256: stream.stored.sha256.clone(),
            raw_size: stream.raw.bytes,
            raw_sha256: stream.raw.sha256.clone(),
            file: None,
            rows: None,
        }],
        content,
        policy: serde_json::to_value(job.policy).unwrap_or_default(),
        host: hostname(),
        layout: None,
        spool_peak_bytes: None,
    }
}
