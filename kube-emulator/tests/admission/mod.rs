//! Admission webhooks (`admissionregistration.k8s.io/v1`) with the real `kube` client against the
//! emulator and real HTTPS webhooks on loopback: rules, selectors, matchConditions, failure
//! policy, timeouts, side effects and dry run, caBundle verification, the AdmissionReview request
//! and response, mutating before validating.

use crate::common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_emulator::Emulator;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A webhook entry calling `url` for `operations` on configmaps.
fn entry(name: &str, url: &str, operations: &[&str]) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle(TEST_CA)},
        "rules": [{"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    })
}

async fn validating(client: &kube::Client, name: &str, webhooks: Vec<Value>) {
    let configuration: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": webhooks,
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
}

async fn mutating(client: &kube::Client, name: &str, webhooks: Vec<Value>) {
    let configuration: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": webhooks,
    }))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn refuse(message: &'static str) -> Answer {
    Arc::new(move |_| {
        WebhookAnswer::Respond(
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": message}}),
        )
    })
}

fn allow() -> Answer {
    Arc::new(|_| WebhookAnswer::Respond(json!({"allowed": true})))
}

fn api_error(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validating_refusal_reaches_the_client_with_the_webhook_message_and_nothing_is_stored() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let webhook = TestWebhook::start(refuse("configmaps are closed today")).await;
    validating(
        &client,
        "guard",
        vec![entry(
            "guard.example.io",
            &format!("{}/validate", webhook.url),
            &["CREATE"],
        )],
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let error = api_error(
        configmaps
            .create(&PostParams::default(), &config_map("c1", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 403);
    assert_eq!(error.reason, "Forbidden");
    assert_eq!(
        error.message,
        "admission webhook \"guard.example.io\" denied the request: configmaps are closed today"
    );
    assert!(configmaps.get_opt("c1").await.unwrap().is_none());
    let reviews = webhook.reviews();
    assert_eq!(reviews.len(), 1);
    let (path, review) = &reviews[0];
    assert!(path.starts_with("/validate?timeout=5s"), "{path}");
    let request = &review["request"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["name"], "c1");
    assert_eq!(
        request["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        request["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(request["userInfo"]["username"], "kube-emulator-admin");
    assert!(
        request["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters"))
    );
    assert_eq!(request["object"]["data"]["k"], "v");
    assert_eq!(request["oldObject"], Value::Null);
    assert_eq!(request["dryRun"], false);
    assert!(!request["uid"].as_str().unwrap().is_empty());
    // Every create is sent again (no caching of answers).
    assert!(
        configmaps
            .create(&PostParams::default(), &config_map("c2", json!({})))
            .await
            .is_err()
    );
    assert_eq!(webhook.reviews().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_patches_apply_before_validating_webhooks_see_the_object() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let patch = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        serde_json::to_vec(
            &json!([{"op": "add", "path": "/metadata/labels", "value": {"stamped": "yes"}}]),
        )
        .unwrap(),
    );
    let mutator = TestWebhook::start(Arc::new(move |_| {
        WebhookAnswer::Respond(json!({"allowed": true, "patchType": "JSONPatch", "patch": patch, "warnings": ["stamped by the mutator"]}))
    }))
    .await;
    let validator = TestWebhook::start(Arc::new(|review: &Value| {
        let stamped = review["request"]["object"]["metadata"]["labels"]["stamped"] == "yes";
        WebhookAnswer::Respond(json!({"allowed": stamped, "status": {"message": "not stamped"}}))
    }))
    .await;
    // The validating configuration's name sorts first: order is by kind, then name.
    validating(
        &client,
        "a-validate",
        vec![entry("v.example.io", &validator.url, &["CREATE", "UPDATE"])],
    )
    .await;
    mutating(
        &client,
        "z-mutate",
        vec![entry("m.example.io", &mutator.url, &["CREATE"])],
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = configmaps
        .create(&PostParams::default(), &config_map("m1", json!({})))
        .await
        .unwrap();
    assert_eq!(created.metadata.labels.unwrap()["stamped"], "yes");
    assert_eq!(mutator.reviews().len(), 1);
    assert_eq!(validator.reviews().len(), 1);
    // An update removing the label is not mutated (the rule says CREATE) and is refused, with the
    // API server's default code 400 when the status carries none.
    let error = api_error(
        configmaps
            .patch(
                "m1",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"stamped": null}}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 400);
    assert_eq!(
        error.message,
        "admission webhook \"v.example.io\" denied the request: not stamped"
    );
    let stored = configmaps.get("m1").await.unwrap();
    assert_eq!(stored.metadata.labels.unwrap()["stamped"], "yes");
    let (_, update) = validator.reviews().pop().unwrap();
    assert_eq!(update["request"]["operation"], "UPDATE");
    assert_eq!(
        update["request"]["oldObject"]["metadata"]["labels"]["stamped"],
        "yes"
    );
    assert_eq!(update["request"]["object"]["metadata"]["labels"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_conditions_select_writes_by_object_old_object_and_request() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let webhook = TestWebhook::start(refuse("approval annotations are guarded")).await;
    let mut guarded = entry(
        "annotations.example.io",
        &webhook.url,
        &["CREATE", "UPDATE"],
    );
    guarded["matchConditions"] = json!([
        {"name": "annotation-changed", "expression":
            "(has(object.metadata.annotations) && 'example.io/approve' in object.metadata.annotations ? object.metadata.annotations['example.io/approve'] : '') != (oldObject != null && has(oldObject.metadata.annotations) && 'example.io/approve' in oldObject.metadata.annotations ? oldObject.metadata.annotations['example.io/approve'] : '')"},
        {"name": "not-the-admin-group-test", "expression": "request.userInfo.username != 'nobody'"},
    ]);
    validating(&client, "guard", vec![guarded]).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    configmaps
        .create(&PostParams::default(), &config_map("mc", json!({})))
        .await
        .unwrap();
    configmaps
        .patch(
            "mc",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await
        .unwrap();
    assert!(
        webhook.reviews().is_empty(),
        "writes not touching the annotation skip the webhook"
    );
    let error = api_error(
        configmaps
            .patch(
                "mc",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"example.io/approve": "yes"}}})),
            )
            .await
            .unwrap_err(),
    );
    assert!(error.message.contains("approval annotations are guarded"));
    assert_eq!(webhook.reviews().len(), 1);

    // A condition that cannot be evaluated is a failure: Fail refuses, Ignore skips the webhook.
    let broken = TestWebhook::start(refuse("never")).await;
    let mut failing = entry("broken.example.io", &broken.url, &["CREATE"]);
    failing["matchConditions"] =
        json!([{"name": "bad", "expression": "object.metadata.nosuchfield == 1"}]);
    let mut ignoring = failing.clone();
    ignoring["name"] = json!("broken-ignored.example.io");
    ignoring["failurePolicy"] = json!("Ignore");
    validating(&client, "broken-ignored", vec![ignoring]).await;
    configmaps
        .create(
            &PostParams::default(),
            &config_map("ok-when-ignored", json!({})),
        )
        .await
        .unwrap();
    validating(&client, "broken", vec![failing]).await;
    let error = api_error(
        configmaps
            .create(&PostParams::default(), &config_map("mc2", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 500);
    assert!(
        error
            .message
            .contains("failed calling webhook \"broken.example.io\""),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("match condition \"bad\""),
        "{}",
        error.message
    );
    assert!(broken.reviews().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_scope_and_selectors_choose_the_webhook() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let webhook = TestWebhook::start(refuse("selected")).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        ("team-a", json!({"team": "a"})),
        ("team-b", json!({"team": "b"})),
    ] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let mut selected = entry("selected.example.io", &webhook.url, &["CREATE"]);
    selected["namespaceSelector"] =
        json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]});
    selected["objectSelector"] = json!({"matchLabels": {"guarded": "true"}});
    let mut cluster_only = entry("cluster.example.io", &webhook.url, &["CREATE"]);
    cluster_only["rules"][0]["scope"] = json!("Cluster");
    cluster_only["rules"][0]["resources"] = json!(["*"]);
    cluster_only["rules"][0]["apiGroups"] = json!(["rbac.authorization.k8s.io"]);
    validating(&client, "selectors", vec![selected, cluster_only]).await;
    let in_a: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let in_b: Api<ConfigMap> = Api::namespaced(client.clone(), "team-b");
    // Wrong namespace, or the object label missing: not called.
    in_b.create(
        &PostParams::default(),
        &config_map("x", json!({"guarded": "true"})),
    )
    .await
    .unwrap();
    in_a.create(&PostParams::default(), &config_map("y", json!({})))
        .await
        .unwrap();
    assert!(webhook.reviews().is_empty());
    let error = api_error(
        in_a.create(
            &PostParams::default(),
            &config_map("z", json!({"guarded": "true"})),
        )
        .await
        .unwrap_err(),
    );
    assert!(error.message.contains("\"selected.example.io\" denied"));
    // Scope Cluster: a ClusterRole is refused, a (namespaced) Role is not.
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let role = json!({"metadata": {"name": "r"}, "rules": []});
    let error = api_error(
        cluster_roles
            .create(
                &PostParams::default(),
                &serde_json::from_value(role.clone()).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert!(error.message.contains("\"cluster.example.io\" denied"));
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), "team-a");
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(role).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(webhook.reviews().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policy_timeout_and_ca_bundle_verification() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // A webhook nobody listens on: Fail refuses with the call error, Ignore lets the write through.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", listener.local_addr().unwrap())
    };
    let mut ignored = entry("down-ignored.example.io", &closed, &["CREATE"]);
    ignored["failurePolicy"] = json!("Ignore");
    validating(&client, "down-ignored", vec![ignored]).await;
    configmaps
        .create(&PostParams::default(), &config_map("through", json!({})))
        .await
        .unwrap();
    let mut failing = entry("down.example.io", &closed, &["DELETE"]);
    failing["failurePolicy"] = json!("Fail");
    validating(&client, "down", vec![failing]).await;
    let error = api_error(
        configmaps
            .delete("through", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 500);
    assert!(error.message.starts_with("Internal error occurred: failed calling webhook \"down.example.io\": failed to call webhook: Post"), "{}", error.message);
    assert!(
        configmaps.get_opt("through").await.unwrap().is_some(),
        "a refused delete deletes nothing"
    );
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete("down", &DeleteParams::default())
        .await
        .unwrap();

    // A certificate the caBundle does not vouch for is a failed call, not a skipped check.
    let webhook = TestWebhook::start(allow()).await;
    let mut untrusted = entry("untrusted.example.io", &webhook.url, &["UPDATE"]);
    untrusted["clientConfig"]["caBundle"] = json!(ca_bundle(OTHER_CA));
    validating(&client, "untrusted", vec![untrusted]).await;
    let error = api_error(
        configmaps
            .patch(
                "through",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": "x"}})),
            )
            .await
            .unwrap_err(),
    );
    assert!(error.message.contains("tls:"), "{}", error.message);
    assert!(
        webhook.reviews().is_empty(),
        "no review is sent over an unverified connection"
    );
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete("untrusted", &DeleteParams::default())
        .await
        .unwrap();

    // A webhook answering after timeoutSeconds is a failed call.
    let slow =
        TestWebhook::start(Arc::new(|_| WebhookAnswer::Stall(Duration::from_secs(30)))).await;
    let mut stalled = entry("slow.example.io", &slow.url, &["UPDATE"]);
    stalled["timeoutSeconds"] = json!(1);
    validating(&client, "slow", vec![stalled]).await;
    let error = api_error(
        configmaps
            .patch(
                "through",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": "y"}})),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        error.message.contains("context deadline exceeded"),
        "{}",
        error.message
    );
    assert_eq!(slow.reviews().len(), 1);
    assert_eq!(
        configmaps.get("through").await.unwrap().data.unwrap()["k"],
        "v"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_effects_decide_dry_run_and_bad_answers_are_failures() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let webhook = TestWebhook::start(allow()).await;
    validating(
        &client,
        "dry",
        vec![entry("dry.example.io", &webhook.url, &["CREATE"])],
    )
    .await;
    configmaps
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &config_map("d1", json!({})),
        )
        .await
        .unwrap();
    let (_, review) = webhook.reviews().pop().unwrap();
    assert_eq!(review["request"]["dryRun"], true);
    assert!(configmaps.get_opt("d1").await.unwrap().is_none());
    // sideEffects Some: a dry-run request is refused without calling it.
    let effects = TestWebhook::start(allow()).await;
    let mut with_effects = entry("effects.example.io", &effects.url, &["CREATE"]);
    with_effects["sideEffects"] = json!("Some");
    validating(&client, "effects", vec![with_effects]).await;
    let error = api_error(
        configmaps
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &config_map("d2", json!({})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        error.message,
        "admission webhook \"effects.example.io\" does not support dry run"
    );
    assert!(effects.reviews().is_empty());
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete("effects", &DeleteParams::default())
        .await
        .unwrap();
    // An answer for another request uid, and a validating webhook answering a patch: failures.
    let wrong = TestWebhook::start(Arc::new(|_| {
        WebhookAnswer::Raw(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "someone-else", "allowed": true}}))
    }))
    .await;
    validating(
        &client,
        "wrong",
        vec![entry("wrong.example.io", &wrong.url, &["CREATE"])],
    )
    .await;
    let error = api_error(
        configmaps
            .create(&PostParams::default(), &config_map("d3", json!({})))
            .await
            .unwrap_err(),
    );
    assert!(
        error.message.contains("expected response.uid"),
        "{}",
        error.message
    );
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete("wrong", &DeleteParams::default())
        .await
        .unwrap();
    let patcher = TestWebhook::start(Arc::new(|_| {
        WebhookAnswer::Respond(json!({"allowed": true, "patchType": "JSONPatch", "patch": "W10="}))
    }))
    .await;
    validating(
        &client,
        "patcher",
        vec![entry("patcher.example.io", &patcher.url, &["CREATE"])],
    )
    .await;
    let error = api_error(
        configmaps
            .create(&PostParams::default(), &config_map("d4", json!({})))
            .await
            .unwrap_err(),
    );
    assert!(
        error
            .message
            .contains("validating webhooks may not return patches"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_and_updates_are_admitted_with_the_operation_they_perform() {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let webhook = TestWebhook::start(Arc::new(|review: &Value| {
        let refused = review["request"]["object"]["data"]["k"] == "forbidden";
        WebhookAnswer::Respond(
            json!({"allowed": !refused, "status": {"message": "forbidden value"}}),
        )
    }))
    .await;
    validating(
        &client,
        "apply",
        vec![entry(
            "apply.example.io",
            &webhook.url,
            &["CREATE", "UPDATE"],
        )],
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let apply = PatchParams::apply("tester");
    let manifest = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": value}});
    configmaps
        .patch("applied", &apply, &Patch::Apply(manifest("one")))
        .await
        .unwrap();
    let error = api_error(
        configmaps
            .patch("applied", &apply, &Patch::Apply(manifest("forbidden")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        error.message,
        "admission webhook \"apply.example.io\" denied the request: forbidden value"
    );
    let mut replaced = configmaps.get("applied").await.unwrap();
    replaced.data = Some([("k".to_string(), "forbidden".to_string())].into());
    assert!(
        configmaps
            .replace("applied", &PostParams::default(), &replaced)
            .await
            .is_err()
    );
    assert_eq!(
        configmaps.get("applied").await.unwrap().data.unwrap()["k"],
        "one"
    );
    let operations: Vec<String> = webhook
        .reviews()
        .iter()
        .map(|(_, review)| review["request"]["operation"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(operations, ["CREATE", "UPDATE", "UPDATE"]);
}
