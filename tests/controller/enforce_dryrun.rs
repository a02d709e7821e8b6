//! Property: over random desired sets, targets, lifecycles, quotas, drift and gates, dry-run sends
//! not one write to IAM; the kill switch sends no enforcement write yet still releases everything
//! that is no longer desired; enforce mode reaches exactly the desired state.

use crate::support::fixtures;

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

/// One principal of the boundary property: its own boundary before, whether a quarantine with
/// `setPermissionsBoundary` enforced on it earlier, and whether someone removed ours since.
#[derive(Debug, Clone, Copy)]
struct BoundaryCase {
    had_boundary: bool,
    was_active: bool,
    drift: bool,
}

fn boundary_case() -> impl Strategy<Value = (Vec<BoundaryCase>, WriteGate, bool)> {
    (
        prop::collection::vec(
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(had_boundary, was_active, drift)| BoundaryCase {
                    had_boundary,
                    was_active,
                    drift,
                },
            ),
            4,
        ),
        prop_oneof![
            Just(WriteGate::Enforce),
            Just(WriteGate::KillSwitch),
            Just(WriteGate::DryRun)
        ],
        any::<bool>(),
    )
}

fn is_boundary_release_op(op: Operation) -> bool {
    matches!(
        op,
        Operation::PutRolePermissionsBoundary
            | Operation::PutUserPermissionsBoundary
            | Operation::DeleteRolePermissionsBoundary
            | Operation::DeleteUserPermissionsBoundary
            | Operation::DeletePolicy
    )
}

fn check_boundary(
    cases: Vec<BoundaryCase>,
    gate: WriteGate,
    release: bool,
) -> Result<(), TestCaseError> {
    use autoguardrails::aws::factory::StaticClients;
    use autoguardrails::controller::enforce::boundary::apply::{self, Input, Target, next_record};
    use autoguardrails::controller::enforce::plan::ProtectedPrincipals;

    let fail = |e: String| TestCaseError::fail(e);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    rt.block_on(async move {
        let iam = Arc::new(InMemoryIam::new(ACCOUNT));
        let all = principals(&iam);
        let team = iam.outside(|o| {
            o.create_policy(
                "team-boundary",
                "/",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                &[],
            )
        });
        for (c, (kind, arn)) in cases.iter().zip(&all) {
            if c.had_boundary {
                iam.outside(|o| o.set_boundary(&pref(*kind, arn), Some(&team)));
            }
        }
        let clients = StaticClients::new().with(ACCOUNT, iam.clone() as Arc<dyn autoguardrails::aws::Iam>);
        let protected = ProtectedPrincipals::default();
        let active: Vec<(PrincipalKind, String)> = cases
            .iter()
            .zip(&all)
            .filter(|(c, _)| c.was_active)
            .map(|(_, t)| t.clone())
            .collect();
        let mut records = vec![None; active.len()];
        let make = |records: &[Option<_>], gate| Input {
            key: key("qb"),
            cluster: CLUSTER.into(),
            deny_document: deny_document(),
            targets: active
                .iter()
                .zip(records)
                .map(|((kind, arn), record)| Target {
                    kind: *kind,
                    arn: arn.clone(),
                    record: record.clone(),
                })
                .collect(),
            gate,
        };
        // Earlier: enforced (record, then put).
        for _ in 0..2 {
            let r = apply::enforce(&clients, &protected, &make(&records, WriteGate::Enforce))
                .await
                .map_err(|e| fail(e.to_string()))?;
            for (rec, t) in records.iter_mut().zip(&r.targets) {
                *rec = next_record(rec.as_ref(), &t.outcome);
            }
        }
        for (c, (kind, arn)) in cases.iter().zip(&all) {
            if c.was_active && c.drift {
                iam.outside(|o| o.set_boundary(&pref(*kind, arn), None));
            }
        }
        let state_before = iam.state();
        let writes_before = iam.write_count();
        let input = make(&records, gate);
        let report = if release {
            apply::release(&clients, &protected, &input).await
        } else {
            apply::enforce(&clients, &protected, &input).await
        }
        .map_err(|e| fail(e.to_string()))?;
        let new_writes: Vec<_> = iam.write_log().split_off(writes_before);
        match (gate, release) {
            (WriteGate::DryRun, _) => {
                prop_assert!(new_writes.is_empty(), "dry-run wrote: {new_writes:?}");
                prop_assert_eq!(iam.state(), state_before);
                prop_assert!(report.writes.iter().all(|w| !w.performed));
            }
            (WriteGate::KillSwitch, false) => {
                prop_assert!(new_writes.is_empty(), "kill switch enforced: {new_writes:?}");
            }
            (_, true) => {
                prop_assert!(
                    new_writes.iter().all(|w| is_boundary_release_op(w.operation)),
                    "{new_writes:?}"
                );
                let state = iam.state();
                for (c, (kind, arn)) in cases.iter().zip(&all) {
                    let now = state.boundary(&pref(*kind, arn));
                    let before = c.had_boundary.then(|| team.clone());
                    if c.was_active && c.drift && c.had_boundary {
                        // Someone removed ours while we held it: left as they set it.
                        prop_assert_eq!(now, None);
                    } else {
                        prop_assert_eq!(now, before, "{}", arn);
                    }
                }
                prop_assert!(report.is_clean(), "{:?}", report);
            }
            (WriteGate::Enforce, false) => {
                let state = iam.state();
                for (kind, arn) in &active {
                    let now = state.boundary(&pref(*kind, arn));
                    prop_assert!(
                        now.as_deref().is_some_and(|b| b.contains("agr-boundary-")),
                        "{arn}: {now:?}"
                    );
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn the_boundary_action_never_writes_in_dry_run_and_only_releases_under_the_kill_switch(
        (cases, gate, release) in boundary_case()
    ) {
        check_boundary(cases, gate, release)?;
    }
}
