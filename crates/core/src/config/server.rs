//! `[[server]]` entries (every database of a server, discovered at each run), their
//! per-database overrides (`[[server.database]]`, by name or glob), and `[drill]`'s
//! coverage settings. Discovery itself is in the fleet module.

use super::database::{DatabaseSettings, DrillSettings, SourceRef};
use crate::ids::DbName;
use crate::{Error, Result};
use pgdrill_pg::{ConnSpec, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `[A-Za-z0-9_-]{1,64}`: the first part of its databases' names in the store
    /// (`<server>.<datname>`).
    pub name: String,
    /// A connection to any database of the server (discovery and globals use it); each
    /// discovered database is reached with the same URL, its database name replaced.
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// Glob patterns (`*`, `?`) on database names; empty: every database.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Roles and tablespaces with every backup of the server's databases (default true).
    pub globals: Option<bool>,
    /// Keep the roles' password hashes in the globals (default false: `--no-role-passwords`).
    #[serde(default)]
    pub globals_passwords: bool,
    /// pg_dump arguments of every database of the server (an override may replace them).
    #[serde(default)]
    pub pg_dump_args: Vec<String>,
    /// `[server.drill]`: drill settings and checks of every database of the server.
    #[serde(default)]
    pub drill: toml::Table,
    /// `[[server.database]]`: overrides for the databases whose name matches.
    #[serde(default, rename = "database")]
    pub overrides: Vec<OverrideSection>,
}

/// `[[server.database]]`: settings for the databases whose name (on the server) matches
/// `match` (an exact name or a glob). Every matching entry applies, in file order: a later
/// one replaces `pg_dump_args` and `globals`, and its `[drill]` keys replace the same keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverrideSection {
    #[serde(rename = "match")]
    pub pattern: String,
    pub pg_dump_args: Option<Vec<String>>,
    pub globals: Option<bool>,
    #[serde(default)]
    pub drill: toml::Table,
    pub audit: Option<crate::audit::AuditSection>,
}

/// Databases a platform keeps for itself: excluded unless an `include` pattern names one
/// exactly. Templates never allow connections or are marked templates, and discovery skips
/// them by its query.
pub const PLATFORM_DATABASES: &[&str] = &[
    "rdsadmin",
    "cloudsqladmin",
    "azure_maintenance",
    "azure_sys",
    "template0",
    "template1",
];

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub name: String,
    pub source: SourceRef,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub globals: bool,
    pub globals_passwords: bool,
    pub pg_dump_args: Vec<String>,
    pub drill: toml::Table,
    pub overrides: Vec<OverrideSection>,
}

impl ServerSettings {
    /// The server's connection; fails (exit 2) when its variable is unset.
    pub fn spec(&self, env: &super::Env) -> Result<ConnSpec> {
        let env_vec = crate::env::pairs(env);
        let url = match &self.source {
            SourceRef::Discovered(spec) => return Ok(spec.clone()),
            SourceRef::Url(u) => u.expose().to_string(),
            SourceRef::Env(var) => env.get(var).cloned().filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::Invalid(format!(
                    "server {}: url_env names {var}, which is not set; export it (postgresql://user:password@host:5432/postgres)",
                    self.name
                ))
            })?,
        };
        Ok(ConnSpec::parse_with_env(&url, &env_vec)?)
    }

    /// Whether a database of this server is backed up: included (every database when
    /// `include` is empty), not excluded, and not a platform database unless included by
    /// its exact name.
    pub fn selects(&self, datname: &str) -> bool {
        let named = self.include.iter().any(|p| p == datname);
        if PLATFORM_DATABASES.contains(&datname) && !named {
            return false;
        }
        let included = self.include.is_empty() || self.include.iter().any(|p| glob(p, datname));
        included && !self.exclude.iter().any(|p| glob(p, datname))
    }

    /// The name of a database of this server in the store: `<server>.<datname>`, with
    /// characters the store does not allow in a name replaced by `_`.
    pub fn store_name(&self, datname: &str) -> Result<DbName> {
        let clean: String = datname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        DbName::parse(&format!("{}.{clean}", self.name)).map_err(Error::Invalid)
    }

    /// The `[[database]]`-like settings of one discovered database: the server's, then each
    /// matching override in order. `server` is the server's connection: the database's is
    /// the same with its database name replaced (the password stays out of argv as a
    /// `[[database]]`'s does).
    pub fn database(&self, datname: &str, server: &ConnSpec) -> Result<DatabaseSettings> {
        let name = self.store_name(datname)?;
        let mut d = DatabaseSettings::store_only(name);
        d.source = Some(SourceRef::Discovered(server.with_dbname(datname)));
        d.pg_dump_args = self.pg_dump_args.clone();
        d.globals = self.globals;
        d.globals_passwords = self.globals_passwords;
        d.server = Some(self.name.clone());
        d.drill = self.drill.clone();
        for o in self.overrides.iter().filter(|o| glob(&o.pattern, datname)) {
            if let Some(a) = &o.pg_dump_args {
                d.pg_dump_args = a.clone();
            }
            if let Some(g) = o.globals {
                d.globals = g;
            }
            for (k, v) in &o.drill {
                d.drill.insert(k.clone(), v.clone());
            }
            if o.audit.is_some() {
                d.audit = o.audit.clone();
            }
        }
        d.drill_settings = DrillSettings::from_table(&d.drill, d.name.as_str())?;
        Ok(d)
    }
}

/// Every `[[server]]` entry checked, in order; names must be distinct (they name the
/// servers in `status`, the dashboard and the discovered databases' records).
pub(super) fn all_server_settings(sections: &[ServerSection]) -> Result<Vec<ServerSettings>> {
    let mut servers = Vec::new();
    for s in sections {
        let s = server_settings(s)?;
        if servers.iter().any(|x: &ServerSettings| x.name == s.name) {
            return Err(Error::Invalid(format!(
                "two [[server]] entries are named {}: give each a distinct name",
                s.name
            )));
        }
        servers.push(s);
    }
    Ok(servers)
}

pub(super) fn server_settings(s: &ServerSection) -> Result<ServerSettings> {
    let ok_name = !s.name.is_empty()
        && s.name.len() <= 64
        && s.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok_name {
        return Err(Error::Invalid(format!(
            "[[server]] name {:?} is not usable: use 1 to 64 letters, digits, '-' or '_'",
            s.name
        )));
    }
    let source = match (&s.url, &s.url_env) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(Error::Invalid(format!(
                "[[server]] {} needs exactly one of url_env and url: set url_env = \"VAR\" (keeps the secret out of the file)",
                s.name
            )))
        }
        (Some(u), None) => SourceRef::Url(Secret::new(u.clone())),
        (None, Some(v)) => SourceRef::Env(v.clone()),
    };
    for p in s.overrides.iter().map(|o| &o.pattern) {
        if p.is_empty() {
            return Err(Error::Invalid(format!(
                "[[server.database]] of server {} has an empty match: give a database name or a glob like \"app_*\"",
                s.name
            )));
        }
    }
    // The drill tables are checked now, as a [[database]]'s are.
    DrillSettings::from_table(&s.drill, &s.name)?;
    for o in &s.overrides {
        DrillSettings::from_table(&o.drill, &o.pattern)?;
    }
    Ok(ServerSettings {
        name: s.name.clone(),
        source,
        include: s.include.clone(),
        exclude: s.exclude.clone(),
        globals: s.globals.unwrap_or(true),
        globals_passwords: s.globals_passwords,
        pg_dump_args: s.pg_dump_args.clone(),
        drill: s.drill.clone(),
        overrides: s.overrides.clone(),
    })
}

/// Glob match of a whole name: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[drill]`: fleet-wide drill settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillSection {
    /// Every database must have a passing drill at most this many days old; the scheduler
    /// drills the least recently proven ones first.
    pub coverage_days: Option<u64>,
    /// Databases drilled at one drill slot (default 1).
    pub max_concurrent: Option<u64>,
}

/// `[drill]` typed: present when `coverage_days` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Coverage {
    pub days: u64,
    pub max_concurrent: usize,
}

pub(super) fn coverage(d: &DrillSection) -> Result<Option<Coverage>> {
    match (d.coverage_days, d.max_concurrent) {
        (Some(0), _) => Err(Error::Invalid(
            "[drill] coverage_days = 0 cannot be met: use 1 or more days".into(),
        )),
        (_, Some(0)) => Err(Error::Invalid(
            "[drill] max_concurrent = 0 would never drill: use 1 or more".into(),
        )),
        (None, Some(_)) => Err(Error::Invalid(
            "[drill] max_concurrent needs coverage_days: set coverage_days = 30 (or remove max_concurrent)".into(),
        )),
        (None, None) => Ok(None),
        (Some(days), m) => Ok(Some(Coverage {
            days,
            max_concurrent: m.unwrap_or(1).min(1024) as usize,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(include: &[&str], exclude: &[&str]) -> ServerSettings {
        server_settings(&ServerSection {
            name: "main".into(),
            url_env: Some("U".into()),
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .expect("server")
    }

    #[test]
    fn glob_matches_whole_names() {
        assert!(glob("*", "app"));
        assert!(glob("app_*", "app_eu"));
        assert!(!glob("app_*", "myapp_eu"));
        assert!(glob("a?p", "app"));
        assert!(glob("*_test", "x_y_test"));
        assert!(!glob("app", "app2"));
        assert!(glob("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn platform_databases_are_excluded_unless_named() {
        let all = server(&[], &[]);
        for p in PLATFORM_DATABASES {
            assert!(!all.selects(p), "{p}");
        }
        assert!(all.selects("postgres"));
        assert!(all.selects("app"));
        assert!(!server(&["*admin"], &[]).selects("rdsadmin"));
        assert!(server(&["rdsadmin"], &[]).selects("rdsadmin"));
        let some = server(&["app_*", "billing"], &["app_tmp*"]);
        assert!(some.selects("app_eu") && some.selects("billing"));
        assert!(!some.selects("app_tmp1") && !some.selects("postgres"));
    }

    #[test]
    fn store_names_are_prefixed_by_the_server_and_cleaned() {
        let s = server(&[], &[]);
        assert_eq!(s.store_name("app").expect("name").as_str(), "main.app");
        assert_eq!(
            s.store_name("my db/1").expect("name").as_str(),
            "main.my_db_1"
        );
    }

    fn spec() -> ConnSpec {
        ConnSpec::parse_with_env("postgresql://u:pw@h/postgres", &[]).expect("spec")
    }

    #[test]
    fn overrides_apply_in_order_by_glob() {
        let mut sec = ServerSection {
            name: "main".into(),
            url_env: Some("U".into()),
            pg_dump_args: vec!["--no-comments".into()],
            ..Default::default()
        };
        let drill: toml::Table = "jobs = 2".parse().expect("toml");
        sec.overrides.push(OverrideSection {
            pattern: "big_*".into(),
            pg_dump_args: Some(vec!["--exclude-table-data=events".into()]),
            drill,
            ..Default::default()
        });
        let s = server_settings(&sec).expect("server");
        let big = s.database("big_eu", &spec()).expect("db");
        assert_eq!(big.pg_dump_args, vec!["--exclude-table-data=events"]);
        assert_eq!(big.drill_settings.jobs, Some(2));
        assert_eq!(big.server.as_deref(), Some("main"));
        assert_eq!(
            big.source_spec(&super::super::Env::new())
                .expect("spec")
                .dbname,
            "big_eu"
        );
        let small = s.database("small", &spec()).expect("db");
        assert_eq!(small.pg_dump_args, vec!["--no-comments"]);
        assert!(small.globals && !small.globals_passwords);
    }

    #[test]
    fn bad_servers_and_coverage_are_refused() {
        for name in ["", "a.b", "a/b"] {
            let e = server_settings(&ServerSection {
                name: name.into(),
                url_env: Some("U".into()),
                ..Default::default()
            })
            .expect_err(name);
            assert_eq!(e.exit_code(), 2);
        }
        let e = server_settings(&ServerSection {
            name: "x".into(),
            ..Default::default()
        })
        .expect_err("no url");
        assert!(e.to_string().contains("url_env"), "{e}");
        let c = |d, m| {
            coverage(&DrillSection {
                coverage_days: d,
                max_concurrent: m,
            })
        };
        assert!(c(Some(0), None).is_err());
        assert!(c(Some(30), Some(0)).is_err());
        assert!(c(None, Some(2)).is_err());
        assert_eq!(
            c(Some(30), None).expect("ok"),
            Some(Coverage {
                days: 30,
                max_concurrent: 1
            })
        );
    }

    /// The README's example, loaded whole.
    #[test]
    fn the_readme_example_loads() {
        let text = r#"
[[server]]
name = "main"
url_env = "MAIN_PG_URL"
include = ["*"]
exclude = ["scratch_*", "postgres"]
globals = true
globals_passwords = false
pg_dump_args = ["--no-comments"]
[server.drill]
jobs = 2

[[server.database]]
match = "analytics_*"
pg_dump_args = ["--exclude-table-data=public.events"]
[server.database.drill]
target_url_env = "STAGING_URL"

[drill]
coverage_days = 30
max_concurrent = 1
"#;
        let env = super::super::Env::new();
        let s = super::super::Settings::load(Some(text), "t", std::path::Path::new("/"), &env)
            .expect("settings");
        assert_eq!(s.servers.len(), 1);
        let main = &s.servers[0];
        assert!(!main.selects("postgres") && main.selects("app"));
        let d = main.database("analytics_eu", &spec()).expect("db");
        assert_eq!(d.drill_settings.jobs, Some(2));
        assert_eq!(
            d.drill_settings.target_url_env.as_deref(),
            Some("STAGING_URL")
        );
        assert_eq!(s.coverage.map(|c| c.days), Some(30));
        let bad = format!("{text}\n[[server]]\nname = \"main\"\nurl_env = \"X\"\n");
        let e = super::super::Settings::load(Some(&bad), "t", std::path::Path::new("/"), &env)
            .expect_err("two servers named main");
        assert_eq!(e.exit_code(), 2);
    }
}
