//! Parallel backups (`backup --jobs N`: `pg_dump -Fd -j N`, one object per file of the
//! archive directory): fidelity of pgdrill's restore and of the standard-tools path, the
//! manifest's objects against the stored bytes, a failed upload publishing nothing, and the
//! spool's disk use staying bounded. Helpers and the round trip's longer steps are in
//! `parallel_support/`.

mod common;
mod parallel_support;
use common::*;
use parallel_support::*;
use pgdrill_testkit as tk;

#[tokio::test(flavor = "multi_thread")]
async fn parallel_backup_round_trips_through_pgdrill_and_standard_tools() {
    let src = parallel_source().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("spool");
    let recipient = generate_key(dir.path());
    let key = dir.path().join("pgdrill-age.key");
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{store_s}\"\n[backup]\nspool_dir = \"{}\"\nspool_window_mib = 4\n\n[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\nglobals = true\n",
            spool.display(),
            key.display()
        ),
    )
    .expect("config");

    // The spool's allocated bytes, sampled while the backup runs.
    let (out, peak) = peak_allocated_while(&spool, 5, || {
        run(
            dir.path(),
            &["--json", "backup", "--jobs", "2"],
            &[("SRC", &src.url)],
        )
    });
    out.ok();
    let id = out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let m = manifest_of(&store, &id);
    assert_eq!(m["format_version"], 2);
    assert_eq!(m["layout"], "directory");

    // The big table's data file (~60 MB) never sat on disk whole: the window is 4 MiB.
    let big_raw: u64 = m["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["raw_size"].as_u64().expect("raw"))
        .max()
        .expect("some");
    assert!(
        big_raw > 50 << 20,
        "the big table's file is {big_raw} bytes"
    );
    assert!(
        peak < 32 << 20,
        "the spool took {peak} bytes at its peak, for a 4 MiB window"
    );
    let reported = m["spool_peak_bytes"].as_u64().expect("spool_peak_bytes");
    assert!(reported < 32 << 20, "reported peak {reported}");
    assert!(
        std::fs::read_dir(&spool).expect("spool").next().is_none(),
        "the spool directory is removed"
    );

    // Every object listed with digests matching the stored bytes; SHA256SUMS agrees.
    assert_objects_are_the_stored_bytes(&store, &id, &m);
    let objects = m["objects"].as_array().expect("objects");

    // Row counts as the source's, per table, in the manifest's content.
    assert_rows_are_the_sources(&src.url, &m).await;

    run(dir.path(), &["verify", "latest"], &[]).ok();

    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    // pgdrill's restore, parallel: streamed (each table's object read straight from the
    // store into its lane), nothing spooled on local disk.
    let target = src.cluster.url("restored");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp dir");
    let tmp_s = tmp.display().to_string();
    let (restored, tmp_peak) = peak_allocated_while(&tmp, 2, || {
        run(
            dir.path(),
            &[
                "--json", "restore", "latest", "--target", &target, "--jobs", "2",
            ],
            &[("TMPDIR", tmp_s.as_str())],
        )
    });
    restored.ok();
    let r = restored.json();
    assert_eq!(r["mode"], "stream", "{}", restored.stdout);
    assert_eq!(r["lanes"].as_u64().or(r["jobs"].as_u64()), Some(2));
    assert!(
        tmp_peak < (1 << 20),
        "the streamed restore took {tmp_peak} bytes of local disk"
    );
    assert!(
        std::fs::read_dir(&tmp).expect("tmp").next().is_none(),
        "the restore left files in TMPDIR"
    );
    // The data stage counted every table, its rows and the tables' bytes.
    assert_data_stage_counts(&r, &m, &restored.stdout);
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    // --spool keeps the spool-directory restore.
    let spooled_target = src.cluster.url("spooled");
    let spooled = run(
        dir.path(),
        &[
            "--json",
            "restore",
            "latest",
            "--target",
            &spooled_target,
            "--jobs",
            "2",
            "--spool",
        ],
        &[],
    );
    spooled.ok();
    assert_eq!(spooled.json()["mode"], "spool", "{}", spooled.stdout);
    tk::fingerprint(&spooled_target, &pg_dump())
        .await
        .assert_same(&want);

    // export: a plain directory-format archive that pg_restore reads.
    run(dir.path(), &["export", "latest", "-o", "app.dir"], &[]).ok();
    let target2 = empty_db(&src.cluster, "exported").await;
    pg_restore_dir(&target2, &dir.path().join("app.dir"), 2);
    tk::fingerprint(&target2, &pg_dump())
        .await
        .assert_same(&want);

    // Interrupted mid-way (SIGINT once pg_dump is writing): exit 1, every upload aborted,
    // nothing listable, the spool removed, no pg_dump left running.
    interrupted_backup_leaves_nothing(dir.path(), &src.url, &store, &spool, &id);

    // The README's standard-tools path: age -d | zstd -d each object into a directory,
    // then pg_restore -Fd -j 2.
    let std_dir = dir.path().join("std");
    std::fs::create_dir(&std_dir).expect("std dir");
    decode_with_standard_tools(&key, &store, &id, &m, &std_dir);
    let target3 = empty_db(&src.cluster, "standard").await;
    pg_restore_dir(&target3, &std_dir, 2);
    tk::fingerprint(&target3, &pg_dump())
        .await
        .assert_same(&want);

    // One byte flipped in the large table's stored object: the streamed restore fails with
    // exit 3 (integrity), says nothing was restored, and drops the database it created.
    let big = objects
        .iter()
        .filter(|o| o["kind"] == "data")
        .max_by_key(|o| o["size"].as_u64().unwrap_or(0))
        .expect("a data object");
    let (path, original) = flip_a_byte(&store, &id, big);
    let bad_target = src.cluster.url("corrupt");
    let bad = restore_latest(dir.path(), &bad_target);
    bad.code(3);
    assert!(
        !bad.stdout.contains("\"mode\""),
        "a report of success: {}",
        bad.stdout
    );
    assert!(
        bad.stderr.contains(big["name"].as_str().expect("name")),
        "the error names the damaged object: {}",
        bad.stderr
    );
    let exists: i64 = tk::connect(&src.url)
        .await
        .query_one(
            "select count(*) from pg_database where datname = 'corrupt'",
            &[],
        )
        .await
        .expect("pg_database")
        .get(0);
    assert_eq!(
        exists, 0,
        "the database the failed restore created is dropped"
    );

    // The same for a small table's object (decoded ahead of its COPY).
    std::fs::write(&path, &original).expect("restore the object");
    let small = objects
        .iter()
        .filter(|o| o["kind"] == "data" && o["rows"].as_u64().is_some_and(|r| r > 0))
        .min_by_key(|o| o["size"].as_u64().unwrap_or(0))
        .expect("a small data object");
    flip_a_byte(&store, &id, small);
    let bad = restore_latest(dir.path(), &bad_target);
    bad.code(3);
    assert!(
        bad.stderr.contains(small["name"].as_str().expect("name")),
        "the error names the damaged object: {}",
        bad.stderr
    );
}

/// To S3: a parallel backup restores; a store that loses one table's object (acknowledged,
/// not stored) fails the backup with nothing listable and nothing of it left in the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_backup_to_s3_restores_and_a_lost_object_publishes_nothing() {
    let src = source(None).await;
    let s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let dir = tempfile::tempdir().expect("tmp");
    let s3_env = s3.env();
    let mut env = env_refs(&s3_env);
    env.extend([
        ("PGDRILL_SOURCE_URL", src.url.as_str()),
        ("PGDRILL_STORE", "s3://backups/pg"),
    ]);
    let out = run(dir.path(), &["--json", "backup", "--jobs", "2"], &env);
    out.ok();
    let id = out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let keys_before = s3.list_keys("backups");
    assert!(
        keys_before.iter().any(|k| k.ends_with("/toc.dat.zst")),
        "{keys_before:?}"
    );
    let show = run(dir.path(), &["--json", "show", "latest"], &env);
    show.ok();
    let m = show.json();
    assert_eq!(m["layout"], "directory");
    let tables = m["content"]["tables"].as_array().expect("tables");
    assert!(!tables.is_empty());
    for o in m["objects"].as_array().expect("objects") {
        assert!(
            keys_before.contains(&format!(
                "pg/app/backups/{id}/{}",
                o["name"].as_str().expect("n")
            )),
            "{o}"
        );
    }
    run(dir.path(), &["verify", "latest"], &env).ok();
    let target = src.cluster.url("restored");
    let mut renv = env.clone();
    renv.push(("PGDRILL_TARGET_URL", target.as_str()));
    // The plan says the restore streams each table's object, and the restore does.
    let plan = run(
        dir.path(),
        &["--json", "restore", "latest", "--jobs", "2", "--dry-run"],
        &renv,
    );
    plan.ok();
    let p = plan.json();
    assert_eq!(p["mode"], "stream", "{}", plan.stdout);
    assert!(
        p["steps"].as_array().expect("steps").iter().any(|s| s
            .as_str()
            .is_some_and(|s| s.contains("each table's object"))),
        "{}",
        plan.stdout
    );
    let restored = run(
        dir.path(),
        &["--json", "restore", "latest", "--jobs", "2"],
        &renv,
    );
    restored.ok();
    assert_eq!(restored.json()["mode"], "stream", "{}", restored.stdout);
    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    // A drill restores it and finds every table's rows as the manifest counted them.
    let drill = run(
        dir.path(),
        &[
            "--json",
            "drill",
            "latest",
            "--target",
            &src.cluster.url("postgres"),
        ],
        &env,
    );
    drill.ok();
    let r = drill.json();
    assert_eq!(r["verdict"], "pass", "{}", drill.stdout);
    assert!(
        r["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["kind"] == "row_counts"),
        "{}",
        drill.stdout
    );

    // One table's data object is lost by the store: no manifest, nothing listable, and the
    // objects the failed backup did store are deleted again.
    let mut fenv = env.clone();
    fenv.push(("PGDRILL_TEST_DROP_PUT", ".dat.zst"));
    let failed = run(dir.path(), &["--json", "backup", "--jobs", "2"], &fenv);
    failed.code(1);
    assert_listed(dir.path(), &env, 1);
    let mut keys_after = s3.list_keys("backups");
    keys_after.retain(|k| k.contains("/backups/"));
    let mut before = keys_before.clone();
    before.retain(|k| k.contains("/backups/"));
    assert_eq!(keys_after, before, "the failed backup left objects behind");
}

/// A parallel backup of a LATIN1 database (pgdrill's own COPY speaks UTF8, so each table's
/// object reaches `pg_restore -Fd` through a named pipe) and unencrypted: the streamed restore
/// gives the same schema, rows, large objects and sequences, and spools nothing.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_restore_of_a_latin1_parallel_backup_pipes_objects_into_pg_restore() {
    let cluster = tk::cluster(None);
    let admin = tk::connect(&cluster.url("postgres")).await;
    let url = latin1_db(&cluster, "latin").await;
    tk::connect(&url)
        .await
        .batch_execute(
            "create table words (id int primary key, w text);
             insert into words select g, 'caf\u{e9} ' || g || repeat('x', 200) from generate_series(1, 300000) g;
             create table empty_one (v int);
             create sequence ticket; select setval('ticket', 77);
             select lo_from_bytea(0, '\\x00ff10');",
        )
        .await
        .expect("latin1 data");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store").display().to_string();
    run(
        dir.path(),
        &["backup", "--jobs", "2", "--source", &url, "--store", &store],
        &[],
    )
    .ok();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp dir");
    let tmp_s = tmp.display().to_string();
    let target = cluster.url("latin_restored");
    let out = run(
        dir.path(),
        &[
            "--json", "restore", "latest", "--name", "latin", "--store", &store, "--jobs", "2",
            "--target", &target,
        ],
        &[("TMPDIR", tmp_s.as_str())],
    );
    out.ok();
    assert_eq!(out.json()["mode"], "stream", "{}", out.stdout);
    assert!(
        std::fs::read_dir(&tmp).expect("tmp").next().is_none(),
        "the restore left files in TMPDIR"
    );
    let want = tk::fingerprint(&url, &pg_dump()).await;
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    // Interrupted while the lanes load: exit 1, the database it created dropped, no
    // pg_restore left running, nothing left in TMPDIR.
    let mut child = cmd(dir.path())
        .args([
            "restore",
            "latest",
            "--name",
            "latin",
            "--store",
            &store,
            "--jobs",
            "2",
            "--target",
            &cluster.url("latin_cancel"),
        ])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    loop {
        let copying: i64 = admin
            .query_one(
                "select count(*) from pg_stat_activity where datname = 'latin_cancel' and query ilike 'copy %'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if copying > 0 {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "no COPY ever started");
        assert!(child.try_wait().expect("wait").is_none(), "ended too soon");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    interrupt(child);
    let exists: i64 = admin
        .query_one(
            "select count(*) from pg_database where datname = 'latin_cancel'",
            &[],
        )
        .await
        .expect("pg_database")
        .get(0);
    assert_eq!(exists, 0, "the interrupted restore's database is dropped");
    assert!(
        std::fs::read_dir(&tmp).expect("tmp").next().is_none(),
        "the interrupted restore left files in TMPDIR"
    );
    let left = processes_mentioning(&tmp.display().to_string());
    assert!(left.is_empty(), "pg_restore left running: {left:?}");
}
