//! EventBridge event envelopes: recognises `source: aws.ce` / `detail-type: Anomaly Detected`
//! explicitly and hands its `detail` to the anomaly parser; every other source or detail-type
//! is rejected as `UnsupportedEvent` (never guessed). Errors are `parse::ParseError`. Pure.

use serde_json::{Map, Value};

use super::CostSignal;
use super::anomaly;
use super::parse::{Hint, ParseError, parse_time};

/// The EventBridge `source` of Cost Anomaly Detection events.
pub const COST_EXPLORER_SOURCE: &str = "aws.ce";
/// The EventBridge `detail-type` of a detected anomaly.
pub const ANOMALY_DETECTED: &str = "Anomaly Detected";

/// Parses an EventBridge event (the whole envelope) into a signal (not yet validated).
pub fn parse_event(object: &Map<String, Value>, hint: &Hint) -> Result<CostSignal, ParseError> {
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("");
    let source = text("source");
    let detail_type = text("detail-type");
    if source != COST_EXPLORER_SOURCE || detail_type != ANOMALY_DETECTED {
        return Err(ParseError::UnsupportedEvent {
            event_source: source.chars().take(128).collect(),
            detail_type: detail_type.chars().take(128).collect(),
        });
    }
    let detail = object.get("detail").ok_or_else(|| ParseError::Malformed {
        format: "EventBridge event",
        message: "missing detail".into(),
    })?;
    let Value::Object(detail_object) = detail else {
        return Err(ParseError::Malformed {
            format: "EventBridge event",
            message: "detail is not an object".into(),
        });
    };
    let event_time = object
        .get("time")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let hint = Hint {
        format: hint.format,
        delivered_at: hint.delivered_at.or(event_time),
    };
    let mut detail_object = detail_object.clone();
    if !detail_object.contains_key("accountId")
        && let Some(account) = object.get("account").filter(|a| a.is_string())
    {
        detail_object.insert("accountId".into(), account.clone());
    }
    let mut signal = anomaly::parse_anomaly(&detail_object, detail, &hint)?;
    signal.raw = Some(Value::Object(object.clone()));
    Ok(signal)
}
