//! Listing IAM roles and users and the accounts of an Organizations OU, for scope selectors:
//! two narrow traits with exactly the calls used (`ListRoles`/`ListUsers` with a path prefix,
//! `ListRoleTags`/`ListUserTags`, `ListChildren`/`ListAccountsForParent`), the SDK
//! implementations (paginated, through the per-account rate limiter) and in-memory ones with a
//! call counter and fault injection. Reads only; it decides nothing about who matches (that is
//! `crate::controller::policy::selectors`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::iam::{AwsError, AwsResult, ErrorCode, Operation, PrincipalKind};
use super::ratelimit::RateLimiter;

/// One role or user as `ListRoles`/`ListUsers` return it (no tags: IAM does not list them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPrincipal {
    /// Role or user.
    pub kind: PrincipalKind,
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its path (`/` when none).
    pub path: String,
}

/// The IAM reads of one account that selectors need.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Every role or user whose path starts with `path_prefix` (`/` for all), all pages.
    async fn list_principals(
        &self,
        kind: PrincipalKind,
        path_prefix: &str,
    ) -> AwsResult<Vec<ListedPrincipal>>;
    /// The tags of one role or user, by name, all pages.
    async fn principal_tags(
        &self,
        kind: PrincipalKind,
        name: &str,
    ) -> AwsResult<BTreeMap<String, String>>;
}

/// The Organizations reads selectors need (in the management or delegated administrator account).
#[async_trait]
pub trait Organization: Send + Sync {
    /// The OUs directly under `parent_id` (a root or an OU), all pages.
    async fn child_units(&self, parent_id: &str) -> AwsResult<Vec<String>>;
    /// The ids of the ACTIVE accounts directly under `parent_id`, all pages.
    async fn active_accounts(&self, parent_id: &str) -> AwsResult<Vec<String>>;
}

/// Every active account under `parent_id`, its OUs included, sorted. At most `max_units` OUs are
/// visited (a guard against a cycle in a faulty answer).
pub async fn accounts_under(
    organization: &dyn Organization,
    parent_id: &str,
    max_units: usize,
) -> AwsResult<Vec<String>> {
    let mut accounts = Vec::new();
    let mut pending = vec![parent_id.to_string()];
    let mut visited = 0usize;
    while let Some(parent) = pending.pop() {
        visited += 1;
        if visited > max_units {
            return Err(AwsError::new(
                Operation::ListChildren,
                ErrorCode::Other("TooManyUnits".into()),
                format!("more than {max_units} organizational units under {parent_id}"),
            ));
        }
        accounts.extend(organization.active_accounts(&parent).await?);
        pending.extend(organization.child_units(&parent).await?);
    }
    accounts.sort();
    accounts.dedup();
    Ok(accounts)
}

// ---------------------------------------------------------------------------------------------
// SDK implementations

/// IAM listing over the SDK, sharing the account's rate limiter with its enforcement client.
#[derive(Debug, Clone)]
pub struct SdkDirectory {
    client: aws_sdk_iam::Client,
    limiter: Option<Arc<RateLimiter>>,
}

impl SdkDirectory {
    /// A directory from an SDK configuration and the account's rate limiter.
    pub fn new(config: &aws_config::SdkConfig, limiter: Option<Arc<RateLimiter>>) -> Self {
        SdkDirectory {
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
impl Directory for SdkDirectory {
    async fn list_principals(
        &self,
        kind: PrincipalKind,
        path_prefix: &str,
    ) -> AwsResult<Vec<ListedPrincipal>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let (items, truncated, next) = match kind {
                PrincipalKind::Role => {
                    let op = Operation::ListRoles;
                    let out = self
                        .client
                        .list_roles()
                        .path_prefix(path_prefix)
                        .max_items(1000)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| super::sdk::map_error(op, e))?;
                    let items: Vec<ListedPrincipal> = out
                        .roles()
                        .iter()
                        .map(|r| ListedPrincipal {
                            kind,
                            arn: r.arn().to_string(),
                            name: r.role_name().to_string(),
                            path: r.path().to_string(),
                        })
                        .collect();
                    (items, out.is_truncated(), out.marker().map(str::to_string))
                }
                PrincipalKind::User => {
                    let op = Operation::ListUsers;
                    let out = self
                        .client
                        .list_users()
                        .path_prefix(path_prefix)
                        .max_items(1000)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| super::sdk::map_error(op, e))?;
                    let items: Vec<ListedPrincipal> = out
                        .users()
                        .iter()
                        .map(|u| ListedPrincipal {
                            kind,
                            arn: u.arn().to_string(),
                            name: u.user_name().to_string(),
                            path: u.path().to_string(),
                        })
                        .collect();
                    (items, out.is_truncated(), out.marker().map(str::to_string))
                }
            };
            all.extend(items);
            match (truncated, next) {
                (true, Some(m)) => marker = Some(m),
                _ => return Ok(all),
            }
        }
    }

    async fn principal_tags(
        &self,
        kind: PrincipalKind,
        name: &str,
    ) -> AwsResult<BTreeMap<String, String>> {
        let mut all = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            self.limit().await;
            let (tags, truncated, next) = match kind {
                PrincipalKind::Role => {
                    let op = Operation::ListRoleTags;
                    let out = self
                        .client
                        .list_role_tags()
                        .role_name(name)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| super::sdk::map_error(op, e))?;
                    let tags: Vec<(String, String)> = out
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect();
                    (tags, out.is_truncated(), out.marker().map(str::to_string))
                }
                PrincipalKind::User => {
                    let op = Operation::ListUserTags;
                    let out = self
                        .client
                        .list_user_tags()
                        .user_name(name)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| super::sdk::map_error(op, e))?;
                    let tags: Vec<(String, String)> = out
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect();
                    (tags, out.is_truncated(), out.marker().map(str::to_string))
                }
            };
            all.extend(tags);
            match (truncated, next) {
                (true, Some(m)) => marker = Some(m),
                _ => return Ok(all),
            }
        }
    }
}

/// Organizations over the SDK.
#[derive(Debug, Clone)]
pub struct SdkOrganization {
    client: aws_sdk_organizations::Client,
}

impl SdkOrganization {
    /// An Organizations client from an SDK configuration (the organization role's credentials).
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        SdkOrganization {
            client: aws_sdk_organizations::Client::new(config),
        }
    }
}

#[async_trait]
impl Organization for SdkOrganization {
    async fn child_units(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        let op = Operation::ListChildren;
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_children()
                .parent_id(parent_id)
                .child_type(aws_sdk_organizations::types::ChildType::OrganizationalUnit)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| super::sdk::map_error(op, e))?;
            all.extend(
                out.children()
                    .iter()
                    .filter_map(|c| c.id().map(str::to_string)),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(all),
            }
        }
    }

    async fn active_accounts(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        let op = Operation::ListAccountsForParent;
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_accounts_for_parent()
                .parent_id(parent_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| super::sdk::map_error(op, e))?;
            for account in out.accounts() {
                // A suspended or closing account has no principals to quarantine; its id is
                // still listed by Organizations for 90 days.
                let active = account
                    .state()
                    .is_none_or(|s| *s == aws_sdk_organizations::types::AccountState::Active)
                    && account
                        .status()
                        .is_none_or(|s| *s == aws_sdk_organizations::types::AccountStatus::Active);
                if let (true, Some(id)) = (active, account.id()) {
                    all.push(id.to_string());
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(all),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In-memory implementations

/// How many items one in-memory list call returns (as the SDK implementation asks for).
pub const PAGE_SIZE: usize = 1000;

#[derive(Default)]
struct DirectoryState {
    principals: Vec<(ListedPrincipal, BTreeMap<String, String>)>,
    calls: HashMap<Operation, u64>,
    failing: HashMap<Operation, ErrorCode>,
}

/// One account's roles and users in memory, with a call counter per operation, failures that
/// last until cleared, and an optional rate limiter (the benchmark's stand-in for IAM's rate).
#[derive(Default)]
pub struct InMemoryDirectory {
    account_id: String,
    state: Mutex<DirectoryState>,
    limiter: Option<Arc<RateLimiter>>,
}

impl InMemoryDirectory {
    /// An empty account.
    pub fn new(account_id: impl Into<String>) -> Self {
        InMemoryDirectory {
            account_id: account_id.into(),
            ..InMemoryDirectory::default()
        }
    }

    /// The same account, every call taking a token from `limiter` first.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirectoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a role or user with a path (`/` or `/a/b/`) and tags; returns its ARN.
    pub fn add(
        &self,
        kind: PrincipalKind,
        path: &str,
        name: &str,
        tags: &[(&str, &str)],
    ) -> String {
        let resource = match kind {
            PrincipalKind::Role => "role",
            PrincipalKind::User => "user",
        };
        let arn = format!("arn:aws:iam::{}:{resource}{path}{name}", self.account_id);
        self.lock().principals.push((
            ListedPrincipal {
                kind,
                arn: arn.clone(),
                name: name.to_string(),
                path: path.to_string(),
            },
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        arn
    }

    /// Makes every call of `operation` fail with `code` until [`InMemoryDirectory::clear_failures`].
    pub fn fail(&self, operation: Operation, code: ErrorCode) {
        self.lock().failing.insert(operation, code);
    }

    /// Lets every call succeed again.
    pub fn clear_failures(&self) {
        self.lock().failing.clear();
    }

    /// How many calls of `operation` were made.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.lock().calls.get(&operation).copied().unwrap_or(0)
    }

    /// How many calls were made in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().calls.values().sum()
    }

    async fn call(&self, operation: Operation) -> AwsResult<()> {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        let mut state = self.lock();
        *state.calls.entry(operation).or_insert(0) += 1;
        match state.failing.get(&operation) {
            Some(code) => Err(AwsError::new(operation, code.clone(), "injected failure")),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Directory for InMemoryDirectory {
    async fn list_principals(
        &self,
        kind: PrincipalKind,
        path_prefix: &str,
    ) -> AwsResult<Vec<ListedPrincipal>> {
        let op = match kind {
            PrincipalKind::Role => Operation::ListRoles,
            PrincipalKind::User => Operation::ListUsers,
        };
        let found: Vec<ListedPrincipal> = self
            .lock()
            .principals
            .iter()
            .filter(|(p, _)| p.kind == kind && p.path.starts_with(path_prefix))
            .map(|(p, _)| p.clone())
            .collect();
        // One call per page, at least one.
        let pages = found.len().div_ceil(PAGE_SIZE).max(1);
        for _ in 0..pages {
            self.call(op).await?;
        }
        Ok(found)
    }

    async fn principal_tags(
        &self,
        kind: PrincipalKind,
        name: &str,
    ) -> AwsResult<BTreeMap<String, String>> {
        let op = match kind {
            PrincipalKind::Role => Operation::ListRoleTags,
            PrincipalKind::User => Operation::ListUserTags,
        };
        self.call(op).await?;
        self.lock()
            .principals
            .iter()
            .find(|(p, _)| p.kind == kind && p.name.eq_ignore_ascii_case(name))
            .map(|(_, tags)| tags.clone())
            .ok_or_else(|| AwsError::new(op, ErrorCode::NoSuchEntity, format!("{name} not found")))
    }
}

/// An organization in memory: OUs and accounts under parents, with a call counter and failures.
#[derive(Default)]
pub struct InMemoryOrganization {
    units: Mutex<BTreeMap<String, Vec<String>>>,
    accounts: Mutex<BTreeMap<String, Vec<(String, bool)>>>,
    calls: Mutex<u64>,
    failing: Mutex<Option<ErrorCode>>,
}

impl InMemoryOrganization {
    /// An empty organization.
    pub fn new() -> Self {
        Self::default()
    }
    /// Puts OU `unit` under `parent`.
    pub fn add_unit(&self, parent: &str, unit: &str) {
        self.units
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(parent.to_string())
            .or_default()
            .push(unit.to_string());
    }
    /// Puts account `account_id` under `parent`, active or not.
    pub fn add_account(&self, parent: &str, account_id: &str, active: bool) {
        self.accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(parent.to_string())
            .or_default()
            .push((account_id.to_string(), active));
    }
    /// Makes every call fail with `code` (or succeed again with `None`).
    pub fn fail(&self, code: Option<ErrorCode>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = code;
    }
    /// How many calls were made.
    pub fn calls(&self) -> u64 {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn call(&self, op: Operation) -> AwsResult<()> {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        match self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(code) => Err(AwsError::new(op, code, "injected failure")),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Organization for InMemoryOrganization {
    async fn child_units(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        self.call(Operation::ListChildren)?;
        Ok(self
            .units
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(parent_id)
            .cloned()
            .unwrap_or_default())
    }
    async fn active_accounts(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        self.call(Operation::ListAccountsForParent)?;
        Ok(self
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(parent_id)
            .map(|a| {
                a.iter()
                    .filter(|(_, active)| *active)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accounts_under_walks_every_unit_and_skips_inactive_accounts() {
        let org = InMemoryOrganization::new();
        org.add_unit("r-root", "ou-root-aaaaaaaa");
        org.add_unit("ou-root-aaaaaaaa", "ou-root-bbbbbbbb");
        org.add_account("r-root", "999999999999", true);
        org.add_account("ou-root-aaaaaaaa", "111111111111", true);
        org.add_account("ou-root-aaaaaaaa", "333333333333", false);
        org.add_account("ou-root-bbbbbbbb", "222222222222", true);
        let got = accounts_under(&org, "ou-root-aaaaaaaa", 100).await;
        assert_eq!(
            got,
            Ok(vec!["111111111111".to_string(), "222222222222".to_string()])
        );
        org.fail(Some(ErrorCode::AccessDenied));
        assert!(accounts_under(&org, "ou-root-aaaaaaaa", 100).await.is_err());
    }

    #[tokio::test]
    async fn a_cycle_is_cut_off() {
        let org = InMemoryOrganization::new();
        org.add_unit("ou-a-aaaaaaaa", "ou-a-bbbbbbbb");
        org.add_unit("ou-a-bbbbbbbb", "ou-a-aaaaaaaa");
        assert!(accounts_under(&org, "ou-a-aaaaaaaa", 10).await.is_err());
    }

    #[tokio::test]
    async fn in_memory_listing_counts_one_call_per_page() {
        let dir = InMemoryDirectory::new("111111111111");
        for i in 0..2500 {
            dir.add(PrincipalKind::Role, "/ml/", &format!("r{i}"), &[]);
        }
        dir.add(PrincipalKind::Role, "/web/", "w", &[]);
        let got = dir.list_principals(PrincipalKind::Role, "/ml/").await;
        assert_eq!(got.map(|v| v.len()), Ok(2500));
        assert_eq!(dir.calls(Operation::ListRoles), 3);
        dir.fail(Operation::ListRoles, ErrorCode::Throttling);
        assert!(dir.list_principals(PrincipalKind::Role, "/").await.is_err());
    }
}
