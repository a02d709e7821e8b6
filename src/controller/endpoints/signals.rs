//! The signal endpoints: `POST /sns` (Amazon SNS HTTP/S delivery, verified by `signal::sns`) and
//! `POST /events` (EventBridge API destinations, API key from a Secret), each bounded in body
//! size, read time and concurrency, both handing parsed signals to `SignalIntake`. It owns the
//! HTTP answer rules and the `signals_total` outcome labels; it must not evaluate policies, touch
//! AWS, or answer 2xx before intake returned Ok (except for authentic messages that can never be
//! used, which SNS must not retry forever).

use crate::http::listener::{ListenerError, ListenerLimits};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::certs::{
    CertificateError, CertificateFetcher, FetchedCertificate, FingerprintPinned, HttpsCertificates,
    HttpsSettings, PinnedCertificates,
};
use super::confirm::{ConfirmationLog, ConfirmationRecord, HttpsConfirmer, SubscriptionConfirmer};
use super::keys::{ApiKeySource, SecretApiKey, SecretKeyRef, SecretKeySettings};
use crate::controller::intake::{IntakeError, SignalIntake};
use crate::controller::poller::SubmittedSignals;
use crate::controller::signal::CostSignal;
use crate::controller::signal::parse::{self, Hint, ParseError};
use crate::controller::signal::sns::{
    CertificateSource, Envelope, MAX_ENVELOPE_BYTES, MessageType, ReplayCache, SnsError,
    ValidatedCertUrl, Verifier, VerifierConfig,
};
use crate::controller::velocity::{self, Tracker};
use crate::metrics::Metrics;

/// `source` label for `/sns`.
pub const SOURCE_SNS: &str = "sns";
/// `source` label for `/events`.
pub const SOURCE_EVENTS: &str = "events";

/// Outcome: intake returned Ok (2xx).
pub const OUTCOME_ACCEPTED: &str = "accepted";
/// Outcome: an authentic SNS message already accepted (redelivery), not processed again (2xx).
pub const OUTCOME_REPLAYED: &str = "replayed";
/// Outcome: authentic, but the payload can never become a usable signal (2xx, logged).
pub const OUTCOME_UNUSABLE: &str = "unusable";
/// Outcome: the body is not a well-formed envelope (400).
pub const OUTCOME_MALFORMED: &str = "malformed";
/// Outcome: the body is larger than the limit (413).
pub const OUTCOME_TOO_LARGE: &str = "too_large";
/// Outcome: the body did not arrive within the read timeout (408).
pub const OUTCOME_TIMEOUT: &str = "timeout";
/// Outcome: `/events` API key missing (401) or wrong (403).
pub const OUTCOME_UNAUTHORIZED: &str = "unauthorized";
/// Outcome: bad signature, untrusted certificate URL or unusable certificate (403).
pub const OUTCOME_BAD_SIGNATURE: &str = "bad_signature";
/// Outcome: the TopicArn is not in the allowlist (403).
pub const OUTCOME_TOPIC_NOT_ALLOWED: &str = "topic_not_allowed";
/// Outcome: the SNS timestamp is too old or too far in the future (403).
pub const OUTCOME_STALE: &str = "stale";
/// Outcome: too many requests in flight (503).
pub const OUTCOME_OVERLOADED: &str = "overloaded";
/// Outcome: a transient failure (intake, certificate fetch, key source); the sender retries (503).
pub const OUTCOME_RETRY_LATER: &str = "retry_later";
/// Outcome: an SNS subscription was confirmed (2xx).
pub const OUTCOME_SUBSCRIPTION_CONFIRMED: &str = "subscription_confirmed";
/// Outcome: confirming an SNS subscription failed; SNS re-sends (503).
pub const OUTCOME_CONFIRMATION_FAILED: &str = "confirmation_failed";
/// Outcome: a subscription confirmation was recorded but not visited (confirmation disabled) (2xx).
pub const OUTCOME_SUBSCRIPTION_IGNORED: &str = "subscription_ignored";
/// Outcome: an UnsubscribeConfirmation was recorded (2xx; nothing is visited).
pub const OUTCOME_UNSUBSCRIBE_NOTED: &str = "unsubscribe_noted";

/// Every outcome label the endpoints use (the documented, fixed set).
pub const OUTCOMES: &[&str] = &[
    OUTCOME_ACCEPTED,
    OUTCOME_REPLAYED,
    OUTCOME_UNUSABLE,
    OUTCOME_MALFORMED,
    OUTCOME_TOO_LARGE,
    OUTCOME_TIMEOUT,
    OUTCOME_UNAUTHORIZED,
    OUTCOME_BAD_SIGNATURE,
    OUTCOME_TOPIC_NOT_ALLOWED,
    OUTCOME_STALE,
    OUTCOME_OVERLOADED,
    OUTCOME_RETRY_LATER,
    OUTCOME_SUBSCRIPTION_CONFIRMED,
    OUTCOME_CONFIRMATION_FAILED,
    OUTCOME_SUBSCRIPTION_IGNORED,
    OUTCOME_UNSUBSCRIBE_NOTED,
];

/// The default API key header for `/events`.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// Why the signal endpoints could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SignalsError {
    /// A setting is invalid.
    #[error("invalid signals setting {field}: {message}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The HTTPS client for certificates or confirmations could not be built.
    #[error("failed to build the HTTPS client: {0}")]
    Https(String),
    /// The listener failed.
    #[error("signals listener failed: {0}")]
    Io(#[from] std::io::Error),
    /// The shared listener stopped with an error.
    #[error("signals listener failed")]
    Listener(#[from] ListenerError),
}

impl SignalsError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SignalsError::Setting { .. } => "Setting",
            SignalsError::Https(_) => "Https",
            SignalsError::Io(_) => "Io",
            SignalsError::Listener(e) => e.category(),
        }
    }
}

/// `/sns` settings (config file section `signals.sns`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SnsSettings {
    /// Exact TopicArns accepted; empty accepts nothing.
    pub allowed_topics: Vec<String>,
    /// Oldest accepted message age (`1h`).
    pub max_age: SignedDuration,
    /// Largest accepted clock skew into the future (`5m`; at most `1h`, decision 095).
    pub max_future_skew: SignedDuration,
    /// MessageIds remembered for replay protection (kept at least `maxAge`).
    pub replay_capacity: usize,
    /// Visit `SubscribeURL` of verified confirmations for allowed topics (else only record them).
    pub confirm_subscriptions: bool,
    /// How many subscription events are kept for operators.
    pub confirmation_log_size: usize,
    /// A directory of pinned signing certificates (`SimpleNotificationService-<id>.pem` files, a
    /// mounted Secret); when set, certificates are never fetched and a `SigningCertURL` not pinned
    /// is refused (decision 204).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_certificates_dir: Option<std::path::PathBuf>,
    /// SHA-256 fingerprints (hex, colons allowed); when set, only certificates with one of them
    /// verify, pinned or fetched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinned_fingerprints: Vec<String>,
}

impl Default for SnsSettings {
    fn default() -> Self {
        SnsSettings {
            allowed_topics: Vec::new(),
            max_age: SignedDuration::from_hours(1),
            max_future_skew: SignedDuration::from_mins(5),
            replay_capacity: 100_000,
            confirm_subscriptions: true,
            confirmation_log_size: 20,
            pinned_certificates_dir: None,
            pinned_fingerprints: Vec::new(),
        }
    }
}

/// `/events` settings (config file section `signals.events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EventsSettings {
    /// The Secret holding the API key; `/events` is not served without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<SecretKeyRef>,
    /// The request header carrying the key.
    pub api_key_header: String,
    /// Re-read the Secret after this long (`30s`).
    pub key_refresh: SignedDuration,
    /// Keep accepting the previous key this long after a rotation (`5m`).
    pub previous_key_grace: SignedDuration,
}

impl Default for EventsSettings {
    fn default() -> Self {
        EventsSettings {
            api_key_secret: None,
            api_key_header: DEFAULT_API_KEY_HEADER.to_string(),
            key_refresh: SignedDuration::from_secs(30),
            previous_key_grace: SignedDuration::from_mins(5),
        }
    }
}

/// Settings of the signals listener (config file section `signals`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SignalSettings {
    /// `/sns`.
    pub sns: SnsSettings,
    /// `/events`.
    pub events: EventsSettings,
    /// Requests handled at once across both endpoints; more get 503.
    pub max_concurrency: usize,
    /// Largest request body (bytes); larger gets 413.
    pub max_body_bytes: usize,
    /// Time allowed to receive a body (`10s`); slower gets 408.
    pub body_timeout: SignedDuration,
    /// Time allowed for intake to create the Quarantines (`30s`); slower gets 503.
    pub intake_timeout: SignedDuration,
    /// Time allowed to send the request headers (`10s`); slower connections are closed.
    pub header_read_timeout: SignedDuration,
    /// Open connections at most (`512`); further ones wait in the accept backlog.
    pub max_connections: usize,
}

impl Default for SignalSettings {
    fn default() -> Self {
        SignalSettings {
            sns: SnsSettings::default(),
            events: EventsSettings::default(),
            max_concurrency: 64,
            max_body_bytes: MAX_ENVELOPE_BYTES,
            body_timeout: SignedDuration::from_secs(10),
            intake_timeout: SignedDuration::from_secs(30),
            header_read_timeout: SignedDuration::from_secs(10),
            max_connections: 512,
        }
    }
}

fn std_duration(field: &'static str, value: SignedDuration) -> Result<Duration, SignalsError> {
    Duration::try_from(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| SignalsError::Setting {
            field,
            message: format!("{value:#} must be positive"),
        })
}

/// A clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Everything the handlers share.
pub struct SignalState {
    intake: Arc<dyn SignalIntake>,
    metrics: Arc<Metrics>,
    verifier: VerifierConfig,
    replay: Mutex<ReplayCache>,
    /// MessageIds whose first delivery is being handled right now (decision 092).
    in_flight: Mutex<std::collections::HashSet<String>>,
    certificates: Arc<dyn CertificateFetcher>,
    confirmer: Option<Arc<dyn SubscriptionConfirmer>>,
    confirmations: ConfirmationLog,
    api_keys: Option<Arc<dyn ApiKeySource>>,
    api_key_header: HeaderName,
    permits: Arc<Semaphore>,
    max_body_bytes: usize,
    body_timeout: Duration,
    intake_timeout: Duration,
    limits: ListenerLimits,
    clock: Clock,
    /// The instant `/sns` verifies message age and certificate validity at: the system clock,
    /// or the test clock file in debug builds (decisions 203, 250).
    sns_clock: crate::controller::clock::EvaluationClock,
    submitted: Option<Arc<SubmittedSignals>>,
    /// The spend-velocity estimator, when `velocity.enabled` (decision 174).
    velocity: Option<Arc<Tracker>>,
    /// IAM change events: the quarantines they touch are checked at once (decision 200).
    drift: Option<super::drift::DriftRepair>,
    recent: Arc<super::recent::RecentSignals>,
    /// Further routes served on this listener (`/slack/interactions`, decision 230).
    extra_routes: Option<Router>,
}

impl SignalState {
    /// State over the given parts; subscriptions are not confirmed and `/events` is not served
    /// until [`with_confirmer`](Self::with_confirmer) / [`with_api_keys`](Self::with_api_keys).
    pub fn new(
        settings: &SignalSettings,
        intake: Arc<dyn SignalIntake>,
        metrics: Arc<Metrics>,
        certificates: Arc<dyn CertificateFetcher>,
    ) -> Result<Self, SignalsError> {
        if settings.max_concurrency == 0 {
            return Err(SignalsError::Setting {
                field: "maxConcurrency",
                message: "must be at least 1".into(),
            });
        }
        if settings.max_body_bytes == 0 {
            return Err(SignalsError::Setting {
                field: "maxBodyBytes",
                message: "must be at least 1".into(),
            });
        }
        let api_key_header = HeaderName::from_bytes(settings.events.api_key_header.as_bytes())
            .map_err(|e| SignalsError::Setting {
                field: "events.apiKeyHeader",
                message: e.to_string(),
            })?;
        let max_age = std_duration("sns.maxAge", settings.sns.max_age)?;
        let skew = settings.sns.max_future_skew.abs();
        if skew > MAX_FUTURE_SKEW_LIMIT {
            return Err(SignalsError::Setting {
                field: "sns.maxFutureSkew",
                message: format!(
                    "{skew:#} is more than the {MAX_FUTURE_SKEW_LIMIT:#} allowed (a message dated ahead stays acceptable that long)"
                ),
            });
        }
        let mut verifier = VerifierConfig::new(settings.sns.allowed_topics.iter().cloned());
        verifier.max_age = settings.sns.max_age;
        verifier.max_future_skew = skew;
        // A message is acceptable from `Timestamp - maxFutureSkew` until `Timestamp + maxAge`:
        // keep its id for that whole window plus a margin, so no redelivery inside it is new.
        let retention = SignedDuration::try_from(max_age + Duration::from_secs(600))
            .unwrap_or(settings.sns.max_age)
            .saturating_add(skew);
        Ok(SignalState {
            intake,
            metrics,
            verifier,
            replay: Mutex::new(ReplayCache::new(settings.sns.replay_capacity, retention)),
            in_flight: Mutex::new(std::collections::HashSet::new()),
            certificates,
            confirmer: None,
            confirmations: ConfirmationLog::new(settings.sns.confirmation_log_size),
            api_keys: None,
            api_key_header,
            permits: Arc::new(Semaphore::new(settings.max_concurrency)),
            max_body_bytes: settings.max_body_bytes,
            body_timeout: std_duration("bodyTimeout", settings.body_timeout)?,
            intake_timeout: std_duration("intakeTimeout", settings.intake_timeout)?,
            limits: ListenerLimits {
                header_read_timeout: std_duration(
                    "headerReadTimeout",
                    settings.header_read_timeout,
                )?,
                max_connections: match settings.max_connections {
                    0 => {
                        return Err(SignalsError::Setting {
                            field: "maxConnections",
                            message: "must be at least 1".into(),
                        });
                    }
                    n => n,
                },
                ..ListenerLimits::default()
            },
            clock: Arc::new(Timestamp::now),
            sns_clock: crate::controller::clock::EvaluationClock::System,
            submitted: None,
            velocity: None,
            drift: None,
            recent: Arc::new(super::recent::RecentSignals::default()),
            extra_routes: None,
        })
    }

    /// Production state: HTTPS certificate fetcher and confirmer, and (when configured) the API
    /// key from its Secret (namespace defaulting to `namespace`).
    pub fn production(
        settings: &SignalSettings,
        client: kube::Client,
        namespace: &str,
        intake: Arc<dyn SignalIntake>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SignalsError> {
        let https = HttpsSettings::default();
        let certificates = pinned_or_fetched(&settings.sns, &https, &metrics)?;
        let mut state = SignalState::new(settings, intake, metrics, certificates)?;
        if settings.sns.confirm_subscriptions {
            let confirmer =
                HttpsConfirmer::new(&https).map_err(|e| SignalsError::Https(e.to_string()))?;
            state = state.with_confirmer(Arc::new(confirmer));
        }
        if let Some(reference) = &settings.events.api_key_secret {
            let key_settings = SecretKeySettings {
                refresh: std_duration("events.keyRefresh", settings.events.key_refresh)?,
                previous_key_grace: Duration::try_from(settings.events.previous_key_grace)
                    .unwrap_or_default(),
                ..SecretKeySettings::default()
            };
            state = state.with_api_keys(SecretApiKey::new(
                client,
                reference,
                namespace,
                key_settings,
            ));
        }
        Ok(state)
    }

    /// Confirms verified subscriptions for allowed topics through `confirmer`.
    pub fn with_confirmer(mut self, confirmer: Arc<dyn SubscriptionConfirmer>) -> Self {
        self.confirmer = Some(confirmer);
        self
    }

    /// Serves `/events`, authenticated by the keys from `keys`.
    pub fn with_api_keys(mut self, keys: Arc<dyn ApiKeySource>) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// Records every accepted signal in `submitted`, so the poller does not submit it again.
    pub fn with_submitted(mut self, submitted: Arc<SubmittedSignals>) -> Self {
        self.submitted = Some(submitted);
        self
    }

    /// Reads CloudTrail API call events (on `/events` and `/sns`) into `tracker`.
    pub fn with_velocity(mut self, tracker: Arc<Tracker>) -> Self {
        self.velocity = Some(tracker);
        self
    }

    /// Reads IAM CloudTrail events (on `/events` and `/sns`) and has the quarantines they touch,
    /// found in `stores`, checked for drift at once.
    pub fn with_drift_repair(mut self, stores: super::super::reconcile::Stores) -> Self {
        self.drift = Some(super::drift::DriftRepair::new(stores, self.metrics.clone()));
        self
    }

    /// Serves `routes` on this listener too, with the same listener limits.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Verifies `/sns` deliveries at `clock`'s instant (the test clock file of decision 203 in
    /// the test suite; [`EvaluationClock::System`](crate::controller::clock::EvaluationClock)
    /// keeps [`with_clock`](Self::with_clock)'s clock).
    pub fn with_sns_clock(mut self, clock: crate::controller::clock::EvaluationClock) -> Self {
        self.sns_clock = clock;
        self
    }

    /// The latest deliveries and their answers (the dashboard's Signals page).
    pub fn recent(&self) -> Arc<super::recent::RecentSignals> {
        self.recent.clone()
    }

    /// The latest subscription events, newest last.
    pub fn confirmations(&self) -> Vec<ConfirmationRecord> {
        self.confirmations.records()
    }

    /// MessageIds dropped from the replay cache before their retention ended (cache full).
    pub fn replay_evictions(&self) -> u64 {
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .evicted_early()
    }
}

/// The signals router: `POST /sns`, and `POST /events` when an API key source is set.
pub fn router(state: Arc<SignalState>) -> Router {
    let mut router = Router::new().route("/sns", post(sns));
    if state.api_keys.is_some() {
        router = router.route("/events", post(events));
    }
    let extra = state.extra_routes.clone();
    let router = router.with_state(state);
    match extra {
        Some(routes) => router.merge(routes),
        None => router,
    }
}

/// `GET /sns/confirmations`: the latest subscription events as JSON. Meant for the internal
/// operations listener, not the Internet-facing signals listener.
pub fn confirmations_router(state: Arc<SignalState>) -> Router {
    Router::new()
        .route(
            "/sns/confirmations",
            get(|State(state): State<Arc<SignalState>>| async move {
                axum::Json(state.confirmations())
            }),
        )
        .with_state(state)
}

/// `GET /velocity`: every principal's committed hourly burn as JSON (operators, tests). Meant for
/// the internal operations listener, not the Internet-facing signals listener.
pub fn velocity_router(tracker: Arc<Tracker>) -> Router {
    Router::new()
        .route(
            "/velocity",
            get(|State(tracker): State<Arc<Tracker>>| async move {
                axum::Json(serde_json::json!({
                    "priceSnapshot": tracker.snapshot_date(),
                    "principals": tracker.burns(),
                }))
            }),
        )
        .with_state(tracker)
}

/// Serves the signals router on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<SignalState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), SignalsError> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?address, "serving /sns and /events");
    let limits = state.limits;
    crate::http::listener::serve(listener, router(state), limits, shutdown).await?;
    Ok(())
}

/// What the endpoint answers, and how it is counted.
struct Answer {
    status: StatusCode,
    outcome: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct AnswerBody<'a> {
    outcome: &'a str,
    reason: &'a str,
}

impl Answer {
    fn new(status: StatusCode, outcome: &'static str, reason: impl Into<String>) -> Self {
        Answer {
            status,
            outcome,
            reason: reason.into(),
        }
    }
}

fn finish(state: &SignalState, source: &'static str, started: Instant, answer: Answer) -> Response {
    state
        .metrics
        .signals
        .with_label_values(&[source, answer.outcome])
        .inc();
    state
        .metrics
        .signal_request_duration
        .with_label_values(&[source])
        .observe(started.elapsed().as_secs_f64());
    let reason: String = answer.reason.chars().take(512).collect();
    state.recent.record(super::recent::Delivery {
        at: (state.clock)(),
        endpoint: source.to_string(),
        outcome: answer.outcome.to_string(),
        status: answer.status.as_u16(),
        accepted: answer.outcome == OUTCOME_ACCEPTED,
        reason: reason.clone(),
    });
    if answer.status.is_success() {
        tracing::info!(source, outcome = answer.outcome, status = answer.status.as_u16(), %reason, "signal delivery");
    } else {
        tracing::warn!(source, outcome = answer.outcome, status = answer.status.as_u16(), %reason, "signal delivery refused");
    }
    let body = AnswerBody {
        outcome: answer.outcome,
        reason: &reason,
    };
    let mut response = (answer.status, axum::Json(body)).into_response();
    if matches!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        // The body may be left unread: the connection cannot carry another request, and saying
        // so keeps a client from sending its next request into a connection being closed.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Reads the body within the size and time limits.
async fn read_body(
    state: &SignalState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, Answer> {
    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            OUTCOME_TOO_LARGE,
            format!("body exceeds {limit} bytes"),
        ));
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buffer = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Answer::new(
                    StatusCode::BAD_REQUEST,
                    OUTCOME_MALFORMED,
                    format!("failed to read body: {e}"),
                )
            })?;
            if buffer.len() + chunk.len() > limit {
                return Err(Answer::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    OUTCOME_TOO_LARGE,
                    format!("body exceeds {limit} bytes"),
                ));
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer)
    };
    match tokio::time::timeout(state.body_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(Answer::new(
            StatusCode::REQUEST_TIMEOUT,
            OUTCOME_TIMEOUT,
            "body not received in time",
        )),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Answer> {
    std::str::from_utf8(bytes).map_err(|e| {
        Answer::new(
            StatusCode::BAD_REQUEST,
            OUTCOME_MALFORMED,
            format!("body is not UTF-8: {e}"),
        )
    })
}

fn overloaded() -> Answer {
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        OUTCOME_OVERLOADED,
        "too many signal requests in flight",
    )
}

/// The answer for an SNS verification error.
fn sns_rejection(error: &SnsError) -> Answer {
    let (status, outcome) = match error {
        SnsError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, OUTCOME_TOO_LARGE),
        SnsError::MalformedEnvelope(_)
        | SnsError::UnsupportedType(_)
        | SnsError::UnsupportedSignatureVersion(_) => (StatusCode::BAD_REQUEST, OUTCOME_MALFORMED),
        SnsError::UntrustedUrl { .. } | SnsError::BadCertificate(_) | SnsError::BadSignature => {
            (StatusCode::FORBIDDEN, OUTCOME_BAD_SIGNATURE)
        }
        SnsError::TopicNotAllowed(_) => (StatusCode::FORBIDDEN, OUTCOME_TOPIC_NOT_ALLOWED),
        SnsError::StaleTimestamp { .. } | SnsError::FutureTimestamp(_) => {
            (StatusCode::FORBIDDEN, OUTCOME_STALE)
        }
        SnsError::CertificateUnavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, OUTCOME_RETRY_LATER)
        }
        SnsError::Replayed(_) => (StatusCode::OK, OUTCOME_REPLAYED),
    };
    Answer::new(status, outcome, format!("{}: {error}", error.category()))
}

/// Marker answer of the first verification pass (everything before the certificate passed).
const NOT_FETCHED_YET: &str = "certificate not fetched yet";

/// A certificate source for the first pass: answers nothing, so `verify` stops right before the
/// signature check once the shape, URL, topic and time checks passed (no fetch for the rest).
struct NotFetchedYet;

impl CertificateSource for NotFetchedYet {
    fn certificate(&self, _url: &ValidatedCertUrl) -> Result<Vec<u8>, String> {
        Err(NOT_FETCHED_YET.to_string())
    }
}

/// Runs the verifier's checks: shape, URLs, topic and time first (no network), then fetches the
/// certificate and checks the signature. Replay is checked separately, on the shared cache.
async fn verify_sns(state: &SignalState, body: &str, now: Timestamp) -> Result<Envelope, Answer> {
    let mut scratch = ReplayCache::new(1, SignedDuration::ZERO);
    let first =
        Verifier::new(state.verifier.clone(), NotFetchedYet).verify(body, now, &mut scratch);
    let envelope = match first {
        Err(SnsError::CertificateUnavailable(message)) if message == NOT_FETCHED_YET => {
            Envelope::parse(body).map_err(|e| sns_rejection(&e))?
        }
        Err(error) => return Err(sns_rejection(&error)),
        Ok(_) => {
            return Err(Answer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                OUTCOME_RETRY_LATER,
                "verifier accepted a message without a certificate",
            ));
        }
    };
    let url = envelope.signing_cert_url.clone();
    let pem = state
        .certificates
        .fetch(&url)
        .await
        .map_err(|error: CertificateError| {
            if error.is_permanent() {
                Answer::new(
                    StatusCode::FORBIDDEN,
                    OUTCOME_BAD_SIGNATURE,
                    format!("BadCertificate: {error}"),
                )
            } else {
                sns_rejection(&SnsError::CertificateUnavailable(error.to_string()))
            }
        })?;
    let mut scratch = ReplayCache::new(1, SignedDuration::ZERO);
    Verifier::new(state.verifier.clone(), FetchedCertificate::new(url, pem))
        .verify(body, now, &mut scratch)
        .map_err(|e| sns_rejection(&e))
}

/// The certificate source `sns` asks for: the pinned directory (never fetching) or the HTTPS
/// fetcher, and in either case only certificates with a pinned fingerprint when any are listed.
fn pinned_or_fetched(
    sns: &SnsSettings,
    https: &HttpsSettings,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn CertificateFetcher>, SignalsError> {
    let source: Arc<dyn CertificateFetcher> = match &sns.pinned_certificates_dir {
        Some(dir) => {
            let pinned = PinnedCertificates::load_dir(dir).map_err(|e| SignalsError::Setting {
                field: "sns.pinnedCertificatesDir",
                message: e.to_string(),
            })?;
            tracing::info!(
                dir = %dir.display(),
                certificates = ?pinned.file_names().collect::<Vec<_>>(),
                "SNS signing certificates are pinned: none will be fetched"
            );
            let now = Timestamp::now();
            for (file, from, until) in pinned.validity() {
                if now < from || now > until {
                    // Not fatal: other pinned certificates may be current. Messages naming this
                    // one are refused with the period in the reason (decision 250).
                    tracing::warn!(
                        file,
                        not_before = %from,
                        not_after = %until,
                        "pinned SNS certificate is outside its validity period: messages it signed are refused; pin the certificate SNS uses now"
                    );
                } else {
                    tracing::info!(file, not_after = %until, "pinned SNS certificate");
                }
            }
            Arc::new(pinned)
        }
        None => Arc::new(
            HttpsCertificates::new(https.clone(), Some(metrics.clone()))
                .map_err(|e| SignalsError::Https(e.to_string()))?,
        ),
    };
    if sns.pinned_fingerprints.is_empty() {
        return Ok(source);
    }
    let pinned = FingerprintPinned::new(source, &sns.pinned_fingerprints).map_err(|e| {
        SignalsError::Setting {
            field: "sns.pinnedFingerprints",
            message: e.to_string(),
        }
    })?;
    Ok(Arc::new(pinned))
}

/// The largest `sns.maxFutureSkew` accepted.
pub const MAX_FUTURE_SKEW_LIMIT: SignedDuration = SignedDuration::from_hours(1);

/// A MessageId claimed by the delivery handling it; released when dropped (also when the client
/// disconnects and the handler's future is dropped), so a redelivery is handled again.
struct InFlight<'a> {
    state: &'a SignalState,
    message_id: String,
}

impl<'a> InFlight<'a> {
    /// Claims `message_id`; `None` when another delivery of it is being handled.
    fn claim(state: &'a SignalState, message_id: &str) -> Option<InFlight<'a>> {
        let fresh = state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(message_id.to_string());
        fresh.then(|| InFlight {
            state,
            message_id: message_id.to_string(),
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.message_id);
    }
}

/// Hands a signal to intake and maps the result to an answer.
async fn submit(state: &SignalState, source: &'static str, signal: &CostSignal) -> Answer {
    let result = tokio::time::timeout(state.intake_timeout, state.intake.submit(signal)).await;
    match result {
        Ok(Ok(report)) => {
            if let Some(submitted) = &state.submitted {
                submitted.record(&signal.id, signal.impact_usd);
            }
            let created: Vec<&str> = report
                .created()
                .filter_map(|o| o.quarantine.as_deref())
                .collect();
            let matched = report
                .outcomes
                .iter()
                .filter(|o| o.quarantine.is_some())
                .count();
            tracing::info!(
                source,
                signal = %signal.id,
                account = %signal.account_id,
                policies = report.policies(),
                matched,
                created = ?created,
                "signal handed to intake"
            );
            Answer::new(
                StatusCode::OK,
                OUTCOME_ACCEPTED,
                format!(
                    "signal {} evaluated by {} policies; {} quarantines matched, {} created",
                    signal.id,
                    report.policies(),
                    matched,
                    created.len()
                ),
            )
        }
        Ok(Err(error @ IntakeError::Invalid(_))) => Answer::new(
            StatusCode::OK,
            OUTCOME_UNUSABLE,
            format!("signal {} can never be used: {error}", signal.id),
        ),
        Ok(Err(error)) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            OUTCOME_RETRY_LATER,
            format!("{}: {error}", error.category()),
        ),
        Err(_) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            OUTCOME_RETRY_LATER,
            "intake did not finish in time",
        ),
    }
}

/// Counts one CloudTrail event in the velocity estimator and hands any crossing to intake. The
/// event is answered 2xx only once every signal it produced was taken by intake; otherwise the
/// sender retries, the retry is a duplicate `eventID`, and the estimator hands the same signal
/// over again (decision 174).
async fn track(
    state: &SignalState,
    tracker: &Tracker,
    source: &'static str,
    text: &str,
    malformed: StatusCode,
) -> Answer {
    if !tracker.is_counting() {
        // Decision 177: one estimator counts every event; a standby makes the sender retry, and
        // the retry reaches the leader (or this replica once it leads).
        return Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            OUTCOME_RETRY_LATER,
            "velocity events are counted by the leader replica; retry",
        );
    }
    let now = (state.clock)();
    let observation = match tracker.observe(text, now) {
        Ok(observation) => observation,
        Err(error) => {
            let outcome = if malformed.is_success() {
                OUTCOME_UNUSABLE
            } else {
                OUTCOME_MALFORMED
            };
            return Answer::new(malformed, outcome, format!("Malformed: {error}"));
        }
    };
    let burns: Vec<String> = observation
        .burns
        .iter()
        .map(|b| {
            let mut text = format!(
                "{} in {}: USD {:.2}/hour from {} running resource(s)",
                b.principal, b.account, b.usd_per_hour, b.resources
            );
            if b.unpriced > 0 {
                text.push_str(&format!(" ({} of unknown price)", b.unpriced));
            }
            text
        })
        .collect();
    let mut taken = Vec::new();
    for signal in &observation.signals {
        let answer = submit(state, source, signal).await;
        match answer.outcome {
            OUTCOME_ACCEPTED | OUTCOME_UNUSABLE => {
                tracker.acknowledge(&signal.id);
                taken.push(answer.reason);
            }
            _ => {
                return Answer::new(
                    answer.status,
                    answer.outcome,
                    format!(
                        "velocity signal {} not taken yet: {}",
                        signal.id, answer.reason
                    ),
                );
            }
        }
    }
    let (outcome, what) = match &observation.outcome {
        velocity::Outcome::Duplicate => (OUTCOME_REPLAYED, "already counted".to_string()),
        velocity::Outcome::Ignored(why) => (OUTCOME_UNUSABLE, why.describe()),
        velocity::Outcome::Counted => (OUTCOME_ACCEPTED, "counted".to_string()),
    };
    let mut reason = format!("velocity: {what}");
    if !burns.is_empty() {
        reason.push_str(&format!("; {}", burns.join("; ")));
    }
    if !taken.is_empty() {
        reason.push_str(&format!("; {}", taken.join("; ")));
    }
    Answer::new(StatusCode::OK, outcome, reason)
}

/// An IAM CloudTrail event, when drift repair is on and `text` is one: its answer. A malformed
/// event gets `malformed` (the status the caller passes: 400 on `/events`, 200 for an authentic
/// SNS message, which must not be redelivered).
fn iam_change(state: &SignalState, text: &str, malformed: StatusCode) -> Option<Answer> {
    use super::drift::{DriftRepair, Reply};
    let drift = state.drift.as_ref()?;
    if !velocity::event::is_cloudtrail_event(text) {
        return None;
    }
    let event: serde_json::Value = serde_json::from_str(text).ok()?;
    if !DriftRepair::wants(&event) {
        return None;
    }
    Some(match drift.handle(&event) {
        Reply::Malformed(reason) => {
            let outcome = if malformed.is_success() {
                OUTCOME_UNUSABLE
            } else {
                OUTCOME_MALFORMED
            };
            Answer::new(malformed, outcome, reason)
        }
        Reply::Ignored(reason) | Reply::Unheld(reason) => {
            Answer::new(StatusCode::OK, OUTCOME_UNUSABLE, reason)
        }
        Reply::Checking(reason) => Answer::new(StatusCode::OK, OUTCOME_ACCEPTED, reason),
        Reply::RetryLater(reason) => {
            Answer::new(StatusCode::SERVICE_UNAVAILABLE, OUTCOME_RETRY_LATER, reason)
        }
    })
}

fn unusable(error: &ParseError) -> Answer {
    Answer::new(
        StatusCode::OK,
        OUTCOME_UNUSABLE,
        format!("{}: {error}", error.category()),
    )
}

async fn sns(State(state): State<Arc<SignalState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        return finish(&state, SOURCE_SNS, started, overloaded());
    };
    let answer = handle_sns(&state, &headers, body).await;
    finish(&state, SOURCE_SNS, started, answer)
}

async fn handle_sns(state: &SignalState, headers: &HeaderMap, body: Body) -> Answer {
    let bytes = match read_body(state, headers, body).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let text = match utf8(&bytes) {
        Ok(text) => text,
        Err(answer) => return answer,
    };
    let now = match &state.sns_clock {
        crate::controller::clock::EvaluationClock::System => (state.clock)(),
        test_clock => match test_clock.now() {
            Ok(now) => now,
            // Never the system time instead (decision 203): the sender retries.
            Err(error) => {
                return Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    OUTCOME_RETRY_LATER,
                    error.to_string(),
                );
            }
        },
    };
    let envelope = match verify_sns(state, text, now).await {
        Ok(envelope) => envelope,
        Err(answer) => return answer,
    };
    // Decision 092: a MessageId is recorded only once its handling reached a final answer; a
    // delivery overlapping one still in progress is asked to retry (503), never told "replayed".
    let seen = state
        .replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(&envelope.message_id, now);
    if let Err(error) = seen {
        return sns_rejection(&error);
    }
    let Some(_claim) = InFlight::claim(state, &envelope.message_id) else {
        return Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            OUTCOME_RETRY_LATER,
            format!(
                "message {} is being handled by an earlier delivery; retry later",
                envelope.message_id
            ),
        );
    };
    let answer = handle_envelope(state, &envelope, now).await;
    if !answer.status.is_server_error() {
        // The claim makes this the only delivery that can record the id.
        let _ = state
            .replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_and_insert(&envelope.message_id, now);
    }
    answer
}

/// Handles a verified, not yet seen SNS message.
async fn handle_envelope(state: &SignalState, envelope: &Envelope, now: Timestamp) -> Answer {
    match envelope.message_type {
        MessageType::Notification => {
            if let Some(answer) = iam_change(state, &envelope.message, StatusCode::OK) {
                return answer;
            }
            if let Some(tracker) = &state.velocity
                && velocity::event::is_cloudtrail_event(&envelope.message)
            {
                // An authentic message that is not a readable event is never retried (200).
                return track(
                    state,
                    tracker,
                    SOURCE_SNS,
                    &envelope.message,
                    StatusCode::OK,
                )
                .await;
            }
            let hint = Hint {
                format: parse::Format::Auto,
                delivered_at: Some(envelope.timestamp),
            };
            let signal = match parse::parse(&envelope.message, &hint) {
                Ok(signal) => signal,
                Err(error) => return unusable(&error),
            };
            submit(state, SOURCE_SNS, &signal).await
        }
        MessageType::SubscriptionConfirmation => confirm(state, envelope, now).await,
        MessageType::UnsubscribeConfirmation => {
            state.confirmations.push(ConfirmationRecord {
                at: now,
                topic_arn: envelope.topic_arn.clone(),
                message_type: envelope.message_type.as_str().to_string(),
                result: "noted".into(),
                subscription_arn: None,
                error: None,
            });
            Answer::new(
                StatusCode::OK,
                OUTCOME_UNSUBSCRIBE_NOTED,
                format!("unsubscribed from {}", envelope.topic_arn),
            )
        }
    }
}

async fn confirm(state: &SignalState, envelope: &Envelope, now: Timestamp) -> Answer {
    let record = |result: &str, subscription_arn: Option<String>, error: Option<String>| {
        ConfirmationRecord {
            at: now,
            topic_arn: envelope.topic_arn.clone(),
            message_type: envelope.message_type.as_str().to_string(),
            result: result.to_string(),
            subscription_arn,
            error,
        }
    };
    let (Some(confirmer), Some(url)) = (&state.confirmer, &envelope.subscribe_url) else {
        state.confirmations.push(record("ignored", None, None));
        return Answer::new(
            StatusCode::OK,
            OUTCOME_SUBSCRIPTION_IGNORED,
            format!(
                "subscription to {} not confirmed automatically (confirm it with its SubscribeURL)",
                envelope.topic_arn
            ),
        );
    };
    match confirmer.confirm(url).await {
        Ok(subscription_arn) => {
            state
                .confirmations
                .push(record("confirmed", subscription_arn.clone(), None));
            Answer::new(
                StatusCode::OK,
                OUTCOME_SUBSCRIPTION_CONFIRMED,
                format!(
                    "subscription to {} confirmed{}",
                    envelope.topic_arn,
                    subscription_arn
                        .map(|arn| format!(" as {arn}"))
                        .unwrap_or_default()
                ),
            )
        }
        Err(error) => {
            state
                .confirmations
                .push(record("failed", None, Some(error.to_string())));
            Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                OUTCOME_CONFIRMATION_FAILED,
                format!("{}: {error}", error.category()),
            )
        }
    }
}

async fn events(State(state): State<Arc<SignalState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        return finish(&state, SOURCE_EVENTS, started, overloaded());
    };
    let answer = handle_events(&state, &headers, body).await;
    finish(&state, SOURCE_EVENTS, started, answer)
}

async fn handle_events(state: &SignalState, headers: &HeaderMap, body: Body) -> Answer {
    let Some(source) = &state.api_keys else {
        return Answer::new(
            StatusCode::NOT_FOUND,
            OUTCOME_UNAUTHORIZED,
            "/events is not configured",
        );
    };
    let Some(presented) = headers.get(&state.api_key_header) else {
        return Answer::new(
            StatusCode::UNAUTHORIZED,
            OUTCOME_UNAUTHORIZED,
            format!("missing {} header", state.api_key_header),
        );
    };
    let keys = match source.keys().await {
        Ok(keys) => keys,
        Err(error) => {
            return Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                OUTCOME_RETRY_LATER,
                format!("API key unavailable: {}: {error}", error.category()),
            );
        }
    };
    if !keys.accepts(presented.as_bytes()) {
        return Answer::new(
            StatusCode::FORBIDDEN,
            OUTCOME_UNAUTHORIZED,
            format!("wrong {} header", state.api_key_header),
        );
    }
    let bytes = match read_body(state, headers, body).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let text = match utf8(&bytes) {
        Ok(text) => text,
        Err(answer) => return answer,
    };
    if let Some(answer) = iam_change(state, text, StatusCode::BAD_REQUEST) {
        return answer;
    }
    if let Some(tracker) = &state.velocity
        && velocity::event::is_cloudtrail_event(text)
    {
        return track(state, tracker, SOURCE_EVENTS, text, StatusCode::BAD_REQUEST).await;
    }
    // An EventBridge event carries its own `time`; text (Budgets) falls back to the arrival time.
    let hint = Hint {
        format: parse::Format::Auto,
        delivered_at: (!text.trim_start().starts_with('{')).then(|| (state.clock)()),
    };
    let signal = match parse::parse(text, &hint) {
        Ok(signal) => signal,
        Err(error @ ParseError::TooLarge(_)) => {
            return Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                OUTCOME_TOO_LARGE,
                error.to_string(),
            );
        }
        // Decision 043: a body that is not a usable event (not JSON, unknown shape, a field of
        // the wrong type) is the sender's mistake and gets 400 with the reason; a well-formed
        // event we deliberately ignore stays 200 "unusable" (EventBridge would retry nothing else).
        Err(
            error @ (ParseError::UnknownFormat(_)
            | ParseError::Malformed { .. }
            | ParseError::Invalid(_)),
        ) => {
            return Answer::new(
                StatusCode::BAD_REQUEST,
                OUTCOME_MALFORMED,
                format!("{}: {error}", error.category()),
            );
        }
        Err(error) => return unusable(&error),
    };
    submit(state, SOURCE_EVENTS, &signal).await
}
