//! `source = "barman-cloud"`: `barman-cloud-backup-list` picks the backup (the newest, a named
//! one, or the newest that ended before the target time), `barman-cloud-restore` fills the
//! data directory, and recovery fetches WAL with `barman-cloud-wal-restore`. Credentials
//! reach barman (and the restored server's `restore_command`) as the standard AWS variables,
//! read from the variables the settings name; never argv.

use super::tool::{self, restore_word};
use super::{Fetch, Listed};
use crate::cancel::Cancel;
use crate::config::{BarmanCloudSource, Env};
use crate::time;
use crate::{Error, Result};
use pgdrill_pg::cluster::RestoreDir;
use std::time::Duration;

/// `--cloud-provider` and `--endpoint-url`, as every barman-cloud call takes them.
fn cloud_args(s: &BarmanCloudSource) -> Vec<String> {
    let mut args = vec![format!(
        "--cloud-provider={}",
        s.cloud_provider.as_deref().unwrap_or("aws-s3")
    )];
    if let Some(e) = &s.endpoint_url {
        args.push(format!("--endpoint-url={e}"));
    }
    args
}

/// The AWS variables barman reads, from the variables the settings name (exit 2 when one
/// named is unset).
pub(super) fn credentials(s: &BarmanCloudSource, env: &Env) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, from) in [
        ("AWS_ACCESS_KEY_ID", &s.access_key_id_env),
        ("AWS_SECRET_ACCESS_KEY", &s.secret_access_key_env),
    ] {
        match from {
            Some(var) => {
                let v = env.get(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    Error::Invalid(format!(
                        "[database.drill.barman_cloud] names {var} for {name}, which is not set; export it"
                    ))
                })?;
                out.push((name.to_string(), v.clone()));
            }
            None => {
                if let Some(v) = env.get(name) {
                    out.push((name.to_string(), v.clone()));
                }
            }
        }
    }
    for name in [
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CA_BUNDLE",
    ] {
        if let Some(v) = env.get(name) {
            out.push((name.to_string(), v.clone()));
        }
    }
    let region = s
        .region
        .clone()
        .or_else(|| env.get("AWS_REGION").cloned())
        .or_else(|| env.get("AWS_DEFAULT_REGION").cloned());
    if let Some(r) = region {
        out.push(("AWS_DEFAULT_REGION".into(), r));
    }
    // No instance-metadata lookups from a laptop or CI runner (they wait seconds to fail).
    out.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    Ok(out)
}

/// `barman-cloud-backup-list 3.4.0` style version line.
pub(super) async fn version(
    dir: &RestoreDir,
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<String> {
    let mut cmd = dir.command("barman-cloud-restore");
    cmd.envs(env.iter().cloned()).arg("--version");
    let r = tool::run(
        cmd,
        "barman-cloud-restore --version",
        Duration::from_secs(60),
        cancel,
    )
    .await?;
    let line = r
        .stdout
        .iter()
        .chain(&r.stderr)
        .find(|l| !l.trim().is_empty())
        .cloned();
    match line {
        Some(v) if r.ok => Ok(v.trim().to_string()),
        _ => Err(Error::Failed(format!(
            "barman-cloud-restore --version failed ({}): {}",
            r.status,
            r.tail(5)
        ))),
    }
}

/// The server's backups, oldest first.
pub(super) async fn list(
    s: &BarmanCloudSource,
    dir: &RestoreDir,
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<Vec<Listed>> {
    let mut cmd = dir.command("barman-cloud-backup-list");
    cmd.envs(env.iter().cloned())
        .args(cloud_args(s))
        .args(["--format", "json"])
        .arg(&s.url)
        .arg(&s.server_name);
    let r = tool::run(
        cmd,
        "barman-cloud-backup-list",
        Duration::from_secs(300),
        cancel,
    )
    .await?;
    if !r.ok {
        return Err(Error::Failed(format!(
            "barman-cloud-backup-list of {} {} failed ({}): {}; check [database.drill.barman_cloud] and its credentials",
            s.url,
            s.server_name,
            r.status,
            r.tail(5)
        )));
    }
    parse_list(&r.stdout.join("\n"))
}

fn parse_list(text: &str) -> Result<Vec<Listed>> {
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Failed(format!("barman-cloud-backup-list printed no JSON ({e})")))?;
    let mut out = Vec::new();
    for b in doc["backups_list"].as_array().into_iter().flatten() {
        let Some(id) = b["backup_id"].as_str() else {
            continue;
        };
        // barman writes ctime() text without a zone: the backup host's clock, read as UTC.
        let at = |k: &str| b[k].as_str().and_then(time::parse_civil_utc);
        out.push(Listed {
            id: id.to_string(),
            start: at("begin_time"),
            stop: at("end_time"),
            usable: b["status"].as_str().is_none_or(|s| s == "DONE"),
        });
    }
    // Backup ids are times: sorted, oldest first.
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

pub(super) fn fetch(s: &BarmanCloudSource, chosen: &Listed, dir: &RestoreDir) -> Fetch {
    let mut args = cloud_args(s);
    args.extend([
        s.url.clone(),
        s.server_name.clone(),
        chosen.id.clone(),
        dir.data_dir().display().to_string(),
    ]);
    let mut rc = vec!["barman-cloud-wal-restore".to_string()];
    rc.extend(cloud_args(s));
    rc.extend([s.url.clone(), s.server_name.clone()]);
    let restore_command = rc
        .iter()
        .map(|w| restore_word(w))
        .chain(["%f".to_string(), "%p".to_string()])
        .collect::<Vec<_>>()
        .join(" ");
    Fetch {
        program: "barman-cloud-restore".into(),
        args,
        what: format!("barman-cloud-restore of backup {}", chosen.id),
        timeout: Duration::from_secs(24 * 3600),
        restore_command: Some(restore_command),
        extra_env: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_listing_is_read_oldest_first() {
        let text = r#"{"backups_list": [
            {"backup_id": "20261206T100000", "end_time": "Sun Dec  6 10:00:05 2026", "begin_time": "Sun Dec  6 10:00:00 2026", "status": "DONE"},
            {"backup_id": "20261206T090000", "end_time": "Sun Dec  6 09:00:05 2026", "begin_time": "Sun Dec  6 09:00:00 2026", "status": "FAILED"}
        ]}"#;
        let l = parse_list(text).expect("list");
        assert_eq!(l[0].id, "20261206T090000");
        assert!(!l[0].usable && l[1].usable);
        assert_eq!(
            l[1].stop.map(time::rfc3339_secs).as_deref(),
            Some("2026-12-06T10:00:05Z")
        );
    }
}
