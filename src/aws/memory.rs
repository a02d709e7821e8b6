//! An in-memory IAM for tests, benchmarks and the local demo: faithful to IAM where the engine
//! depends on it (error codes, quotas, size limits, tags, paths, versions, eventual consistency)
//! with fault injection and a write log. It must never be used to talk to AWS and has no I/O.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::iam::{
    AccountSummary, AttachedPolicy, AwsError, AwsResult, ErrorCode, Iam, ManagedPolicy, Operation,
    PolicyEntities, PolicyVersion, PrincipalKind, PrincipalRef, Tag,
};

/// IAM's default managed-policy attachment quota per role and per user.
pub const DEFAULT_ATTACHED_POLICIES_QUOTA: u32 = 10;
/// IAM's limit on managed-policy versions.
pub const DEFAULT_VERSIONS_QUOTA: u32 = 5;
pub use crate::aws::limits::policy_size;
use crate::aws::limits::{
    MANAGED_POLICY as MANAGED_POLICY_SIZE_LIMIT, ROLE_INLINE as ROLE_INLINE_SIZE_LIMIT,
    USER_INLINE as USER_INLINE_SIZE_LIMIT,
};

/// A stored managed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Path.
    pub path: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Versions, oldest first: (version id, document).
    pub versions: Vec<(String, String)>,
    /// The default version id.
    pub default_version: String,
    next_version: u32,
}

impl StoredPolicy {
    /// The default version's document.
    pub fn default_document(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|(id, _)| *id == self.default_version)
            .map(|(_, d)| d.as_str())
    }
}

/// A stored role or user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrincipal {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Attached managed policy ARNs, in attach order.
    pub attached: Vec<String>,
    /// Inline policies: name → document.
    pub inline: BTreeMap<String, String>,
    /// The permissions boundary's policy ARN, if any.
    pub boundary: Option<String>,
}

/// A stored IAM group (only what the engine meets: the managed policies attached to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Attached managed policy ARNs, in attach order.
    pub attached: Vec<String>,
}

/// The whole IAM state of one account; cloned for eventual-consistency snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IamState {
    /// Managed policies keyed by lower-cased name (names are unique per account, case-insensitive).
    pub policies: BTreeMap<String, StoredPolicy>,
    /// Roles and users keyed by kind and lower-cased name.
    pub principals: BTreeMap<(PrincipalKind, String), StoredPrincipal>,
    /// Groups keyed by lower-cased name.
    pub groups: BTreeMap<String, StoredGroup>,
}

impl IamState {
    fn policy_by_arn(&self, arn: &str) -> Option<&StoredPolicy> {
        self.policies.values().find(|p| p.arn == arn)
    }
    fn policy_by_arn_mut(&mut self, arn: &str) -> Option<&mut StoredPolicy> {
        self.policies.values_mut().find(|p| p.arn == arn)
    }
    fn principal(&self, p: &PrincipalRef) -> Option<&StoredPrincipal> {
        self.principals.get(&(p.kind, p.name.to_lowercase()))
    }
    fn principal_mut(&mut self, p: &PrincipalRef) -> Option<&mut StoredPrincipal> {
        self.principals.get_mut(&(p.kind, p.name.to_lowercase()))
    }
    /// The attached managed policy ARNs of a principal (empty when it does not exist).
    pub fn attached(&self, p: &PrincipalRef) -> Vec<String> {
        self.principal(p)
            .map(|s| s.attached.clone())
            .unwrap_or_default()
    }
    /// The managed policy ARNs attached to a group (empty when it does not exist).
    pub fn group_attached(&self, group: &str) -> Vec<String> {
        self.groups
            .get(&group.to_lowercase())
            .map(|g| g.attached.clone())
            .unwrap_or_default()
    }
    /// The permissions boundary of a principal (`None` without one or when it does not exist).
    pub fn boundary(&self, p: &PrincipalRef) -> Option<String> {
        self.principal(p).and_then(|s| s.boundary.clone())
    }
    /// The inline policies of a principal (empty when it does not exist).
    pub fn inline(&self, p: &PrincipalRef) -> BTreeMap<String, String> {
        self.principal(p)
            .map(|s| s.inline.clone())
            .unwrap_or_default()
    }
}

/// How long reads lag behind writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// A read does not see writes made fewer than N calls before it.
    Calls(u64),
    /// A read does not see writes made less than this long before it.
    Duration(Duration),
}

/// One mutating call, as recorded in the write log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// The call number (1-based, counting every call).
    pub call: u64,
    /// The operation.
    pub operation: Operation,
    /// The arguments, rendered (`role/dev-ci arn:...`).
    pub arguments: String,
    /// `None` when it succeeded, else the error code returned.
    pub error: Option<ErrorCode>,
    /// When the call reached this implementation (wall clock; the benchmarks measure latencies
    /// against it).
    pub at: jiff::Timestamp,
    /// The request id this implementation answered with (`mem-<account>-<call>`), as AWS gives
    /// one per answered call; none when the simulated process was down and nothing answered.
    pub request_id: Option<String>,
}

#[derive(Debug, Default)]
struct Faults {
    next: HashMap<Operation, VecDeque<ErrorCode>>,
    fail_after: Option<u64>,
    crash_after: Option<u64>,
    crashed: bool,
    denied: HashSet<Operation>,
}

#[derive(Debug)]
struct LagState {
    lag: Lag,
    base: IamState,
    snapshots: VecDeque<(u64, Instant, IamState)>,
}

impl LagState {
    fn is_visible(&self, at_call: u64, at: Instant, now_call: u64, now: Instant) -> bool {
        match self.lag {
            Lag::Calls(n) => at_call + n <= now_call,
            Lag::Duration(d) => at + d <= now,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: IamState,
    calls: u64,
    call_log: Vec<Operation>,
    write_log: Vec<WriteRecord>,
    faults: Faults,
    lag: Option<LagState>,
    role_quota: u32,
    user_quota: u32,
    versions_quota: u32,
}

impl Inner {
    fn snapshot_after_write(&mut self) {
        let calls = self.calls;
        if let Some(lag) = &mut self.lag {
            lag.snapshots
                .push_back((calls, Instant::now(), self.state.clone()));
            let now = Instant::now();
            while lag.snapshots.len() >= 2 {
                let (c, t, _) = &lag.snapshots[1];
                if lag.is_visible(*c, *t, calls, now) {
                    if let Some((_, _, s)) = lag.snapshots.pop_front() {
                        lag.base = s;
                    }
                } else {
                    break;
                }
            }
        }
    }

    fn visible(&self) -> &IamState {
        match &self.lag {
            None => &self.state,
            Some(lag) => {
                let now = Instant::now();
                lag.snapshots
                    .iter()
                    .rev()
                    .find(|(c, t, _)| lag.is_visible(*c, *t, self.calls, now))
                    .map(|(_, _, s)| s)
                    .unwrap_or(&lag.base)
            }
        }
    }
}

/// In-memory IAM of one account. `Send + Sync`, cheap to create; share it with `Arc`.
#[derive(Debug)]
pub struct InMemoryIam {
    account_id: String,
    inner: Mutex<Inner>,
}

fn err(op: Operation, code: ErrorCode, message: impl Into<String>) -> AwsError {
    AwsError::new(op, code, message)
}

fn validate_document(op: Operation, document: &str) -> AwsResult<()> {
    let value: serde_json::Value = serde_json::from_str(document).map_err(|e| {
        err(
            op,
            ErrorCode::MalformedPolicyDocument,
            format!("Syntax errors in policy: {e}"),
        )
    })?;
    let ok = value.get("Version").is_some() && value.get("Statement").is_some();
    if !ok {
        return Err(err(
            op,
            ErrorCode::MalformedPolicyDocument,
            "Policy document must contain Version and Statement",
        ));
    }
    Ok(())
}

fn validate_tags(op: Operation, tags: &[Tag]) -> AwsResult<()> {
    if tags.len() > 50 {
        return Err(err(op, ErrorCode::LimitExceeded, "too many tags (max 50)"));
    }
    let mut seen = HashSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(err(
                op,
                ErrorCode::InvalidInput,
                format!("invalid tag {}", t.key),
            ));
        }
        if !seen.insert(t.key.to_lowercase()) {
            return Err(err(
                op,
                ErrorCode::InvalidInput,
                format!("duplicate tag key {}", t.key),
            ));
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
}

impl InMemoryIam {
    /// An empty account.
    pub fn new(account_id: impl Into<String>) -> Self {
        InMemoryIam {
            account_id: account_id.into(),
            inner: Mutex::new(Inner {
                state: IamState::default(),
                calls: 0,
                call_log: Vec::new(),
                write_log: Vec::new(),
                faults: Faults::default(),
                lag: None,
                role_quota: DEFAULT_ATTACHED_POLICIES_QUOTA,
                user_quota: DEFAULT_ATTACHED_POLICIES_QUOTA,
                versions_quota: DEFAULT_VERSIONS_QUOTA,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock in a test must not hide the state from later asserts.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account id this instance emulates.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The ARN a role, user or policy gets in this account.
    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:iam::{}:{}", self.account_id, resource)
    }

    /// Sets the managed-policy attachment quota for roles or users (0 forces inline fallback).
    pub fn set_attached_policies_quota(&self, kind: PrincipalKind, quota: u32) {
        let mut inner = self.lock();
        match kind {
            PrincipalKind::Role => inner.role_quota = quota,
            PrincipalKind::User => inner.user_quota = quota,
        }
    }

    /// Sets the policy versions quota.
    pub fn set_versions_quota(&self, quota: u32) {
        self.lock().versions_quota = quota;
    }

    /// Makes reads lag behind writes (`None` turns it off).
    pub fn set_lag(&self, lag: Option<Lag>) {
        let mut inner = self.lock();
        inner.lag = lag.map(|lag| LagState {
            lag,
            base: inner.state.clone(),
            snapshots: VecDeque::new(),
        });
    }

    /// The next call of `operation` fails with `code` and has no effect (queues up).
    pub fn fail_next(&self, operation: Operation, code: ErrorCode) {
        self.lock()
            .faults
            .next
            .entry(operation)
            .or_default()
            .push_back(code);
    }

    /// Every call of `operation` fails with `AccessDenied` until [`InMemoryIam::allow`].
    pub fn deny(&self, operation: Operation) {
        self.lock().faults.denied.insert(operation);
    }

    /// Undoes [`InMemoryIam::deny`].
    pub fn allow(&self, operation: Operation) {
        self.lock().faults.denied.remove(&operation);
    }

    /// Calls after the `n`-th (counted from now on the global counter) fail with `ServiceFailure`.
    pub fn fail_after_calls(&self, n: u64) {
        let mut inner = self.lock();
        inner.faults.fail_after = Some(inner.calls + n);
    }

    /// Call number `k` (global, 1-based) takes effect, then returns `Crashed`; all later calls
    /// return `Crashed` with no effect until [`InMemoryIam::recover`].
    pub fn crash_after_call(&self, k: u64) {
        self.lock().faults.crash_after = Some(k);
    }

    /// Clears crash and fail-after switches and queued faults (the "process restarted").
    pub fn recover(&self) {
        let mut inner = self.lock();
        inner.faults.crashed = false;
        inner.faults.crash_after = None;
        inner.faults.fail_after = None;
        inner.faults.next.clear();
    }

    /// Whether a crash has happened and not been recovered.
    pub fn crashed(&self) -> bool {
        self.lock().faults.crashed
    }

    /// Number of calls so far (reads and writes, failed ones included).
    pub fn call_count(&self) -> u64 {
        self.lock().calls
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Operation> {
        self.lock().call_log.clone()
    }

    /// Every mutating call so far, in order, with arguments and outcome.
    pub fn write_log(&self) -> Vec<WriteRecord> {
        self.lock().write_log.clone()
    }

    /// Number of mutating calls that reached this implementation.
    pub fn write_count(&self) -> usize {
        self.lock().write_log.len()
    }

    /// A copy of the authoritative (not lagged) state.
    pub fn state(&self) -> IamState {
        self.lock().state.clone()
    }

    /// Direct, uncounted, fault-free mutations by "someone else" (set-up and drift injection).
    pub fn outside<R>(&self, f: impl FnOnce(&mut OutsideActor<'_>) -> R) -> R {
        let mut inner = self.lock();
        let account = self.account_id.clone();
        let r = {
            let mut actor = OutsideActor {
                account_id: &account,
                state: &mut inner.state,
            };
            f(&mut actor)
        };
        inner.snapshot_after_write();
        r
    }

    fn read<T>(
        &self,
        op: Operation,
        f: impl FnOnce(&IamState, &Inner) -> AwsResult<T>,
    ) -> AwsResult<T> {
        let mut inner = self.lock();
        let call = Self::begin(&mut inner, op)?;
        let result = f(inner.visible(), &inner);
        Self::end(&mut inner, op, call, result)
    }

    fn write<T>(
        &self,
        op: Operation,
        arguments: String,
        f: impl FnOnce(&mut IamState, u32, u32, u32) -> AwsResult<T>,
    ) -> AwsResult<T> {
        let mut inner = self.lock();
        let call = match Self::begin(&mut inner, op) {
            Ok(c) => c,
            Err(e) => {
                let call = inner.calls;
                let request_id = self.answered(&e, call);
                inner.write_log.push(WriteRecord {
                    call,
                    operation: op,
                    arguments,
                    error: Some(e.code.clone()),
                    at: jiff::Timestamp::now(),
                    request_id,
                });
                return Err(e);
            }
        };
        let (rq, uq, vq) = (inner.role_quota, inner.user_quota, inner.versions_quota);
        let result = f(&mut inner.state, rq, uq, vq);
        // A crash right after the call loses its answer, and with it the request id.
        let request_id = (inner.faults.crash_after != Some(call)).then(|| self.request_id(call));
        super::iam::note_request_id(request_id.as_deref());
        inner.write_log.push(WriteRecord {
            call,
            operation: op,
            arguments,
            error: result.as_ref().err().map(|e| e.code.clone()),
            at: jiff::Timestamp::now(),
            request_id,
        });
        if result.is_ok() {
            inner.snapshot_after_write();
        }
        Self::end(&mut inner, op, call, result)
    }

    /// The request id of call number `call` (decision 234).
    fn request_id(&self, call: u64) -> String {
        format!("mem-{}-{call:08}", self.account_id)
    }

    /// The request id an error came back with, noted for the caller's audit record: every
    /// answered call has one; a simulated crash answered nothing.
    fn answered(&self, error: &AwsError, call: u64) -> Option<String> {
        if error.code == ErrorCode::Crashed {
            return None;
        }
        let id = self.request_id(call);
        super::iam::note_request_id(Some(&id));
        Some(id)
    }

    fn begin(inner: &mut Inner, op: Operation) -> AwsResult<u64> {
        inner.calls += 1;
        let call = inner.calls;
        inner.call_log.push(op);
        if inner.faults.crashed {
            return Err(err(
                op,
                ErrorCode::Crashed,
                "simulated crash: process is down",
            ));
        }
        if inner.faults.fail_after.is_some_and(|n| call > n) {
            return Err(err(
                op,
                ErrorCode::ServiceFailure,
                "injected: fail after N calls",
            ));
        }
        if inner.faults.denied.contains(&op) {
            return Err(err(
                op,
                ErrorCode::AccessDenied,
                format!("injected: not authorized to perform iam:{op}"),
            ));
        }
        if let Some(code) = inner.faults.next.get_mut(&op).and_then(|q| q.pop_front()) {
            return Err(err(op, code, "injected fault"));
        }
        Ok(call)
    }

    fn end<T>(inner: &mut Inner, op: Operation, call: u64, result: AwsResult<T>) -> AwsResult<T> {
        if inner.faults.crash_after == Some(call) {
            inner.faults.crashed = true;
            return Err(err(
                op,
                ErrorCode::Crashed,
                format!("simulated crash after call {call}"),
            ));
        }
        result
    }

    fn policy_arn(&self, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:policy{}{}", self.account_id, path, name)
    }
}

/// Mutations made by someone other than the controller; no call counting, no faults.
pub struct OutsideActor<'a> {
    account_id: &'a str,
    state: &'a mut IamState,
}

impl OutsideActor<'_> {
    fn add_principal(&mut self, kind: PrincipalKind, name: &str) -> String {
        let arn = format!("arn:aws:iam::{}:{}/{}", self.account_id, kind, name);
        self.state
            .principals
            .entry((kind, name.to_lowercase()))
            .or_insert_with(|| StoredPrincipal {
                arn: arn.clone(),
                name: name.to_string(),
                attached: Vec::new(),
                inline: BTreeMap::new(),
                boundary: None,
            });
        arn
    }
    /// Creates a role; returns its ARN.
    pub fn create_role(&mut self, name: &str) -> String {
        self.add_principal(PrincipalKind::Role, name)
    }
    /// Creates a user; returns its ARN.
    pub fn create_user(&mut self, name: &str) -> String {
        self.add_principal(PrincipalKind::User, name)
    }
    /// Creates a managed policy with any path/tags (look-alikes, other clusters); returns its ARN.
    pub fn create_policy(
        &mut self,
        name: &str,
        path: &str,
        document: &str,
        tags: &[Tag],
    ) -> String {
        let arn = format!("arn:aws:iam::{}:policy{}{}", self.account_id, path, name);
        self.state.policies.insert(
            name.to_lowercase(),
            StoredPolicy {
                arn: arn.clone(),
                name: name.to_string(),
                path: path.to_string(),
                tags: tags.to_vec(),
                versions: vec![("v1".to_string(), document.to_string())],
                default_version: "v1".to_string(),
                next_version: 2,
            },
        );
        arn
    }
    /// Creates a group; returns its ARN.
    pub fn create_group(&mut self, name: &str) -> String {
        let arn = format!("arn:aws:iam::{}:group/{}", self.account_id, name);
        self.state
            .groups
            .entry(name.to_lowercase())
            .or_insert_with(|| StoredGroup {
                arn: arn.clone(),
                name: name.to_string(),
                attached: Vec::new(),
            });
        arn
    }
    /// Attaches a managed policy to a group (someone else's doing: the engine never does).
    pub fn attach_group(&mut self, group: &str, policy_arn: &str) {
        if let Some(g) = self.state.groups.get_mut(&group.to_lowercase())
            && !g.attached.iter().any(|a| a == policy_arn)
        {
            g.attached.push(policy_arn.to_string());
        }
    }
    /// Attaches a managed policy, ignoring quotas.
    pub fn attach(&mut self, principal: &PrincipalRef, policy_arn: &str) {
        if let Some(p) = self.state.principal_mut(principal)
            && !p.attached.iter().any(|a| a == policy_arn)
        {
            p.attached.push(policy_arn.to_string());
        }
    }
    /// Detaches a managed policy (drift: someone removed our deny).
    pub fn detach(&mut self, principal: &PrincipalRef, policy_arn: &str) {
        if let Some(p) = self.state.principal_mut(principal) {
            p.attached.retain(|a| a != policy_arn);
        }
    }
    /// Puts an inline policy.
    pub fn put_inline(&mut self, principal: &PrincipalRef, name: &str, document: &str) {
        if let Some(p) = self.state.principal_mut(principal) {
            p.inline.insert(name.to_string(), document.to_string());
        }
    }
    /// Deletes an inline policy (drift).
    pub fn delete_inline(&mut self, principal: &PrincipalRef, name: &str) {
        if let Some(p) = self.state.principal_mut(principal) {
            p.inline.remove(name);
        }
    }
    /// Edits a managed policy: a new default version with `document` (drift).
    pub fn edit_policy(&mut self, policy_arn: &str, document: &str) {
        if let Some(p) = self.state.policy_by_arn_mut(policy_arn) {
            let id = format!("v{}", p.next_version);
            p.next_version += 1;
            p.versions.push((id.clone(), document.to_string()));
            p.default_version = id;
        }
    }
    /// Sets (or with `None` removes) a principal's permissions boundary, any ARN (someone else's).
    pub fn set_boundary(&mut self, principal: &PrincipalRef, policy_arn: Option<&str>) {
        if let Some(p) = self.state.principal_mut(principal) {
            p.boundary = policy_arn.map(str::to_string);
        }
    }
    /// Removes a tag from a policy.
    pub fn untag_policy(&mut self, policy_arn: &str, key: &str) {
        if let Some(p) = self.state.policy_by_arn_mut(policy_arn) {
            p.tags.retain(|t| t.key != key);
        }
    }
}

fn principal_missing(op: Operation, p: &PrincipalRef) -> AwsError {
    err(
        op,
        ErrorCode::NoSuchEntity,
        format!("The {} with name {} cannot be found.", p.kind, p.name),
    )
}

/// Removes `policy_arn` from a role's, user's or group's attached list; `NoSuchEntity` as IAM
/// answers when it was not attached.
fn detach_from(attached: &mut Vec<String>, op: Operation, policy_arn: &str) -> AwsResult<()> {
    let before = attached.len();
    attached.retain(|a| a != policy_arn);
    if before == attached.len() {
        return Err(err(
            op,
            ErrorCode::NoSuchEntity,
            format!("Policy {policy_arn} was not found."),
        ));
    }
    Ok(())
}

fn policy_missing(op: Operation, arn: &str) -> AwsError {
    err(
        op,
        ErrorCode::NoSuchEntity,
        format!("Policy {arn} does not exist or is not attachable."),
    )
}

#[async_trait]
impl Iam for InMemoryIam {
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        document: &str,
        tags: &[Tag],
    ) -> AwsResult<ManagedPolicy> {
        let op = Operation::CreatePolicy;
        let arn = self.policy_arn(path, name);
        self.write(op, format!("{name} {path} tags={}", tags.len()), |s, _, _, _| {
            if !valid_name(name) || !path.starts_with('/') || !path.ends_with('/') {
                return Err(err(op, ErrorCode::InvalidInput, "invalid name or path"));
            }
            validate_document(op, document)?;
            validate_tags(op, tags)?;
            if policy_size(document) > MANAGED_POLICY_SIZE_LIMIT {
                return Err(err(
                    op,
                    ErrorCode::LimitExceeded,
                    format!("Cannot exceed quota for PolicySize: {MANAGED_POLICY_SIZE_LIMIT}"),
                ));
            }
            if s.policies.contains_key(&name.to_lowercase()) {
                return Err(err(
                    op,
                    ErrorCode::EntityAlreadyExists,
                    format!("A policy called {name} already exists. Duplicate names are not allowed."),
                ));
            }
            let policy = StoredPolicy {
                arn: arn.clone(),
                name: name.to_string(),
                path: path.to_string(),
                tags: tags.to_vec(),
                versions: vec![("v1".to_string(), document.to_string())],
                default_version: "v1".to_string(),
                next_version: 2,
            };
            s.policies.insert(name.to_lowercase(), policy);
            Ok(ManagedPolicy {
                arn: arn.clone(),
                name: name.to_string(),
                path: path.to_string(),
                default_version_id: "v1".to_string(),
                tags: tags.to_vec(),
            })
        })
    }

    async fn tag_policy(&self, policy_arn: &str, tags: &[Tag]) -> AwsResult<()> {
        let op = Operation::TagPolicy;
        self.write(
            op,
            format!("{policy_arn} tags={}", tags.len()),
            |s, _, _, _| {
                validate_tags(op, tags)?;
                let p = s
                    .policy_by_arn_mut(policy_arn)
                    .ok_or_else(|| policy_missing(op, policy_arn))?;
                for t in tags {
                    p.tags.retain(|x| x.key != t.key);
                    p.tags.push(t.clone());
                }
                if p.tags.len() > 50 {
                    return Err(err(op, ErrorCode::LimitExceeded, "too many tags"));
                }
                Ok(())
            },
        )
    }

    async fn get_policy(&self, policy_arn: &str) -> AwsResult<ManagedPolicy> {
        let op = Operation::GetPolicy;
        self.read(op, |s, _| {
            let p = s
                .policy_by_arn(policy_arn)
                .ok_or_else(|| policy_missing(op, policy_arn))?;
            Ok(ManagedPolicy {
                arn: p.arn.clone(),
                name: p.name.clone(),
                path: p.path.clone(),
                default_version_id: p.default_version.clone(),
                tags: p.tags.clone(),
            })
        })
    }

    async fn list_policies(&self, path_prefix: &str) -> AwsResult<Vec<ManagedPolicy>> {
        self.read(Operation::ListPolicies, |s, _| {
            Ok(s.policies
                .values()
                .filter(|p| p.path.starts_with(path_prefix))
                .map(|p| ManagedPolicy {
                    arn: p.arn.clone(),
                    name: p.name.clone(),
                    path: p.path.clone(),
                    default_version_id: p.default_version.clone(),
                    tags: Vec::new(),
                })
                .collect())
        })
    }

    async fn list_policy_tags(&self, policy_arn: &str) -> AwsResult<Vec<Tag>> {
        let op = Operation::ListPolicyTags;
        self.read(op, |s, _| {
            s.policy_by_arn(policy_arn)
                .map(|p| p.tags.clone())
                .ok_or_else(|| policy_missing(op, policy_arn))
        })
    }

    async fn get_policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> AwsResult<PolicyVersion> {
        let op = Operation::GetPolicyVersion;
        self.read(op, |s, _| {
            let p = s
                .policy_by_arn(policy_arn)
                .ok_or_else(|| policy_missing(op, policy_arn))?;
            let (id, doc) = p
                .versions
                .iter()
                .find(|(id, _)| id == version_id)
                .ok_or_else(|| {
                    err(
                        op,
                        ErrorCode::NoSuchEntity,
                        format!("Policy {policy_arn} version {version_id} does not exist"),
                    )
                })?;
            Ok(PolicyVersion {
                version_id: id.clone(),
                is_default: *id == p.default_version,
                document: Some(doc.clone()),
            })
        })
    }

    async fn list_policy_versions(&self, policy_arn: &str) -> AwsResult<Vec<PolicyVersion>> {
        let op = Operation::ListPolicyVersions;
        self.read(op, |s, _| {
            let p = s
                .policy_by_arn(policy_arn)
                .ok_or_else(|| policy_missing(op, policy_arn))?;
            Ok(p.versions
                .iter()
                .map(|(id, _)| PolicyVersion {
                    version_id: id.clone(),
                    is_default: *id == p.default_version,
                    document: None,
                })
                .collect())
        })
    }

    async fn create_policy_version(
        &self,
        policy_arn: &str,
        document: &str,
        set_as_default: bool,
    ) -> AwsResult<PolicyVersion> {
        let op = Operation::CreatePolicyVersion;
        self.write(
            op,
            format!("{policy_arn} default={set_as_default}"),
            |s, _, _, vq| {
                validate_document(op, document)?;
                if policy_size(document) > MANAGED_POLICY_SIZE_LIMIT {
                    return Err(err(
                        op,
                        ErrorCode::LimitExceeded,
                        format!("Cannot exceed quota for PolicySize: {MANAGED_POLICY_SIZE_LIMIT}"),
                    ));
                }
                let p = s
                    .policy_by_arn_mut(policy_arn)
                    .ok_or_else(|| policy_missing(op, policy_arn))?;
                if p.versions.len() as u32 >= vq {
                    return Err(err(
                        op,
                        ErrorCode::LimitExceeded,
                        format!("A managed policy can have up to {vq} versions."),
                    ));
                }
                let id = format!("v{}", p.next_version);
                p.next_version += 1;
                p.versions.push((id.clone(), document.to_string()));
                if set_as_default {
                    p.default_version = id.clone();
                }
                Ok(PolicyVersion {
                    version_id: id,
                    is_default: set_as_default,
                    document: None,
                })
            },
        )
    }

    async fn delete_policy_version(&self, policy_arn: &str, version_id: &str) -> AwsResult<()> {
        let op = Operation::DeletePolicyVersion;
        self.write(op, format!("{policy_arn} {version_id}"), |s, _, _, _| {
            let p = s
                .policy_by_arn_mut(policy_arn)
                .ok_or_else(|| policy_missing(op, policy_arn))?;
            if p.default_version == version_id {
                return Err(err(
                    op,
                    ErrorCode::DeleteConflict,
                    "Cannot delete the default version of a policy.",
                ));
            }
            let before = p.versions.len();
            p.versions.retain(|(id, _)| id != version_id);
            if p.versions.len() == before {
                return Err(err(
                    op,
                    ErrorCode::NoSuchEntity,
                    format!("Policy {policy_arn} version {version_id} does not exist"),
                ));
            }
            Ok(())
        })
    }

    async fn delete_policy(&self, policy_arn: &str) -> AwsResult<()> {
        let op = Operation::DeletePolicy;
        self.write(op, policy_arn.to_string(), |s, _, _, _| {
            let p = s
                .policy_by_arn(policy_arn)
                .ok_or_else(|| policy_missing(op, policy_arn))?;
            if s.principals.values().any(|pr| {
                pr.attached.iter().any(|a| a == policy_arn)
                    || pr.boundary.as_deref() == Some(policy_arn)
            })
                || s
                    .groups
                    .values()
                    .any(|g| g.attached.iter().any(|a| a == policy_arn))
            {
                return Err(err(
                    op,
                    ErrorCode::DeleteConflict,
                    "Cannot delete a policy attached to entities.",
                ));
            }
            if p.versions.len() > 1 {
                return Err(err(
                    op,
                    ErrorCode::DeleteConflict,
                    "This policy has more than one version. Before you delete a policy, you must delete the policy's versions.",
                ));
            }
            let key = p.name.to_lowercase();
            s.policies.remove(&key);
            Ok(())
        })
    }

    async fn list_entities_for_policy(&self, policy_arn: &str) -> AwsResult<PolicyEntities> {
        let op = Operation::ListEntitiesForPolicy;
        self.read(op, |s, _| {
            s.policy_by_arn(policy_arn)
                .ok_or_else(|| policy_missing(op, policy_arn))?;
            Ok(PolicyEntities {
                principals: s
                    .principals
                    .iter()
                    .filter(|(_, p)| p.attached.iter().any(|a| a == policy_arn))
                    .map(|((kind, _), p)| PrincipalRef {
                        kind: *kind,
                        name: p.name.clone(),
                    })
                    .collect(),
                groups: s
                    .groups
                    .values()
                    .filter(|g| g.attached.iter().any(|a| a == policy_arn))
                    .map(|g| g.name.clone())
                    .collect(),
            })
        })
    }

    async fn detach_group_policy(&self, group: &str, policy_arn: &str) -> AwsResult<()> {
        let op = Operation::DetachGroupPolicy;
        self.write(op, format!("group/{group} {policy_arn}"), |s, _, _, _| {
            let g = s.groups.get_mut(&group.to_lowercase()).ok_or_else(|| {
                err(
                    op,
                    ErrorCode::NoSuchEntity,
                    format!("The group with name {group} cannot be found."),
                )
            })?;
            detach_from(&mut g.attached, op, policy_arn)
        })
    }

    async fn attach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::AttachRolePolicy,
            Operation::AttachUserPolicy,
        );
        self.write(
            op,
            format!("{}/{} {policy_arn}", principal.kind, principal.name),
            |s, rq, uq, _| {
                if s.policy_by_arn(policy_arn).is_none() {
                    return Err(policy_missing(op, policy_arn));
                }
                let quota = match principal.kind {
                    PrincipalKind::Role => rq,
                    PrincipalKind::User => uq,
                };
                let p = s
                    .principal_mut(principal)
                    .ok_or_else(|| principal_missing(op, principal))?;
                if p.attached.iter().any(|a| a == policy_arn) {
                    return Ok(());
                }
                if p.attached.len() as u32 >= quota {
                    return Err(err(
                        op,
                        ErrorCode::LimitExceeded,
                        format!(
                            "Cannot exceed quota for PoliciesPer{}: {quota}",
                            match principal.kind {
                                PrincipalKind::Role => "Role",
                                PrincipalKind::User => "User",
                            }
                        ),
                    ));
                }
                p.attached.push(policy_arn.to_string());
                Ok(())
            },
        )
    }

    async fn detach_policy(&self, principal: &PrincipalRef, policy_arn: &str) -> AwsResult<()> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::DetachRolePolicy,
            Operation::DetachUserPolicy,
        );
        self.write(
            op,
            format!("{}/{} {policy_arn}", principal.kind, principal.name),
            |s, _, _, _| {
                let p = s
                    .principal_mut(principal)
                    .ok_or_else(|| principal_missing(op, principal))?;
                detach_from(&mut p.attached, op, policy_arn)
            },
        )
    }

    async fn list_attached_policies(
        &self,
        principal: &PrincipalRef,
        path_prefix: Option<&str>,
    ) -> AwsResult<Vec<AttachedPolicy>> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::ListAttachedRolePolicies,
            Operation::ListAttachedUserPolicies,
        );
        self.read(op, |s, _| {
            let p = s
                .principal(principal)
                .ok_or_else(|| principal_missing(op, principal))?;
            Ok(p.attached
                .iter()
                .filter_map(|arn| {
                    // Attachments of since-deleted policies cannot exist in IAM; skip defensively.
                    let pol = s.policy_by_arn(arn)?;
                    if path_prefix.is_some_and(|pre| !pol.path.starts_with(pre)) {
                        return None;
                    }
                    Some(AttachedPolicy {
                        name: pol.name.clone(),
                        arn: arn.clone(),
                    })
                })
                .collect())
        })
    }

    async fn put_inline_policy(
        &self,
        principal: &PrincipalRef,
        name: &str,
        document: &str,
    ) -> AwsResult<()> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::PutRolePolicy,
            Operation::PutUserPolicy,
        );
        self.write(
            op,
            format!("{}/{} {name}", principal.kind, principal.name),
            |s, _, _, _| {
                if !valid_name(name) {
                    return Err(err(op, ErrorCode::InvalidInput, "invalid policy name"));
                }
                validate_document(op, document)?;
                let p = s
                    .principal_mut(principal)
                    .ok_or_else(|| principal_missing(op, principal))?;
                let limit = match principal.kind {
                    PrincipalKind::Role => ROLE_INLINE_SIZE_LIMIT,
                    PrincipalKind::User => USER_INLINE_SIZE_LIMIT,
                };
                let others: usize = p
                    .inline
                    .iter()
                    .filter(|(n, _)| n.as_str() != name)
                    .map(|(_, d)| policy_size(d))
                    .sum();
                if others + policy_size(document) > limit {
                    return Err(err(
                        op,
                        ErrorCode::LimitExceeded,
                        format!(
                            "Maximum policy size of {limit} bytes exceeded for {} {}",
                            principal.kind, principal.name
                        ),
                    ));
                }
                p.inline.insert(name.to_string(), document.to_string());
                Ok(())
            },
        )
    }

    async fn delete_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<()> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::DeleteRolePolicy,
            Operation::DeleteUserPolicy,
        );
        self.write(
            op,
            format!("{}/{} {name}", principal.kind, principal.name),
            |s, _, _, _| {
                let p = s
                    .principal_mut(principal)
                    .ok_or_else(|| principal_missing(op, principal))?;
                if p.inline.remove(name).is_none() {
                    return Err(err(
                        op,
                        ErrorCode::NoSuchEntity,
                        format!(
                            "The {} policy with name {name} cannot be found.",
                            principal.kind
                        ),
                    ));
                }
                Ok(())
            },
        )
    }

    async fn get_inline_policy(&self, principal: &PrincipalRef, name: &str) -> AwsResult<String> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::GetRolePolicy,
            Operation::GetUserPolicy,
        );
        self.read(op, |s, _| {
            let p = s
                .principal(principal)
                .ok_or_else(|| principal_missing(op, principal))?;
            p.inline.get(name).cloned().ok_or_else(|| {
                err(
                    op,
                    ErrorCode::NoSuchEntity,
                    format!(
                        "The {} policy with name {name} cannot be found.",
                        principal.kind
                    ),
                )
            })
        })
    }

    async fn list_inline_policies(&self, principal: &PrincipalRef) -> AwsResult<Vec<String>> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::ListRolePolicies,
            Operation::ListUserPolicies,
        );
        self.read(op, |s, _| {
            let p = s
                .principal(principal)
                .ok_or_else(|| principal_missing(op, principal))?;
            Ok(p.inline.keys().cloned().collect())
        })
    }

    async fn get_account_summary(&self) -> AwsResult<AccountSummary> {
        self.read(Operation::GetAccountSummary, |_, inner| {
            Ok(AccountSummary {
                attached_policies_per_role_quota: inner.role_quota,
                attached_policies_per_user_quota: inner.user_quota,
                versions_per_policy_quota: inner.versions_quota,
            })
        })
    }

    async fn get_permissions_boundary(
        &self,
        principal: &PrincipalRef,
    ) -> AwsResult<Option<String>> {
        let op = Operation::for_principal(principal.kind, Operation::GetRole, Operation::GetUser);
        self.read(op, |s, _| {
            s.principal(principal)
                .map(|p| p.boundary.clone())
                .ok_or_else(|| principal_missing(op, principal))
        })
    }

    async fn put_permissions_boundary(
        &self,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::PutRolePermissionsBoundary,
            Operation::PutUserPermissionsBoundary,
        );
        self.write(
            op,
            format!("{}/{} {policy_arn}", principal.kind, principal.name),
            |s, _, _, _| {
                // IAM accepts a customer managed policy of the account or an AWS managed one.
                let aws_managed = policy_arn.contains(":iam::aws:policy/");
                if !aws_managed && s.policy_by_arn(policy_arn).is_none() {
                    return Err(err(
                        op,
                        ErrorCode::InvalidInput,
                        format!("Scope ARN: {policy_arn} does not exist or is not attachable."),
                    ));
                }
                let p = s
                    .principal_mut(principal)
                    .ok_or_else(|| principal_missing(op, principal))?;
                p.boundary = Some(policy_arn.to_string());
                Ok(())
            },
        )
    }

    async fn delete_permissions_boundary(&self, principal: &PrincipalRef) -> AwsResult<()> {
        let op = Operation::for_principal(
            principal.kind,
            Operation::DeleteRolePermissionsBoundary,
            Operation::DeleteUserPermissionsBoundary,
        );
        self.write(
            op,
            format!("{}/{}", principal.kind, principal.name),
            |s, _, _, _| {
                let p = s
                    .principal_mut(principal)
                    .ok_or_else(|| principal_missing(op, principal))?;
                // IAM answers success when there is no boundary to delete.
                p.boundary = None;
                Ok(())
            },
        )
    }
}
