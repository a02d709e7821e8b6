//! The spend-velocity signal through the real binary, as a user runs it (config file, env, kubectl,
//! the emulator, moto's IAM): CloudTrail "AWS API Call via CloudTrail" events arrive on `/events`;
//! a failed call counts nothing, replays count once, terminations lower the burn, the burn
//! survives a restart (the state file), and a burst of RunInstances from one role crosses the
//! threshold and quarantines that role — and only that role — in Auto mode with the deny attached
//! in IAM. Forged, oversized and malformed bodies get clear HTTP answers.

use crate::support::binary::{
    ControllerProcess, attached, cluster_with_events_key, create_roles, free_port, iam_client,
    wait_for,
};
use crate::support::moto;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NS: &str = "autoguardrails";
const API_KEY: &str = "velocity-test-key";
const CI: &str = "arn:aws:iam::123456789012:role/ci-deployer";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: runaway-launches
  namespace: autoguardrails
spec:
  mode: Auto
  match:
    sources: [Velocity]
    accountIds: ["123456789012"]
    minImpactUsd: 50
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/ci-deployer" }
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/etl" }
  deny:
    actions: ["ec2:RunInstances", "ec2:CreateNatGateway"]
  quarantine:
    ttl: 2h
    cooldown: 30m
"#;

const RUN: &str = include_str!("../fixtures/velocity/run-instances.json");
const TERMINATE: &str = include_str!("../fixtures/velocity/terminate-instances.json");
const FAILED: &str = include_str!("../fixtures/velocity/run-instances-failed.json");

/// A RunInstances event of one p3.2xlarge (USD 3.06/hour) by ci-deployer, a minute ago.
fn launch(id: &str) -> String {
    let mut event: Value = serde_json::from_str(RUN).unwrap();
    event["detail"]["eventID"] = id.into();
    event["detail"]["eventTime"] = minute_ago().into();
    event["time"] = minute_ago().into();
    event["detail"]["responseElements"]["instancesSet"]["items"] =
        json!([{"instanceId": format!("i-{id}"), "instanceType": "p3.2xlarge"}]);
    event.to_string()
}

fn terminate(id: &str, instances: &[&str]) -> String {
    let mut event: Value = serde_json::from_str(TERMINATE).unwrap();
    event["detail"]["eventID"] = id.into();
    event["detail"]["eventTime"] = minute_ago().into();
    let items: Vec<Value> = instances
        .iter()
        .map(|i| json!({"instanceId": format!("i-{i}")}))
        .collect();
    event["detail"]["requestParameters"]["instancesSet"]["items"] = items.into();
    event["detail"]["responseElements"] = Value::Null;
    event.to_string()
}

fn minute_ago() -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1)).to_string()
}

struct Answer {
    status: u16,
    outcome: String,
    reason: String,
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: String) -> Answer {
    let response = http
        .post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        outcome: body["outcome"].as_str().unwrap_or_default().to_string(),
        reason: body["reason"].as_str().unwrap_or_default().to_string(),
    }
}

/// ci-deployer's burn as `/velocity` on the operations listener reports it.
async fn burn(http: &reqwest::Client, ops: &str) -> (f64, u64) {
    let view: Value = http
        .get(format!("{ops}/velocity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["principal"] == CI)
        .map(|p| {
            (
                p["usdPerHour"].as_f64().unwrap(),
                p["resources"].as_u64().unwrap(),
            )
        })
        .unwrap_or((0.0, 0))
}

fn start(config: &Path, kubeconfig: &Path, log: PathBuf) -> ControllerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "controller",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("POD_NAME", "autoguardrails-0")
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

/// Ready, and leading: only the leader counts velocity events (a standby answers 503).
async fn wait_leading(http: &reqwest::Client, ops: &str) {
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        let leading = match http.get(format!("{ops}/metrics")).send().await {
            Ok(r) => r
                .text()
                .await
                .is_ok_and(|t| t.lines().any(|l| l == "autoguardrails_leader 1")),
            Err(_) => false,
        };
        ready && leading
    })
    .await;
}

async fn stop(controller: &mut ControllerProcess) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_launches_by_one_role_quarantines_that_role_in_auto_mode() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["ci-deployer", "etl"]).await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let metrics_port = free_port();
    let signals_port = free_port();
    let dir = std::env::temp_dir().join(format!("agr-velocity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state_file = dir.join("velocity-state.json");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
driftPeriod: 1s
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
  maxBodyBytes: 65536
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
velocity:
  enabled: true
  window: 1h
  horizon: 1h
  signalAtUsd: 50
  stateFile: {state}
  saveInterval: 1s
"#,
            moto = moto.url,
            state = state_file.display()
        ),
    )
    .unwrap();
    let mut controller = start(&config, &kubeconfig, dir.join("controller-1.log"));
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_leading(&http, &ops).await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/runaway-launches",
        "--timeout=60s",
    ]);
    let events = format!("http://127.0.0.1:{signals_port}/events");

    // Forged, oversized and malformed bodies get clear answers and count nothing.
    let forged = post(&http, &events, "wrong-key", launch("forged")).await;
    assert_eq!(
        (forged.status, forged.outcome.as_str()),
        (403, "unauthorized")
    );
    let mut oversized: Value = serde_json::from_str(&launch("big")).unwrap();
    oversized["detail"]["padding"] = "x".repeat(70_000).into();
    let oversized = post(&http, &events, API_KEY, oversized.to_string()).await;
    assert_eq!(
        (oversized.status, oversized.outcome.as_str()),
        (413, "too_large")
    );
    let mut malformed: Value = serde_json::from_str(&launch("m1")).unwrap();
    malformed["detail"]
        .as_object_mut()
        .unwrap()
        .remove("eventID");
    let malformed = post(&http, &events, API_KEY, malformed.to_string()).await;
    assert_eq!(malformed.status, 400, "{}", malformed.reason);
    assert_eq!(malformed.outcome, "malformed");
    assert!(malformed.reason.contains("eventID"), "{}", malformed.reason);
    let truncated = post(&http, &events, API_KEY, launch("m2")[..200].to_string()).await;
    assert_eq!(truncated.status, 400, "{}", truncated.reason);

    // A failed call (errorCode) counts nothing.
    let failed = post(&http, &events, API_KEY, FAILED.to_string()).await;
    assert_eq!(failed.status, 200);
    assert_eq!(failed.outcome, "unusable");
    assert!(failed.reason.contains("failed call"), "{}", failed.reason);
    assert_eq!(burn(&http, &ops).await, (0.0, 0));

    // 16 launches, each delivered twice: counted once (16 x 3.06 = 48.96 < 50).
    for k in 0..16 {
        let body = launch(&format!("burst-{k:02}"));
        let first = post(&http, &events, API_KEY, body.clone()).await;
        assert_eq!(
            (first.status, first.outcome.as_str()),
            (200, "accepted"),
            "{}",
            first.reason
        );
        let again = post(&http, &events, API_KEY, body).await;
        assert_eq!(
            (again.status, again.outcome.as_str()),
            (200, "replayed"),
            "{}",
            again.reason
        );
    }
    assert_eq!(burn(&http, &ops).await, (48.96, 16));

    // Terminations (by anyone) lower the burn of the role that launched.
    let ended = post(
        &http,
        &events,
        API_KEY,
        terminate("term-1", &["burst-00", "burst-01"]),
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.reason);
    assert!(ended.reason.contains("USD 42.84/hour"), "{}", ended.reason);
    assert_eq!(burn(&http, &ops).await, (42.84, 14));
    assert!(
        kubectl
            .run(&["get", "quarantines", "-n", NS, "-o", "name"])
            .trim()
            .is_empty(),
        "no quarantine below the threshold"
    );

    // A restart keeps the burn (the state file) and the ids counted.
    wait_for("the state file", Duration::from_secs(30), || async {
        std::fs::read_to_string(&state_file).is_ok_and(|t| t.contains("term-1"))
    })
    .await;
    stop(&mut controller).await;
    let mut controller = start(&config, &kubeconfig, dir.join("controller-2.log"));
    wait_for(
        "/readyz after the restart",
        Duration::from_secs(60),
        || async {
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
        },
    )
    .await;
    assert_eq!(burn(&http, &ops).await, (42.84, 14), "{}", controller.log());
    let replay = post(&http, &events, API_KEY, launch("burst-05")).await;
    assert_eq!(replay.outcome, "replayed", "{}", replay.reason);

    // Three more launches: 42.84 + 9.18 = 52.02 >= 50 crosses; the crossing event's answer
    // comes once the Quarantine exists.
    let mut crossed = None;
    for k in 16..19 {
        let answer = post(&http, &events, API_KEY, launch(&format!("burst-{k:02}"))).await;
        assert_eq!(
            answer.status,
            200,
            "{}\n{}",
            answer.reason,
            controller.log()
        );
        if answer.reason.contains("signal velocity-") {
            crossed = Some((k, answer.reason));
        }
    }
    let (k, reason) = crossed.expect("the burst crossed the threshold");
    assert_eq!(k, 18, "{reason}");
    assert!(reason.contains("1 created"), "{reason}");
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    assert!(name.starts_with("quarantine.autoguardrails.io/"), "{name}");
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    let quarantine: Value =
        serde_json::from_str(&kubectl.run(&["get", "-n", NS, &name, "-o", "json"])).unwrap();
    let spec = &quarantine["spec"];
    assert_eq!(spec["mode"], "Auto");
    assert_eq!(spec["signal"]["source"], "Velocity");
    assert_eq!(spec["signal"]["impactUsd"].as_f64(), Some(52.02));
    assert_eq!(
        spec["targets"],
        json!([{"kind": "IamRole", "arn": CI}]),
        "only the role that launched"
    );
    let summary = spec["signal"]["summary"].as_str().unwrap();
    assert!(summary.contains("role ci-deployer"), "{summary}");
    assert!(summary.contains("burst-02"), "names its events: {summary}");
    assert_eq!(
        attached(&iam, "ci-deployer").await.len(),
        1,
        "the deny is attached"
    );
    assert!(
        attached(&iam, "etl").await.is_empty(),
        "etl started nothing"
    );

    // More launches by the quarantined role change nothing: one Quarantine.
    let more = post(&http, &events, API_KEY, launch("burst-19")).await;
    assert_eq!(more.status, 200, "{}", more.reason);
    let names = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    assert_eq!(names.trim().lines().count(), 1, "{names}");
    stop(&mut controller).await;
}
