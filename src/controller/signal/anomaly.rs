//! Cost Anomaly Detection IMMEDIATE alert JSON (the SNS `Message`, or an EventBridge `detail`),
//! normalised to `CostAnomaly` signals; also renders a signal back to that JSON (for tests and
//! the demo). Errors are `parse::ParseError`. Pure: no I/O, no Cost Explorer calls.

use serde_json::{Map, Value, json};

use super::CostSignal;
use super::parse::{Hint, ParseError, parse_time};
use crate::controller::crd::SignalSource;

const FORMAT: &str = "cost anomaly";

fn string<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn malformed(message: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        format: FORMAT,
        message: message.into(),
    }
}

/// A number given as a JSON number or a numeric string.
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// The root cause with the largest stated contribution, else the first one.
fn top_root_cause(causes: &[Value]) -> Option<&Map<String, Value>> {
    let objects: Vec<&Map<String, Value>> = causes.iter().filter_map(Value::as_object).collect();
    let contribution = |cause: &Map<String, Value>| {
        number(
            cause
                .get("impact")
                .and_then(Value::as_object)
                .and_then(|i| i.get("contribution")),
        )
    };
    let mut best: Option<(&Map<String, Value>, f64)> = None;
    for cause in &objects {
        if let Some(value) = contribution(cause)
            && best.is_none_or(|(_, b)| value > b)
        {
            best = Some((cause, value));
        }
    }
    best.map(|(cause, _)| cause)
        .or_else(|| objects.first().copied())
}

/// Parses the anomaly object (`object` is `raw` as a map) into a signal (not yet validated).
pub fn parse_anomaly(
    object: &Map<String, Value>,
    raw: &Value,
    hint: &Hint,
) -> Result<CostSignal, ParseError> {
    let anomaly_id = string(object, "anomalyId").ok_or_else(|| malformed("missing anomalyId"))?;
    let impact = object
        .get("impact")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("missing impact object"))?;
    let total_impact = number(impact.get("totalImpact"))
        .ok_or_else(|| malformed("impact.totalImpact is not a number"))?;
    let causes: &[Value] = match object.get("rootCauses") {
        Some(Value::Array(causes)) => causes,
        None | Some(Value::Null) => &[],
        Some(_) => return Err(malformed("rootCauses is not an array")),
    };
    let mut linked: Vec<&str> = causes
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|c| string(c, "linkedAccount"))
        .collect();
    linked.sort_unstable();
    linked.dedup();
    let account_id = match linked.as_slice() {
        [only] => (*only).to_string(),
        _ => string(object, "accountId")
            .ok_or_else(|| malformed("missing accountId and no single linkedAccount"))?
            .to_string(),
    };
    let top = top_root_cause(causes);
    let service = top.and_then(|c| string(c, "service")).map(str::to_string);
    let region = top.and_then(|c| string(c, "region")).map(str::to_string);
    let usage_type = top.and_then(|c| string(c, "usageType"));
    let observed_at = string(object, "anomalyEndDate")
        .and_then(parse_time)
        .or_else(|| string(object, "anomalyStartDate").and_then(parse_time))
        .or(hint.delivered_at)
        .ok_or_else(|| malformed("no usable anomalyEndDate, anomalyStartDate or delivery time"))?;
    let details_url = string(object, "anomalyDetailsLink")
        .filter(|u| u.starts_with("https://"))
        .map(str::to_string);
    let what = match (service.as_deref(), usage_type) {
        (Some(service), Some(usage)) => format!("{service} ({usage})"),
        (Some(service), None) => service.to_string(),
        (None, Some(usage)) => usage.to_string(),
        (None, None) => string(object, "dimensionalValue")
            .unwrap_or("unknown service")
            .to_string(),
    };
    let summary = match region.as_deref() {
        Some(region) => format!("cost anomaly in {what}, {region}: ${total_impact:.2} impact"),
        None => format!("cost anomaly in {what}: ${total_impact:.2} impact"),
    };
    Ok(CostSignal {
        source: SignalSource::CostAnomaly,
        id: anomaly_id.to_string(),
        account_id,
        impact_usd: total_impact,
        service,
        region,
        budget_name: None,
        observed_at,
        details_url,
        summary: Some(summary),
        principal: None,
        raw: Some(raw.clone()),
    })
}

/// Renders a signal as Cost Anomaly Detection IMMEDIATE alert JSON (inverse of `parse_anomaly`).
pub fn render(signal: &CostSignal) -> Value {
    let mut cause = Map::new();
    cause.insert("linkedAccount".into(), json!(signal.account_id));
    if let Some(service) = &signal.service {
        cause.insert("service".into(), json!(service));
    }
    if let Some(region) = &signal.region {
        cause.insert("region".into(), json!(region));
    }
    let mut object = Map::new();
    object.insert("accountId".into(), json!(signal.account_id));
    object.insert("anomalyId".into(), json!(signal.id));
    object.insert(
        "anomalyStartDate".into(),
        json!(signal.observed_at.to_string()),
    );
    object.insert(
        "anomalyEndDate".into(),
        json!(signal.observed_at.to_string()),
    );
    if let Some(url) = &signal.details_url {
        object.insert("anomalyDetailsLink".into(), json!(url));
    }
    object.insert("dimensionalValue".into(), json!(signal.service));
    object.insert(
        "impact".into(),
        json!({
            "maxImpact": signal.impact_usd,
            "totalImpact": signal.impact_usd,
            "totalActualSpend": signal.impact_usd,
            "totalExpectedSpend": 0.0,
            "totalImpactPercentage": null,
        }),
    );
    object.insert(
        "rootCauses".into(),
        Value::Array(vec![Value::Object(cause)]),
    );
    Value::Object(object)
}
