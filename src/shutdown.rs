//! Graceful shutdown: one cloneable `Shutdown` handle (a `tokio::sync::watch` flag) that SIGTERM,
//! SIGINT or code can trigger and every long-running task can await. It only signals; it must not
//! decide what a task does when asked to stop (draining, releasing the lease) — the tasks do.

use std::sync::Arc;
use tokio::sync::watch;

/// Why the process was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownCause {
    /// SIGTERM (what Kubernetes sends when it stops a pod).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// Triggered by code (a fatal error elsewhere, a test).
    Requested,
}

impl ShutdownCause {
    /// A short lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownCause::Terminate => "SIGTERM",
            ShutdownCause::Interrupt => "SIGINT",
            ShutdownCause::Requested => "requested",
        }
    }
}

/// Why the signal listener could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// The operating system refused the signal handler.
    #[error("failed to install the {signal} handler: {source}")]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ShutdownError {
    /// The category used for metric labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ShutdownError::Signal { .. } => "Signal",
        }
    }
}

/// A cloneable "please stop" flag. Triggering is idempotent; the first cause wins.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: Arc<watch::Sender<Option<ShutdownCause>>>,
    receiver: watch::Receiver<Option<ShutdownCause>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Shutdown {
        let (sender, receiver) = watch::channel(None);
        Shutdown {
            sender: Arc::new(sender),
            receiver,
        }
    }

    /// Asks every holder to stop. Later calls keep the first cause.
    pub fn trigger(&self, cause: ShutdownCause) {
        self.sender.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(cause);
                true
            } else {
                false
            }
        });
    }

    /// The cause, once triggered.
    pub fn cause(&self) -> Option<ShutdownCause> {
        *self.receiver.borrow()
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        self.cause().is_some()
    }

    /// Resolves once triggered (at once if it already was), with the cause.
    pub async fn wait(&self) -> ShutdownCause {
        let mut receiver = self.receiver.clone();
        loop {
            if let Some(cause) = *receiver.borrow_and_update() {
                return cause;
            }
            // The sender lives in `self`, so `changed` cannot fail while we hold `self`.
            if receiver.changed().await.is_err() {
                return ShutdownCause::Requested;
            }
        }
    }

    /// Installs SIGTERM and SIGINT handlers now and spawns a task that triggers this handle on
    /// the first of them. A second signal after the first is logged and ignored: the tasks are
    /// already stopping, and Kubernetes sends SIGKILL after `terminationGracePeriodSeconds`.
    pub fn listen_for_signals(&self) -> Result<tokio::task::JoinHandle<()>, ShutdownError> {
        let mut listener = SignalListener::install()?;
        let shutdown = self.clone();
        Ok(tokio::spawn(async move {
            let cause = listener.next().await;
            tracing::info!(
                cause = cause.as_str(),
                "shutdown requested: stopping intake, draining, releasing the lease"
            );
            shutdown.trigger(cause);
            loop {
                let again = listener.next().await;
                tracing::warn!(
                    cause = again.as_str(),
                    "shutdown already in progress; signal ignored"
                );
            }
        }))
    }
}

/// SIGTERM and SIGINT streams, installed together.
struct SignalListener {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl SignalListener {
    #[cfg(unix)]
    fn install() -> Result<SignalListener, ShutdownError> {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate =
            signal(SignalKind::terminate()).map_err(|source| ShutdownError::Signal {
                signal: "SIGTERM",
                source,
            })?;
        let interrupt =
            signal(SignalKind::interrupt()).map_err(|source| ShutdownError::Signal {
                signal: "SIGINT",
                source,
            })?;
        Ok(SignalListener {
            terminate,
            interrupt,
        })
    }

    #[cfg(not(unix))]
    fn install() -> Result<SignalListener, ShutdownError> {
        Ok(SignalListener {})
    }

    #[cfg(unix)]
    async fn next(&mut self) -> ShutdownCause {
        tokio::select! {
            _ = self.terminate.recv() => ShutdownCause::Terminate,
            _ = self.interrupt.recv() => ShutdownCause::Interrupt,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> ShutdownCause {
        match tokio::signal::ctrl_c().await {
            Ok(()) => ShutdownCause::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_resolves_for_every_clone_and_keeps_the_first_cause() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        let waiter = shutdown.clone();
        let task = tokio::spawn(async move { waiter.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!task.is_finished(), "wait returned before trigger");
        shutdown.trigger(ShutdownCause::Terminate);
        shutdown.trigger(ShutdownCause::Requested);
        let cause = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("wait did not resolve")
            .expect("task panicked");
        assert_eq!(cause, ShutdownCause::Terminate);
        assert_eq!(shutdown.cause(), Some(ShutdownCause::Terminate));
        // Waiting after the fact resolves at once.
        assert_eq!(shutdown.clone().wait().await, ShutdownCause::Terminate);
    }
}
