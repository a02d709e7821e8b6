//! The narrow IAM trait: exactly the IAM calls the enforcement engine makes, with plain data types
//! and one error type. It owns no policy logic and must not know about Quarantines or Kubernetes.

use std::fmt;

use async_trait::async_trait;

/// The kind of IAM principal a deny policy is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalKind {
    /// An IAM role.
    Role,
    /// An IAM user.
    User,
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalKind::Role => f.write_str("role"),
            PrincipalKind::User => f.write_str("user"),
        }
    }
}

/// A principal as the IAM API addresses it: kind and name (the last ARN segment). Equality,
/// order and hash follow IAM's rule (`crate::principal::name_key`: names without regard to case),
/// so a name IAM reports in other case than a manifest wrote is the same principal; `name` keeps
/// the text as given.
#[derive(Debug, Clone)]
pub struct PrincipalRef {
    /// Role or user.
    pub kind: PrincipalKind,
    /// The role or user name.
    pub name: String,
}

impl PrincipalRef {
    fn key(&self) -> (PrincipalKind, String) {
        (self.kind, crate::principal::name_key(&self.name))
    }
}

impl PartialEq for PrincipalRef {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for PrincipalRef {}
impl PartialOrd for PrincipalRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PrincipalRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}
impl std::hash::Hash for PrincipalRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// One IAM tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

impl Tag {
    /// Builds a tag from key and value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A customer-managed policy as IAM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    /// Policy ARN.
    pub arn: String,
    /// Policy name.
    pub name: String,
    /// IAM path, e.g. `/autoguardrails/`.
    pub path: String,
    /// The version id of the default version, e.g. `v1`.
    pub default_version_id: String,
    /// Tags, when the call returns them (`CreatePolicy`, `GetPolicy`); empty from `ListPolicies`.
    pub tags: Vec<Tag>,
}

/// One version of a managed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// Version id, e.g. `v3`.
    pub version_id: String,
    /// Whether this is the default (effective) version.
    pub is_default: bool,
    /// The URL-decoded JSON document; only `GetPolicyVersion` returns it.
    pub document: Option<String>,
}

/// A managed policy attached to a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedPolicy {
    /// Policy name.
    pub name: String,
    /// Policy ARN.
    pub arn: String,
}

/// The roles, users and groups a managed policy is attached to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyEntities {
    /// Attached roles and users.
    pub principals: Vec<PrincipalRef>,
    /// Attached IAM group names (the engine never attaches to a group; release detaches them).
    pub groups: Vec<String>,
}

/// The quotas `GetAccountSummary` reports that the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSummary {
    /// Managed policies attachable to one role.
    pub attached_policies_per_role_quota: u32,
    /// Managed policies attachable to one user.
    pub attached_policies_per_user_quota: u32,
    /// Versions one managed policy may keep.
    pub versions_per_policy_quota: u32,
}

/// The identity of the credentials in use (`GetCallerIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The 12-digit account id.
    pub account_id: String,
    /// The caller's ARN.
    pub arn: String,
}

/// Temporary credentials returned by `AssumeRole`.
#[derive(Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// Expiry as seconds since the Unix epoch.
    pub expires_epoch_seconds: i64,
}

impl fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_epoch_seconds", &self.expires_epoch_seconds)
            .finish_non_exhaustive()
    }
}

/// Every AWS operation behind the traits, for call logs, metrics labels and the dry-run recorder.
/// A new variant goes into [`Operation::ALL`] too (the permission list is checked against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// The `CreatePolicy` API call.
    CreatePolicy,
    /// The `TagPolicy` API call.
    TagPolicy,
    /// The `GetPolicy` API call.
    GetPolicy,
    /// The `ListPolicies` API call.
    ListPolicies,
    /// The `ListPolicyTags` API call.
    ListPolicyTags,
    /// The `GetPolicyVersion` API call.
    GetPolicyVersion,
    /// The `ListPolicyVersions` API call.
    ListPolicyVersions,
    /// The `CreatePolicyVersion` API call.
    CreatePolicyVersion,
    /// The `DeletePolicyVersion` API call.
    DeletePolicyVersion,
    /// The `DeletePolicy` API call.
    DeletePolicy,
    /// The `ListEntitiesForPolicy` API call.
    ListEntitiesForPolicy,
    /// The `AttachRolePolicy` API call.
    AttachRolePolicy,
    /// The `DetachRolePolicy` API call.
    DetachRolePolicy,
    /// The `ListAttachedRolePolicies` API call.
    ListAttachedRolePolicies,
    /// The `AttachUserPolicy` API call.
    AttachUserPolicy,
    /// The `DetachUserPolicy` API call.
    DetachUserPolicy,
    /// The `DetachGroupPolicy` API call (release only).
    DetachGroupPolicy,
    /// The `ListAttachedUserPolicies` API call.
    ListAttachedUserPolicies,
    /// The `PutRolePolicy` API call.
    PutRolePolicy,
    /// The `DeleteRolePolicy` API call.
    DeleteRolePolicy,
    /// The `GetRolePolicy` API call.
    GetRolePolicy,
    /// The `ListRolePolicies` API call.
    ListRolePolicies,
    /// The `PutUserPolicy` API call.
    PutUserPolicy,
    /// The `DeleteUserPolicy` API call.
    DeleteUserPolicy,
    /// The `GetUserPolicy` API call.
    GetUserPolicy,
    /// The `ListUserPolicies` API call.
    ListUserPolicies,
    /// The `GetAccountSummary` API call.
    GetAccountSummary,
    /// The `GetCallerIdentity` API call.
    GetCallerIdentity,
    /// The `AssumeRole` API call.
    AssumeRole,
    /// The `GetRole` API call (reads the role's permissions boundary).
    GetRole,
    /// The `GetUser` API call (reads the user's permissions boundary).
    GetUser,
    /// The `PutRolePermissionsBoundary` API call.
    PutRolePermissionsBoundary,
    /// The `DeleteRolePermissionsBoundary` API call.
    DeleteRolePermissionsBoundary,
    /// The `PutUserPermissionsBoundary` API call.
    PutUserPermissionsBoundary,
    /// The `DeleteUserPermissionsBoundary` API call.
    DeleteUserPermissionsBoundary,
    /// The `ListRoles` API call (scope selectors).
    ListRoles,
    /// The `ListUsers` API call (scope selectors).
    ListUsers,
    /// The `ListRoleTags` API call (scope selectors with tags).
    ListRoleTags,
    /// The `ListUserTags` API call (scope selectors with tags).
    ListUserTags,
    /// The Organizations `ListChildren` API call (scope selectors with an OU).
    ListChildren,
    /// The Organizations `ListAccountsForParent` API call (scope selectors with an OU).
    ListAccountsForParent,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 41] = [
        Operation::CreatePolicy,
        Operation::TagPolicy,
        Operation::GetPolicy,
        Operation::ListPolicies,
        Operation::ListPolicyTags,
        Operation::GetPolicyVersion,
        Operation::ListPolicyVersions,
        Operation::CreatePolicyVersion,
        Operation::DeletePolicyVersion,
        Operation::DeletePolicy,
        Operation::ListEntitiesForPolicy,
        Operation::AttachRolePolicy,
        Operation::DetachRolePolicy,
        Operation::ListAttachedRolePolicies,
        Operation::AttachUserPolicy,
        Operation::DetachUserPolicy,
        Operation::DetachGroupPolicy,
        Operation::ListAttachedUserPolicies,
        Operation::PutRolePolicy,
        Operation::DeleteRolePolicy,
        Operation::GetRolePolicy,
        Operation::ListRolePolicies,
        Operation::PutUserPolicy,
        Operation::DeleteUserPolicy,
        Operation::GetUserPolicy,
        Operation::ListUserPolicies,
        Operation::GetAccountSummary,
        Operation::GetCallerIdentity,
        Operation::AssumeRole,
        Operation::GetRole,
        Operation::GetUser,
        Operation::PutRolePermissionsBoundary,
        Operation::DeleteRolePermissionsBoundary,
        Operation::PutUserPermissionsBoundary,
        Operation::DeleteUserPermissionsBoundary,
        Operation::ListRoles,
        Operation::ListUsers,
        Operation::ListRoleTags,
        Operation::ListUserTags,
        Operation::ListChildren,
        Operation::ListAccountsForParent,
    ];

    /// The API name, e.g. `AttachRolePolicy` (used as a metric label).
    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            CreatePolicy => "CreatePolicy",
            TagPolicy => "TagPolicy",
            GetPolicy => "GetPolicy",
            ListPolicies => "ListPolicies",
            ListPolicyTags => "ListPolicyTags",
            GetPolicyVersion => "GetPolicyVersion",
            ListPolicyVersions => "ListPolicyVersions",
            CreatePolicyVersion => "CreatePolicyVersion",
            DeletePolicyVersion => "DeletePolicyVersion",
            DeletePolicy => "DeletePolicy",
            ListEntitiesForPolicy => "ListEntitiesForPolicy",
            AttachRolePolicy => "AttachRolePolicy",
            DetachRolePolicy => "DetachRolePolicy",
            ListAttachedRolePolicies => "ListAttachedRolePolicies",
            AttachUserPolicy => "AttachUserPolicy",
            DetachUserPolicy => "DetachUserPolicy",
            DetachGroupPolicy => "DetachGroupPolicy",
            ListAttachedUserPolicies => "ListAttachedUserPolicies",
            PutRolePolicy => "PutRolePolicy",
            DeleteRolePolicy => "DeleteRolePolicy",
            GetRolePolicy => "GetRolePolicy",
            ListRolePolicies => "ListRolePolicies",
            PutUserPolicy => "PutUserPolicy",
            DeleteUserPolicy => "DeleteUserPolicy",
            GetUserPolicy => "GetUserPolicy",
            ListUserPolicies => "ListUserPolicies",
            GetAccountSummary => "GetAccountSummary",
            GetCallerIdentity => "GetCallerIdentity",
            AssumeRole => "AssumeRole",
            GetRole => "GetRole",
            GetUser => "GetUser",
            PutRolePermissionsBoundary => "PutRolePermissionsBoundary",
            DeleteRolePermissionsBoundary => "DeleteRolePermissionsBoundary",
            PutUserPermissionsBoundary => "PutUserPermissionsBoundary",
            DeleteUserPermissionsBoundary => "DeleteUserPermissionsBoundary",
            ListRoles => "ListRoles",
            ListUsers => "ListUsers",
            ListRoleTags => "ListRoleTags",
            ListUserTags => "ListUserTags",
            ListChildren => "ListChildren",
            ListAccountsForParent => "ListAccountsForParent",
        }
    }

    /// Whether the operation changes IAM state (dry-run must never send one).
    pub fn is_write(self) -> bool {
        use Operation::*;
        matches!(
            self,
            CreatePolicy
                | TagPolicy
                | CreatePolicyVersion
                | DeletePolicyVersion
                | DeletePolicy
                | AttachRolePolicy
                | DetachRolePolicy
                | AttachUserPolicy
                | DetachUserPolicy
                | DetachGroupPolicy
                | PutRolePolicy
                | DeleteRolePolicy
                | PutUserPolicy
                | DeleteUserPolicy
                | PutRolePermissionsBoundary
                | DeleteRolePermissionsBoundary
                | PutUserPermissionsBoundary
                | DeleteUserPermissionsBoundary
        )
    }

    /// The attach/detach/list/put/delete/get operation for a principal kind.
    pub fn for_principal(kind: PrincipalKind, role: Operation, user: Operation) -> Operation {
        match kind {
            PrincipalKind::Role => role,
            PrincipalKind::User => user,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The IAM/STS error codes the engine distinguishes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The entity does not exist.
    NoSuchEntity,
    /// The entity already exists.
    EntityAlreadyExists,
    /// A quota was hit (attachments per principal, policy size, versions).
    LimitExceeded,
    /// The caller may not perform the call.
    AccessDenied,
    /// Rate limited.
    Throttling,
    /// The policy document was rejected.
    MalformedPolicyDocument,
    /// The entity is still in use (e.g. deleting an attached policy).
    DeleteConflict,
    /// A parameter was rejected.
    InvalidInput,
    /// AWS failed internally.
    ServiceFailure,
    /// The request never got an answer (connect, timeout, I/O).
    Transport,
    /// Test double only: the process "crashed" after this call; the executor must abort.
    Crashed,
    /// Any other code, verbatim.
    Other(String),
}

impl ErrorCode {
    /// Maps an AWS error code string (`NoSuchEntity`, `Throttling`, ...) to the enum.
    pub fn from_aws_code(code: &str) -> ErrorCode {
        match code {
            "NoSuchEntity" | "NoSuchEntityException" => ErrorCode::NoSuchEntity,
            "EntityAlreadyExists" | "EntityAlreadyExistsException" => {
                ErrorCode::EntityAlreadyExists
            }
            "LimitExceeded" | "LimitExceededException" => ErrorCode::LimitExceeded,
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
                ErrorCode::AccessDenied
            }
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
                ErrorCode::Throttling
            }
            "MalformedPolicyDocument" | "MalformedPolicyDocumentException" => {
                ErrorCode::MalformedPolicyDocument
            }
            "DeleteConflict" | "DeleteConflictException" => ErrorCode::DeleteConflict,
            "InvalidInput" | "InvalidInputException" | "ValidationError" => ErrorCode::InvalidInput,
            "ServiceFailure" | "ServiceFailureException" | "InternalFailure" => {
                ErrorCode::ServiceFailure
            }
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// The category used for metric labels and Event reasons.
    pub fn category(&self) -> ErrorCategory {
        match self {
            ErrorCode::NoSuchEntity => ErrorCategory::NotFound,
            ErrorCode::EntityAlreadyExists | ErrorCode::DeleteConflict => ErrorCategory::Conflict,
            ErrorCode::LimitExceeded => ErrorCategory::Quota,
            ErrorCode::AccessDenied => ErrorCategory::AccessDenied,
            ErrorCode::Throttling
            | ErrorCode::ServiceFailure
            | ErrorCode::Transport
            | ErrorCode::Crashed => ErrorCategory::Transient,
            ErrorCode::MalformedPolicyDocument | ErrorCode::InvalidInput => ErrorCategory::Invalid,
            ErrorCode::Other(_) => ErrorCategory::Transient,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Other(code) => f.write_str(code),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Error categories shared by `aws` and `enforce`: metric label values and Event reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCategory {
    /// Retry with backoff: throttling, 5xx, transport.
    Transient,
    /// Our credentials lack a permission; an operator must fix IAM.
    AccessDenied,
    /// A quota (attachments, size, versions) was hit.
    Quota,
    /// The entity does not exist.
    NotFound,
    /// The request or configuration is invalid; retrying will not help until it changes.
    Invalid,
    /// The entity exists or is in use.
    Conflict,
}

impl ErrorCategory {
    /// The label / Event reason string, e.g. `AccessDenied`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Transient => "Transient",
            ErrorCategory::AccessDenied => "AccessDenied",
            ErrorCategory::Quota => "Quota",
            ErrorCategory::NotFound => "NotFound",
            ErrorCategory::Invalid => "Invalid",
            ErrorCategory::Conflict => "Conflict",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every trait call returns.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("AWS call {operation} failed: {code}: {message}")]
pub struct AwsError {
    /// The operation that failed.
    pub operation: Operation,
    /// The AWS error code.
    pub code: ErrorCode,
    /// The message AWS (or the transport) gave.
    pub message: String,
}

impl AwsError {
    /// Builds an error.
    pub fn new(operation: Operation, code: ErrorCode, message: impl Into<String>) -> Self {
        AwsError {
            operation,
            code,
            message: message.into(),
        }
    }

    /// The category used for metric labels and Event reasons.
    pub fn category(&self) -> ErrorCategory {
        self.code.category()
    }

    /// Whether this is the given code.
    pub fn is(&self, code: &ErrorCode) -> bool {
        &self.code == code
    }
}

/// Shorthand result type for trait calls.
pub type AwsResult<T> = Result<T, AwsError>;

tokio::task_local! {
    static REQUEST_IDS: std::sync::Arc<std::sync::Mutex<Vec<String>>>;
}

/// Runs `call` and returns its output with the AWS request ids the implementations noted while it
/// ran ([`note_request_id`]), in order: the SDK's from each response or error that carried one,
/// the in-memory IAM's own. Used by the write gate so each audited IAM write names its ids.
pub async fn capture_request_ids<F: std::future::Future>(call: F) -> (F::Output, Vec<String>) {
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let output = REQUEST_IDS.scope(ids.clone(), call).await;
    let ids = std::mem::take(&mut *ids.lock().unwrap_or_else(|p| p.into_inner()));
    (output, ids)
}

/// Notes the request id of a call just answered, when a [`capture_request_ids`] is listening
/// (elsewhere it does nothing). Empty ids are ignored.
pub fn note_request_id(id: Option<&str>) {
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return;
    };
    let _ = REQUEST_IDS.try_with(|ids| {
        ids.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.to_string());
    });
}

/// The IAM calls the enforcement engine makes; nothing more. Implementations: SDK, in-memory, recorder.
///
/// Object-safe (via `async_trait`) so the controller can hold `Arc<dyn Iam>` per account.
#[async_trait]
pub trait Iam: Send + Sync {
    /// `CreatePolicy` with path and tags in one call.
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        document: &str,
        tags: &[Tag],
    ) -> AwsResult<ManagedPolicy>;
    /// `TagPolicy`.
    async fn tag_policy(&self, policy_arn: &str, tags: &[Tag]) -> AwsResult<()>;
    /// `GetPolicy` (includes tags).
    async fn get_policy(&self, policy_arn: &str) -> AwsResult<ManagedPolicy>;
    /// `ListPolicies` with `Scope=Local` and the path prefix, all pages.
    async fn list_policies(&self, path_prefix: &str) -> AwsResult<Vec<ManagedPolicy>>;
    /// `ListPolicyTags`.
    async fn list_policy_tags(&self, policy_arn: &str) -> AwsResult<Vec<Tag>>;
    /// `GetPolicyVersion`, document URL-decoded.
    async fn get_policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> AwsResult<PolicyVersion>;
    /// `ListPolicyVersions` (no documents).
    async fn list_policy_versions(&self, policy_arn: &str) -> AwsResult<Vec<PolicyVersion>>;
    /// `CreatePolicyVersion`.
    async fn create_policy_version(
        &self,
        policy_arn: &str,
        document: &str,
        set_as_default: bool,
    ) -> AwsResult<PolicyVersion>;
    /// `DeletePolicyVersion` (never the default version).
    async fn delete_policy_version(&self, policy_arn: &str, version_id: &str) -> AwsResult<()>;
    /// `DeletePolicy` (fails with `DeleteConflict` while attached or with non-default versions).
    async fn delete_policy(&self, policy_arn: &str) -> AwsResult<()>;
    /// `ListEntitiesForPolicy`: the roles and users it is attached to, all pages.
    async fn list_entities_for_policy(&self, policy_arn: &str) -> AwsResult<PolicyEntities>;
    /// `AttachRolePolicy` / `AttachUserPolicy`.
    async fn attach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()>;
    /// `DetachRolePolicy` / `DetachUserPolicy`.
    async fn detach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()>;
    /// `DetachGroupPolicy`: removes a managed policy from an IAM group (release only).
    async fn detach_group_policy(&self, group: &str, policy_arn: &str) -> AwsResult<()>;
    /// `ListAttachedRolePolicies` / `ListAttachedUserPolicies`, optionally filtered by path prefix.
    async fn list_attached_policies(
        &self,
        principal: &PrincipalRef,
        path_prefix: Option<&str>,
    ) -> AwsResult<Vec<AttachedPolicy>>;
    /// `PutRolePolicy` / `PutUserPolicy`.
    async fn put_inline_policy(
        &self,
        principal: &PrincipalRef,
        name: &str,
        document: &str,
    ) -> AwsResult<()>;
    /// `DeleteRolePolicy` / `DeleteUserPolicy`.
    async fn delete_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<()>;
    /// `GetRolePolicy` / `GetUserPolicy`, document URL-decoded.
    async fn get_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<String>;
    /// `ListRolePolicies` / `ListUserPolicies`: inline policy names, all pages.
    async fn list_inline_policies(&self, principal: &PrincipalRef) -> AwsResult<Vec<String>>;
    /// `GetAccountSummary`: the quotas the engine needs.
    async fn get_account_summary(&self) -> AwsResult<AccountSummary>;
    /// `GetRole` / `GetUser`: the ARN of the principal's permissions boundary, `None` without one.
    async fn get_permissions_boundary(&self, principal: &PrincipalRef)
    -> AwsResult<Option<String>>;
    /// `PutRolePermissionsBoundary` / `PutUserPermissionsBoundary`: replaces any boundary.
    async fn put_permissions_boundary(
        &self,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> AwsResult<()>;
    /// `DeleteRolePermissionsBoundary` / `DeleteUserPermissionsBoundary`.
    async fn delete_permissions_boundary(&self, principal: &PrincipalRef) -> AwsResult<()>;
}

/// The STS calls the controller makes.
#[async_trait]
pub trait Sts: Send + Sync {
    /// `GetCallerIdentity`.
    async fn get_caller_identity(&self) -> AwsResult<CallerIdentity>;
    /// `AssumeRole` with an optional external id.
    async fn assume_role(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
    ) -> AwsResult<TemporaryCredentials>;
}

/// Decodes the percent-encoding IAM applies to policy documents (`%7B%22Version%22...`).
///
/// Leaves malformed escapes as they are; never fails. `+` is kept (IAM encodes spaces as `%20`).
pub fn url_decode(input: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| input.to_string())
}

/// Decodes a document only when it looks URL-encoded (IAM encodes; some emulators do not).
pub fn decode_policy_document(input: &str) -> String {
    let trimmed = input.trim_start();
    if trimmed.starts_with('{') {
        input.to_string()
    } else {
        url_decode(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decode_handles_iam_encoding() {
        assert_eq!(
            url_decode("%7B%22Version%22%3A%222012-10-17%22%7D"),
            r#"{"Version":"2012-10-17"}"#
        );
        assert_eq!(url_decode("a%2"), "a%2");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(decode_policy_document(r#"{"a":"%41"}"#), r#"{"a":"%41"}"#);
    }

    #[test]
    fn error_codes_map_to_categories() {
        assert_eq!(
            ErrorCode::from_aws_code("NoSuchEntity").category(),
            ErrorCategory::NotFound
        );
        assert_eq!(
            ErrorCode::from_aws_code("LimitExceeded").category(),
            ErrorCategory::Quota
        );
        assert_eq!(
            ErrorCode::from_aws_code("Throttling").category(),
            ErrorCategory::Transient
        );
        assert!(Operation::AttachRolePolicy.is_write());
        assert!(!Operation::ListAttachedRolePolicies.is_write());
    }
}
