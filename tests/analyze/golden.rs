//! The golden end to end: a role with AdministratorAccess and three weeks of mixed events (EC2,
//! S3 data events with SSE-KMS, Lambda with a passed role, KMS, one AccessDenied) through the
//! real binary → the expected policy, diff, preset violations and exit codes; the patches checked
//! by cfn-lint and python-hcl2; the policy checked by an independent evaluator.

use std::process::Command;

use serde_json::Value;

use super::{ROLE, examples, read_json, root, run, stderr, tempdir};

fn analyze(extra: &[&str], out: &std::path::Path) -> std::process::Output {
    let logs = examples().join("logs");
    let admin = examples().join("AdministratorAccess.json");
    let output = out.join("proposal.json");
    let mut args = vec![
        "analyze",
        "--role-arn",
        ROLE,
        "--from-files",
        logs.to_str().unwrap(),
        "--current-policy",
        admin.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run(&args, &[])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn emitted_actions(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in report["proposal"]["policies"].as_array().unwrap() {
        for s in p["document"]["Statement"].as_array().unwrap() {
            if s["Effect"] == "Allow" {
                out.extend(strings(&s["Action"]));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn prod_preset_reports_pass_role_and_exits_3() {
    let dir = tempdir("prod");
    let o = analyze(&["--scope-resources"], &dir);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let r = read_json(&dir.join("proposal.json"));
    assert_eq!(r["outcome"], "guardrailViolation");
    let violations: Vec<(String, String)> = r["guardrails"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["rule"].as_str().unwrap().into(),
                v["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        violations,
        vec![
            ("BlockedAction".to_string(), "iam:PassRole".to_string()),
            ("DisallowedService".to_string(), "iam:PassRole".to_string())
        ]
    );
    // Never emitted, and every statement carries the region condition.
    assert_eq!(
        emitted_actions(&r),
        vec![
            "ec2:CreateTags",
            "ec2:DescribeInstances",
            "ec2:RunInstances",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "lambda:CreateFunction",
            "lambda:InvokeFunction",
            "lambda:UpdateFunctionCode",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject"
        ]
    );
    for p in r["proposal"]["policies"].as_array().unwrap() {
        for s in p["document"]["Statement"].as_array().unwrap() {
            assert!(
                s["Condition"]["StringEquals"]["aws:RequestedRegion"].is_array(),
                "{s}"
            );
        }
    }
    // The diff: everything else of AdministratorAccess is removed; the denied call is listed.
    let diff = &r["diff"];
    assert_eq!(strings(&diff["kept"]), emitted_actions(&r));
    assert_eq!(
        diff["removedActions"].as_u64().unwrap() + 11,
        diff["grantedActions"].as_u64().unwrap()
    );
    assert!(
        diff["removedServices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service"] == "iam")
    );
    assert_eq!(
        diff["usedButNotGranted"][0]["action"],
        "dynamodb:DeleteTable"
    );
    assert_eq!(
        diff["usedButNotGranted"][0]["errorCodes"]["AccessDenied"],
        1
    );
    // Unknown actions are reported, not emitted; the snapshot date is printed.
    assert_eq!(
        r["unknownActions"][0]["candidate"],
        "ec2:DescribeInstanceTopologyNextGen"
    );
    assert!(
        r["snapshot"]["updatedAt"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    // Evidence per action, with reasons for inferred ones.
    let ev = &r["proposal"]["evidence"];
    assert_eq!(ev["s3:GetObject"]["count"], 21);
    assert!(
        ev["s3:GetObject"]["firstSeen"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T10:")
    );
    assert!(
        ev["s3:GetObject"]["lastSeen"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-21T10:")
    );
    assert!(
        ev["s3:GetObject"]["sampleEventId"]
            .as_str()
            .unwrap()
            .starts_with("00000000-")
    );
    assert_eq!(
        ev["s3:GetObject"]["resources"][0],
        "arn:aws:s3:::ci-artifacts-111122223333/*"
    );
    assert_eq!(ev["kms:GenerateDataKey"]["basis"], "inferred");
    assert!(
        ev["iam:PassRole"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("never logged")
    );
    assert_eq!(
        ev["ec2:CreateTags"]["conditions"]["StringEquals"]["ec2:CreateAction"][0],
        "RunInstances"
    );
    for key in [
        ".proposal.rationale",
        ".proposal.riskSignal",
        ".proposal.remediationNotes",
    ] {
        let mut v = &r;
        for part in key.split('.').skip(1) {
            v = &v[part];
        }
        assert!(!v.is_null(), "{key} missing");
    }
}

#[test]
fn presets_and_options_give_the_seed_exit_codes() {
    let dir = tempdir("presets");
    assert_eq!(
        analyze(&["--guardrails", "sandbox"], &dir).status.code(),
        Some(3)
    );
    let none = analyze(&["--guardrails", "none"], &dir);
    assert_eq!(none.status.code(), Some(0), "{}", stderr(&none));
    let r = read_json(&dir.join("proposal.json"));
    assert!(emitted_actions(&r).contains(&"iam:PassRole".to_string()));
    let suppressed = analyze(&["--suppress-actions", "iam:PassRole"], &dir);
    assert_eq!(suppressed.status.code(), Some(0), "{}", stderr(&suppressed));
    let r = read_json(&dir.join("proposal.json"));
    assert_eq!(r["guardrails"]["suppressed"][0], "iam:PassRole");
    let risky = analyze(&["--guardrails", "none", "--risk-threshold", "1"], &dir);
    assert_eq!(risky.status.code(), Some(2));
    let r = read_json(&dir.join("proposal.json"));
    assert_eq!(r["outcome"], "riskAboveThreshold");
    assert!(
        !r["proposal"]["riskSignal"]["factors"][0]["reason"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let excluded = analyze(
        &["--guardrails", "none", "--exclude-services", "ec2,kms"],
        &dir,
    );
    assert_eq!(excluded.status.code(), Some(0));
    let r = read_json(&dir.join("proposal.json"));
    assert!(
        emitted_actions(&r)
            .iter()
            .all(|a| !a.starts_with("ec2:") && !a.starts_with("kms:"))
    );
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, "blockedActions: [\"s3:PutObject\"]\n").unwrap();
    let ruled = analyze(
        &[
            "--guardrails",
            "none",
            "--guardrail-rules",
            rules.to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(ruled.status.code(), Some(3));
}

#[test]
fn output_is_byte_stable_and_the_patches_validate() {
    let a = tempdir("stable-a");
    let b = tempdir("stable-b");
    let cfn = a.join("patch.yml");
    let tf = a.join("patch.tf");
    let o = analyze(
        &[
            "--guardrails",
            "none",
            "--scope-resources",
            "--output-cloudformation",
            cfn.to_str().unwrap(),
            "--output-terraform",
            tf.to_str().unwrap(),
        ],
        &a,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    analyze(&["--guardrails", "none", "--scope-resources"], &b);
    assert_eq!(
        std::fs::read(a.join("proposal.json")).unwrap(),
        std::fs::read(b.join("proposal.json")).unwrap()
    );
    let venv = root().join(".venv/bin");
    let lint = Command::new(venv.join("cfn-lint"))
        .arg(&cfn)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "cfn-lint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let hcl = Command::new(venv.join("python"))
        .args([
            "-c",
            "import hcl2,sys,json; d=hcl2.load(open(sys.argv[1])); print(json.dumps(d))",
        ])
        .arg(&tf)
        .output()
        .unwrap();
    assert!(
        hcl.status.success(),
        "python-hcl2: {}",
        String::from_utf8_lossy(&hcl.stderr)
    );
    let parsed: Value = serde_json::from_slice(&hcl.stdout).unwrap();
    assert!(parsed["resource"].to_string().contains("aws_iam_policy"));
}

#[test]
fn an_independent_evaluator_allows_every_observed_call_and_denies_removed_ones() {
    let dir = tempdir("simulate");
    let o = analyze(&["--guardrails", "none", "--scope-resources"], &dir);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = read_json(&dir.join("proposal.json"));
    let policies: Vec<Value> = r["proposal"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["document"].clone())
        .collect();
    let bucket = "arn:aws:s3:::ci-artifacts-111122223333";
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let function = "arn:aws:lambda:us-east-1:111122223333:function:deploy-hook";
    let allowed = [
        (
            "s3:GetObject",
            format!("{bucket}/builds/3/app.zip"),
            "us-east-1",
            Value::Null,
        ),
        (
            "s3:PutObject",
            format!("{bucket}/builds/3/app.zip"),
            "us-east-1",
            Value::Null,
        ),
        (
            "s3:ListBucket",
            bucket.to_string(),
            "us-east-1",
            Value::Null,
        ),
        ("kms:Decrypt", key.to_string(), "us-east-1", Value::Null),
        (
            "lambda:InvokeFunction",
            function.to_string(),
            "us-east-1",
            Value::Null,
        ),
        (
            "ec2:DescribeInstances",
            "*".to_string(),
            "eu-west-1",
            Value::Null,
        ),
        (
            "ec2:DescribeInstances",
            "*".to_string(),
            "us-east-1",
            Value::Null,
        ),
        (
            "iam:PassRole",
            "arn:aws:iam::111122223333:role/lambda-exec".to_string(),
            "us-east-1",
            serde_json::json!({"iam:PassedToService": "lambda.amazonaws.com"}),
        ),
    ];
    let removed = [
        ("s3:DeleteBucket", bucket.to_string(), "us-east-1"),
        (
            "s3:GetObject",
            "arn:aws:s3:::another-bucket/x".to_string(),
            "us-east-1",
        ),
        (
            "iam:CreateUser",
            "arn:aws:iam::111122223333:user/x".to_string(),
            "us-east-1",
        ),
        (
            "dynamodb:DeleteTable",
            "arn:aws:dynamodb:us-east-1:111122223333:table/builds".to_string(),
            "us-east-1",
        ),
        ("ec2:TerminateInstances", "*".to_string(), "us-east-1"),
    ];
    let mut requests = Vec::new();
    for (action, resource, region, context) in &allowed {
        requests.push(serde_json::json!({"action": action, "resource": resource, "region": region, "context": context}));
    }
    for (action, resource, region) in &removed {
        requests
            .push(serde_json::json!({"action": action, "resource": resource, "region": region}));
    }
    let input = serde_json::json!({"policies": policies, "requests": requests});
    let dir_tools = root().join(".tools/iam-simulate");
    let mut child = Command::new("node")
        .arg(root().join("tests/analyze/simulate.mjs"))
        .env("IAM_SIMULATE_DIR", &dir_tools)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node is needed for the independent evaluator (scripts/test-deps.sh)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "iam-simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    for (i, (action, resource, region, _)) in allowed.iter().enumerate() {
        assert_eq!(results[i], "Allowed", "{action} on {resource} in {region}");
    }
    for (j, (action, resource, region)) in removed.iter().enumerate() {
        assert_ne!(
            results[allowed.len() + j],
            "Allowed",
            "{action} on {resource} in {region}"
        );
    }
}

#[test]
fn no_events_is_an_error_with_troubleshooting_never_an_empty_policy() {
    let dir = tempdir("empty");
    let logs = examples().join("logs");
    let admin = examples().join("AdministratorAccess.json");
    let output = dir.join("proposal.json");
    let o = run(
        &[
            "analyze",
            "--role-arn",
            "arn:aws:iam::111122223333:role/never-used",
            "--from-files",
            logs.to_str().unwrap(),
            "--current-policy",
            admin.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("No CloudTrail events found"), "{err}");
    assert!(err.contains("Troubleshooting"));
    assert!(!output.exists(), "no proposal may be written");
}

#[test]
fn an_unreadable_log_file_fails_the_run_instead_of_shrinking_the_policy() {
    let dir = tempdir("corrupt");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for entry in std::fs::read_dir(
        examples().join("logs/AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01"),
    )
    .unwrap()
    {
        let path = entry.unwrap().path();
        std::fs::copy(&path, logs.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        logs.join("zz_truncated.json.gz"),
        [0x1f, 0x8b, 0x08, 0x00, 0x01],
    )
    .unwrap();
    let admin = examples().join("AdministratorAccess.json");
    let output = dir.join("proposal.json");
    let o = run(
        &[
            "analyze",
            "--role-arn",
            ROLE,
            "--from-files",
            logs.to_str().unwrap(),
            "--current-policy",
            admin.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("zz_truncated"));
    assert!(!output.exists());
}
