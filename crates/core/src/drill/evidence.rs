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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Target {
    pub minutes: Option<f64>,
    pub target_minutes: Option<u64>,
    pub passed: Option<bool>,
    /// RPO only: the largest gap between consecutive complete backups in the retention window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_gap_minutes: Option<f64>,
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
        }
    }
}

fn verdict_word(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "no target",
    }
}

/// The worst gap between backups, or why there is none (one backup has no gap).
fn fmt_gap(m: Option<f64>) -> String {
    match m {
        Some(_) => fmt_min(m),
        None => "n/a (fewer than two backups)".into(),
    }
}

fn fmt_min(m: Option<f64>) -> String {
    match m {
        Some(m) if m < 1.0 => format!("{:.1} s", m * 60.0),
        Some(m) if m < 120.0 => format!("{m:.1} min"),
        Some(m) => format!("{:.1} h", m / 60.0),
        None => "n/a".into(),
    }
}

pub fn render_md(r: &DrillResult) -> String {
    let mut s = String::new();
    let passed = r.checks.iter().filter(|c| c.passed).count();
    s.push_str(&format!(
        "# Restore drill {} — {}\n\n",
        r.drill_id,
        if r.passed() { "PASS" } else { "FAIL" }
    ));
    s.push_str(&format!(
        "**{}**: backup `{}` (snapshot {}) restored into {}; {}/{} checks passed; RTO {} ({}); RPO {} ({}).\n\n",
        r.database,
        r.backup.id,
        r.backup.snapshot_time,
        if r.target.kind == "ephemeral" { "a throwaway local cluster" } else { "a fresh database on the target server" },
        passed,
        r.checks.len(),
        fmt_min(r.rto.minutes),
        verdict_word(r.rto.passed),
        fmt_min(r.rpo.minutes),
        verdict_word(r.rpo.passed),
    ));
    if let Some(e) = &r.error {
        s.push_str(&format!("> **Error:** {e}\n\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("> **Warning:** {w}\n\n"));
    }
    s.push_str("## Targets\n\n| measure | value | target | verdict |\n|---|---|---|---|\n");
    s.push_str(&format!(
        "| RTO (download + restore) | {} | {} | {} |\n",
        fmt_min(r.rto.minutes),
        r.rto
            .target_minutes
            .map(|t| format!("{t} min"))
            .unwrap_or("—".into()),
        verdict_word(r.rto.passed)
    ));
    s.push_str(&format!(
        "| RPO (drill start − snapshot) | {} | {} | {} |\n",
        fmt_min(r.rpo.minutes),
        r.rpo
            .target_minutes
            .map(|t| format!("{t} min"))
            .unwrap_or("—".into()),
        verdict_word(r.rpo.passed)
    ));
    s.push_str(&format!(
        "| worst gap between backups | {} | | |\n\n",
        fmt_gap(r.rpo.worst_gap_minutes)
    ));
    s.push_str("## Timeline\n\n| stage | starts at | duration |\n|---|---|---|\n");
    for st in &r.stages {
        s.push_str(&format!(
            "| {} | +{:.1} s | {:.1} s |\n",
            st.name, st.start_seconds, st.seconds
        ));
    }
    s.push_str("\n## Checks\n\n| check | kind | expected | actual | result | time |\n|---|---|---|---|---|---|\n");
    for c in &r.checks {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} s |\n",
            md_cell(&c.name),
            c.kind,
            md_cell(&c.expected),
            md_cell(&c.actual),
            if c.passed { "pass" } else { "**FAIL**" },
            c.duration_seconds
        ));
    }
    if !r.skipped.is_empty() || !r.created_roles.is_empty() {
        s.push_str("\n## Not restored, and roles created\n\n");
        for k in &r.skipped {
            s.push_str(&format!("- skipped: {}\n", md_cell(k)));
        }
        if !r.created_roles.is_empty() {
            s.push_str(&format!(
                "- roles created (NOLOGIN), named by the backup: {}\n",
                md_cell(&r.created_roles.join(", "))
            ));
        }
    }
    s.push_str(
        "\n## Evidence\n\n- [result.json](result.json): every check, timing and verdict, machine-readable\n- [drill.log](drill.log): what the drill did, line by line\n- [report.html](report.html): this report for a browser\n",
    );
    s.push_str(&format!(
        "\n## Provenance\n\n- backup objects: {}\n- source server PostgreSQL {}, pg_dump {}\n- target {} (PostgreSQL {})\n- pgdrill {} on {}, {} → {}\n",
        r.backup.objects.iter().map(|o| format!("`{}` sha256 `{}`", o.name, o.sha256)).collect::<Vec<_>>().join(", "),
        r.backup.server_version,
        r.backup.pg_dump_version,
        r.target.url,
        r.target.server_version.as_deref().unwrap_or("?"),
        r.tool.version,
        r.host,
        r.started_at,
        r.finished_at
    ));
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render_html(r: &DrillResult) -> String {
    let pass = r.passed();
    let total = r
        .stages
        .iter()
        .map(|s| s.start_seconds + s.seconds)
        .fold(0.01f64, f64::max);
    let bars: String = r
        .stages
        .iter()
        .map(|s| {
            format!(
                "<div class=row><span class=lbl>{}</span><span class=track><span class=bar style=\"margin-left:{:.2}%;width:{:.2}%\"></span></span><span class=num>{:.1}&nbsp;s</span></div>",
                esc(&s.name),
                s.start_seconds / total * 100.0,
                (s.seconds / total * 100.0).max(0.5),
                s.seconds
            )
        })
        .collect();
    let rows: String = r
        .checks
        .iter()
        .map(|c| {
            format!(
                "<tr class={}><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=res><span class={}>{}</span></td><td class=t>{:.2}&nbsp;s</td></tr>",
                if c.passed { "ok" } else { "bad" },
                esc(&c.name), esc(&c.kind), esc(&c.subject), esc(&c.expected), esc(&c.actual),
                if c.passed { "pass" } else { "fail" },
                if c.passed { "pass" } else { "FAIL" },
                c.duration_seconds
            )
        })
        .collect();
    let passed = r.checks.iter().filter(|c| c.passed).count();
    format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1"><title>Drill {id} — {verdict}</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:62rem;color:#1d232a;padding:0 1rem}}
.banner{{padding:1rem 1.25rem;border-radius:8px;color:#fff;background:{color}}}.banner h1{{margin:0;font-size:1.5rem}}
.kpis{{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}}.kpi{{flex:1 1 9rem;border:1px solid #d5dbe1;border-radius:8px;padding:.75rem}}
.kpi b{{display:block;font-size:1.4rem}}.met{{color:#1a7f37}}.missed{{color:#c62828}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #e3e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}}
tr.bad td{{background:#fdecec}}code{{font-size:.85em;white-space:pre-wrap;overflow-wrap:break-word}}
.scroll{{overflow-x:auto}}td.t,th.t,.num{{white-space:nowrap}}.pass{{color:#1a7f37;font-weight:600}}.fail{{color:#c62828;font-weight:600}}
.row{{display:flex;align-items:center;gap:.5rem;margin:.2rem 0}}.lbl{{flex:0 0 9rem;overflow-wrap:break-word}}.num{{flex:0 0 4.5rem;text-align:right}}
dl.prov{{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}}dl.prov dt{{color:#5b6570}}dl.prov dd{{margin:0;overflow-wrap:anywhere}}
@media (max-width:600px){{body{{margin:1rem auto;font-size:14px}}.lbl{{flex-basis:6.5rem}}dl.prov{{grid-template-columns:1fr}}}}
.track{{flex:1;background:#eef1f4;height:.9rem;border-radius:4px}}.bar{{display:block;height:100%;background:#3b6fd8;border-radius:4px}}
.err{{background:#fdecec;border-left:4px solid #c62828;padding:.5rem 1rem}}small{{color:#5b6570}}</style></head><body>
<div class=banner><h1>{verdict_word}: restore drill of {db}</h1><div>backup {bid} · snapshot {snap} · drill {id}</div></div>
{error}
<div class=kpis><div class=kpi>Checks<b>{passed}/{nchecks}</b></div>
<div class=kpi>RTO<b class={rto_class}>{rto}</b><small>target {rto_t} · {rto_v}</small></div>
<div class=kpi>RPO<b class={rpo_class}>{rpo}</b><small>target {rpo_t} · {rpo_v} · worst gap {gap}</small></div></div>
<h2>Timeline</h2>{bars}
<h2>Checks</h2><div class=scroll><table><tr><th>check</th><th>kind</th><th>subject</th><th>expected</th><th>actual</th><th>result</th><th class=t>time</th></tr>{rows}</table></div>
{skipped}<h2>Evidence</h2><ul><li><a href="result.json">result.json</a>: every check, timing and verdict, machine-readable</li><li><a href="drill.log">drill.log</a>: what the drill did, line by line</li><li><a href="report.md">report.md</a>: this report as Markdown</li></ul>
<h2>Provenance</h2><dl class=prov><dt>target</dt><dd>{target} (PostgreSQL {tver})</dd><dt>source</dt><dd>PostgreSQL {sver}, pg_dump {dver}</dd><dt>backup objects</dt><dd>{objs}</dd><dt>run by</dt><dd>pgdrill {tool} on {host}</dd><dt>started</dt><dd>{start}</dd><dt>finished</dt><dd>{end}</dd></dl>
</body></html>
"#,
        id = esc(&r.drill_id),
        verdict = r.verdict,
        verdict_word = if pass { "PASS" } else { "FAIL" },
        color = if pass { "#1a7f37" } else { "#c62828" },
        db = esc(&r.database),
        bid = esc(&r.backup.id),
        snap = esc(&r.backup.snapshot_time),
        error = r
            .error
            .iter()
            .chain(&r.warnings)
            .map(|e| format!("<p class=err>{}</p>", esc(e)))
            .collect::<String>(),
        passed = passed,
        nchecks = r.checks.len(),
        rto = fmt_min(r.rto.minutes),
        rto_t = r
            .rto
            .target_minutes
            .map(|t| format!("{t} min"))
            .unwrap_or("none".into()),
        rto_v = verdict_word(r.rto.passed),
        rto_class = if r.rto.passed == Some(false) {
            "missed"
        } else {
            "met"
        },
        rpo = fmt_min(r.rpo.minutes),
        rpo_t = r
            .rpo
            .target_minutes
            .map(|t| format!("{t} min"))
            .unwrap_or("none".into()),
        rpo_v = verdict_word(r.rpo.passed),
        rpo_class = if r.rpo.passed == Some(false) {
            "missed"
        } else {
            "met"
        },
        gap = fmt_gap(r.rpo.worst_gap_minutes),
        bars = bars,
        rows = rows,
        skipped = if r.skipped.is_empty() && r.created_roles.is_empty() {
            String::new()
        } else {
            format!(
                "<h2>Not restored, and roles created</h2><ul>{}{}</ul>",
                r.skipped
                    .iter()
                    .map(|k| format!("<li>skipped: {}</li>", esc(k)))
                    .collect::<String>(),
                if r.created_roles.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<li>roles created (NOLOGIN), named by the backup: {}</li>",
                        esc(&r.created_roles.join(", "))
                    )
                }
            )
        },
        target = esc(&r.target.url),
        tver = esc(r.target.server_version.as_deref().unwrap_or("?")),
        sver = esc(&r.backup.server_version),
        dver = esc(&r.backup.pg_dump_version),
        objs = r
            .backup
            .objects
            .iter()
            .map(|o| format!(
                "{} <small>sha256 <code>{}</code></small>",
                esc(&o.name),
                esc(&o.sha256)
            ))
            .collect::<Vec<_>>()
            .join("<br>"),
        tool = esc(&r.tool.version),
        host = esc(&r.host),
        start = esc(&r.started_at),
        end = esc(&r.finished_at),
    )
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
    use super::*;

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
