//! PostgreSQL's own regression database as a fixture: `pg_regress` runs PostgreSQL 15's
//! regression suite (`scripts/setup-test-deps.sh` unpacks it from the Debian source package of
//! the installed postgresql-15, and builds its `regress.so`) into database `regression` of a
//! throwaway PostgreSQL 15 cluster. What the suite leaves behind holds nearly every object kind
//! there is: partitioned and inherited tables, generated and dropped columns, domains, ranges,
//! operator classes, rules, policies, large objects, odd names, C functions from `regress.so`.
//!
//! A failing regression test (a result that differs from the expected output) does not fail
//! the build: what matters is the database left behind, which [`regression_database`] checks
//! is there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Cluster, SETUP_HINT, TEST_DEPS_ROOT};

/// The regression suite's sources, `regress.so` beside them.
pub fn regress_dir() -> PathBuf {
    Path::new(TEST_DEPS_ROOT).join("regress15")
}

/// PostgreSQL 15's `pg_regress` (Debian's postgresql-15 ships it in its pgxs tree).
fn pg_regress() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress")
}

/// The regression database and what building it took.
#[derive(Debug)]
pub struct RegressionDb {
    /// The PostgreSQL 15 cluster holding it (it dies with this value).
    pub cluster: Cluster,
    /// Superuser URL of database `regression`.
    pub url: String,
    /// Regression tests whose output differed from the expected (their objects may be partial).
    pub failed_tests: Vec<String>,
    /// Wall time of the suite.
    pub took: Duration,
}

/// Starts a PostgreSQL 15 cluster and runs the regression suite (`parallel_schedule`, at most
/// two sessions at once: the CI machine has two cores) into its database `regression`.
/// Panics when the suite, `regress.so` or `pg_regress` is missing, or when the database is not
/// left behind with its objects.
pub async fn regression_database() -> RegressionDb {
    let dir = regress_dir();
    for need in [
        dir.join(".complete"),
        dir.join("regress.so"),
        dir.join("parallel_schedule"),
        pg_regress(),
    ] {
        assert!(
            need.exists(),
            "the regression-database fixture needs {} and it is missing: {SETUP_HINT}",
            need.display()
        );
    }
    let cluster = crate::cluster(Some(15));
    crate::connect(&cluster.url("postgres"))
        .await
        .batch_execute("create database regression")
        .await
        .unwrap_or_else(|e| panic!("create database regression failed: {e}"));

    // pg_regress writes results/ here, and the server (another OS user when the tests run as
    // root) writes COPY TO files into results/ too.
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let results = out.path().join("results");
    std::fs::create_dir(&results).unwrap_or_else(|e| panic!("results dir: {e}"));
    for p in [out.path(), results.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    }
    let start = Instant::now();
    let bindir = cluster.install().bin_dir.clone();
    let mut cmd = tokio::process::Command::new(pg_regress());
    cmd.arg("--use-existing")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", cluster.port()))
        .arg(format!("--user={}", cluster.superuser()))
        .arg("--dbname=regression")
        .arg(format!("--inputdir={}", dir.display()))
        .arg(format!("--outputdir={}", out.path().display()))
        .arg(format!("--dlpath={}", dir.display()))
        .arg(format!("--bindir={}", bindir.display()))
        .arg(format!(
            "--schedule={}",
            dir.join("parallel_schedule").display()
        ))
        .arg("--max-connections=2")
        .env("PGPASSWORD", cluster.password())
        .current_dir(out.path())
        .stdin(std::process::Stdio::null());
    let run = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} failed: {e}", pg_regress().display()));
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let failed_tests: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("FAILED"))
        .filter_map(|l| {
            l.trim_start_matches(|c: char| !c.is_alphanumeric())
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect();
    assert!(
        stdout.contains("tests passed") || stdout.contains("tests failed"),
        "pg_regress did not run the suite ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    let url = cluster.url("regression");
    let c = crate::connect(&url).await;
    let relations: i64 = c
        .query_one(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname not in ('pg_catalog', 'information_schema') \
               and n.nspname !~ '^pg_toast'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("counting the regression database's relations: {e}"))
        .get(0);
    assert!(
        relations > 500,
        "the regression suite left only {relations} relations behind (failed: {failed_tests:?})"
    );
    RegressionDb {
        cluster,
        url,
        failed_tests,
        took,
    }
}

/// Per-table row count and content hash with each row as `to_jsonb(row)` (keys sorted, so
/// independent of the physical column order), for every table [`crate::fingerprint`] lists.
///
/// pg_dump re-creates an inheritance child whose parent gained columns after the child was
/// made (the suite's `b_star` … `f_star`, `test_type_diff_c`) with the inherited columns
/// first: the same columns and values, another physical order, so `row::text` differs.
pub async fn tables_by_column_name(
    url: &str,
    tables: impl IntoIterator<Item = &String>,
) -> std::collections::BTreeMap<String, crate::TableFingerprint> {
    let c = crate::connect(url).await;
    c.batch_execute(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 1; SET bytea_output = 'hex'",
    )
    .await
    .unwrap_or_else(|e| panic!("session setup failed: {e}"));
    let mut out = std::collections::BTreeMap::new();
    for name in tables {
        let q = format!(
            "SELECT count(*)::int8, md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), '')) \
             FROM (SELECT to_jsonb(t)::text AS r FROM {name} t) s"
        );
        let row = c
            .query_one(q.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("reading {name} failed: {e}"));
        out.insert(
            name.clone(),
            crate::TableFingerprint {
                rows: row.get(0),
                md5: row.get(1),
            },
        );
    }
    out
}
