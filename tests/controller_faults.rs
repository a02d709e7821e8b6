//! Faults from the Kubernetes API (409 conflicts, 500s, latency, closed watches, compaction → 410
//! Gone) and from IAM (throttling, AccessDenied, eventual consistency) under the real controllers:
//! every signal yields its Quarantine, every Quarantine reaches the right phase, nothing of ours is
//! left that no live Quarantine wants, and failures are visible (conditions, Warning Events,
//! `reconcile_errors_total{category}`).

#[path = "support/controller.rs"]
mod harness;
#[path = "support/invariants.rs"]
mod invariants;

use std::time::Duration;

use autoguardrails::aws::memory::Lag;
use autoguardrails::aws::{ErrorCode, Operation};
use autoguardrails::controller::crd::{Phase, Quarantine};
use autoguardrails::controller::intake::{IntakeError, IntakeReport, SignalIntake};
use autoguardrails::controller::lifecycle::{
    APPROVE_ANNOTATION, REASON_ACTIVATED, REASON_APPROVED, RELEASE_ANNOTATION,
};
use autoguardrails::controller::signal::CostSignal;
use harness::{Harness, anomaly, policy_yaml};
use invariants::{
    assert_iam_clean, assert_no_orphan, count, history, wait_enforced, wait_iam_quiet, wait_until,
};
use kube::ResourceExt;
use kube::api::PostParams;

const LIMIT: Duration = Duration::from_secs(30);

/// Submits like an HTTP endpoint's client would: a `Transient`/`Unavailable` answer is retried
/// (SNS redelivers), `Invalid` is a test failure.
async fn submit_retrying(h: &Harness, signal: &CostSignal) -> (IntakeReport, usize) {
    let intake = h.intake();
    let mut retries = 0;
    loop {
        match intake.submit(signal).await {
            Ok(report) => return (report, retries),
            Err(IntakeError::Transient(_) | IntakeError::Unavailable(_)) if retries < 50 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("intake failed for good: {e}"),
        }
    }
}

fn errors(h: &Harness, category: &str) -> u64 {
    h.metrics
        .reconcile_errors
        .with_label_values(&["quarantine", category])
        .get()
}

async fn quarantines_of(h: &Harness, signal: &str) -> Vec<Quarantine> {
    h.quarantines()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|q| q.spec.signal.as_ref().is_some_and(|s| s.id == signal))
        .collect()
}

/// Three policies (one role each) see every signal; conflicts and 500s hit every quarantine
/// write, the intake's included. Retried submissions create each Quarantine once and every one
/// ends Active with its deny, then Released with nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_server_errors_on_quarantine_writes() {
    let h = Harness::start().await;
    for (policy, role) in [("p-dev", "dev-ci"), ("p-batch", "batch"), ("p-etl", "etl")] {
        h.apply_policy(&policy_yaml(policy, "Auto", "1h", &[role]))
            .await;
    }
    let faults = h.emulator.faults();
    // The intake's existence check and server-side apply fail first ...
    faults.fail_next("get", "quarantines", 2, 500);
    faults.fail_next("patch", "quarantines", 2, 500);
    let (_, retries) = submit_retrying(&h, &anomaly("f-1", harness::ACCOUNT, 500.0)).await;
    assert!(
        retries >= 1,
        "the intake reported the failures as retryable"
    );
    // ... then the controller's finalizer and status writes.
    faults.fail_next("patch", "quarantines", 4, 409);
    faults.fail_next("patch", "quarantines", 4, 500);
    let (_, more) = submit_retrying(&h, &anomaly("f-2", harness::ACCOUNT, 500.0)).await;
    eprintln!("intake retries under faults: {}", retries + more);
    // f-1 makes one quarantine per policy; f-2 finds every role held (AlreadyEnforced).
    let first = quarantines_of(&h, "f-1").await;
    assert_eq!(first.len(), 3, "every policy's quarantine exists once");
    assert!(quarantines_of(&h, "f-2").await.is_empty());
    for q in &first {
        let role = q.spec.targets[0]
            .arn
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let q = wait_enforced(&h, &q.name_any(), &[role.as_str()], LIMIT).await;
        assert_eq!(count(&q, REASON_ACTIVATED), 1, "{:?}", history(&q));
    }
    assert_no_orphan(&h, "after write faults").await;
    assert!(
        wait_until(LIMIT, || async {
            errors(&h, "conflict") > 0 && errors(&h, "kubernetes") > 0
        })
        .await,
        "the controller met the 409s and 500s and counted them"
    );
    assert_no_orphan(&h, "after write faults").await;
    for q in &first {
        // The test's own write may meet a fault that is still armed: retry it like kubectl's user.
        let body =
            serde_json::json!({"metadata": {"annotations": {RELEASE_ANNOTATION: "ops: done"}}});
        let mut tries = 0;
        while let Err(e) = h
            .quarantines()
            .patch(
                &q.name_any(),
                &Default::default(),
                &kube::api::Patch::Merge(&body),
            )
            .await
        {
            tries += 1;
            assert!(tries < 20, "annotate kept failing: {e}");
        }
    }
    for q in &first {
        h.wait_phase(&q.name_any(), Phase::Released).await;
    }
    assert_iam_clean(&h, "after release");
}

/// The status write right after the attach fails (500): the retried reconcile finds the deny in
/// place and only writes status; nothing is attached or created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_write_failure_between_attach_and_status() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml(
        "manual-ci",
        "Manual",
        "1h",
        &["dev-ci", "batch"],
    ))
    .await;
    let (report, _) = submit_retrying(&h, &anomaly("s-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::PendingApproval).await;
    wait_iam_quiet(&h, Duration::from_millis(300)).await;
    // The next two patches of a quarantine are the controller's status write and its retry; the
    // approval itself is sent as an update (PUT), which the fault does not match.
    h.emulator
        .faults()
        .fail_next("patch", "quarantines", 2, 500);
    let mut q = h.quarantine(&name).await.unwrap();
    q.annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), "alice: yes".into());
    h.quarantines()
        .replace(&name, &PostParams::default(), &q)
        .await
        .expect("approve by update");
    let q = wait_enforced(&h, &name, &["dev-ci", "batch"], LIMIT).await;
    assert_eq!(count(&q, REASON_APPROVED), 1, "{:?}", history(&q));
    assert_eq!(count(&q, REASON_ACTIVATED), 1, "{:?}", history(&q));
    let log = h.iam.write_log();
    let ok = |op: Operation| {
        log.iter()
            .filter(|w| w.operation == op && w.error.is_none())
            .count()
    };
    assert_eq!(ok(Operation::CreatePolicy), 1, "{log:?}");
    assert_eq!(ok(Operation::AttachRolePolicy), 2, "{log:?}");
    assert!(errors(&h, "kubernetes") >= 1);
    assert_no_orphan(&h, "status write failure").await;
}

/// Latency on every request, watches closed and history compacted (watchers get 410 Gone and
/// relist) in the middle of a Manual lifecycle: approve and release are still seen and handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_closed_watches_and_compaction() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("manual-ci", "Manual", "1h", &["dev-ci"]))
        .await;
    let faults = h.emulator.faults();
    faults.set_latency(Duration::from_millis(20));
    let (report, _) = submit_retrying(&h, &anomaly("w-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::PendingApproval).await;

    // Writes land while no watch is open, then the history they would resume from is gone.
    faults.close_watches();
    h.annotate(&name, APPROVE_ANNOTATION, "alice: approve")
        .await;
    faults.compact();
    faults.close_watches();
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;

    faults.compact();
    faults.close_watches();
    h.annotate(&name, RELEASE_ANNOTATION, "alice: done").await;
    faults.close_watches();
    let q = h.wait_phase(&name, Phase::Released).await;
    assert_eq!(count(&q, REASON_APPROVED), 1, "{:?}", history(&q));
    assert_iam_clean(&h, "after watch faults");
    let gone = h
        .emulator
        .requests()
        .iter()
        .filter(|r| r.verb == "watch" || r.verb == "list")
        .count();
    assert!(
        gone > 4,
        "watchers re-listed or re-watched ({gone} list/watch requests)"
    );
    faults.set_latency(Duration::ZERO);
}

/// Throttling on create and attach: the quarantine stays Active (never Failed), retries with a
/// Warning Event, and converges with one policy attached once per role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_throttling_is_retried_until_enforced() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci", "batch"]))
        .await;
    for _ in 0..2 {
        h.iam
            .fail_next(Operation::CreatePolicy, ErrorCode::Throttling);
    }
    for _ in 0..3 {
        h.iam
            .fail_next(Operation::AttachRolePolicy, ErrorCode::Throttling);
    }
    h.iam
        .fail_next(Operation::ListPolicies, ErrorCode::ServiceFailure);
    let (report, _) = submit_retrying(&h, &anomaly("t-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = wait_enforced(&h, &name, &["dev-ci", "batch"], LIMIT).await;
    assert!(
        !history(&q).iter().any(|e| e == "EnforcementFailed"),
        "{:?}",
        history(&q)
    );
    assert!(
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "EnforcementRetrying"),
        "retries are visible as Warning Events"
    );
    assert!(errors(&h, "iam_transient") >= 1, "throttling counted");
    assert_no_orphan(&h, "after throttling").await;
    assert_eq!(h.our_policy_count(), 1);
}

/// AccessDenied on attach: a Warning Event and the Enforced condition say so, the error is
/// counted with its category, the quarantine keeps trying (with backoff) and is enforced once
/// the permission is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_access_denied_is_reported_and_recovers_when_allowed() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    h.iam.deny(Operation::AttachRolePolicy);
    let (report, _) = submit_retrying(&h, &anomaly("ad-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.eventually(
        "AccessDenied reported on the Enforced condition",
        || async {
            h.quarantine(&name).await.is_some_and(|q| {
                q.status.is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Enforced"
                            && c.status == "False"
                            && c.reason == "AccessDenied"
                            && c.message.contains("AttachRolePolicy")
                    })
                })
            })
        },
    )
    .await;
    h.eventually("Warning Event names the denied call", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.2.contains("AccessDenied"))
    })
    .await;
    assert!(errors(&h, "iam_access_denied") >= 1, "counted by category");
    assert!(h.attached("dev-ci").is_empty());
    h.iam.allow(Operation::AttachRolePolicy);
    let q = wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    assert_eq!(count(&q, REASON_ACTIVATED), 1, "{:?}", history(&q));
    h.eventually("Enforced=True after the permission came back", || async {
        h.quarantine(&name).await.is_some_and(|q| {
            q.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Enforced" && c.status == "True")
            })
        })
    })
    .await;
    assert_no_orphan(&h, "after access denied").await;
}

/// Release under IAM failure (AccessDenied on detach, then throttling on delete) is retried until
/// done (safety rule 2): the phase stays Releasing with a Warning Event, then Released with
/// nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_under_iam_failure_is_retried_until_done() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci", "batch"]))
        .await;
    let (report, _) = submit_retrying(&h, &anomaly("rf-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    wait_enforced(&h, &name, &["dev-ci", "batch"], LIMIT).await;
    h.iam.deny(Operation::DetachRolePolicy);
    for _ in 0..3 {
        h.iam
            .fail_next(Operation::DeletePolicy, ErrorCode::Throttling);
    }
    h.annotate(&name, RELEASE_ANNOTATION, "ops: stop").await;
    h.wait_phase(&name, Phase::Releasing).await;
    h.eventually("ReleaseFailed Warning Event", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "ReleaseFailed" && e.2.contains("AccessDenied"))
    })
    .await;
    let failures = errors(&h, "release");
    assert!(failures >= 1, "release failures counted");
    h.iam.allow(Operation::DetachRolePolicy);
    let q = h.wait_phase(&name, Phase::Released).await;
    assert_eq!(count(&q, "Released"), 1, "{:?}", history(&q));
    assert_iam_clean(&h, "after failed release");
}

/// Eventual consistency: reads lag writes by 1.5 s. The engine must not re-create or re-attach
/// what it just wrote (no duplicate, no drift repair of its own writes), and the quarantine is
/// enforced and later released cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_eventual_consistency_creates_no_duplicate() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci", "batch"]))
        .await;
    h.iam
        .set_lag(Some(Lag::Duration(Duration::from_millis(1500))));
    let (report, _) = submit_retrying(&h, &anomaly("ec-1", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = wait_enforced(&h, &name, &["dev-ci", "batch"], LIMIT).await;
    // Let several drift verifications (500 ms) and full converges (2 s) read lagging state.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = h.iam.write_log();
    let ok = |op: Operation| {
        log.iter()
            .filter(|w| w.operation == op && w.error.is_none())
            .count()
    };
    assert_eq!(ok(Operation::CreatePolicy), 1, "{log:?}");
    assert_eq!(ok(Operation::AttachRolePolicy), 2, "{log:?}");
    assert!(
        !h.events(&name).await.iter().any(|e| e.1 == "DriftRepaired"),
        "its own writes are not drift"
    );
    assert_eq!(count(&q, REASON_ACTIVATED), 1);
    assert_no_orphan(&h, "lagging reads").await;
    h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
    h.wait_phase(&name, Phase::Released).await;
    assert!(wait_until(LIMIT, || async { invariants::ours(&h).policies.is_empty() }).await);
    assert_iam_clean(&h, "lagging release");
}
