//! The audit outbox of a Quarantine (decision 222), as pure functions: which history entries a
//! reconcile added, appending them to `status.audit` with sequence numbers (bounded), turning
//! unflushed entries into [`AuditRecord`]s with the object's identity, removing what a flush
//! stored, and the backlog for the metrics. The flusher ([`flusher`]) is the adapter. No I/O here.

pub mod controller_outbox;
pub mod flusher;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::audit::{
    Actor, AuditRecord, AuditSink, CHANNEL_CONTROLLER, CHANNEL_KUBECTL, QuarantineRef,
    SignalSummary, record_id,
};
use crate::controller::admission::StampKey;
use crate::controller::admission::stamp::verified_channel;
use crate::controller::crd::{
    AuditEntry, AuditOutbox, HistoryEntry, MAX_AUDIT_ENTRIES, MAX_AUDIT_MESSAGE_CHARS, Quarantine,
    QuarantineStatus,
};
use crate::controller::lifecycle::{Annotation, CONTROLLER_ACTOR};

/// The `audit` section of the controller configuration file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The DynamoDB table; none: no table.
    pub table: Option<String>,
    /// The table's region (default: the controller's AWS region).
    pub region: Option<String>,
    /// An endpoint URL for the table only (a local DynamoDB in tests).
    pub endpoint_url: Option<String>,
    /// Days a record is kept (the table's TTL attribute); 0 keeps records forever.
    pub retention_days: u32,
    /// JSON lines: `-` for stdout, or a file path; none: no JSON lines.
    pub json_lines: Option<String>,
    /// How often the outbox is flushed.
    pub flush_interval: jiff::SignedDuration,
    /// The longest wait between flush attempts while the store fails.
    pub max_backoff: jiff::SignedDuration,
    /// How long a deleted Quarantine waits for its records to be stored.
    pub deletion_wait: jiff::SignedDuration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            table: None,
            region: None,
            endpoint_url: None,
            retention_days: 0,
            json_lines: None,
            flush_interval: jiff::SignedDuration::from_secs(2),
            max_backoff: jiff::SignedDuration::from_secs(60),
            deletion_wait: jiff::SignedDuration::from_secs(300),
        }
    }
}

impl AuditSettings {
    /// True when any sink is configured.
    pub fn enabled(&self) -> bool {
        self.table.as_ref().is_some_and(|t| !t.is_empty())
            || self.json_lines.as_ref().is_some_and(|j| !j.is_empty())
    }

    /// The retention as a duration (none when records are kept forever).
    pub fn retention(&self) -> Option<jiff::SignedDuration> {
        (self.retention_days > 0)
            .then(|| jiff::SignedDuration::from_hours(i64::from(self.retention_days) * 24))
    }

    /// The outlet over `sink` with these timings.
    pub fn outlet(&self, sink: Option<Arc<dyn AuditSink>>) -> AuditOutlet {
        let unsigned = |d: jiff::SignedDuration, fallback: u64| {
            Duration::try_from(d)
                .ok()
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(fallback))
        };
        AuditOutlet {
            sink,
            controller: None,
            flush_interval: unsigned(self.flush_interval, 2),
            max_backoff: unsigned(self.max_backoff, 60),
            deletion_wait: unsigned(self.deletion_wait, 300),
        }
    }
}

/// Where the controller's audit records go, and how the outbox is flushed.
#[derive(Clone)]
pub struct AuditOutlet {
    /// The audit store; `None` keeps today's behaviour (no outbox in status).
    pub sink: Option<Arc<dyn AuditSink>>,
    /// The controller's own outbox (records with no Quarantine history), when a store is set.
    pub controller: Option<Arc<controller_outbox::ControllerOutbox>>,
    /// How often the flusher looks for unflushed entries.
    pub flush_interval: Duration,
    /// The longest wait between flush attempts while the store fails.
    pub max_backoff: Duration,
    /// How long a deleted Quarantine's finalizer waits for its records to be flushed.
    pub deletion_wait: Duration,
}

impl Default for AuditOutlet {
    fn default() -> Self {
        AuditOutlet {
            sink: None,
            controller: None,
            flush_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            deletion_wait: Duration::from_secs(300),
        }
    }
}

impl std::fmt::Debug for AuditOutlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOutlet")
            .field("sink", &self.sink.as_ref().map(|s| s.name()))
            .field("flush_interval", &self.flush_interval)
            .field("max_backoff", &self.max_backoff)
            .field("deletion_wait", &self.deletion_wait)
            .finish()
    }
}

impl AuditOutlet {
    /// True when an audit store is configured.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }
}

/// The entries of `new` that are not in `old` (history only grows at the end and is cut at the
/// front, so they are the suffix of `new` after the longest overlap with the end of `old`).
pub fn appended<'a>(old: &[HistoryEntry], new: &'a [HistoryEntry]) -> &'a [HistoryEntry] {
    for skip in 0..=old.len() {
        let tail = &old[skip..];
        if tail.len() <= new.len() && new[..tail.len()] == *tail {
            return &new[tail.len()..];
        }
    }
    new
}

/// The actor of a history entry as the audit records it: the name, and whether it is a verified
/// identity. Only approve, reject and extend (and four-eyes approvals) pass the approval webhook,
/// whose stamp puts the authenticated user name in the history; without a valid stamp the history
/// says `<name> (unverified)` (decision 212), which the record keeps as `<name>` with
/// `verified: false`, so a query by actor finds both. Every other person's action (release) is
/// self-asserted.
pub fn audited_actor(event: &str, actor: &str) -> (String, bool) {
    use crate::controller::lifecycle::{
        REASON_APPROVAL_RECORDED, REASON_APPROVED, REASON_EXTENDED, REASON_REJECTED,
        UNVERIFIED_SUFFIX,
    };
    if let Some(name) = actor.strip_suffix(UNVERIFIED_SUFFIX) {
        return (name.to_string(), false);
    }
    let approval = [
        REASON_APPROVED,
        REASON_APPROVAL_RECORDED,
        REASON_REJECTED,
        REASON_EXTENDED,
    ]
    .contains(&event);
    (actor.to_string(), approval && actor != CONTROLLER_ACTOR)
}

/// The channel of a history actor: the controller itself, or a person through an annotation
/// (`kubectl` or anything else that writes it).
pub fn channel_of(actor: &str) -> &'static str {
    if actor == CONTROLLER_ACTOR {
        CHANNEL_CONTROLLER
    } else {
        CHANNEL_KUBECTL
    }
}

/// The annotation a person's history event came from, when one does.
fn annotation_of(event: &str) -> Option<Annotation> {
    use crate::controller::lifecycle::{
        REASON_APPROVAL_RECORDED, REASON_APPROVAL_REFUSED, REASON_APPROVED, REASON_EXTEND_REFUSED,
        REASON_EXTENDED, REASON_REJECTED, REASON_RELEASE_REQUESTED,
    };
    match event {
        REASON_APPROVED | REASON_APPROVAL_RECORDED | REASON_APPROVAL_REFUSED => {
            Some(Annotation::Approve)
        }
        REASON_REJECTED => Some(Annotation::Reject),
        REASON_EXTENDED | REASON_EXTEND_REFUSED => Some(Annotation::Extend),
        REASON_RELEASE_REQUESTED => Some(Annotation::Release),
        _ => None,
    }
}

/// Sets the channel of the people's entries in `entries` (those a reconcile just added): `slack`
/// (or another channel) when the annotation's current value carries a valid stamp the controller
/// signed for that channel, `kubectl` for every other annotation write (decision 224). The
/// controller's own entries keep none. Only the stamp key can name a channel, so a person writing
/// annotations cannot claim `slack`.
pub fn stamp_channels(
    entries: &mut [HistoryEntry],
    annotations: &std::collections::BTreeMap<String, String>,
    key: Option<&StampKey>,
    quarantine_uid: &str,
) {
    for entry in entries.iter_mut() {
        if entry.actor == CONTROLLER_ACTOR || entry.channel.is_some() {
            continue;
        }
        let signed = annotation_of(&entry.event)
            .and_then(|annotation| verified_channel(annotation, annotations, key, quarantine_uid))
            .flatten();
        entry.channel = Some(signed.unwrap_or_else(|| CHANNEL_KUBECTL.to_string()));
    }
}

/// The history events that report the IAM writes of the reconcile that added them: their audit
/// entries carry those writes' AWS request ids (decision 234).
pub const IAM_EVENTS: [&str; 7] = [
    crate::controller::lifecycle::REASON_ACTIVATED,
    crate::controller::lifecycle::REASON_ENFORCEMENT_FAILED,
    crate::controller::lifecycle::REASON_ENFORCEMENT_RETRYING,
    crate::controller::lifecycle::REASON_RELEASED,
    crate::controller::lifecycle::REASON_RELEASE_FAILED,
    crate::controller::lifecycle::REASON_DRIFT_REPAIRED,
    crate::controller::crd::conditions::REASON_BOUNDARY_CHANGED,
];

/// At most this many request ids on one audit entry (the first ones are kept).
pub const MAX_REQUEST_IDS: usize = 20;

/// `outbox` with `entries` appended (sequence numbers continue, times cut to whole seconds,
/// messages bounded). The controller's entries that report IAM writes ([`IAM_EVENTS`]) carry
/// `request_ids`, the AWS request ids of the writes made by the reconcile that added them. Past
/// [`MAX_AUDIT_ENTRIES`] the oldest unflushed entries are dropped and counted.
pub fn append(
    outbox: Option<&AuditOutbox>,
    entries: &[HistoryEntry],
    request_ids: &[String],
) -> AuditOutbox {
    let mut outbox = outbox.cloned().unwrap_or_default();
    for entry in entries {
        let reports_writes =
            entry.actor == CONTROLLER_ACTOR && IAM_EVENTS.contains(&entry.event.as_str());
        let second = Timestamp::from_second(entry.time.0.as_second()).unwrap_or(entry.time.0);
        let (actor, verified) = audited_actor(&entry.event, &entry.actor);
        let channel = entry
            .channel
            .clone()
            .unwrap_or_else(|| channel_of(&entry.actor).to_string());
        // Only a stamp the controller signed names a channel other than kubectl: that entry's
        // actor is the verified identity (a release from Slack too).
        let verified = verified || (channel != CHANNEL_KUBECTL && channel != CHANNEL_CONTROLLER);
        outbox.entries.push(AuditEntry {
            sequence: outbox.next_sequence,
            time: Time(second),
            event: truncate(&entry.event, 128),
            actor: truncate(&actor, 256),
            verified,
            channel: truncate(&channel, 32),
            message: truncate(&entry.message, MAX_AUDIT_MESSAGE_CHARS),
            request_ids: if reports_writes {
                request_ids
                    .iter()
                    .take(MAX_REQUEST_IDS)
                    .map(|id| truncate(id, 128))
                    .collect()
            } else {
                Vec::new()
            },
        });
        outbox.next_sequence += 1;
    }
    let excess = outbox.entries.len().saturating_sub(MAX_AUDIT_ENTRIES);
    if excess > 0 {
        outbox.entries.drain(..excess);
        outbox.dropped += excess as u64;
    }
    outbox
}

/// `outbox` after a flush stored every entry below `below`.
pub fn flushed(outbox: &AuditOutbox, below: u64) -> AuditOutbox {
    let mut outbox = outbox.clone();
    outbox.entries.retain(|e| e.sequence >= below);
    outbox.flushed_below = outbox.flushed_below.max(below);
    outbox
}

/// Unflushed entries in `status`.
pub fn pending(status: Option<&QuarantineStatus>) -> &[AuditEntry] {
    status
        .and_then(|s| s.audit.as_ref())
        .map(|a| a.entries.as_slice())
        .unwrap_or_default()
}

/// A signal as an audit record gives it (records with no Quarantine: intake, notifyOnly).
pub fn signal_summary(signal: &crate::controller::signal::CostSignal) -> SignalSummary {
    SignalSummary {
        source: signal.source.as_str().to_string(),
        id: signal.id.clone(),
        account_id: signal.account_id.clone(),
        impact_usd: signal.impact_usd,
        service: signal.service.clone(),
    }
}

/// The records of `q`'s unflushed entries, with its identity, policy, targets and signal.
pub fn records(q: &Quarantine, cluster: &str) -> Vec<AuditRecord> {
    let uid = q.uid().unwrap_or_default();
    let quarantine = QuarantineRef {
        namespace: q.namespace().unwrap_or_default(),
        name: q.name_any(),
        uid: uid.clone(),
    };
    let signal = q.spec.signal.as_ref().map(|s| SignalSummary {
        source: s.source.as_str().to_string(),
        id: s.id.clone(),
        account_id: s.account_id.clone(),
        impact_usd: s.impact_usd,
        service: s.service.clone(),
    });
    let principals: Vec<String> = q.spec.targets.iter().map(|t| t.arn.clone()).collect();
    pending(q.status.as_ref())
        .iter()
        .map(|e| AuditRecord {
            id: record_id(&uid, e.sequence),
            recorded_at: e.time.0,
            sequence: e.sequence,
            cluster: cluster.to_string(),
            quarantine: Some(quarantine.clone()),
            policy: Some(q.spec.policy_ref.name.clone()),
            principals: principals.clone(),
            event: e.event.clone(),
            actor: Actor {
                name: e.actor.clone(),
                verified: e.verified,
                channel: e.channel.clone(),
            },
            message: e.message.clone(),
            mode: Some(format!("{:?}", q.spec.mode)),
            signal: signal.clone(),
            request_ids: e.request_ids.clone(),
        })
        .collect()
}

/// The backlog over `quarantines`: unflushed entries and the oldest one's time.
pub fn backlog<'a>(
    quarantines: impl IntoIterator<Item = &'a Quarantine>,
) -> (usize, Option<Timestamp>) {
    let mut count = 0;
    let mut oldest: Option<Timestamp> = None;
    for q in quarantines {
        let entries = pending(q.status.as_ref());
        count += entries.len();
        if let Some(first) = entries.iter().map(|e| e.time.0).min() {
            oldest = Some(oldest.map_or(first, |o| o.min(first)));
        }
    }
    (count, oldest)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(second: i64, event: &str, actor: &str) -> HistoryEntry {
        HistoryEntry {
            time: Time(Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)),
            event: event.into(),
            actor: actor.into(),
            message: format!("{event} at {second}"),
            channel: None,
        }
    }

    #[test]
    fn appended_finds_new_entries_also_when_history_was_cut() {
        let old: Vec<HistoryEntry> = (0..50).map(|i| entry(i, "E", "controller")).collect();
        let mut new: Vec<HistoryEntry> = old[2..].to_vec();
        new.push(entry(100, "A", "alice"));
        new.push(entry(101, "B", "controller"));
        assert_eq!(appended(&old, &new), &new[48..]);
        assert!(appended(&old, &old).is_empty());
        assert_eq!(appended(&[], &new).len(), new.len());
    }

    #[test]
    fn append_numbers_entries_bounds_the_outbox_and_flush_removes_stored_ones() {
        let entries: Vec<HistoryEntry> = (0..3).map(|i| entry(i, "E", "alice")).collect();
        let outbox = append(None, &entries, &[]);
        assert_eq!(outbox.next_sequence, 3);
        assert_eq!(outbox.entries[2].sequence, 2);
        assert_eq!(outbox.entries[0].channel, CHANNEL_KUBECTL);
        let outbox = flushed(&outbox, 2);
        assert_eq!(outbox.entries.len(), 1);
        assert_eq!(outbox.flushed_below, 2);
        let many: Vec<HistoryEntry> = (0..150).map(|i| entry(i, "E", "controller")).collect();
        let outbox = append(Some(&outbox), &many, &[]);
        assert_eq!(outbox.entries.len(), MAX_AUDIT_ENTRIES);
        assert_eq!(outbox.dropped, 51);
        assert_eq!(outbox.next_sequence, 153);
        assert_eq!(outbox.entries[0].channel, CHANNEL_CONTROLLER);
    }

    #[test]
    fn the_channel_comes_from_a_signed_stamp_and_kubectl_cannot_claim_slack() {
        use crate::controller::admission::Identity;
        use crate::controller::admission::stamp::stamp_key;
        let key = StampKey::derive(b"k");
        let alice = Identity {
            username: "alice".into(),
            ..Identity::default()
        };
        let value = "alice: approve from Slack";
        let mut annotations = std::collections::BTreeMap::from([
            ("autoguardrails.io/approve".to_string(), value.to_string()),
            (
                stamp_key(Annotation::Approve),
                key.sign_via(
                    "u",
                    "autoguardrails.io/approve",
                    value,
                    &alice,
                    Some("slack"),
                ),
            ),
            (
                "autoguardrails.io/release".to_string(),
                "bob: done".to_string(),
            ),
        ]);
        let mut entries = vec![
            entry(1, "Approved", "alice"),
            entry(2, "Activated", "controller"),
            entry(3, "ReleaseRequested", "bob"),
        ];
        stamp_channels(&mut entries, &annotations, Some(&key), "u");
        let channels: Vec<Option<&str>> = entries.iter().map(|e| e.channel.as_deref()).collect();
        assert_eq!(channels, [Some("slack"), None, Some("kubectl")]);
        let outbox = append(None, &entries, &[]);
        assert_eq!(
            (
                outbox.entries[0].channel.as_str(),
                outbox.entries[0].verified
            ),
            ("slack", true)
        );
        assert_eq!(outbox.entries[1].channel, CHANNEL_CONTROLLER);
        assert_eq!(
            (
                outbox.entries[2].channel.as_str(),
                outbox.entries[2].verified
            ),
            ("kubectl", false)
        );
        // The webhook's own stamp (no channel), or a channel written in by hand: kubectl.
        annotations.insert(
            stamp_key(Annotation::Approve),
            key.sign("u", "autoguardrails.io/approve", value, &alice),
        );
        let mut entries = vec![entry(1, "Approved", "alice")];
        stamp_channels(&mut entries, &annotations, Some(&key), "u");
        assert_eq!(entries[0].channel.as_deref(), Some("kubectl"));
        let forged = key
            .sign("u", "autoguardrails.io/approve", value, &alice)
            .replacen('{', r#"{"channel":"slack","#, 1);
        annotations.insert(stamp_key(Annotation::Approve), forged);
        let mut entries = vec![entry(1, "Approved", "alice")];
        stamp_channels(&mut entries, &annotations, Some(&key), "u");
        assert_eq!(entries[0].channel.as_deref(), Some("kubectl"));
    }

    #[test]
    fn request_ids_go_only_to_the_controller_entries_that_report_iam_writes() {
        let entries = [
            entry(1, "Approved", "alice"),
            entry(2, "Activated", "controller"),
            entry(3, "DriftRepaired", "controller"),
            entry(4, "Expired", "controller"),
            entry(5, "Released", "bob"),
        ];
        let ids: Vec<String> = (0..30).map(|i| format!("req-{i}")).collect();
        let outbox = append(None, &entries, &ids);
        let counts: Vec<usize> = outbox.entries.iter().map(|e| e.request_ids.len()).collect();
        assert_eq!(counts, [0, MAX_REQUEST_IDS, MAX_REQUEST_IDS, 0, 0]);
        assert_eq!(outbox.entries[1].request_ids[0], "req-0");
    }

    #[test]
    fn only_stamped_approvals_are_verified_in_the_outbox() {
        let entries = [
            entry(1, "Approved", "alice"),
            entry(2, "Approved", "bob (unverified)"),
            entry(3, "ApprovalRecorded", "carol"),
            entry(4, "Extended", "dave (unverified)"),
            entry(5, "Released", "erin"),
            entry(6, "Activated", "controller"),
        ];
        let outbox = append(None, &entries, &[]);
        let actors: Vec<(&str, bool)> = outbox
            .entries
            .iter()
            .map(|e| (e.actor.as_str(), e.verified))
            .collect();
        assert_eq!(
            actors,
            [
                ("alice", true),
                ("bob", false),
                ("carol", true),
                ("dave", false),
                ("erin", false),
                ("controller", false)
            ]
        );
    }
}
