//! IAM enforcement: the pure planner, ownership rules, the converge loop over the IAM trait and
//! the dry-run/kill-switch write gate. It must not know about Kubernetes objects.

pub mod converge;
pub mod ownership;
pub mod plan;
pub mod recorder;
