//! `restore --globals`: roles and tablespaces from `globals.sql.zst[.age]`, verified like the
//! dump, then run by psql against the target server before pg_restore (policies and grants
//! that name roles need them). Roles that already exist are kept: their "already exists"
//! errors are expected; any other error fails the restore before the data is touched.

use super::RestoreJob;
use crate::verify::decode_object;
use crate::{Error, Result};
use pgdrill_pg::ConnSpec;
use std::io::Write;
use std::process::{Command, Stdio};

/// Returns notes for the report (what already existed).
pub async fn restore(job: &RestoreJob<'_>, admin: &ConnSpec) -> Result<Vec<String>> {
    let object = job
        .manifest
        .objects
        .iter()
        .find(|o| o.kind == "globals")
        .ok_or_else(|| {
            Error::Invalid(format!(
                "backup {} has no globals: set globals = true in its [[database]] entry so backups include roles, or restore without --globals",
                job.manifest.backup_id
            ))
        })?
        .clone();
    job.read.progress.stage("globals");
    let (_, sql) = decode_object(job.store, job.manifest, &object, Vec::new(), &job.read).await?;
    let psql = job.tools.pick("psql", 0)?;
    let passfile = admin
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let mut cmd = Command::new(psql.bin("psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    admin.configure_child(&mut cmd, passfile.as_ref().map(|f| f.path()));
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot start {}: {e}", psql.bin("psql").display())))?;
    let output = tokio::task::spawn_blocking(move || {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&sql);
        }
        child.wait_with_output()
    })
    .await
    .map_err(|e| Error::Failed(format!("psql crashed: {e}")))?
    .map_err(|e| Error::Failed(format!("psql failed: {e}")))?;
    drop(passfile);
    let stderr = String::from_utf8_lossy(&output.stderr);
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
