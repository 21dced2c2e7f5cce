//! What each channel says. Every function takes an already redacted event.

use super::{AlertEvent, EventKind, VERSION};
use serde_json::{json, Value};

fn when(ev: &AlertEvent) -> String {
    crate::time::rfc3339_secs(ev.at)
}

/// Slack `mrkdwn`: `&`, `<` and `>` must be escaped; a backtick would end the code span.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(super) fn slack_text(ev: &AlertEvent) -> String {
    let icon = match ev.kind {
        EventKind::Recovered | EventKind::BackupSucceeded | EventKind::DrillPassed => {
            ":white_check_mark:"
        }
        EventKind::JobStarted => ":hourglass_flowing_sand:",
        _ => ":rotating_light:",
    };
    format!(
        "{icon} *pgdrill: {title}* for database `{db}`\n{summary}\n_{at}_",
        title = ev.kind.title(),
        db = slack_escape(&ev.database).replace('`', "'"),
        summary = slack_escape(&ev.summary),
        at = when(ev),
    )
}

pub(super) fn webhook_json(ev: &AlertEvent) -> Value {
    json!({
        "source": "pgdrill",
        "version": VERSION,
        "kind": ev.kind,
        "title": ev.kind.title(),
        "failing": ev.kind.is_failure(),
        "database": ev.database,
        "summary": ev.summary,
        "details": ev.details,
        "at": when(ev),
    })
}

/// The body of a ping; healthchecks.io keeps it in the check's log.
pub(super) fn ping_text(ev: &AlertEvent) -> String {
    format!(
        "pgdrill {}: {}: {}",
        ev.kind.title(),
        ev.database,
        ev.summary
    )
}

pub(super) fn email_subject(ev: &AlertEvent) -> String {
    let subject = format!("[pgdrill] {} {}", ev.kind.as_str(), ev.database);
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn email_body(ev: &AlertEvent) -> String {
    let mut body = format!(
        "pgdrill: {title}\n\nDatabase: {db}\nEvent:    {kind}\nAt:       {at}\n\n{summary}\n",
        title = ev.kind.title(),
        db = ev.database,
        kind = ev.kind.as_str(),
        at = when(ev),
        summary = ev.summary,
    );
    let details = render_details(&ev.details);
    if !details.is_empty() {
        body.push_str("\nDetails:\n");
        body.push_str(&details);
    }
    body.push_str(&format!("\n-- \npgdrill {VERSION}\n"));
    body
}

/// Top-level fields one per line; multi-line strings (logs, stderr) verbatim below their key.
fn render_details(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if s.contains('\n') => format!("{k}:\n{}\n", s.trim_end()),
                Value::String(s) => format!("{k}: {s}\n"),
                other => format!("{k}: {other}\n"),
            })
            .collect(),
        other => format!(
            "{}\n",
            serde_json::to_string_pretty(other).unwrap_or_default()
        ),
    }
}
