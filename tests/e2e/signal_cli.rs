//! `autoguardrails signal parse|verify` through the real binary: exit codes and what operators
//! read (the normalised signal, each verification check and the reason for a failure).

use std::path::PathBuf;
use std::process::Command;

const ENVELOPE: &str = "tests/fixtures/signals/sns/notification-anomaly-v2.json";
const BUDGET_ENVELOPE: &str = "tests/fixtures/signals/sns/notification-budget-v1.json";
const CONFIRMATION: &str = "tests/fixtures/signals/sns/subscription-confirmation-v1.json";
const CERT: &str = "tests/fixtures/signals/sns/test-cert.pem";
const OTHER_CERT: &str = "tests/fixtures/signals/sns/other-cert.pem";
const TOPIC: &str = "arn:aws:sns:ap-northeast-1:111111111111:cost-anomaly-immediate";
const NOW: &str = "2026-12-01T06:20:00Z";

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn parse_normalises_envelopes_and_raw_payloads() {
    let (code, out, err) = run(&["signal", "parse", ENVELOPE, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let signal = json(&out);
    assert_eq!(signal["source"], "CostAnomaly");
    assert_eq!(signal["id"], "12345678-abcd-ef12-3456-987654321a12");
    assert_eq!(signal["accountId"], "222222222222");
    assert!(signal.get("raw").is_none());
    assert!(err.contains("signature was not checked"), "{err}");

    let (code, out, _) = run(&["signal", "parse", BUDGET_ENVELOPE, "-o", "json", "--raw"]);
    assert_eq!(code, 0);
    let signal = json(&out);
    assert_eq!(signal["source"], "Budget");
    assert!(signal.get("raw").is_none() || signal["raw"].is_string() || signal["raw"].is_object());

    let (code, out, _) = run(&[
        "signal",
        "parse",
        "tests/fixtures/signals/eventbridge-anomaly.json",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("id: eb-0000-1111-2222"), "{out}");

    let (code, out, _) = run(&[
        "signal",
        "parse",
        "tests/fixtures/signals/budget-actual-usd.txt",
        "--format",
        "budget-alert",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("source: Budget"), "{out}");
}

#[test]
fn parse_exits_2_with_the_reason() {
    for (file, reason) in [
        (
            "tests/fixtures/signals/budget-eur.txt",
            "UnsupportedCurrency",
        ),
        ("tests/fixtures/signals/unknown.txt", "UnknownFormat"),
        (
            "tests/fixtures/signals/eventbridge-iam-change.json",
            "UnsupportedEvent",
        ),
        (CONFIRMATION, "carries no cost signal"),
        ("tests/fixtures/signals/does-not-exist.json", "No such file"),
    ] {
        let (code, out, err) = run(&["signal", "parse", file]);
        assert_eq!(code, 2, "{file}: {out}");
        assert!(err.contains(reason), "{file}: {err}");
    }
    let (code, _, err) = run(&[
        "signal",
        "parse",
        "tests/fixtures/signals/anomaly-immediate.json",
        "--format",
        "budget-alert",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn verify_with_the_certificate_offline() {
    let (code, out, err) = run(&[
        "signal",
        "verify",
        ENVELOPE,
        "--certificate",
        CERT,
        "--topic",
        TOPIC,
        "--now",
        NOW,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(report["verified"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["envelope", "topic", "age", "certificate", "signature"]
    );

    for file in [BUDGET_ENVELOPE, CONFIRMATION] {
        let (code, out, _) = run(&[
            "signal",
            "verify",
            file,
            "--certificate",
            CERT,
            "--now",
            "2026-12-01T08:00:00Z",
            "--max-age",
            "4h",
        ]);
        assert_eq!(code, 0, "{file}: {out}");
    }
}

fn failed_check(out: &str, name: &str) -> String {
    let report = json(out);
    assert_eq!(report["verified"], false, "{out}");
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {out}"))
        .clone();
    assert_eq!(check["passed"], false, "{out}");
    check["detail"].as_str().unwrap().to_string()
}

#[test]
fn verify_says_why_a_message_is_rejected() {
    let (code, out, _) = run(&[
        "signal",
        "verify",
        ENVELOPE,
        "--certificate",
        OTHER_CERT,
        "--now",
        NOW,
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    assert!(failed_check(&out, "signature").contains("BadSignature"));

    let (code, out, _) = run(&[
        "signal",
        "verify",
        ENVELOPE,
        "--certificate",
        CERT,
        "--topic",
        "arn:aws:sns:us-east-1:111111111111:other",
        "--now",
        NOW,
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    failed_check(&out, "topic");

    let (code, out, _) = run(&[
        "signal",
        "verify",
        ENVELOPE,
        "--certificate",
        CERT,
        "--now",
        "2026-12-01T09:00:00Z",
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    assert!(failed_check(&out, "age").contains("old"));

    // a tampered copy
    let directory = std::env::temp_dir().join(format!("agr-signal-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let original =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(ENVELOPE)).unwrap();
    let tampered = original.replace("912.4", "9912.4");
    assert_ne!(original, tampered);
    let tampered_path = directory.join("tampered.json");
    std::fs::write(&tampered_path, tampered).unwrap();
    let (code, out, _) = run(&[
        "signal",
        "verify",
        tampered_path.to_str().unwrap(),
        "--certificate",
        CERT,
        "--now",
        NOW,
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    failed_check(&out, "signature");

    // not an SNS envelope, or a certificate URL off SNS: invalid input
    let http_url = original.replace(
        "https://sns.ap-northeast-1.amazonaws.com/",
        "http://sns.ap-northeast-1.amazonaws.com/",
    );
    let http_path = directory.join("http.json");
    std::fs::write(&http_path, http_url).unwrap();
    for file in [
        http_path.to_str().unwrap(),
        "tests/fixtures/signals/anomaly-immediate.json",
    ] {
        let (code, _, err) = run(&["signal", "verify", file, "--certificate", CERT]);
        assert_eq!(code, 2, "{file}");
        assert!(err.contains("error:"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&directory);
}
