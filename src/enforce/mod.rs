//! Enforcement: the pure IAM deny document builder, and (built on the AWS traits) the plan and
//! converge loop that keeps deny attachments equal to the desired state.

pub mod document;
