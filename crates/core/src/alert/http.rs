//! The HTTP channels' one request (Slack, webhook, ping). Errors never carry the URL.

use super::{Delivery, Failure};

pub(super) enum Body<'a> {
    Json(&'a serde_json::Value),
    Text(String),
}

/// One POST; 2xx is delivered, 5xx and 429 may pass on retry, other statuses will not.
pub(super) async fn post(client: &reqwest::Client, url: String, body: Body<'_>) -> Delivery {
    let req = client.post(url);
    let req = match body {
        Body::Json(v) => req.json(v),
        Body::Text(t) => req
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(t),
    };
    let resp = req.send().await.map_err(describe_http_error)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(None);
    }
    let snippet = body_snippet(resp).await;
    let message = match snippet.is_empty() {
        true => format!("HTTP {}", status.as_u16()),
        false => format!("HTTP {} ({snippet})", status.as_u16()),
    };
    Err(Failure {
        message,
        retryable: status.is_server_error() || status.as_u16() == 429,
    })
}

/// The innermost cause, without the URL (reqwest puts it in its own message).
fn describe_http_error(e: reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Failure::transient(format!("{what} ({cause})"))
}

/// The first line of an error body, at most 100 characters, read without buffering it all.
async fn body_snippet(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < 400 {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().filter(|c| !c.is_control()).take(100).collect()
}
