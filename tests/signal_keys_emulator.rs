//! The `/events` API key read from a Kubernetes Secret through the real kube client against the
//! emulator: rotation without restart (with the previous key's grace period), revocation by
//! deleting the Secret, and the endpoint answering accordingly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use autoguardrails::controller::endpoints::keys::{
    ApiKeySource, KeyError, SecretApiKey, SecretKeyRef, SecretKeySettings,
};
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::intake::{IntakeError, IntakeReport, SignalIntake};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::metrics::Metrics;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_emulator::Emulator;

fn secret(value: &[u8]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("events-api-key".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "apiKey".to_string(),
            ByteString(value.to_vec()),
        )])),
        ..Default::default()
    }
}

async fn set(api: &Api<Secret>, value: &[u8]) {
    api.patch(
        "events-api-key",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "data": { "apiKey": base64_encode(value) } })),
    )
    .await
    .unwrap();
}

fn base64_encode(value: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(value)
}

fn reference() -> SecretKeyRef {
    SecretKeyRef {
        namespace: None,
        name: "events-api-key".into(),
        key: "apiKey".into(),
    }
}

#[tokio::test]
async fn secret_key_rotates_without_restart_and_is_revoked_by_deletion() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &secret(b"first-key\n"))
        .await
        .unwrap();
    let source = SecretApiKey::new(
        client,
        &reference(),
        "default",
        SecretKeySettings {
            refresh: Duration::from_millis(100),
            previous_key_grace: Duration::from_millis(600),
            max_stale: Duration::from_secs(1),
        },
    );
    let keys = source.keys().await.unwrap();
    assert!(keys.accepts(b"first-key"), "trailing newline trimmed");
    assert!(keys.previous.is_none());

    set(&api, b"second-key").await;
    // within the refresh period the cached key is used
    assert!(source.keys().await.unwrap().accepts(b"first-key"));
    assert!(!source.keys().await.unwrap().accepts(b"second-key"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let keys = source.keys().await.unwrap();
    assert!(keys.accepts(b"second-key"));
    assert!(
        keys.accepts(b"first-key"),
        "previous key accepted during the grace period"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let keys = source.keys().await.unwrap();
    assert!(keys.accepts(b"second-key"));
    assert!(!keys.accepts(b"first-key"), "grace period over");

    set(&api, b"   ").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(source.keys().await, Err(KeyError::Empty(_))));

    api.delete("events-api-key", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(source.keys().await, Err(KeyError::Missing(_))));
}

struct RecordingIntake(Mutex<Vec<String>>);

#[async_trait]
impl SignalIntake for RecordingIntake {
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError> {
        self.0.lock().unwrap().push(signal.id.clone());
        Ok(IntakeReport::default())
    }
}

#[tokio::test]
async fn events_endpoint_follows_the_secret() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let api: Api<Secret> = Api::namespaced(client.clone(), "autoguardrails");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "autoguardrails"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    api.create(&PostParams::default(), &secret(b"key-one"))
        .await
        .unwrap();
    let mut settings = SignalSettings::default();
    settings.events.api_key_secret = Some(reference());
    settings.events.key_refresh = jiff::SignedDuration::from_millis(100);
    settings.events.previous_key_grace = jiff::SignedDuration::ZERO;
    let intake = Arc::new(RecordingIntake(Mutex::new(Vec::new())));
    let state = SignalState::production(
        &settings,
        client,
        "autoguardrails",
        intake.clone(),
        Arc::new(Metrics::new().unwrap()),
    )
    .unwrap();
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, signals::router(state)).await.unwrap() });
    let event = include_str!("fixtures/signals/eventbridge-anomaly.json");
    let post = |key: &'static str| {
        let url = format!("{base}/events");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-api-key", key)
                .body(event)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("key-one").await, 200);
    assert_eq!(post("key-two").await, 403);
    set(&api, b"key-two").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(post("key-two").await, 200, "rotated without restart");
    assert_eq!(post("key-one").await, 403, "no grace configured");
    api.delete("events-api-key", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        post("key-two").await,
        503,
        "no key: the sender retries later"
    );
    assert_eq!(intake.0.lock().unwrap().len(), 2);
}
