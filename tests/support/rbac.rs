//! RBAC checker for tests: given the chart's rendered Roles/ClusterRoles and bindings, and the
//! Kubernetes API emulator's request log, report every request the controller's ServiceAccount
//! would have been refused, and every grant no request used. It evaluates RBAC the way the API
//! server's authorizer does for resource requests (apiGroup, resource[/subresource], verb,
//! namespace, resourceNames); it must not decide what the chart grants.
#![allow(dead_code)]

use kube_emulator::RequestRecord;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// One RBAC rule (a `PolicyRule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API groups (`""` is core).
    pub api_groups: Vec<String>,
    /// Resources, with `resource/subresource` entries.
    pub resources: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
    /// Object names; empty means any.
    pub resource_names: Vec<String>,
}

/// A rule as granted to the subject: where it applies and which role it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `None` = every namespace and cluster-scoped objects (ClusterRoleBinding);
    /// `Some(ns)` = only that namespace (RoleBinding).
    pub namespace: Option<String>,
    /// `Role/name` or `ClusterRole/name`.
    pub role: String,
    /// The rule.
    pub rule: Rule,
}

/// What the authorizer sees of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    /// A request on an API resource.
    Resource {
        /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`).
        verb: String,
        /// API group (`""` for core).
        group: String,
        /// Plural resource.
        resource: String,
        /// Subresource (`status`, `finalizers`), empty for none.
        subresource: String,
        /// Namespace, empty for cluster-scoped or all-namespaces requests.
        namespace: String,
        /// Object name, empty for collections and create.
        name: String,
    },
    /// Discovery, version, OpenAPI: allowed to every authenticated user by the default
    /// `system:discovery` / `system:public-info-viewer` ClusterRoles.
    NonResource {
        /// The path.
        path: String,
    },
}

/// A request the grants do not allow.
#[derive(Clone, Debug)]
pub struct Denied {
    /// The logged request.
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// What the authorizer saw.
    pub attributes: Attributes,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.attributes {
            Attributes::Resource {
                verb,
                group,
                resource,
                subresource,
                namespace,
                name,
            } => {
                let resource = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                write!(
                    formatter,
                    "{} {} → verb={verb} group={group:?} resource={resource} namespace={namespace:?} name={name:?}",
                    self.method, self.path
                )
            }
            Attributes::NonResource { path } => write!(formatter, "{} {path}", self.method),
        }
    }
}

/// The rules bound to one ServiceAccount.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    /// Every rule reaching the subject.
    pub grants: Vec<Grant>,
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn rules_of(role: &Value) -> Vec<Rule> {
    role.get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|rule| Rule {
                    api_groups: strings(rule, "apiGroups"),
                    resources: strings(rule, "resources"),
                    verbs: strings(rule, "verbs"),
                    resource_names: strings(rule, "resourceNames"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a multi-document YAML stream into JSON values (empty documents skipped).
pub fn parse_manifests(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).expect("rendered manifests are not valid YAML");
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

impl Rbac {
    /// The rules that the manifests bind to ServiceAccount `namespace/name`.
    pub fn for_service_account(manifests: &[Value], namespace: &str, name: &str) -> Rbac {
        let find_role = |kind: &str, role_name: &str, role_namespace: Option<&str>| {
            manifests.iter().find(|object| {
                text(object, "/kind") == kind
                    && text(object, "/metadata/name") == role_name
                    && role_namespace.is_none_or(|ns| text(object, "/metadata/namespace") == ns)
            })
        };
        let mut grants = Vec::new();
        for binding in manifests {
            let kind = text(binding, "/kind");
            if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
                continue;
            }
            let bound = binding
                .get("subjects")
                .and_then(Value::as_array)
                .is_some_and(|subjects| {
                    subjects.iter().any(|subject| {
                        text(subject, "/kind") == "ServiceAccount"
                            && text(subject, "/name") == name
                            && text(subject, "/namespace") == namespace
                    })
                });
            if !bound {
                continue;
            }
            let role_kind = text(binding, "/roleRef/kind");
            let role_name = text(binding, "/roleRef/name");
            let binding_namespace = text(binding, "/metadata/namespace");
            let role = if role_kind == "Role" {
                find_role("Role", role_name, Some(binding_namespace))
            } else {
                find_role("ClusterRole", role_name, None)
            };
            let Some(role) = role else {
                panic!(
                    "{kind} {} refers to missing {role_kind} {role_name}",
                    text(binding, "/metadata/name")
                );
            };
            let scope = if kind == "ClusterRoleBinding" {
                None
            } else {
                Some(binding_namespace.to_string())
            };
            for rule in rules_of(role) {
                grants.push(Grant {
                    namespace: scope.clone(),
                    role: format!("{role_kind}/{role_name}"),
                    rule,
                });
            }
        }
        Rbac { grants }
    }

    /// True when some grant allows the request.
    pub fn allows(&self, attributes: &Attributes) -> bool {
        self.matching(attributes).next().is_some()
    }

    /// The grants that allow the request.
    pub fn matching<'a>(&'a self, attributes: &'a Attributes) -> impl Iterator<Item = &'a Grant> {
        self.grants
            .iter()
            .filter(move |grant| grant_allows(grant, attributes))
    }

    /// Every logged request the grants do not allow (non-resource requests are allowed).
    pub fn check<'a>(&self, requests: impl IntoIterator<Item = &'a RequestRecord>) -> Vec<Denied> {
        requests
            .into_iter()
            .filter_map(|record| {
                let attributes = attributes(record);
                let create_on_apply = as_create_on_apply(record, &attributes);
                let create_allowed = create_on_apply
                    .as_ref()
                    .is_none_or(|create| self.allows(create));
                if self.allows(&attributes) && create_allowed {
                    None
                } else {
                    Some(Denied {
                        method: record.method.clone(),
                        path: if record.query.is_empty() {
                            record.path.clone()
                        } else {
                            format!("{}?{}", record.path, record.query)
                        },
                        attributes,
                    })
                }
            })
            .collect()
    }

    /// Granted (role, apiGroup, resource, verb) combinations that no request used: the list to
    /// justify ("nothing broader is granted without a reason").
    pub fn unused<'a>(
        &self,
        requests: impl IntoIterator<Item = &'a RequestRecord>,
    ) -> BTreeSet<(String, String, String, String)> {
        let mut unused = BTreeSet::new();
        for grant in &self.grants {
            for group in &grant.rule.api_groups {
                for resource in &grant.rule.resources {
                    for verb in &grant.rule.verbs {
                        unused.insert((
                            grant.role.clone(),
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                        ));
                    }
                }
            }
        }
        let authorized = requests.into_iter().flat_map(|record| {
            let attributes = attributes(record);
            let create_on_apply = as_create_on_apply(record, &attributes);
            std::iter::once(attributes).chain(create_on_apply)
        });
        for attributes in authorized {
            if let Attributes::Resource {
                verb,
                group,
                resource,
                subresource,
                ..
            } = &attributes
            {
                let full = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                for grant in self.matching(&attributes) {
                    unused.remove(&(
                        grant.role.clone(),
                        group.clone(),
                        full.clone(),
                        verb.clone(),
                    ));
                }
            }
        }
        unused
    }
}

/// A server-side apply that created its object (the server answers 201 to a PATCH only then) is
/// also authorized as `create` by the API server ("Server-Side Apply ... needs the create verb
/// permission in order to create new resources").
fn as_create_on_apply(record: &RequestRecord, attributes: &Attributes) -> Option<Attributes> {
    match attributes {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } if verb == "patch" && record.status == 201 => Some(Attributes::Resource {
            verb: "create".to_string(),
            group: group.clone(),
            resource: resource.clone(),
            subresource: subresource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        _ => None,
    }
}

fn contains_or_star(values: &[String], wanted: &str) -> bool {
    values.iter().any(|value| value == "*" || value == wanted)
}

fn grant_allows(grant: &Grant, attributes: &Attributes) -> bool {
    let Attributes::Resource {
        verb,
        group,
        resource,
        subresource,
        namespace,
        name,
    } = attributes
    else {
        return true;
    };
    if let Some(scope) = &grant.namespace
        && scope != namespace
    {
        return false;
    }
    let rule = &grant.rule;
    let full = if subresource.is_empty() {
        resource.clone()
    } else {
        format!("{resource}/{subresource}")
    };
    let resource_matches = rule.resources.iter().any(|r| {
        r == "*"
            || *r == full
            || (subresource.is_empty() && r == resource)
            || *r == format!("*/{subresource}")
    });
    contains_or_star(&rule.verbs, verb)
        && contains_or_star(&rule.api_groups, group)
        && resource_matches
        && (rule.resource_names.is_empty()
            || (!name.is_empty() && rule.resource_names.contains(name)))
}

/// What the authorizer sees of a logged request (path → group/resource/namespace/name).
pub fn attributes(record: &RequestRecord) -> Attributes {
    let segments: Vec<&str> = record.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => (String::new(), rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (group.to_string(), rest),
        _ => {
            return Attributes::NonResource {
                path: record.path.clone(),
            };
        }
    };
    let (namespace, rest): (String, &[&str]) = match rest {
        // /namespaces/{ns}/{resource}... is namespaced; /namespaces/{name} is the namespace object.
        ["namespaces", namespace, resource, tail @ ..] => {
            let mut parts = vec![*resource];
            parts.extend_from_slice(tail);
            return resource_attributes(record, group, namespace.to_string(), &parts);
        }
        other => (String::new(), other),
    };
    resource_attributes(record, group, namespace, rest)
}

fn resource_attributes(
    record: &RequestRecord,
    group: String,
    namespace: String,
    parts: &[&str],
) -> Attributes {
    let resource = parts.first().copied().unwrap_or("").to_string();
    let name = parts.get(1).copied().unwrap_or("").to_string();
    let subresource = parts.get(2).copied().unwrap_or("").to_string();
    // The authorizer sees the name of a `fieldSelector=metadata.name=X` list/watch too.
    let name = if name.is_empty() {
        form_field_selector_name(&record.query).unwrap_or_default()
    } else {
        name
    };
    let verb = if record.verb.is_empty() {
        record.method.to_lowercase()
    } else {
        record.verb.clone()
    };
    Attributes::Resource {
        verb,
        group,
        resource,
        subresource,
        namespace,
        name,
    }
}

fn form_field_selector_name(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if key != "fieldSelector" {
            return None;
        }
        let decoded = value
            .replace("%3D", "=")
            .replace("%3d", "=")
            .replace("%2C", ",");
        decoded
            .split(',')
            .find_map(|term| term.strip_prefix("metadata.name=").map(str::to_string))
    })
}

/// Renders the chart with `scripts/helm.py template` (the repository venv; `make deps`),
/// merging `values_json` (a JSON object, e.g. `{"controller":{"namespaces":["a"]}}`).
pub fn render_chart(values_json: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make deps` (scripts/test-deps.sh) first",
        python.display()
    );
    let output = Command::new(python)
        .arg(root.join("scripts/helm.py"))
        .args([
            "template",
            "--name",
            "agr",
            "--namespace",
            "autoguardrails",
            "--set-json",
            values_json,
        ])
        .output()
        .expect("failed to run scripts/helm.py");
    assert!(
        output.status.success(),
        "helm.py template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("rendered chart is not UTF-8")
}

/// The chart's ServiceAccount for release `agr` in namespace `autoguardrails`.
pub const SERVICE_ACCOUNT: (&str, &str) = ("autoguardrails", "agr-autoguardrails");
