//! Where a webhook URL comes from: a key of a Kubernetes Secret in the Quarantine's namespace, or
//! an AWS SSM SecureString parameter (read with decryption). Values are cached for a short time so
//! a rotated URL is picked up without a restart. It must never log, display or return the URL in
//! an error; it only reads (no writes to Secrets or SSM).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::WebhookUrl;
use crate::controller::crd::SlackSpec;

/// How long a resolved URL is reused before it is read again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Where one webhook URL is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WebhookRef {
    /// `data[key]` of a Secret.
    Secret {
        /// The Secret's namespace (the Quarantine's).
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The key inside `data`.
        key: String,
    },
    /// An SSM parameter (SecureString or String), by name.
    Ssm {
        /// The parameter name, e.g. `/autoguardrails/slack-webhook`.
        parameter: String,
    },
}

impl WebhookRef {
    /// The reference a Quarantine's `spec.notify.slack` names (Secret first, as the schema allows
    /// only one); `None` when it names neither.
    pub fn from_spec(namespace: &str, slack: &SlackSpec) -> Option<WebhookRef> {
        if let Some(secret) = &slack.webhook_secret_ref {
            return Some(WebhookRef::Secret {
                namespace: namespace.to_string(),
                name: secret.name.clone(),
                key: secret.key.clone(),
            });
        }
        slack
            .webhook_ssm_parameter
            .as_ref()
            .map(|parameter| WebhookRef::Ssm {
                parameter: parameter.clone(),
            })
    }

    /// Where it is, for messages (never the value).
    pub fn describe(&self) -> String {
        match self {
            WebhookRef::Secret {
                namespace,
                name,
                key,
            } => format!("Secret {namespace}/{name} key {key:?}"),
            WebhookRef::Ssm { parameter } => format!("SSM parameter {parameter}"),
        }
    }
}

/// Why a webhook URL could not be read. Never contains the URL.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// The Secret does not exist.
    #[error("webhook Secret {namespace}/{name} not found")]
    SecretNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Secret has no such key (or it is not UTF-8).
    #[error("webhook Secret {namespace}/{name} has no usable key {key:?}")]
    SecretKeyMissing {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// Reading the Secret failed.
    #[error("reading webhook Secret {namespace}/{name} failed: {message}")]
    Kube {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The client's error.
        message: String,
    },
    /// The SSM parameter does not exist.
    #[error("webhook SSM parameter {parameter} not found")]
    ParameterNotFound {
        /// The parameter name.
        parameter: String,
    },
    /// Reading the SSM parameter failed.
    #[error("reading webhook SSM parameter {parameter} failed: {message}")]
    Ssm {
        /// The parameter name.
        parameter: String,
        /// The SDK's error (code and message, never the value).
        message: String,
    },
    /// The value found is not an acceptable webhook URL.
    #[error("the value of {origin} is not a valid webhook URL: {problem}")]
    InvalidUrl {
        /// Where it was read from.
        origin: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl SourceError {
    /// A short label for metrics, conditions and Events.
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::SecretNotFound { .. } => "secret_not_found",
            SourceError::SecretKeyMissing { .. } => "secret_key_missing",
            SourceError::Kube { .. } => "kube",
            SourceError::ParameterNotFound { .. } => "ssm_parameter_not_found",
            SourceError::Ssm { .. } => "ssm",
            SourceError::InvalidUrl { .. } => "invalid_webhook_url",
        }
    }

    /// Never permanent: a person can create the Secret or fix the parameter, and the next read
    /// picks it up. The delivery is retried until the ledger's retry window closes.
    pub fn is_permanent(&self) -> bool {
        false
    }
}

/// Reads webhook URLs from Secrets and SSM, with a short cache.
pub struct WebhookSources {
    kube: kube::Client,
    ssm: Option<aws_sdk_ssm::Client>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<WebhookRef, (Instant, WebhookUrl)>>,
}

impl WebhookSources {
    /// Sources reading Secrets with `kube`. SSM parameters are read only with a client from the
    /// one client factory ([`Self::with_ssm`]); without one they are an error, never a lookup
    /// through some other AWS configuration.
    pub fn new(kube: kube::Client, cache_ttl: Duration) -> WebhookSources {
        WebhookSources {
            kube,
            ssm: None,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Uses this SSM client (e.g. one pointed at a test endpoint).
    pub fn with_ssm(self, ssm: aws_sdk_ssm::Client) -> WebhookSources {
        WebhookSources {
            ssm: Some(ssm),
            ..self
        }
    }

    /// The URL `reference` names, from the cache when read less than the cache TTL ago.
    pub async fn resolve(&self, reference: &WebhookRef) -> Result<WebhookUrl, SourceError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((read_at, url)) = cache.get(reference)
            && read_at.elapsed() < self.cache_ttl
        {
            return Ok(url.clone());
        }
        let value = match reference {
            WebhookRef::Secret {
                namespace,
                name,
                key,
            } => self.read_secret(namespace, name, key).await?,
            WebhookRef::Ssm { parameter } => self.read_parameter(parameter).await?,
        };
        let url = WebhookUrl::new(&value).map_err(|error| SourceError::InvalidUrl {
            origin: reference.describe(),
            problem: match error {
                super::NotifyError::InvalidWebhookUrl(problem) => problem,
                _ => "unusable",
            },
        })?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(reference.clone(), (Instant::now(), url.clone()));
        }
        Ok(url)
    }

    /// Forgets a cached URL (after Slack refused it, so a rotated value is read at once).
    pub fn invalidate(&self, reference: &WebhookRef) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(reference);
        }
    }

    async fn read_secret(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<String, SourceError> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|error| SourceError::Kube {
                namespace: namespace.into(),
                name: name.into(),
                message: error.to_string(),
            })?
            .ok_or_else(|| SourceError::SecretNotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        let from_data = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok());
        let from_string_data = secret
            .string_data
            .as_ref()
            .and_then(|data| data.get(key))
            .cloned();
        from_data
            .or(from_string_data)
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| SourceError::SecretKeyMissing {
                namespace: namespace.into(),
                name: name.into(),
                key: key.into(),
            })
    }

    async fn read_parameter(&self, parameter: &str) -> Result<String, SourceError> {
        let Some(ssm) = &self.ssm else {
            return Err(SourceError::Ssm {
                parameter: parameter.into(),
                message:
                    "no SSM client: SSM parameters need the sdk AWS backend (aws.backend: sdk)"
                        .into(),
            });
        };
        let output = ssm
            .get_parameter()
            .name(parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|error| {
                let service = error.into_service_error();
                if service.is_parameter_not_found() {
                    SourceError::ParameterNotFound {
                        parameter: parameter.into(),
                    }
                } else {
                    SourceError::Ssm {
                        parameter: parameter.into(),
                        message: aws_sdk_ssm::error::DisplayErrorContext(&service).to_string(),
                    }
                }
            })?;
        output
            .parameter()
            .and_then(|found| found.value())
            .map(str::to_string)
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| SourceError::ParameterNotFound {
                parameter: parameter.into(),
            })
    }
}
