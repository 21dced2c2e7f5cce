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

use super::sql::{self, unquote_ident};
use super::RestoreJob;
use crate::manifest::Manifest;
use crate::Error;
use crate::Result;
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

/// The refusal for platform rows that do not fit the target project, with the target's
/// auth migration version (the usual cause: projects of different platform versions).
async fn layout_error(c: &tokio_postgres::Client, t: &ConnSpec, mismatches: &[String]) -> Error {
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
async fn layout_mismatch(
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

/// One line of `pg_restore --list`.
#[derive(Debug)]
enum Line<'a> {
    /// Comments, blank lines and entry types this module does not know: kept as they are.
    Other(&'a str),
    Entry(Entry<'a>),
}

#[derive(Debug)]
struct Entry<'a> {
    line: &'a str,
    desc: &'a str,
    /// Schema, or `-`.
    ns: &'a str,
    tag: &'a str,
    owner: &'a str,
}

/// Parses `ID; TABLEOID OID DESC SCHEMA TAG OWNER`; schema names with spaces are found
/// among `schemas`.
fn parse_line<'a>(line: &'a str, schemas: &[String]) -> Line<'a> {
    let parsed = (|| {
        if line.starts_with(';') {
            return None;
        }
        let (id, rest) = line.split_once("; ")?;
        id.trim().parse::<u64>().ok()?;
        let mut parts = rest.splitn(3, ' ');
        let (_tableoid, _oid, tail) = (parts.next()?, parts.next()?, parts.next()?);
        let desc = DESCS
            .iter()
            .copied()
            .filter(|d| tail.strip_prefix(d).is_some_and(|r| r.starts_with(' ')))
            .max_by_key(|d| d.len())?;
        let rest = &tail[desc.len() + 1..];
        let (before, owner) = rest.rsplit_once(' ').unwrap_or((rest, ""));
        let ns_len = if before == "-" || before.starts_with("- ") {
            1
        } else {
            schemas
                .iter()
                .filter(|s| before == s.as_str() || before.starts_with(&format!("{s} ")))
                .map(String::len)
                .max()
                .unwrap_or_else(|| before.find(' ').unwrap_or(before.len()))
        };
        Some(Entry {
            line,
            desc: &tail[..desc.len()],
            ns: &before[..ns_len],
            tag: before.get(ns_len + 1..).unwrap_or(""),
            owner,
        })
    })();
    match parsed {
        Some(e) => Line::Entry(e),
        None => Line::Other(line),
    }
}

/// What happens to one entry.
enum Decision {
    Keep,
    /// Skipped, listed by name with the reason.
    Skip(String),
    /// Skipped as part of a platform schema (summarised per schema).
    Platform,
    /// A platform table's rows: restored after all other data.
    LateData,
}

fn filter(entries: &[Line<'_>], f: &Facts) -> Plan {
    let platform = |s: &str| f.platform_schemas.iter().any(|p| p == s);
    let skipped_ext = |name: &str| {
        f.installed_extensions.contains(name)
            || (PLATFORM_EXTENSIONS.contains(&name) && !f.available_extensions.contains(name))
    };
    let unavailable_ext = entries.iter().any(|l| match l {
        Line::Entry(e) => {
            e.desc == "EXTENSION"
                && PLATFORM_EXTENSIONS.contains(&e.tag)
                && !f.available_extensions.contains(e.tag)
        }
        Line::Other(_) => false,
    });
    let pgsodium_gone = !f.available_extensions.contains("pgsodium")
        && !f.installed_extensions.contains("pgsodium");
    let defined: HashSet<(&str, &str)> = entries
        .iter()
        .filter_map(|l| match l {
            Line::Entry(e) if e.desc == "TABLE" => Some((e.ns, e.tag)),
            _ => None,
        })
        .collect();
    let skipped_pubs: HashSet<&str> = entries
        .iter()
        .filter_map(|l| match l {
            Line::Entry(e) if e.desc == "PUBLICATION" && f.publications.contains(e.tag) => {
                Some(e.tag)
            }
            _ => None,
        })
        .collect();

    let decide = |e: &Entry<'_>| -> Decision {
        let on_object = |prefix: &str| e.tag.strip_prefix(prefix).map(unquote_ident);
        match e.desc {
            "EVENT TRIGGER" => {
                return Decision::Skip(
                    "platform machinery: event triggers need a superuser and the platform installs its own".into(),
                )
            }
            "EXTENSION" if f.installed_extensions.contains(e.tag) => {
                return Decision::Skip("already installed in the target database".into())
            }
            "EXTENSION" if skipped_ext(e.tag) => {
                return Decision::Skip(
                    "a Supabase platform extension the target server does not have".into(),
                )
            }
            "DEFAULT ACL" if PLATFORM_ROLES.contains(&e.owner) => {
                return Decision::Skip(format!(
                    "default privileges of the platform role {}",
                    e.owner
                ))
            }
            "DEFAULT ACL" if !f.actable_roles.contains(e.owner) => {
                return Decision::Skip(format!(
                    "default privileges of role {}, which the restoring role is not a member of",
                    e.owner
                ))
            }
            "PUBLICATION" if skipped_pubs.contains(e.tag) => {
                return Decision::Skip("already on the target".into())
            }
            "SECURITY LABEL" if pgsodium_gone => {
                return Decision::Skip("pgsodium is not restored, so its labels cannot be".into())
            }
            "SCHEMA" if e.ns == "-" && platform(e.tag) => return Decision::Platform,
            "COMMENT" | "ACL" | "SECURITY LABEL" if e.ns == "-" => {
                if on_object("EVENT TRIGGER ").is_some() {
                    return Decision::Skip("belongs to a skipped event trigger".into());
                }
                if on_object("EXTENSION ").is_some_and(|x| skipped_ext(&x)) {
                    return Decision::Skip("belongs to a skipped extension".into());
                }
                if on_object("PUBLICATION ").is_some_and(|p| skipped_pubs.contains(p.as_str())) {
                    return Decision::Skip("belongs to a publication already on the target".into());
                }
                if on_object("SCHEMA ").is_some_and(|x| platform(&x)) {
                    return Decision::Platform;
                }
            }
            _ => {}
        }
        if platform(e.ns) {
            let key = format!("{}\t{}", e.ns, e.tag);
            return match e.desc {
                "TABLE DATA" => {
                    let k = (e.ns.to_string(), e.tag.to_string());
                    if !PLATFORM_DATA.iter().any(|(s, t)| *s == e.ns && *t == e.tag) {
                        return Decision::Skip(
                            "platform state (sessions, tokens, logs, migration history) that the target project keeps its own of".into(),
                        );
                    }
                    match f.data.get(&k) {
                        Some(DataState::Empty) => Decision::LateData,
                        Some(DataState::HasRows) => {
                            Decision::Skip("the target already has rows in it".into())
                        }
                        Some(DataState::Unreadable(why)) => {
                            Decision::Skip(format!("cannot read it on the target: {why}"))
                        }
                        Some(DataState::Missing) | None => {
                            Decision::Skip("the target has no such table".into())
                        }
                    }
                }
                "POLICY" if f.policies.contains(&key) => {
                    Decision::Skip("the target already has it".into())
                }
                "TRIGGER" if f.triggers.contains(&key) => {
                    Decision::Skip("the target already has it".into())
                }
                "POLICY" | "TRIGGER" => Decision::Keep,
                _ => Decision::Platform,
            };
        }
        if e.desc == "TABLE DATA" && unavailable_ext && !defined.contains(&(e.ns, e.tag)) {
            return Decision::Skip(
                "configuration data of an extension that is not restored".into(),
            );
        }
        Decision::Keep
    };

    let mut out: Vec<String> = Vec::new();
    let mut late: Vec<(usize, &str, String)> = Vec::new();
    let mut skipped = Vec::new();
    let mut per_schema: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last_data = None;
    for l in entries {
        let e = match l {
            Line::Other(s) => {
                out.push(s.to_string());
                continue;
            }
            Line::Entry(e) => e,
        };
        let name = if e.ns == "-" {
            format!("{} {}", e.desc, e.tag)
        } else {
            format!("{} {}.{}", e.desc, e.ns, e.tag)
        };
        match decide(e) {
            Decision::Keep => {
                if DATA_DESCS.contains(&e.desc) {
                    last_data = Some(out.len());
                }
                out.push(e.line.to_string());
            }
            Decision::Skip(why) => {
                skipped.push(format!("{name}: {why}"));
                out.push(format!(";{}", e.line));
            }
            Decision::Platform => {
                *per_schema
                    .entry(if e.ns == "-" {
                        e.tag.trim_start_matches("SCHEMA ")
                    } else {
                        e.ns
                    })
                    .or_default() += 1;
                out.push(format!(";{}", e.line));
            }
            Decision::LateData => {
                let rank = PLATFORM_DATA
                    .iter()
                    .position(|(s, t)| *s == e.ns && *t == e.tag)
                    .unwrap_or(usize::MAX);
                late.push((rank, e.line, format!("{}.{}", e.ns, e.tag)));
            }
        }
    }
    let reorder = !late.is_empty();
    late.sort();
    let at = last_data.map(|i| i + 1).unwrap_or(out.len());
    let mut notes = Vec::new();
    if reorder {
        let names: Vec<&str> = late.iter().map(|(_, _, n)| n.as_str()).collect();
        notes.push(format!(
            "rows of {} were restored into the target project's own (empty) tables",
            names.join(", ")
        ));
    }
    for (i, (_, l, _)) in late.into_iter().enumerate() {
        out.insert(at + i, l.to_string());
    }
    for (schema, n) in per_schema {
        skipped.push(format!(
            "{n} entries of schema {schema}: the target project's platform owns this schema and keeps its own version"
        ));
    }
    let mut list = out.join("\n");
    list.push('\n');
    Plan {
        list,
        skipped,
        reorder,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore --list` of a Supabase-style dump (abridged), plus platform extensions.
    const TOC: &str = "\
;
; Archive created at 2026-11-21 08:45:20 UTC
;
5; 2615 16396 SCHEMA - auth supabase_admin
2684; 0 0 COMMENT - SCHEMA auth supabase_admin
2685; 0 0 ACL - SCHEMA auth supabase_admin
8; 2615 16399 SCHEMA - my app postgres
2; 3079 16400 EXTENSION - pg_graphql 
2700; 0 0 COMMENT - EXTENSION pg_graphql 
3; 3079 16401 EXTENSION - pgcrypto 
2701; 0 0 COMMENT - EXTENSION pgcrypto 
233; 1255 16445 FUNCTION auth uid() supabase_auth_admin
222; 1259 16399 TABLE auth users supabase_auth_admin
2694; 0 0 ACL auth TABLE users supabase_auth_admin
223; 1259 16409 TABLE auth identities supabase_auth_admin
225; 1259 16430 TABLE auth refresh_tokens supabase_auth_admin
230; 1259 16503 TABLE my app Order Items postgres
2668; 0 16409 TABLE DATA auth identities supabase_auth_admin
2670; 0 16430 TABLE DATA auth refresh_tokens supabase_auth_admin
2667; 0 16399 TABLE DATA auth users supabase_auth_admin
2675; 0 16503 TABLE DATA my app Order Items postgres
2680; 0 16600 TABLE DATA graphql schema_version supabase_admin
2700; 0 0 SEQUENCE SET auth refresh_tokens_id_seq supabase_auth_admin
2473; 2606 16406 CONSTRAINT auth users users_pkey supabase_auth_admin
2505; 2620 16543 TRIGGER auth users on_auth_user_created supabase_auth_admin
2506; 2620 16544 TRIGGER auth users platform_trigger supabase_auth_admin
2663; 3256 16544 POLICY storage objects Avatar images are public. supabase_storage_admin
2653; 0 16399 ROW SECURITY auth users supabase_auth_admin
2665; 6104 16502 PUBLICATION - supabase_realtime postgres
2093; 826 16501 DEFAULT ACL public DEFAULT PRIVILEGES FOR SEQUENCES postgres
2092; 826 16500 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES supabase_admin
2459; 3466 16499 EVENT TRIGGER - pgrst_ddl_watch supabase_admin";

    fn lines(schemas: &[&str]) -> Vec<Line<'static>> {
        let s: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
        TOC.lines().map(|l| parse_line(l, &s)).collect()
    }

    fn kept(p: &Plan) -> Vec<&str> {
        p.list
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .collect()
    }

    #[test]
    fn parses_names_with_spaces_and_empty_owners() {
        let l = parse_line(
            "2675; 0 16503 TABLE DATA my app Order Items postgres",
            &["my app".to_string()],
        );
        let Line::Entry(e) = l else {
            panic!("not parsed")
        };
        assert_eq!(
            (e.desc, e.ns, e.tag, e.owner),
            ("TABLE DATA", "my app", "Order Items", "postgres")
        );
        let Line::Entry(e) = parse_line("2; 3079 16400 EXTENSION - pg_graphql ", &[]) else {
            panic!("not parsed")
        };
        assert_eq!(
            (e.desc, e.ns, e.tag, e.owner),
            ("EXTENSION", "-", "pg_graphql", "")
        );
        let Line::Entry(e) = parse_line(
            "2093; 826 1 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES x",
            &[],
        ) else {
            panic!("not parsed")
        };
        assert_eq!(
            (e.desc, e.ns, e.tag),
            ("DEFAULT ACL", "public", "DEFAULT PRIVILEGES FOR TABLES")
        );
        assert!(matches!(parse_line("; comment", &[]), Line::Other(_)));
        assert!(matches!(
            parse_line("9; 1 2 NEW KIND x y z", &[]),
            Line::Other(_)
        ));
    }

    #[test]
    fn plain_target_keeps_the_project_and_skips_platform_machinery() {
        let facts = Facts {
            available_extensions: ["pgcrypto".to_string()].into_iter().collect(),
            actable_roles: ["postgres".to_string()].into_iter().collect(),
            ..Facts::default()
        };
        let p = filter(&lines(&["auth", "my app", "public"]), &facts);
        let k = kept(&p);
        assert!(k.iter().any(|l| l.contains("SCHEMA - auth")));
        assert!(k.iter().any(|l| l.contains("TABLE DATA auth users")));
        assert!(k.iter().any(|l| l.contains("EXTENSION - pgcrypto")));
        assert!(k.iter().any(|l| l.contains("FOR SEQUENCES postgres")));
        for gone in [
            "pg_graphql",
            "pgrst_ddl_watch",
            "FOR TABLES supabase_admin",
            "graphql schema_version",
        ] {
            assert!(
                !k.iter().any(|l| l.contains(gone)),
                "{gone} must be skipped"
            );
        }
        assert!(!p.reorder);
        assert!(k
            .iter()
            .any(|l| l.contains("TABLE DATA auth refresh_tokens")));
        assert_eq!(p.skipped.len(), 5, "{:?}", p.skipped);
        assert_eq!(k.len() + p.skipped.len(), 29, "{:?}", p.skipped);
    }

    #[test]
    fn supabase_target_keeps_project_content_and_moves_platform_rows() {
        let mut facts = Facts {
            platform_schemas: vec!["auth".into(), "storage".into()],
            installed_extensions: ["pg_graphql".to_string(), "pgcrypto".to_string()]
                .into_iter()
                .collect(),
            available_extensions: ["pg_graphql".to_string(), "pgcrypto".to_string()]
                .into_iter()
                .collect(),
            publications: ["supabase_realtime".to_string()].into_iter().collect(),
            triggers: ["auth\tusers platform_trigger".to_string()]
                .into_iter()
                .collect(),
            ..Facts::default()
        };
        facts
            .data
            .insert(("auth".into(), "users".into()), DataState::Empty);
        facts
            .data
            .insert(("auth".into(), "identities".into()), DataState::Empty);
        let p = filter(&lines(&["auth", "my app", "public", "storage"]), &facts);
        let k = kept(&p);
        let pos = |needle: &str| k.iter().position(|l| l.contains(needle));
        assert_eq!(pos("SCHEMA - auth"), None);
        assert_eq!(pos("TABLE auth users"), None);
        assert_eq!(pos("CONSTRAINT auth users"), None);
        assert_eq!(pos("EXTENSION - pg_graphql"), None);
        assert_eq!(pos("PUBLICATION - supabase_realtime"), None);
        assert_eq!(pos("platform_trigger"), None);
        assert_eq!(pos("refresh_tokens"), None);
        assert!(pos("on_auth_user_created").is_some());
        assert!(pos("Avatar images").is_some());
        assert!(pos("SCHEMA - my app").is_some());
        // users before identities, both after the project's own data.
        let (u, i, own) = (
            pos("TABLE DATA auth users").expect("users"),
            pos("TABLE DATA auth identities").expect("identities"),
            pos("TABLE DATA my app").expect("own"),
        );
        assert!(own < u && u < i, "{k:#?}");
        assert!(p.reorder);
        assert!(
            p.skipped
                .iter()
                .any(|s| s.contains("entries of schema auth")),
            "{:?}",
            p.skipped
        );
    }
}
