//! Spend-velocity benchmark (not a test): CloudTrail "AWS API Call via CloudTrail" events posted
//! to the real `/events` endpoint on loopback (API key, body limits, the velocity tracker, the real
//! intake against the Kubernetes API emulator, the real controllers with the in-memory IAM).
//!
//! 1. Throughput: events/s from POST to the endpoint's answer (each answer is the decision:
//!    counted, replayed, ignored, or handed to intake), with a mix of launches, replays,
//!    terminations and failed calls from many roles.
//! 2. Containment latency: per role, the time from posting the event whose launch crosses the
//!    threshold to the deny attached (the in-memory IAM's write time, so AWS's own latency is
//!    excluded), and to the endpoint's answer (the Quarantine exists then).
//!
//! `cargo bench --bench velocity` (environment: `AGR_BENCH_EVENTS`, default 20000;
//! `AGR_BENCH_CONCURRENCY`, default 32; `AGR_BENCH_CROSSINGS`, default 50, at most 100).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/controller.rs"]
#[allow(unused_imports)]
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoguardrails::aws::Operation;
use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::keys::StaticKey;
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::velocity::{Estimator, PriceTable, Settings, Tracker};
use futures::StreamExt as _;
use harness::{ACCOUNT, Harness, NS};
use serde_json::{Value, json};

const KEY: &str = "velocity-bench-key";
const FIXTURE: &str = include_str!("../tests/fixtures/velocity/run-instances.json");
const TERMINATE: &str = include_str!("../tests/fixtures/velocity/terminate-instances.json");

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

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A RunInstances event of `count` instances of `kind` by role `role`, now.
fn launch(id: &str, role: &str, kind: &str, count: usize) -> String {
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    let now = jiff::Timestamp::now().to_string();
    event["account"] = ACCOUNT.into();
    event["time"] = now.clone().into();
    let detail = &mut event["detail"];
    detail["eventID"] = id.into();
    detail["eventTime"] = now.into();
    detail["recipientAccountId"] = ACCOUNT.into();
    detail["userIdentity"]["arn"] = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s").into();
    detail["userIdentity"]["accountId"] = ACCOUNT.into();
    detail["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] = role_arn(role).into();
    detail["userIdentity"]["sessionContext"]["sessionIssuer"]["accountId"] = ACCOUNT.into();
    let items: Vec<Value> = (0..count)
        .map(|k| json!({"instanceId": format!("i-{id}-{k}"), "instanceType": kind}))
        .collect();
    detail["responseElements"]["instancesSet"]["items"] = items.into();
    event.to_string()
}

fn terminate(id: &str, instance: &str) -> String {
    let mut event: Value = serde_json::from_str(TERMINATE).unwrap();
    let now = jiff::Timestamp::now().to_string();
    event["detail"]["eventID"] = id.into();
    event["detail"]["eventTime"] = now.into();
    event["detail"]["recipientAccountId"] = ACCOUNT.into();
    event["detail"]["requestParameters"]["instancesSet"]["items"] =
        json!([{"instanceId": instance}]);
    event["detail"]["responseElements"] = Value::Null;
    event.to_string()
}

fn policy(roles: &[String]) -> String {
    let principals: Vec<String> = roles
        .iter()
        .map(|r| format!("      - {{ kind: IamRole, arn: \"{}\" }}", role_arn(r)))
        .collect();
    format!(
        r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: velocity-bench
  namespace: {NS}
spec:
  mode: Auto
  match:
    sources: [Velocity]
    accountIds: ["{ACCOUNT}"]
    minImpactUsd: 50
  scope:
    principals:
{}
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 1h
    cooldown: 30m
"#,
        principals.join("\n")
    )
}

fn main() {
    let events = setting("AGR_BENCH_EVENTS", 20_000);
    let concurrency = setting("AGR_BENCH_CONCURRENCY", 32);
    let crossings = setting("AGR_BENCH_CROSSINGS", 50).min(100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(events, concurrency, crossings));
}

async fn run(events: usize, concurrency: usize, crossings: usize) {
    println!(
        "velocity: {events} events at {concurrency} concurrent clients, then {crossings} crossings"
    );
    let started = Instant::now();
    let h = Harness::start().await;
    let crossing_roles: Vec<String> = (0..crossings).map(|i| format!("gpu-ci-{i:03}")).collect();
    h.iam.outside(|o| {
        for role in &crossing_roles {
            o.create_role(role);
        }
    });
    h.apply_policy(&policy(&crossing_roles)).await;
    let tracker = Arc::new(Tracker::with_estimator(
        Estimator::new(
            Settings {
                signal_at_usd: 50.0,
                ..Settings::default()
            },
            PriceTable::bundled().unwrap(),
        ),
        None,
    ));
    let settings = SignalSettings {
        max_concurrency: concurrency.max(64),
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
    .with_velocity(tracker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let router = signals::router(Arc::new(state));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    println!(
        "  emulator, controller, policy and /events ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // ---- 1. throughput: 500 roles launching m5.large (never crossing USD 50/hour), with
    // replays, terminations of earlier launches, and failed calls mixed in.
    let mut bodies = Vec::with_capacity(events);
    for i in 0..events {
        let role = format!("load-{:03}", i % 500);
        let body = match i % 10 {
            // a redelivery of the launch three events earlier
            7 => launch(
                &format!("load-{:07}", i - 3),
                &format!("load-{:03}", (i - 3) % 500),
                "m5.large",
                1,
            ),
            // a termination of the launch two events earlier
            8 => terminate(&format!("term-{i:07}"), &format!("i-load-{:07}-0", i - 2)),
            9 => {
                let mut failed: Value = serde_json::from_str(&launch(
                    &format!("fail-{i:07}"),
                    &role,
                    "p4d.24xlarge",
                    8,
                ))
                .unwrap();
                failed["detail"]["errorCode"] = "Client.UnauthorizedOperation".into();
                failed.to_string()
            }
            _ => launch(&format!("load-{i:07}"), &role, "m5.large", 1),
        };
        bodies.push(body);
    }
    let load = Instant::now();
    let results: Vec<(u16, String, f64)> = futures::stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let sent = Instant::now();
                match client
                    .post(&url)
                    .header("x-api-key", KEY)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let answer: Value = response.json().await.unwrap_or(Value::Null);
                        let outcome = answer["outcome"].as_str().unwrap_or_default().to_string();
                        (status, outcome, sent.elapsed().as_secs_f64() * 1e3)
                    }
                    Err(_) => (0, "error".into(), sent.elapsed().as_secs_f64() * 1e3),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = load.elapsed().as_secs_f64();
    let mut outcomes = BTreeMap::<(u16, String), usize>::new();
    for (status, outcome, _) in &results {
        *outcomes.entry((*status, outcome.clone())).or_default() += 1;
    }
    let mut latencies: Vec<f64> = results.iter().map(|r| r.2).collect();
    latencies.sort_by(f64::total_cmp);
    let decided = results.iter().filter(|r| r.0 == 200).count();
    println!(
        "  throughput: {decided} of {events} events decided in {elapsed:.2} s: {:.0} events/s (goal >= 2000/s)",
        decided as f64 / elapsed
    );
    println!("  answers: {outcomes:?}");
    println!(
        "  answer latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );

    // ---- 2. containment: each role launches 16 x p3.2xlarge (USD 48.96/hour, below USD 50),
    // then one more launch crosses; timed from that POST to the deny attached in IAM.
    let mut to_answer = Vec::new();
    let mut to_deny = Vec::new();
    for role in &crossing_roles {
        for k in 0..16 {
            let body = launch(&format!("{role}-warm-{k:02}"), role, "p3.2xlarge", 1);
            let answer = client
                .post(&url)
                .header("x-api-key", KEY)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
        }
        let body = launch(&format!("{role}-crossing"), role, "p3.2xlarge", 1);
        let sent = jiff::Timestamp::now();
        let clock = Instant::now();
        let answer = client
            .post(&url)
            .header("x-api-key", KEY)
            .body(body)
            .send()
            .await
            .unwrap();
        let answered = clock.elapsed().as_secs_f64() * 1e3;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        if status != 200 || !text.contains("1 created") {
            eprintln!("velocity: the crossing of {role} was not decided: {status} {text}");
            std::process::exit(1);
        }
        to_answer.push(answered);
        let wanted = format!("role/{role} ");
        let deadline = Instant::now() + Duration::from_secs(30);
        let attached_at = loop {
            let found = h.iam.write_log().into_iter().find(|w| {
                w.operation == Operation::AttachRolePolicy
                    && w.error.is_none()
                    && w.arguments.starts_with(&wanted)
            });
            if let Some(w) = found {
                break w.at;
            }
            if Instant::now() > deadline {
                eprintln!("velocity: no deny attached to {role} within 30 s");
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        to_deny.push(attached_at.duration_since(sent).as_secs_f64() * 1e3);
    }
    to_answer.sort_by(f64::total_cmp);
    to_deny.sort_by(f64::total_cmp);
    println!(
        "  crossing event -> Quarantine created (the answer), {} roles: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        to_answer.len(),
        percentile(&to_answer, 0.5),
        percentile(&to_answer, 0.99),
        percentile(&to_answer, 1.0)
    );
    println!(
        "  crossing event -> deny attached (in-memory IAM, AWS excluded), {} roles: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 < 500 ms)",
        to_deny.len(),
        percentile(&to_deny, 0.5),
        percentile(&to_deny, 0.99),
        percentile(&to_deny, 1.0)
    );
    let quarantined = h
        .quarantines()
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    println!("  quarantines: {quarantined} for {crossings} crossing roles");
    if quarantined != crossings || decided != events {
        eprintln!("velocity: expected every event decided and one Quarantine per crossing role");
        std::process::exit(1);
    }
}
