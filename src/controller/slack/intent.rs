//! What a Slack `block_actions` interaction asks: which button (approve, reject, extend, release),
//! on which Quarantine (namespace, name and uid from the button's `value`), by which Slack user,
//! and where to answer (`response_url`); which Kubernetes identity that user is (configured
//! mapping); and whether the button still applies to the Quarantine as it is now. Pure; it must not
//! decide whether the person may act (the approval webhook's `review::decide` does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::controller::admission::Identity;
use crate::controller::crd::quarantine::Phase;
use crate::controller::lifecycle::Annotation;

/// The `action_id` prefix of our buttons: `autoguardrails.approve`, `autoguardrails.reject`, ...
pub const ACTION_PREFIX: &str = "autoguardrails.";
/// The longest note taken from a payload.
pub const MAX_NOTE_CHARS: usize = 200;

/// A button's `value`: the Quarantine it acts on. Nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Namespace.
    #[serde(rename = "ns")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid (a button for an older object of the same name no longer applies).
    pub uid: String,
}

impl Target {
    /// The button `value` text.
    pub fn value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `action_id` of the button for `annotation`.
pub fn action_id(annotation: Annotation) -> String {
    format!("{ACTION_PREFIX}{}", annotation.verb())
}

/// One click, read from the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Click {
    /// The annotation the button sets.
    pub annotation: Annotation,
    /// The Quarantine.
    pub target: Target,
    /// Slack user id (`U...`).
    pub user_id: String,
    /// Slack user name as Slack sent it (display only; never an identity).
    pub user_name: String,
    /// Slack team id.
    pub team_id: String,
    /// Where to answer (Slack's `response_url`), when given.
    pub response_url: Option<String>,
    /// The click's `trigger_id` (opens a modal within 3 s of the click).
    pub trigger_id: Option<String>,
    /// Some when this is the submission of the note modal: the note typed (cleaned, bounded;
    /// empty when none was typed). None for a button click (decision 236).
    pub note: Option<String>,
}

/// The `callback_id` of the note modal.
pub const NOTE_CALLBACK_ID: &str = "autoguardrails.note";
/// The `block_id` and `action_id` of the note input.
pub const NOTE_INPUT: &str = "note";

/// What the note modal carries through Slack from the click to its submission (its
/// `private_metadata`, at most 3,000 characters; the submission is signed like the click).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalContext {
    /// The verb of the clicked button.
    pub verb: String,
    /// The Quarantine.
    pub target: Target,
    /// The click's `response_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_url: Option<String>,
}

/// Whether a click should ask for a note first: a button click (not a submission) with a
/// `trigger_id`, for every verb but extend (whose annotation value is the duration).
pub fn asks_for_note(click: &Click) -> bool {
    click.note.is_none() && click.trigger_id.is_some() && click.annotation != Annotation::Extend
}

/// The note modal for `click` (`views.open`'s `view`).
pub fn note_view(click: &Click) -> Value {
    let verb = click.annotation.verb();
    let context = ModalContext {
        verb: verb.to_string(),
        target: click.target.clone(),
        response_url: click.response_url.clone(),
    };
    let mut title: String = format!("{} quarantine", capitalised(verb));
    title.truncate(24);
    serde_json::json!({
        "type": "modal",
        "callback_id": NOTE_CALLBACK_ID,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": capitalised(verb)},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": serde_json::to_string(&context).unwrap_or_default(),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "{} Quarantine *{}/{}*. The note is recorded with your decision (history, audit).",
                capitalised(verb), click.target.namespace, click.target.name
            )}},
            {"type": "input", "block_id": NOTE_INPUT, "optional": true,
             "label": {"type": "plain_text", "text": "Note"},
             "element": {"type": "plain_text_input", "action_id": NOTE_INPUT, "multiline": false,
                         "max_length": MAX_NOTE_CHARS}}
        ]
    })
}

fn capitalised(verb: &str) -> String {
    let mut chars = verb.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A note as the annotation may carry it: control characters become spaces, runs of spaces one,
/// at most [`MAX_NOTE_CHARS`].
pub fn clean_note(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_NOTE_CHARS)
        .collect()
}

/// Why a payload cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not form-encoded with a `payload` field holding JSON.
    #[error("the body is not a form with a JSON payload field: {0}")]
    Malformed(String),
    /// Another interaction type (only `block_actions` is handled).
    #[error("interaction type {0:?} is not handled")]
    Unsupported(String),
    /// No action of ours.
    #[error("the payload has no autoguardrails button action")]
    NoAction,
}

/// Reads the first autoguardrails button action of a form-encoded `payload=` body.
pub fn read(body: &[u8]) -> Result<Click, PayloadError> {
    let payload = form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| PayloadError::Malformed("no payload field".into()))?;
    let payload: Value = serde_json::from_str(&payload)
        .map_err(|error| PayloadError::Malformed(error.to_string()))?;
    let kind = payload["type"].as_str().unwrap_or_default();
    if kind == "view_submission" {
        return read_submission(&payload);
    }
    if kind != "block_actions" {
        return Err(PayloadError::Unsupported(kind.to_string()));
    }
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let user_id = text(&payload["user"]["id"]);
    if user_id.is_empty() {
        return Err(PayloadError::Malformed("user.id is missing".into()));
    }
    let actions = payload["actions"].as_array().cloned().unwrap_or_default();
    let (annotation, target) = actions
        .iter()
        .find_map(|action| {
            let verb = action["action_id"].as_str()?.strip_prefix(ACTION_PREFIX)?;
            let annotation = Annotation::PROCESSING_ORDER
                .into_iter()
                .find(|annotation| annotation.verb() == verb)?;
            let target: Target = serde_json::from_str(action["value"].as_str()?).ok()?;
            Some((annotation, target))
        })
        .ok_or(PayloadError::NoAction)?;
    let response_url = payload["response_url"]
        .as_str()
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        .map(str::to_string);
    Ok(Click {
        annotation,
        target,
        user_name: text(&payload["user"]["username"]),
        team_id: text(&payload["team"]["id"]).if_empty(text(&payload["user"]["team_id"])),
        user_id,
        response_url,
        trigger_id: payload["trigger_id"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        note: None,
    })
}

/// The note modal's submission: the click it was opened for (from `private_metadata`) with the
/// note typed.
fn read_submission(payload: &Value) -> Result<Click, PayloadError> {
    let view = &payload["view"];
    if view["callback_id"].as_str() != Some(NOTE_CALLBACK_ID) {
        return Err(PayloadError::NoAction);
    }
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let user_id = text(&payload["user"]["id"]);
    if user_id.is_empty() {
        return Err(PayloadError::Malformed("user.id is missing".into()));
    }
    let context: ModalContext =
        serde_json::from_str(view["private_metadata"].as_str().unwrap_or(""))
            .map_err(|error| PayloadError::Malformed(format!("private_metadata: {error}")))?;
    let annotation = Annotation::PROCESSING_ORDER
        .into_iter()
        .find(|annotation| annotation.verb() == context.verb && *annotation != Annotation::Extend)
        .ok_or(PayloadError::NoAction)?;
    let note = clean_note(
        view["state"]["values"][NOTE_INPUT][NOTE_INPUT]["value"]
            .as_str()
            .unwrap_or_default(),
    );
    Ok(Click {
        annotation,
        target: context.target,
        user_name: text(&payload["user"]["username"]),
        team_id: text(&payload["team"]["id"]).if_empty(text(&payload["user"]["team_id"])),
        user_id,
        response_url: context
            .response_url
            .filter(|url| url.starts_with("https://") || url.starts_with("http://")),
        trigger_id: None,
        note: Some(note),
    })
}

/// `a.if_empty(b)`: `b` when `a` is empty.
trait IfEmpty {
    /// The fallback.
    fn if_empty(self, other: String) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: String) -> String {
        if self.is_empty() { other } else { self }
    }
}

/// One configured Slack user → Kubernetes identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserMapping {
    /// Slack user id (`U0123ABC`); ids are stable, unlike display names. This or `email`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slack_user_id: String,
    /// The Slack user's confirmed e-mail address, looked up with `users.info` through the bot
    /// token (decision 228). This or `slackUserId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Slack team (workspace) id; when set, a click from another workspace does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Kubernetes user name asked about in the SubjectAccessReview and stamped.
    pub username: String,
    /// Kubernetes groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The Kubernetes identity of the clicking Slack user by user id; None when unmapped.
pub fn identity_of(click: &Click, mappings: &[UserMapping]) -> Option<Identity> {
    identity_for(click, mappings, None)
}

/// Whether any mapping is by e-mail (then an unmatched user id is looked up).
pub fn maps_emails(mappings: &[UserMapping]) -> bool {
    mappings.iter().any(|m| m.email.is_some())
}

/// The Kubernetes identity of the clicking Slack user: by user id first, then by `email` (the
/// user's confirmed address as Slack reports it, compared without regard to case); None when
/// unmapped.
pub fn identity_for(
    click: &Click,
    mappings: &[UserMapping],
    email: Option<&str>,
) -> Option<Identity> {
    let team_ok = |mapping: &&UserMapping| {
        mapping
            .team_id
            .as_ref()
            .is_none_or(|team| *team == click.team_id)
    };
    let by_id = mappings.iter().filter(team_ok).find(|mapping| {
        !mapping.slack_user_id.is_empty() && mapping.slack_user_id == click.user_id
    });
    let by_email = || {
        let email = email.map(str::trim).filter(|e| !e.is_empty())?;
        mappings.iter().filter(team_ok).find(|mapping| {
            mapping
                .email
                .as_deref()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(email))
        })
    };
    by_id
        .or_else(by_email)
        .filter(|mapping| !mapping.username.trim().is_empty())
        .map(|mapping| Identity {
            username: mapping.username.clone(),
            uid: String::new(),
            groups: mapping.groups.clone(),
        })
}

/// The phases in which a button still does something.
pub fn applies_in(annotation: Annotation, phase: Phase) -> bool {
    match annotation {
        Annotation::Approve | Annotation::Reject => phase == Phase::PendingApproval,
        Annotation::Extend => phase == Phase::Active,
        Annotation::Release => matches!(phase, Phase::Active | Phase::Failed),
    }
}

/// Whether a click still applies to the Quarantine as read now (`uid`, `phase`; None when it is
/// gone): the reason it does not, for an ephemeral "no longer applies" answer.
pub fn stale(click: &Click, current: Option<(&str, Option<Phase>)>) -> Option<String> {
    let name = &click.target.name;
    match current {
        None => Some(format!("Quarantine {name} no longer exists.")),
        Some((uid, _)) if uid != click.target.uid => Some(format!(
            "Quarantine {name} was replaced by a newer one; this button no longer applies."
        )),
        Some((_, phase)) => match phase {
            Some(phase) if applies_in(click.annotation, phase) => None,
            Some(phase) => Some(format!(
                "Quarantine {name} is {}; {} no longer applies.",
                phase.as_str(),
                click.annotation.verb()
            )),
            None => Some(format!(
                "Quarantine {name} has no phase yet; {} does not apply.",
                click.annotation.verb()
            )),
        },
    }
}

/// The annotation value the click writes: `<username>: <what>` (`what` is the note typed in the
/// modal, else `<verb> from Slack`, or the extension for extend), so the self-asserted actor is
/// the same as the stamped one.
pub fn annotation_value(
    identity: &Identity,
    annotation: Annotation,
    extend_by: &str,
    note: Option<&str>,
) -> String {
    let actor: String = identity
        .username
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'))
        .take(crate::controller::lifecycle::MAX_ACTOR_CHARS)
        .collect();
    let what = match (annotation, note.filter(|note| !note.is_empty())) {
        (Annotation::Extend, _) => extend_by.to_string(),
        (_, Some(note)) => note.to_string(),
        (other, None) => format!("{} from Slack", other.verb()),
    };
    if actor.is_empty() {
        what
    } else {
        format!("{actor}: {what}")
    }
}

/// The access request the approval webhook's decision judges, as if `identity` had written
/// `value` to `annotation` with kubectl (no stamps written by the person).
pub fn review_request(
    click: &Click,
    identity: &Identity,
    policy: &str,
    value: &str,
) -> crate::controller::admission::review::Request {
    crate::controller::admission::review::Request {
        review_uid: String::new(),
        identity: identity.clone(),
        namespace: click.target.namespace.clone(),
        name: click.target.name.clone(),
        quarantine_uid: click.target.uid.clone(),
        policy: policy.to_string(),
        changed: vec![(click.annotation, value.to_string())],
        stamps_written: Vec::new(),
        ..Default::default()
    }
}

/// Annotations of a Quarantine as a map (for tests and adapters).
pub type Annotations = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identities_by_email_match_the_confirmed_address_only_when_no_id_matches() {
        let mappings: Vec<UserMapping> = serde_json::from_value(json!([
            {"slackUserId": "U1", "username": "by-id"},
            {"email": "Carol@Example.com", "username": "carol", "groups": ["approvers"]},
            {"email": "dave@example.com", "teamId": "T9", "username": "dave"}
        ]))
        .unwrap();
        assert!(maps_emails(&mappings));
        let click = |user: &str| Click {
            annotation: Annotation::Approve,
            target: Target {
                namespace: "ns".into(),
                name: "q".into(),
                uid: "u".into(),
            },
            user_id: user.into(),
            user_name: String::new(),
            team_id: "T1".into(),
            response_url: None,
            trigger_id: None,
            note: None,
        };
        let name = |identity: Option<Identity>| identity.map(|i| i.username);
        assert_eq!(
            name(identity_for(
                &click("U1"),
                &mappings,
                Some("carol@example.com")
            )),
            Some("by-id".into())
        );
        assert_eq!(
            name(identity_for(
                &click("U2"),
                &mappings,
                Some(" carol@EXAMPLE.com ")
            )),
            Some("carol".into())
        );
        assert_eq!(name(identity_for(&click("U2"), &mappings, None)), None);
        assert_eq!(name(identity_for(&click("U2"), &mappings, Some(""))), None);
        // Another workspace's user with a matching address is not dave.
        assert_eq!(
            name(identity_for(
                &click("U3"),
                &mappings,
                Some("dave@example.com")
            )),
            None
        );
        // A mapping by e-mail never matches an empty user id.
        assert_eq!(name(identity_for(&click(""), &mappings, None)), None);
    }

    fn body(payload: &Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn click_payload(action: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U1", "username": "alice.s", "team_id": "T1"},
            "team": {"id": "T1", "domain": "example"},
            "response_url": "https://hooks.slack.com/actions/T1/1/x",
            "actions": [{"type": "button", "action_id": action, "block_id": "b",
                "value": "{\"ns\":\"team\",\"name\":\"q1\",\"uid\":\"u-1\"}", "action_ts": "1"}]
        })
    }

    #[test]
    fn the_note_modal_carries_the_click_and_its_submission_brings_the_note_back() {
        let mut payload = click_payload("autoguardrails.approve");
        payload["trigger_id"] = json!("123.456.abc");
        payload["response_url"] = json!("https://hooks.slack.com/actions/T/1/x");
        let click = read(&body(&payload)).unwrap();
        assert!(asks_for_note(&click));
        let view = note_view(&click);
        assert_eq!(view["callback_id"], NOTE_CALLBACK_ID);
        let submission = json!({
            "type": "view_submission",
            "user": {"id": "U1", "username": "alice"},
            "team": {"id": "T1"},
            "view": {
                "callback_id": NOTE_CALLBACK_ID,
                "private_metadata": view["private_metadata"],
                "state": {"values": {"note": {"note": {"type": "plain_text_input",
                    "value": "  budget\nowner   agreed\u{0007} "}}}}
            }
        });
        let submitted = read(&body(&submission)).unwrap();
        assert_eq!(submitted.note.as_deref(), Some("budget owner agreed"));
        assert_eq!(
            (
                submitted.annotation,
                &submitted.target,
                &submitted.response_url
            ),
            (click.annotation, &click.target, &click.response_url)
        );
        assert!(!asks_for_note(&submitted));
        // Extend asks for no note; another modal's submission is not ours.
        let mut extend = click.clone();
        extend.annotation = Annotation::Extend;
        assert!(!asks_for_note(&extend));
        let mut other = submission.clone();
        other["view"]["callback_id"] = json!("someone.else");
        assert_eq!(read(&body(&other)), Err(PayloadError::NoAction));
        let identity = Identity {
            username: "alice".into(),
            ..Identity::default()
        };
        assert_eq!(
            annotation_value(
                &identity,
                Annotation::Approve,
                "2h",
                Some("budget owner agreed")
            ),
            "alice: budget owner agreed"
        );
        assert_eq!(
            annotation_value(&identity, Annotation::Approve, "2h", Some("")),
            "alice: approve from Slack"
        );
        assert_eq!(clean_note(&"x".repeat(500)).len(), MAX_NOTE_CHARS);
    }

    #[test]
    fn a_block_actions_click_is_read() {
        let click = read(&body(&click_payload("autoguardrails.approve"))).unwrap();
        assert_eq!(click.annotation, Annotation::Approve);
        assert_eq!(click.target.name, "q1");
        assert_eq!(click.target.uid, "u-1");
        assert_eq!(click.user_id, "U1");
        assert_eq!(click.team_id, "T1");
        assert_eq!(
            click.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/T1/1/x")
        );
        assert_eq!(
            read(&body(&click_payload("someone.else"))),
            Err(PayloadError::NoAction)
        );
        assert!(matches!(
            read(b"payload=%7Bnot json"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            read(&body(&json!({"type": "shortcut", "user": {"id": "U1"}}))),
            Err(PayloadError::Unsupported(_))
        ));
        // A modal submission that is not our note modal.
        assert_eq!(
            read(&body(
                &json!({"type": "view_submission", "user": {"id": "U1"}})
            )),
            Err(PayloadError::NoAction)
        );
    }

    #[test]
    fn identities_come_from_the_mapping_only() {
        let click = read(&body(&click_payload("autoguardrails.reject"))).unwrap();
        let mappings = vec![
            UserMapping {
                slack_user_id: "U1".into(),
                email: None,
                team_id: Some("T2".into()),
                username: "wrong-team".into(),
                groups: vec![],
            },
            UserMapping {
                slack_user_id: "U1".into(),
                email: None,
                team_id: None,
                username: "alice".into(),
                groups: vec!["approvers".into()],
            },
        ];
        let identity = identity_of(&click, &mappings).unwrap();
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.groups, vec!["approvers".to_string()]);
        assert_eq!(identity_of(&click, &mappings[..1]), None);
        assert_eq!(identity_of(&click, &[]), None);
        assert_eq!(
            annotation_value(&identity, Annotation::Reject, "2h", None),
            "alice: reject from Slack"
        );
        assert_eq!(
            annotation_value(&identity, Annotation::Extend, "2h", Some("ignored")),
            "alice: 2h"
        );
    }

    #[test]
    fn stale_buttons_say_why() {
        let click = read(&body(&click_payload("autoguardrails.approve"))).unwrap();
        assert_eq!(
            stale(&click, Some(("u-1", Some(Phase::PendingApproval)))),
            None
        );
        assert!(stale(&click, Some(("u-2", Some(Phase::PendingApproval)))).is_some());
        assert!(
            stale(&click, Some(("u-1", Some(Phase::Active))))
                .unwrap()
                .contains("Active")
        );
        assert!(stale(&click, None).is_some());
        assert!(stale(&click, Some(("u-1", None))).is_some());
    }
}
