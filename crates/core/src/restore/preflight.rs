//! What an archive needs from its target that the restoring role may lack, found from the
//! archive's own table of contents before anything is changed (docs/SUPABASE.md,
//! docs/MANAGED.md):
//! - the roles its entries name (policies' `TO`, grants, default privileges, `SET ROLE`,
//!   owners): missing ones are created `NOLOGIN`, or the restore stops naming them all;
//! - what only a superuser may create: untrusted extensions (skipped when nothing but
//!   their comments and grants depends on them, or when `[restore] skip_extensions` names
//!   them), event triggers, publications of all tables or of a schema, subscriptions, and
//!   functions that set a superuser-only parameter (these stop the restore);
//! - extensions already installed in the target database (their comments need their
//!   owner).
//!
//! The decisions are pure functions of the TOC and [`Facts`]; only [`facts`] and the role
//! creation talk to the server.

use super::sql::{self, unquote_ident, RoleUse};
use crate::{Error, Result};
use pgdrill_pg::archive::TocItem;
use pgdrill_pg::client::{self, quote_ident};
use pgdrill_pg::ConnSpec;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What the target server and the restoring role are.
#[derive(Debug, Default)]
pub struct Facts {
    pub user: String,
    pub superuser: bool,
    pub createrole: bool,
    pub roles: HashSet<String>,
    /// Extensions a non-superuser may create (`trusted`).
    pub trusted_extensions: HashSet<String>,
    /// Extensions installed in the target database (when it exists).
    pub installed_extensions: HashSet<String>,
    /// Settings named by the archive's functions that the restoring role may not set.
    pub forbidden_settings: HashSet<String>,
}

/// Entries not to restore: dump id → why.
pub type Skips = BTreeMap<i64, String>;

/// Reads the [`Facts`] the decisions need. `target` is read only when it exists.
pub async fn facts(
    admin: &ConnSpec,
    target: Option<&ConnSpec>,
    items: &[TocItem],
) -> Result<Facts> {
    let c = client::connect(admin).await?;
    let me = client::text_rows(
        &c,
        admin,
        "read the restoring role",
        "select current_user::text, rolsuper::text, rolcreaterole::text from pg_roles where rolname = current_user",
        &[],
    )
    .await?;
    let row = me.into_iter().next().unwrap_or_default();
    let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let mut f = Facts {
        user: col(0),
        superuser: col(1) == "true",
        createrole: col(2) == "true",
        ..Facts::default()
    };
    f.roles = role_names(&c, admin).await?;
    // `trusted` exists from PostgreSQL 13 on; before, only a superuser creates extensions.
    f.trusted_extensions = client::text_rows(
        &c,
        admin,
        "list trusted extensions",
        "select distinct name::text from pg_available_extension_versions where trusted",
        &[],
    )
    .await
    .map(column)
    .unwrap_or_default();
    let settings: Vec<String> = items
        .iter()
        .filter(|i| matches!(i.desc.as_str(), "FUNCTION" | "PROCEDURE"))
        .flat_map(|i| sql::refs(&i.defn).settings)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !f.superuser && !settings.is_empty() {
        let superuser_only = column(
            client::text_rows(
                &c,
                admin,
                "read parameter contexts",
                "select name::text from pg_settings where context = 'superuser' and name = any($1::text[])",
                &settings,
            )
            .await?,
        );
        // PostgreSQL 15 lets a superuser grant SET on a parameter.
        let granted = column(
            client::text_rows(
                &c,
                admin,
                "read parameter privileges",
                "select p::text from unnest($1::text[]) p where has_parameter_privilege(p, 'SET')",
                &superuser_only.iter().cloned().collect::<Vec<_>>(),
            )
            .await
            .unwrap_or_default(),
        );
        f.forbidden_settings = superuser_only.difference(&granted).cloned().collect();
    }
    if let Some(t) = target {
        let tc = client::connect(t).await?;
        f.installed_extensions = column(
            client::text_rows(
                &tc,
                t,
                "list extensions",
                "select extname::text from pg_extension",
                &[],
            )
            .await?,
        );
    }
    Ok(f)
}

async fn role_names(c: &tokio_postgres::Client, admin: &ConnSpec) -> Result<HashSet<String>> {
    let rows = client::text_rows(
        c,
        admin,
        "list roles",
        "select rolname::text from pg_roles",
        &[],
    )
    .await?;
    Ok(column(rows))
}

fn column(rows: Vec<Vec<Option<String>>>) -> HashSet<String> {
    rows.into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

/// The object a COMMENT/ACL/SECURITY LABEL entry is about: (`EXTENSION`, `uuid-ossp`).
fn about(item: &TocItem) -> Option<(&str, String)> {
    if !matches!(item.desc.as_str(), "COMMENT" | "ACL" | "SECURITY LABEL") {
        return None;
    }
    for kind in ["EVENT TRIGGER", "EXTENSION", "PUBLICATION", "SUBSCRIPTION"] {
        if let Some(rest) = item
            .tag
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix(' '))
        {
            return Some((kind, unquote_ident(rest)));
        }
    }
    None
}

/// Entries the restoring role cannot create and that can be left out, with the reason;
/// or, when something it cannot create is needed, an error naming all of it.
pub fn skips(items: &[TocItem], f: &Facts, skip_extensions: &[String]) -> Result<Skips> {
    let mut blockers = Vec::new();
    let (mut skip, skipped_ext) = extension_skips(items, f, skip_extensions, &mut blockers);
    let by_id: BTreeMap<i64, &TocItem> = items.iter().map(|i| (i.dump_id, i)).collect();
    for i in items {
        if skip.contains_key(&i.dump_id) {
            continue;
        }
        let why = superuser_only(i, f, &mut blockers).or_else(|| match about(i) {
            Some(("EXTENSION", name)) if skipped_ext.contains(&name) => Some(format!(
                "belongs to the extension {name}, which is not restored"
            )),
            Some(("EVENT TRIGGER", _)) if !f.superuser => {
                Some("belongs to an event trigger, which is not restored".to_string())
            }
            _ if matches!(i.desc.as_str(), "COMMENT" | "ACL" | "SECURITY LABEL") => {
                i.deps.iter().find(|d| skip.contains_key(d)).map(|d| {
                    format!(
                        "belongs to {}, which is not restored",
                        by_id.get(d).map(|x| describe(x)).unwrap_or_default()
                    )
                })
            }
            _ => None,
        });
        if let Some(why) = why {
            skip.insert(i.dump_id, why);
        }
    }
    if blockers.is_empty() {
        return Ok(skip);
    }
    Err(Error::Failed(format!(
        "the restoring role {} cannot create what the backup holds: {}; nothing was changed (restore as a superuser, or name such extensions in [restore] skip_extensions if the restore may go without them)",
        f.user,
        blockers.join("; ")
    )))
}

/// The extensions not to restore (installed already, named in `skip_extensions`, or
/// untrusted for a non-superuser with nothing depending on them), and their names; an
/// untrusted one something needs goes to `blockers`.
fn extension_skips(
    items: &[TocItem],
    f: &Facts,
    skip_extensions: &[String],
    blockers: &mut Vec<String>,
) -> (Skips, HashSet<String>) {
    let mut skip = Skips::new();
    let mut names = HashSet::new();
    for i in items.iter().filter(|i| i.desc == "EXTENSION") {
        let name = unquote_ident(&i.tag);
        let why = if f.installed_extensions.contains(&name) {
            Some("already installed in the target database".to_string())
        } else if skip_extensions.contains(&name) {
            Some("named in [restore] skip_extensions".to_string())
        } else if !f.superuser && !f.trusted_extensions.contains(&name) {
            let needs: Vec<String> = items
                .iter()
                .filter(|d| d.deps.contains(&i.dump_id))
                .filter(|d| !matches!(d.desc.as_str(), "COMMENT" | "ACL" | "SECURITY LABEL"))
                .map(describe)
                .collect();
            if needs.is_empty() {
                Some(format!(
                    "only a superuser can create the extension {name} and nothing restored depends on it"
                ))
            } else {
                blockers.push(format!(
                    "the extension {name} (only a superuser can create it; {} need it)",
                    needs.join(", ")
                ));
                None
            }
        } else {
            None
        };
        if let Some(why) = why {
            skip.insert(i.dump_id, why);
            names.insert(name);
        }
    }
    (skip, names)
}

/// Why entry `i` is skipped because only a superuser may create it, if it is; a function
/// setting a superuser-only parameter goes to `blockers` instead.
fn superuser_only(i: &TocItem, f: &Facts, blockers: &mut Vec<String>) -> Option<String> {
    if f.superuser {
        return None;
    }
    match i.desc.as_str() {
        "EVENT TRIGGER" => Some("creating an event trigger needs a superuser".to_string()),
        "PUBLICATION" if i.defn.to_ascii_uppercase().contains("FOR ALL TABLES") => {
            Some("a publication of all tables needs a superuser".to_string())
        }
        "PUBLICATION TABLES IN SCHEMA" => {
            Some("publishing a whole schema needs a superuser".to_string())
        }
        "SUBSCRIPTION" | "SUBSCRIPTION TABLE" => {
            Some("creating a subscription needs a superuser".to_string())
        }
        "FUNCTION" | "PROCEDURE" if !f.forbidden_settings.is_empty() => {
            let bad: Vec<String> = sql::refs(&i.defn)
                .settings
                .into_iter()
                .filter(|s| f.forbidden_settings.contains(s))
                .collect();
            if !bad.is_empty() {
                blockers.push(format!(
                    "{} (sets {}, which only a superuser may set)",
                    describe(i),
                    bad.join(", ")
                ));
            }
            None
        }
        _ => None,
    }
}

/// Grants on objects that belong to an extension (their dependency is an object the
/// archive does not hold: the extension creates it). The target's version of the
/// extension may lack the object (`pg_stat_statements_reset` changed its arguments), so
/// these run one by one after the restore, and a failure is listed, not fatal.
pub fn extension_member_grants(items: &[TocItem], skip: &Skips) -> Vec<(i64, String, String)> {
    let ids: HashSet<i64> = items.iter().map(|i| i.dump_id).collect();
    items
        .iter()
        .filter(|i| i.desc == "ACL" && !skip.contains_key(&i.dump_id))
        .filter(|i| !i.deps.is_empty() && i.deps.iter().all(|d| !ids.contains(d)))
        .map(|i| (i.dump_id, describe(i), i.defn.clone()))
        .collect()
}

/// `TABLE public.todos`, `EXTENSION pgcrypto`.
pub fn describe(i: &TocItem) -> String {
    if i.namespace.is_empty() || i.namespace == "-" {
        format!("{} {}", i.desc, i.tag)
    } else {
        format!("{} {}.{}", i.desc, i.namespace, i.tag)
    }
}

/// Roles the kept entries name: (needed, wanted). Needed ones make their statement fail
/// when missing (a policy's roles always; grants and default privileges when privileges
/// are restored); wanted ones (owners, `SET ROLE`, user mappings) are created when the
/// restoring role can, else left out with a note.
pub fn roles(
    items: &[TocItem],
    kept: &HashSet<i64>,
    privileges: bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut needed = BTreeSet::new();
    let mut wanted = BTreeSet::new();
    for i in items.iter().filter(|i| kept.contains(&i.dump_id)) {
        if !i.owner.is_empty() {
            wanted.insert(i.owner.clone());
        }
        for (r, why) in sql::refs(&i.defn).roles {
            match why {
                RoleUse::Policy => needed.insert(r),
                RoleUse::Privilege if privileges => needed.insert(r),
                RoleUse::Privilege | RoleUse::Setting => wanted.insert(r),
            };
        }
    }
    let wanted = wanted.difference(&needed).cloned().collect();
    (needed, wanted)
}

/// The roles to create, or an error naming every needed role that is missing when the
/// restoring role cannot create roles. Predefined `pg_*` roles cannot be created.
pub fn roles_to_create(
    needed: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    f: &Facts,
    notes: &mut Vec<String>,
) -> Result<Vec<String>> {
    let missing = |s: &BTreeSet<String>| -> Vec<String> {
        s.iter()
            .filter(|r| !f.roles.contains(*r) && !r.starts_with("pg_"))
            .cloned()
            .collect()
    };
    let (need, want) = (missing(needed), missing(wanted));
    if f.superuser || f.createrole {
        return Ok(need.into_iter().chain(want).collect());
    }
    if !need.is_empty() {
        return Err(Error::Failed(format!(
            "the backup's policies and grants name roles the target server lacks: {}; the restoring role {} cannot create roles, so nothing was changed (create them there first, or restore as a role with CREATEROLE)",
            need.join(", "),
            f.user
        )));
    }
    if !want.is_empty() {
        notes.push(format!(
            "roles named only as owners or settings were not created (the restoring role cannot create roles; objects belong to it): {}",
            want.join(", ")
        ));
    }
    Ok(Vec::new())
}

/// Creates `roles` (NOLOGIN) and returns them; on failure drops those it created.
pub async fn create_roles(admin: &ConnSpec, roles: &[String]) -> Result<Vec<String>> {
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let c = client::connect(admin).await?;
    // `--globals` may have created some of them since the preflight looked.
    let existing = role_names(&c, admin).await?;
    let mut created = Vec::new();
    for r in roles.iter().filter(|r| !existing.contains(*r)) {
        let sql = format!("create role {} nologin", quote_ident(r));
        if let Err(e) = client::execute(&c, admin, "create a role the backup names", &sql).await {
            drop_roles(admin, &created).await;
            return Err(Error::Failed(format!(
                "the backup names the role {r}, which the target lacks and pgdrill could not create ({e}); nothing was restored (create it there first or restore as a role with CREATEROLE)"
            )));
        }
        created.push(r.clone());
    }
    Ok(created)
}

/// Drops roles this restore created (best effort: after a failed restore).
pub async fn drop_roles(admin: &ConnSpec, roles: &[String]) {
    if roles.is_empty() {
        return;
    }
    let Ok(c) = client::connect(admin).await else {
        return;
    };
    for r in roles {
        let _ = c
            .batch_execute(&format!("drop role if exists {}", quote_ident(r)))
            .await;
    }
}

/// The `--use-list` text of `items` with `skip`'s entries commented out.
pub fn list_text(items: &[TocItem], skip: &Skips) -> String {
    let mut out = String::new();
    for i in items {
        if skip.contains_key(&i.dump_id) {
            out.push(';');
        }
        out.push_str(&i.list_line());
        out.push('\n');
    }
    out
}

/// Dump ids of the entries a `--use-list` text keeps.
pub fn kept_ids(list: &str) -> HashSet<i64> {
    list.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| l.split_once(';')?.0.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests;
