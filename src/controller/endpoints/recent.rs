//! The latest signal deliveries and what became of them (accepted, refused and why), kept in a
//! bounded ring for people to read (the dashboard's Signals page, decision 184). It records what
//! the endpoints answered, never a request's body or headers (no API key, no payload).

use std::collections::VecDeque;
use std::sync::Mutex;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;

/// How many deliveries are kept by default.
pub const DEFAULT_CAPACITY: usize = 200;
/// The longest reason kept (characters).
pub const MAX_REASON_CHARS: usize = 512;

/// One delivery as answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// When the answer was sent.
    pub at: Timestamp,
    /// `sns` or `events`.
    pub endpoint: String,
    /// One of the endpoints' `OUTCOME_*` labels.
    pub outcome: String,
    /// The HTTP status answered.
    pub status: u16,
    /// True when the signal was taken (2xx and evaluated by intake).
    pub accepted: bool,
    /// The answer's reason, as the sender saw it.
    pub reason: String,
}

/// The ring of recent deliveries; newest last. `changes` ticks on every record.
pub struct RecentSignals {
    capacity: usize,
    ring: Mutex<VecDeque<Delivery>>,
    sequence: watch::Sender<u64>,
}

impl Default for RecentSignals {
    fn default() -> Self {
        RecentSignals::new(DEFAULT_CAPACITY)
    }
}

impl RecentSignals {
    /// A ring keeping the last `capacity` deliveries (at least one).
    pub fn new(capacity: usize) -> RecentSignals {
        RecentSignals {
            capacity: capacity.max(1),
            ring: Mutex::new(VecDeque::new()),
            sequence: watch::Sender::new(0),
        }
    }

    /// Records one answer.
    pub fn record(&self, mut delivery: Delivery) {
        if delivery.reason.chars().count() > MAX_REASON_CHARS {
            delivery.reason = delivery.reason.chars().take(MAX_REASON_CHARS).collect();
        }
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(delivery);
        }
        self.sequence.send_modify(|n| *n += 1);
    }

    /// The kept deliveries, newest first.
    pub fn newest_first(&self) -> Vec<Delivery> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().cloned().collect()
    }

    /// Ticks once per recorded delivery.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.sequence.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: usize) -> Delivery {
        Delivery {
            at: Timestamp::UNIX_EPOCH,
            endpoint: "events".into(),
            outcome: "Accepted".into(),
            status: 200,
            accepted: true,
            reason: format!("signal {n}"),
        }
    }

    #[test]
    fn keeps_the_newest_within_capacity_and_cuts_long_reasons() {
        let recent = RecentSignals::new(3);
        let mut changes = recent.changes();
        for n in 0..5 {
            recent.record(delivery(n));
        }
        let kept: Vec<String> = recent
            .newest_first()
            .into_iter()
            .map(|d| d.reason)
            .collect();
        assert_eq!(kept, ["signal 4", "signal 3", "signal 2"]);
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 5);
        let mut long = delivery(0);
        long.reason = "x".repeat(MAX_REASON_CHARS * 2);
        recent.record(long);
        assert_eq!(recent.newest_first()[0].reason.len(), MAX_REASON_CHARS);
    }
}
