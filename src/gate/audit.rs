//! The gate's audit trail: one JSON line per evaluation appended to
//! `decisions-YYYY-MM-DD.jsonl` (UTC day of the recording instant), through the product's one
//! durable line writer ([`crate::audit::jsonl::append_lines`]: `O_APPEND`, one locked write,
//! `fsync`; never truncated or rewritten). Also lists and filters records for `gate audit`. It must not
//! decide anything.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decide::Decision;

/// Why a record could not be written or read: the one audit error type (the gate's file log
/// only ever yields `Write`, `Read` and `Encode`).
pub use crate::audit::AuditError;

/// One audit line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When the record was written (decides the file).
    pub recorded_at: Timestamp,
    /// `cli`, `simulate`, `backtest`, `serve`.
    pub mode: String,
    /// The service.
    pub service: String,
    /// The verdict.
    pub verdict: String,
    /// The deciding rule.
    pub policy_id: String,
    /// `RuleMatched`, `CouldNotEvaluate`, …
    pub reason_code: String,
    /// Delay for DELAY.
    pub delay_minutes: u32,
    /// The explanation shown.
    pub explanation: String,
    /// Whether the explanation came from an LLM.
    #[serde(default)]
    pub explanation_source: String,
    /// The full decision (signals, trace, reports).
    pub decision: Decision,
}

impl AuditRecord {
    /// A record for a decision.
    pub fn new(
        decision: &Decision,
        mode: &str,
        explanation: &str,
        source: &str,
        now: Timestamp,
    ) -> AuditRecord {
        AuditRecord {
            recorded_at: now,
            mode: mode.to_string(),
            service: decision.service.clone(),
            verdict: decision.verdict.action.as_str().to_string(),
            policy_id: decision.verdict.policy_id.clone(),
            reason_code: decision.verdict.reason_code.clone(),
            delay_minutes: decision.verdict.delay_minutes,
            explanation: explanation.to_string(),
            explanation_source: source.to_string(),
            decision: decision.clone(),
        }
    }
}

/// Where audit records go.
pub trait AuditSink: Send + Sync {
    /// Appends one record durably; returns the file written.
    fn append(&self, record: &AuditRecord) -> Result<PathBuf, AuditError>;
}

/// The JSON-lines sink.
#[derive(Clone, Debug)]
pub struct JsonLinesAudit {
    directory: PathBuf,
}

/// The file name for a UTC day.
pub fn file_name(at: Timestamp) -> String {
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    format!("decisions-{date}.jsonl")
}

impl JsonLinesAudit {
    /// A sink writing into `directory` (created on first write).
    pub fn new(directory: impl Into<PathBuf>) -> JsonLinesAudit {
        JsonLinesAudit {
            directory: directory.into(),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }
}

impl AuditSink for JsonLinesAudit {
    fn append(&self, record: &AuditRecord) -> Result<PathBuf, AuditError> {
        let path = self.directory.join(file_name(record.recorded_at));
        crate::audit::jsonl::append_lines(&path, &crate::audit::jsonl::line(record)?)?;
        Ok(path)
    }
}

/// Filters for `gate audit`.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this service.
    pub service: Option<String>,
    /// Only this verdict (`ALLOW`, …).
    pub verdict: Option<String>,
    /// Only records at or after.
    pub since: Option<Timestamp>,
    /// Only records before.
    pub until: Option<Timestamp>,
    /// At most this many (newest kept).
    pub limit: Option<usize>,
}

/// What `read` found.
#[derive(Clone, Debug, Default)]
pub struct AuditListing {
    /// Matching records, oldest first.
    pub records: Vec<AuditRecord>,
    /// Lines that could not be parsed (file, line number).
    pub unreadable: Vec<(String, usize)>,
}

/// Reads every `decisions-*.jsonl` in `directory` and applies the filters.
pub fn read(directory: &Path, query: &AuditQuery) -> Result<AuditListing, AuditError> {
    let rerr = |path: &Path, source: std::io::Error| AuditError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(directory) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("decisions-") && n.ends_with(".jsonl"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(rerr(directory, e)),
    };
    files.sort();
    let mut listing = AuditListing::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| rerr(&file, e))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: AuditRecord = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(_) => {
                    listing.unreadable.push((file.display().to_string(), i + 1));
                    continue;
                }
            };
            if query.service.as_ref().is_some_and(|s| *s != record.service)
                || query
                    .verdict
                    .as_ref()
                    .is_some_and(|v| !v.eq_ignore_ascii_case(&record.verdict))
                || query.since.is_some_and(|t| record.recorded_at < t)
                || query.until.is_some_and(|t| record.recorded_at >= t)
            {
                continue;
            }
            listing.records.push(record);
        }
    }
    listing.records.sort_by_key(|r| r.recorded_at);
    if let Some(limit) = query.limit
        && listing.records.len() > limit
    {
        listing.records.drain(..listing.records.len() - limit);
    }
    Ok(listing)
}
