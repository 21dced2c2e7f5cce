//! `/api/v1/`: the daemon's read-only JSON API, behind the dashboard's auth. Every answer is
//! one JSON object with `schema_version` (the shapes are in `docs/schemas/api-*.json`);
//! errors too (`{"schema_version": 1, "error": {"status": 404, "message": "..."}}`).
//!
//! - `status`: the SLOs of every database, as `pgdrill status --json`;
//! - `databases`: one line per database (backups, newest backup, last drill, SLOs met);
//! - `backups` and `drills`: per database, newest first, at most `limit` (default 50,
//!   at most 500) each, as `list --json` / `drills --json` print them; `?database=NAME`
//!   selects one, `?before=ID` pages on (the entries older than that id);
//! - `jobs`: the scheduled tasks: schedule, next run, running, last run and its outcome.

use crate::app::App;
use crate::response::Response;
use crate::state::{DbData, JobState};
use pgdrill_core::{status, summary};
use serde_json::{json, Value};

pub const SCHEMA_VERSION: u64 = 1;
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The answer to `GET /api/v1/<rest>` (`rest` without the prefix, `query` after the `?`).
pub fn route(app: &App, rest: &str, query: &str) -> Response {
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(why) => return error(400, &why),
    };
    match rest.trim_end_matches('/') {
        "status" => ok(status_doc(app)),
        "databases" => ok(databases(app)),
        "backups" => listing(app, &q, "backups", |d| {
            d.backups
                .iter()
                .map(|m| (m.backup_id.to_string(), summary::backup(m)))
                .collect()
        }),
        "drills" => listing(app, &q, "drills", |d| {
            d.drills
                .iter()
                .map(|r| (r.drill_id.clone(), summary::drill(r)))
                .collect()
        }),
        "jobs" => ok(jobs(app)),
        _ => error(
            404,
            "no such API endpoint: use /api/v1/status, databases, backups, drills or jobs",
        ),
    }
}

/// A JSON error answer.
pub fn error(status: u16, message: &str) -> Response {
    let body = json!({
        "schema_version": SCHEMA_VERSION,
        "error": {"status": status, "message": message},
    });
    Response::json(status, body.to_string())
}

fn ok(mut doc: Value) -> Response {
    if let Value::Object(m) = &mut doc {
        m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    }
    Response::json(200, doc.to_string())
}

struct Query {
    database: Option<String>,
    before: Option<String>,
    limit: usize,
}

impl Query {
    fn parse(q: &str) -> Result<Query, String> {
        let mut out = Query {
            database: None,
            before: None,
            limit: DEFAULT_LIMIT,
        };
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "database" => out.database = Some(v.to_string()),
                "before" => out.before = Some(v.to_string()),
                "limit" => {
                    out.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("limit must be a number from 1 to {MAX_LIMIT}, not {v:?}")
                        })?
                }
                _ => {
                    return Err(format!(
                        "unknown query parameter {k:?}: use database, before or limit"
                    ))
                }
            }
        }
        Ok(out)
    }
}

fn statuses(app: &App) -> Vec<(DbData, status::DbStatus)> {
    let now = app.clock.now();
    app.state
        .dbs()
        .into_iter()
        .map(|d| {
            let s = d.status(&app.policy, &app.drill_window, now);
            (d, s)
        })
        .collect()
}

fn status_doc(app: &App) -> Value {
    let all = statuses(app);
    let ok = all.iter().all(|(_, s)| s.ok());
    let dbs: Vec<_> = all.into_iter().map(|(_, s)| s).collect();
    json!({"ok": ok, "generated_at": app.clock.now().to_string(), "databases": dbs})
}

fn databases(app: &App) -> Value {
    let rows: Vec<Value> = statuses(app)
        .into_iter()
        .map(|(d, s)| {
            json!({
                "name": s.database,
                "ok": s.ok(),
                "backups": s.backups,
                "newest_backup": s.newest_backup,
                "newest_snapshot": s.newest_snapshot,
                "newest_age_seconds": s.newest_age_seconds,
                "drills": d.drills.len(),
                "last_drill": s.last_drill,
                "last_drill_verdict": s.last_drill_verdict,
                "violated": s.slos.iter().filter(|x| !x.ok).map(|x| x.name.clone()).collect::<Vec<_>>(),
                "store_error": d.error,
            })
        })
        .collect();
    json!({ "databases": rows })
}

/// Per database, the entries (newest first) older than `before`, at most `limit`.
fn listing(
    app: &App,
    q: &Query,
    key: &str,
    entries: impl Fn(&DbData) -> Vec<(String, Value)>,
) -> Response {
    let dbs = app.state.dbs();
    if let Some(name) = &q.database {
        if !dbs.iter().any(|d| d.name.as_str() == name) {
            return error(404, &format!("no database {name:?} is configured"));
        }
    }
    let mut out = Vec::new();
    for d in dbs
        .iter()
        .filter(|d| q.database.as_ref().is_none_or(|n| d.name.as_str() == n))
    {
        let all = entries(d);
        let start = match &q.before {
            // After `before` in the list (newest first); an id no longer listed (pruned
            // meanwhile): the first one older by its time prefix.
            Some(b) => all
                .iter()
                .position(|(id, _)| id == b)
                .map(|i| i + 1)
                .or_else(|| all.iter().position(|(id, _)| id < b))
                .unwrap_or(all.len()),
            None => 0,
        };
        let page: Vec<&(String, Value)> = all[start..].iter().take(q.limit).collect();
        let more = all.len() - start > page.len();
        let next = if more {
            page.last().map(|(id, _)| id.clone())
        } else {
            None
        };
        out.push(json!({
            "database": d.name.as_str(),
            key: page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            "next_before": next,
        }));
    }
    ok(json!({ "databases": out }))
}

fn jobs(app: &App) -> Value {
    let ts = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string());
    let rows: Vec<Value> = app
        .state
        .jobs()
        .iter()
        .map(|j: &JobState| {
            json!({
                "task": j.key.kind.name(),
                "database": j.key.database.as_ref().map(|d| d.as_str()),
                "schedule": j.schedule,
                "next_run": ts(j.next_run),
                "pending": j.pending,
                "running": j.running_since.is_some(),
                "running_since": ts(j.running_since),
                "last_started": ts(j.last_started),
                "last_duration_seconds": j.last_duration_seconds,
                "last_ok": j.last_ok,
                "last_summary": j.last_summary,
                "last_success": ts(j.last_success),
                "runs_ok": j.runs_ok,
                "runs_failed": j.runs_failed,
            })
        })
        .collect();
    json!({ "jobs": rows })
}
