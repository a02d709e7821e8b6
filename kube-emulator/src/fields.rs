//! Field ownership (`metadata.managedFields`) and server-side apply merging.

use crate::error::ApiError;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// A field path: object keys from the root; lists and scalars are leaves (empty objects own nothing).
pub type FieldPath = Vec<String>;

/// One `managedFields` entry in parsed form.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `status` or empty.
    pub subresource: String,
    /// apiVersion the fields were set in.
    pub api_version: String,
    /// RFC 3339 time of the last change.
    pub time: String,
    /// Owned leaf paths.
    pub fields: BTreeSet<FieldPath>,
}

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// Everything but status (main resource of a kind with a status subresource).
    AllButStatus,
    /// Only status (the status subresource).
    StatusOnly,
    /// Everything (kinds without a status subresource).
    Everything,
}

/// Collects the tracked leaf paths of an object within a scope; `schema` (a CRD's `openAPIV3Schema`)
/// makes `x-kubernetes-list-type: map` lists granular (one `k:{...}` segment per element).
pub fn tracked_paths(object: &Value, scope: Scope, schema: Option<&Value>) -> BTreeSet<FieldPath> {
    let mut paths = BTreeSet::new();
    let Some(fields) = object.as_object() else {
        return paths;
    };
    for (key, value) in fields {
        let include = match key.as_str() {
            "apiVersion" | "kind" => false,
            "metadata" => scope != Scope::StatusOnly,
            "status" => scope != Scope::AllButStatus,
            _ => scope != Scope::StatusOnly,
        };
        if !include {
            continue;
        }
        if key == "metadata" {
            for meta_key in ["labels", "annotations", "finalizers", "ownerReferences"] {
                if let Some(meta_value) = value.get(meta_key) {
                    collect(
                        meta_value,
                        None,
                        vec!["metadata".to_string(), meta_key.to_string()],
                        &mut paths,
                    );
                }
            }
        } else {
            let child_schema = schema.and_then(|schema| schema["properties"].get(key));
            collect(value, child_schema, vec![key.clone()], &mut paths);
        }
    }
    paths
}

/// The `x-kubernetes-list-map-keys` of a schema node whose list type is `map`.
fn map_keys(schema: Option<&Value>) -> Option<Vec<String>> {
    let schema = schema?;
    if schema["x-kubernetes-list-type"].as_str() != Some("map") {
        return None;
    }
    let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
        .as_array()?
        .iter()
        .filter_map(|key| key.as_str().map(str::to_string))
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The `k:{...}` segment of a map-list element, or None when a key field is missing.
fn element_segment(item: &Value, keys: &[String]) -> Option<String> {
    let mut identity = Map::new();
    for key in keys {
        identity.insert(key.clone(), item.get(key)?.clone());
    }
    Some(format!("k:{}", Value::Object(identity)))
}

/// Parses a `k:{...}` segment.
fn element_identity(segment: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(segment.strip_prefix("k:")?) {
        Ok(Value::Object(identity)) => Some(identity),
        _ => None,
    }
}

/// Whether a list element has the given identity.
fn has_identity(item: &Value, identity: &Map<String, Value>) -> bool {
    identity
        .iter()
        .all(|(key, value)| item.get(key) == Some(value))
}

/// Recursively collects leaves.
fn collect(
    value: &Value,
    schema: Option<&Value>,
    prefix: FieldPath,
    paths: &mut BTreeSet<FieldPath>,
) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                let child_schema = schema.and_then(|schema| {
                    schema["properties"]
                        .get(key)
                        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
                });
                let mut path = prefix.clone();
                path.push(key.clone());
                collect(child, child_schema, path, paths);
            }
        }
        Value::Array(items) => {
            let Some(keys) = map_keys(schema) else {
                paths.insert(prefix);
                return;
            };
            let segments: Option<Vec<String>> = items
                .iter()
                .map(|item| {
                    item.is_object()
                        .then(|| element_segment(item, &keys))
                        .flatten()
                })
                .collect();
            let Some(segments) = segments else {
                paths.insert(prefix);
                return;
            };
            let item_schema = schema.map(|schema| &schema["items"]);
            for (item, segment) in items.iter().zip(segments) {
                let mut path = prefix.clone();
                path.push(segment);
                collect(item, item_schema, path, paths);
            }
        }
        _ => {
            paths.insert(prefix);
        }
    }
}

/// Renders a path like the API server's conflict messages: `.status.conditions[type="Ready"].status`.
pub fn display_path(path: &[String]) -> String {
    let mut rendered = String::new();
    for segment in path {
        match element_identity(segment) {
            Some(identity) => {
                let keys: Vec<String> = identity
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                rendered.push_str(&format!("[{}]", keys.join(",")));
            }
            None => {
                rendered.push('.');
                rendered.push_str(segment);
            }
        }
    }
    rendered
}

/// One step down a path (object key or `k:{...}` list element).
fn step<'a>(current: &'a Value, segment: &str) -> Option<&'a Value> {
    match element_identity(segment) {
        Some(identity) => current
            .as_array()?
            .iter()
            .find(|item| has_identity(item, &identity)),
        None => current.get(segment),
    }
}

/// One mutable step down a path.
fn step_mut<'a>(current: &'a mut Value, segment: &str) -> Option<&'a mut Value> {
    match element_identity(segment) {
        Some(identity) => current
            .as_array_mut()?
            .iter_mut()
            .find(|item| has_identity(item, &identity)),
        None => current.get_mut(segment),
    }
}

/// The value at a path.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |current, key| step(current, key))
}

/// Descends one segment, creating the object field or list element when missing.
fn step_or_create<'a>(current: &'a mut Value, segment: &str) -> Option<&'a mut Value> {
    if let Some(identity) = element_identity(segment) {
        if !current.is_array() {
            *current = Value::Array(Vec::new());
        }
        let items = current.as_array_mut()?;
        let index = match items.iter().position(|item| has_identity(item, &identity)) {
            Some(index) => index,
            None => {
                items.push(Value::Object(identity));
                items.len() - 1
            }
        };
        return items.get_mut(index);
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    Some(
        current
            .as_object_mut()?
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new())),
    )
}

/// Sets the value at a path, creating objects and map-list elements on the way.
pub fn set_at(object: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for key in parents {
        match step_or_create(current, key) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(slot) = step_or_create(current, last) {
        *slot = value;
    }
}

/// Removes the value at a path, and parents left empty by it (a map-list element goes when only
/// its key fields are left; its key fields are never removed on their own).
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent_identity = parents.last().and_then(|segment| element_identity(segment));
    let Some(parent) = parents
        .iter()
        .try_fold(&mut *object, |current, key| step_mut(current, key))
    else {
        return;
    };
    if let Some(identity) = element_identity(last) {
        if let Some(items) = parent.as_array_mut() {
            items.retain(|item| !has_identity(item, &identity));
        }
        return;
    }
    let is_key_field = parent_identity
        .as_ref()
        .is_some_and(|identity| identity.contains_key(last));
    if !is_key_field && let Some(fields) = parent.as_object_mut() {
        fields.remove(last);
    }
    let left_empty = match (&parent_identity, parent.as_object()) {
        (Some(identity), Some(fields)) => fields.keys().all(|key| identity.contains_key(key)),
        (None, Some(fields)) => fields.is_empty() && parents.len() > 1,
        _ => false,
    };
    if left_empty {
        remove_at(object, parents);
    }
}

/// Whether two paths overlap (equal, or one is a prefix of the other).
fn overlaps(first: &[String], second: &[String]) -> bool {
    let shortest = first.len().min(second.len());
    first[..shortest] == second[..shortest]
}

/// Renders owned paths as a `FieldsV1` object.
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut current = &mut root;
        for key in path {
            let name = if key.starts_with("k:") {
                key.clone()
            } else {
                format!("f:{key}")
            };
            let entry = current
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(next) = entry.as_object_mut() else {
                break;
            };
            current = next;
        }
    }
    Value::Object(root)
}

/// Parses a `FieldsV1` object into leaf paths (list-element keys are folded into their list).
pub fn from_fields_v1(fields: &Value) -> BTreeSet<FieldPath> {
    fn walk(value: &Value, prefix: FieldPath, paths: &mut BTreeSet<FieldPath>) {
        let named: Vec<(&String, &Value)> = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.starts_with("f:") || key.starts_with("k:"))
            .collect();
        if named.is_empty() {
            if !prefix.is_empty() {
                paths.insert(prefix);
            }
            return;
        }
        for (key, child) in named {
            let mut path = prefix.clone();
            path.push(key.strip_prefix("f:").unwrap_or(key).to_string());
            walk(child, path, paths);
        }
    }
    let mut paths = BTreeSet::new();
    walk(fields, Vec::new(), &mut paths);
    paths
}

/// Reads `metadata.managedFields`.
pub fn read_entries(object: &Value) -> Vec<ManagerEntry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| ManagerEntry {
            manager: entry["manager"].as_str().unwrap_or_default().to_string(),
            operation: entry["operation"].as_str().unwrap_or("Update").to_string(),
            subresource: entry["subresource"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            api_version: entry["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: entry["time"].as_str().unwrap_or_default().to_string(),
            fields: from_fields_v1(&entry["fieldsV1"]),
        })
        .collect()
}

/// Writes `metadata.managedFields` (entries without fields are dropped).
pub fn write_entries(object: &mut Value, entries: &[ManagerEntry]) {
    let rendered: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            let mut value = json!({
                "manager": entry.manager,
                "operation": entry.operation,
                "apiVersion": entry.api_version,
                "time": entry.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&entry.fields),
            });
            if !entry.subresource.is_empty() {
                value["subresource"] = json!(entry.subresource);
            }
            value
        })
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".to_string(), Value::Array(rendered));
        }
    }
}

/// Records an `Update` operation by `manager`: changed fields move to it; removed fields leave everyone.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
    scope: Scope,
    schema: Option<&Value>,
    api_version: &str,
    time: &str,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let new_paths = tracked_paths(new, scope, schema);
    let old_paths = old
        .map(|old| tracked_paths(old, scope, schema))
        .unwrap_or_default();
    let changed: BTreeSet<FieldPath> = new_paths
        .iter()
        .filter(|path| old.and_then(|old| value_at(old, path)) != value_at(new, path))
        .cloned()
        .collect();
    let removed: Vec<&FieldPath> = old_paths.difference(&new_paths).collect();
    for entry in &mut entries {
        entry
            .fields
            .retain(|path| !changed.contains(path) && !removed.contains(&path));
    }
    if !changed.is_empty() {
        let position = entries.iter().position(|entry| {
            entry.manager == manager
                && entry.operation == "Update"
                && entry.subresource == subresource
        });
        let entry = match position {
            Some(index) => &mut entries[index],
            None => {
                entries.push(ManagerEntry {
                    manager: manager.to_string(),
                    operation: "Update".to_string(),
                    subresource: subresource.to_string(),
                    api_version: api_version.to_string(),
                    time: time.to_string(),
                    fields: BTreeSet::new(),
                });
                let last = entries.len() - 1;
                &mut entries[last]
            }
        };
        entry.fields.extend(changed);
        entry.time = time.to_string();
    }
    write_entries(new, &entries);
}

/// The 409 of an apply conflicting with other managers, worded like the API server.
fn conflict_error(conflicts: &[(String, String, String)]) -> ApiError {
    let message = if let [(owner, version, field)] = conflicts {
        format!("Apply failed with 1 conflict: conflict with \"{owner}\" using {version}: {field}")
    } else {
        let mut owners: Vec<(&String, &String)> = conflicts
            .iter()
            .map(|(owner, version, _)| (owner, version))
            .collect();
        owners.dedup();
        let sections: Vec<String> = owners
            .iter()
            .map(|(owner, version)| {
                let fields: Vec<String> = conflicts
                    .iter()
                    .filter(|(other, _, _)| other == *owner)
                    .map(|(_, _, field)| format!("- {field}"))
                    .collect();
                format!(
                    "conflicts with \"{owner}\" using {version}:\n{}",
                    fields.join("\n")
                )
            })
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            sections.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(owner, _, field)| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{owner}\""), "field": field}))
        .collect();
    let mut error = ApiError::new(409, "Conflict", message);
    error.details = Some(json!({"causes": causes}));
    error
}

/// Server-side apply of `config` by `manager` onto `live` (None when creating). Returns the merged object.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    subresource: &str,
    scope: Scope,
    schema: Option<&Value>,
    api_version: &str,
    time: &str,
) -> Result<Value, ApiError> {
    let config_paths = tracked_paths(config, scope, schema);
    let mut entries = live.map(read_entries).unwrap_or_default();
    let mut merged = match live {
        Some(live) => live.clone(),
        None => {
            let mut fresh =
                json!({"apiVersion": config["apiVersion"], "kind": config["kind"], "metadata": {}});
            for key in ["name", "namespace", "generateName"] {
                if let Some(value) = config["metadata"].get(key) {
                    fresh["metadata"][key] = value.clone();
                }
            }
            fresh
        }
    };
    let is_own = |entry: &ManagerEntry| {
        entry.manager == manager && entry.operation == "Apply" && entry.subresource == subresource
    };
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for entry in entries.iter_mut().filter(|entry| !is_own(entry)) {
        let mut lost = Vec::new();
        for owned in &entry.fields {
            for path in config_paths.iter().filter(|path| overlaps(path, owned)) {
                let differs = value_at(&merged, path) != value_at(config, path);
                if differs {
                    if force {
                        lost.push(owned.clone());
                    } else {
                        conflicts.push((
                            entry.manager.clone(),
                            entry.api_version.clone(),
                            display_path(path),
                        ));
                    }
                }
            }
        }
        for path in lost {
            entry.fields.remove(&path);
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        conflicts.dedup();
        return Err(conflict_error(&conflicts));
    }
    let previously_owned: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|entry| is_own(entry))
        .flat_map(|entry| entry.fields.iter().cloned())
        .collect();
    for path in previously_owned.difference(&config_paths) {
        let owned_by_others = entries
            .iter()
            .filter(|entry| !is_own(entry))
            .any(|entry| entry.fields.iter().any(|owned| overlaps(owned, path)));
        let kept_by_config = config_paths.iter().any(|own| overlaps(own, path));
        if !owned_by_others && !kept_by_config {
            remove_at(&mut merged, path);
        }
    }
    for path in &config_paths {
        if let Some(value) = value_at(config, path) {
            set_at(&mut merged, path, value.clone());
        }
    }
    entries.retain(|entry| !is_own(entry));
    entries.push(ManagerEntry {
        manager: manager.to_string(),
        operation: "Apply".to_string(),
        subresource: subresource.to_string(),
        api_version: api_version.to_string(),
        time: time.to_string(),
        fields: config_paths,
    });
    write_entries(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trips() {
        let object = json!({"spec": {"a": 1, "b": {"c": [1]}}, "metadata": {"labels": {"x": "y"}, "name": "n"}});
        let paths = tracked_paths(&object, Scope::Everything, None);
        assert_eq!(from_fields_v1(&to_fields_v1(&paths)), paths);
        assert_eq!(paths.len(), 3);
    }

    #[test]
    fn apply_conflicts_and_removes_fields() {
        let first = apply(None, &json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1, "b": 2}}), "one", false, "", Scope::Everything, None, "v1", "t").unwrap();
        let conflict = apply(
            Some(&first),
            &json!({"spec": {"a": 5}}),
            "two",
            false,
            "",
            Scope::Everything,
            None,
            "v1",
            "t",
        )
        .unwrap_err();
        assert_eq!(conflict.code, 409);
        let same = apply(
            Some(&first),
            &json!({"spec": {"a": 1}}),
            "two",
            false,
            "",
            Scope::Everything,
            None,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(same["spec"]["a"], 1);
        let forced = apply(
            Some(&first),
            &json!({"spec": {"a": 5}}),
            "two",
            true,
            "",
            Scope::Everything,
            None,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(forced["spec"]["a"], 5);
        let shrunk = apply(
            Some(&first),
            &json!({"spec": {"a": 1}}),
            "one",
            false,
            "",
            Scope::Everything,
            None,
            "v1",
            "t",
        )
        .unwrap();
        assert!(shrunk["spec"].get("b").is_none());
    }

    fn conditions_schema() -> Value {
        json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}
        }}}}})
    }

    fn status_apply(
        live: Option<&Value>,
        conditions: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApiError> {
        let config = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}, "status": {"conditions": conditions}});
        let schema = conditions_schema();
        apply(
            live,
            &config,
            manager,
            force,
            "status",
            Scope::StatusOnly,
            Some(&schema),
            "v1",
            "t",
        )
    }

    #[test]
    fn map_lists_merge_per_element() {
        let first = status_apply(
            None,
            json!([{"type": "Ready", "status": "True"}]),
            "one",
            false,
        )
        .unwrap();
        let both = status_apply(
            Some(&first),
            json!([{"type": "Synced", "status": "False"}]),
            "two",
            false,
        )
        .unwrap();
        assert_eq!(
            both["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}])
        );
        let fields = &both["metadata"]["managedFields"][1]["fieldsV1"];
        assert!(
            fields["f:status"]["f:conditions"]
                .get("k:{\"type\":\"Synced\"}")
                .is_some(),
            "{fields}"
        );
        assert_eq!(
            read_entries(&both)[1].fields,
            tracked_paths(
                &json!({"status": {"conditions": [{"type": "Synced", "status": "False"}]}}),
                Scope::StatusOnly,
                Some(&conditions_schema())
            )
        );
        let conflict = status_apply(
            Some(&both),
            json!([{"type": "Ready", "status": "False"}]),
            "two",
            false,
        )
        .unwrap_err();
        assert_eq!(conflict.code, 409);
        assert!(
            conflict
                .message
                .contains(".status.conditions[type=\"Ready\"].status"),
            "{}",
            conflict.message
        );
        let dropped = status_apply(Some(&both), json!([]), "two", false).unwrap();
        assert_eq!(
            dropped["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
    }

    #[test]
    fn map_list_elements_keep_their_keys_while_co_owned() {
        let mut object =
            json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "x"}]}});
        let element = "k:{\"type\":\"Ready\"}".to_string();
        let path = |field: &str| {
            vec![
                "status".to_string(),
                "conditions".to_string(),
                element.clone(),
                field.to_string(),
            ]
        };
        remove_at(&mut object, &path("type"));
        remove_at(&mut object, &path("reason"));
        assert_eq!(
            object["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        remove_at(&mut object, &path("status"));
        assert_eq!(object["status"]["conditions"], json!([]));
        set_at(&mut object, &path("status"), json!("False"));
        assert_eq!(
            object["status"]["conditions"],
            json!([{"type": "Ready", "status": "False"}])
        );
    }
}
