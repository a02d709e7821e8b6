//! The RBAC authorizer: Role/ClusterRole (with aggregation) and RoleBinding/ClusterRoleBinding
//! objects decide whether a user may do a request. Pure: the server hands in the objects.

use crate::auth::{AUTHENTICATED_GROUP, MASTERS_GROUP, UserInfo};
use crate::error::ApiError;
use crate::selectors::LabelSelector;
use serde_json::{Value, json};
use std::sync::Arc;

/// The API group of the RBAC kinds.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// What the authorizer looks at (the API server's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// Verb: `get`, `list`, ..., a custom verb like `approve`, or the lower-case HTTP method of a non-resource request.
    pub verb: String,
    /// Whether this is a resource request (else `path` is used).
    pub resource_request: bool,
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource, empty for none.
    pub subresource: String,
    /// Namespace, empty for cluster-scoped or all-namespaces requests.
    pub namespace: String,
    /// Object name, empty for collections and create.
    pub name: String,
    /// Path of a non-resource request.
    pub path: String,
}

/// The RBAC objects in the store.
#[derive(Debug, Default)]
pub struct Objects {
    /// Roles.
    pub roles: Vec<Arc<Value>>,
    /// ClusterRoles.
    pub cluster_roles: Vec<Arc<Value>>,
    /// RoleBindings.
    pub role_bindings: Vec<Arc<Value>>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<Arc<Value>>,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether allowed.
    pub allowed: bool,
    /// Why (the binding and role that allowed it), empty when denied.
    pub reason: String,
}

/// Strings of a JSON array field.
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a rule allows the attributes (the API server's `RuleAllows`).
pub fn rule_allows(rule: &Value, attributes: &Attributes) -> bool {
    let verbs = strings(&rule["verbs"]);
    if !verbs
        .iter()
        .any(|verb| *verb == "*" || *verb == attributes.verb)
    {
        return false;
    }
    if !attributes.resource_request {
        return strings(&rule["nonResourceURLs"]).iter().any(|url| {
            *url == "*"
                || *url == attributes.path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| attributes.path.starts_with(prefix))
        });
    }
    if !strings(&rule["apiGroups"])
        .iter()
        .any(|group| *group == "*" || *group == attributes.group)
    {
        return false;
    }
    let combined = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    let resource_matches = strings(&rule["resources"]).iter().any(|resource| {
        *resource == "*"
            || *resource == combined
            || (!attributes.subresource.is_empty()
                && resource.strip_prefix("*/") == Some(attributes.subresource.as_str()))
    });
    if !resource_matches {
        return false;
    }
    let names = strings(&rule["resourceNames"]);
    names.is_empty() || names.iter().any(|name| *name == attributes.name)
}

/// A `metav1.LabelSelector` object in the text form of a `labelSelector` query.
fn selector_text(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (key, value) in labels {
            parts.push(format!("{key}={}", value.as_str().unwrap_or_default()));
        }
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values = strings(&expression["values"]).join(",");
        parts.push(match expression["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            // An unknown operator makes the selector unparsable, so it selects nothing.
            _ => "(unknown operator".to_string(),
        });
    }
    parts.join(",")
}

/// Whether a binding's subjects include the user.
fn binds(binding: &Value, user: &UserInfo) -> bool {
    binding["subjects"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|subject| {
            let name = subject["name"].as_str().unwrap_or_default();
            match subject["kind"].as_str() {
                Some("User") => name == user.username,
                Some("Group") => user.in_group(name),
                Some("ServiceAccount") => {
                    let namespace = subject["namespace"].as_str().unwrap_or_default();
                    user.username == format!("system:serviceaccount:{namespace}:{name}")
                }
                _ => false,
            }
        })
    })
}

/// The name of an object.
fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The namespace of an object.
fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

impl Objects {
    /// The rules of a ClusterRole: its own, or with an `aggregationRule` those of every
    /// ClusterRole matching one of its selectors (computed when asked, so always current).
    fn cluster_role_rules(&self, name: &str) -> Vec<&Value> {
        let Some(role) = self.cluster_roles.iter().find(|role| name_of(role) == name) else {
            return Vec::new();
        };
        let mut rules: Vec<&Value> = role["rules"]
            .as_array()
            .map(|rules| rules.iter().collect())
            .unwrap_or_default();
        if let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() {
            for selector in selectors {
                let Ok(selector) = LabelSelector::parse(&selector_text(selector)) else {
                    continue;
                };
                for other in &self.cluster_roles {
                    if name_of(other) != name && selector.matches(other) {
                        rules.extend(other["rules"].as_array().into_iter().flatten());
                    }
                }
            }
        }
        rules
    }

    /// The rules of a Role in a namespace.
    fn role_rules(&self, namespace: &str, name: &str) -> Vec<&Value> {
        self.roles
            .iter()
            .filter(|role| namespace_of(role) == namespace && name_of(role) == name)
            .flat_map(|role| role["rules"].as_array().into_iter().flatten())
            .collect()
    }

    /// Decides a request.
    pub fn authorize(&self, user: &UserInfo, attributes: &Attributes) -> Decision {
        if user.in_group(MASTERS_GROUP) {
            return Decision {
                allowed: true,
                reason: format!("member of {MASTERS_GROUP}"),
            };
        }
        if public_info(attributes)
            || (user.in_group(AUTHENTICATED_GROUP) && bootstrap_allows(attributes))
        {
            return Decision {
                allowed: true,
                reason: "RBAC: allowed by the bootstrap roles system:discovery, system:basic-user and system:public-info-viewer to Group \"system:authenticated\"".to_string(),
            };
        }
        let subject = format!("User {:?}", user.username);
        for binding in &self.cluster_role_bindings {
            if !binds(binding, user) || binding["roleRef"]["kind"] != "ClusterRole" {
                continue;
            }
            let role = binding["roleRef"]["name"].as_str().unwrap_or_default();
            if self
                .cluster_role_rules(role)
                .into_iter()
                .any(|rule| rule_allows(rule, attributes))
            {
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {role:?} to {subject}",
                        name_of(binding)
                    ),
                };
            }
        }
        if attributes.namespace.is_empty() {
            return denied();
        }
        for binding in &self.role_bindings {
            if namespace_of(binding) != attributes.namespace || !binds(binding, user) {
                continue;
            }
            let role = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let rules = match kind {
                "ClusterRole" => self.cluster_role_rules(role),
                "Role" => self.role_rules(&attributes.namespace, role),
                _ => continue,
            };
            if rules.into_iter().any(|rule| rule_allows(rule, attributes)) {
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by RoleBinding \"{}/{}\" of {kind} {role:?} to {subject}",
                        name_of(binding),
                        attributes.namespace
                    ),
                };
            }
        }
        denied()
    }
}

/// A denial (RBAC has no opinion; nothing else allows).
fn denied() -> Decision {
    Decision {
        allowed: false,
        reason: String::new(),
    }
}

/// What `system:public-info-viewer` grants everyone, authenticated or not: version and health.
fn public_info(attributes: &Attributes) -> bool {
    let path = attributes.path.as_str();
    !attributes.resource_request
        && attributes.verb == "get"
        && (path == "/version"
            || path.starts_with("/healthz")
            || path.starts_with("/livez")
            || path.starts_with("/readyz"))
}

/// What the default ClusterRoles grant every authenticated user: discovery and health paths,
/// and asking about oneself (SelfSubjectReview / SelfSubjectAccessReview / SelfSubjectRulesReview).
fn bootstrap_allows(attributes: &Attributes) -> bool {
    if !attributes.resource_request {
        let path = attributes.path.as_str();
        return attributes.verb == "get"
            && (matches!(path, "/api" | "/apis" | "/version" | "/openapi/v3")
                || path.starts_with("/api/")
                || path.starts_with("/apis/")
                || path.starts_with("/openapi/")
                || path.starts_with("/healthz")
                || path.starts_with("/livez")
                || path.starts_with("/readyz"));
    }
    attributes.verb == "create"
        && matches!(
            (attributes.group.as_str(), attributes.resource.as_str()),
            ("authentication.k8s.io", "selfsubjectreviews")
                | (
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                )
        )
}

/// The API server's 403 for a denied request, e.g. `quarantines.autoguardrails.io "x" is
/// forbidden: User "mallory" cannot patch resource "quarantines" in API group
/// "autoguardrails.io" in the namespace "default"`.
pub fn forbidden(user: &UserInfo, attributes: &Attributes) -> ApiError {
    if !attributes.resource_request {
        return ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User {:?} cannot {} path {:?}",
                user.username, attributes.verb, attributes.path
            ),
        );
    }
    let qualified = if attributes.group.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}.{}", attributes.resource, attributes.group)
    };
    let object = if attributes.name.is_empty() {
        qualified
    } else {
        format!("{qualified} {:?}", attributes.name)
    };
    let resource = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    let scope = if attributes.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attributes.namespace)
    };
    let mut error = ApiError::new(
        403,
        "Forbidden",
        format!(
            "{object} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.username, attributes.verb, attributes.group
        ),
    );
    let mut details = json!({"group": attributes.group, "kind": attributes.resource});
    if !attributes.name.is_empty() {
        details["name"] = json!(attributes.name);
    }
    error.details = Some(details);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.to_string(),
            groups: groups.iter().map(|group| group.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    fn request(verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            verb: verb.to_string(),
            resource_request: true,
            group: "autoguardrails.io".to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            path: String::new(),
        }
    }

    fn objects() -> Objects {
        let object = |value: Value| Arc::new(value);
        Objects {
            roles: vec![object(
                json!({"metadata": {"name": "patcher", "namespace": "team-a"},
                "rules": [{"apiGroups": ["autoguardrails.io"], "resources": ["quarantines", "quarantines/status"], "verbs": ["get", "patch"]}]}),
            )],
            cluster_roles: vec![
                object(
                    json!({"metadata": {"name": "approver"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "approve"}}]}}),
                ),
                object(
                    json!({"metadata": {"name": "approve-part", "labels": {"agg": "approve"}},
                    "rules": [{"apiGroups": ["autoguardrails.io"], "resources": ["quarantines"], "verbs": ["approve"], "resourceNames": ["q-1"]}]}),
                ),
                object(
                    json!({"metadata": {"name": "metrics"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/metrics", "/debug/*"]}]}),
                ),
            ],
            role_bindings: vec![
                object(
                    json!({"metadata": {"name": "mallory-patches", "namespace": "team-a"},
                    "roleRef": {"kind": "Role", "name": "patcher"}, "subjects": [{"kind": "User", "name": "mallory"}]}),
                ),
                object(
                    json!({"metadata": {"name": "approvers", "namespace": "team-a"},
                    "roleRef": {"kind": "ClusterRole", "name": "approver"}, "subjects": [{"kind": "Group", "name": "approvers"}]}),
                ),
            ],
            cluster_role_bindings: vec![object(
                json!({"metadata": {"name": "scraper"}, "roleRef": {"kind": "ClusterRole", "name": "metrics"},
                    "subjects": [{"kind": "ServiceAccount", "namespace": "mon", "name": "prom"}]}),
            )],
        }
    }

    #[test]
    fn bindings_roles_aggregation_names_and_paths_decide() {
        let objects = objects();
        let alice = user("alice", &["approvers", AUTHENTICATED_GROUP]);
        let mallory = user("mallory", &[AUTHENTICATED_GROUP]);
        let decision =
            objects.authorize(&alice, &request("approve", "quarantines", "team-a", "q-1"));
        assert!(decision.allowed);
        assert_eq!(
            decision.reason,
            "RBAC: allowed by RoleBinding \"approvers/team-a\" of ClusterRole \"approver\" to User \"alice\""
        );
        for (who, attributes) in [
            (&alice, request("approve", "quarantines", "team-a", "q-2")),
            (&alice, request("approve", "quarantines", "team-b", "q-1")),
            (&alice, request("patch", "quarantines", "team-a", "q-1")),
            (&mallory, request("approve", "quarantines", "team-a", "q-1")),
            (&mallory, request("update", "quarantines", "team-a", "q-1")),
            (
                &mallory,
                request("patch", "quarantines/finalizers", "team-a", "q"),
            ),
            (&mallory, request("patch", "quarantines", "team-b", "q")),
        ] {
            assert!(
                !objects.authorize(who, &attributes).allowed,
                "{attributes:?}"
            );
        }
        assert!(
            objects
                .authorize(
                    &mallory,
                    &request("patch", "quarantines/status", "team-a", "q")
                )
                .allowed
        );
        let prom = user("system:serviceaccount:mon:prom", &[AUTHENTICATED_GROUP]);
        let path = |verb: &str, path: &str| Attributes {
            verb: verb.to_string(),
            path: path.to_string(),
            ..Attributes::default()
        };
        assert!(objects.authorize(&prom, &path("get", "/metrics")).allowed);
        assert!(objects.authorize(&prom, &path("get", "/debug/iam")).allowed);
        assert!(!objects.authorize(&prom, &path("post", "/metrics")).allowed);
        assert!(
            !objects
                .authorize(&mallory, &path("get", "/metrics"))
                .allowed
        );
        assert!(objects.authorize(&mallory, &path("get", "/apis")).allowed);
        assert!(
            !objects
                .authorize(&user("anon", &[]), &path("get", "/apis"))
                .allowed
        );
        assert!(
            objects
                .authorize(
                    &user("root", &[MASTERS_GROUP]),
                    &request("delete", "quarantines", "", "")
                )
                .allowed
        );
    }

    #[test]
    fn refusals_have_the_api_server_message_shape() {
        let mallory = user("mallory", &[]);
        let error = forbidden(&mallory, &request("patch", "quarantines", "default", "x"));
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "quarantines.autoguardrails.io \"x\" is forbidden: User \"mallory\" cannot patch resource \"quarantines\" in API group \"autoguardrails.io\" in the namespace \"default\""
        );
        let mut core = request("list", "configmaps", "", "");
        core.group = String::new();
        assert_eq!(
            forbidden(&mallory, &core).message,
            "configmaps is forbidden: User \"mallory\" cannot list resource \"configmaps\" in API group \"\" at the cluster scope"
        );
        let path = Attributes {
            verb: "get".to_string(),
            path: "/metrics".to_string(),
            ..Attributes::default()
        };
        assert_eq!(
            forbidden(&mallory, &path).message,
            "forbidden: User \"mallory\" cannot get path \"/metrics\""
        );
    }
}
