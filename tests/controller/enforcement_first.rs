//! Enforcement goes first (decisions 244 and 253): the writes that are not on the path from a
//! signal to a deny — each policy's `lastSignal` and the audit flusher's store and status writes —
//! wait while a signal is evaluated or a Quarantine reconciled, and the wait is bounded: with
//! enforcement work running all the time they still happen. Real controllers on the API emulator,
//! in-memory IAM, the JSON-lines audit sink on a file.

use std::sync::Arc;
use std::time::Duration;

use crate::support::controller::{ACCOUNT, Harness, NS, anomaly, policy_yaml, test_settings};

use autoguardrails::audit::jsonl::{Destination, JsonLinesSink, read_records};
use autoguardrails::controller::audit::AuditSettings;
use autoguardrails::controller::reconcile::Settings;

async fn last_signal(h: &Harness, policy: &str) -> Option<String> {
    h.policies()
        .get(policy)
        .await
        .unwrap()
        .status
        .and_then(|s| s.last_signal)
        .map(|l| l.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_signal_waits_while_enforcement_runs_and_the_wait_is_bounded() {
    let mut h = Harness::start().await;
    h.apply_policy(&policy_yaml("first-a", "DryRun", "1h", &["first-a"]))
        .await;
    h.apply_policy(&policy_yaml("first-b", "DryRun", "1h", &["first-b"]))
        .await;

    // Nothing runs: the record is written promptly.
    h.submit(&anomaly("quiet-1", ACCOUNT, 500.0)).await;
    h.eventually("lastSignal of a quiet controller", || async {
        last_signal(&h, "first-a").await.as_deref() == Some("quiet-1")
    })
    .await;

    // A reconcile in flight (held open here): the recorder waits for it...
    let working = h.running().stores.in_flight().start();
    let started = std::time::Instant::now();
    h.submit(&anomaly("busy-1", ACCOUNT, 500.0)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "the check below must run inside the recorder's two-second patience"
    );
    for policy in ["first-a", "first-b"] {
        assert_eq!(
            last_signal(&h, policy).await.as_deref(),
            Some("quiet-1"),
            "{policy}: not written while enforcement work runs"
        );
    }
    // ...but not forever: work that never pauses does not hold the records back.
    h.eventually("lastSignal written although work still runs", || async {
        last_signal(&h, "first-a").await.as_deref() == Some("busy-1")
            && last_signal(&h, "first-b").await.as_deref() == Some("busy-1")
    })
    .await;
    assert_eq!(h.running().stores.in_flight().running(), 1);
    drop(working);

    // Work that ends lets the next record through.
    h.submit(&anomaly("quiet-2", ACCOUNT, 500.0)).await;
    h.eventually("lastSignal after the work ended", || async {
        last_signal(&h, "first-b").await.as_deref() == Some("quiet-2")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flusher_waits_while_enforcement_runs_and_the_wait_is_bounded() {
    let dir = std::env::temp_dir().join(format!("agr-enforcement-first-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&file);
    let timings = AuditSettings {
        flush_interval: jiff::SignedDuration::from_secs(2),
        max_backoff: jiff::SignedDuration::from_secs(2),
        ..AuditSettings::default()
    };
    let mut h = Harness::start_with(Settings {
        audit: timings.outlet(Some(Arc::new(JsonLinesSink::new(Destination::File(
            file.clone(),
        ))))),
        ..test_settings()
    })
    .await;
    h.apply_policy(&policy_yaml(
        "first-audit",
        "DryRun",
        "1h",
        &["first-audit"],
    ))
    .await;
    let stored = || {
        read_records(&file)
            .map(|(records, _)| records.len())
            .unwrap_or(0)
    };
    let entries = |q: &autoguardrails::controller::crd::Quarantine| {
        q.status
            .as_ref()
            .and_then(|s| s.audit.as_ref())
            .map_or(0, |a| a.entries.len())
    };

    // Enforcement work in flight from before the Quarantine exists until after the check.
    let working = h.running().stores.in_flight().start();
    let report = h.submit(&anomaly("flush-1", ACCOUNT, 500.0)).await;
    let name = report
        .created()
        .find_map(|o| o.quarantine.clone())
        .expect("a quarantine");
    h.eventually("audit entries in the Quarantine's status", || async {
        h.running()
            .stores
            .quarantine(NS, &name)
            .is_some_and(|q| entries(&q) > 0)
    })
    .await;
    // A round that sees the entries starts after they are cached, then waits a whole flush
    // interval (2 s) for a quiet moment that never comes: nothing can be stored before.
    let seen = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        seen.elapsed() < Duration::from_millis(1800),
        "the check below must run inside the flusher's patience"
    );
    assert_eq!(stored(), 0, "nothing stored while enforcement work runs");
    // Bounded: the round goes on without the quiet moment, and the status empties.
    h.eventually("records stored although work still runs", || async {
        stored() > 0
            && h.quarantines()
                .get(&name)
                .await
                .is_ok_and(|q| entries(&q) == 0)
    })
    .await;
    assert_eq!(h.running().stores.in_flight().running(), 1);
    drop(working);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
