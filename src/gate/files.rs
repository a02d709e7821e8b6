//! File adapters: reading the gate configuration (and the files it references) and the seed's
//! `metrics.json` and `cost.json` data files, with a size limit. A malformed, empty or huge data
//! file becomes an `Error` input (the gate then delays), never zeros; a bad configuration file is
//! a `ConfigError`. No decisions here.

use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde::Deserialize;

use super::config::{self, ConfigError, DocumentReader, GateConfig, GateFile};
use super::cost::{CostInput, DailyCost};
use super::inputs::{InputState, Reading};
use super::rules::{self, RuleSet};
use super::slo::{self, SliInput};

/// Largest file read (configuration or data).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum FileError {
    /// Missing or unreadable.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Over `MAX_FILE_BYTES`.
    #[error("{path}: larger than {limit} bytes")]
    TooLarge {
        /// The path.
        path: String,
        /// The limit.
        limit: u64,
    },
}

impl FileError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            FileError::Io { .. } => "io",
            FileError::TooLarge { .. } => "too_large",
        }
    }
}

/// Reads a UTF-8 file of at most `MAX_FILE_BYTES`.
pub fn read_limited(path: &Path) -> Result<String, FileError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| FileError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: name,
            limit: MAX_FILE_BYTES,
        });
    }
    std::fs::read_to_string(path).map_err(|e| FileError::Io {
        path: name,
        message: e.to_string(),
    })
}

struct DiskReader;

impl DocumentReader for DiskReader {
    fn read(&self, path: &Path) -> Result<String, String> {
        read_limited(path).map_err(|e| e.to_string())
    }
}

/// Loads and validates a gate configuration file.
pub fn load_config(path: &Path) -> Result<GateConfig, ConfigError> {
    let name = path.display().to_string();
    let text = read_limited(path).map_err(|e| ConfigError::Syntax {
        file: name.clone(),
        message: e.to_string(),
    })?;
    let gate: GateFile = config::parse_yaml(&name, &text)?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    config::resolve(&name, &base, gate, &DiskReader)
}

/// Loads the rules: `--policies`, else the configuration's `policies`, else the seed defaults.
pub fn load_rules(
    explicit: Option<&Path>,
    configured: Option<&Path>,
) -> Result<RuleSet, ConfigError> {
    match explicit.or(configured) {
        Some(path) => {
            let name = path.display().to_string();
            let text = read_limited(path).map_err(|e| ConfigError::Syntax {
                file: name.clone(),
                message: e.to_string(),
            })?;
            rules::parse(&name, &text)
        }
        None => rules::defaults(),
    }
}

#[derive(Deserialize)]
struct Percentiles {
    #[serde(default)]
    p95_ms: Option<f64>,
    #[serde(default)]
    p99_ms: Option<f64>,
}

#[derive(Deserialize)]
struct MetricsFile {
    #[serde(default)]
    total_requests: Option<f64>,
    #[serde(default)]
    failed_requests: Option<f64>,
    #[serde(default)]
    latency_percentiles: Option<Percentiles>,
    #[serde(default)]
    p95_latency_ms: Option<f64>,
    #[serde(default)]
    p99_latency_ms: Option<f64>,
    #[serde(default)]
    hourly_burn_rate: Option<Vec<f64>>,
    #[serde(default)]
    burn_rates: Option<Vec<f64>>,
}

fn field(value: Option<f64>, name: &str, file: &str) -> Reading {
    match value {
        Some(v) if v.is_finite() && v >= 0.0 => Reading::ok(v),
        Some(v) => Reading::error(format!("{file}: {name} is {v}")),
        None => Reading::no_data(format!("{file}: no {name}")),
    }
}

fn all_error(detail: String) -> SliInput {
    let e = Reading::error(detail);
    SliInput::Snapshot {
        total: e.clone(),
        failed: e.clone(),
        recent_burn: e.clone(),
        p95_ms: e.clone(),
        p99_ms: e,
    }
}

/// Parses the seed's `metrics.json` (both the seed file's and its README's field names).
pub fn parse_metrics(file: &str, text: &str) -> SliInput {
    if text.trim().is_empty() {
        return all_error(format!("{file}: the file is empty"));
    }
    // serde would also read a struct from a JSON array (by position): demand an object.
    let m: MetricsFile = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => match serde_json::from_value(v) {
            Ok(m) => m,
            Err(e) => return all_error(format!("{file}: {e}")),
        },
        Ok(_) => return all_error(format!("{file}: expected a JSON object")),
        Err(e) => return all_error(format!("{file}: {e}")),
    };
    let p = m.latency_percentiles.as_ref();
    let p95 = p.and_then(|p| p.p95_ms).or(m.p95_latency_ms);
    let p99 = p.and_then(|p| p.p99_ms).or(m.p99_latency_ms);
    let recent = match m.hourly_burn_rate.or(m.burn_rates) {
        Some(rates) if rates.iter().all(|r| r.is_finite() && *r >= 0.0) => slo::recent_burn(&rates),
        Some(_) => Reading::error(format!("{file}: a burn rate is negative or not finite")),
        None => Reading::no_data(format!("{file}: no hourly_burn_rate")),
    };
    let total = field(m.total_requests, "total_requests", file);
    let mut failed = field(m.failed_requests, "failed_requests", file);
    if let (Some(t), Some(f)) = (total.value, failed.value)
        && f > t
    {
        failed = Reading::error(format!(
            "{file}: failed_requests {f} exceeds total_requests {t}"
        ));
    }
    SliInput::Snapshot {
        total,
        failed,
        recent_burn: recent,
        p95_ms: field(p95, "p95 latency", file),
        p99_ms: field(p99, "p99 latency", file),
    }
}

#[derive(Deserialize)]
struct CostDay {
    date: String,
    cost: f64,
    #[serde(default)]
    estimated: bool,
}

#[derive(Deserialize)]
struct CostFile {
    daily_costs: Vec<CostDay>,
}

/// Parses the seed's `cost.json` (`daily_costs: [{date, cost, estimated?}]`).
pub fn parse_cost(file: &str, text: &str) -> CostInput {
    let unavailable = |detail: String| CostInput::Unavailable {
        state: InputState::Error,
        detail,
    };
    if text.trim().is_empty() {
        return unavailable(format!("{file}: the file is empty"));
    }
    let parsed: CostFile = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => match serde_json::from_value(v) {
            Ok(c) => c,
            Err(e) => return unavailable(format!("{file}: {e}")),
        },
        Ok(_) => return unavailable(format!("{file}: expected a JSON object")),
        Err(e) => return unavailable(format!("{file}: {e}")),
    };
    let mut days = Vec::new();
    for (i, d) in parsed.daily_costs.iter().enumerate() {
        let date: Date = match d.date.parse() {
            Ok(date) => date,
            Err(e) => {
                return unavailable(format!("{file}: daily_costs[{i}].date {:?}: {e}", d.date));
            }
        };
        days.push(DailyCost {
            date,
            amount: d.cost,
            estimated: d.estimated,
        });
    }
    CostInput::Days(days)
}

/// Reads and parses a `metrics.json`; a read failure is an `Error` input.
pub fn read_metrics(path: &Path) -> SliInput {
    let name = path.display().to_string();
    match read_limited(path) {
        Ok(text) => parse_metrics(&name, &text),
        Err(e) => all_error(e.to_string()),
    }
}

/// Reads and parses a `cost.json`; a read failure is an `Error` input.
pub fn read_cost(path: &Path) -> CostInput {
    let name = path.display().to_string();
    match read_limited(path) {
        Ok(text) => parse_cost(&name, &text),
        Err(e) => CostInput::Unavailable {
            state: InputState::Error,
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_metrics_file_parses() {
        let text = r#"{"service":"checkout-api","total_requests":2592000,"failed_requests":2100,
            "latency_percentiles":{"p50_ms":120,"p95_ms":480,"p99_ms":890},
            "hourly_burn_rate":[0.8,0.9,1.0,1.1,0.9]}"#;
        let SliInput::Snapshot {
            total,
            failed,
            recent_burn,
            p95_ms,
            p99_ms,
        } = parse_metrics("m.json", text)
        else {
            panic!("snapshot expected");
        };
        assert_eq!(total.value, Some(2_592_000.0));
        assert_eq!(failed.value, Some(2100.0));
        assert!((recent_burn.value.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(p95_ms.value, Some(480.0));
        assert_eq!(p99_ms.value, Some(890.0));
    }

    #[test]
    fn readme_shape_parses_too() {
        let text = r#"{"total_requests":10,"failed_requests":1,"p95_latency_ms":480,"p99_latency_ms":820,"burn_rates":[3.0]}"#;
        let SliInput::Snapshot {
            p95_ms,
            recent_burn,
            ..
        } = parse_metrics("m.json", text)
        else {
            panic!("snapshot expected");
        };
        assert_eq!(p95_ms.value, Some(480.0));
        assert_eq!(recent_burn.value, Some(3.0));
    }

    #[test]
    fn malformed_and_empty_files_are_errors_not_zeros() {
        for text in ["", "{", "[1,2]", r#"{"total_requests":"many"}"#] {
            let SliInput::Snapshot { total, .. } = parse_metrics("m.json", text) else {
                panic!("snapshot expected");
            };
            assert_eq!(total.state, InputState::Error, "{text:?}");
        }
        let SliInput::Snapshot { total, failed, .. } = parse_metrics("m.json", "{}") else {
            panic!("snapshot expected");
        };
        assert_eq!(total.state, InputState::NoData);
        assert_eq!(failed.state, InputState::NoData);
        assert!(matches!(
            parse_cost("c.json", "{}"),
            CostInput::Unavailable {
                state: InputState::Error,
                ..
            }
        ));
        assert!(matches!(
            parse_cost(
                "c.json",
                r#"{"daily_costs":[{"date":"yesterday","cost":1}]}"#
            ),
            CostInput::Unavailable {
                state: InputState::Error,
                ..
            }
        ));
    }
}
