//! The one audit record of the product and the narrow ports it travels through: [`AuditSink`]
//! (append records durably and idempotently) and [`AuditReader`] (query them back). Sinks: the
//! DynamoDB table ([`dynamodb`]) and JSON lines on stdout or in a file ([`jsonl`], whose file
//! writer the gate's decision log shares). The controller's outbox (records kept in a
//! Quarantine's status until flushed) is `controller::audit`. This module
//! must not decide anything about guardrails; it only keeps what was decided.

pub mod dynamodb;
pub mod jsonl;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Who acted: the controller, or a person through a channel.
pub const CHANNEL_CONTROLLER: &str = "controller";
/// A person through an `autoguardrails.io/*` annotation (kubectl or any API client).
pub const CHANNEL_KUBECTL: &str = "kubectl";
/// A person through a Slack button.
pub const CHANNEL_SLACK: &str = "slack";

/// Why records could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be opened, locked, written or synced.
    #[error("failed to write audit record to {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be listed or read.
    #[error("failed to read audit log {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be encoded or decoded.
    #[error("failed to encode audit record: {0}")]
    Encode(String),
    /// The table could not be reached or refused the call (retried by the flusher).
    #[error("failed to {operation} on audit table {table}: {message}")]
    Table {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The SDK's error, with its code.
        message: String,
    },
    /// The query cannot be answered as asked.
    #[error("invalid audit query: {0}")]
    Query(String),
}

impl AuditError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            AuditError::Write { .. } => "write",
            AuditError::Read { .. } => "read",
            AuditError::Encode(_) => "encode",
            AuditError::Table { .. } => "table",
            AuditError::Query(_) => "query",
        }
    }
}

/// The Quarantine a record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (names are reused; uids are not).
    pub uid: String,
}

/// Who caused a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `controller`, the user the approval webhook verified, or the name an annotation claims.
    pub name: String,
    /// True only when the identity was verified (admission or Slack signature); false for the
    /// actor parsed from an annotation value.
    pub verified: bool,
    /// `controller`, `kubectl` or `slack`.
    pub channel: String,
}

/// The cost signal behind a Quarantine, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalSummary {
    /// `CostAnomaly`, `Budget`, …
    pub source: String,
    /// The signal's id.
    pub id: String,
    /// The account the cost occurred in.
    pub account_id: String,
    /// The amount in USD.
    pub impact_usd: f64,
    /// The service, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// One audit record: a decision or transition, with a stable id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Stable id: `<quarantine uid>/<sequence, 10 digits>` (the same on every retry).
    pub id: String,
    /// When it happened (whole seconds, as kept in status).
    pub recorded_at: Timestamp,
    /// The per-Quarantine sequence number.
    pub sequence: u64,
    /// The controller's cluster id.
    pub cluster: String,
    /// The Quarantine, when the record belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineRef>,
    /// The GuardrailPolicy, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The principals (ARNs) the record concerns.
    #[serde(default)]
    pub principals: Vec<String>,
    /// What happened (PascalCase), e.g. `Approved`, `Activated`, `Released`.
    pub event: String,
    /// Who caused it.
    pub actor: Actor,
    /// The human explanation.
    pub message: String,
    /// The Quarantine's mode (`DryRun`, `Manual`, `Auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The cost signal behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalSummary>,
    /// AWS request ids of the IAM writes the record reports, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
}

/// The record id for a Quarantine uid and sequence number.
pub fn record_id(uid: &str, sequence: u64) -> String {
    format!("{uid}/{sequence:010}")
}

/// Filters for reading records back (`autoguardrails audit`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this Quarantine (`namespace`, `name`).
    pub quarantine: Option<(String, String)>,
    /// Only records naming this principal ARN.
    pub principal: Option<String>,
    /// Only this GuardrailPolicy.
    pub policy: Option<String>,
    /// Only this actor name.
    pub actor: Option<String>,
    /// Only records at or after.
    pub since: Option<Timestamp>,
    /// Only records before.
    pub until: Option<Timestamp>,
    /// At most this many (oldest first; the newest kept).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// True when `record` passes every filter (the subject and time filters too, so a reader
    /// may apply them all after a coarser server-side query).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let quarantine_ok = self.quarantine.as_ref().is_none_or(|(ns, name)| {
            record
                .quarantine
                .as_ref()
                .is_some_and(|q| q.namespace == *ns && q.name == *name)
        });
        quarantine_ok
            && self
                .principal
                .as_ref()
                .is_none_or(|p| record.principals.iter().any(|r| r == p))
            && self
                .policy
                .as_ref()
                .is_none_or(|p| record.policy.as_deref() == Some(p.as_str()))
            && self.actor.as_ref().is_none_or(|a| record.actor.name == *a)
            && self.since.is_none_or(|t| record.recorded_at >= t)
            && self.until.is_none_or(|t| record.recorded_at < t)
    }

    /// Sorts `records` oldest first, removes duplicates by id, and keeps the newest `limit`.
    pub fn finish(&self, mut records: Vec<AuditRecord>) -> Vec<AuditRecord> {
        records.sort_by(|a, b| {
            (a.recorded_at, &a.id, a.sequence).cmp(&(b.recorded_at, &b.id, b.sequence))
        });
        records.dedup_by(|a, b| a.id == b.id);
        if let Some(limit) = self.limit
            && records.len() > limit
        {
            records.drain(..records.len() - limit);
        }
        records
    }
}

/// What a sink did with a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Records newly stored.
    pub written: usize,
    /// Records that were already there (a retry after a lost reply); not written again.
    pub duplicates: usize,
}

/// Where audit records go. Appending the same record twice must store it once.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends `records` durably; an error means some may not be stored (retry all of them).
    async fn append(&self, records: &[AuditRecord]) -> Result<Appended, AuditError>;
    /// A name for logs and metrics (`dynamodb`, `jsonl`).
    fn name(&self) -> &'static str;
}

/// Reads audit records back.
#[async_trait]
pub trait AuditReader: Send + Sync {
    /// The records matching `query`, oldest first.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError>;
}

/// Appends every record to each sink in turn; the first error stops (the caller retries all,
/// which the sinks' idempotence makes safe for the DynamoDB table; JSON lines may repeat a line
/// on such a retry, and readers drop repeats by id).
pub struct Fanout {
    sinks: Vec<std::sync::Arc<dyn AuditSink>>,
}

impl Fanout {
    /// Over `sinks`, in order.
    pub fn new(sinks: Vec<std::sync::Arc<dyn AuditSink>>) -> Fanout {
        Fanout { sinks }
    }
}

#[async_trait]
impl AuditSink for Fanout {
    async fn append(&self, records: &[AuditRecord]) -> Result<Appended, AuditError> {
        let mut total = Appended::default();
        for sink in &self.sinks {
            let done = sink.append(records).await?;
            total.written = total.written.max(done.written);
            total.duplicates = total.duplicates.max(done.duplicates);
        }
        Ok(total)
    }

    fn name(&self) -> &'static str {
        "fanout"
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a timestamp (fixed width, sorts as text).
pub fn sortable_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, second: i64, actor: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            recorded_at: Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH),
            sequence: 0,
            cluster: "c".into(),
            quarantine: Some(QuarantineRef {
                namespace: "ns".into(),
                name: "q".into(),
                uid: "u".into(),
            }),
            policy: Some("p".into()),
            principals: vec!["arn:aws:iam::111122223333:role/x".into()],
            event: "Approved".into(),
            actor: Actor {
                name: actor.into(),
                verified: false,
                channel: CHANNEL_KUBECTL.into(),
            },
            message: String::new(),
            mode: None,
            signal: None,
            request_ids: Vec::new(),
        }
    }

    #[test]
    fn query_filters_each_field_and_keeps_the_newest() {
        let a = record("u/1", 100, "alice");
        let b = record("u/2", 200, "bob");
        let q = AuditQuery {
            actor: Some("bob".into()),
            ..AuditQuery::default()
        };
        assert!(!q.matches(&a));
        assert!(q.matches(&b));
        let q = AuditQuery {
            since: Timestamp::from_second(150).ok(),
            ..AuditQuery::default()
        };
        assert!(!q.matches(&a) && q.matches(&b));
        let q = AuditQuery {
            principal: Some("arn:aws:iam::111122223333:role/y".into()),
            ..AuditQuery::default()
        };
        assert!(!q.matches(&a));
        let q = AuditQuery {
            quarantine: Some(("ns".into(), "other".into())),
            ..AuditQuery::default()
        };
        assert!(!q.matches(&a));
        let q = AuditQuery {
            limit: Some(1),
            ..AuditQuery::default()
        };
        let kept = q.finish(vec![b.clone(), a.clone(), b.clone()]);
        assert_eq!(kept, vec![b]);
    }

    #[test]
    fn record_ids_are_stable_and_sort_by_sequence() {
        assert_eq!(record_id("abc", 7), "abc/0000000007");
        assert!(record_id("abc", 9) < record_id("abc", 10));
    }
}
