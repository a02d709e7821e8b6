//! The controller's configuration: a YAML file (`--config`), overridden by `AGR_*` environment
//! variables, overridden by flags. It owns loading, merging and validating settings; it must not
//! start anything (that is `cli::controller_command`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::aws::sdk::{AccountRole, SdkSettings};
use crate::controller::endpoints::signals::SignalSettings;
use crate::controller::notify::worker::NotifySettings;
use crate::controller::poller::PollerSettings;
use crate::controller::reconcile::Settings;
use crate::controller::velocity::VelocitySettings;

/// The largest configuration file read (a config is a few kilobytes).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The most reconciles per controller a configuration may run at once.
const MAX_RECONCILE_CONCURRENCY: u16 = 256;

/// The longest drift-check period accepted (the design bounds drift repair at 30 s by default, so
/// the default period is 20 s: a detach just after a check is repaired at the next one;
/// longer periods are allowed up to this for very large installations).
pub const MAX_DRIFT_PERIOD: Duration = Duration::from_secs(600);

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid configuration YAML.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with the field path where known).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid setting {field}: {message}")]
    Invalid {
        /// The setting, as spelled in the file.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A short label for logs.
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::TooLarge { .. } => "too_large",
            ConfigError::Parse { .. } => "parse",
            ConfigError::Invalid { .. } => "invalid",
        }
    }
}

/// Which IAM implementation the controller talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AwsBackend {
    /// The official AWS SDK (production).
    #[default]
    Sdk,
    /// An in-process IAM that forgets everything on exit (the demo and tests only).
    Memory,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// How to reach one account (the `aws.accounts` map of the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountSettings {
    /// The role to assume in that account.
    pub role_arn: String,
    /// The external id its trust policy requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The session name shown in CloudTrail.
    #[serde(default = "default_session_name")]
    pub session_name: String,
}

fn default_session_name() -> String {
    "autoguardrails".to_string()
}

/// Principals the in-memory backend starts with, per account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MemoryAccount {
    /// Role names.
    pub roles: Vec<String>,
    /// User names.
    pub users: Vec<String>,
}

/// The `aws` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AwsSettings {
    /// `sdk` or `memory`.
    pub backend: AwsBackend,
    /// The signing region of the IAM and STS clients.
    pub region: String,
    /// An endpoint override (a local AWS emulator); never set in production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Attempts per IAM call (adaptive retry).
    pub max_attempts: u32,
    /// Client-side IAM request rate per account (requests per second); 0 turns it off.
    pub requests_per_second: f64,
    /// Burst of the client-side rate limit.
    pub burst: u32,
    /// Per-account assume-role settings; other accounts use the ambient identity when it is in
    /// that account.
    pub accounts: BTreeMap<String, AccountSettings>,
    /// The role that lists the accounts of an Organizations OU for scope selectors (in the
    /// management or a delegated administrator account); absent means the ambient identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_role: Option<AccountSettings>,
    /// The in-memory backend's accounts and principals (`backend: memory` only).
    pub memory: BTreeMap<String, MemoryAccount>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        let sdk = SdkSettings::default();
        let (rate, burst) = sdk.rate_limit.unwrap_or((10.0, 20));
        AwsSettings {
            backend: AwsBackend::Sdk,
            region: sdk.region,
            endpoint_url: None,
            max_attempts: sdk.max_attempts,
            requests_per_second: rate,
            burst,
            accounts: BTreeMap::new(),
            organization_role: None,
            memory: BTreeMap::new(),
        }
    }
}

impl AwsSettings {
    /// The SDK settings these describe.
    pub fn sdk(&self) -> SdkSettings {
        SdkSettings {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            max_attempts: self.max_attempts,
            rate_limit: (self.requests_per_second > 0.0)
                .then_some((self.requests_per_second, self.burst.max(1))),
            static_credentials: None,
        }
    }

    /// The organization role for the SDK client factory, if configured.
    pub fn organization_role(&self) -> Option<AccountRole> {
        self.organization_role.as_ref().map(|a| AccountRole {
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
            session_name: a.session_name.clone(),
        })
    }

    /// The assume-role map for the SDK client factory.
    pub fn account_roles(&self) -> BTreeMap<String, AccountRole> {
        self.accounts
            .iter()
            .map(|(account, a)| {
                (
                    account.clone(),
                    AccountRole {
                        role_arn: a.role_arn.clone(),
                        external_id: a.external_id.clone(),
                        session_name: a.session_name.clone(),
                    },
                )
            })
            .collect()
    }
}

/// The `leaderElection` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderSettings {
    /// Elect a leader through a Lease (turn off only with one replica).
    pub enabled: bool,
    /// The Lease name.
    pub lease_name: String,
    /// The Lease namespace (default: the pod's namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_namespace: Option<String>,
    /// How long a standby waits after the last renewal before taking over.
    pub lease_duration: SignedDuration,
    /// How long a leader keeps leading while renewals fail.
    pub renew_deadline: SignedDuration,
    /// How often the lease is renewed or tried.
    pub retry_period: SignedDuration,
}

impl Default for LeaderSettings {
    fn default() -> Self {
        LeaderSettings {
            enabled: true,
            lease_name: "autoguardrails".to_string(),
            lease_namespace: None,
            lease_duration: SignedDuration::from_secs(15),
            renew_deadline: SignedDuration::from_secs(10),
            retry_period: SignedDuration::from_secs(2),
        }
    }
}

/// The read-only web dashboard (docs/dashboard.md, decision 180): its own listener, off unless
/// enabled; every page and JSON endpoint needs the bearer token read from `tokenFile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Serve the dashboard.
    pub enabled: bool,
    /// Its listen address (separate from `/metrics` and the signal endpoints, so each can be
    /// exposed on its own).
    pub addr: SocketAddr,
    /// A file holding the bearer token (a mounted Secret); required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A `proposal.json` of `autoguardrails analyze` shown on the Analysis page (re-read on
    /// every view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_file: Option<PathBuf>,
    /// The address of the gate's dashboard (`gate serve`), linked from the navigation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_url: Option<String>,
    /// Mark the sign-in cookie `Secure` (set when the dashboard is reached over HTTPS).
    pub secure_cookie: bool,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            enabled: false,
            addr: SocketAddr::from(([0, 0, 0, 0], 8082)),
            token_file: None,
            proposal_file: None,
            gate_url: None,
            secure_cookie: false,
        }
    }
}

/// The approval webhook (docs/approvals.md, decisions 211-212): an HTTPS listener the API server
/// calls when approve, reject or extend annotations change. Off unless enabled; with it off every
/// approval is recorded as unverified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApprovalWebhookSettings {
    /// Serve the webhook and trust the identity stamps it signs.
    pub enabled: bool,
    /// Its listen address (HTTPS).
    pub addr: SocketAddr,
    /// PEM certificate chain (a mounted Secret); required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key; required when enabled. Stamps are signed with a key derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl Default for ApprovalWebhookSettings {
    fn default() -> Self {
        ApprovalWebhookSettings {
            enabled: false,
            addr: SocketAddr::from(([0, 0, 0, 0], 9443)),
            cert_file: None,
            key_file: None,
        }
    }
}

/// The whole configuration, as the file spells it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// This cluster's id, written into IAM tags and policy names.
    pub cluster_id: String,
    /// Principal ARNs never quarantined (a policy targeting one is not Ready).
    pub protected_principals: Vec<String>,
    /// New enforcement becomes dry-run; release is never blocked.
    pub kill_switch: bool,
    /// How often an Active Quarantine's attachments are re-read.
    pub drift_period: SignedDuration,
    /// How often an Active Quarantine gets a full converge (also repairs edited documents).
    pub full_converge_period: SignedDuration,
    /// How often IAM is swept for objects of ours no Quarantine wants.
    pub sweep_period: SignedDuration,
    /// How often each policy's `scope.selectors` are resolved (IAM and Organizations listings); a
    /// resolution older than three periods is stale and quarantines no one (decision 246).
    pub selector_period: SignedDuration,
    /// The longest error backoff.
    pub max_backoff: SignedDuration,
    /// How many reconciles of each controller run at once (1 to 256).
    pub reconcile_concurrency: u16,
    /// How long after it ended a Quarantine is retired from the controller's watch (and at least
    /// until its policy's cooldown has passed; decision 154).
    pub retire_ended_after: SignedDuration,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// `/sns`, `/events`.
    pub signals_addr: SocketAddr,
    /// Log format.
    pub log_format: LogFormat,
    /// How long a shutdown waits for in-flight work before giving up.
    pub shutdown_timeout: SignedDuration,
    /// AWS access.
    pub aws: AwsSettings,
    /// Leader election.
    pub leader_election: LeaderSettings,
    /// The signal endpoints.
    pub signals: SignalSettings,
    /// The Cost Explorer anomaly poller.
    pub poller: PollerSettings,
    /// Slack notifications.
    pub notifications: NotifySettings,
    /// The spend-velocity signal from CloudTrail events (off by default; decision 170).
    pub velocity: VelocitySettings,
    /// The web dashboard.
    pub dashboard: DashboardSettings,
    /// The approval webhook.
    pub approval_webhook: ApprovalWebhookSettings,
    /// Approving from Slack (decisions 230-233).
    pub slack: crate::controller::slack::SlackSettings,
    /// The durable audit store (DynamoDB table, JSON lines; decision 222).
    pub audit: crate::controller::audit::AuditSettings,
}

impl Default for Config {
    fn default() -> Self {
        let controller = Settings::default();
        let signed = |d: Duration| SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO);
        Config {
            namespaces: Vec::new(),
            cluster_id: controller.cluster_id,
            protected_principals: Vec::new(),
            kill_switch: false,
            drift_period: signed(controller.drift_period),
            full_converge_period: signed(controller.full_converge_period),
            sweep_period: signed(controller.sweep_period),
            selector_period: SignedDuration::from_mins(5),
            max_backoff: signed(controller.max_backoff),
            reconcile_concurrency: controller.reconcile_concurrency,
            retire_ended_after: controller
                .retire_after
                .unwrap_or(SignedDuration::from_hours(1)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            signals_addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            log_format: LogFormat::Json,
            shutdown_timeout: SignedDuration::from_secs(25),
            aws: AwsSettings::default(),
            leader_election: LeaderSettings::default(),
            signals: SignalSettings::default(),
            poller: PollerSettings::default(),
            notifications: NotifySettings::default(),
            velocity: VelocitySettings::default(),
            dashboard: DashboardSettings::default(),
            approval_webhook: ApprovalWebhookSettings::default(),
            slack: crate::controller::slack::SlackSettings::default(),
            audit: crate::controller::audit::AuditSettings::default(),
        }
    }
}

/// Flags and `AGR_*` variables of `autoguardrails controller`; each one set overrides the file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ControllerArgs {
    /// The YAML configuration file (every setting; flags and variables override it).
    #[arg(long, env = "AGR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespaces to watch, comma-separated (default: all).
    #[arg(long, env = "AGR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Option<Vec<String>>,
    /// This cluster's id (IAM tags and policy names carry it).
    #[arg(long, env = "AGR_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// A principal ARN never quarantined (repeatable; the variable is comma-separated).
    #[arg(
        long = "protected-principal",
        env = "AGR_PROTECTED_PRINCIPALS",
        value_delimiter = ','
    )]
    pub protected_principals: Option<Vec<String>>,
    /// Kill switch: new enforcement becomes dry-run (release still works).
    #[arg(long, env = "AGR_KILL_SWITCH", num_args = 0..=1, default_missing_value = "true")]
    pub kill_switch: Option<bool>,
    /// How often Active attachments are re-verified (`30s`).
    #[arg(long, env = "AGR_DRIFT_PERIOD", value_parser = parse_duration_arg)]
    pub drift_period: Option<SignedDuration>,
    /// `sdk` (production) or `memory` (demo and tests only; IAM lives in this process).
    #[arg(long, env = "AGR_AWS_BACKEND", value_enum)]
    pub aws_backend: Option<AwsBackend>,
    /// IAM endpoint override (a local AWS emulator).
    #[arg(long, env = "AGR_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "AGR_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Address of `/sns` and `/events`.
    #[arg(long, env = "AGR_SIGNALS_ADDR")]
    pub signals_addr: Option<SocketAddr>,
    /// Elect a leader through a Lease (`false` only with one replica).
    #[arg(long, env = "AGR_LEADER_ELECTION", num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: Option<bool>,
    /// The Lease name.
    #[arg(long, env = "AGR_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// The Lease namespace (default: the pod's namespace).
    #[arg(long, env = "AGR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// `json` or `text`.
    #[arg(long, env = "AGR_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve the read-only web dashboard (`dashboard.enabled`).
    #[arg(long, env = "AGR_DASHBOARD", num_args = 0..=1, default_missing_value = "true")]
    pub dashboard: Option<bool>,
    /// Address of the dashboard (`dashboard.addr`).
    #[arg(long, env = "AGR_DASHBOARD_ADDR")]
    pub dashboard_addr: Option<SocketAddr>,
    /// File holding the dashboard's bearer token (`dashboard.tokenFile`).
    #[arg(long, env = "AGR_DASHBOARD_TOKEN_FILE")]
    pub dashboard_token_file: Option<PathBuf>,
    /// Serve the approval webhook (`approvalWebhook.enabled`).
    #[arg(long, env = "AGR_APPROVAL_WEBHOOK", num_args = 0..=1, default_missing_value = "true")]
    pub approval_webhook: Option<bool>,
    /// Address of the approval webhook (`approvalWebhook.addr`).
    #[arg(long, env = "AGR_APPROVAL_WEBHOOK_ADDR")]
    pub approval_webhook_addr: Option<SocketAddr>,
    /// PEM certificate of the approval webhook (`approvalWebhook.certFile`).
    #[arg(long, env = "AGR_APPROVAL_WEBHOOK_CERT_FILE")]
    pub approval_webhook_cert_file: Option<PathBuf>,
    /// PEM private key of the approval webhook (`approvalWebhook.keyFile`).
    #[arg(long, env = "AGR_APPROVAL_WEBHOOK_KEY_FILE")]
    pub approval_webhook_key_file: Option<PathBuf>,
    /// Directory of pinned SNS signing certificates (`signals.sns.pinnedCertificatesDir`).
    #[arg(long, env = "AGR_SNS_PINNED_CERTIFICATES_DIR")]
    pub sns_pinned_certificates_dir: Option<PathBuf>,
    /// Print the effective configuration as YAML and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn parse_duration_arg(text: &str) -> Result<SignedDuration, String> {
    text.trim()
        .parse::<SignedDuration>()
        .map_err(|e| format!("{text:?} is not a duration like 30s or 1m30s: {e}"))
}

impl Config {
    /// Reads and parses a configuration file (unknown fields are errors).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Config::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses configuration YAML; an empty document is the defaults.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// The file (if any) with the flags and variables applied, validated.
    pub fn load(args: &ControllerArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    /// Applies every flag or variable that was given.
    pub fn apply(&mut self, args: &ControllerArgs) {
        if let Some(v) = &args.namespaces {
            self.namespaces = v.iter().filter(|s| !s.trim().is_empty()).cloned().collect();
        }
        if let Some(v) = &args.cluster_id {
            self.cluster_id = v.clone();
        }
        if let Some(v) = &args.protected_principals {
            self.protected_principals =
                v.iter().filter(|s| !s.trim().is_empty()).cloned().collect();
        }
        if let Some(v) = args.kill_switch {
            self.kill_switch = v;
        }
        if let Some(v) = args.drift_period {
            self.drift_period = v;
        }
        if let Some(v) = args.aws_backend {
            self.aws.backend = v;
        }
        if let Some(v) = &args.aws_endpoint_url {
            self.aws.endpoint_url = Some(v.clone());
        }
        if let Some(v) = args.metrics_addr {
            self.metrics_addr = v;
        }
        if let Some(v) = args.signals_addr {
            self.signals_addr = v;
        }
        if let Some(v) = args.leader_election {
            self.leader_election.enabled = v;
        }
        if let Some(v) = &args.lease_name {
            self.leader_election.lease_name = v.clone();
        }
        if let Some(v) = &args.lease_namespace {
            self.leader_election.lease_namespace = Some(v.clone());
        }
        if let Some(v) = args.log_format {
            self.log_format = v;
        }
        if let Some(v) = args.dashboard {
            self.dashboard.enabled = v;
        }
        if let Some(v) = args.approval_webhook {
            self.approval_webhook.enabled = v;
        }
        if let Some(v) = args.approval_webhook_addr {
            self.approval_webhook.addr = v;
        }
        if let Some(v) = &args.approval_webhook_cert_file {
            self.approval_webhook.cert_file = Some(v.clone());
        }
        if let Some(v) = &args.approval_webhook_key_file {
            self.approval_webhook.key_file = Some(v.clone());
        }
        if let Some(v) = args.dashboard_addr {
            self.dashboard.addr = v;
        }
        if let Some(v) = &args.dashboard_token_file {
            self.dashboard.token_file = Some(v.clone());
        }
        if let Some(v) = &args.sns_pinned_certificates_dir {
            self.signals.sns.pinned_certificates_dir = Some(v.clone());
        }
    }

    /// Checks ranges and consistency; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if !is_dns_label(&self.cluster_id, 40) {
            return invalid(
                "clusterId",
                format!(
                    "{:?} must be 1-40 lowercase letters, digits or '-' (it becomes part of IAM names)",
                    self.cluster_id
                ),
            );
        }
        for arn in &self.protected_principals {
            match crate::principal::PrincipalArn::parse(arn) {
                Ok(p)
                    if p.reference().is_some()
                        && p.kind() != crate::principal::PrincipalKind::AssumedRole => {}
                Ok(_) => {
                    return invalid(
                        "protectedPrincipals",
                        format!("{arn:?} is not an IAM role or user ARN"),
                    );
                }
                Err(e) => return invalid("protectedPrincipals", e.to_string()),
            }
        }
        if let Err(e) = self.velocity.validate() {
            let field = match &e {
                crate::controller::velocity::tracker::TrackerError::Setting { field, .. } => *field,
                crate::controller::velocity::tracker::TrackerError::Prices { .. } => {
                    "velocity.priceFile"
                }
            };
            return invalid(field, e.to_string());
        }
        for ns in &self.namespaces {
            if !is_dns_label(ns, 63) {
                return invalid("namespaces", format!("{ns:?} is not a namespace name"));
            }
        }
        let positive = |field, value: SignedDuration| -> Result<Duration, ConfigError> {
            Duration::try_from(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError::Invalid {
                    field,
                    message: format!("{value:#} must be positive"),
                })
        };
        let drift = positive("driftPeriod", self.drift_period)?;
        if drift > MAX_DRIFT_PERIOD {
            return invalid(
                "driftPeriod",
                format!(
                    "{:#} is longer than the {}s allowed",
                    self.drift_period,
                    MAX_DRIFT_PERIOD.as_secs()
                ),
            );
        }
        positive("fullConvergePeriod", self.full_converge_period)?;
        positive("sweepPeriod", self.sweep_period)?;
        positive("retireEndedAfter", self.retire_ended_after)?;
        positive("selectorPeriod", self.selector_period)?;
        positive("maxBackoff", self.max_backoff)?;
        if !(1..=MAX_RECONCILE_CONCURRENCY).contains(&self.reconcile_concurrency) {
            return invalid(
                "reconcileConcurrency",
                format!(
                    "{} is not between 1 and {MAX_RECONCILE_CONCURRENCY}",
                    self.reconcile_concurrency
                ),
            );
        }
        positive("shutdownTimeout", self.shutdown_timeout)?;
        if self.metrics_addr == self.signals_addr {
            return invalid(
                "signalsAddr",
                format!("{} is also metricsAddr", self.signals_addr),
            );
        }
        if self.dashboard.enabled {
            if self.dashboard.token_file.is_none() {
                return invalid(
                    "dashboard.tokenFile",
                    "the dashboard needs a bearer token file (a mounted Secret); it is never served without one".into(),
                );
            }
            if self.dashboard.addr == self.metrics_addr || self.dashboard.addr == self.signals_addr
            {
                return invalid(
                    "dashboard.addr",
                    format!("{} is also metricsAddr or signalsAddr", self.dashboard.addr),
                );
            }
        }
        if self.approval_webhook.enabled {
            if self.approval_webhook.cert_file.is_none() || self.approval_webhook.key_file.is_none()
            {
                return invalid(
                    "approvalWebhook.certFile",
                    "the approval webhook needs certFile and keyFile (a mounted TLS Secret)".into(),
                );
            }
            let taken = [self.metrics_addr, self.signals_addr]
                .into_iter()
                .chain(self.dashboard.enabled.then_some(self.dashboard.addr));
            if taken
                .into_iter()
                .any(|addr| addr == self.approval_webhook.addr)
            {
                return invalid(
                    "approvalWebhook.addr",
                    format!(
                        "{} is also metricsAddr, signalsAddr or dashboard.addr",
                        self.approval_webhook.addr
                    ),
                );
            }
        }
        for (account, a) in &self.aws.accounts {
            if !is_account_id(account) {
                return invalid(
                    "aws.accounts",
                    format!("{account:?} is not a 12-digit account id"),
                );
            }
            if !a.role_arn.starts_with("arn:aws")
                || !a.role_arn.contains(&format!(":{account}:role/"))
            {
                return invalid(
                    "aws.accounts",
                    format!(
                        "roleArn {:?} is not a role in account {account}",
                        a.role_arn
                    ),
                );
            }
        }
        for account in self.aws.memory.keys() {
            if !is_account_id(account) {
                return invalid(
                    "aws.memory",
                    format!("{account:?} is not a 12-digit account id"),
                );
            }
        }
        if self.aws.backend == AwsBackend::Memory && self.aws.memory.is_empty() {
            return invalid(
                "aws.memory",
                "the memory backend needs at least one account with its principals".to_string(),
            );
        }
        if self.aws.requests_per_second < 0.0 || !self.aws.requests_per_second.is_finite() {
            return invalid(
                "aws.requestsPerSecond",
                format!("{} must be 0 or positive", self.aws.requests_per_second),
            );
        }
        let leader = &self.leader_election;
        if leader.enabled {
            let lease = positive("leaderElection.leaseDuration", leader.lease_duration)?;
            let renew = positive("leaderElection.renewDeadline", leader.renew_deadline)?;
            let retry = positive("leaderElection.retryPeriod", leader.retry_period)?;
            if !(lease > renew && renew > retry) {
                return invalid(
                    "leaderElection",
                    "leaseDuration > renewDeadline > retryPeriod must hold".to_string(),
                );
            }
            if leader.lease_name.is_empty() {
                return invalid("leaderElection.leaseName", "must not be empty".to_string());
            }
        }
        Ok(())
    }

    /// The settings the controllers read; a protected principal that is not a principal ARN is
    /// an error (never dropped).
    pub fn controller_settings(&self) -> Result<Settings, ConfigError> {
        let unsigned = |d: SignedDuration| Duration::try_from(d).unwrap_or_default();
        Ok(Settings {
            namespaces: self.namespaces.clone(),
            cluster_id: self.cluster_id.clone(),
            protected_principals: crate::principal::PrincipalSet::parse_all(
                &self.protected_principals,
            )
            .map_err(|e| ConfigError::Invalid {
                field: "protectedPrincipals",
                message: e.to_string(),
            })?,
            kill_switch: self.kill_switch,
            drift_period: unsigned(self.drift_period),
            full_converge_period: unsigned(self.full_converge_period),
            sweep_period: unsigned(self.sweep_period),
            accounts: self
                .aws
                .accounts
                .keys()
                .chain(self.aws.memory.keys())
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            max_backoff: unsigned(self.max_backoff),
            reconcile_concurrency: self.reconcile_concurrency,
            retire_after: Some(self.retire_ended_after),
            approval_stamp_key: None,
            // The sink is built by the command (it needs the AWS clients); timings from here.
            audit: self.audit.outlet(None),
            slack_post_with: self.notifications.post_with,
            slack_channel: self.notifications.channel.clone(),
        })
    }

    /// The effective configuration as YAML (what `--print-config` shows).
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(self).map_err(|e| e.to_string())
    }
}

fn is_dns_label(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(flags: &[&str]) -> ControllerArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(flags);
        TestCli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults_validate_and_match_the_documented_values() {
        let c = Config::default();
        c.validate().unwrap();
        let s = c.controller_settings().unwrap();
        assert_eq!(s.drift_period, Duration::from_secs(20));
        assert!(s.namespaces.is_empty());
        assert!(c.leader_election.enabled);
        assert_eq!(c.metrics_addr.port(), 8080);
        assert_eq!(c.signals_addr.port(), 8081);
        assert_eq!(c.aws.backend, AwsBackend::Sdk);
    }

    #[test]
    fn file_values_are_read_and_flags_override_them() {
        let mut c = Config::from_yaml(
            "clusterId: prod-eu1\nnamespaces: [team-a]\ndriftPeriod: 20s\nkillSwitch: true\n\
             aws:\n  backend: memory\n  memory:\n    '111111111111': {roles: [dev-ci]}\n\
             signals:\n  sns:\n    allowedTopics: [arn:aws:sns:us-east-1:111111111111:t]\n\
             poller:\n  interval: 12h\n",
        )
        .unwrap();
        assert_eq!(c.cluster_id, "prod-eu1");
        assert_eq!(c.drift_period, SignedDuration::from_secs(20));
        assert_eq!(c.signals.sns.allowed_topics.len(), 1);
        assert_eq!(c.poller.interval, SignedDuration::from_hours(12));
        c.apply(&parse(&[
            "--cluster-id",
            "staging",
            "--kill-switch=false",
            "--namespaces",
            "a,b",
            "--drift-period",
            "5s",
        ]));
        c.validate().unwrap();
        assert_eq!(c.cluster_id, "staging");
        assert!(!c.kill_switch);
        assert_eq!(c.namespaces, vec!["a", "b"]);
        assert_eq!(
            c.controller_settings().unwrap().drift_period,
            Duration::from_secs(5)
        );
        assert_eq!(
            c.controller_settings().unwrap().accounts,
            vec!["111111111111"]
        );
    }

    #[test]
    fn a_bare_flag_turns_a_switch_on() {
        let mut c = Config::default();
        c.apply(&parse(&["--kill-switch", "--leader-election=false"]));
        assert!(c.kill_switch);
        assert!(!c.leader_election.enabled);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_field_named() {
        let e = Config::from_yaml("clusterID: x\n").unwrap_err();
        assert!(e.contains("clusterID"), "{e}");
        let cases: Vec<(&str, &str)> = vec![
            ("clusterId: Prod_1\n", "clusterId"),
            (
                "protectedPrincipals: ['arn:aws:iam::123:role/x']\n",
                "protectedPrincipals",
            ),
            ("driftPeriod: 0s\n", "driftPeriod"),
            ("driftPeriod: 2h\n", "driftPeriod"),
            ("reconcileConcurrency: 0\n", "reconcileConcurrency"),
            ("reconcileConcurrency: 1000\n", "reconcileConcurrency"),
            (
                "metricsAddr: 0.0.0.0:9000\nsignalsAddr: 0.0.0.0:9000\n",
                "signalsAddr",
            ),
            ("aws:\n  backend: memory\n", "aws.memory"),
            (
                "aws:\n  accounts:\n    '111111111111': {roleArn: 'arn:aws:iam::222222222222:role/x'}\n",
                "aws.accounts",
            ),
            (
                "leaderElection:\n  leaseDuration: 5s\n  renewDeadline: 10s\n",
                "leaderElection",
            ),
        ];
        for (yaml, field) in cases {
            let c = Config::from_yaml(yaml).unwrap();
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{yaml}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_or_huge_file_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("agr-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let e = Config::from_file(&missing).unwrap_err();
        assert_eq!(e.category(), "read");
        assert!(e.to_string().contains("missing.yaml"));
        let big = dir.join("big.yaml");
        std::fs::write(&big, vec![b'#'; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
        assert_eq!(Config::from_file(&big).unwrap_err().category(), "too_large");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "driftPeriod: soon\n").unwrap();
        let e = Config::from_file(&bad).unwrap_err();
        assert_eq!(e.category(), "parse");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same() {
        let mut c = Config {
            cluster_id: "prod".into(),
            ..Config::default()
        };
        c.aws.memory.insert(
            "111111111111".into(),
            MemoryAccount {
                roles: vec!["dev-ci".into()],
                users: vec![],
            },
        );
        let yaml = c.to_yaml().unwrap();
        assert_eq!(Config::from_yaml(&yaml).unwrap(), c);
    }
}
