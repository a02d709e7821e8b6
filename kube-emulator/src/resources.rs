//! The registry of served resource types (built-ins and CRD-defined kinds) and discovery documents.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Verbs of a normal resource.
const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource type at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `widgets`.
    pub plural: String,
    /// Singular name, e.g. `widget`.
    pub singular: String,
    /// Kind, e.g. `Widget`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Whether a `status` subresource is served.
    pub has_status: bool,
    /// The `openAPIV3Schema` for CRD-defined kinds.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` for CRD-defined kinds.
    pub printer_columns: Vec<Value>,
    /// Whether this kind comes from a CRD.
    pub custom: bool,
    /// Whether generation is tracked (custom resources and CRDs).
    pub tracks_generation: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key independent of version: `plural.group`.
    pub fn storage_key(&self) -> String {
        if self.group.is_empty() || crate::events::is_events_v1(&self.group, &self.plural) {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The discovery entries (`APIResource`) of this type and its subresources.
    fn discovery_entries(&self) -> Vec<Value> {
        let mut entry = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ALL_VERBS,
        });
        if !self.short_names.is_empty() {
            entry["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            entry["categories"] = json!(self.categories);
        }
        let mut entries = vec![entry];
        if self.has_status {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }

    /// The aggregated-discovery (`APIResourceDiscovery`) entry of this type.
    fn aggregated_entry(&self) -> Value {
        let mut entry = json!({
            "resource": self.plural,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": ALL_VERBS,
        });
        if !self.short_names.is_empty() {
            entry["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            entry["categories"] = json!(self.categories);
        }
        if self.has_status {
            entry["subresources"] = json!([{
                "subresource": "status",
                "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
                "verbs": ["get", "patch", "update"],
            }]);
        }
        entry
    }
}

/// Builds a built-in resource type.
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        kind: kind.to_string(),
        namespaced,
        short_names: short_names.iter().map(|name| name.to_string()).collect(),
        categories: Vec::new(),
        has_status: false,
        schema: None,
        printer_columns: Vec::new(),
        custom: false,
        tracks_generation: false,
    }
}

/// All served resource types, keyed by (group, version, plural).
#[derive(Debug, Clone)]
pub struct Registry {
    /// Types by (group, version, plural).
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
    /// Preferred (first served storage) version of each group.
    preferred: BTreeMap<String, String>,
}

impl Registry {
    /// The registry with the built-in kinds the emulator serves.
    pub fn with_builtins() -> Self {
        let mut namespaces = builtin("", "v1", "namespaces", "Namespace", false, &["ns"]);
        namespaces.has_status = true;
        let mut crds = builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
        );
        crds.has_status = true;
        crds.tracks_generation = true;
        let builtins = vec![
            namespaces,
            builtin("", "v1", "secrets", "Secret", true, &[]),
            builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
            builtin("", "v1", "events", "Event", true, &["ev"]),
            builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"]),
            builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
            builtin(crate::rbac::GROUP, "v1", "roles", "Role", true, &[]),
            builtin(
                crate::rbac::GROUP,
                "v1",
                "rolebindings",
                "RoleBinding",
                true,
                &[],
            ),
            builtin(
                crate::rbac::GROUP,
                "v1",
                "clusterroles",
                "ClusterRole",
                false,
                &[],
            ),
            builtin(
                crate::rbac::GROUP,
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
            ),
            builtin(
                crate::admission::GROUP,
                "v1",
                "validatingwebhookconfigurations",
                "ValidatingWebhookConfiguration",
                false,
                &[],
            ),
            builtin(
                crate::admission::GROUP,
                "v1",
                "mutatingwebhookconfigurations",
                "MutatingWebhookConfiguration",
                false,
                &[],
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
                &[],
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
                &[],
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
                true,
                &[],
            ),
            builtin(
                "authentication.k8s.io",
                "v1",
                "selfsubjectreviews",
                "SelfSubjectReview",
                false,
                &[],
            ),
            crds,
        ];
        let mut registry = Self {
            types: BTreeMap::new(),
            preferred: BTreeMap::new(),
        };
        for resource in builtins {
            registry
                .preferred
                .entry(resource.group.clone())
                .or_insert_with(|| resource.version.clone());
            registry.insert(resource);
        }
        registry
    }

    /// Adds or replaces a type.
    fn insert(&mut self, resource: ResourceType) {
        self.types.insert(
            (
                resource.group.clone(),
                resource.version.clone(),
                resource.plural.clone(),
            ),
            Arc::new(resource),
        );
    }

    /// Looks up a type by group, version and plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Looks up a type by group and kind (any version; prefers the preferred version).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = split_api_version(api_version);
        self.types
            .values()
            .find(|resource| {
                resource.group == group && resource.version == version && resource.kind == kind
            })
            .cloned()
    }

    /// Whether a group/version is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .keys()
            .any(|(g, v, _)| g == group && v == version)
    }

    /// Registers the kinds of a CRD object (replacing earlier ones from it).
    pub fn register_crd(&mut self, crd: &Value) {
        self.unregister_crd(crd);
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return;
        }
        let singular = names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase());
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        let mut preferred = None;
        for version in &versions {
            if version["served"].as_bool() == Some(false) {
                continue;
            }
            let Some(version_name) = version["name"].as_str() else {
                continue;
            };
            if preferred.is_none() || version["storage"].as_bool() == Some(true) {
                preferred = Some(version_name.to_string());
            }
            self.insert(ResourceType {
                group: group.clone(),
                version: version_name.to_string(),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                has_status: version["subresources"]["status"].is_object(),
                schema: version["schema"]["openAPIV3Schema"]
                    .is_object()
                    .then(|| version["schema"]["openAPIV3Schema"].clone()),
                printer_columns: version["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                custom: true,
                tracks_generation: true,
            });
        }
        if let Some(preferred) = preferred {
            self.preferred.insert(group, preferred);
        }
    }

    /// Removes the kinds of a CRD object.
    pub fn unregister_crd(&mut self, crd: &Value) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        self.types
            .retain(|(g, _, p), resource| !(resource.custom && g == group && p == plural));
        if !self.types.keys().any(|(g, _, _)| g == group) {
            self.preferred.remove(group);
        }
    }

    /// The `APIResourceList` of one group/version.
    pub fn resource_list(&self, group: &str, version: &str) -> Value {
        let resources: Vec<Value> = self
            .types
            .values()
            .filter(|resource| resource.group == group && resource.version == version)
            .flat_map(|resource| resource.discovery_entries())
            .collect();
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        })
    }

    /// Versions served for a group, preferred first.
    fn versions_of(&self, group: &str) -> Vec<String> {
        let mut versions: Vec<String> = Vec::new();
        if let Some(preferred) = self.preferred.get(group) {
            versions.push(preferred.clone());
        }
        for (g, v, _) in self.types.keys() {
            if g == group && !versions.contains(v) {
                versions.push(v.clone());
            }
        }
        versions
    }

    /// Non-core groups, sorted.
    fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .types
            .keys()
            .map(|(g, _, _)| g.clone())
            .filter(|g| !g.is_empty())
            .collect();
        groups.dedup();
        groups
    }

    /// The `APIGroupList` served at `/apis`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|group| {
                let versions: Vec<Value> = self
                    .versions_of(group)
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                    .collect();
                let preferred = versions.first().cloned().unwrap_or(Value::Null);
                json!({"name": group, "versions": versions, "preferredVersion": preferred})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// The `APIGroup` served at `/apis/{group}`.
    pub fn group(&self, group: &str) -> Option<Value> {
        let versions: Vec<Value> = self
            .versions_of(group)
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        let preferred = versions.first()?.clone();
        Some(
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}),
        )
    }

    /// The aggregated discovery document (`apidiscovery.k8s.io/v2`) for `/api` (core) or `/apis`.
    pub fn aggregated(&self, core: bool) -> Value {
        let groups: Vec<String> = if core {
            vec![String::new()]
        } else {
            self.groups()
        };
        let items: Vec<Value> = groups
            .iter()
            .map(|group| {
                let versions: Vec<Value> = self
                    .versions_of(group)
                    .iter()
                    .map(|version| {
                        let resources: Vec<Value> = self
                            .types
                            .values()
                            .filter(|r| &r.group == group && &r.version == version)
                            .map(|resource| resource.aggregated_entry())
                            .collect();
                        json!({"version": version, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": group}, "versions": versions})
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        })
    }

    /// All (group, version) pairs served.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .types
            .keys()
            .map(|(g, v, _)| (g.clone(), v.clone()))
            .collect();
        pairs.dedup();
        pairs
    }

    /// All types of one group/version.
    pub fn types_of(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .values()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }
}

/// Splits `group/version` (or `version` for core) into its parts.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}
