//! `pgdrill serve` for real: second-level schedules against a testkit source and a folder
//! store, the HTTP endpoints (auth, /healthz, /metrics parsed as Prometheus text, the
//! dashboard, a drill report), the dashboard rendered by headless Chromium, and SIGTERM.

mod common;
mod serve_support;
use common::*;
use serve_support::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "serve-test-token-0123456789";
const USER: &str = "ops";
const PASSWORD: &str = "dashboard-pw-42";
const GRACE_SECONDS: u64 = 20;

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_schedules_serves_metrics_and_dashboard_and_stops_on_sigterm() {
    let started = Instant::now();
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let port = free_port();
    // The drill schedule has fired before and no drill exists: serve catches it up once at
    // start, after the backup (both are due; one job per database at a time).
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n\
             [policy]\nrto_minutes = 30\nrpo_minutes = 60\n\
             [schedule]\nbackup = \"every 2s\"\nstatus = \"every 1s\"\ndrill = \"first_sunday\"\nprune = \"off\"\n\
             [serve]\nbearer_token_env = \"SERVE_TOKEN\"\nbasic_auth_user = \"{USER}\"\n\
             basic_auth_password_env = \"SERVE_PASSWORD\"\nshutdown_grace_seconds = {GRACE_SECONDS}\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            store.display()
        ),
    )
    .expect("config");
    // A TMPDIR of its own marks serve and everything it starts: pgdrill hands its libpq
    // children only an allowlisted environment, and TMPDIR is on the list.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir tmp");
    let marker = format!("TMPDIR={}", tmp.display());
    let (mk, mv) = marker.split_once('=').expect("marker");
    let mut child = cmd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("SRC", &src.url)
        .env("SERVE_TOKEN", TOKEN)
        .env("SERVE_PASSWORD", PASSWORD)
        .env(mk, mv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");

    wait_until(&mut child, 45, "three backups and a drill", || {
        backup_ids(&store, "app").len() >= 3 && !drill_ids(&store).is_empty()
    });

    // /healthz is open; everything else needs the token (or basic auth).
    assert_eq!(get(port, "/healthz", None), (200, "ok\n".into()));
    assert_eq!(get(port, "/metrics", None).0, 401);
    assert_eq!(get(port, "/", Some("Bearer wrong-token")).0, 401);
    assert_eq!(get(port, "/", Some("Basic b3BzOnd4")).0, 401);

    // The store view is refreshed after each job: wait until metrics show the backups.
    let mut metrics = Samples::new();
    wait_until(&mut child, 10, "metrics with the backups", || {
        let (code, body) = get(port, "/metrics", Some(&bearer()));
        assert_eq!(code, 200, "{body}");
        metrics = parse_prometheus(&body);
        value(&metrics, "pgdrill_backups", &[("database", "app")]).unwrap_or(0.0) >= 3.0
            && value(&metrics, "pgdrill_check_failures", &[("database", "app")]).is_some()
    });
    fn job(j: &str) -> [(&str, &str); 2] {
        [("task", j), ("database", "app")]
    }
    assert!(value(
        &metrics,
        "pgdrill_job_last_success_timestamp_seconds",
        &job("backup")
    )
    .is_some());
    assert!(value(
        &metrics,
        "pgdrill_job_last_success_timestamp_seconds",
        &job("drill")
    )
    .is_some());
    assert!(
        value(&metrics, "pgdrill_job_duration_seconds", &job("backup")).expect("duration") > 0.0
    );
    assert!(value(&metrics, "pgdrill_job_running", &job("backup")).is_some());
    assert!(value(&metrics, "pgdrill_job_running", &job("status")).is_some());
    assert_eq!(
        value(&metrics, "pgdrill_check_failures", &[("database", "app")]),
        Some(0.0)
    );
    assert!(
        value(
            &metrics,
            "pgdrill_all_backups_stored_bytes",
            &[("database", "app")]
        )
        .expect("bytes")
            > 0.0
    );
    assert!(value(
        &metrics,
        "pgdrill_drill_rto_seconds",
        &[("database", "app")]
    )
    .is_some());
    assert_eq!(
        value(
            &metrics,
            "pgdrill_slo_ok",
            &[("database", "app"), ("slo", "backup_freshness")]
        ),
        Some(1.0)
    );

    // The dashboard, and a drill's report.
    let ids = backup_ids(&store, "app");
    let (code, page) = get(port, "/", Some(&bearer()));
    assert_eq!(code, 200);
    assert!(page.contains("<h2>app</h2>"), "{page}");
    assert!(page.contains(&ids[0]) || page.contains(&ids[ids.len() - 1]));
    assert!(page.contains("<svg class=chart") && page.contains("<table class=backups>"));
    let drill = drill_ids(&store).remove(0);
    assert!(page.contains(&format!("/drills/app/{drill}")), "{page}");
    let (code, report) = get(port, &format!("/drills/app/{drill}"), Some(&bearer()));
    assert_eq!(code, 200);
    assert!(
        report.contains("<html") && report.contains("restore drill"),
        "{report}"
    );
    assert_eq!(
        get(port, "/drills/app/..%2F..%2Fetc", Some(&bearer())).0,
        404
    );
    assert_eq!(get(port, "/nope", Some(&bearer())).0, 404);

    // Headless Chromium renders it (basic auth in the URL; it cannot send a bearer header).
    let url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}/");
    let shot = dir.path().join("dashboard.png");
    let work = dir.path().to_path_buf();
    let (shot_c, url_c, work_c) = (shot.clone(), url.clone(), work.clone());
    let screenshot = std::thread::spawn(move || {
        chromium(
            &[
                format!("--screenshot={}", shot_c.display()),
                "--window-size=1280,1600".into(),
                url_c,
            ],
            &work_c,
        )
    });
    let dom = chromium(&["--dump-dom".into(), url], &work);
    screenshot.join().expect("screenshot thread");
    let dom = String::from_utf8_lossy(&dom).into_owned();
    assert!(
        dom.contains("<svg class=\"chart\""),
        "no chart in the DOM:\n{dom}"
    );
    assert!(
        dom.contains("<polyline"),
        "no chart line in the DOM:\n{dom}"
    );
    let rows = dom.matches("<tr>").count();
    assert!(
        rows >= 3 + 1 + 4,
        "too few table rows ({rows}) in the DOM:\n{dom}"
    );
    assert!(dom.contains(&ids[ids.len() - 1]) || dom.contains(&ids[ids.len() - 2]));
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 10 * 1024,
        "the screenshot is only {} bytes",
        png.len()
    );
    std::fs::write(artifacts_dir().join("dashboard.png"), &png).expect("keep the screenshot");

    // SIGTERM: the running job finishes (or is aborted) within the grace, exit 0, and
    // nothing serve started is left running.
    let t = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(GRACE_SECONDS + 10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within the grace"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    assert_eq!(
        status.code(),
        Some(0),
        "serve exit status; stderr:\n{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(GRACE_SECONDS + 5));
    assert!(stderr.contains("serve: stopped"), "{stderr}");
    // Each daemon line starts with its RFC 3339 UTC timestamp.
    let stopped = stderr
        .lines()
        .find(|l| l.ends_with(" serve: stopped"))
        .expect("the stopped line");
    let ts = stopped.split(' ').next().expect("ts");
    assert!(
        ts.ends_with('Z') && ts.parse::<pgdrill_core::time::Timestamp>().is_ok(),
        "{stopped}"
    );
    assert!(stderr.contains("missed a scheduled run"), "{stderr}");
    for bad in ["panicked", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{stderr}");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = marked_processes(&marker);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running after serve stopped: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !store.join("app/lease.json").exists(),
        "the lease was released"
    );
    eprintln!(
        "serve test took {:.1}s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
}

/// A pg_dump that never finishes (a shim that sleeps): SIGTERM waits the grace (1 s), then
/// aborts the backup cleanly (pg_dump killed, no manifest, lease released) and exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn serve_aborts_a_job_that_outlives_the_shutdown_grace() {
    use std::os::unix::fs::PermissionsExt;
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let real = pgdrill_testkit::pg_bin("pg_dump", src.cluster.version().major);
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(&shim).expect("mkdir shim");
    let script = format!(
        "#!/bin/bash\ncase \"$1\" in --version|-V) exec '{}' \"$@\" ;; esac\nexec sleep 300\n",
        real.display()
    );
    std::fs::write(shim.join("pg_dump"), script).expect("shim");
    std::fs::set_permissions(shim.join("pg_dump"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    for tool in ["pg_restore", "psql", "pg_dumpall"] {
        let t = real.parent().expect("bin").join(tool);
        if t.exists() {
            std::os::unix::fs::symlink(&t, shim.join(tool)).expect("symlink");
        }
    }
    let port = free_port();
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[schedule]\nbackup = \"every 1h\"\nstatus = \"off\"\nprune = \"off\"\n\
             [serve]\nshutdown_grace_seconds = 1\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            store.display()
        ),
    )
    .expect("config");
    // A TMPDIR of its own marks serve and everything it starts: pgdrill hands its libpq
    // children only an allowlisted environment, and TMPDIR is on the list.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir tmp");
    let marker = format!("TMPDIR={}", tmp.display());
    let (mk, mv) = marker.split_once('=').expect("marker");
    let mut child = cmd(dir.path())
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("SRC", &src.url)
        .env("PGDRILL_PG_BIN", &shim)
        .env(mk, mv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    // No backup yet: the hourly backup is caught up at start, and hangs in pg_dump.
    wait_until(&mut child, 20, "pg_dump running", || {
        marked_processes(&marker)
            .iter()
            .any(|p| p.contains("sleep 300"))
    });
    let (code, body) = get(port, "/metrics", None);
    assert_eq!(code, 200, "no auth configured: metrics are open");
    let m = parse_prometheus(&body);
    assert_eq!(
        value(
            &m,
            "pgdrill_job_running",
            &[("task", "backup"), ("database", "app")]
        ),
        Some(1.0)
    );
    let t = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after the grace"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "the grace was not waited for"
    );
    assert!(stderr.contains("aborting the running job"), "{stderr}");
    // --log-format json: the daemon's lines are one JSON object each.
    let abort_line = stderr
        .lines()
        .find(|l| l.contains("aborting the running job"))
        .expect("abort line");
    let v: serde_json::Value = serde_json::from_str(abort_line).expect("a JSON log line");
    // Aborting jobs is worth a warning.
    assert_eq!(v["level"], "warn", "{abort_line}");
    assert_eq!(v["component"], "serve", "{abort_line}");
    assert!(
        v["ts"]
            .as_str()
            .is_some_and(|t| t.parse::<pgdrill_core::time::Timestamp>().is_ok()),
        "{abort_line}"
    );
    assert!(stderr.contains("backup of app failed"), "{stderr}");
    // The job's lines carry its level, job and database as fields.
    let failed_line = stderr
        .lines()
        .find(|l| l.contains("backup of app failed"))
        .expect("failed line");
    let v: serde_json::Value = serde_json::from_str(failed_line).expect("a JSON log line");
    assert_eq!(v["level"], "error", "{failed_line}");
    assert_eq!(v["job"], "backup", "{failed_line}");
    assert_eq!(v["database"], "app", "{failed_line}");
    // What the backup job itself reported (its start) is a line of that job.
    let own = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["component"] == "job")
        .unwrap_or_else(|| panic!("no line from the job itself: {stderr}"));
    assert_eq!(own["database"], "app", "{own}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = marked_processes(&marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let manifests = files_below(&store)
        .into_iter()
        .filter(|f| f.ends_with("manifest.json"))
        .count();
    assert_eq!(manifests, 0, "an aborted backup wrote a manifest");
    assert!(
        !store.join("app/lease.json").exists(),
        "the lease was not released"
    );
}

/// The test's own Prometheus parser accepts the exposition format and rejects what is not.
#[test]
fn prometheus_parser_checks_the_text_format() {
    let ok =
        "# HELP a_b Help text.\n# TYPE a_b gauge\na_b{x=\"1\",y=\"q\\\"\\\\\\n\"} 2.5\na_b 1e3\n";
    let m = parse_prometheus(ok);
    assert_eq!(value(&m, "a_b", &[("y", "q\"\\\n")]), Some(2.5));
    assert_eq!(m["a_b"].len(), 2);
    for bad in [
        "a_b 1\n",                              // no TYPE before the sample
        "# TYPE a_b gauge\na_b{x=1} 1\n",       // unquoted label value
        "# TYPE a_b gauge\na_b{x=\"1\"} one\n", // not a number
        "# TYPE 1ab gauge\n",                   // bad name
        "# TYPE a_b gauge\n# TYPE a_b gauge\n", // repeated TYPE
        "# TYPE a_b gauge\na_b{x=\"1\" 1\n",    // unterminated labels
    ] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted: {bad:?}");
    }
}
