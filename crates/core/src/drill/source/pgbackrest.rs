//! `source = "pgbackrest"`: `pgbackrest info` picks the backup set (the newest, a named one,
//! or the newest that ended before the target time), `pgbackrest restore` fills the data
//! directory, and recovery fetches WAL with `pgbackrest archive-get`.

#[cfg(test)]
use super::choose;
use super::tool::{self, restore_word};
use super::{Fetch, Listed};
use crate::cancel::Cancel;
use crate::config::{PgBackRestSource, PhysicalDrill};
use crate::time;
use crate::{Error, Result};
use pgdrill_pg::cluster::RestoreDir;
use std::time::Duration;

const PROGRAM: &str = "pgbackrest";

/// `--stanza`, `--config` and the configured options, as every pgbackrest call takes them.
fn base_args(s: &PgBackRestSource) -> Vec<String> {
    let mut args = vec![format!("--stanza={}", s.stanza)];
    if let Some(c) = &s.config {
        args.push(format!("--config={}", c.display()));
    }
    for (k, v) in &s.options {
        args.push(format!("--{k}={v}"));
    }
    args
}

/// `pgBackRest 2.45`.
pub(super) async fn version(
    dir: &RestoreDir,
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<String> {
    let mut cmd = dir.command(PROGRAM);
    cmd.envs(env.iter().cloned()).arg("version");
    let r = tool::run(cmd, "pgbackrest version", Duration::from_secs(30), cancel).await?;
    match r.stdout.first() {
        Some(v) if r.ok => Ok(v.trim().to_string()),
        _ => Err(Error::Failed(format!(
            "pgbackrest version failed ({}): {}",
            r.status,
            r.tail(5)
        ))),
    }
}

/// The stanza's backups, oldest first (`pgbackrest info --output=json`).
pub(super) async fn list(
    s: &PgBackRestSource,
    dir: &RestoreDir,
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<Vec<Listed>> {
    let mut cmd = dir.command(PROGRAM);
    cmd.envs(env.iter().cloned())
        .args(base_args(s))
        .args(["--output=json", "info"]);
    let r = tool::run(cmd, "pgbackrest info", Duration::from_secs(300), cancel).await?;
    if !r.ok {
        return Err(Error::Failed(format!(
            "pgbackrest info of stanza {} failed ({}): {}; check [database.drill.pgbackrest]",
            s.stanza,
            r.status,
            r.tail(5)
        )));
    }
    parse_info(&r.stdout.join("\n"), &s.stanza)
}

fn parse_info(text: &str, stanza: &str) -> Result<Vec<Listed>> {
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Failed(format!("pgbackrest info printed no JSON ({e})")))?;
    let entry = doc
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == stanza))
        .ok_or_else(|| Error::Failed(format!("pgbackrest info does not know stanza {stanza}")))?;
    let mut out = Vec::new();
    for b in entry["backup"].as_array().into_iter().flatten() {
        let Some(label) = b["label"].as_str() else {
            continue;
        };
        let epoch = |k: &str| b["timestamp"][k].as_f64().and_then(time::from_epoch_secs);
        out.push(Listed {
            id: label.to_string(),
            start: epoch("start"),
            stop: epoch("stop"),
            usable: b["error"].as_bool() != Some(true),
        });
    }
    Ok(out)
}

/// The restore of the chosen set into the data directory.
pub(super) fn fetch(
    s: &PgBackRestSource,
    p: &PhysicalDrill,
    chosen: &Listed,
    dir: &RestoreDir,
) -> Fetch {
    let mut args = base_args(s);
    args.push(format!("--pg1-path={}", dir.data_dir().display()));
    args.push(format!("--set={}", chosen.id));
    // Tablespaces go beside the data directory, never to their paths on the source host
    // (which may be this host).
    args.push(format!(
        "--tablespace-map-all={}",
        dir.scratch().join("tablespaces").display()
    ));
    if let Some(t) = p.target_time {
        args.push("--type=time".into());
        args.push(format!("--target={}", time::pg_utc_millis(t)));
        args.push("--target-action=promote".into());
    }
    args.push("restore".into());
    let mut restore_command = vec![PROGRAM.to_string()];
    restore_command.extend(base_args(s));
    // archive-get checks that it runs in the data directory its pg1-path names.
    restore_command.push(format!("--pg1-path={}", dir.data_dir().display()));
    restore_command.push("archive-get".into());
    let restore_command = restore_command
        .iter()
        .map(|w| restore_word(w))
        .chain(["%f".to_string(), "\"%p\"".to_string()])
        .collect::<Vec<_>>()
        .join(" ");
    Fetch {
        program: PROGRAM.into(),
        args,
        what: format!("pgbackrest restore of set {}", chosen.id),
        timeout: Duration::from_secs(24 * 3600),
        restore_command: Some(restore_command),
        extra_env: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_lists_sets_with_their_times() {
        let text = r#"[{"name":"main","backup":[
            {"label":"20261206-090000F","timestamp":{"start":1796547600,"stop":1796547660},"type":"full"},
            {"label":"20261206-100000F","timestamp":{"start":1796551200,"stop":1796551260},"type":"full","error":true}
        ],"status":{"code":0}}]"#;
        let l = parse_info(text, "main").expect("info");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].id, "20261206-090000F");
        assert!(l[0].usable && !l[1].usable);
        assert_eq!(
            l[0].stop.map(time::rfc3339_secs).as_deref(),
            Some("2026-12-06T09:01:00Z")
        );
        assert!(parse_info(text, "other").is_err());
        // The newest usable set, or the newest before the target.
        assert_eq!(
            choose(&l, None, None).map(|c| c.id).as_deref(),
            Some("20261206-090000F")
        );
        assert!(choose(&l, None, time::parse("2026-12-06T09:00:30Z")).is_none());
    }
}
