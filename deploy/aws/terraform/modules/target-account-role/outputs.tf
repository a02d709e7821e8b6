output "role_arn" {
  description = "Controller config aws.accounts.<account id>.roleArn"
  value       = aws_iam_role.enforcer.arn
}
