//! `[[server]]` fleets: every database of a server discovered at each run (include/exclude
//! patterns, overrides by glob), store names unique across servers, a database added and one
//! dropped between runs, globals once per server, and drill coverage (`[drill]
//! coverage_days`, `max_concurrent`) proving every database in turn. One cluster for all.

mod common;
use common::*;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::path::Path;

async fn create_db(cluster: &tk::Cluster, name: &str, rows: i32) {
    let admin = tk::connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("create database {name}"))
        .await
        .expect("create database");
    let c = tk::connect(&cluster.url(name)).await;
    c.batch_execute(&format!(
        "create table items (id int primary key, note text); \
         insert into items select g, 'row ' || g from generate_series(1, {rows}) g; \
         create table audit (at timestamptz default now(), what text); \
         insert into audit (what) select 'event ' || g from generate_series(1, 5) g;"
    ))
    .await
    .expect("fill");
}

fn manifest(store: &Path, db: &str) -> Value {
    let ids = backup_ids(store, db);
    let last = ids.last().expect("a backup");
    let text = std::fs::read_to_string(
        store
            .join(db)
            .join("backups")
            .join(last)
            .join("manifest.json"),
    )
    .expect("manifest");
    serde_json::from_str(&text).expect("json")
}

fn globals_sha(m: &Value) -> Option<String> {
    m["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "globals")
        .map(|o| o["sha256"].as_str().unwrap_or_default().to_string())
}

fn names(v: &Value, key: &str) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|x| x[key].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

fn status_of<'a>(status: &'a Value, db: &str) -> &'a Value {
    status["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["database"] == db)
        .unwrap_or_else(|| panic!("{db} in status: {status}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_is_discovered_at_each_run_and_every_database_proven_in_turn() {
    let cluster = tk::cluster(None);
    let admin = tk::connect(&cluster.url("postgres")).await;
    admin
        .batch_execute("create role fleet_reader nologin")
        .await
        .expect("role");
    for (db, rows) in [("app", 30), ("billing", 20), ("old", 10), ("scratch_1", 5)] {
        create_db(&cluster, db, rows).await;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    // Two servers (here: two names for one cluster) both hold `app`; `main` takes every
    // database but the scratch ones and `postgres`, `other` only `app`.
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            r#"[store]
url = "{}"

[alerts]
webhook_url_env = "HOOK"

[drill]
coverage_days = 30
max_concurrent = 2

[[server]]
name = "main"
url_env = "MAIN_URL"
exclude = ["scratch_*", "postgres"]

[[server.database]]
match = "bill*"
pg_dump_args = ["--exclude-table-data=public.audit"]

[[server]]
name = "other"
url_env = "OTHER_URL"
include = ["app"]
globals = false
"#,
            store.display()
        ),
    )
    .expect("config");
    let server_url = cluster.url("postgres");
    let (hook, seen) = receiver();
    let env = [
        ("MAIN_URL", server_url.as_str()),
        ("OTHER_URL", server_url.as_str()),
        ("HOOK", hook.as_str()),
    ];
    let d = dir.path();

    let out = run(d, &["--json", "backup"], &env);
    out.ok();
    assert_eq!(
        names(&out.json()["backups"], "database"),
        vec!["main.app", "main.billing", "main.old", "other.app"],
        "{}",
        out.stderr
    );
    assert!(
        !store.join("main.scratch_1").exists(),
        "excluded by pattern"
    );
    assert!(!store.join("main.postgres").exists(), "excluded by pattern");
    assert!(!store.join("main.template1").exists());
    // The same database name on two servers: two store names, two independent backups.
    assert_eq!(manifest(&store, "main.app")["source"]["dbname"], "app");
    assert_eq!(manifest(&store, "other.app")["source"]["dbname"], "app");
    // The override by glob reached billing's pg_dump only.
    let args = |db: &str| manifest(&store, db)["pg_dump"]["args"].to_string();
    assert!(args("main.billing").contains("--exclude-table-data=public.audit"));
    assert!(!args("main.app").contains("exclude-table-data"));
    let rows = |db: &str, table: &str| -> i64 {
        manifest(&store, db)["content"]["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .find(|t| t["name"] == table)
            .and_then(|t| t["rows"].as_i64())
            .unwrap_or(-1)
    };
    assert_eq!(
        rows("main.billing", "audit"),
        -1,
        "no data block: its data excluded"
    );
    assert_eq!(rows("main.billing", "items"), 20);
    assert_eq!(rows("main.app", "audit"), 5);
    assert_eq!(rows("main.app", "items"), 30);
    // Globals once per server per run: every backup of `main` carries the same object;
    // `other` asked for none.
    let g = globals_sha(&manifest(&store, "main.app")).expect("globals with main.app");
    for db in ["main.billing", "main.old"] {
        assert_eq!(
            globals_sha(&manifest(&store, db)).as_deref(),
            Some(g.as_str()),
            "{db}"
        );
    }
    assert_eq!(globals_sha(&manifest(&store, "other.app")), None);
    let list = run(d, &["--json", "list"], &env);
    list.ok();
    for db in ["main.app", "main.billing", "main.old", "other.app"] {
        assert!(list.stdout.contains(db), "{db} listed: {}", list.stdout);
    }

    // Between two runs: `old` dropped, `newdb` created.
    admin
        .batch_execute("drop database old")
        .await
        .expect("drop");
    create_db(&cluster, "newdb", 7).await;
    let out = run(d, &["--json", "backup"], &env);
    out.ok();
    assert_eq!(
        names(&out.json()["backups"], "database"),
        vec!["main.app", "main.billing", "main.newdb", "other.app"]
    );
    assert_eq!(
        backup_ids(&store, "main.newdb").len(),
        1,
        "new: backed up on its first run"
    );
    assert_eq!(backup_ids(&store, "main.app").len(), 2);
    assert_eq!(backup_ids(&store, "main.old").len(), 1, "dropped: kept");

    // status: the dropped one is reported (and alerted once), coverage is 0 of 4.
    let st = run(d, &["--json", "status"], &env);
    st.code(1);
    let sj = st.json();
    tk::schema::assert_valid("status.schema.json", &sj);
    let old = status_of(&sj, "main.old");
    assert_eq!(old["dropped"], true, "{old}");
    assert_eq!(old["server"], "main");
    assert_eq!(old["backups"], 1);
    assert_eq!(old["slos"][0]["name"], "dropped");
    assert_eq!(status_of(&sj, "main.app")["server"], "main");
    assert_eq!(sj["coverage"]["total"], 4, "{}", sj["coverage"]);
    assert_eq!(sj["coverage"]["proven"], 0);
    assert_eq!(sj["coverage"]["ok"], false);
    let marker = store.join("main.old/dropped.json");
    let noticed = std::fs::read_to_string(&marker).expect("the drop was noticed once");
    let human = run(d, &["status"], &env);
    human.code(1);
    assert!(human.stdout.contains("drill_coverage"), "{}", human.stdout);
    assert!(
        human.stdout.contains("no longer on server main"),
        "{}",
        human.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        noticed,
        "alerted once"
    );
    let dropped_alerts: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|b| b.contains("database_dropped"))
        .cloned()
        .collect();
    assert_eq!(
        dropped_alerts.len(),
        1,
        "one alert for two status runs: {dropped_alerts:?}"
    );
    assert!(
        dropped_alerts[0].contains("main.old"),
        "{}",
        dropped_alerts[0]
    );
    assert!(!dropped_alerts[0].contains(cluster.password()));
    // prune keeps the dropped database's backups under the retention policy.
    run(d, &["prune"], &env).ok();
    assert_eq!(backup_ids(&store, "main.old").len(), 1);

    // Drill coverage: each run drills the two least recently proven (never drilled first).
    let dr = run(d, &["--json", "drill"], &env);
    dr.ok();
    tk::schema::assert_valid("drill.schema.json", &dr.json());
    assert_eq!(
        names(&dr.json()["drills"], "database"),
        vec!["main.app", "main.billing"],
        "{}",
        dr.stderr
    );
    let st = run(d, &["--json", "status"], &env);
    st.code(1);
    tk::schema::assert_valid("status.schema.json", &st.json());
    let cov = &st.json()["coverage"];
    assert_eq!(cov["proven"], 2, "{cov}");
    assert_eq!(
        names(&cov["overdue"], "database"),
        vec!["main.newdb", "other.app"]
    );
    let dr = run(d, &["--json", "drill"], &env);
    dr.ok();
    assert_eq!(
        names(&dr.json()["drills"], "database"),
        vec!["main.newdb", "other.app"]
    );
    let st = run(d, &["--json", "status"], &env);
    st.ok();
    assert_eq!(st.json()["coverage"]["proven"], 4);
    assert_eq!(st.json()["coverage"]["ok"], true);

    // The server's globals come back with `restore --globals` from any of its backups.
    let target_cluster = tk::cluster(None);
    let target = target_cluster.url("restored");
    run(
        d,
        &[
            "restore",
            "latest",
            "--name",
            "main.billing",
            "--target",
            &target,
            "--globals",
        ],
        &env,
    )
    .ok();
    let t = tk::connect(&target).await;
    let role: i64 = t
        .query_one(
            "select count(*) from pg_roles where rolname = 'fleet_reader'",
            &[],
        )
        .await
        .expect("roles")
        .get(0);
    assert_eq!(role, 1, "the server's role restored");
    let n: i64 = t
        .query_one("select count(*) from items", &[])
        .await
        .expect("items")
        .get(0);
    assert_eq!(n, 20);

    // A server that cannot be listed fails the run (exit 1) after the others are backed up,
    // and status says so; nothing of it is called dropped.
    std::fs::write(
        d.join("unreachable.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[[server]]\nname = \"main\"\nurl_env = \"MAIN_URL\"\ninclude = [\"app\"]\n[[server]]\nname = \"gone\"\nurl = \"postgresql://nobody:S3CRET_PW@127.0.0.1:1/postgres\"\n",
            store.display()
        ),
    )
    .expect("config");
    let out = run(
        d,
        &["--config", "unreachable.toml", "--json", "backup"],
        &env,
    );
    out.code(1);
    assert_eq!(names(&out.json()["backups"], "database"), vec!["main.app"]);
    assert_eq!(names(&out.json()["failures"], "database"), vec!["gone"]);
    assert!(
        !out.stderr.contains("S3CRET_PW") && !out.stdout.contains("S3CRET_PW"),
        "{}",
        out.stderr
    );
    let st = run(d, &["--config", "unreachable.toml", "status"], &env);
    st.code(1);
    assert!(
        st.stdout.contains("(gone)") && !st.stdout.contains("S3CRET_PW"),
        "{}",
        st.stdout
    );
    // Still on the server but no longer included: excluded, not dropped, backups kept.
    let sj = run(
        d,
        &["--config", "unreachable.toml", "--json", "status"],
        &env,
    )
    .json();
    let billing = status_of(&sj, "main.billing");
    assert_eq!(billing["excluded"], true, "{billing}");
    assert_eq!(billing["dropped"], Value::Null);
    assert_eq!(status_of(&sj, "main.old")["dropped"], true);
    let gone = sj["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["server"] == "gone")
        .expect("gone");
    assert!(gone["error"]
        .as_str()
        .is_some_and(|e| !e.contains("S3CRET_PW")));
}
