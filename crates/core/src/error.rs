//! One error type whose variants are the exit codes of DESIGN.md §8. Each message is one
//! sentence naming what to do; none may contain a secret. A store failure keeps its meaning
//! ([`StoreErrorKind`]: not found, conflict, transient, ...) on its way up, so callers can
//! match on it after any number of `?` and [`Error::context`] calls.

use pgdrill_store::StoreError;
pub use pgdrill_store::StoreErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operation ran and failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Bad input or bad config (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// Checksum mismatch, truncated or corrupt object, invalid manifest (exit 3).
    #[error("{0}")]
    Integrity(String),
    /// Wrong or missing decryption key (exit 4).
    #[error("{0}")]
    Key(String),
    /// Refused by a safety guard; nothing was changed (exit 5).
    #[error("{0}")]
    Refused(String),
    /// Another job holds the lease (exit 6).
    #[error("{0}")]
    Locked(String),
    /// A store call failed; `kind` says how. Exit 2 for [`StoreErrorKind::Invalid`] (a bad
    /// store URL or key, a missing bucket: the configuration), else 1. A caller to whom a
    /// missing object means a damaged backup (exit 3) maps it to [`Error::Integrity`] itself
    /// (`verify::stored_object_error`).
    #[error("{message}")]
    Store {
        kind: StoreErrorKind,
        message: String,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Failed(_) => 1,
            Error::Invalid(_) => 2,
            Error::Integrity(_) => 3,
            Error::Key(_) => 4,
            Error::Refused(_) => 5,
            Error::Locked(_) => 6,
            Error::Store {
                kind: StoreErrorKind::Invalid,
                ..
            } => 2,
            Error::Store { .. } => 1,
        }
    }

    /// What a store failure meant, when this error is one.
    pub fn store_kind(&self) -> Option<StoreErrorKind> {
        match self {
            Error::Store { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether this is a store failure that may succeed when tried again later (the store
    /// has already retried it for its retry window).
    pub fn is_retryable(&self) -> bool {
        self.store_kind() == Some(StoreErrorKind::Transient)
    }

    /// Whether this is the store saying an object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.store_kind() == Some(StoreErrorKind::NotFound)
    }

    /// Prefixes the message with what was being done ("backup app: ...").
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        self.map_message(|m| format!("{what}: {m}"))
    }

    /// The same kind of error (same exit code) with its message rewritten by `f`.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::Failed(m) => Error::Failed(f(m)),
            Error::Invalid(m) => Error::Invalid(f(m)),
            Error::Integrity(m) => Error::Integrity(f(m)),
            Error::Key(m) => Error::Key(f(m)),
            Error::Refused(m) => Error::Refused(f(m)),
            Error::Locked(m) => Error::Locked(f(m)),
            Error::Store { kind, message } => Error::Store {
                kind,
                message: f(message),
            },
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<pgdrill_pg::client::PgError> for Error {
    fn from(e: pgdrill_pg::client::PgError) -> Self {
        Error::Failed(crate::hints::with_connect_hint(e.to_string()))
    }
}

impl From<pgdrill_pg::conninfo::ConnError> for Error {
    fn from(e: pgdrill_pg::conninfo::ConnError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<pgdrill_pg::tools::ToolError> for Error {
    fn from(e: pgdrill_pg::tools::ToolError) -> Self {
        Error::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_core(e: StoreError) -> Result<()> {
        fn inner(e: StoreError) -> Result<()> {
            Err(e)?
        }
        inner(e).map_err(|e| e.context("backup app"))
    }

    #[test]
    fn store_errors_keep_their_kind_and_exit_code() {
        let not_found = through_core(StoreError::NotFound {
            key: "app/backups/x/manifest.json".into(),
        })
        .expect_err("not found");
        assert!(not_found.is_not_found(), "{not_found:?}");
        assert_eq!(not_found.store_kind(), Some(StoreErrorKind::NotFound));
        assert_eq!(
            not_found.to_string(),
            "backup app: app/backups/x/manifest.json was not found in the store"
        );
        assert_eq!(not_found.exit_code(), 1);

        let conflict = through_core(StoreError::AlreadyExists {
            key: "app/lease".into(),
        })
        .expect_err("conflict");
        assert_eq!(conflict.store_kind(), Some(StoreErrorKind::Conflict));
        assert!(matches!(
            conflict,
            Error::Store {
                kind: StoreErrorKind::Conflict,
                ..
            }
        ));
        assert_eq!(conflict.exit_code(), 1);
        assert!(!conflict.is_retryable() && !conflict.is_not_found());

        let transient = Error::from(StoreError::Backend {
            action: "read",
            key: "k".into(),
            detail: "503".into(),
            retryable: true,
        });
        assert!(transient.is_retryable());
        assert_eq!(transient.exit_code(), 1);
        let denied = Error::from(StoreError::Denied {
            action: "read",
            key: "k".into(),
            detail: "403".into(),
        });
        assert_eq!(denied.store_kind(), Some(StoreErrorKind::Denied));
        assert_eq!(denied.exit_code(), 1);
        // Configuration errors keep exit 2, as before.
        for invalid in [
            StoreError::BadUrl {
                url: "gs://x".into(),
                reason: "unsupported".into(),
            },
            StoreError::NoBucket {
                bucket: "b".into(),
                endpoint: "http://h".into(),
            },
        ] {
            let e = Error::from(invalid);
            assert_eq!(e.store_kind(), Some(StoreErrorKind::Invalid));
            assert_eq!(e.exit_code(), 2, "{e}");
        }
        assert_eq!(Error::Failed("x".into()).store_kind(), None);
    }

    /// The same through a real store: what a folder answers keeps its meaning in core.
    #[tokio::test]
    async fn a_real_store_s_not_found_and_conflict_keep_their_kind() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = pgdrill_store::Store::open_folder(dir.path()).expect("open");
        async fn read(store: &pgdrill_store::Store, key: &str) -> Result<bytes::Bytes> {
            Ok(store.get(key).await?)
        }
        async fn create(store: &pgdrill_store::Store, key: &str) -> Result<()> {
            store.put_if_absent(key, "x".into()).await?;
            Ok(())
        }
        let e = read(&store, "db/none").await.expect_err("missing");
        assert!(e.is_not_found(), "{e:?}");
        create(&store, "db/lease").await.expect("first create");
        let e = create(&store, "db/lease")
            .await
            .map_err(|e| e.context("take the lease"))
            .expect_err("second create");
        assert_eq!(e.store_kind(), Some(StoreErrorKind::Conflict), "{e:?}");
        assert!(e.to_string().starts_with("take the lease: "), "{e}");
    }
}
