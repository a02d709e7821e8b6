//! `gate serve` through the real binary: the seed's `{"ok":…,"data":…}` endpoints, simulate,
//! the Argo Rollouts analysis endpoint judged by the example AnalysisTemplate's conditions,
//! `/metrics` (checked with promtool), health and the body limit.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::support::{http, root, temp_dir, wait_for};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// File sources with dates relative to today, so `serve` (which evaluates at now) sees fresh data.
fn fresh_files(dir: &Path, failed: u64, spike: bool) -> String {
    let metrics = std::fs::read_to_string(root().join("examples/gate/metrics.json"))
        .unwrap()
        .replace(
            "\"failed_requests\": 2100",
            &format!("\"failed_requests\": {failed}"),
        );
    std::fs::write(dir.join("metrics.json"), metrics).unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let days: Vec<serde_json::Value> = (1..=14)
        .rev()
        .map(|n| {
            let date = today.checked_sub(jiff::Span::new().days(n)).unwrap();
            let cost = if spike && n <= 7 { 130.0 } else { 100.0 };
            serde_json::json!({"date": date.to_string(), "cost": cost})
        })
        .collect();
    std::fs::write(
        dir.join("cost.json"),
        serde_json::json!({"daily_costs": days}).to_string(),
    )
    .unwrap();
    let path = dir.join("gate.yaml");
    std::fs::write(
        &path,
        format!(
            "audit: {{directory: {}}}\nservices:\n  web:\n    slosFile: {}\n    metrics: {{file: metrics.json}}\n    cost: {{file: cost.json}}\n",
            dir.join("audit").display(),
            root().join("examples/gate/slos.yaml").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn start(config: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "gate",
            "--config",
            config,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    wait_for("gate /healthz", Duration::from_secs(30), || {
        match http(port, "GET", "/healthz", "") {
            Ok((200, _)) => Some(()),
            _ => None,
        }
    });
    Server { child, port }
}

fn get(s: &Server, path: &str) -> serde_json::Value {
    let (status, body) = http(s.port, "GET", path, "").unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Argo Rollouts' outcome for a measurement: the template's `successCondition` and
/// `failureCondition` (`result.F in [..]` / `result.F == ".."`) evaluated on `result`.
fn argo_outcome(template: &serde_json::Value, result: &serde_json::Value) -> &'static str {
    let metric = &template["spec"]["metrics"][0];
    let holds = |expr: &str| -> bool {
        let expr = expr.trim();
        if let Some((lhs, rhs)) = expr.split_once(" in ") {
            let field = lhs.trim().trim_start_matches("result.");
            let list: Vec<String> = serde_json::from_str(rhs.trim()).unwrap();
            list.iter().any(|v| result[field] == *v)
        } else if let Some((lhs, rhs)) = expr.split_once("==") {
            let field = lhs.trim().trim_start_matches("result.");
            let value: serde_json::Value = serde_json::from_str(rhs.trim()).unwrap();
            result[field] == value
        } else {
            panic!("unsupported condition {expr}")
        }
    };
    if holds(metric["failureCondition"].as_str().unwrap()) {
        "Failed"
    } else if holds(metric["successCondition"].as_str().unwrap()) {
        "Successful"
    } else {
        "Inconclusive"
    }
}

#[test]
fn api_endpoints_argo_metrics_and_limits() {
    let dir = temp_dir("serve");
    let server = start(&fresh_files(&dir, 100, false));
    let slo = get(&server, "/api/slo");
    assert_eq!(slo["ok"], true);
    assert_eq!(slo["data"]["error_budget_pct"], 96.14);
    assert_eq!(slo["data"]["burn_rate_label"], "low");
    assert_eq!(slo["data"]["latency_ok"], true);
    assert_eq!(slo["data"]["p95_ms"], 480.0);
    assert_eq!(slo["data"]["within_budget"], true);
    let cost = get(&server, "/api/cost");
    assert_eq!(cost["data"]["wow_change_pct"], 0.0);
    assert_eq!(cost["data"]["trend"], "stable");
    assert_eq!(cost["data"]["spike_detected"], false);
    let decision = get(&server, "/api/decision");
    assert_eq!(decision["data"]["action"], "ALLOW");
    assert_eq!(decision["data"]["policy_id"], "P008");
    assert_eq!(decision["data"]["policy_name"], "All signals healthy");
    let (status, body) = http(
        server.port,
        "POST",
        "/api/simulate",
        r#"{"set":{"error_budget_pct":15,"costSpikePct":35,"burn_rate":"high"}}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let sim: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sim["data"]["action"], "BLOCK");
    assert_eq!(sim["data"]["policy_id"], "P002");
    let (status, body) = http(
        server.port,
        "POST",
        "/api/simulate",
        r#"{"set":{"budget":1}}"#,
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"ok\":false"), "{body}");
    let all = get(&server, "/api/all");
    for key in ["slo", "cost", "decision", "trace", "explanation", "audit"] {
        assert!(!all["data"][key].is_null(), "{key} missing in /api/all");
    }
    assert!(
        all["data"]["audit"].as_array().unwrap().len() >= 4,
        "earlier evaluations are audited"
    );
    let (status, _) = http(server.port, "GET", "/api/decision?service=nope", "").unwrap();
    assert_eq!(status, 400);
    // The Argo Rollouts analysis endpoint, judged by the example template's conditions.
    let template: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("examples/gate/analysis-template.yaml")).unwrap(),
    )
    .unwrap();
    let analysis = get(&server, "/api/analysis?service=web");
    assert_eq!(analysis["data"]["verdict"], "ALLOW");
    assert_eq!(argo_outcome(&template, &analysis["data"]), "Successful");
    for (verdict, outcome) in [
        ("WARN", "Successful"),
        ("DELAY", "Inconclusive"),
        ("BLOCK", "Failed"),
    ] {
        assert_eq!(
            argo_outcome(&template, &serde_json::json!({"verdict": verdict})),
            outcome
        );
    }
    // Metrics: verdict and input gauges with a state label, valid exposition.
    let (status, text) = http(server.port, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("autoguardrails_gate_verdict{service=\"web\",verdict=\"ALLOW\"} 1"),
        "{text}"
    );
    assert!(text.contains("autoguardrails_gate_input_state{service=\"web\",signal=\"burn_alert\",state=\"NoData\"} 1"), "{text}");
    assert!(
        text.contains(
            "autoguardrails_gate_input_value{service=\"web\",signal=\"error_budget_pct\"}"
        ),
        "{text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // Body limit.
    let big = format!("{{\"set\":{{}},\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    let (status, _) = http(server.port, "POST", "/api/simulate", &big).unwrap();
    assert_eq!(status, 413);
}

#[test]
fn a_cost_spike_warns_and_argo_still_passes() {
    let dir = temp_dir("serve-spike");
    let server = start(&fresh_files(&dir, 100, true));
    let analysis = get(&server, "/api/analysis");
    assert_eq!(analysis["data"]["verdict"], "WARN");
    assert_eq!(analysis["data"]["policyId"], "P006");
    assert_eq!(analysis["data"]["pass"], true);
}
