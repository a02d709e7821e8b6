//! SNS verification against envelopes signed in the test with a committed test key.

use std::cell::RefCell;
use std::collections::BTreeMap;

use autoguardrails::controller::signal::sns::{
    CertificateSource, Envelope, ReplayCache, SnsError, ValidatedCertUrl, ValidatedSubscribeUrl,
    Verifier, VerifierConfig,
};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{Value, json};
use sha2::Digest as _;

const KEY: &str = include_str!("fixtures/signals/sns/test-key.pem");
const CERT: &str = include_str!("fixtures/signals/sns/test-cert.pem");
const OTHER_KEY: &str = include_str!("fixtures/signals/sns/other-key.pem");
const OTHER_CERT: &str = include_str!("fixtures/signals/sns/other-cert.pem");

const TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:cost-alerts";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000a.pem";
const SENT: &str = "2026-12-01T10:00:00.000Z";

fn now() -> Timestamp {
    "2026-12-01T10:00:30Z".parse().unwrap()
}

/// Serves one fixed certificate and records which URLs were asked for.
struct FixedCertificate {
    pem: Vec<u8>,
    asked: RefCell<Vec<String>>,
}

impl FixedCertificate {
    fn new(pem: &str) -> Self {
        FixedCertificate {
            pem: pem.as_bytes().to_vec(),
            asked: RefCell::new(Vec::new()),
        }
    }
}

impl CertificateSource for &FixedCertificate {
    fn certificate(&self, url: &ValidatedCertUrl) -> Result<Vec<u8>, String> {
        self.asked.borrow_mut().push(url.as_str().to_string());
        Ok(self.pem.clone())
    }
}

/// The string-to-sign written straight from the AWS documentation, independent of the crate.
fn documented_string_to_sign(fields: &BTreeMap<String, String>) -> String {
    let order: &[&str] = if fields.get("Type").map(String::as_str) == Some("Notification") {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut out = String::new();
    for key in order {
        if let Some(value) = fields.get(*key) {
            out.push_str(&format!("{key}\n{value}\n"));
        }
    }
    out
}

fn sign(fields: &BTreeMap<String, String>, version: &str, key_pem: &str) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(key_pem).unwrap();
    let data = documented_string_to_sign(fields);
    let signature = if version == "1" {
        key.sign(
            Pkcs1v15Sign::new::<sha1::Sha1>(),
            &sha1::Sha1::digest(data.as_bytes()),
        )
    } else {
        key.sign(
            Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(data.as_bytes()),
        )
    }
    .unwrap();
    base64::engine::general_purpose::STANDARD.encode(signature)
}

fn fields(kind: &str) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("Type".into(), kind.into());
    f.insert(
        "MessageId".into(),
        format!("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf3{}", kind.len()),
    );
    f.insert("TopicArn".into(), TOPIC.into());
    f.insert("Timestamp".into(), SENT.into());
    if kind == "Notification" {
        f.insert(
            "Subject".into(),
            "AWS Budgets: data-export-monthly has exceeded your alert threshold".into(),
        );
        f.insert(
            "Message".into(),
            "AWS Budget Notification November 20, 2026\nAWS Account 111111111111\n\nBudget Name: x"
                .into(),
        );
    } else {
        f.insert("Message".into(), format!("You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message."));
        f.insert("Token".into(), "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736".into());
        f.insert("SubscribeURL".into(), format!("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37fb"));
    }
    f
}

fn envelope(
    f: &BTreeMap<String, String>,
    version: &str,
    signature: &str,
    cert_url: &str,
) -> String {
    let mut object = serde_json::Map::new();
    for (k, v) in f {
        object.insert(k.clone(), Value::String(v.clone()));
    }
    object.insert("SignatureVersion".into(), json!(version));
    object.insert("Signature".into(), json!(signature));
    object.insert("SigningCertURL".into(), json!(cert_url));
    if f.get("Type").map(String::as_str) == Some("Notification") {
        object.insert(
            "UnsubscribeURL".into(),
            json!("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"),
        );
    }
    Value::Object(object).to_string()
}

fn signed(kind: &str, version: &str) -> String {
    let f = fields(kind);
    envelope(&f, version, &sign(&f, version, KEY), CERT_URL)
}

fn verify_with(body: &str, pem: &str, now: Timestamp) -> Result<Envelope, SnsError> {
    let source = FixedCertificate::new(pem);
    let verifier = Verifier::new(VerifierConfig::new([TOPIC]), &source);
    let mut replay = ReplayCache::new(100, SignedDuration::from_hours(2));
    verifier.verify(body, now, &mut replay)
}

const KINDS: [&str; 3] = [
    "Notification",
    "SubscriptionConfirmation",
    "UnsubscribeConfirmation",
];

#[test]
fn valid_envelopes_of_every_type_and_version_verify() {
    for kind in KINDS {
        for version in ["1", "2"] {
            let body = signed(kind, version);
            let envelope = verify_with(&body, CERT, now())
                .unwrap_or_else(|e| panic!("{kind} v{version}: {e}"));
            assert_eq!(envelope.message_type.as_str(), kind);
            assert_eq!(envelope.topic_arn, TOPIC);
            assert_eq!(envelope.subscribe_url.is_some(), kind != "Notification");
        }
    }
}

#[test]
fn string_to_sign_matches_the_documented_layout() {
    let f = fields("Notification");
    let body = envelope(&f, "2", "AAAA", CERT_URL);
    let parsed = Envelope::parse(&body).unwrap();
    assert_eq!(parsed.string_to_sign(), documented_string_to_sign(&f));
    assert!(
        parsed
            .string_to_sign()
            .starts_with("Message\nAWS Budget Notification")
    );
    let mut without_subject = f.clone();
    without_subject.remove("Subject");
    let parsed = Envelope::parse(&envelope(&without_subject, "2", "AAAA", CERT_URL)).unwrap();
    assert!(!parsed.string_to_sign().contains("Subject"));
    let f = fields("SubscriptionConfirmation");
    let parsed = Envelope::parse(&envelope(&f, "1", "AAAA", CERT_URL)).unwrap();
    assert_eq!(parsed.string_to_sign(), documented_string_to_sign(&f));
    // a literal, written by hand from the documentation
    let body = json!({
        "Type": "Notification", "MessageId": "m-1", "TopicArn": TOPIC, "Subject": "s",
        "Message": "hello", "Timestamp": SENT, "SignatureVersion": "1", "Signature": "AAAA",
        "SigningCertURL": CERT_URL,
    })
    .to_string();
    assert_eq!(
        Envelope::parse(&body).unwrap().string_to_sign(),
        format!(
            "Message\nhello\nMessageId\nm-1\nSubject\ns\nTimestamp\n{SENT}\nTopicArn\n{TOPIC}\nType\nNotification\n"
        )
    );
}

#[test]
fn any_single_altered_field_is_a_bad_signature() {
    for kind in KINDS {
        for version in ["1", "2"] {
            let f = fields(kind);
            let signature = sign(&f, version, KEY);
            for key in f.keys() {
                if key == "Type" || key == "TopicArn" || key == "Timestamp" {
                    continue; // altered separately: they change type, topic or freshness
                }
                let mut altered = f.clone();
                if let Some(v) = altered.get_mut(key) {
                    v.push('x');
                }
                let body = envelope(&altered, version, &signature, CERT_URL);
                assert_eq!(
                    verify_with(&body, CERT, now()).unwrap_err(),
                    SnsError::BadSignature,
                    "{kind} v{version} altered {key}"
                );
            }
            let mut altered = f.clone();
            altered.insert("Timestamp".into(), "2026-12-01T10:00:01.000Z".into());
            let body = envelope(&altered, version, &signature, CERT_URL);
            assert_eq!(
                verify_with(&body, CERT, now()).unwrap_err(),
                SnsError::BadSignature
            );
            let mut altered = f.clone();
            altered.insert(
                "TopicArn".into(),
                "arn:aws:sns:us-east-1:111111111111:other".into(),
            );
            let source = FixedCertificate::new(CERT);
            let config = VerifierConfig::new([TOPIC, "arn:aws:sns:us-east-1:111111111111:other"]);
            let verifier = Verifier::new(config, &source);
            let mut replay = ReplayCache::new(10, SignedDuration::from_hours(1));
            let body = envelope(&altered, version, &signature, CERT_URL);
            assert_eq!(
                verifier.verify(&body, now(), &mut replay).unwrap_err(),
                SnsError::BadSignature
            );
        }
    }
    // a signed confirmation relabelled as a notification (and the reverse) does not verify
    let confirmation = fields("SubscriptionConfirmation");
    let signature = sign(&confirmation, "2", KEY);
    let mut relabelled = confirmation.clone();
    relabelled.insert("Type".into(), "UnsubscribeConfirmation".into());
    let body = envelope(&relabelled, "2", &signature, CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
    relabelled.insert("Type".into(), "Notification".into());
    let body = envelope(&relabelled, "2", &signature, CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
    let notification = fields("Notification");
    let signature = sign(&notification, "2", KEY);
    let mut relabelled = notification.clone();
    relabelled.insert("Type".into(), "SubscriptionConfirmation".into());
    relabelled.insert("Token".into(), "t".into());
    relabelled.insert(
        "SubscribeURL".into(),
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription".into(),
    );
    let body = envelope(&relabelled, "2", &signature, CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
    // a Subject added to a notification signed without one
    let mut f = fields("Notification");
    f.remove("Subject");
    let signature = sign(&f, "2", KEY);
    f.insert("Subject".into(), "injected".into());
    let body = envelope(&f, "2", &signature, CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
}

#[test]
fn wrong_version_wrong_key_and_swapped_type_fail() {
    let f = fields("Notification");
    // signed as v1 (SHA-1) but claims v2
    let body = envelope(&f, "2", &sign(&f, "1", KEY), CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
    let body = envelope(&f, "1", &sign(&f, "2", KEY), CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
    for version in ["0", "3", "", "1 "] {
        let body = envelope(&f, version, &sign(&f, "2", KEY), CERT_URL);
        let error = verify_with(&body, CERT, now()).unwrap_err();
        assert_eq!(
            error.category(),
            "UnsupportedSignatureVersion",
            "{version:?}"
        );
    }
    // signed by another key
    let body = envelope(&f, "2", &sign(&f, "2", OTHER_KEY), CERT_URL);
    assert_eq!(
        verify_with(&body, CERT, now()).unwrap_err(),
        SnsError::BadSignature
    );
    assert!(verify_with(&body, OTHER_CERT, now()).is_ok());
    // certificate not valid yet (fixtures are valid from 2026-11-23)
    let body = signed("Notification", "2");
    let early: Timestamp = "2026-11-01T10:00:30Z".parse().unwrap();
    let mut f = fields("Notification");
    f.insert("Timestamp".into(), "2026-11-01T10:00:00.000Z".into());
    let body_early = envelope(&f, "2", &sign(&f, "2", KEY), CERT_URL);
    assert_eq!(
        verify_with(&body_early, CERT, early)
            .unwrap_err()
            .category(),
        "BadCertificate"
    );
    assert_eq!(
        verify_with(&body, "not a pem", now())
            .unwrap_err()
            .category(),
        "BadCertificate"
    );
    let unknown = envelope(&fields("Notification"), "2", "AAAA", CERT_URL)
        .replace("\"Notification\"", "\"Bogus\"");
    assert_eq!(
        verify_with(&unknown, CERT, now()).unwrap_err().category(),
        "UnsupportedType"
    );
}

#[test]
fn untrusted_certificate_urls_are_rejected_before_any_fetch() {
    let bad = [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/cert.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
        "https://sns.us-east-1.amazonaws.com/x.pem#frag",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://sns.us-east-1.amazonaws.com/.pem",
        "https://sns.us-east-1.amazonaws.com/../x.pem",
        "https://sns.us-east-1.amazonaws.com/a%2F.pem",
        "https://sns.us-east-1.amazonaws.com",
        "https://sns.evil.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.co/x.pem",
        "https://SNS.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-12.amazonaws.com/x.pem",
        "https://sns.useast-1.amazonaws.com/x.pem",
        "https://sqs.us-east-1.amazonaws.com/x.pem",
        "https://xsns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com /x.pem",
        "https://evil.com\\.sns.us-east-1.amazonaws.com/x.pem",
        "",
    ];
    let f = fields("Notification");
    let signature = sign(&f, "2", KEY);
    for url in bad {
        assert_eq!(
            ValidatedCertUrl::parse(url).unwrap_err().category(),
            "UntrustedUrl",
            "{url}"
        );
        let body = envelope(&f, "2", &signature, url);
        let source = FixedCertificate::new(CERT);
        let verifier = Verifier::new(VerifierConfig::new([TOPIC]), &source);
        let mut replay = ReplayCache::new(10, SignedDuration::from_hours(1));
        assert_eq!(
            verifier
                .verify(&body, now(), &mut replay)
                .unwrap_err()
                .category(),
            "UntrustedUrl"
        );
        assert!(source.asked.borrow().is_empty(), "fetched {url}");
    }
    let good = [
        CERT_URL,
        "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com:443/a/b.pem",
    ];
    for url in good {
        assert!(ValidatedCertUrl::parse(url).is_ok(), "{url}");
    }
    assert!(
        ValidatedSubscribeUrl::parse(
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x"
        )
        .is_ok()
    );
    assert!(ValidatedSubscribeUrl::parse("https://evil.com/?Action=ConfirmSubscription").is_err());
}

#[test]
fn unknown_topic_is_rejected_before_fetching() {
    let body = signed("Notification", "2");
    let source = FixedCertificate::new(CERT);
    let verifier = Verifier::new(
        VerifierConfig::new(["arn:aws:sns:us-east-1:111111111111:other"]),
        &source,
    );
    let mut replay = ReplayCache::new(10, SignedDuration::from_hours(1));
    assert_eq!(
        verifier.verify(&body, now(), &mut replay).unwrap_err(),
        SnsError::TopicNotAllowed(TOPIC.into())
    );
    assert!(source.asked.borrow().is_empty());
    let empty = Verifier::new(VerifierConfig::new(Vec::<String>::new()), &source);
    assert_eq!(
        empty
            .verify(&body, now(), &mut replay)
            .unwrap_err()
            .category(),
        "TopicNotAllowed"
    );
}

#[test]
fn stale_and_future_timestamps_are_rejected() {
    let body = signed("Notification", "2");
    let sent: Timestamp = SENT.parse().unwrap();
    assert!(verify_with(&body, CERT, sent + SignedDuration::from_mins(60)).is_ok());
    assert_eq!(
        verify_with(&body, CERT, sent + SignedDuration::from_mins(61))
            .unwrap_err()
            .category(),
        "StaleTimestamp"
    );
    assert!(verify_with(&body, CERT, sent - SignedDuration::from_mins(5)).is_ok());
    assert_eq!(
        verify_with(&body, CERT, sent - SignedDuration::from_mins(6))
            .unwrap_err()
            .category(),
        "FutureTimestamp"
    );
    let source = FixedCertificate::new(CERT);
    let mut config = VerifierConfig::new([TOPIC]);
    config.max_age = SignedDuration::from_mins(10);
    let verifier = Verifier::new(config, &source);
    let mut replay = ReplayCache::new(10, SignedDuration::from_hours(1));
    assert_eq!(
        verifier
            .verify(&body, sent + SignedDuration::from_mins(11), &mut replay)
            .unwrap_err()
            .category(),
        "StaleTimestamp"
    );
}

#[test]
fn replayed_message_id_is_rejected_and_forgeries_do_not_poison_the_cache() {
    let body = signed("Notification", "2");
    let source = FixedCertificate::new(CERT);
    let verifier = Verifier::new(VerifierConfig::new([TOPIC]), &source);
    let mut replay = ReplayCache::new(10, SignedDuration::from_hours(1));
    // a forgery with the same MessageId first: rejected, and not remembered
    let forged = body.replace("Budget Name: x", "Budget Name: y");
    assert_eq!(
        verifier.verify(&forged, now(), &mut replay).unwrap_err(),
        SnsError::BadSignature
    );
    assert!(verifier.verify(&body, now(), &mut replay).is_ok());
    assert_eq!(
        verifier
            .verify(&body, now() + SignedDuration::from_secs(5), &mut replay)
            .unwrap_err()
            .category(),
        "Replayed"
    );
}

#[test]
fn replay_cache_is_bounded_and_expires() {
    let start: Timestamp = SENT.parse().unwrap();
    let mut cache = ReplayCache::new(3, SignedDuration::from_mins(60));
    for i in 0..3 {
        cache.check_and_insert(&format!("m{i}"), start).unwrap();
    }
    assert_eq!(
        cache.check_and_insert("m1", start).unwrap_err().category(),
        "Replayed"
    );
    cache.check_and_insert("m3", start).unwrap();
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.evicted_early(), 1);
    assert!(
        cache.check_and_insert("m0", start).is_ok(),
        "oldest was evicted"
    );
    let later = start + SignedDuration::from_mins(61);
    cache.expire(later);
    assert!(cache.is_empty());
    assert!(cache.check_and_insert("m1", later).is_ok());
    for i in 0..10_000 {
        cache.check_and_insert(&format!("x{i}"), later).unwrap();
        assert!(cache.len() <= 3);
    }
}

#[test]
fn oversized_and_malformed_bodies_are_rejected() {
    let big = "x".repeat(autoguardrails::controller::signal::sns::MAX_ENVELOPE_BYTES + 1);
    assert_eq!(Envelope::parse(&big).unwrap_err().category(), "TooLarge");
    for body in [
        "",
        "null",
        "[]",
        "{}",
        "{\"Type\":1}",
        "{\"Type\":\"Notification\"}",
    ] {
        let category = Envelope::parse(body).unwrap_err().category();
        assert!(
            ["MalformedEnvelope", "UnsupportedType"].contains(&category),
            "{body}: {category}"
        );
    }
    let f = fields("Notification");
    let body = envelope(&f, "2", "not base64!!", CERT_URL);
    assert_eq!(
        Envelope::parse(&body).unwrap_err().category(),
        "MalformedEnvelope"
    );
}

fn signed_notification_v2() -> &'static (String, BTreeMap<String, String>) {
    static SIGNED: std::sync::OnceLock<(String, BTreeMap<String, String>)> =
        std::sync::OnceLock::new();
    SIGNED.get_or_init(|| {
        let f = fields("Notification");
        let signature = sign(&f, "2", KEY);
        (signature, f)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn string_to_sign_matches_the_documentation_for_any_values(
        kind in prop::sample::select(KINDS.to_vec()),
        message in ".{0,80}",
        subject in proptest::option::of(".{0,40}"),
        token in "[a-f0-9]{0,64}",
        message_id in "[a-zA-Z0-9-]{1,64}",
    ) {
        let mut f = fields(kind);
        f.insert("Message".into(), message);
        f.insert("MessageId".into(), message_id);
        if kind == "Notification" {
            match subject {
                Some(subject) => f.insert("Subject".into(), subject),
                None => f.remove("Subject"),
            };
        } else {
            f.insert("Token".into(), token);
        }
        let parsed = Envelope::parse(&envelope(&f, "2", "AAAA", CERT_URL)).unwrap();
        prop_assert_eq!(parsed.string_to_sign(), documented_string_to_sign(&f));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Envelope::parse(&text);
        let _ = ValidatedCertUrl::parse(&text);
        let _ = verify_with(&text, CERT, now());
    }

    #[test]
    fn arbitrary_envelope_shaped_json_never_panics(
        values in proptest::collection::btree_map(
            prop::sample::select(vec!["Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp",
                "SignatureVersion", "Signature", "SigningCertURL", "SubscribeURL", "Token"]),
            prop_oneof![any::<String>().prop_map(Value::String), any::<i64>().prop_map(|n| json!(n)), Just(Value::Null)],
            0..11),
    ) {
        let body = Value::Object(values.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).to_string();
        let _ = verify_with(&body, CERT, now());
    }

    #[test]
    fn mutated_signed_messages_never_verify(
        key in prop::sample::select(vec!["Message", "MessageId", "Subject"]),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let (signature, f) = signed_notification_v2();
        let mut altered = f.clone();
        let value = altered.get_mut(key).unwrap();
        let mut chars: Vec<char> = value.chars().collect();
        let i = position.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        *value = chars.into_iter().collect();
        let body = envelope(&altered, "2", signature, CERT_URL);
        prop_assert!(verify_with(&body, CERT, now()).is_err());
    }

    #[test]
    fn mutated_signatures_never_verify(position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (signature, f) = signed_notification_v2();
        let mut raw = base64::engine::general_purpose::STANDARD.decode(signature).unwrap();
        let i = position.index(raw.len());
        raw[i] ^= flip;
        let body = envelope(f, "2", &base64::engine::general_purpose::STANDARD.encode(raw), CERT_URL);
        prop_assert_eq!(verify_with(&body, CERT, now()).unwrap_err(), SnsError::BadSignature);
    }
}

fn sns_fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/signals/sns/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn envelopes_signed_by_openssl_verify_and_their_messages_parse() {
    use autoguardrails::controller::signal::parse::{Hint, parse};
    let topic = "arn:aws:sns:ap-northeast-1:111111111111:cost-anomaly-immediate";
    let source = FixedCertificate::new(CERT);
    let mut config = VerifierConfig::new([topic]);
    config.max_age = SignedDuration::from_hours(3);
    let verifier = Verifier::new(config, &source);
    let mut replay = ReplayCache::new(100, SignedDuration::from_hours(3));
    let at: Timestamp = "2026-12-01T07:50:00Z".parse().unwrap();

    let anomaly = verifier
        .verify(
            &sns_fixture("notification-anomaly-v2.json"),
            at,
            &mut replay,
        )
        .unwrap();
    let hint = Hint {
        delivered_at: Some(anomaly.timestamp),
        ..Hint::default()
    };
    let signal = parse(&anomaly.message, &hint).unwrap();
    assert_eq!(signal.id, "12345678-abcd-ef12-3456-987654321a12");
    assert_eq!(signal.impact_usd, 912.4);

    let budget = verifier
        .verify(&sns_fixture("notification-budget-v1.json"), at, &mut replay)
        .unwrap();
    assert!(budget.subject.is_some());
    let hint = Hint {
        delivered_at: Some(budget.timestamp),
        ..Hint::default()
    };
    let signal = parse(&budget.message, &hint).unwrap();
    assert_eq!(signal.impact_usd, 75.5);
    assert_eq!(signal.observed_at, budget.timestamp);

    let confirmation = verifier
        .verify(
            &sns_fixture("subscription-confirmation-v1.json"),
            at,
            &mut replay,
        )
        .unwrap();
    assert!(
        confirmation
            .subscribe_url
            .unwrap()
            .as_str()
            .starts_with("https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription")
    );
    assert_eq!(
        source.asked.borrow().first().map(String::as_str),
        Some(
            "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"
        )
    );
    // delivering the same three again is a replay
    for name in [
        "notification-anomaly-v2.json",
        "notification-budget-v1.json",
        "subscription-confirmation-v1.json",
    ] {
        assert_eq!(
            verifier
                .verify(&sns_fixture(name), at, &mut replay)
                .unwrap_err()
                .category(),
            "Replayed"
        );
    }
}
