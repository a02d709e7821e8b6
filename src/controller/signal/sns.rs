//! Amazon SNS HTTP/S delivery verification: envelope parsing, the documented string-to-sign,
//! `SigningCertURL` validation, RSA PKCS#1 v1.5 signature checks (v1 SHA-1, v2 SHA-256), the
//! TopicArn allowlist, timestamp freshness and a bounded MessageId replay cache.
//! Pure: it never performs I/O; certificates come through [`CertificateSource`], which only ever
//! receives a [`ValidatedCertUrl`]. It does not interpret the `Message` (see `signal::parse`).

use std::collections::{BTreeSet, HashMap, VecDeque};

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::Digest as _;
use x509_cert::der::{DecodePem as _, Encode as _};

/// Largest SNS HTTP body accepted (SNS messages are at most 256 KiB; JSON escaping adds some).
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// Largest URL accepted for `SigningCertURL` or `SubscribeURL`.
pub const MAX_URL_BYTES: usize = 2048;
/// Largest `MessageId` kept in the replay cache.
pub const MAX_MESSAGE_ID_BYTES: usize = 128;
/// Largest decoded signature accepted (RSA 4096 is 512 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// Largest certificate PEM accepted from a [`CertificateSource`].
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// Why an SNS delivery was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnsError {
    /// The body is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("SNS body of {0} bytes exceeds the limit of {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge(usize),
    /// The body is not a JSON object with the fields SNS documents.
    #[error("malformed SNS envelope: {0}")]
    MalformedEnvelope(String),
    /// `Type` is not one of the three documented message types.
    #[error("unsupported SNS message type {0:?}")]
    UnsupportedType(String),
    /// `SignatureVersion` is neither "1" nor "2".
    #[error("unsupported SNS signature version {0:?}")]
    UnsupportedSignatureVersion(String),
    /// `SigningCertURL` or `SubscribeURL` is not an Amazon SNS endpoint URL.
    #[error("untrusted URL {url:?}: {reason}")]
    UntrustedUrl {
        /// The URL as received (truncated).
        url: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// `TopicArn` is not in the allowlist.
    #[error("topic {0:?} is not allowed")]
    TopicNotAllowed(String),
    /// `Timestamp` is older than the configured maximum age.
    #[error("message timestamp {timestamp} is older than {max_age}")]
    StaleTimestamp {
        /// The message's timestamp.
        timestamp: String,
        /// The configured maximum age.
        max_age: String,
    },
    /// `Timestamp` lies further in the future than the allowed clock skew.
    #[error("message timestamp {0} is in the future")]
    FutureTimestamp(String),
    /// The certificate could not be obtained.
    #[error("failed to obtain signing certificate: {0}")]
    CertificateUnavailable(String),
    /// The certificate is not a PEM X.509 certificate with an RSA key, or is outside its validity.
    #[error("invalid signing certificate: {0}")]
    BadCertificate(String),
    /// The signature does not match the string-to-sign.
    #[error("SNS signature does not verify")]
    BadSignature,
    /// The MessageId was already accepted within the replay window.
    #[error("message {0:?} was already received")]
    Replayed(String),
}

impl SnsError {
    /// A short PascalCase label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            SnsError::TooLarge(_) => "TooLarge",
            SnsError::MalformedEnvelope(_) => "MalformedEnvelope",
            SnsError::UnsupportedType(_) => "UnsupportedType",
            SnsError::UnsupportedSignatureVersion(_) => "UnsupportedSignatureVersion",
            SnsError::UntrustedUrl { .. } => "UntrustedUrl",
            SnsError::TopicNotAllowed(_) => "TopicNotAllowed",
            SnsError::StaleTimestamp { .. } => "StaleTimestamp",
            SnsError::FutureTimestamp(_) => "FutureTimestamp",
            SnsError::CertificateUnavailable(_) => "CertificateUnavailable",
            SnsError::BadCertificate(_) => "BadCertificate",
            SnsError::BadSignature => "BadSignature",
            SnsError::Replayed(_) => "Replayed",
        }
    }
}

/// The three SNS HTTP/S message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// A published message.
    Notification,
    /// Sent once when a subscription is created; carries `SubscribeURL` and `Token`.
    SubscriptionConfirmation,
    /// Sent when a subscription is deleted; carries `SubscribeURL` and `Token`.
    UnsubscribeConfirmation,
}

impl MessageType {
    /// The `Type` value as SNS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Notification => "Notification",
            MessageType::SubscriptionConfirmation => "SubscriptionConfirmation",
            MessageType::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// `SignatureVersion`: 1 = SHA1withRSA, 2 = SHA256withRSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureVersion {
    /// SHA1withRSA.
    V1,
    /// SHA256withRSA.
    V2,
}

/// A URL that passed the Amazon SNS endpoint rules; the only thing a certificate fetch may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValidatedCertUrl(String);

impl ValidatedCertUrl {
    /// Validates a `SigningCertURL`: https, host `sns.<region>.amazonaws.com[.cn]`, path ending `.pem`.
    pub fn parse(url: &str) -> Result<Self, SnsError> {
        let parts = check_sns_url(url)?;
        if parts.query.is_some() {
            return Err(untrusted(url, "certificate URL must not have a query"));
        }
        if !parts.path.ends_with(".pem") || parts.path.len() <= ".pem".len() + 1 {
            return Err(untrusted(url, "certificate URL path must end in .pem"));
        }
        if !parts
            .path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
            || parts.path.contains("..")
            || parts.path.contains("//")
        {
            return Err(untrusted(
                url,
                "certificate URL path has unexpected characters",
            ));
        }
        Ok(ValidatedCertUrl(url.to_string()))
    }

    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `SubscribeURL` that passed the Amazon SNS endpoint rules (safe to GET to confirm).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValidatedSubscribeUrl(String);

impl ValidatedSubscribeUrl {
    /// Validates a `SubscribeURL`: https, host `sns.<region>.amazonaws.com[.cn]`, no userinfo/port.
    pub fn parse(url: &str) -> Result<Self, SnsError> {
        check_sns_url(url)?;
        Ok(ValidatedSubscribeUrl(url.to_string()))
    }

    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

struct UrlParts<'a> {
    path: &'a str,
    query: Option<&'a str>,
}

fn untrusted(url: &str, reason: &'static str) -> SnsError {
    SnsError::UntrustedUrl {
        url: url.chars().take(200).collect(),
        reason,
    }
}

/// The common rules for URLs pointing at SNS: https, exact SNS host, no userinfo, default port,
/// no fragment, printable ASCII only.
fn check_sns_url(url: &str) -> Result<UrlParts<'_>, SnsError> {
    if url.len() > MAX_URL_BYTES {
        return Err(untrusted(url, "URL too long"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(untrusted(
            url,
            "URL has whitespace, control or non-ASCII characters",
        ));
    }
    if url.contains('#') || url.contains('\\') {
        return Err(untrusted(url, "URL has a fragment or backslash"));
    }
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| untrusted(url, "scheme must be https"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(untrusted(url, "URL must not carry userinfo"));
    }
    let host = match authority.split_once(':') {
        None => authority,
        Some((host, "443")) => host,
        Some(_) => return Err(untrusted(url, "URL must use the default https port")),
    };
    if !is_sns_host(host) {
        return Err(untrusted(
            url,
            "host must be sns.<region>.amazonaws.com or sns.<region>.amazonaws.com.cn",
        ));
    }
    let (path, query) = match after.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (after, None),
    };
    if !path.starts_with('/') {
        return Err(untrusted(url, "URL must have a path"));
    }
    Ok(UrlParts { path, query })
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, region `[a-z]{2}(-[a-z]+)+-[0-9]`.
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let region = match rest.strip_suffix(".amazonaws.com.cn") {
        Some(region) => region,
        None => match rest.strip_suffix(".amazonaws.com") {
            Some(region) => region,
            None => return false,
        },
    };
    is_region(region)
}

/// `[a-z]{2}(-[a-z]+)+-[0-9]`.
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !middle.is_empty()
        && middle
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && last.len() == 1
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// A parsed SNS envelope; URL fields are already validated, the signature is not yet checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// `Type`.
    pub message_type: MessageType,
    /// `MessageId`.
    pub message_id: String,
    /// `TopicArn`.
    pub topic_arn: String,
    /// `Subject` (Notification only, when present).
    pub subject: Option<String>,
    /// `Message`: the payload for notifications, a human text for confirmations.
    pub message: String,
    /// `Timestamp` exactly as received (it is part of the string-to-sign).
    pub timestamp_text: String,
    /// `Timestamp` parsed.
    pub timestamp: Timestamp,
    /// `SignatureVersion`.
    pub signature_version: SignatureVersion,
    /// `Signature`, base64-decoded.
    pub signature: Vec<u8>,
    /// `SigningCertURL`, validated.
    pub signing_cert_url: ValidatedCertUrl,
    /// `SubscribeURL` (confirmations only), validated.
    pub subscribe_url: Option<ValidatedSubscribeUrl>,
    /// `SubscribeURL` exactly as received (it is part of the string-to-sign).
    pub subscribe_url_text: Option<String>,
    /// `Token` (confirmations only).
    pub token: Option<String>,
}

fn field<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, SnsError> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(SnsError::MalformedEnvelope(format!(
            "field {name} is not a string"
        ))),
        None => Err(SnsError::MalformedEnvelope(format!(
            "field {name} is missing"
        ))),
    }
}

fn optional_field<'a>(
    object: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, SnsError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SnsError::MalformedEnvelope(format!(
            "field {name} is not a string"
        ))),
    }
}

impl Envelope {
    /// Parses an SNS HTTP/S body; validates its shape and URLs but not the signature.
    pub fn parse(body: &str) -> Result<Self, SnsError> {
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(SnsError::TooLarge(body.len()));
        }
        let value: Value = serde_json::from_str(body)
            .map_err(|e| SnsError::MalformedEnvelope(format!("not JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(SnsError::MalformedEnvelope("not a JSON object".into()));
        };
        let message_type = match field(&object, "Type")? {
            "Notification" => MessageType::Notification,
            "SubscriptionConfirmation" => MessageType::SubscriptionConfirmation,
            "UnsubscribeConfirmation" => MessageType::UnsubscribeConfirmation,
            other => {
                return Err(SnsError::UnsupportedType(other.chars().take(64).collect()));
            }
        };
        let signature_version = match field(&object, "SignatureVersion")? {
            "1" => SignatureVersion::V1,
            "2" => SignatureVersion::V2,
            other => {
                return Err(SnsError::UnsupportedSignatureVersion(
                    other.chars().take(16).collect(),
                ));
            }
        };
        let message_id = field(&object, "MessageId")?;
        if message_id.is_empty() || message_id.len() > MAX_MESSAGE_ID_BYTES {
            return Err(SnsError::MalformedEnvelope(format!(
                "MessageId must be 1 to {MAX_MESSAGE_ID_BYTES} bytes"
            )));
        }
        let timestamp_text = field(&object, "Timestamp")?;
        let timestamp: Timestamp = timestamp_text.parse().map_err(|_| {
            SnsError::MalformedEnvelope("Timestamp is not an RFC 3339 timestamp".into())
        })?;
        let signature_text = field(&object, "Signature")?;
        if signature_text.len() > MAX_SIGNATURE_BYTES * 2 {
            return Err(SnsError::MalformedEnvelope("Signature too long".into()));
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature_text)
            .map_err(|_| SnsError::MalformedEnvelope("Signature is not base64".into()))?;
        if signature.is_empty() || signature.len() > MAX_SIGNATURE_BYTES {
            return Err(SnsError::MalformedEnvelope(
                "Signature has an impossible length".into(),
            ));
        }
        let signing_cert_url = ValidatedCertUrl::parse(field(&object, "SigningCertURL")?)?;
        let (subject, subscribe_url, subscribe_url_text, token) = match message_type {
            MessageType::Notification => (
                optional_field(&object, "Subject")?.map(str::to_string),
                None,
                None,
                None,
            ),
            MessageType::SubscriptionConfirmation | MessageType::UnsubscribeConfirmation => {
                let url = field(&object, "SubscribeURL")?;
                (
                    None,
                    Some(ValidatedSubscribeUrl::parse(url)?),
                    Some(url.to_string()),
                    Some(field(&object, "Token")?.to_string()),
                )
            }
        };
        Ok(Envelope {
            message_type,
            message_id: message_id.to_string(),
            topic_arn: field(&object, "TopicArn")?.to_string(),
            subject,
            message: field(&object, "Message")?.to_string(),
            timestamp_text: timestamp_text.to_string(),
            timestamp,
            signature_version,
            signature,
            signing_cert_url,
            subscribe_url,
            subscribe_url_text,
            token,
        })
    }

    /// The documented string-to-sign: `key\nvalue\n` pairs in the documented order.
    pub fn string_to_sign(&self) -> String {
        let mut out = String::new();
        let mut push = |key: &str, value: &str| {
            out.push_str(key);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        };
        match self.message_type {
            MessageType::Notification => {
                push("Message", &self.message);
                push("MessageId", &self.message_id);
                if let Some(subject) = &self.subject {
                    push("Subject", subject);
                }
                push("Timestamp", &self.timestamp_text);
                push("TopicArn", &self.topic_arn);
                push("Type", self.message_type.as_str());
            }
            MessageType::SubscriptionConfirmation | MessageType::UnsubscribeConfirmation => {
                push("Message", &self.message);
                push("MessageId", &self.message_id);
                push(
                    "SubscribeURL",
                    self.subscribe_url_text.as_deref().unwrap_or(""),
                );
                push("Timestamp", &self.timestamp_text);
                push("Token", self.token.as_deref().unwrap_or(""));
                push("TopicArn", &self.topic_arn);
                push("Type", self.message_type.as_str());
            }
        }
        out
    }

    /// Checks the signature against the RSA key in a PEM X.509 certificate valid at `now`.
    pub fn verify_signature(&self, certificate_pem: &[u8], now: Timestamp) -> Result<(), SnsError> {
        let key = public_key_from_pem(certificate_pem, now)?;
        let message = self.string_to_sign();
        let result = match self.signature_version {
            SignatureVersion::V1 => key.verify(
                Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(message.as_bytes()),
                &self.signature,
            ),
            SignatureVersion::V2 => key.verify(
                Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(message.as_bytes()),
                &self.signature,
            ),
        };
        result.map_err(|_| SnsError::BadSignature)
    }
}

/// The validity period (`notBefore`, `notAfter`) of a PEM X.509 certificate.
pub fn certificate_validity(certificate_pem: &[u8]) -> Result<(Timestamp, Timestamp), SnsError> {
    let certificate = x509_cert::Certificate::from_pem(certificate_pem)
        .map_err(|e| SnsError::BadCertificate(format!("not a PEM X.509 certificate: {e}")))?;
    let validity = &certificate.tbs_certificate.validity;
    let instant = |time: &x509_cert::time::Time| {
        i64::try_from(time.to_unix_duration().as_secs())
            .ok()
            .and_then(|seconds| Timestamp::from_second(seconds).ok())
            .ok_or_else(|| SnsError::BadCertificate("validity outside the supported range".into()))
    };
    Ok((
        instant(&validity.not_before)?,
        instant(&validity.not_after)?,
    ))
}

/// Extracts the RSA public key from a PEM certificate and checks its validity period.
pub fn public_key_from_pem(
    certificate_pem: &[u8],
    now: Timestamp,
) -> Result<RsaPublicKey, SnsError> {
    if certificate_pem.len() > MAX_CERTIFICATE_BYTES {
        return Err(SnsError::BadCertificate("certificate too large".into()));
    }
    let certificate = x509_cert::Certificate::from_pem(certificate_pem)
        .map_err(|e| SnsError::BadCertificate(format!("not a PEM X.509 certificate: {e}")))?;
    let validity = &certificate.tbs_certificate.validity;
    let now_seconds = now.as_second();
    let not_before =
        i64::try_from(validity.not_before.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    let not_after =
        i64::try_from(validity.not_after.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    if now_seconds < not_before || now_seconds > not_after {
        // Decision 250: pinning never relaxes this; the period is named so an operator sees at
        // once that a pinned certificate has expired (or the clock is wrong).
        let instant = |seconds: i64| {
            Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
        };
        return Err(SnsError::BadCertificate(format!(
            "certificate is outside its validity period ({} to {}) at {now}",
            instant(not_before),
            instant(not_after)
        )));
    }
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| SnsError::BadCertificate(format!("cannot encode public key: {e}")))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| SnsError::BadCertificate(format!("not an RSA public key: {e}")))
}

/// Supplies the PEM certificate behind a validated `SigningCertURL` (HTTPS fetch + cache later).
pub trait CertificateSource {
    /// Returns the PEM bytes for `url`; called only with URLs that passed validation.
    fn certificate(&self, url: &ValidatedCertUrl) -> Result<Vec<u8>, String>;
}

/// What a deployment trusts: topics, and how old or new a message may be.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifierConfig {
    /// Exact TopicArns accepted; empty accepts nothing.
    pub allowed_topics: BTreeSet<String>,
    /// Oldest accepted message age (default 1 hour).
    pub max_age: SignedDuration,
    /// How far in the future a timestamp may be (clock skew; default 5 minutes).
    pub max_future_skew: SignedDuration,
}

impl VerifierConfig {
    /// A config trusting `topics` with the default age limits.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(topics: I) -> Self {
        VerifierConfig {
            allowed_topics: topics.into_iter().map(Into::into).collect(),
            max_age: SignedDuration::from_hours(1),
            max_future_skew: SignedDuration::from_mins(5),
        }
    }
}

/// Verifies SNS deliveries end to end (shape, URL, topic, time, signature, replay).
pub struct Verifier<C> {
    config: VerifierConfig,
    certificates: C,
}

impl<C: CertificateSource> Verifier<C> {
    /// A verifier over `config`, fetching certificates through `certificates`.
    pub fn new(config: VerifierConfig, certificates: C) -> Self {
        Verifier {
            config,
            certificates,
        }
    }

    /// Runs every check in order; the MessageId is recorded only once the signature verified.
    pub fn verify(
        &self,
        body: &str,
        now: Timestamp,
        replay: &mut ReplayCache,
    ) -> Result<Envelope, SnsError> {
        let envelope = Envelope::parse(body)?;
        if !self.config.allowed_topics.contains(&envelope.topic_arn) {
            return Err(SnsError::TopicNotAllowed(
                envelope.topic_arn.chars().take(256).collect(),
            ));
        }
        check_freshness(&envelope, now, &self.config)?;
        let pem = self
            .certificates
            .certificate(&envelope.signing_cert_url)
            .map_err(SnsError::CertificateUnavailable)?;
        envelope.verify_signature(&pem, now)?;
        replay.check_and_insert(&envelope.message_id, now)?;
        Ok(envelope)
    }
}

fn check_freshness(
    envelope: &Envelope,
    now: Timestamp,
    config: &VerifierConfig,
) -> Result<(), SnsError> {
    let age = now.duration_since(envelope.timestamp);
    if age > config.max_age {
        return Err(SnsError::StaleTimestamp {
            timestamp: envelope.timestamp_text.clone(),
            max_age: format!("{:#}", config.max_age),
        });
    }
    if envelope.timestamp.duration_since(now) > config.max_future_skew {
        return Err(SnsError::FutureTimestamp(envelope.timestamp_text.clone()));
    }
    Ok(())
}

/// A bounded set of recently accepted MessageIds; time is passed in, nothing reads a clock.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    retention: SignedDuration,
    seen: HashMap<String, Timestamp>,
    order: VecDeque<(Timestamp, String)>,
    evicted_early: u64,
}

impl ReplayCache {
    /// A cache of at most `capacity` ids, each kept for `retention` (use ≥ the verifier's max age).
    pub fn new(capacity: usize, retention: SignedDuration) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            retention,
            seen: HashMap::new(),
            order: VecDeque::new(),
            evicted_early: 0,
        }
    }

    /// Rejects an id seen within the retention, without recording it.
    pub fn check(&mut self, message_id: &str, now: Timestamp) -> Result<(), SnsError> {
        self.expire(now);
        if self.seen.contains_key(message_id) {
            return Err(SnsError::Replayed(
                message_id.chars().take(MAX_MESSAGE_ID_BYTES).collect(),
            ));
        }
        Ok(())
    }

    /// Rejects an id seen within the retention; otherwise records it at `now`.
    pub fn check_and_insert(&mut self, message_id: &str, now: Timestamp) -> Result<(), SnsError> {
        self.expire(now);
        if self.seen.contains_key(message_id) {
            return Err(SnsError::Replayed(
                message_id.chars().take(MAX_MESSAGE_ID_BYTES).collect(),
            ));
        }
        while self.seen.len() >= self.capacity {
            match self.order.pop_front() {
                Some((_, oldest)) => {
                    self.seen.remove(&oldest);
                    self.evicted_early = self.evicted_early.saturating_add(1);
                }
                None => break,
            }
        }
        self.seen.insert(message_id.to_string(), now);
        self.order.push_back((now, message_id.to_string()));
        Ok(())
    }

    /// Forgets `message_id`, so a redelivery is processed again (used when handling the message
    /// failed after it was recorded, e.g. intake asked the sender to retry).
    pub fn forget(&mut self, message_id: &str) {
        if self.seen.remove(message_id).is_some() {
            self.order.retain(|(_, id)| id != message_id);
        }
    }

    /// Drops ids recorded more than the retention before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= self.retention {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.seen.remove(&id);
            }
        }
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// How many ids were dropped before their retention ended because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_the_documented_shape() {
        for good in [
            "us-east-1",
            "ap-northeast-1",
            "us-gov-west-1",
            "cn-north-1",
            "eu-central-2",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "",
            "us",
            "us-1",
            "use-east-1",
            "us-east-12",
            "us-East-1",
            "us--1",
            "us-east-",
            "-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    /// A notification AWS published and signed (tests/fixtures/signals/sns/aws/README.md).
    const AWS_V1: &str =
        include_str!("../../../tests/fixtures/signals/sns/aws/notification-v1.json");
    const AWS_V2: &str =
        include_str!("../../../tests/fixtures/signals/sns/aws/notification-v2.json");
    const AWS_CERT: &[u8] = include_bytes!(
        "../../../tests/fixtures/signals/sns/aws/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
    );

    fn aws_instant() -> Timestamp {
        "2022-07-28T21:30:00Z".parse().unwrap()
    }

    #[test]
    fn messages_signed_by_aws_verify_with_their_certificate() {
        for body in [AWS_V1, AWS_V2] {
            let envelope = Envelope::parse(body).unwrap();
            envelope.verify_signature(AWS_CERT, aws_instant()).unwrap();
        }
    }

    #[test]
    fn one_changed_byte_breaks_an_aws_signature() {
        for (body, version) in [(AWS_V1, "1"), (AWS_V2, "2")] {
            for (from, to) in [
                ("\"Hello world\"", "\"Hello worle\""),
                (".317Z\"", ".318Z\""),
                (".324Z\"", ".325Z\""),
                ("\"Notification\"", "\"Notificatioo\""),
            ] {
                if !body.contains(from) {
                    continue;
                }
                let changed = body.replacen(from, to, 1);
                let outcome = Envelope::parse(&changed)
                    .and_then(|e| e.verify_signature(AWS_CERT, aws_instant()));
                assert!(
                    outcome.is_err(),
                    "v{version}: {from} -> {to} still verified"
                );
            }
        }
    }

    #[test]
    fn an_aws_certificate_is_refused_outside_its_validity_period_with_the_period() {
        let envelope = Envelope::parse(AWS_V2).unwrap();
        for instant in [
            "2021-09-06T23:59:59Z",
            "2022-08-18T00:00:00Z",
            "2026-12-06T00:00:00Z",
        ] {
            let error = envelope
                .verify_signature(AWS_CERT, instant.parse().unwrap())
                .unwrap_err();
            let SnsError::BadCertificate(text) = error else {
                panic!("{instant}: {error:?}");
            };
            assert!(
                text.contains("2021-09-07T00:00:00Z to 2022-08-17T23:59:59Z"),
                "{text}"
            );
        }
    }

    #[test]
    fn error_categories_are_pascal_case() {
        let errors = [
            SnsError::TooLarge(1),
            SnsError::BadSignature,
            SnsError::Replayed("m".into()),
            SnsError::FutureTimestamp("t".into()),
        ];
        for error in errors {
            let category = error.category();
            assert!(category.starts_with(|c: char| c.is_ascii_uppercase()));
            assert!(category.chars().all(|c| c.is_ascii_alphanumeric()));
        }
    }
}
