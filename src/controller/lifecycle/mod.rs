//! The Quarantine lifecycle (design §2.3) as a pure state machine: from the lifecycle [`State`], the
//! quarantine's [`Context`] (mode, TTLs, kill switch), one [`Event`] and the current time it computes
//! the next state and the [`Effect`]s the controller carries out. It owns phases, deadlines, the
//! audit history and what each `autoguardrails.io/*` annotation means in each phase.
//! It must not do I/O, read a clock, sleep, or call AWS or Kubernetes: `now` is always passed in.

mod annotations;
mod status;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use annotations::*;

use crate::controller::crd::{HistoryEntry, MAX_HISTORY, Mode, Phase, QuarantineSpec};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The longest a deny may be held, counted from activation (or creation, for DryRun): 7 days.
pub const MAX_TOTAL_TTL: SignedDuration = SignedDuration::from_hours(168);
/// The approval timeout used when a Manual quarantine's spec does not set one (the policy default).
pub const DEFAULT_APPROVAL_TIMEOUT: SignedDuration = SignedDuration::from_hours(1);
/// The actor recorded for what the controller does on its own (deadlines, IAM results).
pub const CONTROLLER_ACTOR: &str = "controller";

/// Reason: an attachment someone removed was put back (recorded by the reconcile).
pub const REASON_DRIFT_REPAIRED: &str = "DriftRepaired";
/// Reason: a DryRun plan was recorded; nothing will be written to AWS.
pub const REASON_PLANNED: &str = "Planned";
/// Reason: the kill switch turned an Auto quarantine into a dry-run at creation.
pub const REASON_KILL_SWITCH_DRY_RUN: &str = "KillSwitchDryRun";
/// Reason: a Manual quarantine waits for the approve or reject annotation.
pub const REASON_PENDING_APPROVAL: &str = "PendingApproval";
/// Reason: a person approved a pending quarantine.
pub const REASON_APPROVED: &str = "Approved";
/// Reason: an approval was refused because the kill switch is engaged.
pub const REASON_APPROVAL_REFUSED: &str = "ApprovalRefused";
/// History reason: one approval of several a four-eyes policy needs was recorded.
pub const REASON_APPROVAL_RECORDED: &str = "ApprovalRecorded";
/// Reason: the quarantine became Active; the deny is being enforced.
pub const REASON_ACTIVATED: &str = "Activated";
/// Reason: a person rejected a pending quarantine.
pub const REASON_REJECTED: &str = "Rejected";
/// Reason: a person moved `expiresAt` later.
pub const REASON_EXTENDED: &str = "Extended";
/// Reason: an extend request was refused (not positive, would shorten, or past the 168h bound).
pub const REASON_EXTEND_REFUSED: &str = "ExtendRefused";
/// Reason: an annotation makes no sense in the current phase and was ignored.
pub const REASON_ANNOTATION_IGNORED: &str = "AnnotationIgnored";
/// Reason: an annotation value could not be parsed and was ignored.
pub const REASON_INVALID_ANNOTATION: &str = "InvalidAnnotation";
/// Reason: a DryRun plan reached its TTL without enforcement.
pub const REASON_EXPIRED: &str = "Expired";
/// Reason: a pending quarantine was not approved before its deadline.
pub const REASON_APPROVAL_TIMED_OUT: &str = "ApprovalTimedOut";
/// Reason: an enforced quarantine reached `expiresAt`; release started.
pub const REASON_TTL_EXPIRED: &str = "TtlExpired";
/// Reason: a person asked for release with the release annotation.
pub const REASON_RELEASE_REQUESTED: &str = "ReleaseRequested";
/// Reason: the owning GuardrailPolicy was deleted.
pub const REASON_POLICY_DELETED: &str = "PolicyDeleted";
/// Reason: the Quarantine object is being deleted.
pub const REASON_DELETED: &str = "Deleted";
/// Reason: the deny was detached from every target.
pub const REASON_RELEASED: &str = "Released";
/// Reason: detaching failed; it is retried with backoff.
pub const REASON_RELEASE_FAILED: &str = "ReleaseFailed";
/// Reason: enforcement cannot proceed (bad target, access denied); the quarantine is Failed.
pub const REASON_ENFORCEMENT_FAILED: &str = "EnforcementFailed";
/// Reason: enforcement hit a transient error; it is retried with backoff.
pub const REASON_ENFORCEMENT_RETRYING: &str = "EnforcementRetrying";

/// Why a quarantine's context cannot be built from its spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifecycleError {
    /// A duration field is not a Go-style duration.
    #[error("invalid duration {value:?} in spec.{field}: {message}")]
    InvalidDuration {
        /// The spec field.
        field: &'static str,
        /// The value found.
        value: String,
        /// The parser's explanation.
        message: String,
    },
    /// A duration is zero, negative or longer than 168h.
    #[error("spec.{field} {value:?} is out of range: it must be more than 0s and at most 168h")]
    DurationOutOfRange {
        /// The spec field.
        field: &'static str,
        /// The value found.
        value: String,
    },
}

impl LifecycleError {
    /// A short label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        "InvalidSpec"
    }
}

/// What the state machine needs to know about the quarantine besides its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The mode copied from the policy at creation.
    pub mode: Mode,
    /// The object's creation time (`metadata.creationTimestamp`); DryRun TTL and approval deadline count from it.
    pub created_at: Timestamp,
    /// How long the deny is held once active.
    pub ttl: SignedDuration,
    /// Manual mode: how long approval may take.
    pub approval_timeout: SignedDuration,
    /// The global kill switch (controller config): new enforcement becomes dry-run; release is never blocked.
    pub kill_switch: bool,
    /// Manual mode, four-eyes: distinct verified approvers needed (1: the first approval enforces).
    pub required_approvers: u8,
}

impl Context {
    /// Builds the context from a Quarantine spec, its creation time and the controller's kill switch.
    pub fn from_spec(
        spec: &QuarantineSpec,
        created_at: Timestamp,
        kill_switch: bool,
    ) -> Result<Context, LifecycleError> {
        let ttl = parse_bounded_duration("ttl", &spec.ttl)?;
        let approval_timeout = match &spec.approval_timeout {
            Some(value) => parse_bounded_duration("approvalTimeout", value)?,
            None => DEFAULT_APPROVAL_TIMEOUT,
        };
        Ok(Context {
            mode: spec.mode,
            created_at,
            ttl,
            approval_timeout,
            kill_switch,
            required_approvers: spec.required_approvers.unwrap_or(1).max(1),
        })
    }
}

fn parse_bounded_duration(
    field: &'static str,
    value: &str,
) -> Result<SignedDuration, LifecycleError> {
    let duration = value.trim().parse::<SignedDuration>().map_err(|error| {
        LifecycleError::InvalidDuration {
            field,
            value: value.to_string(),
            message: error.to_string(),
        }
    })?;
    if duration <= SignedDuration::ZERO || duration > MAX_TOTAL_TTL {
        return Err(LifecycleError::DurationOutOfRange {
            field,
            value: value.to_string(),
        });
    }
    Ok(duration)
}

/// Why an enforced (or planned) quarantine ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// The TTL passed.
    Expired,
    /// A person set the release annotation.
    ReleaseRequested,
    /// The owning GuardrailPolicy was deleted.
    PolicyDeleted,
    /// The Quarantine object was deleted.
    Deleted,
}

impl ReleaseReason {
    /// The name as written in `status.releaseReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Expired => "Expired",
            ReleaseReason::ReleaseRequested => "ReleaseRequested",
            ReleaseReason::PolicyDeleted => "PolicyDeleted",
            ReleaseReason::Deleted => "Deleted",
        }
    }

    /// Reads a `status.releaseReason` value; `None` for anything else.
    pub fn from_name(name: &str) -> Option<ReleaseReason> {
        match name {
            "Expired" => Some(ReleaseReason::Expired),
            "ReleaseRequested" => Some(ReleaseReason::ReleaseRequested),
            "PolicyDeleted" => Some(ReleaseReason::PolicyDeleted),
            "Deleted" => Some(ReleaseReason::Deleted),
            _ => None,
        }
    }
}

/// The lifecycle part of a quarantine's status; read with [`State::from_status`], written with [`State::apply_to_status`].
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// The lifecycle phase.
    pub phase: Phase,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When it was approved.
    pub approved_at: Option<Timestamp>,
    /// Who rejected it.
    pub rejected_by: Option<String>,
    /// When it was rejected.
    pub rejected_at: Option<Timestamp>,
    /// When it became Active; set at most once.
    pub activated_at: Option<Timestamp>,
    /// When the deny (or the DryRun plan) ends.
    pub expires_at: Option<Timestamp>,
    /// Manual mode: when a pending approval expires.
    pub approval_deadline: Option<Timestamp>,
    /// When it reached Released.
    pub released_at: Option<Timestamp>,
    /// Why it was released.
    pub release_reason: Option<ReleaseReason>,
    /// The audit trail, newest last, at most [`MAX_HISTORY`] entries.
    pub history: Vec<HistoryEntry>,
}

/// The newest [`MAX_HISTORY`] entries of `history`: the one place history is cut.
pub(crate) fn newest(mut history: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    let excess = history.len().saturating_sub(MAX_HISTORY);
    history.drain(..excess);
    history
}

impl State {
    /// Appends one entry to the audit trail, dropping the oldest beyond [`MAX_HISTORY`]. The one
    /// place history grows: the state machine records its transitions through it, and the
    /// reconcile its drift repairs (through [`State::record_drift_repaired`]).
    fn append_history(&mut self, now: Timestamp, event: &str, actor: &str, message: String) {
        self.history.push(HistoryEntry {
            time: Time(now),
            event: event.to_string(),
            actor: actor.to_string(),
            message,
            channel: None,
        });
        self.history = newest(std::mem::take(&mut self.history));
    }

    /// Records that the controller put back an attachment someone removed.
    pub fn record_drift_repaired(&mut self, now: Timestamp, message: String) {
        self.append_history(now, REASON_DRIFT_REPAIRED, CONTROLLER_ACTOR, message);
    }

    /// Records that a released target's permissions boundary was changed by someone else while
    /// we held it, and left as they set it (decision 240).
    pub fn record_boundary_left(&mut self, now: Timestamp, message: String) {
        self.append_history(
            now,
            crate::controller::crd::conditions::REASON_BOUNDARY_CHANGED,
            CONTROLLER_ACTOR,
            message,
        );
    }

    /// A state in `phase` with no timestamps and no history.
    pub fn new(phase: Phase) -> State {
        State {
            phase,
            approved_by: None,
            approved_at: None,
            rejected_by: None,
            rejected_at: None,
            activated_at: None,
            expires_at: None,
            approval_deadline: None,
            released_at: None,
            release_reason: None,
            history: Vec::new(),
        }
    }
}

/// Something that happened to a quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `autoguardrails.io/approve` was set.
    Approve {
        /// Who approved (see [`split_actor`]).
        actor: String,
        /// The free-text note.
        note: String,
    },
    /// `autoguardrails.io/reject` was set.
    Reject {
        /// Who rejected.
        actor: String,
        /// The free-text note.
        note: String,
    },
    /// `autoguardrails.io/release` was set.
    Release {
        /// Who asked for release.
        actor: String,
        /// The free-text note.
        note: String,
    },
    /// `autoguardrails.io/extend` was set: hold the deny until `now + duration`.
    Extend {
        /// Who asked for the extension.
        actor: String,
        /// How long from now the deny should still be held.
        duration: SignedDuration,
    },
    /// A lifecycle annotation whose value cannot be used.
    InvalidAnnotation {
        /// Which annotation.
        annotation: Annotation,
        /// Who set it, as far as the value says.
        actor: String,
        /// The value (cut to [`MAX_NOTE_CHARS`]).
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Time passed: deadlines are checked and the phase's convergence effect is repeated.
    Tick,
    /// The IAM layer converged the deny on every target.
    EnforcementSucceeded,
    /// The IAM layer could not converge the deny.
    EnforcementFailed {
        /// What went wrong.
        reason: String,
        /// True for transient errors (throttling, eventual consistency); false for bad target, AccessDenied.
        retryable: bool,
    },
    /// The IAM layer detached the deny from every target.
    ReleaseSucceeded,
    /// The IAM layer could not detach the deny yet.
    ReleaseFailed {
        /// What went wrong.
        reason: String,
    },
    /// The Quarantine has a deletionTimestamp (the finalizer holds it).
    Deleted,
    /// The owning GuardrailPolicy was deleted.
    PolicyDeleted,
}

impl Event {
    /// The annotation this event came from, if any.
    pub fn annotation(&self) -> Option<Annotation> {
        match self {
            Event::Approve { .. } => Some(Annotation::Approve),
            Event::Reject { .. } => Some(Annotation::Reject),
            Event::Release { .. } => Some(Annotation::Release),
            Event::Extend { .. } => Some(Annotation::Extend),
            Event::InvalidAnnotation { annotation, .. } => Some(*annotation),
            _ => None,
        }
    }
}

/// The type of a Kubernetes Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something a person should look at.
    Warning,
}

impl EventType {
    /// The name as the Events API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A lifecycle change worth telling a person about (Slack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notification {
    /// A DryRun plan was recorded.
    Planned,
    /// A Manual quarantine waits for approval.
    PendingApproval,
    /// The deny is being enforced.
    Activated,
    /// The deny was released.
    Released,
    /// A person rejected the quarantine.
    Rejected,
    /// A DryRun plan or a pending approval expired.
    Expired,
    /// Enforcement cannot proceed.
    Failed,
}

/// Work for the controller; the state machine only describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Converge the deny on (attach to every target); idempotent.
    Enforce,
    /// Converge the deny off (detach from every target); idempotent; retried until done.
    Release,
    /// Publish a Kubernetes Event. Every history entry added by the step has one; retries have only this.
    PublishEvent {
        /// Normal or Warning.
        event_type: EventType,
        /// A `REASON_*` constant.
        reason: &'static str,
        /// Who or what caused it.
        actor: String,
        /// A human explanation.
        message: String,
    },
    /// Reconcile again at this instant (a deadline); always later than the step's `now`.
    RequeueAt(Timestamp),
    /// Reconcile again after the controller's error backoff (a retryable IAM failure).
    RequeueWithBackoff,
    /// Tell people (Slack).
    Notify(Notification),
    /// Remove this annotation key from the object; it has been handled.
    ClearAnnotation(&'static str),
}

/// The result of one step: the new state and the effects, in the order they should run.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The state to write back to status.
    pub state: State,
    /// What the controller must do.
    pub effects: Vec<Effect>,
}

/// True for phases in which the deny may be attached to some target (Active, Releasing, Failed);
/// the controller must keep the finalizer while a quarantine is in one of them.
pub fn holds_attachment(phase: Phase) -> bool {
    matches!(phase, Phase::Active | Phase::Releasing | Phase::Failed)
}

/// Starts the lifecycle of a new quarantine (status has no phase yet).
pub fn create(context: &Context, now: Timestamp) -> Transition {
    let mut machine = Machine::new(State::new(Phase::DryRun), context, now);
    machine.start();
    machine.settle_deadlines();
    machine.finish()
}

/// Applies one event at time `now`. Deadlines that passed by `now` are applied first, so an
/// approve that arrives after the approval deadline finds the quarantine Expired.
pub fn step(state: State, context: &Context, event: &Event, now: Timestamp) -> Transition {
    let mut machine = Machine::new(state, context, now);
    machine.repair();
    machine.settle_deadlines();
    machine.handle(event);
    machine.settle_deadlines();
    machine.finish()
}

/// Applies events one after another at the same `now`, concatenating their effects.
pub fn step_all(state: State, context: &Context, events: &[Event], now: Timestamp) -> Transition {
    let mut transition = Transition {
        state,
        effects: Vec::new(),
    };
    for event in events {
        let next = step(transition.state, context, event, now);
        transition.state = next.state;
        // Each step names the deadline of the state it ends in (or none): only the last one stands.
        transition
            .effects
            .retain(|effect| !matches!(effect, Effect::RequeueAt(_)));
        transition.effects.extend(next.effects);
    }
    transition
}

/// `at + duration`, saturating at the ends of the representable range instead of panicking.
fn add(at: Timestamp, duration: SignedDuration) -> Timestamp {
    at.checked_add(duration)
        .unwrap_or(if duration.is_negative() {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
}

/// A duration as people write it (`4h`, `1h 30m`).
fn human(duration: SignedDuration) -> String {
    format!("{duration:#}")
}

struct Machine<'a> {
    state: State,
    context: &'a Context,
    now: Timestamp,
    effects: Vec<Effect>,
}

impl<'a> Machine<'a> {
    fn new(state: State, context: &'a Context, now: Timestamp) -> Machine<'a> {
        Machine {
            state,
            context,
            now,
            effects: Vec::new(),
        }
    }

    fn finish(mut self) -> Transition {
        if !self.state.phase.is_terminal() {
            let deadline = match self.state.phase {
                Phase::DryRun | Phase::Active | Phase::Failed => self.state.expires_at,
                Phase::PendingApproval => self.state.approval_deadline,
                _ => None,
            };
            if let Some(deadline) = deadline.filter(|deadline| *deadline > self.now) {
                self.effects.push(Effect::RequeueAt(deadline));
            }
        }
        Transition {
            state: self.state,
            effects: self.effects,
        }
    }

    /// Appends to history (bounded) and publishes the matching Event.
    fn record(
        &mut self,
        event_type: EventType,
        reason: &'static str,
        actor: &str,
        message: String,
    ) {
        self.state
            .append_history(self.now, reason, actor, message.clone());
        self.publish(event_type, reason, actor, message);
    }

    /// Publishes an Event without a history entry (retries, which would flood the history).
    fn publish(
        &mut self,
        event_type: EventType,
        reason: &'static str,
        actor: &str,
        message: String,
    ) {
        self.effects.push(Effect::PublishEvent {
            event_type,
            reason,
            actor: actor.to_string(),
            message,
        });
    }

    fn emit_once(&mut self, effect: Effect) {
        if !self.effects.contains(&effect) {
            self.effects.push(effect);
        }
    }

    fn start(&mut self) {
        let context = self.context;
        match context.mode {
            Mode::DryRun => self.start_dry_run(),
            Mode::Auto if context.kill_switch => {
                self.record(
                    EventType::Warning,
                    REASON_KILL_SWITCH_DRY_RUN,
                    CONTROLLER_ACTOR,
                    "kill switch engaged: this Auto quarantine starts as a dry-run and will never be enforced".into(),
                );
                self.start_dry_run();
            }
            Mode::Manual => {
                let deadline = add(context.created_at, context.approval_timeout);
                self.state.phase = Phase::PendingApproval;
                self.state.approval_deadline = Some(deadline);
                self.record(
                    EventType::Normal,
                    REASON_PENDING_APPROVAL,
                    CONTROLLER_ACTOR,
                    format!(
                        "waiting for approval until {deadline}: annotate {APPROVE_ANNOTATION}=<note> to enforce for {}, or {REJECT_ANNOTATION}=<note> to dismiss",
                        human(context.ttl)
                    ),
                );
                if context.kill_switch {
                    self.record(
                        EventType::Warning,
                        REASON_KILL_SWITCH_DRY_RUN,
                        CONTROLLER_ACTOR,
                        "kill switch engaged: approvals are refused while it stays engaged".into(),
                    );
                }
                self.effects
                    .push(Effect::Notify(Notification::PendingApproval));
            }
            Mode::Auto => self.activate(),
        }
    }

    fn start_dry_run(&mut self) {
        let expires_at = add(self.context.created_at, self.context.ttl);
        self.state.phase = Phase::DryRun;
        self.state.expires_at = Some(expires_at);
        self.record(
            EventType::Normal,
            REASON_PLANNED,
            CONTROLLER_ACTOR,
            format!("dry-run: plan recorded, nothing will be written to AWS; the plan expires at {expires_at}"),
        );
        self.effects.push(Effect::Notify(Notification::Planned));
    }

    /// Enters Active. Callers guarantee the quarantine was never active before.
    fn activate(&mut self) {
        let expires_at = add(self.now, self.context.ttl);
        self.state.phase = Phase::Active;
        self.state.activated_at = Some(self.now);
        self.state.expires_at = Some(expires_at);
        self.record(
            EventType::Normal,
            REASON_ACTIVATED,
            CONTROLLER_ACTOR,
            format!(
                "enforcing the deny for {} until {expires_at}",
                human(self.context.ttl)
            ),
        );
        self.emit_once(Effect::Enforce);
        self.effects.push(Effect::Notify(Notification::Activated));
    }

    /// Fills deadlines a hand-edited or partly written status lacks, so no phase waits forever.
    fn repair(&mut self) {
        let context = self.context;
        match self.state.phase {
            Phase::DryRun if self.state.expires_at.is_none() => {
                self.state.expires_at = Some(add(context.created_at, context.ttl));
            }
            Phase::PendingApproval if self.state.approval_deadline.is_none() => {
                self.state.approval_deadline =
                    Some(add(context.created_at, context.approval_timeout));
            }
            Phase::Active | Phase::Failed if self.state.expires_at.is_none() => {
                let start = self.state.activated_at.unwrap_or(context.created_at);
                self.state.expires_at = Some(add(start, context.ttl));
            }
            _ => {}
        }
    }

    /// Applies every deadline that has passed by `now`.
    fn settle_deadlines(&mut self) {
        let now = self.now;
        match self.state.phase {
            Phase::DryRun => {
                if let Some(expires_at) = self.state.expires_at.filter(|t| *t <= now) {
                    self.state.phase = Phase::Expired;
                    self.record(
                        EventType::Normal,
                        REASON_EXPIRED,
                        CONTROLLER_ACTOR,
                        format!("dry-run plan expired at {expires_at}; nothing was enforced"),
                    );
                    self.effects.push(Effect::Notify(Notification::Expired));
                }
            }
            Phase::PendingApproval => {
                if let Some(deadline) = self.state.approval_deadline.filter(|t| *t <= now) {
                    self.state.phase = Phase::Expired;
                    self.record(
                        EventType::Warning,
                        REASON_APPROVAL_TIMED_OUT,
                        CONTROLLER_ACTOR,
                        format!("not approved before {deadline}; nothing was enforced"),
                    );
                    self.effects.push(Effect::Notify(Notification::Expired));
                }
            }
            Phase::Active | Phase::Failed => {
                if let Some(expires_at) = self.state.expires_at.filter(|t| *t <= now) {
                    self.begin_release(
                        ReleaseReason::Expired,
                        REASON_TTL_EXPIRED,
                        CONTROLLER_ACTOR,
                        format!("TTL reached at {expires_at}; releasing the deny"),
                    );
                }
            }
            _ => {}
        }
    }

    fn begin_release(
        &mut self,
        reason: ReleaseReason,
        history_reason: &'static str,
        actor: &str,
        message: String,
    ) {
        self.state.phase = Phase::Releasing;
        self.state.release_reason = Some(reason);
        self.record(EventType::Normal, history_reason, actor, message);
        self.emit_once(Effect::Release);
    }

    /// Ends a quarantine that never held a deny because of deletion (no detach needed).
    fn end_unenforced(&mut self, reason: ReleaseReason, history_reason: &'static str, what: &str) {
        let previous = self.state.phase;
        self.state.phase = Phase::Released;
        self.state.release_reason = Some(reason);
        self.state.released_at = Some(self.now);
        self.record(
            EventType::Normal,
            history_reason,
            CONTROLLER_ACTOR,
            format!(
                "{what} while {}; nothing was enforced, so nothing to release",
                previous.as_str()
            ),
        );
    }

    fn handle(&mut self, event: &Event) {
        match event {
            Event::Approve { actor, note } => self.approve(actor, note),
            Event::Reject { actor, note } => self.reject(actor, note),
            Event::Release { actor, note } => self.release_requested(actor, note),
            Event::Extend { actor, duration } => self.extend(actor, *duration),
            Event::InvalidAnnotation {
                annotation,
                actor,
                value,
                problem,
            } => {
                self.record(
                    EventType::Warning,
                    REASON_INVALID_ANNOTATION,
                    actor,
                    format!(
                        "{} annotation {value:?} not applied: {problem}",
                        annotation.verb()
                    ),
                );
            }
            Event::Tick => match self.state.phase {
                Phase::Active => self.emit_once(Effect::Enforce),
                Phase::Releasing => self.emit_once(Effect::Release),
                _ => {}
            },
            Event::EnforcementSucceeded => {}
            Event::EnforcementFailed { reason, retryable } => {
                self.enforcement_failed(reason, *retryable)
            }
            Event::ReleaseSucceeded => {
                if self.state.phase == Phase::Releasing {
                    let why = self
                        .state
                        .release_reason
                        .map_or("unknown", ReleaseReason::as_str);
                    self.state.phase = Phase::Released;
                    self.state.released_at = Some(self.now);
                    self.record(
                        EventType::Normal,
                        REASON_RELEASED,
                        CONTROLLER_ACTOR,
                        format!("deny detached from every target (release reason: {why})"),
                    );
                    self.effects.push(Effect::Notify(Notification::Released));
                }
            }
            Event::ReleaseFailed { reason } => {
                if self.state.phase == Phase::Releasing {
                    self.publish(
                        EventType::Warning,
                        REASON_RELEASE_FAILED,
                        CONTROLLER_ACTOR,
                        format!("detaching the deny failed, retrying with backoff: {reason}"),
                    );
                    self.emit_once(Effect::RequeueWithBackoff);
                }
            }
            Event::Deleted => self.removed(
                ReleaseReason::Deleted,
                REASON_DELETED,
                "the Quarantine is being deleted",
            ),
            Event::PolicyDeleted => self.removed(
                ReleaseReason::PolicyDeleted,
                REASON_POLICY_DELETED,
                "the owning GuardrailPolicy was deleted",
            ),
        }
        if let Some(annotation) = event.annotation() {
            self.effects.push(Effect::ClearAnnotation(annotation.key()));
        }
    }

    fn ignore(&mut self, annotation: Annotation, actor: &str, why: &str) {
        let phase = self.state.phase.as_str();
        self.record(
            EventType::Warning,
            REASON_ANNOTATION_IGNORED,
            actor,
            format!(
                "{} annotation ignored: the quarantine is {phase}; {why}",
                annotation.verb()
            ),
        );
    }

    fn approve(&mut self, actor: &str, note: &str) {
        match self.state.phase {
            Phase::PendingApproval if self.context.kill_switch => self.record(
                EventType::Warning,
                REASON_APPROVAL_REFUSED,
                actor,
                "approval refused: the kill switch is engaged, so nothing new is enforced; approve again once it is off".into(),
            ),
            Phase::PendingApproval
                if self.state.activated_at.is_none() && self.context.required_approvers > 1 =>
            {
                self.approve_four_eyes(actor, note)
            }
            Phase::PendingApproval if self.state.activated_at.is_none() => {
                self.state.approved_by = Some(actor.to_string());
                self.state.approved_at = Some(self.now);
                self.record(
                    EventType::Normal,
                    REASON_APPROVED,
                    actor,
                    format!("approved: {note}"),
                );
                self.activate();
            }
            Phase::PendingApproval => {
                self.ignore(Annotation::Approve, actor, "it was already active once")
            }
            Phase::DryRun => self.ignore(
                Annotation::Approve,
                actor,
                "a dry-run is never enforced; create a Manual or Auto quarantine instead",
            ),
            Phase::Active | Phase::Releasing => {
                self.ignore(Annotation::Approve, actor, "it is already enforced")
            }
            Phase::Failed => self.ignore(
                Annotation::Approve,
                actor,
                "enforcement cannot proceed; fix the cause and create a new quarantine",
            ),
            Phase::Released | Phase::Rejected | Phase::Expired => {
                self.ignore(Annotation::Approve, actor, "it has ended")
            }
        }
    }

    /// Four-eyes: counts distinct verified approvers (from the history's `ApprovalRecorded`
    /// entries) and enforces once there are enough. An unverified approval never counts, and the
    /// same person approving twice counts once, so nobody approves alone.
    fn approve_four_eyes(&mut self, actor: &str, note: &str) {
        let required = usize::from(self.context.required_approvers);
        if actor.ends_with(UNVERIFIED_SUFFIX) {
            self.record(
                EventType::Warning,
                REASON_APPROVAL_REFUSED,
                actor,
                format!("approval refused: this quarantine needs {required} distinct verified approvers (four-eyes), and this approval's identity is not verified by the approval webhook"),
            );
            return;
        }
        let mut approvers: Vec<String> = self
            .state
            .history
            .iter()
            .filter(|entry| entry.event == REASON_APPROVAL_RECORDED)
            .map(|entry| entry.actor.clone())
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        approvers.retain(|approver| seen.insert(approver.clone()));
        if approvers.iter().any(|approver| approver == actor) {
            self.record(
                EventType::Warning,
                REASON_APPROVAL_REFUSED,
                actor,
                format!("approval not counted: {actor} already approved; {required} distinct approvers are needed (four-eyes)"),
            );
            return;
        }
        approvers.push(actor.to_string());
        self.record(
            EventType::Normal,
            REASON_APPROVAL_RECORDED,
            actor,
            format!("approval {} of {required}: {note}", approvers.len()),
        );
        if approvers.len() >= required {
            let names = approvers.join(", ");
            self.state.approved_by = Some(names.clone());
            self.state.approved_at = Some(self.now);
            self.record(
                EventType::Normal,
                REASON_APPROVED,
                actor,
                format!("approved by {names}: {note}"),
            );
            self.activate();
        }
    }

    fn reject(&mut self, actor: &str, note: &str) {
        match self.state.phase {
            Phase::PendingApproval => {
                self.state.phase = Phase::Rejected;
                self.state.rejected_by = Some(actor.to_string());
                self.state.rejected_at = Some(self.now);
                self.record(
                    EventType::Normal,
                    REASON_REJECTED,
                    actor,
                    format!("rejected: {note}"),
                );
                self.effects.push(Effect::Notify(Notification::Rejected));
            }
            Phase::DryRun => self.ignore(
                Annotation::Reject,
                actor,
                "a dry-run is never enforced and ends at its TTL",
            ),
            Phase::Active | Phase::Failed => self.ignore(
                Annotation::Reject,
                actor,
                "it is past approval; use the release annotation to end it",
            ),
            Phase::Releasing => self.ignore(Annotation::Reject, actor, "it is already releasing"),
            Phase::Released | Phase::Rejected | Phase::Expired => {
                self.ignore(Annotation::Reject, actor, "it has ended")
            }
        }
    }

    fn release_requested(&mut self, actor: &str, note: &str) {
        match self.state.phase {
            Phase::Active | Phase::Failed => self.begin_release(
                ReleaseReason::ReleaseRequested,
                REASON_RELEASE_REQUESTED,
                actor,
                format!("release requested: {note}"),
            ),
            Phase::DryRun => self.ignore(
                Annotation::Release,
                actor,
                "a dry-run holds no deny and ends at its TTL",
            ),
            Phase::PendingApproval => self.ignore(
                Annotation::Release,
                actor,
                "nothing is enforced yet; use the reject annotation to dismiss it",
            ),
            Phase::Releasing => {
                self.ignore(Annotation::Release, actor, "it is already releasing");
                self.emit_once(Effect::Release);
            }
            Phase::Released | Phase::Rejected | Phase::Expired => {
                self.ignore(Annotation::Release, actor, "it has ended")
            }
        }
    }

    fn extend(&mut self, actor: &str, duration: SignedDuration) {
        let start = match self.state.phase {
            Phase::Active => self.state.activated_at.unwrap_or(self.context.created_at),
            Phase::DryRun => self.context.created_at,
            Phase::PendingApproval => {
                return self.ignore(
                    Annotation::Extend,
                    actor,
                    "the TTL starts at approval; nothing to extend yet",
                );
            }
            Phase::Failed => {
                return self.ignore(
                    Annotation::Extend,
                    actor,
                    "a failed quarantine is not extended; release it or let it expire",
                );
            }
            Phase::Releasing => {
                return self.ignore(Annotation::Extend, actor, "it is already releasing");
            }
            Phase::Released | Phase::Rejected | Phase::Expired => {
                return self.ignore(Annotation::Extend, actor, "it has ended");
            }
        };
        let current = self.state.expires_at.unwrap_or(self.now);
        let requested = add(self.now, duration);
        let latest = add(start, MAX_TOTAL_TTL);
        let refusal = if duration <= SignedDuration::ZERO {
            Some(format!(
                "the duration must be positive, got {}",
                human(duration)
            ))
        } else if requested <= current {
            Some(format!(
                "it already lasts until {current}, later than now + {} = {requested}; extend never shortens (use release to end early)",
                human(duration)
            ))
        } else if requested > latest {
            Some(format!(
                "now + {} = {requested} is past {latest}, the {} bound counted from {start}",
                human(duration),
                human(MAX_TOTAL_TTL)
            ))
        } else {
            None
        };
        match refusal {
            Some(why) => self.record(
                EventType::Warning,
                REASON_EXTEND_REFUSED,
                actor,
                format!("extend refused: {why}"),
            ),
            None => {
                self.state.expires_at = Some(requested);
                self.record(
                    EventType::Normal,
                    REASON_EXTENDED,
                    actor,
                    format!("expiresAt moved from {current} to {requested}"),
                );
            }
        }
    }

    fn enforcement_failed(&mut self, reason: &str, retryable: bool) {
        if self.state.phase != Phase::Active {
            // A late result for a phase that no longer enforces; the current phase's effects stand.
            return;
        }
        if retryable {
            self.publish(
                EventType::Warning,
                REASON_ENFORCEMENT_RETRYING,
                CONTROLLER_ACTOR,
                format!("enforcing the deny failed, retrying with backoff: {reason}"),
            );
            self.emit_once(Effect::RequeueWithBackoff);
        } else {
            self.state.phase = Phase::Failed;
            self.record(
                EventType::Warning,
                REASON_ENFORCEMENT_FAILED,
                CONTROLLER_ACTOR,
                format!("enforcement cannot proceed: {reason}; targets already attached keep the deny until release or expiry"),
            );
            self.effects.push(Effect::Notify(Notification::Failed));
        }
    }

    fn removed(&mut self, reason: ReleaseReason, history_reason: &'static str, what: &str) {
        match self.state.phase {
            Phase::Active | Phase::Failed => self.begin_release(
                reason,
                history_reason,
                CONTROLLER_ACTOR,
                format!("{what}; releasing the deny"),
            ),
            Phase::DryRun | Phase::PendingApproval => {
                self.end_unenforced(reason, history_reason, what)
            }
            // Already releasing for its first reason: keep converging off; repeated deletes add nothing.
            Phase::Releasing => self.emit_once(Effect::Release),
            Phase::Released | Phase::Rejected | Phase::Expired => {}
        }
    }
}
