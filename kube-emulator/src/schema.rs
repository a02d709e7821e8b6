//! Structural-schema processing of custom resources: pruning, defaulting, validation and CEL rules.

use crate::cel_rules::{self, RuleOutcome};
use crate::error::Cause;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// What processing an object against its schema found.
#[derive(Debug, Default)]
pub struct SchemaOutcome {
    /// Validation failures.
    pub causes: Vec<Cause>,
    /// Paths of fields not declared in the schema (pruned).
    pub unknown_fields: Vec<String>,
    /// Rules that could not be evaluated (not enforced).
    pub unevaluated_rules: Vec<String>,
}

/// Prunes, defaults and validates `object` (a whole custom resource) in place.
pub fn process(object: &mut Value, old: Option<&Value>, schema: &Value) -> SchemaOutcome {
    let mut outcome = SchemaOutcome::default();
    let Some(fields) = object.as_object_mut() else {
        outcome
            .causes
            .push(Cause::new("FieldValueInvalid", "", "object expected"));
        return outcome;
    };
    let properties = &schema["properties"];
    let keys: Vec<String> = fields.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if properties.get(&key).is_none() && !preserves_unknown(schema) {
            fields.remove(&key);
            outcome.unknown_fields.push(key.clone());
        }
    }
    apply_defaults(fields, schema);
    for (key, property) in properties.as_object().into_iter().flatten() {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(value) = fields.get_mut(key) {
            let old_child = old.and_then(|old| old.get(key));
            walk(value, old_child, property, key, &mut outcome);
        }
    }
    check_required(fields, schema, "", &mut outcome);
    let view = Value::Object(fields.clone());
    run_rules(&view, old, schema, "", &mut outcome);
    outcome
}

/// Whether the schema keeps unknown fields.
fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Joins a parent path and a field name.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Inserts missing defaulted properties, and drops/defaults non-nullable nulls.
fn apply_defaults(fields: &mut Map<String, Value>, schema: &Value) {
    for (key, property) in schema["properties"].as_object().into_iter().flatten() {
        let nullable = property["nullable"].as_bool() == Some(true);
        match fields.get(key) {
            Some(Value::Null) if !nullable => {
                if let Some(default) = property.get("default") {
                    fields.insert(key.clone(), default.clone());
                } else {
                    fields.remove(key);
                }
            }
            None => {
                if let Some(default) = property.get("default") {
                    fields.insert(key.clone(), default.clone());
                }
            }
            _ => {}
        }
    }
}

/// Reports missing required properties.
fn check_required(
    fields: &Map<String, Value>,
    schema: &Value,
    path: &str,
    outcome: &mut SchemaOutcome,
) {
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !fields.contains_key(name)
        {
            outcome.causes.push(Cause::new(
                "FieldValueRequired",
                &join(path, name),
                "Required value",
            ));
        }
    }
}

/// The JSON type name of a value as Kubernetes reports it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compiled regex patterns by source.
fn pattern(source: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(source.to_string())
        .or_insert_with(|| Regex::new(source).ok())
        .clone()
}

/// Validates, prunes and defaults one value against its schema node.
fn walk(
    value: &mut Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    outcome: &mut SchemaOutcome,
) {
    if value.is_null() {
        if schema["nullable"].as_bool() != Some(true) {
            outcome.causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    let actual = type_name(value);
    if int_or_string {
        if actual != "integer" && actual != "string" {
            outcome.causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"{actual}\": {path} in body must be of type integer-or-string: \"{actual}\""),
            ));
            return;
        }
    } else if let Some(expected) = schema["type"].as_str() {
        let matches = expected == actual || (expected == "number" && actual == "integer");
        if !matches {
            outcome.causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        outcome.causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                value,
                supported.join(", ")
            ),
        ));
    }
    match value {
        Value::Object(fields) => walk_object(fields, old, schema, path, outcome),
        Value::Array(items) => walk_array(items, old, schema, path, outcome),
        Value::String(text) => check_string(text, schema, path, outcome),
        Value::Number(number) => check_number(number, schema, path, outcome),
        _ => {}
    }
    run_rules(value, old, schema, path, outcome);
}

/// Object nodes: pruning, defaults, properties, additionalProperties, required.
fn walk_object(
    fields: &mut Map<String, Value>,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    outcome: &mut SchemaOutcome,
) {
    let properties = schema["properties"].as_object();
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
    if !preserves_unknown(schema)
        && additional.is_none()
        && schema["additionalProperties"].as_bool() != Some(true)
    {
        let keys: Vec<String> = fields.keys().cloned().collect();
        for key in keys {
            let declared = properties.is_some_and(|p| p.contains_key(&key));
            let embedded_meta =
                embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
            if !declared && !embedded_meta {
                fields.remove(&key);
                outcome.unknown_fields.push(join(path, &key));
            }
        }
    }
    apply_defaults(fields, schema);
    for (key, value) in fields.iter_mut() {
        let child_path = join(path, key);
        let old_child = old.and_then(|old| old.get(key));
        if let Some(property) = properties.and_then(|p| p.get(key)) {
            walk(value, old_child, property, &child_path, outcome);
        } else if let Some(additional) = additional {
            walk(value, old_child, additional, &child_path, outcome);
        }
    }
    check_required(fields, schema, path, outcome);
    let count = fields.len() as u64;
    if let Some(minimum) = schema["minProperties"].as_u64()
        && count < minimum
    {
        outcome.causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {count}: {path} in body should have at least {minimum} properties"
            ),
        ));
    }
    if let Some(maximum) = schema["maxProperties"].as_u64()
        && count > maximum
    {
        outcome.causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {count}: must have at most {maximum} items"),
        ));
    }
}

/// Array nodes: items, sizes, list-type uniqueness.
fn walk_array(
    items: &mut [Value],
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    outcome: &mut SchemaOutcome,
) {
    let _ = old;
    let item_schema = &schema["items"];
    for (index, item) in items.iter_mut().enumerate() {
        if item_schema.is_object() {
            walk(
                item,
                None,
                item_schema,
                &format!("{path}[{index}]"),
                outcome,
            );
        }
    }
    let count = items.len() as u64;
    if let Some(minimum) = schema["minItems"].as_u64()
        && count < minimum
    {
        outcome.causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {count}: {path} in body should have at least {minimum} items"),
        ));
    }
    if let Some(maximum) = schema["maxItems"].as_u64()
        && count > maximum
    {
        outcome.causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {count}: must have at most {maximum} items"),
        ));
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => {
            let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut seen: Vec<Vec<&Value>> = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let identity: Vec<&Value> = keys.iter().map(|key| &item[*key]).collect();
                if seen.contains(&identity) {
                    let rendered: Map<String, Value> = keys
                        .iter()
                        .map(|key| (key.to_string(), item[*key].clone()))
                        .collect();
                    outcome.causes.push(Cause::new(
                        "FieldValueDuplicate",
                        &format!("{path}[{index}]"),
                        format!("Duplicate value: {}", Value::Object(rendered)),
                    ));
                } else {
                    seen.push(identity);
                }
            }
        }
        Some("set") => {
            for (index, item) in items.iter().enumerate() {
                if items[..index].contains(item) {
                    outcome.causes.push(Cause::new(
                        "FieldValueDuplicate",
                        &format!("{path}[{index}]"),
                        format!("Duplicate value: {item}"),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// String constraints: pattern, lengths, formats.
fn check_string(text: &str, schema: &Value, path: &str, outcome: &mut SchemaOutcome) {
    let length = text.chars().count() as u64;
    let quoted = Value::String(text.to_string());
    if let Some(minimum) = schema["minLength"].as_u64()
        && length < minimum
    {
        outcome.causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {quoted}: {path} in body should be at least {minimum} chars long"
            ),
        ));
    }
    if let Some(maximum) = schema["maxLength"].as_u64()
        && length > maximum
    {
        outcome.causes.push(Cause::new(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {maximum} bytes"),
        ));
    }
    if let Some(source) = schema["pattern"].as_str() {
        match pattern(source) {
            Some(regex) if !regex.is_match(text) => outcome.causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {quoted}: {path} in body should match '{source}'"),
            )),
            Some(_) => {}
            None => outcome.unevaluated_rules.push(format!(
                "{path}: pattern {source:?} is not a supported regex"
            )),
        }
    }
    if schema["format"].as_str() == Some("date-time") && text.parse::<jiff::Timestamp>().is_err() {
        outcome.causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {quoted}: {path} in body must be of type date-time: {quoted}"),
        ));
    }
}

/// Numeric constraints: minimum/maximum (with exclusive flags) and multipleOf.
fn check_number(
    number: &serde_json::Number,
    schema: &Value,
    path: &str,
    outcome: &mut SchemaOutcome,
) {
    let Some(value) = number.as_f64() else {
        return;
    };
    if let Some(minimum) = schema["minimum"].as_f64() {
        let exclusive = schema["exclusiveMinimum"].as_bool() == Some(true);
        if value < minimum || (exclusive && value == minimum) {
            let relation = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            outcome.causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {number}: {path} in body should be {relation} {}",
                    schema["minimum"]
                ),
            ));
        }
    }
    if let Some(maximum) = schema["maximum"].as_f64() {
        let exclusive = schema["exclusiveMaximum"].as_bool() == Some(true);
        if value > maximum || (exclusive && value == maximum) {
            let relation = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            outcome.causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {number}: {path} in body should be {relation} {}",
                    schema["maximum"]
                ),
            ));
        }
    }
    if let Some(divisor) = schema["multipleOf"].as_f64()
        && divisor != 0.0
        && (value / divisor).fract() != 0.0
    {
        outcome.causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {number}: {path} in body should be a multiple of {}",
                schema["multipleOf"]
            ),
        ));
    }
}

/// Runs the node's `x-kubernetes-validations` rules.
fn run_rules(
    value: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    outcome: &mut SchemaOutcome,
) {
    let Some(rules) = schema["x-kubernetes-validations"].as_array() else {
        return;
    };
    for rule in rules {
        let source = rule["rule"].as_str().unwrap_or_default();
        let transition = source.contains("oldSelf");
        if transition && old.is_none() {
            continue;
        }
        let old_value = if transition { old } else { None };
        match cel_rules::evaluate(rule, value, old_value, schema) {
            RuleOutcome::Passed => {}
            RuleOutcome::Failed(message) => {
                let field = match rule["fieldPath"].as_str() {
                    Some(relative) => format!("{path}{relative}")
                        .trim_start_matches('.')
                        .to_string(),
                    None => path.to_string(),
                };
                let reason = rule["reason"].as_str().unwrap_or("FieldValueInvalid");
                let shown = match reason {
                    "FieldValueRequired" => "Required value".to_string(),
                    "FieldValueForbidden" => format!("Forbidden: {message}"),
                    "FieldValueDuplicate" => format!("Duplicate value: {message}"),
                    _ => format!("Invalid value: \"{}\": {message}", type_name(value)),
                };
                outcome.causes.push(Cause::new(reason, &field, shown));
            }
            RuleOutcome::Unevaluable(reason) => {
                tracing::warn!(path, reason, "CEL rule not enforced");
                outcome.unevaluated_rules.push(format!("{path}: {reason}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "nested": {"type": "object", "properties": {"flag": {"type": "boolean", "default": true}}},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}}
                        },
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    },
                    "x-kubernetes-validations": [{"rule": "self.size < 9", "message": "too big"}]
                }
            }
        })
    }

    #[test]
    fn defaults_prunes_and_validates() {
        let mut object = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 3, "extra": 1, "nested": {}, "port": "http", "free": {"any": 1}}, "junk": 1});
        let outcome = process(&mut object, None, &widget_schema());
        assert!(outcome.causes.is_empty(), "{:?}", outcome.causes);
        assert_eq!(
            outcome.unknown_fields,
            vec!["junk".to_string(), "spec.extra".to_string()]
        );
        assert_eq!(object["spec"]["color"], "red");
        assert_eq!(object["spec"]["nested"]["flag"], true);
        assert_eq!(object["spec"]["free"]["any"], 1);
    }

    #[test]
    fn reports_every_violation() {
        let mut object = json!({"spec": {"size": 20, "color": "green", "name": "ABCDEFG",
            "ports": [{"name": "a"}, {"name": "a"}], "port": true}});
        let outcome = process(&mut object, None, &widget_schema());
        let fields: Vec<&str> = outcome.causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"spec.size"), "{fields:?}");
        assert!(fields.contains(&"spec.color"));
        assert!(fields.contains(&"spec.name"));
        assert!(fields.contains(&"spec.ports[1]"));
        assert!(fields.contains(&"spec.port"));
        assert!(outcome.causes.iter().any(|c| c.message.contains("too big")));
        let mut missing = json!({"spec": {}});
        let outcome = process(&mut missing, None, &widget_schema());
        assert_eq!(outcome.causes[0].field, "spec.size");
        assert_eq!(outcome.causes[0].reason, "FieldValueRequired");
    }

    #[test]
    fn formats_nullable_and_int_or_string() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "maybe": {"type": "string", "nullable": true},
            "gone": {"type": "string"},
            "defaulted": {"type": "string", "default": "x"},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}, "minItems": 1}
        }}}});
        let mut good = json!({"spec": {"at": "2026-01-01T00:00:00Z", "maybe": null, "gone": null, "defaulted": null, "port": 80, "tags": ["a"]}});
        let outcome = process(&mut good, None, &schema);
        assert!(outcome.causes.is_empty(), "{:?}", outcome.causes);
        assert!(
            good["spec"]["maybe"].is_null() && good["spec"].get("maybe").is_some(),
            "nullable keeps null"
        );
        assert!(
            good["spec"].get("gone").is_none(),
            "non-nullable null without default is dropped"
        );
        assert_eq!(
            good["spec"]["defaulted"], "x",
            "non-nullable null with default is defaulted"
        );
        let mut bad = json!({"spec": {"at": "yesterday", "port": 1.5, "tags": ["a", "a"]}});
        let outcome = process(&mut bad, None, &schema);
        let reasons: Vec<(&str, &str)> = outcome
            .causes
            .iter()
            .map(|c| (c.field.as_str(), c.reason.as_str()))
            .collect();
        assert!(
            reasons.contains(&("spec.at", "FieldValueInvalid")),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&("spec.port", "FieldValueTypeInvalid")),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&("spec.tags[1]", "FieldValueDuplicate")),
            "{reasons:?}"
        );
        let mut empty = json!({"spec": {"tags": []}});
        assert_eq!(
            process(&mut empty, None, &schema).causes[0].field,
            "spec.tags"
        );
    }

    #[test]
    fn cel_field_path_reason_and_transition_rules() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"size": {"type": "integer"}, "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}]}},
            "x-kubernetes-validations": [{"rule": "self.size < 5", "message": "too big", "fieldPath": ".size", "reason": "FieldValueForbidden"}]}}});
        let mut object = json!({"spec": {"size": 9, "name": "a"}});
        let outcome = process(&mut object, None, &schema);
        assert_eq!(
            outcome.causes.len(),
            1,
            "transition rules are skipped on create: {:?}",
            outcome.causes
        );
        assert_eq!(outcome.causes[0].field, "spec.size");
        assert_eq!(outcome.causes[0].reason, "FieldValueForbidden");
        assert_eq!(outcome.causes[0].message, "Forbidden: too big");
        let old = json!({"spec": {"size": 1, "name": "a"}});
        let mut renamed = json!({"spec": {"size": 1, "name": "b"}});
        let outcome = process(&mut renamed, Some(&old), &schema);
        assert_eq!(outcome.causes.len(), 1);
        assert_eq!(outcome.causes[0].field, "spec.name");
        assert!(outcome.causes[0].message.contains("name is immutable"));
    }
}
