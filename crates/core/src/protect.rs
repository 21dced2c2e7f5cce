//! `protected_targets`: servers and databases a restore or drill never writes to.
//!
//! An entry is parsed once, at config load; one that cannot be parsed is a config error, so an
//! entry that protects nothing is never accepted silently. A target is refused when it is the
//! same server by spelling (host, port and database, with `localhost`, `127.0.0.1`, `::1` and a
//! unix socket directory counted as one local host) or by identity: the entry's server, when
//! reachable, has the target server's system identifier (and the same database, when the entry
//! names one). That second check catches every other spelling (a DNS alias, another address of
//! the same machine), as the source guard does.

use crate::{Error, Result};
use pgdrill_pg::{client, ConnSpec};
use std::time::Duration;

/// How long a protected server may take to answer the identity probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One `protected_targets` entry.
#[derive(Clone, Debug, PartialEq)]
pub enum ProtectedTarget {
    /// A bare host name, IP address or socket directory: every server and database on it.
    Host(String),
    /// A `postgresql://` URL: that server (its port, 5432 when none is given), and only the
    /// named database when the URL names one.
    Server { spec: ConnSpec, any_db: bool },
}

impl ProtectedTarget {
    /// Parses an entry; the error is one sentence saying what to write instead.
    pub fn parse(entry: &str) -> Result<ProtectedTarget> {
        let e = entry.trim();
        if e.contains("://") {
            let spec = ConnSpec::parse_with_env(e, &[]).map_err(|err| {
                Error::Invalid(format!("protected_targets entry {err}: fix or remove it"))
            })?;
            return Ok(ProtectedTarget::Server {
                any_db: !url_names_database(e),
                spec,
            });
        }
        if is_host(e) {
            return Ok(ProtectedTarget::Host(e.to_string()));
        }
        Err(Error::Invalid(format!(
            "protected_targets entry `{e}` is neither a host name nor a postgresql:// URL, so it would protect nothing: write a host name (every server on it) or a URL such as postgresql://{}/ (that server)",
            if e.is_empty() { "HOST:PORT" } else { e }
        )))
    }

    /// Parses every entry of a config.
    pub fn parse_all(entries: &[String]) -> Result<Vec<ProtectedTarget>> {
        entries.iter().map(|e| ProtectedTarget::parse(e)).collect()
    }

    /// The same server (and database) as `t` by spelling, after normalizing the host.
    pub fn matches_spelling(&self, t: &ConnSpec) -> bool {
        let (th, tport, tdb) = t.identity_key();
        match self {
            ProtectedTarget::Host(h) => {
                let p = ConnSpec {
                    host: h.clone(),
                    ..t.clone()
                };
                p.identity_key().0 == th
            }
            ProtectedTarget::Server { spec, any_db } => {
                let (h, port, db) = spec.identity_key();
                h == th && port == tport && (*any_db || db == tdb)
            }
        }
    }

    /// Where to ask the entry's server for its identity: its host and port (a bare host: the
    /// target's port), with the entry's own credentials when it has a password. Otherwise the
    /// target's user name but **no password**: the target's password is never sent to another
    /// server (a protected server that asks for one is then compared by spelling only; give
    /// its entry a user and `${VAR}` password to protect it under every name).
    fn probe_spec(&self, t: &ConnSpec, maintenance_db: &str) -> ConnSpec {
        match self {
            ProtectedTarget::Host(h) => ConnSpec {
                host: h.clone(),
                dbname: maintenance_db.to_string(),
                password: None,
                ..t.clone()
            },
            // The maintenance database: the system identifier is the server's, and the
            // protected database may not exist yet.
            ProtectedTarget::Server { spec, .. } => {
                let mut p = if spec.password.is_some() {
                    spec.clone()
                } else {
                    ConnSpec {
                        host: spec.host.clone(),
                        port: spec.port,
                        password: None,
                        ..t.clone()
                    }
                };
                p.dbname = maintenance_db.to_string();
                p
            }
        }
    }

    fn database_matches(&self, t: &ConnSpec) -> bool {
        match self {
            ProtectedTarget::Host(_) => true,
            ProtectedTarget::Server { spec, any_db } => *any_db || spec.dbname == t.dbname,
        }
    }

    fn describe(&self) -> String {
        match self {
            ProtectedTarget::Host(h) => h.clone(),
            ProtectedTarget::Server { spec, any_db } => {
                let mut s = spec.redacted();
                if *any_db {
                    if let Some(i) = s.find(&format!(":{}/", spec.port)) {
                        s.truncate(i + format!(":{}/", spec.port).len());
                    }
                }
                s
            }
        }
    }
}

/// Refuses (exit 5) when `t` is one of `entries`: by spelling first (no connection), then by
/// the system identifier of each entry's server that answers. `target_sysid` is the target
/// server's (`None` when the role may not read it: spelling only).
pub async fn check(
    entries: &[ProtectedTarget],
    t: &ConnSpec,
    target_sysid: Option<&str>,
    maintenance_db: &str,
) -> Result<()> {
    let refuse = |p: &ProtectedTarget, how: &str| {
        Err(Error::Refused(format!(
            "{} is protected by the protected_targets entry {}{how}; nothing was changed (restore somewhere else)",
            t.redacted(),
            p.describe()
        )))
    };
    if let Some(p) = entries.iter().find(|p| p.matches_spelling(t)) {
        return refuse(p, "");
    }
    let Some(sysid) = target_sysid else {
        return Ok(());
    };
    let probes = entries
        .iter()
        .filter(|p| p.database_matches(t))
        .map(|p| async move {
            let spec = p.probe_spec(t, maintenance_db);
            let id = tokio::time::timeout(PROBE_TIMEOUT, async {
                let c = client::connect(&spec).await.ok()?;
                client::server_facts(&c, &spec)
                    .await
                    .ok()?
                    .system_identifier
            })
            .await
            .ok()
            .flatten();
            (p, id)
        });
    for (p, id) in futures::future::join_all(probes).await {
        if id.as_deref() == Some(sysid) {
            return refuse(p, " (same server: same system identifier)");
        }
    }
    Ok(())
}

/// A host name, an IP address, or a socket directory.
fn is_host(s: &str) -> bool {
    if s.starts_with('/') {
        return !s.contains(char::is_whitespace);
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
}

/// Whether a URL names a database (a non-empty path, or `dbname=`).
fn url_names_database(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = before_query.split_once('/').map_or("", |(_, p)| p);
    !path.is_empty()
        || url::form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == "dbname" && !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> ConnSpec {
        ConnSpec::parse_with_env(url, &[]).expect("url")
    }

    fn protects(entry: &str, url: &str) -> bool {
        ProtectedTarget::parse(entry)
            .expect("entry")
            .matches_spelling(&target(url))
    }

    #[test]
    fn protected_targets_match_hosts_and_urls() {
        let t = "postgres://u@db.prod:5432/app";
        assert!(protects("db.prod", t));
        assert!(protects("DB.PROD", t));
        assert!(protects("postgres://x@db.prod:5432/app", t));
        assert!(protects("postgres://x@db.prod:5432/", t));
        assert!(protects("postgres://x@db.prod/", t));
        assert!(!protects("postgres://x@db.prod:5432/other", t));
        assert!(!protects("postgres://x@db.prod:5433/", t));
        assert!(!protects("db.staging", t));
    }

    #[test]
    fn protected_target_matches_unix_socket_spelling() {
        let entry = "postgresql://127.0.0.1:5432/db";
        assert!(protects(entry, "postgresql://u@%2Ftmp%2Fpg:5432/db"));
        assert!(protects(entry, "postgresql://u@:5432/db?host=/tmp/pg"));
        assert!(protects(entry, "postgresql://u@localhost:5432/db"));
        assert!(protects(entry, "postgresql://u@[::1]:5432/db"));
        assert!(!protects(entry, "postgresql://u@%2Ftmp%2Fpg:5433/db"));
        assert!(protects(
            "postgresql:///db?host=/tmp/pg",
            "postgresql://u@127.0.0.1/db"
        ));
    }

    #[test]
    fn localhost_entry_protects_every_loopback_spelling() {
        for t in [
            "postgresql://u@127.0.0.1:58002/db",
            "postgresql://u@[::1]:58002/db",
            "postgresql://u@%2Fvar%2Frun%2Fpostgresql:58002/db",
        ] {
            assert!(protects("localhost", t), "{t}");
            assert!(protects("127.0.0.1", t), "{t}");
        }
        assert!(!protects("localhost", "postgresql://u@db.prod:58002/db"));
    }

    #[test]
    fn unparsable_protected_target_is_a_config_error() {
        for bad in [
            "127.0.0.1:58002",
            "db.prod:5432/app",
            "",
            "user@db.prod",
            "mysql://x",
            "postgresql://h:notaport/db",
        ] {
            let e = ProtectedTarget::parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        let e = ProtectedTarget::parse("127.0.0.1:58002").expect_err("host:port");
        assert!(
            e.to_string().contains("postgresql://127.0.0.1:58002/"),
            "{e}"
        );
        for good in [
            "db.prod",
            "10.0.0.5",
            "::1",
            "/var/run/postgresql",
            "db_1.internal",
        ] {
            assert_eq!(
                ProtectedTarget::parse(good).expect(good),
                ProtectedTarget::Host(good.into())
            );
        }
    }
}
