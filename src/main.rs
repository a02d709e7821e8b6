//! The `autoguardrails` command line.
#![forbid(unsafe_code)]

fn main() {}
