//! Weekly exception windows and excepted accounts through the real binary (config file, env,
//! kubectl, the emulator, moto's IAM), with the evaluation clock put on both 2026 daylight-saving
//! changes of Europe/Berlin through the test-only clock file (decision 203). Signals inside the
//! window (including instants in the repeated hour, and just after the skipped hour) create
//! nothing; the first signal after the window quarantines only the role whose account is not
//! excepted; an unreadable clock makes intake refuse the signal retryably instead of guessing.

use crate::support::binary::{
    attached, cluster_with_events_key, create_roles, iam_client, metric_value, post_event,
    spawn_controller_with_env, wait_for,
};
use crate::support::moto;

use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "123456789012";
const API_KEY: &str = "weekly-test-key";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: batch-window
  namespace: autoguardrails
spec:
  mode: Auto
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/dev-ci" }
      - { kind: IamRole, arn: "arn:aws:iam::444444444444:role/shared-runner" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
  exceptions:
    accounts: ["444444444444"]
    weekly:
      - days: [Sun]
        start: "02:30"
        end: "06:00"
        timeZone: Europe/Berlin
        reason: weekly batch window
"#;

fn anomaly(id: &str) -> Value {
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["anomalyId"] = id.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    anomaly
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_windows_hold_across_both_clock_changes_in_the_binary() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci"]).await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let dir = std::env::temp_dir().join(format!("agr-weekly-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = dir.join("now");
    let set_clock = |instant: &str| std::fs::write(&clock, instant).unwrap();
    set_clock("2026-03-29T01:00:00Z");
    let setup = crate::support::binary::ControllerConfig::sdk(NS, &moto.url).events_key();
    let config = setup.write(&dir);
    let (metrics_port, signals_port) = (setup.metrics_port, setup.signals_port);
    let controller = spawn_controller_with_env(
        &kubeconfig,
        &config,
        NS,
        &dir,
        &[],
        &[("AUTOGUARDRAILS_TEST_CLOCK_FILE", clock.as_os_str())],
    );
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    assert!(
        controller.log().contains("TEST CLOCK"),
        "the test clock is announced: {}",
        controller.log()
    );
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/batch-window",
        "--timeout=60s",
    ]);
    let events = format!("http://127.0.0.1:{signals_port}/events");
    let last_signal = || {
        let text = kubectl.run(&[
            "get",
            "guardrailpolicy/batch-window",
            "-n",
            NS,
            "-o",
            "jsonpath={.status.lastSignal.id} {.status.lastSignal.reason}",
        ]);
        text.trim().to_string()
    };

    // The clock moves forward only, as a real one does (lastSignal keeps the latest evaluation).
    for (step, (now, reason)) in [
        // Sunday 29 March: 02:00 CET jumps to 03:00 CEST at 01:00Z; the window opens then.
        ("2026-03-29T01:00:00Z", "ExceptionWindow"),
        ("2026-03-29T03:59:59Z", "ExceptionWindow"), // 05:59:59 CEST
        // Sunday 25 October: 03:00 CEST falls back to 02:00 CET at 01:00Z.
        ("2026-10-25T00:30:00Z", "ExceptionWindow"), // the first 02:30
        ("2026-10-25T01:10:00Z", "ExceptionWindow"), // 02:10 CET, the repeated hour
        ("2026-10-25T04:59:59Z", "ExceptionWindow"), // 05:59:59 CET
        ("2026-10-25T05:00:00Z", "Matched"),         // 06:00 CET: the window has closed
    ]
    .into_iter()
    .enumerate()
    {
        set_clock(now);
        let id = format!("weekly-{step}");
        let answer = post_event(&http, &events, API_KEY, &anomaly(&id)).await;
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (200, "accepted"),
            "{now}: {}\n{}",
            answer.2,
            controller.log()
        );
        let mut seen = String::new();
        wait_for(
            &format!("lastSignal {id} at {now}"),
            Duration::from_secs(30),
            || {
                seen = last_signal();
                let done = seen.starts_with(&id);
                async move { done }
            },
        )
        .await;
        assert_eq!(seen, format!("{id} {reason}"), "at {now}");
        let quarantines = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
        assert_eq!(
            quarantines.trim().is_empty(),
            reason == "ExceptionWindow",
            "at {now}: {quarantines}"
        );
    }

    // The match quarantines dev-ci only: shared-runner's account is excepted.
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    let targets = kubectl.run(&[
        "get",
        &name,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.targets[*].arn}",
    ]);
    assert_eq!(targets.trim(), "arn:aws:iam::123456789012:role/dev-ci");
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    assert_eq!(
        attached(&iam, "dev-ci").await.len(),
        1,
        "the deny is attached"
    );

    // A clock that cannot be read is never replaced by a guess: the sender is told to retry.
    set_clock("not an instant");
    let refused = post_event(&http, &events, API_KEY, &anomaly("weekly-unreadable")).await;
    assert!(refused.0 >= 500, "{refused:?}");
    assert!(refused.2.contains("test clock file"), "{refused:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
