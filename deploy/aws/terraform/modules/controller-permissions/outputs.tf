output "policy_names" {
  description = "The inline policies put on the role"
  value = concat(
    [aws_iam_role_policy.read.name],
    aws_iam_role_policy.write[*].name,
    aws_iam_role_policy.inline[*].name,
    aws_iam_role_policy.protected[*].name,
  )
}
