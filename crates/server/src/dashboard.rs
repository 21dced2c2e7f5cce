//! The read-only dashboard at `/`: one self-contained HTML page (inline CSS and SVG, no
//! script, no external assets), every value escaped.

use crate::app::App;
use crate::charts::{self, Chart, Scale, Series};
use crate::state::{DbData, JobState};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use pgdrill_core::status::DbStatus;
use std::fmt::Write;

/// Rows per table; the charts use the whole history.
const TABLE_ROWS: usize = 12;

pub use crate::charts::esc;

/// Path segments here are DbName/DrillId (safe characters), encoded anyway.
fn url_seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub fn secs(s: f64) -> String {
    if s == 0.0 {
        "0 s".into()
    } else if s > 0.0 && s < 1.0 {
        format!("{s:.2} s")
    } else if s < 90.0 {
        one_decimal(s, "s")
    } else if s < 5400.0 {
        one_decimal(s / 60.0, "min")
    } else {
        one_decimal(s / 3600.0, "h")
    }
}

/// `12.5 min`, and `30 min` rather than `30.0 min`.
fn one_decimal(v: f64, unit: &str) -> String {
    let t = format!("{v:.1}");
    format!("{} {unit}", t.strip_suffix(".0").unwrap_or(&t))
}

/// At most `n` characters, with an ellipsis when cut.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>().trim_end())
    }
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 0 => format!("in {}", ago(-s).trim_end_matches(" ago")),
        s if s < 90 => format!("{s} s ago"),
        s if s < 5400 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{:.1} h ago", s as f64 / 3600.0),
        s => format!("{:.1} days ago", s as f64 / 86_400.0),
    }
}

fn when(t: Timestamp, tz: &TimeZone) -> String {
    pgdrill_core::time::zoned(t, tz)
}

fn when_str(s: &str, tz: &TimeZone) -> String {
    pgdrill_core::time::parse(s)
        .map(|t| when(t, tz))
        .unwrap_or_else(|| s.to_string())
}

fn secs_of(s: &str) -> Option<i64> {
    pgdrill_core::time::parse(s).map(|t| t.as_second())
}

fn pill(ok: Option<bool>, text: &str) -> String {
    let class = match ok {
        Some(true) => "ok",
        Some(false) => "bad",
        None => "idle",
    };
    format!("<span class=\"pill {class}\">{}</span>", esc(text))
}

/// Inline in the page: no external assets, so it works offline and under a strict CSP.
const STYLE: &str = include_str!("dashboard.css");

pub fn render(app: &App) -> String {
    let now = app.clock.now();
    let dbs = app.state.dbs();
    let jobs = app.state.jobs();
    let statuses: Vec<DbStatus> = dbs
        .iter()
        .map(|d| d.status(&app.policy, &app.drill_window, now))
        .collect();
    let violated = statuses.iter().filter(|s| !s.ok()).count();
    let overall = if dbs.is_empty() {
        pill(None, "no databases")
    } else if violated == 0 {
        pill(Some(true), "all SLOs met")
    } else {
        pill(
            Some(false),
            &format!("SLO violated on {violated} of {} databases", dbs.len()),
        )
    };
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>pgdrill: {}</title><style>{STYLE}</style></head><body>\
         <header class=top><div class=brand>pgdrill</div>\
         <div class=meta>store <code>{}</code> · times in {} · page generated {}</div>{overall}</header><main>",
        esc(&dbs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")),
        esc(&app.store_display),
        esc(&app.tz_name),
        esc(&when(now, &app.tz)),
    );
    if dbs.is_empty() {
        h.push_str("<section class=db><p class=muted>No database is configured or has backups in this store yet.</p></section>");
    }
    for (d, st) in dbs.iter().zip(&statuses) {
        database(&mut h, app, d, st, &jobs, now);
    }
    jobs_table(&mut h, &jobs, &app.tz, now);
    let _ = write!(
        h,
        "</main><footer>pgdrill {} · read-only dashboard · this page reloads every 60 s · \
         <a href=\"/metrics\">/metrics</a></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn database(
    h: &mut String,
    app: &App,
    d: &DbData,
    st: &DbStatus,
    jobs: &[JobState],
    now: Timestamp,
) {
    let tz = &app.tz;
    let name = d.name.as_str();
    let _ = write!(
        h,
        "<section class=db id=\"db-{}\"><div class=db-head><h2>{}</h2>{}</div>",
        esc(name),
        esc(name),
        if st.ok() {
            pill(Some(true), "SLOs met")
        } else {
            pill(Some(false), "SLO violated")
        }
    );
    if let Some(e) = &d.error {
        let _ = write!(h, "<div class=err>{}</div>", esc(e));
    }
    // Cards.
    let newest = d.backups.first();
    let total: u64 = d.backups.iter().map(|m| m.stored_bytes).sum();
    let next = |kind: crate::jobs::JobKind| {
        jobs.iter()
            .find(|j| j.key.kind == kind && j.key.database.as_ref() == Some(&d.name))
            .and_then(|j| j.next_run)
    };
    let card = |h: &mut String, k: &str, v: String, s: String| {
        let _ = write!(
            h,
            "<div class=card><div class=k>{}</div><div class=v>{}</div><div class=s title=\"{}\">{}</div></div>",
            esc(k), v, esc(&s), esc(&s)
        );
    };
    h.push_str("<div class=cards>");
    card(
        h,
        "Newest backup",
        esc(&st
            .newest_age_seconds
            .map(ago)
            .unwrap_or_else(|| "none".into())),
        newest
            .map(|m| format!("{} · {}", m.backup_id, bytes(m.stored_bytes as f64)))
            .unwrap_or_else(|| "no complete backup yet".into()),
    );
    card(
        h,
        "Backups stored",
        esc(&d.backups.len().to_string()),
        format!("{} in the store", bytes(total as f64)),
    );
    let last = d.drills.first();
    card(
        h,
        "Last drill",
        last.map(|r| pill(Some(r.passed()), &r.verdict.as_str().to_uppercase()))
            .unwrap_or_else(|| pill(None, "none")),
        last.map(|r| {
            format!(
                "{} · RTO {}",
                when_str(&r.started_at, tz),
                r.rto
                    .minutes
                    .map(|m| secs(m * 60.0))
                    .unwrap_or_else(|| "n/a".into())
            )
        })
        .unwrap_or_else(|| "no drill recorded yet".into()),
    );
    let (nb, nd) = (
        next(crate::jobs::JobKind::Backup),
        next(crate::jobs::JobKind::Drill),
    );
    card(
        h,
        "Next backup",
        esc(&nb
            .map(|t| ago(now.as_second() - t.as_second()))
            .unwrap_or_else(|| "not scheduled".into())),
        format!(
            "next drill: {}",
            nd.map(|t| when(t, tz))
                .unwrap_or_else(|| "not scheduled".into())
        ),
    );
    h.push_str("</div>");
    // SLOs.
    h.push_str("<h3>Service levels</h3><div class=scroll><table class=slos><tr><th>SLO</th><th>State</th><th>Detail</th></tr>");
    for s in &st.slos {
        let _ = write!(
            h,
            "<tr><td class=t>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name.replace('_', " ")),
            pill(Some(s.ok), if s.ok { "ok" } else { "violated" }),
            esc(&slo_detail(s, d, tz))
        );
    }
    h.push_str("</table></div>");
    stores_table(h, st, tz);
    charts(h, d, st, app, now);
    failures_table(h, d, tz);
    backups_table(h, d, tz);
    drills_table(h, d, tz);
    h.push_str("</section>");
}

fn charts(h: &mut String, d: &DbData, st: &DbStatus, app: &App, now: Timestamp) {
    let tz = &app.tz;
    let pts = |f: &dyn Fn(&pgdrill_core::manifest::Manifest) -> Option<f64>| -> Vec<(i64, f64, Option<&'static str>)> {
        d.backups
            .iter()
            .filter_map(|m| Some((secs_of(&m.snapshot.time)?, f(m)?, None)))
            .collect()
    };
    // Failed backups (the kept history), marked on every backup chart.
    let backup_marks: Vec<(i64, String)> = d
        .failures
        .iter()
        .map(|f| {
            (
                f.at.as_second(),
                format!("{} failed: {}", f.job, short(&f.message, 200)),
            )
        })
        .collect();
    let one = |name: &str, color: &'static str, points| Series {
        name: name.into(),
        color,
        points,
    };
    // Raw and stored size each on a chart of their own: on one linear axis the compressed
    // size is a flat line at zero.
    let raw = Chart {
        label: "Raw dump size over time",
        series: vec![one(
            "raw dump",
            "#6e7781",
            pts(&|m| Some(m.raw_bytes as f64)),
        )],
        scale: Scale::Bytes,
        fmt_y: bytes,
        target: None,
        marks: backup_marks.clone(),
        until: None,
    };
    let stored = Chart {
        label: "Stored size over time",
        series: vec![one(
            "stored (compressed)",
            "#0969da",
            pts(&|m| Some(m.stored_bytes as f64)),
        )],
        scale: Scale::Bytes,
        fmt_y: bytes,
        target: None,
        marks: backup_marks.clone(),
        until: None,
    };
    let duration = Chart {
        label: "Backup duration over time",
        series: vec![one(
            "duration",
            "#8250df",
            pts(&|m| m.stage_seconds.get("total").copied()),
        )],
        scale: Scale::Seconds,
        fmt_y: secs,
        target: None,
        marks: backup_marks.clone(),
        until: None,
    };
    // How old the newest backup had grown when the next one arrived, and how old it is now.
    let mut snaps: Vec<i64> = d
        .backups
        .iter()
        .filter_map(|m| secs_of(&m.snapshot.time))
        .collect();
    snaps.sort_unstable();
    let mut age: Vec<(i64, f64, Option<&'static str>)> = snaps
        .windows(2)
        .map(|w| (w[1], (w[1] - w[0]) as f64, None))
        .collect();
    if let Some(last) = snaps.last() {
        let a = (now.as_second() - last).max(0) as f64;
        let bad = a > st.freshness_threshold_seconds as f64;
        age.push((
            now.as_second(),
            a,
            Some(if bad { "#cf222e" } else { "#1a7f37" }),
        ));
    }
    let threshold = st.freshness_threshold_seconds as f64;
    let freshness = Chart {
        label: "Backup age against the freshness threshold",
        series: vec![one("age before the next backup; now", "#bf8700", age)],
        scale: Scale::Seconds,
        fmt_y: secs,
        target: Some((threshold, format!("threshold {}", secs(threshold)))),
        marks: backup_marks,
        until: Some(now.as_second()),
    };
    let verdict_color = |r: &pgdrill_core::drill::evidence::DrillResult| {
        if r.passed() {
            "#1a7f37"
        } else {
            "#cf222e"
        }
    };
    // Drills that failed before measuring anything are marks on the time axis.
    let drill_marks =
        |has: &dyn Fn(&pgdrill_core::drill::evidence::DrillResult) -> bool| -> Vec<(i64, String)> {
            d.drills
                .iter()
                .filter(|r| !r.passed() && !has(r))
                .filter_map(|r| {
                    Some((
                        secs_of(&r.started_at)?,
                        format!(
                            "drill {} failed: {}",
                            r.drill_id,
                            short(r.error.as_deref().unwrap_or("a check failed"), 200)
                        ),
                    ))
                })
                .collect()
        };
    // RTO and RPO: each drill's measure in seconds against the policy's target.
    let measure = |label: &'static str,
                   name: &str,
                   pick: fn(
        &pgdrill_core::drill::evidence::DrillResult,
    ) -> &pgdrill_core::drill::evidence::Target,
                   target_minutes: Option<u64>| Chart {
        label,
        series: vec![one(
            name,
            "#57606a",
            d.drills
                .iter()
                .filter_map(|r| {
                    Some((
                        secs_of(&r.started_at)?,
                        pick(r).minutes? * 60.0,
                        Some(verdict_color(r)),
                    ))
                })
                .collect(),
        )],
        scale: Scale::Seconds,
        fmt_y: secs,
        target: target_minutes
            .map(|m| (m as f64 * 60.0, format!("target {}", secs(m as f64 * 60.0)))),
        marks: drill_marks(&|r| pick(r).minutes.is_some()),
        until: None,
    };
    let rto = measure(
        "Drill RTO against its target",
        "RTO (green pass, red fail)",
        |r| &r.rto,
        app.policy.rto_minutes,
    );
    let rpo = measure(
        "Drill RPO against its target",
        "RPO (green pass, red fail)",
        |r| &r.rpo,
        app.policy.rpo_minutes,
    );
    h.push_str("<h3>History</h3><div class=charts>");
    for (title, c) in [
        ("Stored size", stored),
        ("Raw dump size", raw),
        ("Backup duration", duration),
        ("Backup freshness", freshness),
        ("Drill RTO", rto),
        ("Drill RPO", rpo),
    ] {
        let _ = write!(
            h,
            "<div class=chartbox><div class=t>{}</div>{}</div>",
            esc(title),
            charts::render(&c, tz)
        );
    }
    h.push_str("</div>");
}

/// The kept failure history, newest first.
fn failures_table(h: &mut String, d: &DbData, tz: &TimeZone) {
    if d.failures.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h3>Failed jobs ({} kept)</h3><div class=scroll><table class=failures><tr><th>When</th><th>Job</th><th>Error</th></tr>",
        d.failures.len()
    );
    for f in d.failures.iter().rev().take(TABLE_ROWS) {
        let _ = write!(
            h,
            "<tr><td class=t>{}</td><td>{}</td><td class=msg title=\"{}\">{}</td></tr>",
            esc(&when(f.at, tz)),
            esc(&f.job),
            esc(&humane_text(&f.message)),
            esc(&short(&humane_text(&f.message), 240))
        );
    }
    h.push_str("</table></div>");
}

/// An SLO's detail for people: the RTO and RPO in humane units (`1.1 s`, not `0.0 min`), sizes
/// in KiB/MiB, times in the configured zone.
fn slo_detail(s: &pgdrill_core::status::Slo, d: &DbData, tz: &TimeZone) -> String {
    let last = d.drills.first();
    let measure = |name: &str, t: &pgdrill_core::drill::evidence::Target| {
        format!(
            "last drill {name} {}, target {}",
            t.minutes
                .map(|m| secs(m * 60.0))
                .unwrap_or_else(|| "n/a".into()),
            t.target_minutes
                .map(|m| secs(m as f64 * 60.0))
                .unwrap_or_else(|| "none".into())
        )
    };
    match (s.name.as_str(), last) {
        ("rto", Some(r)) => measure("RTO", &r.rto),
        ("rpo", Some(r)) => measure("RPO", &r.rpo),
        // "median of the previous 5 is 95200000": a size without its unit.
        ("dump_size", _) => {
            let text = humane_text(&s.detail);
            match text.rsplit_once(" is ") {
                Some((head, n)) => match n.parse::<f64>() {
                    Ok(n) => format!("{head} is {}", bytes(n)),
                    Err(_) => text,
                },
                None => text,
            }
        }
        _ => zoned_times(&humane_text(&s.detail), tz),
    }
}

/// Every RFC 3339 UTC time in `s` (`2026-12-06T04:00:00Z`) shown in `tz` with its zone.
fn zoned_times(s: &str, tz: &TimeZone) -> String {
    pgdrill_core::time::zoned_text(s, tz)
}

/// Replaces every `<n> bytes` in a message with a humane size (`20276229 bytes` → `19.3 MiB`).
pub fn humane_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(" bytes") {
        let head = &rest[..at];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let start = at - digits;
        let boundary = head[..start]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '.');
        match head[start..].parse::<u64>() {
            Ok(n) if digits > 0 && boundary => {
                out.push_str(&head[..start]);
                out.push_str(&bytes(n as f64));
            }
            _ => {
                out.push_str(head);
                out.push_str(" bytes");
            }
        }
        rest = &rest[at + " bytes".len()..];
    }
    out.push_str(rest);
    out
}

/// With several stores: one line per store (reachable, copies, newest, missing ones).
fn stores_table(h: &mut String, st: &DbStatus, tz: &TimeZone) {
    if st.stores.is_empty() {
        return;
    }
    h.push_str("<h3>Stores</h3><div class=scroll><table class=stores><tr><th>Store</th><th>State</th><th>Copies</th><th>Newest</th><th>Missing</th></tr>");
    for c in &st.stores {
        let state = match (&c.error, c.missing.is_empty()) {
            (Some(_), _) => pill(Some(false), "unreachable"),
            (None, false) => pill(Some(false), "missing copies"),
            (None, true) => pill(Some(true), "ok"),
        };
        let missing: Vec<&str> = c.missing.iter().map(|m| m.as_str()).collect();
        let _ = write!(
            h,
            "<tr><td class=t>{}</td><td>{}</td><td class=num>{}</td><td class=t>{}</td><td class=mono>{}</td></tr>",
            esc(&c.store),
            state,
            c.backups,
            esc(&c
                .newest_snapshot
                .as_deref()
                .map(|t| when_str(t, tz))
                .unwrap_or_else(|| "none".into())),
            esc(&c.error.clone().unwrap_or_else(|| missing.join(", ")))
        );
    }
    h.push_str("</table></div>");
}

fn backups_table(h: &mut String, d: &DbData, tz: &TimeZone) {
    let _ = write!(h, "<h3>Latest backups ({} complete)</h3>", d.backups.len());
    if d.backups.is_empty() {
        h.push_str("<p class=muted>No complete backup yet.</p>");
        return;
    }
    h.push_str("<div class=scroll><table class=backups><tr><th>Backup</th><th>Snapshot</th><th>Raw</th><th>Stored</th><th>Duration</th><th>Tables</th><th>Encrypted</th></tr>");
    for m in d.backups.iter().take(TABLE_ROWS) {
        let _ = write!(
            h,
            "<tr><td class=mono>{}</td><td class=t>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td></tr>",
            esc(m.backup_id.as_str()),
            esc(&when_str(&m.snapshot.time, tz)),
            esc(&bytes(m.raw_bytes as f64)),
            esc(&bytes(m.stored_bytes as f64)),
            esc(&m.stage_seconds.get("total").map(|s| secs(*s)).unwrap_or_default()),
            m.content.tables.len(),
            if m.encrypted() { "yes" } else { "<span class=muted>no</span>" }
        );
    }
    h.push_str("</table></div>");
}

fn drills_table(h: &mut String, d: &DbData, tz: &TimeZone) {
    let _ = write!(h, "<h3>Drills ({})</h3>", d.drills.len());
    if d.drills.is_empty() {
        h.push_str("<p class=muted>No drill recorded yet.</p>");
        return;
    }
    h.push_str("<div class=scroll><table class=drills><tr><th>Drill</th><th>Started</th><th>Verdict</th><th>Checks</th><th>RTO</th><th>RPO</th><th>Backup</th><th>Source</th></tr>");
    let fmt_min = |m: Option<f64>, passed: Option<bool>| {
        let v = m.map(|m| secs(m * 60.0)).unwrap_or_else(|| "n/a".into());
        match passed {
            Some(false) => format!("<span class=\"pill bad\">{}</span>", esc(&v)),
            _ => esc(&v),
        }
    };
    for r in d.drills.iter().take(TABLE_ROWS) {
        let passed = r.checks.iter().filter(|c| c.passed).count();
        let _ = write!(
            h,
            "<tr><td class=mono><a href=\"/drills/{}/{}\">{}</a></td><td class=t>{}</td><td>{}</td><td class=num>{passed}/{}</td><td class=num>{}</td><td class=num>{}</td><td class=mono>{}</td><td>{}</td></tr>",
            url_seg(d.name.as_str()),
            url_seg(&r.drill_id),
            esc(&r.drill_id),
            esc(&when_str(&r.started_at, tz)),
            pill(Some(r.passed()), r.verdict.as_str()),
            r.checks.len(),
            fmt_min(r.rto.minutes, r.rto.passed),
            fmt_min(r.rpo.minutes, r.rpo.passed),
            esc(&r.backup.id),
            esc(&r.source)
        );
    }
    h.push_str("</table></div>");
}

fn jobs_table(h: &mut String, jobs: &[JobState], tz: &TimeZone, now: Timestamp) {
    h.push_str("<section class=jobs><h2>Scheduled jobs</h2><div class=scroll><table class=jobs><tr><th>Job</th><th>Database</th><th>Schedule</th><th>State</th><th>Last run</th><th>Result</th><th>Duration</th><th>Next run</th></tr>");
    for j in jobs {
        let state = match (j.running_since, j.pending) {
            (Some(t), _) => format!(
                "<span class=\"pill run\">running {} s</span>",
                now.as_second() - t.as_second()
            ),
            (None, true) => "<span class=\"pill idle\">waiting</span>".into(),
            (None, false) => "<span class=muted>idle</span>".into(),
        };
        let result = match (j.last_ok, &j.last_summary) {
            (Some(ok), Some(s)) => format!(
                "{} <span class=muted title=\"{}\">{}</span>",
                pill(
                    Some(ok),
                    match (ok, j.key.kind) {
                        (true, _) => "ok",
                        (false, crate::jobs::JobKind::Status) => "violated",
                        (false, _) => "failed",
                    }
                ),
                esc(&humane_text(s)),
                esc(&short(&humane_text(s), 90))
            ),
            _ => "<span class=muted>not run yet</span>".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{state}</td><td class=t>{}</td><td>{result}</td><td class=num>{}</td><td class=t>{}</td></tr>",
            esc(j.key.kind.name()),
            esc(j.key.database_label()),
            esc(&j.schedule),
            esc(&j.last_started.map(|t| when(t, tz)).unwrap_or_default()),
            esc(&j.last_duration_seconds.map(secs).unwrap_or_default()),
            esc(&j.next_run.map(|t| when(t, tz)).unwrap_or_default()),
        );
    }
    h.push_str("</table></div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_units() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_seg("a b/c"), "a%20b%2Fc");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(12.0), "12 B");
        assert_eq!(secs(30.0), "30 s");
        assert_eq!(secs(91.0), "1.5 min");
        assert_eq!(secs(600.0), "10 min");
        assert_eq!(ago(7200), "2.0 h ago");
        assert_eq!(ago(-120), "in 2 min");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("abc", 4), "abc");
        assert_eq!(
            humane_text("backup b1 of app completed (20276229 bytes stored)"),
            "backup b1 of app completed (19.3 MiB stored)"
        );
        assert_eq!(
            humane_text("12 bytes, x3 bytes, 1.5 bytes"),
            "12 B, x3 bytes, 1.5 bytes"
        );
        assert_eq!(humane_text("no sizes"), "no sizes");
        let berlin = TimeZone::get("Europe/Berlin").expect("tz");
        assert_eq!(
            zoned_times(
                "last passing drill 2026-12-06T04:00:00Z (one this month)",
                &berlin
            ),
            "last passing drill 2026-12-06 05:00:00 CET (one this month)"
        );
    }

    #[test]
    fn the_drills_table_names_what_made_the_backup() {
        let drill = |source: Option<&str>| -> pgdrill_core::drill::evidence::DrillResult {
            let mut v = serde_json::json!({
                "schema_version": 1, "drill_id": "20261206T040000Z-1", "database": "app",
                "verdict": "pass", "started_at": "2026-12-06T04:00:00Z",
                "finished_at": "2026-12-06T04:01:00Z",
                "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
                "backup": {"id": "20261121-020000F", "snapshot_time": "2026-12-06T02:00:00Z",
                           "finished_at": "2026-12-06T02:00:00Z", "server_version": "15.18",
                           "pg_dump_version": "n/a", "objects": []},
                "target": {"kind": "ephemeral", "url": "postgresql://x", "server_version": "15.18",
                           "kept": false},
                "stages": [], "rpo": {"minutes": 1.0, "target_minutes": null, "passed": null},
                "rto": {"minutes": 1.0, "target_minutes": null, "passed": null},
                "checks": [], "error": null, "policy": {}
            });
            if let Some(s) = source {
                v["source"] = s.into();
            }
            serde_json::from_value(v).expect("drill")
        };
        let d = DbData {
            name: pgdrill_core::ids::DbName::parse("app").expect("db"),
            backups: Vec::new(),
            drills: vec![drill(Some("pgbackrest")), drill(None)],
            failure: None,
            failures: Vec::new(),
            damaged: Vec::new(),
            error: None,
            copies: Vec::new(),
        };
        let mut h = String::new();
        drills_table(&mut h, &d, &TimeZone::UTC);
        assert!(h.contains("<th>Source</th>"), "{h}");
        assert!(h.contains("<td>pgbackrest</td>"), "{h}");
        // A result written before sources existed reads as pgdrill's own.
        assert!(h.contains("<td>pgdrill</td>"), "{h}");
    }

    #[test]
    fn the_stores_table_names_the_store_missing_a_copy() {
        use pgdrill_core::ids::BackupId;
        use pgdrill_core::status::copies::Listed;
        let id = BackupId::parse("20261206T020000Z-aaaa").expect("id");
        let t = "2026-12-06T02:00:01Z".to_string();
        let d = DbData {
            name: pgdrill_core::ids::DbName::parse("app").expect("db"),
            backups: Vec::new(),
            drills: Vec::new(),
            failure: None,
            failures: Vec::new(),
            damaged: Vec::new(),
            error: None,
            copies: vec![
                Listed {
                    store: "primary".into(),
                    complete: Ok(vec![(id.clone(), t.clone())]),
                },
                Listed {
                    store: "offsite".into(),
                    complete: Ok(Vec::new()),
                },
                Listed {
                    store: "local".into(),
                    complete: Err("connection refused".into()),
                },
            ],
        };
        let now: Timestamp = "2026-12-06T03:00:00Z".parse().expect("now");
        let st = d.status(
            &pgdrill_core::config::Policy::default(),
            &pgdrill_core::status::DrillWindow::Days(30),
            now,
        );
        assert!(st.slos.iter().any(|s| s.name == "backup_copies" && !s.ok));
        let mut h = String::new();
        stores_table(&mut h, &st, &TimeZone::UTC);
        assert!(h.contains("<h3>Stores</h3>"), "{h}");
        assert!(h.contains("offsite") && h.contains("missing copies"), "{h}");
        assert!(h.contains(id.as_str()), "{h}");
        assert!(
            h.contains("unreachable") && h.contains("connection refused"),
            "{h}"
        );
    }
}
