//! Verified approvals through the real binary: the emulator serves HTTPS with per-user tokens (so
//! kubectl sends each person's credentials), the controller serves its approval webhook over TLS
//! (config file), and a MutatingWebhookConfiguration with `failurePolicy: Fail` and the chart's
//! match condition sends approve/reject/extend changes to it. alice (bound to
//! `autoguardrails:approver`) approves and is recorded as herself whatever actor she types;
//! mallory (may patch, not approve) is refused with the webhook's message and nothing changes; an
//! operator's `kubectl --as alice` is alice; a hand-written stamp is refused. With the webhook
//! stopped, approving is refused while release by annotation and by delete still work, and the
//! controller records approvals as unverified.

use crate::support::binary::{free_port, metric_value, wait_for};
use crate::support::rbac;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub(crate) const NS: &str = "autoguardrails";
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const API_KEY: &str = "approval-test-key";
const TLS_DIR: &str = "kube-emulator/tests/fixtures/tls";

pub(crate) fn tls_file(name: &str) -> PathBuf {
    crate::support::binary::root().join(TLS_DIR).join(name)
}

pub(crate) fn tls_text(name: &str) -> String {
    std::fs::read_to_string(tls_file(name)).unwrap()
}

pub(crate) const POLICIES: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-four-eyes
  namespace: autoguardrails
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/ops" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    approvalTimeout: 1h
    cooldown: 30m
    requiredApprovers: 2
---
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-a
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
    approvalTimeout: 1h
    cooldown: 30m
---
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-b
  namespace: autoguardrails
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/etl" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    approvalTimeout: 1h
    cooldown: 30m
"#;

/// alice approves (the chart's ClusterRole, bound in the namespace), mallory may only patch,
/// operator may impersonate alice.
pub(crate) const RBAC: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-approves
  namespace: autoguardrails
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "autoguardrails:approver"}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: carol}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: quarantine-patcher
  namespace: autoguardrails
rules:
- apiGroups: ["autoguardrails.io"]
  resources: ["quarantines"]
  verbs: ["get", "list", "watch", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: mallory-patches
  namespace: autoguardrails
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: quarantine-patcher}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: mallory}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: impersonate-alice
rules:
- apiGroups: [""]
  resources: ["users"]
  verbs: ["impersonate"]
  resourceNames: ["alice"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: operator-impersonates-alice
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-alice}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: operator}
"#;

/// The chart's approver ClusterRole, read from the chart template (it has no template syntax).
pub(crate) fn approver_role() -> String {
    std::fs::read_to_string(
        crate::support::binary::root().join("charts/autoguardrails/templates/approver-role.yaml"),
    )
    .unwrap()
    .lines()
    .filter(|line| !line.trim_start().starts_with("{{"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The webhook configuration as the chart renders it, with a URL instead of the Service.
pub(crate) fn webhook_configuration(port: u16) -> String {
    let ca = base64_of(&tls_text("test-ca.pem"));
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: autoguardrails-approvals
webhooks:
- name: approvals.autoguardrails.io
  clientConfig:
    url: https://127.0.0.1:{port}/approve
    caBundle: {ca}
  rules:
  - operations: ["CREATE", "UPDATE"]
    apiGroups: ["autoguardrails.io"]
    apiVersions: ["*"]
    resources: ["quarantines"]
    scope: Namespaced
  matchConditions:
  - name: approval-annotation-written
    expression: {condition:?}
  failurePolicy: Fail
  sideEffects: None
  timeoutSeconds: 10
  admissionReviewVersions: ["v1"]
"#,
        condition = autoguardrails::controller::admission::review::MATCH_CONDITION
    )
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// kubectl with one kubeconfig; returns (success, stdout, stderr).
pub(crate) fn kubectl(
    kubeconfig: &Path,
    args: &[&str],
    input: Option<&str>,
) -> (bool, String, String) {
    let bin = crate::support::binary::root().join(".venv/bin/kubectl");
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = input {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

pub(crate) fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = kubectl(kubeconfig, args, None);
    assert!(success, "kubectl {args:?} failed: {stdout}{stderr}");
    stdout
}

fn write_config(dir: &Path, metrics_port: u16, signals_port: u16, webhook: Option<u16>) -> PathBuf {
    let webhook = match webhook {
        Some(port) => format!(
            "approvalWebhook:\n  enabled: true\n  addr: 127.0.0.1:{port}\n  certFile: {}\n  keyFile: {}\n",
            tls_file("server.pem").display(),
            tls_file("server-key.pem").display()
        ),
        None => String::new(),
    };
    let config = dir.join(format!("config-{metrics_port}.yaml"));
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    '{ACCOUNT}': {{roles: [dev-ci, etl, ops]}}
leaderElection:
  enabled: false
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
{webhook}"#
        ),
    )
    .unwrap();
    config
}

pub(crate) fn quarantine_of(admin: &Path, policy: &str) -> String {
    let listing = ok(
        admin,
        &[
            "get",
            "quarantines",
            "-n",
            NS,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.policyRef.name}{\"\\n\"}{end}",
        ],
    );
    listing
        .lines()
        .find_map(|line| {
            let (name, owner) = line.split_once(' ')?;
            (owner == policy).then(|| name.to_string())
        })
        .unwrap_or_default()
}

pub(crate) fn status_of(admin: &Path, name: &str) -> Value {
    serde_json::from_str(&ok(
        admin,
        &["get", "quarantine", name, "-n", NS, "-o", "json"],
    ))
    .unwrap()
}

pub(crate) async fn wait_phase(admin: &Path, name: &str, phase: &str) {
    let (success, stdout, stderr) = kubectl(
        admin,
        &[
            "wait",
            "-n",
            NS,
            &format!("--for=jsonpath={{.status.phase}}={phase}"),
            &format!("quarantine/{name}"),
            "--timeout=60s",
        ],
        None,
    );
    assert!(success, "{name} never reached {phase}: {stdout}{stderr}");
}

/// The emulator over HTTPS (bearer `tokens` only, nothing unauthenticated) with the CRDs, the
/// namespace, the events key Secret, the chart's approver ClusterRole and [`RBAC`] applied: the
/// set-up the approval and Slack tests share. Returns it and the admin kubeconfig.
pub(crate) async fn approvals_cluster(
    tokens: Vec<kube_emulator::TokenEntry>,
) -> (kube_emulator::Emulator, PathBuf) {
    let emulator = kube_emulator::Emulator::start_with(kube_emulator::Options {
        tls: Some(kube_emulator::tls::ServerTls {
            certificate_pem: tls_text("server.pem"),
            key_pem: tls_text("server-key.pem"),
            ca_pem: tls_text("test-ca.pem"),
        }),
        unauthenticated: kube_emulator::auth::Unauthenticated::Refuse,
        tokens,
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    let admin = emulator.kubeconfig_path().to_path_buf();
    let crds = crate::support::binary::root().join("crds");
    ok(&admin, &["apply", "-f", crds.to_str().unwrap()]);
    ok(&admin, &["create", "namespace", NS]);
    ok(
        &admin,
        &[
            "create",
            "secret",
            "generic",
            "events-key",
            "-n",
            NS,
            &format!("--from-literal=apiKey={API_KEY}"),
        ],
    );
    for manifest in [approver_role(), RBAC.to_string()] {
        let (applied, out, err) = kubectl(&admin, &["apply", "-f", "-"], Some(&manifest));
        assert!(applied, "{out}{err}");
    }
    (emulator, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_checked_and_stamped_with_the_verified_identity() {
    let (emulator, admin) = approvals_cluster(vec![
        kube_emulator::TokenEntry::new("token-alice", "alice", "uid-alice", &["approvers"]),
        kube_emulator::TokenEntry::new("token-mallory", "mallory", "uid-mallory", &[]),
        kube_emulator::TokenEntry::new("token-operator", "operator", "uid-operator", &[]),
        kube_emulator::TokenEntry::new("token-carol", "carol", "uid-carol", &[]),
    ])
    .await;
    let alice = emulator.kubeconfig_for("alice", "token-alice").unwrap();
    let mallory = emulator.kubeconfig_for("mallory", "token-mallory").unwrap();
    let operator = emulator
        .kubeconfig_for("operator", "token-operator")
        .unwrap();
    let carol = emulator.kubeconfig_for("carol", "token-carol").unwrap();
    let who = ok(
        &alice,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(who, "alice", "kubectl sends alice's token over HTTPS");
    // The RBAC the chart documents: alice may approve, mallory may not.
    assert_eq!(
        kubectl(
            &admin,
            &[
                "auth",
                "can-i",
                "approve",
                "quarantines",
                "-n",
                NS,
                "--as",
                "mallory"
            ],
            None
        )
        .1
        .trim(),
        "no"
    );
    assert_eq!(
        ok(
            &admin,
            &[
                "auth",
                "can-i",
                "approve",
                "quarantines",
                "-n",
                NS,
                "--as",
                "alice"
            ]
        )
        .trim(),
        "yes"
    );

    let dir = std::env::temp_dir().join(format!("agr-approvals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics_port, signals_port, webhook_port) = (free_port(), free_port(), free_port());
    let config = write_config(&dir, metrics_port, signals_port, Some(webhook_port));
    let mut controller =
        crate::support::binary::spawn_controller_with_env(&admin, &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let (applied, out, err) = kubectl(
        &admin,
        &["apply", "-f", "-"],
        Some(&webhook_configuration(webhook_port)),
    );
    assert!(applied, "{out}{err}");
    let (applied, out, err) = kubectl(&admin, &["apply", "-f", "-"], Some(POLICIES));
    assert!(applied, "{out}{err}");
    for policy in ["ci-a", "ci-b", "ci-four-eyes"] {
        ok(
            &admin,
            &[
                "wait",
                "-n",
                NS,
                "--for=condition=Ready",
                &format!("guardrailpolicy/{policy}"),
                "--timeout=60s",
            ],
        );
    }
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(ACCOUNT.into());
    let (status, outcome, reason) = crate::support::binary::post_event(
        &http,
        &format!("http://127.0.0.1:{signals_port}/events"),
        API_KEY,
        &event,
    )
    .await;
    assert!(status < 300, "{status} {outcome} {reason}");
    let mut first = String::new();
    let mut second = String::new();
    let mut third = String::new();
    wait_for("three quarantines", Duration::from_secs(60), || {
        first = quarantine_of(&admin, "ci-a");
        second = quarantine_of(&admin, "ci-b");
        third = quarantine_of(&admin, "ci-four-eyes");
        let all = !first.is_empty() && !second.is_empty() && !third.is_empty();
        async move { all }
    })
    .await;
    wait_phase(&admin, &third, "PendingApproval").await;
    wait_phase(&admin, &first, "PendingApproval").await;
    wait_phase(&admin, &second, "PendingApproval").await;

    // mallory may patch but not approve: refused with the webhook's message; nothing changes.
    let (success, _, stderr) = kubectl(
        &mallory,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{first}"),
            "autoguardrails.io/approve=alice: trust me",
        ],
        None,
    );
    assert!(!success);
    assert!(
        stderr.contains("admission webhook \"approvals.autoguardrails.io\" denied the request: user \"mallory\" may not approve"),
        "{stderr}"
    );
    let q = status_of(&admin, &first);
    assert!(
        q["metadata"]["annotations"]["autoguardrails.io/approve"].is_null(),
        "{q}"
    );
    assert_eq!(q["status"]["phase"], "PendingApproval");
    // Nor may anyone write the stamp by hand (here with a release, which needs no approval).
    let (success, _, stderr) = kubectl(
        &mallory,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{first}"),
            "autoguardrails.io/approve-verified={\"user\":{\"username\":\"alice\"},\"mac\":\"00\"}",
        ],
        None,
    );
    assert!(!success);
    assert!(
        stderr.contains("is written by the approval webhook only"),
        "{stderr}"
    );

    // alice approves claiming to be bob: recorded as alice, verified.
    ok(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{first}"),
            "autoguardrails.io/approve=bob: runaway CI job",
        ],
    );
    wait_phase(&admin, &first, "Active").await;
    let q = status_of(&admin, &first);
    assert_eq!(q["status"]["approvedBy"], "alice", "{q}");
    let history = q["status"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|entry| entry["actor"] == "alice"
            && entry["message"]
                .as_str()
                .unwrap_or_default()
                .contains("runaway CI job")),
        "{history:?}"
    );
    assert!(!history.iter().any(|entry| entry["actor"] == "bob"));
    assert!(
        history
            .iter()
            .any(|entry| entry["event"] == "Approved" && entry["channel"] == "kubectl"),
        "{history:?}"
    );
    let events = ok(
        &admin,
        &[
            "get",
            "events",
            "-n",
            NS,
            "-o",
            "jsonpath={range .items[*]}{.reason}={.message}{\"\\n\"}{end}",
        ],
    );
    assert!(
        events
            .lines()
            .any(|line| line.starts_with("Approved=") && line.contains("alice")),
        "{events}"
    );

    // An operator impersonating alice is alice.
    ok(
        &operator,
        &[
            "annotate",
            "-n",
            NS,
            "--as",
            "alice",
            &format!("quarantine/{second}"),
            "autoguardrails.io/approve=looked at it",
        ],
    );
    wait_phase(&admin, &second, "Active").await;
    assert_eq!(status_of(&admin, &second)["status"]["approvedBy"], "alice");
    assert!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_approvals_total{verb=\"approve\",verified=\"true\"}"
        )
        .await
            >= 2.0
    );
    assert_eq!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_approval_reviews_total{decision=\"refused\",verb=\"approve\"}"
        )
        .await,
        1.0
    );

    // Four-eyes: alice's approval is one of two; alice again does not count; carol's enforces.
    ok(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{third}"),
            "autoguardrails.io/approve=first look",
        ],
    );
    let history_of = |name: &str| -> Vec<(String, String)> {
        status_of(&admin, name)["status"]["history"]
            .as_array()
            .map(|history| {
                history
                    .iter()
                    .map(|entry| {
                        (
                            entry["event"].as_str().unwrap_or_default().to_string(),
                            entry["actor"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("alice's approval recorded", Duration::from_secs(60), || {
        let recorded = history_of(&third).contains(&("ApprovalRecorded".into(), "alice".into()));
        async move { recorded }
    })
    .await;
    wait_for(
        "alice's annotation cleared",
        Duration::from_secs(60),
        || {
            let cleared =
                status_of(&admin, &third)["metadata"]["annotations"]["autoguardrails.io/approve"]
                    .is_null();
            async move { cleared }
        },
    )
    .await;
    ok(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{third}"),
            "autoguardrails.io/approve=me again",
        ],
    );
    wait_for(
        "alice's second approval refused",
        Duration::from_secs(60),
        || {
            let refused = history_of(&third).contains(&("ApprovalRefused".into(), "alice".into()));
            async move { refused }
        },
    )
    .await;
    assert_eq!(
        status_of(&admin, &third)["status"]["phase"],
        "PendingApproval"
    );
    wait_for(
        "alice's second annotation cleared",
        Duration::from_secs(60),
        || {
            let cleared =
                status_of(&admin, &third)["metadata"]["annotations"]["autoguardrails.io/approve"]
                    .is_null();
            async move { cleared }
        },
    )
    .await;
    ok(
        &carol,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{third}"),
            "autoguardrails.io/approve=agreed",
        ],
    );
    wait_phase(&admin, &third, "Active").await;
    assert_eq!(
        status_of(&admin, &third)["status"]["approvedBy"],
        "alice, carol"
    );

    // The webhook stops (the controller restarts with it off): approving fails closed, release
    // by annotation and by delete still work.
    if let Some(mut child) = controller.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (metrics_port, signals_port) = (free_port(), free_port());
    let config = write_config(&dir, metrics_port, signals_port, None);
    controller =
        crate::support::binary::spawn_controller_with_env(&admin, &config, NS, &dir, &[], &[]);
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for(
        "/readyz after the restart",
        Duration::from_secs(60),
        || async {
            matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
        },
    )
    .await;
    let (success, _, stderr) = kubectl(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            "--overwrite",
            &format!("quarantine/{first}"),
            "autoguardrails.io/approve=again",
        ],
        None,
    );
    assert!(
        !success,
        "approving must fail closed while the webhook is down"
    );
    assert!(
        stderr.contains("failed calling webhook \"approvals.autoguardrails.io\""),
        "{stderr}"
    );
    // An administrator turns the webhook off by choice: an extension then goes through, and the
    // controller (webhook off) records it as unverified.
    ok(
        &admin,
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "autoguardrails-approvals",
        ],
    );
    ok(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{second}"),
            "autoguardrails.io/extend=alice: 4h",
        ],
    );
    wait_for(
        "the unverified extension in the history",
        Duration::from_secs(60),
        || {
            let q = status_of(&admin, &second);
            let recorded = q["status"]["history"].as_array().is_some_and(|history| {
                history
                    .iter()
                    .any(|entry| entry["actor"] == "alice (unverified)")
            });
            async move { recorded }
        },
    )
    .await;
    ok(
        &mallory,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{first}"),
            "autoguardrails.io/release=mallory: done",
        ],
    );
    wait_phase(&admin, &first, "Released").await;
    ok(
        &mallory,
        &[
            "delete",
            "-n",
            NS,
            &format!("quarantine/{second}"),
            "--timeout=60s",
        ],
    );
    let (found, _, _) = kubectl(
        &admin,
        &["get", "-n", NS, &format!("quarantine/{second}")],
        None,
    );
    assert!(
        !found,
        "the deleted quarantine is gone (its finalizer released it)"
    );
    drop(controller);

    // Every API call the binary made (SubjectAccessReviews included) is allowed by the chart's
    // RBAC with the webhook on.
    let ours: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("autoguardrails/"))
        .collect();
    assert!(
        ours.iter()
            .any(|r| r.resource == "subjectaccessreviews" && r.verb == "create"),
        "the webhook asked SubjectAccessReviews"
    );
    let manifests = rbac::parse_manifests(&rbac::render_chart(
        r#"{"signals":{"events":{"apiKeySecret":{"name":"events-key","key":"apiKey"}}},"approvals":{"webhook":{"enabled":true}}}"#,
    ));
    let rules = rbac::Rbac::for_service_account(
        &manifests,
        rbac::SERVICE_ACCOUNT.0,
        rbac::SERVICE_ACCOUNT.1,
    );
    let denied = rules.check(&ours);
    assert!(
        denied.is_empty(),
        "calls the chart does not allow: {denied:#?}"
    );
}
