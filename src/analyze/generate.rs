//! Policy generation: the emitted permissions become statements grouped by service (and by
//! resource set and condition), sorted, with stable `Sid`s, then packed into documents that fit
//! IAM's size limits (6,144 characters per managed policy; 10,240 for all inline policies of a
//! role, 2,048 of a user), split when needed. Output is byte-stable for the same input. It must
//! not decide which permissions to emit (that is `proposal`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// IAM policy language version.
pub const POLICY_VERSION: &str = "2012-10-17";
/// Largest managed policy document (characters, whitespace excluded).
pub const MANAGED_POLICY_LIMIT: usize = 6_144;
/// Largest total of a role's inline policies.
pub const ROLE_INLINE_LIMIT: usize = 10_240;
/// Largest total of a user's inline policies.
pub const USER_INLINE_LIMIT: usize = 2_048;
/// Managed policies a role can have attached by default.
pub const MANAGED_POLICIES_PER_PRINCIPAL: usize = 10;

/// Why documents could not be generated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenerateError {
    /// One statement cannot fit in a document even alone (one action with many resources).
    #[error("statement {sid} does not fit in {limit} characters even with a single action")]
    TooLarge {
        /// The statement.
        sid: String,
        /// The limit.
        limit: usize,
    },
}

impl GenerateError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        "PolicyTooLarge"
    }
}

/// Condition block: operator → key → values (sorted, de-duplicated).
pub type Conditions = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// One permission to emit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// `service:Action`.
    pub action: String,
    /// Resource ARNs or patterns; `["*"]` for every resource.
    pub resources: BTreeSet<String>,
    /// Conditions (empty for none).
    pub conditions: Conditions,
}

/// A generated statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Statement id.
    #[serde(rename = "Sid")]
    pub sid: String,
    /// Always `Allow` for generated statements.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// Sorted actions.
    #[serde(rename = "Action")]
    pub actions: Vec<String>,
    /// Sorted resources.
    #[serde(rename = "Resource")]
    pub resources: Vec<String>,
    /// Conditions.
    #[serde(rename = "Condition", skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: Conditions,
}

/// A statement of a document: generated, or a current Deny carried over verbatim.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DocumentStatement {
    /// Generated.
    Generated(Statement),
    /// A Deny statement of the current policies, kept so the proposal never allows what is
    /// denied today.
    CarriedDeny(Value),
}

/// A policy document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// Statements.
    #[serde(rename = "Statement")]
    pub statements: Vec<DocumentStatement>,
}

impl Document {
    /// Minified JSON (what IAM stores and measures).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    /// Size as IAM counts it (characters, whitespace outside strings excluded).
    pub fn size(&self) -> usize {
        self.to_json().chars().count()
    }
}

fn sid_base(service: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in service.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() {
        out.push_str("Service");
    }
    out
}

/// Groups permissions into statements: one per (service, resources, conditions), sorted by
/// service then by resources, with `Sid`s `<Service>`, `<Service>2`, ...
pub fn statements(permissions: &[Permission]) -> Vec<Statement> {
    type Key = (String, BTreeSet<String>, String);
    let mut groups: BTreeMap<Key, (Conditions, BTreeSet<String>)> = BTreeMap::new();
    for p in permissions {
        let service = p.action.split(':').next().unwrap_or_default().to_string();
        let conditions_key = serde_json::to_string(&p.conditions).unwrap_or_default();
        let entry = groups
            .entry((service, p.resources.clone(), conditions_key))
            .or_insert_with(|| (p.conditions.clone(), BTreeSet::new()));
        entry.1.insert(p.action.clone());
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for ((service, resources, _), (conditions, actions)) in groups {
        let n = counts.entry(service.clone()).or_default();
        *n += 1;
        let base = sid_base(&service);
        let sid = if *n == 1 { base } else { format!("{base}{n}") };
        out.push(Statement {
            sid,
            effect: "Allow",
            actions: actions.into_iter().collect(),
            resources: resources.into_iter().collect(),
            conditions,
        });
    }
    out
}

fn measure(statements: &[DocumentStatement]) -> usize {
    Document {
        version: POLICY_VERSION,
        statements: statements.to_vec(),
    }
    .size()
}

fn split(statement: Statement, limit: usize) -> Result<Vec<Statement>, GenerateError> {
    let fits = measure(&[DocumentStatement::Generated(statement.clone())]) <= limit;
    if fits {
        return Ok(vec![statement]);
    }
    if statement.actions.len() <= 1 {
        return Err(GenerateError::TooLarge {
            sid: statement.sid,
            limit,
        });
    }
    let middle = statement.actions.len() / 2;
    let mut first = statement.clone();
    let mut second = statement;
    second.actions = first.actions.split_off(middle);
    let mut out = split(first, limit)?;
    out.extend(split(second, limit)?);
    Ok(out)
}

/// Packs statements (generated first, in order, then carried denies once in the first document)
/// into documents of at most `limit` characters, splitting statements that are too large alone.
pub fn pack(
    generated: Vec<Statement>,
    carried_denies: Vec<Value>,
    limit: usize,
) -> Result<Vec<Document>, GenerateError> {
    let mut pieces: Vec<Statement> = Vec::new();
    for s in generated {
        let parts = split(s, limit)?;
        let n = parts.len();
        for (i, mut part) in parts.into_iter().enumerate() {
            if n > 1 {
                part.sid = format!("{}Part{}", part.sid, i + 1);
            }
            pieces.push(part);
        }
    }
    let mut documents: Vec<Vec<DocumentStatement>> = vec![
        carried_denies
            .into_iter()
            .map(DocumentStatement::CarriedDeny)
            .collect(),
    ];
    if measure(&documents[0]) > limit {
        return Err(GenerateError::TooLarge {
            sid: "carried denies".into(),
            limit,
        });
    }
    for piece in pieces {
        let statement = DocumentStatement::Generated(piece);
        let last = documents.len() - 1;
        let mut candidate = documents[last].clone();
        candidate.push(statement.clone());
        if measure(&candidate) <= limit {
            documents[last] = candidate;
        } else {
            documents.push(vec![statement]);
        }
    }
    Ok(documents
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|statements| Document {
            version: POLICY_VERSION,
            statements,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(action: &str, resource: &str) -> Permission {
        Permission {
            action: action.into(),
            resources: BTreeSet::from([resource.to_string()]),
            conditions: Conditions::new(),
        }
    }

    #[test]
    fn grouped_by_service_and_resources_sorted() {
        let s = statements(&[
            permission("s3:PutObject", "arn:aws:s3:::b/*"),
            permission("ec2:DescribeInstances", "*"),
            permission("s3:GetObject", "arn:aws:s3:::b/*"),
            permission("s3:ListAllMyBuckets", "*"),
        ]);
        let sids: Vec<&str> = s.iter().map(|s| s.sid.as_str()).collect();
        assert_eq!(sids, vec!["Ec2", "S3", "S32"]);
        assert_eq!(s[2].actions, vec!["s3:GetObject", "s3:PutObject"]);
    }

    #[test]
    fn packing_respects_the_limit_and_splits() {
        let many: Vec<Permission> = (0..400)
            .map(|i| permission(&format!("ec2:Action{i:04}"), "*"))
            .collect();
        let docs = pack(statements(&many), vec![], MANAGED_POLICY_LIMIT).unwrap();
        assert!(docs.len() >= 2);
        let mut total = 0;
        for d in &docs {
            assert!(d.size() <= MANAGED_POLICY_LIMIT);
            for s in &d.statements {
                if let DocumentStatement::Generated(s) = s {
                    total += s.actions.len();
                }
            }
        }
        assert_eq!(total, 400);
    }
}
