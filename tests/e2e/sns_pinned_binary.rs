//! Offline SNS trust through the real binary (decision 204): the signing certificate is pinned in
//! a directory laid out like a mounted Secret (given by the `--sns-pinned-certificates-dir` flag)
//! and by fingerprint (config file). A notification signed with the test key under a
//! `SigningCertURL` that exists nowhere (`SimpleNotificationService-000…a.pem`) verifies and
//! creates its Quarantine: no certificate server could have supplied that certificate (with no
//! egress a fetch fails; with egress AWS answers 404), and the fetch counter stays at zero. A
//! message naming a certificate that is not pinned is refused with the reason.

use crate::support::binary::{
    cluster_with_events_key, free_port, metric_value, spawn_controller_with_env, wait_for,
};
use crate::support::moto;
use crate::support::sns_signing::{self, Signer};

use std::time::Duration;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "111111111111";
const PINNED_FILE: &str = "SimpleNotificationService-0000000000000000000000000000000a.pem";
const NOT_PINNED_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000b.pem";
/// `openssl x509 -in tests/fixtures/signals/sns/test-cert.pem -noout -fingerprint -sha256`.
const FINGERPRINT: &str = "16:2B:9C:DD:E0:9E:6B:39:AC:05:F6:A6:F9:53:77:0D:BC:11:21:FC:1C:B9:5B:4E:86:5D:A7:5B:9D:9B:37:52";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: sns-dry-run
  namespace: autoguardrails
spec:
  mode: DryRun
  match:
    sources: [CostAnomaly]
    accountIds: ["111111111111"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::111111111111:role/dev-ci" }
  deny:
    actions: ["ec2:RunInstances"]
"#;

async fn post_sns(http: &reqwest::Client, url: &str, body: String) -> (u16, String, String) {
    let response = http
        .post(url)
        .header("content-type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", "Notification")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["outcome"].as_str().unwrap_or_default().to_string(),
        body["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_certificates_verify_sns_without_any_certificate_server() {
    let moto = moto::MotoServer::start();
    let (emulator, kubectl) = cluster_with_events_key(NS, "unused-key").await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();
    let dir = std::env::temp_dir().join(format!("agr-sns-pinned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The certificate directory as the kubelet mounts a Secret with one key per certificate.
    let pinned = dir.join("sns-certificates");
    let data = pinned.join("..2026_12_05_21_00_00.000000001");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(PINNED_FILE), sns_signing::CERT).unwrap();
    std::os::unix::fs::symlink(data.file_name().unwrap(), pinned.join("..data")).unwrap();
    std::os::unix::fs::symlink(format!("..data/{PINNED_FILE}"), pinned.join(PINNED_FILE)).unwrap();

    let metrics_port = free_port();
    let signals_port = free_port();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: sdk
  endpointUrl: {moto}
  maxAttempts: 1
  requestsPerSecond: 0
leaderElection:
  leaseNamespace: {NS}
  leaseDuration: 4s
  renewDeadline: 3s
  retryPeriod: 500ms
signals:
  sns:
    allowedTopics: ["{topic}"]
    confirmSubscriptions: false
    pinnedFingerprints: ["{FINGERPRINT}"]
notifications:
  enabled: false
"#,
            moto = moto.url,
            topic = sns_signing::TOPIC,
        ),
    )
    .unwrap();
    let controller = spawn_controller_with_env(
        &kubeconfig,
        &config,
        NS,
        &dir,
        &["--sns-pinned-certificates-dir", pinned.to_str().unwrap()],
        &[],
    );
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/sns-dry-run",
        "--timeout=60s",
    ]);
    let sns = format!("http://127.0.0.1:{signals_port}/sns");
    let signer = Signer::test();
    let now = jiff::Timestamp::now().to_string();

    // A message naming a certificate that is not pinned: refused, and it says why.
    let fields = sns_signing::notification(
        "11111111-0000-4000-8000-000000000001",
        &now,
        &sns_signing::anomaly_message("pin-not-pinned", ACCOUNT, 520.0),
    );
    let body = sns_signing::render(&fields, "2", &signer.sign(&fields, "2"), NOT_PINNED_URL);
    let refused = post_sns(&http, &sns, body).await;
    assert_eq!(refused.0, 403, "{refused:?}\n{}", controller.log());
    assert!(
        refused.2.contains(NOT_PINNED_URL) && refused.2.contains("is not pinned"),
        "{refused:?}"
    );

    // A message signed by another key under the pinned URL: a bad signature, not a fetch.
    let fields = sns_signing::notification(
        "11111111-0000-4000-8000-000000000002",
        &now,
        &sns_signing::anomaly_message("pin-forged", ACCOUNT, 520.0),
    );
    let forged = post_sns(&http, &sns, Signer::other().envelope(&fields, "2")).await;
    assert_eq!(forged.0, 403, "{forged:?}");

    // The genuine message verifies offline and creates its (DryRun) Quarantine.
    let fields = sns_signing::notification(
        "11111111-0000-4000-8000-000000000003",
        &now,
        &sns_signing::anomaly_message("pin-genuine", ACCOUNT, 520.0),
    );
    let accepted = post_sns(&http, &sns, signer.envelope(&fields, "2")).await;
    assert_eq!(
        (accepted.0, accepted.1.as_str()),
        (200, "accepted"),
        "{accepted:?}\n{}",
        controller.log()
    );
    wait_for("the quarantine", Duration::from_secs(30), || async {
        !kubectl
            .run(&["get", "quarantines", "-n", NS, "-o", "name"])
            .trim()
            .is_empty()
    })
    .await;
    assert_eq!(
        metric_value(&http, &ops, "autoguardrails_sns_certificate_fetches_total{").await,
        0.0,
        "no certificate was fetched"
    );
    let fetch_lines: Vec<String> = http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("autoguardrails_sns_certificate_fetches_total{"))
        .map(str::to_string)
        .collect();
    assert!(
        fetch_lines.iter().all(|l| l.ends_with(" 0")),
        "{fetch_lines:?}"
    );
    assert!(
        controller
            .log()
            .contains("SNS signing certificates are pinned"),
        "{}",
        controller.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
