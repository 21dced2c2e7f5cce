//! Read-side commands: list, show, verify, export.

use super::Output;
use crate::cli::{ExportArgs, SelectArgs, VerifyArgs};
use crate::context::Ctx;
use crate::ui::{human_bytes, human_secs, table};
use pgdrill_core::manifest::Manifest;
use pgdrill_core::progress::Progress;
use pgdrill_core::{catalog, readers, verify, Result};
use serde_json::json;

pub async fn list(ctx: &Ctx) -> Result<Output> {
    let stores = ctx.read_stores()?;
    let several = stores.len() > 1;
    // Every store listed; a backup appears once, with the stores holding a complete copy.
    let mut all: Vec<Manifest> = Vec::new();
    let mut holders: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut store_docs = Vec::new();
    for (s, store) in &stores {
        let listed = list_store(ctx, store, &mut all, &mut holders, &s.name).await;
        match listed {
            Ok(()) => store_docs.push(json!({"name": s.name, "reachable": true})),
            Err(e) if several && matches!(e, pgdrill_core::Error::Store { .. }) => {
                ctx.ui.warn(format!(
                    "store {} cannot be read ({e}): its copies are not listed",
                    s.name
                ));
                store_docs
                    .push(json!({"name": s.name, "reachable": false, "error": e.to_string()}));
            }
            Err(e) => return Err(e),
        }
    }
    let store = &stores[0].1;
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.backup_id.to_string(),
                m.database.to_string(),
                super::local_time(&ctx.settings.schedule.tz, &m.snapshot.time),
                human_bytes(m.raw_bytes),
                human_bytes(m.stored_bytes),
                m.content.tables.len().to_string(),
                if m.encrypted() {
                    "age".into()
                } else {
                    "no".into()
                },
            ]
            .into_iter()
            .chain(several.then(|| {
                holders
                    .get(m.backup_id.as_str())
                    .map(|h| h.join(","))
                    .unwrap_or_default()
            }))
            .collect()
        })
        .collect();
    let human = if rows.is_empty() {
        format!("no complete backups in {}\n", store.display())
    } else {
        let mut head = vec![
            "ID",
            "DATABASE",
            "SNAPSHOT",
            "RAW",
            "STORED",
            "TABLES",
            "ENCRYPTED",
        ];
        if several {
            head.push("STORES");
        }
        table(&head, &rows)
    };
    let backups: Vec<_> = all
        .iter()
        .map(|m| {
            let mut b = pgdrill_core::summary::backup(m);
            b["stores"] = json!(holders.get(&copy_key(m)).cloned().unwrap_or_default());
            b
        })
        .collect();
    Ok(Output::ok(
        json!({ "backups": backups, "stores": store_docs }),
        human,
    ))
}

fn copy_key(m: &Manifest) -> String {
    format!("{}/{}", m.database, m.backup_id)
}

/// Adds the complete backups of one store to `all` (once per backup id) and the store's
/// name to each one's holders.
async fn list_store(
    ctx: &Ctx,
    store: &pgdrill_store::Store,
    all: &mut Vec<Manifest>,
    holders: &mut std::collections::BTreeMap<String, Vec<String>>,
    name: &str,
) -> Result<()> {
    let mut found = Vec::new();
    for db in ctx.databases_to_list(store).await? {
        let listing = pgdrill_core::catalog_cache::list(store, &db).await?;
        for (id, reason) in &listing.unreadable {
            ctx.ui
                .warn(format!("backup {id} of {db} is not listed: {reason}"));
        }
        found.extend(listing.complete);
    }
    for m in found {
        let h = holders.entry(copy_key(&m)).or_default();
        if h.is_empty() {
            all.push(m);
        }
        h.push(name.to_string());
    }
    Ok(())
}

pub async fn show(ctx: &Ctx, args: &SelectArgs) -> Result<Output> {
    let stores = ctx.read_stores()?;
    let db = ctx.one_database_of(&stores).await?;
    let src = ctx.source(&stores, &db, &args.backup, None).await?;
    let r = src.resolved;
    for w in &r.warnings {
        ctx.ui.warn(w);
    }
    let mut json = serde_json::to_value(&r.manifest).unwrap_or_default();
    json["store"] = json!(src.name);
    let mut human = render_manifest(&r.manifest, &ctx.settings.schedule.tz);
    if ctx.settings.stores.len() > 1 {
        human.insert_str(0, &format!("{:<18}{}\n", "store", src.name));
    }
    Ok(Output::ok(json, human))
}

fn render_manifest(m: &Manifest, tz: &jiff::tz::TimeZone) -> String {
    let at = |t: &str| super::local_time(tz, t);
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<18}{v}\n"));
    kv("backup", m.backup_id.to_string());
    kv("database", m.database.to_string());
    kv("source", m.source.url.clone());
    kv(
        "server",
        format!(
            "PostgreSQL {} (system id {})",
            m.server.version,
            m.server.system_identifier.as_deref().unwrap_or("unknown")
        ),
    );
    kv(
        "pg_dump",
        format!("{} {}", m.pg_dump.version, m.pg_dump.args.join(" ")),
    );
    kv(
        "snapshot",
        format!(
            "{}{}",
            at(&m.snapshot.time),
            if m.snapshot.exported {
                " (exported, row counts exact)"
            } else {
                " (not exported)"
            }
        ),
    );
    kv("started", at(&m.started_at));
    kv("finished", at(&m.finished_at));
    kv(
        "duration",
        human_secs(m.stage_seconds.get("total").copied().unwrap_or(0.0)),
    );
    kv(
        "size",
        format!(
            "{} raw, {} stored ({} level {})",
            human_bytes(m.raw_bytes),
            human_bytes(m.stored_bytes),
            m.compression.algorithm,
            m.compression.level
        ),
    );
    kv(
        "encryption",
        if m.encrypted() {
            format!(
                "age ({} recipient(s){})",
                m.encryption.recipient_fingerprints.len(),
                if m.encryption.passphrase {
                    ", passphrase"
                } else {
                    ""
                }
            )
        } else {
            "none".into()
        },
    );
    kv("schemas", m.content.schemas.join(", "));
    kv(
        "extensions",
        if m.content.extensions.is_empty() {
            "none".into()
        } else {
            m.content.extensions.join(", ")
        },
    );
    kv(
        "schema digest",
        m.content.schema_fingerprint.chars().take(16).collect(),
    );
    kv("host", m.host.clone());
    for o in &m.objects {
        kv(
            "object",
            format!("{} {} sha256 {}", o.name, human_bytes(o.size), o.sha256),
        );
    }
    if let Some(n) = &m.content.note {
        kv("note", n.clone());
    }
    let rows: Vec<Vec<String>> = m
        .content
        .tables
        .iter()
        .map(|t| vec![format!("{}.{}", t.schema, t.name), t.rows.to_string()])
        .collect();
    s.push('\n');
    s.push_str(&table(&["TABLE", "ROWS"], &rows));
    s
}

pub async fn verify(ctx: &Ctx, args: &VerifyArgs) -> Result<Output> {
    let stores = ctx.read_stores()?;
    let db = ctx.one_database_of(&stores).await?;
    if let [(s, store)] = stores.as_slice() {
        // One store (or --from-store): its errors end the command, as they always did.
        let mut v = verify_store(ctx, &s.name, store, &db, args, None).await?;
        v.json["database"] = json!(db);
        v.json["store"] = json!(s.name);
        if let Some(list) = v.json["verified"].as_array_mut() {
            for r in list {
                r["store"] = json!(s.name);
            }
        }
        return Ok(v);
    }
    // Several stores: one backup id for all (`latest` over the stores), then every store's
    // copy checked; a store that fails is reported beside the others.
    let id = if args.all {
        None
    } else {
        let sel = args.backup.as_deref().unwrap_or("latest");
        let src = pgdrill_core::stores::resolve(&stores, &db, sel).await?;
        Some(src.resolved.manifest.backup_id.to_string())
    };
    let mut human = String::new();
    let mut verified = Vec::new();
    let mut warnings = Vec::new();
    let mut per_store = Vec::new();
    let mut code = 0u8;
    for (s, store) in &stores {
        match verify_store(ctx, &s.name, store, &db, args, id.as_deref()).await {
            Ok(v) => {
                human.push_str(&v.human);
                code = code.max(v.exit_code);
                if let Some(list) = v.json["verified"].as_array() {
                    for r in list {
                        let mut r = r.clone();
                        r["store"] = json!(s.name);
                        verified.push(r);
                    }
                }
                if let Some(w) = v.json["warnings"].as_array() {
                    warnings.extend(w.iter().cloned());
                }
                per_store.push(json!({"store": s.name, "ok": v.exit_code == 0}));
            }
            Err(e) => {
                let why = match (&id, e.store_kind()) {
                    (Some(id), _) if e.to_string().contains("has no manifest") => {
                        format!("store {} has no copy of backup {id}", s.name)
                    }
                    _ => format!("store {}: {e}", s.name),
                };
                human.push_str(&format!("BAD {why}\n"));
                ctx.ui.warn(&why);
                let c = e.exit_code();
                code = code.max(if matches!(c, 3 | 4) { c } else { 1 });
                per_store.push(json!({"store": s.name, "ok": false, "error": why}));
            }
        }
    }
    Ok(Output {
        json: json!({"database": db, "verified": verified, "warnings": warnings, "stores": per_store}),
        human,
        exit_code: code,
    })
}

/// `verify` of the copies in one store: `id` (resolved over every store), else the
/// command's own selection resolved in this store.
async fn verify_store(
    ctx: &Ctx,
    name: &str,
    store: &pgdrill_store::Store,
    db: &pgdrill_core::ids::DbName,
    args: &VerifyArgs,
    id: Option<&str>,
) -> Result<Output> {
    let keys = ctx.decryption_keys()?;
    // A damaged manifest is an integrity failure of its backup: reported, exit 3.
    let mut damaged = Vec::new();
    let mut warnings = Vec::new();
    let manifests = if args.all {
        let listing = catalog::list(store, db).await?;
        damaged = listing.unreadable;
        listing.complete
    } else {
        let sel = id.unwrap_or(args.backup.as_deref().unwrap_or("latest"));
        let r = catalog::resolve(store, db, sel).await?;
        warnings = r.warnings;
        vec![r.manifest]
    };
    for w in &warnings {
        ctx.ui.warn(w);
    }
    let several = ctx.settings.stores.len() > 1;
    let at = if several {
        format!(" in store {name}")
    } else {
        String::new()
    };
    let mut results = Vec::new();
    let mut human = String::new();
    for (id, why) in &damaged {
        human.push_str(&format!("BAD {id} manifest.json{at}: {why}\n"));
        results.push(json!({"backup_id": id, "ok": false, "error": why}));
    }
    let mut code = if damaged.is_empty() { 0 } else { 3 };
    for m in &manifests {
        let progress = Progress::new();
        let _g = ctx.ui.progress(progress.clone());
        let opts = verify::ReadOpts {
            keys: keys.clone(),
            progress,
            cancel: ctx.cancel.clone(),
            parallel: 4,
        };
        let reading = readers::mark(store, db, &m.backup_id, "verify").await?;
        if let Some(w) = &reading.warning {
            ctx.ui.warn(w);
        }
        let checked = verify::verify(store, m, &opts).await;
        reading.release().await;
        let checked = match checked {
            Ok(c) => c,
            // With several stores, a corrupt copy is reported beside the other stores'.
            Err(e @ (pgdrill_core::Error::Integrity(_) | pgdrill_core::Error::Key(_)))
                if several =>
            {
                human.push_str(&format!("BAD {}{at}: {e}\n", m.backup_id));
                ctx.ui.warn(format!(
                    "backup {} of {db}{at} is corrupt: {e}",
                    m.backup_id
                ));
                results
                    .push(json!({"backup_id": m.backup_id, "ok": false, "error": e.to_string()}));
                code = code.max(e.exit_code());
                continue;
            }
            Err(e) => return Err(e),
        };
        for d in &checked {
            human.push_str(&format!(
                "ok  {} {}{at} ({} stored, {} raw, sha256 {})\n",
                m.backup_id,
                d.name,
                human_bytes(d.stored_bytes),
                human_bytes(d.raw_bytes),
                &d.stored_sha256[..16]
            ));
        }
        results.push(json!({"backup_id": m.backup_id, "objects": checked, "ok": true}));
    }
    for (id, why) in &damaged {
        ctx.ui.warn(format!(
            "backup {id} of {db}{at} has a damaged manifest and cannot be restored: {why}"
        ));
    }
    Ok(Output {
        json: json!({"verified": results, "warnings": warnings}),
        human,
        exit_code: code,
    })
}

pub async fn export(ctx: &Ctx, args: &ExportArgs) -> Result<Output> {
    let stores = ctx.read_stores()?;
    let db = ctx.one_database_of(&stores).await?;
    let src = ctx.source(&stores, &db, &args.backup, None).await?;
    let (store, store_name, r) = (src.store, src.name, src.resolved);
    for w in &r.warnings {
        ctx.ui.warn(w);
    }
    let (m, warnings) = (r.manifest, r.warnings);
    let keys = ctx.decryption_keys()?;
    let progress = Progress::new();
    let _g = ctx.ui.progress(progress.clone());
    let opts = verify::ReadOpts {
        keys,
        progress,
        cancel: ctx.cancel.clone(),
        parallel: 4,
    };
    let reading = readers::mark(store, &db, &m.backup_id, "export").await?;
    if let Some(w) = &reading.warning {
        ctx.ui.warn(w);
    }
    let d = verify::export(store, &m, &args.output, &opts).await;
    reading.release().await;
    let d = match d {
        Ok(d) => d,
        Err(e) => {
            return Err(pgdrill_core::stores::integrity_hint(e, &stores, store_name, &m).await)
        }
    };
    let human = format!(
        "wrote {} ({}) and {}.sha256; restore it with: pg_restore -d TARGET_URL {}\n",
        args.output.display(),
        human_bytes(d.raw_bytes),
        args.output.display(),
        args.output.display()
    );
    Ok(Output::ok(
        json!({"backup_id": m.backup_id, "file": args.output, "bytes": d.raw_bytes, "sha256": d.raw_sha256, "warnings": warnings, "store": store_name}),
        human,
    ))
}
