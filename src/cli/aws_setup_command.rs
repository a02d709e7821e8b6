//! `autoguardrails aws-setup`: the parameter values of the AWS templates (`deploy/aws/`) derived
//! from the chart values a user installs with (ServiceAccount, namespace, endpoint URL, /events
//! key header, protected principals, target-account roles), so the AWS side and the chart line up.
//! Reads the values files only: it must not call AWS or Kubernetes.

use std::io::Write;
use std::path::PathBuf;

use clap::ValueEnum;
use serde_json::{Map, Value};

use crate::aws::permissions::{self, Part};
use crate::controller::endpoints::signals::DEFAULT_API_KEY_HEADER;

/// The chart's name (its `fullname` helper starts from it).
const CHART_NAME: &str = "autoguardrails";
/// What is printed where no OIDC issuer URL was given; it fails the templates' URL checks, so a
/// placeholder is never deployed by accident.
pub const OIDC_PLACEHOLDER: &str = "<OIDC issuer URL: aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer>";
/// What is printed where the chart exposes no Ingress host.
pub const ENDPOINT_PLACEHOLDER: &str = "<https://host of the chart's Ingress (ingress.enabled)>";

/// Output formats of `aws-setup`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupFormat {
    /// Human-readable: both templates' parameters and the chart values to set afterwards.
    Text,
    /// `--parameters file://...` JSON for one CloudFormation template (`--stack`).
    Cloudformation,
    /// `terraform.tfvars` for `deploy/aws/terraform/examples/complete`.
    Terraform,
}

/// The templates whose parameters `aws-setup` fills.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// `deploy/aws/cloudformation/controller-role.yaml`.
    ControllerRole,
    /// `deploy/aws/cloudformation/cost-signals.yaml`.
    CostSignals,
}

impl Stack {
    fn file(self) -> &'static str {
        match self {
            Stack::ControllerRole => "deploy/aws/cloudformation/controller-role.yaml",
            Stack::CostSignals => "deploy/aws/cloudformation/cost-signals.yaml",
        }
    }
}

/// Arguments of `aws-setup`.
#[derive(clap::Args, Debug)]
pub struct AwsSetupArgs {
    /// Chart values files, as given to `helm install -f` (later files win).
    #[arg(long = "values", short = 'f')]
    pub values: Vec<PathBuf>,
    /// The Helm release name.
    #[arg(long, default_value = "agr")]
    pub release: String,
    /// The release namespace.
    #[arg(long, short = 'n', default_value = "autoguardrails")]
    pub namespace: String,
    /// The cluster's OIDC issuer URL (`https://oidc.eks...`); a placeholder is printed without it.
    #[arg(long)]
    pub oidc_issuer_url: Option<String>,
    /// Grant the controller no IAM write at all (the templates' ReadOnly parameter).
    #[arg(long)]
    pub read_only: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SetupFormat::Text)]
    pub format: SetupFormat,
    /// The template whose parameters `--format cloudformation` prints.
    #[arg(long, value_enum, default_value_t = Stack::ControllerRole)]
    pub stack: Stack,
    /// Print the IAM permission sets of every part (Markdown) instead.
    #[arg(long)]
    pub permissions: bool,
}

/// What the templates need to know about a chart installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSide {
    /// The release namespace.
    pub namespace: String,
    /// The controller's ServiceAccount.
    pub service_account: String,
    /// `https://<ingress host>`, when the chart has an Ingress.
    pub endpoint_url: Option<String>,
    /// Whether `/events` is served (an API key Secret is configured).
    pub events_enabled: bool,
    /// The Secret holding the `/events` key, when configured in the chart values.
    pub events_secret: Option<String>,
    /// The header carrying the `/events` key.
    pub events_header: String,
    /// The cluster id written into ownership tags.
    pub cluster_id: String,
    /// Principals never touched.
    pub protected_principals: Vec<String>,
    /// Target-account roles in `controller.config.aws.accounts`.
    pub target_roles: Vec<String>,
    /// Whether the anomaly poller is configured.
    pub poller: bool,
    /// The audit table (`controller.config.audit.table`), when set.
    pub audit_table: Option<String>,
    /// Topics already allowed on `/sns`.
    pub allowed_topics: Vec<String>,
}

fn at<'a>(values: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(values, |v, key| v.get(key))
}

fn text_at(values: &Value, path: &[&str]) -> String {
    at(values, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings_at(values: &Value, path: &[&str]) -> Vec<String> {
    at(values, path)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Helm's `trunc 63 | trimSuffix "-"`.
fn helm_name(text: &str) -> String {
    let truncated: String = text.chars().take(63).collect();
    truncated
        .strip_suffix('-')
        .map(str::to_string)
        .unwrap_or(truncated)
}

/// Later maps win key by key; anything else is replaced (Helm's values merge).
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

impl ChartSide {
    /// The chart side of a release with the given (merged) values; the chart's defaults apply
    /// where a value is absent.
    pub fn from_values(values: &Value, release: &str, namespace: &str) -> ChartSide {
        let name_override = text_at(values, &["nameOverride"]);
        let name = if name_override.is_empty() {
            CHART_NAME.to_string()
        } else {
            name_override
        };
        let fullname_override = text_at(values, &["fullnameOverride"]);
        let fullname = if !fullname_override.is_empty() {
            helm_name(&fullname_override)
        } else if release.contains(&name) {
            helm_name(release)
        } else {
            helm_name(&format!("{release}-{name}"))
        };
        let create = at(values, &["serviceAccount", "create"])
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let configured = text_at(values, &["serviceAccount", "name"]);
        let service_account = match (configured.is_empty(), create) {
            (false, _) => configured,
            (true, true) => fullname,
            (true, false) => "default".to_string(),
        };
        let ingress = at(values, &["ingress", "enabled"])
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let host = at(values, &["ingress", "hosts"])
            .and_then(Value::as_array)
            .and_then(|hosts| hosts.first())
            .map(|h| text_at(h, &["host"]))
            .unwrap_or_default();
        let endpoint_url = (ingress && !host.is_empty()).then(|| format!("https://{host}"));
        let config = at(values, &["controller", "config"]).unwrap_or(&Value::Null);
        let chart_secret = text_at(values, &["signals", "events", "apiKeySecret", "name"]);
        let config_secret = text_at(config, &["signals", "events", "apiKeySecret", "name"]);
        let events_secret = [chart_secret, config_secret]
            .into_iter()
            .find(|s| !s.is_empty());
        let header = text_at(config, &["signals", "events", "apiKeyHeader"]);
        let cluster_id = text_at(values, &["controller", "clusterId"]);
        let mut protected_principals = strings_at(values, &["controller", "protectedPrincipals"]);
        for arn in strings_at(config, &["protectedPrincipals"]) {
            if !protected_principals.contains(&arn) {
                protected_principals.push(arn);
            }
        }
        let target_roles = at(config, &["aws", "accounts"])
            .and_then(Value::as_object)
            .map(|accounts| {
                accounts
                    .values()
                    .map(|a| text_at(a, &["roleArn"]))
                    .filter(|arn| !arn.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        ChartSide {
            namespace: namespace.to_string(),
            service_account,
            endpoint_url,
            events_enabled: events_secret.is_some(),
            events_secret,
            events_header: if header.is_empty() {
                DEFAULT_API_KEY_HEADER.to_string()
            } else {
                header
            },
            cluster_id: if cluster_id.is_empty() {
                format!("{namespace}-{release}")
            } else {
                cluster_id
            },
            protected_principals,
            target_roles,
            poller: !strings_at(config, &["poller", "monitorArns"]).is_empty(),
            audit_table: at(config, &["audit", "table"])
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            allowed_topics: strings_at(config, &["signals", "sns", "allowedTopics"]),
        }
    }

    /// The parameters of one CloudFormation template, in template order.
    pub fn parameters(
        &self,
        stack: Stack,
        oidc_issuer_url: Option<&str>,
        read_only: bool,
    ) -> Vec<(&'static str, String)> {
        let flag = |b: bool| if b { "true" } else { "false" }.to_string();
        match stack {
            Stack::ControllerRole => vec![
                (
                    "OidcIssuerUrl",
                    oidc_issuer_url.unwrap_or(OIDC_PLACEHOLDER).to_string(),
                ),
                ("ServiceAccountNamespace", self.namespace.clone()),
                ("ServiceAccountName", self.service_account.clone()),
                ("ReadOnly", flag(read_only)),
                (
                    "ProtectedPrincipalArns",
                    self.protected_principals.join(","),
                ),
                ("TargetAccountRoleArns", self.target_roles.join(",")),
                ("EnableAnomalyPoller", flag(self.poller)),
            ]
            .into_iter()
            .chain(
                self.audit_table
                    .iter()
                    .map(|table| ("AuditTableName", table.clone())),
            )
            .collect(),
            Stack::CostSignals => vec![
                (
                    "ControllerEndpointUrl",
                    self.endpoint_url
                        .clone()
                        .unwrap_or_else(|| ENDPOINT_PLACEHOLDER.to_string()),
                ),
                ("EnableEvents", flag(self.events_enabled)),
                ("EventsApiKeyHeader", self.events_header.clone()),
            ],
        }
    }
}

/// CloudFormation parameter name → the Terraform variable name (`OidcIssuerUrl` →
/// `oidc_issuer_url`).
pub fn snake_case(parameter: &str) -> String {
    let mut out = String::new();
    for (i, c) in parameter.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn terraform_value(parameter: &str, value: &str) -> String {
    let list = matches!(
        parameter,
        "ProtectedPrincipalArns" | "TargetAccountRoleArns"
    );
    if list {
        let items: Vec<String> = value
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()).to_string())
            .collect();
        format!("[{}]", items.join(", "))
    } else if value == "true" || value == "false" {
        value.to_string()
    } else {
        Value::String(value.to_string()).to_string()
    }
}

fn load_values(files: &[PathBuf]) -> Result<Value, String> {
    let mut merged = Value::Object(Map::new());
    for path in files {
        let text = super::read(path)?;
        let value: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("{}: not a YAML values file: {e}", path.display()))?;
        match value {
            Value::Object(_) => merge(&mut merged, value),
            Value::Null => {}
            _ => return Err(format!("{}: values must be a mapping", path.display())),
        }
    }
    Ok(merged)
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// Runs `aws-setup`.
pub fn run(args: &AwsSetupArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, String> {
    if args.permissions {
        for part in [Part::Controller, Part::Gate, Part::Analyzer] {
            writeln!(out, "<!-- permissions:{} -->", part.name()).map_err(io)?;
            write!(out, "{}", permissions::markdown(part)).map_err(io)?;
            writeln!(out, "<!-- /permissions -->").map_err(io)?;
        }
        return Ok(super::EXIT_OK);
    }
    let values = load_values(&args.values)?;
    let side = ChartSide::from_values(&values, &args.release, &args.namespace);
    let oidc = args.oidc_issuer_url.as_deref();
    if let Some(url) = oidc
        && !url.starts_with("https://")
    {
        return Err(format!("--oidc-issuer-url {url:?} is not an https URL"));
    }
    let role = side.parameters(Stack::ControllerRole, oidc, args.read_only);
    let signals = side.parameters(Stack::CostSignals, oidc, args.read_only);
    let mut warnings = Vec::new();
    if oidc.is_none() {
        warnings.push("no --oidc-issuer-url: OidcIssuerUrl is a placeholder".to_string());
    }
    if side.endpoint_url.is_none() {
        warnings.push(
            "the chart values enable no Ingress host: ControllerEndpointUrl is a placeholder (SNS and EventBridge need https://<public host>)"
                .to_string(),
        );
    }
    match args.format {
        SetupFormat::Cloudformation => {
            let chosen = match args.stack {
                Stack::ControllerRole => &role,
                Stack::CostSignals => &signals,
            };
            let list: Vec<Value> = chosen
                .iter()
                .map(|(k, v)| serde_json::json!({"ParameterKey": k, "ParameterValue": v}))
                .collect();
            let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
            writeln!(out, "{text}").map_err(io)?;
        }
        SetupFormat::Terraform => {
            writeln!(
                out,
                "# deploy/aws/terraform/examples/complete, from the chart values (autoguardrails aws-setup)"
            )
            .map_err(io)?;
            for (key, value) in role.iter().chain(signals.iter()) {
                // The example derives these from its own inputs.
                if matches!(*key, "EnableEvents" | "TargetAccountRoleArns") {
                    continue;
                }
                writeln!(out, "{} = {}", snake_case(key), terraform_value(key, value))
                    .map_err(io)?;
            }
        }
        SetupFormat::Text => write_text(&side, &role, &signals, out).map_err(io)?,
    }
    for warning in warnings {
        writeln!(err, "warning: {warning}").map_err(io)?;
    }
    Ok(super::EXIT_OK)
}

fn write_text(
    side: &ChartSide,
    role: &[(&str, String)],
    signals: &[(&str, String)],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "Chart side")?;
    writeln!(
        out,
        "  ServiceAccount          {}/{}",
        side.namespace, side.service_account
    )?;
    let endpoint = side.endpoint_url.as_deref().unwrap_or(ENDPOINT_PLACEHOLDER);
    writeln!(
        out,
        "  Signal endpoints        {endpoint}/sns, {endpoint}/events"
    )?;
    match &side.events_secret {
        Some(secret) => writeln!(
            out,
            "  /events API key         header {}, Secret {secret}",
            side.events_header
        )?,
        None => writeln!(
            out,
            "  /events API key         none (set signals.events.apiKeySecret.name to serve /events)"
        )?,
    }
    writeln!(out, "  Cluster id (IAM tags)   {}", side.cluster_id)?;
    for (stack, parameters) in [(Stack::ControllerRole, role), (Stack::CostSignals, signals)] {
        writeln!(out)?;
        writeln!(out, "{} parameters", stack.file())?;
        for (key, value) in parameters {
            writeln!(out, "  {key:<24}{value}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "Then set in the chart values")?;
    writeln!(
        out,
        "  serviceAccount.irsaRoleArn                    RoleArn output of controller-role"
    )?;
    if side.allowed_topics.is_empty() {
        writeln!(
            out,
            "  controller.config.signals.sns.allowedTopics   [TopicArn output of cost-signals]"
        )?;
    } else {
        writeln!(
            out,
            "  controller.config.signals.sns.allowedTopics   add TopicArn of cost-signals to {:?}",
            side.allowed_topics
        )?;
    }
    if side.events_enabled {
        writeln!(
            out,
            "  the /events Secret                            the value of EventsApiKeySecretArn (cost-signals)"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullname_follows_the_chart_helper() {
        let empty = Value::Object(Map::new());
        let side = ChartSide::from_values(&empty, "agr", "ns");
        assert_eq!(side.service_account, "agr-autoguardrails");
        let side = ChartSide::from_values(&empty, "my-autoguardrails", "ns");
        assert_eq!(side.service_account, "my-autoguardrails");
        let values = serde_json::json!({"serviceAccount": {"create": false}});
        assert_eq!(
            ChartSide::from_values(&values, "agr", "ns").service_account,
            "default"
        );
        let long = "a".repeat(62) + "-";
        let values = serde_json::json!({ "fullnameOverride": long });
        assert_eq!(
            ChartSide::from_values(&values, "agr", "ns").service_account,
            "a".repeat(62)
        );
    }

    #[test]
    fn terraform_names_are_snake_case() {
        assert_eq!(snake_case("OidcIssuerUrl"), "oidc_issuer_url");
        assert_eq!(
            terraform_value("ProtectedPrincipalArns", "a,b"),
            r#"["a", "b"]"#
        );
        assert_eq!(terraform_value("ProtectedPrincipalArns", ""), "[]");
    }
}
