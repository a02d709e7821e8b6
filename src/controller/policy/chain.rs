//! Policy evaluation as an ordered chain of checks (`CHECKS`). Each check looks at the input and
//! at what the checks before it established (the durations, the quarantine's name, the targets
//! still eligible, notes for the message) and either lets the evaluation go on or ends it with a
//! reason and a message. The order is part of the contract: the cheap match checks come first,
//! because most policies do not match a given signal and a non-matching policy must cost a few
//! comparisons (issue 10: >= 1,000,000 evaluations per second per core); a signal that passes
//! every check is matched, and [`Evaluation::matched`] builds its Quarantine.

use jiff::SignedDuration;

use super::{
    ACCOUNT_NOT_MATCHED, ALREADY_ENFORCED, ALREADY_QUARANTINED, BELOW_MINIMUM_IMPACT, COOLING_DOWN,
    Decision, EXCEPTION_WINDOW, INVALID_POLICY, INVALID_SIGNAL, Input, KILL_SWITCH_DRY_RUN,
    MATCHED, NO_ELIGIBLE_TARGETS, PRINCIPAL_NOT_MATCHED, SELECTORS_UNRESOLVED, SERVICE_NOT_MATCHED,
    SOURCE_NOT_MATCHED, TOO_MANY_TARGETS, build_quarantine, exclusions, name, parse_duration,
    schedule, selectors, unwatched,
};
use crate::controller::crd::{Mode, Phase, Principal, Quarantine, TargetReason};
use crate::principal::{Exclusion, PrincipalArn};

/// How a check ends the evaluation: the reason (one of the module's constants) and a message.
/// Checks never create anything: only a signal that passes every check is matched.
struct Stop {
    reason: &'static str,
    message: String,
}

impl Stop {
    fn new(reason: &'static str, message: String) -> Stop {
        Stop { reason, message }
    }
}

/// One check: `Ok` lets the evaluation go on, `Err` ends it.
type Check = fn(&mut Evaluation<'_>) -> Result<(), Stop>;

/// The checks, in the order they run, with the name each is known by.
const CHECKS: &[(&str, Check)] = &[
    ("finite-impact", finite_impact),
    ("watched", watched),
    ("minimum-impact", minimum_impact),
    ("valid-signal", valid_signal),
    ("valid-durations", valid_durations),
    ("exception-window", exception_window),
    ("not-yet-quarantined", not_yet_quarantined),
    ("eligible-targets", eligible_targets),
    ("not-held-or-cooling", not_held_or_cooling),
];

/// The names of the checks, in order (for documentation and tests).
pub fn check_names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|(name, _)| *name)
}

/// Runs the chain.
pub fn run(input: Input<'_>) -> Decision {
    let mut evaluation = Evaluation {
        input,
        policy_name: input.policy.metadata.name.as_deref().unwrap_or_default(),
        cooldown: SignedDuration::ZERO,
        quarantine_name: String::new(),
        targets: Vec::new(),
        reasons: Vec::new(),
        notes: Vec::new(),
    };
    for (_, check) in CHECKS {
        if let Err(stop) = check(&mut evaluation) {
            return Decision::skip(stop.reason, stop.message);
        }
    }
    evaluation.matched()
}

/// What the checks established so far.
struct Evaluation<'a> {
    input: Input<'a>,
    policy_name: &'a str,
    /// `quarantine.cooldown`, once `valid-durations` passed.
    cooldown: SignedDuration,
    /// The deterministic name of this signal's Quarantine, once `not-yet-quarantined` passed.
    quarantine_name: String,
    /// The targets still eligible.
    targets: Vec<Principal>,
    /// Why each eligible target is in scope (policies with selectors only).
    reasons: Vec<TargetReason>,
    /// Why principals of the scope were left out, for the message.
    notes: Vec<String>,
}

impl Evaluation<'_> {
    fn invalid_policy(&self, why: impl std::fmt::Display) -> Stop {
        Stop::new(
            INVALID_POLICY,
            format!("policy {}: {why}", self.policy_name),
        )
    }

    /// The decision of a signal that passed every check.
    fn matched(self) -> Decision {
        let Evaluation {
            input,
            policy_name,
            quarantine_name,
            targets,
            reasons,
            notes,
            ..
        } = self;
        let spec = &input.policy.spec;
        let signal = input.signal;
        let (mode, reason) = if input.settings.kill_switch && spec.mode != Mode::DryRun {
            (Mode::DryRun, KILL_SWITCH_DRY_RUN)
        } else {
            (spec.mode, MATCHED)
        };
        // The reasons of the targets that are still eligible, in target order.
        let reasons: Vec<TargetReason> = targets
            .iter()
            .filter_map(|t| reasons.iter().find(|r| r.arn == t.arn).cloned())
            .collect();
        let quarantine = build_quarantine(
            input.policy,
            signal,
            &quarantine_name,
            targets,
            reasons,
            mode,
        );
        if super::notifies_only(input.policy) {
            // notifyOnly: the match is announced; the Quarantine above is never created.
            let mut message = format!(
                "{} signal {} in account {} (USD {:.2}) matched policy {policy_name}: notifyOnly, announced for {} principal(s) in scope; no Quarantine, no AWS change",
                signal.source.as_str(),
                signal.id,
                signal.account_id,
                signal.impact_usd,
                quarantine.spec.targets.len()
            );
            if !notes.is_empty() {
                message.push_str(&format!("; {}", notes.join("; ")));
            }
            return Decision {
                reason: MATCHED,
                message,
                quarantine: Some(quarantine),
            };
        }
        let mut message = format!(
            "{} signal {} in account {} (USD {:.2}) matched policy {policy_name}: quarantine {quarantine_name} in {} mode for {} on {} target(s)",
            signal.source.as_str(),
            signal.id,
            signal.account_id,
            signal.impact_usd,
            mode.as_str(),
            spec.quarantine.ttl,
            quarantine.spec.targets.len()
        );
        if reason == KILL_SWITCH_DRY_RUN {
            message.push_str(&format!(
                "; the kill switch turned {} into DryRun",
                spec.mode.as_str()
            ));
        }
        if !notes.is_empty() {
            message.push_str(&format!("; {}", notes.join("; ")));
        }
        Decision {
            reason,
            message,
            quarantine: Some(quarantine),
        }
    }
}

/// A signal whose impact is not a number is reported as invalid by every policy it reaches,
/// before any match check (the full validation runs after the cheap checks).
fn finite_impact(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let signal = e.input.signal;
    if !signal.impact_usd.is_finite()
        && let Err(err) = signal.validate()
    {
        return Err(Stop::new(INVALID_SIGNAL, err.to_string()));
    }
    Ok(())
}

/// The policy watches the signal's source, account, service, budget and principal.
fn watched(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let (signal, policy_name) = (e.input.signal, e.policy_name);
    let Some(reason) = unwatched(e.input.policy, signal) else {
        return Ok(());
    };
    let message = match reason {
        SOURCE_NOT_MATCHED => format!(
            "{} signals are not in match.sources of policy {policy_name}",
            signal.source.as_str()
        ),
        ACCOUNT_NOT_MATCHED => format!(
            "account {} is not in match.accountIds of policy {policy_name}",
            signal.account_id
        ),
        SERVICE_NOT_MATCHED => format!(
            "service {} is not in match.services of policy {policy_name}",
            signal.service.as_deref().unwrap_or("(unknown)")
        ),
        PRINCIPAL_NOT_MATCHED => format!(
            "principal {} is not in scope.principals of policy {policy_name}",
            signal.principal.as_deref().unwrap_or("(none)")
        ),
        _ => format!(
            "budget {} is not in match.budgetNames of policy {policy_name}",
            signal.budget_name.as_deref().unwrap_or("(unknown)")
        ),
    };
    Err(Stop::new(reason, message))
}

/// The impact reaches `match.minImpactUsd`.
fn minimum_impact(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let (signal, matcher) = (e.input.signal, &e.input.policy.spec.matcher);
    if signal.impact_usd < matcher.min_impact_usd {
        return Err(Stop::new(
            BELOW_MINIMUM_IMPACT,
            format!(
                "impact USD {:.2} is below match.minImpactUsd {:.2} of policy {}",
                signal.impact_usd, matcher.min_impact_usd, e.policy_name
            ),
        ));
    }
    Ok(())
}

/// The signal passes its full validation.
fn valid_signal(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    e.input
        .signal
        .validate()
        .map_err(|err| Stop::new(INVALID_SIGNAL, err.to_string()))
}

/// `ttl`, `approvalTimeout` and `cooldown` parse, and the ttl is positive.
fn valid_durations(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let quarantine = &e.input.policy.spec.quarantine;
    let durations = (
        parse_duration(&quarantine.ttl),
        parse_duration(&quarantine.approval_timeout),
        parse_duration(&quarantine.cooldown),
    );
    let (ttl, cooldown) = match durations {
        (Ok(t), Ok(_), Ok(c)) => (t, c),
        (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => {
            return Err(e.invalid_policy(err));
        }
    };
    if ttl <= SignedDuration::ZERO {
        return Err(e.invalid_policy("ttl must be more than 0"));
    }
    e.cooldown = cooldown;
    Ok(())
}

/// `now` is outside every exception window, absolute and weekly (half-open: start included, end
/// excluded). A weekly window that cannot be read (unknown time zone …) makes the policy invalid:
/// it is never taken as "no exception" nor as "excepted".
fn exception_window(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let now = e.input.now;
    let exceptions = &e.input.policy.spec.exceptions;
    let because = |reason: &str| {
        if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        }
    };
    if let Some(window) = exceptions
        .windows
        .iter()
        .find(|w| w.start.0 <= now && now < w.end.0)
    {
        return Err(Stop::new(
            EXCEPTION_WINDOW,
            format!(
                "policy {} has an exception window from {} to {}{}",
                e.policy_name,
                window.start.0,
                window.end.0,
                because(&window.reason)
            ),
        ));
    }
    for (i, window) in exceptions.weekly.iter().enumerate() {
        let weekly = schedule::Weekly::parse(window)
            .map_err(|err| e.invalid_policy(format!("exceptions.weekly[{i}]: {err}")))?;
        if let Some(open) = weekly.covering(now) {
            return Err(Stop::new(
                EXCEPTION_WINDOW,
                format!(
                    "policy {} has a weekly exception window {}, open from {} to {}{}",
                    e.policy_name,
                    schedule::describe(window),
                    open.opens.to_zoned(weekly.zone().clone()),
                    open.closes.to_zoned(weekly.zone().clone()),
                    because(&window.reason)
                ),
            ));
        }
    }
    Ok(())
}

/// This signal has no Quarantine of this policy yet (names are deterministic).
fn not_yet_quarantined(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let quarantine_name = name::quarantine_name(e.policy_name, &e.input.signal.id);
    if e.input
        .existing
        .iter()
        .any(|q| q.metadata.name.as_deref() == Some(quarantine_name.as_str()))
    {
        return Err(Stop::new(
            ALREADY_QUARANTINED,
            format!(
                "signal {} already has quarantine {quarantine_name}",
                e.input.signal.id
            ),
        ));
    }
    e.quarantine_name = quarantine_name;
    Ok(())
}

/// Target selection: the scope minus exceptions minus protected principals, by the one matcher;
/// a signal that names a principal (Velocity) quarantines that principal only (decision 171).
fn eligible_targets(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let spec = &e.input.policy.spec;
    let exclusions = exclusions(spec, &e.input.settings.protected_principals)
        .map_err(|err| e.invalid_policy(err))?;
    let named = match e.input.signal.principal.as_deref().map(PrincipalArn::parse) {
        None => None,
        Some(Ok(named)) => Some(named),
        Some(Err(err)) => return Err(Stop::new(INVALID_SIGNAL, err.to_string())),
    };
    let scope = in_scope(e)?;
    let with_reasons = !spec.scope.selectors.is_empty();
    let mut chosen: Vec<PrincipalArn> = Vec::new();
    for candidate in &scope {
        let principal = &candidate.principal;
        let parsed = principal.parse().map_err(|err| e.invalid_policy(err))?;
        if named.as_ref().is_some_and(|n| !n.same_principal(&parsed)) {
            continue;
        }
        match exclusions.check(&parsed) {
            Some(Exclusion::Excepted) => {
                e.notes
                    .push(format!("{} is excepted by the policy", principal.arn));
            }
            Some(Exclusion::ExceptedAccount) => {
                e.notes.push(format!(
                    "{} is in account {}, excepted by the policy",
                    principal.arn,
                    parsed.account_id()
                ));
            }
            Some(Exclusion::Protected) => {
                e.notes
                    .push(format!("{} is a protected principal", principal.arn));
            }
            None if !chosen.contains(&parsed) => {
                chosen.push(parsed);
                e.targets.push(principal.clone());
                if with_reasons {
                    e.reasons.push(TargetReason {
                        arn: principal.arn.clone(),
                        matched_by: candidate.matched_by.clone(),
                    });
                }
            }
            None => {}
        }
    }
    if e.targets.is_empty() && named.is_some() && with_reasons && e.notes.is_empty() {
        return Err(Stop::new(
            PRINCIPAL_NOT_MATCHED,
            format!(
                "principal {} is not in the scope of policy {} (scope.principals and the resolved scope.selectors)",
                e.input.signal.principal.as_deref().unwrap_or("(none)"),
                e.policy_name
            ),
        ));
    }
    if e.targets.is_empty() {
        return Err(Stop::new(
            NO_ELIGIBLE_TARGETS,
            format!(
                "policy {} has no eligible target: {}",
                e.policy_name,
                e.notes.join("; ")
            ),
        ));
    }
    Ok(())
}

/// The whole scope before exceptions: `scope.principals`, and for a policy with selectors the
/// principals of its resolution, which must be usable (never "no one" nor "everyone" when it is
/// missing, failed, stale or for other selectors) and within `scope.maxTargets`.
fn in_scope(e: &Evaluation<'_>) -> Result<Vec<selectors::ResolvedTarget>, Stop> {
    let scope = &e.input.policy.spec.scope;
    if scope.selectors.is_empty() {
        return Ok(selectors::candidates(scope, &[]));
    }
    if let Some(why) = selectors::unusable(scope, e.input.resolution, e.input.now) {
        return Err(Stop::new(
            SELECTORS_UNRESOLVED,
            format!("policy {}: {why}; no quarantine is created", e.policy_name),
        ));
    }
    let resolved = match e.input.resolution.map(|r| &r.outcome) {
        Some(selectors::Outcome::Resolved(targets)) => targets.as_slice(),
        _ => &[],
    };
    let all = selectors::candidates(scope, resolved);
    if all.len() > scope.max_targets() {
        return Err(Stop::new(
            TOO_MANY_TARGETS,
            format!(
                "policy {} scope resolves to {} principals, more than scope.maxTargets {}; no quarantine is created (narrow the selectors or raise maxTargets)",
                e.policy_name,
                all.len(),
                scope.max_targets()
            ),
        ));
    }
    Ok(all)
}

/// Live quarantines of this policy already holding a target make a new one redundant for it; a
/// target released less than `cooldown` ago is skipped for now. Ends the evaluation when no
/// target is left.
fn not_held_or_cooling(e: &mut Evaluation<'_>) -> Result<(), Stop> {
    let (now, cooldown, policy_name) = (e.input.now, e.cooldown, e.policy_name);
    let mine: Vec<&Quarantine> = e
        .input
        .existing
        .iter()
        .filter(|q| q.spec.policy_ref.name == policy_name)
        .collect();
    let mut held = Vec::new();
    let mut cooling = Vec::new();
    e.targets.retain(|target| {
        let holder = mine.iter().find(|q| {
            // A quarantine the controller has not seen yet (no phase) will hold its targets
            // unless it is a dry run, which never holds anything.
            let live = match q.status.as_ref().and_then(|s| s.phase) {
                None => q.spec.mode != Mode::DryRun,
                Some(p) => matches!(
                    p,
                    Phase::PendingApproval | Phase::Active | Phase::Releasing | Phase::Failed
                ),
            };
            live && q.spec.targets.iter().any(|t| t.same_principal(target))
        });
        if let Some(q) = holder {
            held.push(format!(
                "{} (held by {})",
                target.arn,
                q.metadata.name.as_deref().unwrap_or("?")
            ));
            return false;
        }
        let recently_released = mine.iter().any(|q| {
            q.spec.targets.iter().any(|t| t.same_principal(target))
                && q.status.as_ref().is_some_and(|s| {
                    s.phase == Some(Phase::Released)
                        && s.released_at
                            .as_ref()
                            .is_some_and(|at| now < at.0 + cooldown && now >= at.0)
                })
        });
        if recently_released {
            cooling.push(target.arn.clone());
            return false;
        }
        true
    });
    if e.targets.is_empty() {
        if !cooling.is_empty() && held.is_empty() {
            return Err(Stop::new(
                COOLING_DOWN,
                format!(
                    "{} released less than {} ago (policy {policy_name} cooldown)",
                    cooling.join(", "),
                    e.input.policy.spec.quarantine.cooldown
                ),
            ));
        }
        let mut parts = held;
        parts.extend(
            cooling
                .into_iter()
                .map(|arn| format!("{arn} (cooling down)")),
        );
        return Err(Stop::new(
            ALREADY_ENFORCED,
            format!("every target is already handled: {}", parts.join(", ")),
        ));
    }
    e.notes
        .extend(held.into_iter().map(|h| format!("{h} skipped")));
    e.notes.extend(
        cooling
            .into_iter()
            .map(|arn| format!("{arn} skipped: cooling down")),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cheap_match_checks_run_first() {
        let names: Vec<&str> = super::check_names().collect();
        let position = |n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
        assert!(position("watched") < position("valid-signal"));
        assert!(position("minimum-impact") < position("valid-durations"));
        assert_eq!(names.last(), Some(&"not-held-or-cooling"));
        assert_eq!(names.len(), 9);
    }
}
