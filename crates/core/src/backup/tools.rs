//! The PostgreSQL client tools a backup runs: already found, or being found on a blocking
//! thread (`pg_config --bindir`, each directory's `--version`) while the backup takes its
//! lease and opens its snapshot, so that the probes are off the way to pg_dump's start.

use futures::future::{BoxFuture, FutureExt, Shared};
use pgdrill_pg::PgTools;

/// [`PgTools`], now or soon; cheap to clone.
#[derive(Clone)]
pub struct Tools(Shared<BoxFuture<'static, PgTools>>);

impl Tools {
    /// Tools found already.
    pub fn found(tools: PgTools) -> Tools {
        Tools(futures::future::ready(tools).boxed().shared())
    }

    /// [`PgTools::discover`], started now on a blocking thread (within a Tokio runtime).
    /// A discovery that panicked finds nothing (the backup then fails saying pg_dump was not
    /// found).
    pub fn discover() -> Tools {
        let probing = tokio::task::spawn_blocking(PgTools::discover);
        Tools(
            async move { probing.await.unwrap_or_default() }
                .boxed()
                .shared(),
        )
    }

    /// The tools, once found.
    pub async fn get(&self) -> PgTools {
        self.0.clone().await
    }
}

impl From<PgTools> for Tools {
    fn from(tools: PgTools) -> Tools {
        Tools::found(tools)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn found_and_discovered_tools_are_the_same() {
        let now = PgTools::discover();
        let later = Tools::discover();
        let again = later.clone();
        let (a, b) = tokio::join!(later.get(), again.get());
        assert_eq!(a.installs().len(), now.installs().len());
        assert_eq!(b.installs().len(), now.installs().len());
        let found = Tools::found(now.clone());
        assert_eq!(found.get().await.installs().len(), now.installs().len());
    }
}
