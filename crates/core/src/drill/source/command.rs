//! `source = "command"`: any tool fills the data directory (WAL-G `backup-fetch`, pg_probackup,
//! a snapshot script, pg_basebackup). It runs without a shell, as the server's OS user, with
//! the allowlisted environment, the variables named in `env`, and:
//! - `PGDRILL_DATA_DIR`: the empty directory to fill;
//! - `PGDRILL_BACKUP`: `latest` or the backup the drill was asked for;
//! - `PGDRILL_TARGET_TIME`: the recovery target time, when one is set;
//! - `PGDRILL_RESTORE_COMMAND`: the `restore_command` recovery will use, when one is set.

use super::Fetch;
use crate::config::{CommandSource, PhysicalDrill};
use crate::time;
use pgdrill_pg::cluster::RestoreDir;
use std::time::Duration;

pub(super) fn fetch(
    c: &CommandSource,
    p: &PhysicalDrill,
    selector: &str,
    dir: &RestoreDir,
) -> Fetch {
    let mut extra_env = vec![
        (
            "PGDRILL_DATA_DIR".to_string(),
            dir.data_dir().display().to_string(),
        ),
        ("PGDRILL_BACKUP".to_string(), selector.to_string()),
    ];
    if let Some(t) = p.target_time {
        extra_env.push(("PGDRILL_TARGET_TIME".into(), time::pg_utc_millis(t)));
    }
    if let Some(rc) = &c.restore_command {
        extra_env.push(("PGDRILL_RESTORE_COMMAND".into(), rc.clone()));
    }
    Fetch {
        program: c.run[0].clone(),
        args: c.run[1..].to_vec(),
        what: format!("the fetch command {}", c.run[0]),
        timeout: Duration::from_secs(c.timeout_seconds),
        restore_command: c.restore_command.clone(),
        extra_env,
    }
}
