//! The Slack interactions endpoint over real HTTP with real parts around it: Quarantines in the
//! emulator, a `response_url` receiver on loopback, and a SubjectAccessReview client whose API
//! server cannot be reached. The access check failing refuses (fail closed) with an ephemeral
//! answer and nothing is written; a button for a replaced Quarantine (other uid) no longer applies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoguardrails::controller::admission::StampKey;
use autoguardrails::controller::admission::server::KubeAccessReviewer;
use autoguardrails::controller::crd::quarantine::Quarantine;
use autoguardrails::controller::slack::intent::UserMapping;
use autoguardrails::controller::slack::request::{ReplayCache, SigningSecret};
use autoguardrails::controller::slack::server::{
    Interactions, KubeQuarantines, Secrets, router, system_now,
};
use autoguardrails::metrics::Metrics;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const SECRET: &str = "controller-test-secret";

async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/answer",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/answer", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn click(uid: &str, response_url: &str, serial: u32) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "team": {"id": "T0"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": "autoguardrails.approve", "action_ts": format!("{serial}"),
                     "value": json!({"ns": "default", "name": "q", "uid": uid}).to_string()}]
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

async fn post(http: &reqwest::Client, url: &str, body: &str) -> u16 {
    let secret = SigningSecret::new(SECRET).unwrap();
    let timestamp = system_now().to_string();
    http.post(url)
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            secret.sign(&timestamp, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn answer(received: &Arc<Mutex<Vec<Value>>>, count: usize) -> Value {
    for _ in 0..300 {
        if let Some(answer) = received.lock().unwrap().get(count - 1) {
            return answer.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no answer {count}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_access_check_refuses_and_stale_buttons_say_so() {
    let emulator = kube_emulator::Emulator::start().await.unwrap();
    emulator
        .apply_crd_yaml(&autoguardrails::controller::crd::crds_yaml().unwrap())
        .unwrap();
    let client = emulator.client().await.unwrap();
    let quarantines: Api<Quarantine> = Api::namespaced(client.clone(), "default");
    let created: Quarantine = serde_json::from_value(json!({
        "apiVersion": "autoguardrails.io/v1alpha1",
        "kind": "Quarantine",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {
            "policyRef": {"name": "p"},
            "targets": [{"kind": "IamUser", "arn": "arn:aws:iam::111111111111:user/exporter"}],
            "deny": {"actions": ["s3:PutObject"]},
            "mode": "Manual",
            "ttl": "2h"
        }
    }))
    .unwrap();
    let created = quarantines
        .create(&PostParams::default(), &created)
        .await
        .unwrap();
    quarantines
        .patch_status(
            "q",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "PendingApproval"}})),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    // An API server nobody listens on: every SubjectAccessReview fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = kube::Client::try_from(kube::Config::new(dead_url.parse().unwrap())).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let (answer_url, received) = receiver().await;
    let allowed = answer_url.trim_end_matches("answer").to_string();
    let state = Arc::new(Interactions {
        secret: Arc::new(Secrets::fixed(SigningSecret::new(SECRET).unwrap())),
        replays: ReplayCache::new(100),
        users: vec![UserMapping {
            slack_user_id: "U0ALICE".into(),
            email: None,
            team_id: None,
            username: "alice".into(),
            groups: vec![],
        }],
        reviewer: Arc::new(KubeAccessReviewer {
            client: unreachable,
        }),
        key: StampKey::derive(b"test"),
        quarantines: Arc::new(KubeQuarantines {
            client: client.clone(),
        }),
        recorder: None,
        metrics: metrics.clone(),
        http: reqwest::Client::new(),
        max_body_bytes: 16 * 1024,
        body_timeout: Duration::from_secs(5),
        extend_by: "2h".into(),
        now: system_now,
        emails: None,
        response_url_prefixes: vec![allowed],
        audit: None,
        modal: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/slack/interactions",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let http = reqwest::Client::new();

    // A response_url that is not the allowed receiver: refused whole, nothing read or posted.
    assert_eq!(
        post(&http, &url, &click(&uid, "https://evil.example/answer", 9)).await,
        400
    );
    assert_eq!(
        metrics
            .slack_interactions
            .with_label_values(&["bad_response_url"])
            .get(),
        1
    );

    assert_eq!(post(&http, &url, &click(&uid, &answer_url, 1)).await, 200);
    let refused = answer(&received, 1).await;
    assert_eq!(refused["response_type"], "ephemeral");
    let text = refused["text"].as_str().unwrap();
    assert!(
        text.contains("could not check whether \"alice\" may approve"),
        "{text}"
    );
    let q = quarantines.get("q").await.unwrap();
    assert!(
        !q.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("autoguardrails.io/approve"),
        "nothing written when the access check cannot be asked"
    );
    assert_eq!(
        metrics
            .slack_interactions
            .with_label_values(&["unavailable"])
            .get(),
        1
    );

    // A button for an older Quarantine of the same name.
    assert_eq!(
        post(&http, &url, &click("an-older-uid", &answer_url, 2)).await,
        200
    );
    let stale = answer(&received, 2).await;
    assert_eq!(stale["response_type"], "ephemeral");
    assert!(
        stale["text"]
            .as_str()
            .unwrap()
            .contains("replaced by a newer one"),
        "{stale}"
    );
    assert_eq!(
        metrics
            .slack_interactions
            .with_label_values(&["stale"])
            .get(),
        1
    );
}

/// The signing secret from an SSM SecureString through the real SDK against moto; a plain String
/// parameter and a missing one are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_secret_is_read_from_an_ssm_secure_string() {
    use autoguardrails::controller::slack::server::signing_secret_from_ssm;
    let config = autoguardrails::aws::sdk::load_base_config(
        &crate::support::moto::MotoServer::shared().settings(),
    )
    .await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let name = format!(
        "/autoguardrails/slack-signing-{}",
        crate::support::moto::unique("p")
    );
    let put = |name: String, kind: aws_sdk_ssm::types::ParameterType| {
        let ssm = ssm.clone();
        async move {
            ssm.put_parameter()
                .name(name)
                .value("from-ssm-secret\n")
                .r#type(kind)
                .overwrite(true)
                .send()
                .await
                .unwrap();
        }
    };
    let missing = signing_secret_from_ssm(&ssm, &name).await.unwrap_err();
    assert!(
        missing.contains("failed to read SSM parameter"),
        "{missing}"
    );
    put(
        name.clone(),
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    let secret = signing_secret_from_ssm(&ssm, &name).await.unwrap();
    assert_eq!(
        secret.sign("1", b"x"),
        SigningSecret::new("from-ssm-secret")
            .unwrap()
            .sign("1", b"x")
    );
    let plain = format!("{name}-plain");
    put(plain.clone(), aws_sdk_ssm::types::ParameterType::String).await;
    let refused = signing_secret_from_ssm(&ssm, &plain).await.unwrap_err();
    assert!(refused.contains("is not a SecureString"), "{refused}");

    // Re-read on a period: a new value becomes current, the old one stays accepted for the
    // grace; a parameter that can no longer be read keeps the current secret.
    let secrets = Arc::new(Secrets::rotating(secret, 60));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(autoguardrails::controller::slack::server::refresh_from_ssm(
        secrets.clone(),
        system_now,
        ssm.clone(),
        name.clone(),
        Duration::from_millis(100),
        stopped,
    ));
    ssm.put_parameter()
        .name(&name)
        .value("rotated-in-ssm")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let rotated = SigningSecret::new("rotated-in-ssm")
        .unwrap()
        .sign("1", b"x");
    let original = SigningSecret::new("from-ssm-secret")
        .unwrap()
        .sign("1", b"x");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ring = secrets.ring(system_now());
        let signatures: Vec<String> = ring
            .accepted(system_now())
            .iter()
            .map(|s| s.sign("1", b"x"))
            .collect();
        if signatures == [rotated.clone(), original.clone()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not refreshed: {signatures:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ssm.delete_parameter().name(&name).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ring = secrets.ring(system_now());
    assert_eq!(ring.accepted(system_now())[0].sign("1", b"x"), rotated);
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), refresher)
        .await
        .unwrap()
        .unwrap();
}
