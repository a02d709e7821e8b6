//! Enforcement: the pure IAM deny document builder, and (built on the AWS traits) the plan and
//! converge loop that keeps deny attachments equal to the desired state.

pub mod boundary;
pub mod converge;
pub mod document;
pub mod ownership;
pub mod plan;
pub mod recorder;
pub mod trigger;
