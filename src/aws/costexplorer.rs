//! Cost Explorer, narrowed to what the anomaly poller uses: `GetAnomalies`, one page per call
//! (every call costs USD 0.01, so paging is the caller's explicit decision). The SDK
//! implementation maps SDK types and errors to plain data; it makes no decisions and never
//! retries on its own beyond the SDK's configured retry policy.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_costexplorer::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_costexplorer::types::{AnomalyDateInterval, NumericOperator, TotalImpactFilter};

/// The operation label used in `cost_explorer_requests_total`.
pub const GET_ANOMALIES: &str = "GetAnomalies";

/// Why a Cost Explorer request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CostExplorerError {
    /// Throttled (`LimitExceededException`, `ThrottlingException`).
    #[error("Cost Explorer throttled the request: {0}")]
    Throttled(String),
    /// Not allowed (`AccessDeniedException`, `UnauthorizedOperation`).
    #[error("Cost Explorer denied the request: {0}")]
    AccessDenied(String),
    /// The request was invalid (`ValidationException`, `InvalidNextTokenException`, unknown monitor).
    #[error("Cost Explorer rejected the request ({code}): {message}")]
    Invalid {
        /// The AWS error code.
        code: String,
        /// The message.
        message: String,
    },
    /// Any other service error.
    #[error("Cost Explorer failed ({code}): {message}")]
    Service {
        /// The AWS error code.
        code: String,
        /// The message.
        message: String,
    },
    /// The request did not get an answer (DNS, TLS, timeout, credentials).
    #[error("Cost Explorer request failed: {0}")]
    Transport(String),
    /// The request could not be built.
    #[error("invalid Cost Explorer request: {0}")]
    Request(String),
}

impl CostExplorerError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            CostExplorerError::Throttled(_) => "throttled",
            CostExplorerError::AccessDenied(_) => "access_denied",
            CostExplorerError::Invalid { .. } => "invalid",
            CostExplorerError::Service { .. } => "service",
            CostExplorerError::Transport(_) => "transport",
            CostExplorerError::Request(_) => "request",
        }
    }
}

/// One `GetAnomalies` page request.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyQuery {
    /// The anomaly monitor.
    pub monitor_arn: String,
    /// First day (`YYYY-MM-DD`, inclusive).
    pub start_date: String,
    /// Last day (`YYYY-MM-DD`), if bounded.
    pub end_date: Option<String>,
    /// Only anomalies whose total impact is at least this (USD).
    pub min_total_impact: Option<f64>,
    /// Page size.
    pub max_results: Option<i32>,
    /// The token from the previous page.
    pub next_page_token: Option<String>,
}

/// A root cause of an anomaly.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RootCause {
    /// The service.
    pub service: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The linked account id.
    pub linked_account: Option<String>,
    /// The usage type.
    pub usage_type: Option<String>,
    /// Its contribution to the impact (USD).
    pub contribution: Option<f64>,
}

/// An anomaly as `GetAnomalies` returns it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Anomaly {
    /// The anomaly id.
    pub anomaly_id: String,
    /// The monitor that found it.
    pub monitor_arn: String,
    /// First day of the anomaly.
    pub start_date: Option<String>,
    /// Last day of the anomaly (absent while it is ongoing).
    pub end_date: Option<String>,
    /// The dimension value (e.g. the service).
    pub dimension_value: Option<String>,
    /// Total impact (USD).
    pub total_impact: f64,
    /// Largest daily impact (USD).
    pub max_impact: f64,
    /// Total actual spend, when given.
    pub total_actual_spend: Option<f64>,
    /// Total expected spend, when given.
    pub total_expected_spend: Option<f64>,
    /// Root causes.
    pub root_causes: Vec<RootCause>,
    /// Feedback a person gave (`YES`, `NO`, `PLANNED_ACTIVITY`), if any.
    pub feedback: Option<String>,
}

/// One page of anomalies.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AnomalyPage {
    /// The anomalies.
    pub anomalies: Vec<Anomaly>,
    /// The token for the next page, when there is one.
    pub next_page_token: Option<String>,
}

/// The Cost Explorer calls the poller makes.
#[async_trait]
pub trait CostExplorer: Send + Sync {
    /// `GetAnomalies`: one page (one billed request).
    async fn get_anomalies(&self, query: &AnomalyQuery) -> Result<AnomalyPage, CostExplorerError>;
}

/// Cost Explorer over the official SDK.
pub struct SdkCostExplorer {
    client: aws_sdk_costexplorer::Client,
}

impl SdkCostExplorer {
    /// A client from a loaded SDK configuration (see `aws::sdk::load_base_config`; Cost
    /// Explorer's endpoint is in `us-east-1`).
    pub fn new(config: &SdkConfig) -> Self {
        SdkCostExplorer {
            client: aws_sdk_costexplorer::Client::new(config),
        }
    }
    /// Over a client from the one client factory (`SdkClientFactory::cost_explorer`).
    pub fn from_client(client: aws_sdk_costexplorer::Client) -> Self {
        SdkCostExplorer { client }
    }
}

fn map_error<E, R>(error: SdkError<E, R>) -> CostExplorerError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(_) => {
            let code = error.code().unwrap_or("Unknown").to_string();
            let message = error.message().unwrap_or_default().to_string();
            match code.as_str() {
                "LimitExceededException" | "ThrottlingException" | "TooManyRequestsException" => {
                    CostExplorerError::Throttled(message)
                }
                "AccessDeniedException" | "UnauthorizedOperation" | "AccessDenied" => {
                    CostExplorerError::AccessDenied(message)
                }
                "ValidationException"
                | "InvalidNextTokenException"
                | "UnknownMonitorException"
                | "DataUnavailableException" => CostExplorerError::Invalid { code, message },
                _ => CostExplorerError::Service { code, message },
            }
        }
        _ => CostExplorerError::Transport(DisplayErrorContext(&error).to_string()),
    }
}

#[async_trait]
impl CostExplorer for SdkCostExplorer {
    async fn get_anomalies(&self, query: &AnomalyQuery) -> Result<AnomalyPage, CostExplorerError> {
        let interval = AnomalyDateInterval::builder()
            .start_date(&query.start_date)
            .set_end_date(query.end_date.clone())
            .build()
            .map_err(|e| CostExplorerError::Request(e.to_string()))?;
        let mut request = self
            .client
            .get_anomalies()
            .monitor_arn(&query.monitor_arn)
            .date_interval(interval)
            .set_max_results(query.max_results)
            .set_next_page_token(query.next_page_token.clone());
        if let Some(minimum) = query.min_total_impact {
            let filter = TotalImpactFilter::builder()
                .numeric_operator(NumericOperator::GreaterThanOrEqual)
                .start_value(minimum)
                .build()
                .map_err(|e| CostExplorerError::Request(e.to_string()))?;
            request = request.total_impact(filter);
        }
        let output = request.send().await.map_err(map_error)?;
        let anomalies = output
            .anomalies()
            .iter()
            .map(|anomaly| {
                let impact = anomaly.impact();
                Anomaly {
                    anomaly_id: anomaly.anomaly_id().to_string(),
                    monitor_arn: anomaly.monitor_arn().to_string(),
                    start_date: anomaly.anomaly_start_date().map(str::to_string),
                    end_date: anomaly.anomaly_end_date().map(str::to_string),
                    dimension_value: anomaly.dimension_value().map(str::to_string),
                    total_impact: impact.map(|i| i.total_impact()).unwrap_or(0.0),
                    max_impact: impact.map(|i| i.max_impact()).unwrap_or(0.0),
                    total_actual_spend: impact.and_then(|i| i.total_actual_spend()),
                    total_expected_spend: impact.and_then(|i| i.total_expected_spend()),
                    root_causes: anomaly
                        .root_causes()
                        .iter()
                        .map(|cause| RootCause {
                            service: cause.service().map(str::to_string),
                            region: cause.region().map(str::to_string),
                            linked_account: cause.linked_account().map(str::to_string),
                            usage_type: cause.usage_type().map(str::to_string),
                            contribution: cause.impact().map(|i| i.contribution()),
                        })
                        .collect(),
                    feedback: anomaly.feedback().map(|f| f.as_str().to_string()),
                }
            })
            .collect();
        Ok(AnomalyPage {
            anomalies,
            next_page_token: output
                .next_page_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }
}
