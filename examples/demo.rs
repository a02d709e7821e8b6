//! `make demo`: the whole product on one machine with nothing but Rust. Starts the Kubernetes API
//! emulator, a loopback Slack receiver and the real `autoguardrails controller` binary with the
//! in-memory AWS backend; applies the example policies; delivers a cost anomaly through the real
//! `/events` endpoint; walks the Quarantine through PendingApproval → approve → Active (the deny
//! shown) → release, printing each step and the `kubectl` command a person would type.
//! Interactive (a terminal): stays up for kubectl until Ctrl-C. Otherwise: finishes and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoguardrails::controller::crd::{GuardrailPolicy, Phase, Quarantine};
use axum::routing::post;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::{Emulator, Options};
use serde_json::{Value, json};

const NS: &str = "autoguardrails";
const API_KEY: &str = "demo-events-key";
/// The demo dashboard's bearer token (a real installation reads it from a Secret).
const DASHBOARD_TOKEN: &str = "demo-dashboard-token-0001";
const SIGNAL: &str = "policies/signals/anomaly-prod-sagemaker-5200.yaml";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

fn kubectl(args: &str) {
    println!("    $ kubectl {args}");
}

struct ControllerProcess(Child);

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/demo");
    std::fs::create_dir_all(&work)?;

    step("Starting the Kubernetes API emulator (in memory, no cluster needed)");
    let emulator = Emulator::start_with(Options {
        kubeconfig_path: Some(work.join("kubeconfig")),
        ..Options::default()
    })
    .await?;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();
    println!(
        "    API server {}  kubeconfig {}",
        emulator.url(),
        kubeconfig.display()
    );
    let client = emulator.client().await?;

    step("Installing the CRDs");
    kubectl("apply -f crds/");
    emulator.apply_crd_yaml(&autoguardrails::controller::crd::crds_yaml()?)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    kubectl(&format!("create namespace {NS}"));

    step("Starting a loopback Slack receiver (stands in for a Slack incoming webhook)");
    let (slack_url, slack_messages) = slack_receiver().await?;
    println!("    webhook {slack_url}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for (name, key, value) in [
        ("slack-webhook", "url", slack_url.as_str()),
        ("events-key", "apiKey", API_KEY),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "stringData": {key: value},
                }))?,
            )
            .await?;
        kubectl(&format!(
            "create secret generic {name} -n {NS} --from-literal={key}=…"
        ));
    }

    step("Starting `autoguardrails controller` with the in-memory AWS backend");
    let metrics_port = free_port()?;
    let signals_port = free_port()?;
    let dashboard_port = free_port()?;
    let token_file = work.join("dashboard-token");
    std::fs::write(&token_file, format!("{DASHBOARD_TOKEN}\n"))?;
    let config = work.join("controller.yaml");
    std::fs::write(
        &config,
        controller_config(
            metrics_port,
            signals_port,
            dashboard_port,
            &token_file,
            root,
        ),
    )?;
    let log = work.join("controller.log");
    let binary = controller_binary()?;
    let child = Command::new(&binary)
        .args(["controller", "--config"])
        .arg(&config)
        .args(["--log-format", "text"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "autoguardrails-demo-0")
        .env("POD_NAMESPACE", NS)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let controller = ControllerProcess(child);
    println!(
        "    {} controller --config {}   (log: {})",
        binary.display(),
        config.display(),
        log.display()
    );
    let http = reqwest::Client::new();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for(
        "the controller to be ready",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            let url = format!("{ops}/readyz");
            async move { matches!(http.get(url).send().await, Ok(r) if r.status() == 200) }
        },
    )
    .await?;
    println!("    ready: {ops}/readyz answers 200; metrics at {ops}/metrics");
    let dashboard = format!("http://127.0.0.1:{dashboard_port}/dashboard/quarantines");
    println!("    dashboard (live, read-only): {dashboard}   token: {DASHBOARD_TOKEN}");

    step("Applying the example policies");
    let policies: Api<GuardrailPolicy> = Api::namespaced(client.clone(), NS);
    let mut applied = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("policies"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        if !text.contains("kind: GuardrailPolicy") {
            println!(
                "    (skipping {}: flat format; `autoguardrails policy convert` turns it into a manifest)",
                file.display()
            );
            continue;
        }
        let policy: GuardrailPolicy = serde_saphyr::from_str(&text)?;
        let name = policy.name_any();
        policies
            .patch(
                &name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&policy),
            )
            .await?;
        kubectl(&format!(
            "apply -f policies/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        ));
        applied.push(name);
    }
    wait_for(
        "every policy to report Ready",
        Duration::from_secs(30),
        || {
            let policies = policies.clone();
            async move {
                policies.list(&Default::default()).await.is_ok_and(|l| {
                    l.items.iter().all(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                            .is_some_and(|c| c.status == "True")
                    })
                })
            }
        },
    )
    .await?;
    kubectl(&format!("get guardrailpolicies -n {NS}"));
    println!("    {:<22} {:<8} {:<6}", "NAME", "MODE", "READY");
    for p in policies.list(&Default::default()).await?.items {
        println!(
            "    {:<22} {:<8} {:<6}",
            p.name_any(),
            format!("{:?}", p.spec.mode),
            "True"
        );
    }

    step("A cost anomaly arrives: SageMaker spend up 12x in account 333333333333 (USD 5,200)");
    let signal: Value = serde_saphyr::from_str(&std::fs::read_to_string(root.join(SIGNAL))?)?;
    let event = eventbridge_event(&signal);
    println!(
        "    POST http://127.0.0.1:{signals_port}/events  (an EventBridge API destination delivery)"
    );
    let answer = http
        .post(format!("http://127.0.0.1:{signals_port}/events"))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await?;
    let status = answer.status();
    let text = answer.text().await?;
    println!("    answer {status}: {text}");
    if !status.is_success() {
        return Err(format!("the endpoint refused the signal: {status} {text}").into());
    }

    let quarantines: Api<Quarantine> = Api::namespaced(client.clone(), NS);
    let name = quarantines
        .list(&Default::default())
        .await?
        .items
        .first()
        .map(|q| q.name_any())
        .ok_or("no Quarantine was created")?;
    step(&format!(
        "Quarantine {name} waits for a person (the policy is Manual)"
    ));
    wait_phase(&quarantines, &name, Phase::PendingApproval).await?;
    kubectl(&format!(
        "wait -n {NS} --for=jsonpath='{{.status.phase}}'=PendingApproval quarantine/{name}"
    ));
    show_quarantine(&quarantines, &name).await?;
    show_iam(&http, &ops, "before approval: nothing attached").await?;

    step("Approving it");
    kubectl(&format!(
        "annotate -n {NS} quarantine/{name} autoguardrails.io/approve='ok: runaway training job, ticket OPS-1234'"
    ));
    annotate(
        &quarantines,
        &name,
        "autoguardrails.io/approve",
        "ok: runaway training job, ticket OPS-1234",
    )
    .await?;
    wait_phase(&quarantines, &name, Phase::Active).await?;
    kubectl(&format!(
        "wait -n {NS} --for=jsonpath='{{.status.phase}}'=Active quarantine/{name}"
    ));
    show_quarantine(&quarantines, &name).await?;
    show_iam(
        &http,
        &ops,
        "the deny is attached to ml-training-pipeline only (break-glass is excepted)",
    )
    .await?;

    step("Releasing it (the team fixed the job)");
    kubectl(&format!(
        "annotate -n {NS} quarantine/{name} autoguardrails.io/release='job stopped, budget ok'"
    ));
    annotate(
        &quarantines,
        &name,
        "autoguardrails.io/release",
        "job stopped, budget ok",
    )
    .await?;
    wait_phase(&quarantines, &name, Phase::Released).await?;
    show_quarantine(&quarantines, &name).await?;
    show_iam(
        &http,
        &ops,
        "after release: the deny and our policy are gone",
    )
    .await?;

    velocity(&http, &quarantines, &ops, signals_port).await?;

    step("History and Events, as `kubectl describe` shows them");
    kubectl(&format!("describe -n {NS} quarantine/{name}"));
    let q = quarantines.get(&name).await?;
    for entry in q.status.map(|s| s.history).unwrap_or_default() {
        let value = serde_json::to_value(&entry)?;
        println!(
            "    {}  {:<22} {:<12} {}",
            value["time"].as_str().unwrap_or(""),
            value["event"].as_str().unwrap_or(""),
            value["actor"].as_str().unwrap_or(""),
            value["message"].as_str().unwrap_or("")
        );
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    step("Slack messages the team received");
    let messages = slack_messages.lock().map(|m| m.clone()).unwrap_or_default();
    if messages.is_empty() {
        println!("    (none yet: delivery is asynchronous and never blocks enforcement)");
    }
    for m in messages {
        println!("    • {m}");
    }

    let scrape = http
        .get(format!("{ops}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    step("A few metrics (curl /metrics)");
    for line in scrape.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("autoguardrails_signals_total")
                || l.starts_with("autoguardrails_iam_calls_total")
                || l.starts_with("autoguardrails_leader"))
    }) {
        println!("    {line}");
    }

    println!(
        "\nDemo walked signal → PendingApproval → approve → Active → release, then contained a launch burst, in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        step("Still running: try it yourself");
        println!("    export KUBECONFIG={}", kubeconfig.display());
        println!("    kubectl get grp,qt -n {NS}");
        println!("    kubectl describe -n {NS} quarantine/{name}");
        println!(
            "    curl -s -H 'x-api-key: {API_KEY}' -d @tests/fixtures/signals/eventbridge-anomaly.json \
             http://127.0.0.1:{signals_port}/events"
        );
        println!("    curl -s {ops}/debug/iam   # the in-memory IAM");
        println!("    open {dashboard}   (sign in with {DASHBOARD_TOKEN})");
        println!(
            "    curl -s -H 'authorization: Bearer {DASHBOARD_TOKEN}' http://127.0.0.1:{dashboard_port}/dashboard/api/quarantines"
        );
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    drop(controller);
    Ok(())
}

/// Spend velocity: CloudTrail RunInstances events of one CI role on `/events`, until its burn
/// crosses the Auto policy `ci-velocity` (policies/ci-velocity-auto.yaml); the time from the
/// crossing event's POST to the deny attached in the in-memory IAM is printed.
async fn velocity(
    http: &reqwest::Client,
    quarantines: &Api<Quarantine>,
    ops: &str,
    signals_port: u16,
) -> Result<(), Error> {
    step(
        "Spend velocity: role ci-deployer launches p3.2xlarge instances, one call at a time \
         (CloudTrail events via EventBridge on /events)",
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/velocity/run-instances.json"),
    )?)?;
    let url = format!("http://127.0.0.1:{signals_port}/events");
    let mut crossed = None;
    for k in 0..20 {
        let mut event = fixture.clone();
        let now = jiff::Timestamp::now().to_string();
        let account = "111111111111";
        event["account"] = account.into();
        let detail = &mut event["detail"];
        detail["eventID"] = format!("demo-launch-{k:02}").into();
        detail["eventTime"] = now.into();
        detail["recipientAccountId"] = account.into();
        detail["userIdentity"]["arn"] =
            format!("arn:aws:sts::{account}:assumed-role/ci-deployer/gh-run-4711").into();
        detail["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] =
            format!("arn:aws:iam::{account}:role/ci-deployer").into();
        detail["responseElements"]["instancesSet"]["items"] =
            json!([{"instanceId": format!("i-demo{k:02}"), "instanceType": "p3.2xlarge"}]);
        let sent = Instant::now();
        let answer = http
            .post(&url)
            .header("x-api-key", API_KEY)
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let reason = body["reason"].as_str().unwrap_or_default().to_string();
        if !status.is_success() {
            return Err(
                format!("the endpoint refused a CloudTrail event: {status} {reason}").into(),
            );
        }
        if k < 2 || reason.contains("signal velocity-") {
            println!("    RunInstances #{:<2} answer {status}: {reason}", k + 1);
        } else if k == 2 {
            println!("    …");
        }
        if reason.contains("signal velocity-") {
            crossed = Some(sent);
            break;
        }
    }
    let sent = crossed.ok_or("the launches never crossed the velocity threshold")?;
    let name = quarantines
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|q| q.spec.policy_ref.name == "ci-velocity")
        .map(|q| q.name_any())
        .ok_or("no velocity Quarantine was created")?;
    wait_phase(quarantines, &name, Phase::Active).await?;
    let contained = sent.elapsed();
    show_quarantine(quarantines, &name).await?;
    show_iam_in(
        http,
        ops,
        "111111111111",
        "the deny is on ci-deployer only (etl is in scope but started nothing)",
    )
    .await?;
    println!(
        "    contained {:.0} ms after the crossing CloudTrail event reached /events (Auto mode; \
         in-memory IAM). AWS adds its CloudTrail → EventBridge delivery, typically a few minutes; \
         AWS Budgets would have evaluated this spend within up to about 8 hours.",
        contained.as_secs_f64() * 1e3
    );
    Ok(())
}

fn controller_binary() -> Result<PathBuf, Error> {
    if let Ok(path) = std::env::var("AGR_BIN") {
        return Ok(PathBuf::from(path));
    }
    // target/<profile>/examples/demo → target/<profile>/autoguardrails
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("autoguardrails"))
        .ok_or("cannot locate the autoguardrails binary; set AGR_BIN")?;
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} does not exist: run `cargo build --bin autoguardrails` (make demo does)",
            candidate.display()
        )
        .into())
    }
}

fn controller_config(
    metrics_port: u16,
    signals_port: u16,
    dashboard_port: u16,
    token_file: &Path,
    root: &Path,
) -> String {
    let token_file = token_file.display();
    let proposal = root.join("tests/fixtures/dashboard/proposal.json");
    let proposal = proposal.display();
    format!(
        r#"# Written by the demo. The memory backend keeps IAM inside the controller process.
clusterId: demo
namespaces: [{NS}]
driftPeriod: 5s
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
leaderElection:
  leaseNamespace: {NS}
aws:
  backend: memory
  memory:
    "111111111111": {{ roles: [dev-ci, ci-deployer, etl] }}
    "222222222222": {{ roles: [sandbox-developer, sandbox-automation] }}
    "333333333333": {{ roles: [ml-training-pipeline, break-glass] }}
    "444444444444": {{ users: [data-exporter] }}
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  initialBackoff: 1s
velocity:
  enabled: true
  signalAtUsd: 50
dashboard:
  enabled: true
  addr: 127.0.0.1:{dashboard_port}
  tokenFile: {token_file}
  proposalFile: {proposal}
"#
    )
}

/// An EventBridge "Anomaly Detected" event carrying the example signal's figures.
fn eventbridge_event(signal: &Value) -> Value {
    let account = signal["accountId"].as_str().unwrap_or("333333333333");
    let id = signal["id"].as_str().unwrap_or("demo-anomaly");
    let impact = signal["impactUsd"].as_f64().unwrap_or(5200.0);
    let service = signal["service"].as_str().unwrap_or("Amazon SageMaker");
    let region = signal["region"].as_str().unwrap_or("eu-west-1");
    let now = jiff::Timestamp::now();
    let monitor =
        format!("arn:aws:ce::{account}:anomalymonitor/2a6f7e1c-0b3d-4f5e-9a8b-7c6d5e4f3a2b");
    json!({
        "version": "0",
        "id": "0d4f3e2a-demo-4b1c-9e8d-7f6a5b4c3d2e",
        "detail-type": "Anomaly Detected",
        "source": "aws.ce",
        "account": account,
        "time": now.to_string(),
        "region": "us-east-1",
        "resources": [monitor],
        "detail": {
            "anomalyId": id,
            "anomalyStartDate": now.to_string(),
            "anomalyEndDate": now.to_string(),
            "anomalyDetailsLink": format!("https://console.aws.amazon.com/cost-management/home#/anomaly-detection/monitors/demo/anomalies/{id}"),
            "dimensionalValue": service,
            "monitorArn": monitor,
            "impact": {
                "maxImpact": impact / 2.0,
                "totalActualSpend": impact * 1.1,
                "totalExpectedSpend": impact * 0.1,
                "totalImpact": impact,
                "totalImpactPercentage": 1100.0
            },
            "rootCauses": [{
                "linkedAccount": account,
                "linkedAccountName": "production",
                "region": region,
                "service": service,
                "usageType": "EU-ml.p4d.24xlarge-Training"
            }]
        }
    })
}

async fn slack_receiver() -> Result<(String, Arc<Mutex<Vec<String>>>), Error> {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let store = messages.clone();
    let app = axum::Router::new().route(
        "/services/demo",
        post(move |body: String| {
            let store = store.clone();
            async move {
                let text = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["text"].as_str().map(str::to_string))
                    .unwrap_or(body);
                if let Ok(mut m) = store.lock() {
                    m.push(text);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{address}/services/demo"), messages))
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn wait_phase(api: &Api<Quarantine>, name: &str, phase: Phase) -> Result<(), Error> {
    wait_for(
        &format!("{name} to be {phase:?}"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                api.get(name)
                    .await
                    .ok()
                    .and_then(|q| q.status.and_then(|s| s.phase))
                    == Some(phase)
            }
        },
    )
    .await
}

async fn annotate(api: &Api<Quarantine>, name: &str, key: &str, value: &str) -> Result<(), Error> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn show_quarantine(api: &Api<Quarantine>, name: &str) -> Result<(), Error> {
    let q = api.get(name).await?;
    let status = serde_json::to_value(q.status.unwrap_or_default())?;
    kubectl(&format!("get -n {NS} quarantine/{name}"));
    println!(
        "    PHASE={}  TARGETS={}  EXPIRES={}",
        status["phase"].as_str().unwrap_or("-"),
        status["targetsSummary"].as_str().unwrap_or("-"),
        status["expiresAt"].as_str().unwrap_or("-")
    );
    Ok(())
}

async fn show_iam(http: &reqwest::Client, ops: &str, title: &str) -> Result<(), Error> {
    show_iam_in(http, ops, "333333333333", title).await
}

async fn show_iam_in(
    http: &reqwest::Client,
    ops: &str,
    account: &str,
    title: &str,
) -> Result<(), Error> {
    let view: Value = http
        .get(format!("{ops}/debug/iam"))
        .send()
        .await?
        .json()
        .await?;
    println!("    IAM of {account} ({title}):");
    let account = &view[account];
    for p in account["principals"].as_array().into_iter().flatten() {
        println!(
            "      {:<24} attached: {}",
            p["name"].as_str().unwrap_or(""),
            p["attachedPolicies"]
        );
    }
    for policy in account["managedPolicies"].as_array().into_iter().flatten() {
        println!("      policy {}", policy["arn"].as_str().unwrap_or(""));
        if let Some(doc) = policy["document"].as_str() {
            let pretty = serde_json::from_str::<Value>(doc)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| doc.to_string());
            for line in pretty.lines() {
                println!("        {line}");
            }
        }
    }
    Ok(())
}
