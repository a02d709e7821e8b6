//! The deterministic break-risk estimate: how likely the proposal removes a permission the
//! principal will need, from window coverage, actions seen once, services whose data events the
//! source does not log, the role's age against the window, and actions first seen recently. Each
//! factor says why and how much; the score is 1 − Π(1 − pᵢ). It must not call a model (the
//! optional model opinion is shown separately, see `reasoning`).

use serde::Serialize;

/// Default threshold above which the run exits 2.
pub const DEFAULT_THRESHOLD: f64 = 0.10;

/// Factor: the source covered less than the requested window.
pub const FACTOR_COVERAGE: &str = "WindowCoverage";
/// Factor: actions observed only once.
pub const FACTOR_SEEN_ONCE: &str = "ActionsSeenOnce";
/// Factor: data events not logged by the source.
pub const FACTOR_DATA_EVENTS: &str = "DataEventsNotLogged";
/// Factor: the principal is much older than the window (periodic jobs may be missed).
pub const FACTOR_ROLE_AGE: &str = "PrincipalOlderThanWindow";
/// Factor: actions first seen at the end of the window (usage still changing).
pub const FACTOR_RECENT: &str = "RecentNewActions";
/// Factor: calls already denied today.
pub const FACTOR_DENIED: &str = "CallsDeniedToday";

/// What the estimate looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskInput {
    /// Days requested (`--usage-days`, or the span of the files).
    pub requested_days: f64,
    /// Days the source actually covered.
    pub covered_days: f64,
    /// Distinct observed (not inferred) actions emitted.
    pub observed_actions: usize,
    /// Of those, seen exactly once.
    pub seen_once: usize,
    /// Services with data-event actions granted today that the source cannot see.
    pub unlogged_data_services: Vec<String>,
    /// Age of the principal in days, when known.
    pub principal_age_days: Option<f64>,
    /// Observed actions first seen in the last tenth of the window.
    pub recent_new_actions: usize,
    /// Calls denied today.
    pub denied_calls: u64,
    /// The exit-2 threshold.
    pub threshold: f64,
}

/// One contribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Factor {
    /// Factor name.
    pub name: &'static str,
    /// Probability contributed (0..1, 4 decimals).
    pub probability: f64,
    /// Why.
    pub reason: String,
}

/// The estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskSignal {
    /// Estimated probability that the proposal breaks the principal (0..1, 4 decimals).
    pub score: f64,
    /// The same in percent, one decimal.
    pub percent: f64,
    /// The threshold.
    pub threshold: f64,
    /// `low`, `medium` (above half the threshold), `high` (above the threshold).
    pub level: &'static str,
    /// Whether the score is above the threshold (exit 2).
    pub above_threshold: bool,
    /// The contributions, largest first.
    pub factors: Vec<Factor>,
    /// How the score is computed.
    pub method: &'static str,
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Computes the estimate.
pub fn estimate(input: &RiskInput) -> RiskSignal {
    let mut factors = Vec::new();
    let mut push = |name, p: f64, reason: String| {
        if p > 0.0 {
            factors.push(Factor {
                name,
                probability: round(p.min(1.0), 4),
                reason,
            });
        }
    };
    if input.requested_days > 0.0 {
        let coverage = (input.covered_days / input.requested_days).clamp(0.0, 1.0);
        push(
            FACTOR_COVERAGE,
            0.25 * (1.0 - coverage),
            format!(
                "the source covered {:.1} of {:.1} requested days",
                input.covered_days, input.requested_days
            ),
        );
    }
    if input.observed_actions > 0 {
        let share = input.seen_once as f64 / input.observed_actions as f64;
        push(
            FACTOR_SEEN_ONCE,
            0.10 * share,
            format!(
                "{} of {} observed actions were seen once: rare calls may have siblings not seen",
                input.seen_once, input.observed_actions
            ),
        );
        let recent = input.recent_new_actions as f64 / input.observed_actions as f64;
        push(
            FACTOR_RECENT,
            0.10 * recent,
            format!(
                "{} actions were first seen in the last tenth of the window: usage is still changing",
                input.recent_new_actions
            ),
        );
    }
    if !input.unlogged_data_services.is_empty() {
        push(
            FACTOR_DATA_EVENTS,
            (0.05 * input.unlogged_data_services.len() as f64).min(0.15),
            format!(
                "data events of {} are granted today but the source does not log them",
                input.unlogged_data_services.join(", ")
            ),
        );
    }
    if let Some(age) = input.principal_age_days
        && input.requested_days > 0.0
        && age > 2.0 * input.requested_days
    {
        push(
            FACTOR_ROLE_AGE,
            0.05,
            format!(
                "the principal is {age:.0} days old, more than twice the {:.0}-day window: monthly or quarterly jobs may be missed",
                input.requested_days
            ),
        );
    }
    if input.denied_calls > 0 {
        push(
            FACTOR_DENIED,
            0.02,
            format!(
                "{} calls were already denied: the workload is failing something today",
                input.denied_calls
            ),
        );
    }
    let keep: f64 = factors.iter().map(|f| 1.0 - f.probability).product();
    let score = round(1.0 - keep, 4);
    factors.sort_by(|a, b| {
        b.probability
            .partial_cmp(&a.probability)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.name.cmp(b.name))
    });
    let above = score > input.threshold;
    RiskSignal {
        score,
        percent: round(score * 100.0, 1),
        threshold: input.threshold,
        level: if above {
            "high"
        } else if score > input.threshold / 2.0 {
            "medium"
        } else {
            "low"
        },
        above_threshold: above,
        factors,
        method: "deterministic: 1 - product(1 - p) over the factors (docs/decisions/124-risk-model.md)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_coverage_and_steady_usage_is_low() {
        let r = estimate(&RiskInput {
            requested_days: 30.0,
            covered_days: 30.0,
            observed_actions: 10,
            seen_once: 0,
            threshold: DEFAULT_THRESHOLD,
            ..RiskInput::default()
        });
        assert_eq!(r.score, 0.0);
        assert_eq!(r.level, "low");
        assert!(!r.above_threshold);
    }

    #[test]
    fn short_coverage_and_rare_actions_are_high_and_explained() {
        let r = estimate(&RiskInput {
            requested_days: 30.0,
            covered_days: 3.0,
            observed_actions: 4,
            seen_once: 4,
            threshold: DEFAULT_THRESHOLD,
            ..RiskInput::default()
        });
        assert!(r.above_threshold);
        assert_eq!(r.factors[0].name, FACTOR_COVERAGE);
        assert!(r.factors.iter().all(|f| !f.reason.is_empty()));
        // deterministic
        assert_eq!(
            r,
            estimate(&RiskInput {
                requested_days: 30.0,
                covered_days: 3.0,
                observed_actions: 4,
                seen_once: 4,
                threshold: DEFAULT_THRESHOLD,
                ..RiskInput::default()
            })
        );
    }
}
