variable "controller_role_arn" {
  description = "The controller role (role_arn output of controller-role) allowed to assume this role."
  type        = string
}

variable "external_id" {
  description = "The external id the controller sends (controller config aws.accounts.<id>.externalId)."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.external_id) >= 8
    error_message = "external_id must be at least 8 characters."
  }
}

variable "role_name" {
  description = "Same name in every account, so one ARN pattern covers all of them."
  type        = string
  default     = "autoguardrails-enforcer"
}

variable "read_only" {
  description = "Grant only the read set."
  type        = bool
  default     = false
}

variable "enable_inline_fallback" {
  description = "Grant Put/Delete of inline policies."
  type        = bool
  default     = true
}

variable "principal_path_prefix" {
  description = "IAM path of the roles and users a quarantine may target; others cannot be touched."
  type        = string
  default     = "/"
}

variable "protected_principal_arns" {
  description = "Role/user ARNs in this account the controller must never attach to or detach from."
  type        = list(string)
  default     = []
}
