//! Throwaway local PostgreSQL clusters: `initdb` in a fresh temporary directory, a free loopback
//! port, a random superuser password, always torn down.
//!
//! Used by drills and `restore --ephemeral` (a restore target that cannot be production), and by
//! the tests. When pgdrill runs as root, the server runs as the `postgres` OS user (else
//! `nobody`): PostgreSQL refuses to run as root.
//!
//! The password never appears in a child's argv: `initdb` reads it from a 0600 file that is
//! deleted right after.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::child::{self, Keep};
use crate::tools::{PgInstall, PgVersion};

mod host;
mod restored;
mod text;
mod types;

use host::{
    alive, effective_uid_is_root, free_port, make_temp_dir, process_tree, random_password,
    read_postmaster_pid, traversable_by, unprivileged_user, wait_gone, RunAs,
};
pub use restored::{RestoreDir, RestoredStart};
use text::{conf_quote, output_text, percent_encode, read_from, stop_command, tail};
use types::io_err;
pub use types::{ClusterError, ClusterOptions, KeptCluster};

/// What is kept of initdb's and pg_ctl's output: the last lines say why it failed.
const KEEP: Keep = Keep { head: 0, tail: 30 };

/// How many times a start is retried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A running throwaway cluster. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Cluster {
    install: PgInstall,
    /// `None` once stopped or kept.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    password: String,
    superuser: String,
    run_as: Option<RunAs>,
    postmaster_pid: Option<u32>,
    running: bool,
    /// Environment the server needs besides the allowlist (a restored cluster's
    /// `restore_command` credentials).
    server_env: Vec<(String, String)>,
    /// Stops the server and removes the directory should pgdrill be killed outright
    /// (disarmed when the cluster is stopped or kept).
    reaper: Option<crate::reaper::Reaper>,
}

impl Cluster {
    /// Creates and starts a cluster; blocks until it accepts connections.
    pub fn start(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let install = opts.install;
        for tool in crate::tools::SERVER_TOOLS {
            if !install.has(tool) {
                return Err(ClusterError::MissingTool {
                    tool: (*tool).to_string(),
                    dir: install.bin_dir.clone(),
                    major: install.version.major,
                });
            }
        }
        let run_as = if effective_uid_is_root() {
            Some(unprivileged_user().ok_or(ClusterError::NoUser)?)
        } else {
            None
        };
        if let Some(u) = &run_as {
            let bin =
                std::fs::canonicalize(&install.bin_dir).unwrap_or_else(|_| install.bin_dir.clone());
            if !traversable_by(&bin, u) {
                return Err(ClusterError::Unreachable {
                    dir: install.bin_dir.clone(),
                    user: u.name.clone(),
                });
            }
        }
        let dir = make_temp_dir(run_as.as_ref())?;
        let root = dir.path().to_path_buf();
        let data_dir = root.join("data");
        let socket_dir = root.join("sock");
        let log_path = root.join("postgres.log");
        std::fs::create_dir(&socket_dir).map_err(io_err("create the socket directory"))?;
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("set the socket directory's permissions"))?;
        if let Some(u) = &run_as {
            for p in [&root, &socket_dir] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).map_err(io_err(format!(
                    "hand {} to the {} user",
                    p.display(),
                    u.name
                )))?;
            }
        }

        let mut cluster = Cluster {
            install,
            dir: Some(dir),
            root,
            data_dir,
            socket_dir,
            log_path,
            port: 0,
            password: random_password()?,
            superuser: opts.superuser,
            run_as,
            postmaster_pid: None,
            running: false,
            server_env: Vec::new(),
            reaper: None,
        };
        cluster.arm_reaper();
        cluster.initdb()?;
        cluster.start_server(&opts.settings)?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file (inside the cluster's directory).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn version(&self) -> PgVersion {
        self.install.version
    }

    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The superuser's password, random per cluster.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// PID of the postmaster.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster_pid
    }

    /// `postgresql://postgres:<pw>@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            self.superuser(),
            self.password,
            self.port,
            percent_encode(db)
        )
    }

    /// Stops the server (`-m fast`, then `-m immediate`, then SIGKILL) and removes its directory.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.shutdown()?;
        if let Some(dir) = self.dir.take() {
            dir.close()
                .map_err(io_err("remove the cluster's temporary directory"))?;
        }
        Ok(())
    }

    /// Arms the watchdog that stops the server and removes the directory should this
    /// process be killed outright. Without `/bin/sh` the cluster runs unwatched.
    fn arm_reaper(&mut self) {
        let watch = crate::reaper::Watch::PostmasterOf(self.data_dir.clone());
        self.reaper = crate::reaper::Reaper::arm(watch, Some(&self.root)).ok();
    }

    /// Leaves the server running and its directory in place (for debugging a failed drill).
    pub fn keep(mut self) -> KeptCluster {
        self.reaper = None;
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.running = false;
        let stop_command = stop_command(
            &self.install.bin("pg_ctl").to_string_lossy(),
            &self.data_dir.to_string_lossy(),
            &self.root.to_string_lossy(),
            self.run_as.as_ref().map(|u| u.name.as_str()),
        );
        KeptCluster {
            url: self.url("postgres"),
            data_dir: self.data_dir.clone(),
            stop_command,
        }
    }

    /// A command for a server binary, run as the unprivileged user when we are root.
    fn command(&self, tool: &str) -> Command {
        // The server inherits this environment for its whole life; it holds nothing of
        // pgdrill's own (S3 keys, source URLs, libpq PG* variables).
        let mut cmd = child::plain(self.install.bin(tool));
        cmd.current_dir(&self.root).env("LC_ALL", "C");
        cmd.envs(self.server_env.iter().map(|(k, v)| (k, v)));
        if let Some(u) = &self.run_as {
            cmd.uid(u.uid).gid(u.gid);
            cmd.env("USER", &u.name).env("LOGNAME", &u.name);
            cmd.env("HOME", &self.root);
        }
        cmd
    }

    fn initdb(&mut self) -> Result<(), ClusterError> {
        let pwfile = self.root.join("pwfile");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .map_err(io_err("write the password file"))?;
            f.write_all(self.password.as_bytes())
                .and_then(|_| f.write_all(b"\n"))
                .map_err(io_err("write the password file"))?;
        }
        if let Some(u) = &self.run_as {
            std::os::unix::fs::chown(&pwfile, Some(u.uid), Some(u.gid))
                .map_err(io_err("hand the password file to the server user"))?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-U")
            .arg(self.superuser())
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ]);
        let out = child::run(cmd, KEEP);
        let _ = std::fs::remove_file(&pwfile);
        let out = out.map_err(io_err(format!(
            "run {}",
            self.install.bin("initdb").display()
        )))?;
        if !out.status.success() {
            return Err(ClusterError::Initdb {
                status: out.status.to_string(),
                output: tail(&output_text(&out), 20),
            });
        }
        Ok(())
    }

    fn write_conf(&self, settings: &[(String, String)]) -> Result<(), ClusterError> {
        let mut conf = String::from("# written by pgdrill for a throwaway cluster\n");
        let _ = writeln!(conf, "listen_addresses = '127.0.0.1'");
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(
            conf,
            "unix_socket_directories = {}",
            conf_quote(&self.socket_dir.to_string_lossy())
        );
        for (k, v) in settings {
            let _ = writeln!(conf, "{k} = {}", conf_quote(v));
        }
        let path = self.data_dir.join("pgdrill.conf");
        std::fs::write(&path, conf).map_err(io_err("write pgdrill.conf"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("set pgdrill.conf's permissions"))?;
        if let Some(u) = &self.run_as {
            std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid))
                .map_err(io_err("hand pgdrill.conf to the server user"))?;
        }
        let main = self.data_dir.join("postgresql.conf");
        let text = std::fs::read_to_string(&main).map_err(io_err("read postgresql.conf"))?;
        if !text.contains("include = 'pgdrill.conf'") {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&main)
                .map_err(io_err("append to postgresql.conf"))?;
            f.write_all(b"\ninclude = 'pgdrill.conf'\n")
                .map_err(io_err("append to postgresql.conf"))?;
        }
        Ok(())
    }

    fn start_server(&mut self, settings: &[(String, String)]) -> Result<(), ClusterError> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            self.write_conf(settings)?;
            let log_offset = std::fs::metadata(&self.log_path)
                .map(|m| m.len())
                .unwrap_or(0);
            let mut cmd = self.command("pg_ctl");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_path)
                .args(["-w", "-t", "60", "start"]);
            let out = child::run(cmd, KEEP).map_err(io_err(format!(
                "run {}",
                self.install.bin("pg_ctl").display()
            )))?;
            if out.status.success() {
                self.postmaster_pid = read_postmaster_pid(&self.data_dir);
                self.running = true;
                return Ok(());
            }
            // Whatever half-started must not survive.
            self.postmaster_pid = read_postmaster_pid(&self.data_dir);
            self.running = true;
            let _ = self.shutdown();
            let log = read_from(&self.log_path, log_offset);
            last = format!("{}\n{}", output_text(&out).trim(), log.trim());
            let clash = [
                "could not bind",
                "Address already in use",
                "could not create any TCP/IP sockets",
            ]
            .iter()
            .any(|m| log.contains(m));
            if !clash {
                return Err(ClusterError::Start {
                    version: self.install.version,
                    reason: format!("pg_ctl start: {}", out.status),
                    log_tail: tail(last.trim(), 30),
                });
            }
        }
        Err(ClusterError::Start {
            version: self.install.version,
            reason: format!("no free port after {PORT_ATTEMPTS} attempts"),
            log_tail: tail(last.trim(), 30),
        })
    }

    /// Stops the server however it takes; afterwards no process of it is left.
    fn shutdown(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let pid = self
            .postmaster_pid
            .or_else(|| read_postmaster_pid(&self.data_dir));
        let mut tree = pid.map(process_tree).unwrap_or_default();
        for mode in ["fast", "immediate"] {
            let mut cmd = self.command("pg_ctl");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .args(["-w", "-t", "30", "stop", "-m", mode]);
            let res = child::run(cmd, Keep::NONE);
            if res.is_ok_and(|r| r.status.success()) && wait_gone(&tree, Duration::from_secs(10)) {
                self.running = false;
                return Ok(());
            }
            // pg_ctl failed: maybe nothing is running (never started, or already gone).
            match pid {
                None => {
                    self.running = false;
                    return Ok(());
                }
                Some(p) => {
                    tree.extend(process_tree(p));
                    if wait_gone(&tree, Duration::ZERO) {
                        self.running = false;
                        return Ok(());
                    }
                }
            }
        }
        // Last resort: SIGKILL the postmaster and its children (pg_ctl kill needs no libc).
        let Some(pid) = pid else {
            self.running = false;
            return Ok(());
        };
        tree.extend(process_tree(pid));
        for p in &tree {
            if alive(*p) {
                let mut cmd = self.command("pg_ctl");
                cmd.args(["kill", "KILL", &p.to_string()]);
                let _ = child::run(cmd, Keep::NONE);
            }
        }
        if wait_gone(&tree, Duration::from_secs(10)) {
            self.running = false;
            Ok(())
        } else {
            Err(ClusterError::Stop {
                pid,
                detail: "it survived pg_ctl stop -m fast, -m immediate and SIGKILL".to_string(),
            })
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.shutdown();
        // The TempDir, if still held, removes the directory when dropped.
    }
}

#[cfg(test)]
mod tests;
