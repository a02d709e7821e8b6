//! Retirement of ended Quarantines (decision 154) on the API emulator: a released Quarantine is
//! labelled and loses our finalizer once its retention and its policy's cooldown have passed, it
//! leaves every cache (also after a restart), a repeated signal still finds it, the scan of the
//! retired ones counts it, and it can be deleted at once. One still inside its cooldown is kept.

use crate::support::controller as harness;

use std::time::Duration;

use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::lifecycle::RELEASE_ANNOTATION;
use autoguardrails::controller::policy;
use autoguardrails::controller::reconcile::finalizers::FINALIZER;
use autoguardrails::controller::reconcile::retire::{self, ENDED_LABEL};
use harness::{Harness, NS, anomaly, policy_yaml, role, test_settings};
use jiff::SignedDuration;

fn settings() -> autoguardrails::controller::reconcile::Settings {
    let mut s = test_settings();
    s.retire_after = Some(SignedDuration::from_secs(1));
    s.sweep_period = Duration::from_secs(2);
    s
}

/// Creates a quarantine of `policy` for signal `id`, waits for Active, releases it and waits for
/// Released; returns its name.
async fn released(h: &Harness, id: &str) -> String {
    let report = h.submit(&anomaly(id, harness::ACCOUNT, 500.0)).await;
    let name = report
        .created()
        .next()
        .and_then(|o| o.quarantine.clone())
        .unwrap_or_else(|| panic!("no quarantine created: {report:?}"));
    h.wait_phase(&name, Phase::Active).await;
    h.annotate(&name, RELEASE_ANNOTATION, "alice: done").await;
    h.wait_phase(&name, Phase::Released).await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_quarantine_retires_from_the_watch_and_stays_answerable() {
    let mut h = Harness::start_with(settings()).await;
    h.apply_policy(
        &policy_yaml("retire-ci", "Auto", "1h", &["dev-ci"])
            .replace("cooldown: 30m", "cooldown: 1s"),
    )
    .await;
    let name = released(&h, "r-1").await;

    h.eventually("the released quarantine is labelled", || async {
        h.quarantine(&name)
            .await
            .is_some_and(|q| retire::is_retired(&q))
    })
    .await;
    let q = h
        .quarantine(&name)
        .await
        .expect("retired quarantine is kept");
    assert_eq!(
        q.metadata.labels.as_ref().and_then(|l| l.get(ENDED_LABEL)),
        Some(&"Released".to_string())
    );
    assert!(
        !q.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
        "nothing is held any more: our finalizer goes with the retirement"
    );
    let status = q.status.expect("status kept whole");
    assert_eq!(status.phase, Some(Phase::Released));
    assert!(
        status.history.iter().any(|e| e.event == "Released"),
        "the history (the audit trail) is not rewritten: {:?}",
        status.history
    );
    h.eventually("the retired quarantine left the caches", || async {
        let stores = &h.running().stores;
        stores.quarantine(NS, &name).is_none() && stores.ended().is_empty()
    })
    .await;
    assert!(h.metrics.quarantines_retired.get() >= 1);

    // The same signal again: intake finds the retired object in the API, creates nothing.
    let again = h.submit(&anomaly("r-1", harness::ACCOUNT, 500.0)).await;
    assert_eq!(again.created().count(), 0, "{again:?}");
    assert_eq!(again.outcomes[0].reason, policy::ALREADY_QUARANTINED);
    assert_eq!(
        h.quarantines()
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );

    // The scan of the retired ones finds its target and counts it; the gauge includes it.
    let found = retire::scan(&h.client, &[]).await.expect("scan");
    assert_eq!(found.phases.get("Released"), Some(&1));
    assert_eq!(found.targets.len(), 1);
    assert_eq!(found.targets[0].arn, role("dev-ci"));
    h.eventually("the phase gauge counts the retired quarantine", || async {
        h.metrics.quarantines.with_label_values(&["Released"]).get() == 1
    })
    .await;

    // A restart never lists it again.
    h.restart(None).await;
    assert!(h.running().stores.quarantine(NS, &name).is_none());
    assert!(h.running().stores.ended().is_empty());

    // The cooldown (1 s) has passed: a new signal quarantines the role again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let next = h.submit(&anomaly("r-2", harness::ACCOUNT, 500.0)).await;
    assert_eq!(next.created().count(), 1, "{next:?}");

    // No finalizer holds the retired one: a deletion is immediate.
    h.delete_quarantine(&name).await;
    h.eventually("the retired quarantine is deleted at once", || async {
        h.quarantine(&name).await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_inside_its_cooldown_is_kept_for_intake() {
    let h = Harness::start_with(settings()).await;
    // policy_yaml's cooldown is 30m, far longer than the 1 s retention.
    h.apply_policy(&policy_yaml("cool-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let name = released(&h, "c-1").await;
    // Several retirement passes (one a second) go by.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let q = h.quarantine(&name).await.expect("quarantine");
    assert!(!retire::is_retired(&q), "retired inside its cooldown");
    assert!(
        q.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );
    assert_eq!(h.running().stores.ended().len(), 1);
    let next = h.submit(&anomaly("c-2", harness::ACCOUNT, 500.0)).await;
    assert_eq!(next.created().count(), 0, "{next:?}");
    assert_eq!(next.outcomes[0].reason, policy::COOLING_DOWN);
}
