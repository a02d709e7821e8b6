# The controller role for IRSA, as ../../../cloudformation/controller-role.yaml. Permission sets:
# src/aws/permissions.rs (tests/e2e/aws_templates.rs compares both versions with it).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  issuer    = trimprefix(var.oidc_issuer_url, "https://")
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
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
