//! `pgdrill serve`'s `/api/v1/` and `/metrics` for real: every endpoint's answer validated
//! against `docs/schemas/api-*.json` and compared with what the store holds, paging, the JSON
//! errors (401, 404, 405, 400), `/metrics` through `promtool check metrics` with the series
//! the README lists (SLOs always present, `task` not `job`, counters, build info, targets),
//! and `examples/monitoring/` (`promtool check rules`, `promtool test rules` on its unit
//! tests; every series the rules and the Grafana dashboard use is one the scrape has). One source, two backups and a drill made by the
//! CLI, and a second database whose backups fail; two folder stores and `[drill]
//! coverage_days`, so that the per-store (`store`-labelled) and drill coverage series are in
//! the scrape (app proven, gone overdue: a ratio of 0.5).

mod common;
mod serve_support;
use common::*;
use pgdrill_testkit::schema;
use serde_json::Value;
use serve_support::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "api-test-token-0123456789";

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

/// `GET path` with the token: (status, JSON body), the body checked against `schema_file`.
#[track_caller]
fn api(port: u16, path: &str, schema_file: &str) -> (u16, Value) {
    let (code, body) = get(port, path, Some(&auth()));
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    assert_eq!(v["schema_version"], 1, "{path}: {v}");
    schema::assert_valid(schema_file, &v);
    (code, v)
}

/// A raw request with any method; (status, content type, body).
fn request(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        auth()
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("code");
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (code, ctype, body.to_string())
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut c = Command::new("promtool");
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| {
        panic!("promtool is missing ({e}): run `sudo bash scripts/setup-test-deps.sh`")
    });
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
    }
    drop(child.stdin.take());
    let o = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// The `pgdrill_…` metric names a rules file or dashboard names (a bare `pgdrill_*` in a
/// comment is not one).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("pgdrill_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !tail[..end].ends_with('_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn api_metrics_and_monitoring_examples_match_what_serve_emits() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let store = d.join("store");
    std::fs::write(
        d.join("pgdrill.toml"),
        format!(
            "[[store]]\nname = \"primary\"\nurl = \"{}\"\n\
             [[store]]\nname = \"offsite\"\nurl = \"{}\"\n[policy]\nrto_minutes = 30\nrpo_minutes = 600\n\
             [schedule]\nbackup = \"every 1h\"\nstatus = \"every 1s\"\ndrill = \"0 0 1 1 *\"\nprune = \"off\"\n\
             [drill]\ncoverage_days = 30\n\
             [serve]\nbearer_token_env = \"SERVE_TOKEN\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n\
             [[database]]\nname = \"gone\"\nurl_env = \"GONE\"\n",
            store.display(),
            d.join("offsite").display()
        ),
    )
    .expect("config");
    let gone = "postgresql://nobody@127.0.0.1:1/gone?connect_timeout=2";
    let env = [("SRC", src.url.as_str()), ("GONE", gone)];
    for _ in 0..2 {
        run(d, &["backup", "--name", "app"], &env).ok();
    }
    run(d, &["drill", "--name", "app"], &env).ok();
    let backups = backup_ids(&store, "app");
    let drills = drill_ids(&store);
    assert_eq!((backups.len(), drills.len()), (2, 1));

    let port = free_port();
    let mut child = cmd(d)
        .args(["--json", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("SRC", &src.url)
        .env("GONE", gone)
        .env("SERVE_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");

    wait_until(&mut child, 20, "serve listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The failing database's backup is caught up at start; status runs every second.
    let mut jobs = Value::Null;
    wait_until(
        &mut child,
        40,
        "a failed backup of gone and a status run",
        || {
            let (code, body) = get(port, "/api/v1/jobs", Some(&auth()));
            if code != 200 {
                return false;
            }
            jobs = serde_json::from_str(&body).expect("jobs JSON");
            let rows = jobs["jobs"].as_array().cloned().unwrap_or_default();
            let find = |task: &str, db: &str| {
                rows.iter()
                    .find(|j| j["task"] == task && j["database"] == db)
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            find("backup", "gone")["runs_failed"].as_u64() >= Some(1)
                && find("drill", "gone")["runs_failed"].as_u64() >= Some(1)
                && find("status", "app")["runs_ok"].as_u64() >= Some(1)
        },
    );
    schema::assert_valid("api-jobs.schema.json", &jobs);

    // The API, against what the store holds.
    let (code, st) = api(port, "/api/v1/status", "api-status.schema.json");
    assert_eq!(code, 200);
    assert_eq!(st["ok"], false, "gone has no backup: {st}");
    let app = st["databases"]
        .as_array()
        .expect("dbs")
        .iter()
        .find(|x| x["database"] == "app")
        .expect("app")
        .clone();
    assert_eq!(app["backups"], 2, "{app}");
    assert_eq!(app["rto_target_seconds"], 1800, "{app}");
    let (_, dbs) = api(port, "/api/v1/databases", "api-databases.schema.json");
    let names: Vec<&str> = dbs["databases"]
        .as_array()
        .expect("dbs")
        .iter()
        .map(|x| x["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["app", "gone"], "{dbs}");
    let (_, b) = api(
        port,
        "/api/v1/backups?database=app",
        "api-backups.schema.json",
    );
    let listed: Vec<String> = b["databases"][0]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|x| x["backup_id"].as_str().expect("id").to_string())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, backups, "{b}");
    let (_, b) = api(
        port,
        "/api/v1/backups?database=app&limit=1",
        "api-backups.schema.json",
    );
    let page = &b["databases"][0];
    assert_eq!(page["backups"][0]["backup_id"], listed[0].as_str(), "{b}");
    assert_eq!(page["next_before"], listed[0].as_str(), "{b}");
    let (_, b2) = api(
        port,
        &format!("/api/v1/backups?database=app&limit=1&before={}", listed[0]),
        "api-backups.schema.json",
    );
    assert_eq!(
        b2["databases"][0]["backups"][0]["backup_id"],
        listed[1].as_str()
    );
    assert!(b2["databases"][0]["next_before"].is_null(), "{b2}");
    let (_, all) = api(port, "/api/v1/backups", "api-backups.schema.json");
    assert_eq!(all["databases"].as_array().map(Vec::len), Some(2), "{all}");
    let (_, dr) = api(
        port,
        "/api/v1/drills?database=app",
        "api-drills.schema.json",
    );
    let first = &dr["databases"][0]["drills"][0];
    assert_eq!(first["drill_id"], drills[0].as_str(), "{dr}");
    assert!(
        first["rto_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{dr}"
    );
    assert_eq!(first["rto_target_seconds"], 1800);

    // Errors are JSON too.
    let (code, _, body) = request(port, "GET", "/api/v1/nope");
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).expect("404 JSON");
    schema::assert_valid("api-error.schema.json", &v);
    assert_eq!(v["error"]["status"], 404);
    let (code, ctype, body) = request(port, "POST", "/api/v1/status");
    assert_eq!((code, ctype.as_str()), (405, "application/json"), "{body}");
    schema::assert_valid(
        "api-error.schema.json",
        &serde_json::from_str(&body).expect("j"),
    );
    let (code, body) = get(port, "/api/v1/status", None);
    assert_eq!(code, 401);
    let v: Value = serde_json::from_str(&body).expect("401 JSON");
    schema::assert_valid("api-error.schema.json", &v);
    assert_eq!(get(port, "/api/v1/backups?limit=0", Some(&auth())).0, 400);
    assert_eq!(
        get(port, "/api/v1/backups?database=nope", Some(&auth())).0,
        404
    );
    assert_eq!(get(port, "/api/v2/status", Some(&auth())).0, 404);

    // /metrics: promtool-clean, with the series the README documents.
    let (code, text) = get(port, "/metrics", Some(&auth()));
    assert_eq!(code, 200);
    let (ok, lint) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics:\n{lint}\n{text}");
    let m = parse_prometheus(&text);
    for slo in pgdrill_core::status::SLO_NAMES {
        for db in ["app", "gone"] {
            assert!(
                value(&m, "pgdrill_slo_ok", &[("database", db), ("slo", slo)]).is_some(),
                "no pgdrill_slo_ok for {db}/{slo}:\n{text}"
            );
        }
    }
    assert_eq!(
        value(
            &m,
            "pgdrill_slo_ok",
            &[("database", "app"), ("slo", "last_run")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "pgdrill_slo_ok",
            &[("database", "gone"), ("slo", "backup_freshness")]
        ),
        Some(0.0)
    );
    // Drill coverage ([drill] coverage_days = 30): app passed its drill, gone never did.
    assert_eq!(value(&m, "pgdrill_drill_coverage_ratio", &[]), Some(0.5));
    assert_eq!(value(&m, "pgdrill_drill_coverage_overdue", &[]), Some(1.0));
    for (db, proven) in [("app", 1.0), ("gone", 0.0)] {
        assert_eq!(
            value(&m, "pgdrill_drill_coverage_proven", &[("database", db)]),
            Some(proven),
            "{db}"
        );
    }
    // Several stores: each store's series, by the `store` label.
    for store in ["primary", "offsite"] {
        assert_eq!(
            value(
                &m,
                "pgdrill_store_backups",
                &[("database", "app"), ("store", store)]
            ),
            Some(2.0),
            "{store}"
        );
    }
    assert_eq!(
        value(
            &m,
            "pgdrill_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "pgdrill_rto_target_seconds", &[("database", "app")]),
        Some(1800.0)
    );
    assert_eq!(
        value(&m, "pgdrill_rpo_target_seconds", &[("database", "app")]),
        Some(36000.0)
    );
    assert!(
        value(
            &m,
            "pgdrill_failures_total",
            &[("task", "backup"), ("database", "gone")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            "pgdrill_job_last_run_ok",
            &[("task", "backup"), ("database", "gone")]
        ),
        Some(0.0)
    );
    assert!(value(&m, "pgdrill_backups_total", &[("database", "app")]).is_some());
    // gone's yearly drill is caught up at start (it never had one) and fails: no backup.
    assert!(
        value(
            &m,
            "pgdrill_drills_total",
            &[("database", "gone"), ("outcome", "fail")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE pgdrill_failures_total counter"),
        "{text}"
    );
    let newest = value(
        &m,
        "pgdrill_newest_backup_bytes",
        &[("database", "app"), ("kind", "stored")],
    )
    .expect("newest stored");
    let all_stored = value(
        &m,
        "pgdrill_all_backups_stored_bytes",
        &[("database", "app")],
    )
    .expect("all");
    assert!(
        all_stored > newest,
        "two backups take more than the newest alone"
    );
    for (name, rows) in &m {
        for (labels, _) in rows {
            assert!(!labels.contains_key("job"), "{name} has a job label");
        }
    }

    // examples/monitoring: rules promtool-clean; every series they use is emitted.
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/monitoring");
    let rules = ex.join("pgdrill-alerts.yml");
    let (ok, out) = promtool(&["check", "rules", rules.to_str().expect("p")], None);
    assert!(ok, "promtool check rules:\n{out}");
    let tests = ex.join("pgdrill-alerts.test.yml");
    let (ok, out) = promtool(&["test", "rules", tests.to_str().expect("p")], None);
    assert!(
        ok,
        "promtool test rules (each alert fires on its series):\n{out}"
    );
    let dash_text = std::fs::read_to_string(ex.join("grafana-dashboard.json")).expect("dash");
    let dash: Value = serde_json::from_str(&dash_text).expect("the dashboard is JSON");
    // Every dashboard query is valid PromQL: promtool checks them as recording rules.
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut as_rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        as_rules.push_str(&format!(
            "      - record: pgdrill:dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(e).expect("quoted")
        ));
    }
    let rules_file = d.join("dashboard-queries.yml");
    std::fs::write(&rules_file, as_rules).expect("write");
    let (ok, out) = promtool(&["check", "rules", rules_file.to_str().expect("p")], None);
    assert!(ok, "a dashboard query is not valid PromQL:\n{out}");
    let emitted: BTreeSet<String> = m.keys().cloned().collect();
    let rules_text = std::fs::read_to_string(&rules).expect("rules");
    for (what, used) in [
        ("rules", metric_names(&rules_text)),
        ("dashboard", metric_names(&dash_text)),
    ] {
        let missing: Vec<&String> = used.difference(&emitted).collect();
        assert!(
            missing.is_empty(),
            "the {what} use series /metrics lacks: {missing:?}"
        );
    }
    // And the README documents every series /metrics has.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README");
    let undocumented: Vec<&String> = emitted
        .iter()
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(undocumented.is_empty(), "README lacks {undocumented:?}");

    // SIGTERM: serve --json prints its one document.
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("stdout");
    let v: Value = serde_json::from_str(&stdout).expect("serve --json prints JSON");
    schema::assert_valid("serve.schema.json", &v);
}
