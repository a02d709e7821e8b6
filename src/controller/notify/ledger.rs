//! The delivery ledger kept in `status.notifications`: which history entries get a message, which
//! are skipped as too old, when a failed one is retried and when it is given up. Pure: the clock is
//! passed in; it must not send, read the webhook or talk to Kubernetes.
//!
//! De-duplication rule: an entry whose record is `Delivered`, `Skipped` or `Failed` is never sent
//! again; only `Retrying` records (and entries with no record that are younger than `max_age`) are
//! sent. With the record written right after each send this gives at-least-once delivery; the only
//! duplicate is a crash between the webhook's 200 and the status write.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::blocks::{MessageKind, folded_into, truncate};
use crate::controller::crd::{
    DeliveryState, HistoryEntry, MAX_NOTIFICATION_ERROR_CHARS, MAX_NOTIFICATIONS,
    NotificationRecord,
};

/// The error recorded for a message held back behind an earlier one that waits for its retry.
pub const WAITING_FOR_EARLIER: &str = "waiting for an earlier message of this quarantine";

/// Timing rules of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Entries older than this when first seen are recorded as Skipped, not sent.
    pub max_age: SignedDuration,
    /// A failing entry is retried until it is this old; then it is Failed.
    pub retry_for: SignedDuration,
    /// The wait after the first failed round; doubled per failed attempt.
    pub initial_backoff: SignedDuration,
    /// The longest wait between rounds.
    pub max_backoff: SignedDuration,
}

impl Default for LedgerSettings {
    fn default() -> LedgerSettings {
        LedgerSettings {
            max_age: SignedDuration::from_mins(15),
            retry_for: SignedDuration::from_hours(1),
            initial_backoff: SignedDuration::from_secs(10),
            max_backoff: SignedDuration::from_mins(5),
        }
    }
}

/// A message to send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Index of the history entry the message is about.
    pub index: usize,
    /// The entry's key.
    pub key: String,
    /// The entry's event.
    pub event: String,
    /// Keys of entries folded into this message (a `KillSwitchDryRun` beside its `Planned`).
    pub folded: Vec<(String, String)>,
}

/// What to do for one Quarantine now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Messages to send, oldest first.
    pub send: Vec<Pending>,
    /// The records with skips and give-ups applied and stale records dropped.
    pub records: Vec<NotificationRecord>,
    /// Entries newly recorded as Skipped.
    pub skipped: usize,
    /// Entries newly given up (retry window passed).
    pub given_up: usize,
    /// The earliest `nextAttemptAt` of a record still waiting, if any.
    pub wake_at: Option<Timestamp>,
}

/// The outcome of sending one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The webhook accepted it.
    Delivered {
        /// HTTP requests made.
        attempts: u32,
    },
    /// It was not delivered.
    NotDelivered {
        /// The error, without the URL.
        error: String,
        /// HTTP requests made.
        attempts: u32,
        /// True when retrying cannot help.
        permanent: bool,
        /// Slack's `Retry-After`, if any.
        retry_after: Option<std::time::Duration>,
    },
}

/// The key of `history[index]`: `<time>/<event>`, plus `#n` for the n-th earlier entry with the
/// same time and event.
pub fn key_for(history: &[HistoryEntry], index: usize) -> Option<String> {
    let entry = history.get(index)?;
    let seconds = entry.time.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let repeats = history[..index]
        .iter()
        .filter(|other| {
            other.event == entry.event && other.time.0.as_second() == entry.time.0.as_second()
        })
        .count();
    Some(if repeats == 0 {
        format!("{seconds}/{}", entry.event)
    } else {
        format!("{seconds}/{}#{repeats}", entry.event)
    })
}

/// Decides what to send, skip and give up for a Quarantine with this history and these records.
pub fn plan(
    history: &[HistoryEntry],
    existing: &[NotificationRecord],
    now: Timestamp,
    settings: &LedgerSettings,
) -> Plan {
    let mut records = Vec::new();
    let mut send = Vec::new();
    let (mut skipped, mut given_up) = (0, 0);
    let mut wake_at: Option<Timestamp> = None;
    let mut waiting_until: Option<Timestamp> = None;
    let find = |key: &str| existing.iter().find(|record| record.key == key).cloned();

    for (index, entry) in history.iter().enumerate() {
        if MessageKind::from_event(&entry.event).is_none() || folded_into(history, index).is_some()
        {
            continue;
        }
        let Some(key) = key_for(history, index) else {
            continue;
        };
        let folded: Vec<(String, String)> = (0..history.len())
            .filter(|other| folded_into(history, *other) == Some(index))
            .filter_map(|other| Some((key_for(history, other)?, history[other].event.clone())))
            .collect();
        let age = now.duration_since(entry.time.0);
        let record = match find(&key) {
            Some(record) if record.state.is_final() => record,
            Some(mut record) => {
                if age > settings.retry_for {
                    record.state = DeliveryState::Failed;
                    record.next_attempt_at = None;
                    let reason = format!(
                        "gave up after {:#}: {}",
                        settings.retry_for,
                        record.last_error.as_deref().unwrap_or("not delivered")
                    );
                    record.last_error = Some(truncate(&reason, MAX_NOTIFICATION_ERROR_CHARS));
                    given_up += 1;
                } else {
                    match (
                        record.next_attempt_at.as_ref().map(|time| time.0),
                        waiting_until,
                    ) {
                        // An earlier message is waiting: keep the order and go together.
                        (_, Some(until)) => {
                            record.next_attempt_at = Some(Time(until));
                        }
                        (Some(next), None) if next > now => {
                            waiting_until = Some(next);
                            wake_at = Some(wake_at.map_or(next, |wake| wake.min(next)));
                        }
                        _ => send.push(Pending {
                            index,
                            key: key.clone(),
                            event: entry.event.clone(),
                            folded: folded.clone(),
                        }),
                    }
                }
                record
            }
            None if age > settings.max_age => {
                skipped += 1;
                NotificationRecord {
                    key: key.clone(),
                    event: entry.event.clone(),
                    state: DeliveryState::Skipped,
                    attempts: 0,
                    last_attempt_at: None,
                    next_attempt_at: None,
                    last_error: None,
                    message: None,
                }
            }
            // New, but an earlier message is waiting for its retry: recorded as waiting with it
            // (so it is neither sent out of order nor skipped as old when the outage is long).
            None if waiting_until.is_some() => NotificationRecord {
                key: key.clone(),
                event: entry.event.clone(),
                state: DeliveryState::Retrying,
                attempts: 0,
                last_attempt_at: None,
                next_attempt_at: waiting_until.map(Time),
                last_error: Some(WAITING_FOR_EARLIER.into()),
                message: None,
            },
            None => {
                send.push(Pending {
                    index,
                    key: key.clone(),
                    event: entry.event.clone(),
                    folded: folded.clone(),
                });
                // Not recorded until it was tried.
                continue;
            }
        };
        for (folded_key, folded_event) in &folded {
            records.push(NotificationRecord {
                key: folded_key.clone(),
                event: folded_event.clone(),
                ..record.clone()
            });
        }
        records.push(record);
    }
    let excess = records.len().saturating_sub(MAX_NOTIFICATIONS);
    records.drain(..excess);
    Plan {
        send,
        records,
        skipped,
        given_up,
        wake_at,
    }
}

/// Records the outcome of sending `pending` (and its folded entries) in `records`, in history order.
/// Returns the state written.
pub fn record_outcome(
    records: &mut Vec<NotificationRecord>,
    history: &[HistoryEntry],
    pending: &Pending,
    outcome: &Outcome,
    now: Timestamp,
    settings: &LedgerSettings,
) -> DeliveryState {
    let previous_attempts = records
        .iter()
        .find(|record| record.key == pending.key)
        .map_or(0, |record| record.attempts);
    let entry_time = history.get(pending.index).map_or(now, |entry| entry.time.0);
    let (state, attempts, next_attempt_at, last_error) = match outcome {
        Outcome::Delivered { attempts } => (
            DeliveryState::Delivered,
            previous_attempts.saturating_add(*attempts),
            None,
            None,
        ),
        Outcome::NotDelivered {
            error,
            attempts,
            permanent,
            retry_after,
        } => {
            let total = previous_attempts.saturating_add(*attempts);
            let error = Some(truncate(error, MAX_NOTIFICATION_ERROR_CHARS));
            let window_over = now.duration_since(entry_time) >= settings.retry_for;
            if *permanent || window_over {
                (DeliveryState::Failed, total, None, error)
            } else {
                let exponent = total.max(1).saturating_sub(1).min(16);
                let mut wait = settings
                    .initial_backoff
                    .checked_mul(1 << exponent)
                    .unwrap_or(settings.max_backoff)
                    .min(settings.max_backoff);
                if let Some(retry_after) =
                    retry_after.and_then(|after| SignedDuration::try_from(after).ok())
                {
                    wait = wait.max(retry_after);
                }
                let next = whole_second_up(now.checked_add(wait).unwrap_or(now));
                (DeliveryState::Retrying, total, Some(Time(next)), error)
            }
        }
    };
    let mut keys = vec![(pending.key.clone(), pending.event.clone())];
    keys.extend(pending.folded.iter().cloned());
    for (key, event) in keys {
        let message = records
            .iter()
            .find(|existing| existing.key == key)
            .and_then(|existing| existing.message.clone());
        let record = NotificationRecord {
            key: key.clone(),
            event,
            state,
            attempts,
            last_attempt_at: Some(Time(whole_second_down(now))),
            next_attempt_at: next_attempt_at.clone(),
            last_error: last_error.clone(),
            message,
        };
        match records.iter_mut().find(|existing| existing.key == key) {
            Some(existing) => *existing = record,
            None => records.push(record),
        }
    }
    sort_by_history(records, history);
    state
}

/// Status stores times in whole seconds; records are kept that way in memory too, so a record
/// read back from the API equals the one written (no rewrite loop).
fn whole_second_down(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// Rounds up to a whole second, so a retry is never earlier than the wait asked for.
fn whole_second_up(time: Timestamp) -> Timestamp {
    let extra = i64::from(time.subsec_nanosecond() > 0);
    Timestamp::from_second(time.as_second().saturating_add(extra)).unwrap_or(time)
}

/// Orders records as their entries appear in history (records whose entry is gone go first, so
/// they are the first dropped by the bound).
fn sort_by_history(records: &mut Vec<NotificationRecord>, history: &[HistoryEntry]) {
    let keys: Vec<Option<String>> = (0..history.len())
        .map(|index| key_for(history, index))
        .collect();
    records.sort_by_key(|record| {
        keys.iter()
            .position(|key| key.as_deref() == Some(record.key.as_str()))
    });
    let excess = records.len().saturating_sub(MAX_NOTIFICATIONS);
    records.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::lifecycle::{REASON_KILL_SWITCH_DRY_RUN, REASON_PLANNED};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn entry(seconds: i64, event: &str) -> HistoryEntry {
        HistoryEntry {
            time: Time(at(seconds)),
            event: event.into(),
            actor: "controller".into(),
            message: "m".into(),
            channel: None,
        }
    }

    fn settings() -> LedgerSettings {
        LedgerSettings::default()
    }

    #[test]
    fn fresh_notable_entries_are_sent_once_and_others_ignored() {
        let history = vec![
            entry(0, "PendingApproval"),
            entry(10, "Approved"),
            entry(10, "Activated"),
        ];
        let first = plan(&history, &[], at(20), &settings());
        let events: Vec<&str> = first.send.iter().map(|p| p.event.as_str()).collect();
        assert_eq!(events, ["PendingApproval", "Activated"]);
        let mut records = first.records;
        for pending in &first.send {
            let state = record_outcome(
                &mut records,
                &history,
                pending,
                &Outcome::Delivered { attempts: 1 },
                at(21),
                &settings(),
            );
            assert_eq!(state, DeliveryState::Delivered);
        }
        let second = plan(&history, &records, at(30), &settings());
        assert!(
            second.send.is_empty(),
            "delivered entries are never re-sent"
        );
        assert_eq!(second.records, records);
    }

    #[test]
    fn old_entries_are_skipped_when_first_seen() {
        let history = vec![entry(0, "Activated"), entry(3600, "DriftRepaired")];
        let result = plan(&history, &[], at(3600 + 5), &settings());
        assert_eq!(result.send.len(), 1);
        assert_eq!(result.send[0].event, "DriftRepaired");
        assert_eq!(result.skipped, 1);
        assert_eq!(result.records[0].state, DeliveryState::Skipped);
    }

    #[test]
    fn failures_back_off_honour_retry_after_and_give_up() {
        let history = vec![entry(0, "Activated")];
        let first = plan(&history, &[], at(1), &settings());
        let mut records = first.records;
        let failed = Outcome::NotDelivered {
            error: "HTTP 500".into(),
            attempts: 3,
            permanent: false,
            retry_after: Some(std::time::Duration::from_secs(120)),
        };
        let state = record_outcome(
            &mut records,
            &history,
            &first.send[0],
            &failed,
            at(1),
            &settings(),
        );
        assert_eq!(state, DeliveryState::Retrying);
        let next = records[0].next_attempt_at.clone().unwrap().0;
        assert!(next >= at(121), "Retry-After is a lower bound: {next}");
        // Not due yet: nothing to send, wake at nextAttemptAt.
        let waiting = plan(&history, &records, at(60), &settings());
        assert!(waiting.send.is_empty());
        assert_eq!(waiting.wake_at, Some(next));
        // Due: sent again.
        let due = plan(&history, &records, next, &settings());
        assert_eq!(due.send.len(), 1);
        // Past the retry window: given up, never sent.
        let late = plan(&history, &records, at(3601), &settings());
        assert!(late.send.is_empty());
        assert_eq!(late.given_up, 1);
        assert_eq!(late.records[0].state, DeliveryState::Failed);
    }

    #[test]
    fn a_new_entry_waits_behind_an_earlier_retry_and_keeps_the_order() {
        let mut history = vec![entry(0, "Activated")];
        let first = plan(&history, &[], at(1), &settings());
        let mut records = first.records;
        let failed = Outcome::NotDelivered {
            error: "HTTP 500".into(),
            attempts: 2,
            permanent: false,
            retry_after: None,
        };
        record_outcome(
            &mut records,
            &history,
            &first.send[0],
            &failed,
            at(1),
            &settings(),
        );
        let due = records[0].next_attempt_at.clone().unwrap().0;
        history.push(entry(2, "Released"));
        let waiting = plan(&history, &records, at(2), &settings());
        assert!(
            waiting.send.is_empty(),
            "Released must not overtake Activated"
        );
        assert_eq!(waiting.records.len(), 2);
        assert_eq!(waiting.records[1].state, DeliveryState::Retrying);
        assert_eq!(waiting.records[1].next_attempt_at, Some(Time(due)));
        // Long outage: the waiting entry is not skipped as old; both go in order when due.
        let later = plan(&history, &waiting.records, due, &settings());
        let events: Vec<&str> = later.send.iter().map(|p| p.event.as_str()).collect();
        assert_eq!(events, ["Activated", "Released"]);
    }

    #[test]
    fn permanent_errors_fail_at_once() {
        let history = vec![entry(0, "Released")];
        let first = plan(&history, &[], at(1), &settings());
        let mut records = first.records;
        let state = record_outcome(
            &mut records,
            &history,
            &first.send[0],
            &Outcome::NotDelivered {
                error: "no_service".into(),
                attempts: 1,
                permanent: true,
                retry_after: None,
            },
            at(1),
            &settings(),
        );
        assert_eq!(state, DeliveryState::Failed);
        assert!(plan(&history, &records, at(2), &settings()).send.is_empty());
    }

    #[test]
    fn kill_switch_entry_rides_on_the_planned_message() {
        let history = vec![
            entry(0, REASON_KILL_SWITCH_DRY_RUN),
            entry(0, REASON_PLANNED),
        ];
        let result = plan(&history, &[], at(1), &settings());
        assert_eq!(result.send.len(), 1);
        assert_eq!(result.send[0].event, REASON_PLANNED);
        assert_eq!(result.send[0].folded.len(), 1);
        let mut records = result.records;
        record_outcome(
            &mut records,
            &history,
            &result.send[0],
            &Outcome::Delivered { attempts: 1 },
            at(1),
            &settings(),
        );
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.state == DeliveryState::Delivered));
        assert_eq!(
            records[0].event, REASON_KILL_SWITCH_DRY_RUN,
            "history order"
        );
        // A lone kill switch entry (no sibling) gets its own message.
        let lone = vec![entry(5, REASON_KILL_SWITCH_DRY_RUN)];
        assert_eq!(plan(&lone, &[], at(6), &settings()).send.len(), 1);
    }

    #[test]
    fn repeated_events_in_one_second_get_distinct_keys() {
        let history = vec![entry(0, "DriftRepaired"), entry(0, "DriftRepaired")];
        assert_ne!(key_for(&history, 0), key_for(&history, 1));
        assert_eq!(plan(&history, &[], at(1), &settings()).send.len(), 2);
    }

    #[test]
    fn records_for_entries_gone_from_history_are_dropped() {
        let history = vec![entry(0, "Activated")];
        let stale = NotificationRecord {
            key: "2000-01-01T00:00:00Z/Planned".into(),
            event: "Planned".into(),
            state: DeliveryState::Delivered,
            attempts: 1,
            last_attempt_at: None,
            next_attempt_at: None,
            last_error: None,
            message: None,
        };
        let result = plan(&history, &[stale], at(1), &settings());
        assert!(result.records.is_empty());
    }
}
