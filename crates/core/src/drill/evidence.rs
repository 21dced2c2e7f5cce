//! Drill evidence: `result.json` (versioned, schema in docs/result.schema.json), `report.md`,
//! `report.html` (self-contained, no external assets) and `drill.log`, written to a local
//! folder and to the store under `<db>/drills/<drill-id>/`. Secrets are scrubbed from all.

use super::checks::CheckResult;
use crate::ids::{DbName, DrillId};
use crate::layout;
use crate::manifest::Manifest;
use crate::{Error, Result};
use bytes::Bytes;
use pgdrill_store::Store;
use serde::{Deserialize, Serialize};
use std::path::Path;

mod render;

pub use render::{human_duration, render_html, render_html_in, render_md, HtmlView};

pub const RESULT_SCHEMA_VERSION: u32 = 1;

/// A drill's verdict: it passed when every check, the RTO and the RPO did. Written as
/// `"pass"` / `"fail"` in result.json (FORMAT.md), as before it was a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    pub fn from_passed(passed: bool) -> Verdict {
        if passed {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    pub fn is_pass(self) -> bool {
        self == Verdict::Pass
    }

    /// `pass` or `fail`, as in result.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrillResult {
    pub schema_version: u32,
    pub drill_id: String,
    pub database: String,
    /// What was drilled (DESIGN.md §9): `pgdrill` (its own backups), `pgbackrest`,
    /// `barman-cloud` or `command`. Older results have none: `pgdrill`.
    #[serde(default = "pgdrill_source")]
    pub source: String,
    pub verdict: Verdict,
    pub started_at: String,
    pub finished_at: String,
    pub tool: ToolVersion,
    pub host: String,
    pub backup: BackupRef,
    pub target: TargetInfo,
    pub stages: Vec<Stage>,
    pub rpo: Target,
    pub rto: Target,
    pub checks: Vec<CheckResult>,
    /// Roles the restore created (NOLOGIN) because the backup names them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_roles: Vec<String>,
    /// Archive entries the restore left out, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    pub error: Option<String>,
    /// What choosing the backup passed over (a newer backup with a damaged manifest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub policy: serde_json::Value,
    /// A physical backup's recovery (sources other than `pgdrill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// `drill --major N`: an upgrade rehearsal, with both versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,
}

/// An upgrade rehearsal (`drill --major N`): the backup's source server and the newer major
/// it was restored into.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Upgrade {
    /// The source server's version (as the backup recorded it) and major.
    pub from_version: String,
    pub from_major: u32,
    /// The major asked for, and the restored server's version (null if it never started).
    pub to_major: u32,
    pub to_version: Option<String>,
}

fn pgdrill_source() -> String {
    "pgdrill".into()
}

/// How a physical backup was fetched and recovered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    /// The tool that fetched it (`pgBackRest 2.45`, `barman-cloud-restore 3.4.0`, the command).
    pub tool: String,
    /// `recovery_target_time` asked for, if any.
    pub target_time: Option<String>,
    /// The last transaction replayed (`pg_last_xact_replay_timestamp()`), or else the
    /// backup's stop time: the point the restored data stands at, which the RPO is taken from.
    pub reached: Option<String>,
    /// Where `reached` came from: `replay`, `backup stop` or `backup label`.
    pub reached_from: Option<String>,
    pub fetch_seconds: f64,
    pub recovery_seconds: f64,
}

impl DrillResult {
    /// Whether the drill passed (every check, RTO and RPO).
    pub fn passed(&self) -> bool {
        self.verdict.is_pass()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolVersion {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupRef {
    pub id: String,
    /// The store the backup was read from (`[[store]] name`; "default" for one `[store]`).
    /// Older results, and drills of another tool's backups, have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    pub snapshot_time: String,
    pub finished_at: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub objects: Vec<ObjectDigest>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObjectDigest {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub raw_sha256: String,
}

impl BackupRef {
    pub fn from_manifest(m: &Manifest) -> Self {
        BackupRef {
            id: m.backup_id.to_string(),
            store: None,
            snapshot_time: m.snapshot.time.clone(),
            finished_at: m.finished_at.clone(),
            server_version: m.server.version.clone(),
            pg_dump_version: m.pg_dump.version.clone(),
            objects: m
                .objects
                .iter()
                .map(|o| ObjectDigest {
                    name: o.name.clone(),
                    size: o.size,
                    sha256: o.sha256.clone(),
                    raw_sha256: o.raw_sha256.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    /// `ephemeral` (throwaway local cluster) or `server` (a fresh database on a configured server).
    pub kind: String,
    pub url: String,
    pub server_version: Option<String>,
    pub kept: bool,
}

/// One stage on the timeline: when it started (seconds after the drill started) and how long.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    pub name: String,
    pub start_seconds: f64,
    pub seconds: f64,
}

impl Stage {
    pub fn new(name: &str, start: f64, seconds: f64) -> Self {
        Stage {
            name: name.into(),
            start_seconds: start.max(0.0),
            seconds: seconds.max(0.0),
        }
    }
}

/// A measured value against its policy target; `passed` is `None` when no target is set.
/// The values are in minutes (as the policy is written) and, for machines, in seconds
/// (`seconds`, `target_seconds`, `worst_gap_seconds`: the same values, absent from results
/// written before they were added).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Target {
    pub minutes: Option<f64>,
    pub target_minutes: Option<u64>,
    pub passed: Option<bool>,
    /// RPO only: the largest gap between consecutive complete backups in the retention window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_gap_minutes: Option<f64>,
    #[serde(default)]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub target_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_gap_seconds: Option<f64>,
}

impl Target {
    pub fn evaluate(minutes: Option<f64>, target: Option<u64>) -> Self {
        let passed = match (minutes, target) {
            (Some(m), Some(t)) => Some(m <= t as f64),
            (None, Some(_)) => Some(false),
            _ => None,
        };
        Target {
            minutes,
            target_minutes: target,
            passed,
            worst_gap_minutes: None,
            seconds: minutes.map(|m| m * 60.0),
            target_seconds: target.map(|t| t.saturating_mul(60)),
            worst_gap_seconds: None,
        }
    }

    /// RPO: the worst gap between consecutive backups, in minutes.
    pub fn set_worst_gap(&mut self, minutes: Option<f64>) {
        self.worst_gap_minutes = minutes;
        self.worst_gap_seconds = minutes.map(|m| m * 60.0);
    }
}

/// Replaces `secrets` in everything a check or the drill reported (printed and written).
pub fn scrub_result(r: &mut DrillResult, secrets: &[String]) {
    for c in &mut r.checks {
        for field in [&mut c.subject, &mut c.expected, &mut c.actual] {
            *field = scrub(std::mem::take(field), secrets);
        }
    }
    if let Some(e) = r.error.take() {
        r.error = Some(scrub(e, secrets));
    }
}

fn scrub(text: String, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text, |t, s| t.replace(s.as_str(), "***"))
}

/// Writes the four evidence files locally, then to the store.
pub async fn write_evidence(
    store: &Store,
    db: &DbName,
    id: &DrillId,
    r: &DrillResult,
    log: &[String],
    dir: &Path,
    secrets: &[String],
) -> Result<()> {
    let mut json = serde_json::to_string_pretty(r).unwrap_or_default();
    json.push('\n');
    let files = [
        ("result.json", scrub(json, secrets)),
        ("report.md", scrub(render_md(r), secrets)),
        ("report.html", scrub(render_html(r), secrets)),
        ("drill.log", scrub(log.join("\n") + "\n", secrets)),
    ];
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Failed(format!(
            "cannot create the report folder {}: {e}",
            dir.display()
        ))
    })?;
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).map_err(|e| {
            Error::Failed(format!("cannot write {}: {e}", dir.join(name).display()))
        })?;
    }
    for (name, text) in files {
        store
            .put(&layout::drill_object(db, id, name), Bytes::from(text))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::render::{fmt_gap, fmt_min, verdict_word};
    use super::*;

    #[test]
    fn targets_carry_seconds_beside_minutes() {
        let mut t = Target::evaluate(Some(1.5), Some(60));
        t.set_worst_gap(Some(2.0));
        assert_eq!(t.seconds, Some(90.0));
        assert_eq!(t.target_seconds, Some(3600));
        assert_eq!(t.worst_gap_seconds, Some(120.0));
        let j = serde_json::to_value(&t).expect("json");
        assert_eq!(j["seconds"], 90.0);
        assert_eq!(j["target_seconds"], 3600);
        // A result written before the seconds were added still reads.
        let old: Target =
            serde_json::from_str(r#"{"minutes":1.0,"target_minutes":5,"passed":true}"#)
                .expect("old");
        assert_eq!((old.minutes, old.seconds), (Some(1.0), None));
    }

    #[test]
    fn verdict_is_written_as_before_it_was_a_type() {
        assert_eq!(
            serde_json::to_string(&Verdict::Pass).expect("json"),
            "\"pass\""
        );
        assert_eq!(
            serde_json::to_string(&Verdict::Fail).expect("json"),
            "\"fail\""
        );
        let v: Verdict = serde_json::from_str("\"fail\"").expect("read");
        assert_eq!(v, Verdict::Fail);
        assert!(Verdict::from_passed(true).is_pass());
        assert_eq!(Verdict::Pass.to_string(), "pass");
    }

    /// A restore slower than the RTO fails it (the CLI test cannot make a restore take a
    /// minute, and `rto_minutes = 0` is refused at config load).
    #[test]
    fn durations_under_a_minute_keep_their_tenths() {
        assert_eq!(fmt_min(Some(0.4 / 60.0)), "0.4 s");
        assert_eq!(fmt_min(Some(1.5)), "1.5 min");
        assert_eq!(fmt_gap(None), "n/a (fewer than two backups)");
    }

    #[test]
    fn missed_rto_fails_and_is_reported_missed() {
        let slow = Target::evaluate(Some(1.5), Some(1));
        assert_eq!(slow.passed, Some(false));
        assert_eq!(verdict_word(slow.passed), "MISSED");
        assert_eq!(Target::evaluate(Some(0.5), Some(1)).passed, Some(true));
        assert_eq!(Target::evaluate(None, Some(1)).passed, Some(false));
        assert_eq!(Target::evaluate(Some(0.5), None).passed, None);
    }
}
