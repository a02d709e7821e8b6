# One account (the payer account runs the cluster) plus one target account: the cost signals in
# us-east-1, the controller's IRSA role, a target-account role and the analyzer's role.
# `autoguardrails aws-setup --values my-values.yaml --format terraform > terraform.tfvars` writes
# the variables below from the chart values, so both installs line up.

provider "aws" {
  region = "us-east-1"
}

provider "aws" {
  alias  = "target"
  region = "us-east-1"
  assume_role {
    role_arn = var.target_account_admin_role_arn
  }
}

module "cost_signals" {
  source                  = "../../modules/cost-signals"
  controller_endpoint_url = var.controller_endpoint_url
  events_api_key_header   = var.events_api_key_header
  budget_limit_usd        = var.budget_limit_usd
}

module "controller_role" {
  source                    = "../../modules/controller-role"
  oidc_issuer_url           = var.oidc_issuer_url
  service_account_namespace = var.service_account_namespace
  service_account_name      = var.service_account_name
  read_only                 = var.read_only
  protected_principal_arns  = var.protected_principal_arns
  target_account_role_arns  = var.target_account_admin_role_arn == "" ? [] : ["arn:aws:iam::*:role/autoguardrails-enforcer"]
  enable_anomaly_poller     = var.enable_anomaly_poller
  audit_table_name          = var.audit_table_name
  create_audit_table        = var.audit_table_name != ""
}

module "target_account_role" {
  source              = "../../modules/target-account-role"
  count               = var.target_account_admin_role_arn == "" ? 0 : 1
  providers           = { aws = aws.target }
  controller_role_arn = module.controller_role.role_arn
  external_id         = var.external_id
  read_only           = var.read_only
}

module "analyzer_role" {
  source                 = "../../modules/analyzer-role"
  count                  = length(var.analyzer_trusted_principal_arns) > 0 ? 1 : 0
  trusted_principal_arns = var.analyzer_trusted_principal_arns
}
