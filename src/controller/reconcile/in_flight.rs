//! Enforcement work in progress (decision 244): signals being evaluated and Quarantine reconciles
//! running. The audit flusher waits, bounded, for a moment when there is none, so its store and
//! status writes do not share the API server and the two cores with the path from a signal to an
//! attached deny.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Counts the enforcement work running now. Cheap to clone (shared count).
#[derive(Clone, Default)]
pub struct InFlight {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    running: AtomicUsize,
    idle: Notify,
}

/// Held while one piece of work runs; dropping it ends the work.
pub struct Working {
    shared: Arc<Shared>,
}

impl Drop for Working {
    fn drop(&mut self) {
        if self.shared.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Starts one piece of work, until the returned guard is dropped.
    pub fn start(&self) -> Working {
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        Working {
            shared: self.shared.clone(),
        }
    }

    /// How many pieces of work run now.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Waits until no work runs, at most `within`. True when it found a quiet moment, false when
    /// the time passed first (the caller goes on anyway: deferral is bounded).
    pub async fn quiet(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before the check, so a notice between the two is not missed.
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.running() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn quiet_waits_for_the_last_piece_of_work_and_is_bounded() {
        let in_flight = InFlight::default();
        assert!(
            in_flight.quiet(Duration::from_millis(1)).await,
            "nothing runs"
        );
        let a = in_flight.start();
        let b = in_flight.start();
        assert_eq!(in_flight.running(), 2);
        assert!(
            !in_flight.quiet(Duration::from_millis(20)).await,
            "bounded while work runs"
        );
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.quiet(Duration::from_secs(30)).await })
        };
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one piece still runs");
        drop(b);
        assert!(waiter.await.unwrap(), "woken when the last one ends");
        assert_eq!(in_flight.running(), 0);
    }
}
