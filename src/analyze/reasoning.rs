//! The optional model opinion (Bedrock Converse), pure part: the prompt built from a report, and
//! the parsing of the model's answer into suggestions checked against the snapshot and the
//! current grants. The opinion is shown separately (`proposal.modelReasoning`) and never merged
//! into the documents or the exit code. It must not call the model (that is the `bedrock` adapter).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::catalog::Catalog;
use super::permissions::Permissions;
use super::proposal::Report;

/// Status: no model configured.
pub const STATUS_NOT_CONFIGURED: &str = "notConfigured";
/// Status: the model answered.
pub const STATUS_OK: &str = "ok";
/// Status: the call failed; the analysis went on without it.
pub const STATUS_UNAVAILABLE: &str = "unavailable";

/// The prompt sent to the model.
pub fn prompt(report: &Report) -> String {
    let kept: Vec<&String> = report.diff.kept.iter().collect();
    format!(
        "You review a least-privilege IAM policy generated from CloudTrail usage.\n\
         Principal: {}\nObserved and inferred actions kept: {}\nCalls used but not granted: {}\n\
         Deterministic break-risk estimate: {:.1}%.\n\
         Answer with JSON only: {{\"riskOpinion\": \"low|medium|high\", \"breakProbability\": 0.0-1.0, \
         \"suggestedPermissions\": [{{\"action\": \"service:Action\", \"reason\": \"...\"}}], \"notes\": [\"...\"]}}. \
         Suggest only edge-case permissions the workload is likely to need (for example s3:ListBucket when s3:GetObject is used).",
        report.principal.arn,
        serde_json::to_string(&kept).unwrap_or_default(),
        report.diff.used_but_not_granted.len(),
        report.proposal.risk_signal.percent,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    risk_opinion: Option<String>,
    #[serde(default)]
    break_probability: Option<f64>,
    #[serde(default)]
    suggested_permissions: Vec<Suggestion>,
    #[serde(default)]
    notes: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Suggestion {
    action: String,
    #[serde(default)]
    reason: String,
}

/// The JSON object embedded in a model's text (the first `{` to the last `}`).
fn json_in(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

/// The `modelReasoning` value for a model's answer; suggestions are annotated (known to the
/// snapshot? granted today?) and never applied.
pub fn interpret(model: &str, text: &str, catalog: &Catalog, permissions: &Permissions) -> Value {
    let parsed = json_in(text).and_then(|j| serde_json::from_str::<Answer>(j).ok());
    let Some(answer) = parsed else {
        return json!({
            "status": STATUS_OK,
            "model": model,
            "parsed": false,
            "text": text,
            "note": "the answer was not the JSON asked for; shown as text only",
        });
    };
    let suggestions: Vec<Value> = answer
        .suggested_permissions
        .iter()
        .map(|s| {
            let known = catalog.lookup(&s.action);
            let granted = known.is_some_and(|a| {
                let name = a.full_name();
                permissions.decide(&name, "*").is_allowed()
                    || !permissions.granted_resources(&name).is_empty()
            });
            json!({
                "action": known.map(|a| a.full_name()).unwrap_or_else(|| s.action.clone()),
                "reason": s.reason,
                "knownToSnapshot": known.is_some(),
                "grantedToday": granted,
                "applied": false,
            })
        })
        .collect();
    json!({
        "status": STATUS_OK,
        "model": model,
        "parsed": true,
        "riskOpinion": answer.risk_opinion,
        "breakProbability": answer.break_probability,
        "suggestedPermissions": suggestions,
        "notes": answer.notes,
        "note": "the model's opinion is advisory: nothing it suggests is added to the policies or changes the exit code",
    })
}

/// The `modelReasoning` value when the call failed.
pub fn unavailable(model: &str, error: &str) -> Value {
    json!({
        "status": STATUS_UNAVAILABLE,
        "model": model,
        "error": error,
        "note": "the analysis continued without the model",
    })
}
