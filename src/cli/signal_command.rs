//! `autoguardrails signal parse|verify`: lets an operator see what a payload normalises to and
//! why an SNS message would be rejected, with the same parser and verifier the endpoints use.
//! It reads files and (for `verify` without `--certificate`) fetches the certificate over the
//! validated HTTPS URL; it never contacts anything else and never submits a signal.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::{EXIT_EXPECTATION_FAILED, EXIT_OK, Output};
use crate::controller::endpoints::certs::{CertificateFetcher, HttpsCertificates, HttpsSettings};
use crate::controller::signal::CostSignal;
use crate::controller::signal::parse::{self, Format, Hint};
use crate::controller::signal::sns::{Envelope, MessageType};

/// Largest file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// `signal` subcommands.
#[derive(Subcommand, Debug)]
pub enum SignalCommand {
    /// Parse an SNS envelope or a raw payload (Budgets text, anomaly JSON, EventBridge event) into
    /// the normalised signal; exit 2 with the reason when it cannot be used.
    Parse {
        /// The file.
        file: PathBuf,
        /// The payload format (default: detected from explicit markers).
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Yaml)]
        output: Output,
        /// Include the original payload (`raw`) in the output.
        #[arg(long)]
        raw: bool,
    },
    /// Check an SNS message's signature (and certificate URL, topic, age) offline with the given
    /// certificate, or fetch the certificate from its validated SigningCertURL; exit 0 when
    /// every check passes, 1 when one fails, 2 when the file is not an SNS envelope.
    Verify {
        /// The SNS envelope (the HTTP body SNS posted).
        file: PathBuf,
        /// The signing certificate (PEM); without it, it is fetched over HTTPS.
        #[arg(long)]
        certificate: Option<PathBuf>,
        /// An allowed TopicArn (repeatable); without it the topic is not checked.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// The time to check age and certificate validity at (RFC 3339; default now).
        #[arg(long)]
        now: Option<String>,
        /// Oldest accepted message age, as the endpoint's `sns.maxAge` (e.g. 1h).
        #[arg(long, default_value = "1h")]
        max_age: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Yaml)]
        output: Output,
    },
}

/// `--format` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// Detect from explicit markers.
    Auto,
    /// AWS Budgets alert text.
    BudgetAlert,
    /// AWS Budgets Actions notice text.
    BudgetAction,
    /// Cost Anomaly Detection IMMEDIATE JSON.
    Anomaly,
    /// EventBridge event.
    Eventbridge,
}

impl FormatArg {
    fn format(self) -> Format {
        match self {
            FormatArg::Auto => Format::Auto,
            FormatArg::BudgetAlert => Format::BudgetAlert,
            FormatArg::BudgetAction => Format::BudgetAction,
            FormatArg::Anomaly => Format::AnomalyJson,
            FormatArg::Eventbridge => Format::EventBridge,
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn render<T: Serialize>(value: &T, output: Output, out: &mut dyn Write) -> Result<(), String> {
    let text = match output {
        Output::Yaml => serde_saphyr::to_string(value).map_err(|e| e.to_string())?,
        Output::Json => serde_json::to_string_pretty(value).map_err(|e| e.to_string())? + "\n",
    };
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

fn is_envelope(text: &str) -> bool {
    let trimmed = text.trim_start();
    trimmed.starts_with('{')
        && serde_json::from_str::<Value>(trimmed)
            .is_ok_and(|value| value.get("TopicArn").is_some() && value.get("Signature").is_some())
}

/// Runs a `signal` subcommand; returns the exit status.
pub fn run(command: SignalCommand, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, String> {
    match command {
        SignalCommand::Parse {
            file,
            format,
            output,
            raw,
        } => parse_command(&file, format, output, raw, out, err),
        SignalCommand::Verify {
            file,
            certificate,
            topics,
            now,
            max_age,
            output,
        } => {
            let now = match now {
                Some(text) => text
                    .parse::<Timestamp>()
                    .map_err(|e| format!("--now {text:?} is not an RFC 3339 time: {e}"))?,
                None => Timestamp::now(),
            };
            let max_age = crate::controller::policy::parse_duration(&max_age)
                .map_err(|e| format!("--max-age: {e}"))?;
            let options = VerifyOptions {
                certificate,
                topics: topics.into_iter().collect(),
                now,
                max_age,
            };
            verify_command(&file, &options, output, out)
        }
    }
}

fn parse_command(
    file: &Path,
    format: FormatArg,
    output: Output,
    raw: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, String> {
    let name = file.display().to_string();
    let text = read(file)?;
    let (payload, delivered_at) = if is_envelope(&text) {
        let envelope = Envelope::parse(&text)
            .map_err(|e| format!("{name}: not a usable SNS envelope: {e}"))?;
        if envelope.message_type != MessageType::Notification {
            return Err(format!(
                "{name}: an SNS {} carries no cost signal",
                envelope.message_type.as_str()
            ));
        }
        let _ = writeln!(
            err,
            "note: {name} is an SNS envelope; its signature was not checked (use `autoguardrails signal verify`)"
        );
        (envelope.message, Some(envelope.timestamp))
    } else {
        (text, None)
    };
    let hint = Hint {
        format: format.format(),
        delivered_at,
    };
    let mut signal: CostSignal =
        parse::parse(&payload, &hint).map_err(|e| format!("{name}: {}: {e}", e.category()))?;
    if !raw {
        signal.raw = None;
    }
    render(&signal, output, out)?;
    Ok(EXIT_OK)
}

struct VerifyOptions {
    certificate: Option<PathBuf>,
    topics: BTreeSet<String>,
    now: Timestamp,
    max_age: SignedDuration,
}

/// One check's result.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    name: &'static str,
    passed: bool,
    detail: String,
}

/// What `signal verify` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyReport {
    verified: bool,
    message_type: String,
    message_id: String,
    topic_arn: String,
    timestamp: String,
    signing_cert_url: String,
    checks: Vec<Check>,
}

fn fetch_certificate(envelope: &Envelope) -> Result<Vec<u8>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start the HTTP runtime: {e}"))?;
    runtime.block_on(async {
        let fetcher =
            HttpsCertificates::new(HttpsSettings::default(), None).map_err(|e| e.to_string())?;
        fetcher
            .fetch(&envelope.signing_cert_url)
            .await
            .map(|pem| pem.as_ref().clone())
            .map_err(|e| e.to_string())
    })
}

fn verify_command(
    file: &Path,
    options: &VerifyOptions,
    output: Output,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let name = file.display().to_string();
    let text = read(file)?;
    let envelope = Envelope::parse(&text).map_err(|e| format!("{name}: {}: {e}", e.category()))?;
    let mut checks = vec![Check {
        name: "envelope",
        passed: true,
        detail: format!(
            "{} with signature version {} and a SigningCertURL on an SNS host",
            envelope.message_type.as_str(),
            match envelope.signature_version {
                crate::controller::signal::sns::SignatureVersion::V1 => "1 (SHA1withRSA)",
                crate::controller::signal::sns::SignatureVersion::V2 => "2 (SHA256withRSA)",
            }
        ),
    }];
    checks.push(if options.topics.is_empty() {
        Check {
            name: "topic",
            passed: true,
            detail: "not checked (no --topic given)".into(),
        }
    } else {
        let allowed = options.topics.contains(&envelope.topic_arn);
        Check {
            name: "topic",
            passed: allowed,
            detail: if allowed {
                "in the allowlist".into()
            } else {
                "not in the allowlist given with --topic".into()
            },
        }
    });
    let age = options.now.duration_since(envelope.timestamp);
    let fresh = age <= options.max_age && -age <= SignedDuration::from_mins(5);
    checks.push(Check {
        name: "age",
        passed: fresh,
        detail: if age.is_negative() {
            format!(
                "{:#} in the future (at most 5m accepted)",
                -age.round(jiff::Unit::Second).unwrap_or(age)
            )
        } else {
            format!(
                "{:#} old (at most {:#} accepted)",
                age.round(jiff::Unit::Second).unwrap_or(age),
                options.max_age
            )
        },
    });
    let certificate = match &options.certificate {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .map(|pem| (pem, format!("from {}", path.display()))),
        None => fetch_certificate(&envelope).map(|pem| {
            (
                pem,
                format!("fetched from {}", envelope.signing_cert_url.as_str()),
            )
        }),
    };
    match certificate {
        Err(error) => checks.push(Check {
            name: "certificate",
            passed: false,
            detail: error,
        }),
        Ok((pem, origin)) => {
            checks.push(Check {
                name: "certificate",
                passed: true,
                detail: origin,
            });
            let result = envelope.verify_signature(&pem, options.now);
            checks.push(Check {
                name: "signature",
                passed: result.is_ok(),
                detail: match result {
                    Ok(()) => "valid over the documented string-to-sign".into(),
                    Err(error) => format!("{}: {error}", error.category()),
                },
            });
        }
    }
    let verified = checks.iter().all(|check| check.passed);
    let report = VerifyReport {
        verified,
        message_type: envelope.message_type.as_str().to_string(),
        message_id: envelope.message_id.clone(),
        topic_arn: envelope.topic_arn.clone(),
        timestamp: envelope.timestamp_text.clone(),
        signing_cert_url: envelope.signing_cert_url.as_str().to_string(),
        checks,
    };
    render(&report, output, out)?;
    Ok(if verified {
        EXIT_OK
    } else {
        EXIT_EXPECTATION_FAILED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_recognised_by_their_fields() {
        assert!(is_envelope(r#"{"TopicArn":"t","Signature":"s"}"#));
        assert!(!is_envelope(r#"{"anomalyId":"a"}"#));
        assert!(!is_envelope("AWS Budget Notification"));
    }
}
