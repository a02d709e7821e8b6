//! Part 1, the cost-guardrail controller: GuardrailPolicy and Quarantine, cost signals in, a
//! time-boxed IAM deny out. The pure core (`crd`, `policy`, `lifecycle`, `enforce` planning and
//! documents, `signal` parsing and verification) has no async and no I/O; the adapters
//! (`reconcile` on kube-runtime, `endpoints` for `/sns` and `/events`, `intake`, `poller`,
//! `leader`, `notify`) do the I/O. Wiring lives in `crate::cli::controller_command`. It must not
//! reach into the other parts (`crate::gate`, `crate::analyze`); shared pieces live at the crate root.

pub mod admission;
pub mod audit;
pub mod clock;
pub mod crd;
pub mod endpoints;
pub mod enforce;
pub mod events;
pub mod intake;
pub mod leader;
pub mod lifecycle;
pub mod notify;
pub mod policy;
pub mod poller;
pub mod reconcile;
pub mod resolver;
pub mod signal;
pub mod simulate;
pub mod slack;
pub mod velocity;
