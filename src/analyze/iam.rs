//! The principal's current permissions read from IAM through a narrow, read-only trait (GetRole,
//! GetUser, List/Get inline policies, ListAttached*Policies, GetPolicy, GetPolicyVersion,
//! ListGroupsForUser) and its SDK implementation. It has no write call and must not evaluate the
//! policies (that is `permissions`).

use async_trait::async_trait;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata};

use super::permissions::{Permissions, PermissionsError, Policy, PolicySource};
use crate::aws::iam::decode_policy_document;
use crate::principal::{PrincipalArn, PrincipalKind};

/// Why permissions could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IamReadError {
    /// A call failed.
    #[error("failed to read {what} of {principal}: {message}")]
    Call {
        /// The call.
        what: &'static str,
        /// The principal or policy.
        principal: String,
        /// Why.
        message: String,
    },
    /// A document does not parse.
    #[error(transparent)]
    Document(#[from] PermissionsError),
    /// Groups cannot be analysed.
    #[error("{0} is not a role or a user")]
    Kind(String),
}

impl IamReadError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            IamReadError::Call { message, .. } if message.contains("AccessDenied") => {
                "AccessDenied"
            }
            IamReadError::Call { .. } => "Iam",
            IamReadError::Document(e) => e.category(),
            IamReadError::Kind(_) => "Invalid",
        }
    }
}

/// Whose policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// A role by name.
    Role(&'a str),
    /// A user by name.
    User(&'a str),
    /// A group by name.
    Group(&'a str),
}

impl Owner<'_> {
    fn name(&self) -> &str {
        match self {
            Owner::Role(n) | Owner::User(n) | Owner::Group(n) => n,
        }
    }
}

/// What GetRole/GetUser say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerInfo {
    /// Creation date (RFC 3339).
    pub created: Option<String>,
    /// Permissions boundary policy ARN.
    pub boundary: Option<String>,
}

/// The IAM reads the analyzer makes (read-only).
#[async_trait]
pub trait IamReader: Send + Sync {
    /// GetRole / GetUser (groups: nothing).
    async fn info(&self, owner: Owner<'_>) -> Result<OwnerInfo, IamReadError>;
    /// List{Role,User,Group}Policies.
    async fn inline_names(&self, owner: Owner<'_>) -> Result<Vec<String>, IamReadError>;
    /// Get{Role,User,Group}Policy (URL-decoded document).
    async fn inline_document(&self, owner: Owner<'_>, name: &str) -> Result<String, IamReadError>;
    /// ListAttached{Role,User,Group}Policies (ARNs).
    async fn attached(&self, owner: Owner<'_>) -> Result<Vec<String>, IamReadError>;
    /// GetPolicy + GetPolicyVersion of the default version (URL-decoded document).
    async fn managed_document(&self, arn: &str) -> Result<String, IamReadError>;
    /// ListGroupsForUser (names).
    async fn groups(&self, user: &str) -> Result<Vec<String>, IamReadError>;
}

/// Reads every policy that applies to the principal: inline and attached policies, a user's
/// groups' policies, and the permissions boundary. Returns them with the creation date.
pub async fn read_permissions(
    reader: &dyn IamReader,
    principal: &PrincipalArn,
) -> Result<(Permissions, Option<String>), IamReadError> {
    let owner = match principal.kind() {
        PrincipalKind::Role | PrincipalKind::AssumedRole => Owner::Role(principal.name()),
        PrincipalKind::User => Owner::User(principal.name()),
        PrincipalKind::Group => return Err(IamReadError::Kind(principal.to_string())),
    };
    let info = reader.info(owner).await?;
    let mut owners = vec![(owner, "")];
    let groups = if let Owner::User(name) = owner {
        reader.groups(name).await?
    } else {
        Vec::new()
    };
    for g in &groups {
        owners.push((Owner::Group(g), "group-"));
    }
    let mut policies = Vec::new();
    for (owner, prefix) in owners {
        let mut names = reader.inline_names(owner).await?;
        names.sort();
        for name in names {
            let text = reader.inline_document(owner, &name).await?;
            policies.push(Policy::parse(
                PolicySource {
                    kind: format!("{prefix}inline"),
                    name: format!("{}/{name}", owner.name()),
                },
                &text,
            )?);
        }
        let mut arns = reader.attached(owner).await?;
        arns.sort();
        for arn in arns {
            let text = reader.managed_document(&arn).await?;
            policies.push(Policy::parse(
                PolicySource {
                    kind: format!("{prefix}managed"),
                    name: arn,
                },
                &text,
            )?);
        }
    }
    let boundary = match &info.boundary {
        Some(arn) => Some(Policy::parse(
            PolicySource {
                kind: "boundary".into(),
                name: arn.clone(),
            },
            &reader.managed_document(arn).await?,
        )?),
        None => None,
    };
    Ok((Permissions { policies, boundary }, info.created))
}

/// The SDK implementation.
pub struct SdkIamReader {
    client: aws_sdk_iam::Client,
}

impl SdkIamReader {
    /// Over a client from the shared factory (`SdkClientFactory::iam`).
    pub fn new(client: aws_sdk_iam::Client) -> SdkIamReader {
        SdkIamReader { client }
    }
}

fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &'static str,
    principal: &str,
    e: &aws_sdk_iam::error::SdkError<E>,
) -> IamReadError {
    IamReadError::Call {
        what,
        principal: principal.to_string(),
        message: match e.code() {
            Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
            None => DisplayErrorContext(e).to_string(),
        },
    }
}

fn time(t: &aws_sdk_iam::primitives::DateTime) -> Option<String> {
    jiff::Timestamp::from_second(t.secs())
        .ok()
        .map(|t| t.to_string())
}

#[async_trait]
impl IamReader for SdkIamReader {
    async fn info(&self, owner: Owner<'_>) -> Result<OwnerInfo, IamReadError> {
        match owner {
            Owner::Role(name) => {
                let out = self
                    .client
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| err("GetRole", name, &e))?;
                let role = out.role();
                Ok(OwnerInfo {
                    created: role.and_then(|r| time(r.create_date())),
                    boundary: role
                        .and_then(|r| r.permissions_boundary())
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_string),
                })
            }
            Owner::User(name) => {
                let out = self
                    .client
                    .get_user()
                    .user_name(name)
                    .send()
                    .await
                    .map_err(|e| err("GetUser", name, &e))?;
                let user = out.user();
                Ok(OwnerInfo {
                    created: user.and_then(|u| time(u.create_date())),
                    boundary: user
                        .and_then(|u| u.permissions_boundary())
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_string),
                })
            }
            Owner::Group(_) => Ok(OwnerInfo::default()),
        }
    }

    async fn inline_names(&self, owner: Owner<'_>) -> Result<Vec<String>, IamReadError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let (names, next) = match owner {
                Owner::Role(n) => {
                    let r = self
                        .client
                        .list_role_policies()
                        .role_name(n)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| err("ListRolePolicies", n, &e))?;
                    (r.policy_names().to_vec(), r.marker().map(str::to_string))
                }
                Owner::User(n) => {
                    let r = self
                        .client
                        .list_user_policies()
                        .user_name(n)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| err("ListUserPolicies", n, &e))?;
                    (r.policy_names().to_vec(), r.marker().map(str::to_string))
                }
                Owner::Group(n) => {
                    let r = self
                        .client
                        .list_group_policies()
                        .group_name(n)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| err("ListGroupPolicies", n, &e))?;
                    (r.policy_names().to_vec(), r.marker().map(str::to_string))
                }
            };
            out.extend(names);
            marker = next;
            if marker.is_none() {
                return Ok(out);
            }
        }
    }

    async fn inline_document(&self, owner: Owner<'_>, name: &str) -> Result<String, IamReadError> {
        let document = match owner {
            Owner::Role(n) => self
                .client
                .get_role_policy()
                .role_name(n)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| err("GetRolePolicy", n, &e))?
                .policy_document
                .clone(),
            Owner::User(n) => self
                .client
                .get_user_policy()
                .user_name(n)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| err("GetUserPolicy", n, &e))?
                .policy_document
                .clone(),
            Owner::Group(n) => self
                .client
                .get_group_policy()
                .group_name(n)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| err("GetGroupPolicy", n, &e))?
                .policy_document
                .clone(),
        };
        Ok(decode_policy_document(&document))
    }

    async fn attached(&self, owner: Owner<'_>) -> Result<Vec<String>, IamReadError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let (policies, next) = match owner {
                Owner::Role(n) => {
                    let r = self
                        .client
                        .list_attached_role_policies()
                        .role_name(n)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| err("ListAttachedRolePolicies", n, &e))?;
                    (
                        r.attached_policies().to_vec(),
                        r.marker().map(str::to_string),
                    )
                }
                Owner::User(n) => {
                    let r = self
                        .client
                        .list_attached_user_policies()
                        .user_name(n)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| err("ListAttachedUserPolicies", n, &e))?;
                    (
                        r.attached_policies().to_vec(),
                        r.marker().map(str::to_string),
                    )
                }
                Owner::Group(n) => {
                    let r = self
                        .client
                        .list_attached_group_policies()
                        .group_name(n)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| err("ListAttachedGroupPolicies", n, &e))?;
                    (
                        r.attached_policies().to_vec(),
                        r.marker().map(str::to_string),
                    )
                }
            };
            out.extend(
                policies
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            marker = next;
            if marker.is_none() {
                return Ok(out);
            }
        }
    }

    async fn managed_document(&self, arn: &str) -> Result<String, IamReadError> {
        let policy = self
            .client
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| err("GetPolicy", arn, &e))?;
        let version = policy
            .policy()
            .and_then(|p| p.default_version_id())
            .ok_or_else(|| IamReadError::Call {
                what: "GetPolicy",
                principal: arn.to_string(),
                message: "no default version".into(),
            })?
            .to_string();
        let out = self
            .client
            .get_policy_version()
            .policy_arn(arn)
            .version_id(&version)
            .send()
            .await
            .map_err(|e| err("GetPolicyVersion", arn, &e))?;
        let document = out
            .policy_version()
            .and_then(|v| v.document())
            .ok_or_else(|| IamReadError::Call {
                what: "GetPolicyVersion",
                principal: arn.to_string(),
                message: "no document".into(),
            })?;
        Ok(decode_policy_document(document))
    }

    async fn groups(&self, user: &str) -> Result<Vec<String>, IamReadError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let r = self
                .client
                .list_groups_for_user()
                .user_name(user)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| err("ListGroupsForUser", user, &e))?;
            out.extend(r.groups().iter().map(|g| g.group_name().to_string()));
            marker = r.marker().map(str::to_string);
            if marker.is_none() {
                return Ok(out);
            }
        }
    }
}
