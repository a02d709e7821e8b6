//! A Slack incoming-webhook stand-in on loopback (axum): records every request and answers from a
//! script (200 `ok`, 429 with `Retry-After`, 500, any status with a Slack error code, a response
//! slower than the client's timeout, or a TCP reset), then with a default reply. Every response
//! closes its connection so each request arrives on a new one (which makes resets deterministic).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 200 `ok`.
    Ok,
    /// 429 `rate_limited` with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// 500 `internal_error`.
    ServerError,
    /// Any status with a Slack error code body, e.g. (404, "no_service").
    Status(u16, &'static str),
    /// 200 `ok`, but only after this long (beyond the client's timeout).
    Slow(Duration),
    /// Read the request, then reset the TCP connection (RST) without answering.
    Reset,
}

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The request path.
    pub path: String,
    /// `Content-Type`.
    pub content_type: String,
    /// The JSON body (Null when it was not JSON or not read).
    pub body: serde_json::Value,
    /// How it was answered.
    pub reply: Reply,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<Inner>>;

fn next_reply(shared: &Shared) -> Reply {
    let mut inner = shared.lock().unwrap();
    inner
        .script
        .pop_front()
        .or_else(|| inner.default.clone())
        .unwrap_or(Reply::Ok)
}

/// A running receiver.
pub struct SlackReceiver {
    /// The webhook URL, `http://127.0.0.1:PORT/services/T000/B000/<secret>`.
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl SlackReceiver {
    /// Starts on a free loopback port.
    pub async fn start() -> SlackReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Shared = Arc::default();
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let listener = ResettingListener {
            inner: listener,
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        SlackReceiver {
            url: format!("http://127.0.0.1:{port}/services/T000/B000/s3cr3t-w3bh00k-t0k3n"),
            shared,
            task,
        }
    }

    /// The secret part of the URL (to check it never leaks).
    pub fn secret(&self) -> &'static str {
        "s3cr3t-w3bh00k-t0k3n"
    }

    /// Answers the next requests with these replies, in order (after any still scripted).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().unwrap().script.extend(replies);
    }

    /// Answers with this once the script is used up (`None` = 200 `ok`).
    pub fn set_default(&self, reply: Option<Reply>) {
        self.shared.lock().unwrap().default = reply;
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// Bodies of the requests answered 200 (promptly), in order.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.reply == Reply::Ok)
            .map(|r| r.body)
            .collect()
    }
}

impl Drop for SlackReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = next_reply(&shared);
    shared.lock().unwrap().received.push(Received {
        at: Instant::now(),
        path: uri.path().to_string(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        reply: reply.clone(),
    });
    let close = [(header::CONNECTION, "close")];
    match reply {
        Reply::Ok => (StatusCode::OK, close, "ok").into_response(),
        Reply::RateLimited(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONNECTION, "close".to_string()),
                (header::RETRY_AFTER, seconds.to_string()),
            ],
            "rate_limited",
        )
            .into_response(),
        Reply::ServerError => {
            (StatusCode::INTERNAL_SERVER_ERROR, close, "internal_error").into_response()
        }
        Reply::Status(code, body) => {
            (StatusCode::from_u16(code).unwrap(), close, body).into_response()
        }
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, close, "ok").into_response()
        }
        // Handled by the listener; never reaches the router.
        Reply::Reset => (StatusCode::INTERNAL_SERVER_ERROR, close, "reset").into_response(),
    }
}

/// Accepts connections; when the next scripted reply is `Reset`, reads the request and resets the
/// connection instead of handing it to axum.
struct ResettingListener {
    inner: TcpListener,
    shared: Shared,
}

impl axum::serve::Listener for ResettingListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((mut stream, address)) = self.inner.accept().await else {
                continue;
            };
            let reset = {
                let mut inner = self.shared.lock().unwrap();
                let next = inner
                    .script
                    .front()
                    .cloned()
                    .or_else(|| inner.default.clone());
                if next == Some(Reply::Reset) {
                    inner.script.pop_front();
                    true
                } else {
                    false
                }
            };
            if !reset {
                return (stream, address);
            }
            let mut buffer = vec![0u8; 64 * 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
            self.shared.lock().unwrap().received.push(Received {
                at: Instant::now(),
                path: String::new(),
                content_type: String::new(),
                body: serde_json::Value::Null,
                reply: Reply::Reset,
            });
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
