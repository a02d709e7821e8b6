//! The single payload entry point: detects the format of an AWS cost payload explicitly
//! (Budgets alert text, Budgets Actions notice, Cost Anomaly Detection JSON, EventBridge event)
//! and dispatches to the format's parser; owns `ParseError`, shared by those parsers.
//! Pure: no I/O and no SNS verification (a payload reaching here is already trusted or local);
//! it never guesses a format from loose hints.

use jiff::Timestamp;
use serde_json::Value;

use super::{CostSignal, SignalError, anomaly, budgets, eventbridge};

/// Largest payload accepted (the SNS message limit).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Why a payload could not become a `CostSignal`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge(usize),
    /// No supported format was recognised.
    #[error("unknown payload format: {0}")]
    UnknownFormat(String),
    /// The format was recognised but a required field is missing or malformed.
    #[error("malformed {format} payload: {message}")]
    Malformed {
        /// The recognised format.
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An amount is in a currency other than USD (no conversion is attempted).
    #[error("unsupported currency {0:?}: only USD amounts are accepted")]
    UnsupportedCurrency(String),
    /// A budget that does not measure cost (usage, RI/Savings Plans coverage or utilisation).
    #[error("unsupported budget type {0:?}: only Cost budgets carry a USD amount")]
    UnsupportedBudgetType(String),
    /// The payload is valid but carries no cost amount to act on.
    #[error("no cost amount: {0}")]
    NoCostAmount(String),
    /// An EventBridge event of a source/detail-type this controller does not consume.
    #[error("unsupported EventBridge event source {event_source:?} detail-type {detail_type:?}")]
    UnsupportedEvent {
        /// The event's `source`.
        event_source: String,
        /// The event's `detail-type`.
        detail_type: String,
    },
    /// The normalised signal broke an invariant.
    #[error(transparent)]
    Invalid(#[from] SignalError),
}

impl ParseError {
    /// A short PascalCase label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            ParseError::TooLarge(_) => "TooLarge",
            ParseError::UnknownFormat(_) => "UnknownFormat",
            ParseError::Malformed { .. } => "Malformed",
            ParseError::UnsupportedCurrency(_) => "UnsupportedCurrency",
            ParseError::UnsupportedBudgetType(_) => "UnsupportedBudgetType",
            ParseError::NoCostAmount(_) => "NoCostAmount",
            ParseError::UnsupportedEvent { .. } => "UnsupportedEvent",
            ParseError::Invalid(_) => "InvalidSignal",
        }
    }
}

/// Which format the caller expects; `Auto` detects it from the payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Detect from the payload's shape (explicit markers only).
    #[default]
    Auto,
    /// AWS Budgets alert notification text.
    BudgetAlert,
    /// AWS Budgets Actions notice (text).
    BudgetAction,
    /// Cost Anomaly Detection IMMEDIATE alert JSON.
    AnomalyJson,
    /// An EventBridge event envelope.
    EventBridge,
}

/// What the caller knows besides the payload.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Hint {
    /// The expected format.
    pub format: Format,
    /// When the carrier (e.g. the verified SNS `Timestamp`) says the payload was sent.
    pub delivered_at: Option<Timestamp>,
}

/// Parses a payload into a validated `CostSignal`, detecting its format explicitly.
pub fn parse(payload: &str, hint: &Hint) -> Result<CostSignal, ParseError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ParseError::TooLarge(payload.len()));
    }
    let trimmed = payload.trim_start();
    let looks_json = trimmed.starts_with('{');
    let signal = match hint.format {
        Format::BudgetAlert => budgets::parse_alert(payload, hint)?,
        Format::BudgetAction => budgets::parse_action(payload, hint)?,
        Format::AnomalyJson | Format::EventBridge => {
            let value = json(payload)?;
            return parse_value(&value, hint);
        }
        Format::Auto if looks_json => {
            let value = json(payload)?;
            return parse_value(&value, hint);
        }
        Format::Auto => match budgets::detect(trimmed) {
            Some(budgets::TextKind::Alert) => budgets::parse_alert(payload, hint)?,
            Some(budgets::TextKind::Action) => budgets::parse_action(payload, hint)?,
            None => {
                return Err(ParseError::UnknownFormat(
                    "text is neither an AWS Budget Notification nor an AWS Budget Action notice"
                        .into(),
                ));
            }
        },
    };
    signal.validate()?;
    Ok(signal)
}

fn json(payload: &str) -> Result<Value, ParseError> {
    serde_json::from_str(payload)
        .map_err(|e| ParseError::UnknownFormat(format!("payload looks like JSON but is not: {e}")))
}

/// Parses an already-decoded JSON payload (anomaly JSON or EventBridge event).
pub fn parse_value(value: &Value, hint: &Hint) -> Result<CostSignal, ParseError> {
    let serialized_len = serde_json::to_string(value).map(|s| s.len()).unwrap_or(0);
    if serialized_len > MAX_PAYLOAD_BYTES {
        return Err(ParseError::TooLarge(serialized_len));
    }
    let Value::Object(object) = value else {
        return Err(ParseError::UnknownFormat(
            "JSON payload is not an object".into(),
        ));
    };
    let is_event = object.contains_key("detail-type") && object.contains_key("source");
    let is_anomaly = object.contains_key("anomalyId") && object.contains_key("impact");
    let is_sns_envelope = object.contains_key("TopicArn") && object.contains_key("Signature");
    let signal = match hint.format {
        Format::EventBridge => eventbridge::parse_event(object, hint)?,
        Format::AnomalyJson => anomaly::parse_anomaly(object, value, hint)?,
        Format::BudgetAlert | Format::BudgetAction => {
            return Err(ParseError::UnknownFormat(
                "a Budgets notice is text, but the payload is JSON".into(),
            ));
        }
        Format::Auto if is_event => eventbridge::parse_event(object, hint)?,
        Format::Auto if is_anomaly => anomaly::parse_anomaly(object, value, hint)?,
        Format::Auto if is_sns_envelope => {
            return Err(ParseError::UnknownFormat(
                "an SNS envelope: verify it with signal::sns and parse its Message".into(),
            ));
        }
        Format::Auto => {
            return Err(ParseError::UnknownFormat(
                "JSON has neither detail-type+source (EventBridge) nor anomalyId+impact (Cost Anomaly Detection)"
                    .into(),
            ));
        }
    };
    signal.validate()?;
    Ok(signal)
}

/// An amount with its currency code as stated in the text.
#[derive(Clone, Debug, PartialEq)]
pub struct Money {
    /// ISO-like currency code (`$` is read as USD).
    pub currency: String,
    /// The amount.
    pub amount: f64,
}

/// Reads amounts like `$1,234.56`, `USD 1,234.56`, `1234.56 USD`, `¥5000`, `EUR 10.00`.
pub fn parse_money(text: &str) -> Option<Money> {
    let text = text.trim();
    let (currency, number) = if let Some(rest) = text.strip_prefix('$') {
        ("USD".to_string(), rest)
    } else if let Some(rest) = text.strip_prefix("US$") {
        ("USD".to_string(), rest)
    } else if let Some(rest) = text.strip_prefix('¥') {
        ("JPY/CNY(¥)".to_string(), rest)
    } else if let Some(rest) = text.strip_prefix('€') {
        ("EUR".to_string(), rest)
    } else if let Some(rest) = text.strip_prefix('£') {
        ("GBP".to_string(), rest)
    } else {
        let mut words = text.split_whitespace();
        let first = words.next()?;
        let second = words.next();
        if words.next().is_some() {
            return None;
        }
        match second {
            Some(second) if is_code(first) => (first.to_string(), second),
            Some(second) if is_code(second) => (second.to_string(), first),
            _ => return None,
        }
    };
    Some(Money {
        currency,
        amount: parse_amount(number.trim())?,
    })
}

fn is_code(word: &str) -> bool {
    word.len() == 3 && word.bytes().all(|b| b.is_ascii_uppercase())
}

/// Reads `1234.56` or `1,234.56` (well-formed groups of three only).
pub fn parse_amount(text: &str) -> Option<f64> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    if let Some(fraction) = fraction
        && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let digits = if integer.contains(',') {
        let groups: Vec<&str> = integer.split(',').collect();
        let [first, rest @ ..] = groups.as_slice() else {
            return None;
        };
        if first.is_empty() || first.len() > 3 || rest.iter().any(|g| g.len() != 3) {
            return None;
        }
        groups.concat()
    } else {
        integer.to_string()
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let plain = match fraction {
        Some(fraction) => format!("{digits}.{fraction}"),
        None => digits,
    };
    plain.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses an RFC 3339 timestamp or a plain `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time(text: &str) -> Option<Timestamp> {
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        return Some(timestamp);
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Rounds to cents, so binary float noise never shows in ids or comparisons.
pub fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
