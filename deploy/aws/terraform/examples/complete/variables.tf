variable "controller_endpoint_url" {
  description = "https://<chart ingress host> (aws-setup prints it)."
  type        = string
}

variable "events_api_key_header" {
  description = "Header of the /events API key (aws-setup prints it)."
  type        = string
  default     = "x-api-key"
}

variable "oidc_issuer_url" {
  description = "The cluster's OIDC issuer URL."
  type        = string
}

variable "service_account_namespace" {
  description = "The chart's release namespace (aws-setup prints it)."
  type        = string
}

variable "service_account_name" {
  description = "The chart's ServiceAccount (aws-setup prints it)."
  type        = string
}

variable "read_only" {
  description = "No IAM write permission at all."
  type        = bool
  default     = false
}

variable "protected_principal_arns" {
  description = "The chart's controller.protectedPrincipals."
  type        = list(string)
  default     = []
}

variable "enable_anomaly_poller" {
  description = "The chart's controller.config.poller.monitorArns is set."
  type        = bool
  default     = false
}

variable "audit_table_name" {
  description = "The chart's controller.config.audit.table: the DynamoDB audit table (created here); empty for none."
  type        = string
  default     = ""
}

variable "budget_limit_usd" {
  description = "Monthly USD budget; 0 creates none."
  type        = number
  default     = 0
}

variable "target_account_admin_role_arn" {
  description = "A role in the target account Terraform may use to create the enforcer role; empty for one account."
  type        = string
  default     = ""
}

variable "external_id" {
  description = "External id of the target-account role (controller config aws.accounts.<id>.externalId)."
  type        = string
  default     = "replace-with-a-random-id"
  sensitive   = true
}

variable "analyzer_trusted_principal_arns" {
  description = "Principals that may run analyze; empty creates no analyzer role."
  type        = list(string)
  default     = []
}
