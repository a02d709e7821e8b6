//! The rule-based explanation of a decision: what was decided, why (the deciding rule and the
//! values it saw), what to do, and when to retry. Pure text from the `Decision`; the optional
//! LLM explainer (`llm`) only rephrases it and falls back to it. Must not fetch or decide.

use super::decide::Decision;
use super::inputs::{REASON_COULD_NOT_EVALUATE, REASON_NO_RULE_MATCHED, Value, format_number};
use super::rules::{Action, RuleOutcome};

/// The narrative for a decision (several short paragraphs).
pub fn narrative(decision: &Decision) -> String {
    let v = &decision.verdict;
    let mut out = Vec::new();
    let what = match v.action {
        Action::Allow => format!("Deployment of {} is ALLOWED.", decision.service),
        Action::Warn => format!(
            "Deployment of {} may proceed with a WARNING.",
            decision.service
        ),
        Action::Delay => format!(
            "Deployment of {} is DELAYED by {} minutes.",
            decision.service, v.delay_minutes
        ),
        Action::Block => format!("Deployment of {} is BLOCKED.", decision.service),
    };
    out.push(what);
    let why = match v.reason_code.as_str() {
        REASON_COULD_NOT_EVALUATE => format!(
            "Why: the gate could not evaluate rule {} ({}) because {} — missing data is never treated as healthy.",
            v.policy_id,
            v.policy_name,
            describe_missing(decision)
        ),
        REASON_NO_RULE_MATCHED => {
            "Why: no rule matched, and the gate does not allow by default.".to_string()
        }
        _ => {
            let decisive = v.trace.iter().find(|t| t.decisive);
            let facts = decisive
                .map(|t| {
                    t.conditions
                        .iter()
                        .map(|c| {
                            format!(
                                "{} is {} ({} {})",
                                c.signal,
                                c.actual
                                    .as_ref()
                                    .map(Value::display)
                                    .unwrap_or_else(|| "unknown".into()),
                                c.operator,
                                c.expected
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            if facts.is_empty() {
                format!(
                    "Why: rule {} ({}) — {}.",
                    v.policy_id, v.policy_name, v.reason
                )
            } else {
                format!(
                    "Why: rule {} ({}) matched: {}. {}.",
                    v.policy_id, v.policy_name, facts, v.reason
                )
            }
        }
    };
    out.push(why);
    out.push(format!("Signals: {}.", summary(decision)));
    let earlier: Vec<String> = v
        .trace
        .iter()
        .take_while(|t| !t.decisive)
        .filter(|t| t.outcome == RuleOutcome::NotMatched)
        .map(|t| t.id.clone())
        .collect();
    if !earlier.is_empty() {
        out.push(format!(
            "Rules checked first and not matched: {}.",
            earlier.join(", ")
        ));
    }
    if !v.remediation.is_empty() {
        out.push(format!("What to do: {}", v.remediation));
    }
    let retry = match v.action {
        Action::Delay => format!("When to retry: in {} minutes, or once the signals recover.", v.delay_minutes),
        Action::Block => "When to retry: after the cause is fixed and the signals recover; a retry now will block again.".to_string(),
        _ => "When to retry: no retry needed.".to_string(),
    };
    out.push(retry);
    out.join("\n")
}

fn describe_missing(decision: &Decision) -> String {
    let v = &decision.verdict;
    let parts: Vec<String> = v
        .missing
        .iter()
        .map(|name| match decision.signals.get(name) {
            Some(s) if !s.detail.is_empty() => {
                format!("{name} is {} ({})", s.state.as_str(), s.detail)
            }
            Some(s) => format!("{name} is {}", s.state.as_str()),
            None => format!("{name} is missing"),
        })
        .collect();
    if parts.is_empty() {
        "an input was not available".to_string()
    } else {
        parts.join("; ")
    }
}

/// A one-line summary of the main signals.
pub fn summary(decision: &Decision) -> String {
    let show = |name: &str| -> String {
        match decision.signals.get(name) {
            Some(s) => match (&s.value, s.state.as_str()) {
                (Some(Value::Number(n)), "Ok") => format_number(*n),
                (Some(v), "Ok") => v.display(),
                (Some(v), state) => format!("{} ({state})", v.display()),
                (None, state) => state.to_string(),
            },
            None => "absent".to_string(),
        }
    };
    format!(
        "error budget {}%, burn {} (x{}), p95 {} ms, cost WoW {}%",
        show("error_budget_pct"),
        show("burn_rate"),
        show("burn_rate_value"),
        show("p95_ms"),
        show("cost_spike_pct")
    )
}
