//! Conversion between the lifecycle [`State`] and the Quarantine's `status`. It reads and writes only
//! the lifecycle fields (phase, approval, activation, expiry, release, history) and must leave the
//! rest (targets, conditions, deny, observedGeneration) to their owners.

use super::{ReleaseReason, State};
use crate::controller::crd::QuarantineStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

impl State {
    /// Reads the lifecycle state from status; `None` when status has no phase yet (call `create`).
    ///
    /// Never fails, so a hand-edited status can still be released: an unknown `releaseReason` reads
    /// as none, and history is cut to the newest `MAX_HISTORY` entries.
    pub fn from_status(status: &QuarantineStatus) -> Option<State> {
        let phase = status.phase?;
        let time = |value: &Option<Time>| value.as_ref().map(|time| time.0);
        Some(State {
            phase,
            approved_by: status.approved_by.clone(),
            approved_at: time(&status.approved_at),
            rejected_by: status.rejected_by.clone(),
            rejected_at: time(&status.rejected_at),
            activated_at: time(&status.activated_at),
            expires_at: time(&status.expires_at),
            approval_deadline: time(&status.approval_deadline),
            released_at: time(&status.released_at),
            release_reason: status
                .release_reason
                .as_deref()
                .and_then(ReleaseReason::from_name),
            history: super::newest(status.history.clone()),
        })
    }

    /// Writes the lifecycle fields into `status`; returns true when anything changed (write only then).
    pub fn apply_to_status(&self, status: &mut QuarantineStatus) -> bool {
        let before = status.clone();
        let time = |value: Option<jiff::Timestamp>| value.map(Time);
        status.phase = Some(self.phase);
        status.approved_by = self.approved_by.clone();
        status.approved_at = time(self.approved_at);
        status.rejected_by = self.rejected_by.clone();
        status.rejected_at = time(self.rejected_at);
        status.activated_at = time(self.activated_at);
        status.expires_at = time(self.expires_at);
        status.approval_deadline = time(self.approval_deadline);
        status.released_at = time(self.released_at);
        status.release_reason = self
            .release_reason
            .map(|reason| reason.as_str().to_string());
        status.history = super::newest(self.history.clone());
        *status != before
    }
}
