# The target-account role, as ../../../cloudformation/target-account-role.yaml: the controller's
# IAM sets (src/aws/permissions.rs), trusted by the controller role with an external id. Apply it
# in every target account (one provider alias per account, or the CloudFormation StackSet).

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "ControllerWithExternalId"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.controller_role_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.external_id]
    }
  }
}

resource "aws_iam_role" "enforcer" {
  name                 = var.role_name
  description          = "AutoGuardRails target-account role (assumed by the controller)"
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  tags = {
    "autoguardrails.io/component" = "target-account"
  }
}

module "permissions" {
  source                   = "../controller-permissions"
  role_id                  = aws_iam_role.enforcer.id
  role_name                = aws_iam_role.enforcer.name
  read_only                = var.read_only
  enable_inline_fallback   = var.enable_inline_fallback
  principal_path_prefix    = var.principal_path_prefix
  protected_principal_arns = var.protected_principal_arns
}
