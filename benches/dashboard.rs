//! Dashboard figures (docs/dashboard.md, Performance): the Quarantines page rendered from 10,000
//! cached quarantines (what the handler does per request: build the list from the cache, pick
//! and sort the page, render the HTML), its p50/p99 server time and bytes, the same for the
//! live-update fragment and the JSON, and the cost of the change counter that drives the live
//! stream. Prints figures; asserts nothing about speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use autoguardrails::controller::crd::{Phase, Quarantine, QuarantineStatus};
use autoguardrails::dashboard::layout::{self, Frame};
use autoguardrails::dashboard::live::Changes;
use autoguardrails::dashboard::views::{self, Filter};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const QUARANTINES: usize = 10_000;
const RUNS: usize = 200;

fn quarantines() -> Vec<Arc<Quarantine>> {
    let phases = [
        Phase::Active,
        Phase::PendingApproval,
        Phase::DryRun,
        Phase::Failed,
        Phase::Releasing,
    ];
    let now = Timestamp::now();
    (0..QUARANTINES)
        .map(|i| {
            let mut q: Quarantine = serde_json::from_value(serde_json::json!({
                "apiVersion": "autoguardrails.io/v1alpha1", "kind": "Quarantine",
                "metadata": {"name": format!("policy-{}-{i:08x}", i % 40), "namespace": format!("team-{}", i % 8),
                              "uid": format!("uid-{i}"), "creationTimestamp": now.to_string()},
                "spec": {"policyRef": {"name": format!("policy-{}", i % 40)}, "mode": "Manual", "ttl": "4h",
                          "targets": [{"kind": "IamRole", "arn": format!("arn:aws:iam::{:012}:role/workload-{i}", 100_000_000_000u64 + (i % 50) as u64)}],
                          "deny": {"actions": ["ec2:RunInstances", "sagemaker:CreateTrainingJob"]},
                          "signal": {"source": "CostAnomaly", "id": format!("anomaly-{i}"), "accountId": "111111111111",
                                     "impactUsd": 100.0 + i as f64, "observedAt": now.to_string(), "summary": "cost anomaly in Amazon SageMaker"}}
            }))
            .unwrap();
            q.status = Some(QuarantineStatus {
                phase: Some(phases[i % phases.len()]),
                expires_at: Some(Time(now + jiff::SignedDuration::from_secs(60 * (i as i64 % 240)))),
                approved_by: (i % 3 == 0).then(|| "alice".to_string()),
                targets_summary: Some("1/1".into()),
                ..QuarantineStatus::default()
            });
            Arc::new(q)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(label: &str, mut render: impl FnMut() -> usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        bytes = render();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{label:<52} p50 {:>7.2} ms  p99 {:>7.2} ms  {:>9} bytes",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        bytes
    );
}

fn main() {
    let live = quarantines();
    let frame = Frame {
        nav: vec![],
        active: "quarantines",
        title: "Quarantines".into(),
        live: Some("/dashboard/live".into()),
        poll_seconds: Some(30),
        part: "controller",
    };
    println!("dashboard: {QUARANTINES} quarantines in the cache, {RUNS} renders each");
    for limit in [100, 1000] {
        let filter = Filter {
            limit: Some(limit),
            ..Filter::default()
        };
        measure(
            &format!("Quarantines page, {limit} rows (full HTML)"),
            || {
                let list = views::quarantine_list(&live, &[], &filter);
                layout::document(
                    &frame,
                    views::quarantines_page(&list, &filter, Timestamp::now()),
                )
                .into_string()
                .len()
            },
        );
    }
    let filter = Filter::default();
    measure("live update: <main> fragment, 100 rows", || {
        let list = views::quarantine_list(&live, &[], &filter);
        views::quarantines_page(&list, &filter, Timestamp::now())
            .into_string()
            .len()
    });
    measure("JSON /dashboard/api/quarantines, 100 rows", || {
        let list = views::quarantine_list(&live, &[], &filter);
        serde_json::to_vec(&serde_json::json!({"ok": true, "data": list}))
            .unwrap()
            .len()
    });
    let narrow = Filter {
        phase: Some("PendingApproval".into()),
        q: Some("workload-7".into()),
        ..Filter::default()
    };
    measure("filtered (phase + search), 100 rows", || {
        let list = views::quarantine_list(&live, &[], &narrow);
        views::quarantines_page(&list, &narrow, Timestamp::now())
            .into_string()
            .len()
    });

    // The change counter behind the live stream: one bump per cache change, seen by every open
    // stream (a watch channel: receivers only see the newest value, so a burst costs one wake-up).
    let changes = Changes::default();
    let receivers: Vec<_> = (0..1000).map(|_| changes.subscribe()).collect();
    let bumps = 100_000;
    let started = Instant::now();
    for _ in 0..bumps {
        changes.bump();
    }
    let per_bump = started.elapsed().as_secs_f64() * 1e9 / bumps as f64;
    let seen = receivers
        .iter()
        .filter(|r| r.has_changed().unwrap_or(false))
        .count();
    println!(
        "live: one cache change with 1000 open streams: {per_bump:.0} ns per change ({seen} streams woken once for {bumps} changes)"
    );
}
