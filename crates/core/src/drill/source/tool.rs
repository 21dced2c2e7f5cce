//! Running a backup tool (pgbackrest, barman-cloud-*, the user's command) to its end: bounded
//! by a timeout and the job's cancel token, its output kept for the log and the error.

use crate::cancel::Cancel;
use crate::{Error, Result};
use pgdrill_pg::child::{Child, Keep};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a tool printed, and whether it succeeded.
pub struct ToolRun {
    pub ok: bool,
    pub status: String,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl ToolRun {
    /// The last lines of its output (stderr, else stdout), for an error.
    pub fn tail(&self, n: usize) -> String {
        let lines = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Runs `cmd` (named `what` in errors) until it ends, `timeout` passes or the job is
/// cancelled (then it is stopped: SIGTERM, SIGKILL after 10 s).
pub async fn run(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<ToolRun> {
    cmd.stdout(Stdio::piped());
    let mut child = Child::spawn(cmd, Keep { head: 0, tail: 40 }).map_err(|e| {
        Error::Failed(format!(
            "cannot run {what}: {e} (is it installed and on PATH?)"
        ))
    })?;
    child.capture_stdout(Keep {
        head: 10_000,
        tail: 0,
    });
    let mut cancelled = cancel.clone();
    let status = tokio::select! {
        s = child.wait() => s.map_err(|e| Error::Failed(format!("cannot wait for {what}: {e}")))?,
        _ = tokio::time::sleep(timeout) => {
            child.stop(Duration::from_secs(10)).await;
            return Err(Error::Failed(format!(
                "{what} had not finished after {} s: raise its timeout or look at why it is slow",
                timeout.as_secs()
            )));
        }
        _ = cancelled.cancelled() => {
            child.stop(Duration::from_secs(10)).await;
            return Err(Error::Failed(format!("{what} was stopped: the drill was cancelled")));
        }
    };
    let (stdout, stderr) =
        tokio::task::spawn_blocking(move || (child.stdout_lines(), child.stderr_lines()))
            .await
            .unwrap_or_default();
    Ok(ToolRun {
        ok: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}

/// `s` as one word for `/bin/sh` (a `restore_command` is run by the shell).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` as one word of a `restore_command`: shell-quoted, and `%` doubled (PostgreSQL replaces
/// `%f`, `%p` and `%%` before the shell sees the line).
pub fn restore_word(s: &str) -> String {
    shell_quote(s).replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("--stanza=main"), "--stanza=main");
        assert_eq!(shell_quote("s3://b/p"), "s3://b/p");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(super::restore_word("p%q"), "'p%%q'");
    }
}
