//! Micro-benchmark (not a test): SNS signature verification v1 (SHA1withRSA) and v2
//! (SHA256withRSA) with the certificate already cached (no fetch), signed in the set-up with the
//! committed test key like the signal tests do; and payload parsing of every fixture kind
//! (`tests/fixtures/signals/*` payloads, `policies/signals/*` signal files).
//!
//! `cargo bench --bench sns`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/sns_signing.rs"]
mod sns_signing;

use std::hint::black_box;

use autoguardrails::controller::endpoints::certs::StaticCertificates;
use autoguardrails::controller::signal::parse::{Hint, parse};
use autoguardrails::controller::signal::sns::{
    Envelope, ReplayCache, ValidatedCertUrl, Verifier, VerifierConfig, public_key_from_pem,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use sns_signing::{CERT, CERT_URL, Signer, TOPIC};

fn bench_verify(c: &mut Criterion) {
    let now = Timestamp::now();
    let timestamp = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let signer = Signer::test();
    let message = sns_signing::anomaly_message("bench-anomaly", "111111111111", 912.5);
    let fields = sns_signing::notification("bench-message-0001", &timestamp, &message);
    let url = ValidatedCertUrl::parse(CERT_URL).expect("certificate URL");
    let verifier = Verifier::new(
        VerifierConfig::new([TOPIC]),
        StaticCertificates::new().with(&url, CERT),
    );
    let mut group = c.benchmark_group("sns");
    group.throughput(Throughput::Elements(1));
    for version in ["1", "2"] {
        let body = signer.envelope(&fields, version);
        let envelope = Envelope::parse(&body).expect("envelope parses");
        envelope
            .verify_signature(CERT.as_bytes(), now)
            .expect("signature verifies");
        // The signature check alone (certificate PEM in memory, parsed per call as in production).
        group.bench_function(format!("verify_signature/v{version}"), |b| {
            b.iter(|| black_box(&envelope).verify_signature(CERT.as_bytes(), now))
        });
        // Every check of a delivery: parse, topic, freshness, cached certificate, signature, replay.
        group.bench_function(format!("verifier/v{version}"), |b| {
            b.iter_batched(
                || ReplayCache::new(16, SignedDuration::from_hours(1)),
                |mut replay| {
                    verifier
                        .verify(black_box(&body), now, &mut replay)
                        .expect("delivery verifies")
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("certificate_to_public_key", |b| {
        b.iter(|| public_key_from_pem(black_box(CERT.as_bytes()), now).expect("key"))
    });
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    let mut payloads: Vec<_> = std::fs::read_dir(format!("{root}/tests/fixtures/signals"))
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    payloads.sort();
    for path in payloads {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("fixture");
        if parse(&text, &Hint::default()).is_err() {
            // Refusals (unknown formats, unsupported events) are measured elsewhere by the tests.
            println!("parse/{name}: refused by the parser, not measured");
            continue;
        }
        group.bench_function(format!("payload/{name}"), |b| {
            b.iter(|| parse(black_box(&text), &Hint::default()).expect("parses"))
        });
    }
    let mut signals: Vec<_> = std::fs::read_dir(format!("{root}/policies/signals"))
        .expect("signals directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    signals.sort();
    for path in signals {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let file = path.to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("signal file");
        autoguardrails::controller::simulate::load_signal(&file, &text).expect("signal file loads");
        group.bench_function(format!("signal_file/{name}"), |b| {
            b.iter(|| {
                autoguardrails::controller::simulate::load_signal(&file, black_box(&text))
                    .expect("loads")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify, bench_parse);
criterion_main!(benches);
