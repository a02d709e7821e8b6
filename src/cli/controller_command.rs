//! `autoguardrails controller`: loads the configuration, builds the AWS clients, and runs the
//! listeners, the intake caches, the leader election and — while leading — the controllers, the
//! Slack worker and the anomaly poller, until SIGTERM. It wires parts together; it must not hold
//! reconcile logic (that is `crate::controller`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::aws::PrincipalKind;
use crate::aws::costexplorer::SdkCostExplorer;
use crate::aws::factory::{ClientFactory, StaticClients};
use crate::aws::memory::InMemoryIam;
use crate::aws::sdk::{SdkClientFactory, load_base_config};
use crate::config::{AwsBackend, Config, ControllerArgs, LogFormat};
use crate::controller::endpoints::signals::{self, SignalState};
use crate::controller::intake::SignalIntake;
use crate::controller::leader::{self, LeaderElector, LeaseSettings};
use crate::controller::notify::worker::Worker;
use crate::controller::poller::{self, SubmittedSignals};
use crate::controller::reconcile::intake::Intake;
use crate::controller::reconcile::{self as controller, wait_for_shutdown};
use crate::controller::velocity::Tracker;
use crate::http::ops::{OpsServer, Readiness};
use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, ShutdownCause};

/// Exit status: the controller could not start or stopped on an error.
pub const EXIT_FAILED: u8 = 1;

/// Why the controller could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The metrics registry could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
    /// No Kubernetes client configuration (in-cluster or kubeconfig).
    #[error("cannot reach Kubernetes: {0}")]
    Kubernetes(String),
    /// A listener could not bind or serve.
    #[error("listener: {0}")]
    Listener(String),
    /// The signal endpoints could not be set up.
    #[error("signal endpoints: {0}")]
    Signals(String),
    /// Leader election could not be set up.
    #[error("leader election: {0}")]
    Leader(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Signal handlers could not be installed.
    #[error("shutdown signals: {0}")]
    Shutdown(String),
}

impl RunError {
    /// A short label for logs.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::Runtime(_) => "runtime",
            RunError::Config(_) => "config",
            RunError::Metrics(_) => "metrics",
            RunError::Kubernetes(_) => "kubernetes",
            RunError::Listener(_) => "listener",
            RunError::Signals(_) => "signals",
            RunError::Leader(_) => "leader",
            RunError::Shutdown(_) => "shutdown",
        }
    }
}

/// Runs `autoguardrails controller`; returns the exit status.
pub fn run(
    args: &ControllerArgs,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let config = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "autoguardrails controller: {e}");
            return super::EXIT_INVALID_INPUT;
        }
    };
    if args.print_config {
        return match config.to_yaml() {
            Ok(yaml) => {
                let _ = write!(out, "{yaml}");
                super::EXIT_OK
            }
            Err(e) => {
                let _ = writeln!(err, "autoguardrails controller: {e}");
                EXIT_FAILED
            }
        };
    }
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "autoguardrails controller: {}", RunError::Runtime(e));
            return EXIT_FAILED;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => super::EXIT_OK,
        Err(e) => {
            tracing::error!(category = e.category(), error = %e, "controller stopped");
            let _ = writeln!(err, "autoguardrails controller: {e}");
            EXIT_FAILED
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The in-memory IAM accounts (memory backend), kept for the read-only `/debug/iam` view.
type MemoryAccounts = BTreeMap<String, Arc<InMemoryIam>>;

/// What the AWS backend gives the controller.
struct Backend {
    /// The IAM client per account.
    clients: Arc<dyn ClientFactory>,
    /// The in-memory accounts (memory backend), for `/debug/iam`.
    memory: Option<MemoryAccounts>,
    /// The one SDK client factory (sdk backend): IAM per account, SSM, Cost Explorer.
    sdk: Option<Arc<SdkClientFactory>>,
}

async fn clients_for(config: &Config) -> Backend {
    match config.aws.backend {
        AwsBackend::Sdk => {
            let base = load_base_config(&config.aws.sdk()).await;
            let factory = Arc::new(
                SdkClientFactory::new(base, config.aws.sdk(), config.aws.account_roles())
                    .with_organization_role(config.aws.organization_role()),
            );
            Backend {
                clients: factory.clone(),
                memory: None,
                sdk: Some(factory),
            }
        }
        AwsBackend::Memory => {
            let mut clients = StaticClients::new();
            let mut accounts = BTreeMap::new();
            for (account, seed) in &config.aws.memory {
                let iam = Arc::new(InMemoryIam::new(account.clone()));
                iam.outside(|actor| {
                    for role in &seed.roles {
                        actor.create_role(role);
                    }
                    for user in &seed.users {
                        actor.create_user(user);
                    }
                });
                clients = clients.with(account.clone(), iam.clone());
                accounts.insert(account.clone(), iam);
            }
            Backend {
                clients: Arc::new(clients),
                memory: Some(accounts),
                sdk: None,
            }
        }
    }
}

/// The audit store of `config.audit` (decision 222): the DynamoDB table and/or JSON lines.
async fn audit_outlet(
    config: &Config,
    sdk: Option<&Arc<SdkClientFactory>>,
) -> crate::controller::audit::AuditOutlet {
    use crate::audit::{AuditSink, Fanout, dynamodb::DynamoDbAudit, jsonl};
    let settings = &config.audit;
    let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
    if let Some(table) = settings.table.as_ref().filter(|t| !t.is_empty()) {
        let client = match sdk {
            Some(factory) => {
                factory.dynamodb(settings.region.as_deref(), settings.endpoint_url.as_deref())
            }
            None => SdkClientFactory::ambient(config.aws.sdk())
                .await
                .dynamodb(settings.region.as_deref(), settings.endpoint_url.as_deref()),
        };
        let table = DynamoDbAudit::new(client, table.clone(), settings.retention());
        // A missing or misshapen table is reported now; records wait in status meanwhile.
        if let Err(e) = table.check().await {
            tracing::warn!(error = %e, "the audit table is not usable yet; records wait in the Quarantines' status");
        }
        sinks.push(Arc::new(table));
    }
    if let Some(destination) = settings.json_lines.as_ref().filter(|j| !j.is_empty()) {
        sinks.push(Arc::new(jsonl::JsonLinesSink::new(
            jsonl::Destination::parse(destination),
        )));
    }
    let sink: Option<Arc<dyn AuditSink>> = match sinks.len() {
        0 => None,
        1 => sinks.pop(),
        _ => Some(Arc::new(Fanout::new(sinks))),
    };
    if let Some(sink) = &sink {
        tracing::info!(sink = sink.name(), table = ?settings.table, "audit store configured");
    }
    settings.outlet(sink)
}

/// `GET /debug/iam`: every principal's attachments and inline policies and the write count of
/// each in-memory account. Served only with the memory backend.
fn memory_routes(accounts: MemoryAccounts) -> Router {
    let accounts = Arc::new(accounts);
    Router::new().route(
        "/debug/iam",
        get(move || {
            let accounts = accounts.clone();
            async move { axum::Json(memory_view(&accounts)) }
        }),
    )
}

fn memory_view(accounts: &MemoryAccounts) -> Value {
    let mut view = serde_json::Map::new();
    for (account, iam) in accounts {
        let state = iam.state();
        let principals: Vec<Value> = state
            .principals
            .iter()
            .map(|((kind, _), p)| {
                json!({
                    "kind": match kind { PrincipalKind::Role => "role", PrincipalKind::User => "user" },
                    "name": p.name,
                    "arn": p.arn,
                    "attachedPolicies": p.attached,
                    "inlinePolicies": p.inline.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        let policies: Vec<Value> = state
            .policies
            .values()
            .map(|p| json!({ "arn": p.arn, "document": p.default_document() }))
            .collect();
        view.insert(
            account.clone(),
            json!({
                "principals": principals,
                "managedPolicies": policies,
                "writeCalls": iam.write_count(),
            }),
        );
    }
    Value::Object(view)
}

/// Everything one leadership term needs.
struct Parts {
    config: Config,
    settings: crate::controller::reconcile::Settings,
    client: kube::Client,
    clients: Arc<dyn ClientFactory>,
    metrics: Arc<Metrics>,
    intake: Arc<dyn SignalIntake>,
    /// The caches intake reads; a leader's controllers run on them too (decision 142).
    stores: controller::Stores,
    submitted: Arc<SubmittedSignals>,
    identity: String,
    sdk: Option<Arc<SdkClientFactory>>,
}

/// The approval webhook's TLS acceptor and the stamp key derived from its private key.
fn approval_webhook_tls(
    settings: &crate::config::ApprovalWebhookSettings,
) -> Result<
    (
        tokio_rustls::TlsAcceptor,
        crate::controller::admission::StampKey,
    ),
    RunError,
> {
    let read = |field: &str, path: &Option<std::path::PathBuf>| {
        let path = path.as_ref().ok_or_else(|| {
            RunError::Config(format!(
                "approvalWebhook.{field} is required when it is enabled"
            ))
        })?;
        std::fs::read(path).map_err(|e| {
            RunError::Config(format!(
                "failed to read approvalWebhook.{field} {}: {e}",
                path.display()
            ))
        })
    };
    let key = read("keyFile", &settings.key_file)?;
    let (Some(certificate_path), Some(key_path)) = (&settings.cert_file, &settings.key_file) else {
        return Err(RunError::Config(
            "approvalWebhook.certFile and keyFile are required when it is enabled".into(),
        ));
    };
    // The certificate is re-read when the mounted Secret changes; the stamp key stays the one
    // derived at start (decision 213).
    let acceptor = crate::http::listener::tls_acceptor_from_files(certificate_path, key_path)
        .map_err(|e| RunError::Config(format!("approvalWebhook: {e}")))?;
    Ok((
        acceptor,
        crate::controller::admission::StampKey::derive(&key),
    ))
}

/// What the Slack route shares with the rest of the controller: the audit outbox, and the stop
/// signal of its background refresh.
struct SlackBackground {
    audit: Option<Arc<crate::controller::audit::controller_outbox::ControllerOutbox>>,
    stop: watch::Receiver<bool>,
}

/// The Slack interactions route (decisions 230-233) and the controller's own user name, whose
/// stamps the approval webhook lets through. Refuses to start without the webhook's stamp key: a
/// Slack approval is always stamped, never recorded unverified.
async fn slack_interactions(
    settings: &crate::controller::slack::SlackSettings,
    key: Option<crate::controller::admission::StampKey>,
    client: &kube::Client,
    metrics: Arc<Metrics>,
    instance: &str,
    ssm: Option<aws_sdk_ssm::Client>,
    background: SlackBackground,
) -> Result<(axum::Router, String), RunError> {
    let SlackBackground { audit, stop } = background;
    use crate::controller::slack::{request, server};
    let key = key.ok_or_else(|| {
        RunError::Config(
            "slack.interactions needs approvalWebhook.enabled: Slack approvals are stamped with its key and checked by it".into(),
        )
    })?;
    let duration = |field: &str, text: &str| {
        text.parse::<jiff::SignedDuration>()
            .ok()
            .filter(|d| !d.is_negative())
            .ok_or_else(|| {
                RunError::Config(format!(
                    "slack.{field} {text:?} is not a duration such as 5m"
                ))
            })
    };
    let grace = duration("signingSecretGrace", &settings.signing_secret_grace)?.as_secs();
    let refresh = duration("signingSecretRefresh", &settings.signing_secret_refresh)?;
    let mut ssm_refresh = None;
    let secret = match (
        &settings.signing_secret_file,
        &settings.signing_secret_ssm_parameter,
    ) {
        (Some(path), None) => server::Secrets::from_file(path, grace)
            .map_err(|e| RunError::Config(format!("slack.signingSecretFile: {e}")))?,
        (None, Some(parameter)) => {
            let ssm = ssm.ok_or_else(|| {
                RunError::Config(
                    "slack.signingSecretSsmParameter needs the sdk AWS backend (aws.backend: sdk)"
                        .into(),
                )
            })?;
            let first = server::signing_secret_from_ssm(&ssm, parameter)
                .await
                .map_err(|e| RunError::Config(format!("slack.signingSecretSsmParameter: {e}")))?;
            ssm_refresh = Some((ssm, parameter.clone()));
            server::Secrets::rotating(first, grace)
        }
        _ => {
            return Err(RunError::Config(
                "slack.interactions needs exactly one of slack.signingSecretFile and slack.signingSecretSsmParameter".into(),
            ));
        }
    };
    if let Some(bad) = settings
        .response_url_prefixes
        .iter()
        .find(|prefix| reqwest::Url::parse(prefix).is_err() || !prefix.ends_with('/'))
    {
        return Err(RunError::Config(format!(
            "slack.responseUrlPrefixes entry {bad:?} must be a URL ending in / (e.g. https://hooks.slack.com/)"
        )));
    }
    if settings.extend_by.parse::<jiff::SignedDuration>().is_err() {
        return Err(RunError::Config(format!(
            "slack.extendBy {:?} is not a duration such as 2h",
            settings.extend_by
        )));
    }
    let own = crate::controller::admission::server::own_username(client)
        .await
        .map_err(|e| RunError::Config(format!("slack.interactions: {e}")))?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RunError::Config(format!("slack.interactions: {e}")))?;
    let emails: Option<Arc<dyn server::EmailLookup>> = match &settings.bot_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path).map_err(|e| {
                RunError::Config(format!(
                    "failed to read slack.botTokenFile {}: {e}",
                    path.display()
                ))
            })?;
            if token.trim().is_empty() {
                return Err(RunError::Config(format!(
                    "slack.botTokenFile {} is empty",
                    path.display()
                )));
            }
            if reqwest::Url::parse(&settings.api_base_url).is_err()
                || !settings.api_base_url.ends_with('/')
            {
                return Err(RunError::Config(format!(
                    "slack.apiBaseUrl {:?} must be a URL ending in /",
                    settings.api_base_url
                )));
            }
            let ttl = duration("emailCacheTtl", &settings.email_cache_ttl)?;
            Some(Arc::new(server::SlackUsers::new(
                http.clone(),
                &settings.api_base_url,
                &token,
                Duration::try_from(ttl).unwrap_or(Duration::from_secs(600)),
            )))
        }
        None => None,
    };
    if let Some(mapping) = settings
        .users
        .iter()
        .find(|m| m.slack_user_id.is_empty() == m.email.is_none())
    {
        return Err(RunError::Config(format!(
            "slack.users entry for {:?} needs exactly one of slackUserId and email",
            mapping.username
        )));
    }
    let modal: Option<Arc<dyn server::NoteModal>> =
        match (&settings.bot_token_file, settings.note_modal) {
            (_, false) => None,
            (Some(path), true) => {
                let token = std::fs::read_to_string(path).map_err(|e| {
                    RunError::Config(format!(
                        "failed to read slack.botTokenFile {}: {e}",
                        path.display()
                    ))
                })?;
                Some(Arc::new(server::SlackViews::new(
                    http.clone(),
                    &settings.api_base_url,
                    &token,
                )))
            }
            (None, true) => {
                return Err(RunError::Config(
                    "slack.noteModal needs slack.botTokenFile (views.open)".into(),
                ));
            }
        };
    if emails.is_none() && settings.users.iter().any(|m| m.email.is_some()) {
        return Err(RunError::Config(
            "slack.users maps by email, which needs slack.botTokenFile (users.info)".into(),
        ));
    }
    tracing::info!(
        users = settings.users.len(),
        controller = %own,
        email_lookup = emails.is_some(),
        note_modal = modal.is_some(),
        "serving /slack/interactions"
    );

    let state = Arc::new(server::Interactions {
        secret: Arc::new(secret),
        replays: request::ReplayCache::new(settings.replay_capacity),
        users: settings.users.clone(),
        reviewer: Arc::new(crate::controller::admission::server::KubeAccessReviewer {
            client: client.clone(),
        }),
        key,
        quarantines: Arc::new(server::KubeQuarantines {
            client: client.clone(),
        }),
        recorder: Some(Arc::new(crate::controller::events::EventRecorder::new(
            client.clone(),
            server::FIELD_MANAGER,
            Some(instance.to_string()),
        ))),
        metrics,
        http,
        max_body_bytes: settings.max_body_bytes.max(1024),
        body_timeout: Duration::from_secs(10),
        extend_by: settings.extend_by.clone(),
        now: server::system_now,
        emails,
        response_url_prefixes: settings.response_url_prefixes.clone(),
        audit,
        modal,
    });
    if let Some((ssm, parameter)) = ssm_refresh {
        let period = Duration::try_from(refresh)
            .ok()
            .filter(|p| !p.is_zero())
            .unwrap_or(Duration::from_secs(300));
        tokio::spawn(server::refresh_from_ssm(
            state.secret.clone(),
            server::system_now,
            ssm,
            parameter,
            period,
            stop,
        ));
    }
    Ok((server::router(state), own))
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> Result<(), RunError> {
    let shutdown = Shutdown::new();
    let _signal_task = shutdown
        .listen_for_signals()
        .map_err(|e| RunError::Shutdown(e.to_string()))?;
    serve_until(config, shutdown).await
}

/// Runs the controller until `shutdown` is triggered (tests trigger it directly).
pub async fn serve_until(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
    let mut controller_settings = config
        .controller_settings()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let metrics = Arc::new(Metrics::new().map_err(|e| RunError::Metrics(e.to_string()))?);
    let identity = leader::default_identity();
    let pod_namespace = leader::default_namespace();
    if config.aws.backend == AwsBackend::Memory {
        tracing::warn!(
            accounts = ?config.aws.memory.keys().collect::<Vec<_>>(),
            "AWS BACKEND IS IN MEMORY: no real IAM is read or written, every deny lives only in \
             this process and is gone when it exits. For the demo and tests only."
        );
    }
    let client = kubernetes_client().await?;
    let Backend {
        clients,
        memory,
        sdk,
    } = clients_for(&config).await;
    controller_settings.audit = audit_outlet(&config, sdk.as_ref()).await;
    if controller_settings.audit.enabled() {
        // Records with no Quarantine history (decision 225): appended by any replica, flushed
        // by the leader.
        controller_settings.audit.controller = Some(
            crate::controller::audit::controller_outbox::ControllerOutbox::start(
                client.clone(),
                &pod_namespace,
                &config.cluster_id,
                metrics.clone(),
            ),
        );
    }

    // The caches, on every replica: a standby answers /sns and /events too, and a leader's
    // controllers run on the same caches (one copy of each object, decision 142).
    let (stores_stop, stores_stop_rx) = watch::channel(false);
    let (intake_stores, intake_watch) =
        controller::watch_stores(client.clone(), &config.namespaces, stores_stop_rx.clone());
    let resolver_stop = stores_stop_rx.clone();
    let intake_watch = tokio::spawn(intake_watch);
    let clock = crate::controller::clock::EvaluationClock::from_env()
        .map_err(|e| RunError::Config(e.to_string()))?;
    if let crate::controller::clock::EvaluationClock::File(path) = &clock {
        tracing::warn!(
            file = %path.display(),
            "TEST CLOCK: policies are evaluated and SNS messages verified at the instant in this file, not the system time. For the test suite only."
        );
    }
    let mut intake = Intake::new(
        client.clone(),
        intake_stores.clone(),
        &controller_settings.protected_principals,
        config.kill_switch,
    )
    .with_clock(clock.clone())
    .with_audit(controller_settings.audit.controller.clone());
    // notifyOnly policies (decision 241): announced by the replica that evaluated the signal.
    let (announcer_stop, announcer_stop_rx) = watch::channel(false);
    let _announcer_task = match crate::controller::notify::slack::SlackNotifier::new(
        config.notifications.slack.clone(),
    ) {
        Ok(notifier) => {
            let mut sources = crate::controller::notify::source::WebhookSources::new(
                client.clone(),
                config.notifications.webhook_cache_ttl,
            );
            if let Some(factory) = sdk.as_ref() {
                sources = sources.with_ssm(factory.ssm(config.notifications.ssm_region.as_deref()));
            }
            let announcer = crate::controller::notify::only::Announcer::new(
                client.clone(),
                Arc::new(notifier),
                sources,
                metrics.clone(),
                Arc::new(crate::controller::notify::only::OutboxOrSink {
                    outbox: controller_settings.audit.controller.clone(),
                    fallback: crate::controller::notify::only::SinkOrLog(
                        controller_settings.audit.sink.clone(),
                    ),
                }),
                config.cluster_id.clone(),
            )
            .with_poster(announcement_poster(&config));
            let (queue, task) = announcer.start(wait_for_shutdown(announcer_stop_rx));
            intake = intake.with_announcements(Arc::new(queue), metrics.clone());
            Some(task)
        }
        Err(e) => {
            tracing::error!(error = %e, "notifyOnly announcements cannot start; matches are counted and logged");
            None
        }
    };
    let intake = Arc::new(intake);
    let submitted = Arc::new(SubmittedSignals::new(
        config.poller.remembered_anomalies.max(1),
    ));

    let readiness = Readiness::new();
    let velocity = if config.velocity.enabled {
        let tracker = Tracker::start(&config.velocity, jiff::Timestamp::now())
            .map_err(|e| RunError::Config(e.to_string()))?;
        Some(Arc::new(tracker))
    } else {
        None
    };
    let mut signal_state = SignalState::production(
        &config.signals,
        client.clone(),
        &pod_namespace,
        intake.clone(),
        metrics.clone(),
    )
    .map_err(|e| RunError::Signals(e.to_string()))?
    .with_submitted(submitted.clone())
    .with_drift_repair(intake_stores.clone())
    .with_sns_clock(clock.clone());
    if let Some(tracker) = &velocity {
        signal_state = signal_state.with_velocity(tracker.clone());
    }
    // The approval webhook's TLS and stamp key, read once: the webhook and the Slack channel
    // sign with the same key.
    let webhook_tls = if config.approval_webhook.enabled {
        Some(approval_webhook_tls(&config.approval_webhook)?)
    } else {
        None
    };
    let mut controller_username = None;
    if config.slack.interactions {
        let (routes, own) = slack_interactions(
            &config.slack,
            webhook_tls.as_ref().map(|(_, key)| key.clone()),
            &client,
            metrics.clone(),
            &identity,
            sdk.as_ref()
                .map(|factory| factory.ssm(config.notifications.ssm_region.as_deref())),
            SlackBackground {
                audit: controller_settings.audit.controller.clone(),
                stop: stores_stop_rx.clone(),
            },
        )
        .await?;
        controller_username = Some(own);
        signal_state = signal_state.with_routes(routes);
    }
    let signal_state = Arc::new(signal_state);
    let mut ops = OpsServer::bind(config.metrics_addr, metrics.clone(), readiness.clone())
        .await
        .map_err(|e| RunError::Listener(e.to_string()))?
        .with_routes(signals::confirmations_router(signal_state.clone()));
    if let Some(accounts) = memory {
        ops = ops.with_routes(memory_routes(accounts));
    }
    if let Some(tracker) = &velocity {
        ops = ops.with_routes(signals::velocity_router(tracker.clone()));
    }
    if let Some(tracker) = &velocity
        && config.leader_election.enabled
    {
        // Only the leader counts velocity events (decision 177); `follow_leadership` below
        // switches the tracker as the lease changes hands.
        tracker.stand_by(jiff::Timestamp::now());
    }
    let velocity_saver = velocity.clone().map(|tracker| {
        let interval =
            Duration::try_from(config.velocity.save_interval).unwrap_or(Duration::from_secs(5));
        let shutdown = shutdown.clone();
        tokio::spawn(save_velocity(tracker, interval, shutdown))
    });
    let signals_listener = tokio::net::TcpListener::bind(config.signals_addr)
        .await
        .map_err(|e| RunError::Listener(format!("{}: {e}", config.signals_addr)))?;
    tracing::info!(
        metrics = %config.metrics_addr,
        signals = %config.signals_addr,
        cluster = %config.cluster_id,
        namespaces = ?config.namespaces,
        kill_switch = config.kill_switch,
        identity = %identity,
        "controller starting"
    );

    // The dashboard (decision 180): its own listener, read-only, on the same caches.
    let (dashboard_stop, dashboard_stop_rx) = watch::channel(false);
    let dashboard_task = if config.dashboard.enabled {
        let token_file = config.dashboard.token_file.clone().ok_or_else(|| {
            RunError::Config("dashboard.tokenFile is required when the dashboard is enabled".into())
        })?;
        let access = crate::dashboard::access::Access::from_file(
            &token_file,
            config.dashboard.secure_cookie,
        )
        .map_err(|e| RunError::Config(e.to_string()))?;
        let state = Arc::new(crate::dashboard::controller::ControllerDashboard {
            stores: intake_stores.clone(),
            recent: signal_state.recent(),
            client: Some(client.clone()),
            protected: controller_settings.protected_principals.clone(),
            proposal: config.dashboard.proposal_file.clone(),
            gate_url: config.dashboard.gate_url.clone(),
            changes: crate::dashboard::live::Changes::default(),
            stop: dashboard_stop_rx.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.dashboard.addr)
            .await
            .map_err(|e| RunError::Listener(format!("{}: {e}", config.dashboard.addr)))?;
        tracing::info!(dashboard = %config.dashboard.addr, "serving the dashboard");
        let follow = tokio::spawn(state.follow_changes());
        Some(tokio::spawn(async move {
            let result = crate::http::listener::serve(
                listener,
                crate::dashboard::controller::router(state, access),
                crate::http::listener::ListenerLimits {
                    drain_timeout: Duration::from_secs(5),
                    ..Default::default()
                },
                wait_for_shutdown(dashboard_stop_rx),
            )
            .await;
            follow.abort();
            result
        }))
    } else {
        None
    };

    // The approval webhook (decisions 211-212): HTTPS on every replica, on the one listener.
    let (webhook_stop, webhook_stop_rx) = watch::channel(false);
    let webhook_task = if let Some((acceptor, key)) = webhook_tls {
        controller_settings.approval_stamp_key = Some(key.clone());
        let state = Arc::new(crate::controller::admission::server::WebhookState {
            reviewer: Arc::new(crate::controller::admission::server::KubeAccessReviewer {
                client: client.clone(),
            }),
            key,
            metrics: metrics.clone(),
            controller_username,
        });
        let listener = tokio::net::TcpListener::bind(config.approval_webhook.addr)
            .await
            .map_err(|e| RunError::Listener(format!("{}: {e}", config.approval_webhook.addr)))?;
        tracing::info!(approval_webhook = %config.approval_webhook.addr, "serving the approval webhook");
        Some(tokio::spawn(crate::http::listener::serve_tls(
            listener,
            acceptor,
            crate::controller::admission::server::router(state),
            crate::http::listener::ListenerLimits {
                drain_timeout: Duration::from_secs(5),
                ..Default::default()
            },
            wait_for_shutdown(webhook_stop_rx),
        )))
    } else {
        tracing::warn!(
            "approval webhook off: approve, reject and extend are recorded as unverified (the annotation's actor is self-asserted)"
        );
        None
    };

    // The operations listener outlives everything else: it stops once the lease is released.
    let (ops_stop, ops_stop_rx) = watch::channel(false);
    let ops_task = tokio::spawn(ops.serve_until(wait_for_shutdown(ops_stop_rx)));
    {
        let readiness = readiness.clone();
        let stores = intake_stores.clone();
        tokio::spawn(async move {
            stores.wait_ready().await;
            readiness.set_caches_synced(true);
            tracing::info!("caches synced; serving signals");
        });
    }
    let signals_task = {
        let shutdown = shutdown.clone();
        tokio::spawn(signals::serve(signals_listener, signal_state, async move {
            shutdown.wait().await;
        }))
    };

    // Leadership: a Lease, or always leading when election is off (one replica).
    let elector_shutdown = Shutdown::new();
    let mut always_leading = None;
    let (mut leadership, leadership_handle) = if config.leader_election.enabled {
        let unsigned = |d: jiff::SignedDuration| Duration::try_from(d).unwrap_or_default();
        let settings = LeaseSettings {
            name: config.leader_election.lease_name.clone(),
            namespace: config
                .leader_election
                .lease_namespace
                .clone()
                .unwrap_or_else(|| pod_namespace.clone()),
            identity: identity.clone(),
            lease_duration: unsigned(config.leader_election.lease_duration),
            renew_deadline: unsigned(config.leader_election.renew_deadline),
            retry_period: unsigned(config.leader_election.retry_period),
        };
        let elector = LeaderElector::new(client.clone(), settings, metrics.clone())
            .map_err(|e| RunError::Leader(e.to_string()))?;
        let handle = elector.start(elector_shutdown.clone());
        if let Some(tracker) = &velocity {
            tokio::spawn(follow_leadership(tracker.clone(), handle.subscribe()));
        }
        (handle.subscribe(), Some(handle))
    } else {
        tracing::info!("leader election off: this replica always enforces");
        metrics.leader.set(1);
        let (sender, receiver) = watch::channel(true);
        always_leading = Some(sender);
        (receiver, None)
    };

    // Selector resolutions, on every replica: intake reads them (decision 246); only the
    // leader lists IAM, a standby reads the leader's result from the policy status (252).
    let resolver = tokio::spawn(crate::controller::resolver::run(
        intake_stores.clone(),
        clients.clone(),
        Duration::try_from(config.selector_period).unwrap_or(Duration::from_secs(300)),
        clock.clone(),
        leadership.clone(),
        wait_for_shutdown(resolver_stop),
    ));
    let parts = Parts {
        config,
        settings: controller_settings,
        client,
        clients,
        metrics,
        intake,
        stores: intake_stores,
        submitted,
        identity,
        sdk,
    };
    loop {
        readiness.set_leader(false);
        tokio::select! {
            _ = shutdown.wait() => break,
            leading = wait_until(&mut leadership, true) => if !leading { break },
        }
        readiness.set_leader(true);
        tracing::info!("leading: starting the controllers");
        lead(&parts, &shutdown, &mut leadership).await;
        if shutdown.is_triggered() {
            break;
        }
        tracing::warn!("lost leadership: controllers stopped, standing by");
    }

    // Drain: not ready, no new signals, in-flight work finished, then give up the lease.
    let cause = shutdown.cause().unwrap_or(ShutdownCause::Requested);
    tracing::info!(cause = cause.as_str(), "shutting down");
    readiness.set_draining();
    let timeout = Duration::try_from(parts.config.shutdown_timeout).unwrap_or_default();
    match tokio::time::timeout(timeout, signals_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "signal listener stopped with an error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("signal listener did not stop in time"),
    }
    if let Some(saver) = velocity_saver {
        match tokio::time::timeout(timeout, saver).await {
            Ok(Ok(())) => {}
            _ => tracing::warn!("the velocity state was not saved at shutdown"),
        }
    }
    let _ = dashboard_stop.send(true);
    if let Some(task) = dashboard_task {
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "dashboard stopped with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("dashboard did not stop in time"),
        }
    }
    let _ = webhook_stop.send(true);
    if let Some(task) = webhook_task {
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "approval webhook stopped with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("approval webhook did not stop in time"),
        }
    }
    let _ = stores_stop.send(true);
    let _ = announcer_stop.send(true);
    let _ = tokio::time::timeout(timeout, intake_watch).await;
    // Records of signals taken before the stop reach the audit outbox (decision 237).
    if let Some(outbox) = &parts.settings.audit.controller {
        outbox.drain(timeout).await;
    }
    let _ = tokio::time::timeout(timeout, resolver).await;
    elector_shutdown.trigger(cause);
    if let Some(handle) = leadership_handle
        && tokio::time::timeout(timeout, handle.stopped())
            .await
            .is_err()
    {
        tracing::warn!("the lease was not released in time; a standby takes over when it expires");
    }
    drop(always_leading);
    parts.metrics.leader.set(0);
    let _ = ops_stop.send(true);
    match ops_task.await {
        Ok(Err(e)) => return Err(RunError::Listener(e.to_string())),
        Err(e) => return Err(RunError::Listener(e.to_string())),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// Counts velocity events while this replica leads, and stands by otherwise (decision 177).
async fn follow_leadership(tracker: Arc<Tracker>, mut leadership: watch::Receiver<bool>) {
    loop {
        let leading = *leadership.borrow_and_update();
        let switched = tracker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if leading {
                switched.lead(jiff::Timestamp::now());
            } else {
                switched.stand_by(jiff::Timestamp::now());
            }
        })
        .await;
        if leadership.changed().await.is_err() {
            break;
        }
    }
}

/// Writes the velocity state file every `interval` when it changed, and once more after
/// `shutdown` (after the signal listener stopped taking events).
async fn save_velocity(tracker: Arc<Tracker>, interval: Duration, shutdown: Shutdown) {
    let save = |tracker: Arc<Tracker>| async move {
        let result =
            tokio::task::spawn_blocking(move || tracker.save_if_changed(jiff::Timestamp::now()))
                .await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the velocity state file"),
            Err(e) => tracing::error!(error = %e, "velocity state writer failed"),
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(interval) => save(tracker.clone()).await,
        }
    }
    // The signal listener drains first; a short pause lets its last events land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    save(tracker).await;
}

/// The User-Agent of every API request, so audit logs and RBAC checks can tell ours apart.
pub const USER_AGENT: &str = concat!("autoguardrails/", env!("CARGO_PKG_VERSION"));

/// A client from the in-cluster service account or `$KUBECONFIG`, sending [`USER_AGENT`].
async fn kubernetes_client() -> Result<kube::Client, RunError> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Kubernetes(e.to_string()))?;
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(USER_AGENT),
    ));
    kube::Client::try_from(config).map_err(|e| RunError::Kubernetes(e.to_string()))
}

/// Waits until `receiver` reads `wanted`; false when its sender is gone first.
async fn wait_until(receiver: &mut watch::Receiver<bool>, wanted: bool) -> bool {
    loop {
        if *receiver.borrow_and_update() == wanted {
            return true;
        }
        if receiver.changed().await.is_err() {
            return *receiver.borrow() == wanted;
        }
    }
}

/// How notifyOnly announcements reach Slack: the policies' webhooks, or with
/// `notifications.postWith: bot` the bot (decision 239). A bot that cannot be set up (no token)
/// is logged here and named in every announcement's failure, never replaced by the webhook.
fn announcement_poster(config: &Config) -> crate::controller::notify::only::Poster {
    use crate::controller::notify::only::Poster;
    match crate::controller::notify::web_api::from_config(
        config.notifications.post_with,
        config.slack.bot_token_file.as_deref(),
        &config.slack.api_base_url,
        &config.notifications.slack,
    ) {
        Ok(None) => Poster::Webhook,
        Ok(Some(api)) => Poster::Bot(Arc::new(api), config.notifications.channel.clone()),
        Err(e) => {
            tracing::error!(error = %e, "notifyOnly announcements cannot post with the bot; each one fails with this reason");
            Poster::BotUnavailable(e.to_string())
        }
    }
}

/// One leadership term: controllers, Slack worker and poller run until leadership is lost or
/// shutdown is asked for; then they finish in-flight work (bounded by `shutdownTimeout`).
async fn lead(parts: &Parts, shutdown: &Shutdown, leadership: &mut watch::Receiver<bool>) {
    let (stop, stop_rx) = watch::channel(false);
    let (running, controllers) = controller::start_on(
        parts.stores.clone(),
        parts.client.clone(),
        parts.settings.clone(),
        parts.clients.clone(),
        parts.metrics.clone(),
        Some(parts.identity.clone()),
        stop_rx.clone(),
    );
    let mut tasks = vec![tokio::spawn(controllers)];
    tasks.push(tokio::spawn({
        let running = running.clone();
        async move {
            running.stores.wait_ready().await;
            tracing::info!("controller caches synced");
        }
    }));
    let mut notifications = parts.config.notifications.clone();
    if notifications.namespaces.is_empty() {
        notifications.namespaces = parts.config.namespaces.clone();
    }
    notifications.buttons = parts.config.slack.interactions;
    if notifications.cluster.is_none() {
        notifications.cluster = Some(parts.config.cluster_id.clone());
    }
    let ssm_region = notifications.ssm_region.clone();
    let web_api = crate::controller::notify::web_api::from_config(
        notifications.post_with,
        parts.config.slack.bot_token_file.as_deref(),
        &parts.config.slack.api_base_url,
        &notifications.slack,
    );
    match Worker::new(parts.client.clone(), notifications, parts.metrics.clone()).and_then(
        |worker| {
            let worker = match &parts.sdk {
                Some(factory) => worker.with_ssm(factory.ssm(ssm_region.as_deref())),
                None => worker,
            };
            let worker = worker.with_audit(parts.settings.audit.controller.clone());
            Ok(match web_api? {
                Some(api) => worker.with_web_api(Arc::new(api)),
                None => worker,
            })
        },
    ) {
        Ok(worker) => tasks.push(tokio::spawn(worker.run(wait_for_shutdown(stop_rx.clone())))),
        Err(e) => {
            tracing::error!(error = %e, "slack notifications cannot start; enforcement continues")
        }
    }
    match &parts.sdk {
        Some(sdk) => tasks.push(tokio::spawn(poller::run(
            parts.config.poller.clone(),
            Arc::new(SdkCostExplorer::from_client(sdk.cost_explorer())),
            parts.intake.clone(),
            parts.metrics.clone(),
            parts.submitted.clone(),
            wait_for_shutdown(stop_rx.clone()),
        ))),
        None if !parts.config.poller.monitor_arns.is_empty() => {
            tracing::warn!("the anomaly poller needs the sdk AWS backend; not polling")
        }
        None => {}
    }
    tokio::select! {
        _ = shutdown.wait() => {}
        _ = wait_until(leadership, false) => {}
    }
    let _ = stop.send(true);
    let timeout = Duration::try_from(parts.config.shutdown_timeout).unwrap_or_default();
    let finished = tokio::time::timeout(timeout, futures::future::join_all(tasks.iter_mut()))
        .await
        .is_ok();
    if !finished {
        tracing::warn!(
            timeout_seconds = timeout.as_secs(),
            "controllers did not finish in-flight work in time; stopping them"
        );
        for task in &tasks {
            task.abort();
        }
    }
}
