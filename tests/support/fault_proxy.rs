//! An HTTP proxy on loopback in front of moto that fails chosen AWS actions the way AWS does:
//! the status and the XML error body of the query protocol (IAM, STS), so the SDK inside the
//! real binary parses a genuine service error. Every other request is forwarded unchanged and
//! every action seen is recorded, so a test can also assert which calls were (not) made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use axum::response::Response;

/// A fault: the HTTP status and the AWS error code answered for an action.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Fault {
    /// `AccessDenied` (403), what a missing permission looks like.
    pub fn access_denied(action: &str) -> Fault {
        Fault {
            status: 403,
            code: "AccessDenied".into(),
            message: format!(
                "User: arn:aws:sts::123456789012:assumed-role/agr/test is not authorized to perform: iam:{action}"
            ),
        }
    }
}

#[derive(Default)]
struct Shared {
    faults: BTreeMap<String, Fault>,
    seen: Vec<String>,
    failed: Vec<String>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy forwarding to `upstream` (moto's URL).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            shared: shared.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { url, shared, task }
    }

    /// Answers `action` with `fault` until [`clear`](Self::clear).
    pub fn fail(&self, action: &str, fault: Fault) {
        self.shared
            .lock()
            .unwrap()
            .faults
            .insert(action.to_string(), fault);
    }

    /// Stops failing every action.
    pub fn clear(&self) {
        self.shared.lock().unwrap().faults.clear();
    }

    /// Every action seen so far (the query protocol's `Action`, or the JSON protocol's
    /// `X-Amz-Target` operation), in order, failed or not.
    pub fn seen(&self) -> Vec<String> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// The actions answered with a fault, in order.
    pub fn failed(&self) -> Vec<String> {
        self.shared.lock().unwrap().failed.clone()
    }

    /// How often `action` was seen.
    pub fn count(&self, action: &str) -> usize {
        self.seen().iter().filter(|a| *a == action).count()
    }

    /// The distinct actions seen.
    pub fn actions(&self) -> BTreeSet<String> {
        self.seen().into_iter().collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The action a request names: `Action=` in a form body or the query, else the operation of
/// `X-Amz-Target` (`AWSOrganizationsV20161128.ListChildren` → `ListChildren`).
fn action_of(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> String {
    let from_form = |text: &str| {
        form_urlencoded::parse(text.as_bytes())
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.to_string())
    };
    if let Some(action) = from_form(&String::from_utf8_lossy(body)) {
        return action;
    }
    if let Some(action) = uri.query().and_then(from_form) {
        return action;
    }
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_string()
}

async fn forward(State(state): State<ProxyState>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let action = action_of(&parts.uri, &parts.headers, &body);
    let fault = {
        let mut shared = state.shared.lock().unwrap();
        shared.seen.push(action.clone());
        let fault = shared.faults.get(&action).cloned();
        if fault.is_some() {
            shared.failed.push(action.clone());
        }
        fault
    };
    if let Some(fault) = fault {
        // The query protocol's error document, as IAM and STS send it.
        let xml = format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>00000000-0000-4000-8000-fa017fa017fa</RequestId></ErrorResponse>",
            fault.code, fault.message
        );
        return Response::builder()
            .status(StatusCode::from_u16(fault.status).unwrap())
            .header("content-type", "text/xml")
            .header("x-amzn-requestid", "00000000-0000-4000-8000-fa017fa017fa")
            .body(Body::from(xml))
            .unwrap();
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut upstream = state
        .client
        .request(method, format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name == "host" || name == "content-length" {
            continue;
        }
        upstream = upstream.header(name.as_str(), value.as_bytes());
    }
    let answer = match upstream.body(body.to_vec()).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(e.to_string()))
                .unwrap();
        }
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name == "content-length" || name == "transfer-encoding" || name == "connection" {
            continue;
        }
        response = response.header(name.as_str(), value.as_bytes());
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}
