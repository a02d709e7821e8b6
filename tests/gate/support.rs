//! Test harness for the gate: one real Prometheus per test binary (Debian's `prometheus`, TSDB
//! blocks backfilled with `promtool tsdb create-blocks-from openmetrics` from generated data),
//! started on first use and killed by a watchdog when the test process exits; loopback stubs for
//! a Prometheus that never answers and for the LLM APIs; helpers for temp dirs and the binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::data::{self, Scenario};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A fresh directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gate-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends a bare HTTP/1.1 request; returns the status and body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "{what} did not happen within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running Prometheus over generated blocks.
pub struct PrometheusServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    /// The reference instant the data was generated against (unix seconds).
    pub now: i64,
    /// The scenarios loaded.
    pub scenarios: Vec<Scenario>,
    child: Mutex<Option<Child>>,
    /// Start-up time (generation, promtool, ready).
    pub startup: Duration,
}

/// Error ratios of the test scenarios (minutes before the reference instant → ratio).
fn healthy(_: f64) -> f64 {
    0.0005
}
fn fast_burn(m: f64) -> f64 {
    if m < 60.0 { 0.05 } else { 0.0005 }
}
fn slow_burn(m: f64) -> f64 {
    if m < 3.0 * 1440.0 { 0.004 } else { 0.0005 }
}
fn zero(_: f64) -> f64 {
    0.0
}

/// The test scenarios.
pub fn test_scenarios() -> Vec<Scenario> {
    let mut latency = Scenario::new("latency", healthy);
    latency.latency = data::SLOW;
    let mut no_traffic = Scenario::new("no_traffic", zero);
    no_traffic.rate_per_minute = 0.0;
    let mut reset = Scenario::new("counter_reset", healthy);
    reset.reset_minutes_ago = Some(12 * 60);
    let mut stale = Scenario::new("stale", healthy);
    stale.ends_minutes_ago = 60;
    vec![
        Scenario::new("healthy", healthy),
        Scenario::new("fast_burn", fast_burn),
        Scenario::new("slow_burn", slow_burn),
        latency,
        no_traffic,
        reset,
        stale,
    ]
}

impl PrometheusServer {
    /// Generates `scenarios` relative to `now`, backfills blocks and starts Prometheus.
    pub fn start(scenarios: Vec<Scenario>, now: i64, name: &str) -> PrometheusServer {
        let started = Instant::now();
        let dir = temp_dir(name);
        let input = dir.join("data.om");
        {
            let file = std::fs::File::create(&input).unwrap();
            let mut w = std::io::BufWriter::new(file);
            data::write_openmetrics(&mut w, &scenarios, now).unwrap();
            w.flush().unwrap();
        }
        let tsdb = dir.join("tsdb");
        let output = Command::new("promtool")
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=800h",
                "-q",
            ])
            .arg(&input)
            .arg(&tsdb)
            .output()
            .expect("promtool not found: run scripts/test-deps.sh (Debian package prometheus)");
        assert!(
            output.status.success(),
            "promtool failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_file(&input);
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = free_port();
        // The watchdog shell kills Prometheus when this process goes away, even on panic.
        let script = format!(
            "\"$0\" --storage.tsdb.path={tsdb} --storage.tsdb.retention.time=3650d \
             --web.listen-address=127.0.0.1:{port} --config.file={config} --log.level=warn \
             >{log} 2>&1 & child=$!; trap 'kill $child 2>/dev/null' EXIT INT TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done",
            tsdb = tsdb.display(),
            config = config.display(),
            log = dir.join("prometheus.log").display(),
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("prometheus")
            .stdin(Stdio::null())
            .spawn()
            .expect("failed to start prometheus");
        wait_for(
            "prometheus /-/ready",
            Duration::from_secs(120),
            || match http(port, "GET", "/-/ready", "") {
                Ok((200, _)) => Some(()),
                _ => None,
            },
        );
        PrometheusServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            now,
            scenarios,
            child: Mutex::new(Some(child)),
            startup: started.elapsed(),
        }
    }

    /// The server shared by every test of this binary (data relative to its start minus 2 min).
    pub fn shared() -> &'static PrometheusServer {
        static SERVER: OnceLock<PrometheusServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let now = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                / 60)
                * 60
                - 120;
            let s = PrometheusServer::start(test_scenarios(), now, "prometheus");
            eprintln!("prometheus ready on {} in {:?}", s.url, s.startup);
            s
        })
    }

    /// The reference instant as RFC 3339.
    pub fn at(&self) -> String {
        jiff::Timestamp::from_second(self.now).unwrap().to_string()
    }

    /// The scenario named `name`.
    pub fn scenario(&self, name: &str) -> &Scenario {
        self.scenarios.iter().find(|s| s.name == name).unwrap()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// A TCP server that accepts connections and never answers (a hung Prometheus).
pub fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A recorded request of the stub.
#[derive(Clone, Debug)]
pub struct StubRequest {
    /// Request line and headers.
    pub head: String,
    /// Body.
    pub body: String,
}

/// A one-answer-fits-all HTTP stub: answers every request with `status` and `body` after
/// `delay`, recording requests.
pub fn stub_server(
    status: u16,
    answer: &'static str,
    delay: Duration,
) -> (u16, Arc<Mutex<Vec<StubRequest>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, request_body) = loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if rest.len() >= length {
                            break (head.to_string(), rest.to_string());
                        }
                    }
                };
                record.lock().unwrap().push(StubRequest {
                    head,
                    body: request_body,
                });
                std::thread::sleep(delay);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    (port, seen)
}

/// The gate configuration for a Prometheus scenario.
pub fn prometheus_config(dir: &Path, url: &str, scenario: &str, extra_service: &str) -> PathBuf {
    // Flat daily cost for the 20 days before the reference day (and today), so cost rules see data.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let days: Vec<serde_json::Value> = (0..=20)
        .rev()
        .map(|n| {
            let date = today.checked_sub(jiff::Span::new().days(n)).unwrap();
            serde_json::json!({"date": date.to_string(), "cost": 100.0})
        })
        .collect();
    std::fs::write(
        dir.join("cost.json"),
        serde_json::json!({"daily_costs": days}).to_string(),
    )
    .unwrap();
    let text = format!(
        "prometheus:\n  url: {url}\n  timeoutSeconds: 5\n\
         audit:\n  directory: {audit}\n\
         services:\n  {scenario}:\n    slo:\n      availability: {{target: 99.9, windowDays: 30}}\n      latency: {{p95ThresholdMs: 500, p99ThresholdMs: 2000}}\n    minimumRequests: 100\n    maxStalenessSeconds: 600\n    metrics:\n      prometheus:\n{queries}    cost:\n      file: cost.json\n{extra_service}",
        audit = dir.join("audit").display(),
        queries = data::queries_yaml(scenario, "        "),
    );
    let path = dir.join("gate.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the real binary; returns (exit code, stdout, stderr).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    cmd.args(args);
    for var in [
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "AUTOGUARDRAILS_GATE_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("failed to run autoguardrails");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs slo-generator's `compute` for `windows` (seconds); returns per-window
/// `(burn rate, consumed %, events)`.
pub const SLO_GENERATOR_SCRIPT: &str = r#"
import json, logging, sys
logging.disable(logging.CRITICAL)
from slo_generator.compute import compute
url, scenario, windows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = {
    "backends": {"prometheus": {"url": url}},
    "exporters": {},
    "error_budget_policies": {"default": {"steps": [
        {"name": str(w), "burn_rate_threshold": 1, "alert": False,
         "message_alert": "alert", "message_ok": "ok", "window": w} for w in windows]}},
}
slo = {
    "apiVersion": "sre.google.com/v2",
    "kind": "ServiceLevelObjective",
    "metadata": {"name": "gate-compare", "labels": {"service_name": "s", "feature_name": "f", "slo_name": "a"}},
    "spec": {
        "description": "compare", "backend": "prometheus", "method": "good_bad_ratio",
        "exporters": [], "goal": 0.999, "error_budget_policy": "default",
        "service_level_indicator": {
            "filter_good": 'http_requests_total{scenario="%s",code="200"}' % scenario,
            "filter_valid": 'http_requests_total{scenario="%s"}' % scenario,
        },
    },
}
out = []
for r in compute(slo, config):
    if not r.get("valid", True):
        out.append({"window": int(r["error_budget_policy_step_name"]), "errors": r["errors"]})
        continue
    out.append({"window": r["window"], "burn": r["error_budget_burn_rate"],
                "consumed": r["error_budget_consumed_ratio"], "events": r["events_count"],
                "sli": r["sli_measurement"]})
print(json.dumps(out))
"#;
