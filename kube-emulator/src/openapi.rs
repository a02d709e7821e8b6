//! OpenAPI v3 documents built from the served types (CRD schemas; minimal ones for built-ins).

use crate::resources::{Registry, ResourceType};
use serde_json::{Map, Value, json};

/// The `/openapi/v3` index: one entry per group/version.
pub fn index(registry: &Registry, revision: u64) -> Value {
    let mut paths = Map::new();
    for (group, version) in registry.group_versions() {
        let key = group_version_path(&group, &version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={revision:016X}")}),
        );
    }
    json!({"paths": paths})
}

/// `api/v1` or `apis/{group}/{version}`.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Reverse-DNS schema name, e.g. `io.autoguardrails.v1.Widget`.
fn schema_name(resource: &ResourceType) -> String {
    let group = if resource.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        resource
            .group
            .split('.')
            .rev()
            .collect::<Vec<_>>()
            .join(".")
    };
    format!("{group}.{}.{}", resource.version, resource.kind)
}

/// The schema of one type.
fn type_schema(resource: &ResourceType) -> Value {
    let gvk =
        json!([{"group": resource.group, "version": resource.version, "kind": resource.kind}]);
    let mut schema = match &resource.schema {
        Some(schema) => schema.clone(),
        None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    schema["properties"]["apiVersion"] = json!({"type": "string"});
    schema["properties"]["kind"] = json!({"type": "string"});
    schema["properties"]["metadata"] =
        json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"});
    schema["x-kubernetes-group-version-kind"] = gvk;
    schema
}

/// The document of one group/version, or None when not served.
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    if !registry.serves_group_version(group, version) {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_string(),
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    for resource in registry.types_of(group, version) {
        let name = schema_name(&resource);
        schemas.insert(name.clone(), type_schema(&resource));
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let gvk =
            json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
        let prefix = format!("/{}", group_version_path(group, version));
        let collection = if resource.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{prefix}/{}", resource.plural)
        };
        let parameters = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ]);
        // Strategic merge patch is not advertised, not even for built-ins: kubectl would then compute
        // SMP from these schemas, which lack patch strategies and most fields. Without it, kubectl's
        // client-side apply falls back to its own built-in patch logic, as it does for CRs.
        let patch_body = json!({
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        });
        let operation = |action: &str| {
            let body = if action == "patch" {
                patch_body.clone()
            } else {
                json!({"application/json": {"schema": reference}})
            };
            json!({
                "operationId": format!("{action}{}", resource.kind),
                "parameters": parameters,
                "requestBody": {"content": body},
                "responses": {"200": {"content": {"application/json": {"schema": reference}}}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(
            collection.clone(),
            json!({"get": operation("list"), "post": operation("post")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch"), "delete": operation("delete")}),
        );
        if resource.has_status {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch")}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
