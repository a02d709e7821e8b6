//! Google's slo-generator (PyPI, in .venv) against the same Prometheus data: its error-budget
//! consumption and burn rates per window agree with ours within its rounding (it rounds burn
//! rates to one decimal). It evaluates only at the current time, so both sides run at now.

use std::collections::BTreeMap;
use std::process::Command;

use autoguardrails::cli::gate_command::connect;
use autoguardrails::gate::config::Window;
use autoguardrails::gate::files;
use autoguardrails::gate::rules;
use jiff::Timestamp;

use super::support::{PrometheusServer, SLO_GENERATOR_SCRIPT, prometheus_config, root, temp_dir};

/// Runs the script; panics with its output on failure.
pub fn slo_generator(url: &str, scenario: &str, windows: &[u64]) -> Vec<serde_json::Value> {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-deps.sh",
        python.display()
    );
    let output = Command::new(python)
        .args([
            "-c",
            SLO_GENERATOR_SCRIPT,
            url,
            scenario,
            &serde_json::to_string(windows).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "slo-generator failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_budget_and_burn_rates_agree_with_slo_generator() {
    let p = PrometheusServer::shared();
    let windows = [300u64, 3600, 21_600, 86_400, 259_200, 2_592_000];
    for scenario in ["healthy", "slow_burn", "fast_burn"] {
        // slo-generator evaluates at "now", somewhere between `before` and `after`; we evaluate
        // at both instants and accept its answer anywhere between ours (plus its rounding). On a
        // loaded machine the script may take seconds, which moves a 5-minute window noticeably.
        let before = Timestamp::now();
        let theirs = slo_generator(&p.url, scenario, &windows);
        let after = Timestamp::now();
        let dir = temp_dir("slogen");
        let path = prometheus_config(&dir, &p.url, scenario, "");
        let gate = connect(
            files::load_config(&path).unwrap(),
            rules::defaults().unwrap(),
        )
        .await
        .unwrap();
        let burns = |d: &autoguardrails::gate::decide::Decision| -> BTreeMap<u64, f64> {
            d.slo
                .pairs
                .iter()
                .flat_map(|pair| [(pair.long, &pair.long_burn), (pair.short, &pair.short_burn)])
                .filter_map(|(w, r): (Window, _)| r.value.map(|v| (w.seconds(), v)))
                .collect()
        };
        let d = gate.evaluate(None, after, &BTreeMap::new()).await.unwrap();
        let d_before = gate.evaluate(None, before, &BTreeMap::new()).await.unwrap();
        let ours = burns(&d);
        let ours_before = burns(&d_before);
        assert_eq!(theirs.len(), windows.len(), "{theirs:?}");
        for t in &theirs {
            let window = t["window"].as_u64().unwrap();
            // slo-generator asks for good and valid events in two queries at two instants; in a
            // 5-minute window of a healthy service the good count can then exceed the valid one
            // and it refuses its own SLI (seen: 1.000722). That is the reference failing, not
            // us: the window is left out of the comparison, never the longer ones.
            let own_race = t["errors"]
                .to_string()
                .contains("SLI is not between 0 and 1");
            if window == 300 && own_race {
                eprintln!("{scenario}: slo-generator's own 5-minute SLI raced: {t}");
                continue;
            }
            assert!(
                t["errors"].is_null(),
                "{scenario}: slo-generator could not compute window {window}: {t}"
            );
            let their_burn = t["burn"].as_f64().unwrap();
            if window == 2_592_000 {
                let consumed = t["consumed"].as_f64().unwrap();
                let budget = d.slo.error_budget_raw_pct.value.unwrap();
                assert!(
                    (budget - (100.0 - consumed)).abs() < 0.5,
                    "{scenario}: our budget {budget} vs slo-generator {}",
                    100.0 - consumed
                );
                let ours_burn = 1.0 - budget / 100.0;
                assert!(
                    (ours_burn - their_burn).abs() <= 0.051,
                    "{scenario} 30d burn {ours_burn} vs {their_burn}"
                );
            } else {
                let (a, b) = (ours_before[&window], ours[&window]);
                let (low, high) = (a.min(b), a.max(b));
                // slo-generator rounds to one decimal, and the two range queries may cover one
                // 1-minute sample more or less at the window's edge, depending on how `now`
                // falls between samples: in a 5-minute window that alone moves the rate by a
                // fifth (seen: 0.5 vs 0.4 at the same instant), and on a loaded machine the
                // two queries may differ by a sample at each end (seen: 0.5 vs 0.3). Relative
                // to the larger of the two answers.
                let edge = 60.0 / window as f64;
                let tolerance = 0.051 + (0.02 + 2.0 * edge) * high.max(their_burn);
                assert!(
                    their_burn >= low - tolerance && their_burn <= high + tolerance,
                    "{scenario} window {window}: ours {low}..{high} vs slo-generator {their_burn}"
                );
            }
        }
    }
}
