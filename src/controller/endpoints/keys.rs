//! The `/events` API key: where it comes from (a Kubernetes Secret, re-read after a short TTL so
//! rotation needs no restart, with the previous key accepted for a grace period) and the
//! constant-time comparison. It must never accept an empty key and never log a key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;

/// Why the API key is not available.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The Secret or its key does not exist.
    #[error("API key Secret {0} not found or has no such key")]
    Missing(String),
    /// The Secret's value is empty (after trimming whitespace).
    #[error("API key in Secret {0} is empty")]
    Empty(String),
    /// The Kubernetes API failed.
    #[error("failed to read API key Secret {secret}: {message}")]
    Api {
        /// namespace/name.
        secret: String,
        /// What went wrong.
        message: String,
    },
}

impl KeyError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            KeyError::Missing(_) => "Missing",
            KeyError::Empty(_) => "Empty",
            KeyError::Api { .. } => "Api",
        }
    }
}

/// The keys accepted right now: the current one and, during a rotation grace period, the one
/// before it.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    /// The current key.
    pub current: Vec<u8>,
    /// The previous key, while its grace period lasts.
    pub previous: Option<Vec<u8>>,
}

impl ApiKeys {
    /// Whether `presented` equals an accepted key (constant time in the key contents).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let current = !self.current.is_empty() && constant_time_eq(&self.current, presented);
        let previous = self
            .previous
            .as_deref()
            .is_some_and(|previous| !previous.is_empty() && constant_time_eq(previous, presented));
        current | previous
    }
}

/// Compares two byte strings in time independent of where they differ: both are hashed with
/// SHA-256 (hiding the lengths) and the digests are compared with an XOR fold, no early exit.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    let left = Sha256::digest(left);
    let right = Sha256::digest(right);
    let difference = left
        .iter()
        .zip(right.iter())
        .fold(0u8, |accumulator, (a, b)| accumulator | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// Supplies the accepted API keys.
#[async_trait]
pub trait ApiKeySource: Send + Sync {
    /// The keys accepted now.
    async fn keys(&self) -> Result<ApiKeys, KeyError>;
}

/// A fixed key (tests, or a key from a file/env the caller already read).
pub struct StaticKey(pub Vec<u8>);

#[async_trait]
impl ApiKeySource for StaticKey {
    async fn keys(&self) -> Result<ApiKeys, KeyError> {
        if self.0.is_empty() {
            return Err(KeyError::Empty("static key".into()));
        }
        Ok(ApiKeys {
            current: self.0.clone(),
            previous: None,
        })
    }
}

/// Which Secret holds the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's namespace (default: the controller's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Secret's name.
    pub name: String,
    /// The key inside the Secret's `data`.
    pub key: String,
}

/// How the Secret-backed source caches.
#[derive(Clone, Debug)]
pub struct SecretKeySettings {
    /// Re-read the Secret after this long.
    pub refresh: Duration,
    /// Keep accepting the previous key this long after a rotation was seen.
    pub previous_key_grace: Duration,
    /// When the API fails, keep using the last key read at most this long.
    pub max_stale: Duration,
}

impl Default for SecretKeySettings {
    fn default() -> Self {
        SecretKeySettings {
            refresh: Duration::from_secs(30),
            previous_key_grace: Duration::from_secs(300),
            max_stale: Duration::from_secs(300),
        }
    }
}

struct Cached {
    read_at: Instant,
    current: Vec<u8>,
    previous: Option<(Vec<u8>, Instant)>,
}

/// Reads the key from a Kubernetes Secret (`data[key]`, surrounding whitespace trimmed).
pub struct SecretApiKey {
    api: Api<Secret>,
    label: String,
    name: String,
    key: String,
    settings: SecretKeySettings,
    cached: Mutex<Option<Cached>>,
}

impl SecretApiKey {
    /// A source reading `reference` (namespace defaulting to `default_namespace`).
    pub fn new(
        client: kube::Client,
        reference: &SecretKeyRef,
        default_namespace: &str,
        settings: SecretKeySettings,
    ) -> Arc<Self> {
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string());
        Arc::new(SecretApiKey {
            api: Api::namespaced(client, &namespace),
            label: format!("{namespace}/{}", reference.name),
            name: reference.name.clone(),
            key: reference.key.clone(),
            settings,
            cached: Mutex::new(None),
        })
    }

    async fn read(&self) -> Result<Vec<u8>, KeyError> {
        let secret = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| KeyError::Api {
                secret: self.label.clone(),
                message: e.to_string(),
            })?
            .ok_or_else(|| KeyError::Missing(self.label.clone()))?;
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&self.key))
            .map(|bytes| bytes.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|data| data.get(&self.key))
                    .map(|text| text.as_bytes().to_vec())
            })
            .ok_or_else(|| KeyError::Missing(self.label.clone()))?;
        let trimmed = value.trim_ascii().to_vec();
        if trimmed.is_empty() {
            return Err(KeyError::Empty(self.label.clone()));
        }
        Ok(trimmed)
    }
}

fn keys_of(cached: &Cached, grace: Duration) -> ApiKeys {
    ApiKeys {
        current: cached.current.clone(),
        previous: cached
            .previous
            .as_ref()
            .filter(|(_, since)| since.elapsed() < grace)
            .map(|(key, _)| key.clone()),
    }
}

#[async_trait]
impl ApiKeySource for SecretApiKey {
    async fn keys(&self) -> Result<ApiKeys, KeyError> {
        let mut cached = self.cached.lock().await;
        if let Some(entry) = cached.as_ref()
            && entry.read_at.elapsed() < self.settings.refresh
        {
            return Ok(keys_of(entry, self.settings.previous_key_grace));
        }
        match self.read().await {
            Ok(current) => {
                let previous = match cached.take() {
                    Some(old) if !constant_time_eq(&old.current, &current) => {
                        tracing::info!(secret = %self.label, "events API key rotated");
                        Some((old.current, Instant::now()))
                    }
                    Some(old) => old.previous,
                    None => None,
                };
                let entry = Cached {
                    read_at: Instant::now(),
                    current,
                    previous,
                };
                let keys = keys_of(&entry, self.settings.previous_key_grace);
                *cached = Some(entry);
                Ok(keys)
            }
            Err(error @ (KeyError::Missing(_) | KeyError::Empty(_))) => {
                // Deleting or emptying the Secret revokes every key at once.
                *cached = None;
                Err(error)
            }
            Err(error) => match cached.as_ref() {
                Some(entry) if entry.read_at.elapsed() < self.settings.max_stale => {
                    tracing::warn!(secret = %self.label, %error, "using the last API key read");
                    Ok(keys_of(entry, self.settings.previous_key_grace))
                }
                _ => Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret "));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn empty_keys_accept_nothing() {
        let keys = ApiKeys {
            current: Vec::new(),
            previous: Some(Vec::new()),
        };
        assert!(!keys.accepts(b""));
        let keys = ApiKeys {
            current: b"new".to_vec(),
            previous: Some(b"old".to_vec()),
        };
        assert!(keys.accepts(b"new"));
        assert!(keys.accepts(b"old"));
        assert!(!keys.accepts(b"other"));
    }
}
