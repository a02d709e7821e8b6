# The analyzer's read-only role, as ../../../cloudformation/analyzer-role.yaml. Permission sets:
# src/aws/permissions.rs. The only write is Athena's query results into its output location.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  athena    = var.athena_work_group != "" && var.athena_results_bucket != ""
}

data "aws_iam_policy_document" "trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "analyzer" {
  name                 = var.role_name
  description          = "AutoGuardRails analyzer (read-only)"
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  tags = {
    "autoguardrails.io/component" = "analyzer"
  }
}

# analyzer-iam and analyzer-cloudtrail.
data "aws_iam_policy_document" "read" {
  statement {
    sid    = "AnalyzerIam"
    effect = "Allow"
    actions = [
      "iam:GetGroupPolicy",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:GetUser",
      "iam:GetUserPolicy",
      "iam:ListAttachedGroupPolicies",
      "iam:ListAttachedRolePolicies",
      "iam:ListAttachedUserPolicies",
      "iam:ListGroupPolicies",
      "iam:ListGroupsForUser",
      "iam:ListRolePolicies",
      "iam:ListUserPolicies",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "AnalyzerCloudtrail"
    effect    = "Allow"
    actions   = ["account:ListRegions", "cloudtrail:LookupEvents"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "read" {
  name   = "autoguardrails-analyzer-read"
  role   = aws_iam_role.analyzer.id
  policy = data.aws_iam_policy_document.read.json
}

# analyzer-s3.
data "aws_iam_policy_document" "trail_logs" {
  statement {
    sid       = "AnalyzerS3"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${var.trail_bucket_name}"]
  }
  statement {
    sid       = "AnalyzerS3Objects"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["arn:${local.partition}:s3:::${var.trail_bucket_name}/*"]
  }
}

resource "aws_iam_role_policy" "trail_logs" {
  count  = var.trail_bucket_name != "" ? 1 : 0
  name   = "autoguardrails-analyzer-trail-logs"
  role   = aws_iam_role.analyzer.id
  policy = data.aws_iam_policy_document.trail_logs.json
}

# analyzer-athena.
data "aws_iam_policy_document" "athena" {
  statement {
    sid    = "AnalyzerAthena"
    effect = "Allow"
    actions = [
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:StartQueryExecution",
    ]
    resources = ["arn:${local.partition}:athena:${local.region}:${local.account}:workgroup/${var.athena_work_group}"]
  }
  statement {
    sid     = "AnalyzerAthenaCatalog"
    effect  = "Allow"
    actions = ["glue:GetDatabase", "glue:GetPartitions", "glue:GetTable"]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account}:catalog",
      "arn:${local.partition}:glue:${local.region}:${local.account}:database/${var.glue_database}",
      "arn:${local.partition}:glue:${local.region}:${local.account}:table/${var.glue_database}/*",
    ]
  }
  statement {
    sid    = "AnalyzerAthenaResults"
    effect = "Allow"
    actions = [
      "s3:GetBucketLocation",
      "s3:GetObject",
      "s3:ListBucket",
      "s3:PutObject",
    ]
    resources = [
      "arn:${local.partition}:s3:::${var.athena_results_bucket}",
      "arn:${local.partition}:s3:::${var.athena_results_bucket}/*",
    ]
  }
}

resource "aws_iam_role_policy" "athena" {
  count  = local.athena ? 1 : 0
  name   = "autoguardrails-analyzer-athena"
  role   = aws_iam_role.analyzer.id
  policy = data.aws_iam_policy_document.athena.json
}

# analyzer-model.
data "aws_iam_policy_document" "model" {
  statement {
    sid       = "AnalyzerModel"
    effect    = "Allow"
    actions   = ["bedrock:InvokeModel"]
    resources = length(var.bedrock_model_arns) > 0 ? var.bedrock_model_arns : ["arn:${local.partition}:bedrock:${local.region}::foundation-model/none"]
  }
}

resource "aws_iam_role_policy" "model" {
  count  = length(var.bedrock_model_arns) > 0 ? 1 : 0
  name   = "autoguardrails-analyzer-model"
  role   = aws_iam_role.analyzer.id
  policy = data.aws_iam_policy_document.model.json
}
