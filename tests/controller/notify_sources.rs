//! Webhook URL sources: a Secret through the real kube client against the API emulator, and an
//! SSM SecureString through the real AWS SDK against moto; rotation without restart (cache TTL and
//! invalidation), missing values, unusable values (never echoed), and a worker that takes its
//! webhook from SSM (the flat policy format's `slack_webhook_ssm_param`).

use crate::support::moto;
use crate::support::quarantines;
use crate::support::slack_receiver;

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::aws::sdk::load_base_config;
use autoguardrails::controller::crd::{Mode, Quarantine, QuarantineStatus, SlackSpec};
use autoguardrails::controller::lifecycle::{self, Context};
use autoguardrails::controller::notify::source::{SourceError, WebhookRef, WebhookSources};
use autoguardrails::controller::notify::worker::{NotifySettings, Worker};
use autoguardrails::metrics::Metrics;
use aws_sdk_ssm::types::ParameterType;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::Emulator;
use moto::{MotoServer, unique};
use quarantines::{NAMESPACE, spec};
use slack_receiver::SlackReceiver;

async fn emulator() -> (Emulator, kube::Client) {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();
    (emulator, client)
}

async fn ssm() -> aws_sdk_ssm::Client {
    let config = load_base_config(&MotoServer::shared().settings()).await;
    aws_sdk_ssm::Client::new(&config)
}

async fn put_parameter(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

async fn put_secret(client: &kube::Client, name: &str, key: &str, value: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {key: value},
    }))
    .unwrap();
    secrets
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

fn secret_ref(name: &str) -> WebhookRef {
    WebhookRef::Secret {
        namespace: NAMESPACE.into(),
        name: name.into(),
        key: "url".into(),
    }
}

#[tokio::test]
async fn secret_source_reads_rotates_and_reports_what_is_missing() {
    let (_emulator, client) = emulator().await;
    let sources = WebhookSources::new(client.clone(), Duration::from_millis(300));
    let reference = secret_ref("slack-webhook");

    assert_eq!(
        sources.resolve(&reference).await,
        Err(SourceError::SecretNotFound {
            namespace: NAMESPACE.into(),
            name: "slack-webhook".into()
        })
    );
    put_secret(
        &client,
        "slack-webhook",
        "other",
        "https://hooks.slack.com/x",
    )
    .await;
    let missing_key = sources.resolve(&reference).await.unwrap_err();
    assert_eq!(missing_key.category(), "secret_key_missing");

    put_secret(
        &client,
        "slack-webhook",
        "url",
        "https://hooks.slack.com/services/T/B/one",
    )
    .await;
    let first = sources.resolve(&reference).await.unwrap();
    assert!(first.expose().ends_with("/one"));

    // Rotation: within the cache TTL the old URL is reused; after it, the new one is read.
    put_secret(
        &client,
        "slack-webhook",
        "url",
        "https://hooks.slack.com/services/T/B/two",
    )
    .await;
    assert!(
        sources
            .resolve(&reference)
            .await
            .unwrap()
            .expose()
            .ends_with("/one")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        sources
            .resolve(&reference)
            .await
            .unwrap()
            .expose()
            .ends_with("/two")
    );

    // Invalidation (after Slack refused the URL) reads at once.
    put_secret(
        &client,
        "slack-webhook",
        "url",
        "https://hooks.slack.com/services/T/B/three",
    )
    .await;
    sources.invalidate(&reference);
    assert!(
        sources
            .resolve(&reference)
            .await
            .unwrap()
            .expose()
            .ends_with("/three")
    );

    // An unusable value is reported without echoing it.
    put_secret(
        &client,
        "bad",
        "url",
        "http://hooks.slack.com/services/T/B/plain-http-secret",
    )
    .await;
    let error = sources.resolve(&secret_ref("bad")).await.unwrap_err();
    assert_eq!(error.category(), "invalid_webhook_url");
    assert!(!error.to_string().contains("plain-http-secret"), "{error}");
}

#[tokio::test]
async fn ssm_source_reads_secure_strings_and_picks_up_rotation() {
    let (_emulator, client) = emulator().await;
    let ssm = ssm().await;
    let parameter = format!("/autoguardrails/{}", unique("slack-webhook"));
    let sources = WebhookSources::new(client, Duration::from_millis(300)).with_ssm(ssm.clone());
    let reference = WebhookRef::Ssm {
        parameter: parameter.clone(),
    };

    assert_eq!(
        sources.resolve(&reference).await,
        Err(SourceError::ParameterNotFound {
            parameter: parameter.clone()
        })
    );

    put_parameter(
        &ssm,
        &parameter,
        "https://hooks.slack.com/services/T/B/first",
    )
    .await;
    // Stored encrypted: reading it without decryption does not give the URL.
    let raw = ssm
        .get_parameter()
        .name(&parameter)
        .with_decryption(false)
        .send()
        .await
        .unwrap();
    println!(
        "moto SecureString without decryption: {:?}",
        raw.parameter().and_then(|p| p.value()).map(|v| v.len())
    );
    assert!(
        sources
            .resolve(&reference)
            .await
            .unwrap()
            .expose()
            .ends_with("/first")
    );

    put_parameter(
        &ssm,
        &parameter,
        "https://hooks.slack.com/services/T/B/second",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        sources
            .resolve(&reference)
            .await
            .unwrap()
            .expose()
            .ends_with("/second")
    );

    put_parameter(&ssm, &parameter, "not a url with-a-secret-inside").await;
    sources.invalidate(&reference);
    let error = sources.resolve(&reference).await.unwrap_err();
    assert_eq!(error.category(), "invalid_webhook_url");
    assert!(!error.to_string().contains("secret-inside"), "{error}");
}

#[tokio::test]
async fn a_worker_delivers_to_the_webhook_named_by_an_ssm_parameter() {
    let (emulator, client) = emulator().await;
    emulator
        .apply_crd_yaml(include_str!(
            "../../crds/quarantines.autoguardrails.io.yaml"
        ))
        .unwrap();
    let receiver = SlackReceiver::start().await;
    let ssm = ssm().await;
    let parameter = format!("/autoguardrails/{}", unique("flat-policy-webhook"));
    put_parameter(&ssm, &parameter, &receiver.url).await;

    let metrics = Arc::new(Metrics::new().unwrap());
    let settings = NotifySettings {
        namespaces: vec![NAMESPACE.into()],
        ..NotifySettings::default()
    };
    let worker = Worker::new(client.clone(), settings, metrics.clone())
        .unwrap()
        .with_ssm(ssm);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    // The Quarantine names the SSM parameter, as one created from a flat-format policy does.
    let mut quarantine_spec = spec(Mode::DryRun, Timestamp::now());
    quarantine_spec.notify.as_mut().unwrap().slack = Some(SlackSpec {
        webhook_secret_ref: None,
        webhook_ssm_parameter: Some(parameter.clone()),
        channel_hint: None,
    });
    let api: Api<Quarantine> = Api::namespaced(client.clone(), NAMESPACE);
    let quarantine = Quarantine::new("from-ssm", quarantine_spec);
    api.create(&PostParams::default(), &quarantine)
        .await
        .unwrap();
    let context = Context::from_spec(&quarantine.spec, Timestamp::now(), false).unwrap();
    let state = lifecycle::create(&context, Timestamp::now()).state;
    let mut status = QuarantineStatus::default();
    state.apply_to_status(&mut status);
    api.patch_status(
        "from-ssm",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"status": status})),
    )
    .await
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receiver.delivered().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0]["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Dry-run plan recorded")
    );
    assert!(
        delivered[0].get("channel").is_none(),
        "no channel hint, no channel"
    );
    // The worker counts the delivery once Slack's answer is read, a moment after the receiver
    // has the message.
    let delivered_count = || {
        metrics
            .slack_deliveries
            .with_label_values(&["delivered"])
            .get()
    };
    while delivered_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered_count(), 1);
    let _ = stop.send(());
    task.await.unwrap();
}
