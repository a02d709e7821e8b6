//! The spend-velocity signal source (issue 26): CloudTrail management events that start or stop
//! spending ("AWS API Call via CloudTrail" through EventBridge, on `/events` or via SNS), priced
//! against a vendored, dated on-demand price snapshot, summed per account and principal into a
//! committed hourly burn, and turned into `Velocity` `CostSignal`s that policies match like any
//! other source.
//!
//! The pure core is [`pricing`] (the snapshot), [`event`] (reading one CloudTrail event) and
//! [`estimator`] (burn, idempotency, out-of-order handling, crossings); [`tracker`] is the thin
//! adapter that holds the estimator for the HTTP handlers and keeps its state in a file
//! across restarts (decisions 170–177).

pub mod estimator;
pub mod event;
pub mod pricing;
pub mod tracker;

pub use estimator::{Burn, Estimator, Ignored, Observation, Outcome, Settings};
pub use event::{Call, EventError};
pub use pricing::{PriceError, PriceTable};
pub use tracker::{Tracker, VelocitySettings};
