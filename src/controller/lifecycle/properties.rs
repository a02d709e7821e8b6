//! `proptest` properties of the lifecycle state machine over random contexts, event sequences and
//! clocks (time may jump forward or back a little between steps, as across controller replicas).

use super::*;
use proptest::prelude::*;

/// Cases per property.
const CASES: u32 = 1024;

fn origin() -> Timestamp {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

fn minutes(count: i64) -> SignedDuration {
    SignedDuration::from_mins(count)
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::DryRun), Just(Mode::Manual), Just(Mode::Auto)]
}

fn context_strategy(
    mode: impl Strategy<Value = Mode>,
    kill_switch: impl Strategy<Value = bool>,
) -> impl Strategy<Value = Context> {
    (
        mode,
        0i64..10_080,
        1i64..=10_080,
        1i64..=10_080,
        kill_switch,
    )
        .prop_map(
            |(mode, created, ttl, approval_timeout, kill_switch)| Context {
                mode,
                created_at: add(origin(), minutes(created)),
                ttl: minutes(ttl),
                approval_timeout: minutes(approval_timeout),
                kill_switch,
                required_approvers: 1,
            },
        )
}

fn actor_strategy() -> impl Strategy<Value = String> {
    prop_oneof![Just("alice".to_string()), Just(DEFAULT_ACTOR.to_string())]
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => actor_strategy().prop_map(|actor| Event::Approve { actor, note: "ok".into() }),
        1 => actor_strategy().prop_map(|actor| Event::Reject { actor, note: "no".into() }),
        1 => actor_strategy().prop_map(|actor| Event::Release { actor, note: "done".into() }),
        2 => (actor_strategy(), -600i64..12_000).prop_map(|(actor, length)| Event::Extend { actor, duration: minutes(length) }),
        1 => Just(Event::InvalidAnnotation {
            annotation: Annotation::Extend,
            actor: DEFAULT_ACTOR.into(),
            value: "soon".into(),
            problem: "not a duration".into(),
        }),
        4 => Just(Event::Tick),
        2 => Just(Event::EnforcementSucceeded),
        2 => any::<bool>().prop_map(|retryable| Event::EnforcementFailed { reason: "AccessDenied".into(), retryable }),
        2 => Just(Event::ReleaseSucceeded),
        2 => Just(Event::ReleaseFailed { reason: "Throttling".into() }),
        1 => Just(Event::Deleted),
        1 => Just(Event::PolicyDeleted),
    ]
}

/// One step of a run: the event, how far the clock moves first (minutes, may be negative), and
/// whether the kill switch is engaged for this step.
fn steps_strategy() -> impl Strategy<Value = Vec<(Event, i64, bool)>> {
    prop::collection::vec((event_strategy(), -30i64..1_500, any::<bool>()), 0..60)
}

/// A transition with the state it came from, the event and its time (`None` event for creation).
struct Record {
    before: Option<State>,
    event: Option<Event>,
    now: Timestamp,
    transition: Transition,
}

fn run(context: &Context, create_delay: i64, steps: &[(Event, i64, bool)]) -> Vec<Record> {
    let mut now = add(context.created_at, minutes(create_delay));
    let first = create(context, now);
    let mut state = first.state.clone();
    let mut records = vec![Record {
        before: None,
        event: None,
        now,
        transition: first,
    }];
    for (event, delta, kill_switch) in steps {
        now = add(now, minutes(*delta));
        let step_context = Context {
            kill_switch: *kill_switch,
            ..context.clone()
        };
        let transition = step(state.clone(), &step_context, event, now);
        records.push(Record {
            before: Some(state),
            event: Some(event.clone()),
            now,
            transition: transition.clone(),
        });
        state = transition.state;
    }
    records
}

/// The lifecycle fields without history, for "nothing but history changed" comparisons.
fn without_history(state: &State) -> State {
    State {
        history: Vec::new(),
        ..state.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Property 1: a DryRun quarantine, or an Auto one created under the kill switch, never enforces.
    #[test]
    fn dry_run_never_enforces(
        context in prop_oneof![
            context_strategy(Just(Mode::DryRun), any::<bool>()),
            context_strategy(Just(Mode::Auto), Just(true)),
        ],
        create_delay in 0i64..600,
        steps in steps_strategy(),
    ) {
        let records = run(&context, create_delay, &steps);
        let created = records[0].transition.state.phase;
        prop_assert!(matches!(created, Phase::DryRun | Phase::Expired), "created as {:?}", created);
        for record in &records {
            prop_assert!(!record.transition.effects.contains(&Effect::Enforce), "Enforce after {:?}", record.event);
            prop_assert!(record.transition.state.activated_at.is_none());
            prop_assert!(!holds_attachment(record.transition.state.phase));
        }
    }

    /// Property 2: from Active, Releasing or Failed, a Tick once `now` passes `expiresAt` releases,
    /// and `ReleaseSucceeded` then ends in Released; the kill switch does not matter.
    #[test]
    fn expiry_always_releases(
        context in context_strategy(prop_oneof![Just(Mode::Manual), Just(Mode::Auto)], any::<bool>()),
        create_delay in 0i64..600,
        steps in steps_strategy(),
        overshoot in 0i64..20_000,
        kill_switch in any::<bool>(),
    ) {
        let records = run(&context, create_delay, &steps);
        for record in &records {
            let state = &record.transition.state;
            if !holds_attachment(state.phase) {
                continue;
            }
            let expiry = state.expires_at.unwrap_or(record.now).max(record.now);
            let later = add(expiry, minutes(overshoot));
            let step_context = Context { kill_switch, ..context.clone() };
            let ticked = step(state.clone(), &step_context, &Event::Tick, later);
            prop_assert_eq!(ticked.state.phase, Phase::Releasing, "from {:?}", state.phase);
            prop_assert!(ticked.effects.contains(&Effect::Release));
            prop_assert!(!ticked.effects.contains(&Effect::Enforce));
            if state.phase != Phase::Releasing {
                prop_assert_eq!(ticked.state.release_reason, Some(ReleaseReason::Expired));
            }
            let done = step(ticked.state, &step_context, &Event::ReleaseSucceeded, later);
            prop_assert_eq!(done.state.phase, Phase::Released);
            prop_assert_eq!(done.state.released_at, Some(later));
        }
    }

    /// Property 3: at most one transition into Active per quarantine; `activatedAt` is set once.
    #[test]
    fn at_most_one_activation(
        context in context_strategy(mode_strategy(), any::<bool>()),
        create_delay in 0i64..600,
        steps in steps_strategy(),
    ) {
        let records = run(&context, create_delay, &steps);
        let mut activations = 0;
        let mut activated_at = None;
        for record in &records {
            let after = &record.transition.state;
            let was_active = record.before.as_ref().is_some_and(|before| before.phase == Phase::Active);
            if after.phase == Phase::Active && !was_active {
                activations += 1;
            }
            match (activated_at, after.activated_at) {
                (None, value) => activated_at = value,
                (Some(first), value) => prop_assert_eq!(Some(first), value, "activatedAt changed"),
            }
            let activity = record.transition.effects.iter().filter(|e| **e == Effect::Notify(Notification::Activated)).count();
            prop_assert!(activity <= 1);
        }
        prop_assert!(activations <= 1, "{} activations", activations);
    }

    /// Property 4: terminal phases never change; history stays within MAX_HISTORY; every
    /// `RequeueAt` is later than the step's `now`, and terminal states ask for none.
    #[test]
    fn terminal_history_and_requeue_invariants(
        context in context_strategy(mode_strategy(), any::<bool>()),
        create_delay in 0i64..600,
        steps in steps_strategy(),
    ) {
        let records = run(&context, create_delay, &steps);
        let mut terminal: Option<State> = None;
        for record in &records {
            let state = &record.transition.state;
            prop_assert!(state.history.len() <= MAX_HISTORY);
            for effect in &record.transition.effects {
                if let Effect::RequeueAt(at) = effect {
                    prop_assert!(*at > record.now, "RequeueAt {} not after now {}", at, record.now);
                    prop_assert!(!state.phase.is_terminal());
                }
            }
            if let Some(frozen) = &terminal {
                prop_assert_eq!(without_history(frozen), without_history(state), "terminal state changed on {:?}", record.event);
                prop_assert!(!record.transition.effects.iter().any(|e| matches!(e, Effect::Enforce | Effect::Release | Effect::Notify(_) | Effect::RequeueAt(_) | Effect::RequeueWithBackoff)));
            } else if state.phase.is_terminal() {
                terminal = Some(state.clone());
            }
        }
    }

    /// Property 5: the kill switch never blocks release — every release-path event gives exactly
    /// the same transition with the kill switch engaged as without it.
    #[test]
    fn kill_switch_never_blocks_release(
        context in context_strategy(prop_oneof![Just(Mode::Manual), Just(Mode::Auto)], Just(false)),
        create_delay in 0i64..600,
        steps in steps_strategy(),
        offset in -60i64..20_000,
    ) {
        let records = run(&context, create_delay, &steps);
        let release_events = [
            Event::Release { actor: "alice".into(), note: "stop".into() },
            Event::Deleted,
            Event::PolicyDeleted,
            Event::Tick,
            Event::ReleaseSucceeded,
            Event::ReleaseFailed { reason: "Throttling".into() },
        ];
        for record in &records {
            let state = &record.transition.state;
            let now = add(record.now, minutes(offset));
            for event in &release_events {
                let engaged = step(state.clone(), &Context { kill_switch: true, ..context.clone() }, event, now);
                let disengaged = step(state.clone(), &Context { kill_switch: false, ..context.clone() }, event, now);
                prop_assert_eq!(&engaged, &disengaged, "{:?} in {:?}", event, state.phase);
                if matches!(state.phase, Phase::Active | Phase::Failed)
                    && matches!(event, Event::Release { .. } | Event::Deleted | Event::PolicyDeleted)
                {
                    prop_assert_eq!(engaged.state.phase, Phase::Releasing);
                    prop_assert!(engaged.effects.contains(&Effect::Release));
                }
            }
        }
    }
}
