//! Shared test fixtures: the `Widget` custom resource and helpers.
#![allow(dead_code)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A small custom resource with a status subresource, printer columns and CEL rules.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "autoguardrails.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wdg",
    category = "all",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.size <= self.limit").message("size must not exceed limit"))]
pub struct WidgetSpec {
    /// Size.
    pub size: i64,
    /// Upper bound for size.
    #[serde(default = "default_limit")]
    pub limit: i64,
    /// Optional color.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// AWS account ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(a, a.matches('^[0-9]{12}$'))").message("accounts must be 12 digits"))]
    pub accounts: Vec<String>,
}

/// Default limit.
fn default_limit() -> i64 {
    10
}

/// Widget status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct WidgetStatus {
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A widget named `name` in `default` with the given size.
pub fn widget(name: &str, size: i64) -> Widget {
    let mut widget = Widget::new(
        name,
        WidgetSpec {
            size,
            limit: 10,
            ..WidgetSpec::default()
        },
    );
    widget.metadata.namespace = Some("default".to_string());
    widget
}

/// Installs the Widget CRD and waits until it is established.
pub async fn install_widget_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("create CRD");
    tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(
            crds,
            "widgets.autoguardrails.io",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .expect("await condition");
}

/// Extracts the API error code of a kube error.
pub fn error_code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Extracts the API error of a kube error.
pub fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it returns true or 10 s pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The test CA (PEM) that signed `fixtures/tls/server.pem` (SANs 127.0.0.1 and localhost).
pub const TEST_CA: &str = include_str!("../fixtures/tls/test-ca.pem");
/// A CA that signed nothing the tests serve.
pub const OTHER_CA: &str = include_str!("../fixtures/tls/other-ca.pem");
/// The server certificate signed by [`TEST_CA`].
pub const SERVER_CERT: &str = include_str!("../fixtures/tls/server.pem");
/// The server certificate's key.
pub const SERVER_KEY: &str = include_str!("../fixtures/tls/server-key.pem");

/// The emulator's HTTPS settings with the test certificate.
pub fn server_tls() -> kube_emulator::tls::ServerTls {
    kube_emulator::tls::ServerTls {
        certificate_pem: SERVER_CERT.to_string(),
        key_pem: SERVER_KEY.to_string(),
        ca_pem: TEST_CA.to_string(),
    }
}

/// How a test webhook answers one review: the `response` fields besides `uid` (e.g.
/// `{"allowed": false, "status": {...}}`), or None to answer nothing for this long.
pub type Answer = std::sync::Arc<dyn Fn(&serde_json::Value) -> WebhookAnswer + Send + Sync>;

/// What a test webhook does with one review.
pub enum WebhookAnswer {
    /// Answer an AdmissionReview with these `response` fields (uid is added).
    Respond(serde_json::Value),
    /// Answer this raw JSON body as is.
    Raw(serde_json::Value),
    /// Do not answer within this long.
    Stall(Duration),
}

/// A real HTTPS admission webhook on loopback (the test certificate), recording every review.
pub struct TestWebhook {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// (path, review) of every call.
    pub reviews: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl TestWebhook {
    /// Starts a webhook that answers every path with `answer`.
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let acceptor = kube_emulator::tls::acceptor(&server_tls()).unwrap();
        let reviews = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = reviews.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let answer = answer.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let answer = answer.clone();
                            let recorded = recorded.clone();
                            async move {
                                use http_body_util::BodyExt as _;
                                let path = request.uri().to_string();
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let review: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap();
                                recorded.lock().unwrap().push((path, review.clone()));
                                let reply = match answer(&review) {
                                    WebhookAnswer::Respond(mut response) => {
                                        response["uid"] = review["request"]["uid"].clone();
                                        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
                                    }
                                    WebhookAnswer::Raw(raw) => raw,
                                    WebhookAnswer::Stall(duration) => {
                                        tokio::time::sleep(duration).await;
                                        serde_json::json!({})
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(
                                        serde_json::to_vec(&reply).unwrap(),
                                    )),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, reviews }
    }

    /// The reviews received so far.
    pub fn reviews(&self) -> Vec<(String, serde_json::Value)> {
        self.reviews.lock().unwrap().clone()
    }
}

/// Base64 of a PEM, for `caBundle`.
pub fn ca_bundle(pem: &str) -> String {
    kube_emulator::tls::base64_of(pem)
}
