//! CloudTrail Event History (`LookupEvents`) and the account's enabled regions
//! (`account:ListRegions`), behind narrow traits with their SDK implementations, and the scan:
//! every region, every page, at most 2 requests per second per region (client side), retries
//! with exponential backoff on throttling and transport errors. A scan that did not complete is
//! an error, never a smaller result. Read-only. It must not decide anything about the records.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudtrail::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtrail::primitives::DateTime;

use super::proposal::SourceReport;
use super::record::Record;
use super::usage::{Origin, Usage};
use crate::aws::ratelimit::RateLimiter;
use crate::aws::sdk::SdkClientFactory;

/// Requests per second per region that LookupEvents allows.
pub const LOOKUP_REQUESTS_PER_SECOND: f64 = 2.0;
/// How far back Event History goes.
pub const EVENT_HISTORY_DAYS: i64 = 90;

/// Why the scan failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudTrailError {
    /// A call failed and will not be retried (access denied, invalid input).
    #[error("CloudTrail {operation} failed in {region}: {code}: {message}")]
    Call {
        /// `LookupEvents` or `ListRegions`.
        operation: &'static str,
        /// Region.
        region: String,
        /// Error code.
        code: String,
        /// Message.
        message: String,
        /// Throttling or transport: worth retrying.
        retryable: bool,
    },
    /// Retries ran out: the scan is incomplete.
    #[error(
        "CloudTrail LookupEvents in {region} did not complete after {attempts} attempts ({last}); the scan is incomplete and no policy is proposed"
    )]
    Incomplete {
        /// Region.
        region: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// An event's `CloudTrailEvent` is not a record.
    #[error("CloudTrail returned an event that is not a record in {region}: {message}")]
    Record {
        /// Region.
        region: String,
        /// Why.
        message: String,
    },
}

impl CloudTrailError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            CloudTrailError::Call { code, .. } if code.contains("AccessDenied") => "AccessDenied",
            CloudTrailError::Call { .. } => "CloudTrail",
            CloudTrailError::Incomplete { .. } => "IncompleteScan",
            CloudTrailError::Record { .. } => "InvalidRecord",
        }
    }
    fn retryable(&self) -> bool {
        matches!(
            self,
            CloudTrailError::Call {
                retryable: true,
                ..
            }
        )
    }
}

/// One page of LookupEvents.
#[derive(Debug, Clone, Default)]
pub struct LookupPage {
    /// The `CloudTrailEvent` JSON of each event.
    pub events: Vec<String>,
    /// The token of the next page.
    pub next_token: Option<String>,
}

/// The CloudTrail calls the analyzer makes.
#[async_trait]
pub trait EventHistory: Send + Sync {
    /// One page of `LookupEvents` in a region for `[start, end)` (epoch seconds).
    async fn lookup(
        &self,
        region: &str,
        start: i64,
        end: i64,
        token: Option<String>,
    ) -> Result<LookupPage, CloudTrailError>;
}

/// The account's enabled regions.
#[async_trait]
pub trait RegionLister: Send + Sync {
    /// Regions enabled for the account (`ENABLED`, `ENABLED_BY_DEFAULT`).
    async fn enabled_regions(&self) -> Result<Vec<String>, CloudTrailError>;
}

fn sdk_error<E, R>(operation: &'static str, region: &str, e: &SdkError<E, R>) -> CloudTrailError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(_) => {
            let code = e.code().unwrap_or("Unknown").to_string();
            let retryable = code.contains("Throttl")
                || code == "TooManyRequestsException"
                || code == "ServiceUnavailable"
                || code == "InternalFailure";
            CloudTrailError::Call {
                operation,
                region: region.to_string(),
                message: e.message().unwrap_or_default().to_string(),
                code,
                retryable,
            }
        }
        _ => CloudTrailError::Call {
            operation,
            region: region.to_string(),
            code: "Transport".into(),
            message: DisplayErrorContext(e).to_string(),
            retryable: true,
        },
    }
}

/// The SDK implementation (one client per region; SDK retries off: the scan retries itself).
pub struct SdkEventHistory {
    factory: Arc<SdkClientFactory>,
    endpoint_url: Option<String>,
}

impl SdkEventHistory {
    /// Over the shared factory; `endpoint_url` overrides CloudTrail's endpoint (tests).
    pub fn new(factory: Arc<SdkClientFactory>, endpoint_url: Option<String>) -> SdkEventHistory {
        SdkEventHistory {
            factory,
            endpoint_url,
        }
    }
    fn client(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        self.factory
            .cloudtrail(region, self.endpoint_url.as_deref())
    }
}

#[async_trait]
impl EventHistory for SdkEventHistory {
    async fn lookup(
        &self,
        region: &str,
        start: i64,
        end: i64,
        token: Option<String>,
    ) -> Result<LookupPage, CloudTrailError> {
        let output = self
            .client(region)
            .lookup_events()
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .max_results(50)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| sdk_error("LookupEvents", region, &e))?;
        Ok(LookupPage {
            events: output
                .events()
                .iter()
                .filter_map(|e| e.cloud_trail_event().map(str::to_string))
                .collect(),
            next_token: output.next_token().map(str::to_string),
        })
    }
}

/// The SDK implementation of [`RegionLister`] (`account:ListRegions`).
pub struct SdkRegionLister {
    client: aws_sdk_account::Client,
}

impl SdkRegionLister {
    /// Over a client from the shared factory (`SdkClientFactory::account`).
    pub fn new(client: aws_sdk_account::Client) -> SdkRegionLister {
        SdkRegionLister { client }
    }
}

#[async_trait]
impl RegionLister for SdkRegionLister {
    async fn enabled_regions(&self) -> Result<Vec<String>, CloudTrailError> {
        use aws_sdk_account::types::RegionOptStatus;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_regions()
                .region_opt_status_contains(RegionOptStatus::Enabled)
                .region_opt_status_contains(RegionOptStatus::EnabledByDefault)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("ListRegions", "global", &e))?;
            out.extend(
                page.regions()
                    .iter()
                    .filter_map(|r| r.region_name().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }
}

/// How the scan paces and retries.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Requests per second per region.
    pub requests_per_second: f64,
    /// Attempts per page (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubled per attempt, capped at 20 s.
    pub backoff: Duration,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            requests_per_second: LOOKUP_REQUESTS_PER_SECOND,
            max_attempts: 6,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Reads every page of every region for the usage's window. `[start, end)` in epoch seconds.
pub async fn scan(
    history: &dyn EventHistory,
    regions: &[String],
    start: i64,
    end: i64,
    settings: &ScanSettings,
    usage: &mut Usage,
    progress: &mut (dyn FnMut(&str, u64, u64) + Send),
) -> Result<SourceReport, CloudTrailError> {
    let mut pages = 0u64;
    for region in regions {
        let limiter = RateLimiter::new(settings.requests_per_second, 1);
        let mut token: Option<String> = None;
        loop {
            let mut attempt = 0u32;
            let page = loop {
                attempt += 1;
                limiter.acquire().await;
                match history.lookup(region, start, end, token.clone()).await {
                    Ok(page) => break page,
                    Err(e) if e.retryable() && attempt < settings.max_attempts.max(1) => {
                        let factor = 2u32.saturating_pow(attempt - 1);
                        let wait = settings
                            .backoff
                            .saturating_mul(factor)
                            .min(Duration::from_secs(20));
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) if e.retryable() => {
                        return Err(CloudTrailError::Incomplete {
                            region: region.clone(),
                            attempts: attempt,
                            last: e.to_string(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            };
            pages += 1;
            for text in &page.events {
                let record = Record::parse(text).map_err(|e| CloudTrailError::Record {
                    region: region.clone(),
                    message: e.to_string(),
                })?;
                usage.add_record(&record, Origin::LookupEvents);
            }
            progress(region, pages, usage.counters.events_read);
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
    }
    Ok(SourceReport {
        origin: Origin::LookupEvents,
        detail: "CloudTrail Event History (LookupEvents)".into(),
        regions: regions.to_vec(),
        units_read: pages,
    })
}
