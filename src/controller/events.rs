//! Kubernetes Events (`events.k8s.io/v1`) about our objects, with repeats folded into a series.
//!
//! The wire behaviour is the one `kubectl describe` and kube-runtime's own recorder expect: the
//! first occurrence creates an Event named `<object>.<nanoseconds in hex>`; the same
//! (type, reason, action, object) again within [`SERIES_WINDOW`] merge-patches that Event's
//! `series` (count and last observed time) instead of creating another. What differs is what is
//! remembered: a short key and the Event's name, not a copy of every Event for six minutes, and
//! no more than [`SERIES_CAPACITY`] of them (decision 151). A cold start that writes one Event per
//! quarantine no longer holds tens of megabytes of Events it will never repeat.

use crate::controller::reconcile::truncate as cut;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a published Event can still be continued as a series (kube-runtime's figure).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How many recent Events are remembered for series; beyond it a repeat creates a new Event.
pub const SERIES_CAPACITY: usize = 2048;

/// Severity of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
    }
}

/// One Event to publish.
#[derive(Clone, Debug)]
pub struct Occurrence<'a> {
    /// Normal or Warning.
    pub severity: Severity,
    /// PascalCase reason (at most 128 bytes).
    pub reason: &'a str,
    /// PascalCase action (at most 128 bytes).
    pub action: &'a str,
    /// Human-readable note; cut to 1 kB on a character boundary.
    pub note: &'a str,
}

/// What is remembered of a published Event.
struct Published {
    name: Box<str>,
    namespace: Box<str>,
    count: i32,
    last: Instant,
}

#[derive(Default)]
struct Series {
    entries: HashMap<Box<str>, Published>,
    /// No entry expires before this instant: sweeping earlier finds nothing.
    next_sweep: Option<Instant>,
}

impl Series {
    /// Drops the entries older than the window, at most once per expiry.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.last) < SERIES_WINDOW);
        self.next_sweep = self
            .entries
            .values()
            .map(|entry| entry.last + SERIES_WINDOW)
            .min();
    }

    /// The series to continue for `key`, counting this occurrence.
    fn continue_series(&mut self, key: &str, now: Instant) -> Option<(Box<str>, Box<str>, i32)> {
        self.sweep(now);
        let entry = self.entries.get_mut(key)?;
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        Some((entry.name.clone(), entry.namespace.clone(), entry.count))
    }

    /// Remembers a newly created Event, when there is room.
    fn remember(&mut self, key: Box<str>, name: &str, namespace: &str, now: Instant) {
        if self.entries.len() >= SERIES_CAPACITY && !self.entries.contains_key(&key) {
            return;
        }
        let expires = now + SERIES_WINDOW;
        self.next_sweep = Some(self.next_sweep.map_or(expires, |at| at.min(expires)));
        self.entries.insert(
            key,
            Published {
                name: name.into(),
                namespace: namespace.into(),
                count: 1,
                last: now,
            },
        );
    }

    fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Publishes Events as one reporting controller (and instance, e.g. the pod name).
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

impl EventRecorder {
    /// A recorder reporting as `controller`, instance `instance` (the controller name when none).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> EventRecorder {
        EventRecorder {
            client,
            instance: instance.unwrap_or_else(|| controller.to_string()),
            controller: controller.to_string(),
            series: Mutex::new(Series::default()),
        }
    }

    /// How many Events are remembered for series now (for tests and the benchmark).
    pub fn remembered(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `occurrence` about `regarding` in the object's namespace ("default" for
    /// cluster-scoped objects): a new Event, or the next count of a recent identical one.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        occurrence: &Occurrence<'_>,
    ) -> Result<(), kube::Error> {
        let key = series_key(regarding, occurrence);
        let now = Instant::now();
        let continued = self.lock().continue_series(&key, now);
        if let Some((name, namespace, count)) = continued {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "series": EventSeries {
                    count,
                    last_observed_time: MicroTime(jiff::Timestamp::now()),
                }
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (the API server's Event TTL, or by hand): start afresh.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.lock().forget(&key);
                }
                Err(error) => return Err(error),
            }
        }
        let event = self.build(regarding, occurrence);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event).await?;
        self.lock().remember(key, &name, &namespace, Instant::now());
        Ok(())
    }

    fn build(&self, regarding: &ObjectReference, occurrence: &Occurrence<'_>) -> Event {
        let now = jiff::Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_string()),
                ),
                ..ObjectMeta::default()
            },
            type_: Some(occurrence.severity.as_str().to_string()),
            reason: Some(cut(occurrence.reason, 128)),
            action: Some(cut(occurrence.action, 128)),
            note: Some(cut(occurrence.note, 1024)),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// What makes two Events the same series: severity, reason, action and the object.
fn series_key(regarding: &ObjectReference, occurrence: &Occurrence<'_>) -> Box<str> {
    let part = |value: &Option<String>| value.as_deref().unwrap_or("").to_string();
    [
        occurrence.severity.as_str().to_string(),
        occurrence.reason.to_string(),
        occurrence.action.to_string(),
        part(&regarding.api_version),
        part(&regarding.kind),
        part(&regarding.namespace),
        part(&regarding.name),
        part(&regarding.uid),
    ]
    .join("\u{0}")
    .into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_continues_the_series() {
        let mut series = Series::default();
        let start = Instant::now();
        assert!(series.continue_series("k", start).is_none());
        series.remember("k".into(), "q.1", "ns", start);
        let next = series.continue_series("k", start + Duration::from_secs(60));
        assert_eq!(next, Some(("q.1".into(), "ns".into(), 2)));
        let third = series.continue_series("k", start + Duration::from_secs(120));
        assert_eq!(third.map(|(_, _, count)| count), Some(3));
    }

    #[test]
    fn an_entry_older_than_the_window_is_forgotten() {
        let mut series = Series::default();
        let start = Instant::now();
        series.remember("k".into(), "q.1", "ns", start);
        assert!(
            series
                .continue_series("k", start + SERIES_WINDOW + Duration::from_secs(1))
                .is_none()
        );
        assert!(series.entries.is_empty());
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut series = Series::default();
        let start = Instant::now();
        for i in 0..SERIES_CAPACITY + 100 {
            series.remember(format!("k{i}").into(), "q", "ns", start);
        }
        assert_eq!(series.entries.len(), SERIES_CAPACITY);
        // Once the old ones expire, new ones are remembered again.
        let later = start + SERIES_WINDOW + Duration::from_secs(1);
        series.sweep(later);
        series.remember("fresh".into(), "q", "ns", later);
        assert_eq!(series.entries.len(), 1);
    }
}
