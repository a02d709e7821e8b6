//! Cost math: current vs prior 7-day average, week-over-week change, trend (stable / rising /
//! spiking / falling) and spike detection over daily records, with estimated days stated. Pure:
//! the caller passes the evaluation day; no I/O, no clock; too little history is `NoData`.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::config::CostSettings;
use super::inputs::{InputState, Reading};

/// Trend label.
pub const TREND_STABLE: &str = "stable";
/// Trend label.
pub const TREND_RISING: &str = "rising";
/// Trend label.
pub const TREND_SPIKING: &str = "spiking";
/// Trend label.
pub const TREND_FALLING: &str = "falling";

/// One day of spend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyCost {
    /// The UTC day.
    pub date: Date,
    /// Spend.
    pub amount: f64,
    /// Whether the provider still flags the day as estimated.
    #[serde(default)]
    pub estimated: bool,
}

/// Daily records as fetched, or why there are none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CostInput {
    /// Records (any order, possibly with gaps).
    Days(Vec<DailyCost>),
    /// The source could not be used.
    Unavailable {
        /// The state (`NoData`, `Error`, …).
        state: InputState,
        /// Why.
        detail: String,
    },
}

/// The cost report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    /// Mean daily spend over the last 7 days.
    pub current_week_avg: Reading,
    /// Mean daily spend over the 7 days before.
    pub prior_week_avg: Reading,
    /// Week-over-week change, percent.
    pub wow_change_pct: Reading,
    /// Trend label (when the change is usable).
    pub trend: Option<String>,
    /// Whether the change is at or above the rising threshold.
    pub spike_detected: Option<bool>,
    /// How many of the 14 days are estimated.
    pub estimated_days: usize,
    /// The days used, oldest first.
    pub days: Vec<DailyCost>,
}

impl CostReport {
    fn unavailable(state: InputState, detail: &str) -> CostReport {
        let r = Reading {
            state,
            value: None,
            detail: detail.to_string(),
        };
        CostReport {
            current_week_avg: r.clone(),
            prior_week_avg: r.clone(),
            wow_change_pct: r,
            trend: None,
            spike_detected: None,
            estimated_days: 0,
            days: Vec::new(),
        }
    }
}

/// The trend label for a week-over-week change.
pub fn trend(wow_pct: f64, settings: &CostSettings) -> &'static str {
    if wow_pct >= settings.spiking_pct {
        TREND_SPIKING
    } else if wow_pct >= settings.rising_pct {
        TREND_RISING
    } else if wow_pct <= settings.falling_pct {
        TREND_FALLING
    } else {
        TREND_STABLE
    }
}

/// Evaluates the cost report over the 14 days before `today` (today itself is incomplete and
/// never used). Missing days, too little history or a zero prior week are not-Ok states.
pub fn evaluate(input: &CostInput, today: Date, settings: &CostSettings) -> CostReport {
    let days = match input {
        CostInput::Unavailable { state, detail } => return CostReport::unavailable(*state, detail),
        CostInput::Days(days) => days,
    };
    let mut used: Vec<DailyCost> = days.iter().filter(|d| d.date < today).cloned().collect();
    used.sort_by_key(|d| d.date);
    used.dedup_by_key(|d| d.date);
    if let Some(bad) = used
        .iter()
        .find(|d| !d.amount.is_finite() || d.amount < 0.0)
    {
        return CostReport::unavailable(
            InputState::Error,
            &format!("day {} has an invalid amount {}", bad.date, bad.amount),
        );
    }
    let Some(newest) = used.last().map(|d| d.date) else {
        return CostReport::unavailable(
            InputState::NoData,
            "no cost days before the evaluation day",
        );
    };
    let lag = (today - newest).get_days() as i64;
    if lag > settings.max_lag_days {
        let mut report = CostReport::unavailable(
            InputState::Stale,
            &format!("the newest cost day is {newest}, {lag} days before {today}"),
        );
        report.days = used;
        return report;
    }
    let needed = settings.minimum_days.max(2);
    if used.len() < needed {
        let mut report = CostReport::unavailable(
            InputState::NoData,
            &format!("{} cost days, {needed} needed", used.len()),
        );
        report.days = used;
        return report;
    }
    let window: Vec<DailyCost> = used[used.len() - needed..].to_vec();
    // Gaps inside the window make the averages wrong: the days must be consecutive.
    let span = (window[window.len() - 1].date - window[0].date).get_days() as usize + 1;
    if span != needed {
        let mut report = CostReport::unavailable(
            InputState::NoData,
            &format!(
                "cost days between {} and {} have gaps ({} of {span} days present)",
                window[0].date,
                window[window.len() - 1].date,
                needed
            ),
        );
        report.days = window;
        return report;
    }
    let half = needed / 2;
    let (prior, current) = window.split_at(needed - half);
    let mean = |d: &[DailyCost]| d.iter().map(|x| x.amount).sum::<f64>() / d.len() as f64;
    let estimated_days = window.iter().filter(|d| d.estimated).count();
    let reading = |v: f64| {
        if estimated_days > 0 {
            Reading::partial(
                v,
                format!("{estimated_days} of {needed} days are estimated"),
            )
        } else {
            Reading::ok(v)
        }
    };
    let current_avg = mean(current);
    let prior_avg = mean(prior);
    let wow = if prior_avg > 0.0 {
        reading((current_avg - prior_avg) / prior_avg * 100.0)
    } else {
        Reading::nan("the prior week's spend is zero: week-over-week change is undefined")
    };
    let trend_label = wow.usable(true).map(|w| trend(w, settings).to_string());
    let spike = wow.usable(true).map(|w| w >= settings.rising_pct);
    CostReport {
        current_week_avg: reading(current_avg),
        prior_week_avg: reading(prior_avg),
        wow_change_pct: wow,
        trend: trend_label,
        spike_detected: spike,
        estimated_days,
        days: window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn series(amounts: &[f64], last: Date) -> Vec<DailyCost> {
        let n = amounts.len() as i64;
        amounts
            .iter()
            .enumerate()
            .map(|(i, a)| DailyCost {
                date: last
                    .checked_sub(jiff::Span::new().days(n - 1 - i as i64))
                    .unwrap(),
                amount: *a,
                estimated: false,
            })
            .collect()
    }

    #[test]
    fn seed_cost_file_gives_the_seed_numbers() {
        // The last 14 days of the seed's data/cost.json.
        let amounts = [
            55.90, 58.40, 61.30, 63.90, 60.20, 58.10, 57.80, 56.40, 55.90, 57.20, 58.60, 60.10,
            62.40,
        ];
        let mut all = vec![53.20];
        all.extend_from_slice(&amounts);
        let days = series(&all, date(2026, 2, 20));
        let r = evaluate(
            &CostInput::Days(days),
            date(2026, 2, 21),
            &CostSettings::default(),
        );
        let wow = r.wow_change_pct.value.unwrap();
        // prior = mean(53.2 … 58.1) = 58.7143, current = mean(57.8 … 62.4) = 58.3429
        assert!((wow - (-0.6326)).abs() < 1e-3, "{wow}");
        assert_eq!(r.trend.as_deref(), Some(TREND_STABLE));
        assert_eq!(r.spike_detected, Some(false));
    }

    #[test]
    fn spikes_and_trends() {
        let s = CostSettings::default();
        assert_eq!(trend(35.0, &s), TREND_SPIKING);
        assert_eq!(trend(20.0, &s), TREND_RISING);
        assert_eq!(trend(-10.0, &s), TREND_FALLING);
        assert_eq!(trend(0.0, &s), TREND_STABLE);
    }

    #[test]
    fn estimated_days_make_the_report_partial() {
        let mut days = series(&[10.0; 14], date(2026, 3, 1));
        days[13].estimated = true;
        let r = evaluate(
            &CostInput::Days(days),
            date(2026, 3, 2),
            &CostSettings::default(),
        );
        assert_eq!(r.wow_change_pct.state, InputState::Partial);
        assert_eq!(r.estimated_days, 1);
    }

    #[test]
    fn too_little_history_gaps_staleness_and_zero_prior_are_not_ok() {
        let s = CostSettings::default();
        let r = evaluate(
            &CostInput::Days(series(&[1.0; 5], date(2026, 3, 1))),
            date(2026, 3, 2),
            &s,
        );
        assert_eq!(r.wow_change_pct.state, InputState::NoData);
        let r = evaluate(
            &CostInput::Days(series(&[1.0; 14], date(2026, 3, 1))),
            date(2026, 3, 20),
            &s,
        );
        assert_eq!(r.wow_change_pct.state, InputState::Stale);
        let mut days = series(&[1.0; 15], date(2026, 3, 1));
        days.remove(7);
        let r = evaluate(&CostInput::Days(days), date(2026, 3, 2), &s);
        assert_eq!(r.wow_change_pct.state, InputState::NoData);
        let mut amounts = vec![0.0; 7];
        amounts.extend([5.0; 7]);
        let r = evaluate(
            &CostInput::Days(series(&amounts, date(2026, 3, 1))),
            date(2026, 3, 2),
            &s,
        );
        assert_eq!(r.wow_change_pct.state, InputState::NaN);
        let r = evaluate(&CostInput::Days(vec![]), date(2026, 3, 2), &s);
        assert_eq!(r.wow_change_pct.state, InputState::NoData);
    }

    #[test]
    fn today_is_never_used() {
        let mut amounts = vec![10.0; 14];
        amounts.push(1000.0);
        let r = evaluate(
            &CostInput::Days(series(&amounts, date(2026, 3, 2))),
            date(2026, 3, 2),
            &CostSettings::default(),
        );
        assert_eq!(r.wow_change_pct.value, Some(0.0));
    }
}
