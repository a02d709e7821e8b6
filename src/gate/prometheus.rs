//! A small Prometheus HTTP API client (`/api/v1/query`, `/api/v1/query_range`) on reqwest:
//! bearer or basic auth, an extra CA bundle, a per-request timeout; it keeps the server's
//! `warnings`, and reports `NaN`/`±Inf`, empty answers, 400/422/503 and timeouts as data. It
//! makes no SLO decision and never turns an empty answer into zero.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Deserialize;

use super::config::PrometheusSettings;

/// Why a query failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PrometheusError {
    /// The client could not be built (bad URL, unreadable CA bundle).
    #[error("invalid Prometheus client settings: {0}")]
    Settings(String),
    /// No answer in time.
    #[error("Prometheus did not answer within {0:.1} s")]
    Timeout(f64),
    /// Connection refused, DNS, TLS.
    #[error("could not reach Prometheus: {0}")]
    Transport(String),
    /// 400: the query is invalid.
    #[error("Prometheus rejected the query ({error_type}): {message}")]
    BadQuery {
        /// `errorType` from the answer.
        error_type: String,
        /// `error` from the answer.
        message: String,
    },
    /// 422: the query could not be executed.
    #[error("Prometheus could not execute the query ({error_type}): {message}")]
    Execution {
        /// `errorType`.
        error_type: String,
        /// `error`.
        message: String,
    },
    /// 503 or another non-2xx status.
    #[error("Prometheus answered HTTP {status}: {message}")]
    Unavailable {
        /// The status.
        status: u16,
        /// `error` or the body's start.
        message: String,
    },
    /// The answer is not the documented JSON.
    #[error("Prometheus answered something unexpected: {0}")]
    Malformed(String),
}

impl PrometheusError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            PrometheusError::Settings(_) => "settings",
            PrometheusError::Timeout(_) => "timeout",
            PrometheusError::Transport(_) => "transport",
            PrometheusError::BadQuery { .. } => "bad_query",
            PrometheusError::Execution { .. } => "execution",
            PrometheusError::Unavailable { .. } => "unavailable",
            PrometheusError::Malformed(_) => "malformed",
        }
    }
}

/// One instant answer reduced to what the gate uses.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantAnswer {
    /// The single value (`None` for an empty vector); may be NaN/±Inf.
    pub value: Option<f64>,
    /// How many series the vector had (more than one is a configuration mistake).
    pub series: usize,
    /// The server's warnings.
    pub warnings: Vec<String>,
}

/// One range answer: the points of the single series (empty when no series).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeAnswer {
    /// `(unix seconds, value)` points.
    pub points: Vec<(i64, f64)>,
    /// How many series the matrix had.
    pub series: usize,
    /// The server's warnings.
    pub warnings: Vec<String>,
}

/// The narrow query interface the gate uses (a fake implements it in tests).
#[async_trait]
pub trait PromQl: Send + Sync {
    /// `GET /api/v1/query?query=…&time=…`.
    async fn instant(&self, query: &str, at: Timestamp) -> Result<InstantAnswer, PrometheusError>;
    /// `GET /api/v1/query_range?query=…&start=…&end=…&step=…`.
    async fn range(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step_seconds: u64,
    ) -> Result<RangeAnswer, PrometheusError>;
}

enum Auth {
    None,
    Bearer(String),
    Basic(String, Option<String>),
}

/// The reqwest implementation.
pub struct PrometheusClient {
    http: reqwest::Client,
    base: reqwest::Url,
    auth: Auth,
    timeout: f64,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// Parses a sample value as Prometheus writes it (`"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`).
pub fn parse_sample(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

fn sample(pair: &serde_json::Value) -> Result<(i64, f64), PrometheusError> {
    let ts = pair[0]
        .as_f64()
        .ok_or_else(|| PrometheusError::Malformed(format!("sample without a timestamp: {pair}")))?;
    let v = pair[1]
        .as_str()
        .and_then(parse_sample)
        .ok_or_else(|| PrometheusError::Malformed(format!("sample without a value: {pair}")))?;
    Ok((ts as i64, v))
}

impl PrometheusClient {
    /// Builds a client; secrets come from the environment variables the settings name.
    pub fn new(
        settings: &PrometheusSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PrometheusClient, PrometheusError> {
        let mut base = reqwest::Url::parse(&settings.url).map_err(|e| {
            PrometheusError::Settings(format!("prometheus.url {:?}: {e}", settings.url))
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let timeout = Duration::from_secs_f64(settings.timeout_seconds);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        if let Some(path) = &settings.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                PrometheusError::Settings(format!("prometheus.caBundle {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                PrometheusError::Settings(format!("prometheus.caBundle {}: {e}", path.display()))
            })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| PrometheusError::Settings(e.to_string()))?;
        let auth = if let Some(var) = &settings.bearer_token_env {
            let token = env(var).ok_or_else(|| {
                PrometheusError::Settings(format!("prometheus.bearerTokenEnv: {var} is not set"))
            })?;
            Auth::Bearer(token)
        } else if let Some(user) = &settings.basic_auth_username {
            let password = match &settings.basic_auth_password_env {
                Some(var) => Some(env(var).ok_or_else(|| {
                    PrometheusError::Settings(format!(
                        "prometheus.basicAuthPasswordEnv: {var} is not set"
                    ))
                })?),
                None => None,
            };
            Auth::Basic(user.clone(), password)
        } else {
            Auth::None
        };
        Ok(PrometheusClient {
            http,
            base,
            auth,
            timeout: settings.timeout_seconds,
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<(Data, Vec<String>), PrometheusError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| PrometheusError::Settings(e.to_string()))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in params {
                pairs.append_pair(k, v);
            }
        }
        let mut request = self.http.get(url);
        request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(t) => request.bearer_auth(t),
            Auth::Basic(u, p) => request.basic_auth(u, p.as_ref()),
        };
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        const LIMIT: usize = 32 * 1024 * 1024;
        if body.len() > LIMIT {
            return Err(PrometheusError::Malformed(format!(
                "answer larger than {LIMIT} bytes"
            )));
        }
        let envelope: Result<Envelope, _> = serde_json::from_slice(&body);
        let start = || String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
        match (status, envelope) {
            (200, Ok(e)) if e.status == "success" => match e.data {
                Some(d) => Ok((d, e.warnings)),
                None => Err(PrometheusError::Malformed("success without data".into())),
            },
            (200, Ok(e)) => Err(PrometheusError::Malformed(format!(
                "status {:?}: {}",
                e.status,
                e.error.unwrap_or_default()
            ))),
            (200, Err(err)) => Err(PrometheusError::Malformed(format!("{err}: {}", start()))),
            (400, Ok(e)) => Err(PrometheusError::BadQuery {
                error_type: e.error_type.unwrap_or_default(),
                message: e.error.unwrap_or_default(),
            }),
            (422, Ok(e)) => Err(PrometheusError::Execution {
                error_type: e.error_type.unwrap_or_default(),
                message: e.error.unwrap_or_default(),
            }),
            (status, Ok(e)) => Err(PrometheusError::Unavailable {
                status,
                message: e.error.unwrap_or_default(),
            }),
            (status, Err(_)) => Err(PrometheusError::Unavailable {
                status,
                message: start(),
            }),
        }
    }

    fn transport(&self, e: reqwest::Error) -> PrometheusError {
        if e.is_timeout() {
            PrometheusError::Timeout(self.timeout)
        } else {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            PrometheusError::Transport(message)
        }
    }
}

fn unix(t: Timestamp) -> String {
    let ms = t.as_millisecond();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[async_trait]
impl PromQl for PrometheusClient {
    async fn instant(&self, query: &str, at: Timestamp) -> Result<InstantAnswer, PrometheusError> {
        let (data, warnings) = self
            .get(
                "api/v1/query",
                &[("query", query.to_string()), ("time", unix(at))],
            )
            .await?;
        match data.result_type.as_str() {
            "vector" => {
                let list = data.result.as_array().ok_or_else(|| {
                    PrometheusError::Malformed("vector result is not a list".into())
                })?;
                let value = match list.first() {
                    Some(first) => Some(sample(&first["value"])?.1),
                    None => None,
                };
                Ok(InstantAnswer {
                    value,
                    series: list.len(),
                    warnings,
                })
            }
            "scalar" => Ok(InstantAnswer {
                value: Some(sample(&data.result)?.1),
                series: 1,
                warnings,
            }),
            other => Err(PrometheusError::Malformed(format!(
                "result type {other:?}; the query must return a vector or scalar"
            ))),
        }
    }

    async fn range(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step_seconds: u64,
    ) -> Result<RangeAnswer, PrometheusError> {
        let (data, warnings) = self
            .get(
                "api/v1/query_range",
                &[
                    ("query", query.to_string()),
                    ("start", unix(start)),
                    ("end", unix(end)),
                    ("step", step_seconds.max(1).to_string()),
                ],
            )
            .await?;
        if data.result_type != "matrix" {
            return Err(PrometheusError::Malformed(format!(
                "range result type {:?}",
                data.result_type
            )));
        }
        let list = data
            .result
            .as_array()
            .ok_or_else(|| PrometheusError::Malformed("matrix result is not a list".into()))?;
        let points = match list.first() {
            Some(series) => series["values"]
                .as_array()
                .ok_or_else(|| PrometheusError::Malformed("series without values".into()))?
                .iter()
                .map(sample)
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        Ok(RangeAnswer {
            points,
            series: list.len(),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_special_values() {
        assert!(parse_sample("NaN").unwrap().is_nan());
        assert_eq!(parse_sample("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_sample("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_sample("1e3"), Some(1000.0));
        assert_eq!(parse_sample("x"), None);
    }

    #[test]
    fn time_is_written_in_unix_seconds() {
        let t: Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
        assert_eq!(unix(t), "1767225600.500");
    }
}
