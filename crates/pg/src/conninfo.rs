//! Connection specs: parsed once from a URL (plus libpq's `PG*` variables), then handed to
//! children through the environment and a 0600 password file, never through argv.

use std::fmt;
use std::path::Path;

/// A secret value whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it must leave the process (a pgpass file, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("invalid connection URL ({redacted}): {reason}")]
    Invalid { redacted: String, reason: String },
}

/// Query parameters that may carry secrets and are never shown.
const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "passfile"];

/// Everything needed to connect to one database.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnSpec {
    /// Host name, IP address, or a unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    /// Other libpq parameters (`sslmode`, `application_name`, `options`, ...), non-secret.
    pub params: Vec<(String, String)>,
}

impl fmt::Debug for ConnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn pct_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

impl ConnSpec {
    /// Parses a `postgres://` / `postgresql://` URL. Missing parts come from `env` (libpq's
    /// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`), then libpq's defaults.
    pub fn parse_with_env(raw: &str, env: &[(String, String)]) -> Result<ConnSpec, ConnError> {
        let get_env = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let invalid = |reason: &str| ConnError::Invalid {
            redacted: redact_url(raw),
            reason: reason.to_string(),
        };
        let rest = raw
            .strip_prefix("postgresql://")
            .or_else(|| raw.strip_prefix("postgres://"))
            .ok_or_else(|| invalid("it must start with postgresql:// or postgres://"))?;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        // An `@` after the host means a password with an unencoded `/` or `?`: parsing on would
        // show part of it as the port, the database name or a parameter.
        if userinfo.is_none()
            && (path.contains('@')
                || query
                    .split('&')
                    .any(|kv| kv.split('=').next().unwrap_or_default().contains('@')))
        {
            return Err(invalid(
                "an '@' follows the host: percent-encode '/', '?' and '@' in the password (%2F, %3F, %40)",
            ));
        }
        let (mut user, mut password) = (None, None);
        if let Some(u) = userinfo {
            let (name, pw) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
            if !name.is_empty() {
                user = Some(pct_decode(name));
            }
            password = pw.map(|p| Secret::new(pct_decode(p)));
        }
        let (mut host, mut port) = (None, None);
        if !hostport.is_empty() {
            if hostport.contains(',') {
                return Err(invalid(
                    "several hosts in one URL are not supported; name one server",
                ));
            }
            let (h, p) = if let Some(stripped) = hostport.strip_prefix('[') {
                let (h, after) = stripped
                    .split_once(']')
                    .ok_or_else(|| invalid("unclosed [ in the host"))?;
                (h.to_string(), after.strip_prefix(':').map(str::to_string))
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), Some(p.to_string())),
                    None => (hostport.to_string(), None),
                }
            };
            if !h.is_empty() {
                host = Some(pct_decode(&h));
            }
            if let Some(p) = p.filter(|p| !p.is_empty()) {
                port = Some(
                    p.parse::<u16>()
                        .map_err(|_| invalid("the port is not a number"))?,
                );
            }
        }
        let mut dbname = (!path.is_empty()).then(|| pct_decode(path));
        let mut params = Vec::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            match k.as_str() {
                "host" => host = Some(v),
                "port" => port = Some(v.parse().map_err(|_| invalid("the port is not a number"))?),
                "user" => user = Some(v),
                "password" => password = Some(Secret::new(v)),
                "dbname" => dbname = Some(v),
                _ => params.push((k, v)),
            }
        }
        let host = host
            .or_else(|| get_env("PGHOST"))
            .unwrap_or_else(|| "localhost".into());
        let port = match port {
            Some(p) => p,
            None => match get_env("PGPORT") {
                Some(p) => p.parse().map_err(|_| invalid("PGPORT is not a number"))?,
                None => 5432,
            },
        };
        // Percent-decoding is lossy: a name whose bytes are not UTF-8 (`caf%E9`, a LATIN1
        // name) would become another name (`caf\u{FFFD}`). pgdrill's client and the store's
        // keys take UTF-8 names only, so such a name is refused, not mangled.
        for (what, v) in [("database name", &dbname), ("user name", &user)] {
            if v.as_deref().is_some_and(|v| v.contains('\u{FFFD}'))
                && !raw.contains('\u{FFFD}')
                && !raw.to_ascii_uppercase().contains("%EF%BF%BD")
            {
                return Err(invalid(&format!(
                    "its {what} is not UTF-8 once percent-decoded; pgdrill handles UTF-8 names only: rename the database or role (ALTER DATABASE/ROLE ... RENAME TO) to a UTF-8 name"
                )));
            }
        }
        let user = user
            .or_else(|| get_env("PGUSER"))
            .or_else(|| get_env("USER"))
            .unwrap_or_else(|| "postgres".into());
        let password = password.or_else(|| get_env("PGPASSWORD").map(Secret::new));
        let dbname = dbname
            .or_else(|| get_env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        Ok(ConnSpec {
            host,
            port,
            user,
            password,
            dbname,
            params,
        })
    }

    /// Parses with the process environment.
    pub fn parse(raw: &str) -> Result<ConnSpec, ConnError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::parse_with_env(raw, &env)
    }

    pub fn with_dbname(&self, dbname: &str) -> ConnSpec {
        ConnSpec {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A URL safe to print: no password, no secret parameters.
    pub fn redacted(&self) -> String {
        let host = if self.host.starts_with('/') {
            String::new()
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut s = format!(
            "postgresql://{}@{}:{}/{}",
            self.user, host, self.port, self.dbname
        );
        let mut q: Vec<String> = Vec::new();
        if self.host.starts_with('/') {
            q.push(format!("host={}", self.host));
        }
        for (k, v) in &self.params {
            if !SECRET_PARAMS.contains(&k.as_str()) {
                q.push(format!("{k}={v}"));
            }
        }
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }

    /// The key two specs share when they name the same database on the same server:
    /// lower-cased host with loopback names and unix socket directories folded together (a
    /// socket on a port is the local server on that port), port, database.
    pub fn identity_key(&self) -> (String, u16, String) {
        let h = self.host.to_ascii_lowercase();
        let host = match h.as_str() {
            "localhost" | "127.0.0.1" | "::1" | "[::1]" | "" => "localhost".to_string(),
            _ if h.starts_with('/') => "localhost".to_string(),
            _ => h,
        };
        (host, self.port, self.dbname.clone())
    }

    /// Environment for a libpq child (`pg_dump`, `pg_restore`, `psql`). The password goes
    /// into `passfile`, which the caller keeps alive for the child's lifetime.
    pub fn child_env(&self, passfile: Option<&Path>) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
            ("PGDATABASE".to_string(), self.dbname.clone()),
        ];
        if let Some(p) = passfile {
            env.push(("PGPASSFILE".into(), p.display().to_string()));
        }
        for (k, v) in &self.params {
            let var = match k.as_str() {
                "sslmode" => "PGSSLMODE",
                "sslrootcert" => "PGSSLROOTCERT",
                "sslcert" => "PGSSLCERT",
                "sslkey" => "PGSSLKEY",
                "application_name" => "PGAPPNAME",
                "options" => "PGOPTIONS",
                "connect_timeout" => "PGCONNECT_TIMEOUT",
                "target_session_attrs" => "PGTARGETSESSIONATTRS",
                "channel_binding" => "PGCHANNELBINDING",
                _ => continue,
            };
            env.push((var.to_string(), v.clone()));
        }
        env
    }

    /// Prepares `cmd` (pg_dump, pg_dumpall, pg_restore, psql) to connect with this spec: its
    /// environment is cleared down to what locates programs and sets locale and time zone,
    /// then the connection settings are added. Secrets pgdrill holds for other purposes (S3
    /// keys, passphrases, other databases' URLs) never reach these children.
    pub fn configure_child(&self, cmd: &mut std::process::Command, passfile: Option<&Path>) {
        basic_child_env(cmd);
        cmd.envs(self.child_env(passfile));
    }

    /// libpq variables a child must not inherit from pgdrill's own environment, so that the
    /// spec above is the only source of truth.
    pub fn inherited_vars_to_clear() -> &'static [&'static str] {
        &[
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGPASSFILE",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGOPTIONS",
            "PGSSLMODE",
            "DATABASE_URL",
        ]
    }

    /// Writes a 0600 pgpass file holding this spec's password, if it has one; it is deleted
    /// when dropped, and by the next pgdrill command if this process is killed first.
    pub fn write_passfile(&self) -> std::io::Result<Option<crate::passfile::PassFile>> {
        self.password
            .as_ref()
            .map(|pw| crate::passfile::PassFile::create(pw.expose()))
            .transpose()
    }

    /// A tokio-postgres config for pgdrill's own connections.
    pub fn tokio_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("pgdrill")
            .connect_timeout(std::time::Duration::from_secs(15));
        if let Some(pw) = &self.password {
            c.password(pw.expose());
        }
        if let Some(opts) = self.param("options") {
            c.options(opts);
        }
        c
    }

    /// Whether this looks like a transaction-mode pooler (Supavisor/PgBouncer on 6543).
    pub fn looks_like_transaction_pooler(&self) -> bool {
        self.port == 6543 || self.param("pgbouncer") == Some("true")
    }
}

/// Clears `cmd`'s environment down to what locates programs and sets locale and time zone
/// (`PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LANGUAGE`, `LC_*`, `TZ`, `TMPDIR`,
/// `LD_LIBRARY_PATH`). Every PostgreSQL program pgdrill starts (pg_dump, pg_restore, psql,
/// initdb, pg_ctl, the throwaway server) gets this and only what it needs on top: S3 keys,
/// passphrases and connection URLs pgdrill holds never reach them, nor their
/// `/proc/<pid>/environ` (readable by the user a throwaway server runs as).
pub fn basic_child_env(cmd: &mut std::process::Command) {
    const KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "LD_LIBRARY_PATH",
    ];
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if KEEP.contains(&name.as_ref()) || name.starts_with("LC_") {
            cmd.env(&k, &v);
        }
    }
}

/// Best-effort redaction of a raw string that failed to parse. Everything before the last `@`
/// counts as user information (a password may hold an unencoded `/`, `?` or `@`): only the
/// user name is kept, and the query is dropped.
pub fn redact_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<unparsable>".into();
    };
    let (user, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            let end = userinfo.find([':', '/', '?']).unwrap_or(userinfo.len());
            (Some(&userinfo[..end]), after)
        }
        None => (None, rest),
    };
    let shown = after.split('?').next().unwrap_or_default();
    match user {
        Some(u) => format!("{scheme}://{u}@{shown}"),
        None => format!("{scheme}://{shown}"),
    }
}

#[cfg(test)]
mod tests;
