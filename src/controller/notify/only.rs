//! The `notifyOnly` action (decision 241): a matching signal is announced — a Slack message to the
//! policy's webhook, or with `notifications.postWith: bot` by the bot to the policy's channel
//! (decision 239), a Kubernetes Event on the policy, `autoguardrails_notify_only_total` and an
//! audit record — and `status.lastNotifiedAt` is written so the cooldown holds across replicas
//! and restarts. Intake hands announcements over without waiting ([`Announce`]); a task sends
//! them. It must never create a Quarantine, never make an AWS write (the only AWS call is reading
//! an SSM webhook parameter), and never be awaited by the signal path.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;

use super::source::{WebhookRef, WebhookSources};
use super::web_api::SlackWebApi;
use super::worker::PostWith;
use super::{Message, Notifier, NotifyError, WebhookTarget};
use crate::audit::{Actor, AuditRecord, AuditSink};
use crate::controller::crd::GuardrailPolicy;
use crate::controller::events::{EventRecorder, Occurrence, Severity};
use crate::controller::signal::CostSignal;
use crate::metrics::Metrics;

/// Event reason and audit event of an announced `notifyOnly` match.
pub const REASON_NOTIFY_ONLY: &str = "NotifyOnly";
/// Event reason when the announcement could not be sent to Slack.
pub const REASON_NOTIFY_FAILED: &str = "NotifyOnlyFailed";
/// The field manager and Event controller name of the announcer.
pub const FIELD_MANAGER: &str = "autoguardrails-notify-only";
/// How many announcements may wait for the task before new ones are refused (and counted).
pub const QUEUE: usize = 256;

/// One match of a `notifyOnly` policy to announce.
#[derive(Clone, Debug)]
pub struct Announcement {
    /// The policy (as cached when the signal was evaluated).
    pub policy: Arc<GuardrailPolicy>,
    /// The signal.
    pub signal: CostSignal,
    /// The evaluation's explanation.
    pub message: String,
    /// The principals the policy would have quarantined.
    pub targets: Vec<String>,
    /// When it was evaluated.
    pub at: Timestamp,
}

/// Takes announcements without waiting.
pub trait Announce: Send + Sync {
    /// Queues `announcement`; false when it could not be queued (full or stopped).
    fn announce(&self, announcement: Announcement) -> bool;
}

/// The queue in front of the [`Announcer`] task.
#[derive(Clone)]
pub struct AnnounceQueue {
    sender: mpsc::Sender<Announcement>,
}

impl Announce for AnnounceQueue {
    fn announce(&self, announcement: Announcement) -> bool {
        self.sender.try_send(announcement).is_ok()
    }
}

/// Where an announcement's audit record goes when it is not tied to a Quarantine.
#[async_trait]
pub trait AuditOut: Send + Sync {
    /// Stores the record (or logs it when no store is configured).
    async fn write(&self, record: &AuditRecord);
}

/// The configured audit sink, appended to directly, else the log: what [`OutboxOrSink`] falls
/// back to (decision 241).
pub struct SinkOrLog(pub Option<Arc<dyn AuditSink>>);

#[async_trait]
impl AuditOut for SinkOrLog {
    async fn write(&self, record: &AuditRecord) {
        let line = serde_json::to_string(record).unwrap_or_default();
        match &self.0 {
            Some(sink) => {
                // Two tries; the record also stays in the controller's log.
                for attempt in 1..=2 {
                    match sink.append(std::slice::from_ref(record)).await {
                        Ok(_) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, attempt, audit = %line, "notifyOnly audit record not stored")
                        }
                    }
                }
            }
            None => tracing::info!(audit = %line, "notifyOnly audit record"),
        }
    }
}

/// The controller's audit outbox (a ConfigMap flushed to the store by the leader, decision 225)
/// when an audit store is configured; the sink directly (or the log) when the outbox write fails
/// or there is none.
pub struct OutboxOrSink {
    /// The controller's outbox.
    pub outbox: Option<Arc<crate::controller::audit::controller_outbox::ControllerOutbox>>,
    /// Where the record goes without it.
    pub fallback: SinkOrLog,
}

#[async_trait]
impl AuditOut for OutboxOrSink {
    async fn write(&self, record: &AuditRecord) {
        if let Some(outbox) = &self.outbox {
            match outbox.append_now(vec![record.clone()]).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "notifyOnly audit record not in the outbox; sent to the sink directly")
                }
            }
        }
        self.fallback.write(record).await;
    }
}

/// How announcements reach Slack (the controller's `notifications.postWith`).
#[derive(Clone, Debug)]
pub enum Poster {
    /// The incoming webhook the policy names.
    Webhook,
    /// The bot (`chat.postMessage`) to the policy's `channelHint`, else this channel.
    Bot(Arc<SlackWebApi>, Option<String>),
    /// `postWith: bot`, but the client could not be built (why): every announcement says so.
    BotUnavailable(String),
}

/// Sends announcements: Slack, Event, metric, audit record, `lastNotifiedAt`.
pub struct Announcer {
    client: kube::Client,
    notifier: Arc<dyn Notifier>,
    sources: WebhookSources,
    poster: Poster,
    recorder: EventRecorder,
    metrics: Arc<Metrics>,
    audit: Arc<dyn AuditOut>,
    cluster: String,
}

impl Announcer {
    /// An announcer sending through `notifier` with URLs from `sources`.
    pub fn new(
        client: kube::Client,
        notifier: Arc<dyn Notifier>,
        sources: WebhookSources,
        metrics: Arc<Metrics>,
        audit: Arc<dyn AuditOut>,
        cluster: String,
    ) -> Announcer {
        Announcer {
            recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, None),
            client,
            notifier,
            sources,
            poster: Poster::Webhook,
            metrics,
            audit,
            cluster,
        }
    }

    /// Posts with this instead of the policies' webhooks (`postWith: bot`, decision 239).
    pub fn with_poster(self, poster: Poster) -> Announcer {
        Announcer { poster, ..self }
    }

    /// Starts the task; announcements go through the returned queue until `shutdown` resolves.
    pub fn start(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (AnnounceQueue, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel(QUEUE);
        let task = tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    next = receiver.recv() => match next {
                        Some(a) => self.send(&a).await,
                        None => return,
                    },
                }
            }
        });
        (AnnounceQueue { sender }, task)
    }

    /// Announces one match (every part is attempted; failures are counted and logged).
    pub async fn send(&self, a: &Announcement) {
        let policy = a.policy.as_ref();
        let key = format!(
            "{}/{}",
            policy.namespace().unwrap_or_default(),
            policy.name_any()
        );
        let slack = self.slack(a).await;
        let outcome = match &slack {
            Ok(true) => "sent",
            Ok(false) => "no_webhook",
            Err(_) => "failed",
        };
        self.metrics
            .notify_only
            .with_label_values(&[key.as_str(), outcome])
            .inc();
        let note = match &slack {
            Ok(true) => format!(
                "{} (Slack message sent; no Quarantine, no AWS change)",
                a.message
            ),
            Ok(false) => format!(
                "{} (no Slack configured; no Quarantine, no AWS change)",
                a.message
            ),
            Err(e) => format!(
                "{} (Slack message failed: {e}; no Quarantine, no AWS change)",
                a.message
            ),
        };
        let (severity, reason) = match &slack {
            Err(_) => (Severity::Warning, REASON_NOTIFY_FAILED),
            _ => (Severity::Normal, REASON_NOTIFY_ONLY),
        };
        let occurrence = Occurrence {
            severity,
            reason,
            action: "Notify",
            note: &crate::controller::reconcile::truncate(&note, 1000),
        };
        if let Err(e) = self
            .recorder
            .publish(&policy.object_ref(&()), &occurrence)
            .await
        {
            tracing::warn!(policy = %key, error = %e, "failed to publish the notifyOnly Event");
        }
        self.audit.write(&record(a, &self.cluster, &note)).await;
        self.record_last_notified(policy, a.at).await;
    }

    /// Sends the Slack message; `Ok(false)` when the policy names no Slack at all. A policy
    /// whose `notify.slack` has nowhere to go with this controller's `postWith` (no webhook, no
    /// channel) is an error, never a silent skip (decision 238).
    async fn slack(&self, a: &Announcement) -> Result<bool, String> {
        let namespace = a.policy.namespace().unwrap_or_default();
        let Some(slack) = a.policy.spec.notify.as_ref().and_then(|n| n.slack.as_ref()) else {
            return Ok(false);
        };
        let message = render(
            a,
            slack.channel_hint.clone().filter(|c| !c.trim().is_empty()),
        );
        let (post_with, default_channel) = match &self.poster {
            Poster::Webhook => (PostWith::Webhook, None),
            Poster::Bot(_, channel) => (PostWith::Bot, channel.as_deref()),
            Poster::BotUnavailable(why) => return Err(why.clone()),
        };
        let route = super::route(post_with, default_channel, slack).map_err(|e| e.to_string())?;
        if let (Poster::Bot(api, _), Some(channel)) = (&self.poster, route) {
            return api
                .post_message(&channel, &message)
                .await
                .map(|_| true)
                .map_err(|e| format!("{e} ({})", e.category()));
        }
        let reference = WebhookRef::from_spec(&namespace, slack)
            .ok_or_else(|| NotifyError::NoWebhook.to_string())?;
        let url = self
            .sources
            .resolve(&reference)
            .await
            .map_err(|e| e.to_string())?;
        self.notifier
            .send(&WebhookTarget { url }, &message)
            .await
            .map(|_| true)
            .map_err(|e| e.to_string())
    }

    /// Writes `status.lastNotifiedAt` (a merge patch of that field alone: never conflicts).
    async fn record_last_notified(&self, policy: &GuardrailPolicy, at: Timestamp) {
        let api: Api<GuardrailPolicy> =
            Api::namespaced(self.client.clone(), &policy.namespace().unwrap_or_default());
        let body = serde_json::json!({ "status": { "lastNotifiedAt": Time(at) } });
        if let Err(e) = api
            .patch_status(
                &policy.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            tracing::warn!(policy = %policy.name_any(), error = %e, "failed to record lastNotifiedAt");
        }
    }
}

/// The Slack message of an announcement. Pure.
pub fn render(a: &Announcement, channel: Option<String>) -> Message {
    let policy = format!(
        "{}/{}",
        a.policy.namespace().unwrap_or_default(),
        a.policy.name_any()
    );
    let s = &a.signal;
    let mut facts = vec![
        format!("*Policy:* `{policy}` (notifyOnly)"),
        format!(
            "*Signal:* {} `{}` in account `{}`",
            s.source.as_str(),
            super::blocks::escape(&s.id),
            s.account_id
        ),
        format!("*Impact:* {}", super::blocks::usd(s.impact_usd)),
    ];
    if let Some(service) = &s.service {
        facts.push(format!("*Service:* {}", super::blocks::escape(service)));
    }
    if !a.targets.is_empty() {
        facts.push(format!(
            "*Principals in scope:* {}",
            a.targets
                .iter()
                .map(|t| format!("`{}`", super::blocks::escape(t)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let text = format!(
        "Cost signal matched {policy} (notify only): {} {} — {}. No quarantine was created and nothing was changed in AWS.",
        s.source.as_str(),
        s.id,
        super::blocks::usd(s.impact_usd)
    );
    Message {
        text: super::blocks::truncate(&text, 3000),
        blocks: vec![
            serde_json::json!({
                "type": "header",
                "text": {"type": "plain_text", "text": "Cost signal matched (notify only)"}
            }),
            serde_json::json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": super::blocks::truncate(&facts.join("\n"), 3000)}
            }),
            serde_json::json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "No quarantine was created and nothing was changed in AWS."}]
            }),
        ],
        channel,
    }
}

/// The audit record of an announcement (not tied to a Quarantine). Pure.
pub fn record(a: &Announcement, cluster: &str, message: &str) -> AuditRecord {
    let policy = format!(
        "{}/{}",
        a.policy.namespace().unwrap_or_default(),
        a.policy.name_any()
    );
    let uid = a.policy.uid().unwrap_or_default();
    AuditRecord {
        id: format!("notify/{uid}/{}/{}", a.signal.id, a.at.as_second()),
        recorded_at: Timestamp::from_second(a.at.as_second()).unwrap_or(a.at),
        sequence: 0,
        cluster: cluster.to_string(),
        quarantine: None,
        policy: Some(policy),
        principals: a.targets.clone(),
        event: REASON_NOTIFY_ONLY.to_string(),
        actor: Actor {
            name: crate::controller::lifecycle::CONTROLLER_ACTOR.to_string(),
            verified: true,
            channel: "controller".to_string(),
        },
        message: message.to_string(),
        mode: Some(a.policy.spec.mode.as_str().to_string()),
        signal: Some(crate::controller::audit::signal_summary(&a.signal)),
        request_ids: Vec::new(),
    }
}
