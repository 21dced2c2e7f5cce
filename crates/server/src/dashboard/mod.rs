//! The read-only dashboard at `/`: one self-contained HTML page (inline CSS and SVG, no
//! script, no external assets), every value escaped.

use crate::app::App;
use crate::state::{DbData, JobState};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use pgdrill_core::status::DbStatus;
use std::fmt::Write;

mod section;
mod tables;
#[cfg(test)]
mod tests;

use section::database;
pub use section::humane_text;
use tables::jobs_table;

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
const STYLE: &str = include_str!("../dashboard.css");

/// Databases shown in full per page. A larger fleet gets one overview line per database
/// and its sections on pages of this many (`/?page=2`), so the page costs what it shows
/// (at 500 databases × 200 backups the single page was 80 MB of HTML).
pub const PAGE_SIZE: usize = 20;

/// The page `query` asks for (`page=N`, from 1; anything else is the first).
fn page_of(query: &str) -> usize {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// The dashboard's first page.
pub fn render(app: &App) -> String {
    render_page(app, "")
}

/// The dashboard for the query string of `/` (`page=N`).
pub fn render_page(app: &App, query: &str) -> String {
    let now = app.clock.now();
    let jobs = app.state.jobs();
    app.state
        .read_dbs(|dbs| page(app, dbs, &jobs, page_of(query), now))
}

fn page(app: &App, dbs: &[DbData], jobs: &[JobState], page: usize, now: Timestamp) -> String {
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
    let paged = dbs.len() > PAGE_SIZE;
    let pages = dbs.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let shown = (page - 1) * PAGE_SIZE..(page * PAGE_SIZE).min(dbs.len());
    let title = if paged {
        format!("{} databases", dbs.len())
    } else {
        dbs.iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>pgdrill: {}</title><style>{STYLE}</style></head><body>\
         <header class=top><div class=brand>pgdrill</div>\
         <div class=meta>store <code>{}</code> · times in {} · page generated {}</div>{overall}</header><main>",
        esc(&title),
        esc(&app.store_display),
        esc(&app.tz_name),
        esc(&when(now, &app.tz)),
    );
    if dbs.is_empty() {
        h.push_str("<section class=db><p class=muted>No database is configured or has backups in this store yet.</p></section>");
    }
    if paged {
        overview(&mut h, dbs, &statuses, page, pages);
    }
    for (d, st) in dbs[shown.clone()].iter().zip(&statuses[shown.clone()]) {
        database(&mut h, app, d, st, jobs, now);
    }
    if paged {
        pager(&mut h, page, pages);
    }
    // The jobs of the databases shown, and those of no database.
    let mine: Vec<JobState> = jobs
        .iter()
        .filter(|j| {
            !paged
                || j.key
                    .database
                    .as_ref()
                    .is_none_or(|n| dbs[shown.clone()].iter().any(|d| &d.name == n))
        })
        .cloned()
        .collect();
    jobs_table(&mut h, &mine, &app.tz, now);
    let _ = write!(
        h,
        "</main><footer>pgdrill {} · read-only dashboard · this page reloads every 60 s · \
         <a href=\"/metrics\">/metrics</a></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

/// A fleet larger than a page: one line per database, linking to its section's page.
fn overview(h: &mut String, dbs: &[DbData], statuses: &[DbStatus], page: usize, pages: usize) {
    let _ = write!(
        h,
        "<section class=db id=fleet><div class=db-head><h2>{} databases</h2></div>\
         <p class=muted>Each database in full on pages of {PAGE_SIZE}: this is page {page} of {pages}.</p>\
         <div class=scroll><table class=fleet><tr><th>Database</th><th>SLOs</th><th>Newest backup</th><th>Backups</th><th>Last drill</th><th>Violated</th></tr>",
        dbs.len()
    );
    for (i, (d, st)) in dbs.iter().zip(statuses).enumerate() {
        let violated: Vec<&str> = st
            .slos
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.name.as_str())
            .collect();
        let _ = write!(
            h,
            "<tr><td class=t><a href=\"/?page={}#db-{}\">{}</a></td><td>{}</td><td class=t>{}</td><td class=num>{}</td><td>{}</td><td class=muted>{}</td></tr>",
            i / PAGE_SIZE + 1,
            url_seg(d.name.as_str()),
            esc(d.name.as_str()),
            pill(Some(st.ok()), if st.ok() { "ok" } else { "violated" }),
            esc(&st.newest_age_seconds.map(ago).unwrap_or_else(|| "none".into())),
            st.backups,
            d.drills
                .first()
                .map(|r| pill(Some(r.passed()), r.verdict.as_str()))
                .unwrap_or_else(|| pill(None, "none")),
            esc(&violated.join(", ").replace('_', " ")),
        );
    }
    h.push_str("</table></div>");
    pager(h, page, pages);
    h.push_str("</section>");
}

fn pager(h: &mut String, page: usize, pages: usize) {
    h.push_str("<p class=pager>");
    for p in 1..=pages {
        if p == page {
            let _ = write!(h, "<strong>{p}</strong> ");
        } else {
            let _ = write!(h, "<a href=\"/?page={p}\">{p}</a> ");
        }
    }
    h.push_str("</p>");
}
