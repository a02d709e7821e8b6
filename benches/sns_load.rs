//! Load benchmark (not a test): many concurrent signed SNS deliveries through the real `/sns`
//! endpoint on loopback into the real controller intake, against the Kubernetes API emulator with
//! one DryRun GuardrailPolicy. Prints accepted/s and latency percentiles, then checks that every
//! accepted signal produced its Quarantine.
//!
//! `cargo bench --bench sns_load` (environment: `AGR_BENCH_MESSAGES`, default 1000;
//! `AGR_BENCH_CONCURRENCY`, default 32).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/controller.rs"]
#[allow(unused_imports)]
mod harness;
#[path = "../tests/support/sns_signing.rs"]
mod sns_signing;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::endpoints::signals::{self, SignalSettings, SignalState};
use autoguardrails::controller::signal::sns::ValidatedCertUrl;
use futures::StreamExt as _;
use harness::{ACCOUNT, Harness, policy_yaml};
use kube::api::ListParams;
use sns_signing::{CERT, CERT_URL, Signer, TOPIC};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; any filter argument is ignored.
    let messages = setting("AGR_BENCH_MESSAGES", 1000);
    let concurrency = setting("AGR_BENCH_CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(messages, concurrency));
}

async fn run(messages: usize, concurrency: usize) {
    println!("sns_load: {messages} signed deliveries, {concurrency} concurrent clients");
    let started = Instant::now();
    let h = Harness::start().await;
    h.apply_policy(&policy_yaml("load", "DryRun", "1h", &["dev-ci"]))
        .await;
    println!(
        "  emulator, controller and policy ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // sign everything up front so the measurement is the server side only
    let signing = Instant::now();
    let timestamp = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let signer = Signer::test();
    let bodies: Vec<(String, String)> = (0..messages)
        .map(|index| {
            let anomaly = format!("load-anomaly-{index:06}");
            let message = sns_signing::anomaly_message(&anomaly, ACCOUNT, 500.0);
            let fields = sns_signing::notification(
                &format!("load-message-{index:06}"),
                &timestamp,
                &message,
            );
            (anomaly, signer.envelope(&fields, "2"))
        })
        .collect();
    println!(
        "  signed {messages} messages in {:.1} s (not measured)",
        signing.elapsed().as_secs_f64()
    );

    let mut settings = SignalSettings::default();
    settings.sns.allowed_topics = vec![TOPIC.to_string()];
    settings.max_concurrency = concurrency.max(64);
    let url = ValidatedCertUrl::parse(CERT_URL).expect("certificate URL");
    let state = SignalState::new(
        &settings,
        Arc::new(h.intake()),
        h.metrics.clone(),
        Arc::new(StaticCertificates::new().with(&url, CERT)),
    )
    .expect("signal state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let base = format!("http://{}/sns", listener.local_addr().expect("address"));
    let router = signals::router(Arc::new(state));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let load = Instant::now();
    let results: Vec<(String, u16, Duration)> = futures::stream::iter(bodies)
        .map(|(anomaly, body)| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let sent = Instant::now();
                let status = match client.post(&base).body(body).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                (anomaly, status, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = load.elapsed();

    let mut latencies: Vec<Duration> = results.iter().map(|r| r.2).collect();
    latencies.sort();
    let accepted: BTreeSet<String> = results
        .iter()
        .filter(|r| r.1 == 200)
        .map(|r| r.0.clone())
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for result in &results {
        *statuses.entry(result.1).or_default() += 1;
    }
    println!(
        "  {} accepted of {messages} in {:.2} s: {:.0} accepted/s",
        accepted.len(),
        elapsed.as_secs_f64(),
        accepted.len() as f64 / elapsed.as_secs_f64()
    );
    println!("  statuses: {statuses:?}");
    println!(
        "  latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        percentile(&latencies, 1.0).as_secs_f64() * 1e3,
    );

    // every accepted signal must already have its Quarantine (2xx is only sent after intake)
    let quarantined: BTreeSet<String> = h
        .quarantines()
        .list(&ListParams::default())
        .await
        .expect("list quarantines")
        .items
        .into_iter()
        .filter_map(|q| q.spec.signal.map(|signal| signal.id))
        .collect();
    let missing: Vec<&String> = accepted.difference(&quarantined).collect();
    println!(
        "  quarantines: {} for {} accepted signals; missing: {}",
        quarantined.len(),
        accepted.len(),
        missing.len()
    );
    if !missing.is_empty() {
        eprintln!("sns_load: accepted signals without a Quarantine: {missing:?}");
        std::process::exit(1);
    }
    if accepted.len() != messages {
        eprintln!("sns_load: not every delivery was accepted");
        std::process::exit(1);
    }
    println!("  every accepted signal produced exactly its Quarantine");
}
