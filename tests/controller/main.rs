//! The controller's tests: the pure core, the controllers on the API emulator with in-memory IAM,
//! the AWS adapters against moto, the signal endpoints, Slack. One binary: the shared support
//! and the crate are linked once (decision 087).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod approval_webhook;
mod audit_outbox;
mod audit_request_ids;
mod audit_store;
mod aws_memory;
mod aws_sdk_moto;
mod boundary_crash;
mod controller_crash;
mod controller_faults;
mod controller_lifecycle;
mod controller_policy_rules;
mod controller_rbac;
mod crd_rules;
mod crds;
mod drift_events;
mod enforce_converge;
mod enforce_crash;
mod enforce_dryrun;
mod enforce_pipeline;
mod enforce_scope;
mod enforcement_first;
mod evaluate;
mod finalizer_migration;
mod leader;
mod notify_blocks;
mod notify_controller;
mod notify_slack;
mod notify_sources;
mod notify_web_api;
mod notify_worker;
mod ops_http;
mod poller_costexplorer;
mod rbac_checker;
mod release_failures;
mod retirement;
mod selectors_moto;
mod shutdown_signal;
mod signal_e2e;
mod signal_http;
mod signal_http_fuzz;
mod signal_https;
mod signal_keys_emulator;
mod signal_parse;
mod signal_pinning;
mod signal_sns;
mod slack_interactions;
