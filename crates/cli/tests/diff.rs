//! `pgdrill diff`: exact counts of rows added, removed and changed on a known change set, by
//! primary key and (without one) by whole-row hash; the `--sql` file puts the live table
//! back; two backups compared in a throwaway cluster. One source cluster for the file.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;

const ITEMS_SQL: &str = "
create schema app;
create table app.items (id int primary key, name text not null, qty int);
insert into app.items select g, 'item ' || g, g % 50 from generate_series(1, 20000) g;
create table app.log (at int, msg text);
insert into app.log select g % 40, 'line ' || (g % 40) from generate_series(1, 2000) g;
create table public.filler (id int primary key, t text);
insert into public.filler select g, repeat(md5(g::text), 4) from generate_series(1, 60000) g;
";

/// 5 added, 10 removed, 20 changed in items; in log 3 rows added, 2 removed.
const CHANGES_SQL: &str = "
insert into app.items select g, 'new ' || g, 1 from generate_series(30001, 30005) g;
delete from app.items where id between 101 and 110;
update app.items set qty = qty + 1000 where id between 201 and 220;
insert into app.log values (1, 'extra'), (1, 'extra'), (2, 'line 2');
delete from app.log where ctid in (select ctid from app.log where at = 7 limit 2);
";

async fn hash(url: &str, table: &str, order: &str) -> String {
    scalar(
        url,
        &format!("select md5(string_agg(t::text, ',' order by {order})) from {table} t"),
    )
    .await
}

fn counts(j: &serde_json::Value) -> (u64, u64, u64) {
    let n = |k: &str| j[k].as_u64().unwrap_or_else(|| panic!("{k}: {j}"));
    (n("added"), n("removed"), n("changed"))
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_counts_exactly_and_its_sql_puts_the_table_back() {
    let cluster = tk::cluster(None);
    let src = empty_db(&cluster, "stock").await;
    let c = tk::connect(&src).await;
    c.batch_execute(ITEMS_SQL).await.expect("items");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let first = backup(dir.path(), &store, &src, &[]);
    let (items_before, log_before) = (
        hash(&src, "app.items", "id").await,
        hash(&src, "app.log", "at, msg").await,
    );

    // No change yet: nothing differs.
    let diff = |args: &[&str]| {
        let mut a = vec!["--json", "diff", "--store", &store_s];
        a.extend_from_slice(args);
        run(dir.path(), &a, &[])
    };
    let out = diff(&[
        "--at",
        "2999-01-01T00:00:00Z",
        "--table",
        "app.items",
        "--target",
        &src,
    ]);
    out.ok();
    tk::schema::assert_valid("diff.schema.json", &out.json());
    assert_eq!(counts(&out.json()), (0, 0, 0), "{}", out.stdout);
    assert_eq!(out.json()["unchanged"], 20000);
    assert_eq!(out.json()["from"], first.as_str());

    c.batch_execute(CHANGES_SQL).await.expect("changes");
    let undo = dir.path().join("undo.sql");
    let undo_s = undo.display().to_string();
    let out = diff(&[
        "latest",
        "--table",
        "app.items",
        "--target",
        &src,
        "--sql",
        &undo_s,
    ]);
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("diff.schema.json", &j);
    assert_eq!(counts(&j), (5, 10, 20), "{j}");
    assert_eq!(j["matched_by"], "primary key", "{j}");
    assert_eq!(j["rows_from"], 20000, "{j}");
    assert_eq!(j["rows_to"], 19995, "{j}");
    assert_eq!(j["samples"]["removed"][0]["id"], 101, "{j}");
    assert_eq!(j["samples"]["changed"][0]["from"]["qty"], 1, "{j}");
    assert!(j["bytes_read"].as_u64().is_some_and(|b| b > 0), "{j}");
    let human = run(
        dir.path(),
        &[
            "diff",
            "latest",
            "--store",
            &store_s,
            "--table",
            "app.items",
            "--target",
            &src,
        ],
        &[],
    );
    human.ok();
    assert!(
        human.stdout.contains("5 added, 10 removed, 20 changed"),
        "{}",
        human.stdout
    );

    // Without a primary key: by whole-row hash, duplicates counted.
    let out = diff(&["latest", "--table", "app.log", "--target", &src]);
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("diff.schema.json", &j);
    assert_eq!(counts(&j), (3, 2, 0), "{j}");
    assert_eq!(j["matched_by"], "whole row", "{j}");

    // The SQL puts the live table back to the backup's rows.
    let sql = std::fs::read_to_string(&undo).expect("undo.sql");
    assert!(
        sql.starts_with("-- pgdrill diff") && sql.trim_end().ends_with("commit;"),
        "{sql}"
    );
    c.batch_execute(&sql).await.expect("undo runs");
    assert_eq!(hash(&src, "app.items", "id").await, items_before);
    let out = diff(&["latest", "--table", "app.items", "--target", &src]);
    assert_eq!(counts(&out.json()), (0, 0, 0), "{}", out.stdout);
    let out = diff(&[
        "latest", "--table", "app.log", "--target", &src, "--sql", &undo_s,
    ]);
    out.ok();
    c.batch_execute(&std::fs::read_to_string(&undo).expect("undo"))
        .await
        .expect("undo log");
    assert_eq!(hash(&src, "app.log", "at, msg").await, log_before);

    // Two backups, compared in a throwaway cluster: the change set again.
    c.batch_execute(CHANGES_SQL).await.expect("changes again");
    let second = backup(dir.path(), &store, &src, &[]);
    let out = diff(&[&first, &second, "--table", "app.items"]);
    out.ok();
    assert_eq!(counts(&out.json()), (5, 10, 20), "{}", out.stdout);
    assert_eq!(out.json()["to"], second.as_str());
    assert_eq!(
        scalar(
            &cluster.url("postgres"),
            "select count(*)::text from pg_database where datname like 'pgdrill_diff_%'"
        )
        .await,
        "0",
        "scratch databases are dropped"
    );
    // A table the backup lacks, and a missing target.
    diff(&["latest", "--table", "app.nope", "--target", &src]).code(2);
    diff(&["latest", "--table", "app.items"]).code(2);
}
