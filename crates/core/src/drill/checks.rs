//! Drill checks: parsed from `[[database.drill.check]]`, validated before anything is
//! restored, run against the restored database. Identifiers are quoted, never spliced;
//! SQL runs in a read-only transaction with a statement timeout.

use crate::env::Env;
use crate::manifest::Manifest;
use crate::{Error, Result};
use pgdrill_pg::ConnSpec;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tokio_postgres::Client;

mod parse;
mod queries;

pub use parse::{parse_checks, parse_expect, Expect};
use queries::{installed_extensions, migrations, policies, rls, row_counts, sql, tables_nonempty};

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

/// In `ids`, a leaf that `audit` (below the settings) uses too.
pub use crate::ids::split_table;

/// Everything a check may need.
pub struct CheckCtx<'a> {
    pub client: &'a Client,
    pub target: &'a ConnSpec,
    /// pgdrill's own backup; `None` for a physical backup (`drill::source`), which has no
    /// snapshot row counts.
    pub manifest: Option<&'a Manifest>,
    /// The time the restored data stands at (the snapshot's, or the recovery's end), RFC 3339:
    /// what `mirror_parity` and `storage_objects` compare the uploads with.
    pub backup_time: &'a str,
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

#[cfg(test)]
mod tests {
    use super::parse::compare;
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
