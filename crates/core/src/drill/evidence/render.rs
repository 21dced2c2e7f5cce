//! A drill result as people read it: report.md and report.html.

use super::DrillResult;

pub(super) fn verdict_word(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "no target",
    }
}

/// The worst gap between backups, or why there is none (one backup has no gap).
pub(super) fn fmt_gap(m: Option<f64>) -> String {
    match m {
        Some(_) => fmt_min(m),
        None => "n/a (fewer than two backups)".into(),
    }
}

pub(super) fn fmt_min(m: Option<f64>) -> String {
    match m {
        Some(m) if m < 1.0 => format!("{:.1} s", m * 60.0),
        Some(m) if m < 120.0 => format!("{m:.1} min"),
        Some(m) => format!("{:.1} h", m / 60.0),
        None => "n/a".into(),
    }
}

/// A physical backup's fetch and recovery in one sentence (`None` for pgdrill's own).
fn physical_line(r: &DrillResult) -> Option<String> {
    if r.source == "pgdrill" {
        return None;
    }
    let rec = r.recovery.as_ref();
    let mut s = format!("Source: a {} backup", r.source);
    if let Some(rec) = rec {
        s.push_str(&format!(
            ", fetched by {} in {:.1} s and recovered in {:.1} s",
            rec.tool, rec.fetch_seconds, rec.recovery_seconds
        ));
        if let Some(t) = &rec.target_time {
            s.push_str(&format!(" (recovery target {t})"));
        }
        if let (Some(at), Some(from)) = (&rec.reached, &rec.reached_from) {
            s.push_str(&format!("; the data stands at {at} ({from})"));
        }
    }
    s.push_str(". Row counts against a snapshot do not apply to a physical backup.");
    Some(s)
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
    if let Some(line) = physical_line(r) {
        s.push_str(&format!("{line}\n\n"));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("> **Error:** {e}\n\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("> **Warning:** {w}\n\n"));
    }
    if let Some(u) = &r.upgrade {
        s.push_str(&format!(
            "**Upgrade rehearsal:** PostgreSQL {} (source) restored into PostgreSQL {} (`drill --major {}`).\n\n",
            u.from_version,
            u.to_version.as_deref().unwrap_or("— (did not start)"),
            u.to_major
        ));
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

pub(super) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How report.html shows times, and where it links back to.
pub struct HtmlView<'a> {
    /// The zone times are shown in (the configured `[schedule] timezone` when served).
    pub tz: &'a jiff::tz::TimeZone,
    pub tz_name: &'a str,
    /// The dashboard's address, when the report is served by `pgdrill serve`.
    pub dashboard: Option<&'a str>,
}

/// One evidence file: a relative link next to the stored files, else its name.
fn evidence_item(name: &str, link: bool) -> String {
    if link {
        format!("<a href=\"{name}\">{name}</a>")
    } else {
        format!("<code>{name}</code>")
    }
}

/// A duration for people: `0.25 s`, `1.1 s`, `30 s`, `6 min`, `12.5 min`, `2.1 h`.
pub fn human_duration(s: f64) -> String {
    let one = |v: f64, unit: &str| {
        let t = format!("{v:.1}");
        format!("{} {unit}", t.strip_suffix(".0").unwrap_or(&t))
    };
    if s <= 0.0 {
        "0 s".into()
    } else if s < 1.0 {
        format!("{s:.2} s")
    } else if s < 90.0 {
        one(s, "s")
    } else if s < 5400.0 {
        one(s / 60.0, "min")
    } else {
        one(s / 3600.0, "h")
    }
}

fn human_minutes(m: Option<f64>) -> String {
    m.map(|m| human_duration(m * 60.0))
        .unwrap_or_else(|| "n/a".into())
}

/// A stored RFC 3339 time in `tz`, with its date and zone (`2026-12-06 05:02:11 CET`).
fn when(s: &str, tz: &jiff::tz::TimeZone) -> String {
    crate::time::parse(s)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| s.to_string())
}

/// report.html as stored with the evidence: times in UTC, no link (it is read from the store
/// as a file as often as through `pgdrill serve`, which renders its own with
/// [`render_html_in`]).
pub fn render_html(r: &DrillResult) -> String {
    render_html_in(
        r,
        &HtmlView {
            tz: &jiff::tz::TimeZone::UTC,
            tz_name: "UTC",
            dashboard: None,
        },
    )
}

/// report.html with times in `v.tz` and a link back to the dashboard when there is one.
pub fn render_html_in(r: &DrillResult, v: &HtmlView) -> String {
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
                "<div class=row><span class=lbl>{}</span><span class=track><span class=bar style=\"margin-left:{:.2}%;width:{:.2}%\"></span></span><span class=num title=\"starts at +{}\">{}</span></div>",
                esc(&s.name),
                s.start_seconds / total * 100.0,
                (s.seconds / total * 100.0).max(0.5),
                human_duration(s.start_seconds),
                human_duration(s.seconds)
            )
        })
        .collect();
    let rows: String = r
        .checks
        .iter()
        .map(|c| {
            format!(
                "<tr class={}><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=res><span class={}>{}</span></td><td class=t>{}</td></tr>",
                if c.passed { "ok" } else { "bad" },
                esc(&c.name), esc(&c.kind), esc(&c.subject), esc(&c.expected), esc(&c.actual),
                if c.passed { "pass" } else { "fail" },
                if c.passed { "pass" } else { "FAIL" },
                human_duration(c.duration_seconds)
            )
        })
        .collect();
    let passed = r.checks.iter().filter(|c| c.passed).count();
    format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1"><title>Drill {id} — {verdict}</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:62rem;color:#1d232a;padding:0 1rem}}
.banner{{padding:1rem 1.25rem;border-radius:8px;color:#fff;background:{color};overflow-wrap:anywhere}}nav.back{{margin:0 0 .75rem;font-size:.9rem;color:#5b6570}}nav.back a{{color:#0969da;text-decoration:none;font-weight:600}}.banner h1{{margin:0;font-size:1.5rem}}
.kpis{{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}}.kpi{{flex:1 1 9rem;border:1px solid #d5dbe1;border-radius:8px;padding:.75rem}}
.kpi b{{display:block;font-size:1.4rem}}.met{{color:#1a7f37}}.missed{{color:#c62828}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #e3e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}}
tr.bad td{{background:#fdecec}}code{{font-size:.85em;white-space:pre-wrap;overflow-wrap:break-word}}
.scroll{{overflow-x:auto}}td.t,th.t,.num{{white-space:nowrap}}.pass{{color:#1a7f37;font-weight:600}}.fail{{color:#c62828;font-weight:600}}
.row{{display:flex;align-items:center;gap:.5rem;margin:.2rem 0}}h2{{overflow-wrap:anywhere}}.lbl{{flex:0 0 9rem;overflow-wrap:break-word}}.num{{flex:0 0 4.5rem;text-align:right}}
dl.prov{{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}}dl.prov dt{{color:#5b6570}}dl.prov dd{{margin:0;overflow-wrap:anywhere}}
@media (max-width:600px){{body{{margin:1rem auto;font-size:14px}}.lbl{{flex-basis:6.5rem}}dl.prov{{grid-template-columns:1fr}}}}
.track{{flex:1;background:#eef1f4;height:.9rem;border-radius:4px}}.bar{{display:block;height:100%;background:#3b6fd8;border-radius:4px}}
.err{{background:#fdecec;border-left:4px solid #c62828;padding:.5rem 1rem}}small{{color:#5b6570}}</style></head><body>
{nav}<div class=banner><h1>{verdict_word}: restore drill of {db}</h1><div>backup {bid} · snapshot {snap} · drill {id}</div></div>
{error}
<div class=kpis><div class=kpi>Checks<b>{passed}/{nchecks}</b></div>
<div class=kpi>RTO<b class={rto_class}>{rto}</b><small>target {rto_t} · {rto_v}</small></div>
<div class=kpi>RPO<b class={rpo_class}>{rpo}</b><small>target {rpo_t} · {rpo_v} · worst gap {gap}</small></div></div>
<h2>Timeline</h2>{bars}
<h2>Checks</h2><div class=scroll><table><tr><th>check</th><th>kind</th><th>subject</th><th>expected</th><th>actual</th><th>result</th><th class=t>time</th></tr>{rows}</table></div>
{skipped}<h2>Evidence</h2>{evidence_where}<ul><li>{ev_result}: every check, timing and verdict, machine-readable</li><li>{ev_log}: what the drill did, line by line</li><li>{ev_md}: this report as Markdown</li></ul>
<h2>Provenance</h2><dl class=prov><dt>target</dt><dd>{target} (PostgreSQL {tver})</dd><dt>source</dt><dd>PostgreSQL {sver}, pg_dump {dver}</dd><dt>backup objects</dt><dd>{objs}</dd><dt>run by</dt><dd>pgdrill {tool} on {host}</dd><dt>started</dt><dd>{start}</dd><dt>finished</dt><dd>{end}</dd></dl>
</body></html>
"#,
        id = esc(&r.drill_id),
        verdict = r.verdict,
        verdict_word = if pass { "PASS" } else { "FAIL" },
        color = if pass { "#1a7f37" } else { "#c62828" },
        db = esc(&r.database),
        bid = esc(&r.backup.id),
        snap = esc(&when(&r.backup.snapshot_time, v.tz)),
        // Next to the stored files the evidence is linked; served by `pgdrill serve` (which
        // does not serve those files) it is named where it lies in the store.
        evidence_where = if v.dashboard.is_some() {
            format!(
                "<p>In the store, next to this report: <code>{}/drills/{}/</code></p>",
                esc(&r.database),
                esc(&r.drill_id)
            )
        } else {
            String::new()
        },
        ev_result = evidence_item("result.json", v.dashboard.is_none()),
        ev_log = evidence_item("drill.log", v.dashboard.is_none()),
        ev_md = evidence_item("report.md", v.dashboard.is_none()),
        nav = match v.dashboard {
            Some(d) => format!(
                "<nav class=back><a href=\"{}\">&larr; pgdrill dashboard</a> · times in {}</nav>",
                esc(d),
                esc(v.tz_name)
            ),
            None => format!("<nav class=back>times in {}</nav>", esc(v.tz_name)),
        },
        error = physical_line(r)
            .map(|l| format!("<p>{}</p>", esc(&l)))
            .unwrap_or_default()
            + &r.error
                .iter()
                .chain(&r.warnings)
                .map(|e| format!("<p class=err>{}</p>", esc(e)))
                .collect::<String>(),
        passed = passed,
        nchecks = r.checks.len(),
        rto = human_minutes(r.rto.minutes),
        rto_t = r
            .rto
            .target_minutes
            .map(|t| human_duration(t as f64 * 60.0))
            .unwrap_or("none".into()),
        rto_v = verdict_word(r.rto.passed),
        rto_class = if r.rto.passed == Some(false) {
            "missed"
        } else {
            "met"
        },
        rpo = human_minutes(r.rpo.minutes),
        rpo_t = r
            .rpo
            .target_minutes
            .map(|t| human_duration(t as f64 * 60.0))
            .unwrap_or("none".into()),
        rpo_v = verdict_word(r.rpo.passed),
        rpo_class = if r.rpo.passed == Some(false) {
            "missed"
        } else {
            "met"
        },
        gap = r
            .rpo
            .worst_gap_minutes
            .map(|m| human_duration(m * 60.0))
            .unwrap_or_else(|| fmt_gap(None)),
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
        start = esc(&when(&r.started_at, v.tz)),
        end = esc(&when(&r.finished_at, v.tz)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> DrillResult {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "drill_id": "20261206T040000Z-00aa", "database": "app", "verdict": "pass",
            "started_at": "2026-12-06T04:00:00Z", "finished_at": "2026-12-06T04:00:02Z",
            "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
            "backup": {"id": "b1", "snapshot_time": "2026-12-06T03:00:00Z", "finished_at": "2026-12-06T03:00:09Z",
                       "server_version": "15", "pg_dump_version": "15", "objects": []},
            "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
            "stages": [{"name": "restore", "start_seconds": 0.2, "seconds": 0.9}],
            "rpo": {"minutes": 60.0, "target_minutes": 1440, "passed": true},
            "rto": {"minutes": 0.0183, "target_minutes": 30, "passed": true},
            "checks": [], "error": null, "policy": {}
        }))
        .expect("drill")
    }

    #[test]
    fn html_report_shows_humane_units_dates_in_the_zone_and_links_back() {
        let r = result();
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").expect("tz");
        let html = render_html_in(
            &r,
            &HtmlView {
                tz: &tz,
                tz_name: "Europe/Berlin",
                dashboard: Some("/"),
            },
        );
        assert!(
            html.contains("<a href=\"/\">&larr; pgdrill dashboard</a> · times in Europe/Berlin")
        );
        assert!(
            html.contains("<b class=met>1.1 s</b><small>target 30 min"),
            "{html}"
        );
        assert!(
            html.contains("<b class=met>60 min</b><small>target 24 h"),
            "{html}"
        );
        assert!(html.contains("snapshot 2026-12-06 04:00:00 CET"), "{html}");
        assert!(html.contains("<dd>2026-12-06 05:00:00 CET</dd>"), "{html}");
        assert!(!html.contains("0.0 min") && !html.contains("0.0&nbsp;min"));
        // The stored copy: UTC, said so, no link.
        let stored = render_html(&r);
        assert!(stored.contains("<nav class=back>times in UTC</nav>"));
        assert!(
            stored.contains("<dd>2026-12-06 04:00:00 UTC</dd>"),
            "{stored}"
        );
        assert!(!stored.contains("href=\"/\""));
        // Stored: the evidence is linked; served: named where it lies in the store.
        assert!(stored.contains("<a href=\"result.json\">result.json</a>"));
        assert!(!html.contains("href=\"result.json\""));
        assert!(html.contains("<code>app/drills/20261206T040000Z-00aa/</code>"));
        assert_eq!(human_duration(0.25), "0.25 s");
        assert_eq!(human_duration(360.0), "6 min");
        assert_eq!(human_duration(750.0), "12.5 min");
    }
}
