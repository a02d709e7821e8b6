//! `autoguardrails gate` end to end through the real binary: exit codes, the JSON document,
//! GitHub Actions outputs in temp files, configuration and usage errors, audit listing, the
//! reports, simulate, backtest, and production wiring (real Prometheus + Cost Explorer on moto).

use std::path::Path;

use super::costexplorer::{MOTO_CE, seed};
use super::moto::MotoServer;
use super::support::{PrometheusServer, prometheus_config, root, run_binary, temp_dir};

fn example() -> String {
    root().join("examples/gate/gate.yaml").display().to_string()
}

const AT: &str = "2026-02-21T00:00:00Z";

fn gate(args: &[&str], audit: &Path) -> (i32, String, String) {
    let config = example();
    let audit = audit.display().to_string();
    let mut all: Vec<&str> = vec![
        "gate",
        "--config",
        &config,
        "--at",
        AT,
        "--audit-dir",
        &audit,
    ];
    all.extend_from_slice(args);
    run_binary(&all, &[])
}

#[test]
fn decision_exit_codes_follow_the_seed() {
    let audit = temp_dir("cli-audit");
    let (code, out, err) = gate(&[], &audit);
    assert_eq!(code, 1, "DELAY exits 1: {out}{err}");
    assert!(out.contains("Decision:   DELAY (15 minutes)"), "{out}");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["simulate", "--set", "errorBudgetPct=5"], 2, "BLOCK"),
        (&["simulate", "--set", "error_budget_pct=80"], 0, "ALLOW"),
        (
            &[
                "simulate",
                "--set",
                "errorBudgetPct=80",
                "--set",
                "costSpikePct=25",
            ],
            0,
            "WARN",
        ),
        (
            &[
                "simulate",
                "--set",
                "errorBudgetPct=80",
                "--set",
                "burn_rate=NoData",
            ],
            1,
            "DELAY",
        ),
        (
            &[
                "simulate",
                "--set",
                "errorBudgetPct=15",
                "--set",
                "costSpikePct=35",
                "--set",
                "burnRateValue=6",
            ],
            2,
            "BLOCK",
        ),
    ];
    for (args, expected, verdict) in cases {
        let (code, out, err) = gate(args, &audit);
        assert_eq!(code, *expected, "{args:?}: {out}{err}");
        assert!(
            out.contains(&format!("Decision:   {verdict}")),
            "{args:?}: {out}"
        );
    }
    // Every evaluation was audited; the listing filters by verdict.
    let (code, out, _) = run_binary(
        &[
            "gate",
            "audit",
            "--audit-dir",
            &audit.display().to_string(),
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 6);
    assert_eq!(
        records.iter().filter(|r| r["mode"] == "simulate").count(),
        5
    );
    let (_, out, _) = run_binary(
        &[
            "gate",
            "audit",
            "--audit-dir",
            &audit.display().to_string(),
            "--verdict",
            "block",
        ],
        &[],
    );
    assert!(out.contains("2 record(s)"), "{out}");
}

#[test]
fn json_document_shape() {
    let audit = temp_dir("cli-json");
    let (code, out, _) = gate(&["--output", "json"], &audit);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["verdict"], "DELAY");
    assert_eq!(doc["exitCode"], 1);
    assert_eq!(doc["policyId"], "P005");
    assert_eq!(doc["reasonCode"], "RuleMatched");
    assert_eq!(doc["delayMinutes"], 15);
    assert_eq!(doc["service"], "checkout-api");
    assert_eq!(doc["at"], AT);
    assert_eq!(doc["signals"]["error_budget_pct"]["state"], "Ok");
    assert_eq!(doc["signals"]["cost_spike_pct"]["state"], "Partial");
    assert_eq!(doc["trace"].as_array().unwrap().len(), 8);
    assert_eq!(doc["slo"]["burn_rate_label"], "low");
    assert_eq!(doc["cost"]["trend"], "stable");
    assert_eq!(doc["explanationSource"], "rules");
    assert!(
        doc["explanation"]
            .as_str()
            .unwrap()
            .contains("DELAYED by 15 minutes")
    );
    let file = doc["auditFile"].as_str().unwrap();
    assert!(
        file.ends_with(".jsonl") && Path::new(file).exists(),
        "{file}"
    );
}

#[test]
fn github_actions_outputs_summary_and_annotation() {
    let dir = temp_dir("cli-github");
    let output = dir.join("output");
    let summary = dir.join("summary.md");
    std::fs::write(&output, "earlier=1\n").unwrap();
    let (code, out, err) = run_binary(
        &[
            "gate",
            "--config",
            &example(),
            "--at",
            AT,
            "--audit-dir",
            &dir.join("audit").display().to_string(),
            "simulate",
            "--set",
            "errorBudgetPct=5",
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", &output.display().to_string()),
            ("GITHUB_STEP_SUMMARY", &summary.display().to_string()),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(
        outputs.starts_with("earlier=1\n"),
        "appends, never truncates: {outputs}"
    );
    assert!(
        outputs.contains("verdict=BLOCK\n") && outputs.contains("delayMinutes=0\n"),
        "{outputs}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("## 🚫 Deployment gate: BLOCK for `checkout-api`"),
        "{md}"
    );
    assert!(
        md.contains("| P001 Critical error budget exhaustion | BLOCK | matched **(decisive)** |"),
        "{md}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error title=Deployment gate BLOCK (checkout-api)::[P001]")),
        "{out}"
    );
    // DELAY: a warning annotation and the delay in the outputs.
    let (code, out, _) = run_binary(
        &[
            "gate",
            "--config",
            &example(),
            "--at",
            AT,
            "--audit-dir",
            &dir.join("audit").display().to_string(),
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", &output.display().to_string()),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        std::fs::read_to_string(&output)
            .unwrap()
            .ends_with("verdict=DELAY\ndelayMinutes=15\npolicyId=P005\nreasonCode=RuleMatched\n")
    );
    assert!(out.contains("::warning title="), "{out}");
}

#[test]
fn configuration_and_usage_errors_exit_3_naming_the_field() {
    let dir = temp_dir("cli-config");
    let bad = dir.join("gate.yaml");
    std::fs::write(&bad, "services:\n  web:\n    slo: {availability: {target: 100.5}}\n    metrics: {file: m.json}\n").unwrap();
    let (code, _, err) = run_binary(&["gate", "--config", &bad.display().to_string()], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("services.web.slo.availability.target"),
        "{err}"
    );
    std::fs::write(&bad, "services:\n  web:\n    slo: {availability: {target: 99}}\n    metrics: {file: m.json}\n    costt: {}\n").unwrap();
    let (code, _, err) = run_binary(
        &[
            "gate",
            "--config",
            &bad.display().to_string(),
            "check-config",
        ],
        &[],
    );
    assert_eq!(code, 3);
    assert!(err.contains("costt"), "{err}");
    let (code, _, err) = run_binary(&["gate", "--config", "/nonexistent/gate.yaml"], &[]);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run_binary(&["gate", "--bogus"], &[]);
    assert_eq!(code, 3, "clap usage errors must not read as BLOCK: {err}");
    let (code, _, err) = run_binary(&["gate", "--config", &example(), "--at", "yesterday"], &[]);
    assert_eq!(code, 3);
    assert!(err.contains("--at"), "{err}");
    let (code, _, err) = run_binary(
        &[
            "gate",
            "--config",
            &example(),
            "--at",
            AT,
            "simulate",
            "--set",
            "budget=5",
        ],
        &[],
    );
    assert_eq!(code, 3);
    assert!(err.contains("unknown signal"), "{err}");
    let (code, _, err) = run_binary(&["gate", "--config", &example(), "--service", "nope"], &[]);
    assert_eq!(code, 3);
    assert!(err.contains("no service \"nope\""), "{err}");
    let (code, out, _) = run_binary(&["gate", "--config", &example(), "check-config"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("rules: P001, P002, P003, P004, P005, P006, P007, P008"),
        "{out}"
    );
}

#[test]
fn one_shot_reports() {
    let (code, out, _) = run_binary(&["gate", "--config", &example(), "--at", AT, "slo"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("Error budget left  18.98%"), "{out}");
    let (code, out, _) = run_binary(
        &[
            "gate",
            "--config",
            &example(),
            "--at",
            AT,
            "cost",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["data"]["wow_change_pct"], -0.63);
    assert_eq!(doc["data"]["estimated_days"], 1);
}

#[test]
fn production_wiring_prometheus_and_cost_explorer_on_moto() {
    let p = PrometheusServer::shared();
    let moto = MotoServer::shared();
    let dir = temp_dir("cli-prod");
    let tag = super::moto::unique("web");
    let path = prometheus_config(&dir, &p.url, "healthy", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "    cost:\n      file: cost.json\n",
        &format!("    cost:\n      costExplorer:\n        tags: {{service: [{tag}]}}\n"),
    ) + &format!(
        "costExplorer:\n  endpointUrl: {}\n  maxAttempts: 0\n",
        moto.url
    );
    std::fs::write(&path, text).unwrap();
    let today = jiff::Timestamp::from_second(p.now)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let mut amounts = vec![40.0; 10];
    amounts.extend([50.0; 7]);
    let aws = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let from = jiff::Timestamp::from_second(p.now - 2 * 3600)
        .unwrap()
        .to_string();
    let config = path.display().to_string();
    let _guard = MOTO_CE.lock().unwrap_or_else(|e| e.into_inner());
    seed(moto, today, &amounts, 1);
    let (code, out, err) = run_binary(
        &[
            "gate",
            "--config",
            &config,
            "--at",
            &p.at(),
            "--output",
            "json",
        ],
        &aws,
    );
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(doc["verdict"], "WARN", "{doc:#}");
    assert_eq!(doc["policyId"], "P006");
    assert_eq!(code, 0);
    assert_eq!(doc["cost"]["wow_change_pct"], 25.0);
    assert_eq!(doc["signals"]["cost_spike_pct"]["state"], "Partial");
    assert_eq!(doc["signals"]["error_budget_pct"]["state"], "Ok");
    // Backtest through the binary: one line per step and a summary.
    let (code, out, err) = run_binary(
        &[
            "gate",
            "--config",
            &config,
            "backtest",
            "--from",
            &from,
            "--to",
            &p.at(),
            "--every",
            "1h",
        ],
        &aws,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 step(s)"), "{out}{err}");
}

#[test]
fn explain_asks_the_configured_llm_and_falls_back_when_it_fails() {
    let (port, seen) = super::support::stub_server(
        200,
        r#"{"content":[{"type":"text","text":"LLM: wait fifteen minutes."}]}"#,
        std::time::Duration::ZERO,
    );
    let dir = temp_dir("cli-llm");
    let examples = root().join("examples/gate");
    let config = dir.join("gate.yaml");
    let write = |url: String| {
        std::fs::write(
            &config,
            format!(
                "explainer: {{backend: anthropic, url: '{url}', apiKeyEnv: GATE_LLM_KEY, timeoutSeconds: 2}}\naudit: {{directory: audit}}\nservices:\n  web:\n    slosFile: {e}/slos.yaml\n    metrics: {{file: {e}/metrics.json}}\n    cost: {{file: {e}/cost.json}}\n",
                e = examples.display()
            ),
        )
        .unwrap();
    };
    write(format!("http://127.0.0.1:{port}"));
    let path = config.display().to_string();
    let key = [("GATE_LLM_KEY", "k")];
    let (code, out, err) = run_binary(
        &[
            "gate",
            "--config",
            &path,
            "--at",
            AT,
            "--explain",
            "--output",
            "json",
        ],
        &key,
    );
    assert_eq!(code, 1, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["explanationSource"], "llm");
    assert_eq!(doc["explanation"], "LLM: wait fifteen minutes.");
    assert_eq!(doc["verdict"], "DELAY", "the LLM never changes the verdict");
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Without --explain the LLM is not asked.
    run_binary(&["gate", "--config", &path, "--at", AT], &key);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // An unreachable LLM falls back to the rule-based text, with a note.
    write(format!("http://127.0.0.1:{}", super::support::free_port()));
    let (code, out, err) = run_binary(
        &[
            "gate",
            "--config",
            &path,
            "--at",
            AT,
            "--explain",
            "--output",
            "json",
        ],
        &key,
    );
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["explanationSource"], "rules");
    assert!(err.contains("explainer fell back"), "{err}");
}
