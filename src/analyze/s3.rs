//! Trail log files in S3 (`[prefix/]AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`), read
//! through a narrow trait with exactly the two S3 calls used (ListObjectsV2, GetObject) and its
//! SDK implementation; objects are streamed chunk by chunk through gzip into the usage, one
//! document at a time. Read-only. It must not decide anything about the records.

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};

use super::files::{Document, FilesError, is_log_file};
use super::proposal::SourceReport;
use super::usage::{Origin, Usage};

/// Why the log files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// An S3 call failed.
    #[error("failed to {operation} s3://{bucket}/{key}: {message}")]
    Call {
        /// `list` or `get`.
        operation: &'static str,
        /// Bucket.
        bucket: String,
        /// Key or prefix.
        key: String,
        /// Why.
        message: String,
    },
    /// An object is not a valid log file.
    #[error(transparent)]
    File(#[from] FilesError),
    /// No log file in the window.
    #[error("no CloudTrail log files under s3://{bucket}/{prefix} for the window")]
    Empty {
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: String,
    },
}

impl S3Error {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            S3Error::Call { .. } => "S3",
            S3Error::File(e) => e.category(),
            S3Error::Empty { .. } => "NoLogFiles",
        }
    }
}

/// The S3 calls the analyzer makes.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Keys under a prefix (all pages).
    async fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error>;
    /// Common prefixes one level below `prefix` (delimiter `/`).
    async fn list_prefixes(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error>;
    /// Streams an object's bytes into `sink`, chunk by chunk.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        sink: &mut (dyn for<'c> FnMut(&'c [u8]) -> Result<(), FilesError> + Send),
    ) -> Result<(), S3Error>;
}

/// The SDK implementation.
pub struct SdkLogStore {
    client: aws_sdk_s3::Client,
}

impl SdkLogStore {
    /// Over a client from the shared factory (`SdkClientFactory::s3`).
    pub fn new(client: aws_sdk_s3::Client) -> SdkLogStore {
        SdkLogStore { client }
    }
}

fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<E>,
) -> S3Error {
    S3Error::Call {
        operation,
        bucket: bucket.to_string(),
        key: key.to_string(),
        message: match e.code() {
            Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
            None => DisplayErrorContext(e).to_string(),
        },
    }
}

#[async_trait]
impl LogStore for SdkLogStore {
    async fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| call_error("list", bucket, prefix, &e))?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn list_prefixes(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| call_error("list", bucket, prefix, &e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        sink: &mut (dyn for<'c> FnMut(&'c [u8]) -> Result<(), FilesError> + Send),
    ) -> Result<(), S3Error> {
        let mut object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| call_error("get", bucket, key, &e))?;
        while let Some(chunk) = object.body.try_next().await.map_err(|e| S3Error::Call {
            operation: "get",
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: e.to_string(),
        })? {
            sink(&chunk)?;
        }
        Ok(())
    }
}

/// The day prefixes `YYYY/MM/DD/` of a window (start and end as `YYYY-MM-DD...`).
pub fn day_prefixes(start: &str, end: &str) -> Vec<String> {
    let (Ok(start), Ok(end)) = (
        start.parse::<jiff::Timestamp>(),
        end.parse::<jiff::Timestamp>(),
    ) else {
        return Vec::new();
    };
    let mut day = start.to_zoned(jiff::tz::TimeZone::UTC).date();
    let last = end.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut out = Vec::new();
    while day <= last {
        out.push(day.strftime("%Y/%m/%d/").to_string());
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    out
}

/// Reads the account's trail log files for the window into `usage`. `regions` empty means every
/// region directory found. Any failed call or invalid object is an error.
pub async fn read_bucket(
    store: &dyn LogStore,
    bucket: &str,
    prefix: &str,
    account: &str,
    regions: &[String],
    usage: &mut Usage,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<SourceReport, S3Error> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let base = format!("{prefix}AWSLogs/{account}/CloudTrail/");
    let regions: Vec<String> = if regions.is_empty() {
        store
            .list_prefixes(bucket, &base)
            .await?
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix(&base)
                    .map(|r| r.trim_end_matches('/').to_string())
            })
            .collect()
    } else {
        regions.to_vec()
    };
    let window = usage.window().cloned();
    let days = match &window {
        Some(w) => day_prefixes(&w.start, &w.end),
        None => Vec::new(),
    };
    let mut buffer = Vec::new();
    let mut files = 0u64;
    for region in &regions {
        for day in &days {
            let day_prefix = format!("{base}{region}/{day}");
            let mut keys = store.list_keys(bucket, &day_prefix).await?;
            keys.sort();
            for key in keys.into_iter().filter(|k| is_log_file(k)) {
                let mut document = Document::new(&key, key.ends_with(".gz"), &mut buffer);
                store
                    .get(bucket, &key, &mut |chunk| document.feed(chunk))
                    .await?;
                document.finish(usage, Origin::S3)?;
                files += 1;
                progress(files, usage.counters.events_read);
            }
        }
    }
    if files == 0 {
        return Err(S3Error::Empty {
            bucket: bucket.to_string(),
            prefix: base,
        });
    }
    Ok(SourceReport {
        origin: Origin::S3,
        detail: format!("s3://{bucket}/{base}"),
        regions,
        units_read: files,
    })
}
