//! Every example under `policies/` simulates as its `# simulate:` comments say, through the real
//! `autoguardrails` binary, and every signal fixture is used. Also covers `policy convert` and
//! the exit codes teams rely on in CI.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    command.current_dir(root());
    command
}

struct Expectation {
    policy: PathBuf,
    signal: String,
    flags: Vec<String>,
    reason: String,
}

fn expectations() -> Vec<Expectation> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root().join("policies"))
        .expect("policies/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for policy in entries {
        let text = std::fs::read_to_string(&policy).expect("readable");
        let mut found = false;
        for line in text.lines().filter_map(|l| l.strip_prefix("# simulate:")) {
            let (args, reason) = line.split_once("=>").expect("`# simulate: ARGS => Reason`");
            let mut words = args.split_whitespace().map(str::to_string);
            let signal = words.next().expect("a signal file");
            out.push(Expectation {
                policy: policy.clone(),
                signal,
                flags: words.collect(),
                reason: reason.trim().to_string(),
            });
            found = true;
        }
        assert!(
            found,
            "{} has no `# simulate:` line; every example must say what it does",
            policy.display()
        );
    }
    out
}

fn simulate(e: &Expectation, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let output = binary()
        .args(["simulate", "--policy"])
        .arg(&e.policy)
        .arg("--signal")
        .arg(Path::new("policies").join(&e.signal))
        .args(&e.flags)
        .args(["--output", "json"])
        .args(extra)
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let value = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        output.status.code().unwrap_or(-1),
        value,
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn every_example_simulates_as_its_comment_says() {
    let expectations = expectations();
    let policies: std::collections::BTreeSet<_> =
        expectations.iter().map(|e| e.policy.clone()).collect();
    assert!(
        policies.len() >= 5,
        "expected at least five example policies, found {}",
        policies.len()
    );
    for e in &expectations {
        let (code, report, stderr) = simulate(e, &[]);
        assert_eq!(
            code,
            0,
            "{} with {}: {stderr}",
            e.policy.display(),
            e.signal
        );
        assert_eq!(
            report["reason"],
            e.reason.as_str(),
            "{} with {}: {report}",
            e.policy.display(),
            e.signal
        );
        let quarantined = report["decision"] == "Quarantine";
        assert_eq!(quarantined, report["quarantine"].is_object());
        if quarantined {
            // The exact IAM document is printed and is a deny of the quarantine's actions.
            let document: serde_json::Value =
                serde_json::from_str(report["iamPolicy"]["document"].as_str().expect("document"))
                    .expect("JSON");
            assert_eq!(document["Statement"][0]["Effect"], "Deny");
            let actions = report["quarantine"]["spec"]["deny"]["actions"]
                .as_array()
                .expect("actions");
            assert_eq!(
                document["Statement"][0]["Action"]
                    .as_array()
                    .expect("list")
                    .len(),
                actions.len()
            );
        }
        // setPermissionsBoundary: the boundary document is printed too (allow *, then the deny).
        let boundary = report["quarantine"]["spec"]["actions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "setPermissionsBoundary"));
        assert_eq!(boundary, report["boundaryPolicy"].is_object(), "{report}");
        if boundary {
            let document: serde_json::Value = serde_json::from_str(
                report["boundaryPolicy"]["document"]
                    .as_str()
                    .expect("document"),
            )
            .expect("JSON");
            assert_eq!(document["Statement"][0]["Effect"], "Allow");
            assert_eq!(document["Statement"][0]["Action"], "*");
            assert_eq!(document["Statement"][1]["Effect"], "Deny");
        }
        // notifyOnly: a match is announced, never a Quarantine or an IAM document.
        if report["decision"] == "Notify" {
            assert_eq!(e.reason, "Matched", "{report}");
            assert!(report["iamPolicy"].is_null(), "{report}");
        }
        // --expect turns the decision into an exit status for CI.
        let (right, wrong) = if quarantined {
            ("quarantine", "none")
        } else {
            ("none", "quarantine")
        };
        assert_eq!(simulate(e, &["--expect", right]).0, 0);
        assert_eq!(simulate(e, &["--expect", wrong]).0, 1);
    }
}

#[test]
fn every_signal_fixture_is_used() {
    let used: Vec<String> = expectations().into_iter().map(|e| e.signal).collect();
    for entry in std::fs::read_dir(root().join("policies/signals")).expect("signals/ exists") {
        let name = format!(
            "signals/{}",
            entry.expect("entry").file_name().to_string_lossy()
        );
        assert!(
            used.contains(&name),
            "{name} is not used by any `# simulate:` line"
        );
    }
}

#[test]
fn kill_switch_and_region_scope_show_in_the_plan() {
    let e = Expectation {
        policy: root().join("policies/sandbox-auto-regional.yaml"),
        signal: "signals/anomaly-sandbox-nat-450.yaml".into(),
        flags: vec!["--now".into(), "2026-11-20T10:00:00Z".into()],
        reason: String::new(),
    };
    let (_, report, _) = simulate(&e, &[]);
    assert_eq!(report["quarantine"]["spec"]["mode"], "Auto");
    let document = report["iamPolicy"]["document"].as_str().expect("document");
    assert!(
        document.contains(r#""aws:RequestedRegion":["us-east-1","us-west-2"]"#),
        "{document}"
    );
    let (_, report, _) = simulate(&e, &["--kill-switch"]);
    assert_eq!(report["reason"], "KillSwitchDryRun");
    assert_eq!(report["quarantine"]["spec"]["mode"], "DryRun");
    let (_, report, _) = simulate(
        &e,
        &[
            "--protected-principal",
            "arn:aws:iam::222222222222:role/sandbox-developer",
        ],
    );
    assert_eq!(
        report["quarantine"]["spec"]["targets"]
            .as_array()
            .expect("targets")
            .len(),
        1
    );
}

#[test]
fn invalid_input_exits_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("agr-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good =
        std::fs::read_to_string(root().join("policies/ci-role-dryrun.yaml")).expect("fixture");
    let cases = [
        (good.replace("ttl: 4h", "ttl: 9d"), "spec.quarantine.ttl"),
        (
            good.replace("role/dev-ci", "user/dev-ci"),
            "spec.scope.principals[0].arn",
        ),
        (good.replace("mode: DryRun", "mode: Yolo"), "spec.mode"),
        (
            good.replace("kind: GuardrailPolicy", "kind: Deployment"),
            "kind",
        ),
        ("spec: [unclosed".to_string(), "not valid YAML"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.join(format!("p{i}.yaml"));
        std::fs::write(&path, text).expect("write");
        let output = binary()
            .args(["simulate", "--policy"])
            .arg(&path)
            .args(["--signal", "policies/signals/anomaly-dev-ec2-912.yaml"])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "case {i}: {stderr}");
        assert!(
            stderr.contains(field),
            "case {i}: expected {field:?} in {stderr}"
        );
    }
    let bad_signal = dir.join("s.yaml");
    std::fs::write(&bad_signal, "source: CostAnomaly\nid: x\naccountId: '12'\nimpactUsd: 1\nobservedAt: '2026-11-20T00:00:00Z'\n")
        .expect("write");
    let output = binary()
        .args([
            "simulate",
            "--policy",
            "policies/ci-role-dryrun.yaml",
            "--signal",
        ])
        .arg(&bad_signal)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("accountId"));
    let output = binary()
        .args([
            "simulate",
            "--policy",
            "policies/ci-role-dryrun.yaml",
            "--signal",
            "policies/signals/anomaly-dev-ec2-912.yaml",
            "--now",
            "yesterday",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policy_convert_turns_the_flat_format_into_a_valid_manifest() {
    let output = binary()
        .args([
            "policy",
            "convert",
            "policies/legacy-flat-ci.yaml",
            "--namespace",
            "autoguardrails",
        ])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&output.stdout)).expect("YAML manifest");
    assert_eq!(manifest["kind"], "GuardrailPolicy");
    assert_eq!(manifest["metadata"]["name"], "budget-spike-ci-quarantine");
    assert_eq!(manifest["metadata"]["namespace"], "autoguardrails");
    assert_eq!(manifest["spec"]["mode"], "Manual");
    assert_eq!(manifest["spec"]["quarantine"]["ttl"], "3h");
    assert_eq!(
        manifest["spec"]["match"]["sources"],
        serde_json::json!(["Budget", "CostAnomaly"])
    );
    assert_eq!(
        manifest["spec"]["notify"]["slack"]["webhookSsmParameter"],
        "/autoguardrails/slack_webhook"
    );
    assert!(autoguardrails::controller::crd::validate::guardrail_policy(&manifest).is_empty());
}

#[test]
fn policy_convert_rejects_unknown_and_contradictory_fields() {
    let dir = std::env::temp_dir().join(format!("agr-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good =
        std::fs::read_to_string(root().join("policies/legacy-flat-ci.yaml")).expect("fixture");
    let cases = [
        (
            good.replace("ttl_minutes: 180", "ttl_minutes: 180\nescalate: true"),
            "unknown field `escalate`",
        ),
        (good.replace(r#"mode: "manual""#, r#"mode: "yolo""#), "mode"),
        (
            good.replace("ttl_minutes: 180", "ttl_minutes: 0"),
            "ttl_minutes",
        ),
        (
            good.replace(r#"type: "iam_role""#, r#"type: "iam_user""#),
            "scope.principals[0].arn",
        ),
        (
            good.replace("attach_deny_policy", "delete_everything"),
            "actions[0].type",
        ),
        (
            good.replace(
                r#"mode: "manual""#,
                "mode: \"auto\"\napproval_timeout_minutes: 30",
            ),
            "approval_timeout_minutes",
        ),
        (
            good.replace(
                r#"slack_webhook_ssm_param: "/autoguardrails/slack_webhook", "#,
                "",
            ),
            "notify.channel_hint",
        ),
        (
            good.replace(r#"["budgets", "anomaly"]"#, r#"["budgets", "cloudtrail"]"#),
            "match.source[1]",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        assert_ne!(text, &good, "case {i} did not change the fixture");
        let path = dir.join(format!("f{i}.yaml"));
        std::fs::write(&path, text).expect("write");
        let output = binary()
            .args(["policy", "convert"])
            .arg(&path)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "case {i}: {stderr}");
        assert!(
            stderr.contains(needle),
            "case {i}: expected {needle:?} in {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
