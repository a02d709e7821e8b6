//! The HTTP layer: routing, verbs, patches, list/watch streaming, discovery, faults and the request log.

use crate::auth::{Impersonation, UserInfo};
use crate::error::ApiError;
use crate::fields;
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{
    DeleteOptions, DeleteOutcome, EventType, FieldValidation, Store, StoredEvent, WriteOptions,
    scope_of,
};
use crate::{openapi, table};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Response body type.
pub type Body = BoxBody<Bytes, Infallible>;

/// One served request, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, ...) or the lower-case HTTP method for non-resource paths.
    pub verb: String,
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Resource plural (empty for non-resource paths).
    pub resource: String,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Response status code.
    pub status: u16,
    /// When the answer was ready (to lay requests on a timeline).
    pub answered_at: std::time::Instant,
}

/// A rule making matching requests fail.
#[derive(Debug, Clone)]
struct FaultRule {
    /// Verb to match (`*` for any).
    verb: String,
    /// Resource plural to match (`*` for any).
    resource: String,
    /// How many more requests fail.
    remaining: usize,
    /// Status code to answer.
    code: u16,
}

/// Mutable fault-injection settings.
#[derive(Debug, Default)]
pub struct FaultState {
    /// Pending failure rules.
    rules: Vec<FaultRule>,
    /// Added latency per request.
    latency: Duration,
}

/// Shared server state.
#[derive(Debug)]
pub struct State {
    /// The object store.
    pub store: RwLock<Store>,
    /// Fault injection.
    pub faults: Mutex<FaultState>,
    /// Served requests.
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Bumped to close all open watches.
    pub close_watches: watch::Sender<u64>,
    /// Interval between periodic BOOKMARK events.
    pub bookmark_interval: Duration,
    /// The server's own address, for `/api`.
    pub address: String,
    /// Bearer tokens and anonymous access.
    pub authenticator: RwLock<crate::auth::Authenticator>,
}

impl State {
    /// Read access to the store (a poisoned lock is still usable: the store has no invariants spanning a panic).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write access to the store.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fault settings.
    fn faults(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the next `count` requests matching `verb` and `resource` (`*` for any) fail with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, count: usize, code: u16) {
        self.faults().rules.push(FaultRule {
            verb: verb.to_string(),
            resource: resource.to_string(),
            remaining: count,
            code,
        });
    }

    /// Adds latency to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// Takes a matching fault, if any. A rule for `plural` matches the resource and its
    /// subresources; a rule for `plural/subresource` (e.g. `quarantines/status`) only that one.
    fn take_fault(&self, verb: &str, resource: &str, subresource: Option<&str>) -> Option<u16> {
        let mut faults = self.faults();
        let rule = faults.rules.iter_mut().find(|rule| {
            rule.remaining > 0
                && (rule.verb == "*" || rule.verb == verb)
                && (rule.resource == "*"
                    || rule.resource == resource
                    || Some(rule.resource.as_str()) == subresource)
        })?;
        rule.remaining -= 1;
        let code = rule.code;
        faults.rules.retain(|rule| rule.remaining > 0);
        Some(code)
    }

    /// Appends to the request log.
    fn record(&self, record: RequestRecord) {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(record);
    }
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/readyz`, `/livez`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion(String, String),
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApiDocument(String, String),
    /// A resource path.
    Resource(ResourcePath),
    /// Anything else.
    Unknown,
}

/// The parts of a resource path.
#[derive(Debug, Clone, PartialEq)]
struct ResourcePath {
    /// Group ("" for core).
    group: String,
    /// Version.
    version: String,
    /// Plural.
    plural: String,
    /// Namespace from the path.
    namespace: Option<String>,
    /// Object name.
    name: Option<String>,
    /// Subresource.
    subresource: Option<String>,
}

/// Parses a path into a route.
fn parse_route(path: &str) -> Route {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", version] => Route::GroupVersion(String::new(), version.to_string()),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::GroupVersion(group.to_string(), version.to_string()),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", "api", version] => {
            Route::OpenApiDocument(String::new(), version.to_string())
        }
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiDocument(group.to_string(), version.to_string())
        }
        _ => Route::Unknown,
    }
}

/// Parses the part after `/apis/{g}/{v}`.
fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let owned = |value: Option<&&str>| value.map(|text| text.to_string());
    let (namespace, tail): (Option<String>, &[&str]) = match rest {
        ["namespaces", namespace, plural, ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(namespace.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    if tail.is_empty() || tail.len() > 3 {
        return Route::Unknown;
    }
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        plural: tail[0].to_string(),
        namespace,
        name: owned(tail.get(1)),
        subresource: owned(tail.get(2)),
    })
}

/// Builds a JSON response.
fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(code, Bytes::from(bytes), "application/json", warnings)
}

/// Builds a response from bytes.
fn bytes_response(
    code: u16,
    bytes: Bytes,
    content_type: &str,
    warnings: &[String],
) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private");
    for warning in warnings {
        let escaped = warning.replace('"', "\\\"");
        builder = builder.header("Warning", format!("299 - \"{escaped}\""));
    }
    builder
        .body(Full::new(bytes).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// Renders an error.
fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.to_status(), &[])
}

/// The reason Kubernetes uses for an injected status code.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// Parsed query parameters.
type Query = HashMap<String, String>;

/// Parses a query string.
fn parse_query(query: &str) -> Query {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A query flag (`true` or `1`).
fn flag(query: &Query, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|value| value == "true" || value == "1")
}

/// Entry point for one HTTP request.
pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let latency = state.faults().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query_text = request.uri().query().unwrap_or_default().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let user_agent = header("user-agent");
    let accept = header("accept");
    let content_type = header("content-type");
    let query = parse_query(&query_text);
    let route = parse_route(&path);
    let (verb, resource, subresource) = match &route {
        Route::Resource(resource_path) => (
            resource_verb(&method, resource_path, &query),
            resource_path.plural.clone(),
            resource_path
                .subresource
                .as_ref()
                .map(|sub| format!("{}/{sub}", resource_path.plural)),
        ),
        _ => (method.to_lowercase(), String::new(), None),
    };
    let identity = identify(&state, &route, &request).and_then(|user| {
        let attributes = attributes_of(&route, &verb, &path);
        if matches!(route, Route::Health) || authorize(&state, &user, &attributes).allowed {
            Ok(user)
        } else {
            Err(crate::rbac::forbidden(&user, &attributes))
        }
    });
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let response = error_response(&ApiError::bad_request(format!(
                "reading the body failed: {error}"
            )));
            return Ok(response);
        }
    };
    let user = match identity {
        Ok(user) => user,
        Err(error) => {
            let response = error_response(&error);
            state.record(RequestRecord {
                verb,
                method,
                path,
                query: query_text,
                resource,
                user_agent,
                status: response.status().as_u16(),
                answered_at: std::time::Instant::now(),
            });
            return Ok(response);
        }
    };
    let response = match state.take_fault(&verb, &resource, subresource.as_deref()) {
        Some(code) => json_response(
            code,
            &ApiError::new(
                code,
                reason_for(code),
                format!("injected fault for {verb} {resource}"),
            )
            .to_status(),
            &[],
        ),
        None => {
            dispatch(
                &state,
                route,
                &method,
                &verb,
                &query,
                &accept,
                &content_type,
                &user_agent,
                &user,
                body,
            )
            .await
        }
    };
    state.record(RequestRecord {
        verb,
        method,
        path,
        query: query_text,
        resource,
        user_agent,
        status: response.status().as_u16(),
        answered_at: std::time::Instant::now(),
    });
    Ok(response)
}

/// Authenticates a request and applies its impersonation headers. Health checks need no credentials.
fn identify(
    state: &State,
    route: &Route,
    request: &Request<Incoming>,
) -> Result<UserInfo, ApiError> {
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let authenticated = state
        .authenticator
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .authenticate(authorization);
    let user = match (authenticated, route) {
        (Ok(user), _) => user,
        (Err(_), Route::Health) => return Ok(UserInfo::default()),
        (Err(error), _) => return Err(error),
    };
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let Some(impersonation) = Impersonation::from_headers(headers)? else {
        return Ok(user);
    };
    for (group, resource, namespace, name) in impersonation.checks() {
        let (resource, subresource) = match resource.split_once('/') {
            Some((resource, subresource)) => (resource.to_string(), subresource.to_string()),
            None => (resource, String::new()),
        };
        let attributes = crate::rbac::Attributes {
            verb: "impersonate".to_string(),
            resource_request: true,
            group,
            resource,
            subresource,
            namespace,
            name,
            path: String::new(),
        };
        if !authorize(state, &user, &attributes).allowed {
            return Err(crate::rbac::forbidden(&user, &attributes));
        }
    }
    Ok(impersonation.user())
}

/// The authorizer's view of a request.
fn attributes_of(route: &Route, verb: &str, path: &str) -> crate::rbac::Attributes {
    match route {
        Route::Resource(resource) => crate::rbac::Attributes {
            verb: verb.to_string(),
            resource_request: true,
            group: resource.group.clone(),
            resource: resource.plural.clone(),
            subresource: resource.subresource.clone().unwrap_or_default(),
            namespace: resource.namespace.clone().unwrap_or_default(),
            name: resource.name.clone().unwrap_or_default(),
            path: String::new(),
        },
        _ => crate::rbac::Attributes {
            verb: verb.to_string(),
            path: path.to_string(),
            ..crate::rbac::Attributes::default()
        },
    }
}

/// Asks the RBAC authorizer (the superuser group is decided without reading the store).
pub fn authorize(
    state: &State,
    user: &UserInfo,
    attributes: &crate::rbac::Attributes,
) -> crate::rbac::Decision {
    if user.in_group(crate::auth::MASTERS_GROUP) {
        return crate::rbac::Objects::default().authorize(user, attributes);
    }
    let store = state.read();
    let list = |plural: &str| {
        store
            .registry
            .get(crate::rbac::GROUP, "v1", plural)
            .map(|resource| store.list(&resource, None, None))
            .unwrap_or_default()
    };
    let objects = crate::rbac::Objects {
        roles: list("roles"),
        cluster_roles: list("clusterroles"),
        role_bindings: list("rolebindings"),
        cluster_role_bindings: list("clusterrolebindings"),
    };
    drop(store);
    objects.authorize(user, attributes)
}

/// `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth whoami`): create only, nothing stored.
fn self_subject_review(verb: &str, user: &UserInfo) -> Result<Response<Body>, ApiError> {
    if verb != "create" {
        return Err(ApiError::method_not_allowed(format!(
            "verb {verb} is not supported on selfsubjectreviews (create only)"
        )));
    }
    Ok(json_response(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user.to_json()},
        }),
        &[],
    ))
}

/// `authorization.k8s.io/v1` SubjectAccessReview, LocalSubjectAccessReview and
/// SelfSubjectAccessReview (`kubectl auth can-i`): create only, answered by the RBAC authorizer,
/// nothing stored.
fn access_review(
    state: &State,
    resource: &ResourceType,
    namespace: &str,
    request: &ResourceRequest<'_>,
) -> Result<Response<Body>, ApiError> {
    if request.verb != "create" {
        return Err(ApiError::method_not_allowed(format!(
            "verb {} is not supported on {} (create only)",
            request.verb, resource.plural
        )));
    }
    let mut review = parse_body(&request.body, request.content_type)?;
    let spec = review["spec"].clone();
    let invalid = |field: &str, message: &str| {
        ApiError::invalid(
            &resource.group,
            &resource.kind,
            "",
            &[crate::error::Cause::new(
                "FieldValueRequired",
                field,
                message,
            )],
        )
    };
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let resource_attributes = &spec["resourceAttributes"];
    let non_resource_attributes = &spec["nonResourceAttributes"];
    let attributes = match (
        resource_attributes.is_object(),
        non_resource_attributes.is_object(),
    ) {
        (true, false) => {
            let mut attributes_namespace = text(&resource_attributes["namespace"]);
            if resource.plural == "localsubjectaccessreviews" {
                if attributes_namespace.is_empty() {
                    attributes_namespace = namespace.to_string();
                    review["spec"]["resourceAttributes"]["namespace"] = json!(namespace);
                } else if attributes_namespace != namespace {
                    return Err(invalid(
                        "spec.resourceAttributes.namespace",
                        "must match metadata.namespace",
                    ));
                }
            }
            crate::rbac::Attributes {
                verb: text(&resource_attributes["verb"]),
                resource_request: true,
                group: text(&resource_attributes["group"]),
                resource: text(&resource_attributes["resource"]),
                subresource: text(&resource_attributes["subresource"]),
                namespace: attributes_namespace,
                name: text(&resource_attributes["name"]),
                path: String::new(),
            }
        }
        (false, true) => crate::rbac::Attributes {
            verb: text(&non_resource_attributes["verb"]),
            path: text(&non_resource_attributes["path"]),
            ..crate::rbac::Attributes::default()
        },
        _ => {
            return Err(invalid(
                "spec.resourceAttributes",
                "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    let subject = if resource.plural == "selfsubjectaccessreviews" {
        request.user.clone()
    } else {
        let groups: Vec<String> = spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let username = text(&spec["user"]);
        if username.is_empty() && groups.is_empty() {
            return Err(invalid(
                "spec.user",
                "Required value: at least one of user or group must be specified",
            ));
        }
        let extra = spec["extra"]
            .as_object()
            .map(|extra| {
                extra
                    .iter()
                    .map(|(key, values)| {
                        let values = values
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect();
                        (key.clone(), values)
                    })
                    .collect()
            })
            .unwrap_or_default();
        UserInfo {
            username,
            uid: text(&spec["uid"]),
            groups,
            extra,
        }
    };
    let decision = authorize(state, &subject, &attributes);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!(resource.kind);
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        review["status"]["reason"] = json!(decision.reason);
    }
    Ok(json_response(201, &review, &[]))
}

/// The Kubernetes verb of a resource request.
fn resource_verb(method: &str, path: &ResourcePath, query: &Query) -> String {
    match (method, path.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if flag(query, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return other.to_lowercase(),
    }
    .to_string()
}

/// Routes a request.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: &Arc<State>,
    route: Route,
    method: &str,
    verb: &str,
    query: &Query,
    accept: &str,
    content_type: &str,
    user_agent: &str,
    user: &UserInfo,
    body: Bytes,
) -> Response<Body> {
    if !matches!(route, Route::Resource(_)) && method != "GET" {
        return error_response(&ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    let aggregated = accept.contains("as=APIGroupDiscoveryList");
    match route {
        Route::Version => json_response(200, &version_document(), &[]),
        Route::Health => bytes_response(200, Bytes::from_static(b"ok"), "text/plain", &[]),
        Route::CoreVersions if aggregated => {
            aggregated_response(&state.read().registry.aggregated(true))
        }
        Route::CoreVersions => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.address}]}),
            &[],
        ),
        Route::Groups if aggregated => {
            aggregated_response(&state.read().registry.aggregated(false))
        }
        Route::Groups => json_response(200, &state.read().registry.group_list(), &[]),
        Route::Group(group) => match state.read().registry.group(&group) {
            Some(document) => json_response(200, &document, &[]),
            None => error_response(&ApiError::no_route()),
        },
        Route::GroupVersion(group, version) => {
            let store = state.read();
            if store.registry.serves_group_version(&group, &version) {
                json_response(200, &store.registry.resource_list(&group, &version), &[])
            } else {
                error_response(&ApiError::no_route())
            }
        }
        Route::OpenApiIndex => {
            let store = state.read();
            json_response(
                200,
                &openapi::index(&store.registry, store.current_resource_version()),
                &[],
            )
        }
        Route::OpenApiDocument(group, version) => {
            match openapi::document(&state.read().registry, &group, &version) {
                Some(document) => json_response(200, &document, &[]),
                None => error_response(&ApiError::no_route()),
            }
        }
        Route::Unknown => error_response(&ApiError::no_route()),
        Route::Resource(path) => {
            let request = ResourceRequest {
                verb,
                query,
                accept,
                content_type,
                user_agent,
                user,
                body,
            };
            match resource_request(state, &path, request).await {
                Ok(response) => response,
                Err(error) => error_response(&error),
            }
        }
    }
}

/// An aggregated discovery response.
fn aggregated_response(document: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    bytes_response(
        200,
        Bytes::from(bytes),
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        &[],
    )
}

/// `/version`.
fn version_document() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": "v1.37.0-kube-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// The request-level inputs of a resource operation.
struct ResourceRequest<'a> {
    /// Kubernetes verb.
    verb: &'a str,
    /// Query parameters.
    query: &'a Query,
    /// Accept header.
    accept: &'a str,
    /// Content-Type header.
    content_type: &'a str,
    /// User-Agent header.
    user_agent: &'a str,
    /// The authenticated (or impersonated) user.
    user: &'a UserInfo,
    /// Request body.
    body: Bytes,
}

/// Serves one resource request.
async fn resource_request(
    state: &Arc<State>,
    path: &ResourcePath,
    request: ResourceRequest<'_>,
) -> Result<Response<Body>, ApiError> {
    let resource = state
        .read()
        .registry
        .get(&path.group, &path.version, &path.plural)
        .ok_or_else(ApiError::no_route)?;
    if !resource.namespaced && path.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if resource.namespaced && path.namespace.is_none() && path.name.is_some() {
        return Err(ApiError::no_route());
    }
    match path.subresource.as_deref() {
        None => {}
        Some("status") if resource.has_status => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let namespace = path.namespace.clone().unwrap_or_default();
    let name = path.name.clone().unwrap_or_default();
    let query = request.query;
    let options = write_options(query, request.user_agent)?;
    // events.k8s.io/v1 Events are stored as core/v1 Events (one storage, as on a real server).
    let events_v1 = crate::events::is_events_v1(&resource.group, &resource.plural);
    let store_resource = if events_v1 {
        state
            .read()
            .registry
            .get("", "v1", "events")
            .ok_or_else(ApiError::no_route)?
    } else {
        resource.clone()
    };
    let to_storage = |object: Value| {
        if events_v1 {
            crate::events::to_core(&object)
        } else {
            object
        }
    };
    if resource.group == "authentication.k8s.io" && resource.plural == "selfsubjectreviews" {
        return self_subject_review(request.verb, request.user);
    }
    if resource.group == "authorization.k8s.io" {
        return access_review(state, &resource, &namespace, &request);
    }
    if matches!(request.verb, "update" | "patch") && path.name.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} on a collection)",
            request.verb
        )));
    }
    match request.verb {
        "get" => {
            let object = state.read().get(&resource, &namespace, &name)?;
            let object = with_api_version(&object, &resource);
            if table::wants_table(request.accept) {
                let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                let include = query
                    .get("includeObject")
                    .map(String::as_str)
                    .unwrap_or("Metadata");
                return Ok(json_response(
                    200,
                    &table::render(&resource, &[&object], metadata, include),
                    &[],
                ));
            }
            Ok(json_response(200, &object, &[]))
        }
        "list" => list(
            state,
            &resource,
            path.namespace.as_deref(),
            query,
            request.accept,
        ),
        "watch" => {
            let table = table::wants_table(request.accept).then(|| {
                query
                    .get("includeObject")
                    .cloned()
                    .unwrap_or_else(|| "Metadata".to_string())
            });
            watch_request(state, resource, path.namespace.clone(), query, table)
        }
        "create" => {
            if path.name.is_some() {
                return Err(ApiError::method_not_allowed(
                    "POST to a named object is not allowed",
                ));
            }
            let object = to_storage(parse_body(&request.body, request.content_type)?);
            let object_name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let attributes = admission_attributes(
                &store_resource,
                "CREATE",
                &namespace,
                &object_name,
                None,
                request.user,
                options.dry_run,
                Some(object.clone()),
                None,
            );
            let (admitted, mut warnings) = admit(state, attributes).await?;
            let object = admitted.unwrap_or(object);
            let result = state
                .write()
                .create(&store_resource, &namespace, object, &options)?;
            warnings.extend(result.warnings);
            Ok(json_response(
                201,
                &with_api_version(&result.object, &resource),
                &warnings,
            ))
        }
        "update" => {
            let object = to_storage(parse_body(&request.body, request.content_type)?);
            let old_object = state
                .read()
                .get(&store_resource, &namespace, &name)
                .ok()
                .map(|old| (*old).clone());
            let operation = if old_object.is_some() {
                "UPDATE"
            } else {
                "CREATE"
            };
            let attributes = admission_attributes(
                &store_resource,
                operation,
                &namespace,
                &name,
                path.subresource.as_deref(),
                request.user,
                options.dry_run,
                Some(object.clone()),
                old_object,
            );
            let (admitted, mut warnings) = admit(state, attributes).await?;
            let object = admitted.unwrap_or(object);
            let result = state.write().update(
                &store_resource,
                &namespace,
                &name,
                object,
                path.subresource.as_deref(),
                &options,
                false,
            )?;
            warnings.extend(result.warnings);
            Ok(json_response(
                200,
                &with_api_version(&result.object, &resource),
                &warnings,
            ))
        }
        "patch" => {
            patch(
                state,
                &resource,
                &store_resource,
                &namespace,
                &name,
                path.subresource.as_deref(),
                &request,
                options,
            )
            .await
        }
        "delete" => {
            let delete_options = delete_options(query, &request.body)?;
            let old_object = state
                .read()
                .get(&store_resource, &namespace, &name)?
                .as_ref()
                .clone();
            let attributes = admission_attributes(
                &store_resource,
                "DELETE",
                &namespace,
                &name,
                None,
                request.user,
                delete_options.dry_run,
                None,
                Some(old_object),
            );
            admit(state, attributes).await?;
            let outcome =
                state
                    .write()
                    .delete(&store_resource, &namespace, &name, &delete_options)?;
            Ok(match outcome {
                DeleteOutcome::Pending(object) => {
                    json_response(200, &with_api_version(&object, &resource), &[])
                }
                DeleteOutcome::Removed(object) if resource.custom || resource.tracks_generation => {
                    json_response(200, &with_api_version(&object, &resource), &[])
                }
                DeleteOutcome::Removed(object) => json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": object["metadata"]["uid"]}}),
                    &[],
                ),
            })
        }
        "deletecollection" => {
            let delete_options = delete_options(query, &request.body)?;
            let label_selector = LabelSelector::parse(
                query
                    .get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let field_selector = FieldSelector::parse(
                query
                    .get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
                &resource.plural,
            )?;
            let mut store = state.write();
            let targets: Vec<Arc<Value>> = store
                .list(&resource, path.namespace.as_deref(), None)
                .into_iter()
                .filter(|object| label_selector.matches(object) && field_selector.matches(object))
                .collect();
            let mut items = Vec::new();
            for object in targets {
                let object_namespace = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let object_name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                match store.delete(
                    &store_resource,
                    &object_namespace,
                    &object_name,
                    &delete_options,
                )? {
                    DeleteOutcome::Pending(value) | DeleteOutcome::Removed(value) => {
                        items.push(with_api_version(&value, &resource))
                    }
                }
            }
            let list = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(),
                "metadata": {"resourceVersion": store.current_resource_version().to_string()}, "items": items});
            Ok(json_response(200, &list, &[]))
        }
        other => Err(ApiError::method_not_allowed(format!(
            "verb {other} is not supported"
        ))),
    }
}

/// Field manager, validation and dry-run from the query.
fn write_options(query: &Query, user_agent: &str) -> Result<WriteOptions, ApiError> {
    let field_validation = match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Ignore") => FieldValidation::Ignore,
        Some("Strict") => FieldValidation::Strict,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation {other:?} is invalid: must be one of Ignore, Warn or Strict"
            )));
        }
    };
    let manager = match query
        .get("fieldManager")
        .filter(|manager| !manager.is_empty())
    {
        Some(manager) => manager.clone(),
        None => user_agent
            .split('/')
            .next()
            .unwrap_or("unknown")
            .to_string(),
    };
    let manager = if manager.is_empty() {
        "unknown".to_string()
    } else {
        manager
    };
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}"
            )));
        }
    };
    Ok(WriteOptions {
        manager,
        field_validation,
        dry_run,
    })
}

/// Parses a JSON (or YAML) body.
fn parse_body(body: &Bytes, content_type: &str) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        return crate::protobuf::decode(body);
    }
    if content_type.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|error| ApiError::bad_request(format!("the body is not UTF-8: {error}")))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|error| ApiError::bad_request(format!("error decoding YAML: {error}")));
    }
    if !content_type.is_empty()
        && !content_type.starts_with("application/json")
        && !content_type.contains("*/*")
    {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("error decoding JSON: {error}")))
}

/// Delete options from the query and an optional DeleteOptions body.
fn delete_options(query: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!("error decoding DeleteOptions: {error}"))
        })?
    };
    let propagation_policy = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| parsed["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| {
            match parsed["orphanDependents"]
                .as_bool()
                .or_else(|| query.get("orphanDependents").map(|v| v == "true"))
            {
                Some(true) => Some("Orphan".to_string()),
                _ => None,
            }
        });
    if let Some(policy) = &propagation_policy
        && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            &[crate::error::Cause::new(
                "FieldValueNotSupported",
                "propagationPolicy",
                format!(
                    "Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
            )],
        ));
    }
    let dry_run = query.get("dryRun").is_some_and(|value| value == "All")
        || parsed["dryRun"]
            .as_array()
            .is_some_and(|values| values.iter().any(|value| value == "All"));
    Ok(DeleteOptions {
        propagation_policy,
        precondition_uid: parsed["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_resource_version: parsed["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run,
    })
}

/// Returns a copy whose apiVersion is the requested version's.
fn with_api_version(object: &Value, resource: &ResourceType) -> Value {
    if crate::events::is_events_v1(&resource.group, &resource.plural) {
        return crate::events::to_events_v1(object);
    }
    let mut copy = object.clone();
    copy["apiVersion"] = json!(resource.api_version());
    copy
}

/// Removes strategic-merge-patch directives (`$patch`, `$setElementOrder/...`, `$retainKeys`, ...).
fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|key, _| !key.starts_with('$'));
            for child in fields.values_mut() {
                strip_directives(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// A patch computed against the live object, before admission.
struct PreparedPatch {
    /// The live object the patch was computed from (None: server-side apply creates it).
    live: Option<Arc<Value>>,
    /// The object the patch produces (storage form).
    candidate: Value,
    /// Whether it is a server-side apply.
    apply: bool,
}

/// Computes what a patch makes of the live object (JSON patch, merge patch, strategic merge on
/// built-ins as merge, server-side apply), without writing.
fn prepare_patch(
    store: &Store,
    resource: &ResourceType,
    store_resource: &ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    request: &ResourceRequest<'_>,
) -> Result<PreparedPatch, ApiError> {
    let media = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let events_v1 = crate::events::is_events_v1(&resource.group, &resource.plural);
    if media == "application/apply-patch+yaml" {
        let manager = request
            .query
            .get("fieldManager")
            .filter(|manager| !manager.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    &[crate::error::Cause::new(
                        "FieldValueRequired",
                        "fieldManager",
                        "Required value: is required for apply patch",
                    )],
                )
            })?;
        let config = parse_body(&request.body, "application/yaml")?;
        let config = if events_v1 {
            crate::events::to_core(&config)
        } else {
            config
        };
        if config["metadata"]["name"]
            .as_str()
            .is_some_and(|given| given != name)
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                config["metadata"]["name"].as_str().unwrap_or_default()
            )));
        }
        let force = flag(request.query, "force");
        let live = store.get(store_resource, namespace, name).ok();
        let subresource_name = subresource.unwrap_or_default();
        let time = crate::store::now();
        let mut merged = fields::apply(
            live.as_deref(),
            &config,
            manager,
            force,
            subresource_name,
            scope_of(store_resource, subresource),
            store_resource.schema.as_ref(),
            &store_resource.api_version(),
            &time,
        )?;
        if live.is_none() {
            if subresource.is_some() {
                return Err(ApiError::not_found(&resource.group, &resource.plural, name));
            }
            merged["metadata"]["name"] = json!(name);
        }
        return Ok(PreparedPatch {
            live,
            candidate: merged,
            apply: true,
        });
    }
    let live = store.get(store_resource, namespace, name)?;
    let mut patched = if events_v1 {
        crate::events::to_events_v1(&live)
    } else {
        (*live).clone()
    };
    let patch_body: Value = serde_json::from_slice(&request.body)
        .map_err(|error| ApiError::bad_request(format!("error decoding patch: {error}")))?;
    match media {
        "application/merge-patch+json" => json_patch::merge(&mut patched, &patch_body),
        "application/strategic-merge-patch+json" => {
            if resource.custom {
                return Err(ApiError::unsupported_media_type(request.content_type));
            }
            let mut cleaned = patch_body;
            strip_directives(&mut cleaned);
            json_patch::merge(&mut patched, &cleaned);
        }
        "application/json-patch+json" => {
            let operations: json_patch::Patch =
                serde_json::from_value(patch_body).map_err(|error| {
                    ApiError::bad_request(format!("error decoding JSON patch: {error}"))
                })?;
            apply_json_patch(&mut patched, operations)?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    if events_v1 {
        patched = crate::events::to_core(&patched);
    }
    Ok(PreparedPatch {
        live: Some(live),
        candidate: patched,
        apply: false,
    })
}

/// PATCH: computes the patched object, runs admission, then writes it if the live object did not
/// change meanwhile (else computes again, like the API server's patch retries).
#[allow(clippy::too_many_arguments)]
async fn patch(
    state: &Arc<State>,
    resource: &ResourceType,
    store_resource: &ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    request: &ResourceRequest<'_>,
    mut options: WriteOptions,
) -> Result<Response<Body>, ApiError> {
    const ATTEMPTS: usize = 5;
    if !webhooks_configured(state) {
        // No admission: compute and write under one lock, as atomic as before webhooks existed.
        let mut store = state.write();
        let prepared = prepare_patch(
            &store,
            resource,
            store_resource,
            namespace,
            name,
            subresource,
            request,
        )?;
        let created = prepared.live.is_none();
        let result = if created {
            options.manager = String::new();
            store.create(store_resource, namespace, prepared.candidate, &options)?
        } else {
            store.update(
                store_resource,
                namespace,
                name,
                prepared.candidate,
                subresource,
                &options,
                prepared.apply,
            )?
        };
        return Ok(json_response(
            if created { 201 } else { 200 },
            &with_api_version(&result.object, resource),
            &result.warnings,
        ));
    }
    for _ in 0..ATTEMPTS {
        let prepared = prepare_patch(
            &state.read(),
            resource,
            store_resource,
            namespace,
            name,
            subresource,
            request,
        )?;
        let operation = if prepared.live.is_some() {
            "UPDATE"
        } else {
            "CREATE"
        };
        let attributes = admission_attributes(
            store_resource,
            operation,
            namespace,
            name,
            subresource,
            request.user,
            options.dry_run,
            Some(prepared.candidate.clone()),
            prepared.live.as_deref().cloned(),
        );
        let (admitted, mut warnings) = admit(state, attributes).await?;
        let candidate = admitted.unwrap_or(prepared.candidate);
        let mut store = state.write();
        let current_version = store
            .get(store_resource, namespace, name)
            .ok()
            .map(|object| object["metadata"]["resourceVersion"].clone());
        let prepared_version = prepared
            .live
            .as_ref()
            .map(|object| object["metadata"]["resourceVersion"].clone());
        if current_version != prepared_version {
            continue;
        }
        let result = match prepared.live {
            None => {
                options.manager = String::new();
                store.create(store_resource, namespace, candidate, &options)?
            }
            Some(_) => store.update(
                store_resource,
                namespace,
                name,
                candidate,
                subresource,
                &options,
                prepared.apply,
            )?,
        };
        warnings.extend(result.warnings);
        let code = if operation == "CREATE" { 201 } else { 200 };
        return Ok(json_response(
            code,
            &with_api_version(&result.object, resource),
            &warnings,
        ));
    }
    Err(ApiError::conflict(&resource.group, &resource.plural, name))
}

/// The admission view of a write.
#[allow(clippy::too_many_arguments)]
fn admission_attributes(
    resource: &ResourceType,
    operation: &str,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    user: &UserInfo,
    dry_run: bool,
    object: Option<Value>,
    old_object: Option<Value>,
) -> crate::admission::Attributes {
    crate::admission::Attributes {
        operation: operation.to_string(),
        group: resource.group.clone(),
        version: resource.version.clone(),
        resource: resource.plural.clone(),
        subresource: subresource.unwrap_or_default().to_string(),
        kind: resource.kind.clone(),
        namespaced: resource.namespaced,
        namespace: namespace.to_string(),
        name: name.to_string(),
        user: user.clone(),
        dry_run,
        object,
        old_object,
        namespace_labels: Value::Null,
    }
}

/// Runs admission for one write: the matching mutating webhooks in order (applying their
/// patches to the object), then the matching validating webhooks. Returns the admitted object and
/// the webhooks' warnings, or the refusal. Webhook configurations themselves are not admitted.
async fn admit(
    state: &State,
    mut attributes: crate::admission::Attributes,
) -> Result<(Option<Value>, Vec<String>), ApiError> {
    use crate::admission::{self, WebhookKind};
    if attributes.group == admission::GROUP {
        return Ok((attributes.object, Vec::new()));
    }
    let webhooks: Vec<admission::Webhook> = {
        let store = state.read();
        let list = |kind: WebhookKind| {
            let configurations = store
                .registry
                .get(admission::GROUP, "v1", kind.plural())
                .map(|resource| store.list(&resource, None, None))
                .unwrap_or_default();
            admission::webhooks_of(kind, &configurations)
        };
        let mut webhooks = list(WebhookKind::Mutating);
        webhooks.extend(list(WebhookKind::Validating));
        if !webhooks.is_empty() && attributes.namespaced && !attributes.namespace.is_empty() {
            attributes.namespace_labels = store
                .registry
                .get("", "v1", "namespaces")
                .and_then(|namespaces| store.get(&namespaces, "", &attributes.namespace).ok())
                .map(|namespace| namespace["metadata"]["labels"].clone())
                .unwrap_or(Value::Null);
        }
        webhooks
    };
    let mut warnings = Vec::new();
    for webhook in &webhooks {
        match admission::should_call(webhook, &attributes) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(reason) if webhook.ignores_failures() => {
                tracing::info!(webhook = %webhook.name, %reason, "webhook skipped (failurePolicy Ignore)");
                continue;
            }
            Err(reason) => return Err(admission::call_failed(webhook, &reason)),
        }
        if attributes.dry_run && !webhook.supports_dry_run() {
            return Err(admission::no_dry_run(webhook));
        }
        let uid = review_uid();
        let review = admission::review(&attributes, &uid);
        let verdict = match admission::call_webhook(webhook, &review)
            .await
            .and_then(|answer| admission::interpret(webhook, &uid, &answer))
        {
            Ok(verdict) => verdict,
            Err(reason) if webhook.ignores_failures() => {
                tracing::info!(webhook = %webhook.name, %reason, "webhook call failed; ignored (failurePolicy Ignore)");
                continue;
            }
            Err(reason) => return Err(admission::call_failed(webhook, &reason)),
        };
        warnings.extend(verdict.warnings);
        if !verdict.allowed {
            return Err(admission::denied(webhook, &verdict.status));
        }
        if let (Some(patch), Some(object)) = (verdict.patch, attributes.object.as_mut()) {
            apply_json_patch(object, patch).map_err(|error| {
                admission::call_failed(
                    webhook,
                    &format!("applying the webhook's patch failed: {}", error.message),
                )
            })?;
        }
    }
    Ok((attributes.object, warnings))
}

/// Whether any webhook configuration is stored (else admission has nothing to call).
fn webhooks_configured(state: &State) -> bool {
    use crate::admission::{self, WebhookKind};
    let store = state.read();
    [WebhookKind::Mutating, WebhookKind::Validating]
        .iter()
        .any(|kind| {
            store
                .registry
                .get(admission::GROUP, "v1", kind.plural())
                .is_some_and(|resource| !store.list(&resource, None, None).is_empty())
        })
}

/// A fresh UUID-shaped id for one AdmissionReview.
fn review_uid() -> String {
    let high = crate::store::random_u64();
    let low = crate::store::random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        (low >> 48) & 0x0fff,
        low & 0xffff_ffff_ffff
    )
}

/// Applies an RFC 6902 patch like the API server does: a `test` of `null` against a missing path succeeds.
fn apply_json_patch(document: &mut Value, operations: json_patch::Patch) -> Result<(), ApiError> {
    let mut working = document.clone();
    for operation in operations.0 {
        if let json_patch::PatchOperation::Test(test) = &operation
            && test.value.is_null()
            && working.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut working, &[operation]).map_err(|error| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {error}"),
            )
        })?;
    }
    *document = working;
    Ok(())
}

/// Continue token: hex of `rv|namespace|name`.
fn encode_continue(resource_version: u64, namespace: &str, name: &str) -> String {
    format!("{resource_version}|{namespace}|{name}")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Parses a continue token.
fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(token.get(index..index + 2).unwrap_or("zz"), 16))
        .collect();
    let text = String::from_utf8(bytes.map_err(|_| invalid())?).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '|');
    let resource_version = parts
        .next()
        .and_then(|part| part.parse().ok())
        .ok_or_else(invalid)?;
    let namespace = parts.next().ok_or_else(invalid)?.to_string();
    let name = parts.next().ok_or_else(invalid)?.to_string();
    Ok((resource_version, namespace, name))
}

/// LIST with selectors, pagination and resourceVersion semantics.
fn list(
    state: &Arc<State>,
    resource: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let label_selector = LabelSelector::parse(
        query
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    let field_selector = FieldSelector::parse(
        query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
        &resource.plural,
    )?;
    let limit: usize = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}")))?,
    };
    let store = state.read();
    let current = store.current_resource_version();
    let requested: Option<u64> = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {text:?}")))?,
        ),
    };
    match (
        query.get("resourceVersionMatch").map(String::as_str),
        requested,
    ) {
        (Some("Exact"), Some(version)) if version != current => {
            return Err(ApiError::gone(format!(
                "too old resource version: {version} ({current})"
            )));
        }
        (Some("Exact") | Some("NotOlderThan"), None) => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        (Some(other), _) if !matches!(other, "Exact" | "NotOlderThan" | "") => {
            return Err(ApiError::bad_request(format!(
                "unsupported resourceVersionMatch {other:?}"
            )));
        }
        _ => {}
    }
    if let Some(version) = requested
        && version > current
    {
        let mut error = ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {version}, current: {current}"),
        );
        error.details = Some(
            json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
        );
        return Err(error);
    }
    let (list_version, after) = match query.get("continue").filter(|token| !token.is_empty()) {
        Some(token) => {
            let (version, continue_namespace, continue_name) = decode_continue(token)?;
            if version < store.history_floor() {
                let error = ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                );
                return Err(error);
            }
            (version, Some((continue_namespace, continue_name)))
        }
        None => (current, None),
    };
    let candidates = store.list(resource, namespace, after.as_ref());
    drop(store);
    let mut selected: Vec<&Value> = Vec::new();
    let mut next = None;
    for object in &candidates {
        if !label_selector.matches(object) || !field_selector.matches(object) {
            continue;
        }
        if limit > 0 && selected.len() == limit {
            if let Some(last) = selected.last() {
                next = Some(encode_continue(
                    list_version,
                    last["metadata"]["namespace"].as_str().unwrap_or_default(),
                    last["metadata"]["name"].as_str().unwrap_or_default(),
                ));
            }
            break;
        }
        selected.push(object);
    }
    let mut metadata = json!({"resourceVersion": list_version.to_string()});
    if let Some(token) = &next {
        metadata["continue"] = json!(token);
    }
    if table::wants_table(accept) {
        let include = query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(json_response(
            200,
            &table::render(resource, &selected, metadata, include),
            &[],
        ));
    }
    let api_version = resource.api_version();
    let mut bytes = Vec::with_capacity(selected.len() * 512 + 256);
    bytes.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{api_version}\",\"metadata\":",
            resource.kind
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(metadata.to_string().as_bytes());
    bytes.extend_from_slice(b",\"items\":[");
    for (index, object) in selected.iter().enumerate() {
        if index > 0 {
            bytes.push(b',');
        }
        let written = if object["apiVersion"].as_str() == Some(api_version.as_str()) {
            serde_json::to_writer(&mut bytes, object)
        } else {
            serde_json::to_writer(&mut bytes, &with_api_version(object, resource))
        };
        if let Err(error) = written {
            return Err(ApiError::internal(format!("encoding failed: {error}")));
        }
    }
    bytes.extend_from_slice(b"]}");
    Ok(bytes_response(
        200,
        Bytes::from(bytes),
        "application/json",
        &[],
    ))
}

/// What a watcher selects.
struct WatchFilter {
    /// Storage key of the resource.
    storage_key: String,
    /// Namespace, or all.
    namespace: Option<String>,
    /// Label selector.
    labels: LabelSelector,
    /// Field selector.
    fields: FieldSelector,
}

impl WatchFilter {
    /// Whether an object is selected.
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event type this watcher sees for a stored event, if any (objects moving in/out of the selection become ADDED/DELETED).
    fn translate(&self, event: &StoredEvent) -> Option<&'static str> {
        if event.storage_key != self.storage_key {
            return None;
        }
        if let Some(namespace) = &self.namespace
            && &event.namespace != namespace
        {
            return None;
        }
        let now = self.selects(&event.object);
        let before = event
            .previous
            .as_deref()
            .is_some_and(|previous| self.selects(previous));
        match event.event_type {
            EventType::Added => now.then_some("ADDED"),
            EventType::Deleted => (now || before).then_some("DELETED"),
            EventType::Modified => match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        }
    }
}

/// One watch line; `table` (the `includeObject` mode) wraps the object in a one-row Table like `kubectl get -w` asks.
fn watch_line(
    event_type: &str,
    object: &Value,
    resource: &ResourceType,
    table: Option<&str>,
) -> Bytes {
    let api_version = resource.api_version();
    let mut bytes = Vec::with_capacity(512);
    bytes.extend_from_slice(b"{\"type\":\"");
    bytes.extend_from_slice(event_type.as_bytes());
    bytes.extend_from_slice(b"\",\"object\":");
    let written = match table {
        Some(include) => {
            let versioned = with_api_version(object, resource);
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            serde_json::to_writer(
                &mut bytes,
                &table::render(resource, &[&versioned], metadata, include),
            )
        }
        None if object["apiVersion"].as_str() == Some(api_version.as_str()) => {
            serde_json::to_writer(&mut bytes, object)
        }
        None => serde_json::to_writer(&mut bytes, &with_api_version(object, resource)),
    };
    if written.is_err() {
        bytes.extend_from_slice(b"null");
    }
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

/// A BOOKMARK line.
fn bookmark_line(
    resource: &ResourceType,
    resource_version: u64,
    initial_events_end: bool,
) -> Bytes {
    let mut object = json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": {"resourceVersion": resource_version.to_string()}});
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let mut bytes =
        serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Frames sent to the response body.
type FrameSender = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

/// WATCH: initial events, replay from history, live fan-out, bookmarks, timeouts and 410.
fn watch_request(
    state: &Arc<State>,
    resource: Arc<ResourceType>,
    namespace: Option<String>,
    query: &Query,
    table: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let filter = WatchFilter {
        storage_key: resource.storage_key(),
        namespace: namespace.clone(),
        labels: LabelSelector::parse(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        fields: FieldSelector::parse(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
            &resource.plural,
        )?,
    };
    let bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial_events = flag(query, "sendInitialEvents");
    if send_initial_events
        && query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan")
    {
        return Err(ApiError::invalid(
            "",
            "ListOptions",
            "",
            &[crate::error::Cause::new(
                "FieldValueForbidden",
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|text| text.parse::<u64>().ok())
        .map(Duration::from_secs);
    let requested = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {text:?}")))?,
        ),
    };
    let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let live;
    let start_version;
    {
        let store = state.read();
        live = store.subscribe();
        let current = store.current_resource_version();
        if send_initial_events || requested.is_none() {
            for object in store.list(&resource, namespace.as_deref(), None) {
                if filter.selects(&object) {
                    initial.push(watch_line("ADDED", &object, &resource, table.as_deref()));
                }
            }
            start_version = current;
            if send_initial_events && bookmarks {
                initial.push(bookmark_line(&resource, current, true));
            }
        } else {
            let from = requested.unwrap_or_default();
            match store.events_since(from) {
                Ok(events) => {
                    for event in events {
                        if let Some(event_type) = filter.translate(&event) {
                            initial.push(watch_line(
                                event_type,
                                &event.object,
                                &resource,
                                table.as_deref(),
                            ));
                        }
                    }
                    start_version = current.max(from);
                }
                Err(error) => {
                    let mut line =
                        serde_json::to_vec(&json!({"type": "ERROR", "object": error.to_status()}))
                            .unwrap_or_default();
                    line.push(b'\n');
                    initial.push(Bytes::from(line));
                    drop(store);
                    let body = stream_body(receiver);
                    tokio::spawn(async move {
                        for line in initial {
                            if sender.send(Ok(Frame::data(line))).await.is_err() {
                                return;
                            }
                        }
                    });
                    return Ok(watch_response(body));
                }
            }
        }
    }
    let context = WatchContext {
        resource,
        filter,
        bookmarks,
        timeout,
        bookmark_interval: state.bookmark_interval,
        close: state.close_watches.subscribe(),
        table,
    };
    tokio::spawn(run_watch(context, initial, start_version, live, sender));
    Ok(watch_response(stream_body(receiver)))
}

/// Everything a running watch needs.
struct WatchContext {
    /// The watched type.
    resource: Arc<ResourceType>,
    /// Selection.
    filter: WatchFilter,
    /// Whether bookmarks were asked for.
    bookmarks: bool,
    /// `timeoutSeconds`.
    timeout: Option<Duration>,
    /// Bookmark period.
    bookmark_interval: Duration,
    /// Fires when all watches must close.
    close: watch::Receiver<u64>,
    /// Table encoding (`includeObject` mode) when the client asked for Tables.
    table: Option<String>,
}

/// The body stream of a watch.
fn stream_body(mut receiver: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>) -> Body {
    let stream = futures::stream::poll_fn(move |context| receiver.poll_recv(context));
    StreamBody::new(stream).boxed()
}

/// The response head of a watch.
fn watch_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .header("Transfer-Encoding", "chunked")
        .header("Cache-Control", "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// Streams a watch until timeout, close, lag, or client disconnect.
async fn run_watch(
    mut context: WatchContext,
    initial: Vec<Bytes>,
    start_version: u64,
    mut live: broadcast::Receiver<Arc<StoredEvent>>,
    sender: FrameSender,
) {
    for line in initial {
        if sender.send(Ok(Frame::data(line))).await.is_err() {
            return;
        }
    }
    let mut last_seen = start_version;
    let deadline = async {
        match context.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(context.bookmark_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    if event.resource_version <= last_seen {
                        continue;
                    }
                    last_seen = event.resource_version;
                    if let Some(event_type) = context.filter.translate(&event)
                        && sender.send(Ok(Frame::data(watch_line(event_type, &event.object, &context.resource, context.table.as_deref())))).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::info!(skipped, "watcher lagged behind; closing the watch so the client resumes");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick() => {
                if context.bookmarks
                    && sender.send(Ok(Frame::data(bookmark_line(&context.resource, last_seen, false)))).await.is_err()
                {
                    return;
                }
            }
            _ = context.close.changed() => return,
            _ = &mut deadline => return,
            _ = sender.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(
            parse_route("/api/v1/namespaces/default/configmaps/x"),
            Route::Resource(ResourcePath {
                group: String::new(),
                version: "v1".into(),
                plural: "configmaps".into(),
                namespace: Some("default".into()),
                name: Some("x".into()),
                subresource: None
            })
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/default"),
            Route::Resource(ResourcePath {
                group: String::new(),
                version: "v1".into(),
                plural: "namespaces".into(),
                namespace: None,
                name: Some("default".into()),
                subresource: None
            })
        );
        assert!(matches!(
            parse_route("/api/v1/namespaces/x/status"),
            Route::Resource(ResourcePath {
                subresource: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse_route("/apis/a.io/v1/widgets"),
            Route::Resource(ResourcePath {
                namespace: None,
                name: None,
                ..
            })
        ));
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(7, "ns", "name");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (7, "ns".to_string(), "name".to_string())
        );
        assert!(decode_continue("zz").is_err());
    }
}
