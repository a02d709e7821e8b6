//! The one list of AWS calls each part of the product makes and the IAM actions each needs,
//! grouped into the permission sets the templates grant (`deploy/aws/`). The CloudFormation
//! templates, the Terraform modules, `docs/aws-permissions.md` and the chart's IRSA notes are
//! tested against this list, and the list against the SDK calls in `src/` (tests/e2e/aws_templates.rs).
//! Data only: it must not render documents for a particular account or make calls.

/// One SDK operation our code calls and the IAM actions it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkCall {
    /// The SDK client method, e.g. `create_policy` (the operation in snake case).
    pub operation: &'static str,
    /// The IAM actions the call needs; empty when the call needs no permission.
    pub actions: &'static [&'static str],
}

/// Who runs with a permission set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The Kubernetes controller (IRSA role, and target-account roles for the IAM sets).
    Controller,
    /// The deployment gate (CI credentials).
    Gate,
    /// The analyzer (`analyze`; read-only).
    Analyzer,
}

impl Part {
    /// The part's name as the docs and `aws-setup` print it.
    pub fn name(self) -> &'static str {
        match self {
            Part::Controller => "controller",
            Part::Gate => "gate",
            Part::Analyzer => "analyzer",
        }
    }
}

/// A named group of calls granted together (one template statement group / parameter switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionSet {
    /// Stable name, e.g. `controller-read` (used in templates' `Sid`s and the docs' headings).
    pub name: &'static str,
    /// The part running with it.
    pub part: Part,
    /// Whether the set changes anything in AWS (read-only mode grants none of these).
    pub writes: bool,
    /// When it is needed, in one line.
    pub when: &'static str,
    /// The calls.
    pub calls: &'static [SdkCall],
}

impl PermissionSet {
    /// The set's IAM actions, sorted and deduplicated.
    pub fn actions(&self) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = self
            .calls
            .iter()
            .flat_map(|c| c.actions.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

const fn call(operation: &'static str, actions: &'static [&'static str]) -> SdkCall {
    SdkCall { operation, actions }
}

/// The controller's IAM reads (planning, verification, drift; every mode).
pub const CONTROLLER_READ: PermissionSet = PermissionSet {
    name: "controller-read",
    part: Part::Controller,
    writes: false,
    when: "always (DryRun plans, verification, drift repair, release checks)",
    calls: &[
        call("get_caller_identity", &[]),
        call("list_policies", &["iam:ListPolicies"]),
        call("get_policy", &["iam:GetPolicy"]),
        call("get_policy_version", &["iam:GetPolicyVersion"]),
        call("list_policy_versions", &["iam:ListPolicyVersions"]),
        call("list_policy_tags", &["iam:ListPolicyTags"]),
        call("list_entities_for_policy", &["iam:ListEntitiesForPolicy"]),
        call(
            "list_attached_role_policies",
            &["iam:ListAttachedRolePolicies"],
        ),
        call(
            "list_attached_user_policies",
            &["iam:ListAttachedUserPolicies"],
        ),
        call("list_role_policies", &["iam:ListRolePolicies"]),
        call("list_user_policies", &["iam:ListUserPolicies"]),
        call("get_role_policy", &["iam:GetRolePolicy"]),
        call("get_user_policy", &["iam:GetUserPolicy"]),
        call("get_account_summary", &["iam:GetAccountSummary"]),
        call("get_role", &["iam:GetRole"]),
        call("get_user", &["iam:GetUser"]),
        // Scope selectors (decision 245): listing by path prefix, and tags when a selector asks.
        call("list_roles", &["iam:ListRoles"]),
        call("list_users", &["iam:ListUsers"]),
        call("list_role_tags", &["iam:ListRoleTags"]),
        call("list_user_tags", &["iam:ListUserTags"]),
    ],
};

/// Scope selectors with an Organizations OU: the organization role (in the management or a
/// delegated administrator account) lists the OU's accounts.
pub const CONTROLLER_ORGANIZATIONS: PermissionSet = PermissionSet {
    name: "controller-organizations",
    part: Part::Controller,
    writes: false,
    when: "a policy's `scope.selectors` names an `organizationalUnit` (`aws.organizationRole`)",
    calls: &[
        call("list_children", &["organizations:ListChildren"]),
        call(
            "list_accounts_for_parent",
            &["organizations:ListAccountsForParent"],
        ),
    ],
};

/// The controller's deny path on managed policies it creates (path `/autoguardrails/`, `agr-*`).
pub const CONTROLLER_MANAGE_POLICIES: PermissionSet = PermissionSet {
    name: "controller-manage-policies",
    part: Part::Controller,
    writes: true,
    when: "Manual/Auto enforcement and release (not in read-only mode)",
    calls: &[
        // Tags are sent in the CreatePolicy call itself, which IAM authorises as TagPolicy too.
        call("create_policy", &["iam:CreatePolicy", "iam:TagPolicy"]),
        call("tag_policy", &["iam:TagPolicy"]),
        call("create_policy_version", &["iam:CreatePolicyVersion"]),
        call("delete_policy_version", &["iam:DeletePolicyVersion"]),
        call("delete_policy", &["iam:DeletePolicy"]),
    ],
};

/// Attaching and detaching our managed policies on principals (condition on the policy ARN).
pub const CONTROLLER_ATTACH: PermissionSet = PermissionSet {
    name: "controller-attach",
    part: Part::Controller,
    writes: true,
    when: "Manual/Auto enforcement and release (not in read-only mode)",
    calls: &[
        call("attach_role_policy", &["iam:AttachRolePolicy"]),
        call("attach_user_policy", &["iam:AttachUserPolicy"]),
        call("detach_role_policy", &["iam:DetachRolePolicy"]),
        call("detach_user_policy", &["iam:DetachUserPolicy"]),
        call("detach_group_policy", &["iam:DetachGroupPolicy"]),
    ],
};

/// The inline fallback (`autoguardrails-*` inline policies) when a principal's managed-policy
/// quota is full.
pub const CONTROLLER_INLINE: PermissionSet = PermissionSet {
    name: "controller-inline",
    part: Part::Controller,
    writes: true,
    when: "the inline fallback (optional; not in read-only mode)",
    calls: &[
        call("put_role_policy", &["iam:PutRolePolicy"]),
        call("put_user_policy", &["iam:PutUserPolicy"]),
        call("delete_role_policy", &["iam:DeleteRolePolicy"]),
        call("delete_user_policy", &["iam:DeleteUserPolicy"]),
    ],
};

/// The `setPermissionsBoundary` action (decision 240): putting our boundary policy on in-scope
/// principals and putting their previous boundary back on release. IAM's `iam:PermissionsBoundary`
/// key cannot scope these (the restore puts the principal's previous, arbitrary boundary), so
/// they are scoped to the principal path like the inline fallback.
pub const CONTROLLER_BOUNDARY: PermissionSet = PermissionSet {
    name: "controller-boundary",
    part: Part::Controller,
    writes: true,
    when: "a policy lists `setPermissionsBoundary` (not in read-only mode)",
    calls: &[
        call(
            "put_role_permissions_boundary",
            &["iam:PutRolePermissionsBoundary"],
        ),
        call(
            "put_user_permissions_boundary",
            &["iam:PutUserPermissionsBoundary"],
        ),
        call(
            "delete_role_permissions_boundary",
            &["iam:DeleteRolePermissionsBoundary"],
        ),
        call(
            "delete_user_permissions_boundary",
            &["iam:DeleteUserPermissionsBoundary"],
        ),
    ],
};

/// Multi-account enforcement: the controller assumes a role in each target account.
pub const CONTROLLER_ASSUME: PermissionSet = PermissionSet {
    name: "controller-assume",
    part: Part::Controller,
    writes: false,
    when: "`aws.accounts` lists target-account roles",
    calls: &[call("assume_role", &["sts:AssumeRole"])],
};

/// The optional Cost Anomaly Detection poller.
pub const CONTROLLER_POLLER: PermissionSet = PermissionSet {
    name: "controller-poller",
    part: Part::Controller,
    writes: false,
    when: "`poller.monitorArns` is set",
    calls: &[call("get_anomalies", &["ce:GetAnomalies"])],
};

/// Slack webhook URLs kept in SSM SecureString parameters.
pub const CONTROLLER_SLACK_SSM: PermissionSet = PermissionSet {
    name: "controller-slack-ssm",
    part: Part::Controller,
    writes: false,
    when: "a policy's Slack webhook is an SSM parameter",
    calls: &[call("get_parameter", &["ssm:GetParameter"])],
};

/// Reading the audit table (decision 223): what `autoguardrails audit` needs, and all an auditor
/// is granted. Also granted to the controller (its start-up check and the outbox's reads).
pub const CONTROLLER_AUDIT_READ: PermissionSet = PermissionSet {
    name: "controller-audit-read",
    part: Part::Controller,
    writes: false,
    when: "`audit.table` is set (also the read-only policy of `autoguardrails audit`)",
    calls: &[
        call("query", &["dynamodb:Query"]),
        call("describe_table", &["dynamodb:DescribeTable"]),
    ],
};

/// Appending audit records to the audit table. Not an IAM write, and dry-run and read-only mode
/// record their decisions too, so read-only mode grants it (decision 223).
pub const CONTROLLER_AUDIT_WRITE: PermissionSet = PermissionSet {
    name: "controller-audit-write",
    part: Part::Controller,
    writes: false,
    when: "`audit.table` is set (conditional PutItem on the audit table only)",
    calls: &[call("put_item", &["dynamodb:PutItem"])],
};

/// The deployment gate's observed spend.
pub const GATE_COST: PermissionSet = PermissionSet {
    name: "gate-cost",
    part: Part::Gate,
    writes: false,
    when: "the gate's cost input reads Cost Explorer",
    calls: &[call("get_cost_and_usage", &["ce:GetCostAndUsage"])],
};

/// The analyzer's reads of the principal's current IAM policies.
pub const ANALYZER_IAM: PermissionSet = PermissionSet {
    name: "analyzer-iam",
    part: Part::Analyzer,
    writes: false,
    when: "always (the principal's current policies)",
    calls: &[
        call("get_role", &["iam:GetRole"]),
        call("get_user", &["iam:GetUser"]),
        call("list_role_policies", &["iam:ListRolePolicies"]),
        call("list_user_policies", &["iam:ListUserPolicies"]),
        call("list_group_policies", &["iam:ListGroupPolicies"]),
        call("get_role_policy", &["iam:GetRolePolicy"]),
        call("get_user_policy", &["iam:GetUserPolicy"]),
        call("get_group_policy", &["iam:GetGroupPolicy"]),
        call(
            "list_attached_role_policies",
            &["iam:ListAttachedRolePolicies"],
        ),
        call(
            "list_attached_user_policies",
            &["iam:ListAttachedUserPolicies"],
        ),
        call(
            "list_attached_group_policies",
            &["iam:ListAttachedGroupPolicies"],
        ),
        call("get_policy", &["iam:GetPolicy"]),
        call("get_policy_version", &["iam:GetPolicyVersion"]),
        call("list_groups_for_user", &["iam:ListGroupsForUser"]),
    ],
};

/// The analyzer's CloudTrail event history scan.
pub const ANALYZER_CLOUDTRAIL: PermissionSet = PermissionSet {
    name: "analyzer-cloudtrail",
    part: Part::Analyzer,
    writes: false,
    when: "the `cloudtrail` source (event history, every enabled region)",
    calls: &[
        call("lookup_events", &["cloudtrail:LookupEvents"]),
        call("list_regions", &["account:ListRegions"]),
    ],
};

/// The analyzer's CloudTrail log files in S3.
pub const ANALYZER_S3: PermissionSet = PermissionSet {
    name: "analyzer-s3",
    part: Part::Analyzer,
    writes: false,
    when: "the `s3` source (a trail's log bucket)",
    calls: &[
        call("list_objects_v2", &["s3:ListBucket"]),
        call("get_object", &["s3:GetObject"]),
    ],
};

/// The analyzer's Athena queries over an organisation trail. Athena reads the table through
/// Glue and the logs through S3 with the caller's rights, and writes results to its output
/// location (the one write, limited to that location).
pub const ANALYZER_ATHENA: PermissionSet = PermissionSet {
    name: "analyzer-athena",
    part: Part::Analyzer,
    writes: false,
    when: "the `athena` source (organisation trails)",
    calls: &[
        call(
            "start_query_execution",
            &[
                "athena:StartQueryExecution",
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:GetPartitions",
                "s3:GetBucketLocation",
                "s3:ListBucket",
                "s3:PutObject",
            ],
        ),
        call("get_query_execution", &["athena:GetQueryExecution"]),
        call(
            "get_query_results",
            &["athena:GetQueryResults", "s3:GetObject"],
        ),
    ],
};

/// The analyzer's optional model.
pub const ANALYZER_MODEL: PermissionSet = PermissionSet {
    name: "analyzer-model",
    part: Part::Analyzer,
    writes: false,
    when: "`--model bedrock:...` (optional reasoning)",
    calls: &[call("converse", &["bedrock:InvokeModel"])],
};

/// Every permission set, controller first.
pub const ALL: &[PermissionSet] = &[
    CONTROLLER_READ,
    CONTROLLER_MANAGE_POLICIES,
    CONTROLLER_ATTACH,
    CONTROLLER_INLINE,
    CONTROLLER_BOUNDARY,
    CONTROLLER_ASSUME,
    CONTROLLER_ORGANIZATIONS,
    CONTROLLER_POLLER,
    CONTROLLER_SLACK_SSM,
    CONTROLLER_AUDIT_READ,
    CONTROLLER_AUDIT_WRITE,
    GATE_COST,
    ANALYZER_IAM,
    ANALYZER_CLOUDTRAIL,
    ANALYZER_S3,
    ANALYZER_ATHENA,
    ANALYZER_MODEL,
];

/// The IAM actions of a part, sorted and deduplicated (`writes: Some(false)` keeps the
/// read-only sets, `Some(true)` the write sets, `None` both).
pub fn actions(part: Part, writes: Option<bool>) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = ALL
        .iter()
        .filter(|s| s.part == part && writes.is_none_or(|w| s.writes == w))
        .flat_map(|s| s.actions())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The `Sid` prefix of a set's statements in the templates: `controller-read` → `ControllerRead`.
pub fn sid(set: &PermissionSet) -> String {
    pascal_case(set.name, '-')
}

/// `controller-read` (separator `-`) or `create_policy` (`_`) in Pascal case.
fn pascal_case(text: &str, separator: char) -> String {
    text.split(separator)
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The permission sets of a part as a Markdown table (docs/aws-permissions.md and the chart's
/// README embed it between `<!-- permissions:PART -->` markers; `aws-setup --permissions` prints it).
pub fn markdown(part: Part) -> String {
    let mut out = String::from("| Set | Needed when | Actions |\n|---|---|---|\n");
    for set in ALL.iter().filter(|s| s.part == part) {
        let actions: Vec<String> = set.actions().iter().map(|a| format!("`{a}`")).collect();
        out.push_str(&format!(
            "| `{}`{} | {} | {} |\n",
            set.name,
            if set.writes { " (write)" } else { "" },
            set.when,
            actions.join(", ")
        ));
    }
    out
}

/// Every SDK operation the product calls (snake case), sorted and deduplicated.
pub fn operations() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = ALL
        .iter()
        .flat_map(|s| s.calls.iter().map(|c| c.operation))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Operation;

    /// Every operation of the controller's `Iam`/`Sts` traits is in a controller set, with the
    /// action named after it, and an operation is in a write set exactly when it writes.
    #[test]
    fn every_trait_operation_is_listed_with_its_action() {
        for op in Operation::ALL {
            let sets: Vec<&PermissionSet> = ALL
                .iter()
                .filter(|s| s.part == Part::Controller)
                .filter(|s| {
                    s.calls
                        .iter()
                        .any(|c| pascal_case(c.operation, '_') == op.name())
                })
                .collect();
            assert_eq!(
                sets.len(),
                1,
                "{} is in exactly one controller set",
                op.name()
            );
            let set = sets[0];
            assert_eq!(
                set.writes,
                op.is_write(),
                "{}: write set iff write",
                op.name()
            );
            if op != Operation::GetCallerIdentity {
                let service = match op {
                    Operation::AssumeRole => "sts",
                    Operation::ListChildren | Operation::ListAccountsForParent => "organizations",
                    _ => "iam",
                };
                let action = format!("{service}:{}", op.name());
                assert!(
                    set.actions().contains(&action.as_str()),
                    "{} needs {action}",
                    op.name()
                );
            }
        }
    }

    #[test]
    fn read_only_sets_hold_no_iam_write() {
        for set in ALL.iter().filter(|s| !s.writes) {
            for action in set.actions() {
                let verb = action.split(':').nth(1).unwrap_or_default();
                let is_iam_write = action.starts_with("iam:")
                    && !(verb.starts_with("Get") || verb.starts_with("List"));
                assert!(
                    !is_iam_write,
                    "{} is read-only but grants {action}",
                    set.name
                );
            }
        }
    }
}
