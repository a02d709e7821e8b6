//! The `autoguardrails` command line: parse arguments, run the chosen command, map its result
//! to an exit status. Nothing else lives here.
#![forbid(unsafe_code)]

use autoguardrails::cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Not locked for the whole run: the controller's worker threads log to stderr.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    ExitCode::from(cli::run(args, &mut stdout, &mut stderr))
}
