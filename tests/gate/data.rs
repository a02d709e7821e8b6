//! Generated SLI data for the gate's tests and benchmark: OpenMetrics text (second timestamps,
//! `# EOF`) with request counters and a latency histogram per scenario, relative to a reference
//! instant, plus the exact error ratios the scenarios were built from (for assertions).
#![allow(dead_code)]

use std::io::Write;

/// Latency bucket bounds (seconds).
pub const BUCKETS: [&str; 6] = ["0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
/// Cumulative fractions for a healthy latency profile (p95 ≈ 429 ms).
pub const FAST: [f64; 6] = [0.5, 0.9, 0.97, 0.995, 0.999, 1.0];
/// Cumulative fractions for a slow profile (p95 ≈ 941 ms).
pub const SLOW: [f64; 6] = [0.2, 0.5, 0.8, 0.97, 0.995, 1.0];

/// One generated service.
#[derive(Clone)]
pub struct Scenario {
    /// The `scenario` label value.
    pub name: String,
    /// Requests per minute.
    pub rate_per_minute: f64,
    /// Error ratio as a function of minutes before the reference instant.
    pub error: fn(f64) -> f64,
    /// Latency profile.
    pub latency: [f64; 6],
    /// The data ends this many minutes before the reference instant.
    pub ends_minutes_ago: i64,
    /// The counters restart from zero this many minutes before the reference instant.
    pub reset_minutes_ago: Option<i64>,
    /// Days of history.
    pub days: i64,
    /// Sample step in minutes for data older than `fine_hours`.
    pub coarse_step_minutes: i64,
    /// Hours of 1-minute data before the reference instant.
    pub fine_hours: i64,
    /// Hours of histogram data (5-minute steps) before the reference instant.
    pub histogram_hours: i64,
}

impl Scenario {
    /// A scenario with the test defaults: 100 req/min, 31 days, 10-minute steps older than two days.
    pub fn new(name: &str, error: fn(f64) -> f64) -> Scenario {
        Scenario {
            name: name.to_string(),
            rate_per_minute: 100.0,
            error,
            latency: FAST,
            ends_minutes_ago: 0,
            reset_minutes_ago: None,
            days: 31,
            coarse_step_minutes: 10,
            fine_hours: 50,
            histogram_hours: 6,
        }
    }

    /// The exact error ratio over the `window_minutes` before the reference instant.
    pub fn expected_ratio(&self, window_minutes: f64) -> f64 {
        let mut bad = 0.0;
        let mut total = 0.0;
        let mut m = 0.0;
        while m < window_minutes {
            if m >= self.ends_minutes_ago as f64 {
                bad += (self.error)(m + 0.5);
                total += 1.0;
            }
            m += 1.0;
        }
        if total == 0.0 { f64::NAN } else { bad / total }
    }
}

/// Writes every scenario as OpenMetrics into `out`; `now` is the reference instant (unix s).
pub fn write_openmetrics(
    out: &mut dyn Write,
    scenarios: &[Scenario],
    now: i64,
) -> std::io::Result<()> {
    writeln!(out, "# HELP http_requests_total Requests by status code.")?;
    writeln!(out, "# TYPE http_requests_total counter")?;
    for s in scenarios {
        let start = now - s.days * 86_400;
        let end = now - s.ends_minutes_ago * 60;
        let fine_from = now - s.fine_hours * 3600;
        let mut t = start;
        let (mut ok, mut bad) = (0.0f64, 0.0f64);
        let mut last = start;
        let mut rows_ok = Vec::new();
        let mut rows_bad = Vec::new();
        while t <= end {
            // Integrate per minute between samples.
            let mut m = last;
            while m < t {
                let minutes_ago = (now - m) as f64 / 60.0 - 0.5;
                let e = (s.error)(minutes_ago.max(0.0));
                bad += s.rate_per_minute * e;
                ok += s.rate_per_minute * (1.0 - e);
                m += 60;
            }
            last = t;
            if let Some(r) = s.reset_minutes_ago
                && t >= now - r * 60
                && t - step(s, t, fine_from) < now - r * 60
            {
                ok = 0.0;
                bad = 0.0;
            }
            rows_ok.push((t, ok));
            rows_bad.push((t, bad));
            t += step(s, t, fine_from);
        }
        for (t, v) in rows_ok {
            writeln!(
                out,
                "http_requests_total{{scenario=\"{}\",code=\"200\"}} {v} {t}",
                s.name
            )?;
        }
        for (t, v) in rows_bad {
            writeln!(
                out,
                "http_requests_total{{scenario=\"{}\",code=\"500\"}} {v} {t}",
                s.name
            )?;
        }
    }
    writeln!(out, "# HELP http_request_duration_seconds Request latency.")?;
    writeln!(out, "# TYPE http_request_duration_seconds histogram")?;
    for s in scenarios {
        let end = now - s.ends_minutes_ago * 60;
        let start = now - s.histogram_hours * 3600;
        for (i, le) in BUCKETS.iter().enumerate() {
            let mut t = start;
            let mut count = 0.0;
            while t <= end {
                count += s.rate_per_minute * 5.0 * s.latency[i];
                writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{scenario=\"{}\",le=\"{le}\"}} {count} {t}",
                    s.name
                )?;
                t += 300;
            }
        }
    }
    writeln!(out, "# EOF")?;
    Ok(())
}

fn step(s: &Scenario, t: i64, fine_from: i64) -> i64 {
    if t >= fine_from {
        60
    } else {
        s.coarse_step_minutes * 60
    }
}

/// PromQL for a scenario, in the gate's configuration shape.
pub fn queries_yaml(scenario: &str, indent: &str) -> String {
    format!(
        "{i}total: 'sum(increase(http_requests_total{{scenario=\"{s}\"}}[$window]))'\n\
         {i}bad: 'sum(increase(http_requests_total{{scenario=\"{s}\",code=\"500\"}}[$window]))'\n\
         {i}p95: '1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{scenario=\"{s}\"}}[1h])))'\n\
         {i}p99: '1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{scenario=\"{s}\"}}[1h])))'\n\
         {i}freshness: 'time() - max(timestamp(http_requests_total{{scenario=\"{s}\"}}))'\n",
        i = indent,
        s = scenario
    )
}
