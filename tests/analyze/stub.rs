//! A loopback HTTP server for the tests: records every request and answers through a handler
//! (CloudTrail's JSON protocol, the Account API, Bedrock Converse, GitHub's REST API).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    #[allow(dead_code)]
    pub query: String,
    pub target: String,
    pub body: String,
}

pub type Handler = Arc<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

pub struct Stub {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Stub {
    pub fn start(handler: Handler) -> Stub {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let handler = handler.clone();
                        let recorded = recorded.clone();
                        async move {
                            let request = Recorded {
                                method: method.to_string(),
                                path: uri.path().to_string(),
                                query: uri.query().unwrap_or_default().to_string(),
                                target: headers
                                    .get("x-amz-target")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string(),
                                body: String::from_utf8_lossy(&body).to_string(),
                            };
                            let (status, text) = handler(&request);
                            recorded.lock().unwrap().push(request);
                            (
                                StatusCode::from_u16(status).unwrap(),
                                [("content-type", "application/json")],
                                text,
                            )
                        }
                    },
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Stub {
            url: format!("http://{addr}"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}
