//! The engine's `Scope` over the in-memory IAM: `Only` (one quarantine's reconcile) reads and
//! changes only that quarantine's managed and inline policies, ignoring other desired
//! quarantines; `Except` (the orphan sweep) releases everything of ours but the excepted
//! quarantines, which it neither reads nor changes; `All` is the whole picture.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::BTreeSet;
use std::sync::Arc;

use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::aws::{Operation, PrincipalKind};
use autoguardrails::controller::enforce::converge::{
    ConvergeInput, ConvergeReport, Scope, WriteGate,
};
use autoguardrails::controller::enforce::ownership;
use autoguardrails::controller::enforce::plan::DesiredQuarantine;
use fixtures::*;

/// Two roles; q1 and q2 both hold a deny on `shared`, q1 also on `only-1`; q3 is an orphan
/// (holds `only-3`, not desired by anyone).
async fn world(inline: bool) -> (Arc<InMemoryIam>, Vec<(PrincipalKind, String)>) {
    let iam = Arc::new(InMemoryIam::new(ACCOUNT));
    if inline {
        iam.set_attached_policies_quota(PrincipalKind::Role, 0);
    }
    let roles: Vec<(PrincipalKind, String)> = iam.outside(|o| {
        ["shared", "only-1", "only-3"]
            .iter()
            .map(|n| (PrincipalKind::Role, o.create_role(n)))
            .collect()
    });
    let all = vec![
        quarantine("q1", &roles[0..2], false),
        quarantine("q2", &roles[0..1], false),
        quarantine("q3", &roles[2..3], false),
    ];
    let e = engine();
    let r = converge(&e, &iam, &input(all.clone(), &roles, WriteGate::Enforce))
        .await
        .expect("enforce all");
    assert!(r.is_converged(), "{r:?}");
    assert_exactly_enforced(&iam, CLUSTER, &all);
    (iam, roles)
}

fn scoped(
    desired: Vec<DesiredQuarantine>,
    roles: &[(PrincipalKind, String)],
    scope: Scope,
) -> ConvergeInput {
    let mut i = input(desired, roles, WriteGate::Enforce);
    i.scope = scope;
    i
}

fn policy_arn(name: &str) -> String {
    ownership::managed_policy_arn(
        "aws",
        ACCOUNT,
        &ownership::managed_policy_name(CLUSTER, &key(name), ACCOUNT),
    )
}

fn touched(report: &ConvergeReport) -> Vec<String> {
    report.writes.iter().map(|w| w.arguments.clone()).collect()
}

fn only(names: &[&str]) -> Scope {
    Scope::Only(names.iter().map(|n| key(n)).collect())
}

fn except(names: &[&str]) -> Scope {
    Scope::Except(names.iter().map(|n| key(n)).collect::<BTreeSet<_>>())
}

#[test]
fn includes_follows_the_variant() {
    assert!(Scope::All.includes(&key("a")));
    assert!(Scope::only(key("a")).includes(&key("a")));
    assert!(!Scope::only(key("a")).includes(&key("b")));
    assert!(!except(&["a"]).includes(&key("a")));
    assert!(except(&["a"]).includes(&key("b")));
    // Same name, another incarnation (uid): a different quarantine.
    let mut other = key("a");
    other.uid = "uid-other".into();
    assert!(!Scope::only(key("a")).includes(&other));
}

async fn only_releases_just_its_own(inline: bool) {
    let (iam, roles) = world(inline).await;
    let e = engine();
    // q1's reconcile releases q1 (desired empty); q2's and q3's objects are out of scope.
    let r = converge(&e, &iam, &scoped(Vec::new(), &roles, only(&["q1"])))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_exactly_enforced(
        &iam,
        CLUSTER,
        &[
            quarantine("q2", &roles[0..1], true),
            quarantine("q3", &roles[2..3], true),
        ],
    );
    for w in touched(&r) {
        assert!(
            !w.contains(&policy_arn("q2")) && !w.contains(&policy_arn("q3")),
            "wrote outside the scope: {w}"
        );
    }
    // The other quarantines' policies were not even read (no tag read of them).
    let tag_reads = r
        .calls
        .by_operation
        .get(&Operation::ListPolicyTags)
        .copied()
        .unwrap_or(0);
    assert!(tag_reads <= 1, "only q1's policy is read: {tag_reads}");
}

#[tokio::test]
async fn only_releases_just_its_own_managed() {
    only_releases_just_its_own(false).await;
}

#[tokio::test]
async fn only_releases_just_its_own_inline() {
    only_releases_just_its_own(true).await;
}

#[tokio::test]
async fn only_ignores_desired_quarantines_outside_it() {
    let iam = Arc::new(InMemoryIam::new(ACCOUNT));
    let roles: Vec<(PrincipalKind, String)> =
        iam.outside(|o| vec![(PrincipalKind::Role, o.create_role("shared"))]);
    let e = engine();
    let desired = vec![
        quarantine("q1", &roles, false),
        quarantine("q2", &roles, false),
    ];
    let r = converge(&e, &iam, &scoped(desired, &roles, only(&["q1"])))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:?}");
    let ours = our_policies(&iam, CLUSTER);
    assert_eq!(ours, [policy_arn("q1")], "q2 is not created by q1's run");
    assert!(
        r.targets.iter().all(|t| t.key == Some(key("q1"))),
        "{:?}",
        r.targets
    );
}

async fn except_sweeps_everything_else(inline: bool) {
    let (iam, roles) = world(inline).await;
    let e = engine();
    // The sweep: q1 and q2 are live (their reconciles own them); q3 is an orphan.
    let r = converge(&e, &iam, &scoped(Vec::new(), &roles, except(&["q1", "q2"])))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_exactly_enforced(
        &iam,
        CLUSTER,
        &[
            quarantine("q1", &roles[0..2], true),
            quarantine("q2", &roles[0..1], true),
        ],
    );
    for w in touched(&r) {
        assert!(
            !w.contains(&policy_arn("q1")) && !w.contains(&policy_arn("q2")),
            "the sweep touched a live quarantine: {w}"
        );
    }
    assert!(!r.writes.is_empty(), "q3 was released");
    // Excepting everything leaves nothing to do.
    let r = converge(
        &e,
        &iam,
        &scoped(Vec::new(), &roles, except(&["q1", "q2", "q3"])),
    )
    .await
    .unwrap();
    assert!(r.writes.is_empty(), "{:?}", r.writes);
}

#[tokio::test]
async fn except_sweeps_everything_else_managed() {
    except_sweeps_everything_else(false).await;
}

#[tokio::test]
async fn except_sweeps_everything_else_inline() {
    except_sweeps_everything_else(true).await;
}

#[tokio::test]
async fn all_with_nothing_desired_releases_everything() {
    let (iam, roles) = world(false).await;
    let e = engine();
    let r = converge(&e, &iam, &scoped(Vec::new(), &roles, Scope::All))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(our_policies(&iam, CLUSTER).is_empty());
    assert!(our_inline(&iam).is_empty());
}
