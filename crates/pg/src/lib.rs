//! PostgreSQL side of pgdrill: connection specs, tool discovery, `pg_dump`/`pg_restore`
//! processes, catalog queries, the custom-format archive parser and ephemeral clusters.
//!
//! Nothing here reads pgdrill's config or exits the process: callers pass typed values in.

pub mod archive;
pub mod child;
pub mod client;
pub mod cluster;
pub mod conninfo;
pub mod passfile;
pub mod reaper;
pub mod tls;
pub mod tools;

pub use conninfo::{ConnSpec, Secret};
pub use tools::{PgInstall, PgTools, PgVersion};
