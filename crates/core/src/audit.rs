//! Optional audit row in the source database after each backup (seed 000: `AuditLog`,
//! `entityType = DatabaseBackup`). Best effort: a failure is reported, never fails the backup.
//! Values travel as one bound JSON parameter; the server casts each to its column's type via
//! `json_populate_record`, and only the configured columns are inserted so defaults apply.

use crate::manifest::Manifest;
use pgdrill_pg::client::{self, quote_ident};
use pgdrill_pg::ConnSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// `Table` or `schema.Table`.
    pub table: String,
    /// column → value template with `{backup_id}`, `{database}`, `{raw_bytes}`,
    /// `{stored_bytes}`, `{snapshot_time}`, `{finished_at}`, `{summary_json}`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

fn default_columns() -> BTreeMap<String, String> {
    [
        ("entityType", "DatabaseBackup"),
        ("entityId", "{backup_id}"),
        ("action", "backup.completed"),
        ("metadata", "{summary_json}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn render(template: &str, m: &Manifest) -> String {
    let summary = serde_json::json!({
        "backup_id": m.backup_id, "database": m.database, "raw_bytes": m.raw_bytes,
        "stored_bytes": m.stored_bytes, "snapshot_time": m.snapshot.time, "tables": m.content.tables.len(),
    });
    template
        .replace("{backup_id}", m.backup_id.as_str())
        .replace("{database}", m.database.as_str())
        .replace("{raw_bytes}", &m.raw_bytes.to_string())
        .replace("{stored_bytes}", &m.stored_bytes.to_string())
        .replace("{snapshot_time}", &m.snapshot.time)
        .replace("{finished_at}", &m.finished_at)
        .replace("{summary_json}", &summary.to_string())
}

/// Inserts the audit row; returns a one-line error on failure.
pub async fn write(source: &ConnSpec, cfg: &AuditSection, m: &Manifest) -> Result<(), String> {
    let columns = if cfg.columns.is_empty() {
        default_columns()
    } else {
        cfg.columns.clone()
    };
    let (schema, table) = crate::ids::split_table(&cfg.table);
    let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
    let cols: Vec<String> = columns.keys().map(|c| quote_ident(c)).collect();
    // A rendered JSON object (e.g. {summary_json}) goes in as JSON, so a json/jsonb column
    // gets an object; text columns receive its text either way.
    let values: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|(k, v)| {
            let text = render(v, m);
            let value = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(j) if j.is_object() => j,
                _ => serde_json::Value::String(text),
            };
            (k.clone(), value)
        })
        .collect();
    let sql = format!(
        "insert into {qualified} ({cols}) select {cols} from json_populate_record(null::{qualified}, $1::text::json)",
        cols = cols.join(", ")
    );
    let c = client::connect(source).await.map_err(|e| e.to_string())?;
    let param = serde_json::Value::Object(values).to_string();
    c.execute(&sql, &[&param])
        .await
        .map_err(|e| client::describe(&e))?;
    Ok(())
}
