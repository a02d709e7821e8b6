//! Policy rules through the real intake and controllers: cooldown after release, exception
//! windows (half-open), and DryRun across every path a quarantine can take (expiry, release
//! annotation, approve, deletion, policy deletion, kill switch) with zero IAM writes. Also: the
//! kill switch engaged over an Active quarantine never blocks its release.

#[path = "support/controller.rs"]
mod harness;
#[path = "support/invariants.rs"]
mod invariants;

use std::time::Duration;

use autoguardrails::aws::Operation;
use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::lifecycle::{
    APPROVE_ANNOTATION, EXTEND_ANNOTATION, REASON_ANNOTATION_IGNORED, RELEASE_ANNOTATION,
};
use autoguardrails::controller::policy;
use harness::{Harness, anomaly, policy_yaml, test_settings};
use invariants::{assert_iam_clean, count, history, wait_enforced};

const LIMIT: Duration = Duration::from_secs(30);

fn with_cooldown(yaml: String, cooldown: &str) -> String {
    yaml.replace("cooldown: 30m", &format!("cooldown: {cooldown}"))
}

fn with_window(yaml: String, start: jiff::Timestamp, end: jiff::Timestamp) -> String {
    format!(
        "{yaml}  exceptions:\n    windows:\n      - {{ start: \"{start}\", end: \"{end}\", reason: \"load test\" }}\n"
    )
}

async fn quarantine_count(h: &Harness) -> usize {
    h.quarantines()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .len()
}

/// A second incident while the first holds the role creates nothing (AlreadyEnforced); after
/// the release, a third within the cooldown creates nothing (CoolingDown); once the cooldown has
/// passed, a fourth creates a new Quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_after_release_creates_nothing_until_it_passes() {
    let h = Harness::start().await;
    h.apply_policy(&with_cooldown(
        policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]),
        "3s",
    ))
    .await;
    let first = h.submit(&anomaly("c-1", harness::ACCOUNT, 500.0)).await;
    let name = first.created().next().unwrap().quarantine.clone().unwrap();
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;

    let held = h.submit(&anomaly("c-2", harness::ACCOUNT, 800.0)).await;
    assert_eq!(held.created().count(), 0, "{held:?}");
    assert_eq!(
        held.outcomes[0].reason,
        policy::ALREADY_ENFORCED,
        "{held:?}"
    );

    h.annotate(&name, RELEASE_ANNOTATION, "ops: fixed").await;
    h.wait_phase(&name, Phase::Released).await;
    // The intake reads the controller's cache: wait until it has the release.
    h.eventually("cache sees Released", || async {
        h.running()
            .stores
            .quarantine(harness::NS, &name)
            .is_some_and(|q| q.status.as_ref().and_then(|s| s.phase) == Some(Phase::Released))
    })
    .await;
    let cooling = h.submit(&anomaly("c-3", harness::ACCOUNT, 900.0)).await;
    assert_eq!(cooling.created().count(), 0, "{cooling:?}");
    assert_eq!(
        cooling.outcomes[0].reason,
        policy::COOLING_DOWN,
        "{cooling:?}"
    );
    assert_eq!(quarantine_count(&h).await, 1);
    h.eventually("policy lastSignal says CoolingDown", || async {
        h.policies()
            .get("auto-ci")
            .await
            .unwrap()
            .status
            .and_then(|s| s.last_signal)
            .is_some_and(|l| l.id == "c-3" && l.reason == policy::COOLING_DOWN)
    })
    .await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = h.submit(&anomaly("c-4", harness::ACCOUNT, 900.0)).await;
    let second = after
        .created()
        .next()
        .and_then(|o| o.quarantine.clone())
        .expect("a new quarantine after the cooldown");
    wait_enforced(&h, &second, &["dev-ci"], LIMIT).await;
    assert_eq!(quarantine_count(&h).await, 2);
}

/// A signal inside an exception window creates nothing and says why; the window is half-open,
/// so a redelivery of the same signal once it has ended creates the Quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_window_creates_nothing_until_it_ends() {
    let h = Harness::start().await;
    let now = jiff::Timestamp::now();
    let end = now + jiff::SignedDuration::from_secs(3);
    h.apply_policy(&with_window(
        policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]),
        now - jiff::SignedDuration::from_hours(1),
        end,
    ))
    .await;
    // Another policy with a window that has passed is not affected.
    h.apply_policy(&with_window(
        policy_yaml("auto-batch", "Auto", "1h", &["batch"]),
        now - jiff::SignedDuration::from_hours(2),
        now - jiff::SignedDuration::from_hours(1),
    ))
    .await;
    let signal = anomaly("x-1", harness::ACCOUNT, 500.0);
    let inside = h.submit(&signal).await;
    let outcome = |policy: &str| {
        inside
            .outcomes
            .iter()
            .find(|o| o.policy == policy)
            .cloned()
            .expect("outcome")
    };
    assert_eq!(outcome("auto-ci").reason, policy::EXCEPTION_WINDOW);
    assert!(!outcome("auto-ci").created && outcome("auto-ci").quarantine.is_none());
    let batch = outcome("auto-batch")
        .quarantine
        .expect("past window ignored");
    wait_enforced(&h, &batch, &["batch"], LIMIT).await;
    assert!(h.attached("dev-ci").is_empty());
    h.eventually("lastSignal says ExceptionWindow", || async {
        h.policies()
            .get("auto-ci")
            .await
            .unwrap()
            .status
            .and_then(|s| s.last_signal)
            .is_some_and(|l| l.reason == policy::EXCEPTION_WINDOW)
    })
    .await;

    let wait = end.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(Duration::try_from(wait).unwrap() + Duration::from_millis(100)).await;
    }
    let later = h.submit(&signal).await;
    let created: Vec<_> = later.created().collect();
    assert_eq!(created.len(), 1, "{later:?}");
    assert_eq!(created[0].policy, "auto-ci");
    let name = created[0].quarantine.clone().unwrap();
    wait_enforced(&h, &name, &["dev-ci"], LIMIT).await;
}

/// DryRun quarantines along every path: TTL expiry, approve/release/extend annotations, deletion
/// and policy deletion. The plan is recorded; IAM sees reads at most, never a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_paths_never_write_to_iam() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("dry-short", "DryRun", "2s", &["dev-ci"]))
        .await;
    h.apply_policy(&policy_yaml(
        "dry-long",
        "DryRun",
        "1h",
        &["dev-ci", "batch"],
    ))
    .await;
    let mut long = Vec::new();
    let mut short = None;
    for i in 0..3 {
        let report = h
            .submit(&anomaly(&format!("dry-{i}"), harness::ACCOUNT, 500.0))
            .await;
        for o in report.created() {
            let name = o.quarantine.clone().unwrap();
            if o.policy == "dry-long" {
                long.push(name);
            } else if short.is_none() {
                short = Some(name);
            }
        }
    }
    assert_eq!(long.len(), 3, "DryRun quarantines do not hold targets");
    for name in &long {
        h.wait_phase(name, Phase::DryRun).await;
    }
    // Path 1: expiry.
    let short = short.expect("short dry-run");
    h.wait_phase(&short, Phase::Expired).await;
    // Path 2: every annotation on a dry-run.
    h.annotate(&long[0], APPROVE_ANNOTATION, "alice: try").await;
    h.annotate(&long[0], EXTEND_ANNOTATION, "alice: 2h").await;
    h.annotate(&long[0], RELEASE_ANNOTATION, "alice: stop")
        .await;
    h.eventually("annotations handled", || async {
        h.quarantine(&long[0]).await.is_some_and(|q| {
            let a = q.metadata.annotations.clone().unwrap_or_default();
            !a.contains_key(APPROVE_ANNOTATION) && !a.contains_key(RELEASE_ANNOTATION)
        })
    })
    .await;
    let q = h.quarantine(&long[0]).await.unwrap();
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::DryRun));
    assert!(
        count(&q, REASON_ANNOTATION_IGNORED) >= 1,
        "{:?}",
        history(&q)
    );
    // Path 3: deletion.
    h.delete_quarantine(&long[1]).await;
    h.eventually("deleted", || async {
        h.quarantine(&long[1]).await.is_none()
    })
    .await;
    // Path 4: policy deletion cascades.
    h.policies()
        .delete("dry-long", &Default::default())
        .await
        .unwrap();
    for name in &long {
        h.eventually("cascaded", || async { h.quarantine(name).await.is_none() })
            .await;
    }
    assert_eq!(h.iam.write_count(), 0, "{:?}", h.iam.write_log());
    assert_iam_clean(&h, "dry-run paths");
}

/// Under the kill switch an Auto policy yields DryRun quarantines; approve, release, deletion
/// and policy deletion then send no IAM write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_paths_never_write_to_iam() {
    let mut settings = test_settings();
    settings.kill_switch = true;
    let h = Harness::start_with(settings).await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    h.apply_policy(&policy_yaml("manual-batch", "Manual", "2s", &["batch"]))
        .await;
    let report = h.submit(&anomaly("ks-1", harness::ACCOUNT, 500.0)).await;
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.reason == policy::KILL_SWITCH_DRY_RUN),
        "{report:?}"
    );
    let names: Vec<String> = report
        .created()
        .filter_map(|o| o.quarantine.clone())
        .collect();
    assert_eq!(names.len(), 2);
    let auto = names
        .iter()
        .find(|n| n.starts_with("auto-ci"))
        .unwrap()
        .clone();
    let manual = names
        .iter()
        .find(|n| n.starts_with("manual-batch"))
        .unwrap()
        .clone();
    let names = [auto, manual];
    for name in &names {
        h.wait_phase(name, Phase::DryRun).await;
        h.annotate(name, APPROVE_ANNOTATION, "alice: enforce anyway")
            .await;
    }
    h.wait_phase(&names[1], Phase::Expired).await;
    h.delete_quarantine(&names[0]).await;
    h.eventually("deleted", || async {
        h.quarantine(&names[0]).await.is_none()
    })
    .await;
    h.policies()
        .delete("manual-batch", &Default::default())
        .await
        .unwrap();
    h.eventually("cascaded", || async {
        h.quarantine(&names[1]).await.is_none()
    })
    .await;
    assert_eq!(h.iam.write_count(), 0, "{:?}", h.iam.write_log());
}

/// The kill switch engaged (controller restarted with it) over an Active quarantine: drift is no
/// longer repaired, but release still runs, and every write after the switch is a release step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_never_blocks_release_of_an_active_quarantine() {
    let mut h = Harness::start().await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci", "batch"]))
        .await;
    let report = h.submit(&anomaly("ks-2", harness::ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    wait_enforced(&h, &name, &["dev-ci", "batch"], LIMIT).await;
    let mut settings = h.settings.clone();
    settings.kill_switch = true;
    h.restart(Some(settings)).await;
    let before = h.iam.write_count();
    h.annotate(&name, RELEASE_ANNOTATION, "ops: stop").await;
    h.wait_phase(&name, Phase::Released).await;
    assert_iam_clean(&h, "release under kill switch");
    let after: Vec<Operation> = h.iam.write_log()[before..]
        .iter()
        .map(|w| w.operation)
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|op| matches!(
            op,
            Operation::DetachRolePolicy
                | Operation::DeletePolicy
                | Operation::DeletePolicyVersion
                | Operation::DeleteRolePolicy
        )),
        "only release steps under the kill switch: {after:?}"
    );
}
