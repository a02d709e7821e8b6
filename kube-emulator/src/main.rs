//! The `kube-emulator` binary: serves the emulator until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "kube-emulator",
    about = "In-memory Kubernetes API server for tests"
)]
struct Arguments {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0", env = "KUBE_EMULATOR_LISTEN")]
    listen: SocketAddr,
    /// Where to write a kubeconfig pointing at the emulator.
    #[arg(long, default_value = "kube-emulator.kubeconfig")]
    kubeconfig: PathBuf,
    /// Watch history size (older resourceVersions get 410 Gone).
    #[arg(long, default_value_t = 10_000)]
    history: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let arguments = Arguments::parse();
    let options = kube_emulator::Options {
        listen: arguments.listen,
        kubeconfig_path: Some(arguments.kubeconfig.clone()),
        history_capacity: arguments.history,
        ..kube_emulator::Options::default()
    };
    let emulator = match kube_emulator::Emulator::start_with(options).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("kube-emulator: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", emulator.url());
    eprintln!(
        "kube-emulator: serving {} (kubeconfig: {})",
        emulator.url(),
        emulator.kubeconfig_path().display()
    );
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    eprintln!("kube-emulator: stopping");
    drop(emulator);
    std::process::ExitCode::SUCCESS
}
