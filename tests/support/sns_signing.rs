//! Builds SNS envelopes signed with the committed test key (`tests/fixtures/signals/sns/`), the
//! way SNS does: the documented string-to-sign, RSASSA-PKCS1-v1_5 with SHA-1 (v1) or SHA-256
//! (v2). Shared by the HTTP tests, the end-to-end test and the load benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The test signing key (PKCS#8 PEM).
pub const KEY: &str = include_str!("../fixtures/signals/sns/test-key.pem");
/// Its self-signed certificate.
pub const CERT: &str = include_str!("../fixtures/signals/sns/test-cert.pem");
/// A different key, for forgeries.
pub const OTHER_KEY: &str = include_str!("../fixtures/signals/sns/other-key.pem");
/// An allowed topic.
pub const TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:cost-alerts";
/// A certificate URL that passes validation.
pub const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000a.pem";

/// A parsed signing key (parse once; signing in debug builds is slow enough).
pub struct Signer {
    key: RsaPrivateKey,
}

impl Signer {
    /// The committed test key.
    pub fn test() -> Signer {
        Signer::from_pem(KEY)
    }

    /// Another key (its signatures do not verify against `CERT`).
    pub fn other() -> Signer {
        Signer::from_pem(OTHER_KEY)
    }

    fn from_pem(pem: &str) -> Signer {
        Signer {
            key: RsaPrivateKey::from_pkcs8_pem(pem).expect("test key parses"),
        }
    }

    /// Signs `fields` (string-to-sign built from the documentation) with version "1" or "2".
    pub fn sign(&self, fields: &BTreeMap<String, String>, version: &str) -> String {
        let data = string_to_sign(fields);
        let signature = if version == "1" {
            self.key.sign(
                Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(data.as_bytes()),
            )
        } else {
            self.key.sign(
                Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(data.as_bytes()),
            )
        }
        .expect("signing works");
        base64::engine::general_purpose::STANDARD.encode(signature)
    }

    /// A complete signed envelope.
    pub fn envelope(&self, fields: &BTreeMap<String, String>, version: &str) -> String {
        let signature = self.sign(fields, version);
        render(fields, version, &signature, CERT_URL)
    }
}

/// The string-to-sign as AWS documents it.
pub fn string_to_sign(fields: &BTreeMap<String, String>) -> String {
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

/// The envelope JSON for `fields` with the given signature and certificate URL.
pub fn render(
    fields: &BTreeMap<String, String>,
    version: &str,
    signature: &str,
    cert_url: &str,
) -> String {
    let mut object = serde_json::Map::new();
    for (key, value) in fields {
        object.insert(key.clone(), Value::String(value.clone()));
    }
    object.insert("SignatureVersion".into(), json!(version));
    object.insert("Signature".into(), json!(signature));
    object.insert("SigningCertURL".into(), json!(cert_url));
    Value::Object(object).to_string()
}

/// Fields of a Notification carrying `message`.
pub fn notification(message_id: &str, timestamp: &str, message: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    fields.insert("Type".into(), "Notification".into());
    fields.insert("MessageId".into(), message_id.into());
    fields.insert("TopicArn".into(), TOPIC.into());
    fields.insert("Timestamp".into(), timestamp.into());
    fields.insert("Subject".into(), "AWS Cost Anomaly Detection alert".into());
    fields.insert("Message".into(), message.into());
    fields
}

/// Fields of a SubscriptionConfirmation (or UnsubscribeConfirmation) with `subscribe_url`.
pub fn confirmation(
    kind: &str,
    message_id: &str,
    timestamp: &str,
    subscribe_url: &str,
) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    fields.insert("Type".into(), kind.into());
    fields.insert("MessageId".into(), message_id.into());
    fields.insert("TopicArn".into(), TOPIC.into());
    fields.insert("Timestamp".into(), timestamp.into());
    fields.insert(
        "Message".into(),
        format!("You have chosen to subscribe to the topic {TOPIC}."),
    );
    fields.insert("Token".into(), "2336412f37fb687f5d51e6e241d09c80".into());
    fields.insert("SubscribeURL".into(), subscribe_url.into());
    fields
}

/// A Cost Anomaly Detection IMMEDIATE alert for `anomaly_id` in `account`.
pub fn anomaly_message(anomaly_id: &str, account: &str, impact: f64) -> String {
    json!({
        "accountId": account,
        "anomalyId": anomaly_id,
        "anomalyStartDate": "2026-11-22T00:00:00Z",
        "anomalyEndDate": "2026-11-23T00:00:00Z",
        "dimensionalValue": "Amazon Elastic Compute Cloud - Compute",
        "monitorArn": format!("arn:aws:ce::{account}:anomalymonitor/abcdef12-1234-4ea0-84cc-918a97d736ef"),
        "impact": { "maxImpact": impact, "totalActualSpend": impact + 100.0, "totalExpectedSpend": 100.0,
                    "totalImpact": impact, "totalImpactPercentage": 500.0 },
        "rootCauses": [{ "linkedAccount": account, "region": "ap-northeast-1",
                         "service": "Amazon Elastic Compute Cloud - Compute",
                         "usageType": "APN1-BoxUsage:p4d.24xlarge" }]
    })
    .to_string()
}
