//! The flat policy format of the first prototype (`policy_id`, `mode: dry_run|manual|auto`,
//! `ttl_minutes`, ...) and its conversion to a GuardrailPolicy. Unknown or contradictory fields
//! are errors, never silently dropped. Pure.

use crate::controller::crd::{
    Exceptions, GuardrailPolicy, GuardrailPolicySpec, MatchSpec, Mode, NotifySpec, PolicyDenySpec,
    Principal, PrincipalKind, QuarantineSettings, ScopeSpec, SignalSource, SlackSpec,
};
use serde::Deserialize;

/// A policy in the flat format.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatPolicy {
    /// Becomes `metadata.name`.
    pub policy_id: String,
    /// `dry_run`, `manual` or `auto`.
    pub mode: String,
    /// Quarantine TTL in minutes.
    pub ttl_minutes: u64,
    /// Approval timeout in minutes (manual mode).
    #[serde(default)]
    pub approval_timeout_minutes: Option<u64>,
    /// Cooldown in minutes.
    #[serde(default)]
    pub cooldown_minutes: Option<u64>,
    /// The signal filter.
    #[serde(rename = "match")]
    pub matcher: FlatMatch,
    /// Who is quarantined.
    pub scope: FlatScope,
    /// What is done: `attach_deny_policy` entries.
    pub actions: Vec<FlatAction>,
    /// Notification settings.
    #[serde(default)]
    pub notify: Option<FlatNotify>,
}

/// `match` of the flat format.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatMatch {
    /// `budgets` and/or `anomaly`, one value or a list.
    pub source: OneOrMany,
    /// Account ids.
    #[serde(default)]
    pub account_ids: Vec<String>,
    /// Minimum impact in USD.
    #[serde(default)]
    pub min_amount_usd: Option<f64>,
    /// Cost Explorer service names.
    #[serde(default)]
    pub services: Vec<String>,
    /// Budget names.
    #[serde(default)]
    pub budget_names: Vec<String>,
}

/// A string or a list of strings.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// A list of values.
    Many(Vec<String>),
}

/// `scope` of the flat format.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatScope {
    /// Principals with `type: iam_role|iam_user` and `arn`.
    pub principals: Vec<FlatPrincipal>,
    /// Regions the deny applies in.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// One principal of the flat format.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatPrincipal {
    /// `iam_role` or `iam_user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The principal's ARN.
    pub arn: String,
}

/// One action of the flat format.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatAction {
    /// Only `attach_deny_policy` exists.
    #[serde(rename = "type")]
    pub kind: String,
    /// IAM actions to deny.
    pub deny: Vec<String>,
}

/// `notify` of the flat format.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatNotify {
    /// SSM SecureString parameter holding the Slack webhook URL.
    #[serde(default)]
    pub slack_webhook_ssm_param: Option<String>,
    /// Slack channel hint.
    #[serde(default)]
    pub channel_hint: Option<String>,
}

/// Why a flat policy cannot be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// A field has a value the format does not allow.
    #[error("{field}: {message}")]
    Invalid {
        /// The flat-format field path.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Formats minutes as a Go duration (`180` → `3h`, `90` → `90m`).
fn minutes(value: u64) -> String {
    if value.is_multiple_of(60) {
        format!("{}h", value / 60)
    } else {
        format!("{value}m")
    }
}

/// True when the text looks like a flat-format policy rather than a Kubernetes manifest.
pub fn looks_flat(document: &serde_json::Value) -> bool {
    document.get("policy_id").is_some() && document.get("apiVersion").is_none()
}

impl FlatPolicy {
    /// Converts to a GuardrailPolicy manifest in `namespace` (omitted when `None`).
    pub fn convert(&self, namespace: Option<&str>) -> Result<GuardrailPolicy, ConvertError> {
        if !super::name::is_rfc1123_label(&self.policy_id) && !is_subdomain(&self.policy_id) {
            return Err(invalid(
                "policy_id",
                format!(
                    "{:?} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')",
                    self.policy_id
                ),
            ));
        }
        let mode = match self.mode.as_str() {
            "dry_run" => Mode::DryRun,
            "manual" => Mode::Manual,
            "auto" => Mode::Auto,
            other => {
                return Err(invalid(
                    "mode",
                    format!("{other:?} is not one of dry_run, manual, auto"),
                ));
            }
        };
        if self.ttl_minutes == 0 || self.ttl_minutes > 7 * 24 * 60 {
            return Err(invalid(
                "ttl_minutes",
                format!("{} must be 1 to 10080 (7 days)", self.ttl_minutes),
            ));
        }
        if mode != Mode::Manual && self.approval_timeout_minutes.is_some() {
            return Err(invalid(
                "approval_timeout_minutes",
                "only applies to mode manual",
            ));
        }
        let sources_raw = match &self.matcher.source {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(list) => list.clone(),
        };
        if sources_raw.is_empty() {
            return Err(invalid(
                "match.source",
                "needs at least one of budgets, anomaly, velocity",
            ));
        }
        let mut sources = Vec::new();
        for (i, s) in sources_raw.iter().enumerate() {
            let source = match s.as_str() {
                "budgets" | "budget" => SignalSource::Budget,
                "anomaly" | "anomalies" => SignalSource::CostAnomaly,
                "velocity" => SignalSource::Velocity,
                other => {
                    return Err(invalid(
                        format!("match.source[{i}]"),
                        format!("{other:?} is not budgets, anomaly or velocity"),
                    ));
                }
            };
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        if !self.matcher.budget_names.is_empty() && !sources.contains(&SignalSource::Budget) {
            return Err(invalid(
                "match.budget_names",
                "set, but match.source does not include budgets",
            ));
        }
        let min_impact_usd = self.matcher.min_amount_usd.unwrap_or(0.0);
        if !min_impact_usd.is_finite() || min_impact_usd < 0.0 {
            return Err(invalid(
                "match.min_amount_usd",
                "must be a non-negative amount",
            ));
        }
        let mut principals: Vec<Principal> = Vec::new();
        for (i, p) in self.scope.principals.iter().enumerate() {
            let kind = match p.kind.as_str() {
                "iam_role" => PrincipalKind::IamRole,
                "iam_user" => PrincipalKind::IamUser,
                other => {
                    return Err(invalid(
                        format!("scope.principals[{i}].type"),
                        format!("{other:?} is not iam_role or iam_user"),
                    ));
                }
            };
            let candidate = Principal {
                kind,
                arn: p.arn.clone(),
            };
            if let Err(e) = candidate.parse() {
                return Err(invalid(
                    format!("scope.principals[{i}].arn"),
                    format!("{e} (type {})", p.kind),
                ));
            }
            if principals.iter().any(|q| q.same_principal(&candidate)) {
                return Err(invalid(
                    format!("scope.principals[{i}].arn"),
                    format!("{} is listed twice", p.arn),
                ));
            }
            principals.push(Principal {
                kind,
                arn: p.arn.clone(),
            });
        }
        let mut actions: Vec<String> = Vec::new();
        for (i, a) in self.actions.iter().enumerate() {
            if a.kind != "attach_deny_policy" {
                return Err(invalid(
                    format!("actions[{i}].type"),
                    format!("{:?} is not attach_deny_policy", a.kind),
                ));
            }
            for action in &a.deny {
                if !actions.contains(action) {
                    actions.push(action.clone());
                }
            }
        }
        if actions.is_empty() {
            return Err(invalid(
                "actions",
                "needs an attach_deny_policy action with at least one IAM action to deny",
            ));
        }
        let notify = match &self.notify {
            None => None,
            Some(n) => match (&n.slack_webhook_ssm_param, &n.channel_hint) {
                (None, Some(_)) => {
                    return Err(invalid(
                        "notify.channel_hint",
                        "set without notify.slack_webhook_ssm_param",
                    ));
                }
                (None, None) => None,
                (Some(param), hint) => Some(NotifySpec {
                    slack: Some(SlackSpec {
                        webhook_secret_ref: None,
                        webhook_ssm_parameter: Some(param.clone()),
                        channel_hint: hint.clone(),
                    }),
                }),
            },
        };
        let defaults = QuarantineSettings::default();
        let spec = GuardrailPolicySpec {
            mode,
            matcher: MatchSpec {
                sources,
                account_ids: self.matcher.account_ids.clone(),
                min_impact_usd,
                services: self.matcher.services.clone(),
                budget_names: self.matcher.budget_names.clone(),
            },
            scope: ScopeSpec {
                principals,
                selectors: Vec::new(),
                max_targets: None,
                regions: self.scope.regions.clone(),
            },
            deny: PolicyDenySpec {
                actions,
                conditions: Vec::new(),
            },
            // The flat format only knew `attach_deny_policy`.
            actions: crate::controller::crd::default_actions(),
            quarantine: QuarantineSettings {
                ttl: minutes(self.ttl_minutes),
                approval_timeout: self
                    .approval_timeout_minutes
                    .map(minutes)
                    .unwrap_or(defaults.approval_timeout),
                cooldown: self
                    .cooldown_minutes
                    .map(minutes)
                    .unwrap_or(defaults.cooldown),
                required_approvers: None,
            },
            exceptions: Exceptions::default(),
            notify,
        };
        let mut policy = GuardrailPolicy::new(&self.policy_id, spec);
        policy.metadata.namespace = namespace.map(str::to_string);
        Ok(policy)
    }
}

fn is_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(super::name::is_rfc1123_label)
}
