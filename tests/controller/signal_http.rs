//! `/sns` and `/events` on a real loopback listener, driven with reqwest: every answer code, the
//! metric outcomes, replay, forgery, topic, staleness, body limits, concurrency, subscription
//! confirmation and the API key. Intake is a recording stand-in here (the HTTP layer is under
//! test); `tests/signal_e2e.rs` uses the real intake against the emulator.

use crate::support::sns_signing;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::confirm::{ConfirmError, SubscriptionConfirmer};
use autoguardrails::controller::endpoints::keys::{ApiKeySource, ApiKeys, KeyError, StaticKey};
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::intake::{IntakeError, IntakeReport, PolicyOutcome, SignalIntake};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::controller::signal::sns::{ValidatedCertUrl, ValidatedSubscribeUrl};
use autoguardrails::metrics::Metrics;
use jiff::Timestamp;
use serde_json::Value;
use sns_signing::{CERT, CERT_URL, Signer, TOPIC};

const NOW: &str = "2026-12-01T10:00:30Z";
const SENT: &str = "2026-12-01T10:00:00.000Z";
const API_KEY: &str = "k3y-for-tests";

/// What the recording intake answers.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Ok,
    Transient,
    Invalid,
}

/// Records every signal; answers as told; can be held to test concurrency.
struct RecordingIntake {
    signals: Mutex<Vec<CostSignal>>,
    behaviour: Mutex<Behaviour>,
    gate: tokio::sync::Semaphore,
    entered: AtomicUsize,
}

impl RecordingIntake {
    fn new() -> Arc<Self> {
        Arc::new(RecordingIntake {
            signals: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Ok),
            gate: tokio::sync::Semaphore::new(1 << 20),
            entered: AtomicUsize::new(0),
        })
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn ids(&self) -> Vec<String> {
        self.signals
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }
}

#[async_trait]
impl SignalIntake for RecordingIntake {
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.unwrap();
        let behaviour = *self.behaviour.lock().unwrap();
        match behaviour {
            Behaviour::Transient => Err(IntakeError::Transient("emulated API outage".into())),
            Behaviour::Invalid => Err(IntakeError::Invalid("emulated invalid signal".into())),
            Behaviour::Ok => {
                self.signals.lock().unwrap().push(signal.clone());
                Ok(IntakeReport {
                    outcomes: vec![PolicyOutcome {
                        namespace: "autoguardrails".into(),
                        policy: "p".into(),
                        reason: "QuarantineCreated".into(),
                        quarantine: Some(format!("q-{}", signal.id)),
                        created: true,
                    }],
                    passed_over: 0,
                })
            }
        }
    }
}

/// Records confirmations and forwards them to a loopback server (the "injected test HTTPS
/// source": it only ever receives URLs that passed the SNS host rules).
struct LoopbackConfirmer {
    base: String,
    client: reqwest::Client,
    visited: Mutex<Vec<String>>,
}

#[async_trait]
impl SubscriptionConfirmer for LoopbackConfirmer {
    async fn confirm(&self, url: &ValidatedSubscribeUrl) -> Result<Option<String>, ConfirmError> {
        self.visited.lock().unwrap().push(url.as_str().to_string());
        let path_and_query = url
            .as_str()
            .split_once(".amazonaws.com")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
        let response = self
            .client
            .get(format!("{}{}", self.base, path_and_query))
            .send()
            .await
            .map_err(|e| ConfirmError::Transport(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ConfirmError::Status(response.status().as_u16()));
        }
        let body = response.text().await.unwrap_or_default();
        Ok(autoguardrails::controller::endpoints::confirm::subscription_arn(&body))
    }
}

/// A loopback HTTP server that records request paths (stands in for anything a confirmation
/// could be sent to).
struct Recorder {
    base: String,
    hits: Arc<Mutex<Vec<String>>>,
}

async fn recorder() -> Recorder {
    let hits: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(uri.to_string());
            "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-east-1:111111111111:cost-alerts:sub-1</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Recorder { base, hits }
}

/// A key source that can fail or rotate.
struct SwitchableKey {
    keys: Mutex<Result<ApiKeys, KeyError>>,
}

#[async_trait]
impl ApiKeySource for SwitchableKey {
    async fn keys(&self) -> Result<ApiKeys, KeyError> {
        self.keys.lock().unwrap().clone()
    }
}

struct Server {
    base: String,
    state: Arc<SignalState>,
    metrics: Arc<Metrics>,
    intake: Arc<RecordingIntake>,
    client: reqwest::Client,
}

impl Server {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post_with(path, body, &[]).await
    }

    async fn post_with(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "text/plain; charset=UTF-8")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request answered");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn count(&self, source: &str, outcome: &str) -> u64 {
        self.metrics
            .signals
            .with_label_values(&[source, outcome])
            .get()
    }
}

/// POSTs `chunks` × `size` bytes with chunked transfer encoding (no Content-Length) over a
/// raw socket; returns the status the server answered (possibly before the body ended).
async fn chunked_post(base: &str, path: &str, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'{'; size];
    for _ in 0..chunks {
        let framed = [format!("{size:x}\r\n").as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server answered and closed early
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn certificates() -> Arc<StaticCertificates> {
    let url = ValidatedCertUrl::parse(CERT_URL).unwrap();
    Arc::new(StaticCertificates::new().with(&url, CERT))
}

async fn start_with(
    settings: SignalSettings,
    configure: impl FnOnce(SignalState) -> SignalState,
) -> Server {
    let metrics = Arc::new(Metrics::new().unwrap());
    let intake = RecordingIntake::new();
    let now: Timestamp = NOW.parse().unwrap();
    let state = SignalState::new(&settings, intake.clone(), metrics.clone(), certificates())
        .unwrap()
        .with_clock(Arc::new(move || now))
        .with_api_keys(Arc::new(StaticKey(API_KEY.as_bytes().to_vec())));
    let state = Arc::new(configure(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = signals::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server {
        base,
        state,
        metrics,
        intake,
        client: reqwest::Client::new(),
    }
}

fn settings() -> SignalSettings {
    let mut settings = SignalSettings::default();
    settings.sns.allowed_topics = vec![TOPIC.to_string()];
    settings
}

async fn start() -> Server {
    start_with(settings(), |s| s).await
}

fn anomaly_notification(signer: &Signer, message_id: &str, anomaly: &str) -> String {
    let fields = sns_signing::notification(
        message_id,
        SENT,
        &sns_signing::anomaly_message(anomaly, "222222222222", 912.4),
    );
    signer.envelope(&fields, "2")
}

#[tokio::test]
async fn signed_notification_is_handed_to_intake_once() {
    let server = start().await;
    let signer = Signer::test();
    let body = anomaly_notification(&signer, "m-1", "anomaly-1");
    let (status, answer) = server.post("/sns", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(server.intake.ids(), ["anomaly-1"]);
    let signal = server.intake.signals.lock().unwrap()[0].clone();
    assert_eq!(signal.account_id, "222222222222");
    assert_eq!(signal.impact_usd, 912.4);

    // the same delivery again: authentic, already processed, not handed over twice
    let (status, answer) = server.post("/sns", body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "replayed");
    assert_eq!(server.intake.ids().len(), 1);
    assert_eq!(server.count("sns", "accepted"), 1);
    assert_eq!(server.count("sns", "replayed"), 1);

    // a v1 signature works too
    let fields = sns_signing::notification(
        "m-v1",
        SENT,
        &sns_signing::anomaly_message("anomaly-v1", "222222222222", 10.0),
    );
    let (status, _) = server.post("/sns", signer.envelope(&fields, "1")).await;
    assert_eq!(status, 200);
    assert_eq!(server.intake.ids(), ["anomaly-1", "anomaly-v1"]);
}

#[tokio::test]
async fn forged_wrong_topic_stale_and_untrusted_are_refused_and_counted() {
    let server = start().await;
    let signer = Signer::test();

    // forged: a valid envelope whose Message was changed after signing
    let fields = sns_signing::notification(
        "m-forged",
        SENT,
        &sns_signing::anomaly_message("a-forged", "222222222222", 5.0),
    );
    let signature = signer.sign(&fields, "2");
    let mut tampered = fields.clone();
    tampered.insert(
        "Message".into(),
        sns_signing::anomaly_message("a-forged", "222222222222", 50000.0),
    );
    let forged = sns_signing::render(&tampered, "2", &signature, CERT_URL);
    let (status, answer) = server.post("/sns", forged).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["outcome"], "bad_signature");

    // signed with a key whose certificate is not the one at SigningCertURL
    let other = Signer::other().envelope(&fields, "2");
    let (status, _) = server.post("/sns", other).await;
    assert_eq!(status, 403);

    // a topic that is not allowed
    let mut wrong_topic = fields.clone();
    wrong_topic.insert(
        "TopicArn".into(),
        "arn:aws:sns:us-east-1:999999999999:elsewhere".into(),
    );
    let (status, answer) = server
        .post("/sns", signer.envelope(&wrong_topic, "2"))
        .await;
    assert_eq!(status, 403);
    assert_eq!(answer["outcome"], "topic_not_allowed");

    // stale (2 h old) and from the future (1 h ahead)
    for (id, timestamp) in [
        ("m-old", "2026-12-01T08:00:00.000Z"),
        ("m-future", "2026-12-01T11:00:30.000Z"),
    ] {
        let mut fields = fields.clone();
        fields.insert("MessageId".into(), id.into());
        fields.insert("Timestamp".into(), timestamp.into());
        let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
        assert_eq!(status, 403, "{id}");
        assert_eq!(answer["outcome"], "stale");
    }

    // certificate URLs that are not SNS: http, look-alike host, no .pem
    for url in [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://127.0.0.1/cert.pem",
    ] {
        let body = sns_signing::render(&fields, "2", &signature, url);
        let (status, answer) = server.post("/sns", body).await;
        assert_eq!(status, 403, "{url}");
        assert_eq!(answer["outcome"], "bad_signature", "{url}");
    }

    assert!(server.intake.ids().is_empty());
    assert_eq!(server.count("sns", "bad_signature"), 6);
    assert_eq!(server.count("sns", "topic_not_allowed"), 1);
    assert_eq!(server.count("sns", "stale"), 2);
    assert_eq!(server.count("sns", "accepted"), 0);
    // the forged MessageId did not enter the replay cache: the genuine message still works
    let (status, _) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(status, 200);
    assert_eq!(server.intake.ids(), ["a-forged"]);
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let server = start().await;
    for body in [
        b"".to_vec(),
        b"not json".to_vec(),
        b"{\"Type\":\"Notification\"}".to_vec(),
        b"[1,2,3]".to_vec(),
        vec![0xff, 0xfe, 0x7b, 0x00],
    ] {
        let (status, answer) = server.post("/sns", body.clone()).await;
        assert_eq!(
            status,
            400,
            "{:?} -> {answer}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(answer["outcome"], "malformed");
    }
    // 10 MB: 413, by Content-Length and by streaming (no length declared)
    let big = vec![b'a'; 10 * 1024 * 1024];
    let (status, answer) = server.post("/sns", big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(answer["outcome"], "too_large");
    let status = chunked_post(&server.base, "/sns", 160, 64 * 1024).await;
    assert_eq!(status, 413);
    assert_eq!(server.count("sns", "too_large"), 2);
    assert_eq!(server.count("sns", "malformed"), 5);
}

#[tokio::test]
async fn authentic_but_unusable_messages_are_acknowledged() {
    let server = start().await;
    let signer = Signer::test();
    // an unknown payload format
    let fields = sns_signing::notification("m-text", SENT, "hello, this is not a cost alert");
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "unusable");
    assert!(answer["reason"].as_str().unwrap().contains("UnknownFormat"));
    // a non-USD budget
    let eur = include_str!("../fixtures/signals/budget-eur.txt");
    let fields = sns_signing::notification("m-eur", SENT, eur);
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(status, 200);
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("UnsupportedCurrency")
    );
    // intake says the signal is invalid forever
    server.intake.set(Behaviour::Invalid);
    let (status, answer) = server
        .post(
            "/sns",
            anomaly_notification(&signer, "m-invalid", "a-invalid"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "unusable");
    assert_eq!(server.count("sns", "unusable"), 3);
    assert!(server.intake.ids().is_empty());
}

#[tokio::test]
async fn transient_intake_failure_asks_sns_to_retry_and_the_retry_works() {
    let server = start().await;
    let signer = Signer::test();
    let body = anomaly_notification(&signer, "m-retry", "a-retry");
    server.intake.set(Behaviour::Transient);
    let (status, answer) = server.post("/sns", body.clone()).await;
    assert_eq!(status, 503);
    assert_eq!(answer["outcome"], "retry_later");
    server.intake.set(Behaviour::Ok);
    let (status, answer) = server.post("/sns", body).await;
    assert_eq!(
        status, 200,
        "the redelivery must not count as a replay: {answer}"
    );
    assert_eq!(server.intake.ids(), ["a-retry"]);
}

#[tokio::test]
async fn unknown_certificate_is_refused() {
    let server = start_with(settings(), |s| s).await;
    let signer = Signer::test();
    let fields = sns_signing::notification(
        "m-cert",
        SENT,
        &sns_signing::anomaly_message("a-cert", "222222222222", 5.0),
    );
    let signature = signer.sign(&fields, "2");
    let other_url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-unknown.pem";
    let (status, answer) = server
        .post(
            "/sns",
            sns_signing::render(&fields, "2", &signature, other_url),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(answer["outcome"], "bad_signature");
}

#[tokio::test]
async fn subscription_confirmation_goes_only_to_validated_sns_urls() {
    let target = recorder().await;
    let confirmer = Arc::new(LoopbackConfirmer {
        base: target.base.clone(),
        client: reqwest::Client::new(),
        visited: Mutex::new(Vec::new()),
    });
    let server = start_with(settings(), |s| s.with_confirmer(confirmer.clone())).await;
    let signer = Signer::test();

    // a SubscribeURL on the loopback server itself: refused before anything is visited
    let loopback = format!(
        "{}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=x",
        target.base
    );
    let fields = sns_signing::confirmation("SubscriptionConfirmation", "c-loop", SENT, &loopback);
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "1")).await;
    assert_eq!(status, 403, "{answer}");
    assert!(target.hits.lock().unwrap().is_empty());
    assert!(confirmer.visited.lock().unwrap().is_empty());

    // a disallowed topic is never confirmed
    let sns_url = format!(
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc"
    );
    let mut other_topic =
        sns_signing::confirmation("SubscriptionConfirmation", "c-other", SENT, &sns_url);
    other_topic.insert(
        "TopicArn".into(),
        "arn:aws:sns:us-east-1:999999999999:x".into(),
    );
    let (status, _) = server
        .post("/sns", signer.envelope(&other_topic, "1"))
        .await;
    assert_eq!(status, 403);
    assert!(confirmer.visited.lock().unwrap().is_empty());

    // an SNS URL for an allowed topic goes through the injected source
    let fields = sns_signing::confirmation("SubscriptionConfirmation", "c-ok", SENT, &sns_url);
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "subscription_confirmed");
    assert_eq!(
        confirmer.visited.lock().unwrap().as_slice(),
        [sns_url.as_str()]
    );
    assert_eq!(target.hits.lock().unwrap().len(), 1);
    assert!(target.hits.lock().unwrap()[0].contains("Action=ConfirmSubscription"));
    let records = server.state.confirmations();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].result, "confirmed");
    assert_eq!(
        records[0].subscription_arn.as_deref(),
        Some("arn:aws:sns:us-east-1:111111111111:cost-alerts:sub-1")
    );

    // an unsubscribe is recorded, never visited
    let fields = sns_signing::confirmation("UnsubscribeConfirmation", "c-unsub", SENT, &sns_url);
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "unsubscribe_noted");
    assert_eq!(confirmer.visited.lock().unwrap().len(), 1);
    assert_eq!(server.state.confirmations().len(), 2);
    assert_eq!(server.count("sns", "subscription_confirmed"), 1);
}

#[tokio::test]
async fn without_a_confirmer_subscriptions_are_only_recorded() {
    let server = start().await;
    let signer = Signer::test();
    let sns_url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc";
    let fields = sns_signing::confirmation("SubscriptionConfirmation", "c-1", SENT, sns_url);
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "subscription_ignored");
    assert_eq!(server.state.confirmations()[0].result, "ignored");
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let mut limited = settings();
    limited.max_concurrency = 1;
    let server = start_with(limited, |s| s).await;
    let signer = Signer::test();
    // hold intake: the first request occupies the only slot
    let held = server.intake.gate.acquire_many(1 << 20).await.unwrap();
    let first = anomaly_notification(&signer, "m-slow", "a-slow");
    let (base, client) = (server.base.clone(), server.client.clone());
    let pending = tokio::spawn(async move {
        client
            .post(format!("{base}/sns"))
            .body(first)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    while server.intake.entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, answer) = server
        .post(
            "/sns",
            anomaly_notification(&signer, "m-second", "a-second"),
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(answer["outcome"], "overloaded");
    drop(held);
    assert_eq!(pending.await.unwrap(), 200);
    assert_eq!(server.intake.ids(), ["a-slow"]);
}

#[tokio::test]
async fn events_need_the_api_key() {
    let server = start().await;
    let event = include_str!("../fixtures/signals/eventbridge-anomaly.json");
    let (status, answer) = server.post("/events", event).await;
    assert_eq!(status, 401);
    assert_eq!(answer["outcome"], "unauthorized");
    let (status, _) = server
        .post_with("/events", event, &[("x-api-key", "wrong")])
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .post_with("/events", event, &[("x-api-key", "k3y-for-test")])
        .await;
    assert_eq!(status, 403);
    assert!(server.intake.ids().is_empty());
    let (status, answer) = server
        .post_with("/events", event, &[("x-api-key", API_KEY)])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(server.intake.ids(), ["eb-0000-1111-2222"]);
    // an event this controller does not consume: acknowledged, counted, not retried
    let other = include_str!("../fixtures/signals/eventbridge-iam-change.json");
    let (status, answer) = server
        .post_with("/events", other, &[("x-api-key", API_KEY)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["outcome"], "unusable");
    // a raw anomaly and a budget alert are accepted on /events too
    let (status, _) = server
        .post_with(
            "/events",
            include_str!("../fixtures/signals/anomaly-immediate.json"),
            &[("x-api-key", API_KEY)],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post_with(
            "/events",
            include_str!("../fixtures/signals/budget-actual-usd.txt"),
            &[("x-api-key", API_KEY)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.intake.ids().len(), 3);
    // transient intake failure: 503
    server.intake.set(Behaviour::Transient);
    let (status, _) = server
        .post_with("/events", event, &[("x-api-key", API_KEY)])
        .await;
    assert_eq!(status, 503);
    // oversized
    let (status, _) = server
        .post_with(
            "/events",
            vec![b' '; 2 * 1024 * 1024],
            &[("x-api-key", API_KEY)],
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(server.count("events", "unauthorized"), 3);
    assert_eq!(server.count("events", "accepted"), 3);
}

#[tokio::test]
async fn events_key_source_failure_and_rotation() {
    let keys = Arc::new(SwitchableKey {
        keys: Mutex::new(Err(KeyError::Missing("autoguardrails/events-key".into()))),
    });
    let server = start_with(settings(), |s| s.with_api_keys(keys.clone())).await;
    let event = include_str!("../fixtures/signals/eventbridge-anomaly.json");
    let (status, answer) = server
        .post_with("/events", event, &[("x-api-key", "old")])
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["outcome"], "retry_later");
    *keys.keys.lock().unwrap() = Ok(ApiKeys {
        current: b"new".to_vec(),
        previous: Some(b"old".to_vec()),
    });
    for key in ["old", "new"] {
        let (status, _) = server
            .post_with("/events", event, &[("x-api-key", key)])
            .await;
        assert_eq!(status, 200, "{key}");
    }
    *keys.keys.lock().unwrap() = Ok(ApiKeys {
        current: b"new".to_vec(),
        previous: None,
    });
    let (status, _) = server
        .post_with("/events", event, &[("x-api-key", "old")])
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn configured_api_key_header_name() {
    let mut custom = settings();
    custom.events.api_key_header = "x-agr-token".into();
    let server = start_with(custom, |s| s).await;
    let event = include_str!("../fixtures/signals/eventbridge-anomaly.json");
    let (status, _) = server
        .post_with("/events", event, &[("x-api-key", API_KEY)])
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .post_with("/events", event, &[("x-agr-token", API_KEY)])
        .await;
    assert_eq!(status, 200);
}

#[test]
fn settings_deserialise_from_the_config_file_shape() {
    let yaml = r#"
sns:
  allowedTopics: ["arn:aws:sns:us-east-1:111111111111:cost-alerts"]
  maxAge: 30m
events:
  apiKeySecret: { name: events-api-key, key: apiKey }
  apiKeyHeader: x-api-key
maxConcurrency: 16
"#;
    let settings: SignalSettings = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(settings.sns.max_age, jiff::SignedDuration::from_mins(30));
    assert_eq!(settings.max_concurrency, 16);
    assert_eq!(
        settings.events.api_key_secret.unwrap().name,
        "events-api-key"
    );
    assert_eq!(settings.max_body_bytes, 1024 * 1024);
    let error = serde_saphyr::from_str::<SignalSettings>("sns: { allowedTopic: [] }");
    assert!(error.is_err(), "unknown fields are rejected");
}

#[test]
fn outcome_labels_are_fixed_and_snake_case() {
    let mut seen = std::collections::BTreeSet::new();
    for outcome in signals::OUTCOMES {
        assert!(outcome.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        assert!(seen.insert(*outcome), "duplicate {outcome}");
    }
}

/// A fetcher whose network is down.
struct Unreachable;

#[async_trait]
impl autoguardrails::controller::endpoints::certs::CertificateFetcher for Unreachable {
    async fn fetch(
        &self,
        url: &ValidatedCertUrl,
    ) -> Result<Arc<Vec<u8>>, autoguardrails::controller::endpoints::certs::CertificateError> {
        Err(
            autoguardrails::controller::endpoints::certs::CertificateError::Transport {
                url: url.as_str().to_string(),
                message: "connection refused".into(),
            },
        )
    }
}

#[tokio::test]
async fn unreachable_certificate_host_is_a_retry_and_not_remembered() {
    let metrics = Arc::new(Metrics::new().unwrap());
    let intake = RecordingIntake::new();
    let now: Timestamp = NOW.parse().unwrap();
    let state = Arc::new(
        SignalState::new(
            &settings(),
            intake.clone(),
            metrics.clone(),
            Arc::new(Unreachable),
        )
        .unwrap()
        .with_clock(Arc::new(move || now)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, signals::router(state)).await.unwrap() });
    let body = anomaly_notification(&Signer::test(), "m-net", "a-net");
    let response = reqwest::Client::new()
        .post(format!("{base}/sns"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        metrics
            .signals
            .with_label_values(&["sns", "retry_later"])
            .get(),
        1
    );
    assert!(intake.ids().is_empty());
    // /events is not served without an API key source
    let response = reqwest::Client::new()
        .post(format!("{base}/events"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

/// Issue 18, defect 6: a redelivery overlapping the first delivery (still in intake) is asked to
/// retry, never answered "replayed"; when the first then fails, the next redelivery is handled.
#[tokio::test]
async fn an_overlapping_redelivery_is_asked_to_retry_and_the_signal_is_not_lost() {
    let server = start().await;
    let signer = Signer::test();
    let body = anomaly_notification(&signer, "m-overlap", "a-overlap");
    server.intake.set(Behaviour::Transient);
    let held = server.intake.gate.acquire_many(1 << 20).await.unwrap();
    let (base, client, first) = (server.base.clone(), server.client.clone(), body.clone());
    let pending = tokio::spawn(async move {
        client
            .post(format!("{base}/sns"))
            .body(first)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    while server.intake.entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, answer) = server.post("/sns", body.clone()).await;
    assert_eq!(
        status, 503,
        "an overlapping redelivery must not be acknowledged: {answer}"
    );
    drop(held);
    assert_eq!(pending.await.unwrap(), 503, "the first delivery failed");
    server.intake.set(Behaviour::Ok);
    let (status, answer) = server.post("/sns", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(server.intake.ids(), ["a-overlap"]);
}

/// Issue 18, defect 6: a client that disconnects while its delivery is in intake does not burn
/// the MessageId: the redelivery reaches intake.
#[tokio::test]
async fn a_disconnected_delivery_does_not_make_its_redelivery_a_replay() {
    let server = start().await;
    let signer = Signer::test();
    let body = anomaly_notification(&signer, "m-gone", "a-gone");
    let held = server.intake.gate.acquire_many(1 << 20).await.unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let answer = impatient
        .post(format!("{}/sns", server.base))
        .body(body.clone())
        .send()
        .await;
    assert!(answer.is_err(), "the client gave up");
    // Give the server a moment to notice the closed connection, then let intake go on.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(held);
    let mut accepted = false;
    for _ in 0..50 {
        let (status, answer) = server.post("/sns", body.clone()).await;
        if status == 200 {
            accepted = true;
            break;
        }
        assert_eq!(status, 503, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(accepted);
    assert_eq!(
        server.intake.ids(),
        ["a-gone"],
        "the signal reached intake exactly once"
    );
}

/// Issue 18: `maxFutureSkew` is bounded (a message dated far ahead would stay acceptable after
/// its id left the replay cache).
#[tokio::test]
async fn an_unbounded_max_future_skew_is_refused() {
    let mut settings = settings();
    settings.sns.max_future_skew = jiff::SignedDuration::from_hours(24);
    let result = SignalState::new(
        &settings,
        RecordingIntake::new(),
        Arc::new(Metrics::new().unwrap()),
        certificates(),
    );
    assert!(result.is_err(), "a 24 h future skew must be refused");
    settings.sns.max_future_skew = jiff::SignedDuration::from_mins(30);
    assert!(
        SignalState::new(
            &settings,
            RecordingIntake::new(),
            Arc::new(Metrics::new().unwrap()),
            certificates(),
        )
        .is_ok()
    );
}

// ---- The velocity source (issue 26) on both endpoints ----

/// A tracker over the bundled snapshot that signals at USD 5/hour.
fn velocity_tracker() -> Arc<autoguardrails::controller::velocity::Tracker> {
    use autoguardrails::controller::velocity::{Estimator, PriceTable, Settings, Tracker};
    let settings = Settings {
        signal_at_usd: 5.0,
        ..Settings::default()
    };
    Arc::new(Tracker::with_estimator(
        Estimator::new(settings, PriceTable::bundled().unwrap()),
        None,
    ))
}

/// The RunInstances fixture (2 x p3.2xlarge = USD 6.12/hour by ci-deployer) at `NOW`.
fn cloudtrail_launch(event_id: &str) -> String {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/velocity/run-instances.json")).unwrap();
    event["detail"]["eventID"] = event_id.into();
    event["detail"]["eventTime"] = SENT.into();
    event.to_string()
}

#[tokio::test]
async fn a_cloudtrail_event_via_sns_is_counted_and_its_crossing_handed_to_intake() {
    let server = start_with(settings(), |s| s.with_velocity(velocity_tracker())).await;
    let signer = Signer::test();
    let fields = sns_signing::notification("m-velocity-1", SENT, &cloudtrail_launch("ev-1"));
    let body = signer.envelope(&fields, "2");
    let (status, answer) = server.post("/sns", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "accepted", "{answer}");
    let signals = server.intake.signals.lock().unwrap().clone();
    assert_eq!(signals.len(), 1);
    assert_eq!(
        signals[0].source,
        autoguardrails::controller::crd::SignalSource::Velocity
    );
    assert_eq!(
        signals[0].principal.as_deref(),
        Some("arn:aws:iam::123456789012:role/ci-deployer")
    );
    assert_eq!(signals[0].impact_usd, 6.12);
    // The same SNS message again is a replay; the same event in a new message counts once.
    let (_, again) = server.post("/sns", body).await;
    assert_eq!(again["outcome"], "replayed");
    let fields = sns_signing::notification("m-velocity-2", SENT, &cloudtrail_launch("ev-1"));
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("replayed"))
    );
    assert_eq!(server.intake.signals.lock().unwrap().len(), 1);
    // An authentic message holding an unreadable event is never retried (200, unusable).
    let mut broken: Value = serde_json::from_str(&cloudtrail_launch("ev-2")).unwrap();
    broken["detail"]
        .as_object_mut()
        .unwrap()
        .remove("awsRegion");
    let fields = sns_signing::notification("m-velocity-3", SENT, &broken.to_string());
    let (status, answer) = server.post("/sns", signer.envelope(&fields, "2")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("unusable"))
    );
    assert!(
        answer["reason"].as_str().unwrap().contains("awsRegion"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_crossing_intake_could_not_take_is_retried_by_the_redelivery() {
    let server = start_with(settings(), |s| s.with_velocity(velocity_tracker())).await;
    let key = [("x-api-key", API_KEY)];
    server.intake.set(Behaviour::Transient);
    let (status, answer) = server
        .post_with("/events", cloudtrail_launch("ev-r"), &key)
        .await;
    assert_eq!(status, 503, "the sender must retry: {answer}");
    assert_eq!(answer["outcome"], "retry_later");
    // EventBridge redelivers the same event: counted once, the signal handed over again.
    server.intake.set(Behaviour::Ok);
    let (status, answer) = server
        .post_with("/events", cloudtrail_launch("ev-r"), &key)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "replayed");
    assert!(
        answer["reason"].as_str().unwrap().contains("USD 6.12/hour"),
        "{answer}"
    );
    assert_eq!(server.intake.signals.lock().unwrap().len(), 1);
    // Taken now: a further redelivery hands nothing over.
    server
        .post_with("/events", cloudtrail_launch("ev-r"), &key)
        .await;
    assert_eq!(server.intake.signals.lock().unwrap().len(), 1);
    assert_eq!(server.count("events", "retry_later"), 1);
}

#[tokio::test]
async fn without_velocity_a_cloudtrail_event_stays_an_unsupported_event() {
    let server = start().await;
    let (status, answer) = server
        .post_with(
            "/events",
            cloudtrail_launch("ev-off"),
            &[("x-api-key", API_KEY)],
        )
        .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("unusable"))
    );
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("UnsupportedEvent"),
        "{answer}"
    );
    assert!(server.intake.signals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_standby_replica_makes_the_sender_retry_velocity_events() {
    let tracker = velocity_tracker();
    let server = start_with(settings(), |s| s.with_velocity(tracker.clone())).await;
    let key = [("x-api-key", API_KEY)];
    let now: Timestamp = NOW.parse().unwrap();
    tracker.stand_by(now);
    let (status, answer) = server
        .post_with("/events", cloudtrail_launch("ev-s"), &key)
        .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (503, Some("retry_later"))
    );
    assert!(tracker.burns().is_empty(), "a standby counts nothing");
    // Other signals are still served by a standby (decision 051).
    let (status, _) = server
        .post_with(
            "/events",
            include_str!("../fixtures/signals/eventbridge-anomaly.json"),
            &key,
        )
        .await;
    assert_eq!(status, 200);
    // Once it leads, the retry is counted.
    tracker.lead(now);
    let (status, answer) = server
        .post_with("/events", cloudtrail_launch("ev-s"), &key)
        .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
}
