//! `doctor`: a preflight. Each check prints pass/fail with a hint; exit 1 if any fails.

use super::Output;
use crate::context::Ctx;
use pgdrill_core::{catalog, crypto, Result};
use pgdrill_pg::{client, ConnSpec};
use serde_json::json;

mod store;

use store::{store_round_trip, unfinished_uploads};

#[derive(serde::Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
    hint: Option<String>,
}

fn pass(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        detail: detail.into(),
        hint: None,
    }
}

fn fail(name: &str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

pub async fn run(ctx: &Ctx) -> Result<Output> {
    let mut checks = Vec::new();
    let tools = ctx.tools();
    let store = match ctx.store() {
        Ok(s) => Some(s),
        Err(e) => {
            checks.push(fail(
                "store",
                e.to_string(),
                "set [store] url, PGDRILL_STORE_URL or --store",
            ));
            None
        }
    };
    if let Some(s) = &store {
        checks.extend(store_round_trip(s).await);
        checks.push(unfinished_uploads(ctx, s).await);
    }
    checks.extend(keys(ctx));
    checks.push(majors(&tools));
    for db in &ctx.settings.databases {
        if let Some(p) = &db.drill_settings.physical {
            let name = format!("{}: drill source", db.name);
            checks.push(
                match pgdrill_core::drill::probe_physical_source(p, &ctx.env, &ctx.cancel).await {
                    Ok(detail) => pass(&name, format!("{}: {detail}", p.source.kind())),
                    Err(e) => fail(
                        &name,
                        format!("{}: {e}", p.source.kind()),
                        "install the tool (see README, \"Drilling pgBackRest, barman and other physical backups\") and check [database.drill]",
                    ),
                },
            );
            // A physical drill needs no source URL; one that is configured is checked too.
            if db.source.is_none() {
                continue;
            }
        }
        let spec = match db.source_spec(&ctx.env) {
            Ok(spec) => spec,
            Err(e) => {
                checks.push(fail(
                    &format!("{}: source", db.name),
                    e.to_string(),
                    source_hint(db),
                ));
                continue;
            }
        };
        let major = source_checks(&mut checks, db.name.as_str(), &spec, &tools).await;
        let latest = match &store {
            Some(s) => catalog::list(s, &db.name)
                .await
                .ok()
                .and_then(|l| l.complete.into_iter().next()),
            None => None,
        };
        checks.push(spool(
            db.name.as_str(),
            latest.as_ref().map(|m| m.raw_bytes),
        ));
        checks.push(drill_target(ctx, db, major, latest.as_ref(), &tools).await);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let mut human = String::new();
    for c in &checks {
        human.push_str(&format!(
            "{} {}: {}\n",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        ));
        if let Some(h) = &c.hint {
            human.push_str(&format!("     hint: {h}\n"));
        }
    }
    human.push_str(&format!("{} checks, {failed} failed\n", checks.len()));
    Ok(Output {
        json: json!({"ok": failed == 0, "checks": checks}),
        human,
        exit_code: if failed == 0 { 0 } else { 1 },
    })
}

/// What to do when a database's source URL cannot be had, by how it is configured.
fn source_hint(db: &pgdrill_core::config::DatabaseSettings) -> String {
    use pgdrill_core::config::SourceRef;
    match &db.source {
        Some(SourceRef::Env(var)) => format!(
            "export {var}=postgresql://user:password@host:5432/{} (the direct URL, not a pooler's) where pgdrill runs",
            db.name
        ),
        Some(SourceRef::Url(_)) => "check the URL given with --source or PGDRILL_SOURCE_URL".into(),
        Some(SourceRef::Discovered(_)) => "check the url_env of its [[server]] entry".into(),
        None => "set url_env in the [[database]] entry, or pass --source URL".into(),
    }
}

fn keys(ctx: &Ctx) -> Vec<Check> {
    let mut out = Vec::new();
    let enc = match ctx.encryption_keys() {
        Ok(k) => k,
        Err(e) => return vec![fail("encryption", e.to_string(), "fix [encryption]")],
    };
    if !enc.enabled() {
        out.push(fail(
            "encryption",
            "backups are not encrypted",
            "set [encryption] recipients (pgdrill init --generate-key) or passphrase_env",
        ));
        return out;
    }
    out.push(pass(
        "encryption",
        format!(
            "age to {} recipient(s){}",
            enc.fingerprints().len(),
            if enc.has_passphrase() {
                " / passphrase"
            } else {
                ""
            }
        ),
    ));
    if enc.has_passphrase() {
        return out;
    }
    let Some(identity) = ctx.settings.identity_files.first() else {
        out.push(fail(
            "identity",
            "no identity file is configured",
            "set [encryption] identity_file so restores and drills can decrypt",
        ));
        return out;
    };
    match crypto::identity_file_recipients(identity) {
        Ok(pubs) => {
            let matching = ctx
                .settings
                .recipients
                .iter()
                .any(|r| pubs.iter().any(|p| p == r.trim()));
            if matching {
                out.push(pass(
                    "identity",
                    format!("{} matches a recipient", identity.display()),
                ));
            } else {
                out.push(fail("identity", format!("{} matches none of the recipients", identity.display()), "backups would be encrypted to keys you cannot use here: check recipients and identity_file"));
            }
        }
        Err(e) => out.push(fail("identity", e.to_string(), "check identity_file")),
    }
    out
}

/// Source reachability, privileges and tool versions; returns the server major when known.
async fn source_checks(
    out: &mut Vec<Check>,
    name: &str,
    spec: &ConnSpec,
    tools: &pgdrill_pg::PgTools,
) -> Option<u32> {
    if spec.looks_like_transaction_pooler() {
        out.push(fail(
            &format!("{name}: source"),
            format!("{} is a transaction-mode pooler", spec.redacted()),
            "use the direct connection URL (port 5432)",
        ));
        return None;
    }
    let c = match client::connect(spec).await {
        Ok(c) => c,
        Err(e) => {
            out.push(fail(
                &format!("{name}: source"),
                e.to_string(),
                "check the URL, network access and password",
            ));
            return None;
        }
    };
    let facts = client::server_facts(&c, spec).await.ok();
    let major = facts.as_ref().map(|f| f.version.major);
    out.push(pass(
        &format!("{name}: source"),
        format!(
            "{} reachable, PostgreSQL {}",
            spec.redacted(),
            facts
                .as_ref()
                .map(|f| f.version.to_string())
                .unwrap_or_default()
        ),
    ));
    let unreadable = c
        .query(
            "select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where c.relkind in ('r','p','S','m') and n.nspname not in ('pg_catalog','information_schema') \
             and n.nspname not like 'pg\\_toast%' and not has_table_privilege(c.oid, 'SELECT') limit 5",
            &[],
        )
        .await;
    match unreadable {
        Ok(rows) if rows.is_empty() => out.push(pass(
            &format!("{name}: privileges"),
            "the role can read every table pg_dump needs",
        )),
        Ok(rows) => out.push(fail(
            &format!("{name}: privileges"),
            format!(
                "cannot read: {}",
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "grant SELECT on these (or use a role with pg_read_all_data)",
        )),
        Err(e) => out.push(fail(
            &format!("{name}: privileges"),
            client::describe(&e),
            "check the role",
        )),
    }
    if let Some(m) = major {
        for tool in ["pg_dump", "pg_restore"] {
            match tools.pick(tool, m) {
                Ok(i) => out.push(pass(
                    &format!("{name}: {tool}"),
                    format!("{} {} (server {m})", i.bin(tool).display(), i.version),
                )),
                Err(e) => out.push(fail(
                    &format!("{name}: {tool}"),
                    e.to_string(),
                    format!("install PostgreSQL {m} client tools"),
                )),
            }
        }
    }
    major
}

fn spool(name: &str, raw: Option<u64>) -> Check {
    let dir = std::env::temp_dir();
    let free = pgdrill_core::restore::free_bytes(&dir).ok();
    match (free, raw) {
        (Some(f), Some(r)) if f < r + r / 10 => fail(
            &format!("{name}: spool disk"),
            format!(
                "{} has {} MiB free; the latest dump is {} MiB raw",
                dir.display(),
                f >> 20,
                r >> 20
            ),
            "free space or set TMPDIR for parallel restores (or use --jobs 1)",
        ),
        (Some(f), _) => pass(
            &format!("{name}: spool disk"),
            format!("{} has {} MiB free", dir.display(), f >> 20),
        ),
        (None, _) => fail(
            &format!("{name}: spool disk"),
            format!("cannot read free space of {}", dir.display()),
            "set TMPDIR to a writable folder",
        ),
    }
}

async fn drill_target(
    ctx: &Ctx,
    db: &pgdrill_core::config::DatabaseSettings,
    major: Option<u32>,
    latest: Option<&pgdrill_core::manifest::Manifest>,
    tools: &pgdrill_pg::PgTools,
) -> Check {
    let name = format!("{}: drill target", db.name);
    let var = db.drill_settings.target_url_env.as_deref();
    let Some(var) = var else {
        let need = latest.map(|m| m.restore_major()).or(major).unwrap_or(0);
        return match tools.pick_server(need) {
            Ok(i) => pass(&name, format!("throwaway clusters with PostgreSQL {} ({})", i.version, i.bin_dir.display())),
            Err(e) => fail(&name, e.to_string(), "install the PostgreSQL server package (initdb, postgres) or set [database.drill] target_url_env"),
        };
    };
    let Some(url) = ctx.env.get(var).filter(|v| !v.is_empty()) else {
        return fail(
            &name,
            format!("target_url_env names {var}, which is not set"),
            "export it",
        );
    };
    let spec = match ConnSpec::parse_with_env(url, &[]) {
        Ok(s) => s.with_dbname("postgres"),
        Err(e) => return fail(&name, e.to_string(), "fix the URL"),
    };
    let c = match client::connect(&spec).await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &name,
                e.to_string(),
                "check network access and credentials of the drill server",
            )
        }
    };
    let available = client::available_extensions(&c, &spec)
        .await
        .unwrap_or_default();
    let missing: Vec<String> = latest
        .map(|m| {
            m.content
                .extensions
                .iter()
                .filter(|e| *e != "plpgsql" && !available.contains(e))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if missing.is_empty() {
        pass(
            &name,
            format!(
                "{} reachable; every extension of the latest backup is available",
                spec.redacted()
            ),
        )
    } else {
        fail(
            &name,
            format!("missing extensions: {}", missing.join(", ")),
            "install them on the drill server before drilling",
        )
    }
}

/// The PostgreSQL majors that can run a throwaway cluster (drills, `drill --major N`).
fn majors(tools: &pgdrill_pg::PgTools) -> Check {
    let found = pgdrill_core::drill::upgrade::server_majors(tools);
    if found.is_empty() {
        return fail(
            "postgresql majors",
            "no PostgreSQL server found here: drills need a [database.drill] target server",
            "install a PostgreSQL server (apt install postgresql-17, ...) or add its bin folder to PGDRILL_PG_PATHS",
        );
    }
    let list: Vec<String> = found
        .iter()
        .map(|i| format!("{} ({})", i.version, i.bin_dir.display()))
        .collect();
    pass(
        "postgresql majors",
        format!(
            "servers for throwaway clusters and drill --major N: {}; add one by installing it and putting its bin folder on PGDRILL_PG_PATHS",
            list.join(", ")
        ),
    )
}
