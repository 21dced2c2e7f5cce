//! `restore --globals`: roles and tablespaces from `globals.sql.zst[.age]`, verified like the
//! dump, then run by psql against the target server before pg_restore (policies and grants
//! that name roles need them). Roles that already exist are kept: their "already exists"
//! errors are expected; any other error fails the restore before the data is touched.

use super::RestoreJob;
use crate::manifest::StoredObject;
use crate::verify::decode_object;
use crate::{Error, Result};
use pgdrill_pg::child;
use pgdrill_pg::ConnSpec;
use std::io::Write;
use std::process::Stdio;

/// The backup's globals object, or why `--globals` cannot be honoured.
pub(super) fn object(job: &RestoreJob<'_>) -> Result<StoredObject> {
    job.manifest
        .objects
        .iter()
        .find(|o| o.kind == "globals")
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "backup {} has no globals: set globals = true in its [[database]] entry so backups include roles, or restore without --globals",
                job.manifest.backup_id
            ))
        })
}

/// Returns notes for the report (what already existed).
pub async fn restore(job: &RestoreJob<'_>, admin: &ConnSpec) -> Result<Vec<String>> {
    let object = object(job)?;
    job.read.progress.stage("globals");
    let (_, sql) = decode_object(job.store, job.manifest, &object, Vec::new(), &job.read).await?;
    let psql = job.tools.pick("psql", 0)?;
    let passfile = admin
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let mut cmd = child::command(
        &psql.bin("psql"),
        admin,
        passfile.as_ref().map(|f| f.path()),
    );
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"])
        .stdin(Stdio::piped());
    let mut proc =
        child::Child::spawn(cmd, child::Keep::MANY).map_err(|e| Error::Failed(e.to_string()))?;
    let stdin = proc.take_stdin();
    // Written on a thread of its own: psql's stderr is read meanwhile (no full pipe).
    let writer = tokio::task::spawn_blocking(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&sql);
        }
    });
    let mut cancel = job.read.cancel.clone();
    let status = tokio::select! {
        s = proc.wait() => s,
        _ = cancel.cancelled() => {
            proc.stop(std::time::Duration::from_secs(5)).await;
            return Err(super::interrupted());
        }
    };
    let _ = writer.await;
    status.map_err(|e| Error::Failed(format!("psql failed: {e}")))?;
    drop(passfile);
    let stderr = proc.stderr_lines().join("\n");
    let (expected, failing) = classify(&stderr);
    if !failing.is_empty() {
        return Err(Error::Failed(format!(
            "restoring roles and globals failed ({} error(s)), nothing else was restored: {}",
            failing.len(),
            failing
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ;; ")
        )));
    }
    Ok(expected
        .iter()
        .map(|l| format!("globals: kept what the target already had ({l})"))
        .collect())
}

/// Splits psql's error lines into expected ones (an object that already exists, the
/// restoring role itself) and real failures.
fn classify(stderr: &str) -> (Vec<String>, Vec<String>) {
    let mut expected = Vec::new();
    let mut failing = Vec::new();
    for line in stderr.lines().filter(|l| l.contains("ERROR:")) {
        let msg = line
            .split("ERROR:")
            .nth(1)
            .unwrap_or(line)
            .trim()
            .to_string();
        if msg.contains("already exists") || msg.contains("current user cannot be dropped") {
            expected.push(msg);
        } else {
            failing.push(msg);
        }
    }
    (expected, failing)
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn existing_roles_are_expected_other_errors_fail() {
        let stderr = "psql:<stdin>:14: ERROR:  role \"postgres\" already exists\n\
                      psql:<stdin>:20: ERROR:  permission denied to create role\n";
        let (ok, bad) = classify(stderr);
        assert_eq!(ok, vec!["role \"postgres\" already exists"]);
        assert_eq!(bad, vec!["permission denied to create role"]);
    }
}
