//! Checks shared by the crash and fault tests: the IAM of the harness holds nothing of ours that
//! no live Quarantine wants (no orphan), no principal carries one deny twice, and history entries
//! are counted. Also waits with a caller-chosen bound and "quiet" detection (no IAM call for a
//! while), used to measure a path's calls before crashing at each of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use autoguardrails::controller::crd::{Phase, Quarantine, TargetState};
use autoguardrails::controller::enforce::ownership::{INLINE_POLICY_PREFIX, TAG_NAME, TAG_UID};
use kube::ResourceExt;

use crate::harness::Harness;

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the main account's IAM saw no call for `quiet` (at most 20 s).
pub async fn wait_iam_quiet(h: &Harness, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = h.iam.call_count();
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = h.iam.call_count();
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "IAM never went quiet"
        );
    }
}

/// The events of a quarantine's history, oldest first.
pub fn history(q: &Quarantine) -> Vec<String> {
    q.status
        .as_ref()
        .map(|s| s.history.iter().map(|e| e.event.clone()).collect())
        .unwrap_or_default()
}

/// How often `event` appears in the quarantine's history.
pub fn count(q: &Quarantine, event: &str) -> usize {
    history(q).iter().filter(|e| *e == event).count()
}

/// True while a quarantine in this phase may hold a deny in IAM.
pub fn may_hold(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        None | Some(Phase::Active) | Some(Phase::Releasing) | Some(Phase::Failed)
    )
}

/// What the main account holds of ours: policy ARN → (quarantine name, uid), attachments per
/// principal, our inline policies per principal.
pub struct Ours {
    /// Managed policies under our path, with the quarantine their tags name.
    pub policies: BTreeMap<String, (String, String)>,
    /// Principal name → ARNs of our managed policies attached to it (duplicates kept).
    pub attached: BTreeMap<String, Vec<String>>,
    /// Principal name → names of our inline policies.
    pub inline: BTreeMap<String, Vec<String>>,
}

/// Reads what the main account holds of ours.
pub fn ours(h: &Harness) -> Ours {
    let state = h.iam.state();
    let mut policies = BTreeMap::new();
    for p in state.policies.values() {
        if p.arn.contains(":policy/autoguardrails/") {
            let tag = |k: &str| {
                p.tags
                    .iter()
                    .find(|t| t.key == k)
                    .map(|t| t.value.clone())
                    .unwrap_or_default()
            };
            policies.insert(p.arn.clone(), (tag(TAG_NAME), tag(TAG_UID)));
        }
    }
    let mut attached = BTreeMap::new();
    let mut inline = BTreeMap::new();
    for principal in state.principals.values() {
        let a: Vec<String> = principal
            .attached
            .iter()
            .filter(|a| a.contains(":policy/autoguardrails/"))
            .cloned()
            .collect();
        if !a.is_empty() {
            attached.insert(principal.name.clone(), a);
        }
        let i: Vec<String> = principal
            .inline
            .keys()
            .filter(|n| n.starts_with(INLINE_POLICY_PREFIX))
            .cloned()
            .collect();
        if !i.is_empty() {
            inline.insert(principal.name.clone(), i);
        }
    }
    Ours {
        policies,
        attached,
        inline,
    }
}

/// Asserts: every policy of ours belongs to an existing Quarantine (same uid) in a phase that may
/// hold a deny; every attachment of ours points to an existing policy of ours; no principal holds
/// the same policy twice; no inline policy of ours exists (these tests use managed policies).
pub async fn assert_no_orphan(h: &Harness, context: &str) {
    let o = ours(h);
    let list = h
        .quarantines()
        .list(&Default::default())
        .await
        .expect("list quarantines");
    for (arn, (name, uid)) in &o.policies {
        let owner = list.items.iter().find(|q| q.name_any() == *name);
        let Some(q) = owner else {
            panic!("{context}: orphan policy {arn}: quarantine {name} does not exist");
        };
        assert_eq!(
            q.uid().as_deref(),
            Some(uid.as_str()),
            "{context}: policy {arn} names another incarnation of {name}"
        );
        let phase = q.status.as_ref().and_then(|s| s.phase);
        assert!(
            may_hold(phase),
            "{context}: orphan policy {arn}: quarantine {name} is {phase:?}"
        );
    }
    for (principal, arns) in &o.attached {
        let mut seen = std::collections::BTreeSet::new();
        for arn in arns {
            assert!(
                o.policies.contains_key(arn),
                "{context}: {principal} has {arn} attached, which does not exist"
            );
            assert!(
                seen.insert(arn),
                "{context}: {principal} has {arn} attached twice"
            );
        }
    }
    assert!(
        o.inline.is_empty(),
        "{context}: inline policies of ours: {:?}",
        o.inline
    );
}

/// Asserts that nothing of ours is left in the main account.
pub fn assert_iam_clean(h: &Harness, context: &str) {
    let o = ours(h);
    assert!(
        o.policies.is_empty() && o.attached.is_empty() && o.inline.is_empty(),
        "{context}: leftovers: policies {:?}, attached {:?}, inline {:?}",
        o.policies.keys().collect::<Vec<_>>(),
        o.attached,
        o.inline
    );
}

/// Waits until `name` is Active with every target Attached in status and exactly one deny of
/// ours on each of `roles` in IAM; returns the quarantine.
pub async fn wait_enforced(h: &Harness, name: &str, roles: &[&str], limit: Duration) -> Quarantine {
    let ok = wait_until(limit, || async {
        let Some(q) = h.quarantine(name).await else {
            return false;
        };
        let status_ok = q.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Active)
                && s.targets.len() == roles.len()
                && s.targets
                    .iter()
                    .all(|t| t.state == TargetState::Attached && t.attachment.is_some())
        });
        status_ok && roles.iter().all(|r| h.attached(r).len() == 1)
    })
    .await;
    let q = h.quarantine(name).await;
    assert!(
        ok,
        "{name} not enforced on {roles:?}: status {:?}, attached {:?}",
        q.as_ref().and_then(|q| q.status.clone()),
        roles.iter().map(|r| h.attached(r)).collect::<Vec<_>>()
    );
    q.expect("quarantine exists")
}
