//! The audit flusher (decision 222): on the leader only, every `flushInterval` it sends the
//! unflushed entries of every cached Quarantine to the audit store (idempotent appends), then
//! removes them from status with a resourceVersion-guarded write; while the store fails it backs
//! off (doubling, at most `maxBackoff`). After a restart or a leader change the entries are still
//! in status, so the new leader resumes. Also the bounded wait of a deleted Quarantine's
//! finalizer. It must never be awaited by an enforcement or release step.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::watch;

use super::{backlog, flushed, pending, records};
use crate::audit::{AuditError, AuditSink};
use crate::controller::crd::Quarantine;
use crate::controller::reconcile::quarantine::{FOREIGN_STATUS_FIELDS, cluster_of};
use crate::controller::reconcile::{Error, Shared, patch_status};

/// Event reason: a deleted Quarantine's records were not stored within the bounded wait.
pub const REASON_AUDIT_FLUSH_ABANDONED: &str = "AuditFlushAbandoned";
/// Event reason: the audit store refused or could not be reached.
pub const REASON_AUDIT_FLUSH_FAILED: &str = "AuditFlushFailed";

/// Tells the Quarantine controller whether an object changed in anything but `status.audit`
/// (and its resourceVersion): the flusher's own writes then wake no reconcile. Keeps one
/// fingerprint per uid of an object not yet settled (dropped when the object settles).
#[derive(Clone, Default)]
pub struct AuditBlind {
    seen: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl AuditBlind {
    /// False for a settled object (forgotten) and for one whose only change since the last
    /// object seen with its uid is in `status.audit`; true otherwise.
    pub fn live_and_changed(&self, q: &Quarantine) -> bool {
        let uid = q.uid().unwrap_or_default();
        if crate::controller::reconcile::ended::settled(q) {
            if let Ok(mut seen) = self.seen.lock() {
                seen.remove(&uid);
            }
            return false;
        }
        let mut copy = q.clone();
        copy.metadata.resource_version = None;
        copy.metadata.managed_fields = None;
        if let Some(status) = copy.status.as_mut() {
            status.audit = None;
        }
        let Ok(bytes) = serde_json::to_vec(&copy) else {
            return true;
        };
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        };
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        seen.insert(uid, fingerprint) != Some(fingerprint)
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(ctx: Arc<Shared>, shutdown: &mut watch::Receiver<bool>) {
    let Some(sink) = ctx.settings.audit.sink.clone() else {
        return;
    };
    tokio::select! {
        _ = ctx.stores.wait_ready() => {}
        _ = shutdown.changed() => return,
    }
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = match flush_once(&ctx, sink.as_ref()).await {
            Ok(_) => {
                failures = 0;
                ctx.settings.audit.flush_interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(
                    ctx.settings.audit.flush_interval,
                    ctx.settings.audit.max_backoff,
                    failures,
                );
                tracing::warn!(error = %e, category = e.category(), retry_in = ?wait, "audit flush failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The wait after `failures` failed rounds: the interval doubled per failure, at most `max`.
pub fn backoff(interval: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval.saturating_mul(factor).min(max.max(interval))
}

/// One round over the cache: the backlog metrics, then every Quarantine with unflushed entries.
/// Returns how many records were stored; the first store error ends the round.
pub async fn flush_once(ctx: &Shared, sink: &dyn AuditSink) -> Result<usize, AuditError> {
    // The controller's own outbox first (decision 225); its backlog counts with the others'.
    let mut stored = 0;
    let mut own: (usize, Option<Timestamp>) = (0, None);
    // Each store waits (at most a flush interval) for no signal or Quarantine reconcile to be
    // running, so flushing does not add to the enforcement path's latency; once a wait runs out
    // the controller is busy and the rest of the round goes on without waiting (decision 244).
    let mut patience = ctx
        .stores
        .in_flight()
        .patience(ctx.settings.audit.flush_interval);
    if let Some(outbox) = &ctx.settings.audit.controller {
        patience.wait().await;
        match outbox.flush(sink).await {
            Ok((done, left, oldest)) => {
                stored += done;
                own = (left, oldest);
            }
            Err(e) => {
                if let Ok(records) = outbox.pending().await {
                    own = (records.len(), records.iter().map(|r| r.recorded_at).min());
                }
                let quarantines = ctx.stores.quarantines();
                set_backlog(ctx, quarantines.iter().map(|q| q.as_ref()), own);
                return Err(e);
            }
        }
    }
    let quarantines = ctx.stores.quarantines();
    let waiting: Vec<&Arc<Quarantine>> = quarantines
        .iter()
        .filter(|q| !pending(q.status.as_ref()).is_empty())
        .collect();
    set_backlog(ctx, waiting.iter().map(|q| q.as_ref()), own);
    let mut from_quarantines = 0;
    for q in waiting {
        patience.wait().await;
        from_quarantines += flush_quarantine(ctx, sink, q).await?;
    }
    if from_quarantines > 0 {
        let quarantines = ctx.stores.quarantines();
        set_backlog(ctx, quarantines.iter().map(|q| q.as_ref()), own);
    }
    Ok(stored + from_quarantines)
}

fn set_backlog<'a>(
    ctx: &Shared,
    quarantines: impl IntoIterator<Item = &'a Quarantine>,
    own: (usize, Option<Timestamp>),
) {
    let (count, oldest) = backlog(quarantines);
    let count = count + own.0;
    let oldest = match (oldest, own.1) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    ctx.metrics.audit_backlog_records.set(count as i64);
    let age = oldest.map_or(0, |t| Timestamp::now().duration_since(t).as_secs().max(0));
    ctx.metrics.audit_backlog_oldest_seconds.set(age);
}

/// Stores `q`'s unflushed records, then removes them from its status (a conflict or a deleted
/// object leaves them for the next round: storing again is a no-op).
pub async fn flush_quarantine(
    ctx: &Shared,
    sink: &dyn AuditSink,
    q: &Quarantine,
) -> Result<usize, AuditError> {
    let records = records(q, &cluster_of(q, ctx));
    let Some(below) = records.iter().map(|r| r.sequence + 1).max() else {
        return Ok(0);
    };
    let done = match sink.append(&records).await {
        Ok(done) => done,
        Err(e) => {
            ctx.metrics
                .audit_records
                .with_label_values(&["failed"])
                .inc_by(records.len() as u64);
            return Err(e);
        }
    };
    ctx.metrics
        .audit_records
        .with_label_values(&["written"])
        .inc_by(done.written as u64);
    ctx.metrics
        .audit_records
        .with_label_values(&["duplicate"])
        .inc_by(done.duplicates as u64);
    let old = q.status.clone().unwrap_or_default();
    let mut new = old.clone();
    new.audit = old.audit.as_ref().map(|a| flushed(a, below));
    let Some(ns) = q.namespace() else {
        return Ok(records.len());
    };
    let api: Api<Quarantine> = Api::namespaced(ctx.client.clone(), &ns);
    match patch_status(&api, q, &old, &new, FOREIGN_STATUS_FIELDS).await {
        Ok(_) => {}
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 || s.code == 404 => {
            tracing::debug!(quarantine = %q.name_any(), code = s.code, "audit outbox changed meanwhile; next round");
        }
        Err(e) => {
            tracing::warn!(quarantine = %q.name_any(), error = %e, "failed to remove flushed audit entries from status");
        }
    }
    Ok(records.len())
}

/// The finalizer's bounded wait: stores a deleted Quarantine's unflushed records (from the status
/// just written). `Err(AuditPending)` holds the finalizer for a retry; past `deletionWait` since
/// the deletion it gives up with a Warning Event and lets the object go.
pub async fn flush_before_deletion(ctx: &Shared, q: &Quarantine) -> Result<(), Error> {
    let Some(sink) = ctx.settings.audit.sink.clone() else {
        return Ok(());
    };
    let count = pending(q.status.as_ref()).len();
    if count == 0 {
        return Ok(());
    }
    match flush_quarantine(ctx, sink.as_ref(), q).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let deleted_at = q
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(Timestamp::now);
            let waited = Timestamp::now().duration_since(deleted_at);
            let limit = jiff::SignedDuration::try_from(ctx.settings.audit.deletion_wait)
                .unwrap_or(jiff::SignedDuration::from_secs(300));
            if waited < limit {
                ctx.publish(
                    q,
                    true,
                    REASON_AUDIT_FLUSH_FAILED,
                    "Audit",
                    format!("{count} audit records not stored yet, the deletion waits: {e}"),
                )
                .await;
                return Err(Error::AuditPending(e.to_string()));
            }
            ctx.metrics
                .audit_records
                .with_label_values(&["abandoned"])
                .inc_by(count as u64);
            tracing::error!(quarantine = %q.name_any(), records = count, error = %e, "audit records of a deleted quarantine abandoned after the bounded wait");
            ctx.publish(
                q,
                true,
                REASON_AUDIT_FLUSH_ABANDONED,
                "Audit",
                format!("{count} audit records were not stored within the deletion wait and are lost from the audit store: {e}"),
            )
            .await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(2), s(60), 1), s(4));
        assert_eq!(backoff(s(2), s(60), 3), s(16));
        assert_eq!(backoff(s(2), s(60), 30), s(60));
    }
}
