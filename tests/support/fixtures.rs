//! Shared fixtures for enforcement tests over the in-memory IAM.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::aws::factory::StaticClients;
use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::aws::{PrincipalKind, PrincipalRef};
use autoguardrails::controller::enforce::converge::{
    ConvergeInput, ConvergeReport, EnforceError, Engine, EngineConfig, KnownPrincipal, Scope,
    WriteGate,
};
use autoguardrails::controller::enforce::ownership::{
    self, INLINE_POLICY_PREFIX, POLICY_PATH, QuarantineKey, TAG_CLUSTER,
};
use autoguardrails::controller::enforce::plan::{
    DesiredQuarantine, DesiredTarget, ProtectedPrincipals,
};

pub const ACCOUNT: &str = "111111111111";
pub const CLUSTER: &str = "cluster-a";

pub fn deny_document() -> String {
    r#"{"Version":"2012-10-17","Statement":[{"Sid":"DenyCompute","Effect":"Deny","Action":["ec2:RunInstances","ec2:CreateNatGateway"],"Resource":"*"}]}"#.to_string()
}

pub fn engine_with(cluster: &str, protected: &[&str], settle: Duration) -> Engine {
    Engine::new(EngineConfig {
        cluster_id: cluster.to_string(),
        protected: ProtectedPrincipals::parse(protected.iter().copied()).unwrap(),
        settle,
    })
}

pub fn engine() -> Engine {
    engine_with(CLUSTER, &[], Duration::ZERO)
}

pub fn key(name: &str) -> QuarantineKey {
    QuarantineKey {
        namespace: "guardrails".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

pub fn quarantine(
    name: &str,
    targets: &[(PrincipalKind, String)],
    attached_before: bool,
) -> DesiredQuarantine {
    DesiredQuarantine {
        key: key(name),
        account_id: ACCOUNT.into(),
        targets: targets
            .iter()
            .map(|(kind, arn)| DesiredTarget {
                kind: *kind,
                arn: arn.clone(),
                attached_before,
            })
            .collect(),
        document: deny_document(),
    }
}

pub fn pref(kind: PrincipalKind, arn: &str) -> PrincipalRef {
    PrincipalRef {
        kind,
        name: arn.rsplit('/').next().unwrap().to_string(),
    }
}

pub fn input(
    desired: Vec<DesiredQuarantine>,
    known: &[(PrincipalKind, String)],
    gate: WriteGate,
) -> ConvergeInput {
    ConvergeInput {
        desired,
        known_principals: known
            .iter()
            .map(|(kind, arn)| KnownPrincipal {
                kind: *kind,
                arn: arn.clone(),
            })
            .collect(),
        accounts: vec![ACCOUNT.to_string()],
        gate,
        scope: Scope::All,
    }
}

pub async fn converge(
    engine: &Engine,
    iam: &Arc<InMemoryIam>,
    input: &ConvergeInput,
) -> Result<ConvergeReport, EnforceError> {
    let clients = StaticClients::new().with(ACCOUNT, iam.clone());
    engine.converge(&clients, input).await
}

/// Our managed policies (path + cluster tag), by ARN.
pub fn our_policies(iam: &InMemoryIam, cluster: &str) -> Vec<String> {
    iam.state()
        .policies
        .values()
        .filter(|p| {
            p.path == POLICY_PATH
                && p.tags
                    .iter()
                    .any(|t| t.key == TAG_CLUSTER && t.value == cluster)
        })
        .map(|p| p.arn.clone())
        .collect()
}

/// Our inline policies anywhere: (principal name, inline name).
pub fn our_inline(iam: &InMemoryIam) -> Vec<(String, String)> {
    iam.state()
        .principals
        .values()
        .flat_map(|p| {
            p.inline
                .keys()
                .filter(|n| n.starts_with(INLINE_POLICY_PREFIX))
                .map(|n| (p.name.clone(), n.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// For a desired quarantine: every target carries exactly one deny (managed xor inline), the
/// managed policy document is the desired one, and nothing else of ours exists.
pub fn assert_exactly_enforced(iam: &InMemoryIam, cluster: &str, desired: &[DesiredQuarantine]) {
    let state = iam.state();
    let marked = |d: &DesiredQuarantine| ownership::mark_document(cluster, &d.document).unwrap();
    let mut expected_policies = Vec::new();
    let mut expected_inline = Vec::new();
    for d in desired {
        let name = ownership::managed_policy_name(cluster, &d.key, ACCOUNT);
        let inline = ownership::inline_policy_name(cluster, &d.key, ACCOUNT);
        let arn = ownership::managed_policy_arn("aws", ACCOUNT, &name);
        let mut managed_used = false;
        for t in &d.targets {
            let p = pref(t.kind, &t.arn);
            let managed = state.attached(&p).iter().filter(|a| **a == arn).count();
            let inl = state.inline(&p);
            let has_inline = inl.contains_key(&inline);
            assert!(managed <= 1, "double managed attachment on {}", t.arn);
            assert!(
                (managed == 1) ^ has_inline,
                "target {} must carry exactly one deny (managed={managed}, inline={has_inline})",
                t.arn
            );
            if has_inline {
                assert!(
                    ownership::same_document(&inl[&inline], &marked(d)),
                    "inline document of {} differs",
                    t.arn
                );
                expected_inline.push((p.name.clone(), inline.clone()));
            } else {
                managed_used = true;
            }
        }
        if let Some(pol) = state.policies.get(&name.to_lowercase()) {
            expected_policies.push(pol.arn.clone());
            assert!(pol.versions.len() <= 5);
            if managed_used {
                assert!(
                    ownership::same_document(pol.default_document().unwrap(), &d.document),
                    "managed document differs"
                );
            }
        } else {
            assert!(!managed_used, "managed attachment without policy");
        }
    }
    let mut ours = our_policies(iam, cluster);
    ours.sort();
    expected_policies.sort();
    // A managed policy may exist for a quarantine whose targets all use inline; no other.
    for p in &ours {
        assert!(expected_policies.contains(p), "orphan policy {p}");
    }
    let mut inl = our_inline(iam);
    inl.sort();
    expected_inline.sort();
    assert_eq!(inl, expected_inline, "leftover or missing inline policies");
}
