variable "oidc_issuer_url" {
  description = "The cluster's OIDC issuer URL (https://oidc.eks.REGION.amazonaws.com/id/ID); its IAM OIDC provider must exist."
  type        = string
  validation {
    condition     = can(regex("^https://[^/]+(/.+)?$", var.oidc_issuer_url))
    error_message = "oidc_issuer_url must be an https URL."
  }
}

variable "service_account_namespace" {
  description = "The chart's release namespace (autoguardrails aws-setup prints it)."
  type        = string
  default     = "autoguardrails"
}

variable "service_account_name" {
  description = "The chart's ServiceAccount (autoguardrails aws-setup prints it)."
  type        = string
  default     = "agr-autoguardrails"
}

variable "role_name" {
  description = "Name of the controller role (denied to the controller itself)."
  type        = string
  default     = "autoguardrails-controller"
}

variable "read_only" {
  description = "Grant only the read set: no IAM write at all."
  type        = bool
  default     = false
}

variable "enable_inline_fallback" {
  description = "Grant Put/Delete of inline policies (the fallback when a principal's managed-policy quota is full)."
  type        = bool
  default     = true
}

variable "principal_path_prefix" {
  description = "IAM path of the roles and users a quarantine may target (e.g. /ci/); others cannot be touched."
  type        = string
  default     = "/"
}

variable "protected_principal_arns" {
  description = "Role/user ARNs the controller must never attach to or detach from."
  type        = list(string)
  default     = []
}

variable "target_account_role_arns" {
  description = "Target-account roles the controller may assume; empty for one account."
  type        = list(string)
  default     = []
}

variable "enable_anomaly_poller" {
  description = "Grant ce:GetAnomalies (controller config poller.monitorArns)."
  type        = bool
  default     = false
}

variable "enable_organizations" {
  description = "Grant organizations:ListChildren and ListAccountsForParent (scope selectors with an organizationalUnit, read with the controller's own identity in a delegated administrator account)."
  type        = bool
  default     = false
}

variable "slack_webhook_parameter_arns" {
  description = "SSM parameter ARNs holding Slack webhook URLs the controller may read."
  type        = list(string)
  default     = []
}

variable "audit_table_name" {
  description = "The DynamoDB audit table (controller config audit.table); empty for no audit table."
  type        = string
  default     = ""
}

variable "create_audit_table" {
  description = "Create the audit table here (key pk/sk, index by-time, TTL expiresAt; docs/audit.md)."
  type        = bool
  default     = false
}
