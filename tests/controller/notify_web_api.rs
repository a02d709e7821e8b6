//! The Slack Web API client of `notifications.postWith: bot` (decision 235) against a local HTTP
//! receiver playing `chat.postMessage` and `chat.update`: the bot token goes in the
//! Authorization header and the channel in the body; `ok:false` answers are permanent refusals
//! with Slack's code, except `ratelimited`; a 429 honours `Retry-After`, or ends the call when it
//! is longer than the client waits in place; a receiver slower than the timeout is a timeout,
//! retried; a post answered without `ts` is refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoguardrails::controller::notify::slack::SlackSettings;
use autoguardrails::controller::notify::web_api::{BotToken, SlackWebApi};
use autoguardrails::controller::notify::{Message, NotifyError};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// One scripted answer: status, Retry-After, body, delay.
type Answer = (u16, Option<u64>, Value, Duration);

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(String, String, Value)>>>,
}

async fn receiver(script: Vec<Answer>) -> Receiver {
    let seen: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/api/{method}",
        axum::routing::post(
            move |axum::extract::Path(method): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  axum::Json(body): axum::Json<Value>| {
                let (store, script) = (store.clone(), script.clone());
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    store.lock().unwrap().push((method, auth, body));
                    let (status, after, answer, delay) =
                        script.lock().unwrap().pop_front().unwrap_or((
                            200,
                            None,
                            json!({"ok": true, "channel": "C1", "ts": "1.000001"}),
                            Duration::ZERO,
                        ));
                    tokio::time::sleep(delay).await;
                    let mut response = (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(answer),
                    )
                        .into_response();
                    if let Some(after) = after {
                        response
                            .headers_mut()
                            .insert("retry-after", after.to_string().parse().unwrap());
                    }
                    response
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, seen }
}

fn client(url: &str, timeout: Duration) -> SlackWebApi {
    SlackWebApi::new(
        url,
        BotToken::new("xoxb-test\n").unwrap(),
        SlackSettings {
            request_timeout: timeout,
            connect_timeout: Duration::from_secs(2),
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(5),
        },
    )
    .unwrap()
}

fn message() -> Message {
    Message {
        text: "hello".into(),
        blocks: vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": "hello"}})],
        channel: None,
    }
}

fn answer(status: u16, after: Option<u64>, body: Value) -> Answer {
    (status, after, body, Duration::ZERO)
}

#[tokio::test]
async fn posts_with_the_token_and_updates_by_channel_and_ts() {
    let slack = receiver(vec![]).await;
    let api = client(&slack.url, Duration::from_secs(5));
    let posted = api.post_message("C1", &message()).await.unwrap();
    assert_eq!(
        (posted.channel.as_str(), posted.ts.as_str()),
        ("C1", "1.000001")
    );
    assert_eq!(
        api.update_message("C1", "1.000001", &message()).await,
        Ok(1)
    );
    let seen = slack.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "chat.postMessage");
    assert_eq!(seen[0].1, "Bearer xoxb-test");
    assert_eq!(seen[0].2["channel"], "C1");
    assert_eq!(seen[1].0, "chat.update");
    assert_eq!(
        (&seen[1].2["channel"], &seen[1].2["ts"]),
        (&json!("C1"), &json!("1.000001"))
    );
}

#[tokio::test]
async fn ok_false_is_permanent_except_rate_limits_and_a_post_without_ts_is_refused() {
    let slack = receiver(vec![
        answer(
            200,
            None,
            json!({"ok": false, "error": "message_not_found"}),
        ),
        answer(200, None, json!({"ok": false, "error": "ratelimited"})),
        answer(200, None, json!({"ok": true})),
        answer(200, None, json!({"ok": true})),
    ])
    .await;
    let api = client(&slack.url, Duration::from_secs(5));
    let refused = api
        .update_message("C1", "1.1", &message())
        .await
        .unwrap_err();
    assert!(refused.is_permanent());
    assert!(
        matches!(&refused, NotifyError::Rejected { code, attempts: 1, .. } if code == "message_not_found"),
        "{refused:?}"
    );
    // ratelimited in the body: waited and tried again (the second answer is ok).
    assert_eq!(api.update_message("C1", "1.1", &message()).await, Ok(2));
    let incomplete = api.post_message("C1", &message()).await.unwrap_err();
    assert!(incomplete.is_permanent(), "{incomplete:?}");
}

#[tokio::test]
async fn a_long_retry_after_ends_the_call_and_a_slow_answer_times_out_and_is_retryable() {
    let slack = receiver(vec![
        answer(429, Some(60), json!({"ok": false, "error": "ratelimited"})),
        (200, None, json!({"ok": true}), Duration::from_secs(3)),
        (200, None, json!({"ok": true}), Duration::from_secs(3)),
        answer(
            503,
            None,
            json!({"ok": false, "error": "service_unavailable"}),
        ),
        answer(
            503,
            None,
            json!({"ok": false, "error": "service_unavailable"}),
        ),
    ])
    .await;
    let api = client(&slack.url, Duration::from_millis(500));
    let limited = api
        .update_message("C1", "1.1", &message())
        .await
        .unwrap_err();
    assert_eq!(
        limited,
        NotifyError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
            attempts: 1
        }
    );
    assert!(!limited.is_permanent());
    let slow = api
        .update_message("C1", "1.1", &message())
        .await
        .unwrap_err();
    assert_eq!(slow, NotifyError::Timeout { attempts: 2 });
    assert!(!slow.is_permanent());
    let down = api.post_message("C1", &message()).await.unwrap_err();
    assert!(
        matches!(
            &down,
            NotifyError::ServerError {
                status: 503,
                attempts: 2,
                ..
            }
        ),
        "{down:?}"
    );
    assert!(!down.is_permanent());
}
