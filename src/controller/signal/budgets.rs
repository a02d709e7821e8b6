//! AWS Budgets text payloads (what SNS delivers as `Message`): budget alert notifications and
//! Budgets Actions notices, normalised to `Budget` signals. Errors are `parse::ParseError`.
//! Pure string handling: no I/O, no currency conversion (non-USD amounts are rejected).

use jiff::Timestamp;
use serde_json::Value;

use super::CostSignal;
use super::parse::{Hint, Money, ParseError, cents, parse_money};
use crate::controller::crd::SignalSource;

const ALERT: &str = "budget alert";
const ACTION: &str = "budget action";

/// Which Budgets text a payload is, judged by its first line only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// `AWS Budget Notification <date>`.
    Alert,
    /// `AWS Budget Action ...`.
    Action,
}

/// Recognises a Budgets text by its first line; `None` when it is neither.
pub fn detect(text: &str) -> Option<TextKind> {
    let first = text.trim_start().lines().next()?.trim();
    if first.starts_with("AWS Budget Notification") {
        Some(TextKind::Alert)
    } else if first.starts_with("AWS Budget Action") || first.starts_with("AWS Budgets Action") {
        Some(TextKind::Action)
    } else {
        None
    }
}

/// The `Key: value` lines and the header facts of a Budgets text.
struct Fields<'a> {
    lines: Vec<(&'a str, &'a str)>,
    header_date: Option<jiff::civil::Date>,
    account: Option<String>,
    details_url: Option<String>,
}

impl<'a> Fields<'a> {
    fn read(text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut header_date = None;
        let mut account = None;
        let mut details_url = None;
        let mut header_seen = false;
        for line in text.lines() {
            let line = line.trim();
            if !header_seen && !line.is_empty() {
                header_seen = true;
                header_date = header_date_of(line);
            }
            if let Some(rest) = line.strip_prefix("AWS Account")
                && account.is_none()
            {
                let candidate = rest.trim_start_matches([':', ' ']).trim();
                if is_account(candidate) {
                    account = Some(candidate.to_string());
                }
            }
            if let Some(rest) = line.strip_prefix("[1]") {
                let url = rest.trim();
                if url.starts_with("https://") && !url.contains(char::is_whitespace) {
                    details_url = Some(url.to_string());
                }
            }
            if let Some((key, value)) = line.split_once(':') {
                lines.push((key.trim(), value.trim()));
            }
        }
        Fields {
            lines,
            header_date,
            account,
            details_url,
        }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.lines
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    fn require(&self, key: &'static str, format: &'static str) -> Result<&'a str, ParseError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ParseError::Malformed {
                format,
                message: format!("missing {key:?} line"),
            }),
        }
    }
}

fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `AWS Budget Notification November 20, 2026` → the date.
fn header_date_of(line: &str) -> Option<jiff::civil::Date> {
    let rest = line
        .strip_prefix("AWS Budget Notification")
        .or_else(|| line.strip_prefix("AWS Budget Action Notification"))
        .or_else(|| line.strip_prefix("AWS Budgets Action Notification"))
        .or_else(|| line.strip_prefix("AWS Budget Action"))?
        .trim();
    jiff::fmt::strtime::parse("%B %d, %Y", rest)
        .ok()?
        .to_date()
        .ok()
}

fn usd(money: Money, field: &'static str, format: &'static str) -> Result<f64, ParseError> {
    if money.currency != "USD" {
        return Err(ParseError::UnsupportedCurrency(money.currency));
    }
    if !(money.amount.is_finite() && money.amount >= 0.0) {
        return Err(ParseError::Malformed {
            format,
            message: format!("{field} is not a non-negative amount"),
        });
    }
    Ok(money.amount)
}

fn money_field(
    fields: &Fields<'_>,
    key: &'static str,
    format: &'static str,
) -> Result<f64, ParseError> {
    let text = fields.require(key, format)?;
    let money = parse_money(text).ok_or_else(|| ParseError::Malformed {
        format,
        message: format!("{key} {:?} is not an amount", truncate(text)),
    })?;
    usd(money, key, format)
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

fn check_budget_type(fields: &Fields<'_>) -> Result<(), ParseError> {
    match fields.get("Budget Type") {
        None => Ok(()),
        Some(kind) if kind.eq_ignore_ascii_case("Cost") => Ok(()),
        Some(kind) => Err(ParseError::UnsupportedBudgetType(truncate(kind))),
    }
}

fn check_budget_name(name: &str, format: &'static str) -> Result<(), ParseError> {
    if name.len() > 100 || name.contains('\\') {
        return Err(ParseError::Malformed {
            format,
            message: "Budget Name is longer than 100 characters or has a backslash".into(),
        });
    }
    Ok(())
}

/// The budget period named by the alert's sentence, else the notification date.
fn period(text: &str, date: Option<jiff::civil::Date>) -> String {
    let Some(date) = date else {
        return "undated".into();
    };
    if text.contains("for the current month") {
        format!("{:04}-{:02}", date.year(), date.month())
    } else if text.contains("for the current quarter") {
        format!("{:04}-Q{}", date.year(), (date.month() - 1) / 3 + 1)
    } else if text.contains("for the current year") {
        format!("{:04}", date.year())
    } else {
        date.to_string()
    }
}

fn observed_at(hint: &Hint, date: Option<jiff::civil::Date>) -> Result<Timestamp, ParseError> {
    if let Some(at) = hint.delivered_at {
        return Ok(at);
    }
    date.and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| ParseError::Malformed {
            format: ALERT,
            message: "no delivery time and no date in the header line".into(),
        })
}

/// Parses an AWS Budgets alert notification text into a `Budget` signal (not yet validated).
pub fn parse_alert(text: &str, hint: &Hint) -> Result<CostSignal, ParseError> {
    let fields = Fields::read(text);
    if detect(text) != Some(TextKind::Alert) {
        return Err(ParseError::UnknownFormat(
            "budget alert text must start with \"AWS Budget Notification\"".into(),
        ));
    }
    check_budget_type(&fields)?;
    let name = fields.require("Budget Name", ALERT)?;
    check_budget_name(name, ALERT)?;
    let alert_type = fields.require("Alert Type", ALERT)?;
    let alert_type = match alert_type.to_ascii_uppercase().as_str() {
        "ACTUAL" => "ACTUAL",
        "FORECASTED" => "FORECASTED",
        _ => {
            return Err(ParseError::Malformed {
                format: ALERT,
                message: format!(
                    "Alert Type {:?} is not ACTUAL or FORECASTED",
                    truncate(alert_type)
                ),
            });
        }
    };
    let budgeted = money_field(&fields, "Budgeted Amount", ALERT)?;
    let amount_key = if alert_type == "ACTUAL" {
        "ACTUAL Amount"
    } else {
        "FORECASTED Amount"
    };
    let amount = money_field(&fields, amount_key, ALERT)?;
    let threshold: String = fields
        .require("Alert Threshold", ALERT)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if threshold.len() > 64 {
        return Err(ParseError::Malformed {
            format: ALERT,
            message: "Alert Threshold is too long".into(),
        });
    }
    let account = fields
        .account
        .clone()
        .ok_or_else(|| ParseError::Malformed {
            format: ALERT,
            message: "missing \"AWS Account <12 digits>\" line".into(),
        })?;
    let over = cents((amount - budgeted).max(0.0));
    let period = period(text, fields.header_date);
    Ok(CostSignal {
        source: SignalSource::Budget,
        id: format!("{name}/{period}/{alert_type}/{threshold}"),
        account_id: account,
        impact_usd: over,
        service: None,
        region: None,
        budget_name: Some(name.to_string()),
        observed_at: observed_at(hint, fields.header_date)?,
        details_url: fields.details_url.clone(),
        summary: Some(format!(
            "{alert_type} cost ${amount:.2} vs budget {name} ${budgeted:.2} (threshold {threshold}): ${over:.2} over"
        )),
        principal: None,
        raw: Some(Value::String(text.to_string())),
    })
}

/// Parses an AWS Budgets Actions notice; it becomes a signal only when it states a USD amount.
pub fn parse_action(text: &str, hint: &Hint) -> Result<CostSignal, ParseError> {
    let fields = Fields::read(text);
    if detect(text) != Some(TextKind::Action) {
        return Err(ParseError::UnknownFormat(
            "budget action text must start with \"AWS Budget Action\"".into(),
        ));
    }
    check_budget_type(&fields)?;
    let name = fields.require("Budget Name", ACTION)?;
    check_budget_name(name, ACTION)?;
    let action_type = fields.get("Action Type").unwrap_or("unknown");
    let status = fields
        .get("Action Status")
        .or_else(|| fields.get("Status"))
        .unwrap_or("unknown");
    let account = fields
        .account
        .clone()
        .ok_or_else(|| ParseError::Malformed {
            format: ACTION,
            message: "missing \"AWS Account <12 digits>\" line".into(),
        })?;
    let (kind, amount_key) = if fields.get("ACTUAL Amount").is_some() {
        ("ACTUAL", "ACTUAL Amount")
    } else if fields.get("FORECASTED Amount").is_some() {
        ("FORECASTED", "FORECASTED Amount")
    } else {
        return Err(ParseError::NoCostAmount(format!(
            "budget action notice for {:?} ({}, {}) states no ACTUAL or FORECASTED amount",
            truncate(name),
            truncate(action_type),
            truncate(status)
        )));
    };
    let amount = money_field(&fields, amount_key, ACTION)?;
    let budgeted = money_field(&fields, "Budgeted Amount", ACTION)?;
    let over = cents((amount - budgeted).max(0.0));
    let action_id = fields
        .get("Action Id")
        .or_else(|| fields.get("Action ID"))
        .unwrap_or(action_type);
    let period = period(text, fields.header_date);
    Ok(CostSignal {
        source: SignalSource::Budget,
        id: format!("{name}/{period}/{kind}/action/{}", truncate(action_id)),
        account_id: account,
        impact_usd: over,
        service: None,
        region: None,
        budget_name: Some(name.to_string()),
        observed_at: observed_at(hint, fields.header_date)?,
        details_url: fields.details_url.clone(),
        summary: Some(format!(
            "budget action {} {} on {name}: {kind} ${amount:.2} vs ${budgeted:.2}",
            truncate(action_type),
            truncate(status)
        )),
        principal: None,
        raw: Some(Value::String(text.to_string())),
    })
}
