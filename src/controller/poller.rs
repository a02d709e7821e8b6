//! The Cost Anomaly Detection catch-up poller: per configured monitor, `GetAnomalies` over a
//! lookback window on a long interval (every request costs USD 0.01), a bounded number of pages
//! per run, anomalies converted with the same parser as pushed alerts and handed to intake,
//! skipping anomalies already submitted (by the poller or a push) with no larger impact. It must
//! not retry a failed request within a run (the next run is the retry) and must count every
//! request in `cost_explorer_requests_total`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::aws::costexplorer::{Anomaly, AnomalyQuery, CostExplorer, GET_ANOMALIES};
use crate::controller::crd::SignalSource;
use crate::controller::intake::{IntakeError, SignalIntake};
use crate::controller::signal::CostSignal;
use crate::controller::signal::parse::{self, Format, Hint};
use crate::metrics::Metrics;

/// `source` label of poller signals.
pub const SOURCE_POLLER: &str = "poller";
/// Outcome: handed to intake, which returned Ok.
pub const OUTCOME_ACCEPTED: &str = "accepted";
/// Outcome: already submitted with the same or a larger impact; not submitted again.
pub const OUTCOME_SKIPPED: &str = "skipped";
/// Outcome: the anomaly cannot become a signal (logged with the reason).
pub const OUTCOME_UNUSABLE: &str = "unusable";
/// Outcome: intake failed transiently; the next run tries again.
pub const OUTCOME_RETRY_LATER: &str = "retry_later";
/// Request outcome label for a successful Cost Explorer request.
pub const REQUEST_OK: &str = "ok";

/// Poller settings (config file section `poller`). No monitors: the poller does not run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PollerSettings {
    /// Anomaly monitor ARNs to poll.
    pub monitor_arns: Vec<String>,
    /// Time between runs (`12h`). Requests per day ≤ monitors × maxPagesPerMonitor × 24h/interval.
    pub interval: SignedDuration,
    /// Wait before the first run after start (`10m`), so a crash loop does not poll each restart.
    pub initial_delay: SignedDuration,
    /// Days back from today the query covers (Cost Anomaly Detection reports up to 24 h late).
    pub lookback_days: u16,
    /// Most pages (billed requests) per monitor per run.
    pub max_pages_per_monitor: u32,
    /// Anomalies per page (`MaxResults`).
    pub page_size: i32,
    /// Only ask for anomalies whose total impact is at least this (USD); fewer pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_total_impact_usd: Option<f64>,
    /// Anomaly ids remembered for de-duplication.
    pub remembered_anomalies: usize,
}

impl Default for PollerSettings {
    fn default() -> Self {
        PollerSettings {
            monitor_arns: Vec::new(),
            interval: SignedDuration::from_hours(12),
            initial_delay: SignedDuration::from_mins(10),
            lookback_days: 3,
            max_pages_per_monitor: 1,
            page_size: 100,
            min_total_impact_usd: None,
            remembered_anomalies: 10_000,
        }
    }
}

impl PollerSettings {
    /// The most requests (USD 0.01 each) these settings can make per day.
    pub fn max_requests_per_day(&self) -> u64 {
        let interval = self.interval.as_secs().max(1) as u64;
        let runs = 86_400u64.div_ceil(interval);
        runs * self.monitor_arns.len() as u64 * u64::from(self.max_pages_per_monitor)
    }
}

/// Signal ids already handed to intake, with the largest impact submitted (bounded, oldest
/// forgotten first). Shared by the push endpoints and the poller.
pub struct SubmittedSignals {
    capacity: usize,
    inner: Mutex<(HashMap<String, f64>, VecDeque<String>)>,
}

impl SubmittedSignals {
    /// A memo of at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        SubmittedSignals {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Records that `id` was submitted with `impact_usd`.
    pub fn record(&self, id: &str, impact_usd: f64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if let Some(previous) = map.get_mut(id) {
            *previous = previous.max(impact_usd);
            return;
        }
        while map.len() >= self.capacity {
            match order.pop_front() {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
        map.insert(id.to_string(), impact_usd);
        order.push_back(id.to_string());
    }

    /// True when `id` was submitted with at least `impact_usd` (to the cent).
    pub fn covers(&self, id: &str, impact_usd: f64) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .0
            .get(id)
            .is_some_and(|seen| parse::cents(*seen) >= parse::cents(impact_usd))
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollReport {
    /// Cost Explorer requests made (each USD 0.01).
    pub requests: u32,
    /// Anomalies returned.
    pub anomalies: u32,
    /// Signals handed to intake successfully.
    pub accepted: u32,
    /// Anomalies skipped as already submitted.
    pub skipped: u32,
    /// Anomalies that cannot become signals.
    pub unusable: u32,
    /// Signals intake could not take now.
    pub retry_later: u32,
    /// Monitors whose pages were cut off by `maxPagesPerMonitor`.
    pub truncated_monitors: Vec<String>,
    /// Failed requests (monitor: error).
    pub errors: Vec<String>,
}

/// The account id in an anomaly monitor ARN (`arn:aws:ce::<account>:anomalymonitor/<id>`).
pub fn monitor_account(monitor_arn: &str) -> Option<&str> {
    crate::principal::account_of_arn(monitor_arn)
}

/// Renders an anomaly as the Cost Anomaly Detection alert JSON the push parser reads, so
/// pushed and polled anomalies normalise identically (same id, account, service, region).
pub fn anomaly_json(anomaly: &Anomaly) -> Value {
    let causes: Vec<Value> = anomaly
        .root_causes
        .iter()
        .map(|cause| {
            let mut object = Map::new();
            let mut put = |key: &str, value: &Option<String>| {
                if let Some(value) = value {
                    object.insert(key.to_string(), json!(value));
                }
            };
            put("service", &cause.service);
            put("region", &cause.region);
            put("linkedAccount", &cause.linked_account);
            put("usageType", &cause.usage_type);
            if let Some(contribution) = cause.contribution {
                object.insert("impact".into(), json!({ "contribution": contribution }));
            }
            Value::Object(object)
        })
        .collect();
    let mut object = Map::new();
    object.insert("anomalyId".into(), json!(anomaly.anomaly_id));
    object.insert("monitorArn".into(), json!(anomaly.monitor_arn));
    if let Some(account) = monitor_account(&anomaly.monitor_arn) {
        object.insert("accountId".into(), json!(account));
    }
    if let Some(start) = &anomaly.start_date {
        object.insert("anomalyStartDate".into(), json!(start));
    }
    if let Some(end) = &anomaly.end_date {
        object.insert("anomalyEndDate".into(), json!(end));
    }
    if let Some(dimension) = &anomaly.dimension_value {
        object.insert("dimensionalValue".into(), json!(dimension));
    }
    if let Some(monitor_id) =
        anomaly.monitor_arn.rsplit('/').next().filter(|id| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && anomaly
            .anomaly_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        object.insert(
            "anomalyDetailsLink".into(),
            json!(format!(
                "https://console.aws.amazon.com/cost-management/home#/anomaly-detection/monitors/{monitor_id}/anomalies/{}",
                anomaly.anomaly_id
            )),
        );
    }
    object.insert(
        "impact".into(),
        json!({
            "maxImpact": anomaly.max_impact,
            "totalImpact": anomaly.total_impact,
            "totalActualSpend": anomaly.total_actual_spend,
            "totalExpectedSpend": anomaly.total_expected_spend,
        }),
    );
    object.insert("rootCauses".into(), Value::Array(causes));
    if let Some(feedback) = &anomaly.feedback {
        object.insert("feedback".into(), json!(feedback));
    }
    Value::Object(object)
}

/// Converts a polled anomaly with the push parser.
pub fn anomaly_signal(anomaly: &Anomaly, now: Timestamp) -> Result<CostSignal, parse::ParseError> {
    let value = anomaly_json(anomaly);
    let hint = Hint {
        format: Format::AnomalyJson,
        delivered_at: Some(now),
    };
    let signal = parse::parse_value(&value, &hint)?;
    debug_assert_eq!(signal.source, SignalSource::CostAnomaly);
    Ok(signal)
}

/// The poller.
pub struct Poller {
    settings: PollerSettings,
    client: Arc<dyn CostExplorer>,
    intake: Arc<dyn SignalIntake>,
    metrics: Arc<Metrics>,
    submitted: Arc<SubmittedSignals>,
}

impl Poller {
    /// A poller; `submitted` may be shared with the push endpoints (`SignalState::with_submitted`).
    pub fn new(
        settings: PollerSettings,
        client: Arc<dyn CostExplorer>,
        intake: Arc<dyn SignalIntake>,
        metrics: Arc<Metrics>,
        submitted: Arc<SubmittedSignals>,
    ) -> Self {
        Poller {
            settings,
            client,
            intake,
            metrics,
            submitted,
        }
    }

    fn count_signal(&self, outcome: &str) {
        self.metrics
            .signals
            .with_label_values(&[SOURCE_POLLER, outcome])
            .inc();
    }

    /// One run over every monitor at `now`.
    pub async fn poll_once(&self, now: Timestamp) -> PollReport {
        let mut report = PollReport::default();
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        let start = today
            .checked_sub(jiff::Span::new().days(i64::from(self.settings.lookback_days)))
            .unwrap_or(today);
        for monitor in &self.settings.monitor_arns {
            self.poll_monitor(
                monitor,
                &start.to_string(),
                &today.to_string(),
                now,
                &mut report,
            )
            .await;
        }
        tracing::info!(
            requests = report.requests,
            anomalies = report.anomalies,
            accepted = report.accepted,
            skipped = report.skipped,
            unusable = report.unusable,
            retry_later = report.retry_later,
            errors = report.errors.len(),
            "anomaly poll finished"
        );
        report
    }

    async fn poll_monitor(
        &self,
        monitor: &str,
        start: &str,
        end: &str,
        now: Timestamp,
        report: &mut PollReport,
    ) {
        let mut token: Option<String> = None;
        for page in 0..self.settings.max_pages_per_monitor {
            let query = AnomalyQuery {
                monitor_arn: monitor.to_string(),
                start_date: start.to_string(),
                end_date: Some(end.to_string()),
                min_total_impact: self.settings.min_total_impact_usd,
                max_results: Some(self.settings.page_size),
                next_page_token: token.clone(),
            };
            report.requests += 1;
            let result = self.client.get_anomalies(&query).await;
            let outcome = match &result {
                Ok(_) => REQUEST_OK,
                Err(error) => error.category(),
            };
            self.metrics
                .cost_explorer_requests
                .with_label_values(&[GET_ANOMALIES, outcome])
                .inc();
            let page_result = match result {
                Ok(page_result) => page_result,
                Err(error) => {
                    tracing::warn!(monitor, page, %error, "GetAnomalies failed; the next run retries");
                    report.errors.push(format!("{monitor}: {error}"));
                    return;
                }
            };
            for anomaly in &page_result.anomalies {
                report.anomalies += 1;
                self.submit(anomaly, now, report).await;
            }
            token = page_result.next_page_token;
            if token.is_none() {
                return;
            }
        }
        tracing::warn!(
            monitor,
            pages = self.settings.max_pages_per_monitor,
            "more anomalies than maxPagesPerMonitor allows; raise it or minTotalImpactUsd"
        );
        report.truncated_monitors.push(monitor.to_string());
    }

    async fn submit(&self, anomaly: &Anomaly, now: Timestamp, report: &mut PollReport) {
        let signal = match anomaly_signal(anomaly, now) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(anomaly = %anomaly.anomaly_id, reason = error.category(), %error, "polled anomaly is unusable");
                report.unusable += 1;
                self.count_signal(OUTCOME_UNUSABLE);
                return;
            }
        };
        if self.submitted.covers(&signal.id, signal.impact_usd) {
            report.skipped += 1;
            self.count_signal(OUTCOME_SKIPPED);
            return;
        }
        match self.intake.submit(&signal).await {
            Ok(_) => {
                self.submitted.record(&signal.id, signal.impact_usd);
                report.accepted += 1;
                self.count_signal(OUTCOME_ACCEPTED);
            }
            Err(error @ IntakeError::Invalid(_)) => {
                tracing::warn!(anomaly = %signal.id, %error, "polled anomaly rejected by intake");
                report.unusable += 1;
                self.count_signal(OUTCOME_UNUSABLE);
            }
            Err(error) => {
                tracing::warn!(anomaly = %signal.id, %error, "intake unavailable; the next run retries");
                report.retry_later += 1;
                self.count_signal(OUTCOME_RETRY_LATER);
            }
        }
    }
}

fn positive(value: SignedDuration, fallback: Duration) -> Duration {
    Duration::try_from(value)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(fallback)
}

/// Runs the poller until `shutdown` completes: waits `initialDelay`, then polls every
/// `interval`. Returns at once when no monitor is configured. Run it on the leader only.
pub async fn run(
    settings: PollerSettings,
    client: Arc<dyn CostExplorer>,
    intake: Arc<dyn SignalIntake>,
    metrics: Arc<Metrics>,
    submitted: Arc<SubmittedSignals>,
    shutdown: impl Future<Output = ()> + Send,
) {
    if settings.monitor_arns.is_empty() {
        tracing::info!("anomaly poller disabled: no monitorArns configured");
        return;
    }
    let interval = positive(settings.interval, Duration::from_secs(6 * 3600));
    let initial_delay = Duration::try_from(settings.initial_delay).unwrap_or_default();
    tracing::info!(
        monitors = settings.monitor_arns.len(),
        interval_seconds = interval.as_secs(),
        max_requests_per_day = settings.max_requests_per_day(),
        "anomaly poller started"
    );
    let poller = Poller::new(settings, client, intake, metrics, submitted);
    tokio::pin!(shutdown);
    let mut wait = initial_delay;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = poller.poll_once(Timestamp::now()) => {}
        }
        wait = interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_day_bound() {
        let mut settings = PollerSettings {
            monitor_arns: vec!["a".into(), "b".into()],
            ..PollerSettings::default()
        };
        // Defaults: every 12 h, one page per monitor: 2 runs x 2 monitors x 1 page.
        assert_eq!(settings.max_requests_per_day(), 2 * 2);
        settings.interval = SignedDuration::from_mins(7 * 60);
        settings.max_pages_per_monitor = 3;
        assert_eq!(settings.max_requests_per_day(), 4 * 2 * 3);
    }

    #[test]
    fn submitted_signals_cover_same_or_smaller_impact() {
        let memo = SubmittedSignals::new(2);
        memo.record("a", 100.0);
        assert!(memo.covers("a", 100.0));
        assert!(memo.covers("a", 99.999));
        assert!(!memo.covers("a", 100.01));
        assert!(!memo.covers("b", 1.0));
        memo.record("b", 1.0);
        memo.record("c", 1.0);
        assert!(!memo.covers("a", 1.0), "oldest forgotten");
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn monitor_account_reads_the_arn() {
        assert_eq!(
            monitor_account("arn:aws:ce::111111111111:anomalymonitor/abc"),
            Some("111111111111")
        );
        assert_eq!(monitor_account("arn:aws:ce::x:anomalymonitor/abc"), None);
        assert_eq!(monitor_account("nonsense"), None);
    }
}
