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
                let detail = match transport_failure(&other) {
                    Some(advice) => advice.to_string(),
                    None => one_line(&other.to_string()),
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

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }
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
