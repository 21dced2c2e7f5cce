//! The layout check of the platform tables whose rows a Supabase restore loads into another
//! project, and its refusal.

use super::first;
use super::sql::{self};
use crate::Error;
use crate::Result;
use pgdrill_pg::client::{self, quote_ident};
use pgdrill_pg::ConnSpec;
use std::collections::HashSet;

/// The refusal for platform rows that do not fit the target project, with the target's
/// auth migration version (the usual cause: projects of different platform versions).
pub(super) async fn layout_error(
    c: &tokio_postgres::Client,
    t: &ConnSpec,
    mismatches: &[String],
) -> Error {
    let migrations = client::text_rows(
        c,
        t,
        "read the platform's migration version",
        "select coalesce(max(version), 'none')::text from auth.schema_migrations",
        &[],
    )
    .await
    .ok()
    .and_then(|r| first(&r).map(str::to_string))
    .unwrap_or_else(|| "unknown".into());
    Error::Failed(format!(
        "the backup's platform tables have another layout than the target project's (its auth migrations are at {migrations}): {}; nothing was changed (restore into a project of the source's platform version, or into plain PostgreSQL, then move the rows with a migration)",
        mismatches.join("; ")
    ))
}

/// How the rows of a platform table in the backup (its COPY column list) would not fit
/// the target project's table: columns the target lacks, and columns it requires (NOT
/// NULL, no default, not generated) that the rows do not carry.
pub(super) async fn layout_mismatch(
    c: &tokio_postgres::Client,
    t: &ConnSpec,
    schema: &str,
    table: &str,
    copy: &str,
) -> Result<Vec<String>> {
    let have: HashSet<String> = sql::copy_columns(copy).into_iter().collect();
    let name = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let rows = client::text_rows(
        c,
        t,
        "read a platform table's columns",
        "select attname::text, (attnotnull and not atthasdef and attidentity = '' \
           and attgenerated = '')::text, (attgenerated <> '')::text \
         from pg_attribute where attrelid = to_regclass(($1::text[])[1]) \
           and attnum > 0 and not attisdropped",
        std::slice::from_ref(&name),
    )
    .await?;
    let mut target: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for r in rows {
        let col = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (col_name, required, generated) = (col(0), col(1) == "true", col(2) == "true");
        if required && !have.contains(&col_name) {
            out.push(format!(
                "{schema}.{table} on the target requires the column {col_name}, which the backup's rows lack"
            ));
        }
        if generated && have.contains(&col_name) {
            out.push(format!(
                "{schema}.{table}.{col_name} is generated on the target but stored in the backup"
            ));
        }
        target.insert(col_name);
    }
    let mut extra: Vec<&String> = have.iter().filter(|h| !target.contains(*h)).collect();
    extra.sort();
    for x in extra {
        out.push(format!(
            "{schema}.{table} on the target has no column {x}, which the backup's rows have"
        ));
    }
    Ok(out)
}
