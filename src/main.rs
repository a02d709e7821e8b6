//! The `autoguardrails` command line: parse arguments, run the chosen command, map its result
//! to an exit status. Nothing else lives here.
#![forbid(unsafe_code)]

use autoguardrails::cli;
use clap::Parser;
use std::process::ExitCode;

/// With `--features jemalloc` (the container image, `make bench`): jemalloc, configured at build
/// time (`.cargo/config.toml`) to hand freed memory back to the system within a second (decision
/// 153), so the controller's RSS follows its live data instead of its highest point.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // `gate` usage errors must not exit 2 (BLOCK): see gate_command::usage_exit_code.
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            let code = cli::gate_command::usage_exit_code(&argv, e.exit_code());
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Not locked for the whole run: the controller's worker threads log to stderr.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    ExitCode::from(cli::run(args, &mut stdout, &mut stderr))
}
