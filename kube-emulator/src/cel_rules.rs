//! Evaluation of `x-kubernetes-validations` CEL rules with the `cel` crate.

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The result of evaluating one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutcome {
    /// The rule held.
    Passed,
    /// The rule evaluated to false; carries the message to report.
    Failed(String),
    /// The rule could not be compiled or evaluated; carries the reason (logged, not rejected).
    Unevaluable(String),
}

/// Compiled programs by source text.
fn program_cache() -> &'static Mutex<HashMap<String, Option<Arc<Program>>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Program>>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A fresh evaluation context over the one standard library, built once: building it (every
/// function overload, with regexes) for each rule was most of a write's CPU in the emulator.
fn context() -> Context<'static, 'static> {
    static STDLIB: OnceLock<Arc<Env>> = OnceLock::new();
    Context::with_env(STDLIB.get_or_init(|| Arc::new(Env::stdlib())).clone())
}

/// Compiles (or fetches from the cache) a CEL program.
fn compile(source: &str) -> Result<Arc<Program>, String> {
    let mut cache = program_cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(entry) = cache.get(source) {
        return entry
            .clone()
            .ok_or_else(|| format!("rule {source:?} does not compile"));
    }
    let compiled = Program::compile(source).ok().map(Arc::new);
    cache.insert(source.to_string(), compiled.clone());
    compiled.ok_or_else(|| format!("rule {source:?} does not compile"))
}

/// Converts JSON to a CEL value following the schema (strings of `format: date-time` become timestamps).
pub fn to_cel(value: &Value, schema: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                CelValue::Int(integer)
            } else if let Some(unsigned) = number.as_u64() {
                CelValue::UInt(unsigned)
            } else {
                CelValue::Float(number.as_f64().unwrap_or_default())
            }
        }
        Value::String(text) => {
            if schema["format"].as_str() == Some("date-time")
                && let Ok(parsed) = chrono::DateTime::parse_from_rfc3339(text)
            {
                return CelValue::Timestamp(parsed);
            }
            CelValue::String(Arc::new(text.clone()))
        }
        Value::Array(items) => CelValue::List(Arc::new(
            items
                .iter()
                .map(|item| to_cel(item, &schema["items"]))
                .collect(),
        )),
        Value::Object(fields) => {
            let mut map: HashMap<Key, CelValue> = HashMap::with_capacity(fields.len());
            for (key, field) in fields {
                let field_schema = match schema["properties"].get(key) {
                    Some(found) => found,
                    None => &schema["additionalProperties"],
                };
                map.insert(
                    Key::String(Arc::new(key.clone())),
                    to_cel(field, field_schema),
                );
            }
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Evaluates one rule against `self` (and `oldSelf` when given).
pub fn evaluate(
    rule: &Value,
    self_value: &Value,
    old_value: Option<&Value>,
    schema: &Value,
) -> RuleOutcome {
    let Some(source) = rule["rule"].as_str() else {
        return RuleOutcome::Unevaluable("rule without text".to_string());
    };
    let program = match compile(source) {
        Ok(program) => program,
        Err(reason) => return RuleOutcome::Unevaluable(reason),
    };
    let mut context = context();
    context.add_variable_from_value("self", to_cel(self_value, schema));
    if let Some(old) = old_value {
        context.add_variable_from_value("oldSelf", to_cel(old, schema));
    }
    match program.execute(&context) {
        Ok(CelValue::Bool(true)) => RuleOutcome::Passed,
        Ok(CelValue::Bool(false)) => RuleOutcome::Failed(failure_message(rule, &context, source)),
        Ok(other) => {
            RuleOutcome::Unevaluable(format!("rule {source:?} returned {other:?}, not a bool"))
        }
        Err(error) => {
            RuleOutcome::Unevaluable(format!("rule {source:?} failed to evaluate: {error}"))
        }
    }
}

/// Evaluates a boolean expression over named JSON variables (no schema: strings stay strings), as
/// admission `matchConditions` do with `object`, `oldObject` and `request`. An error or a
/// non-boolean result is `Err` with the reason.
pub fn evaluate_condition(expression: &str, variables: &[(&str, &Value)]) -> Result<bool, String> {
    let program = compile(expression)?;
    let mut context = context();
    for (name, value) in variables {
        context.add_variable_from_value(*name, to_cel(value, &Value::Null));
    }
    match program.execute(&context) {
        Ok(CelValue::Bool(result)) => Ok(result),
        Ok(other) => Err(format!(
            "expression {expression:?} returned {other:?}, not a bool"
        )),
        Err(error) => Err(format!(
            "expression {expression:?} failed to evaluate: {error}"
        )),
    }
}

/// The message of a failed rule: `messageExpression`, else `message`, else `failed rule: <rule>`.
fn failure_message(rule: &Value, context: &Context, source: &str) -> String {
    if let Some(expression) = rule["messageExpression"].as_str()
        && let Ok(program) = compile(expression)
        && let Ok(CelValue::String(text)) = program.execute(context)
    {
        return text.to_string();
    }
    match rule["message"].as_str() {
        Some(message) if !message.is_empty() => message.to_string(),
        _ => format!("failed rule: {source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rule: &str, value: Value, schema: Value) -> RuleOutcome {
        evaluate(&json!({"rule": rule}), &value, None, &schema)
    }

    #[test]
    fn supports_the_functions_the_controller_crds_use() {
        let window = json!({"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"});
        let formats = json!({"properties": {"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}});
        assert_eq!(
            check("self.start < self.end", window.clone(), formats.clone()),
            RuleOutcome::Passed
        );
        assert_eq!(
            check(
                "timestamp(self.start) < timestamp(self.end)",
                window.clone(),
                json!({})
            ),
            RuleOutcome::Passed
        );
        assert_eq!(
            check(
                "timestamp(self.start) < timestamp(self.end)",
                window,
                formats
            ),
            RuleOutcome::Passed
        );
        assert_eq!(
            check(
                "duration(self) > duration('0s') && duration(self) <= duration('168h')",
                json!("24h"),
                json!({})
            ),
            RuleOutcome::Passed
        );
        assert!(matches!(
            check(
                "duration(self) <= duration('168h')",
                json!("200h"),
                json!({})
            ),
            RuleOutcome::Failed(_)
        ));
        assert_eq!(
            check(
                "self.all(a, a.matches('^[0-9]{12}$'))",
                json!(["123456789012"]),
                json!({})
            ),
            RuleOutcome::Passed
        );
        assert!(matches!(
            check(
                "self.all(a, a.matches('^[0-9]{12}$'))",
                json!(["x"]),
                json!({})
            ),
            RuleOutcome::Failed(_)
        ));
        assert_eq!(
            check("self.exists(a, a == 'x')", json!(["x"]), json!({})),
            RuleOutcome::Passed
        );
        assert_eq!(
            check("size(self) > 0", json!(["x"]), json!({})),
            RuleOutcome::Passed
        );
        assert_eq!(
            check("has(self.x)", json!({"x": 1}), json!({})),
            RuleOutcome::Passed
        );
        assert!(matches!(
            check("has(self.y)", json!({"x": 1}), json!({})),
            RuleOutcome::Failed(_)
        ));
        assert_eq!(
            check(
                "self.kind == 'IamRole' ? self.arn.matches('^arn:aws:iam::[0-9]{12}:role/.+$') : true",
                json!({"kind": "IamRole", "arn": "arn:aws:iam::123456789012:role/x"}),
                json!({})
            ),
            RuleOutcome::Passed
        );
    }

    #[test]
    fn message_expression_and_old_self() {
        let rule = json!({"rule": "self == oldSelf", "messageExpression": "'changed from ' + oldSelf", "message": "immutable"});
        assert_eq!(
            evaluate(&rule, &json!("b"), Some(&json!("a")), &json!({})),
            RuleOutcome::Failed("changed from a".to_string())
        );
    }
}
