//! GuardrailPolicy reconcile: `validate` what the schema cannot (protected targets, deny size
//! against IAM limits, the Slack webhook or channel this controller's `postWith` needs, the Slack
//! Secret) → `update_status` (observedGeneration, Ready,
//! activeQuarantines; written only when changed) → a Warning Event when it becomes not Ready.
//! Signal evaluation is in `intake`; this module must not create Quarantines.

use crate::principal::{Exclusion, PrincipalSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{Error, Shared, object_key, patch_status, requeue};
use crate::controller::crd::conditions::{
    READY, REASON_DENY_TOO_LARGE, REASON_INVALID_DENY, REASON_INVALID_EXCEPTION,
    REASON_INVALID_PRINCIPAL, REASON_NO_ELIGIBLE_TARGETS, REASON_PROTECTED_TARGET,
    REASON_SLACK_CHANNEL_MISSING, REASON_SLACK_SECRET_MISSING, REASON_SLACK_WEBHOOK_MISSING,
    REASON_VALID, condition_status, set_condition,
};
use crate::controller::crd::conditions::{
    REASON_RESOLUTION_FAILED, REASON_RESOLUTION_PENDING, REASON_RESOLUTION_STALE, REASON_RESOLVED,
    REASON_TOO_MANY_TARGETS, SELECTORS_RESOLVED,
};
use crate::controller::crd::{DenySpec, GuardrailPolicy, ResolvedTargets};
use crate::controller::enforce::document;
use crate::controller::policy::selectors;
use crate::metrics::CONTROLLER_POLICY;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How often a policy is re-checked without changes (the Slack Secret may appear).
pub const RECHECK: Duration = Duration::from_secs(300);

/// One problem found by `validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The Ready=False reason.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Checks that need the controller's configuration (pure part). Principals are compared by the
/// same matcher policy evaluation uses (`crate::controller::policy::exclusions`).
pub fn validate_spec(policy: &GuardrailPolicy, protected: &PrincipalSet) -> Vec<Problem> {
    let spec = &policy.spec;
    let mut problems = Vec::new();
    problems.extend(
        crate::controller::policy::schedule::problems(&spec.exceptions.weekly)
            .into_iter()
            .map(|message| Problem {
                reason: REASON_INVALID_EXCEPTION,
                message,
            }),
    );
    let exclusions = match crate::controller::policy::exclusions(spec, protected) {
        Ok(exclusions) => exclusions,
        Err(e @ crate::principal::PrincipalError::AccountId { .. }) => {
            problems.push(Problem {
                reason: REASON_INVALID_EXCEPTION,
                message: format!("exceptions.accounts: {e}"),
            });
            return problems;
        }
        Err(e) => {
            problems.push(Problem {
                reason: REASON_INVALID_PRINCIPAL,
                message: format!("exceptions.principals: {e}"),
            });
            return problems;
        }
    };
    let mut verdicts = Vec::new();
    for p in &spec.scope.principals {
        match p.parse() {
            Ok(parsed) => verdicts.push((p.arn.as_str(), exclusions.check(&parsed))),
            Err(e) => {
                problems.push(Problem {
                    reason: REASON_INVALID_PRINCIPAL,
                    message: format!("scope.principals: {e}"),
                });
                return problems;
            }
        }
    }
    let protected_targets: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == Some(Exclusion::Protected))
        .map(|(arn, _)| *arn)
        .collect();
    if !protected_targets.is_empty() {
        problems.push(Problem {
            reason: REASON_PROTECTED_TARGET,
            message: format!(
                "{} protected by the controller configuration and will never be quarantined; remove from scope.principals",
                protected_targets.join(", ")
                    + if protected_targets.len() == 1 { " is" } else { " are" }
            ),
        });
    }
    if !verdicts.is_empty() && verdicts.iter().all(|(_, v)| v.is_some()) {
        problems.push(Problem {
            reason: REASON_NO_ELIGIBLE_TARGETS,
            message: "every scoped principal is protected or excepted: this policy can never quarantine anything".into(),
        });
    }
    let deny = DenySpec {
        actions: spec.deny.actions.clone(),
        regions: spec.scope.regions.clone(),
        conditions: spec.deny.conditions.clone(),
    };
    let name = policy.name_any();
    let ns = policy.namespace().unwrap_or_default();
    match document::build(&deny, &document::sid_suffix(&ns, &name)) {
        Err(e @ document::DocumentError::TooLarge { .. }) => problems.push(Problem {
            reason: REASON_DENY_TOO_LARGE,
            message: format!("the deny document cannot be built: {e}"),
        }),
        Err(e) => problems.push(Problem {
            reason: REASON_INVALID_DENY,
            message: format!("the deny document cannot be built: {e}"),
        }),
        Ok(doc) if !doc.fits_managed() => problems.push(Problem {
            reason: REASON_DENY_TOO_LARGE,
            message: format!(
                "the deny document is {} characters; IAM allows {} for a managed policy: deny fewer actions or use wildcards",
                document::iam_size(&doc.json),
                document::MANAGED_POLICY_LIMIT
            ),
        }),
        Ok(doc) if !doc.fits_inline_user() => {
            // Fits managed; the inline fallback for users (2,048) would not fit. Not fatal.
            tracing::info!(policy = %format!("{ns}/{name}"), "deny document too large for the inline fallback on users");
        }
        Ok(_) => {}
    }
    problems
}

/// What a policy's status says about its selectors: the `SelectorsResolved` condition (status,
/// reason, message) and the summary of the resolved set (`None` keeps the last one shown).
/// `None` for a policy without selectors. Pure.
pub fn selection_status(
    policy: &GuardrailPolicy,
    resolution: Option<&selectors::Resolution>,
    now: Timestamp,
) -> Option<(bool, &'static str, String, Option<ResolvedTargets>)> {
    let scope = &policy.spec.scope;
    if scope.selectors.is_empty() {
        return None;
    }
    let current = resolution.filter(|r| r.fingerprint == selectors::fingerprint(scope));
    let Some(resolution) = current else {
        return Some((
            false,
            REASON_RESOLUTION_PENDING,
            "scope.selectors are not resolved yet; signals quarantine no one until they are".into(),
            None,
        ));
    };
    let targets = match &resolution.outcome {
        selectors::Outcome::Failed(why) => {
            return Some((
                false,
                REASON_RESOLUTION_FAILED,
                format!(
                    "resolving scope.selectors failed: {why}; signals quarantine no one until a resolution succeeds"
                ),
                None,
            ));
        }
        selectors::Outcome::Resolved(targets) => targets,
    };
    let all = selectors::candidates(scope, targets);
    let mut arns: Vec<String> = all.iter().map(|t| t.principal.arn.clone()).collect();
    arns.sort();
    // The whole resolution for standby replicas (decision 252), when the status can carry it.
    let carried = if targets.len() <= selectors::STATUS_TARGETS_MAX {
        targets
            .iter()
            .map(|t| crate::controller::crd::ResolvedTargetStatus {
                kind: t.principal.kind,
                arn: t.principal.arn.clone(),
                matched_by: t.matched_by.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let summary = ResolvedTargets {
        count: i32::try_from(all.len()).unwrap_or(i32::MAX),
        sample: arns.into_iter().take(10).collect(),
        resolved_at: Some(Time(resolution.since)),
        selectors_hash: Some(selectors::selectors_hash(scope)),
        valid_until: Some(Time(resolution.valid_until)),
        targets: carried,
    };
    if now > resolution.valid_until {
        return Some((
            false,
            REASON_RESOLUTION_STALE,
            format!(
                "the last resolution of scope.selectors ({}) is older than allowed (until {}); signals quarantine no one until a new one",
                resolution.resolved_at, resolution.valid_until
            ),
            Some(summary),
        ));
    }
    if all.len() > scope.max_targets() {
        return Some((
            false,
            REASON_TOO_MANY_TARGETS,
            format!(
                "the scope resolves to {} principals, more than scope.maxTargets {}: signals quarantine no one; narrow the selectors or raise maxTargets",
                all.len(),
                scope.max_targets()
            ),
            Some(summary),
        ));
    }
    Some((
        true,
        REASON_RESOLVED,
        format!(
            "the scope resolves to {} principal(s) (at most {})",
            all.len(),
            scope.max_targets()
        ),
        Some(summary),
    ))
}

/// Keeps the `validUntil` already in the status while it is more than one resolver period away
/// and nothing else changed, so a steady resolution is written once every two periods (to keep
/// standby replicas' copy fresh, decision 252) rather than at every resolution.
pub fn keep_valid_until(
    mut summary: ResolvedTargets,
    old: Option<&ResolvedTargets>,
    resolution: Option<&selectors::Resolution>,
    now: Timestamp,
) -> ResolvedTargets {
    let (Some(old), Some(resolution)) = (old, resolution) else {
        return summary;
    };
    let Some(kept) = old.valid_until.clone() else {
        return summary;
    };
    let period = resolution
        .valid_until
        .duration_since(resolution.resolved_at)
        .checked_div(crate::controller::resolver::STALE_AFTER_PERIODS)
        .unwrap_or_default();
    // Times come back from the API server in whole seconds.
    let second = |t: &Option<Time>| t.as_ref().map(|t| t.0.as_second());
    let same = summary.count == old.count
        && summary.sample == old.sample
        && summary.targets == old.targets
        && summary.selectors_hash == old.selectors_hash
        && second(&summary.resolved_at) == second(&old.resolved_at);
    if same && kept.0.duration_since(now) > period {
        summary.valid_until = Some(kept);
    }
    summary
}

/// The kube-runtime reconcile entry point.
#[tracing::instrument(name = "reconcile_policy", skip_all, fields(namespace = %policy.namespace().unwrap_or_default(), name = %policy.name_any()))]
pub async fn reconcile(policy: Arc<GuardrailPolicy>, ctx: Arc<Shared>) -> Result<Action, Error> {
    ctx.metrics
        .reconciles
        .with_label_values(&[CONTROLLER_POLICY])
        .inc();
    let timer = ctx
        .metrics
        .reconcile_duration
        .with_label_values(&[CONTROLLER_POLICY])
        .start_timer();
    let result = apply(&policy, &ctx).await;
    timer.observe_duration();
    result
}

/// Requeues with backoff after an error, and counts it.
pub fn error_policy(policy: Arc<GuardrailPolicy>, error: &Error, ctx: Arc<Shared>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER_POLICY, error.category().label()])
        .inc();
    let wait = ctx.backoff(&policy.uid().unwrap_or_default());
    tracing::warn!(policy = %object_key(policy.as_ref()), error = %error, retry_in = ?wait, "reconcile failed");
    requeue(wait)
}

async fn slack_problem(policy: &GuardrailPolicy, ctx: &Shared) -> Result<Option<Problem>, Error> {
    let Some(slack) = policy.spec.notify.as_ref().and_then(|n| n.slack.as_ref()) else {
        return Ok(None);
    };
    // Whether the messages have somewhere to go with this controller's `postWith` (decision
    // 238): no webhook on a webhook controller, or no channel on a bot controller.
    match crate::controller::notify::route(
        ctx.settings.slack_post_with,
        ctx.settings.slack_channel.as_deref(),
        slack,
    ) {
        Err(error) => {
            return Ok(Some(Problem {
                reason: match error {
                    crate::controller::notify::NotifyError::NoChannel => {
                        REASON_SLACK_CHANNEL_MISSING
                    }
                    _ => REASON_SLACK_WEBHOOK_MISSING,
                },
                message: error.to_string(),
            }));
        }
        // The bot posts to a channel: a webhook the policy names is not used.
        Ok(Some(_)) => return Ok(None),
        Ok(None) => {}
    }
    let Some(secret_ref) = slack.webhook_secret_ref.as_ref() else {
        return Ok(None); // SSM parameter: checked by the notifier when it sends
    };
    let ns = policy.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Ok(Some(Problem {
                reason: REASON_SLACK_SECRET_MISSING,
                message: format!(
                    "the controller may not read Secret {ns}/{}: grant get on it (see the chart's RBAC values)",
                    secret_ref.name
                ),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let has_key = secret.as_ref().is_some_and(|s| {
        s.data
            .as_ref()
            .is_some_and(|d| d.contains_key(&secret_ref.key))
            || s.string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(&secret_ref.key))
    });
    if has_key {
        return Ok(None);
    }
    Ok(Some(Problem {
        reason: REASON_SLACK_SECRET_MISSING,
        message: match secret {
            None => format!(
                "Slack webhook Secret {ns}/{} does not exist; create it with key {:?}",
                secret_ref.name, secret_ref.key
            ),
            Some(_) => format!(
                "Slack webhook Secret {ns}/{} has no key {:?}",
                secret_ref.name, secret_ref.key
            ),
        },
    }))
}

async fn apply(policy: &GuardrailPolicy, ctx: &Shared) -> Result<Action, Error> {
    let now = Timestamp::now();
    let ns = policy.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = policy.name_any();
    if policy.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut problems = validate_spec(policy, &ctx.settings.protected_principals);
    if let Some(p) = slack_problem(policy, ctx).await? {
        problems.push(p);
    }
    let active = ctx.stores.active_quarantines(&ns, &name);
    let old = policy.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = policy.metadata.generation;
    status.active_quarantines = i32::try_from(active).unwrap_or(i32::MAX);
    let was_ready = condition_status(&old.conditions, READY) == Some("True");
    let (ready, reason, message) = match problems.first() {
        None => (
            true,
            REASON_VALID,
            "the policy is valid and evaluated against incoming signals".to_string(),
        ),
        Some(first) => (
            false,
            first.reason,
            problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    set_condition(
        &mut status.conditions,
        READY,
        ready,
        reason,
        &message,
        policy.metadata.generation,
        now,
    );
    let resolution = ctx.stores.resolutions().get(&ns, &name);
    let selection = selection_status(policy, resolution.as_ref(), now);
    let selection_warning = match &selection {
        None => {
            status.conditions.retain(|c| c.type_ != SELECTORS_RESOLVED);
            status.resolved_targets = None;
            None
        }
        Some((resolved, reason, message, summary)) => {
            let before = old
                .conditions
                .iter()
                .find(|c| c.type_ == SELECTORS_RESOLVED)
                .map(|c| (c.status.clone(), c.reason.clone()));
            set_condition(
                &mut status.conditions,
                SELECTORS_RESOLVED,
                *resolved,
                reason,
                message,
                policy.metadata.generation,
                now,
            );
            if let Some(summary) = summary {
                status.resolved_targets = Some(keep_valid_until(
                    summary.clone(),
                    old.resolved_targets.as_ref(),
                    resolution.as_ref(),
                    now,
                ));
            }
            let flipped = before != Some(("False".to_string(), reason.to_string()));
            // Pending is the normal start; every other False is worth a Warning when it begins.
            (!resolved && *reason != REASON_RESOLUTION_PENDING && flipped)
                .then(|| (*reason, message.clone()))
        }
    };
    let api: Api<GuardrailPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let changed = patch_status(&api, policy, &old, &status, &[])
        .await?
        .is_some();
    if let (Some((reason, message)), true) = (selection_warning, changed) {
        ctx.publish(policy, true, reason, "ResolveSelectors", message)
            .await;
    }
    let generation_changed = old.observed_generation != policy.metadata.generation;
    if !ready && (was_ready || generation_changed || old.conditions.is_empty()) && changed {
        ctx.publish(policy, true, reason, "Validate", message).await;
    }
    ctx.reset_backoff(&policy.uid().unwrap_or_default());
    Ok(requeue(RECHECK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::crd::{Principal, PrincipalKind};
    use selectors::{Outcome, Resolution, ResolvedTarget};

    fn policy(max: u32) -> GuardrailPolicy {
        let text = format!(
            "apiVersion: autoguardrails.io/v1alpha1\nkind: GuardrailPolicy\nmetadata: {{ name: p, namespace: team }}\nspec:\n  match: {{ sources: [CostAnomaly] }}\n  scope:\n    selectors: [{{ accounts: [\"111111111111\"], namePattern: \"r*\" }}]\n    maxTargets: {max}\n  deny: {{ actions: [\"ec2:RunInstances\"] }}\n"
        );
        crate::controller::simulate::load_policy("p", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn resolution(p: &GuardrailPolicy, n: usize, now: Timestamp) -> Resolution {
        Resolution {
            fingerprint: selectors::fingerprint(&p.spec.scope),
            resolved_at: now,
            since: now,
            valid_until: now + jiff::SignedDuration::from_mins(15),
            outcome: Outcome::Resolved(
                (0..n)
                    .map(|i| ResolvedTarget {
                        principal: Principal {
                            kind: PrincipalKind::IamRole,
                            arn: format!("arn:aws:iam::111111111111:role/r{i:02}"),
                        },
                        matched_by: "selectors[0]".into(),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_condition_follows_the_resolution() {
        let now = Timestamp::UNIX_EPOCH;
        let p = policy(12);
        let (ok, reason, _, summary) = selection_status(&p, None, now).unwrap_or_else(|| panic!());
        assert_eq!(
            (ok, reason, summary),
            (false, REASON_RESOLUTION_PENDING, None)
        );

        let r = resolution(&p, 11, now);
        let (ok, reason, _, summary) =
            selection_status(&p, Some(&r), now).unwrap_or_else(|| panic!());
        assert_eq!((ok, reason), (true, REASON_RESOLVED));
        let summary = summary.unwrap_or_default();
        assert_eq!(summary.count, 11);
        assert_eq!(summary.sample.len(), 10, "at most 10 ARNs");
        assert_eq!(summary.resolved_at, Some(Time(now)));

        let (ok, reason, message, _) =
            selection_status(&policy(10), Some(&resolution(&policy(10), 11, now)), now)
                .unwrap_or_else(|| panic!());
        assert_eq!((ok, reason), (false, REASON_TOO_MANY_TARGETS));
        assert!(message.contains("11 principals"));

        let mut failed = r.clone();
        failed.outcome = Outcome::Failed("account 111111111111: AccessDenied".into());
        let (ok, reason, message, summary) =
            selection_status(&p, Some(&failed), now).unwrap_or_else(|| panic!());
        assert_eq!(
            (ok, reason, summary),
            (false, REASON_RESOLUTION_FAILED, None)
        );
        assert!(message.contains("AccessDenied"));

        let later = now + jiff::SignedDuration::from_mins(16);
        let (ok, reason, _, _) = selection_status(&p, Some(&r), later).unwrap_or_else(|| panic!());
        assert_eq!((ok, reason), (false, REASON_RESOLUTION_STALE));

        let mut plain = p.clone();
        plain.spec.scope.selectors.clear();
        assert!(selection_status(&plain, Some(&r), now).is_none());
    }
}
