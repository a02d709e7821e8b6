//! Converge scenarios over the in-memory IAM: activate, drift repair, quota fallback, release,
//! ownership boundaries, protected principals, eventual consistency and steady-state cost.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::aws::memory::{InMemoryIam, Lag};
use autoguardrails::aws::{ErrorCategory, ErrorCode, Iam, Operation, PrincipalKind, Tag};
use autoguardrails::controller::enforce::converge::{
    DriftKind, Scope, StepOutcome, TargetState, Verified, WriteGate,
};
use autoguardrails::controller::enforce::ownership::{self, POLICY_PATH};
use autoguardrails::controller::enforce::plan::{Attachment, AttachmentKind, DesiredTarget};
use fixtures::*;

fn setup() -> (Arc<InMemoryIam>, Vec<(PrincipalKind, String)>) {
    let iam = Arc::new(InMemoryIam::new(ACCOUNT));
    let targets = iam.outside(|o| {
        vec![
            (PrincipalKind::Role, o.create_role("dev-ci")),
            (PrincipalKind::User, o.create_user("batch")),
        ]
    });
    (iam, targets)
}

#[tokio::test]
async fn activate_attaches_managed_policy_and_second_run_is_write_free() {
    let (iam, targets) = setup();
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    assert_exactly_enforced(&iam, CLUSTER, &desired);
    assert!(
        r.targets
            .iter()
            .all(|t| t.attachment.as_ref().unwrap().kind == AttachmentKind::Managed)
    );
    let policy = our_policies(&iam, CLUSTER);
    assert_eq!(policy.len(), 1);
    let pol = iam.state().policies.values().next().unwrap().clone();
    assert_eq!(pol.path, POLICY_PATH);
    assert!(
        pol.tags
            .iter()
            .any(|t| t.key == ownership::TAG_UID && t.value == "uid-q1")
    );

    let writes_before = iam.write_count();
    let r2 = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r2.is_converged());
    assert_eq!(
        iam.write_count(),
        writes_before,
        "steady state must not write"
    );
    assert!(r2.targets.iter().all(|t| t.confirmed));
    println!(
        "full converge, 1 quarantine x 2 targets, steady state: {} reads, {} writes: {:?}",
        r2.calls.reads, r2.calls.writes, r2.calls.by_operation
    );
    assert_eq!(r2.calls.writes, 0);
    assert!(r2.drift_repairs.is_empty());
}

#[tokio::test]
async fn outside_detach_and_document_edit_are_repaired() {
    let (iam, targets) = setup();
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    let arn = our_policies(&iam, CLUSTER)[0].clone();
    // Someone detaches it from the role and edits the document 4 times (5 versions: the limit).
    iam.outside(|o| {
        o.detach(&pref(PrincipalKind::Role, &targets[0].1), &arn);
        for i in 0..4 {
            o.edit_policy(&arn, &format!(r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"X{i}","Effect":"Allow","Action":"*","Resource":"*"}}]}}"#));
        }
    });
    let desired = vec![quarantine("q1", &targets, true)];
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    assert_exactly_enforced(&iam, CLUSTER, &desired);
    let kinds: Vec<DriftKind> = r.drift_repairs.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&DriftKind::AttachmentRemoved));
    assert!(kinds.contains(&DriftKind::DocumentEdited));
    let pol = iam.state().policies.values().next().unwrap().clone();
    assert_eq!(
        pol.versions.len(),
        1,
        "edited versions are pruned: {:?}",
        pol.versions
    );
}

#[tokio::test]
async fn full_quota_falls_back_to_inline_and_release_removes_it() {
    for known_quota in [true, false] {
        let (iam, targets) = setup();
        iam.set_attached_policies_quota(PrincipalKind::Role, 0);
        iam.set_attached_policies_quota(PrincipalKind::User, 0);
        if !known_quota {
            iam.deny(Operation::GetAccountSummary);
        }
        let e = engine();
        let desired = vec![quarantine("q1", &targets, false)];
        let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
            .await
            .unwrap();
        assert!(r.is_converged(), "{r:#?}");
        assert!(
            r.targets
                .iter()
                .all(|t| t.attachment.as_ref().unwrap().kind == AttachmentKind::Inline)
        );
        if !known_quota {
            assert!(
                r.steps
                    .iter()
                    .any(|s| s.outcome == StepOutcome::FellBackToInline)
            );
        }
        assert_exactly_enforced(&iam, CLUSTER, &desired);
        // Inline drift: someone deletes it from the user.
        let inline = ownership::inline_policy_name(CLUSTER, &key("q1"), ACCOUNT);
        iam.outside(|o| o.delete_inline(&pref(PrincipalKind::User, &targets[1].1), &inline));
        let desired = vec![quarantine("q1", &targets, true)];
        let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
            .await
            .unwrap();
        assert!(r.is_converged(), "{r:#?}");
        assert_exactly_enforced(&iam, CLUSTER, &desired);
        assert_eq!(r.drift_repairs.len(), 1);
        // Release: nothing desired, targets known from status.
        let r = converge(&e, &iam, &input(vec![], &targets, WriteGate::Enforce))
            .await
            .unwrap();
        assert!(r.errors.is_empty(), "{r:#?}");
        assert!(our_inline(&iam).is_empty());
        assert!(our_policies(&iam, CLUSTER).is_empty());
        assert_eq!(
            r.targets
                .iter()
                .filter(|t| t.state == TargetState::Detached)
                .count(),
            2
        );
    }
}

#[tokio::test]
async fn release_detaches_everywhere_and_deletes_policy_with_versions() {
    let (iam, targets) = setup();
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    converge(&e, &iam, &input(desired, &[], WriteGate::Enforce))
        .await
        .unwrap();
    let arn = our_policies(&iam, CLUSTER)[0].clone();
    // Someone also attached it to another role and added a version; release still cleans up.
    let other = iam.outside(|o| {
        let r = o.create_role("other");
        o.attach(&pref(PrincipalKind::Role, &r), &arn);
        let doc = deny_document();
        o.edit_policy(&arn, &doc);
        r
    });
    let r = converge(&e, &iam, &input(vec![], &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{r:#?}");
    assert!(our_policies(&iam, CLUSTER).is_empty());
    for (kind, arn) in targets.iter().chain([(PrincipalKind::Role, other)].iter()) {
        assert!(iam.state().attached(&pref(*kind, arn)).is_empty());
    }
}

#[tokio::test]
async fn never_touches_foreign_lookalike_or_other_cluster_objects() {
    let (iam, targets) = setup();
    let role = pref(PrincipalKind::Role, &targets[0].1);
    let doc = deny_document();
    // Another cluster's genuine policy for a quarantine with the same namespace/name/uid.
    let other_key = key("q1");
    let other_name = ownership::managed_policy_name("cluster-b", &other_key, ACCOUNT);
    let other_tags: Vec<Tag> = ownership::ownership_tags("cluster-b", &other_key);
    let mut foreign = Vec::new();
    iam.outside(|o| {
        foreign.push(o.create_policy(&other_name, POLICY_PATH, &doc, &other_tags));
        // Look-alike: our prefix and our cluster tag, but a name the tags do not hash to.
        foreign.push(o.create_policy(
            "agr-0123456789abcdef",
            POLICY_PATH,
            &doc,
            &ownership::ownership_tags(CLUSTER, &key("zz")),
        ));
        // Our name pattern outside our path.
        foreign.push(o.create_policy(
            "agr-fedcba9876543210",
            "/",
            &doc,
            &ownership::ownership_tags(CLUSTER, &key("q1")),
        ));
        // Untagged policy under our path.
        foreign.push(o.create_policy("agr-untagged", POLICY_PATH, &doc, &[]));
        for a in &foreign {
            o.attach(&role, a);
        }
        // Inline look-alikes: reserved prefix without our marker; another cluster's marker.
        o.put_inline(&role, "autoguardrails-0000000000000000", &doc);
        o.put_inline(
            &role,
            "autoguardrails-1111111111111111",
            &ownership::mark_document("cluster-b", &doc).unwrap(),
        );
    });
    let before = iam.state();
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    converge(&e, &iam, &input(desired, &[], WriteGate::Enforce))
        .await
        .unwrap();
    let r = converge(&e, &iam, &input(vec![], &targets, WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{r:#?}");
    let after = iam.state();
    assert_eq!(
        before, after,
        "foreign objects must be untouched and ours gone"
    );
    for w in iam.write_log() {
        for f in &foreign {
            assert!(
                !w.arguments.contains(f.as_str()),
                "write touched foreign {f}: {w:?}"
            );
        }
        assert!(
            !w.arguments.contains("0000000000000000") && !w.arguments.contains("1111111111111111")
        );
    }
}

#[tokio::test]
async fn protected_principal_is_refused_before_any_call() {
    let (iam, targets) = setup();
    let protected_arn = targets[0].1.clone();
    let e = engine_with(CLUSTER, &[&protected_arn], Duration::ZERO);
    let desired = vec![quarantine("q1", &targets, false)];
    let r = converge(&e, &iam, &input(desired, &[], WriteGate::Enforce))
        .await
        .unwrap();
    let t = r.targets.iter().find(|t| t.arn == protected_arn).unwrap();
    assert_eq!(t.state, TargetState::Failed);
    assert_eq!(t.error_category, Some(ErrorCategory::Invalid));
    assert!(
        iam.state()
            .attached(&pref(PrincipalKind::Role, &protected_arn))
            .is_empty()
    );
    // No call at all named the protected role: the role is only addressed by attached/list calls.
    assert!(!iam.calls().contains(&Operation::ListAttachedRolePolicies));
    assert!(!iam.calls().contains(&Operation::AttachRolePolicy));
    // The user was still enforced.
    assert!(
        r.targets
            .iter()
            .any(|t| t.arn == targets[1].1 && t.state == TargetState::Attached)
    );
}

#[tokio::test]
async fn entity_already_exists_adopts_only_with_proof() {
    let (iam, targets) = setup();
    let doc = deny_document();
    let name = ownership::managed_policy_name(CLUSTER, &key("q1"), ACCOUNT);
    // Same name, no tags: someone else's. Must fail with Conflict and never be attached.
    iam.outside(|o| o.create_policy(&name, POLICY_PATH, &doc, &[]));
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(
        r.errors
            .iter()
            .any(|x| x.category == ErrorCategory::Conflict),
        "{r:#?}"
    );
    assert!(r.targets.iter().all(|t| t.state == TargetState::Failed));
    assert!(
        iam.state()
            .attached(&pref(PrincipalKind::Role, &targets[0].1))
            .is_empty()
    );
}

#[tokio::test]
async fn adoption_on_entity_already_exists() {
    // Drive the planner into CreatePolicy while the policy exists: hide it from ListPolicies.
    let (iam, targets) = setup();
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    // A lagging tag read (NoSuchEntity) hides our policy, so CreatePolicy answers EntityAlreadyExists.
    iam.fail_next(Operation::ListPolicyTags, ErrorCode::NoSuchEntity);
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(
        r.steps.iter().any(|s| s.outcome == StepOutcome::Adopted),
        "{r:#?}"
    );
    assert!(r.is_converged(), "{r:#?}");
    assert_exactly_enforced(&iam, CLUSTER, &desired);
}

#[tokio::test]
async fn lag_hides_our_writes_then_confirmation_reread_confirms() {
    let (iam, targets) = setup();
    iam.set_lag(Some(Lag::Calls(1_000_000)));
    let e = engine_with(CLUSTER, &[], Duration::from_secs(600));
    let desired = vec![quarantine("q1", &targets, false)];
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    assert!(r.targets.iter().all(|t| !t.confirmed));
    let writes = iam.write_count();
    // Immediately again: reads still show nothing; nothing is re-created, no drift is reported.
    let r = converge(
        &e,
        &iam,
        &input(
            vec![quarantine("q1", &targets, true)],
            &[],
            WriteGate::Enforce,
        ),
    )
    .await
    .unwrap();
    assert_eq!(iam.write_count(), writes, "{:#?}", iam.write_log());
    assert!(r.drift_repairs.is_empty());
    assert!(
        r.targets
            .iter()
            .all(|t| t.state == TargetState::Attached && !t.confirmed),
        "{r:#?}"
    );
    // Verification inside the settle window says AwaitingConfirmation, not Missing.
    let att = r.targets[0].attachment.clone().unwrap();
    let t = DesiredTarget {
        kind: targets[0].0,
        arn: targets[0].1.clone(),
        attached_before: true,
    };
    let v = e
        .verify_target(iam.as_ref(), &t, &att, &deny_document())
        .await
        .unwrap();
    assert_eq!(v.outcome, Verified::AwaitingConfirmation);
    // Once IAM catches up, the re-read confirms.
    iam.set_lag(None);
    let v = e
        .verify_target(iam.as_ref(), &t, &att, &deny_document())
        .await
        .unwrap();
    assert_eq!(v.outcome, Verified::Present);
    let r = converge(
        &e,
        &iam,
        &input(
            vec![quarantine("q1", &targets, true)],
            &[],
            WriteGate::Enforce,
        ),
    )
    .await
    .unwrap();
    assert!(r.targets.iter().all(|t| t.confirmed));
}

#[tokio::test]
async fn steady_state_verification_costs_one_read_and_no_write() {
    let (iam, targets) = setup();
    let e = engine();
    let desired = vec![quarantine("q1", &targets, false)];
    let r = converge(&e, &iam, &input(desired, &[], WriteGate::Enforce))
        .await
        .unwrap();
    for status in &r.targets {
        let kind = targets.iter().find(|(_, a)| *a == status.arn).unwrap().0;
        let t = DesiredTarget {
            kind,
            arn: status.arn.clone(),
            attached_before: true,
        };
        let att = status.attachment.clone().unwrap();
        let calls_before = iam.call_count();
        let v = e
            .verify_target(iam.as_ref(), &t, &att, &deny_document())
            .await
            .unwrap();
        assert_eq!(v.outcome, Verified::Present);
        assert_eq!(v.calls.reads, 1);
        assert_eq!(v.calls.writes + v.calls.suppressed_writes, 0);
        assert_eq!(iam.call_count() - calls_before, 1);
        println!(
            "steady-state verification of {} ({:?}): {} AWS call(s)",
            t.arn,
            att.kind,
            v.calls.sent()
        );
    }
    // Inline too.
    let inline = Attachment {
        kind: AttachmentKind::Inline,
        name: ownership::inline_policy_name(CLUSTER, &key("q2"), ACCOUNT),
    };
    let t = DesiredTarget {
        kind: PrincipalKind::Role,
        arn: targets[0].1.clone(),
        attached_before: true,
    };
    let v = e
        .verify_target(iam.as_ref(), &t, &inline, &deny_document())
        .await
        .unwrap();
    assert_eq!(v.outcome, Verified::Missing);
    assert_eq!(v.calls.sent(), 1);
    // After an outside detach the managed verification reports Missing.
    let arn = our_policies(&iam, CLUSTER)[0].clone();
    iam.outside(|o| o.detach(&pref(PrincipalKind::Role, &targets[0].1), &arn));
    let att = Attachment {
        kind: AttachmentKind::Managed,
        name: arn.rsplit('/').next().unwrap().to_string(),
    };
    let v = e
        .verify_target(iam.as_ref(), &t, &att, &deny_document())
        .await
        .unwrap();
    assert_eq!(v.outcome, Verified::Missing);
}

#[tokio::test]
async fn kill_switch_suppresses_enforcement_but_release_still_works() {
    let (iam, targets) = setup();
    let e = engine();
    // Q1 active before the kill switch.
    converge(
        &e,
        &iam,
        &input(
            vec![quarantine("q1", &targets, false)],
            &[],
            WriteGate::Enforce,
        ),
    )
    .await
    .unwrap();
    let w0 = iam.write_count();
    // Kill switch on: Q2 becomes desired (new enforcement), Q1 is released.
    let r = converge(
        &e,
        &iam,
        &input(
            vec![quarantine("q2", &targets, false)],
            &targets,
            WriteGate::KillSwitch,
        ),
    )
    .await
    .unwrap();
    let log = iam.write_log();
    let new_writes = &log[w0..];
    assert!(
        new_writes.iter().all(|w| matches!(
            w.operation,
            Operation::DetachRolePolicy
                | Operation::DetachUserPolicy
                | Operation::DeletePolicy
                | Operation::DeletePolicyVersion
        )),
        "{new_writes:#?}"
    );
    assert!(
        our_policies(&iam, CLUSTER).is_empty(),
        "q1 released, q2 not created"
    );
    assert!(
        r.targets
            .iter()
            .filter(|t| t.key.as_ref() == Some(&key("q2")))
            .all(|t| t.state == TargetState::Planned)
    );
    assert!(
        r.writes
            .iter()
            .any(|w| w.operation == Operation::CreatePolicy && !w.performed)
    );
}

#[tokio::test]
async fn inline_size_limit_reports_quota_failure() {
    let (iam, targets) = setup();
    iam.set_attached_policies_quota(PrincipalKind::User, 0);
    let user = pref(PrincipalKind::User, &targets[1].1);
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}]}}"#,
        "x".repeat(1900)
    );
    iam.outside(|o| o.put_inline(&user, "existing-big", &big));
    let e = engine();
    let r = converge(
        &e,
        &iam,
        &input(
            vec![quarantine("q1", &targets[1..], false)],
            &[],
            WriteGate::Enforce,
        ),
    )
    .await
    .unwrap();
    let t = &r.targets[0];
    assert_eq!(t.state, TargetState::Failed, "{r:#?}");
    assert_eq!(t.error_category, Some(ErrorCategory::Quota));
    assert!(
        t.last_error
            .as_ref()
            .unwrap()
            .contains("failed to put inline policy"),
        "{t:?}"
    );
}

#[tokio::test]
async fn missing_principal_and_access_denied_are_categorised() {
    let (iam, targets) = setup();
    let ghost = (PrincipalKind::Role, iam.arn("role/ghost"));
    iam.deny(Operation::AttachUserPolicy);
    let e = engine();
    let r = converge(
        &e,
        &iam,
        &input(
            vec![quarantine(
                "q1",
                &[targets[0].clone(), targets[1].clone(), ghost.clone()],
                false,
            )],
            &[],
            WriteGate::Enforce,
        ),
    )
    .await
    .unwrap();
    let by_arn = |a: &str| r.targets.iter().find(|t| t.arn == a).unwrap().clone();
    assert_eq!(
        by_arn(&ghost.1).error_category,
        Some(ErrorCategory::NotFound)
    );
    assert_eq!(
        by_arn(&targets[1].1).error_category,
        Some(ErrorCategory::AccessDenied)
    );
    assert_eq!(by_arn(&targets[0].1).state, TargetState::Attached);
    // Release still works after the failure.
    iam.allow(Operation::AttachUserPolicy);
    let r = converge(&e, &iam, &input(vec![], &targets, WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.errors.is_empty());
    assert!(our_policies(&iam, CLUSTER).is_empty());
    let _ = iam.get_account_summary().await.unwrap();
}

#[tokio::test]
async fn multi_account_one_policy_per_account_and_unknown_account_fails_alone() {
    use autoguardrails::aws::factory::StaticClients;
    use autoguardrails::controller::enforce::converge::ConvergeInput;
    let a = Arc::new(InMemoryIam::new(ACCOUNT));
    let b = Arc::new(InMemoryIam::new("222222222222"));
    let ra = a.outside(|o| o.create_role("dev-ci"));
    let rb = b.outside(|o| o.create_role("dev-ci"));
    let unknown = "arn:aws:iam::333333333333:role/dev-ci".to_string();
    let clients = StaticClients::new()
        .with(ACCOUNT, a.clone())
        .with("222222222222", b.clone());
    let e = engine();
    let q = quarantine(
        "q1",
        &[
            (PrincipalKind::Role, ra),
            (PrincipalKind::Role, rb),
            (PrincipalKind::Role, unknown.clone()),
        ],
        false,
    );
    let input = ConvergeInput {
        desired: vec![q],
        known_principals: vec![],
        accounts: vec![],
        gate: WriteGate::Enforce,
        scope: Scope::All,
    };
    let r = e.converge(&clients, &input).await.unwrap();
    let failed: Vec<_> = r
        .targets
        .iter()
        .filter(|t| t.state == TargetState::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{r:#?}");
    assert_eq!(failed[0].arn, unknown);
    assert_eq!(failed[0].error_category, Some(ErrorCategory::Invalid));
    assert_eq!(our_policies(&a, CLUSTER).len(), 1);
    assert_eq!(our_policies(&b, CLUSTER).len(), 1);
    assert_ne!(our_policies(&a, CLUSTER)[0], our_policies(&b, CLUSTER)[0]);
    // Release in both accounts (they are scanned because they are listed).
    let input = ConvergeInput {
        desired: vec![],
        known_principals: vec![],
        accounts: vec![ACCOUNT.into(), "222222222222".into()],
        gate: WriteGate::Enforce,
        scope: Scope::All,
    };
    let r = e.converge(&clients, &input).await.unwrap();
    assert!(r.errors.is_empty(), "{r:#?}");
    assert!(our_policies(&a, CLUSTER).is_empty() && our_policies(&b, CLUSTER).is_empty());
}

#[tokio::test]
async fn attach_right_after_create_that_iam_has_not_propagated_is_transient() {
    let (iam, targets) = setup();
    let e = engine_with(CLUSTER, &[], Duration::from_secs(600));
    // IAM answers NoSuchEntity for the policy we just created (propagation delay).
    iam.fail_next(Operation::AttachRolePolicy, ErrorCode::NoSuchEntity);
    let desired = vec![quarantine("q1", &targets[..1], false)];
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert_eq!(r.targets[0].state, TargetState::Failed);
    assert_eq!(
        r.targets[0].error_category,
        Some(ErrorCategory::Transient),
        "{r:#?}"
    );
    // The retry attaches without re-creating the policy.
    let r = converge(&e, &iam, &input(desired.clone(), &[], WriteGate::Enforce))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    assert_eq!(
        iam.write_log()
            .iter()
            .filter(|w| w.operation == Operation::CreatePolicy)
            .count(),
        1
    );
    assert_exactly_enforced(&iam, CLUSTER, &desired);
}
