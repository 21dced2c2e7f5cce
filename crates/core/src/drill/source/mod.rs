//! Drills of physical backups made by other tools (`[database.drill] source = "pgbackrest"`,
//! `"barman-cloud"`, `"command"`; DESIGN.md §9): pick the backup → fetch it into an empty data
//! directory owned by the server's OS user → recovery settings (`recovery.signal`, the tool's
//! `restore_command`, `recovery_target_time` + `promote` when asked) → start the server on a
//! private unix socket and wait until recovery has ended → the configured checks (row counts
//! against a snapshot do not apply) → RPO from the point reached, RTO from fetch + recovery →
//! tear down → the same evidence as any drill, with `source` and `recovery` recorded.

mod barman;
mod command;
mod pgbackrest;
mod probe;
mod recover;
mod tool;

pub use probe::probe;
use recover::recover;

use super::checks::{self, CheckKind, CheckResult};
use super::evidence::*;
use super::{DrillJob, DrillOutcome, Log};
use crate::config::{Env, PhysicalDrill, PhysicalSource, Policy};
use crate::ids::DrillId;
use crate::time::{self, Timestamp};
use crate::{Error, Result};
use pgdrill_pg::cluster::Cluster;
use pgdrill_pg::{client, ConnSpec};
use std::time::Instant;

/// One backup a tool lists.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Listed {
    pub id: String,
    pub start: Option<Timestamp>,
    pub stop: Option<Timestamp>,
    /// Not failed or marked in error by the tool.
    pub usable: bool,
}

/// How to fill the data directory, and how recovery fetches WAL afterwards.
pub(super) struct Fetch {
    pub program: String,
    pub args: Vec<String>,
    /// For messages: `pgbackrest restore of set ...`.
    pub what: String,
    pub timeout: std::time::Duration,
    pub restore_command: Option<String>,
    pub extra_env: Vec<(String, String)>,
}

/// `wanted` when named (usable or not: asked for), else the newest usable backup that ended
/// at or before `target`, else the newest usable one. `listed` is oldest first.
pub(super) fn choose(
    listed: &[Listed],
    wanted: Option<&str>,
    target: Option<Timestamp>,
) -> Option<Listed> {
    if let Some(w) = wanted {
        return listed.iter().find(|l| l.id == w).cloned();
    }
    listed
        .iter()
        .rev()
        .filter(|l| l.usable)
        .find(|l| match (target, l.stop) {
            (Some(t), Some(stop)) => stop <= t,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .cloned()
}

/// The variables `env` names (exit 2 when one is unset), for the tool and the server.
fn named_env(p: &PhysicalDrill, env: &Env) -> Result<Vec<(String, String)>> {
    p.env
        .iter()
        .map(|name| {
            env.get(name)
                .map(|v| (name.clone(), v.clone()))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "[database.drill] env names {name}, which is not set; export it or remove it from env"
                    ))
                })
        })
        .collect()
}

/// What a successful fetch and recovery leave.
struct Recovered {
    cluster: Cluster,
    chosen: Listed,
    tool: String,
    /// The ends of every usable backup the tool lists (for the worst gap between backups).
    stops: Vec<Timestamp>,
    fetch_seconds: f64,
    recovery_seconds: f64,
}

pub(super) async fn run(job: DrillJob<'_>, p: &PhysicalDrill) -> Result<DrillOutcome> {
    let started_at = Timestamp::now();
    let id = DrillId::new(started_at);
    let mut log = Log {
        start: Instant::now(),
        lines: Vec::new(),
    };
    let kind = p.source.kind();
    let mut specs = checks::parse_checks(&job.db.drill, job.env)?;
    let before = specs.len();
    specs.retain(|s| !matches!(s.kind, CheckKind::RowCounts {}));
    let mut env = named_env(p, job.env)?;
    if let PhysicalSource::BarmanCloud(b) = &p.source {
        env.extend(barman::credentials(b, job.env)?);
    }
    log.say(format!(
        "drill {id} of {} from a {kind} backup ({})",
        job.db.name,
        match p.target_time {
            Some(t) => format!("recovery target {}", time::rfc3339_millis(t)),
            None => "all WAL replayed".into(),
        }
    ));
    if specs.len() < before {
        log.say("row counts against a snapshot do not apply to a physical backup: that check is left out");
    }
    if let Some(t) = &job.target {
        log.say(format!(
            "target {} is not used: a {kind} backup is recovered into a throwaway cluster",
            t.redacted()
        ));
    }
    let mut stages = Vec::new();
    let mut picked = None;
    let recovered = recover(&job, p, &env, &mut log, &mut stages, &mut picked).await;

    let dbname = p
        .dbname
        .clone()
        .unwrap_or_else(|| job.db.name.as_str().to_string());
    let Checked {
        results: check_results,
        error,
        server_version,
        replayed,
        target_url,
    } = match &recovered {
        Err(e) => {
            log.say(format!("the drill could not recover the backup: {e}"));
            Checked {
                results: Vec::new(),
                error: Some(e.clone()),
                server_version: None,
                replayed: None,
                target_url: "(not started)".into(),
            }
        }
        Ok(r) => check(&job, p, r, &dbname, &specs, &mut log, &mut stages).await?,
    };

    let finished_at = Timestamp::now();
    let point = recovered.as_ref().ok().and_then(|r| reached(r, replayed));
    let listed_stops: Vec<Timestamp> = recovered
        .as_ref()
        .map(|r| r.stops.clone())
        .unwrap_or_default();
    let rpo = rpo(
        point.map(|(t, _)| t),
        p.target_time,
        started_at,
        job.policy,
        &listed_stops,
    );
    let rto_seconds = recovered
        .as_ref()
        .ok()
        .map(|r| r.fetch_seconds + r.recovery_seconds);
    let rto = Target::evaluate(rto_seconds.map(|s| s / 60.0), job.policy.rto_minutes);
    let verdict_pass = error.is_none()
        && check_results.len() == specs.len()
        && check_results.iter().all(|c| c.passed)
        && rpo.passed != Some(false)
        && rto.passed != Some(false);

    // Tear down (or keep, as asked).
    let keep = job.keep || (job.keep_on_failure && !verdict_pass);
    let t_cleanup = log.elapsed();
    let mut kept = None;
    let (recovery, chosen) = match recovered {
        Ok(r) => {
            let info = Recovery {
                tool: r.tool.clone(),
                target_time: p.target_time.map(time::rfc3339_millis),
                reached: point.map(|(t, _)| time::rfc3339_millis(t)),
                reached_from: point.map(|(_, from)| from.to_string()),
                fetch_seconds: r.fetch_seconds,
                recovery_seconds: r.recovery_seconds,
            };
            let chosen = r.chosen.clone();
            if keep {
                let url = r.cluster.socket_url(&dbname);
                let stop = r.cluster.keep().stop_command;
                kept = Some((url, Some(stop)));
                log.say("the recovered cluster was kept (--keep)");
            } else {
                let c = r.cluster;
                let stopped = tokio::task::spawn_blocking(move || c.stop()).await;
                log.say(match stopped {
                    Ok(Ok(())) => "the recovered cluster was stopped and removed".to_string(),
                    other => format!("the recovered cluster did not stop cleanly: {other:?}"),
                });
            }
            (Some(info), Some(chosen))
        }
        Err(_) => (None, picked),
    };
    stages.push(Stage::new(
        if kept.is_some() {
            "keep target"
        } else {
            "clean up"
        },
        t_cleanup,
        log.elapsed() - t_cleanup,
    ));
    stages.push(Stage::new("total", 0.0, log.elapsed()));

    // result.json's backup times are always times: when recovery reached no point, the
    // backup's end (or start), else the drill's start (docs/result.schema.json says so).
    let ended = chosen.as_ref().and_then(|c| c.stop.or(c.start));
    let stamp = |t: Option<Timestamp>| time::rfc3339_millis(t.or(ended).unwrap_or(started_at));
    let result = DrillResult {
        schema_version: RESULT_SCHEMA_VERSION,
        drill_id: id.to_string(),
        database: job.db.name.to_string(),
        source: kind.into(),
        verdict: Verdict::from_passed(verdict_pass),
        started_at: time::rfc3339_millis(started_at),
        finished_at: time::rfc3339_millis(finished_at),
        tool: ToolVersion {
            name: "pgdrill".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        host: crate::lease::hostname(),
        backup: BackupRef {
            store: None,
            id: chosen
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_else(|| job.selector.to_string()),
            snapshot_time: stamp(point.map(|(t, _)| t)),
            finished_at: stamp(chosen.as_ref().and_then(|c| c.stop)),
            server_version: server_version.clone().unwrap_or_default(),
            pg_dump_version: "n/a (physical backup)".into(),
            objects: Vec::new(),
        },
        target: TargetInfo {
            kind: "ephemeral".into(),
            url: target_url,
            server_version,
            kept: kept.is_some(),
        },
        stages,
        rpo,
        rto,
        checks: check_results,
        created_roles: Vec::new(),
        skipped: Vec::new(),
        error,
        warnings: Vec::new(),
        policy: serde_json::to_value(job.policy).unwrap_or_default(),
        recovery,
        upgrade: None,
    };
    // What may be secret among the variables handed over: the credentials, and what `env`
    // names (long values only: a flag such as `true` or `posix` would garble the reports).
    let secrets: Vec<String> = env
        .iter()
        .filter(|(k, v)| {
            matches!(
                k.as_str(),
                "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN"
            ) || (p.env.contains(k) && v.len() >= 8)
        })
        .map(|(_, v)| v.clone())
        .collect();
    let exit_code = if verdict_pass { 0 } else { 1 };
    super::conclude(&job, &id, result, &log, &secrets, kept, exit_code).await
}

/// What running the checks on the recovered cluster found.
struct Checked {
    results: Vec<CheckResult>,
    error: Option<String>,
    server_version: Option<String>,
    replayed: Option<Timestamp>,
    target_url: String,
}

/// Connects to the recovered cluster (its socket, as `user`), reads the server version and
/// the last replayed transaction's time, and runs the checks in order.
async fn check(
    job: &DrillJob<'_>,
    p: &PhysicalDrill,
    r: &Recovered,
    dbname: &str,
    specs: &[checks::CheckSpec],
    log: &mut Log,
    stages: &mut Vec<Stage>,
) -> Result<Checked> {
    let mut check_results = Vec::new();
    let mut error = None;
    let mut server_version = None;
    let mut replayed = None;
    job.progress.stage("checks");
    let t_checks = log.elapsed();
    let target = ConnSpec::parse_with_env(&r.cluster.socket_url(dbname), &[])?;
    let target_url = target.redacted();
    match client::connect(&target).await {
        Ok(c) => {
            let facts = c
                .query_one(
                    "select extract(epoch from pg_last_xact_replay_timestamp())::float8, \
                     current_setting('server_version')",
                    &[],
                )
                .await;
            if let Ok(row) = facts {
                replayed = row.get::<_, Option<f64>>(0).and_then(time::from_epoch_secs);
                server_version = Some(row.get::<_, String>(1));
            }
            let backup_time = reached(r, replayed)
                .map(|(t, _)| time::rfc3339_millis(t))
                .unwrap_or_default();
            check_results =
                super::run_checks(job, specs, &c, &target, None, &backup_time, log).await;
        }
        Err(e) => {
            let msg = format!(
                "cannot connect to database {dbname} of the recovered cluster as {}: {e}; set [database.drill] dbname and user",
                p.user
            );
            log.say(&msg);
            error = Some(msg);
        }
    }
    stages.push(Stage::new("checks", t_checks, log.elapsed() - t_checks));
    Ok(Checked {
        results: check_results,
        error,
        server_version,
        replayed,
        target_url,
    })
}

/// The point the restored data stands at: the last transaction replayed, but never before
/// the backup's own end (nothing committed during the backup leaves no replay time).
fn reached(r: &Recovered, replayed: Option<Timestamp>) -> Option<(Timestamp, &'static str)> {
    let floor = r
        .chosen
        .stop
        .map(|t| (t, "backup stop"))
        .or_else(|| r.chosen.start.map(|t| (t, "backup label")));
    match (replayed, floor) {
        (Some(t), Some((f, from))) if f > t => Some((f, from)),
        (Some(t), _) => Some((t, "replay")),
        (None, f) => f,
    }
}

/// RPO: without a recovery target, drill start − the point reached (how old the newest
/// restorable data is); with one, target − point reached (what a recovery to that time would
/// lose). `stops` gives the worst gap between the backups' ends within the retention window.
fn rpo(
    point: Option<Timestamp>,
    target: Option<Timestamp>,
    now: Timestamp,
    policy: &Policy,
    stops: &[Timestamp],
) -> Target {
    let minutes = point.map(|p| {
        let upto = target.unwrap_or(now);
        (time::seconds_between(p, upto).max(0)) as f64 / 60.0
    });
    let mut t = Target::evaluate(minutes, policy.rpo_minutes);
    let mut s = stops.to_vec();
    s.sort();
    t.worst_gap_minutes = s
        .windows(2)
        .map(|w| time::seconds_between(w[0], w[1]) as f64 / 60.0)
        .reduce(f64::max);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(id: &str, stop: &str, usable: bool) -> Listed {
        Listed {
            id: id.into(),
            start: None,
            stop: time::parse(stop),
            usable,
        }
    }

    #[test]
    fn choose_picks_named_then_newest_before_target_then_newest() {
        let listed = [
            l("a", "2026-12-01T00:00:00Z", true),
            l("b", "2026-12-02T00:00:00Z", true),
            l("c", "2026-12-03T00:00:00Z", false),
        ];
        assert_eq!(
            choose(&listed, None, None).map(|c| c.id).as_deref(),
            Some("b")
        );
        assert_eq!(
            choose(&listed, Some("c"), None).map(|c| c.id).as_deref(),
            Some("c")
        );
        assert_eq!(
            choose(&listed, None, time::parse("2026-12-01T12:00:00Z"))
                .map(|c| c.id)
                .as_deref(),
            Some("a")
        );
        assert!(choose(&listed, None, time::parse("2026-11-01T00:00:00Z")).is_none());
        assert!(choose(&listed, Some("zz"), None).is_none());
    }

    #[test]
    fn rpo_is_from_the_target_when_one_is_set() {
        let policy = Policy {
            rpo_minutes: Some(10),
            ..Policy::default()
        };
        let p = time::parse("2026-12-01T00:00:00Z");
        let now = time::parse("2026-12-01T01:00:00Z").expect("t");
        let r = rpo(p, None, now, &policy, &[]);
        assert_eq!(r.minutes, Some(60.0));
        assert_eq!(r.passed, Some(false));
        let r = rpo(p, time::parse("2026-12-01T00:05:00Z"), now, &policy, &[]);
        assert_eq!(r.minutes, Some(5.0));
        assert_eq!(r.passed, Some(true));
        assert_eq!(rpo(None, None, now, &policy, &[]).passed, Some(false));
    }
}
