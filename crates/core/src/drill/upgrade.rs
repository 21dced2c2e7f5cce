//! `drill --major N`: an upgrade rehearsal. The backup is restored into a throwaway cluster
//! of an installed newer major (Debian's `/usr/lib/postgresql/N/bin`, a server from npm or
//! PyPI on `PGDRILL_PG_PATHS`, ...: whatever `PgTools` found), the same checks run, and
//! the evidence records both versions.

use super::evidence::{TargetInfo, Upgrade};
use crate::manifest::Manifest;
use crate::{Error, Result};
use pgdrill_pg::{PgInstall, PgTools};

/// The installed majors that can run a throwaway cluster, newest first, deduplicated.
pub fn server_majors(tools: &PgTools) -> Vec<&PgInstall> {
    let mut out: Vec<&PgInstall> = Vec::new();
    for i in tools.installs().iter().filter(|i| i.has_server()) {
        if !out.iter().any(|o| o.version.major == i.version.major) {
            out.push(i);
        }
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.version.major));
    out
}

/// The install of major `n` for the rehearsal: it must be installed, and not older than the
/// backup's source server.
pub fn install(tools: &PgTools, m: &Manifest, n: u32) -> Result<PgInstall> {
    let from = m.server.version_num / 10_000;
    if n < from {
        return Err(Error::Invalid(format!(
            "--major {n} is older than the backup's source server (PostgreSQL {}): an upgrade rehearsal needs a newer or equal major",
            m.server.version
        )));
    }
    let majors = server_majors(tools);
    majors
        .iter()
        .find(|i| i.version.major == n)
        .map(|i| (*i).clone())
        .ok_or_else(|| {
            let have: Vec<String> = majors.iter().map(|i| i.version.major.to_string()).collect();
            Error::Invalid(format!(
                "PostgreSQL {n} is not installed here (servers found: {}): install it and add its bin folder to PGDRILL_PG_PATHS (README, \"Upgrade rehearsal\")",
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            ))
        })
}

/// The evidence's `upgrade` entry.
pub fn evidence(m: &Manifest, n: u32, target: &TargetInfo) -> Upgrade {
    Upgrade {
        from_version: m.server.version.clone(),
        from_major: m.server.version_num / 10_000,
        to_major: n,
        to_version: target.server_version.clone(),
    }
}
