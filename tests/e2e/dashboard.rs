//! The dashboard as a person reaches it: the real `autoguardrails controller` binary (SDK backend
//! against moto) on the Kubernetes API emulator with `dashboard.enabled`, and the real
//! `autoguardrails gate serve` with its dashboard, over plain HTTP (every page's JSON and HTML,
//! access refused without the token, hostile text escaped, no secret in any answer, the live
//! stream) and in headless Chromium (tests/e2e/dashboard_browser.py: live update without reload,
//! countdowns, approver, console errors, axe-core, screenshots under target/dashboard-screenshots).

use crate::support::binary::{
    ControllerProcess, Kubectl, cluster_with_events_key, create_roles, free_port, iam_client, root,
    wait_for,
};
use crate::support::moto;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const MOTO_ACCOUNT: &str = "123456789012";
const API_KEY: &str = "dashboard-events-key-0001";
const TOKEN: &str = "dashboard-token-abcdef0123456789";
const WEBHOOK: &str = "https://hooks.slack.example/services/T000/B000/very-secret-webhook";
const FORM: &str = "application/x-www-form-urlencoded";
const HOSTILE: &str = "<script>alert('agr')</script>";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-manual
  namespace: autoguardrails
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/dev-ci" }
  deny:
    actions: ["ec2:RunInstances", "ec2:CreateNatGateway"]
  quarantine:
    ttl: 2h
    approvalTimeout: 1h
    cooldown: 30m
  notify:
    slack:
      webhookSecretRef: { name: slack-webhook, key: url }
"#;

/// Everything running for one test.
struct Env {
    _moto: moto::MotoServer,
    _emulator: kube_emulator::Emulator,
    kubectl: Kubectl,
    controller: ControllerProcess,
    gate: ControllerProcess,
    dashboard: String,
    gate_url: String,
    events: String,
    dir: PathBuf,
}

fn event_body() -> String {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(MOTO_ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(MOTO_ACCOUNT.into());
    event["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    event.to_string()
}

async fn start(name: &str) -> Env {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci", "etl"]).await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();
    kubectl.run(&[
        "create",
        "secret",
        "generic",
        "slack-webhook",
        "-n",
        NS,
        &format!("--from-literal=url={WEBHOOK}"),
    ]);

    let dir = std::env::temp_dir().join(format!("agr-dashboard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let proposal = root().join("tests/fixtures/dashboard/proposal.json");
    let (metrics_port, signals_port, dashboard_port, gate_port) =
        (free_port(), free_port(), free_port(), free_port());
    let gate_url = format!("http://127.0.0.1:{gate_port}");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
driftPeriod: 1s
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: sdk
  endpointUrl: {moto}
  maxAttempts: 1
  requestsPerSecond: 0
leaderElection:
  enabled: false
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
dashboard:
  enabled: true
  addr: 127.0.0.1:{dashboard_port}
  tokenFile: {token}
  proposalFile: {proposal}
  gateUrl: {gate_url}/dashboard/gate
"#,
            moto = moto.url,
            token = token_file.display(),
            proposal = proposal.display(),
        ),
    )
    .unwrap();
    let log = dir.join("controller.log");
    let child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "controller",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("POD_NAME", "autoguardrails-0")
        .env("POD_NAMESPACE", NS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let controller = ControllerProcess {
        child: Some(child),
        log,
    };

    // The gate on the bundled seed data, one audited run, then `gate serve` with its dashboard.
    let audit = dir.join("audit");
    let gate_config = root().join("examples/gate/gate.yaml");
    let status = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "gate",
            "--config",
            gate_config.to_str().unwrap(),
            "--at",
            "2026-02-21T00:00:00Z",
            "--audit-dir",
        ])
        .arg(&audit)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.code().is_some_and(|c| c <= 2), "gate run: {status}");
    let gate_log = dir.join("gate.log");
    let child = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "gate",
            "--config",
            gate_config.to_str().unwrap(),
            "--audit-dir",
        ])
        .arg(&audit)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{gate_port}"),
            "--dashboard-token-file",
        ])
        .arg(&token_file)
        .args(["--dashboard-allow-run", "--dashboard-proposal"])
        .arg(&proposal)
        .args([
            "--dashboard-controller-url",
            &format!("http://127.0.0.1:{dashboard_port}/dashboard"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&gate_log).unwrap())
        .spawn()
        .unwrap();
    let gate = ControllerProcess {
        child: Some(child),
        log: gate_log,
    };

    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    wait_for("gate serve", Duration::from_secs(60), || async {
        matches!(http.get(format!("{gate_url}/healthz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-manual",
        "--timeout=60s",
    ]);
    Env {
        _moto: moto,
        _emulator: emulator,
        kubectl,
        controller,
        gate,
        dashboard: format!("http://127.0.0.1:{dashboard_port}"),
        gate_url,
        events: format!("http://127.0.0.1:{signals_port}/events"),
        dir,
    }
}

fn assert_no_secret(what: &str, body: &str) {
    for secret in [TOKEN, API_KEY, WEBHOOK, "very-secret-webhook"] {
        assert!(
            !body.contains(secret),
            "{what} shows a secret ({secret}):\n{body}"
        );
    }
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    html: bool,
) -> (u16, String, reqwest::header::HeaderMap) {
    let r = http
        .get(url)
        .bearer_auth(TOKEN)
        .header(
            "accept",
            if html {
                "text/html"
            } else {
                "application/json"
            },
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_its_json_need_the_token_escape_hostile_text_and_show_no_secret() {
    let env = start("http").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let d = &env.dashboard;

    // A refused delivery and an accepted one; the quarantine waits for approval.
    let refused = http
        .post(&env.events)
        .header("x-api-key", "wrong")
        .body(event_body())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let answer = http
        .post(&env.events)
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(event_body())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", env.controller.log());
    let name = env
        .kubectl
        .run(&["get", "quarantines", "-n", NS, "-o", "name"])
        .trim()
        .to_string();
    let short = name
        .trim_start_matches("quarantine.autoguardrails.io/")
        .to_string();
    env.kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=PendingApproval",
        &name,
        "--timeout=60s",
    ]);

    // The live stream is open before the approval; it says "change" once the approval lands.
    let mut live = http
        .get(format!("{d}/dashboard/live"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    env.kubectl.run(&[
        "annotate",
        "-n",
        NS,
        &name,
        &format!("autoguardrails.io/approve=alice: ticket OPS-7 {HOSTILE}"),
    ]);
    let mut seen = String::new();
    let changed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = live.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: change") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(changed, Ok(true)),
        "no change event on the live stream: {seen}"
    );
    env.kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);

    // Without the token: 401 for JSON and the live stream, a redirect to sign-in for browsers;
    // a wrong token is refused too.
    let pages = [
        "/dashboard/quarantines".to_string(),
        format!("/dashboard/quarantines/{NS}/{short}"),
        "/dashboard/policies".into(),
        "/dashboard/signals".into(),
        "/dashboard/analysis".into(),
    ];
    let apis = [
        "/dashboard/api/quarantines".to_string(),
        format!("/dashboard/api/quarantines/{NS}/{short}"),
        "/dashboard/api/policies".into(),
        "/dashboard/api/signals".into(),
        "/dashboard/api/analysis".into(),
        "/dashboard/live".into(),
    ];
    for path in &apis {
        let r = http.get(format!("{d}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        assert!(r.headers().contains_key("www-authenticate"), "{path}");
        let r = http
            .get(format!("{d}{path}"))
            .bearer_auth("not-the-token-at-all-0000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    for path in &pages {
        let r = http
            .get(format!("{d}{path}"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path} without a token");
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/dashboard/login?next="),
            "{path}"
        );
    }

    // The JSON behind each page.
    let (status, body, _) = get(&http, &format!("{d}/dashboard/api/quarantines"), false).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret("quarantines JSON", &body);
    let list: Value = serde_json::from_str(&body).unwrap();
    let row = &list["data"]["items"][0];
    assert_eq!(row["name"], short.as_str());
    assert_eq!(row["phase"], "Active");
    assert_eq!(row["approvedBy"], "alice (unverified)");
    assert_eq!(row["policy"], "ci-manual");
    assert_eq!(row["targets"][0], "arn:aws:iam::123456789012:role/dev-ci");
    assert!(row["expiresAt"].is_string(), "{row}");
    assert_eq!(list["data"]["phases"]["Active"], 1);
    let filtered: Value = serde_json::from_str(
        &get(
            &http,
            &format!("{d}/dashboard/api/quarantines?phase=Released"),
            false,
        )
        .await
        .1,
    )
    .unwrap();
    assert_eq!(filtered["data"]["matching"], 0, "{filtered}");

    let (status, body, _) = get(
        &http,
        &format!("{d}/dashboard/api/quarantines/{NS}/{short}"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret("quarantine JSON", &body);
    let detail: Value = serde_json::from_str(&body).unwrap();
    let commands = detail["data"]["commands"].to_string();
    assert!(
        commands.contains(&format!("kubectl annotate quarantine {short} -n {NS}")),
        "{commands}"
    );
    assert!(commands.contains("autoguardrails.io/release"), "{commands}");
    assert!(
        detail["data"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["actor"] == "alice (unverified)"),
        "{detail}"
    );
    assert!(
        detail["data"]["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "Events: {detail}"
    );
    let (status, _, _) = get(
        &http,
        &format!("{d}/dashboard/api/quarantines/{NS}/nope"),
        false,
    )
    .await;
    assert_eq!(status, 404);

    let (status, body, _) = get(&http, &format!("{d}/dashboard/api/policies"), false).await;
    assert_eq!(status, 200);
    assert_no_secret("policies JSON", &body);
    assert!(
        !body.contains("slack-webhook"),
        "the Secret's name is not shown either: {body}"
    );
    let policies: Value = serde_json::from_str(&body).unwrap();
    let p = &policies["data"][0];
    assert_eq!(p["name"], "ci-manual");
    assert_eq!(p["mode"], "Manual");
    assert_eq!(p["ready"], "True");
    assert_eq!(p["scope"][0]["resolution"], "Quarantinable");
    assert_eq!(p["slack"], true);

    let (status, body, _) = get(&http, &format!("{d}/dashboard/api/signals"), false).await;
    assert_eq!(status, 200);
    assert_no_secret("signals JSON", &body);
    let signals: Value = serde_json::from_str(&body).unwrap();
    let outcomes: Vec<(bool, u64)> = signals["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["accepted"].as_bool().unwrap(),
                s["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&(true, 200)) && outcomes.contains(&(false, 403)),
        "{signals}"
    );

    let (status, body, _) = get(&http, &format!("{d}/dashboard/api/analysis"), false).await;
    assert_eq!(status, 200);
    let analysis: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        analysis["data"]["principal"],
        "arn:aws:iam::111122223333:role/ci-deployer"
    );
    assert!(
        analysis["data"]["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );

    // The HTML of each page: escaped hostile text, the security headers, no secret.
    let escaped = "&lt;script&gt;alert('agr')&lt;/script&gt;";
    for path in &pages {
        let (status, body, headers) = get(&http, &format!("{d}{path}"), true).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert!(!body.contains(HOSTILE), "{path} renders hostile text raw");
        assert!(!body.contains("<script>"), "{path} has an inline script");
        assert_no_secret(path, &body);
        assert!(
            body.contains("<nav aria-label=\"Dashboard pages\">"),
            "{path}"
        );
    }
    let (_, body, _) = get(
        &http,
        &format!("{d}/dashboard/quarantines/{NS}/{short}"),
        true,
    )
    .await;
    assert!(
        body.contains(escaped),
        "the approval note is shown escaped: {body}"
    );
    assert!(body.contains("alice"));
    assert!(body.contains("data-countdown"));
    let (_, body, _) = get(&http, &format!("{d}/dashboard/quarantines"), true).await;
    assert!(
        body.contains(&format!("data-quarantine=\"{NS}/{short}\"")),
        "{body}"
    );
    assert!(body.contains("<svg"), "phase chart");
    // The inside of <main> only, for the script.
    let fragment = http
        .get(format!("{d}/dashboard/policies"))
        .bearer_auth(TOKEN)
        .header("x-dashboard-fragment", "main")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fragment.starts_with("<h1>Policies</h1>"), "{fragment}");

    // Sign-in: a wrong token is refused; the right one sets an HttpOnly cookie without the token.
    let r = http
        .post(format!("{d}/dashboard/login"))
        .header("content-type", FORM)
        .body("token=wrong-token-wrong-token&next=%2Fdashboard%2Fpolicies")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .post(format!("{d}/dashboard/login"))
        .header("content-type", FORM)
        .body(format!(
            "token={TOKEN}&next=https%3A%2F%2Felsewhere.example%2F"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard/", "no open redirect");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_no_secret("the cookie", &cookie);
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{d}/dashboard/signals"))
        .header("cookie", &pair)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Assets are public and carry no secret.
    let page = r.text().await.unwrap();
    for asset in page
        .split('"')
        .filter(|s| s.starts_with("/dashboard/assets/"))
    {
        let r = http.get(format!("{d}{asset}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert_no_secret(asset, &r.text().await.unwrap());
    }

    // The gate's dashboard.
    let g = &env.gate_url;
    let r = http
        .get(format!("{g}/dashboard/api/gate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, body, _) = get(&http, &format!("{g}/dashboard/api/gate"), false).await;
    assert_eq!(status, 200, "{body}\n{}", env.gate.log());
    let gate: Value = serde_json::from_str(&body).unwrap();
    let audited = gate["data"]["audit"].as_array().unwrap().len();
    assert_eq!(audited, 1, "{gate}");
    assert!(gate["data"]["latest"]["verdict"].is_string(), "{gate}");
    let (status, body, _) = get(&http, &format!("{g}/dashboard/gate"), true).await;
    assert_eq!(status, 200);
    for part in [
        "id=\"decision\"",
        "id=\"budget-meter\"",
        "id=\"cost-chart\"",
        "id=\"trace\"",
        "id=\"explanation\"",
        "id=\"audit\"",
        "id=\"run-gate\"",
    ] {
        assert!(body.contains(part), "gate page lacks {part}: {body}");
    }
    assert_no_secret("gate page", &body);
    // Run the gate: one more audit record; a post from another origin is refused.
    let r = http
        .post(format!("{g}/dashboard/gate/run"))
        .bearer_auth(TOKEN)
        .header("origin", "https://elsewhere.example")
        .header("content-type", FORM)
        .body("service=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{g}/dashboard/gate/run"))
        .bearer_auth(TOKEN)
        .header("content-type", FORM)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let gate: Value = serde_json::from_str(
        &get(&http, &format!("{g}/dashboard/api/gate"), false)
            .await
            .1,
    )
    .unwrap();
    assert_eq!(gate["data"]["audit"].as_array().unwrap().len(), 2, "{gate}");
    assert_eq!(gate["data"]["latest"]["mode"], "dashboard");
    let _ = std::fs::remove_dir_all(&env.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_sees_a_new_quarantine_live_and_finds_no_accessibility_or_console_problem()
 {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "run scripts/test-deps.sh first");
    let env = start("browser").await;
    let shots = root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let body = env.dir.join("event.json");
    std::fs::write(&body, event_body()).unwrap();
    let output = Command::new(&python)
        .arg(root().join("tests/e2e/dashboard_browser.py"))
        .env("DASH_URL", &env.dashboard)
        .env("GATE_URL", &env.gate_url)
        .env("DASH_TOKEN", TOKEN)
        .env("EVENTS_URL", &env.events)
        .env("EVENTS_KEY", API_KEY)
        .env("EVENT_FILE", &body)
        .env("KUBECTL", &env.kubectl.bin)
        .env("KUBECONFIG", &env.kubectl.kubeconfig)
        .env("NAMESPACE", NS)
        .env("SCREENSHOTS", &shots)
        .env("AXE_JS", root().join("tests/fixtures/axe-core/axe.min.js"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}\n--- controller log\n{}",
        env.controller.log()
    );
    for page in [
        "quarantines",
        "quarantine",
        "policies",
        "signals",
        "analysis",
        "gate",
        "quarantines-dark",
        "quarantines-phone",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}: {stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&env.dir);
}
