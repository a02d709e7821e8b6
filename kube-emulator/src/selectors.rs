//! Label and field selectors: parsing and matching against JSON objects.

use crate::error::ApiError;
use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value`.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    /// The requirements, ANDed.
    requirements: Vec<LabelRequirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for character in text.chars() {
        match character {
            '(' => {
                depth += 1;
                current.push(character);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                current.push(character);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(character),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|part| part.trim().to_string())
        .filter(|part| !part.is_empty())
        .collect()
}

/// Parses `(a, b)` into its values.
fn parse_set(text: &str) -> Result<Vec<String>, ApiError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!("unable to parse requirement: set {text:?}"))
        })?;
    Ok(inner
        .split(',')
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let requirement = if let Some(key) = part.strip_prefix('!') {
                LabelRequirement::DoesNotExist(key.trim().to_string())
            } else if let Some((key, values)) = part.split_once(" notin ") {
                LabelRequirement::NotIn(key.trim().to_string(), parse_set(values)?)
            } else if let Some((key, values)) = part.split_once(" in ") {
                LabelRequirement::In(key.trim().to_string(), parse_set(values)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = part.split_once("==") {
                LabelRequirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = part.split_once('=') {
                LabelRequirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else {
                let key = part.trim();
                if key.contains(' ') || key.contains('(') {
                    return Err(ApiError::bad_request(format!(
                        "unable to parse requirement: {part:?}"
                    )));
                }
                LabelRequirement::Exists(key.to_string())
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether the selector matches an object's labels.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
                LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
                LabelRequirement::In(key, values) => {
                    label(key).is_some_and(|found| values.iter().any(|v| v == found))
                }
                LabelRequirement::NotIn(key, values) => {
                    label(key).is_none_or(|found| !values.iter().any(|v| v == found))
                }
                LabelRequirement::Exists(key) => label(key).is_some(),
                LabelRequirement::DoesNotExist(key) => label(key).is_none(),
            })
    }
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, ANDed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    /// (dotted path, value, negated).
    requirements: Vec<(String, String, bool)>,
}

/// Field paths selectable on events (besides `metadata.name`/`metadata.namespace`).
const EVENT_FIELDS: [&str; 16] = [
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
];

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax; `plural` limits the supported fields like a real server.
    pub fn parse(text: &str, plural: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (path, value, negated) = if let Some((path, value)) = part.split_once("!=") {
                (path, value, true)
            } else if let Some((path, value)) = part.split_once("==") {
                (path, value, false)
            } else if let Some((path, value)) = part.split_once('=') {
                (path, value, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let path = path.trim();
            let supported = path == "metadata.name"
                || path == "metadata.namespace"
                || (plural == "events" && EVENT_FIELDS.contains(&path))
                || (plural == "secrets" && path == "type")
                || (plural == "namespaces" && path == "status.phase");
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            }
            let stored_path = if plural == "events" {
                crate::events::core_field_path(path)
            } else {
                path.to_string()
            };
            requirements.push((stored_path, value.trim().to_string(), negated));
        }
        Ok(Self { requirements })
    }

    /// Whether the selector matches an object.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(path, expected, negated)| {
            let mut current = object;
            for segment in path.split('.') {
                current = &current[segment];
            }
            let actual = match current {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *expected) != *negated
        })
    }

    /// The value required for `metadata.name`, if any (lets watches skip work).
    pub fn required_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|(path, _, negated)| path == "metadata.name" && !negated)
            .map(|(_, value, _)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("missing notin (x)", true),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).unwrap();
            assert_eq!(selector.matches(&object), expected, "{text}");
        }
    }

    #[test]
    fn field_selectors_reject_unsupported_fields() {
        assert!(FieldSelector::parse("spec.x=1", "widgets").is_err());
        let selector =
            FieldSelector::parse("involvedObject.name=a,involvedObject.namespace=b", "events")
                .unwrap();
        assert!(selector.matches(&json!({"involvedObject": {"name": "a", "namespace": "b"}})));
    }
}
