//! Pick, fetch, start and recover a physical backup: the part of the drill that can fail
//! because the backup is broken (its error is the sentence the evidence keeps).

use super::tool;
use super::{barman, choose, command, pgbackrest, Listed, Recovered};
use crate::config::{PhysicalDrill, PhysicalSource};
use crate::drill::evidence::Stage;
use crate::drill::{DrillJob, Log};
use crate::time::{self, Timestamp};
use pgdrill_pg::cluster::{RestoreDir, RestoredStart};
/// Pick, fetch, start and recover; every stage recorded. The error is the sentence the
/// evidence keeps.
pub(super) async fn recover(
    job: &DrillJob<'_>,
    p: &PhysicalDrill,
    env: &[(String, String)],
    log: &mut Log,
    stages: &mut Vec<Stage>,
    picked: &mut Option<Listed>,
) -> std::result::Result<Recovered, String> {
    let t0 = log.elapsed();
    job.progress.stage("select backup");
    let dir = tokio::task::spawn_blocking(RestoreDir::create)
        .await
        .map_err(|e| format!("preparing the data directory crashed: {e}"))?
        .map_err(|e| format!("cannot prepare a data directory: {e}"))?;
    let wanted = |configured: &Option<String>| match job.selector {
        "latest" => configured.clone(),
        s => Some(s.to_string()),
    };
    let cancel = &job.cancel;
    let usable_stops = |l: &[Listed]| -> Vec<Timestamp> {
        l.iter()
            .filter(|b| b.usable)
            .filter_map(|b| b.stop)
            .collect()
    };
    let (chosen, fetch, tool, stops) = match &p.source {
        PhysicalSource::PgBackRest(s) => {
            let tool = pgbackrest::version(&dir, env, cancel)
                .await
                .map_err(|e| e.to_string())?;
            let listed = pgbackrest::list(s, &dir, env, cancel)
                .await
                .map_err(|e| e.to_string())?;
            let chosen = choose(&listed, wanted(&s.set).as_deref(), p.target_time)
                .ok_or_else(|| no_backup("pgbackrest", &listed, p))?;
            let f = pgbackrest::fetch(s, p, &chosen, &dir);
            (chosen, f, tool, usable_stops(&listed))
        }
        PhysicalSource::BarmanCloud(s) => {
            let tool = barman::version(&dir, env, cancel)
                .await
                .map_err(|e| e.to_string())?;
            let listed = barman::list(s, &dir, env, cancel)
                .await
                .map_err(|e| e.to_string())?;
            let chosen = choose(&listed, wanted(&s.backup_id).as_deref(), p.target_time)
                .ok_or_else(|| no_backup("barman-cloud", &listed, p))?;
            let f = barman::fetch(s, &chosen, &dir);
            (chosen, f, tool, usable_stops(&listed))
        }
        PhysicalSource::Command(c) => {
            let f = command::fetch(c, p, job.selector, &dir);
            let chosen = Listed {
                id: job.selector.to_string(),
                start: None,
                stop: None,
                usable: true,
            };
            (chosen, f, c.run.join(" "), Vec::new())
        }
    };
    log.say(format!("{tool}: backup {} chosen", chosen.id));
    *picked = Some(chosen.clone());
    stages.push(Stage::new("select backup", t0, log.elapsed() - t0));

    job.progress.stage("fetch");
    let t_fetch = log.elapsed();
    let mut cmd = dir.command(&fetch.program);
    cmd.args(&fetch.args)
        .envs(env.iter().cloned())
        .envs(fetch.extra_env.iter().cloned());
    let ran = tool::run(cmd, &fetch.what, fetch.timeout, cancel)
        .await
        .map_err(|e| e.to_string())?;
    for l in ran.stdout.iter().chain(&ran.stderr).take(200) {
        log.lines.push(format!("    {l}"));
    }
    if !ran.ok {
        return Err(format!(
            "{} failed ({}): {}",
            fetch.what,
            ran.status,
            ran.tail(10)
        ));
    }
    let fetch_seconds = log.elapsed() - t_fetch;
    stages.push(Stage::new("fetch", t_fetch, fetch_seconds));
    log.say(format!("{} took {fetch_seconds:.1}s", fetch.what));

    let mut chosen = chosen;
    if let Some((start, label)) = dir.backup_label() {
        log.say(format!("backup_label: {label} (start {start})"));
        chosen.start = chosen.start.or_else(|| time::parse_civil_utc(&start));
        if matches!(p.source, PhysicalSource::Command(_)) && !label.is_empty() {
            chosen.id = label;
        }
    }
    let major = dir
        .major()
        .ok_or_else(|| format!("{} left no PG_VERSION in the data directory: it did not restore a PostgreSQL data directory", fetch.what))?;
    let install = job
        .tools
        .installs()
        .iter()
        .find(|i| i.version.major == major && i.has_server())
        .cloned()
        .ok_or_else(|| format!("the backup is of PostgreSQL {major}, whose server binaries (pg_ctl, postgres) are not installed here: install them or point PGDRILL_PG_BIN at them"))?;

    job.progress.stage("recovery");
    let t_rec = log.elapsed();
    let mut settings = Vec::new();
    if let Some(rc) = &fetch.restore_command {
        settings.push(("restore_command".to_string(), noted_restore_command(rc)));
    }
    if let Some(t) = p.target_time {
        settings.push(("recovery_target_time".into(), time::pg_utc_millis(t)));
        settings.push(("recovery_target_action".into(), "promote".into()));
    }
    log.say(format!(
        "starting PostgreSQL {} on the restored data directory ({})",
        install.version,
        if fetch.restore_command.is_some() {
            "archive recovery"
        } else {
            "replaying the WAL it holds"
        }
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = RestoredStart {
        install,
        settings,
        env: env.to_vec(),
        archive_recovery: fetch.restore_command.is_some(),
        user: p.user.clone(),
        timeout: p.recovery_timeout,
        stop: Some(stop.clone()),
    };
    // The wait for recovery blocks a thread: the job's cancel token reaches it by a flag.
    let watcher = {
        let mut cancel = job.cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let started = tokio::task::spawn_blocking(move || dir.start(opts)).await;
    watcher.abort();
    let cluster = started
        .map_err(|e| format!("the recovery crashed: {e}"))?
        .map_err(|e| {
            let e = e.to_string();
            format!(
                "recovery of {} {} failed{}: {e}",
                p.source.kind(),
                chosen.id,
                last_unfetched(&e)
                    .map(|f| format!(" (the last WAL file restore_command could not fetch: {f})"))
                    .unwrap_or_default()
            )
        })?;
    let recovery_seconds = log.elapsed() - t_rec;
    stages.push(Stage::new("recovery", t_rec, recovery_seconds));
    log.say(format!("recovery ended after {recovery_seconds:.1}s"));
    Ok(Recovered {
        cluster,
        chosen,
        tool,
        stops,
        fetch_seconds,
        recovery_seconds,
    })
}

/// `rc`, noting in the server log each file it could not fetch: the segment a broken backup
/// lacks is then named in the error's log lines. The exit status is kept (above 125 stops
/// recovery, as PostgreSQL documents).
fn noted_restore_command(rc: &str) -> String {
    format!("{rc} || {{ s=$?; echo \"pgdrill: restore_command could not fetch %f (exit $s)\" >&2; exit $s; }}")
}

/// The last WAL segment (not a timeline history file) that [`noted_restore_command`] said
/// it could not fetch, in a server log.
fn last_unfetched(log: &str) -> Option<&str> {
    log.lines()
        .rev()
        .filter_map(|l| l.split("restore_command could not fetch ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|f| !f.ends_with(".history"))
}

fn no_backup(tool: &str, listed: &[Listed], p: &PhysicalDrill) -> String {
    match (listed.is_empty(), p.target_time) {
        (true, _) => format!("{tool} lists no backup: make one first"),
        (false, Some(t)) => format!(
            "{tool} lists no usable backup that ended before the recovery target {}",
            time::rfc3339_millis(t)
        ),
        (false, None) => format!("{tool} lists no usable backup (or not the one asked for)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_segment_is_named() {
        let log = "pgdrill: restore_command could not fetch 00000002.history (exit 1)\n\
                   pgdrill: restore_command could not fetch 000000010000000000000002 (exit 1)\n\
                   FATAL:  could not locate required checkpoint record";
        assert_eq!(last_unfetched(log), Some("000000010000000000000002"));
        assert_eq!(last_unfetched("FATAL: other"), None);
    }
}
