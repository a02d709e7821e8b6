//! The durable audit store through the real binary (config file, env, kubectl, the emulator,
//! moto's IAM and DynamoDB, `autoguardrails audit`): every transition of a Manual quarantine
//! reaches the table exactly once — also when DynamoDB is unreachable for a while, when the
//! controller is SIGKILLed between the status append and the flush (a new process resumes), and
//! when the Quarantine is deleted right after its release (the deletion waits for the flush).

use crate::support::audit::{Switch, create_audit_table, dynamodb, port_of, primary_ids};
use crate::support::binary::{
    ControllerProcess, Kubectl, cluster_with_events_key, create_roles, free_port, iam_client,
    metric_value, post_event, spawn_controller_with_env, wait_for,
};
use crate::support::moto;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const NS: &str = "autoguardrails";
const ACCOUNT: &str = "123456789012";
const API_KEY: &str = "audit-test-key";
const TABLE: &str = "autoguardrails-audit";
const ROLE: &str = "arn:aws:iam::123456789012:role/dev-ci";
const WAIT: Duration = Duration::from_secs(90);

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
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    cooldown: 30m
"#;

/// `autoguardrails audit` against the table (through moto directly), as JSON lines.
fn audit_cli(moto_url: &str, args: &[&str]) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "audit",
            "--table",
            TABLE,
            "--endpoint-url",
            moto_url,
            "-o",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "audit: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events_of(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn write_config(
    dir: &Path,
    metrics: u16,
    signals: u16,
    moto: &str,
    table_url: &str,
) -> std::path::PathBuf {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics}
signalsAddr: 127.0.0.1:{signals}
aws:
  backend: sdk
  endpointUrl: {moto}
  maxAttempts: 1
  requestsPerSecond: 0
leaderElection:
  leaseNamespace: {NS}
  leaseDuration: 4s
  renewDeadline: 3s
  retryPeriod: 500ms
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
audit:
  table: {TABLE}
  endpointUrl: {table_url}
  retentionDays: 400
  jsonLines: {jsonl}
  flushInterval: 200ms
  maxBackoff: 1s
  deletionWait: 10m
"#,
            jsonl = dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    config
}

async fn leader(http: &reqwest::Client, ops: &str) {
    wait_for("/readyz and the lease", WAIT, || async {
        let ready =
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200);
        ready && metric_value(http, ops, "autoguardrails_leader ").await == 1.0
    })
    .await;
}

fn start(kubectl: &Kubectl, config: &Path, dir: &Path) -> ControllerProcess {
    spawn_controller_with_env(&kubectl_config(kubectl), config, NS, dir, &[], &[])
}

fn kubectl_config(kubectl: &Kubectl) -> std::path::PathBuf {
    kubectl.kubeconfig.clone()
}

fn outbox_len(kubectl: &Kubectl, name: &str) -> usize {
    let json = kubectl.run(&["get", "-n", NS, name, "-o", "json"]);
    let q: Value = serde_json::from_str(&json).unwrap();
    q["status"]["audit"]["entries"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_table_once_through_outages_crashes_and_deletion() {
    let moto = moto::MotoServer::start();
    let iam = iam_client(&moto).await;
    create_roles(&iam, &["dev-ci"]).await;
    let dynamo = dynamodb(&moto).await;
    create_audit_table(&dynamo, TABLE).await;
    let switch = Switch::start(port_of(&moto.url)).await;
    let (_emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let dir = std::env::temp_dir().join(format!("agr-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics_port, signals_port) = (free_port(), free_port());
    let config = write_config(&dir, metrics_port, signals_port, &moto.url, &switch.url);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    let mut controller = start(&kubectl, &config, &dir);
    leader(&http, &ops).await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-manual",
        "--timeout=60s",
    ]);

    // A signal: PendingApproval, and its record in the table.
    let mut anomaly: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    anomaly["account"] = ACCOUNT.into();
    anomaly["detail"]["rootCauses"][0]["linkedAccount"] = ACCOUNT.into();
    anomaly["detail"]["impact"]["totalImpact"] = serde_json::json!(520.0);
    let events_url = format!("http://127.0.0.1:{signals_port}/events");
    let created = post_event(&http, &events_url, API_KEY, &anomaly).await;
    assert_eq!(created.0, 200, "{}\n{}", created.2, controller.log());
    let name = kubectl
        .run(&["get", "quarantines", "-n", NS, "-o", "name"])
        .trim()
        .to_string();
    let short = name.rsplit('/').next().unwrap().to_string();
    let quarantine = format!("{NS}/{short}");
    wait_for("the PendingApproval record", WAIT, || async {
        events_of(&audit_cli(&moto.url, &["--quarantine", &quarantine])) == ["PendingApproval"]
    })
    .await;
    let first = audit_cli(&moto.url, &["--quarantine", &quarantine]);
    assert_eq!(first[0]["signal"]["impactUsd"], 520.0, "{first:?}");
    assert_eq!(first[0]["principals"][0], ROLE);
    assert_eq!(first[0]["policy"], "ci-manual");

    // DynamoDB goes away; the approval and the activation wait in the Quarantine's status.
    switch.set_up(false);
    kubectl.run(&[
        "annotate",
        "-n",
        NS,
        &name,
        "autoguardrails.io/approve=alice: cost spike confirmed",
    ]);
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Active",
        &name,
        "--timeout=60s",
    ]);
    wait_for("the backlog metric", WAIT, || async {
        metric_value(&http, &ops, "autoguardrails_audit_backlog_records ").await >= 2.0
    })
    .await;
    assert!(outbox_len(&kubectl, &name) >= 2);
    assert_eq!(
        events_of(&audit_cli(&moto.url, &["--quarantine", &quarantine])),
        ["PendingApproval"],
        "nothing reached the table while it was down"
    );

    // SIGKILL between the append and the flush; DynamoDB comes back; a new process resumes.
    if let Some(mut child) = controller.child.take() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    switch.set_up(true);
    controller = start(&kubectl, &config, &dir);
    leader(&http, &ops).await;
    wait_for("the approval and activation records", WAIT, || async {
        events_of(&audit_cli(&moto.url, &["--quarantine", &quarantine]))
            == ["PendingApproval", "Approved", "Activated"]
    })
    .await;
    let approved = audit_cli(&moto.url, &["--principal", ROLE, "--actor", "alice"]);
    assert_eq!(events_of(&approved), ["Approved"], "{approved:?}");
    assert_eq!(approved[0]["actor"]["channel"], "kubectl");
    assert_eq!(approved[0]["actor"]["verified"], false);
    wait_for("the outbox to empty", WAIT, || async {
        outbox_len(&kubectl, &name) == 0
    })
    .await;

    // Release, and delete the Quarantine right away while DynamoDB is down: the deletion waits
    // for the flush; when DynamoDB is back the records arrive and the object goes.
    switch.set_up(false);
    kubectl.run(&[
        "annotate",
        "-n",
        NS,
        &name,
        "autoguardrails.io/release=bob: incident closed",
    ]);
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=jsonpath={.status.phase}=Released",
        &name,
        "--timeout=60s",
    ]);
    kubectl.run(&["delete", "-n", NS, &name, "--wait=false"]);
    wait_for("the deletion to wait for the audit flush", WAIT, || async {
        controller.log().contains("audit records not flushed yet")
    })
    .await;
    let still = kubectl.run(&["get", "-n", NS, &name, "-o", "name", "--ignore-not-found"]);
    assert_eq!(still.trim(), name, "the finalizer holds the object");
    switch.set_up(true);
    kubectl.run(&["wait", "-n", NS, "--for=delete", &name, "--timeout=90s"]);
    let all = audit_cli(&moto.url, &["--quarantine", &quarantine]);
    let events = events_of(&all);
    assert_eq!(
        &events[..4],
        [
            "PendingApproval",
            "Approved",
            "Activated",
            "ReleaseRequested"
        ],
        "{events:?}"
    );
    assert!(events.contains(&"Released".to_string()), "{events:?}");
    let released = all
        .iter()
        .find(|r| r["event"] == "ReleaseRequested")
        .unwrap();
    assert_eq!(released["actor"]["name"], "bob");
    // The records of IAM writes name moto's request ids (decision 234); a person's do not.
    for event in ["Activated", "Released"] {
        let record = all.iter().find(|r| r["event"] == event).unwrap();
        let ids: Vec<&str> = record["requestIds"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            !ids.is_empty(),
            "{event} names its IAM writes' request ids: {record}"
        );
        assert!(ids.iter().all(|id| id.len() == 52), "moto's ids: {ids:?}");
    }
    assert!(released.get("requestIds").is_none(), "{released}");

    // Exactly once: every id once in the table, sequences 0.. without a gap.
    let ids = primary_ids(&dynamo, TABLE).await;
    let mut unique_ids = ids.clone();
    unique_ids.dedup();
    assert_eq!(ids, unique_ids, "no record stored twice");
    assert_eq!(ids.len(), all.len());
    let sequences: Vec<u64> = all
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (0..all.len() as u64).collect::<Vec<_>>());

    // The JSON-lines file has every record too (at least once: lines are not conditional).
    let lines = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    for id in &ids {
        assert!(lines.contains(id.as_str()), "{id} in audit.jsonl");
    }
    // A table printout for people.
    let o = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args([
            "audit",
            "--table",
            TABLE,
            "--endpoint-url",
            &moto.url,
            "--quarantine",
            &quarantine,
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    eprintln!("{table}");
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("alice (kubectl)"), "{table}");
    drop(controller);
}

/// The records in the controller's own outbox ConfigMap (decision 225).
fn controller_outbox(kubectl: &Kubectl) -> Vec<Value> {
    let json = kubectl.run(&[
        "get",
        "configmap",
        "-n",
        NS,
        "autoguardrails-audit-outbox",
        "-o",
        "json",
        "--ignore-not-found",
    ]);
    if json.trim().is_empty() {
        return Vec::new();
    }
    let map: Value = serde_json::from_str(&json).unwrap();
    let outbox: Value =
        serde_json::from_str(map["data"]["outbox.json"].as_str().unwrap_or("{}")).unwrap();
    outbox["records"].as_array().cloned().unwrap_or_default()
}

/// Signals the controller does not act on are audited through its own outbox ConfigMap: they
/// wait there while DynamoDB is down, survive a SIGKILL, and reach the table exactly once in the
/// partition `controller#<cluster>` when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_not_acted_on_reach_the_table_once_through_the_controller_outbox() {
    let moto = moto::MotoServer::start();
    let dynamo = dynamodb(&moto).await;
    create_audit_table(&dynamo, TABLE).await;
    let switch = Switch::start(port_of(&moto.url)).await;
    let (_emulator, kubectl) = cluster_with_events_key(NS, API_KEY).await;
    let dir = std::env::temp_dir().join(format!("agr-audit-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics_port, signals_port) = (free_port(), free_port());
    let config = write_config(&dir, metrics_port, signals_port, &moto.url, &switch.url);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    let mut controller = start(&kubectl, &config, &dir);
    leader(&http, &ops).await;
    kubectl.run_with_input(&["apply", "-f", "-"], Some(POLICY));
    kubectl.run(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "guardrailpolicy/ci-manual",
        "--timeout=60s",
    ]);
    switch.set_up(false);

    // Below the policy's threshold, and from an account no policy watches.
    let events_url = format!("http://127.0.0.1:{signals_port}/events");
    let anomaly = |id: &str, account: &str, impact: f64| {
        let mut a: Value =
            serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json"))
                .unwrap();
        a["id"] = id.into();
        a["detail"]["anomalyId"] = id.into();
        a["account"] = account.into();
        a["detail"]["rootCauses"][0]["linkedAccount"] = account.into();
        a["detail"]["impact"]["totalImpact"] = serde_json::json!(impact);
        a
    };
    let small = post_event(
        &http,
        &events_url,
        API_KEY,
        &anomaly("small-1", ACCOUNT, 20.0),
    )
    .await;
    assert_eq!(small.0, 200, "{}", small.2);
    let other = post_event(
        &http,
        &events_url,
        API_KEY,
        &anomaly("other-1", "210987654321", 900.0),
    )
    .await;
    assert_eq!(other.0, 200, "{}", other.2);
    assert!(
        kubectl
            .run(&["get", "quarantines", "-n", NS, "-o", "name"])
            .trim()
            .is_empty(),
        "no Quarantine for either"
    );
    // SIGKILL as soon as both are answered: an accepted signal's records are in the outbox
    // before its answer (group commit, decision 242), so none is lost with the process.
    if let Some(mut child) = controller.child.take() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let waiting = controller_outbox(&kubectl);
    let mut events = events_of(&waiting);
    events.sort();
    assert_eq!(
        events,
        ["SignalNotActedOn", "SignalUnmatched"],
        "{waiting:?}"
    );
    let not_acted = waiting
        .iter()
        .find(|r| r["event"] == "SignalNotActedOn")
        .unwrap();
    assert_eq!(not_acted["policy"], "ci-manual");
    assert_eq!(not_acted["signal"]["impactUsd"], 20.0);
    assert_eq!(not_acted["actor"]["channel"], "controller");

    // A new process, the table still down: the backlog metric counts them; then it flushes.
    controller = start(&kubectl, &config, &dir);
    leader(&http, &ops).await;
    wait_for("the backlog metric counts them", WAIT, || async {
        metric_value(&http, &ops, "autoguardrails_audit_backlog_records ").await >= 2.0
    })
    .await;
    switch.set_up(true);
    wait_for("the controller outbox to empty", WAIT, || async {
        controller_outbox(&kubectl).is_empty()
    })
    .await;
    let since = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string();
    let stored = audit_cli(&moto.url, &["--since", &since]);
    let mut events = events_of(&stored);
    events.sort();
    assert_eq!(
        events,
        ["SignalNotActedOn", "SignalUnmatched"],
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .all(|r| r["cluster"] == "e2e" && r["quarantine"].is_null())
    );
    let unmatched = stored
        .iter()
        .find(|r| r["event"] == "SignalUnmatched")
        .unwrap();
    assert_eq!(unmatched["signal"]["accountId"], "210987654321");
    // Exactly once in the table (the primary copies), in the controller's partition.
    let ids = primary_ids(&dynamo, TABLE).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    let item = dynamo
        .query()
        .table_name(TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("controller#e2e".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(item.count(), 2);
    drop(controller);
}

/// `autoguardrails audit` works with only the `controller-audit-read` actions, and those
/// credentials cannot write a record. moto checks IAM policies after its first few (setup)
/// actions; it authorises DynamoDB calls against resource `*`, so the auditor's policy names the
/// actions of the read set on `*` here (the documented policy names the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_command_reads_with_read_only_credentials_that_cannot_write() {
    use autoguardrails::audit::dynamodb::DynamoDbAudit;
    use autoguardrails::audit::{Actor, AuditRecord, AuditSink, QuarantineRef, record_id};
    use autoguardrails::aws::permissions::CONTROLLER_AUDIT_READ;

    // Setup actions before moto starts checking: CreateUser, PutUserPolicy, CreateAccessKey,
    // CreateTable, PutItem.
    let moto = moto::MotoServer::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "5")]);
    let iam = iam_client(&moto).await;
    iam.create_user().user_name("auditor").send().await.unwrap();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": CONTROLLER_AUDIT_READ.actions(), "Resource": "*"}]
    });
    iam.put_user_policy()
        .user_name("auditor")
        .policy_name("audit-read")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("auditor")
        .send()
        .await
        .unwrap()
        .access_key()
        .cloned()
        .unwrap();
    let dynamo = dynamodb(&moto).await;
    dynamo
        .create_table()
        .table_name(TABLE)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("sk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Range)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let record = AuditRecord {
        id: record_id("uid-1", 0),
        recorded_at: "2026-03-03T09:30:00Z".parse().unwrap(),
        sequence: 0,
        cluster: "e2e".into(),
        quarantine: Some(QuarantineRef {
            namespace: NS.into(),
            name: "q1".into(),
            uid: "uid-1".into(),
        }),
        policy: Some("ci-manual".into()),
        principals: Vec::new(),
        event: "Approved".into(),
        actor: Actor {
            name: "alice".into(),
            verified: false,
            channel: "kubectl".into(),
        },
        message: "approved: cost spike confirmed".into(),
        mode: Some("Manual".into()),
        signal: None,
        request_ids: Vec::new(),
    };
    let writer = DynamoDbAudit::new(dynamo.clone(), TABLE, None);
    writer.append(std::slice::from_ref(&record)).await.unwrap();

    // From here moto checks every call. The auditor reads through the binary.
    let auditor = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
            .args([
                "audit",
                "--table",
                TABLE,
                "--endpoint-url",
                &moto.url,
                "-o",
                "json",
            ])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", key.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", key.secret_access_key())
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    let o = auditor(&["--quarantine", &format!("{NS}/q1")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read: AuditRecord = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(read, record);

    // The same credentials cannot write a record.
    let settings = autoguardrails::aws::sdk::SdkSettings {
        static_credentials: Some((
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        )),
        ..moto.settings()
    };
    let config = autoguardrails::aws::sdk::load_base_config(&settings).await;
    let as_auditor = DynamoDbAudit::new(
        autoguardrails::aws::factory::dynamodb_client(&config, None, None),
        TABLE,
        None,
    );
    let mut other = record.clone();
    other.id = record_id("uid-1", 1);
    other.sequence = 1;
    let refused = as_auditor.append(&[other]).await;
    match refused {
        Err(autoguardrails::audit::AuditError::Table { message, .. }) => {
            assert!(message.contains("AccessDenied"), "{message}")
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    // And credentials without the read set cannot read: exit 1 with the error.
    let o = Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .args(["audit", "--table", TABLE, "--endpoint-url", &moto.url])
        .args(["--quarantine", &format!("{NS}/q1")])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("failed to Query on audit table"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
