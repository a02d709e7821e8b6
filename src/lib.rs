//! AutoGuardRails: turns AWS cost signals into time-boxed, audited IAM deny quarantines.
#![forbid(unsafe_code)]

pub mod cli;
pub mod crd;
pub mod enforce;
pub mod policy;
pub mod signal;
pub mod simulate;
