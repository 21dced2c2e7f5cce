use thiserror::Error;

/// What went wrong talking to a store, by meaning rather than by backend.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{key} was not found in the store")]
    NotFound { key: String },
    #[error("{key} already exists in the store")]
    AlreadyExists { key: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("the store URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the store refused access while trying to {action} {key}: check the credentials and bucket permissions ({detail})")]
    Denied {
        action: &'static str,
        key: String,
        detail: String,
    },
    #[error("bucket {bucket} does not exist at {endpoint}: create it, or fix the bucket name in the store URL")]
    NoBucket { bucket: String, endpoint: String },
    /// The store holds a copy that is not what was sent (its [`crate::CopyCheck`] failed);
    /// the copy was deleted.
    #[error("the store's copy of {key} is not what was sent ({check} check: {detail}); the copy was deleted: check the store's health and the network to it")]
    Mismatch {
        key: String,
        check: &'static str,
        detail: String,
    },
    #[error("could not {action} {key}: {detail}")]
    Backend {
        action: &'static str,
        key: String,
        detail: String,
        retryable: bool,
    },
}

impl StoreError {
    pub(crate) fn from_backend(action: &'static str, key: &str, e: object_store::Error) -> Self {
        let key = key.to_string();
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { key },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StoreError::AlreadyExists { key },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => StoreError::Denied {
                action,
                key,
                detail: one_line(&source.to_string()),
            },
            other => {
                let text = one_line(&other.to_string());
                let detail = match transport_failure(&other) {
                    Some(advice) => advice.to_string(),
                    None => status_failure(&text)
                        .unwrap_or_else(|| text.trim_end_matches([':', ' ', '-']).to_string()),
                };
                let retryable = !matches!(
                    other,
                    object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented
                        | object_store::Error::InvalidPath { .. }
                );
                StoreError::Backend {
                    action,
                    key,
                    detail,
                    retryable,
                }
            }
        }
    }

    /// Whether trying the same call again may succeed (the store's own retries ran out, or
    /// it stopped answering): [`StoreErrorKind::Transient`].
    pub fn is_retryable(&self) -> bool {
        self.kind() == StoreErrorKind::Transient
    }

    /// What the error means for the caller, whatever the backend said.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NotFound { .. } => StoreErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => StoreErrorKind::Conflict,
            StoreError::InvalidKey { .. }
            | StoreError::BadUrl { .. }
            | StoreError::NoBucket { .. } => StoreErrorKind::Invalid,
            StoreError::Denied { .. } => StoreErrorKind::Denied,
            StoreError::Backend {
                retryable: true, ..
            } => StoreErrorKind::Transient,
            StoreError::Backend { .. } | StoreError::Mismatch { .. } => StoreErrorKind::Other,
        }
    }
}

/// A [`StoreError`] by meaning: what callers match on (core keeps it in its own error type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The object does not exist (a read, a stat, or [`crate::Store::put_if_match`] of a key
    /// that is gone).
    NotFound,
    /// A condition did not hold: create-if-absent found an object, compare-and-swap found
    /// another ETag, a pinned read found the object replaced.
    Conflict,
    /// The store did not answer, or kept failing (5xx, 429, timeouts), for the whole retry
    /// window: trying again later may succeed. The store has already retried.
    Transient,
    /// The store refused the credentials or the permission (401, 403); never retried.
    Denied,
    /// The store location or a key is unusable (bad URL, invalid key, no such bucket): a
    /// configuration error, never retried.
    Invalid,
    /// Anything else (an operation the backend does not support, a local I/O error); not
    /// retryable.
    Other,
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::Conflict => "conflict",
            StoreErrorKind::Transient => "transient",
            StoreErrorKind::Denied => "denied",
            StoreErrorKind::Invalid => "invalid",
            StoreErrorKind::Other => "other",
        })
    }
}

/// An error status the store answered (after the retries, for a 5xx), with the S3 error code
/// and message when the body has them, and what to do; the raw text ends in a dangling colon
/// when the body is empty.
fn status_failure(text: &str) -> Option<String> {
    let rest = text.split("non-2xx status code: ").nth(1)?;
    let (status, body) = rest.split_once(": ").unwrap_or((rest, ""));
    let status = status.trim().trim_end_matches(':');
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find("</")?;
        Some(body[start..start + len].trim().to_string())
    };
    let said = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        _ => String::new(),
    };
    let advice = if status.starts_with('5') || status.starts_with("429") {
        "even after retries; check the service's status, or raise [store] retry_seconds to wait longer"
    } else {
        "check the store URL, the endpoint and the credentials"
    };
    Some(format!("the store answered HTTP {status}{said}, {advice}"))
}

/// Whether the call failed without an answer from the store (timeouts, refused or broken
/// connections), after its retries.
pub(crate) fn is_transport_failure(e: &object_store::Error) -> bool {
    transport_failure(e).is_some()
}

/// Whether the service answered `NoSuchBucket` (a 404 whose body names the code).
pub(crate) fn no_such_bucket(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("<Code>NoSuchBucket</Code>") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// What a request that failed without an answer (after its retries) means for the user: the
/// raw text names internals (`Generic S3 error: Error performing GET ... max_retries`).
fn transport_failure(e: &object_store::Error) -> Option<&'static str> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            return Some(if r.is_timeout() {
                "the store did not answer in time, even after retries: check the endpoint and the network, or raise [store] timeout_seconds"
            } else if r.is_connect() {
                "the store could not be reached, even after retries: check that the endpoint is right and the server is up, or raise [store] retry_seconds"
            } else {
                "the connection to the store failed, even after retries: check the endpoint and the network, or raise [store] retry_seconds"
            });
        }
        cur = err.source();
    }
    None
}

/// Backend errors can span lines and repeat themselves; keep messages to one line.
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.len() > 400 {
        let mut cut = 400;
        while !flat.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &flat[..cut])
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_answers_read_as_advice() {
        let raw = "Generic S3 error: Error performing PUT http://h/b/k in 3s, after 9 retries, max_retries: 1000, retry_timeout: 3s - Server returned non-2xx status code: 500 Internal Server Error: <?xml version=\"1.0\"?> <Error><Code>InternalError</Code> <Message>We encountered an internal error. Please try again.</Message></Error>";
        assert_eq!(
            status_failure(raw).as_deref(),
            Some("the store answered HTTP 500 Internal Server Error (InternalError: We encountered an internal error. Please try again.), even after retries; check the service's status, or raise [store] retry_seconds to wait longer")
        );
        let empty =
            "Error performing GET u in 1s - Server returned non-2xx status code: 400 Bad Request: ";
        let said = status_failure(empty).expect("status");
        assert!(
            !said.ends_with(':') && said.contains("400 Bad Request"),
            "{said}"
        );
        assert_eq!(status_failure("connection reset"), None);
    }
}
