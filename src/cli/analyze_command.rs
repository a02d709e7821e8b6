//! `autoguardrails analyze` and `propose`: parse the options, build the adapters (SDK clients from
//! the one base configuration, files, GitHub), run the scan and the pure analysis, write the
//! outputs, map the result to the exit status (0 ok, 1 error, 2 risk above threshold, 3 guardrail
//! violation). Nothing is decided here, and nothing is written to AWS.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::analyze::catalog::Catalog;
use crate::analyze::cloudtrail::{
    self, RegionLister, ScanSettings, SdkEventHistory, SdkRegionLister,
};
use crate::analyze::github::{GitHub, PullRequestSpec};
use crate::analyze::guardrails::{Preset, Rules};
use crate::analyze::permissions::{Permissions, Policy, PolicySource};
use crate::analyze::proposal::{
    self, AnalyzeError, Context, EXIT_ERROR, EXIT_OK, PolicyType, Settings, SourceReport,
};
use crate::analyze::record::PrincipalMatcher;
use crate::analyze::usage::{Usage, Window};
use crate::analyze::{athena, bedrock, files, iam, reasoning, render, s3};
use crate::aws::sdk::{SdkClientFactory, SdkSettings};
use crate::principal::{PrincipalArn, PrincipalKind};

/// The troubleshooting steps printed with "No CloudTrail events found".
pub const NO_EVENTS_HELP: &str = "No CloudTrail events found: no policy is proposed (an empty scan never means \"remove everything\").
Troubleshooting:
  - the principal may not have been used in the window: try another --usage-days (e.g. --usage-days 1 for a recent test, or up to 90 with Event History)
  - ensure CloudTrail is enabled and logging (a trail, or Event History for management events)
  - check the principal was used in the regions scanned (--regions), and that --role-arn/--user-arn is the right ARN
  - data events (S3 objects, Lambda invoke, DynamoDB items) are only in trail log files: use --s3-bucket, --from-files or --athena-table";

/// Arguments of `analyze`.
#[derive(clap::Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// The IAM role to analyse.
    #[arg(
        long,
        conflicts_with = "user_arn",
        required_unless_present = "user_arn"
    )]
    pub role_arn: Option<String>,
    /// The IAM user to analyse.
    #[arg(long)]
    pub user_arn: Option<String>,
    /// Days of CloudTrail to scan (default 30; with --from-files, default: everything in the files).
    #[arg(long)]
    pub usage_days: Option<u32>,
    /// End of the window (RFC 3339; default now). Makes runs reproducible.
    #[arg(long)]
    pub end_time: Option<String>,
    /// Regions to scan (comma-separated; default: the account's enabled regions).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Read trail log files (*.json.gz, *.json) from this directory instead of Event History.
    #[arg(long, conflicts_with_all = ["s3_bucket", "athena_workgroup"])]
    pub from_files: Option<PathBuf>,
    /// Threads that read `--from-files` logs, one file each at a time (default: the cores
    /// available, at most 8). The result does not depend on it.
    #[arg(long, requires = "from_files", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub scan_threads: Option<u16>,
    /// Read trail log files from this S3 bucket.
    #[arg(long, conflicts_with = "athena_workgroup")]
    pub s3_bucket: Option<String>,
    /// Key prefix before `AWSLogs/` in the bucket (organization trails: `o-xxxx/`).
    #[arg(long, default_value = "")]
    pub s3_prefix: String,
    /// Account id of the logs (default: the principal's).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Query an Athena table over trail logs in this workgroup.
    #[arg(long, requires = "athena_table")]
    pub athena_workgroup: Option<String>,
    /// The Athena table (`database.table`, see docs/analyze.md for the DDL).
    #[arg(long, requires = "athena_workgroup")]
    pub athena_table: Option<String>,
    /// Athena query result location (`s3://...`), when the workgroup has none.
    #[arg(long)]
    pub athena_output_location: Option<String>,
    /// Current permissions from policy document files instead of IAM (repeatable).
    #[arg(long)]
    pub current_policy: Vec<PathBuf>,
    /// Save the proposal JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Save a CloudFormation patch here.
    #[arg(long)]
    pub output_cloudformation: Option<PathBuf>,
    /// Save a Terraform patch here.
    #[arg(long)]
    pub output_terraform: Option<PathBuf>,
    /// Guardrail preset.
    #[arg(long, value_enum, default_value_t = Preset::Prod)]
    pub guardrails: Preset,
    /// A rules file (YAML or JSON) merged into the preset.
    #[arg(long)]
    pub guardrail_rules: Option<PathBuf>,
    /// Services to leave out (comma-separated prefixes).
    #[arg(long, value_delimiter = ',')]
    pub exclude_services: Vec<String>,
    /// Actions to leave out (comma-separated, wildcards allowed).
    #[arg(long, value_delimiter = ',')]
    pub suppress_actions: Vec<String>,
    /// Narrow resources to the ones every observed call named.
    #[arg(long)]
    pub scope_resources: bool,
    /// Managed or inline policies.
    #[arg(long, value_enum, default_value_t = PolicyType::Managed)]
    pub policy_type: PolicyType,
    /// Break-risk threshold in percent above which the run exits 2.
    #[arg(long, default_value_t = 10.0)]
    pub risk_threshold: f64,
    /// Bedrock model for an optional second opinion (shown separately, never merged).
    #[arg(long, env = "AGR_BEDROCK_MODEL_ID")]
    pub bedrock_model: Option<String>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// AWS signing region of the global clients.
    #[arg(long, env = "AGR_AWS_REGION", default_value = "us-east-1")]
    pub aws_region: String,
    /// Endpoint override for every AWS client (a local emulator).
    #[arg(long, env = "AGR_AWS_ENDPOINT_URL", hide = true)]
    pub aws_endpoint_url: Option<String>,
    /// Endpoint override for CloudTrail (a local stub).
    #[arg(long, env = "AGR_CLOUDTRAIL_ENDPOINT_URL", hide = true)]
    pub cloudtrail_endpoint_url: Option<String>,
    /// Endpoint override for the Account API (a local stub).
    #[arg(long, env = "AGR_ACCOUNT_ENDPOINT_URL", hide = true)]
    pub account_endpoint_url: Option<String>,
    /// Endpoint override for Bedrock Runtime (a local stub).
    #[arg(long, env = "AGR_BEDROCK_ENDPOINT_URL", hide = true)]
    pub bedrock_endpoint_url: Option<String>,
    /// SDK attempts per AWS call (0 disables SDK retries).
    #[arg(long, env = "AGR_AWS_MAX_ATTEMPTS", default_value_t = 5, hide = true)]
    pub aws_max_attempts: u32,
    /// First LookupEvents backoff in milliseconds.
    #[arg(
        long,
        env = "AGR_LOOKUP_BACKOFF_MS",
        default_value_t = 500,
        hide = true
    )]
    pub lookup_backoff_ms: u64,
    /// LookupEvents requests per second per region.
    #[arg(long, env = "AGR_LOOKUP_RATE", default_value_t = 2.0, hide = true)]
    pub lookup_rate: f64,
}

/// Arguments of `propose`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProposeArgs {
    /// GitHub repository (`owner/name`).
    #[arg(long)]
    pub repo: String,
    /// Branch for the pull request.
    #[arg(long)]
    pub branch: String,
    /// The proposal JSON from `analyze`.
    #[arg(long)]
    pub input: PathBuf,
    /// Base branch.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// Pull request title.
    #[arg(long)]
    pub title: Option<String>,
    /// Open as a draft.
    #[arg(long)]
    pub draft: bool,
    /// GitHub token.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// Directory in the repository for the files (default `iam/<principal name>`).
    #[arg(long)]
    pub path: Option<String>,
    /// Patch files from `analyze` (CloudFormation, Terraform) to commit too (repeatable).
    #[arg(long)]
    pub patch: Vec<PathBuf>,
    /// GitHub API URL.
    #[arg(
        long,
        env = "AGR_GITHUB_API_URL",
        default_value = "https://api.github.com",
        hide = true
    )]
    pub github_api_url: String,
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("failed to write {}: {e}", path.display()))
}

fn ct_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

struct Progress {
    quiet: bool,
    last: Instant,
}

impl Progress {
    fn line(&mut self, text: &str) {
        if self.quiet || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let _ = writeln!(std::io::stderr(), "progress: {text}");
    }
}

/// Runs `analyze`; returns the exit status.
pub fn run_analyze(args: &AnalyzeArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: failed to start the runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match runtime.block_on(analyze(args, out, err)) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_ERROR
        }
    }
}

async fn analyze(
    args: &AnalyzeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, String> {
    let (principal, kind) = match (&args.role_arn, &args.user_arn) {
        (Some(arn), _) => (arn, PrincipalKind::Role),
        (None, Some(arn)) => (arn, PrincipalKind::User),
        (None, None) => return Err("pass --role-arn or --user-arn".into()),
    };
    let principal = PrincipalArn::parse_kind(principal, kind).map_err(|e| e.to_string())?;
    if !(0.0..=100.0).contains(&args.risk_threshold) {
        return Err("--risk-threshold is a percentage between 0 and 100".into());
    }
    let catalog = Catalog::embedded().map_err(|e| e.to_string())?;
    let mut rules = Rules::preset(args.guardrails);
    if let Some(path) = &args.guardrail_rules {
        let user = Rules::parse(&path.display().to_string(), &read_text(path)?)
            .map_err(|e| e.to_string())?;
        rules = rules.merge(&user);
    }
    let end = match &args.end_time {
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .map_err(|e| format!("--end-time {text:?} is not an RFC 3339 time: {e}"))?,
        None => jiff::Timestamp::now(),
    };
    let lookup =
        args.from_files.is_none() && args.s3_bucket.is_none() && args.athena_workgroup.is_none();
    let days = match (args.usage_days, &args.from_files) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(30),
    };
    if let Some(d) = days {
        if d == 0 {
            return Err("--usage-days must be at least 1".into());
        }
        if lookup && i64::from(d) > cloudtrail::EVENT_HISTORY_DAYS {
            return Err(format!(
                "CloudTrail Event History holds {} days; for --usage-days {d} read trail log files (--s3-bucket, --from-files) or Athena",
                cloudtrail::EVENT_HISTORY_DAYS
            ));
        }
    }
    let window = days.map(|d| {
        let start = end - jiff::SignedDuration::from_hours(24 * i64::from(d));
        Window {
            start: ct_time(start),
            end: ct_time(end),
        }
    });
    let mut usage = Usage::new(PrincipalMatcher::new(principal.clone()), window);
    let needs_aws =
        args.from_files.is_none() || args.current_policy.is_empty() || args.bedrock_model.is_some();
    let config = if needs_aws {
        Some(std::sync::Arc::new(
            SdkClientFactory::ambient(SdkSettings {
                endpoint_url: args.aws_endpoint_url.clone(),
                region: args.aws_region.clone(),
                max_attempts: args.aws_max_attempts,
                rate_limit: None,
                static_credentials: None,
            })
            .await,
        ))
    } else {
        None
    };
    let mut progress = Progress {
        quiet: args.quiet,
        last: Instant::now(),
    };
    let account = args
        .account_id
        .clone()
        .unwrap_or_else(|| principal.account_id().to_string());
    let source: SourceReport = if let Some(dir) = &args.from_files {
        let workers = args
            .scan_threads
            .map_or_else(files::default_workers, usize::from);
        files::read_directory_with(
            dir,
            &mut usage,
            &mut |files, events| progress.line(&format!("{files} files, {events} events read")),
            workers,
        )
        .map_err(|e| e.to_string())?
    } else if let (Some(bucket), Some(config)) = (&args.s3_bucket, &config) {
        let store = s3::SdkLogStore::new(config.s3());
        s3::read_bucket(
            &store,
            bucket,
            &args.s3_prefix,
            &account,
            &args.regions,
            &mut usage,
            &mut |files, events| progress.line(&format!("{files} files, {events} events read")),
        )
        .await
        .map_err(|e| e.to_string())?
    } else if let (Some(workgroup), Some(table), Some(config)) =
        (&args.athena_workgroup, &args.athena_table, &config)
    {
        athena::scan(
            &athena::SdkAthena::new(config.athena()),
            workgroup,
            table,
            args.athena_output_location.as_deref(),
            &athena::AthenaSettings::default(),
            &mut usage,
        )
        .await
        .map_err(|e| e.to_string())?
    } else if let Some(config) = &config {
        let regions = if args.regions.is_empty() {
            SdkRegionLister::new(config.account(args.account_endpoint_url.as_deref()))
                .enabled_regions()
                .await
                .map_err(|e| format!("{e} (pass --regions to name the regions to scan)"))?
        } else {
            args.regions.clone()
        };
        let start = end - jiff::SignedDuration::from_hours(24 * i64::from(days.unwrap_or(30)));
        cloudtrail::scan(
            &SdkEventHistory::new(config.clone(), args.cloudtrail_endpoint_url.clone()),
            &regions,
            start.as_second(),
            end.as_second(),
            &ScanSettings {
                requests_per_second: args.lookup_rate,
                max_attempts: 6,
                backoff: Duration::from_millis(args.lookup_backoff_ms),
            },
            &mut usage,
            &mut |region, pages, events| {
                progress.line(&format!("{region}: {pages} pages, {events} events read"))
            },
        )
        .await
        .map_err(|e| e.to_string())?
    } else {
        return Err("no source".into());
    };
    let (permissions, created, permissions_origin) = if args.current_policy.is_empty() {
        let Some(config) = &config else {
            return Err("no AWS configuration".into());
        };
        let (p, created) = iam::read_permissions(&iam::SdkIamReader::new(config.iam()), &principal)
            .await
            .map_err(|e| e.to_string())?;
        (p, created, "IAM".to_string())
    } else {
        let mut policies = Vec::new();
        for path in &args.current_policy {
            policies.push(
                Policy::parse(
                    PolicySource {
                        kind: "file".into(),
                        name: path.display().to_string(),
                    },
                    &read_text(path)?,
                )
                .map_err(|e| e.to_string())?,
            );
        }
        (
            Permissions {
                policies,
                boundary: None,
            },
            None,
            "--current-policy files".to_string(),
        )
    };
    if permissions.is_empty() {
        return Err(format!(
            "{principal} has no identity policies: nothing to reduce"
        ));
    }
    let settings = Settings {
        scope_resources: args.scope_resources,
        policy_type: args.policy_type,
        preset: args.guardrails,
        rules,
        exclude_services: args
            .exclude_services
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .collect::<BTreeSet<_>>(),
        suppress_actions: args
            .suppress_actions
            .iter()
            .map(|s| s.trim().to_string())
            .collect(),
        risk_threshold: args.risk_threshold / 100.0,
    };
    let context = Context {
        requested_days: days.map(f64::from),
        sources: vec![source],
        principal_created: created,
        permissions_origin,
    };
    let mut report = match proposal::analyze(catalog, &usage, &permissions, &settings, &context) {
        Ok(r) => r,
        Err(e @ AnalyzeError::NoEvents { .. }) => {
            let _ = writeln!(err, "error: {e}\n{NO_EVENTS_HELP}");
            return Ok(EXIT_ERROR);
        }
        Err(e) => return Err(e.to_string()),
    };
    if let (Some(model), Some(config)) = (&args.bedrock_model, &config) {
        let client = bedrock::SdkModel::new(
            config.bedrock_runtime(args.bedrock_endpoint_url.as_deref()),
            Duration::from_secs(60),
        );
        report.proposal.model_reasoning =
            match bedrock::Model::converse(&client, model, &reasoning::prompt(&report)).await {
                Ok(text) => reasoning::interpret(model, &text, catalog, &permissions),
                Err(e) => {
                    let _ = writeln!(err, "warning: {e}; continuing without the model");
                    reasoning::unavailable(model, &e.to_string())
                }
            };
    }
    if let Some(path) = &args.output {
        write_file(path, &render::json(&report).map_err(|e| e.to_string())?)?;
    }
    if let Some(path) = &args.output_cloudformation {
        write_file(
            path,
            &render::cloudformation(&report).map_err(|e| e.to_string())?,
        )?;
    }
    if let Some(path) = &args.output_terraform {
        write_file(
            path,
            &render::terraform(&report).map_err(|e| e.to_string())?,
        )?;
    }
    out.write_all(render::summary(&report).as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(report.exit_code)
}

/// Runs `propose`; returns the exit status.
pub fn run_propose(args: &ProposeArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: failed to start the runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match runtime.block_on(propose(args, out)) {
        Ok(()) => EXIT_OK,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_ERROR
        }
    }
}

fn pull_request_body(report: &serde_json::Value) -> String {
    use serde_json::Value;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut body = String::from("## Least-privilege proposal (autoguardrails analyze)\n\n");
    body.push_str(&text(&report["proposal"]["rationale"]));
    body.push_str("\n\n### Diff\n\n");
    body.push_str(&format!(
        "- granted today: {}\n- kept: {}\n- removed: {}\n- used but not granted: {}\n\nKept actions:\n\n",
        report["diff"]["grantedActions"],
        report["diff"]["kept"].as_array().map(Vec::len).unwrap_or_default(),
        report["diff"]["removedActions"],
        report["diff"]["usedButNotGranted"].as_array().map(Vec::len).unwrap_or_default(),
    ));
    for action in list(&report["diff"]["kept"]) {
        body.push_str(&format!("- `{action}`\n"));
    }
    body.push_str(&format!(
        "\n### Risk\n\n{}% ({}), threshold {}\n\n",
        report["proposal"]["riskSignal"]["percent"],
        text(&report["proposal"]["riskSignal"]["level"]),
        report["proposal"]["riskSignal"]["threshold"],
    ));
    for note in list(&report["proposal"]["remediationNotes"]) {
        body.push_str(&format!("- {note}\n"));
    }
    let violations = report["guardrails"]["violations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !violations.is_empty() {
        body.push_str("\n### Guardrail violations\n\n");
        for v in violations {
            body.push_str(&format!(
                "- {} `{}`: {}\n",
                text(&v["rule"]),
                text(&v["action"]),
                text(&v["detail"])
            ));
        }
    }
    body.push_str("\nNothing was changed in AWS: apply the files of this pull request through your usual pipeline.\n");
    body
}

async fn propose(args: &ProposeArgs, out: &mut dyn Write) -> Result<(), String> {
    let text = read_text(&args.input)?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON: {e}", args.input.display()))?;
    if report["schema"].as_str() != Some(proposal::SCHEMA) {
        return Err(format!(
            "{}: not a proposal from `autoguardrails analyze` (schema {})",
            args.input.display(),
            proposal::SCHEMA
        ));
    }
    let arn = report["principal"]["arn"].as_str().unwrap_or_default();
    let principal =
        PrincipalArn::parse(arn).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| format!("iam/{}", principal.name()));
    let dir = dir.trim_matches('/').to_string();
    let mut files = Vec::new();
    for policy in report["proposal"]["policies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = policy["name"].as_str().unwrap_or("policy");
        let document =
            serde_json::to_string_pretty(&policy["document"]).map_err(|e| e.to_string())? + "\n";
        files.push((format!("{dir}/{name}.json"), document));
    }
    if files.is_empty() {
        return Err(format!(
            "{}: the proposal has no policies",
            args.input.display()
        ));
    }
    files.push((format!("{dir}/proposal.json"), text.clone()));
    for patch in &args.patch {
        let name = patch
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| format!("{}: not a file", patch.display()))?;
        files.push((format!("{dir}/{name}"), read_text(patch)?));
    }
    let github = GitHub::new(
        &args.github_api_url,
        args.github_token.as_deref().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let spec = PullRequestSpec {
        repo: args.repo.clone(),
        branch: args.branch.clone(),
        base: args.base.clone(),
        title: args
            .title
            .clone()
            .unwrap_or_else(|| format!("Least-privilege IAM policy for {}", principal.name())),
        body: pull_request_body(&report),
        draft: args.draft,
        files,
        message: format!(
            "Least-privilege IAM policy for {} (autoguardrails analyze)",
            principal.name()
        ),
    };
    let result = github
        .open_pull_request(&spec)
        .await
        .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "{} pull request #{}: {} (branch {}{}, {} files committed)",
        if result.created { "opened" } else { "updated" },
        result.number,
        result.url,
        args.branch,
        if result.branch_created {
            ", created"
        } else {
            ""
        },
        result.files_committed.len()
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}
