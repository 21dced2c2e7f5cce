//! `command` checks: a user command (migrations, a test suite) run with `DATABASE_URL` set to
//! the restored database; its exit status is the verdict, its output goes to drill.log.

use super::checks::CheckCtx;
use pgdrill_pg::child::{self, Child, Keep};
use pgdrill_pg::ConnSpec;
use std::time::Duration;

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

/// What is kept of the command's stdout and of its stderr: drill.log shows the first 2,000
/// lines of both together, the verdict quotes the last non-empty line.
const KEEP: Keep = Keep {
    head: 2000,
    tail: 20,
};

pub async fn run(script: &str, timeout: u64, ctx: &mut CheckCtx<'_>) -> Outcome {
    let mut cmd = child::user_command("sh", ctx.hidden_env.iter().map(String::as_str));
    cmd.arg("-c")
        .arg(script)
        .env("DATABASE_URL", database_url(ctx.target))
        .envs(ctx.target.child_env(None));
    if let Some(pw) = &ctx.target.password {
        cmd.env("PGPASSWORD", pw.expose());
    }
    let mut child = Child::spawn(cmd, KEEP).map_err(|e| e.to_string())?;
    child.capture_stdout(KEEP);
    // Both pipes read to their end, then the exit; at the time limit the child is dropped,
    // which kills it.
    let waited = tokio::time::timeout(Duration::from_secs(timeout.max(1)), async {
        child.output_closed().await;
        child.wait().await
    })
    .await;
    let secret = ctx.target.password.as_ref().map(|p| p.expose().to_string());
    let clean = |lines: Vec<String>| -> Vec<String> {
        match &secret {
            Some(p) if !p.is_empty() => lines.into_iter().map(|l| scrub(&l, p)).collect(),
            _ => lines,
        }
    };
    match waited {
        Err(_) => {
            drop(child);
            ctx.log
                .push(format!("command `{script}` timed out after {timeout}s"));
            Ok((false, format!("timed out after {timeout}s")))
        }
        Ok(status) => {
            let status = status.map_err(|e| e.to_string())?;
            let (o, e) = (clean(child.stdout_lines()), clean(child.stderr_lines()));
            ctx.log
                .push(format!("command `{script}` exited with {status}"));
            for line in o.iter().chain(e.iter()).take(2000) {
                ctx.log.push(format!("  | {line}"));
            }
            let last = e
                .iter()
                .chain(o.iter())
                .rfind(|l| !l.trim().is_empty())
                .map(String::as_str)
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

/// `line` with every occurrence of `secret` replaced by `***`; a line cut at
/// [`child::MAX_LINE`] also loses a trailing beginning of the secret.
fn scrub(line: &str, secret: &str) -> String {
    let mut s = line.replace(secret, "***");
    if line.len() >= child::MAX_LINE {
        let cut = (1..secret.len())
            .rev()
            .find(|&n| secret.is_char_boundary(n) && s.ends_with(&secret[..n]));
        if let Some(n) = cut {
            s.truncate(s.len() - n);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::scrub;
    use pgdrill_pg::child::MAX_LINE;

    #[test]
    fn scrub_hides_the_secret_and_a_cut_prefix_of_it() {
        assert_eq!(scrub("url pw123 and pw123", "pw123"), "url *** and ***");
        let cut = format!("{}pw1", "x".repeat(MAX_LINE - 3));
        assert_eq!(scrub(&cut, "pw123"), "x".repeat(MAX_LINE - 3));
        assert_eq!(scrub("short pw1", "pw123"), "short pw1");
    }
}
