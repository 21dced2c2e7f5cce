//! `pgdrill drill` (runs the drill job, [`pgdrill_core::jobs::drill`]) and `pgdrill drills`.

use super::Output;
use crate::cli::DrillArgs;
use crate::context::Ctx;
use crate::ui::table;
use pgdrill_core::drill::{self, evidence::DrillResult};
use pgdrill_core::jobs::{
    self,
    drill::{fmt_min, DrillEntry, DrillInput, DrillReport},
};
use pgdrill_core::Result;
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &DrillArgs) -> Result<Output> {
    let store = ctx.store()?;
    let read_from = ctx.read_stores()?;
    let keys = ctx.decryption_keys()?;
    let tools = ctx.tools();
    let input = DrillInput {
        name: ctx.name.as_deref(),
        selector: &args.backup,
        target: args.target.as_deref(),
        report_dir: args.report_dir.clone(),
        keep: args.keep,
        keep_on_failure: args.keep_on_failure,
        jobs: args.jobs,
        major: args.major,
        keys,
        tools: &tools,
        read_from: &read_from,
    };
    let report = jobs::drill::run(&ctx.job_env(&store), input).await?;
    Ok(summary(&report))
}

/// The run's output: one drill's result alone, or every result with the kept databases and
/// the databases that could not be drilled.
fn summary(report: &DrillReport) -> Output {
    let mut human = String::new();
    let mut kept_json = Vec::new();
    for entry in &report.entries {
        let outcome = match entry {
            DrillEntry::Ran(o) => o,
            DrillEntry::CouldNotRun(db, e) => {
                human.push_str(&format!("{db}: cannot drill: {e}\n"));
                continue;
            }
        };
        human.push_str(&render(&outcome.result));
        human.push_str(&format!("evidence: {}\n", outcome.report_dir.display()));
        if let Some((url, stop)) = &outcome.kept {
            human.push_str(&format!("kept: {url}\n"));
            if let Some(s) = stop {
                human.push_str(&format!("stop it with: {s}\n"));
            }
            kept_json.push(
                json!({"database": outcome.result.database, "url": url, "stop_command": stop}),
            );
        }
    }
    let results: Vec<&DrillResult> = report.results().map(|o| &o.result).collect();
    let errors: Vec<_> = report.errors().collect();
    let json = if results.len() == 1 && kept_json.is_empty() && errors.is_empty() {
        serde_json::to_value(results[0]).unwrap_or_default()
    } else {
        let errs: Vec<serde_json::Value> = errors
            .iter()
            .map(|(db, e)| json!({"database": db, "error": e.to_string(), "exit_code": e.exit_code()}))
            .collect();
        json!({"drills": results, "kept": kept_json, "errors": errs})
    };
    Output {
        json,
        human,
        exit_code: report.exit_code(),
    }
}

pub fn render(r: &DrillResult) -> String {
    let mut s = format!(
        "{} drill {} of {} (backup {}): RTO {} {}, RPO {} {}\n",
        if r.passed() { "PASS" } else { "FAIL" },
        r.drill_id,
        r.database,
        r.backup.id,
        fmt_min(r.rto.minutes),
        target_word(r.rto.passed, r.rto.target_minutes),
        fmt_min(r.rpo.minutes),
        target_word(r.rpo.passed, r.rpo.target_minutes),
    );
    if let Some(u) = &r.upgrade {
        s.push_str(&format!(
            "upgrade rehearsal: PostgreSQL {} restored into PostgreSQL {}\n",
            u.from_version,
            u.to_version.as_deref().unwrap_or("(did not start)")
        ));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("error: {e}\n"));
    }
    let rows: Vec<Vec<String>> = r
        .checks
        .iter()
        .map(|c| {
            vec![
                if c.passed {
                    "pass".into()
                } else {
                    "FAIL".into()
                },
                c.name.clone(),
                c.expected.chars().take(60).collect(),
                c.actual.chars().take(90).collect(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        s.push_str(&table(&["RESULT", "CHECK", "EXPECTED", "ACTUAL"], &rows));
    }
    s
}

fn target_word(p: Option<bool>, t: Option<u64>) -> String {
    match (p, t) {
        (Some(true), Some(t)) => format!("(target {t}min: met)"),
        (Some(false), Some(t)) => format!("(target {t}min: MISSED)"),
        _ => "(no target)".into(),
    }
}

pub async fn list(ctx: &Ctx) -> Result<Output> {
    let store = ctx.store()?;
    let mut all = Vec::new();
    for db in ctx.databases_to_list(&store).await? {
        all.extend(drill::list(&store, &db).await?);
    }
    drill::sort_newest_first(&mut all);
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.drill_id.clone(),
                r.database.clone(),
                r.verdict.to_string(),
                r.backup.id.clone(),
                format!(
                    "{}/{}",
                    r.checks.iter().filter(|c| c.passed).count(),
                    r.checks.len()
                ),
                fmt_min(r.rto.minutes),
                fmt_min(r.rpo.minutes),
            ]
        })
        .collect();
    let human = if rows.is_empty() {
        "no drills recorded yet: run `pgdrill drill`\n".to_string()
    } else {
        table(
            &[
                "DRILL", "DATABASE", "VERDICT", "BACKUP", "CHECKS", "RTO", "RPO",
            ],
            &rows,
        )
    };
    let drills: Vec<_> = all.iter().map(pgdrill_core::summary::drill).collect();
    Ok(Output::ok(json!({ "drills": drills }), human))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_line_shows_the_expected_value_next_to_the_actual_one() {
        let r: DrillResult = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "drill_id": "20261101T000000Z-0000", "database": "app", "verdict": "fail",
            "started_at": "2026-11-01T00:00:00Z", "finished_at": "2026-11-01T00:01:00Z",
            "tool": {"name": "pgdrill", "version": "0"}, "host": "h",
            "backup": {"id": "x", "snapshot_time": "2026-11-01T00:00:00Z", "finished_at": "2026-11-01T00:00:00Z",
                       "server_version": "15", "pg_dump_version": "15", "objects": []},
            "target": {"kind": "ephemeral", "url": "u", "server_version": null, "kept": false},
            "stages": [], "rpo": {"minutes": 1.0, "target_minutes": 60, "passed": true},
            "rto": {"minutes": 0.5, "target_minutes": 30, "passed": true},
            "checks": [{"name": "invalid progress", "kind": "sql", "subject": "select 1", "expected": "= 0",
                        "actual": "3", "passed": false, "duration_seconds": 0.01}],
            "error": null, "policy": {}
        }))
        .expect("result");
        let text = render(&r);
        assert!(
            text.contains("EXPECTED") && text.contains("ACTUAL"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("FAIL") && l.contains("invalid progress"))
            .unwrap_or_else(|| panic!("no failed-check line in:\n{text}"));
        let (exp, act) = (
            line.find("= 0").expect("expected"),
            line.rfind('3').expect("actual"),
        );
        assert!(exp < act, "expected before actual: {line}");
    }
}
