//! Slack notifications about Quarantine lifecycle changes: the [`Notifier`] trait, the message and
//! webhook types, and the parts that implement them (Block Kit rendering, the Slack webhook client,
//! webhook URL sources, the delivery ledger and the worker that watches Quarantines). It must never
//! be on the enforcement or release path: nothing here is awaited by the lifecycle controller, and a
//! webhook URL is never logged, displayed or written to status.

pub mod blocks;
pub mod ledger;
pub mod only;
pub mod slack;
pub mod source;
pub mod web_api;
pub mod worker;

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

/// A Slack incoming webhook URL. `Debug` and `Display` never show it; only [`WebhookUrl::expose`]
/// does, for the one place that sends the request.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Accepts an `https://` URL (or `http://` for loopback receivers in tests) with a host.
    pub fn new(value: &str) -> Result<WebhookUrl, NotifyError> {
        let trimmed = value.trim();
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| {
                trimmed
                    .strip_prefix("http://")
                    .filter(|rest| is_loopback_authority(rest))
            })
            .ok_or(NotifyError::InvalidWebhookUrl(
                "the webhook URL must start with https:// (http:// only for loopback)",
            ))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || trimmed.chars().any(char::is_whitespace) {
            return Err(NotifyError::InvalidWebhookUrl(
                "the webhook URL has no host or contains whitespace",
            ));
        }
        Ok(WebhookUrl(trimmed.to_string()))
    }

    /// The URL itself. Never log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("WebhookUrl(<redacted>)")
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted webhook URL>")
    }
}

/// Where a message goes: the webhook and, for legacy webhooks that honour it, a channel override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    /// The incoming webhook URL.
    pub url: WebhookUrl,
}

/// One Slack message: Block Kit blocks, a plain-text fallback and an optional channel override.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Plain-text fallback shown in notifications and by clients that cannot show blocks.
    pub text: String,
    /// Block Kit blocks.
    pub blocks: Vec<serde_json::Value>,
    /// The `channel` field (the policy's `channelHint`); only legacy webhooks honour it.
    pub channel: Option<String>,
}

impl Message {
    /// The JSON body posted to the webhook.
    pub fn payload(&self) -> serde_json::Value {
        let mut payload = serde_json::json!({
            "text": self.text,
            "blocks": self.blocks,
        });
        if let (Some(channel), Some(object)) = (&self.channel, payload.as_object_mut()) {
            object.insert("channel".into(), serde_json::Value::String(channel.clone()));
        }
        payload
    }
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// HTTP requests made, including retries.
    pub attempts: u32,
}

/// Why a message was not delivered. Messages never contain the webhook URL.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NotifyError {
    /// Slack refused the request for a reason that will not pass by retrying (4xx other than 429:
    /// `invalid_token`, `no_service`, `channel_not_found`, `invalid_payload`, ...).
    #[error("slack rejected the message with HTTP {status} {code:?} after {attempts} attempt(s)")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Slack's error code from the body (cut to 100 chars).
        code: String,
        /// Requests made.
        attempts: u32,
    },
    /// Slack answered 429 on every attempt.
    #[error(
        "slack rate-limited the webhook (retry after {retry_after:?}) after {attempts} attempt(s)"
    )]
    RateLimited {
        /// The last `Retry-After`, if Slack sent one.
        retry_after: Option<Duration>,
        /// Requests made.
        attempts: u32,
    },
    /// Slack answered 5xx on every attempt.
    #[error("slack answered HTTP {status} {code:?} after {attempts} attempt(s)")]
    ServerError {
        /// HTTP status.
        status: u16,
        /// Slack's error code from the body (cut to 100 chars).
        code: String,
        /// Requests made.
        attempts: u32,
    },
    /// The last attempt timed out (connect or response).
    #[error("slack webhook request timed out after {attempts} attempt(s)")]
    Timeout {
        /// Requests made.
        attempts: u32,
    },
    /// The last attempt failed below HTTP (refused, reset, DNS, TLS).
    #[error("slack webhook connection failed after {attempts} attempt(s): {message}")]
    Connection {
        /// What failed (from the HTTP client, without the URL).
        message: String,
        /// Requests made.
        attempts: u32,
    },
    /// The configured webhook URL is unusable.
    #[error("invalid slack webhook URL: {0}")]
    InvalidWebhookUrl(&'static str),
    /// The webhook URL could not be read from its Secret or SSM parameter.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The message could not be serialised (a programming error).
    #[error("slack message could not be encoded: {0}")]
    Encoding(String),
    /// The controller posts with incoming webhooks (`notifications.postWith: webhook`) and
    /// `notify.slack` names none. Retried: the policy or the controller's set-up may be fixed.
    #[error(
        "spec.notify.slack names no webhook (webhookSecretRef or webhookSsmParameter) and this controller posts with incoming webhooks (notifications.postWith: webhook): name a webhook in the policy, or set postWith: bot with slack.botTokenFile"
    )]
    NoWebhook,
    /// The controller posts with its bot token and no channel is named. Retried like
    /// [`NotifyError::NoWebhook`].
    #[error(
        "this controller posts with its bot token (notifications.postWith: bot) and neither spec.notify.slack.channelHint nor notifications.channel names a channel"
    )]
    NoChannel,
}

impl NotifyError {
    /// A short label for metrics, conditions and Events.
    pub fn category(&self) -> &'static str {
        match self {
            NotifyError::Rejected { .. } => "rejected",
            NotifyError::RateLimited { .. } => "rate_limited",
            NotifyError::ServerError { .. } => "server_error",
            NotifyError::Timeout { .. } => "timeout",
            NotifyError::Connection { .. } => "connection",
            NotifyError::InvalidWebhookUrl(_) => "invalid_webhook_url",
            NotifyError::Source(error) => error.category(),
            NotifyError::Encoding(_) => "encoding",
            NotifyError::NoWebhook => "no_webhook",
            NotifyError::NoChannel => "no_channel",
        }
    }

    /// True when retrying the same message to the same webhook cannot succeed.
    pub fn is_permanent(&self) -> bool {
        match self {
            NotifyError::Rejected { .. }
            | NotifyError::InvalidWebhookUrl(_)
            | NotifyError::Encoding(_) => true,
            NotifyError::Source(error) => error.is_permanent(),
            _ => false,
        }
    }

    /// HTTP requests made before giving up (0 when no request was made).
    pub fn attempts(&self) -> u32 {
        match self {
            NotifyError::Rejected { attempts, .. }
            | NotifyError::RateLimited { attempts, .. }
            | NotifyError::ServerError { attempts, .. }
            | NotifyError::Timeout { attempts }
            | NotifyError::Connection { attempts, .. } => *attempts,
            _ => 0,
        }
    }

    /// How long Slack asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Where this controller posts a message for `slack`: `Ok(None)` for the policy's webhook,
/// `Ok(Some(channel))` for the bot (`post_with: bot`: the policy's `channelHint`, else
/// `default_channel`), or why it has nowhere to go (decision 238). Pure.
pub fn route(
    post_with: worker::PostWith,
    default_channel: Option<&str>,
    slack: &crate::controller::crd::SlackSpec,
) -> Result<Option<String>, NotifyError> {
    let named = |channel: Option<&str>| {
        channel
            .map(str::trim)
            .filter(|channel| !channel.is_empty())
            .map(str::to_string)
    };
    match post_with {
        worker::PostWith::Bot => named(slack.channel_hint.as_deref())
            .or_else(|| named(default_channel))
            .map(Some)
            .ok_or(NotifyError::NoChannel),
        worker::PostWith::Webhook
            if slack.webhook_secret_ref.is_none() && slack.webhook_ssm_parameter.is_none() =>
        {
            Err(NotifyError::NoWebhook)
        }
        worker::PostWith::Webhook => Ok(None),
    }
}

/// Sends one message to one webhook.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `message` to `target`, retrying as the implementation sees fit; returns once
    /// delivered or given up.
    async fn send(
        &self,
        target: &WebhookTarget,
        message: &Message,
    ) -> Result<Delivery, NotifyError>;
}

/// A message a [`RecordingNotifier`] received.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedMessage {
    /// Where it was sent.
    pub target: WebhookTarget,
    /// What was sent.
    pub message: Message,
}

/// A notifier for tests of other components: records every message and answers with scripted
/// failures first, then success. It makes no network calls.
#[derive(Default)]
pub struct RecordingNotifier {
    sent: Mutex<Vec<RecordedMessage>>,
    failures: Mutex<std::collections::VecDeque<NotifyError>>,
}

impl RecordingNotifier {
    /// A notifier that accepts everything.
    pub fn new() -> RecordingNotifier {
        RecordingNotifier::default()
    }

    /// The next calls fail with these errors, in order (the message is still recorded).
    pub fn fail_next(&self, errors: impl IntoIterator<Item = NotifyError>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.extend(errors);
        }
    }

    /// Every message received so far (including failed ones).
    pub fn messages(&self) -> Vec<RecordedMessage> {
        self.sent
            .lock()
            .map(|sent| sent.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn send(
        &self,
        target: &WebhookTarget,
        message: &Message,
    ) -> Result<Delivery, NotifyError> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(RecordedMessage {
                target: target.clone(),
                message: message.clone(),
            });
        }
        let failure = self
            .failures
            .lock()
            .ok()
            .and_then(|mut failures| failures.pop_front());
        match failure {
            Some(error) => Err(error),
            None => Ok(Delivery { attempts: 1 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_url_is_redacted_everywhere_but_expose() {
        let url = WebhookUrl::new("https://hooks.slack.com/services/T000/B000/secret").unwrap();
        assert!(!format!("{url:?}").contains("secret"));
        assert!(!format!("{url}").contains("secret"));
        let target = WebhookTarget { url: url.clone() };
        assert!(!format!("{target:?}").contains("secret"));
        assert!(url.expose().ends_with("/secret"));
    }

    #[test]
    fn webhook_url_accepts_https_and_loopback_http_only() {
        assert!(WebhookUrl::new("https://hooks.slack.com/services/x").is_ok());
        assert!(WebhookUrl::new("http://127.0.0.1:8080/hook").is_ok());
        assert!(WebhookUrl::new("http://localhost/hook").is_ok());
        assert!(WebhookUrl::new("http://hooks.slack.com/services/x").is_err());
        assert!(WebhookUrl::new("http://127.0.0.1.evil.example/x").is_err());
        assert!(WebhookUrl::new("https:///x").is_err());
        assert!(WebhookUrl::new("ftp://x").is_err());
        assert!(WebhookUrl::new("https://a b/").is_err());
        assert!(WebhookUrl::new("").is_err());
    }

    #[test]
    fn payload_carries_channel_only_when_set() {
        let mut message = Message {
            text: "t".into(),
            blocks: vec![],
            channel: None,
        };
        assert!(message.payload().get("channel").is_none());
        message.channel = Some("#cost".into());
        assert_eq!(message.payload()["channel"], "#cost");
    }

    #[test]
    fn route_needs_a_webhook_on_a_webhook_controller_and_a_channel_on_a_bot_controller() {
        use crate::controller::crd::{SecretKeyRef, SlackSpec};
        use worker::PostWith::{Bot, Webhook};
        let none = SlackSpec {
            webhook_secret_ref: None,
            webhook_ssm_parameter: None,
            channel_hint: None,
        };
        let hinted = SlackSpec {
            channel_hint: Some(" C0HINT ".into()),
            ..none.clone()
        };
        let webhook = SlackSpec {
            webhook_secret_ref: Some(SecretKeyRef {
                name: "s".into(),
                key: "url".into(),
            }),
            ..none.clone()
        };
        assert_eq!(
            route(Webhook, Some("C0"), &none),
            Err(NotifyError::NoWebhook)
        );
        assert_eq!(route(Webhook, None, &hinted), Err(NotifyError::NoWebhook));
        assert_eq!(route(Webhook, None, &webhook), Ok(None));
        assert_eq!(route(Bot, Some("C0"), &hinted), Ok(Some("C0HINT".into())));
        assert_eq!(route(Bot, Some("C0"), &webhook), Ok(Some("C0".into())));
        assert_eq!(route(Bot, Some(" "), &none), Err(NotifyError::NoChannel));
        assert_eq!(route(Bot, None, &webhook), Err(NotifyError::NoChannel));
        for error in [NotifyError::NoWebhook, NotifyError::NoChannel] {
            assert!(
                !error.is_permanent(),
                "{error}: fixed by the set-up, retried"
            );
            assert_eq!(error.attempts(), 0);
        }
        assert_eq!(NotifyError::NoWebhook.category(), "no_webhook");
        assert_eq!(NotifyError::NoChannel.category(), "no_channel");
    }

    #[tokio::test]
    async fn recording_notifier_records_and_fails_as_scripted() {
        let notifier = RecordingNotifier::new();
        notifier.fail_next([NotifyError::Timeout { attempts: 2 }]);
        let target = WebhookTarget {
            url: WebhookUrl::new("https://hooks.slack.com/x").unwrap(),
        };
        let message = Message {
            text: "t".into(),
            blocks: vec![],
            channel: None,
        };
        assert_eq!(
            notifier.send(&target, &message).await,
            Err(NotifyError::Timeout { attempts: 2 })
        );
        assert_eq!(
            notifier.send(&target, &message).await,
            Ok(Delivery { attempts: 1 })
        );
        assert_eq!(notifier.messages().len(), 2);
    }
}
