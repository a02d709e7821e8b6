//! SLO math: error ratio per window with a traffic floor, error budget remaining over the
//! rolling window, burn rates, burn classes (low/medium/high/critical), the multi-window
//! multi-burn-rate evaluation, and latency compliance. Pure: no I/O, no clock, no source
//! knowledge; a missing input stays missing (never zero).

use serde::{Deserialize, Serialize};

use super::config::{BurnThresholds, BurnWindow, SloTargets, Window};
use super::inputs::{InputState, Reading};

/// Burn class label: below the medium threshold.
pub const BURN_LOW: &str = "low";
/// Burn class label.
pub const BURN_MEDIUM: &str = "medium";
/// Burn class label.
pub const BURN_HIGH: &str = "high";
/// Burn class label.
pub const BURN_CRITICAL: &str = "critical";

/// Raw event counts for one window, as measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowCounts {
    /// The window.
    pub window: Window,
    /// Bad events in the window.
    pub bad: Reading,
    /// All valid events in the window.
    pub total: Reading,
}

/// Everything the SLO math needs for one service at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SliInput {
    /// Counts per window (Prometheus): the budget window and every burn window.
    Counts {
        /// Counts per window (the budget window included).
        windows: Vec<WindowCounts>,
        /// p95 latency (ms).
        p95_ms: Reading,
        /// p99 latency (ms).
        p99_ms: Reading,
    },
    /// The seed's snapshot: totals over the window plus hourly burn rates.
    Snapshot {
        /// Total requests in the window.
        total: Reading,
        /// Failed requests in the window.
        failed: Reading,
        /// The recent burn rate (mean of the last three hourly values).
        recent_burn: Reading,
        /// p95 latency (ms).
        p95_ms: Reading,
        /// p99 latency (ms).
        p99_ms: Reading,
    },
}

/// One multi-window pair's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairResult {
    /// Long window.
    pub long: Window,
    /// Short window.
    pub short: Window,
    /// Factor.
    pub factor: f64,
    /// `page` or `ticket`.
    pub severity: String,
    /// Burn rate over the long window.
    pub long_burn: Reading,
    /// Burn rate over the short window.
    pub short_burn: Reading,
    /// `Some(true)` firing, `Some(false)` definitely not, `None` unknown.
    pub firing: Option<bool>,
}

/// The SLO report for one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloReport {
    /// Availability over the budget window, percent.
    pub availability_pct: Reading,
    /// Error budget remaining, percent (clamped at 0 like the seed).
    pub error_budget_pct: Reading,
    /// Error budget remaining before clamping (negative when overspent).
    pub error_budget_raw_pct: Reading,
    /// The burn rate the class is taken from.
    pub burn_rate_value: Reading,
    /// The burn class (`None` when it cannot be known) and its state.
    pub burn_class: Option<String>,
    /// State of the burn class.
    pub burn_class_state: InputState,
    /// Why the class is unknown, when it is.
    pub burn_class_detail: String,
    /// `page`, `ticket`, `none`, or `None` when unknown.
    pub burn_alert: Option<String>,
    /// Multi-window pairs (empty for snapshot inputs).
    pub pairs: Vec<PairResult>,
    /// p95 latency (ms).
    pub p95_ms: Reading,
    /// p99 latency (ms).
    pub p99_ms: Reading,
    /// p95 within target (`None` when p95 is not usable).
    pub latency_compliant: Option<bool>,
    /// p99 within target.
    pub latency_p99_compliant: Option<bool>,
    /// Total events in the budget window.
    pub total_events: Reading,
    /// Bad events in the budget window.
    pub bad_events: Reading,
    /// The targets used.
    pub targets: SloTargets,
}

/// Error ratio (bad/total) for a window; below `floor` total events it is `NoData`.
pub fn error_ratio(bad: &Reading, total: &Reading, floor: f64) -> Reading {
    let worst = bad.state.worst(total.state);
    if !worst.usable(true) {
        let detail = if !bad.state.usable(true) {
            &bad.detail
        } else {
            &total.detail
        };
        return Reading {
            state: worst,
            value: None,
            detail: detail.clone(),
        };
    }
    let (Some(b), Some(t)) = (bad.value, total.value) else {
        return Reading::no_data("no value");
    };
    if t <= 0.0 || t < floor {
        return Reading::no_data(format!(
            "{} requests, below the traffic floor of {}",
            super::inputs::format_number(t),
            super::inputs::format_number(floor)
        ));
    }
    let ratio = (b / t).clamp(0.0, 1.0);
    if worst == InputState::Partial {
        Reading::partial(ratio, bad.detail.clone() + &total.detail)
    } else {
        Reading::ok(ratio)
    }
}

/// Maps a reading through `f`, keeping state and detail.
pub fn map(reading: &Reading, f: impl Fn(f64) -> f64) -> Reading {
    match reading.value {
        Some(v) if reading.state.usable(true) => {
            let out = f(v);
            if out.is_finite() {
                Reading {
                    state: reading.state,
                    value: Some(out),
                    detail: reading.detail.clone(),
                }
            } else {
                Reading::nan(format!("derived value is {out}"))
            }
        }
        _ => Reading {
            state: reading.state,
            value: None,
            detail: reading.detail.clone(),
        },
    }
}

/// The burn class of a rate under the thresholds.
pub fn burn_class(rate: f64, thresholds: &BurnThresholds) -> &'static str {
    if rate >= thresholds.critical {
        BURN_CRITICAL
    } else if rate >= thresholds.high {
        BURN_HIGH
    } else if rate >= thresholds.medium {
        BURN_MEDIUM
    } else {
        BURN_LOW
    }
}

fn class_rank(class: &str) -> u8 {
    match class {
        BURN_CRITICAL => 3,
        BURN_HIGH => 2,
        BURN_MEDIUM => 1,
        _ => 0,
    }
}

/// Budget fraction allowed to fail (`1 - target`).
fn allowed(targets: &SloTargets) -> f64 {
    1.0 - targets.availability_target_pct / 100.0
}

/// Evaluates the SLO report for one service.
pub fn evaluate(
    input: &SliInput,
    targets: &SloTargets,
    thresholds: &BurnThresholds,
    windows: &[BurnWindow],
    minimum_requests: f64,
    minimum_window_requests: f64,
) -> SloReport {
    let allowed = allowed(targets);
    let (budget_ratio, total_events, bad_events, p95, p99) = match input {
        SliInput::Counts {
            windows: counts,
            p95_ms,
            p99_ms,
        } => {
            let budget = counts.iter().find(|c| c.window == targets.window);
            match budget {
                Some(c) => (
                    error_ratio(&c.bad, &c.total, minimum_requests),
                    c.total.clone(),
                    c.bad.clone(),
                    p95_ms,
                    p99_ms,
                ),
                None => (
                    Reading::no_data("no counts for the error-budget window"),
                    Reading::no_data("no counts"),
                    Reading::no_data("no counts"),
                    p95_ms,
                    p99_ms,
                ),
            }
        }
        SliInput::Snapshot {
            total,
            failed,
            p95_ms,
            p99_ms,
            ..
        } => (
            error_ratio(failed, total, minimum_requests),
            total.clone(),
            failed.clone(),
            p95_ms,
            p99_ms,
        ),
    };
    let availability_pct = map(&budget_ratio, |r| 100.0 * (1.0 - r));
    let error_budget_raw_pct = map(&budget_ratio, |r| 100.0 * (1.0 - r / allowed));
    let error_budget_pct = map(&error_budget_raw_pct, |r| r.max(0.0));

    let mut pairs = Vec::new();
    let (burn_rate_value, burn_class, burn_class_state, burn_class_detail, burn_alert) = match input
    {
        SliInput::Snapshot { recent_burn, .. } => {
            let class = recent_burn
                .usable(true)
                .map(|r| burn_class(r, thresholds).to_string());
            let alert = None;
            (
                recent_burn.clone(),
                class,
                recent_burn.state,
                recent_burn.detail.clone(),
                alert,
            )
        }
        SliInput::Counts {
            windows: counts, ..
        } => {
            let burn_of = |w: Window| -> Reading {
                match counts.iter().find(|c| c.window == w) {
                    Some(c) => map(
                        &error_ratio(&c.bad, &c.total, minimum_window_requests),
                        |r| r / allowed,
                    ),
                    None => Reading::no_data(format!("no counts for window {}", w.promql())),
                }
            };
            for w in windows {
                let long_burn = burn_of(w.long);
                let short_burn = burn_of(w.short);
                let l = long_burn.usable(true);
                let s = short_burn.usable(true);
                let firing = match (l, s) {
                    (Some(l), Some(s)) => Some(l >= w.factor && s >= w.factor),
                    (Some(v), None) | (None, Some(v)) if v < w.factor => Some(false),
                    _ => None,
                };
                pairs.push(PairResult {
                    long: w.long,
                    short: w.short,
                    factor: w.factor,
                    severity: w.severity.clone(),
                    long_burn,
                    short_burn,
                    firing,
                });
            }
            burn_from_pairs(&pairs, thresholds)
        }
    };

    let compliant = |reading: &Reading, threshold: Option<f64>| -> Option<bool> {
        match threshold {
            None => Some(true),
            Some(t) => reading.usable(true).map(|v| v <= t),
        }
    };
    SloReport {
        availability_pct,
        error_budget_pct,
        error_budget_raw_pct,
        burn_rate_value,
        burn_class,
        burn_class_state,
        burn_class_detail,
        burn_alert,
        pairs,
        latency_compliant: compliant(p95, targets.p95_threshold_ms),
        latency_p99_compliant: compliant(p99, targets.p99_threshold_ms),
        p95_ms: p95.clone(),
        p99_ms: p99.clone(),
        total_events,
        bad_events,
        targets: targets.clone(),
    }
}

type BurnSummary = (Reading, Option<String>, InputState, String, Option<String>);

/// The burn rate (the largest rate confirmed by both windows of a pair), its class and the
/// alert level. The class is known when every value the unknown windows could take leads to
/// the same class; otherwise it carries the worst state of the missing windows.
fn burn_from_pairs(pairs: &[PairResult], thresholds: &BurnThresholds) -> BurnSummary {
    if pairs.is_empty() {
        return (
            Reading::no_data("no burn-rate windows configured"),
            None,
            InputState::NoData,
            "no burn-rate windows configured".to_string(),
            None,
        );
    }
    let mut lower: f64 = 0.0;
    let mut upper: f64 = 0.0;
    let mut all_known = true;
    let mut worst = InputState::Ok;
    let mut detail = String::new();
    for p in pairs {
        let l = p.long_burn.usable(true);
        let s = p.short_burn.usable(true);
        for r in [&p.long_burn, &p.short_burn] {
            if !r.state.usable(true) {
                worst = worst.worst(r.state);
                if detail.is_empty() {
                    detail = r.detail.clone();
                }
            } else if r.state == InputState::Partial {
                worst = worst.worst(InputState::Partial);
            }
        }
        match (l, s) {
            (Some(l), Some(s)) => {
                lower = lower.max(l.min(s));
                upper = upper.max(l.min(s));
            }
            (Some(v), None) | (None, Some(v)) => {
                all_known = false;
                upper = upper.max(v);
            }
            (None, None) => {
                all_known = false;
                upper = f64::INFINITY;
            }
        }
    }
    let alert = alert_level(pairs);
    if all_known {
        let class = burn_class(lower, thresholds).to_string();
        let state = if worst == InputState::Partial {
            InputState::Partial
        } else {
            InputState::Ok
        };
        let reading = if state == InputState::Partial {
            Reading::partial(lower, "some windows are partial")
        } else {
            Reading::ok(lower)
        };
        return (reading, Some(class), state, String::new(), alert);
    }
    let low_class = burn_class(lower, thresholds);
    let high_class = if upper.is_finite() {
        burn_class(upper, thresholds)
    } else {
        BURN_CRITICAL
    };
    let value = Reading {
        state: worst,
        value: None,
        detail: format!("burn rate over some windows unknown: {detail}"),
    };
    if class_rank(low_class) == class_rank(high_class) {
        (
            value,
            Some(low_class.to_string()),
            InputState::Ok,
            format!("class known although some windows are missing: {detail}"),
            alert,
        )
    } else {
        (value, None, worst, detail, alert)
    }
}

fn alert_level(pairs: &[PairResult]) -> Option<String> {
    let firing = |severity: &str| {
        pairs
            .iter()
            .any(|p| p.severity == severity && p.firing == Some(true))
    };
    if firing("page") {
        return Some("page".to_string());
    }
    let unknown = |severity: &str| {
        pairs
            .iter()
            .any(|p| p.severity == severity && p.firing.is_none())
    };
    if unknown("page") {
        return None;
    }
    if firing("ticket") {
        return Some("ticket".to_string());
    }
    if unknown("ticket") {
        return None;
    }
    Some("none".to_string())
}

/// The mean of the last three hourly burn rates (the seed's `recent_burn`).
pub fn recent_burn(hourly: &[f64]) -> Reading {
    let tail: Vec<f64> = hourly.iter().rev().take(3).copied().collect();
    if tail.is_empty() {
        return Reading::no_data("no hourly burn rates");
    }
    Reading::ok(tail.iter().sum::<f64>() / tail.len() as f64)
}

/// Every window the report needs counts for: the budget window and each burn window.
pub fn needed_windows(targets: &SloTargets, windows: &[BurnWindow]) -> Vec<Window> {
    let mut all = vec![targets.window];
    for w in windows {
        all.push(w.long);
        all.push(w.short);
    }
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::config::default_burn_windows;

    fn targets() -> SloTargets {
        SloTargets {
            availability_target_pct: 99.9,
            window: Window(30 * 86_400),
            p95_threshold_ms: Some(500.0),
            p99_threshold_ms: Some(1000.0),
        }
    }

    fn counts(bad_ratio_per_window: &dyn Fn(Window) -> Option<f64>) -> SliInput {
        let windows = needed_windows(&targets(), &default_burn_windows())
            .into_iter()
            .map(|w| {
                let total = w.seconds() as f64; // one request per second
                match bad_ratio_per_window(w) {
                    Some(r) => WindowCounts {
                        window: w,
                        bad: Reading::ok(r * total),
                        total: Reading::ok(total),
                    },
                    None => WindowCounts {
                        window: w,
                        bad: Reading::no_data("empty vector"),
                        total: Reading::no_data("empty vector"),
                    },
                }
            })
            .collect();
        SliInput::Counts {
            windows,
            p95_ms: Reading::ok(450.0),
            p99_ms: Reading::ok(900.0),
        }
    }

    fn run(input: &SliInput) -> SloReport {
        evaluate(
            input,
            &targets(),
            &BurnThresholds::default(),
            &default_burn_windows(),
            100.0,
            1.0,
        )
    }

    #[test]
    fn seed_snapshot_matches_the_seed_formula() {
        // The seed's data/metrics.json: 2100 failed of 2592000 at 99.9 % → 18.98 % left.
        let input = SliInput::Snapshot {
            total: Reading::ok(2_592_000.0),
            failed: Reading::ok(2100.0),
            recent_burn: recent_burn(&[0.8, 0.9, 0.8, 0.9]),
            p95_ms: Reading::ok(480.0),
            p99_ms: Reading::ok(890.0),
        };
        let r = run(&input);
        let budget = r.error_budget_pct.value.unwrap();
        assert!((budget - 18.981_481).abs() < 1e-4, "{budget}");
        assert_eq!(r.burn_class.as_deref(), Some(BURN_LOW));
        assert_eq!(r.latency_compliant, Some(true));
    }

    #[test]
    fn healthy_counts_give_low_burn_and_full_budget() {
        let r = run(&counts(&|_| Some(0.0001)));
        assert!((r.error_budget_pct.value.unwrap() - 90.0).abs() < 1e-6);
        assert_eq!(r.burn_class.as_deref(), Some(BURN_LOW));
        assert_eq!(r.burn_alert.as_deref(), Some("none"));
        assert!((r.burn_rate_value.value.unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn fast_burn_pages_only_when_both_windows_exceed() {
        // 2 % errors in the last hour: burn 20 over 1h and 5m.
        let r = run(&counts(&|w| {
            Some(if w.seconds() <= 3600 { 0.02 } else { 0.0001 })
        }));
        assert_eq!(r.burn_alert.as_deref(), Some("page"));
        assert_eq!(r.burn_class.as_deref(), Some(BURN_CRITICAL));
        // A blip only in the 5 m window: the 1 h window stays low, no page.
        let r = run(&counts(&|w| {
            Some(if w.seconds() <= 300 { 0.05 } else { 0.0001 })
        }));
        assert_eq!(r.burn_alert.as_deref(), Some("none"));
        assert_eq!(r.burn_class.as_deref(), Some(BURN_LOW));
    }

    #[test]
    fn no_traffic_is_no_data_not_healthy() {
        let r = run(&counts(&|_| None));
        assert_eq!(r.error_budget_pct.state, InputState::NoData);
        assert_eq!(r.burn_class, None);
        assert_eq!(r.burn_class_state, InputState::NoData);
        assert_eq!(r.burn_alert, None);
    }

    #[test]
    fn a_known_critical_pair_decides_the_class_even_with_gaps() {
        let r = run(&counts(&|w| match w.seconds() {
            300 | 3600 => Some(0.05),
            86_400 => None,
            _ => Some(0.0001),
        }));
        assert_eq!(r.burn_class.as_deref(), Some(BURN_CRITICAL));
        assert_eq!(r.burn_class_state, InputState::Ok);
        assert_eq!(r.burn_rate_value.value, None);
    }

    #[test]
    fn traffic_floor_turns_tiny_windows_into_no_data() {
        let r = error_ratio(&Reading::ok(1.0), &Reading::ok(5.0), 10.0);
        assert_eq!(r.state, InputState::NoData);
        assert!(r.detail.contains("traffic floor"));
        let r = error_ratio(&Reading::ok(0.0), &Reading::ok(0.0), 0.0);
        assert_eq!(r.state, InputState::NoData);
    }

    #[test]
    fn overspent_budget_is_clamped_but_raw_is_kept() {
        let r = run(&counts(&|_| Some(0.003)));
        assert_eq!(r.error_budget_pct.value, Some(0.0));
        assert!((r.error_budget_raw_pct.value.unwrap() + 200.0).abs() < 1e-6);
    }

    #[test]
    fn burn_classes_follow_the_seed_thresholds() {
        let t = BurnThresholds::default();
        assert_eq!(burn_class(0.5, &t), BURN_LOW);
        assert_eq!(burn_class(2.0, &t), BURN_MEDIUM);
        assert_eq!(burn_class(5.0, &t), BURN_HIGH);
        assert_eq!(burn_class(10.0, &t), BURN_CRITICAL);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::gate::config::default_burn_windows;
    use proptest::prelude::*;

    fn targets(target: f64) -> SloTargets {
        SloTargets {
            availability_target_pct: target,
            window: Window(30 * 86_400),
            p95_threshold_ms: None,
            p99_threshold_ms: None,
        }
    }

    proptest! {
        /// More bad events never leave more budget, and the budget stays in [0, 100].
        #[test]
        fn budget_is_monotone_and_bounded(
            total in 1.0f64..1e9,
            bad_fraction in 0.0f64..1.0,
            extra in 0.0f64..1.0,
            target in 90.0f64..99.999,
        ) {
            let t = targets(target);
            let run = |bad: f64| {
                let input = SliInput::Snapshot {
                    total: Reading::ok(total),
                    failed: Reading::ok(bad),
                    recent_burn: Reading::ok(1.0),
                    p95_ms: Reading::ok(1.0),
                    p99_ms: Reading::ok(1.0),
                };
                evaluate(&input, &t, &BurnThresholds::default(), &default_burn_windows(), 0.0, 0.0)
                    .error_budget_pct
                    .value
                    .unwrap()
            };
            let bad = total * bad_fraction;
            let more = (bad + total * extra).min(total);
            let (a, b) = (run(bad), run(more));
            prop_assert!((0.0..=100.0).contains(&a));
            prop_assert!(b <= a + 1e-9);
        }

        /// An unusable count never yields a usable ratio, whatever the other count says.
        #[test]
        fn unusable_counts_stay_unusable(value in 0.0f64..1e6, which in 0usize..4, bad_side in any::<bool>()) {
            let broken = [
                Reading::no_data("x"),
                Reading::nan("x"),
                Reading::stale(Some(value), "x"),
                Reading::error("x"),
            ][which].clone();
            let ok = Reading::ok(value);
            let r = if bad_side { error_ratio(&broken, &ok, 0.0) } else { error_ratio(&ok, &broken, 0.0) };
            prop_assert!(r.usable(true).is_none());
            prop_assert_eq!(r.state, broken.state);
        }

        /// Window text round-trips through its PromQL form.
        #[test]
        fn windows_round_trip(n in 1u64..10_000, unit in 0usize..4) {
            let text = format!("{n}{}", ["s", "m", "h", "d"][unit]);
            let w = Window::parse(&text).unwrap();
            prop_assert_eq!(Window::parse(&w.promql()).unwrap(), w);
        }
    }
}
