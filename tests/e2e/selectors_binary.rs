//! Scope selectors through the real binary (config file, env, kubectl, the emulator, moto's IAM):
//! a policy selecting roles by path prefix and tag resolves (condition, status, `kubectl get grp`
//! column); a signal freezes the resolved roles into the Quarantine with their reasons, and a
//! role created afterwards does not join it; over `maxTargets` the policy refuses (condition,
//! Event, intake reason, no Quarantine, no IAM write); a resolution that fails (an account the
//! controller cannot reach) quarantines no one and says so.
//!
//! An OU selector in the binary: moto's Organizations (an OU, an OU below it, an account
//! outside), each member account read and written through its own role (`aws.accounts`), the
//! deny landing in the member accounts only. And `ListRoles` failing with AWS's own error body
//! (a fault proxy in front of moto): `SelectorsResolved=False ResolutionFailed`, a Warning Event,
//! no Quarantine for a new signal, and the existing Quarantine keeps its deny through several
//! drift checks with no IAM write at all.

use crate::support::binary::{
    attached, cluster_with_events_key, free_port, iam_client, metric_value, post_event,
    spawn_controller_with_env, wait_for,
};
use crate::support::moto;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "123456789012";
const API_KEY: &str = "selectors-test-key";

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ml-spike
  namespace: autoguardrails
spec:
  mode: Auto
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    selectors:
      - accounts: ["123456789012"]
        pathPrefix: /teams/ml/
        tags:
          - { key: team, value: ml }
    maxTargets: 3
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
"#;

fn anomaly(id: &str) -> Value {
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["anomalyId"] = id.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    anomaly
}

async fn role(iam: &aws_sdk_iam::Client, path: &str, name: &str, team: &str) {
    iam.create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value(team)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_resolve_freeze_refuse_and_fail_closed_in_the_binary() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    role(&iam, "/teams/ml/", "ml-a", "ml").await;
    role(&iam, "/teams/ml/", "ml-b", "ml").await;
    role(&iam, "/teams/ml/", "ml-untagged", "web").await;
    role(&iam, "/teams/web/", "web-a", "ml").await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let dir = std::env::temp_dir().join(format!("agr-selectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = crate::support::binary::ControllerConfig::sdk(NS, &moto.url)
        .setting("selectorPeriod", "1s")
        .events_key();
    let config = setup.write(&dir);
    let (metrics_port, signals_port) = (setup.metrics_port, setup.signals_port);
    let controller = spawn_controller_with_env(&kubeconfig, &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    let condition = || {
        kubectl
            .run(&[
                "get",
                "guardrailpolicy/ml-spike",
                "-n",
                NS,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="SelectorsResolved")].status} {.status.conditions[?(@.type=="SelectorsResolved")].reason} {.status.resolvedTargets.count}"#,
            ])
            .trim()
            .to_string()
    };
    let wait_condition = |expected: &'static str| {
        let condition = &condition;
        let controller = &controller;
        async move {
            let mut seen = String::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                seen = condition();
                if seen == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!(
                "SelectorsResolved: wanted {expected:?}, saw {seen:?}\n{}",
                controller.log()
            );
        }
    };
    wait_condition("True Resolved 2").await;
    let table = kubectl.run(&["get", "grp", "-n", NS]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|c| c == "TARGETS")
        .unwrap_or_else(|| panic!("no TARGETS column: {table}"));
    assert_eq!(row.split_whitespace().nth(column), Some("2"), "{table}");
    let sample = kubectl.run(&[
        "get",
        "guardrailpolicy/ml-spike",
        "-n",
        NS,
        "-o",
        "jsonpath={.status.resolvedTargets.sample[*]}",
    ]);
    assert_eq!(
        sample.trim(),
        "arn:aws:iam::123456789012:role/teams/ml/ml-a arn:aws:iam::123456789012:role/teams/ml/ml-b"
    );

    // Steady state: the resolver keeps resolving (every second here); the status keeps its
    // result and `resolvedAt`, only `validUntil` moves on (every second period, decision 252).
    let steady = || {
        kubectl.run(&[
            "get",
            "guardrailpolicy/ml-spike",
            "-n",
            NS,
            "-o",
            "jsonpath={.status.resolvedTargets.count} {.status.resolvedTargets.resolvedAt} {.status.resolvedTargets.targets[*].arn} {.status.conditions[?(@.type==\"SelectorsResolved\")].lastTransitionTime}",
        ])
    };
    let valid_until = || {
        kubectl.run(&[
            "get",
            "guardrailpolicy/ml-spike",
            "-n",
            NS,
            "-o",
            "jsonpath={.status.resolvedTargets.validUntil}",
        ])
    };
    let before = steady();
    let first_valid_until = valid_until();
    wait_for("validUntil refreshed", Duration::from_secs(30), || {
        let moved = valid_until() != first_valid_until;
        async move { moved }
    })
    .await;
    assert_eq!(
        steady(),
        before,
        "an unchanged resolution keeps its result and resolvedAt"
    );

    // A signal freezes the resolved set into the Quarantine, with why each role is in it.
    let events = format!("http://127.0.0.1:{signals_port}/events");
    let last_signal = || {
        kubectl
            .run(&[
                "get",
                "guardrailpolicy/ml-spike",
                "-n",
                NS,
                "-o",
                "jsonpath={.status.lastSignal.id} {.status.lastSignal.reason}",
            ])
            .trim()
            .to_string()
    };
    let send = |id: &'static str| {
        let http = &http;
        let events = &events;
        let last_signal = &last_signal;
        async move {
            let answer = post_event(http, events, API_KEY, &anomaly(id)).await;
            assert_eq!(
                (answer.0, answer.1.as_str()),
                (200, "accepted"),
                "{answer:?}"
            );
            let mut seen = String::new();
            wait_for(&format!("lastSignal {id}"), Duration::from_secs(30), || {
                seen = last_signal();
                let done = seen.starts_with(id);
                async move { done }
            })
            .await;
            seen
        }
    };
    assert_eq!(send("sel-1").await, "sel-1 Matched");
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    let spec =
        |path: &str| kubectl.run(&["get", &name, "-n", NS, "-o", &format!("jsonpath={path}")]);
    assert_eq!(
        spec("{.spec.targets[*].arn}").trim(),
        "arn:aws:iam::123456789012:role/teams/ml/ml-a arn:aws:iam::123456789012:role/teams/ml/ml-b"
    );
    let reasons = spec("{.spec.targetReasons[*].matchedBy}");
    assert_eq!(
        reasons
            .matches("selectors[0]: account 123456789012, path /teams/ml/, tag team=ml")
            .count(),
        2,
        "{reasons}"
    );
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    assert_eq!(attached(&iam, "ml-a").await.len(), 1);
    assert_eq!(attached(&iam, "ml-b").await.len(), 1);
    assert!(attached(&iam, "web-a").await.is_empty());
    assert!(attached(&iam, "ml-untagged").await.is_empty());

    // A role created afterwards is resolved, but does not join the Quarantine.
    role(&iam, "/teams/ml/", "ml-c", "ml").await;
    wait_condition("True Resolved 3").await;
    assert_eq!(
        spec("{.spec.targets[*].arn}").trim(),
        "arn:aws:iam::123456789012:role/teams/ml/ml-a arn:aws:iam::123456789012:role/teams/ml/ml-b"
    );
    assert!(attached(&iam, "ml-c").await.is_empty());

    // Over maxTargets: refused, said so, nothing created or written.
    kubectl.run(&[
        "patch",
        "guardrailpolicy/ml-spike",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"scope":{"maxTargets":2}}}"#,
    ]);
    wait_condition("False TooManyTargets 3").await;
    assert_eq!(send("sel-2").await, "sel-2 TooManyTargets");
    let listed: Value =
        serde_json::from_str(&kubectl.run(&["get", "events", "-n", NS, "-o", "json"])).unwrap();
    let warnings: Vec<&str> = listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["reason"] == "TooManyTargets" && e["type"] == "Warning")
                .filter_map(|e| e["message"].as_str().or(e["note"].as_str()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|m| m.contains("more than scope.maxTargets 2")),
        "{listed}"
    );
    let quarantines = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    assert_eq!(quarantines.trim(), name, "no second quarantine");
    assert!(attached(&iam, "ml-c").await.is_empty(), "no IAM write");

    // A resolution that fails (an account with no way in) quarantines no one and says why.
    kubectl.run(&[
        "patch",
        "guardrailpolicy/ml-spike",
        "-n",
        NS,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/scope/maxTargets","value":10},{"op":"add","path":"/spec/scope/selectors/0/accounts/-","value":"210987654321"}]"#,
    ]);
    wait_condition("False ResolutionFailed 3").await;
    let message = kubectl.run(&[
        "get",
        "guardrailpolicy/ml-spike",
        "-n",
        NS,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="SelectorsResolved")].message}"#,
    ]);
    assert!(message.contains("210987654321"), "{message}");
    assert_eq!(send("sel-3").await, "sel-3 SelectorsUnresolved");
    let quarantines = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    assert_eq!(
        quarantines.trim(),
        name,
        "no quarantine from a failed resolution"
    );
    assert!(attached(&iam, "ml-c").await.is_empty());
    assert!(
        controller.log().contains("resolving selectors failed"),
        "{}",
        controller.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary's config for the selector tests: `endpoint` as the AWS endpoint (moto, or the
/// fault proxy in front of it) and `accounts` as the `aws.accounts` block (may be empty).
fn selector_config(metrics_port: u16, signals_port: u16, endpoint: &str, accounts: &str) -> String {
    let mut setup = crate::support::binary::ControllerConfig::sdk(NS, endpoint)
        .setting("selectorPeriod", "1s")
        .setting("driftPeriod", "2s")
        .aws_lines(accounts)
        .events_key();
    setup.metrics_port = metrics_port;
    setup.signals_port = signals_port;
    setup.yaml()
}

/// `SelectorsResolved` status, reason and resolved count of `policy`, as one line.
fn selectors_condition(kubectl: &crate::support::binary::Kubectl, policy: &str) -> String {
    kubectl
        .run(&[
            "get",
            &format!("guardrailpolicy/{policy}"),
            "-n",
            NS,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="SelectorsResolved")].status} {.status.conditions[?(@.type=="SelectorsResolved")].reason} {.status.resolvedTargets.count}"#,
        ])
        .trim()
        .to_string()
}

async fn wait_selectors_condition(
    kubectl: &crate::support::binary::Kubectl,
    policy: &str,
    expected: &str,
    controller: &crate::support::binary::ControllerProcess,
) {
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while std::time::Instant::now() < deadline {
        seen = selectors_condition(kubectl, policy);
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "SelectorsResolved of {policy}: wanted {expected:?}, saw {seen:?}\n{}",
        controller.log()
    );
}

/// Sends an anomaly for `account` to `/events` and waits for the policy's `lastSignal` to name
/// it; returns `"<id> <reason>"`.
async fn signal_and_wait(
    http: &reqwest::Client,
    events: &str,
    kubectl: &crate::support::binary::Kubectl,
    policy: &str,
    id: &str,
    account: &str,
) -> String {
    let mut body = anomaly(id);
    body["account"] = account.into();
    body["detail"]["rootCauses"][0]["linkedAccount"] = account.into();
    let answer = post_event(http, events, API_KEY, &body).await;
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (200, "accepted"),
        "{answer:?}"
    );
    let mut seen = String::new();
    wait_for(&format!("lastSignal {id}"), Duration::from_secs(30), || {
        seen = kubectl
            .run(&[
                "get",
                &format!("guardrailpolicy/{policy}"),
                "-n",
                NS,
                "-o",
                "jsonpath={.status.lastSignal.id} {.status.lastSignal.reason}",
            ])
            .trim()
            .to_string();
        let done = seen.starts_with(id);
        async move { done }
    })
    .await;
    seen
}

/// An IAM client acting inside `account` of moto's organization (moto keeps each account's IAM
/// apart and maps assumed-role credentials to the role's account).
async fn iam_in_account(moto: &moto::MotoServer, account: &str) -> aws_sdk_iam::Client {
    let base = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    let assumed = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("e2e-setup")
        .send()
        .await
        .unwrap();
    let credentials = assumed.credentials().unwrap();
    let provider = aws_sdk_iam::config::Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_string()),
        None,
        "e2e",
    );
    let config = base
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build();
    aws_sdk_iam::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizational_unit_selector_reaches_the_accounts_under_it_in_the_binary() {
    // Its own moto: an organization is global state.
    let moto = moto::MotoServer::start();
    let base = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    let orgs = aws_sdk_organizations::Client::new(&base);
    orgs.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let roots = orgs.list_roots().send().await.unwrap();
    let root = roots.roots()[0].id().unwrap().to_string();
    let unit = |parent: String, name: &'static str| {
        let orgs = orgs.clone();
        async move {
            orgs.create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .unwrap()
                .organizational_unit()
                .unwrap()
                .id()
                .unwrap()
                .to_string()
        }
    };
    let ml = unit(root.clone(), "ml").await;
    let ml_dev = unit(ml.clone(), "ml-dev").await;
    let account = |name: &'static str, parent: Option<String>| {
        let orgs = orgs.clone();
        let root = root.clone();
        async move {
            let created = orgs
                .create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .unwrap();
            let id = created
                .create_account_status()
                .unwrap()
                .account_id()
                .unwrap()
                .to_string();
            if let Some(parent) = parent {
                orgs.move_account()
                    .account_id(&id)
                    .source_parent_id(root)
                    .destination_parent_id(parent)
                    .send()
                    .await
                    .unwrap();
            }
            id
        }
    };
    let prod = account("ml-prod", Some(ml.clone())).await;
    let dev = account("ml-dev-1", Some(ml_dev.clone())).await;
    let outside = account("web-1", None).await;
    for id in [&prod, &dev, &outside] {
        let iam = iam_in_account(&moto, id).await;
        create_in(&iam, "ci-runner").await;
        create_in(&iam, "app-server").await;
    }

    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let metrics_port = free_port();
    let signals_port = free_port();
    let dir = std::env::temp_dir().join(format!("agr-selectors-ou-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Every member account through its own role, as an operator configures it; Organizations
    // through the ambient identity (the management account).
    let mut accounts = String::from("  accounts:\n");
    for id in [&prod, &dev, &outside] {
        accounts.push_str(&format!(
            "    \"{id}\": {{ roleArn: \"arn:aws:iam::{id}:role/OrganizationAccountAccessRole\" }}\n"
        ));
    }
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        selector_config(metrics_port, signals_port, &moto.url, &accounts),
    )
    .unwrap();
    let controller =
        spawn_controller_with_env(emulator.kubeconfig_path(), &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    let policy = format!(
        r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ml-ou
  namespace: {NS}
spec:
  mode: Auto
  match:
    sources: [CostAnomaly]
    accountIds: ["{prod}"]
    minImpactUsd: 100
  scope:
    selectors:
      - organizationalUnit: {ml}
        namePattern: "ci-*"
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
"#
    );
    kubectl.run_with_input(&["apply", "-f", "-"], Some(&policy));
    // The OU and the OU below it: two accounts; the account outside the OU is not listed.
    wait_selectors_condition(&kubectl, "ml-ou", "True Resolved 2", &controller).await;
    let sample = kubectl.run(&[
        "get",
        "guardrailpolicy/ml-ou",
        "-n",
        NS,
        "-o",
        "jsonpath={.status.resolvedTargets.sample[*]}",
    ]);
    let mut expected = [
        format!("arn:aws:iam::{prod}:role/ci-runner"),
        format!("arn:aws:iam::{dev}:role/ci-runner"),
    ];
    expected.sort();
    assert_eq!(sample.trim(), expected.join(" "));

    let events = format!("http://127.0.0.1:{signals_port}/events");
    assert_eq!(
        signal_and_wait(&http, &events, &kubectl, "ml-ou", "ou-1", &prod).await,
        "ou-1 Matched"
    );
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    let spec =
        |path: &str| kubectl.run(&["get", &name, "-n", NS, "-o", &format!("jsonpath={path}")]);
    assert_eq!(spec("{.spec.targets[*].arn}").trim(), expected.join(" "));
    let reasons = spec("{.spec.targetReasons[*].matchedBy}");
    assert_eq!(
        reasons.matches(&format!("(in {ml})")).count(),
        2,
        "{reasons}"
    );
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    // The deny is in each member account, written through that account's role; the account
    // outside the OU and the roles the name pattern leaves out are untouched.
    for (id, role, count) in [
        (&prod, "ci-runner", 1),
        (&dev, "ci-runner", 1),
        (&prod, "app-server", 0),
        (&outside, "ci-runner", 0),
    ] {
        let iam = iam_in_account(&moto, id).await;
        assert_eq!(
            attached(&iam, role).await.len(),
            count,
            "{id} {role}\n{}",
            controller.log()
        );
    }
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn create_in(iam: &aws_sdk_iam::Client, name: &str) {
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_list_roles_call_resolves_no_one_and_removes_nothing_in_the_binary() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    role(&iam, "/teams/ml/", "ml-a", "ml").await;
    role(&iam, "/teams/ml/", "ml-b", "ml").await;
    let proxy = crate::support::fault_proxy::FaultProxy::start(&moto.url).await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let metrics_port = free_port();
    let signals_port = free_port();
    let dir = std::env::temp_dir().join(format!("agr-selectors-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        selector_config(metrics_port, signals_port, &proxy.url, ""),
    )
    .unwrap();
    let controller =
        spawn_controller_with_env(emulator.kubeconfig_path(), &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    wait_selectors_condition(&kubectl, "ml-spike", "True Resolved 2", &controller).await;
    let events = format!("http://127.0.0.1:{signals_port}/events");
    assert_eq!(
        signal_and_wait(&http, &events, &kubectl, "ml-spike", "fault-1", ACCOUNT).await,
        "fault-1 Matched"
    );
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    assert_eq!(attached(&iam, "ml-a").await.len(), 1);
    assert_eq!(attached(&iam, "ml-b").await.len(), 1);

    // IAM starts refusing ListRoles (AWS's XML error body, 403 AccessDenied).
    proxy.fail(
        "ListRoles",
        crate::support::fault_proxy::Fault::access_denied("ListRoles"),
    );
    wait_selectors_condition(
        &kubectl,
        "ml-spike",
        "False ResolutionFailed 2",
        &controller,
    )
    .await;
    let message = kubectl.run(&[
        "get",
        "guardrailpolicy/ml-spike",
        "-n",
        NS,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="SelectorsResolved")].message}"#,
    ]);
    assert!(
        message.contains("AccessDenied") && message.contains(ACCOUNT),
        "{message}"
    );
    assert!(proxy.failed().iter().all(|a| a == "ListRoles"));
    let listed: Value =
        serde_json::from_str(&kubectl.run(&["get", "events", "-n", NS, "-o", "json"])).unwrap();
    assert!(
        listed["items"].as_array().is_some_and(|items| items
            .iter()
            .any(|e| e["reason"] == "ResolutionFailed" && e["type"] == "Warning")),
        "{listed}"
    );
    // A new signal: no one is in scope as far as anyone knows, so no Quarantine and no write.
    let writes_before = proxy.seen().len();
    assert_eq!(
        signal_and_wait(&http, &events, &kubectl, "ml-spike", "fault-2", ACCOUNT).await,
        "fault-2 SelectorsUnresolved"
    );
    let quarantines = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    assert_eq!(
        quarantines.trim(),
        name,
        "no quarantine from a failed resolution"
    );
    // The existing Quarantine keeps its deny through several drift checks while the listing
    // fails: a failed resolution never removes anyone (the frozen record stands).
    let reads_before = proxy.count("ListAttachedRolePolicies");
    wait_for("three more drift checks", Duration::from_secs(40), || {
        let reads = proxy.count("ListAttachedRolePolicies");
        async move { reads >= reads_before + 6 }
    })
    .await;
    assert_eq!(attached(&iam, "ml-a").await.len(), 1);
    assert_eq!(attached(&iam, "ml-b").await.len(), 1);
    let after: BTreeSet<String> = proxy.seen()[writes_before..].iter().cloned().collect();
    for write in [
        "AttachRolePolicy",
        "DetachRolePolicy",
        "CreatePolicy",
        "DeletePolicy",
        "CreatePolicyVersion",
    ] {
        assert!(
            !after.contains(write),
            "{write} while resolution failed: {after:?}"
        );
    }
    assert_eq!(
        kubectl
            .run(&["get", &name, "-n", NS, "-o", "jsonpath={.status.phase}"])
            .trim(),
        "Active"
    );

    // IAM answers again: resolved again, and nothing else changed.
    proxy.clear();
    wait_selectors_condition(&kubectl, "ml-spike", "True Resolved 2", &controller).await;
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_lists_iam_and_a_standby_freezes_the_leaders_resolution() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    role(&iam, "/teams/ml/", "ml-a", "ml").await;
    role(&iam, "/teams/ml/", "ml-b", "ml").await;
    role(&iam, "/teams/web/", "web-a", "ml").await;
    // Each replica reaches IAM through its own proxy: what each one calls is seen apart.
    let proxy_a = crate::support::fault_proxy::FaultProxy::start(&moto.url).await;
    let proxy_b = crate::support::fault_proxy::FaultProxy::start(&moto.url).await;
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let dir = std::env::temp_dir().join(format!("agr-selectors-standby-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let replica = |name: &str, proxy: &crate::support::fault_proxy::FaultProxy| {
        let run = dir.join(name);
        std::fs::create_dir_all(&run).unwrap();
        let (metrics_port, signals_port) = (free_port(), free_port());
        let config = run.join("config.yaml");
        std::fs::write(
            &config,
            selector_config(metrics_port, signals_port, &proxy.url, ""),
        )
        .unwrap();
        let pod = format!("autoguardrails-{name}");
        let controller = spawn_controller_with_env(
            emulator.kubeconfig_path(),
            &config,
            NS,
            &run,
            &[],
            &[("POD_NAME", std::ffi::OsStr::new(&pod))],
        );
        (
            controller,
            format!("http://127.0.0.1:{metrics_port}"),
            format!("http://127.0.0.1:{signals_port}/events"),
        )
    };
    let http = crate::support::binary::http_client();
    let (leader, leader_ops, _) = replica("a", &proxy_a);
    wait_for("replica a leads", Duration::from_secs(60), || async {
        let ready = matches!(http.get(format!("{leader_ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &leader_ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    let (standby, standby_ops, standby_events) = replica("b", &proxy_b);
    wait_for("replica b ready", Duration::from_secs(60), || async {
        matches!(http.get(format!("{standby_ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert_eq!(
        metric_value(&http, &standby_ops, "autoguardrails_leader ").await,
        0.0
    );

    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    wait_selectors_condition(&kubectl, "ml-spike", "True Resolved 2", &leader).await;
    // The status carries the whole resolution for the standby.
    let carried = kubectl.run(&[
        "get",
        "guardrailpolicy/ml-spike",
        "-n",
        NS,
        "-o",
        "jsonpath={.status.resolvedTargets.targets[*].arn} {.status.resolvedTargets.selectorsHash}",
    ]);
    assert!(
        carried.starts_with(
            "arn:aws:iam::123456789012:role/teams/ml/ml-a arn:aws:iam::123456789012:role/teams/ml/ml-b "
        ),
        "{carried}"
    );

    // A signal at the standby: its intake freezes the leader's resolution into the Quarantine.
    assert_eq!(
        signal_and_wait(
            &http,
            &standby_events,
            &kubectl,
            "ml-spike",
            "standby-1",
            ACCOUNT
        )
        .await,
        "standby-1 Matched",
        "{}",
        standby.log()
    );
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    let spec =
        |path: &str| kubectl.run(&["get", &name, "-n", NS, "-o", &format!("jsonpath={path}")]);
    assert_eq!(
        spec("{.spec.targets[*].arn}").trim(),
        "arn:aws:iam::123456789012:role/teams/ml/ml-a arn:aws:iam::123456789012:role/teams/ml/ml-b"
    );
    assert_eq!(
        spec("{.spec.targetReasons[*].matchedBy}")
            .matches("selectors[0]: account 123456789012, path /teams/ml/, tag team=ml")
            .count(),
        2
    );
    // The leader keeps listing; the standby never listed anything.
    let listed = proxy_a.count("ListRoles");
    wait_for(
        "the leader's next resolutions",
        Duration::from_secs(30),
        || {
            let now = proxy_a.count("ListRoles");
            async move { now >= listed + 2 }
        },
    )
    .await;
    for call in ["ListRoles", "ListRoleTags", "ListUsers"] {
        assert_eq!(proxy_b.count(call), 0, "{call}: {:?}", proxy_b.seen());
    }

    // The leader goes away: the standby takes over and lists IAM itself.
    drop(leader);
    wait_for("replica b leads", Duration::from_secs(60), || async {
        metric_value(&http, &standby_ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    wait_for("replica b lists IAM", Duration::from_secs(30), || {
        let n = proxy_b.count("ListRoles");
        async move { n > 0 }
    })
    .await;
    wait_selectors_condition(&kubectl, "ml-spike", "True Resolved 2", &standby).await;
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
}
