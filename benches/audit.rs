//! Audit store benchmark (not a test; decision 222), against moto's DynamoDB (so the figures are
//! moto's, not AWS's, and both cores are shared with it) and the Kubernetes API emulator:
//! 1. sink throughput: 10,000 records (100 Quarantines × 100) appended with conditional
//!    `PutItem`s in per-Quarantine batches, as the flusher sends them; and the JSON-lines file;
//! 2. backlog drain: 100 Quarantines holding 100 unflushed entries each in status when the
//!    controller starts (a restart after an outage): start → every record in the table and every
//!    outbox empty (status writes included);
//! 3. the enforcement path: signal → deny attached (in-memory IAM), p50/p99, without an audit
//!    store, with DynamoDB (moto at normal, then at the lowest CPU priority: on AWS the store's
//!    work is not on the controller's cores), with JSON lines, with a store that keeps nothing
//!    (the flusher's status writes alone; all flush every 200 ms), and without again, one fresh
//!    policy per signal; the configurations take turns over rounds in a rotating order and each
//!    one's latencies are pooled; with the CPU per signal of this process and, in the first
//!    round, the API calls made and, for the three slowest signals, every request the API server
//!    answered while they ran (a timeline in ms from the signal).
//!
//! `cargo bench --bench audit` (environment: `AGR_BENCH_AUDIT_RECORDS`, default 10000;
//! `AGR_BENCH_AUDIT_SIGNALS`, default 60; `AGR_BENCH_AUDIT_ROUNDS`, default 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/moto.rs"]
#[allow(unused_imports)]
mod moto;

#[path = "../tests/support/controller.rs"]
#[allow(unused_imports)]
mod harness;

#[path = "../tests/support/audit.rs"]
mod audit_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use autoguardrails::audit::dynamodb::DynamoDbAudit;
use autoguardrails::audit::jsonl::{Destination, JsonLinesSink};
use autoguardrails::audit::{
    Actor, AuditRecord, AuditSink, CHANNEL_CONTROLLER, QuarantineRef, record_id,
};
use autoguardrails::controller::audit::AuditSettings;
use autoguardrails::controller::crd::{Phase, Quarantine};
use harness::{ACCOUNT, Harness, NS, anomaly, policy_yaml, role, test_settings};
use kube::api::{Api, Patch, PatchParams, PostParams};
use moto::MotoServer;

const PER_QUARANTINE: usize = 100;

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

/// CPU time of this process so far (user + system), in seconds: the controller, the emulator and
/// the bench share it; moto is another process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of proc(5), counted after the command name (state is field 3).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let records = setting("AGR_BENCH_AUDIT_RECORDS", 10_000);
    let signals = setting("AGR_BENCH_AUDIT_SIGNALS", 60);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(records, signals));
}

async fn count(client: &aws_sdk_dynamodb::Client, table: &str) -> i32 {
    let mut total = 0;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        total += page.count();
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return total,
        }
    }
}

fn batch(q: usize) -> Vec<AuditRecord> {
    let at = jiff::Timestamp::now();
    (0..PER_QUARANTINE)
        .map(|i| AuditRecord {
            id: record_id(&format!("uid-{q}"), i as u64),
            recorded_at: jiff::Timestamp::from_second(at.as_second()).unwrap(),
            sequence: i as u64,
            cluster: "bench".into(),
            quarantine: Some(QuarantineRef {
                namespace: NS.into(),
                name: format!("q-{q}"),
                uid: format!("uid-{q}"),
            }),
            policy: Some("bench".into()),
            principals: vec![role(&format!("r-{q}"))],
            event: "DriftRepaired".into(),
            actor: Actor {
                name: "controller".into(),
                verified: false,
                channel: CHANNEL_CONTROLLER.into(),
            },
            message: "re-attached the deny".into(),
            mode: Some("Auto".into()),
            signal: None,
            request_ids: Vec::new(),
        })
        .collect()
}

async fn run(records: usize, signals: usize) {
    let quarantines = records.div_ceil(PER_QUARANTINE);
    let moto = MotoServer::start();
    let dynamo = audit_support::dynamodb(&moto).await;
    println!(
        "audit: {} records ({quarantines} quarantines × {PER_QUARANTINE}), moto started in {:?}",
        quarantines * PER_QUARANTINE,
        moto.startup
    );

    // 1. Sink throughput.
    audit_support::create_audit_table(&dynamo, "bench-sink").await;
    let sink = DynamoDbAudit::new(dynamo.clone(), "bench-sink", None);
    let batches: Vec<Vec<AuditRecord>> = (0..quarantines).map(batch).collect();
    let started = Instant::now();
    for b in &batches {
        sink.append(b).await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "dynamodb sink: {} records in {took:.2} s = {:.0} records/s ({} items: one per record + one per principal)",
        quarantines * PER_QUARANTINE,
        (quarantines * PER_QUARANTINE) as f64 / took,
        count(&dynamo, "bench-sink").await
    );
    let started = Instant::now();
    for b in &batches {
        let again = sink.append(b).await.unwrap();
        assert_eq!(again.written, 0);
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "dynamodb sink, the same records again (all conditional-check failures): {:.0} records/s",
        (quarantines * PER_QUARANTINE) as f64 / took
    );
    let file = std::env::temp_dir().join(format!("agr-audit-bench-{}.jsonl", std::process::id()));
    let lines = JsonLinesSink::new(Destination::File(file.clone()));
    let started = Instant::now();
    for b in &batches {
        lines.append(b).await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    println!(
        "json-lines file sink (fsync per batch of {PER_QUARANTINE}): {:.0} records/s",
        (quarantines * PER_QUARANTINE) as f64 / took
    );

    // 2. Backlog drain after a restart.
    audit_support::create_audit_table(&dynamo, "bench-drain").await;
    let mut h = Harness::start_with(test_settings()).await;
    let api: Api<Quarantine> = Api::namespaced(h.client.clone(), NS);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    for q in 0..quarantines {
        let name = format!("backlog-{q:04}");
        let object: Quarantine = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoguardrails.io/v1alpha1",
            "kind": "Quarantine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "policyRef": {"name": "gone"},
                "targets": [{"kind": "IamRole", "arn": role("dev-ci")}],
                "deny": {"actions": ["ec2:RunInstances"]},
                "mode": "DryRun",
                "ttl": "1h"
            }
        }))
        .unwrap();
        let created = api.create(&PostParams::default(), &object).await.unwrap();
        let entries: Vec<serde_json::Value> = (0..PER_QUARANTINE)
            .map(|i| {
                serde_json::json!({"sequence": i, "time": now, "event": "DriftRepaired",
                    "actor": "controller", "channel": "controller", "message": "re-attached"})
            })
            .collect();
        let status = serde_json::json!({"status": {
            "phase": "Expired",
            "observedGeneration": created.metadata.generation,
            "audit": {"nextSequence": PER_QUARANTINE, "flushedBelow": 0, "entries": entries}
        }});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    let mut settings = test_settings();
    let audit = AuditSettings {
        flush_interval: jiff::SignedDuration::from_millis(200),
        max_backoff: jiff::SignedDuration::from_secs(1),
        ..AuditSettings::default()
    };
    settings.audit = audit.outlet(Some(Arc::new(DynamoDbAudit::new(
        dynamo.clone(),
        "bench-drain",
        None,
    ))));
    let started = Instant::now();
    h.restart(Some(settings.clone())).await;
    let expected = (quarantines * PER_QUARANTINE * 2) as i32;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let left = entries_in_status(&api).await;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog not drained: {left} left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed().as_secs_f64();
    let stored = count(&dynamo, "bench-drain").await;
    assert_eq!(
        stored, expected,
        "every record (and its principal copy) stored once"
    );
    println!(
        "backlog drain after a restart: {} records from {quarantines} statuses in {drained:.2} s ({:.0} records/s, cache sync and status writes included)",
        quarantines * PER_QUARANTINE,
        (quarantines * PER_QUARANTINE) as f64 / drained
    );
    h.stop().await;
    drop(h);

    // 3. The enforcement path: the configurations interleaved over rounds, in a rotating order
    // (the machine drifts between runs), each signal's latency pooled per configuration.
    let rounds = setting("AGR_BENCH_AUDIT_ROUNDS", 3);
    // moto at the lowest CPU priority: its work yields to this process, as DynamoDB's is done on
    // AWS's machines, not the controller's.
    let low_moto = MotoServer::start_low_priority();
    let low_dynamo = audit_support::dynamodb(&low_moto).await;
    const CONFIGURATIONS: [&str; 5] = [
        "without audit",
        "DynamoDB, flush every 200 ms",
        "DynamoDB with moto at the lowest CPU priority, flush every 200 ms",
        "JSON lines, flush every 200 ms",
        "a store that keeps nothing (the flusher's status writes alone), flush every 200 ms",
    ];
    let mut pooled: Vec<Pooled> = (0..CONFIGURATIONS.len())
        .map(|_| Pooled::default())
        .collect();
    let mut records_stored = 0;
    for round in 0..rounds {
        for k in 0..CONFIGURATIONS.len() {
            let c = (k + round) % CONFIGURATIONS.len();
            let table = format!("bench-enforce-{round}");
            let sink: Option<Arc<dyn AuditSink>> = match c {
                0 => None,
                1 => {
                    audit_support::create_audit_table(&dynamo, &table).await;
                    Some(Arc::new(DynamoDbAudit::new(dynamo.clone(), &table, None)))
                }
                2 => {
                    audit_support::create_audit_table(&low_dynamo, &table).await;
                    Some(Arc::new(DynamoDbAudit::new(
                        low_dynamo.clone(),
                        &table,
                        None,
                    )))
                }
                3 => Some(Arc::new(JsonLinesSink::new(Destination::File(
                    file.clone(),
                )))),
                _ => Some(Arc::new(NullSink)),
            };
            let settings = sink.map(|sink| {
                let mut settings = test_settings();
                settings.audit = audit.outlet(Some(sink));
                settings
            });
            if round == 0 {
                println!("  {}:", CONFIGURATIONS[c]);
            }
            let (latencies, cpu, left, drained) = enforcement(signals, settings, round == 0).await;
            if c == 1 {
                records_stored += count(&dynamo, &table).await;
            }
            let entry = &mut pooled[c];
            entry.p99s.push(percentile(&latencies, 0.99));
            entry.latencies.extend(latencies);
            entry.cpu += cpu;
            entry.left += left;
            entry.drained += drained;
        }
    }
    let _ = std::fs::remove_file(&file);
    drop(low_moto);
    for entry in &mut pooled {
        entry.latencies.sort_by(f64::total_cmp);
    }
    let baseline = percentile(&pooled[0].latencies, 0.99);
    for (
        c,
        Pooled {
            latencies,
            p99s,
            cpu,
            left,
            drained,
        },
    ) in pooled.iter().enumerate()
    {
        let p99 = percentile(latencies, 0.99);
        let rounds_p99: Vec<String> = p99s.iter().map(|p| format!("{p:.1}")).collect();
        println!(
            "signal -> deny attached, {} (in-memory IAM; {rounds} rounds x {signals} signals): p50 {:.1} ms, p99 {p99:.1} ms ({:+.1} % against without; each round's p99: {}); CPU of this process {:.1} ms per signal",
            CONFIGURATIONS[c],
            percentile(latencies, 0.5),
            (p99 / baseline - 1.0) * 100.0,
            rounds_p99.join(" / "),
            cpu * 1000.0 / latencies.len().max(1) as f64,
        );
        if c > 0 {
            println!(
                "  audit entries still in status when the signals stopped: {:.0} per round, all stored {:.2} s later",
                *left as f64 / rounds as f64,
                drained / rounds as f64
            );
        }
    }
    println!("items in the DynamoDB tables after the runs: {records_stored}");
}

/// Audit entries waiting in the statuses of every Quarantine `api` lists.
async fn entries_in_status(api: &Api<Quarantine>) -> usize {
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|q| {
            q.status
                .as_ref()
                .and_then(|s| s.audit.as_ref())
                .map_or(0, |a| a.entries.len())
        })
        .sum()
}

/// One configuration's figures over the rounds.
#[derive(Default)]
struct Pooled {
    /// Every signal's latency, ms.
    latencies: Vec<f64>,
    /// Each round's p99, ms.
    p99s: Vec<f64>,
    /// CPU seconds of this process.
    cpu: f64,
    /// Audit entries left in status when the signals stopped.
    left: usize,
    /// Seconds until they were all stored.
    drained: f64,
}

/// A store that keeps nothing: the flusher's own work (status writes) without a store's.
struct NullSink;

#[async_trait::async_trait]
impl AuditSink for NullSink {
    async fn append(
        &self,
        records: &[AuditRecord],
    ) -> Result<autoguardrails::audit::Appended, autoguardrails::audit::AuditError> {
        Ok(autoguardrails::audit::Appended {
            written: records.len(),
            duplicates: 0,
        })
    }

    fn name(&self) -> &'static str {
        "null"
    }
}

/// Signal → deny attached for `signals` signals, each on its own policy and role.
async fn enforcement(
    signals: usize,
    settings: Option<autoguardrails::controller::reconcile::Settings>,
    detail: bool,
) -> (Vec<f64>, f64, usize, f64) {
    let audited = settings.as_ref().is_some_and(|s| s.audit.enabled());
    let mut settings = settings.unwrap_or_else(test_settings);
    settings.drift_period = Duration::from_secs(600);
    settings.full_converge_period = Duration::from_secs(600);
    let h = Harness::start_with(settings).await;
    let roles: Vec<String> = (0..signals).map(|i| format!("enf-{i:03}")).collect();
    h.iam.outside(|o| {
        for r in &roles {
            o.create_role(r);
        }
    });
    let mut latencies = Vec::with_capacity(signals);
    let mut names: Vec<String> = Vec::with_capacity(signals);
    let mut windows: Vec<(Instant, Instant)> = Vec::with_capacity(signals);
    let cpu_before = cpu_seconds();
    let requests_before = h.emulator.requests().len();
    for (i, r) in roles.iter().enumerate() {
        // Every policy matches every signal; the earlier ones already hold a live Quarantine,
        // so each signal quarantines the role of the policy applied just before it.
        h.apply_policy(&policy_yaml(&format!("enf-{i:03}"), "Auto", "1h", &[r]))
            .await;
        let signal = anomaly(&format!("enf-signal-{i}"), ACCOUNT, 500.0);
        let started = Instant::now();
        // The deny does not wait for the signal's answer (which waits for the signal's audit
        // records, decision 242): the clock stops when the deny is attached, whichever is first.
        let (report, took) = tokio::join!(h.submit(&signal), async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while h.attached(r).len() != 1 {
                assert!(Instant::now() < deadline, "signal {i} not enforced");
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            started.elapsed().as_secs_f64() * 1000.0
        });
        let created: Vec<String> = report
            .created()
            .filter_map(|o| o.quarantine.clone())
            .collect();
        assert!(!created.is_empty(), "signal {i} created no quarantine");
        names.push(created.join(","));
        windows.push((started, started + Duration::from_secs_f64(took / 1000.0)));
        latencies.push(took);
    }
    // The deny is attached before the status write that records it: wait for the last writes.
    h.eventually("every quarantine Active", || async {
        h.quarantines()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|q| q.status.as_ref().and_then(|s| s.phase) == Some(Phase::Active))
            .count()
            >= signals
    })
    .await;
    let cpu = cpu_seconds() - cpu_before;
    // The flusher gives way to enforcement: what it left when the signals stopped, and how long
    // it then takes to store it all.
    let left = entries_in_status(&h.quarantines()).await;
    let drain_started = Instant::now();
    if audited {
        let deadline = Instant::now() + Duration::from_secs(300);
        while entries_in_status(&h.quarantines()).await > 0 {
            assert!(Instant::now() < deadline, "the backlog was not stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let drained = drain_started.elapsed().as_secs_f64();
    if !detail {
        latencies.sort_by(f64::total_cmp);
        return (latencies, cpu, left, drained);
    }
    let mut calls: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &h.emulator.requests()[requests_before..] {
        if r.verb != "watch" {
            *calls
                .entry(format!("{} {} {}", r.verb, r.resource, r.status))
                .or_default() += 1;
        }
    }
    println!("    API calls during the signals: {calls:?}");
    // What the API server saw for the three slowest signals' Quarantines, in order.
    let mut order: Vec<usize> = (0..latencies.len()).collect();
    order.sort_by(|a, b| latencies[*b].total_cmp(&latencies[*a]));
    let seen = h.emulator.requests();
    // Every request the API server answered while each of them ran, in ms from the signal
    // ("own" marks the signal's Quarantine; "status" a status write).
    for i in order.into_iter().take(3) {
        let (from, to) = windows[i];
        // Runs of the same request are folded into one entry: "first-last ms N× what".
        let mut calls: Vec<(f64, f64, usize, String)> = Vec::new();
        for r in seen[requests_before..]
            .iter()
            .filter(|r| r.verb != "watch" && r.answered_at >= from && r.answered_at <= to)
        {
            let own = r.path.ends_with(&names[i]) || r.path.contains(&format!("{}/", names[i]));
            let what = format!(
                "{} {}{} {}{}",
                r.verb,
                r.resource,
                if r.path.ends_with("/status") {
                    "/status"
                } else {
                    ""
                },
                r.status,
                if own { " own" } else { "" }
            );
            let at = r.answered_at.duration_since(from).as_secs_f64() * 1000.0;
            match calls.last_mut() {
                Some(last) if last.3 == what => {
                    last.1 = at;
                    last.2 += 1;
                }
                _ => calls.push((at, at, 1, what)),
            }
        }
        let calls: Vec<String> = calls
            .into_iter()
            .map(|(a, b, n, what)| format!("{a:.1}-{b:.1} {n}× {what}"))
            .collect();
        println!(
            "    slow signal {i} {} ({:.1} ms): {calls:?}",
            names[i], latencies[i]
        );
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, cpu, left, drained)
}
