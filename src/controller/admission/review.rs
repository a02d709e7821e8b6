//! The approval webhook's decision, pure: from an `AdmissionReview` request on a Quarantine, which
//! access questions to ask (may this user `approve` this Quarantine, or the Quarantines of its
//! policy?), and from their answers the `AdmissionReview` response: refuse with a clear message,
//! or allow with a JSONPatch stamping the verified identity. It must not call the API server.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use super::stamp::{GUARDED, Identity, StampKey, stamp_key};
use crate::controller::lifecycle::Annotation;

/// The API group of Quarantines and GuardrailPolicies.
pub const GROUP: &str = "autoguardrails.io";
/// The verb an approver needs.
pub const APPROVE_VERB: &str = "approve";
/// The webhook configuration's `matchConditions` expression (the chart renders the same file):
/// the webhook is called only when an approve, reject or extend annotation, or a stamp, is given a
/// new value. Removing one, release, status writes and every other change never reach it, so they
/// keep working when the webhook is down.
pub const MATCH_CONDITION: &str =
    include_str!("../../../charts/autoguardrails/files/approval-match-condition.cel");

/// One SubjectAccessReview to ask: may `identity` do `approve` on `resource`/`name` in `namespace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessQuestion {
    /// The user asking.
    pub identity: Identity,
    /// `quarantines` or `guardrailpolicies`.
    pub resource: &'static str,
    /// The namespace.
    pub namespace: String,
    /// The object name (resourceNames in RBAC).
    pub name: String,
}

/// What one access question got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessAnswer {
    /// Allowed.
    Allowed,
    /// Not allowed.
    Denied,
    /// The question could not be asked (the SubjectAccessReview failed): approval fails closed.
    Unknown(String),
}

/// What a request changes, read from the review.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Request {
    /// `AdmissionReview.request.uid`.
    pub review_uid: String,
    /// The user the API server authenticated.
    pub identity: Identity,
    /// Namespace of the Quarantine.
    pub namespace: String,
    /// Name of the Quarantine.
    pub name: String,
    /// uid of the Quarantine (empty on CREATE).
    pub quarantine_uid: String,
    /// Policy named in `spec.policyRef.name`.
    pub policy: String,
    /// Guarded annotations set to a new value, with that value.
    pub changed: Vec<(Annotation, String)>,
    /// Stamp annotations the request itself writes (added or changed).
    pub stamps_written: Vec<String>,
    /// The guarded annotations the request writes a stamp for: (annotation, its new value, the
    /// stamp written).
    pub stamped: Vec<(Annotation, String, String)>,
    /// The writer is the controller itself (its own service account), which writes stamps only
    /// after deciding through [`decide`] for another channel (Slack, decision 231). Set by the
    /// adapter, never read from the review.
    pub written_by_controller: bool,
}

/// The annotations of an object (`Null` gives none).
fn annotations_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["annotations"]
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads what the webhook needs from an AdmissionReview; `Err` when it is not a review of a
/// Quarantine write it can judge.
pub fn read(review: &Value) -> Result<Request, String> {
    let request = &review["request"];
    if !request.is_object() {
        return Err("the AdmissionReview has no request".into());
    }
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let object = &request["object"];
    let old = &request["oldObject"];
    let new_annotations = annotations_of(object);
    let old_annotations = annotations_of(old);
    let changed = GUARDED
        .iter()
        .filter_map(|annotation| {
            let new = new_annotations.get(annotation.key())?;
            (old_annotations.get(annotation.key()) != Some(new)).then(|| (*annotation, new.clone()))
        })
        .collect();
    let stamps_written = GUARDED
        .iter()
        .map(|annotation| stamp_key(*annotation))
        .filter(|key| {
            new_annotations
                .get(key)
                .is_some_and(|new| old_annotations.get(key) != Some(new))
        })
        .collect();
    let stamped = GUARDED
        .iter()
        .filter_map(|annotation| {
            let value = new_annotations.get(annotation.key())?;
            let stamp = new_annotations.get(&stamp_key(*annotation))?;
            (old_annotations.get(&stamp_key(*annotation)) != Some(stamp))
                .then(|| (*annotation, value.clone(), stamp.clone()))
        })
        .collect();
    let identity: Identity = serde_json::from_value(request["userInfo"].clone())
        .map_err(|error| format!("request.userInfo is unreadable: {error}"))?;
    Ok(Request {
        review_uid: text(&request["uid"]),
        identity,
        namespace: text(&request["namespace"]),
        name: text(&request["name"]),
        quarantine_uid: text(&old["metadata"]["uid"]),
        policy: text(&object["spec"]["policyRef"]["name"]),
        changed,
        stamps_written,
        stamped,
        written_by_controller: false,
    })
}

/// The access questions, in the order to ask them (the first allowed answer settles it): the
/// Quarantine by name, then the Quarantines of its policy (`approve` on `guardrailpolicies` with
/// the policy's name). None when the request changes no guarded annotation.
pub fn questions(request: &Request) -> Vec<AccessQuestion> {
    if request.changed.is_empty() {
        return Vec::new();
    }
    let mut questions = vec![AccessQuestion {
        identity: request.identity.clone(),
        resource: "quarantines",
        namespace: request.namespace.clone(),
        name: request.name.clone(),
    }];
    if !request.policy.is_empty() {
        questions.push(AccessQuestion {
            identity: request.identity.clone(),
            resource: "guardrailpolicies",
            namespace: request.namespace.clone(),
            name: request.policy.clone(),
        });
    }
    questions
}

/// The verdict on a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Allowed; the JSONPatch operations to apply (possibly none).
    Allow(Vec<Value>),
    /// Refused with this HTTP code and message.
    Refuse(u16, String),
}

/// Decides from the request and the answers to [`questions`] (in order; asking may stop at the
/// first `Allowed`).
pub fn decide(request: &Request, answers: &[AccessAnswer], key: &StampKey) -> Verdict {
    if request.written_by_controller
        && !request.stamps_written.is_empty()
        && request.stamps_written.len() == request.stamped.len()
        && request.changed.iter().all(|(annotation, _)| {
            request
                .stamped
                .iter()
                .any(|(stamped, _, _)| stamped == annotation)
        })
        && request.stamped.iter().all(|(annotation, value, stamp)| {
            key.verify(&request.quarantine_uid, annotation.key(), value, stamp)
                .is_some()
        })
    {
        // The controller decided through this function for another channel (Slack) and
        // stamped with the key only it holds; every changed annotation carries a valid stamp.
        return Verdict::Allow(Vec::new());
    }
    if let Some(stamp) = request.stamps_written.first() {
        return Verdict::Refuse(
            403,
            format!(
                "{stamp} is written by the approval webhook only; remove it from your change (the webhook stamps who approved)"
            ),
        );
    }
    if request.changed.is_empty() {
        return Verdict::Allow(Vec::new());
    }
    let verbs: Vec<&str> = request
        .changed
        .iter()
        .map(|(annotation, _)| annotation.verb())
        .collect();
    if !answers.contains(&AccessAnswer::Allowed) {
        if let Some(reason) = answers.iter().find_map(|answer| match answer {
            AccessAnswer::Unknown(reason) => Some(reason),
            _ => None,
        }) {
            return Verdict::Refuse(
                503,
                format!(
                    "could not check whether {:?} may {} quarantines (approval fails closed; try again): {reason}",
                    request.identity.username,
                    verbs.join("/")
                ),
            );
        }
        return Verdict::Refuse(
            403,
            format!(
                "user {:?} may not {} Quarantine {:?} in namespace {:?}: that needs the verb \"approve\" on quarantines.autoguardrails.io (this Quarantine by name, or every Quarantine of policy {:?} through \"approve\" on guardrailpolicies by name); the ClusterRole autoguardrails:approver grants it. Nothing was changed.",
                request.identity.username,
                verbs.join("/"),
                request.name,
                request.namespace,
                request.policy
            ),
        );
    }
    // A changed guarded annotation means the annotation map exists, so `add` needs no parent.
    let mut operations = Vec::new();
    for (annotation, value) in &request.changed {
        let stamp = key.sign(
            &request.quarantine_uid,
            annotation.key(),
            value,
            &request.identity,
        );
        operations.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", stamp_key(*annotation).replace('~', "~0").replace('/', "~1")),
            "value": stamp,
        }));
    }
    Verdict::Allow(operations)
}

/// The AdmissionReview response for a verdict.
pub fn response(review_uid: &str, verdict: &Verdict) -> Value {
    let answer = match verdict {
        Verdict::Allow(operations) if operations.is_empty() => {
            json!({"uid": review_uid, "allowed": true})
        }
        Verdict::Allow(operations) => {
            let patch = serde_json::to_vec(operations).unwrap_or_default();
            json!({
                "uid": review_uid,
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch),
            })
        }
        Verdict::Refuse(code, message) => json!({
            "uid": review_uid,
            "allowed": false,
            "status": {"code": code, "reason": if *code == 403 { "Forbidden" } else { "ServiceUnavailable" }, "message": message},
        }),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(old: Value, new: Value) -> Value {
        json!({"request": {"uid": "r1", "namespace": "team", "name": "q1",
            "userInfo": {"username": "alice", "uid": "u1", "groups": ["approvers"]},
            "oldObject": old, "object": new}})
    }

    fn quarantine(annotations: Value) -> Value {
        json!({"metadata": {"uid": "quid", "annotations": annotations}, "spec": {"policyRef": {"name": "ci"}}})
    }

    #[test]
    fn an_approval_asks_about_the_quarantine_then_its_policy_and_is_stamped() {
        let request = read(&review(
            quarantine(json!({})),
            quarantine(json!({"autoguardrails.io/approve": "bob: fine"})),
        ))
        .unwrap();
        let asked = questions(&request);
        assert_eq!(asked.len(), 2);
        assert_eq!(
            (asked[0].resource, asked[0].name.as_str()),
            ("quarantines", "q1")
        );
        assert_eq!(
            (asked[1].resource, asked[1].name.as_str()),
            ("guardrailpolicies", "ci")
        );
        let key = StampKey::derive(b"k");
        let Verdict::Allow(operations) = decide(
            &request,
            &[AccessAnswer::Denied, AccessAnswer::Allowed],
            &key,
        ) else {
            panic!("refused")
        };
        assert_eq!(operations.len(), 1);
        assert_eq!(
            operations[0]["path"],
            "/metadata/annotations/autoguardrails.io~1approve-verified"
        );
        let stamp = operations[0]["value"].as_str().unwrap();
        assert_eq!(
            key.verify("quid", "autoguardrails.io/approve", "bob: fine", stamp)
                .unwrap()
                .username,
            "alice"
        );
    }

    #[test]
    fn refusals_and_what_needs_no_check() {
        let key = StampKey::derive(b"k");
        let request = read(&review(
            quarantine(json!({})),
            quarantine(json!({"autoguardrails.io/reject": "no"})),
        ))
        .unwrap();
        let Verdict::Refuse(403, message) = decide(
            &request,
            &[AccessAnswer::Denied, AccessAnswer::Denied],
            &key,
        ) else {
            panic!("allowed")
        };
        assert!(
            message.contains("user \"alice\" may not reject"),
            "{message}"
        );
        let Verdict::Refuse(503, _) =
            decide(&request, &[AccessAnswer::Unknown("down".into())], &key)
        else {
            panic!("not fail-closed")
        };
        // Removing an annotation, or release, needs nothing.
        let cleared = read(&review(
            quarantine(json!({"autoguardrails.io/approve": "x"})),
            quarantine(json!({"autoguardrails.io/release": "done"})),
        ))
        .unwrap();
        assert!(questions(&cleared).is_empty());
        assert_eq!(decide(&cleared, &[], &key), Verdict::Allow(Vec::new()));
        // A stamp written by hand is refused, whatever else the request does.
        let forged = read(&review(
            quarantine(json!({})),
            quarantine(json!({"autoguardrails.io/approve": "x", "autoguardrails.io/approve-verified": "{}"})),
        ))
        .unwrap();
        assert!(matches!(
            decide(&forged, &[AccessAnswer::Allowed], &key),
            Verdict::Refuse(403, _)
        ));
    }

    #[test]
    fn only_the_controller_may_write_a_valid_stamp() {
        let key = StampKey::derive(b"k");
        let bob = Identity {
            username: "bob".into(),
            ..Identity::default()
        };
        let stamp = key.sign("quid", "autoguardrails.io/approve", "bob: ok", &bob);
        let written = quarantine(
            json!({"autoguardrails.io/approve": "bob: ok", "autoguardrails.io/approve-verified": stamp}),
        );
        let mut request = read(&review(quarantine(json!({})), written)).unwrap();
        // By a person: refused, even though the stamp is valid (a replay).
        assert!(matches!(
            decide(&request, &[AccessAnswer::Allowed], &key),
            Verdict::Refuse(403, _)
        ));
        request.written_by_controller = true;
        assert_eq!(decide(&request, &[], &key), Verdict::Allow(Vec::new()));
        // A stamp for another value, even from the controller's identity, is refused.
        let forged = quarantine(
            json!({"autoguardrails.io/approve": "bob: other", "autoguardrails.io/approve-verified": key.sign("quid", "autoguardrails.io/approve", "bob: ok", &bob)}),
        );
        let mut request = read(&review(quarantine(json!({})), forged)).unwrap();
        request.written_by_controller = true;
        assert!(matches!(
            decide(&request, &[], &key),
            Verdict::Refuse(403, _)
        ));
    }

    #[test]
    fn an_extension_on_a_quarantine_without_annotations_is_stamped() {
        let key = StampKey::derive(b"k");
        let mut old = quarantine(Value::Null);
        old["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let new = quarantine(json!({"autoguardrails.io/extend": "2h"}));
        let request = read(&review(old, new)).unwrap();
        let response = response("r1", &decide(&request, &[AccessAnswer::Allowed], &key));
        assert_eq!(response["response"]["allowed"], true);
        assert_eq!(response["response"]["patchType"], "JSONPatch");
    }
}
