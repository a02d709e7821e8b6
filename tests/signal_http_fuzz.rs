//! Hostile input against the real `/sns` and `/events` handlers on a loopback listener: random
//! bytes, mutated signed envelopes, huge and deeply nested JSON, wrong encodings. The server must
//! answer every request with a documented status, never hand anything to intake, keep working
//! afterwards, and keep its memory bounded.

#[path = "support/sns_signing.rs"]
mod sns_signing;

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::keys::StaticKey;
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::intake::{IntakeError, IntakeReport, SignalIntake};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::controller::signal::sns::ValidatedCertUrl;
use autoguardrails::metrics::Metrics;
use jiff::Timestamp;
use proptest::prelude::*;
use sns_signing::{CERT, CERT_URL, Signer, TOPIC};

const API_KEY: &str = "fuzz-key";
const SENT: &str = "2026-12-01T10:00:00.000Z";

struct CountingIntake {
    signals: Mutex<Vec<String>>,
}

#[async_trait]
impl SignalIntake for CountingIntake {
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError> {
        self.signals.lock().unwrap().push(signal.id.clone());
        Ok(IntakeReport::default())
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    base: String,
    client: reqwest::Client,
    intake: Arc<CountingIntake>,
    signed: String,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let intake = Arc::new(CountingIntake {
            signals: Mutex::new(Vec::new()),
        });
        let mut settings = SignalSettings::default();
        settings.sns.allowed_topics = vec![TOPIC.to_string()];
        let url = ValidatedCertUrl::parse(CERT_URL).unwrap();
        let now: Timestamp = "2026-12-01T10:00:30Z".parse().unwrap();
        let state = SignalState::new(
            &settings,
            intake.clone(),
            Arc::new(Metrics::new().unwrap()),
            Arc::new(StaticCertificates::new().with(&url, CERT)),
        )
        .unwrap()
        .with_clock(Arc::new(move || now))
        .with_api_keys(Arc::new(StaticKey(API_KEY.as_bytes().to_vec())));
        let state = Arc::new(state);
        let base = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let router = signals::router(state);
            tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
            base
        });
        let fields = sns_signing::notification(
            "fuzz-base",
            SENT,
            &sns_signing::anomaly_message("fuzz-anomaly", "222222222222", 123.0),
        );
        let signed = Signer::test().envelope(&fields, "2");
        Harness {
            runtime,
            base,
            client: reqwest::Client::new(),
            intake,
            signed,
        }
    })
}

fn post(path: &str, body: Vec<u8>) -> u16 {
    let h = harness();
    h.runtime.block_on(async {
        h.client
            .post(format!("{}{path}", h.base))
            .header("x-api-key", API_KEY)
            .body(body)
            .send()
            .await
            .expect("the server answers")
            .status()
            .as_u16()
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn assert_documented(path: &str, status: u16) {
    let allowed: &[u16] = if path == "/sns" {
        &[400, 403, 413]
    } else {
        &[200, 400, 413]
    };
    assert!(allowed.contains(&status), "{path} answered {status}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_answered(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for path in ["/sns", "/events"] {
            let status = post(path, body.clone());
            assert_documented(path, status);
        }
    }

    #[test]
    fn mutated_signed_envelopes_never_reach_intake(
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = harness().signed.clone().into_bytes();
        let at = position.index(body.len());
        prop_assume!(body[at] != byte);
        body[at] = byte;
        let status = post("/sns", body.clone());
        assert!([400, 403, 413].contains(&status), "mutated at {at}: {status}");
        body.truncate(cut.index(body.len()));
        let status = post("/sns", body);
        assert!([400, 403, 413].contains(&status), "truncated: {status}");
    }

    #[test]
    fn random_json_is_answered(value in json_value()) {
        let body = value.to_string().into_bytes();
        for path in ["/sns", "/events"] {
            assert_documented(path, post(path, body.clone()));
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[ -~]{0,40}".prop_map(serde_json::Value::String),
        prop::sample::select(vec![
            "Notification",
            "SubscriptionConfirmation",
            TOPIC,
            CERT_URL,
            "2",
            SENT,
            "aws.ce",
            "Anomaly Detected",
        ])
        .prop_map(|s| serde_json::Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "Type",
                    "MessageId",
                    "TopicArn",
                    "Message",
                    "Timestamp",
                    "Signature",
                    "SignatureVersion",
                    "SigningCertURL",
                    "SubscribeURL",
                    "Token",
                    "detail-type",
                    "source",
                    "detail",
                    "anomalyId",
                    "impact",
                    "accountId",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..8,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn huge_nested_and_badly_encoded_bodies() {
    let before = rss_kib();
    let deep_array = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
    let deep_object = "{\"a\":".repeat(150_000) + "1" + &"}".repeat(150_000);
    let wide = format!(
        "[{}]",
        std::iter::repeat_n("{\"k\":[1,2,3]}", 70_000)
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_string = format!("{{\"Message\":\"{}\"}}", "x".repeat(1_000_000));
    let utf16: Vec<u8> = harness()
        .signed
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let latin1: Vec<u8> = "{\"Type\":\"Notification\",\"Message\":\"caf\u{e9}\"}"
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    let mut with_bom = vec![0xEF, 0xBB, 0xBF];
    with_bom.extend_from_slice(harness().signed.as_bytes());
    let deep_event = format!(
        "{{\"source\":\"aws.ce\",\"detail-type\":\"Anomaly Detected\",\"detail\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("deep array", deep_array.into_bytes()),
        ("deep object", deep_object.into_bytes()),
        ("wide", wide.into_bytes()),
        ("long string", long_string.into_bytes()),
        ("utf-16", utf16),
        ("latin-1", latin1),
        ("bom", with_bom),
        ("deep event", deep_event.into_bytes()),
        ("nul bytes", vec![0u8; 100_000]),
    ];
    for round in 0..3 {
        for (name, body) in &bodies {
            for path in ["/sns", "/events"] {
                let status = post(path, body.clone());
                assert!(
                    [200, 400, 403, 413].contains(&status),
                    "{name} on {path}: {status}"
                );
                if path == "/sns" {
                    assert_ne!(status, 200, "{name}");
                }
            }
        }
        if round == 0 {
            println!(
                "RSS after the first round: {} KiB (before: {before} KiB)",
                rss_kib()
            );
        }
    }
    let after = rss_kib();
    println!("RSS before {before} KiB, after {after} KiB");
    assert!(
        after.saturating_sub(before) < 256 * 1024,
        "memory grew by {} KiB",
        after.saturating_sub(before)
    );
    assert!(harness().intake.signals.lock().unwrap().is_empty());
    // still serving: the genuine message is accepted
    assert_eq!(post("/sns", harness().signed.clone().into_bytes()), 200);
}
