//! The approval webhook (decisions 211-212): who may approve, reject or extend a Quarantine is
//! checked by the API server's authorizer (a SubjectAccessReview for the `approve` verb) when the
//! annotation is written, and the verified identity is stamped next to it, signed, so the
//! reconcile records the person the API server authenticated, not what the annotation claims.
//! `review` and `stamp` are the pure core; `server` holds the adapters. Release never passes
//! through here (it must keep working when the webhook is down).

pub mod review;
pub mod server;
pub mod stamp;

pub use stamp::{Identity, StampKey};
