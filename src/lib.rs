//! AutoGuardRails: guardrails for AWS that platform, SRE and FinOps teams can run in `Auto` mode.
//!
//! One binary, three parts, each a top-level module with a pure core and thin adapters:
//! - [`controller`]: cost signals → time-boxed, audited IAM deny quarantines (Kubernetes).
//! - [`gate`]: the CI deployment gate (SLO health and observed spend → ALLOW/WARN/DELAY/BLOCK).
//! - `analyze`: least-privilege IAM policies from CloudTrail usage, and `propose` as a pull request.
//!
//! Shared by every part, and never copied: [`principal`] (the one IAM principal identity and
//! matcher), [`aws`] (narrow AWS traits, the client factory, SDK and in-memory implementations),
//! [`http`] (the hardened listener and operations routes), [`metrics`], [`config`] (configuration
//! loading), [`shutdown`]; [`cli`] wires a part to its adapters.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod principal;
pub mod shutdown;
