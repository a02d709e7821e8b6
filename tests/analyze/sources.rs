//! The sources and outside services through the real SDK and the real binary: CloudTrail
//! LookupEvents and Account ListRegions from a stub speaking their JSON protocols (pagination,
//! throttling, a page that never succeeds), IAM, S3 and Athena on moto, Bedrock Converse and the
//! GitHub REST API from stubs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use autoguardrails::aws::sdk::{SdkSettings, load_base_config};
use serde_json::{Value, json};

use super::moto::{MotoServer, unique};
use super::stub::{Recorded, Stub};
use super::{ROLE, examples, read_json, run, stderr, stdout, tempdir};

const MOTO_ACCOUNT: &str = "123456789012";
const END: &str = "2024-06-01T00:00:00Z";

fn settings(server: &MotoServer, key: &str) -> SdkSettings {
    SdkSettings {
        static_credentials: Some((key.to_string(), "testing".to_string())),
        ..server.settings()
    }
}

fn aws_env<'a>(server: &'a MotoServer, key: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AGR_AWS_ENDPOINT_URL", server.url.as_str()),
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AGR_AWS_MAX_ATTEMPTS", "0"),
    ]
}

async fn role_with_admin(server: &MotoServer, key: &str, name: &str, deny: bool) {
    let iam = aws_sdk_iam::Client::new(&load_base_config(&settings(server, key)).await);
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .unwrap();
    // moto does not preload AWS managed policies: a customer managed copy of AdministratorAccess.
    let policy_name = unique("AdministratorAccess");
    let policy = iam
        .create_policy()
        .policy_name(&policy_name)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name(name)
        .policy_arn(policy.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    if deny {
        iam.put_role_policy()
            .role_name(name)
            .policy_name("no-bucket-deletes")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoDeletes","Effect":"Deny","Action":"s3:Delete*","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
    }
}

fn lookup_event(role: &str, n: u32, source: &str, name: &str) -> Value {
    let record = json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/{role}/s"),
            "accountId": MOTO_ACCOUNT,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{MOTO_ACCOUNT}:role/{role}"), "userName": role}}},
        "eventTime": format!("2024-05-{:02}T12:00:00Z", 10 + n % 10),
        "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
        "requestParameters": null, "responseElements": null,
        "eventID": format!("lookup-{n}"), "eventType": "AwsApiCall", "managementEvent": true,
    });
    json!({"EventId": format!("lookup-{n}"), "EventName": name, "ReadOnly": "true",
        "EventTime": 1715342400.0, "EventSource": source, "Username": "s",
        "CloudTrailEvent": record.to_string()})
}

#[test]
fn lookup_events_pages_retries_throttling_and_reads_iam_from_moto() {
    let server = MotoServer::shared();
    let role = unique("lookup-role");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(role_with_admin(server, "testing", &role, true));
    let throttled = Arc::new(AtomicU32::new(0));
    let (r, t) = (role.clone(), throttled.clone());
    let stub = Stub::start(Arc::new(move |req: &Recorded| {
        if req.path.contains("listRegions") {
            return (200, json!({"Regions": [{"RegionName": "us-east-1", "RegionOptStatus": "ENABLED_BY_DEFAULT"}, {"RegionName": "eu-west-1", "RegionOptStatus": "ENABLED"}]}).to_string());
        }
        assert_eq!(req.target, "CloudTrail_20131101.LookupEvents");
        let body: Value = serde_json::from_str(&req.body).unwrap();
        match body["NextToken"].as_str() {
            None => (200, json!({"Events": [lookup_event(&r, 1, "ec2.amazonaws.com", "DescribeInstances"), lookup_event(&r, 2, "s3.amazonaws.com", "ListBuckets")], "NextToken": "page-2"}).to_string()),
            Some("page-2") if t.fetch_add(1, Ordering::SeqCst) % 2 == 0 => {
                (400, json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string())
            }
            Some("page-2") => (200, json!({"Events": [lookup_event(&r, 3, "ec2.amazonaws.com", "DescribeInstances"), lookup_event(&r, 4, "s3.amazonaws.com", "DeleteBucket")]}).to_string()),
            Some(other) => panic!("unexpected token {other}"),
        }
    }));
    let dir = tempdir("lookup");
    let output = dir.join("proposal.json");
    let arn = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/{role}");
    let mut env = aws_env(server, "testing");
    env.extend([
        ("AGR_CLOUDTRAIL_ENDPOINT_URL", stub.url.as_str()),
        ("AGR_ACCOUNT_ENDPOINT_URL", stub.url.as_str()),
        ("AGR_LOOKUP_BACKOFF_MS", "1"),
        ("AGR_LOOKUP_RATE", "50"),
    ]);
    let o = run(
        &[
            "analyze",
            "--role-arn",
            &arn,
            "--usage-days",
            "30",
            "--end-time",
            END,
            "--guardrails",
            "none",
            "--risk-threshold",
            "100",
            "--output",
            output.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stderr(&o), stdout(&o));
    let requests = stub.requests();
    let lookups: Vec<&Recorded> = requests.iter().filter(|r| !r.target.is_empty()).collect();
    // Two regions x (page 1, throttled page 2, page 2).
    assert_eq!(lookups.len(), 6, "{lookups:?}");
    let r = read_json(&output);
    assert_eq!(
        r["diff"]["kept"],
        json!(["ec2:DescribeInstances", "s3:ListAllMyBuckets"])
    );
    // Explicitly denied today: never proposed, listed with the reason.
    assert_eq!(
        r["proposal"]["evidence"]["s3:DeleteBucket"]["decision"],
        "notGrantedToday"
    );
    assert!(
        r["proposal"]["evidence"]["s3:DeleteBucket"]["detail"]
            .as_str()
            .unwrap()
            .contains("explicitly denied")
    );
    assert_eq!(
        r["diff"]["usedButNotGranted"][0]["action"],
        "s3:DeleteBucket"
    );
    assert!(
        r["diff"]["currentPolicies"]
            .to_string()
            .contains("AdministratorAccess")
    );
    assert_eq!(
        r["coverage"]["sources"][0]["regions"],
        json!(["eu-west-1", "us-east-1"])
    );
    // Event History has no data events: the risk says so.
    assert!(
        r["proposal"]["riskSignal"]
            .to_string()
            .contains("DataEventsNotLogged")
    );
}

#[test]
fn a_lookup_page_that_never_succeeds_fails_the_run() {
    let server = MotoServer::shared();
    let stub = Stub::start(Arc::new(|req: &Recorded| {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        if body["NextToken"].is_null() {
            (200, json!({"Events": [lookup_event("r", 1, "ec2.amazonaws.com", "DescribeInstances")], "NextToken": "p2"}).to_string())
        } else {
            (
                400,
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
            )
        }
    }));
    let dir = tempdir("lookup-fail");
    let output = dir.join("proposal.json");
    let mut env = aws_env(server, "testing");
    env.extend([
        ("AGR_CLOUDTRAIL_ENDPOINT_URL", stub.url.as_str()),
        ("AGR_LOOKUP_BACKOFF_MS", "1"),
        ("AGR_LOOKUP_RATE", "50"),
    ]);
    let arn = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/r");
    let o = run(
        &[
            "analyze",
            "--role-arn",
            &arn,
            "--regions",
            "us-east-1",
            "--end-time",
            END,
            "--output",
            output.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("incomplete"), "{}", stderr(&o));
    assert!(!output.exists());
    assert_eq!(stub.requests().len(), 7, "1 page + 6 attempts");
}

fn upload_logs(server: &MotoServer, key: &str, bucket: &str) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let config = load_base_config(&settings(server, key)).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        let root = examples().join("logs");
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let key = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .to_string();
                    let body = std::fs::read(&path).unwrap();
                    s3.put_object()
                        .bucket(bucket)
                        .key(format!("trail/{key}"))
                        .body(body.into())
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    });
}

#[test]
fn s3_log_files_give_the_same_proposal_as_local_files() {
    let server = MotoServer::shared();
    let key = "111122223333";
    let bucket = unique("trail-bucket").to_lowercase();
    upload_logs(server, key, &bucket);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(role_with_admin(server, key, "ci-deployer", false));
    let dir = tempdir("s3");
    let output = dir.join("proposal.json");
    let o = run(
        &[
            "analyze",
            "--role-arn",
            ROLE,
            "--s3-bucket",
            &bucket,
            "--s3-prefix",
            "trail",
            "--usage-days",
            "30",
            "--end-time",
            END,
            "--guardrails",
            "none",
            "--output",
            output.to_str().unwrap(),
        ],
        &aws_env(server, key),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = read_json(&output);
    assert_eq!(r["coverage"]["sources"][0]["origin"], "s3");
    // Only the day prefixes of the window are listed: May 1st (12 records) is outside it.
    assert_eq!(r["coverage"]["eventsRead"], 206);
    let files = dir.join("files.json");
    let admin = examples().join("AdministratorAccess.json");
    let logs = examples().join("logs");
    run(
        &[
            "analyze",
            "--role-arn",
            ROLE,
            "--from-files",
            logs.to_str().unwrap(),
            "--usage-days",
            "30",
            "--end-time",
            END,
            "--current-policy",
            admin.to_str().unwrap(),
            "--guardrails",
            "none",
            "--output",
            files.to_str().unwrap(),
        ],
        &[],
    );
    let f = read_json(&files);
    assert_eq!(
        r["coverage"]["eventsMatched"],
        f["coverage"]["eventsMatched"]
    );
    assert_eq!(r["diff"]["kept"], f["diff"]["kept"]);
    assert_eq!(r["proposal"]["policies"], f["proposal"]["policies"]);
}

#[test]
fn athena_rows_are_aggregated_in_the_query() {
    let server = MotoServer::shared();
    // moto serves seeded Athena results in its default account only.
    let key = "testing";
    let role = unique("athena-role");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(role_with_admin(server, key, &role, false));
    let caller = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/{role}");
    let cell = |v: &str| json!({"VarCharValue": v});
    let row = |cells: &[&str]| json!({"Data": cells.iter().map(|c| cell(c)).collect::<Vec<_>>()});
    let header = row(&autoguardrails::analyze::athena::COLUMNS);
    let rows = vec![
        header,
        row(&[
            &caller,
            "s3.amazonaws.com",
            "GetObject",
            "",
            "us-east-1",
            "arn:aws:s3:::data/k",
            "1200",
            "2024-05-02 10:00:00.000",
            "2024-05-30 10:00:00.000",
            "e-1",
            "",
            "",
        ]),
        row(&[
            &caller,
            "dynamodb.amazonaws.com",
            "Query",
            "",
            "us-east-1",
            "arn:aws:dynamodb:us-east-1:123456789012:table/t",
            "30",
            "2024-05-03 10:00:00.000",
            "2024-05-29 10:00:00.000",
            "e-2",
            "",
            "",
        ]),
    ];
    let body =
        json!({"account_id": MOTO_ACCOUNT, "region": "us-east-1", "results": [{"rows": rows}]})
            .to_string();
    let url = format!("{}/moto-api/static/athena/query-results", server.url);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            &url,
        ])
        .output()
        .expect("curl seeds moto's Athena results");
    eprintln!("seed: {}", String::from_utf8_lossy(&out.stdout));
    let dir = tempdir("athena");
    let output = dir.join("proposal.json");
    let arn = caller.clone();
    let o = run(
        &[
            "analyze",
            "--role-arn",
            &arn,
            "--athena-workgroup",
            "primary",
            "--athena-table",
            "cloudtrail.logs",
            "--usage-days",
            "30",
            "--end-time",
            END,
            "--guardrails",
            "none",
            "--scope-resources",
            "--risk-threshold",
            "100",
            "--output",
            output.to_str().unwrap(),
        ],
        &aws_env(server, key),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = read_json(&output);
    assert_eq!(r["coverage"]["sources"][0]["origin"], "athena");
    assert_eq!(r["proposal"]["evidence"]["s3:GetObject"]["count"], 1200);
    assert_eq!(
        r["proposal"]["evidence"]["s3:GetObject"]["resources"],
        json!(["arn:aws:s3:::data/*"])
    );
    assert_eq!(
        r["proposal"]["evidence"]["s3:ListBucket"]["basis"],
        "inferred"
    );
    let kept: BTreeSet<String> = serde_json::from_value(r["diff"]["kept"].clone()).unwrap();
    assert_eq!(
        kept,
        BTreeSet::from([
            "dynamodb:Query".to_string(),
            "s3:GetObject".into(),
            "s3:ListBucket".into()
        ])
    );
}

#[test]
fn bedrock_opinion_is_shown_separately_and_failures_fall_back() {
    let server = MotoServer::shared();
    let ok = Stub::start(Arc::new(|req: &Recorded| {
        assert!(req.path.ends_with("/converse"), "{}", req.path);
        let answer = json!({"riskOpinion": "low", "breakProbability": 0.03,
            "suggestedPermissions": [{"action": "s3:GetObjectVersion", "reason": "versioned bucket"}], "notes": ["fine"]});
        (200, json!({"output": {"message": {"role": "assistant", "content": [{"text": answer.to_string()}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30},
            "metrics": {"latencyMs": 5}}).to_string())
    }));
    let failing = Stub::start(Arc::new(|_: &Recorded| {
        (
            403,
            json!({"message": "You don't have access to the model with the specified model ID."})
                .to_string(),
        )
    }));
    let logs = examples().join("logs");
    let admin = examples().join("AdministratorAccess.json");
    for (stub, status) in [(&ok, "ok"), (&failing, "unavailable")] {
        let dir = tempdir("bedrock");
        let output = dir.join("proposal.json");
        let mut env = aws_env(server, "testing");
        env.push(("AGR_BEDROCK_ENDPOINT_URL", stub.url.as_str()));
        let o = run(
            &[
                "analyze",
                "--role-arn",
                ROLE,
                "--from-files",
                logs.to_str().unwrap(),
                "--current-policy",
                admin.to_str().unwrap(),
                "--guardrails",
                "none",
                "--bedrock-model",
                "anthropic.claude-test",
                "--output",
                output.to_str().unwrap(),
            ],
            &env,
        );
        assert_eq!(o.status.code(), Some(0), "{status}: {}", stderr(&o));
        let r = read_json(&output);
        let m = &r["proposal"]["modelReasoning"];
        assert_eq!(m["status"], status, "{m}");
        // Never merged: the suggestion is not in the policy.
        assert!(
            !r["proposal"]["policies"]
                .to_string()
                .contains("GetObjectVersion")
        );
        if status == "ok" {
            assert_eq!(m["suggestedPermissions"][0]["knownToSnapshot"], true);
            assert_eq!(m["suggestedPermissions"][0]["applied"], false);
        }
    }
}

#[derive(Default)]
struct Repo {
    branches: BTreeSet<String>,
    files: BTreeMap<String, (String, String)>,
    prs: Vec<Value>,
}

fn github(state: Arc<Mutex<Repo>>, token_ok: bool) -> Stub {
    Stub::start(Arc::new(move |req: &Recorded| {
        if !token_ok {
            return (401, json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}).to_string());
        }
        let mut repo = state.lock().unwrap();
        let p = req.path.as_str();
        match (req.method.as_str(), p) {
            ("GET", "/repos/acme/infra") => (
                200,
                json!({"full_name": "acme/infra", "default_branch": "main"}).to_string(),
            ),
            ("GET", _) if p.starts_with("/repos/acme/infra/git/ref/heads/") => {
                let name = &p["/repos/acme/infra/git/ref/heads/".len()..];
                if name == "main" || repo.branches.contains(name) {
                    (200, json!({"ref": format!("refs/heads/{name}"), "object": {"sha": "abc123", "type": "commit"}}).to_string())
                } else {
                    (404, json!({"message": "Not Found"}).to_string())
                }
            }
            ("POST", "/repos/acme/infra/git/refs") => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                let name = body["ref"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("refs/heads/")
                    .to_string();
                repo.branches.insert(name);
                (
                    201,
                    json!({"ref": body["ref"], "object": {"sha": body["sha"]}}).to_string(),
                )
            }
            ("GET", _) if p.starts_with("/repos/acme/infra/contents/") => {
                let path = &p["/repos/acme/infra/contents/".len()..];
                match repo.files.get(path) {
                    Some((sha, content)) => (200, json!({"type": "file", "path": path, "sha": sha, "content": content, "encoding": "base64"}).to_string()),
                    None => (404, json!({"message": "Not Found"}).to_string()),
                }
            }
            ("PUT", _) if p.starts_with("/repos/acme/infra/contents/") => {
                let path = p["/repos/acme/infra/contents/".len()..].to_string();
                let body: Value = serde_json::from_str(&req.body).unwrap();
                if let Some((sha, _)) = repo.files.get(&path)
                    && body["sha"].as_str() != Some(sha)
                {
                    return (409, json!({"message": "sha mismatch"}).to_string());
                }
                let sha = format!("sha-{}", repo.files.len() + 1);
                repo.files.insert(
                    path.clone(),
                    (sha.clone(), body["content"].as_str().unwrap().to_string()),
                );
                (
                    201,
                    json!({"content": {"path": path, "sha": sha}, "commit": {"sha": "c1"}})
                        .to_string(),
                )
            }
            ("GET", "/repos/acme/infra/pulls") => (200, Value::Array(repo.prs.clone()).to_string()),
            ("POST", "/repos/acme/infra/pulls") => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                let pr = json!({"number": 7, "html_url": "https://github.example/acme/infra/pull/7", "title": body["title"], "draft": body["draft"]});
                repo.prs.push(pr.clone());
                (201, pr.to_string())
            }
            ("PATCH", "/repos/acme/infra/pulls/7") => (200, repo.prs[0].to_string()),
            _ => (404, json!({"message": "Not Found"}).to_string()),
        }
    }))
}

#[test]
fn propose_opens_a_pull_request_idempotently_and_explains_errors() {
    let dir = tempdir("propose");
    let output = dir.join("proposal.json");
    let tf = dir.join("main.tf");
    let logs = examples().join("logs");
    let admin = examples().join("AdministratorAccess.json");
    let o = run(
        &[
            "analyze",
            "--role-arn",
            ROLE,
            "--from-files",
            logs.to_str().unwrap(),
            "--current-policy",
            admin.to_str().unwrap(),
            "--guardrails",
            "none",
            "--output",
            output.to_str().unwrap(),
            "--output-terraform",
            tf.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let state = Arc::new(Mutex::new(Repo::default()));
    let stub = github(state.clone(), true);
    let args = [
        "propose",
        "--repo",
        "acme/infra",
        "--branch",
        "agr/harden-ci",
        "--input",
        output.to_str().unwrap(),
        "--draft",
        "--patch",
        tf.to_str().unwrap(),
    ];
    let env = [
        ("GITHUB_TOKEN", "ghp_test"),
        ("AGR_GITHUB_API_URL", stub.url.as_str()),
    ];
    let first = run(&args, &env);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("opened pull request #7"),
        "{}",
        stdout(&first)
    );
    {
        let repo = state.lock().unwrap();
        assert!(repo.branches.contains("agr/harden-ci"));
        let files: Vec<&String> = repo.files.keys().collect();
        assert_eq!(
            files,
            vec![
                "iam/ci-deployer/agr-least-privilege-ci-deployer.json",
                "iam/ci-deployer/main.tf",
                "iam/ci-deployer/proposal.json"
            ]
        );
        assert_eq!(repo.prs[0]["draft"], true);
    }
    let pr_body: Value = serde_json::from_str(
        &stub
            .requests()
            .iter()
            .find(|r| r.method == "POST" && r.path.ends_with("/pulls"))
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(pr_body["body"].as_str().unwrap().contains("### Diff"));
    assert_eq!(pr_body["head"], "agr/harden-ci");
    assert_eq!(pr_body["base"], "main");
    let before = stub.requests().len();
    let second = run(&args, &env);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("updated pull request #7")
            && stdout(&second).contains("0 files committed"),
        "{}",
        stdout(&second)
    );
    let again: Vec<Recorded> = stub.requests()[before..].to_vec();
    assert!(
        again
            .iter()
            .all(|r| !(r.method == "PUT" || (r.method == "POST" && r.path.ends_with("/pulls")))),
        "re-run wrote again"
    );
    assert_eq!(state.lock().unwrap().prs.len(), 1);

    let unauthorized = github(Arc::new(Mutex::new(Repo::default())), false);
    let o = run(
        &args,
        &[
            ("GITHUB_TOKEN", "bad"),
            ("AGR_GITHUB_API_URL", unauthorized.url.as_str()),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401 Unauthorized"), "{}", stderr(&o));
    let o = run(
        &[
            "propose",
            "--repo",
            "acme/missing",
            "--branch",
            "b",
            "--input",
            output.to_str().unwrap(),
        ],
        &[
            ("GITHUB_TOKEN", "ghp_test"),
            ("AGR_GITHUB_API_URL", stub.url.as_str()),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("404 Not Found"), "{}", stderr(&o));
}
