//! One principal identity, as a user meets it: exceptions and protected principals written in
//! another case, with or without an IAM path, or in another partition, through `simulate` and
//! through the real controller binary on the emulator (SDK backend against moto). The same run
//! exercises the shared wiring a user relies on: the Slack webhook read from an SSM parameter
//! through the one client factory (honouring `aws.endpointUrl`), `/events` answers for bodies that
//! are not events, and the hardened listener under many half-open connections.

use crate::support::binary::{
    ControllerProcess, attached, cluster_with_events_key, free_port, iam_client, wait_for,
};
use crate::support::moto;
use crate::support::slack_receiver::SlackReceiver;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "123456789012";
const API_KEY: &str = "identity-test-key";

fn policy(mode: &str, scope: &[&str], exceptions: &[&str], ssm_parameter: Option<&str>) -> String {
    let scope: String = scope
        .iter()
        .map(|arn| format!("      - {{ kind: IamRole, arn: \"{arn}\" }}\n"))
        .collect();
    let exceptions: String = if exceptions.is_empty() {
        "    principals: []\n".to_string()
    } else {
        let list: String = exceptions
            .iter()
            .map(|arn| format!("      - \"{arn}\"\n"))
            .collect();
        format!("    principals:\n{list}")
    };
    let notify = ssm_parameter
        .map(|p| format!("  notify:\n    slack:\n      webhookSsmParameter: \"{p}\"\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: identity
  namespace: {NS}
spec:
  mode: {mode}
  match:
    sources: [CostAnomaly]
    accountIds: ["{ACCOUNT}"]
    minImpactUsd: 10
  scope:
    principals:
{scope}  exceptions:
{exceptions}  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    cooldown: 30m
{notify}"#
    )
}

const SIGNAL: &str = r#"{"source": "CostAnomaly", "id": "identity-anomaly-1", "accountId": "123456789012",
 "impactUsd": 450.0, "service": "Amazon EC2", "region": "us-east-1",
 "observedAt": "2026-11-20T07:30:00Z", "summary": "EC2 spend up"}"#;

/// Runs `autoguardrails simulate -o json` and returns (exit code, report or stderr).
fn simulate(policy: &str, protected: &[&str]) -> (i32, Value, String) {
    let dir = tempdir("simulate");
    let policy_file = dir.join("policy.yaml");
    let signal_file = dir.join("signal.json");
    std::fs::write(&policy_file, policy).unwrap();
    std::fs::write(&signal_file, SIGNAL).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    command.args([
        "simulate",
        "--policy",
        policy_file.to_str().unwrap(),
        "--signal",
        signal_file.to_str().unwrap(),
        "--now",
        "2026-11-20T10:00:00Z",
        "-o",
        "json",
    ]);
    for arn in protected {
        command.args(["--protected-principal", arn]);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report, stderr)
}

fn targets(report: &Value) -> Vec<String> {
    report["quarantine"]["spec"]["targets"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|t| t["arn"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "agr-identity-{name}-{}-{}",
        std::process::id(),
        moto::unique("d")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn role(path_and_name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{path_and_name}")
}

#[test]
fn simulate_applies_one_identity_rule_to_exceptions_and_protected_principals() {
    let scope = [role("ci-deployer"), role("app")];
    let scope: Vec<&str> = scope.iter().map(String::as_str).collect();
    // Exception in other case, with and without a path: the role is excepted either way.
    for exception in [role("CI-Deployer"), role("teams/build/CI-DEPLOYER")] {
        let (code, report, stderr) = simulate(&policy("Auto", &scope, &[&exception], None), &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(report["reason"], "Matched", "{report}");
        assert_eq!(targets(&report), vec![role("app")], "exception {exception}");
    }
    // Another partition or account is another principal: not excepted.
    for other in [
        "arn:aws-cn:iam::123456789012:role/ci-deployer".to_string(),
        "arn:aws:iam::210987654321:role/ci-deployer".to_string(),
    ] {
        let (code, report, stderr) = simulate(&policy("Auto", &scope, &[&other], None), &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            targets(&report),
            vec![role("ci-deployer"), role("app")],
            "{other} must not except the aws-partition role"
        );
    }
    // Protected principal in other case with a path: never a target.
    let (code, report, stderr) = simulate(
        &policy("Auto", &scope, &[], None),
        &["arn:aws:iam::123456789012:role/ops/APP"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(targets(&report), vec![role("ci-deployer")], "{report}");
    // Both excluded: no quarantine at all.
    let (code, report, stderr) = simulate(
        &policy("Auto", &scope, &[&role("Ci-Deployer")], None),
        &[&role("App")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["decision"], "None", "{report}");
    assert_eq!(report["reason"], "NoEligibleTargets", "{report}");
    // An invalid protected ARN is refused with the field named, exit 2.
    let (code, _, stderr) = simulate(
        &policy("Auto", &scope, &[], None),
        &["arn:aws:iam::123:role/app"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--protected-principal"), "{stderr}");
    // Another partition for a protected principal does not protect the aws role.
    let (_, report, _) = simulate(
        &policy("Auto", &scope, &[], None),
        &["arn:aws-us-gov:iam::123456789012:role/app"],
    );
    assert_eq!(targets(&report), vec![role("ci-deployer"), role("app")]);
}

fn write_config(
    dir: &std::path::Path,
    moto_url: &str,
    metrics: u16,
    signals: u16,
) -> std::path::PathBuf {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: identity
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics}
signalsAddr: 127.0.0.1:{signals}
protectedPrincipals: ["arn:aws:iam::{ACCOUNT}:role/platform/BREAK-GLASS"]
aws:
  backend: sdk
  endpointUrl: {moto_url}
  maxAttempts: 1
  requestsPerSecond: 0
leaderElection:
  leaseNamespace: {NS}
  leaseDuration: 4s
  renewDeadline: 3s
  retryPeriod: 500ms
signals:
  headerReadTimeout: 2s
  maxConnections: 16
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: true
  ssmRegion: eu-west-1
  slack:
    maxAttempts: 2
"#
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_excepts_by_identity_reads_the_webhook_from_ssm_and_answers_bad_events() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    for name in ["ci-deployer", "app", "break-glass"] {
        iam.create_role()
            .role_name(name)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap();
    }
    // The Slack webhook URL lives in an SSM SecureString parameter in eu-west-1 (ssmRegion).
    let slack = SlackReceiver::start().await;
    let ssm_config = aws_sdk_ssm::config::Builder::from(
        &autoguardrails::aws::sdk::load_base_config(&moto.settings()).await,
    )
    .region(aws_sdk_ssm::config::Region::new("eu-west-1"))
    .build();
    aws_sdk_ssm::Client::from_conf(ssm_config)
        .put_parameter()
        .name("/autoguardrails/slack")
        .value(&slack.url)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();

    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let (metrics_port, signals_port) = (free_port(), free_port());
    let dir = tempdir("binary");
    let config = write_config(&dir, &moto.url, metrics_port, signals_port);
    let log = dir.join("controller.log");
    // No AWS_REGION for SSM: the parameter's region comes from notifications.ssmRegion, and the
    // endpoint from aws.endpointUrl: nothing may resolve a public AWS host.
    let child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "controller",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("POD_NAME", "identity-0")
        .env("POD_NAMESPACE", NS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let controller = ControllerProcess {
        child: Some(child),
        log,
    };
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(90), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;

    // A protected principal written in other case with another path makes the policy not Ready.
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        Some(&policy(
            "Auto",
            &[&role("break-glass"), &role("app")],
            &[],
            None,
        )),
    );
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=ProtectedTarget",
        "guardrailpolicy/identity",
        "--timeout=90s",
    ]);

    // The real policy: exceptions in other case, with a path, and in another partition.
    let excepted = role("teams/CI-DEPLOYER");
    let elsewhere = "arn:aws-cn:iam::123456789012:role/app";
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        Some(&policy(
            "Auto",
            &[&role("ci-deployer"), &role("app")],
            &[&excepted, elsewhere],
            Some("/autoguardrails/slack"),
        )),
    );
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/identity",
        "--timeout=90s",
    ]);

    let events = format!("http://127.0.0.1:{signals_port}/events");
    // Hold more half-open connections than maxConnections: headers never finish.
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", signals_port)) {
            let _ = stream.write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nx-api-key: ");
            held.push(stream);
        }
    }
    // /events still answers: the header-read timeout frees the slots within seconds.
    let body_not_json = http
        .post(&events)
        .timeout(Duration::from_secs(60))
        .header("x-api-key", API_KEY)
        .body("this is not an event")
        .send()
        .await
        .unwrap();
    assert_eq!(body_not_json.status(), 400, "{}", controller.log());
    let reason = body_not_json.text().await.unwrap();
    assert!(reason.contains("malformed"), "{reason}");
    drop(held);

    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(ACCOUNT.into());
    event["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    let mut wrong_type = event.clone();
    wrong_type["detail"]["impact"]["totalImpact"] = serde_json::json!({"not": "a number"});
    let answer = http
        .post(&events)
        .header("x-api-key", API_KEY)
        .body(wrong_type.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        400,
        "a field of the wrong type is the sender's error"
    );
    let mut ignored = event.clone();
    ignored["source"] = Value::String("aws.ec2".into());
    ignored["detail-type"] = Value::String("EC2 Instance State-change Notification".into());
    let answer = http
        .post(&events)
        .header("x-api-key", API_KEY)
        .body(ignored.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        200,
        "a well-formed event we ignore stays 200"
    );
    assert!(answer.text().await.unwrap().contains("unusable"));

    let answer = http
        .post(&events)
        .header("x-api-key", API_KEY)
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    assert_eq!(
        status,
        200,
        "{}\n{}",
        answer.text().await.unwrap(),
        controller.log()
    );

    // Auto: the deny lands on `app` only; the excepted role is never written to.
    wait_for("the deny on app", Duration::from_secs(90), || async {
        !attached(&iam, "app").await.is_empty()
    })
    .await;
    assert!(attached(&iam, "ci-deployer").await.is_empty());
    assert!(attached(&iam, "break-glass").await.is_empty());
    let quarantines = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "json"]);
    let quarantines: Value = serde_json::from_str(&quarantines).unwrap();
    let items = quarantines["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{quarantines}");
    let target_arns: Vec<&str> = items[0]["spec"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["arn"].as_str())
        .collect();
    assert_eq!(target_arns, vec![role("app").as_str()]);

    // Slack got the message through the webhook read from SSM via the endpoint URL.
    wait_for("a Slack message", Duration::from_secs(90), || async {
        !slack.delivered().is_empty()
    })
    .await;
    let log = controller.log();
    assert!(
        !log.contains("ssm.eu-west-1.amazonaws.com") && !log.contains("dispatch failure"),
        "{log}"
    );
}
