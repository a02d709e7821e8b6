//! The analyzer's integration tests (one binary): the real `autoguardrails` binary with
//! production wiring against the bundled three-week logs, a CloudTrail/Account/Bedrock/GitHub
//! stub speaking the documented protocols, moto for IAM, S3 and Athena, cfn-lint and python-hcl2
//! for the patches, and @cloud-copilot/iam-simulate as an independent evaluator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/moto.rs"]
mod moto;

mod golden;
mod mapping;
mod scan;
mod sources;
mod stub;
mod subset;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ROLE: &str = "arn:aws:iam::111122223333:role/ci-deployer";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn examples() -> PathBuf {
    root().join("examples/analyze")
}

/// Runs the binary with a clean AWS environment plus `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    command
        .args(args)
        .env_remove("AGR_AWS_ENDPOINT_URL")
        .env_remove("GITHUB_TOKEN")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("failed to run autoguardrails")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(moto::unique(&format!("agr-analyze-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
