//! The real controllers (Harness) and the real Slack worker side by side, with the loopback Slack
//! receiver answering 500: the deny is attached and released on time while every delivery fails,
//! the failure shows as `Notified=False`, and once Slack recovers each message arrives once.

#[path = "support/controller.rs"]
mod harness;
#[path = "support/slack_receiver.rs"]
mod slack_receiver;

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::crd::conditions::NOTIFIED;
use autoguardrails::controller::notify::slack::SlackSettings;
use autoguardrails::controller::notify::worker::{NotifySettings, Worker};
use autoguardrails::metrics::Metrics;
use harness::{ACCOUNT, Harness, NS, anomaly, policy_yaml};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use slack_receiver::{Reply, SlackReceiver};

fn notified(q: &autoguardrails::controller::crd::Quarantine) -> Option<String> {
    q.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == NOTIFIED)
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_and_release_do_not_wait_for_a_failing_slack() {
    let h = Harness::start().await;
    let receiver = SlackReceiver::start().await;
    receiver.set_default(Some(Reply::ServerError));
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "slack-webhook"},
                "stringData": {"url": receiver.url},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let worker = Worker::new(
        h.client.clone(),
        NotifySettings {
            namespaces: vec![NS.into()],
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(500),
            webhook_cache_ttl: Duration::from_millis(500),
            slack: SlackSettings {
                request_timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_secs(1),
                max_attempts: 2,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(50),
                max_retry_after: Duration::from_secs(1),
            },
            ..NotifySettings::default()
        },
        metrics.clone(),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    let yaml = policy_yaml("auto-ci", "Auto", "3s", &["dev-ci"]).replace(
        "  quarantine:\n",
        "  notify:\n    slack:\n      webhookSecretRef: { name: slack-webhook, key: url }\n  quarantine:\n",
    );
    h.apply_policy(&yaml).await;
    let report = h.submit(&anomaly("slack-down-1", ACCOUNT, 900.0)).await;
    let name = report.outcomes[0].quarantine.clone().expect("a Quarantine");

    // Enforced and then released at its 3 s TTL while every Slack delivery fails.
    h.wait_phase(&name, Phase::Active).await;
    assert_eq!(h.attached("dev-ci").len(), 1, "the deny is attached");
    h.wait_phase(&name, Phase::Released).await;
    assert!(h.attached("dev-ci").is_empty(), "released on time");
    assert_eq!(h.our_policy_count(), 0);
    h.eventually("Notified=False", || async {
        h.quarantine(&name)
            .await
            .and_then(|q| notified(&q))
            .as_deref()
            == Some("False")
    })
    .await;
    assert!(receiver.delivered().is_empty());
    assert!(
        metrics
            .slack_deliveries
            .with_label_values(&["retrying"])
            .get()
            >= 1
    );

    // Slack is back: each lifecycle message arrives once, in order.
    receiver.set_default(None);
    h.eventually("Notified=True", || async {
        h.quarantine(&name)
            .await
            .and_then(|q| notified(&q))
            .as_deref()
            == Some("True")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let texts: Vec<String> = receiver
        .delivered()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[0].contains("Deny enforced"), "{texts:#?}");
    assert!(texts[1].contains("released"), "{texts:#?}");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
