//! AutoGuardRails: turns AWS cost signals into time-boxed, audited IAM deny quarantines.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod aws;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod enforce;
pub mod http;
pub mod intake;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod poller;
pub mod principal;
pub mod shutdown;
pub mod signal;
pub mod simulate;
