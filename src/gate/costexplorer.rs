//! Observed daily cost from Cost Explorer `GetCostAndUsage` (DAILY, one metric, filtered by
//! service, linked account and tags), behind the narrow `CostSource` trait. Days AWS flags
//! `Estimated` stay flagged. It builds its client from the shared `aws::sdk` base configuration;
//! it makes no cost judgement and never fills a missing day with zero.

use async_trait::async_trait;
use aws_sdk_costexplorer::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_costexplorer::types::{
    DateInterval, Dimension, DimensionValues, Expression, Granularity, TagValues,
};
use jiff::civil::Date;

use super::config::{CostExplorerSettings, CostFilter};
use super::cost::DailyCost;
use crate::aws::sdk::{SdkClientFactory, SdkSettings};

/// At most this many pages per request (each page costs USD 0.01).
pub const MAX_PAGES: usize = 10;

/// Why daily cost could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CostSourceError {
    /// AWS answered with an error.
    #[error("Cost Explorer GetCostAndUsage failed ({code}): {message}")]
    Service {
        /// The AWS error code.
        code: String,
        /// The message.
        message: String,
    },
    /// No answer (DNS, TLS, timeout, credentials).
    #[error("Cost Explorer GetCostAndUsage request failed: {0}")]
    Transport(String),
    /// The request could not be built.
    #[error("invalid Cost Explorer request: {0}")]
    Request(String),
    /// The answer lacks a field or has an unreadable amount.
    #[error("unexpected Cost Explorer answer: {0}")]
    Malformed(String),
}

impl CostSourceError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            CostSourceError::Service { .. } => "service",
            CostSourceError::Transport(_) => "transport",
            CostSourceError::Request(_) => "request",
            CostSourceError::Malformed(_) => "malformed",
        }
    }
}

/// The narrow interface: daily cost for `[start, end)`.
#[async_trait]
pub trait CostSource: Send + Sync {
    /// Daily records for the filter, `start` inclusive, `end` exclusive.
    async fn daily_costs(
        &self,
        filter: &CostFilter,
        start: Date,
        end: Date,
    ) -> Result<Vec<DailyCost>, CostSourceError>;
}

/// The SDK implementation.
pub struct CostExplorerSource {
    client: aws_sdk_costexplorer::Client,
    metric: String,
}

impl CostExplorerSource {
    /// Builds the client from the shared base SDK configuration.
    pub async fn new(
        settings: &CostExplorerSettings,
        static_credentials: Option<(String, String)>,
    ) -> CostExplorerSource {
        let sdk = SdkSettings {
            endpoint_url: settings.endpoint_url.clone(),
            region: settings.region.clone(),
            max_attempts: settings.max_attempts,
            rate_limit: None,
            static_credentials,
        };
        CostExplorerSource {
            client: SdkClientFactory::ambient(sdk).await.cost_explorer(),
            metric: settings.metric.clone(),
        }
    }
}

fn map_err<E, R>(e: SdkError<E, R>) -> CostSourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(_) => CostSourceError::Service {
            code: e.code().unwrap_or("Unknown").to_string(),
            message: e.message().unwrap_or_default().to_string(),
        },
        _ => CostSourceError::Transport(DisplayErrorContext(&e).to_string()),
    }
}

/// The filter expression, or `None` for no filter.
pub fn expression(filter: &CostFilter) -> Result<Option<Expression>, CostSourceError> {
    let mut parts = Vec::new();
    let dimension = |key: Dimension, values: &[String]| -> Result<Expression, CostSourceError> {
        Ok(Expression::builder()
            .dimensions(
                DimensionValues::builder()
                    .key(key)
                    .set_values(Some(values.to_vec()))
                    .build(),
            )
            .build())
    };
    if !filter.services.is_empty() {
        parts.push(dimension(Dimension::Service, &filter.services)?);
    }
    if !filter.linked_accounts.is_empty() {
        parts.push(dimension(
            Dimension::LinkedAccount,
            &filter.linked_accounts,
        )?);
    }
    for (key, values) in &filter.tags {
        parts.push(
            Expression::builder()
                .tags(
                    TagValues::builder()
                        .key(key)
                        .set_values(Some(values.clone()))
                        .build(),
                )
                .build(),
        );
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Expression::builder().set_and(Some(parts)).build()),
    })
}

#[async_trait]
impl CostSource for CostExplorerSource {
    async fn daily_costs(
        &self,
        filter: &CostFilter,
        start: Date,
        end: Date,
    ) -> Result<Vec<DailyCost>, CostSourceError> {
        let interval = DateInterval::builder()
            .start(start.to_string())
            .end(end.to_string())
            .build()
            .map_err(|e| CostSourceError::Request(e.to_string()))?;
        let filter = expression(filter)?;
        let mut days = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let answer = self
                .client
                .get_cost_and_usage()
                .time_period(interval.clone())
                .granularity(Granularity::Daily)
                .metrics(&self.metric)
                .set_filter(filter.clone())
                .set_next_page_token(token.clone())
                .send()
                .await
                .map_err(map_err)?;
            for result in answer.results_by_time() {
                let day = result.time_period().map(|p| p.start()).ok_or_else(|| {
                    CostSourceError::Malformed("a result without TimePeriod".into())
                })?;
                let date: Date = day.parse().map_err(|e| {
                    CostSourceError::Malformed(format!("TimePeriod.Start {day:?}: {e}"))
                })?;
                let amount = result
                    .total()
                    .and_then(|t| t.get(&self.metric))
                    .and_then(|m| m.amount())
                    .ok_or_else(|| {
                        CostSourceError::Malformed(format!(
                            "{date}: no Total.{} amount",
                            self.metric
                        ))
                    })?;
                let amount: f64 = amount.parse().map_err(|e| {
                    CostSourceError::Malformed(format!("{date}: amount {amount:?}: {e}"))
                })?;
                days.push(DailyCost {
                    date,
                    amount,
                    estimated: result.estimated(),
                });
            }
            token = answer.next_page_token().map(str::to_string);
            if token.is_none() {
                return Ok(days);
            }
        }
        Err(CostSourceError::Malformed(format!(
            "more than {MAX_PAGES} pages for one request"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_one_expression_and_all_dimensions_must_match() {
        assert_eq!(expression(&CostFilter::default()).unwrap(), None);
        let only = CostFilter {
            services: vec!["Amazon EC2".into()],
            ..CostFilter::default()
        };
        let e = expression(&only).unwrap().unwrap();
        let d = e.dimensions().unwrap();
        assert_eq!(d.key(), Some(&Dimension::Service));
        assert_eq!(d.values(), ["Amazon EC2".to_string()]);
        let all = CostFilter {
            services: vec!["Amazon EC2".into()],
            linked_accounts: vec!["111122223333".into()],
            tags: [("team".to_string(), vec!["payments".to_string()])].into(),
        };
        let e = expression(&all).unwrap().unwrap();
        let and = e.and();
        assert_eq!(and.len(), 3);
        assert_eq!(
            and[1].dimensions().unwrap().key(),
            Some(&Dimension::LinkedAccount)
        );
        assert_eq!(and[2].tags().unwrap().key(), Some("team"));
    }
}
