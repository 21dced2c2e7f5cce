//! Finding PostgreSQL binaries (`pg_dump`, `pg_restore`, `initdb`, `pg_ctl`, `postgres`, ...).
//!
//! A machine may hold several PostgreSQL installs (Debian's `/usr/lib/postgresql/N/bin`, a
//! `pg_config --bindir`, directories from `PGDRILL_PG_PATHS`, packaged server-only bundles).
//! [`PgTools`] lists them newest first and picks the right one for a job: a `pg_dump` at least as
//! new as the server it dumps, a server at least as new as the dump it restores.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::child::{self, Keep};

/// What a probe keeps of the tool's output: its first lines.
const PROBE: Keep = Keep { head: 20, tail: 0 };

/// Tools whose presence makes a directory a PostgreSQL bin directory, in the order they are
/// asked for their version.
const MARKER_TOOLS: &[&str] = &[
    "pg_dump",
    "pg_restore",
    "psql",
    "postgres",
    "initdb",
    "pg_ctl",
];

/// Tools a directory needs to run a local server.
pub const SERVER_TOOLS: &[&str] = &["initdb", "pg_ctl", "postgres"];

/// A PostgreSQL version, major and minor (`15.18`, `18.1`; `9.6` for the old three-part scheme).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PgVersion {
    pub major: u32,
    pub minor: u32,
}

impl PgVersion {
    /// From `server_version_num` / `PQserverVersion`: `150018` is 15.18; `90624` is 9.6 (the
    /// patch level of pre-10 versions is dropped).
    pub fn from_server_num(num: u32) -> Self {
        if num >= 100_000 {
            PgVersion {
                major: num / 10_000,
                minor: num % 10_000,
            }
        } else {
            PgVersion {
                major: num / 10_000,
                minor: (num / 100) % 100,
            }
        }
    }

    /// Parses `"15.18"`, `"18.1"`, `"18beta1"` (18.0), `"9.6.24"` (9.6), the output of
    /// `pg_dump --version` (`"pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"`), of
    /// `pg_config --version` (`"PostgreSQL 15.18"`) and of `SELECT version()`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let rest = match s.find("(PostgreSQL)") {
            Some(i) => &s[i + "(PostgreSQL)".len()..],
            None => match s.find("PostgreSQL ") {
                Some(i) => &s[i + "PostgreSQL ".len()..],
                None => s,
            },
        };
        let token = rest
            .split_whitespace()
            .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
        let digits = |t: &str| -> (Option<u32>, usize) {
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            (t[..end].parse().ok(), end)
        };
        let (major, end) = digits(token);
        let major = major?;
        let after = &token[end..];
        let minor = match after.strip_prefix('.') {
            Some(m) => digits(m).0.unwrap_or(0),
            None => 0,
        };
        if major == 0 {
            return None;
        }
        Some(PgVersion { major, minor })
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One directory of PostgreSQL binaries and the version they report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgInstall {
    pub bin_dir: PathBuf,
    pub version: PgVersion,
}

impl PgInstall {
    /// Path of `tool` in this install (whether or not it exists).
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.bin_dir.join(tool)
    }

    /// Whether this install has an executable `tool`.
    pub fn has(&self, tool: &str) -> bool {
        is_executable(&self.bin(tool))
    }

    /// Whether this install can run a local server (`initdb`, `pg_ctl`, `postgres`).
    pub fn has_server(&self) -> bool {
        SERVER_TOOLS.iter().all(|t| self.has(t))
    }

    /// Whether this install ships the extension `name` (its `.control` file), looked up
    /// where the layouts in use put them: `../share/postgresql/extension` (source builds,
    /// npm), `../share/extension` (PyPI), `/usr/share/postgresql/<major>/extension` (Debian).
    pub fn has_extension(&self, name: &str) -> bool {
        let file = format!("{name}.control");
        let up = self.bin_dir.join("..");
        [
            up.join("share/postgresql/extension"),
            up.join("share/extension"),
            PathBuf::from(format!(
                "/usr/share/postgresql/{}/extension",
                self.version.major
            )),
        ]
        .iter()
        .any(|d| d.join(&file).is_file())
    }
}

/// Why no suitable binary could be picked. Messages are one sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} was not found in PGDRILL_PG_BIN, PGDRILL_PG_PATHS, PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin or /usr/local/pgsql/bin: {}", install_hint(tool, None))]
    NotFound { tool: String },
    #[error("{tool} {found} is older than the server (PostgreSQL {need_major}): {}", install_hint(tool, Some(*need_major)))]
    TooOld {
        tool: String,
        found: PgVersion,
        need_major: u32,
    },
}

fn is_server_tool(tool: &str) -> bool {
    SERVER_TOOLS.contains(&tool)
}

fn install_hint(tool: &str, major: Option<u32>) -> String {
    let what = if is_server_tool(tool) {
        "server binaries (initdb, pg_ctl, postgres)"
    } else {
        "client tools"
    };
    match major {
        Some(m) => format!("install PostgreSQL {m} {what} or point PGDRILL_PG_BIN at them"),
        None => format!("install the PostgreSQL {what} or point PGDRILL_PG_BIN at them"),
    }
}

/// The PostgreSQL installs found on this machine, newest first.
#[derive(Clone, Debug, Default)]
pub struct PgTools {
    installs: Vec<PgInstall>,
}

impl PgTools {
    /// `PGDRILL_PG_BIN` set: only that directory. Otherwise every directory from
    /// [`PgTools::candidate_dirs`].
    pub fn discover() -> Self {
        Self::from_dirs(Self::candidate_dirs())
    }

    /// Directories [`PgTools::discover`] looks at, in order, before probing them:
    /// `PGDRILL_PG_BIN` alone if set; else `PGDRILL_PG_PATHS` (colon-separated), each `PATH`
    /// directory holding `pg_dump`/`pg_restore`/`initdb`/`postgres` (symlinks followed to the real
    /// directory; Debian's `pg_wrapper` skipped), `pg_config --bindir`,
    /// `/usr/lib/postgresql/*/bin` and `/usr/local/pgsql/bin`.
    pub fn candidate_dirs() -> Vec<PathBuf> {
        if let Some(dir) = std::env::var_os("PGDRILL_PG_BIN").filter(|v| !v.is_empty()) {
            return vec![PathBuf::from(dir)];
        }
        let mut dirs = Vec::new();
        if let Some(paths) = std::env::var_os("PGDRILL_PG_PATHS") {
            dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                for tool in ["pg_dump", "pg_restore", "initdb", "postgres"] {
                    let p = dir.join(tool);
                    if !is_executable(&p) {
                        continue;
                    }
                    if let Some(real) = real_tool_dir(&p) {
                        dirs.push(real);
                    }
                }
            }
        }
        if let Some(dir) = pg_config_bindir() {
            dirs.push(dir);
        }
        let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.parse::<u32>().unwrap_or(0);
                Some((n, e.path().join("bin"))).filter(|(_, p)| p.is_dir())
            })
            .collect();
        debian.sort_by_key(|d| std::cmp::Reverse(d.0));
        dirs.extend(debian.into_iter().map(|(_, p)| p));
        dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
        dirs
    }

    /// Probes each directory (`<tool> --version`, cached per directory for the process) and keeps
    /// those holding PostgreSQL binaries, deduplicated by real path, newest first.
    pub fn from_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut seen = HashSet::new();
        let mut installs = Vec::new();
        for dir in dirs {
            if !dir.is_dir() {
                continue;
            }
            let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            if !seen.insert(key) {
                continue;
            }
            if let Some(version) = dir_version(&dir) {
                installs.push(PgInstall {
                    bin_dir: dir,
                    version,
                });
            }
        }
        // Stable: among equal versions, discovery order is kept.
        installs.sort_by_key(|i| std::cmp::Reverse(i.version));
        PgTools { installs }
    }

    /// All installs found, newest first.
    pub fn installs(&self) -> &[PgInstall] {
        &self.installs
    }

    /// The newest install that has `tool`, if its major is at least `min_major`.
    pub fn pick(&self, tool: &str, min_major: u32) -> Result<PgInstall, ToolError> {
        let newest =
            self.installs
                .iter()
                .find(|i| i.has(tool))
                .ok_or_else(|| ToolError::NotFound {
                    tool: tool.to_string(),
                })?;
        if newest.version.major < min_major {
            return Err(ToolError::TooOld {
                tool: tool.to_string(),
                found: newest.version,
                need_major: min_major,
            });
        }
        Ok(newest.clone())
    }

    /// A directory with `initdb`, `pg_ctl` and `postgres` whose major is at least `min_major`:
    /// the same major if present (newest minor), else the lowest newer major.
    pub fn pick_server(&self, min_major: u32) -> Result<PgInstall, ToolError> {
        let servers: Vec<&PgInstall> = self.installs.iter().filter(|i| i.has_server()).collect();
        // installs are newest first, so the first match of a major is its newest minor.
        if let Some(same) = servers.iter().find(|i| i.version.major == min_major) {
            return Ok((*same).clone());
        }
        let lowest_newer = servers
            .iter()
            .filter(|i| i.version.major > min_major)
            .min_by_key(|i| (i.version.major, std::cmp::Reverse(i.version.minor)));
        if let Some(i) = lowest_newer {
            return Ok((*i).clone());
        }
        match servers.first() {
            Some(newest) => Err(ToolError::TooOld {
                tool: "postgres".to_string(),
                found: newest.version,
                need_major: min_major,
            }),
            None => Err(ToolError::NotFound {
                tool: "postgres".to_string(),
            }),
        }
    }

    /// Like [`pick_server`](Self::pick_server), but preferring (in the same order) an
    /// install that ships every extension in `extensions`, so that a throwaway cluster can
    /// restore what the dump needs.
    pub fn pick_server_with(
        &self,
        min_major: u32,
        extensions: &[String],
    ) -> Result<PgInstall, ToolError> {
        let first = self.pick_server(min_major)?;
        let ships_all = |i: &PgInstall| {
            extensions
                .iter()
                .filter(|e| e.as_str() != "plpgsql")
                .all(|e| i.has_extension(e))
        };
        if ships_all(&first) {
            return Ok(first);
        }
        let mut candidates: Vec<&PgInstall> = self
            .installs
            .iter()
            .filter(|i| i.has_server() && i.version.major >= min_major)
            .collect();
        candidates.sort_by_key(|i| (i.version.major, std::cmp::Reverse(i.version.minor)));
        Ok(candidates
            .into_iter()
            .find(|i| ships_all(i))
            .cloned()
            .unwrap_or(first))
    }

    /// The newest install able to run a local server.
    pub fn newest_server(&self) -> Option<PgInstall> {
        self.installs.iter().find(|i| i.has_server()).cloned()
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The real directory of a tool found on PATH, following symlinks; `None` for Debian's
/// `pg_wrapper` (it picks a version by its own rules: the real directories are listed anyway).
fn real_tool_dir(tool: &Path) -> Option<PathBuf> {
    if is_pg_wrapper(tool) {
        return None;
    }
    let real = std::fs::canonicalize(tool).ok()?;
    let dir = real.parent()?.to_path_buf();
    // Symlinked from elsewhere: prefer the real directory; otherwise keep the PATH spelling.
    if std::fs::symlink_metadata(tool)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        Some(dir)
    } else {
        Some(tool.parent()?.to_path_buf())
    }
}

/// Debian's `/usr/bin/pg_dump` and friends are symlinks to `pg_wrapper`, a Perl script.
fn is_pg_wrapper(p: &Path) -> bool {
    if std::fs::canonicalize(p).is_ok_and(|r| r.file_name().is_some_and(|n| n == "pg_wrapper")) {
        return true;
    }
    let mut head = [0u8; 512];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    head.starts_with(b"#!") && head.windows(10).any(|w| w == b"pg_wrapper")
}

fn pg_config_bindir() -> Option<PathBuf> {
    let mut cmd = child::plain("pg_config");
    cmd.arg("--bindir");
    let out = child::run(cmd, PROBE).ok()?;
    if !out.status.success() {
        return None;
    }
    let s = out.stdout.join("\n");
    let s = s.trim();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn version_cache() -> &'static Mutex<HashMap<PathBuf, Option<PgVersion>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Option<PgVersion>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Version of the binaries in `dir`, from `--version` of the first marker tool it has.
fn dir_version(dir: &Path) -> Option<PgVersion> {
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Ok(cache) = version_cache().lock() {
        if let Some(v) = cache.get(&key) {
            return *v;
        }
    }
    let version = MARKER_TOOLS.iter().find_map(|tool| {
        let p = dir.join(tool);
        if !is_executable(&p) || is_pg_wrapper(&p) {
            return None;
        }
        tool_version(&p)
    });
    if let Ok(mut cache) = version_cache().lock() {
        cache.insert(key, version);
    }
    version
}

/// Runs `<tool> --version` and parses its output.
pub fn tool_version(tool: &Path) -> Option<PgVersion> {
    let mut cmd = child::plain(tool);
    cmd.arg("--version");
    let out = child::run(cmd, PROBE).ok()?;
    if !out.status.success() {
        return None;
    }
    let s = out.stdout.join("\n");
    if !s.contains("PostgreSQL") {
        return None;
    }
    PgVersion::parse(&s)
}

#[cfg(test)]
mod tests;
