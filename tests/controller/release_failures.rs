//! Issue 18: the failure paths of release, through the real controllers on the API emulator with
//! the in-memory IAM. A Quarantine must never reach `Released` (or lose its finalizer) while a
//! deny we created is still attached: unreadable principals, IAM read lag after our own writes,
//! a deletion before the first status write, a changed cluster id, a group attachment, a target
//! written in other case, a deny on a protected principal; plus signals that must not be lost.

use crate::support::controller as harness;
use crate::support::invariants;

use std::time::Duration;

use autoguardrails::aws::memory::Lag;
use autoguardrails::aws::{ErrorCode, Operation, PrincipalKind};
use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::intake::{IntakeError, SignalIntake};
use autoguardrails::controller::lifecycle::RELEASE_ANNOTATION;
use autoguardrails::controller::reconcile::quarantine::REASON_DETACHED_FROM_GROUP;
use harness::{Harness, anomaly, policy_yaml, role_ref, test_settings};
use invariants::{assert_iam_clean, ours, wait_enforced, wait_until};
use kube::ResourceExt;

const LIMIT: Duration = Duration::from_secs(60);

/// Creates an Auto policy over `roles`, submits one signal and returns the Quarantine's name.
async fn activate(h: &Harness, policy: &str, roles: &[&str], signal: &str) -> String {
    h.apply_policy(&policy_yaml(policy, "Auto", "1h", roles))
        .await;
    let report = h.submit(&anomaly(signal, harness::ACCOUNT, 500.0)).await;
    report
        .created()
        .next()
        .and_then(|o| o.quarantine.clone())
        .expect("a quarantine was created")
}

/// True while the phase is anything but Released, checked for `period` (a deny that must stay
/// in place until it can be released may never be reported Released meanwhile).
async fn never_released_for(h: &Harness, name: &str, period: Duration) -> Option<Phase> {
    let deadline = tokio::time::Instant::now() + period;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = h.phase(name).await;
        if last == Some(Phase::Released) || h.quarantine(name).await.is_none() {
            return Some(Phase::Released);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Defect 1: an inline fallback deny on a principal whose reads fail (AccessDenied on
/// GetRolePolicy) keeps the Quarantine `Releasing` until the principal can be read; then the
/// inline deny is removed and the Quarantine is `Released`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_principal_keeps_the_quarantine_releasing() {
    let mut h = Harness::start().await;
    h.iam.set_attached_policies_quota(PrincipalKind::Role, 0);
    let name = activate(&h, "p-unread", &["dev-ci"], "u-1").await;
    assert!(
        wait_until(LIMIT, || async {
            h.iam.state().inline(&role_ref("dev-ci")).len() == 1
                && h.phase(&name).await == Some(Phase::Active)
        })
        .await,
        "the inline fallback deny is in place"
    );
    // A restart forgets the engine's own writes (as after a crash): only reads can tell.
    h.restart(None).await;
    h.iam.deny(Operation::GetRolePolicy);
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    let phase = never_released_for(&h, &name, Duration::from_secs(6)).await;
    assert_ne!(
        phase,
        Some(Phase::Released),
        "released while dev-ci could not be read and still holds {:?}",
        h.iam.state().inline(&role_ref("dev-ci"))
    );
    assert_eq!(h.iam.state().inline(&role_ref("dev-ci")).len(), 1);
    h.iam.allow(Operation::GetRolePolicy);
    h.wait_phase(&name, Phase::Released).await;
    assert_iam_clean(&h, "after the principal became readable");
}

/// Defect 1 (second half): a release within IAM's read-after-write lag of our own attach sees
/// nothing in its reads; the engine's record of its own writes removes the deny anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_within_read_lag_removes_our_own_writes() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("p-lag", "Auto", "1h", &["dev-ci"]))
        .await;
    // Reads do not see any write made fewer than 100 000 calls before: for this test, never.
    h.iam.set_lag(Some(Lag::Calls(100_000)));
    let report = h.submit(&anomaly("l-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    assert!(
        wait_until(LIMIT, || async { h.attached("dev-ci").len() == 1 }).await,
        "the deny is attached (authoritative state)"
    );
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert!(
        h.attached("dev-ci").is_empty(),
        "Released while our own attachment is still in place: {:?}",
        h.attached("dev-ci")
    );
    assert_eq!(h.our_policy_count(), 0, "our policy is deleted");
    h.iam.set_lag(None);
    assert_iam_clean(&h, "after release under read lag");
}

/// Defect 2: Auto mode enforces before the first status write; when every status write fails and
/// the Quarantine is deleted, the finalizer stays until the deny the engine finds is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_before_the_first_status_write_is_released_before_the_finalizer_goes() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("p-nostatus", "Auto", "1h", &["dev-ci"]))
        .await;
    h.emulator
        .faults()
        .fail_next("patch", "quarantines/status", 100_000, 500);
    let report = h.submit(&anomaly("n-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    assert!(
        wait_until(LIMIT, || async { h.attached("dev-ci").len() == 1 }).await,
        "the first reconcile enforced before its status write failed"
    );
    assert_eq!(h.phase(&name).await, None, "no status was ever written");
    h.delete_quarantine(&name).await;
    assert!(
        wait_until(LIMIT, || async { h.quarantine(&name).await.is_none() }).await,
        "the deleted quarantine goes once released"
    );
    assert!(
        h.attached("dev-ci").is_empty(),
        "the finalizer went with the deny still attached: {:?}",
        h.attached("dev-ci")
    );
    assert_iam_clean(&h, "after deletion without status");
}

/// Defect 3: a Quarantine enforced under one cluster id is kept and released after the
/// controller restarts with another (its status records the id its objects carry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_cluster_id_does_not_strand_an_active_deny() {
    let mut h = Harness::start().await;
    let name = activate(&h, "p-cluster", &["dev-ci"], "c-1").await;
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    let mut renamed = test_settings();
    renamed.cluster_id = "renamed-cluster".into();
    h.restart(Some(renamed)).await;
    // Still enforced through a few full converges, with no second deny under the new id ...
    let converges = || {
        h.iam
            .calls()
            .iter()
            .filter(|o| **o == Operation::ListEntitiesForPolicy)
            .count()
    };
    let before = converges();
    assert!(
        wait_until(LIMIT, || async { converges() >= before + 3 }).await,
        "full converges ran"
    );
    assert_eq!(h.attached("dev-ci").len(), 1, "one deny, not a second one");
    assert_eq!(h.our_policy_count(), 1, "no policy under the new id");
    // ... and released completely.
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert_iam_clean(&h, "after release under a renamed cluster");
}

/// Defect 4: a target written in other case than IAM reports it (`role/Dev-CI` vs `dev-ci` from
/// ListEntitiesForPolicy) is not detached by the periodic full converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_in_other_case_is_never_detached_by_full_converge() {
    let h = Harness::start().await;
    let name = activate(&h, "p-case", &["Dev-CI"], "k-1").await;
    assert!(
        wait_until(LIMIT, || async {
            h.attached("dev-ci").len() == 1 && h.phase(&name).await == Some(Phase::Active)
        })
        .await,
        "enforced on dev-ci"
    );
    // Several full converges (every 2 s in the test settings).
    let converges_before = h
        .iam
        .calls()
        .iter()
        .filter(|o| **o == Operation::ListEntitiesForPolicy)
        .count();
    assert!(
        wait_until(LIMIT, || async {
            h.iam
                .calls()
                .iter()
                .filter(|o| **o == Operation::ListEntitiesForPolicy)
                .count()
                >= converges_before + 3
        })
        .await,
        "full converges ran"
    );
    let detaches: Vec<String> = h
        .iam
        .write_log()
        .iter()
        .filter(|w| w.operation == Operation::DetachRolePolicy)
        .map(|w| w.arguments.clone())
        .collect();
    assert!(detaches.is_empty(), "detached on converge: {detaches:?}");
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert_iam_clean(&h, "after release");
}

/// Defect 7: our policy attached to an IAM group (by someone else) is detached from the group on
/// release, the policy deleted, and an Event names the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_attachment_does_not_block_release() {
    let h = Harness::start().await;
    let name = activate(&h, "p-group", &["dev-ci"], "g-1").await;
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    let arn = ours(&h).policies.keys().next().cloned().unwrap();
    h.iam.outside(|o| {
        o.create_group("developers");
        o.attach_group("developers", &arn);
    });
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert!(h.iam.state().group_attached("developers").is_empty());
    assert_iam_clean(&h, "after release with a group attachment");
    // Events are published after the status write that says Released.
    h.eventually("an Event names the group", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.1 == REASON_DETACHED_FROM_GROUP && e.2.contains("developers"))
    })
    .await;
}

/// Defect 8 (first half): our deny attached by hand to a protected principal is never touched;
/// the release of the targets still finishes, with a Warning saying what was left in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_on_a_protected_principal_is_left_with_a_warning_and_release_finishes() {
    let mut settings = test_settings();
    settings.protected_principals =
        autoguardrails::principal::PrincipalSet::parse_all([harness::role("break-glass")]).unwrap();
    let h = Harness::start_with(settings).await;
    let name = activate(&h, "p-protected", &["dev-ci"], "pp-1").await;
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    let arn = ours(&h).policies.keys().next().cloned().unwrap();
    h.iam.outside(|o| o.attach(&role_ref("break-glass"), &arn));
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert!(h.attached("dev-ci").is_empty());
    assert_eq!(
        h.attached("break-glass"),
        vec![arn.clone()],
        "never touched"
    );
    h.eventually("a Warning says what was left in place", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.2.contains("left in place on protected principals"))
    })
    .await;
}

/// Defect 5: a root cause region the Quarantine schema refuses (`global`, `NoRegion`) is
/// normalised away and the Quarantine is created; an API refusal of one policy's Quarantine does
/// not hide another policy's retryable failure (the sender is asked to retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_is_never_acknowledged_and_dropped() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("p-a", "DryRun", "1h", &["dev-ci"]))
        .await;
    let mut created = Vec::new();
    for region in ["global", "NoRegion"] {
        let mut signal = anomaly(&format!("r-{region}"), harness::ACCOUNT, 500.0);
        signal.region = Some(region.to_string());
        match h.intake().submit(&signal).await {
            Ok(report) => {
                assert_eq!(report.created().count(), 1, "{report:?}");
                created.extend(report.created().filter_map(|o| o.quarantine.clone()));
            }
            Err(e) => panic!("signal with region {region} refused: {e}"),
        }
    }
    // The faults below are for intake's writes: let the controller finish its own patches of
    // these two first (finalizer, status), so none of them takes a fault meant for intake.
    for name in &created {
        h.wait_phase(name, Phase::DryRun).await;
    }
    h.apply_policy(&policy_yaml("p-b", "DryRun", "1h", &["batch"]))
        .await;
    let faults = h.emulator.faults();
    faults.fail_next("patch", "quarantines", 1, 422);
    faults.fail_next("patch", "quarantines", 1, 500);
    let result = h
        .intake()
        .submit(&anomaly("r-two", harness::ACCOUNT, 500.0))
        .await;
    assert!(
        matches!(
            result,
            Err(IntakeError::Transient(_) | IntakeError::Unavailable(_))
        ),
        "the sender must be asked to retry: {result:?}"
    );
    // The retry completes both.
    let report = h
        .intake()
        .submit(&anomaly("r-two", harness::ACCOUNT, 500.0))
        .await
        .unwrap();
    assert_eq!(
        report
            .outcomes
            .iter()
            .filter(|o| o.quarantine.is_some())
            .count(),
        2,
        "{report:?}"
    );
}

/// Also checked: two different signals for the same targets within one cache round-trip make one
/// Quarantine (the second finds the first's targets held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_signals_within_one_cache_round_trip_make_one_quarantine() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("p-twice", "Auto", "1h", &["dev-ci"]))
        .await;
    // Slow the API so the cache cannot catch up between the two submissions.
    h.emulator.faults().set_latency(Duration::from_millis(150));
    let intake = h.intake();
    let (first, second) = (
        anomaly("t-1", harness::ACCOUNT, 500.0),
        anomaly("t-2", harness::ACCOUNT, 500.0),
    );
    let (a, b) = tokio::join!(intake.submit(&first), intake.submit(&second));
    h.emulator.faults().set_latency(Duration::ZERO);
    let created = a.unwrap().created().count() + b.unwrap().created().count();
    assert_eq!(created, 1, "one Quarantine for one set of targets");
    let list = h.quarantines().list(&Default::default()).await.unwrap();
    assert_eq!(
        list.items.len(),
        1,
        "{:?}",
        list.items.iter().map(|q| q.name_any()).collect::<Vec<_>>()
    );
}

/// Property (issue 18): for a random sequence of injected IAM faults (read failures, throttling,
/// denied reads and writes, lag) and controller restarts around a release, once the Quarantine
/// is Released or gone, nothing we created remains attached anywhere (a sweep included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_nothing_of_ours_survives_release_under_faults_and_restarts() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    #[derive(Clone, Debug)]
    enum Fault {
        FailNext(Operation, ErrorCode),
        Deny(Operation),
        Lag,
        Restart,
        Delete,
        Group,
    }
    let reads = prop_oneof![
        Just(Operation::ListAttachedRolePolicies),
        Just(Operation::ListRolePolicies),
        Just(Operation::GetRolePolicy),
        Just(Operation::ListPolicies),
        Just(Operation::ListEntitiesForPolicy),
        Just(Operation::ListPolicyTags),
        Just(Operation::DetachRolePolicy),
        Just(Operation::DeleteRolePolicy),
        Just(Operation::DeletePolicy),
    ];
    let codes = prop_oneof![
        Just(ErrorCode::Throttling),
        Just(ErrorCode::ServiceFailure),
        Just(ErrorCode::AccessDenied),
    ];
    let fault = prop_oneof![
        (reads.clone(), codes).prop_map(|(o, c)| Fault::FailNext(o, c)),
        reads.prop_map(Fault::Deny),
        Just(Fault::Lag),
        Just(Fault::Restart),
        Just(Fault::Delete),
        Just(Fault::Group),
    ];
    let strategy = (
        proptest::collection::vec(fault, 1..5),
        any::<bool>(),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 4,
        failure_persistence: None,
        ..Config::default()
    });
    let mut cases = Vec::new();
    for _ in 0..4 {
        cases.push(strategy.new_tree(&mut runner).expect("strategy").current());
    }
    for (case, (faults, inline, two_roles)) in cases.into_iter().enumerate() {
        eprintln!("case {case}: faults {faults:?}, inline {inline}, two roles {two_roles}");
        let mut h = Harness::start().await;
        if inline {
            h.iam.set_attached_policies_quota(PrincipalKind::Role, 0);
        }
        let roles: &[&str] = if two_roles {
            &["dev-ci", "batch"]
        } else {
            &["dev-ci"]
        };
        let name = activate(&h, "p-prop", roles, &format!("prop-{case}")).await;
        assert!(
            wait_until(LIMIT, || async {
                h.phase(&name).await == Some(Phase::Active)
                    && roles.iter().all(|r| {
                        h.attached(r).len() + h.iam.state().inline(&role_ref(r)).len() == 1
                    })
            })
            .await,
            "case {case}: enforced"
        );
        h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
        let mut denied = Vec::new();
        for f in &faults {
            match f {
                Fault::FailNext(op, code) => {
                    for _ in 0..3 {
                        h.iam.fail_next(*op, code.clone());
                    }
                }
                Fault::Deny(op) => {
                    h.iam.deny(*op);
                    denied.push(*op);
                }
                Fault::Lag => h.iam.set_lag(Some(Lag::Calls(40))),
                Fault::Restart => h.restart(None).await,
                Fault::Delete => {
                    let _ = h.quarantines().delete(&name, &Default::default()).await;
                }
                Fault::Group => {
                    if let Some(arn) = ours(&h).policies.keys().next().cloned() {
                        h.iam.outside(|o| {
                            o.create_group("g");
                            o.attach_group("g", &arn);
                        });
                    }
                }
            }
            // Whatever the controller concludes meanwhile must hold.
            assert_released_means_clean(&h, &name, case).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // While reads or writes are denied, it must not claim Released with a deny left.
        assert_released_means_clean(&h, &name, case).await;
        for op in denied {
            h.iam.allow(op);
        }
        h.iam.set_lag(None);
        assert!(
            wait_until(LIMIT, || async {
                h.quarantine(&name).await.is_none() || h.phase(&name).await == Some(Phase::Released)
            })
            .await,
            "case {case}: released or gone once the faults stopped"
        );
        assert_released_means_clean(&h, &name, case).await;
        autoguardrails::controller::reconcile::sweep::sweep_once(&h.running().shared).await;
        assert_iam_clean(&h, &format!("case {case}: after the sweep"));
        assert!(h.iam.state().group_attached("g").is_empty());
    }
}

/// If the Quarantine is Released or gone, nothing of ours is attached (groups included).
async fn assert_released_means_clean(h: &Harness, name: &str, case: usize) {
    let gone = h.quarantine(name).await.is_none();
    let released = h.phase(name).await == Some(Phase::Released);
    if gone || released {
        let o = ours(h);
        assert!(
            o.attached.is_empty() && o.inline.is_empty(),
            "case {case}: {name} is {} but holds: attached {:?}, inline {:?}",
            if gone { "gone" } else { "Released" },
            o.attached,
            o.inline
        );
        assert!(
            h.iam.state().group_attached("g").is_empty(),
            "case {case}: a group still holds our deny"
        );
    }
}

/// Defect 8 (second half): when restoring our edited managed policy fails, the policy (whose
/// document is now someone else's) is not attached to a target in the same run.
#[tokio::test]
async fn a_failed_restore_stops_the_attach_of_an_edited_policy() {
    use crate::support::fixtures;
    use autoguardrails::controller::enforce::converge::WriteGate;
    let iam = std::sync::Arc::new(autoguardrails::aws::memory::InMemoryIam::new(
        fixtures::ACCOUNT,
    ));
    let targets = iam.outside(|o| vec![(PrincipalKind::Role, o.create_role("dev-ci"))]);
    let e = fixtures::engine();
    let desired = vec![fixtures::quarantine("q1", &targets, false)];
    fixtures::converge(&e, &iam, &fixtures::input(desired, &[], WriteGate::Enforce))
        .await
        .unwrap();
    let arn = fixtures::our_policies(&iam, fixtures::CLUSTER)[0].clone();
    let dev_ci = fixtures::pref(PrincipalKind::Role, &targets[0].1);
    iam.outside(|o| {
        o.detach(&dev_ci, &arn);
        o.edit_policy(
            &arn,
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"X","Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        );
    });
    iam.fail_next(Operation::CreatePolicyVersion, ErrorCode::ServiceFailure);
    let writes_before = iam.write_count();
    let desired = vec![fixtures::quarantine("q1", &targets, true)];
    let r = fixtures::converge(&e, &iam, &fixtures::input(desired, &[], WriteGate::Enforce))
        .await
        .unwrap();
    let attaches: Vec<String> = iam.write_log()[writes_before..]
        .iter()
        .filter(|w| w.operation == Operation::AttachRolePolicy)
        .map(|w| w.arguments.clone())
        .collect();
    assert!(
        attaches.is_empty(),
        "attached a policy whose document is someone else's edit: {attaches:?}"
    );
    assert!(!r.is_converged() && !r.errors.is_empty(), "{r:#?}");
    // The next run restores the document, then attaches.
    let desired = vec![fixtures::quarantine("q1", &targets, true)];
    let r = fixtures::converge(
        &e,
        &iam,
        &fixtures::input(desired.clone(), &[], WriteGate::Enforce),
    )
    .await
    .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    fixtures::assert_exactly_enforced(&iam, fixtures::CLUSTER, &desired);
}

/// Also checked: a Quarantine's targets edited while Active are held to the owning policy's
/// scope and exceptions again (a principal outside the scope never gets the deny).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_edited_while_active_are_rechecked_against_the_policy() {
    let h = Harness::start().await;
    let name = activate(&h, "p-edit", &["dev-ci"], "e-1").await;
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    let body = serde_json::json!({"spec": {"targets": [
        {"kind": "IamRole", "arn": harness::role("dev-ci")},
        {"kind": "IamRole", "arn": harness::role("etl")},
    ]}});
    h.quarantines()
        .patch(&name, &Default::default(), &kube::api::Patch::Merge(&body))
        .await
        .unwrap();
    assert!(
        wait_until(LIMIT, || async {
            h.quarantine(&name).await.is_some_and(|q| {
                q.status.is_some_and(|s| {
                    s.targets.iter().any(|t| {
                        t.arn.ends_with("/etl")
                            && t.last_error.as_deref().is_some_and(|e| e.contains("scope"))
                    })
                })
            }) || !h.attached("etl").is_empty()
        })
        .await,
        "the edited target was looked at"
    );
    assert!(
        h.attached("etl").is_empty() && h.iam.state().inline(&role_ref("etl")).is_empty(),
        "a principal outside the policy's scope got the deny"
    );
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert_iam_clean(&h, "after release");
}
