//! Enforcement work in progress (decision 244): signals being evaluated and Quarantine reconciles
//! running. The audit flusher waits, bounded, for a moment when there is none, so its store and
//! status writes do not share the API server and the two cores with the path from a signal to an
//! attached deny.
//!
//! A quiet moment is one that has lasted [`SETTLE`] (decision 253): the path from a signal to a
//! deny is several pieces of work with short gaps between them (the signal's evaluation, then the
//! watch event of the Quarantine it created, then the reconcile that adds the finalizer, another
//! watch event, the reconcile that attaches). Woken at the first zero, the flusher would start its
//! writes in exactly those gaps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long no work must have run for a moment to count as quiet: longer than the gap between
/// two steps of one signal's enforcement (a watch event from the API server), short against the
/// flush interval.
pub const SETTLE: Duration = Duration::from_millis(25);

/// Counts the enforcement work running now. Cheap to clone (shared count).
#[derive(Clone, Default)]
pub struct InFlight {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    running: AtomicUsize,
    idle: Notify,
    /// When the last piece of work ended (none yet: quiet since the start).
    idle_since: Mutex<Option<Instant>>,
}

/// Held while one piece of work runs; dropping it ends the work.
pub struct Working {
    shared: Arc<Shared>,
}

impl Drop for Working {
    fn drop(&mut self) {
        if self.shared.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Ok(mut since) = self.shared.idle_since.lock() {
                *since = Some(Instant::now());
            }
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

    /// A background writer's patience: see [`Patience`].
    pub fn patience(&self, within: Duration) -> Patience {
        Patience {
            in_flight: self.clone(),
            within,
            patient: true,
        }
    }

    /// Waits until no work has run for [`SETTLE`], at most `within`. True when it found such a
    /// moment, false when the time passed first (the caller goes on anyway: deferral is bounded).
    pub async fn quiet(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            // Registered before the check, so a notice between the two is not missed.
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running() == 0 {
                let since = self.shared.idle_since.lock().ok().and_then(|s| *s);
                let settled = since.map_or_else(Instant::now, |t| t + SETTLE);
                if settled <= Instant::now() {
                    return true;
                }
                if settled > deadline {
                    tokio::time::sleep_until(deadline).await;
                    return false;
                }
                // Work that starts and ends meanwhile moves the moment on: look again.
                tokio::time::sleep_until(settled).await;
                continue;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return false;
            }
        }
    }
}

/// How a background writer (the audit flusher, the `lastSignal` recorder) gives way to
/// enforcement over one pass of its work: before each step it waits for a quiet moment, at most
/// `within`; once a wait runs out the controller is busy, and the rest of the pass goes on
/// without waiting, so the pass always ends (decisions 244 and 253).
pub struct Patience {
    in_flight: InFlight,
    within: Duration,
    patient: bool,
}

impl Patience {
    /// Waits before the next step (not at all once a wait of this pass ran out).
    pub async fn wait(&mut self) {
        if self.patient {
            self.patient = self.in_flight.quiet(self.within).await;
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
        let ended = Instant::now();
        drop(b);
        assert!(waiter.await.unwrap(), "quiet once the last one ends");
        assert!(
            ended.elapsed() >= SETTLE,
            "a moment counts as quiet only once it lasted SETTLE"
        );
        assert_eq!(in_flight.running(), 0);
    }

    #[tokio::test]
    async fn work_that_runs_between_two_steps_moves_the_quiet_moment_on() {
        let in_flight = InFlight::default();
        drop(in_flight.start());
        let first_ended = Instant::now();
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.quiet(Duration::from_secs(30)).await })
        };
        // The next step of the same signal starts within the gap, and ends.
        tokio::time::sleep(SETTLE / 2).await;
        let second = in_flight.start();
        tokio::time::sleep(SETTLE).await;
        assert!(!waiter.is_finished(), "the second step runs");
        let second_ended = Instant::now();
        drop(second);
        assert!(waiter.await.unwrap());
        assert!(
            second_ended.elapsed() >= SETTLE && first_ended.elapsed() >= SETTLE * 2,
            "quiet is counted from the end of the last step, not the first"
        );
        // Bounded: a deadline inside the settling time answers false at the deadline.
        drop(in_flight.start());
        assert!(!in_flight.quiet(SETTLE / 5).await);
    }
}
