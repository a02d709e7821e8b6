//! End-to-end benchmark program (not a test): the real controllers and intake over the Kubernetes
//! API emulator and the in-memory IAM, measuring what users feel. It prints a table and one
//! machine-readable line per figure (`e2e <key> <value> <unit>`).
//!
//! `cargo bench --bench e2e` (or `make bench`, which runs the scale phase in a process of its own so
//! that its RSS figures start from a fresh heap). Sizes and phases come from the environment:
//! `AGR_BENCH_PHASES` (default `latency,drift,scale,cost`; `binary` runs the scale measurement on
//! the real `autoguardrails controller` binary, `AGR_BENCH_BINARY`, default `target/release/autoguardrails`), `AGR_BENCH_SINGLE` (50),
//! `AGR_BENCH_BURST` (1000), `AGR_BENCH_RELEASE_TTL_SECONDS` (60), `AGR_BENCH_DRIFT_SAMPLES` (10),
//! `AGR_BENCH_POLICIES` (10000), `AGR_BENCH_QUARANTINES` (100000), `AGR_BENCH_ACTIVE` (100),
//! `AGR_BENCH_STEADY_SECONDS` (60), `AGR_BENCH_CONCURRENCY` (16, the binary's `reconcileConcurrency`), `AGR_BENCH_LIVE` (a tenth of the quarantines: how many of the
//! seeded quarantines are live, waiting for approval, rather than Released), `AGR_BENCH_EMULATOR` (path of the `kube-emulator` binary,
//! default `target/release/kube-emulator`; the scale phase runs the emulator in a child process
//! so the controller's RSS is measured alone).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/controller.rs"]
#[allow(unused_imports)]
mod harness;

use std::collections::HashMap;
use std::io::BufRead as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoguardrails::aws::factory::StaticClients;
use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::aws::{Operation, PrincipalKind, PrincipalRef};
use autoguardrails::controller::crd::conditions::set_condition;
use autoguardrails::controller::crd::{
    GuardrailPolicy, HistoryEntry, Phase, PlannedDeny, Quarantine, QuarantineStatus, TargetState,
    TargetStatus,
};
use autoguardrails::controller::enforce::ownership::managed_policy_name;
use autoguardrails::controller::intake::SignalIntake;
use autoguardrails::controller::policy::{self, ControllerSettings, Input};
use autoguardrails::controller::poller::PollerSettings;
use autoguardrails::controller::reconcile::intake::Intake;
use autoguardrails::controller::reconcile::retire::ENDED_LABEL;
use autoguardrails::controller::reconcile::{self as controller, FINALIZER, Settings, desired};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::metrics::{CONTROLLER_POLICY, CONTROLLER_QUARANTINE, Metrics};
use futures::StreamExt as _;
use harness::{ACCOUNT, CLUSTER, Harness, NS};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The figures, in the order measured, for the closing table.
#[derive(Default)]
struct Report {
    rows: Vec<(String, String, String, String)>,
}

impl Report {
    /// Records one figure: prints the machine-readable line at once and keeps a table row.
    fn figure(&mut self, key: &str, value: f64, unit: &str, what: &str, target: &str) {
        println!("e2e {key} {value:.3} {unit}");
        self.rows.push((
            what.to_string(),
            format!("{value:.3} {unit}"),
            target.to_string(),
            key.to_string(),
        ));
    }

    fn print(&self) {
        println!();
        println!("| measure | result | target |");
        println!("| --- | --- | --- |");
        for (what, value, target, _) in &self.rows {
            println!("| {what} | {value} | {target} |");
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

fn millis(later: Timestamp, earlier: Timestamp) -> f64 {
    later.duration_since(earlier).as_secs_f64() * 1e3
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn role(name: &str) -> PrincipalRef {
    PrincipalRef {
        kind: PrincipalKind::Role,
        name: name.to_string(),
    }
}

/// A policy in Auto mode that reacts only to anomalies of service `service` and quarantines role
/// `role_name`, so every signal of the benchmark has its own policy and its own target.
fn policy_yaml(name: &str, service: &str, role_name: &str, ttl: &str) -> String {
    format!(
        r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: {name}
  namespace: {NS}
spec:
  mode: Auto
  match:
    sources: [CostAnomaly]
    accountIds: ["{ACCOUNT}"]
    minImpactUsd: 100
    services: ["{service}"]
  scope:
    principals:
      - {{ kind: IamRole, arn: "arn:aws:iam::{ACCOUNT}:role/{role_name}" }}
  deny:
    actions: ["ec2:RunInstances", "ec2:CreateNatGateway"]
  quarantine:
    ttl: {ttl}
    cooldown: 0s
"#
    )
}

fn signal(id: &str, service: &str) -> CostSignal {
    let mut s = harness::anomaly(id, ACCOUNT, 500.0);
    s.service = Some(service.to_string());
    s
}

/// First successful write of `operation` per role name, from the IAM write log, after `since`.
fn writes_by_role(
    iam: &InMemoryIam,
    operation: Operation,
    since: Timestamp,
) -> HashMap<String, Timestamp> {
    let mut out = HashMap::new();
    for record in iam.write_log() {
        if record.operation != operation || record.error.is_some() || record.at < since {
            continue;
        }
        if let Some(name) = record
            .arguments
            .split_whitespace()
            .next()
            .and_then(|p| p.strip_prefix("role/"))
        {
            out.entry(name.to_string()).or_insert(record.at);
        }
    }
    out
}

/// Waits until every role in `roles` has a write of `operation` after `since`; gives up after
/// `limit` and returns what it saw.
async fn wait_writes(
    iam: &InMemoryIam,
    operation: Operation,
    since: Timestamp,
    roles: &[String],
    limit: Duration,
) -> HashMap<String, Timestamp> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = writes_by_role(iam, operation, since);
        if roles.iter().all(|r| seen.contains_key(r)) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn create_policies(
    client: &Client,
    policies: Vec<String>,
    concurrency: usize,
) -> Vec<GuardrailPolicy> {
    let api: Api<GuardrailPolicy> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(policies)
        .map(|yaml| {
            let api = api.clone();
            async move {
                let policy: GuardrailPolicy = serde_saphyr::from_str(&yaml).expect("policy yaml");
                api.create(&PostParams::default(), &policy)
                    .await
                    .expect("create policy")
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn reconciles(metrics: &Metrics, controller: &str) -> u64 {
    metrics.reconciles.with_label_values(&[controller]).get()
}

/// Waits until the reconcile counters stop moving for `quiet`.
async fn wait_quiet(metrics: &Metrics, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = (0, 0);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        let now = (
            reconciles(metrics, CONTROLLER_POLICY),
            reconciles(metrics, CONTROLLER_QUARANTINE),
        );
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    // Logs only when asked (`RUST_LOG=autoguardrails=debug`): they cost time of their own.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let phases = std::env::var("AGR_BENCH_PHASES")
        .unwrap_or_else(|_| "latency,drift,scale,cost".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report::default();
    let started = Instant::now();
    if phases.contains("latency") || phases.contains("drift") {
        runtime.block_on(latency_release_drift(&mut report, &phases));
    }
    if phases.contains("scale") {
        if phases.contains("latency") || phases.contains("drift") {
            println!(
                "note: the scale phase runs after others in this process; its RSS figures start from their heap and are not comparable (make bench runs it alone)"
            );
        }
        runtime.block_on(scale(&mut report));
    }
    if phases.contains("binary") {
        runtime.block_on(binary_scale(&mut report));
    }
    if phases.contains("cost") {
        cost_explorer(&mut report);
    }
    report.print();
    println!(
        "\ne2e: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// Signal → attach latency (1 at a time, then a burst), release lag after expiresAt, and drift
/// repair after an outside detach, at the default settings, then drift at the test settings.
async fn latency_release_drift(report: &mut Report, phases: &str) {
    let single = setting("AGR_BENCH_SINGLE", 50);
    let burst = setting("AGR_BENCH_BURST", 1000);
    let ttl_seconds = setting("AGR_BENCH_RELEASE_TTL_SECONDS", 60);
    let drift_samples = setting("AGR_BENCH_DRIFT_SAMPLES", 10).min(single);
    let defaults = Settings {
        cluster_id: CLUSTER.into(),
        ..Settings::default()
    };
    println!(
        "latency: {single} single signals, a burst of {burst}, release ttl {ttl_seconds} s, {drift_samples} drift samples (controller at default settings: drift period {:?})",
        defaults.drift_period
    );
    let mut h = Harness::start_with(defaults).await;
    h.iam.outside(|o| {
        for i in 0..single {
            o.create_role(&format!("single-{i:05}"));
        }
        for i in 0..burst {
            o.create_role(&format!("burst-{i:05}"));
        }
    });
    let mut yamls: Vec<String> = (0..single)
        .map(|i| {
            policy_yaml(
                &format!("single-{i:05}"),
                &format!("single-service-{i:05}"),
                &format!("single-{i:05}"),
                "1h",
            )
        })
        .collect();
    yamls.extend((0..burst).map(|i| {
        policy_yaml(
            &format!("burst-{i:05}"),
            &format!("burst-service-{i:05}"),
            &format!("burst-{i:05}"),
            &format!("{ttl_seconds}s"),
        )
    }));
    let total_policies = yamls.len();
    let setup = Instant::now();
    create_policies(&h.client, yamls, 16).await;
    while h.running().stores.policies().len() < total_policies {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_quiet(&h.metrics, Duration::from_secs(2), Duration::from_secs(120)).await;
    println!(
        "  {total_policies} policies created and reconciled in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let intake = h.intake();

    // ---- one signal at a time
    let mut single_latencies = Vec::new();
    let mut single_intake = Vec::new();
    for i in 0..single {
        let role_name = format!("single-{i:05}");
        let s = signal(
            &format!("single-anomaly-{i:05}"),
            &format!("single-service-{i:05}"),
        );
        let sent = Timestamp::now();
        let outcome = intake.submit(&s).await.expect("intake");
        let returned = Timestamp::now();
        assert!(
            outcome.outcomes.iter().any(|o| o.created),
            "signal {i} created its quarantine"
        );
        let seen = wait_writes(
            &h.iam,
            Operation::AttachRolePolicy,
            sent,
            std::slice::from_ref(&role_name),
            Duration::from_secs(30),
        )
        .await;
        let Some(at) = seen.get(&role_name) else {
            panic!("signal {i}: the deny was not attached within 30 s");
        };
        single_latencies.push(millis(*at, sent));
        single_intake.push(millis(returned, sent));
    }
    let single_latencies = sorted(single_latencies);
    let single_intake = sorted(single_intake);
    report.figure(
        "single.intake_ms.p50",
        percentile(&single_intake, 0.5),
        "ms",
        "1 signal: intake returned (Quarantine exists), p50",
        "",
    );
    report.figure(
        "single.attach_ms.p50",
        percentile(&single_latencies, 0.5),
        "ms",
        &format!("1 signal → deny attached, p50 ({single} runs)"),
        "",
    );
    report.figure(
        "single.attach_ms.p99",
        percentile(&single_latencies, 0.99),
        "ms",
        &format!("1 signal → deny attached, p99 ({single} runs)"),
        "< 500 ms",
    );

    // ---- drift repair at the default settings (the single quarantines are Active for 1 h)
    if phases.contains("drift") {
        drift(report, &h, drift_samples, "defaults", "< 30 s").await;
    }

    // ---- a burst of near-simultaneous signals
    if phases.contains("latency") && burst > 0 {
        let roles: Vec<String> = (0..burst).map(|i| format!("burst-{i:05}")).collect();
        let burst_start = Timestamp::now();
        let mut tasks = Vec::new();
        for i in 0..burst {
            let intake = intake.clone();
            tasks.push(tokio::spawn(async move {
                let s = signal(
                    &format!("burst-anomaly-{i:05}"),
                    &format!("burst-service-{i:05}"),
                );
                let sent = Timestamp::now();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match intake.submit(&s).await {
                        Ok(_) => break,
                        Err(e) if attempts < 5 => {
                            eprintln!("burst signal {i}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("burst signal {i}: {e}"),
                    }
                }
                (format!("burst-{i:05}"), sent, Timestamp::now())
            }));
        }
        let mut sent_at = HashMap::new();
        let mut intake_ms = Vec::new();
        for task in tasks {
            let (role_name, sent, returned) = task.await.expect("burst task");
            intake_ms.push(millis(returned, sent));
            sent_at.insert(role_name, sent);
        }
        let intake_done = Timestamp::now();
        let attached = wait_writes(
            &h.iam,
            Operation::AttachRolePolicy,
            burst_start,
            &roles,
            Duration::from_secs(300),
        )
        .await;
        let missing = roles.iter().filter(|r| !attached.contains_key(*r)).count();
        let latencies = sorted(
            roles
                .iter()
                .filter_map(|r| Some(millis(*attached.get(r)?, *sent_at.get(r)?)))
                .collect(),
        );
        let last_attach = attached.values().max().copied().unwrap_or(burst_start);
        let intake_ms = sorted(intake_ms);
        report.figure(
            "burst.intake_all_s",
            millis(intake_done, burst_start) / 1e3,
            "s",
            &format!("{burst} signals: every Quarantine created (intake returned)"),
            "",
        );
        report.figure(
            "burst.intake_ms.p99",
            percentile(&intake_ms, 0.99),
            "ms",
            &format!("{burst} signals: intake call p99"),
            "",
        );
        report.figure(
            "burst.attach_ms.p50",
            percentile(&latencies, 0.5),
            "ms",
            &format!("{burst} signals → deny attached, p50"),
            "",
        );
        report.figure(
            "burst.attach_ms.p99",
            percentile(&latencies, 0.99),
            "ms",
            &format!("{burst} signals → deny attached, p99"),
            "",
        );
        report.figure(
            "burst.contained_s",
            millis(last_attach, burst_start) / 1e3,
            "s",
            &format!("{burst} signals contained (first signal → last attach)"),
            "< 30 s",
        );
        report.figure(
            "burst.not_attached",
            missing as f64,
            "quarantines",
            "burst quarantines not attached within 300 s",
            "0",
        );

        // ---- release lag: the burst quarantines expire together (ttl after activation)
        // The status (with expiresAt) is written just after the attach: wait until every burst
        // quarantine has it.
        let mut expiry: HashMap<String, Timestamp> = HashMap::new();
        let listed_by = Instant::now() + Duration::from_secs(60);
        while expiry.len() < burst && Instant::now() < listed_by {
            expiry = h
                .quarantines()
                .list(&ListParams::default())
                .await
                .expect("list quarantines")
                .items
                .into_iter()
                .filter_map(|q| {
                    let target = q.spec.targets.first()?.arn.rsplit('/').next()?.to_string();
                    let expires = q.status.as_ref()?.expires_at.as_ref()?.0;
                    target.starts_with("burst-").then_some((target, expires))
                })
                .collect();
            if expiry.len() < burst {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let first_expiry = expiry.values().min().copied().unwrap_or(burst_start);
        let last_expiry = expiry.values().max().copied().unwrap_or(burst_start);
        println!(
            "  release: {} burst quarantines expire between {first_expiry} and {last_expiry} ({:.1} s apart); waiting",
            expiry.len(),
            millis(last_expiry, first_expiry) / 1e3
        );
        let wait = last_expiry
            .duration_since(Timestamp::now())
            .as_secs_f64()
            .max(0.0)
            + 60.0;
        let detached = wait_writes(
            &h.iam,
            Operation::DetachRolePolicy,
            burst_start,
            &roles,
            Duration::from_secs_f64(wait),
        )
        .await;
        let lags = sorted(
            expiry
                .iter()
                .filter_map(|(r, e)| Some(millis(*detached.get(r)?, *e)))
                .collect(),
        );
        let not_released = roles.iter().filter(|r| !detached.contains_key(*r)).count();
        report.figure(
            "release.expiry_spread_s",
            millis(last_expiry, first_expiry) / 1e3,
            "s",
            &format!("{} quarantines: spread of expiresAt", expiry.len()),
            "",
        );
        report.figure(
            "release.lag_ms.p50",
            percentile(&lags, 0.5),
            "ms",
            "release lag after expiresAt (detach − expiresAt), p50",
            "",
        );
        report.figure(
            "release.lag_ms.p99",
            percentile(&lags, 0.99),
            "ms",
            "release lag after expiresAt, p99",
            "< 2 s",
        );
        report.figure(
            "release.not_released",
            not_released as f64,
            "quarantines",
            "not detached within 60 s of the last expiry",
            "0",
        );
    }

    // ---- drift repair at the test settings (drift period 500 ms)
    if phases.contains("drift") {
        h.restart(Some(harness::test_settings())).await;
        wait_quiet(&h.metrics, Duration::from_secs(3), Duration::from_secs(120)).await;
        drift(report, &h, drift_samples, "test_settings", "").await;
    }
    h.stop().await;
}

/// Detaches the deny of `samples` Active single quarantines from outside at the same moment and
/// measures until the controller attached each again.
async fn drift(report: &mut Report, h: &Harness, samples: usize, label: &str, target: &str) {
    let period = h.settings.drift_period;
    let state = h.iam.state();
    let mut roles = Vec::new();
    let mut detaches = Vec::new();
    for i in 0..samples {
        let name = format!("single-{i:05}");
        let ours: Vec<String> = state
            .attached(&role(&name))
            .into_iter()
            .filter(|a| a.contains("/autoguardrails/"))
            .collect();
        if let Some(arn) = ours.into_iter().next() {
            roles.push(name.clone());
            detaches.push((name, arn));
        }
    }
    let at = Timestamp::now();
    h.iam.outside(|o| {
        for (name, arn) in &detaches {
            o.detach(&role(name), arn);
        }
    });
    let repaired = wait_writes(
        &h.iam,
        Operation::AttachRolePolicy,
        at,
        &roles,
        period * 2 + Duration::from_secs(30),
    )
    .await;
    let times = sorted(
        roles
            .iter()
            .filter_map(|r| Some(millis(*repaired.get(r)?, at) / 1e3))
            .collect(),
    );
    let missing = roles.len() - times.len();
    println!(
        "  drift ({label}, drift period {period:?}): {} detached, {} repaired",
        roles.len(),
        times.len()
    );
    report.figure(
        &format!("drift.{label}.repair_s.p50"),
        percentile(&times, 0.5),
        "s",
        &format!(
            "drift repaired after an outside detach, {label} (period {period:?}), p50 of {}",
            roles.len()
        ),
        "",
    );
    report.figure(
        &format!("drift.{label}.repair_s.max"),
        percentile(&times, 1.0),
        "s",
        &format!("drift repaired, {label}, worst"),
        target,
    );
    report.figure(
        &format!("drift.{label}.not_repaired"),
        missing as f64,
        "targets",
        &format!("drift not repaired, {label}"),
        "0",
    );
}

/// An emulator in a child process, so that this process's RSS is the controller's.
struct ChildEmulator {
    child: std::process::Child,
    url: String,
    _kubeconfig: std::path::PathBuf,
}

impl ChildEmulator {
    fn start() -> Option<ChildEmulator> {
        let binary = std::env::var("AGR_BENCH_EMULATOR").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| format!("{}/target", env!("CARGO_MANIFEST_DIR")));
            format!("{target}/release/kube-emulator")
        });
        if !std::path::Path::new(&binary).exists() {
            eprintln!(
                "scale: {binary} not found; build it with `cargo build --release -p kube-emulator` (make bench does)"
            );
            return None;
        }
        let kubeconfig =
            std::env::temp_dir().join(format!("agr-bench-{}.kubeconfig", std::process::id()));
        let mut child = std::process::Command::new(&binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--history",
                "10000",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the emulator");
        let stdout = child.stdout.take().expect("emulator stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("emulator URL");
        Some(ChildEmulator {
            child,
            url: line.trim().to_string(),
            _kubeconfig: kubeconfig,
        })
    }

    async fn client(&self) -> Client {
        // The kubeconfig carries the bootstrap admin's token (the emulator refuses anonymous requests).
        let mut config = kube_emulator::config_from_kubeconfig(&self._kubeconfig)
            .await
            .expect("the emulator's kubeconfig");
        config.cluster_url = self.url.parse().expect("emulator URL");
        Client::try_from(config).expect("client")
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self._kubeconfig);
    }
}

/// The status the controller itself leaves on a quarantine released at expiry, so that the
/// seeded objects look like the controller's own (a cold start then has nothing to write).
fn released_status(q: &Quarantine, activated: Timestamp) -> QuarantineStatus {
    let expires = activated + SignedDuration::from_hours(1);
    let released = expires + SignedDuration::from_millis(150);
    let document = desired::deny_document(q).expect("deny document");
    let account = desired::accounts(q).into_iter().next().unwrap_or_default();
    let mut status = QuarantineStatus {
        phase: Some(Phase::Released),
        activated_at: Some(Time(activated)),
        expires_at: Some(Time(expires)),
        released_at: Some(Time(released)),
        release_reason: Some("Expired".into()),
        deny: Some(PlannedDeny {
            policy_name: managed_policy_name(CLUSTER, &desired::key(q), &account),
            document: document.json,
            cluster_id: Some(CLUSTER.to_string()),
        }),
        targets: q
            .spec
            .targets
            .iter()
            .map(|t| TargetStatus {
                arn: t.arn.clone(),
                attachment: None,
                state: TargetState::Detached,
                last_error: None,
                last_verified_at: None,
            })
            .collect(),
        targets_summary: Some(format!("0/{}", q.spec.targets.len())),
        observed_generation: Some(1),
        history: ["Created", "Activated", "Expired", "Released"]
            .iter()
            .enumerate()
            .map(|(k, event)| HistoryEntry {
                time: Time(activated + SignedDuration::from_mins(20 * k as i64)),
                event: (*event).to_string(),
                actor: "controller".into(),
                message: format!("{event}: benchmark history entry"),
                channel: None,
            })
            .collect(),
        ..QuarantineStatus::default()
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        true,
        "Reconciled",
        "the controller acts on this quarantine",
        Some(1),
        activated,
    );
    set_condition(
        &mut status.conditions,
        "Enforced",
        false,
        "Released",
        "released",
        Some(1),
        released,
    );
    status
}

async fn current_resource_version(client: &Client) -> u64 {
    let api: Api<Quarantine> = Api::all(client.clone());
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .ok()
        .and_then(|l| l.metadata.resource_version)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// 10,000 policies and 100,000 quarantines (mostly Released): memory, cold start, steady state.
async fn scale(report: &mut Report) {
    let policy_count = setting("AGR_BENCH_POLICIES", 10_000).max(1);
    let quarantine_count = setting("AGR_BENCH_QUARANTINES", 100_000);
    let active = setting("AGR_BENCH_ACTIVE", 100).min(policy_count);
    let steady = setting("AGR_BENCH_STEADY_SECONDS", 60);
    let live = setting("AGR_BENCH_LIVE", quarantine_count / 10).min(quarantine_count);
    println!(
        "scale: {policy_count} policies, {quarantine_count} quarantines ({live} PendingApproval, {} Released) + {active} Active, steady state over {steady} s",
        quarantine_count - live
    );
    let Some(emulator) = ChildEmulator::start() else {
        println!("scale: SKIPPED (no emulator binary)");
        return;
    };
    let client = emulator.client().await;
    seed(
        report,
        &emulator,
        &client,
        policy_count,
        quarantine_count,
        live,
        active,
    )
    .await;

    // ---- cold start
    let iam = Arc::new(InMemoryIam::new(ACCOUNT));
    iam.outside(|o| {
        for i in 0..policy_count {
            o.create_role(&format!("scale-{i:05}"));
        }
    });
    let baseline_kib = rss_kib(None);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let rv_before = current_resource_version(&client).await;
    let (tx, rx) = watch::channel(false);
    let cold = Instant::now();
    let (running, future) = controller::start(
        client.clone(),
        Settings {
            cluster_id: CLUSTER.into(),
            ..Settings::default()
        },
        Arc::new(StaticClients::new().with(ACCOUNT, iam.clone())),
        metrics.clone(),
        Some("bench".into()),
        rx,
    );
    let handle = tokio::spawn(future);
    running.stores.wait_ready().await;
    let cache_sync = cold.elapsed().as_secs_f64();
    // Ended quarantines are kept as outlines and have nothing to reconcile (decision 140).
    let total_quarantines = running.stores.quarantines().len() as u64;
    println!(
        "  caches: {} policies, {total_quarantines} quarantines whole, {} ended as outlines",
        running.stores.policies().len(),
        running.stores.ended().len()
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    while (reconciles(&metrics, CONTROLLER_QUARANTINE) < total_quarantines
        || reconciles(&metrics, CONTROLLER_POLICY) < policy_count as u64)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_pass = cold.elapsed().as_secs_f64();
    wait_quiet(&metrics, Duration::from_secs(2), Duration::from_secs(300)).await;
    let settled = cold.elapsed().as_secs_f64() - 2.0;
    let rv_after = current_resource_version(&client).await;
    let rss_synced = rss_kib(None);
    let (cached_bytes, managed_bytes) = cached_json_bytes(&running.stores);
    println!(
        "  cached objects as JSON: {} MiB, of which managedFields {} MiB",
        cached_bytes / (1 << 20),
        managed_bytes / (1 << 20)
    );
    println!(
        "  cold start: caches {cache_sync:.1} s, every object reconciled once {first_pass:.1} s, quiet {settled:.1} s; {} writes to the API server; RSS {} MiB (baseline before start {} MiB)",
        rv_after.saturating_sub(rv_before),
        rss_synced / 1024,
        baseline_kib / 1024
    );
    report.figure(
        "scale.cache_sync_s",
        cache_sync,
        "s",
        "cold start: informer caches synced",
        "",
    );
    report.figure(
        "scale.cold_sync_s",
        first_pass,
        "s",
        "cold start → every object reconciled once (fully synced)",
        "< 60 s",
    );
    report.figure(
        "scale.cold_writes",
        rv_after.saturating_sub(rv_before) as f64,
        "writes",
        "API writes during the cold start (status, Events)",
        "",
    );
    report.figure(
        "scale.rss_mib",
        rss_synced as f64 / 1024.0,
        "MiB",
        "bench process RSS after sync (controller + IAM double + seeding client)",
        "",
    );
    report.figure(
        "scale.controller_rss_mib",
        rss_synced.saturating_sub(baseline_kib) as f64 / 1024.0,
        "MiB",
        "controller RSS (after sync − before start)",
        "< 256 MiB",
    );

    // ---- some Active quarantines through the real intake (at scale)
    let intake = Intake::from_running(&running);
    let mut intake_ms = Vec::new();
    let mut attach_ms = Vec::new();
    for i in 0..active {
        let role_name = format!("scale-{i:05}");
        let s = signal(
            &format!("scale-new-{i:05}"),
            &format!("scale-service-{i:05}"),
        );
        let sent = Timestamp::now();
        intake.submit(&s).await.expect("intake at scale");
        intake_ms.push(millis(Timestamp::now(), sent));
        let seen = wait_writes(
            &iam,
            Operation::AttachRolePolicy,
            sent,
            std::slice::from_ref(&role_name),
            Duration::from_secs(60),
        )
        .await;
        if let Some(at) = seen.get(&role_name) {
            attach_ms.push(millis(*at, sent));
        }
    }
    let intake_ms = sorted(intake_ms);
    let attach_ms = sorted(attach_ms);
    // The decision alone: a signal no policy watches (every policy answered, nothing written).
    let mut decision_ms = Vec::new();
    for i in 0..active.max(1) {
        let s = signal(&format!("scale-none-{i:05}"), "scale-service-none");
        let sent = Instant::now();
        intake.submit(&s).await.expect("intake at scale");
        decision_ms.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    let decision_ms = sorted(decision_ms);
    report.figure(
        "scale.decision_ms.p50",
        percentile(&decision_ms, 0.5),
        "ms",
        "intake decision, no policy watches the signal (nothing written), p50",
        "",
    );
    report.figure(
        "scale.decision_ms.p99",
        percentile(&decision_ms, 0.99),
        "ms",
        &format!("intake decision, p99 of {}", decision_ms.len()),
        "< 5 ms",
    );
    report.figure(
        "scale.intake_ms.p50",
        percentile(&intake_ms, 0.5),
        "ms",
        &format!("intake at scale ({policy_count} policies, {quarantine_count} quarantines), p50"),
        "",
    );
    report.figure(
        "scale.intake_ms.p99",
        percentile(&intake_ms, 0.99),
        "ms",
        &format!("intake at scale, p99 of {}", intake_ms.len()),
        "< 5 ms",
    );
    report.figure(
        "scale.attach_ms.p99",
        percentile(&attach_ms, 0.99),
        "ms",
        &format!(
            "signal → deny attached at scale, p99 of {}",
            attach_ms.len()
        ),
        "< 500 ms",
    );
    wait_quiet(&metrics, Duration::from_secs(3), Duration::from_secs(120)).await;

    // ---- steady state
    let calls_before = iam.call_count();
    let writes_before = iam.write_count();
    let reconciles_before =
        reconciles(&metrics, CONTROLLER_QUARANTINE) + reconciles(&metrics, CONTROLLER_POLICY);
    let rv_steady = current_resource_version(&client).await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(steady as u64)).await;
    let minutes = window.elapsed().as_secs_f64() / 60.0;
    let calls = iam.call_count() - calls_before;
    let writes = iam.write_count() - writes_before;
    let reconciled = reconciles(&metrics, CONTROLLER_QUARANTINE)
        + reconciles(&metrics, CONTROLLER_POLICY)
        - reconciles_before;
    let kube_writes = current_resource_version(&client)
        .await
        .saturating_sub(rv_steady);
    let rss_end = rss_kib(None);
    report.figure(
        "scale.steady.aws_calls_per_min",
        calls as f64 / minutes,
        "calls/min",
        &format!(
            "steady state AWS calls ({active} Active, drift period {:?})",
            Settings::default().drift_period
        ),
        "",
    );
    report.figure(
        "scale.steady.aws_writes",
        writes as f64,
        "writes",
        "steady state AWS writes",
        "0",
    );
    report.figure(
        "scale.steady.reconciles_per_min",
        reconciled as f64 / minutes,
        "reconciles/min",
        "steady state reconcile rate (both controllers)",
        "",
    );
    report.figure(
        "scale.steady.kube_writes_per_min",
        kube_writes as f64 / minutes,
        "writes/min",
        "steady state Kubernetes API writes",
        "",
    );
    report.figure(
        "scale.steady.controller_rss_mib",
        rss_end.saturating_sub(baseline_kib) as f64 / 1024.0,
        "MiB",
        "controller RSS at the end of the steady state",
        "< 256 MiB",
    );
    report.figure(
        "scale.emulator_rss_mib",
        rss_kib(Some(emulator.child.id())) as f64 / 1024.0,
        "MiB",
        "emulator RSS (child process; not the controller)",
        "",
    );
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;

    // ---- restart: the same objects, now carrying the controller's own status
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let rv_before = current_resource_version(&client).await;
    let (tx, rx) = watch::channel(false);
    let restart = Instant::now();
    let (running, future) = controller::start(
        client.clone(),
        Settings {
            cluster_id: CLUSTER.into(),
            ..Settings::default()
        },
        Arc::new(StaticClients::new().with(ACCOUNT, iam.clone())),
        metrics.clone(),
        Some("bench".into()),
        rx,
    );
    let handle = tokio::spawn(future);
    running.stores.wait_ready().await;
    let restart_sync = restart.elapsed().as_secs_f64();
    let whole = running.stores.quarantines().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while (reconciles(&metrics, CONTROLLER_QUARANTINE) < whole
        || reconciles(&metrics, CONTROLLER_POLICY) < policy_count as u64)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restart_first = restart.elapsed().as_secs_f64();
    wait_quiet(&metrics, Duration::from_secs(2), Duration::from_secs(120)).await;
    let restart_writes = current_resource_version(&client)
        .await
        .saturating_sub(rv_before);
    report.figure(
        "scale.restart.cache_sync_s",
        restart_sync,
        "s",
        "restart (objects carry the controller's status): caches synced",
        "",
    );
    report.figure(
        "scale.restart.cold_sync_s",
        restart_first,
        "s",
        "restart → every object reconciled once",
        "< 10 s",
    );
    report.figure(
        "scale.restart.writes",
        restart_writes as f64,
        "writes",
        "API writes during the restart",
        "",
    );
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    drop(emulator);
}

/// Creates the CRDs, the namespace, `policy_count` policies and `quarantine_count` quarantines
/// (`live` of them waiting for approval without status, the rest Released with the status the
/// controller leaves) through the API: the emulator has no bulk-load API.
async fn seed(
    report: &mut Report,
    emulator: &ChildEmulator,
    client: &Client,
    policy_count: usize,
    quarantine_count: usize,
    live: usize,
    active: usize,
) {
    let client = client.clone();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in autoguardrails::controller::crd::all_crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");

    // ---- seed through the API (the emulator has no bulk-load API)
    let seeding = Instant::now();
    let yamls: Vec<String> = (0..policy_count)
        .map(|i| {
            policy_yaml(
                &format!("scale-{i:05}"),
                &format!("scale-service-{i:05}"),
                &format!("scale-{i:05}"),
                "1h",
            )
        })
        .collect();
    let mut policies = create_policies(&client, yamls, 32).await;
    // Created concurrently: put them back in name order, so policy i is `scale-i`.
    policies.sort_by_key(|p| p.name_any());
    let policies_seconds = seeding.elapsed().as_secs_f64();
    let quarantines: Api<Quarantine> = Api::namespaced(client.clone(), NS);
    let settings = ControllerSettings::default();
    // Seed the ended quarantines retired, as this version leaves them (1, the default), or as
    // earlier versions left them (0: the first start then retires them, an upgrade).
    let retired = setting("AGR_BENCH_RETIRED", 1) == 1;
    let activated: Timestamp = "2026-01-05T08:00:00Z".parse().expect("timestamp");
    let policies = Arc::new(policies);
    let created = futures::stream::iter(0..quarantine_count)
        .map(|k| {
            let api = quarantines.clone();
            let policies = policies.clone();
            let settings = settings.clone();
            async move {
                // Live ones wait for approval on the policies the Active phase leaves alone.
                let is_live = k < live;
                let spare = (policies.len() - active).max(1);
                let policy = if is_live {
                    &policies[policies.len() - 1 - (k % spare)]
                } else {
                    &policies[k % policies.len()]
                };
                let service = policy
                    .spec
                    .matcher
                    .services
                    .first()
                    .cloned()
                    .unwrap_or_default();
                let s = signal(&format!("old-anomaly-{k:06}"), &service);
                let decision = policy::evaluate(Input {
                    policy,
                    signal: &s,
                    existing: &[],
                    settings: &settings,
                    now: activated,
                    resolution: None,
                });
                let mut q = decision.quarantine.expect("seed quarantine");
                q.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
                if !is_live && retired {
                    // As this version leaves a quarantine that ended long ago (decision 154).
                    q.metadata.finalizers = None;
                    q.metadata.labels = Some(
                        [(ENDED_LABEL.to_string(), "Released".to_string())]
                            .into_iter()
                            .collect(),
                    );
                }
                if is_live {
                    // No status: the cold start creates it (PendingApproval for a day).
                    q.spec.mode = autoguardrails::controller::crd::Mode::Manual;
                    q.spec.approval_timeout = Some("24h".into());
                }
                let stored = api
                    .create(&PostParams::default(), &q)
                    .await
                    .expect("create quarantine");
                if is_live {
                    return;
                }
                let status =
                    released_status(&stored, activated + SignedDuration::from_secs(k as i64));
                let body = serde_json::json!({ "status": status });
                api.patch_status(
                    &stored.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&body),
                )
                .await
                .expect("seed status");
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    println!(
        "  seeded {policy_count} policies in {policies_seconds:.1} s and {created} quarantines (create + status) in {:.1} s through the API; emulator RSS {} MiB",
        seed_seconds - policies_seconds,
        rss_kib(Some(emulator.child.id())) / 1024
    );
    report.figure("scale.seed_s", seed_seconds, "s", &format!("seed {policy_count} policies + {quarantine_count} quarantines through the API (not a target)"), "");
}

/// The `autoguardrails controller` binary at scale, as users run it (issue 21): leader, intake on
/// `/events`, the in-memory IAM backend seeded with every role, the emulator in another process.
/// RSS is the binary's own (`VmRSS`, and the peak `VmHWM`); "every object reconciled" is read from
/// its `/metrics`; the intake decision is the `/events` round trip of a signal no policy watches.
async fn binary_scale(report: &mut Report) {
    let policy_count = setting("AGR_BENCH_POLICIES", 10_000).max(1);
    let quarantine_count = setting("AGR_BENCH_QUARANTINES", 100_000);
    let active = setting("AGR_BENCH_ACTIVE", 100).min(policy_count);
    let steady = setting("AGR_BENCH_STEADY_SECONDS", 60);
    let live = setting("AGR_BENCH_LIVE", quarantine_count / 10).min(quarantine_count);
    let binary = std::env::var("AGR_BENCH_BINARY").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| format!("{}/target", env!("CARGO_MANIFEST_DIR")));
        format!("{target}/release/autoguardrails")
    });
    if !std::path::Path::new(&binary).exists() {
        println!(
            "binary: SKIPPED ({binary} not found; `cargo build --release --bin autoguardrails`)"
        );
        return;
    }
    println!(
        "binary: {binary}: {policy_count} policies, {quarantine_count} quarantines ({live} PendingApproval, {} Released) + {active} Active, steady state over {steady} s",
        quarantine_count - live
    );
    let Some(emulator) = ChildEmulator::start() else {
        println!("binary: SKIPPED (no emulator binary)");
        return;
    };
    let client = emulator.client().await;
    seed(
        report,
        &emulator,
        &client,
        policy_count,
        quarantine_count,
        live,
        active,
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NS);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "events-key", "namespace": NS },
        "stringData": { "apiKey": BENCH_API_KEY }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the /events key Secret");

    let dir = std::env::temp_dir().join(format!("agr-bench-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let roles: Vec<String> = (0..policy_count).map(|i| format!("scale-{i:05}")).collect();
    let (ops_port, signals_port) = (free_port(), free_port());
    // Short enough that the steady state includes a sweep and a scan of the retired quarantines
    // (their cost is in the figures); the default is 10m.
    let sweep = std::env::var("AGR_BENCH_SWEEP").unwrap_or_else(|_| "30s".into());
    // The controller's default (16) unless `AGR_BENCH_CONCURRENCY` says otherwise.
    let concurrency = setting("AGR_BENCH_CONCURRENCY", 16);
    let config = format!(
        r#"clusterId: {CLUSTER}
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{ops_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    "{ACCOUNT}": {{ roles: [{}] }}
leaderElection:
  leaseNamespace: {NS}
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
sweepPeriod: {sweep}
reconcileConcurrency: {concurrency}
"#,
        roles.join(", ")
    );
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).expect("config");
    let http = reqwest::Client::new();
    let ops = format!("http://127.0.0.1:{ops_port}");
    let events = format!("http://127.0.0.1:{signals_port}/events");

    for (label, first) in [("cold", true), ("restart", false)] {
        let counter = WriteCounter::start(&client).await;
        let started = Instant::now();
        let mut process = BinaryProcess::start(&binary, &config_path, &emulator, &dir, label);
        let pid = process.child.id();
        let mut ready_s = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut counts = (0, 0);
        // "Every object reconciled" is the last change of the reconcile counters before they
        // stand still for 2 s, once they reach one reconcile per object: a reconcile can wake
        // another (its own status write), so the counters alone reach the object count early.
        let mut last_change = started.elapsed().as_secs_f64();
        let mut reached_at: Option<Instant> = None;
        let mut still_since: Option<Instant> = None;
        while Instant::now() < deadline {
            if process.exited() {
                panic!(
                    "the controller exited during its {label} start; log: {}",
                    process.log_tail()
                );
            }
            if ready_s.is_none()
                && http
                    .get(format!("{ops}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                ready_s = Some(started.elapsed().as_secs_f64());
            }
            if ready_s.is_some() {
                let now = binary_reconciles(&http, &ops).await;
                if now != counts {
                    counts = now;
                    last_change = started.elapsed().as_secs_f64();
                    still_since = None;
                } else if still_since.is_none() {
                    still_since = Some(Instant::now());
                }
                if reached_at.is_none()
                    && counts.0 >= (live + usize::from(!first) * active) as u64
                    && counts.1 >= policy_count as u64
                {
                    reached_at = Some(Instant::now());
                }
                // Periodic drift checks of Active quarantines never let the counters rest for
                // long: 5 s after the object count is reached, the last change so far counts.
                if let Some(at) = reached_at
                    && (still_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(2))
                        || at.elapsed() >= Duration::from_secs(5))
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reconciled_s = last_change;
        let by_kind = counter.stop().await;
        let writes = ours(&by_kind);
        let (rss, peak) = rss_and_peak_kib(pid);
        println!(
            "  {label} start: ready {:.1} s, every object reconciled once {reconciled_s:.1} s ({} quarantine and {} policy reconciles), API writes: {}, RSS {} MiB (peak {} MiB)",
            ready_s.unwrap_or(f64::NAN),
            counts.0,
            counts.1,
            describe_writes(&by_kind),
            rss / 1024,
            peak / 1024
        );
        report.figure(
            &format!("binary.{label}.ready_s"),
            ready_s.unwrap_or(f64::NAN),
            "s",
            &format!("binary {label} start → /readyz (caches synced)"),
            "",
        );
        report.figure(
            &format!("binary.{label}.reconciled_s"),
            reconciled_s,
            "s",
            &format!("binary {label} start → every object reconciled once"),
            "< 10 s",
        );
        report.figure(
            &format!("binary.{label}.writes"),
            writes as f64,
            "writes",
            &format!("API writes during the {label} start (leases excluded)"),
            "",
        );
        report.figure(
            &format!("binary.{label}.rss_mib"),
            rss as f64 / 1024.0,
            "MiB",
            &format!("binary RSS after the {label} start"),
            "< 128 MiB",
        );
        report.figure(
            &format!("binary.{label}.peak_rss_mib"),
            peak as f64 / 1024.0,
            "MiB",
            &format!("binary peak RSS (VmHWM) by the end of the {label} start"),
            "",
        );
        if !first {
            process.stop();
            break;
        }

        // Active quarantines through /events (the real listener, intake and controllers).
        let mut created_ms = Vec::new();
        for i in 0..active {
            let body = anomaly_event(
                &format!("scale-new-{i:05}"),
                &format!("scale-service-{i:05}"),
            );
            let sent = Instant::now();
            let answer = http
                .post(&events)
                .header("x-api-key", BENCH_API_KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("/events answers");
            assert!(answer.status().is_success(), "{:?}", answer.text().await);
            created_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        }
        // The decision alone: signals no policy watches (every policy answers, nothing written).
        let mut decision_ms = Vec::new();
        for i in 0..active.max(100) {
            let body = anomaly_event(&format!("scale-none-{i:05}"), "scale-service-none");
            let sent = Instant::now();
            let answer = http
                .post(&events)
                .header("x-api-key", BENCH_API_KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("/events answers");
            assert!(answer.status().is_success(), "{:?}", answer.text().await);
            decision_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        }
        let created_ms = sorted(created_ms);
        let decision_ms = sorted(decision_ms);
        for (key, values, what, target) in [
            (
                "decision",
                &decision_ms,
                "intake decision through /events, no policy watches the signal (nothing written)",
                "< 5 ms",
            ),
            (
                "created",
                &created_ms,
                "intake through /events with the Quarantine created",
                "",
            ),
        ] {
            report.figure(
                &format!("binary.{key}_ms.p50"),
                percentile(values, 0.5),
                "ms",
                &format!("{what}, p50"),
                "",
            );
            report.figure(
                &format!("binary.{key}_ms.p99"),
                percentile(values, 0.99),
                "ms",
                &format!("{what}, p99 of {}", values.len()),
                target,
            );
        }
        // Let the Active ones settle (attached, first drift checks).
        tokio::time::sleep(Duration::from_secs(5)).await;

        // Steady state.
        let aws_before = memory_writes(&http, &ops).await;
        let counter = WriteCounter::start(&client).await;
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs(steady as u64)).await;
        let minutes = window.elapsed().as_secs_f64() / 60.0;
        let aws_writes = memory_writes(&http, &ops).await.saturating_sub(aws_before);
        let by_kind = counter.stop().await;
        let kube_writes = ours(&by_kind);
        let (rss, peak) = rss_and_peak_kib(pid);
        println!(
            "  steady state over {steady} s: {aws_writes} AWS writes; API writes: {} ({:.1}/min without the lease); RSS {} MiB (peak {} MiB)",
            describe_writes(&by_kind),
            kube_writes as f64 / minutes,
            rss / 1024,
            peak / 1024
        );
        report.figure(
            "binary.steady.aws_writes",
            aws_writes as f64,
            "writes",
            "binary steady state AWS writes",
            "0",
        );
        report.figure(
            "binary.steady.kube_writes_per_min",
            kube_writes as f64 / minutes,
            "writes/min",
            "binary steady state Kubernetes API writes (the leader's lease renewals excluded)",
            "0",
        );
        report.figure(
            "binary.steady.rss_mib",
            rss as f64 / 1024.0,
            "MiB",
            "binary RSS at the end of the steady state",
            "< 128 MiB",
        );
        report.figure(
            "binary.steady.peak_rss_mib",
            peak as f64 / 1024.0,
            "MiB",
            "binary peak RSS (VmHWM) by the end of the steady state",
            "",
        );
        process.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(emulator);
}

/// Counts the API writes by kind from `resource_version` on (watches of Quarantines, policies,
/// Events and Leases), so a steady state can tell the leader's lease renewals from our writes.
struct WriteCounter {
    counts: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WriteCounter {
    async fn start(client: &Client) -> WriteCounter {
        let rv = current_resource_version(client).await.to_string();
        let counts = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let tasks = vec![
            count_writes::<Quarantine>(client, &rv, "quarantine", &counts),
            count_writes::<GuardrailPolicy>(client, &rv, "guardrailpolicy", &counts),
            count_writes::<k8s_openapi::api::events::v1::Event>(client, &rv, "event", &counts),
            count_writes::<k8s_openapi::api::coordination::v1::Lease>(
                client, &rv, "lease", &counts,
            ),
        ];
        WriteCounter { counts, tasks }
    }

    /// Stops counting; the writes by kind.
    async fn stop(self) -> std::collections::BTreeMap<&'static str, u64> {
        // Let the last events of the window arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for task in &self.tasks {
            task.abort();
        }
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn count_writes<K>(
    client: &Client,
    rv: &str,
    kind: &'static str,
    counts: &Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let rv = rv.to_string();
    let counts = counts.clone();
    tokio::spawn(async move {
        let Ok(stream) = api.watch(&kube::api::WatchParams::default(), &rv).await else {
            return;
        };
        let mut stream = stream.boxed();
        while let Some(Ok(event)) = stream.next().await {
            if matches!(
                event,
                kube::api::WatchEvent::Added(_)
                    | kube::api::WatchEvent::Modified(_)
                    | kube::api::WatchEvent::Deleted(_)
            ) && let Ok(mut c) = counts.lock()
            {
                *c.entry(kind).or_default() += 1;
                if std::env::var_os("AGR_BENCH_DUMP_WRITES").is_some() && kind != "lease" {
                    let object = match &event {
                        kube::api::WatchEvent::Added(o)
                        | kube::api::WatchEvent::Modified(o)
                        | kube::api::WatchEvent::Deleted(o) => serde_json::to_string(o).ok(),
                        _ => None,
                    };
                    println!("    write {kind}: {}", object.unwrap_or_default());
                }
            }
        }
    })
}

fn describe_writes(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ours(counts: &std::collections::BTreeMap<&'static str, u64>) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| **k != "lease")
        .map(|(_, n)| n)
        .sum()
}

const BENCH_API_KEY: &str = "bench-events-key-0123456789";

/// An EventBridge "Anomaly Detected" event for `service` in the bench account.
fn anomaly_event(id: &str, service: &str) -> String {
    let mut event: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/fixtures/signals/eventbridge-anomaly.json"
    ))
    .expect("fixture");
    event["id"] = serde_json::json!(format!("evt-{id}"));
    event["account"] = serde_json::json!(ACCOUNT);
    event["detail"]["anomalyId"] = serde_json::json!(id);
    event["detail"]["dimensionalValue"] = serde_json::json!(service);
    event["detail"]["impact"]["totalImpact"] = serde_json::json!(500.0);
    event["detail"]["rootCauses"][0]["linkedAccount"] = serde_json::json!(ACCOUNT);
    event["detail"]["rootCauses"][0]["service"] = serde_json::json!(service);
    event.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_and_peak_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The binary's quarantine and policy reconcile counters, from its `/metrics`.
async fn binary_reconciles(http: &reqwest::Client, ops: &str) -> (u64, u64) {
    let Ok(text) = async {
        http.get(format!("{ops}/metrics"))
            .send()
            .await?
            .text()
            .await
    }
    .await
    else {
        return (0, 0);
    };
    let count = |controller: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("autoguardrails_reconciles_total{")
                    && l.contains(&format!("controller=\"{controller}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (count(CONTROLLER_QUARANTINE), count(CONTROLLER_POLICY))
}

/// The in-memory IAM's write count, from the binary's read-only `/debug/iam`.
async fn memory_writes(http: &reqwest::Client, ops: &str) -> u64 {
    let Ok(view) = async {
        http.get(format!("{ops}/debug/iam"))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await
    }
    .await
    else {
        return 0;
    };
    view.as_object()
        .map(|accounts| {
            accounts
                .values()
                .filter_map(|a| a["writeCalls"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// The controller binary in a child process; stopped with SIGTERM (killed on drop).
struct BinaryProcess {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl BinaryProcess {
    fn start(
        binary: &str,
        config: &std::path::Path,
        emulator: &ChildEmulator,
        dir: &std::path::Path,
        label: &str,
    ) -> BinaryProcess {
        let log = dir.join(format!("controller-{label}.log"));
        let child = std::process::Command::new(binary)
            .args(["controller", "--config"])
            .arg(config)
            .env("KUBECONFIG", &emulator._kubeconfig)
            .env("POD_NAME", format!("bench-{label}"))
            .env("POD_NAMESPACE", NS)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the controller binary");
        BinaryProcess { child, log }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then waits for the exit (the lease is released so a restart leads at once).
    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !self.exited() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BinaryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The size of the controller's cached objects serialised as JSON, and the part that is
/// `metadata.managedFields` (a rough guide to what the caches hold, not their heap size).
fn cached_json_bytes(stores: &controller::Stores) -> (usize, usize) {
    fn sizes<K: serde::Serialize + kube::Resource>(objects: &[Arc<K>]) -> (usize, usize) {
        objects.iter().fold((0, 0), |(all, managed), o| {
            let whole = serde_json::to_vec(o.as_ref()).map(|v| v.len()).unwrap_or(0);
            let fields = serde_json::to_vec(&o.meta().managed_fields)
                .map(|v| v.len())
                .unwrap_or(0);
            (all + whole, managed + fields)
        })
    }
    let (pa, pm) = sizes(&stores.policies());
    let (qa, qm) = sizes(&stores.quarantines());
    (pa + qa, pm + qm)
}

/// Cost Explorer requests per day at the default poller settings, and their price.
fn cost_explorer(report: &mut Report) {
    const PRICE_USD: f64 = 0.01;
    let mut settings = PollerSettings {
        monitor_arns: vec!["arn:aws:ce::111111111111:anomalymonitor/benchmark".into()],
        ..PollerSettings::default()
    };
    let most = settings.max_requests_per_day();
    let pages = settings.max_pages_per_monitor;
    settings.max_pages_per_monitor = 1;
    let least = settings.max_requests_per_day();
    println!(
        "cost: default poller interval {}, up to {pages} pages per monitor per run",
        settings.interval
    );
    report.figure(
        "cost.requests_per_day.max",
        most as f64,
        "requests/day",
        "Cost Explorer requests per day per monitor, default settings, worst case",
        "",
    );
    report.figure(
        "cost.usd_per_month.max",
        most as f64 * PRICE_USD * 30.0,
        "USD/month",
        "Cost Explorer price per monitor, worst case (every run uses every page)",
        "≤ USD 1",
    );
    report.figure(
        "cost.usd_per_month.typical",
        least as f64 * PRICE_USD * 30.0,
        "USD/month",
        "Cost Explorer price per monitor, one page per run",
        "≤ USD 1",
    );
}
