//! The user's path, end to end: the real `autoguardrails controller` binary (AWS SDK backend
//! against moto) runs against the Kubernetes API emulator; every step a person takes is a real
//! `kubectl` command: apply the CRDs and a Manual policy, watch the Quarantine appear as
//! PendingApproval after a signal arrives on `/events`, `kubectl annotate` approve, `kubectl wait`
//! for Active, see the deny on the role in IAM, release, see it gone. Then the controller's
//! metrics pass `promtool check metrics`, every API call it made is allowed by the Helm chart's
//! RBAC, and SIGTERM stops it cleanly and gives up the lease. A second scenario runs two and three
//! replicas and measures leader takeover after SIGTERM and after SIGKILL.

use crate::support::binary::{
    ControllerProcess, attached, cluster_with_events_key, create_roles, free_port, iam_client,
    wait_for,
};
use crate::support::moto;
use crate::support::promtool;
use crate::support::rbac;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NS: &str = "autoguardrails";
const MOTO_ACCOUNT: &str = "123456789012";
const API_KEY: &str = "binary-test-key";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-manual
  namespace: autoguardrails
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/dev-ci" }
  deny:
    actions: ["ec2:RunInstances", "ec2:CreateNatGateway"]
  quarantine:
    ttl: 2h
    approvalTimeout: 1h
    cooldown: 30m
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_drives_a_quarantine_with_kubectl_against_the_real_binary() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci", "etl"]).await;

    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let dir = std::env::temp_dir().join(format!("agr-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = crate::support::binary::ControllerConfig::sdk(NS, &moto.url)
        .setting("driftPeriod", "1s")
        .setting("retireEndedAfter", "1s")
        .setting("sweepPeriod", "2s")
        .events_key();
    let config = setup.write(&dir);
    let (metrics_port, signals_port) = (setup.metrics_port, setup.signals_port);
    // As the chart runs it (tests/support/binary.rs), the log in dir/controller.log.
    let mut controller =
        crate::support::binary::spawn_controller_with_env(&kubeconfig, &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;

    // The person applies a policy; the controller reports it Ready. (A short cooldown, so the
    // released quarantine is retired within the test.)
    let policy = POLICY.replace("cooldown: 30m", "cooldown: 1s");
    kubectl.run_with_input(&["apply", "-f", "-"], Some(&policy));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-manual",
        "--timeout=60s",
    ]);

    // A cost anomaly arrives through EventBridge on /events.
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(MOTO_ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(MOTO_ACCOUNT.into());
    event["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    let signals = format!("http://127.0.0.1:{signals_port}/events");
    let forged = http
        .post(&signals)
        .header("x-api-key", "wrong")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a wrong API key is refused");
    let answer = http
        .post(&signals)
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", controller.log());

    // The Quarantine exists when /events answered; it waits for approval.
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    assert!(name.starts_with("quarantine.autoguardrails.io/"), "{name}");
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=PendingApproval",
        &name,
        "--timeout=60s",
    ]);
    assert!(
        attached(&iam, "dev-ci").await.is_empty(),
        "nothing attached before approval"
    );
    let table = kubectl.run(&["get", "grp,qt", "-n", NS]);
    for column in [
        "MODE", "READY", "ACTIVE", "PHASE", "POLICY", "TARGETS", "EXPIRES",
    ] {
        assert!(table.contains(column), "column {column} in\n{table}");
    }
    assert!(table.contains("PendingApproval"), "{table}");

    // Approve with kubectl annotate; the deny is attached to dev-ci only.
    kubectl.run(&[
        "annotate",
        "-n",
        NS,
        &name,
        "autoguardrails.io/approve=approved by alice, ticket OPS-42",
    ]);
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    let deny = attached(&iam, "dev-ci").await;
    assert_eq!(deny.len(), 1, "one deny on dev-ci: {deny:?}");
    assert!(deny[0].contains(":policy/"), "{deny:?}");
    assert!(
        attached(&iam, "etl").await.is_empty(),
        "etl is not in scope"
    );
    let document = iam
        .get_policy_version()
        .policy_arn(&deny[0])
        .version_id("v1")
        .send()
        .await
        .unwrap();
    let text = document
        .policy_version()
        .and_then(|v| v.document())
        .unwrap_or_default()
        .to_string();
    let text = urlencoding_decode(&text);
    assert!(
        text.contains("ec2:RunInstances") && text.contains("Deny"),
        "{text}"
    );

    let described = kubectl.run(&["describe", "-n", NS, &name]);
    assert!(
        described.contains("approved by alice, ticket OPS-42"),
        "{described}"
    );
    assert!(described.contains("Events:"), "{described}");
    assert!(
        described.contains("Activated") || described.contains("Approved"),
        "{described}"
    );
    let annotations = kubectl.run(&[
        "get",
        "-n",
        NS,
        &name,
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(
        !annotations.contains("autoguardrails.io/approve"),
        "the handled annotation is cleared: {annotations}"
    );

    // Release; the deny is gone and so is our managed policy.
    kubectl.run(&[
        "annotate",
        "-n",
        NS,
        &name,
        "autoguardrails.io/release=cost fixed",
    ]);
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Released",
        &name,
        "--timeout=60s",
    ]);
    assert!(attached(&iam, "dev-ci").await.is_empty());
    let left = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    assert!(
        left.policies().is_empty(),
        "no managed policy of ours is left: {:?}",
        left.policies()
    );

    // A second after it ended (retireEndedAfter) and its cooldown, the released quarantine is
    // retired from the watch: labelled, our finalizer gone, its status kept (decision 154).
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.metadata.labels.autoguardrails\\.io/ended}=Released",
        &name,
        "--timeout=60s",
    ]);
    let finalizers = kubectl.run(&[
        "get",
        "-n",
        NS,
        &name,
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert!(
        !finalizers.contains("autoguardrails.io/deny-release"),
        "{finalizers}"
    );
    let working = kubectl.run(&[
        "get",
        "qt",
        "-n",
        NS,
        "-l",
        "!autoguardrails.io/ended",
        "-o",
        "name",
    ]);
    assert!(working.trim().is_empty(), "{working}");
    let phase = kubectl.run(&["get", "-n", NS, &name, "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase.trim(), "Released");

    // The scrape passes promtool and counts what happened.
    let scrape = http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(scrape.contains("autoguardrails_leader 1"), "leading");
    let metric = |prefix: &str| -> f64 {
        scrape
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(
        metric("autoguardrails_activation_latency_seconds_count"),
        1.0,
        "one activation observed once"
    );
    assert!(
        metric(r#"autoguardrails_iam_calls_total{operation="AttachRolePolicy",outcome="sent"}"#)
            == 1.0,
        "{scrape}"
    );
    assert_eq!(
        metric("autoguardrails_quarantines_retired_total"),
        1.0,
        "{scrape}"
    );
    promtool::check_metrics(&scrape);

    // SIGTERM: the process drains, gives up the lease and exits 0.
    let mut child = controller.child.take().unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "controller did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit {status:?}\n{}", controller.log());
    let holder = kubectl.run(&[
        "get",
        "lease",
        "-n",
        NS,
        "autoguardrails",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(
        holder.trim().is_empty(),
        "lease released, holder {holder:?}"
    );

    // Every API call the binary made is allowed by the chart's RBAC.
    let ours: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("autoguardrails/"))
        .collect();
    assert!(ours.len() > 10, "the controller's requests are recorded");
    // The chart installed the way this config needs: the /events key Secret named.
    let manifests = rbac::parse_manifests(&rbac::render_chart(
        r#"{"signals":{"events":{"apiKeySecret":{"name":"events-key","key":"apiKey"}}}}"#,
    ));
    let rules = rbac::Rbac::for_service_account(
        &manifests,
        rbac::SERVICE_ACCOUNT.0,
        rbac::SERVICE_ACCOUNT.1,
    );
    let denied = rules.check(&ours);
    assert!(
        denied.is_empty(),
        "calls the chart does not allow: {denied:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// IAM returns policy documents URL-encoded.
fn urlencoding_decode(text: &str) -> String {
    autoguardrails::aws::iam::decode_policy_document(text)
}

fn spawn_controller(kubeconfig: &Path, dir: &Path, name: &str, config: &str) -> ControllerProcess {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "controller",
            "--config",
            file.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", name)
        .env("POD_NAMESPACE", NS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    ControllerProcess {
        child: Some(child),
        log,
    }
}

fn replica_config(metrics_port: u16, signals_port: u16) -> String {
    format!(
        r#"clusterId: ha
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    "111111111111": {{ roles: [dev-ci] }}
leaderElection:
  leaseNamespace: {NS}
  leaseDuration: 3s
  renewDeadline: 2s
  retryPeriod: 250ms
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
"#
    )
}

struct Replica {
    process: ControllerProcess,
    ops: String,
    events: String,
}

async fn leading(http: &reqwest::Client, replica: &Replica) -> Option<bool> {
    let text = http
        .get(format!("{}/metrics", replica.ops))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(text.lines().any(|l| l == "autoguardrails_leader 1"))
}

async fn start_replica(
    http: &reqwest::Client,
    kubeconfig: &Path,
    dir: &Path,
    name: &str,
) -> Replica {
    let (metrics_port, signals_port) = (free_port(), free_port());
    let process = spawn_controller(
        kubeconfig,
        dir,
        name,
        &replica_config(metrics_port, signals_port),
    );
    let replica = Replica {
        process,
        ops: format!("http://127.0.0.1:{metrics_port}"),
        events: format!("http://127.0.0.1:{signals_port}/events"),
    };
    wait_for(&format!("{name} ready"), Duration::from_secs(60), || async {
        matches!(http.get(format!("{}/readyz", replica.ops)).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    replica
}

fn signal_process(replica: &mut Replica, signal: &str) {
    let pid = replica.process.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Two replicas of the binary: exactly one leads (the other is ready but not enforcing); on
/// SIGTERM the lease is handed over at once, after SIGKILL when it expires; the new leader
/// enforces a signal that arrived on the standby. Prints both takeover times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_and_enforces() {
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();
    let dir = std::env::temp_dir().join(format!("agr-ha-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let a = start_replica(&http, &kubeconfig, &dir, "replica-a").await;
    let b = start_replica(&http, &kubeconfig, &dir, "replica-b").await;
    wait_for("one leader", Duration::from_secs(30), || async {
        leading(&http, &a).await.unwrap_or(false) != leading(&http, &b).await.unwrap_or(false)
    })
    .await;
    let (mut leader, mut standby) = if leading(&http, &a).await == Some(true) {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        leading(&http, &standby).await,
        Some(false),
        "the standby does not lead"
    );
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        Some(
            &POLICY
                .replace("mode: Manual", "mode: Auto")
                .replace("123456789012", "111111111111"),
        ),
    );

    // Planned handover: SIGTERM releases the lease after draining.
    let stopped = Instant::now();
    signal_process(&mut leader, "-TERM");
    wait_for(
        "the standby to lead after SIGTERM",
        Duration::from_secs(30),
        || async { leading(&http, &standby).await == Some(true) },
    )
    .await;
    let graceful = stopped.elapsed();
    let mut child = leader.process.child.take().unwrap();
    assert!(child.wait().unwrap().success(), "{}", leader.process.log());

    // A third replica joins as standby; the leader is killed without a chance to release.
    let mut c = start_replica(&http, &kubeconfig, &dir, "replica-c").await;
    assert_eq!(leading(&http, &c).await, Some(false));
    std::mem::swap(&mut leader, &mut standby);
    drop(standby);
    let killed = Instant::now();
    signal_process(&mut leader, "-KILL");

    // A signal arrives on the surviving standby while nobody leads: intake answers truthfully.
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["detail"]["impact"]["totalImpact"] = serde_json::json!(700.0);
    let answer = http
        .post(&c.events)
        .header("x-api-key", API_KEY)
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", c.process.log());
    wait_for(
        "replica-c to lead after SIGKILL",
        Duration::from_secs(30),
        || async { leading(&http, &c).await == Some(true) },
    )
    .await;
    let crashed = killed.elapsed();
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        name.trim(),
        "--timeout=60s",
    ]);
    let iam: Value = http
        .get(format!("{}/debug/iam", c.ops))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let principals = iam["111111111111"]["principals"].as_array().unwrap();
    let dev_ci = principals.iter().find(|p| p["name"] == "dev-ci").unwrap();
    assert_eq!(
        dev_ci["attachedPolicies"].as_array().unwrap().len(),
        1,
        "{iam}"
    );
    println!(
        "leader takeover: after SIGTERM {:.2} s, after SIGKILL {:.2} s (leaseDuration 3 s, retryPeriod 250 ms)",
        graceful.as_secs_f64(),
        crashed.as_secs_f64()
    );
    signal_process(&mut c, "-TERM");
    let _ = c.process.child.take().unwrap().wait();
    let _ = std::fs::remove_dir_all(&dir);
}
