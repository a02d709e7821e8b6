output "topic_arn" {
  description = "Chart value controller.config.signals.sns.allowedTopics[0]"
  value       = aws_sns_topic.signals.arn
}

output "kms_key_arn" {
  description = "The topic's key, when use_kms_key"
  value       = one(aws_kms_key.signals[*].arn)
}

output "anomaly_monitor_arn" {
  description = "Optional chart value controller.config.poller.monitorArns[0]"
  value       = local.monitor_arn
}

output "events_api_key_secret_arn" {
  description = "Copy its value into the chart's signals.events.apiKeySecret"
  value       = one(aws_secretsmanager_secret.events_api_key[*].arn)
}
