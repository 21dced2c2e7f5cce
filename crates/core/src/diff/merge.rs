//! Both sides of a diff read in key order through server-side cursors (a batch of rows at a
//! time) and merged: memory stays the same whatever the table's size.
//!
//! Each row is read as `(k, h, r)`: `r` its `to_jsonb` text (keys sorted, so the column
//! order of either table does not matter), `h` the md5 of `r`, `k` the primary key as a JSON
//! array's text, or `h` itself for a table without one. Both sides sort by `k COLLATE "C"`,
//! byte order, which is how Rust compares the strings, so the merge agrees with the servers.

use crate::{Error, Result};
use pgdrill_pg::client::{self, quote_ident, quote_literal};
use pgdrill_pg::ConnSpec;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::io::Write;

/// Rows fetched per round trip.
const BATCH: usize = 5000;

/// One side: a table in a database.
#[derive(Clone, Debug)]
pub struct Side {
    pub spec: ConnSpec,
    pub schema: String,
    pub table: String,
}

impl Side {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

pub(super) struct Row {
    pub k: String,
    pub h: String,
    pub r: String,
}

/// A cursor over one side, in key order.
pub(super) struct Reader {
    client: tokio_postgres::Client,
    buf: VecDeque<Row>,
    done: bool,
    pub rows: u64,
}

fn failed(side: &Side, what: &str, e: &tokio_postgres::Error) -> Error {
    Error::Failed(format!(
        "cannot {what} {}.{} on {}: {}",
        side.schema,
        side.table,
        side.spec.redacted(),
        client::describe(e)
    ))
}

impl Reader {
    pub(super) async fn open(side: &Side, key: &[String]) -> Result<Reader> {
        let client = client::connect(&side.spec).await?;
        let k = if key.is_empty() {
            "md5(to_jsonb(t)::text)".to_string()
        } else {
            let cols: Vec<String> = key
                .iter()
                .map(|c| format!("t.{}", quote_ident(c)))
                .collect();
            format!("jsonb_build_array({})::text", cols.join(", "))
        };
        let sql = format!(
            "begin transaction isolation level repeatable read read only; \
             declare pgdrill_diff no scroll cursor for \
             select k collate \"C\" as k, md5(r) as h, r from \
             (select {k} as k, to_jsonb(t)::text as r from {} t) x order by 1",
            side.qualified()
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| failed(side, "read", &e))?;
        Ok(Reader {
            client,
            buf: VecDeque::new(),
            done: false,
            rows: 0,
        })
    }

    pub(super) async fn next(&mut self, side: &Side) -> Result<Option<Row>> {
        if self.buf.is_empty() && !self.done {
            let rows = self
                .client
                .query(&format!("fetch {BATCH} from pgdrill_diff"), &[])
                .await
                .map_err(|e| failed(side, "read", &e))?;
            self.done = rows.len() < BATCH;
            for r in rows {
                self.buf.push_back(Row {
                    k: r.get(0),
                    h: r.get(1),
                    r: r.get(2),
                });
            }
        }
        let row = self.buf.pop_front();
        self.rows += u64::from(row.is_some());
        Ok(row)
    }
}

/// The primary key's columns of `side`'s table, in key order (empty: none).
pub(super) async fn primary_key(side: &Side) -> Result<Vec<String>> {
    let c = client::connect(&side.spec).await?;
    let rows = c
        .query(
            "select a.attname::text from pg_index i \
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) \
             where i.indrelid = $1::text::regclass and i.indisprimary \
             order by array_position(i.indkey::int2[], a.attnum)",
            &[&side.qualified()],
        )
        .await
        .map_err(|e| failed(side, "look up the primary key of", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The columns an UPDATE may set (not dropped, not generated).
pub(super) async fn columns(side: &Side) -> Result<Vec<String>> {
    let c = client::connect(&side.spec).await?;
    let rows = c
        .query(
            "select attname::text from pg_attribute where attrelid = $1::text::regclass \
             and attnum > 0 and not attisdropped and attgenerated = '' order by attnum",
            &[&side.qualified()],
        )
        .await
        .map_err(|e| failed(side, "read the columns of", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What the merge found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub rows_from: u64,
    pub rows_to: u64,
    /// In `to`, not in `from`.
    pub added: u64,
    /// In `from`, not in `to`.
    pub removed: u64,
    /// Same key, other values (tables with a primary key).
    pub changed: u64,
    pub unchanged: u64,
    pub samples: Samples,
}

/// The first rows of each kind (`r` parsed), for people.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Samples {
    pub added: Vec<serde_json::Value>,
    pub removed: Vec<serde_json::Value>,
    pub changed: Vec<serde_json::Value>,
}

/// Statements that turn `to` back into `from` (written as the merge goes).
pub(super) struct SqlOut<'a> {
    pub w: &'a mut dyn Write,
    /// The table the statements change (the `to` side's).
    pub table: String,
    pub key: Vec<String>,
    pub columns: Vec<String>,
}

impl SqlOut<'_> {
    fn record(&self, r: &str) -> String {
        format!(
            "jsonb_populate_record(null::{}, {})",
            self.table,
            quote_literal(r)
        )
    }

    fn key_match(&self, r: &str) -> String {
        let cols: Vec<String> = self.key.iter().map(|c| quote_ident(c)).collect();
        let cols = cols.join(", ");
        format!("({cols}) = (select {cols} from {})", self.record(r))
    }

    fn insert(&mut self, r: &str) -> std::io::Result<()> {
        writeln!(
            self.w,
            "insert into {} select * from {};",
            self.table,
            self.record(r)
        )
    }

    fn delete(&mut self, row: &Row) -> std::io::Result<()> {
        if self.key.is_empty() {
            return writeln!(
                self.w,
                "delete from {t} where ctid = (select ctid from {t} x where md5(to_jsonb(x)::text) = {} limit 1);",
                quote_literal(&row.h),
                t = self.table
            );
        }
        writeln!(
            self.w,
            "delete from {} where {};",
            self.table,
            self.key_match(&row.r)
        )
    }

    fn update(&mut self, from: &str) -> std::io::Result<()> {
        let cols: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        let cols = cols.join(", ");
        writeln!(
            self.w,
            "update {} set ({cols}) = (select {cols} from {}) where {};",
            self.table,
            self.record(from),
            self.key_match(from)
        )
    }
}

fn json(r: &str) -> serde_json::Value {
    serde_json::from_str(r).unwrap_or_else(|_| serde_json::Value::String(r.to_string()))
}

/// Merges `from` and `to` in key order.
pub(super) async fn merge(
    from: (&Side, &mut Reader),
    to: (&Side, &mut Reader),
    samples: usize,
    mut sql: Option<SqlOut<'_>>,
) -> Result<Counts> {
    let (fs, fr) = from;
    let (ts, tr) = to;
    let io = |e: std::io::Error| Error::Failed(format!("cannot write the SQL file: {e}"));
    let mut c = Counts::default();
    let mut a = fr.next(fs).await?;
    let mut b = tr.next(ts).await?;
    loop {
        let order = match (&a, &b) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.k.as_bytes().cmp(y.k.as_bytes()),
        };
        match order {
            Ordering::Less => {
                if let Some(x) = a.take() {
                    c.removed += 1;
                    if c.samples.removed.len() < samples {
                        c.samples.removed.push(json(&x.r));
                    }
                    if let Some(s) = sql.as_mut() {
                        s.insert(&x.r).map_err(io)?;
                    }
                }
                a = fr.next(fs).await?;
            }
            Ordering::Greater => {
                if let Some(y) = b.take() {
                    c.added += 1;
                    if c.samples.added.len() < samples {
                        c.samples.added.push(json(&y.r));
                    }
                    if let Some(s) = sql.as_mut() {
                        s.delete(&y).map_err(io)?;
                    }
                }
                b = tr.next(ts).await?;
            }
            Ordering::Equal => {
                if let (Some(x), Some(y)) = (a.take(), b.take()) {
                    if x.h == y.h {
                        c.unchanged += 1;
                    } else {
                        c.changed += 1;
                        if c.samples.changed.len() < samples {
                            c.samples
                                .changed
                                .push(serde_json::json!({"from": json(&x.r), "to": json(&y.r)}));
                        }
                        if let Some(s) = sql.as_mut() {
                            s.update(&x.r).map_err(io)?;
                        }
                    }
                }
                a = fr.next(fs).await?;
                b = tr.next(ts).await?;
            }
        }
    }
    c.rows_from = fr.rows;
    c.rows_to = tr.rows;
    Ok(c)
}
