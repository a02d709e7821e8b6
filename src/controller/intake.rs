//! The one entry point every signal path (`/sns`, `/events`, the poller, the demo) hands a
//! normalised `CostSignal` to. The trait is what the HTTP handlers depend on; the implementation
//! that evaluates policies and creates Quarantines is `controller::intake::Intake`. It must not
//! parse payloads or verify signatures (that happens before) and must not touch AWS.

use async_trait::async_trait;

use crate::controller::signal::CostSignal;

/// What happened to a signal for one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub policy: String,
    /// The evaluation reason (a `policy::REASON_*` constant, e.g. `QuarantineCreated`).
    pub reason: String,
    /// The Quarantine the decision refers to (created, or already there), if any.
    pub quarantine: Option<String>,
    /// True when this call created the Quarantine (false when it already existed).
    pub created: bool,
}

/// The result of handing one signal to intake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntakeReport {
    /// One entry per policy that watches the signal's source, account, service and budget, with
    /// the reason of its decision (so a person can see why nothing happened).
    pub outcomes: Vec<PolicyOutcome>,
    /// How many policies do not watch the signal at all and were passed over without an entry
    /// (their reasons are in the debug log; decision 147).
    pub passed_over: usize,
}

impl IntakeReport {
    /// Quarantines created by this call.
    pub fn created(&self) -> impl Iterator<Item = &PolicyOutcome> {
        self.outcomes.iter().filter(|o| o.created)
    }

    /// How many policies answered: those with an outcome and those passed over.
    pub fn policies(&self) -> usize {
        self.outcomes.len() + self.passed_over
    }

    /// True when at least one policy matched (created or found its Quarantine).
    pub fn matched(&self) -> bool {
        self.outcomes.iter().any(|o| o.quarantine.is_some())
    }
}

/// Why intake did not finish.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IntakeError {
    /// The signal itself is unusable and never will be (fails `CostSignal::validate`).
    #[error("signal rejected: {0}")]
    Invalid(String),
    /// Kubernetes (or the controller) failed for a reason that may pass: the caller should make
    /// the sender retry (HTTP 5xx). Nothing was half-done: a retry is idempotent.
    #[error("signal intake failed, retry later: {0}")]
    Transient(String),
    /// The controller is not ready to take signals (caches not synced, shutting down).
    #[error("signal intake unavailable: {0}")]
    Unavailable(String),
}

impl IntakeError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            IntakeError::Invalid(_) => "invalid",
            IntakeError::Transient(_) => "transient",
            IntakeError::Unavailable(_) => "unavailable",
        }
    }
}

/// Takes a normalised signal and returns once every resulting Quarantine exists.
#[async_trait]
pub trait SignalIntake: Send + Sync {
    /// Evaluates `signal` against every policy and creates the Quarantines it calls for.
    /// Idempotent: the same signal again creates nothing and reports the existing Quarantines.
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError>;
}
