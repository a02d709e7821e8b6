//! An index of the Quarantines that hold a deny (phase Active or Releasing), kept from the same
//! watch events as the quarantine cache. A policy's `activeQuarantines` is read from it: counting
//! over the whole cache cost O(quarantines) per policy reconcile, so a cold start with 10,000
//! policies and 100,000 quarantines spent its time there (decision 082).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher::Event;

use crate::controller::crd::{Phase, Quarantine};

/// An index kept from a cache's watch events: what the last complete list and the events since
/// say, and a re-list in progress (built from its objects, swapped in when it is done).
#[derive(Default)]
pub(crate) struct Relisted<T> {
    pub(crate) current: T,
    relisting: Option<T>,
}

/// How one kind of index takes an object in and lets it go.
pub(crate) trait Entries: Default {
    /// Records `q` (or forgets it when it does not belong).
    fn put(&mut self, q: &Quarantine);
    /// Forgets `q`.
    fn remove(&mut self, q: &Quarantine);
}

impl<T: Entries> Relisted<T> {
    /// Applies one watch event.
    pub(crate) fn observe(&mut self, event: &Event<Quarantine>) {
        match event {
            Event::Init => self.relisting = Some(T::default()),
            Event::InitApply(q) => self.relisting.as_mut().unwrap_or(&mut self.current).put(q),
            Event::InitDone => {
                if let Some(entries) = self.relisting.take() {
                    self.current = entries;
                }
            }
            Event::Apply(q) => self.current.put(q),
            Event::Delete(q) => self.current.remove(q),
        }
    }
}

/// (namespace, quarantine name) → policy name, for quarantines holding a deny.
#[derive(Default)]
struct Holding(HashMap<(String, String), String>);

impl Entries for Holding {
    fn put(&mut self, q: &Quarantine) {
        if holds_deny(q) {
            self.0.insert(key(q), q.spec.policy_ref.name.clone());
        } else {
            self.0.remove(&key(q));
        }
    }

    fn remove(&mut self, q: &Quarantine) {
        self.0.remove(&key(q));
    }
}

/// Quarantines in phase Active or Releasing, by policy. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct ActiveIndex {
    state: Arc<Mutex<Relisted<Holding>>>,
}

fn holds_deny(q: &Quarantine) -> bool {
    q.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| matches!(p, Phase::Active | Phase::Releasing))
}

fn key(q: &Quarantine) -> (String, String) {
    (
        q.metadata.namespace.clone().unwrap_or_default(),
        q.metadata.name.clone().unwrap_or_default(),
    )
}

impl ActiveIndex {
    /// Applies one watch event (after the cache applied it).
    pub fn observe(&self, event: &Event<Quarantine>) {
        if let Ok(mut state) = self.state.lock() {
            state.observe(event);
        }
    }

    /// How many quarantines of policy `namespace/policy` are Active or Releasing.
    pub fn count(&self, namespace: &str, policy: &str) -> usize {
        self.state.lock().map_or(0, |state| {
            state
                .current
                .0
                .iter()
                .filter(|((ns, _), p)| ns == namespace && p.as_str() == policy)
                .count()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::controller::crd::QuarantineStatus;

    /// A quarantine of `policy` in `phase`, its status at its generation (for the index tests).
    pub(crate) fn quarantine(name: &str, policy: &str, phase: Option<Phase>) -> Quarantine {
        let mut q: Quarantine = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoguardrails.io/v1alpha1",
            "kind": "Quarantine",
            "metadata": { "name": name, "namespace": "team", "generation": 1 },
            "spec": {
                "policyRef": { "name": policy },
                "signal": { "source": "CostAnomaly", "id": "a", "accountId": "111111111111",
                            "impactUsd": 1.0, "observedAt": "2026-01-01T00:00:00Z" },
                "targets": [{ "kind": "IamRole", "arn": "arn:aws:iam::111111111111:role/r" }],
                "deny": { "actions": ["ec2:RunInstances"] },
                "mode": "Auto",
                "ttl": "1h"
            }
        }))
        .expect("quarantine");
        q.status = phase.map(|p| QuarantineStatus {
            phase: Some(p),
            observed_generation: Some(1),
            released_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().expect("time"),
            )),
            ..QuarantineStatus::default()
        });
        q
    }

    #[test]
    fn follows_phases_deletes_and_relists() {
        let index = ActiveIndex::default();
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(quarantine("a", "p", Some(Phase::Active))));
        index.observe(&Event::InitApply(quarantine(
            "b",
            "p",
            Some(Phase::Released),
        )));
        index.observe(&Event::InitApply(quarantine(
            "c",
            "other",
            Some(Phase::Releasing),
        )));
        // Before the list is done, the previous (empty) view stands.
        assert_eq!(index.count("team", "p"), 0);
        index.observe(&Event::InitDone);
        assert_eq!(index.count("team", "p"), 1);
        assert_eq!(index.count("team", "other"), 1);
        assert_eq!(index.count("elsewhere", "p"), 0);

        index.observe(&Event::Apply(quarantine("b", "p", Some(Phase::Releasing))));
        assert_eq!(index.count("team", "p"), 2);
        index.observe(&Event::Apply(quarantine("a", "p", Some(Phase::Released))));
        assert_eq!(index.count("team", "p"), 1);
        index.observe(&Event::Delete(quarantine("b", "p", Some(Phase::Releasing))));
        assert_eq!(index.count("team", "p"), 0);
        index.observe(&Event::Apply(quarantine("d", "p", None)));
        assert_eq!(index.count("team", "p"), 0);

        // A re-list replaces everything: what is not listed again is gone.
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(quarantine("e", "p", Some(Phase::Active))));
        index.observe(&Event::InitDone);
        assert_eq!(index.count("team", "p"), 1);
        assert_eq!(index.count("team", "other"), 0);
    }
}
