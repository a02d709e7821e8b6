//! IAM CloudTrail events through the real `/sns` and `/events` endpoints on loopback into the real
//! Quarantine controllers (emulator, in-memory IAM), with the periodic drift check ten minutes
//! away: a detach reported in a signed SNS notification is repaired from the event alone; an
//! event about another principal changes nothing; with no controller running (a standby) the
//! sender is told to retry.

use crate::support::controller as harness;
use crate::support::sns_signing;

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::keys::StaticKey;
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::reconcile::Stores;
use autoguardrails::controller::signal::sns::ValidatedCertUrl;
use harness::{ACCOUNT, Harness, anomaly, policy_yaml, test_settings};
use serde_json::{Value, json};
use sns_signing::{CERT, CERT_URL, Signer, TOPIC};

const KEY: &str = "drift-events-key";

async fn serve(h: &Harness, stores: Stores) -> String {
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
    .with_drift_repair(stores);
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

fn detach_event(id: &str, role: &str, policy_arn: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("eb-{id}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": ACCOUNT,
        "time": jiff::Timestamp::now().to_string(),
        "region": "us-east-1",
        "detail": {
            "eventVersion": "1.09",
            "eventID": id,
            "eventTime": jiff::Timestamp::now().to_string(),
            "eventSource": "iam.amazonaws.com",
            "eventName": "DetachRolePolicy",
            "awsRegion": "us-east-1",
            "recipientAccountId": ACCOUNT,
            "requestParameters": {"roleName": role, "policyArn": policy_arn}
        }
    })
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_reported_through_sns_is_repaired_without_waiting_for_the_drift_period() {
    let mut settings = test_settings();
    settings.drift_period = Duration::from_secs(600);
    settings.full_converge_period = Duration::from_secs(600);
    let mut h = Harness::start_with(settings).await;
    let stores = h.running().stores.clone();
    let base = serve(&h, stores).await;
    h.apply_policy(&policy_yaml("auto-ci", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("de-1", ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("attached", || async { h.attached("dev-ci").len() == 1 })
        .await;
    let arn = h.attached("dev-ci")[0].clone();
    let signer = Signer::test();

    // About a principal nothing is held on: answered, nothing else.
    let other = sns_signing::notification(
        "m-other",
        &now_text(),
        &detach_event("e-other", "etl", &arn).to_string(),
    );
    let (status, answer) = post(&base, "/sns", signer.envelope(&other, "2")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("unusable")),
        "{answer}"
    );

    // An authentic but unreadable IAM event is not redelivered: 200 unusable.
    let mut broken = detach_event("e-broken", "dev-ci", &arn);
    broken["detail"]["recipientAccountId"] = "x".into();
    broken["account"] = Value::Null;
    let broken = sns_signing::notification("m-broken", &now_text(), &broken.to_string());
    let (status, answer) = post(&base, "/sns", signer.envelope(&broken, "2")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("unusable")),
        "{answer}"
    );
    assert!(h.attached("dev-ci").len() == 1);

    // Detached right after the attach (inside the settle window): the event is believed.
    h.iam
        .outside(|o| o.detach(&harness::role_ref("dev-ci"), &arn));
    assert!(h.attached("dev-ci").is_empty());
    let fields = sns_signing::notification(
        "m-detach",
        &now_text(),
        &detach_event("e-detach", "dev-ci", &arn).to_string(),
    );
    let (status, answer) = post(&base, "/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    assert!(
        answer["reason"].as_str().unwrap().contains(&name),
        "names the quarantine: {answer}"
    );
    h.eventually("re-attached from the event", || async {
        h.attached("dev-ci") == vec![arn.clone()]
    })
    .await;
    h.eventually("DriftRepaired recorded", || async {
        h.events(&name)
            .await
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "DriftRepaired")
    })
    .await;
    assert_eq!(
        h.metrics.iam_events.with_label_values(&["checked"]).get(),
        1
    );
    assert_eq!(h.metrics.iam_events.with_label_values(&["unheld"]).get(), 1);
    assert_eq!(
        h.metrics.iam_events.with_label_values(&["malformed"]).get(),
        1
    );

    // No controller runs (this replica stands by): the sender is asked to retry.
    h.stop().await;
    let (status, answer) = post(
        &base,
        "/events",
        detach_event("e-standby", "dev-ci", &arn).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (503, Some("retry_later")),
        "{answer}"
    );
}
