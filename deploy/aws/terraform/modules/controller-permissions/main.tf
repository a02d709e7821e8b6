# The controller's IAM permission sets on one role (src/aws/permissions.rs): controller-read
# always; controller-manage-policies, controller-attach, controller-boundary and controller-inline
# unless read-only.
# Used by controller-role (IRSA) and target-account-role (AssumeRole with an external id).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  our_policy = "arn:${local.partition}:iam::${local.account}:policy/autoguardrails/agr-*"
  principals = [
    "arn:${local.partition}:iam::${local.account}:role${var.principal_path_prefix}*",
    "arn:${local.partition}:iam::${local.account}:user${var.principal_path_prefix}*",
  ]
  writes = !var.read_only
}

# controller-read: every mode.
data "aws_iam_policy_document" "read" {
  statement {
    sid    = "ControllerRead"
    effect = "Allow"
    actions = [
      "iam:GetAccountSummary",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:GetUser",
      "iam:GetUserPolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListAttachedUserPolicies",
      "iam:ListEntitiesForPolicy",
      "iam:ListPolicies",
      "iam:ListPolicyTags",
      "iam:ListPolicyVersions",
      "iam:ListRolePolicies",
      "iam:ListRoleTags",
      "iam:ListRoles",
      "iam:ListUserPolicies",
      "iam:ListUserTags",
      "iam:ListUsers",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "read" {
  name   = "autoguardrails-read"
  role   = var.role_id
  policy = data.aws_iam_policy_document.read.json
}

# controller-manage-policies, controller-attach and controller-boundary: not in read-only mode.
data "aws_iam_policy_document" "write" {
  statement {
    sid    = "ControllerManagePolicies"
    effect = "Allow"
    actions = [
      "iam:CreatePolicy",
      "iam:CreatePolicyVersion",
      "iam:DeletePolicy",
      "iam:DeletePolicyVersion",
      "iam:TagPolicy",
    ]
    resources = [local.our_policy]
  }
  statement {
    sid       = "ControllerCreateOnlyWithOwnershipTag"
    effect    = "Deny"
    actions   = ["iam:CreatePolicy"]
    resources = [local.our_policy]
    condition {
      test     = "Null"
      variable = "aws:RequestTag/autoguardrails.io/cluster"
      values   = ["true"]
    }
  }
  statement {
    sid    = "ControllerAttach"
    effect = "Allow"
    actions = [
      "iam:AttachRolePolicy",
      "iam:AttachUserPolicy",
      "iam:DetachRolePolicy",
      "iam:DetachUserPolicy",
    ]
    resources = local.principals
    condition {
      test     = "ArnLike"
      variable = "iam:PolicyARN"
      values   = [local.our_policy]
    }
  }
  statement {
    sid       = "ControllerAttachGroupRelease"
    effect    = "Allow"
    actions   = ["iam:DetachGroupPolicy"]
    resources = ["arn:${local.partition}:iam::${local.account}:group/*"]
    condition {
      test     = "ArnLike"
      variable = "iam:PolicyARN"
      values   = [local.our_policy]
    }
  }
  # controller-boundary (setPermissionsBoundary): the restore puts back the principal's previous
  # boundary, any policy, so the grant is scoped to principals, not policies.
  statement {
    sid    = "ControllerBoundary"
    effect = "Allow"
    actions = [
      "iam:DeleteRolePermissionsBoundary",
      "iam:DeleteUserPermissionsBoundary",
      "iam:PutRolePermissionsBoundary",
      "iam:PutUserPermissionsBoundary",
    ]
    resources = local.principals
  }
  statement {
    sid    = "ControllerNeverTouchItself"
    effect = "Deny"
    actions = [
      "iam:AttachRolePolicy",
      "iam:DeleteRolePermissionsBoundary",
      "iam:DeleteRolePolicy",
      "iam:DetachRolePolicy",
      "iam:PutRolePermissionsBoundary",
      "iam:PutRolePolicy",
    ]
    resources = ["arn:${local.partition}:iam::${local.account}:role/${var.role_name}"]
  }
}

resource "aws_iam_role_policy" "write" {
  count  = local.writes ? 1 : 0
  name   = "autoguardrails-write"
  role   = var.role_id
  policy = data.aws_iam_policy_document.write.json
}

# controller-inline: IAM has no condition key for an inline policy's name; the controller writes
# only autoguardrails-<hash> names and deletes only documents carrying its marker.
data "aws_iam_policy_document" "inline" {
  statement {
    sid    = "ControllerInline"
    effect = "Allow"
    actions = [
      "iam:DeleteRolePolicy",
      "iam:DeleteUserPolicy",
      "iam:PutRolePolicy",
      "iam:PutUserPolicy",
    ]
    resources = local.principals
  }
}

resource "aws_iam_role_policy" "inline" {
  count  = local.writes && var.enable_inline_fallback ? 1 : 0
  name   = "autoguardrails-inline"
  role   = var.role_id
  policy = data.aws_iam_policy_document.inline.json
}

data "aws_iam_policy_document" "protected" {
  statement {
    sid    = "ControllerNeverTouchProtected"
    effect = "Deny"
    actions = [
      "iam:AttachRolePolicy",
      "iam:AttachUserPolicy",
      "iam:DeleteRolePermissionsBoundary",
      "iam:DeleteRolePolicy",
      "iam:DeleteUserPermissionsBoundary",
      "iam:DeleteUserPolicy",
      "iam:DetachRolePolicy",
      "iam:DetachUserPolicy",
      "iam:PutRolePermissionsBoundary",
      "iam:PutRolePolicy",
      "iam:PutUserPermissionsBoundary",
      "iam:PutUserPolicy",
    ]
    resources = length(var.protected_principal_arns) > 0 ? var.protected_principal_arns : ["arn:${local.partition}:iam::${local.account}:role/${var.role_name}"]
  }
}

resource "aws_iam_role_policy" "protected" {
  count  = local.writes && length(var.protected_principal_arns) > 0 ? 1 : 0
  name   = "autoguardrails-protected"
  role   = var.role_id
  policy = data.aws_iam_policy_document.protected.json
}
