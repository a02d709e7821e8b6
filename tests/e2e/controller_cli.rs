//! `autoguardrails controller` as a process, before it needs a cluster: configuration precedence
//! (flag > `AGR_*` variable > file > default), refusals that name the field and exit 2, and the
//! in-memory backend announcing itself loudly.

use std::path::PathBuf;
use std::process::{Command, Output};

fn controller(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    command.arg("controller").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("AGR_") && !env.iter().any(|(e, _)| *e == k) {
            command.env_remove(&k);
        }
    }
    command.output().unwrap()
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn printed(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn flags_override_variables_which_override_the_file() {
    let file = config_file(
        "precedence.yaml",
        "clusterId: from-file\ndriftPeriod: 20s\nkillSwitch: false\nnamespaces: [file-ns]\n",
    );
    let file = file.to_str().unwrap();
    let only_file = printed(&controller(&["--config", file, "--print-config"], &[]));
    assert!(only_file.contains("clusterId: from-file"), "{only_file}");
    assert!(only_file.contains("driftPeriod: PT20S"), "{only_file}");

    let env = [
        ("AGR_CLUSTER_ID", "from-env"),
        ("AGR_KILL_SWITCH", "true"),
        ("AGR_NAMESPACES", "a,b"),
    ];
    let with_env = printed(&controller(&["--config", file, "--print-config"], &env));
    assert!(with_env.contains("clusterId: from-env"), "{with_env}");
    assert!(with_env.contains("killSwitch: true"), "{with_env}");
    assert!(with_env.contains("- a\n- b"), "{with_env}");
    assert!(
        with_env.contains("driftPeriod: PT20S"),
        "the file still applies: {with_env}"
    );

    let with_flag = printed(&controller(
        &[
            "--config",
            file,
            "--cluster-id",
            "from-flag",
            "--print-config",
        ],
        &env,
    ));
    assert!(with_flag.contains("clusterId: from-flag"), "{with_flag}");
    assert!(with_flag.contains("killSwitch: true"), "{with_flag}");
}

#[test]
fn bad_configuration_exits_2_naming_the_problem() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--config".into(),
                config_file("typo.yaml", "driftPeriode: 30s\n")
                    .display()
                    .to_string(),
            ],
            "driftPeriode",
        ),
        (
            vec!["--protected-principal".into(), "break-glass".into()],
            "protectedPrincipals",
        ),
        (vec!["--drift-period".into(), "0s".into()], "driftPeriod"),
        (
            vec!["--config".into(), "/nonexistent/config.yaml".into()],
            "cannot read config file",
        ),
        (vec!["--aws-backend".into(), "memory".into()], "aws.memory"),
        (
            vec!["--approval-webhook".into()],
            "approvalWebhook.certFile",
        ),
        (
            vec![
                "--approval-webhook".into(),
                "--approval-webhook-cert-file=/tls.crt".into(),
                "--approval-webhook-key-file=/tls.key".into(),
                "--approval-webhook-addr=0.0.0.0:8080".into(),
            ],
            "approvalWebhook.addr",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = controller(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let output = controller(&["--drift-period", "soon"], &[]);
    assert_eq!(output.status.code(), Some(2), "clap refuses a bad duration");
}

#[test]
fn the_memory_backend_is_announced_before_anything_else() {
    let file = config_file(
        "memory.yaml",
        "aws:\n  backend: memory\n  memory:\n    '111111111111': {roles: [dev-ci]}\n",
    );
    let output = controller(
        &["--config", file.to_str().unwrap(), "--log-format", "text"],
        &[
            ("KUBECONFIG", "/nonexistent/kubeconfig"),
            ("KUBERNETES_SERVICE_HOST", ""),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("AWS BACKEND IS IN MEMORY"), "{stderr}");
    assert!(stderr.contains("cannot reach Kubernetes"), "{stderr}");
}
