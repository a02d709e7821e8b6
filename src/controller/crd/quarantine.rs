//! `Quarantine`: one incident's deny on a set of principals, with its lifecycle recorded in status.

use super::{
    ACCOUNT_ID_PATTERN, DURATION_PATTERN, DenySpec, Mode, Principal, REGION_PATTERN, SignalSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most history entries kept in status; older ones are dropped first.
pub const MAX_HISTORY: usize = 50;
/// The most notification delivery records kept in status (one per notable history entry at most).
pub const MAX_NOTIFICATIONS: usize = 50;
/// The most unflushed audit entries kept in status (decision 222); past it the oldest are dropped
/// and counted in `status.audit.dropped`.
pub const MAX_AUDIT_ENTRIES: usize = 100;
/// The longest audit entry message kept in status.
pub const MAX_AUDIT_MESSAGE_CHARS: usize = 1024;
/// The longest `lastError` kept in a notification record.
pub const MAX_NOTIFICATION_ERROR_CHARS: usize = 512;

/// One incident: deny `deny.actions` to `targets` for `ttl`, gated by `mode`.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "autoguardrails.io",
    version = "v1alpha1",
    kind = "Quarantine",
    plural = "quarantines",
    singular = "quarantine",
    shortname = "qt",
    category = "autoguardrails",
    namespaced,
    status = "QuarantineStatus",
    derive = "PartialEq",
    doc = "One cost incident's time-boxed IAM deny on a set of principals.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.policyRef.name",
        description = "The GuardrailPolicy that created it"
    ),
    printcolumn(
        name = "Targets",
        type_ = "string",
        json_path = ".status.targetsSummary",
        description = "Targets holding the deny / all targets"
    ),
    printcolumn(
        name = "Expires",
        type_ = "date",
        json_path = ".status.expiresAt",
        description = "When the deny is released"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSpec {
    /// The GuardrailPolicy this quarantine belongs to (same namespace).
    pub policy_ref: PolicyRef,
    /// The cost signal that caused it; absent for a quarantine a person created by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalRecord>,
    /// The principals that receive the deny. At least one.
    #[schemars(length(min = 1, max = 100))]
    pub targets: Vec<Principal>,
    /// Why each target is in scope (`scope.principals`, or the selector that matched it),
    /// frozen with the targets at creation; set for policies with selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub target_reasons: Vec<TargetReason>,
    /// The denied actions and optional region scope.
    pub deny: DenySpec,
    /// Copied from the policy at creation: how the deny is enforced (`attachDeny`,
    /// `setPermissionsBoundary`, or both). Absent means `[attachDeny]`.
    #[serde(
        default = "super::default_actions",
        skip_serializing_if = "super::is_default_actions_vec"
    )]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(
        validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("actions may not repeat"),
        validation = Rule::new("!self.exists(a, a == 'notifyOnly')").message("a quarantine enforces: notifyOnly never creates one")
    )]
    pub actions: Vec<super::Action>,
    /// Copied from the policy at creation: DryRun, Manual or Auto.
    #[serde(default)]
    pub mode: Mode,
    /// How long the deny stays once active (Go duration, more than 0, at most 168h).
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('168h')").message("ttl must be more than 0s and at most 168h"))]
    pub ttl: String,
    /// Manual mode: how long the quarantine may wait for approval before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('168h')").message("approvalTimeout must be more than 0s and at most 168h"))]
    pub approval_timeout: Option<String>,
    /// Copied from the policy at creation (Manual mode): how many distinct verified approvers
    /// it needs (four-eyes); absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub required_approvers: Option<u8>,
    /// Copied from the policy at creation: where to send messages about this quarantine (kept so
    /// the release can still be announced after the policy is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<super::policy::NotifySpec>,
}

/// Why one target is in a Quarantine's scope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetReason {
    /// The target's ARN.
    #[schemars(length(max = 2048))]
    pub arn: String,
    /// What matched it, e.g. `selectors[0]: account 111111111111, path /teams/ml/, tag team=ml`.
    #[schemars(length(max = 1024))]
    pub matched_by: String,
}

/// A reference to a GuardrailPolicy in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PolicyRef {
    /// The policy's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The cost signal as recorded on the quarantine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalRecord {
    /// The signal kind.
    pub source: SignalSource,
    /// The signal's id (anomaly id, budget notification id).
    #[schemars(length(min = 1, max = 1024))]
    pub id: String,
    /// The AWS account the cost occurred in.
    #[schemars(regex(pattern = ACCOUNT_ID_PATTERN))]
    pub account_id: String,
    /// The Cost Explorer service name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The region, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REGION_PATTERN))]
    pub region: Option<String>,
    /// The budget's name, for Budget signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_name: Option<String>,
    /// Impact in USD (anomaly total impact, or budget amount over its limit).
    #[schemars(range(min = 0.0))]
    pub impact_usd: f64,
    /// When AWS observed the cost.
    pub observed_at: Time,
    /// A link to the anomaly or budget in the AWS console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    /// A one-line human summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub summary: Option<String>,
}

/// A quarantine's lifecycle phase (design §2.3).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Plan recorded, nothing written to AWS; expires after the TTL.
    DryRun,
    /// Manual mode: waiting for the approve or reject annotation.
    PendingApproval,
    /// The deny is attached (or being attached) and kept converged.
    Active,
    /// The deny is being detached; retried until done.
    Releasing,
    /// The deny is gone. Terminal.
    Released,
    /// A person rejected it before it was enforced. Terminal.
    Rejected,
    /// DryRun TTL passed or approval timed out, without enforcement. Terminal.
    Expired,
    /// Enforcement cannot proceed (bad target, access denied). Release still works.
    Failed,
}

impl Phase {
    /// The name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::DryRun => "DryRun",
            Phase::PendingApproval => "PendingApproval",
            Phase::Active => "Active",
            Phase::Releasing => "Releasing",
            Phase::Released => "Released",
            Phase::Rejected => "Rejected",
            Phase::Expired => "Expired",
            Phase::Failed => "Failed",
        }
    }

    /// True for phases that never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Released | Phase::Rejected | Phase::Expired)
    }
}

/// How a deny is attached to one target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AttachmentKind {
    /// A customer-managed policy under path `/autoguardrails/`, attached to the principal.
    Managed,
    /// An inline policy with the reserved name prefix (used when the managed-policy quota is full).
    Inline,
}

/// Where the deny lives for one target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Attachment {
    /// Managed or Inline.
    pub kind: AttachmentKind,
    /// The policy name (managed policy name or inline policy name).
    pub name: String,
}

/// The enforcement state of one target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetState {
    /// Not attached yet (DryRun, PendingApproval, or about to attach).
    Planned,
    /// The deny is attached and was verified.
    Attached,
    /// The deny was removed.
    Detached,
    /// Attaching or detaching failed; see lastError.
    Failed,
}

/// Status of one target principal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The principal's ARN.
    pub arn: String,
    /// Where the deny lives, once attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Planned, Attached, Detached or Failed.
    pub state: TargetState,
    /// The last error for this target, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the attachment was last verified in IAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_at: Option<Time>,
}

/// Where one target's permissions boundary stands (`setPermissionsBoundary`, decision 240).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum BoundaryState {
    /// The previous boundary is recorded (written before any IAM call); ours may not be on yet.
    Recorded,
    /// Our boundary is on.
    Set,
    /// Released: the previous boundary is back (or ours removed when there was none).
    Restored,
    /// Released: someone else changed the boundary while we held it; theirs was left in place.
    LeftChanged,
}

/// One target's permissions boundary: what it had before ours, and where it stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoundaryStatus {
    /// The principal's ARN.
    pub arn: String,
    /// The boundary policy ARN the principal had before ours; absent: it had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Recorded, Set, Restored or LeftChanged.
    pub state: BoundaryState,
    /// Our boundary policy's ARN.
    pub policy_arn: String,
    /// LeftChanged: the boundary found on release (absent: someone removed ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// The last error for this target's boundary, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One entry of the audit trail kept in status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HistoryEntry {
    /// When it happened.
    pub time: Time,
    /// What happened (PascalCase), e.g. `Approved` or `DriftRepaired`.
    pub event: String,
    /// Who or what caused it: `controller`, or the person named by the annotation.
    pub actor: String,
    /// A human explanation.
    pub message: String,
    /// How a person's decision reached the controller: `slack` when a stamp only the controller
    /// can make says so, `kubectl` for any other annotation write; absent for the controller's
    /// own entries and for entries written before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub channel: Option<String>,
}

/// The deny policy planned or attached for this quarantine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDeny {
    /// The managed policy name used in every target account.
    pub policy_name: String,
    /// The exact IAM policy document (JSON).
    pub document: String,
    /// The cluster id the deny's IAM objects are named, tagged and marked with (recorded once, so
    /// a later change of the controller's `clusterId` still finds them; decision 096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// What the controller observed and did for a Quarantine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineStatus {
    /// The lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Who approved it (from the approve annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When it was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// Who rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<String>,
    /// When it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_at: Option<Time>,
    /// When enforcement started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    /// When the deny is released (activation + ttl, plus extensions), or when a DryRun plan expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Manual mode: when a pending approval expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_deadline: Option<Time>,
    /// When the release finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Time>,
    /// Why it was released: `Expired`, `ReleaseRequested`, `PolicyDeleted`, `Deleted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_reason: Option<String>,
    /// The deny policy name and exact document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<PlannedDeny>,
    /// Per-target enforcement state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// `setPermissionsBoundary`: per target, the previous boundary (recorded before ours is put
    /// on) and where the boundary stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub boundaries: Vec<BoundaryStatus>,
    /// `attached/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_summary: Option<String>,
    /// Conditions, keyed by type (`Ready`, `Enforced`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions::schema")]
    pub conditions: Vec<Condition>,
    /// The audit trail, newest last, at most 50 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub history: Vec<HistoryEntry>,
    /// Slack delivery state, one record per history entry that warrants a message (written only
    /// by the notification worker; at most 50, oldest dropped first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub notifications: Vec<NotificationRecord>,
    /// The audit outbox: records not yet in the durable audit store, and the flushed-up-to
    /// marker (present only when an audit store is configured; decision 222).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditOutbox>,
}

/// Audit records waiting in status for the flush to the audit store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditOutbox {
    /// The sequence number the next entry gets.
    #[serde(default)]
    pub next_sequence: u64,
    /// Every entry with a lower sequence number is in the audit store.
    #[serde(default)]
    pub flushed_below: u64,
    /// Entries dropped unflushed because the outbox was full.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// Unflushed entries, oldest first, at most 100 (always written, also empty: a merge patch
    /// must replace the list when the flush emptied it).
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub entries: Vec<AuditEntry>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One unflushed audit entry (the Quarantine's identity, policy, targets and signal are added
/// from the object when it is flushed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The per-Quarantine sequence number (the record id is `<uid>/<sequence>`).
    pub sequence: u64,
    /// When it happened.
    pub time: Time,
    /// What happened (PascalCase), as in the history.
    #[schemars(length(max = 128))]
    pub event: String,
    /// Who: `controller`, or the person as the controller knows them.
    #[schemars(length(max = 256))]
    pub actor: String,
    /// True when the actor's identity was verified.
    #[serde(default)]
    pub verified: bool,
    /// `controller`, `kubectl` or `slack`.
    #[schemars(length(max = 32))]
    pub channel: String,
    /// The human explanation.
    #[schemars(length(max = 1024))]
    pub message: String,
    /// The AWS request ids of the IAM writes this entry reports (decision 234).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 128)))]
    pub request_ids: Vec<String>,
}

/// The delivery state of the message for one history entry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DeliveryState {
    /// The webhook accepted the message. It is never sent again.
    Delivered,
    /// The last attempt failed with an error that may pass; retried at `nextAttemptAt`.
    Retrying,
    /// Given up: a permanent error (bad webhook) or the retry window passed. Not sent again.
    Failed,
    /// Not sent: the entry was already older than the worker's `maxAge` when first seen.
    Skipped,
}

impl DeliveryState {
    /// The name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Delivered => "Delivered",
            DeliveryState::Retrying => "Retrying",
            DeliveryState::Failed => "Failed",
            DeliveryState::Skipped => "Skipped",
        }
    }

    /// True when the entry will never be sent again.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Retrying)
    }
}

/// Delivery state of the Slack message for one history entry (`status.notifications[]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// The history entry this record is for: `<time>/<event>` (plus `#n` for the n-th repeat of
    /// the same event in the same second).
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    /// The history entry's event, e.g. `Activated`.
    #[schemars(length(max = 128))]
    pub event: String,
    /// Delivered, Retrying, Failed or Skipped.
    pub state: DeliveryState,
    /// Delivery tries for this entry so far: each HTTP request, and each failed webhook URL lookup.
    #[serde(default)]
    pub attempts: u32,
    /// When the last request was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<Time>,
    /// Retrying only: the earliest time of the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
    /// The last error (never contains the webhook URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub last_error: Option<String>,
    /// Where the bot posted the message (`notifications.postWith: bot`, decision 235), so a later
    /// transition can update it in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<PostedMessage>,
}

/// A message the bot posted with `chat.postMessage`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostedMessage {
    /// The channel id.
    #[schemars(length(max = 64))]
    pub channel: String,
    /// The message's `ts`.
    #[schemars(length(max = 32))]
    pub ts: String,
    /// The key of the later entry this message was last updated for with `chat.update` (its
    /// buttons removed); absent while it is the latest message or its update is still due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub updated_for: Option<String>,
}
