//! Micro-benchmark (not a test): building the IAM deny document (de-duplicated, sorted actions,
//! optional region condition, size check) for a small action list and for one just under the
//! managed-policy size limit (6,144 characters).
//!
//! `cargo bench --bench document`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use autoguardrails::controller::crd::DenySpec;
use autoguardrails::controller::enforce::document::{self, MANAGED_POLICY_LIMIT};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The largest list of long, distinct actions (at most the schema's 100) whose document fits.
fn near_limit() -> DenySpec {
    let mut deny = DenySpec {
        actions: Vec::new(),
        regions: vec![
            "us-east-1".into(),
            "us-west-2".into(),
            "ap-northeast-1".into(),
        ],
        conditions: Vec::new(),
    };
    for index in 0..100 {
        deny.actions.push(format!(
            "sagemaker:CreateHyperParameterTuningJobWithWarmStart{index:03}"
        ));
        if document::build(&deny, "0123456789ab").is_err() {
            deny.actions.pop();
            break;
        }
    }
    deny
}

fn bench_document(c: &mut Criterion) {
    let small = DenySpec {
        actions: vec![
            "ec2:RunInstances".into(),
            "ec2:CreateNatGateway".into(),
            "ec2:StartInstances".into(),
        ],
        regions: vec!["us-east-1".into()],
        conditions: Vec::new(),
    };
    let large = near_limit();
    let built = document::build(&large, "0123456789ab").expect("near-limit document fits");
    println!(
        "document/near_limit: {} actions, {} of {MANAGED_POLICY_LIMIT} characters",
        large.actions.len(),
        built.size
    );
    let mut group = c.benchmark_group("document");
    group.throughput(Throughput::Elements(1));
    group.bench_function("small/3_actions", |b| {
        b.iter(|| document::build(black_box(&small), "0123456789ab").expect("builds"))
    });
    group.bench_function(format!("near_limit/{}_actions", large.actions.len()), |b| {
        b.iter(|| document::build(black_box(&large), "0123456789ab").expect("builds"))
    });
    group.bench_function("sid_suffix", |b| {
        b.iter(|| {
            document::sid_suffix(
                black_box("autoguardrails"),
                black_box("sandbox-runaway-3f2a"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_document);
criterion_main!(benches);
