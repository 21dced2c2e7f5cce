//! A real S3-protocol server on loopback: `moto_server` (PyPI `moto[server]`) as a child.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_ATTEMPTS: usize = 5;
const ACCESS_KEY: &str = "pgdrill-test-access-key";
const SECRET_KEY: &str = "pgdrill-test-secret-key";
const REGION: &str = "us-east-1";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server` on `127.0.0.1:<free port>`, killed when dropped.
///
/// moto keeps everything in memory and does not check signatures: any credentials work.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts `moto_server` and waits until it answers. Panics with the setup hint when it is
    /// not installed or does not come up.
    pub fn start() -> S3Server {
        let bin = moto_server_path();
        let dir = tempfile::Builder::new()
            .prefix("pgdrill-moto-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temp dir for moto_server failed: {e}"));
        let log_path = dir.path().join("moto.log");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log = std::fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("creating {} failed: {e}", log_path.display()));
            let log2 = log
                .try_clone()
                .unwrap_or_else(|e| panic!("cloning the moto log handle failed: {e}"));
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .env("PYTHONUNBUFFERED", "1")
                .spawn()
                .unwrap_or_else(|e| panic!("starting {} failed: {e}", bin.display()));
            match wait_ready(&mut child, port, &log_path) {
                Ok(()) => {
                    return S3Server {
                        child: Some(child),
                        port,
                        log_path,
                        _dir: dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = format!(
                        "{why}\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    if !last_log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!(
            "moto_server ({}) did not come up: {last_log}",
            bin.display()
        );
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// `AWS_*` variables pointing an S3 client (or the pgdrill CLI) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), self.access_key().into()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key().into()),
            ("AWS_REGION".into(), self.region().into()),
            ("AWS_DEFAULT_REGION".into(), self.region().into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// Creates a bucket (plain path-style `PUT /<name>`). Panics on failure.
    pub fn create_bucket(&self, name: &str) {
        match self.request("PUT", &format!("/{name}"), &[]) {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("creating bucket {name} failed: HTTP {status}: {body}"),
            Err(e) => panic!("creating bucket {name} failed: {e}"),
        }
    }

    /// Keys of the objects in `bucket` (first 1000), for assertions.
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self
            .request("GET", &format!("/{bucket}?list-type=2"), &[])
            .unwrap_or_else(|e| panic!("listing bucket {bucket} failed: {e}"));
        assert_eq!(status, 200, "listing bucket {bucket}: {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(xml_unescape)
            .collect()
    }

    /// Sends one HTTP/1.1 request (path-style, with an unsigned `Authorization` header that moto
    /// accepts); returns the status and the body as text.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        http(self.port, method, path, body)
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL), as if it died mid-upload. Later requests are refused.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server.
    pub fn stop(mut self) {
        self.kill_now();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Polls until an HTTP request is answered; `Err` when the process died or timed out.
/// Ready when *this* child says it listens on `port` and the port answers: another server
/// (a parallel test's) may have taken the port between `free_port` and the child's bind,
/// and would answer the probe while this child exits with "Address already in use".
fn wait_ready(child: &mut Child, port: u16, log: &std::path::Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let listening = format!("Running on http://127.0.0.1:{port}");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("moto_server exited ({status})"));
        }
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if said.contains("Address already in use") {
            return Err(format!("port {port} was taken"));
        }
        if said.contains(&listening) && http(port, "GET", "/moto-api/", &[]).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "moto_server did not answer within {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240101/{REGION}/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\
         x-amz-date: 20240101T000000Z\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 failed: {e}"));
    l.local_addr()
        .unwrap_or_else(|e| panic!("local_addr failed: {e}"))
        .port()
}

/// `PGDRILL_MOTO_SERVER`, else the setup script's venv, else `moto_server` on PATH.
fn moto_server_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PGDRILL_MOTO_SERVER").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(crate::TEST_DEPS_ROOT).join("venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("moto_server");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "this test needs moto_server (PyPI moto[server]) and it was not found: {}",
        crate::SETUP_HINT
    )
}
