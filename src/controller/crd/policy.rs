//! `GuardrailPolicy`: which cost signals to react to, whom to quarantine, what to deny, for how long.

use super::{
    ACCOUNT_ID_PATTERN, DURATION_PATTERN, Mode, PRINCIPAL_ARN_PATTERN, Principal, PrincipalKind,
    REGION_PATTERN, SecretKeyRef, SignalSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a GuardrailPolicy wants: match cost signals, then quarantine the scoped principals.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "autoguardrails.io",
    version = "v1alpha1",
    kind = "GuardrailPolicy",
    plural = "guardrailpolicies",
    singular = "guardrailpolicy",
    shortname = "grp",
    category = "autoguardrails",
    namespaced,
    status = "GuardrailPolicyStatus",
    derive = "PartialEq",
    doc = "Matches AWS cost signals and quarantines the scoped IAM principals with a time-boxed deny.",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "DryRun, Manual or Auto"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the policy is valid and evaluated"
    ),
    printcolumn(
        name = "Active",
        type_ = "integer",
        json_path = ".status.activeQuarantines",
        description = "Quarantines currently enforcing"
    ),
    printcolumn(
        name = "Targets",
        type_ = "integer",
        json_path = ".status.resolvedTargets.count",
        description = "Principals the scope selectors resolved to"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailPolicySpec {
    /// DryRun (default) plans only; Manual waits for an approve annotation; Auto enforces at once.
    #[serde(default)]
    pub mode: Mode,
    /// Which cost signals this policy reacts to.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Which principals are quarantined, and optionally in which regions the deny applies.
    pub scope: ScopeSpec,
    /// The IAM actions denied while quarantined.
    pub deny: PolicyDenySpec,
    /// What a match does: `attachDeny` (attach the deny policy; the default),
    /// `setPermissionsBoundary` (put a boundary that allows everything but the denied actions;
    /// the previous boundary is restored on release), or `notifyOnly` (no Quarantine and no AWS
    /// write: Slack, an Event, a metric and an audit record). `notifyOnly` stands alone.
    #[serde(
        default = "super::default_actions",
        skip_serializing_if = "super::is_default_actions_vec"
    )]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(
        validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("actions may not repeat"),
        validation = Rule::new("!self.exists(a, a == 'notifyOnly') || size(self) == 1").message("notifyOnly cannot be combined with other actions")
    )]
    pub actions: Vec<super::Action>,
    /// Time limits of the quarantines this policy creates.
    #[serde(default)]
    pub quarantine: QuarantineSettings,
    /// Principals and time windows that are never quarantined.
    #[serde(default, skip_serializing_if = "Exceptions::is_empty")]
    pub exceptions: Exceptions,
    /// Where people are told about this policy's quarantines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
}

/// The signal filter. Every listed criterion must hold; an empty list matches anything.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchSpec {
    /// Signal kinds this policy reacts to (CostAnomaly, Budget, Velocity). At least one. A
    /// Velocity signal names the principal that started the spend, and quarantines only that
    /// principal, when it is in `scope.principals`.
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(s, s == 'CostAnomaly' || s == 'Budget' || s == 'Velocity')").message("sources may list CostAnomaly, Budget and Velocity"))]
    pub sources: Vec<SignalSource>,
    /// AWS account ids (12 digits) whose signals match; empty matches every account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 12), regex(pattern = ACCOUNT_ID_PATTERN)))]
    pub account_ids: Vec<String>,
    /// Minimum impact in USD: anomaly total impact, or budget actual/forecast over its limit.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub min_impact_usd: f64,
    /// Cost Explorer service names (e.g. `Amazon Elastic Compute Cloud - Compute`); empty matches any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 256)))]
    pub services: Vec<String>,
    /// Budget names; Budget signals only. Empty matches any budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 256)))]
    pub budget_names: Vec<String>,
}

/// Who is quarantined: explicit principals, principals found by selectors, or both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.principals) && size(self.principals) > 0) || (has(self.selectors) && size(self.selectors) > 0)").message("scope needs at least one of principals and selectors"))]
pub struct ScopeSpec {
    /// IAM roles and users that receive the deny, by ARN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub principals: Vec<Principal>,
    /// Roles and users found in IAM by path prefix, name pattern and tags, in listed accounts or
    /// the accounts of an Organizations OU; resolved by the controller on a period and frozen
    /// into each Quarantine when it is created (docs/policies.md, decision 245).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub selectors: Vec<PrincipalSelector>,
    /// The most principals the scope may resolve to (explicit and selected, before exceptions);
    /// a larger resolution quarantines no one (`TooManyTargets`). 1 to 100; absent means 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_targets: Option<u32>,
    /// When set, the deny applies only in these regions (`aws:RequestedRegion`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 40), inner(length(max = 32), regex(pattern = REGION_PATTERN)))]
    pub regions: Vec<String>,
}

/// `scope.maxTargets` when absent.
pub const DEFAULT_MAX_TARGETS: u32 = 25;
/// The largest `scope.maxTargets` (the most targets a Quarantine may hold).
pub const MAX_MAX_TARGETS: u32 = 100;
/// An Organizations OU id (`ou-…`) or root id (`r-…`).
pub const ORGANIZATIONAL_UNIT_PATTERN: &str =
    r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$";
/// An IAM path prefix: starts with `/`, printable ASCII.
pub const PATH_PREFIX_PATTERN: &str = r"^/[!-~]*$";
/// A name pattern: IAM name characters plus the wildcards `*` and `?`.
pub const NAME_PATTERN_PATTERN: &str = r"^[A-Za-z0-9_+=,.@*?-]+$";

impl ScopeSpec {
    /// `maxTargets`, or its default.
    pub fn max_targets(&self) -> usize {
        self.max_targets.unwrap_or(DEFAULT_MAX_TARGETS) as usize
    }
}

/// Finds roles and/or users in IAM. Every listed criterion must hold; at least one of
/// `pathPrefix`, `namePattern` and `tags` is required (a selector never means "everyone in the
/// account"), and exactly one of `accounts` and `organizationalUnit`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.accounts) && size(self.accounts) > 0) != has(self.organizationalUnit)").message("set exactly one of accounts and organizationalUnit"))]
#[x_kube(validation = Rule::new("has(self.pathPrefix) || has(self.namePattern) || (has(self.tags) && size(self.tags) > 0)").message("a selector needs at least one of pathPrefix, namePattern and tags"))]
pub struct PrincipalSelector {
    /// Which kinds are listed: IamRole, IamUser. Absent means IamRole only.
    #[serde(default = "default_selector_kinds")]
    #[schemars(length(min = 1, max = 2))]
    pub kinds: Vec<PrincipalKind>,
    /// AWS account ids (12 digits) to list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 12), regex(pattern = ACCOUNT_ID_PATTERN)))]
    pub accounts: Vec<String>,
    /// An AWS Organizations OU (`ou-…`) or root (`r-…`) id: every active account in it and in
    /// the OUs below it is listed (read with the configured organization role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 68), regex(pattern = ORGANIZATIONAL_UNIT_PATTERN))]
    pub organizational_unit: Option<String>,
    /// IAM path prefix, e.g. `/teams/ml/` (IAM's `PathPrefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = PATH_PREFIX_PATTERN))]
    pub path_prefix: Option<String>,
    /// A glob over the role or user name (`*` any run of characters, `?` one character),
    /// case-sensitive, e.g. `ml-train-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = NAME_PATTERN_PATTERN))]
    pub name_pattern: Option<String>,
    /// Tags the principal must carry, all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub tags: Vec<TagSelector>,
}

fn default_selector_kinds() -> Vec<PrincipalKind> {
    vec![PrincipalKind::IamRole]
}

/// A tag the principal must carry: `key` with `value`, or `key` with any value when `value` is
/// absent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagSelector {
    /// The tag key (case-sensitive, as IAM compares tag keys for conditions).
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    /// The tag value; absent means the key exists with any value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub value: Option<String>,
}

/// The actions to deny while a quarantine is active.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDenySpec {
    /// IAM actions in `service:Action` form, wildcards allowed (`ec2:Run*`). At least one.
    #[schemars(length(min = 1, max = 100), inner(length(max = 128), regex(pattern = super::ACTION_PATTERN)))]
    pub actions: Vec<String>,
    /// IAM conditions the deny applies under, all of which must hold (e.g. only
    /// `ec2:InstanceType` `StringLike` `p4d.*`). `scope.regions` adds `StringEquals`
    /// `aws:RequestedRegion`; do not list that pair here as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.operator == c.operator && d.key == c.key))").message("each condition operator and key may appear once; list several values in one condition instead"))]
    pub conditions: Vec<super::DenyCondition>,
}

/// Durations of the quarantine lifecycle, as Go durations (`4h`, `30m`, `1h30m`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSettings {
    /// How long the deny stays attached once active; more than 0 and at most 168h (7 days).
    #[serde(default = "default_ttl")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('168h')").message("ttl must be more than 0s and at most 168h"))]
    pub ttl: String,
    /// Manual mode only: a quarantine pending approval longer than this expires. At most 168h.
    #[serde(default = "default_approval_timeout")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('168h')").message("approvalTimeout must be more than 0s and at most 168h"))]
    pub approval_timeout: String,
    /// No new quarantine of the same principal this soon after one was released. At most 168h.
    #[serde(default = "default_cooldown")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('168h')").message("cooldown must be at most 168h"))]
    pub cooldown: String,
    /// Manual mode only, four-eyes: how many distinct people must approve (verified by the
    /// approval webhook; unverified approvals do not count) before the deny is enforced. 1 to 5;
    /// absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub required_approvers: Option<u8>,
}

fn default_ttl() -> String {
    "4h".into()
}
fn default_approval_timeout() -> String {
    "1h".into()
}
fn default_cooldown() -> String {
    "30m".into()
}

impl Default for QuarantineSettings {
    fn default() -> Self {
        Self {
            ttl: default_ttl(),
            approval_timeout: default_approval_timeout(),
            cooldown: default_cooldown(),
            required_approvers: None,
        }
    }
}

/// Principals and windows excluded from quarantine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exceptions {
    /// ARNs never quarantined even when in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 2048), regex(pattern = PRINCIPAL_ARN_PATTERN)))]
    pub principals: Vec<String>,
    /// AWS account ids (12 digits) whose principals are never quarantined even when in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 12), regex(pattern = ACCOUNT_ID_PATTERN)))]
    pub accounts: Vec<String>,
    /// Time windows (e.g. a planned load test) in which signals do not quarantine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub windows: Vec<ExceptionWindow>,
    /// Weekly recurring windows in a time zone (e.g. Mon-Fri 08:00-20:00 Europe/Berlin) in which
    /// signals do not quarantine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub weekly: Vec<WeeklyWindow>,
}

impl Exceptions {
    /// True when nothing is excepted.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
            && self.accounts.is_empty()
            && self.windows.is_empty()
            && self.weekly.is_empty()
    }
}

/// A local wall-clock time `HH:MM` from 00:00 to 23:59.
pub const LOCAL_TIME_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// A local wall-clock time `HH:MM` from 00:01 to 24:00 (the end of the day).
pub const LOCAL_END_TIME_PATTERN: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
/// The shape of an IANA time zone name (`Europe/Berlin`, `UTC`); whether the zone exists is
/// checked by the controller and `simulate` against the time zone database built in.
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$";

/// A day of the week, as written in weekly exception windows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// A window that opens every listed day at `start` and closes the same day at `end`, both local
/// times in `timeZone`. Where a boundary falls into a skipped or repeated local hour (daylight
/// saving changes), it is the first instant at which the local clock shows that time or a later
/// one (docs/policies.md, decision 202).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start < self.end").message("weekly window end must be after start on the same day (a window across midnight is two windows; 24:00 ends a day)"))]
pub struct WeeklyWindow {
    /// The days the window opens: Mon, Tue, Wed, Thu, Fri, Sat, Sun. At least one.
    #[schemars(length(min = 1, max = 7))]
    pub days: Vec<Weekday>,
    /// Local time the window opens, `HH:MM` (00:00 to 23:59).
    #[schemars(length(max = 5), regex(pattern = LOCAL_TIME_PATTERN))]
    pub start: String,
    /// Local time the window closes, `HH:MM` after start; `24:00` is the end of the day.
    #[schemars(length(max = 5), regex(pattern = LOCAL_END_TIME_PATTERN))]
    pub end: String,
    /// IANA time zone of `start` and `end`, e.g. `Europe/Berlin` or `UTC`.
    #[schemars(length(min = 1, max = 64), regex(pattern = TIME_ZONE_PATTERN))]
    pub time_zone: String,
    /// Why the window exists, shown in decisions and Events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 256))]
    pub reason: String,
}

/// A time window, in UTC, during which the policy does not quarantine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("self.start < self.end").message("exception window start must be before end"))]
pub struct ExceptionWindow {
    /// Start of the window (RFC 3339).
    pub start: Time,
    /// End of the window (RFC 3339), after start.
    pub end: Time,
    /// Why the window exists, shown in decisions and Events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 256))]
    pub reason: String,
}

/// Notification targets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// Slack: an incoming webhook, or the controller's bot (`notifications.postWith: bot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSpec>,
}

/// Where Slack messages go: an incoming webhook, its URL kept in a Secret or an SSM SecureString
/// parameter; or, on a controller posting with its bot token (`notifications.postWith: bot`),
/// no webhook and a channel (decision 238).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.webhookSecretRef) && has(self.webhookSsmParameter))").message("set at most one of webhookSecretRef and webhookSsmParameter (neither: the controller posts with its bot token, notifications.postWith: bot)"))]
pub struct SlackSpec {
    /// The Secret key holding the webhook URL (in the policy's namespace). Not used when the
    /// controller posts with its bot token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_ref: Option<SecretKeyRef>,
    /// The name of an AWS SSM SecureString parameter holding the webhook URL. Not used when the
    /// controller posts with its bot token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/?[A-Za-z0-9_.\-/]{1,1011}$"))]
    pub webhook_ssm_parameter: Option<String>,
    /// A channel: with the bot (`postWith: bot`) the channel id (or a name the bot may post to)
    /// posted to, else the controller's `notifications.channel`; with a webhook, the payload's
    /// `channel`, which only legacy webhooks honour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub channel_hint: Option<String>,
}

/// What the controller observed about a GuardrailPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailPolicyStatus {
    /// The generation the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type (`Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions::schema")]
    pub conditions: Vec<Condition>,
    /// The newest signal of a source, account, service and budget this policy watches, and the
    /// outcome of its evaluation (signals for other services or budgets are not recorded here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_signal: Option<LastSignal>,
    /// How many of this policy's quarantines are Active or Releasing.
    #[serde(default)]
    pub active_quarantines: i32,
    /// When `lastSignal` was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated_at: Option<Time>,
    /// `notifyOnly`: when a matching signal was last announced; another within
    /// `quarantine.cooldown` of it is counted but not announced (decision 241).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notified_at: Option<Time>,
    /// What `scope.selectors` resolved to last (policies with selectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_targets: Option<ResolvedTargets>,
}

/// A summary of a policy's selector resolution.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTargets {
    /// How many principals the scope resolved to (explicit and selected, before exceptions).
    pub count: i32,
    /// Up to 10 of their ARNs, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub sample: Vec<String>,
    /// When the selectors were resolved with this result (the time of the first resolution
    /// that gave it: an unchanged result is not rewritten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// Which selectors this result is for (a hash of `scope.selectors`); standby replicas use the
    /// result only while it matches the current spec (decision 252).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors_hash: Option<String>,
    /// Until when the leader vouches for this result; standby replicas refuse it afterwards
    /// (`SelectorsUnresolved`), as the leader refuses a stale resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Time>,
    /// The resolved principals with why each matched, when there are at most 100 (what a
    /// standby replica's intake freezes into a Quarantine, decision 252).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub targets: Vec<ResolvedTargetStatus>,
}

/// One resolved principal in the policy status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTargetStatus {
    /// Role or user.
    pub kind: PrincipalKind,
    /// Its ARN.
    pub arn: String,
    /// What matched it (`scope.principals` or the selector's explanation).
    pub matched_by: String,
}

/// The last signal a policy saw.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSignal {
    /// The signal kind.
    pub source: SignalSource,
    /// The signal id (anomaly id, budget notification id).
    pub id: String,
    /// The decision reason (PascalCase), e.g. `Matched` or `BelowMinimumImpact`.
    pub reason: String,
    /// The Quarantine created, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
}
