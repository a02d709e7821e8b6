//! Server-side `Table` rendering (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

use crate::resources::ResourceType;
use serde_json::{Value, json};

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Human-readable age like kubectl (`5s`, `3m`, `2h`, `4d`).
pub fn human_age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".to_string();
    };
    let seconds = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// Evaluates a simple JSONPath like `.status.phase` or `.spec.items[0].name`.
pub fn simple_json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let trimmed = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = object;
    for segment in trimmed.trim_start_matches('.').split('.') {
        if segment.is_empty() {
            continue;
        }
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        if let Some(index) = index {
            current = current.get(index)?;
        }
    }
    Some(current)
}

/// The column definitions and cell functions of a type.
fn columns(resource: &ResourceType) -> Vec<(Value, String)> {
    let name_column = (
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ".metadata.name".to_string(),
    );
    let age_column = (
        json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}),
        ".metadata.creationTimestamp".to_string(),
    );
    let mut result = vec![name_column];
    if resource.custom && !resource.printer_columns.is_empty() {
        for column in &resource.printer_columns {
            let definition = json!({
                "name": column["name"],
                "type": column["type"].as_str().unwrap_or("string"),
                "format": column["format"].as_str().unwrap_or(""),
                "description": column["description"].as_str().unwrap_or(""),
                "priority": column["priority"].as_i64().unwrap_or(0),
            });
            result.push((definition, column["jsonPath"].as_str().unwrap_or_default().to_string()));
        }
        return result;
    }
    let extra: &[(&str, &str, &str)] = match resource.plural.as_str() {
        "namespaces" => &[("Status", "string", ".status.phase")],
        "secrets" => &[("Type", "string", ".type")],
        "leases" => &[("Holder", "string", ".spec.holderIdentity")],
        _ => &[],
    };
    for (name, kind, path) in extra {
        result.push((json!({"name": name, "type": kind, "format": "", "description": "", "priority": 0}), path.to_string()));
    }
    result.push(age_column);
    result
}

/// Renders one cell.
fn cell(object: &Value, definition: &Value, path: &str) -> Value {
    let value = simple_json_path(object, path);
    match (definition["type"].as_str(), value) {
        (_, None) | (_, Some(Value::Null)) => Value::Null,
        (Some("date"), Some(Value::String(text))) => json!(human_age(text)),
        (Some("string"), Some(Value::String(text))) => json!(text),
        (Some("string"), Some(other)) => json!(other.to_string()),
        (_, Some(other)) => other.clone(),
    }
}

/// Renders objects as a `meta.k8s.io/v1` Table; rows carry `PartialObjectMetadata` unless `include_object` is `Object`.
pub fn render(resource: &ResourceType, objects: &[&Value], list_metadata: Value, include_object: &str) -> Value {
    let columns = columns(resource);
    let definitions: Vec<Value> = columns.iter().map(|(definition, _)| definition.clone()).collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns
                .iter()
                .map(|(definition, path)| cell(object, definition, path))
                .collect();
            let embedded = match include_object {
                "None" => Value::Null,
                "Object" => (*object).clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]}),
            };
            json!({"cells": cells, "object": embedded})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}
