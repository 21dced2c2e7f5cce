//! The public types around a throwaway cluster: what to start, what a kept one leaves, why
//! one could not be started or stopped.

use crate::tools::{PgInstall, PgVersion};
use std::path::PathBuf;

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

/// A cluster left running by [`Cluster::keep`].
#[derive(Clone, Debug)]
pub struct KeptCluster {
    /// `postgresql://postgres:<password>@127.0.0.1:<port>/postgres`
    pub url: String,
    pub data_dir: PathBuf,
    /// A shell command that stops the server and removes its directory.
    pub stop_command: String,
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

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}
