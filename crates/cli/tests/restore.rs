//! `pgdrill restore`: streaming and parallel restores identical to the source (fidelity oracle),
//! throwaway clusters, signals, pg_restore errors, cross-version targets and extensions.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn restores_identically_streaming_parallel_and_ephemeral() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let want = tk::fingerprint(&src.url, &pg_dump()).await;

    // jobs 1 (streaming) into a database that does not exist yet: created, identical.
    let t1 = src.cluster.url("copy1");
    let out = restore(dir.path(), &store, &t1, &[]);
    out.ok();
    let j = out.json();
    assert_eq!(j["created_database"], true, "{j}");
    assert_eq!(j["jobs"], 1);
    for k in [
        "download_seconds",
        "restore_seconds",
        "analyze_seconds",
        "total_seconds",
    ] {
        assert!(j[k].as_f64().is_some(), "{k} missing: {j}");
    }
    assert!(!out.stdout.contains(src.cluster.password()));
    tk::fingerprint(&t1, &pg_dump()).await.assert_same(&want);

    // jobs 2 into a new database: streamed from the store into parallel pg_restore runs.
    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    let t2 = src.cluster.url("copy2");
    let out = restore_env(
        dir.path(),
        &store,
        &t2,
        &["--jobs", "2"],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    assert_eq!(out.json()["jobs"], 2);
    assert_eq!(out.json()["mode"], "stream", "{}", out.json());
    tk::fingerprint(&t2, &pg_dump()).await.assert_same(&want);
    assert!(entries(tmp.path()).is_empty(), "temp files left behind");

    // jobs 2 --spool: download and verify into a spool file, then pg_restore -j 2; the
    // spool file is gone afterwards.
    let t3 = src.cluster.url("copy3");
    let out = restore_env(
        dir.path(),
        &store,
        &t3,
        &["--jobs", "2", "--spool"],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    assert_eq!(out.json()["mode"], "spool", "{}", out.json());
    tk::fingerprint(&t3, &pg_dump()).await.assert_same(&want);
    assert!(entries(tmp.path()).is_empty(), "spool left behind");

    // --ephemeral: a throwaway cluster, identical content, torn down afterwards.
    let out = restore_env(
        dir.path(),
        &store,
        "",
        &["--ephemeral"],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    assert!(entries(tmp.path()).is_empty(), "cluster dir left behind");
    assert!(survivors(&tmp_s).is_empty(), "{:?}", survivors(&tmp_s));

    // --ephemeral --keep: URL and stop command; the URL works; the stop command removes it.
    let out = restore_env(
        dir.path(),
        &store,
        "",
        &["--ephemeral", "--keep", "--jobs", "2"],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    let j = out.json();
    let url = j["ephemeral"]["url"].as_str().expect("url").to_string();
    let stop = j["ephemeral"]["stop_command"]
        .as_str()
        .expect("stop")
        .to_string();
    assert_eq!(
        scalar(&url, "select count(*)::text from app.customers").await,
        "3000"
    );
    tk::fingerprint(&url, &pg_dump()).await.assert_same(&want);
    assert_eq!(entries(tmp.path()).len(), 1, "the kept cluster's directory");
    let st = std::process::Command::new("sh")
        .args(["-c", &format!("( {stop} ) >/dev/null 2>&1")])
        .status()
        .expect("sh");
    assert!(st.success(), "stop command failed: {stop}");
    assert!(
        entries(tmp.path()).is_empty(),
        "stop command left the directory"
    );
    assert!(survivors(&tmp_s).is_empty(), "{:?}", survivors(&tmp_s));

    // A role the dump's policy names and the throwaway cluster lacks is created (NOLOGIN)
    // from the archive itself, listed, and the policy restored.
    let roles_url = empty_db(&src.cluster, "roles").await;
    tk::connect(&roles_url)
        .await
        .batch_execute(
            "create role app_reader; create table t (id int primary key); \
             insert into t select generate_series(1, 10); alter table t enable row level security; \
             create policy readers on t for select to app_reader using (true);",
        )
        .await
        .expect("roles db");
    let rstore = dir.path().join("rstore");
    backup(dir.path(), &rstore, &roles_url, &[]);
    let out = restore_env(
        dir.path(),
        &rstore,
        "",
        &["--ephemeral"],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    assert_eq!(
        out.json()["created_roles"],
        serde_json::json!(["app_reader"])
    );

    // pg_restore errors are never ignored: a check constraint that reads a table whose rows
    // come later fails the COPY, listing the statement; the allowlist turns it into a
    // success that reports the ignored error.
    let check_url = empty_db(&src.cluster, "checks").await;
    tk::connect(&check_url)
        .await
        .batch_execute(FAILS_ON_RESTORE_SQL)
        .await
        .expect("checks db");
    let cstore = dir.path().join("cstore");
    backup(dir.path(), &cstore, &check_url, &[]);
    let out = restore_env(
        dir.path(),
        &cstore,
        "",
        &["--ephemeral"],
        &[("TMPDIR", &tmp_s)],
    );
    out.code(1);
    assert!(
        out.stderr.contains("a_child_p_check") && out.stderr.contains("COPY"),
        "{}",
        out.stderr
    );
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).expect("mkdir");
    std::fs::write(
        cfg.join("pgdrill.toml"),
        "[restore]\nignore_errors = ['violates check constraint \"a_child_p_check\"']\n",
    )
    .expect("config");
    let out = restore_env(&cfg, &cstore, "", &["--ephemeral"], &[("TMPDIR", &tmp_s)]);
    out.ok();
    let ignored = out.json()["ignored_errors"].to_string();
    assert!(ignored.contains("a_child_p_check"), "{ignored}");
    assert!(entries(tmp.path()).is_empty(), "cluster dir left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_restore_loads_a_large_table_in_parts_and_stays_identical() {
    let src = source(None).await;
    // `app.big` (~12 MB of COPY text) is cut at a row boundary and loaded by both lanes;
    // `app.ordered` has a BRIN index, so its rows must keep their order: never cut.
    // `app.refs` has a foreign key to `app.big`: it waits for `app.big`'s primary key, while
    // its own primary key is made as soon as all data is in. The event trigger refuses any
    // DDL: it must be restored after everything else.
    tk::connect(&src.url)
        .await
        .batch_execute(
            "create table app.big (id bigint primary key, body text, n numeric);              insert into app.big select g, repeat(md5(g::text), 3), g / 7.0                from generate_series(1, 120000) g;              create table app.ordered (id bigint, t text);              insert into app.ordered select g, repeat('x', 90) from generate_series(1, 90000) g;              create index ordered_brin on app.ordered using brin (id);              create index big_expr on app.big ((lower(body)));              create table app.refs (id int primary key, big_id bigint references app.big (id));              insert into app.refs select g, g * 3 from generate_series(1, 500) g;              create function app.no_ddl() returns event_trigger language plpgsql as $$ begin raise exception 'no DDL after the event trigger'; end $$;              create event trigger no_ddl on ddl_command_start execute function app.no_ddl();",
        )
        .await
        .expect("large tables");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let id = backup(dir.path(), &store, &src.url, &[]);
    // The backup carries the index that makes ranged restores possible.
    assert!(
        dump_object(&store, "app", &id)
            .with_file_name("dump.index.json.zst")
            .exists(),
        "no dump index"
    );
    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    let target = src.cluster.url("parts");
    let out = restore(dir.path(), &store, &target, &["--jobs", "2"]);
    out.ok();
    let j = out.json();
    assert_eq!(j["mode"], "stream", "{j}");
    let notes = j["notes"].to_string();
    assert!(
        notes.contains("1 large table(s) loaded in parts"),
        "{notes}"
    );
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);
    assert_eq!(
        scalar(&target, "select count(*)::text from app.big").await,
        "120000"
    );
    // ANALYZE ran on every table, including the statistics of the expression index.
    assert_eq!(
        scalar(
            &target,
            "select count(*)::text from pg_stat_user_tables \
             where schemaname = 'app' and last_analyze is null and n_live_tup > 0"
        )
        .await,
        "0"
    );
    assert_eq!(
        scalar(
            &target,
            "select count(*)::text from pg_stats where tablename = 'big_expr'"
        )
        .await,
        "1"
    );

    // `[restore] maintenance_work_mem` reaches pg_restore's sessions: a value the server
    // refuses (1 kB, below its minimum) fails the restore, naming it, and the new database
    // is dropped; a value that is no size at all is refused before anything happens.
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).expect("mkdir");
    for (value, code) in [("1", 1), ("lots", 2)] {
        std::fs::write(
            cfg.join("pgdrill.toml"),
            format!("[restore]\nmaintenance_work_mem = \"{value}\"\n"),
        )
        .expect("config");
        let out = restore_env(&cfg, &store, &src.cluster.url("mem"), &["--jobs", "2"], &[]);
        out.code(code);
        assert!(
            out.stderr.contains("maintenance_work_mem"),
            "{}",
            out.stderr
        );
        assert!(
            !db_exists(&src.cluster, "mem").await,
            "{value}: mem left behind"
        );
    }
}

/// A source whose restore takes seconds whatever the machine: every row of `slow.t` passes a
/// CHECK that sleeps 2 ms.
async fn slow_source(rows: u32) -> Source {
    let cluster = tk::cluster(None);
    let url = empty_db(&cluster, "slow").await;
    let c = tk::connect(&url).await;
    c.batch_execute(&format!(
        "create schema slow; \
         create function slow.nap(int) returns boolean language sql as $$ \
           select case when current_setting('slow.off', true) = 'on' then true \
                       else (select true from pg_sleep(0.002)) end $$; \
         create table slow.t (id int primary key, v text, check (slow.nap(id))); \
         set slow.off = 'on'; \
         insert into slow.t select g, md5(g::text) from generate_series(1, {rows}) g;"
    ))
    .await
    .expect("slow fixture");
    Source { cluster, url }
}

/// Starts `pgdrill restore`, sends SIGTERM once it loads rows into database `copy_into`
/// (else once pg_restore runs), returns the exit status.
fn interrupted_restore(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    copy_into: Option<&str>,
    cluster_in: Option<&std::path::Path>,
) -> i32 {
    let mut c = cmd(dir);
    c.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().expect("spawn");
    let pid = child.id();
    match copy_into {
        // The data phase is under way (a streamed restore runs no pg_restore then).
        Some(db) => assert!(
            wait_for_copy(db, Duration::from_secs(30)),
            "the restore never started loading rows into {db}"
        ),
        None => assert!(
            wait_for_child(pid, "pg_restore", Duration::from_secs(30)).is_some(),
            "pg_restore never started"
        ),
    }
    if let Some(d) = cluster_in {
        let clusters = entries(d)
            .iter()
            .filter(|p| p.to_string_lossy().contains("pgdrill-cluster-"))
            .count();
        assert_eq!(
            clusters,
            1,
            "the throwaway cluster lives in {}",
            d.display()
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    sigterm(pid);
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "pgdrill took {:?} to stop after SIGTERM: {stderr}",
        started.elapsed()
    );
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 0, "an interrupted restore must fail: {stderr}");
    code
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_restore_and_leaves_nothing_behind() {
    let src = slow_source(2500).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let store_s = store.display().to_string();

    for (db, jobs) in [("term1", "1"), ("term2", "2")] {
        let target = src.cluster.url(db);
        interrupted_restore(
            dir.path(),
            &[
                "restore", "latest", "--store", &store_s, "--target", &target, "--jobs", jobs,
            ],
            &[],
            Some(db),
            None,
        );
        assert!(
            survivors(&format!("--dbname={db}")).is_empty(),
            "pg_restore left running: {:?}",
            survivors(&format!("--dbname={db}"))
        );
        assert!(survivors(&format!(" {db} ")).is_empty(), "backend left");
        assert!(
            !db_exists(&src.cluster, db).await,
            "jobs {jobs}: {db} still exists"
        );
    }

    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    interrupted_restore(
        dir.path(),
        &["restore", "latest", "--store", &store_s, "--ephemeral"],
        &[("TMPDIR", &tmp_s)],
        None,
        Some(tmp.path()),
    );
    assert!(survivors(&tmp_s).is_empty(), "{:?}", survivors(&tmp_s));
    assert!(entries(tmp.path()).is_empty(), "cluster dir left behind");
}

/// A PG 17 server (no client tools: pgdrill dumps it with PG 18's pg_dump) restores into PG 18
/// identically, and into PG 15 only once the 18-only settings are allowlisted. A backup using
/// an extension the target server lacks is refused before anything is created.
#[tokio::test(flavor = "multi_thread")]
async fn cross_version_targets_and_missing_extensions() {
    let src = source(Some(17)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let show = run(
        dir.path(),
        &[
            "--json",
            "show",
            "latest",
            "--store",
            &store.display().to_string(),
        ],
        &[],
    );
    assert!(
        show.json()["pg_dump"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("18")),
        "{}",
        show.stdout
    );
    let want = tk::fingerprint(&src.url, &pg_dump()).await;

    let c18 = tk::cluster(Some(18));
    restore(dir.path(), &store, &c18.url("app"), &[]).ok();
    tk::fingerprint(&c18.url("app"), &pg_dump())
        .await
        .assert_same(&want);

    let c15 = tk::cluster(Some(15));
    let out = restore(dir.path(), &store, &c15.url("app"), &[]);
    out.code(1);
    assert!(
        out.stderr.contains("transaction_timeout") && out.stderr.contains("Command was"),
        "{}",
        out.stderr
    );
    assert!(
        !db_exists(&c15, "app").await,
        "the failed target must be dropped"
    );
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).expect("mkdir");
    std::fs::write(
        cfg.join("pgdrill.toml"),
        "[restore]\nignore_errors = ['unrecognized configuration parameter \"transaction_timeout\"']\n",
    )
    .expect("config");
    let out = restore(&cfg, &store, &c15.url("app"), &[]);
    out.ok();
    assert!(out.json()["ignored_errors"]
        .to_string()
        .contains("transaction_timeout"));
    let got = tk::fingerprint(&c15.url("app"), &pg_dump()).await;
    assert_eq!(got.tables, want.tables, "table contents differ on PG 15");
    assert_eq!(got.sequences, want.sequences);
    assert_eq!(got.large_objects, want.large_objects);

    // pgcrypto: in PG 15's contrib, not in the PG 18 test server.
    let ext = empty_db(&c15, "ext").await;
    tk::connect(&ext)
        .await
        .batch_execute(
            "create extension pgcrypto; create table k (v bytea default gen_random_bytes(8))",
        )
        .await
        .expect("ext db");
    let estore = dir.path().join("estore");
    backup(dir.path(), &estore, &ext, &[]);
    let out = restore(dir.path(), &estore, &c18.url("ext"), &[]);
    out.code(1);
    assert!(out.stderr.contains("pgcrypto"), "{}", out.stderr);
    assert!(!db_exists(&c18, "ext").await, "nothing may be created");
}

/// A LATIN1 database: pgdrill's own COPY connections speak UTF8, so its rows are loaded by
/// pg_restore lanes (which convert), and come back the same (the target is created LATIN1,
/// like the source).
#[tokio::test(flavor = "multi_thread")]
async fn a_latin1_database_streams_through_pg_restore_lanes() {
    let cluster = tk::cluster(None);
    let url = latin1_db(&cluster, "latin").await;
    tk::connect(&url)
        .await
        .batch_execute(
            "create table t (id int primary key, s text); \
             insert into t select g, 'café ' || g || repeat('ü', g % 50) from generate_series(1, 60000) g;",
        )
        .await
        .expect("rows");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &url, &[]);
    let target = cluster.url("latin_copy");
    let out = restore(dir.path(), &store, &target, &["--jobs", "2"]);
    out.ok();
    assert_eq!(out.json()["mode"], "stream", "{}", out.json());
    assert_eq!(
        scalar(&target, "select s from t where id = 2").await,
        "café 2üü"
    );
    let rows = |url: String| async move {
        tk::connect(&url)
            .await
            .query("select id, s from t order by id", &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let (got, want) = (rows(target.clone()).await, rows(url.clone()).await);
    assert_eq!(got.len(), 60000);
    if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
        panic!("restored row {g:?} differs from {w:?}");
    }
}

/// Every row of `t` as `id:hex of its bytes`, hashed, and the database's encoding.
async fn ascii_content(url: &str) -> (String, String) {
    let rows = scalar(
        url,
        "select md5(string_agg(id || ':' || encode(convert_to(s, 'SQL_ASCII'), 'hex'), ',' order by id)) from t",
    )
    .await;
    let enc = scalar(
        url,
        "select pg_encoding_to_char(encoding)::text from pg_database where datname = current_database()",
    )
    .await;
    (rows, enc)
}

/// A SQL_ASCII database holding bytes that are not UTF-8: the target database is created
/// with the source's encoding (and locale), so restores (`--jobs 1`, streamed `--jobs 2`)
/// and a drill load every byte unchanged (was: the target was created UTF8 and pg_restore
/// failed on the first such byte).
#[tokio::test(flavor = "multi_thread")]
async fn a_sql_ascii_database_with_non_utf8_bytes_round_trips() {
    let cluster = tk::cluster(None);
    tk::connect(&cluster.url("postgres"))
        .await
        .batch_execute(
            "create database ascii template template0 encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C'",
        )
        .await
        .expect("sql_ascii database");
    let url = cluster.url("ascii");
    tk::connect(&url)
        .await
        .batch_execute(
            "create table t (id int primary key, s text); \
             insert into t values (1, E'caf\\351'), (2, E'\\377\\376 raw \\200'), (3, 'plain'); \
             insert into t select g, 'r' || E'\\344' || g from generate_series(4, 5000) g;",
        )
        .await
        .expect("rows");
    assert_eq!(
        scalar(
            &url,
            "select encode(convert_to(s, 'SQL_ASCII'), 'hex') from t where id = 1"
        )
        .await,
        "636166e9"
    );
    let want = ascii_content(&url).await;
    assert_eq!(want.1, "SQL_ASCII");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let id = backup(dir.path(), &store, &url, &[]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("ascii/backups/{id}/manifest.json"))).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["source"]["encoding"], "SQL_ASCII", "{manifest}");
    assert_eq!(manifest["source"]["lc_collate"], "C", "{manifest}");

    for jobs in ["1", "2"] {
        let target = cluster.url(&format!("ascii_{jobs}"));
        let out = restore(dir.path(), &store, &target, &["--jobs", jobs]);
        out.ok();
        assert_eq!(ascii_content(&target).await, want, "--jobs {jobs}");
    }

    // A manifest of an older version records no encoding: the archive's is used.
    let path = store.join(format!("ascii/backups/{id}/manifest.json"));
    let mut old = manifest.clone();
    for k in ["encoding", "lc_collate", "lc_ctype"] {
        old["source"].as_object_mut().expect("source").remove(k);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&old).expect("json")).expect("write");
    for jobs in ["1", "2"] {
        let target = cluster.url(&format!("ascii_old_{jobs}"));
        let out = restore(dir.path(), &store, &target, &["--jobs", jobs]);
        out.ok();
        assert_eq!(
            ascii_content(&target).await,
            want,
            "old manifest, --jobs {jobs}"
        );
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("json")).expect("write");

    // A drill on the same server (kept, to compare its content).
    let store_s = store.display().to_string();
    let server = cluster.url("postgres");
    let out = run(
        dir.path(),
        &[
            "--json", "drill", "--store", &store_s, "--target", &server, "--keep",
        ],
        &[],
    );
    out.ok();
    let drilled = scalar(
        &server,
        "select datname::text from pg_database where datname like 'pgdrill_drill_%'",
    )
    .await;
    assert_eq!(ascii_content(&cluster.url(&drilled)).await, want);
}
