//! The Slack webhook client against a real HTTP receiver on loopback: delivery, 429 with
//! `Retry-After`, 5xx, a response slower than the timeout, a TCP reset, permanent 4xx, and that
//! no error ever shows the webhook URL. Timing is asserted only as lower bounds and ordering.

#[path = "support/slack_receiver.rs"]
mod slack_receiver;

use std::time::Duration;

use autoguardrails::controller::notify::slack::{SlackNotifier, SlackSettings};
use autoguardrails::controller::notify::{
    Message, Notifier, NotifyError, WebhookTarget, WebhookUrl,
};
use slack_receiver::{Reply, SlackReceiver};

fn settings() -> SlackSettings {
    SlackSettings {
        request_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        max_retry_after: Duration::from_secs(5),
    }
}

fn message() -> Message {
    Message {
        text: "Deny enforced: autoguardrails/q".into(),
        blocks: vec![serde_json::json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*What happened:* enforcing"}
        })],
        channel: Some("#cost-alerts".into()),
    }
}

fn target(receiver: &SlackReceiver) -> WebhookTarget {
    WebhookTarget {
        url: WebhookUrl::new(&receiver.url).unwrap(),
    }
}

fn assert_no_leak(error: &NotifyError, receiver: &SlackReceiver) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(receiver.secret()), "URL leaked: {text}");
        assert!(!text.contains("127.0.0.1"), "URL leaked: {text}");
    }
}

#[tokio::test]
async fn delivers_the_payload_as_json() {
    let receiver = SlackReceiver::start().await;
    let notifier = SlackNotifier::new(settings()).unwrap();
    let delivery = notifier.send(&target(&receiver), &message()).await.unwrap();
    assert_eq!(delivery.attempts, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].content_type, "application/json");
    assert_eq!(received[0].path, "/services/T000/B000/s3cr3t-w3bh00k-t0k3n");
    assert_eq!(received[0].body, message().payload());
    assert_eq!(received[0].body["channel"], "#cost-alerts");
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_delivers() {
    let receiver = SlackReceiver::start().await;
    receiver.script([Reply::RateLimited(1), Reply::Ok]);
    let notifier = SlackNotifier::new(settings()).unwrap();
    let delivery = notifier.send(&target(&receiver), &message()).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].reply, Reply::RateLimited(1));
    assert_eq!(received[1].reply, Reply::Ok);
    let gap = received[1].at - received[0].at;
    // Retry-After: 1 is far longer than the 100 ms backoff: the retry waited for it.
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    println!("429 Retry-After: 1 → retry after {gap:?}");
}

#[tokio::test]
async fn rate_limit_longer_than_we_wait_defers_without_holding_the_task() {
    let receiver = SlackReceiver::start().await;
    receiver.script([Reply::RateLimited(120)]);
    let notifier = SlackNotifier::new(settings()).unwrap();
    let error = notifier
        .send(&target(&receiver), &message())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        NotifyError::RateLimited {
            retry_after: Some(Duration::from_secs(120)),
            attempts: 1
        }
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert!(!error.is_permanent());
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_backoff() {
    let receiver = SlackReceiver::start().await;
    receiver.script([Reply::ServerError, Reply::ServerError, Reply::Ok]);
    let notifier = SlackNotifier::new(settings()).unwrap();
    let delivery = notifier.send(&target(&receiver), &message()).await.unwrap();
    assert_eq!(delivery.attempts, 3);
    let received = receiver.received();
    let replies: Vec<_> = received.iter().map(|r| r.reply.clone()).collect();
    assert_eq!(replies, [Reply::ServerError, Reply::ServerError, Reply::Ok]);
    let first_gap = received[1].at - received[0].at;
    let second_gap = received[2].at - received[1].at;
    assert!(first_gap >= Duration::from_millis(100), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(200), "{second_gap:?}");
}

#[tokio::test]
async fn persistent_server_errors_give_a_transient_error() {
    let receiver = SlackReceiver::start().await;
    receiver.set_default(Some(Reply::ServerError));
    let notifier = SlackNotifier::new(settings()).unwrap();
    let error = notifier
        .send(&target(&receiver), &message())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        NotifyError::ServerError {
            status: 500,
            code: "internal_error".into(),
            attempts: 3
        }
    );
    assert!(!error.is_permanent());
    assert_eq!(error.category(), "server_error");
    assert_eq!(receiver.received().len(), 3);
    assert_no_leak(&error, &receiver);
}

#[tokio::test]
async fn slow_responses_time_out_and_are_retried() {
    let receiver = SlackReceiver::start().await;
    receiver.script([Reply::Slow(Duration::from_secs(3)), Reply::Ok]);
    let notifier = SlackNotifier::new(settings()).unwrap();
    let delivery = notifier.send(&target(&receiver), &message()).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    // The second request came after the 500 ms timeout, long before the slow answer was due.
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(500), "{gap:?}");

    receiver.set_default(Some(Reply::Slow(Duration::from_secs(3))));
    let error = notifier
        .send(&target(&receiver), &message())
        .await
        .unwrap_err();
    assert_eq!(error, NotifyError::Timeout { attempts: 3 });
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let receiver = SlackReceiver::start().await;
    receiver.script([Reply::Reset, Reply::Ok]);
    let notifier = SlackNotifier::new(settings()).unwrap();
    let delivery = notifier.send(&target(&receiver), &message()).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    let replies: Vec<_> = receiver
        .received()
        .iter()
        .map(|r| r.reply.clone())
        .collect();
    assert_eq!(replies, [Reply::Reset, Reply::Ok]);

    receiver.set_default(Some(Reply::Reset));
    let error = notifier
        .send(&target(&receiver), &message())
        .await
        .unwrap_err();
    assert!(
        matches!(error, NotifyError::Connection { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    assert_no_leak(&error, &receiver);
    println!("reset error: {error}");
}

#[tokio::test]
async fn permanent_slack_errors_are_not_retried() {
    for (status, code) in [
        (404, "no_service"),
        (403, "invalid_token"),
        (400, "invalid_payload"),
        (410, "channel_is_archived"),
    ] {
        let receiver = SlackReceiver::start().await;
        receiver.set_default(Some(Reply::Status(status, code)));
        let notifier = SlackNotifier::new(settings()).unwrap();
        let error = notifier
            .send(&target(&receiver), &message())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            NotifyError::Rejected {
                status,
                code: code.into(),
                attempts: 1
            }
        );
        assert!(error.is_permanent());
        assert_eq!(receiver.received().len(), 1, "{code}: one request only");
        assert_no_leak(&error, &receiver);
    }
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error_without_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/services/T/B/s3cr3t-w3bh00k-t0k3n");
    let notifier = SlackNotifier::new(SlackSettings {
        max_attempts: 2,
        ..settings()
    })
    .unwrap();
    let error = notifier
        .send(
            &WebhookTarget {
                url: WebhookUrl::new(&url).unwrap(),
            },
            &message(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, NotifyError::Connection { attempts: 2, .. }),
        "{error:?}"
    );
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
