//! IAM changes reported by CloudTrail through EventBridge ("AWS API Call via CloudTrail" with
//! `eventSource: iam.amazonaws.com`): which principal or managed policy a call changed, so the
//! Quarantines holding a deny there are checked at once instead of at the next drift period
//! (decision 200). Pure: no I/O, no clock. The principal is compared through the one matcher of
//! `crate::principal` (IAM's identity rule).

use serde_json::Value;

use crate::controller::crd::{AttachmentKind, Phase, Quarantine};
use crate::principal::{Identity, PrincipalArn, PrincipalKind};

/// The CloudTrail `eventSource` of IAM.
pub const IAM_EVENT_SOURCE: &str = "iam.amazonaws.com";

/// The IAM calls that can undo or weaken a deny or boundary we hold. Every other IAM call is
/// read and ignored.
pub const DRIFT_CALLS: &[&str] = &[
    "DetachRolePolicy",
    "DetachUserPolicy",
    "DeleteRolePolicy",
    "DeleteUserPolicy",
    "DeletePolicy",
    "DeletePolicyVersion",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "PutUserPermissionsBoundary",
    "DeleteUserPermissionsBoundary",
    "PutRolePolicy",
    "PutUserPolicy",
];

/// One IAM call, read from its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamChange {
    /// CloudTrail's `eventID`.
    pub event_id: String,
    /// `DetachRolePolicy`.
    pub event_name: String,
    /// The account the call changed (`recipientAccountId`, else the envelope's `account`).
    pub account: String,
    /// The role or user the call changed (`requestParameters.roleName` / `userName`).
    pub principal: Option<(PrincipalKind, String)>,
    /// The managed policy the call changed (`requestParameters.policyArn`).
    pub policy_arn: Option<String>,
    /// The inline policy the call changed (`requestParameters.policyName`).
    pub policy_name: Option<String>,
    /// The call failed (`errorCode`): it changed nothing.
    pub failed: bool,
}

/// Why an IAM event cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IamEventError {
    /// A required field is missing or of the wrong shape.
    #[error("malformed IAM CloudTrail event: {0}")]
    Malformed(String),
}

/// Whether `event` (an EventBridge envelope already parsed) is a CloudTrail IAM API call.
pub fn is_iam_event(event: &Value) -> bool {
    event.get("detail-type").and_then(Value::as_str)
        == Some(crate::controller::velocity::event::CLOUDTRAIL_DETAIL_TYPE)
        && event
            .get("detail")
            .and_then(|d| d.get("eventSource"))
            .and_then(Value::as_str)
            == Some(IAM_EVENT_SOURCE)
}

/// Reads an IAM CloudTrail event. The caller checked [`is_iam_event`].
pub fn parse(event: &Value) -> Result<IamChange, IamEventError> {
    let detail = event
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| IamEventError::Malformed("detail is not an object".into()))?;
    let text = |v: Option<&Value>| -> Option<String> {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 2048)
            .map(str::to_string)
    };
    let event_id = text(detail.get("eventID"))
        .ok_or_else(|| IamEventError::Malformed("detail.eventID is missing".into()))?;
    let event_name = text(detail.get("eventName"))
        .ok_or_else(|| IamEventError::Malformed("detail.eventName is missing".into()))?;
    let account = text(detail.get("recipientAccountId"))
        .or_else(|| text(event.get("account")))
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            IamEventError::Malformed("no 12-digit recipientAccountId or account".into())
        })?;
    let request = detail.get("requestParameters");
    let field = |name: &str| text(request.and_then(|r| r.get(name)));
    let principal = match (field("roleName"), field("userName")) {
        (Some(role), _) => Some((PrincipalKind::Role, role)),
        (None, Some(user)) => Some((PrincipalKind::User, user)),
        (None, None) => None,
    };
    let failed = text(detail.get("errorCode")).is_some();
    Ok(IamChange {
        event_id,
        event_name,
        account,
        principal,
        policy_arn: field("policyArn"),
        policy_name: field("policyName"),
        failed,
    })
}

impl IamChange {
    /// Whether this call can have undone something we hold (a listed call that succeeded).
    pub fn may_drift(&self) -> bool {
        !self.failed && DRIFT_CALLS.contains(&self.event_name.as_str())
    }

    /// Whether the call touched something `q` holds: one of its targets (same account, kind and
    /// name by IAM's rule), or the managed policy that carries its deny. Only quarantines that hold
    /// something (Active, Releasing) are affected.
    pub fn affects(&self, q: &Quarantine) -> bool {
        if !self.may_drift() {
            return false;
        }
        let Some(status) = &q.status else {
            return false;
        };
        if !matches!(status.phase, Some(Phase::Active | Phase::Releasing)) {
            return false;
        }
        let managed_name = self
            .policy_arn
            .as_deref()
            .filter(|arn| crate::principal::account_of_arn(arn) == Some(self.account.as_str()))
            .and_then(|arn| arn.rsplit('/').next());
        status.targets.iter().any(|t| {
            let Ok(arn) = PrincipalArn::parse(&t.arn) else {
                return false;
            };
            if arn.account_id() != self.account {
                return false;
            }
            let same_principal = self.principal.as_ref().is_some_and(|(kind, name)| {
                Identity::new(arn.partition(), &self.account, *kind, name) == arn.identity()
            });
            let same_policy = match (&t.attachment, managed_name) {
                (Some(a), Some(name)) => a.kind == AttachmentKind::Managed && a.name == name,
                _ => false,
            };
            // A call on one principal's policies matters when it names that principal; a call on
            // a managed policy alone (DeletePolicy, CreatePolicyVersion) when it is our policy.
            same_principal || (self.principal.is_none() && same_policy)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::crd::{Attachment, QuarantineStatus, TargetState, TargetStatus};
    use serde_json::json;

    fn event(name: &str, request: Value) -> Value {
        json!({
            "version": "0",
            "id": "6b3f9a2c-0000-0000-0000-000000000000",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.iam",
            "account": "123456789012",
            "time": "2026-12-05T18:00:00Z",
            "region": "us-east-1",
            "detail": {
                "eventVersion": "1.08",
                "eventID": "e-1",
                "eventTime": "2026-12-05T18:00:00Z",
                "eventSource": "iam.amazonaws.com",
                "eventName": name,
                "awsRegion": "us-east-1",
                "recipientAccountId": "123456789012",
                "requestParameters": request,
            }
        })
    }

    fn held(phase: Phase, arn: &str, kind: AttachmentKind, policy: &str) -> Quarantine {
        let mut q: Quarantine = serde_json::from_value(json!({
            "apiVersion": "autoguardrails.io/v1alpha1",
            "kind": "Quarantine",
            "metadata": {"name": "q", "namespace": "ns"},
            "spec": {
                "policyRef": {"name": "p"},
                "targets": [{"kind": "IamRole", "arn": arn}],
                "signal": {
                    "source": "CostAnomaly", "id": "a", "accountId": "123456789012",
                    "impactUsd": 10.0, "observedAt": "2026-12-05T17:00:00Z"
                },
                "deny": {"actions": ["ec2:RunInstances"]},
                "mode": "Auto",
                "ttl": "1h"
            }
        }))
        .unwrap();
        q.status = Some(QuarantineStatus {
            phase: Some(phase),
            targets: vec![TargetStatus {
                arn: arn.into(),
                attachment: Some(Attachment {
                    kind,
                    name: policy.into(),
                }),
                state: TargetState::Attached,
                last_error: None,
                last_verified_at: None,
            }],
            ..QuarantineStatus::default()
        });
        q
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/team/CI-Deployer";

    #[test]
    fn a_detach_from_a_held_role_affects_its_quarantine_by_iam_name_rule() {
        let e = event(
            "DetachRolePolicy",
            json!({"roleName": "ci-deployer", "policyArn": "arn:aws:iam::123456789012:policy/x"}),
        );
        assert!(is_iam_event(&e));
        let change = parse(&e).unwrap();
        assert_eq!(
            change.principal,
            Some((PrincipalKind::Role, "ci-deployer".into()))
        );
        let q = held(Phase::Active, ROLE, AttachmentKind::Managed, "agr-deny");
        assert!(change.affects(&q));
        assert!(change.affects(&held(
            Phase::Releasing,
            ROLE,
            AttachmentKind::Managed,
            "agr-deny"
        )));
        // Nothing held yet or any more: nothing to repair.
        assert!(!change.affects(&held(
            Phase::DryRun,
            ROLE,
            AttachmentKind::Managed,
            "agr-deny"
        )));
    }

    #[test]
    fn other_principals_accounts_and_kinds_are_not_affected() {
        let q = held(Phase::Active, ROLE, AttachmentKind::Managed, "agr-deny");
        let other_role = parse(&event("DetachRolePolicy", json!({"roleName": "etl"}))).unwrap();
        assert!(!other_role.affects(&q));
        let same_name_user = parse(&event(
            "DetachUserPolicy",
            json!({"userName": "ci-deployer"}),
        ))
        .unwrap();
        assert!(!same_name_user.affects(&q));
        let mut other_account = event("DetachRolePolicy", json!({"roleName": "ci-deployer"}));
        other_account["detail"]["recipientAccountId"] = "210987654321".into();
        assert!(!parse(&other_account).unwrap().affects(&q));
    }

    #[test]
    fn failed_and_harmless_calls_affect_nothing() {
        let q = held(Phase::Active, ROLE, AttachmentKind::Inline, "agr-deny");
        let mut failed = event("DeleteRolePolicy", json!({"roleName": "ci-deployer"}));
        failed["detail"]["errorCode"] = "AccessDenied".into();
        let failed = parse(&failed).unwrap();
        assert!(failed.failed);
        assert!(!failed.affects(&q));
        let read = parse(&event("GetRole", json!({"roleName": "ci-deployer"}))).unwrap();
        assert!(!read.affects(&q));
        let delete = parse(&event(
            "DeleteRolePolicy",
            json!({"roleName": "ci-deployer", "policyName": "agr-deny"}),
        ))
        .unwrap();
        assert!(delete.affects(&q));
    }

    #[test]
    fn a_change_to_our_managed_policy_affects_every_holder() {
        let q = held(Phase::Active, ROLE, AttachmentKind::Managed, "agr-deny");
        let ours = parse(&event(
            "CreatePolicyVersion",
            json!({"policyArn": "arn:aws:iam::123456789012:policy/autoguardrails/agr-deny"}),
        ))
        .unwrap();
        assert!(ours.affects(&q));
        let theirs = parse(&event(
            "DeletePolicy",
            json!({"policyArn": "arn:aws:iam::123456789012:policy/other"}),
        ))
        .unwrap();
        assert!(!theirs.affects(&q));
        let elsewhere = parse(&event(
            "DeletePolicy",
            json!({"policyArn": "arn:aws:iam::210987654321:policy/agr-deny"}),
        ))
        .unwrap();
        assert!(!elsewhere.affects(&q));
    }

    #[test]
    fn malformed_events_are_refused_with_the_reason() {
        let mut no_id = event("DetachRolePolicy", json!({"roleName": "a"}));
        no_id["detail"]["eventID"] = Value::Null;
        assert!(matches!(parse(&no_id), Err(IamEventError::Malformed(m)) if m.contains("eventID")));
        let mut no_account = event("DetachRolePolicy", json!({"roleName": "a"}));
        no_account["detail"]["recipientAccountId"] = "12".into();
        no_account["account"] = Value::Null;
        assert!(parse(&no_account).is_err());
        let mut not_iam = event("DetachRolePolicy", json!({}));
        not_iam["detail"]["eventSource"] = "ec2.amazonaws.com".into();
        assert!(!is_iam_event(&not_iam));
    }
}
