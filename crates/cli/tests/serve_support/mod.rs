//! Helpers for the `serve` tests: a raw HTTP GET, a Prometheus text-format parser that fails
//! on anything malformed, process and Chromium helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One GET; (status, body).
pub fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

pub type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// A small Prometheus text-format (0.0.4) parser that fails on anything malformed.
pub fn parse_prometheus(text: &str) -> Samples {
    let mut out = Samples::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(valid_name(name), "line {n}: bad HELP name: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            assert_eq!(parts.len(), 2, "line {n}: malformed TYPE: {line}");
            assert!(valid_name(parts[0]), "line {n}: bad TYPE name: {line}");
            assert!(
                ["gauge", "counter", "histogram", "summary", "untyped"].contains(&parts[1]),
                "line {n}: unknown type: {line}"
            );
            assert!(
                typed.insert(parts[0].into(), parts[1].into()).is_none(),
                "line {n}: TYPE repeated for {}",
                parts[0]
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("name end");
        let name = &line[..name_end];
        assert!(valid_name(name), "line {n}: bad metric name {name:?}");
        assert!(
            typed.contains_key(name),
            "line {n}: {name} has no TYPE before it"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let close;
            loop {
                let (start, c) = chars.next().expect("unterminated labels");
                if c == '}' {
                    close = start;
                    break;
                }
                if c == ',' {
                    continue;
                }
                let eq = r[start..].find('=').expect("label =") + start;
                let key = &r[start..eq];
                assert!(
                    valid_name(key) && !key.contains(':'),
                    "line {n}: bad label name {key:?}"
                );
                while chars.peek().is_some_and(|(p, _)| *p <= eq) {
                    chars.next();
                }
                assert_eq!(
                    chars.next().map(|x| x.1),
                    Some('"'),
                    "line {n}: label value quote"
                );
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().expect("unterminated label value");
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|x| x.1) {
                            Some('n') => value.push('\n'),
                            Some(e @ ('\\' | '"')) => value.push(e),
                            other => panic!("line {n}: bad escape {other:?}"),
                        },
                        c => value.push(c),
                    }
                }
                labels.insert(key.to_string(), value);
            }
            rest = &r[close + 1..];
        }
        let mut fields = rest.split_whitespace();
        let v = fields.next().expect("a value");
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => v
                .parse()
                .unwrap_or_else(|_| panic!("line {n}: bad value {v:?}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().expect("timestamp");
        }
        assert!(fields.next().is_none(), "line {n}: trailing fields: {line}");
        out.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

pub fn value(m: &Samples, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    m.get(name)?
        .iter()
        .find(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
}

pub fn wait_until(child: &mut Child, secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("pgdrill serve exited ({st}) while waiting for {what}; stderr:\n{err}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn drill_ids(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("app/drills"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("result.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment carries `marker` (what serve started, and their children).
pub fn marked_processes(marker: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmdline.is_empty() {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// Headless Chromium; a missing or broken browser fails the test with the install hint.
/// Returns what it wrote on stdout.
pub fn chromium(args: &[String], work: &Path) -> Vec<u8> {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is needed for the dashboard test and was not found: \
                 run scripts/setup-test-deps.sh (or apt-get install chromium)"
            )
        });
    let profile = tempfile::tempdir_in(work).expect("profile dir");
    let mut c = Command::new(bin);
    c.args([
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
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(profile.path().join("stdout")).expect("stdout file"))
    .stderr(std::fs::File::create(profile.path().join("stderr")).expect("stderr file"));
    let mut child = c.spawn().expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for chromium") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read(profile.path().join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(profile.path().join("stderr")).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}): {stderr}\nrun scripts/setup-test-deps.sh if it is not installed properly"
    );
    stdout
}

pub fn artifacts_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&d).expect("artifacts dir");
    d
}
