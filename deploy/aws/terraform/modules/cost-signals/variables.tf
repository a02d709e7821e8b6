variable "controller_endpoint_url" {
  description = "Base URL of the chart's Ingress (https://host, no path); autoguardrails aws-setup prints it."
  type        = string
  validation {
    condition     = can(regex("^https://[^/]+$", var.controller_endpoint_url))
    error_message = "controller_endpoint_url must be https://host without a path."
  }
}

variable "topic_name" {
  description = "Name of the SNS topic."
  type        = string
  default     = "autoguardrails-cost-signals"
}

variable "use_kms_key" {
  description = "Encrypt the topic with a customer managed key that Budgets and Cost Anomaly Detection may use."
  type        = bool
  default     = false
}

variable "budget_limit_usd" {
  description = "Monthly USD cost budget with 80 % actual and 100 % forecasted notifications to the topic; 0 creates none."
  type        = number
  default     = 0
}

variable "budget_name" {
  description = "Name of the budget."
  type        = string
  default     = "autoguardrails-monthly"
}

variable "anomaly_monitor_arn" {
  description = "An existing Cost Anomaly Detection monitor to subscribe; empty creates a per-service monitor."
  type        = string
  default     = ""
}

variable "anomaly_threshold_usd" {
  description = "Smallest anomaly impact (USD) sent; at or below the lowest minImpactUsd of your policies."
  type        = number
  default     = 100
}

variable "enable_events" {
  description = "Deliver anomaly events through EventBridge to /events as well."
  type        = bool
  default     = true
}

variable "events_api_key_header" {
  description = "Header carrying the /events API key (controller signals.events.apiKeyHeader)."
  type        = string
  default     = "x-api-key"
}

variable "enable_velocity_events" {
  description = "Also send the CloudTrail calls that start or stop spend to /events for the spend-velocity signal (controller velocity.enabled); CloudTrail events reach the default bus of the region of the call."
  type        = bool
  default     = false
}

variable "enable_iam_change_events" {
  description = "Also send CloudTrail events of IAM policy and permissions-boundary changes to /events (the controller checks the quarantines they touch at once; IAM events are delivered in us-east-1)."
  type        = bool
  default     = false
}
