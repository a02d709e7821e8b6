//! Cost signals: the normalised `CostSignal` every intake path (SNS, EventBridge, the poller,
//! signal files) produces. Pure data; parsing of AWS payloads and SNS verification live here too
//! and must stay free of I/O.

pub mod anomaly;
pub mod budgets;
pub mod eventbridge;
pub mod iam_change;
pub mod parse;
pub mod sns;

use crate::controller::crd::{SignalRecord, SignalSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// One cost signal, normalised from whatever AWS sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostSignal {
    /// CostAnomaly, Budget or Velocity.
    pub source: SignalSource,
    /// A stable id: the anomaly id, or budget name + period + threshold for a budget alert.
    pub id: String,
    /// The AWS account the cost occurred in (12 digits).
    pub account_id: String,
    /// Impact in USD: anomaly total impact, or the amount over the budget limit.
    pub impact_usd: f64,
    /// The Cost Explorer service name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The region, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The budget's name, for Budget signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_name: Option<String>,
    /// When AWS observed the cost.
    pub observed_at: jiff::Timestamp,
    /// A link to the anomaly or budget in the AWS console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    /// A one-line human summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Velocity signals only: the IAM role or user that started the spend (a role session is
    /// named by its role). Policies quarantine only this principal, and only when it is in their
    /// scope (decision 171).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The original payload, kept for audit; never interpreted after parsing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
}

/// Why a signal file or payload is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    /// A field has a value no signal can have.
    #[error("invalid signal field {field}: {message}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl CostSignal {
    /// Checks the invariants every intake path guarantees (parsers call this before returning).
    pub fn validate(&self) -> Result<(), SignalError> {
        let invalid = |field: &'static str, message: String| {
            Err(SignalError::InvalidField { field, message })
        };
        if self.id.trim().is_empty() || self.id.len() > 1024 {
            return invalid("id", "must be 1 to 1024 characters".into());
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return invalid(
                "accountId",
                format!("{:?} is not a 12-digit AWS account id", self.account_id),
            );
        }
        if !self.impact_usd.is_finite() || self.impact_usd < 0.0 {
            return invalid(
                "impactUsd",
                format!("{} is not a non-negative amount", self.impact_usd),
            );
        }
        if self.source == SignalSource::Manual {
            return invalid("source", "must be CostAnomaly, Budget or Velocity".into());
        }
        match (&self.principal, self.source) {
            (None, SignalSource::Velocity) => {
                return invalid(
                    "principal",
                    "a Velocity signal must name the principal that started the spend".into(),
                );
            }
            (Some(_), SignalSource::CostAnomaly | SignalSource::Budget) => {
                return invalid("principal", "only Velocity signals name a principal".into());
            }
            (Some(arn), _) => {
                let parsed = crate::principal::PrincipalArn::parse(arn).map_err(|e| {
                    SignalError::InvalidField {
                        field: "principal",
                        message: e.to_string(),
                    }
                })?;
                if !matches!(
                    parsed.kind(),
                    crate::principal::PrincipalKind::Role | crate::principal::PrincipalKind::User
                ) {
                    return invalid(
                        "principal",
                        format!("{arn:?} is not an IAM role or user ARN"),
                    );
                }
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// The signal as recorded in a Quarantine's spec (without the raw payload), normalised to what
    /// the Quarantine schema accepts so the API server never refuses it: a region the schema does
    /// not know (Cost Explorer reports `global`, `NoRegion`) becomes no region, and the summary is
    /// cut to the schema's 1024 characters (decision 094).
    pub fn to_record(&self) -> SignalRecord {
        SignalRecord {
            source: self.source,
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            service: self.service.clone(),
            region: self.region.clone().filter(|r| is_schema_region(r)),
            budget_name: self.budget_name.clone(),
            impact_usd: self.impact_usd,
            observed_at: Time(self.observed_at),
            details_url: self.details_url.clone(),
            summary: self
                .summary
                .as_ref()
                .map(|s| s.chars().take(1024).collect()),
        }
    }
}

/// Whether a region matches the Quarantine schema's region pattern (`crd::REGION_PATTERN`).
pub fn is_schema_region(region: &str) -> bool {
    static PATTERN: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| regex::Regex::new(crate::controller::crd::REGION_PATTERN).ok())
        .as_ref()
        .is_some_and(|p| p.is_match(region))
}
