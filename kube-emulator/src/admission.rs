//! Admission webhooks (`admissionregistration.k8s.io/v1`): which webhooks of the stored
//! Validating and Mutating configurations a write reaches (rules, scope, namespace and object
//! selectors, `matchConditions`), the `AdmissionReview` v1 request sent, the answer's reading
//! (allowed, status, JSONPatch, warnings) and the errors the API server returns. Pure except
//! [`call_webhook`], the one HTTPS call; the server drives the order (mutating, then validating).
//! It must not store anything: the server persists the admitted object.

use crate::auth::UserInfo;
use crate::error::ApiError;
use base64::Engine as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The API group of webhook configurations.
pub const GROUP: &str = "admissionregistration.k8s.io";
/// The longest webhook answer read.
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Which kind of configuration a webhook comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// `MutatingWebhookConfiguration`: may answer a JSONPatch; called first, in order.
    Mutating,
    /// `ValidatingWebhookConfiguration`: allow or refuse only.
    Validating,
}

impl WebhookKind {
    /// The plural of the configuration resource.
    pub fn plural(self) -> &'static str {
        match self {
            WebhookKind::Mutating => "mutatingwebhookconfigurations",
            WebhookKind::Validating => "validatingwebhookconfigurations",
        }
    }
}

/// One webhook entry of a configuration.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Mutating or validating.
    pub kind: WebhookKind,
    /// The webhook's `name`.
    pub name: String,
    /// The entry as stored.
    pub spec: Value,
}

impl Webhook {
    /// `failurePolicy: Ignore` (the default is `Fail`).
    pub fn ignores_failures(&self) -> bool {
        self.spec["failurePolicy"].as_str() == Some("Ignore")
    }

    /// `timeoutSeconds` (default 10, bounded to 1..=30 like the API server validates).
    pub fn timeout(&self) -> Duration {
        let seconds = self.spec["timeoutSeconds"]
            .as_u64()
            .unwrap_or(10)
            .clamp(1, 30);
        Duration::from_secs(seconds)
    }

    /// Whether the webhook may be called for a dry-run request (`sideEffects: None|NoneOnDryRun`).
    pub fn supports_dry_run(&self) -> bool {
        matches!(
            self.spec["sideEffects"].as_str(),
            Some("None" | "NoneOnDryRun")
        )
    }

    /// Where the webhook is called, for messages.
    pub fn url(&self) -> String {
        match self.spec["clientConfig"]["url"].as_str() {
            Some(url) => url.to_string(),
            None => {
                let service = &self.spec["clientConfig"]["service"];
                format!(
                    "https://{}.{}.svc:{}{}",
                    service["name"].as_str().unwrap_or_default(),
                    service["namespace"].as_str().unwrap_or_default(),
                    service["port"].as_u64().unwrap_or(443),
                    service["path"].as_str().unwrap_or_default()
                )
            }
        }
    }
}

/// The webhooks of stored configurations of one kind, ordered by configuration name and then by
/// their order inside it (the API server's order).
pub fn webhooks_of(kind: WebhookKind, configurations: &[Arc<Value>]) -> Vec<Webhook> {
    let mut sorted: Vec<&Arc<Value>> = configurations.iter().collect();
    sorted.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    sorted
        .into_iter()
        .flat_map(|configuration| {
            configuration["webhooks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|spec| Webhook {
            kind,
            name: spec["name"].as_str().unwrap_or_default().to_string(),
            spec,
        })
        .collect()
}

/// What admission knows about one write.
#[derive(Debug, Clone)]
pub struct Attributes {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: String,
    /// API group of the request.
    pub group: String,
    /// Version of the request.
    pub version: String,
    /// Resource plural.
    pub resource: String,
    /// Subresource, empty for the main resource.
    pub subresource: String,
    /// Kind of the object.
    pub kind: String,
    /// Whether the resource is namespaced.
    pub namespaced: bool,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Object name (may be empty on create with `generateName`).
    pub name: String,
    /// Who asks.
    pub user: UserInfo,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// The object after the change (none for DELETE).
    pub object: Option<Value>,
    /// The object before the change (none for CREATE).
    pub old_object: Option<Value>,
    /// The labels of the request's namespace object (`Null` for cluster-scoped requests or an
    /// unknown namespace).
    pub namespace_labels: Value,
}

/// Whether any of the webhook's `rules` covers the request.
pub fn rules_match(webhook: &Webhook, attributes: &Attributes) -> bool {
    let contains = |list: &Value, wanted: &str| {
        list.as_array()
            .is_some_and(|items| items.iter().any(|item| item == "*" || item == wanted))
    };
    webhook.spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            contains(&rule["operations"], &attributes.operation)
                && contains(&rule["apiGroups"], &attributes.group)
                && contains(&rule["apiVersions"], &attributes.version)
                && rule["resources"].as_array().is_some_and(|resources| {
                    resources.iter().filter_map(Value::as_str).any(|pattern| {
                        resource_matches(pattern, &attributes.resource, &attributes.subresource)
                    })
                })
                && match rule["scope"].as_str().unwrap_or("*") {
                    "Cluster" => !attributes.namespaced,
                    "Namespaced" => attributes.namespaced,
                    _ => true,
                }
        })
}

/// One `resources` entry against a resource and subresource: `*` is every resource without
/// subresources, `*/*` everything, `r/*` every subresource of `r`, `*/s` subresource `s` of any.
fn resource_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    let (pattern_resource, pattern_subresource) = match pattern.split_once('/') {
        Some((resource, subresource)) => (resource, subresource),
        None => (pattern, ""),
    };
    let resource_ok = pattern_resource == "*" || pattern_resource == resource;
    let subresource_ok = if pattern_subresource == "*" {
        !subresource.is_empty() || pattern_resource == "*"
    } else {
        pattern_subresource == subresource
    };
    resource_ok && subresource_ok
}

/// A `metav1.LabelSelector` (matchLabels, matchExpressions) against a label map; an empty or
/// absent selector matches everything.
pub fn selector_matches(selector: &Value, labels: &Value) -> Result<bool, String> {
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    if let Some(match_labels) = selector["matchLabels"].as_object() {
        for (key, value) in match_labels {
            if label(key) != value.as_str() {
                return Ok(false);
            }
        }
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let holds = match expression["operator"].as_str().unwrap_or_default() {
            "In" => label(key).is_some_and(|value| values.contains(&value)),
            "NotIn" => !label(key).is_some_and(|value| values.contains(&value)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The labels of an object or `Null`.
fn labels_of(object: Option<&Value>) -> Value {
    object
        .map(|object| object["metadata"]["labels"].clone())
        .unwrap_or(Value::Null)
}

/// The `request` variable of `matchConditions` and the AdmissionReview's `request`.
pub fn review_request(attributes: &Attributes, uid: &str) -> Value {
    let gvk =
        json!({"group": attributes.group, "version": attributes.version, "kind": attributes.kind});
    let gvr = json!({"group": attributes.group, "version": attributes.version, "resource": attributes.resource});
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": attributes.name,
        "operation": attributes.operation,
        "userInfo": attributes.user.to_json(),
        "object": attributes.object.clone().unwrap_or(Value::Null),
        "oldObject": attributes.old_object.clone().unwrap_or(Value::Null),
        "dryRun": attributes.dry_run,
        "options": Value::Null,
    });
    if !attributes.subresource.is_empty() {
        request["subResource"] = json!(attributes.subresource);
        request["requestSubResource"] = json!(attributes.subresource);
    }
    if !attributes.namespace.is_empty() {
        request["namespace"] = json!(attributes.namespace);
    }
    request
}

/// Whether the webhook is to be called: rules, namespace and object selectors, then
/// `matchConditions` (all must be true). `Err` when a selector or condition cannot be evaluated
/// (the failure policy decides).
pub fn should_call(webhook: &Webhook, attributes: &Attributes) -> Result<bool, String> {
    if !rules_match(webhook, attributes) {
        return Ok(false);
    }
    let namespace_selector = &webhook.spec["namespaceSelector"];
    let namespace_labels = if attributes.resource == "namespaces" && attributes.group.is_empty() {
        labels_of(
            attributes
                .object
                .as_ref()
                .or(attributes.old_object.as_ref()),
        )
    } else if attributes.namespaced {
        attributes.namespace_labels.clone()
    } else {
        Value::Null
    };
    let cluster_scoped = !attributes.namespaced && attributes.resource != "namespaces";
    if !cluster_scoped && !selector_matches(namespace_selector, &namespace_labels)? {
        return Ok(false);
    }
    let object_selector = &webhook.spec["objectSelector"];
    let new_matches = selector_matches(object_selector, &labels_of(attributes.object.as_ref()))?;
    let old_matches =
        selector_matches(object_selector, &labels_of(attributes.old_object.as_ref()))?;
    if !new_matches && !old_matches {
        return Ok(false);
    }
    let request = review_request(attributes, "");
    let object = attributes.object.clone().unwrap_or(Value::Null);
    let old_object = attributes.old_object.clone().unwrap_or(Value::Null);
    for condition in webhook.spec["matchConditions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let expression = condition["expression"].as_str().unwrap_or_default();
        let name = condition["name"].as_str().unwrap_or_default();
        let holds = crate::cel_rules::evaluate_condition(
            expression,
            &[
                ("object", &object),
                ("oldObject", &old_object),
                ("request", &request),
            ],
        )
        .map_err(|error| format!("failed to evaluate match condition {name:?}: {error}"))?;
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The AdmissionReview v1 sent to a webhook.
pub fn review(attributes: &Attributes, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": review_request(attributes, uid),
    })
}

/// A webhook's answer, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `response.allowed`.
    pub allowed: bool,
    /// `response.status` (may be `Null`).
    pub status: Value,
    /// The JSONPatch of a mutating webhook.
    pub patch: Option<json_patch::Patch>,
    /// `response.warnings`.
    pub warnings: Vec<String>,
}

/// Reads an AdmissionReview answer; `Err` (a failed call) when it is not a v1 review for `uid`,
/// or a validating webhook or an unsupported patch type answers a patch.
pub fn interpret(webhook: &Webhook, uid: &str, answer: &Value) -> Result<Verdict, String> {
    if answer["apiVersion"].as_str() != Some("admission.k8s.io/v1")
        || answer["kind"].as_str() != Some("AdmissionReview")
    {
        return Err(
            "expected response of kind AdmissionReview, version admission.k8s.io/v1".to_string(),
        );
    }
    let response = &answer["response"];
    if !response.is_object() {
        return Err("webhook response was absent".to_string());
    }
    if response["uid"].as_str() != Some(uid) {
        return Err(format!(
            "expected response.uid={uid:?}, got {:?}",
            response["uid"].as_str().unwrap_or_default()
        ));
    }
    let allowed = response["allowed"].as_bool().unwrap_or(false);
    let patch = match (&response["patch"], response["patchType"].as_str()) {
        (Value::Null, None) => None,
        (Value::String(encoded), Some("JSONPatch")) => {
            if webhook.kind == WebhookKind::Validating {
                return Err("validating webhooks may not return patches".to_string());
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| format!("response.patch is not base64: {error}"))?;
            let patch: json_patch::Patch = serde_json::from_slice(&bytes)
                .map_err(|error| format!("response.patch is not a JSONPatch: {error}"))?;
            Some(patch)
        }
        (Value::String(_), None) => {
            return Err("response.patchType is required with a patch".into());
        }
        (_, Some(other)) if other != "JSONPatch" => {
            return Err(format!("response.patchType {other:?} is not supported"));
        }
        _ => return Err("response.patch must be a base64 string".to_string()),
    };
    let warnings = response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok(Verdict {
        allowed,
        status: response["status"].clone(),
        patch,
        warnings,
    })
}

/// The error of a refusal, worded like the API server: `admission webhook "NAME" denied the
/// request: MESSAGE`, with the answer's code (at least 400) and reason.
pub fn denied(webhook: &Webhook, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {:?} denied the request", webhook.name);
    let code = status["code"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| *code >= 400)
        .unwrap_or(400);
    let message = status["message"].as_str().unwrap_or_default();
    let reason = status["reason"].as_str().unwrap_or_default();
    let text = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    let mut error = ApiError::new(code, reason, text);
    if status["details"].is_object() {
        error.details = Some(status["details"].clone());
    }
    error
}

/// The error of a call that failed under `failurePolicy: Fail`.
pub fn call_failed(webhook: &Webhook, reason: &str) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!(
            "Internal error occurred: failed calling webhook {:?}: failed to call webhook: Post {:?}: {reason}",
            webhook.name,
            format!("{}?timeout={}s", webhook.url(), webhook.timeout().as_secs())
        ),
    )
}

/// The error of a dry-run request reaching a webhook with side effects.
pub fn no_dry_run(webhook: &Webhook) -> ApiError {
    ApiError::bad_request(format!(
        "admission webhook {:?} does not support dry run",
        webhook.name
    ))
}

/// Calls a webhook over HTTPS (verifying its certificate against `clientConfig.caBundle`) with
/// the review, within `timeoutSeconds`; the answer's JSON or why the call failed.
pub async fn call_webhook(webhook: &Webhook, review: &Value) -> Result<Value, String> {
    let timeout = webhook.timeout();
    match tokio::time::timeout(timeout, call_webhook_untimed(webhook, review, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "context deadline exceeded (no answer within {}s)",
            timeout.as_secs()
        )),
    }
}

/// [`call_webhook`] without the deadline.
async fn call_webhook_untimed(
    webhook: &Webhook,
    review: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    use http_body_util::BodyExt as _;
    let client_config = &webhook.spec["clientConfig"];
    let Some(url) = client_config["url"].as_str() else {
        return Err(
            "kube-emulator resolves no Services: clientConfig.url is required (clientConfig.service is not served)"
                .to_string(),
        );
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|error| format!("invalid clientConfig.url {url:?}: {error}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("clientConfig.url {url:?} must use https"));
    }
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(443);
    let ca_bundle = client_config["caBundle"].as_str().unwrap_or_default();
    let connector = crate::tls::client_connector(ca_bundle)?;
    let host_without_brackets = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server_name =
        tokio_rustls::rustls::pki_types::ServerName::try_from(host_without_brackets.clone())
            .map_err(|error| format!("invalid host {host:?}: {error}"))?;
    let tcp = tokio::net::TcpStream::connect((host_without_brackets.as_str(), port))
        .await
        .map_err(|error| format!("dial tcp {host}:{port}: {error}"))?;
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|error| format!("tls: {error}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|error| format!("HTTP handshake failed: {error}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = uri
        .path_and_query()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let separator = if path.contains('?') { '&' } else { '?' };
    let body = serde_json::to_vec(review).map_err(|error| error.to_string())?;
    let request = hyper::Request::post(format!("{path}{separator}timeout={}s", timeout.as_secs()))
        .header("host", uri.authority().map(|a| a.as_str()).unwrap_or(&host))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|error| error.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("request failed: {error}"))?;
    let status = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|error| format!("reading the answer failed: {error}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "the server answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
        ));
    }
    serde_json::from_slice(&bytes).map_err(|error| format!("the answer is not JSON: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(spec: Value) -> Webhook {
        Webhook {
            kind: WebhookKind::Validating,
            name: "w.example.io".into(),
            spec,
        }
    }

    #[test]
    fn resource_patterns() {
        assert!(resource_matches("widgets", "widgets", ""));
        assert!(!resource_matches("widgets", "widgets", "status"));
        assert!(resource_matches("widgets/status", "widgets", "status"));
        assert!(resource_matches("*", "widgets", ""));
        assert!(!resource_matches("*", "widgets", "status"));
        assert!(resource_matches("*/*", "widgets", "status"));
        assert!(resource_matches("*/*", "widgets", ""));
        assert!(resource_matches("widgets/*", "widgets", "status"));
        assert!(!resource_matches("widgets/*", "widgets", ""));
        assert!(resource_matches("*/status", "gadgets", "status"));
    }

    #[test]
    fn selectors() {
        let labels = json!({"team": "a", "tier": "web"});
        assert!(selector_matches(&Value::Null, &Value::Null).unwrap());
        assert!(selector_matches(&json!({"matchLabels": {"team": "a"}}), &labels).unwrap());
        assert!(!selector_matches(&json!({"matchLabels": {"team": "b"}}), &labels).unwrap());
        let expressions = |operator: &str, values: Value| json!({"matchExpressions": [{"key": "tier", "operator": operator, "values": values}]});
        assert!(selector_matches(&expressions("In", json!(["web", "db"])), &labels).unwrap());
        assert!(!selector_matches(&expressions("NotIn", json!(["web"])), &labels).unwrap());
        assert!(selector_matches(&expressions("Exists", Value::Null), &labels).unwrap());
        assert!(!selector_matches(&expressions("DoesNotExist", Value::Null), &labels).unwrap());
        assert!(selector_matches(&expressions("Bogus", Value::Null), &labels).is_err());
    }

    #[test]
    fn refusal_messages_follow_the_api_server() {
        let hook = webhook(Value::Null);
        let error = denied(
            &hook,
            &json!({"message": "no", "code": 403, "reason": "Forbidden"}),
        );
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "admission webhook \"w.example.io\" denied the request: no"
        );
        let error = denied(&hook, &Value::Null);
        assert_eq!(error.code, 400);
        assert!(error.message.ends_with("without explanation"));
    }

    #[test]
    fn validating_webhooks_may_not_patch() {
        let hook = webhook(Value::Null);
        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "patchType": "JSONPatch", "patch": "W10="}});
        assert!(interpret(&hook, "u", &answer).is_err());
        let wrong_uid = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "x", "allowed": true}});
        assert!(interpret(&hook, "u", &wrong_uid).is_err());
    }
}
