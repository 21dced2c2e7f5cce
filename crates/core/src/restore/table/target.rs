//! The table restore's guards and its SQL on the target (exit 5 before anything changes).
//!
//! - Without `--into-schema`: the guards of a whole restore for the protected targets and the
//!   backup's source (refused), and never over an existing table (refused); the database
//!   may hold anything else, and is created when missing.
//! - With `--into-schema NEW`: any database, the live one included, but `NEW` must not exist
//!   yet: everything lands in it, nothing else is touched.

use crate::restore::guards::maintenance_db;
use crate::restore::RestoreJob;
use crate::{Error, Result};
use pgdrill_pg::client::{self, quote_ident};
use pgdrill_pg::ConnSpec;

/// What the guards learned.
pub(super) struct Target {
    pub exists: bool,
    /// `server_version_num` of the target server.
    pub version_num: u32,
    /// The roles the target server has.
    pub roles: std::collections::BTreeSet<String>,
}

/// A schema name `--into-schema` accepts: a plain PostgreSQL identifier.
pub(super) fn check_schema_name(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with("pg_")
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--into-schema {s:?} is not a usable schema name: use lowercase letters, digits and _ (not starting with pg_ or a digit), at most 63"
    )))
}

/// Refuses the backup's source and the protected targets (unless `side` is set).
async fn source_and_protected(
    job: &RestoreJob<'_>,
    sysid: Option<&str>,
    admin: &str,
) -> Result<()> {
    let t = &job.target;
    crate::protect::check(job.protected_targets, t, sysid, admin)
        .await
        .map_err(|e| match e {
            Error::Refused(m) => Error::Refused(format!(
                "{m} (a table restore goes there only with --into-schema NEW)"
            )),
            other => other,
        })?;
    let m = job.manifest;
    let recorded = ConnSpec {
        host: m.source.host.clone(),
        port: m.source.port,
        dbname: m.source.dbname.clone(),
        ..t.clone()
    };
    let same_spelling = t.identity_key() == recorded.identity_key()
        || job
            .source
            .as_ref()
            .is_some_and(|s| s.identity_key() == t.identity_key());
    let same_server = matches!((sysid, &m.server.system_identifier), (Some(a), Some(b)) if a == b)
        && t.dbname == m.source.dbname;
    if same_spelling || same_server {
        return Err(Error::Refused(format!(
            "{} is the backup's source database; nothing was changed (restore the tables beside the live ones with --into-schema NEW, or into another database)",
            t.redacted()
        )));
    }
    Ok(())
}

/// Checks every guard without changing anything. `tables` are the names the restore
/// creates (in `into` when set).
pub(super) async fn inspect(
    job: &RestoreJob<'_>,
    into: Option<&str>,
    tables: &[(String, String)],
    scratch: bool,
) -> Result<Target> {
    let t = &job.target;
    let guarded = into.is_none() && !scratch;
    if guarded {
        crate::protect::check(job.protected_targets, t, None, "")
            .await
            .map_err(|e| match e {
                Error::Refused(m) => Error::Refused(format!(
                    "{m} (a table restore goes there only with --into-schema NEW)"
                )),
                other => other,
            })?;
    }
    let admin = t.with_dbname(&maintenance_db(t));
    let c = client::connect(&admin).await?;
    let facts = client::server_facts(&c, &admin).await?;
    if guarded {
        source_and_protected(job, facts.system_identifier.as_deref(), &admin.dbname).await?;
    }
    let exists = client::database_exists(&c, &admin, &t.dbname).await?;
    if !exists && into.is_some() {
        return Err(Error::Invalid(format!(
            "the database `{}` does not exist: --into-schema restores beside the tables of an existing database (leave it out to restore into a new one)",
            t.dbname
        )));
    }
    if exists {
        let tc = client::connect(t).await?;
        if let Some(s) = into {
            let n: i64 = tc
                .query_one(
                    "select count(*) from pg_namespace where nspname = $1",
                    &[&s],
                )
                .await
                .map_err(|e| query(t, "look the schema up", &e))?
                .get(0);
            if n > 0 {
                return Err(Error::Refused(format!(
                    "the schema `{s}` exists in {}; nothing was changed (--into-schema needs a new schema name)",
                    t.redacted()
                )));
            }
        }
        let (schemas, names): (Vec<String>, Vec<String>) = tables.iter().cloned().unzip();
        let rows = tc
            .query(
                "select u.s || '.' || u.t from unnest($1::text[], $2::text[]) as u(s, t) \
                 where exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = u.s and c.relname = u.t)",
                &[&schemas, &names],
            )
            .await
            .map_err(|e| query(t, "look the tables up", &e))?;
        let existing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if !existing.is_empty() {
            return Err(Error::Refused(format!(
                "{} already has {}; nothing was changed (a table restore never replaces a table: restore beside it with --into-schema NEW, or into another database)",
                t.redacted(),
                existing.join(", ")
            )));
        }
    }
    let roles = c
        .query("select rolname::text from pg_roles", &[])
        .await
        .map_err(|e| query(&admin, "list the roles", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Target {
        exists,
        version_num: facts.version_num,
        roles,
    })
}

fn query(t: &ConnSpec, action: &str, e: &tokio_postgres::Error) -> Error {
    Error::Failed(format!(
        "query failed on {} while trying to {action}: {}",
        t.redacted(),
        client::describe(e)
    ))
}

/// Runs `sql` in database `spec`.
pub(super) async fn execute(spec: &ConnSpec, action: &'static str, sql: &str) -> Result<()> {
    let c = client::connect(spec).await?;
    client::execute(&c, spec, action, sql).await?;
    Ok(())
}

/// `create schema if not exists` for each of `schemas`; returns those it created.
pub(super) async fn create_schemas(spec: &ConnSpec, schemas: &[String]) -> Result<Vec<String>> {
    let c = client::connect(spec).await?;
    let mut created = Vec::new();
    for s in schemas {
        let n: i64 = c
            .query_one("select count(*) from pg_namespace where nspname = $1", &[s])
            .await
            .map_err(|e| query(spec, "look the schema up", &e))?
            .get(0);
        if n == 0 {
            client::execute(
                &c,
                spec,
                "create a schema",
                &format!("create schema {}", quote_ident(s)),
            )
            .await?;
            created.push(s.clone());
        }
    }
    Ok(created)
}

/// Moves the tables into schema `into` (their indexes, constraints, owned sequences and
/// policies move along), and the shared `sequences` their defaults use, in the scratch
/// database.
pub(super) async fn move_tables(
    spec: &ConnSpec,
    into: &str,
    tables: &[(String, String)],
    sequences: &[(String, String)],
) -> Result<()> {
    let mut sql = format!("create schema {};\n", quote_ident(into));
    for (s, n) in tables {
        sql.push_str(&format!(
            "alter table {}.{} set schema {};\n",
            quote_ident(s),
            quote_ident(n),
            quote_ident(into)
        ));
    }
    for (s, n) in sequences {
        sql.push_str(&format!(
            "alter sequence {}.{} set schema {};\n",
            quote_ident(s),
            quote_ident(n),
            quote_ident(into)
        ));
    }
    execute(spec, "move the tables into the new schema", &sql).await
}

/// ANALYZE of the restored tables.
pub(super) async fn analyze(spec: &ConnSpec, tables: &[(String, String)]) -> Result<()> {
    let names: Vec<String> = tables
        .iter()
        .map(|(s, n)| format!("{}.{}", quote_ident(s), quote_ident(n)))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    execute(
        spec,
        "analyze the restored tables",
        &format!("analyze {}", names.join(", ")),
    )
    .await
}

/// Creates database `name` on the target's server.
pub(super) async fn create_database(job: &RestoreJob<'_>, name: &str) -> Result<()> {
    let t = &job.target;
    let admin = t.with_dbname(&maintenance_db(t));
    let c = client::connect(&admin).await?;
    client::create_database(&c, &admin, name).await?;
    Ok(())
}

/// Creates the scratch database `name` on the target's server (for `--into-schema` and
/// `diff`); a role without CREATEDB gets told so.
pub(super) async fn create_scratch(job: &RestoreJob<'_>, name: &str) -> Result<()> {
    create_database(job, name).await.map_err(|e| {
        e.map_message(|m| {
            format!(
                "{m}; --into-schema and diff restore the tables into a scratch database on the target's server first: the role needs CREATEDB there"
            )
        })
    })
}

/// Drops database `name` on the target's server (best effort: the error names the command).
pub(super) async fn drop_database(job: &RestoreJob<'_>, name: &str) -> Result<()> {
    let t = &job.target;
    let admin = t.with_dbname(&maintenance_db(t));
    let c = client::connect(&admin).await?;
    client::drop_database(&c, &admin, name)
        .await
        .map_err(|e| Error::Failed(format!("{e}; drop it with: dropdb {}", quote_ident(name))))
}
