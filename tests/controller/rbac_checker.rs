//! The RBAC checker (tests/support/rbac.rs) against the chart's rendered rules: synthetic
//! requests it must allow or refuse, and the real requests of the leader elector and a
//! controller's event recorder on the emulator, which the chart must allow.

use crate::support::rbac;

use autoguardrails::controller::leader::{LeaderElector, LeaseSettings};
use autoguardrails::metrics::Metrics;
use autoguardrails::shutdown::{Shutdown, ShutdownCause};
use kube_emulator::{Emulator, RequestRecord};
use rbac::{Attributes, Rbac, SERVICE_ACCOUNT, parse_manifests, render_chart};
use std::sync::Arc;
use std::time::Duration;

fn record(verb: &str, method: &str, path: &str, query: &str) -> RequestRecord {
    RequestRecord {
        verb: verb.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        resource: String::new(),
        user_agent: "test".to_string(),
        status: 200,
        answered_at: std::time::Instant::now(),
    }
}

fn chart_rbac(values: &str) -> Rbac {
    let manifests = parse_manifests(&render_chart(values));
    Rbac::for_service_account(&manifests, SERVICE_ACCOUNT.0, SERVICE_ACCOUNT.1)
}

const QUARANTINES: &str = "/apis/autoguardrails.io/v1alpha1";

#[test]
fn default_chart_allows_the_controller_and_nothing_else() {
    let rbac = chart_rbac("{}");
    assert!(!rbac.grants.is_empty());
    let allowed = [
        record("list", "GET", &format!("{QUARANTINES}/quarantines"), ""),
        record(
            "watch",
            "GET",
            &format!("{QUARANTINES}/quarantines"),
            "watch=true",
        ),
        record(
            "list",
            "GET",
            &format!("{QUARANTINES}/guardrailpolicies"),
            "",
        ),
        record(
            "patch",
            "PATCH",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines/q-1"),
            "fieldManager=autoguardrails",
        ),
        record(
            "patch",
            "PATCH",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines/q-1/status"),
            "",
        ),
        record(
            "patch",
            "PATCH",
            &format!("{QUARANTINES}/namespaces/team-a/guardrailpolicies/p/status"),
            "",
        ),
        record(
            "create",
            "POST",
            "/apis/events.k8s.io/v1/namespaces/team-a/events",
            "",
        ),
        record(
            "patch",
            "PATCH",
            "/apis/events.k8s.io/v1/namespaces/team-a/events/e.1",
            "",
        ),
        record(
            "get",
            "GET",
            "/api/v1/namespaces/team-a/secrets/slack-webhook",
            "",
        ),
        record(
            "get",
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/autoguardrails/leases/autoguardrails",
            "",
        ),
        record(
            "create",
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/autoguardrails/leases",
            "",
        ),
        record(
            "update",
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/autoguardrails/leases/autoguardrails",
            "",
        ),
        record("get", "GET", "/apis", ""),
        record("get", "GET", "/version", ""),
    ];
    let denied = rbac.check(&allowed);
    assert!(
        denied.is_empty(),
        "refused: {}",
        denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );

    let refused = [
        record(
            "delete",
            "DELETE",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines/q-1"),
            "",
        ),
        record(
            "deletecollection",
            "DELETE",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines"),
            "",
        ),
        record(
            "patch",
            "PATCH",
            &format!("{QUARANTINES}/namespaces/team-a/guardrailpolicies/p"),
            "",
        ),
        record(
            "create",
            "POST",
            &format!("{QUARANTINES}/namespaces/team-a/guardrailpolicies"),
            "",
        ),
        record(
            "get",
            "GET",
            "/api/v1/namespaces/team-a/secrets/database-password",
            "",
        ),
        record("list", "GET", "/api/v1/namespaces/team-a/secrets", ""),
        record("list", "GET", "/api/v1/secrets", ""),
        record(
            "get",
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/autoguardrails",
            "",
        ),
        record(
            "update",
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/autoguardrails/leases/someone-else",
            "",
        ),
        record(
            "delete",
            "DELETE",
            "/apis/coordination.k8s.io/v1/namespaces/autoguardrails/leases/autoguardrails",
            "",
        ),
        record("get", "GET", "/api/v1/namespaces/team-a", ""),
        record("create", "POST", "/api/v1/namespaces", ""),
        record("list", "GET", "/api/v1/namespaces/team-a/configmaps", ""),
        record("create", "POST", "/api/v1/namespaces/team-a/events", ""),
        record(
            "update",
            "PUT",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines/q-1"),
            "",
        ),
        record(
            "update",
            "PUT",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines/q-1/status"),
            "",
        ),
        record(
            "update",
            "PUT",
            &format!("{QUARANTINES}/namespaces/team-a/quarantines/q-1/finalizers"),
            "",
        ),
        record(
            "create",
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            "",
        ),
    ];
    let denied = rbac.check(&refused);
    assert_eq!(
        denied.len(),
        refused.len(),
        "allowed although it must not be: {:?}",
        refused
            .iter()
            .filter(|r| rbac.allows(&rbac::attributes(r)))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}

#[test]
fn namespaced_install_grants_only_the_listed_namespaces() {
    let rbac = chart_rbac(r#"{"controller":{"namespaces":["team-a"]}}"#);
    let inside = record(
        "list",
        "GET",
        &format!("{QUARANTINES}/namespaces/team-a/quarantines"),
        "",
    );
    let other = record(
        "list",
        "GET",
        &format!("{QUARANTINES}/namespaces/team-b/quarantines"),
        "",
    );
    let everywhere = record("list", "GET", &format!("{QUARANTINES}/quarantines"), "");
    assert!(rbac.check([&inside]).is_empty());
    assert_eq!(rbac.check([&other, &everywhere]).len(), 2);
    assert!(
        rbac.grants.iter().all(|g| g.namespace.is_some()),
        "a namespaced install must bind nothing cluster-wide"
    );
}

#[test]
fn a_server_side_apply_that_creates_also_needs_create() {
    let manifests = parse_manifests(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: patch-only, namespace: ns }
rules:
  - { apiGroups: [""], resources: ["configmaps"], verbs: ["patch"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: patch-only, namespace: ns }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: patch-only }
subjects: [{ kind: ServiceAccount, name: sa, namespace: ns }]
"#,
    );
    let rbac = Rbac::for_service_account(&manifests, "ns", "sa");
    let mut update = record(
        "patch",
        "PATCH",
        "/api/v1/namespaces/ns/configmaps/c",
        "fieldManager=x",
    );
    assert!(
        rbac.check([&update]).is_empty(),
        "apply to an existing object is a patch"
    );
    update.status = 201;
    let denied = rbac.check([&update]);
    assert_eq!(
        denied.len(),
        1,
        "apply that created the object needs create too"
    );
    assert!(
        rbac.check([&record(
            "patch",
            "PATCH",
            "/api/v1/namespaces/other/configmaps/c",
            ""
        )])
        .len()
            == 1
    );
    // Another subject gets nothing from this binding.
    assert!(
        Rbac::for_service_account(&manifests, "ns", "someone-else")
            .grants
            .is_empty()
    );
}

#[test]
fn attributes_follow_the_authorizer() {
    let status = rbac::attributes(&record(
        "patch",
        "PATCH",
        &format!("{QUARANTINES}/namespaces/ns/quarantines/q/status"),
        "",
    ));
    assert_eq!(
        status,
        Attributes::Resource {
            verb: "patch".into(),
            group: "autoguardrails.io".into(),
            resource: "quarantines".into(),
            subresource: "status".into(),
            namespace: "ns".into(),
            name: "q".into(),
        }
    );
    let namespace_object = rbac::attributes(&record("get", "GET", "/api/v1/namespaces/ns", ""));
    assert!(
        matches!(namespace_object, Attributes::Resource { ref resource, ref name, ref namespace, .. }
        if resource == "namespaces" && name == "ns" && namespace.is_empty())
    );
    let by_name = rbac::attributes(&record(
        "list",
        "GET",
        "/api/v1/namespaces/ns/secrets",
        "fieldSelector=metadata.name%3Dslack-webhook",
    ));
    assert!(matches!(by_name, Attributes::Resource { ref name, .. } if name == "slack-webhook"));
}

#[tokio::test]
async fn leader_election_and_event_recording_on_the_emulator_are_allowed() {
    use autoguardrails::controller::events::{EventRecorder, Occurrence, Severity};
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "autoguardrails"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let start = emulator.requests().len();

    let metrics = Arc::new(Metrics::new().unwrap());
    let shutdown = Shutdown::new();
    let settings = LeaseSettings {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaseSettings::new("autoguardrails", "autoguardrails", "pod-a")
    };
    let leadership = LeaderElector::new(client.clone(), settings, metrics)
        .unwrap()
        .start(shutdown.clone());
    let mut leading = leadership.subscribe();
    tokio::time::timeout(Duration::from_secs(20), leading.wait_for(|v| *v))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // a few renewals

    let recorder = EventRecorder::new(client.clone(), "autoguardrails", None);
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("autoguardrails.io/v1alpha1".into()),
        kind: Some("Quarantine".into()),
        name: Some("q-1".into()),
        namespace: Some("autoguardrails".into()),
        uid: Some("00000000-0000-4000-8000-000000000001".into()),
        ..Default::default()
    };
    let event = Occurrence {
        severity: Severity::Normal,
        reason: "Approved",
        note: "approved by test",
        action: "Approve",
    };
    recorder.publish(&reference, &event).await.unwrap();
    recorder.publish(&reference, &event).await.unwrap(); // the series patch

    shutdown.trigger(ShutdownCause::Terminate);
    leadership.stopped().await;

    let log = emulator.requests();
    let controller_requests = &log[start..];
    // Read back (after the controller's requests were taken): one Event, counted twice.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client.clone(), "autoguardrails");
    let listed = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "a repeat continues the series: {listed:?}");
    assert_eq!(listed[0].series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(listed[0].reason.as_deref(), Some("Approved"));
    assert_eq!(recorder.remembered(), 1);
    let verbs: std::collections::BTreeSet<String> = controller_requests
        .iter()
        .map(|r| format!("{} {}", r.verb, r.resource))
        .collect();
    println!("controller-side requests: {verbs:?}");
    assert!(
        verbs.contains("update leases")
            && verbs.contains("create events")
            && verbs.contains("patch events")
    );
    let rbac = chart_rbac("{}");
    let denied = rbac.check(controller_requests);
    assert!(
        denied.is_empty(),
        "the chart's RBAC refuses:\n{}",
        denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let unused = rbac.unused(controller_requests);
    println!("granted but not used by this scenario ({}):", unused.len());
    for (role, group, resource, verb) in &unused {
        println!("  {role}: {group}/{resource} {verb}");
    }
}
