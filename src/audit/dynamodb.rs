//! The DynamoDB audit table (decision 221): the sink appends each record with a conditional
//! `PutItem` (`attribute_not_exists(pk)`), so a retry never stores a record twice, and the reader
//! answers `autoguardrails audit` with `Query` only (read access is enough). It must not decide
//! what to record nor retry on its own (the flusher retries with backoff).
//!
//! Table layout (the templates in `deploy/aws` create it):
//! - `pk` (S, partition key): `quarantine#<namespace>/<name>`, or `principal#<arn>` for the
//!   per-principal copy of a record, or `controller#<cluster>` for records of no Quarantine.
//! - `sk` (S, sort key): `<time, YYYY-MM-DDTHH:MM:SSZ>#<record id>` (id = uid/sequence).
//! - GSI `by-time`: partition `day` (S, `YYYY-MM-DD`), sort `sk`; only the primary copy of a
//!   record carries `day`, so a time-range query sees each record once.
//! - `expiresAt` (N, epoch seconds): the table's TTL attribute (recorded time + retention).
//! - `record` (S): the whole record as JSON; `id`, `event`, `actor`, `policy` for filtering.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::{Appended, AuditError, AuditQuery, AuditReader, AuditRecord, AuditSink, sortable_time};

/// The partition key attribute.
pub const PARTITION_KEY: &str = "pk";
/// The sort key attribute.
pub const SORT_KEY: &str = "sk";
/// The global secondary index for time-range queries.
pub const TIME_INDEX: &str = "by-time";
/// The time index's partition attribute (UTC day).
pub const DAY_ATTRIBUTE: &str = "day";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// The most days one time-range query walks (one `Query` per day).
pub const MAX_QUERY_DAYS: i64 = 400;
/// Puts in flight at once.
const CONCURRENT_PUTS: usize = 16;

/// The DynamoDB sink and reader for one table.
#[derive(Clone, Debug)]
pub struct DynamoDbAudit {
    client: Client,
    table: String,
    retention: Option<SignedDuration>,
}

/// The partition key of a record's primary copy.
pub fn primary_key(record: &AuditRecord) -> String {
    match &record.quarantine {
        Some(q) => quarantine_key(&q.namespace, &q.name),
        None => format!("controller#{}", record.cluster),
    }
}

/// The partition key of a Quarantine's records.
pub fn quarantine_key(namespace: &str, name: &str) -> String {
    format!("quarantine#{namespace}/{name}")
}

/// The partition key of a principal's copies.
pub fn principal_key(arn: &str) -> String {
    format!("principal#{arn}")
}

/// The sort key of a record.
pub fn sort_key(record: &AuditRecord) -> String {
    format!("{}#{}", sortable_time(record.recorded_at), record.id)
}

impl DynamoDbAudit {
    /// Over `table`; `retention` sets the TTL attribute (none: records are kept).
    pub fn new(
        client: Client,
        table: impl Into<String>,
        retention: Option<SignedDuration>,
    ) -> Self {
        DynamoDbAudit {
            client,
            table: table.into(),
            retention,
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Checks that the table exists with the expected key and time index (`DescribeTable`).
    pub async fn check(&self) -> Result<(), AuditError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.error("DescribeTable", &e))?;
        let table = described.table();
        let keys: Vec<&str> = table
            .map(|t| t.key_schema().iter().map(|k| k.attribute_name()).collect())
            .unwrap_or_default();
        let has_index = table.is_some_and(|t| {
            t.global_secondary_indexes()
                .iter()
                .any(|i| i.index_name() == Some(TIME_INDEX))
        });
        if keys != [PARTITION_KEY, SORT_KEY] || !has_index {
            return Err(AuditError::Table {
                operation: "DescribeTable",
                table: self.table.clone(),
                message: format!(
                    "expected key ({PARTITION_KEY}, {SORT_KEY}) and index {TIME_INDEX}; found key {keys:?}, index present: {has_index} (docs/audit.md)"
                ),
            });
        }
        Ok(())
    }

    /// The items of one record: its primary copy and one copy per principal.
    pub fn items(
        &self,
        record: &AuditRecord,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, AuditError> {
        let json = serde_json::to_string(record).map_err(|e| AuditError::Encode(e.to_string()))?;
        let mut base: HashMap<String, AttributeValue> = HashMap::new();
        let s = |v: &str| AttributeValue::S(v.to_string());
        base.insert(SORT_KEY.into(), s(&sort_key(record)));
        base.insert("id".into(), s(&record.id));
        base.insert("event".into(), s(&record.event));
        base.insert("actor".into(), s(&record.actor.name));
        base.insert("recordedAt".into(), s(&sortable_time(record.recorded_at)));
        if let Some(policy) = &record.policy {
            base.insert("policy".into(), s(policy));
        }
        base.insert("record".into(), AttributeValue::S(json));
        if let Some(retention) = self.retention {
            let expires = record.recorded_at.as_second() + retention.as_secs();
            base.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(expires.to_string()));
        }
        let mut primary = base.clone();
        primary.insert(PARTITION_KEY.into(), s(&primary_key(record)));
        let day = record.recorded_at.strftime("%Y-%m-%d").to_string();
        primary.insert(DAY_ATTRIBUTE.into(), s(&day));
        let mut items = vec![primary];
        let mut principals = record.principals.clone();
        principals.sort();
        principals.dedup();
        for arn in principals {
            let mut copy = base.clone();
            copy.insert(PARTITION_KEY.into(), s(&principal_key(&arn)));
            items.push(copy);
        }
        Ok(items)
    }

    /// Puts one item unless an item with its key exists; `Ok(false)` when it existed.
    async fn put_new(&self, item: HashMap<String, AttributeValue>) -> Result<bool, AuditError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    fn error<E, R>(&self, operation: &'static str, error: &SdkError<E, R>) -> AuditError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(error).to_string(),
        };
        AuditError::Table {
            operation,
            table: self.table.clone(),
            message,
        }
    }

    /// Every page of one `Query` on `pk` (or the time index's `day`), `sk` within the range.
    async fn query_partition(
        &self,
        index: Option<&str>,
        key: &str,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let key_attribute = if index.is_some() {
            DAY_ATTRIBUTE
        } else {
            PARTITION_KEY
        };
        // `0` sorts before every time (a key value may not be empty).
        let from = query.since.map(sortable_time).unwrap_or_else(|| "0".into());
        // `~` sorts after every character of a time or id, so `<until>~` bounds the range.
        let to = query.until.map(sortable_time).unwrap_or_else(|| "~".into());
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#k = :k AND #s BETWEEN :from AND :to")
            .expression_attribute_names("#k", key_attribute)
            .expression_attribute_names("#s", SORT_KEY)
            .expression_attribute_values(":k", AttributeValue::S(key.to_string()))
            .expression_attribute_values(":from", AttributeValue::S(from))
            .expression_attribute_values(":to", AttributeValue::S(to));
        if let Some(index) = index {
            request = request.index_name(index);
        }
        let items: Vec<HashMap<String, AttributeValue>> = request
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error("Query", &e))?;
        items
            .iter()
            .map(|item| match item.get("record") {
                Some(AttributeValue::S(json)) => serde_json::from_str(json)
                    .map_err(|e| AuditError::Encode(format!("stored record: {e}"))),
                _ => Err(AuditError::Encode("stored item has no record".into())),
            })
            .collect()
    }
}

#[async_trait]
impl AuditSink for DynamoDbAudit {
    async fn append(&self, records: &[AuditRecord]) -> Result<Appended, AuditError> {
        let mut items = Vec::new();
        for record in records {
            for (i, item) in self.items(record)?.into_iter().enumerate() {
                items.push((i == 0, item));
            }
        }
        let outcomes: Vec<(bool, bool)> = futures::stream::iter(items)
            .map(
                |(primary, item)| async move { self.put_new(item).await.map(|new| (primary, new)) },
            )
            .buffer_unordered(CONCURRENT_PUTS)
            .try_collect()
            .await?;
        let mut done = Appended::default();
        for (_, new) in outcomes.into_iter().filter(|(primary, _)| *primary) {
            if new {
                done.written += 1;
            } else {
                done.duplicates += 1;
            }
        }
        Ok(done)
    }

    fn name(&self) -> &'static str {
        "dynamodb"
    }
}

#[async_trait]
impl AuditReader for DynamoDbAudit {
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let found = if let Some((namespace, name)) = &query.quarantine {
            self.query_partition(None, &quarantine_key(namespace, name), query)
                .await?
        } else if let Some(arn) = &query.principal {
            self.query_partition(None, &principal_key(arn), query)
                .await?
        } else {
            let until = query.until.unwrap_or_else(Timestamp::now);
            let since = query.since.ok_or_else(|| {
                AuditError::Query(
                    "give a quarantine, a principal, or --since (a time range is read day by day)"
                        .into(),
                )
            })?;
            let utc = jiff::tz::TimeZone::UTC;
            let first = since.to_zoned(utc.clone()).date();
            let last = until.to_zoned(utc).date();
            let days = (last - first).get_days() as i64;
            if days > MAX_QUERY_DAYS {
                return Err(AuditError::Query(format!(
                    "the time range spans {days} days; at most {MAX_QUERY_DAYS} without a quarantine or principal"
                )));
            }
            let mut found = Vec::new();
            let mut day = first;
            while day <= last {
                let key = day.strftime("%Y-%m-%d").to_string();
                found.extend(self.query_partition(Some(TIME_INDEX), &key, query).await?);
                day = match day.checked_add(1.day()) {
                    Ok(d) => d,
                    Err(_) => break,
                };
            }
            found
        };
        let kept = found.into_iter().filter(|r| query.matches(r)).collect();
        Ok(query.finish(kept))
    }
}
