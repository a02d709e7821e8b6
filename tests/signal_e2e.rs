//! End to end: signed SNS messages (and an EventBridge event) through the real `/sns` and
//! `/events` endpoints on loopback, into the real controller intake, against the Kubernetes API
//! emulator with a GuardrailPolicy applied. One message creates exactly one Quarantine; the same
//! message again, or the same anomaly in a new message, creates nothing; a forged one creates
//! nothing and is counted.

#[path = "support/controller.rs"]
mod harness;
#[path = "support/sns_signing.rs"]
mod sns_signing;

use std::sync::Arc;

use autoguardrails::controller::crd::SignalSource;
use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::keys::StaticKey;
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::poller::SubmittedSignals;
use autoguardrails::controller::signal::sns::ValidatedCertUrl;
use harness::{ACCOUNT, Harness, policy_yaml};
use kube::api::ListParams;
use serde_json::Value;
use sns_signing::{CERT, CERT_URL, Signer, TOPIC};

const KEY: &str = "e2e-events-key";

async fn serve(h: &Harness, submitted: Arc<SubmittedSignals>) -> String {
    let mut settings = SignalSettings::default();
    settings.sns.allowed_topics = vec![TOPIC.to_string()];
    let url = ValidatedCertUrl::parse(CERT_URL).unwrap();
    let state = SignalState::new(
        &settings,
        Arc::new(h.intake()),
        h.metrics.clone(),
        Arc::new(StaticCertificates::new().with(&url, CERT)),
    )
    .unwrap()
    .with_api_keys(Arc::new(StaticKey(KEY.as_bytes().to_vec())))
    .with_submitted(submitted);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = signals::router(Arc::new(state));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

async fn post(base: &str, path: &str, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("x-api-key", KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

async fn quarantine_signal_ids(h: &Harness) -> Vec<String> {
    let mut ids: Vec<String> = h
        .quarantines()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|q| q.spec.signal.map(|signal| signal.id))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sns_message_creates_exactly_one_quarantine() {
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("sns-e2e", "DryRun", "1h", &["dev-ci"]))
        .await;
    let submitted = Arc::new(SubmittedSignals::new(100));
    let base = serve(&h, submitted.clone()).await;
    let signer = Signer::test();
    let message = sns_signing::anomaly_message("e2e-anomaly-1", ACCOUNT, 640.0);
    let fields = sns_signing::notification("e2e-message-1", &now_text(), &message);
    let body = signer.envelope(&fields, "2");

    let (status, answer) = post(&base, "/sns", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "accepted");
    // 2xx means the Quarantine exists already: no waiting
    let quarantines = h
        .quarantines()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(quarantines.len(), 1);
    let quarantine = &quarantines[0];
    assert_eq!(quarantine.spec.policy_ref.name, "sns-e2e");
    let record = quarantine.spec.signal.clone().expect("signal recorded");
    assert_eq!(record.id, "e2e-anomaly-1");
    assert_eq!(record.source, SignalSource::CostAnomaly);
    assert_eq!(record.account_id, ACCOUNT);
    assert_eq!(record.impact_usd, 640.0);
    assert!(submitted.covers("e2e-anomaly-1", 640.0));

    // the same delivery again: nothing new
    let (status, answer) = post(&base, "/sns", body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "replayed");
    // the same anomaly in a new SNS message (e.g. published twice): intake is idempotent
    let again = sns_signing::notification("e2e-message-2", &now_text(), &message);
    let (status, answer) = post(&base, "/sns", signer.envelope(&again, "1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(quarantine_signal_ids(&h).await, ["e2e-anomaly-1"]);

    // forged: a valid signature over other content
    let forged_message = sns_signing::anomaly_message("e2e-forged", ACCOUNT, 9000.0);
    let original = sns_signing::notification("e2e-message-3", &now_text(), &message);
    let signature = signer.sign(&original, "2");
    let mut tampered = original.clone();
    tampered.insert("Message".into(), forged_message.clone());
    let (status, answer) = post(
        &base,
        "/sns",
        sns_signing::render(&tampered, "2", &signature, CERT_URL),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    // forged: signed with a key that is not behind SigningCertURL
    let other = sns_signing::notification("e2e-message-4", &now_text(), &forged_message);
    let (status, _) = post(&base, "/sns", Signer::other().envelope(&other, "2")).await;
    assert_eq!(status, 403);
    assert_eq!(quarantine_signal_ids(&h).await, ["e2e-anomaly-1"]);
    let count = |outcome: &str| h.metrics.signals.with_label_values(&["sns", outcome]).get();
    assert_eq!(count("bad_signature"), 2);
    assert_eq!(count("accepted"), 2);
    assert_eq!(count("replayed"), 1);

    // below the policy's minImpactUsd: accepted (intake ran), no Quarantine
    let small = sns_signing::notification(
        "e2e-message-5",
        &now_text(),
        &sns_signing::anomaly_message("e2e-small", ACCOUNT, 20.0),
    );
    let (status, answer) = post(&base, "/sns", signer.envelope(&small, "2")).await;
    assert_eq!(status, 200);
    assert!(
        answer["reason"].as_str().unwrap().contains("0 created"),
        "{answer}"
    );

    // the same path through EventBridge: a new anomaly creates its own Quarantine
    let mut event: Value =
        serde_json::from_str(include_str!("fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(ACCOUNT.into());
    event["detail"]["impact"]["totalImpact"] = serde_json::json!(360.0);
    let (status, answer) = post(&base, "/events", event.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = post(&base, "/events", event.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        quarantine_signal_ids(&h).await,
        ["e2e-anomaly-1", "eb-0000-1111-2222"]
    );
}
