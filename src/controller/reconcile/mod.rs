//! The controllers: kube-runtime wiring of the pure core to Kubernetes and AWS. GuardrailPolicy
//! reconcile (`policy`), Quarantine reconcile through the lifecycle and the enforcement engine
//! (`quarantine`), signal intake (`intake`), and the orphan sweep (`sweep`). Decisions live in the
//! pure modules; this module gathers, applies and writes status. It must not parse payloads.

pub mod boundary;
pub mod cache;
pub mod desired;
pub mod ended;
pub mod finalizers;
pub mod in_flight;
pub mod index;
pub mod intake;
pub mod policy;
pub mod quarantine;
pub mod retire;
pub mod sweep;

use crate::principal::PrincipalSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::events::{EventRecorder, Occurrence, Severity};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{RwLock, watch};

use crate::aws::factory::ClientFactory;
use crate::controller::crd::{GuardrailPolicy, Quarantine};
use crate::controller::enforce::converge::Engine;
use crate::metrics::Metrics;

pub use finalizers::FINALIZER;
/// The field manager for server-side apply and patches.
pub const FIELD_MANAGER: &str = "autoguardrails";
/// The controller name reported on Events.
pub const REPORTER: &str = "autoguardrails-controller";

/// Settings every controller reads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// This cluster's id (written into IAM tags).
    pub cluster_id: String,
    /// Principals never quarantined nor touched (compared by IAM's rule).
    pub protected_principals: PrincipalSet,
    /// New enforcement becomes dry-run; release is never blocked.
    pub kill_switch: bool,
    /// How often an Active quarantine's attachments are re-verified (one read per target).
    pub drift_period: Duration,
    /// How often an Active quarantine gets a full converge (also repairs edited documents).
    pub full_converge_period: Duration,
    /// How often the orphan sweep runs.
    pub sweep_period: Duration,
    /// Accounts the sweep always scans (e.g. those with assume-role settings).
    pub accounts: Vec<String>,
    /// The longest error backoff.
    pub max_backoff: Duration,
    /// The audit store and its outbox settings (decision 222).
    pub audit: crate::controller::audit::AuditOutlet,
    /// How many reconciles of each controller run at once. Bounds the memory and the API server
    /// load of a cold start with many objects (every object is reconciled once).
    pub reconcile_concurrency: u16,
    /// How long after it ended a settled Quarantine is retired from the watch (and at least until
    /// its policy's cooldown has passed; decision 154). None: never.
    pub retire_after: Option<jiff::SignedDuration>,
    /// The key that verifies the approval webhook's identity stamps; None when the webhook is
    /// off (every approve, reject and extend is then recorded as unverified).
    pub approval_stamp_key: Option<crate::controller::admission::StampKey>,
    /// How Slack messages are posted (`notifications.postWith`): decides whether a policy's
    /// `notify.slack` needs a webhook or a channel (decision 238).
    pub slack_post_with: crate::controller::notify::worker::PostWith,
    /// The channel the bot posts to when a policy's `channelHint` names none.
    pub slack_channel: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            cluster_id: "default".into(),
            protected_principals: PrincipalSet::new(),
            kill_switch: false,
            drift_period: Duration::from_secs(20),
            full_converge_period: Duration::from_secs(300),
            sweep_period: Duration::from_secs(600),
            accounts: Vec::new(),
            max_backoff: Duration::from_secs(300),
            reconcile_concurrency: 16,
            retire_after: Some(jiff::SignedDuration::from_hours(1)),
            approval_stamp_key: None,
            audit: crate::controller::audit::AuditOutlet::default(),
            slack_post_with: crate::controller::notify::worker::PostWith::Webhook,
            slack_channel: None,
        }
    }
}

/// Why a reconcile did not finish. Each keeps its cause (`#[source]`); [`Error::category`] gives
/// the one [`ErrorCategory`] that labels `reconcile_errors_total` (decision 145).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed for a reason other than the reconcile's own error.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Release did not finish; retried with backoff.
    #[error("release not finished: {0}")]
    Release(String),
    /// The enforcement engine stopped before it finished (an IAM read it needs failed, or a crash
    /// injected by a test double).
    #[error("enforcement aborted: {0}")]
    Aborted(#[source] crate::controller::enforce::converge::EnforceError),
    /// The object lacks a field the API server always sets.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// Serialising status failed.
    #[error("cannot serialise status: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A deleted Quarantine's audit records are not in the audit store yet; the finalizer waits
    /// (bounded by `audit.deletionWait`).
    #[error("audit records not flushed yet: {0}")]
    AuditPending(String),
}

/// What kind of failure ended a reconcile: the one vocabulary of `reconcile_errors_total`'s
/// `category` label (snake_case, as Prometheus labels are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCategory {
    /// A write lost to a concurrent writer (HTTP 409); retried.
    Conflict,
    /// Any other Kubernetes API failure.
    Kubernetes,
    /// The finalizer helper failed.
    Finalizer,
    /// Release is not finished yet; retried until it is.
    Release,
    /// An IAM failure, by IAM's category.
    Iam(crate::aws::iam::ErrorCategory),
    /// The object is malformed.
    Invalid,
    /// A bug of ours (status that cannot be serialised).
    Internal,
    /// The audit store did not take a deleted Quarantine's records yet.
    Audit,
}

impl ErrorCategory {
    /// The metric label, e.g. `conflict` or `iam_access_denied`.
    pub fn label(self) -> &'static str {
        use crate::aws::iam::ErrorCategory as Iam;
        match self {
            ErrorCategory::Conflict => "conflict",
            ErrorCategory::Kubernetes => "kubernetes",
            ErrorCategory::Finalizer => "finalizer",
            ErrorCategory::Release => "release",
            ErrorCategory::Iam(Iam::Transient) => "iam_transient",
            ErrorCategory::Iam(Iam::AccessDenied) => "iam_access_denied",
            ErrorCategory::Iam(Iam::Quota) => "iam_quota",
            ErrorCategory::Iam(Iam::NotFound) => "iam_not_found",
            ErrorCategory::Iam(Iam::Invalid) => "iam_invalid",
            ErrorCategory::Iam(Iam::Conflict) => "iam_conflict",
            ErrorCategory::Invalid => "invalid",
            ErrorCategory::Internal => "internal",
            ErrorCategory::Audit => "audit",
        }
    }
}

impl Error {
    /// The category of this failure (the metric label is `category().label()`).
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => ErrorCategory::Conflict,
            Error::Kube(_) => ErrorCategory::Kubernetes,
            Error::Finalizer(_) => ErrorCategory::Finalizer,
            Error::Release(_) => ErrorCategory::Release,
            Error::Aborted(e) => ErrorCategory::Iam(e.category()),
            Error::MissingField(_) => ErrorCategory::Invalid,
            Error::Serialize(_) => ErrorCategory::Internal,
            Error::AuditPending(_) => ErrorCategory::Audit,
        }
    }
}

/// The informer caches of every watched namespace: one per kind, shared by intake and the
/// controllers (decision 142).
#[derive(Clone, Default)]
pub struct Stores {
    policies: Vec<Store<GuardrailPolicy>>,
    quarantines: Vec<Store<Quarantine>>,
    policy_feeds: Vec<cache::Fanout<GuardrailPolicy>>,
    quarantine_feeds: Vec<cache::Fanout<Quarantine>>,
    active: index::ActiveIndex,
    cached: index::CachedIndex,
    ended: ended::EndedIndex,
    drift: crate::controller::enforce::trigger::DriftTrigger,
    resolutions: crate::controller::resolver::Resolutions,
    in_flight: in_flight::InFlight,
}

impl Stores {
    /// Signals and Quarantine reconciles running now (decision 244).
    pub fn in_flight(&self) -> &in_flight::InFlight {
        &self.in_flight
    }

    /// The latest selector resolution of each policy (decision 246).
    pub fn resolutions(&self) -> &crate::controller::resolver::Resolutions {
        &self.resolutions
    }

    /// How many quarantines of the policy are Active or Releasing (from an index, not a scan).
    pub fn active_quarantines(&self, namespace: &str, policy: &str) -> usize {
        self.active.count(namespace, policy)
    }

    /// Every cached policy.
    pub fn policies(&self) -> Vec<Arc<GuardrailPolicy>> {
        self.policies.iter().flat_map(|s| s.state()).collect()
    }

    /// Every cached quarantine that is not ended (ended ones are in [`Stores::ended`]).
    pub fn quarantines(&self) -> Vec<Arc<Quarantine>> {
        self.quarantines.iter().flat_map(|s| s.state()).collect()
    }

    /// Where the signal listener asks this replica's Quarantine controllers to check some
    /// quarantines now (IAM change events, decision 200).
    pub fn drift_trigger(&self) -> &crate::controller::enforce::trigger::DriftTrigger {
        &self.drift
    }

    /// What is kept of the ended quarantines (decision 140).
    pub fn ended(&self) -> &ended::EndedIndex {
        &self.ended
    }

    /// A stream that yields once per change of any cached policy or quarantine (deletions
    /// included), after one item per object cached now. For observers that only need to know
    /// that something changed (the dashboard's live updates, decision 183); the objects are
    /// read from the stores.
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let policies = self
            .policy_feeds
            .iter()
            .map(|f| f.subscribe(true).map(|_| ()).boxed());
        let quarantines = self
            .quarantine_feeds
            .iter()
            .map(|f| f.subscribe(true).map(|_| ()).boxed());
        futures::stream::select_all(policies.chain(quarantines))
    }

    /// The quarantines of policy `namespace/policy` that policy evaluation must see: the cached
    /// ones, and outlines of the ended ones (never written anywhere).
    pub fn quarantines_of(&self, namespace: &str, policy: &str) -> Vec<Quarantine> {
        // From the index by policy, not a scan of the cache (decision 147).
        let mut out: Vec<Quarantine> = self
            .cached
            .names(namespace, policy)
            .into_iter()
            .filter_map(|name| {
                let r = ObjectRef::new(&name).within(namespace);
                self.quarantines.iter().find_map(|s| s.get(&r))
            })
            .filter(|q| q.spec.policy_ref.name == policy)
            .map(|q| (*q).clone())
            .collect();
        out.extend(self.ended.for_policy(namespace, policy));
        out
    }

    /// One cached policy.
    pub fn policy(&self, namespace: &str, name: &str) -> Option<Arc<GuardrailPolicy>> {
        let r = ObjectRef::new(name).within(namespace);
        self.policies.iter().find_map(|s| s.get(&r))
    }

    /// One quarantine: the cached object, or for an ended one its outline (name, policy, targets,
    /// phase, release time: for reading only, never to be written anywhere; decision 140).
    pub fn quarantine(&self, namespace: &str, name: &str) -> Option<Arc<Quarantine>> {
        let r = ObjectRef::new(name).within(namespace);
        self.quarantines
            .iter()
            .find_map(|s| s.get(&r))
            .or_else(|| self.ended.get(namespace, name).map(Arc::new))
    }

    /// Waits until every store has its first full list. Polls: kube-runtime's readiness future
    /// was seen to miss its wake-up when awaited before the first list arrives.
    pub async fn wait_ready(&self) {
        while !self.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True once every store has its first full list.
    pub fn is_ready(&self) -> bool {
        // A store is ready once its first list was applied; an empty store that has listed
        // reports ready through `wait_until_ready`, so check with a zero-time poll.
        self.policies
            .iter()
            .all(|s| futures::FutureExt::now_or_never(s.wait_until_ready()).is_some())
            && self
                .quarantines
                .iter()
                .all(|s| futures::FutureExt::now_or_never(s.wait_until_ready()).is_some())
    }
}

/// Everything reconciles share.
pub struct Shared {
    /// The Kubernetes client.
    pub client: Client,
    /// Settings.
    pub settings: Settings,
    /// The enforcement engine.
    pub engine: Engine,
    /// IAM clients per account.
    pub clients: Arc<dyn ClientFactory>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: EventRecorder,
    /// Informer caches.
    pub stores: Stores,
    /// Reconciles hold it shared while they write IAM; the orphan sweep holds it exclusively.
    pub iam_lock: RwLock<()>,
    /// When each quarantine (by uid) last had a full converge.
    pub(crate) full_converge: Mutex<HashMap<String, Instant>>,
    /// Consecutive failures per object (uid), for backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
    /// What the last complete scan of the retired quarantines found (decision 154).
    pub(crate) retired: Mutex<Option<retire::Retired>>,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(
        client: Client,
        settings: Settings,
        clients: Arc<dyn ClientFactory>,
        metrics: Arc<Metrics>,
        stores: Stores,
        instance: Option<String>,
    ) -> Shared {
        let engine = Engine::new(crate::controller::enforce::converge::EngineConfig {
            cluster_id: settings.cluster_id.clone(),
            protected: crate::controller::enforce::plan::ProtectedPrincipals::new(
                settings.protected_principals.clone(),
            ),
            settle: crate::controller::enforce::converge::DEFAULT_SETTLE,
        })
        .with_reports(stores.drift.clone());
        let recorder = EventRecorder::new(client.clone(), REPORTER, instance);
        Shared {
            client,
            settings,
            engine,
            clients,
            metrics,
            recorder,
            stores,
            iam_lock: RwLock::new(()),
            full_converge: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            retired: Mutex::new(None),
        }
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal (the audit trail in
    /// status is the record of truth).
    pub async fn publish<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let occurrence = Occurrence {
            severity: if warning {
                Severity::Warning
            } else {
                Severity::Normal
            },
            reason,
            action,
            note: &truncate(&note, 1000),
        };
        if let Err(e) = self
            .recorder
            .publish(&obj.object_ref(&()), &occurrence)
            .await
        {
            tracing::warn!(error = %e, reason, "failed to publish Event");
        }
    }

    /// Backoff for the next retry of `uid`, doubling per consecutive failure.
    pub fn backoff(&self, uid: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 1u64 << (*n - 1).min(16);
        Duration::from_secs(secs).min(self.settings.max_backoff)
    }

    /// Forgets the failures of `uid` after a successful reconcile.
    pub fn reset_backoff(&self, uid: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Writes `status` with a JSON merge patch that carries the read `resourceVersion` (optimistic
/// concurrency: a concurrent writer makes it fail with 409 and the reconcile retries). Fields in
/// `old` that are absent from `new` are removed; `keep` lists status fields owned by someone else,
/// which are never sent.
pub async fn patch_status<K, S>(
    api: &Api<K>,
    obj: &K,
    old: &S,
    new: &S,
    keep: &[&str],
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let mut old = serde_json::to_value(old)?;
    let mut new = serde_json::to_value(new)?;
    for field in keep {
        if let Some(o) = old.as_object_mut() {
            o.remove(*field);
        }
        if let Some(n) = new.as_object_mut() {
            n.remove(*field);
        }
    }
    if old == new {
        return Ok(None);
    }
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object_mut()) {
        for k in o.keys() {
            if !n.contains_key(k) {
                n.insert(k.clone(), serde_json::Value::Null);
            }
        }
    }
    let name = obj.meta().name.clone().ok_or(Error::MissingField("name"))?;
    let rv = obj
        .meta()
        .resource_version
        .clone()
        .ok_or(Error::MissingField("resourceVersion"))?;
    let body = serde_json::json!({
        "metadata": { "resourceVersion": rv },
        "status": new,
    });
    let patched = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(Some(patched))
}

/// A handle that tells whether the controllers' caches are synced (for `/readyz` and intake).
#[derive(Clone)]
pub struct Running {
    /// The caches the controllers use.
    pub stores: Stores,
    /// The shared state (engine, metrics, clients).
    pub shared: Arc<Shared>,
}

/// Builds the caches and the shared state, and returns a future that runs the caches, both
/// controllers and the orphan sweep until `shutdown` resolves.
pub fn start(
    client: Client,
    settings: Settings,
    clients: Arc<dyn ClientFactory>,
    metrics: Arc<Metrics>,
    instance: Option<String>,
    shutdown: watch::Receiver<bool>,
) -> (Running, futures::future::BoxFuture<'static, ()>) {
    let (stores, caches) = watch_stores(client.clone(), &settings.namespaces, shutdown.clone());
    let (running, controllers) = start_on(
        stores, client, settings, clients, metrics, instance, shutdown,
    );
    let future = Box::pin(async move {
        futures::future::join(caches, controllers).await;
    });
    (running, future)
}

/// Runs both controllers and the orphan sweep on caches that are already kept current (the
/// intake's, from [`watch_stores`]), until `shutdown` resolves.
pub fn start_on(
    stores: Stores,
    client: Client,
    settings: Settings,
    clients: Arc<dyn ClientFactory>,
    metrics: Arc<Metrics>,
    instance: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) -> (Running, futures::future::BoxFuture<'static, ()>) {
    let runtime = kube::runtime::controller::Config::default()
        .concurrency(settings.reconcile_concurrency.max(1));
    let mut policy_controllers = Vec::new();
    let mut quarantine_controllers = Vec::new();
    for (((policy_store, policy_feed), quarantine_store), quarantine_feed) in stores
        .policies
        .iter()
        .zip(&stores.policy_feeds)
        .zip(&stores.quarantines)
        .zip(&stores.quarantine_feeds)
    {
        let pc = Controller::for_shared_stream(policy_feed.subscribe(false), policy_store.clone())
            .owns_shared_stream(quarantine_feed.subscribe(true))
            .reconcile_on(stores.resolutions.subscribe())
            .with_config(runtime.clone());
        let feed = quarantine_feed.subscribe(false);
        // With an audit store, the flusher's writes of `status.audit` alone wake no reconcile.
        let live: futures::stream::BoxStream<'static, Arc<Quarantine>> = if settings.audit.enabled()
        {
            let seen = crate::controller::audit::flusher::AuditBlind::default();
            feed.filter(move |q| futures::future::ready(seen.live_and_changed(q)))
                .boxed()
        } else {
            feed.filter(|q| futures::future::ready(!ended::settled(q)))
                .boxed()
        };
        let qc = Controller::for_shared_stream(live, quarantine_store.clone())
            .reconcile_on(stores.drift.subscribe())
            .with_config(runtime.clone());
        policy_controllers.push(pc);
        quarantine_controllers.push(qc);
    }
    let shared = Arc::new(Shared::new(
        client,
        settings,
        clients,
        metrics,
        stores.clone(),
        instance,
    ));
    let running = Running {
        stores,
        shared: shared.clone(),
    };
    let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    for pc in policy_controllers {
        let ctx = shared.clone();
        let sd = wait_for_shutdown(shutdown.clone());
        tasks.push(Box::pin(
            pc.graceful_shutdown_on(sd)
                .run(policy::reconcile, policy::error_policy, ctx)
                .for_each(|r| async move {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "guardrailpolicy reconcile");
                    }
                }),
        ));
    }
    for qc in quarantine_controllers {
        let ctx = shared.clone();
        let sd = wait_for_shutdown(shutdown.clone());
        tasks.push(Box::pin(
            qc.graceful_shutdown_on(sd)
                .run(quarantine::reconcile, quarantine::error_policy, ctx)
                .for_each(|r| async move {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "quarantine reconcile");
                    }
                }),
        ));
    }
    if shared.settings.audit.enabled() {
        let ctx = shared.clone();
        let mut stop = shutdown.clone();
        tasks.push(Box::pin(async move {
            crate::controller::audit::flusher::run(ctx, &mut stop).await;
        }));
    }
    {
        let ctx = shared.clone();
        tasks.push(Box::pin(async move {
            sweep::run(ctx, &mut shutdown).await;
        }));
    }
    let future = Box::pin(async move {
        futures::future::join_all(tasks).await;
    });
    (running, future)
}

/// The policy and quarantine APIs of each watched namespace (one cluster-wide pair when
/// `namespaces` is empty).
fn watched_apis(
    client: &Client,
    namespaces: &[String],
) -> Vec<(Api<GuardrailPolicy>, Api<Quarantine>)> {
    if namespaces.is_empty() {
        return vec![(Api::all(client.clone()), Api::all(client.clone()))];
    }
    namespaces
        .iter()
        .map(|ns| {
            (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            )
        })
        .collect()
}

/// The caches of GuardrailPolicies and Quarantines of every watched namespace, kept current until
/// `shutdown` turns true: what intake reads on every replica (a standby serves `/sns` too), and
/// what a leader's controllers run on ([`start_on`]). Returns the stores and the future that keeps
/// them current.
pub fn watch_stores(
    client: Client,
    namespaces: &[String],
    shutdown: watch::Receiver<bool>,
) -> (Stores, futures::future::BoxFuture<'static, ()>) {
    let config = watcher::Config::default().any_semantic();
    // Retired quarantines are never listed nor watched (decision 154).
    let live_quarantines = retire::live_watch();
    let mut stores = Stores::default();
    let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    for (policies, quarantines) in watched_apis(&client, namespaces) {
        let (reader, feed, task) = cache::cached(
            policies,
            &config,
            cache::keep_all,
            |_| {},
            wait_for_shutdown(shutdown.clone()),
            "guardrailpolicy",
        );
        stores.policies.push(reader);
        stores.policy_feeds.push(feed);
        tasks.push(task);
        let (active, cached, ended) = (
            stores.active.clone(),
            stores.cached.clone(),
            stores.ended.clone(),
        );
        let (reader, feed, task) = cache::cached(
            quarantines,
            &live_quarantines,
            |q| !ended::settled(q),
            move |e| {
                active.observe(e);
                cached.observe(e);
                ended.observe(e);
            },
            wait_for_shutdown(shutdown.clone()),
            "quarantine",
        );
        stores.quarantines.push(reader);
        stores.quarantine_feeds.push(feed);
        tasks.push(task);
    }
    let future = Box::pin(async move {
        futures::future::join_all(tasks).await;
    });
    (stores, future)
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn wait_for_shutdown(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
}

/// The requeue action for `after`, never zero.
pub(crate) fn requeue(after: Duration) -> Action {
    Action::requeue(after.max(Duration::from_millis(50)))
}

/// The object's name and namespace, for logs.
pub(crate) fn object_key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
