//! The notification worker: a kube-runtime `Controller` over Quarantines that sends one Slack
//! message per new notable `status.history` entry and records delivery in `status.notifications`
//! and the `Notified` condition (the only status fields it writes, with a resourceVersion-guarded
//! merge patch). It runs beside the lifecycle controller and must never be awaited by it: a Slack
//! outage shows up here as a condition, a Warning Event and a metric, never as a delay elsewhere.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::events::{EventRecorder, Occurrence, Severity};
use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::blocks::{self, RenderOptions};
use super::ledger::{self, LedgerSettings, Outcome, Pending};
use super::slack::{SlackNotifier, SlackSettings, duration_text};
use super::source::{WebhookRef, WebhookSources};
use super::web_api::{Posted, SlackWebApi};
use super::{Notifier, NotifyError, WebhookTarget};
use crate::controller::audit::controller_outbox::ControllerOutbox;
use crate::controller::crd::conditions::{NOTIFIED, set_condition};
use crate::controller::crd::{DeliveryState, NotificationRecord, PostedMessage, Quarantine};
use crate::metrics::Metrics;

/// The field manager (and Event reporter) name of the worker.
pub const FIELD_MANAGER: &str = "autoguardrails-notify";
/// Condition reason: the last message was delivered.
pub const REASON_DELIVERED: &str = "Delivered";
/// Condition/Event reason: a message was not delivered and will be retried.
pub const REASON_DELIVERY_RETRYING: &str = "DeliveryRetrying";
/// Condition/Event reason: a message was given up (permanent error or retry window passed).
pub const REASON_DELIVERY_FAILED: &str = "DeliveryFailed";
/// Condition reason: only old entries were seen; they were recorded as skipped.
pub const REASON_OLD_ENTRIES_SKIPPED: &str = "OldEntriesSkipped";
/// Metric outcome: delivered.
pub const OUTCOME_DELIVERED: &str = "delivered";
/// Metric outcome: failed, will retry.
pub const OUTCOME_RETRYING: &str = "retrying";
/// Metric outcome: given up.
pub const OUTCOME_FAILED: &str = "failed";
/// Metric outcome: skipped as too old.
pub const OUTCOME_SKIPPED: &str = "skipped";
/// Metric outcome: an earlier message was updated in place (`chat.update`).
pub const OUTCOME_UPDATED: &str = "updated";
/// Metric outcome: an earlier message could not be updated and will not be tried again.
pub const OUTCOME_UPDATE_FAILED: &str = "update_failed";
/// Metric outcome: an earlier message could not be updated yet; tried again later.
pub const OUTCOME_UPDATE_RETRYING: &str = "update_retrying";
/// Event reason: an earlier message could not be updated in place.
pub const REASON_UPDATE_FAILED: &str = "MessageUpdateFailed";
/// How often a status write is retried after 409 Conflict.
const MAX_CONFLICT_RETRIES: usize = 5;

/// Settings of the worker (the `notifications` section of the controller configuration file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NotifySettings {
    /// Run the worker at all.
    pub enabled: bool,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// A cluster name shown in every message.
    pub cluster: Option<String>,
    /// Entries older than this when first seen are recorded as Skipped, not sent.
    #[serde(with = "duration_text")]
    pub max_age: Duration,
    /// A failing message is retried until its entry is this old, then recorded as Failed.
    #[serde(with = "duration_text")]
    pub retry_for: Duration,
    /// The first wait between delivery rounds for a failing message; doubled per attempt.
    #[serde(with = "duration_text")]
    pub initial_backoff: Duration,
    /// The longest wait between delivery rounds.
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    /// How long a webhook URL read from a Secret or SSM is reused before it is read again.
    #[serde(with = "duration_text")]
    pub webhook_cache_ttl: Duration,
    /// The region of the SSM parameters holding webhook URLs (default: the AWS SDK's region).
    pub ssm_region: Option<String>,
    /// Quarantines handled at the same time.
    pub concurrency: u16,
    /// The webhook client's timeouts and retries.
    pub slack: SlackSettings,
    /// `webhook` (incoming webhooks, the default) or `bot`: post with `chat.postMessage` and the
    /// bot token of `slack.botTokenFile`, and update earlier messages in place with `chat.update`
    /// when the Quarantine moves on (decision 235).
    pub post_with: PostWith,
    /// The channel id the bot posts to when a policy's `notify.slack.channelHint` names none.
    pub channel: Option<String>,
    /// Put Approve/Reject and Extend/Release buttons on messages (on when
    /// `slack.interactions` is, never from this section).
    #[serde(skip)]
    pub buttons: bool,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            enabled: true,
            namespaces: Vec::new(),
            cluster: None,
            max_age: Duration::from_secs(15 * 60),
            retry_for: Duration::from_secs(60 * 60),
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5 * 60),
            webhook_cache_ttl: super::source::DEFAULT_CACHE_TTL,
            ssm_region: None,
            concurrency: 4,
            slack: SlackSettings::default(),
            post_with: PostWith::Webhook,
            channel: None,
            buttons: false,
        }
    }
}

/// How messages are posted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PostWith {
    /// Incoming webhooks (`spec.notify.slack.webhookSecretRef` / `webhookSsmParameter`).
    #[default]
    Webhook,
    /// The Web API with a bot token: `chat.postMessage`, then `chat.update` in place.
    Bot,
}

impl NotifySettings {
    fn ledger(&self) -> LedgerSettings {
        let signed =
            |value: Duration| SignedDuration::try_from(value).unwrap_or(SignedDuration::MAX);
        LedgerSettings {
            max_age: signed(self.max_age),
            retry_for: signed(self.retry_for),
            initial_backoff: signed(self.initial_backoff),
            max_backoff: signed(self.max_backoff),
        }
    }
}

/// Why the worker could not finish handling a Quarantine (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Writing `status.notifications` failed.
    #[error("failed to write notification status of quarantine {namespace}/{name}: {source}")]
    StatusWrite {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The client's error.
        source: kube::Error,
    },
    /// Status kept changing under us.
    #[error(
        "notification status of quarantine {namespace}/{name} conflicted {MAX_CONFLICT_RETRIES} times"
    )]
    Conflict {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The webhook client could not be built.
    #[error(transparent)]
    Notifier(#[from] NotifyError),
}

impl WorkerError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            WorkerError::StatusWrite { .. } => "status_write",
            WorkerError::Conflict { .. } => "conflict",
            WorkerError::Notifier(_) => "notifier",
        }
    }
}

/// Records kept in memory between a send and the moment the watch cache shows our status write,
/// so a requeue that sees a stale object never sends twice.
type Memory = Mutex<HashMap<String, (Instant, Vec<NotificationRecord>)>>;

/// One lock per object, so the reconcile and the deletion path never send for it at once.
type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

struct Context {
    client: kube::Client,
    settings: NotifySettings,
    ledger: LedgerSettings,
    metrics: Arc<Metrics>,
    notifier: Arc<dyn Notifier>,
    sources: Arc<WebhookSources>,
    web_api: Option<Arc<SlackWebApi>>,
    audit: Option<Arc<ControllerOutbox>>,
    recorder: EventRecorder,
    memory: Memory,
    locks: Locks,
}

/// The worker, built with [`Worker::new`], adjusted with `with_*`, started with [`Worker::run`].
pub struct Worker {
    client: kube::Client,
    settings: NotifySettings,
    metrics: Arc<Metrics>,
    notifier: Arc<dyn Notifier>,
    sources: WebhookSources,
    web_api: Option<Arc<SlackWebApi>>,
    audit: Option<Arc<ControllerOutbox>>,
}

impl Worker {
    /// A worker sending through the Slack webhook client, reading Secrets with `client` and SSM
    /// parameters with the default AWS configuration.
    pub fn new(
        client: kube::Client,
        settings: NotifySettings,
        metrics: Arc<Metrics>,
    ) -> Result<Worker, WorkerError> {
        let notifier = Arc::new(SlackNotifier::new(settings.slack.clone())?);
        let sources = WebhookSources::new(client.clone(), settings.webhook_cache_ttl);
        Ok(Worker {
            client,
            settings,
            metrics,
            notifier,
            sources,
            web_api: None,
            audit: None,
        })
    }

    /// Records messages given up (not delivered, not updated) in the controller's audit outbox.
    pub fn with_audit(self, audit: Option<Arc<ControllerOutbox>>) -> Worker {
        Worker { audit, ..self }
    }

    /// Posts and updates through Slack's Web API with a bot token (`postWith: bot`).
    pub fn with_web_api(self, web_api: Arc<SlackWebApi>) -> Worker {
        Worker {
            web_api: Some(web_api),
            ..self
        }
    }

    /// Sends through this notifier instead (tests, or another chat system).
    pub fn with_notifier(self, notifier: Arc<dyn Notifier>) -> Worker {
        Worker { notifier, ..self }
    }

    /// Reads SSM parameters with this client (e.g. pointed at a test endpoint).
    pub fn with_ssm(self, ssm: aws_sdk_ssm::Client) -> Worker {
        Worker {
            sources: self.sources.with_ssm(ssm),
            ..self
        }
    }

    /// Watches Quarantines and delivers messages until `shutdown` completes. Returns at once when
    /// the settings disable the worker.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        if !self.settings.enabled {
            tracing::info!("slack notifications disabled");
            return;
        }
        let context = Arc::new(Context {
            recorder: EventRecorder::new(
                self.client.clone(),
                FIELD_MANAGER,
                std::env::var("POD_NAME").ok(),
            ),
            ledger: self.settings.ledger(),
            client: self.client.clone(),
            metrics: self.metrics,
            notifier: self.notifier,
            sources: Arc::new(self.sources),
            web_api: self.web_api,
            audit: self.audit,
            memory: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            settings: self.settings.clone(),
        });
        let shutdown = shutdown.shared();
        let apis: Vec<Api<Quarantine>> = if self.settings.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.settings
                .namespaces
                .iter()
                .map(|namespace| Api::namespaced(self.client.clone(), namespace))
                .collect()
        };
        let deletions = apis.iter().cloned().map(|api| {
            Box::pin(watch_deletions(api, context.clone()).take_until(shutdown.clone()))
        });
        let deletions = futures::stream::select_all(deletions).for_each(|_| async {});
        let controllers = apis.into_iter().map(|api| {
            // Retired quarantines have nothing left to deliver (decision 154).
            Controller::new(api, crate::controller::reconcile::retire::live_watch())
                .with_config(ControllerConfig::default().concurrency(self.settings.concurrency))
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, context.clone())
                .for_each(|result| async move {
                    if let Err(error) = result {
                        tracing::debug!(%error, "notification reconcile did not finish");
                    }
                })
        });
        futures::future::join(futures::future::join_all(controllers), deletions).await;
    }
}

/// Runs the Slack worker with the default notifier and AWS configuration until `shutdown`.
pub async fn run(
    client: kube::Client,
    settings: NotifySettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    Worker::new(client, settings, metrics)?.run(shutdown).await;
    Ok(())
}

fn error_policy(_object: Arc<Quarantine>, error: &WorkerError, _context: Arc<Context>) -> Action {
    tracing::warn!(category = error.category(), %error, "notification status not written; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Keys of memory: the object's uid (names can be reused after deletion).
fn memory_key(object: &Quarantine) -> String {
    object.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    })
}

/// Status records overlaid with what this process wrote since (memory wins: it is never older).
fn merged_records(object: &Quarantine, context: &Context) -> Vec<NotificationRecord> {
    let mut records = object
        .status
        .as_ref()
        .map(|status| status.notifications.clone())
        .unwrap_or_default();
    let retention = context.settings.retry_for.saturating_mul(2);
    if let Ok(mut memory) = context.memory.lock() {
        memory.retain(|_, (written, _)| written.elapsed() < retention);
        if let Some((_, remembered)) = memory.get(&memory_key(object)) {
            for record in remembered {
                match records
                    .iter_mut()
                    .find(|existing| existing.key == record.key)
                {
                    Some(existing) => *existing = record.clone(),
                    None => records.push(record.clone()),
                }
            }
        }
    }
    records
}

fn object_lock(object: &Quarantine, context: &Context) -> Arc<tokio::sync::Mutex<()>> {
    match context.locks.lock() {
        Ok(mut locks) => locks.entry(memory_key(object)).or_default().clone(),
        Err(_) => Arc::default(),
    }
}

fn forget(object: &Quarantine, context: &Context) {
    let key = memory_key(object);
    if let Ok(mut locks) = context.locks.lock() {
        locks.remove(&key);
    }
    if let Ok(mut memory) = context.memory.lock() {
        memory.remove(&key);
    }
}

/// Watches for deleted Quarantines and gives their undelivered messages one last try: a
/// Quarantine's final `Released` entry is often written just before its finalizer goes, so the
/// object may be gone before a reconcile sees it. The deleted object's last state is all there is
/// (no status can be written any more), so this is best effort: a deletion missed while the watch
/// was down is not replayed.
fn watch_deletions(
    api: Api<Quarantine>,
    context: Arc<Context>,
) -> impl futures::Stream<Item = ()> + Send {
    watcher(api, crate::controller::reconcile::retire::live_watch())
        .default_backoff()
        .filter_map(move |event| {
            let context = context.clone();
            async move {
                // A retirement leaves the watch like a deletion; it had nothing left to deliver.
                if let Ok(watcher::Event::Delete(object)) = event
                    && !crate::controller::reconcile::retire::is_retired(&object)
                {
                    tokio::spawn(async move {
                        let lock = object_lock(&object, &context);
                        let guard = lock.lock().await;
                        deliver(&object, &context, true).await;
                        drop(guard);
                        forget(&object, &context);
                    });
                }
                Some(())
            }
        })
}

fn remember(object: &Quarantine, context: &Context, records: &[NotificationRecord]) {
    if let Ok(mut memory) = context.memory.lock() {
        memory.insert(memory_key(object), (Instant::now(), records.to_vec()));
    }
}

/// The Notified condition this round calls for, if any: (status, reason, message).
struct ConditionUpdate {
    status: bool,
    reason: &'static str,
    message: String,
}

/// What one delivery round produced.
struct Round {
    history: Vec<crate::controller::crd::HistoryEntry>,
    records: Vec<NotificationRecord>,
    update: Option<ConditionUpdate>,
    /// An in-place update failed for a while; try again after this long.
    retry_updates: Option<Duration>,
}

/// Where this round's messages go.
enum Route {
    /// An incoming webhook.
    Webhook(WebhookTarget),
    /// The Web API, to this channel.
    Bot(Arc<SlackWebApi>, String),
}

/// Sends what is due for `object` and returns the new ledger; `None` when the object has nothing
/// to do with Slack. `last_chance` (the object was deleted): every entry not yet final is tried
/// once now, and no Event is published.
async fn deliver(object: &Quarantine, context: &Context, last_chance: bool) -> Option<Round> {
    let slack = object
        .spec
        .notify
        .as_ref()
        .and_then(|notify| notify.slack.as_ref())?;
    let namespace = object.namespace().unwrap_or_default();
    let status = object.status.clone().unwrap_or_default();
    if status.history.is_empty() {
        return None;
    }
    let now = Timestamp::now();
    let mut before = merged_records(object, context);
    if last_chance {
        for record in &mut before {
            record.next_attempt_at = None;
        }
    }
    let plan = ledger::plan(&status.history, &before, now, &context.ledger);
    let mut records = plan.records.clone();
    let mut update: Option<ConditionUpdate> = None;
    for _ in 0..plan.skipped {
        context
            .metrics
            .slack_deliveries
            .with_label_values(&[OUTCOME_SKIPPED])
            .inc();
    }
    for _ in 0..plan.given_up {
        context
            .metrics
            .slack_deliveries
            .with_label_values(&[OUTCOME_FAILED])
            .inc();
    }
    if plan.skipped > 0 {
        update = Some(ConditionUpdate {
            status: true,
            reason: REASON_OLD_ENTRIES_SKIPPED,
            message: format!(
                "{} history entries older than {:#} when first seen were not sent",
                plan.skipped, context.ledger.max_age
            ),
        });
    }
    if plan.given_up > 0 {
        update = Some(ConditionUpdate {
            status: false,
            reason: REASON_DELIVERY_FAILED,
            message: format!(
                "gave up on {} message(s) after {:#}",
                plan.given_up, context.ledger.retry_for
            ),
        });
    }

    if !plan.send.is_empty() {
        let reference = WebhookRef::from_spec(&namespace, slack);
        // The bot posts to a channel and needs no webhook; a webhook set-up needs one (decision
        // 238). A missing one is retried like a missing Secret: the policy or the controller's
        // set-up may be fixed within `retryFor`.
        let post_with = match context.web_api {
            Some(_) => PostWith::Bot,
            None => PostWith::Webhook,
        };
        let target = match (
            super::route(post_with, context.settings.channel.as_deref(), slack),
            &context.web_api,
            &reference,
        ) {
            (Err(error), _, _) => Err(error),
            (Ok(Some(channel)), Some(api), _) => Ok(Route::Bot(api.clone(), channel)),
            (Ok(_), _, Some(reference)) => context
                .sources
                .resolve(reference)
                .await
                .map(|url| Route::Webhook(WebhookTarget { url }))
                .map_err(NotifyError::from),
            (Ok(_), _, None) => Err(NotifyError::NoWebhook),
        };
        let options = RenderOptions {
            cluster: context.settings.cluster.clone(),
            buttons: context.settings.buttons,
        };
        let mut blocked: Option<(String, Option<Duration>)> = None;
        for pending in &plan.send {
            let mut posted: Option<Posted> = None;
            let outcome = match (&blocked, &target) {
                // An earlier message of this quarantine failed: keep the order, retry together.
                (Some((error, retry_after)), _) => Outcome::NotDelivered {
                    error: format!("waiting for an earlier message: {error}"),
                    attempts: 0,
                    permanent: false,
                    retry_after: *retry_after,
                },
                // The URL lookup failed: one try, no request.
                (None, Err(error)) => match not_delivered(error) {
                    Outcome::NotDelivered {
                        error,
                        permanent,
                        retry_after,
                        ..
                    } => Outcome::NotDelivered {
                        error,
                        attempts: 1,
                        permanent,
                        retry_after,
                    },
                    delivered => delivered,
                },
                (None, Ok(target)) => match blocks::render(object, pending.index, &options) {
                    None => Outcome::NotDelivered {
                        error: "nothing to render".into(),
                        attempts: 0,
                        permanent: true,
                        retry_after: None,
                    },
                    Some(message) => match target {
                        Route::Bot(api, channel) => match api.post_message(channel, &message).await
                        {
                            Ok(done) => {
                                let attempts = done.attempts;
                                posted = Some(done);
                                Outcome::Delivered { attempts }
                            }
                            Err(error) => not_delivered(&error),
                        },
                        Route::Webhook(target) => {
                            match context.notifier.send(target, &message).await {
                                Ok(delivery) => Outcome::Delivered {
                                    attempts: delivery.attempts,
                                },
                                Err(error) => {
                                    if matches!(error, NotifyError::Rejected { .. })
                                        && let Some(reference) = &reference
                                    {
                                        context.sources.invalidate(reference);
                                    }
                                    let outcome = not_delivered(&error);
                                    scrub(outcome, target)
                                }
                            }
                        }
                    },
                },
            };
            let now = Timestamp::now();
            let state = ledger::record_outcome(
                &mut records,
                &status.history,
                pending,
                &outcome,
                now,
                &context.ledger,
            );
            if let Some(posted) = posted
                && let Some(record) = records.iter_mut().find(|r| r.key == pending.key)
            {
                record.message = Some(PostedMessage {
                    channel: posted.channel,
                    ts: posted.ts,
                    updated_for: None,
                });
            }
            remember(object, context, &records);
            update = Some(
                account(
                    context,
                    object,
                    pending,
                    &outcome,
                    state,
                    &records,
                    !last_chance,
                )
                .await,
            );
            if state != DeliveryState::Delivered
                && blocked.is_none()
                && let Outcome::NotDelivered {
                    error, retry_after, ..
                } = &outcome
            {
                blocked = Some((error.clone(), *retry_after));
            }
        }
    }

    let retry_updates = match &context.web_api {
        Some(api) => update_earlier(object, context, api, &status.history, &mut records).await,
        None => None,
    };
    Some(Round {
        history: status.history,
        records,
        update,
        retry_updates,
    })
}

/// Updates in place every message the bot posted before the latest one and has not updated
/// since: its own text without buttons, and a line saying what the Quarantine went on to
/// (decision 235). A permanent refusal (`message_not_found`, `cant_update_message`, …) is given
/// up with a Warning Event; a transient one (429, timeout, 5xx) is tried again after the
/// returned wait. The latest message keeps its buttons.
async fn update_earlier(
    object: &Quarantine,
    context: &Context,
    api: &SlackWebApi,
    history: &[crate::controller::crd::HistoryEntry],
    records: &mut [NotificationRecord],
) -> Option<Duration> {
    let latest = records
        .iter()
        .rev()
        .find(|r| r.state == DeliveryState::Delivered && r.message.is_some())?;
    let (latest_key, latest_event) = (latest.key.clone(), latest.event.clone());
    let options = RenderOptions {
        cluster: context.settings.cluster.clone(),
        buttons: false,
    };
    let mut retry: Option<Duration> = None;
    for record in records.iter_mut() {
        let Some(message) = record.message.as_mut() else {
            continue;
        };
        if record.key == latest_key || message.updated_for.is_some() {
            continue;
        }
        let index = (0..history.len())
            .find(|i| ledger::key_for(history, *i).as_deref() == Some(record.key.as_str()));
        let Some(mut rendered) = index.and_then(|i| blocks::render(object, i, &options)) else {
            // The entry left the bounded history: nothing to render it from.
            message.updated_for = Some(latest_key.clone());
            continue;
        };
        rendered.blocks.push(serde_json::json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("Since then: *{latest_event}*")}],
        }));
        match api
            .update_message(&message.channel, &message.ts, &rendered)
            .await
        {
            Ok(_) => {
                message.updated_for = Some(latest_key.clone());
                count(context, OUTCOME_UPDATED);
                tracing::info!(quarantine = %object.name_any(), event = %record.event, "slack message updated in place");
            }
            Err(error) if error.is_permanent() => {
                message.updated_for = Some(latest_key.clone());
                count(context, OUTCOME_UPDATE_FAILED);
                let note = blocks::truncate(
                    &format!(
                        "message for {} could not be updated in place: {error}",
                        record.key
                    ),
                    1000,
                );
                tracing::warn!(quarantine = %object.name_any(), %error, "slack message not updated; giving up");
                audit_given_up(context, object, "SlackMessageUpdateFailed", &note);
                let event = Occurrence {
                    severity: Severity::Warning,
                    reason: REASON_UPDATE_FAILED,
                    action: "Notify",
                    note: &note,
                };
                if let Err(publish_error) = context
                    .recorder
                    .publish(&object.object_ref(&()), &event)
                    .await
                {
                    tracing::warn!(%publish_error, "could not publish the update Event");
                }
            }
            Err(error) => {
                count(context, OUTCOME_UPDATE_RETRYING);
                tracing::warn!(quarantine = %object.name_any(), %error, "slack message not updated yet; retrying");
                let wait = error
                    .retry_after()
                    .unwrap_or(context.settings.initial_backoff)
                    .min(context.settings.max_backoff);
                retry = Some(retry.map_or(wait, |r| r.min(wait)));
                // Keep the order: later updates wait with this one.
                break;
            }
        }
    }
    remember(object, context, records);
    retry
}

/// A message given up, as a record in the controller's audit outbox (the Quarantine's partition).
fn audit_given_up(context: &Context, object: &Quarantine, event: &str, message: &str) {
    let Some(outbox) = &context.audit else {
        return;
    };
    let mut record = crate::controller::audit::controller_outbox::record(
        outbox.cluster(),
        event,
        crate::controller::audit::controller_outbox::controller_actor(),
        message.to_string(),
    );
    record.quarantine = Some(crate::audit::QuarantineRef {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        uid: object.metadata.uid.clone().unwrap_or_default(),
    });
    record.policy = Some(object.spec.policy_ref.name.clone());
    record.principals = object.spec.targets.iter().map(|t| t.arn.clone()).collect();
    outbox.append(record);
}

fn count(context: &Context, outcome: &str) {
    context
        .metrics
        .slack_deliveries
        .with_label_values(&[outcome])
        .inc();
}

async fn reconcile(object: Arc<Quarantine>, context: Arc<Context>) -> Result<Action, WorkerError> {
    let lock = object_lock(&object, &context);
    let _guard = lock.lock().await;
    let Some(Round {
        history,
        records,
        update,
        retry_updates,
    }) = deliver(&object, &context, false).await
    else {
        return Ok(Action::await_change());
    };
    write_status(&object, &context, &records, update.as_ref()).await?;

    // Sleep until the earliest retry, if one is waiting.
    let next = ledger::plan(&history, &records, Timestamp::now(), &context.ledger);
    if let Some(wait) = retry_updates {
        return Ok(Action::requeue(wait.max(Duration::from_millis(100))));
    }
    Ok(match next.wake_at {
        Some(wake) => {
            let wait = Timestamp::now().duration_until(wake);
            Action::requeue(
                Duration::try_from(wait)
                    .unwrap_or_default()
                    .max(Duration::from_millis(100)),
            )
        }
        None if !next.send.is_empty() => Action::requeue(Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

fn not_delivered(error: &NotifyError) -> Outcome {
    Outcome::NotDelivered {
        error: format!("{} ({})", error, error.category()),
        attempts: error.attempts(),
        permanent: error.is_permanent(),
        retry_after: error.retry_after(),
    }
}

/// Belt and braces: no error text written anywhere may contain the webhook URL.
fn scrub(outcome: Outcome, target: &WebhookTarget) -> Outcome {
    match outcome {
        Outcome::NotDelivered {
            error,
            attempts,
            permanent,
            retry_after,
        } => Outcome::NotDelivered {
            error: error.replace(target.url.expose(), "<redacted webhook URL>"),
            attempts,
            permanent,
            retry_after,
        },
        delivered => delivered,
    }
}

/// Metric, Event and condition for one send.
async fn account(
    context: &Context,
    object: &Quarantine,
    pending: &Pending,
    outcome: &Outcome,
    state: DeliveryState,
    records: &[NotificationRecord],
    publish_event: bool,
) -> ConditionUpdate {
    let (label, reason) = match state {
        DeliveryState::Delivered => (OUTCOME_DELIVERED, REASON_DELIVERED),
        DeliveryState::Retrying => (OUTCOME_RETRYING, REASON_DELIVERY_RETRYING),
        DeliveryState::Failed | DeliveryState::Skipped => (OUTCOME_FAILED, REASON_DELIVERY_FAILED),
    };
    context
        .metrics
        .slack_deliveries
        .with_label_values(&[label])
        .inc();
    match outcome {
        Outcome::Delivered { .. } => {
            tracing::info!(quarantine = %object.name_any(), event = %pending.event, "slack message delivered");
            ConditionUpdate {
                status: true,
                reason,
                message: format!("message for {} delivered", pending.key),
            }
        }
        Outcome::NotDelivered { error, .. } => {
            let next = records
                .iter()
                .find(|record| record.key == pending.key)
                .and_then(|record| record.next_attempt_at.as_ref())
                .map(|time| format!("; next attempt at {}", blocks::utc(time.0)))
                .unwrap_or_default();
            let message = blocks::truncate(
                &format!("message for {} not delivered: {error}{next}", pending.key),
                1000,
            );
            tracing::warn!(quarantine = %object.name_any(), event = %pending.event, state = state.as_str(), %error, "slack message not delivered");
            if state == DeliveryState::Failed {
                audit_given_up(context, object, "SlackMessageFailed", &message);
            }
            let event = Occurrence {
                severity: Severity::Warning,
                reason,
                action: "Notify",
                note: &message,
            };
            if publish_event
                && let Err(publish_error) = context
                    .recorder
                    .publish(&object.object_ref(&()), &event)
                    .await
            {
                tracing::warn!(%publish_error, "could not publish the delivery Event");
            }
            ConditionUpdate {
                status: false,
                reason,
                message,
            }
        }
    }
}

/// Writes `status.notifications` and the Notified condition when they changed, guarded by
/// resourceVersion; on 409 re-reads and re-applies (only our fields; the rest stays as read).
async fn write_status(
    object: &Quarantine,
    context: &Context,
    records: &[NotificationRecord],
    update: Option<&ConditionUpdate>,
) -> Result<(), WorkerError> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<Quarantine> = Api::namespaced(context.client.clone(), &namespace);
    let mut current = object.clone();
    for _ in 0..MAX_CONFLICT_RETRIES {
        let status = current.status.clone().unwrap_or_default();
        // Re-fit our records to the history as it is now (entries may have been added or dropped).
        let fitted =
            ledger::plan(&status.history, records, Timestamp::now(), &context.ledger).records;
        let mut conditions = status.conditions.clone();
        if let Some(update) = update {
            set_condition(
                &mut conditions,
                NOTIFIED,
                update.status,
                update.reason,
                &update.message,
                current.metadata.generation,
                Timestamp::now(),
            );
        }
        if fitted == status.notifications && conditions == status.conditions {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "status": {"notifications": fitted, "conditions": conditions},
        });
        match api
            .patch_status(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(response)) if response.code == 409 => {
                current = api
                    .get(&name)
                    .await
                    .map_err(|source| WorkerError::StatusWrite {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        source,
                    })?;
            }
            Err(kube::Error::Api(response)) if response.code == 404 => return Ok(()),
            Err(source) => {
                return Err(WorkerError::StatusWrite {
                    namespace,
                    name,
                    source,
                });
            }
        }
    }
    Err(WorkerError::Conflict { namespace, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_deserialise_from_the_config_file_shape() {
        let settings: NotifySettings = serde_json::from_value(serde_json::json!({
            "namespaces": ["autoguardrails"],
            "cluster": "prod-ops",
            "maxAge": "30m",
            "slack": {"requestTimeout": "5s"}
        }))
        .unwrap();
        assert_eq!(settings.max_age, Duration::from_secs(1800));
        assert_eq!(settings.slack.request_timeout, Duration::from_secs(5));
        assert_eq!(settings.retry_for, Duration::from_secs(3600));
        assert!(
            serde_json::from_value::<NotifySettings>(serde_json::json!({"maxAgee": "1m"})).is_err()
        );
    }
}
