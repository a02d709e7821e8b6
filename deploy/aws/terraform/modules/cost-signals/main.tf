# Cost signals, as ../../../cloudformation/cost-signals.yaml: apply with a us-east-1 provider in
# the payer/management account (where Budgets and Cost Anomaly Detection publish).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account     = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  region      = data.aws_region.current.name
  monitor_arn = var.anomaly_monitor_arn != "" ? var.anomaly_monitor_arn : one(aws_ce_anomaly_monitor.services[*].arn)
}

data "aws_iam_policy_document" "key" {
  statement {
    sid       = "AccountAdministers"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "CostServicesPublish"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["budgets.amazonaws.com", "costalerts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "signals" {
  count               = var.use_kms_key ? 1 : 0
  description         = "AutoGuardRails cost signals topic"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}

resource "aws_sns_topic" "signals" {
  name              = var.topic_name
  kms_master_key_id = one(aws_kms_key.signals[*].arn)
  tags = {
    "autoguardrails.io/component" = "cost-signals"
  }
}

data "aws_iam_policy_document" "topic" {
  statement {
    sid       = "Budgets"
    effect    = "Allow"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.signals.arn]
    principals {
      type        = "Service"
      identifiers = ["budgets.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
  statement {
    sid       = "CostAnomalyDetection"
    effect    = "Allow"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.signals.arn]
    principals {
      type        = "Service"
      identifiers = ["costalerts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_sns_topic_policy" "signals" {
  arn    = aws_sns_topic.signals.arn
  policy = data.aws_iam_policy_document.topic.json
}

# The controller verifies the SubscriptionConfirmation's signature and confirms it when the topic
# is in signals.sns.allowedTopics.
resource "aws_sns_topic_subscription" "controller" {
  topic_arn              = aws_sns_topic.signals.arn
  protocol               = "https"
  endpoint               = "${var.controller_endpoint_url}/sns"
  endpoint_auto_confirms = true
}

resource "aws_budgets_budget" "monthly" {
  count        = var.budget_limit_usd > 0 ? 1 : 0
  name         = var.budget_name
  budget_type  = "COST"
  time_unit    = "MONTHLY"
  limit_amount = tostring(var.budget_limit_usd)
  limit_unit   = "USD"

  notification {
    notification_type         = "ACTUAL"
    comparison_operator       = "GREATER_THAN"
    threshold                 = 80
    threshold_type            = "PERCENTAGE"
    subscriber_sns_topic_arns = [aws_sns_topic.signals.arn]
  }

  notification {
    notification_type         = "FORECASTED"
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    subscriber_sns_topic_arns = [aws_sns_topic.signals.arn]
  }
}

resource "aws_ce_anomaly_monitor" "services" {
  count             = var.anomaly_monitor_arn == "" ? 1 : 0
  name              = "autoguardrails-services"
  monitor_type      = "DIMENSIONAL"
  monitor_dimension = "SERVICE"
}

resource "aws_ce_anomaly_subscription" "signals" {
  name             = "autoguardrails"
  frequency        = "IMMEDIATE"
  monitor_arn_list = [local.monitor_arn]

  subscriber {
    type    = "SNS"
    address = aws_sns_topic.signals.arn
  }

  threshold_expression {
    dimension {
      key           = "ANOMALY_TOTAL_IMPACT_ABSOLUTE"
      values        = [tostring(var.anomaly_threshold_usd)]
      match_options = ["GREATER_THAN_OR_EQUAL"]
    }
  }

  depends_on = [aws_sns_topic_policy.signals]
}

# The /events API key: generated here, read by EventBridge through the connection, and copied
# once into the chart's Secret (signals.events.apiKeySecret); see docs/aws-setup.md.
# Secrets Manager generates the key (as GenerateSecretString does in the template); the version
# keeps the first one, so a new plan does not rotate it.
data "aws_secretsmanager_random_password" "events_api_key" {
  count               = var.enable_events ? 1 : 0
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "events_api_key" {
  count       = var.enable_events ? 1 : 0
  name_prefix = "autoguardrails-events-api-key-"
  description = "API key for the AutoGuardRails /events endpoint"
}

resource "aws_secretsmanager_secret_version" "events_api_key" {
  count         = var.enable_events ? 1 : 0
  secret_id     = aws_secretsmanager_secret.events_api_key[0].id
  secret_string = data.aws_secretsmanager_random_password.events_api_key[0].random_password
  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_cloudwatch_event_connection" "events" {
  count              = var.enable_events ? 1 : 0
  name               = "autoguardrails-events"
  description        = "AutoGuardRails /events API key"
  authorization_type = "API_KEY"
  auth_parameters {
    api_key {
      key   = var.events_api_key_header
      value = aws_secretsmanager_secret_version.events_api_key[0].secret_string
    }
  }
}

resource "aws_cloudwatch_event_api_destination" "events" {
  count                            = var.enable_events ? 1 : 0
  name                             = "autoguardrails-events"
  description                      = "AutoGuardRails /events"
  connection_arn                   = aws_cloudwatch_event_connection.events[0].arn
  invocation_endpoint              = "${var.controller_endpoint_url}/events"
  http_method                      = "POST"
  invocation_rate_limit_per_second = 10
}

data "aws_iam_policy_document" "events_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

data "aws_iam_policy_document" "events_invoke" {
  statement {
    sid       = "InvokeEventsEndpoint"
    effect    = "Allow"
    actions   = ["events:InvokeApiDestination"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account}:api-destination/*"]
  }
}

resource "aws_iam_role" "events_invoke" {
  count              = var.enable_events ? 1 : 0
  name_prefix        = "autoguardrails-events-"
  assume_role_policy = data.aws_iam_policy_document.events_trust.json
}

resource "aws_iam_role_policy" "events_invoke" {
  count  = var.enable_events ? 1 : 0
  name   = "invoke-autoguardrails-events"
  role   = aws_iam_role.events_invoke[0].id
  policy = data.aws_iam_policy_document.events_invoke.json
}

resource "aws_cloudwatch_event_rule" "anomalies" {
  count       = var.enable_events ? 1 : 0
  name        = "autoguardrails-anomalies"
  description = "Cost Anomaly Detection events to the AutoGuardRails /events endpoint"
  event_pattern = jsonencode({
    source        = ["aws.ce"]
    "detail-type" = ["Anomaly Detected"]
  })
}

resource "aws_cloudwatch_event_target" "anomalies" {
  count    = var.enable_events ? 1 : 0
  rule     = aws_cloudwatch_event_rule.anomalies[0].name
  arn      = aws_cloudwatch_event_api_destination.events[0].arn
  role_arn = aws_iam_role.events_invoke[0].arn
}

resource "aws_cloudwatch_event_rule" "iam_changes" {
  count       = var.enable_events && var.enable_iam_change_events ? 1 : 0
  name        = "autoguardrails-iam-changes"
  description = "CloudTrail IAM policy changes to the AutoGuardRails /events endpoint"
  event_pattern = jsonencode({
    source        = ["aws.iam"]
    "detail-type" = ["AWS API Call via CloudTrail"]
    detail = {
      eventSource = ["iam.amazonaws.com"]
      eventName = [
        "CreatePolicyVersion",
        "DeletePolicy",
        "DeletePolicyVersion",
        "DeleteRolePermissionsBoundary",
        "DeleteRolePolicy",
        "DeleteUserPermissionsBoundary",
        "DeleteUserPolicy",
        "DetachRolePolicy",
        "DetachUserPolicy",
        "PutRolePermissionsBoundary",
        "PutRolePolicy",
        "PutUserPermissionsBoundary",
        "PutUserPolicy",
        "SetDefaultPolicyVersion",
      ]
    }
  })
}

resource "aws_cloudwatch_event_target" "iam_changes" {
  count    = var.enable_events && var.enable_iam_change_events ? 1 : 0
  rule     = aws_cloudwatch_event_rule.iam_changes[0].name
  arn      = aws_cloudwatch_event_api_destination.events[0].arn
  role_arn = aws_iam_role.events_invoke[0].arn
}

resource "aws_cloudwatch_event_rule" "velocity_events" {
  count       = var.enable_events && var.enable_velocity_events ? 1 : 0
  name        = "autoguardrails-velocity"
  description = "CloudTrail calls that start or stop spend, to the AutoGuardRails /events endpoint (velocity)"
  event_pattern = jsonencode({
    source        = ["aws.ec2", "aws.rds", "aws.eks", "aws.sagemaker"]
    "detail-type" = ["AWS API Call via CloudTrail"]
    detail = {
      eventSource = [
        "ec2.amazonaws.com",
        "rds.amazonaws.com",
        "eks.amazonaws.com",
        "sagemaker.amazonaws.com",
      ]
      eventName = [
        "RunInstances",
        "TerminateInstances",
        "CreateNatGateway",
        "DeleteNatGateway",
        "CreateDBInstance",
        "DeleteDBInstance",
        "CreateCluster",
        "DeleteCluster",
        "CreateTrainingJob",
        "StopTrainingJob",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "DeleteEndpoint",
      ]
    }
  })
}

resource "aws_cloudwatch_event_target" "velocity_events" {
  count    = var.enable_events && var.enable_velocity_events ? 1 : 0
  rule     = aws_cloudwatch_event_rule.velocity_events[0].name
  arn      = aws_cloudwatch_event_api_destination.events[0].arn
  role_arn = aws_iam_role.events_invoke[0].arn
}
