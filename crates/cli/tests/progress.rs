//! Progress on a terminal (a pty from util-linux `script`): the stages of a backup and of a
//! streamed restore (`--jobs 2`) with their percent and the bytes, tables and rows the data
//! stage loaded; nothing when stderr is not a terminal; the same stages in `--json`.

mod common;
mod restore_util;
use common::*;
use restore_util::*;
use std::path::Path;
use std::process::Stdio;

/// Runs `pgdrill args` with stderr on a pty (`script -qfec`), stdout into a file; returns
/// (what the terminal showed, stdout).
fn on_terminal(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out_file = dir.join("stdout.json");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line: Vec<String> = vec![quote(&bin().display().to_string())];
    line.extend(args.iter().map(|a| quote(a)));
    line.push(format!("> {}", quote(&out_file.display().to_string())));
    let mut c = std::process::Command::new("script");
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        )
        .env("PGDRILL_PG_PATHS", pg_paths())
        .env("TERM", "xterm")
        .current_dir(dir)
        .stdin(Stdio::null())
        .args(["-qfec", &line.join(" "), "/dev/null"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .output()
        .expect("util-linux `script` runs (apt-get install bsdutils)");
    let tty = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "pgdrill failed on a terminal: {tty}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = std::fs::read_to_string(&out_file).expect("stdout file");
    (tty, stdout)
}

/// The ended-stage line of `name` on the terminal.
fn stage_line<'a>(tty: &'a str, name: &str) -> &'a str {
    tty.split(['\r', '\n'])
        .find(|l| l.contains(&format!("stage {name}")) && l.contains(" ended after "))
        .unwrap_or_else(|| panic!("no ended line for stage {name:?} in:\n{tty}"))
}

fn stage<'a>(j: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    j["stages"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        })
        .unwrap_or_else(|| panic!("no stage {prefix:?} in {j}"))
}

fn assert_no_progress(stderr: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b[") && !stderr.contains(" ended after "),
        "progress drawn although stderr is not a terminal:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_of_a_backup_and_a_streamed_restore_on_a_terminal_only() {
    let src = source(None).await;
    // Enough rows that the data stage has something to count (a few MiB).
    tk_exec(
        &src.url,
        "create table big (id int primary key, pad text); \
         insert into big select g, repeat(md5(g::text), 3) from generate_series(1, 60000) g;",
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let env = [("PGDRILL_SOURCE_URL", src.url.as_str())];

    // Not a terminal: no progress at all, but --json has the stages; the first backup's
    // total is pg_database_size.
    let out = run(dir.path(), &["--json", "backup", "--store", &store_s], &env);
    out.ok();
    assert_no_progress(&out.stderr);
    let b = &out.json()["backups"][0];
    for name in ["snapshot", "dump", "finish upload", "manifest"] {
        stage(b, name);
    }
    let dump = stage(b, "dump");
    assert_eq!(dump["bytes"], b["raw_bytes"], "{b}");
    assert_eq!(dump["total_from"], "pg_database_size", "{b}");
    assert!(dump["seconds"].as_f64().is_some() && dump["started_at"].is_string());

    // On a terminal: every stage, the dump's percent against the previous backup's size.
    let (tty, stdout) = on_terminal(dir.path(), &["--json", "backup", "--store", &store_s], &env);
    let line = stage_line(&tty, "dump");
    assert!(
        line.contains("%, estimated from the previous backup)"),
        "{line}"
    );
    stage_line(&tty, "snapshot");
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        stage(&j["backups"][0], "dump")["total_from"],
        "previous backup"
    );

    // A streamed restore with 2 lanes on a terminal: schema, data (bytes and tables),
    // indexes and constraints, analyze.
    let target = src.cluster.url("copy_tty");
    let (tty, stdout) = on_terminal(
        dir.path(),
        &[
            "--json", "restore", "latest", "--store", &store_s, "--target", &target, "--jobs", "2",
        ],
        &[],
    );
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(j["mode"], "stream", "{j}");
    let schema = stage_line(&tty, "restore: schema");
    assert!(
        !schema.contains("B"),
        "the lanes' bytes belong to the data stage: {schema}"
    );
    let data = stage_line(&tty, "restore: data (");
    assert!(
        data.contains("%)") && data.contains(" tables") && data.contains(" rows"),
        "{data}"
    );
    assert!(
        !data.contains(": 0 B"),
        "the data stage counted nothing: {data}"
    );
    stage_line(&tty, "restore: indexes and constraints");
    stage_line(&tty, "analyze");
    let d = stage(&j, "restore: data");
    assert!(d["bytes"].as_u64().unwrap_or(0) > 1 << 20, "{d}");
    assert_eq!(d["bytes"], d["total_bytes"], "{d}");
    assert_eq!(d["items"], d["items_total"], "{d}");
    assert_eq!(d["item_unit"], "tables");
    assert_eq!(d["rows"], d["rows_total"], "{d}");
    assert!(d["rows"].as_u64().unwrap_or(0) > 60000, "{d}");
    assert!(j["download_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{j}");
    assert_eq!(
        scalar(&target, "select count(*)::text from big").await,
        "60000"
    );

    // The same restore not on a terminal: silent.
    let target = src.cluster.url("copy_pipe");
    let out = restore(dir.path(), &store, &target, &["--jobs", "2"]);
    out.ok();
    assert_no_progress(&out.stderr);
    assert_eq!(stage(&out.json(), "restore: data")["item_unit"], "tables");

    // --jobs 1 (one pg_restore reading the stream): once the dump is all read, the index
    // and constraint builds are a stage of their own, not "100%" of the download.
    let target = src.cluster.url("copy_one");
    let out = restore(dir.path(), &store, &target, &["--jobs", "1"]);
    out.ok();
    assert_no_progress(&out.stderr);
    let j = out.json();
    assert_eq!(j["mode"], "pipe", "{j}");
    let read = stage(&j, "download + restore");
    assert!(read["bytes"].as_u64().unwrap_or(0) > 0, "{j}");
    assert_eq!(read["bytes"], read["total_bytes"], "{j}");
    let names: Vec<&str> = j["stages"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    let at = |n: &str| names.iter().position(|x| *x == n);
    assert!(
        at("download + restore").is_some()
            && at("download + restore") < at("restore: indexes and constraints")
            && at("restore: indexes and constraints") < at("analyze"),
        "{names:?}"
    );
    assert_eq!(
        scalar(&target, "select count(*)::text from big").await,
        "60000"
    );
}

async fn tk_exec(url: &str, sql: &str) {
    pgdrill_testkit::connect(url)
        .await
        .batch_execute(sql)
        .await
        .expect("sql");
}

/// The `N/T items` of the ended line and of every progress line drawn for stage `name`.
fn item_counts(tty: &str, name: &str) -> (Vec<(u64, u64)>, (u64, u64)) {
    let parse = |l: &str| -> Option<(u64, u64)> {
        let before = l.split(" items").next()?;
        let (n, t) = before.rsplit(' ').next()?.split_once('/')?;
        Some((n.parse().ok()?, t.parse().ok()?))
    };
    let drawn = tty
        .split(['\r', '\n'])
        .map(|l| l.trim_start_matches("\x1b[2K"))
        .filter(|l| l.starts_with(&format!("{name}: ")))
        .filter_map(parse)
        .collect();
    let ended = parse(stage_line(tty, name))
        .unwrap_or_else(|| panic!("no items in the ended line of {name}:\n{tty}"));
    (drawn, ended)
}

/// What the restore traced (`PGDRILL_TEST_RESTORE_TRACE`, debug builds): pg_restore's raw
/// stderr, then the items counted of the total and the listed ones not counted.
fn read_trace(file: &Path) -> String {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| format!("(no trace at {}: {e})", file.display()));
    format!("pg_restore's stderr and the count, as traced:\n{text}")
}

/// Counts drawn while pg_restore ran grew: a count below the total, and a larger one later.
fn assert_grew(drawn: &[(u64, u64)], total: u64, tty: &str) {
    assert!(
        drawn.iter().all(|&(_, t)| t == total),
        "totals differ: {drawn:?}"
    );
    let first = drawn.iter().map(|d| d.0).find(|&n| n < total);
    let last = drawn.iter().map(|d| d.0).max();
    assert!(
        matches!((first, last), (Some(f), Some(l)) if f < l),
        "no growing count below the total {total}: {drawn:?}\n{tty}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spool_and_a_directory_layout_restore_count_the_archive_items() {
    let src = source(None).await;
    // Index builds that take a while (an expression calling a slow function per row), so the
    // terminal shows the count between the first item and the last.
    let mut sql = String::from(
        "create function slow(i int) returns int language plpgsql immutable \
           as $$ begin perform pg_sleep(0.03); return i; end $$; \
         create table slow_rows (id int); insert into slow_rows select generate_series(1, 10);",
    );
    for k in 0..6 {
        sql.push_str(&format!(
            "create index slow_{k} on slow_rows ((public.slow(id) + {k}));"
        ));
    }
    tk_exec(&src.url, &sql).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let env = [("PGDRILL_SOURCE_URL", src.url.as_str())];
    run(dir.path(), &["--json", "backup", "--store", &store_s], &env).ok();

    // `restore --spool --jobs 2`: one pg_restore over the verified spool file; the leader's
    // items, each counted once by its id.
    let target = src.cluster.url("spooled_tty");
    let trace = dir.path().join("spooled.trace");
    let trace_s = trace.display().to_string();
    let (tty, stdout) = on_terminal(
        dir.path(),
        &[
            "--json", "restore", "latest", "--store", &store_s, "--target", &target, "--spool",
            "--jobs", "2",
        ],
        &[("PGDRILL_TEST_RESTORE_TRACE", &trace_s)],
    );
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(j["mode"], "spool", "{j}");
    let (drawn, (done, total)) = item_counts(&tty, "restore");
    assert!(
        total > 6 && done == total,
        "{done}/{total}:\n{tty}\n{}",
        read_trace(&trace)
    );
    assert_grew(&drawn, total, &tty);
    let r = stage(&j, "restore");
    assert_eq!(r["item_unit"], "items", "{r}");
    assert_eq!(r["items"], r["items_total"], "{r}\n{}", read_trace(&trace));
    assert_eq!(r["items_total"].as_u64(), Some(total));
    assert_eq!(
        scalar(
            &target,
            "select count(*)::text from pg_indexes where indexname like 'slow_%'"
        )
        .await,
        "6"
    );

    // A parallel backup (directory layout), restored by one `pg_restore -Fd` (one job) over
    // the spooled directory: each item's one line as it starts.
    let out = run(
        dir.path(),
        &["--json", "backup", "--store", &store_s, "--jobs", "2"],
        &env,
    );
    out.ok();
    let target = src.cluster.url("directory_tty");
    let trace = dir.path().join("directory.trace");
    let trace_s = trace.display().to_string();
    let (tty, stdout) = on_terminal(
        dir.path(),
        &[
            "--json", "restore", "latest", "--store", &store_s, "--target", &target, "--jobs", "1",
        ],
        &[("PGDRILL_TEST_RESTORE_TRACE", &trace_s)],
    );
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let (drawn, (done, dir_total)) = item_counts(&tty, "restore");
    assert_eq!(
        (done, dir_total),
        (total, total),
        "{tty}\n{}",
        read_trace(&trace)
    );
    assert_grew(&drawn, total, &tty);
    let r = stage(&j, "restore");
    assert_eq!(r["items"], r["items_total"], "{r}\n{}", read_trace(&trace));
    assert_eq!(
        scalar(&target, "select count(*)::text from slow_rows").await,
        "10"
    );

    // Not on a terminal: silent, and pg_restore's error still names the failing statement.
    // Rows whose check holds only in the source database: every restore's COPY fails.
    tk_exec(
        &src.url,
        "create table only_here (d text check (d = current_database())); \
         insert into only_here values ('app');",
    )
    .await;
    let fstore = dir.path().join("fstore");
    let fstore_s = fstore.display().to_string();
    for (backup_jobs, jobs) in [("1", "2"), ("2", "1")] {
        run(
            dir.path(),
            &[
                "--json",
                "backup",
                "--store",
                &fstore_s,
                "--jobs",
                backup_jobs,
            ],
            &env,
        )
        .ok();
        let target = src.cluster.url(&format!("fails_{jobs}"));
        let out = restore(dir.path(), &fstore, &target, &["--spool", "--jobs", jobs]);
        out.code(1);
        assert_no_progress(&out.stderr);
        assert!(
            out.stderr.contains("only_here_d_check")
                && out.stderr.contains("COPY")
                && out.stderr.contains("pg_restore reported 1 error(s)")
                && !out.stderr.contains("processing data for table"),
            "{}",
            out.stderr
        );
    }
}
