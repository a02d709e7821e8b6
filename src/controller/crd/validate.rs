//! Checks a GuardrailPolicy or Quarantine the way the API server would (the CRD's OpenAPI schema:
//! types, required, enum, pattern, lengths, bounds; then its CEL rules, evaluated with `kube`'s
//! client-side CEL engine), so `simulate` and the controller reject exactly what `kubectl apply`
//! would. The CRD generated from our types is the single source of truth. Pure; no I/O.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;
use std::fmt;

/// One rejected field: a JSON path such as `spec.scope.principals[0].arn` and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, dot-separated with `[i]` for list items.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validates a serialized GuardrailPolicy against its CRD schema and CEL rules.
pub fn guardrail_policy(object: &Value) -> Vec<FieldError> {
    against_crd(&super::GuardrailPolicy::crd(), object)
}

/// Validates a serialized Quarantine against its CRD schema and CEL rules.
pub fn quarantine(object: &Value) -> Vec<FieldError> {
    against_crd(&super::Quarantine::crd(), object)
}

/// Validates an object against the first version's `openAPIV3Schema` of a CRD.
pub fn against_crd(crd: &CustomResourceDefinition, object: &Value) -> Vec<FieldError> {
    let Some(schema) = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
    else {
        return vec![FieldError {
            field: String::new(),
            message: "the CRD has no openAPIV3Schema".into(),
        }];
    };
    let mut errors = Vec::new();
    // Only spec is user input; metadata and status are the server's and the controller's.
    if let (Some(spec_schema), Some(spec)) =
        (schema.pointer("/properties/spec"), object.get("spec"))
    {
        structural(spec_schema, spec, "spec", &mut errors);
    } else if object.get("spec").is_none() {
        errors.push(FieldError {
            field: "spec".into(),
            message: "Required value".into(),
        });
    }
    if errors.is_empty() {
        // CEL rules assume a structurally valid object (as in the API server, which runs them after the schema).
        if let Err(cel_errors) = kube::core::cel::Validator::new().validate(&schema, object, None) {
            for e in cel_errors.into_vec() {
                errors.push(FieldError {
                    field: e.field_path.trim_start_matches('.').to_string(),
                    message: e.message,
                });
            }
        }
    }
    errors
}

fn push(errors: &mut Vec<FieldError>, path: &str, message: String) {
    errors.push(FieldError {
        field: path.to_string(),
        message,
    });
}

/// The OpenAPI v3 subset our CRDs use: type, nullable, required, properties, items, enum,
/// pattern, min/maxLength, min/maxItems, minimum/maximum, date-time format, list-map keys.
fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            push(errors, path, "must not be null".into());
        }
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str);
    let type_ok = match expected {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        push(
            errors,
            path,
            format!("Invalid value: must be of type {}", expected.unwrap_or("?")),
        );
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        push(
            errors,
            path,
            format!(
                "Unsupported value: {value}: supported values: {}",
                names.join(", ")
            ),
        );
    }
    match value {
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    push(
                        errors,
                        &format!("{path}.{required}"),
                        "Required value".into(),
                    );
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            for (key, child) in map {
                match properties.and_then(|p| p.get(key)) {
                    Some(child_schema) => {
                        structural(child_schema, child, &format!("{path}.{key}"), errors)
                    }
                    None if !preserve && properties.is_some() => {
                        push(errors, &format!("{path}.{key}"), "unknown field".into())
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            bound(
                schema,
                "minItems",
                "maxItems",
                items.len(),
                "items",
                path,
                errors,
            );
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    structural(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen = std::collections::HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys
                        .iter()
                        .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                        .collect();
                    if !seen.insert(key) {
                        push(errors, &format!("{path}[{i}]"), "Duplicate value".into());
                    }
                }
            }
        }
        Value::String(text) => {
            bound(
                schema,
                "minLength",
                "maxLength",
                text.chars().count(),
                "characters",
                path,
                errors,
            );
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(text) => push(
                        errors,
                        path,
                        format!("Invalid value: {text:?}: should match '{pattern}'"),
                    ),
                    Ok(_) => {}
                    Err(e) => push(
                        errors,
                        path,
                        format!("schema pattern does not compile: {e}"),
                    ),
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && text.parse::<jiff::Timestamp>().is_err()
            {
                push(
                    errors,
                    path,
                    format!("Invalid value: {text:?}: must be an RFC 3339 date-time"),
                );
            }
        }
        Value::Number(number) => {
            if let Some(n) = number.as_f64() {
                if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                    && n < min
                {
                    push(
                        errors,
                        path,
                        format!("Invalid value: {n}: should be greater than or equal to {min}"),
                    );
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                    && n > max
                {
                    push(
                        errors,
                        path,
                        format!("Invalid value: {n}: should be less than or equal to {max}"),
                    );
                }
            }
        }
        _ => {}
    }
}

fn bound(
    schema: &Value,
    min_key: &str,
    max_key: &str,
    actual: usize,
    unit: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let actual = actual as u64;
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64)
        && actual < min
    {
        push(
            errors,
            path,
            format!("Invalid value: must have at least {min} {unit}"),
        );
    }
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64)
        && actual > max
    {
        push(
            errors,
            path,
            format!("Too long: must have at most {max} {unit}"),
        );
    }
}
