//! Presentation of decisions and reports: the text report, the JSON document, the seed's API
//! shapes (`{"ok":…,"data":…}`), the GitHub Actions step summary (Markdown), `$GITHUB_OUTPUT`
//! lines and the workflow annotation. Pure string building; it must not write anywhere.

use serde_json::{Value as Json, json};

use super::cost::CostReport;
use super::decide::Decision;
use super::inputs::{InputState, Reading, Value, format_number};
use super::rules::{Action, RuleOutcome};
use super::slo::SloReport;

fn reading_json(r: &Reading) -> Json {
    match r.value {
        Some(v) if r.state.usable(true) => json!(round(v)),
        _ => Json::Null,
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn reading_text(r: &Reading, unit: &str) -> String {
    match (r.state, r.value) {
        (InputState::Ok, Some(v)) => format!("{}{unit}", format_number(round(v))),
        (state, Some(v)) => format!(
            "{}{unit} ({}: {})",
            format_number(round(v)),
            state.as_str(),
            r.detail
        ),
        (state, None) if r.detail.is_empty() => state.as_str().to_string(),
        (state, None) => format!("{} ({})", state.as_str(), r.detail),
    }
}

/// The seed's `/api/slo` data, with a `states` map for values that are not `Ok`.
pub fn slo_data(slo: &SloReport) -> Json {
    json!({
        "error_budget_pct": reading_json(&slo.error_budget_pct),
        "availability_pct": slo.availability_pct.usable(true).map(|v| (v * 10_000.0).round() / 10_000.0),
        "burn_rate_label": slo.burn_class,
        "burn_rate_value": reading_json(&slo.burn_rate_value),
        "burn_alert": slo.burn_alert,
        "latency_ok": slo.latency_compliant,
        "p95_ms": reading_json(&slo.p95_ms),
        "p99_ms": reading_json(&slo.p99_ms),
        "within_budget": slo.error_budget_raw_pct.usable(true).map(|v| v > 0.0),
        "states": {
            "error_budget_pct": slo.error_budget_pct.state,
            "burn_rate": slo.burn_class_state,
            "p95_ms": slo.p95_ms.state,
            "p99_ms": slo.p99_ms.state,
        },
        "windows": slo.pairs.iter().map(|p| json!({
            "long": p.long.promql(),
            "short": p.short.promql(),
            "factor": p.factor,
            "severity": p.severity,
            "long_burn": reading_json(&p.long_burn),
            "short_burn": reading_json(&p.short_burn),
            "firing": p.firing,
        })).collect::<Vec<_>>(),
    })
}

/// The seed's `/api/cost` data.
pub fn cost_data(cost: &CostReport) -> Json {
    json!({
        "current_week_avg": reading_json(&cost.current_week_avg),
        "prior_week_avg": reading_json(&cost.prior_week_avg),
        "wow_change_pct": reading_json(&cost.wow_change_pct),
        "trend": cost.trend,
        "spike_detected": cost.spike_detected,
        "estimated_days": cost.estimated_days,
        "state": cost.wow_change_pct.state,
        "detail": cost.wow_change_pct.detail,
    })
}

/// The seed's `/api/decision` data.
pub fn decision_data(d: &Decision) -> Json {
    let v = &d.verdict;
    json!({
        "action": v.action,
        "policy_id": v.policy_id,
        "policy_name": v.policy_name,
        "reason": v.reason,
        "reason_code": v.reason_code,
        "remediation": v.remediation,
        "delay_minutes": v.delay_minutes,
        "service": d.service,
        "at": d.at.to_string(),
    })
}

/// The full JSON document printed by `gate --output json`.
pub fn decision_document(d: &Decision, explanation: Option<&str>) -> Json {
    let mut doc = json!({
        "verdict": d.verdict.action,
        "exitCode": d.verdict.action.exit_code(),
        "service": d.service,
        "at": d.at.to_string(),
        "policyId": d.verdict.policy_id,
        "policyName": d.verdict.policy_name,
        "reasonCode": d.verdict.reason_code,
        "reason": d.verdict.reason,
        "remediation": d.verdict.remediation,
        "delayMinutes": d.verdict.delay_minutes,
        "missing": d.verdict.missing,
        "signals": d.signals,
        "trace": d.verdict.trace,
        "slo": slo_data(&d.slo),
        "cost": cost_data(&d.cost),
    });
    if !d.overrides.is_empty() {
        doc["overrides"] = json!(d.overrides);
    }
    if let Some(e) = explanation {
        doc["explanation"] = json!(e);
    }
    doc
}

/// The text report for `gate`.
pub fn decision_text(d: &Decision, explanation: Option<&str>, with_trace: bool) -> String {
    let v = &d.verdict;
    let mut out = String::new();
    out.push_str(&format!("Deployment gate for {} at {}\n", d.service, d.at));
    out.push_str(&format!("Decision:   {}", v.action.as_str()));
    if v.action == Action::Delay {
        out.push_str(&format!(" ({} minutes)", v.delay_minutes));
    }
    out.push('\n');
    if !v.policy_id.is_empty() {
        out.push_str(&format!(
            "Policy:     [{}] {}\n",
            v.policy_id, v.policy_name
        ));
    }
    out.push_str(&format!("Reason:     {} ({})\n", v.reason, v.reason_code));
    out.push_str(&format!("Remedy:     {}\n", v.remediation));
    out.push_str("Signals:\n");
    for (name, s) in &d.signals {
        let value = s
            .value
            .as_ref()
            .map(Value::display)
            .unwrap_or_else(|| "-".into());
        let detail = if s.detail.is_empty() {
            String::new()
        } else {
            format!("  ({})", s.detail)
        };
        out.push_str(&format!(
            "  {name:<24} {value:<12} {}{detail}\n",
            s.state.as_str()
        ));
    }
    if !d.overrides.is_empty() {
        let list: Vec<String> = d
            .overrides
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("Simulated:  {}\n", list.join(" ")));
    }
    if with_trace {
        out.push_str("Trace:\n");
        for t in &v.trace {
            let mark = if t.decisive { "=>" } else { "  " };
            let outcome = match t.outcome {
                RuleOutcome::Matched => "matched",
                RuleOutcome::NotMatched => "not matched",
                RuleOutcome::CouldNotEvaluate => "could not evaluate",
            };
            out.push_str(&format!(
                "{mark} {} {:<5} {outcome}: {}\n",
                t.id,
                t.action.as_str(),
                t.why
            ));
        }
    }
    if let Some(e) = explanation {
        out.push_str("Explanation:\n");
        for line in e.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The seed's one-shot SLO report.
pub fn slo_text(service: &str, slo: &SloReport) -> String {
    let mut out = format!("SLO report for {service}\n");
    let t = &slo.targets;
    out.push_str(&format!(
        "  Target             {}% over {}\n",
        format_number(t.availability_target_pct),
        t.window.promql()
    ));
    out.push_str(&format!(
        "  Availability       {}\n",
        reading_text(&slo.availability_pct, "%")
    ));
    out.push_str(&format!(
        "  Error budget left  {}\n",
        reading_text(&slo.error_budget_pct, "%")
    ));
    out.push_str(&format!(
        "  Burn rate          {} (x{})\n",
        slo.burn_class
            .clone()
            .unwrap_or_else(|| slo.burn_class_state.as_str().to_string()),
        reading_text(&slo.burn_rate_value, "")
    ));
    if let Some(a) = &slo.burn_alert {
        out.push_str(&format!("  Burn alert         {a}\n"));
    }
    for p in &slo.pairs {
        out.push_str(&format!(
            "    {:>4}/{:<4} x{:<5} long {} short {} -> {}\n",
            p.long.promql(),
            p.short.promql(),
            format_number(p.factor),
            reading_text(&p.long_burn, ""),
            reading_text(&p.short_burn, ""),
            match p.firing {
                Some(true) => format!("FIRING ({})", p.severity),
                Some(false) => "ok".to_string(),
                None => "unknown".to_string(),
            }
        ));
    }
    let limit = |l: Option<f64>| {
        l.map(|v| format!(" (limit {} ms)", format_number(v)))
            .unwrap_or_default()
    };
    out.push_str(&format!(
        "  Latency p95        {}{}\n",
        reading_text(&slo.p95_ms, " ms"),
        limit(t.p95_threshold_ms)
    ));
    out.push_str(&format!(
        "  Latency p99        {}{}\n",
        reading_text(&slo.p99_ms, " ms"),
        limit(t.p99_threshold_ms)
    ));
    out.push_str(&format!(
        "  Latency compliant  {}\n",
        slo.latency_compliant
            .map(|b| b.to_string())
            .unwrap_or_else(|| "unknown".into())
    ));
    out
}

/// The seed's one-shot cost report.
pub fn cost_text(service: &str, cost: &CostReport) -> String {
    let mut out = format!("Cost report for {service}\n");
    out.push_str(&format!(
        "  Prior-week avg     {}/day\n",
        reading_text(&cost.prior_week_avg, "")
    ));
    out.push_str(&format!(
        "  Current-week avg   {}/day\n",
        reading_text(&cost.current_week_avg, "")
    ));
    out.push_str(&format!(
        "  WoW change         {}\n",
        reading_text(&cost.wow_change_pct, "%")
    ));
    out.push_str(&format!(
        "  Trend              {}\n",
        cost.trend.clone().unwrap_or_else(|| "unknown".into())
    ));
    out.push_str(&format!(
        "  Spike detected     {}\n",
        cost.spike_detected
            .map(|b| if b { "yes" } else { "no" }.to_string())
            .unwrap_or_else(|| "unknown".into())
    ));
    if cost.estimated_days > 0 {
        out.push_str(&format!(
            "  Estimated days     {} (provisional figures)\n",
            cost.estimated_days
        ));
    }
    out
}

/// The Markdown step summary for GitHub Actions.
pub fn markdown_summary(d: &Decision, explanation: &str) -> String {
    let v = &d.verdict;
    let icon = match v.action {
        Action::Allow => "✅",
        Action::Warn => "⚠️",
        Action::Delay => "⏳",
        Action::Block => "🚫",
    };
    let mut out = format!(
        "## {icon} Deployment gate: {} for `{}`\n\n",
        v.action.as_str(),
        d.service
    );
    out.push_str(&format!(
        "| | |\n|---|---|\n| Policy | {} {} |\n| Reason | {} (`{}`) |\n| Remediation | {} |\n",
        v.policy_id, v.policy_name, v.reason, v.reason_code, v.remediation
    ));
    if v.action == Action::Delay {
        out.push_str(&format!("| Retry in | {} minutes |\n", v.delay_minutes));
    }
    out.push_str("\n### Signals\n\n| Signal | Value | State |\n|---|---|---|\n");
    for (name, s) in &d.signals {
        let value = s
            .value
            .as_ref()
            .map(Value::display)
            .unwrap_or_else(|| "–".into());
        out.push_str(&format!("| `{name}` | {value} | {} |\n", s.state.as_str()));
    }
    out.push_str("\n### Rules\n\n| Rule | Action | Outcome |\n|---|---|---|\n");
    for t in &v.trace {
        let outcome = match t.outcome {
            RuleOutcome::Matched => "matched",
            RuleOutcome::NotMatched => "not matched",
            RuleOutcome::CouldNotEvaluate => "could not evaluate",
        };
        let mark = if t.decisive { " **(decisive)**" } else { "" };
        out.push_str(&format!(
            "| {} {} | {} | {outcome}{mark} |\n",
            t.id,
            t.name,
            t.action.as_str()
        ));
    }
    out.push_str("\n### Explanation\n\n");
    out.push_str(explanation);
    out.push('\n');
    out
}

/// Lines for `$GITHUB_OUTPUT`.
pub fn github_outputs(d: &Decision) -> String {
    format!(
        "verdict={}\ndelayMinutes={}\npolicyId={}\nreasonCode={}\n",
        d.verdict.action.as_str(),
        d.verdict.delay_minutes,
        d.verdict.policy_id,
        d.verdict.reason_code
    )
}

fn escape_annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The workflow command annotation (`::warning` for WARN/DELAY, `::error` for BLOCK).
pub fn annotation(d: &Decision) -> Option<String> {
    let v = &d.verdict;
    let level = match v.action {
        Action::Allow => return None,
        Action::Warn | Action::Delay => "warning",
        Action::Block => "error",
    };
    let title = format!("Deployment gate {} ({})", v.action.as_str(), d.service);
    let message = format!(
        "[{}] {}: {} — {}",
        v.policy_id, v.reason_code, v.reason, v.remediation
    );
    Some(format!(
        "::{level} title={}::{}",
        escape_annotation(&title)
            .replace(',', "%2C")
            .replace(':', "%3A"),
        escape_annotation(&message)
    ))
}
