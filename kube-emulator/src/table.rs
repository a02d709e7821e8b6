//! Server-side `Table` rendering (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

use crate::resources::ResourceType;
use serde_json::{Value, json};

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
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

/// One step of a printer-column JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name`.
    Field(String),
    /// `[3]`.
    Index(usize),
    /// `[*]`.
    All,
    /// `[?(@.path=="value")]`.
    Filter(Vec<String>, Value),
}

/// Parses the JSONPath subset used by printer columns: fields, indexes, `[*]` and `[?(@.a.b=="v")]`.
fn parse_steps(path: &str) -> Option<Vec<Step>> {
    let trimmed = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = trimmed.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            let inner = &after[..close];
            rest = &after[close + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(index) = inner.parse::<usize>() {
                steps.push(Step::Index(index));
            } else {
                let filter = inner.strip_prefix("?(@.")?.strip_suffix(')')?;
                let (field, value) = filter.split_once("==")?;
                let value = value.trim();
                let literal =
                    if let Some(text) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                        Value::String(text.to_string())
                    } else if let Some(text) =
                        value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))
                    {
                        Value::String(text.to_string())
                    } else {
                        serde_json::from_str(value).ok()?
                    };
                steps.push(Step::Filter(
                    field.trim().split('.').map(str::to_string).collect(),
                    literal,
                ));
            }
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end > 0 {
                steps.push(Step::Field(after[..end].to_string()));
            }
            rest = &after[end..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Some(steps)
}

/// Evaluates a printer-column JSONPath, returning every match.
pub fn json_path<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_steps(path) else {
        return Vec::new();
    };
    let mut current = vec![object];
    for step in &steps {
        let mut next = Vec::new();
        for value in current {
            match step {
                Step::Field(name) => next.extend(value.get(name)),
                Step::Index(index) => next.extend(value.get(*index)),
                Step::All => next.extend(value.as_array().into_iter().flatten()),
                Step::Filter(field, expected) => {
                    next.extend(value.as_array().into_iter().flatten().filter(|item| {
                        field
                            .iter()
                            .try_fold(*item, |current, key| current.get(key))
                            == Some(expected)
                    }))
                }
            }
        }
        current = next;
    }
    current
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
            result.push((
                definition,
                column["jsonPath"].as_str().unwrap_or_default().to_string(),
            ));
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
        result.push((
            json!({"name": name, "type": kind, "format": "", "description": "", "priority": 0}),
            path.to_string(),
        ));
    }
    result.push(age_column);
    result
}

/// Renders one cell (several matches are joined with commas, like kubectl).
fn cell(object: &Value, definition: &Value, path: &str) -> Value {
    let values: Vec<&Value> = json_path(object, path)
        .into_iter()
        .filter(|value| !value.is_null())
        .collect();
    let value = match values.as_slice() {
        [] => return Value::Null,
        [single] => *single,
        many => {
            let joined: Vec<String> = many
                .iter()
                .map(|value| match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            return json!(joined.join(","));
        }
    };
    match (definition["type"].as_str(), value) {
        (Some("date"), Value::String(text)) => json!(human_age(text)),
        (Some("string"), Value::String(text)) => json!(text),
        (Some("string"), other) => json!(other.to_string()),
        (_, other) => other.clone(),
    }
}

/// Renders objects as a `meta.k8s.io/v1` Table; rows carry `PartialObjectMetadata` unless `include_object` is `Object`.
pub fn render(
    resource: &ResourceType,
    objects: &[&Value],
    list_metadata: Value,
    include_object: &str,
) -> Value {
    let columns = columns(resource);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|(definition, _)| definition.clone())
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let object = json!({"status": {"phase": "Ready", "conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}, "spec": {"items": [{"n": 1}, {"n": 2}]}});
        assert_eq!(json_path(&object, ".status.phase"), vec![&json!("Ready")]);
        assert_eq!(
            json_path(&object, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("True")]
        );
        assert_eq!(json_path(&object, ".spec.items[1].n"), vec![&json!(2)]);
        assert_eq!(json_path(&object, ".spec.items[*].n").len(), 2);
        assert!(json_path(&object, ".missing.field").is_empty());
    }
}
