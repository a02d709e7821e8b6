output "topic_arn" {
  description = "controller.config.signals.sns.allowedTopics[0]"
  value       = module.cost_signals.topic_arn
}

output "controller_role_arn" {
  description = "serviceAccount.irsaRoleArn"
  value       = module.controller_role.role_arn
}

output "events_api_key_secret_arn" {
  description = "Copy its value into the chart's signals.events.apiKeySecret"
  value       = module.cost_signals.events_api_key_secret_arn
}

output "target_account_role_arn" {
  description = "controller.config.aws.accounts.<id>.roleArn"
  value       = one(module.target_account_role[*].role_arn)
}

output "analyzer_role_arn" {
  description = "The role analyze runs with"
  value       = one(module.analyzer_role[*].role_arn)
}
