//! Gate benchmark (prints figures; not a test): decision latency end to end against a real
//! Prometheus holding 30 days of 1-minute data for 10 services (all of a decision's queries issued
//! concurrently), the same SLO report computed by Google's slo-generator on the same data (as a
//! ratio), and pure rule evaluations per second. Needs `scripts/test-deps.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/gate/data.rs"]
mod data;
#[path = "../tests/gate/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use autoguardrails::cli::gate_command::connect;
use autoguardrails::gate::files;
use autoguardrails::gate::inputs::{Signal, Value};
use autoguardrails::gate::rules::{self, Signals};
use jiff::Timestamp;

const SERVICES: usize = 10;
const ROUNDS: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn healthy(m: f64) -> f64 {
    if m < 90.0 { 0.002 } else { 0.0005 }
}

fn main() {
    let now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60)
        * 60
        - 60;
    let scenarios: Vec<data::Scenario> = (0..SERVICES)
        .map(|i| {
            let mut s = data::Scenario::new(&format!("svc{i}"), healthy);
            s.days = 30;
            s.coarse_step_minutes = 1;
            s.fine_hours = 0;
            s.histogram_hours = 48;
            s
        })
        .collect();
    let started = Instant::now();
    let server = support::PrometheusServer::start(scenarios, now, "bench");
    println!(
        "gate bench: Prometheus with 30 days of 1-minute data for {SERVICES} services ready in {:.1} s",
        server.startup.as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut gates = Vec::new();
    for i in 0..SERVICES {
        let dir = support::temp_dir("bench");
        let path = support::prometheus_config(&dir, &server.url, &format!("svc{i}"), "");
        let config = files::load_config(&path).unwrap();
        gates.push(
            runtime
                .block_on(connect(config, rules::defaults().unwrap()))
                .unwrap(),
        );
    }
    let at = Timestamp::from_second(now).unwrap();
    // What Prometheus really holds (samples of one counter series over 31 days, and series).
    {
        let client = gates[0].prometheus.clone().unwrap();
        let samples = runtime
            .block_on(client.instant(
                r#"count_over_time(http_requests_total{scenario="svc0",code="200"}[31d])"#,
                at,
            ))
            .ok()
            .and_then(|a| a.value);
        let series = runtime
            .block_on(client.instant("count({__name__=~\"http_.*\"})", at))
            .ok()
            .and_then(|a| a.value);
        println!(
            "gate bench: {samples:?} samples in one counter series over 31 days; {series:?} series in total"
        );
    }
    let queries = {
        let s = gates[0].config.services.values().next().unwrap();
        match &s.metrics {
            autoguardrails::gate::config::MetricsSource::Prometheus(q) => {
                let windows = autoguardrails::gate::slo::needed_windows(
                    &s.slo,
                    &gates[0].config.burn_rate.windows,
                );
                autoguardrails::gate::collect::queries(q, &windows).len()
            }
            _ => 0,
        }
    };
    // Warm-up (first queries load chunks from disk).
    for g in &gates {
        runtime
            .block_on(g.evaluate(None, at, &BTreeMap::new()))
            .unwrap();
    }
    let mut latencies = Vec::new();
    let mut verdicts = BTreeMap::new();
    for _ in 0..ROUNDS {
        for g in &gates {
            let t = Instant::now();
            let d = runtime
                .block_on(g.evaluate(None, at, &BTreeMap::new()))
                .unwrap();
            latencies.push(t.elapsed());
            *verdicts.entry(d.verdict.action.as_str()).or_insert(0) += 1;
        }
    }
    latencies.sort();
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "gate decision latency ({} decisions, {queries} PromQL queries each, concurrent): p50 {:.1} ms, p99 {:.1} ms (verdicts {verdicts:?})",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );

    // slo-generator: the same SLO (99.9 %) over the same windows, timed inside Python.
    let python = support::root().join(".venv/bin/python");
    let script = format!(
        "{}\nimport time\nts=[]\nfor _ in range(5):\n    t=time.perf_counter(); compute(slo, config); ts.append(time.perf_counter()-t)\nts.sort()\nprint('SLOGEN_MEDIAN_MS', ts[len(ts)//2]*1000)\n",
        support::SLO_GENERATOR_SCRIPT
    );
    let windows = "[300, 1800, 3600, 7200, 21600, 86400, 259200, 2592000]";
    match Command::new(&python)
        .args(["-c", &script, &server.url, "svc0", windows])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(ms) = text.lines().find_map(|l| {
                l.strip_prefix("SLOGEN_MEDIAN_MS ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            }) {
                println!(
                    "slo-generator compute, same SLO and 8 windows (16 sequential queries): median {ms:.1} ms; ratio slo-generator / gate p50 = {:.1}x",
                    ms / (p50.as_secs_f64() * 1e3)
                );
            }
        }
        Ok(out) => println!(
            "slo-generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => println!("slo-generator not run ({}): {e}", python.display()),
    }

    // Pure rule evaluations per second (the seed's eight rules).
    let rules = rules::defaults().unwrap();
    let mut inputs: Vec<Signals> = Vec::new();
    for (budget, burn, cost, ok) in [
        (50.0, "low", 0.0, true),
        (5.0, "critical", 40.0, false),
        (25.0, "medium", 22.0, true),
        (60.0, "high", 35.0, true),
    ] {
        let mut s = Signals::new();
        s.insert("error_budget_pct".into(), Signal::ok(Value::Number(budget)));
        s.insert("burn_rate".into(), Signal::ok(Value::Label(burn.into())));
        s.insert("cost_spike_pct".into(), Signal::ok(Value::Number(cost)));
        s.insert("latency_compliant".into(), Signal::ok(Value::Bool(ok)));
        inputs.push(s);
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(3) {
        for s in &inputs {
            std::hint::black_box(rules::evaluate(&rules, std::hint::black_box(s)));
            n += 1;
        }
    }
    println!(
        "pure rule evaluations (8 rules, full trace): {:.0}/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    println!(
        "gate bench finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
