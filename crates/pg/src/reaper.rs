//! A dead man's switch for what pgdrill starts and must not outlive it.
//!
//! pgdrill cleans up after itself when it ends, fails or is interrupted. When it is killed
//! outright (SIGKILL, the OOM killer, a pod evicted) nothing of that runs: a parallel pg_dump
//! paused by SIGSTOP would stay paused forever, holding its snapshot and table locks on the
//! source database; a throwaway cluster would keep running; a spool directory would fill the
//! disk. So each of those is watched by a tiny `sh` process that reads its standard input from
//! a pipe only this process writes to. When this process ends, however it ends, the kernel
//! closes the pipe, `read` returns, and the watchdog kills what it watches and removes its
//! directory. Dropping the [`Reaper`] (the normal end) kills the watchdog first, so it does
//! nothing.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The watchdog: waits for end of input, then does what its arguments say. `$1` is the mode,
/// `$2` its target, `$3` a directory to remove (may be empty).
const SCRIPT: &str = r#"read -r _ || :
case "$1" in
group) kill -KILL "-$2" 2>/dev/null ;;
postmaster)
  pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
  case "$pid" in
  ''|*[!0-9]*) ;;
  *)
    kill -QUIT "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL "$pid" 2>/dev/null ;;
  esac ;;
esac
if [ -n "$3" ]; then rm -rf -- "$3"; fi
"#;

/// What the watchdog stops when this process dies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Nothing: only the directory is removed.
    Nothing,
    /// A process group, killed with SIGKILL (which also ends a stopped process).
    Group(u32),
    /// The postmaster of this data directory (read from its `postmaster.pid` when the time
    /// comes): SIGQUIT (immediate shutdown), then SIGKILL after 10 s.
    PostmasterOf(PathBuf),
}

/// An armed watchdog; dropping it disarms it.
#[derive(Debug)]
pub struct Reaper {
    watchdog: Child,
    /// The write end of the watchdog's input: held, never written.
    _pipe: Option<ChildStdin>,
}

impl Reaper {
    /// Arms a watchdog that, should this process die before the reaper is dropped, stops
    /// `what` and removes `dir`.
    pub fn arm(what: Watch, dir: Option<&Path>) -> io::Result<Reaper> {
        let (mode, target) = match &what {
            Watch::Nothing => ("none".to_string(), String::new()),
            Watch::Group(pgid) => ("group".to_string(), pgid.to_string()),
            Watch::PostmasterOf(data) => ("postmaster".to_string(), data.display().to_string()),
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pgdrill-reaper")
            .arg(mode)
            .arg(target)
            .arg(dir.map(Path::as_os_str).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            // Its own group: a Ctrl-C at the terminal is pgdrill's to handle, not the
            // watchdog's.
            .process_group(0);
        let mut watchdog = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start /bin/sh: {e}")))?;
        let pipe = watchdog.stdin.take();
        Ok(Reaper {
            watchdog,
            _pipe: pipe,
        })
    }

    /// The watchdog's pid (for tests).
    pub fn watchdog_pid(&self) -> u32 {
        self.watchdog.id()
    }

    /// Closes the pipe as this process's death would, and waits for the watchdog to finish
    /// its work (for tests of the watchdog itself).
    #[doc(hidden)]
    pub fn fire_for_test(mut self) -> io::Result<std::process::ExitStatus> {
        self._pipe = None;
        self.watchdog.wait()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Kill before the pipe closes (fields drop after this), so the watchdog never acts.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A zombie counts as gone: its parent (this test) has not reaped it yet.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    #[test]
    fn a_fired_watchdog_kills_a_stopped_group_and_removes_its_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).expect("spool");
        std::fs::write(spool.join("0001.dat"), b"rows").expect("file");
        let mut sleeper = Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let pid = sleeper.id();
        rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(pid as i32).expect("pid"),
            rustix::process::Signal::STOP,
        )
        .expect("stop");
        let reaper = Reaper::arm(Watch::Group(pid), Some(&spool)).expect("arm");
        assert!(reaper.fire_for_test().expect("watchdog").success());
        assert!(gone(pid), "the stopped process survived its watchdog");
        let _ = sleeper.wait();
        assert!(!spool.exists(), "the directory was not removed");
    }

    #[test]
    fn a_dropped_reaper_leaves_everything_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let mut sleeper = Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let pid = sleeper.id();
        let reaper = Reaper::arm(Watch::Group(pid), Some(dir.path())).expect("arm");
        let watchdog = reaper.watchdog_pid();
        drop(reaper);
        assert!(gone(watchdog), "the watchdog outlived its reaper");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            sleeper.try_wait().expect("try_wait").is_none(),
            "a disarmed watchdog killed"
        );
        assert!(
            dir.path().exists(),
            "a disarmed watchdog removed the directory"
        );
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    #[test]
    fn a_postmaster_is_found_through_its_pid_file_when_the_time_comes() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data");
        let reaper = Reaper::arm(Watch::PostmasterOf(data.clone()), Some(dir.path())).expect("arm");
        // The pid file appears after arming (the server starts later).
        let mut server = Command::new("sleep").arg("600").spawn().expect("sleep");
        let pid = server.id();
        std::fs::write(
            data.join("postmaster.pid"),
            format!("{pid}\n{}\n", data.display()),
        )
        .expect("pid file");
        // Reaped as soon as it dies, as a daemonized postmaster is (a zombie would look
        // alive to `kill -0` and make the watchdog wait its full grace).
        let reaped = std::thread::spawn(move || server.wait());
        let started = Instant::now();
        assert!(reaper.fire_for_test().expect("watchdog").success());
        assert!(gone(pid), "the server survived");
        let status = reaped.join().expect("join").expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(rustix::process::Signal::QUIT.as_raw()),
            "the server was not asked to quit first"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(!dir.path().exists());
    }
}
