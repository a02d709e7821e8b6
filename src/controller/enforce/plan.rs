//! The pure IAM enforcement planner: desired quarantines + observed IAM state → ordered steps.
//! No async, no I/O, no clock: recent writes come in as data. It must never plan a step on a
//! protected principal, on an object it cannot prove is ours, or on another cluster's object.

use crate::principal::{Identity, PrincipalArn, PrincipalError, PrincipalSet};
use std::collections::{BTreeMap, BTreeSet};

use crate::aws::{AccountSummary, ErrorCategory, PrincipalKind, PrincipalRef, Tag};

use super::ownership::{
    self, Principal, QuarantineKey, inline_policy_name, managed_policy_arn, managed_policy_name,
    mark_document, ownership_tags, parse_principal,
};

/// One target of a desired quarantine, as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTarget {
    /// Role or user.
    pub kind: PrincipalKind,
    /// The principal ARN.
    pub arn: String,
    /// Whether status says our deny was already attached (a missing attachment is then drift).
    pub attached_before: bool,
}

/// One Active quarantine's enforcement, as plain data (no CRD types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredQuarantine {
    /// Namespace, name and uid.
    pub key: QuarantineKey,
    /// The signal's account (informational; targets are grouped by the account in their ARN).
    pub account_id: String,
    /// The principals to deny.
    pub targets: Vec<DesiredTarget>,
    /// The deny policy document JSON (from the document builder), opaque here.
    pub document: String,
}

/// Principals that must never be touched (controller config), compared by IAM's rule through
/// the one principal type (`crate::principal`): name without regard to case, path ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectedPrincipals {
    set: PrincipalSet,
}

impl ProtectedPrincipals {
    /// Builds the set.
    pub fn new(set: PrincipalSet) -> Self {
        ProtectedPrincipals { set }
    }
    /// Builds the set from ARNs; an invalid ARN is an error.
    pub fn parse<I: IntoIterator<Item = S>, S: AsRef<str>>(
        arns: I,
    ) -> Result<Self, PrincipalError> {
        Ok(ProtectedPrincipals {
            set: PrincipalSet::parse_all(arns)?,
        })
    }
    /// Whether a principal is protected.
    pub fn contains(&self, principal: &PrincipalArn) -> bool {
        self.set.contains(principal)
    }
    /// Whether a principal of an account, addressed by kind+name, is protected (any IAM path).
    pub fn contains_ref(&self, partition: &str, account_id: &str, p: &PrincipalRef) -> bool {
        self.set
            .contains_identity(&Identity::of_reference(partition, account_id, p))
    }
}

/// How a deny is attached to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttachmentKind {
    /// Our customer-managed policy is attached.
    Managed,
    /// Our inline policy (reserved name) is put on the principal.
    Inline,
}

/// The attachment a target carries: kind and policy name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attachment {
    /// Managed or inline.
    pub kind: AttachmentKind,
    /// Policy name.
    pub name: String,
}

/// One desired quarantine resolved for one account (names, ARN, marked document, parsed targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredEntry {
    /// Quarantine identity.
    pub key: QuarantineKey,
    /// Account id.
    pub account_id: String,
    /// Managed policy name.
    pub policy_name: String,
    /// Managed policy ARN.
    pub policy_arn: String,
    /// Inline fallback policy name.
    pub inline_name: String,
    /// The managed policy document: the builder's JSON, unchanged (ownership is in the tags).
    pub document: String,
    /// The inline fallback document: the same JSON with every `Sid` carrying the cluster marker.
    pub inline_document: String,
    /// Ownership tags for `CreatePolicy`.
    pub tags: Vec<Tag>,
    /// Targets in this account, with "was attached before" flags.
    pub targets: Vec<(Principal, bool)>,
}

/// A target that cannot be enforced at all, decided before any AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Quarantine identity.
    pub key: QuarantineKey,
    /// Target ARN.
    pub arn: String,
    /// Why.
    pub reason: String,
    /// Category (`Invalid` for bad ARNs/documents and protected principals).
    pub category: ErrorCategory,
}

/// Resolution of desired quarantines into per-account entries plus up-front rejections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Entries per account id.
    pub accounts: BTreeMap<String, Vec<DesiredEntry>>,
    /// Targets refused before any call (protected, unparsable, bad document).
    pub rejected: Vec<Rejection>,
}

/// Resolves desired quarantines: parses targets, refuses protected ones, marks documents.
pub fn resolve(
    cluster_id: &str,
    desired: &[DesiredQuarantine],
    protected: &ProtectedPrincipals,
) -> Resolved {
    let mut out = Resolved::default();
    for q in desired {
        let inline_document = match mark_document(cluster_id, &q.document) {
            Ok(d) => d,
            Err(e) => {
                for t in &q.targets {
                    out.rejected.push(Rejection {
                        key: q.key.clone(),
                        arn: t.arn.clone(),
                        reason: e.to_string(),
                        category: ErrorCategory::Invalid,
                    });
                }
                continue;
            }
        };
        let document = q.document.clone();
        let size = crate::aws::limits::policy_size(&document);
        let too_big = size > crate::aws::limits::MANAGED_POLICY;
        let mut by_account: BTreeMap<String, Vec<(Principal, bool)>> = BTreeMap::new();
        for t in &q.targets {
            let reject = |reason: String| Rejection {
                key: q.key.clone(),
                arn: t.arn.clone(),
                reason,
                category: ErrorCategory::Invalid,
            };
            let parsed = parse_principal(t.kind, &t.arn);
            if let Ok(p) = &parsed
                && protected.contains_ref(&p.partition, &p.account_id, &p.reference())
            {
                // The one rule: any case, any path, same account and partition.
                out.rejected.push(reject(format!(
                    "refusing to deny {}: it is a protected principal",
                    t.arn
                )));
                continue;
            }
            if too_big {
                out.rejected.push(reject(format!(
                    "deny document is {size} characters, over the managed policy limit of {}",
                    crate::aws::limits::MANAGED_POLICY
                )));
                continue;
            }
            match parsed {
                Ok(p) => {
                    let list = by_account.entry(p.account_id.clone()).or_default();
                    if !list.iter().any(|(x, _)| x.reference() == p.reference()) {
                        list.push((p, t.attached_before));
                    }
                }
                Err(e) => out.rejected.push(reject(e)),
            }
        }
        for (account, targets) in by_account {
            let partition = targets
                .first()
                .map(|(p, _)| p.partition.clone())
                .unwrap_or_else(|| "aws".to_string());
            let policy_name = managed_policy_name(cluster_id, &q.key, &account);
            out.accounts
                .entry(account.clone())
                .or_default()
                .push(DesiredEntry {
                    key: q.key.clone(),
                    policy_arn: managed_policy_arn(&partition, &account, &policy_name),
                    policy_name,
                    inline_name: inline_policy_name(cluster_id, &q.key, &account),
                    document: document.clone(),
                    inline_document: inline_document.clone(),
                    tags: ownership_tags(cluster_id, &q.key),
                    account_id: account,
                    targets,
                });
        }
    }
    out
}

/// One of our managed policies as observed (ownership already proven by tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPolicy {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// The owning quarantine (from tags).
    pub owner: QuarantineKey,
    /// Default version id.
    pub default_version_id: String,
    /// Default version document (decoded), when read.
    pub default_document: Option<String>,
    /// Non-default version ids, when listed (oldest first).
    pub non_default_versions: Option<Vec<String>>,
    /// Roles/users it is attached to.
    pub entities: Vec<PrincipalRef>,
    /// IAM groups it is attached to (never by us: someone attached it by hand; detached on release).
    pub groups: Vec<String>,
}

/// What a read of one principal showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedPrincipal {
    /// `NoSuchEntity`.
    Missing,
    /// The reads failed (message, category); nothing is planned for it.
    Unreadable(String, ErrorCategory),
    /// The principal as read.
    Present {
        /// ARNs of attached managed policies under our path (ours or not).
        attached_our_path: Vec<String>,
        /// Total managed policies attached (for the quota).
        attached_total: usize,
        /// Our inline policies (reserved prefix and marker verified): name → document.
        inline_ours: BTreeMap<String, String>,
    },
}

/// The observed IAM state of one account, restricted to what the engine may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedAccount {
    /// Our managed policies.
    pub policies: Vec<ObservedPolicy>,
    /// Principals that were read.
    pub principals: BTreeMap<PrincipalRef, ObservedPrincipal>,
    /// Quotas, when read.
    pub quota: Option<AccountSummary>,
    /// Policies under our path that failed the ownership proof (never touched; for audit).
    pub foreign_policies: Vec<String>,
    /// This engine's own writes within the settle window, with the quarantine each was made for
    /// (already restricted to the run's scope). A read may not show them yet; release removes
    /// them anyway (decision 090).
    pub recent_writes: Vec<(WriteKey, QuarantineKey)>,
}

/// Something we wrote recently enough that a read saying "missing" is not trusted yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteKey {
    /// We created this policy.
    Policy(String),
    /// We attached this policy ARN to this principal.
    Attachment(PrincipalRef, String),
    /// We put this inline policy on this principal.
    Inline(PrincipalRef, String),
    /// We created a new default version of this policy.
    Version(String),
}

/// Whether a step enforces (suppressed by dry-run and the kill switch) or releases (always runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepClass {
    /// Creates or repairs a deny.
    Enforce,
    /// Removes a deny or one of our objects.
    Release,
}

/// An inline policy to put when the managed attachment hits the quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSpec {
    /// Reserved-prefix name.
    pub name: String,
    /// Marked document.
    pub document: String,
}

/// One planned AWS write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the quarantine's managed policy with path and ownership tags in one call.
    CreatePolicy {
        /// Owner.
        key: QuarantineKey,
        /// Name.
        name: String,
        /// Deterministic ARN.
        arn: String,
        /// Document.
        document: String,
        /// Ownership tags.
        tags: Vec<Tag>,
    },
    /// Delete a non-default version (repair pruning or before deleting the policy).
    DeletePolicyVersion {
        /// Owner.
        key: QuarantineKey,
        /// Policy ARN.
        policy_arn: String,
        /// Version id.
        version_id: String,
        /// Enforce (repair) or Release (cleanup).
        class: StepClass,
    },
    /// Restore an edited document as a new default version.
    RestoreDocument {
        /// Owner.
        key: QuarantineKey,
        /// Policy ARN.
        policy_arn: String,
        /// Desired document.
        document: String,
        /// The edited default version to delete after the restore.
        replaced_version: String,
    },
    /// Attach the managed policy; on `LimitExceeded` put the inline fallback instead.
    AttachManaged {
        /// Owner.
        key: QuarantineKey,
        /// Target.
        principal: Principal,
        /// Policy ARN.
        policy_arn: String,
        /// Fallback.
        fallback: InlineSpec,
        /// True when this re-attaches a removed attachment (drift repair).
        repair: bool,
    },
    /// Put the inline policy (quota known full, or restoring an edited/removed inline policy).
    PutInline {
        /// Owner.
        key: QuarantineKey,
        /// Target.
        principal: Principal,
        /// Name and document.
        inline: InlineSpec,
        /// True for drift repair.
        repair: bool,
    },
    /// Detach one of our managed policies from a principal.
    DetachManaged {
        /// Owner of the policy.
        key: QuarantineKey,
        /// Principal.
        principal: PrincipalRef,
        /// Policy ARN.
        policy_arn: String,
    },
    /// Delete one of our inline policies from a principal.
    DeleteInline {
        /// Principal.
        principal: PrincipalRef,
        /// Inline policy name.
        name: String,
    },
    /// Detach one of our managed policies from an IAM group someone attached it to (release only).
    DetachGroup {
        /// Owner of the policy.
        key: QuarantineKey,
        /// Group name.
        group: String,
        /// Policy ARN.
        policy_arn: String,
    },
    /// Delete one of our managed policies (after detaching it everywhere and pruning versions).
    DeletePolicy {
        /// Owner.
        key: QuarantineKey,
        /// Policy ARN.
        policy_arn: String,
    },
}

impl Step {
    /// Enforce or Release.
    pub fn class(&self) -> StepClass {
        match self {
            Step::CreatePolicy { .. }
            | Step::RestoreDocument { .. }
            | Step::AttachManaged { .. }
            | Step::PutInline { .. } => StepClass::Enforce,
            Step::DeletePolicyVersion { class, .. } => *class,
            Step::DetachManaged { .. }
            | Step::DetachGroup { .. }
            | Step::DeleteInline { .. }
            | Step::DeletePolicy { .. } => StepClass::Release,
        }
    }

    /// A one-line human description for Events and logs.
    pub fn describe(&self) -> String {
        match self {
            Step::CreatePolicy { arn, .. } => format!("create deny policy {arn}"),
            Step::DeletePolicyVersion {
                policy_arn,
                version_id,
                ..
            } => format!("delete version {version_id} of {policy_arn}"),
            Step::RestoreDocument { policy_arn, .. } => {
                format!("restore edited document of {policy_arn}")
            }
            Step::AttachManaged {
                principal,
                policy_arn,
                ..
            } => format!("attach {policy_arn} to {}", principal.arn),
            Step::PutInline {
                principal, inline, ..
            } => format!("put inline policy {} on {}", inline.name, principal.arn),
            Step::DetachManaged {
                principal,
                policy_arn,
                ..
            } => format!(
                "detach {policy_arn} from {} {}",
                principal.kind, principal.name
            ),
            Step::DeleteInline { principal, name } => {
                format!(
                    "delete inline policy {name} from {} {}",
                    principal.kind, principal.name
                )
            }
            Step::DetachGroup {
                group, policy_arn, ..
            } => format!("detach {policy_arn} from group {group}"),
            Step::DeletePolicy { policy_arn, .. } => format!("delete deny policy {policy_arn}"),
        }
    }
}

/// What the planner expects for a desired target before execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetExpectation {
    /// Already enforced as observed; nothing to do.
    InPlace(Attachment),
    /// A step will (re-)enforce it.
    Planned,
    /// A read says missing but we wrote it within the settle window: wait for a confirming read.
    AwaitingConfirmation(Attachment),
    /// Cannot be planned (principal missing or unreadable).
    Blocked(String, ErrorCategory),
}

/// The plan for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ordered steps: releases first, then enforcement.
    pub steps: Vec<Step>,
    /// Expectations for every desired target in the account.
    pub targets: Vec<(QuarantineKey, Principal, TargetExpectation)>,
    /// Release steps refused because the principal is protected (principal, policy or inline name).
    pub refused_releases: Vec<(PrincipalRef, String)>,
    /// Principals that may hold one of our denies but could not be read (principal, message,
    /// category): the run is not clean until they are read (decision 090).
    pub unreadable: Vec<(PrincipalRef, String, ErrorCategory)>,
}

/// Plans one account. Pure and deterministic. The plan is built in a fixed order of steps, one
/// method each on [`Planner`]: releases first (attachments not desired, our recent writes a read
/// does not show yet, orphan policies, policies created moments ago), then enforcement (each
/// desired quarantine's document, then each of its targets).
pub fn plan_account(
    partition: &str,
    account_id: &str,
    desired: &[DesiredEntry],
    observed: &ObservedAccount,
    protected: &ProtectedPrincipals,
    recent: &BTreeSet<WriteKey>,
) -> Plan {
    let mut planner = Planner::new(partition, account_id, desired, observed, protected, recent);
    planner.release_undesired_attachments();
    planner.release_unconfirmed_writes();
    planner.release_orphan_policies();
    planner.release_unlisted_policies();
    for d in desired {
        planner.enforce_document(d);
        for (target, attached_before) in &d.targets {
            let expectation = planner.enforce_target(d, target, *attached_before);
            planner
                .plan
                .targets
                .push((d.key.clone(), target.clone(), expectation));
        }
    }
    planner.plan
}

/// The inputs of one account's plan, indexed once, and the plan being built.
struct Planner<'a> {
    partition: &'a str,
    account_id: &'a str,
    desired: &'a [DesiredEntry],
    observed: &'a ObservedAccount,
    protected: &'a ProtectedPrincipals,
    recent: &'a BTreeSet<WriteKey>,
    desired_by_key: BTreeMap<&'a QuarantineKey, &'a DesiredEntry>,
    desired_inline: BTreeMap<&'a str, &'a DesiredEntry>,
    our_policy_arns: BTreeMap<&'a str, &'a ObservedPolicy>,
    /// (principal, policy) pairs a release step already detaches.
    detached: BTreeSet<(PrincipalRef, String)>,
    /// Our policies that stay because a protected principal holds them.
    blocked_policies: BTreeSet<String>,
    plan: Plan,
}

impl<'a> Planner<'a> {
    fn new(
        partition: &'a str,
        account_id: &'a str,
        desired: &'a [DesiredEntry],
        observed: &'a ObservedAccount,
        protected: &'a ProtectedPrincipals,
        recent: &'a BTreeSet<WriteKey>,
    ) -> Self {
        Planner {
            partition,
            account_id,
            desired,
            observed,
            protected,
            recent,
            desired_by_key: desired.iter().map(|d| (&d.key, d)).collect(),
            desired_inline: desired
                .iter()
                .map(|d| (d.inline_name.as_str(), d))
                .collect(),
            our_policy_arns: observed
                .policies
                .iter()
                .map(|p| (p.arn.as_str(), p))
                .collect(),
            detached: BTreeSet::new(),
            blocked_policies: BTreeSet::new(),
            plan: Plan::default(),
        }
    }

    fn is_protected(&self, p: &PrincipalRef) -> bool {
        self.protected
            .contains_ref(self.partition, self.account_id, p)
    }

    /// Is `p` a target of the desired quarantine `key`?
    fn wanted(&self, key: &QuarantineKey, p: &PrincipalRef) -> bool {
        self.desired_by_key
            .get(key)
            .is_some_and(|d| d.targets.iter().any(|(t, _)| &t.reference() == p))
    }

    /// Is `p` a target of any desired quarantine?
    fn desired_target(&self, p: &PrincipalRef) -> bool {
        self.desired
            .iter()
            .any(|d| d.targets.iter().any(|(t, _)| &t.reference() == p))
    }

    /// Detaches `arn` from `principal` for `key`, once.
    fn detach(&mut self, key: &QuarantineKey, principal: &PrincipalRef, arn: &str) {
        self.detached.insert((principal.clone(), arn.to_string()));
        self.plan.steps.push(Step::DetachManaged {
            key: key.clone(),
            principal: principal.clone(),
            policy_arn: arn.to_string(),
        });
    }

    /// Deletes every non-default version of `pol` for `key` (before it is deleted or restored).
    fn prune_versions(&mut self, key: &QuarantineKey, pol: &ObservedPolicy, class: StepClass) {
        for v in pol.non_default_versions.iter().flatten() {
            self.plan.steps.push(Step::DeletePolicyVersion {
                key: key.clone(),
                policy_arn: pol.arn.clone(),
                version_id: v.clone(),
                class,
            });
        }
    }

    /// Release: our managed and inline policies on principals read, where not desired (or an
    /// inline duplicate of a present managed attachment). Unreadable principals are reported.
    fn release_undesired_attachments(&mut self) {
        let observed = self.observed;
        for (pref, obs) in &observed.principals {
            if let ObservedPrincipal::Unreadable(message, category) = obs
                && !self.desired_target(pref)
            {
                // It may carry an inline deny of ours that no list shows: not released until read.
                // (A desired target that cannot be read is reported by its expectation.)
                self.plan
                    .unreadable
                    .push((pref.clone(), message.clone(), *category));
            }
            let ObservedPrincipal::Present {
                attached_our_path,
                inline_ours,
                ..
            } = obs
            else {
                continue;
            };
            for arn in attached_our_path {
                let Some(pol) = self.our_policy_arns.get(arn.as_str()).copied() else {
                    continue; // under our path but not provably ours: never touch
                };
                if self.wanted(&pol.owner, pref) {
                    continue;
                }
                if self.is_protected(pref) {
                    self.plan.refused_releases.push((pref.clone(), arn.clone()));
                    self.blocked_policies.insert(arn.clone());
                    continue;
                }
                self.detach(&pol.owner, pref, arn);
            }
            for name in inline_ours.keys() {
                let keep = self.desired_inline.get(name.as_str()).is_some_and(|d| {
                    self.wanted(&d.key, pref)
                        && !attached_our_path.contains(&d.policy_arn)
                        && !self
                            .recent
                            .contains(&WriteKey::Attachment(pref.clone(), d.policy_arn.clone()))
                });
                if keep {
                    continue;
                }
                if self.is_protected(pref) {
                    self.plan
                        .refused_releases
                        .push((pref.clone(), name.clone()));
                    continue;
                }
                self.plan.steps.push(Step::DeleteInline {
                    principal: pref.clone(),
                    name: name.clone(),
                });
            }
        }
    }

    /// Release: our own recent attachments and inline policies that a lagging read does not
    /// show yet (decision 090).
    fn release_unconfirmed_writes(&mut self) {
        let observed = self.observed;
        for (write, owner) in &observed.recent_writes {
            match write {
                WriteKey::Attachment(pref, arn) => {
                    if self.wanted(owner, pref)
                        || self.is_protected(pref)
                        || self.detached.contains(&(pref.clone(), arn.clone()))
                        || shows_attached(observed, pref, arn)
                    {
                        continue;
                    }
                    self.detach(owner, pref, arn);
                }
                WriteKey::Inline(pref, name) => {
                    let keep = self
                        .desired_inline
                        .get(name.as_str())
                        .is_some_and(|d| self.wanted(&d.key, pref));
                    if keep || self.is_protected(pref) || shows_inline(observed, pref, name) {
                        continue;
                    }
                    self.plan.steps.push(Step::DeleteInline {
                        principal: pref.clone(),
                        name: name.clone(),
                    });
                }
                WriteKey::Policy(_) | WriteKey::Version(_) => {}
            }
        }
    }

    /// Release: our policies whose owner is not desired in this account: detached from groups and
    /// principals (never from a protected one, which keeps the policy), versions pruned, deleted.
    fn release_orphan_policies(&mut self) {
        let observed = self.observed;
        for pol in &observed.policies {
            if self.desired_by_key.contains_key(&pol.owner) {
                continue;
            }
            for group in &pol.groups {
                // Someone attached our deny to a group: its members hold it. Detach (release only).
                self.plan.steps.push(Step::DetachGroup {
                    key: pol.owner.clone(),
                    group: group.clone(),
                    policy_arn: pol.arn.clone(),
                });
            }
            let mut blocked = self.blocked_policies.contains(&pol.arn);
            for e in &pol.entities {
                if self.detached.contains(&(e.clone(), pol.arn.clone())) {
                    continue;
                }
                if self.is_protected(e) {
                    self.plan
                        .refused_releases
                        .push((e.clone(), pol.arn.clone()));
                    blocked = true;
                    continue;
                }
                self.detach(&pol.owner, e, &pol.arn);
            }
            if blocked {
                continue;
            }
            self.prune_versions(&pol.owner, pol, StepClass::Release);
            self.plan.steps.push(Step::DeletePolicy {
                key: pol.owner.clone(),
                policy_arn: pol.arn.clone(),
            });
        }
    }

    /// Release: a policy we created moments ago that the list does not show yet is deleted too
    /// (a `NoSuchEntity` answer means it is gone; a conflict fails the run, which is retried).
    fn release_unlisted_policies(&mut self) {
        let observed = self.observed;
        for (write, owner) in &observed.recent_writes {
            if let WriteKey::Policy(arn) = write
                && !self.desired_by_key.contains_key(owner)
                && !self.our_policy_arns.contains_key(arn.as_str())
                && !self.blocked_policies.contains(arn)
            {
                self.plan.steps.push(Step::DeletePolicy {
                    key: owner.clone(),
                    policy_arn: arn.clone(),
                });
            }
        }
    }

    /// Enforce: `d`'s managed policy exists with the desired document (created, or an edited
    /// default version restored after pruning the others).
    fn enforce_document(&mut self, d: &DesiredEntry) {
        let Some(pol) = self.our_policy_arns.get(d.policy_arn.as_str()).copied() else {
            if !self
                .recent
                .contains(&WriteKey::Policy(d.policy_arn.clone()))
            {
                self.plan.steps.push(Step::CreatePolicy {
                    key: d.key.clone(),
                    name: d.policy_name.clone(),
                    arn: d.policy_arn.clone(),
                    document: d.document.clone(),
                    tags: d.tags.clone(),
                });
            }
            return;
        };
        let differs = pol
            .default_document
            .as_deref()
            .is_some_and(|doc| !ownership::same_document(doc, &d.document));
        if !differs || self.recent.contains(&WriteKey::Version(pol.arn.clone())) {
            return;
        }
        self.prune_versions(&d.key, pol, StepClass::Enforce);
        self.plan.steps.push(Step::RestoreDocument {
            key: d.key.clone(),
            policy_arn: pol.arn.clone(),
            document: d.document.clone(),
            replaced_version: pol.default_version_id.clone(),
        });
    }

    /// Enforce: what `target` of `d` needs (nothing, a step, a confirming read, or it cannot be
    /// planned), pushing the step when one is needed.
    fn enforce_target(
        &mut self,
        d: &DesiredEntry,
        target: &Principal,
        attached_before: bool,
    ) -> TargetExpectation {
        let pref = target.reference();
        let (attached_our_path, attached_total, inline_ours) =
            match self.observed.principals.get(&pref) {
                None => {
                    return TargetExpectation::Blocked(
                        format!("{} was not read", target.arn),
                        ErrorCategory::Transient,
                    );
                }
                Some(ObservedPrincipal::Missing) => {
                    return TargetExpectation::Blocked(
                        format!("{} {} does not exist", target.kind, target.arn),
                        ErrorCategory::NotFound,
                    );
                }
                Some(ObservedPrincipal::Unreadable(msg, cat)) => {
                    return TargetExpectation::Blocked(msg.clone(), *cat);
                }
                Some(ObservedPrincipal::Present {
                    attached_our_path,
                    attached_total,
                    inline_ours,
                }) => (attached_our_path, *attached_total, inline_ours),
            };
        let inline = InlineSpec {
            name: d.inline_name.clone(),
            document: d.inline_document.clone(),
        };
        let managed = Attachment {
            kind: AttachmentKind::Managed,
            name: d.policy_name.clone(),
        };
        let inline_attachment = Attachment {
            kind: AttachmentKind::Inline,
            name: d.inline_name.clone(),
        };
        let inline_key = WriteKey::Inline(pref.clone(), d.inline_name.clone());
        if attached_our_path.contains(&d.policy_arn) {
            return TargetExpectation::InPlace(managed);
        }
        if let Some(doc) = inline_ours.get(&d.inline_name) {
            if ownership::same_document(doc, &d.inline_document)
                || self.recent.contains(&inline_key)
            {
                return TargetExpectation::InPlace(inline_attachment);
            }
            self.plan.steps.push(Step::PutInline {
                key: d.key.clone(),
                principal: target.clone(),
                inline,
                repair: true,
            });
            return TargetExpectation::Planned;
        }
        if self
            .recent
            .contains(&WriteKey::Attachment(pref.clone(), d.policy_arn.clone()))
        {
            return TargetExpectation::AwaitingConfirmation(managed);
        }
        if self.recent.contains(&inline_key) {
            return TargetExpectation::AwaitingConfirmation(inline_attachment);
        }
        let quota = self.observed.quota.map(|q| match target.kind {
            PrincipalKind::Role => q.attached_policies_per_role_quota,
            PrincipalKind::User => q.attached_policies_per_user_quota,
        });
        if quota.is_some_and(|q| attached_total as u64 >= u64::from(q)) {
            self.plan.steps.push(Step::PutInline {
                key: d.key.clone(),
                principal: target.clone(),
                inline,
                repair: attached_before,
            });
        } else {
            self.plan.steps.push(Step::AttachManaged {
                key: d.key.clone(),
                principal: target.clone(),
                policy_arn: d.policy_arn.clone(),
                fallback: inline,
                repair: attached_before,
            });
        }
        TargetExpectation::Planned
    }
}

/// Whether a read of `pref` shows our managed policy `arn` attached.
fn shows_attached(observed: &ObservedAccount, pref: &PrincipalRef, arn: &str) -> bool {
    matches!(
        observed.principals.get(pref),
        Some(ObservedPrincipal::Present { attached_our_path, .. }) if attached_our_path.iter().any(|a| a == arn)
    )
}

/// Whether a read of `pref` shows our inline policy `name`.
fn shows_inline(observed: &ObservedAccount, pref: &PrincipalRef, name: &str) -> bool {
    matches!(
        observed.principals.get(pref),
        Some(ObservedPrincipal::Present { inline_ours, .. }) if inline_ours.contains_key(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111111111111";
    const DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"D","Effect":"Deny","Action":"ec2:*","Resource":"*"}]}"#;

    fn key(n: &str) -> QuarantineKey {
        QuarantineKey {
            namespace: "ns".into(),
            name: n.into(),
            uid: format!("u-{n}"),
        }
    }

    fn desired(names: &[&str], roles: &[&str]) -> Vec<DesiredEntry> {
        let qs: Vec<DesiredQuarantine> = names
            .iter()
            .map(|n| DesiredQuarantine {
                key: key(n),
                account_id: ACCOUNT.into(),
                targets: roles
                    .iter()
                    .map(|r| DesiredTarget {
                        kind: PrincipalKind::Role,
                        arn: format!("arn:aws:iam::{ACCOUNT}:role/{r}"),
                        attached_before: false,
                    })
                    .collect(),
                document: DOC.into(),
            })
            .collect();
        resolve("c", &qs, &ProtectedPrincipals::default())
            .accounts
            .remove(ACCOUNT)
            .unwrap_or_default()
    }

    fn role(n: &str) -> PrincipalRef {
        PrincipalRef {
            kind: PrincipalKind::Role,
            name: n.into(),
        }
    }

    fn present(attached: &[&str], total: usize) -> ObservedPrincipal {
        ObservedPrincipal::Present {
            attached_our_path: attached.iter().map(|s| s.to_string()).collect(),
            attached_total: total,
            inline_ours: BTreeMap::new(),
        }
    }

    fn plan(d: &[DesiredEntry], o: &ObservedAccount, recent: &[WriteKey]) -> Plan {
        plan_account(
            "aws",
            ACCOUNT,
            d,
            o,
            &ProtectedPrincipals::parse(["arn:aws:iam::111111111111:role/breakglass"]).unwrap(),
            &recent.iter().cloned().collect(),
        )
    }

    #[test]
    fn fresh_activation_creates_then_attaches() {
        let d = desired(&["q"], &["r"]);
        let mut o = ObservedAccount::default();
        o.principals.insert(role("r"), present(&[], 0));
        let p = plan(&d, &o, &[]);
        assert!(matches!(p.steps[0], Step::CreatePolicy { .. }));
        assert!(matches!(p.steps[1], Step::AttachManaged { .. }));
        assert_eq!(p.steps.len(), 2);
    }

    #[test]
    fn known_full_quota_plans_inline_directly() {
        let d = desired(&["q"], &["r"]);
        let mut o = ObservedAccount::default();
        o.principals.insert(role("r"), present(&[], 10));
        o.quota = Some(AccountSummary {
            attached_policies_per_role_quota: 10,
            attached_policies_per_user_quota: 10,
            versions_per_policy_quota: 5,
        });
        let p = plan(&d, &o, &[]);
        assert!(
            matches!(p.steps[1], Step::PutInline { .. }),
            "{:?}",
            p.steps
        );
    }

    #[test]
    fn recent_write_is_not_missing() {
        let d = desired(&["q"], &["r"]);
        let mut o = ObservedAccount::default();
        o.principals.insert(role("r"), present(&[], 0));
        let recent = [
            WriteKey::Policy(d[0].policy_arn.clone()),
            WriteKey::Attachment(role("r"), d[0].policy_arn.clone()),
        ];
        let p = plan(&d, &o, &recent);
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        assert!(matches!(
            p.targets[0].2,
            TargetExpectation::AwaitingConfirmation(_)
        ));
    }

    #[test]
    fn orphan_is_detached_everywhere_pruned_and_deleted_in_order_but_not_from_protected() {
        let gone = desired(&["old"], &["r"]);
        let arn = gone[0].policy_arn.clone();
        let mut o = ObservedAccount::default();
        o.policies.push(ObservedPolicy {
            arn: arn.clone(),
            name: gone[0].policy_name.clone(),
            owner: key("old"),
            default_version_id: "v2".into(),
            default_document: None,
            non_default_versions: Some(vec!["v1".into()]),
            entities: vec![role("r"), role("other")],
            groups: Vec::new(),
        });
        o.principals.insert(role("r"), present(&[&arn], 1));
        o.principals.insert(role("other"), present(&[&arn], 1));
        let p = plan(&[], &o, &[]);
        let kinds: Vec<&str> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::DetachManaged { .. } => "detach",
                Step::DeletePolicyVersion { .. } => "version",
                Step::DeletePolicy { .. } => "delete",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["detach", "detach", "version", "delete"]);
        assert!(p.steps.iter().all(|s| s.class() == StepClass::Release));

        // Attached to a protected principal: refused, and the policy is kept.
        o.policies[0].entities.push(role("breakglass"));
        let p = plan(&[], &o, &[]);
        assert_eq!(p.refused_releases.len(), 1);
        assert!(
            !p.steps
                .iter()
                .any(|s| matches!(s, Step::DeletePolicy { .. }))
        );
        assert!(!p.steps.iter().any(
            |s| matches!(s, Step::DetachManaged { principal, .. } if principal.name == "breakglass")
        ));
    }

    #[test]
    fn release_is_not_clean_while_a_principal_is_unreadable() {
        let mut o = ObservedAccount::default();
        o.principals.insert(
            role("r"),
            ObservedPrincipal::Unreadable("throttled".into(), ErrorCategory::Transient),
        );
        let p = plan(&[], &o, &[]);
        assert_eq!(p.unreadable.len(), 1);
        assert!(p.steps.is_empty());
    }

    #[test]
    fn release_removes_our_recent_writes_that_reads_do_not_show() {
        let gone = desired(&["old"], &["r"]);
        let arn = gone[0].policy_arn.clone();
        let mut o = ObservedAccount::default();
        o.principals.insert(role("r"), present(&[], 0));
        o.recent_writes = vec![
            (WriteKey::Policy(arn.clone()), key("old")),
            (WriteKey::Attachment(role("r"), arn.clone()), key("old")),
            (
                WriteKey::Inline(role("r"), gone[0].inline_name.clone()),
                key("old"),
            ),
        ];
        let p = plan(&[], &o, &[]);
        let kinds: Vec<&str> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::DetachManaged { .. } => "detach",
                Step::DeleteInline { .. } => "inline",
                Step::DeletePolicy { .. } => "delete",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["detach", "inline", "delete"]);
        // Still desired: nothing is removed.
        let p = plan(&gone, &o, &[]);
        assert!(
            p.steps.iter().all(|s| s.class() == StepClass::Enforce),
            "{:?}",
            p.steps
        );
    }

    #[test]
    fn release_detaches_groups_before_deleting_the_policy() {
        let gone = desired(&["old"], &["r"]);
        let mut o = ObservedAccount::default();
        o.policies.push(ObservedPolicy {
            arn: gone[0].policy_arn.clone(),
            name: gone[0].policy_name.clone(),
            owner: key("old"),
            default_version_id: "v1".into(),
            default_document: None,
            non_default_versions: Some(vec![]),
            entities: vec![],
            groups: vec!["devs".into()],
        });
        let p = plan(&[], &o, &[]);
        assert!(matches!(&p.steps[0], Step::DetachGroup { group, .. } if group == "devs"));
        assert!(matches!(p.steps[1], Step::DeletePolicy { .. }));
    }

    #[test]
    fn attachments_under_our_path_that_are_not_ours_are_ignored() {
        let mut o = ObservedAccount::default();
        o.principals.insert(
            role("r"),
            present(
                &["arn:aws:iam::111111111111:policy/autoguardrails/agr-foreign"],
                1,
            ),
        );
        assert!(plan(&[], &o, &[]).steps.is_empty());
    }

    #[test]
    fn protected_and_invalid_targets_are_rejected_before_planning() {
        let q = DesiredQuarantine {
            key: key("q"),
            account_id: ACCOUNT.into(),
            targets: vec![
                DesiredTarget {
                    kind: PrincipalKind::Role,
                    arn: "arn:aws:iam::111111111111:role/BreakGlass".into(),
                    attached_before: false,
                },
                DesiredTarget {
                    kind: PrincipalKind::User,
                    arn: "arn:aws:iam::111111111111:role/not-a-user".into(),
                    attached_before: false,
                },
                DesiredTarget {
                    kind: PrincipalKind::Role,
                    arn: "arn:aws:iam::111111111111:role/ops/breakglass".into(),
                    attached_before: false,
                },
            ],
            document: DOC.into(),
        };
        let r = resolve(
            "c",
            &[q],
            &ProtectedPrincipals::parse(["arn:aws:iam::111111111111:role/breakglass"]).unwrap(),
        );
        assert_eq!(r.rejected.len(), 3);
        assert!(r.accounts.is_empty());
    }
}
