//! What a drill keeps from where it must not go: the secrets scrubbed from its evidence and
//! output, the source's URLs hidden from user commands, and the URL printed for a kept target.

use super::checks;
use crate::config::Env;
use pgdrill_pg::ConnSpec;

/// What must never reach the evidence or the printed result: the target's and the source's
/// passwords, the http checks' bearer tokens, and the secrets of the environment a user
/// command inherits and may print (variables named like secrets, passwords inside URLs).
pub(super) fn secrets(
    target: &ConnSpec,
    source: Option<&ConnSpec>,
    specs: &[checks::CheckSpec],
    env: &crate::config::Env,
) -> Vec<String> {
    const SECRET_NAMES: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "PRIVATE_KEY",
    ];
    let mut out: Vec<String> = [Some(target), source]
        .into_iter()
        .flatten()
        .filter_map(|c| c.password.as_ref().map(|p| p.expose().to_string()))
        .collect();
    for s in specs {
        if let checks::CheckKind::Http {
            bearer_token_env: Some(v),
            ..
        } = &s.kind
        {
            out.extend(env.get(v).cloned());
        }
    }
    for (k, v) in env {
        let name = k.to_ascii_uppercase();
        if v.len() >= 8 && SECRET_NAMES.iter().any(|n| name.contains(n)) {
            out.push(v.clone());
        }
        // scheme://user:password@host
        if let Some((_, rest)) = v.split_once("://") {
            let userinfo = rest.split(['/', '?', '#']).next().unwrap_or("");
            if let Some((user, _)) = userinfo.rsplit_once('@') {
                if let Some((_, pw)) = user.split_once(':') {
                    out.push(pw.to_string());
                }
            }
        }
    }
    let encoded: Vec<String> = out
        .iter()
        .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
        .collect();
    out.extend(encoded);
    out.retain(|s| s.len() >= 4);
    // Longest first, so a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Environment variables that name the source database (by value, whatever their name), which
/// user commands run by a drill must not see.
pub(super) fn source_url_vars(env: &Env, source: Option<&ConnSpec>) -> Vec<String> {
    let mut out = vec!["PGDRILL_SOURCE_URL".to_string()];
    let Some(source) = source else { return out };
    let key = source.identity_key();
    for (name, value) in env {
        let is_url = value.starts_with("postgres://") || value.starts_with("postgresql://");
        if is_url
            && ConnSpec::parse_with_env(value, &[])
                .map(|s| s.identity_key() == key)
                .unwrap_or(false)
        {
            out.push(name.clone());
        }
    }
    out
}

pub(super) fn command_url(t: &ConnSpec) -> String {
    let pw = t
        .password
        .as_ref()
        .map(|p| format!(":{}", p.expose()))
        .unwrap_or_default();
    format!(
        "postgresql://{}{pw}@{}:{}/{}",
        t.user, t.host, t.port, t.dbname
    )
}
