//! `command` checks: a user command (migrations, a test suite) run with `DATABASE_URL` set to
//! the restored database; its exit status is the verdict, its output goes to drill.log.

use super::checks::CheckCtx;
use pgdrill_pg::ConnSpec;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

type Outcome = std::result::Result<(bool, String), String>;

/// The URL a user command gets (it holds the throwaway target's password, which the
/// command needs; it is redacted from everything pgdrill writes).
fn database_url(t: &ConnSpec) -> String {
    let pw = t
        .password
        .as_ref()
        .map(|p| {
            format!(
                ":{}",
                url::form_urlencoded::byte_serialize(p.expose().as_bytes()).collect::<String>()
            )
        })
        .unwrap_or_default();
    let host = if t.host.starts_with('/') {
        String::new()
    } else {
        t.host.clone()
    };
    let mut u = format!("postgresql://{}{pw}@{host}:{}/{}", t.user, t.port, t.dbname);
    if t.host.starts_with('/') {
        u.push_str(&format!("?host={}", t.host));
    }
    u
}

pub async fn run(script: &str, timeout: u64, ctx: &mut CheckCtx<'_>) -> Outcome {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("DATABASE_URL", database_url(ctx.target))
        .envs(ctx.target.child_env(None))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for v in ctx.hidden_env {
        cmd.env_remove(v);
    }
    for v in ConnSpec::inherited_vars_to_clear() {
        cmd.env_remove(v);
    }
    cmd.env("DATABASE_URL", database_url(ctx.target))
        .envs(ctx.target.child_env(None));
    if let Some(pw) = &ctx.target.password {
        cmd.env("PGPASSWORD", pw.expose());
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let collect = async {
        let mut a = Vec::new();
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut a).await;
        }
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut b).await;
        }
        (a, b)
    };
    let waited = tokio::time::timeout(Duration::from_secs(timeout.max(1)), async {
        let (a, b) = collect.await;
        (child.wait().await, a, b)
    })
    .await;
    let secret = ctx.target.password.as_ref().map(|p| p.expose().to_string());
    let clean = |bytes: &[u8]| {
        let s = String::from_utf8_lossy(bytes).to_string();
        match &secret {
            Some(p) if !p.is_empty() => s.replace(p.as_str(), "***"),
            _ => s,
        }
    };
    match waited {
        Err(_) => {
            ctx.log
                .push(format!("command `{script}` timed out after {timeout}s"));
            Ok((false, format!("timed out after {timeout}s")))
        }
        Ok((status, o, e)) => {
            let status = status.map_err(|e| e.to_string())?;
            let (o, e) = (clean(&o), clean(&e));
            ctx.log
                .push(format!("command `{script}` exited with {status}"));
            for line in o.lines().chain(e.lines()).take(2000) {
                ctx.log.push(format!("  | {line}"));
            }
            let last = e
                .lines()
                .chain(o.lines())
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            let code = status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "signal".into());
            Ok((
                status.success(),
                format!(
                    "exit status {code}{}",
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", last.chars().take(200).collect::<String>())
                    }
                ),
            ))
        }
    }
}
