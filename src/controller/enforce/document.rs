//! The IAM deny document: built from the denied actions and optional regions, with a stable
//! `Sid`, and sized the way IAM counts (whitespace not counted) against IAM's limits. Pure.

use crate::controller::crd::DenySpec;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::aws::limits::{
    MANAGED_POLICY as MANAGED_POLICY_LIMIT, ROLE_INLINE as INLINE_ROLE_LIMIT,
    USER_INLINE as INLINE_USER_LIMIT, policy_size as iam_size,
};
/// Every statement id we write starts with this (alphanumeric, as IAM requires of a Sid).
pub const SID_PREFIX: &str = "AutoGuardRailsDeny";

/// A deny document, serialized exactly as it is sent to IAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyDocument {
    /// The JSON text.
    pub json: String,
    /// Its size as IAM counts it (characters other than whitespace).
    pub size: usize,
}

impl DenyDocument {
    /// True when it fits a managed policy.
    pub fn fits_managed(&self) -> bool {
        self.size <= MANAGED_POLICY_LIMIT
    }
    /// True when it fits the inline budget of a role (alone).
    pub fn fits_inline_role(&self) -> bool {
        self.size <= INLINE_ROLE_LIMIT
    }
    /// True when it fits the inline budget of a user (alone).
    pub fn fits_inline_user(&self) -> bool {
        self.size <= INLINE_USER_LIMIT
    }
}

/// Why a document cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// No action to deny.
    #[error("the deny document needs at least one action")]
    NoActions,
    /// A Sid suffix must be alphanumeric.
    #[error("statement id suffix {0:?} must be ASCII letters and digits")]
    InvalidSid(String),
    /// Two conditions with the same operator and key (IAM would keep only one of them).
    #[error(
        "condition {operator} {key} appears twice (scope.regions adds StringEquals aws:RequestedRegion): list all values in one condition"
    )]
    DuplicateCondition {
        /// The operator.
        operator: &'static str,
        /// The key.
        key: String,
    },
    /// A condition without values.
    #[error("condition {operator} {key} has no value")]
    EmptyCondition {
        /// The operator.
        operator: &'static str,
        /// The key.
        key: String,
    },
    /// The document can never fit a managed policy.
    #[error(
        "the deny document is {size} characters; IAM allows at most {limit} in a managed policy: deny fewer actions or use wildcards such as ec2:Run*"
    )]
    TooLarge {
        /// Its size as IAM counts it.
        size: usize,
        /// The managed policy limit.
        limit: usize,
    },
}

impl DocumentError {
    /// A short category for metric labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            DocumentError::NoActions
            | DocumentError::InvalidSid(_)
            | DocumentError::DuplicateCondition { .. }
            | DocumentError::EmptyCondition { .. } => "InvalidSpec",
            DocumentError::TooLarge { .. } => "DocumentTooLarge",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    version: &'static str,
    statement: [Statement<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Statement<'a> {
    sid: String,
    effect: &'static str,
    action: Vec<&'a str>,
    resource: &'static str,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    condition: Conditions<'a>,
}

/// `Condition`: operator → key → values, in a stable order (maps serialize sorted).
type Conditions<'a> = BTreeMap<&'static str, BTreeMap<&'a str, Vec<&'a str>>>;

/// Builds the deny document. Actions are de-duplicated (IAM compares them case-insensitively)
/// and sorted, so the same spec always gives byte-identical JSON; `sid_suffix` (alphanumeric,
/// may be empty) makes the statement id identify its quarantine.
pub fn build<'a>(deny: &'a DenySpec, sid_suffix: &str) -> Result<DenyDocument, DocumentError> {
    if !sid_suffix.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(DocumentError::InvalidSid(sid_suffix.to_string()));
    }
    let mut actions: Vec<&str> = deny
        .actions
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .collect();
    actions.sort_by_key(|a| a.to_ascii_lowercase());
    actions.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    if actions.is_empty() {
        return Err(DocumentError::NoActions);
    }
    let mut regions: Vec<&str> = deny.regions.iter().map(String::as_str).collect();
    regions.sort_unstable();
    regions.dedup();
    let mut conditions: Conditions<'_> = BTreeMap::new();
    let mut add = |operator: &'static str, key: &'a str, mut values: Vec<&'a str>| {
        values.sort_unstable();
        values.dedup();
        if values.is_empty() {
            return Err(DocumentError::EmptyCondition {
                operator,
                key: key.to_string(),
            });
        }
        let keys = conditions.entry(operator).or_default();
        if keys.insert(key, values).is_some() {
            return Err(DocumentError::DuplicateCondition {
                operator,
                key: key.to_string(),
            });
        }
        Ok(())
    };
    if !regions.is_empty() {
        add("StringEquals", "aws:RequestedRegion", regions)?;
    }
    for condition in &deny.conditions {
        add(
            condition.operator.as_str(),
            condition.key.as_str(),
            condition.values.iter().map(String::as_str).collect(),
        )?;
    }
    let document = Document {
        version: "2012-10-17",
        statement: [Statement {
            sid: format!("{SID_PREFIX}{sid_suffix}"),
            effect: "Deny",
            action: actions,
            resource: "*",
            condition: conditions,
        }],
    };
    // Serializing plain strings and vectors cannot fail.
    let json = serde_json::to_string(&document).unwrap_or_default();
    let size = iam_size(&json);
    if size > MANAGED_POLICY_LIMIT {
        return Err(DocumentError::TooLarge {
            size,
            limit: MANAGED_POLICY_LIMIT,
        });
    }
    Ok(DenyDocument { json, size })
}

/// The statement id suffix that names a quarantine: 12 hex characters of a hash of
/// `namespace/name`, so a Sid seen in IAM can be traced to its Quarantine.
pub fn sid_suffix(namespace: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deny(actions: &[&str], regions: &[&str]) -> DenySpec {
        DenySpec {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            regions: regions.iter().map(|s| s.to_string()).collect(),
            conditions: Vec::new(),
        }
    }

    #[test]
    fn builds_the_exact_document() {
        let doc = build(
            &deny(
                &[
                    "ec2:RunInstances",
                    "ec2:CreateNatGateway",
                    "EC2:runinstances",
                ],
                &["ap-northeast-1"],
            ),
            "Q1",
        )
        .unwrap();
        assert_eq!(
            doc.json,
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"AutoGuardRailsDenyQ1","Effect":"Deny","Action":["ec2:CreateNatGateway","ec2:RunInstances"],"Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":["ap-northeast-1"]}}}]}"#
        );
        assert_eq!(doc.size, doc.json.len());
    }

    #[test]
    fn no_condition_without_regions() {
        let doc = build(&deny(&["s3:*"], &[]), "").unwrap();
        assert!(!doc.json.contains("Condition"));
        assert!(doc.json.contains(r#""Sid":"AutoGuardRailsDeny""#));
    }

    #[test]
    fn conditions_join_the_region_condition_in_a_stable_order() {
        use crate::controller::crd::{ConditionOperator, DenyCondition};
        let condition = |operator, key: &str, values: &[&str]| DenyCondition {
            operator,
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let mut spec = deny(&["ec2:RunInstances"], &["us-east-1"]);
        spec.conditions = vec![
            condition(
                ConditionOperator::StringLike,
                "ec2:InstanceType",
                &["p4d.*", "g5.*", "p4d.*"],
            ),
            condition(ConditionOperator::Bool, "aws:ViaAWSService", &["false"]),
            condition(
                ConditionOperator::StringNotEquals,
                "aws:ResourceTag/team",
                &["ml"],
            ),
        ];
        let doc = build(&spec, "Q").unwrap();
        assert_eq!(
            doc.json,
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"AutoGuardRailsDenyQ","Effect":"Deny","Action":["ec2:RunInstances"],"Resource":"*","Condition":{"Bool":{"aws:ViaAWSService":["false"]},"StringEquals":{"aws:RequestedRegion":["us-east-1"]},"StringLike":{"ec2:InstanceType":["g5.*","p4d.*"]},"StringNotEquals":{"aws:ResourceTag/team":["ml"]}}}]}"#
        );
        // The order conditions are listed in does not change a byte.
        spec.conditions.reverse();
        assert_eq!(build(&spec, "Q").unwrap(), doc);
        // A document without conditions is byte-identical to what earlier versions wrote.
        let plain = deny(&["ec2:RunInstances"], &["us-east-1"]);
        assert_eq!(
            build(&plain, "Q").unwrap().json,
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"AutoGuardRailsDenyQ","Effect":"Deny","Action":["ec2:RunInstances"],"Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":["us-east-1"]}}}]}"#
        );
    }

    #[test]
    fn conditions_that_cannot_be_one_statement_are_refused() {
        use crate::controller::crd::{ConditionOperator, DenyCondition};
        let mut spec = deny(&["ec2:RunInstances"], &["us-east-1"]);
        spec.conditions = vec![DenyCondition {
            operator: ConditionOperator::StringEquals,
            key: "aws:RequestedRegion".into(),
            values: vec!["eu-west-1".into()],
        }];
        let error = build(&spec, "").unwrap_err();
        assert_eq!(error.category(), "InvalidSpec");
        assert!(error.to_string().contains("appears twice"), "{error}");
        spec.regions.clear();
        assert!(build(&spec, "").is_ok(), "alone it is fine");
        spec.conditions[0].values.clear();
        assert!(matches!(
            build(&spec, ""),
            Err(DocumentError::EmptyCondition { .. })
        ));
        // Conditions count towards the size limit like actions.
        spec.conditions[0].values = (0..400)
            .map(|i| format!("value-{i:04}-xxxxxxxxxxxxxxx"))
            .collect();
        assert!(matches!(
            build(&spec, ""),
            Err(DocumentError::TooLarge { .. })
        ));
    }

    #[test]
    fn whitespace_is_not_counted() {
        assert_eq!(iam_size("{ \"a\" :\n\t1 }"), 7);
    }

    #[test]
    fn rejects_what_can_never_fit_and_bad_input() {
        let many: Vec<String> = (0..400)
            .map(|i| format!("ec2:DescribeSomethingLong{i:04}"))
            .collect();
        let spec = DenySpec {
            actions: many,
            regions: vec![],
            conditions: Vec::new(),
        };
        match build(&spec, "") {
            Err(DocumentError::TooLarge { size, limit }) => {
                assert!(size > limit);
                assert_eq!(limit, MANAGED_POLICY_LIMIT);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(build(&deny(&[], &[]), ""), Err(DocumentError::NoActions));
        assert_eq!(
            build(&deny(&["s3:*"], &[]), "a-b"),
            Err(DocumentError::InvalidSid("a-b".into()))
        );
    }

    #[test]
    fn limits_per_principal_kind() {
        let actions: Vec<String> = (0..150).map(|i| format!("ec2:Action{i:04}")).collect();
        let doc = build(
            &DenySpec {
                actions,
                regions: vec![],
                conditions: Vec::new(),
            },
            "",
        )
        .unwrap();
        assert!(doc.fits_managed() && doc.fits_inline_role());
        assert!(!doc.fits_inline_user(), "size {}", doc.size);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn document_is_valid_json_deny_and_order_independent(
            actions in proptest::collection::vec("[a-z0-9]{1,8}:[A-Za-z*]{1,12}", 1..30),
            regions in proptest::collection::vec("(us|eu|ap)-(east|west|north)-[1-3]", 0..4),
        ) {
            let a = build(&DenySpec { actions: actions.clone(), regions: regions.clone(), conditions: Vec::new() }, "X").unwrap();
            let mut reversed = actions.clone();
            reversed.reverse();
            let b = build(&DenySpec { actions: reversed, regions, conditions: Vec::new() }, "X").unwrap();
            prop_assert_eq!(&a, &b);
            let value: serde_json::Value = serde_json::from_str(&a.json).unwrap();
            prop_assert_eq!(&value["Statement"][0]["Effect"], "Deny");
            for action in &actions {
                let listed = value["Statement"][0]["Action"].as_array().unwrap()
                    .iter().any(|x| x.as_str().unwrap().eq_ignore_ascii_case(action));
                prop_assert!(listed);
            }
            prop_assert_eq!(a.size, iam_size(&a.json));
        }
    }
}
