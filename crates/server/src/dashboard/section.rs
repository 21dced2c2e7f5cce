//! One database's section of the dashboard: cards, SLOs, charts and the failures kept.

use super::tables::{backups_table, drills_table, stores_table};
use super::*;
use crate::charts::{self, Chart, Scale, Series};
pub(super) fn database(
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
pub(super) fn slo_detail(s: &pgdrill_core::status::Slo, d: &DbData, tz: &TimeZone) -> String {
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
pub(super) fn zoned_times(s: &str, tz: &TimeZone) -> String {
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
