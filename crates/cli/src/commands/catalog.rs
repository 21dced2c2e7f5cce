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
    let store = ctx.store()?;
    let mut all: Vec<Manifest> = Vec::new();
    for db in ctx.databases_to_list(&store).await? {
        let listing = catalog::cache::list(&store, &db).await?;
        for (id, reason) in &listing.unreadable {
            ctx.ui
                .warn(format!("backup {id} of {db} is not listed: {reason}"));
        }
        all.extend(listing.complete);
    }
    all.sort_by(|a, b| {
        (b.snapshot.time.as_str(), &b.backup_id).cmp(&(a.snapshot.time.as_str(), &a.backup_id))
    });
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
        })
        .collect();
    let human = if rows.is_empty() {
        format!("no complete backups in {}\n", store.display())
    } else {
        table(
            &[
                "ID",
                "DATABASE",
                "SNAPSHOT",
                "RAW",
                "STORED",
                "TABLES",
                "ENCRYPTED",
            ],
            &rows,
        )
    };
    let backups: Vec<_> = all.iter().map(pgdrill_core::summary::backup).collect();
    Ok(Output::ok(json!({ "backups": backups }), human))
}

pub async fn show(ctx: &Ctx, args: &SelectArgs) -> Result<Output> {
    let store = ctx.store()?;
    let db = ctx.one_database(&store).await?;
    let r = catalog::resolve(&store, &db, &args.backup).await?;
    for w in &r.warnings {
        ctx.ui.warn(w);
    }
    let json = serde_json::to_value(&r.manifest).unwrap_or_default();
    Ok(Output::ok(
        json,
        render_manifest(&r.manifest, &ctx.settings.schedule.tz),
    ))
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
    let store = ctx.store()?;
    let db = ctx.one_database(&store).await?;
    let keys = ctx.decryption_keys()?;
    // A damaged manifest is an integrity failure of its backup: reported, exit 3.
    let mut damaged = Vec::new();
    let mut warnings = Vec::new();
    let manifests = if args.all {
        let listing = catalog::list(&store, &db).await?;
        damaged = listing.unreadable;
        listing.complete
    } else {
        let r = catalog::resolve(&store, &db, args.backup.as_deref().unwrap_or("latest")).await?;
        warnings = r.warnings;
        vec![r.manifest]
    };
    for w in &warnings {
        ctx.ui.warn(w);
    }
    let mut results = Vec::new();
    let mut human = String::new();
    for (id, why) in &damaged {
        human.push_str(&format!("BAD {id} manifest.json: {why}\n"));
        results.push(json!({"backup_id": id, "ok": false, "error": why}));
    }
    for m in &manifests {
        let progress = Progress::new();
        let _g = ctx.ui.progress(progress.clone());
        let opts = verify::ReadOpts {
            keys: keys.clone(),
            progress,
            cancel: ctx.cancel.clone(),
            parallel: 4,
        };
        let reading = readers::mark(&store, &db, &m.backup_id, "verify").await?;
        if let Some(w) = &reading.warning {
            ctx.ui.warn(w);
        }
        let checked = verify::verify(&store, m, &opts).await;
        reading.release().await;
        let checked = checked?;
        for d in &checked {
            human.push_str(&format!(
                "ok  {} {} ({} stored, {} raw, sha256 {})\n",
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
            "backup {id} of {db} has a damaged manifest and cannot be restored: {why}"
        ));
    }
    Ok(Output {
        json: json!({"database": db, "verified": results, "warnings": warnings}),
        human,
        exit_code: if damaged.is_empty() { 0 } else { 3 },
    })
}

pub async fn export(ctx: &Ctx, args: &ExportArgs) -> Result<Output> {
    let store = ctx.store()?;
    let db = ctx.one_database(&store).await?;
    let r = catalog::resolve(&store, &db, &args.backup).await?;
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
    let reading = readers::mark(&store, &db, &m.backup_id, "export").await?;
    if let Some(w) = &reading.warning {
        ctx.ui.warn(w);
    }
    let d = verify::export(&store, &m, &args.output, &opts).await;
    reading.release().await;
    let d = d?;
    let human = format!(
        "wrote {} ({}) and {}.sha256; restore it with: pg_restore -d TARGET_URL {}\n",
        args.output.display(),
        human_bytes(d.raw_bytes),
        args.output.display(),
        args.output.display()
    );
    Ok(Output::ok(
        json!({"backup_id": m.backup_id, "file": args.output, "bytes": d.raw_bytes, "sha256": d.raw_sha256, "warnings": warnings}),
        human,
    ))
}
