//! The verified-identity stamp: what the approval webhook writes next to an approve, reject or
//! extend annotation (`autoguardrails.io/approve-verified`, ...), signed with a key only the
//! controller holds, and how the reconcile reads it back to attribute the lifecycle event. Pure;
//! it must not read files or talk to the API server.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::controller::lifecycle::{Annotation, Event};

/// The suffix of a stamp annotation: `autoguardrails.io/approve` + `-verified`.
pub const STAMP_SUFFIX: &str = "-verified";
/// What an actor gets appended when no valid stamp vouches for it.
pub const UNVERIFIED_LABEL: &str = crate::controller::lifecycle::UNVERIFIED_SUFFIX;
/// The annotations whose changes need the `approve` permission (release never does).
pub const GUARDED: [Annotation; 3] = [Annotation::Approve, Annotation::Reject, Annotation::Extend];

/// The stamp annotation key of a guarded annotation, e.g. `autoguardrails.io/approve-verified`.
pub fn stamp_key(annotation: Annotation) -> String {
    format!("{}{STAMP_SUFFIX}", annotation.key())
}

/// Who the API server authenticated (from `AdmissionReview.request.userInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    /// User name.
    pub username: String,
    /// User id (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The HMAC key that signs stamps. Every replica derives the same key from the same Secret.
#[derive(Clone)]
pub struct StampKey {
    /// The key bytes.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for StampKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StampKey(redacted)")
    }
}

impl StampKey {
    /// A key derived from secret material (the webhook's TLS private key file, which every replica
    /// mounts from the same Secret): SHA-256 of a fixed label and the material.
    pub fn derive(material: &[u8]) -> StampKey {
        use sha2::Digest as _;
        let mut hasher = Sha256::new();
        hasher.update(b"autoguardrails approval stamp v1\0");
        hasher.update(material);
        StampKey {
            bytes: hasher.finalize().to_vec(),
        }
    }

    /// The MAC over everything a stamp vouches for (the channel only when named, so stamps made
    /// before channels existed still verify).
    fn mac(
        &self,
        quarantine_uid: &str,
        key: &str,
        value: &str,
        identity: &Identity,
        channel: Option<&str>,
    ) -> String {
        // new_from_slice accepts any key length for HMAC; the fallback is never taken.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.bytes) else {
            return String::new();
        };
        for part in [
            quarantine_uid,
            key,
            value,
            &identity.username,
            &identity.uid,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        for group in &identity.groups {
            mac.update(&(group.len() as u64).to_be_bytes());
            mac.update(group.as_bytes());
        }
        if let Some(channel) = channel {
            mac.update(b"\0channel");
            mac.update(&(channel.len() as u64).to_be_bytes());
            mac.update(channel.as_bytes());
        }
        hex(&mac.finalize().into_bytes())
    }

    /// The stamp text for `identity` having set `key` to `value` on the Quarantine `quarantine_uid`.
    pub fn sign(
        &self,
        quarantine_uid: &str,
        key: &str,
        value: &str,
        identity: &Identity,
    ) -> String {
        self.sign_via(quarantine_uid, key, value, identity, None)
    }

    /// The stamp text for `identity` having set `key` to `value` through `channel` (`slack`): the
    /// channel is signed with the rest, so no one without the key can claim it. `None` is the
    /// approval webhook's own stamp (an annotation written with kubectl or any API client).
    pub fn sign_via(
        &self,
        quarantine_uid: &str,
        key: &str,
        value: &str,
        identity: &Identity,
        channel: Option<&str>,
    ) -> String {
        let stamp = Stamp {
            user: identity.clone(),
            channel: channel.map(str::to_string),
            mac: self.mac(quarantine_uid, key, value, identity, channel),
        };
        serde_json::to_string(&stamp).unwrap_or_default()
    }

    /// The identity a stamp vouches for, when it was made with this key for exactly this
    /// Quarantine, annotation and value; None otherwise (forged, copied, stale or malformed).
    pub fn verify(
        &self,
        quarantine_uid: &str,
        key: &str,
        value: &str,
        stamp: &str,
    ) -> Option<Identity> {
        self.verify_via(quarantine_uid, key, value, stamp)
            .map(|(identity, _)| identity)
    }

    /// Like [`StampKey::verify`], with the channel the stamp was signed for (`None`: the
    /// approval webhook's stamp).
    pub fn verify_via(
        &self,
        quarantine_uid: &str,
        key: &str,
        value: &str,
        stamp: &str,
    ) -> Option<(Identity, Option<String>)> {
        let stamp: Stamp = serde_json::from_str(stamp).ok()?;
        let expected = self.mac(
            quarantine_uid,
            key,
            value,
            &stamp.user,
            stamp.channel.as_deref(),
        );
        let matches = !expected.is_empty()
            && expected.len() == stamp.mac.len()
            && expected
                .bytes()
                .zip(stamp.mac.bytes())
                .fold(0u8, |difference, (a, b)| difference | (a ^ b))
                == 0;
        matches.then_some((stamp.user, stamp.channel))
    }
}

/// The stamp annotation's value.
#[derive(Serialize, Deserialize)]
struct Stamp {
    /// Who.
    user: Identity,
    /// The channel the controller acted through for the person (`slack`); absent for the
    /// webhook's stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    /// HMAC-SHA256 (hex) over the Quarantine uid, annotation key and value, and the identity.
    mac: String,
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether a valid stamp vouches for the current value of `annotation`.
pub fn is_verified(
    annotation: Annotation,
    annotations: &BTreeMap<String, String>,
    key: Option<&StampKey>,
    quarantine_uid: &str,
) -> bool {
    verified_identity(annotation, annotations, key, quarantine_uid).is_some()
}

/// The identity a valid stamp vouches for, for the current value of `annotation`.
pub fn verified_identity(
    annotation: Annotation,
    annotations: &BTreeMap<String, String>,
    key: Option<&StampKey>,
    quarantine_uid: &str,
) -> Option<Identity> {
    let key = key?;
    let value = annotations.get(annotation.key())?;
    let stamp = annotations.get(&stamp_key(annotation))?;
    key.verify(quarantine_uid, annotation.key(), value, stamp)
}

/// The channel a valid stamp names for the current value of `annotation`: `Some(None)` for the
/// webhook's stamp, `Some(Some("slack"))` for one the controller made for Slack, `None` when no
/// valid stamp vouches for the value.
pub fn verified_channel(
    annotation: Annotation,
    annotations: &BTreeMap<String, String>,
    key: Option<&StampKey>,
    quarantine_uid: &str,
) -> Option<Option<String>> {
    let key = key?;
    let value = annotations.get(annotation.key())?;
    let stamp = annotations.get(&stamp_key(annotation))?;
    key.verify_via(quarantine_uid, annotation.key(), value, stamp)
        .map(|(_, channel)| channel)
}

/// Replaces the self-asserted actor of approve, reject and extend events by the verified user
/// name when a valid stamp vouches for the annotation's current value, and labels it
/// `<actor> (unverified)` otherwise (no key configured, no stamp, or a stamp that does not
/// verify). A release keeps its self-asserted actor unless a valid stamp (made only by the
/// controller, for Slack) names the user. Other events are left as they are.
pub fn attribute(
    events: Vec<Event>,
    annotations: &BTreeMap<String, String>,
    key: Option<&StampKey>,
    quarantine_uid: &str,
) -> Vec<Event> {
    let relabel = |annotation: Annotation, actor: String| match verified_identity(
        annotation,
        annotations,
        key,
        quarantine_uid,
    ) {
        Some(identity) => identity.username,
        None => format!("{actor}{UNVERIFIED_LABEL}"),
    };
    events
        .into_iter()
        .map(|event| match event {
            Event::Approve { actor, note } => Event::Approve {
                actor: relabel(Annotation::Approve, actor),
                note,
            },
            Event::Reject { actor, note } => Event::Reject {
                actor: relabel(Annotation::Reject, actor),
                note,
            },
            Event::Extend { actor, duration } => Event::Extend {
                actor: relabel(Annotation::Extend, actor),
                duration,
            },
            Event::Release { actor, note } => Event::Release {
                actor: verified_identity(Annotation::Release, annotations, key, quarantine_uid)
                    .map_or(actor, |identity| identity.username),
                note,
            },
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::lifecycle::parse_annotations;

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["approvers".into(), "system:authenticated".into()],
        }
    }

    #[test]
    fn a_stamp_verifies_only_for_its_quarantine_annotation_value_and_key() {
        let key = StampKey::derive(b"secret");
        let stamp = key.sign("q-uid", "autoguardrails.io/approve", "bob: ok", &alice());
        assert_eq!(
            key.verify("q-uid", "autoguardrails.io/approve", "bob: ok", &stamp),
            Some(alice())
        );
        assert_eq!(
            key.verify("other", "autoguardrails.io/approve", "bob: ok", &stamp),
            None
        );
        assert_eq!(
            key.verify("q-uid", "autoguardrails.io/reject", "bob: ok", &stamp),
            None
        );
        assert_eq!(
            key.verify("q-uid", "autoguardrails.io/approve", "bob: ok!", &stamp),
            None
        );
        assert_eq!(
            StampKey::derive(b"other").verify(
                "q-uid",
                "autoguardrails.io/approve",
                "bob: ok",
                &stamp
            ),
            None
        );
        let forged = stamp.replace("alice", "carol");
        assert_eq!(
            key.verify("q-uid", "autoguardrails.io/approve", "bob: ok", &forged),
            None
        );
        assert_eq!(
            key.verify("q-uid", "autoguardrails.io/approve", "bob: ok", "{}"),
            None
        );
    }

    #[test]
    fn a_channel_is_signed_with_the_stamp_and_cannot_be_added_or_changed() {
        let key = StampKey::derive(b"secret");
        let (k, v) = ("autoguardrails.io/approve", "alice: approve from Slack");
        let slack = key.sign_via("q-uid", k, v, &alice(), Some("slack"));
        assert_eq!(
            key.verify_via("q-uid", k, v, &slack),
            Some((alice(), Some("slack".to_string())))
        );
        let webhook = key.sign("q-uid", k, v, &alice());
        assert_eq!(
            key.verify_via("q-uid", k, v, &webhook),
            Some((alice(), None))
        );
        // Naming a channel in the webhook's stamp, or changing or dropping the signed one, breaks it.
        let claimed = webhook.replacen('{', r#"{"channel":"slack","#, 1);
        assert_eq!(key.verify_via("q-uid", k, v, &claimed), None);
        let changed = slack.replace("\"slack\"", "\"dashboard\"");
        assert_eq!(key.verify_via("q-uid", k, v, &changed), None);
        let dropped = slack.replace(r#""channel":"slack","#, "");
        assert_ne!(dropped, slack);
        assert_eq!(key.verify_via("q-uid", k, v, &dropped), None);
        let annotations = BTreeMap::from([
            (k.to_string(), v.to_string()),
            (stamp_key(Annotation::Approve), slack.clone()),
            (
                "autoguardrails.io/release".to_string(),
                "mallory: done".to_string(),
            ),
            (
                stamp_key(Annotation::Release),
                key.sign_via(
                    "q-uid",
                    "autoguardrails.io/release",
                    "alice: release from Slack",
                    &alice(),
                    Some("slack"),
                ),
            ),
        ]);
        assert_eq!(
            verified_channel(Annotation::Approve, &annotations, Some(&key), "q-uid"),
            Some(Some("slack".to_string()))
        );
        // A release stamp copied onto another value does not vouch for it.
        assert_eq!(
            verified_channel(Annotation::Release, &annotations, Some(&key), "q-uid"),
            None
        );
        let events = attribute(
            parse_annotations(&annotations),
            &annotations,
            Some(&key),
            "q-uid",
        );
        assert!(events.contains(&Event::Release {
            actor: "mallory".into(),
            note: "done".into()
        }));
    }

    #[test]
    fn events_take_the_verified_name_or_are_labelled_unverified() {
        let key = StampKey::derive(b"secret");
        let mut annotations = BTreeMap::from([
            (
                "autoguardrails.io/approve".to_string(),
                "bob: looks fine".to_string(),
            ),
            ("autoguardrails.io/extend".to_string(), "2h".to_string()),
            (
                "autoguardrails.io/release".to_string(),
                "carol: done".to_string(),
            ),
        ]);
        annotations.insert(
            stamp_key(Annotation::Approve),
            key.sign(
                "uid",
                "autoguardrails.io/approve",
                "bob: looks fine",
                &alice(),
            ),
        );
        let events = attribute(
            parse_annotations(&annotations),
            &annotations,
            Some(&key),
            "uid",
        );
        assert!(events.contains(&Event::Approve {
            actor: "alice".into(),
            note: "looks fine".into()
        }));
        assert!(events.iter().any(|event| matches!(event,
            Event::Extend { actor, .. } if actor == "kubectl-annotate (unverified)")));
        assert!(events.contains(&Event::Release {
            actor: "carol".into(),
            note: "done".into()
        }));
        let without_key = attribute(parse_annotations(&annotations), &annotations, None, "uid");
        assert!(without_key.contains(&Event::Approve {
            actor: "bob (unverified)".into(),
            note: "looks fine".into()
        }));
    }
}
