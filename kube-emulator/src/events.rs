//! Conversion between `events.k8s.io/v1` and core `v1` Events, which share one storage like on a real server.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ only in name.
const RENAMES: [(&str, &str); 13] = [
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("type", "type"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
];

/// Fields beyond [`RENAMES`].
const MORE_RENAMES: [(&str, &str); 2] = [
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Copies renamed fields from `source` into a new object with the given type meta.
fn convert(source: &Value, api_version: &str, to_core: bool) -> Value {
    let mut target = Map::new();
    target.insert("apiVersion".into(), Value::String(api_version.to_string()));
    target.insert("kind".into(), Value::String("Event".to_string()));
    for (events_name, core_name) in RENAMES.iter().chain(MORE_RENAMES.iter()) {
        let (from, to) = if to_core {
            (events_name, core_name)
        } else {
            (core_name, events_name)
        };
        if let Some(value) = source.get(*from).filter(|value| !value.is_null()) {
            target.insert((*to).to_string(), value.clone());
        }
    }
    Value::Object(target)
}

/// Whether a type is `events.k8s.io` Events.
pub fn is_events_v1(group: &str, plural: &str) -> bool {
    group == "events.k8s.io" && plural == "events"
}

/// An `events.k8s.io/v1` Event as stored (core/v1 form).
pub fn to_core(event: &Value) -> Value {
    convert(event, "v1", true)
}

/// A stored (core/v1) Event as `events.k8s.io/v1`.
pub fn to_events_v1(core: &Value) -> Value {
    convert(core, "events.k8s.io/v1", false)
}

/// Rewrites an events.k8s.io field-selector path to the stored form.
pub fn core_field_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("regarding.") {
        return format!("involvedObject.{rest}");
    }
    match path {
        "reportingController" => "reportingComponent".to_string(),
        "note" => "message".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"name": "x"}, "note": "hello", "reportingController": "c", "series": {"count": 2}});
        let core = to_core(&event);
        assert_eq!(core["involvedObject"]["name"], "x");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "c");
        assert_eq!(to_events_v1(&core), event);
    }
}
