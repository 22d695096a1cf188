//! The one-shot stop signal sources watch.

use tokio::sync::watch;

/// Fires once; every clone sees it. Sources select on [`ShutdownSignal::wait`];
/// transforms and sinks do not watch it at all — they stop when their input
/// drains, which is what makes shutdown lossless.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

/// The trigger side, held by the runtime (and the signal handler).
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

/// A connected trigger and signal.
pub fn shutdown_channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx: std::sync::Arc::new(tx) }, ShutdownSignal { rx })
}

impl ShutdownTrigger {
    /// Asks every source to stop. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A new signal watching this trigger.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal { rx: self.tx.subscribe() }
    }
}

impl ShutdownSignal {
    /// True once shutdown was asked for.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is asked for (at once if it already was). If
    /// the trigger is gone without firing, never resolves.
    pub async fn wait(&mut self) {
        if self.rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (trigger, signal) = shutdown_channel();
        let mut a = signal.clone();
        let mut b = trigger.signal();
        assert!(!a.is_triggered());
        trigger.trigger();
        a.wait().await;
        b.wait().await;
        assert!(signal.is_triggered());
    }
}
