//! The gate's configuration as data: the gate file (`GateConfig`), the seed's `slos.yaml` and the
//! OpenSLO v1 `SLO`/`SLI` kinds, parsed from text and validated into `ServiceSettings` with errors
//! that name the offending field. It must not read files or talk to any source (the `files`
//! adapter reads; this module only parses and checks).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why a configuration could not be used. Every message names the file and field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The text is not valid YAML/JSON for the expected shape.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message (it names the field).
        message: String,
    },
    /// A field has an invalid value.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The field path, e.g. `services.web.slo.availability.target`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::Syntax { .. } => "syntax",
            ConfigError::Invalid { .. } => "invalid",
        }
    }

    fn invalid(file: &str, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A duration written as `30d`, `6h`, `5m`, `90s` (one unit), kept as seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window(pub u64);

impl Window {
    /// Parses `30d`, `6h`, `5m`, `90s`, `2w`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?} has no unit (s, m, h, d, w)"))?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} does not start with a whole number"))?;
        let factor = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => {
                return Err(format!(
                    "{text:?} has an unknown unit {unit:?} (s, m, h, d, w)"
                ));
            }
        };
        if n == 0 {
            return Err(format!("{text:?} is zero"));
        }
        n.checked_mul(factor)
            .map(Window)
            .ok_or_else(|| format!("{text:?} is too long"))
    }

    /// The PromQL range form (`30d`, `1h`, `5m`, `90s`).
    pub fn promql(self) -> String {
        let s = self.0;
        if s.is_multiple_of(86_400) {
            format!("{}d", s / 86_400)
        } else if s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }

    /// Seconds.
    pub fn seconds(self) -> u64 {
        self.0
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.promql())
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        let text = String::deserialize(d)?;
        Window::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Burn-rate class thresholds (the seed's 1/2/5/10).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnThresholds {
    /// At or above: `low` (below it is also `low`).
    #[serde(default = "default_low")]
    pub low: f64,
    /// At or above: `medium`.
    #[serde(default = "default_medium")]
    pub medium: f64,
    /// At or above: `high`.
    #[serde(default = "default_high")]
    pub high: f64,
    /// At or above: `critical`.
    #[serde(default = "default_critical")]
    pub critical: f64,
}

fn default_low() -> f64 {
    1.0
}
fn default_medium() -> f64 {
    2.0
}
fn default_high() -> f64 {
    5.0
}
fn default_critical() -> f64 {
    10.0
}

impl Default for BurnThresholds {
    fn default() -> Self {
        BurnThresholds {
            low: 1.0,
            medium: 2.0,
            high: 5.0,
            critical: 10.0,
        }
    }
}

/// One multi-window burn-rate alert: both windows must burn faster than `factor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurnWindow {
    /// The long window (e.g. `1h`).
    pub long: Window,
    /// The short window (e.g. `5m`).
    pub short: Window,
    /// The burn-rate factor both windows must exceed (e.g. 14.4).
    pub factor: f64,
    /// `page` or `ticket`.
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_severity() -> String {
    "ticket".to_string()
}

/// The SRE workbook's multi-window, multi-burn-rate defaults for a 30-day window.
pub fn default_burn_windows() -> Vec<BurnWindow> {
    let w = |long: u64, short: u64, factor: f64, severity: &str| BurnWindow {
        long: Window(long),
        short: Window(short),
        factor,
        severity: severity.to_string(),
    };
    vec![
        w(3600, 300, 14.4, "page"),
        w(21_600, 1800, 6.0, "page"),
        w(86_400, 7200, 3.0, "ticket"),
        w(259_200, 21_600, 1.0, "ticket"),
    ]
}

/// Burn-rate settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurnRateSettings {
    /// Class thresholds.
    #[serde(default)]
    pub thresholds: BurnThresholds,
    /// Multi-window pairs (default: the SRE workbook's four).
    #[serde(default = "default_burn_windows")]
    pub windows: Vec<BurnWindow>,
}

impl Default for BurnRateSettings {
    fn default() -> Self {
        BurnRateSettings {
            thresholds: BurnThresholds::default(),
            windows: default_burn_windows(),
        }
    }
}

/// Cost thresholds (the seed's 20 % warn / 30 % spike, -10 % falling).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostSettings {
    /// Week-over-week % at or above which the trend is `rising` and a spike is detected.
    #[serde(default = "default_rising", alias = "warn_spike_pct")]
    pub rising_pct: f64,
    /// Week-over-week % at or above which the trend is `spiking`.
    #[serde(default = "default_spiking", alias = "block_spike_pct")]
    pub spiking_pct: f64,
    /// Week-over-week % at or below which the trend is `falling`.
    #[serde(default = "default_falling")]
    pub falling_pct: f64,
    /// Days of history needed (two full weeks by default).
    #[serde(default = "default_minimum_days")]
    pub minimum_days: usize,
    /// The newest cost day may be at most this many days before the evaluation day.
    #[serde(default = "default_max_lag_days")]
    pub max_lag_days: i64,
}

fn default_rising() -> f64 {
    20.0
}
fn default_spiking() -> f64 {
    30.0
}
fn default_falling() -> f64 {
    -10.0
}
fn default_minimum_days() -> usize {
    14
}
fn default_max_lag_days() -> i64 {
    3
}

impl Default for CostSettings {
    fn default() -> Self {
        CostSettings {
            rising_pct: 20.0,
            spiking_pct: 30.0,
            falling_pct: -10.0,
            minimum_days: 14,
            max_lag_days: 3,
        }
    }
}

/// SLO targets for one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloTargets {
    /// Availability target in percent (99.9).
    pub availability_target_pct: f64,
    /// The rolling error-budget window.
    pub window: Window,
    /// p95 latency threshold in milliseconds.
    pub p95_threshold_ms: Option<f64>,
    /// p99 latency threshold in milliseconds.
    pub p99_threshold_ms: Option<f64>,
}

/// PromQL for one service. `$window` is replaced by each window (`30d`, `1h`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusQueries {
    /// Good events over `$window` (one of `good`/`bad` is required).
    #[serde(default)]
    pub good: Option<String>,
    /// Bad events over `$window`.
    #[serde(default)]
    pub bad: Option<String>,
    /// Valid (total) events over `$window`.
    pub total: String,
    /// p95 latency in milliseconds.
    #[serde(default)]
    pub p95: Option<String>,
    /// p99 latency in milliseconds.
    #[serde(default)]
    pub p99: Option<String>,
    /// Seconds since the newest sample (e.g. `time() - max(timestamp(x))`).
    #[serde(default)]
    pub freshness: Option<String>,
}

/// Where a service's SLIs come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSourceConfig {
    /// The seed's `metrics.json` snapshot.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// PromQL against the configured Prometheus.
    #[serde(default)]
    pub prometheus: Option<PrometheusQueries>,
}

/// A Cost Explorer filter (all given dimensions must match).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostFilter {
    /// AWS service names (`SERVICE` dimension), e.g. `Amazon Elastic Compute Cloud - Compute`.
    #[serde(default)]
    pub services: Vec<String>,
    /// Linked account ids (`LINKED_ACCOUNT` dimension).
    #[serde(default)]
    pub linked_accounts: Vec<String>,
    /// Cost allocation tags: key → accepted values.
    #[serde(default)]
    pub tags: BTreeMap<String, Vec<String>>,
}

/// Where a service's daily cost comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostSourceConfig {
    /// The seed's `cost.json` daily records.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Cost Explorer `GetCostAndUsage` with this filter.
    #[serde(default)]
    pub cost_explorer: Option<CostFilter>,
}

/// Seed-shaped availability targets (`slos.availability`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilitySpec {
    /// Target in percent.
    pub target: f64,
    /// Window in days (seed) …
    #[serde(default, alias = "window_days")]
    pub window_days: Option<u64>,
    /// … or as a duration (`30d`).
    #[serde(default)]
    pub window: Option<Window>,
}

/// Seed-shaped latency targets (`slos.latency`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencySpec {
    /// p95 threshold (ms).
    #[serde(default, alias = "p95_threshold_ms")]
    pub p95_threshold_ms: Option<f64>,
    /// p99 threshold (ms).
    #[serde(default, alias = "p99_threshold_ms")]
    pub p99_threshold_ms: Option<f64>,
}

/// Seed-shaped SLO block (`slos:` of `slos.yaml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SloSpec {
    /// Availability.
    pub availability: AvailabilitySpec,
    /// Latency.
    #[serde(default)]
    pub latency: Option<LatencySpec>,
}

/// The seed's `slos.yaml` file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSlosFile {
    /// SLO targets.
    pub slos: SloSpec,
    /// Burn thresholds (`burn_rate.thresholds`).
    #[serde(default)]
    pub burn_rate: Option<SeedBurnRate>,
}

/// `burn_rate:` of the seed file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedBurnRate {
    /// Class thresholds.
    #[serde(default)]
    pub thresholds: BurnThresholds,
}

/// One service in the gate file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceFile {
    /// Inline seed-shaped SLO targets.
    #[serde(default)]
    pub slo: Option<SloSpec>,
    /// A seed `slos.yaml` (relative to the gate file).
    #[serde(default)]
    pub slos_file: Option<PathBuf>,
    /// An OpenSLO v1 file (relative to the gate file); its queries replace `metrics.prometheus`.
    #[serde(default)]
    pub openslo: Option<PathBuf>,
    /// Below this many requests in the error-budget window the SLIs are `NoData`.
    #[serde(default = "default_minimum_requests")]
    pub minimum_requests: f64,
    /// Below this many requests in a burn-rate window that window is `NoData`.
    #[serde(default = "default_minimum_window_requests")]
    pub minimum_window_requests: f64,
    /// Maximum age of the newest sample, in seconds, before inputs are `Stale`.
    #[serde(default = "default_max_staleness")]
    pub max_staleness_seconds: f64,
    /// SLI source.
    #[serde(default)]
    pub metrics: Option<MetricsSourceConfig>,
    /// Cost source.
    #[serde(default)]
    pub cost: Option<CostSourceConfig>,
}

fn default_minimum_requests() -> f64 {
    100.0
}
fn default_minimum_window_requests() -> f64 {
    1.0
}
fn default_max_staleness() -> f64 {
    600.0
}

/// Prometheus connection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSettings {
    /// Base URL, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Per-request timeout (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Basic auth user name.
    #[serde(default)]
    pub basic_auth_username: Option<String>,
    /// Environment variable holding the basic auth password.
    #[serde(default)]
    pub basic_auth_password_env: Option<String>,
    /// PEM file with extra CA certificates.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

fn default_timeout() -> f64 {
    10.0
}

/// Cost Explorer settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostExplorerSettings {
    /// Region (Cost Explorer lives in `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint override (tests: moto).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// `UnblendedCost` (default), `AmortizedCost`, `NetUnblendedCost`, …
    #[serde(default = "default_cost_metric")]
    pub metric: String,
    /// SDK retry attempts (0 disables retries).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_cost_metric() -> String {
    "UnblendedCost".to_string()
}
fn default_attempts() -> u32 {
    3
}

/// Audit settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditSettings {
    /// Directory for `decisions-YYYY-MM-DD.jsonl` (relative to the gate file).
    #[serde(default = "default_audit_dir")]
    pub directory: PathBuf,
}

fn default_audit_dir() -> PathBuf {
    PathBuf::from("audit")
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            directory: default_audit_dir(),
        }
    }
}

/// LLM explainer settings (off by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExplainerSettings {
    /// `rules` (default), `anthropic` or `openai`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
    /// API base URL override (tests: a local stub).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable with the API key (default `ANTHROPIC_API_KEY` / `OPENAI_API_KEY`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Timeout in seconds, after which the rule-based text is used.
    #[serde(default = "default_llm_timeout")]
    pub timeout_seconds: f64,
}

fn default_backend() -> String {
    "rules".to_string()
}
fn default_llm_timeout() -> f64 {
    10.0
}

impl Default for ExplainerSettings {
    fn default() -> Self {
        ExplainerSettings {
            backend: default_backend(),
            model: None,
            url: None,
            api_key_env: None,
            timeout_seconds: default_llm_timeout(),
        }
    }
}

/// The gate file as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateFile {
    /// Optional marker (`autoguardrails.io/v1alpha1`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Optional marker (`GateConfig`).
    #[serde(default)]
    pub kind: Option<String>,
    /// The service used when `--service` is not given.
    #[serde(default)]
    pub default_service: Option<String>,
    /// The rules file (relative to the gate file); default: the seed's P001–P008.
    #[serde(default)]
    pub policies: Option<PathBuf>,
    /// Prometheus connection.
    #[serde(default)]
    pub prometheus: Option<PrometheusSettings>,
    /// Cost Explorer connection.
    #[serde(default)]
    pub cost_explorer: Option<CostExplorerSettings>,
    /// Burn-rate classes and windows.
    #[serde(default)]
    pub burn_rate: BurnRateSettings,
    /// Cost thresholds.
    #[serde(default)]
    pub cost: CostSettings,
    /// Audit log.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Explainer.
    #[serde(default)]
    pub explainer: ExplainerSettings,
    /// Services by name.
    pub services: BTreeMap<String, ServiceFile>,
}

/// Where a resolved service's SLIs come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricsSource {
    /// The seed's metrics.json.
    File(PathBuf),
    /// PromQL.
    Prometheus(PrometheusQueries),
}

/// Where a resolved service's cost comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CostSource {
    /// The seed's cost.json.
    File(PathBuf),
    /// Cost Explorer.
    CostExplorer(CostFilter),
    /// Not configured (cost signals are `NoData`).
    None,
}

/// One service, validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// Name.
    pub name: String,
    /// SLO targets.
    pub slo: SloTargets,
    /// Traffic floor for the error-budget window.
    pub minimum_requests: f64,
    /// Traffic floor for each burn-rate window.
    pub minimum_window_requests: f64,
    /// Staleness bound (seconds).
    pub max_staleness_seconds: f64,
    /// SLI source.
    pub metrics: MetricsSource,
    /// Cost source.
    pub cost: CostSource,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateConfig {
    /// Default service.
    pub default_service: Option<String>,
    /// Rules file, resolved against the gate file's directory.
    pub policies: Option<PathBuf>,
    /// Prometheus connection.
    pub prometheus: Option<PrometheusSettings>,
    /// Cost Explorer connection.
    pub cost_explorer: Option<CostExplorerSettings>,
    /// Burn-rate classes and windows.
    pub burn_rate: BurnRateSettings,
    /// Cost thresholds.
    pub cost: CostSettings,
    /// Audit directory, resolved.
    pub audit: AuditSettings,
    /// Explainer.
    pub explainer: ExplainerSettings,
    /// Services.
    pub services: BTreeMap<String, ServiceSettings>,
}

impl GateConfig {
    /// The service named `name`, or the default one (or the only one).
    pub fn service(&self, name: Option<&str>) -> Result<&ServiceSettings, ConfigError> {
        let chosen = match name.or(self.default_service.as_deref()) {
            Some(n) => n.to_string(),
            None if self.services.len() == 1 => {
                self.services.keys().next().cloned().unwrap_or_default()
            }
            None => {
                return Err(ConfigError::invalid(
                    "--service",
                    "service",
                    format!(
                        "several services are configured ({}); choose one with --service",
                        self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        };
        self.services.get(&chosen).ok_or_else(|| {
            ConfigError::invalid(
                "--service",
                "service",
                format!(
                    "no service {chosen:?} in the configuration (known: {})",
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

/// Parses YAML (or JSON) text into `T`, naming the file in errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Syntax {
            file: file.to_string(),
            message: "the file is empty".to_string(),
        });
    }
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_string(),
        message: e.to_string(),
    })
}

/// Converts a seed SLO block into targets, naming `field` (the block's path) in errors.
pub fn targets_from_spec(
    file: &str,
    field: &str,
    spec: &SloSpec,
) -> Result<SloTargets, ConfigError> {
    let target = spec.availability.target;
    if !(target > 0.0 && target < 100.0) {
        return Err(ConfigError::invalid(
            file,
            format!("{field}.availability.target"),
            format!("must be a percentage between 0 and 100 exclusive (got {target})"),
        ));
    }
    let window = match (spec.availability.window, spec.availability.window_days) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.availability"),
                "give window or windowDays, not both",
            ));
        }
        (Some(w), None) => w,
        (None, Some(0)) => {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.availability.windowDays"),
                "must be at least 1",
            ));
        }
        (None, Some(days)) => Window(days.saturating_mul(86_400)),
        (None, None) => Window(30 * 86_400),
    };
    let latency = spec.latency.clone().unwrap_or(LatencySpec {
        p95_threshold_ms: None,
        p99_threshold_ms: None,
    });
    for (name, value) in [
        ("p95ThresholdMs", latency.p95_threshold_ms),
        ("p99ThresholdMs", latency.p99_threshold_ms),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.latency.{name}"),
                format!("must be a positive number of milliseconds (got {v})"),
            ));
        }
    }
    Ok(SloTargets {
        availability_target_pct: target,
        window,
        p95_threshold_ms: latency.p95_threshold_ms,
        p99_threshold_ms: latency.p99_threshold_ms,
    })
}

/// What an OpenSLO document set contributes to one service.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenSloMapping {
    /// The `spec.service` of the SLOs.
    pub service: String,
    /// Targets from the ratio SLO (and threshold SLOs).
    pub slo: SloTargets,
    /// Queries from the SLIs.
    pub queries: PrometheusQueries,
}

/// Maps OpenSLO v1 `SLO` (and `SLI`) documents to targets and queries: a ratio SLI gives the
/// availability target and good/bad/total queries (counters are wrapped as
/// `sum(increase(<query>[$window]))`), a threshold SLI with objective target 0.95 or 0.99 gives
/// the p95/p99 threshold (`op: lt`/`lte`, `value` in milliseconds) and query.
pub fn openslo(file: &str, text: &str) -> Result<OpenSloMapping, ConfigError> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    let mut slis: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut slos = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        if api != "openslo/v1" {
            return Err(ConfigError::invalid(
                file,
                format!("documents[{i}].apiVersion"),
                format!("must be openslo/v1 (got {api:?})"),
            ));
        }
        match doc["kind"].as_str().unwrap_or_default() {
            "SLI" => {
                let name = doc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                slis.insert(name, doc["spec"].clone());
            }
            "SLO" => slos.push((i, doc.clone())),
            "Service"
            | "AlertPolicy"
            | "AlertCondition"
            | "AlertNotificationTarget"
            | "DataSource" => {}
            other => {
                return Err(ConfigError::invalid(
                    file,
                    format!("documents[{i}].kind"),
                    format!("unsupported kind {other:?}"),
                ));
            }
        }
    }
    if slos.is_empty() {
        return Err(ConfigError::invalid(file, "kind", "no SLO document"));
    }
    let mut service = String::new();
    let mut availability: Option<(f64, Window)> = None;
    let mut queries = PrometheusQueries {
        good: None,
        bad: None,
        total: String::new(),
        p95: None,
        p99: None,
        freshness: None,
    };
    let mut p95 = None;
    let mut p99 = None;
    for (i, slo) in slos {
        let at = |f: &str| format!("documents[{i}].spec.{f}");
        let spec = &slo["spec"];
        service = spec["service"].as_str().unwrap_or_default().to_string();
        let indicator = if spec["indicator"].is_object() {
            spec["indicator"]["spec"].clone()
        } else if let Some(reference) = spec["indicatorRef"].as_str() {
            slis.get(reference).cloned().ok_or_else(|| {
                ConfigError::invalid(
                    file,
                    at("indicatorRef"),
                    format!("no SLI named {reference:?}"),
                )
            })?
        } else {
            return Err(ConfigError::invalid(
                file,
                at("indicator"),
                "missing (or indicatorRef)",
            ));
        };
        let window = spec["timeWindow"][0]["duration"]
            .as_str()
            .map(Window::parse)
            .transpose()
            .map_err(|e| ConfigError::invalid(file, at("timeWindow[0].duration"), e))?
            .unwrap_or(Window(30 * 86_400));
        if spec["timeWindow"][0]["isRolling"].as_bool() == Some(false) {
            return Err(ConfigError::invalid(
                file,
                at("timeWindow[0].isRolling"),
                "calendar windows are not supported; use a rolling window",
            ));
        }
        if let Some(method) = spec["budgetingMethod"].as_str()
            && method != "Occurrences"
        {
            return Err(ConfigError::invalid(
                file,
                at("budgetingMethod"),
                format!("only Occurrences is supported (got {method:?})"),
            ));
        }
        let objective = &spec["objectives"][0];
        let target = objective["target"].as_f64().ok_or_else(|| {
            ConfigError::invalid(file, at("objectives[0].target"), "missing number")
        })?;
        let query = |metric: &serde_json::Value, f: &str| -> Result<String, ConfigError> {
            let source = &metric["metricSource"];
            let kind = source["type"].as_str().unwrap_or("Prometheus");
            if kind != "Prometheus" {
                return Err(ConfigError::invalid(
                    file,
                    format!("{f}.metricSource.type"),
                    format!("only Prometheus is supported (got {kind:?})"),
                ));
            }
            source["spec"]["query"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    ConfigError::invalid(file, format!("{f}.metricSource.spec.query"), "missing")
                })
        };
        if indicator["ratioMetric"].is_object() {
            let ratio = &indicator["ratioMetric"];
            let counter = ratio["counter"].as_bool().unwrap_or(false);
            let wrap = |q: String| {
                if counter {
                    format!("sum(increase({q}[$window]))")
                } else {
                    q
                }
            };
            if ratio["good"].is_object() {
                queries.good = Some(wrap(query(&ratio["good"], "indicator.ratioMetric.good")?));
            }
            if ratio["bad"].is_object() {
                queries.bad = Some(wrap(query(&ratio["bad"], "indicator.ratioMetric.bad")?));
            }
            if queries.good.is_none() && queries.bad.is_none() {
                return Err(ConfigError::invalid(
                    file,
                    at("indicator.ratioMetric"),
                    "needs good or bad",
                ));
            }
            queries.total = wrap(query(&ratio["total"], "indicator.ratioMetric.total")?);
            if !(target > 0.0 && target < 1.0) {
                return Err(ConfigError::invalid(
                    file,
                    at("objectives[0].target"),
                    format!("must be a ratio between 0 and 1 exclusive (got {target})"),
                ));
            }
            availability = Some((target * 100.0, window));
        } else if indicator["thresholdMetric"].is_object() {
            let q = query(&indicator["thresholdMetric"], "indicator.thresholdMetric")?;
            let value = objective["value"].as_f64().ok_or_else(|| {
                ConfigError::invalid(file, at("objectives[0].value"), "missing threshold (ms)")
            })?;
            match objective["op"].as_str().unwrap_or("lte") {
                "lt" | "lte" => {}
                other => {
                    return Err(ConfigError::invalid(
                        file,
                        at("objectives[0].op"),
                        format!("only lt/lte are supported for latency (got {other:?})"),
                    ));
                }
            }
            if (target - 0.95).abs() < 1e-9 {
                queries.p95 = Some(q);
                p95 = Some(value);
            } else if (target - 0.99).abs() < 1e-9 {
                queries.p99 = Some(q);
                p99 = Some(value);
            } else {
                return Err(ConfigError::invalid(
                    file,
                    at("objectives[0].target"),
                    format!("a threshold SLO maps to p95 (0.95) or p99 (0.99); got {target}"),
                ));
            }
        } else {
            return Err(ConfigError::invalid(
                file,
                at("indicator"),
                "needs ratioMetric or thresholdMetric",
            ));
        }
    }
    let (target, window) = availability.ok_or_else(|| {
        ConfigError::invalid(
            file,
            "spec.indicator.ratioMetric",
            "no ratio (availability) SLO",
        )
    })?;
    Ok(OpenSloMapping {
        service,
        slo: SloTargets {
            availability_target_pct: target,
            window,
            p95_threshold_ms: p95,
            p99_threshold_ms: p99,
        },
        queries,
    })
}

/// Reads referenced files for `resolve` (the adapter supplies one that reads from disk).
pub trait DocumentReader {
    /// The text of `path`.
    fn read(&self, path: &std::path::Path) -> Result<String, String>;
}

/// Validates a parsed gate file into `GateConfig`; relative paths are joined to `base`.
pub fn resolve(
    file: &str,
    base: &std::path::Path,
    gate: GateFile,
    reader: &dyn DocumentReader,
) -> Result<GateConfig, ConfigError> {
    let join = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    if gate.services.is_empty() {
        return Err(ConfigError::invalid(
            file,
            "services",
            "at least one service is required",
        ));
    }
    let t = &gate.burn_rate.thresholds;
    if !(t.low > 0.0 && t.low <= t.medium && t.medium <= t.high && t.high <= t.critical) {
        return Err(ConfigError::invalid(
            file,
            "burnRate.thresholds",
            "must be positive and ordered low <= medium <= high <= critical",
        ));
    }
    for (i, w) in gate.burn_rate.windows.iter().enumerate() {
        if w.short >= w.long || w.factor.is_nan() || w.factor <= 0.0 {
            return Err(ConfigError::invalid(
                file,
                format!("burnRate.windows[{i}]"),
                "short must be shorter than long and factor positive",
            ));
        }
        if w.severity != "page" && w.severity != "ticket" {
            return Err(ConfigError::invalid(
                file,
                format!("burnRate.windows[{i}].severity"),
                format!("must be page or ticket (got {:?})", w.severity),
            ));
        }
    }
    let c = &gate.cost;
    if !(c.rising_pct <= c.spiking_pct && c.falling_pct < c.rising_pct) || c.minimum_days < 2 {
        return Err(ConfigError::invalid(
            file,
            "cost",
            "needs fallingPct < risingPct <= spikingPct and minimumDays >= 2",
        ));
    }
    if let Some(p) = &gate.prometheus {
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                file,
                "prometheus.url",
                format!("must be an http(s) URL (got {:?})", p.url),
            ));
        }
        if !(p.timeout_seconds > 0.0 && p.timeout_seconds <= 300.0) {
            return Err(ConfigError::invalid(
                file,
                "prometheus.timeoutSeconds",
                "must be in (0, 300]",
            ));
        }
    }
    match gate.explainer.backend.as_str() {
        "rules" | "anthropic" | "openai" => {}
        other => {
            return Err(ConfigError::invalid(
                file,
                "explainer.backend",
                format!("must be rules, anthropic or openai (got {other:?})"),
            ));
        }
    }
    let mut services = BTreeMap::new();
    for (name, service) in &gate.services {
        let field = format!("services.{name}");
        let mut queries_from_openslo = None;
        let mut thresholds_from_seed = None;
        let slo = match (&service.slo, &service.slos_file, &service.openslo) {
            (Some(spec), None, None) => targets_from_spec(file, &format!("{field}.slo"), spec)?,
            (None, Some(path), None) => {
                let path = join(path);
                let name = path.display().to_string();
                let text = reader
                    .read(&path)
                    .map_err(|e| ConfigError::invalid(file, format!("{field}.slosFile"), e))?;
                let seed: SeedSlosFile = parse_yaml(&name, &text)?;
                thresholds_from_seed = seed.burn_rate.map(|b| b.thresholds);
                targets_from_spec(&name, "slos", &seed.slos)?
            }
            (None, None, Some(path)) => {
                let path = join(path);
                let name = path.display().to_string();
                let text = reader
                    .read(&path)
                    .map_err(|e| ConfigError::invalid(file, format!("{field}.openslo"), e))?;
                let mapping = openslo(&name, &text)?;
                queries_from_openslo = Some(mapping.queries);
                mapping.slo
            }
            _ => {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    "give exactly one of slo, slosFile, openslo",
                ));
            }
        };
        if let Some(thresholds) = thresholds_from_seed
            && thresholds != gate.burn_rate.thresholds
            && gate.burn_rate.thresholds != BurnThresholds::default()
        {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.slosFile"),
                "its burn_rate.thresholds differ from burnRate.thresholds in the gate file",
            ));
        }
        let metrics = match (&service.metrics, queries_from_openslo) {
            (None, Some(q)) => MetricsSource::Prometheus(q),
            (Some(m), Some(mut q)) => {
                // The gate file may add what OpenSLO cannot say (freshness).
                if let Some(p) = &m.prometheus {
                    q.freshness = p.freshness.clone();
                }
                MetricsSource::Prometheus(q)
            }
            (
                Some(MetricsSourceConfig {
                    file: Some(path),
                    prometheus: None,
                }),
                None,
            ) => MetricsSource::File(join(path)),
            (
                Some(MetricsSourceConfig {
                    file: None,
                    prometheus: Some(q),
                }),
                None,
            ) => MetricsSource::Prometheus(q.clone()),
            _ => {
                return Err(ConfigError::invalid(
                    file,
                    format!("{field}.metrics"),
                    "give exactly one of file or prometheus",
                ));
            }
        };
        if let MetricsSource::Prometheus(q) = &metrics {
            if q.good.is_some() == q.bad.is_some() {
                return Err(ConfigError::invalid(
                    file,
                    format!("{field}.metrics.prometheus"),
                    "give exactly one of good or bad (and total)",
                ));
            }
            if gate.prometheus.is_none() {
                return Err(ConfigError::invalid(
                    file,
                    "prometheus.url",
                    format!("{field} reads Prometheus but no prometheus connection is configured"),
                ));
            }
        }
        let cost = match &service.cost {
            None => CostSource::None,
            Some(CostSourceConfig {
                file: Some(path),
                cost_explorer: None,
            }) => CostSource::File(join(path)),
            Some(CostSourceConfig {
                file: None,
                cost_explorer: Some(filter),
            }) => CostSource::CostExplorer(filter.clone()),
            Some(_) => {
                return Err(ConfigError::invalid(
                    file,
                    format!("{field}.cost"),
                    "give exactly one of file or costExplorer",
                ));
            }
        };
        if !(service.minimum_requests >= 0.0 && service.minimum_window_requests >= 0.0) {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.minimumRequests"),
                "must not be negative",
            ));
        }
        if service.max_staleness_seconds.is_nan() || service.max_staleness_seconds <= 0.0 {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.maxStalenessSeconds"),
                "must be positive",
            ));
        }
        services.insert(
            name.clone(),
            ServiceSettings {
                name: name.clone(),
                slo,
                minimum_requests: service.minimum_requests,
                minimum_window_requests: service.minimum_window_requests,
                max_staleness_seconds: service.max_staleness_seconds,
                metrics,
                cost,
            },
        );
    }
    if let Some(d) = &gate.default_service
        && !services.contains_key(d)
    {
        return Err(ConfigError::invalid(
            file,
            "defaultService",
            format!("no service {d:?}"),
        ));
    }
    Ok(GateConfig {
        default_service: gate.default_service.clone(),
        policies: gate.policies.as_ref().map(join),
        prometheus: gate.prometheus.clone(),
        cost_explorer: gate.cost_explorer.clone(),
        burn_rate: gate.burn_rate.clone(),
        cost: gate.cost.clone(),
        audit: AuditSettings {
            directory: join(&gate.audit.directory),
        },
        explainer: gate.explainer.clone(),
        services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    struct NoFiles;
    impl DocumentReader for NoFiles {
        fn read(&self, path: &Path) -> Result<String, String> {
            Err(format!("{}: not found", path.display()))
        }
    }

    #[test]
    fn windows_parse_and_print() {
        assert_eq!(Window::parse("30d"), Ok(Window(2_592_000)));
        assert_eq!(
            Window::parse("5m").map(Window::promql),
            Ok("5m".to_string())
        );
        assert_eq!(Window(5400).promql(), "90m");
        assert!(Window::parse("5").is_err());
        assert!(Window::parse("0m").is_err());
        assert!(Window::parse("3y").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let text = "services:\n  web:\n    slo:\n      availability: {target: 120}\n    metrics: {file: m.json}\n";
        let gate: GateFile = parse_yaml("gate.yaml", text).unwrap();
        let err = resolve("gate.yaml", Path::new("."), gate, &NoFiles).unwrap_err();
        assert!(
            err.to_string()
                .contains("services.web.slo.availability.target"),
            "{err}"
        );
        let err =
            parse_yaml::<GateFile>("gate.yaml", "services:\n  web:\n    slox: 1\n").unwrap_err();
        assert!(err.to_string().contains("slox"), "{err}");
    }

    #[test]
    fn openslo_ratio_and_threshold_map_to_targets() {
        let text = r#"
apiVersion: openslo/v1
kind: SLI
metadata: {name: web-availability}
spec:
  ratioMetric:
    counter: true
    good: {metricSource: {type: Prometheus, spec: {query: 'http_requests_total{code!~"5.."}'}}}
    total: {metricSource: {type: Prometheus, spec: {query: 'http_requests_total'}}}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: web-availability}
spec:
  service: web
  indicatorRef: web-availability
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{displayName: good, target: 0.995}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: web-latency}
spec:
  service: web
  indicator:
    metadata: {name: web-p95}
    spec:
      thresholdMetric: {metricSource: {type: Prometheus, spec: {query: 'p95_ms'}}}
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{op: lte, value: 400, target: 0.95}]
"#;
        let m = openslo("o.yaml", text).unwrap();
        assert_eq!(m.service, "web");
        assert!((m.slo.availability_target_pct - 99.5).abs() < 1e-9);
        assert_eq!(m.slo.window, Window(28 * 86_400));
        assert_eq!(m.slo.p95_threshold_ms, Some(400.0));
        assert_eq!(
            m.queries.good.as_deref(),
            Some("sum(increase(http_requests_total{code!~\"5..\"}[$window]))")
        );
        assert_eq!(m.queries.p95.as_deref(), Some("p95_ms"));
    }
}
