use super::Output;
use crate::cli::DrillArgs;
use crate::context::Ctx;
use crate::ui::table;
use pgdrill_core::alert::EventKind;
use pgdrill_core::drill::{self, evidence::DrillResult, DrillJob};
use pgdrill_core::progress::Progress;
use pgdrill_core::{Error, Result};
use pgdrill_pg::ConnSpec;
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &DrillArgs) -> Result<Output> {
    let databases = ctx.settings.select(ctx.name.as_deref()).or_else(|e| {
        if ctx.settings.databases.is_empty() {
            Ok(Vec::new())
        } else {
            Err(e)
        }
    })?;
    let store = ctx.store()?;
    // A config naming only the store: drill every database found in it.
    let mut found;
    let owned: Vec<pgdrill_core::config::DatabaseSettings>;
    let databases: Vec<&pgdrill_core::config::DatabaseSettings> = if databases.is_empty() {
        found = pgdrill_core::catalog::databases(&store).await?;
        // `--name X` means that database alone, whatever else the store holds.
        if let Some(n) = ctx.name.as_deref() {
            if !found.iter().any(|f| f.as_str() == n) {
                let names: Vec<&str> = found.iter().map(|f| f.as_str()).collect();
                return Err(Error::Invalid(format!(
                    "{} holds no backups of a database named {n} (it has: {}); check --name",
                    store.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            found.retain(|f| f.as_str() == n);
        }
        owned = found
            .iter()
            .map(|n| pgdrill_core::config::DatabaseSettings {
                name: n.clone(),
                source: None,
                pg_dump_args: vec![],
                globals: false,
                drill: toml_empty(),
                audit: None,
            })
            .collect();
        owned.iter().collect()
    } else {
        databases
    };
    if databases.is_empty() {
        return Err(Error::Invalid(format!(
            "no database has backups in {}: run `pgdrill backup` first",
            store.display()
        )));
    }
    let keys = ctx.decryption_keys()?;
    let tools = ctx.tools();
    let notifier = crate::alerts::Notifier::new(ctx, &store)?;
    let mut results: Vec<DrillResult> = Vec::new();
    let mut human = String::new();
    let mut kept_json = Vec::new();
    // With several databases, one that cannot be drilled (no complete backup, a bad
    // setting) is reported beside the others' results instead of ending the run.
    let several = databases.len() > 1;
    let mut errors: Vec<(String, Error)> = Vec::new();
    // The worst drill's code: 4 (key) over 3 (integrity) over 1 (failed).
    let mut exit_code = 0u8;
    for db in databases {
        let target = target_for(ctx, args, db)?;
        let jobs = args
            .jobs
            .or_else(|| {
                db.drill
                    .get("jobs")
                    .and_then(|v| v.as_integer())
                    .map(|j| j as u32)
            })
            .or(ctx.settings.restore.jobs)
            .unwrap_or(1)
            .clamp(1, 64);
        let progress = Progress::new();
        let _g = ctx.ui.progress(progress.clone());
        ctx.ui.info(format!(
            "drilling {} backup {} into {}",
            db.name,
            args.backup,
            target
                .as_ref()
                .map(|t| t.redacted())
                .unwrap_or_else(|| "a throwaway local cluster".into())
        ));
        let held =
            pgdrill_core::lease::acquire(&store, &db.name, "drill", super::operate::LEASE_TTL)
                .await?;
        super::operate::warn_lease(ctx, &db.name, &held);
        let outcome = drill::run(DrillJob {
            store: &store,
            db,
            selector: &args.backup,
            target,
            tools: &tools,
            keys: keys.clone(),
            policy: &ctx.settings.policy,
            protected_targets: &ctx.settings.protected_targets,
            ignore_errors: &ctx.settings.restore.ignore_errors,
            skip_extensions: &ctx.settings.restore.skip_extensions,
            maintenance_work_mem: ctx.settings.restore.maintenance_work_mem.clone(),
            jobs,
            env: &ctx.env,
            report_dir: args.report_dir.as_ref().map(|d| {
                if results.is_empty() {
                    d.clone()
                } else {
                    d.join(db.name.as_str())
                }
            }),
            keep: args.keep,
            keep_on_failure: args.keep_on_failure,
            mirrors: &ctx.settings.mirrors,
            progress,
            cancel: ctx.cancel.clone(),
        })
        .await;
        held.release().await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) if several => {
                human.push_str(&format!("{}: cannot drill: {e}\n", db.name));
                notifier
                    .send(
                        ctx,
                        EventKind::DrillFailed,
                        db.name.as_str(),
                        format!("drill of {} could not run: {e}", db.name),
                        json!({}),
                    )
                    .await;
                errors.push((db.name.to_string(), e));
                continue;
            }
            Err(e) => return Err(e),
        };
        let r = &outcome.result;
        for w in &r.warnings {
            ctx.ui.warn(w);
        }
        exit_code = exit_code.max(outcome.exit_code);
        let (kind, summary) = if r.verdict == "pass" {
            (
                EventKind::DrillPassed,
                format!(
                    "drill {} of {} passed: RTO {}, RPO {}",
                    r.drill_id,
                    r.database,
                    fmt_min(r.rto.minutes),
                    fmt_min(r.rpo.minutes)
                ),
            )
        } else {
            let failed: Vec<&str> = r
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name.as_str())
                .collect();
            let why = r
                .error
                .clone()
                .unwrap_or_else(|| format!("failed checks: {}", failed.join(", ")));
            (
                EventKind::DrillFailed,
                format!("drill {} of {} failed: {why}", r.drill_id, r.database),
            )
        };
        notifier
            .send(
                ctx,
                kind,
                db.name.as_str(),
                summary,
                json!({"drill_id": r.drill_id, "backup_id": r.backup.id}),
            )
            .await;
        human.push_str(&render(&outcome.result));
        human.push_str(&format!("evidence: {}\n", outcome.report_dir.display()));
        if let Some((url, stop)) = &outcome.kept {
            human.push_str(&format!("kept: {url}\n"));
            if let Some(s) = stop {
                human.push_str(&format!("stop it with: {s}\n"));
            }
            kept_json.push(json!({"database": db.name, "url": url, "stop_command": stop}));
        }
        results.push(outcome.result);
    }
    Ok(summary(results, kept_json, errors, exit_code, human))
}

/// The run's output: one drill's result alone, or every result with the kept databases and
/// the databases that could not be drilled. A database that could not be drilled counts
/// like a failed drill, or as its error's code when that is integrity (3) or key (4):
/// 4 over 3 over 1.
fn summary(
    results: Vec<DrillResult>,
    kept_json: Vec<serde_json::Value>,
    errors: Vec<(String, Error)>,
    mut exit_code: u8,
    human: String,
) -> Output {
    let json = if results.len() == 1 && kept_json.is_empty() && errors.is_empty() {
        serde_json::to_value(&results[0]).unwrap_or_default()
    } else {
        let errs: Vec<serde_json::Value> = errors
            .iter()
            .map(|(db, e)| json!({"database": db, "error": e.to_string(), "exit_code": e.exit_code()}))
            .collect();
        json!({"drills": results, "kept": kept_json, "errors": errs})
    };
    for (_, e) in &errors {
        let c = e.exit_code();
        exit_code = exit_code.max(if matches!(c, 3 | 4) { c } else { 1 });
    }
    Output {
        json,
        human,
        exit_code,
    }
}

fn toml_empty() -> toml::Table {
    toml::Table::new()
}

fn target_for(
    ctx: &Ctx,
    args: &DrillArgs,
    db: &pgdrill_core::config::DatabaseSettings,
) -> Result<Option<ConnSpec>> {
    let env: Vec<(String, String)> = ctx
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let from_config = db.drill.get("target_url_env").and_then(|v| v.as_str()).map(|var| {
        ctx.env.get(var).cloned().filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::Invalid(format!("[database.drill] target_url_env names {var}, which is not set; export it or pass --target"))
        })
    });
    let url = match (&args.target, from_config) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(r)) => Some(r?),
        (None, None) => ctx
            .env
            .get("PGDRILL_TARGET_URL")
            .cloned()
            .filter(|s| !s.is_empty()),
    };
    url.map(|u| ConnSpec::parse_with_env(&u, &env).map_err(Error::from))
        .transpose()
}

fn fmt_min(m: Option<f64>) -> String {
    crate::ui::human_minutes(m)
}

pub fn render(r: &DrillResult) -> String {
    let mut s = format!(
        "{} drill {} of {} (backup {}): RTO {} {}, RPO {} {}\n",
        if r.verdict == "pass" { "PASS" } else { "FAIL" },
        r.drill_id,
        r.database,
        r.backup.id,
        fmt_min(r.rto.minutes),
        target_word(r.rto.passed, r.rto.target_minutes),
        fmt_min(r.rpo.minutes),
        target_word(r.rpo.passed, r.rpo.target_minutes),
    );
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
                c.actual.chars().take(90).collect(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        s.push_str(&table(&["RESULT", "CHECK", "ACTUAL"], &rows));
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
                r.verdict.clone(),
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
    let json = json!(all
        .iter()
        .map(|r| json!({
            "drill_id": r.drill_id, "database": r.database, "verdict": r.verdict, "backup_id": r.backup.id,
            "started_at": r.started_at, "rto_minutes": r.rto.minutes, "rto_passed": r.rto.passed,
            "rpo_minutes": r.rpo.minutes, "rpo_passed": r.rpo.passed,
            "checks_passed": r.checks.iter().filter(|c| c.passed).count(), "checks": r.checks.len(),
            "created_roles": r.created_roles, "skipped": r.skipped,
        }))
        .collect::<Vec<_>>());
    Ok(Output::ok(json, human))
}
