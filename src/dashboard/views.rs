//! The controller's pages as data and as HTML: Quarantines (list and one), Policies, Signals.
//! Pure: objects from the caches in, a serialisable view and its markup out. What is shown is
//! what the objects hold; nothing secret is in them (a policy's Slack webhook is shown only as
//! "configured", never its Secret or parameter name's content).

use std::collections::BTreeMap;

use jiff::Timestamp;
use maud::{Markup, html};
use serde::Serialize;

use super::layout::badge;
use super::svg;
use crate::controller::crd::{GuardrailPolicy, Quarantine};
use crate::controller::endpoints::recent::Delivery;
use crate::principal::{Exclusion, PrincipalSet};

/// Rows per page unless asked otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most rows one page shows.
pub const MAX_LIMIT: usize = 1000;

/// The signal behind a quarantine.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalView {
    /// `CostAnomaly`, `Budget`, `Manual`.
    pub source: String,
    /// The signal's id.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// The service, when known.
    pub service: Option<String>,
    /// Impact in USD.
    pub impact_usd: f64,
    /// When it was observed.
    pub observed_at: Timestamp,
    /// The sender's summary.
    pub summary: Option<String>,
}

/// One quarantine as a table row (and the JSON of `/dashboard/api/quarantines`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Phase (`Pending` before the first status).
    pub phase: String,
    /// The policy.
    pub policy: String,
    /// The mode.
    pub mode: String,
    /// Target ARNs.
    pub targets: Vec<String>,
    /// `attached/all`, as status says.
    pub targets_summary: Option<String>,
    /// Created.
    pub created_at: Option<Timestamp>,
    /// When the deny goes.
    pub expires_at: Option<Timestamp>,
    /// When a pending approval times out.
    pub approval_deadline: Option<Timestamp>,
    /// Who approved, as recorded in status by the controller.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<Timestamp>,
    /// Who rejected.
    pub rejected_by: Option<String>,
    /// When it was released.
    pub released_at: Option<Timestamp>,
    /// Why.
    pub release_reason: Option<String>,
    /// The signal that created it.
    pub signal: Option<SignalView>,
    /// True for an ended quarantine known only by its outline (full object not cached).
    pub outline: bool,
}

fn ts(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// The row of `q`.
pub fn quarantine_row(q: &Quarantine, outline: bool) -> QuarantineRow {
    let status = q.status.clone().unwrap_or_default();
    QuarantineRow {
        namespace: q.metadata.namespace.clone().unwrap_or_default(),
        name: q.metadata.name.clone().unwrap_or_default(),
        phase: status
            .phase
            .map_or_else(|| "Pending".to_string(), |p| p.as_str().to_string()),
        policy: q.spec.policy_ref.name.clone(),
        mode: q.spec.mode.as_str().to_string(),
        targets: q.spec.targets.iter().map(|t| t.arn.clone()).collect(),
        targets_summary: status.targets_summary.clone(),
        created_at: ts(&q.metadata.creation_timestamp),
        expires_at: ts(&status.expires_at),
        approval_deadline: ts(&status.approval_deadline),
        approved_by: status.approved_by.clone(),
        approved_at: ts(&status.approved_at),
        rejected_by: status.rejected_by.clone(),
        released_at: ts(&status.released_at),
        release_reason: status.release_reason.clone(),
        signal: q.spec.signal.as_ref().map(|s| SignalView {
            source: s.source.as_str().to_string(),
            id: s.id.clone(),
            account_id: s.account_id.clone(),
            service: s.service.clone(),
            impact_usd: s.impact_usd,
            observed_at: s.observed_at.0,
            summary: s.summary.clone(),
        }),
        outline,
    }
}

/// How urgent a phase is for people (lower first).
fn rank(phase: &str) -> u8 {
    match phase {
        "PendingApproval" => 0,
        "Failed" => 1,
        "Active" => 2,
        "Releasing" => 3,
        "Pending" => 4,
        "DryRun" => 5,
        _ => 6,
    }
}

/// What the list is filtered by (`?phase=&namespace=&policy=&q=&limit=&offset=`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    /// Only this phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// Only this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only this policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// Name, target or approver contains this.
    #[serde(default)]
    pub q: Option<String>,
    /// Rows per page.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Rows skipped.
    #[serde(default)]
    pub offset: Option<usize>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Filter {
    fn keeps(&self, row: &QuarantineRow) -> bool {
        nonempty(&self.phase).is_none_or(|p| row.phase == p)
            && nonempty(&self.namespace).is_none_or(|n| row.namespace == n)
            && nonempty(&self.policy).is_none_or(|p| row.policy == p)
            && nonempty(&self.q).is_none_or(|q| {
                let q = q.to_ascii_lowercase();
                row.name.to_ascii_lowercase().contains(&q)
                    || row
                        .targets
                        .iter()
                        .any(|t| t.to_ascii_lowercase().contains(&q))
                    || row
                        .approved_by
                        .as_deref()
                        .is_some_and(|a| a.to_ascii_lowercase().contains(&q))
            })
    }

    /// The effective page size.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

/// One page of the quarantine list, with counts over everything.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineList {
    /// Quarantines per phase (all, unfiltered).
    pub phases: BTreeMap<String, usize>,
    /// How many match the filter.
    pub matching: usize,
    /// Rows skipped.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
    /// The rows of this page, most urgent first.
    pub items: Vec<QuarantineRow>,
}

/// Builds the list from the cached quarantines and the ended outlines.
pub fn quarantine_list(
    live: &[std::sync::Arc<Quarantine>],
    ended: &[Quarantine],
    filter: &Filter,
) -> QuarantineList {
    let mut rows: Vec<QuarantineRow> = live
        .iter()
        .map(|q| quarantine_row(q, false))
        .chain(ended.iter().map(|q| quarantine_row(q, true)))
        .collect();
    let mut phases = BTreeMap::new();
    for row in &rows {
        *phases.entry(row.phase.clone()).or_insert(0) += 1;
    }
    rows.retain(|r| filter.keeps(r));
    let matching = rows.len();
    let limit = filter.limit();
    let offset = filter.offset.unwrap_or(0).min(matching);
    // Open ones by the soonest deadline or expiry; ended ones newest first.
    let soonest = |r: &QuarantineRow| match r.approval_deadline.or(r.expires_at) {
        Some(t) if rank(&r.phase) < 6 => t.as_second(),
        _ => r.released_at.map_or(i64::MAX, |t| -t.as_second()),
    };
    // Only the rows of the page are sorted fully: select the first offset+limit, then sort them.
    let key = |r: &QuarantineRow| {
        (
            rank(&r.phase),
            soonest(r),
            r.namespace.clone(),
            r.name.clone(),
        )
    };
    let wanted = (offset + limit).min(rows.len());
    if wanted < rows.len() && wanted > 0 {
        rows.select_nth_unstable_by_key(wanted - 1, key);
        rows.truncate(wanted);
    }
    rows.sort_by_cached_key(key);
    let items = rows.into_iter().skip(offset).take(limit).collect();
    QuarantineList {
        phases,
        matching,
        offset,
        limit,
        items,
    }
}

/// A countdown: the server writes the text, the script keeps it moving.
pub fn countdown(at: Timestamp, now: Timestamp) -> Markup {
    let seconds = at.duration_since(now).as_secs();
    let text = if seconds >= 0 {
        format!("in {}", span(seconds as u64))
    } else {
        format!("{} ago", span(seconds.unsigned_abs()))
    };
    html! { time datetime=(at.to_string()) data-countdown title=(at.to_string()) { (text) } }
}

fn span(s: u64) -> String {
    let (d, h, m, r) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {r}s")
    } else if m > 0 {
        format!("{m}m {r}s")
    } else {
        format!("{r}s")
    }
}

fn when(t: Option<Timestamp>, now: Timestamp) -> Markup {
    match t {
        Some(t) => countdown(t, now),
        None => html! { span.muted { "—" } },
    }
}

fn detail_href(row: &QuarantineRow) -> String {
    format!("{}/quarantines/{}/{}", super::BASE, row.namespace, row.name)
}

/// The Quarantines page's content.
pub fn quarantines_page(list: &QuarantineList, filter: &Filter, now: Timestamp) -> Markup {
    let bars: Vec<svg::Bar> = [
        "PendingApproval",
        "Active",
        "Releasing",
        "Failed",
        "DryRun",
        "Released",
        "Rejected",
        "Expired",
    ]
    .iter()
    .map(|p| svg::Bar {
        label: (*p).to_string(),
        value: *list.phases.get(*p).unwrap_or(&0) as f64,
        muted: matches!(*p, "Released" | "Rejected" | "Expired"),
    })
    .collect();
    let total: usize = list.phases.values().sum();
    let phase_options = [
        "",
        "PendingApproval",
        "Active",
        "Releasing",
        "Failed",
        "DryRun",
        "Pending",
        "Released",
        "Rejected",
        "Expired",
    ];
    html! {
        h1 { "Quarantines" }
        div.cards {
            @for (phase, label) in [("PendingApproval", "Waiting for approval"), ("Active", "Denied now"), ("Failed", "Failed"), ("DryRun", "Dry run")] {
                section.card {
                    h2 { (label) }
                    p.big data-phase-count=(phase) { (list.phases.get(phase).copied().unwrap_or(0)) }
                }
            }
            section.card {
                h2 { "All" }
                p.big { (total) }
            }
        }
        details {
            summary { "Quarantines by phase (chart)" }
            (svg::bars("phase-chart", "Quarantines by phase", "How many quarantines are in each phase now; ended phases in the second colour.", &bars, "", 1))
        }
        form.filters method="get" role="search" aria-label="Filter quarantines" {
            label for="f-phase" { "Phase"
                select id="f-phase" name="phase" {
                    @for p in phase_options {
                        option value=(p) selected[filter.phase.as_deref() == Some(p)] { @if p.is_empty() { "Any" } @else { (p) } }
                    }
                }
            }
            label for="f-namespace" { "Namespace" input id="f-namespace" name="namespace" value=[filter.namespace.as_deref()]; }
            label for="f-policy" { "Policy" input id="f-policy" name="policy" value=[filter.policy.as_deref()]; }
            label for="f-q" { "Name, target or approver" input id="f-q" name="q" value=[filter.q.as_deref()]; }
            button type="submit" { "Filter" }
        }
        div.table-wrap tabindex="0" role="region" aria-labelledby="qt-caption" {
            table id="quarantines" {
                caption id="qt-caption" { (list.matching) " matching, showing " (list.items.len()) " (most urgent first)" }
                thead { tr {
                    th scope="col" { "Quarantine" }
                    th scope="col" { "Phase" }
                    th scope="col" { "Policy" }
                    th scope="col" { "Targets" }
                    th scope="col" { "Expires / decide by" }
                    th scope="col" { "Approved by" }
                    th scope="col" .hide-narrow { "Signal" }
                } }
                tbody {
                    @for row in &list.items {
                        tr data-quarantine={ (row.namespace) "/" (row.name) } {
                            td { a href=(detail_href(row)) { (row.namespace) "/" (row.name) } }
                            td { (badge(&row.phase)) }
                            td { (row.policy) " " span.muted { "(" (row.mode) ")" } }
                            td {
                                @for t in &row.targets { code { (t) } br; }
                                @if let Some(s) = &row.targets_summary { span.muted { (s) " attached" } }
                            }
                            td {
                                @if row.phase == "PendingApproval" { (when(row.approval_deadline, now)) }
                                @else if row.released_at.is_some() { span.muted { "ended " } (when(row.released_at, now)) }
                                @else { (when(row.expires_at, now)) }
                            }
                            td class="approver" { @match &row.approved_by { Some(a) => (a), None => span.muted { "—" } } }
                            td.hide-narrow {
                                @if let Some(s) = &row.signal {
                                    (s.source) " $" (format!("{:.2}", s.impact_usd)) br;
                                    span.muted { (s.account_id) }
                                } @else { span.muted { "—" } }
                            }
                        }
                    }
                }
            }
        }
        @if list.items.is_empty() { p { "No quarantine matches." } }
        (pager(list.offset, list.limit, list.matching, filter))
    }
}

fn pager(offset: usize, limit: usize, matching: usize, filter: &Filter) -> Markup {
    let link = |offset: usize| {
        let mut q = vec![format!("offset={offset}"), format!("limit={limit}")];
        for (k, v) in [
            ("phase", &filter.phase),
            ("namespace", &filter.namespace),
            ("policy", &filter.policy),
            ("q", &filter.q),
        ] {
            if let Some(v) = nonempty(v) {
                q.push(format!("{k}={}", encode(v)));
            }
        }
        format!("?{}", q.join("&"))
    };
    html! {
        nav.pager aria-label="Pages" {
            @if offset > 0 { a href=(link(offset.saturating_sub(limit))) { "← Previous" } }
            @if offset + limit < matching { a href=(link(offset + limit)) { "Next →" } }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// One Event of a quarantine (from `events.k8s.io`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// When.
    pub at: Option<Timestamp>,
    /// `Normal` or `Warning`.
    pub kind: String,
    /// The reason.
    pub reason: String,
    /// The note.
    pub note: String,
    /// How many times.
    pub count: i32,
}

/// The copyable kubectl commands for what a person may do in this phase.
pub fn commands(row: &QuarantineRow) -> Vec<(&'static str, String)> {
    let base = format!(
        "kubectl annotate quarantine {} -n {}",
        row.name, row.namespace
    );
    let mut out = Vec::new();
    match row.phase.as_str() {
        "PendingApproval" => {
            out.push((
                "Approve",
                format!("{base} autoguardrails.io/approve=\"$USER: reason\""),
            ));
            out.push((
                "Reject",
                format!("{base} autoguardrails.io/reject=\"$USER: reason\""),
            ));
        }
        "Active" => {
            out.push((
                "Extend",
                format!("{base} --overwrite autoguardrails.io/extend=\"$USER: 2h\""),
            ));
            out.push((
                "Release now",
                format!("{base} autoguardrails.io/release=\"$USER: reason\""),
            ));
        }
        "Failed" => {
            out.push((
                "Release",
                format!("{base} autoguardrails.io/release=\"$USER: reason\""),
            ));
        }
        _ => {}
    }
    out.push((
        "Describe",
        format!(
            "kubectl describe quarantine {} -n {}",
            row.name, row.namespace
        ),
    ));
    out
}

/// One quarantine with everything status holds (the JSON of its page).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineDetail {
    /// The row.
    #[serde(flatten)]
    pub row: QuarantineRow,
    /// Denied actions.
    pub actions: Vec<String>,
    /// Denied regions (empty: all).
    pub regions: Vec<String>,
    /// The TTL asked for.
    pub ttl: String,
    /// Per-target state.
    pub target_states: Vec<TargetView>,
    /// The history timeline, oldest first.
    pub history: Vec<HistoryView>,
    /// Conditions.
    pub conditions: Vec<ConditionView>,
    /// Notification delivery states.
    pub notifications: Vec<NotificationView>,
    /// Events, newest first (`None` when they could not be read).
    pub events: Option<Vec<EventView>>,
    /// Why events are missing.
    pub events_error: Option<String>,
    /// Commands a person may run.
    pub commands: Vec<CommandView>,
}

/// A target's state.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    /// ARN.
    pub arn: String,
    /// `Planned`, `Attached`, …
    pub state: String,
    /// The attached object.
    pub attachment: Option<String>,
    /// Last error.
    pub last_error: Option<String>,
    /// Last verified.
    pub last_verified_at: Option<Timestamp>,
}

/// A history entry.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    /// When.
    pub at: Timestamp,
    /// What.
    pub event: String,
    /// Who.
    pub actor: String,
    /// Note.
    pub message: String,
}

/// A condition.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// Type.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// A notification's delivery.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// The lifecycle event.
    pub event: String,
    /// State.
    pub state: String,
    /// Attempts.
    pub attempts: u32,
}

/// A command.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandView {
    /// What it does.
    pub label: String,
    /// The command line.
    pub command: String,
}

/// The detail of `q`, with its Events (or why they are missing).
pub fn quarantine_detail(
    q: &Quarantine,
    outline: bool,
    events: Result<Vec<EventView>, String>,
) -> QuarantineDetail {
    let row = quarantine_row(q, outline);
    let status = q.status.clone().unwrap_or_default();
    let (events, events_error) = match events {
        Ok(e) => (Some(e), None),
        Err(e) => (None, Some(e)),
    };
    QuarantineDetail {
        commands: commands(&row)
            .into_iter()
            .map(|(label, command)| CommandView {
                label: label.to_string(),
                command,
            })
            .collect(),
        row,
        actions: q.spec.deny.actions.clone(),
        regions: q.spec.deny.regions.clone(),
        ttl: q.spec.ttl.clone(),
        target_states: status
            .targets
            .iter()
            .map(|t| TargetView {
                arn: t.arn.clone(),
                state: format!("{:?}", t.state),
                attachment: t
                    .attachment
                    .as_ref()
                    .map(|a| format!("{:?} {}", a.kind, a.name)),
                last_error: t.last_error.clone(),
                last_verified_at: ts(&t.last_verified_at),
            })
            .collect(),
        history: status
            .history
            .iter()
            .map(|h| HistoryView {
                at: h.time.0,
                event: h.event.clone(),
                actor: h.actor.clone(),
                message: h.message.clone(),
            })
            .collect(),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionView {
                kind: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        notifications: status
            .notifications
            .iter()
            .map(|n| NotificationView {
                event: n.event.clone(),
                state: n.state.as_str().to_string(),
                attempts: n.attempts,
            })
            .collect(),
        events,
        events_error,
    }
}

/// The page of one quarantine.
pub fn quarantine_page(d: &QuarantineDetail, now: Timestamp) -> Markup {
    let row = &d.row;
    html! {
        p { a href={ (super::BASE) "/quarantines" } { "← All quarantines" } }
        h1 { "Quarantine " (row.namespace) "/" (row.name) }
        div.cards {
            section.card { h2 { "Phase" } p.big { (badge(&row.phase)) } p.muted { "Policy " (row.policy) " (" (row.mode) ")" } }
            section.card {
                @if row.phase == "PendingApproval" {
                    h2 { "Decide by" } p.big id="deadline" { (when(row.approval_deadline, now)) }
                } @else if row.released_at.is_some() {
                    h2 { "Ended" } p.big { (when(row.released_at, now)) }
                    @if let Some(r) = &row.release_reason { p.muted { (r) } }
                } @else {
                    h2 { "Expires" } p.big id="expires" { (when(row.expires_at, now)) }
                }
            }
            section.card {
                h2 { "Approved by" }
                p.big.approver { @match &row.approved_by { Some(a) => (a), None => span.muted { "not approved" } } }
                @if let Some(at) = row.approved_at { p.muted { "at " (at.to_string()) } }
                @if let Some(r) = &row.rejected_by { p { "Rejected by " (r) } }
            }
            section.card {
                h2 { "Signal" }
                @if let Some(s) = &row.signal {
                    p { (s.source) " " code { (s.id) } }
                    p { "$" (format!("{:.2}", s.impact_usd)) " in " (s.account_id) @if let Some(svc) = &s.service { " · " (svc) } }
                    @if let Some(sum) = &s.summary { p.muted { (sum) } }
                } @else { p.muted { "—" } }
            }
        }
        @if row.outline {
            p.muted { "This quarantine has ended; only its outline is kept in the controller's cache." }
        }
        h2 id="commands" { "Commands" }
        @for (i, c) in d.commands.iter().enumerate() {
            p { (c.label) " " button type="button" data-copy={ "cmd-" (i) } hidden { "Copy" } }
            pre.cmd { code id={ "cmd-" (i) } { (c.command) } }
        }
        h2 { "Deny" }
        p { "Actions: " @for a in &d.actions { code { (a) } " " } }
        p { "Regions: " @if d.regions.is_empty() { "all" } @else { @for r in &d.regions { code { (r) } " " } } " · TTL " (d.ttl) }
        div.table-wrap tabindex="0" role="region" aria-labelledby="targets-caption" {
            table {
                caption id="targets-caption" { "Targets" }
                thead { tr { th scope="col" { "ARN" } th scope="col" { "State" } th scope="col" { "Attachment" } th scope="col" { "Last verified" } th scope="col" { "Last error" } } }
                tbody {
                    @for t in &d.target_states {
                        tr { td { code { (t.arn) } } td { (badge(&t.state)) } td { (t.attachment.as_deref().unwrap_or("—")) }
                             td { (when(t.last_verified_at, now)) } td { (t.last_error.as_deref().unwrap_or("—")) } }
                    }
                    @if d.target_states.is_empty() {
                        @for arn in &row.targets { tr { td { code { (arn) } } td { "—" } td { "—" } td { "—" } td { "—" } } }
                    }
                }
            }
        }
        h2 { "History" }
        @if d.history.is_empty() { p.muted { "No history recorded." } }
        ol.timeline aria-label="History, oldest first" {
            @for h in &d.history {
                li { time datetime=(h.at.to_string()) { (h.at.to_string()) } " — " strong { (h.event) } " by " (h.actor) @if !h.message.is_empty() { ": " (h.message) } }
            }
        }
        h2 { "Conditions" }
        ul { @for c in &d.conditions { li { (c.kind) " " (badge(&c.status)) " " (c.reason) ": " (c.message) } } }
        @if !d.notifications.is_empty() {
            h2 { "Notifications" }
            ul { @for n in &d.notifications { li { (n.event) " " (badge(&n.state)) " (" (n.attempts) " attempts)" } } }
        }
        h2 { "Events" }
        @match (&d.events, &d.events_error) {
            (Some(events), _) if !events.is_empty() => {
                div.table-wrap tabindex="0" role="region" aria-labelledby="events-caption" {
                    table {
                        caption id="events-caption" { "Events, newest first" }
                        thead { tr { th scope="col" { "When" } th scope="col" { "Type" } th scope="col" { "Reason" } th scope="col" { "Note" } } }
                        tbody { @for e in events { tr { td { (when(e.at, now)) } td { (badge(&e.kind)) } td { (e.reason) } td { (e.note) @if e.count > 1 { " (×" (e.count) ")" } } } } }
                    }
                }
            }
            (_, Some(error)) => { p.muted { "Events could not be read: " (error) } }
            _ => { p.muted { "No events." } }
        }
    }
}

/// What a policy's scope resolves to, per principal.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeEntry {
    /// The ARN.
    pub arn: String,
    /// `Quarantinable`, `Excepted` (policy exception by principal), `ExceptedAccount` (by account),
    /// `Protected` (never touched), `InvalidArn` or `InvalidExceptions` (the policy cannot be read).
    pub resolution: String,
}

/// One policy (the JSON of `/dashboard/api/policies`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Mode.
    pub mode: String,
    /// The Ready condition's status (`Unknown` before the first).
    pub ready: String,
    /// Its reason and message.
    pub ready_reason: String,
    /// Its message.
    pub ready_message: String,
    /// Sources matched.
    pub sources: Vec<String>,
    /// Accounts matched (empty: any).
    pub account_ids: Vec<String>,
    /// Smallest impact.
    pub min_impact_usd: f64,
    /// The scope, resolved.
    pub scope: Vec<ScopeEntry>,
    /// Denied actions.
    pub actions: Vec<String>,
    /// TTL.
    pub ttl: String,
    /// Active quarantines (status).
    pub active_quarantines: i32,
    /// The last signal evaluated.
    pub last_signal: Option<LastSignalView>,
    /// Slack notifications configured (the webhook itself is never shown).
    pub slack: bool,
}

/// A policy's last signal.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSignalView {
    /// Source.
    pub source: String,
    /// Id.
    pub id: String,
    /// What happened.
    pub reason: String,
    /// The quarantine.
    pub quarantine: Option<String>,
}

/// The row of `p`; `protected` are the controller's protected principals.
pub fn policy_row(p: &GuardrailPolicy, protected: &PrincipalSet) -> PolicyRow {
    let status = p.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    // The one matcher (protected principals, then the policy's exceptions by principal and account).
    let exclusions = crate::controller::policy::exclusions(&p.spec, protected);
    PolicyRow {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        mode: p.spec.mode.as_str().to_string(),
        ready: ready.map_or_else(|| "Unknown".to_string(), |c| c.status.clone()),
        ready_reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        ready_message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        sources: p
            .spec
            .matcher
            .sources
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        account_ids: p.spec.matcher.account_ids.clone(),
        min_impact_usd: p.spec.matcher.min_impact_usd,
        scope: p
            .spec
            .scope
            .principals
            .iter()
            .map(|t| ScopeEntry {
                arn: t.arn.clone(),
                resolution: match (&exclusions, t.parse()) {
                    // An exception list that cannot be read decides nothing: say so.
                    (Err(_), _) => "InvalidExceptions",
                    (_, Err(_)) => "InvalidArn",
                    (Ok(exclusions), Ok(arn)) => match exclusions.check(&arn) {
                        Some(Exclusion::Protected) => "Protected",
                        Some(Exclusion::Excepted) => "Excepted",
                        Some(Exclusion::ExceptedAccount) => "ExceptedAccount",
                        None => "Quarantinable",
                    },
                }
                .to_string(),
            })
            .collect(),
        actions: p.spec.deny.actions.clone(),
        ttl: p.spec.quarantine.ttl.clone(),
        active_quarantines: status.active_quarantines,
        last_signal: status.last_signal.as_ref().map(|s| LastSignalView {
            source: s.source.as_str().to_string(),
            id: s.id.clone(),
            reason: s.reason.clone(),
            quarantine: s.quarantine.clone(),
        }),
        slack: p.spec.notify.as_ref().is_some_and(|n| n.slack.is_some()),
    }
}

/// The Policies page's content.
pub fn policies_page(rows: &[PolicyRow]) -> Markup {
    html! {
        h1 { "Policies" }
        div.table-wrap tabindex="0" role="region" aria-labelledby="policies-caption" {
            table id="policies" {
                caption id="policies-caption" { (rows.len()) " policies" }
                thead { tr {
                    th scope="col" { "Policy" } th scope="col" { "Mode" } th scope="col" { "Ready" }
                    th scope="col" { "Matches" } th scope="col" { "Scope resolves to" }
                    th scope="col" { "Active" } th scope="col" { "Last signal" }
                } }
                tbody {
                    @for p in rows {
                        tr data-policy={ (p.namespace) "/" (p.name) } {
                            td { a href={ (super::BASE) "/quarantines?namespace=" (p.namespace) "&policy=" (p.name) } { (p.namespace) "/" (p.name) } }
                            td { (badge(&p.mode)) }
                            td { (badge(&p.ready)) @if !p.ready_reason.is_empty() { br; span.muted { (p.ready_reason) } } @if !p.ready_message.is_empty() && p.ready != "True" { br; (p.ready_message) } }
                            td { (p.sources.join(", ")) br; span.muted { "≥ $" (format!("{:.0}", p.min_impact_usd)) @if !p.account_ids.is_empty() { " in " (p.account_ids.join(", ")) } } }
                            td { @for s in &p.scope { code { (s.arn) } " " (badge(&s.resolution)) br; } span.muted { "deny " (p.actions.len()) " actions for " (p.ttl) } }
                            td { (p.active_quarantines) }
                            td { @match &p.last_signal { Some(s) => { (s.source) " " code { (s.id) } br; (badge(&s.reason)) @if let Some(q) = &s.quarantine { " → " (q) } }, None => span.muted { "none yet" } } }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p { "No GuardrailPolicy in the watched namespaces." } }
    }
}

/// The Signals page's content.
pub fn signals_page(deliveries: &[Delivery], now: Timestamp) -> Markup {
    let accepted = deliveries.iter().filter(|d| d.accepted).count();
    html! {
        h1 { "Signals" }
        p.muted { "The latest deliveries to /sns and /events on this replica (kept in memory; newest first)." }
        div.cards {
            section.card { h2 { "Accepted" } p.big { (accepted) } }
            section.card { h2 { "Refused or not used" } p.big { (deliveries.len() - accepted) } }
        }
        div.table-wrap tabindex="0" role="region" aria-labelledby="signals-caption" {
            table id="signals" {
                caption id="signals-caption" { (deliveries.len()) " deliveries" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Endpoint" } th scope="col" { "Outcome" } th scope="col" { "HTTP" } th scope="col" { "Why" } } }
                tbody {
                    @for d in deliveries {
                        tr {
                            td { (countdown(d.at, now)) }
                            td { "/" (d.endpoint) }
                            td { (badge(if d.accepted { "Accepted" } else { &d.outcome })) @if !d.accepted { br; span.muted { (d.outcome) } } }
                            td { (d.status) }
                            td { (d.reason) }
                        }
                    }
                }
            }
        }
        @if deliveries.is_empty() { p { "No signal has arrived since this replica started." } }
    }
}

#[cfg(test)]
mod policy_row_tests {
    use super::*;
    use crate::principal::PrincipalArn;

    fn policy(exceptions: serde_json::Value) -> GuardrailPolicy {
        let mut p: GuardrailPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoguardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": { "name": "p", "namespace": "team" },
            "spec": {
                "mode": "Auto",
                "match": { "sources": ["CostAnomaly"] },
                "scope": { "principals": [
                    { "kind": "IamRole", "arn": "arn:aws:iam::111111111111:role/admin" },
                    { "kind": "IamRole", "arn": "arn:aws:iam::111111111111:role/release" },
                    { "kind": "IamRole", "arn": "arn:aws:iam::444444444444:role/shared" },
                    { "kind": "IamRole", "arn": "arn:aws:iam::111111111111:role/ci" }
                ] },
                "deny": { "actions": ["ec2:RunInstances"] },
                "quarantine": { "ttl": "1h" }
            }
        }))
        .expect("policy");
        p.spec.exceptions = serde_json::from_value(exceptions).expect("exceptions");
        p
    }

    #[test]
    fn scope_is_resolved_by_the_shared_matcher() {
        let protected =
            PrincipalSet::of(&[
                PrincipalArn::parse("arn:aws:iam::111111111111:role/admin").expect("arn")
            ]);
        let row = policy_row(
            &policy(serde_json::json!({
                "principals": ["arn:aws:iam::111111111111:role/release"],
                "accounts": ["444444444444"]
            })),
            &protected,
        );
        let resolutions: Vec<&str> = row.scope.iter().map(|s| s.resolution.as_str()).collect();
        assert_eq!(
            resolutions,
            ["Protected", "Excepted", "ExceptedAccount", "Quarantinable"]
        );
        // An exception that is not an ARN makes the policy unreadable, not "nothing excepted".
        let row = policy_row(
            &policy(serde_json::json!({ "principals": ["not-an-arn"] })),
            &protected,
        );
        assert!(
            row.scope
                .iter()
                .all(|s| s.resolution == "InvalidExceptions")
        );
    }
}
