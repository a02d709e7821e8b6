//! An index of the Quarantines that hold a deny (phase Active or Releasing), kept from the same
//! watch events as the quarantine cache. A policy's `activeQuarantines` is read from it: counting
//! over the whole cache cost O(quarantines) per policy reconcile, so a cold start with 10,000
//! policies and 100,000 quarantines spent its time there (decision 082).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher::Event;

use crate::controller::crd::{Phase, Quarantine};

/// (namespace, quarantine name) → policy name, for quarantines holding a deny.
type Entries = HashMap<(String, String), String>;

#[derive(Default)]
struct State {
    /// What the last complete list and the events since say.
    current: Entries,
    /// A re-list in progress: built from its objects, swapped in when it is done.
    relisting: Option<Entries>,
}

/// Quarantines in phase Active or Releasing, by policy. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct ActiveIndex {
    state: Arc<Mutex<State>>,
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

fn put(entries: &mut Entries, q: &Quarantine) {
    if holds_deny(q) {
        entries.insert(key(q), q.spec.policy_ref.name.clone());
    } else {
        entries.remove(&key(q));
    }
}

impl ActiveIndex {
    /// Applies one watch event (after the cache applied it).
    pub fn observe(&self, event: &Event<Quarantine>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::Init => state.relisting = Some(Entries::new()),
            Event::InitApply(q) => match state.relisting.as_mut() {
                Some(entries) => put(entries, q),
                None => put(&mut state.current, q),
            },
            Event::InitDone => {
                if let Some(entries) = state.relisting.take() {
                    state.current = entries;
                }
            }
            Event::Apply(q) => put(&mut state.current, q),
            Event::Delete(q) => {
                state.current.remove(&key(q));
            }
        }
    }

    /// How many quarantines of policy `namespace/policy` are Active or Releasing.
    pub fn count(&self, namespace: &str, policy: &str) -> usize {
        self.state.lock().map_or(0, |state| {
            state
                .current
                .iter()
                .filter(|((ns, _), p)| ns == namespace && p.as_str() == policy)
                .count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::crd::QuarantineStatus;

    fn quarantine(name: &str, policy: &str, phase: Option<Phase>) -> Quarantine {
        let mut q: Quarantine = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoguardrails.io/v1alpha1",
            "kind": "Quarantine",
            "metadata": { "name": name, "namespace": "team" },
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
