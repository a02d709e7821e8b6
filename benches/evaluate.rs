//! Micro-benchmark (not a test): `policy::evaluate` of one signal against 10, 1,000 and 10,000
//! policies with a realistic mix (most policies differ by account or source, some stop at the
//! impact or service filter, a few match and build their Quarantine). Throughput is reported per
//! evaluation, so criterion's `elem/s` reads as evaluations per second on one core.
//!
//! `cargo bench --bench evaluate` (target: at least 1,000,000 evaluations per second per core).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use autoguardrails::controller::crd::GuardrailPolicy;
use autoguardrails::controller::policy::{self, ControllerSettings, Input};
use autoguardrails::controller::signal::CostSignal;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const ACCOUNT: &str = "111111111111";

/// The share of each kind in the mix, out of 100: 60 other account, 20 other source (Budget),
/// 10 above the signal's impact, 5 other service, 5 matching.
fn policy(index: usize) -> GuardrailPolicy {
    // A permutation of 0..100, so even 10 policies get a mix (one of them matches).
    let slot = (index * 37) % 100;
    let (sources, account, minimum, services) = match slot {
        0..60 => (
            "[CostAnomaly]",
            format!("{:012}", 200_000_000_000u64 + index as u64),
            100,
            "",
        ),
        60..80 => ("[Budget]", ACCOUNT.to_string(), 100, ""),
        80..90 => ("[CostAnomaly, Budget]", ACCOUNT.to_string(), 5_000, ""),
        90..95 => (
            "[CostAnomaly]",
            ACCOUNT.to_string(),
            100,
            "\n    services: [\"Amazon Simple Storage Service\"]",
        ),
        _ => ("[CostAnomaly]", ACCOUNT.to_string(), 100, ""),
    };
    let yaml = format!(
        r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: policy-{index:05}
  namespace: team-{team}
  uid: 00000000-0000-4000-8000-{index:012}
spec:
  mode: Auto
  match:
    sources: {sources}
    accountIds: ["{account}"]
    minImpactUsd: {minimum}{services}
  scope:
    principals:
      - {{ kind: IamRole, arn: "arn:aws:iam::{ACCOUNT}:role/ci-{index:05}" }}
      - {{ kind: IamRole, arn: "arn:aws:iam::{ACCOUNT}:role/batch-{index:05}" }}
    regions: ["us-east-1", "ap-northeast-1"]
  deny:
    actions: ["ec2:RunInstances", "ec2:CreateNatGateway", "sagemaker:CreateTrainingJob"]
  quarantine:
    ttl: 4h
    cooldown: 30m
"#,
        team = index % 17,
    );
    serde_saphyr::from_str(&yaml).expect("benchmark policy parses")
}

fn signal() -> CostSignal {
    CostSignal {
        source: autoguardrails::controller::crd::SignalSource::CostAnomaly,
        id: "anomaly-7c4f0f1e-bench".into(),
        account_id: ACCOUNT.into(),
        impact_usd: 912.5,
        service: Some("Amazon Elastic Compute Cloud - Compute".into()),
        region: Some("ap-northeast-1".into()),
        budget_name: None,
        observed_at: "2026-11-20T09:55:00Z".parse().expect("timestamp"),
        details_url: None,
        summary: Some("benchmark anomaly".into()),
        principal: None,
        raw: None,
    }
}

fn evaluate_all(
    policies: &[GuardrailPolicy],
    signal: &CostSignal,
    settings: &ControllerSettings,
) -> usize {
    let now = "2026-11-20T10:00:00Z".parse().expect("timestamp");
    let mut matched = 0;
    for policy in policies {
        let decision = policy::evaluate(Input {
            policy,
            signal,
            existing: &[],
            settings,
            now,
            resolution: None,
        });
        if decision.quarantine.is_some() {
            matched += 1;
        }
    }
    matched
}

fn bench_evaluate(c: &mut Criterion) {
    let signal = signal();
    let settings = ControllerSettings::default();
    let mut group = c.benchmark_group("evaluate");
    for count in [10usize, 1_000, 10_000] {
        let policies: Vec<GuardrailPolicy> = (0..count).map(policy).collect();
        let matched = evaluate_all(&policies, &signal, &settings);
        let expected = (0..count).filter(|i| (i * 37) % 100 >= 95).count();
        assert_eq!(matched, expected, "the mix matches as designed");
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(
            BenchmarkId::new("policies", count),
            &policies,
            |b, policies| {
                b.iter(|| evaluate_all(black_box(policies), black_box(&signal), &settings))
            },
        );
    }
    // The two extremes of one evaluation: the cheapest refusal and a full match.
    let other_account = policy(0);
    let matching = policy(8); // slot 96: matches
    group.throughput(Throughput::Elements(1));
    group.bench_function("one/account-not-matched", |b| {
        b.iter(|| {
            evaluate_all(
                std::slice::from_ref(black_box(&other_account)),
                &signal,
                &settings,
            )
        })
    });
    group.bench_function("one/matched", |b| {
        b.iter(|| {
            evaluate_all(
                std::slice::from_ref(black_box(&matching)),
                &signal,
                &settings,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
