//! Event-driven drift repair through the real binary (config file, env, kubectl, the emulator,
//! moto's IAM): a quarantine holds its deny on a role; someone detaches the deny in IAM and
//! CloudTrail's event arrives on `/events`; the deny is back long before the periodic drift check
//! (set to ten minutes here) would have noticed. Events about principals we do not hold, failed
//! calls and malformed IAM events get clear answers and change nothing.

use crate::support::binary::{
    attached, cluster_with_events_key, create_roles, iam_client, metric_value, post_event, wait_for,
};
use crate::support::moto;

use std::time::{Duration, Instant};

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "123456789012";
const API_KEY: &str = "drift-test-key";
const DETACH: &str = include_str!("../fixtures/iam/detach-role-policy.json");

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-auto
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
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    cooldown: 30m
"#;

/// The CloudTrail event of `name` on `role` (and `policy_arn`), with a fresh event id.
fn iam_event(name: &str, role: &str, policy_arn: &str, id: &str) -> Value {
    let mut event: Value = serde_json::from_str(DETACH).unwrap();
    event["detail"]["eventName"] = name.into();
    event["detail"]["eventID"] = id.into();
    event["detail"]["requestParameters"]["roleName"] = role.into();
    event["detail"]["requestParameters"]["policyArn"] = policy_arn.into();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_deny_is_reattached_when_the_cloudtrail_event_arrives() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci", "etl"]).await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let dir = std::env::temp_dir().join(format!("agr-drift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The periodic check is ten minutes away: only the event can repair within the test.
    let setup = crate::support::binary::ControllerConfig::sdk(NS, &moto.url)
        .setting("driftPeriod", "10m")
        .setting("fullConvergePeriod", "10m")
        .events_key();
    let config = setup.write(&dir);
    let (metrics_port, signals_port) = (setup.metrics_port, setup.signals_port);
    // As the chart runs it (tests/support/binary.rs), the log in dir/controller.log.
    let controller =
        crate::support::binary::spawn_controller_with_env(&kubeconfig, &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-auto",
        "--timeout=60s",
    ]);
    let events = format!("http://127.0.0.1:{signals_port}/events");

    // Before anything is held, a detach is about nothing we hold: counted and ignored.
    let early = post_event(
        &http,
        &events,
        API_KEY,
        &iam_event(
            "DetachRolePolicy",
            "dev-ci",
            "arn:aws:iam::123456789012:policy/x",
            "e-0",
        ),
    )
    .await;
    assert_eq!(
        (early.0, early.1.as_str()),
        (200, "unusable"),
        "{}",
        early.2
    );
    assert!(early.2.contains("no quarantine holds"), "{}", early.2);

    // An anomaly quarantines dev-ci in Auto mode.
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    let created = post_event(&http, &events, API_KEY, &anomaly).await;
    assert_eq!(created.0, 200, "{}\n{}", created.2, controller.log());
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    let deny = attached(&iam, "dev-ci").await;
    assert_eq!(deny.len(), 1, "the deny is attached");
    let deny = deny[0].clone();

    // Events that cannot have undone it: another role, a failed call, a read, malformed.
    let other = post_event(
        &http,
        &events,
        API_KEY,
        &iam_event("DetachRolePolicy", "etl", &deny, "e-1"),
    )
    .await;
    assert_eq!(
        (other.0, other.1.as_str()),
        (200, "unusable"),
        "{}",
        other.2
    );
    assert!(other.2.contains("no quarantine holds"), "{}", other.2);
    let mut failed = iam_event("DetachRolePolicy", "dev-ci", &deny, "e-2");
    failed["detail"]["errorCode"] = "AccessDenied".into();
    let failed = post_event(&http, &events, API_KEY, &failed).await;
    assert_eq!(
        (failed.0, failed.1.as_str()),
        (200, "unusable"),
        "{}",
        failed.2
    );
    assert!(failed.2.contains("failed"), "{}", failed.2);
    let mut malformed = iam_event("DetachRolePolicy", "dev-ci", &deny, "e-3");
    malformed["detail"]["recipientAccountId"] = "nope".into();
    malformed["account"] = Value::Null;
    let malformed = post_event(&http, &events, API_KEY, &malformed).await;
    assert_eq!(
        (malformed.0, malformed.1.as_str()),
        (400, "malformed"),
        "{}",
        malformed.2
    );

    // Someone detaches the deny; CloudTrail reports it; the deny is back within seconds.
    iam.detach_role_policy()
        .role_name("dev-ci")
        .policy_arn(&deny)
        .send()
        .await
        .unwrap();
    assert!(attached(&iam, "dev-ci").await.is_empty());
    let repairs_before = metric_value(&http, &ops, "autoguardrails_drift_repairs_total ").await;
    let started = Instant::now();
    let answer = post_event(
        &http,
        &events,
        API_KEY,
        &iam_event("DetachRolePolicy", "dev-ci", &deny, "e-4"),
    )
    .await;
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (200, "accepted"),
        "{}",
        answer.2
    );
    assert!(answer.2.contains("checking 1 quarantine"), "{}", answer.2);
    wait_for("the deny re-attached", Duration::from_secs(60), || async {
        attached(&iam, "dev-ci").await == vec![deny.clone()]
    })
    .await;
    println!(
        "detach event to deny re-attached: {:.0} ms (through moto)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    wait_for("the repair in metrics", Duration::from_secs(30), || async {
        metric_value(&http, &ops, "autoguardrails_drift_repairs_total ").await > repairs_before
    })
    .await;
    assert_eq!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_iam_events_total{outcome=\"checked\"} "
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_iam_events_total{outcome=\"unheld\"} "
        )
        .await,
        2.0
    );
    let quarantine: Value =
        serde_json::from_str(&kubectl.run(&["get", "-n", NS, &name, "-o", "json"])).unwrap();
    let history = quarantine["status"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["event"] == "DriftRepaired"),
        "the repair is audited: {history:?}"
    );
    assert!(attached(&iam, "etl").await.is_empty(), "etl untouched");
}
