variable "role_id" {
  description = "The role (id or name) that receives the policies."
  type        = string
}

variable "role_name" {
  description = "The role's name (the role is denied changes to itself)."
  type        = string
}

variable "read_only" {
  description = "Grant only the read set: no IAM write at all."
  type        = bool
}

variable "enable_inline_fallback" {
  description = "Grant Put/Delete of inline policies."
  type        = bool
}

variable "principal_path_prefix" {
  description = "IAM path of the roles and users a quarantine may target."
  type        = string
}

variable "protected_principal_arns" {
  description = "Role/user ARNs never attached to or detached from."
  type        = list(string)
}
