//! Typed gate inputs: every measured value carries a state (`Ok`, `NoData`, `NaN`, `Stale`,
//! `Partial`, `Error`) and a detail. This module owns the state model only; it must not fetch,
//! decide, or ever turn a missing value into zero.

use serde::{Deserialize, Serialize};

/// Reason code: the input is missing, NaN, stale or failed, so a rule could not be evaluated.
pub const REASON_COULD_NOT_EVALUATE: &str = "CouldNotEvaluate";
/// Reason code: a rule matched on `Ok` inputs.
pub const REASON_RULE_MATCHED: &str = "RuleMatched";
/// Reason code: no rule matched at all (the rule set has no catch-all).
pub const REASON_NO_RULE_MATCHED: &str = "NoRuleMatched";
/// Reason code: the audit record could not be written, so the gate refused to allow.
pub const REASON_AUDIT_UNAVAILABLE: &str = "AuditUnavailable";

/// The state of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum InputState {
    /// A current, complete value.
    Ok,
    /// The value exists but is provisional (e.g. cost days still flagged `Estimated`).
    Partial,
    /// The source answered with nothing (empty vector, below the traffic floor, no file rows).
    NoData,
    /// The source answered `NaN` or an infinity (e.g. `0/0`).
    NaN,
    /// The newest underlying sample is older than the configured staleness bound.
    Stale,
    /// The source could not be asked (transport error, HTTP error, malformed answer, timeout).
    Error,
}

impl InputState {
    /// Whether a value in this state may be used to evaluate a rule (`Ok`, and `Partial` when
    /// the rule accepts provisional values).
    pub fn usable(self, accept_partial: bool) -> bool {
        match self {
            InputState::Ok => true,
            InputState::Partial => accept_partial,
            _ => false,
        }
    }

    /// The state's name as written in reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            InputState::Ok => "Ok",
            InputState::Partial => "Partial",
            InputState::NoData => "NoData",
            InputState::NaN => "NaN",
            InputState::Stale => "Stale",
            InputState::Error => "Error",
        }
    }

    /// The worse of two states (used when a derived value combines inputs).
    pub fn worst(self, other: InputState) -> InputState {
        self.max(other)
    }
}

/// A number with a state. `value` is `Some` only for `Ok`, `Partial` and `Stale` (a stale value
/// is kept for the report, never used).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The state.
    pub state: InputState,
    /// The value, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why the state is what it is (empty for a plain `Ok`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Reading {
    /// A current value; a non-finite number becomes `NaN` state.
    pub fn ok(value: f64) -> Reading {
        if value.is_finite() {
            Reading {
                state: InputState::Ok,
                value: Some(value),
                detail: String::new(),
            }
        } else {
            Reading::nan(format!("value is {value}"))
        }
    }

    /// A provisional value.
    pub fn partial(value: f64, detail: impl Into<String>) -> Reading {
        if value.is_finite() {
            Reading {
                state: InputState::Partial,
                value: Some(value),
                detail: detail.into(),
            }
        } else {
            Reading::nan(format!("value is {value}"))
        }
    }

    /// No value.
    pub fn no_data(detail: impl Into<String>) -> Reading {
        Reading {
            state: InputState::NoData,
            value: None,
            detail: detail.into(),
        }
    }

    /// A `NaN`/infinite answer.
    pub fn nan(detail: impl Into<String>) -> Reading {
        Reading {
            state: InputState::NaN,
            value: None,
            detail: detail.into(),
        }
    }

    /// A value that is too old to use (kept for the report).
    pub fn stale(value: Option<f64>, detail: impl Into<String>) -> Reading {
        Reading {
            state: InputState::Stale,
            value,
            detail: detail.into(),
        }
    }

    /// A failed source.
    pub fn error(detail: impl Into<String>) -> Reading {
        Reading {
            state: InputState::Error,
            value: None,
            detail: detail.into(),
        }
    }

    /// The value when the state is usable.
    pub fn usable(&self, accept_partial: bool) -> Option<f64> {
        if self.state.usable(accept_partial) {
            self.value
        } else {
            None
        }
    }

    /// The same reading with a worse state carried over from `other` when `other` is worse;
    /// the value is dropped unless the result is still usable or stale.
    pub fn degrade(self, state: InputState, detail: &str) -> Reading {
        if state <= self.state {
            return self;
        }
        let value = match state {
            InputState::Partial | InputState::Stale => self.value,
            _ => None,
        };
        Reading {
            state,
            value,
            detail: detail.to_string(),
        }
    }
}

/// A signal value as rules see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean (`latency_compliant`).
    Bool(bool),
    /// A number (`error_budget_pct`).
    Number(f64),
    /// A label (`burn_rate`: low/medium/high/critical).
    Label(String),
}

impl Value {
    /// The value as text for reports.
    pub fn display(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => format_number(*n),
            Value::Label(l) => l.clone(),
        }
    }
}

/// Formats a number with at most four decimals and no trailing zeros.
pub fn format_number(n: f64) -> String {
    let text = format!("{n:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// One named signal: a value (when usable or stale) and its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The state.
    pub state: InputState,
    /// The value, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why the state is what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Signal {
    /// A signal from a numeric reading.
    pub fn number(reading: &Reading) -> Signal {
        Signal {
            state: reading.state,
            value: reading.value.map(Value::Number),
            detail: reading.detail.clone(),
        }
    }

    /// A signal derived from a reading through `f` (state and detail kept).
    pub fn derived(reading: &Reading, f: impl Fn(f64) -> Value) -> Signal {
        Signal {
            state: reading.state,
            value: reading.value.map(f),
            detail: reading.detail.clone(),
        }
    }

    /// An `Ok` signal.
    pub fn ok(value: Value) -> Signal {
        Signal {
            state: InputState::Ok,
            value: Some(value),
            detail: String::new(),
        }
    }

    /// The value when the state is usable.
    pub fn usable(&self, accept_partial: bool) -> Option<&Value> {
        if self.state.usable(accept_partial) {
            self.value.as_ref()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_never_ok() {
        assert_eq!(Reading::ok(f64::NAN).state, InputState::NaN);
        assert_eq!(Reading::ok(f64::INFINITY).state, InputState::NaN);
        assert_eq!(
            Reading::partial(f64::NEG_INFINITY, "x").state,
            InputState::NaN
        );
        assert_eq!(Reading::ok(1.5).usable(false), Some(1.5));
    }

    #[test]
    fn only_ok_and_accepted_partial_are_usable() {
        assert_eq!(Reading::partial(2.0, "est").usable(false), None);
        assert_eq!(Reading::partial(2.0, "est").usable(true), Some(2.0));
        assert_eq!(Reading::stale(Some(3.0), "old").usable(true), None);
        assert_eq!(Reading::no_data("none").usable(true), None);
        assert_eq!(Reading::error("down").usable(true), None);
    }

    #[test]
    fn degrade_keeps_the_worse_state() {
        let r = Reading::ok(1.0).degrade(InputState::Error, "boom");
        assert_eq!(r.state, InputState::Error);
        assert_eq!(r.value, None);
        let r = Reading::error("a").degrade(InputState::Partial, "b");
        assert_eq!(r.state, InputState::Error);
    }

    #[test]
    fn numbers_format_without_noise() {
        assert_eq!(format_number(15.0), "15");
        assert_eq!(format_number(0.12345), "0.1235");
        assert_eq!(format_number(-0.00001), "0");
    }
}
