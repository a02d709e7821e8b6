//! Translates a Quarantine object into the enforcement engine's plain data (desired state, known
//! principals, scope). Pure: no I/O, no clock. It must not decide the lifecycle.

use crate::principal::PrincipalArn;
use std::collections::BTreeSet;

use crate::aws::PrincipalKind;
use crate::controller::crd::{self, Quarantine, TargetState};
use crate::controller::enforce::converge::KnownPrincipal;
use crate::controller::enforce::document::{self, DocumentError};
use crate::controller::enforce::ownership::QuarantineKey;
use crate::controller::enforce::plan::{DesiredQuarantine, DesiredTarget};

/// The engine's name for a principal kind.
pub fn principal_kind(kind: crd::PrincipalKind) -> PrincipalKind {
    match kind {
        crd::PrincipalKind::IamRole => PrincipalKind::Role,
        crd::PrincipalKind::IamUser => PrincipalKind::User,
    }
}

/// The quarantine's identity as written into IAM tags (namespace, name, uid).
pub fn key(q: &Quarantine) -> QuarantineKey {
    QuarantineKey {
        namespace: q.metadata.namespace.clone().unwrap_or_default(),
        name: q.metadata.name.clone().unwrap_or_default(),
        uid: q.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The deny document for this quarantine (stable Sid derived from namespace/name).
pub fn deny_document(q: &Quarantine) -> Result<document::DenyDocument, DocumentError> {
    let key = key(q);
    document::build(
        &q.spec.deny,
        &document::sid_suffix(&key.namespace, &key.name),
    )
}

/// The desired enforcement of `q` (every spec target carries the deny).
pub fn desired(q: &Quarantine, document: &str) -> DesiredQuarantine {
    let attached: BTreeSet<&str> = q
        .status
        .iter()
        .flat_map(|s| s.targets.iter())
        .filter(|t| t.state == TargetState::Attached)
        .map(|t| t.arn.as_str())
        .collect();
    DesiredQuarantine {
        key: key(q),
        account_id: q
            .spec
            .signal
            .as_ref()
            .map(|s| s.account_id.clone())
            .unwrap_or_default(),
        targets: q
            .spec
            .targets
            .iter()
            .map(|t| DesiredTarget {
                kind: principal_kind(t.kind),
                arn: t.arn.clone(),
                attached_before: attached.contains(t.arn.as_str()),
            })
            .collect(),
        document: document.to_string(),
    }
}

/// A spec target as a principal the engine scans for our inline policies.
pub fn known_principal(t: &crd::Principal) -> KnownPrincipal {
    KnownPrincipal {
        kind: principal_kind(t.kind),
        arn: t.arn.clone(),
    }
}

/// Every principal the quarantine ever targeted (spec and status), scanned for our inline policies.
pub fn known_principals(q: &Quarantine) -> Vec<KnownPrincipal> {
    let mut out: Vec<KnownPrincipal> = q.spec.targets.iter().map(known_principal).collect();
    for t in q.status.iter().flat_map(|s| s.targets.iter()) {
        let Ok(parsed) = PrincipalArn::parse(&t.arn) else {
            continue;
        };
        if !out
            .iter()
            .any(|k| PrincipalArn::parse(&k.arn).is_ok_and(|known| known == parsed))
            && let Some(kind) = iam_kind(&parsed)
        {
            out.push(KnownPrincipal {
                kind,
                arn: t.arn.clone(),
            });
        }
    }
    out
}

/// The accounts the quarantine's targets live in (from their ARNs).
pub fn accounts(q: &Quarantine) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for t in &q.spec.targets {
        // Targets are validated at admission; one that does not parse names no account.
        if let Ok(parsed) = t.parse() {
            out.insert(parsed.account_id().to_string());
        }
    }
    out.into_iter().collect()
}

fn iam_kind(arn: &PrincipalArn) -> Option<PrincipalKind> {
    arn.reference().map(|r| r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::crd::{
        DenySpec, Mode, PolicyRef, Principal, QuarantineSpec, QuarantineStatus, TargetStatus,
    };

    fn quarantine() -> Quarantine {
        let mut q = Quarantine::new(
            "q1",
            QuarantineSpec {
                policy_ref: PolicyRef { name: "p".into() },
                signal: None,
                targets: vec![
                    Principal {
                        kind: crd::PrincipalKind::IamRole,
                        arn: "arn:aws:iam::111111111111:role/a".into(),
                    },
                    Principal {
                        kind: crd::PrincipalKind::IamUser,
                        arn: "arn:aws:iam::222222222222:user/b".into(),
                    },
                ],
                target_reasons: Vec::new(),
                deny: DenySpec {
                    actions: vec!["ec2:RunInstances".into()],
                    regions: vec![],
                    conditions: Vec::new(),
                },
                actions: crate::controller::crd::default_actions(),
                mode: Mode::Auto,
                ttl: "1h".into(),
                approval_timeout: None,
                required_approvers: None,
                notify: None,
            },
        );
        q.metadata.namespace = Some("ns".into());
        q.metadata.uid = Some("u1".into());
        q.status = Some(QuarantineStatus {
            targets: vec![
                TargetStatus {
                    arn: "arn:aws:iam::111111111111:role/a".into(),
                    attachment: None,
                    state: TargetState::Attached,
                    last_error: None,
                    last_verified_at: None,
                },
                TargetStatus {
                    arn: "arn:aws:iam::111111111111:role/removed-from-spec".into(),
                    attachment: None,
                    state: TargetState::Detached,
                    last_error: None,
                    last_verified_at: None,
                },
            ],
            ..QuarantineStatus::default()
        });
        q
    }

    #[test]
    fn desired_marks_targets_attached_before_from_status() {
        let q = quarantine();
        let d = desired(&q, "{}");
        assert_eq!(d.key.uid, "u1");
        assert!(d.targets[0].attached_before);
        assert!(!d.targets[1].attached_before);
        assert_eq!(d.targets[1].kind, PrincipalKind::User);
    }

    #[test]
    fn known_principals_include_status_targets_no_longer_in_spec() {
        let known = known_principals(&quarantine());
        let arns: Vec<&str> = known.iter().map(|k| k.arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::111111111111:role/a",
                "arn:aws:iam::222222222222:user/b",
                "arn:aws:iam::111111111111:role/removed-from-spec"
            ]
        );
        assert_eq!(accounts(&quarantine()), ["111111111111", "222222222222"]);
    }

    #[test]
    fn document_uses_the_stable_sid() {
        let doc = deny_document(&quarantine()).unwrap();
        assert!(doc.json.contains("ec2:RunInstances"));
    }
}
