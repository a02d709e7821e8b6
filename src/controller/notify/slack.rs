//! The Slack incoming-webhook [`Notifier`]: one JSON POST per message over reqwest, with
//! timeouts, a few retries with exponential backoff, `Retry-After` honoured on 429, and 4xx answers
//! (`invalid_token`, `no_service`, `channel_not_found`, ...) treated as permanent. It must never
//! put the webhook URL in an error, a log line or a metric label.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Delivery, Message, Notifier, NotifyError, WebhookTarget};

/// The longest Slack error code kept from a response body.
const MAX_CODE_CHARS: usize = 100;

/// Timeouts and retries of the webhook client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SlackSettings {
    /// Whole-request timeout (connect, send, response).
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// Connect timeout.
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// HTTP requests per `send` (1 = no retry).
    pub max_attempts: u32,
    /// The wait after the first failed request; doubled each time.
    #[serde(with = "duration_text")]
    pub initial_backoff: Duration,
    /// The longest wait between requests.
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this ends the `send` with `RateLimited` (the worker retries
    /// later) instead of holding the task.
    #[serde(with = "duration_text")]
    pub max_retry_after: Duration,
}

impl Default for SlackSettings {
    fn default() -> SlackSettings {
        SlackSettings {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Serde for `std::time::Duration` as Go/jiff duration text (`10s`, `1m30s`, `500ms`).
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `1m 30s`-style text.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        let signed = jiff::SignedDuration::try_from(*value).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&format!("{signed:#}"))
    }

    /// Reads `10s`, `1m30s`, `500ms`, `PT10S`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        let signed: jiff::SignedDuration = text
            .trim()
            .parse()
            .map_err(|error| serde::de::Error::custom(format!("{text:?}: {error}")))?;
        Duration::try_from(signed)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} must not be negative")))
    }
}

/// Posts messages to Slack incoming webhooks.
#[derive(Clone, Debug)]
pub struct SlackNotifier {
    http: reqwest::Client,
    settings: SlackSettings,
}

impl SlackNotifier {
    /// Builds the HTTP client (no redirects: a webhook that redirects is misconfigured, and the
    /// body must not go anywhere else).
    pub fn new(settings: SlackSettings) -> Result<SlackNotifier, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("autoguardrails/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| NotifyError::Connection {
                message: describe(&error),
                attempts: 0,
            })?;
        Ok(SlackNotifier { http, settings })
    }

    fn backoff(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(16);
        self.settings
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.settings.max_backoff)
    }
}

/// The error text of a reqwest error and its causes, without the URL (reqwest's own `Display`
/// names the URL, so only its kind and the underlying causes are used).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "connect failed"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else if error.is_builder() {
        "building the request failed"
    } else {
        "request failed"
    };
    let mut parts = vec![kind.to_string()];
    let mut current = std::error::Error::source(error);
    while let Some(cause) = current {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn code_of(body: &str) -> String {
    let line = body.lines().next().unwrap_or_default().trim();
    line.chars().take(MAX_CODE_CHARS).collect()
}

#[async_trait]
impl Notifier for SlackNotifier {
    async fn send(
        &self,
        target: &WebhookTarget,
        message: &Message,
    ) -> Result<Delivery, NotifyError> {
        let body = serde_json::to_vec(&message.payload())
            .map_err(|error| NotifyError::Encoding(error.to_string()))?;
        let max_attempts = self.settings.max_attempts.max(1);
        let mut last_error = NotifyError::Timeout { attempts: 0 };
        for attempt in 1..=max_attempts {
            let result = self
                .http
                .post(target.url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let wait = match result {
                Ok(response) => {
                    let status = response.status();
                    let after = retry_after(&response);
                    let code = code_of(&response.text().await.unwrap_or_default());
                    if status.is_success() {
                        tracing::debug!(attempts = attempt, "slack message delivered");
                        return Ok(Delivery { attempts: attempt });
                    }
                    if status.as_u16() == 429 {
                        last_error = NotifyError::RateLimited {
                            retry_after: after,
                            attempts: attempt,
                        };
                        match after {
                            Some(after) if after > self.settings.max_retry_after => {
                                tracing::warn!(
                                    retry_after_seconds = after.as_secs(),
                                    "slack rate limit longer than we wait in place; deferring"
                                );
                                return Err(last_error);
                            }
                            Some(after) => after,
                            None => self.backoff(attempt),
                        }
                    } else if status.is_server_error() {
                        last_error = NotifyError::ServerError {
                            status: status.as_u16(),
                            code,
                            attempts: attempt,
                        };
                        self.backoff(attempt)
                    } else {
                        // 3xx (no redirects followed) and 4xx: the webhook or the payload is wrong.
                        return Err(NotifyError::Rejected {
                            status: status.as_u16(),
                            code,
                            attempts: attempt,
                        });
                    }
                }
                Err(error) => {
                    last_error = if error.is_timeout() {
                        NotifyError::Timeout { attempts: attempt }
                    } else {
                        NotifyError::Connection {
                            message: describe(&error),
                            attempts: attempt,
                        }
                    };
                    self.backoff(attempt)
                }
            };
            tracing::debug!(
                attempt,
                category = last_error.category(),
                wait_ms = wait.as_millis() as u64,
                "slack delivery attempt failed"
            );
            if attempt < max_attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(last_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_duration_text() {
        let settings: SlackSettings =
            serde_json::from_value(serde_json::json!({"requestTimeout": "2s", "maxAttempts": 5}))
                .unwrap();
        assert_eq!(settings.request_timeout, Duration::from_secs(2));
        assert_eq!(settings.max_attempts, 5);
        assert_eq!(settings.connect_timeout, Duration::from_secs(5));
        assert!(
            serde_json::from_value::<SlackSettings>(serde_json::json!({"requestTimeout": "-2s"}))
                .is_err()
        );
        let text = serde_json::to_value(SlackSettings::default()).unwrap();
        let back: SlackSettings = serde_json::from_value(text).unwrap();
        assert_eq!(back, SlackSettings::default());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let notifier = SlackNotifier::new(SlackSettings::default()).unwrap();
        assert_eq!(notifier.backoff(1), Duration::from_millis(500));
        assert_eq!(notifier.backoff(2), Duration::from_secs(1));
        assert_eq!(notifier.backoff(30), Duration::from_secs(10));
    }
}
