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
    /// Why the server could not be listed (then nothing is called dropped).
    pub error: Option<String>,
}

/// Every server's view after discovery.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Fleet {
    pub servers: Vec<ServerView>,
}

impl Fleet {
    pub fn dropped(&self) -> impl Iterator<Item = &DbName> {
        self.servers.iter().flat_map(|s| s.dropped.iter())
    }

    /// The server a store name belongs to, and whether it was dropped from it.
    pub fn server_of(&self, db: &DbName) -> Option<(&str, bool)> {
        self.servers.iter().find_map(|s| {
            if s.dropped.contains(db) {
                Some((s.server.as_str(), true))
            } else if s.databases.contains(db) || in_server(&s.server, db) {
                Some((s.server.as_str(), false))
            } else {
                None
            }
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

/// The databases of `server` with backups in the store (`in_store`) that discovery did not
/// find (`found`): dropped from the server.
pub fn dropped(server: &str, found: &[DbName], in_store: &[DbName]) -> Vec<DbName> {
    in_store
        .iter()
        .filter(|d| in_server(server, d) && !found.contains(d))
        .cloned()
        .collect()
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
            plan(&server, &spec, &names)
        }
        .await;
        match found {
            Ok(dbs) => {
                view.databases = dbs.iter().map(|d| d.name.clone()).collect();
                view.dropped = dropped(&server.name, &view.databases, &in_store);
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
    fn dropped_are_the_servers_stored_databases_not_found() {
        let found = vec![n("main.app"), n("main.new")];
        let stored = vec![
            n("main.app"),
            n("main.old"),
            n("other.old"),
            n("main"),
            n("mainx.a"),
        ];
        assert_eq!(dropped("main", &found, &stored), vec![n("main.old")]);
    }

    #[test]
    fn fleet_tells_the_server_of_a_database() {
        let f = Fleet {
            servers: vec![ServerView {
                server: "main".into(),
                databases: vec![n("main.app")],
                dropped: vec![n("main.old")],
                error: None,
            }],
        };
        assert_eq!(f.server_of(&n("main.app")), Some(("main", false)));
        assert_eq!(f.server_of(&n("main.old")), Some(("main", true)));
        assert_eq!(f.server_of(&n("app")), None);
        assert_eq!(f.dropped().count(), 1);
    }
}
