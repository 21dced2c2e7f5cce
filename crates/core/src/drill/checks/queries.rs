//! The checks that query the restored database: tables, migrations, RLS and policies,
//! extensions, row counts against the manifest, SQL assertions (read-only, with a statement
//! timeout; identifiers quoted, values bound).

use super::parse::{compare, migrations_table, parse_expect};
use super::{split_table, CheckCtx, Expect};
use pgdrill_pg::client::{self, quote_ident};
use std::time::Duration;
use tokio_postgres::SimpleQueryMessage;

pub(super) type Outcome = std::result::Result<(bool, String), String>;

pub(super) fn db_err(e: tokio_postgres::Error) -> String {
    client::describe(&e)
}

pub(super) async fn tables_nonempty(ctx: &CheckCtx<'_>, tables: &[String]) -> Outcome {
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

pub(super) async fn migrations(
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

pub(super) async fn rls(ctx: &CheckCtx<'_>, tables: &[String]) -> Outcome {
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

pub(super) async fn policies(ctx: &CheckCtx<'_>, tables: &[String]) -> Outcome {
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

pub(super) async fn installed_extensions(ctx: &CheckCtx<'_>, wanted: &[String]) -> Outcome {
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

pub(super) async fn row_counts(ctx: &CheckCtx<'_>) -> Outcome {
    let Some(manifest) = ctx.manifest else {
        return Err("row counts against a snapshot do not apply to a physical backup".into());
    };
    if manifest.content.tables.is_empty() {
        if let Some(n) = &manifest.content.note {
            return Ok((false, format!("the backup has no row counts: {n}")));
        }
    }
    let mut diffs = Vec::new();
    let mut total = 0u64;
    for t in &manifest.content.tables {
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
                manifest.content.tables.len(),
                total
            ),
        )
    } else {
        (false, diffs.join("; "))
    })
}

pub(super) async fn sql(
    ctx: &CheckCtx<'_>,
    query: &str,
    expect: &toml::Value,
    timeout: u64,
) -> Outcome {
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
