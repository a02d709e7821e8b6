//! Conformance tests with the real `kube` 5 client and `kube-runtime` against the emulator.

mod admission;
mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, Namespace, ObjectReference, Secret,
};
use k8s_openapi::api::events::v1::Event as EventsV1Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, finalizer, reflector, watcher};
use kube::{Resource, ResourceExt};
use kube_emulator::Emulator;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 exchange (Connection: close) returning status, headers and body.
async fn raw(
    emulator: &Emulator,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(emulator.address())
        .await
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
    {
        request.push_str(&format!(
            "Authorization: Bearer {}\r\n",
            kube_emulator::auth::ADMIN_TOKEN
        ));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

async fn setup() -> (Emulator, kube::Client) {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    (emulator, client)
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn discovery_lists_builtins_and_crd_kinds_and_forgets_deleted_crds() {
    let (emulator, client) = setup().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    install_widget_crd(&client).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            kinds.push(format!("{}/{}", resource.group, resource.kind));
            if resource.kind == "Widget" {
                assert!(
                    capabilities
                        .subresources
                        .iter()
                        .any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status"),
                    "{:?}",
                    capabilities.subresources
                );
                assert_eq!(capabilities.scope, kube::discovery::Scope::Namespaced);
            }
        }
    }
    for expected in [
        "/Namespace",
        "/Secret",
        "/ConfigMap",
        "/Event",
        "events.k8s.io/Event",
        "coordination.k8s.io/Lease",
        "apiextensions.k8s.io/CustomResourceDefinition",
        "autoguardrails.io/Widget",
    ] {
        assert!(
            kinds.contains(&expected.to_string()),
            "{expected} missing from {kinds:?}"
        );
    }
    let (_, _, body) = raw(&emulator, "GET", "/apis/autoguardrails.io/v1", &[], "").await;
    let list: Value = serde_json::from_str(&body).unwrap();
    let widgets = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "widgets")
        .unwrap();
    assert_eq!(widgets["shortNames"], json!(["wdg"]));
    assert_eq!(widgets["categories"], json!(["all"]));
    assert_eq!(widgets["singularName"], "widget");
    assert_eq!(widgets["kind"], "Widget");
    assert!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "widgets/status")
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.autoguardrails.io").await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    crds.delete("widgets.autoguardrails.io", &DeleteParams::default())
        .await
        .unwrap();
    let (status, _, _) = raw(&emulator, "GET", "/apis/autoguardrails.io/v1", &[], "").await;
    assert_eq!(status, 404);
    let (status, _, _) = raw(
        &emulator,
        "GET",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn object_metadata_and_noop_writes() {
    let (_emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = maps
        .create(&PostParams::default(), &config_map("alpha", &[("a", "1")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.uid.as_ref().unwrap().len(), 36);
    assert!(meta.creation_timestamp.is_some());
    let first_version: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".to_string());
    let generated = maps
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
    let second_version: u64 = generated.resource_version().unwrap().parse().unwrap();
    assert!(second_version > first_version, "one global counter");
    // A write that changes nothing bumps nothing.
    let unchanged = maps
        .replace("alpha", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(unchanged.resource_version(), created.resource_version());
    let patched = maps
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.resource_version(), created.resource_version());
    // A change bumps it.
    let changed = maps
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    assert!(changed.resource_version().unwrap().parse::<u64>().unwrap() > second_version);
    assert_eq!(changed.data.unwrap().len(), 2);
    // Namespace from the URL; a different namespace in the body is refused.
    let mut elsewhere = config_map("beta", &[]);
    elsewhere.metadata.namespace = Some("kube-system".to_string());
    assert_eq!(
        error_code(
            &maps
                .create(&PostParams::default(), &elsewhere)
                .await
                .unwrap_err()
        ),
        400
    );
    // dryRun=All validates and answers but stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = maps.create(&dry, &config_map("dry", &[])).await.unwrap();
    assert_eq!(answered.name_any(), "dry");
    assert!(maps.get_opt("dry").await.unwrap().is_none());
    // Objects in a missing namespace are refused with NotFound.
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(
        error_code(
            &missing
                .create(&PostParams::default(), &config_map("x", &[]))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn errors_are_status_objects_with_codes_and_reasons() {
    let (emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let not_found = api_error(maps.get("missing").await.unwrap_err());
    assert_eq!(
        (not_found.code, not_found.reason.as_str()),
        (404, "NotFound")
    );
    assert_eq!(not_found.message, "configmaps \"missing\" not found");
    maps.create(&PostParams::default(), &config_map("one", &[]))
        .await
        .unwrap();
    let exists = api_error(
        maps.create(&PostParams::default(), &config_map("one", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (exists.code, exists.reason.as_str()),
        (409, "AlreadyExists")
    );
    let mut stale = maps.get("one").await.unwrap();
    maps.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "y"}})),
    )
    .await
    .unwrap();
    stale.data = Some(BTreeMap::from([("z".to_string(), "w".to_string())]));
    let conflict = api_error(
        maps.replace("one", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    let stale_patch =
        json!({"metadata": {"resourceVersion": stale.resource_version()}, "data": {"q": "r"}});
    assert_eq!(
        error_code(
            &maps
                .patch("one", &PatchParams::default(), &Patch::Merge(stale_patch))
                .await
                .unwrap_err()
        ),
        409
    );
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let invalid = api_error(
        widgets
            .create(&PostParams::default(), &widget("big", 50))
            .await
            .unwrap_err(),
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    let causes = invalid.details.unwrap().causes;
    assert!(
        causes
            .iter()
            .any(|c| c.field == "spec" && c.message.contains("size must not exceed limit")),
        "{causes:?}"
    );
    let bad = api_error(
        maps.list(&ListParams::default().labels("a in ("))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));
    widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let (status, _, body) = raw(
        &emulator,
        "PATCH",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets/w",
        &[("Content-Type", "application/strategic-merge-patch+json")],
        "{}",
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "UnsupportedMediaType"
    );
    let (status, _, body) = raw(&emulator, "POST", "/version", &[], "").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "MethodNotAllowed"
    );
    let (status, _, _) = raw(
        &emulator,
        "PUT",
        "/api/v1/namespaces/default/configmaps",
        &[("Content-Type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(status, 405);
    let gone = api_error(
        maps.list(
            &ListParams::default()
                .at("1")
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn generation_and_status_subresource_semantics() {
    let (_emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let created = widgets
        .create(&PostParams::default(), &widget("gen", 1))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = widgets
        .patch(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes never bump generation"
    );
    let status_on_main = widgets
        .patch(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Sneaky"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        status_on_main.status, None,
        "status is ignored on the main resource"
    );
    assert_eq!(
        status_on_main.resource_version(),
        labelled.resource_version(),
        "ignored change is a no-op"
    );
    let with_status = widgets
        .patch_status("gen", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}, "metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(
        with_status.status.as_ref().unwrap().phase.as_deref(),
        Some("Ready")
    );
    assert_eq!(with_status.spec.size, 1, "spec is ignored on /status");
    assert!(
        !with_status.labels().contains_key("x"),
        "labels are ignored on /status"
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status changes don't bump generation"
    );
    let resized = widgets
        .patch(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(resized.metadata.generation, Some(2));
    assert_eq!(
        resized.status.unwrap().phase.as_deref(),
        Some("Ready"),
        "status kept from storage"
    );
    let mut replaced = widgets.get_status("gen").await.unwrap();
    replaced.status = Some(WidgetStatus {
        phase: Some("Done".into()),
        observed_generation: Some(2),
    });
    let replaced = widgets
        .replace_status("gen", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(replaced.status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn schema_defaulting_pruning_validation_and_cel() {
    let (emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    // Defaults (limit) and pruning of unknown fields.
    let raw_widget = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "d", "namespace": "default"}, "spec": {"size": 3, "bogus": true}, "extra": 1});
    let (status, head, body) = raw(
        &emulator,
        "POST",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets",
        &[("Content-Type", "application/json")],
        &raw_widget.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        head.to_lowercase()
            .contains("warning: 299 - \"unknown field \\\"extra\\\"\""),
        "{head}"
    );
    let stored: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored["spec"]["limit"], 10, "default applied");
    assert!(
        stored["spec"].get("bogus").is_none() && stored.get("extra").is_none(),
        "unknown fields pruned"
    );
    // Strict rejects unknown fields.
    let strict = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": 3, "bogus": true}});
    let (status, _, body) = raw(
        &emulator,
        "POST",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets?fieldValidation=Strict",
        &[("Content-Type", "application/json")],
        &strict.to_string(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field \\\"spec.bogus\\\""), "{body}");
    // Types and required.
    let wrong = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "t"}, "spec": {"size": "big"}});
    let (status, _, body) = raw(
        &emulator,
        "POST",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets",
        &[("Content-Type", "application/json")],
        &wrong.to_string(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let status_value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_value["details"]["causes"][0]["field"], "spec.size");
    let missing = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "t"}, "spec": {}});
    let (status, _, body) = raw(
        &emulator,
        "POST",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets",
        &[("Content-Type", "application/json")],
        &missing.to_string(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("spec.size: Required value"), "{body}");
    // CEL: list rule with matches/all.
    let mut accounts = widget("acc", 1);
    accounts.spec.accounts = vec!["123456789012".into(), "nope".into()];
    let error = api_error(
        widgets
            .create(&PostParams::default(), &accounts)
            .await
            .unwrap_err(),
    );
    assert!(
        error.message.contains("accounts must be 12 digits"),
        "{}",
        error.message
    );
    accounts.spec.accounts = vec!["123456789012".into()];
    widgets
        .create(&PostParams::default(), &accounts)
        .await
        .unwrap();
    // CEL on update too.
    let error = api_error(
        widgets
            .patch(
                "acc",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 11}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 422);
}

#[tokio::test]
async fn patch_flavours_and_server_side_apply() {
    let (_emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("p", 1))
        .await
        .unwrap();
    let patched = widgets
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/size", "value": 4}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.size, 4);
    let failed = widgets
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "test", "path": "/spec/size", "value": 5}]))
                    .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&failed), 422);
    // Server-side apply: create, own, conflict, force, shrink.
    let applied = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {"size": 2, "color": "red"}});
    let created = widgets
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.spec.size, 2);
    let managers: Vec<String> = created
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec!["alice".to_string()]);
    let rival = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {"size": 3}});
    let conflict = api_error(
        widgets
            .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&rival))
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("conflict with \"alice\""),
        "{}",
        conflict.message
    );
    let forced = widgets
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 3);
    assert_eq!(forced.spec.color.as_deref(), Some("red"));
    let shrink = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {}});
    let shrunk = widgets
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&shrink))
        .await
        .unwrap();
    assert_eq!(
        shrunk.spec.color, None,
        "alice stopped applying color, nobody else owns it: removed"
    );
    assert_eq!(shrunk.spec.size, 3, "bob still owns size");
    let without_manager = widgets
        .patch("ssa", &PatchParams::default(), &Patch::Apply(&shrink))
        .await
        .unwrap_err();
    assert_eq!(error_code(&without_manager), 422);
    // Status apply through the subresource.
    let status = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "status": {"phase": "Applied"}});
    let with_status = widgets
        .patch_status(
            "ssa",
            &PatchParams::apply("controller"),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(
        with_status.status.unwrap().phase.as_deref(),
        Some("Applied")
    );
    let entry = with_status
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("controller"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
}

#[tokio::test]
async fn finalizers_keep_objects_until_removed() {
    let (_emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let mut held = widget("held", 1);
    held.metadata.finalizers = Some(vec!["test.io/hold".to_string()]);
    widgets.create(&PostParams::default(), &held).await.unwrap();
    let version = widgets
        .get("held")
        .await
        .unwrap()
        .resource_version()
        .unwrap();
    let mut stream = widgets
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();
    let response = widgets
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let pending = response
        .left()
        .expect("object returned while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        widgets
            .get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    widgets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&widgets.get("held").await.unwrap_err()), 404);
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(2), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match event {
            WatchEvent::Modified(_) => seen.push("MODIFIED"),
            WatchEvent::Deleted(_) => {
                seen.push("DELETED");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(seen, vec!["MODIFIED", "DELETED"]);
    // Preconditions.
    widgets
        .create(&PostParams::default(), &widget("pre", 1))
        .await
        .unwrap();
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        error_code(&widgets.delete("pre", &wrong).await.unwrap_err()),
        409
    );
}

fn owned_by(owner: &ConfigMap) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        ..OwnerReference::default()
    }
}

#[tokio::test]
async fn owner_references_garbage_collection() {
    let (_emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    // Background: plain dependents vanish, finalized ones get a deletionTimestamp.
    let owner = maps
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    let mut plain = widget("plain", 1);
    plain.metadata.owner_references = Some(vec![owned_by(&owner)]);
    widgets
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    let mut finalized = widget("finalized", 1);
    finalized.metadata.owner_references = Some(vec![owned_by(&owner)]);
    finalized.metadata.finalizers = Some(vec!["test.io/hold".into()]);
    widgets
        .create(&PostParams::default(), &finalized)
        .await
        .unwrap();
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(error_code(&widgets.get("plain").await.unwrap_err()), 404);
    assert!(
        widgets
            .get("finalized")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    widgets
        .patch(
            "finalized",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(
        error_code(&widgets.get("finalized").await.unwrap_err()),
        404
    );
    // Orphan: dependents stay, without the reference.
    let owner = maps
        .create(&PostParams::default(), &config_map("owner2", &[]))
        .await
        .unwrap();
    let mut orphan = widget("orphan", 1);
    orphan.metadata.owner_references = Some(vec![owned_by(&owner)]);
    widgets
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    maps.delete("owner2", &DeleteParams::orphan())
        .await
        .unwrap();
    let kept = widgets.get("orphan").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    // Foreground: the owner waits for its dependents.
    let owner = maps
        .create(&PostParams::default(), &config_map("owner3", &[]))
        .await
        .unwrap();
    let mut child = widget("child", 1);
    child.metadata.owner_references = Some(vec![owned_by(&owner)]);
    child.metadata.finalizers = Some(vec!["test.io/hold".into()]);
    widgets
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    maps.delete("owner3", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = maps.get("owner3").await.unwrap();
    assert!(
        waiting
            .finalizers()
            .contains(&"foregroundDeletion".to_string())
    );
    widgets
        .patch(
            "child",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&maps.get("owner3").await.unwrap_err()), 404);
}

#[tokio::test]
async fn lists_paginate_and_select() {
    let (emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some("other".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    for index in 0..7 {
        let mut map = config_map(&format!("m{index}"), &[]);
        map.metadata.labels = Some(BTreeMap::from([(
            "tier".to_string(),
            if index % 2 == 0 { "even" } else { "odd" }.to_string(),
        )]));
        maps.create(&PostParams::default(), &map).await.unwrap();
    }
    other
        .create(&PostParams::default(), &config_map("elsewhere", &[]))
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = maps.list(&params).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|m| m.name_any()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    // A continue token older than the retained history expires with 410.
    let first_page = maps.list(&ListParams::default().limit(2)).await.unwrap();
    maps.create(&PostParams::default(), &config_map("later", &[]))
        .await
        .unwrap();
    emulator.faults().compact();
    let expired = maps
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(first_page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&expired), 410);
    maps.delete("later", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(names.len(), 7);
    let even = maps
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
    assert_eq!(
        maps.list(&ListParams::default().labels("tier in (odd),tier!=even"))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert_eq!(
        maps.list(&ListParams::default().labels("tier notin (odd)"))
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    assert_eq!(
        maps.list(&ListParams::default().labels("!tier"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    assert_eq!(
        maps.list(&ListParams::default().labels("tier"))
            .await
            .unwrap()
            .items
            .len(),
        7
    );
    assert_eq!(
        maps.list(&ListParams::default().fields("metadata.name=m3"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    let everywhere = all
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .unwrap();
    assert_eq!(everywhere.items.len(), 1);
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        8
    );
    let version = emulator.resource_version().to_string();
    let not_older = maps
        .list(
            &ListParams::default()
                .at(&version)
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(
        not_older.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    let exact = maps
        .list(
            &ListParams::default()
                .at(&version)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(exact.items.len(), 7);
    // deletecollection with a selector.
    maps.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=odd"),
    )
    .await
    .unwrap();
    assert_eq!(
        maps.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    // Deleting a namespace deletes its content.
    namespaces
        .delete("other", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(error_code(&other.get("elsewhere").await.unwrap_err()), 404);
    assert_eq!(error_code(&namespaces.get("other").await.unwrap_err()), 404);
}

#[tokio::test]
async fn watches_replay_filter_bookmark_time_out_and_expire() {
    let (emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = emulator.resource_version().to_string();
    maps.create(&PostParams::default(), &config_map("w1", &[]))
        .await
        .unwrap();
    let mut labelled = config_map("w2", &[]);
    labelled.metadata.labels = Some(BTreeMap::from([("pick".to_string(), "me".to_string())]));
    maps.create(&PostParams::default(), &labelled)
        .await
        .unwrap();
    // Replay from an old rv, filtered by label, with a timeout.
    let mut stream = maps
        .watch(
            &WatchParams::default()
                .labels("pick=me")
                .timeout(1)
                .disable_bookmarks(),
            &start,
        )
        .await
        .unwrap()
        .boxed();
    let mut names = Vec::new();
    while let Some(event) = stream.try_next().await.unwrap() {
        if let WatchEvent::Added(map) = event {
            names.push(map.name_any());
        }
    }
    assert_eq!(
        names,
        vec!["w2".to_string()],
        "the stream ends after timeoutSeconds"
    );
    // Objects leaving the selection are DELETED for that watcher.
    let now = emulator.resource_version().to_string();
    let mut stream = maps
        .watch(
            &WatchParams::default().labels("pick=me").disable_bookmarks(),
            &now,
        )
        .await
        .unwrap()
        .boxed();
    maps.patch(
        "w2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": null}}})),
    )
    .await
    .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(2), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(event, WatchEvent::Deleted(_)), "{event:?}");
    // Periodic bookmarks.
    let mut stream = maps
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    let bookmark = loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Bookmark(bookmark) => break bookmark,
            _ => continue,
        }
    };
    assert!(!bookmark.metadata.resource_version.is_empty());
    // Streaming list: initial ADDED events then the initial-events-end bookmark.
    let mut stream = maps
        .watch(&WatchParams::default().initial_events(), "")
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(bookmark) => {
                assert_eq!(
                    bookmark
                        .metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 2);
    // Cluster-wide view sees other namespaces; a namespaced view doesn't.
    let all: Api<ConfigMap> = Api::all(client.clone());
    let now = emulator.resource_version().to_string();
    let mut cluster = all
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    let mut scoped = maps
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &now)
        .await
        .unwrap()
        .boxed();
    let system: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    system
        .create(&PostParams::default(), &config_map("sys", &[]))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(2), cluster.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(event, WatchEvent::Added(ref m) if m.name_any() == "sys"));
    assert!(
        scoped.try_next().await.unwrap().is_none(),
        "namespaced watch sees nothing from kube-system"
    );
    // 410 after compaction.
    emulator.faults().compact();
    let mut expired = maps
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match expired.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(error) => assert_eq!(error.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn many_concurrent_watchers_get_every_event() {
    let (emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let now = emulator.resource_version().to_string();
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(
            maps.watch(&WatchParams::default(), &now)
                .await
                .unwrap()
                .boxed(),
        );
    }
    for index in 0..10 {
        maps.create(
            &PostParams::default(),
            &config_map(&format!("c{index}"), &[]),
        )
        .await
        .unwrap();
    }
    for mut stream in streams {
        for index in 0..10 {
            let event = tokio::time::timeout(Duration::from_secs(2), stream.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(
                matches!(event, WatchEvent::Added(ref m) if m.name_any() == format!("c{index}"))
            );
        }
    }
}

#[tokio::test]
async fn runtime_watcher_recovers_from_dropped_watches_410_and_errors() {
    for streaming in [false, true] {
        let (emulator, client) = setup().await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (reader, writer) = reflector::store::<ConfigMap>();
        let mut config = watcher::Config::default();
        if streaming {
            config = config.streaming_lists();
        }
        let stream = reflector(writer, watcher(maps.clone(), config))
            .default_backoff()
            .touched_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while stream.next().await.is_some() {}
        });
        maps.create(&PostParams::default(), &config_map("before", &[]))
            .await
            .unwrap();
        let count = |expected: usize| {
            let reader = reader.clone();
            async move { reader.state().len() == expected }
        };
        eventually("initial object", || count(1)).await;
        // Dropped watches.
        emulator.faults().close_watches();
        maps.create(&PostParams::default(), &config_map("after-close", &[]))
            .await
            .unwrap();
        eventually("object created while rewatching", || count(2)).await;
        // 410: history compacted while the watch is down.
        emulator.faults().fail_next("watch", "configmaps", 2, 500);
        emulator.faults().close_watches();
        maps.create(&PostParams::default(), &config_map("during-outage", &[]))
            .await
            .unwrap();
        maps.delete("before", &DeleteParams::default())
            .await
            .unwrap();
        emulator.faults().compact();
        eventually("relist after 410 without losing events", || {
            let reader = reader.clone();
            async move {
                let names: Vec<String> = reader.state().iter().map(|m| m.name_any()).collect();
                names.len() == 2
                    && names.contains(&"during-outage".to_string())
                    && !names.contains(&"before".to_string())
            }
        })
        .await;
        let names: Vec<String> = reader.state().iter().map(|m| m.name_any()).collect();
        assert!(
            names.contains(&"after-close".to_string())
                && names.contains(&"during-outage".to_string()),
            "{names:?}"
        );
        maps.patch(
            "during-outage",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v"}})),
        )
        .await
        .unwrap();
        eventually("modification seen", || {
            let reader = reader.clone();
            async move {
                reader
                    .state()
                    .iter()
                    .any(|m| m.data.as_ref().is_some_and(|d| d.contains_key("k")))
            }
        })
        .await;
        let watches = emulator
            .requests()
            .iter()
            .filter(|r| r.verb == "watch")
            .count();
        assert!(watches >= 3, "the watcher re-watched ({watches} watches)");
        task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<kube::Error>>),
}

struct Context {
    client: kube::Client,
    cleanups: AtomicUsize,
}

async fn reconcile(widget: Arc<Widget>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = widget.namespace().unwrap_or_default();
    let api: Api<Widget> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, "autoguardrails.io/cleanup", widget, |event| async {
        match event {
            finalizer::Event::Apply(widget) => {
                let status = json!({"status": {"phase": "Ready", "observed_generation": widget.meta().generation}});
                api.patch_status(&widget.name_any(), &PatchParams::default(), &Patch::Merge(status)).await?;
                Ok(Action::await_change())
            }
            finalizer::Event::Cleanup(_) => {
                context.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|error| ReconcileError::Finalizer(Box::new(error)))
}

#[tokio::test]
async fn runtime_controller_reconciles_with_finalizer_and_status() {
    let (_emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let context = Arc::new(Context {
        client: client.clone(),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            context.clone(),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    widgets
        .create(&PostParams::default(), &widget("managed", 2))
        .await
        .unwrap();
    eventually("status written and finalizer added", || {
        let widgets = widgets.clone();
        async move {
            let current = widgets.get("managed").await.unwrap();
            current.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
                && current
                    .finalizers()
                    .contains(&"autoguardrails.io/cleanup".to_string())
        }
    })
    .await;
    widgets
        .delete("managed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("finalizer removed and object gone", || {
        let widgets = widgets.clone();
        async move { widgets.get_opt("managed").await.unwrap().is_none() }
    })
    .await;
    assert_eq!(context.cleanups.load(Ordering::SeqCst), 1);
    task.abort();
}

#[tokio::test]
async fn fault_injection_latency_and_request_log() {
    let (emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // 500, not 503: the kube client retries 429/503/504 by itself.
    emulator.faults().fail_next("list", "configmaps", 2, 500);
    assert_eq!(
        error_code(&maps.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    assert_eq!(
        error_code(&maps.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    maps.list(&ListParams::default()).await.unwrap();
    emulator.faults().fail_next("*", "*", 1, 500);
    assert_eq!(error_code(&maps.get("x").await.unwrap_err()), 500);
    emulator.faults().set_latency(Duration::from_millis(150));
    let started = std::time::Instant::now();
    let _ = maps.get_opt("x").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    emulator.faults().set_latency(Duration::ZERO);
    let log = emulator.requests();
    let lists: Vec<u16> = log
        .iter()
        .filter(|r| r.verb == "list" && r.resource == "configmaps")
        .map(|r| r.status)
        .collect();
    assert_eq!(lists, vec![500, 500, 200]);
    assert_eq!(
        log.last().unwrap().path,
        "/api/v1/namespaces/default/configmaps/x"
    );
    raw(
        &emulator,
        "GET",
        "/api/v1/namespaces",
        &[("User-Agent", "probe/1.0")],
        "",
    )
    .await;
    let last = emulator.requests().pop().unwrap();
    assert_eq!(
        (last.verb.as_str(), last.user_agent.as_str(), last.status),
        ("list", "probe/1.0", 200)
    );
}

#[tokio::test]
async fn builtin_kinds_events_secrets_leases() {
    let (_emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let target = maps
        .create(&PostParams::default(), &config_map("target", &[]))
        .await
        .unwrap();
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let event = CoreEvent {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("target.".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("ConfigMap".into()),
            name: Some("target".into()),
            namespace: Some("default".into()),
            uid: target.uid(),
            ..Default::default()
        },
        reason: Some("Tested".into()),
        message: Some("hello".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    events.create(&PostParams::default(), &event).await.unwrap();
    let selector = format!(
        "involvedObject.name=target,involvedObject.namespace=default,involvedObject.uid={}",
        target.uid().unwrap()
    );
    assert_eq!(
        events
            .list(&ListParams::default().fields(&selector))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        events
            .list(&ListParams::default().fields("involvedObject.name=other"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    let new_events: Api<EventsV1Event> = Api::namespaced(client.clone(), "default");
    let modern = EventsV1Event {
        metadata: kube::api::ObjectMeta {
            name: Some("modern".into()),
            ..Default::default()
        },
        event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            "2026-01-01T00:00:00.000000Z".parse().unwrap(),
        )),
        reporting_controller: Some("test".into()),
        reporting_instance: Some("test-1".into()),
        action: Some("Test".into()),
        reason: Some("Tested".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    new_events
        .create(&PostParams::default(), &modern)
        .await
        .unwrap();
    // One storage for both APIs, as on a real server.
    let both = new_events.list(&ListParams::default()).await.unwrap();
    assert_eq!(both.items.len(), 2);
    let converted = both.items.iter().find(|e| e.regarding.is_some()).unwrap();
    assert_eq!(
        converted.regarding.as_ref().unwrap().name.as_deref(),
        Some("target")
    );
    assert_eq!(converted.note.as_deref(), Some("hello"));
    let as_core = events.get("modern").await.unwrap();
    assert_eq!(as_core.reporting_component.as_deref(), Some("test"));
    let regarding = format!(
        "regarding.name=target,regarding.uid={}",
        target.uid().unwrap()
    );
    assert_eq!(
        new_events
            .list(&ListParams::default().fields(&regarding))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        },
        string_data: None,
        data: Some(BTreeMap::from([(
            "k".to_string(),
            k8s_openapi::ByteString(b"v".to_vec()),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(
        secrets.get("s").await.unwrap().data.unwrap()["k"].0,
        b"v".to_vec()
    );
    let written = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("plain".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "password".to_string(),
            "hunter2".to_string(),
        )])),
        ..Default::default()
    };
    let stored = secrets
        .create(&PostParams::default(), &written)
        .await
        .unwrap();
    assert_eq!(stored.string_data, None, "stringData is write-only");
    assert_eq!(stored.data.unwrap()["password"].0, b"hunter2".to_vec());
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut current = leases.get("leader").await.unwrap();
    current.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
        holder_identity: Some("me".into()),
        ..Default::default()
    });
    let replaced = leases
        .replace("leader", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(
        replaced.spec.unwrap().holder_identity.as_deref(),
        Some("me")
    );
    assert_eq!(
        error_code(
            &leases
                .replace("leader", &PostParams::default(), &current)
                .await
                .unwrap_err()
        ),
        409
    );
}

#[tokio::test]
async fn table_and_openapi_documents() {
    let (emulator, client) = setup().await;
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("tabled", 7))
        .await
        .unwrap();
    widgets
        .patch_status(
            "tabled",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (status, _, body) = raw(
        &emulator,
        "GET",
        "/apis/autoguardrails.io/v1/namespaces/default/widgets",
        &[("Accept", accept)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let table: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Name", "Size", "Phase", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "tabled");
    assert_eq!(table["rows"][0]["cells"][1], 7);
    assert_eq!(table["rows"][0]["cells"][2], "Ready");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let (_, _, body) = raw(&emulator, "GET", "/openapi/v3", &[], "").await;
    let index: Value = serde_json::from_str(&body).unwrap();
    let url = index["paths"]["apis/autoguardrails.io/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, body) = raw(&emulator, "GET", &url, &[], "").await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&body).unwrap();
    assert!(
        document["components"]["schemas"]["io.autoguardrails.v1.Widget"]["properties"]["spec"]
            .is_object()
    );
}

#[tokio::test]
async fn lagging_watchers_are_disconnected_and_the_runtime_watcher_catches_up() {
    let options = kube_emulator::Options {
        broadcast_capacity: 16,
        ..kube_emulator::Options::default()
    };
    let emulator = Emulator::start_with(options).await.unwrap();
    let client = emulator.client().await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // A raw watcher that does not read falls behind and its stream is ended.
    let version = emulator.resource_version().to_string();
    let mut stalled = maps
        .watch(&WatchParams::default().disable_bookmarks(), &version)
        .await
        .unwrap()
        .boxed();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(maps.clone(), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    eventually("watcher started", || {
        let requests = emulator.requests();
        async move {
            requests
                .iter()
                .any(|r| r.verb == "watch" && r.query.contains("allowWatchBookmarks"))
        }
    })
    .await;
    let burst: Vec<_> = (0..200)
        .map(|index| {
            let maps = maps.clone();
            async move {
                maps.create(
                    &PostParams::default(),
                    &config_map(&format!("burst-{index}"), &[]),
                )
                .await
                .unwrap()
            }
        })
        .collect();
    futures::future::join_all(burst).await;
    eventually("reflector has every object", || {
        let reader = reader.clone();
        async move { reader.state().len() == 200 }
    })
    .await;
    let mut received = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), stalled.next()).await {
        received += 1;
    }
    assert!(
        received < 200,
        "the stalled watcher was cut off after {received} events"
    );
    task.abort();
}

const GADGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.autoguardrails.io
spec:
  group: autoguardrails.io
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status:
              type: object
              properties:
                conditions:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [type]
                  items:
                    type: object
                    required: [type, status]
                    properties:
                      type: {type: string}
                      status: {type: string}
"#;

#[tokio::test]
async fn server_side_apply_merges_map_lists_per_key() {
    let (emulator, client) = setup().await;
    emulator.apply_crd_yaml(GADGET_CRD).unwrap();
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("autoguardrails.io", "v1", "Gadget"),
        "gadgets",
    );
    let gadgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &resource);
    let object = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"a": 1}});
    gadgets
        .patch("g", &PatchParams::apply("owner"), &Patch::Apply(&object))
        .await
        .unwrap();
    let status = |kind: &str, value: &str| json!({"apiVersion": "autoguardrails.io/v1", "kind": "Gadget", "metadata": {"name": "g"}, "status": {"conditions": [{"type": kind, "status": value}]}});
    gadgets
        .patch_status(
            "g",
            &PatchParams::apply("ready-controller"),
            &Patch::Apply(status("Ready", "True")),
        )
        .await
        .unwrap();
    let both = gadgets
        .patch_status(
            "g",
            &PatchParams::apply("sync-controller"),
            &Patch::Apply(status("Synced", "False")),
        )
        .await
        .unwrap();
    assert_eq!(
        both.data["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}])
    );
    let conflict = api_error(
        gadgets
            .patch_status(
                "g",
                &PatchParams::apply("sync-controller"),
                &Patch::Apply(status("Ready", "False")),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(conflict.code, 409);
    assert!(
        conflict
            .message
            .contains(r#".status.conditions[type="Ready"].status"#),
        "{}",
        conflict.message
    );
    let empty = json!({"apiVersion": "autoguardrails.io/v1", "kind": "Gadget", "metadata": {"name": "g"}, "status": {"conditions": []}});
    let dropped = gadgets
        .patch_status(
            "g",
            &PatchParams::apply("sync-controller"),
            &Patch::Apply(&empty),
        )
        .await
        .unwrap();
    assert_eq!(
        dropped.data["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}])
    );
}

#[tokio::test]
async fn runtime_event_recorder_publishes_and_counts_series() {
    use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
    let (_emulator, client) = setup().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let target = maps
        .create(&PostParams::default(), &config_map("recorded", &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-controller".into(),
            instance: None,
        },
    );
    let event = RecordedEvent {
        type_: EventType::Warning,
        reason: "Throttled".into(),
        note: Some("slow down".into()),
        action: "Throttle".into(),
        secondary: None,
    };
    let reference = target.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let selector = format!(
        "involvedObject.name=recorded,involvedObject.uid={}",
        target.uid().unwrap()
    );
    let listed = core
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "the repeat is a series on the same Event"
    );
    let stored = &listed.items[0];
    assert_eq!(stored.message.as_deref(), Some("slow down"));
    assert_eq!(
        stored.reporting_component.as_deref(),
        Some("test-controller")
    );
    assert_eq!(
        stored.series.as_ref().and_then(|series| series.count),
        Some(2)
    );
}

#[tokio::test]
async fn apply_crd_yaml_installs_the_project_crds() {
    let (emulator, client) = setup().await;
    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    for file in [
        "guardrailpolicies.autoguardrails.io.yaml",
        "quarantines.autoguardrails.io.yaml",
    ] {
        let yaml = std::fs::read_to_string(repository.join("crds").join(file)).unwrap();
        let names = emulator.apply_crd_yaml(&yaml).unwrap();
        assert_eq!(names, vec![file.trim_end_matches(".yaml").to_string()]);
        // Re-applying the same CRD is an update, not an error.
        emulator.apply_crd_yaml(&yaml).unwrap();
    }
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let kinds: Vec<String> = discovery
        .groups()
        .flat_map(|group| {
            group
                .recommended_resources()
                .into_iter()
                .map(|(resource, _)| resource.kind)
        })
        .collect();
    assert!(
        kinds.contains(&"GuardrailPolicy".to_string()) && kinds.contains(&"Quarantine".to_string()),
        "{kinds:?}"
    );
}

/// The user a SelfSubjectReview reports for the given headers (status code, userInfo).
async fn whoami(emulator: &Emulator, headers: &[(&str, &str)]) -> (u16, Value) {
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, text) = raw(
        emulator,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &all,
        body,
    )
    .await;
    let value: Value = serde_json::from_str(&text).unwrap();
    (status, value)
}

#[tokio::test]
async fn authentication_refuses_missing_and_unknown_tokens_and_knows_the_token_file() {
    let tokens = kube_emulator::auth::parse_token_file(
        "alice-token,alice,uid-alice,\"approvers,team-a\"\nbob-token,bob,uid-bob\n",
    )
    .unwrap();
    let emulator = Emulator::start_with(kube_emulator::Options {
        tokens,
        unauthenticated: kube_emulator::auth::Unauthenticated::Refuse,
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    for authorization in ["", "Bearer", "Bearer wrong", "Basic YWxpY2U6eA=="] {
        let headers: &[(&str, &str)] = &[("Authorization", authorization)];
        let (status, _, body) = raw(&emulator, "GET", "/api/v1/namespaces", headers, "").await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        let status_object: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status_object["reason"], "Unauthorized");
        assert_eq!(status_object["code"], 401);
    }
    // Health checks need no credentials; discovery does.
    let (status, _, _) = raw(&emulator, "GET", "/readyz", &[("Authorization", "")], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = raw(&emulator, "GET", "/apis", &[("Authorization", "")], "").await;
    assert_eq!(status, 401);

    let (status, review) = whoami(&emulator, &[("Authorization", "Bearer alice-token")]).await;
    assert_eq!(status, 201, "{review}");
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "alice", "uid": "uid-alice", "groups": ["approvers", "team-a", "system:authenticated"]})
    );
    let (_, review) = whoami(&emulator, &[]).await;
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "kube-emulator-admin"
    );
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );

    // Tokens added at run time work at once; the admin's own client keeps working.
    let (status, _) = whoami(&emulator, &[("Authorization", "Bearer carol-token")]).await;
    assert_eq!(status, 401);
    emulator.add_token(kube_emulator::TokenEntry::new(
        "carol-token",
        "carol",
        "uid-carol",
        &[],
    ));
    let (status, review) = whoami(&emulator, &[("Authorization", "Bearer carol-token")]).await;
    assert_eq!(status, 201);
    assert_eq!(review["status"]["userInfo"]["username"], "carol");
    let client = emulator.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces.list(&ListParams::default()).await.unwrap();
    // A refused request is still in the request log.
    assert!(
        emulator
            .requests()
            .iter()
            .any(|record| record.status == 401 && record.path == "/api/v1/namespaces")
    );
}

#[tokio::test]
async fn requests_without_credentials_are_the_admin_anonymous_or_refused_as_configured() {
    let plain = Emulator::start().await.unwrap();
    let (status, review) = whoami(&plain, &[("Authorization", "")]).await;
    assert_eq!(status, 201);
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "kube-emulator-admin"
    );
    let (status, _) = whoami(&plain, &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401);
    let emulator = Emulator::start_with(kube_emulator::Options {
        unauthenticated: kube_emulator::auth::Unauthenticated::Anonymous,
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    // system:anonymous is not system:authenticated: it may read /version, not ask about itself.
    let (status, refusal) = whoami(&emulator, &[("Authorization", "")]).await;
    assert_eq!(status, 403);
    assert_eq!(
        refusal["message"],
        "selfsubjectreviews.authentication.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
    );
    let (status, _, _) = raw(&emulator, "GET", "/version", &[("Authorization", "")], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = raw(&emulator, "GET", "/apis", &[("Authorization", "")], "").await;
    assert_eq!(status, 403);
    // A wrong token is 401 even with anonymous access on.
    let (status, _) = whoami(&emulator, &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn impersonation_is_for_the_superuser_group_only_and_names_the_impersonated_user() {
    let emulator = Emulator::start_with(kube_emulator::Options {
        tokens: vec![kube_emulator::TokenEntry::new(
            "bob-token",
            "bob",
            "uid-bob",
            &["dev"],
        )],
        unauthenticated: kube_emulator::auth::Unauthenticated::Refuse,
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    let (status, review) = whoami(
        &emulator,
        &[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "approvers"),
            ("Impersonate-Group", "team-a"),
            ("Impersonate-Uid", "uid-alice"),
            ("Impersonate-Extra-Reason", "audit"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{review}");
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "alice", "uid": "uid-alice", "groups": ["approvers", "team-a", "system:authenticated"], "extra": {"reason": ["audit"]}})
    );
    // Not in system:masters: refused with the API server's message shape, before anything runs.
    let (status, _, body) = raw(
        &emulator,
        "POST",
        "/api/v1/namespaces",
        &[
            ("Authorization", "Bearer bob-token"),
            ("Impersonate-User", "alice"),
            ("Content-Type", "application/json"),
        ],
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"from-bob"}}"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["reason"], "Forbidden");
    assert_eq!(
        refusal["message"],
        "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let client = emulator.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    assert!(namespaces.get_opt("from-bob").await.unwrap().is_none());
    // Groups without a user are a bad request.
    let (status, body) = whoami(&emulator, &[("Impersonate-Group", "approvers")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("without impersonating a user")
    );
}

/// A raw JSON request with a bearer token: (status, body as JSON).
async fn as_token(
    emulator: &Emulator,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let authorization = format!("Bearer {token}");
    let (status, _, text) = raw(
        emulator,
        method,
        path,
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", content_type),
        ],
        body,
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn rbac_roles_and_bindings_are_served_and_decide_every_request() {
    let emulator = Emulator::start_with(kube_emulator::Options {
        tokens: kube_emulator::auth::parse_token_file(
            "alice-token,alice,uid-alice,approvers\nmallory-token,mallory,uid-mallory\n",
        )
        .unwrap(),
        unauthenticated: kube_emulator::auth::Unauthenticated::Refuse,
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    let client = emulator.client().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &config_map("conf", &[("a", "1")]))
        .await
        .unwrap();
    let json = "application/json";
    let merge = "application/merge-patch+json";
    let patch = r#"{"data":{"a":"2"}}"#;
    let path = "/api/v1/namespaces/default/configmaps/conf";

    // Nothing granted yet: refused with the API server's message, nothing changed.
    let (status, refusal) = as_token(&emulator, "mallory-token", "PATCH", path, merge, patch).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["reason"], "Forbidden");
    assert_eq!(
        refusal["message"],
        "configmaps \"conf\" is forbidden: User \"mallory\" cannot patch resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(refusal["details"]["name"], "conf");
    assert_eq!(
        config_maps.get("conf").await.unwrap().data.unwrap()["a"],
        "1"
    );
    // Discovery and asking about oneself are granted to every authenticated user.
    let (status, _) = as_token(&emulator, "mallory-token", "GET", "/apis", json, "").await;
    assert_eq!(status, 200);
    let (status, refusal) = as_token(
        &emulator,
        "mallory-token",
        "GET",
        "/api/v1/namespaces",
        json,
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        refusal["message"],
        "namespaces is forbidden: User \"mallory\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );

    // A Role limited by resourceNames, bound in one namespace; the RBAC kinds are real resources.
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let (status, created) = as_token(&emulator, kube_emulator::auth::ADMIN_TOKEN, "POST",
        &format!("{rbac}/namespaces/default/roles"), json,
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"conf-patcher"},
            "rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","patch"],"resourceNames":["conf"]}]}"#).await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = as_token(&emulator, kube_emulator::auth::ADMIN_TOKEN, "POST",
        &format!("{rbac}/namespaces/default/rolebindings"), json,
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"mallory-patches"},
            "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"conf-patcher"},
            "subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}]}"#).await;
    assert_eq!(status, 201);
    let (status, patched) = as_token(&emulator, "mallory-token", "PATCH", path, merge, patch).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["a"], "2");
    let (status, _) = as_token(&emulator, "mallory-token", "DELETE", path, json, "").await;
    assert_eq!(status, 403);
    let (status, _) = as_token(
        &emulator,
        "mallory-token",
        "GET",
        "/api/v1/namespaces/default/configmaps",
        json,
        "",
    )
    .await;
    assert_eq!(status, 403, "resourceNames never grant a list");

    // An aggregated ClusterRole with a custom verb, bound to a group, reaches alice through the
    // aggregation label; mallory (not in the group) cannot use it. Impersonation is a verb too.
    for body in [
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"approver"},
            "aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"example.io/aggregate-to-approver":"true"}}]}}"#,
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"impersonate-alice","labels":{"example.io/aggregate-to-approver":"true"}},
            "rules":[{"apiGroups":[""],"resources":["users"],"verbs":["impersonate"],"resourceNames":["bob"]}]}"#,
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"approvers"},
            "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"approver"},
            "subjects":[{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"approvers"}]}"#,
    ] {
        let kind: Value = serde_json::from_str(body).unwrap();
        let plural = format!("{}s", kind["kind"].as_str().unwrap().to_lowercase());
        let (status, answer) = as_token(
            &emulator,
            kube_emulator::auth::ADMIN_TOKEN,
            "POST",
            &format!("{rbac}/{plural}"),
            json,
            body,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, review) = whoami(
        &emulator,
        &[
            ("Authorization", "Bearer alice-token"),
            ("Impersonate-User", "bob"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{review}");
    assert_eq!(review["status"]["userInfo"]["username"], "bob");
    let (status, refusal) = whoami(
        &emulator,
        &[
            ("Authorization", "Bearer alice-token"),
            ("Impersonate-User", "carol"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        refusal["message"],
        "users \"carol\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let (status, _) = whoami(
        &emulator,
        &[
            ("Authorization", "Bearer mallory-token"),
            ("Impersonate-User", "bob"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    // Impersonating bob, alice is decided as bob.
    let (status, _, body) = raw(
        &emulator,
        "GET",
        path,
        &[
            ("Authorization", "Bearer alice-token"),
            ("Impersonate-User", "bob"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("User \"bob\" cannot get resource"),
        "{body}"
    );
    // Removing the binding takes the right away at once.
    let (status, _) = as_token(
        &emulator,
        kube_emulator::auth::ADMIN_TOKEN,
        "DELETE",
        &format!("{rbac}/namespaces/default/rolebindings/mallory-patches"),
        json,
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = as_token(&emulator, "mallory-token", "PATCH", path, merge, patch).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn subject_access_reviews_answer_for_any_user_and_for_oneself() {
    use k8s_openapi::api::authorization::v1::{
        NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
        SelfSubjectAccessReviewSpec, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let emulator = Emulator::start_with(kube_emulator::Options {
        tokens: vec![kube_emulator::TokenEntry::new(
            "alice-token",
            "alice",
            "uid-alice",
            &["approvers"],
        )],
        unauthenticated: kube_emulator::auth::Unauthenticated::Refuse,
        ..kube_emulator::Options::default()
    })
    .await
    .unwrap();
    let client = emulator.client().await.unwrap();
    let (status, _) = as_token(
        &emulator,
        kube_emulator::auth::ADMIN_TOKEN,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"}}"#,
    )
    .await;
    assert_eq!(status, 201);
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    for (plural, body) in [
        (
            "clusterroles",
            r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"approver"},
            "rules":[{"apiGroups":["autoguardrails.io"],"resources":["quarantines"],"verbs":["approve"],"resourceNames":["q-1"]}]}"#,
        ),
        (
            "namespaces/team-a/rolebindings",
            r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"approvers"},
            "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"approver"},
            "subjects":[{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"approvers"}]}"#,
        ),
    ] {
        let (status, answer) = as_token(
            &emulator,
            kube_emulator::auth::ADMIN_TOKEN,
            "POST",
            &format!("{rbac}/{plural}"),
            "application/json",
            body,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = |user: &str, groups: &[&str], name: &str, namespace: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(groups.iter().map(|group| group.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                group: Some("autoguardrails.io".to_string()),
                resource: Some("quarantines".to_string()),
                verb: Some("approve".to_string()),
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = reviews
        .create(
            &PostParams::default(),
            &review("alice", &["approvers"], "q-1", "team-a"),
        )
        .await
        .unwrap();
    let status = answer.status.unwrap();
    assert!(status.allowed);
    assert_eq!(
        status.reason.as_deref(),
        Some(
            "RBAC: allowed by RoleBinding \"approvers/team-a\" of ClusterRole \"approver\" to User \"alice\""
        )
    );
    for (user, groups, name, namespace) in [
        ("alice", &["approvers"][..], "q-2", "team-a"),
        ("alice", &["approvers"][..], "q-1", "team-b"),
        ("alice", &[][..], "q-1", "team-a"),
        ("mallory", &[][..], "q-1", "team-a"),
    ] {
        let answer = reviews
            .create(
                &PostParams::default(),
                &review(user, groups, name, namespace),
            )
            .await
            .unwrap();
        assert!(
            !answer.status.unwrap().allowed,
            "{user} {groups:?} {name} {namespace}"
        );
    }
    let empty = reviews
        .create(&PostParams::default(), &SubjectAccessReview::default())
        .await
        .unwrap_err();
    assert!(matches!(empty, kube::Error::Api(status) if status.code == 422));
    let non_resource = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("alice".to_string()),
            groups: Some(vec!["system:authenticated".to_string()]),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/apis".to_string()),
                verb: Some("get".to_string()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    assert!(
        reviews
            .create(&PostParams::default(), &non_resource)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );

    // Alice may ask about herself, not about others (that needs create on subjectaccessreviews).
    let self_review = serde_json::to_string(&SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: review("", &[], "q-1", "team-a").spec.resource_attributes,
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    })
    .unwrap();
    let (status, answer) = as_token(
        &emulator,
        "alice-token",
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "application/json",
        &self_review,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"]["allowed"], true);
    let (status, _) = as_token(
        &emulator,
        "alice-token",
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        &serde_json::to_string(&review("mallory", &[], "q-1", "team-a")).unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    // Nothing is stored: a list is not a served verb on a review.
    let (status, _) = as_token(
        &emulator,
        kube_emulator::auth::ADMIN_TOKEN,
        "GET",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 405);
}
