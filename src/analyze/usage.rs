//! Aggregation of CloudTrail usage: records (or pre-aggregated rows from Athena) of the analysed
//! principal become one group per (event source, event name, allowed/denied) with counts, first
//! and last seen, a sample event id, regions, resources (bounded) and the hints dependent-action
//! inference needs; plus the coverage counters (events read, matched, outside the window). Memory
//! is proportional to distinct groups, never to records. It must not map events to actions nor do
//! I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::record::{PrincipalMatcher, Record};

/// Distinct resources remembered per group; beyond this the group is not narrowed.
pub const RESOURCE_LIMIT: usize = 64;
/// Distinct hint values (passed roles, keys) remembered per group.
pub const HINT_LIMIT: usize = 32;

/// Error codes that mean "the call was not authorized".
pub const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "Client.UnauthorizedOperation",
    "UnauthorizedAccess",
    "AuthorizationError",
    "AuthorizationErrorException",
    "Forbidden",
];

/// Whether an error code means the call was denied by IAM.
pub fn is_access_denied(code: &str) -> bool {
    ACCESS_DENIED_CODES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(code))
        || code.contains("AccessDenied")
        || code.contains("Unauthorized")
}

/// Where usage was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Origin {
    /// CloudTrail Event History (`LookupEvents`): management events, 90 days.
    LookupEvents,
    /// Trail log files in S3.
    S3,
    /// Trail log files in a local directory.
    Files,
    /// An Athena table over trail logs.
    Athena,
}

impl Origin {
    /// Whether this source carries data events (S3 objects, Lambda invoke, DynamoDB items).
    pub fn has_data_events(self) -> bool {
        !matches!(self, Origin::LookupEvents)
    }
}

/// The analysis window as CloudTrail time strings (`YYYY-MM-DDTHH:MM:SSZ`), end exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First instant included.
    pub start: String,
    /// First instant excluded.
    pub end: String,
}

impl Window {
    /// Whether a CloudTrail `eventTime` falls inside the window.
    pub fn contains(&self, event_time: &str) -> bool {
        event_time >= self.start.as_str() && event_time < self.end.as_str()
    }
}

/// A set that stops growing at a limit and remembers that it overflowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Bounded {
    /// The values kept (all of them unless `overflow`).
    pub values: BTreeSet<String>,
    /// More distinct values were seen than kept.
    pub overflow: bool,
}

impl Bounded {
    /// Adds a value, up to `limit` distinct values.
    pub fn add(&mut self, value: &str, limit: usize) {
        if self.values.contains(value) {
            return;
        }
        if self.values.len() >= limit {
            self.overflow = true;
        } else {
            self.values.insert(value.to_string());
        }
    }
    /// Adds every value of another set.
    pub fn merge(&mut self, other: &Bounded, limit: usize) {
        for v in &other.values {
            self.add(v, limit);
        }
        self.overflow |= other.overflow;
    }
}

/// What a group's calls say about dependent actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hints {
    /// Roles passed to the service (ARNs as given in the request).
    pub passed_roles: Bounded,
    /// A role was passed in a way the log does not name (EC2 instance profiles).
    pub passed_role_unnamed: bool,
    /// Some calls used SSE-KMS.
    pub sse_kms: bool,
    /// KMS keys named by SSE-KMS or `kmsKeyId`.
    pub kms_keys: Bounded,
    /// Some calls tagged resources on create.
    pub tag_on_create: bool,
}

/// One (event source, event name, outcome) group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Calls counted.
    pub count: u64,
    /// Earliest `eventTime`.
    pub first_seen: String,
    /// Latest `eventTime`.
    pub last_seen: String,
    /// One event id (the earliest seen), for looking the call up.
    pub sample_event_id: String,
    /// Regions the calls were made in.
    pub regions: BTreeSet<String>,
    /// Resource ARNs named by the calls (S3 object keys generalized to `bucket/*`).
    pub resources: Bounded,
    /// Calls that named no resource.
    pub unnamed: u64,
    /// Sources the calls were read from.
    pub origins: BTreeSet<Origin>,
    /// Error codes seen, with counts.
    pub error_codes: BTreeMap<String, u64>,
    /// Inference hints.
    pub hints: Hints,
}

/// Group key: event source, event name, and whether the calls were denied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupKey {
    /// `s3.amazonaws.com`.
    pub source: String,
    /// `GetObject`.
    pub event: String,
    /// The calls failed with an access-denied error.
    pub denied: bool,
}

/// Coverage counters of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Records read from every source.
    pub events_read: u64,
    /// Records of the analysed principal inside the window.
    pub events_matched: u64,
    /// Records outside the window (skipped).
    pub events_outside_window: u64,
    /// Records that were not API calls (service events) or had no event name.
    pub events_skipped: u64,
    /// Earliest event time read (any principal).
    pub earliest: Option<String>,
    /// Latest event time read (any principal).
    pub latest: Option<String>,
    /// Regions of all records read.
    pub regions_seen: BTreeSet<String>,
}

/// One pre-aggregated row (Athena's GROUP BY result): everything a record would contribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateRow {
    /// The caller ARN (session issuer or user ARN).
    pub caller_arn: String,
    /// Event source.
    pub source: String,
    /// Event name.
    pub event: String,
    /// Error code, empty when none.
    pub error_code: String,
    /// Region.
    pub region: String,
    /// One resource ARN, empty when none.
    pub resource: String,
    /// Calls in the row.
    pub count: u64,
    /// Earliest event time.
    pub first_seen: String,
    /// Latest event time.
    pub last_seen: String,
    /// One event id.
    pub sample_event_id: String,
    /// A role passed in the request, empty when none.
    pub passed_role: String,
    /// A KMS key named by SSE-KMS, empty when none.
    pub kms_key: String,
}

/// The usage of one principal, aggregated.
#[derive(Debug, Clone)]
pub struct Usage {
    matcher: PrincipalMatcher,
    window: Option<Window>,
    /// The groups.
    pub groups: BTreeMap<GroupKey, Group>,
    /// Coverage counters.
    pub counters: Counters,
}

fn generalize_resource(kind: Option<&str>, arn: &str) -> String {
    if kind == Some("AWS::S3::Object")
        && let Some(rest) = arn.strip_prefix("arn:")
    {
        // arn:PARTITION:s3:::bucket/key → arn:PARTITION:s3:::bucket/*
        if let Some(slash) = rest.find('/') {
            return format!("arn:{}/*", &rest[..slash]);
        }
    }
    arn.to_string()
}

fn update_times(group: &mut Group, first: &str, last: &str, event_id: &str) {
    if group.first_seen.is_empty() || first < group.first_seen.as_str() {
        group.first_seen = first.to_string();
        if !event_id.is_empty() {
            group.sample_event_id = event_id.to_string();
        }
    }
    if group.sample_event_id.is_empty() {
        group.sample_event_id = event_id.to_string();
    }
    if last > group.last_seen.as_str() {
        group.last_seen = last.to_string();
    }
}

impl Usage {
    /// Usage of the principal the matcher names, limited to `window` when given.
    pub fn new(matcher: PrincipalMatcher, window: Option<Window>) -> Usage {
        Usage {
            matcher,
            window,
            groups: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// The window, if any.
    pub fn window(&self) -> Option<&Window> {
        self.window.as_ref()
    }

    /// The analysed principal.
    pub fn principal(&self) -> &crate::principal::PrincipalArn {
        self.matcher.target()
    }

    fn see_time(&mut self, time: &str, region: Option<&str>) {
        let c = &mut self.counters;
        if c.earliest.as_deref().is_none_or(|e| time < e) {
            c.earliest = Some(time.to_string());
        }
        if c.latest.as_deref().is_none_or(|l| time > l) {
            c.latest = Some(time.to_string());
        }
        if let Some(region) = region
            && !c.regions_seen.contains(region)
        {
            c.regions_seen.insert(region.to_string());
        }
    }

    /// Adds one record (any principal; others are only counted).
    pub fn add_record(&mut self, record: &Record, origin: Origin) {
        self.counters.events_read += 1;
        let time = record.event_time.get().unwrap_or_default();
        let region = record.aws_region.get();
        self.see_time(time, region);
        if let Some(window) = &self.window
            && !window.contains(time)
        {
            self.counters.events_outside_window += 1;
            return;
        }
        let (Some(source), Some(event)) = (record.event_source.get(), record.event_name.get())
        else {
            self.counters.events_skipped += 1;
            return;
        };
        if record.event_type.get() == Some("AwsServiceEvent") {
            self.counters.events_skipped += 1;
            return;
        }
        if !self.matcher.matches(record) {
            return;
        }
        self.counters.events_matched += 1;
        let error = record.error_code.get().unwrap_or_default();
        let key = GroupKey {
            source: source.to_string(),
            event: event.to_string(),
            denied: !error.is_empty() && is_access_denied(error),
        };
        let group = self.groups.entry(key).or_default();
        group.count += 1;
        update_times(group, time, time, record.event_id.get().unwrap_or_default());
        if let Some(region) = region
            && !group.regions.contains(region)
        {
            group.regions.insert(region.to_string());
        }
        if !group.origins.contains(&origin) {
            group.origins.insert(origin);
        }
        if !error.is_empty() {
            *group.error_codes.entry(error.to_string()).or_default() += 1;
        }
        let mut named = false;
        for resource in record.resources() {
            if let Some(arn) = resource.arn.get() {
                named = true;
                group.resources.add(
                    &generalize_resource(resource.kind.get(), arn),
                    RESOURCE_LIMIT,
                );
            }
        }
        if !named {
            group.unnamed += 1;
        }
        let hints = &mut group.hints;
        if let Some(p) = record.request_parameters() {
            for role in [
                &p.role,
                &p.role_arn,
                &p.role_arn_upper,
                &p.execution_role_arn,
                &p.task_role_arn,
                &p.service_role,
            ] {
                if let Some(role) = role.get() {
                    hints.passed_roles.add(role, HINT_LIMIT);
                }
            }
            if p.iam_instance_profile.is_some() {
                hints.passed_role_unnamed = true;
            }
            if p.tag_specification_set.is_some() {
                hints.tag_on_create = true;
            }
            if p.sse.get() == Some("aws:kms") {
                hints.sse_kms = true;
            }
            for key in [&p.sse_kms_key_id, &p.kms_key_id] {
                if let Some(key) = key.get() {
                    hints.kms_keys.add(key, HINT_LIMIT);
                }
            }
        }
        if let Some(r) = record.response_elements() {
            if r.sse.get() == Some("aws:kms") {
                hints.sse_kms = true;
            }
            if let Some(key) = r.sse_kms_key_id.get() {
                hints.sse_kms = true;
                hints.kms_keys.add(key, HINT_LIMIT);
            }
        }
        if let Some(a) = record.additional_event_data()
            && a.sse_applied.get() == Some("SSE_KMS")
        {
            hints.sse_kms = true;
        }
    }

    /// Adds one pre-aggregated row (Athena).
    pub fn add_row(&mut self, row: &AggregateRow, origin: Origin) {
        self.counters.events_read += row.count;
        self.see_time(&row.first_seen, Some(&row.region));
        self.see_time(&row.last_seen, Some(&row.region));
        if !self.matcher.matches_arn(&row.caller_arn) {
            return;
        }
        self.counters.events_matched += row.count;
        let key = GroupKey {
            source: row.source.clone(),
            event: row.event.clone(),
            denied: !row.error_code.is_empty() && is_access_denied(&row.error_code),
        };
        let group = self.groups.entry(key).or_default();
        group.count += row.count;
        update_times(group, &row.first_seen, &row.last_seen, &row.sample_event_id);
        if !row.region.is_empty() {
            group.regions.insert(row.region.clone());
        }
        group.origins.insert(origin);
        if !row.error_code.is_empty() {
            *group.error_codes.entry(row.error_code.clone()).or_default() += row.count;
        }
        if row.resource.is_empty() {
            group.unnamed += row.count;
        } else {
            let kind = (row.resource.starts_with("arn:")
                && row.resource.contains(":s3:::")
                && row.resource.contains('/'))
            .then_some("AWS::S3::Object");
            group
                .resources
                .add(&generalize_resource(kind, &row.resource), RESOURCE_LIMIT);
        }
        if !row.passed_role.is_empty() {
            group.hints.passed_roles.add(&row.passed_role, HINT_LIMIT);
        }
        if !row.kms_key.is_empty() {
            group.hints.sse_kms = true;
            group.hints.kms_keys.add(&row.kms_key, HINT_LIMIT);
        }
    }

    /// An empty usage with the same principal, window and matcher cache: the part of a scan
    /// that one worker reads, merged back with [`Usage::merge`].
    pub fn fork(&self) -> Usage {
        Usage {
            matcher: self.matcher.clone(),
            window: self.window.clone(),
            groups: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// Adds the usage of records read after this usage's own (the next file of a scan). The
    /// result equals reading both in that order, except which values a bounded set keeps once
    /// it overflowed (an overflowed set's values are not used).
    pub fn merge(&mut self, other: Usage) {
        let c = other.counters;
        self.counters.events_read += c.events_read;
        self.counters.events_matched += c.events_matched;
        self.counters.events_outside_window += c.events_outside_window;
        self.counters.events_skipped += c.events_skipped;
        for time in [c.earliest, c.latest].into_iter().flatten() {
            self.see_time(&time, None);
        }
        self.counters.regions_seen.extend(c.regions_seen);
        for (key, theirs) in other.groups {
            let Some(group) = self.groups.get_mut(&key) else {
                self.groups.insert(key, theirs);
                continue;
            };
            group.count += theirs.count;
            update_times(
                group,
                &theirs.first_seen,
                &theirs.last_seen,
                &theirs.sample_event_id,
            );
            group.regions.extend(theirs.regions);
            group.resources.merge(&theirs.resources, RESOURCE_LIMIT);
            group.unnamed += theirs.unnamed;
            group.origins.extend(theirs.origins);
            for (code, n) in theirs.error_codes {
                *group.error_codes.entry(code).or_default() += n;
            }
            let (h, t) = (&mut group.hints, theirs.hints);
            h.passed_roles.merge(&t.passed_roles, HINT_LIMIT);
            h.passed_role_unnamed |= t.passed_role_unnamed;
            h.sse_kms |= t.sse_kms;
            h.kms_keys.merge(&t.kms_keys, HINT_LIMIT);
            h.tag_on_create |= t.tag_on_create;
        }
    }

    /// True when no call of the principal was found.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalArn;

    fn usage() -> Usage {
        Usage::new(
            PrincipalMatcher::new(PrincipalArn::parse("arn:aws:iam::123456789012:role/r").unwrap()),
            Some(Window {
                start: "2024-05-01T00:00:00Z".into(),
                end: "2024-05-02T00:00:00Z".into(),
            }),
        )
    }

    fn record(time: &str, event: &str, error: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"{event}","awsRegion":"eu-west-1","eventID":"id-{time}","errorCode":"{error}","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/r/s"}},"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::b/k/{time}"}},{{"type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::b"}}]}}"#
        )
    }

    #[test]
    fn groups_counts_times_and_generalizes_object_keys() {
        let mut u = usage();
        for (t, e) in [
            ("2024-05-01T10:00:00Z", ""),
            ("2024-05-01T09:00:00Z", ""),
            ("2024-05-01T11:00:00Z", "AccessDenied"),
            ("2024-05-03T11:00:00Z", ""),
        ] {
            let text = record(t, "GetObject", e);
            u.add_record(&Record::parse(&text).unwrap(), Origin::Files);
        }
        assert_eq!(u.counters.events_read, 4);
        assert_eq!(u.counters.events_outside_window, 1);
        assert_eq!(u.counters.events_matched, 3);
        let allowed = &u.groups[&GroupKey {
            source: "s3.amazonaws.com".into(),
            event: "GetObject".into(),
            denied: false,
        }];
        assert_eq!(allowed.count, 2);
        assert_eq!(allowed.first_seen, "2024-05-01T09:00:00Z");
        assert_eq!(allowed.sample_event_id, "id-2024-05-01T09:00:00Z");
        assert_eq!(
            allowed.resources.values.iter().cloned().collect::<Vec<_>>(),
            vec!["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
        );
        assert!(u.groups.keys().any(|k| k.denied));
    }

    #[test]
    fn bounded_sets_overflow_instead_of_growing() {
        let mut b = Bounded::default();
        for i in 0..10 {
            b.add(&i.to_string(), 3);
        }
        assert_eq!(b.values.len(), 3);
        assert!(b.overflow);
    }
}
