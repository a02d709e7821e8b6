//! Ended Quarantines out of the full-object cache (decision 140). A Quarantine whose phase is
//! terminal (Released, Rejected, Expired), whose status has seen its current generation, that is
//! not being deleted and carries no lifecycle annotation or legacy finalizer has nothing left for a
//! reconcile to do: it is kept here as the little that intake's cooldown check, the orphan sweep and
//! the phase gauge need (policy, phase, targets, release time), not as the whole object. Anything
//! that gives it work again (a deletion, an edit, an annotation) makes it "live" again, and the
//! watch event that says so puts the whole object back into the cache and triggers a reconcile.
//! Nothing here is ever written back to the API: the reconcile only ever writes objects it read
//! whole from the cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::watcher::Event;

use super::index::{Entries, Relisted};
use crate::controller::crd::{
    DenySpec, Mode, Phase, PolicyRef, Principal, PrincipalKind, Quarantine, QuarantineSpec,
    QuarantineStatus,
};
use crate::controller::lifecycle::Annotation;

/// True when `q` has nothing left for a reconcile to do (see the module header).
pub fn settled(q: &Quarantine) -> bool {
    let Some(status) = q.status.as_ref() else {
        return false;
    };
    let terminal = status.phase.is_some_and(Phase::is_terminal);
    let meta = &q.metadata;
    let seen = status.observed_generation == meta.generation;
    let annotated = meta.annotations.as_ref().is_some_and(|a| {
        Annotation::PROCESSING_ORDER
            .iter()
            .any(|k| a.contains_key(k.key()))
    });
    let legacy = meta.finalizers.as_ref().is_some_and(|f| {
        f.iter()
            .any(|name| name == super::finalizers::LEGACY_FINALIZER)
    });
    // Unflushed audit entries keep it in the cache for the flusher (decision 222).
    let unflushed = status.audit.as_ref().is_some_and(|a| !a.entries.is_empty());
    terminal && seen && meta.deletion_timestamp.is_none() && !annotated && !legacy && !unflushed
}

/// What is kept of one ended Quarantine.
#[derive(Clone, Debug, PartialEq)]
struct Ended {
    phase: Phase,
    released_at: Option<Timestamp>,
    /// When it ended (release, rejection, approval deadline; else its last history entry or its
    /// creation): when its retirement is counted from (decision 154).
    ended_at: Option<Timestamp>,
    targets: Box<[Target]>,
}

/// One ended quarantine the retirement pass may take out of the watch (decision 154).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its policy's name.
    pub policy: String,
    /// Its terminal phase.
    pub phase: Phase,
    /// When it was released (Released only).
    pub released_at: Option<Timestamp>,
    /// When it ended (see [`Ended`]).
    pub ended_at: Option<Timestamp>,
}

/// One target principal; its ARN shared with every other outline naming it.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    kind: PrincipalKind,
    arn: Arc<str>,
}

impl Target {
    fn principal(&self) -> Principal {
        Principal {
            kind: self.kind,
            arn: self.arn.to_string(),
        }
    }
}

/// Strings many outlines repeat (namespaces, policy names, target ARNs), each held once. A string
/// is dropped from the pool when the last outline using it goes.
#[derive(Default)]
struct Pool(HashSet<Arc<str>>);

impl Pool {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(shared.clone());
        shared
    }

    /// Lets go of one use of `shared`; the pool forgets it when no outline uses it any more.
    fn release(&mut self, shared: Arc<str>) {
        // The pool's own reference and `shared`.
        if Arc::strong_count(&shared) <= 2 {
            self.0.remove(&shared);
        }
    }
}

/// The outlines of one namespace's ended quarantines.
#[derive(Default)]
struct Namespace {
    /// policy → quarantine name → what is kept.
    by_policy: HashMap<Arc<str>, BTreeMap<Arc<str>, Ended>>,
    /// quarantine name → its policy.
    policy_of: HashMap<Arc<str>, Arc<str>>,
}

/// namespace → its outlines; the strings pooled (decision 152).
#[derive(Default)]
struct Outlines {
    namespaces: HashMap<Arc<str>, Namespace>,
    pool: Pool,
    count: usize,
}

impl Outlines {
    fn forget(&mut self, namespace: &str, name: &str) {
        let Some(space) = self.namespaces.get_mut(namespace) else {
            return;
        };
        let Some((name, policy)) = space.policy_of.remove_entry(name) else {
            return;
        };
        self.count -= 1;
        if let Some(names) = space.by_policy.get_mut(&policy)
            && let Some(ended) = names.remove(&name)
        {
            for target in ended.targets {
                self.pool.release(target.arn);
            }
            if names.is_empty() {
                space.by_policy.remove(&policy);
            }
        }
        self.pool.release(policy);
        if space.policy_of.is_empty()
            && let Some((namespace, _)) = self.namespaces.remove_entry(namespace)
        {
            self.pool.release(namespace);
        }
    }

    fn record(&mut self, q: &Quarantine) {
        let namespace = q.metadata.namespace.as_deref().unwrap_or_default();
        let name = q.metadata.name.as_deref().unwrap_or_default();
        self.forget(namespace, name);
        if !settled(q) {
            return;
        }
        let Some(status) = q.status.as_ref() else {
            return;
        };
        let Some(phase) = status.phase else {
            return;
        };
        let policy = self.pool.get(&q.spec.policy_ref.name);
        let targets = q
            .spec
            .targets
            .iter()
            .map(|t| Target {
                kind: t.kind,
                arn: self.pool.get(&t.arn),
            })
            .collect();
        let namespace = self.pool.get(namespace);
        let space = self.namespaces.entry(namespace).or_default();
        let name: Arc<str> = Arc::from(name);
        space.policy_of.insert(name.clone(), policy.clone());
        space.by_policy.entry(policy).or_default().insert(
            name,
            Ended {
                phase,
                released_at: status.released_at.as_ref().map(|t| t.0),
                ended_at: ended_at(q, status, phase),
                targets,
            },
        );
        self.count += 1;
    }
}

/// When `q` (terminal, in `phase`) ended: see [`Ended::ended_at`].
fn ended_at(q: &Quarantine, status: &QuarantineStatus, phase: Phase) -> Option<Timestamp> {
    let recorded = match phase {
        Phase::Released => status.released_at.as_ref(),
        Phase::Rejected => status.rejected_at.as_ref(),
        Phase::Expired => status.approval_deadline.as_ref(),
        _ => None,
    };
    recorded
        .or_else(|| status.history.last().map(|h| &h.time))
        .or(q.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

impl Entries for Outlines {
    fn put(&mut self, q: &Quarantine) {
        self.record(q);
    }

    fn remove(&mut self, q: &Quarantine) {
        self.forget(
            q.metadata.namespace.as_deref().unwrap_or_default(),
            q.metadata.name.as_deref().unwrap_or_default(),
        );
    }
}

/// The ended Quarantines, kept from the same watch events as the quarantine cache. Cheap to clone
/// (shared).
#[derive(Clone, Default)]
pub struct EndedIndex {
    state: Arc<Mutex<Relisted<Outlines>>>,
}

impl EndedIndex {
    /// Applies one watch event (every object, settled or not).
    pub fn observe(&self, event: &Event<Quarantine>) {
        if let Ok(mut state) = self.state.lock() {
            state.observe(event);
        }
    }

    /// The ended quarantines of policy `namespace/policy`, as objects holding only what policy
    /// evaluation reads of an ended quarantine (name, policy, targets, phase, release time). For
    /// evaluation only: such an object is never written anywhere.
    pub fn for_policy(&self, namespace: &str, policy: &str) -> Vec<Quarantine> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .current
            .namespaces
            .get(namespace)
            .and_then(|space| space.by_policy.get(policy))
            .map(|names| {
                names
                    .iter()
                    .map(|(name, ended)| outline(namespace, policy, name, ended))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The outline of one ended quarantine (see [`EndedIndex::for_policy`]).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Quarantine> {
        let state = self.state.lock().ok()?;
        let space = state.current.namespaces.get(namespace)?;
        let policy = space.policy_of.get(name)?;
        let ended = space.by_policy.get(policy)?.get(name)?;
        Some(outline(namespace, policy, name, ended))
    }

    /// The target principals of every ended quarantine (what the orphan sweep scans for
    /// leftovers), and how many ended quarantines each terminal phase has.
    pub fn targets_and_phases(&self) -> (Vec<Principal>, BTreeMap<&'static str, i64>) {
        let mut targets = Vec::new();
        let mut phases = BTreeMap::new();
        if let Ok(state) = self.state.lock() {
            let all = state.current.namespaces.values();
            for ended in all.flat_map(|space| space.by_policy.values().flat_map(|n| n.values())) {
                targets.extend(ended.targets.iter().map(Target::principal));
                *phases.entry(ended.phase.as_str()).or_insert(0) += 1;
            }
        }
        (targets, phases)
    }

    /// The outline of every ended quarantine (see [`EndedIndex::for_policy`]); for reading only.
    pub fn outlines(&self) -> Vec<Quarantine> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .current
            .namespaces
            .iter()
            .flat_map(|(namespace, space)| {
                space.by_policy.iter().flat_map(move |(policy, names)| {
                    names
                        .iter()
                        .map(move |(name, ended)| outline(namespace, policy, name, ended))
                })
            })
            .collect()
    }

    /// Every ended quarantine kept, as a retirement candidate (decision 154).
    pub fn candidates(&self) -> Vec<Candidate> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(state.current.count);
        for (namespace, space) in &state.current.namespaces {
            for (policy, names) in &space.by_policy {
                for (name, ended) in names {
                    out.push(Candidate {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        policy: policy.to_string(),
                        phase: ended.phase,
                        released_at: ended.released_at,
                        ended_at: ended.ended_at,
                    });
                }
            }
        }
        out
    }

    /// How many ended quarantines are kept.
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |state| state.current.count)
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn outline(namespace: &str, policy: &str, name: &str, ended: &Ended) -> Quarantine {
    Quarantine {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: QuarantineSpec {
            policy_ref: PolicyRef {
                name: policy.to_string(),
            },
            signal: None,
            targets: ended.targets.iter().map(Target::principal).collect(),
            target_reasons: Vec::new(),
            deny: DenySpec::default(),
            actions: crate::controller::crd::default_actions(),
            mode: Mode::default(),
            ttl: String::new(),
            approval_timeout: None,
            required_approvers: None,
            notify: None,
        },
        status: Some(QuarantineStatus {
            phase: Some(ended.phase),
            released_at: ended.released_at.map(Time),
            ..QuarantineStatus::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::index::tests::quarantine;
    use super::*;

    #[test]
    fn settled_only_when_nothing_is_left_to_do() {
        assert!(settled(&quarantine("a", "p", Some(Phase::Released))));
        assert!(settled(&quarantine("a", "p", Some(Phase::Rejected))));
        assert!(settled(&quarantine("a", "p", Some(Phase::Expired))));
        assert!(!settled(&quarantine("a", "p", Some(Phase::Active))));
        assert!(!settled(&quarantine("a", "p", Some(Phase::Failed))));
        assert!(!settled(&quarantine("a", "p", None)));
        let mut edited = quarantine("a", "p", Some(Phase::Released));
        edited.metadata.generation = Some(2);
        assert!(!settled(&edited));
        let mut deleting = quarantine("a", "p", Some(Phase::Released));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert!(!settled(&deleting));
        let mut annotated = quarantine("a", "p", Some(Phase::Released));
        annotated.metadata.annotations = Some(
            [(Annotation::Release.key().to_string(), "x".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(!settled(&annotated));
        let mut legacy = quarantine("a", "p", Some(Phase::Released));
        legacy.metadata.finalizers = Some(vec![super::super::finalizers::LEGACY_FINALIZER.into()]);
        assert!(!settled(&legacy));
    }

    #[test]
    fn follows_events_and_relists() {
        let index = EndedIndex::default();
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(quarantine(
            "a",
            "p",
            Some(Phase::Released),
        )));
        index.observe(&Event::InitApply(quarantine("b", "p", Some(Phase::Active))));
        assert!(index.for_policy("team", "p").is_empty());
        index.observe(&Event::InitDone);
        let outlines = index.for_policy("team", "p");
        assert_eq!(outlines.len(), 1);
        assert_eq!(outlines[0].metadata.name.as_deref(), Some("a"));
        assert_eq!(
            outlines[0].status.as_ref().and_then(|s| s.phase),
            Some(Phase::Released)
        );
        assert!(
            outlines[0]
                .status
                .as_ref()
                .and_then(|s| s.released_at.as_ref())
                .is_some()
        );
        assert_eq!(outlines[0].spec.targets.len(), 1);

        index.observe(&Event::Apply(quarantine("b", "p", Some(Phase::Released))));
        assert_eq!(index.len(), 2);
        let mut deleting = quarantine("a", "p", Some(Phase::Released));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        index.observe(&Event::Apply(deleting));
        assert_eq!(index.len(), 1);
        index.observe(&Event::Delete(quarantine("b", "p", Some(Phase::Released))));
        assert!(index.is_empty());
        assert!(index.for_policy("team", "p").is_empty());

        index.observe(&Event::Apply(quarantine("c", "q", Some(Phase::Expired))));
        let (targets, phases) = index.targets_and_phases();
        assert_eq!(targets.len(), 1);
        assert_eq!(phases.get("Expired"), Some(&1));
        index.observe(&Event::Init);
        index.observe(&Event::InitDone);
        assert!(index.is_empty());
    }

    #[test]
    fn repeated_strings_are_held_once_and_let_go_with_the_last_outline() {
        let mut outlines = Outlines::default();
        outlines.put(&quarantine("a", "p", Some(Phase::Released)));
        outlines.put(&quarantine("b", "p", Some(Phase::Expired)));
        // "team", "p" and the one target ARN, each once, shared by both outlines.
        assert_eq!(outlines.pool.0.len(), 3);
        let arn = outlines.pool.get("arn:aws:iam::111111111111:role/r");
        assert_eq!(
            Arc::strong_count(&arn),
            4,
            "pool, two outlines and this one"
        );
        drop(arn);
        // Moving "a" to another policy keeps the ARN and adds the policy name.
        let mut moved = quarantine("a", "q", Some(Phase::Released));
        moved.spec.targets[0].arn = "arn:aws:iam::111111111111:role/other".into();
        outlines.put(&moved);
        assert_eq!(outlines.pool.0.len(), 5);
        assert_eq!(outlines.count, 2);
        outlines.remove(&quarantine("b", "p", Some(Phase::Expired)));
        // "p" and the first ARN went with "b"; "team", "q" and the other ARN stay.
        assert_eq!(outlines.pool.0.len(), 3);
        assert!(!outlines.pool.0.contains("p"));
        outlines.remove(&moved);
        assert!(outlines.pool.0.is_empty() && outlines.namespaces.is_empty());
        assert_eq!(outlines.count, 0);
        // A quarantine that is not settled is not kept, and forgetting it twice is harmless.
        outlines.put(&quarantine("c", "p", Some(Phase::Active)));
        outlines.remove(&quarantine("c", "p", Some(Phase::Active)));
        assert!(outlines.pool.0.is_empty() && outlines.count == 0);
    }
}
