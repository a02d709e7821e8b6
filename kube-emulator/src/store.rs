//! The in-memory object store: objects, resourceVersions, watch history, finalizers and garbage collection.

use crate::error::{ApiError, Cause};
use crate::fields::{self, Scope};
use crate::resources::{Registry, ResourceType};
use crate::schema;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in history and fanned out to watchers.
#[derive(Debug)]
pub struct StoredEvent {
    /// resourceVersion of the change.
    pub resource_version: u64,
    /// Storage key of the resource (`plural.group`).
    pub storage_key: String,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Event type.
    pub event_type: EventType,
    /// The object after the change (its last state for DELETED).
    pub object: Arc<Value>,
    /// The object before the change (None for ADDED).
    pub previous: Option<Arc<Value>>,
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop silently.
    Ignore,
    /// Drop and return a warning.
    #[default]
    Warn,
    /// Reject.
    Strict,
}

/// Per-request options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Field manager recorded in managedFields.
    pub manager: String,
    /// Unknown-field handling.
    pub field_validation: FieldValidation,
    /// `dryRun=All`: validate but do not persist.
    pub dry_run: bool,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteResult {
    /// The object as stored (or as it would be, for dry runs).
    pub object: Value,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
}

/// Delete options from query or body.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone (its last state).
    Removed(Value),
    /// The object remains with a deletionTimestamp until its finalizers are removed.
    Pending(Value),
}

/// Key of one object within a resource: (namespace, name).
type ObjectKey = (String, String);

/// Process-wide counter mixed into uids and generated names.
static UNIQUE_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A random-looking 64-bit number (splitmix64 over time and a counter).
pub fn random_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    let mut state = nanos
        ^ UNIQUE_COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut mixed = state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

/// A fresh UUID-v4-formatted uid.
fn new_uid() -> String {
    let high = random_u64();
    let low = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        ((low >> 48) & 0x3fff) | 0x8000,
        low & 0xffff_ffff_ffff
    )
}

/// Five random characters like `generateName` uses.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut value = random_u64();
    (0..5)
        .map(|_| {
            let character = ALPHABET[(value % ALPHABET.len() as u64) as usize] as char;
            value /= ALPHABET.len() as u64;
            character
        })
        .collect()
}

/// Now, RFC 3339 with second precision like Kubernetes.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Whether a name is a DNS-1123 subdomain.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether a name is a DNS-1123 label.
fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
}

/// The in-memory store.
#[derive(Debug)]
pub struct Store {
    /// Served types.
    pub registry: Registry,
    /// Objects by storage key, then (namespace, name).
    objects: HashMap<String, BTreeMap<ObjectKey, Arc<Value>>>,
    /// uid → (storage key, namespace, name).
    by_uid: HashMap<String, (String, String, String)>,
    /// owner uid → dependents (storage key, namespace, name).
    dependents: HashMap<String, BTreeSet<(String, String, String)>>,
    /// The last resourceVersion handed out.
    resource_version: u64,
    /// Recent events, oldest first.
    history: VecDeque<Arc<StoredEvent>>,
    /// How many events history keeps.
    history_capacity: usize,
    /// Watches may start from any rv ≥ this; older ones get 410.
    history_floor: u64,
    /// Live fan-out.
    sender: broadcast::Sender<Arc<StoredEvent>>,
}

impl Store {
    /// A store with the built-in kinds and the standard namespaces.
    pub fn new(history_capacity: usize, broadcast_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(broadcast_capacity.max(16));
        let mut store = Self {
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            resource_version: 0,
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            history_floor: 0,
            sender,
        };
        if let Some(namespaces) = store.registry.get("", "v1", "namespaces") {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let object =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                if let Err(error) = store.create(&namespaces, "", object, &WriteOptions::default())
                {
                    tracing::error!(%error, "creating a standard namespace failed");
                }
            }
        }
        store
    }

    /// The last resourceVersion handed out.
    pub fn current_resource_version(&self) -> u64 {
        self.resource_version
    }

    /// A receiver of all future events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }

    /// Events after `resource_version`, or 410 when history no longer reaches back that far.
    pub fn events_since(&self, resource_version: u64) -> Result<Vec<Arc<StoredEvent>>, ApiError> {
        if resource_version < self.history_floor {
            return Err(ApiError::gone(format!(
                "too old resource version: {resource_version} ({})",
                self.history_floor
            )));
        }
        let start = self
            .history
            .partition_point(|event| event.resource_version <= resource_version);
        Ok(self.history.iter().skip(start).cloned().collect())
    }

    /// The oldest resourceVersion a watch or continue token may start from.
    pub fn history_floor(&self) -> u64 {
        self.history_floor
    }

    /// Drops all history: watches from any earlier rv get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_floor = self.resource_version;
    }

    /// One object.
    pub fn get(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&resource.storage_key())
            .and_then(|objects| objects.get(&(namespace.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&resource.group, &resource.plural, name))
    }

    /// Objects of a resource in a namespace (or all namespaces), in key order, starting after `after`.
    pub fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        after: Option<&ObjectKey>,
    ) -> Vec<Arc<Value>> {
        let Some(objects) = self.objects.get(&resource.storage_key()) else {
            return Vec::new();
        };
        let range: Box<dyn Iterator<Item = (&ObjectKey, &Arc<Value>)>> = match (namespace, after) {
            (_, Some(after)) => Box::new(objects.range::<ObjectKey, _>((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            ))),
            (Some(namespace), None) => Box::new(objects.range::<ObjectKey, _>((
                std::ops::Bound::Included((namespace.to_string(), String::new())),
                std::ops::Bound::Unbounded,
            ))),
            (None, None) => Box::new(objects.iter()),
        };
        range
            .take_while(|((object_namespace, _), _)| {
                namespace.is_none_or(|wanted| wanted == object_namespace)
            })
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Hands out the next resourceVersion.
    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// Records and fans out an event.
    fn emit(
        &mut self,
        storage_key: &str,
        namespace: &str,
        event_type: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let event = Arc::new(StoredEvent {
            resource_version: self.resource_version,
            storage_key: storage_key.to_string(),
            namespace: namespace.to_string(),
            event_type,
            object,
            previous,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_capacity {
            if let Some(dropped) = self.history.pop_front() {
                self.history_floor = dropped.resource_version;
            }
        }
        let _ = self.sender.send(event);
    }

    /// Stores an object and emits an event.
    fn put(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        event_type: EventType,
    ) -> Arc<Value> {
        let object = Arc::new(object);
        let key = resource.storage_key();
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            self.by_uid.insert(
                uid.to_string(),
                (key.clone(), namespace.to_string(), name.to_string()),
            );
        }
        let previous = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert((namespace.to_string(), name.to_string()), object.clone());
        let entry = (key.clone(), namespace.to_string(), name.to_string());
        if let Some(previous) = &previous {
            self.unindex_owners(previous, &entry);
        }
        for owner in owner_uids(&object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(entry.clone());
        }
        self.emit(&key, namespace, event_type, object.clone(), previous);
        object
    }

    /// Drops an object from the owner index.
    fn unindex_owners(&mut self, object: &Value, entry: &(String, String, String)) {
        for owner in owner_uids(object) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(entry);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    /// Creates an object.
    pub fn create(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        check_type_meta(resource, &mut object)?;
        let metadata = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata is required"))?;
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        // A create with no manager is a server-side-apply create whose managedFields are already computed.
        if !options.manager.is_empty() {
            metadata.remove("managedFields");
        }
        if resource.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    metadata.insert("namespace".to_string(), json!(namespace));
                }
            }
        } else {
            metadata.remove("namespace");
        }
        let name = match metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
        {
            Some(name) => name.to_string(),
            None => match metadata
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|prefix| !prefix.is_empty())
            {
                Some(prefix) => format!("{prefix}{}", name_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        &resource.group,
                        &resource.kind,
                        "",
                        &[Cause::new(
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )],
                    ));
                }
            },
        };
        metadata.insert("name".to_string(), json!(name));
        // RBAC objects are named by path segments (`system:controller:x`, `autoguardrails:approver`).
        let path_segment = resource.group == crate::rbac::GROUP;
        let valid_name = if resource.plural == "namespaces" {
            is_dns_label(&name)
        } else if path_segment {
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
        } else {
            is_dns_subdomain(&name)
        };
        if !valid_name && path_segment {
            return Err(ApiError::invalid(
                &resource.group,
                &resource.kind,
                &name,
                &[Cause::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!(
                        "Invalid value: {name:?}: may not be '.' or '..' and may not contain '/' or '%'"
                    ),
                )],
            ));
        }
        if !valid_name {
            return Err(ApiError::invalid(
                &resource.group,
                &resource.kind,
                &name,
                &[Cause::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!(
                        "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                    ),
                )],
            ));
        }
        if resource.namespaced && !self.namespace_exists(namespace) {
            return Err(ApiError::not_found("", "namespaces", namespace));
        }
        if self
            .objects
            .get(&resource.storage_key())
            .is_some_and(|objects| objects.contains_key(&(namespace.to_string(), name.clone())))
        {
            return Err(ApiError::already_exists(
                &resource.group,
                &resource.plural,
                &name,
            ));
        }
        if resource.has_status
            && resource.custom
            && let Some(fields) = object.as_object_mut()
        {
            fields.remove("status");
        }
        let warnings = self.validate(resource, &mut object, None, options)?;
        if resource.plural == "customresourcedefinitions" {
            self.prepare_crd(&mut object, &name)?;
        }
        if resource.plural == "secrets" {
            if object["type"].as_str().is_none_or(str::is_empty) {
                object["type"] = json!("Opaque");
            }
            fold_string_data(&mut object);
        }
        if resource.plural == "namespaces" {
            object["status"] = json!({"phase": "Active"});
            object["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        let time = now();
        object["metadata"]["uid"] = json!(new_uid());
        object["metadata"]["creationTimestamp"] = json!(time);
        if resource.tracks_generation {
            object["metadata"]["generation"] = json!(1);
        }
        let scope = scope_of(resource, None);
        if !options.manager.is_empty() {
            fields::record_update(
                None,
                &mut object,
                &options.manager,
                "",
                scope,
                resource.schema.as_ref(),
                &resource.api_version(),
                &time,
            );
        }
        if options.dry_run {
            object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
            return Ok(WriteResult { object, warnings });
        }
        let resource_version = self.next_resource_version();
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        if resource.plural == "customresourcedefinitions" {
            self.registry.register_crd(&object);
        }
        let stored = self.put(resource, namespace, &name, object, EventType::Added);
        Ok(WriteResult {
            object: (*stored).clone(),
            warnings,
        })
    }

    /// Whether a namespace exists.
    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects
            .get("namespaces")
            .is_some_and(|objects| objects.contains_key(&(String::new(), namespace.to_string())))
    }

    /// Schema processing for custom kinds; returns warnings.
    fn validate(
        &self,
        resource: &ResourceType,
        object: &mut Value,
        old: Option<&Value>,
        options: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut warnings = Vec::new();
        if let Some(labels) = object["metadata"].get("labels")
            && !labels.is_null()
            && !labels
                .as_object()
                .is_some_and(|labels| labels.values().all(Value::is_string))
        {
            return Err(ApiError::bad_request(
                "metadata.labels must be a map of strings",
            ));
        }
        let Some(schema) = &resource.schema else {
            return Ok(warnings);
        };
        let outcome = schema::process(object, old, schema);
        if !outcome.unknown_fields.is_empty() {
            match options.field_validation {
                FieldValidation::Strict => {
                    let listing: Vec<String> = outcome
                        .unknown_fields
                        .iter()
                        .map(|field| format!("unknown field \"{field}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        resource.kind,
                        resource.api_version(),
                        resource.kind,
                        listing.join(", ")
                    )));
                }
                FieldValidation::Warn => {
                    warnings.extend(
                        outcome
                            .unknown_fields
                            .iter()
                            .map(|field| format!("unknown field \"{field}\"")),
                    );
                }
                FieldValidation::Ignore => {}
            }
        }
        if !outcome.causes.is_empty() {
            return Err(ApiError::invalid(
                &resource.group,
                &resource.kind,
                &name,
                &outcome.causes,
            ));
        }
        Ok(warnings)
    }

    /// Checks a CRD and fills its status.
    fn prepare_crd(&self, object: &mut Value, name: &str) -> Result<(), ApiError> {
        let spec = &object["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let plural = spec["names"]["plural"].as_str().unwrap_or_default();
        let mut causes = Vec::new();
        if group.is_empty() {
            causes.push(Cause::new(
                "FieldValueRequired",
                "spec.group",
                "Required value",
            ));
        }
        if plural.is_empty() {
            causes.push(Cause::new(
                "FieldValueRequired",
                "spec.names.plural",
                "Required value",
            ));
        }
        if spec["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            causes.push(Cause::new(
                "FieldValueRequired",
                "spec.names.kind",
                "Required value",
            ));
        }
        if !causes.is_empty() || name != format!("{plural}.{group}") {
            if causes.is_empty() {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                ));
            }
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                name,
                &causes,
            ));
        }
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        if versions.is_empty() {
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                name,
                &[Cause::new(
                    "FieldValueRequired",
                    "spec.versions",
                    "Required value: must have exactly one version marked as storage version",
                )],
            ));
        }
        let stored: Vec<Value> = versions
            .iter()
            .filter(|version| version["storage"].as_bool() == Some(true))
            .map(|version| version["name"].clone())
            .collect();
        let time = now();
        let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": time, "reason": reason, "message": message});
        object["status"] = json!({
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": spec["names"].clone(),
            "storedVersions": stored,
        });
        Ok(())
    }

    /// Replaces an object after a write (update, patch, apply) computed `new`.
    /// `subresource` is `Some("status")` for status writes; `managed_preset` skips Update tracking.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        mut new: Value,
        subresource: Option<&str>,
        options: &WriteOptions,
        managed_preset: bool,
    ) -> Result<WriteResult, ApiError> {
        let old = self.get(resource, namespace, name)?;
        check_type_meta(resource, &mut new)?;
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        if let Some(given) = new["metadata"]["name"].as_str()
            && given != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(given) = new["metadata"]["resourceVersion"].as_str()
            && !given.is_empty()
            && Some(given) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(&resource.group, &resource.plural, name));
        }
        if let Some(given) = new["metadata"]["uid"].as_str()
            && !given.is_empty()
            && Some(given) != old["metadata"]["uid"].as_str()
        {
            return Err(ApiError::conflict(&resource.group, &resource.plural, name));
        }
        if subresource == Some("status") {
            let mut merged = (*old).clone();
            match new.get("status") {
                Some(status) => merged["status"] = status.clone(),
                None => {
                    if let Some(fields) = merged.as_object_mut() {
                        fields.remove("status");
                    }
                }
            }
            if managed_preset {
                merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
            }
            new = merged;
        } else if resource.has_status {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(fields) = new.as_object_mut() {
                        fields.remove("status");
                    }
                }
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(value) => new["metadata"][field] = value.clone(),
                None => {
                    if let Some(metadata) = new["metadata"].as_object_mut() {
                        metadata.remove(field);
                    }
                }
            }
        }
        if !managed_preset {
            new["metadata"]["managedFields"] = old["metadata"]
                .get("managedFields")
                .cloned()
                .unwrap_or(Value::Null);
        }
        let warnings = self.validate(resource, &mut new, Some(&old), options)?;
        if resource.plural == "secrets" {
            fold_string_data(&mut new);
        }
        if resource.plural == "customresourcedefinitions" {
            let status = old.get("status").cloned();
            self.prepare_crd(&mut new, name)?;
            if let Some(status) = status {
                new["status"]["conditions"] = status["conditions"].clone();
            }
        }
        if resource.plural == "namespaces" {
            new["spec"] = old["spec"].clone();
            if subresource.is_none() {
                new["status"] = old["status"].clone();
            }
        }
        if resource.tracks_generation && spec_changed(&old, &new, resource.has_status) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        let time = now();
        if !managed_preset && !options.manager.is_empty() {
            fields::record_update(
                Some(&old),
                &mut new,
                &options.manager,
                subresource.unwrap_or_default(),
                scope_of(resource, subresource),
                resource.schema.as_ref(),
                &resource.api_version(),
                &time,
            );
        }
        if new["metadata"]["managedFields"].is_null()
            && let Some(metadata) = new["metadata"].as_object_mut()
        {
            metadata.remove("managedFields");
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if same_ignoring_times(&old, &new) {
            return Ok(WriteResult {
                object: (*old).clone(),
                warnings,
            });
        }
        if options.dry_run {
            return Ok(WriteResult {
                object: new,
                warnings,
            });
        }
        let deleting = new["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|time| !time.is_null());
        let finalizers_empty = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if deleting && finalizers_empty {
            let removed = self.remove(resource, namespace, name, Some(new));
            return Ok(WriteResult {
                object: removed,
                warnings,
            });
        }
        let resource_version = self.next_resource_version();
        new["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        if resource.plural == "customresourcedefinitions" {
            self.registry.register_crd(&new);
        }
        let stored = self.put(resource, namespace, name, new, EventType::Modified);
        Ok(WriteResult {
            object: (*stored).clone(),
            warnings,
        })
    }

    /// Deletes an object, honouring finalizers, preconditions and propagation.
    pub fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<DeleteOutcome, ApiError> {
        let old = self.get(resource, namespace, name)?;
        if let Some(uid) = &options.precondition_uid
            && Some(uid.as_str()) != old["metadata"]["uid"].as_str()
        {
            let mut error = ApiError::conflict(&resource.group, &resource.plural, name);
            error.message = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            );
            return Err(error);
        }
        if let Some(version) = &options.precondition_resource_version
            && Some(version.as_str()) != old["metadata"]["resourceVersion"].as_str()
        {
            let mut error = ApiError::conflict(&resource.group, &resource.plural, name);
            error.message = format!(
                "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            );
            return Err(error);
        }
        if options.dry_run {
            return Ok(DeleteOutcome::Removed((*old).clone()));
        }
        let policy = options
            .propagation_policy
            .as_deref()
            .unwrap_or("Background");
        if old["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|time| !time.is_null())
        {
            return Ok(DeleteOutcome::Pending((*old).clone()));
        }
        let uid = old["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
        }
        let mut finalizers: Vec<Value> = old["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let foreground = policy == "Foreground" && !self.dependents_of(&uid).is_empty();
        if foreground && !finalizers.contains(&json!("foregroundDeletion")) {
            finalizers.push(json!("foregroundDeletion"));
        }
        let namespace_with_content =
            resource.plural == "namespaces" && self.namespace_has_objects(name);
        if !finalizers.is_empty() || namespace_with_content {
            let mut pending = (*old).clone();
            pending["metadata"]["deletionTimestamp"] = json!(now());
            pending["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if !finalizers.is_empty() {
                pending["metadata"]["finalizers"] = Value::Array(finalizers);
            }
            if resource.plural == "namespaces" {
                pending["status"]["phase"] = json!("Terminating");
            }
            let resource_version = self.next_resource_version();
            pending["metadata"]["resourceVersion"] = json!(resource_version.to_string());
            let stored = self.put(resource, namespace, name, pending, EventType::Modified);
            if foreground {
                self.delete_dependents(&uid);
            }
            if resource.plural == "namespaces" {
                self.empty_namespace(name);
                let Ok(current) = self.get(resource, namespace, name) else {
                    return Ok(DeleteOutcome::Removed((*stored).clone()));
                };
                if !self.namespace_has_objects(name)
                    && current["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(Vec::is_empty)
                {
                    return Ok(DeleteOutcome::Removed(
                        self.remove(resource, namespace, name, None),
                    ));
                }
                return Ok(DeleteOutcome::Pending((*current).clone()));
            }
            return Ok(DeleteOutcome::Pending((*stored).clone()));
        }
        let removed = self.remove(resource, namespace, name, None);
        Ok(DeleteOutcome::Removed(removed))
    }

    /// Removes an object for good (emitting DELETED) and runs the consequences.
    fn remove(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        last_state: Option<Value>,
    ) -> Value {
        let key = resource.storage_key();
        let taken = self
            .objects
            .get_mut(&key)
            .and_then(|objects| objects.remove(&(namespace.to_string(), name.to_string())));
        let Some(taken) = taken else {
            return last_state.unwrap_or_default();
        };
        self.unindex_owners(
            &taken,
            &(key.clone(), namespace.to_string(), name.to_string()),
        );
        let mut object = last_state.unwrap_or_else(|| (*taken).clone());
        let resource_version = self.next_resource_version();
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.by_uid.remove(&uid);
        let object = Arc::new(object);
        self.emit(
            &key,
            namespace,
            EventType::Deleted,
            object.clone(),
            Some(taken),
        );
        if resource.plural == "customresourcedefinitions" {
            self.remove_crd_instances(&object);
            self.registry.unregister_crd(&object);
        }
        if resource.plural == "namespaces" {
            self.empty_namespace(name);
        }
        self.delete_dependents(&uid);
        self.release_foreground_owners(&object);
        if resource.namespaced {
            self.reap_namespace(namespace);
        }
        (*object).clone()
    }

    /// Deletes every instance of a CRD's kind.
    fn remove_crd_instances(&mut self, crd: &Value) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        let key = format!("{plural}.{group}");
        let Some(resource) = self.resource_for_key(&key) else {
            return;
        };
        let names: Vec<ObjectKey> = self
            .objects
            .get(&key)
            .map(|objects| objects.keys().cloned().collect())
            .unwrap_or_default();
        for (namespace, name) in names {
            self.remove(&resource, &namespace, &name, None);
        }
    }

    /// Any registered type stored under a key.
    fn resource_for_key(&self, key: &str) -> Option<Arc<ResourceType>> {
        self.registry
            .group_versions()
            .iter()
            .flat_map(|(group, version)| self.registry.types_of(group, version))
            .find(|resource| resource.storage_key() == key)
    }

    /// (storage key, namespace, name) of objects with an ownerReference to `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<(String, String, String)> {
        self.dependents
            .get(uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Background garbage collection of the dependents of a removed (or foreground-deleting) owner.
    fn delete_dependents(&mut self, uid: &str) {
        for (key, namespace, name) in self.dependents_of(uid) {
            let Some(resource) = self.resource_for_key(&key) else {
                continue;
            };
            let Ok(object) = self.get(&resource, &namespace, &name) else {
                continue;
            };
            let other_owner_alive = object["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|reference| reference["uid"].as_str() != Some(uid))
                .any(|reference| {
                    reference["uid"]
                        .as_str()
                        .is_some_and(|other| self.by_uid.contains_key(other))
                });
            if other_owner_alive {
                self.strip_owner_reference(&resource, &namespace, &name, uid);
                continue;
            }
            let options = DeleteOptions {
                propagation_policy: Some("Background".to_string()),
                ..DeleteOptions::default()
            };
            if let Err(error) = self.delete(&resource, &namespace, &name, &options) {
                tracing::warn!(%error, name, "garbage collection of a dependent failed");
            }
        }
    }

    /// Removes ownerReferences to `uid` from all dependents (orphaning them).
    fn orphan_dependents(&mut self, uid: &str) {
        for (key, namespace, name) in self.dependents_of(uid) {
            if let Some(resource) = self.resource_for_key(&key) {
                self.strip_owner_reference(&resource, &namespace, &name, uid);
            }
        }
    }

    /// Drops one ownerReference from an object (a MODIFIED event).
    fn strip_owner_reference(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        uid: &str,
    ) {
        let Ok(object) = self.get(resource, namespace, name) else {
            return;
        };
        let mut changed = (*object).clone();
        if let Some(references) = changed["metadata"]["ownerReferences"].as_array_mut() {
            references.retain(|reference| reference["uid"].as_str() != Some(uid));
            if references.is_empty()
                && let Some(metadata) = changed["metadata"].as_object_mut()
            {
                metadata.remove("ownerReferences");
            }
        }
        let resource_version = self.next_resource_version();
        changed["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        self.put(resource, namespace, name, changed, EventType::Modified);
    }

    /// Foreground approximation: owners waiting in `foregroundDeletion` lose that finalizer once dependents are gone.
    fn release_foreground_owners(&mut self, removed: &Value) {
        let owners: Vec<String> = removed["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|reference| reference["uid"].as_str().map(str::to_string))
            .collect();
        for owner_uid in owners {
            let Some((key, namespace, name)) = self.by_uid.get(&owner_uid).cloned() else {
                continue;
            };
            let Some(resource) = self.resource_for_key(&key) else {
                continue;
            };
            let Ok(owner) = self.get(&resource, &namespace, &name) else {
                continue;
            };
            let waiting = owner["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|finalizers| finalizers.contains(&json!("foregroundDeletion")));
            if !waiting || !self.dependents_of(&owner_uid).is_empty() {
                continue;
            }
            let mut released = (*owner).clone();
            if let Some(finalizers) = released["metadata"]["finalizers"].as_array_mut() {
                finalizers.retain(|finalizer| finalizer != "foregroundDeletion");
            }
            let options = WriteOptions::default();
            if let Err(error) =
                self.update(&resource, &namespace, &name, released, None, &options, true)
            {
                tracing::warn!(%error, name, "releasing a foreground owner failed");
            }
        }
    }

    /// Whether any namespaced object lives in a namespace.
    fn namespace_has_objects(&self, namespace: &str) -> bool {
        self.objects
            .iter()
            .filter(|(key, _)| key.as_str() != "namespaces")
            .any(|(_, objects)| {
                objects
                    .range::<ObjectKey, _>((
                        std::ops::Bound::Included((namespace.to_string(), String::new())),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .is_some_and(|((object_namespace, _), _)| object_namespace == namespace)
            })
    }

    /// Deletes everything in a namespace.
    fn empty_namespace(&mut self, namespace: &str) {
        let keys: Vec<String> = self
            .objects
            .keys()
            .filter(|key| key.as_str() != "namespaces")
            .cloned()
            .collect();
        for key in keys {
            let Some(resource) = self.resource_for_key(&key) else {
                continue;
            };
            for object in self.list(&resource, Some(namespace), None) {
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Err(error) =
                    self.delete(&resource, namespace, &name, &DeleteOptions::default())
                {
                    tracing::warn!(%error, name, "namespace cleanup failed");
                }
            }
        }
    }

    /// Removes a terminating namespace once it is empty.
    fn reap_namespace(&mut self, namespace: &str) {
        let Some(namespaces) = self.registry.get("", "v1", "namespaces") else {
            return;
        };
        let Ok(object) = self.get(&namespaces, "", namespace) else {
            return;
        };
        let terminating = object["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|time| !time.is_null());
        if terminating
            && !self.namespace_has_objects(namespace)
            && object["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty)
        {
            self.remove(&namespaces, "", namespace, None);
        }
    }
}

/// Moves a Secret's write-only `stringData` into `data` (base64), like the real server.
fn fold_string_data(secret: &mut Value) {
    let Some(fields) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = fields.remove("stringData") else {
        return;
    };
    let data = fields
        .entry("data".to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, json!(crate::protobuf::base64_encode(text.as_bytes())));
        }
    }
}

/// The uids an object's ownerReferences point at.
fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|reference| reference["uid"].as_str().map(str::to_string))
        .collect()
}

/// Which fields a write touches, for managedFields.
pub fn scope_of(resource: &ResourceType, subresource: Option<&str>) -> Scope {
    match (subresource, resource.has_status) {
        (Some("status"), _) => Scope::StatusOnly,
        (_, true) => Scope::AllButStatus,
        (_, false) => Scope::Everything,
    }
}

/// Checks/fills apiVersion and kind of a request body.
fn check_type_meta(resource: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let expected_version = resource.api_version();
    match fields.get("apiVersion").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != expected_version => {
            let (given_group, _) = crate::resources::split_api_version(given);
            if given_group != resource.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({given}) does not match the expected API version ({expected_version})"
                )));
            }
        }
        _ => {}
    }
    match fields.get("kind").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        _ => {}
    }
    fields.insert("apiVersion".to_string(), json!(expected_version));
    fields.insert("kind".to_string(), json!(resource.kind));
    if !fields.get("metadata").is_some_and(Value::is_object) {
        fields.insert("metadata".to_string(), Value::Object(Map::new()));
    }
    Ok(())
}

/// Whether anything outside metadata (and status, for kinds with a status subresource) changed.
fn spec_changed(old: &Value, new: &Value, has_status: bool) -> bool {
    let strip = |value: &Value| -> Map<String, Value> {
        value
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .filter(|(key, _)| {
                        let ignored = matches!(key.as_str(), "metadata" | "apiVersion" | "kind")
                            || (has_status && key.as_str() == "status");
                        !ignored
                    })
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

/// Equality ignoring managedFields times and apiVersion.
fn same_ignoring_times(old: &Value, new: &Value) -> bool {
    let normalize = |value: &Value| -> Value {
        let mut copy = value.clone();
        copy["apiVersion"] = Value::Null;
        if let Some(entries) = copy["metadata"]
            .get_mut("managedFields")
            .and_then(Value::as_array_mut)
        {
            for entry in entries {
                entry["time"] = Value::Null;
                entry["apiVersion"] = Value::Null;
            }
        }
        copy
    };
    normalize(old) == normalize(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids_and_differ() {
        let first = new_uid();
        assert_eq!(first.len(), 36);
        assert_ne!(first, new_uid());
        assert_eq!(name_suffix().len(), 5);
    }
}
