//! Property: over random desired sets, targets, lifecycles, quotas, drift and gates, dry-run sends
//! not one write to IAM; the kill switch sends no enforcement write yet still releases everything
//! that is no longer desired; enforce mode reaches exactly the desired state.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::BTreeSet;
use std::sync::Arc;

use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::aws::{Operation, PrincipalKind};
use autoguardrails::controller::enforce::converge::WriteGate;
use autoguardrails::controller::enforce::ownership::{self, INLINE_POLICY_PREFIX};
use autoguardrails::controller::enforce::plan::DesiredQuarantine;
use fixtures::*;
use proptest::prelude::*;

/// A quarantine's lifecycle phase now; only `Active` is desired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    DryRun,
    PendingApproval,
    Active,
    Released,
}

#[derive(Debug, Clone)]
struct QuarantineCase {
    targets_mask: u8,
    was_active: bool,
    phase: Phase,
}

#[derive(Debug, Clone)]
struct Case {
    quarantines: Vec<QuarantineCase>,
    role_quota: u32,
    user_quota: u32,
    drift: bool,
    gate: WriteGate,
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::DryRun),
        Just(Phase::PendingApproval),
        Just(Phase::Active),
        Just(Phase::Released)
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            (1u8..16, any::<bool>(), phase()).prop_map(|(targets_mask, was_active, phase)| {
                QuarantineCase {
                    targets_mask,
                    was_active,
                    phase,
                }
            }),
            0..4,
        ),
        prop_oneof![Just(0u32), Just(1), Just(10)],
        prop_oneof![Just(0u32), Just(1), Just(10)],
        any::<bool>(),
        prop_oneof![
            Just(WriteGate::Enforce),
            Just(WriteGate::KillSwitch),
            Just(WriteGate::DryRun)
        ],
    )
        .prop_map(|(quarantines, role_quota, user_quota, drift, gate)| Case {
            quarantines,
            role_quota,
            user_quota,
            drift,
            gate,
        })
}

fn principals(iam: &InMemoryIam) -> Vec<(PrincipalKind, String)> {
    iam.outside(|o| {
        vec![
            (PrincipalKind::Role, o.create_role("role-0")),
            (PrincipalKind::Role, o.create_role("role-1")),
            (PrincipalKind::User, o.create_user("user-0")),
            (PrincipalKind::User, o.create_user("user-1")),
        ]
    })
}

fn desired_of(
    case: &Case,
    all: &[(PrincipalKind, String)],
    pick: impl Fn(&QuarantineCase) -> bool,
) -> Vec<DesiredQuarantine> {
    case.quarantines
        .iter()
        .enumerate()
        .filter(|(_, q)| pick(q))
        .map(|(i, q)| {
            let targets: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(j, _)| q.targets_mask & (1 << j) != 0)
                .map(|(_, t)| t.clone())
                .collect();
            quarantine(&format!("q{i}"), &targets, q.was_active)
        })
        .collect()
}

/// (principal name, our policy or inline name) for every deny of ours in place.
fn our_denies(iam: &InMemoryIam) -> BTreeSet<(String, String)> {
    let state = iam.state();
    let ours: BTreeSet<String> = our_policies(iam, CLUSTER).into_iter().collect();
    let mut out = BTreeSet::new();
    for p in state.principals.values() {
        for a in p.attached.iter().filter(|a| ours.contains(*a)) {
            out.insert((
                p.name.clone(),
                a.rsplit('/').next().unwrap_or("").to_string(),
            ));
        }
        for n in p
            .inline
            .keys()
            .filter(|n| n.starts_with(INLINE_POLICY_PREFIX))
        {
            out.insert((p.name.clone(), n.clone()));
        }
    }
    out
}

fn is_release_op(op: Operation) -> bool {
    matches!(
        op,
        Operation::DetachRolePolicy
            | Operation::DetachUserPolicy
            | Operation::DeleteRolePolicy
            | Operation::DeleteUserPolicy
            | Operation::DeletePolicy
            | Operation::DeletePolicyVersion
    )
}

fn check(case: Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(async move {
        let iam = Arc::new(InMemoryIam::new(ACCOUNT));
        iam.set_attached_policies_quota(PrincipalKind::Role, case.role_quota);
        iam.set_attached_policies_quota(PrincipalKind::User, case.user_quota);
        let all = principals(&iam);
        // Earlier: the quarantines that were active got enforced.
        let before = desired_of(&case, &all, |q| q.was_active);
        converge(&engine(), &iam, &input(before, &[], WriteGate::Enforce))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if case.drift {
            let role0 = pref(PrincipalKind::Role, &all[0].1);
            let state = iam.state();
            iam.outside(|o| {
                for a in state.attached(&role0) {
                    o.detach(&role0, &a);
                }
                for n in state.inline(&role0).keys() {
                    o.delete_inline(&role0, n);
                }
            });
        }
        let denies_before = our_denies(&iam);
        let state_before = iam.state();
        let writes_before = iam.write_count();

        let now = desired_of(&case, &all, |q| q.phase == Phase::Active);
        let report = converge(&engine(), &iam, &input(now.clone(), &all, case.gate))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let new_writes: Vec<_> = iam.write_log().split_off(writes_before);

        // Desired (quarantine policy/inline name, principal) pairs.
        let mut wanted = BTreeSet::new();
        for d in &now {
            for t in &d.targets {
                let name = t.arn.rsplit('/').next().unwrap_or("").to_string();
                wanted.insert((
                    name.clone(),
                    ownership::managed_policy_name(CLUSTER, &d.key, ACCOUNT),
                ));
                wanted.insert((
                    name,
                    ownership::inline_policy_name(CLUSTER, &d.key, ACCOUNT),
                ));
            }
        }
        match case.gate {
            WriteGate::DryRun => {
                prop_assert!(new_writes.is_empty(), "dry-run wrote: {new_writes:?}");
                prop_assert_eq!(iam.state(), state_before);
                prop_assert!(report.writes.iter().all(|w| !w.performed));
            }
            WriteGate::KillSwitch => {
                prop_assert!(
                    new_writes.iter().all(|w| is_release_op(w.operation)),
                    "kill switch sent an enforcement write: {new_writes:?}"
                );
                let after = our_denies(&iam);
                prop_assert!(after.is_subset(&denies_before));
                for d in &after {
                    prop_assert!(wanted.contains(d), "not released under kill switch: {d:?}");
                }
                prop_assert!(report.errors.is_empty(), "{:?}", report.errors);
            }
            WriteGate::Enforce => {
                let after = our_denies(&iam);
                for d in &after {
                    prop_assert!(wanted.contains(d), "leftover deny {d:?}");
                }
                // Exactly-once per target where quotas allow; user inline size always fits here.
                if report.is_converged() {
                    assert_exactly_enforced(&iam, CLUSTER, &now);
                } else {
                    return Err(TestCaseError::fail(format!("{:#?}", report.errors)));
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn dry_run_and_kill_switch_never_enforce_and_release_always_works(c in case()) {
        check(c)?;
    }
}
