//! The converge loop over the IAM trait: gather observed state (only objects we can prove are
//! ours), plan with the pure planner, execute through the write gate, and report every action.
//! Also the one-read steady-state verification. It must not know about Kubernetes or CRD types,
//! and never sends an enforcement write in dry-run or under the kill switch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::aws::factory::ClientFactory;
use crate::aws::{AwsError, AwsResult, ErrorCategory, ErrorCode, Iam, PrincipalKind, PrincipalRef};

use super::ownership::{
    self, INLINE_POLICY_PREFIX, MANAGED_POLICY_PREFIX, POLICY_PATH, Principal, QuarantineKey,
    inline_policy_name, is_our_inline_policy, managed_policy_arn, managed_policy_name,
    owner_of_policy, parse_principal,
};
use super::plan::{
    Attachment, AttachmentKind, DesiredEntry, DesiredQuarantine, DesiredTarget, ObservedAccount,
    ObservedPolicy, ObservedPrincipal, Plan, ProtectedPrincipals, Step, StepClass,
    TargetExpectation, WriteKey, plan_account, resolve,
};
use super::recorder::{CallStats, RecordedWrite, Recorder};

mod steps;

/// Default time during which a read saying "missing" right after our own write is not trusted.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(20);

/// Errors of the converge engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnforceError {
    /// A call reported a crash (test double) — the run stops where it is.
    #[error("converge aborted")]
    Aborted(#[source] AwsError),
    /// Reading IAM state failed, so the account cannot be planned this time.
    #[error("failed to read {what} in account {account_id}")]
    Gather {
        /// Account.
        account_id: String,
        /// What was being read.
        what: String,
        /// Cause.
        #[source]
        source: AwsError,
    },
    /// No client for an account.
    #[error("failed to get an IAM client for account {account_id}: {message}")]
    Client {
        /// Account.
        account_id: String,
        /// Cause, rendered.
        message: String,
        /// Category of the cause.
        category: ErrorCategory,
    },
    /// A planned write failed.
    #[error("failed to {step}")]
    Step {
        /// The step, described (`attach ... to ...`).
        step: String,
        /// Cause.
        #[source]
        source: AwsError,
    },
    /// A target was refused before any call.
    #[error("refused target {arn}: {reason}")]
    Refused {
        /// Target.
        arn: String,
        /// Why.
        reason: String,
    },
}

impl EnforceError {
    /// The category used for metric labels and Event reasons.
    pub fn category(&self) -> ErrorCategory {
        match self {
            EnforceError::Aborted(e) | EnforceError::Gather { source: e, .. } => e.category(),
            EnforceError::Step { source, .. } => source.category(),
            EnforceError::Client { category, .. } => *category,
            EnforceError::Refused { .. } => ErrorCategory::Invalid,
        }
    }
    /// Message including the cause.
    pub fn full_message(&self) -> String {
        match self {
            EnforceError::Aborted(e)
            | EnforceError::Gather { source: e, .. }
            | EnforceError::Step { source: e, .. } => format!("{self}: {e}"),
            _ => self.to_string(),
        }
    }
}

/// How writes are gated for a converge run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteGate {
    /// Enforce and release.
    Enforce,
    /// Kill switch: release only; enforcement writes are recorded, not sent.
    KillSwitch,
    /// Dry-run: nothing is sent; all writes are recorded.
    DryRun,
}

impl WriteGate {
    fn allows(self, class: StepClass) -> bool {
        match self {
            WriteGate::Enforce => true,
            WriteGate::KillSwitch => class == StepClass::Release,
            WriteGate::DryRun => false,
        }
    }
}

/// A principal the controller once targeted (e.g. from a released Quarantine's status); it is
/// scanned for our inline policies, which cannot be found by listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPrincipal {
    /// Role or user.
    pub kind: PrincipalKind,
    /// ARN.
    pub arn: String,
}

/// Which quarantines' IAM objects a converge run may read and change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Everything of ours: `desired` must then list every quarantine that may hold a deny.
    #[default]
    All,
    /// Only these quarantines' policies and inline policies (one quarantine's reconcile); other
    /// quarantines' objects are neither read nor changed.
    Only(BTreeSet<QuarantineKey>),
    /// Everything of ours except these quarantines' objects (the orphan sweep: the exceptions are
    /// the quarantines that may still hold a deny and are handled by their own reconcile).
    Except(BTreeSet<QuarantineKey>),
}

impl Scope {
    /// One quarantine.
    pub fn only(key: QuarantineKey) -> Scope {
        Scope::Only(BTreeSet::from([key]))
    }

    /// Whether the run may touch this quarantine's objects.
    pub fn includes(&self, key: &QuarantineKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(keys) => keys.contains(key),
            Scope::Except(keys) => !keys.contains(key),
        }
    }

    fn names(
        keys: &BTreeSet<QuarantineKey>,
        cluster: &str,
        account: &str,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        let managed = keys
            .iter()
            .map(|k| managed_policy_name(cluster, k, account))
            .collect();
        let inline = keys
            .iter()
            .map(|k| inline_policy_name(cluster, k, account))
            .collect();
        (managed, inline)
    }
}

/// The write gate and the scope resolved to object names in one account (names are derived
/// from the key).
pub struct AccountScope {
    gate: WriteGate,
    scope: Scope,
    managed: BTreeSet<String>,
    inline: BTreeSet<String>,
}

impl AccountScope {
    /// Resolves `scope` for `account`.
    pub fn new(gate: WriteGate, scope: &Scope, cluster: &str, account: &str) -> AccountScope {
        let (managed, inline) = match scope {
            Scope::All => (BTreeSet::new(), BTreeSet::new()),
            Scope::Only(keys) | Scope::Except(keys) => Scope::names(keys, cluster, account),
        };
        AccountScope {
            gate,
            scope: scope.clone(),
            managed,
            inline,
        }
    }

    fn managed_name(&self, name: &str) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Only(_) => self.managed.contains(name),
            Scope::Except(_) => !self.managed.contains(name),
        }
    }

    fn inline_name(&self, name: &str) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Only(_) => self.inline.contains(name),
            Scope::Except(_) => !self.inline.contains(name),
        }
    }
}

/// Everything one converge run needs, as plain data.
#[derive(Debug, Clone)]
pub struct ConvergeInput {
    /// Active quarantines.
    pub desired: Vec<DesiredQuarantine>,
    /// Principals to scan for leftovers besides desired targets and entities of our policies.
    pub known_principals: Vec<KnownPrincipal>,
    /// Accounts to scan for orphan policies even when nothing is desired there.
    pub accounts: Vec<String>,
    /// Write gate.
    pub gate: WriteGate,
    /// Which quarantines' objects this run may touch; desired quarantines outside it are ignored.
    pub scope: Scope,
}

/// Outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Sent and succeeded (or was already done: `NoSuchEntity` on a removal).
    Done,
    /// Recorded only (dry-run / kill switch).
    Recorded,
    /// Attach hit `LimitExceeded`; the inline fallback was put instead.
    FellBackToInline,
    /// `EntityAlreadyExists` and our tags prove ownership: adopted.
    Adopted,
    /// Not attempted because an earlier step it depends on failed.
    Skipped(String),
    /// Failed.
    Failed {
        /// Category.
        category: ErrorCategory,
        /// Message.
        message: String,
    },
}

/// One executed (or recorded) step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Account.
    pub account_id: String,
    /// Enforce or release.
    pub class: StepClass,
    /// Description.
    pub description: String,
    /// Outcome.
    pub outcome: StepOutcome,
}

/// Per-target state after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Our deny is (believed) attached.
    Attached,
    /// Would be attached, but writes were gated (dry-run / kill switch).
    Planned,
    /// Our deny was removed from it in this run.
    Detached,
    /// Could not be enforced; see `last_error`.
    Failed,
}

/// The state of one desired (or released) target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// The owning quarantine (None for leftovers whose owner cannot be named, e.g. inline).
    pub key: Option<QuarantineKey>,
    /// Principal ARN.
    pub arn: String,
    /// State.
    pub state: TargetState,
    /// Attachment kind and name.
    pub attachment: Option<Attachment>,
    /// Whether a read has confirmed the state (false right after our own write).
    pub confirmed: bool,
    /// Last error message.
    pub last_error: Option<String>,
    /// Last error category.
    pub error_category: Option<ErrorCategory>,
}

/// What kind of drift was repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// Someone detached our managed policy.
    AttachmentRemoved,
    /// Someone deleted or edited our inline policy.
    InlinePolicyChanged,
    /// Someone changed our managed policy's default document.
    DocumentEdited,
}

/// One drift repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRepair {
    /// Quarantine.
    pub key: QuarantineKey,
    /// Principal or policy ARN.
    pub arn: String,
    /// What was repaired.
    pub kind: DriftKind,
    /// Whether the repair write was sent (false when gated).
    pub performed: bool,
}

/// One categorised error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    /// Account (empty when not account-specific).
    pub account_id: String,
    /// Category.
    pub category: ErrorCategory,
    /// Message with cause.
    pub message: String,
}

/// The audit record of a converge run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvergeReport {
    /// Steps in execution order.
    pub steps: Vec<StepRecord>,
    /// Desired targets and released principals.
    pub targets: Vec<TargetStatus>,
    /// Drift repairs.
    pub drift_repairs: Vec<DriftRepair>,
    /// Errors, categorised.
    pub errors: Vec<ErrorRecord>,
    /// Releases refused because the principal is protected (principal, policy/inline name).
    pub refused_releases: Vec<String>,
    /// Policies under our path that are not provably ours (never touched).
    pub foreign_policies: Vec<String>,
    /// Our policies found attached to IAM groups (by someone else) and detached on release.
    pub group_detachments: Vec<String>,
    /// Every write issued, sent or not.
    pub writes: Vec<RecordedWrite>,
    /// AWS calls.
    pub calls: CallStats,
}

impl ConvergeReport {
    /// Whether every desired target is attached and nothing failed.
    pub fn is_converged(&self) -> bool {
        self.errors.is_empty()
            && self
                .targets
                .iter()
                .all(|t| matches!(t.state, TargetState::Attached | TargetState::Detached))
    }

    fn merge_calls(&mut self, s: CallStats) {
        self.calls.reads += s.reads;
        self.calls.writes += s.writes;
        self.calls.suppressed_writes += s.suppressed_writes;
        for (k, v) in s.by_operation {
            *self.calls.by_operation.entry(k).or_default() += v;
        }
    }
}

/// Result of a steady-state verification of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The attachment (and, for inline, the document) is in place.
    Present,
    /// Missing, and not explained by a recent write of ours: run converge to repair.
    Missing,
    /// Missing, but we wrote it within the settle window: re-read later before concluding.
    AwaitingConfirmation,
    /// The read failed.
    Error(ErrorCategory, String),
}

/// Outcome and cost of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Outcome.
    pub outcome: Verified,
    /// AWS calls made (reads, writes).
    pub calls: CallStats,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This controller's cluster id (written into tags and markers; two clusters never mix).
    pub cluster_id: String,
    /// Principals never touched.
    pub protected: ProtectedPrincipals,
    /// Read-after-write distrust window.
    pub settle: Duration,
}

/// The engine's memory of one recent write: when, and for which quarantine.
type RecentWrites = HashMap<(String, WriteKey), (Instant, QuarantineKey)>;

/// The enforcement engine: configuration plus the in-process memory of recent writes.
pub struct Engine {
    config: EngineConfig,
    recent: Mutex<RecentWrites>,
    /// IAM changes reported by CloudTrail events (decision 200).
    reports: Option<super::trigger::DriftTrigger>,
}

fn crashed<T>(r: AwsResult<T>) -> Result<AwsResult<T>, EnforceError> {
    match r {
        Err(e) if e.code == ErrorCode::Crashed => Err(EnforceError::Aborted(e)),
        other => Ok(other),
    }
}

fn principal_arn(partition: &str, account_id: &str, p: &PrincipalRef) -> String {
    format!("arn:{partition}:iam::{account_id}:{}/{}", p.kind, p.name)
}

impl Engine {
    /// A new engine with no memory of recent writes.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            recent: Mutex::new(HashMap::new()),
            reports: None,
        }
    }

    /// Trusts a "missing" read inside the settle window when IAM reported a change to that
    /// principal after our write (a CloudTrail event: someone undid it).
    pub fn with_reports(mut self, reports: super::trigger::DriftTrigger) -> Self {
        self.reports = Some(reports);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn recent_lock(&self) -> std::sync::MutexGuard<'_, RecentWrites> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recent_for(&self, account_id: &str) -> BTreeSet<WriteKey> {
        self.recent_owned(account_id)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Recent writes in an account with the quarantine each was made for. A write to a principal
    /// IAM reported changed after it (a CloudTrail event) is no longer "recent": a read that
    /// misses it is believed (decision 200).
    fn recent_owned(&self, account_id: &str) -> Vec<(WriteKey, QuarantineKey)> {
        let undone = |key: &WriteKey, at: Instant| match (key, &self.reports) {
            (WriteKey::Attachment(p, _) | WriteKey::Inline(p, _), Some(reports)) => {
                reports.changed_after(account_id, p, at)
            }
            _ => false,
        };
        let settle = self.config.settle;
        let mut g = self.recent_lock();
        g.retain(|_, (t, _)| t.elapsed() < settle);
        let mut out: Vec<(WriteKey, QuarantineKey)> = g
            .iter()
            .filter(|((a, k), (t, _))| a == account_id && !undone(k, *t))
            .map(|((_, k), (_, owner))| (k.clone(), owner.clone()))
            .collect();
        out.sort();
        out
    }

    fn remember(&self, account_id: &str, key: WriteKey, owner: &QuarantineKey) {
        self.recent_lock().insert(
            (account_id.to_string(), key),
            (Instant::now(), owner.clone()),
        );
    }

    /// Forgets a write once its object was removed (a later release need not remove it again).
    fn forget(&self, account_id: &str, key: WriteKey) {
        self.recent_lock().remove(&(account_id.to_string(), key));
    }

    /// Converges all accounts concerned: desired targets' accounts, known principals' accounts
    /// and `input.accounts`. Returns `Err` only when a call reports a crash (test double).
    pub async fn converge(
        &self,
        clients: &dyn ClientFactory,
        input: &ConvergeInput,
    ) -> Result<ConvergeReport, EnforceError> {
        self.converge_as(&self.config.cluster_id, clients, input)
            .await
    }

    /// [`Engine::converge`] under the cluster id a quarantine's objects were written with (its
    /// status records it): names, tags and the inline marker come from `cluster`, so a quarantine
    /// enforced before a change of the configured cluster id is still kept and released
    /// (decision 096).
    pub async fn converge_as(
        &self,
        cluster: &str,
        clients: &dyn ClientFactory,
        input: &ConvergeInput,
    ) -> Result<ConvergeReport, EnforceError> {
        let in_scope: Vec<DesiredQuarantine> = input
            .desired
            .iter()
            .filter(|d| input.scope.includes(&d.key))
            .cloned()
            .collect();
        let resolved = resolve(cluster, &in_scope, &self.config.protected);
        let mut report = ConvergeReport::default();
        for r in &resolved.rejected {
            report.errors.push(ErrorRecord {
                account_id: String::new(),
                category: r.category,
                message: EnforceError::Refused {
                    arn: r.arn.clone(),
                    reason: r.reason.clone(),
                }
                .to_string(),
            });
            report.targets.push(TargetStatus {
                key: Some(r.key.clone()),
                arn: r.arn.clone(),
                state: TargetState::Failed,
                attachment: None,
                confirmed: false,
                last_error: Some(r.reason.clone()),
                error_category: Some(r.category),
            });
        }
        let mut known: BTreeMap<String, Vec<Principal>> = BTreeMap::new();
        for k in &input.known_principals {
            if let Ok(p) = parse_principal(k.kind, &k.arn) {
                known.entry(p.account_id.clone()).or_default().push(p);
            }
        }
        let mut accounts: BTreeSet<String> = resolved.accounts.keys().cloned().collect();
        accounts.extend(known.keys().cloned());
        accounts.extend(input.accounts.iter().cloned());
        for account in accounts {
            let entries = resolved.accounts.get(&account).cloned().unwrap_or_default();
            let known_here = known.get(&account).cloned().unwrap_or_default();
            let iam = match clients.iam_for(&account).await {
                Ok(c) => c,
                Err(e) => {
                    let err = EnforceError::Client {
                        account_id: account.clone(),
                        message: e.to_string(),
                        category: e.category(),
                    };
                    for d in &entries {
                        for (t, _) in &d.targets {
                            report.targets.push(TargetStatus {
                                key: Some(d.key.clone()),
                                arn: t.arn.clone(),
                                state: TargetState::Failed,
                                attachment: None,
                                confirmed: false,
                                last_error: Some(err.to_string()),
                                error_category: Some(err.category()),
                            });
                        }
                    }
                    report.errors.push(ErrorRecord {
                        account_id: account.clone(),
                        category: err.category(),
                        message: err.to_string(),
                    });
                    continue;
                }
            };
            self.converge_account_as(
                cluster,
                iam.as_ref(),
                &account,
                &entries,
                &known_here,
                &AccountScope::new(input.gate, &input.scope, cluster, &account),
                &mut report,
            )
            .await?;
        }
        Ok(report)
    }

    /// Converges one account with an explicit client; appends to `report`.
    pub async fn converge_account(
        &self,
        iam: &dyn Iam,
        account_id: &str,
        entries: &[DesiredEntry],
        known: &[Principal],
        scope: &AccountScope,
        report: &mut ConvergeReport,
    ) -> Result<(), EnforceError> {
        self.converge_account_as(
            &self.config.cluster_id,
            iam,
            account_id,
            entries,
            known,
            scope,
            report,
        )
        .await
    }

    /// [`Engine::converge_account`] under a given cluster id; the account's writes and call
    /// counts are appended to `report` whatever the outcome.
    #[allow(clippy::too_many_arguments)]
    async fn converge_account_as(
        &self,
        cluster: &str,
        iam: &dyn Iam,
        account_id: &str,
        entries: &[DesiredEntry],
        known: &[Principal],
        scope: &AccountScope,
        report: &mut ConvergeReport,
    ) -> Result<(), EnforceError> {
        let recorder = Recorder::new(iam);
        let result = self
            .converge_account_inner(
                cluster, &recorder, account_id, entries, known, scope, report,
            )
            .await;
        report.writes.extend(recorder.writes());
        report.merge_calls(recorder.stats());
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn converge_account_inner(
        &self,
        cluster: &str,
        rec: &Recorder<'_>,
        account_id: &str,
        entries: &[DesiredEntry],
        known: &[Principal],
        scope: &AccountScope,
        report: &mut ConvergeReport,
    ) -> Result<(), EnforceError> {
        let gate = scope.gate;
        let partition = entries
            .iter()
            .flat_map(|d| d.targets.iter().map(|(p, _)| p.partition.clone()))
            .chain(known.iter().map(|p| p.partition.clone()))
            .next()
            .unwrap_or_else(|| "aws".to_string());
        let mut observed = match self
            .gather(cluster, rec, account_id, &partition, entries, known, scope)
            .await?
        {
            Ok(o) => o,
            Err(e) => {
                for d in entries {
                    for (t, _) in &d.targets {
                        report.targets.push(TargetStatus {
                            key: Some(d.key.clone()),
                            arn: t.arn.clone(),
                            state: TargetState::Failed,
                            attachment: None,
                            confirmed: false,
                            last_error: Some(e.full_message()),
                            error_category: Some(e.category()),
                        });
                    }
                }
                report.errors.push(ErrorRecord {
                    account_id: account_id.to_string(),
                    category: e.category(),
                    message: e.full_message(),
                });
                return Ok(());
            }
        };
        report
            .foreign_policies
            .extend(observed.foreign_policies.iter().cloned());
        let owned = self.recent_owned(account_id);
        let recent: BTreeSet<WriteKey> = owned.iter().map(|(k, _)| k.clone()).collect();
        observed.recent_writes = owned
            .into_iter()
            .filter(|(_, owner)| scope.scope.includes(owner))
            .collect();
        let plan = plan_account(
            &partition,
            account_id,
            entries,
            &observed,
            &self.config.protected,
            &recent,
        );
        self.execute(cluster, rec, account_id, &partition, plan, gate, report)
            .await
    }

    /// Reads the state of one account. The outer `Result` is a crash abort; the inner one a
    /// failure to read something without which the account cannot be planned.
    #[allow(clippy::too_many_arguments)]
    async fn gather(
        &self,
        cluster: &str,
        iam: &dyn Iam,
        account_id: &str,
        partition: &str,
        entries: &[DesiredEntry],
        known: &[Principal],
        scope: &AccountScope,
    ) -> Result<Result<ObservedAccount, EnforceError>, EnforceError> {
        let protected = &self.config.protected;
        let gather_err = |what: String, source: AwsError| EnforceError::Gather {
            account_id: account_id.to_string(),
            what,
            source,
        };
        let mut observed = ObservedAccount::default();
        let listed = match crashed(iam.list_policies(POLICY_PATH).await)? {
            Ok(l) => l,
            Err(e) => return Ok(Err(gather_err("deny policies".to_string(), e))),
        };
        let desired_docs: BTreeMap<&str, &DesiredEntry> =
            entries.iter().map(|d| (d.policy_arn.as_str(), d)).collect();
        for pol in listed {
            if pol.path == POLICY_PATH && super::boundary::is_boundary_name(&pol.name) {
                continue; // a boundary policy: the boundary executor's (decision 240)
            }
            if pol.path != POLICY_PATH || !pol.name.starts_with(MANAGED_POLICY_PREFIX) {
                observed.foreign_policies.push(pol.arn);
                continue;
            }
            if !scope.managed_name(&pol.name) {
                continue; // another quarantine's policy: out of this run's scope
            }
            let tags = match crashed(iam.list_policy_tags(&pol.arn).await)? {
                Ok(t) => t,
                Err(e) if e.code == ErrorCode::NoSuchEntity => continue,
                Err(e) => return Ok(Err(gather_err(format!("tags of {}", pol.arn), e))),
            };
            let Some(owner) = owner_of_policy(cluster, account_id, &pol.path, &pol.name, &tags)
            else {
                observed.foreign_policies.push(pol.arn);
                continue;
            };
            if !scope.scope.includes(&owner) {
                continue;
            }
            let (entities, groups) = match crashed(iam.list_entities_for_policy(&pol.arn).await)? {
                Ok(e) => (e.principals, e.groups),
                Err(e) if e.code == ErrorCode::NoSuchEntity => continue,
                Err(e) => return Ok(Err(gather_err(format!("attachments of {}", pol.arn), e))),
            };
            let desired = desired_docs.get(pol.arn.as_str());
            let mut default_document = None;
            if desired.is_some() {
                match crashed(
                    iam.get_policy_version(&pol.arn, &pol.default_version_id)
                        .await,
                )? {
                    Ok(v) => default_document = v.document,
                    Err(e) if e.code == ErrorCode::NoSuchEntity => {}
                    Err(e) => return Ok(Err(gather_err(format!("document of {}", pol.arn), e))),
                }
            }
            let differs = match (desired, &default_document) {
                (Some(d), Some(doc)) => !ownership::same_document(doc, &d.document),
                (None, _) => true, // orphan: versions must go before DeletePolicy
                (Some(_), None) => false,
            };
            let mut non_default_versions = None;
            if differs {
                match crashed(iam.list_policy_versions(&pol.arn).await)? {
                    Ok(vs) => {
                        non_default_versions = Some(
                            vs.into_iter()
                                .filter(|v| !v.is_default)
                                .map(|v| v.version_id)
                                .collect(),
                        )
                    }
                    Err(e) if e.code == ErrorCode::NoSuchEntity => {}
                    Err(e) => return Ok(Err(gather_err(format!("versions of {}", pol.arn), e))),
                }
            }
            observed.policies.push(ObservedPolicy {
                arn: pol.arn,
                name: pol.name,
                owner,
                default_version_id: pol.default_version_id,
                default_document,
                non_default_versions,
                entities,
                groups,
            });
        }

        // Principals to read: desired targets, known principals, entities of our policies.
        let mut principals: BTreeSet<PrincipalRef> = BTreeSet::new();
        for d in entries {
            principals.extend(d.targets.iter().map(|(p, _)| p.reference()));
        }
        principals.extend(known.iter().map(|p| p.reference()));
        for pol in &observed.policies {
            principals.extend(pol.entities.iter().cloned());
        }
        let mut any_unattached = false;
        let mut reads: BTreeMap<PrincipalRef, ObservedPrincipal> = BTreeMap::new();
        for pref in principals {
            if protected.contains_ref(partition, account_id, &pref) {
                continue; // never even read a protected principal
            }
            let mut state = self.read_principal(cluster, iam, &pref).await?;
            if let ObservedPrincipal::Present { inline_ours, .. } = &mut state {
                inline_ours.retain(|name, _| scope.inline_name(name));
            }
            if let ObservedPrincipal::Present {
                attached_our_path,
                inline_ours,
                ..
            } = &state
            {
                let desired_here = entries
                    .iter()
                    .filter(|d| d.targets.iter().any(|(t, _)| t.reference() == pref));
                for d in desired_here {
                    if !attached_our_path.contains(&d.policy_arn)
                        && !inline_ours.contains_key(&d.inline_name)
                    {
                        any_unattached = true;
                    }
                }
            }
            reads.insert(pref, state);
        }
        observed.principals = reads;
        if any_unattached {
            match crashed(iam.get_account_summary().await)? {
                Ok(s) => observed.quota = Some(s),
                Err(_) => observed.quota = None, // fall back to trying the managed attach
            }
        }
        Ok(Ok(observed))
    }

    async fn read_principal(
        &self,
        cluster: &str,
        iam: &dyn Iam,
        pref: &PrincipalRef,
    ) -> Result<ObservedPrincipal, EnforceError> {
        let attached = match crashed(iam.list_attached_policies(pref, None).await)? {
            Ok(a) => a,
            Err(e) if e.code == ErrorCode::NoSuchEntity => return Ok(ObservedPrincipal::Missing),
            Err(e) => return Ok(ObservedPrincipal::Unreadable(e.to_string(), e.category())),
        };
        let names = match crashed(iam.list_inline_policies(pref).await)? {
            Ok(n) => n,
            Err(e) if e.code == ErrorCode::NoSuchEntity => return Ok(ObservedPrincipal::Missing),
            Err(e) => return Ok(ObservedPrincipal::Unreadable(e.to_string(), e.category())),
        };
        let mut inline_ours = BTreeMap::new();
        for name in names
            .into_iter()
            .filter(|n| n.starts_with(INLINE_POLICY_PREFIX))
        {
            match crashed(iam.get_inline_policy(pref, &name).await)? {
                Ok(doc) => {
                    if is_our_inline_policy(cluster, &name, &doc) {
                        inline_ours.insert(name, doc);
                    }
                }
                Err(e) if e.code == ErrorCode::NoSuchEntity => {}
                Err(e) => return Ok(ObservedPrincipal::Unreadable(e.to_string(), e.category())),
            }
        }
        let our_path_prefix = format!(":policy{POLICY_PATH}");
        Ok(ObservedPrincipal::Present {
            attached_total: attached.len(),
            attached_our_path: attached
                .into_iter()
                .filter(|a| a.arn.contains(&our_path_prefix))
                .map(|a| a.arn)
                .collect(),
            inline_ours,
        })
    }

    #[allow(clippy::too_many_lines, clippy::too_many_arguments)]
    async fn execute(
        &self,
        cluster: &str,
        rec: &Recorder<'_>,
        account_id: &str,
        partition: &str,
        plan: Plan,
        gate: WriteGate,
        report: &mut ConvergeReport,
    ) -> Result<(), EnforceError> {
        // Refused releases are reported on their own (not as errors): the caller decides whether
        // a deny left on a protected principal ends the release (decision 093).
        for (p, name) in &plan.refused_releases {
            report.refused_releases.push(format!(
                "refusing to release {name} from protected {} {}",
                p.kind, p.name
            ));
        }
        for (p, message, category) in &plan.unreadable {
            report.errors.push(ErrorRecord {
                account_id: account_id.to_string(),
                category: *category,
                message: format!(
                    "cannot tell whether {} {} still holds a deny of ours: {message}",
                    p.kind, p.name
                ),
            });
        }

        let mut run = steps::Run {
            engine: self,
            cluster,
            rec,
            account_id,
            partition,
            report,
            failed_keys: BTreeMap::new(),
            failed_policies: BTreeSet::new(),
            outcomes: BTreeMap::new(),
        };
        for step in &plan.steps {
            let class = step.class();
            let allowed = gate.allows(class);
            rec.allow_writes(allowed);
            let outcome = run.step(step, allowed).await?;
            if let StepOutcome::Failed { category, message } = &outcome {
                run.report.errors.push(ErrorRecord {
                    account_id: account_id.to_string(),
                    category: *category,
                    message: message.clone(),
                });
            }
            run.report.steps.push(StepRecord {
                account_id: account_id.to_string(),
                class,
                description: step.describe(),
                outcome,
            });
        }
        let mut outcomes = run.outcomes;
        rec.allow_writes(false);

        for (key, principal, expectation) in plan.targets {
            let status = match expectation {
                TargetExpectation::InPlace(att) => TargetStatus {
                    key: Some(key.clone()),
                    arn: principal.arn.clone(),
                    state: TargetState::Attached,
                    attachment: Some(att),
                    confirmed: true,
                    last_error: None,
                    error_category: None,
                },
                TargetExpectation::AwaitingConfirmation(att) => TargetStatus {
                    key: Some(key.clone()),
                    arn: principal.arn.clone(),
                    state: TargetState::Attached,
                    attachment: Some(att),
                    confirmed: false,
                    last_error: None,
                    error_category: None,
                },
                TargetExpectation::Blocked(msg, cat) => {
                    report.errors.push(ErrorRecord {
                        account_id: account_id.to_string(),
                        category: cat,
                        message: msg.clone(),
                    });
                    failed_status(&key, &principal.arn, cat, msg)
                }
                TargetExpectation::Planned => outcomes
                    .remove(&(key.clone(), principal.reference()))
                    .unwrap_or_else(|| {
                        failed_status(
                            &key,
                            &principal.arn,
                            ErrorCategory::Transient,
                            "planned step did not run".to_string(),
                        )
                    }),
            };
            report.targets.push(status);
        }
        Ok(())
    }

    /// Steady-state check of one Active target: exactly one read, zero writes.
    ///
    /// Managed: `ListAttached{Role,User}Policies` filtered to our path shows our policy ARN.
    /// Inline: `Get{Role,User}Policy` returns our document (this also checks its integrity).
    /// The managed document's integrity is checked by the full converge (less often).
    pub async fn verify_target(
        &self,
        iam: &dyn Iam,
        target: &DesiredTarget,
        attachment: &Attachment,
        document: &str,
    ) -> Result<Verification, EnforceError> {
        self.verify_target_as(&self.config.cluster_id, iam, target, attachment, document)
            .await
    }

    /// [`Engine::verify_target`] under the cluster id the quarantine's objects were written with.
    pub async fn verify_target_as(
        &self,
        cluster: &str,
        iam: &dyn Iam,
        target: &DesiredTarget,
        attachment: &Attachment,
        document: &str,
    ) -> Result<Verification, EnforceError> {
        let principal = match parse_principal(target.kind, &target.arn) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Verification {
                    outcome: Verified::Error(ErrorCategory::Invalid, e),
                    calls: CallStats::default(),
                });
            }
        };
        if self.config.protected.contains_ref(
            &principal.partition,
            &principal.account_id,
            &principal.reference(),
        ) {
            return Ok(Verification {
                outcome: Verified::Error(
                    ErrorCategory::Invalid,
                    format!("{} is a protected principal", target.arn),
                ),
                calls: CallStats::default(),
            });
        }
        let rec = Recorder::new(iam);
        let pref = principal.reference();
        let account = principal.account_id.clone();
        let recent = self.recent_for(&account);
        let outcome = match attachment.kind {
            AttachmentKind::Managed => {
                let arn = managed_policy_arn(&principal.partition, &account, &attachment.name);
                match crashed(rec.list_attached_policies(&pref, Some(POLICY_PATH)).await)? {
                    Ok(list) if list.iter().any(|a| a.arn == arn) => Verified::Present,
                    Ok(_) if recent.contains(&WriteKey::Attachment(pref.clone(), arn)) => {
                        Verified::AwaitingConfirmation
                    }
                    Ok(_) => Verified::Missing,
                    Err(e) => Verified::Error(e.category(), e.to_string()),
                }
            }
            AttachmentKind::Inline => {
                let expected = ownership::mark_document(cluster, document).unwrap_or_default();
                let recently =
                    recent.contains(&WriteKey::Inline(pref.clone(), attachment.name.clone()));
                match crashed(rec.get_inline_policy(&pref, &attachment.name).await)? {
                    Ok(doc) if ownership::same_document(&doc, &expected) => Verified::Present,
                    Ok(_)
                    | Err(AwsError {
                        code: ErrorCode::NoSuchEntity,
                        ..
                    }) if recently => Verified::AwaitingConfirmation,
                    Ok(_)
                    | Err(AwsError {
                        code: ErrorCode::NoSuchEntity,
                        ..
                    }) => Verified::Missing,
                    Err(e) => Verified::Error(e.category(), e.to_string()),
                }
            }
        };
        Ok(Verification {
            outcome,
            calls: rec.stats(),
        })
    }
}

fn name_of(policy_arn: &str) -> String {
    policy_arn
        .rsplit('/')
        .next()
        .unwrap_or(policy_arn)
        .to_string()
}

fn fail_msg(step: &Step, e: &AwsError) -> String {
    EnforceError::Step {
        step: step.describe(),
        source: e.clone(),
    }
    .full_message()
}

fn failed_status(key: &QuarantineKey, arn: &str, cat: ErrorCategory, msg: String) -> TargetStatus {
    TargetStatus {
        key: Some(key.clone()),
        arn: arn.to_string(),
        state: TargetState::Failed,
        attachment: None,
        confirmed: false,
        last_error: Some(msg),
        error_category: Some(cat),
    }
}

fn attached_status(
    key: &QuarantineKey,
    principal: &Principal,
    kind: AttachmentKind,
    name: &str,
    performed: bool,
) -> TargetStatus {
    TargetStatus {
        key: Some(key.clone()),
        arn: principal.arn.clone(),
        state: if performed {
            TargetState::Attached
        } else {
            TargetState::Planned
        },
        attachment: Some(Attachment {
            kind,
            name: name.to_string(),
        }),
        confirmed: false,
        last_error: None,
        error_category: None,
    }
}

fn released_status(
    key: Option<QuarantineKey>,
    arn: String,
    kind: AttachmentKind,
    name: String,
    performed: bool,
) -> TargetStatus {
    TargetStatus {
        key,
        arn,
        state: if performed {
            TargetState::Detached
        } else {
            TargetState::Planned
        },
        attachment: Some(Attachment { kind, name }),
        confirmed: false,
        last_error: None,
        error_category: None,
    }
}
