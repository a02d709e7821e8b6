//! Command-line arguments (clap) and the commands that need no cluster: `crd`, `simulate`,
//! `policy convert`. Output goes to the writers passed in, so tests can run commands in-process.

use crate::controller::policy::ControllerSettings;
use crate::controller::simulate::{self, InputError};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod analyze_command;
pub mod audit_command;
pub mod aws_setup_command;
pub mod controller_command;
pub mod gate_command;
pub mod signal_command;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: `--expect` did not hold.
pub const EXIT_EXPECTATION_FAILED: u8 = 1;
/// Exit status: invalid input (a file, a flag value).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// AutoGuardRails: time-boxed IAM deny quarantines driven by AWS cost signals.
#[derive(Parser, Debug)]
#[command(name = "autoguardrails", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print both CustomResourceDefinitions as YAML, or write one file per CRD into a directory.
    Crd {
        /// Write `<crd name>.yaml` files here (what `crds/` holds) instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Evaluate a policy against a signal file; print the decision and the exact IAM document.
    Simulate(SimulateArgs),
    /// Signal tools: parse a payload, verify an SNS message.
    Signal {
        /// The signal command.
        #[command(subcommand)]
        command: signal_command::SignalCommand,
    },
    /// Run the controllers, the signal endpoints and the operations listener (in a cluster, or
    /// against any kubeconfig).
    Controller(crate::config::ControllerArgs),
    /// The deployment gate: ALLOW / WARN / DELAY / BLOCK from SLO health and observed cost
    /// (exit 0 allow/warn, 1 delay, 2 block, 3 configuration or usage error).
    Gate(gate_command::GateArgs),
    /// Least-privilege IAM policy from a principal's real CloudTrail usage (read-only against
    /// AWS). Exit 0 ok, 1 error, 2 break risk above threshold, 3 guardrail violation.
    Analyze(Box<analyze_command::AnalyzeArgs>),
    /// Open a GitHub pull request with a proposal from `analyze`.
    Propose(analyze_command::ProposeArgs),
    /// Print the parameters of the AWS templates (deploy/aws) that match a chart installation:
    /// ServiceAccount, namespace, endpoint URL, /events key header, OIDC issuer.
    AwsSetup(aws_setup_command::AwsSetupArgs),
    /// Read the audit trail (DynamoDB table or JSON-lines file): by quarantine, principal,
    /// policy, actor and time range; read access is enough.
    Audit(audit_command::AuditArgs),
    /// Policy file tools.
    Policy {
        /// The policy command.
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// `policy` subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Convert a flat-format policy (policy_id, ttl_minutes, ...) into a GuardrailPolicy manifest.
    Convert {
        /// The flat policy file (YAML or JSON).
        file: PathBuf,
        /// Namespace to put in the manifest.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
}

/// Output formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// What `--expect` checks.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A Quarantine would be created.
    Quarantine,
    /// No Quarantine would be created.
    None,
}

/// Arguments of `simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The GuardrailPolicy manifest or flat-format policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// The normalised CostSignal file (YAML or JSON).
    #[arg(long)]
    pub signal: PathBuf,
    /// Evaluation time (RFC 3339); defaults to the current time.
    #[arg(long)]
    pub now: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
    /// Exit 1 unless the decision is this.
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,
    /// A protected principal ARN (repeatable), as in the controller's configuration.
    #[arg(long = "protected-principal")]
    pub protected_principals: Vec<String>,
    /// Evaluate as if the controller's kill switch were on.
    #[arg(long)]
    pub kill_switch: bool,
    /// A listing of IAM roles, users and Organizations OUs (YAML or JSON) to resolve the policy's
    /// `scope.selectors` against; without it a policy with selectors is `SelectorsUnresolved`.
    #[arg(long)]
    pub principals: Option<PathBuf>,
}

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = match cli.command {
        Command::Crd { dir } => crd(dir.as_deref(), out),
        Command::Simulate(args) => simulate_command(&args, out),
        Command::Policy {
            command: PolicyCommand::Convert { file, namespace },
        } => convert(&file, namespace.as_deref(), out),
        Command::Signal { command } => signal_command::run(command, out, err),
        Command::AwsSetup(args) => aws_setup_command::run(&args, out, err),
        Command::Controller(args) => return controller_command::run(&args, out, err),
        Command::Audit(args) => return audit_command::run(&args, out, err),
        Command::Gate(args) => return gate_command::run(args, out, err),
        Command::Analyze(args) => return analyze_command::run_analyze(&args, out, err),
        Command::Propose(args) => return analyze_command::run_propose(&args, out, err),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_INVALID_INPUT
        }
    }
}

fn crd(dir: Option<&Path>, out: &mut dyn Write) -> Result<u8, String> {
    match dir {
        None => {
            let yaml = crate::controller::crd::crds_yaml()
                .map_err(|e| format!("failed to render CRDs: {e}"))?;
            out.write_all(yaml.as_bytes()).map_err(|e| e.to_string())?;
        }
        Some(dir) => {
            for (file, yaml) in crate::controller::crd::crd_files()
                .map_err(|e| format!("failed to render CRDs: {e}"))?
            {
                let path = dir.join(&file);
                std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
                writeln!(out, "wrote {}", path.display()).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(EXIT_OK)
}

fn read(path: &Path) -> Result<String, String> {
    const LIMIT: u64 = 4 * 1024 * 1024;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > LIMIT {
        return Err(format!("{}: larger than {LIMIT} bytes", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn input(e: InputError) -> String {
    e.to_string()
}

fn simulate_command(args: &SimulateArgs, out: &mut dyn Write) -> Result<u8, String> {
    let policy_file = args.policy.display().to_string();
    let signal_file = args.signal.display().to_string();
    let policy = simulate::load_policy(&policy_file, &read(&args.policy)?).map_err(input)?;
    let signal = simulate::load_signal(&signal_file, &read(&args.signal)?).map_err(input)?;
    let now = match &args.now {
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .map_err(|e| format!("--now {text:?} is not an RFC 3339 time: {e}"))?,
        None => jiff::Timestamp::now(),
    };
    let settings = ControllerSettings {
        protected_principals: crate::principal::PrincipalSet::parse_all(&args.protected_principals)
            .map_err(|e| format!("--protected-principal: {e}"))?,
        kill_switch: args.kill_switch,
    };
    let resolution = match &args.principals {
        Some(file) => {
            let name = file.display().to_string();
            let listing = simulate::load_listing(&name, &read(file)?).map_err(input)?;
            Some(simulate::resolve_listing(&policy, &listing, now)?)
        }
        None => None,
    };
    let report = simulate::simulate(&policy, &signal, &settings, now, resolution.as_ref())
        .map_err(|e| format!("{policy_file}: spec.deny: {e}"))?;
    let text = match args.output {
        Output::Yaml => serde_saphyr::to_string(&report).map_err(|e| e.to_string())?,
        Output::Json => serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n",
    };
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    let quarantined = report.quarantine.is_some();
    Ok(match args.expect {
        Some(Expect::Quarantine) if !quarantined => EXIT_EXPECTATION_FAILED,
        Some(Expect::None) if quarantined => EXIT_EXPECTATION_FAILED,
        _ => EXIT_OK,
    })
}

fn convert(file: &Path, namespace: Option<&str>, out: &mut dyn Write) -> Result<u8, String> {
    let name = file.display().to_string();
    let value = simulate::parse_document(&name, &read(file)?).map_err(input)?;
    let flat: crate::controller::policy::flat::FlatPolicy =
        serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))?;
    let policy = flat
        .convert(namespace)
        .map_err(|e| format!("{name}: {e}"))?;
    let value = serde_json::to_value(&policy).map_err(|e| e.to_string())?;
    let errors = crate::controller::crd::validate::guardrail_policy(&value);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "{name}: converted policy is invalid: {}",
            list.join("; ")
        ));
    }
    let yaml = serde_saphyr::to_string(&policy).map_err(|e| e.to_string())?;
    out.write_all(yaml.as_bytes()).map_err(|e| e.to_string())?;
    Ok(EXIT_OK)
}
