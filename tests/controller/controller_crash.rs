//! Crash recovery of the real controllers (kube-runtime on the API emulator, in-memory IAM): the
//! controller is killed at every IAM call of the enforce, release and deletion paths (the IAM
//! applies call k, then fails every call until `recover()`, and the controller task is aborted),
//! and at the Kubernetes-side points (right after intake created the Quarantine, with a release
//! held in `Releasing`, during deletion with the finalizer held, after an annotation was handled
//! but before it was cleared). A new controller over the same API server and IAM must converge
//! with no orphan, no double attachment and a history where each transition appears once
//! (decision 031 says what at-least-once allows). Every covered crash point is printed
//! (`cargo test --test controller_crash -- --nocapture`).

use crate::support::controller as harness;
use crate::support::invariants;

use std::time::Duration;

use autoguardrails::aws::Operation;
use autoguardrails::aws::memory::WriteRecord;
use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::lifecycle::{
    APPROVE_ANNOTATION, EXTEND_ANNOTATION, REASON_ACTIVATED, REASON_ANNOTATION_IGNORED,
    REASON_APPROVED, REASON_DELETED, REASON_RELEASE_REQUESTED, REASON_RELEASED, RELEASE_ANNOTATION,
};
use autoguardrails::controller::reconcile::Settings;
use harness::{Harness, anomaly, policy_yaml, test_settings};
use invariants::{
    assert_iam_clean, assert_no_orphan, count, history, wait_enforced, wait_iam_quiet, wait_until,
};
use kube::ResourceExt;

const ROLES: [&str; 2] = ["dev-ci", "batch"];
const LIMIT: Duration = Duration::from_secs(30);

/// No periodic verification: the only IAM calls are the ones a lifecycle step makes, so call k
/// of a path is the same call in every run.
fn quiet_settings() -> Settings {
    Settings {
        drift_period: Duration::from_secs(3600),
        full_converge_period: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(1),
        ..test_settings()
    }
}

/// A harness with an Auto policy over both roles.
async fn auto_harness() -> Harness {
    let h = Harness::start_with(quiet_settings()).await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &ROLES))
        .await;
    h
}

async fn submit(h: &Harness, id: &str) -> String {
    let report = h.submit(&anomaly(id, harness::ACCOUNT, 500.0)).await;
    report
        .created()
        .next()
        .and_then(|o| o.quarantine.clone())
        .expect("a quarantine was created")
}

/// An Active quarantine over both roles, IAM quiet afterwards.
async fn active(h: &Harness, id: &str) -> String {
    let name = submit(h, id).await;
    wait_enforced(h, &name, &ROLES, LIMIT).await;
    wait_iam_quiet(h, Duration::from_millis(700)).await;
    name
}

/// The calls a path made since `base`.
fn calls_since(h: &Harness, base: u64) -> Vec<Operation> {
    h.iam.calls().into_iter().skip(base as usize).collect()
}

/// What a crash at call `base + k` hit, after waiting for it; `None` when the path made fewer
/// calls this time.
async fn await_crash(h: &Harness, base: u64, k: u64) -> Option<Operation> {
    let crashed = wait_until(Duration::from_secs(10), || async { h.iam.crashed() }).await;
    crashed.then(|| h.iam.calls()[(base + k - 1) as usize])
}

/// Kills the controller, lets IAM answer again and starts a new controller.
async fn crash_and_restart(h: &mut Harness) {
    h.crash();
    h.iam.recover();
    h.start_controller().await;
}

fn successful(log: &[WriteRecord], op: Operation) -> usize {
    log.iter()
        .filter(|w| w.operation == op && w.error.is_none())
        .count()
}

fn names(ops: &[Operation]) -> Vec<&'static str> {
    ops.iter().map(|o| o.name()).collect()
}

/// Crash at every IAM call of activation (an Auto quarantine over two roles): after the restart
/// the quarantine is Active on both roles with one policy, "Activated" once, and a release then
/// leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_iam_call_of_enforcement() {
    // Calibrate: the calls of one undisturbed activation.
    let h = auto_harness().await;
    let base = h.iam.call_count();
    active(&h, "cal").await;
    let path = calls_since(&h, base);
    drop(h);
    eprintln!("enforce path: {} calls: {:?}", path.len(), names(&path));
    assert!(path.contains(&Operation::CreatePolicy) && path.contains(&Operation::AttachRolePolicy));

    let mut covered = Vec::new();
    for k in 1..=path.len() as u64 {
        let mut h = auto_harness().await;
        let base = h.iam.call_count();
        h.iam.crash_after_call(base + k);
        let name = submit(&h, &format!("enf-{k}")).await;
        let hit = await_crash(&h, base, k).await;
        crash_and_restart(&mut h).await;
        let q = wait_enforced(&h, &name, &ROLES, LIMIT).await;
        let context = format!("enforce crash after call {k} ({hit:?})");
        assert_no_orphan(&h, &context).await;
        assert_eq!(h.our_policy_count(), 1, "{context}");
        assert_eq!(
            count(&q, REASON_ACTIVATED),
            1,
            "{context}: {:?}",
            history(&q)
        );
        assert_eq!(
            successful(&h.iam.write_log(), Operation::CreatePolicy),
            1,
            "{context}: one CreatePolicy took effect"
        );
        // The full cycle still ends clean.
        h.annotate(&name, RELEASE_ANNOTATION, "ops: done").await;
        h.wait_phase(&name, Phase::Released).await;
        assert_iam_clean(&h, &context);
        eprintln!("crash point: enforce k={k} after {hit:?}: converged");
        covered.push(hit);
    }
    assert!(
        covered.iter().all(Option::is_some),
        "every call of the path was crashed at: {covered:?}"
    );
}

/// Crash at every IAM call of a release requested by annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_iam_call_of_release() {
    let h = auto_harness().await;
    let name = active(&h, "cal").await;
    let base = h.iam.call_count();
    h.annotate(&name, RELEASE_ANNOTATION, "ops: calibrate")
        .await;
    h.wait_phase(&name, Phase::Released).await;
    wait_iam_quiet(&h, Duration::from_millis(700)).await;
    let path = calls_since(&h, base);
    drop(h);
    eprintln!("release path: {} calls: {:?}", path.len(), names(&path));
    assert!(path.contains(&Operation::DetachRolePolicy) && path.contains(&Operation::DeletePolicy));

    let mut covered = Vec::new();
    for k in 1..=path.len() as u64 {
        let mut h = auto_harness().await;
        let name = active(&h, &format!("rel-{k}")).await;
        let base = h.iam.call_count();
        h.iam.crash_after_call(base + k);
        h.annotate(&name, RELEASE_ANNOTATION, "ops: release").await;
        let hit = await_crash(&h, base, k).await;
        crash_and_restart(&mut h).await;
        let q = h.wait_phase(&name, Phase::Released).await;
        let context = format!("release crash after call {k} ({hit:?})");
        assert_iam_clean(&h, &context);
        for event in [REASON_ACTIVATED, REASON_RELEASE_REQUESTED, REASON_RELEASED] {
            assert_eq!(count(&q, event), 1, "{context}: {:?}", history(&q));
        }
        assert!(
            wait_until(LIMIT, || async {
                !h.quarantine(&name)
                    .await
                    .is_some_and(|q| q.annotations().contains_key(RELEASE_ANNOTATION))
            })
            .await,
            "{context}: release annotation cleared"
        );
        eprintln!("crash point: release k={k} after {hit:?}: converged");
        covered.push(hit);
    }
    assert!(covered.iter().all(Option::is_some), "{covered:?}");
}

/// Crash at every IAM call of the release a deletion runs while the finalizer holds the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_iam_call_of_deletion() {
    let h = auto_harness().await;
    let name = active(&h, "cal").await;
    let base = h.iam.call_count();
    h.delete_quarantine(&name).await;
    h.eventually("deleted", || async { h.quarantine(&name).await.is_none() })
        .await;
    wait_iam_quiet(&h, Duration::from_millis(700)).await;
    let path = calls_since(&h, base);
    drop(h);
    eprintln!("deletion path: {} calls: {:?}", path.len(), names(&path));

    let mut covered = Vec::new();
    for k in 1..=path.len() as u64 {
        let mut h = auto_harness().await;
        let name = active(&h, &format!("del-{k}")).await;
        let base = h.iam.call_count();
        h.iam.crash_after_call(base + k);
        h.delete_quarantine(&name).await;
        let hit = await_crash(&h, base, k).await;
        let held = h.quarantine(&name).await;
        assert!(
            held.is_some_and(|q| q.metadata.deletion_timestamp.is_some()),
            "the finalizer holds the object while its release has not finished"
        );
        crash_and_restart(&mut h).await;
        let context = format!("deletion crash after call {k} ({hit:?})");
        assert!(
            wait_until(LIMIT, || async { h.quarantine(&name).await.is_none() }).await,
            "{context}: object deleted"
        );
        assert_iam_clean(&h, &context);
        eprintln!("crash point: deletion k={k} after {hit:?}: converged");
        covered.push(hit);
    }
    assert!(covered.iter().all(Option::is_some), "{covered:?}");
}

/// Crash at every IAM call of the enforcement an approval starts (Manual mode): the approval is
/// recorded once, with its actor, whether or not the crashed reconcile had written it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_iam_call_after_approval() {
    let mut covered = Vec::new();
    let mut k = 1;
    loop {
        let mut h = Harness::start_with(quiet_settings()).await;
        h.apply_policy(&policy_yaml("manual-ci", "Manual", "1h", &ROLES))
            .await;
        let name = submit(&h, &format!("appr-{k}")).await;
        h.wait_phase(&name, Phase::PendingApproval).await;
        wait_iam_quiet(&h, Duration::from_millis(300)).await;
        let base = h.iam.call_count();
        h.iam.crash_after_call(base + k);
        h.annotate(&name, APPROVE_ANNOTATION, "alice: approved")
            .await;
        let hit = await_crash(&h, base, k).await;
        crash_and_restart(&mut h).await;
        let q = wait_enforced(&h, &name, &ROLES, LIMIT).await;
        let context = format!("approval crash after call {k} ({hit:?})");
        assert_no_orphan(&h, &context).await;
        assert_eq!(
            count(&q, REASON_APPROVED),
            1,
            "{context}: {:?}",
            history(&q)
        );
        assert_eq!(
            count(&q, REASON_ACTIVATED),
            1,
            "{context}: {:?}",
            history(&q)
        );
        assert_eq!(
            q.status.as_ref().and_then(|s| s.approved_by.as_deref()),
            Some("alice (unverified)")
        );
        let Some(hit) = hit else {
            // Past the last call of the path: every point was covered.
            break;
        };
        eprintln!("crash point: approval k={k} after {hit:?}: converged");
        covered.push(hit);
        k += 1;
    }
    assert!(
        covered.contains(&Operation::AttachRolePolicy),
        "{covered:?}"
    );
}

/// Crash at every IAM call of the release a policy deletion cascades to (the garbage collector
/// deletes the Quarantine; its finalizer releases first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_iam_call_of_policy_deletion() {
    let mut covered = Vec::new();
    let mut k = 1;
    loop {
        let mut h = auto_harness().await;
        let name = active(&h, &format!("pol-{k}")).await;
        let base = h.iam.call_count();
        h.iam.crash_after_call(base + k);
        h.policies()
            .delete("auto-ci", &Default::default())
            .await
            .expect("delete policy");
        let hit = await_crash(&h, base, k).await;
        crash_and_restart(&mut h).await;
        let context = format!("policy deletion crash after call {k} ({hit:?})");
        assert!(
            wait_until(LIMIT, || async { h.quarantine(&name).await.is_none() }).await,
            "{context}: quarantine released and deleted"
        );
        assert_iam_clean(&h, &context);
        let Some(hit) = hit else {
            break;
        };
        eprintln!("crash point: policy deletion k={k} after {hit:?}: converged");
        covered.push(hit);
        k += 1;
    }
    assert!(covered.contains(&Operation::DeletePolicy), "{covered:?}");
}

/// The controller dies right after intake created the Quarantines (no status, no finalizer yet):
/// the new controller takes both from the start, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_right_after_intake_created_the_quarantine() {
    let mut h = Harness::start_with(quiet_settings()).await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    h.apply_policy(&policy_yaml("manual-batch", "Manual", "1h", &["batch"]))
        .await;
    // Intake over the caches of a controller that is already dead: the Quarantines are created,
    // no reconcile ever sees them before the restart.
    let intake = h.intake();
    h.crash();
    let report = autoguardrails::controller::intake::SignalIntake::submit(
        &intake,
        &anomaly("crash-intake", harness::ACCOUNT, 500.0),
    )
    .await
    .expect("intake");
    let created: Vec<String> = report
        .created()
        .filter_map(|o| o.quarantine.clone())
        .collect();
    assert_eq!(created.len(), 2, "{report:?}");
    for name in &created {
        let q = h.quarantine(name).await.expect("exists");
        assert!(q.status.is_none() && q.metadata.finalizers.is_none());
    }
    // No IAM write (the orphan sweep's first pass may have read, if it ran after the policies
    // were cached: on a loaded machine it does).
    assert!(h.iam.write_log().is_empty(), "{:?}", h.iam.calls());
    h.start_controller().await;
    eprintln!("crash point: after intake created the Quarantine (no status, no finalizer)");

    let auto = created.iter().find(|n| n.starts_with("auto-ci")).unwrap();
    let manual = created
        .iter()
        .find(|n| n.starts_with("manual-batch"))
        .unwrap();
    let q = wait_enforced(&h, auto, &["dev-ci"], LIMIT).await;
    assert_eq!(history(&q), [REASON_ACTIVATED]);
    let q = h.wait_phase(manual, Phase::PendingApproval).await;
    assert_eq!(history(&q).len(), 1, "{:?}", history(&q));
    assert!(h.attached("batch").is_empty());
    assert_no_orphan(&h, "after intake crash").await;
}

/// A release that cannot finish (DetachRolePolicy denied) is persisted as Releasing; the
/// controller dies there; the new one finishes the release once IAM allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_releasing_then_finish_on_restart() {
    let mut h = auto_harness().await;
    let name = active(&h, "releasing").await;
    h.iam.deny(Operation::DetachRolePolicy);
    h.annotate(&name, RELEASE_ANNOTATION, "ops: stop it").await;
    let q = h.wait_phase(&name, Phase::Releasing).await;
    assert_eq!(count(&q, REASON_RELEASE_REQUESTED), 1);
    // Let a few retries happen, then die in the middle of them.
    assert!(
        wait_until(LIMIT, || async {
            h.events(&name)
                .await
                .iter()
                .any(|e| e.0 == "Warning" && e.1 == "ReleaseFailed")
        })
        .await,
        "ReleaseFailed Warning Event"
    );
    h.crash();
    eprintln!("crash point: during release (phase Releasing persisted, detach denied)");
    assert_eq!(ROLES.iter().map(|r| h.attached(r).len()).sum::<usize>(), 2);
    h.iam.allow(Operation::DetachRolePolicy);
    h.start_controller().await;
    let q = h.wait_phase(&name, Phase::Released).await;
    assert_iam_clean(&h, "releasing crash");
    for event in [REASON_ACTIVATED, REASON_RELEASE_REQUESTED, REASON_RELEASED] {
        assert_eq!(count(&q, event), 1, "{:?}", history(&q));
    }
}

/// Deletion with the finalizer held by a release that keeps failing: the controller dies, the new
/// one keeps retrying and removes the finalizer only after the deny is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_deletion_with_the_finalizer_held() {
    let mut h = auto_harness().await;
    let name = active(&h, "deleting").await;
    h.iam.deny(Operation::DetachRolePolicy);
    h.delete_quarantine(&name).await;
    let q = h.wait_phase(&name, Phase::Releasing).await;
    assert!(q.metadata.deletion_timestamp.is_some());
    assert_eq!(count(&q, REASON_DELETED), 1, "{:?}", history(&q));
    h.crash();
    eprintln!("crash point: during deletion with the finalizer held (detach denied)");
    h.start_controller().await;
    // Still denied: the new controller retries and the object stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let q = h.quarantine(&name).await.expect("held by the finalizer");
    assert_eq!(
        q.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Releasing)
    );
    assert_eq!(count(&q, REASON_DELETED), 1, "{:?}", history(&q));
    h.iam.allow(Operation::DetachRolePolicy);
    h.eventually("deleted after release", || async {
        h.quarantine(&name).await.is_none()
    })
    .await;
    assert_iam_clean(&h, "deletion crash");
}

/// The state a crash between the status write and the annotation clear leaves: status records the
/// handled annotation, the annotation is still there. The new controller must not apply it again:
/// approve/release become one `AnnotationIgnored` line, extend moves expiry only by the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_an_annotation_was_handled_but_not_cleared() {
    let mut h = Harness::start_with(quiet_settings()).await;
    h.apply_policy(&policy_yaml("manual-ci", "Manual", "1h", &["dev-ci"]))
        .await;
    let name = submit(&h, "ann").await;
    h.wait_phase(&name, Phase::PendingApproval).await;

    // approve: handled and cleared, then put back as if the clear never happened.
    let approve = "alice: go";
    h.annotate(&name, APPROVE_ANNOTATION, approve).await;
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    h.eventually("approve cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(APPROVE_ANNOTATION)
    })
    .await;
    h.crash();
    h.annotate(&name, APPROVE_ANNOTATION, approve).await;
    let writes = h.iam.write_count();
    h.start_controller().await;
    eprintln!("crash point: after approve was handled, before it was cleared");
    h.eventually("re-delivered approve cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(APPROVE_ANNOTATION)
    })
    .await;
    let q = h.quarantine(&name).await.unwrap();
    assert_eq!(count(&q, REASON_APPROVED), 1, "{:?}", history(&q));
    assert_eq!(count(&q, REASON_ACTIVATED), 1, "{:?}", history(&q));
    assert!(
        count(&q, REASON_ANNOTATION_IGNORED) <= 1,
        "{:?}",
        history(&q)
    );
    assert_eq!(
        q.status.as_ref().unwrap().approved_by.as_deref(),
        Some("alice (unverified)")
    );
    assert_eq!(h.iam.write_count(), writes, "nothing re-enforced");

    // extend: re-handling moves expiresAt by about the crash delay, never by the extension again.
    h.annotate(&name, EXTEND_ANNOTATION, "alice: 2h").await;
    h.eventually("extend cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(EXTEND_ANNOTATION)
    })
    .await;
    let first = h
        .quarantine(&name)
        .await
        .unwrap()
        .status
        .unwrap()
        .expires_at
        .unwrap()
        .0;
    h.crash();
    h.annotate(&name, EXTEND_ANNOTATION, "alice: 2h").await;
    h.start_controller().await;
    eprintln!("crash point: after extend was handled, before it was cleared");
    h.eventually("re-delivered extend cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(EXTEND_ANNOTATION)
    })
    .await;
    let second = h
        .quarantine(&name)
        .await
        .unwrap()
        .status
        .unwrap()
        .expires_at
        .unwrap()
        .0;
    let moved = second.duration_since(first);
    assert!(
        moved < jiff::SignedDuration::from_mins(5),
        "re-handled extend moved expiry by {moved:?} (expected about the crash delay)"
    );

    // release: handled (Released), then put back.
    h.annotate(&name, RELEASE_ANNOTATION, "bob: done").await;
    h.wait_phase(&name, Phase::Released).await;
    h.eventually("release cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(RELEASE_ANNOTATION)
    })
    .await;
    h.crash();
    h.annotate(&name, RELEASE_ANNOTATION, "bob: done").await;
    let writes = h.iam.write_count();
    h.start_controller().await;
    eprintln!("crash point: after release was handled, before it was cleared");
    h.eventually("re-delivered release cleared", || async {
        !h.quarantine(&name)
            .await
            .unwrap()
            .annotations()
            .contains_key(RELEASE_ANNOTATION)
    })
    .await;
    let q = h.quarantine(&name).await.unwrap();
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Released));
    assert_eq!(count(&q, REASON_RELEASE_REQUESTED), 1, "{:?}", history(&q));
    assert_eq!(count(&q, REASON_RELEASED), 1, "{:?}", history(&q));
    assert_eq!(h.iam.write_count(), writes, "nothing released twice");
    assert_iam_clean(&h, "annotation crash");
}
