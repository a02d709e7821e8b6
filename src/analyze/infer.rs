//! Dependent-action inference: permissions a call needs that CloudTrail never logs under the
//! caller's name — `iam:PassRole` for calls that pass a role, KMS for SSE-KMS reads and writes,
//! `s3:ListBucket` when objects are read, `ec2:CreateTags` on tag-on-create — each with the reason
//! it was added. It must not decide whether the principal is granted them (that is `permissions`).

use std::collections::BTreeMap;

use super::usage::{Group, GroupKey};

/// Reason: a role was passed to a service.
pub const REASON_PASS_ROLE: &str = "the call passes an IAM role to the service; iam:PassRole is checked but never logged by CloudTrail";
/// Reason: SSE-KMS read.
pub const REASON_KMS_DECRYPT: &str =
    "objects read were encrypted with SSE-KMS; S3 calls kms:Decrypt with the caller's permissions";
/// Reason: SSE-KMS write.
pub const REASON_KMS_GENERATE: &str = "objects written were encrypted with SSE-KMS; S3 calls kms:GenerateDataKey with the caller's permissions";
/// Reason: SSE-KMS multipart write.
pub const REASON_KMS_MULTIPART: &str =
    "multipart uploads with SSE-KMS also need kms:Decrypt to assemble the parts";
/// Reason: reading objects without ListBucket.
pub const REASON_LIST_BUCKET: &str = "objects are read from the bucket; without s3:ListBucket a missing key answers 403 AccessDenied instead of 404 NoSuchKey";
/// Reason: tag-on-create.
pub const REASON_CREATE_TAGS: &str =
    "the call tags resources on create (TagSpecifications), which EC2 authorizes as ec2:CreateTags";
/// Reason: EBS/EC2 encryption with a customer managed key.
pub const REASON_KMS_GRANT: &str = "the call names a KMS key for EBS encryption; EC2 creates a grant on it with the caller's permissions (kms:CreateGrant)";

/// The event source whose `roleArn` names the role assumed (`AssumeRole*`), never a passed role.
pub const STS_SOURCE: &str = "sts.amazonaws.com";

/// An inferred permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Inferred {
    /// `service:Action`.
    pub action: String,
    /// Resource ARNs when the log names them; empty means not known (`*` or current grants).
    pub resources: Vec<String>,
    /// A condition to attach: (operator, key, values).
    pub condition: Option<(String, String, Vec<String>)>,
    /// Why.
    pub reason: &'static str,
    /// The event it was inferred from (`s3.amazonaws.com:GetObject`).
    pub from: String,
}

fn is_event(key: &GroupKey, source: &str, events: &[&str]) -> bool {
    key.source == source && events.iter().any(|e| key.event.eq_ignore_ascii_case(e))
}

fn role_arn(partition: &str, account: &str, role: &str) -> Option<String> {
    if role.starts_with("arn:") {
        Some(role.to_string())
    } else if !role.is_empty() && !account.is_empty() && !role.contains(':') {
        Some(format!("arn:{partition}:iam::{account}:role/{role}"))
    } else {
        None
    }
}

fn kms_key_arn(key: &str) -> Option<String> {
    key.starts_with("arn:").then(|| key.to_string())
}

fn buckets(group: &Group) -> Vec<String> {
    let mut out: Vec<String> = group
        .resources
        .values
        .iter()
        .filter_map(|arn| {
            let rest = arn.strip_prefix("arn:")?;
            let (partition, tail) = rest.split_once(":s3:::")?;
            let bucket = tail.split('/').next()?;
            (!bucket.is_empty()).then(|| format!("arn:{partition}:s3:::{bucket}"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The dependent permissions of the allowed groups (denied calls infer nothing). `partition` and
/// `account` complete role names given without ARN.
pub fn infer(groups: &BTreeMap<GroupKey, Group>, partition: &str, account: &str) -> Vec<Inferred> {
    let mut out = Vec::new();
    for (key, group) in groups.iter().filter(|(k, _)| !k.denied) {
        let from = format!("{}:{}", key.source, key.event);
        let hints = &group.hints;
        // STS's `roleArn` is the role being assumed, not a role passed to a service.
        let passes_roles = !key.source.eq_ignore_ascii_case(STS_SOURCE);
        if passes_roles && (!hints.passed_roles.values.is_empty() || hints.passed_role_unnamed) {
            let mut resources: Vec<String> = hints
                .passed_roles
                .values
                .iter()
                .filter_map(|r| role_arn(partition, account, r))
                .collect();
            if hints.passed_role_unnamed
                || hints.passed_roles.overflow
                || resources.len() != hints.passed_roles.values.len()
            {
                resources.clear();
            }
            out.push(Inferred {
                action: "iam:PassRole".into(),
                resources,
                condition: Some((
                    "StringEquals".into(),
                    "iam:PassedToService".into(),
                    vec![key.source.clone()],
                )),
                reason: REASON_PASS_ROLE,
                from: from.clone(),
            });
        }
        let keys: Vec<String> = if hints.kms_keys.overflow {
            Vec::new()
        } else {
            let keys: Vec<String> = hints
                .kms_keys
                .values
                .iter()
                .filter_map(|k| kms_key_arn(k))
                .collect();
            if keys.len() == hints.kms_keys.values.len() {
                keys
            } else {
                Vec::new()
            }
        };
        if key.source == "s3.amazonaws.com" && hints.sse_kms {
            if is_event(
                key,
                "s3.amazonaws.com",
                &["GetObject", "HeadObject", "CopyObject"],
            ) {
                out.push(Inferred {
                    action: "kms:Decrypt".into(),
                    resources: keys.clone(),
                    condition: None,
                    reason: REASON_KMS_DECRYPT,
                    from: from.clone(),
                });
            }
            if is_event(
                key,
                "s3.amazonaws.com",
                &[
                    "PutObject",
                    "CopyObject",
                    "CreateMultipartUpload",
                    "UploadPart",
                    "CompleteMultipartUpload",
                ],
            ) {
                out.push(Inferred {
                    action: "kms:GenerateDataKey".into(),
                    resources: keys.clone(),
                    condition: None,
                    reason: REASON_KMS_GENERATE,
                    from: from.clone(),
                });
            }
            if is_event(
                key,
                "s3.amazonaws.com",
                &[
                    "CreateMultipartUpload",
                    "UploadPart",
                    "CompleteMultipartUpload",
                ],
            ) {
                out.push(Inferred {
                    action: "kms:Decrypt".into(),
                    resources: keys.clone(),
                    condition: None,
                    reason: REASON_KMS_MULTIPART,
                    from: from.clone(),
                });
            }
        }
        if is_event(key, "s3.amazonaws.com", &["GetObject", "HeadObject"]) {
            let resources = buckets(group);
            out.push(Inferred {
                action: "s3:ListBucket".into(),
                resources: if group.resources.overflow || group.unnamed > 0 {
                    Vec::new()
                } else {
                    resources
                },
                condition: None,
                reason: REASON_LIST_BUCKET,
                from: from.clone(),
            });
        }
        if key.source == "ec2.amazonaws.com" && hints.tag_on_create {
            out.push(Inferred {
                action: "ec2:CreateTags".into(),
                resources: Vec::new(),
                condition: Some((
                    "StringEquals".into(),
                    "ec2:CreateAction".into(),
                    vec![key.event.clone()],
                )),
                reason: REASON_CREATE_TAGS,
                from: from.clone(),
            });
        }
        if key.source == "ec2.amazonaws.com" && !hints.kms_keys.values.is_empty() {
            out.push(Inferred {
                action: "kms:CreateGrant".into(),
                resources: keys.clone(),
                condition: Some((
                    "Bool".into(),
                    "kms:GrantIsForAWSResource".into(),
                    vec!["true".into()],
                )),
                reason: REASON_KMS_GRANT,
                from: from.clone(),
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::usage::Bounded;

    fn key(source: &str, event: &str) -> GroupKey {
        GroupKey {
            source: source.into(),
            event: event.into(),
            denied: false,
        }
    }

    #[test]
    fn pass_role_is_scoped_to_the_passed_role_and_service() {
        let mut g = Group::default();
        g.hints.passed_roles = Bounded::default();
        g.hints
            .passed_roles
            .add("arn:aws:iam::123456789012:role/exec", 8);
        let groups = BTreeMap::from([(key("lambda.amazonaws.com", "CreateFunction20150331"), g)]);
        let out = infer(&groups, "aws", "123456789012");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].action, "iam:PassRole");
        assert_eq!(
            out[0].resources,
            vec!["arn:aws:iam::123456789012:role/exec"]
        );
        assert_eq!(
            out[0].condition.as_ref().unwrap().2,
            vec!["lambda.amazonaws.com".to_string()]
        );
    }

    #[test]
    fn reading_objects_needs_list_bucket_and_kms() {
        let mut g = Group::default();
        g.resources.add("arn:aws:s3:::data/*", 8);
        g.hints.sse_kms = true;
        g.hints
            .kms_keys
            .add("arn:aws:kms:us-east-1:123456789012:key/k", 8);
        let groups = BTreeMap::from([(key("s3.amazonaws.com", "GetObject"), g)]);
        let out = infer(&groups, "aws", "123456789012");
        let actions: Vec<&str> = out.iter().map(|i| i.action.as_str()).collect();
        assert_eq!(actions, vec!["kms:Decrypt", "s3:ListBucket"]);
        assert_eq!(out[1].resources, vec!["arn:aws:s3:::data"]);
    }

    #[test]
    fn assuming_a_role_passes_none() {
        let mut g = Group::default();
        g.hints
            .passed_roles
            .add("arn:aws:iam::123456789012:role/deploy", 8);
        let groups = BTreeMap::from([(key("sts.amazonaws.com", "AssumeRole"), g)]);
        assert!(infer(&groups, "aws", "123456789012").is_empty());
    }

    #[test]
    fn denied_calls_infer_nothing() {
        let mut g = Group::default();
        g.hints.tag_on_create = true;
        let mut k = key("ec2.amazonaws.com", "RunInstances");
        k.denied = true;
        assert!(infer(&BTreeMap::from([(k, g)]), "aws", "1").is_empty());
    }
}
