//! The dashboard's tables: a database's stores, backups and drills, and the scheduled jobs.

use super::*;

/// With several stores: one line per store (reachable, copies, newest, missing ones).
pub(super) fn stores_table(h: &mut String, st: &DbStatus, tz: &TimeZone) {
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

pub(super) fn backups_table(h: &mut String, d: &DbData, tz: &TimeZone) {
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

pub(super) fn drills_table(h: &mut String, d: &DbData, tz: &TimeZone) {
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

pub(super) fn jobs_table(h: &mut String, jobs: &[JobState], tz: &TimeZone, now: Timestamp) {
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
