//! AutoGuardRails: turns AWS cost signals into time-boxed, audited IAM deny quarantines.
#![forbid(unsafe_code)]
pub mod aws;
pub mod enforce;
