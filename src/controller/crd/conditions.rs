//! Conditions on both kinds: the list-map schema, type and reason constants, and a setter that
//! keeps `lastTransitionTime` when the status did not flip. Pure data; no clients.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{Schema, SchemaGenerator};

/// Condition type: the object is valid and the controller is acting on it.
pub const READY: &str = "Ready";
/// Condition type on a Quarantine with `setPermissionsBoundary`: False when a released target's
/// boundary was changed by someone else and left as they set it (decision 240).
pub const BOUNDARY_RESTORED: &str = "BoundaryRestored";
/// Condition reason and Event reason: a boundary someone else put on was left in place on release.
pub const REASON_BOUNDARY_CHANGED: &str = "BoundaryChangedByOthers";
/// Condition reason: every recorded boundary was restored.
pub const REASON_BOUNDARY_RESTORED: &str = "Restored";
/// Event reason: our boundary was put back after someone removed or replaced it.
pub const REASON_BOUNDARY_REPAIRED: &str = "BoundaryRepaired";
/// Condition type: the deny is attached to every target (Quarantine only).
pub const ENFORCED: &str = "Enforced";
/// Condition type: the policy's `scope.selectors` resolved to a usable set of principals
/// (GuardrailPolicy with selectors only).
pub const SELECTORS_RESOLVED: &str = "SelectorsResolved";
/// Condition type: the Slack messages for this Quarantine were delivered (Quarantine only; owned
/// by the notification worker).
pub const NOTIFIED: &str = "Notified";

// The one vocabulary of condition reasons (decision 143); the lifecycle's history and Event
// reasons are in `lifecycle`, intake's decision reasons in `policy`.

/// Reason (Quarantine `Ready`): the object is valid and reconciled.
pub const REASON_RECONCILED: &str = "Reconciled";
/// Reason (Quarantine `Ready`): the spec needs fixing before anything can happen.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Reason (Quarantine `Enforced`): the deny is attached to every target.
pub const REASON_ATTACHED: &str = "Attached";
/// Reason (GuardrailPolicy `Ready`): the policy is valid.
pub const REASON_VALID: &str = "Valid";
/// Reason (GuardrailPolicy `Ready`): a scope principal is not a valid role or user ARN.
pub const REASON_INVALID_PRINCIPAL: &str = "InvalidPrincipal";
/// Reason (GuardrailPolicy `Ready`): every target is a protected principal.
pub const REASON_PROTECTED_TARGET: &str = "ProtectedTarget";
/// Reason (GuardrailPolicy `Ready`): the deny document cannot fit IAM's size limits.
pub const REASON_DENY_TOO_LARGE: &str = "DenyTooLarge";
/// Reason (GuardrailPolicy `Ready`): the Slack webhook Secret is missing.
pub const REASON_SLACK_SECRET_MISSING: &str = "SlackSecretMissing";
/// Reason (GuardrailPolicy `Ready`): `notify.slack` names no webhook and the controller posts
/// with incoming webhooks (`notifications.postWith: webhook`).
pub const REASON_SLACK_WEBHOOK_MISSING: &str = "SlackWebhookMissing";
/// Reason (GuardrailPolicy `Ready`): the controller posts with its bot token and neither the
/// policy's `channelHint` nor `notifications.channel` names a channel.
pub const REASON_SLACK_CHANNEL_MISSING: &str = "SlackChannelMissing";
/// Reason (GuardrailPolicy `Ready`): the deny (its conditions) cannot be written as one statement.
pub const REASON_INVALID_DENY: &str = "InvalidDeny";
/// Reason (GuardrailPolicy `Ready`): an exception (account, weekly window) cannot be used.
pub const REASON_INVALID_EXCEPTION: &str = "InvalidException";
/// Reason (GuardrailPolicy `Ready`): scope minus exceptions leaves no target.
pub const REASON_NO_ELIGIBLE_TARGETS: &str = "NoEligibleTargets";

/// Reason (GuardrailPolicy `SelectorsResolved`): the selectors resolved within `maxTargets`.
pub const REASON_RESOLVED: &str = "Resolved";
/// Reason (GuardrailPolicy `SelectorsResolved`): not resolved yet (or not since the selectors changed).
pub const REASON_RESOLUTION_PENDING: &str = "ResolutionPending";
/// Reason (GuardrailPolicy `SelectorsResolved`): an IAM or Organizations listing failed.
pub const REASON_RESOLUTION_FAILED: &str = "ResolutionFailed";
/// Reason (GuardrailPolicy `SelectorsResolved`): the last resolution is too old to be used.
pub const REASON_RESOLUTION_STALE: &str = "ResolutionStale";
/// Reason (GuardrailPolicy `SelectorsResolved`): the scope resolves to more than `maxTargets`.
pub const REASON_TOO_MANY_TARGETS: &str = "TooManyTargets";

/// The schema of a `conditions` list: a list-map keyed by `type`, as Kubernetes API conventions ask.
pub fn schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Sets a condition by type. `lastTransitionTime` changes only when `status` flips; reason,
/// message and observedGeneration are updated in place. Returns true when anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let flipped = existing.status != status;
            let changed = flipped
                || existing.reason != reason
                || existing.message != message
                || existing.observed_generation != observed_generation;
            if flipped {
                existing.last_transition_time = Time(now);
            }
            existing.status = status.to_string();
            existing.reason = reason.to_string();
            existing.message = message.to_string();
            existing.observed_generation = observed_generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                observed_generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// The status (`True`/`False`/`Unknown`) of a condition type, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn transition_time_kept_when_status_does_not_flip() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            READY,
            true,
            "A",
            "m",
            Some(1),
            at(10)
        ));
        assert!(!set_condition(
            &mut conditions,
            READY,
            true,
            "A",
            "m",
            Some(1),
            at(20)
        ));
        assert!(set_condition(
            &mut conditions,
            READY,
            true,
            "B",
            "other",
            Some(2),
            at(30)
        ));
        assert_eq!(conditions[0].last_transition_time, Time(at(10)));
        assert_eq!(conditions[0].reason, "B");
        assert!(set_condition(
            &mut conditions,
            READY,
            false,
            "B",
            "other",
            Some(2),
            at(40)
        ));
        assert_eq!(conditions[0].last_transition_time, Time(at(40)));
        assert_eq!(condition_status(&conditions, READY), Some("False"));
        assert_eq!(conditions.len(), 1);
    }
}
