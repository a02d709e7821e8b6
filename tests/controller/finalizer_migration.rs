//! The finalizer of its own (decision 141) on the API emulator: Quarantines that an earlier
//! version left with its finalizer (`autoguardrails.io/release`) are taken over by the current
//! controller. A live one gets the new finalizer in place of the old and stays enforced; one
//! deleted while no controller ran is released first, and only then does the old finalizer go.

use crate::support::controller as harness;
use crate::support::invariants;

use std::time::Duration;

use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::reconcile::finalizers::{FINALIZER, LEGACY_FINALIZER};
use harness::{Harness, anomaly, policy_yaml, test_settings};
use invariants::{assert_iam_clean, wait_enforced, wait_until};
use kube::api::{Patch, PatchParams};

const LIMIT: Duration = Duration::from_secs(30);

/// An Active quarantine, then the controller stopped and its finalizer set back to the earlier
/// version's: the state an upgrade finds.
async fn enforced_with_legacy_finalizer() -> (Harness, String) {
    let mut h = Harness::start_with(test_settings()).await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h
        .submit(&anomaly("legacy-1", harness::ACCOUNT, 500.0))
        .await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    h.stop().await;
    let body = serde_json::json!({"metadata": {"finalizers": [LEGACY_FINALIZER]}});
    h.quarantines()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .unwrap();
    (h, name)
}

fn finalizers(q: &autoguardrails::controller::crd::Quarantine) -> Vec<String> {
    q.metadata.finalizers.clone().unwrap_or_default()
}

#[tokio::test]
async fn legacy_finalizer_of_a_live_quarantine_is_replaced() {
    let (mut h, name) = enforced_with_legacy_finalizer().await;
    assert_ne!(FINALIZER, LEGACY_FINALIZER);
    h.start_controller().await;
    h.eventually("the finalizer renamed", || async {
        h.quarantine(&name)
            .await
            .is_some_and(|q| finalizers(&q) == [FINALIZER])
    })
    .await;
    let q = wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
    assert_eq!(q.status.and_then(|s| s.phase), Some(Phase::Active));
    assert_eq!(h.attached("dev-ci").len(), 1, "still enforced, once");

    // Deletion now goes through the new finalizer: released, then gone.
    h.delete_quarantine(&name).await;
    assert!(
        wait_until(LIMIT, || async { h.quarantine(&name).await.is_none() }).await,
        "the quarantine is deleted"
    );
    assert!(h.attached("dev-ci").is_empty());
    assert_iam_clean(&h, "after deletion");
}

#[tokio::test]
async fn deleted_with_the_legacy_finalizer_is_released_before_it_goes() {
    let (mut h, name) = enforced_with_legacy_finalizer().await;
    // Deleted while no controller runs: only the earlier version's finalizer holds it.
    h.delete_quarantine(&name).await;
    let held = h.quarantine(&name).await.expect("held by the finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(finalizers(&held), [LEGACY_FINALIZER]);
    assert_eq!(h.attached("dev-ci").len(), 1, "the deny is still attached");

    h.start_controller().await;
    assert!(
        wait_until(LIMIT, || async { h.quarantine(&name).await.is_none() }).await,
        "the quarantine is released and deleted"
    );
    assert!(h.attached("dev-ci").is_empty(), "released before it went");
    assert_iam_clean(&h, "after deletion");
}

#[tokio::test]
async fn released_quarantine_with_the_legacy_finalizer_is_migrated_and_deletable() {
    let (mut h, name) = enforced_with_legacy_finalizer().await;
    h.start_controller().await;
    h.annotate(
        &name,
        autoguardrails::controller::lifecycle::RELEASE_ANNOTATION,
        "ops: done",
    )
    .await;
    h.wait_phase(&name, Phase::Released).await;
    h.eventually("the finalizer renamed", || async {
        h.quarantine(&name)
            .await
            .is_some_and(|q| finalizers(&q) == [FINALIZER])
    })
    .await;
    // Ended: intake still sees it (as an outline), and a deletion still lets it go.
    h.eventually("intake sees it Released", || async {
        h.running()
            .stores
            .quarantine(harness::NS, &name)
            .is_some_and(|q| q.status.as_ref().and_then(|s| s.phase) == Some(Phase::Released))
    })
    .await;
    h.delete_quarantine(&name).await;
    assert!(
        wait_until(LIMIT, || async { h.quarantine(&name).await.is_none() }).await,
        "the ended quarantine is deleted"
    );
    assert_iam_clean(&h, "after deletion");
}
