variable "trusted_principal_arns" {
  description = "Principals (e.g. the CI role that runs analyze) allowed to assume this role."
  type        = list(string)
}

variable "role_name" {
  description = "Name of the analyzer role."
  type        = string
  default     = "autoguardrails-analyzer"
}

variable "trail_bucket_name" {
  description = "Bucket holding CloudTrail log files (the s3 source); empty grants no S3 log read."
  type        = string
  default     = ""
}

variable "athena_work_group" {
  description = "Athena workgroup for the athena source; empty grants no Athena access."
  type        = string
  default     = ""
}

variable "athena_results_bucket" {
  description = "Bucket of the workgroup's query results (required with athena_work_group)."
  type        = string
  default     = ""
}

variable "glue_database" {
  description = "Glue database of the CloudTrail table."
  type        = string
  default     = "default"
}

variable "bedrock_model_arns" {
  description = "Foundation model ARNs for --model bedrock:...; empty grants none."
  type        = list(string)
  default     = []
}
