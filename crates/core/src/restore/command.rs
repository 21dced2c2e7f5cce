//! The pg_restore command line (built here only) and running it as a child process.

use super::guards::maintenance_db;
use super::{interrupted, RestoreJob};
use crate::cancel::Cancel;
use crate::config::MemorySize;
use crate::{Error, Result};
use pgdrill_pg::child;
use pgdrill_pg::PgInstall;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

mod items;
pub(super) use items::run_counted;
pub use items::trace_item_counts_for_tests;

/// A temp file holding a `--use-list`.
pub(super) fn list_file(text: &str) -> Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("pgdrill-list-")
        .tempfile()
        .map_err(|e| Error::Failed(format!("cannot write a restore list: {e}")))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| Error::Failed(format!("cannot write a restore list: {e}")))?;
    Ok(f)
}

/// One pg_restore run. Always `--no-owner --no-password`; the rest as set here.
#[derive(Clone, Default)]
pub(super) struct PgRestore<'a> {
    /// `--create`: pg_restore connects to the maintenance database, creates the dump's
    /// database (whose name the guards checked equals the target's) and switches to it.
    pub(super) create: bool,
    /// `--clean --if-exists`.
    pub(super) clean: bool,
    pub(super) single_txn: bool,
    /// Restore GRANTs (else `--no-privileges`).
    pub(super) privileges: bool,
    pub(super) exit_on_error: bool,
    /// `--use-list` file: the archive entries to restore, in order.
    pub(super) list: Option<&'a Path>,
    /// `--jobs`.
    pub(super) jobs: Option<u32>,
    /// The archive file; `None`: the archive comes on stdin (piped).
    pub(super) file: Option<&'a Path>,
    /// Server settings for pg_restore's sessions (before the URL's own `options`).
    pub(super) settings: &'a [(&'a str, &'a str)],
    /// `--verbose`, its messages in English (`LC_MESSAGES=C`): what [`run_counted`] reads.
    pub(super) verbose: bool,
}

impl PgRestore<'_> {
    /// The command, connecting to the target with the password in `passfile`.
    pub(super) fn command(
        &self,
        job: &RestoreJob<'_>,
        install: &PgInstall,
        passfile: Option<&Path>,
    ) -> Command {
        let mut cmd = child::command(&install.bin("pg_restore"), &job.target, passfile);
        let db = if self.create {
            maintenance_db(&job.target)
        } else {
            job.target.dbname.clone()
        };
        cmd.args(self.args(&db));
        if self.file.is_none() {
            cmd.stdin(Stdio::piped());
        }
        if self.verbose {
            cmd.env("LC_MESSAGES", "C");
        }
        if let Some(opts) = pg_options(
            self.settings,
            job.target.param("options"),
            job.maintenance_work_mem.as_ref().map(MemorySize::as_str),
        ) {
            cmd.env("PGOPTIONS", opts);
        }
        cmd
    }

    fn args(&self, db: &str) -> Vec<String> {
        let mut a = vec![
            format!("--dbname={db}"),
            "--no-owner".into(),
            "--no-password".into(),
        ];
        if !self.privileges {
            a.push("--no-privileges".into());
        }
        if self.clean {
            a.extend(["--clean".into(), "--if-exists".into()]);
        }
        if self.single_txn {
            a.push("--single-transaction".into());
        }
        if self.create {
            a.push("--create".into());
        }
        if self.exit_on_error {
            a.push("--exit-on-error".into());
        }
        if let Some(l) = self.list {
            a.push(format!("--use-list={}", l.display()));
        }
        if let Some(j) = self.jobs {
            a.push(format!("--jobs={j}"));
        }
        if self.verbose {
            a.push("--verbose".into());
        }
        if let Some(f) = self.file {
            a.push(f.display().to_string());
        }
        a
    }
}

/// `pg_restore --list --create FILE`: the table of contents as text (no connection).
pub(super) fn list_command(job: &RestoreJob<'_>, install: &PgInstall, file: &Path) -> Command {
    let mut cmd = child::command(&install.bin("pg_restore"), &job.target, None);
    cmd.args(["--list", "--create"])
        .arg(file)
        .stdout(Stdio::piped());
    cmd
}

/// Starts a pg_restore command.
pub(super) fn spawn(cmd: Command) -> Result<child::Child> {
    child::Child::spawn(cmd, child::Keep::MANY).map_err(|e| Error::Failed(e.to_string()))
}

/// Waits for `proc` to end; on a signal, stops it (SIGTERM, then SIGKILL after 5 s) and
/// returns the interruption.
pub(super) async fn wait(proc: &mut child::Child, cancel: &mut Cancel) -> Result<ExitStatus> {
    let r = tokio::select! {
        r = proc.wait() => r,
        _ = cancel.cancelled() => {
            proc.stop(STOP_GRACE).await;
            return Err(interrupted());
        }
    };
    r.map_err(|e| Error::Failed(format!("cannot wait for pg_restore: {e}")))
}

/// How long pg_restore gets between SIGTERM and SIGKILL.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `cmd` (stdin not piped) to its end: its exit status and stderr lines.
pub(super) async fn run(cmd: Command, cancel: &mut Cancel) -> Result<(ExitStatus, Vec<String>)> {
    let mut proc = spawn(cmd)?;
    let status = wait(&mut proc, cancel).await;
    let lines = proc.stderr_lines();
    Ok((status?, lines))
}

/// `PGOPTIONS` for a pg_restore child, if it needs one: `settings` (server settings for its session),
/// then any `options` the target URL has (so the user's own win), then the restore's
/// `maintenance_work_mem`.
pub(super) fn pg_options(
    settings: &[(&str, &str)],
    url_options: Option<&str>,
    maintenance_work_mem: Option<&str>,
) -> Option<String> {
    if settings.is_empty() && maintenance_work_mem.is_none() {
        return None;
    }
    let mut opts: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("-c {k}={v}"))
        .collect();
    opts.extend(url_options.filter(|o| !o.is_empty()).map(str::to_string));
    opts.extend(maintenance_work_mem.map(|m| format!("-c maintenance_work_mem={m}")));
    Some(opts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_restore_sessions_get_settings_that_the_url_can_override() {
        assert_eq!(pg_options(&[], Some("-c work_mem=8MB"), None), None);
        assert_eq!(
            pg_options(
                &[("max_parallel_maintenance_workers", "0")],
                Some("-c max_parallel_maintenance_workers=4"),
                Some("1GB")
            )
            .as_deref(),
            Some("-c max_parallel_maintenance_workers=0 -c max_parallel_maintenance_workers=4 -c maintenance_work_mem=1GB")
        );
        assert_eq!(
            pg_options(&[], None, Some("512MB")).as_deref(),
            Some("-c maintenance_work_mem=512MB")
        );
    }

    #[test]
    fn pg_restore_command_lines() {
        let (list, file) = (Path::new("/tmp/l"), Path::new("/tmp/dump"));
        let pipe = PgRestore {
            single_txn: true,
            clean: true,
            list: Some(list),
            ..PgRestore::default()
        };
        assert_eq!(
            pipe.args("app").join(" "),
            "--dbname=app --no-owner --no-password --no-privileges --clean --if-exists --single-transaction --use-list=/tmp/l"
        );
        let spool = PgRestore {
            privileges: true,
            create: true,
            exit_on_error: true,
            jobs: Some(4),
            file: Some(file),
            ..PgRestore::default()
        };
        assert_eq!(
            spool.args("postgres").join(" "),
            "--dbname=postgres --no-owner --no-password --create --exit-on-error --jobs=4 /tmp/dump"
        );
    }
}
