//! `autoguardrails audit`: reads audit records back from the DynamoDB table (with only read
//! access: `Query`) or from a JSON-lines file, filtered by quarantine, principal, policy, actor
//! and time range, printed as a table or as JSON lines. It must not write anything.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use jiff::Timestamp;

use super::{EXIT_INVALID_INPUT, EXIT_OK};
use crate::audit::dynamodb::DynamoDbAudit;
use crate::audit::{AuditQuery, AuditReader, AuditRecord};
use crate::aws::sdk::{SdkClientFactory, SdkSettings};

/// Exit status: the store could not be read.
pub const EXIT_READ_FAILED: u8 = 1;

/// How records are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// One line per record, aligned columns.
    Table,
    /// One JSON object per line (the record as stored).
    Json,
}

/// Flags of `autoguardrails audit`.
#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// The DynamoDB audit table.
    #[arg(long, env = "AGR_AUDIT_TABLE", conflicts_with = "file")]
    pub table: Option<String>,
    /// A JSON-lines audit file instead of the table.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The table's region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// An endpoint URL for the table (a local DynamoDB).
    #[arg(long, env = "AGR_AUDIT_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Only this Quarantine, as `namespace/name`.
    #[arg(long)]
    pub quarantine: Option<String>,
    /// Only records naming this principal ARN.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only this GuardrailPolicy.
    #[arg(long)]
    pub policy: Option<String>,
    /// Only this actor (e.g. the approver).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only records at or after this RFC 3339 instant.
    #[arg(long)]
    pub since: Option<String>,
    /// Only records before this RFC 3339 instant.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records (the newest).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Table or JSON lines.
    #[arg(long, short = 'o', value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
}

/// Runs the command; its own runtime (the other commands need none).
pub fn run(args: &AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let query = match query_of(args) {
        Ok(q) => q,
        Err(message) => {
            let _ = writeln!(err, "autoguardrails audit: {message}");
            return EXIT_INVALID_INPUT;
        }
    };
    let found = match (&args.table, &args.file) {
        (_, Some(file)) => crate::audit::jsonl::read_records(file).map(|(records, unreadable)| {
            if !unreadable.is_empty() {
                let _ = writeln!(
                    err,
                    "autoguardrails audit: {} unreadable lines in {} (first: line {})",
                    unreadable.len(),
                    file.display(),
                    unreadable[0]
                );
            }
            let kept = records.into_iter().filter(|r| query.matches(r)).collect();
            query.finish(kept)
        }),
        (Some(table), None) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = writeln!(err, "autoguardrails audit: {e}");
                    return EXIT_READ_FAILED;
                }
            };
            runtime.block_on(async {
                let settings = SdkSettings {
                    region: args.region.clone(),
                    rate_limit: None,
                    ..SdkSettings::default()
                };
                let factory = SdkClientFactory::ambient(settings).await;
                let client = factory.dynamodb(Some(&args.region), args.endpoint_url.as_deref());
                DynamoDbAudit::new(client, table.clone(), None)
                    .query(&query)
                    .await
            })
        }
        (None, None) => {
            let _ = writeln!(
                err,
                "autoguardrails audit: give --table (or AGR_AUDIT_TABLE) or --file"
            );
            return EXIT_INVALID_INPUT;
        }
    };
    let records = match found {
        Ok(r) => r,
        Err(crate::audit::AuditError::Query(message)) => {
            let _ = writeln!(err, "autoguardrails audit: {message}");
            return EXIT_INVALID_INPUT;
        }
        Err(e) => {
            let _ = writeln!(err, "autoguardrails audit: {e}");
            return EXIT_READ_FAILED;
        }
    };
    let printed = match args.output {
        AuditOutput::Json => records.iter().try_for_each(|r| {
            let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")
        }),
        AuditOutput::Table => write!(out, "{}", table(&records)),
    };
    match printed {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "autoguardrails audit: {e}");
            EXIT_READ_FAILED
        }
    }
}

/// The query the flags ask for.
pub fn query_of(args: &AuditArgs) -> Result<AuditQuery, String> {
    let instant = |flag: &str, text: &Option<String>| -> Result<Option<Timestamp>, String> {
        text.as_ref()
            .map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|e| format!("--{flag} {t:?} is not an RFC 3339 instant: {e}"))
            })
            .transpose()
    };
    let quarantine = match &args.quarantine {
        None => None,
        Some(text) => match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                Some((ns.to_string(), name.to_string()))
            }
            _ => return Err(format!("--quarantine {text:?} must be namespace/name")),
        },
    };
    Ok(AuditQuery {
        quarantine,
        principal: args.principal.clone(),
        policy: args.policy.clone(),
        actor: args.actor.clone(),
        since: instant("since", &args.since)?,
        until: instant("until", &args.until)?,
        limit: args.limit,
    })
}

/// Records as aligned columns: time, quarantine, event, actor (channel, verified), principals,
/// message.
pub fn table(records: &[AuditRecord]) -> String {
    let header = [
        "TIME",
        "QUARANTINE",
        "POLICY",
        "EVENT",
        "ACTOR",
        "PRINCIPALS",
        "MESSAGE",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let actor = format!(
                "{} ({}{})",
                r.actor.name,
                r.actor.channel,
                if r.actor.verified { ", verified" } else { "" }
            );
            [
                crate::audit::sortable_time(r.recorded_at),
                r.quarantine
                    .as_ref()
                    .map(|q| format!("{}/{}", q.namespace, q.name))
                    .unwrap_or_else(|| "-".into()),
                r.policy.clone().unwrap_or_else(|| "-".into()),
                r.event.clone(),
                actor,
                r.principals.join(","),
                r.message.replace('\n', " "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    text
}
