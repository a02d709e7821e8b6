//! `setPermissionsBoundary` through the real binary (config file, env, kubectl, the emulator,
//! moto's IAM): an anomaly quarantines two roles, one with a boundary of its own and one without;
//! the status records each previous boundary and ours goes on; someone removes ours and
//! CloudTrail's event brings it back; then someone puts their own boundary on one role without
//! any event, and the release puts the other role's previous boundary back exactly, leaves theirs,
//! says so (condition, Warning Event, history) and deletes our boundary policy.

use crate::support::binary::{
    ControllerProcess, cluster_with_events_key, create_roles, iam_client, metric_value, post_event,
    wait_for,
};
use crate::support::moto;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "123456789012";
const API_KEY: &str = "boundary-test-key";
const DETACH: &str = include_str!("../fixtures/iam/detach-role-policy.json");

const POLICY: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-boundary
  namespace: autoguardrails
spec:
  mode: Auto
  actions: [setPermissionsBoundary]
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/dev-ci" }
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/etl" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    cooldown: 30m
"#;

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

async fn boundary_of(iam: &aws_sdk_iam::Client, role: &str) -> Option<String> {
    iam.get_role()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .role()
        .and_then(|r| r.permissions_boundary())
        .and_then(|b| b.permissions_boundary_arn())
        .map(str::to_string)
}

async fn policy_exists(iam: &aws_sdk_iam::Client, arn: &str) -> bool {
    iam.get_policy().policy_arn(arn).send().await.is_ok()
}

async fn create_policy(iam: &aws_sdk_iam::Client, name: &str) -> String {
    iam.create_policy()
        .policy_name(name)
        .policy_document(ALLOW_ALL)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

fn boundary_event(name: &str, role: &str, id: &str) -> Value {
    let mut event: Value = serde_json::from_str(DETACH).unwrap();
    event["detail"]["eventName"] = name.into();
    event["detail"]["eventID"] = id.into();
    event["detail"]["requestParameters"] = serde_json::json!({ "roleName": role });
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boundary_quarantine_records_restores_and_leaves_someone_elses_change() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci", "etl"]).await;
    let team = create_policy(&iam, "team-boundary").await;
    iam.put_role_permissions_boundary()
        .role_name("dev-ci")
        .permissions_boundary(&team)
        .send()
        .await
        .unwrap();
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();

    let dir = std::env::temp_dir().join(format!("agr-boundary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The periodic check is ten minutes away: only events and releases reconcile in the test.
    let setup = crate::support::binary::ControllerConfig::sdk(NS, &moto.url)
        .setting("driftPeriod", "10m")
        .setting("fullConvergePeriod", "10m")
        .events_key();
    let config = setup.write(&dir);
    let (metrics_port, signals_port) = (setup.metrics_port, setup.signals_port);
    let spawn = |log_name: &str| {
        let log = dir.join(log_name);
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
        ControllerProcess {
            child: Some(child),
            log,
        }
    };
    let mut controller = spawn("controller.log");
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz and the lease", Duration::from_secs(60), || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-boundary",
        "--timeout=60s",
    ]);
    let events = format!("http://127.0.0.1:{signals_port}/events");

    // An anomaly quarantines both roles.
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    let created = post_event(&http, &events, API_KEY, &anomaly).await;
    assert_eq!(created.0, 200, "{}\n{}", created.2, controller.log());
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    for i in 0..2 {
        kubectl.run(&[
            "wait",
            "-n",
            NS,
            &format!("--for=jsonpath={{.status.boundaries[{i}].state}}=Set"),
            &name,
            "--timeout=60s",
        ]);
    }
    let quarantine: Value =
        serde_json::from_str(&kubectl.run(&["get", "-n", NS, &name, "-o", "json"])).unwrap();
    assert_eq!(
        quarantine["spec"]["actions"],
        serde_json::json!(["setPermissionsBoundary"]),
        "the quarantine keeps the actions it was created with"
    );
    let records = quarantine["status"]["boundaries"].as_array().unwrap();
    assert_eq!(
        records[0]["arn"],
        format!("arn:aws:iam::{ACCOUNT}:role/dev-ci")
    );
    assert_eq!(records[0]["previous"], team.as_str(), "{records:?}");
    assert!(records[1].get("previous").is_none(), "{records:?}");
    let ours = records[0]["policyArn"].as_str().unwrap().to_string();
    assert!(
        ours.contains(":policy/autoguardrails/agr-boundary-"),
        "{ours}"
    );
    assert_eq!(boundary_of(&iam, "dev-ci").await, Some(ours.clone()));
    assert_eq!(boundary_of(&iam, "etl").await, Some(ours.clone()));
    assert_eq!(quarantine["status"]["phase"], "Active");

    // Someone removes ours from etl; CloudTrail reports it; ours is back.
    iam.delete_role_permissions_boundary()
        .role_name("etl")
        .send()
        .await
        .unwrap();
    let answer = post_event(
        &http,
        &events,
        API_KEY,
        &boundary_event("DeleteRolePermissionsBoundary", "etl", "b-1"),
    )
    .await;
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (200, "accepted"),
        "{}",
        answer.2
    );
    wait_for(
        "our boundary back on etl",
        Duration::from_secs(60),
        || async { boundary_of(&iam, "etl").await.as_deref() == Some(ours.as_str()) },
    )
    .await;

    // The repair is audited (its status write lands after the IAM call: wait for it).
    wait_for(
        "the repair in the history",
        Duration::from_secs(60),
        || async {
            let q: Value =
                serde_json::from_str(&kubectl.run(&["get", "-n", NS, &name, "-o", "json"]))
                    .unwrap();
            q["status"]["history"].as_array().is_some_and(|h| {
                h.iter().any(|h| {
                    h["event"] == "DriftRepaired"
                        && h["message"]
                            .as_str()
                            .unwrap_or("")
                            .contains("PermissionsBoundary")
                })
            })
        },
    )
    .await;

    // While the controller is down (SIGKILL), someone puts their own boundary on etl and the
    // release is requested: the restarted controller's first reconcile releases (a reconcile
    // while Active would put ours back, as drift).
    if let Some(mut child) = controller.child.take() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let theirs = create_policy(&iam, "their-boundary").await;
    iam.put_role_permissions_boundary()
        .role_name("etl")
        .permissions_boundary(&theirs)
        .send()
        .await
        .unwrap();
    kubectl.run(&[
        "annotate",
        "-n",
        NS,
        &name,
        "autoguardrails.io/release=incident over",
    ]);
    let restarted = spawn("controller-2.log");
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Released",
        &name,
        "--timeout=60s",
    ]);
    assert_eq!(
        boundary_of(&iam, "dev-ci").await,
        Some(team.clone()),
        "the previous boundary is back exactly: {}",
        restarted.log()
    );
    assert_eq!(
        boundary_of(&iam, "etl").await,
        Some(theirs.clone()),
        "someone else's boundary is left as they set it"
    );
    assert!(
        !policy_exists(&iam, &ours).await,
        "our boundary policy is deleted"
    );
    assert!(policy_exists(&iam, &team).await && policy_exists(&iam, &theirs).await);

    let quarantine: Value =
        serde_json::from_str(&kubectl.run(&["get", "-n", NS, &name, "-o", "json"])).unwrap();
    let records = quarantine["status"]["boundaries"].as_array().unwrap();
    assert_eq!(records[0]["state"], "Restored", "{records:?}");
    assert_eq!(records[1]["state"], "LeftChanged", "{records:?}");
    assert_eq!(records[1]["found"], theirs.as_str(), "{records:?}");
    let condition = quarantine["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "BoundaryRestored")
        .cloned()
        .unwrap_or_default();
    assert_eq!(condition["status"], "False", "{condition}");
    assert_eq!(
        condition["reason"], "BoundaryChangedByOthers",
        "{condition}"
    );
    let history = quarantine["status"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["event"] == "DriftRepaired"
            && h["message"]
                .as_str()
                .unwrap_or("")
                .contains("PermissionsBoundary")),
        "the repair is audited: {history:?}"
    );
    assert!(
        history
            .iter()
            .any(|h| h["event"] == "BoundaryChangedByOthers"),
        "the boundary left in place is audited: {history:?}"
    );
    let events: Value =
        serde_json::from_str(&kubectl.run(&["get", "events", "-n", NS, "-o", "json"])).unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "Warning"
                && e["reason"] == "BoundaryChangedByOthers"
                && e["message"].as_str().unwrap_or("").contains(&theirs)),
        "a Warning Event names the boundary left in place: {events}"
    );
}

/// A Quarantine deleted without its finalizer (while the controller was down) leaves our boundary
/// on its roles; the orphan sweep of the next controller finds our boundary policy with no live
/// Quarantine, puts back each role's previous boundary from the record on that policy (decision
/// 251) and deletes the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_deleted_boundary_quarantine_is_put_back_by_the_orphan_sweep() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci", "etl"]).await;
    let team = create_policy(&iam, "team-boundary").await;
    iam.put_role_permissions_boundary()
        .role_name("dev-ci")
        .permissions_boundary(&team)
        .send()
        .await
        .unwrap();
    let (emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let kubeconfig = emulator.kubeconfig_path().to_path_buf();
    let dir = std::env::temp_dir().join(format!("agr-boundary-orphan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let setup = crate::support::binary::ControllerConfig::sdk(NS, &moto.url)
        .setting("sweepPeriod", "2s")
        .events_key();
    let config = setup.write(&dir);
    let (metrics_port, signals_port) = (setup.metrics_port, setup.signals_port);
    let spawn = |log: &str| {
        let run = dir.join(log);
        std::fs::create_dir_all(&run).unwrap();
        crate::support::binary::spawn_controller_with_env(&kubeconfig, &config, NS, &run, &[], &[])
    };
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    let leader = || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(&http, &ops, "autoguardrails_leader ").await == 1.0
    };
    let controller = spawn("first");
    wait_for("/readyz and the lease", Duration::from_secs(60), leader).await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-boundary",
        "--timeout=60s",
    ]);
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    let events = format!("http://127.0.0.1:{signals_port}/events");
    let created = post_event(&http, &events, API_KEY, &anomaly).await;
    assert_eq!(created.0, 200, "{}\n{}", created.2, controller.log());
    let name = kubectl.run(&["get", "quarantines", "-n", NS, "-o", "name"]);
    let name = name.trim().to_string();
    for i in 0..2 {
        kubectl.run(&[
            "wait",
            "-n",
            NS,
            &format!("--for=jsonpath={{.status.boundaries[{i}].state}}=Set"),
            &name,
            "--timeout=60s",
        ]);
    }
    let ours = boundary_of(&iam, "etl").await.expect("ours is on");
    assert_eq!(
        boundary_of(&iam, "dev-ci").await.as_deref(),
        Some(ours.as_str())
    );
    // The record that outlives the Quarantine: one tag per role on our boundary policy.
    let tags: Vec<(String, String)> = iam
        .list_policy_tags()
        .policy_arn(&ours)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .filter(|(k, _)| k.starts_with("autoguardrails.io/previous-boundary/"))
        .collect();
    assert_eq!(
        tags,
        vec![
            (
                "autoguardrails.io/previous-boundary/role/dev-ci".to_string(),
                team.clone()
            ),
            (
                "autoguardrails.io/previous-boundary/role/etl".to_string(),
                "none".to_string()
            ),
        ]
    );

    // The controller is down; someone removes the finalizer and deletes the Quarantine.
    drop(controller);
    kubectl.run(&[
        "patch",
        &name,
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    kubectl.run(&["delete", &name, "-n", NS, "--wait=true"]);
    assert!(
        kubectl
            .run(&["get", "quarantines", "-n", NS, "-o", "name"])
            .trim()
            .is_empty()
    );
    assert_eq!(
        boundary_of(&iam, "etl").await.as_deref(),
        Some(ours.as_str())
    );

    // The next controller's sweep puts each previous boundary back and deletes ours.
    let controller = spawn("second");
    wait_for(
        "the sweep restoring both roles",
        Duration::from_secs(60),
        || async {
            boundary_of(&iam, "etl").await.is_none()
                && boundary_of(&iam, "dev-ci").await.as_deref() == Some(team.as_str())
        },
    )
    .await;
    wait_for(
        "our boundary policy deleted",
        Duration::from_secs(30),
        || async { !policy_exists(&iam, &ours).await },
    )
    .await;
    assert!(policy_exists(&iam, &team).await, "theirs is never touched");
    let log = controller.log();
    assert!(
        log.contains("orphan sweep put back the permissions boundary"),
        "{log}"
    );
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
}
