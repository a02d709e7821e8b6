//! Offline SNS trust through the real binary (decision 204): the signing certificate is pinned in
//! a directory laid out like a mounted Secret (given by the `--sns-pinned-certificates-dir` flag)
//! and by fingerprint (config file). A notification signed with the test key under a
//! `SigningCertURL` that exists nowhere (`SimpleNotificationService-000…a.pem`) verifies and
//! creates its Quarantine: no certificate server could have supplied that certificate (with no
//! egress a fetch fails; with egress AWS answers 404), and the fetch counter stays at zero. A
//! message naming a certificate that is not pinned is refused with the reason.
//!
//! Messages AWS itself published and signed (`tests/fixtures/signals/sns/aws/`, decision 250)
//! verify through the binary with their genuine certificate pinned, at the instant they were sent
//! (the test clock file, decision 203): one changed byte is refused, the same message at today's
//! instant is refused as stale, and nothing is fetched (every HTTPS request of the binary goes
//! to a loopback proxy that records and refuses it, so a fetch attempt would show there and no
//! request leaves the machine). Without a pin the same message makes the binary ask for exactly
//! its `SigningCertURL`'s host, and the refused fetch is answered 503 (SNS retries).

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

/// The messages AWS signed and the certificate they name (see the fixtures' README).
const AWS_V1: &str = include_str!("../fixtures/signals/sns/aws/notification-v1.json");
const AWS_V2: &str = include_str!("../fixtures/signals/sns/aws/notification-v2.json");
const AWS_CERT_FILE: &str = "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
const AWS_CERT: &str = include_str!(
    "../fixtures/signals/sns/aws/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
);
/// `openssl x509 -noout -fingerprint -sha256` of [`AWS_CERT`].
const AWS_FINGERPRINT: &str = "D0:38:29:B4:6E:82:C5:FD:1C:2D:24:10:93:21:5B:2E:74:69:A8:1E:16:C0:57:77:E7:C7:22:A3:6E:0C:B2:A5";
const AWS_TOPICS: [&str; 2] = [
    "arn:aws:sns:us-east-2:295079676684:publish-and-verify-892f85fe-4836-424d-8188-ab85bef0f362",
    "arn:aws:sns:us-east-2:295079676684:publish-and-verify-62674b1d-4295-426b-88e7-5fb75652a04e",
];
/// Six minutes after the messages were published (within the default `maxAge` of 1h).
const AWS_SENT_AT: &str = "2022-07-28T21:30:00Z";

/// An HTTP proxy on loopback that records each request line (`CONNECT host:443 ...`) and refuses
/// it with 403: given to the binary as `ALL_PROXY`, it shows every HTTPS request the binary
/// tries, and none leaves the machine.
struct RefusingProxy {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingProxy {
    async fn start() -> RefusingProxy {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    seen.lock()
                        .unwrap()
                        .push(text.lines().next().unwrap_or_default().to_string());
                    let _ = socket
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        RefusingProxy {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the binary for the AWS-signed messages: the test clock at `AWS_SENT_AT`, every HTTPS
/// request through `proxy`, and `sns` as the `signals.sns` settings beyond the topics.
fn spawn_for_aws_messages(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    proxy: &RefusingProxy,
    sns: &str,
    extra_args: &[&str],
) -> (crate::support::binary::ControllerProcess, String, String) {
    let metrics_port = free_port();
    let signals_port = free_port();
    let clock = dir.join("clock");
    std::fs::write(&clock, AWS_SENT_AT).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    "111111111111": {{ roles: [dev-ci] }}
leaderElection:
  leaseNamespace: {NS}
  leaseDuration: 4s
  renewDeadline: 3s
  retryPeriod: 500ms
signals:
  sns:
    allowedTopics: ["{}", "{}"]
    confirmSubscriptions: false
{sns}notifications:
  enabled: false
"#,
            AWS_TOPICS[0], AWS_TOPICS[1],
        ),
    )
    .unwrap();
    let controller = spawn_controller_with_env(
        kubeconfig,
        &config,
        NS,
        dir,
        extra_args,
        &[
            ("AUTOGUARDRAILS_TEST_CLOCK_FILE", clock.as_os_str()),
            // ALL_PROXY, not HTTPS_PROXY: the Kubernetes client reads HTTPS_PROXY too and
            // refuses to start without its proxy feature; the SNS client reads both.
            ("ALL_PROXY", std::ffi::OsStr::new(&proxy.url)),
            ("NO_PROXY", std::ffi::OsStr::new("127.0.0.1,localhost")),
        ],
    );
    (
        controller,
        format!("http://127.0.0.1:{metrics_port}"),
        format!("http://127.0.0.1:{signals_port}/sns"),
    )
}

async fn wait_ready(
    http: &reqwest::Client,
    ops: &str,
    controller: &crate::support::binary::ControllerProcess,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for /readyz\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        controller.log().contains("TEST CLOCK"),
        "{}",
        controller.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_aws_signed_verify_through_the_binary_with_their_pinned_certificate() {
    let (emulator, _kubectl) = cluster_with_events_key(NS, "unused-key").await;
    let dir = std::env::temp_dir().join(format!("agr-sns-aws-pinned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pinned = dir.join("sns-certificates");
    std::fs::create_dir_all(&pinned).unwrap();
    std::fs::write(pinned.join(AWS_CERT_FILE), AWS_CERT).unwrap();
    let proxy = RefusingProxy::start().await;
    let (controller, ops, sns) = spawn_for_aws_messages(
        emulator.kubeconfig_path(),
        &dir,
        &proxy,
        &format!("    pinnedFingerprints: [\"{AWS_FINGERPRINT}\"]\n"),
        &["--sns-pinned-certificates-dir", pinned.to_str().unwrap()],
    );
    let http = crate::support::binary::http_client();
    wait_ready(&http, &ops, &controller).await;
    let clock = dir.join("clock");

    // One byte changed anywhere in what AWS signed: refused as a bad signature, nothing fetched.
    for (body, from, to) in [
        (AWS_V1, "\"Hello world\"", "\"Hello worle\""),
        (AWS_V2, "21:24:08.324Z", "21:24:08.325Z"),
        (AWS_V2, "\"CXVqp9", "\"CXVqp8"),
    ] {
        let changed = body.replacen(from, to, 1);
        assert_ne!(changed, body);
        let refused = post_sns(&http, &sns, changed).await;
        assert_eq!(
            (refused.0, refused.1.as_str()),
            (403, "bad_signature"),
            "{from} -> {to}: {refused:?}\n{}",
            controller.log()
        );
    }

    // The messages as AWS sent them: verified with the pinned certificate. "Hello world" is not
    // a signal, so the verified message is answered 200 `unusable` (a forgery gets 403 above).
    for body in [AWS_V1, AWS_V2] {
        let verified = post_sns(&http, &sns, body.to_string()).await;
        assert_eq!(
            (verified.0, verified.1.as_str()),
            (200, "unusable"),
            "{verified:?}\n{}",
            controller.log()
        );
    }
    // Verified means remembered: the same delivery again is a replay, not a new message.
    let again = post_sns(&http, &sns, AWS_V2.to_string()).await;
    assert_eq!((again.0, again.1.as_str()), (200, "replayed"), "{again:?}");

    // Pinning relaxes no time check: at today's instant the genuine message is stale.
    std::fs::write(&clock, jiff::Timestamp::now().to_string()).unwrap();
    let stale = post_sns(&http, &sns, AWS_V1.to_string()).await;
    assert_eq!((stale.0, stale.1.as_str()), (403, "stale"), "{stale:?}");

    // Nothing was fetched or even attempted.
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    let metrics = http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fetches: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("autoguardrails_sns_certificate_fetches_total{"))
        .collect();
    assert!(fetches.iter().all(|l| l.ends_with(" 0")), "{fetches:?}");
    // The start-up log names the pinned certificate and says it has expired (2022-08-17).
    let log = controller.log();
    assert!(
        log.contains("pinned SNS certificate is outside its validity period")
            && log.contains(AWS_CERT_FILE)
            && log.contains("2022-08-17T23:59:59Z"),
        "{log}"
    );
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pin_a_message_aws_signed_makes_the_binary_fetch_its_certificate() {
    let (emulator, _kubectl) = cluster_with_events_key(NS, "unused-key").await;
    let dir = std::env::temp_dir().join(format!("agr-sns-aws-fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = RefusingProxy::start().await;
    let (controller, ops, sns) =
        spawn_for_aws_messages(emulator.kubeconfig_path(), &dir, &proxy, "", &[]);
    let http = crate::support::binary::http_client();
    wait_ready(&http, &ops, &controller).await;

    let answer = post_sns(&http, &sns, AWS_V2.to_string()).await;
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (503, "retry_later"),
        "{answer:?}\n{}",
        controller.log()
    );
    assert!(answer.2.contains(AWS_CERT_FILE), "{answer:?}");
    assert_eq!(
        proxy.requests(),
        vec!["CONNECT sns.us-east-2.amazonaws.com:443 HTTP/1.1".to_string()],
        "the binary asks for exactly the SigningCertURL's host"
    );
    assert_eq!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_sns_certificate_fetches_total{outcome=\"failed\"}"
        )
        .await,
        1.0
    );
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
}
