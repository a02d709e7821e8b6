//! The custom resources `GuardrailPolicy` and `Quarantine` (`autoguardrails.io/v1alpha1`):
//! types, schema and CEL rules, condition helpers and reason constants. No clients, no I/O.

pub mod conditions;
pub mod policy;
pub mod quarantine;
pub mod validate;

pub use policy::*;
pub use quarantine::*;

use crate::principal::{PrincipalArn, PrincipalError};
use kube::CustomResourceExt;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of both custom resources.
pub const GROUP: &str = "autoguardrails.io";
/// The API version of both custom resources.
pub const VERSION: &str = "v1alpha1";
/// Annotation prefix for the actions a person takes with `kubectl annotate`.
pub const ANNOTATION_PREFIX: &str = "autoguardrails.io/";

/// Pattern for a Go-style duration string such as `4h`, `30m` or `1h30m` (what CEL `duration()` accepts).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// Pattern for an AWS account id.
pub const ACCOUNT_ID_PATTERN: &str = r"^[0-9]{12}$";
/// Pattern for an IAM action in `service:Action` form; `*` and `?` wildcards are allowed.
pub const ACTION_PATTERN: &str = r"^[a-z0-9-]+:[A-Za-z0-9*?]+$";
/// Pattern for an IAM role ARN (any partition).
pub const ROLE_ARN_PATTERN: &str =
    r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$";
/// Pattern for an IAM user ARN (any partition).
pub const USER_ARN_PATTERN: &str =
    r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:user/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$";
/// Pattern for any IAM role or user ARN.
/// The partitions are `crate::principal::PARTITIONS`; the parser there is the authority, and
/// these patterns refuse at admission what it would refuse (empty path segments, empty names).
pub const PRINCIPAL_ARN_PATTERN: &str = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(role|user)/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$";
/// Pattern for an AWS region name.
pub const REGION_PATTERN: &str = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$";
/// The longest TTL a quarantine may have (7 days).
pub const MAX_TTL: &str = "168h";

/// How a policy acts on a match.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Mode {
    /// Plan only: the quarantine records what it would deny; no AWS write is ever made.
    #[default]
    DryRun,
    /// A person approves with `kubectl annotate quarantine NAME autoguardrails.io/approve=<note>`.
    Manual,
    /// The deny is attached as soon as the quarantine is created.
    Auto,
}

impl Mode {
    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "DryRun",
            Mode::Manual => "Manual",
            Mode::Auto => "Auto",
        }
    }
}

/// What a policy does when a signal matches (`spec.actions`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Attach our deny policy (managed, or inline when the quota is full) to each target.
    AttachDeny,
    /// Put our boundary policy on each target as its permissions boundary; the previous boundary
    /// is recorded first and restored on release.
    SetPermissionsBoundary,
    /// No Quarantine and no AWS write: a Slack message, an Event, a metric and an audit record.
    NotifyOnly,
}

impl Action {
    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::AttachDeny => "attachDeny",
            Action::SetPermissionsBoundary => "setPermissionsBoundary",
            Action::NotifyOnly => "notifyOnly",
        }
    }
}

/// The actions of a policy or quarantine that leaves `actions` out: attach the deny (as before
/// the field existed).
pub fn default_actions() -> Vec<Action> {
    vec![Action::AttachDeny]
}

/// True when `actions` is the default (kept out of serialized objects, so existing manifests and
/// stored objects read and write exactly as before).
pub fn is_default_actions(actions: &[Action]) -> bool {
    actions == [Action::AttachDeny]
}

/// Whether these actions attach our deny policy.
pub fn attaches_deny(actions: &[Action]) -> bool {
    actions.contains(&Action::AttachDeny)
}

/// Whether these actions set our permissions boundary.
pub fn sets_boundary(actions: &[Action]) -> bool {
    actions.contains(&Action::SetPermissionsBoundary)
}

/// The kind of cost signal.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum SignalSource {
    /// AWS Cost Anomaly Detection (SNS, EventBridge or the GetAnomalies poller).
    CostAnomaly,
    /// AWS Budgets alerts and Budgets Actions notices.
    Budget,
    /// Created by a person for an emergency containment.
    Manual,
    /// Spend velocity: the hourly burn that one principal started, priced from CloudTrail
    /// management events (`controller::velocity`, decision 170).
    Velocity,
}

impl SignalSource {
    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalSource::CostAnomaly => "CostAnomaly",
            SignalSource::Budget => "Budget",
            SignalSource::Manual => "Manual",
            SignalSource::Velocity => "Velocity",
        }
    }
}

/// The kind of IAM principal a deny is attached to.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum PrincipalKind {
    /// An IAM role (`arn:aws:iam::<account>:role/<path/name>`).
    IamRole,
    /// An IAM user (`arn:aws:iam::<account>:user/<path/name>`).
    IamUser,
}

/// An IAM role or user, named by ARN.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, KubeSchema,
)]
#[x_kube(validation = Rule::new(
    "self.kind == 'IamRole' ? self.arn.matches('^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/.+$') : self.arn.matches('^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:user/.+$')"
).message("arn must be a role ARN for kind IamRole and a user ARN for kind IamUser").field_path(".arn"))]
pub struct Principal {
    /// Whether the ARN names an IAM role or an IAM user.
    pub kind: PrincipalKind,
    /// The principal's ARN, for example `arn:aws:iam::111111111111:role/dev-ci`.
    #[schemars(length(max = 2048), regex(pattern = PRINCIPAL_ARN_PATTERN))]
    pub arn: String,
}

impl Principal {
    /// The ARN parsed by the one principal type, checked against `kind` (a role ARN for
    /// `IamRole`, a user ARN for `IamUser`).
    pub fn parse(&self) -> Result<PrincipalArn, PrincipalError> {
        let expected = match self.kind {
            PrincipalKind::IamRole => crate::principal::PrincipalKind::Role,
            PrincipalKind::IamUser => crate::principal::PrincipalKind::User,
        };
        PrincipalArn::parse_kind(&self.arn, expected)
    }
    /// Whether both name the same IAM principal (IAM's rule: `crate::principal`).
    pub fn same_principal(&self, other: &Principal) -> bool {
        match (self.parse(), other.parse()) {
            (Ok(a), Ok(b)) => a == b,
            // Unparsable text (refused at admission) only equals itself.
            _ => self == other,
        }
    }
}

/// The IAM actions to deny, and optionally the regions the deny applies in.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DenySpec {
    /// IAM actions in `service:Action` form, wildcards allowed (`ec2:Run*`). At least one.
    #[schemars(length(min = 1, max = 100), inner(length(max = 128), regex(pattern = ACTION_PATTERN)))]
    pub actions: Vec<String>,
    /// When set, the deny applies only to requests for these regions (`aws:RequestedRegion`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 40), inner(length(max = 32), regex(pattern = REGION_PATTERN)))]
    pub regions: Vec<String>,
    /// IAM conditions the deny applies under, all of which must hold (e.g. `ec2:InstanceType`
    /// `StringLike` `p4d.*`). Copied from the policy's `deny.conditions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.operator == c.operator && d.key == c.key))").message("each condition operator and key may appear once; list several values in one condition instead"))]
    pub conditions: Vec<DenyCondition>,
}

/// IAM condition operators a deny may use (the `...IfExists` forms are not offered: a deny that
/// silently applies when a key is absent is hard to reason about).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum ConditionOperator {
    /// Exact, case-sensitive match of one of the values.
    StringEquals,
    /// None of the values matches exactly.
    StringNotEquals,
    /// Exact match ignoring case.
    StringEqualsIgnoreCase,
    /// Matches none of the values, ignoring case.
    StringNotEqualsIgnoreCase,
    /// Matches one of the patterns (`*`, `?`).
    StringLike,
    /// Matches none of the patterns.
    StringNotLike,
    /// Numeric equality.
    NumericEquals,
    /// Numeric inequality.
    NumericNotEquals,
    /// Less than.
    NumericLessThan,
    /// Less than or equal.
    NumericLessThanEquals,
    /// Greater than.
    NumericGreaterThan,
    /// Greater than or equal.
    NumericGreaterThanEquals,
    /// `true` or `false`.
    Bool,
    /// The source IP is in one of the CIDR ranges.
    IpAddress,
    /// The source IP is in none of the CIDR ranges.
    NotIpAddress,
    /// The ARN matches one of the patterns.
    ArnLike,
    /// The ARN matches none of the patterns.
    ArnNotLike,
}

impl ConditionOperator {
    /// The operator as IAM writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionOperator::StringEquals => "StringEquals",
            ConditionOperator::StringNotEquals => "StringNotEquals",
            ConditionOperator::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            ConditionOperator::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            ConditionOperator::StringLike => "StringLike",
            ConditionOperator::StringNotLike => "StringNotLike",
            ConditionOperator::NumericEquals => "NumericEquals",
            ConditionOperator::NumericNotEquals => "NumericNotEquals",
            ConditionOperator::NumericLessThan => "NumericLessThan",
            ConditionOperator::NumericLessThanEquals => "NumericLessThanEquals",
            ConditionOperator::NumericGreaterThan => "NumericGreaterThan",
            ConditionOperator::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            ConditionOperator::Bool => "Bool",
            ConditionOperator::IpAddress => "IpAddress",
            ConditionOperator::NotIpAddress => "NotIpAddress",
            ConditionOperator::ArnLike => "ArnLike",
            ConditionOperator::ArnNotLike => "ArnNotLike",
        }
    }
}

/// A condition key as IAM spells them: `service:Key`, optionally with a `/tag-key` part
/// (`aws:RequestedRegion`, `ec2:InstanceType`, `aws:ResourceTag/team`).
pub const CONDITION_KEY_PATTERN: &str = r"^[a-zA-Z0-9-]+:[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:+=@/-]+)?$";

/// One IAM condition of the deny statement: `operator` over `key` with one or more `values`
/// (any value matching satisfies it; all conditions must hold).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DenyCondition {
    /// The IAM condition operator, e.g. `StringEquals`, `StringLike`, `NumericGreaterThan`.
    pub operator: ConditionOperator,
    /// The condition key, e.g. `aws:RequestedRegion` or `ec2:InstanceType`.
    #[schemars(length(min = 3, max = 128), regex(pattern = CONDITION_KEY_PATTERN))]
    pub key: String,
    /// The values; at least one.
    #[schemars(length(min = 1, max = 50), inner(length(min = 1, max = 256)))]
    pub values: Vec<String>,
}

/// `CustomResourceDefinition`s of both kinds, in a stable order.
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![GuardrailPolicy::crd(), Quarantine::crd()]
}

/// Both CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for (_, yaml) in crd_files()? {
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

/// Each CRD as `(file name, YAML)`, exactly as committed under `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
    let header = "# Generated by `autoguardrails crd --dir crds` from src/crd/. Do not edit.\n";
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((
                format!("{name}.yaml"),
                format!("{header}{}", serde_saphyr::to_string(&crd)?),
            ))
        })
        .collect()
}

/// A reference to a key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// [`is_default_actions`] for serde's `skip_serializing_if` (which passes `&Vec`).
#[allow(clippy::ptr_arg)]
pub fn is_default_actions_vec(actions: &Vec<Action>) -> bool {
    is_default_actions(actions)
}
