//! SNS subscription confirmation: GET a `ValidatedSubscribeUrl` (only an https
//! `sns.<region>.amazonaws.com[.cn]` URL can reach here, by type) and keep a bounded list of the
//! latest confirmations for operators. It must not be called before the message verified and
//! its topic was allowed (the `/sns` handler guarantees that).

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use super::certs::{CertificateError, HttpsSettings, error_chain, https_client, read_bounded};
use crate::controller::signal::sns::ValidatedSubscribeUrl;

/// Largest confirmation response read (SNS answers a small XML document).
pub const MAX_CONFIRMATION_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a subscription could not be confirmed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfirmError {
    /// The HTTPS client could not be built.
    #[error("failed to build the HTTPS client: {0}")]
    Client(String),
    /// The request failed (DNS, connect, TLS, timeout).
    #[error("failed to confirm subscription: {0}")]
    Transport(String),
    /// SNS answered with a non-2xx status.
    #[error("subscription confirmation answered HTTP {0}")]
    Status(u16),
}

impl ConfirmError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ConfirmError::Client(_) => "Client",
            ConfirmError::Transport(_) => "Transport",
            ConfirmError::Status(_) => "Status",
        }
    }
}

/// Confirms an SNS subscription by visiting its `SubscribeURL`.
#[async_trait]
pub trait SubscriptionConfirmer: Send + Sync {
    /// GETs `url`; returns the `SubscriptionArn` from the answer when it carries one.
    async fn confirm(&self, url: &ValidatedSubscribeUrl) -> Result<Option<String>, ConfirmError>;
}

/// Confirms over HTTPS with the same limits as the certificate fetcher (no redirects).
pub struct HttpsConfirmer {
    client: reqwest::Client,
}

impl HttpsConfirmer {
    /// A confirmer with its own HTTPS client.
    pub fn new(settings: &HttpsSettings) -> Result<Self, ConfirmError> {
        let client = https_client(settings).map_err(|e| match e {
            CertificateError::Client(message) => ConfirmError::Client(message),
            other => ConfirmError::Client(other.to_string()),
        })?;
        Ok(HttpsConfirmer { client })
    }

    /// A confirmer over a given client (build it with `certs::https_client_builder`).
    pub fn with_client(client: reqwest::Client) -> Self {
        HttpsConfirmer { client }
    }
}

/// The text of the first `<SubscriptionArn>` element, if any.
pub fn subscription_arn(xml: &str) -> Option<String> {
    let start = xml.find("<SubscriptionArn>")? + "<SubscriptionArn>".len();
    let length = xml.get(start..)?.find("</SubscriptionArn>")?;
    xml.get(start..start + length)
        .map(str::trim)
        .filter(|arn| !arn.is_empty() && arn.len() <= 1024)
        .map(str::to_string)
}

#[async_trait]
impl SubscriptionConfirmer for HttpsConfirmer {
    async fn confirm(&self, url: &ValidatedSubscribeUrl) -> Result<Option<String>, ConfirmError> {
        let response = self
            .client
            .get(url.as_str())
            .send()
            .await
            .map_err(|e| ConfirmError::Transport(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ConfirmError::Status(status.as_u16()));
        }
        let body = read_bounded(response, MAX_CONFIRMATION_RESPONSE_BYTES)
            .await
            .map_err(|e| ConfirmError::Transport(error_chain(&e)))?
            .unwrap_or_default();
        Ok(subscription_arn(&String::from_utf8_lossy(&body)))
    }
}

/// One subscription event seen on `/sns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationRecord {
    /// When it was handled.
    pub at: jiff::Timestamp,
    /// The topic.
    pub topic_arn: String,
    /// `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    pub message_type: String,
    /// `confirmed`, `failed` (with `error`) or `noted` (unsubscribe: nothing is visited).
    pub result: String,
    /// The subscription ARN SNS returned, when confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_arn: Option<String>,
    /// Why confirming failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The latest subscription events, newest last, bounded.
pub struct ConfirmationLog {
    capacity: usize,
    records: Mutex<VecDeque<ConfirmationRecord>>,
}

impl ConfirmationLog {
    /// A log of at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        ConfirmationLog {
            capacity: capacity.max(1),
            records: Mutex::new(VecDeque::new()),
        }
    }

    /// Appends a record, dropping the oldest when full.
    pub fn push(&self, record: ConfirmationRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        while records.len() >= self.capacity {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// A copy of the records, newest last.
    pub fn records(&self) -> Vec<ConfirmationRecord> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_arn_is_read_from_the_documented_answer() {
        let xml = "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-east-1:111111111111:cost-alerts:abc</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>";
        assert_eq!(
            subscription_arn(xml).as_deref(),
            Some("arn:aws:sns:us-east-1:111111111111:cost-alerts:abc")
        );
        assert_eq!(subscription_arn("<SubscriptionArn>"), None);
        assert_eq!(subscription_arn("nothing"), None);
    }

    #[test]
    fn log_keeps_the_newest_records() {
        let log = ConfirmationLog::new(2);
        for index in 0..3 {
            log.push(ConfirmationRecord {
                at: jiff::Timestamp::UNIX_EPOCH,
                topic_arn: format!("topic-{index}"),
                message_type: "SubscriptionConfirmation".into(),
                result: "confirmed".into(),
                subscription_arn: None,
                error: None,
            });
        }
        let topics: Vec<String> = log.records().into_iter().map(|r| r.topic_arn).collect();
        assert_eq!(topics, ["topic-1", "topic-2"]);
    }
}
