//! Cooperative cancellation: the CLI or daemon flips it on SIGINT/SIGTERM; jobs watch it,
//! kill their children, abort uploads and return an error.

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Cancel(watch::Receiver<bool>);

#[derive(Debug)]
pub struct CancelHandle(watch::Sender<bool>);

impl Cancel {
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle(tx), Cancel(rx))
    }
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
    /// Resolves when cancellation is requested.
    pub async fn cancelled(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl CancelHandle {
    pub fn cancel(&self) {
        let _ = self.0.send(true);
    }
}
