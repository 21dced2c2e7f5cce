//! Scrubbing for everything an alert sends or reports: the configured secrets (and the long
//! parts of secret URLs, which carry tokens), URL userinfo and `password=` values.

use super::AlertEvent;
use pgdrill_pg::Secret;
use serde_json::Value;

const MASK: &str = "***";
/// Shorter values are not scrubbed on their own (they would mangle ordinary words).
const MIN_SECRET: usize = 4;
/// URL path segments at least this long are treated as tokens.
const MIN_TOKEN_SEGMENT: usize = 12;

#[derive(Debug, Default)]
pub(super) struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<Secret>,
}

impl Redactor {
    pub(super) fn add(&mut self, s: &str) {
        for v in [s, s.trim()] {
            if v.len() >= MIN_SECRET && !self.secrets.iter().any(|x| x.expose() == v) {
                self.secrets.push(Secret::new(v));
            }
        }
        self.secrets
            .sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    }

    /// A secret URL, its password, its path and query, and its token-like path segments.
    pub(super) fn add_url(&mut self, u: &str) {
        self.add(u);
        self.add(u.trim().trim_end_matches('/'));
        let Ok(url) = url::Url::parse(u.trim()) else {
            return;
        };
        if let Some(p) = url.password() {
            self.add(p);
        }
        let path = url.path();
        if path.len() >= 8 {
            self.add(path);
        }
        if let Some(q) = url.query() {
            self.add(q);
        }
        for seg in path.split('/').filter(|s| s.len() >= MIN_TOKEN_SEGMENT) {
            self.add(seg);
        }
    }

    pub(super) fn scrub(&self, s: &str) -> String {
        let mut out = s.to_string();
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), MASK);
            }
        }
        mask_password_params(&strip_userinfo(&out))
    }

    pub(super) fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.scrub(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (self.scrub(k), self.value(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    pub(super) fn event(&self, e: &AlertEvent) -> AlertEvent {
        AlertEvent {
            kind: e.kind,
            database: self.scrub(&e.database),
            summary: self.scrub(&e.summary),
            details: self.value(&e.details),
            at: e.at,
        }
    }
}

/// `scheme://user:pass@host` → `scheme://***@host`.
pub(super) fn strip_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `password=VALUE` (libpq keywords, URL query) → `password=***`, any case.
pub(super) fn mask_password_params(s: &str) -> String {
    const KEY: &str = "password=";
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(KEY) {
        let value_start = pos + i + KEY.len();
        out.push_str(&s[pos..value_start]);
        let value_end = s[value_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | '"' | '\'' | ','))
            .map_or(s.len(), |e| value_start + e);
        if value_end > value_start {
            out.push_str(MASK);
        }
        pos = value_end;
    }
    out.push_str(&s[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_and_hosts_kept() {
        assert_eq!(
            strip_userinfo(
                "dump of postgres://app:hunter2@db:5432/app failed; see https://x.org/a@b"
            ),
            "dump of postgres://***@db:5432/app failed; see https://x.org/a@b"
        );
        assert_eq!(strip_userinfo("no urls here"), "no urls here");
    }

    #[test]
    fn password_params_are_masked() {
        assert_eq!(
            mask_password_params("host=db PASSWORD=s3cr3t user=x, url?a=1&password=p&b=2"),
            "host=db PASSWORD=*** user=x, url?a=1&password=***&b=2"
        );
    }

    #[test]
    fn url_secrets_mask_their_tokens_too() {
        let mut r = Redactor::default();
        r.add_url("https://hooks.slack.com/services/T0001/B0002/XXXXCANARYXXXXXX");
        assert_eq!(r.scrub("token XXXXCANARYXXXXXX leaked"), "token *** leaked");
        assert_eq!(
            r.scrub("POST https://hooks.slack.com/services/T0001/B0002/XXXXCANARYXXXXXX: 500"),
            "POST ***: 500"
        );
        assert!(!format!("{r:?}").contains("CANARY"));
    }
}
