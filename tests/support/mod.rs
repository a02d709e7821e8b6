//! Test support shared by the test binaries: emulator harnesses, moto, promtool, the Slack
//! receiver, SNS signing, fixtures. Each binary uses a part of it.
#![allow(dead_code)]

pub mod audit;
pub mod binary;
pub mod controller;
pub mod fault_proxy;
pub mod fixtures;
pub mod invariants;
pub mod moto;
pub mod promtool;
pub mod quarantines;
pub mod rbac;
pub mod slack_receiver;
pub mod sns_signing;
