//! File sources through the gate: the bundled seed data, and malformed, empty and huge files
//! (each an `Error` input that delays, never zeros that allow).

use std::collections::BTreeMap;
use std::path::Path;

use autoguardrails::cli::gate_command::connect;
use autoguardrails::gate::files;
use autoguardrails::gate::inputs::{InputState, REASON_COULD_NOT_EVALUATE};
use autoguardrails::gate::rules::{self, Action};
use jiff::Timestamp;

use super::support::{root, temp_dir};

fn config(dir: &Path, metrics: &str, cost: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("metrics.json"), metrics).unwrap();
    std::fs::write(dir.join("cost.json"), cost).unwrap();
    let path = dir.join("gate.yaml");
    std::fs::write(
        &path,
        "audit: {directory: audit}\nservices:\n  web:\n    slo: {availability: {target: 99.9}, latency: {p95ThresholdMs: 500}}\n    metrics: {file: metrics.json}\n    cost: {file: cost.json}\n",
    )
    .unwrap();
    path
}

async fn decide(path: &Path, at: &str) -> autoguardrails::gate::decide::Decision {
    let gate = connect(
        files::load_config(path).unwrap(),
        rules::defaults().unwrap(),
    )
    .await
    .unwrap();
    gate.evaluate(None, at.parse::<Timestamp>().unwrap(), &BTreeMap::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn bundled_seed_data_gives_the_seed_numbers() {
    let d = decide(
        &root().join("examples/gate/gate.yaml"),
        "2026-02-21T00:00:00Z",
    )
    .await;
    assert_eq!(
        (d.verdict.action, d.verdict.policy_id.as_str()),
        (Action::Delay, "P005")
    );
    let budget = d.slo.error_budget_pct.value.unwrap();
    assert!((budget - 18.98).abs() < 0.01, "{budget}");
    assert_eq!(d.cost.estimated_days, 1);
    assert_eq!(d.signals["cost_spike_pct"].state, InputState::Partial);
}

#[tokio::test]
async fn malformed_empty_and_huge_files_delay() {
    let good_cost = std::fs::read_to_string(root().join("examples/gate/cost.json")).unwrap();
    let good_metrics = std::fs::read_to_string(root().join("examples/gate/metrics.json")).unwrap();
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(17 * 1024 * 1024));
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "malformed metrics",
            "{\"total_requests\": ".to_string(),
            good_cost.clone(),
            "error_budget_pct",
        ),
        (
            "empty metrics",
            String::new(),
            good_cost.clone(),
            "error_budget_pct",
        ),
        (
            "huge metrics",
            huge.clone(),
            good_cost.clone(),
            "error_budget_pct",
        ),
        (
            "malformed cost",
            good_metrics.clone(),
            "{\"daily_costs\": [{\"date\": 1}]}".to_string(),
            "cost_spike_pct",
        ),
        (
            "empty cost",
            good_metrics.clone(),
            String::new(),
            "cost_spike_pct",
        ),
        ("huge cost", good_metrics.clone(), huge, "cost_spike_pct"),
    ];
    for (name, metrics, cost, signal) in cases {
        let dir = temp_dir("files");
        let path = config(&dir, &metrics, &cost);
        let d = decide(&path, "2026-02-21T00:00:00Z").await;
        assert_eq!(
            d.signals[signal].state,
            InputState::Error,
            "{name}: {:?}",
            d.signals[signal]
        );
        assert!(
            d.verdict.action >= Action::Delay,
            "{name}: {:?}",
            d.verdict.action
        );
        if signal == "error_budget_pct" {
            assert_eq!(d.verdict.reason_code, REASON_COULD_NOT_EVALUATE, "{name}");
        }
    }
}

#[tokio::test]
async fn a_missing_cost_file_and_old_cost_data_never_allow() {
    let dir = temp_dir("files-missing");
    let metrics = std::fs::read_to_string(root().join("examples/gate/metrics.json"))
        .unwrap()
        .replace("\"failed_requests\": 2100", "\"failed_requests\": 100");
    let path = config(&dir, &metrics, "");
    std::fs::remove_file(dir.join("cost.json")).unwrap();
    let d = decide(&path, "2026-02-21T00:00:00Z").await;
    assert_eq!(d.signals["cost_spike_pct"].state, InputState::Error);
    assert_eq!(
        (d.verdict.action, d.verdict.policy_id.as_str()),
        (Action::Delay, "P006")
    );
    // Cost data that ended weeks before the evaluation day is stale.
    let cost = std::fs::read_to_string(root().join("examples/gate/cost.json")).unwrap();
    let path = config(&dir, &metrics, &cost);
    let d = decide(&path, "2026-04-01T00:00:00Z").await;
    assert_eq!(d.signals["cost_spike_pct"].state, InputState::Stale);
    assert_ne!(d.verdict.action, Action::Allow);
}
