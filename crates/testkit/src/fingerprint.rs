//! The fidelity oracle: what a database holds, reduced to values that two databases share exactly
//! when one is a faithful copy of the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Row count and content hash of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFingerprint {
    pub rows: i64,
    /// md5 of the table's rows as text (`row::text`), sorted bytewise, joined by newlines.
    pub md5: String,
}

/// A sequence's state as `pg_dump` saves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceState {
    pub last_value: i64,
    pub is_called: bool,
}

/// Everything [`fingerprint`] compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbFingerprint {
    /// `pg_dump --schema-only --no-owner --no-privileges`, without comments, blank lines, `SET`
    /// and `set_config` lines and `\restrict`/`\unrestrict` (random per run in newer pg_dump).
    pub schema: Vec<String>,
    /// `"schema"."table"` (quoted) to its content.
    pub tables: BTreeMap<String, TableFingerprint>,
    /// `"schema"."sequence"` to its state (identity sequences included).
    pub sequences: BTreeMap<String, SequenceState>,
    /// Large object OID to the md5 of its content.
    pub large_objects: BTreeMap<u32, String>,
}

impl DbFingerprint {
    /// Human-readable differences between `self` (expected) and `other` (actual); empty when
    /// they are the same.
    pub fn diff(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema != other.schema {
            out.push("schema differs (- expected only, + actual only):".to_string());
            out.extend(schema_diff(&self.schema, &other.schema, 60));
        }
        diff_maps(&mut out, "table", &self.tables, &other.tables, |a| {
            format!("{} rows, md5 {}", a.rows, a.md5)
        });
        diff_maps(
            &mut out,
            "sequence",
            &self.sequences,
            &other.sequences,
            |s| format!("last_value {}, is_called {}", s.last_value, s.is_called),
        );
        diff_maps(
            &mut out,
            "large object",
            &self.large_objects,
            &other.large_objects,
            |h| format!("md5 {h}"),
        );
        out
    }

    /// Panics with a readable diff unless `other` holds the same schema, rows, sequences and
    /// large objects.
    pub fn assert_same(&self, other: &Self) {
        let d = self.diff(other);
        if !d.is_empty() {
            panic!(
                "databases differ ({} difference lines):\n{}",
                d.len(),
                d.join("\n")
            );
        }
    }

    /// Total rows over all tables.
    pub fn total_rows(&self) -> i64 {
        self.tables.values().map(|t| t.rows).sum()
    }
}

fn diff_maps<K: Ord + std::fmt::Display, V: PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    show: impl Fn(&V) -> String,
) {
    for (k, va) in a {
        match b.get(k) {
            None => out.push(format!(
                "{what} {k}: missing in actual (expected {})",
                show(va)
            )),
            Some(vb) if vb != va => out.push(format!(
                "{what} {k}: expected {}, actual {}",
                show(va),
                show(vb)
            )),
            Some(_) => {}
        }
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            out.push(format!("{what} {k}: unexpected in actual ({})", show(vb)));
        }
    }
}

/// A line diff by longest common subsequence (fallback for huge inputs: first divergence).
fn schema_diff(a: &[String], b: &[String], limit: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if a.len().saturating_mul(b.len()) > 25_000_000 {
        let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        lines.push(format!("  first difference at line {}:", i + 1));
        if let Some(x) = a.get(i) {
            lines.push(format!("- {x}"));
        }
        if let Some(y) = b.get(i) {
            lines.push(format!("+ {y}"));
        }
        return lines;
    }
    // lcs[i][j] = LCS length of a[i..] and b[j..]
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut shown = 0usize;
    let mut total = 0usize;
    let mut push = |lines: &mut Vec<String>, s: String| {
        total += 1;
        if shown < limit {
            lines.push(s);
            shown += 1;
        }
    };
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            push(&mut lines, format!("+ {}", b[j]));
            j += 1;
        } else {
            push(&mut lines, format!("- {}", a[i]));
            i += 1;
        }
    }
    if total > shown {
        lines.push(format!("  ... and {} more changed lines", total - shown));
    }
    lines
}

/// Whether a `pg_dump` output line carries no schema information.
fn is_noise(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.starts_with("--")
        || t.starts_with("SET ")
        || t.contains("set_config(")
        || t.starts_with("\\restrict")
        || t.starts_with("\\unrestrict")
}

/// Normalizes a schema-only dump as the oracle compares it.
pub fn normalize_schema(dump: &str) -> Vec<String> {
    dump.lines()
        .filter(|l| !is_noise(l))
        .map(|l| l.trim_end().to_string())
        .collect()
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Fingerprints the database at `url` (schema via `pg_dump` at `pg_dump`, the rest by queries).
/// Panics on any error: it is a test oracle.
pub async fn fingerprint(url: &str, pg_dump: &Path) -> DbFingerprint {
    let schema = schema_dump(url, pg_dump).await;
    let client = crate::connect(url).await;
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 1; SET bytea_output = 'hex'; \
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )
        .await
        .unwrap_or_else(|e| panic!("fingerprint: session setup failed: {e}"));

    let user_rels = |kind: &str| {
        format!(
            "SELECT n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = '{kind}' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1, 2"
        )
    };

    let mut tables = BTreeMap::new();
    let rows = client
        .query(user_rels("r").as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("fingerprint: listing tables failed: {e}"));
    for r in rows {
        let (nsp, rel): (String, String) = (r.get(0), r.get(1));
        let name = format!("{}.{}", quote_ident(&nsp), quote_ident(&rel));
        let q = format!(
            "SELECT count(*)::int8, md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), '')) \
             FROM (SELECT t::text AS r FROM {name} t) s"
        );
        let row = client
            .query_one(q.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("fingerprint: reading {name} failed: {e}"));
        tables.insert(
            name,
            TableFingerprint {
                rows: row.get(0),
                md5: row.get(1),
            },
        );
    }

    let mut sequences = BTreeMap::new();
    let rows = client
        .query(user_rels("S").as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("fingerprint: listing sequences failed: {e}"));
    for r in rows {
        let (nsp, rel): (String, String) = (r.get(0), r.get(1));
        let name = format!("{}.{}", quote_ident(&nsp), quote_ident(&rel));
        let q = format!("SELECT last_value::int8, is_called FROM {name}");
        let row = client
            .query_one(q.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("fingerprint: reading sequence {name} failed: {e}"));
        sequences.insert(
            name,
            SequenceState {
                last_value: row.get(0),
                is_called: row.get(1),
            },
        );
    }

    let mut large_objects = BTreeMap::new();
    let rows = client
        .query(
            "SELECT oid::int8, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("fingerprint: reading large objects failed: {e}"));
    for r in rows {
        let oid: i64 = r.get(0);
        let oid = u32::try_from(oid).unwrap_or_else(|_| panic!("large object oid {oid}"));
        large_objects.insert(oid, r.get::<_, String>(1));
    }
    let _ = client.batch_execute("COMMIT").await;

    DbFingerprint {
        schema,
        tables,
        sequences,
        large_objects,
    }
}

async fn schema_dump(url: &str, pg_dump: &Path) -> Vec<String> {
    let (args, password) = crate::conn_args(url);
    let mut cmd = tokio::process::Command::new(pg_dump);
    cmd.args(["--schema-only", "--no-owner", "--no-privileges"])
        .args(&args)
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::null());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("fingerprint: running {} failed: {e}", pg_dump.display()));
    if !out.status.success() {
        let mut msg = String::new();
        let _ = write!(
            msg,
            "fingerprint: {} --schema-only failed ({}): {}",
            pg_dump.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        panic!("{msg}");
    }
    normalize_schema(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dump_noise() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\\restrict abc123\n\nSET statement_timeout = 0;\n\
                    SELECT pg_catalog.set_config('search_path', '', false);\n\
                    CREATE TABLE public.t (\n    id integer\n);   \n\\unrestrict abc123\n";
        assert_eq!(
            normalize_schema(dump),
            vec!["CREATE TABLE public.t (", "    id integer", ");"]
        );
    }

    #[test]
    fn diff_is_readable() {
        let a = DbFingerprint {
            schema: vec!["A".into(), "B".into(), "C".into()],
            tables: BTreeMap::from([(
                "t".to_string(),
                TableFingerprint {
                    rows: 1,
                    md5: "x".into(),
                },
            )]),
            sequences: BTreeMap::new(),
            large_objects: BTreeMap::from([(1, "h".to_string())]),
        };
        let mut b = a.clone();
        assert!(a.diff(&b).is_empty());
        b.schema[1] = "B2".into();
        b.tables.insert(
            "t".into(),
            TableFingerprint {
                rows: 2,
                md5: "y".into(),
            },
        );
        b.large_objects.clear();
        let d = a.diff(&b).join("\n");
        assert!(d.contains("- B") && d.contains("+ B2"), "{d}");
        assert!(d.contains("table t: expected 1 rows"), "{d}");
        assert!(d.contains("large object 1: missing in actual"), "{d}");
        let r = std::panic::catch_unwind(|| a.assert_same(&b));
        assert!(r.is_err());
    }
}
