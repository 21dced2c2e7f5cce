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
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{self, Finished, Keep};
use crate::tools::{PgInstall, PgVersion};

/// What is kept of initdb's and pg_ctl's output: the last lines say why it failed.
const KEEP: Keep = Keep { head: 0, tail: 30 };

/// How many times a start is retried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// Unix socket paths are limited to 107 bytes; leave room for `/.s.PGSQL.NNNNN.lock`.
const MAX_SOCKET_DIR_LEN: usize = 80;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Binaries to use (needs `initdb`, `pg_ctl`, `postgres`).
    pub install: PgInstall,
    /// Extra `postgresql.conf` settings, e.g. `("fsync", "off")` for tests.
    pub settings: Vec<(String, String)>,
    /// The bootstrap superuser's name (`postgres`; a managed platform's layout may need
    /// another, e.g. `supabase_admin` with a non-superuser `postgres`).
    pub superuser: String,
}

impl ClusterOptions {
    pub fn new(install: PgInstall) -> Self {
        ClusterOptions {
            install,
            settings: Vec::new(),
            superuser: "postgres".into(),
        }
    }

    /// Adds one `postgresql.conf` setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// Why a local cluster could not be started or stopped. One sentence each, naming what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{tool} is missing from {}: install the PostgreSQL {major} server binaries (initdb, pg_ctl, postgres) or point PGDRILL_PG_BIN at them", dir.display())]
    MissingTool {
        tool: String,
        dir: PathBuf,
        major: u32,
    },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} cannot be reached by the `{user}` OS user that runs the server when pgdrill runs as root: install PostgreSQL where every user can read it, or make its parent directories traversable (chmod o+x)", dir.display())]
    Unreachable { dir: PathBuf, user: String },
    #[error("running as root, but there is no unprivileged OS user to run PostgreSQL as (neither `postgres` nor `nobody` is in /etc/passwd): create a `postgres` user")]
    NoUser,
    #[error("no temporary directory that the `{user}` OS user can reach was found (tried {tried}): set TMPDIR to a directory every user can traverse, such as /tmp")]
    NoTempDir { user: String, tried: String },
    #[error("initdb failed ({status}): {output}")]
    Initdb { status: String, output: String },
    #[error("the local PostgreSQL {version} server did not start ({reason}); last lines of its log:\n{log_tail}")]
    Start {
        version: PgVersion,
        reason: String,
        log_tail: String,
    },
    #[error("the local PostgreSQL server (pid {pid}) could not be stopped: {detail}")]
    Stop { pid: u32, detail: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// The unprivileged OS user the server runs as when pgdrill runs as root.
#[derive(Clone, Debug)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// A cluster left running by [`Cluster::keep`].
#[derive(Clone, Debug)]
pub struct KeptCluster {
    /// `postgresql://postgres:<password>@127.0.0.1:<port>/postgres`
    pub url: String,
    pub data_dir: PathBuf,
    /// A shell command that stops the server and removes its directory.
    pub stop_command: String,
}

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
        };
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

    /// Leaves the server running and its directory in place (for debugging a failed drill).
    pub fn keep(mut self) -> KeptCluster {
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

/// stdout, then stderr, as kept.
fn output_text(out: &Finished) -> String {
    let mut s = String::new();
    for line in out.stdout.iter().chain(&out.stderr) {
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A pid is alive when /proc has it and it is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ..." - comm may contain spaces or parentheses.
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `pid` and its direct children (the postmaster's backends and auxiliary processes).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut v = vec![pid];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if parent_of(p) == Some(pid) {
                    v.push(p);
                }
            }
        }
    }
    v
}

fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn effective_uid_is_root() -> bool {
    effective_uid() == Some(0)
}

/// The effective uid, from the `Uid:` line of /proc/self/status (real, effective, saved, fs).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn unprivileged_user() -> Option<RunAs> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|want| {
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            if name != *want {
                return None;
            }
            let _pw = f.next()?;
            let uid: u32 = f.next()?.parse().ok()?;
            let gid: u32 = f.next()?.parse().ok()?;
            (uid != 0).then(|| RunAs {
                name: name.to_string(),
                uid,
                gid,
            })
        })
    })
}

/// Whether `user` may traverse every ancestor of `dir` and `dir` itself.
fn traversable_by(dir: &Path, user: &RunAs) -> bool {
    dir.ancestors().all(|p| match std::fs::metadata(p) {
        Ok(m) => {
            let mode = m.mode();
            mode & 0o001 != 0
                || (m.uid() == user.uid && mode & 0o100 != 0)
                || (m.gid() == user.gid && mode & 0o010 != 0)
        }
        Err(_) => false,
    })
}

/// A fresh temporary directory, in TMPDIR if the server user can reach it and the socket path
/// fits, else /tmp or /var/tmp.
fn make_temp_dir(run_as: Option<&RunAs>) -> Result<tempfile::TempDir, ClusterError> {
    let mut candidates = vec![std::env::temp_dir()];
    for p in ["/tmp", "/var/tmp"] {
        let p = PathBuf::from(p);
        if !candidates.contains(&p) {
            candidates.push(p);
        }
    }
    let mut tried = Vec::new();
    for base in candidates {
        tried.push(base.display().to_string());
        if !base.is_dir() || base.as_os_str().len() + 30 > MAX_SOCKET_DIR_LEN {
            continue;
        }
        if let Some(u) = run_as {
            if !traversable_by(&base, u) {
                continue;
            }
        }
        match tempfile::Builder::new()
            .prefix("pgdrill-cluster-")
            .tempdir_in(&base)
        {
            Ok(d) => return Ok(d),
            Err(_) => continue,
        }
    }
    Err(ClusterError::NoTempDir {
        user: run_as.map_or_else(|| "current".to_string(), |u| u.name.clone()),
        tried: tried.join(", "),
    })
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("find a free port on 127.0.0.1"))?;
    let port = l
        .local_addr()
        .map_err(io_err("find a free port on 127.0.0.1"))?
        .port();
    Ok(port)
}

/// 32 hex characters from /dev/urandom.
fn random_password() -> Result<String, ClusterError> {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("read /dev/urandom for a password"))?;
    Ok(hex::encode(buf))
}

/// A `postgresql.conf` string literal.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// The command that stops a kept cluster and removes its folder, as short as the paths
/// allow: paths of plain characters go unquoted, so the `su -c` line nests no quotes.
fn stop_command(pg_ctl: &str, data_dir: &str, root: &str, run_as: Option<&str>) -> String {
    let stop = format!(
        "{} -D {} -w stop -m fast",
        shell_quote(pg_ctl),
        shell_quote(data_dir)
    );
    let stop = match run_as {
        Some(user) => format!(
            "su -s /bin/sh {} -c {}",
            shell_quote(user),
            shell_quote(&stop)
        ),
        None => stop,
    };
    format!("{stop} && rm -rf {}", shell_quote(root))
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b':' | b'=' | b',')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(conf_quote(r"a\b"), r"'a\\b'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(percent_encode("my db/x"), "my%20db%2Fx");
        assert_eq!(percent_encode("app_1"), "app_1");
    }

    #[test]
    fn stop_command_of_a_kept_cluster_nests_no_quotes() {
        let as_postgres = stop_command(
            "/usr/lib/postgresql/17/bin/pg_ctl",
            "/tmp/.tmpAb12/data",
            "/tmp/.tmpAb12",
            Some("postgres"),
        );
        assert_eq!(
            as_postgres,
            "su -s /bin/sh postgres -c '/usr/lib/postgresql/17/bin/pg_ctl -D /tmp/.tmpAb12/data -w stop -m fast' && rm -rf /tmp/.tmpAb12"
        );
        let plain = stop_command(
            "/opt/pg/bin/pg_ctl",
            "/tmp/my dir/data",
            "/tmp/my dir",
            None,
        );
        assert_eq!(
            plain,
            "/opt/pg/bin/pg_ctl -D '/tmp/my dir/data' -w stop -m fast && rm -rf '/tmp/my dir'"
        );
    }

    #[test]
    fn uid_and_users() {
        assert!(effective_uid().is_some());
        let p = random_password().expect("pw");
        assert_eq!(p.len(), 32);
        assert_ne!(p, random_password().expect("pw"));
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn cluster_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Cluster>();
    }
}
