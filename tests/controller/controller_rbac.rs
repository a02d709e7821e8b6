//! Every API call the real controllers, intake and leader elector make during a full scenario on
//! the emulator must be allowed by the Helm chart's RBAC (default values: ClusterRole), checked
//! with tests/support/rbac.rs over the emulator's request log. The controller's client carries
//! its own User-Agent so the test's own calls are not counted.

use crate::support::controller as harness;
use crate::support::rbac;

use autoguardrails::aws::factory::StaticClients;
use autoguardrails::controller::crd::{GuardrailPolicy, Phase};
use autoguardrails::controller::intake::SignalIntake;
use autoguardrails::controller::leader::{LeaderElector, LeaseSettings};
use autoguardrails::controller::reconcile::{self as controller, intake::Intake};
use autoguardrails::metrics::Metrics;
use autoguardrails::shutdown::{Shutdown, ShutdownCause};
use axum::http::{HeaderValue, header::USER_AGENT};
use harness::{ACCOUNT, Harness, NS, OTHER_ACCOUNT, anomaly, policy_yaml};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CONTROLLER_AGENT: &str = "autoguardrails-controller-under-test";

async fn controller_client(emulator: &kube_emulator::Emulator) -> Client {
    let mut config = emulator.config().await.unwrap();
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(CONTROLLER_AGENT)));
    Client::try_from(config).unwrap()
}

async fn create_policy(h: &Harness, running: &controller::Running, yaml: &str) -> String {
    let policy: GuardrailPolicy = serde_saphyr::from_str(yaml).unwrap();
    let name = h
        .policies()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap()
        .name_any();
    h.eventually("policy cached", || async {
        running.stores.policy(NS, &name).is_some()
    })
    .await;
    name
}

async fn submit(intake: &Intake, id: &str) -> String {
    let report = intake.submit(&anomaly(id, ACCOUNT, 500.0)).await.unwrap();
    report
        .outcomes
        .iter()
        .find_map(|o| o.quarantine.clone())
        .expect("a Quarantine for the signal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_api_calls_are_allowed_by_the_chart_rbac() {
    let mut h = Harness::start().await;
    h.crash(); // the harness's own controller shares the test client; run ours with a tagged one
    let start = h.emulator.requests().len();

    let client = controller_client(&h.emulator).await;
    let clients = StaticClients::new()
        .with(ACCOUNT, h.iam.clone())
        .with(OTHER_ACCOUNT, h.other_iam.clone());
    let (stop, stopped) = watch::channel(false);
    let (running, future) = controller::start(
        client.clone(),
        h.settings.clone(),
        Arc::new(clients),
        Arc::new(Metrics::new().unwrap()),
        Some("rbac-test".into()),
        stopped,
    );
    let task = tokio::spawn(future);
    tokio::time::timeout(Duration::from_secs(30), running.stores.wait_ready())
        .await
        .unwrap();
    let shutdown = Shutdown::new();
    let leadership = LeaderElector::new(
        client.clone(),
        LeaseSettings {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
            ..LeaseSettings::new("autoguardrails", NS, "pod-a")
        },
        Arc::new(Metrics::new().unwrap()),
    )
    .unwrap()
    .start(shutdown.clone());
    let intake = Intake::from_running(&running);

    // A Manual policy whose Slack webhook Secret (the default allowed name) exists.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(h.client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "slack-webhook"},
                "stringData": {"url": "https://hooks.slack.invalid/T/B/x"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let manual = policy_yaml("manual-ci", "Manual", "1h", &["dev-ci"]).replace(
        "  quarantine:\n",
        "  notify:\n    slack:\n      webhookSecretRef: { name: slack-webhook, key: url }\n  quarantine:\n",
    );
    create_policy(&h, &running, &manual).await;
    let name = submit(&intake, "rbac-manual-1").await;
    h.wait_phase(&name, Phase::PendingApproval).await;
    h.annotate(&name, "autoguardrails.io/approve", "rbac test")
        .await;
    h.wait_phase(&name, Phase::Active).await;
    h.annotate(&name, "autoguardrails.io/release", "rbac test")
        .await;
    h.wait_phase(&name, Phase::Released).await;

    // An Auto policy; its Quarantine is deleted while Active (finalizer path), then the policy.
    let auto = create_policy(
        &h,
        &running,
        &policy_yaml("auto-batch", "Auto", "1h", &["batch"]),
    )
    .await;
    let name = submit(&intake, "rbac-auto-1").await;
    h.wait_phase(&name, Phase::Active).await;
    h.delete_quarantine(&name).await;
    h.eventually("deleted quarantine gone", || async {
        h.quarantine(&name).await.is_none()
    })
    .await;
    h.policies()
        .delete(&auto, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    shutdown.trigger(ShutdownCause::Terminate);
    leadership.stopped().await;

    let log = h.emulator.requests();
    let ours: Vec<_> = log[start..]
        .iter()
        .filter(|r| r.user_agent == CONTROLLER_AGENT)
        .cloned()
        .collect();
    let kinds: std::collections::BTreeSet<String> = ours
        .iter()
        .map(|r| match rbac::attributes(r) {
            rbac::Attributes::Resource {
                verb,
                group,
                resource,
                subresource,
                ..
            } => {
                format!(
                    "{verb} {group}/{resource}{}",
                    if subresource.is_empty() {
                        String::new()
                    } else {
                        format!("/{subresource}")
                    }
                )
            }
            rbac::Attributes::NonResource { path } => format!("non-resource {path}"),
        })
        .collect();
    println!("{} controller requests; distinct: {kinds:#?}", ours.len());
    assert!(
        kinds
            .iter()
            .any(|k| k.starts_with("patch autoguardrails.io/quarantines/status"))
    );
    assert!(
        kinds.iter().any(|k| k.starts_with("get /secrets")),
        "the Slack Secret was not read"
    );

    let manifests = rbac::parse_manifests(&rbac::render_chart("{}"));
    let rules = rbac::Rbac::for_service_account(
        &manifests,
        rbac::SERVICE_ACCOUNT.0,
        rbac::SERVICE_ACCOUNT.1,
    );
    let denied = rules.check(&ours);
    assert!(
        denied.is_empty(),
        "the chart's RBAC refuses {} controller request(s):\n{}",
        denied.len(),
        denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let unused = rules.unused(&ours);
    println!("granted but unused in this scenario ({}):", unused.len());
    for (role, group, resource, verb) in &unused {
        println!("  {role}: {group}/{resource} {verb}");
    }
}
