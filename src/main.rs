//! The `autoguardrails` command line: parse arguments, run the chosen command, map its result
//! to an exit status. Nothing else lives here.
#![forbid(unsafe_code)]

use autoguardrails::cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    ExitCode::from(cli::run(args, &mut stdout, &mut stderr))
}
