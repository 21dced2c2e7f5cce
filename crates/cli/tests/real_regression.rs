//! PostgreSQL's own regression database (what `make installcheck` leaves behind: nearly every
//! object kind there is) through every backup and restore path: a single-stream backup and a
//! `--jobs 2` directory-layout backup, each fanned out to a folder store and a real S3 server;
//! restored plainly, streamed with `--jobs 2` (both layouts, from S3), with `--spool`, through
//! `export` and the standard tools, and a few awkward tables alone with `restore --table`.
//! Every restore is compared with the source: schema-only dump, per-table row count and
//! content hash, sequences, large objects, grants and policies.
//!
//! The source, the targets and every tool pgdrill runs are PostgreSQL 15's: the database holds
//! C functions from the suite's `regress.so`, built for 15 (a server of another major cannot
//! load it).

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use std::path::{Path, PathBuf};

/// What pg_dump itself cannot round-trip, dropped from the source before the backups (a plain
/// `pg_dump | pg_restore` of the regression database changes exactly these):
/// - `gtestxx_4`, `test_type_diff2_c1`, `test_type_diff2_c2`: inheritance children whose own
///   column order differs from their parents' (columns added to the parent after the child was
///   created, or a child created with its columns in another order); pg_dump re-creates them
///   with the parent's columns first, so their column order (and `row::text`) changes.
const NOT_ROUND_TRIPPABLE: &str =
    "drop table public.gtestxx_4; drop table public.test_type_diff2_c1, public.test_type_diff2_c2";

/// Grants on tables, columns, functions, sequences and types, and the policies, as text. An
/// ACL equal to the owner's default is left out: pg_dump writes nothing for it, so a table
/// whose grants were revoked and granted back (the suite's `ec0`, `ec1`,
/// `fk_notpartitioned_pk`) restores with no ACL at all, which means the same.
const ACL: &str = "select string_agg(x, E'\\n' order by x) from ( \
    select format('%s %s %s', c.oid::regclass, c.relkind, c.relacl) x from pg_class c \
     where c.relacl is not null \
       and c.relacl <> acldefault((case when c.relkind = 'S' then 's' else 'r' end)::\"char\", c.relowner) \
       and c.relnamespace <> 'pg_catalog'::regnamespace \
       and c.relnamespace <> 'information_schema'::regnamespace \
    union all select format('%s.%s %s', a.attrelid::regclass, a.attname, a.attacl) \
      from pg_attribute a where a.attacl is not null \
       and a.attrelid >= 16384 \
    union all select format('%s %s', p.oid::regprocedure, p.proacl) from pg_proc p \
     where p.proacl is not null and p.proacl <> acldefault('f'::\"char\", p.proowner) \
       and p.pronamespace <> 'pg_catalog'::regnamespace \
       and p.pronamespace <> 'information_schema'::regnamespace \
    union all select format('%s %s', t.oid::regtype, t.typacl) from pg_type t \
     where t.typacl is not null and t.typacl <> acldefault('T'::\"char\", t.typowner) \
       and t.typnamespace <> 'pg_catalog'::regnamespace \
       and t.typnamespace <> 'information_schema'::regnamespace \
    union all select format('policy %s.%s %s %s %s %s %s', schemaname, tablename, policyname, \
      permissive, roles, cmd, coalesce(qual, '') || coalesce(with_check, '')) from pg_policies \
    union all select format('rls %s %s %s', oid::regclass, relrowsecurity, relforcerowsecurity) \
      from pg_class where relrowsecurity or relforcerowsecurity) g";

/// Awkward tables `restore --table` brings back alone: multi-level partitioned with dropped
/// columns in its partitions, an inheritance parent (its children come along), a table with
/// generated columns (and an inheritance child), one under row-level security with four
/// policies in its own schema, one whose column default calls `nextval` on a sequence it does
/// not own, one stored with another table access method (`USING heap2`), and one with
/// extended statistics.
const TABLES: [&str; 7] = [
    "public.mlparted",
    "public.a_star",
    "public.gtest1",
    "regress_rls_schema.rls_tbl",
    "public.defaultexpr_tbl",
    "public.tableam_tbl_heap2",
    "public.mcv_lists",
];

/// The shared sequence `defaultexpr_tbl`'s default uses: there, with its value.
const SHARED_SEQ: &str = "select last_value || ' ' || is_called from public.default_seq";
/// The extended statistics objects of the restored tables.
const EXT_STATS: &str = "select string_agg(stxname || ' ' || stxrelid::regclass::text || ' ' || \
    stxkind::text, ',' order by stxname) from pg_statistic_ext \
    where stxrelid = 'public.mcv_lists'::regclass";
/// The table access method of `tableam_tbl_heap2`.
const ACCESS_METHOD: &str =
    "select a.amname::text from pg_class c join pg_am a on a.oid = c.relam \
    where c.oid = 'public.tableam_tbl_heap2'::regclass";

fn pg15(tool: &str) -> PathBuf {
    tk::pg_bin_exact(tool, 15)
}

fn pg15_dir() -> String {
    pg15("pg_restore")
        .parent()
        .expect("bin dir")
        .display()
        .to_string()
}

async fn text(url: &str, sql: &str) -> String {
    let c = tk::connect(url).await;
    let row = c.query_one(sql, &[]).await.expect("query");
    row.get::<_, Option<String>>(0).unwrap_or_default()
}

/// Row count and content hash of `table` alone (`ONLY`: an inheritance parent without its
/// children), rows as `to_jsonb` (by column name).
async fn only_table(url: &str, table: &str) -> String {
    text(
        url,
        &format!(
            "select count(*) || ' ' || md5(coalesce(string_agg(r, E'\\n' order by r collate \"C\"), '')) \
             from (select to_jsonb(t)::text r from only {table} t) s"
        ),
    )
    .await
}

/// The fingerprint the restores are compared by: rows by column name (see
/// [`tk::regression::tables_by_column_name`]: pg_dump changes the column order of some
/// inheritance children).
async fn fingerprint(url: &str) -> tk::DbFingerprint {
    let mut f = tk::fingerprint(url, &pg15("pg_dump")).await;
    f.tables = tk::regression::tables_by_column_name(url, f.tables.keys()).await;
    f
}

/// Only the policy and row-level-security lines of an [`ACL`] answer: pgdrill restores with
/// `--no-owner --no-privileges` (its documented default for backups other than Supabase's).
fn policies_only(acl: &str) -> String {
    acl.lines()
        .filter(|l| l.starts_with("policy ") || l.starts_with("rls "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares `url` with the source: the fingerprint, and the policies (`grants`: the grants too).
async fn assert_same_db(
    what: &str,
    want: &tk::DbFingerprint,
    want_acl: &str,
    url: &str,
    grants: bool,
) {
    let got = fingerprint(url).await;
    let d = want.diff(&got);
    assert!(
        d.is_empty(),
        "{what}: differs from the source:\n{}",
        d.join("\n")
    );
    let acl = text(url, ACL).await;
    if grants {
        assert_eq!(acl, want_acl, "{what}: grants or policies");
    } else {
        assert_eq!(
            policies_only(&acl),
            policies_only(want_acl),
            "{what}: policies"
        );
    }
    eprintln!("{what}: same as the source");
}

fn manifest(store: &Path, id: &str) -> serde_json::Value {
    let m = std::fs::read(store.join(format!("regression/backups/{id}/manifest.json")))
        .expect("manifest");
    serde_json::from_slice(&m).expect("manifest json")
}

#[tokio::test(flavor = "multi_thread")]
async fn regression_database_round_trips_through_every_path() {
    let t0 = std::time::Instant::now();
    let reg = tk::regression_database().await;
    eprintln!(
        "regression database built in {:?} (tests whose output differed: {:?})",
        reg.took, reg.failed_tests
    );
    let src = reg.url.clone();
    tk::connect(&src)
        .await
        .batch_execute(NOT_ROUND_TRIPPABLE)
        .await
        .expect("drop what pg_dump cannot round-trip");
    let want = fingerprint(&src).await;
    let want_acl = text(&src, ACL).await;
    assert!(want.tables.len() > 300, "{} tables", want.tables.len());
    assert!(
        !want.large_objects.is_empty(),
        "the suite leaves large objects"
    );
    assert!(want_acl.contains("policy "), "{want_acl}");

    let s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let folder = d.join("local");
    std::fs::write(
        d.join("pgdrill.toml"),
        format!(
            "[[store]]\nname = \"local\"\nurl = \"{}\"\n\
             [[store]]\nname = \"s3\"\nurl = \"s3://backups/pg\"\n\
             [[database]]\nname = \"regression\"\nurl_env = \"SRC\"\n",
            folder.display()
        ),
    )
    .expect("config");
    let aws = s3.env();
    let pg_bin = pg15_dir();
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([("SRC", src.as_str()), ("PGDRILL_PG_BIN", pg_bin.as_str())]);

    // Two backups, each to both stores: one stream, then the directory layout.
    let backup = |extra: &[&str]| {
        let mut args = vec!["--json", "backup"];
        args.extend_from_slice(extra);
        let out = run(d, &args, &env);
        out.ok();
        out.json()["backups"][0]["backup_id"]
            .as_str()
            .expect("backup id")
            .to_string()
    };
    let single = backup(&[]);
    let layered = backup(&["--jobs", "2"]);
    assert_eq!(manifest(&folder, &layered)["layout"], "directory");
    assert_ne!(manifest(&folder, &single)["layout"], "directory");
    eprintln!("backups done at {:?}", t0.elapsed());

    let target = tk::cluster(Some(15));
    let restore = |id: &str, db: &str, extra: &[&str]| {
        let url = target.url(db);
        let mut args = vec!["--json", "restore", id, "--target", &url];
        args.extend_from_slice(extra);
        let out = run(d, &args, &env);
        out.ok();
        url
    };
    let paths: [(&str, &str, &str, &[&str]); 5] = [
        ("plain restore of the single stream", &single, "plain", &[]),
        (
            "streamed --jobs 2 restore of the single stream from S3",
            &single,
            "stream_single",
            &["--jobs", "2", "--from-store", "s3"],
        ),
        (
            "streamed --jobs 2 restore of the directory layout from S3",
            &layered,
            "stream_dir",
            &["--jobs", "2", "--from-store", "s3"],
        ),
        (
            "--spool --jobs 2 restore of the directory layout",
            &layered,
            "spool_dir",
            &["--jobs", "2", "--spool"],
        ),
        (
            "plain restore of the directory layout",
            &layered,
            "plain_dir",
            &[],
        ),
    ];
    for (what, id, db, extra) in paths {
        let url = restore(id, db, extra);
        assert_same_db(what, &want, &want_acl, &url, false).await;
    }
    eprintln!("restores done at {:?}", t0.elapsed());

    // export, then PostgreSQL's own tools only.
    for (id, file, db) in [
        (&single, "regression.pgc", "export_single"),
        (&layered, "regression.dir", "export_dir"),
    ] {
        let out = run(d, &["--json", "export", id, "-o", file], &env);
        out.ok();
        let check = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", &format!("{file}.sha256")])
            .current_dir(d)
            .output()
            .expect("sha256sum");
        assert!(check.status.success(), "{check:?}");
        let url = empty_db(&target, db).await;
        let (args, pw) = tk::conn_args(&url);
        let mut cmd = std::process::Command::new(pg15("pg_restore"));
        cmd.args(&args)
            .args(["--exit-on-error", "-j", "2"])
            .arg(d.join(file))
            .env_remove("PGPASSWORD");
        if let Some(pw) = pw {
            cmd.env("PGPASSWORD", pw);
        }
        let o = cmd.output().expect("pg_restore");
        assert!(
            o.status.success(),
            "pg_restore of the export {file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_db(
            &format!("export {file} + pg_restore"),
            &want,
            &want_acl,
            &url,
            true,
        )
        .await;
    }
    eprintln!("exports done at {:?}", t0.elapsed());

    // restore --table of awkward tables, from either layout.
    for (id, db) in [(&single, "tables_single"), (&layered, "tables_dir")] {
        let mut extra: Vec<&str> = Vec::new();
        for t in TABLES {
            extra.extend(["--table", t]);
        }
        let url = restore(id, db, &extra);
        for t in TABLES {
            assert_eq!(
                only_table(&url, t).await,
                only_table(&src, t).await,
                "{t} restored alone from {db}"
            );
        }
        // Partitions come along, each with its rows.
        for p in ["public.mlparted11", "public.mlparted_def1"] {
            assert_eq!(only_table(&url, p).await, only_table(&src, p).await, "{p}");
        }
        let policies = "select string_agg(policyname || ' ' || cmd || ' ' || roles::text, ',' \
                        order by policyname) from pg_policies where tablename = 'rls_tbl'";
        assert_eq!(text(&url, policies).await, text(&src, policies).await);
        for q in [SHARED_SEQ, EXT_STATS, ACCESS_METHOD] {
            assert_eq!(text(&url, q).await, text(&src, q).await, "{q} ({db})");
        }
    }
    // A database that already has the shared sequence is refused (exit 5), naming it.
    let seq_only = empty_db(&target, "seq_only").await;
    tk::connect(&seq_only)
        .await
        .batch_execute("create sequence public.default_seq")
        .await
        .expect("sequence");
    let url = target.url("seq_only");
    let out = run(
        d,
        &[
            "--json",
            "restore",
            &layered,
            "--table",
            "public.defaultexpr_tbl",
            "--target",
            &url,
        ],
        &env,
    );
    out.code(5);
    assert!(out.stderr.contains("public.default_seq"), "{}", out.stderr);
    // Beside the live tables, in a new schema: the shared sequence moves along with the table
    // whose default uses it.
    let out = run(
        d,
        &[
            "--json",
            "restore",
            &layered,
            "--table",
            "public.defaultexpr_tbl",
            "--table",
            "public.tableam_tbl_heap2",
            "--into-schema",
            "back",
            "--target",
            &src,
        ],
        &env,
    );
    out.ok();
    assert_eq!(
        text(
            &src,
            "select pg_get_expr(adbin, adrelid) from pg_attrdef \
             where adrelid = 'back.defaultexpr_tbl'::regclass \
             and pg_get_expr(adbin, adrelid) ~ 'nextval'"
        )
        .await,
        "nextval('back.default_seq'::regclass)"
    );
    for t in ["defaultexpr_tbl", "tableam_tbl_heap2"] {
        assert_eq!(
            only_table(&src, &format!("back.{t}")).await,
            only_table(&src, &format!("public.{t}")).await,
            "{t}"
        );
    }
    eprintln!("table restores done at {:?}", t0.elapsed());
}
