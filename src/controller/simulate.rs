//! `autoguardrails simulate` and `autoguardrails policy convert`: load policy and signal files,
//! validate them as the API server would, evaluate with the pure core, and render the result.
//! Scope selectors resolve against a listing file (`--principals`) with the controller's resolver
//! over the in-memory IAM. No AWS or Kubernetes access; file reading is the caller's.

use crate::controller::crd::{self, GuardrailPolicy, validate};
use crate::controller::enforce::document;
use crate::controller::policy::{self, ControllerSettings, Decision, flat::FlatPolicy};
use crate::controller::signal::CostSignal;
use serde::Serialize;
use serde_json::Value;

/// Why input cannot be used; the CLI exits with status 2 and prints this.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file is not YAML/JSON.
    #[error("{file}: not valid YAML or JSON: {message}")]
    Syntax {
        /// Which input.
        file: String,
        /// Parser message, with line and column.
        message: String,
    },
    /// The document is well formed but a field is invalid.
    #[error("{file}: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Fields {
        /// Which input.
        file: String,
        /// Every invalid field.
        errors: Vec<validate::FieldError>,
    },
}

fn syntax(file: &str, message: impl ToString) -> InputError {
    InputError::Syntax {
        file: file.to_string(),
        message: message.to_string(),
    }
}

fn fields(file: &str, field: &str, message: impl ToString) -> InputError {
    InputError::Fields {
        file: file.to_string(),
        errors: vec![validate::FieldError {
            field: field.to_string(),
            message: message.to_string(),
        }],
    }
}

/// Parses YAML or JSON text into a JSON value (one document).
pub fn parse_document(file: &str, text: &str) -> Result<Value, InputError> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| syntax(file, e))
}

/// Loads a GuardrailPolicy from a manifest or a flat-format policy, validated like the API server
/// would (schema and CEL rules). A missing namespace becomes `default`.
pub fn load_policy(file: &str, text: &str) -> Result<GuardrailPolicy, InputError> {
    let value = parse_document(file, text)?;
    let mut policy = if policy::flat::looks_flat(&value) {
        let flat: FlatPolicy =
            serde_json::from_value(value).map_err(|e| fields(file, "(flat policy)", e))?;
        let converted = flat.convert(None).map_err(|e| match e {
            policy::flat::ConvertError::Invalid { field, message } => fields(file, &field, message),
        })?;
        // Round-trip so the converted policy is checked exactly like a manifest.
        let value =
            serde_json::to_value(&converted).map_err(|e| fields(file, "(flat policy)", e))?;
        check_policy_value(file, &value)?
    } else {
        check_policy_value(file, &value)?
    };
    if policy.metadata.namespace.is_none() {
        policy.metadata.namespace = Some("default".into());
    }
    Ok(policy)
}

fn check_policy_value(file: &str, value: &Value) -> Result<GuardrailPolicy, InputError> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "GuardrailPolicy" {
        return Err(fields(
            file,
            "kind",
            format!("expected GuardrailPolicy, found {kind:?}"),
        ));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expected = format!("{}/{}", crd::GROUP, crd::VERSION);
    if api_version != expected {
        return Err(fields(
            file,
            "apiVersion",
            format!("expected {expected}, found {api_version:?}"),
        ));
    }
    if value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(fields(file, "metadata.name", "Required value"));
    }
    let errors = validate::guardrail_policy(value);
    if !errors.is_empty() {
        return Err(InputError::Fields {
            file: file.to_string(),
            errors,
        });
    }
    let policy: GuardrailPolicy =
        serde_json::from_value(value.clone()).map_err(|e| fields(file, "spec", e))?;
    // What the schema cannot know: whether a time zone exists (the controller reports the same
    // as Ready=False InvalidException).
    let errors: Vec<validate::FieldError> =
        policy::schedule::problems(&policy.spec.exceptions.weekly)
            .into_iter()
            .map(|problem| match problem.split_once(": ") {
                Some((field, message)) => validate::FieldError {
                    field: format!("spec.{field}"),
                    message: message.to_string(),
                },
                None => validate::FieldError {
                    field: "spec.exceptions.weekly".into(),
                    message: problem,
                },
            })
            .collect();
    if !errors.is_empty() {
        return Err(InputError::Fields {
            file: file.to_string(),
            errors,
        });
    }
    Ok(policy)
}

/// Loads a normalised `CostSignal` from YAML or JSON.
pub fn load_signal(file: &str, text: &str) -> Result<CostSignal, InputError> {
    let value = parse_document(file, text)?;
    let signal: CostSignal =
        serde_json::from_value(value).map_err(|e| fields(file, "(signal)", e))?;
    signal.validate().map_err(|e| match e {
        crate::controller::signal::SignalError::InvalidField { field, message } => {
            fields(file, field, message)
        }
    })?;
    Ok(signal)
}

/// What `simulate` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `Quarantine`, `Notify` (a notifyOnly policy matched) or `None`.
    pub decision: &'static str,
    /// The PascalCase reason.
    pub reason: &'static str,
    /// The human explanation.
    pub message: String,
    /// The policy's namespace/name.
    pub policy: String,
    /// The Quarantine that would be created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crd::Quarantine>,
    /// The exact IAM policy document that would be attached, and its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam_policy: Option<IamPolicyReport>,
    /// `setPermissionsBoundary`: the boundary policy document that would be put on each target
    /// (everything allowed except the denied actions), and its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boundary_policy: Option<IamPolicyReport>,
    /// What `scope.selectors` resolved to in the `--principals` listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selectors: Option<SelectorReport>,
}

/// The selector part of a report.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SelectorReport {
    /// How many principals the scope resolved to (explicit and selected).
    pub count: usize,
    /// `scope.maxTargets` in effect.
    pub max_targets: usize,
    /// Each principal with why it is in scope.
    pub principals: Vec<crd::TargetReason>,
    /// Why the resolution failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A listing of IAM principals and Organizations OUs to resolve selectors against offline
/// (`simulate --principals FILE`).
#[derive(serde::Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listing {
    /// Per account id: its roles and users.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, ListedAccount>,
    /// Per OU (or root) id: the accounts and OUs directly in it.
    #[serde(default)]
    pub organizational_units: std::collections::BTreeMap<String, ListedUnit>,
}

/// One account of a [`Listing`].
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ListedAccount {
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<ListedName>,
    /// Its users.
    #[serde(default)]
    pub users: Vec<ListedName>,
}

/// One role or user of a [`Listing`].
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ListedName {
    /// The name.
    pub name: String,
    /// The IAM path (default `/`).
    #[serde(default = "root_path")]
    pub path: String,
    /// Its tags.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

fn root_path() -> String {
    "/".into()
}

/// One OU of a [`Listing`].
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ListedUnit {
    /// Account ids directly in it.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// OU ids directly under it.
    #[serde(default)]
    pub units: Vec<String>,
}

/// Loads a `--principals` listing (YAML or JSON).
pub fn load_listing(file: &str, text: &str) -> Result<Listing, InputError> {
    let value = parse_document(file, text)?;
    serde_json::from_value(value).map_err(|e| fields(file, "(listing)", e))
}

/// Resolves the policy's selectors against a listing, with the resolver the controller uses
/// (over the in-memory IAM and Organizations; nothing leaves the process).
pub fn resolve_listing(
    policy: &GuardrailPolicy,
    listing: &Listing,
    now: jiff::Timestamp,
) -> Result<crate::controller::policy::selectors::Resolution, String> {
    use crate::aws::PrincipalKind as AwsKind;
    use crate::aws::directory::{InMemoryDirectory, InMemoryOrganization};
    use crate::aws::factory::StaticClients;
    let mut clients = StaticClients::new();
    for (account, content) in &listing.accounts {
        let directory = InMemoryDirectory::new(account.clone());
        for (kind, list) in [
            (AwsKind::Role, &content.roles),
            (AwsKind::User, &content.users),
        ] {
            for p in list {
                let tags: Vec<(&str, &str)> = p
                    .tags
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                directory.add(kind, &p.path, &p.name, &tags);
            }
        }
        clients = clients.with_directory(account.clone(), std::sync::Arc::new(directory));
    }
    let organization = InMemoryOrganization::new();
    for (unit, content) in &listing.organizational_units {
        for account in &content.accounts {
            organization.add_account(unit, account, true);
        }
        for child in &content.units {
            organization.add_unit(unit, child);
        }
    }
    let clients = clients.with_organization(std::sync::Arc::new(organization));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(
        runtime.block_on(crate::controller::resolver::resolve_policy(
            &clients,
            &policy.spec.scope,
            now,
            std::time::Duration::from_secs(300),
        )),
    )
}

/// The IAM document part of a report.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct IamPolicyReport {
    /// The exact JSON text sent to IAM.
    pub document: String,
    /// Characters as IAM counts them (whitespace excluded).
    pub size: usize,
    /// Whether it fits a managed policy (6,144).
    pub fits_managed: bool,
    /// Whether an inline fallback fits a role (10,240) / a user (2,048).
    pub fits_inline_role: bool,
    /// Whether an inline fallback fits a user (2,048).
    pub fits_inline_user: bool,
}

/// Evaluates and builds the report. The IAM document is built for any created quarantine,
/// DryRun included, because DryRun records the plan.
pub fn simulate(
    policy: &GuardrailPolicy,
    signal: &CostSignal,
    settings: &ControllerSettings,
    now: jiff::Timestamp,
    resolution: Option<&crate::controller::policy::selectors::Resolution>,
) -> Result<Report, document::DocumentError> {
    let decision: Decision = policy::evaluate(policy::Input {
        policy,
        signal,
        existing: &[],
        settings,
        now,
        resolution,
    });
    let selectors = resolution.map(|r| {
        use crate::controller::policy::selectors::{Outcome, candidates};
        let scope = &policy.spec.scope;
        let (principals, failed) = match &r.outcome {
            Outcome::Resolved(targets) => (candidates(scope, targets), None),
            Outcome::Failed(why) => (Vec::new(), Some(why.clone())),
        };
        SelectorReport {
            count: principals.len(),
            max_targets: scope.max_targets(),
            principals: principals
                .into_iter()
                .map(|t| crd::TargetReason {
                    arn: t.principal.arn,
                    matched_by: t.matched_by,
                })
                .collect(),
            failed,
        }
    });
    // A notifyOnly policy creates no Quarantine and attaches nothing: it would notify.
    let notify_only = policy.spec.actions.contains(&crd::Action::NotifyOnly);
    let notify = notify_only && decision.quarantine.is_some();
    let quarantine = decision.quarantine.filter(|_| !notify_only);
    let iam_policy = match &quarantine {
        Some(q) => {
            let doc = document::build(
                &q.spec.deny,
                &document::sid_suffix(
                    q.metadata.namespace.as_deref().unwrap_or_default(),
                    q.metadata.name.as_deref().unwrap_or_default(),
                ),
            )?;
            Some(IamPolicyReport {
                fits_managed: doc.fits_managed(),
                fits_inline_role: doc.fits_inline_role(),
                fits_inline_user: doc.fits_inline_user(),
                size: doc.size,
                document: doc.json,
            })
        }
        None => None,
    };
    let boundary_policy = match (&quarantine, &iam_policy) {
        (Some(q), Some(deny)) if crd::sets_boundary(&q.spec.actions) => {
            crate::controller::enforce::boundary::document(&deny.document)
                .ok()
                .map(|json| {
                    let size = crate::aws::limits::policy_size(&json);
                    IamPolicyReport {
                        fits_managed: size <= crate::aws::limits::MANAGED_POLICY,
                        fits_inline_role: size <= crate::aws::limits::ROLE_INLINE,
                        fits_inline_user: size <= crate::aws::limits::USER_INLINE,
                        size,
                        document: json,
                    }
                })
        }
        _ => None,
    };
    Ok(Report {
        decision: if quarantine.is_some() {
            "Quarantine"
        } else if notify {
            "Notify"
        } else {
            "None"
        },
        reason: decision.reason,
        message: decision.message,
        policy: format!(
            "{}/{}",
            policy.metadata.namespace.as_deref().unwrap_or("default"),
            policy.metadata.name.as_deref().unwrap_or_default()
        ),
        quarantine,
        iam_policy,
        boundary_policy,
        selectors,
    })
}
