output "role_arn" {
  description = "The role analyze runs with (AWS_ROLE_ARN / profile role_arn)"
  value       = aws_iam_role.analyzer.arn
}
