//! Policy evaluation: a `CostSignal`, a GuardrailPolicy, the existing Quarantines and `now` give a
//! `Decision` (PascalCase reason, human message, and the Quarantine to create, or none). Pure: no
//! async, no I/O, no clock reads; the caller passes everything in.

pub mod chain;
pub mod flat;
pub mod name;
pub mod schedule;
pub mod selectors;

use crate::controller::crd::{
    DenySpec, GuardrailPolicy, Mode, PolicyRef, Principal, Quarantine, QuarantineSpec, SignalSource,
};
use crate::controller::signal::CostSignal;
use crate::principal::{Exclusions, PrincipalArn, PrincipalSet};
use jiff::{SignedDuration, Timestamp};
use kube::Resource;
use kube::api::ObjectMeta;

/// Reason: the signal matched and a Quarantine is to be created.
pub const MATCHED: &str = "Matched";
/// Reason: matched, but the kill switch turned enforcement into a dry run.
pub const KILL_SWITCH_DRY_RUN: &str = "KillSwitchDryRun";
/// Reason: the signal's kind is not in `match.sources`.
pub const SOURCE_NOT_MATCHED: &str = "SourceNotMatched";
/// Reason: the signal's account is not in `match.accountIds`.
pub const ACCOUNT_NOT_MATCHED: &str = "AccountNotMatched";
/// Reason: the impact is below `match.minImpactUsd`.
pub const BELOW_MINIMUM_IMPACT: &str = "BelowMinimumImpact";
/// Reason: the signal's service is not in `match.services`.
pub const SERVICE_NOT_MATCHED: &str = "ServiceNotMatched";
/// Reason: the budget is not in `match.budgetNames`.
pub const BUDGET_NOT_MATCHED: &str = "BudgetNotMatched";
/// Reason: a Velocity signal names a principal that is not in `scope.principals`.
pub const PRINCIPAL_NOT_MATCHED: &str = "PrincipalNotMatched";
/// Reason: an exception window covers `now`.
pub const EXCEPTION_WINDOW: &str = "ExceptionWindow";
/// Reason: every target is excepted or protected.
pub const NO_ELIGIBLE_TARGETS: &str = "NoEligibleTargets";
/// Reason: this signal already has its Quarantine (a repeated delivery).
pub const ALREADY_QUARANTINED: &str = "AlreadyQuarantined";
/// Reason: every eligible target is already held by a live quarantine of this policy.
pub const ALREADY_ENFORCED: &str = "AlreadyEnforced";
/// Reason: every eligible target was released within the cooldown.
pub const COOLING_DOWN: &str = "CoolingDown";
/// Reason: a `notifyOnly` policy matched; the match is announced (no Quarantine, no AWS write).
pub const NOTIFIED: &str = "Notified";
/// Reason: a `notifyOnly` policy matched within its cooldown of the last announcement.
pub const NOTIFY_COOLING_DOWN: &str = "NotifyCoolingDown";
/// Reason: the policy itself is invalid.
pub const INVALID_POLICY: &str = "InvalidPolicy";
/// Reason: the signal itself is invalid.
pub const INVALID_SIGNAL: &str = "InvalidSignal";
/// Reason: the policy has `scope.selectors` and no usable resolution (not resolved yet, the
/// listing failed, the selectors changed, or the resolution is stale): nothing is created.
pub const SELECTORS_UNRESOLVED: &str = "SelectorsUnresolved";
/// Reason: the scope resolved to more principals than `scope.maxTargets`: nothing is created.
pub const TOO_MANY_TARGETS: &str = "TooManyTargets";

/// Controller-wide settings that bound every policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Principals never quarantined, whatever a policy says (e.g. break-glass and the controller's
    /// own role), compared by IAM's rule (`crate::principal`).
    pub protected_principals: PrincipalSet,
    /// When true, every new quarantine is created in DryRun mode.
    pub kill_switch: bool,
}

/// Everything an evaluation looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The policy, with metadata (name, namespace, uid) filled in.
    pub policy: &'a GuardrailPolicy,
    /// The normalised signal.
    pub signal: &'a CostSignal,
    /// The Quarantines that already exist in the policy's namespace.
    pub existing: &'a [Quarantine],
    /// Controller-wide protected principals and kill switch.
    pub settings: &'a ControllerSettings,
    /// The evaluation time.
    pub now: Timestamp,
    /// The policy's latest selector resolution (policies with `scope.selectors`; `None` when
    /// there is none yet, which such a policy never takes as "no one in scope").
    pub resolution: Option<&'a selectors::Resolution>,
}

/// The outcome of evaluating one signal against one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// PascalCase reason, one of this module's constants.
    pub reason: &'static str,
    /// A sentence a person can act on.
    pub message: String,
    /// The Quarantine to create, when the signal matched.
    pub quarantine: Option<Quarantine>,
}

impl Decision {
    fn skip(reason: &'static str, message: String) -> Self {
        Decision {
            reason,
            message,
            quarantine: None,
        }
    }
}

/// Parses a Go-style duration (`4h`, `30m`, `1h30m`) as used in the CRDs.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let pattern_ok = regex_lite_duration(text);
    if !pattern_ok {
        return Err(format!("{text:?} is not a duration like 4h, 30m or 1h30m"));
    }
    if let Some(duration) = integer_duration(text) {
        return Ok(duration);
    }
    text.parse::<SignedDuration>()
        .map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// The common case without jiff's general parser (evaluation parses three durations per
/// policy): whole numbers of `h`, `m`, `s`, `ms`, `us`/`µs`, `ns` in a text that already passed
/// `regex_lite_duration`. `None` (fractions, overflow) falls back to jiff, which gives the same
/// value for everything this accepts.
fn integer_duration(text: &str) -> Option<SignedDuration> {
    let bytes = text.as_bytes();
    let mut total: i128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let mut value: i128 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            value = value
                .checked_mul(10)?
                .checked_add(i128::from(bytes[i] - b'0'))?;
            if value > i128::from(i64::MAX) * 1_000_000_000 {
                return None;
            }
            i += 1;
        }
        let rest = &text[i..];
        let (nanos_per_unit, length): (i128, usize) = if rest.starts_with("ms") {
            (1_000_000, 2)
        } else if rest.starts_with("us") {
            (1_000, 2)
        } else if rest.starts_with("µs") {
            (1_000, "µs".len())
        } else if rest.starts_with("ns") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000_000_000, 1)
        } else if rest.starts_with('m') {
            (60_000_000_000, 1)
        } else if rest.starts_with('s') {
            (1_000_000_000, 1)
        } else {
            return None; // a fraction or anything unusual: the general parser decides
        };
        total = total.checked_add(value.checked_mul(nanos_per_unit)?)?;
        i += length;
    }
    let seconds = i64::try_from(total / 1_000_000_000).ok()?;
    let nanos = i32::try_from(total % 1_000_000_000).ok()?;
    Some(SignedDuration::new(seconds, nanos))
}

fn regex_lite_duration(text: &str) -> bool {
    // Mirrors crd::DURATION_PATTERN without compiling a regex on the hot path.
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let fraction = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == fraction {
                return false;
            }
        }
        let rest = &text[i..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(**u) && !(**u == "m" && rest.starts_with("ms")));
        match unit {
            Some(u) => i += u.len(),
            None => return false,
        }
    }
    true
}

/// True when a decision with this reason concerns the policy: the signal is of a source, account,
/// service and budget the policy watches, whatever the outcome (a match, too small an impact, an
/// exception window, a cooldown …). Intake records only such signals as the policy's `lastSignal`,
/// so one signal does not write the status of every policy of its account.
pub fn concerns(reason: &str) -> bool {
    !matches!(
        reason,
        SOURCE_NOT_MATCHED
            | ACCOUNT_NOT_MATCHED
            | SERVICE_NOT_MATCHED
            | BUDGET_NOT_MATCHED
            | PRINCIPAL_NOT_MATCHED
    )
}

/// Why `policy` does not watch `signal` at all (its source, account, service or budget is not in
/// `match`), checked in that order: the reason [`evaluate`] gives, without building its message.
/// `None` when the policy watches the signal. Intake uses it to pass over most policies cheaply.
pub fn unwatched(policy: &GuardrailPolicy, signal: &CostSignal) -> Option<&'static str> {
    let matcher = &policy.spec.matcher;
    if !matcher.sources.contains(&signal.source) {
        return Some(SOURCE_NOT_MATCHED);
    }
    if !matcher.account_ids.is_empty() && !matcher.account_ids.contains(&signal.account_id) {
        return Some(ACCOUNT_NOT_MATCHED);
    }
    if !matcher.services.is_empty()
        && !signal
            .service
            .as_ref()
            .is_some_and(|s| matcher.services.contains(s))
    {
        return Some(SERVICE_NOT_MATCHED);
    }
    if signal.source == SignalSource::Budget
        && !matcher.budget_names.is_empty()
        && !signal
            .budget_name
            .as_ref()
            .is_some_and(|b| matcher.budget_names.contains(b))
    {
        return Some(BUDGET_NOT_MATCHED);
    }
    // With selectors, whether the principal is in scope is known only from the resolution:
    // the `eligible-targets` check decides (with the same reason).
    if let Some(arn) = &signal.principal
        && policy.spec.scope.selectors.is_empty()
        && !names_a_scoped_principal(policy, arn)
    {
        return Some(PRINCIPAL_NOT_MATCHED);
    }
    None
}

/// Whether `arn` (a signal's principal) is one of the policy's scope principals, by IAM's
/// identity rule. An ARN that does not parse names nobody.
fn names_a_scoped_principal(policy: &GuardrailPolicy, arn: &str) -> bool {
    let Ok(named) = PrincipalArn::parse(arn) else {
        return false;
    };
    policy
        .spec
        .scope
        .principals
        .iter()
        .any(|p| p.parse().is_ok_and(|p| p.same_principal(&named)))
}

/// Evaluates one signal against one policy: the checks of [`chain`], in order; the first that
/// ends the evaluation gives the decision, and a signal that passes them all is matched.
pub fn evaluate(input: Input<'_>) -> Decision {
    chain::run(input)
}

pub(crate) fn build_quarantine(
    policy: &GuardrailPolicy,
    signal: &CostSignal,
    name: &str,
    targets: Vec<Principal>,
    target_reasons: Vec<crate::controller::crd::TargetReason>,
    mode: Mode,
) -> Quarantine {
    let spec = &policy.spec;
    let owner = policy.controller_owner_ref(&());
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(
        "autoguardrails.io/policy".to_string(),
        name::label_value(policy.metadata.name.as_deref().unwrap_or_default()),
    );
    labels.insert(
        "autoguardrails.io/source".to_string(),
        signal.source.as_str().to_string(),
    );
    Quarantine {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: policy.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: QuarantineSpec {
            policy_ref: PolicyRef {
                name: policy.metadata.name.clone().unwrap_or_default(),
            },
            signal: Some(signal.to_record()),
            targets,
            target_reasons,
            deny: DenySpec {
                actions: spec.deny.actions.clone(),
                regions: spec.scope.regions.clone(),
                conditions: spec.deny.conditions.clone(),
            },
            actions: spec.actions.clone(),
            mode,
            ttl: spec.quarantine.ttl.clone(),
            approval_timeout: (mode == Mode::Manual)
                .then(|| spec.quarantine.approval_timeout.clone()),
            required_approvers: spec
                .quarantine
                .required_approvers
                .filter(|_| mode == Mode::Manual),
            notify: spec.notify.as_ref().map(quarantine_notify),
        },
        status: None,
    }
}

/// The policy's `notify` as the Quarantine keeps it. A `slack` naming neither a webhook nor a
/// channel (a bot set-up posting to the controller's `notifications.channel`, decision 238) is
/// kept as `channelHint: ""`: server-side apply drops an empty object, and the Quarantine would
/// lose its Slack messages with it. An empty `channelHint` names no channel.
fn quarantine_notify(
    notify: &crate::controller::crd::NotifySpec,
) -> crate::controller::crd::NotifySpec {
    let mut notify = notify.clone();
    if let Some(slack) = notify.slack.as_mut()
        && slack.webhook_secret_ref.is_none()
        && slack.webhook_ssm_parameter.is_none()
        && slack.channel_hint.is_none()
    {
        slack.channel_hint = Some(String::new());
    }
    notify
}

/// The one matcher for a policy: the controller's protected principals and the policy's
/// `exceptions.principals` and `exceptions.accounts`. An exception that is not a principal ARN
/// or an account id is an error, never skipped.
pub fn exclusions(
    spec: &crate::controller::crd::GuardrailPolicySpec,
    protected: &PrincipalSet,
) -> Result<Exclusions, crate::principal::PrincipalError> {
    Exclusions::new(
        protected.clone(),
        PrincipalSet::parse_all(&spec.exceptions.principals)?,
    )
    .with_excepted_accounts(&spec.exceptions.accounts)
}

/// Whether `policy` only notifies (`actions: [notifyOnly]`): a match creates no Quarantine.
pub fn notifies_only(policy: &GuardrailPolicy) -> bool {
    policy
        .spec
        .actions
        .contains(&crate::controller::crd::Action::NotifyOnly)
}

/// For a `notifyOnly` policy that matched at `now`: `Some(message)` when the last announcement
/// (`last`, from status or this replica's memory) is within the policy's cooldown, so this match
/// is counted but not announced again. Pure.
pub fn notify_cooldown(
    policy: &GuardrailPolicy,
    last: Option<Timestamp>,
    now: Timestamp,
) -> Option<String> {
    let last = last?;
    let cooldown = parse_duration(&policy.spec.quarantine.cooldown).ok()?;
    let until = last.checked_add(cooldown).ok()?;
    (now < until).then(|| {
        format!(
            "announced at {last}; the next match is announced after {until} (cooldown {})",
            policy.spec.quarantine.cooldown
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_naming_nothing_is_kept_on_the_quarantine_as_an_empty_channel_hint() {
        use crate::controller::crd::{NotifySpec, SlackSpec};
        let slack = |hint: Option<&str>, ssm: Option<&str>| NotifySpec {
            slack: Some(SlackSpec {
                webhook_secret_ref: None,
                webhook_ssm_parameter: ssm.map(str::to_string),
                channel_hint: hint.map(str::to_string),
            }),
        };
        let kept = quarantine_notify(&slack(None, None));
        assert_eq!(kept, slack(Some(""), None));
        // Serialized, it is not an empty object (server-side apply would drop that).
        assert_eq!(
            serde_json::to_value(&kept).unwrap(),
            serde_json::json!({"slack": {"channelHint": ""}})
        );
        for unchanged in [
            slack(Some("C0"), None),
            slack(None, Some("/p")),
            NotifySpec { slack: None },
        ] {
            assert_eq!(quarantine_notify(&unchanged), unchanged);
        }
    }

    #[test]
    fn a_notify_only_match_within_the_cooldown_is_not_announced_again() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies/notify-only-dev.yaml"
        ))
        .unwrap();
        let policy =
            crate::controller::simulate::load_policy("notify-only-dev.yaml", &text).unwrap();
        assert!(notifies_only(&policy));
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let last = at("2026-11-20T10:00:00Z");
        // cooldown: 1h
        assert_eq!(notify_cooldown(&policy, None, last), None);
        assert!(notify_cooldown(&policy, Some(last), at("2026-11-20T10:59:59Z")).is_some());
        assert_eq!(
            notify_cooldown(&policy, Some(last), at("2026-11-20T11:00:00Z")),
            None
        );
        let mut enforcing = policy.clone();
        enforcing.spec.actions = vec![crate::controller::crd::Action::AttachDeny];
        assert!(!notifies_only(&enforcing));
    }

    #[test]
    fn durations_follow_go_syntax() {
        for ok in ["4h", "30m", "1h30m", "1.5h", "90s", "250ms", "168h"] {
            assert!(parse_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["", "4", "h", "7d", "4 h", "-1h", "1h-", "1.h", "PT4H"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("1h30m"), Ok(SignedDuration::from_mins(90)));
    }

    #[test]
    fn integer_fast_path_agrees_with_jiff() {
        for text in [
            "4h",
            "30m",
            "1h30m",
            "90s",
            "250ms",
            "168h",
            "0s",
            "1h1m1s1ms1us1ns",
            "7µs",
            "2562047h",
            "9999999999999h",
            "1m90s",
        ] {
            assert_eq!(
                integer_duration(text).map(Ok),
                Some(text.parse::<SignedDuration>().map_err(|e| e.to_string()))
                    .filter(|r| r.is_ok()),
                "{text}"
            );
        }
    }
}
