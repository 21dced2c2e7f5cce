//! pgdrill's core: ids, the manifest and catalog, the backup pipeline, verify/export,
//! restore, drills, retention and policy. Callers pass typed settings in; nothing here
//! reads the process environment on its own or exits the process.

pub mod alert;
pub mod audit;
pub mod backup;
pub mod cancel;
pub mod catalog;
pub mod catalog_cache;
pub mod clock;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod drill;
pub mod env;
pub mod error;
pub mod fleet;
pub mod frames;
pub mod hints;
pub mod ids;
pub mod jobs;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod mirror;
pub mod pipeline;
pub mod progress;
pub mod protect;
pub mod prune;
pub mod readers;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod status;
pub mod stores;
pub mod summary;
pub mod time;
pub mod verify;

pub use error::{Error, Result};
