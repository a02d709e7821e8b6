//! An Athena table over trail logs (`--athena-workgroup`, `--athena-table`): the aggregation is
//! pushed down (GROUP BY caller, source, event, error, region, resource) so only distinct rows come
//! back, through a narrow trait with the three Athena calls used and its SDK implementation.
//! Read-only (a query writes only its result file to the workgroup's output location). It must
//! not decide anything about the rows beyond turning them into [`AggregateRow`]s.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_athena::error::{DisplayErrorContext, ProvideErrorMetadata};

use super::proposal::SourceReport;
use super::usage::{AggregateRow, Origin, Usage};
use crate::principal::PrincipalArn;

/// Columns of the pushed-down query, in order.
pub const COLUMNS: [&str; 12] = [
    "caller",
    "eventsource",
    "eventname",
    "errorcode",
    "awsregion",
    "resource",
    "calls",
    "first_seen",
    "last_seen",
    "sample_event_id",
    "passed_role",
    "kms_key",
];

/// Why the Athena scan failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AthenaError {
    /// A call failed.
    #[error("Athena {operation} failed: {message}")]
    Call {
        /// The call.
        operation: &'static str,
        /// Why.
        message: String,
    },
    /// The query ended in FAILED or CANCELLED.
    #[error("Athena query {id} ended {state}: {reason}")]
    Query {
        /// Query execution id.
        id: String,
        /// Final state.
        state: String,
        /// Athena's reason.
        reason: String,
    },
    /// The query did not finish in time.
    #[error("Athena query {id} did not finish within {seconds} s")]
    Timeout {
        /// Query execution id.
        id: String,
        /// Seconds waited.
        seconds: u64,
    },
    /// Invalid table name or malformed row.
    #[error("invalid Athena input: {0}")]
    Invalid(String),
}

impl AthenaError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            AthenaError::Call { .. } => "Athena",
            AthenaError::Query { .. } => "AthenaQueryFailed",
            AthenaError::Timeout { .. } => "AthenaTimeout",
            AthenaError::Invalid(_) => "Invalid",
        }
    }
}

/// State of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryState {
    /// QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED.
    pub state: String,
    /// Athena's reason for FAILED/CANCELLED.
    pub reason: String,
}

/// A page of results.
#[derive(Debug, Clone, Default)]
pub struct ResultPage {
    /// Rows (the first row of the first page is the header).
    pub rows: Vec<Vec<String>>,
    /// Next page token.
    pub next_token: Option<String>,
}

/// The Athena calls the analyzer makes.
#[async_trait]
pub trait AthenaQueries: Send + Sync {
    /// StartQueryExecution; returns the execution id.
    async fn start(
        &self,
        query: &str,
        workgroup: &str,
        output_location: Option<&str>,
    ) -> Result<String, AthenaError>;
    /// GetQueryExecution.
    async fn state(&self, id: &str) -> Result<QueryState, AthenaError>;
    /// GetQueryResults.
    async fn results(&self, id: &str, token: Option<String>) -> Result<ResultPage, AthenaError>;
}

/// The SDK implementation.
pub struct SdkAthena {
    client: aws_sdk_athena::Client,
}

impl SdkAthena {
    /// Over a client from the shared factory (`SdkClientFactory::athena`).
    pub fn new(client: aws_sdk_athena::Client) -> SdkAthena {
        SdkAthena { client }
    }
}

fn call<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    e: &aws_sdk_athena::error::SdkError<E>,
) -> AthenaError {
    AthenaError::Call {
        operation,
        message: match e.code() {
            Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
            None => DisplayErrorContext(e).to_string(),
        },
    }
}

#[async_trait]
impl AthenaQueries for SdkAthena {
    async fn start(
        &self,
        query: &str,
        workgroup: &str,
        output_location: Option<&str>,
    ) -> Result<String, AthenaError> {
        let mut request = self
            .client
            .start_query_execution()
            .query_string(query)
            .work_group(workgroup);
        if let Some(location) = output_location {
            request = request.result_configuration(
                aws_sdk_athena::types::ResultConfiguration::builder()
                    .output_location(location)
                    .build(),
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| call("StartQueryExecution", &e))?;
        out.query_execution_id()
            .map(str::to_string)
            .ok_or_else(|| AthenaError::Invalid("no query execution id".into()))
    }

    async fn state(&self, id: &str) -> Result<QueryState, AthenaError> {
        let out = self
            .client
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| call("GetQueryExecution", &e))?;
        let status = out.query_execution().and_then(|q| q.status());
        Ok(QueryState {
            state: status
                .and_then(|s| s.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            reason: status
                .and_then(|s| s.state_change_reason())
                .unwrap_or_default()
                .to_string(),
        })
    }

    async fn results(&self, id: &str, token: Option<String>) -> Result<ResultPage, AthenaError> {
        let out = self
            .client
            .get_query_results()
            .query_execution_id(id)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| call("GetQueryResults", &e))?;
        let rows = out
            .result_set()
            .map(|r| {
                r.rows()
                    .iter()
                    .map(|row| {
                        row.data()
                            .iter()
                            .map(|d| d.var_char_value().unwrap_or_default().to_string())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ResultPage {
            rows,
            next_token: out.next_token().map(str::to_string),
        })
    }
}

/// Whether a table name is safe to put in SQL (`db.table`, letters, digits, `_`).
pub fn valid_table(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// The pushed-down aggregation for one principal and window.
pub fn query(table: &str, principal: &PrincipalArn, start: &str, end: &str) -> String {
    // The name filter is a coarse pushdown; exact matching (IAM's rule) happens on each row.
    let name = principal.name().to_ascii_lowercase();
    let account = principal.account_id();
    format!(
        "SELECT COALESCE(useridentity.sessioncontext.sessionissuer.arn, useridentity.arn) AS caller, \
eventsource, eventname, COALESCE(errorcode, '') AS errorcode, awsregion, \
COALESCE(element_at(resources, 1).arn, '') AS resource, \
COUNT(*) AS calls, MIN(eventtime) AS first_seen, MAX(eventtime) AS last_seen, MIN(eventid) AS sample_event_id, \
COALESCE(json_extract_scalar(requestparameters, '$.role'), json_extract_scalar(requestparameters, '$.roleArn'), '') AS passed_role, \
COALESCE(json_extract_scalar(responseelements, '$[\"x-amz-server-side-encryption-aws-kms-key-id\"]'), '') AS kms_key \
FROM {table} \
WHERE eventtime >= '{start}' AND eventtime < '{end}' \
AND useridentity.accountid = '{account}' \
AND (lower(useridentity.sessioncontext.sessionissuer.arn) LIKE '%/{name}' OR lower(useridentity.arn) LIKE '%/{name}' \
OR lower(useridentity.arn) LIKE '%/{name}/%') \
GROUP BY 1, 2, 3, 4, 5, 6, 11, 12"
    )
}

/// How long to wait for a query.
#[derive(Debug, Clone)]
pub struct AthenaSettings {
    /// Poll interval (doubled up to 5 s).
    pub poll: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for AthenaSettings {
    fn default() -> Self {
        AthenaSettings {
            poll: Duration::from_millis(500),
            timeout: Duration::from_secs(600),
        }
    }
}

fn row(cells: &[String]) -> Result<AggregateRow, AthenaError> {
    if cells.len() < COLUMNS.len() {
        return Err(AthenaError::Invalid(format!(
            "a result row has {} columns, expected {}",
            cells.len(),
            COLUMNS.len()
        )));
    }
    let time = |s: &str| s.replace(' ', "T").trim_end_matches(".000").to_string();
    Ok(AggregateRow {
        caller_arn: cells[0].clone(),
        source: cells[1].clone(),
        event: cells[2].clone(),
        error_code: cells[3].clone(),
        region: cells[4].clone(),
        resource: cells[5].clone(),
        count: cells[6]
            .parse()
            .map_err(|_| AthenaError::Invalid(format!("calls {:?} is not a number", cells[6])))?,
        first_seen: time(&cells[7]),
        last_seen: time(&cells[8]),
        sample_event_id: cells[9].clone(),
        passed_role: cells[10].clone(),
        kms_key: cells[11].clone(),
    })
}

/// Runs the aggregation and adds its rows to `usage`.
pub async fn scan(
    athena: &dyn AthenaQueries,
    workgroup: &str,
    table: &str,
    output_location: Option<&str>,
    settings: &AthenaSettings,
    usage: &mut Usage,
) -> Result<SourceReport, AthenaError> {
    if !valid_table(table) {
        return Err(AthenaError::Invalid(format!(
            "table name {table:?} must be letters, digits, '_' and '.'"
        )));
    }
    let Some(window) = usage.window().cloned() else {
        return Err(AthenaError::Invalid("Athena needs a window".into()));
    };
    let sql = query(table, usage.principal(), &window.start, &window.end);
    let id = athena.start(&sql, workgroup, output_location).await?;
    let started = std::time::Instant::now();
    let mut poll = settings.poll;
    loop {
        let state = athena.state(&id).await?;
        match state.state.as_str() {
            "SUCCEEDED" => break,
            "FAILED" | "CANCELLED" => {
                return Err(AthenaError::Query {
                    id,
                    state: state.state,
                    reason: state.reason,
                });
            }
            _ => {}
        }
        if started.elapsed() > settings.timeout {
            return Err(AthenaError::Timeout {
                id,
                seconds: settings.timeout.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_secs(5));
    }
    let mut token = None;
    let mut first = true;
    let mut rows = 0u64;
    loop {
        let page = athena.results(&id, token).await?;
        for (i, cells) in page.rows.iter().enumerate() {
            if first && i == 0 && cells.first().map(String::as_str) == Some("caller") {
                continue;
            }
            usage.add_row(&row(cells)?, Origin::Athena);
            rows += 1;
        }
        first = false;
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    Ok(SourceReport {
        origin: Origin::Athena,
        detail: format!("athena workgroup {workgroup}, table {table}"),
        regions: usage.counters.regions_seen.iter().cloned().collect(),
        units_read: rows,
    })
}
