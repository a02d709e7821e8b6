//! Quarantine reconcile: `gather` (status, annotations, owner) → `step` (pure lifecycle) →
//! `enforce` (scoped converge or one-read verification through the engine) → `update_status`
//! (one optimistic write, only when changed) → Events → clear handled annotations → requeue at
//! the next deadline. A finalizer holds the object until its deny is released. It must not decide
//! the lifecycle itself (that is `lifecycle`) nor build IAM calls (that is `enforce`).

use crate::principal::PrincipalArn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};

use super::desired;
use super::finalizers::{self, FINALIZER, Migration};
use super::{Error, Shared, object_key, patch_status, requeue};
use crate::aws::ErrorCategory;
use crate::controller::crd::conditions::{
    BOUNDARY_RESTORED, ENFORCED, READY, REASON_ATTACHED, REASON_BOUNDARY_CHANGED,
    REASON_BOUNDARY_RESTORED as BOUNDARY_REASON_RESTORED, REASON_INVALID_SPEC, REASON_RECONCILED,
    set_condition,
};
use crate::controller::crd::{
    self as crd, Attachment, AttachmentKind, GuardrailPolicy, Mode, Phase, PlannedDeny, Quarantine,
    QuarantineStatus, TargetState, TargetStatus,
};
use crate::controller::enforce::converge::{
    self as engine, ConvergeInput, ConvergeReport, Scope, Verified, WriteGate,
};
use crate::controller::enforce::document::{DenyDocument, DocumentError};
use crate::controller::enforce::ownership::managed_policy_name;
use crate::controller::enforce::plan;
use crate::controller::lifecycle::{
    self, CONTROLLER_ACTOR, Context, Effect, Event, EventType, REASON_DRIFT_REPAIRED, State,
    parse_annotations,
};
use crate::metrics::CONTROLLER_QUARANTINE;

/// Event reason: our deny policy was found attached to an IAM group (by someone else) and detached.
pub const REASON_DETACHED_FROM_GROUP: &str = "DetachedFromGroup";
/// Status fields owned by other writers (the Slack worker), never sent by this controller.
pub const FOREIGN_STATUS_FIELDS: &[&str] = &["notifications"];

/// The kube-runtime reconcile entry point.
#[tracing::instrument(name = "reconcile_quarantine", skip_all, fields(namespace = %q.namespace().unwrap_or_default(), name = %q.name_any()))]
pub async fn reconcile(q: Arc<Quarantine>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let _working = ctx.stores.in_flight().start();
    let metrics = ctx.metrics.clone();
    metrics
        .reconciles
        .with_label_values(&[CONTROLLER_QUARANTINE])
        .inc();
    let timer = metrics
        .reconcile_duration
        .with_label_values(&[CONTROLLER_QUARANTINE])
        .start_timer();
    let ns = q.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<Quarantine> = Api::namespaced(ctx.client.clone(), &ns);
    let name = q.name_any();
    let result = match finalizers::migration(&q) {
        Migration::None => finalizer(&api, FINALIZER, q, |event| async {
            match event {
                FinalizerEvent::Apply(q) => apply(&q, &ctx, false).await,
                FinalizerEvent::Cleanup(q) => apply(&q, &ctx, true).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            // Keep the API error so a 409 is counted as a conflict, a 500 as kubernetes.
            kube::runtime::finalizer::Error::AddFinalizer(e)
            | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
            other => Error::Finalizer(Box::new(other)),
        }),
        Migration::Rename(index) => finalizers::rename(&api, &name, index).await,
        Migration::Drop(index) => finalizers::remove(&api, &name, index)
            .await
            .map(|()| Action::await_change()),
        // Released exactly as the finalizer helper would (cleanup, then the finalizer goes).
        Migration::Release(index) => match apply(&q, &ctx, true).await {
            Ok(action) => finalizers::remove(&api, &name, index)
                .await
                .map(|()| action),
            Err(e) => Err(e),
        },
    };
    timer.observe_duration();
    result
}

/// The cluster id this quarantine's IAM objects carry: the one its status recorded when it was
/// first planned, else the configured one (decision 096).
pub fn cluster_of(q: &Quarantine, ctx: &Shared) -> String {
    q.status
        .as_ref()
        .and_then(|s| s.deny.as_ref())
        .and_then(|d| d.cluster_id.clone())
        .unwrap_or_else(|| ctx.settings.cluster_id.clone())
}

/// Requeues with per-object backoff after an error, and counts it.
pub fn error_policy(q: Arc<Quarantine>, error: &Error, ctx: Arc<Shared>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER_QUARANTINE, error.category().label()])
        .inc();
    let wait = ctx.backoff(&q.uid().unwrap_or_default());
    tracing::warn!(quarantine = %object_key(q.as_ref()), error = %error, retry_in = ?wait, "reconcile failed");
    requeue(wait)
}

/// What the IAM phase concluded.
struct IamOutcome {
    event: Option<Event>,
    /// The IAM error category and message when enforcement or release failed in this run.
    failure: Option<(ErrorCategory, String)>,
    targets: Option<Vec<TargetStatus>>,
    drift: Vec<String>,
    extra_effects: Vec<Effect>,
}

/// One reconcile of a Quarantine, as named steps: validate the spec, step the lifecycle, act on
/// IAM, build the status, write it, announce (Events, handled annotations) and choose when to come
/// back. Each step is a function below; only `write_status` and `announce` write to the API, only
/// `act` to IAM.
async fn apply(q: &Quarantine, ctx: &Shared, deleting: bool) -> Result<Action, Error> {
    let now = Timestamp::now();
    let uid = q.uid().ok_or(Error::MissingField("uid"))?;
    let ns = q.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<Quarantine> = Api::namespaced(ctx.client.clone(), &ns);
    let old_status = q.status.clone().unwrap_or_default();
    let checked = match validate(q, ctx, &api, &old_status, deleting, now).await? {
        Validated::Usable(checked) => checked,
        Validated::Done(action) => return Ok(action),
        Validated::ReleaseUnrecorded => return release_unrecorded(q, ctx).await,
    };
    let Some(transition) = step(q, ctx, &checked, deleting, now).await? else {
        return release_unrecorded(q, ctx).await;
    };
    // The request ids of the IAM writes this reconcile makes go into its audit entries.
    let (acted, request_ids) =
        crate::aws::iam::capture_request_ids(act(q, ctx, &checked, &old_status, transition)).await;
    let acted = acted?;
    let status = build_status(q, ctx, &checked, &old_status, &acted, &request_ids);
    let written = patch_status(&api, q, &old_status, &status, FOREIGN_STATUS_FIELDS).await?;
    announce(q, ctx, &api, &acted, deleting).await?;
    let action = next_action(q, ctx, &uid, &acted)?;
    if deleting {
        // Released: the finalizer waits (bounded) until the audit records are stored.
        let current = written.unwrap_or_else(|| {
            let mut current = q.clone();
            current.status = Some(status);
            current
        });
        crate::controller::audit::flusher::flush_before_deletion(ctx, &current).await?;
    }
    Ok(action)
}

/// What validation found usable: the deny document, the lifecycle context and recorded state.
struct Checked {
    document: Result<DenyDocument, DocumentError>,
    context: Context,
    state: Option<State>,
}

/// The outcome of [`validate`].
enum Validated {
    /// Go on with these.
    Usable(Box<Checked>),
    /// Nothing more to do in this reconcile.
    Done(Action),
    /// Deleted with no recorded state: release what the engine finds first.
    ReleaseUnrecorded,
}

/// Step 1, validate: a spec that cannot be used (bad duration, deny document too large) on a
/// Quarantine that never held a deny sets `Ready=False/InvalidSpec` and waits for the spec to
/// change. One that may hold a deny goes on (release must always work).
async fn validate(
    q: &Quarantine,
    ctx: &Shared,
    api: &Api<Quarantine>,
    old_status: &QuarantineStatus,
    deleting: bool,
    now: Timestamp,
) -> Result<Validated, Error> {
    let created_at = q
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let document = desired::deny_document(q);
    let context = Context::from_spec(&q.spec, created_at, ctx.settings.kill_switch);
    let spec_problem: Option<String> = match (&context, &document) {
        (Err(e), _) => Some(e.to_string()),
        (_, Err(e)) => Some(format!("deny document: {e}")),
        (Ok(_), Ok(d)) if !d.fits_managed() => Some(format!(
            "the deny document is {} characters; a managed policy allows {}",
            crate::aws::limits::policy_size(&d.json),
            crate::aws::limits::MANAGED_POLICY
        )),
        (Ok(_), Ok(d)) if crd::sets_boundary(&q.spec.actions) => {
            crate::controller::enforce::boundary::document_problem(&d.json)
        }
        _ => None,
    };
    let state = State::from_status(old_status);
    if let Some(problem) = &spec_problem
        && (state.is_none()
            || !lifecycle::holds_attachment(state.as_ref().map_or(Phase::Expired, |s| s.phase)))
    {
        // Never enforced as far as status says; wait for the spec to change. A deleting object
        // with no recorded state may still hold a deny (enforced before its first status write
        // failed): release what the engine can find before the finalizer goes.
        if deleting {
            if state.is_none() {
                return Ok(Validated::ReleaseUnrecorded);
            }
            return Ok(Validated::Done(Action::await_change()));
        }
        let mut status = old_status.clone();
        let flipped = set_condition(
            &mut status.conditions,
            READY,
            false,
            REASON_INVALID_SPEC,
            problem,
            q.metadata.generation,
            now,
        );
        status.observed_generation = q.metadata.generation;
        patch_status(api, q, old_status, &status, FOREIGN_STATUS_FIELDS).await?;
        if flipped {
            ctx.publish(q, true, REASON_INVALID_SPEC, "Validate", problem.clone())
                .await;
        }
        return Ok(Validated::Done(Action::await_change()));
    }
    let context = match context {
        Ok(c) => c,
        Err(_) => fallback_context(q, created_at, ctx.settings.kill_switch),
    };
    Ok(Validated::Usable(Box::new(Checked {
        document,
        context,
        state,
    })))
}

/// Step 2, the lifecycle: the pure state machine from the recorded state and what happened
/// (deletion, policy deleted, annotations, time). `None` when a deleted Quarantine has no
/// recorded state (the caller releases what the engine finds).
async fn step(
    q: &Quarantine,
    ctx: &Shared,
    checked: &Checked,
    deleting: bool,
    now: Timestamp,
) -> Result<Option<lifecycle::Transition>, Error> {
    Ok(Some(match checked.state.clone() {
        None if deleting => return Ok(None),
        None => lifecycle::create(&checked.context, now),
        Some(state) => {
            let mut events = Vec::new();
            if deleting {
                events.push(Event::Deleted);
            } else if policy_deleted(q, ctx).await? {
                events.push(Event::PolicyDeleted);
            }
            if !deleting {
                // Approve, reject and extend take the identity the approval webhook verified,
                // or are labelled unverified (decision 212).
                let annotations = q.metadata.annotations.clone().unwrap_or_default();
                events.extend(crate::controller::admission::stamp::attribute(
                    parse_annotations(&annotations),
                    &annotations,
                    ctx.settings.approval_stamp_key.as_ref(),
                    q.metadata.uid.as_deref().unwrap_or_default(),
                ));
            }
            events.push(Event::Tick);
            lifecycle::step_all(state, &checked.context, &events, now)
        }
    }))
}

/// What [`act`] leaves for the status, the announcements and the requeue.
struct Acted {
    state: State,
    effects: Vec<Effect>,
    drift: Vec<String>,
    new_targets: Option<Vec<TargetStatus>>,
    failure: Option<(ErrorCategory, String)>,
    wants_release: bool,
    /// The new `status.boundaries`, when the boundary step ran.
    boundaries: Option<Vec<crate::controller::crd::BoundaryStatus>>,
}

/// Step 3, IAM: enforce or release when the lifecycle asks for it, and step the lifecycle again
/// with the outcome. Drift repairs are recorded in the history (through the lifecycle).
async fn act(
    q: &Quarantine,
    ctx: &Shared,
    checked: &Checked,
    old_status: &QuarantineStatus,
    transition: lifecycle::Transition,
) -> Result<Acted, Error> {
    let mut state = transition.state;
    let mut effects = transition.effects;
    let wants_enforce = state.phase == Phase::Active && effects.contains(&Effect::Enforce);
    let wants_release = state.phase == Phase::Releasing && effects.contains(&Effect::Release);
    let mut drift = Vec::new();
    let mut new_targets = None;
    let mut failure = None;
    let mut boundaries = None;
    if wants_enforce || wants_release {
        let outcome = if wants_release {
            let deny = release(q, ctx).await?;
            if old_status.boundaries.is_empty() {
                deny
            } else {
                let document = checked
                    .document
                    .as_ref()
                    .map(|d| d.json.clone())
                    .unwrap_or_default();
                let b = super::boundary::run(
                    q,
                    ctx,
                    &cluster_of(q, ctx),
                    &document,
                    release_gate(ctx),
                    true,
                    &[],
                )
                .await?;
                let merged = with_boundary_release(deny, &b);
                boundaries = Some(b);
                merged
            }
        } else {
            match &checked.document {
                Ok(doc) => {
                    let deny = if crd::attaches_deny(&q.spec.actions) {
                        Some(enforce(q, ctx, &doc.json, old_status).await?)
                    } else {
                        None
                    };
                    if crd::sets_boundary(&q.spec.actions) {
                        let refused: Vec<String> = outside_policy(q, ctx)
                            .into_iter()
                            .map(|(arn, _)| arn)
                            .collect();
                        let b = super::boundary::run(
                            q,
                            ctx,
                            &cluster_of(q, ctx),
                            &doc.json,
                            gate(ctx, q),
                            false,
                            &refused,
                        )
                        .await?;
                        let merged = with_boundary_enforce(deny, &b, gate(ctx, q));
                        boundaries = Some(b);
                        merged
                    } else {
                        match deny {
                            Some(d) => d,
                            None => IamOutcome {
                                event: None,
                                failure: None,
                                targets: None,
                                drift: Vec::new(),
                                extra_effects: Vec::new(),
                            },
                        }
                    }
                }
                Err(e) => IamOutcome {
                    event: Some(Event::EnforcementFailed {
                        reason: format!("deny document: {e}"),
                        retryable: false,
                    }),
                    failure: Some((ErrorCategory::Invalid, format!("deny document: {e}"))),
                    targets: None,
                    drift: Vec::new(),
                    extra_effects: Vec::new(),
                },
            }
        };
        drift = outcome.drift;
        new_targets = outcome.targets;
        failure = outcome.failure;
        if let Some((category, _)) = &failure
            && wants_enforce
        {
            // A failed release ends the reconcile in an error, counted by `error_policy`.
            ctx.metrics
                .reconcile_errors
                .with_label_values(&[
                    CONTROLLER_QUARANTINE,
                    super::ErrorCategory::Iam(*category).label(),
                ])
                .inc();
        }
        effects.extend(outcome.extra_effects);
        if let Some(event) = outcome.event {
            let before = state.phase;
            let later = Timestamp::now();
            let t = lifecycle::step(state, &checked.context, &event, later);
            state = t.state;
            effects.extend(t.effects);
            let first_enforcement = !old_status
                .conditions
                .iter()
                .any(|c| c.type_ == ENFORCED && c.status == "True");
            observe_latencies(ctx, &state, before, &event, later, first_enforcement);
        }
    }
    let finished_at = Timestamp::now();
    for message in &drift {
        state.record_drift_repaired(finished_at, message.clone());
        ctx.metrics.drift_repairs.inc();
    }
    for message in boundaries.iter().flat_map(|b| b.left_changed.iter()) {
        state.record_boundary_left(finished_at, message.clone());
    }
    Ok(Acted {
        state,
        effects,
        drift,
        new_targets,
        failure,
        wants_release,
        boundaries: boundaries.map(|b| b.records),
    })
}

/// Step 4, the status: the lifecycle's fields, the planned deny, the targets and the `Ready` and
/// `Enforced` conditions. Pure (reads the clock for condition times only).
fn build_status(
    q: &Quarantine,
    ctx: &Shared,
    checked: &Checked,
    old_status: &QuarantineStatus,
    acted: &Acted,
    request_ids: &[String],
) -> QuarantineStatus {
    let finished_at = Timestamp::now();
    let state = &acted.state;
    let mut status = old_status.clone();
    state.apply_to_status(&mut status);
    {
        // The channel of each person's decision just recorded (decision 224).
        let added = crate::controller::audit::appended(&old_status.history, &status.history).len();
        let from = status.history.len() - added;
        crate::controller::audit::stamp_channels(
            &mut status.history[from..],
            &q.metadata.annotations.clone().unwrap_or_default(),
            ctx.settings.approval_stamp_key.as_ref(),
            q.metadata.uid.as_deref().unwrap_or_default(),
        );
    }
    if ctx.settings.audit.enabled() {
        // The outbox: every new history entry, in the same status write (decision 222).
        let added = crate::controller::audit::appended(&old_status.history, &status.history);
        if !added.is_empty() {
            status.audit = Some(crate::controller::audit::append(
                old_status.audit.as_ref(),
                added,
                request_ids,
            ));
        }
    }
    status.observed_generation = q.metadata.generation;
    if let Ok(doc) = &checked.document {
        let account = desired::accounts(q).into_iter().next().unwrap_or_default();
        let cluster = cluster_of(q, ctx);
        status.deny = Some(PlannedDeny {
            policy_name: managed_policy_name(&cluster, &desired::key(q), &account),
            document: doc.json.clone(),
            cluster_id: Some(cluster),
        });
    }
    status.targets = match &acted.new_targets {
        Some(t) => t.clone(),
        None => planned_targets(q, &status, state.phase),
    };
    if let Some(records) = &acted.boundaries {
        status.boundaries = records.clone();
    }
    let left: Vec<&str> = status
        .boundaries
        .iter()
        .filter(|b| b.state == crate::controller::crd::BoundaryState::LeftChanged)
        .map(|b| b.arn.as_str())
        .collect();
    let released = status.boundaries.iter().any(|b| {
        matches!(
            b.state,
            crate::controller::crd::BoundaryState::Restored
                | crate::controller::crd::BoundaryState::LeftChanged
        )
    });
    if released {
        let (restored, reason, text) = if left.is_empty() {
            (
                true,
                BOUNDARY_REASON_RESTORED,
                "every recorded permissions boundary was restored".to_string(),
            )
        } else {
            (
                false,
                REASON_BOUNDARY_CHANGED,
                format!(
                    "left as someone else set it (not restored): {}",
                    left.join(", ")
                ),
            )
        };
        set_condition(
            &mut status.conditions,
            BOUNDARY_RESTORED,
            restored,
            reason,
            &super::truncate(&text, 1000),
            q.metadata.generation,
            finished_at,
        );
    }
    let attached = status
        .targets
        .iter()
        .filter(|t| t.state == TargetState::Attached)
        .count();
    status.targets_summary = Some(format!("{attached}/{}", q.spec.targets.len()));
    set_condition(
        &mut status.conditions,
        READY,
        true,
        REASON_RECONCILED,
        "the controller acts on this quarantine",
        q.metadata.generation,
        finished_at,
    );
    let enforced = state.phase == Phase::Active && attached == q.spec.targets.len();
    let summary = enforced_message(state.phase, attached, q.spec.targets.len());
    let (enforced_reason, enforced_text) = match &acted.failure {
        // Say why, with the IAM error category as the reason (e.g. AccessDenied).
        Some((category, message))
            if !enforced
                && matches!(
                    state.phase,
                    Phase::Active | Phase::Failed | Phase::Releasing
                ) =>
        {
            (category.as_str(), format!("{summary}: {message}"))
        }
        _ if enforced => (REASON_ATTACHED, summary),
        _ => (state.phase.as_str(), summary),
    };
    set_condition(
        &mut status.conditions,
        ENFORCED,
        enforced,
        enforced_reason,
        &super::truncate(&enforced_text, 1000),
        q.metadata.generation,
        finished_at,
    );
    status
}

/// Step 5, announce (after the status write, so a conflict retry does not duplicate them): the
/// lifecycle's Events, drift repairs, and the handled annotations cleared.
async fn announce(
    q: &Quarantine,
    ctx: &Shared,
    api: &Api<Quarantine>,
    acted: &Acted,
    deleting: bool,
) -> Result<(), Error> {
    publish_effects(q, ctx, &acted.effects, "Lifecycle").await;
    for message in &acted.drift {
        ctx.publish(q, true, REASON_DRIFT_REPAIRED, "Enforce", message.clone())
            .await;
    }
    let clear: Vec<&str> = acted
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::ClearAnnotation(key) => Some(*key),
            _ => None,
        })
        .collect();
    if !clear.is_empty() && !deleting {
        count_approvals(q, ctx, &clear);
        clear_annotations(api, q, &clear).await?;
    }
    Ok(())
}

/// Step 6, when to come back: an unfinished release is an error (retried with backoff); else the
/// soonest of the lifecycle's deadlines and the drift period.
fn next_action(q: &Quarantine, ctx: &Shared, uid: &str, acted: &Acted) -> Result<Action, Error> {
    let state = &acted.state;
    let effects = &acted.effects;
    if acted.wants_release && state.phase == Phase::Releasing {
        return Err(Error::Release(format!(
            "{} still holds the deny on some target",
            object_key(q)
        )));
    }
    if effects.contains(&Effect::RequeueWithBackoff) {
        return Ok(requeue(ctx.backoff(uid)));
    }
    ctx.reset_backoff(uid);
    let mut next: Option<Duration> = None;
    let mut sooner = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
    for effect in effects {
        if let Effect::RequeueAt(at) = effect {
            sooner(until(*at, Timestamp::now()));
        }
    }
    if state.phase == Phase::Active {
        sooner(ctx.settings.drift_period);
    }
    if let Some(at) = state.expires_at.filter(|_| !state.phase.is_terminal()) {
        sooner(until(at, Timestamp::now()));
    }
    if let Some(at) = state
        .approval_deadline
        .filter(|_| state.phase == Phase::PendingApproval)
    {
        sooner(until(at, Timestamp::now()));
    }
    Ok(match next {
        Some(d) => requeue(d),
        None => Action::await_change(),
    })
}

/// Counts the handled approve, reject and extend annotations by whether a valid stamp named the
/// person (`autoguardrails_approvals_total`).
fn count_approvals(q: &Quarantine, ctx: &Shared, handled: &[&str]) {
    let annotations = q.metadata.annotations.clone().unwrap_or_default();
    let uid = q.metadata.uid.as_deref().unwrap_or_default();
    for annotation in crate::controller::admission::stamp::GUARDED {
        if !handled.contains(&annotation.key()) {
            continue;
        }
        let verified = crate::controller::admission::stamp::is_verified(
            annotation,
            &annotations,
            ctx.settings.approval_stamp_key.as_ref(),
            uid,
        );
        ctx.metrics
            .approvals
            .with_label_values(&[annotation.verb(), if verified { "true" } else { "false" }])
            .inc();
    }
}

/// Removes handled annotations, each only if it still holds the value that was handled (a JSON
/// patch `test` before `remove`): a person who set a new value meanwhile keeps it, and the next
/// reconcile handles it. The identity stamp next to it (`<key>-verified`) goes with it.
async fn clear_annotations(
    api: &Api<Quarantine>,
    q: &Quarantine,
    keys: &[&str],
) -> Result<(), Error> {
    let name = q.name_any();
    let annotations = q.annotations();
    for key in keys {
        let Some(value) = annotations.get(*key) else {
            continue;
        };
        let path = format!(
            "/metadata/annotations/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        let mut operations = vec![
            serde_json::json!({ "op": "test", "path": path, "value": value }),
            serde_json::json!({ "op": "remove", "path": path }),
        ];
        let stamp = format!("{key}{}", crate::controller::admission::stamp::STAMP_SUFFIX);
        if annotations.contains_key(&stamp) {
            operations.push(serde_json::json!({
                "op": "remove",
                "path": format!("{path}{}", crate::controller::admission::stamp::STAMP_SUFFIX),
            }));
        }
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::Value::Array(operations))?;
        match api
            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => {}
            // The value changed (or is gone): leave it for the next reconcile.
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 || s.code == 400 => {
                tracing::debug!(
                    annotation = key,
                    "annotation changed since it was handled; kept"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    let d = at.duration_since(now);
    if d <= SignedDuration::ZERO {
        Duration::from_millis(50)
    } else {
        // A few milliseconds late rather than early, so the deadline has passed when we wake.
        Duration::try_from(d).unwrap_or(Duration::from_secs(3600)) + Duration::from_millis(20)
    }
}

fn fallback_context(q: &Quarantine, created_at: Timestamp, kill_switch: bool) -> Context {
    Context {
        mode: q.spec.mode,
        created_at,
        ttl: lifecycle::DEFAULT_APPROVAL_TIMEOUT,
        approval_timeout: lifecycle::DEFAULT_APPROVAL_TIMEOUT,
        kill_switch,
        required_approvers: q.spec.required_approvers.unwrap_or(1).max(1),
    }
}

fn observe_latencies(
    ctx: &Shared,
    state: &State,
    before: Phase,
    event: &Event,
    at: Timestamp,
    first_enforcement: bool,
) {
    match event {
        // Once per activation: the first success after which every target holds the deny.
        Event::EnforcementSucceeded if before == Phase::Active && first_enforcement => {
            if let Some(activated) = state.activated_at {
                // First success right after activation in this reconcile.
                let since = at.duration_since(activated);
                if since < SignedDuration::from_secs(60) {
                    let start = state.approved_at.unwrap_or(activated);
                    ctx.metrics
                        .activation_latency
                        .observe(at.duration_since(start).as_secs_f64().max(0.0));
                }
            }
        }
        Event::ReleaseSucceeded if state.phase == Phase::Released => {
            if state.release_reason == Some(lifecycle::ReleaseReason::Expired)
                && let Some(expires) = state.expires_at
            {
                ctx.metrics
                    .release_lag
                    .observe(at.duration_since(expires).as_secs_f64().max(0.0));
            }
        }
        _ => {}
    }
}

fn enforced_message(phase: Phase, attached: usize, total: usize) -> String {
    match phase {
        Phase::Active => format!("the deny is attached to {attached} of {total} targets"),
        Phase::DryRun => "dry-run: nothing is enforced".into(),
        Phase::PendingApproval => "waiting for approval".into(),
        Phase::Releasing => format!("releasing: {attached} of {total} targets still hold the deny"),
        Phase::Failed => format!("enforcement failed: {attached} of {total} targets hold the deny"),
        Phase::Released => "released".into(),
        Phase::Rejected => "rejected: never enforced".into(),
        Phase::Expired => "expired: never enforced".into(),
    }
}

/// Target status when no IAM work ran in this reconcile: keep what status says for phases that
/// may hold the deny; `Planned` for phases before enforcement.
fn planned_targets(q: &Quarantine, status: &QuarantineStatus, phase: Phase) -> Vec<TargetStatus> {
    match phase {
        Phase::DryRun | Phase::PendingApproval if status.targets.is_empty() => q
            .spec
            .targets
            .iter()
            .map(|t| TargetStatus {
                arn: t.arn.clone(),
                attachment: None,
                state: TargetState::Planned,
                last_error: None,
                last_verified_at: None,
            })
            .collect(),
        _ => status.targets.clone(),
    }
}

/// Spec targets the owning policy does not allow (not in its scope, or excepted), with why. A
/// Quarantine's targets can be edited after intake chose them; they are held to the policy's
/// scope and exceptions on every enforcement (decision 098). Hand-made quarantines (no owning
/// policy) and a policy not in the cache are not checked here (protected principals always are).
fn outside_policy(q: &Quarantine, ctx: &Shared) -> Vec<(String, String)> {
    let Some(owner) = q
        .owner_references()
        .iter()
        .find(|o| o.kind == "GuardrailPolicy")
    else {
        return Vec::new();
    };
    let ns = q.namespace().unwrap_or_default();
    let Some(policy) = ctx.stores.policy(&ns, &owner.name) else {
        return Vec::new();
    };
    if policy.uid().as_deref() != Some(owner.uid.as_str()) {
        return Vec::new();
    }
    let exclusions =
        crate::controller::policy::exclusions(&policy.spec, &ctx.settings.protected_principals)
            .ok();
    let resolution = ctx.stores.resolutions().get(&ns, &owner.name);
    q.spec
        .targets
        .iter()
        .filter_map(|t| {
            let explicit = policy
                .spec
                .scope
                .principals
                .iter()
                .any(|s| s.same_principal(t));
            if !explicit && !selected(&policy.spec.scope, q, resolution.as_ref(), t) {
                return Some((
                    t.arn.clone(),
                    format!("not in the scope of policy {}", owner.name),
                ));
            }
            let excluded = match (&exclusions, t.parse()) {
                (Some(ex), Ok(parsed)) => ex.check(&parsed).is_some(),
                _ => false,
            };
            excluded.then(|| {
                (
                    t.arn.clone(),
                    format!("excepted or protected by policy {}", owner.name),
                )
            })
        })
        .collect()
}

/// Whether a target of a policy with selectors is still in its scope: it was frozen in with a
/// selector's reason (`targetReasons`, written by intake) and, when the policy's selectors have a
/// successful resolution, that resolution still holds it (a principal that stopped matching is
/// refused, never one that was not chosen at creation; decision 245). Without a resolution the
/// frozen record, checked by intake at creation, is what is known.
fn selected(
    scope: &crate::controller::crd::ScopeSpec,
    q: &Quarantine,
    resolution: Option<&crate::controller::policy::selectors::Resolution>,
    target: &crate::controller::crd::Principal,
) -> bool {
    use crate::controller::policy::selectors::{Outcome, fingerprint};
    if scope.selectors.is_empty() {
        return false;
    }
    let frozen = q
        .spec
        .target_reasons
        .iter()
        .any(|r| r.arn == target.arn && r.matched_by.starts_with("selectors["));
    if !frozen {
        return false;
    }
    match resolution {
        Some(r) if r.fingerprint == fingerprint(scope) => match &r.outcome {
            Outcome::Resolved(targets) => {
                targets.iter().any(|t| t.principal.same_principal(target))
            }
            Outcome::Failed(_) => true,
        },
        _ => true,
    }
}

/// True when the owning policy (by ownerReference uid) is gone or being deleted.
async fn policy_deleted(q: &Quarantine, ctx: &Shared) -> Result<bool, Error> {
    let Some(owner) = q
        .owner_references()
        .iter()
        .find(|o| o.kind == "GuardrailPolicy")
        .cloned()
    else {
        return Ok(false); // made by hand: not tied to a policy's life
    };
    let ns = q.namespace().unwrap_or_default();
    if let Some(p) = ctx.stores.policy(&ns, &owner.name)
        && p.uid().as_deref() == Some(owner.uid.as_str())
        && p.meta().deletion_timestamp.is_none()
    {
        return Ok(false);
    }
    // The cache may lag; ask the API server before concluding.
    let api: Api<GuardrailPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    match api.get_opt(&owner.name).await? {
        Some(p) => {
            Ok(p.uid().as_deref() != Some(owner.uid.as_str())
                || p.meta().deletion_timestamp.is_some())
        }
        None => Ok(true),
    }
}

fn gate(ctx: &Shared, q: &Quarantine) -> WriteGate {
    if q.spec.mode == Mode::DryRun {
        WriteGate::DryRun
    } else if ctx.settings.kill_switch {
        WriteGate::KillSwitch
    } else {
        WriteGate::Enforce
    }
}

fn status_targets(q: &Quarantine, report: &ConvergeReport, now: Timestamp) -> Vec<TargetStatus> {
    let key = desired::key(q);
    q.spec
        .targets
        .iter()
        .map(|t| {
            let wanted = PrincipalArn::parse(&t.arn).ok();
            let found = report.targets.iter().find(|r| {
                let same = match (&wanted, PrincipalArn::parse(&r.arn)) {
                    (Some(a), Ok(b)) => *a == b,
                    _ => r.arn == t.arn,
                };
                same && r.key.as_ref().is_none_or(|k| *k == key)
            });
            match found {
                Some(r) => TargetStatus {
                    arn: t.arn.clone(),
                    attachment: r.attachment.as_ref().map(|a| Attachment {
                        kind: match a.kind {
                            plan::AttachmentKind::Managed => AttachmentKind::Managed,
                            plan::AttachmentKind::Inline => AttachmentKind::Inline,
                        },
                        name: a.name.clone(),
                    }),
                    state: match r.state {
                        engine::TargetState::Attached => TargetState::Attached,
                        engine::TargetState::Planned => TargetState::Planned,
                        engine::TargetState::Detached => TargetState::Detached,
                        engine::TargetState::Failed => TargetState::Failed,
                    },
                    last_error: r.last_error.clone(),
                    last_verified_at: (r.state == engine::TargetState::Attached && r.confirmed)
                        .then_some(Time(now)),
                },
                None => TargetStatus {
                    arn: t.arn.clone(),
                    attachment: None,
                    state: TargetState::Failed,
                    last_error: Some("not reported by the enforcement run".into()),
                    last_verified_at: None,
                },
            }
        })
        .collect()
}

fn count_calls(ctx: &Shared, report: &ConvergeReport) {
    for (op, n) in &report.calls.by_operation {
        ctx.metrics
            .iam_calls
            .with_label_values(&[op.to_string().as_str(), "sent"])
            .inc_by(*n);
    }
    for w in &report.writes {
        if !w.performed {
            ctx.metrics
                .iam_calls
                .with_label_values(&[w.operation.to_string().as_str(), "suppressed"])
                .inc();
        } else if let Some(code) = &w.error {
            ctx.metrics
                .iam_calls
                .with_label_values(&[w.operation.to_string().as_str(), code.as_str()])
                .inc();
        }
    }
}

fn mark_full_converge(ctx: &Shared, uid: &str) {
    ctx.full_converge
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(uid.to_string(), Instant::now());
}

fn full_converge_due(ctx: &Shared, uid: &str) -> bool {
    ctx.full_converge
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(uid)
        .is_none_or(|at| at.elapsed() >= ctx.settings.full_converge_period)
}

/// Keeps the deny on every target: one read per target in steady state, a scoped converge when
/// something is missing, the document may have changed, or a full converge is due.
async fn enforce(
    q: &Quarantine,
    ctx: &Shared,
    document: &str,
    status: &QuarantineStatus,
) -> Result<IamOutcome, Error> {
    let uid = q.uid().unwrap_or_default();
    let now = Timestamp::now();
    let all_attached = !status.targets.is_empty()
        && status.targets.len() == q.spec.targets.len()
        && status.targets.iter().all(|t| {
            t.state == TargetState::Attached
                && t.attachment.is_some()
                && q.spec.targets.iter().any(|s| s.arn == t.arn)
        });
    let same_document = status.deny.as_ref().is_some_and(|d| d.document == document);
    if all_attached
        && same_document
        && !full_converge_due(ctx, &uid)
        && let Some(outcome) = verify(q, ctx, document, status, now).await?
    {
        return Ok(outcome);
    }
    let mut desired = desired::desired(q, document);
    // Decision 098: a spec edited after intake is checked against the owning policy again.
    let outside = outside_policy(q, ctx);
    desired
        .targets
        .retain(|t| !outside.iter().any(|(arn, _)| *arn == t.arn));
    let input = ConvergeInput {
        desired: vec![desired],
        known_principals: desired::known_principals(q),
        accounts: desired::accounts(q),
        gate: gate(ctx, q),
        scope: Scope::only(desired::key(q)),
    };
    let cluster = cluster_of(q, ctx);
    let mut report = {
        let _shared = ctx.iam_lock.read().await;
        ctx.engine
            .converge_as(&cluster, ctx.clients.as_ref(), &input)
            .await
            .map_err(Error::Aborted)?
    };
    count_calls(ctx, &report);
    mark_full_converge(ctx, &uid);
    // Targets outside the owning policy are refused, never denied.
    for (arn, reason) in &outside {
        report.errors.push(engine::ErrorRecord {
            account_id: String::new(),
            category: ErrorCategory::Invalid,
            message: format!("refused target {arn}: {reason}"),
        });
        report.targets.push(engine::TargetStatus {
            key: Some(desired::key(q)),
            arn: arn.clone(),
            state: engine::TargetState::Failed,
            attachment: None,
            confirmed: false,
            last_error: Some(reason.clone()),
            error_category: Some(ErrorCategory::Invalid),
        });
    }
    // A deny of ours on a protected principal is never touched; while enforcing, it is a failure
    // a person must resolve (release reports it as a warning instead).
    for message in report.refused_releases.clone() {
        report.errors.push(engine::ErrorRecord {
            account_id: String::new(),
            category: ErrorCategory::Invalid,
            message,
        });
    }
    let key = desired::key(q);
    let drift: Vec<String> = report
        .drift_repairs
        .iter()
        .filter(|d| d.key == key && d.performed)
        .map(|d| format!("{:?} on {}: the deny was put back", d.kind, d.arn))
        .collect();
    let targets = status_targets(q, &report, now);
    let mut failure = None;
    let event = if report.is_converged() && targets.iter().all(|t| t.state == TargetState::Attached)
    {
        Event::EnforcementSucceeded
    } else {
        let failed: Vec<&engine::TargetStatus> = report
            .targets
            .iter()
            .filter(|t| t.state == engine::TargetState::Failed)
            .collect();
        let mut reasons: Vec<String> = failed
            .iter()
            .map(|t| format!("{}: {}", t.arn, t.last_error.clone().unwrap_or_default()))
            .collect();
        reasons.extend(report.errors.iter().map(|e| e.message.clone()));
        if reasons.is_empty() && input.gate != WriteGate::Enforce {
            reasons.push("writes are gated (kill switch engaged); drift is not repaired".into());
        }
        let categories: Vec<ErrorCategory> = failed
            .iter()
            .filter_map(|t| t.error_category)
            .chain(report.errors.iter().map(|e| e.category))
            .collect();
        let permanent = categories.iter().any(|c| !retryable(*c));
        if input.gate != WriteGate::Enforce && failed.is_empty() && report.errors.is_empty() {
            // Kill switch: nothing failed, enforcement is held back; keep the phase and say so.
            return Ok(IamOutcome {
                event: None,
                failure: None,
                targets: Some(targets),
                drift,
                extra_effects: vec![Effect::PublishEvent {
                    event_type: EventType::Warning,
                    reason: lifecycle::REASON_KILL_SWITCH_DRY_RUN,
                    actor: CONTROLLER_ACTOR.into(),
                    message: reasons.join("; "),
                }],
            });
        }
        let reason = super::truncate(&reasons.join("; "), 900);
        failure = Some((worst(&categories), reason.clone()));
        Event::EnforcementFailed {
            reason,
            retryable: !permanent,
        }
    };
    Ok(IamOutcome {
        event: Some(event),
        failure,
        targets: Some(targets),
        drift,
        extra_effects: Vec::new(),
    })
}

/// Whether an enforcement failure of this category is retried with backoff (the quarantine stays
/// Active) rather than ending in Failed. AccessDenied is the controller's own permission, which
/// an operator fixes in IAM without touching the spec: retry until it is granted (decision 032).
fn retryable(category: ErrorCategory) -> bool {
    matches!(
        category,
        ErrorCategory::Transient | ErrorCategory::Conflict | ErrorCategory::AccessDenied
    )
}

/// The category that best explains a failure: a permanent one first, then AccessDenied, then
/// the rest (Transient when nothing was categorised).
fn worst(categories: &[ErrorCategory]) -> ErrorCategory {
    categories
        .iter()
        .copied()
        .max_by_key(|c| match c {
            ErrorCategory::Invalid | ErrorCategory::Quota | ErrorCategory::NotFound => 3,
            ErrorCategory::AccessDenied => 2,
            ErrorCategory::Conflict => 1,
            ErrorCategory::Transient => 0,
        })
        .unwrap_or(ErrorCategory::Transient)
}

/// Steady-state verification; `None` means "run a full converge" (something is missing).
async fn verify(
    q: &Quarantine,
    ctx: &Shared,
    document: &str,
    status: &QuarantineStatus,
    now: Timestamp,
) -> Result<Option<IamOutcome>, Error> {
    let mut targets = status.targets.clone();
    let desired = desired::desired(q, document);
    let mut calls = 0u64;
    for (t, d) in targets.iter_mut().zip(desired.targets.iter()) {
        let Some(attachment) = &t.attachment else {
            return Ok(None);
        };
        let attachment = plan::Attachment {
            kind: match attachment.kind {
                AttachmentKind::Managed => plan::AttachmentKind::Managed,
                AttachmentKind::Inline => plan::AttachmentKind::Inline,
            },
            name: attachment.name.clone(),
        };
        let account = match PrincipalArn::parse(&t.arn) {
            Ok(parsed) => parsed.account_id().to_string(),
            Err(e) => {
                return Ok(Some(IamOutcome {
                    event: Some(Event::EnforcementFailed {
                        reason: e.to_string(),
                        retryable: false,
                    }),
                    failure: Some((ErrorCategory::Invalid, e.to_string())),
                    targets: None,
                    drift: Vec::new(),
                    extra_effects: Vec::new(),
                }));
            }
        };
        let iam = match ctx.clients.iam_for(&account).await {
            Ok(iam) => iam,
            Err(e) => {
                return Ok(Some(IamOutcome {
                    event: Some(Event::EnforcementFailed {
                        reason: e.to_string(),
                        retryable: retryable(e.category()),
                    }),
                    failure: Some((e.category(), e.to_string())),
                    targets: None,
                    drift: Vec::new(),
                    extra_effects: Vec::new(),
                }));
            }
        };
        let v = ctx
            .engine
            .verify_target_as(&cluster_of(q, ctx), iam.as_ref(), d, &attachment, document)
            .await
            .map_err(Error::Aborted)?;
        calls += v.calls.sent();
        for (op, n) in &v.calls.by_operation {
            ctx.metrics
                .iam_calls
                .with_label_values(&[op.to_string().as_str(), "sent"])
                .inc_by(*n);
        }
        match v.outcome {
            Verified::Present => {
                let stale = t.last_verified_at.as_ref().is_none_or(|at| {
                    now.duration_since(at.0)
                        >= SignedDuration::try_from(ctx.settings.full_converge_period)
                            .unwrap_or(SignedDuration::from_mins(5))
                });
                if stale {
                    t.last_verified_at = Some(Time(now));
                }
            }
            Verified::AwaitingConfirmation => {}
            Verified::Missing => return Ok(None),
            Verified::Error(category, message) => {
                return Ok(Some(IamOutcome {
                    event: Some(Event::EnforcementFailed {
                        reason: format!("verifying {}: {message}", t.arn),
                        retryable: retryable(category),
                    }),
                    failure: Some((category, format!("verifying {}: {message}", t.arn))),
                    targets: None,
                    drift: Vec::new(),
                    extra_effects: Vec::new(),
                }));
            }
        }
    }
    tracing::debug!(quarantine = %object_key(q), calls, "verified");
    Ok(Some(IamOutcome {
        event: Some(Event::EnforcementSucceeded),
        failure: None,
        targets: Some(targets),
        drift: Vec::new(),
        extra_effects: Vec::new(),
    }))
}

/// Publishes the Events among `effects` (a person's actions name the actor).
async fn publish_effects(q: &Quarantine, ctx: &Shared, effects: &[Effect], source: &str) {
    for effect in effects {
        if let Effect::PublishEvent {
            event_type,
            reason,
            actor,
            message,
        } = effect
        {
            let note = if actor == CONTROLLER_ACTOR {
                message.clone()
            } else {
                format!("{message} (by {actor})")
            };
            ctx.publish(q, *event_type == EventType::Warning, reason, source, note)
                .await;
        }
    }
}

/// Releases a deleting quarantine that has no recorded state: the first reconcile may have
/// enforced before its first status write failed. The engine finds this quarantine's objects by
/// their names, tags and inline marker (and its own recent writes); the finalizer stays until
/// that release is clean (decision 091).
async fn release_unrecorded(q: &Quarantine, ctx: &Shared) -> Result<Action, Error> {
    let outcome = release(q, ctx).await?;
    publish_effects(q, ctx, &outcome.extra_effects, "Release").await;
    match outcome.failure {
        None => Ok(Action::await_change()),
        Some((_, reason)) => {
            ctx.publish(
                q,
                true,
                lifecycle::REASON_RELEASE_FAILED,
                "Release",
                reason.clone(),
            )
            .await;
            Err(Error::Release(format!(
                "{} (deleted before its first status write): {reason}",
                object_key(q)
            )))
        }
    }
}

/// Removes the deny from every target the quarantine ever had; never blocked by mode or kill switch.
async fn release(q: &Quarantine, ctx: &Shared) -> Result<IamOutcome, Error> {
    let key = desired::key(q);
    let input = ConvergeInput {
        desired: Vec::new(),
        known_principals: desired::known_principals(q),
        accounts: desired::accounts(q),
        // Release writes pass the kill-switch gate; never the dry-run gate (nothing to release
        // for a dry-run, and a release must never be suppressed).
        gate: if ctx.settings.kill_switch {
            WriteGate::KillSwitch
        } else {
            WriteGate::Enforce
        },
        scope: Scope::only(key.clone()),
    };
    let cluster = cluster_of(q, ctx);
    let report = {
        let _shared = ctx.iam_lock.read().await;
        ctx.engine
            .converge_as(&cluster, ctx.clients.as_ref(), &input)
            .await
            .map_err(Error::Aborted)?
    };
    count_calls(ctx, &report);
    let uid = q.uid().unwrap_or_default();
    ctx.full_converge
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&uid);
    let now = Timestamp::now();
    if report.errors.is_empty() {
        let mut extra = Vec::new();
        if !report.group_detachments.is_empty() {
            extra.push(Effect::PublishEvent {
                event_type: EventType::Warning,
                reason: REASON_DETACHED_FROM_GROUP,
                actor: CONTROLLER_ACTOR.into(),
                message: format!(
                    "our deny was attached to IAM groups by someone else; detached: {}",
                    report.group_detachments.join("; ")
                ),
            });
        }
        if !report.refused_releases.is_empty() {
            extra.push(Effect::PublishEvent {
                event_type: EventType::Warning,
                reason: lifecycle::REASON_RELEASE_FAILED,
                actor: CONTROLLER_ACTOR.into(),
                message: format!(
                    "left in place on protected principals (never touched): {}; remove by hand",
                    report.refused_releases.join(", ")
                ),
            });
        }
        let targets = q
            .status
            .iter()
            .flat_map(|s| s.targets.iter())
            .map(|t| TargetStatus {
                arn: t.arn.clone(),
                attachment: t.attachment.clone(),
                state: if t.state == TargetState::Planned {
                    TargetState::Planned
                } else {
                    TargetState::Detached
                },
                last_error: None,
                last_verified_at: Some(Time(now)),
            })
            .collect();
        Ok(IamOutcome {
            event: Some(Event::ReleaseSucceeded),
            failure: None,
            targets: Some(targets),
            drift: Vec::new(),
            extra_effects: extra,
        })
    } else {
        let reason = report
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.message, e.category))
            .collect::<Vec<_>>()
            .join("; ");
        let category = worst(&report.errors.iter().map(|e| e.category).collect::<Vec<_>>());
        Ok(IamOutcome {
            event: Some(Event::ReleaseFailed {
                reason: super::truncate(&reason, 900),
            }),
            failure: Some((category, super::truncate(&reason, 900))),
            targets: None,
            drift: Vec::new(),
            extra_effects: Vec::new(),
        })
    }
}

/// Release writes pass the kill switch; a release is never suppressed by dry-run.
fn release_gate(ctx: &Shared) -> WriteGate {
    if ctx.settings.kill_switch {
        WriteGate::KillSwitch
    } else {
        WriteGate::Enforce
    }
}

/// The enforcement outcome with the permissions boundary's (decision 240): a boundary failure
/// fails the enforcement (retried when retryable); a freshly recorded previous boundary brings
/// the reconcile back at once to put ours on. `deny` is `None` when the quarantine does not
/// attach the deny (boundary only): then the boundary decides alone.
fn with_boundary_enforce(
    deny: Option<IamOutcome>,
    b: &super::boundary::BoundaryOutcome,
    gate: WriteGate,
) -> IamOutcome {
    let mut extra = Vec::new();
    if b.recorded {
        extra.push(Effect::RequeueAt(
            Timestamp::now() + SignedDuration::from_millis(100),
        ));
    }
    let mut out = match deny {
        Some(d) => d,
        None => IamOutcome {
            event: if b.done {
                Some(Event::EnforcementSucceeded)
            } else {
                None
            },
            failure: None,
            targets: Some(b.targets.clone()),
            drift: Vec::new(),
            extra_effects: Vec::new(),
        },
    };
    out.drift.extend(b.drift.iter().cloned());
    out.extra_effects.extend(extra);
    if let Some((category, message)) = &b.failure {
        let (reason, retryable, worst_category) = match (&out.event, &out.failure) {
            (Some(Event::EnforcementFailed { reason, retryable }), Some((c, _))) => (
                format!("{reason}; {message}"),
                *retryable && b.retryable,
                worst(&[*c, *category]),
            ),
            _ => (message.clone(), b.retryable, *category),
        };
        let reason = super::truncate(&reason, 900);
        out.event = Some(Event::EnforcementFailed {
            reason: reason.clone(),
            retryable,
        });
        out.failure = Some((worst_category, reason));
    } else if gate != WriteGate::Enforce && !b.done && !b.recorded && out.failure.is_none() {
        out.extra_effects.push(Effect::PublishEvent {
            event_type: EventType::Warning,
            reason: lifecycle::REASON_KILL_SWITCH_DRY_RUN,
            actor: CONTROLLER_ACTOR.into(),
            message:
                "writes are gated (kill switch engaged); the permissions boundary is not put on"
                    .into(),
        });
    }
    out
}

/// The release outcome with the permissions boundary's: the release succeeds only when every
/// recorded boundary is restored (or left as someone else set it, with a Warning Event) and our
/// boundary policy is gone.
fn with_boundary_release(deny: IamOutcome, b: &super::boundary::BoundaryOutcome) -> IamOutcome {
    let mut out = deny;
    for message in &b.left_changed {
        out.extra_effects.push(Effect::PublishEvent {
            event_type: EventType::Warning,
            reason: REASON_BOUNDARY_CHANGED,
            actor: CONTROLLER_ACTOR.into(),
            message: message.clone(),
        });
    }
    if !b.done {
        let message = b
            .failure
            .as_ref()
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| "permissions boundary: not restored yet".to_string());
        let category = b
            .failure
            .as_ref()
            .map(|(c, _)| *c)
            .unwrap_or(ErrorCategory::Transient);
        let (reason, category) = match (&out.event, &out.failure) {
            (Some(Event::ReleaseFailed { reason }), Some((c, _))) => {
                (format!("{reason}; {message}"), worst(&[*c, category]))
            }
            _ => (message, category),
        };
        let reason = super::truncate(&reason, 900);
        out.event = Some(Event::ReleaseFailed {
            reason: reason.clone(),
        });
        out.failure = Some((category, reason));
        out.targets = None;
    }
    out
}
