//! `pgdrill copy`: backfills one configured store from another
//! ([`pgdrill_core::copy`]); prints what was copied and skipped.

use super::Output;
use crate::context::Ctx;
use crate::ui::human_bytes;
use pgdrill_core::copy::{self, CopyJob, NamedStore, Selection};
use pgdrill_core::{Error, Result};
use serde_json::json;

pub async fn run(ctx: &Ctx, args: &crate::cli::CopyArgs) -> Result<Output> {
    let stores = ctx.stores()?;
    let names = || {
        stores
            .iter()
            .map(|(s, _)| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |name: &str| {
        stores.iter().find(|(s, _)| s.name == name).ok_or_else(|| {
            Error::Invalid(format!(
                "no store is named {name:?}: use one of the [[store]] names in the config ({})",
                names()
            ))
        })
    };
    let (to_settings, to) = find(&args.to)?;
    let (from_settings, from) = match &args.from {
        Some(n) => find(n)?,
        None => stores
            .iter()
            .find(|(s, _)| s.name != args.to)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "only one store is configured ({}): add the other as a [[store]] entry in the config",
                    names()
                ))
            })?,
    };
    if from_settings.name == to_settings.name {
        return Err(Error::Invalid(format!(
            "--from and --to both name store {:?}: copy from another store",
            to_settings.name
        )));
    }
    let (selection, databases) = if args.all {
        (Selection::All, ctx.databases_to_list(from).await?)
    } else {
        let sel = args.backup.clone().unwrap_or_else(|| "latest".into());
        (Selection::One(sel), vec![ctx.one_database(from).await?])
    };
    ctx.ui.info(format!(
        "copying from store {} ({}) to store {} ({})",
        from_settings.name,
        from.display(),
        to_settings.name,
        to.display()
    ));
    let job = CopyJob {
        from: NamedStore {
            name: &from_settings.name,
            store: from,
        },
        to: NamedStore {
            name: &to_settings.name,
            store: to,
        },
        databases,
        selection,
        part_size: to_settings.part_size,
        max_in_flight: to_settings.max_in_flight,
        cancel: ctx.cancel.clone(),
        // Leases live in the primary (first) store, as for backups and prunes.
        lease_store: stores.first().map(|(_, s)| s),
    };
    let report = copy::run(&job).await?;
    let mut human = String::new();
    for c in &report.copied {
        human.push_str(&format!(
            "{} {}: copied ({} objects, {})\n",
            c.database,
            c.backup_id,
            c.objects,
            human_bytes(c.bytes)
        ));
    }
    for d in &report.drills {
        human.push_str(&format!(
            "{} drill {}: evidence copied ({} files)\n",
            d.database, d.drill_id, d.files
        ));
    }
    for s in &report.skipped {
        human.push_str(&format!("{} {}: {}\n", s.database, s.backup_id, s.reason));
    }
    for (db, id, e) in &report.failures {
        let id = id.as_ref().map(|i| i.to_string()).unwrap_or_default();
        ctx.ui.warn(format!("{db} {id}: {e}"));
    }
    if report.copied.is_empty()
        && report.skipped.is_empty()
        && report.failures.is_empty()
        && report.drills.is_empty()
    {
        human.push_str("nothing to copy\n");
    }
    // The first failure's exit code (3 for an object that does not match its manifest).
    let exit_code = report
        .failures
        .first()
        .map(|(_, _, e)| e.exit_code())
        .unwrap_or(0);
    let failures: Vec<_> = report
        .failures
        .iter()
        .map(|(db, id, e)| {
            json!({"database": db, "backup_id": id, "error": e.to_string(), "exit_code": e.exit_code()})
        })
        .collect();
    Ok(Output {
        exit_code,
        json: json!({
            "from": from_settings.name,
            "to": to_settings.name,
            "copied": report.copied,
            "skipped": report.skipped,
            "drills": report.drills,
            "failures": failures,
        }),
        human,
    })
}
