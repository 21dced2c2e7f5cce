//! Drill checks: parsed from `[[database.drill.check]]`, validated before anything is
//! restored, run against the restored database. Identifiers are quoted, never spliced;
//! SQL runs in a read-only transaction with a statement timeout.

use crate::env::{interpolate, Env};
use crate::manifest::Manifest;
use crate::{Error, Result};
use pgdrill_pg::client::{self, quote_ident};
use pgdrill_pg::ConnSpec;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, SimpleQueryMessage};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    TablesNonempty {
        tables: Vec<String>,
    },
    Migrations {
        /// prisma, alembic, rails, django, flyway
        framework: Option<String>,
        /// or a table name holding applied migrations
        table: Option<String>,
    },
    RlsEnabled {
        tables: Vec<String>,
    },
    PoliciesPresent {
        tables: Vec<String>,
    },
    Extensions {
        extensions: Vec<String>,
    },
    RowCounts {},
    Sql {
        query: String,
        expect: toml::Value,
        #[serde(default = "default_timeout")]
        timeout_seconds: u64,
    },
    Http {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        #[serde(default = "default_status")]
        expect_status: u16,
        expect_body: Option<String>,
        bearer_token_env: Option<String>,
        #[serde(default = "default_http_timeout")]
        timeout_seconds: u64,
        #[serde(default)]
        retries: u32,
    },
    MirrorParity {
        mirror: String,
        /// Where to restore the uploads (default: a throwaway folder).
        to: Option<String>,
    },
    /// Supabase: `storage.objects` rows against the mirror snapshot at the backup's time.
    StorageObjects {
        mirror: String,
        /// The file's key in the mirror, from `{bucket}` and `{name}`.
        #[serde(default = "default_storage_key")]
        key: String,
    },
    Command {
        run: String,
        #[serde(default = "default_command_timeout")]
        timeout_seconds: u64,
    },
}

fn default_storage_key() -> String {
    super::storage_check::DEFAULT_KEY.into()
}

fn default_timeout() -> u64 {
    60
}
fn default_method() -> String {
    "GET".into()
}
fn default_status() -> u16 {
    200
}
fn default_http_timeout() -> u64 {
    10
}
fn default_command_timeout() -> u64 {
    1800
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: CheckKind,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub kind: String,
    /// The query, URL, command or tables the check looked at.
    pub subject: String,
    pub expected: String,
    pub actual: String,
    pub passed: bool,
    pub duration_seconds: f64,
}

impl CheckKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            CheckKind::TablesNonempty { .. } => "tables_nonempty",
            CheckKind::Migrations { .. } => "migrations",
            CheckKind::RlsEnabled { .. } => "rls_enabled",
            CheckKind::PoliciesPresent { .. } => "policies_present",
            CheckKind::Extensions { .. } => "extensions",
            CheckKind::RowCounts {} => "row_counts",
            CheckKind::Sql { .. } => "sql",
            CheckKind::Http { .. } => "http",
            CheckKind::Command { .. } => "command",
            CheckKind::MirrorParity { .. } => "mirror_parity",
            CheckKind::StorageObjects { .. } => "storage_objects",
        }
    }
}

/// `fail_on_skipped = true` (with `allow_skipped = ["substring", ...]`): the drill fails when
/// the restore left out an archive entry that no allowlist substring matches. `None` when
/// not asked for.
pub fn skipped_rule(drill: &toml::Table) -> Result<Option<Vec<String>>> {
    let on = match drill.get("fail_on_skipped") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(v) => {
            return Err(Error::Invalid(format!(
                "[database.drill] fail_on_skipped must be true or false, not {v}"
            )))
        }
    };
    let allow = match drill.get("allow_skipped") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Error::Invalid("[database.drill] allow_skipped must be a list of strings".into())
            })?,
        Some(_) => {
            return Err(Error::Invalid(
                "[database.drill] allow_skipped must be a list of strings".into(),
            ))
        }
    };
    Ok(on.then_some(allow))
}

/// The check that `skipped_rule` asks for, over the restore's `skipped` entries.
pub fn skipped_check(skipped: &[String], allow: &[String]) -> CheckResult {
    let outside: Vec<&String> = skipped
        .iter()
        .filter(|s| !allow.iter().any(|a| s.contains(a.as_str())))
        .collect();
    CheckResult {
        name: "nothing skipped outside the allowlist".into(),
        kind: "skipped".into(),
        subject: "archive entries the restore left out".into(),
        expected: if allow.is_empty() {
            "none".into()
        } else {
            format!("only entries matching: {}", allow.join(", "))
        },
        actual: if outside.is_empty() {
            format!("{} skipped, all allowed", skipped.len())
        } else {
            outside
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        },
        passed: outside.is_empty(),
        duration_seconds: 0.0,
    }
}

/// Parses and validates the checks of a `[database.drill]` table; `row_counts` is added
/// unless `row_counts = false`. Fails with exit 2 before anything is restored.
pub fn parse_checks(drill: &toml::Table, env: &Env) -> Result<Vec<CheckSpec>> {
    // A misspelt key (`[[database.drill.checks]]`, `row_count = false`) would otherwise be
    // ignored silently and the drill would pass with fewer checks than configured.
    const KEYS: &[&str] = &[
        "check",
        "row_counts",
        "target_url_env",
        "jobs",
        "fail_on_skipped",
        "allow_skipped",
    ];
    if let Some(k) = drill.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(Error::Invalid(format!(
            "[database.drill] has an unknown key {k:?}: the keys are {} (checks go in [[database.drill.check]])",
            KEYS.join(", ")
        )));
    }
    if let Some(v) = drill.get("row_counts").filter(|v| !v.is_bool()) {
        return Err(Error::Invalid(format!(
            "[database.drill] row_counts must be true or false, not {v}"
        )));
    }
    let mut out = Vec::new();
    let row_counts = drill
        .get("row_counts")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    if row_counts {
        out.push(CheckSpec {
            name: "row counts equal the backup's snapshot".into(),
            kind: CheckKind::RowCounts {},
        });
    }
    let list = match drill.get("check") {
        None => return Ok(out),
        Some(toml::Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(Error::Invalid(
                "database.drill.check must be an array of tables ([[database.drill.check]])".into(),
            ))
        }
    };
    for (i, raw) in list.into_iter().enumerate() {
        let mut table = match raw {
            toml::Value::Table(t) => t,
            _ => {
                return Err(Error::Invalid(format!(
                    "drill check #{} is not a table",
                    i + 1
                )))
            }
        };
        let kind = table
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("?")
            .to_string();
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) => s,
            _ => format!("{kind} #{}", i + 1),
        };
        let kind_v: CheckKind =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    Error::Invalid(format!(
                        "drill check {name:?} is invalid: {}",
                        e.to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    ))
                })?;
        validate(&name, &kind_v, env)?;
        out.push(CheckSpec { name, kind: kind_v });
    }
    Ok(out)
}

fn validate(name: &str, k: &CheckKind, env: &Env) -> Result<()> {
    let bad = |m: &str| Err(Error::Invalid(format!("drill check {name:?}: {m}")));
    match k {
        CheckKind::TablesNonempty { tables }
        | CheckKind::RlsEnabled { tables }
        | CheckKind::PoliciesPresent { tables }
            if tables.is_empty() =>
        {
            bad("list at least one table in tables = [...]")
        }
        CheckKind::Migrations {
            framework: None,
            table: None,
        } => bad("set framework (prisma, alembic, rails, django, flyway) or table"),
        CheckKind::Migrations {
            framework: Some(f), ..
        } if migrations_table(f).is_none() => {
            bad("framework must be prisma, alembic, rails, django or flyway")
        }
        CheckKind::Sql { query, expect, .. } => {
            if query.trim().is_empty() {
                return bad("query is empty");
            }
            parse_expect(expect)
                .map(|_| ())
                .map_err(|m| Error::Invalid(format!("drill check {name:?}: {m}")))
        }
        CheckKind::Http {
            url,
            bearer_token_env,
            method,
            ..
        } => {
            interpolate(url, env, &format!("drill check {name:?} url"))?;
            if !["GET", "HEAD", "POST"].contains(&method.to_ascii_uppercase().as_str()) {
                return bad("method must be GET, HEAD or POST");
            }
            if let Some(v) = bearer_token_env {
                if env.get(v).map(|s| s.is_empty()).unwrap_or(true) {
                    return bad(&format!("bearer_token_env names {v}, which is not set"));
                }
            }
            Ok(())
        }
        CheckKind::Command { run, .. } if run.trim().is_empty() => bad("run is empty"),
        CheckKind::MirrorParity { mirror, .. } | CheckKind::StorageObjects { mirror, .. }
            if crate::mirror::MirrorName::parse(mirror).is_err() =>
        {
            bad("mirror must name a mirror (letters, digits, '-', '_' or '.')")
        }
        CheckKind::StorageObjects { key, .. } if !key.contains("{name}") => {
            bad("key must contain {name} (e.g. \"{bucket}/{name}\")")
        }
        _ => Ok(()),
    }
}

fn migrations_table(framework: &str) -> Option<(&'static str, &'static str)> {
    Some(match framework {
        "prisma" => ("public", "_prisma_migrations"),
        "alembic" => ("public", "alembic_version"),
        "rails" => ("public", "schema_migrations"),
        "django" => ("public", "django_migrations"),
        "flyway" => ("public", "flyway_schema_history"),
        _ => return None,
    })
}

/// What an `sql` check expects.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// First column of the single row, compared with an operator.
    Compare(String, String),
    /// The exact set of rows (order ignored), each as text cells.
    Rows(Vec<Vec<String>>),
}

pub fn parse_expect(v: &toml::Value) -> std::result::Result<Expect, String> {
    match v {
        toml::Value::Integer(i) => Ok(Expect::Compare("=".into(), i.to_string())),
        toml::Value::Float(f) => Ok(Expect::Compare("=".into(), f.to_string())),
        toml::Value::Boolean(b) => Ok(Expect::Compare(
            "=".into(),
            if *b { "t".into() } else { "f".into() },
        )),
        toml::Value::String(s) => {
            let s = s.trim();
            for op in [">=", "<=", "!=", "<>", ">", "<", "="] {
                if let Some(rest) = s.strip_prefix(op) {
                    return Ok(Expect::Compare(
                        op.replace("<>", "!="),
                        rest.trim().to_string(),
                    ));
                }
            }
            Ok(Expect::Compare("=".into(), s.to_string()))
        }
        toml::Value::Array(rows) => rows
            .iter()
            .map(|r| match r {
                toml::Value::Array(cells) => Ok(cells.iter().map(cell_text).collect()),
                other => Ok(vec![cell_text(other)]),
            })
            .collect::<std::result::Result<Vec<_>, String>>()
            .map(Expect::Rows),
        _ => Err("expect must be a number, a comparison like \"> 0\", or a list of rows".into()),
    }
}

fn cell_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => {
            if *b {
                "t".into()
            } else {
                "f".into()
            }
        }
        other => other.to_string(),
    }
}

fn compare(op: &str, actual: &str, expected: &str) -> bool {
    if let (Ok(a), Ok(e)) = (actual.parse::<f64>(), expected.parse::<f64>()) {
        return match op {
            ">" => a > e,
            ">=" => a >= e,
            "<" => a < e,
            "<=" => a <= e,
            "!=" => a != e,
            _ => a == e,
        };
    }
    match op {
        "!=" => actual != expected,
        "=" => actual == expected,
        _ => false,
    }
}

/// In `ids`, a leaf that `audit` (below the settings) uses too.
pub use crate::ids::split_table;

/// Everything a check may need.
pub struct CheckCtx<'a> {
    pub client: &'a Client,
    pub target: &'a ConnSpec,
    pub manifest: &'a Manifest,
    pub env: &'a Env,
    /// Lines for drill.log (command output, HTTP attempts).
    pub log: &'a mut Vec<String>,
    pub store: &'a pgdrill_store::Store,
    pub mirrors: &'a [crate::mirror::MirrorSection],
    /// Environment variables a user command must not see (the source's URL): a test suite
    /// run by a drill must never be able to reach production by accident.
    pub hidden_env: &'a [String],
}

pub async fn run_check(spec: &CheckSpec, ctx: &mut CheckCtx<'_>) -> CheckResult {
    let t = Instant::now();
    let (subject, expected, outcome) = match &spec.kind {
        CheckKind::TablesNonempty { tables } => (
            tables.join(", "),
            "every table has rows".to_string(),
            tables_nonempty(ctx, tables).await,
        ),
        CheckKind::Migrations { framework, table } => {
            migrations(ctx, framework.as_deref(), table.as_deref()).await
        }
        CheckKind::RlsEnabled { tables } => (
            tables.join(", "),
            "row level security enabled".into(),
            rls(ctx, tables).await,
        ),
        CheckKind::PoliciesPresent { tables } => (
            tables.join(", "),
            "at least one policy per table".into(),
            policies(ctx, tables).await,
        ),
        CheckKind::Extensions { extensions } => (
            extensions.join(", "),
            "installed".into(),
            installed_extensions(ctx, extensions).await,
        ),
        CheckKind::RowCounts {} => (
            "every table in the manifest".into(),
            "row counts equal the snapshot's".into(),
            row_counts(ctx).await,
        ),
        CheckKind::Sql {
            query,
            expect,
            timeout_seconds,
        } => (
            query.clone(),
            expect_text(expect),
            sql(ctx, query, expect, *timeout_seconds).await,
        ),
        CheckKind::Http { .. } => super::http::run(&spec.kind, ctx).await,
        CheckKind::MirrorParity { mirror, to } => {
            super::mirror_check::run(mirror, to.as_deref(), ctx).await
        }
        CheckKind::StorageObjects { mirror, key } => {
            super::storage_check::run(mirror, key, ctx).await
        }
        CheckKind::Command {
            run,
            timeout_seconds,
        } => (
            run.clone(),
            "exit status 0".into(),
            super::command::run(run, *timeout_seconds, ctx).await,
        ),
    };
    let (passed, actual) = match outcome {
        Ok((p, a)) => (p, a),
        Err(e) => (false, format!("error: {e}")),
    };
    CheckResult {
        name: spec.name.clone(),
        kind: spec.kind.kind_name().into(),
        subject,
        expected,
        actual,
        passed,
        duration_seconds: t.elapsed().as_secs_f64(),
    }
}

fn expect_text(v: &toml::Value) -> String {
    match parse_expect(v) {
        Ok(Expect::Compare(op, val)) => format!("{op} {val}"),
        Ok(Expect::Rows(rows)) => format!("rows {rows:?}"),
        Err(e) => e,
    }
}

type Outcome = std::result::Result<(bool, String), String>;

fn db_err(e: tokio_postgres::Error) -> String {
    client::describe(&e)
}

async fn tables_nonempty(ctx: &CheckCtx<'_>, tables: &[String]) -> Outcome {
    let mut empty = Vec::new();
    for t in tables {
        let (s, n) = split_table(t);
        let q = format!(
            "select exists (select 1 from {}.{})",
            quote_ident(&s),
            quote_ident(&n)
        );
        let has: bool = ctx.client.query_one(&q, &[]).await.map_err(db_err)?.get(0);
        if !has {
            empty.push(t.clone());
        }
    }
    Ok(if empty.is_empty() {
        (true, "all non-empty".into())
    } else {
        (false, format!("empty: {}", empty.join(", ")))
    })
}

async fn migrations(
    ctx: &CheckCtx<'_>,
    framework: Option<&str>,
    table: Option<&str>,
) -> (String, String, Outcome) {
    let (schema, name) = match (framework.and_then(migrations_table), table) {
        (_, Some(t)) => split_table(t),
        (Some((s, n)), None) => (s.to_string(), n.to_string()),
        (None, None) => ("public".into(), "?".into()),
    };
    let subject = format!("{schema}.{name}");
    let expected = if framework == Some("prisma") {
        "present, non-empty, no failed or rolled-back migration"
    } else {
        "present and non-empty"
    };
    let outcome = async {
        let exists: bool = ctx
            .client
            .query_one("select to_regclass($1) is not null", &[&format!("{}.{}", quote_ident(&schema), quote_ident(&name))])
            .await
            .map_err(db_err)?
            .get(0);
        if !exists {
            return Ok((false, "table missing".to_string()));
        }
        let q = format!("select count(*) from {}.{}", quote_ident(&schema), quote_ident(&name));
        let n: i64 = ctx.client.query_one(&q, &[]).await.map_err(db_err)?.get(0);
        if n == 0 {
            return Ok((false, "no migrations recorded".to_string()));
        }
        if framework == Some("prisma") {
            let q = format!(
                "select count(*) from {}.{} where finished_at is null or rolled_back_at is not null",
                quote_ident(&schema),
                quote_ident(&name)
            );
            let bad: i64 = ctx.client.query_one(&q, &[]).await.map_err(db_err)?.get(0);
            if bad > 0 {
                return Ok((false, format!("{n} migrations, {bad} failed or rolled back")));
            }
        }
        Ok((true, format!("{n} migrations applied")))
    }
    .await;
    (subject, expected.into(), outcome)
}

async fn rls(ctx: &CheckCtx<'_>, tables: &[String]) -> Outcome {
    let mut off = Vec::new();
    for t in tables {
        let (s, n) = split_table(t);
        let row = ctx
            .client
            .query_opt(
                "select c.relrowsecurity from pg_class c join pg_namespace ns on ns.oid = c.relnamespace where ns.nspname = $1 and c.relname = $2",
                &[&s, &n],
            )
            .await
            .map_err(db_err)?;
        match row.map(|r| r.get::<_, bool>(0)) {
            Some(true) => {}
            Some(false) => off.push(t.clone()),
            None => off.push(format!("{t} (missing)")),
        }
    }
    Ok(if off.is_empty() {
        (true, "enabled on all".into())
    } else {
        (false, format!("not enabled: {}", off.join(", ")))
    })
}

async fn policies(ctx: &CheckCtx<'_>, tables: &[String]) -> Outcome {
    let mut none = Vec::new();
    for t in tables {
        let (s, n) = split_table(t);
        let c: i64 = ctx
            .client
            .query_one(
                "select count(*) from pg_policies where schemaname = $1 and tablename = $2",
                &[&s, &n],
            )
            .await
            .map_err(db_err)?
            .get(0);
        if c == 0 {
            none.push(t.clone());
        }
    }
    Ok(if none.is_empty() {
        (true, "policies on all".into())
    } else {
        (false, format!("no policy: {}", none.join(", ")))
    })
}

async fn installed_extensions(ctx: &CheckCtx<'_>, wanted: &[String]) -> Outcome {
    let rows = ctx
        .client
        .query("select extname from pg_extension", &[])
        .await
        .map_err(db_err)?;
    let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let missing: Vec<&String> = wanted.iter().filter(|e| !have.contains(e)).collect();
    Ok(if missing.is_empty() {
        (true, "all installed".into())
    } else {
        (
            false,
            format!(
                "missing: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

async fn row_counts(ctx: &CheckCtx<'_>) -> Outcome {
    if ctx.manifest.content.tables.is_empty() {
        if let Some(n) = &ctx.manifest.content.note {
            return Ok((false, format!("the backup has no row counts: {n}")));
        }
    }
    let mut diffs = Vec::new();
    let mut total = 0u64;
    for t in &ctx.manifest.content.tables {
        // The snapshot counts what each table's own COPY held: never its inheritance
        // children's or partitions' rows, so the restored side counts `ONLY` the same.
        let q = format!(
            "select count(*) from only {}.{}",
            quote_ident(&t.schema),
            quote_ident(&t.name)
        );
        let n: i64 = ctx.client.query_one(&q, &[]).await.map_err(db_err)?.get(0);
        total += t.rows;
        if n as u64 != t.rows {
            diffs.push(format!(
                "{}.{}: {} restored vs {} in the backup",
                t.schema, t.name, n, t.rows
            ));
        }
    }
    Ok(if diffs.is_empty() {
        (
            true,
            format!(
                "{} tables, {} rows, all equal",
                ctx.manifest.content.tables.len(),
                total
            ),
        )
    } else {
        (false, diffs.join("; "))
    })
}

async fn sql(ctx: &CheckCtx<'_>, query: &str, expect: &toml::Value, timeout: u64) -> Outcome {
    let expect = parse_expect(expect)?;
    ctx.client
        .batch_execute(&format!(
            "begin read only; set local statement_timeout = '{}s'",
            timeout.max(1)
        ))
        .await
        .map_err(db_err)?;
    let res = tokio::time::timeout(
        Duration::from_secs(timeout + 5),
        ctx.client.simple_query(query),
    )
    .await;
    let _ = ctx.client.batch_execute("rollback").await;
    let msgs = res
        .map_err(|_| format!("timed out after {timeout}s"))?
        .map_err(db_err)?;
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    match expect {
        Expect::Compare(op, want) => {
            let actual = rows.first().and_then(|r| r.first()).cloned();
            match actual {
                None => Ok((false, "no rows".into())),
                Some(a) => Ok((compare(&op, &a, &want), a)),
            }
        }
        Expect::Rows(mut want) => {
            let mut got = rows.clone();
            got.sort();
            want.sort();
            Ok((got == want, format!("{rows:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<CheckSpec>> {
        let t: toml::Table = text.parse().expect("toml");
        parse_checks(&t, &Env::new())
    }

    #[test]
    fn parses_every_kind_and_adds_row_counts() {
        let checks = parse(
            r#"
            [[check]]
            name = "migrations"
            kind = "migrations"
            framework = "prisma"
            [[check]]
            kind = "tables_nonempty"
            tables = ["Organization", "public.Event"]
            [[check]]
            kind = "sql"
            query = "select count(*) from t"
            expect = "> 0"
            [[check]]
            kind = "command"
            run = "true"
            "#,
        )
        .expect("parse");
        assert_eq!(checks.len(), 5);
        assert_eq!(checks[0].kind, CheckKind::RowCounts {});
        assert_eq!(checks[1].name, "migrations");
        assert_eq!(checks[3].name, "sql #3");
    }

    #[test]
    fn bad_checks_are_rejected_with_their_name() {
        for bad in [
            "[[check]]\nkind = \"nope\"\n",
            "[[check]]\nkind = \"tables_nonempty\"\ntables = []\n",
            "[[check]]\nkind = \"migrations\"\nframework = \"liquibase\"\n",
            "[[check]]\nkind = \"sql\"\nquery = \"select 1\"\nexpect = { a = 1 }\n",
            "[[check]]\nkind = \"http\"\nurl = \"${UNSET_VAR}/health\"\n",
            "[[check]]\nkind = \"sql\"\nquery = \"select 1\"\nexpect = 1\ntypo = 2\n",
            "[[checks]]\nkind = \"command\"\nrun = \"true\"\n",
            "row_counts = \"no\"\n",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn expectations_compare_numbers_and_text() {
        assert_eq!(
            parse_expect(&toml::Value::Integer(0)),
            Ok(Expect::Compare("=".into(), "0".into()))
        );
        assert!(compare(">", "5", "0"));
        assert!(!compare(">", "0", "0"));
        assert!(compare("=", "0", "0.0"));
        assert!(compare("!=", "a", "b"));
        assert_eq!(split_table("auth.users"), ("auth".into(), "users".into()));
        assert_eq!(split_table("User"), ("public".into(), "User".into()));
    }
}
