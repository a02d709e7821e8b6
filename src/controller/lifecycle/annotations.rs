//! The `autoguardrails.io/{approve,reject,release,extend}` annotations: their keys, and parsing an
//! object's annotation map into lifecycle [`Event`]s in a fixed order. Pure; it must not decide what
//! an annotation does in a phase (that is the state machine's job) nor talk to the API server.

use super::Event;
use jiff::SignedDuration;
use std::collections::BTreeMap;

/// Annotation a person sets to approve a PendingApproval quarantine: `<note>` or `<actor>: <note>`.
pub const APPROVE_ANNOTATION: &str = "autoguardrails.io/approve";
/// Annotation a person sets to reject a PendingApproval quarantine: `<note>` or `<actor>: <note>`.
pub const REJECT_ANNOTATION: &str = "autoguardrails.io/reject";
/// Annotation a person sets to release an Active or Failed quarantine: `<note>` or `<actor>: <note>`.
pub const RELEASE_ANNOTATION: &str = "autoguardrails.io/release";
/// Annotation a person sets to hold the deny until now + duration: `<duration>` or `<actor>: <duration>`.
pub const EXTEND_ANNOTATION: &str = "autoguardrails.io/extend";
/// The actor recorded when the annotation value does not name one (`<actor>: <note>`).
pub const DEFAULT_ACTOR: &str = "kubectl-annotate";
/// Appended to an approve, reject or extend actor no approval-webhook stamp vouches for
/// (decision 212): `bob (unverified)`.
pub const UNVERIFIED_SUFFIX: &str = " (unverified)";
/// The longest actor name taken from an annotation value.
pub const MAX_ACTOR_CHARS: usize = 64;
/// Notes longer than this are cut (on a character boundary) before they reach status and Events.
pub const MAX_NOTE_CHARS: usize = 256;

/// One of the four lifecycle annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Annotation {
    /// `autoguardrails.io/reject`.
    Reject,
    /// `autoguardrails.io/approve`.
    Approve,
    /// `autoguardrails.io/extend`.
    Extend,
    /// `autoguardrails.io/release`.
    Release,
}

impl Annotation {
    /// Every annotation, in the order [`parse_annotations`] turns them into events.
    pub const PROCESSING_ORDER: [Annotation; 4] = [
        Annotation::Reject,
        Annotation::Approve,
        Annotation::Extend,
        Annotation::Release,
    ];

    /// The annotation key, e.g. `autoguardrails.io/approve`.
    pub fn key(self) -> &'static str {
        match self {
            Annotation::Reject => REJECT_ANNOTATION,
            Annotation::Approve => APPROVE_ANNOTATION,
            Annotation::Extend => EXTEND_ANNOTATION,
            Annotation::Release => RELEASE_ANNOTATION,
        }
    }

    /// The verb as a person types it (`approve`, `reject`, `release`, `extend`).
    pub fn verb(self) -> &'static str {
        match self {
            Annotation::Reject => "reject",
            Annotation::Approve => "approve",
            Annotation::Extend => "extend",
            Annotation::Release => "release",
        }
    }
}

/// Turns an object's annotations into lifecycle events, in the fixed order reject, approve, extend,
/// release. Other keys (including unknown `autoguardrails.io/` keys) are not ours and are skipped.
///
/// The order makes the cautious request win when several are set at once: reject before approve
/// (an approve after a reject is ignored), release last (it ends whatever approve or extend did).
pub fn parse_annotations(annotations: &BTreeMap<String, String>) -> Vec<Event> {
    Annotation::PROCESSING_ORDER
        .iter()
        .filter_map(|annotation| {
            annotations
                .get(annotation.key())
                .map(|value| parse_annotation(*annotation, value))
        })
        .collect()
}

/// Parses one annotation's value into its event (an `InvalidAnnotation` event when it cannot be used).
pub fn parse_annotation(annotation: Annotation, value: &str) -> Event {
    let (actor, rest) = split_actor(value);
    let note = truncate_note(rest);
    match annotation {
        Annotation::Approve => Event::Approve { actor, note },
        Annotation::Reject => Event::Reject { actor, note },
        Annotation::Release => Event::Release { actor, note },
        Annotation::Extend => match rest.trim().parse::<SignedDuration>() {
            Ok(duration) => Event::Extend { actor, duration },
            Err(error) => Event::InvalidAnnotation {
                annotation,
                actor,
                value: truncate_note(value),
                problem: format!("{:?} is not a duration such as 2h or 1h30m ({error})", note),
            },
        },
    }
}

/// Splits `actor: note` into its parts; a value without a leading actor gets [`DEFAULT_ACTOR`].
///
/// The actor is the text before the first `:` when it is 1 to 64 characters of `A-Z a-z 0-9 . _ @ + -`
/// and the colon is followed by whitespace or ends the value, so `https://…` stays a note.
/// It is self-asserted by whoever wrote the annotation, not authenticated.
pub fn split_actor(value: &str) -> (String, &str) {
    if let Some((candidate, rest)) = value.split_once(':') {
        let actor_shaped = !candidate.is_empty()
            && candidate.chars().count() <= MAX_ACTOR_CHARS
            && candidate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'));
        let separated = rest.is_empty() || rest.starts_with(char::is_whitespace);
        if actor_shaped && separated {
            return (candidate.to_string(), rest.trim());
        }
    }
    (DEFAULT_ACTOR.to_string(), value.trim())
}

/// Cuts a note to [`MAX_NOTE_CHARS`] characters, marking the cut with `…`.
pub fn truncate_note(note: &str) -> String {
    match note.char_indices().nth(MAX_NOTE_CHARS) {
        Some((index, _)) => format!("{}…", &note[..index]),
        None => note.to_string(),
    }
}
