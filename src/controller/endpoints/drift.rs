//! IAM CloudTrail events on `/events` and `/sns`: reads the change (`signal::iam_change`), finds
//! the Quarantines it touched in the informer cache, and asks this replica's Quarantine
//! controllers to check them now (`enforce::trigger`, decision 200). Events about principals and
//! policies we do not hold are counted and ignored; the periodic drift check stays.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::controller::crd::Quarantine;
use crate::controller::enforce::trigger::Delivery;
use crate::controller::reconcile::Stores;
use crate::controller::signal::iam_change::{self, IamChange};
use crate::metrics::Metrics;

/// How an IAM event was handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Not a readable IAM event.
    Malformed(String),
    /// A failed call, or one that cannot undo what we hold.
    Ignored(String),
    /// About nothing any Quarantine holds.
    Unheld(String),
    /// The named quarantines are being checked now.
    Checking(String),
    /// No controller runs on this replica, or its queue is full: the sender retries.
    RetryLater(String),
}

/// The drift side of the signal listener.
pub struct DriftRepair {
    stores: Stores,
    metrics: Arc<Metrics>,
}

impl DriftRepair {
    /// Reads quarantines from `stores` and counts events in `metrics`.
    pub fn new(stores: Stores, metrics: Arc<Metrics>) -> DriftRepair {
        DriftRepair { stores, metrics }
    }

    /// Whether `event` is an IAM CloudTrail event (this handler's to answer).
    pub fn wants(event: &serde_json::Value) -> bool {
        iam_change::is_iam_event(event)
    }

    /// Handles one IAM CloudTrail event (checked with [`DriftRepair::wants`]).
    pub fn handle(&self, event: &serde_json::Value) -> Reply {
        let reply = match iam_change::parse(event) {
            Ok(change) => self.route(&change),
            Err(e) => Reply::Malformed(e.to_string()),
        };
        let outcome = match &reply {
            Reply::Malformed(_) => "malformed",
            Reply::Ignored(_) => "ignored",
            Reply::Unheld(_) => "unheld",
            Reply::Checking(_) => "checked",
            Reply::RetryLater(_) => "retry_later",
        };
        self.metrics.iam_events.with_label_values(&[outcome]).inc();
        reply
    }

    fn route(&self, change: &IamChange) -> Reply {
        let what = describe(change);
        if !change.may_drift() {
            return Reply::Ignored(format!(
                "{what}: {}",
                if change.failed {
                    "the call failed and changed nothing"
                } else {
                    "this call cannot undo a deny or boundary"
                }
            ));
        }
        let refs: Vec<ObjectRef<Quarantine>> = self
            .stores
            .quarantines()
            .iter()
            .filter(|q| change.affects(q))
            .filter_map(|q| Some(ObjectRef::new(&q.name_any()).within(&q.namespace()?)))
            .collect();
        if refs.is_empty() {
            return Reply::Unheld(format!("{what}: no quarantine holds anything there"));
        }
        let names: Vec<String> = refs
            .iter()
            .take(10)
            .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name))
            .collect();
        let trigger = self.stores.drift_trigger();
        if let Some((kind, name)) = &change.principal {
            let kind = match kind {
                crate::principal::PrincipalKind::User => crate::aws::PrincipalKind::User,
                _ => crate::aws::PrincipalKind::Role,
            };
            let principal = crate::aws::PrincipalRef {
                kind,
                name: name.clone(),
            };
            trigger.report_change(&change.account, &principal);
        }
        match trigger.check_now(&refs) {
            Delivery::Queued => Reply::Checking(format!(
                "{what}: checking {} quarantine(s) now: {}",
                refs.len(),
                names.join(", ")
            )),
            Delivery::NoController => Reply::RetryLater(format!(
                "{what}: quarantines are checked by the leader replica; retry"
            )),
            Delivery::Full => {
                Reply::RetryLater(format!("{what}: too many checks waiting; retry later"))
            }
        }
    }
}

fn describe(change: &IamChange) -> String {
    let on = match (&change.principal, &change.policy_arn) {
        (Some((kind, name)), _) => format!(" on {kind} {name}"),
        (None, Some(arn)) => format!(" on {arn}"),
        (None, None) => String::new(),
    };
    format!(
        "IAM {}{on} in {} (event {})",
        change.event_name, change.account, change.event_id
    )
}
