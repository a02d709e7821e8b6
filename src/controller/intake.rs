//! Signal intake: evaluates a normalised `CostSignal` against every cached policy with the pure
//! core and creates the Quarantines it calls for by server-side apply (deterministic names, so a
//! repeated signal is a no-op). It returns only once each Quarantine exists. It must not touch
//! AWS and must not parse payloads.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use super::{FIELD_MANAGER, Stores};
use crate::crd::{GuardrailPolicy, LastSignal, Quarantine};
use crate::intake::{IntakeError, IntakeReport, PolicyOutcome, SignalIntake};
use crate::metrics::Metrics;
use crate::policy::{self, ControllerSettings, Input};
use crate::signal::CostSignal;

/// How many times a policy's `lastSignal` write is retried on a conflict.
const STATUS_RETRIES: usize = 3;

/// The real intake: policies and quarantines from the controllers' caches, writes through the API.
#[derive(Clone)]
pub struct Intake {
    client: Client,
    stores: Stores,
    settings: ControllerSettings,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

impl Intake {
    /// An intake over the controllers' caches.
    pub fn new(
        client: Client,
        stores: Stores,
        protected_principals: &[String],
        kill_switch: bool,
        metrics: Arc<Metrics>,
    ) -> Intake {
        Intake {
            client,
            stores,
            settings: ControllerSettings {
                protected_principals: protected_principals.iter().cloned().collect(),
                kill_switch,
            },
            metrics,
        }
    }

    /// Builds the intake from a running controller.
    pub fn from_running(running: &super::Running) -> Intake {
        let s = &running.shared.settings;
        Intake::new(
            running.shared.client.clone(),
            running.stores.clone(),
            &s.protected_principals,
            s.kill_switch,
            running.shared.metrics.clone(),
        )
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
                kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                    IntakeError::Invalid(format!(
                        "Quarantine {ns}/{name} rejected by the API server: {}",
                        s.message
                    ))
                }
                other => transient(&other),
            })?;
        Ok(true)
    }

    async fn record_last_signal(&self, policy: &GuardrailPolicy, last: LastSignal, now: Timestamp) {
        let ns = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        let api: Api<GuardrailPolicy> = Api::namespaced(self.client.clone(), &ns);
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
                    Ok(Some(p)) => rv = p.meta().resource_version.clone(),
                    _ => return,
                },
                Err(e) => {
                    tracing::warn!(policy = %format!("{ns}/{name}"), error = %e, "failed to record lastSignal");
                    return;
                }
            }
        }
    }
}

fn transient(e: &kube::Error) -> IntakeError {
    IntakeError::Transient(format!("Kubernetes API: {e}"))
}

#[async_trait]
impl SignalIntake for Intake {
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError> {
        signal
            .validate()
            .map_err(|e| IntakeError::Invalid(e.to_string()))?;
        if !self.stores.is_ready() {
            return Err(IntakeError::Unavailable(
                "the controller's caches are not synced yet".into(),
            ));
        }
        let now = Timestamp::now();
        let policies = self.stores.policies();
        let all_quarantines = self.stores.quarantines();
        let mut report = IntakeReport::default();
        let mut first_error = None;
        for policy in &policies {
            if policy.meta().deletion_timestamp.is_some() {
                continue;
            }
            let ns = policy.namespace().unwrap_or_default();
            let policy_name = policy.name_any();
            // Cheap pass without existing quarantines: most policies stop at source/account.
            let probe = policy::evaluate(Input {
                policy,
                signal,
                existing: &[],
                settings: &self.settings,
                now,
            });
            let decision = if probe.quarantine.is_some() {
                let existing: Vec<Quarantine> = all_quarantines
                    .iter()
                    .filter(|q| {
                        q.spec.policy_ref.name == policy_name
                            && q.metadata.namespace.as_deref() == Some(ns.as_str())
                    })
                    .map(|q| (**q).clone())
                    .collect();
                policy::evaluate(Input {
                    policy,
                    signal,
                    existing: &existing,
                    settings: &self.settings,
                    now,
                })
            } else {
                probe
            };
            let relevant = !matches!(
                decision.reason,
                policy::SOURCE_NOT_MATCHED | policy::ACCOUNT_NOT_MATCHED
            );
            let mut outcome = PolicyOutcome {
                namespace: ns.clone(),
                policy: policy_name.clone(),
                reason: decision.reason.to_string(),
                quarantine: None,
                created: false,
            };
            if let Some(q) = &decision.quarantine {
                match self.create(q).await {
                    Ok(created) => {
                        outcome.quarantine = Some(q.name_any());
                        outcome.created = created;
                        if !created {
                            outcome.reason = policy::ALREADY_QUARANTINED.to_string();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(policy = %format!("{ns}/{policy_name}"), error = %e, "creating the quarantine failed");
                        first_error.get_or_insert(e);
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
            if relevant {
                let last = LastSignal {
                    source: signal.source,
                    id: signal.id.clone(),
                    reason: outcome.reason.clone(),
                    quarantine: outcome.quarantine.clone(),
                };
                self.record_last_signal(policy, last, now).await;
            }
            report.outcomes.push(outcome);
        }
        if let Some(e) = first_error {
            // Some Quarantines may exist already; a retry is idempotent and completes the rest.
            return Err(e);
        }
        Ok(report)
    }
}
