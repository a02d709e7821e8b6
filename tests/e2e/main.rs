//! End to end: the real `autoguardrails` binary as a user runs it (config file, env, kubectl,
//! the emulator, moto, a Slack receiver), the example policies, the Helm chart, and the AWS
//! templates (deploy/aws).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod approval_webhook;
mod audit_binary;
mod aws_templates;
mod boundary_binary;
mod chart;
mod controller_binary;
mod controller_cli;
mod dashboard;
mod drift_binary;
mod notify_only_binary;
mod policies;
mod principal_identity;
mod selectors_binary;
mod signal_cli;
mod slack_interactions;
mod sns_pinned_binary;
mod velocity_binary;
mod weekly_windows_binary;
