//! Retirement of ended Quarantines (decision 154). An ended Quarantine (Released, Rejected,
//! Expired; settled: nothing left for a reconcile, its audit records stored, no Slack message
//! still being retried) is kept as an outline (decision 140) while intake may still need it:
//! `retireEndedAfter` after it ended, and for a Released one at least until its policy's cooldown
//! has passed. Then the leader labels it `autoguardrails.io/ended=<phase>` and removes our
//! finalizer in one resourceVersion-guarded patch. Every cache watches with the selector
//! `!autoguardrails.io/ended`, so a retired Quarantine leaves the caches and is never listed at a
//! cold start again. The object itself stays in the API with its whole status (the history is the
//! audit trail); nothing of it is rewritten.
//!
//! What still reads retired Quarantines: intake's create looks the deterministic name up in the
//! API before creating (a repeated signal stays `AlreadyQuarantined`), and the orphan sweep lists
//! them page by page ([`scan`]) for the principals to look at and the phase gauge.
//!
//! The pure half ([`due_at`], [`retirable`], [`retire_patch`]) decides; [`retire_due`] and [`scan`]
//! talk to the API.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::ended::{Candidate, settled};
use super::finalizers::FINALIZER;
use super::{Shared, watched_apis};
use crate::controller::crd::{DeliveryState, GuardrailPolicy, Phase, Principal, Quarantine};

/// The label a retired Quarantine carries; its value is the terminal phase.
pub const ENDED_LABEL: &str = "autoguardrails.io/ended";
/// The most Quarantines one retirement pass takes out of the watch (spreads an upgrade's backlog
/// over several passes instead of one burst of writes).
pub const RETIRE_BATCH: usize = 500;
/// How many retirements are in flight at once.
const RETIRE_CONCURRENCY: usize = 4;
/// The page size of [`scan`].
const SCAN_PAGE: u32 = 500;
/// The longest cooldown a policy may have (the CRD's bound): used when a policy's cooldown does
/// not parse, so an unreadable cooldown never retires early.
const LONGEST_COOLDOWN: SignedDuration = SignedDuration::from_hours(168);

/// The label selector of every Quarantine watch: all that are not retired.
pub fn live_selector() -> String {
    format!("!{ENDED_LABEL}")
}

/// The watch of every Quarantine that is not retired: what every Quarantine cache and watch of
/// the controller uses.
pub fn live_watch() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default()
        .any_semantic()
        .labels(&live_selector())
}

/// True when `q` carries the retired label.
pub fn is_retired(q: &Quarantine) -> bool {
    q.labels().contains_key(ENDED_LABEL)
}

/// When `candidate` may be retired: `retire_after` after it ended and, for a Released one whose
/// policy still exists, not before that policy's cooldown has passed (intake reads the outline for
/// it). `policy` is None when the policy is gone (no new Quarantine of it can be created). None
/// when the end time is unknown (kept).
pub fn due_at(
    candidate: &Candidate,
    retire_after: SignedDuration,
    policy: Option<&GuardrailPolicy>,
) -> Option<Timestamp> {
    let ended = candidate.ended_at?;
    let mut due = ended.checked_add(retire_after).ok()?;
    if candidate.phase == Phase::Released
        && let Some(policy) = policy
    {
        let cooldown = crate::controller::policy::parse_duration(&policy.spec.quarantine.cooldown)
            .unwrap_or(LONGEST_COOLDOWN);
        let released = candidate.released_at.unwrap_or(ended);
        due = due.max(released.checked_add(cooldown).ok()?);
    }
    Some(due)
}

/// Why `q`, read fresh from the API, may not be retired now; Ok when it may.
pub fn retirable(q: &Quarantine) -> Result<Phase, &'static str> {
    if is_retired(q) {
        return Err("already retired");
    }
    if !settled(q) {
        return Err("not settled");
    }
    let status = q.status.as_ref().ok_or("no status")?;
    if status
        .notifications
        .iter()
        .any(|n| n.state == DeliveryState::Retrying)
    {
        return Err("a Slack message is still being retried");
    }
    status.phase.ok_or("no phase")
}

/// The one patch that retires `q` (in `phase`): the label, our finalizer removed (nothing is held:
/// the deny is released and verified), guarded by the resourceVersion read.
pub fn retire_patch(q: &Quarantine, phase: Phase) -> serde_json::Value {
    let finalizers: Vec<&String> = q
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| f.as_str() != FINALIZER)
        .collect();
    serde_json::json!({
        "metadata": {
            "resourceVersion": q.metadata.resource_version,
            "labels": { ENDED_LABEL: phase.as_str() },
            "finalizers": finalizers,
        }
    })
}

/// What one retirement pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Retired now.
    pub retired: usize,
    /// Due, but left for a later pass (changed meanwhile, not settled any more, a failed call).
    pub skipped: usize,
    /// Due ones beyond [`RETIRE_BATCH`], left for the next pass.
    pub deferred: usize,
}

/// Retires every outline that is due at `now` (at most [`RETIRE_BATCH`], oldest first). Each is
/// read fresh and checked again before the guarded patch; any doubt leaves it for the next pass.
pub async fn retire_due(ctx: &Shared, now: Timestamp) -> Pass {
    let Some(retire_after) = ctx.settings.retire_after else {
        return Pass::default();
    };
    let mut due: Vec<(Timestamp, Candidate)> = ctx
        .stores
        .ended()
        .candidates()
        .into_iter()
        .filter_map(|c| {
            let policy = ctx.stores.policy(&c.namespace, &c.policy);
            let at = due_at(&c, retire_after, policy.as_deref())?;
            (at <= now).then_some((at, c))
        })
        .collect();
    due.sort_by_key(|d| d.0);
    let deferred = due.len().saturating_sub(RETIRE_BATCH);
    due.truncate(RETIRE_BATCH);
    let outcomes: Vec<bool> = futures::stream::iter(due)
        .map(|(_, c)| retire_one(ctx.client.clone(), c))
        .buffer_unordered(RETIRE_CONCURRENCY)
        .collect()
        .await;
    let retired = outcomes.iter().filter(|ok| **ok).count();
    let pass = Pass {
        retired,
        skipped: outcomes.len() - retired,
        deferred,
    };
    if retired > 0 {
        ctx.metrics.quarantines_retired.inc_by(retired as u64);
    }
    if pass != Pass::default() {
        tracing::info!(
            retired = pass.retired,
            skipped = pass.skipped,
            deferred = pass.deferred,
            "ended quarantines retired from the watch"
        );
    }
    pass
}

/// Reads `c` fresh and retires it when it still may be; true when it was retired.
async fn retire_one(client: Client, c: Candidate) -> bool {
    let api: Api<Quarantine> = Api::namespaced(client, &c.namespace);
    let q = match api.get_opt(&c.name).await {
        Ok(Some(q)) => q,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(quarantine = %format!("{}/{}", c.namespace, c.name), error = %e, "retirement: read failed");
            return false;
        }
    };
    let phase = match retirable(&q) {
        Ok(phase) => phase,
        Err(why) => {
            tracing::debug!(quarantine = %format!("{}/{}", c.namespace, c.name), why, "not retired");
            return false;
        }
    };
    match api
        .patch(
            &c.name,
            &PatchParams::default(),
            &Patch::Merge(retire_patch(&q, phase)),
        )
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => false,
        Err(e) => {
            tracing::warn!(quarantine = %format!("{}/{}", c.namespace, c.name), error = %e, "retirement: patch failed");
            false
        }
    }
}

/// What [`scan`] found among the retired Quarantines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retired {
    /// Every distinct target principal they name.
    pub targets: Vec<Principal>,
    /// How many there are in each phase.
    pub phases: BTreeMap<&'static str, i64>,
}

/// Lists the retired Quarantines of every watched namespace, a page at a time (nothing is kept but
/// the distinct targets and the counts). An error means the scan is incomplete: the caller keeps
/// what it had (an incomplete scan never lets the sweep release more; it only looks at fewer
/// principals).
pub async fn scan(client: &Client, namespaces: &[String]) -> Result<Retired, kube::Error> {
    let mut targets = BTreeSet::new();
    let mut phases: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (_, api) in watched_apis(client, namespaces) {
        let mut params = ListParams::default().labels(ENDED_LABEL).limit(SCAN_PAGE);
        loop {
            let page = api.list(&params).await?;
            for q in &page.items {
                if let Some(phase) = q.status.as_ref().and_then(|s| s.phase) {
                    *phases.entry(phase.as_str()).or_insert(0) += 1;
                }
                for t in &q.spec.targets {
                    targets.insert((t.arn.clone(), t.kind));
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(Retired {
        targets: targets
            .into_iter()
            .map(|(arn, kind)| Principal { kind, arn })
            .collect(),
        phases,
    })
}

#[cfg(test)]
mod tests {
    use super::super::index::tests::quarantine;
    use super::*;
    use crate::controller::crd::NotificationRecord;

    fn candidate(phase: Phase, ended_min: i64) -> Candidate {
        let at = Timestamp::UNIX_EPOCH + SignedDuration::from_mins(ended_min);
        Candidate {
            namespace: "team".into(),
            name: "q".into(),
            policy: "p".into(),
            phase,
            released_at: (phase == Phase::Released).then_some(at),
            ended_at: Some(at),
        }
    }

    fn policy(cooldown: &str) -> GuardrailPolicy {
        let mut p: GuardrailPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoguardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {
                "mode": "Auto",
                "match": {"sources": ["CostAnomaly"]},
                "scope": {"principals": [{"kind": "IamRole", "arn": "arn:aws:iam::111111111111:role/r"}]},
                "deny": {"actions": ["ec2:RunInstances"]},
                "quarantine": {"ttl": "1h"}
            }
        }))
        .expect("policy");
        p.spec.quarantine.cooldown = cooldown.into();
        p
    }

    fn minutes(m: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(m)
    }

    #[test]
    fn due_after_the_retention_and_never_inside_the_cooldown() {
        let hour = SignedDuration::from_hours(1);
        let released = candidate(Phase::Released, 0);
        assert_eq!(due_at(&released, hour, None), Some(minutes(60)));
        assert_eq!(
            due_at(&released, hour, Some(&policy("30m"))),
            Some(minutes(60))
        );
        assert_eq!(
            due_at(&released, hour, Some(&policy("3h"))),
            Some(minutes(180)),
            "the cooldown outlasts the retention"
        );
        assert_eq!(
            due_at(&released, hour, Some(&policy("not a duration"))),
            Some(minutes(168 * 60)),
            "an unreadable cooldown counts as the longest one"
        );
        // Only a release starts a cooldown.
        let rejected = candidate(Phase::Rejected, 0);
        assert_eq!(
            due_at(&rejected, hour, Some(&policy("3h"))),
            Some(minutes(60))
        );
        let unknown = Candidate {
            ended_at: None,
            ..candidate(Phase::Expired, 0)
        };
        assert_eq!(due_at(&unknown, hour, None), None);
    }

    #[test]
    fn only_settled_quarantines_with_nothing_to_deliver_retire() {
        let released = quarantine("a", "p", Some(Phase::Released));
        assert_eq!(retirable(&released), Ok(Phase::Released));
        assert!(retirable(&quarantine("a", "p", Some(Phase::Active))).is_err());
        let mut retrying = released.clone();
        if let Some(status) = retrying.status.as_mut() {
            status.notifications.push(NotificationRecord {
                key: "k".into(),
                event: "Released".into(),
                state: DeliveryState::Retrying,
                attempts: 1,
                last_attempt_at: None,
                next_attempt_at: None,
                last_error: None,
                message: None,
            });
        }
        assert!(retirable(&retrying).is_err());
        let mut labelled = released.clone();
        labelled.metadata.labels = Some([(ENDED_LABEL.to_string(), "Released".to_string())].into());
        assert_eq!(retirable(&labelled), Err("already retired"));
    }

    #[test]
    fn the_patch_labels_guards_and_drops_only_our_finalizer() {
        let mut q = quarantine("a", "p", Some(Phase::Released));
        q.metadata.resource_version = Some("42".into());
        q.metadata.finalizers = Some(vec![FINALIZER.into(), "example.com/keep".into()]);
        let patch = retire_patch(&q, Phase::Released);
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["metadata"]["labels"][ENDED_LABEL], "Released");
        assert_eq!(
            patch["metadata"]["finalizers"],
            serde_json::json!(["example.com/keep"])
        );
        q.metadata.finalizers = None;
        assert_eq!(
            retire_patch(&q, Phase::Expired)["metadata"]["finalizers"],
            serde_json::json!([])
        );
        assert_eq!(live_selector(), "!autoguardrails.io/ended");
    }
}
