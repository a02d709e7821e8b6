//! The Analysis page: a `proposal.json` of `autoguardrails analyze` for people, before the pull
//! request: what is kept (with its evidence), removed and added, the preset's violations and the
//! risk. Read as JSON values (the file may come from another version of the analyzer); a field
//! that is missing shows as missing, never as "nothing".

use maud::{Markup, html};
use serde::Serialize;
use serde_json::Value;

use super::layout::badge;
use super::svg;

/// The page's data (the JSON of `/dashboard/api/analysis`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisView {
    /// The principal's ARN.
    pub principal: String,
    /// The analyzer's outcome (`proposal`, `guardrailViolation`, …).
    pub outcome: String,
    /// Its exit code.
    pub exit_code: Option<i64>,
    /// Why the proposal looks as it does.
    pub rationale: String,
    /// Actions granted today.
    pub granted_actions: Option<u64>,
    /// Kept actions, with evidence.
    pub kept: Vec<ActionEvidence>,
    /// Removed actions.
    pub removed: Vec<String>,
    /// Removed per service.
    pub removed_services: Vec<(String, u64)>,
    /// Used but not granted today (the proposal adds or flags them).
    pub added: Vec<Added>,
    /// The preset.
    pub preset: String,
    /// Its violations.
    pub violations: Vec<Violation>,
    /// The risk.
    pub risk: Risk,
    /// Notes for the person merging.
    pub remediation_notes: Vec<String>,
    /// Days asked for and covered.
    pub requested_days: Option<f64>,
    /// Days the logs covered.
    pub covered_days: Option<f64>,
}

/// One kept action and why.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionEvidence {
    /// The action.
    pub action: String,
    /// `observed`, `inferred`, …
    pub basis: String,
    /// Calls seen.
    pub count: u64,
    /// First seen.
    pub first_seen: String,
    /// Last seen.
    pub last_seen: String,
    /// Reasons.
    pub reasons: Vec<String>,
}

/// A used but not granted action.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Added {
    /// The action.
    pub action: String,
    /// Calls.
    pub count: u64,
    /// Why.
    pub reason: String,
}

/// A guardrail violation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// Rule.
    pub rule: String,
    /// Action.
    pub action: String,
    /// Detail.
    pub detail: String,
}

/// The risk signal.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Risk {
    /// Percent.
    pub percent: Option<f64>,
    /// `low`, `medium`, `high`.
    pub level: String,
    /// Threshold (0..1).
    pub threshold: Option<f64>,
    /// Factors: name, probability, reason.
    pub factors: Vec<(String, f64, String)>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a file cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Not readable.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Not a proposal.
    #[error(
        "{0} is not a proposal.json of autoguardrails analyze (no \"proposal\" and \"diff\" objects)"
    )]
    NotAProposal(String),
}

/// Reads and views the file at `path`.
pub fn load(path: &std::path::Path) -> Result<AnalysisView, AnalysisError> {
    let read = |message: String| AnalysisError::Read {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| read(e.to_string()))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| read(e.to_string()))?;
    view(&value).ok_or_else(|| AnalysisError::NotAProposal(path.display().to_string()))
}

/// The view of a parsed `proposal.json`; `None` when it is not one.
pub fn view(report: &Value) -> Option<AnalysisView> {
    let proposal = report.get("proposal")?;
    let diff = report.get("diff")?;
    let evidence = proposal.get("evidence").and_then(Value::as_object);
    let kept = strings(diff.get("kept"))
        .into_iter()
        .map(|action| {
            let e = evidence
                .and_then(|m| m.get(&action))
                .cloned()
                .unwrap_or(Value::Null);
            ActionEvidence {
                basis: text(&e, "basis"),
                count: e.get("count").and_then(Value::as_u64).unwrap_or(0),
                first_seen: text(&e, "firstSeen"),
                last_seen: text(&e, "lastSeen"),
                reasons: strings(e.get("reasons")),
                action,
            }
        })
        .collect();
    let risk = proposal.get("riskSignal").cloned().unwrap_or(Value::Null);
    Some(AnalysisView {
        principal: report
            .get("principal")
            .map(|p| text(p, "arn"))
            .unwrap_or_default(),
        outcome: text(report, "outcome"),
        exit_code: report.get("exitCode").and_then(Value::as_i64),
        rationale: text(proposal, "rationale"),
        granted_actions: diff.get("grantedActions").and_then(Value::as_u64),
        kept,
        removed: strings(diff.get("removed")),
        removed_services: diff
            .get("removedServices")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            text(s, "service"),
                            s.get("actions").and_then(Value::as_u64).unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        added: diff
            .get("usedButNotGranted")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|n| Added {
                        action: text(n, "action"),
                        count: n.get("count").and_then(Value::as_u64).unwrap_or(0),
                        reason: text(n, "reason"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        preset: report
            .get("guardrails")
            .and_then(|g| g.get("preset"))
            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
            .unwrap_or_default(),
        violations: report
            .get("guardrails")
            .and_then(|g| g.get("violations"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| Violation {
                        rule: text(v, "rule"),
                        action: text(v, "action"),
                        detail: text(v, "detail"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        risk: Risk {
            percent: risk.get("percent").and_then(Value::as_f64),
            level: text(&risk, "level"),
            threshold: risk.get("threshold").and_then(Value::as_f64),
            factors: risk
                .get("factors")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|f| {
                            (
                                text(f, "name"),
                                f.get("probability").and_then(Value::as_f64).unwrap_or(0.0),
                                text(f, "reason"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        remediation_notes: strings(proposal.get("remediationNotes")),
        requested_days: report
            .get("coverage")
            .and_then(|c| c.get("requestedDays"))
            .and_then(Value::as_f64),
        covered_days: report
            .get("coverage")
            .and_then(|c| c.get("coveredDays"))
            .and_then(Value::as_f64),
    })
}

/// The page's content.
pub fn page(v: &AnalysisView) -> Markup {
    let mut services = v.removed_services.clone();
    services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let bars: Vec<svg::Bar> = services
        .iter()
        .take(12)
        .map(|(s, n)| svg::Bar {
            label: s.clone(),
            value: *n as f64,
            muted: false,
        })
        .collect();
    html! {
        h1 { "Analysis" }
        p { "Proposal for " code { (v.principal) } " — " (badge(&v.outcome)) @if let Some(c) = v.exit_code { span.muted { " (exit " (c) ")" } } }
        div.cards {
            section.card { h2 { "Kept" } p.big id="kept-count" { (v.kept.len()) } p.muted { "of " (v.granted_actions.map_or("?".to_string(), |g| g.to_string())) " granted today" } }
            section.card { h2 { "Removed" } p.big id="removed-count" { (v.removed.len()) } }
            section.card { h2 { "Used but not granted" } p.big { (v.added.len()) } }
            section.card {
                h2 { "Risk" }
                p.big { (v.risk.percent.map_or("?".to_string(), |p| format!("{p:.1} %"))) " " (badge(&v.risk.level)) }
                p.muted { "threshold " (v.risk.threshold.map_or("?".to_string(), |t| format!("{:.0} %", t * 100.0))) }
            }
            section.card {
                h2 { "Preset " (v.preset) }
                p.big { (v.violations.len()) } p.muted { "violations" }
            }
        }
        @if !v.rationale.is_empty() { h2 { "Rationale" } p { (v.rationale) } }
        @if let (Some(r), Some(c)) = (v.requested_days, v.covered_days) {
            p.muted { "Logs cover " (format!("{c:.1}")) " of the " (format!("{r:.1}")) " days asked for." }
        }
        @if !v.violations.is_empty() {
            h2 { "Preset violations" }
            div.table-wrap tabindex="0" role="region" aria-labelledby="violations-caption" {
                table id="violations" {
                    caption id="violations-caption" { "What the " (v.preset) " preset refuses" }
                    thead { tr { th scope="col" { "Rule" } th scope="col" { "Action" } th scope="col" { "Detail" } } }
                    tbody { @for x in &v.violations { tr { td { (badge(&x.rule)) } td { code { (x.action) } } td { (x.detail) } } } }
                }
            }
        }
        h2 { "Risk factors" }
        ul { @for (name, p, reason) in &v.risk.factors { li { strong { (name) } " " (format!("{:.1} %", p * 100.0)) ": " (reason) } } }
        @if v.risk.factors.is_empty() { p.muted { "None." } }
        h2 { "Kept, with evidence" }
        div.table-wrap tabindex="0" role="region" aria-labelledby="kept-caption" {
            table id="kept" {
                caption id="kept-caption" { (v.kept.len()) " actions kept" }
                thead { tr { th scope="col" { "Action" } th scope="col" { "Basis" } th scope="col" { "Calls" } th scope="col" { "Seen" } th scope="col" { "Why" } } }
                tbody {
                    @for k in &v.kept {
                        tr { td { code { (k.action) } } td { (k.basis) } td { (k.count) }
                             td { @if !k.first_seen.is_empty() { (k.first_seen) " – " (k.last_seen) } @else { span.muted { "—" } } }
                             td { (k.reasons.join("; ")) } }
                    }
                }
            }
        }
        @if !v.added.is_empty() {
            h2 { "Used but not granted today" }
            ul { @for a in &v.added { li { code { (a.action) } " — " (a.count) " calls: " (a.reason) } } }
        }
        h2 { "Removed" }
        @if !bars.is_empty() {
            (svg::bars("removed-chart", "Removed actions per service (largest 12)", "How many granted actions of each service the proposal removes.", &bars, "", 1))
        }
        details {
            summary { "All " (v.removed.len()) " removed actions" }
            ul { @for r in &v.removed { li { code { (r) } } } }
        }
        @if !v.remediation_notes.is_empty() {
            h2 { "Notes" }
            ul { @for n in &v.remediation_notes { li { (n) } } }
        }
    }
}

/// The page when no proposal is configured or it cannot be read.
pub fn missing(message: &str) -> Markup {
    html! {
        h1 { "Analysis" }
        p { (message) }
        p.muted { "Run " code { "autoguardrails analyze … --output proposal.json" } " and point the dashboard's proposal file at it." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_is_viewed_and_other_json_refused() {
        let report = serde_json::json!({
            "principal": {"arn": "arn:aws:iam::1:role/x"},
            "outcome": "proposal", "exitCode": 0,
            "proposal": {"rationale": "r <b>", "riskSignal": {"percent": 2.0, "level": "low", "threshold": 0.1, "factors": []},
                          "evidence": {"s3:GetObject": {"basis": "observed", "count": 3, "reasons": ["seen"]}}},
            "diff": {"grantedActions": 10, "kept": ["s3:GetObject"], "removed": ["ec2:RunInstances"],
                     "removedServices": [{"service": "ec2", "actions": 1}], "usedButNotGranted": []},
            "guardrails": {"preset": "prod", "violations": [{"rule": "BlockedAction", "action": "iam:PassRole", "detail": "d"}]}
        });
        let v = view(&report).unwrap();
        assert_eq!(v.kept[0].count, 3);
        assert_eq!(v.violations.len(), 1);
        let html = page(&v).into_string();
        assert!(html.contains("r &lt;b&gt;"));
        assert!(view(&serde_json::json!({"x": 1})).is_none());
    }
}
