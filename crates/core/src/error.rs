//! One error type whose variants are the exit codes of DESIGN.md §8. Each message is one
//! sentence naming what to do; none may contain a secret.

use pgdrill_store::StoreError;

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
        }
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
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadUrl { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::NoBucket { .. } => Error::Invalid(e.to_string()),
            _ => Error::Failed(e.to_string()),
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
