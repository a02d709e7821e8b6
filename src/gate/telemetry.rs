//! The gate's own Prometheus registry (separate from the controller's): the current verdict per
//! service, every input's value and state (a `state` label names NoData/NaN/Stale/Error), and
//! decision counters. It only records; it must not decide.

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use super::decide::Decision;
use super::inputs::{InputState, Value};
use super::rules::Action;

/// Why metrics could not be registered or encoded (a programming error).
#[derive(Debug, thiserror::Error)]
#[error("gate metrics: {0}")]
pub struct TelemetryError(#[from] prometheus::Error);

impl TelemetryError {
    /// A short label for logs.
    pub fn category(&self) -> &'static str {
        "metrics"
    }
}

/// The gate's metrics.
#[derive(Clone)]
pub struct GateMetrics {
    registry: Registry,
    /// 1 for the current verdict of a service, 0 for the others.
    pub verdict: IntGaugeVec,
    /// The latest usable value of each numeric input.
    pub input_value: GaugeVec,
    /// 1 for the current state of each input, 0 for the others.
    pub input_state: IntGaugeVec,
    /// Decisions taken, by service, verdict and reason code.
    pub decisions: IntCounterVec,
}

const STATES: [InputState; 6] = [
    InputState::Ok,
    InputState::Partial,
    InputState::NoData,
    InputState::NaN,
    InputState::Stale,
    InputState::Error,
];

impl GateMetrics {
    /// Registers every metric.
    pub fn new() -> Result<GateMetrics, TelemetryError> {
        let registry = Registry::new();
        let verdict = IntGaugeVec::new(
            Opts::new(
                "autoguardrails_gate_verdict",
                "1 for the latest verdict of a service",
            ),
            &["service", "verdict"],
        )?;
        let input_value = GaugeVec::new(
            Opts::new(
                "autoguardrails_gate_input_value",
                "Latest usable value of a numeric gate input",
            ),
            &["service", "signal"],
        )?;
        let input_state = IntGaugeVec::new(
            Opts::new(
                "autoguardrails_gate_input_state",
                "1 for the current state of a gate input (Ok, Partial, NoData, NaN, Stale, Error)",
            ),
            &["service", "signal", "state"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "autoguardrails_gate_decisions_total",
                "Gate decisions taken",
            ),
            &["service", "verdict", "reason"],
        )?;
        registry.register(Box::new(verdict.clone()))?;
        registry.register(Box::new(input_value.clone()))?;
        registry.register(Box::new(input_state.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        Ok(GateMetrics {
            registry,
            verdict,
            input_value,
            input_state,
            decisions,
        })
    }

    /// Records a decision.
    pub fn record(&self, d: &Decision) {
        for a in [Action::Allow, Action::Warn, Action::Delay, Action::Block] {
            self.verdict
                .with_label_values(&[d.service.as_str(), a.as_str()])
                .set(i64::from(a == d.verdict.action));
        }
        for (name, signal) in &d.signals {
            for s in STATES {
                self.input_state
                    .with_label_values(&[d.service.as_str(), name.as_str(), s.as_str()])
                    .set(i64::from(s == signal.state));
            }
            let gauge = self
                .input_value
                .with_label_values(&[d.service.as_str(), name.as_str()]);
            match signal.usable(true) {
                Some(Value::Number(n)) => gauge.set(*n),
                Some(Value::Bool(b)) => gauge.set(if *b { 1.0 } else { 0.0 }),
                _ => {
                    let _ = self
                        .input_value
                        .remove_label_values(&[d.service.as_str(), name.as_str()]);
                }
            }
        }
        self.decisions
            .with_label_values(&[
                d.service.as_str(),
                d.verdict.action.as_str(),
                d.verdict.reason_code.as_str(),
            ])
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, TelemetryError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).to_string())
    }
}
