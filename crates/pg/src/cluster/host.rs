//! The machine's side of a throwaway cluster: its processes (read from /proc), the
//! unprivileged OS user it runs as under root, a temporary directory that user can reach,
//! a free port and a random password.

use super::types::{io_err, ClusterError};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Unix socket paths are limited to 107 bytes; leave room for `/.s.PGSQL.NNNNN.lock`.
const MAX_SOCKET_DIR_LEN: usize = 80;

/// The unprivileged OS user the server runs as when pgdrill runs as root.
#[derive(Clone, Debug)]
pub(super) struct RunAs {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

pub(super) fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A pid is alive when /proc has it and it is not a zombie.
pub(super) fn alive(pid: u32) -> bool {
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

pub(super) fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `pid` and its direct children (the postmaster's backends and auxiliary processes).
pub(super) fn process_tree(pid: u32) -> Vec<u32> {
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

pub(super) fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
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

pub(super) fn effective_uid_is_root() -> bool {
    effective_uid() == Some(0)
}

/// The effective uid, from the `Uid:` line of /proc/self/status (real, effective, saved, fs).
pub(super) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn unprivileged_user() -> Option<RunAs> {
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
pub(super) fn traversable_by(dir: &Path, user: &RunAs) -> bool {
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
pub(super) fn make_temp_dir(run_as: Option<&RunAs>) -> Result<tempfile::TempDir, ClusterError> {
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
pub(super) fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("find a free port on 127.0.0.1"))?;
    let port = l
        .local_addr()
        .map_err(io_err("find a free port on 127.0.0.1"))?
        .port();
    Ok(port)
}

/// 32 hex characters from /dev/urandom.
pub(super) fn random_password() -> Result<String, ClusterError> {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("read /dev/urandom for a password"))?;
    Ok(hex::encode(buf))
}
