//! Dev-only helpers: throwaway PostgreSQL clusters, a real S3-protocol server on loopback,
//! fixtures and the fidelity oracle. Tests that need a server and cannot find one panic:
//! they never pass silently.
//!
//! The binaries come from `scripts/setup-test-deps.sh` (PostgreSQL 15 from Debian, 17 and 18
//! under `/opt/pgdrill-test/pg*/bin`, `moto_server` in `/opt/pgdrill-test/venv`).

/// Copies of backups in several stores (the write side's layout), for read-side tests.
pub mod copies;
mod fingerprint;
mod fixture;
/// PostgreSQL 15's regression database, built by `pg_regress`.
pub mod regression;
mod s3;
/// JSON Schema validation of real output against `docs/schemas/`.
pub mod schema;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use fingerprint::{fingerprint, DbFingerprint, SequenceState, TableFingerprint};
pub use fixture::{load_fixture, FIXTURE_SQL};
pub use pgdrill_pg::cluster::{Cluster, ClusterOptions, KeptCluster};
pub use pgdrill_pg::{PgInstall, PgTools, PgVersion};
pub use regression::{regression_database, RegressionDb};
pub use s3::S3Server;

/// Where `scripts/setup-test-deps.sh` puts what Debian does not ship.
pub const TEST_DEPS_ROOT: &str = "/opt/pgdrill-test";

/// What to tell a developer whose machine lacks a test dependency.
pub const SETUP_HINT: &str = "run `sudo bash scripts/setup-test-deps.sh` from the repository root";

/// The PostgreSQL installs on this machine ([`PgTools::discover`]) plus those under
/// `/opt/pgdrill-test/pg*/bin`. Probed once per test process.
pub fn pg_tools() -> PgTools {
    static TOOLS: OnceLock<PgTools> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let mut dirs = PgTools::candidate_dirs();
            dirs.extend(test_dep_bin_dirs());
            PgTools::from_dirs(dirs)
        })
        .clone()
}

fn test_dep_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(TEST_DEPS_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pg"))
        .map(|e| e.path().join("bin"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Settings that make throwaway test clusters fast (durability does not matter).
pub fn fast_settings() -> Vec<(String, String)> {
    [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("max_connections", "50"),
        ("shared_buffers", "32MB"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

/// The server install for `major` (exactly), or the newest available for `None`.
/// Panics with a clear message when it is missing.
pub fn server_install(major: Option<u32>) -> PgInstall {
    let tools = pg_tools();
    let found: Vec<String> = tools
        .installs()
        .iter()
        .filter(|i| i.has_server())
        .map(|i| format!("{} ({})", i.version, i.bin_dir.display()))
        .collect();
    let install = match major {
        Some(m) => tools
            .installs()
            .iter()
            .find(|i| i.version.major == m && i.has_server())
            .cloned(),
        None => tools.newest_server(),
    };
    install.unwrap_or_else(|| {
        panic!(
            "this test needs a PostgreSQL {} server (initdb, pg_ctl, postgres) and none was \
             found (servers found: [{}]): {SETUP_HINT}",
            major.map_or_else(|| "any".to_string(), |m| m.to_string()),
            found.join(", ")
        )
    })
}

/// Starts a throwaway cluster of `major` (`None`: the newest available) with fsync off.
/// Panics when no such server is installed: a test that needs a server never passes silently.
pub fn cluster(major: Option<u32>) -> Cluster {
    let install = server_install(major);
    let version = install.version;
    let mut opts = ClusterOptions::new(install);
    opts.settings = fast_settings();
    Cluster::start(opts)
        .unwrap_or_else(|e| panic!("starting a PostgreSQL {version} test cluster failed: {e}"))
}

/// Starts a throwaway cluster whose bootstrap superuser is `superuser` (e.g. `supabase_admin`,
/// so that a role named `postgres` can be an ordinary one, as on managed platforms).
pub fn cluster_as(major: Option<u32>, superuser: &str) -> Cluster {
    let install = server_install(major);
    let version = install.version;
    let mut opts = ClusterOptions::new(install);
    opts.settings = fast_settings();
    opts.superuser = superuser.to_string();
    Cluster::start(opts)
        .unwrap_or_else(|e| panic!("starting a PostgreSQL {version} test cluster failed: {e}"))
}

/// Path of the newest `tool` (e.g. `pg_dump`) whose major is at least `min_major`; panics with
/// the setup hint when there is none.
pub fn pg_bin(tool: &str, min_major: u32) -> PathBuf {
    pg_tools()
        .pick(tool, min_major)
        .unwrap_or_else(|e| panic!("{e} ({SETUP_HINT})"))
        .bin(tool)
}

/// `tool` from the install of exactly `major`; panics with the setup hint when missing.
pub fn pg_bin_exact(tool: &str, major: u32) -> PathBuf {
    pg_tools()
        .installs()
        .iter()
        .find(|i| i.version.major == major && i.has(tool))
        .map(|i| i.bin(tool))
        .unwrap_or_else(|| {
            panic!("this test needs PostgreSQL {major}'s {tool} and it was not found: {SETUP_HINT}")
        })
}

/// Splits a connection URL into `pg_dump`/`psql`-style arguments and the password, so the
/// password can go into `PGPASSWORD` instead of argv.
pub fn conn_args(url: &str) -> (Vec<String>, Option<String>) {
    let cfg: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("not a valid connection URL ({e})"));
    let mut args = Vec::new();
    if let Some(h) = cfg.get_hosts().first() {
        match h {
            tokio_postgres::config::Host::Tcp(s) => args.extend(["-h".to_string(), s.clone()]),
            tokio_postgres::config::Host::Unix(p) => {
                args.extend(["-h".to_string(), p.display().to_string()])
            }
        }
    }
    if let Some(p) = cfg.get_ports().first() {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    if let Some(u) = cfg.get_user() {
        args.extend(["-U".to_string(), u.to_string()]);
    }
    if let Some(d) = cfg.get_dbname() {
        args.extend(["-d".to_string(), d.to_string()]);
    }
    let password = cfg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    (args, password)
}

/// Connects with tokio-postgres (no TLS); the connection task is spawned on the runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test database failed: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}
