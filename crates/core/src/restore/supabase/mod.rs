//! Backups of Supabase projects (docs/SUPABASE.md says what and why).
//!
//! A Supabase database holds the platform's own schemas (`auth`, `storage`, ...), owned by
//! platform roles, next to the project's. Restoring it elsewhere:
//! - the platform roles its policies and grants name are created (NOLOGIN) when missing;
//! - grants are restored (they are the project's API security), unlike other restores;
//! - platform machinery is skipped: event triggers, default privileges of platform roles,
//!   platform extensions the target server does not have;
//! - into another Supabase project, the platform schemas already there are left to the
//!   target's platform: their definitions are skipped; the project's own policies and
//!   triggers on platform tables and the rows of the account and file-metadata tables are
//!   restored (those rows after the other data, in foreign-key order).

mod filter;
mod layout;
#[cfg(test)]
mod tests;

use super::sql::{self};
use super::RestoreJob;
use crate::manifest::Manifest;
use crate::Result;
use filter::{filter, parse_line, Line};
use layout::{layout_error, layout_mismatch};
use pgdrill_pg::archive::TocItem;
use pgdrill_pg::client::{self, quote_ident};
use pgdrill_pg::ConnSpec;
use std::collections::{BTreeMap, HashSet};

/// Roles that the platform's grants and policies name.
pub const PLATFORM_ROLES: &[&str] = &[
    "anon",
    "authenticated",
    "service_role",
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "authenticator",
    "dashboard_user",
];

/// Schemas the platform creates in every project.
pub const PLATFORM_SCHEMAS: &[&str] = &[
    "auth",
    "storage",
    "extensions",
    "graphql",
    "graphql_public",
    "realtime",
    "_realtime",
    "vault",
    "pgsodium",
    "pgsodium_masks",
    "pgbouncer",
    "net",
    "supabase_functions",
    "cron",
    "_analytics",
];

/// Extensions the platform installs itself (or offers with one click) that stock PostgreSQL
/// does not ship and that hold no project data types: skipped (not refused) when the target
/// server lacks them, with their comments, grants and configuration rows. An extension the
/// project's tables use (`vector`, `postgis`, ...) still stops the restore when missing.
pub const PLATFORM_EXTENSIONS: &[&str] = &[
    "pg_graphql",
    "supabase_vault",
    "pgsodium",
    "pgjwt",
    "pg_net",
    "pg_cron",
    "pgaudit",
    "pg_stat_monitor",
    "plpgsql_check",
    "index_advisor",
    "hypopg",
    "pg_repack",
    "pg_tle",
    "supautils",
];

/// Platform tables whose rows are the project's own (accounts, file metadata), in an order
/// that satisfies the foreign keys between them.
const PLATFORM_DATA: &[(&str, &str)] = &[
    ("auth", "users"),
    ("auth", "identities"),
    ("storage", "buckets"),
    ("storage", "objects"),
];

/// Archive entry types (`pg_restore --list`), longest match wins.
const DESCS: &[&str] = &[
    "ACCESS METHOD",
    "ACL",
    "AGGREGATE",
    "BLOB",
    "BLOB METADATA",
    "BLOBS",
    "CAST",
    "CHECK CONSTRAINT",
    "COLLATION",
    "COMMENT",
    "CONSTRAINT",
    "CONVERSION",
    "DATABASE",
    "DATABASE PROPERTIES",
    "DEFAULT",
    "DEFAULT ACL",
    "DOMAIN",
    "ENCODING",
    "EVENT TRIGGER",
    "EXTENSION",
    "FK CONSTRAINT",
    "FOREIGN DATA WRAPPER",
    "FOREIGN SERVER",
    "FOREIGN TABLE",
    "FUNCTION",
    "INDEX",
    "INDEX ATTACH",
    "LARGE OBJECT",
    "LARGE OBJECTS",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "OPERATOR",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "POLICY",
    "PROCEDURAL LANGUAGE",
    "PROCEDURE",
    "PUBLICATION",
    "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA",
    "ROW SECURITY",
    "RULE",
    "SCHEMA",
    "SEARCHPATH",
    "SECURITY LABEL",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SERVER",
    "SHELL TYPE",
    "STATISTICS",
    "STDSTRINGS",
    "SUBSCRIPTION",
    "SUBSCRIPTION TABLE",
    "TABLE",
    "TABLE ATTACH",
    "TABLE DATA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "TRANSFORM",
    "TRIGGER",
    "TYPE",
    "USER MAPPING",
    "VIEW",
];

/// Entry types of the data section (the platform rows go right after the last of them).
const DATA_DESCS: &[&str] = &["TABLE DATA", "SEQUENCE SET", "BLOBS", "BLOB"];

/// A Supabase project's backup: the platform's schemas and its account and storage tables.
pub fn is_supabase_backup(m: &Manifest) -> bool {
    let schema = |s: &str| m.content.schemas.iter().any(|x| x == s);
    let table = |s: &str, t: &str| {
        m.content
            .tables
            .iter()
            .any(|x| x.schema == s && x.name == t)
    };
    schema("auth")
        && schema("storage")
        && table("auth", "users")
        && table("storage", "buckets")
        && table("storage", "objects")
}

/// The platform schemas of the target database when it is another Supabase project (its
/// `auth` schema is owned by a platform role); empty for plain PostgreSQL.
pub async fn target_platform_schemas(t: &ConnSpec) -> Result<Vec<String>> {
    let c = client::connect(t).await?;
    let rows = client::text_rows(
        &c,
        t,
        "look for Supabase platform schemas",
        "select n.nspname::text from pg_namespace n where n.nspname = any($1::text[]) \
           and exists (select 1 from pg_namespace a join pg_roles r on r.oid = a.nspowner \
                       where a.nspname = 'auth' \
                         and r.rolname in ('supabase_admin', 'supabase_auth_admin')) \
         order by 1",
        &owned(PLATFORM_SCHEMAS),
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// What the restore of a Supabase backup does differently.
pub struct Plan {
    /// The `pg_restore --use-list` file.
    pub list: String,
    /// Entries not restored, with the reason (summarised per schema where many).
    pub skipped: Vec<String>,
    /// Platform rows are restored after the other data: pg_restore must follow the list's
    /// order (a spooled, serial restore).
    pub reorder: bool,
    pub notes: Vec<String>,
}

/// State of a platform table on the target, for restoring its rows.
#[derive(Clone, Debug, PartialEq)]
enum DataState {
    Missing,
    Empty,
    HasRows,
    Unreadable(String),
}

/// What the plan needs to know about the target.
#[derive(Default)]
struct Facts {
    platform_schemas: Vec<String>,
    installed_extensions: HashSet<String>,
    available_extensions: HashSet<String>,
    publications: HashSet<String>,
    /// "schema\ttable name" of policies and triggers already in platform schemas.
    policies: HashSet<String>,
    triggers: HashSet<String>,
    data: BTreeMap<(String, String), DataState>,
    /// Roles whose default privileges the restoring role may set.
    actable_roles: HashSet<String>,
}

pub async fn plan(
    job: &RestoreJob<'_>,
    admin: &ConnSpec,
    platform_schemas: &[String],
    exists: bool,
    toc: &str,
    items: &[TocItem],
) -> Result<Plan> {
    let entries: Vec<Line<'_>> = toc
        .lines()
        .map(|l| parse_line(l, &job.manifest.content.schemas))
        .collect();
    let ac = client::connect(admin).await?;
    let mut mismatches = Vec::new();
    let mut facts = Facts {
        platform_schemas: platform_schemas.to_vec(),
        available_extensions: client::available_extensions(&ac, admin)
            .await?
            .into_iter()
            .collect(),
        ..Facts::default()
    };
    let acl_roles: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Line::Entry(e) if e.desc == "DEFAULT ACL" => Some(e.owner.to_string()),
            _ => None,
        })
        .collect();
    facts.actable_roles = first_column(
        client::text_rows(
            &ac,
            admin,
            "check role memberships",
            "select r.rolname::text from pg_roles r where r.rolname = any($1::text[]) \
               and pg_has_role(current_user, r.oid, 'MEMBER')",
            &acl_roles,
        )
        .await?,
    );
    if exists {
        let t = &job.target;
        let c = client::connect(t).await?;
        facts.installed_extensions = first_column(
            client::text_rows(
                &c,
                t,
                "list extensions",
                "select extname::text from pg_extension",
                &[],
            )
            .await?,
        );
        facts.publications = first_column(
            client::text_rows(
                &c,
                t,
                "list publications",
                "select pubname::text from pg_publication",
                &[],
            )
            .await?,
        );
        let ps = platform_schemas.to_vec();
        facts.policies = joined(
            client::text_rows(
                &c,
                t,
                "list policies",
                "select schemaname::text, tablename::text || ' ' || policyname::text \
                 from pg_policies where schemaname = any($1::text[])",
                &ps,
            )
            .await?,
        );
        facts.triggers = joined(
            client::text_rows(
                &c,
                t,
                "list triggers",
                "select n.nspname::text, c.relname::text || ' ' || g.tgname::text \
                 from pg_trigger g join pg_class c on c.oid = g.tgrelid \
                 join pg_namespace n on n.oid = c.relnamespace \
                 where not g.tgisinternal and n.nspname = any($1::text[])",
                &ps,
            )
            .await?,
        );
        for (s, tb) in PLATFORM_DATA {
            if !platform_schemas.iter().any(|p| p == s) {
                continue;
            }
            let name = format!("{}.{}", quote_ident(s), quote_ident(tb));
            let state = match client::text_rows(
                &c,
                t,
                "look for a platform table",
                "select (to_regclass(($1::text[])[1]) is not null)::text",
                std::slice::from_ref(&name),
            )
            .await
            {
                Ok(r) if first(&r) == Some("true") => {
                    match client::text_rows(
                        &c,
                        t,
                        "read a platform table",
                        &format!("select exists (select 1 from {name})::text"),
                        &[],
                    )
                    .await
                    {
                        Ok(r) if first(&r) == Some("false") => DataState::Empty,
                        Ok(_) => DataState::HasRows,
                        Err(e) => DataState::Unreadable(e.to_string()),
                    }
                }
                Ok(_) => DataState::Missing,
                Err(e) => DataState::Unreadable(e.to_string()),
            };
            if state == DataState::Empty {
                let copy = items
                    .iter()
                    .find(|i| i.desc == "TABLE DATA" && i.namespace == *s && i.tag == *tb)
                    .and_then(|i| i.copy_stmt.as_deref());
                if let Some(copy) = copy {
                    mismatches.extend(layout_mismatch(&c, t, s, tb, copy).await?);
                }
            }
            facts.data.insert((s.to_string(), tb.to_string()), state);
        }
        if !mismatches.is_empty() {
            return Err(layout_error(&c, t, &mismatches).await);
        }
    }
    let p = filter(&entries, &facts);
    Ok(p)
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn first(rows: &[Vec<Option<String>>]) -> Option<&str> {
    rows.first()?.first()?.as_deref()
}

fn first_column(rows: Vec<Vec<Option<String>>>) -> HashSet<String> {
    rows.into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

fn joined(rows: Vec<Vec<Option<String>>>) -> HashSet<String> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect()
}
