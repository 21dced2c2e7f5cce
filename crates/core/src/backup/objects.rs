//! The objects beside the dump: its index, and the globals (pg_dumpall, or copied from an
//! earlier backup of this run).

use super::fanout::{Sizing, Targets};
use super::stream::stream_child;
use super::BackupJob;
use crate::frames::DumpIndex;
use crate::ids::BackupId;
use crate::layout;
use crate::manifest::StoredObject;
use crate::pipeline::HashWriter;
use crate::{Error, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;

/// Stores the dump index (JSON, through zstd and age like the dump).
pub(super) async fn upload_index(
    job: &BackupJob<'_>,
    targets: &Targets,
    id: &BackupId,
    index: &DumpIndex,
) -> Result<StoredObject> {
    let json = serde_json::to_vec(index)
        .map_err(|e| Error::Failed(format!("cannot encode the dump index: {e}")))?;
    let io_err = |e: std::io::Error| Error::Failed(format!("cannot encode the dump index: {e}"));
    let compressed = zstd::bulk::compress(&json, 3).map_err(io_err)?;
    let mut sink = job.keys.wrap(HashWriter::new(Vec::new()))?;
    sink.write_all(&compressed).map_err(io_err)?;
    let (bytes, stored) = sink.finish().map_err(io_err)?.finish();
    let name = layout::index_object_name(job.keys.enabled());
    targets
        .put(
            &layout::backup_object(&job.db.name, id, &name),
            Bytes::from(bytes),
        )
        .await?;
    Ok(StoredObject {
        name,
        kind: "index".into(),
        size: stored.bytes,
        sha256: stored.sha256,
        raw_size: json.len() as u64,
        raw_sha256: hex::encode(Sha256::digest(&json)),
        file: None,
        rows: None,
    })
}

/// Roles and tablespaces (`pg_dumpall --globals-only --no-role-passwords`), stored as
/// `globals.sql.zst[.age]` through the same stages as the dump.
pub(super) async fn globals_and_upload(
    job: &BackupJob<'_>,
    targets: &Arc<Targets>,
    id: &BackupId,
    server_major: u32,
) -> Result<StoredObject> {
    let install = job.tools.get().await.pick("pg_dumpall", server_major)?;
    let name = layout::globals_object_name(job.keys.enabled());
    let key = layout::backup_object(&job.db.name, id, &name);
    let mut args = vec!["--globals-only".to_string()];
    if !job.db.globals_passwords {
        args.push("--no-role-passwords".to_string());
    }
    args.extend([
        "--no-password".to_string(),
        format!("--database={}", job.source.dbname),
    ]);
    job.progress.stage("globals");
    let s = stream_child(
        job,
        targets,
        &key,
        Sizing {
            floor: 0,
            store_part: true,
            jobs: 1,
        },
        &install,
        "pg_dumpall",
        &args,
        false,
        std::future::ready(()),
    )
    .await?;
    Ok(StoredObject {
        name,
        kind: "globals".into(),
        size: s.stored.bytes,
        sha256: s.stored.sha256,
        raw_size: s.raw.bytes,
        raw_sha256: s.raw.sha256,
        file: None,
        rows: None,
    })
}

/// The globals object of an earlier backup of this run (same server, same keys), copied
/// into this backup: its digests are checked again on the way.
pub(super) async fn copy_globals(
    job: &BackupJob<'_>,
    targets: &Targets,
    id: &BackupId,
    from: &str,
    object: &StoredObject,
) -> Result<StoredObject> {
    job.progress.stage("globals");
    // From the first store that holds them (the earlier backup may be degraded).
    let mut read = Err(Error::Failed(format!(
        "the globals taken earlier in this run ({from}) are in no store: run the backup again"
    )));
    for i in targets.live() {
        read = targets.get(i).store.get(from).await.map_err(Error::from);
        if read.is_ok() {
            break;
        }
    }
    let bytes = read?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != object.size || digest != object.sha256 {
        return Err(Error::Integrity(format!(
            "the globals taken earlier in this run ({from}) changed in the store: run the backup again"
        )));
    }
    let key = layout::backup_object(&job.db.name, id, &object.name);
    targets.put(&key, bytes).await?;
    Ok(object.clone())
}
