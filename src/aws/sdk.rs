//! The official AWS SDK implementation of the `Iam` and `Sts` traits and of `ClientFactory`
//! (ambient credentials, or a cached `AssumeRole` per configured account), with adaptive retries,
//! a per-account client-side rate limit and an endpoint override for tests. It maps SDK errors to
//! `AwsError` and URL-decodes policy documents; it makes no enforcement decisions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use aws_sdk_iam::types::{PolicyScopeType, SummaryKeyType};
use tokio::sync::Mutex;

use super::factory::{ClientFactory, FactoryError};
use super::iam::{
    AccountSummary, AttachedPolicy, AwsError, AwsResult, CallerIdentity, ErrorCode, Iam,
    ManagedPolicy, Operation, PolicyEntities, PolicyVersion, PrincipalKind, PrincipalRef, Sts, Tag,
    TemporaryCredentials, decode_policy_document, note_request_id,
};
use super::ratelimit::RateLimiter;

/// How SDK clients are built.
#[derive(Debug, Clone)]
pub struct SdkSettings {
    /// Endpoint override (moto in tests); `None` in production.
    pub endpoint_url: Option<String>,
    /// Region for the IAM/STS clients (IAM is global; `us-east-1` is the usual signing region).
    pub region: String,
    /// Adaptive retry attempts; 0 disables retries (tests).
    pub max_attempts: u32,
    /// Client-side rate limit per account (requests/second, burst); `None` disables it.
    pub rate_limit: Option<(f64, u32)>,
    /// Static credentials (access key, secret) instead of the default chain; tests only.
    pub static_credentials: Option<(String, String)>,
}

impl Default for SdkSettings {
    fn default() -> Self {
        SdkSettings {
            endpoint_url: None,
            region: "us-east-1".to_string(),
            max_attempts: 5,
            rate_limit: Some((10.0, 20)),
            static_credentials: None,
        }
    }
}

/// Loads the base (ambient) SDK configuration: default credential chain (IRSA / web identity,
/// env, profile, container, instance) unless static credentials are given.
pub async fn load_base_config(settings: &SdkSettings) -> SdkConfig {
    let retry = if settings.max_attempts == 0 {
        RetryConfig::disabled()
    } else {
        RetryConfig::adaptive().with_max_attempts(settings.max_attempts)
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(retry);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_iam::config::Credentials::new(
            key.clone(),
            secret.clone(),
            None,
            None,
            "autoguardrails-static",
        ));
    }
    loader.load().await
}

/// An SDK error as the traits report it (for the other AWS adapters of this module tree).
pub(crate) fn map_error<E, R>(op: Operation, e: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    map_err(op, e)
}

fn map_err<E, R>(op: Operation, e: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(_) => {
            let code = e
                .code()
                .map(ErrorCode::from_aws_code)
                .unwrap_or_else(|| ErrorCode::Other("Unknown".to_string()));
            let message = e.message().unwrap_or_default().to_string();
            AwsError::new(op, code, message)
        }
        _ => AwsError::new(
            op,
            ErrorCode::Transport,
            DisplayErrorContext(&e).to_string(),
        ),
    }
}

/// Notes the AWS request id of a write's answer, or of its error when AWS gave one, for the
/// audit record of the write (decision 234).
trait Noted: Sized {
    fn noted(self) -> Self;
}

impl<O, E> Noted for Result<O, SdkError<E>>
where
    O: RequestId,
{
    fn noted(self) -> Self {
        match &self {
            Ok(output) => note_request_id(output.request_id()),
            Err(error) => note_request_id(error.request_id()),
        }
        self
    }
}

fn missing(op: Operation, what: &str) -> AwsError {
    AwsError::new(
        op,
        ErrorCode::Other("IncompleteResponse".to_string()),
        format!("response has no {what}"),
    )
}

fn to_sdk_tags(op: Operation, tags: &[Tag]) -> AwsResult<Vec<aws_sdk_iam::types::Tag>> {
    tags.iter()
        .map(|t| {
            aws_sdk_iam::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
                .map_err(|e| AwsError::new(op, ErrorCode::InvalidInput, e.to_string()))
        })
        .collect()
}

fn from_sdk_tags(tags: &[aws_sdk_iam::types::Tag]) -> Vec<Tag> {
    tags.iter().map(|t| Tag::new(t.key(), t.value())).collect()
}

fn to_policy(op: Operation, p: &aws_sdk_iam::types::Policy) -> AwsResult<ManagedPolicy> {
    Ok(ManagedPolicy {
        arn: p
            .arn()
            .ok_or_else(|| missing(op, "policy ARN"))?
            .to_string(),
        name: p
            .policy_name()
            .ok_or_else(|| missing(op, "policy name"))?
            .to_string(),
        path: p.path().unwrap_or("/").to_string(),
        default_version_id: p.default_version_id().unwrap_or_default().to_string(),
        tags: from_sdk_tags(p.tags()),
    })
}

/// IAM over the official SDK.
#[derive(Debug, Clone)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
    limiter: Option<Arc<RateLimiter>>,
}

impl SdkIam {
    /// An IAM client from an SDK configuration and an optional shared rate limiter.
    pub fn new(config: &SdkConfig, limiter: Option<Arc<RateLimiter>>) -> Self {
        SdkIam {
            client: aws_sdk_iam::Client::new(config),
            limiter,
        }
    }

    async fn limit(&self) {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
    }
}

#[async_trait]
impl Iam for SdkIam {
    #[tracing::instrument(level = "debug", skip(self, document, tags), err(level = "debug"))]
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        document: &str,
        tags: &[Tag],
    ) -> AwsResult<ManagedPolicy> {
        let op = Operation::CreatePolicy;
        self.limit().await;
        let out = self
            .client
            .create_policy()
            .policy_name(name)
            .path(path)
            .policy_document(document)
            .set_tags(Some(to_sdk_tags(op, tags)?))
            .send()
            .await
            .noted()
            .map_err(|e| map_err(op, e))?;
        to_policy(op, out.policy().ok_or_else(|| missing(op, "policy"))?)
    }

    #[tracing::instrument(level = "debug", skip(self, tags), err(level = "debug"))]
    async fn tag_policy(&self, policy_arn: &str, tags: &[Tag]) -> AwsResult<()> {
        let op = Operation::TagPolicy;
        self.limit().await;
        self.client
            .tag_policy()
            .policy_arn(policy_arn)
            .set_tags(Some(to_sdk_tags(op, tags)?))
            .send()
            .await
            .noted()
            .map_err(|e| map_err(op, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_policy(&self, policy_arn: &str) -> AwsResult<ManagedPolicy> {
        let op = Operation::GetPolicy;
        self.limit().await;
        let out = self
            .client
            .get_policy()
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| map_err(op, e))?;
        to_policy(op, out.policy().ok_or_else(|| missing(op, "policy"))?)
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn list_policies(&self, path_prefix: &str) -> AwsResult<Vec<ManagedPolicy>> {
        let op = Operation::ListPolicies;
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let out = self
                .client
                .list_policies()
                .scope(PolicyScopeType::Local)
                .path_prefix(path_prefix)
                .max_items(1000)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_err(op, e))?;
            for p in out.policies() {
                all.push(to_policy(op, p)?);
            }
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(all),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn list_policy_tags(&self, policy_arn: &str) -> AwsResult<Vec<Tag>> {
        let op = Operation::ListPolicyTags;
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let out = self
                .client
                .list_policy_tags()
                .policy_arn(policy_arn)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_err(op, e))?;
            all.extend(from_sdk_tags(out.tags()));
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(all),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> AwsResult<PolicyVersion> {
        let op = Operation::GetPolicyVersion;
        self.limit().await;
        let out = self
            .client
            .get_policy_version()
            .policy_arn(policy_arn)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| map_err(op, e))?;
        let v = out
            .policy_version()
            .ok_or_else(|| missing(op, "policy version"))?;
        Ok(PolicyVersion {
            version_id: v.version_id().unwrap_or(version_id).to_string(),
            is_default: v.is_default_version(),
            document: v.document().map(decode_policy_document),
        })
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn list_policy_versions(&self, policy_arn: &str) -> AwsResult<Vec<PolicyVersion>> {
        let op = Operation::ListPolicyVersions;
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let out = self
                .client
                .list_policy_versions()
                .policy_arn(policy_arn)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_err(op, e))?;
            for v in out.versions() {
                all.push(PolicyVersion {
                    version_id: v
                        .version_id()
                        .ok_or_else(|| missing(op, "version id"))?
                        .to_string(),
                    is_default: v.is_default_version(),
                    document: None,
                });
            }
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(all),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self, document), err(level = "debug"))]
    async fn create_policy_version(
        &self,
        policy_arn: &str,
        document: &str,
        set_as_default: bool,
    ) -> AwsResult<PolicyVersion> {
        let op = Operation::CreatePolicyVersion;
        self.limit().await;
        let out = self
            .client
            .create_policy_version()
            .policy_arn(policy_arn)
            .policy_document(document)
            .set_as_default(set_as_default)
            .send()
            .await
            .noted()
            .map_err(|e| map_err(op, e))?;
        let v = out
            .policy_version()
            .ok_or_else(|| missing(op, "policy version"))?;
        Ok(PolicyVersion {
            version_id: v.version_id().unwrap_or_default().to_string(),
            is_default: v.is_default_version(),
            document: None,
        })
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn delete_policy_version(&self, policy_arn: &str, version_id: &str) -> AwsResult<()> {
        let op = Operation::DeletePolicyVersion;
        self.limit().await;
        self.client
            .delete_policy_version()
            .policy_arn(policy_arn)
            .version_id(version_id)
            .send()
            .await
            .noted()
            .map_err(|e| map_err(op, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn delete_policy(&self, policy_arn: &str) -> AwsResult<()> {
        let op = Operation::DeletePolicy;
        self.limit().await;
        self.client
            .delete_policy()
            .policy_arn(policy_arn)
            .send()
            .await
            .noted()
            .map_err(|e| map_err(op, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn list_entities_for_policy(&self, policy_arn: &str) -> AwsResult<PolicyEntities> {
        let op = Operation::ListEntitiesForPolicy;
        let mut all = PolicyEntities::default();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let out = self
                .client
                .list_entities_for_policy()
                .policy_arn(policy_arn)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_err(op, e))?;
            for r in out.policy_roles() {
                if let Some(name) = r.role_name() {
                    all.principals.push(PrincipalRef {
                        kind: PrincipalKind::Role,
                        name: name.to_string(),
                    });
                }
            }
            for u in out.policy_users() {
                if let Some(name) = u.user_name() {
                    all.principals.push(PrincipalRef {
                        kind: PrincipalKind::User,
                        name: name.to_string(),
                    });
                }
            }
            for g in out.policy_groups() {
                if let Some(name) = g.group_name() {
                    all.groups.push(name.to_string());
                }
            }
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(all),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn detach_group_policy(&self, group: &str, policy_arn: &str) -> AwsResult<()> {
        self.limit().await;
        self.client
            .detach_group_policy()
            .group_name(group)
            .policy_arn(policy_arn)
            .send()
            .await
            .noted()
            .map_err(|e| map_err(Operation::DetachGroupPolicy, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn attach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()> {
        self.limit().await;
        match principal.kind {
            PrincipalKind::Role => {
                self.client
                    .attach_role_policy()
                    .role_name(&principal.name)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::AttachRolePolicy, e))?;
            }
            PrincipalKind::User => {
                self.client
                    .attach_user_policy()
                    .user_name(&principal.name)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::AttachUserPolicy, e))?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn detach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()> {
        self.limit().await;
        match principal.kind {
            PrincipalKind::Role => {
                self.client
                    .detach_role_policy()
                    .role_name(&principal.name)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::DetachRolePolicy, e))?;
            }
            PrincipalKind::User => {
                self.client
                    .detach_user_policy()
                    .user_name(&principal.name)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::DetachUserPolicy, e))?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn list_attached_policies(
        &self,
        principal: &PrincipalRef,
        path_prefix: Option<&str>,
    ) -> AwsResult<Vec<AttachedPolicy>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let (items, next) = match principal.kind {
                PrincipalKind::Role => {
                    let out = self
                        .client
                        .list_attached_role_policies()
                        .role_name(&principal.name)
                        .set_path_prefix(path_prefix.map(str::to_string))
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| map_err(Operation::ListAttachedRolePolicies, e))?;
                    let next = out
                        .is_truncated()
                        .then(|| out.marker().map(str::to_string))
                        .flatten();
                    (out.attached_policies().to_vec(), next)
                }
                PrincipalKind::User => {
                    let out = self
                        .client
                        .list_attached_user_policies()
                        .user_name(&principal.name)
                        .set_path_prefix(path_prefix.map(str::to_string))
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| map_err(Operation::ListAttachedUserPolicies, e))?;
                    let next = out
                        .is_truncated()
                        .then(|| out.marker().map(str::to_string))
                        .flatten();
                    (out.attached_policies().to_vec(), next)
                }
            };
            for a in items {
                if let (Some(name), Some(arn)) = (a.policy_name(), a.policy_arn()) {
                    all.push(AttachedPolicy {
                        name: name.to_string(),
                        arn: arn.to_string(),
                    });
                }
            }
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(all),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self, document), err(level = "debug"))]
    async fn put_inline_policy(
        &self,
        principal: &PrincipalRef,
        name: &str,
        document: &str,
    ) -> AwsResult<()> {
        self.limit().await;
        match principal.kind {
            PrincipalKind::Role => {
                self.client
                    .put_role_policy()
                    .role_name(&principal.name)
                    .policy_name(name)
                    .policy_document(document)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::PutRolePolicy, e))?;
            }
            PrincipalKind::User => {
                self.client
                    .put_user_policy()
                    .user_name(&principal.name)
                    .policy_name(name)
                    .policy_document(document)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::PutUserPolicy, e))?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn delete_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<()> {
        self.limit().await;
        match principal.kind {
            PrincipalKind::Role => {
                self.client
                    .delete_role_policy()
                    .role_name(&principal.name)
                    .policy_name(name)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::DeleteRolePolicy, e))?;
            }
            PrincipalKind::User => {
                self.client
                    .delete_user_policy()
                    .user_name(&principal.name)
                    .policy_name(name)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::DeleteUserPolicy, e))?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<String> {
        self.limit().await;
        let document = match principal.kind {
            PrincipalKind::Role => self
                .client
                .get_role_policy()
                .role_name(&principal.name)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| map_err(Operation::GetRolePolicy, e))?
                .policy_document()
                .to_string(),
            PrincipalKind::User => self
                .client
                .get_user_policy()
                .user_name(&principal.name)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| map_err(Operation::GetUserPolicy, e))?
                .policy_document()
                .to_string(),
        };
        Ok(decode_policy_document(&document))
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn list_inline_policies(&self, principal: &PrincipalRef) -> AwsResult<Vec<String>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let (names, next) = match principal.kind {
                PrincipalKind::Role => {
                    let out = self
                        .client
                        .list_role_policies()
                        .role_name(&principal.name)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| map_err(Operation::ListRolePolicies, e))?;
                    let next = out
                        .is_truncated()
                        .then(|| out.marker().map(str::to_string))
                        .flatten();
                    (out.policy_names().to_vec(), next)
                }
                PrincipalKind::User => {
                    let out = self
                        .client
                        .list_user_policies()
                        .user_name(&principal.name)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| map_err(Operation::ListUserPolicies, e))?;
                    let next = out
                        .is_truncated()
                        .then(|| out.marker().map(str::to_string))
                        .flatten();
                    (out.policy_names().to_vec(), next)
                }
            };
            all.extend(names);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(all),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_account_summary(&self) -> AwsResult<AccountSummary> {
        let op = Operation::GetAccountSummary;
        self.limit().await;
        let out = self
            .client
            .get_account_summary()
            .send()
            .await
            .map_err(|e| map_err(op, e))?;
        let map = out.summary_map().ok_or_else(|| missing(op, "SummaryMap"))?;
        let get = |k: SummaryKeyType, default: u32| {
            map.get(&k)
                .and_then(|v| u32::try_from(*v).ok())
                .unwrap_or(default)
        };
        Ok(AccountSummary {
            attached_policies_per_role_quota: get(SummaryKeyType::AttachedPoliciesPerRoleQuota, 10),
            attached_policies_per_user_quota: get(SummaryKeyType::AttachedPoliciesPerUserQuota, 10),
            versions_per_policy_quota: get(SummaryKeyType::PolicyVersionsInUseQuota, 5).min(5),
        })
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_permissions_boundary(
        &self,
        principal: &PrincipalRef,
    ) -> AwsResult<Option<String>> {
        self.limit().await;
        let boundary = match principal.kind {
            PrincipalKind::Role => {
                let op = Operation::GetRole;
                let out = self
                    .client
                    .get_role()
                    .role_name(&principal.name)
                    .send()
                    .await
                    .map_err(|e| map_err(op, e))?;
                out.role()
                    .ok_or_else(|| missing(op, "role"))?
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_string)
            }
            PrincipalKind::User => {
                let op = Operation::GetUser;
                let out = self
                    .client
                    .get_user()
                    .user_name(&principal.name)
                    .send()
                    .await
                    .map_err(|e| map_err(op, e))?;
                out.user()
                    .ok_or_else(|| missing(op, "user"))?
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_string)
            }
        };
        Ok(boundary)
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn put_permissions_boundary(
        &self,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> AwsResult<()> {
        self.limit().await;
        match principal.kind {
            PrincipalKind::Role => {
                self.client
                    .put_role_permissions_boundary()
                    .role_name(&principal.name)
                    .permissions_boundary(policy_arn)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::PutRolePermissionsBoundary, e))?;
            }
            PrincipalKind::User => {
                self.client
                    .put_user_permissions_boundary()
                    .user_name(&principal.name)
                    .permissions_boundary(policy_arn)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::PutUserPermissionsBoundary, e))?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn delete_permissions_boundary(&self, principal: &PrincipalRef) -> AwsResult<()> {
        self.limit().await;
        match principal.kind {
            PrincipalKind::Role => {
                self.client
                    .delete_role_permissions_boundary()
                    .role_name(&principal.name)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::DeleteRolePermissionsBoundary, e))?;
            }
            PrincipalKind::User => {
                self.client
                    .delete_user_permissions_boundary()
                    .user_name(&principal.name)
                    .send()
                    .await
                    .noted()
                    .map_err(|e| map_err(Operation::DeleteUserPermissionsBoundary, e))?;
            }
        }
        Ok(())
    }
}

/// STS over the official SDK.
#[derive(Debug, Clone)]
pub struct SdkSts {
    client: aws_sdk_sts::Client,
}

impl SdkSts {
    /// An STS client from an SDK configuration.
    pub fn new(config: &SdkConfig) -> Self {
        SdkSts {
            client: aws_sdk_sts::Client::new(config),
        }
    }
}

#[async_trait]
impl Sts for SdkSts {
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_caller_identity(&self) -> AwsResult<CallerIdentity> {
        let op = Operation::GetCallerIdentity;
        let out = self
            .client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| map_err(op, e))?;
        Ok(CallerIdentity {
            account_id: out
                .account()
                .ok_or_else(|| missing(op, "Account"))?
                .to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        })
    }

    #[tracing::instrument(level = "debug", skip(self, external_id), err(level = "debug"))]
    async fn assume_role(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
    ) -> AwsResult<TemporaryCredentials> {
        let op = Operation::AssumeRole;
        let out = self
            .client
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .set_external_id(external_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err(op, e))?;
        let c = out
            .credentials()
            .ok_or_else(|| missing(op, "Credentials"))?;
        Ok(TemporaryCredentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().to_string(),
            expires_epoch_seconds: c.expiration().secs(),
        })
    }
}

/// How to reach one account: the role to assume there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRole {
    /// Role ARN in the target account.
    pub role_arn: String,
    /// External id required by the role's trust policy.
    pub external_id: Option<String>,
    /// Session name (shows in CloudTrail).
    pub session_name: String,
}

/// `ClientFactory` over the SDK: configured accounts use a cached, auto-refreshing `AssumeRole`
/// credentials provider; other accounts use ambient credentials only when the ambient identity
/// is in that account (checked once with `GetCallerIdentity`), else `UnknownAccount`.
pub struct SdkClientFactory {
    base: SdkConfig,
    settings: SdkSettings,
    accounts: BTreeMap<String, AccountRole>,
    clients: Mutex<HashMap<String, Arc<dyn Iam>>>,
    /// One token bucket per account, shared by its IAM and listing clients.
    limiters: Mutex<HashMap<String, Option<Arc<RateLimiter>>>>,
    directories: Mutex<HashMap<String, Arc<dyn super::directory::Directory>>>,
    organization_role: Option<AccountRole>,
    ambient_account: Mutex<Option<String>>,
}

impl SdkClientFactory {
    /// A factory over a base configuration (see [`load_base_config`]) and per-account roles.
    pub fn new(
        base: SdkConfig,
        settings: SdkSettings,
        accounts: BTreeMap<String, AccountRole>,
    ) -> Self {
        SdkClientFactory {
            base,
            settings,
            accounts,
            clients: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
            directories: Mutex::new(HashMap::new()),
            organization_role: None,
            ambient_account: Mutex::new(None),
        }
    }

    /// The same factory, reading AWS Organizations with `role` (in the management or a delegated
    /// administrator account) instead of the ambient identity.
    pub fn with_organization_role(mut self, role: Option<AccountRole>) -> Self {
        self.organization_role = role;
        self
    }

    /// The account's token bucket (one per account, shared by its clients).
    async fn limiter(&self, account_id: &str) -> Option<Arc<RateLimiter>> {
        self.limiters
            .lock()
            .await
            .entry(account_id.to_string())
            .or_insert_with(|| {
                self.settings
                    .rate_limit
                    .map(|(rate, burst)| Arc::new(RateLimiter::new(rate, burst)))
            })
            .clone()
    }

    /// The base configuration with `role`'s assumed credentials (refreshed by the SDK).
    async fn assumed(&self, role: &AccountRole) -> SdkConfig {
        let mut builder =
            AssumeRoleProvider::builder(role.role_arn.clone()).session_name(&role.session_name);
        if let Some(ext) = &role.external_id {
            builder = builder.external_id(ext);
        }
        let provider = builder.configure(&self.base).build().await;
        self.base
            .to_builder()
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build()
    }

    /// The ambient identity's account id (cached after the first successful call).
    pub async fn ambient_account(&self) -> Result<String, AwsError> {
        let mut cached = self.ambient_account.lock().await;
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let id = SdkSts::new(&self.base).get_caller_identity().await?;
        *cached = Some(id.account_id.clone());
        Ok(id.account_id)
    }

    /// The base configuration every client starts from: region, endpoint URL (a local AWS
    /// endpoint in tests), retries and ambient credentials, as configured.
    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// The SSM client (Slack webhooks in SecureString parameters), from the base configuration
    /// so it honours the endpoint URL and credentials the rest of the controller uses; `region`
    /// overrides only the region.
    pub fn ssm(&self, region: Option<&str>) -> aws_sdk_ssm::Client {
        let mut builder = aws_sdk_ssm::config::Builder::from(&self.base);
        if let Some(region) = region {
            builder = builder.region(Region::new(region.to_string()));
        }
        aws_sdk_ssm::Client::from_conf(builder.build())
    }

    /// The DynamoDB client of the audit table (see [`super::factory::dynamodb_client`]).
    pub fn dynamodb(
        &self,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> aws_sdk_dynamodb::Client {
        super::factory::dynamodb_client(&self.base, region, endpoint_url)
    }

    /// The Cost Explorer client (the controller's anomaly poller, the gate's observed spend),
    /// from the base configuration.
    pub fn cost_explorer(&self) -> aws_sdk_costexplorer::Client {
        aws_sdk_costexplorer::Client::new(&self.base)
    }

    /// A factory for a part that reads one account with the ambient (or configured static)
    /// credentials: the gate and the analyzer. No per-account roles.
    pub async fn ambient(settings: SdkSettings) -> Self {
        let base = load_base_config(&settings).await;
        SdkClientFactory::new(base, settings, BTreeMap::new())
    }

    /// An IAM client with the base credentials (the analyzer reads the role's current policies).
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.base)
    }

    /// A CloudTrail client for one region, SDK retries off (the analyzer's scan paces and
    /// retries its own `LookupEvents` calls); `endpoint_url` overrides CloudTrail's endpoint only.
    pub fn cloudtrail(
        &self,
        region: &str,
        endpoint_url: Option<&str>,
    ) -> aws_sdk_cloudtrail::Client {
        let mut builder = aws_sdk_cloudtrail::config::Builder::from(&self.base)
            .region(Region::new(region.to_string()))
            .retry_config(RetryConfig::disabled());
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_cloudtrail::Client::from_conf(builder.build())
    }

    /// The Account client (`ListRegions`); `endpoint_url` overrides its endpoint only.
    pub fn account(&self, endpoint_url: Option<&str>) -> aws_sdk_account::Client {
        let mut builder = aws_sdk_account::config::Builder::from(&self.base);
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_account::Client::from_conf(builder.build())
    }

    /// The S3 client (CloudTrail log files); path-style addressing when the endpoint is
    /// overridden (a local S3 has no per-bucket host names).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let mut builder = aws_sdk_s3::config::Builder::from(&self.base);
        if self.base.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// The Athena client (organisation-wide CloudTrail queries).
    pub fn athena(&self) -> aws_sdk_athena::Client {
        aws_sdk_athena::Client::new(&self.base)
    }

    /// The Bedrock runtime client (the analyzer's optional model); `endpoint_url` overrides
    /// its endpoint only.
    pub fn bedrock_runtime(&self, endpoint_url: Option<&str>) -> aws_sdk_bedrockruntime::Client {
        let mut builder = aws_sdk_bedrockruntime::config::Builder::from(&self.base);
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_bedrockruntime::Client::from_conf(builder.build())
    }

    /// The SDK configuration used for an account (assumed-role credentials when configured).
    pub async fn config_for(&self, account_id: &str) -> Result<SdkConfig, FactoryError> {
        if let Some(role) = self.accounts.get(account_id) {
            let in_account = crate::principal::PrincipalArn::parse_kind(
                &role.role_arn,
                crate::principal::PrincipalKind::Role,
            )
            .map_err(|e| FactoryError::Config {
                account_id: account_id.to_string(),
                message: format!("assume-role: {e}"),
            })?;
            if in_account.account_id() != account_id {
                return Err(FactoryError::Config {
                    account_id: account_id.to_string(),
                    message: format!("role {} is not in account {account_id}", role.role_arn),
                });
            }
            // The SDK's identity cache refreshes assumed credentials before they expire.
            return Ok(self.assumed(role).await);
        }
        let ambient = self
            .ambient_account()
            .await
            .map_err(|source| FactoryError::Credentials {
                account_id: account_id.to_string(),
                source,
            })?;
        if ambient == account_id {
            Ok(self.base.clone())
        } else {
            Err(FactoryError::UnknownAccount {
                account_id: account_id.to_string(),
                ambient_account: ambient,
            })
        }
    }
}

#[async_trait]
impl ClientFactory for SdkClientFactory {
    async fn iam_for(&self, account_id: &str) -> Result<Arc<dyn Iam>, FactoryError> {
        if let Some(c) = self.clients.lock().await.get(account_id) {
            return Ok(c.clone());
        }
        let config = self.config_for(account_id).await?;
        let limiter = self.limiter(account_id).await;
        let client: Arc<dyn Iam> = Arc::new(SdkIam::new(&config, limiter));
        self.clients
            .lock()
            .await
            .insert(account_id.to_string(), client.clone());
        Ok(client)
    }

    async fn directory_for(
        &self,
        account_id: &str,
    ) -> Result<Arc<dyn super::directory::Directory>, FactoryError> {
        if let Some(d) = self.directories.lock().await.get(account_id) {
            return Ok(d.clone());
        }
        let config = self.config_for(account_id).await?;
        let limiter = self.limiter(account_id).await;
        let directory: Arc<dyn super::directory::Directory> =
            Arc::new(super::directory::SdkDirectory::new(&config, limiter));
        self.directories
            .lock()
            .await
            .insert(account_id.to_string(), directory.clone());
        Ok(directory)
    }

    async fn organization(&self) -> Result<Arc<dyn super::directory::Organization>, FactoryError> {
        let config = match &self.organization_role {
            Some(role) => self.assumed(role).await,
            None => self.base.clone(),
        };
        Ok(Arc::new(super::directory::SdkOrganization::new(&config)))
    }
}
