//! A cluster started from a data directory that a backup tool filled (pgBackRest, barman-cloud,
//! WAL-G, pg_basebackup, ...) instead of `initdb`: [`RestoreDir`] is the empty directory (owned
//! by the server's OS user) the tool writes into; [`RestoreDir::start`] writes the recovery
//! settings, starts the server on a unix socket only and waits until recovery has ended.
//!
//! The restored files keep the source's configuration; pgdrill's settings are appended to
//! `postgresql.auto.conf` (read last, so they win): no archiving, no TCP listener, its own
//! `pg_hba.conf` (`local all all trust`: the socket's directory is private to the server user
//! and root), no SSL, no logging collector.

use super::host::{effective_uid_is_root, free_port, make_temp_dir, unprivileged_user, RunAs};
use super::text::{conf_quote, read_from, tail};
use super::types::io_err;
use super::{Cluster, ClusterError};
use crate::child::{self, Keep};
use crate::tools::PgInstall;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An empty data directory for a backup tool to fill, in a private temporary directory.
#[derive(Debug)]
pub struct RestoreDir {
    dir: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    run_as: Option<RunAs>,
}

/// How to start a restored data directory.
#[derive(Clone, Debug)]
pub struct RestoredStart {
    /// Binaries of the data directory's major version.
    pub install: PgInstall,
    /// Settings appended to `postgresql.auto.conf` (e.g. `restore_command`,
    /// `recovery_target_time`), after pgdrill's own.
    pub settings: Vec<(String, String)>,
    /// Environment of the server (and so of its `restore_command`), besides the allowlist.
    pub env: Vec<(String, String)>,
    /// Write `recovery.signal` (archive recovery; needs a `restore_command`). Without it the
    /// server only replays what `pg_wal` holds (a backup taken with its WAL).
    pub archive_recovery: bool,
    /// The role to connect as (through the socket, trusted).
    pub user: String,
    /// How long recovery may take before the start is given up.
    pub timeout: Duration,
    /// Set by the caller to give up waiting (the job was cancelled): the server is stopped.
    pub stop: Option<Arc<AtomicBool>>,
}

impl RestoreDir {
    /// Creates `<tmp>/pgdrill-cluster-*/data` (empty, 0700) and the socket folder, owned by
    /// the server's OS user when pgdrill runs as root.
    pub fn create() -> Result<RestoreDir, ClusterError> {
        let run_as = if effective_uid_is_root() {
            Some(unprivileged_user().ok_or(ClusterError::NoUser)?)
        } else {
            None
        };
        let dir = make_temp_dir(run_as.as_ref())?;
        let root = dir.path().to_path_buf();
        let d = RestoreDir {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_path: root.join("postgres.log"),
            root,
            dir,
            run_as,
        };
        for p in [&d.data_dir, &d.socket_dir] {
            std::fs::create_dir(p).map_err(io_err(format!("create {}", p.display())))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("set {}'s permissions", p.display())))?;
        }
        for p in [&d.root, &d.data_dir, &d.socket_dir] {
            d.hand_over(p)?;
        }
        Ok(d)
    }

    /// The directory the backup tool fills.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Scratch space beside the data directory, owned by the server's OS user (the tools'
    /// HOME, lock and log folders).
    pub fn scratch(&self) -> &Path {
        &self.root
    }

    /// The OS user the tools and the server run as (`None`: pgdrill's own).
    pub fn os_user(&self) -> Option<&str> {
        self.run_as.as_ref().map(|u| u.name.as_str())
    }

    /// A command run as the server's OS user when pgdrill runs as root, with the allowlisted
    /// environment, HOME and the working directory in the scratch folder; stdin and stdout
    /// closed, stderr piped (the caller adds arguments and environment).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = child::plain(program);
        cmd.current_dir(&self.root).env("HOME", &self.root);
        if let Some(u) = &self.run_as {
            cmd.uid(u.uid).gid(u.gid);
            cmd.env("USER", &u.name).env("LOGNAME", &u.name);
        }
        cmd
    }

    /// Gives `path` (created by pgdrill) to the server's OS user.
    pub fn hand_over(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some(u) = &self.run_as {
            std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)).map_err(io_err(format!(
                "hand {} to the {} user",
                path.display(),
                u.name
            )))?;
        }
        Ok(())
    }

    /// The major version in the data directory's `PG_VERSION`, once filled.
    pub fn major(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("PG_VERSION"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `START TIME` and `LABEL` of the restored `backup_label` (a backup not yet recovered).
    pub fn backup_label(&self) -> Option<(String, String)> {
        let text = std::fs::read_to_string(self.data_dir.join("backup_label")).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        Some((field("START TIME:")?, field("LABEL:").unwrap_or_default()))
    }

    /// Writes the recovery settings, starts the server and waits until recovery has ended
    /// (the server is promoted and accepts connections) or `timeout` passed. On failure the
    /// server is stopped and the error holds the last lines of its log.
    pub fn start(self, opts: RestoredStart) -> Result<Cluster, ClusterError> {
        for tool in ["pg_ctl", "postgres"] {
            if !opts.install.has(tool) {
                return Err(ClusterError::MissingTool {
                    tool: tool.to_string(),
                    dir: opts.install.bin_dir.clone(),
                    major: opts.install.version.major,
                });
            }
        }
        let port = free_port()?;
        self.write_settings(port, &opts)?;
        let RestoreDir {
            dir,
            root,
            data_dir,
            socket_dir,
            log_path,
            run_as,
        } = self;
        let mut cluster = Cluster {
            install: opts.install.clone(),
            dir: Some(dir),
            root,
            data_dir,
            socket_dir,
            log_path,
            port,
            password: String::new(),
            superuser: opts.user.clone(),
            run_as,
            postmaster_pid: None,
            running: false,
            server_env: opts.env.clone(),
            reaper: None,
        };
        cluster.arm_reaper();
        let mut cmd = cluster.command("pg_ctl");
        cmd.arg("-D")
            .arg(&cluster.data_dir)
            .arg("-l")
            .arg(&cluster.log_path)
            .args(["-W", "start"]);
        let out = child::run(cmd, Keep { head: 0, tail: 30 }).map_err(io_err(format!(
            "run {}",
            cluster.install.bin("pg_ctl").display()
        )))?;
        cluster.running = true;
        if !out.status.success() {
            let log = read_from(&cluster.log_path, 0);
            return Err(ClusterError::Start {
                version: cluster.install.version,
                reason: format!("pg_ctl start: {}", out.status),
                log_tail: tail(log.trim(), 30),
            });
        }
        cluster.wait_recovered(opts.timeout, opts.stop.as_deref())?;
        Ok(cluster)
    }

    fn write_settings(&self, port: u16, opts: &RestoredStart) -> Result<(), ClusterError> {
        let hba = self.root.join("pg_hba.conf");
        let ident = self.root.join("pg_ident.conf");
        std::fs::write(&hba, "local all all trust\n").map_err(io_err("write pg_hba.conf"))?;
        std::fs::write(&ident, "").map_err(io_err("write pg_ident.conf"))?;
        let socket = self.socket_dir.to_string_lossy().into_owned();
        let mut settings: Vec<(String, String)> = [
            ("port", port.to_string()),
            ("listen_addresses", String::new()),
            ("unix_socket_directories", socket),
            ("hba_file", hba.to_string_lossy().into_owned()),
            ("ident_file", ident.to_string_lossy().into_owned()),
            ("archive_mode", "off".into()),
            ("ssl", "off".into()),
            ("logging_collector", "off".into()),
            ("hot_standby", "on".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        settings.extend(opts.settings.iter().cloned());
        let mut text =
            String::from("\n# appended by pgdrill for a drill of this restored backup\n");
        for (k, v) in &settings {
            text.push_str(&format!("{k} = {}\n", conf_quote(v)));
        }
        // A data directory without its configuration (Debian keeps it in /etc).
        let main = self.data_dir.join("postgresql.conf");
        if !main.exists() {
            std::fs::write(&main, "").map_err(io_err("write postgresql.conf"))?;
        }
        let auto = self.data_dir.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&auto)
            .map_err(io_err("append to postgresql.auto.conf"))?;
        f.write_all(text.as_bytes())
            .map_err(io_err("append to postgresql.auto.conf"))?;
        // Left by a standby's backup, it would make the server wait for more WAL forever.
        let _ = std::fs::remove_file(self.data_dir.join("standby.signal"));
        let _ = std::fs::remove_file(self.data_dir.join("postmaster.pid"));
        let signal = self.data_dir.join("recovery.signal");
        if opts.archive_recovery {
            std::fs::write(&signal, "").map_err(io_err("write recovery.signal"))?;
        } else {
            let _ = std::fs::remove_file(&signal);
        }
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("set the data directory's permissions"))?;
        for p in [&hba, &ident, &main, &auto, &signal] {
            if p.exists() {
                self.hand_over(p)?;
            }
        }
        Ok(())
    }
}

impl Cluster {
    /// Waits until the postmaster reports `ready` (recovery over, promoted), failing when it
    /// stops or `timeout` passes.
    fn wait_recovered(
        &mut self,
        timeout: Duration,
        stop: Option<&AtomicBool>,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let started = Instant::now();
        loop {
            let pidfile = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok();
            if let Some(text) = &pidfile {
                self.postmaster_pid = text.lines().next().and_then(|l| l.trim().parse().ok());
                if text.lines().nth(7).map(str::trim) == Some("ready") {
                    return Ok(());
                }
            }
            let gone = match self.postmaster_pid {
                Some(p) => !super::host::alive(p),
                // pg_ctl -W has forked the server, which writes its pid file within moments
                // and removes it when it stops: a server that failed before it was seen says
                // so in its log.
                None => {
                    started.elapsed() > Duration::from_secs(30)
                        || (started.elapsed() > Duration::from_millis(500)
                            && read_from(&self.log_path, 0)
                                .contains("database system is shut down"))
                }
            };
            let stopped = stop.is_some_and(|s| s.load(Ordering::SeqCst));
            if gone || stopped || Instant::now() > deadline {
                let reason = if gone {
                    "the server stopped during recovery".to_string()
                } else if stopped {
                    "the drill was cancelled during recovery".to_string()
                } else {
                    format!(
                        "recovery had not ended after {} s (raise recovery_timeout_seconds)",
                        timeout.as_secs()
                    )
                };
                let log = read_from(&self.log_path, 0);
                let _ = self.shutdown();
                return Err(ClusterError::Start {
                    version: self.install.version,
                    reason,
                    log_tail: tail(log.trim(), 20),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `postgresql://<user>@/<db>?host=<socket dir>&port=<port>`: the unix socket, no password
    /// (a restored cluster's listener).
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgresql://{}@/{}?host={}&port={}",
            super::text::percent_encode(&self.superuser),
            super::text::percent_encode(db),
            super::text::percent_encode(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }
}
