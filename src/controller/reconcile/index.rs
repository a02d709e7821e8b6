//! Indexes of Quarantines by policy, kept from the same watch events as the quarantine cache:
//! those that hold a deny (phase Active or Releasing: a policy's `activeQuarantines`), and those
//! held whole in the cache (what intake evaluates a policy against). Counting or filtering over
//! the whole cache cost O(quarantines) per policy reconcile and per matching signal, so a cold
//! start and intake at 100,000 quarantines spent their time there (decisions 082 and 147).

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher::Event;

use crate::controller::crd::{Phase, Quarantine};

/// An index kept from a cache's watch events: what the last complete list and the events since
/// say, and a re-list in progress (built from its objects, swapped in when it is done).
#[derive(Default)]
pub struct Relisted<T> {
    pub(crate) current: T,
    relisting: Option<T>,
}

/// How one kind of index takes an object in and lets it go.
pub trait Entries: Default {
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

/// Which quarantines an index keeps.
pub trait Select: Default {
    /// True when `q` belongs in the index.
    fn includes(q: &Quarantine) -> bool;
}

/// The quarantines that `S` selects, grouped by policy: (namespace, policy) → names, and the
/// policy each name is filed under (so a moved or deleted one is found without a scan).
pub struct Grouped<S> {
    by_policy: HashMap<(String, String), BTreeSet<String>>,
    filed_under: HashMap<(String, String), String>,
    select: PhantomData<S>,
}

impl<S> Default for Grouped<S> {
    fn default() -> Self {
        Grouped {
            by_policy: HashMap::new(),
            filed_under: HashMap::new(),
            select: PhantomData,
        }
    }
}

impl<S: Select> Entries for Grouped<S> {
    fn put(&mut self, q: &Quarantine) {
        self.remove(q);
        if S::includes(q) {
            let (namespace, name) = key(q);
            let policy = q.spec.policy_ref.name.clone();
            self.by_policy
                .entry((namespace.clone(), policy.clone()))
                .or_default()
                .insert(name.clone());
            self.filed_under.insert((namespace, name), policy);
        }
    }

    fn remove(&mut self, q: &Quarantine) {
        let (namespace, name) = key(q);
        let Some(policy) = self.filed_under.remove(&(namespace.clone(), name.clone())) else {
            return;
        };
        let group = (namespace, policy);
        if let Some(names) = self.by_policy.get_mut(&group) {
            names.remove(&name);
            if names.is_empty() {
                self.by_policy.remove(&group);
            }
        }
    }
}

/// Selects the quarantines holding a deny (phase Active or Releasing).
#[derive(Default)]
pub struct Holding;

impl Select for Holding {
    fn includes(q: &Quarantine) -> bool {
        holds_deny(q)
    }
}

/// Selects the quarantines the cache holds whole: every one that is not settled (decision 140).
#[derive(Default)]
pub struct Cached;

impl Select for Cached {
    fn includes(q: &Quarantine) -> bool {
        !super::ended::settled(q)
    }
}

/// The quarantines `S` selects, by policy, kept from the watch events. Cheap to clone (shared).
pub struct PolicyIndex<S> {
    state: Arc<Mutex<Relisted<Grouped<S>>>>,
}

impl<S> Clone for PolicyIndex<S> {
    fn clone(&self) -> Self {
        PolicyIndex {
            state: self.state.clone(),
        }
    }
}

impl<S> Default for PolicyIndex<S> {
    fn default() -> Self {
        PolicyIndex {
            state: Arc::new(Mutex::new(Relisted {
                current: Grouped::default(),
                relisting: None,
            })),
        }
    }
}

/// Quarantines in phase Active or Releasing, by policy.
pub type ActiveIndex = PolicyIndex<Holding>;

/// Quarantines held whole in the cache (not settled), by policy: what intake evaluates a policy
/// against, without scanning the cache.
pub type CachedIndex = PolicyIndex<Cached>;

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

impl<S: Select> PolicyIndex<S> {
    /// Applies one watch event (after the cache applied it).
    pub fn observe(&self, event: &Event<Quarantine>) {
        if let Ok(mut state) = self.state.lock() {
            state.observe(event);
        }
    }

    /// How many quarantines of policy `namespace/policy` the index holds.
    pub fn count(&self, namespace: &str, policy: &str) -> usize {
        self.state.lock().map_or(0, |state| {
            state
                .current
                .by_policy
                .get(&(namespace.to_string(), policy.to_string()))
                .map_or(0, BTreeSet::len)
        })
    }

    /// The names of the quarantines of policy `namespace/policy` the index holds, in name order.
    pub fn names(&self, namespace: &str, policy: &str) -> Vec<String> {
        self.state.lock().map_or_else(
            |_| Vec::new(),
            |state| {
                state
                    .current
                    .by_policy
                    .get(&(namespace.to_string(), policy.to_string()))
                    .map(|names| names.iter().cloned().collect())
                    .unwrap_or_default()
            },
        )
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

    #[test]
    fn cached_index_follows_settling_moves_and_relists() {
        let index = CachedIndex::default();
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(quarantine("a", "p", None)));
        index.observe(&Event::InitApply(quarantine("b", "p", Some(Phase::Active))));
        // Settled: kept as an outline elsewhere, not in the cache.
        index.observe(&Event::InitApply(quarantine(
            "c",
            "p",
            Some(Phase::Released),
        )));
        assert!(index.names("team", "p").is_empty(), "not before InitDone");
        index.observe(&Event::InitDone);
        assert_eq!(index.names("team", "p"), ["a", "b"]);
        assert_eq!(index.count("team", "p"), 2);

        // Settles: leaves the index.
        index.observe(&Event::Apply(quarantine("b", "p", Some(Phase::Rejected))));
        assert_eq!(index.names("team", "p"), ["a"]);
        // Its policy reference edited: filed under the new policy only.
        let mut moved = quarantine("a", "p", None);
        moved.spec.policy_ref.name = "q".into();
        index.observe(&Event::Apply(moved));
        assert!(index.names("team", "p").is_empty());
        assert_eq!(index.names("team", "q"), ["a"]);
        // A settled one given work again (an annotation) comes back.
        let mut annotated = quarantine("c", "p", Some(Phase::Released));
        annotated.metadata.annotations =
            Some([("autoguardrails.io/release".to_string(), "again".to_string())].into());
        index.observe(&Event::Apply(annotated));
        assert_eq!(index.names("team", "p"), ["c"]);
        index.observe(&Event::Delete(quarantine("c", "p", None)));
        assert!(index.names("team", "p").is_empty());
        assert_eq!(index.names("elsewhere", "q"), Vec::<String>::new());

        index.observe(&Event::Init);
        index.observe(&Event::InitApply(quarantine("z", "p", None)));
        index.observe(&Event::InitDone);
        assert_eq!(index.names("team", "p"), ["z"]);
        assert!(
            index.names("team", "q").is_empty(),
            "a re-list replaces all"
        );
    }
}
