//! The dashboard and a drill report in headless Chromium (driven through chromedriver's
//! WebDriver API), at 1400 px and at 420 px (a phone): no horizontal overflow of the page,
//! every chart on a scale that fits its data (the stored size is not a flat line at zero, a
//! 1 s RTO is not flat under its 30 min target), target lines, dates on the time axis,
//! failure marks, humane units, times in the configured zone, the report's link back. The
//! store view is synthetic (a week of backups with failures in between, drills that passed
//! and failed), so no PostgreSQL is needed. The screenshots are kept in
//! `target/screenshots/` (CI artifacts).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use pgdrill_core::config::Policy;
use pgdrill_core::drill::evidence::DrillResult;
use pgdrill_core::ids::DbName;
use pgdrill_core::manifest::Manifest;
use pgdrill_core::status::{DrillWindow, FailureRecord};
use pgdrill_server::app::{App, Clock};
use pgdrill_server::config::Auth;
use pgdrill_server::state::{DbData, JobState, State};
use pgdrill_server::{JobKey, JobKind};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NOW: &str = "2026-12-06T10:00:00Z";
const HOUR: i64 = 3600;

struct Fixed(Timestamp);

impl Clock for Fixed {
    fn now(&self) -> Timestamp {
        self.0
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("time")
}

fn id_of(t: i64, n: usize) -> String {
    format!("{}-{n:04x}", at(t).strftime("%Y%m%dT%H%M%SZ"))
}

fn manifest(t: i64, n: usize) -> Manifest {
    let time = at(t).to_string();
    let wave = (n % 5) as u64;
    serde_json::from_value(json!({
        "format_version": 1, "tool": {"name": "pgdrill", "version": "0"},
        "backup_id": id_of(t, n), "database": "app",
        "source": {"url": "u", "host": "h", "port": 5432, "dbname": "app", "user": "u"},
        "server": {"version": "15.18", "version_num": 150018, "version_string": "", "system_identifier": null, "database_size_bytes": null, "in_recovery": false},
        "pg_dump": {"path": "p", "version": "15.18", "args": []},
        "snapshot": {"exported": true, "id": null, "time": time, "note": null},
        "started_at": time, "finished_at": time, "stage_seconds": {"total": 8.0 + wave as f64 * 1.5},
        "raw_bytes": 88_000_000 + wave * 2_500_000 + n as u64 * 100_000,
        "stored_bytes": 20_276_229 + wave * 400_000 + n as u64 * 20_000,
        "compression": {"algorithm": "zstd", "level": 3},
        "encryption": {"scheme": "none", "recipient_fingerprints": [], "passphrase": false},
        "objects": [{"name": "dump.pgc.zst", "kind": "dump", "size": 1, "sha256": "", "raw_size": 1, "raw_sha256": ""}],
        "content": {"archive_version": "1.16", "tables": [], "schemas": [], "extensions": [], "schema_fingerprint": "", "large_objects": 0, "toc_entries": 0},
        "policy": {}, "host": "h"
    }))
    .expect("manifest")
}

fn drill(t: i64, n: usize, rto_s: Option<f64>, rpo_min: f64, passed: bool) -> DrillResult {
    let time = at(t).to_string();
    let check = |name: &str, ok: bool| {
        json!({"name": name, "kind": "sql", "subject": "select count(*) from orders",
               "expected": ">= 1000", "actual": if ok { "1250" } else { "0" }, "passed": ok,
               "duration_seconds": 0.04})
    };
    serde_json::from_value(json!({
        "schema_version": 1, "drill_id": id_of(t, n), "database": "app",
        "verdict": if passed { "pass" } else { "fail" },
        "started_at": time, "finished_at": at(t + 2).to_string(),
        "tool": {"name": "pgdrill", "version": "0"}, "host": "drill-host",
        "backup": {"id": id_of(t - 3600, n), "snapshot_time": at(t - (rpo_min * 60.0) as i64).to_string(),
                   "finished_at": time, "server_version": "15.18", "pg_dump_version": "15.18",
                   "objects": [{"name": "dump.pgc.zst", "size": 20276229, "sha256": "9f2c4e1d0b7a65f3c2e8d91b4a7f0c3e5d6b8a9f1e2d3c4b5a69788796a5b4c3", "raw_sha256": "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"}]},
        "target": {"kind": "ephemeral", "url": "postgresql://drill@127.0.0.1:54329/app_drill", "server_version": "15.18", "kept": false},
        "stages": [{"name": "download", "start_seconds": 0.0, "seconds": 0.3},
                   {"name": "restore", "start_seconds": 0.3, "seconds": 0.8},
                   {"name": "checks", "start_seconds": 1.1, "seconds": 0.1}],
        "rpo": {"minutes": rpo_min, "target_minutes": 360, "passed": rpo_min <= 360.0, "worst_gap_minutes": 360.0},
        "rto": {"minutes": rto_s.map(|s| s / 60.0), "target_minutes": 30, "passed": rto_s.map(|_| true)},
        "checks": [check("orders are there", passed), check("customers are there", true),
                   check("a rather long check name that has to wrap on a phone screen", true)],
        "error": if rto_s.is_none() { Value::from("restore failed: pg_restore exited with status 1") } else { Value::Null },
        "policy": {}
    }))
    .expect("drill")
}

/// A week: a backup every 6 h, a gap of a day where three backups failed, daily drills (one
/// failed a check, one failed before the restore finished).
fn history(now: i64) -> (Vec<Manifest>, Vec<DrillResult>, Vec<FailureRecord>) {
    let start = now - 7 * 24 * HOUR;
    let mut backups = Vec::new();
    let mut failures = Vec::new();
    for n in 0..28 {
        let t = start + n as i64 * 6 * HOUR + 120;
        if (10..14).contains(&n) {
            if n < 13 {
                failures.push(FailureRecord {
                    job: "backup".into(),
                    at: at(t),
                    message: format!(
                        "backup of app: cannot connect to postgresql://u@db:5432/app: connection refused (attempt {n})"
                    ),
                });
            }
            continue;
        }
        backups.push(manifest(t, n));
    }
    backups.reverse();
    let mut drills = Vec::new();
    for n in 0..7 {
        let t = start + n as i64 * 24 * HOUR + 4 * HOUR;
        let (rto, passed) = match n {
            3 => (None, false),
            5 => (Some(1.4), false),
            _ => (Some(1.1 + n as f64 * 0.05), true),
        };
        drills.push(drill(t, n, rto, 20.0 + n as f64 * 40.0, passed));
    }
    drills.reverse();
    (backups, drills, failures)
}

fn job(kind: JobKind, summary: &str, ok: bool, now: i64) -> JobState {
    JobState {
        key: JobKey {
            kind,
            database: Some(DbName::parse("app").expect("db")),
        },
        schedule: "every 6h".into(),
        next_run: Some(at(now + 2 * HOUR)),
        pending: false,
        running_since: None,
        last_started: Some(at(now - 4 * HOUR)),
        last_duration_seconds: Some(9.5),
        last_ok: Some(ok),
        last_summary: Some(summary.into()),
        last_success: Some(at(now - 4 * HOUR)),
        runs_ok: u64::from(ok),
        runs_failed: u64::from(!ok),
    }
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: String,
}

impl Drop for Driver {
    /// Stops chromedriver's whole process group, the browser it started included: killing
    /// chromedriver alone would leave Chromium running after a failed assertion.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Reap chromedriver as it ends (a zombie still counts as a member of the group).
        while Instant::now() < deadline && {
            let _ = self.child.try_wait();
            group_alive(&group)
        } {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Whether any process of the group `-<pgid>` is left.
fn group_alive(group: &str) -> bool {
    Command::new("kill")
        .args(["-0", "--", group])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn find(bins: &[&str]) -> Option<String> {
    bins.iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|b| b.to_string())
}

impl Driver {
    async fn start(profile: &std::path::Path) -> Driver {
        let hint = "run scripts/setup-test-deps.sh (apt-get install chromium chromium-driver)";
        let browser = find(&["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("headless Chromium is needed and was not found: {hint}"));
        let driver = find(&["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver is needed and was not found: {hint}"));
        let browser = which(&browser);
        let port = free_port();
        // A process group of its own, so the browser it starts can be stopped with it.
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut d = Driver {
            child,
            base,
            http,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = d
                .http
                .get(format!("{}/status", d.base))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let v = d
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "goog:chromeOptions": {"binary": browser, "args": args}}}}),
            )
            .await;
        d.session = v["sessionId"].as_str().expect("a session id").to_string();
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = self.http.request(method.clone(), &url);
        let req = if body.is_null() { req } else { req.json(&body) };
        let resp = req.send().await.expect("webdriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("webdriver json");
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn s(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn resize(&self, width: u32, height: u32) {
        self.s(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    async fn open(&self, url: &str) {
        self.s(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.s(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The whole page as a PNG: the window is made as tall as the page first.
    async fn screenshot(&self, width: u32, name: &str) -> PathBuf {
        let h = self
            .eval("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(400, 12_000) as u32;
        self.resize(width, h + 120).await;
        let b64 = self
            .s(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64_decode(b64.as_str().expect("base64"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshots dir");
        let path = dir.join(name);
        std::fs::write(&path, &png).expect("write the screenshot");
        path
    }
}

fn which(bin: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// What the test measures in the page: overflow, and each chart's scale and marks.
const FACTS: &str = r#"
const de = document.documentElement;
const charts = [...document.querySelectorAll('svg.chart')].map(s => {
  const r = s.getBoundingClientRect();
  return {
    label: s.getAttribute('aria-label'), axis: s.dataset.axis,
    top: +s.dataset.top, bottom: +s.dataset.bottom,
    cys: [...s.querySelectorAll('circle.pt')].map(c => +c.getAttribute('cy')),
    targets: s.querySelectorAll('g.target').length,
    fails: s.querySelectorAll('g.fail').length,
    xt: [...s.querySelectorAll('text.xt')].map(t => t.firstChild ? t.firstChild.textContent : ''),
    width: r.width, left: r.left, right: r.right,
  };
});
const outside = [...document.body.querySelectorAll('*')]
  .filter(e => !e.closest('.scroll') || e.classList.contains('scroll'))
  .filter(e => !e.closest('svg') || e.tagName === 'svg')
  .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > de.clientWidth + 0.5 || r.left < -0.5); })
  .slice(0, 8).map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').slice(0, 60));
return {
  clientWidth: de.clientWidth, scrollWidth: de.scrollWidth, innerWidth: window.innerWidth,
  bodyScrollWidth: document.body.scrollWidth, outside, charts,
  text: document.body.innerText,
  back: [...document.querySelectorAll('a')].filter(a => a.getAttribute('href') === '/').length,
};
"#;

fn chart<'a>(facts: &'a Value, label: &str) -> &'a Value {
    facts["charts"]
        .as_array()
        .expect("charts")
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no chart {label:?}"))
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

fn no_overflow(facts: &Value, what: &str) {
    let (sw, cw) = (
        facts["scrollWidth"].as_f64().expect("scrollWidth"),
        facts["clientWidth"].as_f64().expect("clientWidth"),
    );
    assert!(
        sw <= cw,
        "{what}: the page scrolls sideways ({sw} > {cw}): {}",
        facts["outside"]
    );
    assert_eq!(
        facts["outside"].as_array().map(Vec::len),
        Some(0),
        "{what}: elements beyond the viewport: {}",
        facts["outside"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_drill_report_in_chromium_at_desktop_and_phone_width() {
    let started = Instant::now();
    let now: Timestamp = NOW.parse().expect("now");
    let dir = tempfile::tempdir().expect("tmp");
    let store = pgdrill_store::Store::open_folder(dir.path().join("store")).expect("store");
    let (backups, drills, failures) = history(now.as_second());
    let app_db = DbName::parse("app").expect("db");
    // The report route reads the drill's result.json from the store.
    let shown = drills
        .iter()
        .find(|d| !d.passed() && d.rto.minutes.is_some())
        .expect("a failed drill")
        .clone();
    store
        .put(
            &format!("app/drills/{}/result.json", shown.drill_id),
            serde_json::to_vec(&shown).expect("json").into(),
        )
        .await
        .expect("put result.json");
    let db = DbData {
        name: app_db,
        backups,
        drills,
        failure: None,
        failures,
        damaged: Vec::new(),
        error: None,
        copies: Vec::new(),
    };
    let jobs = vec![
        job(
            JobKind::Backup,
            "backup 20261206T060000Z-0001 of app completed (20276229 bytes stored)",
            true,
            now.as_second(),
        ),
        job(
            JobKind::Drill,
            "drill 20261206T040000Z-0006 of app: pass, RTO 1.4 s",
            true,
            now.as_second(),
        ),
    ];
    let tz_name = "Europe/Berlin";
    let app = Arc::new(App {
        state: Arc::new(State::new(jobs, vec![db], now)),
        store: store.clone(),
        auth: Auth::default(),
        tz: TimeZone::get(tz_name).expect("tz"),
        tz_name: tz_name.into(),
        policy: Policy {
            rto_minutes: Some(30),
            rpo_minutes: Some(360),
            ..Policy::default()
        },
        drill_window: DrillWindow::CalendarMonth,
        store_display: dir.path().join("store").display().to_string(),
        clock: Arc::new(Fixed(now)),
        coverage_days: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(pgdrill_server::http::serve(listener, app));

    let driver = Driver::start(&dir.path().join("profile")).await;
    let dashboard = format!("http://127.0.0.1:{port}/");
    let report = format!("http://127.0.0.1:{port}/drills/app/{}", shown.drill_id);
    let mut shots = Vec::new();
    for width in [1400u32, 420] {
        driver.resize(width, 1000).await;

        // (a) The dashboard.
        driver.open(&dashboard).await;
        let f = driver.eval(FACTS).await;
        let what = format!("dashboard at {width} px");
        // The viewport really is that wide (a window can refuse to shrink).
        assert_eq!(f["innerWidth"].as_u64(), Some(width as u64), "{what}");
        no_overflow(&f, &what);
        let text = f["text"].as_str().expect("text");
        assert!(text.contains("times in Europe/Berlin"), "{what}: {text}");
        assert!(text.contains("CET"), "{what}: times carry their zone");
        assert!(text.contains("19.3 MiB stored"), "{what}: {text}");
        assert!(
            text.contains("last drill RTO 1.4 s, target 30 min")
                && text.contains("median of the previous 5 is 90.8 MiB"),
            "{what}: {text}"
        );
        assert!(
            !text.contains("bytes stored") && !text.contains("0.0 min"),
            "{what}: {text}"
        );
        // (Headings are upper-cased by the style sheet.)
        assert!(
            text.to_lowercase().contains("failed jobs (3 kept)"),
            "{what}: {text}"
        );
        let charts = f["charts"].as_array().expect("charts");
        assert_eq!(charts.len(), 6, "{what}: {charts:?}");
        for c in charts {
            let label = c["label"].as_str().unwrap_or("?");
            // Dates on every time axis ("Nov 29", "Dec 06").
            let xt: Vec<&str> = c["xt"]
                .as_array()
                .expect("xt")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(xt.len(), 3, "{what}, {label}: {xt:?}");
            for d in &xt {
                let b = d.as_bytes();
                assert!(
                    d.len() == 6
                        && b[0].is_ascii_uppercase()
                        && b[3] == b' '
                        && b[4].is_ascii_digit(),
                    "{what}, {label}: not a date on the time axis: {xt:?}"
                );
            }
            assert!(xt.iter().any(|d| d.starts_with("Dec")), "{xt:?}");
            // Every chart's points lie inside its plot.
            let (top, bottom) = (
                c["top"].as_f64().expect("top"),
                c["bottom"].as_f64().expect("bottom"),
            );
            for y in nums(&c["cys"]) {
                assert!(
                    y >= top - 0.5 && y <= bottom + 0.5,
                    "{what}, {label}: {y} outside {top}..{bottom}"
                );
            }
            // Readable on a phone: each chart as wide as the page allows.
            if width == 420 {
                let w = c["width"].as_f64().expect("width");
                assert!(w >= 320.0, "{what}, {label}: a {w} px thumbnail");
            }
        }
        // The stored size has its own scale: its points span the upper part of the plot,
        // not a flat line at zero under the raw size.
        for label in ["Stored size over time", "Raw dump size over time"] {
            let c = chart(&f, label);
            let ys = nums(&c["cys"]);
            let (top, bottom) = (
                c["top"].as_f64().expect("top"),
                c["bottom"].as_f64().expect("bottom"),
            );
            let h = bottom - top;
            let highest = ys.iter().copied().fold(f64::INFINITY, f64::min);
            let lowest = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(ys.len(), 24, "{label}");
            assert!(
                (bottom - highest) / h > 0.7,
                "{what}, {label}: highest point at {highest} ({ys:?})"
            );
            assert!(
                (bottom - lowest) / h > 0.5,
                "{what}, {label}: lowest point at {lowest} ({ys:?})"
            );
            assert!(
                highest < lowest,
                "{what}, {label}: varying sizes drawn flat ({ys:?})"
            );
            // The three failed backups are marks on the time axis.
            assert_eq!(c["fails"], 3, "{what}, {label}");
        }
        // A 1.1 s RTO under a 30 min target: a scale that shows both.
        let rto = chart(&f, "Drill RTO against its target");
        assert_eq!(rto["targets"], 1, "{what}: the RTO target line");
        assert_eq!(rto["axis"], "log");
        let (top, bottom) = (
            rto["top"].as_f64().expect("top"),
            rto["bottom"].as_f64().expect("bottom"),
        );
        for y in nums(&rto["cys"]) {
            assert!(
                (bottom - y) / (bottom - top) > 0.15,
                "{what}: an RTO point flat on the axis ({y})"
            );
        }
        assert_eq!(
            nums(&rto["cys"]).len(),
            6,
            "{what}: six drills measured an RTO"
        );
        assert_eq!(
            rto["fails"], 1,
            "{what}: the drill that failed before its RTO"
        );
        let rpo = chart(&f, "Drill RPO against its target");
        assert_eq!(rpo["targets"], 1, "{what}: the RPO target line");
        let fresh = chart(&f, "Backup age against the freshness threshold");
        assert_eq!(fresh["targets"], 1, "{what}: the freshness threshold line");
        assert_eq!(chart(&f, "Backup duration over time")["targets"], 0);
        shots.push(
            driver
                .screenshot(width, &format!("dashboard-{width}.png"))
                .await,
        );
        driver.resize(width, 1000).await;

        // (b) A drill report, rendered in the configured zone, with a way back.
        driver.open(&report).await;
        let f = driver.eval(FACTS).await;
        let what = format!("drill report at {width} px");
        no_overflow(&f, &what);
        let text = f["text"].as_str().expect("text");
        assert!(
            f["back"].as_u64().unwrap_or(0) >= 1,
            "{what}: no link back to the dashboard"
        );
        assert!(text.contains("times in Europe/Berlin"), "{what}: {text}");
        assert!(
            text.contains("1.4 s") && text.contains("target 30 min"),
            "{what}: {text}"
        );
        assert!(text.contains(" CET"), "{what}: {text}");
        assert!(!text.contains("0.0 min"), "{what}");
        shots.push(
            driver
                .screenshot(width, &format!("drill-report-{width}.png"))
                .await,
        );
    }
    // The link back leads to the dashboard.
    driver.open(&report).await;
    driver
        .eval("document.querySelector('nav.back a').click(); return null")
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = driver.s(reqwest::Method::GET, "/url", Value::Null).await;
        if url == dashboard.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "the link back went to {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in &shots {
        let len = std::fs::metadata(s).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10 * 1024, "{} is only {len} bytes", s.display());
    }
    drop(driver);
    server.abort();
    eprintln!(
        "screenshots: {:?}; took {:.1}s",
        shots,
        started.elapsed().as_secs_f64()
    );
}
