//! Fleets: the databases of each `[[server]]`, discovered at each run, and drill coverage.
//!
//! Discovery lists the server's databases (`pg_database`: those that allow connections and
//! are not templates), keeps the ones its `include`/`exclude` patterns select, and turns
//! each into a [`DatabaseSettings`] named `<server>.<datname>` in the store: from then on it
//! is a database like a `[[database]]` entry (a `[[database]]` of the same name wins).
//! Databases of the server that have backups in the store but are gone from the server are
//! "dropped": not backed up any more, still listed, reported by `status` and pruned by the
//! retention policy like any other.

pub mod coverage;

use crate::config::{DatabaseSettings, Env, ServerSettings, Settings};
use crate::ids::DbName;
use crate::{catalog, Error, Result};
use pgdrill_store::Store;
use serde::Serialize;

/// What discovery found on one server.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ServerView {
    pub server: String,
    /// Store names of the databases backed up from it.
    pub databases: Vec<DbName>,
    /// Store names with backups whose database is no longer on the server.
    pub dropped: Vec<DbName>,
    /// Store names with backups whose database is still on the server but no longer
    /// selected by its `include`/`exclude` patterns.
    pub excluded: Vec<DbName>,
    /// Why the server could not be listed (then nothing is called dropped).
    pub error: Option<String>,
}

/// Every server's view after discovery.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Fleet {
    pub servers: Vec<ServerView>,
}

/// Where a database of a server stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// On the server and selected: backed up.
    Active,
    /// Gone from the server; its backups stay under retention.
    Dropped,
    /// On the server, no longer selected by the patterns; its backups stay under retention.
    Excluded,
}

impl Fleet {
    pub fn dropped(&self) -> impl Iterator<Item = &DbName> {
        self.servers.iter().flat_map(|s| s.dropped.iter())
    }

    /// Databases with backups that are not backed up any more (dropped or excluded).
    pub fn retired(&self) -> impl Iterator<Item = &DbName> {
        self.servers
            .iter()
            .flat_map(|s| s.dropped.iter().chain(&s.excluded))
    }

    /// The server a store name belongs to, and where the database stands.
    pub fn server_of(&self, db: &DbName) -> Option<(&str, Membership)> {
        self.servers.iter().find_map(|s| {
            let m = if s.dropped.contains(db) {
                Membership::Dropped
            } else if s.excluded.contains(db) {
                Membership::Excluded
            } else if s.databases.contains(db) || in_server(&s.server, db) {
                Membership::Active
            } else {
                return None;
            };
            Some((s.server.as_str(), m))
        })
    }

    /// Servers that could not be listed, as errors (exit 1) naming the server.
    pub fn errors(&self) -> Vec<(String, Error)> {
        self.servers
            .iter()
            .filter_map(|s| {
                s.error
                    .as_ref()
                    .map(|e| (s.server.clone(), Error::Failed(e.clone())))
            })
            .collect()
    }
}

fn in_server(server: &str, db: &DbName) -> bool {
    db.as_str()
        .strip_prefix(server)
        .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
}

/// The databases of `server` with backups in the store (`in_store`) that are not backed up
/// (`selected`): dropped when the server does not hold them any more (`on_server`: the store
/// names of all its databases), else excluded by its patterns.
pub fn retired(
    server: &str,
    selected: &[DbName],
    on_server: &[DbName],
    in_store: &[DbName],
) -> (Vec<DbName>, Vec<DbName>) {
    in_store
        .iter()
        .filter(|d| in_server(server, d) && !selected.contains(d))
        .cloned()
        .partition(|d| !on_server.contains(d))
}

/// The settings of each database `names` (as on the server) selects, in name order; a
/// name two databases would share in the store is an error naming both.
pub fn plan(
    server: &ServerSettings,
    spec: &pgdrill_pg::ConnSpec,
    names: &[String],
) -> Result<Vec<DatabaseSettings>> {
    let mut names: Vec<&String> = names.iter().filter(|n| server.selects(n)).collect();
    names.sort();
    let mut out: Vec<(String, DatabaseSettings)> = Vec::new();
    for n in names {
        let d = server.database(n, spec)?;
        if let Some((other, _)) = out.iter().find(|(_, x)| x.name == d.name) {
            return Err(Error::Invalid(format!(
                "server {}: databases {other:?} and {n:?} would both be stored as {}: exclude one of them",
                server.name, d.name
            )));
        }
        out.push((n.clone(), d));
    }
    Ok(out.into_iter().map(|(_, d)| d).collect())
}

/// Lists the databases on a server.
async fn list_server(spec: &pgdrill_pg::ConnSpec) -> Result<Vec<String>> {
    let client = pgdrill_pg::client::connect(spec).await?;
    let rows = client
        .query(
            "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| {
            Error::Failed(format!(
                "cannot list the databases of {}: {}",
                spec.redacted(),
                pgdrill_pg::client::describe(&e)
            ))
        })?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Discovers every server's databases and adds them to `settings.databases` (a
/// `[[database]]` of the same store name keeps its own settings). With a store, names of a
/// server's databases that have backups there but were not found are reported dropped.
/// A server that cannot be listed is in the view with its error; the others go on.
pub async fn discover(settings: &mut Settings, env: &Env, store: Option<&Store>) -> Result<Fleet> {
    let mut fleet = Fleet::default();
    if settings.servers.is_empty() {
        return Ok(fleet);
    }
    let in_store = match store {
        Some(s) => catalog::databases(s).await?,
        None => Vec::new(),
    };
    for server in settings.servers.clone() {
        let mut view = ServerView {
            server: server.name.clone(),
            ..Default::default()
        };
        let found = async {
            let spec = server.spec(env)?;
            let names = list_server(&spec).await?;
            let all: Vec<DbName> = names
                .iter()
                .filter_map(|n| server.store_name(n).ok())
                .collect();
            Ok::<_, Error>((plan(&server, &spec, &names)?, all))
        }
        .await;
        match found {
            Ok((dbs, on_server)) => {
                view.databases = dbs.iter().map(|d| d.name.clone()).collect();
                (view.dropped, view.excluded) =
                    retired(&server.name, &view.databases, &on_server, &in_store);
                for d in dbs {
                    if !settings.databases.iter().any(|x| x.name == d.name) {
                        settings.databases.push(d);
                    }
                }
            }
            Err(e) => {
                view.error = Some(format!("server {}: {e}", server.name));
                // Still listed (and pruned) from what the store holds.
                view.databases = in_store
                    .iter()
                    .filter(|d| in_server(&server.name, d))
                    .cloned()
                    .collect();
            }
        }
        fleet.servers.push(view);
    }
    Ok(fleet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> DbName {
        DbName::parse(s).expect("name")
    }

    #[test]
    fn dropped_are_gone_from_the_server_excluded_are_not_selected() {
        let selected = vec![n("main.app"), n("main.new")];
        let on_server = vec![n("main.app"), n("main.new"), n("main.tmp")];
        let stored = vec![
            n("main.app"),
            n("main.old"),
            n("main.tmp"),
            n("other.old"),
            n("main"),
            n("mainx.a"),
        ];
        assert_eq!(
            retired("main", &selected, &on_server, &stored),
            (vec![n("main.old")], vec![n("main.tmp")])
        );
    }

    #[test]
    fn plan_selects_by_pattern_and_refuses_two_databases_on_one_store_name() {
        let server = ServerSettings {
            name: "main".into(),
            source: crate::config::SourceRef::Env("U".into()),
            include: vec![],
            exclude: vec!["tmp_*".into()],
            globals: true,
            globals_passwords: false,
            pg_dump_args: vec![],
            drill: toml::Table::new(),
            overrides: vec![],
        };
        let spec = pgdrill_pg::ConnSpec::parse_with_env("postgresql://u:pw@h/postgres", &[])
            .expect("spec");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let planned = plan(&server, &spec, &names(&["b", "a", "tmp_1", "rdsadmin"])).expect("plan");
        let got: Vec<&str> = planned.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(got, vec!["main.a", "main.b"]);
        let e = plan(&server, &spec, &names(&["my db", "my_db"])).expect_err("collision");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("main.my_db"), "{e}");
    }

    #[test]
    fn fleet_tells_the_server_of_a_database() {
        let f = Fleet {
            servers: vec![ServerView {
                server: "main".into(),
                databases: vec![n("main.app")],
                dropped: vec![n("main.old")],
                excluded: vec![n("main.tmp")],
                error: None,
            }],
        };
        assert_eq!(
            f.server_of(&n("main.app")),
            Some(("main", Membership::Active))
        );
        assert_eq!(
            f.server_of(&n("main.old")),
            Some(("main", Membership::Dropped))
        );
        assert_eq!(
            f.server_of(&n("main.tmp")),
            Some(("main", Membership::Excluded))
        );
        assert_eq!(f.retired().count(), 2);
        assert_eq!(f.server_of(&n("app")), None);
        assert_eq!(f.dropped().count(), 1);
    }
}
