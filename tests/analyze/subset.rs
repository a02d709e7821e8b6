//! Property: a proposal never grants more than the principal has today. Random current policies
//! (wildcard actions, `NotAction`, `NotResource`, explicit denies, conditions, a permissions
//! boundary) and random usage (data and management events, several principals, denied calls,
//! passed roles, SSE-KMS, tag-on-create) go through the real pure pipeline (`Usage` →
//! `proposal::analyze`); the proposal's documents are then read back as policies and evaluated
//! with `permissions::Permissions::decide` against the current ones on every probe (action,
//! resource): whatever the proposal allows, the current policies allow, and a grant that is only
//! conditional today stays at least as conditional. Second property: an observed successful call
//! of the principal that today's policies allow unconditionally on its resource, and whose action
//! the proposal keeps, is still allowed by the proposal.

use std::collections::BTreeSet;

use autoguardrails::analyze::catalog::Catalog;
use autoguardrails::analyze::generate::DocumentStatement;
use autoguardrails::analyze::guardrails::{Preset, Rules};
use autoguardrails::analyze::mapping::{self, Mapped};
use autoguardrails::analyze::permissions::{Decision, Effect, Permissions, Policy, PolicySource};
use autoguardrails::analyze::proposal::{
    self, AnalyzeError, Context, DECISION_KEPT, PolicyType, Report, Settings, SourceReport,
};
use autoguardrails::analyze::record::{PrincipalMatcher, Record};
use autoguardrails::analyze::usage::{Origin, Usage, is_access_denied};
use autoguardrails::principal::PrincipalArn;
use proptest::prelude::*;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const TARGET: &str = "arn:aws:iam::111122223333:role/ci-deployer";
const REGIONS: &[&str] = &["us-east-1", "eu-west-1"];
const BUCKETS: &[&str] = &["bucket-a", "bucket-b", "logs-c"];
const KEYS: &[&str] = &["k1", "dir/k2"];
const ROLES: &[&str] = &[
    "arn:aws:iam::111122223333:role/exec-a",
    "arn:aws:iam::111122223333:role/exec-b",
    "exec-c",
];
const KMS_KEYS: &[&str] = &[
    "arn:aws:kms:us-east-1:111122223333:key/k1",
    "arn:aws:kms:eu-west-1:111122223333:key/k2",
];
const FUNCTIONS: &[&str] = &[
    "arn:aws:lambda:us-east-1:111122223333:function:f1",
    "arn:aws:lambda:eu-west-1:111122223333:function:f2",
];
const TABLES: &[&str] = &["arn:aws:dynamodb:us-east-1:111122223333:table/t1"];

/// Callers: the analysed role (a session, and the role with another path/case), an IAM user,
/// another role.
const CALLERS: &[&str] = &[
    "session:ci-deployer",
    "session:CI-Deployer",
    "session:other-role",
    "user:ci-deployer",
];

/// Action patterns of the random current policies.
const ACTION_PATTERNS: &[&str] = &[
    "*",
    "s3:*",
    "s3:Get*",
    "s3:GetObject",
    "s3:PutObject",
    "s3:List*",
    "s3:ListBucket",
    "s3:*Object",
    "ec2:*",
    "ec2:Describe*",
    "ec2:RunInstances",
    "ec2:CreateTags",
    "ec2:Create*",
    "kms:*",
    "kms:Decrypt",
    "kms:GenerateDataKey*",
    "kms:CreateGrant",
    "iam:PassRole",
    "iam:*",
    "iam:Get*",
    "lambda:*",
    "lambda:InvokeFunction",
    "lambda:CreateFunction",
    "dynamodb:GetItem",
    "dynamodb:*",
    "cloudwatch:PutMetricData",
    "states:*",
    "*:Get*",
    "S3:get?bject",
    "sts:*",
];

/// Resource patterns of the random current policies.
const RESOURCE_PATTERNS: &[&str] = &[
    "*",
    "*",
    "arn:aws:s3:::bucket-a/*",
    "arn:aws:s3:::bucket-a",
    "arn:aws:s3:::bucket-*",
    "arn:aws:s3:::*",
    "arn:aws:iam::111122223333:role/exec-*",
    "arn:aws:iam::111122223333:role/exec-a",
    "arn:aws:kms:us-east-1:111122223333:key/k1",
    "arn:aws:kms:*:111122223333:key/*",
    "arn:aws:lambda:*:111122223333:function:f1",
    "arn:aws:dynamodb:us-east-1:111122223333:table/*",
    "arn:aws:ec2:*:111122223333:instance/*",
    "arn:aws:kms:eu-west-1:111122223333:key/k2",
];

fn condition(index: usize) -> Option<Value> {
    match index {
        0 => Some(json!({"StringEquals": {"aws:RequestedRegion": "eu-west-1"}})),
        1 => Some(json!({"StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}})),
        2 => Some(json!({"StringLike": {"aws:RequestedRegion": "us-*"}})),
        3 => Some(json!({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})),
        4 => Some(json!({"Bool": {"aws:SecureTransport": "true"}})),
        5 => Some(json!({"StringEquals": {"ec2:CreateAction": "CreateVolume"}})),
        _ => None,
    }
}

/// One random statement: (deny?, NotAction?, actions, NotResource?, resources, condition).
type StatementSpec = (bool, bool, Vec<usize>, bool, Vec<usize>, usize);

fn statement_json(
    (deny, not_action, actions, not_resource, resources, cond): &StatementSpec,
) -> Value {
    let actions: Vec<&str> = actions.iter().map(|i| ACTION_PATTERNS[*i]).collect();
    let resources: Vec<&str> = resources.iter().map(|i| RESOURCE_PATTERNS[*i]).collect();
    let mut s = serde_json::Map::new();
    s.insert("Effect".into(), json!(if *deny { "Deny" } else { "Allow" }));
    s.insert(
        if *not_action { "NotAction" } else { "Action" }.into(),
        json!(actions),
    );
    s.insert(
        if *not_resource {
            "NotResource"
        } else {
            "Resource"
        }
        .into(),
        json!(resources),
    );
    if let Some(c) = condition(*cond) {
        s.insert("Condition".into(), c);
    }
    Value::Object(s)
}

fn statement_strategy() -> impl Strategy<Value = StatementSpec> {
    (
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.12),
        prop::collection::vec(0..ACTION_PATTERNS.len(), 1..4),
        prop::bool::weighted(0.12),
        prop::collection::vec(0..RESOURCE_PATTERNS.len(), 1..3),
        // 0..=5 are conditions, the rest none (about 70 % unconditional).
        0usize..20,
    )
}

fn policy(name: &str, statements: &[StatementSpec]) -> Policy {
    let text = json!({
        "Version": "2012-10-17",
        "Statement": statements.iter().map(statement_json).collect::<Vec<_>>(),
    })
    .to_string();
    Policy::parse(
        PolicySource {
            kind: "file".into(),
            name: name.into(),
        },
        &text,
    )
    .unwrap()
}

/// One random call: (event, caller, region, denied?, bucket, key, sse-kms?, role, kms key,
/// function, instance profile?).
type CallSpec = (
    usize,
    usize,
    usize,
    bool,
    usize,
    usize,
    bool,
    usize,
    usize,
    usize,
    bool,
);

/// (event source, event name) of the vocabulary.
const EVENTS: &[(&str, &str)] = &[
    ("s3.amazonaws.com", "GetObject"),
    ("s3.amazonaws.com", "PutObject"),
    ("s3.amazonaws.com", "HeadObject"),
    ("s3.amazonaws.com", "ListObjects"),
    ("s3.amazonaws.com", "ListBuckets"),
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("ec2.amazonaws.com", "RunInstances"),
    ("ec2.amazonaws.com", "CreateVolume"),
    ("lambda.amazonaws.com", "CreateFunction20150331"),
    ("lambda.amazonaws.com", "Invoke"),
    ("kms.amazonaws.com", "Decrypt"),
    ("iam.amazonaws.com", "GetRole"),
    ("sts.amazonaws.com", "GetCallerIdentity"),
    ("dynamodb.amazonaws.com", "GetItem"),
    ("monitoring.amazonaws.com", "PutMetricData"),
    ("states.amazonaws.com", "CreateStateMachine"),
    ("sts.amazonaws.com", "AssumeRole"),
];

fn identity(caller: &str) -> Value {
    let (kind, name) = caller.split_once(':').unwrap();
    if kind == "user" {
        return json!({"type": "IAMUser", "principalId": "AIDAEXAMPLE",
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/{name}"), "accountId": ACCOUNT, "userName": name});
    }
    let path = if name == "CI-Deployer" { "/team/" } else { "/" };
    json!({"type": "AssumedRole", "principalId": "AROAEXAMPLE:s1",
        "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s1"), "accountId": ACCOUNT,
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
            "arn": format!("arn:aws:iam::{ACCOUNT}:role{path}{name}"), "accountId": ACCOUNT, "userName": name}}})
}

/// A CloudTrail record of the call, and the resource ARNs it names.
fn call_record(index: usize, call: &CallSpec) -> Value {
    let &(event, caller, region, denied, bucket, key, sse, role, kms, function, profile) = call;
    let (source, name) = EVENTS[event];
    let region = REGIONS[region];
    let bucket = BUCKETS[bucket];
    let object = format!("arn:aws:s3:::{bucket}/{}", KEYS[key]);
    let mut request = serde_json::Map::new();
    let mut response = Value::Null;
    let mut additional = Value::Null;
    let mut resources: Vec<Value> = Vec::new();
    match (source, name) {
        ("s3.amazonaws.com", "GetObject" | "PutObject" | "HeadObject") => {
            request.insert("bucketName".into(), json!(bucket));
            request.insert("key".into(), json!(KEYS[key]));
            resources.push(json!({"type": "AWS::S3::Object", "ARN": object}));
            resources
                .push(json!({"type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}));
            if sse {
                additional = json!({"SSEApplied": "SSE_KMS"});
                if name == "PutObject" {
                    request.insert("x-amz-server-side-encryption".into(), json!("aws:kms"));
                    request.insert(
                        "x-amz-server-side-encryption-aws-kms-key-id".into(),
                        json!(KMS_KEYS[kms]),
                    );
                } else {
                    response = json!({"x-amz-server-side-encryption": "aws:kms",
                        "x-amz-server-side-encryption-aws-kms-key-id": KMS_KEYS[kms]});
                }
            }
        }
        ("s3.amazonaws.com", "ListObjects") => {
            request.insert("bucketName".into(), json!(bucket));
            resources
                .push(json!({"type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}));
        }
        ("ec2.amazonaws.com", "RunInstances") => {
            request.insert(
                "tagSpecificationSet".into(),
                json!({"items": [{"resourceType": "instance"}]}),
            );
            if profile {
                request.insert("iamInstanceProfile".into(), json!({"name": "p"}));
            }
        }
        ("ec2.amazonaws.com", "CreateVolume") => {
            request.insert("kmsKeyId".into(), json!(KMS_KEYS[kms]));
        }
        ("lambda.amazonaws.com", "CreateFunction20150331") => {
            request.insert("role".into(), json!(ROLES[role]));
        }
        ("states.amazonaws.com", "CreateStateMachine") | ("sts.amazonaws.com", "AssumeRole") => {
            request.insert("roleArn".into(), json!(ROLES[role]));
        }
        ("lambda.amazonaws.com", "Invoke") => {
            resources.push(json!({"type": "AWS::Lambda::Function", "ARN": FUNCTIONS[function]}));
        }
        ("kms.amazonaws.com", "Decrypt") => {
            resources.push(json!({"type": "AWS::KMS::Key", "ARN": KMS_KEYS[kms]}));
        }
        ("dynamodb.amazonaws.com", "GetItem") => {
            resources.push(json!({"type": "AWS::DynamoDB::Table", "ARN": TABLES[0]}));
        }
        _ => {}
    }
    let mut record = json!({
        "eventVersion": "1.09",
        "userIdentity": identity(CALLERS[caller]),
        "eventTime": format!("2024-05-{:02}T{:02}:00:00Z", 1 + index % 20, index % 24),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "requestParameters": Value::Object(request),
        "responseElements": response,
        "additionalEventData": additional,
        "eventID": format!("e-{index}"),
        "eventType": "AwsApiCall",
    });
    if !resources.is_empty() {
        record["resources"] = json!(resources);
    }
    if denied {
        record["errorCode"] = json!(if index.is_multiple_of(2) {
            "AccessDenied"
        } else {
            "Client.UnauthorizedOperation"
        });
    }
    record
}

fn call_strategy() -> impl Strategy<Value = CallSpec> {
    (
        0..EVENTS.len(),
        prop::sample::select(vec![0usize, 0, 0, 0, 1, 2, 3]),
        0..REGIONS.len(),
        prop::bool::weighted(0.1),
        0..BUCKETS.len(),
        0..KEYS.len(),
        prop::bool::weighted(0.4),
        0..ROLES.len(),
        0..KMS_KEYS.len(),
        0..FUNCTIONS.len(),
        prop::bool::weighted(0.3),
    )
}

/// Every concrete resource a call could name, `*`, and literal patterns of the documents.
fn probe_resources(report: &Report) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = BTreeSet::from(["*".to_string()]);
    for bucket in BUCKETS {
        out.insert(format!("arn:aws:s3:::{bucket}"));
        out.insert(format!("arn:aws:s3:::{bucket}/*"));
        for key in KEYS {
            out.insert(format!("arn:aws:s3:::{bucket}/{key}"));
        }
    }
    for role in ROLES {
        let arn = if role.starts_with("arn:") {
            role.to_string()
        } else {
            format!("arn:aws:iam::{ACCOUNT}:role/{role}")
        };
        out.insert(arn);
    }
    out.insert(format!("arn:aws:iam::{ACCOUNT}:role/other"));
    out.extend(KMS_KEYS.iter().map(|s| s.to_string()));
    out.insert(format!("arn:aws:kms:eu-west-1:{ACCOUNT}:key/k9"));
    out.extend(FUNCTIONS.iter().map(|s| s.to_string()));
    out.extend(TABLES.iter().map(|s| s.to_string()));
    out.insert(format!("arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-1"));
    for statement in generated(report) {
        out.extend(statement.resources.iter().cloned());
    }
    out
}

fn generated(report: &Report) -> Vec<&autoguardrails::analyze::generate::Statement> {
    report
        .proposal
        .policies
        .iter()
        .flat_map(|p| p.document.statements.iter())
        .filter_map(|s| match s {
            DocumentStatement::Generated(g) => Some(g),
            DocumentStatement::CarriedDeny(_) => None,
        })
        .collect()
}

/// The proposal's documents read back as the policies IAM would store.
fn proposal_permissions(report: &Report) -> Permissions {
    Permissions {
        policies: report
            .proposal
            .policies
            .iter()
            .map(|p| {
                Policy::parse(
                    PolicySource {
                        kind: "proposal".into(),
                        name: p.name.clone(),
                    },
                    &p.document.to_json(),
                )
                .unwrap()
            })
            .collect(),
        boundary: None,
    }
}

/// The conditions under which `policies` allow (action, resource): `None` when some statement
/// allows it unconditionally (or no policy is given), else every alternative condition block.
fn alternatives<'a>(
    policies: impl Iterator<Item = &'a Policy>,
    action: &str,
    resource: &str,
) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    let mut any = false;
    for policy in policies {
        any = true;
        for s in &policy.statements {
            if s.effect == Effect::Allow && s.matches_action(action) && s.matches_resource(resource)
            {
                match &s.condition {
                    None => return None,
                    Some(c) => out.push(c.clone()),
                }
            }
        }
    }
    any.then_some(out)
}

/// Positive condition operators, whose values are alternatives (fewer values = narrower).
fn covers(statement: &Value, required: &Value) -> bool {
    let Some(required) = required.as_object() else {
        return false;
    };
    required.iter().all(|(op, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, values)| {
                let wanted: BTreeSet<String> = strings(values);
                let have = statement
                    .get("Condition")
                    .and_then(|c| c.get(op))
                    .and_then(|k| k.get(key));
                have.is_some_and(|have| {
                    let have = strings(have);
                    !have.is_empty() && have.is_subset(&wanted)
                })
            })
        })
    })
}

fn strings(value: &Value) -> BTreeSet<String> {
    match value {
        Value::String(s) => BTreeSet::from([s.clone()]),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        other => BTreeSet::from([other.to_string()]),
    }
}

/// Checks both properties; returns a description of the first violation.
fn check(
    catalog: &Catalog,
    current: &Permissions,
    calls: &[(CallSpec, Value)],
    report: &Report,
) -> Result<(), String> {
    let proposal = proposal_permissions(report);
    let resources = probe_resources(report);
    let mut actions: BTreeSet<String> = BTreeSet::new();
    for statement in generated(report) {
        actions.extend(statement.actions.iter().cloned());
    }
    // A few actions the proposal should never allow unless it kept them.
    actions.extend(
        [
            "s3:DeleteObject",
            "iam:CreateUser",
            "ec2:TerminateInstances",
            "kms:Encrypt",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    // 1. proposal ⊆ current.
    for action in &actions {
        for resource in &resources {
            let proposed = proposal.decide(action, resource);
            if !proposed.is_allowed() {
                continue;
            }
            match current.decide(action, resource) {
                Decision::Allowed => {}
                Decision::Conditional(_) => {
                    // Granted today only under conditions: every proposal statement that allows
                    // it must be at least as narrow as one of today's conditional grants (and,
                    // with a conditional boundary, as one of the boundary's too).
                    let identity = alternatives(current.policies.iter(), action, resource);
                    let boundary = alternatives(current.boundary.iter(), action, resource);
                    for policy in &proposal.policies {
                        for s in &policy.statements {
                            if s.effect == Effect::Allow
                                && s.matches_action(action)
                                && s.matches_resource(resource)
                            {
                                for required in [&identity, &boundary].into_iter().flatten() {
                                    if !required.iter().any(|c| covers(&s.raw, c)) {
                                        return Err(format!(
                                            "{action} on {resource}: granted today only under one of {required:?}, proposed under {:?}",
                                            s.raw.get("Condition")
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "{action} on {resource}: the proposal allows it ({proposed:?}), today {other:?}"
                    ));
                }
            }
        }
    }
    // 2. observed calls allowed today stay allowed (when the action is kept).
    let target = PrincipalArn::parse(TARGET).unwrap();
    for (spec, record) in calls {
        let caller = CALLERS[spec.1];
        if !caller.starts_with("session:") || !caller.to_ascii_lowercase().ends_with("ci-deployer")
        {
            continue;
        }
        if record
            .get("errorCode")
            .and_then(Value::as_str)
            .is_some_and(is_access_denied)
        {
            continue;
        }
        let (source, name) = EVENTS[spec.0];
        let Mapped::Actions { actions, .. } = mapping::map_event(catalog, source, name) else {
            continue;
        };
        for action in actions {
            let Some(evidence) = report.proposal.evidence.get(&action) else {
                return Err(format!("{action} of an observed call has no evidence"));
            };
            if evidence.decision != DECISION_KEPT {
                continue;
            }
            let info = catalog.lookup(&action).unwrap();
            let named: Vec<String> = record
                .get("resources")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|r| r.get("ARN").and_then(Value::as_str))
                        .filter(|arn| !catalog.matching_resource_types(info, arn).is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let needed = if info.scopable() && !named.is_empty() {
                named
            } else {
                vec!["*".to_string()]
            };
            for resource in needed {
                if current.decide(&action, &resource) == Decision::Allowed
                    && !proposal.decide(&action, &resource).is_allowed()
                {
                    return Err(format!(
                        "observed call {source}:{name} of {target} ({action} on {resource}) is allowed today but not by the proposal"
                    ));
                }
            }
        }
    }
    Ok(())
}

type Case = (
    Vec<Vec<StatementSpec>>,
    Option<Vec<StatementSpec>>,
    Vec<CallSpec>,
    (bool, bool, usize, bool),
);

fn run_case(
    (policies, boundary, calls, (scope, inline, preset, exclude)): Case,
) -> Result<(), String> {
    let catalog = Catalog::embedded().unwrap();
    let current = Permissions {
        policies: policies
            .iter()
            .enumerate()
            .map(|(i, s)| policy(&format!("current-{i}"), s))
            .collect(),
        boundary: boundary.as_ref().map(|s| policy("boundary", s)),
    };
    let mut usage = Usage::new(
        PrincipalMatcher::new(PrincipalArn::parse(TARGET).unwrap()),
        None,
    );
    let calls: Vec<(CallSpec, Value)> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, call_record(i, c)))
        .collect();
    for (_, record) in &calls {
        let text = record.to_string();
        usage.add_record(&Record::parse(&text).unwrap(), Origin::Files);
    }
    let preset = [Preset::None, Preset::Sandbox, Preset::Prod][preset];
    let settings = Settings {
        scope_resources: scope,
        policy_type: if inline {
            PolicyType::Inline
        } else {
            PolicyType::Managed
        },
        preset,
        rules: Rules::preset(preset),
        exclude_services: if exclude {
            BTreeSet::from(["monitoring".to_string(), "states".to_string()])
        } else {
            BTreeSet::new()
        },
        suppress_actions: BTreeSet::new(),
        risk_threshold: 0.1,
    };
    let context = Context {
        requested_days: None,
        sources: vec![SourceReport {
            origin: Origin::Files,
            detail: "property test".into(),
            regions: Vec::new(),
            units_read: 1,
        }],
        principal_created: None,
        permissions_origin: "property test".into(),
    };
    match proposal::analyze(catalog, &usage, &current, &settings, &context) {
        Ok(report) => check(catalog, &current, &calls, &report),
        Err(AnalyzeError::NoEvents { .. } | AnalyzeError::NothingToPropose { .. }) => Ok(()),
        Err(e) => Err(format!("analysis failed: {e}")),
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(prop::collection::vec(statement_strategy(), 1..5), 1..4),
        prop::option::weighted(0.2, prop::collection::vec(statement_strategy(), 1..3)),
        prop::collection::vec(call_strategy(), 1..25),
        (
            any::<bool>(),
            prop::bool::weighted(0.2),
            0usize..3,
            prop::bool::weighted(0.2),
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn proposal_is_a_subset_of_current_grants(case in case_strategy()) {
        if let Err(message) = run_case(case) {
            prop_assert!(false, "{}", message);
        }
    }
}

// Regression cases: inputs the property found (or that were written for a fix), kept as tests.

fn allow(actions: &[usize], resources: &[usize], cond: usize) -> StatementSpec {
    (
        false,
        false,
        actions.to_vec(),
        false,
        resources.to_vec(),
        cond,
    )
}

fn call(event: usize, kms_key: usize) -> CallSpec {
    (event, 0, 0, false, 0, 0, false, 0, kms_key, 0, false)
}

/// Found by the property: `dynamodb:GetItem` allowed today on the table only through a
/// `NotResource` grant; the proposal copied the other statement's pattern (an S3 ARN) and the
/// observed call would have failed. The named resource is now kept.
#[test]
fn regression_observed_resource_allowed_through_not_resource() {
    let not_resource = (false, false, vec![23], true, vec![2], 6);
    let case = (
        vec![vec![not_resource, allow(&[23], &[2], 6)]],
        None,
        vec![call(13, 0)],
        (false, false, 0, false),
    );
    run_case(case).unwrap();
}

/// Found by the property: identity and boundary both allow `iam:PassRole` only under (different)
/// conditions; the evaluator kept the identity's condition alone, so the proposal granted what
/// the boundary forbids. Both conditions are now required.
#[test]
fn regression_identity_and_boundary_conditions_both_apply() {
    let case = (
        vec![vec![(false, true, vec![1], false, vec![0], 2)]],
        Some(vec![(false, true, vec![1], false, vec![6], 0)]),
        vec![call(15, 0)],
        (false, false, 0, false),
    );
    run_case(case).unwrap();
}

/// Two keys granted under different conditions: one statement each, never the first key's
/// condition for both.
#[test]
fn regression_conditions_per_narrowed_resource() {
    let case = (
        vec![vec![allow(&[13], &[8], 2), allow(&[13], &[13], 0)]],
        None,
        vec![call(10, 0), call(10, 1)],
        (true, false, 0, false),
    );
    run_case(case).unwrap();
}
