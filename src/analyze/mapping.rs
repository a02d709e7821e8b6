//! CloudTrail event → IAM action mapping: the event source's IAM prefix, the table of known
//! mismatches between CloudTrail event names and IAM action names, Lambda's versioned event names,
//! and calls that need no permission. Checked against the snapshot (`catalog`): a mapped action the
//! snapshot does not know is reported as unknown, never emitted. It must not infer dependent
//! actions (that is `infer`) nor do I/O.

use super::catalog::Catalog;

/// Event sources whose IAM prefix is not the first label of the host name.
pub const SOURCE_PREFIXES: &[(&str, &str)] = &[
    ("monitoring.amazonaws.com", "cloudwatch"),
    ("streams.dynamodb.amazonaws.com", "dynamodb"),
    ("tagging.amazonaws.com", "tag"),
    ("api.ecr.amazonaws.com", "ecr"),
    ("api.mediatailor.amazonaws.com", "mediatailor"),
    ("elasticloadbalancing.amazonaws.com", "elasticloadbalancing"),
    ("email.amazonaws.com", "ses"),
    ("sso.amazonaws.com", "sso"),
    ("ssm-guiconnect.amazonaws.com", "ssm-guiconnect"),
];

/// Why an event maps to an action other than its own name (a constant per kind of mismatch).
pub const REASON_RENAMED: &str = "CloudTrail logs this call under another name than its IAM action";
/// Reason for multipart uploads.
pub const REASON_MULTIPART: &str = "multipart uploads are authorized by s3:PutObject (AWS S3 user guide, multipart upload permissions)";
/// Reason for Lambda's versioned event names.
pub const REASON_LAMBDA_VERSION: &str =
    "Lambda logs API-version suffixes (20150331, v2) that are not part of the IAM action";
/// Reason for API Gateway management calls.
pub const REASON_API_GATEWAY_METHOD: &str = "API Gateway management calls are authorized as the HTTP method of the call (apigateway:GET, POST, PATCH, PUT, DELETE on the API's resource path)";
/// Reason for a call that needs no IAM permission.
pub const REASON_NO_PERMISSION: &str = "this call needs no IAM permission";
/// Reason for an event that is not an API call the caller authorized.
pub const REASON_NOT_A_CALL: &str = "not an API call made with the principal's permissions";

/// One entry of the mismatch table: (event source, event name) → IAM actions (empty: no
/// permission needed) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// `s3.amazonaws.com`.
    pub source: &'static str,
    /// The event name as CloudTrail logs it.
    pub event: &'static str,
    /// The IAM actions the call needs (`service:Action`), empty when none.
    pub actions: &'static [&'static str],
    /// Why.
    pub reason: &'static str,
}

const fn m(
    source: &'static str,
    event: &'static str,
    actions: &'static [&'static str],
    reason: &'static str,
) -> Mismatch {
    Mismatch {
        source,
        event,
        actions,
        reason,
    }
}

/// The known mismatches between CloudTrail event names and IAM actions (one test per entry in
/// `tests/analyze/mapping.rs`).
pub const MISMATCHES: &[Mismatch] = &[
    m(
        "s3.amazonaws.com",
        "ListBuckets",
        &["s3:ListAllMyBuckets"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "HeadObject",
        &["s3:GetObject"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "HeadBucket",
        &["s3:ListBucket"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "ListObjects",
        &["s3:ListBucket"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "ListObjectsV2",
        &["s3:ListBucket"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "ListObjectVersions",
        &["s3:ListBucketVersions"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "CreateMultipartUpload",
        &["s3:PutObject"],
        REASON_MULTIPART,
    ),
    m(
        "s3.amazonaws.com",
        "UploadPart",
        &["s3:PutObject"],
        REASON_MULTIPART,
    ),
    m(
        "s3.amazonaws.com",
        "UploadPartCopy",
        &["s3:PutObject"],
        REASON_MULTIPART,
    ),
    m(
        "s3.amazonaws.com",
        "CompleteMultipartUpload",
        &["s3:PutObject"],
        REASON_MULTIPART,
    ),
    m(
        "s3.amazonaws.com",
        "CopyObject",
        &["s3:PutObject"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "DeleteObjects",
        &["s3:DeleteObject"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "ListMultipartUploads",
        &["s3:ListBucketMultipartUploads"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "ListParts",
        &["s3:ListMultipartUploadParts"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "GetBucketEncryption",
        &["s3:GetEncryptionConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "PutBucketEncryption",
        &["s3:PutEncryptionConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "DeleteBucketEncryption",
        &["s3:PutEncryptionConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "GetBucketLifecycle",
        &["s3:GetLifecycleConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "GetBucketLifecycleConfiguration",
        &["s3:GetLifecycleConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "PutBucketLifecycle",
        &["s3:PutLifecycleConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "PutBucketLifecycleConfiguration",
        &["s3:PutLifecycleConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "DeleteBucketLifecycle",
        &["s3:PutLifecycleConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "GetBucketReplication",
        &["s3:GetReplicationConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "PutBucketReplication",
        &["s3:PutReplicationConfiguration"],
        REASON_RENAMED,
    ),
    m(
        "s3.amazonaws.com",
        "GetBucketPublicAccessBlock",
        &["s3:GetBucketPublicAccessBlock"],
        REASON_RENAMED,
    ),
    m(
        "lambda.amazonaws.com",
        "Invoke",
        &["lambda:InvokeFunction"],
        REASON_RENAMED,
    ),
    m(
        "sts.amazonaws.com",
        "GetCallerIdentity",
        &[],
        REASON_NO_PERMISSION,
    ),
    m(
        "signin.amazonaws.com",
        "ConsoleLogin",
        &[],
        REASON_NOT_A_CALL,
    ),
    m("signin.amazonaws.com", "SwitchRole", &[], REASON_NOT_A_CALL),
    m(
        "kms.amazonaws.com",
        "GenerateDataKeyWithoutPlaintext",
        &["kms:GenerateDataKeyWithoutPlaintext"],
        REASON_RENAMED,
    ),
    m(
        "tagging.amazonaws.com",
        "GetResources",
        &["tag:GetResources"],
        REASON_RENAMED,
    ),
    m(
        "monitoring.amazonaws.com",
        "PutMetricData",
        &["cloudwatch:PutMetricData"],
        REASON_RENAMED,
    ),
    m(
        "streams.dynamodb.amazonaws.com",
        "GetRecords",
        &["dynamodb:GetRecords"],
        REASON_RENAMED,
    ),
    m(
        "streams.dynamodb.amazonaws.com",
        "GetShardIterator",
        &["dynamodb:GetShardIterator"],
        REASON_RENAMED,
    ),
    m(
        "streams.dynamodb.amazonaws.com",
        "DescribeStream",
        &["dynamodb:DescribeStream"],
        REASON_RENAMED,
    ),
    m(
        "streams.dynamodb.amazonaws.com",
        "ListStreams",
        &["dynamodb:ListStreams"],
        REASON_RENAMED,
    ),
];

/// What an event maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// The IAM actions (canonical spelling) and, when the name differed, why.
    Actions {
        /// `service:Action` as the snapshot spells them.
        actions: Vec<String>,
        /// Why the mapping is not the event's own name (`None` when it is).
        reason: Option<&'static str>,
    },
    /// The call needs no permission.
    NoPermission {
        /// Why.
        reason: &'static str,
    },
    /// The candidate action is not in the snapshot: reported, never emitted.
    Unknown {
        /// The action the event would map to.
        candidate: String,
    },
}

/// The IAM prefix of an event source (`s3.amazonaws.com` → `s3`).
pub fn service_prefix(event_source: &str) -> String {
    if let Some((_, prefix)) = SOURCE_PREFIXES
        .iter()
        .find(|(source, _)| source.eq_ignore_ascii_case(event_source))
    {
        return (*prefix).to_string();
    }
    let host = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    host.split('.').next().unwrap_or(host).to_ascii_lowercase()
}

/// Lambda logs `UpdateFunctionCode20150331v2`, `GetFunction20150331`: strip the suffix.
pub fn strip_api_version(event_name: &str) -> Option<&str> {
    let bytes = event_name.as_bytes();
    let mut end = bytes.len();
    // optional `v<digits>`
    let mut i = end;
    while i > 0 && bytes[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i < end && i > 0 && bytes[i - 1] == b'v' {
        end = i - 1;
    }
    let digits_start = end.checked_sub(8)?;
    let date = &event_name[digits_start..end];
    if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) && date.starts_with("20") {
        let base = &event_name[..digits_start];
        (!base.is_empty()).then_some(base)
    } else {
        None
    }
}

/// Maps one event to IAM actions, checked against the snapshot.
pub fn map_event(catalog: &Catalog, event_source: &str, event_name: &str) -> Mapped {
    if let Some(entry) = MISMATCHES.iter().find(|e| {
        e.source.eq_ignore_ascii_case(event_source) && e.event.eq_ignore_ascii_case(event_name)
    }) {
        if entry.actions.is_empty() {
            return Mapped::NoPermission {
                reason: entry.reason,
            };
        }
        return canonical(catalog, entry.actions, Some(entry.reason));
    }
    let prefix = service_prefix(event_source);
    let (name, reason) = if prefix == "lambda" {
        match strip_api_version(event_name) {
            Some(base) => {
                let base = if base.eq_ignore_ascii_case("Invoke") {
                    "InvokeFunction"
                } else {
                    base
                };
                (base.to_string(), Some(REASON_LAMBDA_VERSION))
            }
            None => (event_name.to_string(), None),
        }
    } else {
        (event_name.to_string(), None)
    };
    let candidate = format!("{prefix}:{name}");
    if prefix == "apigateway"
        && catalog.lookup(&candidate).is_none()
        && let Some(method) = api_gateway_method(event_name)
    {
        return canonical(
            catalog,
            &[&format!("apigateway:{method}")],
            Some(REASON_API_GATEWAY_METHOD),
        );
    }
    canonical(catalog, &[candidate.as_str()], reason)
}

/// API Gateway's management calls (REST and HTTP/WebSocket APIs: `GetRestApis`, `CreateApi`,
/// `UpdateStage`, ...) are authorized as the HTTP method of the call; only the name prefixes
/// whose method is unambiguous are mapped (others stay unknown, reported).
pub fn api_gateway_method(event_name: &str) -> Option<&'static str> {
    const METHODS: &[(&str, &str)] = &[
        ("Get", "GET"),
        ("Create", "POST"),
        ("Update", "PATCH"),
        ("Delete", "DELETE"),
        ("Put", "PUT"),
    ];
    METHODS.iter().find_map(|(prefix, method)| {
        event_name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            .then_some(*method)
    })
}

fn canonical(catalog: &Catalog, actions: &[&str], reason: Option<&'static str>) -> Mapped {
    let mut out = Vec::new();
    for action in actions {
        match catalog.lookup(action) {
            Some(info) => out.push(info.full_name()),
            None => {
                return Mapped::Unknown {
                    candidate: (*action).to_string(),
                };
            }
        }
    }
    Mapped::Actions {
        actions: out,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(service_prefix("s3.amazonaws.com"), "s3");
        assert_eq!(service_prefix("monitoring.amazonaws.com"), "cloudwatch");
        assert_eq!(service_prefix("ec2.amazonaws.com"), "ec2");
    }

    #[test]
    fn api_versions() {
        assert_eq!(
            strip_api_version("UpdateFunctionCode20150331v2"),
            Some("UpdateFunctionCode")
        );
        assert_eq!(
            strip_api_version("GetFunction20150331"),
            Some("GetFunction")
        );
        assert_eq!(strip_api_version("ListFunctions"), None);
        assert_eq!(strip_api_version("20150331"), None);
    }

    #[test]
    fn unknown_actions_are_reported_not_emitted() {
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(
            map_event(catalog, "s3.amazonaws.com", "NoSuchCall"),
            Mapped::Unknown {
                candidate: "s3:NoSuchCall".into()
            }
        );
        assert_eq!(
            map_event(catalog, "ec2.amazonaws.com", "describeinstances"),
            Mapped::Actions {
                actions: vec!["ec2:DescribeInstances".into()],
                reason: None
            }
        );
    }
}
