//! The write gate every converge goes through: reads pass to the real IAM; writes pass only while
//! allowed, and are recorded either way (the audit trail and the dry-run plan). It must never
//! forward a write while writes are disallowed; it makes no decisions of its own.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::aws::iam::{capture_request_ids, note_request_id};
use crate::aws::{
    AccountSummary, AttachedPolicy, AwsResult, Iam, ManagedPolicy, Operation, PolicyEntities,
    PolicyVersion, PrincipalRef, Tag,
};

/// One write the engine issued (performed) or would have issued (recorded only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedWrite {
    /// The operation.
    pub operation: Operation,
    /// Rendered arguments.
    pub arguments: String,
    /// Whether it was sent to AWS (false: dry-run or kill switch).
    pub performed: bool,
    /// The error code AWS returned, when performed and failed.
    pub error: Option<String>,
    /// The AWS request ids of the call (its answer or error; more than one when retried), for
    /// its audit record (decision 234). Empty when not sent or when nothing answered.
    pub request_ids: Vec<String>,
}

/// Counts of AWS calls made through the gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Read calls sent.
    pub reads: u64,
    /// Write calls sent.
    pub writes: u64,
    /// Write calls recorded but not sent.
    pub suppressed_writes: u64,
    /// Calls sent, per operation.
    pub by_operation: BTreeMap<Operation, u64>,
}

impl CallStats {
    /// Total calls sent to AWS.
    pub fn sent(&self) -> u64 {
        self.reads + self.writes
    }
}

/// An [`Iam`] wrapper that forwards reads, forwards writes only while allowed, and records both.
pub struct Recorder<'a> {
    inner: &'a dyn Iam,
    writes_allowed: AtomicBool,
    log: Mutex<(Vec<RecordedWrite>, CallStats)>,
}

impl<'a> Recorder<'a> {
    /// A recorder over `inner` with writes disallowed (dry-run) until [`Recorder::allow_writes`].
    pub fn new(inner: &'a dyn Iam) -> Self {
        Recorder {
            inner,
            writes_allowed: AtomicBool::new(false),
            log: Mutex::new((Vec::new(), CallStats::default())),
        }
    }

    /// Allows or disallows forwarding writes.
    pub fn allow_writes(&self, allowed: bool) {
        self.writes_allowed.store(allowed, Ordering::SeqCst);
    }

    /// The writes issued so far (performed or not), in order.
    pub fn writes(&self) -> Vec<RecordedWrite> {
        self.lock().0.clone()
    }

    /// Call counts so far.
    pub fn stats(&self) -> CallStats {
        self.lock().1.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<RecordedWrite>, CallStats)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count_read(&self, op: Operation) {
        let mut g = self.lock();
        g.1.reads += 1;
        *g.1.by_operation.entry(op).or_default() += 1;
    }

    /// Records a write and says whether to forward it.
    fn begin_write(&self, op: Operation, arguments: String) -> bool {
        let performed = self.writes_allowed.load(Ordering::SeqCst);
        let mut g = self.lock();
        if performed {
            g.1.writes += 1;
            *g.1.by_operation.entry(op).or_default() += 1;
        } else {
            g.1.suppressed_writes += 1;
        }
        g.0.push(RecordedWrite {
            operation: op,
            arguments,
            performed,
            error: None,
            request_ids: Vec::new(),
        });
        performed
    }

    fn finish_write<T>(&self, (result, request_ids): (AwsResult<T>, Vec<String>)) -> AwsResult<T> {
        let mut g = self.lock();
        if let Some(last) = g.0.last_mut() {
            if let Err(e) = &result {
                last.error = Some(e.code.to_string());
            }
            last.request_ids.clone_from(&request_ids);
        }
        drop(g);
        // Passed on to a capture around the whole reconcile, for its audit entries.
        for id in &request_ids {
            note_request_id(Some(id));
        }
        result
    }
}

fn op_for(p: &PrincipalRef, role: Operation, user: Operation) -> Operation {
    Operation::for_principal(p.kind, role, user)
}

#[async_trait]
impl Iam for Recorder<'_> {
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        document: &str,
        tags: &[Tag],
    ) -> AwsResult<ManagedPolicy> {
        if !self.begin_write(Operation::CreatePolicy, format!("{path}{name}")) {
            return Ok(ManagedPolicy {
                arn: String::new(),
                name: name.to_string(),
                path: path.to_string(),
                default_version_id: "v1".to_string(),
                tags: tags.to_vec(),
            });
        }
        let r = capture_request_ids(self.inner.create_policy(name, path, document, tags)).await;
        self.finish_write(r)
    }
    async fn tag_policy(&self, policy_arn: &str, tags: &[Tag]) -> AwsResult<()> {
        if !self.begin_write(Operation::TagPolicy, policy_arn.to_string()) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.tag_policy(policy_arn, tags)).await;
        self.finish_write(r)
    }
    async fn get_policy(&self, policy_arn: &str) -> AwsResult<ManagedPolicy> {
        self.count_read(Operation::GetPolicy);
        self.inner.get_policy(policy_arn).await
    }
    async fn list_policies(&self, path_prefix: &str) -> AwsResult<Vec<ManagedPolicy>> {
        self.count_read(Operation::ListPolicies);
        self.inner.list_policies(path_prefix).await
    }
    async fn list_policy_tags(&self, policy_arn: &str) -> AwsResult<Vec<Tag>> {
        self.count_read(Operation::ListPolicyTags);
        self.inner.list_policy_tags(policy_arn).await
    }
    async fn get_policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> AwsResult<PolicyVersion> {
        self.count_read(Operation::GetPolicyVersion);
        self.inner.get_policy_version(policy_arn, version_id).await
    }
    async fn list_policy_versions(&self, policy_arn: &str) -> AwsResult<Vec<PolicyVersion>> {
        self.count_read(Operation::ListPolicyVersions);
        self.inner.list_policy_versions(policy_arn).await
    }
    async fn create_policy_version(
        &self,
        policy_arn: &str,
        document: &str,
        set_as_default: bool,
    ) -> AwsResult<PolicyVersion> {
        if !self.begin_write(Operation::CreatePolicyVersion, policy_arn.to_string()) {
            return Ok(PolicyVersion {
                version_id: "dry-run".to_string(),
                is_default: set_as_default,
                document: None,
            });
        }
        let r = capture_request_ids(self.inner.create_policy_version(
            policy_arn,
            document,
            set_as_default,
        ))
        .await;
        self.finish_write(r)
    }
    async fn delete_policy_version(&self, policy_arn: &str, version_id: &str) -> AwsResult<()> {
        if !self.begin_write(
            Operation::DeletePolicyVersion,
            format!("{policy_arn} {version_id}"),
        ) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.delete_policy_version(policy_arn, version_id)).await;
        self.finish_write(r)
    }
    async fn delete_policy(&self, policy_arn: &str) -> AwsResult<()> {
        if !self.begin_write(Operation::DeletePolicy, policy_arn.to_string()) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.delete_policy(policy_arn)).await;
        self.finish_write(r)
    }
    async fn list_entities_for_policy(&self, policy_arn: &str) -> AwsResult<PolicyEntities> {
        self.count_read(Operation::ListEntitiesForPolicy);
        self.inner.list_entities_for_policy(policy_arn).await
    }
    async fn attach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()> {
        let op = op_for(
            principal,
            Operation::AttachRolePolicy,
            Operation::AttachUserPolicy,
        );
        if !self.begin_write(
            op,
            format!("{}/{} {policy_arn}", principal.kind, principal.name),
        ) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.attach_policy(principal, policy_arn)).await;
        self.finish_write(r)
    }
    async fn detach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()> {
        let op = op_for(
            principal,
            Operation::DetachRolePolicy,
            Operation::DetachUserPolicy,
        );
        if !self.begin_write(
            op,
            format!("{}/{} {policy_arn}", principal.kind, principal.name),
        ) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.detach_policy(principal, policy_arn)).await;
        self.finish_write(r)
    }
    async fn detach_group_policy(&self, group: &str, policy_arn: &str) -> AwsResult<()> {
        if !self.begin_write(
            Operation::DetachGroupPolicy,
            format!("group/{group} {policy_arn}"),
        ) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.detach_group_policy(group, policy_arn)).await;
        self.finish_write(r)
    }
    async fn list_attached_policies(
        &self,
        principal: &PrincipalRef,
        path_prefix: Option<&str>,
    ) -> AwsResult<Vec<AttachedPolicy>> {
        self.count_read(op_for(
            principal,
            Operation::ListAttachedRolePolicies,
            Operation::ListAttachedUserPolicies,
        ));
        self.inner
            .list_attached_policies(principal, path_prefix)
            .await
    }
    async fn put_inline_policy(
        &self,
        principal: &PrincipalRef,
        name: &str,
        document: &str,
    ) -> AwsResult<()> {
        let op = op_for(
            principal,
            Operation::PutRolePolicy,
            Operation::PutUserPolicy,
        );
        if !self.begin_write(op, format!("{}/{} {name}", principal.kind, principal.name)) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.put_inline_policy(principal, name, document)).await;
        self.finish_write(r)
    }
    async fn delete_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<()> {
        let op = op_for(
            principal,
            Operation::DeleteRolePolicy,
            Operation::DeleteUserPolicy,
        );
        if !self.begin_write(op, format!("{}/{} {name}", principal.kind, principal.name)) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.delete_inline_policy(principal, name)).await;
        self.finish_write(r)
    }
    async fn get_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<String> {
        self.count_read(op_for(
            principal,
            Operation::GetRolePolicy,
            Operation::GetUserPolicy,
        ));
        self.inner.get_inline_policy(principal, name).await
    }
    async fn list_inline_policies(&self, principal: &PrincipalRef) -> AwsResult<Vec<String>> {
        self.count_read(op_for(
            principal,
            Operation::ListRolePolicies,
            Operation::ListUserPolicies,
        ));
        self.inner.list_inline_policies(principal).await
    }
    async fn get_account_summary(&self) -> AwsResult<AccountSummary> {
        self.count_read(Operation::GetAccountSummary);
        self.inner.get_account_summary().await
    }
    async fn get_permissions_boundary(
        &self,
        principal: &PrincipalRef,
    ) -> AwsResult<Option<String>> {
        self.count_read(op_for(principal, Operation::GetRole, Operation::GetUser));
        self.inner.get_permissions_boundary(principal).await
    }
    async fn put_permissions_boundary(
        &self,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let op = op_for(
            principal,
            Operation::PutRolePermissionsBoundary,
            Operation::PutUserPermissionsBoundary,
        );
        if !self.begin_write(
            op,
            format!("{}/{} {policy_arn}", principal.kind, principal.name),
        ) {
            return Ok(());
        }
        let r =
            capture_request_ids(self.inner.put_permissions_boundary(principal, policy_arn)).await;
        self.finish_write(r)
    }
    async fn delete_permissions_boundary(&self, principal: &PrincipalRef) -> AwsResult<()> {
        let op = op_for(
            principal,
            Operation::DeleteRolePermissionsBoundary,
            Operation::DeleteUserPermissionsBoundary,
        );
        if !self.begin_write(op, format!("{}/{}", principal.kind, principal.name)) {
            return Ok(());
        }
        let r = capture_request_ids(self.inner.delete_permissions_boundary(principal)).await;
        self.finish_write(r)
    }
}
