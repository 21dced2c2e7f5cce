//! Every external program pgdrill runs starts and ends here: the PostgreSQL clients
//! (pg_dump, pg_dumpall, pg_restore, psql), the throwaway cluster's initdb and pg_ctl, the
//! `--version` probes, and a drill's user command.
//! - [`command`]: a client's environment cleared down to the allowlist of
//!   [`crate::conninfo::basic_child_env`] plus the connection's own settings (the password
//!   only through a pgpass file, never argv or environment); [`plain`]: the allowlist alone
//!   (server binaries, probes); [`user_command`]: a drill's `command` check, which inherits
//!   pgdrill's environment minus the source's URLs and libpq's variables (its documented rule);
//! - [`Child::spawn`]: stderr (and stdout, [`Child::capture_stdout`]) captured on a thread of
//!   its own into a bounded buffer (the first and the last lines; the rest is read and
//!   dropped, so the program never blocks on a full pipe); [`run`] for a short blocking run;
//! - [`Child::wait`]: the exit noticed at once (a blocking `waitid(WNOWAIT)` on a worker
//!   thread), not by polling;
//! - [`Child::stop`]: SIGTERM (pg_restore then cancels its queries and stops its workers),
//!   SIGKILL after a grace period; signals are sent with `rustix`;
//! - dropping a [`Child`] that still runs kills it and reaps it.

use crate::ConnSpec;
use std::io;
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A command for `program` connecting with `conn` (password through `passfile`): allowlisted
/// environment, stdin and stdout closed, stderr piped. Callers add arguments and may pipe
/// stdin or stdout.
pub fn command(program: &Path, conn: &ConnSpec, passfile: Option<&Path>) -> Command {
    let mut cmd = Command::new(program);
    conn.configure_child(&mut cmd, passfile);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A command for `program` with the allowlisted environment of
/// [`crate::conninfo::basic_child_env`] alone: stdin and stdout closed, stderr piped.
pub fn plain(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    crate::conninfo::basic_child_env(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A command for a user's program (a drill's `command` check): unlike the others it inherits
/// pgdrill's environment (the user's tools need their own settings), minus every variable in
/// `hide` (the source database's URLs) and the libpq variables of
/// [`ConnSpec::inherited_vars_to_clear`]; the caller adds the target's. stdin closed, stdout
/// and stderr piped.
pub fn user_command<'a>(
    program: impl AsRef<std::ffi::OsStr>,
    hide: impl IntoIterator<Item = &'a str>,
) -> Command {
    let mut cmd = Command::new(program);
    for v in hide {
        cmd.env_remove(v);
    }
    for v in ConnSpec::inherited_vars_to_clear() {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What [`run`] returns: the exit status and the lines kept of stdout and stderr.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Runs `cmd` to its end, blocking (no time limit: for programs that end by themselves, such
/// as `--version` probes, initdb and `pg_ctl -w -t N`): stdout and stderr piped and kept as
/// `keep` says.
pub fn run(mut cmd: Command, keep: Keep) -> io::Result<Finished> {
    cmd.stdout(Stdio::piped());
    let mut child = Child::spawn(cmd, keep)?;
    child.capture_stdout(keep);
    let status = child.wait_blocking()?;
    Ok(Finished {
        status,
        stdout: child.stdout_lines(),
        stderr: child.stderr_lines(),
    })
}

/// How much of a child's stderr is kept: the first `head` lines and the last `tail` lines.
#[derive(Clone, Copy, Debug)]
pub struct Keep {
    pub head: usize,
    pub tail: usize,
}

impl Keep {
    /// pg_restore: every error line matters (they are classified and counted).
    pub const MANY: Keep = Keep {
        head: 10_000,
        tail: 100,
    };
    /// pg_dump: the last lines say why it stopped.
    pub const LAST: Keep = Keep { head: 0, tail: 20 };
    /// Nothing: the output is read and dropped.
    pub const NONE: Keep = Keep { head: 0, tail: 0 };
}

/// Longest output line kept (a `Command was:` line may quote a whole function body).
pub const MAX_LINE: usize = 64 << 10;

/// A running program that never outlives pgdrill's interest in it.
pub struct Child {
    inner: std::process::Child,
    /// The program's path, for messages.
    program: String,
    stderr: Option<Capture>,
    stdout: Option<Capture>,
    /// Set once the exit status was collected (the pid may be reused after that: no more
    /// signals).
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd` (stderr is piped whatever it was set to) and captures its stderr.
    pub fn spawn(cmd: Command, keep: Keep) -> io::Result<Child> {
        Child::spawn_watching(cmd, keep, None)
    }

    /// As [`Child::spawn`], and every stderr line is also passed to `on_line` as it comes
    /// (on the capturing thread).
    pub fn spawn_watching(
        cmd: Command,
        keep: Keep,
        on_line: Option<LineHook>,
    ) -> io::Result<Child> {
        let filter = on_line.map(|mut hook| -> LineFilter {
            Box::new(move |line: String| {
                hook(&line);
                Some(line)
            })
        });
        Child::spawn_filtered(cmd, keep, filter)
    }

    /// As [`Child::spawn`], and every stderr line goes through `filter` as it comes (on the
    /// capturing thread): only what it returns is kept (as `keep` says).
    pub fn spawn_filtered(
        mut cmd: Command,
        keep: Keep,
        filter: Option<LineFilter>,
    ) -> io::Result<Child> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stderr(Stdio::piped());
        let mut inner = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
        let stderr = inner.stderr.take().map(|s| capture(s, keep, filter));
        Ok(Child {
            inner,
            program,
            stderr,
            stdout: None,
            status: None,
        })
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The pipe to the program's stdin (when piped), once.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.inner.stdin.take()
    }

    /// The pipe from the program's stdout (when piped), once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.inner.stdout.take()
    }

    /// Captures the program's stdout (when piped) like its stderr: lines kept as `keep` says,
    /// read on a thread of its own.
    pub fn capture_stdout(&mut self, keep: Keep) {
        if let Some(out) = self.inner.stdout.take() {
            self.stdout = Some(capture(out, keep, None));
        }
    }

    /// Resolves once the captured pipes (stderr, and stdout if captured) reached their end:
    /// the program and whatever it started closed them.
    pub async fn output_closed(&mut self) {
        for c in [self.stderr.as_mut(), self.stdout.as_mut()]
            .into_iter()
            .flatten()
        {
            c.closed().await;
        }
    }

    /// The exit status, if the program has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let s = self.inner.try_wait()?;
        self.status = s;
        Ok(s)
    }

    /// Waits for the exit, noticed at once. Cancel by dropping the future (the program keeps
    /// running: [`Child::stop`] it).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut exit = exit_notice(self.pid());
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let notice = async {
                match exit.as_mut() {
                    Some(rx) => drop(rx.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = notice => exit = None,
                // A slow poll besides, should the notice never come.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// The exit status if the program ends within `grace`.
    pub async fn exited_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(s)) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM if the program still runs.
    pub fn terminate(&mut self) {
        if let Ok(None) = self.try_wait() {
            signal(self.pid(), rustix::process::Signal::TERM);
        }
    }

    /// Kills the program (SIGKILL) if it still runs; does not wait.
    pub fn kill(&mut self) {
        if let Ok(None) = self.try_wait() {
            let _ = self.inner.kill();
        }
    }

    /// Stops the program if it still runs: SIGTERM, SIGKILL after `grace`. Returns the exit
    /// status.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.try_wait() {
            return Some(s);
        }
        self.terminate();
        if let Some(s) = self.exited_within(grace).await {
            return Some(s);
        }
        self.kill();
        self.wait().await.ok()
    }

    /// Blocks until the program ends (for blocking contexts).
    pub fn wait_blocking(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.inner.wait()?;
        self.status = Some(s);
        Ok(s)
    }

    /// The stderr lines kept; waits for the program to close its stderr (call after it
    /// ended). Empty the second time.
    pub fn stderr_lines(&mut self) -> Vec<String> {
        self.stderr.take().map(Capture::join).unwrap_or_default()
    }

    /// The stdout lines kept by [`Child::capture_stdout`], as [`Child::stderr_lines`].
    pub fn stdout_lines(&mut self) -> Vec<String> {
        self.stdout.take().map(Capture::join).unwrap_or_default()
    }

    /// Sends SIGTERM to the program once `cancelled` resolves, so that a stage blocked on it
    /// (a full pipe) ends too. Keep the [`Terminator`] only while the program is not reaped
    /// (its pid could be reused after): [`Terminator::finish`] before waiting for the exit.
    pub fn terminate_on(
        &self,
        cancelled: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Terminator {
        let pid = self.pid();
        Terminator(tokio::spawn(async move {
            cancelled.await;
            signal(pid, rustix::process::Signal::TERM);
        }))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.try_wait() {
            let _ = self.inner.kill();
            let _ = self.inner.wait();
        }
    }
}

/// See [`Child::terminate_on`].
pub struct Terminator(tokio::task::JoinHandle<()>);

impl Terminator {
    pub async fn finish(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// A notice, as soon as the child `pid` has exited, from a blocking `waitid(WNOWAIT)` on
/// a worker thread; the status is still collected by `try_wait`.
fn exit_notice(pid: u32) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        use rustix::process::{waitid, WaitId, WaitIdOptions};
        let _ = waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        );
        let _ = tx.send(());
    });
    Some(rx)
}

/// A pipe read to its end on a thread of its own, keeping the first `keep.head` and the last
/// `keep.tail` lines (each cut at [`MAX_LINE`] bytes).
struct Capture {
    thread: std::thread::JoinHandle<Vec<String>>,
    /// Fires when the reading is done (for async waiters; `join` blocks).
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Capture {
    async fn closed(&mut self) {
        if let Some(rx) = self.done.as_mut() {
            let _ = rx.await;
            self.done = None;
        }
    }

    fn join(self) -> Vec<String> {
        self.thread.join().unwrap_or_default()
    }
}

/// Called with each line of a child's stderr as it is read.
pub type LineHook = Box<dyn FnMut(&str) + Send>;

/// Called with each line of a child's stderr as it is read; returns the line to keep (the
/// same, rewritten, or `None` to drop it).
pub type LineFilter = Box<dyn FnMut(String) -> Option<String> + Send>;

fn capture(
    pipe: impl io::Read + Send + 'static,
    keep: Keep,
    on_line: Option<LineFilter>,
) -> Capture {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let lines = collect(io::BufReader::new(pipe), keep, on_line);
        let _ = tx.send(());
        lines
    });
    Capture {
        thread,
        done: Some(rx),
    }
}

fn collect(mut r: impl io::BufRead, keep: Keep, mut on_line: Option<LineFilter>) -> Vec<String> {
    let mut head = Vec::new();
    let mut tail = std::collections::VecDeque::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut r, &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if let Some(filter) = on_line.as_mut() {
            match filter(text) {
                Some(kept) => text = kept,
                None => continue,
            }
        }
        if head.len() < keep.head {
            head.push(text);
        } else if keep.tail > 0 {
            if tail.len() == keep.tail {
                tail.pop_front();
            }
            tail.push_back(text);
        }
    }
    head.extend(tail);
    head
}

/// Reads one line into `out`, keeping at most [`MAX_LINE`] bytes of it; returns the bytes
/// read (0 at the end).
fn read_line_capped(r: &mut impl io::BufRead, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (n, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
        r.consume(n);
        total += n;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests;
