//! The operations listener over real HTTP on loopback: /healthz, /readyz transitions, /metrics
//! content type and a scrape that passes `promtool check metrics`, graceful stop on shutdown.

use crate::support::promtool;

use autoguardrails::http::ops::{OpsServer, Readiness, ReadinessReport};
use autoguardrails::metrics::Metrics;
use autoguardrails::shutdown::{Shutdown, ShutdownCause};
use std::sync::Arc;
use std::time::Duration;

async fn start() -> (
    String,
    Arc<Metrics>,
    Readiness,
    Shutdown,
    tokio::task::JoinHandle<()>,
) {
    let metrics = Arc::new(Metrics::new().unwrap());
    let readiness = Readiness::new();
    let shutdown = Shutdown::new();
    let server = OpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        readiness.clone(),
    )
    .await
    .unwrap();
    let address = server.local_address().unwrap();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { server.serve(stop).await.unwrap() });
    (
        format!("http://{address}"),
        metrics,
        readiness,
        shutdown,
        task,
    )
}

async fn readyz(client: &reqwest::Client, base: &str) -> (u16, ReadinessReport) {
    let response = client.get(format!("{base}/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn health_readiness_and_graceful_stop() {
    let (base, _metrics, readiness, shutdown, task) = start().await;
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let (status, report) = readyz(&client, &base).await;
    assert_eq!(status, 503);
    assert_eq!(report.reason, "CachesNotSynced");
    assert!(!report.ready);

    // A standby replica: caches synced, not leader → ready.
    readiness.set_caches_synced(true);
    let (status, report) = readyz(&client, &base).await;
    assert_eq!(status, 200);
    assert!(report.ready && !report.leader, "{report:?}");

    readiness.set_leader(true);
    let (status, report) = readyz(&client, &base).await;
    assert_eq!(status, 200);
    assert!(report.leader);

    // Draining: not ready any more, but still alive and still serving until shutdown.
    readiness.set_draining();
    let (status, report) = readyz(&client, &base).await;
    assert_eq!(status, 503);
    assert_eq!(report.reason, "Draining");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let missing = client.get(format!("{base}/nothing")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    shutdown.trigger(ShutdownCause::Requested);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server did not stop after shutdown")
        .unwrap();
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "listener still answers after shutdown"
    );
}

#[tokio::test]
async fn metrics_scrape_passes_promtool() {
    let (base, metrics, _readiness, shutdown, _task) = start().await;
    metrics.leader.set(1);
    metrics.reconciles.with_label_values(&["quarantine"]).inc();
    metrics
        .signals
        .with_label_values(&["sns", "accepted"])
        .inc_by(3);
    metrics
        .reconcile_duration
        .with_label_values(&["quarantine"])
        .observe(0.2);
    metrics.release_lag.observe(1.5);

    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("autoguardrails_leader 1"), "{body}");
    assert!(body.contains("autoguardrails_signals_total{outcome=\"accepted\",source=\"sns\"} 3"));
    assert!(body.contains("autoguardrails_build_info{version="));

    promtool::check_metrics(&body);
    shutdown.trigger(ShutdownCause::Requested);
}
