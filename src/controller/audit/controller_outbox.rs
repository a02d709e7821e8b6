//! The controller's own audit outbox (decision 222, "Records not tied to a Quarantine"; decision
//! 225): records of decisions that leave no Quarantine history behind (a Slack click refused, a
//! signal that matched no policy) wait in one bounded ConfigMap in the controller's namespace
//! until the leader's flusher stores them, exactly like a Quarantine's `status.audit`. Any
//! replica appends (one writer task per process batches what callers hand it; every write is
//! guarded by the ConfigMap's resourceVersion); only the leader flushes. The pure part (numbering,
//! bounding, removing what was stored) is [`Outbox`]; [`ControllerOutbox`] is the adapter.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::audit::{Actor, AuditError, AuditRecord, AuditSink, CHANNEL_CONTROLLER, record_id};
use crate::controller::crd::MAX_AUDIT_MESSAGE_CHARS;
use crate::metrics::Metrics;

/// The ConfigMap's name (in the controller's namespace).
pub const CONFIG_MAP: &str = "autoguardrails-audit-outbox";
/// The data key holding the outbox as JSON.
pub const DATA_KEY: &str = "outbox.json";
/// At most this many unflushed records are kept; beyond that the oldest are dropped and counted.
pub const MAX_RECORDS: usize = 200;
/// Records handed to [`ControllerOutbox::append`] and not yet written, at most (then dropped and
/// counted: the caller never waits).
const QUEUE: usize = 1_000;
/// How many queued records one ConfigMap write takes at most.
const BATCH: usize = 100;

/// A record waiting for the writer, with whom to tell once it is in the ConfigMap.
struct Queued {
    record: AuditRecord,
    written: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The outbox as kept in the ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbox {
    /// The sequence number the next record gets.
    #[serde(default)]
    pub next_sequence: u64,
    /// Every record with a lower sequence number is in the audit store.
    #[serde(default)]
    pub flushed_below: u64,
    /// Records dropped unflushed because the outbox was full.
    #[serde(default)]
    pub dropped: u64,
    /// Unflushed records, oldest first.
    #[serde(default)]
    pub records: Vec<AuditRecord>,
}

impl Outbox {
    /// Appends `records`, numbering them after the last one (`<prefix>/<sequence>` ids, the prefix
    /// being the ConfigMap's uid, so a recreated ConfigMap never reuses an id), times cut to whole
    /// seconds, messages bounded; past [`MAX_RECORDS`] the oldest are dropped and counted.
    /// Returns how many were dropped.
    pub fn push(&mut self, prefix: &str, records: impl IntoIterator<Item = AuditRecord>) -> u64 {
        for mut record in records {
            record.sequence = self.next_sequence;
            record.id = record_id(prefix, self.next_sequence);
            record.recorded_at = Timestamp::from_second(record.recorded_at.as_second())
                .unwrap_or(record.recorded_at);
            if record.message.chars().count() > MAX_AUDIT_MESSAGE_CHARS {
                record.message = record
                    .message
                    .chars()
                    .take(MAX_AUDIT_MESSAGE_CHARS)
                    .collect();
            }
            self.records.push(record);
            self.next_sequence += 1;
        }
        let excess = self.records.len().saturating_sub(MAX_RECORDS);
        self.records.drain(..excess);
        self.dropped += excess as u64;
        excess as u64
    }

    /// Removes every record below `below` (stored by a flush).
    pub fn flushed(&mut self, below: u64) {
        self.records.retain(|r| r.sequence >= below);
        self.flushed_below = self.flushed_below.max(below);
    }

    /// The outbox in a ConfigMap; an absent key is an empty outbox, unreadable text an error
    /// (never overwritten: it may hold records).
    pub fn read(config_map: &ConfigMap) -> Result<Outbox, String> {
        match config_map.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
            None => Ok(Outbox::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("{CONFIG_MAP} {DATA_KEY} is unreadable: {e}")),
        }
    }

    /// `config_map` holding this outbox.
    fn write_to(&self, config_map: &mut ConfigMap) -> Result<(), String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        config_map
            .data
            .get_or_insert_with(Default::default)
            .insert(DATA_KEY.to_string(), text);
        Ok(())
    }
}

/// A record of the controller's with no Quarantine: filled in with the cluster and the time now;
/// the id and sequence are given when it is appended.
pub fn record(cluster: &str, event: &str, actor: Actor, message: String) -> AuditRecord {
    AuditRecord {
        id: String::new(),
        recorded_at: Timestamp::now(),
        sequence: 0,
        cluster: cluster.to_string(),
        quarantine: None,
        policy: None,
        principals: Vec::new(),
        event: event.to_string(),
        actor,
        message,
        mode: None,
        signal: None,
        request_ids: Vec::new(),
    }
}

/// The controller as actor.
pub fn controller_actor() -> Actor {
    Actor {
        name: crate::controller::lifecycle::CONTROLLER_ACTOR.to_string(),
        verified: false,
        channel: CHANNEL_CONTROLLER.to_string(),
    }
}

/// The controller's audit outbox in a ConfigMap. Cheap to share (`Arc`).
pub struct ControllerOutbox {
    api: Api<ConfigMap>,
    cluster: String,
    queue: mpsc::Sender<Queued>,
    metrics: Arc<Metrics>,
    /// Records handed to [`ControllerOutbox::append`] and not yet written (decision 237).
    unwritten: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ControllerOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerOutbox")
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl ControllerOutbox {
    /// The outbox in `namespace`, with its writer task (which ends when the last handle is
    /// dropped, after writing what is queued). Must be called inside a Tokio runtime.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        cluster: &str,
        metrics: Arc<Metrics>,
    ) -> Arc<ControllerOutbox> {
        let (queue, queued) = mpsc::channel(QUEUE);
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let unwritten = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_queued(
            api.clone(),
            queued,
            metrics.clone(),
            unwritten.clone(),
        ));
        Arc::new(ControllerOutbox {
            api,
            cluster: cluster.to_string(),
            queue,
            metrics,
            unwritten,
        })
    }

    /// The cluster id records are written with.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Hands `record` to the writer; never waits. The id and sequence are assigned when it is
    /// written. A full queue drops it (logged, `audit_records_total{outcome="dropped"}`).
    pub fn append(&self, record: AuditRecord) {
        self.enqueue(record, None);
    }

    /// Queues `record` (with `written` told once it is in the ConfigMap); false when the queue is
    /// full or closed (dropped, logged, counted).
    fn enqueue(
        &self,
        record: AuditRecord,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        let Err(error) = self.queue.try_send(Queued { record, written }) else {
            return true;
        };
        self.unwritten.fetch_sub(1, Ordering::SeqCst);
        self.metrics
            .audit_records
            .with_label_values(&["dropped"])
            .inc();
        let queued = match &error {
            mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q,
        };
        tracing::error!(event = %queued.record.event, message = %queued.record.message, "controller audit queue full: record dropped");
        false
    }

    /// Queues `records` and waits until the writer has put them in the ConfigMap, at most
    /// `within` (group commit: records of callers waiting at the same time share one write).
    /// True when they were written before returning; otherwise they stay queued (and are
    /// written later) unless the queue was full.
    pub async fn append_and_wait(&self, records: Vec<AuditRecord>, within: Duration) -> bool {
        let Some(last) = records.len().checked_sub(1) else {
            return true;
        };
        let (tell, told) = tokio::sync::oneshot::channel();
        let mut tell = Some(tell);
        let mut queued = true;
        for (i, record) in records.into_iter().enumerate() {
            // The queue is written in order: the last record written means all were.
            let written = if i == last { tell.take() } else { None };
            queued &= self.enqueue(record, written);
        }
        if !queued {
            return false;
        }
        matches!(tokio::time::timeout(within, told).await, Ok(Ok(())))
    }

    /// Writes `records` into the ConfigMap now (one guarded read-modify-write, retried on
    /// conflicts).
    pub async fn append_now(&self, records: Vec<AuditRecord>) -> Result<(), String> {
        write(&self.api, records, &self.metrics).await
    }

    /// Writes `record` now, within `within`; when that fails or takes longer, hands it to the
    /// queue instead (which keeps retrying). Ok when it was written before returning.
    pub async fn append_durably(&self, record: AuditRecord, within: Duration) -> bool {
        match tokio::time::timeout(within, self.append_now(vec![record.clone()])).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "controller audit record not written at once; queued");
                self.append(record);
                false
            }
            Err(_) => {
                tracing::warn!("controller audit record not written in time; queued");
                self.append(record);
                false
            }
        }
    }

    /// Records handed to [`ControllerOutbox::append`] and not written yet.
    pub fn unwritten(&self) -> usize {
        self.unwritten.load(Ordering::SeqCst)
    }

    /// Waits until every queued record is written, at most `within` (at shutdown, so a stop
    /// loses none, decision 237). Returns how many were still unwritten (logged as lost).
    pub async fn drain(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        while self.unwritten() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.unwritten();
        if left > 0 {
            self.metrics
                .audit_records
                .with_label_values(&["dropped"])
                .inc_by(left as u64);
            tracing::error!(
                records = left,
                "controller audit records not written before the stop: lost"
            );
        }
        left
    }

    /// The unflushed records, read now.
    pub async fn pending(&self) -> Result<Vec<AuditRecord>, String> {
        let found = self
            .api
            .get_opt(CONFIG_MAP)
            .await
            .map_err(|e| format!("failed to read {CONFIG_MAP}: {e}"))?;
        match found {
            None => Ok(Vec::new()),
            Some(config_map) => Ok(Outbox::read(&config_map)?.records),
        }
    }

    /// Stores the unflushed records in `sink`, then removes them from the ConfigMap (guarded by
    /// its resourceVersion; a conflict reads it again, decision 243; a removal that fails leaves
    /// them for the next round, and storing again is a no-op). Returns the records stored and the
    /// backlog left (count, oldest).
    pub async fn flush(
        &self,
        sink: &dyn AuditSink,
    ) -> Result<(usize, usize, Option<Timestamp>), AuditError> {
        let unreadable = |message: String| AuditError::Read {
            path: format!("configmap/{CONFIG_MAP}"),
            source: std::io::Error::other(message),
        };
        let Some(config_map) = self
            .api
            .get_opt(CONFIG_MAP)
            .await
            .map_err(|e| unreadable(e.to_string()))?
        else {
            return Ok((0, 0, None));
        };
        let outbox = Outbox::read(&config_map).map_err(unreadable)?;
        let Some(below) = outbox.records.iter().map(|r| r.sequence + 1).max() else {
            return Ok((0, 0, None));
        };
        let oldest = outbox.records.iter().map(|r| r.recorded_at).min();
        let count = outbox.records.len();
        let done = match sink.append(&outbox.records).await {
            Ok(done) => done,
            Err(e) => {
                self.metrics
                    .audit_records
                    .with_label_values(&["failed"])
                    .inc_by(count as u64);
                return Err(e);
            }
        };
        self.metrics
            .audit_records
            .with_label_values(&["written"])
            .inc_by(done.written as u64);
        self.metrics
            .audit_records
            .with_label_values(&["duplicate"])
            .inc_by(done.duplicates as u64);
        // Removing what was stored is the same guarded read-modify-write as an append: a writer
        // that appended meanwhile makes it read again, never store the same records round after
        // round (decision 243). Starts from the copy read above.
        match modify(&self.api, Some(config_map), false, |outbox, _| {
            outbox.flushed(below)
        })
        .await
        {
            Ok(Some(((), outbox))) => {
                return Ok((
                    count,
                    outbox.records.len(),
                    outbox.records.iter().map(|r| r.recorded_at).min(),
                ));
            }
            Ok(None) => {
                tracing::debug!("controller audit outbox deleted meanwhile; next round");
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to remove flushed records from the controller audit outbox");
            }
        }
        Ok((count, count, oldest))
    }
}

/// The writer task: takes what is queued (up to [`BATCH`]) and writes it; a failed write keeps
/// the batch and retries with backoff (1 s doubling to 30 s) until it succeeds or the process
/// ends.
async fn write_queued(
    api: Api<ConfigMap>,
    mut queued: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
    unwritten: Arc<AtomicUsize>,
) {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (records, waiting): (Vec<AuditRecord>, Vec<_>) =
            batch.into_iter().map(|q| (q.record, q.written)).unzip();
        let mut wait = Duration::from_secs(1);
        while let Err(error) = write(&api, records.clone(), &metrics).await {
            tracing::warn!(%error, records = records.len(), retry_in = ?wait, "failed to write the controller audit outbox");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        unwritten.fetch_sub(records.len(), Ordering::SeqCst);
        for tell in waiting.into_iter().flatten() {
            let _ = tell.send(());
        }
    }
}

/// Appends `records` with one guarded read-modify-write of the ConfigMap (created when missing).
async fn write(
    api: &Api<ConfigMap>,
    records: Vec<AuditRecord>,
    metrics: &Metrics,
) -> Result<(), String> {
    let written = modify(api, None, true, |outbox, prefix| {
        outbox.push(prefix, records.clone())
    })
    .await?;
    if let Some((dropped, _)) = written
        && dropped > 0
    {
        metrics
            .audit_records
            .with_label_values(&["dropped"])
            .inc_by(dropped);
        tracing::error!(
            dropped,
            "controller audit outbox full: the oldest unflushed records were dropped"
        );
    }
    Ok(())
}

/// One guarded read-modify-write of the outbox: `change` is applied to the outbox as read (from
/// `first` when given, else read now; it also gets the ConfigMap's uid, the id prefix) and the
/// ConfigMap is replaced with the resourceVersion read; a conflict reads it again and applies
/// `change` again, up to ten times. A missing ConfigMap is created empty first when `create` is
/// set (the ids need its uid); otherwise nothing is written and the answer is `None`. Returns
/// `change`'s answer for the outbox written, and that outbox. An unreadable outbox is an error,
/// never overwritten.
async fn modify<R>(
    api: &Api<ConfigMap>,
    mut first: Option<ConfigMap>,
    create: bool,
    mut change: impl FnMut(&mut Outbox, &str) -> R,
) -> Result<Option<(R, Outbox)>, String> {
    let mut last = String::new();
    for _ in 0..10 {
        let found = match first.take() {
            Some(config_map) => Some(config_map),
            None => api
                .get_opt(CONFIG_MAP)
                .await
                .map_err(|e| format!("failed to read {CONFIG_MAP}: {e}"))?,
        };
        let Some(mut config_map) = found else {
            if !create {
                return Ok(None);
            }
            let empty = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.to_string()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_string(),
                            "autoguardrails".to_string(),
                        )]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            };
            match api.create(&PostParams::default(), &empty).await {
                Ok(_) => continue,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    last = s.message;
                    continue;
                }
                Err(e) => return Err(format!("failed to write {CONFIG_MAP}: {e}")),
            }
        };
        let mut outbox = Outbox::read(&config_map)?;
        let prefix = config_map.metadata.uid.clone().unwrap_or_default();
        let answer = change(&mut outbox, &prefix);
        outbox.write_to(&mut config_map)?;
        match api
            .replace(CONFIG_MAP, &PostParams::default(), &config_map)
            .await
        {
            Ok(_) => return Ok(Some((answer, outbox))),
            Err(kube::Error::Api(s)) if s.code == 409 => last = s.message,
            Err(kube::Error::Api(s)) if s.code == 404 && !create => return Ok(None),
            Err(e) => return Err(format!("failed to write {CONFIG_MAP}: {e}")),
        }
    }
    Err(format!("{CONFIG_MAP} kept changing: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> AuditRecord {
        record("c", name, controller_actor(), format!("{name} happened"))
    }

    #[test]
    fn records_are_numbered_bounded_and_removed_once_stored() {
        let mut outbox = Outbox::default();
        assert_eq!(outbox.push("cm-uid", [event("A"), event("B")]), 0);
        assert_eq!(outbox.records[1].id, "cm-uid/0000000001");
        assert_eq!(outbox.records[1].sequence, 1);
        outbox.flushed(1);
        assert_eq!(outbox.records.len(), 1);
        assert_eq!(outbox.flushed_below, 1);
        let many: Vec<AuditRecord> = (0..MAX_RECORDS + 5).map(|_| event("C")).collect();
        assert_eq!(outbox.push("cm-uid", many), 6);
        assert_eq!(outbox.records.len(), MAX_RECORDS);
        assert_eq!(outbox.dropped, 6);
        assert_eq!(outbox.next_sequence, MAX_RECORDS as u64 + 7);
        let long = record("c", "D", controller_actor(), "x".repeat(5000));
        outbox.push("cm-uid", [long]);
        assert_eq!(
            outbox.records.last().map(|r| r.message.chars().count()),
            Some(MAX_AUDIT_MESSAGE_CHARS)
        );
    }

    #[test]
    fn an_unreadable_outbox_is_an_error_not_an_empty_one() {
        let mut config_map = ConfigMap::default();
        assert_eq!(Outbox::read(&config_map), Ok(Outbox::default()));
        config_map.data = Some([(DATA_KEY.to_string(), "{not json".to_string())].into());
        assert!(Outbox::read(&config_map).is_err());
        let mut outbox = Outbox::default();
        outbox.push("u", [event("A")]);
        outbox.write_to(&mut config_map).unwrap();
        assert_eq!(Outbox::read(&config_map), Ok(outbox));
    }
}
