//! Drift checks on demand: the signal listener names the Quarantines an IAM change touched, and
//! the Quarantine controllers of this replica reconcile them at once (decision 200). The periodic
//! drift check stays the safety net: a request that cannot be delivered (no controller runs here,
//! or its queue is full) is reported to the caller, never silently taken as done.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;

use crate::controller::crd::Quarantine;

/// How many requests wait per controller before more are refused (each is one reconcile; the
/// controller collapses repeats of one object).
pub const QUEUE: usize = 1024;

/// What became of a request to check some quarantines now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every named quarantine was handed to a running controller.
    Queued,
    /// No controller runs on this replica (a standby): the sender should retry (and reach the
    /// leader).
    NoController,
    /// A controller's queue is full; the sender should retry later.
    Full,
}

/// Hands quarantine references to the running Quarantine controllers. Cheap to clone.
#[derive(Clone, Default)]
pub struct DriftTrigger {
    senders: Arc<Mutex<Vec<mpsc::Sender<ObjectRef<Quarantine>>>>>,
}

impl DriftTrigger {
    /// A new stream of requests for one controller; it ends being served when dropped.
    pub fn subscribe(&self) -> mpsc::Receiver<ObjectRef<Quarantine>> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        self.senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
        receiver
    }

    /// Whether a controller listens now.
    pub fn has_controller(&self) -> bool {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.retain(|s| !s.is_closed());
        !senders.is_empty()
    }

    /// Asks every running controller to reconcile `refs` now (a controller not watching a
    /// reference's namespace finds nothing to do).
    pub fn check_now(&self, refs: &[ObjectRef<Quarantine>]) -> Delivery {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.retain(|s| !s.is_closed());
        if senders.is_empty() {
            return Delivery::NoController;
        }
        let mut delivery = Delivery::Queued;
        for sender in senders.iter_mut() {
            for r in refs {
                match sender.try_send(r.clone()) {
                    Ok(()) => {}
                    Err(e) if e.is_full() => delivery = Delivery::Full,
                    Err(_) => {}
                }
            }
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn requests_reach_every_live_controller_and_a_missing_one_is_reported() {
        let trigger = DriftTrigger::default();
        let r = ObjectRef::new("q").within("ns");
        assert_eq!(
            trigger.check_now(std::slice::from_ref(&r)),
            Delivery::NoController
        );
        let mut a = trigger.subscribe();
        let b = trigger.subscribe();
        assert!(trigger.has_controller());
        assert_eq!(
            trigger.check_now(std::slice::from_ref(&r)),
            Delivery::Queued
        );
        assert_eq!(a.next().await, Some(r.clone()));
        drop(b);
        drop(a);
        assert!(!trigger.has_controller());
        assert_eq!(trigger.check_now(&[r]), Delivery::NoController);
    }

    #[tokio::test]
    async fn a_full_queue_is_reported_not_hidden() {
        let trigger = DriftTrigger::default();
        let _receiver = trigger.subscribe();
        let refs: Vec<_> = (0..QUEUE + 2)
            .map(|i| ObjectRef::new(&format!("q{i}")).within("ns"))
            .collect();
        assert_eq!(trigger.check_now(&refs), Delivery::Full);
    }
}
