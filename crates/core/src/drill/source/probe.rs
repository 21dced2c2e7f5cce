//! `doctor`'s look at a physical source: the tool is installed, its version, and it lists
//! at least one usable backup.

use super::{barman, named_env, pgbackrest, Listed};
use crate::config::{Env, PhysicalDrill, PhysicalSource};
use crate::{Error, Result};
use pgdrill_pg::cluster::RestoreDir;

/// What `doctor` says of a physical source: the tool, its version, and how many backups it
/// lists (the newest's id); an error when the tool is missing or cannot list.
pub async fn probe(p: &PhysicalDrill, env: &Env, cancel: &crate::cancel::Cancel) -> Result<String> {
    let mut vars = named_env(p, env)?;
    if let PhysicalSource::BarmanCloud(b) = &p.source {
        vars.extend(barman::credentials(b, env)?);
    }
    let dir = tokio::task::spawn_blocking(RestoreDir::create)
        .await
        .map_err(|e| Error::Failed(format!("preparing a scratch directory crashed: {e}")))?
        .map_err(|e| Error::Failed(format!("cannot prepare a scratch directory: {e}")))?;
    let (tool, listed, what) = match &p.source {
        PhysicalSource::PgBackRest(s) => (
            pgbackrest::version(&dir, &vars, cancel).await?,
            pgbackrest::list(s, &dir, &vars, cancel).await?,
            format!("stanza {}", s.stanza),
        ),
        PhysicalSource::BarmanCloud(s) => (
            barman::version(&dir, &vars, cancel).await?,
            barman::list(s, &dir, &vars, cancel).await?,
            format!("{} server {}", s.url, s.server_name),
        ),
        PhysicalSource::Command(c) => {
            let program = std::path::Path::new(&c.run[0]);
            let found = if program.is_absolute() {
                program.is_file()
            } else {
                env.get("PATH")
                    .map(|p| std::env::split_paths(p).any(|d| d.join(program).is_file()))
                    .unwrap_or(false)
            };
            return if found {
                Ok(format!(
                    "the fetch command {} is installed (the drill runs it)",
                    c.run[0]
                ))
            } else {
                Err(Error::Failed(format!(
                    "the fetch command {} is not found",
                    c.run[0]
                )))
            };
        }
    };
    let usable: Vec<&Listed> = listed.iter().filter(|l| l.usable).collect();
    match usable.last() {
        None => Err(Error::Failed(format!(
            "{tool}: {what} lists no usable backup: make one first"
        ))),
        Some(newest) => Ok(format!(
            "{tool}; {what} lists {} backup{} (newest {})",
            usable.len(),
            if usable.len() == 1 { "" } else { "s" },
            newest.id
        )),
    }
}
