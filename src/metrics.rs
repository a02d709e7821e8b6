//! Every Prometheus metric the controller exports, registered in one place (one `Registry`, no
//! globals). Components receive `Arc<Metrics>` and only increment; this module must not decide
//! anything. Names follow Prometheus conventions and pass `promtool check metrics`; the metrics
//! reference in `docs/metrics.md` lists them.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metric name prefix.
pub const PREFIX: &str = "autoguardrails";

/// Controller label values.
pub const CONTROLLER_POLICY: &str = "guardrailpolicy";
/// Controller label value for the Quarantine controller.
pub const CONTROLLER_QUARANTINE: &str = "quarantine";

/// Why a metric could not be registered or encoded (a programming error, reported at start-up).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// All metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles run, by controller.
    pub reconciles: IntCounterVec,
    /// Reconciles that ended in an error, by controller and error category.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration, by controller.
    pub reconcile_duration: HistogramVec,
    /// Signals received, by source (sns, events, poller, file) and outcome.
    pub signals: IntCounterVec,
    /// Quarantines currently in each phase.
    pub quarantines: IntGaugeVec,
    /// GuardrailPolicies by readiness (`true`/`false`).
    pub policies: IntGaugeVec,
    /// IAM calls, by operation and outcome (`ok` or an error category).
    pub iam_calls: IntCounterVec,
    /// Attachments found missing and re-attached.
    pub drift_repairs: IntCounter,
    /// Ended Quarantines retired from the watch (decision 154).
    pub quarantines_retired: IntCounter,
    /// IAM CloudTrail events read for drift repair, by outcome (`checked`: quarantines asked to
    /// check now; `unheld`: about nothing we hold; `ignored`: a failed or harmless call).
    pub iam_events: IntCounterVec,
    /// `notifyOnly` matches announced, by policy (`namespace/name`) and outcome (`sent`,
    /// `no_webhook`: the policy names no Slack, `failed`, `cooling_down`, `dropped`).
    pub notify_only: IntCounterVec,
    /// Actual release time minus `expiresAt`, in seconds (TTL releases only).
    pub release_lag: Histogram,
    /// Quarantine creation to deny attached on every target, in seconds.
    pub activation_latency: Histogram,
    /// Cost Explorer requests, by operation and outcome (each costs USD 0.01).
    pub cost_explorer_requests: IntCounterVec,
    /// Slack deliveries, by outcome.
    pub slack_deliveries: IntCounterVec,
    /// SNS signing certificate look-ups, by outcome (`cached`, `fetched`, `failed`).
    pub sns_certificate_fetches: IntCounterVec,
    /// Time to answer a signal request, by source (`sns`, `events`).
    pub signal_request_duration: HistogramVec,
    /// 1 while this replica holds the leader lease, else 0.
    pub leader: IntGauge,
    /// Audit records in Quarantine statuses not yet in the audit store.
    pub audit_backlog_records: IntGauge,
    /// Age in seconds of the oldest unflushed audit record (0 when none).
    pub audit_backlog_oldest_seconds: IntGauge,
    /// Audit records flushed, by outcome (`written`, `duplicate`, `failed`, `abandoned`).
    pub audit_records: IntCounterVec,
    /// Always 1; labels carry the version.
    pub build_info: IntGaugeVec,
    /// Approval webhook decisions, by decision (`allowed`, `refused`, `unchecked`, `error`) and
    /// verb (`approve`, `reject`, `extend`, `none`).
    pub approval_reviews: IntCounterVec,
    /// Approve, reject and extend requests the controller handled, by verb and `verified`
    /// (`true` when a valid webhook stamp named the person, `false` when it is self-asserted).
    pub approvals: IntCounterVec,
    /// Slack interactions (`POST /slack/interactions`), by outcome (`accepted`, `unmapped`,
    /// `refused`, `unavailable`, `stale`, `error`, `bad_signature`, `stale_timestamp`,
    /// `replayed`, `busy`, `malformed`, `too_large`, `timeout`).
    pub slack_interactions: IntCounterVec,
}

fn name(short: &str) -> String {
    format!("{PREFIX}_{short}")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let counter =
            |short: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let c = IntCounterVec::new(Opts::new(name(short), help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let reconciles = counter(
            "reconciles_total",
            "Reconciles run, by controller.",
            &["controller"],
        )?;
        let reconcile_errors = counter(
            "reconcile_errors_total",
            "Reconciles that ended in an error, by controller and error category.",
            &["controller", "category"],
        )?;
        let signals = counter(
            "signals_total",
            "Cost signals received, by source and outcome.",
            &["source", "outcome"],
        )?;
        let iam_calls = counter(
            "iam_calls_total",
            "IAM calls, by operation and outcome.",
            &["operation", "outcome"],
        )?;
        let cost_explorer_requests = counter(
            "cost_explorer_requests_total",
            "Cost Explorer requests (USD 0.01 each), by operation and outcome.",
            &["operation", "outcome"],
        )?;
        let slack_deliveries = counter(
            "slack_deliveries_total",
            "Slack message deliveries, by outcome.",
            &["outcome"],
        )?;
        let sns_certificate_fetches = counter(
            "sns_certificate_fetches_total",
            "SNS signing certificate look-ups, by outcome.",
            &["outcome"],
        )?;
        let approval_reviews = counter(
            "approval_reviews_total",
            "Approval webhook decisions, by decision and verb.",
            &["decision", "verb"],
        )?;
        let approvals = counter(
            "approvals_total",
            "Approve, reject and extend requests handled, by verb and whether the identity was verified.",
            &["verb", "verified"],
        )?;
        let slack_interactions = counter(
            "slack_interactions_total",
            "Slack button interactions, by outcome.",
            &["outcome"],
        )?;
        let signal_request_duration = HistogramVec::new(
            HistogramOpts::new(
                name("signal_request_duration_seconds"),
                "Time to answer a signal delivery (/sns, /events), by source.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["source"],
        )?;
        registry.register(Box::new(signal_request_duration.clone()))?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                name("reconcile_duration_seconds"),
                "Reconcile duration, by controller.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["controller"],
        )?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        let quarantines = IntGaugeVec::new(
            Opts::new(name("quarantines"), "Quarantines currently in each phase."),
            &["phase"],
        )?;
        registry.register(Box::new(quarantines.clone()))?;
        let policies = IntGaugeVec::new(
            Opts::new(name("policies"), "GuardrailPolicies by readiness."),
            &["ready"],
        )?;
        registry.register(Box::new(policies.clone()))?;
        let quarantines_retired = IntCounter::new(
            name("quarantines_retired_total"),
            "Ended Quarantines labelled autoguardrails.io/ended and taken out of the watch.",
        )?;
        registry.register(Box::new(quarantines_retired.clone()))?;
        let drift_repairs = IntCounter::new(
            name("drift_repairs_total"),
            "Deny attachments found missing and re-attached.",
        )?;
        registry.register(Box::new(drift_repairs.clone()))?;
        let iam_events = IntCounterVec::new(
            Opts::new(
                name("iam_events_total"),
                "IAM CloudTrail events read for drift repair, by outcome.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(iam_events.clone()))?;
        let notify_only = IntCounterVec::new(
            Opts::new(
                name("notify_only_total"),
                "Matches of notifyOnly policies, by policy and outcome (no Quarantine, no AWS write).",
            ),
            &["policy", "outcome"],
        )?;
        registry.register(Box::new(notify_only.clone()))?;
        let release_lag = Histogram::with_opts(
            HistogramOpts::new(
                name("release_lag_seconds"),
                "Time from expiresAt to the deny being released, for TTL releases.",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ]),
        )?;
        registry.register(Box::new(release_lag.clone()))?;
        let activation_latency = Histogram::with_opts(
            HistogramOpts::new(
                name("activation_latency_seconds"),
                "Time from Quarantine creation (or approval) to the deny attached on every target.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
        )?;
        registry.register(Box::new(activation_latency.clone()))?;
        let leader = IntGauge::new(
            name("leader"),
            "1 while this replica holds the leader lease, else 0.",
        )?;
        registry.register(Box::new(leader.clone()))?;
        let audit_backlog_records = IntGauge::new(
            name("audit_backlog_records"),
            "Audit records in Quarantine statuses not yet in the audit store.",
        )?;
        registry.register(Box::new(audit_backlog_records.clone()))?;
        let audit_backlog_oldest_seconds = IntGauge::new(
            name("audit_backlog_oldest_seconds"),
            "Age in seconds of the oldest unflushed audit record (0 when none).",
        )?;
        registry.register(Box::new(audit_backlog_oldest_seconds.clone()))?;
        let audit_records = IntCounterVec::new(
            Opts::new(
                name("audit_records_total"),
                "Audit records flushed to the audit store, by outcome.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(audit_records.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(name("build_info"), "Build information; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            signals,
            quarantines,
            policies,
            iam_calls,
            drift_repairs,
            quarantines_retired,
            iam_events,
            notify_only,
            release_lag,
            activation_latency,
            cost_explorer_requests,
            slack_deliveries,
            sns_certificate_fetches,
            signal_request_duration,
            leader,
            audit_backlog_records,
            audit_backlog_oldest_seconds,
            audit_records,
            build_info,
            approval_reviews,
            approvals,
            slack_interactions,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// The registry, for components that register their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
