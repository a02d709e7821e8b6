//! Signal intake: evaluates a normalised `CostSignal` against every cached policy with the pure
//! core and creates the Quarantines it calls for by server-side apply (deterministic names, so a
//! repeated signal is a no-op). It returns only once each Quarantine exists. It must not touch
//! AWS and must not parse payloads.

use crate::principal::PrincipalSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::controller::clock::EvaluationClock;
use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use super::{FIELD_MANAGER, Stores, object_key};
use crate::audit::AuditRecord;
use crate::controller::audit::controller_outbox::ControllerOutbox;
use crate::controller::crd::{GuardrailPolicy, LastSignal, Quarantine};
use crate::controller::intake::{IntakeError, IntakeReport, PolicyOutcome, SignalIntake};
use crate::controller::notify::only::{Announce, Announcement};
use crate::controller::policy::{self, ControllerSettings, Input};
use crate::controller::signal::CostSignal;

/// How many times a policy's `lastSignal` write is retried on a conflict.
const STATUS_RETRIES: usize = 3;

/// How many policies' `lastSignal` writes the recorder has in flight at once.
const STATUS_WRITERS: usize = 8;

/// How long the recorder waits at most for enforcement work to pause before each batch of
/// `lastSignal` writes (decision 253).
const RECORDER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The real intake: policies and quarantines from the controllers' caches, writes through the API.
///
/// Only the Quarantines are written on the signal's path. Each policy's `lastSignal` is handed
/// to a recorder task that keeps the newest record per policy and writes it afterwards, once no
/// signal or Quarantine reconcile is running (bounded; decision 253), so a burst of signals
/// neither waits for nor contends on policy status writes (decision 081). Must be created inside
/// a Tokio runtime.
#[derive(Clone)]
pub struct Intake {
    client: Client,
    stores: Stores,
    settings: ControllerSettings,
    recorder: Arc<Recorder>,
    created: CreatedNotCached,
    clock: EvaluationClock,
    /// Where `notifyOnly` matches are announced (decision 241); `None`: counted and logged only.
    announce: Option<Arc<dyn Announce>>,
    /// When this replica last announced a match of each `notifyOnly` policy (by uid), so the
    /// cooldown holds before `status.lastNotifiedAt` is written and cached.
    notified: Arc<Mutex<HashMap<String, Timestamp>>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    audit: Option<Arc<ControllerOutbox>>,
}

/// How long a signal's answer waits for its audit records to be in the outbox.
pub const AUDIT_WRITE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Event of the audit record for a signal no policy watches (decision 225).
pub const AUDIT_SIGNAL_UNMATCHED: &str = "SignalUnmatched";
/// Event of the audit record for a policy that watches a signal and decided not to act on it.
pub const AUDIT_SIGNAL_NOT_ACTED_ON: &str = "SignalNotActedOn";
/// Event of the audit record for a signal refused as unusable.
pub const AUDIT_SIGNAL_REJECTED: &str = "SignalRejected";

/// How long a Quarantine this intake created is remembered while the cache may not have it.
const CREATED_MEMORY: std::time::Duration = std::time::Duration::from_secs(300);

/// Quarantines this intake created that the cache may not show yet, with when they were
/// created. The lock also serialises evaluate → create for matching signals, so two different
/// signals for the same targets arriving within one cache round-trip make one Quarantine, not
/// two (decision 097).
type CreatedNotCached = Arc<tokio::sync::Mutex<Vec<(Quarantine, std::time::Instant)>>>;

/// The newest `lastSignal` per policy not yet written, by (namespace, name).
type PendingRecords = Arc<Mutex<HashMap<(String, String), (LastSignal, Timestamp)>>>;

/// Hands records to the task writing them. The task outlives the last `Intake` clone just long
/// enough to write what is pending.
struct Recorder {
    pending: PendingRecords,
    wake: mpsc::Sender<()>,
}

impl Recorder {
    fn record(&self, namespace: String, name: String, last: LastSignal, now: Timestamp) {
        match self.pending.lock() {
            Ok(mut pending) => {
                // Concurrent intakes may record out of order: the newest evaluation wins.
                let key = (namespace, name);
                if pending.get(&key).is_none_or(|(_, at)| *at <= now) {
                    pending.insert(key, (last, now));
                }
            }
            Err(_) => return,
        }
        // A full channel means a wake-up is already queued; the task takes everything pending.
        let _ = self.wake.try_send(());
    }
}

impl Intake {
    /// An intake over the controllers' caches.
    pub fn new(
        client: Client,
        stores: Stores,
        protected_principals: &PrincipalSet,
        kill_switch: bool,
    ) -> Intake {
        let (wake, woken) = mpsc::channel(1);
        let pending = PendingRecords::default();
        tokio::spawn(record_last_signals(
            client.clone(),
            stores.clone(),
            pending.clone(),
            woken,
        ));
        let recorder = Arc::new(Recorder { pending, wake });
        Intake {
            client,
            stores,
            settings: ControllerSettings {
                protected_principals: protected_principals.clone(),
                kill_switch,
            },
            recorder,
            created: CreatedNotCached::default(),
            clock: EvaluationClock::System,
            announce: None,
            notified: Arc::default(),
            metrics: None,
            audit: None,
        }
    }

    /// The same intake, announcing `notifyOnly` matches through `announce` and counting them in
    /// `metrics` (decision 241).
    pub fn with_announcements(
        mut self,
        announce: Arc<dyn Announce>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Intake {
        self.announce = Some(announce);
        self.metrics = Some(metrics);
        self
    }

    /// A `notifyOnly` match: announced unless within the policy's cooldown of the last one
    /// (status or this replica's memory). Never creates a Quarantine; never touches AWS.
    fn notify_only(
        &self,
        policy: &Arc<GuardrailPolicy>,
        signal: &CostSignal,
        decision: &policy::Decision,
        now: Timestamp,
    ) -> &'static str {
        let key = format!(
            "{}/{}",
            policy.namespace().unwrap_or_default(),
            policy.name_any()
        );
        let uid = policy.uid().unwrap_or_default();
        let count = |outcome: &str| {
            if let Some(m) = &self.metrics {
                m.notify_only
                    .with_label_values(&[key.as_str(), outcome])
                    .inc();
            }
        };
        let Ok(mut notified) = self.notified.lock() else {
            return policy::NOTIFY_COOLING_DOWN;
        };
        let from_status = policy
            .status
            .as_ref()
            .and_then(|s| s.last_notified_at.as_ref())
            .map(|t| t.0);
        let last = match (from_status, notified.get(&uid).copied()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(why) = policy::notify_cooldown(policy, last, now) {
            tracing::info!(policy = %key, signal = %signal.id, why, "notifyOnly match within the cooldown; not announced again");
            count("cooling_down");
            return policy::NOTIFY_COOLING_DOWN;
        }
        notified.insert(uid, now);
        drop(notified);
        let targets = decision
            .quarantine
            .as_ref()
            .map(|q| q.spec.targets.iter().map(|t| t.arn.clone()).collect())
            .unwrap_or_default();
        let queued = self.announce.as_ref().is_some_and(|a| {
            a.announce(Announcement {
                policy: policy.clone(),
                signal: signal.clone(),
                message: decision.message.clone(),
                targets,
                at: now,
            })
        });
        if !queued {
            tracing::warn!(policy = %key, signal = %signal.id, "notifyOnly match not announced: no announcer or its queue is full");
            count("dropped");
        }
        policy::NOTIFIED
    }

    /// The same intake, evaluating policies at the instants `clock` gives (decision 203).
    pub fn with_clock(mut self, clock: EvaluationClock) -> Intake {
        self.clock = clock;
        self
    }

    /// The same intake, recording the signals it does not act on in the controller's audit
    /// outbox (decision 225).
    pub fn with_audit(mut self, audit: Option<Arc<ControllerOutbox>>) -> Intake {
        self.audit = audit;
        self
    }

    /// Builds the intake from a running controller.
    pub fn from_running(running: &super::Running) -> Intake {
        let s = &running.shared.settings;
        Intake::new(
            running.shared.client.clone(),
            running.stores.clone(),
            &s.protected_principals,
            s.kill_switch,
        )
        .with_audit(s.audit.controller.clone())
    }

    /// Keeps one record about `signal` for the audit outbox, when there is one.
    fn audit(
        &self,
        records: &mut Vec<AuditRecord>,
        signal: &CostSignal,
        event: &str,
        policy: Option<String>,
        message: String,
    ) {
        let Some(outbox) = &self.audit else {
            return;
        };
        let mut record = crate::controller::audit::controller_outbox::record(
            outbox.cluster(),
            event,
            crate::controller::audit::controller_outbox::controller_actor(),
            message,
        );
        record.policy = policy;
        record.signal = Some(crate::controller::audit::signal_summary(signal));
        record.principals = signal.principal.iter().cloned().collect();
        records.push(record);
    }

    async fn create(&self, q: &Quarantine) -> Result<bool, IntakeError> {
        let ns = q.namespace().unwrap_or_default();
        let name = q.name_any();
        if self.stores.quarantine(&ns, &name).is_some() {
            return Ok(false);
        }
        let api: Api<Quarantine> = Api::namespaced(self.client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(Some(_)) => return Ok(false),
            Ok(None) => {}
            Err(e) => return Err(transient(&e)),
        }
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(q))
            .await
            .map_err(|e| match e {
                // The Quarantine is ours, built from a validated and normalised signal: a refusal
                // is a controller or CRD mismatch, not the sender's fault. Keep the signal with
                // the sender (retryable answer) rather than acknowledge and drop it (decision 094).
                kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                    IntakeError::Transient(format!(
                        "Quarantine {ns}/{name} refused by the API server (a controller/CRD mismatch; the signal is kept for a retry): {}",
                        s.message
                    ))
                }
                other => transient(&other),
            })?;
        Ok(true)
    }
}

/// Writes the recorded `lastSignal`s until every `Intake` clone is gone (then once more): whatever
/// is pending when woken, newest record per policy, a few policies at a time.
async fn record_last_signals(
    client: Client,
    stores: Stores,
    pending: PendingRecords,
    mut woken: mpsc::Receiver<()>,
) {
    loop {
        let open = woken.recv().await.is_some();
        // The signal's own enforcement goes first (decision 253): before each batch the writes
        // wait, bounded, for no signal or Quarantine reconcile to be running; once a wait runs
        // out the controller is busy and the rest goes on without waiting.
        let mut patience = stores.in_flight().patience(RECORDER_PATIENCE);
        patience.wait().await;
        let records: Vec<_> = pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
            .into_iter()
            .collect();
        for (i, chunk) in records.chunks(STATUS_WRITERS).enumerate() {
            if i > 0 {
                patience.wait().await;
            }
            futures::future::join_all(chunk.iter().map(|((ns, name), (last, at))| {
                let client = client.clone();
                let stores = stores.clone();
                async move {
                    // A policy deleted (or being deleted) since has no status left to keep.
                    let Some(policy) = stores.policy(ns, name) else {
                        return;
                    };
                    if policy.meta().deletion_timestamp.is_some() {
                        return;
                    }
                    // Another replica may have recorded a newer signal already.
                    if recorded_after(&policy, *at) {
                        return;
                    }
                    write_last_signal(&client, &policy, last.clone(), *at).await;
                }
            }))
            .await;
        }
        if !open {
            return;
        }
    }
}

/// One policy's `lastSignal` and `lastEvaluatedAt`, guarded by resourceVersion (a conflict re-reads
/// the policy and tries again). A failure is logged: the record is informative, and the next
/// signal for the policy writes it again.
async fn write_last_signal(
    client: &Client,
    policy: &GuardrailPolicy,
    last: LastSignal,
    now: Timestamp,
) {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let api: Api<GuardrailPolicy> = Api::namespaced(client.clone(), &ns);
    let mut rv = policy.meta().resource_version.clone();
    for _ in 0..STATUS_RETRIES {
        let body = serde_json::json!({
            "metadata": { "resourceVersion": rv },
            "status": { "lastSignal": last, "lastEvaluatedAt": Time(now) },
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await {
                // Someone (another replica) recorded a later evaluation meanwhile: keep theirs.
                // Times are stored to the second, so only a later second is known to be newer.
                Ok(Some(p)) if recorded_after(&p, now) => return,
                Ok(Some(p)) => rv = p.meta().resource_version.clone(),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(policy = %format!("{ns}/{name}"), error = %e, "failed to record lastSignal");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(policy = %format!("{ns}/{name}"), error = %e, "failed to record lastSignal");
                return;
            }
        }
    }
    tracing::warn!(policy = %format!("{ns}/{name}"), "failed to record lastSignal: the policy kept changing");
}

/// True when the policy's status holds an evaluation from a later second than `at` (the API keeps
/// `lastEvaluatedAt` to the second).
fn recorded_after(policy: &GuardrailPolicy, at: Timestamp) -> bool {
    policy
        .status
        .as_ref()
        .and_then(|s| s.last_evaluated_at.as_ref())
        .is_some_and(|t| t.0.as_second() > at.as_second())
}

/// Of two errors, the one the sender must see so the signal is not lost: a retryable error
/// (`Transient`, `Unavailable`) wins over `Invalid`; otherwise the first is kept.
fn more_retryable(kept: IntakeError, new: IntakeError) -> IntakeError {
    match (&kept, &new) {
        (IntakeError::Invalid(_), IntakeError::Transient(_) | IntakeError::Unavailable(_)) => new,
        _ => kept,
    }
}

fn transient(e: &kube::Error) -> IntakeError {
    IntakeError::Transient(format!("Kubernetes API: {e}"))
}

#[async_trait]
impl SignalIntake for Intake {
    /// Evaluates `signal`; the audit records of what it did not act on are in the controller's
    /// outbox before the answer (at most [`AUDIT_WRITE_WITHIN`]; later they stay queued), so a
    /// sender told "accepted" never has its signal's records lost with the process (group
    /// commit: concurrent signals share one ConfigMap write).
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError> {
        let mut records = Vec::new();
        // Until the answer: the outbox write below is part of the signal's work (decision 253).
        let _working = self.stores.in_flight().start();
        let result = self.evaluate(signal, &mut records).await;
        if let Some(outbox) = &self.audit
            && !records.is_empty()
        {
            let count = records.len();
            if !outbox.append_and_wait(records, AUDIT_WRITE_WITHIN).await {
                tracing::warn!(
                    signal = %signal.id,
                    records = count,
                    "the signal's audit records are not in the outbox yet (queued, or dropped if the queue was full)"
                );
            }
        }
        result
    }
}

impl Intake {
    async fn evaluate(
        &self,
        signal: &CostSignal,
        records: &mut Vec<AuditRecord>,
    ) -> Result<IntakeReport, IntakeError> {
        if let Err(e) = signal.validate() {
            self.audit(
                records,
                signal,
                AUDIT_SIGNAL_REJECTED,
                None,
                format!("signal rejected: {e}"),
            );
            return Err(IntakeError::Invalid(e.to_string()));
        }
        if !self.stores.is_ready() {
            return Err(IntakeError::Unavailable(
                "the controller's caches are not synced yet".into(),
            ));
        }
        let now = self
            .clock
            .now()
            .map_err(|e| IntakeError::Unavailable(e.to_string()))?;
        let policies = self.stores.policies();
        let mut report = IntakeReport::default();
        let mut first_error = None;
        for policy in &policies {
            if policy.meta().deletion_timestamp.is_some() {
                continue;
            }
            // Most policies do not watch a given signal: they are counted, not listed (at 10,000
            // policies a listed outcome each was most of the decision's time; decision 147).
            if let Some(reason) = policy::unwatched(policy, signal) {
                tracing::debug!(policy = %object_key(policy.as_ref()), signal = %signal.id, reason, "signal evaluated");
                report.passed_over += 1;
                continue;
            }
            let ns = policy.namespace().unwrap_or_default();
            let policy_name = policy.name_any();
            let resolution = if policy.spec.scope.selectors.is_empty() {
                None
            } else {
                // The status the leader wrote stands in until this replica's own copy has it
                // (a standby follows the status every half second; decision 252).
                self.stores
                    .resolutions()
                    .get(&ns, &policy_name)
                    .or_else(|| crate::controller::resolver::from_policy_status(policy))
            };
            // Cheap pass without existing quarantines: most policies stop at source/account.
            let probe = policy::evaluate(Input {
                policy,
                signal,
                existing: &[],
                settings: &self.settings,
                now,
                resolution: resolution.as_ref(),
            });
            // Held from evaluation until the Quarantine exists, for matching signals only.
            let mut created_guard = None;
            let decision = if probe.quarantine.is_some() {
                let mut created = self.created.lock().await;
                let mut existing = self.stores.quarantines_of(&ns, &policy_name);
                // Forget what the cache shows now (or is old); add the rest of this policy's.
                created.retain(|(q, at)| {
                    at.elapsed() < CREATED_MEMORY
                        && self
                            .stores
                            .quarantine(&q.namespace().unwrap_or_default(), &q.name_any())
                            .is_none()
                });
                for (q, _) in created.iter() {
                    if q.spec.policy_ref.name == policy_name
                        && q.metadata.namespace.as_deref() == Some(ns.as_str())
                        && !existing.iter().any(|e| e.metadata.name == q.metadata.name)
                    {
                        existing.push(q.clone());
                    }
                }
                created_guard = Some(created);
                policy::evaluate(Input {
                    policy,
                    signal,
                    existing: &existing,
                    settings: &self.settings,
                    now,
                    resolution: resolution.as_ref(),
                })
            } else {
                probe
            };
            let relevant = policy::concerns(decision.reason);
            let mut outcome = PolicyOutcome {
                namespace: ns.clone(),
                policy: policy_name.clone(),
                reason: decision.reason.to_string(),
                quarantine: None,
                created: false,
            };
            if decision.quarantine.is_some() && policy::notifies_only(policy) {
                // notifyOnly: no Quarantine, no AWS write; announced (decision 241).
                drop(created_guard);
                outcome.reason = self.notify_only(policy, signal, &decision, now).to_string();
            } else if let Some(q) = &decision.quarantine {
                let result = self.create(q).await;
                if let (Ok(true), Some(guard)) = (&result, created_guard.as_mut()) {
                    guard.push((q.clone(), std::time::Instant::now()));
                }
                drop(created_guard);
                match result {
                    Ok(created) => {
                        outcome.quarantine = Some(q.name_any());
                        outcome.created = created;
                        if !created {
                            outcome.reason = policy::ALREADY_QUARANTINED.to_string();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(policy = %format!("{ns}/{policy_name}"), error = %e, "creating the quarantine failed");
                        first_error = Some(match first_error.take() {
                            Some(kept) => more_retryable(kept, e),
                            None => e,
                        });
                        continue;
                    }
                }
            } else if decision.reason == policy::ALREADY_QUARANTINED {
                outcome.quarantine = Some(policy::name::quarantine_name(&policy_name, &signal.id));
            }
            tracing::info!(
                policy = %format!("{ns}/{policy_name}"),
                signal = %signal.id,
                reason = decision.reason,
                message = %decision.message,
                quarantine = ?outcome.quarantine,
                created = outcome.created,
                "signal evaluated"
            );
            if outcome.quarantine.is_none() {
                self.audit(
                    records,
                    signal,
                    AUDIT_SIGNAL_NOT_ACTED_ON,
                    Some(policy_name.clone()),
                    format!(
                        "policy {ns}/{policy_name}: {}: {}",
                        decision.reason, decision.message
                    ),
                );
            }
            if relevant {
                let last = LastSignal {
                    source: signal.source,
                    id: signal.id.clone(),
                    reason: outcome.reason.clone(),
                    quarantine: outcome.quarantine.clone(),
                };
                self.recorder.record(ns, policy_name, last, now);
            }
            report.outcomes.push(outcome);
        }
        if let Some(e) = first_error {
            // Some Quarantines may exist already; a retry is idempotent and completes the rest.
            return Err(e);
        }
        if report.outcomes.is_empty() {
            self.audit(
                records,
                signal,
                AUDIT_SIGNAL_UNMATCHED,
                None,
                format!(
                    "no GuardrailPolicy watches this signal ({} policies passed over)",
                    report.passed_over
                ),
            );
        }
        Ok(report)
    }
}
