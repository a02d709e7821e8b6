//! Slack's request signature (`v0=` HMAC-SHA256 over `v0:{timestamp}:{body}` with the app's
//! signing secret), the five-minute timestamp window and a bounded cache of signatures already
//! seen. Pure; it must not read the secret from anywhere nor parse the payload.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the request timestamp (seconds since the epoch).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Header carrying the signature (`v0=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Requests older (or further in the future) than this many seconds are refused.
pub const MAX_AGE_SECONDS: i64 = 5 * 60;

/// Why a request was not accepted as coming from Slack.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A header is missing or unreadable.
    #[error("missing or unreadable {0} header")]
    MissingHeader(&'static str),
    /// The timestamp is outside the window.
    #[error("request timestamp {timestamp} is more than {MAX_AGE_SECONDS} s from now ({now})")]
    Stale {
        /// The request's timestamp.
        timestamp: i64,
        /// Now.
        now: i64,
    },
    /// The signature does not match.
    #[error("the request signature does not match the signing secret")]
    BadSignature,
    /// The same signed request was already received.
    #[error("this signed request was already received (replay)")]
    Replayed,
    /// The replay cache is full of requests still inside the window.
    #[error("too many interactions in the last {MAX_AGE_SECONDS} s; try again")]
    Busy,
}

impl RequestError {
    /// The metric label / Event reason of this error.
    pub fn category(&self) -> &'static str {
        match self {
            RequestError::MissingHeader(_) | RequestError::BadSignature => "bad_signature",
            RequestError::Stale { .. } => "stale_timestamp",
            RequestError::Replayed => "replayed",
            RequestError::Busy => "busy",
        }
    }
}

/// The signing secret (redacted in Debug).
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SigningSecret(redacted)")
    }
}

impl SigningSecret {
    /// A secret from its text (surrounding whitespace, e.g. a file's final newline, removed);
    /// None when empty.
    pub fn new(text: &str) -> Option<SigningSecret> {
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| SigningSecret(trimmed.as_bytes().to_vec()))
    }

    /// The `v0=<hex>` signature of `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        // HMAC accepts keys of any length; the fallback is never taken.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("v0={hex}")
    }
}

/// Constant-time equality of two strings of the same length.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |difference, (x, y)| difference | (x ^ y))
            == 0
}

/// Checks a request's timestamp and signature (not replay: see [`ReplayCache`]). Returns the
/// timestamp.
pub fn verify(
    secret: &SigningSecret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<i64, RequestError> {
    let timestamp_text = timestamp.ok_or(RequestError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(RequestError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp: i64 = timestamp_text
        .trim()
        .parse()
        .map_err(|_| RequestError::MissingHeader(TIMESTAMP_HEADER))?;
    if (now - timestamp).abs() > MAX_AGE_SECONDS {
        return Err(RequestError::Stale { timestamp, now });
    }
    let expected = secret.sign(timestamp_text, body);
    if expected.is_empty() || !same(&expected, signature.trim()) {
        return Err(RequestError::BadSignature);
    }
    Ok(timestamp)
}

/// The secrets a request may be signed with (decision 227): the current one, and the one it
/// replaced until `grace` seconds after the rotation.
#[derive(Clone, Debug)]
pub struct SecretRing {
    /// The secret read last.
    current: SigningSecret,
    /// The secret it replaced, and until when (seconds since the epoch) it is still accepted.
    previous: Option<(SigningSecret, i64)>,
    /// Seconds a replaced secret stays accepted.
    grace: i64,
}

impl SecretRing {
    /// A ring holding `current` only.
    pub fn new(current: SigningSecret, grace_seconds: i64) -> SecretRing {
        SecretRing {
            current,
            previous: None,
            grace: grace_seconds.max(0),
        }
    }

    /// Makes `new` the current secret at `now`; the old one stays accepted for the grace period.
    /// False (nothing changes) when `new` is the current secret.
    pub fn rotate(&mut self, new: SigningSecret, now: i64) -> bool {
        if same_bytes(&new.0, &self.current.0) {
            return false;
        }
        let old = std::mem::replace(&mut self.current, new);
        self.previous = Some((old, now + self.grace));
        true
    }

    /// The secrets accepted at `now`, current first.
    pub fn accepted(&self, now: i64) -> Vec<&SigningSecret> {
        let mut secrets = vec![&self.current];
        if let Some((previous, until)) = &self.previous
            && now <= *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// Constant-time equality of two byte strings of the same length.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// [`verify`] against every secret `ring` accepts at `now`.
pub fn verify_ring(
    ring: &SecretRing,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<i64, RequestError> {
    let mut last = Err(RequestError::BadSignature);
    for secret in ring.accepted(now) {
        last = verify(secret, timestamp, signature, body, now);
        if !matches!(last, Err(RequestError::BadSignature)) {
            return last;
        }
    }
    last
}

/// (timestamp, signature) oldest first, and the signatures as a set.
type Seen = (VecDeque<(i64, String)>, BTreeSet<String>);

/// The signatures of accepted requests still inside the window, at most `capacity`.
pub struct ReplayCache {
    /// Capacity.
    capacity: usize,
    /// (timestamp, signature), oldest first, and the same as a set.
    seen: Mutex<Seen>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` signatures.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            seen: Mutex::new((VecDeque::new(), BTreeSet::new())),
        }
    }

    /// Records a verified request; `Replayed` if its signature was seen, `Busy` when the cache is
    /// full of signatures still inside the window (refusing is safer than forgetting one).
    pub fn record(&self, timestamp: i64, signature: &str, now: i64) -> Result<(), RequestError> {
        let mut guard = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (order, set) = &mut *guard;
        while let Some((at, _)) = order.front() {
            if now - *at <= MAX_AGE_SECONDS {
                break;
            }
            if let Some((_, old)) = order.pop_front() {
                set.remove(&old);
            }
        }
        let signature = signature.trim().to_string();
        if set.contains(&signature) {
            return Err(RequestError::Replayed);
        }
        if order.len() >= self.capacity {
            return Err(RequestError::Busy);
        }
        set.insert(signature.clone());
        order.push_back((timestamp, signature));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_secret_is_accepted_with_the_previous_one_for_the_grace_period() {
        let old = SigningSecret::new("old-secret").unwrap();
        let new = SigningSecret::new("new-secret").unwrap();
        let mut ring = SecretRing::new(old.clone(), 60);
        let body = b"payload=x";
        let signed = |secret: &SigningSecret| secret.sign("1000", body);
        assert_eq!(
            verify_ring(&ring, Some("1000"), Some(&signed(&new)), body, 1000),
            Err(RequestError::BadSignature)
        );
        assert!(
            !ring.rotate(old.clone(), 1000),
            "the same secret is no rotation"
        );
        assert!(ring.rotate(new.clone(), 1000));
        for secret in [&new, &old] {
            assert_eq!(
                verify_ring(&ring, Some("1000"), Some(&signed(secret)), body, 1010),
                Ok(1000)
            );
        }
        // After the grace period only the new one.
        let late = old.sign("1100", body);
        assert_eq!(
            verify_ring(&ring, Some("1100"), Some(&late), body, 1100),
            Err(RequestError::BadSignature)
        );
        assert_eq!(
            verify_ring(
                &ring,
                Some("1100"),
                Some(&new.sign("1100", body)),
                body,
                1100
            ),
            Ok(1100)
        );
        // A stale timestamp is reported as such, whichever secret.
        assert!(matches!(
            verify_ring(&ring, Some("1"), Some(&new.sign("1", body)), body, 1100),
            Err(RequestError::Stale { .. })
        ));
    }

    /// Slack's documented example (api.slack.com "Verifying requests from Slack").
    #[test]
    fn slacks_documented_example_verifies() {
        let secret = SigningSecret::new("8f742231b10e8888abcd99yyyzzz85a5").unwrap();
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(secret.sign("1531420618", body), signature);
        assert_eq!(
            verify(
                &secret,
                Some("1531420618"),
                Some(signature),
                body,
                1531420618 + 10
            ),
            Ok(1531420618)
        );
    }

    #[test]
    fn wrong_secret_body_or_time_is_refused() {
        let secret = SigningSecret::new("s3cret\n").unwrap();
        let signature = secret.sign("1000", b"payload=x");
        assert_eq!(
            verify(&secret, Some("1000"), Some(&signature), b"payload=y", 1000),
            Err(RequestError::BadSignature)
        );
        let other = SigningSecret::new("other").unwrap();
        assert_eq!(
            verify(&other, Some("1000"), Some(&signature), b"payload=x", 1000),
            Err(RequestError::BadSignature)
        );
        assert!(matches!(
            verify(&secret, Some("1000"), Some(&signature), b"payload=x", 1301),
            Err(RequestError::Stale { .. })
        ));
        assert!(matches!(
            verify(&secret, Some("1000"), Some(&signature), b"payload=x", 699),
            Err(RequestError::Stale { .. })
        ));
        assert_eq!(
            verify(&secret, None, Some(&signature), b"payload=x", 1000),
            Err(RequestError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify(&secret, Some("1000"), None, b"payload=x", 1000),
            Err(RequestError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            verify(&secret, Some("1000"), Some("v0=00"), b"payload=x", 1000),
            Err(RequestError::BadSignature)
        );
        assert!(SigningSecret::new("  \n").is_none());
    }

    #[test]
    fn replays_are_refused_and_the_cache_stays_bounded() {
        let cache = ReplayCache::new(2);
        assert_eq!(cache.record(1000, "v0=a", 1000), Ok(()));
        assert_eq!(
            cache.record(1000, "v0=a", 1001),
            Err(RequestError::Replayed)
        );
        assert_eq!(cache.record(1001, "v0=b", 1001), Ok(()));
        assert_eq!(cache.record(1002, "v0=c", 1002), Err(RequestError::Busy));
        // Once the first ones leave the window (where `verify` refuses them anyway) room returns.
        assert_eq!(cache.record(1400, "v0=c", 1400), Ok(()));
    }
}
