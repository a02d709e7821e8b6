//! The gate's integration tests, one binary: a real Prometheus over backfilled blocks (shared by
//! every test), Cost Explorer through the real SDK against moto, the CLI through the real binary,
//! the HTTP API, the LLM explainer against a loopback stub, the audit log under concurrent
//! writers, rule tables and properties, and a comparison with Google's slo-generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod cli;
mod costexplorer;
mod data;
mod files;
mod llm;
#[path = "../support/moto.rs"]
mod moto;
mod prometheus;
mod rules;
mod serve;
mod slo_generator;
mod support;
