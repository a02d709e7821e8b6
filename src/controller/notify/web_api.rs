//! Posting and updating messages through Slack's Web API with a bot token (`chat.postMessage`,
//! `chat.update`, decision 235): the alternative to incoming webhooks for set-ups that want the
//! controller to update a message in place when its Quarantine moves on outside Slack. Timeouts,
//! retries with backoff, `Retry-After` on 429 and Slack's `ok:false` answers (permanent unless
//! Slack says it is rate limited or failing) map to [`NotifyError`]. It must never put the token
//! in an error, a log line or a metric label, and makes no decision about what to post.

use std::time::Duration;

use serde_json::Value;

use super::slack::SlackSettings;
use super::{Message, NotifyError};

/// Where a posted message lives: the channel id and the message's `ts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The channel id Slack answered with (`C…`).
    pub channel: String,
    /// The message timestamp, Slack's id of the message in its channel.
    pub ts: String,
    /// HTTP requests made.
    pub attempts: u32,
}

/// A bot token. `Debug` never shows it.
#[derive(Clone)]
pub struct BotToken(String);

impl BotToken {
    /// A token from the text of its file (trimmed); none when empty.
    pub fn new(text: &str) -> Option<BotToken> {
        let token = text.trim();
        (!token.is_empty()).then(|| BotToken(token.to_string()))
    }
}

impl std::fmt::Debug for BotToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Slack error codes that pass by waiting (the others are permanent).
const TRANSIENT_CODES: [&str; 4] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
];

/// The Slack Web API client for posting and updating messages.
#[derive(Clone, Debug)]
pub struct SlackWebApi {
    http: reqwest::Client,
    base_url: String,
    token: BotToken,
    settings: SlackSettings,
}

impl SlackWebApi {
    /// A client for `base_url` (ends with `/`, e.g. `https://slack.com/api/`) with this token.
    pub fn new(
        base_url: &str,
        token: BotToken,
        settings: SlackSettings,
    ) -> Result<SlackWebApi, NotifyError> {
        if reqwest::Url::parse(base_url).is_err() || !base_url.ends_with('/') {
            return Err(NotifyError::InvalidWebhookUrl(
                "slack.apiBaseUrl must be a URL ending in /",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("autoguardrails/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| NotifyError::Connection {
                message: error.to_string(),
                attempts: 0,
            })?;
        Ok(SlackWebApi {
            http,
            base_url: base_url.to_string(),
            token,
            settings,
        })
    }

    /// `chat.postMessage` of `message` to `channel`; answers where it now lives.
    pub async fn post_message(
        &self,
        channel: &str,
        message: &Message,
    ) -> Result<Posted, NotifyError> {
        let mut body = message.payload();
        if let Some(object) = body.as_object_mut() {
            object.insert("channel".into(), Value::String(channel.to_string()));
        }
        let (answer, attempts) = self.call("chat.postMessage", &body).await?;
        let text = |field: &str| {
            answer
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match (text("channel"), text("ts")) {
            (Some(channel), Some(ts)) => Ok(Posted {
                channel,
                ts,
                attempts,
            }),
            _ => Err(NotifyError::Rejected {
                status: 200,
                code: "answer without channel or ts".into(),
                attempts,
            }),
        }
    }

    /// `chat.update` of the message `ts` in `channel` to `message` (its blocks replace the old
    /// ones, so buttons left out are gone).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        message: &Message,
    ) -> Result<u32, NotifyError> {
        let body = serde_json::json!({
            "channel": channel,
            "ts": ts,
            "text": message.text,
            "blocks": message.blocks,
        });
        self.call("chat.update", &body)
            .await
            .map(|(_, attempts)| attempts)
    }

    fn backoff(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(16);
        self.settings
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.settings.max_backoff)
    }

    /// One Web API method with retries; the JSON answer when Slack said `ok: true`.
    async fn call(&self, method: &str, body: &Value) -> Result<(Value, u32), NotifyError> {
        let max_attempts = self.settings.max_attempts.max(1);
        let mut last_error = NotifyError::Timeout { attempts: 0 };
        for attempt in 1..=max_attempts {
            let result = self
                .http
                .post(format!("{}{method}", self.base_url))
                .bearer_auth(&self.token.0)
                .json(body)
                .send()
                .await;
            let wait = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    let code: String = answer
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .take(100)
                        .collect();
                    let ok = answer.get("ok").and_then(Value::as_bool) == Some(true);
                    if status == 200 && ok {
                        return Ok((answer, attempt));
                    }
                    if status == 429 || code == "ratelimited" {
                        last_error = NotifyError::RateLimited {
                            retry_after: after,
                            attempts: attempt,
                        };
                        match after {
                            Some(after) if after > self.settings.max_retry_after => {
                                return Err(last_error);
                            }
                            Some(after) => after,
                            None => self.backoff(attempt),
                        }
                    } else if status >= 500 || TRANSIENT_CODES.contains(&code.as_str()) {
                        last_error = NotifyError::ServerError {
                            status,
                            code,
                            attempts: attempt,
                        };
                        self.backoff(attempt)
                    } else {
                        // `ok: false` with `channel_not_found`, `message_not_found`,
                        // `cant_update_message`, `invalid_auth`, …: retrying cannot help.
                        return Err(NotifyError::Rejected {
                            status,
                            code: if code.is_empty() {
                                "no ok in the answer".into()
                            } else {
                                code
                            },
                            attempts: attempt,
                        });
                    }
                }
                Err(error) => {
                    last_error = if error.is_timeout() {
                        NotifyError::Timeout { attempts: attempt }
                    } else {
                        NotifyError::Connection {
                            message: error.without_url().to_string(),
                            attempts: attempt,
                        }
                    };
                    self.backoff(attempt)
                }
            };
            tracing::debug!(
                method,
                attempt,
                category = last_error.category(),
                "slack web API attempt failed"
            );
            if attempt < max_attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(last_error)
    }
}

/// The Web API client `postWith` asks for: none for webhooks; for `bot`, one with the token read
/// from `token_file` (a missing, unreadable or empty file is an error: the worker does not start
/// and says why; enforcement is not affected).
pub fn from_config(
    post_with: super::worker::PostWith,
    token_file: Option<&std::path::Path>,
    base_url: &str,
    settings: &SlackSettings,
) -> Result<Option<SlackWebApi>, NotifyError> {
    if post_with == super::worker::PostWith::Webhook {
        return Ok(None);
    }
    let token = token_file
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| BotToken::new(&text))
        .ok_or(NotifyError::InvalidWebhookUrl(
            "notifications.postWith bot needs a readable, non-empty slack.botTokenFile",
        ))?;
    SlackWebApi::new(base_url, token, settings.clone()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_never_shown_and_an_empty_one_is_none() {
        let token = BotToken::new(" xoxb-secret\n").unwrap();
        assert!(!format!("{token:?}").contains("secret"));
        assert!(BotToken::new(" \n").is_none());
        let api = SlackWebApi::new(
            "https://slack.com/api/",
            token.clone(),
            SlackSettings::default(),
        )
        .unwrap();
        assert!(!format!("{api:?}").contains("xoxb"));
        assert!(
            SlackWebApi::new("https://slack.com/api", token, SlackSettings::default()).is_err()
        );
    }
}
