output "role_arn" {
  description = "Chart value serviceAccount.irsaRoleArn (and controller_role_arn of target-account-role)"
  value       = aws_iam_role.controller.arn
}

output "role_name" {
  description = "The controller role's name"
  value       = aws_iam_role.controller.name
}

output "service_account_subject" {
  description = "The only web identity the role trusts"
  value       = "system:serviceaccount:${var.service_account_namespace}:${var.service_account_name}"
}
