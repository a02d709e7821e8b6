//! `autoguardrails analyze`: least-privilege IAM policies from real CloudTrail usage. A pure core
//! (records → usage → mapping → inference → evaluation against current permissions → generation →
//! guardrails → risk → rendering) with no async and no I/O, and thin adapters behind narrow traits
//! for the sources (CloudTrail Event History, S3 log files, local files, Athena), IAM reads, the
//! optional model and GitHub. The analyzer is read-only against AWS: no adapter has a write call.

pub mod catalog;
pub mod generate;
pub mod guardrails;
pub mod infer;
pub mod mapping;
pub mod permissions;
pub mod proposal;
pub mod reasoning;
pub mod record;
pub mod render;
pub mod risk;
pub mod usage;

pub mod athena;
pub mod bedrock;
pub mod cloudtrail;
pub mod files;
pub mod github;
pub mod iam;
pub mod s3;
