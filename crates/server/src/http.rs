//! A minimal HTTP/1.1 server for GET requests: one request per connection
//! (`Connection: close`), a small header limit and read and write timeouts. Every connection
//! is its own task and the accept loop never waits, so `/healthz` answers whatever other
//! clients do: past [`MAX_CONNECTIONS`], the oldest connection that has not sent its request
//! yet is closed to make room (idle or slow-header clients cannot starve the probe). Routes:
//! `/healthz` (always open), `/metrics`, `/` (the dashboard), `/drills/<db>/<drill-id>`
//! (the stored report.html) and `/api/v1/...` (JSON, [`crate::api`]; its errors are JSON
//! too), all but the first behind the configured bearer token or basic auth, compared in
//! constant time.

use crate::config::Auth;
use pgdrill_core::ids::{DbName, DrillId};
use pgdrill_core::layout;
use pgdrill_store::StoreError;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its whole request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections above which the oldest one still waiting for its request is closed.
const MAX_CONNECTIONS: usize = 256;
/// /healthz fails when the scheduler loop has not gone round for this long.
const HEARTBEAT_LIMIT: i64 = 60;

pub use crate::app::App;

pub use crate::response::Response;

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    let waiting = Arc::new(Waiting::default());
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            waiting.evict_oldest();
        }
        let guard = OpenGuard::new(open.clone());
        let ticket = Waiting::register(&waiting);
        let app = app.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let _ = connection(stream, &app, ticket).await;
        });
    }
}

/// Counts an open connection while it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connections that have not sent their request head yet, oldest first.
#[derive(Default)]
struct Waiting {
    next: AtomicU64,
    queue: Mutex<VecDeque<(u64, Arc<Notify>)>>,
}

impl Waiting {
    fn register(this: &Arc<Waiting>) -> Ticket {
        let id = this.next.fetch_add(1, Ordering::SeqCst);
        let evicted = Arc::new(Notify::new());
        if let Ok(mut q) = this.queue.lock() {
            q.push_back((id, evicted.clone()));
        }
        Ticket {
            id,
            evicted,
            waiting: this.clone(),
        }
    }

    /// Tells the oldest waiting connection to close (a stored permit if it has not started).
    fn evict_oldest(&self) {
        let oldest = self.queue.lock().ok().and_then(|mut q| q.pop_front());
        if let Some((_, n)) = oldest {
            n.notify_one();
        }
    }
}

/// A connection's place in [`Waiting`], left when dropped (its head arrived or it ended).
struct Ticket {
    id: u64,
    evicted: Arc<Notify>,
    waiting: Arc<Waiting>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut q) = self.waiting.queue.lock() {
            q.retain(|(i, _)| *i != self.id);
        }
    }
}

async fn connection(mut stream: TcpStream, app: &App, ticket: Ticket) -> std::io::Result<()> {
    let read = tokio::select! {
        r = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)) => r,
        _ = ticket.evicted.notified() => return Ok(()),
    };
    drop(ticket);
    let head = match read {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => {
            return write(
                &mut stream,
                Response::text(431, "request header too large"),
                false,
            )
            .await
        }
        _ => return Ok(()),
    };
    let (resp, head_only) = match parse(&head) {
        Some(req) => {
            let head_only = req.method == "HEAD";
            (route(app, &req).await, head_only)
        }
        None => (Response::text(400, "bad request"), false),
    };
    write(&mut stream, resp, head_only).await
}

/// The request head up to the blank line; `None` when it is too large.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub struct Request {
    pub method: String,
    pub path: String,
    /// What follows the `?` (without a `#` fragment), `""` when nothing does.
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return None;
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    })
}

async fn route(app: &App, req: &Request) -> Response {
    let api = req.path == "/api" || req.path.starts_with("/api/");
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = if api {
            crate::api::error(405, "the API is read-only: use GET")
        } else {
            Response::text(405, "only GET and HEAD are served")
        };
        r.headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    if req.path == "/healthz" {
        let now = app.clock.now();
        return if app.state.stopping() {
            Response::text(503, "stopping")
        } else if app.state.heartbeat_age(now) > HEARTBEAT_LIMIT {
            Response::text(503, "the scheduler loop is stuck")
        } else {
            Response::text(200, "ok")
        };
    }
    if !authorized(&app.auth, req.header("authorization")) {
        const WHY: &str = "unauthorized: send the configured bearer token or basic auth";
        let mut r = if api {
            crate::api::error(401, WHY)
        } else {
            Response::text(401, WHY)
        };
        let challenge = if app.auth.basic.is_some() {
            "Basic realm=\"pgdrill\", charset=\"UTF-8\""
        } else {
            "Bearer realm=\"pgdrill\""
        };
        r.headers.push(("WWW-Authenticate", challenge.into()));
        return r;
    }
    match req.path.as_str() {
        "/metrics" => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::render(app),
        ),
        "/" => {
            let mut r = Response::new(
                200,
                "text/html; charset=utf-8",
                crate::dashboard::render_page(app, &req.query),
            );
            r.headers.push(("Refresh", "60".into()));
            r
        }
        p if api => match p.strip_prefix("/api/v1/") {
            Some(rest) => crate::api::route(app, rest, &req.query),
            None => crate::api::error(404, "no such API version: use /api/v1/"),
        },
        p => match p.strip_prefix("/drills/") {
            Some(rest) => report(app, rest).await,
            None => Response::text(404, "not found"),
        },
    }
}

/// `/drills/<db>/<drill-id>`: the drill's report.
async fn report(app: &App, rest: &str) -> Response {
    let mut parts = rest.trim_end_matches('/').split('/');
    let (Some(db), Some(id), None) = (parts.next(), parts.next(), parts.next()) else {
        return Response::text(404, "not found");
    };
    let (Ok(db), Ok(id)) = (DbName::parse(db), DrillId::parse(id)) else {
        return Response::text(404, "not found");
    };
    // Rendered from result.json with the configured zone and a link back to the dashboard;
    // the stored report.html (UTC, no link) when result.json cannot be read.
    if let Ok(body) = app
        .store
        .get(&layout::drill_object(&db, &id, "result.json"))
        .await
    {
        if let Ok(r) = serde_json::from_slice(&body) {
            let view = pgdrill_core::drill::evidence::HtmlView {
                tz: &app.tz,
                tz_name: &app.tz_name,
                dashboard: Some("/"),
            };
            let html = pgdrill_core::drill::evidence::render_html_in(&r, &view);
            return Response::new(200, "text/html; charset=utf-8", html);
        }
    }
    match app
        .store
        .get(&layout::drill_object(&db, &id, "report.html"))
        .await
    {
        Ok(body) => Response::new(200, "text/html; charset=utf-8", body.to_vec()),
        Err(StoreError::NotFound { .. }) => Response::text(404, "no such drill report"),
        Err(e) => Response::text(502, &format!("cannot read the report from the store: {e}")),
    }
}

/// Equal inputs, compared through their digests so neither length nor content leaks timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn authorized(auth: &Auth, header: Option<&str>) -> bool {
    if auth.is_open() {
        return true;
    }
    let Some(h) = header else { return false };
    let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
    let value = value.trim().as_bytes();
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(token) = &auth.bearer {
            return same(value, token.expose().as_bytes());
        }
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if let Some((user, pass)) = &auth.basic {
            let expected = base64(format!("{user}:{}", pass.expose()).as_bytes());
            return same(value, expected.as_bytes());
        }
    }
    false
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes the response; a client that does not take it within [`WRITE_TIMEOUT`] is dropped.
async fn write(stream: &mut TcpStream, r: Response, head_only: bool) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, write_all(stream, r, head_only)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn write_all(stream: &mut TcpStream, r: Response, head_only: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&r.body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdrill_pg::Secret;

    #[test]
    fn base64_matches_rfc_4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn auth_accepts_only_the_configured_credentials() {
        let auth = Auth {
            bearer: Some(Secret::new("s3cret-token")),
            basic: Some(("ops".into(), Secret::new("pw"))),
        };
        assert!(authorized(&auth, Some("Bearer s3cret-token")));
        assert!(authorized(&auth, Some("bearer  s3cret-token")));
        assert!(!authorized(&auth, Some("Bearer s3cret-toke")));
        assert!(!authorized(&auth, None));
        assert!(authorized(
            &auth,
            Some(&format!("Basic {}", base64(b"ops:pw")))
        ));
        assert!(!authorized(
            &auth,
            Some(&format!("Basic {}", base64(b"ops:px")))
        ));
        assert!(authorized(&Auth::default(), None));
    }

    #[test]
    fn request_line_and_headers_are_parsed() {
        let r =
            parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t").expect("req");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(r.query, "x=1");
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert!(parse("GET /\r\n").is_none());
        assert!(parse("GARBAGE").is_none());
    }
}
