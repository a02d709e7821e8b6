//! `autoguardrails gate …`: argument parsing and wiring of the gate's adapters (configuration
//! files, Prometheus, Cost Explorer, audit log, LLM explainer, HTTP server) around the pure core
//! in `crate::gate`. Output goes to the writers passed in; GitHub Actions files are appended to
//! when their variables are set. It must not contain gate logic.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use jiff::Timestamp;

use crate::gate::audit::{self, AuditQuery, JsonLinesAudit};
use crate::gate::collect::{Gate, GateError};
use crate::gate::config::{
    ConfigError, CostSource as CostSourceConfig, ExplainerSettings, GateConfig, MetricsSource,
};
use crate::gate::costexplorer::{CostExplorerSource, CostSource};
use crate::gate::decide;
use crate::gate::files;
use crate::gate::prometheus::{PromQl, PrometheusClient};
use crate::gate::render;
use crate::gate::rules::{self, Action};
use crate::gate::serve::{self, ServeState};
use crate::gate::slo;
use crate::gate::telemetry::GateMetrics;

/// Exit status: ALLOW or WARN.
pub const EXIT_ALLOW: u8 = 0;
/// Exit status: DELAY.
pub const EXIT_DELAY: u8 = 1;
/// Exit status: BLOCK.
pub const EXIT_BLOCK: u8 = 2;
/// Exit status: a configuration or usage error (the message names the file and field).
pub const EXIT_CONFIG: u8 = 3;
/// Exit status: the gate could not run at all (runtime, server bind).
pub const EXIT_INTERNAL: u8 = 4;

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateOutput {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// Options shared by every `gate` command.
#[derive(clap::Args, Debug, Clone)]
pub struct GateOptions {
    /// The service to evaluate (default: the configuration's defaultService, or its only one).
    #[arg(long, global = true)]
    pub service: Option<String>,
    /// The gate configuration file.
    #[arg(
        long,
        global = true,
        env = "AUTOGUARDRAILS_GATE_CONFIG",
        default_value = "gate.yaml"
    )]
    pub config: PathBuf,
    /// A rules file replacing the configured one (default: the seed's P001-P008).
    #[arg(long, global = true)]
    pub policies: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = GateOutput::Text)]
    pub output: GateOutput,
    /// Print the rule trace and the narrative explanation (and ask the LLM, when configured).
    #[arg(long, global = true)]
    pub explain: bool,
    /// Evaluate every input as of this instant (RFC 3339) instead of now.
    #[arg(long, global = true)]
    pub at: Option<String>,
    /// Audit directory replacing the configured one.
    #[arg(long, global = true)]
    pub audit_dir: Option<PathBuf>,
}

/// `gate` subcommands (none: evaluate and decide).
#[derive(Subcommand, Debug, Clone)]
pub enum GateCommand {
    /// The one-shot SLO report.
    Slo,
    /// The one-shot cost report.
    Cost,
    /// Decide with inputs overridden (`--set error_budget_pct=15 --set costSpikePct=35`).
    Simulate {
        /// `name=value` (a value may also be NoData, NaN, Stale or Error).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Validate the configuration and rules; print what would be used.
    CheckConfig,
    /// List audit records.
    Audit {
        /// Only this verdict.
        #[arg(long)]
        verdict: Option<String>,
        /// Only records at or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only records before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// At most this many (newest).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Re-evaluate a past period at fixed steps.
    Backtest {
        /// Start (RFC 3339).
        #[arg(long)]
        from: String,
        /// End (RFC 3339, inclusive).
        #[arg(long)]
        to: String,
        /// Step (`1h`, `30m`, `1d`).
        #[arg(long, default_value = "1h")]
        every: String,
    },
    /// Serve the JSON API, the Argo Rollouts analysis endpoint and /metrics.
    Serve {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: String,
        /// Serve the dashboard's Gate page under /dashboard, for holders of the bearer token in
        /// this file (docs/dashboard.md). Without it no dashboard is served.
        #[arg(long, env = "AGR_GATE_DASHBOARD_TOKEN_FILE")]
        dashboard_token_file: Option<std::path::PathBuf>,
        /// Let the dashboard's "run the gate" button evaluate and audit (off: read-only).
        #[arg(long)]
        dashboard_allow_run: bool,
        /// A proposal.json shown on the dashboard's Analysis page.
        #[arg(long)]
        dashboard_proposal: Option<std::path::PathBuf>,
        /// The controller's dashboard address, linked from the navigation.
        #[arg(long)]
        dashboard_controller_url: Option<String>,
        /// Mark the sign-in cookie Secure (the dashboard is reached over HTTPS).
        #[arg(long)]
        dashboard_secure_cookie: bool,
    },
}

/// Arguments of `gate`.
#[derive(clap::Args, Debug, Clone)]
pub struct GateArgs {
    /// The subcommand (none: decide).
    #[command(subcommand)]
    pub command: Option<GateCommand>,
    /// Shared options.
    #[command(flatten)]
    pub options: GateOptions,
}

/// The exit status for a command line clap rejected: `gate` usage errors get `EXIT_CONFIG`
/// (2 would read as BLOCK); help and version stay 0; other commands keep clap's status.
pub fn usage_exit_code(args: &[OsString], clap_code: i32) -> u8 {
    if clap_code == 0 {
        return 0;
    }
    if args.get(1).and_then(|a| a.to_str()) == Some("gate") {
        EXIT_CONFIG
    } else {
        u8::try_from(clap_code).unwrap_or(2)
    }
}

enum Failure {
    Config(String),
    Internal(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::Config(e.to_string())
    }
}

impl From<GateError> for Failure {
    fn from(e: GateError) -> Failure {
        Failure::Config(e.to_string())
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs `gate`; returns the exit status.
pub fn run(args: GateArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: failed to start the async runtime: {e}");
            return EXIT_INTERNAL;
        }
    };
    match runtime.block_on(run_async(args, out, err)) {
        Ok(code) => code,
        Err(Failure::Config(message)) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_CONFIG
        }
        Err(Failure::Internal(message)) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_INTERNAL
        }
    }
}

fn parse_time(flag: &str, text: &str) -> Result<Timestamp, Failure> {
    text.parse::<Timestamp>()
        .map_err(|e| Failure::Config(format!("{flag} {text:?} is not an RFC 3339 time: {e}")))
}

fn write_text(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::Internal(format!("failed to write output: {e}")))
}

fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_string()) + "\n"
}

/// Builds the gate (configuration, rules, clients) from the options.
pub async fn build_gate(options: &GateOptions) -> Result<Gate, ConfigError> {
    let mut config = files::load_config(&options.config)?;
    if let Some(dir) = &options.audit_dir {
        config.audit.directory = dir.clone();
    }
    let rules = files::load_rules(options.policies.as_deref(), config.policies.as_deref())?;
    connect(config, rules).await
}

/// Connects the sources a configuration needs.
pub async fn connect(config: GateConfig, rules: rules::RuleSet) -> Result<Gate, ConfigError> {
    let uses_prometheus = config
        .services
        .values()
        .any(|s| matches!(s.metrics, MetricsSource::Prometheus(_)));
    let prometheus: Option<Arc<dyn PromQl>> = match (&config.prometheus, uses_prometheus) {
        (Some(p), true) => Some(Arc::new(PrometheusClient::new(p, &env_lookup).map_err(
            |e| ConfigError::Invalid {
                file: "gate configuration".to_string(),
                field: "prometheus".to_string(),
                message: e.to_string(),
            },
        )?)),
        _ => None,
    };
    let uses_ce = config
        .services
        .values()
        .any(|s| matches!(s.cost, CostSourceConfig::CostExplorer(_)));
    let cost_explorer: Option<Arc<dyn CostSource>> = if uses_ce {
        let settings =
            config
                .cost_explorer
                .clone()
                .unwrap_or(crate::gate::config::CostExplorerSettings {
                    region: "us-east-1".to_string(),
                    endpoint_url: None,
                    metric: "UnblendedCost".to_string(),
                    max_attempts: 3,
                });
        Some(Arc::new(CostExplorerSource::new(&settings, None).await))
    } else {
        None
    };
    Ok(Gate {
        config,
        rules,
        prometheus,
        cost_explorer,
    })
}

fn github_actions(
    decision: &crate::gate::decide::Decision,
    explanation: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) {
    let append = |var: &str, text: &str, err: &mut dyn Write| {
        if let Ok(path) = std::env::var(var)
            && !path.is_empty()
        {
            let result = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            if let Err(e) = result {
                let _ = writeln!(err, "warning: failed to write ${var} ({path}): {e}");
            }
        }
    };
    append("GITHUB_OUTPUT", &render::github_outputs(decision), err);
    append(
        "GITHUB_STEP_SUMMARY",
        &render::markdown_summary(decision, explanation),
        err,
    );
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
        && let Some(line) = render::annotation(decision)
    {
        let _ = writeln!(out, "{line}");
    }
}

async fn run_async(
    args: GateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Failure> {
    let options = &args.options;
    let at = match &options.at {
        Some(text) => parse_time("--at", text)?,
        None => Timestamp::now(),
    };
    if let Some(GateCommand::Audit {
        verdict,
        since,
        until,
        limit,
    }) = &args.command
    {
        // The audit listing needs only the directory: take it from --audit-dir or the config.
        let directory = match &options.audit_dir {
            Some(d) => d.clone(),
            None => files::load_config(&options.config)?.audit.directory,
        };
        let query = AuditQuery {
            service: options.service.clone(),
            verdict: verdict.clone(),
            since: since
                .as_deref()
                .map(|t| parse_time("--since", t))
                .transpose()?,
            until: until
                .as_deref()
                .map(|t| parse_time("--until", t))
                .transpose()?,
            limit: *limit,
        };
        let listing =
            audit::read(&directory, &query).map_err(|e| Failure::Internal(e.to_string()))?;
        match options.output {
            GateOutput::Json => {
                for r in &listing.records {
                    let line =
                        serde_json::to_string(r).map_err(|e| Failure::Internal(e.to_string()))?;
                    write_text(out, &(line + "\n"))?;
                }
            }
            GateOutput::Text => {
                for r in &listing.records {
                    write_text(
                        out,
                        &format!(
                            "{}  {:<9} {:<16} {:<6} {:<5} {}\n",
                            r.recorded_at, r.mode, r.service, r.verdict, r.policy_id, r.reason_code
                        ),
                    )?;
                }
                write_text(out, &format!("{} record(s)\n", listing.records.len()))?;
            }
        }
        for (file, line) in &listing.unreadable {
            let _ = writeln!(err, "warning: {file}:{line} is not a readable audit record");
        }
        return Ok(EXIT_ALLOW);
    }
    let gate = build_gate(options).await?;
    let sink = JsonLinesAudit::new(gate.config.audit.directory.clone());
    let explainer = if options.explain {
        gate.config.explainer.clone()
    } else {
        ExplainerSettings::default()
    };
    let quiet_gate = Gate {
        config: GateConfig {
            explainer,
            ..gate.config.clone()
        },
        ..gate.clone()
    };
    match &args.command {
        Some(GateCommand::CheckConfig) => {
            let mut notes = rules::lint(&gate.rules);
            let cost_rules: Vec<&str> = gate
                .rules
                .rules
                .iter()
                .filter(|r| r.conditions.iter().any(|c| c.signal.contains("cost")))
                .map(|r| r.id.as_str())
                .collect();
            for (name, s) in &gate.config.services {
                if matches!(s.cost, CostSourceConfig::None) && !cost_rules.is_empty() {
                    notes.push(format!(
                        "service {name} has no cost source: rules {} cannot be evaluated and will delay",
                        cost_rules.join(", ")
                    ));
                }
            }
            match options.output {
                GateOutput::Json => write_text(
                    out,
                    &json_text(&serde_json::json!({
                        "ok": true,
                        "config": gate.config,
                        "rules": gate.rules,
                        "signals": rules::SIGNALS
                            .iter()
                            .map(|(name, _, meaning)| serde_json::json!({"name": name, "meaning": meaning}))
                            .collect::<Vec<_>>(),
                        "notes": notes,
                    })),
                )?,
                GateOutput::Text => {
                    let mut text = format!("{}: ok\n", options.config.display());
                    for (name, s) in &gate.config.services {
                        let source = match &s.metrics {
                            MetricsSource::File(p) => format!("file {}", p.display()),
                            MetricsSource::Prometheus(_) => "prometheus".to_string(),
                        };
                        let cost = match &s.cost {
                            CostSourceConfig::File(p) => format!("file {}", p.display()),
                            CostSourceConfig::CostExplorer(_) => "cost explorer".to_string(),
                            CostSourceConfig::None => "none".to_string(),
                        };
                        text.push_str(&format!(
                            "  service {name}: target {}% over {}, metrics {source}, cost {cost}\n",
                            s.slo.availability_target_pct,
                            s.slo.window.promql()
                        ));
                    }
                    text.push_str(&format!(
                        "  rules: {}\n",
                        gate.rules
                            .rules
                            .iter()
                            .map(|r| r.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    for n in &notes {
                        text.push_str(&format!("  note: {n}\n"));
                    }
                    write_text(out, &text)?;
                }
            }
            Ok(EXIT_ALLOW)
        }
        Some(GateCommand::Slo) => {
            let service = gate.config.service(options.service.as_deref())?;
            let sli = gate.sli_at(service, at).await;
            let report = slo::evaluate(
                &sli,
                &service.slo,
                &gate.config.burn_rate.thresholds,
                &gate.config.burn_rate.windows,
                service.minimum_requests,
                service.minimum_window_requests,
            );
            match options.output {
                GateOutput::Json => write_text(
                    out,
                    &json_text(&serde_json::json!({"ok": true, "data": render::slo_data(&report)})),
                )?,
                GateOutput::Text => write_text(out, &render::slo_text(&service.name, &report))?,
            }
            Ok(EXIT_ALLOW)
        }
        Some(GateCommand::Cost) => {
            let service = gate.config.service(options.service.as_deref())?;
            let today = at.to_zoned(jiff::tz::TimeZone::UTC).date();
            let days = gate.config.cost.minimum_days as i64 + gate.config.cost.max_lag_days;
            let input = gate.cost_input(service, today, days).await;
            let report = crate::gate::cost::evaluate(&input, today, &gate.config.cost);
            match options.output {
                GateOutput::Json => write_text(
                    out,
                    &json_text(
                        &serde_json::json!({"ok": true, "data": render::cost_data(&report)}),
                    ),
                )?,
                GateOutput::Text => write_text(out, &render::cost_text(&service.name, &report))?,
            }
            Ok(EXIT_ALLOW)
        }
        Some(GateCommand::Backtest { from, to, every }) => {
            let from = parse_time("--from", from)?;
            let to = parse_time("--to", to)?;
            let every = crate::gate::config::Window::parse(every)
                .map_err(|e| Failure::Config(format!("--every: {e}")))?;
            let decisions = gate
                .backtest(options.service.as_deref(), from, to, every.seconds())
                .await?;
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            let mut worst = Action::Allow;
            let mut lines = Vec::new();
            for d in decisions {
                let concluded =
                    serve::conclude(&quiet_gate, d, "backtest", &sink, None, &env_lookup).await;
                let d = concluded.decision;
                *counts.entry(d.verdict.action.as_str()).or_default() += 1;
                worst = worst.max(d.verdict.action);
                lines.push(d);
            }
            match options.output {
                GateOutput::Json => {
                    for d in &lines {
                        let line = serde_json::to_string(&render::decision_data(d))
                            .map_err(|e| Failure::Internal(e.to_string()))?;
                        write_text(out, &(line + "\n"))?;
                    }
                }
                GateOutput::Text => {
                    for d in &lines {
                        write_text(
                            out,
                            &format!(
                                "{}  {:<5} {:<5} {:<16} {}\n",
                                d.at,
                                d.verdict.action.as_str(),
                                d.verdict.policy_id,
                                d.verdict.reason_code,
                                crate::gate::explain::summary(d)
                            ),
                        )?;
                    }
                    let summary: Vec<String> =
                        counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    write_text(
                        out,
                        &format!("{} step(s): {}\n", lines.len(), summary.join(", ")),
                    )?;
                }
            }
            Ok(EXIT_ALLOW)
        }
        Some(GateCommand::Serve {
            listen,
            dashboard_token_file,
            dashboard_allow_run,
            dashboard_proposal,
            dashboard_controller_url,
            dashboard_secure_cookie,
        }) => {
            let access = match dashboard_token_file {
                Some(path) => Some(
                    crate::dashboard::access::Access::from_file(path, *dashboard_secure_cookie)
                        .map_err(|e| Failure::Config(e.to_string()))?,
                ),
                None => None,
            };
            let metrics = GateMetrics::new().map_err(|e| Failure::Internal(e.to_string()))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Failure::Internal(format!("failed to listen on {listen}: {e}")))?;
            let address = listener
                .local_addr()
                .map_err(|e| Failure::Internal(e.to_string()))?;
            write_text(out, &format!("gate listening on http://{address}\n"))?;
            let _ = out.flush();
            let state = ServeState {
                gate: gate.clone(),
                audit: Arc::new(sink),
                metrics,
                env: Arc::new(env_lookup),
            };
            let shutdown = async {
                #[cfg(unix)]
                {
                    let mut term = match tokio::signal::unix::signal(
                        tokio::signal::unix::SignalKind::terminate(),
                    ) {
                        Ok(t) => t,
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                            return;
                        }
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                }
            };
            let mut router = serve::router(state.clone());
            if let Some(access) = access {
                let dashboard = Arc::new(crate::dashboard::gate::GateDashboard {
                    serve: state,
                    allow_run: *dashboard_allow_run,
                    controller_url: dashboard_controller_url.clone(),
                    proposal: dashboard_proposal.clone(),
                });
                router = router.merge(crate::dashboard::gate::router(dashboard, access));
                write_text(
                    out,
                    &format!("dashboard on http://{address}/dashboard/gate\n"),
                )?;
                let _ = out.flush();
            }
            serve::serve(listener, router, shutdown)
                .await
                .map_err(|e| Failure::Internal(e.to_string()))?;
            Ok(EXIT_ALLOW)
        }
        None | Some(GateCommand::Simulate { .. }) => {
            let (overrides, mode) = match &args.command {
                Some(GateCommand::Simulate { set }) => (
                    decide::parse_overrides(set).map_err(|e| Failure::Config(e.to_string()))?,
                    "simulate",
                ),
                _ => (BTreeMap::new(), "cli"),
            };
            let decision = gate
                .evaluate(options.service.as_deref(), at, &overrides)
                .await?;
            let concluded =
                serve::conclude(&quiet_gate, decision, mode, &sink, None, &env_lookup).await;
            let d = &concluded.decision;
            if let Some(reason) = &concluded.explanation.fallback {
                let _ = writeln!(
                    err,
                    "note: explainer fell back to the rule-based text: {reason}"
                );
            }
            let explanation = options
                .explain
                .then_some(concluded.explanation.text.as_str());
            match options.output {
                GateOutput::Json => {
                    let mut doc = render::decision_document(d, Some(&concluded.explanation.text));
                    doc["explanationSource"] = serde_json::json!(concluded.explanation.source);
                    doc["auditFile"] = serde_json::json!(
                        concluded
                            .audit_file
                            .as_ref()
                            .map(|p| p.display().to_string())
                    );
                    write_text(out, &json_text(&doc))?;
                }
                GateOutput::Text => {
                    write_text(out, &render::decision_text(d, explanation, options.explain))?
                }
            }
            github_actions(d, &concluded.explanation.text, out, err);
            Ok(d.verdict.action.exit_code())
        }
        Some(GateCommand::Audit { .. }) => Ok(EXIT_ALLOW),
    }
}
