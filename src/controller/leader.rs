//! Leader election on a `coordination.k8s.io/v1` Lease (decision 070): acquire, renew, step down
//! when renewal fails for `renew_deadline`, release on shutdown; publishes leadership on a
//! `watch` channel and the `autoguardrails_leader` gauge. It must not start or stop enforcement
//! itself — whoever holds the receiver enforces only while it reads `true`.

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Default lease name (`--lease-name`).
pub const DEFAULT_LEASE_NAME: &str = "autoguardrails";
/// Default lease duration: a standby may take over this long after it last saw the lease change.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default renew deadline: a leader that could not renew for this long stops leading.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default retry period: how often a leader renews and a standby tries to acquire.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// The lease duration written when releasing, so any reader sees an expired lease.
const RELEASED_LEASE_DURATION_SECONDS: i32 = 1;

/// Why leader election could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The settings break `lease_duration > renew_deadline > retry_period > 0`.
    #[error("invalid lease settings: {0}")]
    InvalidSettings(String),
    /// A call to the Lease API failed.
    #[error("failed to {operation} lease {namespace}/{name}: {source}")]
    Kubernetes {
        /// `get`, `create`, `update`.
        operation: &'static str,
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A call did not answer in time.
    #[error("lease {namespace}/{name}: no answer within {seconds:.1}s")]
    Timeout {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// How long we waited.
        seconds: f64,
    },
}

impl LeaderError {
    /// The category used for metric labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::InvalidSettings(_) => "InvalidSettings",
            LeaderError::Kubernetes { .. } => "Kubernetes",
            LeaderError::Timeout { .. } => "Timeout",
        }
    }
}

/// Where the lease lives and how it is timed (the client-go meaning of each duration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Lease name (`--lease-name`).
    pub name: String,
    /// Lease namespace (`--lease-namespace`, default: the pod's namespace).
    pub namespace: String,
    /// This replica's identity (the pod name), written as `holderIdentity`.
    pub identity: String,
    /// How long a standby waits after the lease last changed before taking it over.
    pub lease_duration: Duration,
    /// How long a leader keeps leading while renewals fail; less than `lease_duration`.
    pub renew_deadline: Duration,
    /// Renew / acquire attempt period; less than `renew_deadline`.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Settings with the default durations (15 s / 10 s / 2 s, as client-go).
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> LeaseSettings {
        LeaseSettings {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// Checks `lease_duration > renew_deadline > retry_period > 0` and non-empty names.
    pub fn validate(&self) -> Result<(), LeaderError> {
        if self.name.is_empty() || self.namespace.is_empty() || self.identity.is_empty() {
            return Err(LeaderError::InvalidSettings(
                "lease name, namespace and identity must not be empty".to_string(),
            ));
        }
        if self.retry_period.is_zero() {
            return Err(LeaderError::InvalidSettings(
                "retry period must be more than 0".to_string(),
            ));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(LeaderError::InvalidSettings(format!(
                "renew deadline ({:?}) must be more than the retry period ({:?})",
                self.renew_deadline, self.retry_period
            )));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(LeaderError::InvalidSettings(format!(
                "lease duration ({:?}) must be more than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            )));
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err()
            || self.lease_duration.as_secs() < 1
        {
            return Err(LeaderError::InvalidSettings(
                "lease duration must be at least 1s".to_string(),
            ));
        }
        Ok(())
    }
}

/// The identity for this replica: `$POD_NAME`, else `$HOSTNAME`, else `autoguardrails-<pid>`.
pub fn default_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|variable| std::env::var(variable).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| format!("autoguardrails-{}", std::process::id()))
}

/// The namespace this pod runs in: `$POD_NAMESPACE`, else the service account's namespace file,
/// else `default`.
pub fn default_namespace() -> String {
    if let Ok(namespace) = std::env::var("POD_NAMESPACE")
        && !namespace.is_empty()
    {
        return namespace;
    }
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// The lease record as last seen, and when (local monotonic clock, so clock skew between
/// nodes cannot shorten anyone's lease).
#[derive(Clone, Debug)]
struct Observation {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration: Duration,
    seen_at: Instant,
}

/// Runs the election for one replica. Build with `new`, then `start`.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
    observed: Option<Observation>,
}

/// The running election: a leadership receiver and the task.
pub struct Leadership {
    receiver: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// A receiver that reads `true` while this replica leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }

    /// True while this replica leads.
    pub fn is_leader(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Waits until the election task has ended (after shutdown: leadership published as false
    /// and the lease released, or the release attempt timed out).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "leader election task failed");
        }
    }

    /// Stops renewing at once without releasing the lease — what a crash looks like. The lease
    /// stays held until it expires. For tests and for fatal paths that cannot reach the API.
    pub fn abandon(self) {
        self.task.abort();
    }
}

impl LeaderElector {
    /// An elector for `settings` (validated), using `client` for the Lease API.
    pub fn new(
        client: kube::Client,
        settings: LeaseSettings,
        metrics: Arc<Metrics>,
    ) -> Result<LeaderElector, LeaderError> {
        settings.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            metrics,
            observed: None,
        })
    }

    /// Spawns the election. Leadership starts `false`. When `shutdown` is triggered the task
    /// publishes `false` first and then releases the lease, so a standby takes over after one
    /// retry period instead of a full lease duration.
    pub fn start(self, shutdown: Shutdown) -> Leadership {
        let (sender, receiver) = watch::channel(false);
        self.metrics.leader.set(0);
        let task = tokio::spawn(self.run(sender, shutdown));
        Leadership { receiver, task }
    }

    async fn run(mut self, sender: watch::Sender<bool>, shutdown: Shutdown) {
        let mut leading = false;
        let mut last_renewed = Instant::now();
        loop {
            // A leader must hear back before its renew deadline; a standby gets the same budget.
            let deadline = if leading {
                last_renewed + self.settings.renew_deadline
            } else {
                Instant::now() + self.settings.renew_deadline
            };
            let attempt = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                result = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => result,
            };
            match attempt {
                Ok(Ok(true)) => {
                    last_renewed = Instant::now();
                    if !leading {
                        leading = true;
                        tracing::info!(
                            identity = %self.settings.identity,
                            lease = %self.settings.name,
                            "acquired the leader lease: this replica enforces"
                        );
                        self.publish(&sender, true);
                    }
                }
                Ok(Ok(false)) => {
                    if leading {
                        leading = false;
                        tracing::warn!(
                            identity = %self.settings.identity,
                            holder = ?self.observed.as_ref().and_then(|o| o.holder.clone()),
                            "lost the leader lease: standing by"
                        );
                        self.publish(&sender, false);
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, category = error.category(), "leader election attempt failed");
                }
                Err(_) => {
                    tracing::warn!(
                        lease = %self.settings.name,
                        "leader election attempt did not finish before the deadline"
                    );
                }
            }
            if leading && Instant::now() >= last_renewed + self.settings.renew_deadline {
                leading = false;
                tracing::error!(
                    identity = %self.settings.identity,
                    renew_deadline = ?self.settings.renew_deadline,
                    "could not renew the leader lease before the renew deadline: stepping down"
                );
                self.publish(&sender, false);
            }
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
        // Shutdown: stop enforcing first, then free the lease for a standby.
        if leading {
            self.publish(&sender, false);
        }
        let budget = self.settings.renew_deadline;
        match tokio::time::timeout(budget, self.release()).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %self.settings.name, "released the leader lease")
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "failed to release the leader lease; it expires on its own")
            }
            Err(_) => tracing::warn!("releasing the leader lease timed out; it expires on its own"),
        }
    }

    fn publish(&self, sender: &watch::Sender<bool>, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
        sender.send_replace(leading);
    }

    fn kube_error(&self, operation: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Kubernetes {
            operation,
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source: Box::new(source),
        }
    }

    fn lease_duration_seconds(&self) -> i32 {
        // `validate` guarantees it fits.
        i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Records what the lease says; the observation time moves only when the record changed.
    fn observe(&mut self, spec: &LeaseSpec) {
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = spec
            .lease_duration_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.settings.lease_duration);
        let unchanged = self.observed.as_ref().is_some_and(|o| {
            o.holder == holder
                && o.renew_time == spec.renew_time
                && o.transitions == spec.lease_transitions
        });
        if unchanged {
            return;
        }
        self.observed = Some(Observation {
            holder,
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
            duration,
            seen_at: Instant::now(),
        });
    }

    /// One attempt: `Ok(true)` when we hold the lease afterwards, `Ok(false)` when someone else
    /// does (or won a race: 409). Writes carry the resourceVersion read, so two replicas can
    /// never both succeed from the same state.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = MicroTime(jiff::Timestamp::now());
        let existing = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|source| self.kube_error("get", source))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(self.lease_duration_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created.spec.unwrap_or_default());
                    Ok(true)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(source) => Err(self.kube_error("create", source)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.observe(&spec);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let held_by_us = holder.as_deref() == Some(self.settings.identity.as_str());
        if holder.is_some() && !held_by_us {
            let still_valid = self
                .observed
                .as_ref()
                .is_some_and(|o| Instant::now() < o.seen_at + o.duration);
            if still_valid {
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds()),
            acquire_time: if held_by_us {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if held_by_us {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..spec
        });
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated.spec.unwrap_or_default());
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(self.kube_error("update", source)),
        }
    }

    /// Gives the lease up if we hold it: empty holder, 1 s duration. `Ok(true)` when released.
    async fn release(&mut self) -> Result<bool, LeaderError> {
        let existing = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|source| self.kube_error("get", source))?;
        let Some(mut lease) = existing else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(false);
        }
        let now = MicroTime(jiff::Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(RELEASED_LEASE_DURATION_SECONDS),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        });
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone wrote the lease since we read it, so it is no longer ours to release.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(self.kube_error("update", source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_order_durations() {
        let mut settings = LeaseSettings::new("l", "ns", "me");
        assert!(settings.validate().is_ok());
        settings.renew_deadline = settings.lease_duration;
        assert_eq!(
            settings.validate().map_err(|e| e.category()),
            Err("InvalidSettings")
        );
        let mut settings = LeaseSettings::new("l", "ns", "me");
        settings.retry_period = settings.renew_deadline;
        assert!(settings.validate().is_err());
        let mut settings = LeaseSettings::new("l", "ns", "me");
        settings.retry_period = Duration::ZERO;
        assert!(settings.validate().is_err());
        assert!(LeaseSettings::new("", "ns", "me").validate().is_err());
    }
}
