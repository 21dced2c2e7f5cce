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

impl Cancel {
    /// A token cancelled as soon as `a` or `b` is (e.g. a signal, or a job's lost lease).
    pub fn either(a: &Cancel, b: &Cancel) -> Cancel {
        let (handle, merged) = Cancel::new();
        let (mut a, mut b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = a.cancelled() => handle.cancel(),
                _ = b.cancelled() => handle.cancel(),
                // Every holder of the merged token is gone: nothing left to tell.
                _ = handle.0.closed() => {}
            }
        });
        merged
    }
}
