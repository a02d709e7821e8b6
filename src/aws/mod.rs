//! AWS access for the controller: narrow traits with exactly the IAM/STS calls used, the SDK
//! implementation, an in-memory implementation, and per-account client selection. It owns no
//! enforcement decisions (that is `crate::controller::enforce`) and must not know about Kubernetes.

pub mod costexplorer;
pub mod directory;
pub mod factory;
pub mod iam;
pub mod limits;
pub mod memory;
pub mod permissions;
pub mod ratelimit;
pub mod sdk;

pub use iam::{
    AccountSummary, AttachedPolicy, AwsError, AwsResult, CallerIdentity, ErrorCategory, ErrorCode,
    Iam, ManagedPolicy, Operation, PolicyEntities, PolicyVersion, PrincipalKind, PrincipalRef, Sts,
    Tag, TemporaryCredentials,
};
