//! Table tests for the lifecycle state machine, the annotation parser and the status conversion.

use super::*;
use crate::controller::crd::{
    DenySpec, PolicyRef, Principal, PrincipalKind, QuarantineStatus, TargetState, TargetStatus,
};
use std::collections::BTreeMap;

const ALL_PHASES: [Phase; 8] = [
    Phase::DryRun,
    Phase::PendingApproval,
    Phase::Active,
    Phase::Releasing,
    Phase::Released,
    Phase::Rejected,
    Phase::Expired,
    Phase::Failed,
];

fn origin() -> Timestamp {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

fn at_minutes(minutes: i64) -> Timestamp {
    add(origin(), SignedDuration::from_mins(minutes))
}

fn context(mode: Mode) -> Context {
    Context {
        mode,
        created_at: origin(),
        ttl: SignedDuration::from_hours(4),
        approval_timeout: SignedDuration::from_hours(1),
        kill_switch: false,
        required_approvers: 1,
    }
}

fn approve(actor: &str) -> Event {
    Event::Approve {
        actor: actor.into(),
        note: "looked at the bill".into(),
    }
}

fn reject(actor: &str) -> Event {
    Event::Reject {
        actor: actor.into(),
        note: "expected load test".into(),
    }
}

fn release(actor: &str) -> Event {
    Event::Release {
        actor: actor.into(),
        note: "fixed the loop".into(),
    }
}

fn extend(actor: &str, hours: i64) -> Event {
    Event::Extend {
        actor: actor.into(),
        duration: SignedDuration::from_hours(hours),
    }
}

fn fatal(reason: &str) -> Event {
    Event::EnforcementFailed {
        reason: reason.into(),
        retryable: false,
    }
}

/// A quarantine in `phase`, reached through real transitions, with the context it was built under
/// and the time of its last step (all at minute 10 or 20).
fn reach(phase: Phase) -> (State, Context) {
    let (mode, path): (Mode, Vec<Event>) = match phase {
        Phase::DryRun => (Mode::DryRun, vec![]),
        Phase::PendingApproval => (Mode::Manual, vec![]),
        Phase::Active => (Mode::Auto, vec![]),
        Phase::Releasing => (Mode::Auto, vec![release("alice")]),
        Phase::Released => (Mode::Auto, vec![release("alice"), Event::ReleaseSucceeded]),
        Phase::Rejected => (Mode::Manual, vec![reject("bob")]),
        Phase::Expired => (Mode::Manual, vec![]),
        Phase::Failed => (Mode::Auto, vec![fatal("AccessDenied")]),
    };
    let context = context(mode);
    let mut state = create(&context, at_minutes(1)).state;
    for event in &path {
        state = step(state, &context, event, at_minutes(10)).state;
    }
    if phase == Phase::Expired {
        state = step(state, &context, &Event::Tick, at_minutes(61)).state;
    }
    assert_eq!(state.phase, phase, "fixture for {phase:?}");
    (state, context)
}

fn has(effects: &[Effect], wanted: &Effect) -> bool {
    effects.contains(wanted)
}

fn reasons(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::PublishEvent { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn last_history(state: &State) -> &HistoryEntry {
    state.history.last().expect("history is not empty")
}

#[test]
fn dry_run_lifecycle_plans_then_expires_without_enforcement() {
    let context = context(Mode::DryRun);
    let created = create(&context, at_minutes(1));
    assert_eq!(created.state.phase, Phase::DryRun);
    assert_eq!(created.state.expires_at, Some(at_minutes(240)));
    assert_eq!(
        created.effects,
        vec![
            Effect::PublishEvent {
                event_type: EventType::Normal,
                reason: REASON_PLANNED,
                actor: CONTROLLER_ACTOR.into(),
                message: last_history(&created.state).message.clone(),
            },
            Effect::Notify(Notification::Planned),
            Effect::RequeueAt(at_minutes(240)),
        ]
    );

    let waiting = step(created.state, &context, &Event::Tick, at_minutes(120));
    assert_eq!(waiting.state.phase, Phase::DryRun);
    assert_eq!(waiting.effects, vec![Effect::RequeueAt(at_minutes(240))]);

    let expired = step(waiting.state, &context, &Event::Tick, at_minutes(240));
    assert_eq!(expired.state.phase, Phase::Expired);
    assert!(has(
        &expired.effects,
        &Effect::Notify(Notification::Expired)
    ));
    assert_eq!(reasons(&expired.effects), vec![REASON_EXPIRED]);
    assert!(
        !expired
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Enforce | Effect::Release | Effect::RequeueAt(_)))
    );
}

#[test]
fn manual_lifecycle_approve_enforce_expire_release() {
    let context = context(Mode::Manual);
    let created = create(&context, at_minutes(1));
    assert_eq!(created.state.phase, Phase::PendingApproval);
    assert_eq!(created.state.approval_deadline, Some(at_minutes(60)));
    assert!(has(
        &created.effects,
        &Effect::Notify(Notification::PendingApproval)
    ));
    assert!(has(&created.effects, &Effect::RequeueAt(at_minutes(60))));
    assert!(!has(&created.effects, &Effect::Enforce));

    let approved = step(created.state, &context, &approve("alice"), at_minutes(30));
    let state = &approved.state;
    assert_eq!(state.phase, Phase::Active);
    assert_eq!(state.approved_by.as_deref(), Some("alice"));
    assert_eq!(state.approved_at, Some(at_minutes(30)));
    assert_eq!(state.activated_at, Some(at_minutes(30)));
    assert_eq!(state.expires_at, Some(at_minutes(270)));
    assert_eq!(
        reasons(&approved.effects),
        vec![REASON_APPROVED, REASON_ACTIVATED]
    );
    assert!(has(&approved.effects, &Effect::Enforce));
    assert!(has(
        &approved.effects,
        &Effect::Notify(Notification::Activated)
    ));
    assert!(has(
        &approved.effects,
        &Effect::ClearAnnotation(APPROVE_ANNOTATION)
    ));
    assert!(has(&approved.effects, &Effect::RequeueAt(at_minutes(270))));

    let enforced = step(
        approved.state,
        &context,
        &Event::EnforcementSucceeded,
        at_minutes(31),
    );
    assert_eq!(enforced.state.phase, Phase::Active);
    assert_eq!(enforced.effects, vec![Effect::RequeueAt(at_minutes(270))]);

    let ticking = step(enforced.state, &context, &Event::Tick, at_minutes(100));
    assert_eq!(
        ticking.effects,
        vec![Effect::Enforce, Effect::RequeueAt(at_minutes(270))]
    );

    let releasing = step(ticking.state, &context, &Event::Tick, at_minutes(271));
    assert_eq!(releasing.state.phase, Phase::Releasing);
    assert_eq!(releasing.state.release_reason, Some(ReleaseReason::Expired));
    assert_eq!(reasons(&releasing.effects), vec![REASON_TTL_EXPIRED]);
    assert!(has(&releasing.effects, &Effect::Release));
    assert!(!has(&releasing.effects, &Effect::Enforce));

    let released = step(
        releasing.state,
        &context,
        &Event::ReleaseSucceeded,
        at_minutes(272),
    );
    assert_eq!(released.state.phase, Phase::Released);
    assert_eq!(released.state.released_at, Some(at_minutes(272)));
    assert!(has(
        &released.effects,
        &Effect::Notify(Notification::Released)
    ));
    assert!(
        !released
            .effects
            .iter()
            .any(|e| matches!(e, Effect::RequeueAt(_)))
    );
}

#[test]
fn auto_lifecycle_activates_at_creation() {
    let context = context(Mode::Auto);
    let created = create(&context, at_minutes(2));
    assert_eq!(created.state.phase, Phase::Active);
    assert_eq!(created.state.activated_at, Some(at_minutes(2)));
    assert_eq!(created.state.expires_at, Some(at_minutes(242)));
    assert_eq!(created.state.approved_by, None);
    assert!(has(&created.effects, &Effect::Enforce));
    assert!(has(
        &created.effects,
        &Effect::Notify(Notification::Activated)
    ));
    assert!(has(&created.effects, &Effect::RequeueAt(at_minutes(242))));

    let releasing = step(created.state, &context, &release("carol"), at_minutes(50));
    assert_eq!(releasing.state.phase, Phase::Releasing);
    assert_eq!(
        releasing.state.release_reason,
        Some(ReleaseReason::ReleaseRequested)
    );
    assert_eq!(last_history(&releasing.state).actor, "carol");
    assert!(has(&releasing.effects, &Effect::Release));
    assert!(has(
        &releasing.effects,
        &Effect::ClearAnnotation(RELEASE_ANNOTATION)
    ));

    let failed_once = step(
        releasing.state,
        &context,
        &Event::ReleaseFailed {
            reason: "Throttling".into(),
        },
        at_minutes(51),
    );
    assert_eq!(failed_once.state.phase, Phase::Releasing);
    assert_eq!(reasons(&failed_once.effects), vec![REASON_RELEASE_FAILED]);
    assert!(has(&failed_once.effects, &Effect::RequeueWithBackoff));
    assert_eq!(
        last_history(&failed_once.state).event,
        REASON_RELEASE_REQUESTED,
        "retries stay out of history"
    );

    let retried = step(failed_once.state, &context, &Event::Tick, at_minutes(52));
    assert_eq!(retried.effects, vec![Effect::Release]);
    let released = step(
        retried.state,
        &context,
        &Event::ReleaseSucceeded,
        at_minutes(53),
    );
    assert_eq!(released.state.phase, Phase::Released);
    assert_eq!(
        released.state.release_reason,
        Some(ReleaseReason::ReleaseRequested)
    );
}

#[test]
fn creation_after_a_passed_deadline_ends_immediately() {
    let dry_run = create(&context(Mode::DryRun), at_minutes(300));
    assert_eq!(dry_run.state.phase, Phase::Expired);
    assert_eq!(
        reasons(&dry_run.effects),
        vec![REASON_PLANNED, REASON_EXPIRED]
    );

    let manual = create(&context(Mode::Manual), at_minutes(61));
    assert_eq!(manual.state.phase, Phase::Expired);
    assert!(reasons(&manual.effects).contains(&REASON_APPROVAL_TIMED_OUT));

    // Auto counts the TTL from activation, so a late creation still enforces for the full TTL.
    let auto = create(&context(Mode::Auto), at_minutes(300));
    assert_eq!(auto.state.phase, Phase::Active);
    assert_eq!(auto.state.expires_at, Some(at_minutes(540)));
}

#[test]
fn approval_timeout_expires_and_a_late_approve_is_ignored() {
    let (state, context) = reach(Phase::PendingApproval);
    let late = step(state.clone(), &context, &approve("alice"), at_minutes(60));
    assert_eq!(late.state.phase, Phase::Expired);
    assert_eq!(late.state.activated_at, None);
    assert_eq!(
        reasons(&late.effects),
        vec![REASON_APPROVAL_TIMED_OUT, REASON_ANNOTATION_IGNORED]
    );
    assert!(has(
        &late.effects,
        &Effect::ClearAnnotation(APPROVE_ANNOTATION)
    ));
    assert!(!has(&late.effects, &Effect::Enforce));

    let ticked = step(state, &context, &Event::Tick, at_minutes(59));
    assert_eq!(ticked.state.phase, Phase::PendingApproval);
    assert_eq!(ticked.effects, vec![Effect::RequeueAt(at_minutes(60))]);
}

#[test]
fn kill_switch_turns_auto_into_dry_run_and_refuses_approval() {
    let mut context = context(Mode::Auto);
    context.kill_switch = true;
    let created = create(&context, at_minutes(1));
    assert_eq!(created.state.phase, Phase::DryRun);
    assert_eq!(created.state.history[0].event, REASON_KILL_SWITCH_DRY_RUN);
    assert!(created.state.history[0].message.contains("kill switch"));
    assert!(!has(&created.effects, &Effect::Enforce));
    assert!(has(
        &created.effects,
        &Effect::Notify(Notification::Planned)
    ));

    // Lifting the kill switch later does not enforce a quarantine that started under it.
    context.kill_switch = false;
    let later = step(created.state, &context, &approve("alice"), at_minutes(5));
    assert_eq!(later.state.phase, Phase::DryRun);
    assert!(!has(&later.effects, &Effect::Enforce));

    let mut manual = self::context(Mode::Manual);
    manual.kill_switch = true;
    let pending = create(&manual, at_minutes(1));
    assert_eq!(pending.state.phase, Phase::PendingApproval);
    let refused = step(pending.state, &manual, &approve("alice"), at_minutes(5));
    assert_eq!(refused.state.phase, Phase::PendingApproval);
    assert_eq!(refused.state.approved_by, None);
    assert_eq!(reasons(&refused.effects), vec![REASON_APPROVAL_REFUSED]);
    assert_eq!(last_history(&refused.state).actor, "alice");
    assert!(has(
        &refused.effects,
        &Effect::ClearAnnotation(APPROVE_ANNOTATION)
    ));
    assert!(!has(&refused.effects, &Effect::Enforce));

    manual.kill_switch = false;
    let approved = step(refused.state, &manual, &approve("alice"), at_minutes(6));
    assert_eq!(approved.state.phase, Phase::Active);
}

#[test]
fn kill_switch_never_blocks_release() {
    for phase in [Phase::Active, Phase::Failed] {
        let (state, mut context) = reach(phase);
        context.kill_switch = true;
        for (event, now, reason) in [
            (
                release("alice"),
                at_minutes(20),
                ReleaseReason::ReleaseRequested,
            ),
            (Event::Deleted, at_minutes(20), ReleaseReason::Deleted),
            (
                Event::PolicyDeleted,
                at_minutes(20),
                ReleaseReason::PolicyDeleted,
            ),
            (Event::Tick, at_minutes(241), ReleaseReason::Expired),
        ] {
            let next = step(state.clone(), &context, &event, now);
            assert_eq!(next.state.phase, Phase::Releasing, "{phase:?} {event:?}");
            assert_eq!(next.state.release_reason, Some(reason));
            assert!(has(&next.effects, &Effect::Release));
            let done = step(next.state, &context, &Event::ReleaseSucceeded, now);
            assert_eq!(done.state.phase, Phase::Released);
        }
    }
    // An Active quarantine keeps converging while the kill switch is on (only new enforcement stops).
    let (state, mut context) = reach(Phase::Active);
    context.kill_switch = true;
    assert!(has(
        &step(state, &context, &Event::Tick, at_minutes(20)).effects,
        &Effect::Enforce
    ));
}

/// What an annotation does in a phase: the phase afterwards, or `None` for "ignored, unchanged".
fn annotation_outcome(annotation: Annotation, phase: Phase) -> Option<Phase> {
    use Phase::*;
    match (annotation, phase) {
        (Annotation::Approve, PendingApproval) => Some(Active),
        (Annotation::Reject, PendingApproval) => Some(Rejected),
        (Annotation::Release, Active | Failed) => Some(Releasing),
        (Annotation::Extend, Active | DryRun) => Some(phase),
        _ => None,
    }
}

#[test]
fn every_annotation_in_every_phase() {
    for phase in ALL_PHASES {
        for annotation in Annotation::PROCESSING_ORDER {
            let (state, context) = reach(phase);
            let event = match annotation {
                Annotation::Approve => approve("dave"),
                Annotation::Reject => reject("dave"),
                Annotation::Release => release("dave"),
                Annotation::Extend => extend("dave", 5),
            };
            let now = at_minutes(30);
            let next = step(state.clone(), &context, &event, now);
            let label = format!("{} in {phase:?}", annotation.verb());
            assert!(
                has(&next.effects, &Effect::ClearAnnotation(annotation.key())),
                "{label}: cleared"
            );
            let added = &next.state.history[state.history.len().min(MAX_HISTORY - 1)..];
            assert!(
                added.iter().any(|entry| entry.actor == "dave"),
                "{label}: actor recorded"
            );
            match annotation_outcome(annotation, phase) {
                Some(expected) => {
                    assert_eq!(next.state.phase, expected, "{label}");
                    assert_ne!(
                        last_history(&next.state).event,
                        REASON_ANNOTATION_IGNORED,
                        "{label}"
                    );
                }
                None => {
                    let mut unchanged = state.clone();
                    unchanged.history = next.state.history.clone();
                    assert_eq!(next.state, unchanged, "{label}: only history changes");
                    let entry = last_history(&next.state);
                    assert_eq!(entry.event, REASON_ANNOTATION_IGNORED, "{label}");
                    assert!(
                        entry.message.contains(phase.as_str()),
                        "{label}: {}",
                        entry.message
                    );
                    assert!(!has(&next.effects, &Effect::Enforce), "{label}");
                }
            }
        }
    }
}

#[test]
fn extend_moves_expiry_within_bounds() {
    let (state, context) = reach(Phase::Active); // activated at minute 1, expires at minute 241
    let extended = step(state.clone(), &context, &extend("erin", 8), at_minutes(60));
    assert_eq!(extended.state.expires_at, Some(at_minutes(60 + 480)));
    assert_eq!(last_history(&extended.state).event, REASON_EXTENDED);
    assert!(has(&extended.effects, &Effect::RequeueAt(at_minutes(540))));
    assert!(has(
        &extended.effects,
        &Effect::ClearAnnotation(EXTEND_ANNOTATION)
    ));

    // Exactly 168h from activation is allowed; one minute more is not.
    let limit = add(at_minutes(1), MAX_TOTAL_TTL);
    let to_limit = Event::Extend {
        actor: "erin".into(),
        duration: limit.duration_since(at_minutes(60)),
    };
    assert_eq!(
        step(state.clone(), &context, &to_limit, at_minutes(60))
            .state
            .expires_at,
        Some(limit)
    );
    let past_limit = Event::Extend {
        actor: "erin".into(),
        duration: limit.duration_since(at_minutes(60)) + SignedDuration::from_mins(1),
    };

    for (event, label) in [
        (past_limit, "past 168h"),
        (extend("erin", 1), "shorter than current expiry"),
        (extend("erin", 0), "zero"),
        (extend("erin", -2), "negative"),
    ] {
        let refused = step(state.clone(), &context, &event, at_minutes(60));
        assert_eq!(refused.state.expires_at, state.expires_at, "{label}");
        assert_eq!(
            last_history(&refused.state).event,
            REASON_EXTEND_REFUSED,
            "{label}"
        );
        assert!(
            has(
                &refused.effects,
                &Effect::ClearAnnotation(EXTEND_ANNOTATION)
            ),
            "{label}"
        );
    }

    // A DryRun plan counts its 168h from creation.
    let (dry_run, dry_context) = reach(Phase::DryRun);
    let longer = step(
        dry_run.clone(),
        &dry_context,
        &extend("erin", 10),
        at_minutes(60),
    );
    assert_eq!(longer.state.expires_at, Some(at_minutes(660)));
    let too_long = step(dry_run, &dry_context, &extend("erin", 168), at_minutes(60));
    assert_eq!(last_history(&too_long.state).event, REASON_EXTEND_REFUSED);
}

#[test]
fn invalid_annotation_is_recorded_and_cleared() {
    let (state, context) = reach(Phase::Active);
    let event = parse_annotation(Annotation::Extend, "frank: a while");
    assert!(matches!(event, Event::InvalidAnnotation { .. }));
    let next = step(state.clone(), &context, &event, at_minutes(30));
    assert_eq!(next.state.expires_at, state.expires_at);
    let entry = last_history(&next.state);
    assert_eq!(
        (entry.event.as_str(), entry.actor.as_str()),
        (REASON_INVALID_ANNOTATION, "frank")
    );
    assert!(has(
        &next.effects,
        &Effect::ClearAnnotation(EXTEND_ANNOTATION)
    ));
}

#[test]
fn enforcement_failures() {
    let (state, context) = reach(Phase::Active);
    let retry = step(
        state.clone(),
        &context,
        &Event::EnforcementFailed {
            reason: "Throttling".into(),
            retryable: true,
        },
        at_minutes(20),
    );
    assert_eq!(
        retry.state, state,
        "a retryable failure changes nothing in status"
    );
    assert_eq!(reasons(&retry.effects), vec![REASON_ENFORCEMENT_RETRYING]);
    assert!(has(&retry.effects, &Effect::RequeueWithBackoff));
    assert!(!has(&retry.effects, &Effect::Enforce));

    let failed = step(
        state,
        &context,
        &fatal("AccessDenied on role/dev-ci"),
        at_minutes(20),
    );
    assert_eq!(failed.state.phase, Phase::Failed);
    assert!(last_history(&failed.state).message.contains("AccessDenied"));
    assert!(has(&failed.effects, &Effect::Notify(Notification::Failed)));
    assert!(has(&failed.effects, &Effect::RequeueAt(at_minutes(241))));

    // Failed waits (no Enforce) until release, TTL or deletion.
    let waiting = step(
        failed.state.clone(),
        &context,
        &Event::Tick,
        at_minutes(100),
    );
    assert_eq!(waiting.effects, vec![Effect::RequeueAt(at_minutes(241))]);
    let expired = step(failed.state, &context, &Event::Tick, at_minutes(241));
    assert_eq!(expired.state.phase, Phase::Releasing);
    assert_eq!(expired.state.release_reason, Some(ReleaseReason::Expired));
    assert!(has(&expired.effects, &Effect::Release));

    // Results arriving for a phase that no longer enforces are dropped.
    for phase in ALL_PHASES.into_iter().filter(|p| *p != Phase::Active) {
        let (state, context) = reach(phase);
        for event in [
            Event::EnforcementSucceeded,
            fatal("late"),
            Event::ReleaseFailed {
                reason: "late".into(),
            },
        ] {
            if phase == Phase::Releasing && matches!(event, Event::ReleaseFailed { .. }) {
                continue;
            }
            let next = step(state.clone(), &context, &event, at_minutes(30));
            assert_eq!(next.state, state, "{event:?} in {phase:?}");
            assert!(reasons(&next.effects).is_empty(), "{event:?} in {phase:?}");
        }
    }
    let (released, context) = reach(Phase::Released);
    assert_eq!(
        step(
            released.clone(),
            &context,
            &Event::ReleaseSucceeded,
            at_minutes(30)
        )
        .state,
        released
    );
}

#[test]
fn deletion_and_policy_deletion_from_every_phase() {
    for (event, reason, history_reason) in [
        (Event::Deleted, ReleaseReason::Deleted, REASON_DELETED),
        (
            Event::PolicyDeleted,
            ReleaseReason::PolicyDeleted,
            REASON_POLICY_DELETED,
        ),
    ] {
        for phase in ALL_PHASES {
            let (state, context) = reach(phase);
            let next = step(state.clone(), &context, &event, at_minutes(30));
            let label = format!("{event:?} in {phase:?}");
            match phase {
                Phase::Active | Phase::Failed => {
                    assert_eq!(next.state.phase, Phase::Releasing, "{label}");
                    assert_eq!(next.state.release_reason, Some(reason), "{label}");
                    assert_eq!(last_history(&next.state).event, history_reason, "{label}");
                    assert!(has(&next.effects, &Effect::Release), "{label}");
                }
                Phase::DryRun | Phase::PendingApproval => {
                    assert_eq!(next.state.phase, Phase::Released, "{label}");
                    assert_eq!(next.state.release_reason, Some(reason), "{label}");
                    assert_eq!(next.state.released_at, Some(at_minutes(30)), "{label}");
                    assert_eq!(next.state.activated_at, None, "{label}");
                    assert_eq!(
                        last_history(&next.state).event,
                        history_reason,
                        "{label}: recorded"
                    );
                    assert!(
                        !has(&next.effects, &Effect::Release),
                        "{label}: nothing to detach"
                    );
                    assert!(!holds_attachment(next.state.phase));
                }
                Phase::Releasing => {
                    assert_eq!(next.state, state, "{label}: first release reason kept");
                    assert_eq!(next.effects, vec![Effect::Release], "{label}");
                }
                Phase::Released | Phase::Rejected | Phase::Expired => {
                    assert_eq!(next.state, state, "{label}");
                    assert!(next.effects.is_empty(), "{label}");
                }
            }
        }
    }
}

#[test]
fn history_is_bounded_newest_last() {
    let (mut state, context) = reach(Phase::Released);
    for minute in 0..(MAX_HISTORY as i64 + 20) {
        state = step(
            state,
            &context,
            &approve(&format!("user{minute}")),
            at_minutes(100 + minute),
        )
        .state;
    }
    assert_eq!(state.history.len(), MAX_HISTORY);
    assert_eq!(
        last_history(&state).actor,
        format!("user{}", MAX_HISTORY + 19)
    );
    assert_eq!(state.phase, Phase::Released);
}

#[test]
fn step_all_orders_effects_and_keeps_the_last_requeue() {
    let (state, context) = reach(Phase::PendingApproval);
    let mut annotations = BTreeMap::new();
    annotations.insert(APPROVE_ANNOTATION.to_string(), "alice: go".to_string());
    annotations.insert(
        RELEASE_ANNOTATION.to_string(),
        "alice: never mind".to_string(),
    );
    let events = parse_annotations(&annotations);
    let done = step_all(state, &context, &events, at_minutes(30));
    assert_eq!(done.state.phase, Phase::Releasing);
    assert_eq!(
        done.effects
            .iter()
            .filter(|e| matches!(e, Effect::RequeueAt(_)))
            .count(),
        0,
        "Releasing has no deadline"
    );
    let clears: Vec<_> = done
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::ClearAnnotation(_)))
        .collect();
    assert_eq!(
        clears,
        vec![
            &Effect::ClearAnnotation(APPROVE_ANNOTATION),
            &Effect::ClearAnnotation(RELEASE_ANNOTATION)
        ]
    );

    let (state, context) = reach(Phase::Active);
    let done = step_all(
        state,
        &context,
        &[Event::Tick, extend("x", 6)],
        at_minutes(30),
    );
    assert_eq!(
        done.effects
            .iter()
            .filter(|e| matches!(e, Effect::RequeueAt(_)))
            .collect::<Vec<_>>(),
        vec![&Effect::RequeueAt(at_minutes(390))]
    );
}

#[test]
fn missing_deadlines_are_repaired() {
    let context = context(Mode::Auto);
    let mut state = State::new(Phase::Active);
    state.activated_at = Some(at_minutes(10));
    let next = step(state, &context, &Event::Tick, at_minutes(20));
    assert_eq!(next.state.expires_at, Some(at_minutes(250)));
    assert!(has(&next.effects, &Effect::RequeueAt(at_minutes(250))));

    let pending = step(
        State::new(Phase::PendingApproval),
        &context,
        &Event::Tick,
        at_minutes(70),
    );
    assert_eq!(pending.state.phase, Phase::Expired);
}

#[test]
fn parse_annotations_in_fixed_order_with_actors() {
    let mut annotations = BTreeMap::new();
    annotations.insert(RELEASE_ANNOTATION.into(), "see https://wiki/x".into());
    annotations.insert(
        APPROVE_ANNOTATION.into(),
        "alice@example.com: checked the bill".into(),
    );
    annotations.insert(EXTEND_ANNOTATION.into(), "bob: 1h30m".into());
    annotations.insert(REJECT_ANNOTATION.into(), "".into());
    annotations.insert("autoguardrails.io/unknown".into(), "x".into());
    annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{}".into(),
    );
    assert_eq!(
        parse_annotations(&annotations),
        vec![
            Event::Reject {
                actor: DEFAULT_ACTOR.into(),
                note: "".into()
            },
            Event::Approve {
                actor: "alice@example.com".into(),
                note: "checked the bill".into()
            },
            Event::Extend {
                actor: "bob".into(),
                duration: SignedDuration::from_mins(90)
            },
            Event::Release {
                actor: DEFAULT_ACTOR.into(),
                note: "see https://wiki/x".into()
            },
        ]
    );
}

#[test]
fn split_actor_cases() {
    for (value, actor, note) in [
        ("alice: ok", "alice", "ok"),
        ("alice:", "alice", ""),
        ("alice:ok", DEFAULT_ACTOR, "alice:ok"),
        ("https://example.com", DEFAULT_ACTOR, "https://example.com"),
        ("two words: note", DEFAULT_ACTOR, "two words: note"),
        (": note", DEFAULT_ACTOR, ": note"),
        ("  plain note  ", DEFAULT_ACTOR, "plain note"),
        (
            "ops-team.oncall_1+x: paged at 3am",
            "ops-team.oncall_1+x",
            "paged at 3am",
        ),
    ] {
        let (got_actor, got_note) = split_actor(value);
        assert_eq!((got_actor.as_str(), got_note), (actor, note), "{value:?}");
    }
    let long_actor = format!("{}: note", "a".repeat(MAX_ACTOR_CHARS + 1));
    assert_eq!(split_actor(&long_actor).0, DEFAULT_ACTOR);
}

#[test]
fn parse_extend_values() {
    for (value, expected) in [
        ("4h", Some(240)),
        ("30m", Some(30)),
        ("1h30m", Some(90)),
        ("x: 2h", Some(120)),
        ("soon", None),
        ("", None),
    ] {
        let event = parse_annotation(Annotation::Extend, value);
        match expected {
            Some(minutes) => assert!(
                matches!(&event, Event::Extend { duration, .. } if *duration == SignedDuration::from_mins(minutes)),
                "{value:?}: {event:?}"
            ),
            None => assert!(
                matches!(
                    event,
                    Event::InvalidAnnotation {
                        annotation: Annotation::Extend,
                        ..
                    }
                ),
                "{value:?}"
            ),
        }
    }
}

#[test]
fn long_notes_are_cut() {
    let note = "é".repeat(MAX_NOTE_CHARS + 10);
    let Event::Approve { note: cut, .. } = parse_annotation(Annotation::Approve, &note) else {
        panic!("approve expected");
    };
    assert_eq!(cut.chars().count(), MAX_NOTE_CHARS + 1);
    assert!(cut.ends_with('…'));
}

#[test]
fn status_round_trip_touches_only_lifecycle_fields() {
    assert_eq!(State::from_status(&QuarantineStatus::default()), None);

    let (state, _) = reach(Phase::Released);
    let mut status = QuarantineStatus {
        observed_generation: Some(3),
        targets: vec![TargetStatus {
            arn: "arn:aws:iam::111111111111:role/dev-ci".into(),
            attachment: None,
            state: TargetState::Detached,
            last_error: None,
            last_verified_at: None,
        }],
        targets_summary: Some("0/1".into()),
        ..QuarantineStatus::default()
    };
    assert!(state.apply_to_status(&mut status));
    assert!(
        !state.apply_to_status(&mut status),
        "unchanged state writes nothing"
    );
    assert_eq!(status.phase, Some(Phase::Released));
    assert_eq!(status.release_reason.as_deref(), Some("ReleaseRequested"));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.targets_summary.as_deref(), Some("0/1"));
    assert_eq!(status.targets.len(), 1);
    assert_eq!(State::from_status(&status), Some(state));

    // Through JSON, as the API server stores it.
    let json = serde_json::to_string(&status).unwrap();
    let back: QuarantineStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(State::from_status(&back), State::from_status(&status));
}

#[test]
fn status_reading_is_lenient() {
    let (state, _) = reach(Phase::Releasing);
    let mut status = QuarantineStatus::default();
    state.apply_to_status(&mut status);
    status.release_reason = Some("SomethingElse".into());
    let entry = status.history[0].clone();
    status.history = vec![entry; MAX_HISTORY + 5];
    let read = State::from_status(&status).unwrap();
    assert_eq!(read.phase, Phase::Releasing);
    assert_eq!(read.release_reason, None);
    assert_eq!(read.history.len(), MAX_HISTORY);
}

#[test]
fn context_from_spec() {
    let mut spec = QuarantineSpec {
        policy_ref: PolicyRef {
            name: "dev-compute-spike".into(),
        },
        signal: None,
        targets: vec![Principal {
            kind: PrincipalKind::IamRole,
            arn: "arn:aws:iam::111111111111:role/dev-ci".into(),
        }],
        target_reasons: Vec::new(),
        deny: DenySpec {
            actions: vec!["ec2:RunInstances".into()],
            regions: vec![],
            conditions: Vec::new(),
        },
        actions: crate::controller::crd::default_actions(),
        mode: Mode::Manual,
        ttl: "1h30m".into(),
        approval_timeout: None,
        required_approvers: None,
        notify: None,
    };
    let context = Context::from_spec(&spec, origin(), true).unwrap();
    assert_eq!(context.ttl, SignedDuration::from_mins(90));
    assert_eq!(context.approval_timeout, DEFAULT_APPROVAL_TIMEOUT);
    assert!(context.kill_switch);

    spec.approval_timeout = Some("30m".into());
    assert_eq!(
        Context::from_spec(&spec, origin(), false)
            .unwrap()
            .approval_timeout,
        SignedDuration::from_mins(30)
    );

    for (ttl, out_of_range) in [
        ("0s", true),
        ("169h", true),
        ("-1h", true),
        ("forever", false),
    ] {
        spec.ttl = ttl.into();
        let error = Context::from_spec(&spec, origin(), false).unwrap_err();
        assert_eq!(
            matches!(error, LifecycleError::DurationOutOfRange { .. }),
            out_of_range,
            "{ttl}: {error}"
        );
        assert_eq!(error.category(), "InvalidSpec");
    }
    spec.ttl = "168h".into();
    assert!(Context::from_spec(&spec, origin(), false).is_ok());
}

#[test]
fn four_eyes_needs_distinct_verified_approvers() {
    let ctx = Context {
        required_approvers: 2,
        ..context(Mode::Manual)
    };
    let now = add(origin(), SignedDuration::from_mins(5));
    let created = create(&ctx, origin());
    assert_eq!(created.state.phase, Phase::PendingApproval);
    let first = step(created.state, &ctx, &approve("alice"), now);
    assert_eq!(first.state.phase, Phase::PendingApproval);
    assert_eq!(reasons(&first.effects), vec![REASON_APPROVAL_RECORDED]);
    assert!(!first.effects.contains(&Effect::Enforce));
    // The same person again, and an unverified approval: refused, still waiting.
    let again = step(first.state, &ctx, &approve("alice"), now);
    assert_eq!(again.state.phase, Phase::PendingApproval);
    assert_eq!(reasons(&again.effects), vec![REASON_APPROVAL_REFUSED]);
    let unverified = step(again.state, &ctx, &approve("bob (unverified)"), now);
    assert_eq!(unverified.state.phase, Phase::PendingApproval);
    assert_eq!(reasons(&unverified.effects), vec![REASON_APPROVAL_REFUSED]);
    // A second, different, verified person: enforced, both named.
    let second = step(unverified.state, &ctx, &approve("carol"), now);
    assert_eq!(second.state.phase, Phase::Active);
    assert_eq!(second.state.approved_by.as_deref(), Some("alice, carol"));
    assert!(second.effects.contains(&Effect::Enforce));
    // One approver is the default.
    let single = step(
        create(&context(Mode::Manual), origin()).state,
        &context(Mode::Manual),
        &approve("bob (unverified)"),
        now,
    );
    assert_eq!(single.state.phase, Phase::Active);
}
