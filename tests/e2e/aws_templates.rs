//! The AWS side as code (deploy/aws): the permission list (src/aws/permissions.rs) against the SDK
//! calls in src/, cfn-lint on every template, the templates deployed into moto's CloudFormation
//! (boto3 from the venv) with parameters from `autoguardrails aws-setup`, the deployed policies
//! evaluated by the analyzer's IAM evaluator, the Terraform modules (python-hcl2) against the
//! templates, and the docs against the list. Helpers: tests/e2e/aws_templates.py.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use autoguardrails::analyze::permissions::{Decision, Permissions, Policy, PolicySource};
use autoguardrails::aws::permissions::{self, Part, PermissionSet};
use autoguardrails::cli::aws_setup_command::snake_case as snake;
use autoguardrails::controller::enforce::ownership::{
    MANAGED_POLICY_PREFIX, POLICY_PATH, TAG_CLUSTER,
};
use serde_json::{Value, json};

use crate::support::moto::{MotoServer, unique};
use crate::support::rbac;

const ACCOUNT: &str = "123456789012";
const OIDC: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

/// Resource types of the templates that moto 5.2.5's CloudFormation cannot create (it skips
/// them, or fails the stack when another resource needs their attributes). docs/aws-setup.md
/// lists the same.
const MOTO_CANNOT_CREATE: &[&str] = &[
    "AWS::Budgets::Budget",
    "AWS::CE::AnomalyMonitor",
    "AWS::CE::AnomalySubscription",
    "AWS::Events::ApiDestination",
    "AWS::Events::Connection",
    "AWS::SNS::TopicPolicy",
    "AWS::SecretsManager::Secret",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv(bin: &str) -> PathBuf {
    let path = root().join(".venv/bin").join(bin);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test-deps.sh",
        path.display()
    );
    path
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs tests/e2e/aws_templates.py; its stdout as JSON.
fn helper(args: &[&str]) -> Value {
    let o = Command::new(venv("python"))
        .arg(root().join("tests/e2e/aws_templates.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "aws_templates.py {args:?}: {}",
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn cfn_dir() -> PathBuf {
    root().join("deploy/aws/cloudformation")
}

fn template_path(name: &str) -> String {
    cfn_dir().join(name).to_str().unwrap().to_string()
}

/// Every CloudFormation template, decoded (file name → template).
fn templates() -> &'static BTreeMap<String, Value> {
    static T: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    T.get_or_init(|| {
        let mut files: Vec<String> = std::fs::read_dir(cfn_dir())
            .unwrap()
            .map(|e| e.unwrap().path().to_str().unwrap().to_string())
            .filter(|p| p.ends_with(".yaml"))
            .collect();
        files.sort();
        let mut args = vec!["cfn"];
        args.extend(files.iter().map(String::as_str));
        serde_json::from_value(helper(&args)).unwrap()
    })
}

/// Every Terraform file, parsed (path under deploy/aws/terraform → document).
fn terraform() -> &'static BTreeMap<String, Value> {
    static T: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = root().join("deploy/aws/terraform");
        serde_json::from_value(helper(&["hcl", dir.to_str().unwrap()])).unwrap()
    })
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The identity-policy statements of a template's roles (AWS::IAM::Policy resources and roles'
/// inline `Policies`), trust policies excluded.
fn cfn_statements(template: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for resource in template["Resources"].as_object().unwrap().values() {
        let properties = &resource["Properties"];
        match resource["Type"].as_str().unwrap() {
            "AWS::IAM::Policy" => out.extend(
                properties["PolicyDocument"]["Statement"]
                    .as_array()
                    .unwrap()
                    .clone(),
            ),
            "AWS::IAM::Role" => {
                for policy in properties["Policies"].as_array().into_iter().flatten() {
                    out.extend(
                        policy["PolicyDocument"]["Statement"]
                            .as_array()
                            .unwrap()
                            .clone(),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// The set a statement belongs to: the longest set `Sid` prefix of its `Sid`.
fn set_of(sid: &str, sets: &[PermissionSet]) -> Option<PermissionSet> {
    sets.iter()
        .filter(|s| sid.starts_with(&permissions::sid(s)))
        .max_by_key(|s| permissions::sid(s).len())
        .copied()
}

fn controller_iam_sets() -> Vec<PermissionSet> {
    vec![
        permissions::CONTROLLER_READ,
        permissions::CONTROLLER_MANAGE_POLICIES,
        permissions::CONTROLLER_ATTACH,
        permissions::CONTROLLER_INLINE,
        permissions::CONTROLLER_BOUNDARY,
    ]
}

fn part_sets(part: Part) -> Vec<PermissionSet> {
    permissions::ALL
        .iter()
        .filter(|s| s.part == part)
        .copied()
        .collect()
}

/// The role templates and the permission sets each must grant, exactly.
fn role_templates() -> Vec<(&'static str, Vec<PermissionSet>)> {
    vec![
        ("controller-role.yaml", part_sets(Part::Controller)),
        ("target-account-role.yaml", controller_iam_sets()),
        ("analyzer-role.yaml", part_sets(Part::Analyzer)),
    ]
}

#[test]
fn the_permission_list_is_the_sdk_calls_in_the_code() {
    // SDK calls are `client.<operation>()` (or `client(region).`, `ssm.`) in our adapters.
    let call =
        regex::Regex::new(r"\b(?:client|ssm)(?:\([^()]*\))?\s*\.\s*([a-z][a-z0-9_]*)\s*\(\)")
            .unwrap();
    const NOT_OPERATIONS: &[&str] = &["clone"];
    let mut found: BTreeSet<(Part, String)> = BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if !relative.ends_with(".rs") || relative == "src/aws/permissions.rs" {
                continue;
            }
            let part = if relative.starts_with("src/analyze/") {
                Part::Analyzer
            } else if relative.starts_with("src/gate/") {
                Part::Gate
            } else {
                Part::Controller
            };
            let text = std::fs::read_to_string(&path).unwrap();
            for m in call.captures_iter(&text) {
                let operation = m[1].to_string();
                if !NOT_OPERATIONS.contains(&operation.as_str()) {
                    found.insert((part, operation));
                }
            }
        }
    }
    let listed: BTreeSet<(Part, String)> = permissions::ALL
        .iter()
        .flat_map(|s| s.calls.iter().map(|c| (s.part, c.operation.to_string())))
        .collect();
    let unlisted: Vec<_> = found.difference(&listed).collect();
    let uncalled: Vec<_> = listed.difference(&found).collect();
    assert!(
        unlisted.is_empty(),
        "AWS calls in src/ missing from src/aws/permissions.rs (add them there, then to the templates, Terraform and docs): {unlisted:?}"
    );
    assert!(
        uncalled.is_empty(),
        "src/aws/permissions.rs lists calls no code makes (remove them): {uncalled:?}"
    );
    assert!(found.len() > 40, "the scan found too few calls: {found:?}");
}

#[test]
fn every_template_passes_cfn_lint() {
    let names: Vec<&String> = templates().keys().collect();
    assert_eq!(
        names,
        [
            "analyzer-role.yaml",
            "controller-role.yaml",
            "cost-signals.yaml",
            "target-account-role.yaml"
        ]
    );
    let o = Command::new(venv("cfn-lint"))
        .args(names.iter().map(|n| template_path(n)))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn role_templates_grant_exactly_the_permission_sets() {
    for (file, sets) in role_templates() {
        let mut granted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for statement in cfn_statements(&templates()[file]) {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let sid = statement["Sid"].as_str().unwrap_or_default();
            let set = set_of(sid, &sets).unwrap_or_else(|| {
                panic!("{file}: statement {sid:?} belongs to no permission set")
            });
            granted
                .entry(set.name)
                .or_default()
                .extend(strings(&statement["Action"]));
        }
        for set in &sets {
            let expected: BTreeSet<String> = set.actions().iter().map(|a| a.to_string()).collect();
            assert_eq!(
                granted.get(set.name),
                Some(&expected),
                "{file}: set {} grants other actions than src/aws/permissions.rs lists",
                set.name
            );
        }
        assert_eq!(granted.len(), sets.len(), "{file}: {granted:?}");
    }
}

#[test]
fn write_grants_are_scoped_to_our_policy_path_and_name_prefix() {
    let ours = format!(":policy{POLICY_PATH}{MANAGED_POLICY_PREFIX}*");
    for file in ["controller-role.yaml", "target-account-role.yaml"] {
        let template = &templates()[file];
        let mut checked = 0;
        for statement in cfn_statements(template) {
            let sid = statement["Sid"].as_str().unwrap_or_default();
            let Some(set) = set_of(sid, &part_sets(Part::Controller)) else {
                continue;
            };
            if statement["Effect"] != "Allow" || !set.writes {
                continue;
            }
            checked += 1;
            let resources = statement["Resource"].to_string();
            let condition = statement["Condition"]["ArnLike"]["iam:PolicyARN"].to_string();
            if set.name == permissions::CONTROLLER_INLINE.name
                || set.name == permissions::CONTROLLER_BOUNDARY.name
            {
                // No condition key names an inline policy, and the boundary restore puts back
                // any previous boundary: both scoped to in-scope principals.
                assert!(
                    resources.contains("role${PrincipalPathPrefix}*"),
                    "{file} {sid}"
                );
                assert!(
                    resources.contains("user${PrincipalPathPrefix}*"),
                    "{file} {sid}"
                );
            } else {
                assert!(
                    resources.contains(&ours) || condition.contains(&ours),
                    "{file}: {sid} is not limited to {ours}: {statement}"
                );
            }
        }
        assert_eq!(checked, 5, "{file}: write statements checked");
        // Creation is denied without the ownership tag the controller always sends.
        let tag_deny = cfn_statements(template)
            .into_iter()
            .find(|s| s["Sid"] == "ControllerCreateOnlyWithOwnershipTag")
            .unwrap_or_else(|| panic!("{file}: no ownership-tag Deny"));
        assert_eq!(tag_deny["Effect"], "Deny");
        assert_eq!(
            tag_deny["Condition"]["Null"][format!("aws:RequestTag/{TAG_CLUSTER}")],
            "true"
        );
        // Every write statement sits in a resource that read-only mode leaves out.
        let write_actions = permissions::actions(Part::Controller, Some(true));
        for (logical, resource) in template["Resources"].as_object().unwrap() {
            if resource["Type"] != "AWS::IAM::Policy" {
                continue;
            }
            let grants_writes = resource["Properties"]["PolicyDocument"]["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["Effect"] == "Allow")
                .flat_map(|s| strings(&s["Action"]))
                .any(|a| write_actions.contains(&a.as_str()));
            if grants_writes {
                let condition = resource["Condition"].as_str().unwrap_or_default();
                let expression = template["Conditions"][condition].to_string();
                assert!(
                    expression.contains(r#"{"Ref":"ReadOnly"},"false""#),
                    "{file}: {logical} grants writes outside the ReadOnly=false condition"
                );
            }
        }
    }
}

/// A template value with parameters and pseudo parameters as `{name}`, for comparing with the
/// Terraform version.
fn normalise_cfn(value: &Value) -> Vec<String> {
    let param = |name: &str| match name {
        "AWS::Partition" => "{partition}".to_string(),
        "AWS::AccountId" => "{account}".to_string(),
        "AWS::Region" => "{region}".to_string(),
        other => format!("{{{}}}", snake(other)),
    };
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(normalise_cfn).collect(),
        Value::Object(o) if o.contains_key("Ref") => vec![param(o["Ref"].as_str().unwrap())],
        Value::Object(o) if o.contains_key("Fn::Sub") => {
            let text = o["Fn::Sub"].as_str().unwrap();
            let re = regex::Regex::new(r"\$\{([A-Za-z:]+)\}").unwrap();
            vec![
                re.replace_all(text, |c: &regex::Captures| param(&c[1]))
                    .into_owned(),
            ]
        }
        other => panic!("unexpected template value {other}"),
    }
}

fn normalise_tf(value: &Value) -> Vec<String> {
    let our_policy = "arn:{partition}:iam::{account}:policy/autoguardrails/agr-*".to_string();
    match value {
        Value::Array(items) => items.iter().flat_map(normalise_tf).collect(),
        Value::String(s) if s == "${local.principals}" => vec![
            "arn:{partition}:iam::{account}:role{principal_path_prefix}*".to_string(),
            "arn:{partition}:iam::{account}:user{principal_path_prefix}*".to_string(),
        ],
        Value::String(s) if s == "${local.our_policy}" => vec![our_policy],
        Value::String(s) if s.starts_with("${length(var.") => {
            // `length(var.x) > 0 ? var.x : [...]`: the list variable itself.
            let name = s
                .trim_start_matches("${length(var.")
                .split(')')
                .next()
                .unwrap();
            vec![format!("{{{name}}}")]
        }
        Value::String(s) if s.starts_with("${var.") && !s[2..].contains('$') => {
            vec![format!("{{{}}}", &s[6..s.len() - 1])]
        }
        Value::String(s) => {
            let re = regex::Regex::new(r"\$\{(?:local|var)\.([a-z_]+)\}").unwrap();
            vec![re.replace_all(s, "{$1}").into_owned()]
        }
        other => panic!("unexpected Terraform value {other}"),
    }
}

type Grants = BTreeMap<String, (String, BTreeSet<String>, BTreeSet<String>)>;

/// Sid → (effect, actions, resources) of the template's role policies.
fn cfn_grants(file: &str) -> Grants {
    cfn_statements(&templates()[file])
        .iter()
        .map(|s| {
            (
                s["Sid"].as_str().unwrap_or_default().to_string(),
                (
                    s["Effect"].as_str().unwrap().to_string(),
                    strings(&s["Action"]).into_iter().collect(),
                    normalise_cfn(&s["Resource"]).into_iter().collect(),
                ),
            )
        })
        .collect()
}

/// Sid → (effect, actions, resources) of the modules' policy documents (trust documents left out).
fn tf_grants(modules: &[&str]) -> Grants {
    let mut out = Grants::new();
    for module in modules {
        let main = &terraform()[&format!("modules/{module}/main.tf")];
        for data in main["data"].as_array().unwrap() {
            for (name, document) in data["aws_iam_policy_document"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if name.ends_with("trust") {
                    continue;
                }
                for s in document["statement"].as_array().unwrap() {
                    out.insert(
                        s["sid"].as_str().unwrap_or_default().to_string(),
                        (
                            s["effect"].as_str().unwrap().to_string(),
                            strings(&s["actions"]).into_iter().collect(),
                            normalise_tf(&s["resources"]).into_iter().collect(),
                        ),
                    );
                }
            }
        }
    }
    out
}

fn tf_blocks(module: &str, file: &str, kind: &str) -> BTreeSet<String> {
    terraform()[&format!("modules/{module}/{file}")][kind]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|block| block.as_object().unwrap().keys().cloned())
        .collect()
}

/// Each template and the Terraform modules that hold its resources (the first one has its
/// variables and outputs).
const TEMPLATE_MODULES: [(&str, &[&str]); 4] = [
    (
        "controller-role.yaml",
        &["controller-role", "controller-permissions"],
    ),
    (
        "target-account-role.yaml",
        &["target-account-role", "controller-permissions"],
    ),
    ("analyzer-role.yaml", &["analyzer-role"]),
    ("cost-signals.yaml", &["cost-signals"]),
];

#[test]
fn terraform_grants_the_same_actions_on_the_same_resources() {
    for (file, modules) in TEMPLATE_MODULES
        .iter()
        .filter(|(f, _)| *f != "cost-signals.yaml")
    {
        let (cfn, tf) = (cfn_grants(file), tf_grants(modules));
        assert_eq!(cfn, tf, "{file} vs modules {modules:?}");
        assert!(cfn.len() >= 5, "{file}: too few statements compared");
    }
    // cost-signals: the EventBridge invoke role's grant.
    let cfn = cfn_grants("cost-signals.yaml");
    let tf = tf_grants(&["cost-signals"]);
    assert_eq!(
        cfn["InvokeEventsEndpoint"].1, tf["InvokeEventsEndpoint"].1,
        "events invoke actions"
    );
}

#[test]
fn terraform_has_the_same_resources_variables_and_outputs() {
    let types: &[(&str, &str)] = &[
        ("AWS::IAM::Role", "aws_iam_role"),
        ("AWS::IAM::Policy", "aws_iam_role_policy"),
        ("AWS::KMS::Key", "aws_kms_key"),
        ("AWS::SNS::Topic", "aws_sns_topic"),
        ("AWS::SNS::TopicPolicy", "aws_sns_topic_policy"),
        ("AWS::Budgets::Budget", "aws_budgets_budget"),
        ("AWS::CE::AnomalyMonitor", "aws_ce_anomaly_monitor"),
        (
            "AWS::CE::AnomalySubscription",
            "aws_ce_anomaly_subscription",
        ),
        ("AWS::SecretsManager::Secret", "aws_secretsmanager_secret"),
        ("AWS::Events::Connection", "aws_cloudwatch_event_connection"),
        (
            "AWS::Events::ApiDestination",
            "aws_cloudwatch_event_api_destination",
        ),
        ("AWS::Events::Rule", "aws_cloudwatch_event_rule"),
        ("AWS::DynamoDB::Table", "aws_dynamodb_table"),
    ];
    for (file, module_dirs) in TEMPLATE_MODULES {
        let template = &templates()[file];
        let mut cfn_types: BTreeSet<String> = template["Resources"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| {
                let t = r["Type"].as_str().unwrap();
                types
                    .iter()
                    .find(|(c, _)| *c == t)
                    .unwrap_or_else(|| panic!("{file}: no Terraform type known for {t}"))
                    .1
                    .to_string()
            })
            .collect();
        if template["Resources"]
            .as_object()
            .unwrap()
            .values()
            .any(|r| r["Properties"]["Subscription"].is_array())
        {
            cfn_types.insert("aws_sns_topic_subscription".into());
        }
        let tf_types: BTreeSet<String> = module_dirs
            .iter()
            .flat_map(|m| tf_blocks(m, "main.tf", "resource"))
            .collect();
        let missing: Vec<_> = cfn_types.difference(&tf_types).collect();
        assert!(missing.is_empty(), "{file}: Terraform lacks {missing:?}");
        let module = module_dirs[0];
        for (section, file_name, kind) in [
            ("Parameters", "variables.tf", "variable"),
            ("Outputs", "outputs.tf", "output"),
        ] {
            let cfn_names: BTreeSet<String> = template[section]
                .as_object()
                .unwrap()
                .keys()
                .map(|p| snake(p))
                .collect();
            assert_eq!(
                cfn_names,
                tf_blocks(module, file_name, kind),
                "{file}: {section} vs {file_name} of {module}"
            );
        }
    }
    // The example root module uses every module.
    let example = &terraform()["examples/complete/main.tf"].to_string();
    for module in [
        "cost-signals",
        "controller-role",
        "target-account-role",
        "analyzer-role",
    ] {
        assert!(
            example.contains(&format!("../../modules/{module}")),
            "{module}"
        );
    }
}

fn aws_setup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
        .arg("aws-setup")
        .args(args)
        .output()
        .unwrap()
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("agr-aws-{label}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chart values with the Ingress, the /events key, protected principals, a target account and
/// the poller.
fn chart_values() -> Value {
    json!({
        "fullnameOverride": "guardrails",
        "ingress": {"enabled": true, "hosts": [{"host": "guardrails.example.com"}]},
        "signals": {"events": {"apiKeySecret": {"name": "agr-events-key"}}},
        "controller": {
            "protectedPrincipals": [format!("arn:aws:iam::{ACCOUNT}:role/break-glass")],
            "config": {
                "aws": {"accounts": {"222222222222": {
                    "roleArn": "arn:aws:iam::222222222222:role/autoguardrails-enforcer",
                    "externalId": "agr-7f3c9b1e"}}},
                "poller": {"monitorArns": [format!("arn:aws:ce::{ACCOUNT}:anomalymonitor/m1")]},
                "audit": {"table": AUDIT_TABLE}
            }
        }
    })
}

#[test]
fn aws_setup_prints_what_the_chart_installs() {
    let dir = temp_dir("setup");
    let values = dir.join("values.yaml");
    std::fs::write(&values, chart_values().to_string()).unwrap();
    let values = values.to_str().unwrap();
    // The chart's own rendering names the ServiceAccount.
    let manifests = rbac::parse_manifests(&rbac::render_chart(&chart_values().to_string()));
    let account = manifests
        .iter()
        .find(|m| m["kind"] == "ServiceAccount")
        .expect("a ServiceAccount");
    let (sa_namespace, sa_name) = (
        account["metadata"]["namespace"].as_str().unwrap(),
        account["metadata"]["name"].as_str().unwrap(),
    );
    assert_eq!(sa_name, "guardrails");

    let o = aws_setup(&["-f", values, "--oidc-issuer-url", OIDC]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("  ServiceAccount")
            && l.ends_with(&format!(" {sa_namespace}/{sa_name}"))),
        "{text}"
    );
    assert!(
        text.contains("https://guardrails.example.com/sns, https://guardrails.example.com/events"),
        "{text}"
    );
    assert!(
        text.contains("header x-api-key, Secret agr-events-key"),
        "{text}"
    );
    assert!(
        stderr(&o).is_empty(),
        "no warnings expected: {}",
        stderr(&o)
    );

    let parameters = |stack: &str, extra: &[&str]| -> BTreeMap<String, String> {
        let mut args = vec!["-f", values, "--format", "cloudformation", "--stack", stack];
        args.extend(extra);
        let o = aws_setup(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
        list.iter()
            .map(|p| {
                (
                    p["ParameterKey"].as_str().unwrap().to_string(),
                    p["ParameterValue"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let role = parameters("controller-role", &["--oidc-issuer-url", OIDC]);
    assert_eq!(role["ServiceAccountNamespace"], sa_namespace);
    assert_eq!(role["ServiceAccountName"], sa_name);
    assert_eq!(role["OidcIssuerUrl"], OIDC);
    assert_eq!(
        role["TargetAccountRoleArns"],
        "arn:aws:iam::222222222222:role/autoguardrails-enforcer"
    );
    assert_eq!(role["EnableAnomalyPoller"], "true");
    let signals = parameters("cost-signals", &[]);
    assert_eq!(
        signals["ControllerEndpointUrl"],
        "https://guardrails.example.com"
    );
    assert_eq!(signals["EnableEvents"], "true");
    // Every printed parameter is one of the template's.
    for (file, printed) in [
        ("controller-role.yaml", &role),
        ("cost-signals.yaml", &signals),
    ] {
        for key in printed.keys() {
            assert!(
                templates()[file]["Parameters"].get(key).is_some(),
                "{file}: {key}"
            );
        }
    }

    // Terraform variables for the example root module.
    let o = aws_setup(&[
        "-f",
        values,
        "--format",
        "terraform",
        "--oidc-issuer-url",
        OIDC,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tfvars = String::from_utf8(o.stdout.clone()).unwrap();
    let variables: BTreeSet<String> = terraform()["examples/complete/variables.tf"]["variable"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v.as_object().unwrap().keys().cloned())
        .collect();
    let mut assigned = 0;
    for line in tfvars.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(" = ").next().unwrap();
        assert!(
            variables.contains(name),
            "{name} is no variable of examples/complete"
        );
        assigned += 1;
    }
    assert!(assigned >= 8, "{tfvars}");
    assert!(
        tfvars.contains(&format!("service_account_name = \"{sa_name}\"")),
        "{tfvars}"
    );

    // Without an Ingress or an issuer: placeholders that the templates refuse, and warnings.
    let o = aws_setup(&["--format", "cloudformation", "--stack", "cost-signals"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("no --oidc-issuer-url"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("no Ingress host"), "{}", stderr(&o));
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let endpoint = list[0]["ParameterValue"].as_str().unwrap();
    let pattern =
        templates()["cost-signals.yaml"]["Parameters"]["ControllerEndpointUrl"]["AllowedPattern"]
            .as_str()
            .unwrap();
    assert!(
        !regex::Regex::new(pattern).unwrap().is_match(endpoint),
        "{endpoint}"
    );
    let o = aws_setup(&["--oidc-issuer-url", "oidc.eks.example"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(dir);
}

/// The audit table of the chart values above (created by the controller-role stack in moto).
const AUDIT_TABLE: &str = "autoguardrails-audit-templates";

/// Deploys a template into moto; what was created.
fn deploy(moto: &MotoServer, file: &str, parameters: &[(&str, &str)]) -> Value {
    let dir = temp_dir("stack");
    let params: Vec<Value> = parameters
        .iter()
        .map(|(k, v)| json!({"ParameterKey": k, "ParameterValue": v}))
        .collect();
    let path = dir.join("parameters.json");
    std::fs::write(&path, Value::Array(params).to_string()).unwrap();
    let stack = unique("agr");
    let out = helper(&[
        "deploy",
        &moto.url,
        &stack,
        &template_path(file),
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(
        out["status"], "CREATE_COMPLETE",
        "{file}: {}",
        out["reason"]
    );
    out
}

/// The role's inline policies as the analyzer's evaluator sees them.
fn evaluator(role: &Value) -> Permissions {
    Permissions {
        policies: role["policies"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, document)| {
                Policy::parse(
                    PolicySource {
                        kind: "inline".into(),
                        name: name.clone(),
                    },
                    &document.to_string(),
                )
                .unwrap()
            })
            .collect(),
        boundary: None,
    }
}

fn deployed_actions(role: &Value) -> BTreeSet<String> {
    role["policies"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|d| d["Statement"].as_array().unwrap().clone())
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| strings(&s["Action"]))
        .collect()
}

#[test]
fn moto_deploys_the_controller_role_from_aws_setup_parameters() {
    let moto = MotoServer::shared();
    let dir = temp_dir("role");
    let values = dir.join("values.yaml");
    std::fs::write(&values, chart_values().to_string()).unwrap();
    let o = aws_setup(&[
        "-f",
        values.to_str().unwrap(),
        "--format",
        "cloudformation",
        "--oidc-issuer-url",
        OIDC,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let role_name = unique("agr-controller");
    let ssm = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/autoguardrails/slack");
    let mut parameters: Vec<(String, String)> = printed
        .iter()
        .map(|p| {
            (
                p["ParameterKey"].as_str().unwrap().to_string(),
                p["ParameterValue"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    parameters.push(("RoleName".into(), role_name.clone()));
    parameters.push(("PrincipalPathPrefix".into(), "/ci/".into()));
    parameters.push(("SlackWebhookParameterArns".into(), ssm.clone()));
    parameters.push(("CreateAuditTable".into(), "true".into()));
    // Whether policies use OU selectors is not in the chart values: the operator's choice.
    parameters.push(("EnableOrganizations".into(), "true".into()));
    assert!(
        parameters
            .iter()
            .any(|(k, v)| k == "AuditTableName" && v == AUDIT_TABLE),
        "aws-setup prints the chart's audit table: {parameters:?}"
    );
    let borrowed: Vec<(&str, &str)> = parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = deploy(moto, "controller-role.yaml", &borrowed);
    let role = &out["roles"]["ControllerRole"];
    assert_eq!(out["outputs"]["RoleArn"], role["arn"]);
    // The table the stack created has the layout the audit sink checks for.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = crate::support::audit::dynamodb(moto).await;
        autoguardrails::audit::dynamodb::DynamoDbAudit::new(client, AUDIT_TABLE, None)
            .check()
            .await
            .unwrap();
    });

    // Trust: only the chart's ServiceAccount through the cluster's OIDC provider.
    let trust = &role["trust"]["Statement"][0];
    let issuer = OIDC.trim_start_matches("https://");
    assert_eq!(
        trust["Principal"]["Federated"],
        format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer}")
    );
    assert_eq!(trust["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(
        trust["Condition"]["StringEquals"][format!("{issuer}:sub")],
        "system:serviceaccount:autoguardrails:guardrails"
    );
    assert_eq!(
        trust["Condition"]["StringEquals"][format!("{issuer}:aud")],
        "sts.amazonaws.com"
    );

    // Exactly the controller's actions.
    let expected: BTreeSet<String> = permissions::actions(Part::Controller, None)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(deployed_actions(role), expected);

    // What the controller does is allowed; anything outside its prefix and scope is not.
    let p = evaluator(role);
    let ours = format!("arn:aws:iam::{ACCOUNT}:policy/autoguardrails/agr-0123456789abcdef");
    for action in permissions::CONTROLLER_MANAGE_POLICIES.actions() {
        assert_eq!(
            p.decide(action, &ours),
            Decision::Allowed,
            "{action} on {ours}"
        );
        for foreign in [
            format!("arn:aws:iam::{ACCOUNT}:policy/autoguardrails/other"),
            format!("arn:aws:iam::{ACCOUNT}:policy/agr-0123456789abcdef"),
            format!("arn:aws:iam::{ACCOUNT}:policy/team/admin"),
        ] {
            assert_eq!(
                p.decide(action, &foreign),
                Decision::ImplicitDeny,
                "{action} on {foreign}"
            );
        }
    }
    for action in permissions::CONTROLLER_READ.actions() {
        assert_eq!(p.decide(action, "*"), Decision::Allowed, "{action}");
    }
    // Principals under the path prefix (/ci/) and outside it, by the kind the action names.
    let principal = |action: &str, path: &str| {
        let kind = ["Role", "User", "Group"]
            .into_iter()
            .find(|k| action.contains(k))
            .unwrap()
            .to_lowercase();
        format!("arn:aws:iam::{ACCOUNT}:{kind}/{path}x")
    };
    for action in permissions::CONTROLLER_ATTACH.actions() {
        let target = principal(action, "ci/");
        match p.decide(action, &target) {
            Decision::Conditional(c) => assert_eq!(
                c["ArnLike"]["iam:PolicyARN"],
                format!("arn:aws:iam::{ACCOUNT}:policy/autoguardrails/agr-*"),
                "{action}"
            ),
            other => panic!("{action} on {target}: {other:?}"),
        }
        if !action.contains("Group") {
            let outside = principal(action, "platform/");
            assert_eq!(
                p.decide(action, &outside),
                Decision::ImplicitDeny,
                "{action} {outside}"
            );
        }
    }
    for action in permissions::CONTROLLER_INLINE.actions() {
        assert_eq!(
            p.decide(action, &principal(action, "ci/")),
            Decision::Allowed,
            "{action}"
        );
        let outside = principal(action, "platform/");
        assert_eq!(
            p.decide(action, &outside),
            Decision::ImplicitDeny,
            "{action} {outside}"
        );
    }
    for protected in [
        format!("arn:aws:iam::{ACCOUNT}:role/break-glass"),
        format!("arn:aws:iam::{ACCOUNT}:role/{role_name}"),
    ] {
        for action in [
            "iam:AttachRolePolicy",
            "iam:PutRolePolicy",
            "iam:DetachRolePolicy",
        ] {
            assert!(
                matches!(p.decide(action, &protected), Decision::ExplicitDeny(_)),
                "{action} on {protected}"
            );
        }
    }
    let enforcer = "arn:aws:iam::222222222222:role/autoguardrails-enforcer";
    assert_eq!(p.decide("sts:AssumeRole", enforcer), Decision::Allowed);
    assert_eq!(
        p.decide("sts:AssumeRole", "arn:aws:iam::222222222222:role/admin"),
        Decision::ImplicitDeny
    );
    assert_eq!(p.decide("ssm:GetParameter", &ssm), Decision::Allowed);
    assert_eq!(p.decide("ce:GetAnomalies", "*"), Decision::Allowed);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn read_only_mode_deploys_no_write_permission() {
    let moto = MotoServer::shared();
    let o = aws_setup(&[
        "--format",
        "cloudformation",
        "--read-only",
        "--oidc-issuer-url",
        OIDC,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(printed.contains(&json!({"ParameterKey": "ReadOnly", "ParameterValue": "true"})));
    let role_name = unique("agr-readonly");
    let out = deploy(
        moto,
        "controller-role.yaml",
        &[
            ("OidcIssuerUrl", OIDC),
            ("RoleName", &role_name),
            ("ReadOnly", "true"),
            (
                "ProtectedPrincipalArns",
                &format!("arn:aws:iam::{ACCOUNT}:role/break-glass"),
            ),
        ],
    );
    let role = &out["roles"]["ControllerRole"];
    let expected: BTreeSet<String> = permissions::actions(Part::Controller, Some(false))
        .into_iter()
        .filter(|a| a.starts_with("iam:"))
        .map(str::to_string)
        .collect();
    assert_eq!(deployed_actions(role), expected);
    let p = evaluator(role);
    for action in permissions::actions(Part::Controller, Some(true)) {
        for resource in [
            "*".to_string(),
            format!("arn:aws:iam::{ACCOUNT}:policy/autoguardrails/agr-0123456789abcdef"),
            format!("arn:aws:iam::{ACCOUNT}:role/ci/runner"),
        ] {
            assert_eq!(
                p.decide(action, &resource),
                Decision::ImplicitDeny,
                "{action} {resource}"
            );
        }
    }
}

#[test]
fn moto_deploys_the_target_account_and_analyzer_roles() {
    let moto = MotoServer::shared();
    let controller = format!("arn:aws:iam::{ACCOUNT}:role/autoguardrails-controller");
    let name = unique("agr-enforcer");
    let out = deploy(
        moto,
        "target-account-role.yaml",
        &[
            ("ControllerRoleArn", &controller),
            ("ExternalId", "agr-7f3c9b1e"),
            ("RoleName", &name),
        ],
    );
    let role = &out["roles"]["EnforcerRole"];
    let trust = &role["trust"]["Statement"][0];
    assert_eq!(trust["Principal"]["AWS"], controller.as_str());
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert_eq!(
        trust["Condition"]["StringEquals"]["sts:ExternalId"],
        "agr-7f3c9b1e"
    );
    let expected: BTreeSet<String> = controller_iam_sets()
        .iter()
        .flat_map(|s| s.actions())
        .map(str::to_string)
        .collect();
    assert_eq!(deployed_actions(role), expected);

    let name = unique("agr-analyzer");
    let out = deploy(
        moto,
        "analyzer-role.yaml",
        &[
            (
                "TrustedPrincipalArns",
                &format!("arn:aws:iam::{ACCOUNT}:role/ci"),
            ),
            ("RoleName", &name),
            ("TrailBucketName", "org-trail-logs"),
            ("AthenaWorkGroup", "primary"),
            ("AthenaResultsBucket", "athena-results"),
            (
                "BedrockModelArns",
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude",
            ),
        ],
    );
    let role = &out["roles"]["AnalyzerRole"];
    let expected: BTreeSet<String> = permissions::actions(Part::Analyzer, None)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(deployed_actions(role), expected);
    let p = evaluator(role);
    assert_eq!(
        p.decide(
            "s3:GetObject",
            "arn:aws:s3:::org-trail-logs/AWSLogs/x.json.gz"
        ),
        Decision::Allowed
    );
    assert_eq!(
        p.decide("s3:PutObject", "arn:aws:s3:::athena-results/q/1.csv"),
        Decision::Allowed
    );
    assert_eq!(
        p.decide("s3:PutObject", "arn:aws:s3:::org-trail-logs/x"),
        Decision::ImplicitDeny
    );
    for action in [
        "iam:CreatePolicy",
        "iam:AttachRolePolicy",
        "iam:PutRolePolicy",
        "iam:DeleteRole",
    ] {
        assert_eq!(p.decide(action, "*"), Decision::ImplicitDeny, "{action}");
    }
}

#[test]
fn moto_deploys_the_cost_signals_topic_and_key() {
    let moto = MotoServer::shared();
    let topic = unique("agr-signals");
    // EventBridge off: moto cannot create the connection and API destination the rules target.
    let out = deploy(
        moto,
        "cost-signals.yaml",
        &[
            ("ControllerEndpointUrl", "https://127.0.0.1:9"),
            ("TopicName", &topic),
            ("UseKmsKey", "true"),
            ("BudgetLimitUsd", "2000"),
            ("EnableEvents", "false"),
        ],
    );
    let created = &out["topics"]["SignalsTopic"];
    assert_eq!(out["outputs"]["TopicArn"], created["arn"]);
    assert!(
        created["arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{topic}"))
    );
    assert_ne!(created["kms"], "", "the topic is encrypted");
    assert_eq!(
        created["subscriptions"],
        json!([{"protocol": "https", "endpoint": "https://127.0.0.1:9/sns"}])
    );
    let key = &out["keys"]["SignalsKey"]["policy"]["Statement"];
    let services = key
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "CostServicesPublish")
        .unwrap();
    assert_eq!(
        services["Principal"]["Service"],
        json!(["budgets.amazonaws.com", "costalerts.amazonaws.com"])
    );
    assert_eq!(
        services["Condition"]["StringEquals"]["aws:SourceAccount"],
        ACCOUNT
    );
    // What moto created, and what it could not: exactly the documented list.
    let created: BTreeSet<&str> = out["resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(_, t)| t.as_str().unwrap())
        .collect();
    assert_eq!(
        created,
        BTreeSet::from(["AWS::KMS::Key", "AWS::SNS::Topic"])
    );
    let all: BTreeSet<&str> = templates()
        .values()
        .flat_map(|t| t["Resources"].as_object().unwrap().values())
        .map(|r| r["Type"].as_str().unwrap())
        .collect();
    let deployed_by_moto: BTreeSet<&str> = BTreeSet::from([
        "AWS::IAM::Policy",
        "AWS::IAM::Role",
        "AWS::KMS::Key",
        "AWS::SNS::Topic",
        "AWS::Events::Rule",
        "AWS::DynamoDB::Table",
    ]);
    let cannot: BTreeSet<&str> = all.difference(&deployed_by_moto).copied().collect();
    assert_eq!(cannot, MOTO_CANNOT_CREATE.iter().copied().collect());
    let setup = std::fs::read_to_string(root().join("docs/aws-setup.md")).unwrap();
    for t in MOTO_CANNOT_CREATE {
        assert!(
            setup.contains(t),
            "docs/aws-setup.md does not list {t} as not deployable in moto"
        );
    }
}

#[test]
fn the_topic_policy_admits_only_the_cost_services_of_this_account() {
    let template = &templates()["cost-signals.yaml"];
    let policy = &template["Resources"]["SignalsTopicPolicy"]["Properties"];
    assert_eq!(policy["Topics"], json!([{"Ref": "SignalsTopic"}]));
    let statements = policy["PolicyDocument"]["Statement"].as_array().unwrap();
    let principals: BTreeSet<String> = statements
        .iter()
        .map(|s| s["Principal"]["Service"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        principals,
        BTreeSet::from([
            "budgets.amazonaws.com".to_string(),
            "costalerts.amazonaws.com".to_string()
        ])
    );
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(s["Action"], "SNS:Publish");
        assert_eq!(s["Resource"], json!({"Ref": "SignalsTopic"}));
        assert_eq!(
            s["Condition"],
            json!({"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}})
        );
    }
    let subscription = &template["Resources"]["AnomalySubscription"]["Properties"];
    assert_eq!(subscription["Frequency"], "IMMEDIATE");
    assert_eq!(
        subscription["Subscribers"],
        json!([{"Type": "SNS", "Address": {"Ref": "SignalsTopic"}}])
    );
}

#[test]
fn eventbridge_rules_match_the_events_the_controller_reads() {
    let fixtures = root().join("tests/fixtures/signals");
    let anomaly = fixtures.join("eventbridge-anomaly.json");
    let iam = fixtures.join("eventbridge-iam-change.json");
    let out = helper(&[
        "patterns",
        &template_path("cost-signals.yaml"),
        anomaly.to_str().unwrap(),
        iam.to_str().unwrap(),
    ]);
    assert_eq!(
        out,
        json!({
            "AnomalyEventsRule": {"eventbridge-anomaly.json": true, "eventbridge-iam-change.json": false},
            "IamChangeEventsRule": {"eventbridge-anomaly.json": false, "eventbridge-iam-change.json": true},
            "VelocityEventsRule": {"eventbridge-anomaly.json": false, "eventbridge-iam-change.json": false}
        })
    );
    // The API destination posts to /events with the controller's key header.
    let template = &templates()["cost-signals.yaml"];
    assert_eq!(
        template["Resources"]["EventsDestination"]["Properties"]["InvocationEndpoint"],
        json!({"Fn::Sub": "${ControllerEndpointUrl}/events"})
    );
    assert_eq!(
        template["Parameters"]["EventsApiKeyHeader"]["Default"],
        autoguardrails::controller::endpoints::signals::DEFAULT_API_KEY_HEADER
    );
}

#[test]
fn docs_and_chart_show_the_permission_list() {
    let o = aws_setup(&["--permissions"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed = String::from_utf8(o.stdout.clone()).unwrap();
    let blocks: Vec<&str> = printed.split_inclusive("<!-- /permissions -->\n").collect();
    assert_eq!(blocks.len(), 3);
    let docs = std::fs::read_to_string(root().join("docs/aws-permissions.md")).unwrap();
    for block in &blocks {
        assert!(
            docs.contains(block),
            "docs/aws-permissions.md must contain `autoguardrails aws-setup --permissions` output:\n{block}"
        );
    }
    let chart = std::fs::read_to_string(root().join("charts/autoguardrails/README.md")).unwrap();
    assert!(
        chart.contains(blocks[0]),
        "charts/autoguardrails/README.md (IRSA) must contain the controller's permission sets:\n{}",
        blocks[0]
    );
    // No other IAM action in the JSON examples of the permissions page than the list's (and the
    // trust and EventBridge ones the templates add).
    let known: BTreeSet<&str> = permissions::ALL
        .iter()
        .flat_map(|s| s.actions())
        .chain([
            "sts:AssumeRoleWithWebIdentity",
            "events:InvokeApiDestination",
            "kms:Decrypt",
            "kms:GenerateDataKey*",
        ])
        .collect();
    let action = regex::Regex::new(r#""([a-z0-9-]+:[A-Za-z*]+)""#).unwrap();
    for m in action.captures_iter(&docs) {
        let a = &m[1];
        if a.starts_with("aws:")
            || a.starts_with("iam:PolicyARN")
            || a.starts_with("sts:ExternalId")
        {
            continue;
        }
        assert!(
            known.contains(a),
            "docs/aws-permissions.md names {a}, which no part calls"
        );
    }
}

#[test]
fn the_velocity_rule_forwards_every_supported_call_and_nothing_else() {
    use autoguardrails::controller::velocity::event::SUPPORTED_CALLS;
    let fixtures = root().join("tests/fixtures/velocity");
    let mut paths: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    paths.sort();
    paths.push(
        root()
            .join("tests/fixtures/signals/eventbridge-iam-change.json")
            .to_str()
            .unwrap()
            .to_string(),
    );
    let template = template_path("cost-signals.yaml");
    let mut args: Vec<&str> = vec!["patterns", &template];
    args.extend(paths.iter().map(String::as_str));
    let out = helper(&args);
    let velocity = out["VelocityEventsRule"].as_object().unwrap();
    for (file, matched) in velocity {
        let expected = file != "eventbridge-iam-change.json";
        assert_eq!(matched, &json!(expected), "{file}");
    }
    // Every fixture is a supported call, and every supported call has a fixture.
    let mut names: BTreeSet<String> = BTreeSet::new();
    for path in &paths[..paths.len() - 1] {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        names.insert(event["detail"]["eventName"].as_str().unwrap().to_string());
    }
    let supported: BTreeSet<String> = SUPPORTED_CALLS.iter().map(|(_, n)| n.to_string()).collect();
    assert_eq!(names, supported);
    // The template's pattern lists exactly the supported calls.
    let pattern = &templates()["cost-signals.yaml"]["Resources"]["VelocityEventsRule"]["Properties"]
        ["EventPattern"]["detail"];
    let listed: BTreeSet<String> = strings(&pattern["eventName"]).into_iter().collect();
    assert_eq!(listed, supported);
    let sources: BTreeSet<String> = strings(&pattern["eventSource"]).into_iter().collect();
    let wanted: BTreeSet<String> = SUPPORTED_CALLS.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(sources, wanted);
}

#[test]
fn the_iam_change_rule_lists_exactly_the_calls_the_controller_repairs_after() {
    use autoguardrails::controller::signal::iam_change::DRIFT_CALLS;
    let pattern = &templates()["cost-signals.yaml"]["Resources"]["IamChangeEventsRule"]["Properties"]
        ["EventPattern"];
    let listed: BTreeSet<String> = strings(&pattern["detail"]["eventName"])
        .into_iter()
        .collect();
    let repaired: BTreeSet<String> = DRIFT_CALLS.iter().map(|n| n.to_string()).collect();
    assert_eq!(listed, repaired);
    assert_eq!(
        strings(&pattern["detail"]["eventSource"]),
        vec![autoguardrails::controller::signal::iam_change::IAM_EVENT_SOURCE.to_string()]
    );
}
