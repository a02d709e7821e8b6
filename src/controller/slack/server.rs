//! The Slack channel's adapters: `POST /slack/interactions` on the signals listener (body limits,
//! signature, replay), the Quarantine read and annotation write through the kube client, the
//! SubjectAccessReview through the approval webhook's own reviewer, and the answer posted to
//! Slack's `response_url`. It acknowledges within Slack's 3 s and acts afterwards. It must not
//! decide who may act: that is `admission::review::decide`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::intent::{self, Click, UserMapping};
use super::request::{self, ReplayCache, SecretRing, SigningSecret};
use crate::controller::admission::review::{self, Verdict};
use crate::controller::admission::server::{AccessReviewer, ask};
use crate::controller::admission::stamp::stamp_key;
use crate::controller::admission::{Identity, StampKey};
use crate::controller::audit::controller_outbox::ControllerOutbox;
use crate::controller::crd::quarantine::{Phase, Quarantine};
use crate::controller::events::{EventRecorder, Occurrence, Severity};
use crate::controller::lifecycle::Annotation;
use crate::metrics::Metrics;

/// The path Slack's interactivity request URL points at.
pub const PATH: &str = "/slack/interactions";
/// The Event reporter and field manager.
pub const FIELD_MANAGER: &str = "autoguardrails-slack";

/// Outcome: the action was written.
pub const OUTCOME_ACCEPTED: &str = "accepted";
/// Outcome: the clicking Slack user is not mapped to a Kubernetes identity.
pub const OUTCOME_UNMAPPED: &str = "unmapped";
/// Outcome: the SubjectAccessReview said no.
pub const OUTCOME_REFUSED: &str = "refused";
/// Outcome: the SubjectAccessReview could not be asked (fail closed).
pub const OUTCOME_UNAVAILABLE: &str = "unavailable";
/// Outcome: the button no longer applies (gone, replaced, other phase).
pub const OUTCOME_STALE: &str = "stale";
/// Outcome: reading or writing the Quarantine failed.
pub const OUTCOME_ERROR: &str = "error";
/// Outcome: the body is not an interaction we handle.
pub const OUTCOME_MALFORMED: &str = "malformed";
/// Outcome: the `response_url` is not an allowed Slack address.
pub const OUTCOME_BAD_RESPONSE_URL: &str = "bad_response_url";
/// Outcome: the body is larger than the limit.
pub const OUTCOME_TOO_LARGE: &str = "too_large";
/// Outcome: the body did not arrive in time.
pub const OUTCOME_TIMEOUT: &str = "timeout";
/// Outcome: a click opened the note modal (the action follows its submission).
pub const OUTCOME_MODAL_OPENED: &str = "modal_opened";
/// Outcome: the note modal could not be opened; the click acted without a note.
pub const OUTCOME_MODAL_FAILED: &str = "modal_failed";

/// Event reason for a Slack action done.
pub const REASON_ACCEPTED: &str = "SlackActionAccepted";
/// Event reason for a Slack action refused by the SubjectAccessReview.
pub const REASON_REFUSED: &str = "SlackActionRefused";
/// Event reason for a click by a Slack user with no Kubernetes identity.
pub const REASON_UNMAPPED: &str = "SlackUserUnmapped";
/// Event reason for a click the access check could not be asked for (refused, fail closed).
pub const REASON_UNAVAILABLE: &str = "SlackActionUnavailable";
/// Event reason for a button that no longer applies.
pub const REASON_STALE: &str = "SlackActionStale";
/// Event reason for a click whose write failed.
pub const REASON_FAILED: &str = "SlackActionFailed";

/// The Event reason of an outcome label (distinct reasons keep Event series apart).
fn reason_of(label: &str) -> &'static str {
    match label {
        OUTCOME_ACCEPTED => REASON_ACCEPTED,
        OUTCOME_UNMAPPED => REASON_UNMAPPED,
        OUTCOME_UNAVAILABLE => REASON_UNAVAILABLE,
        OUTCOME_STALE => REASON_STALE,
        OUTCOME_REFUSED => REASON_REFUSED,
        _ => REASON_FAILED,
    }
}

/// The Quarantine as the channel needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Current {
    /// uid.
    pub uid: String,
    /// Phase.
    pub phase: Option<Phase>,
    /// `spec.policyRef.name`.
    pub policy: String,
    /// The object reference for Events.
    pub reference: k8s_openapi::api::core::v1::ObjectReference,
}

/// Reads and annotates Quarantines.
#[async_trait::async_trait]
pub trait Quarantines: Send + Sync {
    /// The Quarantine now; None when it does not exist.
    async fn current(&self, namespace: &str, name: &str) -> Result<Option<Current>, String>;
    /// Sets annotations (a merge patch that also requires the uid to match).
    async fn annotate(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), String>;
}

/// Quarantines through the kube client.
pub struct KubeQuarantines {
    /// The client.
    pub client: kube::Client,
}

#[async_trait::async_trait]
impl Quarantines for KubeQuarantines {
    async fn current(&self, namespace: &str, name: &str) -> Result<Option<Current>, String> {
        use kube::Resource as _;
        let api: Api<Quarantine> = Api::namespaced(self.client.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|error| format!("failed to read Quarantine {namespace}/{name}: {error}"))?;
        Ok(found.map(|quarantine| Current {
            uid: quarantine.metadata.uid.clone().unwrap_or_default(),
            phase: quarantine.status.as_ref().and_then(|status| status.phase),
            policy: quarantine.spec.policy_ref.name.clone(),
            reference: quarantine.object_ref(&()),
        }))
    }

    async fn annotate(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let api: Api<Quarantine> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"metadata": {"uid": uid, "annotations": annotations}});
        api.patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|error| format!("failed to annotate Quarantine {namespace}/{name}: {error}"))
    }
}

/// What the endpoint needs.
pub struct Interactions {
    /// Slack's signing secret(s), re-read on rotation.
    pub secret: Arc<Secrets>,
    /// Signatures already accepted.
    pub replays: ReplayCache,
    /// Slack user → Kubernetes identity.
    pub users: Vec<UserMapping>,
    /// Asks SubjectAccessReviews (the webhook's reviewer).
    pub reviewer: Arc<dyn AccessReviewer>,
    /// Signs stamps (the webhook's key).
    pub key: StampKey,
    /// Reads and writes Quarantines.
    pub quarantines: Arc<dyn Quarantines>,
    /// Publishes Events; None in tests without an API server.
    pub recorder: Option<Arc<EventRecorder>>,
    /// Counts interactions.
    pub metrics: Arc<Metrics>,
    /// Posts to `response_url`.
    pub http: reqwest::Client,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// How long the body may take to arrive.
    pub body_timeout: Duration,
    /// What the Extend button adds (`2h`).
    pub extend_by: String,
    /// Seconds since the epoch now.
    pub now: fn() -> i64,
    /// Looks up Slack users' confirmed e-mail addresses (a bot token configured); None: users
    /// are mapped by id only.
    pub emails: Option<Arc<dyn EmailLookup>>,
    /// The addresses a `response_url` may start with.
    pub response_url_prefixes: Vec<String>,
    /// The controller's audit outbox: refused clicks are recorded there (accepted ones are in
    /// the Quarantine's history). None without an audit store.
    pub audit: Option<Arc<ControllerOutbox>>,
    /// Opens the note modal (`slack.noteModal` with a bot token); None: buttons act at once.
    pub modal: Option<Arc<dyn NoteModal>>,
}

/// Opens a modal in answer to a click (decision 236).
#[async_trait::async_trait]
pub trait NoteModal: Send + Sync {
    /// `views.open` of `view` for the click's `trigger_id`; Err when Slack refused or could
    /// not be reached.
    async fn open(&self, trigger_id: &str, view: &Value) -> Result<(), String>;
}

/// `views.open` through the Slack Web API with the bot token.
pub struct SlackViews {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl SlackViews {
    /// Views through `base_url` (ending with `/`) with `token`.
    pub fn new(http: reqwest::Client, base_url: &str, token: &str) -> SlackViews {
        SlackViews {
            http,
            base_url: base_url.to_string(),
            token: token.trim().to_string(),
        }
    }
}

#[async_trait::async_trait]
impl NoteModal for SlackViews {
    async fn open(&self, trigger_id: &str, view: &Value) -> Result<(), String> {
        let response = self
            .http
            .post(format!("{}views.open", self.base_url))
            .bearer_auth(&self.token)
            // The trigger expires 3 s after the click.
            .timeout(Duration::from_secs(3))
            .json(&json!({"trigger_id": trigger_id, "view": view}))
            .send()
            .await
            .map_err(|e| format!("Slack views.open failed: {}", e.without_url()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() && body["ok"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(format!(
                "Slack views.open answered {status}: {}",
                body["error"].as_str().unwrap_or("no ok in the answer")
            ))
        }
    }
}

/// Finds a Slack user's confirmed e-mail address.
#[async_trait::async_trait]
pub trait EmailLookup: Send + Sync {
    /// The user's address when Slack reports it confirmed; None when it has none or it is not
    /// confirmed; Err when Slack could not be asked.
    async fn email(&self, user_id: &str) -> Result<Option<String>, String>;
}

/// user id → (confirmed address, when asked).
type EmailCache = std::collections::HashMap<String, (Option<String>, std::time::Instant)>;

/// `users.info` through the Slack Web API with a bot token, answers cached for a while
/// (decision 228).
pub struct SlackUsers {
    /// The client (no redirects).
    http: reqwest::Client,
    /// The Web API base URL, ending with `/`.
    base_url: String,
    /// The bot token.
    token: String,
    /// How long an answer is remembered.
    ttl: Duration,
    /// Answers.
    cache: std::sync::Mutex<EmailCache>,
}

/// At most this many users' addresses are remembered (then the cache starts over).
const EMAIL_CACHE_CAPACITY: usize = 10_000;

impl SlackUsers {
    /// A lookup through `base_url` with `token`.
    pub fn new(http: reqwest::Client, base_url: &str, token: &str, ttl: Duration) -> SlackUsers {
        SlackUsers {
            http,
            base_url: base_url.to_string(),
            token: token.trim().to_string(),
            ttl,
            cache: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl EmailLookup for SlackUsers {
    async fn email(&self, user_id: &str) -> Result<Option<String>, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some((email, at)) = cache.get(user_id)
            && at.elapsed() < self.ttl
        {
            return Ok(email.clone());
        }
        let response = self
            .http
            .get(format!(
                "{}users.info?{}",
                self.base_url,
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("user", user_id)
                    .finish()
            ))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("Slack users.info failed: {}", e.without_url()))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            format!(
                "Slack users.info answered {status} without JSON: {}",
                e.without_url()
            )
        })?;
        if body["ok"] != Value::Bool(true) {
            let error = body["error"].as_str().unwrap_or("unknown");
            if error == "user_not_found" {
                return Ok(None);
            }
            return Err(format!("Slack users.info refused: {error}"));
        }
        // Only an address Slack says is confirmed identifies the person.
        let email = (body["user"]["is_email_confirmed"] == Value::Bool(true))
            .then(|| {
                body["user"]["profile"]["email"]
                    .as_str()
                    .map(str::to_string)
            })
            .flatten()
            .filter(|e| !e.is_empty());
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= EMAIL_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(
                user_id.to_string(),
                (email.clone(), std::time::Instant::now()),
            );
        }
        Ok(email)
    }
}

/// The identity of the clicking user: by id, else by confirmed e-mail when mappings by e-mail
/// exist and a lookup is configured. Err when the lookup could not be made.
async fn resolve_identity(state: &Interactions, click: &Click) -> Result<Option<Identity>, String> {
    if let Some(identity) = intent::identity_of(click, &state.users) {
        return Ok(Some(identity));
    }
    let Some(lookup) = state
        .emails
        .as_ref()
        .filter(|_| intent::maps_emails(&state.users))
    else {
        return Ok(None);
    };
    let email = lookup.email(&click.user_id).await?;
    Ok(intent::identity_for(click, &state.users, email.as_deref()))
}

/// The signing secrets as the endpoint uses them (decision 227): a ring (current and, for a
/// grace period, previous), refreshed from its file when the file changes (checked on each
/// request, like the webhook certificate) or by [`refresh_from_ssm`].
pub struct Secrets {
    ring: std::sync::RwLock<SecretRing>,
    /// The secret file and the modification time and length it was read at.
    file: Option<(std::path::PathBuf, std::sync::Mutex<FileStamp>)>,
}

/// A file's modification time and length.
type FileStamp = (Option<std::time::SystemTime>, u64);

fn stamp_of(path: &std::path::Path) -> FileStamp {
    std::fs::metadata(path)
        .map(|m| (m.modified().ok(), m.len()))
        .unwrap_or((None, 0))
}

impl Secrets {
    /// One secret that never changes.
    pub fn fixed(secret: SigningSecret) -> Secrets {
        Secrets {
            ring: std::sync::RwLock::new(SecretRing::new(secret, 0)),
            file: None,
        }
    }

    /// A secret updated by [`Secrets::rotate`] (the SSM refresher), the previous one accepted
    /// for `grace_seconds`.
    pub fn rotating(secret: SigningSecret, grace_seconds: i64) -> Secrets {
        Secrets {
            ring: std::sync::RwLock::new(SecretRing::new(secret, grace_seconds)),
            file: None,
        }
    }

    /// The secret in `path`, read again whenever the file changes; the first read must succeed.
    pub fn from_file(path: &std::path::Path, grace_seconds: i64) -> Result<Secrets, String> {
        let stamp = stamp_of(path);
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
        let secret =
            SigningSecret::new(&text).ok_or_else(|| format!("{} is empty", path.display()))?;
        Ok(Secrets {
            ring: std::sync::RwLock::new(SecretRing::new(secret, grace_seconds)),
            file: Some((path.to_path_buf(), std::sync::Mutex::new(stamp))),
        })
    }

    /// Makes `secret` current at `now` (logged when it changed).
    pub fn rotate(&self, secret: SigningSecret, now: i64) {
        let mut ring = self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ring.rotate(secret, now) {
            tracing::info!(
                "slack signing secret rotated; the previous one is accepted for the grace period"
            );
        }
    }

    /// The ring at `now`, after re-reading the file if it changed. A changed file that cannot
    /// be read or is empty keeps the last good secret (logged once per change).
    pub fn ring(&self, now: i64) -> SecretRing {
        if let Some((path, seen)) = &self.file {
            let stamp = stamp_of(path);
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen != stamp {
                *seen = stamp;
                match std::fs::read_to_string(path)
                    .ok()
                    .as_deref()
                    .and_then(SigningSecret::new)
                {
                    Some(secret) => self.rotate(secret, now),
                    None => {
                        tracing::warn!(file = %path.display(), "the changed slack signing secret file cannot be used; keeping the previous secret")
                    }
                }
            }
        }
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Re-reads the signing secret from SSM every `period` until `shutdown`; a failed read keeps the
/// current secret (logged).
pub async fn refresh_from_ssm(
    secrets: Arc<Secrets>,
    now: fn() -> i64,
    ssm: aws_sdk_ssm::Client,
    parameter: String,
    period: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match signing_secret_from_ssm(&ssm, &parameter).await {
            Ok(secret) => secrets.rotate(secret, now()),
            Err(error) => {
                tracing::warn!(%error, "failed to refresh the slack signing secret from SSM; keeping the current one")
            }
        }
    }
}

/// The signing secret from an SSM SecureString parameter (read with decryption). A parameter of
/// another type is refused: the secret must be stored encrypted.
pub async fn signing_secret_from_ssm(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> Result<SigningSecret, String> {
    let output = ssm
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|error| {
            format!(
                "failed to read SSM parameter {parameter}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(error.into_service_error())
            )
        })?;
    let found = output
        .parameter
        .ok_or_else(|| format!("SSM parameter {parameter} has no value"))?;
    if found.r#type != Some(aws_sdk_ssm::types::ParameterType::SecureString) {
        return Err(format!(
            "SSM parameter {parameter} is not a SecureString; store the signing secret encrypted"
        ));
    }
    found
        .value
        .as_deref()
        .and_then(SigningSecret::new)
        .ok_or_else(|| format!("SSM parameter {parameter} is empty"))
}

/// Seconds since the epoch from the system clock.
pub fn system_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The router: `POST /slack/interactions`.
pub fn router(state: Arc<Interactions>) -> Router {
    Router::new()
        .route(PATH, post(interaction))
        .with_state(state)
}

/// Counts one interaction.
fn count(state: &Interactions, outcome: &str) {
    state
        .metrics
        .slack_interactions
        .with_label_values(&[outcome])
        .inc();
}

/// A refusal before the request is known to be Slack's: counted, logged, no answer to Slack.
fn refuse(state: &Interactions, status: StatusCode, outcome: &str, reason: String) -> Response {
    count(state, outcome);
    tracing::warn!(outcome, %reason, "slack interaction refused");
    (status, reason).into_response()
}

/// `POST /slack/interactions`.
async fn interaction(
    State(state): State<Arc<Interactions>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = state.max_body_bytes;
    let body =
        match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return refuse(
                    &state,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    OUTCOME_TOO_LARGE,
                    format!("body exceeds {limit} bytes or could not be read"),
                );
            }
            Err(_) => {
                return refuse(
                    &state,
                    StatusCode::REQUEST_TIMEOUT,
                    OUTCOME_TIMEOUT,
                    "body not received in time".into(),
                );
            }
        };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let now = (state.now)();
    let signature = header(request::SIGNATURE_HEADER);
    let ring = state.secret.ring(now);
    let verified = request::verify_ring(
        &ring,
        header(request::TIMESTAMP_HEADER),
        signature,
        &body,
        now,
    )
    .and_then(|timestamp| {
        state
            .replays
            .record(timestamp, signature.unwrap_or_default(), now)
    });
    if let Err(error) = verified {
        let status = match error {
            request::RequestError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        return refuse(&state, status, error.category(), error.to_string());
    }
    let click = match intent::read(&body) {
        Ok(click) => click,
        Err(error) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                OUTCOME_MALFORMED,
                error.to_string(),
            );
        }
    };
    if let Some(url) = &click.response_url
        && !super::response_url_allowed(url, &state.response_url_prefixes)
    {
        // Never post to (or act for) an address that is not Slack's: a signed request naming
        // another is refused whole (decision 226).
        return refuse(
            &state,
            StatusCode::BAD_REQUEST,
            OUTCOME_BAD_RESPONSE_URL,
            format!(
                "response_url at {} is not an allowed Slack address (slack.responseUrlPrefixes)",
                super::origin_of(url)
            ),
        );
    }
    // Acknowledge now (Slack waits 3 s; an empty 200 also closes a submitted modal); ask for a
    // note first when the modal is configured, else act and answer through response_url.
    match (&state.modal, intent::asks_for_note(&click)) {
        (Some(modal), true) => {
            let modal = modal.clone();
            tokio::spawn(async move {
                let trigger = click.trigger_id.clone().unwrap_or_default();
                match modal.open(&trigger, &intent::note_view(&click)).await {
                    Ok(()) => count(&state, OUTCOME_MODAL_OPENED),
                    Err(error) => {
                        // The person clicked to act: act without a note rather than not at all.
                        count(&state, OUTCOME_MODAL_FAILED);
                        tracing::warn!(%error, "slack note modal not opened; acting without a note");
                        act(state, click).await;
                    }
                }
            });
        }
        _ => {
            tokio::spawn(act(state, click));
        }
    }
    StatusCode::OK.into_response()
}

/// The outcome of acting on one click.
struct Outcome {
    /// Metric label.
    label: &'static str,
    /// Identity acted as (when mapped).
    identity: Option<Identity>,
    /// The message for the person.
    message: String,
    /// Whether it was done.
    accepted: bool,
    /// The Quarantine, when read.
    current: Option<Current>,
}

/// Acts on a verified click and answers it.
async fn act(state: Arc<Interactions>, click: Click) {
    let outcome = decide_and_write(&state, &click).await;
    count(&state, outcome.label);
    record_audit(&state, &click, &outcome).await;
    if let Some(url) = &click.response_url {
        let body = if outcome.accepted {
            // The original message is replaced: its buttons go, the new state and who did it
            // stay in the channel (decision 226).
            replaced_message(&click, &outcome, (state.now)())
        } else {
            json!({"replace_original": false, "response_type": "ephemeral", "text": outcome.message})
        };
        answer(&state.http, url, &body).await;
    }
}

/// The message that replaces the one clicked: what was done, by whom, from Slack, when.
fn replaced_message(click: &Click, outcome: &Outcome, now: i64) -> Value {
    let who = outcome
        .identity
        .as_ref()
        .map(|identity| identity.username.as_str())
        .unwrap_or_default();
    let state = match click.annotation {
        Annotation::Approve => "Approved: the deny is enforced once the approvals it needs are in",
        Annotation::Reject => "Rejected: nothing will be enforced",
        Annotation::Extend => "Extended: the deny is held longer",
        Annotation::Release => "Release requested: the deny is being removed",
    };
    let when = jiff::Timestamp::from_second(now)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default();
    json!({
        "replace_original": true,
        "response_type": "in_channel",
        "text": outcome.message,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{state}.*\n{}", outcome.message)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "Quarantine {}/{} · by {who} from Slack · {when}",
                click.target.namespace, click.target.name
            )}]}
        ]
    })
}

/// Posts one answer to `response_url`; failures are logged (the action stands either way).
async fn answer(http: &reqwest::Client, url: &str, body: &Value) {
    match http
        .post(url)
        .timeout(Duration::from_secs(10))
        .json(body)
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::warn!(
                status = response.status().as_u16(),
                "slack response_url refused the answer"
            )
        }
        Err(error) => {
            tracing::warn!(error = %error.without_url(), "failed to answer through slack response_url")
        }
    }
}

/// Maps, checks staleness, asks, decides and writes.
async fn decide_and_write(state: &Interactions, click: &Click) -> Outcome {
    let verb = click.annotation.verb();
    let name = &click.target.name;
    let mut outcome = Outcome {
        label: OUTCOME_UNMAPPED,
        identity: None,
        message: format!(
            "You are not mapped to a Kubernetes identity, so you cannot {verb} Quarantine {name} from Slack. Ask an administrator to add your Slack user id (or confirmed e-mail address) to slack.users, or use kubectl."
        ),
        accepted: false,
        current: None,
    };
    let resolved = resolve_identity(state, click).await;
    let current = match state
        .quarantines
        .current(&click.target.namespace, name)
        .await
    {
        Ok(current) => current,
        Err(error) => {
            // Unmapped users are refused as such even when the read fails.
            if !matches!(resolved, Ok(None)) {
                outcome.label = OUTCOME_ERROR;
                outcome.message = format!("Could not {verb} Quarantine {name}: {error}");
            }
            return outcome;
        }
    };
    outcome.current = current.clone();
    let identity = match resolved {
        Ok(Some(identity)) => identity,
        Ok(None) => return outcome,
        Err(error) => {
            // Fail closed: who the person is could not be established.
            outcome.label = OUTCOME_ERROR;
            outcome.message = format!(
                "Could not {verb} Quarantine {name}: your Slack e-mail address could not be looked up ({error}); try again, or use kubectl."
            );
            return outcome;
        }
    };
    outcome.identity = Some(identity.clone());
    if let Some(reason) = intent::stale(
        click,
        current
            .as_ref()
            .map(|current| (current.uid.as_str(), current.phase)),
    ) {
        outcome.label = OUTCOME_STALE;
        outcome.message = reason;
        return outcome;
    }
    let Some(current) = current else {
        return outcome;
    };
    let value = intent::annotation_value(
        &identity,
        click.annotation,
        &state.extend_by,
        click.note.as_deref(),
    );
    let request = intent::review_request(click, &identity, &current.policy, &value);
    let answers = ask(state.reviewer.as_ref(), &request).await;
    if let Verdict::Refuse(code, message) = review::decide(&request, &answers, &state.key) {
        outcome.label = if code == 503 {
            OUTCOME_UNAVAILABLE
        } else {
            OUTCOME_REFUSED
        };
        outcome.message = message;
        return outcome;
    }
    // Allowed: the value and a stamp naming the mapped user and the Slack channel, signed with
    // the webhook's key (release too: its stamp makes the history name the verified user).
    let stamp = state.key.sign_via(
        &click.target.uid,
        click.annotation.key(),
        &value,
        &identity,
        Some(crate::audit::CHANNEL_SLACK),
    );
    let annotations = BTreeMap::from([
        (click.annotation.key().to_string(), value),
        (stamp_key(click.annotation), stamp),
    ]);
    if let Err(error) = state
        .quarantines
        .annotate(
            &click.target.namespace,
            name,
            &click.target.uid,
            &annotations,
        )
        .await
    {
        outcome.label = OUTCOME_ERROR;
        outcome.message = format!("Could not {verb} Quarantine {name}: {error}");
        return outcome;
    }
    outcome.label = OUTCOME_ACCEPTED;
    outcome.accepted = true;
    outcome.message = match click.annotation {
        Annotation::Extend => format!(
            "{} extended Quarantine {name} by {} (from Slack).",
            identity.username, state.extend_by
        ),
        Annotation::Release => format!(
            "{} asked to release Quarantine {name} (from Slack).",
            identity.username
        ),
        Annotation::Approve => format!(
            "{} approved Quarantine {name} (from Slack).",
            identity.username
        ),
        Annotation::Reject => format!(
            "{} rejected Quarantine {name} (from Slack).",
            identity.username
        ),
    };
    outcome
}

/// Records the interaction for the audit trail: a structured log line and a Kubernetes Event on
/// the Quarantine now. The durable audit store writes its record here too (one call, when it
/// lands).
async fn record_audit(state: &Interactions, click: &Click, outcome: &Outcome) {
    let username = outcome
        .identity
        .as_ref()
        .map(|identity| identity.username.as_str())
        .unwrap_or("");
    tracing::info!(
        audit = true,
        channel = "slack",
        slack_user = %click.user_id,
        slack_team = %click.team_id,
        user = username,
        verb = click.annotation.verb(),
        namespace = %click.target.namespace,
        quarantine = %click.target.name,
        quarantine_uid = %click.target.uid,
        outcome = outcome.label,
        message = %outcome.message,
        "slack interaction"
    );
    if let (Some(outbox), false) = (&state.audit, outcome.accepted) {
        // A refused click leaves no history on the Quarantine: the controller's outbox keeps it,
        // in the Quarantine's partition (decision 225).
        let mut record = crate::controller::audit::controller_outbox::record(
            outbox.cluster(),
            reason_of(outcome.label),
            crate::audit::Actor {
                name: if username.is_empty() {
                    format!("slack:{}", click.user_id)
                } else {
                    username.to_string()
                },
                verified: false,
                channel: crate::audit::CHANNEL_SLACK.to_string(),
            },
            format!(
                "{} from Slack by {} ({}, team {}): {}",
                click.annotation.verb(),
                click.user_id,
                click.user_name,
                click.team_id,
                outcome.message
            ),
        );
        record.quarantine = Some(crate::audit::QuarantineRef {
            namespace: click.target.namespace.clone(),
            name: click.target.name.clone(),
            uid: click.target.uid.clone(),
        });
        record.policy = outcome.current.as_ref().map(|c| c.policy.clone());
        // Written before the person is answered, so a stop after the answer loses no refusal
        // (decision 237); a slow or failing write falls back to the queue.
        outbox.append_durably(record, Duration::from_secs(5)).await;
    }
    let (Some(recorder), Some(current)) = (&state.recorder, &outcome.current) else {
        return;
    };
    let note = format!(
        "Slack user {} ({}) as {:?}: {} — {}",
        click.user_id,
        click.user_name,
        username,
        click.annotation.verb(),
        outcome.message
    );
    let occurrence = Occurrence {
        severity: if outcome.accepted {
            Severity::Normal
        } else {
            Severity::Warning
        },
        reason: reason_of(outcome.label),
        action: "SlackInteraction",
        note: &note,
    };
    if let Err(error) = recorder.publish(&current.reference, &occurrence).await {
        tracing::warn!(%error, "failed to publish the slack interaction Event");
    }
}
