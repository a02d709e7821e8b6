//! The decision step: SLO and cost reports → named signals → (optional simulated overrides) →
//! rule evaluation → a `Decision` record. Pure: the evaluation instant is passed in; it must not
//! fetch, write, or explain (see `explain`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::config::{BurnThresholds, CostSettings, SloTargets};
use super::cost::{self, CostReport};
use super::inputs::{InputState, Reading, Signal, Value};
use super::rules::{self, RuleSet, SignalKind, Signals, Verdict};
use super::slo::{self, SloReport};

/// Why an override (`--set name=value`) was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum OverrideError {
    /// Not `name=value`.
    #[error("--set {0:?}: expected name=value")]
    Shape(String),
    /// Unknown signal.
    #[error("--set {name}: unknown signal; known: {known}")]
    Unknown {
        /// The name given.
        name: String,
        /// Known names.
        known: String,
    },
    /// The value does not fit the signal.
    #[error("--set {name}: {message}")]
    Value {
        /// The signal.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl OverrideError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            OverrideError::Shape(_) => "shape",
            OverrideError::Unknown { .. } => "unknown",
            OverrideError::Value { .. } => "value",
        }
    }
}

/// One evaluation, as audited and reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The service.
    pub service: String,
    /// The instant the inputs describe.
    pub at: Timestamp,
    /// The verdict with its trace.
    pub verdict: Verdict,
    /// The signals the rules saw.
    pub signals: Signals,
    /// The SLO report.
    pub slo: SloReport,
    /// The cost report.
    pub cost: CostReport,
    /// Simulated overrides applied (empty for real runs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
}

fn label(value: Option<&String>, state: InputState, detail: &str) -> Signal {
    Signal {
        state: if value.is_some() && state.usable(true) {
            state
        } else if state.usable(true) {
            InputState::NoData
        } else {
            state
        },
        value: value.map(|v| Value::Label(v.clone())),
        detail: detail.to_string(),
    }
}

fn boolean(value: Option<bool>, from: &Reading) -> Signal {
    match value {
        Some(b) => Signal {
            // Compliance without a threshold is `true` whatever the reading: an objective that
            // does not exist cannot be breached.
            state: if from.state.usable(true) {
                from.state
            } else {
                InputState::Ok
            },
            value: Some(Value::Bool(b)),
            detail: from.detail.clone(),
        },
        None => Signal {
            state: if from.state.usable(true) {
                InputState::NoData
            } else {
                from.state
            },
            value: None,
            detail: from.detail.clone(),
        },
    }
}

/// The named signals from the two reports.
pub fn signals(slo: &SloReport, cost: &CostReport) -> Signals {
    let mut s = Signals::new();
    s.insert(
        "error_budget_pct".into(),
        Signal::number(&slo.error_budget_pct),
    );
    s.insert(
        "availability_pct".into(),
        Signal::number(&slo.availability_pct),
    );
    s.insert(
        "burn_rate".into(),
        label(
            slo.burn_class.as_ref(),
            slo.burn_class_state,
            &slo.burn_class_detail,
        ),
    );
    s.insert(
        "burn_rate_value".into(),
        Signal::number(&slo.burn_rate_value),
    );
    s.insert(
        "burn_alert".into(),
        label(
            slo.burn_alert.as_ref(),
            if slo.burn_alert.is_some() {
                InputState::Ok
            } else {
                slo.burn_class_state.max(InputState::NoData)
            },
            if slo.burn_alert.is_some() {
                ""
            } else if slo.pairs.is_empty() {
                "this metrics source has no multi-window burn rates"
            } else {
                "some burn-rate windows are not available"
            },
        ),
    );
    s.insert(
        "latency_compliant".into(),
        boolean(slo.latency_compliant, &slo.p95_ms),
    );
    s.insert(
        "latency_p99_compliant".into(),
        boolean(slo.latency_p99_compliant, &slo.p99_ms),
    );
    s.insert("p95_ms".into(), Signal::number(&slo.p95_ms));
    s.insert("p99_ms".into(), Signal::number(&slo.p99_ms));
    s.insert(
        "cost_spike_pct".into(),
        Signal::number(&cost.wow_change_pct),
    );
    s.insert(
        "cost_spike_detected".into(),
        boolean(cost.spike_detected, &cost.wow_change_pct),
    );
    s.insert(
        "cost_trend".into(),
        label(
            cost.trend.as_ref(),
            cost.wow_change_pct.state,
            &cost.wow_change_pct.detail,
        ),
    );
    s.insert(
        "current_week_cost_avg".into(),
        Signal::number(&cost.current_week_avg),
    );
    s.insert(
        "prior_week_cost_avg".into(),
        Signal::number(&cost.prior_week_avg),
    );
    s
}

/// Parses `name=value` overrides (camelCase or snake_case names; a value may also be a state:
/// `NoData`, `NaN`, `Stale`, `Error`).
pub fn parse_overrides(pairs: &[String]) -> Result<BTreeMap<String, String>, OverrideError> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| OverrideError::Shape(pair.clone()))?;
        let name = rules::canonical_name(name.trim());
        if rules::signal_kind(&name).is_none() {
            return Err(OverrideError::Unknown {
                name,
                known: rules::SIGNALS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        out.insert(name, value.trim().to_string());
    }
    Ok(out)
}

fn state_named(text: &str) -> Option<InputState> {
    match text {
        "NoData" => Some(InputState::NoData),
        "NaN" => Some(InputState::NaN),
        "Stale" => Some(InputState::Stale),
        "Error" => Some(InputState::Error),
        _ => None,
    }
}

fn override_signal(name: &str, text: &str) -> Result<Signal, OverrideError> {
    if let Some(state) = state_named(text) {
        return Ok(Signal {
            state,
            value: None,
            detail: "simulated".to_string(),
        });
    }
    let err = |message: String| OverrideError::Value {
        name: name.to_string(),
        message,
    };
    let kind = rules::signal_kind(name).ok_or_else(|| err("unknown signal".into()))?;
    let value = match kind {
        SignalKind::Number => Value::Number(
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(format!("{text:?} is not a finite number")))?,
        ),
        SignalKind::Bool => Value::Bool(
            text.parse::<bool>()
                .map_err(|_| err(format!("{text:?} is not true or false")))?,
        ),
        SignalKind::Label(allowed) => {
            let l = text.to_ascii_lowercase();
            if !allowed.contains(&l.as_str()) {
                return Err(err(format!(
                    "{text:?} is not one of {}",
                    allowed.join(", ")
                )));
            }
            Value::Label(l)
        }
    };
    Ok(Signal::ok(value))
}

/// Applies overrides; signals derived from an overridden one (burn class from the burn value,
/// latency compliance from p95/p99, cost trend and spike from the change) are recomputed unless
/// they are overridden too.
pub fn apply_overrides(
    signals: &mut Signals,
    overrides: &BTreeMap<String, String>,
    targets: &SloTargets,
    thresholds: &BurnThresholds,
    cost_settings: &CostSettings,
) -> Result<(), OverrideError> {
    for (name, text) in overrides {
        signals.insert(name.clone(), override_signal(name, text)?);
    }
    let number = |s: &Signals, n: &str| -> Option<f64> {
        match s.get(n).and_then(|x| x.usable(true)) {
            Some(Value::Number(v)) => Some(*v),
            _ => None,
        }
    };
    let derive = |signals: &mut Signals, from: &str, to: &str, f: &dyn Fn(f64) -> Value| {
        if overrides.contains_key(from) && !overrides.contains_key(to) {
            let signal = match number(signals, from) {
                Some(v) => Signal::ok(f(v)),
                None => signals
                    .get(from)
                    .cloned()
                    .map(|mut s| {
                        s.value = None;
                        s
                    })
                    .unwrap_or_else(|| Signal {
                        state: InputState::NoData,
                        value: None,
                        detail: String::new(),
                    }),
            };
            signals.insert(to.to_string(), signal);
        }
    };
    derive(signals, "burn_rate_value", "burn_rate", &|v| {
        Value::Label(slo::burn_class(v, thresholds).to_string())
    });
    let p95 = targets.p95_threshold_ms;
    derive(signals, "p95_ms", "latency_compliant", &|v| {
        Value::Bool(p95.is_none_or(|t| v <= t))
    });
    let p99 = targets.p99_threshold_ms;
    derive(signals, "p99_ms", "latency_p99_compliant", &|v| {
        Value::Bool(p99.is_none_or(|t| v <= t))
    });
    derive(signals, "cost_spike_pct", "cost_trend", &|v| {
        Value::Label(cost::trend(v, cost_settings).to_string())
    });
    let rising = cost_settings.rising_pct;
    derive(signals, "cost_spike_pct", "cost_spike_detected", &|v| {
        Value::Bool(v >= rising)
    });
    Ok(())
}

/// Evaluates the rules over the reports (and overrides) into a decision.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    service: &str,
    at: Timestamp,
    slo: SloReport,
    cost: CostReport,
    rules: &RuleSet,
    overrides: &BTreeMap<String, String>,
    targets: &SloTargets,
    thresholds: &BurnThresholds,
    cost_settings: &CostSettings,
) -> Result<Decision, OverrideError> {
    let mut signals = signals(&slo, &cost);
    apply_overrides(&mut signals, overrides, targets, thresholds, cost_settings)?;
    let verdict = rules::evaluate(rules, &signals);
    Ok(Decision {
        service: service.to_string(),
        at,
        verdict,
        signals,
        slo,
        cost,
        overrides: overrides.clone(),
    })
}

/// Turns a decision whose audit record could not be written into DELAY (`AuditUnavailable`):
/// an unaudited evaluation never allows a deploy. BLOCK stays BLOCK.
pub fn refuse_unaudited(decision: &mut Decision, detail: &str) {
    let v = &mut decision.verdict;
    if v.action >= rules::Action::Delay {
        return;
    }
    v.action = rules::Action::Delay;
    v.reason_code = super::inputs::REASON_AUDIT_UNAVAILABLE.to_string();
    v.reason = format!("The audit record could not be written: {detail}");
    v.remediation = "Fix the audit directory (permissions, disk space) and retry.".to_string();
    v.delay_minutes = v.delay_minutes.max(5);
}
