//! Where SNS signing certificates come from: an HTTPS fetcher for production (only ever given a
//! `ValidatedCertUrl`, no redirects, timeouts, a size bound, a bounded TTL cache) and a static
//! source keyed by such URLs for tests and the offline CLI. It must not relax any URL rule: the
//! URL type can only be built by `signal::sns`, which validated it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::controller::signal::sns::{CertificateSource, MAX_CERTIFICATE_BYTES, ValidatedCertUrl};
use crate::metrics::Metrics;

/// Outcome label: certificate served from the cache.
pub const FETCH_CACHED: &str = "cached";
/// Outcome label: certificate fetched over HTTPS.
pub const FETCH_FETCHED: &str = "fetched";
/// Outcome label: fetching failed.
pub const FETCH_FAILED: &str = "failed";

/// Why a certificate could not be obtained.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    /// The HTTPS client could not be built (TLS set-up).
    #[error("failed to build the HTTPS client: {0}")]
    Client(String),
    /// The request failed (DNS, connect, TLS, timeout).
    #[error("failed to fetch certificate {url}: {message}")]
    Transport {
        /// The certificate URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with a status other than 200.
    #[error("certificate {url} answered HTTP {status}")]
    Status {
        /// The certificate URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The body is larger than `MAX_CERTIFICATE_BYTES`.
    #[error("certificate {0} is larger than {MAX_CERTIFICATE_BYTES} bytes")]
    TooLarge(String),
    /// No certificate is known for the URL (static source).
    #[error("no certificate configured for {0}")]
    Unknown(String),
    /// Certificates are pinned and this URL's certificate is not among them (decision 204).
    #[error(
        "SigningCertURL {0} is not pinned: this controller verifies SNS messages only with its pinned certificates (signals.sns.pinnedCertificatesDir) and never fetches one"
    )]
    NotPinned(String),
    /// The certificate's SHA-256 fingerprint is not one of `signals.sns.pinnedFingerprints`.
    #[error(
        "certificate {url} has SHA-256 fingerprint {fingerprint}, which is not in signals.sns.pinnedFingerprints"
    )]
    FingerprintNotPinned {
        /// The certificate URL.
        url: String,
        /// Its fingerprint, lower-case hex.
        fingerprint: String,
    },
    /// A pinned certificate file or fingerprint is unusable (at start-up).
    #[error("pinned SNS certificates: {0}")]
    Pinning(String),
}

impl CertificateError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            CertificateError::Client(_) => "Client",
            CertificateError::Transport { .. } => "Transport",
            CertificateError::Status { .. } => "Status",
            CertificateError::TooLarge(_) => "TooLarge",
            CertificateError::Unknown(_) => "Unknown",
            CertificateError::NotPinned(_) => "NotPinned",
            CertificateError::FingerprintNotPinned { .. } => "FingerprintNotPinned",
            CertificateError::Pinning(_) => "Pinning",
        }
    }

    /// True when retrying cannot help (a redirect, which is never followed; no such certificate;
    /// not a certificate-sized answer):
    /// the message is then refused like a bad signature instead of asking the sender to retry.
    pub fn is_permanent(&self) -> bool {
        match self {
            CertificateError::Status { status, .. } => {
                (300..500).contains(status) && !matches!(*status, 408 | 429)
            }
            CertificateError::TooLarge(_)
            | CertificateError::Unknown(_)
            | CertificateError::NotPinned(_)
            | CertificateError::FingerprintNotPinned { .. }
            | CertificateError::Pinning(_) => true,
            CertificateError::Client(_) | CertificateError::Transport { .. } => false,
        }
    }
}

/// Supplies the PEM behind a validated `SigningCertURL`, asynchronously (the verifier then gets
/// it through [`FetchedCertificate`], an implementation of the pure `CertificateSource`).
#[async_trait]
pub trait CertificateFetcher: Send + Sync {
    /// Returns the PEM bytes for `url`.
    async fn fetch(&self, url: &ValidatedCertUrl) -> Result<Arc<Vec<u8>>, CertificateError>;
}

/// A `CertificateSource` that answers exactly one URL with an already fetched PEM.
pub struct FetchedCertificate {
    url: ValidatedCertUrl,
    pem: Arc<Vec<u8>>,
}

impl FetchedCertificate {
    /// The PEM fetched for `url`.
    pub fn new(url: ValidatedCertUrl, pem: Arc<Vec<u8>>) -> Self {
        FetchedCertificate { url, pem }
    }
}

impl CertificateSource for FetchedCertificate {
    fn certificate(&self, url: &ValidatedCertUrl) -> Result<Vec<u8>, String> {
        if url == &self.url {
            Ok(self.pem.as_ref().clone())
        } else {
            Err(format!(
                "certificate for {} was not fetched for this message",
                url.as_str()
            ))
        }
    }
}

/// Fixed PEMs keyed by validated certificate URLs (tests, `signal verify --certificate`).
#[derive(Clone, Default)]
pub struct StaticCertificates {
    certificates: BTreeMap<String, Arc<Vec<u8>>>,
}

impl StaticCertificates {
    /// An empty source (every URL is unknown).
    pub fn new() -> Self {
        StaticCertificates::default()
    }

    /// Adds the PEM to serve for `url` (a URL that passed `ValidatedCertUrl::parse`).
    pub fn with(mut self, url: &ValidatedCertUrl, pem: impl Into<Vec<u8>>) -> Self {
        self.certificates
            .insert(url.as_str().to_string(), Arc::new(pem.into()));
        self
    }
}

#[async_trait]
impl CertificateFetcher for StaticCertificates {
    async fn fetch(&self, url: &ValidatedCertUrl) -> Result<Arc<Vec<u8>>, CertificateError> {
        self.certificates
            .get(url.as_str())
            .cloned()
            .ok_or_else(|| CertificateError::Unknown(url.as_str().to_string()))
    }
}

impl CertificateSource for StaticCertificates {
    fn certificate(&self, url: &ValidatedCertUrl) -> Result<Vec<u8>, String> {
        self.certificates
            .get(url.as_str())
            .map(|pem| pem.as_ref().clone())
            .ok_or_else(|| CertificateError::Unknown(url.as_str().to_string()).to_string())
    }
}

/// Limits of the HTTPS certificate fetcher.
#[derive(Clone, Debug)]
pub struct HttpsSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// How long a fetched certificate is reused.
    pub cache_ttl: Duration,
    /// Most certificates kept (the oldest is dropped first).
    pub cache_capacity: usize,
}

impl Default for HttpsSettings {
    fn default() -> Self {
        HttpsSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(24 * 3600),
            cache_capacity: 32,
        }
    }
}

/// Builds the HTTPS-only client used for SNS (certificates, subscription confirmation): no
/// redirects (a redirect could leave the validated host), no proxies from the environment
/// beyond reqwest's defaults, bounded timeouts.
pub fn https_client(settings: &HttpsSettings) -> Result<reqwest::Client, CertificateError> {
    https_client_builder(settings)
        .build()
        .map_err(|e| CertificateError::Client(e.to_string()))
}

/// The builder behind [`https_client`] (https only, no redirects, timeouts, user agent); tests
/// add a root certificate and a loopback address for an SNS host name to it.
pub fn https_client_builder(settings: &HttpsSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .user_agent(concat!("autoguardrails/", env!("CARGO_PKG_VERSION")))
}

/// An error with its sources, `outer: inner: innermost` (reqwest hides the cause otherwise).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads at most `limit` bytes of a response body; `None` when it is longer.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

struct CacheEntry {
    fetched_at: Instant,
    pem: Arc<Vec<u8>>,
}

/// Fetches certificates over HTTPS and caches them by URL (bounded, with a TTL).
pub struct HttpsCertificates {
    client: reqwest::Client,
    settings: HttpsSettings,
    cache: Mutex<HashMap<ValidatedCertUrl, CacheEntry>>,
    metrics: Option<Arc<Metrics>>,
}

impl HttpsCertificates {
    /// A fetcher with its own HTTPS client.
    pub fn new(
        settings: HttpsSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, CertificateError> {
        Ok(HttpsCertificates::with_client(
            https_client(&settings)?,
            settings,
            metrics,
        ))
    }

    /// A fetcher over a given client (build it with [`https_client_builder`]).
    pub fn with_client(
        client: reqwest::Client,
        settings: HttpsSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        HttpsCertificates {
            client,
            settings,
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn count(&self, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .sns_certificate_fetches
                .with_label_values(&[outcome])
                .inc();
        }
    }

    fn cached(&self, url: &ValidatedCertUrl) -> Option<Arc<Vec<u8>>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(url)
            .filter(|entry| entry.fetched_at.elapsed() < self.settings.cache_ttl)
            .map(|entry| entry.pem.clone())
    }

    fn store(&self, url: &ValidatedCertUrl, pem: Arc<Vec<u8>>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = self.settings.cache_ttl;
        cache.retain(|_, entry| entry.fetched_at.elapsed() < ttl);
        while cache.len() >= self.settings.cache_capacity.max(1) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, entry)| entry.fetched_at)
                .map(|(key, _)| key.clone());
            match oldest {
                Some(key) => {
                    cache.remove(&key);
                }
                None => break,
            }
        }
        cache.insert(
            url.clone(),
            CacheEntry {
                fetched_at: Instant::now(),
                pem,
            },
        );
    }

    async fn download(&self, url: &ValidatedCertUrl) -> Result<Vec<u8>, CertificateError> {
        let transport = |e: reqwest::Error| CertificateError::Transport {
            url: url.as_str().to_string(),
            message: error_chain(&e),
        };
        let response = self
            .client
            .get(url.as_str())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(CertificateError::Status {
                url: url.as_str().to_string(),
                status,
            });
        }
        read_bounded(response, MAX_CERTIFICATE_BYTES)
            .await
            .map_err(transport)?
            .ok_or_else(|| CertificateError::TooLarge(url.as_str().to_string()))
    }
}

#[async_trait]
impl CertificateFetcher for HttpsCertificates {
    async fn fetch(&self, url: &ValidatedCertUrl) -> Result<Arc<Vec<u8>>, CertificateError> {
        if let Some(pem) = self.cached(url) {
            self.count(FETCH_CACHED);
            return Ok(pem);
        }
        match self.download(url).await {
            Ok(pem) => {
                let pem = Arc::new(pem);
                self.store(url, pem.clone());
                self.count(FETCH_FETCHED);
                tracing::info!(url = url.as_str(), "fetched SNS signing certificate");
                Ok(pem)
            }
            Err(error) => {
                self.count(FETCH_FAILED);
                tracing::warn!(url = url.as_str(), %error, "failed to fetch SNS signing certificate");
                Err(error)
            }
        }
    }
}

/// The file name a `SigningCertURL` ends in (`SimpleNotificationService-<id>.pem`): the key of a
/// pinned certificate (each signing certificate has its own file name).
pub fn certificate_file_name(url: &ValidatedCertUrl) -> &str {
    url.as_str().rsplit('/').next().unwrap_or_default()
}

/// SHA-256 of a PEM certificate's DER encoding, lower-case hex (what `openssl x509 -fingerprint
/// -sha256` shows, without colons).
pub fn certificate_fingerprint(pem: &[u8]) -> Result<String, String> {
    use sha2::Digest as _;
    use x509_cert::der::{DecodePem as _, Encode as _};
    let certificate = x509_cert::Certificate::from_pem(pem)
        .map_err(|e| format!("not a PEM X.509 certificate: {e}"))?;
    let der = certificate
        .to_der()
        .map_err(|e| format!("cannot encode the certificate: {e}"))?;
    Ok(sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Parses a SHA-256 fingerprint as written by people and tools: 64 hex digits, optionally in
/// colon-separated pairs, any case. Returns lower-case hex without colons.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Pinned SNS signing certificates (decision 204): the PEM files of a directory (a mounted Secret
/// or ConfigMap), each named as the `SigningCertURL` it stands for ends. Never fetches: a URL
/// whose file name is not pinned is refused ([`CertificateError::NotPinned`]).
#[derive(Clone, Debug, Default)]
pub struct PinnedCertificates {
    by_file_name: BTreeMap<String, Arc<Vec<u8>>>,
}

impl PinnedCertificates {
    /// Reads every `*.pem` file of `dir` (names starting with `.` are skipped: the bookkeeping
    /// entries of a mounted Secret). Each must hold an X.509 certificate; at least one must exist.
    pub fn load_dir(dir: &std::path::Path) -> Result<PinnedCertificates, CertificateError> {
        let pinning = |message: String| CertificateError::Pinning(message);
        let entries = std::fs::read_dir(dir)
            .map_err(|e| pinning(format!("cannot read directory {}: {e}", dir.display())))?;
        let mut pinned = PinnedCertificates::default();
        for entry in entries {
            let entry = entry
                .map_err(|e| pinning(format!("cannot read directory {}: {e}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !name.ends_with(".pem") {
                continue;
            }
            let path = entry.path();
            let pem = std::fs::read(&path)
                .map_err(|e| pinning(format!("cannot read {}: {e}", path.display())))?;
            if pem.len() > MAX_CERTIFICATE_BYTES {
                return Err(pinning(format!(
                    "{} is larger than {MAX_CERTIFICATE_BYTES} bytes",
                    path.display()
                )));
            }
            certificate_fingerprint(&pem)
                .map_err(|e| pinning(format!("{}: {e}", path.display())))?;
            pinned.by_file_name.insert(name, Arc::new(pem));
        }
        if pinned.by_file_name.is_empty() {
            return Err(pinning(format!(
                "directory {} holds no *.pem certificate: every SNS message would be refused",
                dir.display()
            )));
        }
        Ok(pinned)
    }

    /// The pinned file names, for the start-up log.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.by_file_name.keys().map(String::as_str)
    }

    /// Each pinned file with its certificate's validity period (decision 250: a pinned
    /// certificate is used only within it, like a fetched one).
    pub fn validity(&self) -> Vec<(&str, jiff::Timestamp, jiff::Timestamp)> {
        self.by_file_name
            .iter()
            .filter_map(|(name, pem)| {
                crate::controller::signal::sns::certificate_validity(pem)
                    .ok()
                    .map(|(from, until)| (name.as_str(), from, until))
            })
            .collect()
    }
}

#[async_trait]
impl CertificateFetcher for PinnedCertificates {
    async fn fetch(&self, url: &ValidatedCertUrl) -> Result<Arc<Vec<u8>>, CertificateError> {
        self.by_file_name
            .get(certificate_file_name(url))
            .cloned()
            .ok_or_else(|| CertificateError::NotPinned(url.as_str().to_string()))
    }
}

/// Accepts only certificates whose SHA-256 fingerprint is listed, whatever source supplied them
/// (the pinned directory or the HTTPS fetcher).
pub struct FingerprintPinned {
    inner: Arc<dyn CertificateFetcher>,
    fingerprints: std::collections::BTreeSet<String>,
}

impl FingerprintPinned {
    /// Wraps `inner`; `fingerprints` as written in the configuration (see [`parse_fingerprint`]).
    pub fn new<S: AsRef<str>>(
        inner: Arc<dyn CertificateFetcher>,
        fingerprints: impl IntoIterator<Item = S>,
    ) -> Result<FingerprintPinned, CertificateError> {
        let fingerprints = fingerprints
            .into_iter()
            .map(|f| parse_fingerprint(f.as_ref()).map_err(CertificateError::Pinning))
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        if fingerprints.is_empty() {
            return Err(CertificateError::Pinning(
                "no fingerprint given: every SNS message would be refused".into(),
            ));
        }
        Ok(FingerprintPinned {
            inner,
            fingerprints,
        })
    }
}

#[async_trait]
impl CertificateFetcher for FingerprintPinned {
    async fn fetch(&self, url: &ValidatedCertUrl) -> Result<Arc<Vec<u8>>, CertificateError> {
        let pem = self.inner.fetch(url).await?;
        let fingerprint = certificate_fingerprint(&pem).map_err(|message| {
            CertificateError::FingerprintNotPinned {
                url: url.as_str().to_string(),
                fingerprint: message,
            }
        })?;
        if self.fingerprints.contains(&fingerprint) {
            Ok(pem)
        } else {
            Err(CertificateError::FingerprintNotPinned {
                url: url.as_str().to_string(),
                fingerprint,
            })
        }
    }
}
