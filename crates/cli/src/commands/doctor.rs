//! `doctor`: a preflight. Each check prints pass/fail with a hint; exit 1 if any fails.

use super::Output;
use crate::context::Ctx;
use bytes::Bytes;
use pgdrill_core::clock::Clock;
use pgdrill_core::{catalog, crypto, lease, Result};
use pgdrill_pg::{client, ConnSpec};
use pgdrill_store::{Store, StoreError, StoreKind};
use serde_json::json;

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
    for db in &ctx.settings.databases {
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
        None => "set url_env in the [[database]] entry, or pass --source URL".into(),
    }
}

/// Known provider quirks, named by endpoint.
fn quirks(store: &Store) -> Option<&'static str> {
    let d = store.display();
    if d.contains("r2.cloudflarestorage.com") {
        Some("Cloudflare R2: region must be \"auto\"; all multipart parts but the last must be the same size (pgdrill's are)")
    } else if d.contains("backblazeb2.com") {
        Some("Backblaze B2: use the S3 endpoint s3.<region>.backblazeb2.com and an application key with listFiles/deleteFiles; lifecycle rules may keep hidden versions")
    } else if d.contains("oraclecloud.com") {
        Some("Oracle OCI: use <namespace>.compat.objectstorage.<region>.oraclecloud.com with path_style = true and a Customer Secret Key")
    } else {
        None
    }
}

async fn store_round_trip(store: &Store) -> Vec<Check> {
    let base = format!(".pgdrill-doctor/{:08x}", rand_u32());
    let mut out = Vec::new();
    let quirk = quirks(store).map(|q| format!(" ({q})")).unwrap_or_default();
    let step = |name: &str, r: std::result::Result<String, String>, hint: &str| match r {
        Ok(d) => pass(&format!("store: {name}"), d),
        Err(e) => fail(&format!("store: {name}"), e, hint),
    };
    let small = format!("{base}/small");
    out.push(step(
        "put",
        store
            .put(&small, Bytes::from_static(b"pgdrill doctor"))
            .await
            .map(|_| format!("wrote to {}{quirk}", store.display()))
            .map_err(|e| e.to_string()),
        "check the bucket, endpoint, region and credentials",
    ));
    let big = format!("{base}/multipart");
    let multipart = async {
        let mut up = store
            .upload(&big, 5 << 20, 2)
            .await
            .map_err(|e| e.to_string())?;
        up.write(Bytes::from(vec![7u8; (5 << 20) + 1024]))
            .await
            .map_err(|e| e.to_string())?;
        up.finish().await.map_err(|e| e.to_string())?;
        let info = store.head(&big).await.map_err(|e| e.to_string())?;
        if info.size != (5 << 20) + 1024 {
            return Err(format!(
                "the object has {} bytes after a 2-part upload",
                info.size
            ));
        }
        Ok("2-part upload completed".to_string())
    };
    out.push(step("multipart", multipart.await, "the credentials need multipart permissions (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload)"));
    let listed = store
        .list(&base)
        .await
        .map_err(|e| e.to_string())
        .and_then(|l| {
            if l.len() >= 2 {
                Ok(format!("{} objects listed", l.len()))
            } else {
                Err(format!("listed {} objects, expected 2", l.len()))
            }
        });
    out.push(step("list", listed, "the credentials need ListBucket"));
    let cond = format!("{base}/conditional");
    let conditional = async {
        store
            .put_if_absent(&cond, Bytes::from_static(b"1"))
            .await
            .map_err(|e| e.to_string())?;
        match store.put_if_absent(&cond, Bytes::from_static(b"2")).await {
            Err(StoreError::AlreadyExists { .. }) => Ok("a second create was refused (If-None-Match works)".to_string()),
            Ok(_) => Err("a second create succeeded: the store ignores If-None-Match, so manifests and leases are not protected".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    out.push(step(
        "conditional put",
        conditional.await,
        "use a provider or version that supports conditional writes (AWS S3, R2, B2, MinIO ≥ 2024)",
    ));
    let ranged = store
        .get_range(&small, 8..14)
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| {
            if b.as_ref() == b"doctor" {
                Ok("bytes 8..14 read back".to_string())
            } else {
                Err("a ranged read returned the wrong bytes".to_string())
            }
        });
    out.push(step(
        "ranged get",
        ranged,
        "parallel restores need ranged GETs",
    ));
    let mut deleted = Ok("test objects deleted".to_string());
    for k in [&small, &big, &cond] {
        if let Err(e) = store.delete(k).await {
            deleted = Err(e.to_string());
        }
    }
    out.push(step("delete", deleted, "prune needs DeleteObject"));
    out.push(clock(store, &base).await);
    out
}

/// This host's clock against the store's (the last-modified time it gives a new object):
/// leases and prune ages are judged by the store's clock, but backup ids and messages use
/// the host's.
async fn clock(store: &Store, base: &str) -> Check {
    let probe = format!("{base}/clock.json");
    match lease::store_clock(store, &probe, Clock::process()).await {
        Ok((_, skew)) if skew.abs() > lease::SKEW_WARN_SECONDS => fail(
            "store: clock",
            lease::describe_skew(skew),
            "fix this host's time sync (NTP): pgdrill judges leases and prune ages by the store's clock, but names backups by this host's",
        ),
        Ok((_, skew)) => pass(
            "store: clock",
            format!("within {} s of the store's clock", skew.abs().max(1)),
        ),
        Err(e) => fail(
            "store: clock",
            e.to_string(),
            "the store must report when an object was written",
        ),
    }
}

/// What uploads that never completed (a killed backup's) left behind: part files in a folder,
/// open multipart uploads on S3; those older than the grace period after which `prune`
/// removes them.
async fn unfinished_uploads(ctx: &Ctx, store: &Store) -> Check {
    const NAME: &str = "store: unfinished uploads";
    let grace_hours = ctx.settings.retention.incomplete_grace_hours;
    let now = Clock::process().now().as_second();
    match store.staged_parts("").await {
        Ok(parts) => {
            let stale: Vec<_> = parts
                .iter()
                .filter(|p| now - p.last_modified > grace_hours as i64 * 3600)
                .collect();
            if stale.is_empty() {
                pass(NAME, format!("none older than {grace_hours} h"))
            } else if store.kind() == StoreKind::S3 {
                fail(
                    NAME,
                    format!(
                        "{} multipart uploads left open older than {grace_hours} h, e.g. {}",
                        stale.len(),
                        stale[0].key
                    ),
                    "run `pgdrill prune`, which aborts them",
                )
            } else {
                fail(
                    NAME,
                    format!(
                        "{} part files of unfinished uploads older than {grace_hours} h ({} bytes), e.g. {}",
                        stale.len(),
                        stale.iter().map(|p| p.size).sum::<u64>(),
                        stale[0].key
                    ),
                    "run `pgdrill prune`, which removes them",
                )
            }
        }
        Err(e @ StoreError::Denied { .. }) if store.kind() == StoreKind::S3 => fail(
            NAME,
            e.to_string(),
            "allow s3:ListBucketMultipartUploads and s3:AbortMultipartUpload on the bucket, for `prune`",
        ),
        Err(e) if store.kind() == StoreKind::S3 => {
            fail(NAME, e.to_string(), "fix the store check above first")
        }
        Err(e) => fail(NAME, e.to_string(), "check the store folder's permissions"),
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or(0)
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
    let free = free_bytes(&dir);
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

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["-Pk", &dir.display().to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
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
