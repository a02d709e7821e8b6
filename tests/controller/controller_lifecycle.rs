//! The controllers end to end against the Kubernetes API emulator and the in-memory IAM: every
//! mode's lifecycle, each annotation, TTL expiry, approval timeout, deletion, policy deletion,
//! drift repair, kill switch, protected principals, repeated and shared signals.

use crate::support::controller as harness;

use std::time::Duration;

use autoguardrails::controller::crd::{Phase, TargetState};
use autoguardrails::controller::intake::SignalIntake;
use autoguardrails::controller::lifecycle::{
    APPROVE_ANNOTATION, EXTEND_ANNOTATION, REJECT_ANNOTATION, RELEASE_ANNOTATION,
};
use autoguardrails::controller::policy;
use harness::{Harness, anomaly, policy_yaml, role, test_settings};
use kube::ResourceExt;

fn reasons(events: &[(String, String, String)]) -> Vec<String> {
    events.iter().map(|e| e.1.clone()).collect()
}

/// The policy's `status.activeQuarantines`.
async fn active_quarantines(h: &Harness, policy: &str) -> Option<i32> {
    h.policies()
        .get(policy)
        .await
        .ok()
        .and_then(|p| p.status)
        .map(|s| s.active_quarantines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_enforces_then_releases_at_ttl() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "3s", &["dev-ci", "batch"]))
        .await;
    let report = h.submit(&anomaly("a-1", harness::ACCOUNT, 500.0)).await;
    let created: Vec<_> = report.created().collect();
    assert_eq!(created.len(), 1, "{report:?}");
    let name = created[0].quarantine.clone().unwrap();

    let q = h.wait_phase(&name, Phase::Active).await;
    h.eventually("deny attached to both roles", || async {
        h.attached("dev-ci").len() == 1 && h.attached("batch").len() == 1
    })
    .await;
    let q = if q
        .status
        .as_ref()
        .unwrap()
        .targets
        .iter()
        .all(|t| t.state == TargetState::Attached)
    {
        q
    } else {
        h.eventually("status shows both attached", || async {
            h.quarantine(&name)
                .await
                .unwrap()
                .status
                .unwrap()
                .targets_summary
                .as_deref()
                == Some("2/2")
        })
        .await;
        h.quarantine(&name).await.unwrap()
    };
    let status = q.status.unwrap();
    assert!(status.activated_at.is_some() && status.expires_at.is_some());
    assert!(
        status
            .deny
            .as_ref()
            .unwrap()
            .document
            .contains("ec2:RunInstances")
    );
    assert!(
        q.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == autoguardrails::controller::reconcile::FINALIZER)
    );

    let q = h.wait_phase(&name, Phase::Released).await;
    assert!(h.attached("dev-ci").is_empty() && h.attached("batch").is_empty());
    let status = q.status.unwrap();
    assert_eq!(status.release_reason.as_deref(), Some("Expired"));
    let history: Vec<&str> = status.history.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(history, ["Activated", "TtlExpired", "Released"]);
    h.eventually("events published", || async {
        let r = reasons(&h.events(&name).await);
        ["Activated", "TtlExpired", "Released"]
            .iter()
            .all(|x| r.iter().any(|y| y == x))
    })
    .await;
    // No policy of ours is left in IAM.
    assert!(h.our_policy_count() == 0);
    assert!(h.metrics.release_lag.get_sample_count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_mode_waits_for_approval_then_release_annotation_ends_it() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("manual-ci", "Manual", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("m-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.wait_phase(&name, Phase::PendingApproval).await;
    assert!(q.status.unwrap().approval_deadline.is_some());
    assert!(h.attached("dev-ci").is_empty(), "nothing before approval");
    assert_eq!(h.iam.write_count(), 0);

    h.annotate(
        &name,
        APPROVE_ANNOTATION,
        "alice: looks like a runaway CI job",
    )
    .await;
    let q = h.wait_phase(&name, Phase::Active).await;
    let status = q.status.clone().unwrap();
    assert_eq!(status.approved_by.as_deref(), Some("alice (unverified)"));
    h.eventually("deny attached", || async {
        h.attached("dev-ci").len() == 1
    })
    .await;
    h.eventually("approve annotation cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(APPROVE_ANNOTATION)
    })
    .await;
    h.eventually("approval Event carries the note", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.1 == "Approved" && e.2.contains("runaway CI job") && e.2.contains("alice"))
    })
    .await;
    h.eventually("the policy counts one active quarantine", || async {
        active_quarantines(&h, "manual-ci").await == Some(1)
    })
    .await;

    h.annotate(&name, RELEASE_ANNOTATION, "bob: fixed the job")
        .await;
    let q = h.wait_phase(&name, Phase::Released).await;
    assert!(h.attached("dev-ci").is_empty());
    assert_eq!(
        q.status.unwrap().release_reason.as_deref(),
        Some("ReleaseRequested")
    );
    h.eventually("release annotation cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(RELEASE_ANNOTATION)
    })
    .await;
    h.eventually("the policy counts no active quarantine", || async {
        active_quarantines(&h, "manual-ci").await == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_approval_timeout_never_write_to_iam() {
    let h = Harness::start().await;
    let mut yaml = policy_yaml("manual-ci", "Manual", "1h", &["dev-ci"]);
    yaml = yaml.replace("approvalTimeout: 1h", "approvalTimeout: 2s");
    h.apply_policy(&yaml).await;
    let a = h.submit(&anomaly("r-1", harness::ACCOUNT, 500.0)).await;
    let first = a.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&first, Phase::PendingApproval).await;
    h.annotate(&first, REJECT_ANNOTATION, "carol: expected spend")
        .await;
    let q = h.wait_phase(&first, Phase::Rejected).await;
    assert_eq!(
        q.status.unwrap().rejected_by.as_deref(),
        Some("carol (unverified)")
    );
    // Intake decides from the cache: wait until it has seen the rejection (else the target is
    // still held and the second signal makes no quarantine).
    h.eventually("the cache sees the rejection", || async {
        let stores = &h.running().stores;
        let live = stores
            .quarantines()
            .into_iter()
            .find(|q| q.name_any() == first)
            .map(|q| (*q).clone());
        live.or_else(|| stores.ended().get(harness::NS, &first))
            .and_then(|q| q.status.and_then(|s| s.phase))
            == Some(Phase::Rejected)
    })
    .await;

    // A second incident is never approved: it expires.
    let b = h.submit(&anomaly("r-2", harness::ACCOUNT, 900.0)).await;
    let second = b.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.wait_phase(&second, Phase::Expired).await;
    let history: Vec<String> = q
        .status
        .unwrap()
        .history
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert!(
        history.contains(&"ApprovalTimedOut".to_string()),
        "{history:?}"
    );
    assert_eq!(
        h.iam.write_count(),
        0,
        "no IAM write for rejected or expired quarantines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_the_plan_and_expires_with_zero_iam_writes() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("dry-ci", "DryRun", "2s", &["dev-ci", "batch"]))
        .await;
    let report = h.submit(&anomaly("d-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.wait_phase(&name, Phase::DryRun).await;
    let status = q.status.unwrap();
    assert!(
        status
            .deny
            .unwrap()
            .document
            .contains("ec2:CreateNatGateway")
    );
    assert!(
        status
            .targets
            .iter()
            .all(|t| t.state == TargetState::Planned)
    );
    // Approving a dry-run is ignored and recorded.
    h.annotate(&name, APPROVE_ANNOTATION, "dave: try").await;
    h.wait_phase(&name, Phase::Expired).await;
    let history: Vec<String> = h
        .quarantine(&name)
        .await
        .unwrap()
        .status
        .unwrap()
        .history
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert!(
        history.contains(&"AnnotationIgnored".to_string()),
        "{history:?}"
    );
    assert_eq!(h.iam.write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_moves_expiry_and_invalid_extend_is_reported() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("e-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.wait_phase(&name, Phase::Active).await;
    let before = q.status.unwrap().expires_at.unwrap().0;
    h.annotate(&name, EXTEND_ANNOTATION, "erin: 3h").await;
    h.eventually("expiresAt moved", || async {
        h.quarantine(&name)
            .await
            .unwrap()
            .status
            .unwrap()
            .expires_at
            .unwrap()
            .0
            > before
    })
    .await;
    h.annotate(&name, EXTEND_ANNOTATION, "erin: forever").await;
    h.eventually("invalid extend reported", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "InvalidAnnotation")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_signal_is_a_no_op_and_two_policies_each_get_one() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("first", "Manual", "1h", &["dev-ci"]))
        .await;
    h.apply_policy(&policy_yaml("second", "DryRun", "1h", &["batch"]))
        .await;
    let signal = anomaly("dup-1", harness::ACCOUNT, 500.0);
    let a = h.submit(&signal).await;
    assert_eq!(a.created().count(), 2, "{a:?}");
    for o in a.created() {
        assert!(
            h.quarantine(o.quarantine.as_deref().unwrap())
                .await
                .is_some(),
            "exists when submit returns"
        );
    }
    let b = h.submit(&signal).await;
    assert_eq!(b.created().count(), 0, "{b:?}");
    assert!(
        b.outcomes
            .iter()
            .all(|o| o.reason == policy::ALREADY_QUARANTINED),
        "{b:?}"
    );
    let list = h.quarantines().list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    // The policy records the last signal.
    h.eventually("lastSignal recorded", || async {
        h.policies()
            .get("first")
            .await
            .unwrap()
            .status
            .and_then(|s| s.last_signal)
            .is_some_and(|l| l.id == "dup-1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_signal_records_the_newest_signal_a_policy_watches_and_only_those() {
    let h = Harness::start().await;
    // "every-service" watches every service of the account; "sagemaker" only SageMaker.
    h.apply_policy(&policy_yaml("every-service", "DryRun", "1h", &["dev-ci"]))
        .await;
    h.apply_policy(
        &policy_yaml("sagemaker", "DryRun", "1h", &["batch"]).replace(
            "minImpactUsd: 100",
            "minImpactUsd: 100\n    services: [\"Amazon SageMaker\"]",
        ),
    )
    .await;
    let last_signal = |name: &'static str| {
        let api = h.policies();
        async move {
            api.get(name)
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.last_signal)
        }
    };

    // A burst of EC2 signals, then one more: every intake returns with its Quarantine, and the
    // policy ends up recording the newest one.
    let intake = h.intake();
    let submits = (0..20).map(|i| {
        let intake = intake.clone();
        async move {
            intake
                .submit(&anomaly(&format!("burst-{i}"), harness::ACCOUNT, 500.0))
                .await
        }
    });
    for report in futures::future::join_all(submits).await {
        let report = report.expect("intake");
        assert_eq!(report.created().count(), 1, "{report:?}");
    }
    // The same intake, as in the controller (one per process): its recorder writes in order.
    intake
        .submit(&anomaly("newest", harness::ACCOUNT, 500.0))
        .await
        .expect("intake");
    h.eventually(
        "the newest EC2 signal is every-service's lastSignal",
        || async {
            last_signal("every-service")
                .await
                .is_some_and(|l| l.id == "newest" && l.reason == policy::MATCHED)
        },
    )
    .await;
    // EC2 signals are not what "sagemaker" watches: its status was never written.
    assert_eq!(last_signal("sagemaker").await, None);

    // A SageMaker signal below the minimum impact concerns both policies.
    let mut small = anomaly("small-sagemaker", harness::ACCOUNT, 50.0);
    small.service = Some("Amazon SageMaker".into());
    let report = intake.submit(&small).await.expect("intake");
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.reason == policy::BELOW_MINIMUM_IMPACT),
        "{report:?}"
    );
    for name in ["every-service", "sagemaker"] {
        h.eventually("lastSignal says BelowMinimumImpact", || async {
            last_signal(name).await.is_some_and(|l| {
                l.id == "small-sagemaker" && l.reason == policy::BELOW_MINIMUM_IMPACT
            })
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_active_quarantine_releases_first() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("del-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("attached", || async { h.attached("dev-ci").len() == 1 })
        .await;
    h.delete_quarantine(&name).await;
    h.eventually("object gone", || async {
        h.quarantine(&name).await.is_none()
    })
    .await;
    assert!(h.attached("dev-ci").is_empty());
    assert!(h.our_policy_count() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_policy_releases_its_quarantines() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("pd-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("attached", || async { h.attached("dev-ci").len() == 1 })
        .await;
    h.policies()
        .delete("auto-ci", &Default::default())
        .await
        .unwrap();
    h.eventually("quarantine released and gone", || async {
        h.quarantine(&name).await.is_none()
    })
    .await;
    assert!(h.attached("dev-ci").is_empty());
    assert!(h.our_policy_count() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_with_a_warning_event() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("dr-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("attached", || async { h.attached("dev-ci").len() == 1 })
        .await;
    // Wait past the engine's settle window is not needed for an outside detach of a confirmed attachment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arn = h.attached("dev-ci")[0].clone();
    h.iam
        .outside(|o| o.detach(&harness::role_ref("dev-ci"), &arn));
    assert!(h.attached("dev-ci").is_empty());
    h.eventually("re-attached", || async { h.attached("dev-ci").len() == 1 })
        .await;
    h.eventually("DriftRepaired recorded", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "DriftRepaired")
    })
    .await;
    assert!(h.metrics.drift_repairs.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_switch_turns_auto_into_dry_run() {
    let mut settings = test_settings();
    settings.kill_switch = true;
    let h = Harness::start_with(settings).await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("k-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.wait_phase(&name, Phase::DryRun).await;
    assert_eq!(q.spec.mode, autoguardrails::controller::crd::Mode::DryRun);
    assert_eq!(h.iam.write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_principals_make_the_policy_not_ready_and_are_never_targeted() {
    let mut settings = test_settings();
    settings.protected_principals =
        autoguardrails::principal::PrincipalSet::parse_all([role("break-glass")]).unwrap();
    let h = Harness::start_with(settings).await;
    h.apply_policy(&policy_yaml(
        "mixed",
        "Auto",
        "1h",
        &["dev-ci", "break-glass"],
    ))
    .await;
    h.eventually("Ready=False ProtectedTarget", || async {
        h.policies()
            .get("mixed")
            .await
            .unwrap()
            .status
            .is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready" && c.status == "False" && c.reason == "ProtectedTarget"
                })
            })
    })
    .await;
    let report = h.submit(&anomaly("p-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.quarantine(&name).await.unwrap();
    assert_eq!(q.spec.targets.len(), 1);
    assert_eq!(q.spec.targets[0].arn, role("dev-ci"));
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("attached", || async { h.attached("dev-ci").len() == 1 })
        .await;
    assert!(h.attached("break-glass").is_empty());
}
