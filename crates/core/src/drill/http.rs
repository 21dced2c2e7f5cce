//! `http` smoke checks (seed 001): URL with `${VAR}`, method, expected status and body text,
//! bearer token from an environment variable, timeout and retries.

use super::checks::{CheckCtx, CheckKind};
use crate::env::interpolate;
use std::time::Duration;

type Outcome = std::result::Result<(bool, String), String>;

pub async fn run(kind: &CheckKind, ctx: &mut CheckCtx<'_>) -> (String, String, Outcome) {
    let CheckKind::Http {
        url,
        method,
        expect_status,
        expect_body,
        bearer_token_env,
        timeout_seconds,
        retries,
    } = kind
    else {
        return (
            String::new(),
            String::new(),
            Err("not an http check".into()),
        );
    };
    let expected = match expect_body {
        Some(b) => format!("HTTP {expect_status} with body containing {b:?}"),
        None => format!("HTTP {expect_status}"),
    };
    let url = match interpolate(url, ctx.env, "http check url") {
        Ok(u) => u,
        Err(e) => return (url.clone(), expected, Err(e.to_string())),
    };
    let token = bearer_token_env
        .as_ref()
        .and_then(|v| ctx.env.get(v).cloned());
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs((*timeout_seconds).max(1)))
        .build()
    {
        Ok(c) => c,
        Err(e) => return (url, expected, Err(e.to_string())),
    };
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut last = Err("not attempted".to_string());
    for attempt in 0..=*retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt).min(5))).await;
        }
        let mut req = client.request(method.clone(), &url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let outcome: Outcome = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                let body = redact(&body, token.as_deref());
                let body_ok = expect_body
                    .as_ref()
                    .map(|b| body.contains(b.as_str()))
                    .unwrap_or(true);
                let snippet: String = body.chars().take(200).collect();
                Ok((
                    status == *expect_status && body_ok,
                    format!("HTTP {status}: {}", snippet.trim()),
                ))
            }
            Err(e) => Err(redact(&e.to_string(), token.as_deref())),
        };
        ctx.log.push(format!(
            "http {} {url} attempt {}: {}",
            method,
            attempt + 1,
            match &outcome {
                Ok((p, a)) => format!("{} ({a})", if *p { "pass" } else { "fail" }),
                Err(e) => format!("error ({e})"),
            }
        ));
        let passed = matches!(outcome, Ok((true, _)));
        last = outcome;
        if passed {
            break;
        }
    }
    (url, expected, last)
}

fn redact(s: &str, secret: Option<&str>) -> String {
    match secret {
        Some(t) if !t.is_empty() => s.replace(t, "***"),
        _ => s.to_string(),
    }
}
