//! One scheduled job: run through the same core job as its command ([`pgdrill_core::jobs`]),
//! then told in one line. Each kind has a `run_*` step (build the job's input the way the
//! daemon wants it, run it) and, where the report needs it, a pure `*_summary` step, so the
//! wording of the daemon's log line and dashboard can change without touching how jobs run.

use crate::commands::{drill, mirror};
use crate::context::Ctx;
use pgdrill_core::jobs::{
    self,
    drill::{DrillEntry, DrillReport},
    JobEnv,
};
use pgdrill_core::time::Timestamp;
use pgdrill_core::{Error, Result};
use pgdrill_server::{JobKey, JobKind, JobLog, JobOutcome};

/// Runs one scheduled job through the same core job as its command, and says how it went:
/// `Ok((ok, summary))`, or the error that stopped it.
pub(super) async fn run_job(
    ctx: &Ctx,
    job: &JobKey,
    slot: Option<Timestamp>,
    events: &JobLog,
) -> Result<(bool, String)> {
    let store = ctx.store()?;
    let mut jx = ctx.job_env(&store);
    jx.events = events;
    jx.slot = slot;
    let name = ctx.name.as_deref();
    match job.kind {
        JobKind::Backup => run_backup(ctx, &jx, name).await,
        JobKind::Drill => run_drill(ctx, &jx, name).await,
        JobKind::Prune => run_prune(ctx, &jx, name).await,
        JobKind::Status => run_status(ctx, &jx).await,
        JobKind::Mirror => run_mirror(&jx, name).await,
    }
}

/// A backup of the configured database(s) to every configured store, as `pgdrill backup`
/// without flags does.
async fn run_backup(ctx: &Ctx, jx: &JobEnv<'_>, name: Option<&str>) -> Result<(bool, String)> {
    let keys = ctx.encryption_keys()?;
    let tools = pgdrill_core::backup::Tools::found(ctx.tools());
    let input = jobs::backup::BackupInput {
        databases: ctx.settings.select(name)?,
        keys: &keys,
        tools: &tools,
        configured: true,
        jobs: None,
        stores: ctx.named_stores(jx.store)?,
    };
    let r = jobs::backup::run(jx, input).await?;
    Ok(backup_summary(&r))
}

/// Ok only when every database was backed up and every store holds its copy: a store that
/// lacks one leaves the backup degraded, which the daemon must not show as green.
fn backup_summary(r: &jobs::backup::BackupReport) -> (bool, String) {
    let done = r.done.iter().map(|m| {
        format!(
            "backup {} ({} stored)",
            m.backup_id,
            pgdrill_core::summary::human_bytes(m.stored_bytes)
        )
    });
    let failed = r.failures.iter().map(|(_, e)| e.to_string());
    let degraded = r.copies.iter().flatten().filter(|c| !c.ok).map(|c| {
        format!(
            "store {} lacks its copy: {}",
            c.store,
            c.error.as_deref().unwrap_or("the copy failed")
        )
    });
    let summary = done
        .chain(failed)
        .chain(degraded)
        .collect::<Vec<_>>()
        .join("; ");
    let all_copies = r.copies.iter().flatten().all(|c| c.ok);
    (r.failures.is_empty() && all_copies, summary)
}

/// A drill of the latest backup, its evidence uploaded to the store.
async fn run_drill(ctx: &Ctx, jx: &JobEnv<'_>, name: Option<&str>) -> Result<(bool, String)> {
    // The evidence goes to the store (the dashboard serves it from there); the
    // local copy is only a by-product, kept out of the daemon's working dir.
    let dir = tempfile::tempdir().map_err(|e| {
        Error::Failed(format!(
            "cannot create a folder for the drill evidence: {e}"
        ))
    })?;
    let tools = ctx.tools();
    let read_from = ctx.read_stores()?;
    let input = jobs::drill::DrillInput {
        name,
        selector: "latest",
        target: None,
        report_dir: Some(dir.path().join("report")),
        keep: false,
        keep_on_failure: false,
        jobs: None,
        major: None,
        keys: ctx.decryption_keys()?,
        tools: &tools,
        read_from: &read_from,
    };
    let r = jobs::drill::run(jx, input).await?;
    Ok((r.exit_code() == 0, drill_summary(&r)))
}

/// One line about a drill run: the drill's id, verdict and checks, or the first database
/// that could not be drilled.
fn drill_summary(r: &DrillReport) -> String {
    if let [DrillEntry::Ran(o)] = r.entries.as_slice() {
        let d = &o.result;
        return format!(
            "drill {} {}: {}/{} checks passed{}",
            d.drill_id,
            d.verdict,
            d.checks.iter().filter(|c| c.passed).count(),
            d.checks.len(),
            d.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    match r.entries.first() {
        Some(DrillEntry::Ran(o)) => drill::render(&o.result)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        Some(DrillEntry::CouldNotRun(db, e)) => format!("{db}: cannot drill: {e}"),
        None => String::new(),
    }
}

/// Retention applied to every database of every store, then to the mirrors.
async fn run_prune(ctx: &Ctx, jx: &JobEnv<'_>, name: Option<&str>) -> Result<(bool, String)> {
    let databases = ctx.databases_to_list(jx.store).await?;
    let stores = ctx.stores()?;
    let r = jobs::prune::run(jx, &stores, databases, name, false).await?;
    Ok(prune_summary(&r))
}

/// One clause per database (and store), then the mirrors' "kept" lines, then the stores
/// that could not be pruned; only the last make the job not ok (the others were pruned).
fn prune_summary(r: &jobs::prune::PruneReport) -> (bool, String) {
    let lines: Vec<String> = r
        .databases
        .iter()
        .map(|(db, o)| {
            let p = &o.plan;
            let at = o
                .store
                .as_ref()
                .map(|s| format!(" in store {s}"))
                .unwrap_or_default();
            format!(
                "{db}{at}: {} kept, {} deleted, {} incomplete removed",
                p.keep.len(),
                p.delete.len(),
                p.delete_incomplete.len()
            )
        })
        .collect();
    let mirrors = r.mirrors.as_deref().unwrap_or_default();
    let mirror_lines = mirror::render_prune(mirrors).human;
    let mirror_lines = mirror_lines.lines().filter(|l| l.contains(" kept, "));
    let all: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .chain(mirror_lines)
        .chain(r.store_errors.iter().map(String::as_str))
        .collect();
    (r.store_errors.is_empty(), all.join("; "))
}

/// Every database's SLOs (and the fleet's drill coverage), judged and alerted on.
async fn run_status(ctx: &Ctx, jx: &JobEnv<'_>) -> Result<(bool, String)> {
    let databases = ctx.databases_to_list(jx.store).await?;
    let stores = ctx.stores()?;
    let report = jobs::status::run_fleet(jx, &stores, databases, &ctx.fleet).await?;
    let mut violated: Vec<&str> = report
        .databases
        .iter()
        .flat_map(|d| d.slos.iter())
        .filter(|slo| !slo.ok)
        .map(|slo| slo.name.as_str())
        .collect();
    if report.coverage.as_ref().is_some_and(|c| !c.ok) {
        violated.push("drill_coverage");
    }
    Ok(status_outcome(&violated))
}

/// The status job's verdict is the SLO verdict: a violated SLO is not an "ok" job (the
/// dashboard, the log line and `pgdrill_job_last_run_ok` would otherwise show a green "ok"
/// next to "SLO violated").
fn status_outcome(violated: &[&str]) -> (bool, String) {
    if violated.is_empty() {
        (true, "all SLOs met".into())
    } else {
        (false, format!("SLO violated: {}", violated.join(", ")))
    }
}

/// Every configured mirror (or the one named) updated; the first line of `mirror run`'s
/// output is the summary.
async fn run_mirror(jx: &JobEnv<'_>, name: Option<&str>) -> Result<(bool, String)> {
    let input = jobs::mirror::RunInput {
        name,
        ..Default::default()
    };
    let entries = jobs::mirror::run(jx, &input).await?;
    let out = mirror::render_run(entries);
    let first = out.human.lines().next().unwrap_or_default().to_string();
    Ok((out.exit_code == 0, first))
}

/// A job's verdict and one line about it: a backup or prune that failed for any database, or
/// a failing drill, is not ok; a job another host holds the lease of is skipped.
pub(super) fn outcome(kind: JobKind, result: Result<(bool, String)>) -> JobOutcome {
    let _ = kind;
    match result {
        Ok((ok, summary)) => JobOutcome {
            ok,
            skipped: false,
            summary,
            retry: false,
        },
        Err(e) => {
            // Another host or daemon runs this job now: not a failure of this one; tried
            // again later in case it dies holding the lease.
            let locked = matches!(e, Error::Locked(_));
            JobOutcome {
                ok: false,
                skipped: locked,
                summary: e.to_string(),
                retry: locked,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violated_slo_is_not_an_ok_status_job() {
        let (ok, summary) = status_outcome(&["drill_freshness", "rto"]);
        assert!(!ok, "{summary}");
        assert_eq!(summary, "SLO violated: drill_freshness, rto");
        let o = outcome(JobKind::Status, Ok((ok, summary)));
        assert!(!o.ok && !o.skipped);
        assert_eq!(status_outcome(&[]), (true, "all SLOs met".to_string()));
    }

    #[test]
    fn lease_conflict_is_a_skipped_job_not_a_failure() {
        for kind in [JobKind::Backup, JobKind::Drill, JobKind::Prune] {
            let o = outcome(
                kind,
                Err(Error::Locked("app is locked by a backup job".into())),
            );
            assert!(o.skipped && !o.ok, "{kind:?}");
            let o = outcome(kind, Err(Error::Failed("pg_dump failed".into())));
            assert!(!o.skipped && !o.ok, "{kind:?}");
        }
    }
}
