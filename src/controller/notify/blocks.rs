//! Block Kit rendering: one Slack [`Message`] for one Quarantine history entry, saying what happened
//! and why, with the `kubectl annotate` commands that apply now, within Slack's block and text
//! limits; plus [`check_limits`], which checks a message against those limits. Pure: no I/O, no
//! clock, and it must not decide whether a message is sent (that is the ledger's job).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::Message;
use crate::controller::crd::{HistoryEntry, Phase, Quarantine};
use crate::controller::lifecycle::{
    APPROVE_ANNOTATION, EXTEND_ANNOTATION, REASON_ACTIVATED, REASON_APPROVAL_TIMED_OUT,
    REASON_DELETED, REASON_ENFORCEMENT_FAILED, REASON_EXPIRED, REASON_KILL_SWITCH_DRY_RUN,
    REASON_PENDING_APPROVAL, REASON_PLANNED, REASON_POLICY_DELETED, REASON_REJECTED,
    REASON_RELEASE_REQUESTED, REASON_RELEASED, REASON_TTL_EXPIRED, REJECT_ANNOTATION,
    RELEASE_ANNOTATION,
};

/// Slack: at most 50 blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack: a section's text is at most 3000 characters.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Slack: a header's text is at most 150 characters.
pub const MAX_HEADER_TEXT: usize = 150;
/// Slack: the top-level `text` is at most 40,000 characters (we keep the fallback far shorter).
pub const MAX_MESSAGE_TEXT: usize = 40_000;
/// Slack: a section has at most 10 fields.
pub const MAX_SECTION_FIELDS: usize = 10;
/// Slack: each section field's text is at most 2000 characters.
pub const MAX_FIELD_TEXT: usize = 2000;
/// Slack: a context block has at most 10 elements.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Slack's limit on the elements of an actions block.
pub const MAX_ACTION_ELEMENTS: usize = 25;
/// Slack's limit on a button's text.
pub const MAX_BUTTON_TEXT: usize = 75;
/// Slack's limit on a button's value.
pub const MAX_BUTTON_VALUE: usize = 2000;
/// Slack's limit on a confirmation dialog's text.
pub const MAX_CONFIRM_TEXT: usize = 300;
/// The longest plain-text fallback we produce.
pub const MAX_FALLBACK_TEXT: usize = 3000;
/// The most targets or actions listed before "and N more".
pub const MAX_LISTED_ITEMS: usize = 10;

/// A lifecycle change that warrants a Slack message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// A DryRun plan was recorded (`Planned`).
    Planned,
    /// The kill switch turned the quarantine into a dry-run, or refuses approvals (`KillSwitchDryRun`).
    KillSwitchDryRun,
    /// A Manual quarantine waits for approval (`PendingApproval`).
    PendingApproval,
    /// The deny is being enforced (`Activated`).
    Activated,
    /// Someone removed the deny and the controller put it back (`DriftRepaired`).
    DriftRepaired,
    /// The deny was detached from every target (`Released`).
    Released,
    /// A person rejected the quarantine (`Rejected`).
    Rejected,
    /// A DryRun plan reached its TTL (`Expired`).
    Expired,
    /// A pending approval passed its deadline (`ApprovalTimedOut`).
    ApprovalTimedOut,
    /// Enforcement cannot proceed (`EnforcementFailed`).
    EnforcementFailed,
}

impl MessageKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [MessageKind; 10] = [
        MessageKind::Planned,
        MessageKind::KillSwitchDryRun,
        MessageKind::PendingApproval,
        MessageKind::Activated,
        MessageKind::DriftRepaired,
        MessageKind::Released,
        MessageKind::Rejected,
        MessageKind::Expired,
        MessageKind::ApprovalTimedOut,
        MessageKind::EnforcementFailed,
    ];

    /// The kind for a history entry's `event`; `None` for events that do not warrant a message.
    pub fn from_event(event: &str) -> Option<MessageKind> {
        MessageKind::ALL
            .into_iter()
            .find(|kind| kind.event() == event)
    }

    /// The history `event` string of this kind.
    pub fn event(self) -> &'static str {
        match self {
            MessageKind::Planned => REASON_PLANNED,
            MessageKind::KillSwitchDryRun => REASON_KILL_SWITCH_DRY_RUN,
            MessageKind::PendingApproval => REASON_PENDING_APPROVAL,
            MessageKind::Activated => REASON_ACTIVATED,
            MessageKind::DriftRepaired => crate::controller::lifecycle::REASON_DRIFT_REPAIRED,
            MessageKind::Released => REASON_RELEASED,
            MessageKind::Rejected => REASON_REJECTED,
            MessageKind::Expired => REASON_EXPIRED,
            MessageKind::ApprovalTimedOut => REASON_APPROVAL_TIMED_OUT,
            MessageKind::EnforcementFailed => REASON_ENFORCEMENT_FAILED,
        }
    }

    /// A short title for the header and the fallback text.
    pub fn title(self) -> &'static str {
        match self {
            MessageKind::Planned => "Dry-run plan recorded",
            MessageKind::KillSwitchDryRun => "Kill switch engaged: not enforced",
            MessageKind::PendingApproval => "Approval needed",
            MessageKind::Activated => "Deny enforced",
            MessageKind::DriftRepaired => "Drift repaired: deny re-attached",
            MessageKind::Released => "Deny released",
            MessageKind::Rejected => "Quarantine rejected",
            MessageKind::Expired => "Dry-run plan expired",
            MessageKind::ApprovalTimedOut => "Approval timed out: expired",
            MessageKind::EnforcementFailed => "Enforcement failed",
        }
    }

    fn emoji(self) -> &'static str {
        match self {
            MessageKind::Planned => ":memo:",
            MessageKind::KillSwitchDryRun => ":octagonal_sign:",
            MessageKind::PendingApproval => ":hourglass_flowing_sand:",
            MessageKind::Activated => ":no_entry:",
            MessageKind::DriftRepaired => ":wrench:",
            MessageKind::Released => ":white_check_mark:",
            MessageKind::Rejected => ":heavy_multiplication_x:",
            MessageKind::Expired | MessageKind::ApprovalTimedOut => ":clock3:",
            MessageKind::EnforcementFailed => ":rotating_light:",
        }
    }
}

/// The index of the entry a `KillSwitchDryRun` entry is folded into: a `Planned` or
/// `PendingApproval` entry with the same time (the kill switch note then rides on that message
/// instead of a second message for the same change). `None` for other entries or when there is none.
pub fn folded_into(history: &[HistoryEntry], index: usize) -> Option<usize> {
    let entry = history.get(index)?;
    if entry.event != REASON_KILL_SWITCH_DRY_RUN {
        return None;
    }
    history.iter().position(|other| {
        other.time == entry.time
            && (other.event == REASON_PLANNED || other.event == REASON_PENDING_APPROVAL)
    })
}

/// What the renderer needs besides the Quarantine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// A cluster name shown in the context line, so several clusters can share a channel.
    pub cluster: Option<String>,
    /// Add buttons for what the quarantine's phase allows (Slack interactions are served).
    pub buttons: bool,
}

/// Renders the message for `quarantine.status.history[index]`; `None` when that entry does not
/// warrant a message (or does not exist).
pub fn render(quarantine: &Quarantine, index: usize, options: &RenderOptions) -> Option<Message> {
    let history = quarantine
        .status
        .as_ref()
        .map(|status| status.history.as_slice())
        .unwrap_or_default();
    let entry = history.get(index)?;
    let kind = MessageKind::from_event(&entry.event)?;
    let name = quarantine.metadata.name.as_deref().unwrap_or("<unnamed>");
    let namespace = quarantine
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let spec = &quarantine.spec;
    let status = quarantine.status.clone().unwrap_or_default();
    let kill_switch = kind != MessageKind::KillSwitchDryRun
        && history
            .iter()
            .enumerate()
            .any(|(other, _)| folded_into(history, other) == Some(index));

    let title = if kill_switch {
        format!("{} (kill switch engaged)", kind.title())
    } else {
        kind.title().to_string()
    };
    let header = truncate(
        &format!("{} {title}: {namespace}/{name}", kind.emoji()),
        MAX_HEADER_TEXT,
    );

    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": header, "emoji": true},
    })];

    // What happened and why.
    let mut what = format!(
        "*What happened:* {}\n*By:* {} at {}",
        escape(&entry.message),
        escape(&entry.actor),
        utc(entry.time.0)
    );
    if kill_switch {
        for (other, folded) in history.iter().enumerate() {
            if folded_into(history, other) == Some(index) {
                what.push_str(&format!("\n*Kill switch:* {}", escape(&folded.message)));
            }
        }
    }
    match kind {
        MessageKind::Activated => {
            if let Some(approver) = &status.approved_by {
                what.push_str(&format!("\n*Approved by:* {}", escape(approver)));
            }
        }
        MessageKind::Released => {
            if let Some(reason) = &status.release_reason {
                what.push_str(&format!("\n*Release reason:* {}", escape(reason)));
            }
            if let Some(start) = release_start(&history[..index]) {
                what.push_str(&format!(
                    "\n*Release started by:* {} — {}",
                    escape(&start.actor),
                    escape(&start.message)
                ));
            }
        }
        _ => {}
    }
    if let Some(signal) = &spec.signal {
        let summary = signal.summary.as_deref().map_or_else(
            || {
                format!(
                    "{} signal `{}` reported {} in account {}",
                    signal.source.as_str(),
                    escape(&signal.id),
                    usd(signal.impact_usd),
                    signal.account_id
                )
            },
            escape,
        );
        what.push_str(&format!("\n*Why:* {summary}"));
    } else {
        what.push_str("\n*Why:* created by hand (no cost signal)");
    }
    blocks.push(section(&what));

    // The facts, as fields.
    let mut fields = vec![
        field("Policy", &format!("`{}`", escape(&spec.policy_ref.name))),
        field("Mode", spec.mode.as_str()),
    ];
    if let Some(signal) = &spec.signal {
        fields.push(field("Account", &signal.account_id));
        fields.push(field("Impact", &usd(signal.impact_usd)));
        fields.push(field(
            "Service",
            &escape(signal.service.as_deref().unwrap_or("(not given)")),
        ));
        fields.push(field(
            "Region",
            &escape(signal.region.as_deref().unwrap_or("(not given)")),
        ));
    }
    fields.push(field("TTL", &escape(&spec.ttl)));
    match kind {
        MessageKind::PendingApproval => {
            if let Some(deadline) = &status.approval_deadline {
                fields.push(field("Approve before", &utc(deadline.0)));
            }
        }
        MessageKind::Released => {
            if let Some(released) = &status.released_at {
                fields.push(field("Released at", &utc(released.0)));
            }
        }
        MessageKind::Rejected | MessageKind::ApprovalTimedOut => {}
        MessageKind::Planned | MessageKind::KillSwitchDryRun | MessageKind::Expired => {
            if let Some(expires) = &status.expires_at {
                fields.push(field("Plan expires", &utc(expires.0)));
            }
        }
        MessageKind::Activated | MessageKind::DriftRepaired | MessageKind::EnforcementFailed => {
            if let Some(expires) = &status.expires_at {
                fields.push(field("Expires", &utc(expires.0)));
            }
        }
    }
    if let Some(phase) = status.phase {
        fields.push(field("Phase now", phase.as_str()));
    }
    fields.truncate(MAX_SECTION_FIELDS);
    blocks.push(json!({"type": "section", "fields": fields}));

    // Targets and denied actions, truncated with a count.
    let targets: Vec<String> = spec
        .targets
        .iter()
        .map(|target| format!("`{}`", escape(&target.arn)))
        .collect();
    blocks.push(section(&bounded_list(
        &format!("*Targets ({}):*", targets.len()),
        &targets,
        "\n• ",
    )));
    let actions: Vec<String> = spec
        .deny
        .actions
        .iter()
        .map(|action| format!("`{}`", escape(action)))
        .collect();
    let mut deny = bounded_list(
        &format!("*Denied actions ({}):*", actions.len()),
        &actions,
        "\n• ",
    );
    if !spec.deny.regions.is_empty() {
        let regions: Vec<String> = spec.deny.regions.iter().map(|r| escape(r)).collect();
        deny.push_str(&format!("\n*Only in regions:* {}", regions.join(", ")));
    }
    blocks.push(section(&truncate(&deny, MAX_SECTION_TEXT)));

    if let Some(url) = spec
        .signal
        .as_ref()
        .and_then(|signal| signal.details_url.as_deref())
        .and_then(safe_link)
    {
        let label = match spec.signal.as_ref().map(|signal| signal.source) {
            Some(crate::controller::crd::SignalSource::Budget) => {
                "Open the budget in the AWS console"
            }
            _ => "Open the anomaly in the AWS console",
        };
        blocks.push(section(&format!(":mag: <{url}|{label}>")));
    }

    // What a person can do now.
    let phase = status.phase.unwrap_or(phase_of(kind));
    let commands = commands(phase, name, namespace);
    let mut act = if commands.is_empty() {
        format!(
            "*Nothing to do:* the quarantine is {} and takes no more annotations.",
            phase.as_str()
        )
    } else {
        format!(
            "*Act on it* (the quarantine is {}):\n```{}```",
            phase.as_str(),
            escape(&commands.join("\n"))
        )
    };
    if phase != phase_of(kind) {
        act.push_str(&format!(
            "\n_This message is about an earlier change; the quarantine is now {}._",
            phase.as_str()
        ));
    }
    blocks.push(section(&truncate(&act, MAX_SECTION_TEXT)));
    if options.buttons
        && phase == phase_of(kind)
        && let Some(uid) = quarantine.metadata.uid.as_deref()
    {
        let buttons = buttons(phase, namespace, name, uid);
        if !buttons.is_empty() {
            blocks.push(json!({"type": "actions", "block_id": "autoguardrails-actions", "elements": buttons}));
        }
    }

    let mut context = vec![
        format!("Quarantine `{}/{}`", escape(namespace), escape(name)),
        format!("event `{}` at {}", escape(&entry.event), utc(entry.time.0)),
    ];
    if let Some(cluster) = &options.cluster {
        context.push(format!("cluster `{}`", escape(cluster)));
    }
    context.push(format!(
        "`kubectl describe quarantine {name} -n {namespace}`"
    ));
    blocks.push(json!({
        "type": "context",
        "elements": context
            .iter()
            .map(|text| json!({"type": "mrkdwn", "text": truncate(text, MAX_FIELD_TEXT)}))
            .collect::<Vec<_>>(),
    }));

    let mut text = format!(
        "{title}: {namespace}/{name} (policy {}",
        spec.policy_ref.name
    );
    if let Some(signal) = &spec.signal {
        text.push_str(&format!(
            ", account {}, impact {}",
            signal.account_id,
            usd(signal.impact_usd)
        ));
        if let Some(service) = &signal.service {
            text.push_str(&format!(", {service}"));
        }
    }
    text.push_str(&format!("). {}", entry.message));

    Some(Message {
        text: escape(&truncate(&text, MAX_FALLBACK_TEXT)),
        blocks,
        channel: spec
            .notify
            .as_ref()
            .and_then(|notify| notify.slack.as_ref())
            .and_then(|slack| slack.channel_hint.clone())
            .filter(|hint| !hint.trim().is_empty()),
    })
}

/// The phase a kind's history entry leaves the quarantine in.
pub fn phase_of(kind: MessageKind) -> Phase {
    match kind {
        MessageKind::Planned | MessageKind::KillSwitchDryRun => Phase::DryRun,
        MessageKind::PendingApproval => Phase::PendingApproval,
        MessageKind::Activated | MessageKind::DriftRepaired => Phase::Active,
        MessageKind::Released => Phase::Released,
        MessageKind::Rejected => Phase::Rejected,
        MessageKind::Expired | MessageKind::ApprovalTimedOut => Phase::Expired,
        MessageKind::EnforcementFailed => Phase::Failed,
    }
}

/// The buttons that apply in `phase` (decision 230): each carries the Quarantine's namespace, name
/// and uid in its `value` (nothing secret) and an `action_id` the interactions endpoint reads.
pub fn buttons(phase: Phase, namespace: &str, name: &str, uid: &str) -> Vec<Value> {
    use crate::controller::lifecycle::Annotation;
    use crate::controller::slack::intent::{Target, action_id, applies_in};
    let value = Target {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
    }
    .value();
    let button = |annotation: Annotation, label: &str, style: Option<&str>| {
        let mut button = json!({
            "type": "button",
            "action_id": action_id(annotation),
            "text": {"type": "plain_text", "text": label, "emoji": true},
            "value": value,
        });
        if let Some(style) = style {
            button["style"] = json!(style);
        }
        if annotation != Annotation::Extend {
            button["confirm"] = json!({
                "title": {"type": "plain_text", "text": format!("{label}?")},
                "text": {"type": "plain_text", "text": truncate(&format!("{label} Quarantine {name} in {namespace}? You act as your mapped Kubernetes user."), MAX_CONFIRM_TEXT)},
                "confirm": {"type": "plain_text", "text": label},
                "deny": {"type": "plain_text", "text": "Cancel"},
            });
        }
        button
    };
    [
        (Annotation::Approve, "Approve", Some("primary")),
        (Annotation::Reject, "Reject", Some("danger")),
        (Annotation::Extend, "Extend", None),
        (Annotation::Release, "Release", Some("danger")),
    ]
    .into_iter()
    .filter(|(annotation, _, _)| applies_in(*annotation, phase))
    .map(|(annotation, label, style)| button(annotation, label, style))
    .collect()
}

/// The exact `kubectl annotate` commands that apply in `phase`, in the order a person needs them.
pub fn commands(phase: Phase, name: &str, namespace: &str) -> Vec<String> {
    let annotate = |key: &str, value: &str| {
        format!("kubectl annotate quarantine {name} -n {namespace} --overwrite {key}='{value}'")
    };
    let approve = annotate(APPROVE_ANNOTATION, "your-name: why it is safe to enforce");
    let reject = annotate(REJECT_ANNOTATION, "your-name: why it is not needed");
    let release = annotate(RELEASE_ANNOTATION, "your-name: why it can end now");
    let extend = annotate(EXTEND_ANNOTATION, "your-name: 2h");
    match phase {
        Phase::PendingApproval => vec![approve, reject],
        Phase::Active => vec![release, extend],
        Phase::DryRun => vec![extend],
        Phase::Failed => vec![release],
        Phase::Releasing | Phase::Released | Phase::Rejected | Phase::Expired => Vec::new(),
    }
}

/// The entry that started the release a `Released` entry finishes (the newest TTL, release
/// request, policy deletion or object deletion before it).
fn release_start(before: &[HistoryEntry]) -> Option<&HistoryEntry> {
    before.iter().rev().find(|entry| {
        [
            REASON_TTL_EXPIRED,
            REASON_RELEASE_REQUESTED,
            REASON_POLICY_DELETED,
            REASON_DELETED,
        ]
        .contains(&entry.event.as_str())
    })
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT)}})
}

fn field(label: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{label}:*\n{value}"), MAX_FIELD_TEXT)})
}

/// `heading` then up to [`MAX_LISTED_ITEMS`] items, then "and N more", within a section's limit.
fn bounded_list(heading: &str, items: &[String], separator: &str) -> String {
    let mut text = heading.to_string();
    let budget = MAX_SECTION_TEXT - 40;
    let mut shown = 0;
    for item in items.iter().take(MAX_LISTED_ITEMS) {
        if text.chars().count() + separator.len() + item.chars().count() > budget {
            break;
        }
        text.push_str(separator);
        text.push_str(item);
        shown += 1;
    }
    if shown < items.len() {
        text.push_str(&format!("{separator}_…and {} more_", items.len() - shown));
    }
    text
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters (on a character boundary), ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    // Do not leave half an entity such as `&am` at the end.
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

/// A timestamp as `2026-11-20 10:00:00 UTC`.
pub fn utc(time: Timestamp) -> String {
    time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An amount as `$1,234.56`.
pub fn usd(amount: f64) -> String {
    if !amount.is_finite() {
        return "(unknown)".into();
    }
    let cents = (amount.abs() * 100.0).round() as u128;
    let dollars = (cents / 100).to_string();
    let mut grouped = String::new();
    for (position, digit) in dollars.chars().enumerate() {
        if position > 0 && (dollars.len() - position).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if amount < 0.0 { "-" } else { "" };
    format!("{sign}${grouped}.{:02}", cents % 100)
}

/// The details link if it is a plain https URL Slack can show (no characters that would break
/// the `<url|label>` syntax); otherwise `None` and no link is shown.
fn safe_link(url: &str) -> Option<&str> {
    (url.starts_with("https://")
        && url.len() <= 2000
        && !url
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '|' | '"')))
    .then_some(url)
}

/// Every way `message` breaks Slack's limits or the Block Kit structure this module relies on;
/// empty when it is fine.
pub fn check_limits(message: &Message) -> Vec<String> {
    let mut problems = Vec::new();
    let chars = |value: &Value| value.as_str().map_or(0, |text| text.chars().count());
    if message.text.trim().is_empty() {
        problems.push("text fallback is empty".to_string());
    }
    if message.text.chars().count() > MAX_MESSAGE_TEXT {
        problems.push(format!("text is longer than {MAX_MESSAGE_TEXT}"));
    }
    if message.blocks.is_empty() || message.blocks.len() > MAX_BLOCKS {
        problems.push(format!(
            "{} blocks (1 to {MAX_BLOCKS} allowed)",
            message.blocks.len()
        ));
    }
    let text_object = |value: &Value, allowed: &[&str], max: usize, at: &str| -> Vec<String> {
        let mut found = Vec::new();
        let kind = value["type"].as_str().unwrap_or_default();
        if !allowed.contains(&kind) {
            found.push(format!("{at}: text type {kind:?} not in {allowed:?}"));
        }
        let length = chars(&value["text"]);
        if length == 0 || length > max {
            found.push(format!("{at}: text length {length} (1 to {max} allowed)"));
        }
        found
    };
    for (position, block) in message.blocks.iter().enumerate() {
        let at = format!("blocks[{position}]");
        match block["type"].as_str() {
            Some("header") => problems.extend(text_object(
                &block["text"],
                &["plain_text"],
                MAX_HEADER_TEXT,
                &at,
            )),
            Some("section") => {
                let has_text = !block["text"].is_null();
                let fields = block["fields"].as_array();
                if !has_text && fields.is_none() {
                    problems.push(format!("{at}: section has neither text nor fields"));
                }
                if has_text {
                    problems.extend(text_object(
                        &block["text"],
                        &["mrkdwn", "plain_text"],
                        MAX_SECTION_TEXT,
                        &at,
                    ));
                }
                if let Some(fields) = fields {
                    if fields.is_empty() || fields.len() > MAX_SECTION_FIELDS {
                        problems.push(format!("{at}: {} fields", fields.len()));
                    }
                    for (index, field) in fields.iter().enumerate() {
                        problems.extend(text_object(
                            field,
                            &["mrkdwn", "plain_text"],
                            MAX_FIELD_TEXT,
                            &format!("{at}.fields[{index}]"),
                        ));
                    }
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > MAX_CONTEXT_ELEMENTS {
                    problems.push(format!("{at}: {} context elements", elements.len()));
                }
                for (index, element) in elements.iter().enumerate() {
                    problems.extend(text_object(
                        element,
                        &["mrkdwn", "plain_text"],
                        MAX_FIELD_TEXT,
                        &format!("{at}.elements[{index}]"),
                    ));
                }
            }
            Some("divider") => {}
            Some("actions") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > MAX_ACTION_ELEMENTS {
                    problems.push(format!("{at}: {} action elements", elements.len()));
                }
                for (index, element) in elements.iter().enumerate() {
                    problems.extend(text_object(
                        &element["text"],
                        &["plain_text"],
                        MAX_BUTTON_TEXT,
                        &format!("{at}.elements[{index}]"),
                    ));
                    if chars(&element["value"]) > MAX_BUTTON_VALUE {
                        problems.push(format!(
                            "{at}.elements[{index}]: value longer than {MAX_BUTTON_VALUE}"
                        ));
                    }
                }
            }
            other => problems.push(format!("{at}: unsupported block type {other:?}")),
        }
    }
    problems
}

/// A plain-text rendering of a message, roughly as Slack shows it (for documentation and logs).
pub fn render_plain(message: &Message) -> String {
    let mut out = String::new();
    let unescape = |text: &str| {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    for block in &message.blocks {
        match block["type"].as_str() {
            Some("header") => {
                out.push_str(&format!(
                    "# {}\n",
                    block["text"]["text"].as_str().unwrap_or("")
                ));
            }
            Some("section") => {
                if let Some(text) = block["text"]["text"].as_str() {
                    out.push_str(&unescape(text));
                    out.push('\n');
                }
                if let Some(fields) = block["fields"].as_array() {
                    let line: Vec<String> = fields
                        .iter()
                        .filter_map(|field| field["text"].as_str())
                        .map(|text| unescape(&text.replace(":*\n", ":* ")))
                        .collect();
                    out.push_str(&line.join(" | "));
                    out.push('\n');
                }
            }
            Some("context") => {
                let line: Vec<String> = block["elements"]
                    .as_array()
                    .map(|elements| {
                        elements
                            .iter()
                            .filter_map(|element| element["text"].as_str())
                            .map(unescape)
                            .collect()
                    })
                    .unwrap_or_default();
                out.push_str(&format!("({})\n", line.join(" · ")));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_groups_thousands_and_rounds_cents() {
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(912.4), "$912.40");
        assert_eq!(usd(1234567.891), "$1,234,567.89");
        assert_eq!(usd(-5.5), "-$5.50");
        assert_eq!(usd(f64::NAN), "(unknown)");
    }

    #[test]
    fn truncate_respects_char_boundaries_and_entities() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("a &amp; b", 5), "a …");
    }

    #[test]
    fn escape_handles_mrkdwn_control_characters() {
        assert_eq!(escape("<a & b>"), "&lt;a &amp; b&gt;");
    }

    #[test]
    fn kinds_round_trip_through_events() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_event(kind.event()), Some(kind));
        }
        assert_eq!(MessageKind::from_event("Approved"), None);
        assert_eq!(MessageKind::from_event("TtlExpired"), None);
    }

    #[test]
    fn commands_match_what_the_state_machine_accepts() {
        let pending = commands(Phase::PendingApproval, "q", "ns");
        assert!(pending[0].contains("autoguardrails.io/approve="));
        assert!(pending[1].contains("autoguardrails.io/reject="));
        assert!(commands(Phase::Active, "q", "ns")[0].contains("autoguardrails.io/release="));
        assert!(commands(Phase::Released, "q", "ns").is_empty());
        assert!(commands(Phase::Expired, "q", "ns").is_empty());
    }

    #[test]
    fn buttons_follow_the_phase_and_carry_only_the_target() {
        let pending = buttons(Phase::PendingApproval, "team", "q1", "uid-1");
        let ids: Vec<&str> = pending
            .iter()
            .filter_map(|button| button["action_id"].as_str())
            .collect();
        assert_eq!(ids, ["autoguardrails.approve", "autoguardrails.reject"]);
        assert_eq!(
            pending[0]["value"],
            r#"{"ns":"team","name":"q1","uid":"uid-1"}"#
        );
        let active = buttons(Phase::Active, "team", "q1", "uid-1");
        assert_eq!(active.len(), 2);
        assert!(buttons(Phase::Released, "team", "q1", "uid-1").is_empty());
        let message = Message {
            text: "t".into(),
            blocks: vec![json!({"type": "actions", "elements": pending})],
            channel: None,
        };
        assert!(
            check_limits(&message).is_empty(),
            "{:?}",
            check_limits(&message)
        );
    }
}
