//! A running controller for tests: the Kubernetes API emulator, our CRDs, the in-memory IAM for
//! account 111111111111 (and 222222222222), the real controllers started with kube-runtime, and
//! the real intake. `restart` drops the controller abruptly (as a crash would) and starts a new one
//! over the same API server and IAM.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::aws::PrincipalKind;
use autoguardrails::aws::PrincipalRef;
use autoguardrails::aws::factory::StaticClients;
use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::controller::crd::{GuardrailPolicy, Phase, Quarantine};
use autoguardrails::controller::intake::{IntakeReport, SignalIntake};
use autoguardrails::controller::reconcile::intake::Intake;
use autoguardrails::controller::reconcile::{self as controller, Running, Settings};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::metrics::Metrics;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_emulator::Emulator;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const ACCOUNT: &str = "111111111111";
pub const OTHER_ACCOUNT: &str = "222222222222";
pub const NS: &str = "autoguardrails";
pub const CLUSTER: &str = "test-cluster";

pub struct Harness {
    pub emulator: Emulator,
    pub client: Client,
    pub iam: Arc<InMemoryIam>,
    pub other_iam: Arc<InMemoryIam>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The controller, its task, its stop switch and its one intake (as in the binary: one per
    /// process, so its `lastSignal` recorder writes in order).
    running: Option<(Running, JoinHandle<()>, watch::Sender<bool>, Intake)>,
}

/// Fast periods so tests see drift repair and sweeps quickly.
pub fn test_settings() -> Settings {
    Settings {
        cluster_id: CLUSTER.into(),
        drift_period: Duration::from_millis(500),
        full_converge_period: Duration::from_secs(2),
        sweep_period: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(2),
        ..Settings::default()
    }
}

pub fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

pub fn role_ref(name: &str) -> PrincipalRef {
    PrincipalRef {
        kind: PrincipalKind::Role,
        name: name.to_string(),
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(test_settings()).await
    }

    pub async fn start_with(settings: Settings) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let emulator = Emulator::start().await.expect("emulator");
        emulator
            .apply_crd_yaml(&autoguardrails::controller::crd::crds_yaml().expect("crd yaml"))
            .expect("crds");
        let client = emulator.client().await.expect("client");
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).expect("ns");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let iam = Arc::new(InMemoryIam::new(ACCOUNT));
        let other_iam = Arc::new(InMemoryIam::new(OTHER_ACCOUNT));
        iam.outside(|o| {
            for r in ["dev-ci", "batch", "etl", "break-glass"] {
                o.create_role(r);
            }
            o.create_user("data-export");
        });
        other_iam.outside(|o| {
            o.create_role("dev-ci");
        });
        let mut h = Harness {
            emulator,
            client,
            iam,
            other_iam,
            settings,
            metrics: Arc::new(Metrics::new().expect("metrics")),
            running: None,
        };
        h.start_controller().await;
        h
    }

    pub async fn start_controller(&mut self) {
        let clients = StaticClients::new()
            .with(ACCOUNT, self.iam.clone())
            .with(OTHER_ACCOUNT, self.other_iam.clone());
        let (tx, rx) = watch::channel(false);
        let (running, future) = controller::start(
            self.client.clone(),
            self.settings.clone(),
            Arc::new(clients),
            self.metrics.clone(),
            Some("test".into()),
            rx,
        );
        let handle = tokio::spawn(future);
        let t0 = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), running.stores.wait_ready())
            .await
            .expect("controller caches synced within 30 s");
        eprintln!("caches synced in {:?}", t0.elapsed());
        let intake = Intake::from_running(&running);
        self.running = Some((running, handle, tx, intake));
    }

    /// Kills the controller without any graceful step (a crash), then starts a new one.
    pub async fn restart(&mut self, settings: Option<Settings>) {
        self.crash();
        if let Some(s) = settings {
            self.settings = s;
        }
        self.start_controller().await;
    }

    /// Aborts the controller task (nothing runs after this point).
    pub fn crash(&mut self) {
        if let Some((_, handle, _, _)) = self.running.take() {
            handle.abort();
        }
    }

    /// Stops the controller gracefully.
    pub async fn stop(&mut self) {
        if let Some((_, handle, tx, _)) = self.running.take() {
            let _ = tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    pub fn running(&self) -> &Running {
        &self.running.as_ref().expect("controller running").0
    }

    pub fn intake(&self) -> Intake {
        self.running.as_ref().expect("controller running").3.clone()
    }

    pub async fn submit(&self, signal: &CostSignal) -> IntakeReport {
        // The cache may not have seen a policy created a moment ago; wait for it.
        self.intake().submit(signal).await.expect("intake")
    }

    pub fn policies(&self) -> Api<GuardrailPolicy> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn quarantines(&self) -> Api<Quarantine> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Creates a policy from YAML and waits until the controller's cache has it.
    pub async fn apply_policy(&self, yaml: &str) -> GuardrailPolicy {
        let policy: GuardrailPolicy = serde_saphyr::from_str(yaml).expect("policy yaml");
        let created = self
            .policies()
            .create(&PostParams::default(), &policy)
            .await
            .expect("create policy");
        let name = created.name_any();
        self.eventually(&format!("policy {name} cached"), || async {
            self.running().stores.policy(NS, &name).is_some()
        })
        .await;
        created
    }

    pub async fn quarantine(&self, name: &str) -> Option<Quarantine> {
        self.quarantines()
            .get_opt(name)
            .await
            .expect("get quarantine")
    }

    pub async fn phase(&self, name: &str) -> Option<Phase> {
        self.quarantine(name)
            .await
            .and_then(|q| q.status.and_then(|s| s.phase))
    }

    /// Polls `check` every 50 ms for up to 30 s; panics with `what` when it never holds.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if check().await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_phase(&self, name: &str, phase: Phase) -> Quarantine {
        self.eventually(&format!("{name} in phase {phase:?}"), || async {
            self.phase(name).await == Some(phase)
        })
        .await;
        self.quarantine(name).await.expect("quarantine exists")
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let body = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.quarantines()
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .expect("annotate");
    }

    pub async fn delete_quarantine(&self, name: &str) {
        self.quarantines()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete quarantine");
    }

    /// Our managed deny policies attached to a role in the main account.
    pub fn attached(&self, role_name: &str) -> Vec<String> {
        self.iam
            .state()
            .attached(&role_ref(role_name))
            .into_iter()
            .filter(|a| a.contains("/autoguardrails/"))
            .collect()
    }

    /// How many managed policies under our path exist in the main account.
    pub fn our_policy_count(&self) -> usize {
        self.iam
            .state()
            .policies
            .values()
            .filter(|p| p.arn.contains(":policy/autoguardrails/"))
            .count()
    }

    /// Events (events.k8s.io/v1) about an object, as (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NS);
        let list = api.list(&Default::default()).await.expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.crash();
    }
}

pub fn anomaly(id: &str, account: &str, impact: f64) -> CostSignal {
    CostSignal {
        source: autoguardrails::controller::crd::SignalSource::CostAnomaly,
        id: id.to_string(),
        account_id: account.to_string(),
        impact_usd: impact,
        service: Some("Amazon Elastic Compute Cloud - Compute".into()),
        region: Some("ap-northeast-1".into()),
        budget_name: None,
        observed_at: jiff::Timestamp::now(),
        details_url: None,
        summary: Some("test anomaly".into()),
        principal: None,
        raw: None,
    }
}

/// A policy over role dev-ci (and optional extra roles) in the given mode.
pub fn policy_yaml(name: &str, mode: &str, ttl: &str, roles: &[&str]) -> String {
    let principals: Vec<String> = roles
        .iter()
        .map(|r| format!("      - {{ kind: IamRole, arn: \"{}\" }}", role(r)))
        .collect();
    format!(
        r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: {name}
  namespace: {NS}
spec:
  mode: {mode}
  match:
    sources: [CostAnomaly]
    accountIds: ["{ACCOUNT}"]
    minImpactUsd: 100
  scope:
    principals:
{}
  deny:
    actions: ["ec2:RunInstances", "ec2:CreateNatGateway"]
  quarantine:
    ttl: {ttl}
    approvalTimeout: 1h
    cooldown: 30m
"#,
        principals.join("\n")
    )
}
