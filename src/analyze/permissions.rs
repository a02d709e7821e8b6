//! The principal's current permissions as data and their evaluation: identity policy documents
//! (inline and managed, a role's or a user's and its groups'), an optional permissions boundary,
//! wildcards in actions and resources, `NotAction`/`NotResource`, explicit denies, and conditions
//! (an allow with conditions is "conditional", a deny with conditions is carried into the
//! proposal rather than evaluated). It must not read IAM (that is the `iam` adapter).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a policy document could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PermissionsError {
    /// Not JSON, or not an IAM policy document.
    #[error("policy {name} is not an IAM policy document: {message}")]
    Document {
        /// The policy's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl PermissionsError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        "InvalidPolicy"
    }
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// A statement's action element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    /// `Action`: matches any listed pattern.
    Action(Vec<String>),
    /// `NotAction`: matches anything not listed.
    NotAction(Vec<String>),
}

/// A statement's resource element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSpec {
    /// `Resource`.
    Resource(Vec<String>),
    /// `NotResource`.
    NotResource(Vec<String>),
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The statement id, if any.
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Actions.
    pub actions: ActionSpec,
    /// Resources.
    pub resources: ResourceSpec,
    /// The `Condition` block (kept verbatim), if any.
    pub condition: Option<Value>,
    /// The statement as written (for carrying denies over verbatim).
    pub raw: Value,
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySource {
    /// `inline`, `managed`, `group-inline`, `group-managed`, `boundary`, `file`.
    pub kind: String,
    /// Policy name (or ARN for managed policies).
    pub name: String,
}

/// One policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Where it came from.
    pub source: PolicySource,
    /// Its statements.
    pub statements: Vec<Statement>,
}

fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

impl Policy {
    /// Parses a policy document (JSON text, already URL-decoded).
    pub fn parse(source: PolicySource, text: &str) -> Result<Policy, PermissionsError> {
        let err = |message: String| PermissionsError::Document {
            name: source.name.clone(),
            message,
        };
        let document: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let statements = match document.get("Statement") {
            Some(Value::Array(items)) => items.clone(),
            Some(item @ Value::Object(_)) => vec![item.clone()],
            _ => return Err(err("no Statement".into())),
        };
        let mut out = Vec::new();
        for (index, raw) in statements.into_iter().enumerate() {
            let at = |what: &str| err(format!("statement {index}: {what}"));
            let effect = match raw.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return Err(at("Effect must be Allow or Deny")),
            };
            let actions = match (raw.get("Action"), raw.get("NotAction")) {
                (Some(a), None) => ActionSpec::Action(strings(a).ok_or_else(|| at("bad Action"))?),
                (None, Some(a)) => {
                    ActionSpec::NotAction(strings(a).ok_or_else(|| at("bad NotAction"))?)
                }
                _ => return Err(at("needs exactly one of Action and NotAction")),
            };
            let resources = match (raw.get("Resource"), raw.get("NotResource")) {
                (Some(r), None) => {
                    ResourceSpec::Resource(strings(r).ok_or_else(|| at("bad Resource"))?)
                }
                (None, Some(r)) => {
                    ResourceSpec::NotResource(strings(r).ok_or_else(|| at("bad NotResource"))?)
                }
                _ => return Err(at("needs exactly one of Resource and NotResource")),
            };
            let condition = raw
                .get("Condition")
                .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
                .cloned();
            out.push(Statement {
                sid: raw.get("Sid").and_then(Value::as_str).map(str::to_string),
                effect,
                actions,
                resources,
                condition,
                raw,
            });
        }
        Ok(Policy {
            source,
            statements: out,
        })
    }
}

/// IAM's wildcard match: `*` any run, `?` one character (byte-wise; ARNs and actions are ASCII).
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let eq = |a: u8, b: u8| {
        if ignore_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Policy variables (`${aws:username}`) are unknown here; treated as `*` for matching.
fn resource_pattern(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('*');
                rest = &rest[start + end + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Statement {
    /// Whether the statement's action element covers `action` (`service:Name`).
    pub fn matches_action(&self, action: &str) -> bool {
        match &self.actions {
            ActionSpec::Action(list) => list.iter().any(|p| wildcard_match(p, action, true)),
            ActionSpec::NotAction(list) => !list.iter().any(|p| wildcard_match(p, action, true)),
        }
    }
    /// Whether the statement's resource element covers `resource` (an ARN, or `*` meaning
    /// "every resource": only a `*` pattern covers it).
    pub fn matches_resource(&self, resource: &str) -> bool {
        let hit = |list: &Vec<String>| {
            list.iter().any(|p| {
                if resource == "*" {
                    p == "*"
                } else {
                    wildcard_match(&resource_pattern(p), resource, false)
                }
            })
        };
        match &self.resources {
            ResourceSpec::Resource(list) => hit(list),
            // NotResource covers "every resource" only when it excludes nothing real.
            ResourceSpec::NotResource(list) => resource != "*" && !hit(list),
        }
    }
}

/// The outcome of evaluating one (action, resource).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed without conditions.
    Allowed,
    /// Allowed only by statements with conditions (the first such condition block).
    Conditional(Value),
    /// No statement allows it.
    ImplicitDeny,
    /// An unconditional Deny matches.
    ExplicitDeny(PolicySource),
}

impl Decision {
    /// Allowed, with or without conditions.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed | Decision::Conditional(_))
    }
}

/// The principal's permissions: identity policies and an optional permissions boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    /// Identity policies (inline, managed, and a user's groups').
    pub policies: Vec<Policy>,
    /// The permissions boundary, if any.
    pub boundary: Option<Policy>,
}

fn allow_of<'a>(
    policies: impl Iterator<Item = &'a Policy>,
    action: &str,
    resource: &str,
) -> (bool, Option<Value>) {
    let mut conditional = None;
    for policy in policies {
        for s in &policy.statements {
            if s.effect == Effect::Allow && s.matches_action(action) && s.matches_resource(resource)
            {
                match &s.condition {
                    None => return (true, None),
                    Some(c) => {
                        conditional.get_or_insert_with(|| c.clone());
                    }
                }
            }
        }
    }
    (false, conditional)
}

impl Permissions {
    /// Evaluates an action on a resource (`*` = on every resource) with IAM's rule: an
    /// unconditional explicit deny wins, then an allow is needed in the identity policies and,
    /// when there is one, in the boundary.
    pub fn decide(&self, action: &str, resource: &str) -> Decision {
        for policy in self.policies.iter().chain(self.boundary.iter()) {
            for s in &policy.statements {
                if s.effect == Effect::Deny
                    && s.condition.is_none()
                    && s.matches_action(action)
                    && deny_covers(s, resource)
                {
                    return Decision::ExplicitDeny(policy.source.clone());
                }
            }
        }
        let (allowed, conditional) = allow_of(self.policies.iter(), action, resource);
        let identity = if allowed {
            Decision::Allowed
        } else if let Some(c) = conditional {
            Decision::Conditional(c)
        } else {
            return Decision::ImplicitDeny;
        };
        match &self.boundary {
            None => identity,
            Some(boundary) => match (
                allow_of(std::iter::once(boundary), action, resource),
                identity,
            ) {
                ((true, None), identity) => identity,
                ((_, Some(c)), Decision::Allowed) => Decision::Conditional(c),
                // Both conditional: both conditions must hold.
                ((_, Some(b)), Decision::Conditional(i)) => match conjoin_conditions(&i, &b) {
                    Some(both) => Decision::Conditional(both),
                    None => Decision::ImplicitDeny,
                },
                _ => Decision::ImplicitDeny,
            },
        }
    }

    /// The resource patterns under which `action` is allowed without conditions (`*` first if
    /// any statement allows every resource). NotResource grants are not listed.
    pub fn granted_resources(&self, action: &str) -> Vec<String> {
        if let Some(boundary) = &self.boundary {
            // Patterns are only copied when the boundary cannot narrow them.
            if allow_of(std::iter::once(boundary), action, "*") != (true, None) {
                return Vec::new();
            }
        }
        let mut out = BTreeSet::new();
        for policy in &self.policies {
            for s in &policy.statements {
                if s.effect == Effect::Allow
                    && s.condition.is_none()
                    && s.matches_action(action)
                    && let ResourceSpec::Resource(list) = &s.resources
                {
                    out.extend(list.iter().cloned());
                }
            }
        }
        if out.contains("*") {
            return vec!["*".to_string()];
        }
        out.into_iter().collect()
    }

    /// Deny statements (verbatim) that could apply to any of `actions`.
    pub fn deny_statements_for(&self, actions: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for policy in self.policies.iter().chain(self.boundary.iter()) {
            for s in &policy.statements {
                if s.effect == Effect::Deny && actions.iter().any(|a| s.matches_action(a)) {
                    let mut raw = s.raw.clone();
                    if let Some(map) = raw.as_object_mut() {
                        map.remove("Sid");
                    }
                    if !out.contains(&raw) {
                        out.push(raw);
                    }
                }
            }
        }
        out
    }

    /// Whether there are no identity policies at all.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

fn condition_values(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) => Some(items.clone()),
        Value::Object(_) => None,
        other => Some(vec![other.clone()]),
    }
}

fn condition_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The conjunction of two `Condition` blocks (a request must satisfy both), `None` when no
/// request can, or a block is not of the `{operator: {key: value(s)}}` shape. Different operators
/// coexist (IAM ANDs them); under the same operator and key, the values of a positive operator
/// (alternatives) are intersected, those of a negated one (`...Not...`: none of them) united.
pub fn conjoin_conditions(a: &Value, b: &Value) -> Option<Value> {
    let mut out = a.as_object()?.clone();
    for (op, keys) in b.as_object()? {
        let negated = op.contains("Not");
        let entry = out
            .entry(op.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()))
            .as_object_mut()?;
        for (key, values) in keys.as_object()? {
            let right = condition_values(values)?;
            let merged = match entry.get(key) {
                None => right,
                Some(existing) => {
                    let left = condition_values(existing)?;
                    if negated {
                        let mut all = left;
                        for v in right {
                            if !all.iter().any(|l| condition_text(l) == condition_text(&v)) {
                                all.push(v);
                            }
                        }
                        all
                    } else {
                        left.into_iter()
                            .filter(|l| {
                                right.iter().any(|r| condition_text(r) == condition_text(l))
                            })
                            .collect()
                    }
                }
            };
            if merged.is_empty() {
                return None;
            }
            entry.insert(key.clone(), Value::Array(merged));
        }
    }
    Some(Value::Object(out))
}

fn deny_covers(s: &Statement, resource: &str) -> bool {
    match &s.resources {
        ResourceSpec::Resource(list) => list.iter().any(|p| {
            p == "*" || (resource != "*" && wildcard_match(&resource_pattern(p), resource, false))
        }),
        ResourceSpec::NotResource(list) => {
            resource != "*"
                && !list
                    .iter()
                    .any(|p| wildcard_match(&resource_pattern(p), resource, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(
            PolicySource {
                kind: "inline".into(),
                name: "p".into(),
            },
            text,
        )
        .unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("s3:Get*", "S3:GETOBJECT", true));
        assert!(wildcard_match("*", "anything", true));
        assert!(wildcard_match(
            "ec2:Describe?nstances",
            "ec2:DescribeInstances",
            true
        ));
        assert!(!wildcard_match("s3:Get*", "s3:PutObject", true));
        assert!(wildcard_match(
            "arn:aws:s3:::b/*",
            "arn:aws:s3:::b/x/y",
            false
        ));
        assert!(!wildcard_match(
            "arn:aws:s3:::B/*",
            "arn:aws:s3:::b/x",
            false
        ));
    }

    #[test]
    fn not_action_and_explicit_deny() {
        let p = Permissions {
            policies: vec![policy(
                r#"{"Statement":[{"Effect":"Allow","NotAction":["iam:*"],"Resource":"*"},
                   {"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#,
            )],
            boundary: None,
        };
        assert_eq!(p.decide("s3:GetObject", "*"), Decision::Allowed);
        assert_eq!(p.decide("iam:PassRole", "*"), Decision::ImplicitDeny);
        assert!(matches!(
            p.decide("s3:DeleteBucket", "arn:aws:s3:::b"),
            Decision::ExplicitDeny(_)
        ));
    }

    #[test]
    fn resource_scoped_grants_do_not_cover_star() {
        let p = Permissions {
            policies: vec![policy(
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            )],
            boundary: None,
        };
        assert_eq!(
            p.decide("s3:GetObject", "arn:aws:s3:::b/k"),
            Decision::Allowed
        );
        assert_eq!(p.decide("s3:GetObject", "*"), Decision::ImplicitDeny);
        assert_eq!(
            p.granted_resources("s3:getobject"),
            vec!["arn:aws:s3:::b/*"]
        );
    }

    #[test]
    fn conditions_of_identity_and_boundary_both_hold() {
        let p = Permissions {
            policies: vec![policy(
                r#"{"Statement":{"Effect":"Allow","Action":"iam:PassRole","Resource":"*","Condition":{"StringLike":{"aws:RequestedRegion":"us-*"}}}}"#,
            )],
            boundary: Some(policy(
                r#"{"Statement":{"Effect":"Allow","Action":"iam:*","Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":"eu-west-1"}}}}"#,
            )),
        };
        let Decision::Conditional(c) = p.decide("iam:PassRole", "*") else {
            panic!("conditional expected");
        };
        assert_eq!(
            c["StringLike"]["aws:RequestedRegion"],
            serde_json::json!("us-*")
        );
        assert_eq!(
            c["StringEquals"]["aws:RequestedRegion"],
            serde_json::json!(["eu-west-1"])
        );
        let same =
            serde_json::json!({"StringEquals": {"k": ["a", "b"]}, "StringNotEquals": {"n": "x"}});
        let other =
            serde_json::json!({"StringEquals": {"k": ["b", "c"]}, "StringNotEquals": {"n": "y"}});
        assert_eq!(
            conjoin_conditions(&same, &other),
            Some(
                serde_json::json!({"StringEquals": {"k": ["b"]}, "StringNotEquals": {"n": ["x", "y"]}})
            )
        );
        let disjoint = serde_json::json!({"StringEquals": {"k": "z"}});
        assert_eq!(conjoin_conditions(&same, &disjoint), None);
    }

    #[test]
    fn boundary_limits_and_conditions_are_conditional() {
        let p = Permissions {
            policies: vec![policy(
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
                   {"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":"eu-west-1"}}}]}"#,
            )],
            boundary: Some(policy(
                r#"{"Statement":{"Effect":"Allow","Action":["s3:*","ec2:*"],"Resource":"*"}}"#,
            )),
        };
        assert_eq!(p.decide("s3:GetObject", "*"), Decision::Allowed);
        assert_eq!(p.decide("kms:Decrypt", "*"), Decision::ImplicitDeny);
        let c = Permissions {
            policies: vec![policy(
                r#"{"Statement":{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#,
            )],
            boundary: None,
        };
        assert!(matches!(
            c.decide("kms:Decrypt", "*"),
            Decision::Conditional(_)
        ));
    }
}
