//! AWS request ids of IAM writes (decision 234), through the real SDK against moto: an HTTP
//! forwarder between the SDK and moto notes the `x-amzn-requestid` of every answer, and the write
//! gate's record of each write (the input of its audit entry) must name exactly that id, for a
//! write that succeeded and for one AWS refused. A whole converge collects the ids of its writes
//! for the reconcile's audit entries, and a call nothing answered names none.

use crate::support::moto::{MotoServer, unique};

use std::sync::{Arc, Mutex};

use autoguardrails::aws::iam::capture_request_ids;
use autoguardrails::aws::sdk::{SdkIam, SdkSettings, load_base_config};
use autoguardrails::aws::{ErrorCode, Iam, Operation, PrincipalKind, PrincipalRef};
use autoguardrails::controller::enforce::recorder::Recorder;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;

fn role_ref(name: &str) -> PrincipalRef {
    PrincipalRef {
        kind: PrincipalKind::Role,
        name: name.to_string(),
    }
}

/// One answer the forwarder passed back: the IAM action asked and the request id moto gave.
#[derive(Clone, Debug)]
struct Seen {
    action: String,
    request_id: String,
    status: u16,
}

#[derive(Clone)]
struct Forward {
    target: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn forward(State(f): State<Forward>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let action = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = f
        .client
        .request(parts.method.clone(), format!("{}{path}", f.target))
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let answer = out.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let request_id = headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    f.seen.lock().unwrap().push(Seen {
        action,
        request_id,
        status: status.as_u16(),
    });
    let bytes = answer.bytes().await.unwrap();
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(bytes)).unwrap()
}

/// Starts the forwarder to `target`; returns its URL and what it saw.
async fn forwarder(target: &str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Forward {
        target: target.to_string(),
        client: reqwest::Client::new(),
        seen: seen.clone(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn seen_for(seen: &Arc<Mutex<Vec<Seen>>>, action: &str) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.action == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn each_iam_write_records_the_request_id_aws_answered_with_also_when_refused() {
    let moto = MotoServer::shared();
    let (url, seen) = forwarder(&moto.url).await;
    let settings = SdkSettings {
        endpoint_url: Some(url),
        ..moto.settings()
    };
    let config = load_base_config(&settings).await;
    let admin = aws_sdk_iam::Client::new(&config);
    let iam = SdkIam::new(&config, None);
    let role = unique("reqid-role");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    admin
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    let document = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:RunInstances","Resource":"*"}]}"#;

    let recorder = Recorder::new(&iam);
    recorder.allow_writes(true);
    let policy = recorder
        .create_policy(&unique("reqid-deny"), "/autoguardrails/", document, &[])
        .await
        .unwrap();
    let principal = role_ref(&role);
    // The whole run is captured too, as the reconcile captures its IAM step.
    let (attached, run_ids) =
        capture_request_ids(recorder.attach_policy(&principal, &policy.arn)).await;
    attached.unwrap();
    let refused = recorder
        .attach_policy(&role_ref(&unique("reqid-missing")), &policy.arn)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NoSuchEntity);

    let writes = recorder.writes();
    let ops: Vec<Operation> = writes.iter().map(|w| w.operation).collect();
    assert_eq!(
        ops,
        [
            Operation::CreatePolicy,
            Operation::AttachRolePolicy,
            Operation::AttachRolePolicy
        ]
    );
    let creates = seen_for(&seen, "CreatePolicy");
    let attaches = seen_for(&seen, "AttachRolePolicy");
    assert_eq!(creates.len(), 1);
    assert_eq!(attaches.len(), 2);
    assert_eq!(
        (attaches[0].status, attaches[1].status),
        (200, 404),
        "{attaches:?}"
    );
    for s in creates.iter().chain(&attaches) {
        assert!(
            !s.request_id.is_empty(),
            "moto answered without an id: {s:?}"
        );
    }
    assert_eq!(writes[0].request_ids, [creates[0].request_id.clone()]);
    assert_eq!(writes[1].request_ids, [attaches[0].request_id.clone()]);
    assert_eq!(writes[1].error, None);
    assert_eq!(writes[2].request_ids, [attaches[1].request_id.clone()]);
    assert_eq!(writes[2].error.as_deref(), Some("NoSuchEntity"));
    assert_eq!(run_ids, [attaches[0].request_id.clone()]);

    // Dry-run: nothing sent, no id.
    recorder.allow_writes(false);
    recorder
        .detach_policy(&principal, &policy.arn)
        .await
        .unwrap();
    let last = recorder.writes().pop().unwrap();
    assert!(!last.performed && last.request_ids.is_empty());
    assert!(seen_for(&seen, "DetachRolePolicy").is_empty());
}

#[tokio::test]
async fn a_write_nothing_answered_names_no_request_id() {
    // A port nobody listens on: the SDK gets no answer and so no id.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moto = MotoServer::shared();
    let settings = SdkSettings {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        ..moto.settings()
    };
    let config = load_base_config(&settings).await;
    let iam = SdkIam::new(&config, None);
    let recorder = Recorder::new(&iam);
    recorder.allow_writes(true);
    let error = recorder
        .attach_policy(&role_ref("nobody"), "arn:aws:iam::123456789012:policy/x")
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Transport);
    let writes = recorder.writes();
    assert_eq!(writes.len(), 1);
    assert!(writes[0].request_ids.is_empty());
    assert_eq!(writes[0].error.as_deref(), Some("Transport"));
}
