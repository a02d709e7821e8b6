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
    /// A static token file (`token,user,uid[,"group1,group2"]` per line, kube-apiserver's format);
    /// the bootstrap admin token of the written kubeconfig is always accepted besides.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Who requests without credentials are: `admin` (the bootstrap admin; kubectl sends no
    /// token over plain HTTP), `anonymous` (`system:anonymous`) or `refuse` (401).
    #[arg(long, default_value = "admin")]
    unauthenticated: kube_emulator::auth::Unauthenticated,
    /// Serve HTTPS with this PEM certificate (with `--tls-private-key-file` and `--tls-ca-file`);
    /// kubectl sends bearer tokens only over HTTPS.
    #[arg(long, requires_all = ["tls_private_key_file", "tls_ca_file"])]
    tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `--tls-cert-file`.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// The PEM CA written into the kubeconfig as `certificate-authority-data`.
    #[arg(long, requires = "tls_cert_file")]
    tls_ca_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let arguments = Arguments::parse();
    let tokens = match &arguments.token_auth_file {
        None => Vec::new(),
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|error| error.to_string())
                .and_then(|text| kube_emulator::auth::parse_token_file(&text));
            match parsed {
                Ok(tokens) => tokens,
                Err(error) => {
                    eprintln!("kube-emulator: token file {}: {error}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    };
    let tls = match (
        &arguments.tls_cert_file,
        &arguments.tls_private_key_file,
        &arguments.tls_ca_file,
    ) {
        (Some(certificate), Some(key), Some(ca)) => {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path)
                    .map_err(|error| format!("{}: {error}", path.display()))
            };
            match (read(certificate), read(key), read(ca)) {
                (Ok(certificate_pem), Ok(key_pem), Ok(ca_pem)) => {
                    Some(kube_emulator::tls::ServerTls {
                        certificate_pem,
                        key_pem,
                        ca_pem,
                    })
                }
                (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
                    eprintln!("kube-emulator: {error}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let options = kube_emulator::Options {
        tls,
        tokens,
        unauthenticated: arguments.unauthenticated,
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
