//! Names, tags and markers that prove an IAM object was created by this controller (and which
//! cluster and Quarantine it belongs to), plus target ARN parsing. Pure: no I/O, no async.
//! It must not decide what to do with an object; the planner does that.

use sha2::{Digest, Sha256};

use crate::aws::{PrincipalKind, PrincipalRef, Tag};

/// The IAM path of every managed policy we create (exact match proves nothing alone).
pub const POLICY_PATH: &str = "/autoguardrails/";
/// Name prefix of our managed policies: `agr-<16 hex>`.
pub const MANAGED_POLICY_PREFIX: &str = "agr-";
/// Reserved name prefix of our inline policies: `autoguardrails-<16 hex>`.
pub const INLINE_POLICY_PREFIX: &str = "autoguardrails-";
/// Tag key naming the owning cluster id.
pub const TAG_CLUSTER: &str = "autoguardrails.io/cluster";
/// Tag key naming the owning Quarantine's namespace.
pub const TAG_NAMESPACE: &str = "autoguardrails.io/quarantine-namespace";
/// Tag key naming the owning Quarantine's name.
pub const TAG_NAME: &str = "autoguardrails.io/quarantine-name";
/// Tag key naming the owning Quarantine's uid.
pub const TAG_UID: &str = "autoguardrails.io/quarantine-uid";
/// Tag key marking the object as managed by AutoGuardRails (informational).
pub const TAG_MANAGED_BY: &str = "autoguardrails.io/managed-by";
/// Statement `Sid` prefix; followed by the 12-hex cluster hash, it marks our inline documents.
pub const SID_MARKER_PREFIX: &str = "AGR";

/// The identity of a Quarantine as the IAM objects record it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuarantineKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Kubernetes uid (a re-created Quarantine with the same name is a different one).
    pub uid: String,
}

impl std::fmt::Display for QuarantineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn hex(bytes: &[u8], chars: usize) -> String {
    let mut s = String::with_capacity(chars);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
        if s.len() >= chars {
            break;
        }
    }
    s.truncate(chars);
    s
}

fn hash_fields(fields: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in fields {
        // Length-prefixed so that ("ab","c") and ("a","bc") differ.
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().into()
}

/// The 16-hex hash naming the objects of one Quarantine in one account.
pub fn quarantine_hash(cluster_id: &str, key: &QuarantineKey, account_id: &str) -> String {
    hex(
        &hash_fields(&[cluster_id, &key.namespace, &key.name, &key.uid, account_id]),
        16,
    )
}

/// The managed policy name for a Quarantine in an account.
pub fn managed_policy_name(cluster_id: &str, key: &QuarantineKey, account_id: &str) -> String {
    format!(
        "{MANAGED_POLICY_PREFIX}{}",
        quarantine_hash(cluster_id, key, account_id)
    )
}

/// The inline policy name for a Quarantine in an account.
pub fn inline_policy_name(cluster_id: &str, key: &QuarantineKey, account_id: &str) -> String {
    format!(
        "{INLINE_POLICY_PREFIX}{}",
        quarantine_hash(cluster_id, key, account_id)
    )
}

/// The managed policy ARN (deterministic, so it is known before `CreatePolicy` answers).
pub fn managed_policy_arn(partition: &str, account_id: &str, name: &str) -> String {
    format!("arn:{partition}:iam::{account_id}:policy{POLICY_PATH}{name}")
}

/// The statement `Sid` prefix that marks documents of this cluster: `AGR` + 12 hex.
pub fn cluster_marker(cluster_id: &str) -> String {
    format!(
        "{SID_MARKER_PREFIX}{}",
        hex(&hash_fields(&["cluster", cluster_id]), 12)
    )
}

/// The ownership tags of a Quarantine's managed policy.
pub fn ownership_tags(cluster_id: &str, key: &QuarantineKey) -> Vec<Tag> {
    vec![
        Tag::new(TAG_CLUSTER, cluster_id),
        Tag::new(TAG_NAMESPACE, &key.namespace),
        Tag::new(TAG_NAME, &key.name),
        Tag::new(TAG_UID, &key.uid),
        Tag::new(TAG_MANAGED_BY, "autoguardrails"),
    ]
}

/// The Quarantine a managed policy belongs to, if and only if it is ours: exact path, our
/// cluster tag, complete Quarantine tags, and a name equal to the one those tags hash to.
pub fn owner_of_policy(
    cluster_id: &str,
    account_id: &str,
    path: &str,
    name: &str,
    tags: &[Tag],
) -> Option<QuarantineKey> {
    if path != POLICY_PATH || !name.starts_with(MANAGED_POLICY_PREFIX) {
        return None;
    }
    let get = |k: &str| tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
    if get(TAG_CLUSTER)? != cluster_id {
        return None;
    }
    let key = QuarantineKey {
        namespace: get(TAG_NAMESPACE)?,
        name: get(TAG_NAME)?,
        uid: get(TAG_UID)?,
    };
    (managed_policy_name(cluster_id, &key, account_id) == name).then_some(key)
}

/// Whether an inline policy is ours: reserved name prefix and every statement `Sid` carrying
/// this cluster's marker.
pub fn is_our_inline_policy(cluster_id: &str, name: &str, document: &str) -> bool {
    if !name.starts_with(INLINE_POLICY_PREFIX) {
        return false;
    }
    let marker = cluster_marker(cluster_id);
    let Ok(value) = serde_json::from_str::<serde_json::Value>(document) else {
        return false;
    };
    let statements: Vec<&serde_json::Value> = match value.get("Statement") {
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(one @ serde_json::Value::Object(_)) => vec![one],
        _ => return false,
    };
    !statements.is_empty()
        && statements.iter().all(|s| {
            s.get("Sid")
                .and_then(|v| v.as_str())
                .is_some_and(|sid| sid.starts_with(&marker))
        })
}

/// Why a document could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON or no `Statement`.
    #[error("deny policy document is not a JSON policy with a Statement: {0}")]
    NotAPolicy(String),
}

/// Rewrites every statement `Sid` to start with the cluster marker (keeping the original Sid
/// after it) and returns the minified document.
pub fn mark_document(cluster_id: &str, document: &str) -> Result<String, DocumentError> {
    let marker = cluster_marker(cluster_id);
    let mut value: serde_json::Value =
        serde_json::from_str(document).map_err(|e| DocumentError::NotAPolicy(e.to_string()))?;
    let statement = value
        .get_mut("Statement")
        .ok_or_else(|| DocumentError::NotAPolicy("no Statement".to_string()))?;
    let mark = |index: usize, s: &mut serde_json::Value| -> Result<(), DocumentError> {
        let obj = s
            .as_object_mut()
            .ok_or_else(|| DocumentError::NotAPolicy("statement is not an object".to_string()))?;
        let original: String = obj
            .get("Sid")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let sid = if original.starts_with(&marker) {
            original
        } else if original.is_empty() {
            format!("{marker}S{index}")
        } else {
            format!("{marker}{original}")
        };
        obj.insert("Sid".to_string(), serde_json::Value::String(sid));
        Ok(())
    };
    match statement {
        serde_json::Value::Array(items) => {
            for (i, s) in items.iter_mut().enumerate() {
                mark(i, s)?;
            }
        }
        one @ serde_json::Value::Object(_) => mark(0, one)?,
        _ => {
            return Err(DocumentError::NotAPolicy(
                "Statement is not a list".to_string(),
            ));
        }
    }
    serde_json::to_string(&value).map_err(|e| DocumentError::NotAPolicy(e.to_string()))
}

/// Whether two policy documents are the same JSON (whitespace and key order ignored).
pub fn same_document(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A target principal with its ARN parsed by the one principal type. Equality, order and hash
/// are IAM's identity (partition, account, kind, name without regard to case; path ignored).
#[derive(Debug, Clone)]
pub struct Principal {
    /// Role or user.
    pub kind: PrincipalKind,
    /// The full ARN as given.
    pub arn: String,
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// The 12-digit account id.
    pub account_id: String,
    /// The role or user name (last ARN segment).
    pub name: String,
}

impl Principal {
    fn identity(&self) -> crate::principal::Identity {
        crate::principal::Identity::of_reference(
            &self.partition,
            &self.account_id,
            &self.reference(),
        )
    }
    /// How the IAM API addresses it.
    pub fn reference(&self) -> PrincipalRef {
        PrincipalRef {
            kind: self.kind,
            name: self.name.clone(),
        }
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}
impl Eq for Principal {}
impl PartialOrd for Principal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Principal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}
impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// Parses a role or user ARN with the one principal type (`crate::principal`), checking the kind.
pub fn parse_principal(kind: PrincipalKind, arn: &str) -> Result<Principal, String> {
    let expected = match kind {
        PrincipalKind::Role => crate::principal::PrincipalKind::Role,
        PrincipalKind::User => crate::principal::PrincipalKind::User,
    };
    let parsed =
        crate::principal::PrincipalArn::parse_kind(arn, expected).map_err(|e| e.to_string())?;
    Ok(Principal {
        kind,
        arn: arn.to_string(),
        partition: parsed.partition().to_string(),
        account_id: parsed.account_id().to_string(),
        name: parsed.name().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> QuarantineKey {
        QuarantineKey {
            namespace: "ns".into(),
            name: "q".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn names_are_deterministic_and_cluster_scoped() {
        let a = managed_policy_name("c1", &key(), "111111111111");
        assert_eq!(a, managed_policy_name("c1", &key(), "111111111111"));
        assert_ne!(a, managed_policy_name("c2", &key(), "111111111111"));
        assert_ne!(a, managed_policy_name("c1", &key(), "222222222222"));
        assert_eq!(a.len(), MANAGED_POLICY_PREFIX.len() + 16);
    }

    #[test]
    fn ownership_requires_path_cluster_tags_and_matching_name() {
        let name = managed_policy_name("c1", &key(), "111111111111");
        let tags = ownership_tags("c1", &key());
        assert_eq!(
            owner_of_policy("c1", "111111111111", POLICY_PATH, &name, &tags),
            Some(key())
        );
        assert_eq!(
            owner_of_policy("c2", "111111111111", POLICY_PATH, &name, &tags),
            None
        );
        assert_eq!(
            owner_of_policy("c1", "111111111111", "/", &name, &tags),
            None
        );
        assert_eq!(
            owner_of_policy(
                "c1",
                "111111111111",
                POLICY_PATH,
                "agr-0000000000000000",
                &tags
            ),
            None
        );
        assert_eq!(
            owner_of_policy("c1", "111111111111", POLICY_PATH, &name, &tags[..3]),
            None
        );
    }

    #[test]
    fn marking_is_idempotent_and_recognised() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Sid":"DenyEc2","Effect":"Deny","Action":"ec2:RunInstances","Resource":"*"},{"Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#;
        let marked = mark_document("c1", doc).unwrap();
        assert_eq!(mark_document("c1", &marked).unwrap(), marked);
        assert!(is_our_inline_policy("c1", "autoguardrails-x", &marked));
        assert!(!is_our_inline_policy("c2", "autoguardrails-x", &marked));
        assert!(!is_our_inline_policy("c1", "other", &marked));
        assert!(!is_our_inline_policy("c1", "autoguardrails-x", doc));
        assert!(marked.contains("DenyEc2"));
    }

    #[test]
    fn principal_arns_parse() {
        let p = parse_principal(
            PrincipalKind::Role,
            "arn:aws:iam::111111111111:role/ci/dev-ci",
        )
        .unwrap();
        assert_eq!(p.name, "dev-ci");
        assert_eq!(p.account_id, "111111111111");
        assert!(parse_principal(PrincipalKind::User, "arn:aws:iam::111111111111:role/x").is_err());
        assert!(parse_principal(PrincipalKind::Role, "arn:aws:iam::1111:role/x").is_err());
        assert!(parse_principal(PrincipalKind::Role, "nonsense").is_err());
    }
}
