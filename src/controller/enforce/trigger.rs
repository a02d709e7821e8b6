//! Drift checks on demand: the signal listener names the Quarantines an IAM change touched, and
//! the Quarantine controllers of this replica reconcile them at once (decision 200). The periodic
//! drift check stays the safety net: a request that cannot be delivered (no controller runs here,
//! or its queue is full) is reported to the caller, never silently taken as done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a reported change is remembered (longer than the engine's settle window).
pub const REPORT_MEMORY: Duration = Duration::from_secs(300);
/// Most reported changes remembered; the oldest go first.
pub const MAX_REPORTS: usize = 10_000;

/// A principal as IAM events name it: account, kind and name key (`crate::principal::name_key`).
type ReportKey = (String, crate::aws::PrincipalKind, String);

/// Hands quarantine references to the running Quarantine controllers, and remembers which
/// principals IAM reported changed and when. Cheap to clone.
#[derive(Clone, Default)]
pub struct DriftTrigger {
    senders: Arc<Mutex<Vec<mpsc::Sender<ObjectRef<Quarantine>>>>>,
    reported: Arc<Mutex<HashMap<ReportKey, Instant>>>,
}

impl DriftTrigger {
    /// Records that IAM reported a change to `principal` in `account` now. A read right after our
    /// own write is normally distrusted for the settle window (IAM is eventually consistent); a
    /// change reported after the write is evidence that the read is right (decision 200).
    pub fn report_change(&self, account: &str, principal: &crate::aws::PrincipalRef) {
        let now = Instant::now();
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        reported.retain(|_, at| now.duration_since(*at) < REPORT_MEMORY);
        if reported.len() >= MAX_REPORTS
            && let Some(oldest) = reported
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            reported.remove(&oldest);
        }
        reported.insert(
            (
                account.to_string(),
                principal.kind,
                crate::principal::name_key(&principal.name),
            ),
            now,
        );
    }

    /// Whether IAM reported a change to `principal` in `account` after `since`.
    pub fn changed_after(
        &self,
        account: &str,
        principal: &crate::aws::PrincipalRef,
        since: Instant,
    ) -> bool {
        let key = (
            account.to_string(),
            principal.kind,
            crate::principal::name_key(&principal.name),
        );
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|at| *at > since)
    }

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

    #[test]
    fn a_reported_change_counts_only_after_the_given_instant_and_by_iam_name_rule() {
        let trigger = DriftTrigger::default();
        let role = crate::aws::PrincipalRef {
            kind: crate::aws::PrincipalKind::Role,
            name: "CI-Deployer".into(),
        };
        let lower = crate::aws::PrincipalRef {
            kind: crate::aws::PrincipalKind::Role,
            name: "ci-deployer".into(),
        };
        let user = crate::aws::PrincipalRef {
            kind: crate::aws::PrincipalKind::User,
            name: "ci-deployer".into(),
        };
        let before = Instant::now();
        assert!(!trigger.changed_after("123456789012", &role, before));
        trigger.report_change("123456789012", &role);
        assert!(trigger.changed_after("123456789012", &lower, before));
        assert!(!trigger.changed_after("123456789012", &user, before));
        assert!(!trigger.changed_after("210987654321", &lower, before));
        assert!(!trigger.changed_after("123456789012", &lower, Instant::now()));
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
