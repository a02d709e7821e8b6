//! The permissions-boundary action (`setPermissionsBoundary`, decision 240), pure part: the name,
//! ownership proof and document of our boundary policy, and what to do with one target given what
//! the Quarantine's status recorded and what a read of the principal showed. No async, no I/O.
//! It must never decide to overwrite a boundary that is neither ours nor the one we recorded
//! as the principal's previous boundary when releasing, nor touch a protected principal (the
//! executor in `boundary/apply.rs` checks that before any call).

pub mod apply;

use crate::aws::{ErrorCategory, Tag};

use super::ownership::{
    DocumentError, MANAGED_POLICY_PREFIX, POLICY_PATH, QuarantineKey, TAG_CLUSTER, TAG_NAME,
    TAG_NAMESPACE, TAG_UID, managed_policy_arn, ownership_tags, quarantine_hash,
};

/// Name prefix of our boundary policies: `agr-boundary-<16 hex>` (under [`POLICY_PATH`], so the
/// controller's IAM grants on `policy/autoguardrails/agr-*` cover them; the deny engine skips
/// this prefix).
pub const BOUNDARY_POLICY_PREFIX: &str = "agr-boundary-";
/// Tag key saying what one of our policies is for (`permissions-boundary`).
pub const TAG_PURPOSE: &str = "autoguardrails.io/purpose";
/// The value of [`TAG_PURPOSE`] on a boundary policy.
pub const PURPOSE_BOUNDARY: &str = "permissions-boundary";
/// The `Sid` of the boundary's allow-everything statement.
pub const ALLOW_SID: &str = "AutoGuardRailsBoundaryAllowAll";

const _: () = assert!(BOUNDARY_POLICY_PREFIX.len() > MANAGED_POLICY_PREFIX.len());

/// The boundary policy name of a Quarantine in an account.
pub fn policy_name(cluster_id: &str, key: &QuarantineKey, account_id: &str) -> String {
    format!(
        "{BOUNDARY_POLICY_PREFIX}{}",
        quarantine_hash(cluster_id, key, account_id)
    )
}

/// The boundary policy ARN (deterministic, known before `CreatePolicy` answers).
pub fn policy_arn(partition: &str, account_id: &str, name: &str) -> String {
    managed_policy_arn(partition, account_id, name)
}

/// Whether a policy name is one of our boundary policies' (by prefix; ownership needs the tags).
pub fn is_boundary_name(name: &str) -> bool {
    name.starts_with(BOUNDARY_POLICY_PREFIX)
}

/// The tags of a Quarantine's boundary policy: the deny policy's ownership tags and the purpose.
pub fn tags(cluster_id: &str, key: &QuarantineKey) -> Vec<Tag> {
    let mut tags = ownership_tags(cluster_id, key);
    tags.push(Tag::new(TAG_PURPOSE, PURPOSE_BOUNDARY));
    tags
}

/// The Quarantine a boundary policy belongs to, if and only if it is ours: exact path, our
/// cluster and purpose tags, complete Quarantine tags, and the name those tags hash to.
pub fn owner(
    cluster_id: &str,
    account_id: &str,
    path: &str,
    name: &str,
    tags: &[Tag],
) -> Option<QuarantineKey> {
    if path != POLICY_PATH || !is_boundary_name(name) {
        return None;
    }
    let get = |k: &str| tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
    if get(TAG_CLUSTER)? != cluster_id || get(TAG_PURPOSE)? != PURPOSE_BOUNDARY {
        return None;
    }
    let key = QuarantineKey {
        namespace: get(TAG_NAMESPACE)?,
        name: get(TAG_NAME)?,
        uid: get(TAG_UID)?,
    };
    (policy_name(cluster_id, &key, account_id) == name).then_some(key)
}

/// Tag key prefix of the durable record of a target's previous boundary on our boundary policy
/// (decision 251): `autoguardrails.io/previous-boundary/role/<name>` or `…/user/<name>`, value
/// the previous boundary's ARN or [`NO_PREVIOUS`]. It outlives the Quarantine's status, so the
/// orphan sweep can restore a force-deleted Quarantine's targets.
pub const TAG_PREVIOUS_PREFIX: &str = "autoguardrails.io/previous-boundary/";
/// The value of a previous-boundary tag when the principal had no boundary.
pub const NO_PREVIOUS: &str = "none";
/// IAM's limits on tag keys and values (characters).
const TAG_KEY_MAX: usize = 128;
const TAG_VALUE_MAX: usize = 256;

fn kind_word(kind: crate::aws::PrincipalKind) -> &'static str {
    match kind {
        crate::aws::PrincipalKind::Role => "role",
        crate::aws::PrincipalKind::User => "user",
    }
}

/// The characters IAM allows in tag keys and values (letters, digits, spaces, `_ . : / = + - @`).
fn tag_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
}

/// The tag key recording `name`'s previous boundary.
pub fn previous_key(kind: crate::aws::PrincipalKind, name: &str) -> String {
    format!("{TAG_PREVIOUS_PREFIX}{}/{name}", kind_word(kind))
}

/// The tag recording a principal's previous boundary on our boundary policy, or why it cannot be
/// written (a name or ARN IAM does not accept in a tag, or too long): then ours is never put on
/// that principal, since a Quarantine deleted without release could not put its boundary back.
pub fn previous_tag(
    kind: crate::aws::PrincipalKind,
    name: &str,
    previous: Option<&str>,
) -> Result<Tag, String> {
    let key = previous_key(kind, name);
    let value = previous.unwrap_or(NO_PREVIOUS);
    if key.len() > TAG_KEY_MAX || !tag_safe(&key) {
        return Err(format!(
            "the name {name:?} cannot be written in an IAM tag key, so its previous boundary cannot be recorded on our boundary policy"
        ));
    }
    if value.len() > TAG_VALUE_MAX || !tag_safe(value) {
        return Err(format!(
            "the previous boundary {value:?} cannot be written in an IAM tag value, so it cannot be recorded on our boundary policy"
        ));
    }
    Ok(Tag::new(&key, value))
}

/// The principals recorded on a boundary policy: `(kind, name, previous)` for each
/// previous-boundary tag (`previous` `None`: it had none).
pub fn recorded_previous(tags: &[Tag]) -> Vec<(crate::aws::PrincipalKind, String, Option<String>)> {
    tags.iter()
        .filter_map(|t| {
            let rest = t.key.strip_prefix(TAG_PREVIOUS_PREFIX)?;
            let (kind, name) = rest.split_once('/')?;
            let kind = match kind {
                "role" => crate::aws::PrincipalKind::Role,
                "user" => crate::aws::PrincipalKind::User,
                _ => return None,
            };
            let previous = (t.value != NO_PREVIOUS).then(|| t.value.clone());
            (!name.is_empty()).then(|| (kind, name.to_string(), previous))
        })
        .collect()
}

/// Whether a recorded previous boundary may be put back by the orphan sweep: a managed policy
/// ARN of this partition, AWS's or the principal's own account's, and not one of ours. A tag
/// is easier to edit than the status it stands in for, so what it names is bounded to what a
/// boundary could have been.
pub fn restorable(previous: &str, partition: &str, account_id: &str) -> bool {
    let Some(rest) = previous.strip_prefix(&format!("arn:{partition}:iam::")) else {
        return false;
    };
    let Some((owner, resource)) = rest.split_once(':') else {
        return false;
    };
    let Some(path_and_name) = resource.strip_prefix("policy/") else {
        return false;
    };
    let name = path_and_name.rsplit('/').next().unwrap_or_default();
    (owner == "aws" || owner == account_id)
        && !name.is_empty()
        && !name.starts_with(MANAGED_POLICY_PREFIX)
}

/// What the orphan sweep does with one recorded principal of a boundary policy whose Quarantine
/// is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanDecision {
    /// Ours is on: put the recorded previous boundary back (`None`: remove ours).
    Restore(Option<String>),
    /// Ours is not on (never put, already restored, replaced by someone, or the principal is
    /// gone): nothing to do.
    NotOurs,
    /// Ours is on but the record cannot be trusted (see [`restorable`]): left, and reported.
    Unrestorable(String),
    /// The read failed: retried at the next sweep.
    Blocked(String, ErrorCategory),
}

/// Decides one recorded principal of an orphaned boundary policy.
pub fn decide_orphan(
    seen: &Seen,
    ours: &str,
    previous: Option<&str>,
    partition: &str,
    account_id: &str,
) -> OrphanDecision {
    match seen {
        Seen::Missing => OrphanDecision::NotOurs,
        Seen::Unreadable(message, category) => OrphanDecision::Blocked(message.clone(), *category),
        Seen::Boundary(current) if current.as_deref() != Some(ours) => OrphanDecision::NotOurs,
        Seen::Boundary(_) => match previous {
            None => OrphanDecision::Restore(None),
            Some(p) if restorable(p, partition, account_id) => {
                OrphanDecision::Restore(Some(p.to_string()))
            }
            Some(p) => OrphanDecision::Unrestorable(format!(
                "the recorded previous boundary {p:?} is not a managed policy of AWS or of account {account_id}; leaving ours on"
            )),
        },
    }
}

/// The boundary document: allow every action, minus the deny document's statements. A boundary
/// caps what the identity policies grant, so the principal keeps what it had except the denied
/// actions (a boundary of the deny statements alone would allow nothing at all).
pub fn document(deny_json: &str) -> Result<String, DocumentError> {
    let mut value: serde_json::Value =
        serde_json::from_str(deny_json).map_err(|e| DocumentError::NotAPolicy(e.to_string()))?;
    let statements = match value.get_mut("Statement") {
        Some(serde_json::Value::Array(items)) => std::mem::take(items),
        Some(one @ serde_json::Value::Object(_)) => vec![one.take()],
        _ => return Err(DocumentError::NotAPolicy("no Statement list".to_string())),
    };
    let mut all = vec![serde_json::json!({
        "Sid": ALLOW_SID,
        "Effect": "Allow",
        "Action": "*",
        "Resource": "*",
    })];
    all.extend(statements);
    value["Statement"] = serde_json::Value::Array(all);
    serde_json::to_string(&value).map_err(|e| DocumentError::NotAPolicy(e.to_string()))
}

/// Why the boundary built from `deny_json` cannot be used (not a policy, or over the managed
/// policy size limit: the allow statement adds to the deny), before any call.
pub fn document_problem(deny_json: &str) -> Option<String> {
    match document(deny_json) {
        Err(e) => Some(format!("boundary document: {e}")),
        Ok(d) if crate::aws::limits::policy_size(&d) > crate::aws::limits::MANAGED_POLICY => {
            Some(format!(
                "the boundary document is {} characters; a managed policy allows {}",
                crate::aws::limits::policy_size(&d),
                crate::aws::limits::MANAGED_POLICY
            ))
        }
        Ok(_) => None,
    }
}

/// Where one target's boundary stands, as the Quarantine's status records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The previous boundary is recorded; ours may or may not be on yet.
    Recorded,
    /// Ours was put on.
    Set,
    /// Released: the previous boundary is back (or ours removed when there was none).
    Restored,
    /// Released: someone else's boundary was found and left as it was.
    LeftChanged,
}

/// What the status remembers about one target's boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The boundary policy ARN the principal had before ours; `None`: it had none.
    pub previous: Option<String>,
    /// Where it stands.
    pub stage: Stage,
}

/// What a read of the principal (`GetRole`/`GetUser`) showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The principal does not exist.
    Missing,
    /// The read failed.
    Unreadable(String, ErrorCategory),
    /// Its boundary ARN, `None` without one.
    Boundary(Option<String>),
}

/// What to do with one target while the quarantine is Active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnforceDecision {
    /// Record the previous boundary in status first; no IAM write until that status is stored.
    Record {
        /// The boundary found (never ours).
        previous: Option<String>,
    },
    /// Ours is on.
    InPlace,
    /// Put ours on (after making sure our policy exists).
    Put {
        /// Ours was on before and is gone: drift repair.
        repair: bool,
        /// The boundary found instead, when it is neither ours nor the recorded previous one.
        replaced: Option<String>,
    },
    /// Cannot act now.
    Blocked(String, ErrorCategory),
}

/// Decides one Active target.
pub fn decide_enforce(record: Option<&Record>, seen: &Seen, ours: &str) -> EnforceDecision {
    let current = match seen {
        Seen::Missing => {
            return EnforceDecision::Blocked(
                "the principal does not exist".to_string(),
                ErrorCategory::NotFound,
            );
        }
        Seen::Unreadable(message, category) => {
            return EnforceDecision::Blocked(message.clone(), *category);
        }
        Seen::Boundary(b) => b.as_deref(),
    };
    match record {
        None => EnforceDecision::Record {
            // Ours without a record means the status that recorded it was lost: the previous
            // boundary is unknown, and release then removes ours (decision 240).
            previous: current.filter(|c| *c != ours).map(str::to_string),
        },
        Some(_) if current == Some(ours) => EnforceDecision::InPlace,
        Some(r) => EnforceDecision::Put {
            repair: r.stage != Stage::Recorded,
            replaced: current
                .filter(|c| Some(*c) != r.previous.as_deref())
                .map(str::to_string),
        },
    }
}

/// What to do with one target on release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseDecision {
    /// Nothing of ours there, nothing to record (never recorded, or already released).
    Nothing,
    /// Ours is on: put the previous boundary back, or delete ours when there was none.
    Restore(Option<String>),
    /// The previous boundary is already there (or the principal is gone): released.
    AlreadyRestored,
    /// Someone else's boundary is on: leave it, and say so.
    LeaveChanged(Option<String>),
    /// Cannot tell now.
    Blocked(String, ErrorCategory),
}

/// Decides one target of a releasing quarantine.
pub fn decide_release(record: Option<&Record>, seen: &Seen, ours: &str) -> ReleaseDecision {
    let Some(record) = record else {
        return ReleaseDecision::Nothing;
    };
    if matches!(record.stage, Stage::Restored | Stage::LeftChanged) {
        return ReleaseDecision::Nothing;
    }
    match seen {
        Seen::Missing => ReleaseDecision::AlreadyRestored,
        Seen::Unreadable(message, category) => ReleaseDecision::Blocked(message.clone(), *category),
        Seen::Boundary(current) if current.as_deref() == Some(ours) => {
            ReleaseDecision::Restore(record.previous.clone())
        }
        Seen::Boundary(current) if *current == record.previous => ReleaseDecision::AlreadyRestored,
        Seen::Boundary(current) => ReleaseDecision::LeaveChanged(current.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str =
        "arn:aws:iam::111111111111:policy/autoguardrails/agr-boundary-0123456789abcdef";
    const PREVIOUS: &str = "arn:aws:iam::111111111111:policy/team-boundary";
    const OTHER: &str = "arn:aws:iam::111111111111:policy/someone-elses";

    fn key() -> QuarantineKey {
        QuarantineKey {
            namespace: "ns".into(),
            name: "q".into(),
            uid: "u-1".into(),
        }
    }

    fn record(previous: Option<&str>, stage: Stage) -> Record {
        Record {
            previous: previous.map(str::to_string),
            stage,
        }
    }

    fn seen(b: Option<&str>) -> Seen {
        Seen::Boundary(b.map(str::to_string))
    }

    #[test]
    fn the_document_allows_everything_but_the_denied_actions() {
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Sid":"D","Effect":"Deny","Action":["ec2:RunInstances"],"Resource":"*"}]}"#;
        let doc: serde_json::Value = serde_json::from_str(&document(deny).unwrap()).unwrap();
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Effect"], "Allow");
        assert_eq!(statements[0]["Action"], "*");
        assert_eq!(statements[1]["Effect"], "Deny");
        assert_eq!(statements[1]["Action"][0], "ec2:RunInstances");
        assert_eq!(doc["Version"], "2012-10-17");
        assert!(document("not json").is_err());
        assert_eq!(document_problem(deny), None);
        let padding = "x".repeat(crate::aws::limits::MANAGED_POLICY - 120);
        let near_limit = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"ec2:RunInstances","Resource":"arn:aws:s3:::{padding}"}}]}}"#
        );
        assert!(crate::aws::limits::policy_size(&near_limit) <= crate::aws::limits::MANAGED_POLICY);
        assert!(
            document_problem(&near_limit).is_some_and(|p| p.contains("boundary document")),
            "a deny that fits can make a boundary that does not"
        );
        assert!(document(r#"{"Version":"2012-10-17"}"#).is_err());
    }

    #[test]
    fn ownership_needs_path_name_and_every_tag() {
        let name = policy_name("c", &key(), "111111111111");
        assert!(name.starts_with(BOUNDARY_POLICY_PREFIX));
        let t = tags("c", &key());
        assert_eq!(
            owner("c", "111111111111", POLICY_PATH, &name, &t),
            Some(key())
        );
        assert_eq!(owner("other", "111111111111", POLICY_PATH, &name, &t), None);
        assert_eq!(owner("c", "222222222222", POLICY_PATH, &name, &t), None);
        assert_eq!(owner("c", "111111111111", "/", &name, &t), None);
        let without_purpose: Vec<Tag> =
            t.iter().filter(|t| t.key != TAG_PURPOSE).cloned().collect();
        assert_eq!(
            owner("c", "111111111111", POLICY_PATH, &name, &without_purpose),
            None
        );
        // The deny policy's name never passes as a boundary policy.
        let deny_name = super::super::ownership::managed_policy_name("c", &key(), "111111111111");
        assert_eq!(
            owner("c", "111111111111", POLICY_PATH, &deny_name, &t),
            None
        );
    }

    #[test]
    fn enforce_records_before_anything_else() {
        assert_eq!(
            decide_enforce(None, &seen(Some(PREVIOUS)), OURS),
            EnforceDecision::Record {
                previous: Some(PREVIOUS.into())
            }
        );
        assert_eq!(
            decide_enforce(None, &seen(None), OURS),
            EnforceDecision::Record { previous: None }
        );
        // Ours without a record (status lost): the previous one is unknown, never "ours".
        assert_eq!(
            decide_enforce(None, &seen(Some(OURS)), OURS),
            EnforceDecision::Record { previous: None }
        );
    }

    #[test]
    fn enforce_puts_ours_and_repairs_drift() {
        let recorded = record(Some(PREVIOUS), Stage::Recorded);
        let set = record(Some(PREVIOUS), Stage::Set);
        assert_eq!(
            decide_enforce(Some(&recorded), &seen(Some(PREVIOUS)), OURS),
            EnforceDecision::Put {
                repair: false,
                replaced: None
            }
        );
        assert_eq!(
            decide_enforce(Some(&set), &seen(Some(OURS)), OURS),
            EnforceDecision::InPlace
        );
        assert_eq!(
            decide_enforce(Some(&recorded), &seen(Some(OURS)), OURS),
            EnforceDecision::InPlace
        );
        assert_eq!(
            decide_enforce(Some(&set), &seen(None), OURS),
            EnforceDecision::Put {
                repair: true,
                replaced: None
            }
        );
        assert_eq!(
            decide_enforce(Some(&set), &seen(Some(OTHER)), OURS),
            EnforceDecision::Put {
                repair: true,
                replaced: Some(OTHER.into())
            }
        );
        assert!(matches!(
            decide_enforce(Some(&set), &Seen::Missing, OURS),
            EnforceDecision::Blocked(_, ErrorCategory::NotFound)
        ));
        assert!(matches!(
            decide_enforce(
                None,
                &Seen::Unreadable("throttled".into(), ErrorCategory::Transient),
                OURS
            ),
            EnforceDecision::Blocked(_, ErrorCategory::Transient)
        ));
    }

    #[test]
    fn release_restores_exactly_and_never_overwrites_someone_elses() {
        let set = record(Some(PREVIOUS), Stage::Set);
        let none_before = record(None, Stage::Set);
        assert_eq!(
            decide_release(Some(&set), &seen(Some(OURS)), OURS),
            ReleaseDecision::Restore(Some(PREVIOUS.into()))
        );
        assert_eq!(
            decide_release(Some(&none_before), &seen(Some(OURS)), OURS),
            ReleaseDecision::Restore(None)
        );
        assert_eq!(
            decide_release(Some(&set), &seen(Some(PREVIOUS)), OURS),
            ReleaseDecision::AlreadyRestored
        );
        assert_eq!(
            decide_release(Some(&none_before), &seen(None), OURS),
            ReleaseDecision::AlreadyRestored
        );
        assert_eq!(
            decide_release(Some(&set), &seen(Some(OTHER)), OURS),
            ReleaseDecision::LeaveChanged(Some(OTHER.into()))
        );
        // Removing the boundary is a change too: not put back by us.
        assert_eq!(
            decide_release(Some(&set), &seen(None), OURS),
            ReleaseDecision::LeaveChanged(None)
        );
        assert_eq!(
            decide_release(None, &seen(Some(OURS)), OURS),
            ReleaseDecision::Nothing
        );
        assert_eq!(
            decide_release(
                Some(&record(Some(PREVIOUS), Stage::Restored)),
                &seen(Some(OURS)),
                OURS
            ),
            ReleaseDecision::Nothing
        );
        assert_eq!(
            decide_release(Some(&set), &Seen::Missing, OURS),
            ReleaseDecision::AlreadyRestored
        );
        assert!(matches!(
            decide_release(
                Some(&set),
                &Seen::Unreadable("x".into(), ErrorCategory::AccessDenied),
                OURS
            ),
            ReleaseDecision::Blocked(_, ErrorCategory::AccessDenied)
        ));
    }
}
