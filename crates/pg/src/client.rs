//! pgdrill's own connections: the snapshot-holding session of a backup and catalog facts.

use crate::conninfo::ConnSpec;
use crate::tools::PgVersion;
use tokio_postgres::{Client, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("query failed on {target} while trying to {action}: {detail}")]
    Query {
        target: String,
        action: &'static str,
        detail: String,
    },
}

/// Server facts recorded in the manifest and used by safety guards.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: PgVersion,
    pub version_num: u32,
    pub version_string: String,
    /// `pg_control_system().system_identifier`, when the role may read it.
    pub system_identifier: Option<String>,
    pub database: String,
    pub database_size_bytes: Option<i64>,
    pub in_recovery: bool,
    pub current_user: String,
    /// The database's encoding (`UTF8`, `SQL_ASCII`, `LATIN1`, ...) and libc locale, when
    /// `pg_database` could be read.
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub lc_collate: Option<String>,
    #[serde(default)]
    pub lc_ctype: Option<String>,
}

/// Encoding and locale a database was created with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbLocale {
    pub encoding: Option<String>,
    pub lc_collate: Option<String>,
    pub lc_ctype: Option<String>,
}

/// The encoding and locale of database `name` (`None` fields when it cannot be read).
pub async fn database_locale(client: &Client, name: &str) -> DbLocale {
    match client
        .query_opt(
            "select pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text \
             from pg_database where datname = $1",
            &[&name],
        )
        .await
    {
        Ok(Some(r)) => DbLocale {
            encoding: r.get(0),
            lc_collate: r.get(1),
            lc_ctype: r.get(2),
        },
        _ => DbLocale::default(),
    }
}

/// Connects with pgdrill's own client. The connection task is spawned on the runtime.
pub async fn connect(spec: &ConnSpec) -> Result<Client, PgError> {
    let fail = |detail: String| PgError::Connect {
        target: spec.redacted(),
        detail,
    };
    let mut config = spec.tokio_config();
    let client = match crate::tls::for_spec(spec).map_err(fail)? {
        crate::tls::Tls::Off => {
            let (client, conn) = config
                .connect(NoTls)
                .await
                .map_err(|e| fail(describe(&e)))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        }
        crate::tls::Tls::On(mode, tls) => {
            config.ssl_mode(mode);
            let (client, conn) = config.connect(tls).await.map_err(|e| fail(describe(&e)))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        }
    };
    Ok(client)
}

/// One line describing a tokio-postgres error, with the server's message when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn query_err<'a>(
    spec: &'a ConnSpec,
    action: &'static str,
) -> impl Fn(tokio_postgres::Error) -> PgError + 'a {
    move |e| PgError::Query {
        target: spec.redacted(),
        action,
        detail: describe(&e),
    }
}

/// Reads the facts of the server and database `client` is connected to.
pub async fn server_facts(client: &Client, spec: &ConnSpec) -> Result<ServerFacts, PgError> {
    let row = client
        .query_one(
            "select current_setting('server_version_num')::int4, version(), current_database(), \
             pg_database_size(current_database()), pg_is_in_recovery(), current_user::text",
            &[],
        )
        .await
        .map_err(query_err(spec, "read server facts"))?;
    let version_num: i32 = row.get(0);
    let version_num = u32::try_from(version_num).unwrap_or(0);
    // pg_control_system() needs superuser or pg_monitor-like grants on some setups: optional.
    let system_identifier = match client
        .query_one(
            "select system_identifier::text from pg_control_system()",
            &[],
        )
        .await
    {
        Ok(r) => r.get::<_, Option<String>>(0),
        Err(_) => None,
    };
    let database: String = row.get(2);
    let locale = database_locale(client, &database).await;
    Ok(ServerFacts {
        version: PgVersion::from_server_num(version_num),
        version_num,
        version_string: row.get(1),
        system_identifier,
        database,
        database_size_bytes: row.get(3),
        in_recovery: row.get(4),
        current_user: row.get(5),
        encoding: locale.encoding,
        lc_collate: locale.lc_collate,
        lc_ctype: locale.lc_ctype,
    })
}

/// A session holding a REPEATABLE READ transaction whose snapshot `pg_dump --snapshot` uses.
/// Keep it alive until pg_dump has finished; dropping it ends the transaction.
pub struct SnapshotSession {
    client: Client,
    pub facts: ServerFacts,
    /// `None` when the server could not export a snapshot (then `note` says why).
    pub snapshot_id: Option<String>,
    /// The snapshot's time (transaction start), RFC 3339 UTC.
    pub snapshot_time: String,
    pub note: Option<String>,
}

impl SnapshotSession {
    pub async fn open(spec: &ConnSpec) -> Result<SnapshotSession, PgError> {
        let client = connect(spec).await?;
        let facts = server_facts(&client, spec).await?;
        client
            .batch_execute("begin isolation level repeatable read read only")
            .await
            .map_err(query_err(spec, "begin the snapshot transaction"))?;
        let (snapshot_id, note) = match client.query_one("select pg_export_snapshot()", &[]).await {
            Ok(r) => (Some(r.get::<_, String>(0)), None),
            Err(e) => {
                // e.g. a standby before PG 10: continue without a shared snapshot.
                client
                    .batch_execute("rollback; begin isolation level repeatable read read only")
                    .await
                    .map_err(query_err(spec, "restart the snapshot transaction"))?;
                (
                    None,
                    Some(format!(
                        "the server could not export a snapshot ({}); row counts were taken from the dump stream itself",
                        describe(&e)
                    )),
                )
            }
        };
        let snapshot_time: String = client
            .query_one(
                "select to_char(now() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[],
            )
            .await
            .map_err(query_err(spec, "read the snapshot time"))?
            .get(0);
        Ok(SnapshotSession {
            client,
            facts,
            snapshot_id,
            snapshot_time,
            note,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the transaction (read only: nothing to commit).
    pub async fn close(self) {
        let _ = self.client.batch_execute("rollback").await;
    }
}

/// Quotes an identifier for SQL (never splice names unquoted).
/// A string literal for SQL text (locale and encoding names): quotes doubled, and an `E''`
/// literal with doubled backslashes when there is a backslash.
pub fn quote_literal(v: &str) -> String {
    let q = v.replace('\'', "''");
    if q.contains('\\') {
        format!("E'{}'", q.replace('\\', "\\\\"))
    } else {
        format!("'{q}'")
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether database `name` exists on the server `client` is connected to.
pub async fn database_exists(
    client: &Client,
    spec: &ConnSpec,
    name: &str,
) -> Result<bool, PgError> {
    let row = client
        .query_one(
            "select count(*) from pg_database where datname = $1",
            &[&name],
        )
        .await
        .map_err(query_err(spec, "look the target database up"))?;
    Ok(row.get::<_, i64>(0) > 0)
}

pub async fn create_database(client: &Client, spec: &ConnSpec, name: &str) -> Result<(), PgError> {
    client
        .batch_execute(&format!("create database {}", quote_ident(name)))
        .await
        .map_err(query_err(spec, "create the target database"))
}

/// Creates database `name` with the encoding and locale of `want` where they differ from
/// `template1`'s (then from `template0`, as a different encoding or locale needs). A locale
/// the server does not have, or one that does not fit the encoding, falls back to
/// `template1`'s locale and then to `C`; returns a note when the locale differs from `want`.
/// Without an encoding in `want` (an old manifest) it is a plain `create database`.
pub async fn create_database_like(
    client: &Client,
    spec: &ConnSpec,
    name: &str,
    want: &DbLocale,
) -> Result<Option<String>, PgError> {
    let Some(encoding) = want.encoding.as_deref() else {
        create_database(client, spec, name).await?;
        return Ok(None);
    };
    let template = database_locale(client, "template1").await;
    let same_encoding = template
        .encoding
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(encoding));
    let same_locale = want.lc_collate.is_none()
        || (want.lc_collate == template.lc_collate && want.lc_ctype == template.lc_ctype);
    if same_encoding && same_locale {
        create_database(client, spec, name).await?;
        return Ok(None);
    }
    let wanted = (want.lc_collate.clone(), want.lc_ctype.clone());
    let mut tries: Vec<(Option<String>, Option<String>)> = Vec::new();
    if wanted.0.is_some() {
        tries.push(wanted.clone());
    }
    tries.push((template.lc_collate.clone(), template.lc_ctype.clone()));
    tries.push((Some("C".into()), Some("C".into())));
    tries.dedup();
    let mut last = None;
    for (collate, ctype) in &tries {
        let mut sql = format!(
            "create database {} template template0 encoding {}",
            quote_ident(name),
            quote_literal(encoding)
        );
        if let (Some(c), Some(t)) = (collate, ctype) {
            sql.push_str(&format!(
                " lc_collate {} lc_ctype {}",
                quote_literal(c),
                quote_literal(t)
            ));
        }
        match client.batch_execute(&sql).await {
            Ok(()) => {
                let note = (wanted.0.is_some() && (collate, ctype) != (&wanted.0, &wanted.1))
                    .then(|| {
                        format!(
                            "the target server has no locale {} that fits encoding {encoding}: the database was created with LC_COLLATE {} and LC_CTYPE {}",
                            wanted.0.as_deref().unwrap_or("?"),
                            collate.as_deref().unwrap_or("?"),
                            ctype.as_deref().unwrap_or("?")
                        )
                    });
                return Ok(note);
            }
            // A locale the server lacks (42809) or one that does not fit the encoding
            // (22023): try the next one. Anything else is the answer.
            Err(e)
                if e.as_db_error()
                    .is_some_and(|d| matches!(d.code().code(), "42809" | "22023")) =>
            {
                last = Some(e);
            }
            Err(e) => return Err(query_err(spec, "create the target database")(e)),
        }
    }
    match last {
        Some(e) => Err(query_err(spec, "create the target database")(e)),
        None => create_database(client, spec, name).await.map(|_| None),
    }
}

/// Drops a database, disconnecting its sessions (PG 13+ `WITH (FORCE)`).
pub async fn drop_database(client: &Client, spec: &ConnSpec, name: &str) -> Result<(), PgError> {
    let version: i32 = client
        .query_one("select current_setting('server_version_num')::int4", &[])
        .await
        .map_err(query_err(spec, "read the server version"))?
        .get(0);
    let force = if version >= 130000 {
        " with (force)"
    } else {
        ""
    };
    client
        .batch_execute(&format!(
            "drop database if exists {}{force}",
            quote_ident(name)
        ))
        .await
        .map_err(query_err(spec, "drop the database"))
}

/// Counts user objects (relations, functions) outside the system schemas, and large objects
/// (content a restore would overwrite as much as a table's).
pub async fn user_object_count(client: &Client, spec: &ConnSpec) -> Result<i64, PgError> {
    user_object_count_excluding(client, spec, &[]).await
}

/// Extensions the server can install.
pub async fn available_extensions(
    client: &Client,
    spec: &ConnSpec,
) -> Result<Vec<String>, PgError> {
    let rows = client
        .query("select name from pg_available_extensions", &[])
        .await
        .map_err(query_err(spec, "list the available extensions"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Like [`user_object_count`], leaving out the objects in `schemas` (schemas a restore does
/// not touch, such as a managed platform's own).
pub async fn user_object_count_excluding(
    client: &Client,
    spec: &ConnSpec,
    schemas: &[String],
) -> Result<i64, PgError> {
    let row = client
        .query_one(
            "select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
               where n.nspname not in ('pg_catalog', 'information_schema') \
                 and n.nspname <> all($1::text[]) \
                 and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%' \
                 and c.relkind in ('r','v','m','S','f','p') \
                 and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')) \
             + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
               where n.nspname not in ('pg_catalog', 'information_schema') \
                 and n.nspname <> all($1::text[]) \
                 and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')) \
             + (select count(*) from pg_largeobject_metadata)",
            &[&schemas],
        )
        .await
        .map_err(query_err(spec, "check whether the target database is empty"))?;
    Ok(row.get(0))
}

/// Rows of a catalog query, every column read as text (cast in the SQL); `$1` is bound to
/// `names` as a `text[]` when the query uses it.
pub async fn text_rows(
    client: &Client,
    spec: &ConnSpec,
    action: &'static str,
    sql: &str,
    names: &[String],
) -> Result<Vec<Vec<Option<String>>>, PgError> {
    let rows = if sql.contains("$1") {
        client.query(sql, &[&names]).await
    } else {
        client.query(sql, &[]).await
    }
    .map_err(query_err(spec, action))?;
    Ok(rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect())
}

/// Runs SQL statements (no parameters, no results).
pub async fn execute(
    client: &Client,
    spec: &ConnSpec,
    action: &'static str,
    sql: &str,
) -> Result<(), PgError> {
    client
        .batch_execute(sql)
        .await
        .map_err(query_err(spec, action))
}
