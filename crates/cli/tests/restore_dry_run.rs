//! `pgdrill restore --dry-run`: the plan (mode, jobs, lanes, target database, roles to
//! create, what is skipped, the steps in order) after the guards and the preflight, with
//! nothing changed on the target: no database, no role, no table.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;

async fn role_count(url: &str) -> String {
    scalar(url, "select count(*)::text from pg_roles").await
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_touches_nothing() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");

    // A backup whose policy names a role the target server no longer has.
    let roles_url = empty_db(&src.cluster, "roles").await;
    let c = tk::connect(&roles_url).await;
    c.batch_execute(
        "create role dry_reader; create table t (id int primary key); \
         insert into t select generate_series(1, 10); alter table t enable row level security; \
         create policy readers on t for select to dry_reader using (true);",
    )
    .await
    .expect("roles db");
    backup(dir.path(), &store, &roles_url, &[]);
    c.batch_execute("drop policy readers on t; drop role dry_reader")
        .await
        .expect("drop role");
    let admin = src.cluster.url("postgres");
    let roles_before = role_count(&admin).await;

    // A new database, 4 jobs: streamed on 4 lanes, the role to create listed.
    let target = src.cluster.url("planned");
    let out = restore(dir.path(), &store, &target, &["--dry-run", "--jobs", "4"]);
    out.ok();
    let j = out.json();
    assert_eq!(j["dry_run"], true, "{j}");
    assert_eq!(j["mode"], "stream", "{j}");
    assert_eq!(j["jobs"], 4, "{j}");
    assert_eq!(j["lanes"], 4, "{j}");
    assert_eq!(j["database"], "create_early", "{j}");
    assert_eq!(j["create_roles"], serde_json::json!(["dry_reader"]), "{j}");
    assert!(
        j["target"].as_str().is_some_and(|t| t.contains("planned")),
        "{j}"
    );
    assert!(j["backup_id"].as_str().is_some(), "{j}");
    assert!(j["pg_restore"].as_str().is_some(), "{j}");
    assert!(j["skipped"].is_array() && j["notes"].is_array(), "{j}");
    let steps: Vec<&str> = j["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(steps.len() >= 5, "{steps:?}");
    assert!(
        steps[0].contains("create the database `planned`"),
        "{steps:?}"
    );
    assert!(steps[1].contains("dry_reader"), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("4 lanes")), "{steps:?}");
    assert!(!db_exists(&src.cluster, "planned").await);
    assert_eq!(
        role_count(&admin).await,
        roles_before,
        "no role was created"
    );
    let exists = scalar(
        &admin,
        "select count(*)::text from pg_roles where rolname = 'dry_reader'",
    )
    .await;
    assert_eq!(exists, "0");

    // One job, human output: the pipe, in order.
    let store_s = store.display().to_string();
    let out = run(
        dir.path(),
        &[
            "restore",
            "latest",
            "--store",
            &store_s,
            "--target",
            &target,
            "--dry-run",
        ],
        &[],
    );
    out.ok();
    assert!(out.stdout.contains("nothing was changed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("mode: pipe (1 job(s))"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("steps:\n  1. "), "{}", out.stdout);
    assert!(!db_exists(&src.cluster, "planned").await);

    // An existing empty database: restored in place, in one transaction; still empty after.
    let empty = empty_db(&src.cluster, "empty_target").await;
    let out = restore(dir.path(), &store, &empty, &["--dry-run"]);
    out.ok();
    let j = out.json();
    assert_eq!(
        (&j["mode"], &j["database"], &j["single_transaction"]),
        (
            &serde_json::json!("pipe"),
            &serde_json::json!("existing"),
            &serde_json::json!(true)
        ),
        "{j}"
    );
    let tables = scalar(
        &empty,
        "select count(*)::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'",
    )
    .await;
    assert_eq!(tables, "0");
    assert_eq!(role_count(&admin).await, roles_before);

    // The guards still refuse (exit 5): the source itself, a non-empty target.
    restore(dir.path(), &store, &roles_url, &["--dry-run"]).code(5);
    let busy = src.url.clone();
    restore(dir.path(), &store, &busy, &["--dry-run"]).code(5);
    let out = restore(dir.path(), &store, &busy, &["--dry-run", "--clean"]);
    out.ok();
    assert_eq!(out.json()["clean"], true);

    // Spooled on request: no lanes.
    let out = restore(
        dir.path(),
        &store,
        &target,
        &["--dry-run", "--jobs", "2", "--spool"],
    );
    out.ok();
    let j = out.json();
    assert_eq!(
        (&j["mode"], &j["jobs"]),
        (&serde_json::json!("spool"), &serde_json::json!(2))
    );
    assert!(j.get("lanes").is_none(), "{j}");
    assert!(!db_exists(&src.cluster, "planned").await);
}
