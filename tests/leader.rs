//! Leader election against the Kubernetes API emulator (real kube client, real Lease API): two
//! electors, exactly one leads; a crashed leader (no release) and a gracefully stopped leader
//! (release) are both replaced; a leader that cannot renew steps down. Takeover times are
//! printed (run with `--nocapture`); the only timing assertions are generous hang guards.

use autoguardrails::controller::leader::{LeaderElector, Leadership, LeaseSettings};
use autoguardrails::metrics::Metrics;
use autoguardrails::shutdown::{Shutdown, ShutdownCause};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_emulator::Emulator;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const HANG_GUARD: Duration = Duration::from_secs(30);

struct Replica {
    identity: String,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    leadership: Leadership,
}

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(250),
        ..LeaseSettings::new("autoguardrails", "default", identity)
    }
}

async fn replica(emulator: &Emulator, identity: &str) -> Replica {
    let metrics = Arc::new(Metrics::new().unwrap());
    let shutdown = Shutdown::new();
    let elector = LeaderElector::new(
        emulator.client().await.unwrap(),
        settings(identity),
        metrics.clone(),
    )
    .unwrap();
    Replica {
        identity: identity.to_string(),
        metrics,
        shutdown: shutdown.clone(),
        leadership: elector.start(shutdown),
    }
}

async fn wait_for(receiver: &mut watch::Receiver<bool>, value: bool) {
    tokio::time::timeout(HANG_GUARD, receiver.wait_for(|v| *v == value))
        .await
        .expect("leadership did not change in time")
        .unwrap();
}

/// Waits until exactly one of the two leads; returns (leader, standby).
async fn elect(first: Replica, second: Replica) -> (Replica, Replica) {
    let mut a = first.leadership.subscribe();
    let mut b = second.leadership.subscribe();
    tokio::time::timeout(HANG_GUARD, async {
        tokio::select! {
            _ = a.wait_for(|v| *v) => {}
            _ = b.wait_for(|v| *v) => {}
        }
    })
    .await
    .expect("nobody became leader");
    if first.leadership.is_leader() {
        (first, second)
    } else {
        (second, first)
    }
}

async fn holder(emulator: &Emulator) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(emulator.client().await.unwrap(), "default");
    leases
        .get("autoguardrails")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
}

/// Samples both replicas for `period`: they must never lead at the same time, and the leader
/// must stay the leader while nothing disturbs it.
async fn assert_single_stable_leader(leader: &Replica, standby: &Replica, period: Duration) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        assert!(
            leader.leadership.is_leader(),
            "leader lost the lease undisturbed"
        );
        assert!(!standby.leadership.is_leader(), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exactly_one_leads_and_a_crashed_leader_is_replaced() {
    let emulator = Emulator::start().await.unwrap();
    let (leader, standby) = elect(
        replica(&emulator, "pod-a").await,
        replica(&emulator, "pod-b").await,
    )
    .await;
    // Longer than a lease duration, so renewals are exercised.
    assert_single_stable_leader(&leader, &standby, Duration::from_secs(4)).await;
    assert_eq!(
        holder(&emulator).await.as_deref(),
        Some(leader.identity.as_str())
    );
    assert_eq!(leader.metrics.leader.get(), 1);
    assert_eq!(standby.metrics.leader.get(), 0);

    let mut standby_leading = standby.leadership.subscribe();
    let crashed_at = Instant::now();
    leader.leadership.abandon();
    wait_for(&mut standby_leading, true).await;
    let takeover = crashed_at.elapsed();
    println!(
        "leader takeover after a crash (no release): {} ms (lease duration 3 s, retry period 250 ms)",
        takeover.as_millis()
    );
    // It cannot be faster than the lease the crashed leader had just renewed allows.
    assert!(
        takeover >= Duration::from_millis(500),
        "took over a live lease: {takeover:?}"
    );
    assert_eq!(
        holder(&emulator).await.as_deref(),
        Some(standby.identity.as_str())
    );
    assert_eq!(standby.metrics.leader.get(), 1);
    let leases: Api<Lease> = Api::namespaced(emulator.client().await.unwrap(), "default");
    let spec = leases.get("autoguardrails").await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn graceful_shutdown_releases_the_lease_for_a_fast_takeover() {
    let emulator = Emulator::start().await.unwrap();
    let (leader, standby) = elect(
        replica(&emulator, "pod-a").await,
        replica(&emulator, "pod-b").await,
    )
    .await;
    assert_single_stable_leader(&leader, &standby, Duration::from_millis(500)).await;

    let mut old_leading = leader.leadership.subscribe();
    let mut standby_leading = standby.leadership.subscribe();
    let stopped_at = Instant::now();
    leader.shutdown.trigger(ShutdownCause::Terminate);
    wait_for(&mut old_leading, false).await;
    tokio::time::timeout(HANG_GUARD, leader.leadership.stopped())
        .await
        .expect("elector did not stop");
    let released = stopped_at.elapsed();
    assert_eq!(leader.metrics.leader.get(), 0);
    wait_for(&mut standby_leading, true).await;
    let takeover = stopped_at.elapsed();
    println!(
        "leader takeover after graceful shutdown (release): {} ms (release done after {} ms; lease duration 3 s, retry period 250 ms)",
        takeover.as_millis(),
        released.as_millis()
    );
    assert_eq!(
        holder(&emulator).await.as_deref(),
        Some(standby.identity.as_str())
    );

    // The remaining replica also releases on shutdown, leaving no holder.
    standby.shutdown.trigger(ShutdownCause::Terminate);
    tokio::time::timeout(HANG_GUARD, standby.leadership.stopped())
        .await
        .expect("elector did not stop");
    assert_eq!(holder(&emulator).await, None);
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down() {
    let emulator = Emulator::start().await.unwrap();
    let (leader, standby) = elect(
        replica(&emulator, "pod-a").await,
        replica(&emulator, "pod-b").await,
    )
    .await;
    let mut leading = leader.leadership.subscribe();
    let failing_from = Instant::now();
    // Every Lease request fails (500: the kube client does not retry it) for a while.
    emulator.faults().fail_next("*", "leases", 40, 500);
    wait_for(&mut leading, false).await;
    let stepped_down = failing_from.elapsed();
    println!(
        "leader stepped down {} ms after the API started failing (renew deadline 2 s)",
        stepped_down.as_millis()
    );
    assert_eq!(leader.metrics.leader.get(), 0);
    // Once the API answers again, some replica leads again.
    let holder_after = tokio::time::timeout(HANG_GUARD, async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let leases: Api<Lease> = Api::namespaced(emulator.client().await.unwrap(), "default");
            if let Ok(lease) = leases.get("autoguardrails").await
                && let Some(holder) = lease.spec.and_then(|s| s.holder_identity)
                && (leader.leadership.is_leader() || standby.leadership.is_leader())
            {
                return holder;
            }
        }
    })
    .await
    .expect("nobody leads after the API recovered");
    println!("after recovery the lease is held by {holder_after}");
}
