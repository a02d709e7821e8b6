//! Event-driven drift repair benchmark (not a test): a Quarantine holds its deny on many roles
//! (real controllers against the Kubernetes API emulator, the in-memory IAM, so AWS's own latency
//! is excluded); the periodic drift check is ten minutes away. Repeatedly one role's deny is
//! detached outside the controller and the CloudTrail `DetachRolePolicy` event is posted to the
//! real `/events` endpoint; measured: event posted → deny re-attached in IAM (p50/p99/max), and
//! the endpoint's answer time.
//!
//! `cargo bench --bench drift` (environment: `AGR_BENCH_TARGETS`, default 20, at most 100;
//! `AGR_BENCH_REPAIRS`, default 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/controller.rs"]
#[allow(unused_imports)]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::keys::StaticKey;
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use harness::{ACCOUNT, Harness, anomaly, policy_yaml, role_ref, test_settings};
use serde_json::json;

const KEY: &str = "drift-bench-key";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn detach_event(id: &str, role: &str, policy_arn: &str) -> String {
    let now = jiff::Timestamp::now().to_string();
    json!({
        "version": "0",
        "id": format!("eb-{id}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": ACCOUNT,
        "time": now,
        "region": "us-east-1",
        "detail": {
            "eventVersion": "1.09",
            "eventID": id,
            "eventTime": now,
            "eventSource": "iam.amazonaws.com",
            "eventName": "DetachRolePolicy",
            "awsRegion": "us-east-1",
            "recipientAccountId": ACCOUNT,
            "requestParameters": {"roleName": role, "policyArn": policy_arn}
        }
    })
    .to_string()
}

fn main() {
    let targets = setting("AGR_BENCH_TARGETS", 20).min(100);
    let repairs = setting("AGR_BENCH_REPAIRS", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(targets, repairs));
}

async fn run(targets: usize, repairs: usize) {
    println!("drift: {repairs} detach events over {targets} held roles");
    let mut settings = test_settings();
    settings.drift_period = Duration::from_secs(600);
    settings.full_converge_period = Duration::from_secs(600);
    let h = Harness::start_with(settings).await;
    let roles: Vec<String> = (0..targets).map(|i| format!("held-{i:03}")).collect();
    h.iam.outside(|o| {
        for role in &roles {
            o.create_role(role);
        }
    });
    let names: Vec<&str> = roles.iter().map(String::as_str).collect();
    h.apply_policy(&policy_yaml("drift-bench", "Auto", "1h", &names))
        .await;
    let report = h.submit(&anomaly("drift-bench-1", ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("all attached", || async {
        roles.iter().all(|r| h.attached(r).len() == 1)
    })
    .await;
    let policy_arn = h.attached(&roles[0])[0].clone();

    let settings = SignalSettings {
        max_concurrency: 64,
        ..SignalSettings::default()
    };
    let state = SignalState::new(
        &settings,
        Arc::new(h.intake()),
        h.metrics.clone(),
        Arc::new(StaticCertificates::new()),
    )
    .unwrap()
    .with_api_keys(Arc::new(StaticKey(KEY.as_bytes().to_vec())))
    .with_drift_repair(h.running().stores.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let router = signals::router(Arc::new(state));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    let mut repaired = Vec::with_capacity(repairs);
    let mut answered = Vec::with_capacity(repairs);
    for k in 0..repairs {
        let role = &roles[k % roles.len()];
        h.iam.outside(|o| o.detach(&role_ref(role), &policy_arn));
        assert!(h.attached(role).is_empty());
        let body = detach_event(&format!("bench-{k}"), role, &policy_arn);
        let started = Instant::now();
        let response = http
            .post(&url)
            .header("x-api-key", KEY)
            .body(body)
            .send()
            .await
            .unwrap();
        answered.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while h.attached(role).len() != 1 {
            assert!(Instant::now() < deadline, "repair {k} did not happen");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        repaired.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    repaired.sort_by(f64::total_cmp);
    answered.sort_by(f64::total_cmp);
    println!(
        "detach event -> deny re-attached (ms, in-memory IAM): p50 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&repaired, 0.5),
        percentile(&repaired, 0.99),
        repaired.last().copied().unwrap_or(0.0)
    );
    println!(
        "event answered (ms): p50 {:.1}  p99 {:.1}",
        percentile(&answered, 0.5),
        percentile(&answered, 0.99)
    );
    println!(
        "drift repairs counted: {}; IAM events checked: {}",
        h.metrics.drift_repairs.get(),
        h.metrics.iam_events.with_label_values(&["checked"]).get()
    );
}
