//! Gathering inputs for one evaluation: every PromQL query of a service issued concurrently
//! (instant at `at`, or as ranges for a backtest), daily cost from the configured source, each
//! answer turned into a typed `Reading`; then the pure core decides. It owns the wiring of
//! sources (`Gate`); it must not contain SLO, cost or rule logic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::join_all;
use jiff::Timestamp;
use jiff::civil::Date;

use super::config::{
    ConfigError, CostSource as CostSourceConfig, GateConfig, MetricsSource, PrometheusQueries,
    ServiceSettings, Window,
};
use super::cost::{self, CostInput};
use super::costexplorer::CostSource;
use super::decide::{self, Decision, OverrideError};
use super::files;
use super::inputs::{InputState, Reading};
use super::prometheus::{InstantAnswer, PromQl, PrometheusError};
use super::rules::RuleSet;
use super::slo::{self, SliInput, WindowCounts};

/// Why an evaluation could not start (inputs failing is not an error: they become states).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum GateError {
    /// The service or configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A simulated override is invalid.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// Backtest arguments are invalid.
    #[error("{0}")]
    Range(String),
}

impl GateError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            GateError::Config(e) => e.category(),
            GateError::Override(e) => e.category(),
            GateError::Range(_) => "range",
        }
    }
}

/// The configured gate with its sources.
#[derive(Clone)]
pub struct Gate {
    /// Configuration.
    pub config: GateConfig,
    /// Rules.
    pub rules: RuleSet,
    /// Prometheus, when configured.
    pub prometheus: Option<Arc<dyn PromQl>>,
    /// Cost Explorer, when any service uses it.
    pub cost_explorer: Option<Arc<dyn CostSource>>,
}

/// The `$window` placeholder in queries.
pub const WINDOW_PLACEHOLDER: &str = "$window";

fn with_window(query: &str, w: Window) -> String {
    query.replace(WINDOW_PLACEHOLDER, &w.promql())
}

/// A PromQL answer as a reading.
pub fn answer_reading(query: &str, answer: Result<InstantAnswer, PrometheusError>) -> Reading {
    match answer {
        Err(e) => Reading::error(e.to_string()),
        Ok(a) if a.series > 1 => Reading::error(format!(
            "{query:?} returned {} series; aggregate it to one (e.g. sum(...))",
            a.series
        )),
        Ok(InstantAnswer { value: None, .. }) => {
            Reading::no_data(format!("{query:?} returned no data"))
        }
        Ok(InstantAnswer {
            value: Some(v),
            warnings,
            ..
        }) => {
            if !v.is_finite() {
                return Reading::nan(format!("{query:?} returned {v}"));
            }
            let mut r = Reading::ok(v);
            if !warnings.is_empty() {
                r.detail = format!("Prometheus warnings: {}", warnings.join("; "));
            }
            r
        }
    }
}

/// Every distinct PromQL string a service needs.
pub fn queries(q: &PrometheusQueries, windows: &[Window]) -> Vec<String> {
    let mut out = Vec::new();
    for w in windows {
        out.push(with_window(&q.total, *w));
        if let Some(g) = &q.good {
            out.push(with_window(g, *w));
        }
        if let Some(b) = &q.bad {
            out.push(with_window(b, *w));
        }
    }
    for extra in [&q.p95, &q.p99, &q.freshness].into_iter().flatten() {
        out.push(extra.clone());
    }
    out.sort();
    out.dedup();
    out
}

/// Builds the SLI input from answers looked up by query text.
pub fn build_sli(
    q: &PrometheusQueries,
    windows: &[Window],
    max_staleness_seconds: f64,
    lookup: &dyn Fn(&str) -> Reading,
) -> SliInput {
    let absent = |what: &str| Reading::no_data(format!("no {what} query configured"));
    let mut counts = Vec::new();
    for w in windows {
        let total = lookup(&with_window(&q.total, *w));
        let bad = match (&q.bad, &q.good) {
            (Some(b), _) => lookup(&with_window(b, *w)),
            (None, Some(g)) => {
                let good = lookup(&with_window(g, *w));
                match (good.usable(true), total.usable(true)) {
                    (Some(g), Some(t)) => Reading::ok((t - g).max(0.0)),
                    _ if !good.state.usable(true) => good,
                    _ => total.clone(),
                }
            }
            (None, None) => absent("good or bad"),
        };
        counts.push(WindowCounts {
            window: *w,
            bad,
            total,
        });
    }
    let mut p95 = q
        .p95
        .as_deref()
        .map(lookup)
        .unwrap_or_else(|| absent("p95"));
    let mut p99 = q
        .p99
        .as_deref()
        .map(lookup)
        .unwrap_or_else(|| absent("p99"));
    if let Some(f) = &q.freshness {
        let age = lookup(f);
        let stale = match age.usable(true) {
            Some(a) if a > max_staleness_seconds => Some(format!(
                "newest sample is {a:.0} s old (limit {max_staleness_seconds:.0} s)"
            )),
            Some(_) => None,
            // A freshness query with no answer means no samples at all.
            None => Some(format!("freshness unknown: {}", age.detail)),
        };
        if let Some(detail) = stale {
            // Only values that exist can be stale; a reading that is already missing keeps its
            // own (more precise) state.
            let degrade = |r: Reading| {
                if r.state.usable(true) {
                    r.degrade(InputState::Stale, &detail)
                } else {
                    r
                }
            };
            for c in &mut counts {
                c.bad = degrade(c.bad.clone());
                c.total = degrade(c.total.clone());
            }
            p95 = degrade(p95);
            p99 = degrade(p99);
        }
    }
    SliInput::Counts {
        windows: counts,
        p95_ms: p95,
        p99_ms: p99,
    }
}

impl Gate {
    fn windows(&self, service: &ServiceSettings) -> Vec<Window> {
        slo::needed_windows(&service.slo, &self.config.burn_rate.windows)
    }

    /// The SLI input of a service at `at` (all queries concurrently).
    pub async fn sli_at(&self, service: &ServiceSettings, at: Timestamp) -> SliInput {
        match &service.metrics {
            MetricsSource::File(path) => files::read_metrics(path),
            MetricsSource::Prometheus(q) => {
                let windows = self.windows(service);
                let list = queries(q, &windows);
                let answers: HashMap<String, Reading> = match &self.prometheus {
                    None => list
                        .iter()
                        .map(|s| {
                            (
                                s.clone(),
                                Reading::error("no Prometheus connection configured"),
                            )
                        })
                        .collect(),
                    Some(p) => {
                        let results = join_all(list.iter().map(|s| p.instant(s, at))).await;
                        list.iter()
                            .zip(results)
                            .map(|(s, r)| (s.clone(), answer_reading(s, r)))
                            .collect()
                    }
                };
                build_sli(q, &windows, service.max_staleness_seconds, &|s| {
                    answers
                        .get(s)
                        .cloned()
                        .unwrap_or_else(|| Reading::error(format!("{s:?} was not queried")))
                })
            }
        }
    }

    /// Daily cost for the days before `today`.
    pub async fn cost_input(
        &self,
        service: &ServiceSettings,
        today: Date,
        days_before: i64,
    ) -> CostInput {
        match &service.cost {
            CostSourceConfig::None => CostInput::Unavailable {
                state: InputState::NoData,
                detail: "no cost source configured".to_string(),
            },
            CostSourceConfig::File(path) => files::read_cost(path),
            CostSourceConfig::CostExplorer(filter) => match &self.cost_explorer {
                None => CostInput::Unavailable {
                    state: InputState::Error,
                    detail: "no Cost Explorer client configured".to_string(),
                },
                Some(source) => {
                    let start = today
                        .checked_sub(jiff::Span::new().days(days_before))
                        .unwrap_or(today);
                    match source.daily_costs(filter, start, today).await {
                        Ok(days) => CostInput::Days(days),
                        Err(e) => CostInput::Unavailable {
                            state: InputState::Error,
                            detail: e.to_string(),
                        },
                    }
                }
            },
        }
    }

    fn history_days(&self) -> i64 {
        self.config.cost.minimum_days as i64 + self.config.cost.max_lag_days
    }

    /// Evaluates one service at `at` (with simulated overrides when given).
    pub async fn evaluate(
        &self,
        service: Option<&str>,
        at: Timestamp,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Decision, GateError> {
        let service = self.config.service(service)?;
        let today = at.to_zoned(jiff::tz::TimeZone::UTC).date();
        let (sli, cost_input) = futures::join!(
            self.sli_at(service, at),
            self.cost_input(service, today, self.history_days())
        );
        Ok(self.decide(service, at, &sli, &cost_input, today, overrides)?)
    }

    fn decide(
        &self,
        service: &ServiceSettings,
        at: Timestamp,
        sli: &SliInput,
        cost_input: &CostInput,
        today: Date,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Decision, OverrideError> {
        let slo_report = slo::evaluate(
            sli,
            &service.slo,
            &self.config.burn_rate.thresholds,
            &self.config.burn_rate.windows,
            service.minimum_requests,
            service.minimum_window_requests,
        );
        let cost_report = cost::evaluate(cost_input, today, &self.config.cost);
        decide::decide(
            &service.name,
            at,
            slo_report,
            cost_report,
            &self.rules,
            overrides,
            &service.slo,
            &self.config.burn_rate.thresholds,
            &self.config.cost,
        )
    }

    /// Evaluates a service at every step from `from` to `to` (inclusive): Prometheus inputs come
    /// from one range query per PromQL string, cost from one request covering the whole span.
    pub async fn backtest(
        &self,
        service: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        every_seconds: u64,
    ) -> Result<Vec<Decision>, GateError> {
        if every_seconds == 0 || to < from {
            return Err(GateError::Range(
                "--from must not be after --to and --every must be positive".into(),
            ));
        }
        let steps = ((to.as_second() - from.as_second()) as u64) / every_seconds + 1;
        if steps > 10_000 {
            return Err(GateError::Range(format!(
                "{steps} steps; at most 10000 (raise --every)"
            )));
        }
        let service = self.config.service(service)?;
        let instants: Vec<Timestamp> = (0..steps)
            .filter_map(|i| {
                Timestamp::from_second(from.as_second() + (i * every_seconds) as i64).ok()
            })
            .collect();
        // Cost: one request for the whole span.
        let first_day = from.to_zoned(jiff::tz::TimeZone::UTC).date();
        let last_day = to.to_zoned(jiff::tz::TimeZone::UTC).date();
        let span_days = (last_day - first_day).get_days() as i64;
        let tomorrow = last_day.tomorrow().unwrap_or(last_day);
        let cost_input = self
            .cost_input(service, tomorrow, self.history_days() + span_days + 1)
            .await;
        // SLIs: ranges per query, or the file snapshot for every step.
        let per_step: Vec<SliInput> = match &service.metrics {
            MetricsSource::File(path) => {
                let s = files::read_metrics(path);
                instants.iter().map(|_| s.clone()).collect()
            }
            MetricsSource::Prometheus(q) => {
                let windows = self.windows(service);
                let list = queries(q, &windows);
                let mut series: HashMap<String, Result<BTreeMap<i64, Reading>, Reading>> =
                    HashMap::new();
                match &self.prometheus {
                    None => {
                        for s in &list {
                            series.insert(
                                s.clone(),
                                Err(Reading::error("no Prometheus connection configured")),
                            );
                        }
                    }
                    Some(p) => {
                        let results =
                            join_all(list.iter().map(|s| p.range(s, from, to, every_seconds)))
                                .await;
                        for (s, r) in list.iter().zip(results) {
                            let entry = match r {
                                Err(e) => Err(Reading::error(e.to_string())),
                                Ok(a) if a.series > 1 => Err(Reading::error(format!(
                                    "{s:?} returned {} series; aggregate it to one",
                                    a.series
                                ))),
                                Ok(a) => Ok(a
                                    .points
                                    .into_iter()
                                    .map(|(t, v)| {
                                        let answer = InstantAnswer {
                                            value: Some(v),
                                            series: 1,
                                            warnings: a.warnings.clone(),
                                        };
                                        (t, answer_reading(s, Ok(answer)))
                                    })
                                    .collect()),
                            };
                            series.insert(s.clone(), entry);
                        }
                    }
                }
                instants
                    .iter()
                    .map(|t| {
                        let at = t.as_second();
                        build_sli(
                            q,
                            &windows,
                            service.max_staleness_seconds,
                            &|s| match series.get(s) {
                                Some(Ok(points)) => points.get(&at).cloned().unwrap_or_else(|| {
                                    Reading::no_data(format!("{s:?} returned no data"))
                                }),
                                Some(Err(r)) => r.clone(),
                                None => Reading::error(format!("{s:?} was not queried")),
                            },
                        )
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for (t, sli) in instants.iter().zip(per_step) {
            let today = t.to_zoned(jiff::tz::TimeZone::UTC).date();
            out.push(self.decide(service, *t, &sli, &cost_input, today, &BTreeMap::new())?);
        }
        Ok(out)
    }
}
