//! `notifyOnly` through the real binary (config file, env, kubectl, the emulator, a local Slack
//! receiver, the in-memory AWS backend): a matching anomaly sends one Slack message, an Event on
//! the policy, `autoguardrails_notify_only_total` and an audit record (JSON lines), creates no
//! Quarantine and makes no IAM write; a second matching anomaly within the cooldown is counted
//! but not announced again. A controller posting with incoming webhooks says clearly (policy not
//! Ready, Events, `Retrying` records, a failed announcement) that it cannot post for policies that
//! name no webhook, and still enforces them; a controller posting with its bot does the same for
//! policies when no channel is named anywhere.

use crate::support::binary::{
    ControllerProcess, cluster_with_events_key, free_port, metric_value, post_event, wait_for,
};
use crate::support::slack_receiver::SlackReceiver;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "111111111111";
const API_KEY: &str = "notify-only-key";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-watch
  namespace: autoguardrails
spec:
  mode: Auto
  actions: [notifyOnly]
  match:
    sources: [CostAnomaly]
    accountIds: ["111111111111"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::111111111111:role/dev-ci" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 1h
    cooldown: 1h
  notify:
    slack:
      webhookSecretRef: { name: slack-webhook, key: url }
"#;

fn anomaly(id: &str) -> Value {
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    anomaly["detail"]["anomalyId"] = id.into();
    anomaly
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_only_match_sends_slack_an_event_a_metric_and_an_audit_record_and_writes_nothing()
{
    let slack = SlackReceiver::start().await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    kubectl.run(&[
        "create",
        "secret",
        "generic",
        "slack-webhook",
        "-n",
        NS,
        &format!("--from-literal=url={}", slack.url),
    ]);
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();
    let metrics_port = free_port();
    let signals_port = free_port();
    let dir = std::env::temp_dir().join(format!("agr-notify-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("audit.jsonl");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    "{ACCOUNT}": {{ roles: [dev-ci] }}
leaderElection:
  enabled: false
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: true
audit:
  jsonLines: {jsonl}
"#,
            jsonl = jsonl.display()
        ),
    )
    .unwrap();
    let log = dir.join("controller.log");
    let child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "controller",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "autoguardrails-0")
        .env("POD_NAMESPACE", NS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let controller = ControllerProcess {
        child: Some(child),
        log,
    };
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-watch",
        "--timeout=60s",
    ]);
    let events = format!("http://127.0.0.1:{signals_port}/events");

    let answer = post_event(&http, &events, API_KEY, &anomaly("anomaly-n-1")).await;
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (200, "accepted"),
        "{}\n{}",
        answer.2,
        controller.log()
    );
    let sent =
        "autoguardrails_notify_only_total{outcome=\"sent\",policy=\"autoguardrails/ci-watch\"} ";
    wait_for("the announcement", Duration::from_secs(30), || async {
        metric_value(&http, &ops, sent).await == 1.0
    })
    .await;
    let delivered = slack.delivered();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let text = delivered[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("autoguardrails/ci-watch") && text.contains("anomaly-n-1"),
        "{text}"
    );
    assert!(text.contains("No quarantine was created"), "{text}");

    // An Event on the policy.
    wait_for(
        "the Event on the policy",
        Duration::from_secs(30),
        || async {
            let events: Value =
                serde_json::from_str(&kubectl.run(&["get", "events", "-n", NS, "-o", "json"]))
                    .unwrap();
            events["items"].as_array().unwrap().iter().any(|e| {
                e["reason"] == "NotifyOnly"
                    && (e["regarding"]["kind"] == "GuardrailPolicy"
                        || e["involvedObject"]["kind"] == "GuardrailPolicy")
            })
        },
    )
    .await;
    // The audit record.
    wait_for("the audit record", Duration::from_secs(30), || async {
        std::fs::read_to_string(&jsonl).is_ok_and(|t| {
            t.lines().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|r| {
                    r["event"] == "NotifyOnly"
                        && r["policy"] == "autoguardrails/ci-watch"
                        && r["signal"]["id"] == "anomaly-n-1"
                })
            })
        })
    })
    .await;
    // lastNotifiedAt is recorded for the cooldown.
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.lastNotifiedAt}",
        "guardrailpolicy/ci-watch",
        "--timeout=30s",
    ]);

    // A second matching anomaly within the cooldown: counted, not announced.
    let again = post_event(&http, &events, API_KEY, &anomaly("anomaly-n-2")).await;
    assert_eq!(again.0, 200, "{}", again.2);
    let cooling = "autoguardrails_notify_only_total{outcome=\"cooling_down\",policy=\"autoguardrails/ci-watch\"} ";
    wait_for("the cooldown counted", Duration::from_secs(30), || async {
        metric_value(&http, &ops, cooling).await == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slack.delivered().len(),
        1,
        "no second message in the cooldown"
    );

    // No Quarantine, no IAM write.
    let quarantines = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    assert!(quarantines.trim().is_empty(), "{quarantines}");
    let iam: Value = http
        .get(format!("{ops}/debug/iam"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(iam[ACCOUNT]["writeCalls"], 0, "{iam}");
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.lastSignal.reason}=NotifyCoolingDown",
        "guardrailpolicy/ci-watch",
        "--timeout=30s",
    ]);
}

const NO_WEBHOOK_POLICIES: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-nohook
  namespace: autoguardrails
spec:
  mode: Auto
  match:
    sources: [CostAnomaly]
    accountIds: ["111111111111"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::111111111111:role/dev-ci" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 1h
  notify:
    slack:
      channelHint: C0COST
---
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-watch-nohook
  namespace: autoguardrails
spec:
  mode: Auto
  actions: [notifyOnly]
  match:
    sources: [CostAnomaly]
    accountIds: ["111111111111"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::111111111111:role/ops" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 1h
    cooldown: 1h
  notify:
    slack: {}
"#;

/// Decision 238: the schema accepts a `notify.slack` without a webhook (a bot set-up), so a
/// controller posting with incoming webhooks (the default `postWith`) must say it cannot post
/// for such a policy: the policy is not Ready (`SlackWebhookMissing`, a Warning Event), the
/// Quarantine's messages are `Retrying` with the reason (condition, Event, metric) until
/// `retryFor` in case the set-up is fixed, and a `notifyOnly` match is a `NotifyOnlyFailed`
/// Warning, counted and audited. Enforcement is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_controller_says_clearly_that_it_cannot_post_for_a_policy_without_a_webhook() {
    cannot_post(Unroutable::NoWebhook).await;
}

/// The same for a controller posting with its bot and no `notifications.channel`, for policies
/// naming no channel either (`SlackChannelMissing`, `no_channel`): nothing is posted anywhere
/// (the Web API address is a closed port, and the records say `no_channel`, not a connection
/// error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_controller_says_clearly_that_it_cannot_post_for_a_policy_without_a_channel() {
    cannot_post(Unroutable::NoChannel).await;
}

/// What a controller lacks for the policies of `cannot_post`.
#[derive(Clone, Copy, PartialEq)]
enum Unroutable {
    /// `postWith: webhook`, policies without a webhook.
    NoWebhook,
    /// `postWith: bot` without `notifications.channel`, policies without a channel.
    NoChannel,
}

async fn cannot_post(case: Unroutable) {
    let (reason, category, said, policies, settings) = match case {
        Unroutable::NoWebhook => (
            "SlackWebhookMissing",
            "(no_webhook)",
            ["names no webhook", "postWith: bot"],
            NO_WEBHOOK_POLICIES.to_string(),
            "  postWith: webhook\n",
        ),
        Unroutable::NoChannel => (
            "SlackChannelMissing",
            "(no_channel)",
            ["names a channel", "notifications.channel"],
            NO_WEBHOOK_POLICIES
                .replace("    slack:\n      channelHint: C0COST\n", "    slack: {}\n"),
            "  postWith: bot\n",
        ),
    };
    assert!(case == Unroutable::NoWebhook || !policies.contains("C0COST"));
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let metrics_port = free_port();
    let signals_port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "agr-{}-{}",
        reason.to_lowercase(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("bot-token");
    std::fs::write(&token, "xoxb-e2e-token\n").unwrap();
    let jsonl = dir.join("audit.jsonl");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    "{ACCOUNT}": {{ roles: [dev-ci, ops] }}
leaderElection:
  enabled: false
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: true
{settings}  initialBackoff: 1s
slack:
  botTokenFile: {token}
  apiBaseUrl: http://127.0.0.1:9/api/
audit:
  jsonLines: {jsonl}
  flushInterval: 200ms
"#,
            jsonl = jsonl.display(),
            token = token.display(),
        ),
    )
    .unwrap();
    let controller = crate::support::binary::spawn_controller_with_env(
        emulator.kubeconfig_path(),
        &config,
        NS,
        &dir,
        &[],
        &[],
    );
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(&policies));

    // Both policies: not Ready, with the reason and what to do, and a Warning Event.
    for policy in ["ci-nohook", "ci-watch-nohook"] {
        kubectl.run(&[
            "wait",
            "-n",
            NS,
            &format!("--for=jsonpath={{.status.conditions[?(@.type==\"Ready\")].reason}}={reason}"),
            &format!("guardrailpolicy/{policy}"),
            "--timeout=60s",
        ]);
        let status: Value = serde_json::from_str(&kubectl.run(&[
            "get",
            "-n",
            NS,
            &format!("guardrailpolicy/{policy}"),
            "-o",
            "json",
        ]))
        .unwrap();
        let ready = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "False", "{ready}");
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(said[0]) && message.contains(said[1]),
            "{message}"
        );
    }
    let events = |reason: &str, kind: &str| -> Vec<Value> {
        let events: Value =
            serde_json::from_str(&kubectl.run(&["get", "events", "-n", NS, "-o", "json"])).unwrap();
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["reason"] == reason
                    && (e["involvedObject"]["kind"] == kind || e["regarding"]["kind"] == kind)
            })
            .map(|e| {
                // One shape whichever API the Event was read through.
                let mut e = e.clone();
                if e["message"].is_null() {
                    e["message"] = e["note"].clone();
                }
                if e["involvedObject"].is_null() {
                    e["involvedObject"] = e["regarding"].clone();
                }
                e
            })
            .collect()
    };
    wait_for(
        &format!("the {reason} Event"),
        Duration::from_secs(30),
        || {
            let found = events(reason, "GuardrailPolicy").len() == 2;
            async move { found }
        },
    )
    .await;
    assert!(
        events(reason, "GuardrailPolicy")
            .iter()
            .all(|e| e["type"] == "Warning")
    );

    // The signal is still acted on: the Quarantine is enforced.
    let answer = post_event(
        &http,
        &format!("http://127.0.0.1:{signals_port}/events"),
        API_KEY,
        &anomaly("anomaly-nohook-1"),
    )
    .await;
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (200, "accepted"),
        "{}\n{}",
        answer.2,
        controller.log()
    );
    let quarantine = || -> Value {
        let list: Value =
            serde_json::from_str(&kubectl.run(&["get", "quarantines", "-n", NS, "-o", "json"]))
                .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["spec"]["policyRef"]["name"] == "ci-nohook")
            .cloned()
            .unwrap_or(Value::Null)
    };
    wait_for("the Active quarantine", Duration::from_secs(60), || {
        let active = quarantine()["status"]["phase"] == "Active";
        async move { active }
    })
    .await;
    let iam: Value = http
        .get(format!("{ops}/debug/iam"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        iam[ACCOUNT]["writeCalls"].as_u64().unwrap_or_default() > 0,
        "{iam}"
    );

    // Its messages: Retrying with the reason (not Failed, not silently skipped).
    wait_for(
        "the undeliverable message recorded",
        Duration::from_secs(60),
        || {
            let q = quarantine();
            let recorded = q["status"]["notifications"]
                .as_array()
                .is_some_and(|records| {
                    !records.is_empty()
                        && records.iter().all(|r| {
                            r["state"] == "Retrying"
                                && r["lastError"]
                                    .as_str()
                                    .is_some_and(|e| e.contains(said[0]) && e.contains(category))
                        })
                });
            async move { recorded }
        },
    )
    .await;
    let q = quarantine();
    let notified = q["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Notified")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        (&notified["status"], &notified["reason"]),
        (&Value::from("False"), &Value::from("DeliveryRetrying")),
        "{q}"
    );
    wait_for(
        "the DeliveryRetrying Event",
        Duration::from_secs(30),
        || {
            let found = events("DeliveryRetrying", "Quarantine").iter().any(|e| {
                e["type"] == "Warning"
                    && e["message"].as_str().is_some_and(|m| m.contains(category))
            });
            async move { found }
        },
    )
    .await;
    assert!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_slack_deliveries_total{outcome=\"retrying\"} "
        )
        .await
            >= 1.0
    );

    // The notifyOnly match: a failure, said and counted and audited.
    let failed = "autoguardrails_notify_only_total{outcome=\"failed\",policy=\"autoguardrails/ci-watch-nohook\"} ";
    wait_for(
        "the failed announcement",
        Duration::from_secs(30),
        || async { metric_value(&http, &ops, failed).await == 1.0 },
    )
    .await;
    wait_for(
        "the NotifyOnlyFailed Event",
        Duration::from_secs(30),
        || {
            let found = events("NotifyOnlyFailed", "GuardrailPolicy")
                .iter()
                .any(|e| {
                    e["type"] == "Warning"
                        && e["involvedObject"]["name"] == "ci-watch-nohook"
                        && e["message"].as_str().is_some_and(|m| m.contains(said[0]))
                });
            async move { found }
        },
    )
    .await;
    wait_for("the audit record", Duration::from_secs(30), || async {
        std::fs::read_to_string(&jsonl).is_ok_and(|t| {
            t.lines().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|r| {
                    r["event"] == "NotifyOnly"
                        && r["policy"] == "autoguardrails/ci-watch-nohook"
                        && r["message"].as_str().is_some_and(|m| {
                            m.contains("Slack message failed") && m.contains(said[0])
                        })
                })
            })
        })
    })
    .await;
    let sent = "autoguardrails_notify_only_total{outcome=\"sent\",policy=\"autoguardrails/ci-watch-nohook\"} ";
    assert_eq!(metric_value(&http, &ops, sent).await, 0.0);
}
