# The controller role for IRSA, as ../../../cloudformation/controller-role.yaml. Permission sets:
# src/aws/permissions.rs (tests/e2e/aws_templates.rs compares both versions with it).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  issuer    = trimprefix(var.oidc_issuer_url, "https://")
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "ChartServiceAccountOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = ["arn:${local.partition}:iam::${local.account}:oidc-provider/${local.issuer}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:${var.service_account_namespace}:${var.service_account_name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "controller" {
  name                 = var.role_name
  description          = "AutoGuardRails controller (IRSA)"
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  tags = {
    "autoguardrails.io/component" = "controller"
  }
}

module "permissions" {
  source                   = "../controller-permissions"
  role_id                  = aws_iam_role.controller.id
  role_name                = aws_iam_role.controller.name
  read_only                = var.read_only
  enable_inline_fallback   = var.enable_inline_fallback
  principal_path_prefix    = var.principal_path_prefix
  protected_principal_arns = var.protected_principal_arns
}

# controller-assume: multi-account enforcement.
data "aws_iam_policy_document" "assume" {
  statement {
    sid       = "ControllerAssume"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = length(var.target_account_role_arns) > 0 ? var.target_account_role_arns : ["arn:${local.partition}:iam::${local.account}:role/${var.role_name}"]
  }
}

resource "aws_iam_role_policy" "assume" {
  count  = length(var.target_account_role_arns) > 0 ? 1 : 0
  name   = "autoguardrails-assume"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.assume.json
}

# controller-poller.
data "aws_iam_policy_document" "poller" {
  statement {
    sid       = "ControllerPoller"
    effect    = "Allow"
    actions   = ["ce:GetAnomalies"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "poller" {
  count  = var.enable_anomaly_poller ? 1 : 0
  name   = "autoguardrails-poller"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.poller.json
}

# controller-organizations.
data "aws_iam_policy_document" "organizations" {
  statement {
    sid       = "ControllerOrganizations"
    effect    = "Allow"
    actions   = ["organizations:ListAccountsForParent", "organizations:ListChildren"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "organizations" {
  count  = var.enable_organizations ? 1 : 0
  name   = "autoguardrails-organizations"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.organizations.json
}

# controller-slack-ssm.
data "aws_iam_policy_document" "slack_ssm" {
  statement {
    sid       = "ControllerSlackSsm"
    effect    = "Allow"
    actions   = ["ssm:GetParameter"]
    resources = length(var.slack_webhook_parameter_arns) > 0 ? var.slack_webhook_parameter_arns : ["arn:${local.partition}:ssm:*:${local.account}:parameter/autoguardrails/*"]
  }
}

resource "aws_iam_role_policy" "slack_ssm" {
  count  = length(var.slack_webhook_parameter_arns) > 0 ? 1 : 0
  name   = "autoguardrails-slack-ssm"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.slack_ssm.json
}

# controller-audit-read and controller-audit-write: the audit table and its time index only.
# Granted in read-only mode too (audit records are not IAM writes; decision 223).
data "aws_iam_policy_document" "audit" {
  statement {
    sid     = "ControllerAuditRead"
    effect  = "Allow"
    actions = ["dynamodb:DescribeTable", "dynamodb:Query"]
    resources = [
      "arn:${local.partition}:dynamodb:${local.region}:${local.account}:table/${var.audit_table_name}",
      "arn:${local.partition}:dynamodb:${local.region}:${local.account}:table/${var.audit_table_name}/index/*",
    ]
  }
  statement {
    sid       = "ControllerAuditWrite"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem"]
    resources = ["arn:${local.partition}:dynamodb:${local.region}:${local.account}:table/${var.audit_table_name}"]
  }
}

resource "aws_iam_role_policy" "audit" {
  count  = var.audit_table_name != "" ? 1 : 0
  name   = "autoguardrails-audit"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.audit.json
}

# The audit table (docs/audit.md); prevent_destroy: the audit outlives the module.
resource "aws_dynamodb_table" "audit" {
  count        = var.audit_table_name != "" && var.create_audit_table ? 1 : 0
  name         = var.audit_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "day"
    type = "S"
  }

  global_secondary_index {
    name            = "by-time"
    hash_key        = "day"
    range_key       = "sk"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expiresAt"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  lifecycle {
    prevent_destroy = true
  }
}
