//! The one hardened HTTP listener every part serves through (the controller's signal and
//! operations listeners, `gate serve`, the approval webhook over TLS): HTTP/1.1 with a
//! header-read timeout (which also bounds the TLS handshake), a bound on open connections
//! (back-pressure at the accept, not refusal), and graceful shutdown with a drain deadline. Body size and body-read timeouts are per route (the routes know their limits). It
//! must not know any route.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// A connection whose request headers are not complete this long after it started sending
    /// them (or after the previous response, on a kept-alive connection) is closed.
    pub header_read_timeout: Duration,
    /// At most this many connections are open; further ones wait in the accept backlog.
    pub max_connections: usize,
    /// How long in-flight requests may finish after shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Accepting connections failed for good.
    #[error("failed to accept connections on {address:?}")]
    Accept {
        /// The bound address.
        address: Option<SocketAddr>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The limits are unusable.
    #[error("invalid listener limits: {0}")]
    Limits(&'static str),
    /// The TLS certificate or key is unusable.
    #[error("failed to load the TLS certificate and key: {0}")]
    Tls(String),
}

impl ListenerError {
    /// The category used for metric labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ListenerError::Accept { .. } => "Accept",
            ListenerError::Limits(_) => "Invalid",
            ListenerError::Tls(_) => "Tls",
        }
    }
}

/// The crypto provider of every TLS listener.
fn crypto_provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and its private key from PEM, checked to belong together.
fn certified_key(
    certificate_pem: &[u8],
    key_pem: &[u8],
    provider: &tokio_rustls::rustls::crypto::CryptoProvider,
) -> Result<tokio_rustls::rustls::sign::CertifiedKey, ListenerError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<_, _>>()
        .map_err(|error| ListenerError::Tls(format!("certificate: {error}")))?;
    if chain.is_empty() {
        return Err(ListenerError::Tls("no PEM certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| ListenerError::Tls(format!("private key: {error}")))?;
    tokio_rustls::rustls::sign::CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| ListenerError::Tls(error.to_string()))
}

/// An acceptor serving `resolver`'s certificate (TLS 1.2 and 1.3, HTTP/1.1).
fn acceptor_with(
    resolver: Arc<dyn tokio_rustls::rustls::server::ResolvesServerCert>,
) -> Result<tokio_rustls::TlsAcceptor, ListenerError> {
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| ListenerError::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS acceptor from a PEM certificate chain and private key (TLS 1.2 and 1.3, HTTP/1.1).
pub fn tls_acceptor(
    certificate_pem: &[u8],
    key_pem: &[u8],
) -> Result<tokio_rustls::TlsAcceptor, ListenerError> {
    let key = Arc::new(certified_key(certificate_pem, key_pem, &crypto_provider())?);
    acceptor_with(Arc::new(FixedCertificate(key)))
}

/// One certificate, always.
#[derive(Debug)]
struct FixedCertificate(Arc<tokio_rustls::rustls::sign::CertifiedKey>);

impl tokio_rustls::rustls::server::ResolvesServerCert for FixedCertificate {
    fn resolve(
        &self,
        _client_hello: tokio_rustls::rustls::server::ClientHello<'_>,
    ) -> Option<Arc<tokio_rustls::rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A TLS acceptor that serves the PEM files at `certificate_path` and `key_path` and reads them
/// again when either file changes (a renewed certificate in a mounted Secret takes effect on
/// the next handshake, without a restart). A renewal that cannot be read keeps the last good pair
/// (logged); the first read must succeed.
pub fn tls_acceptor_from_files(
    certificate_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ListenerError> {
    let resolver = ReloadingCertificate::load(certificate_path, key_path)?;
    acceptor_with(Arc::new(resolver))
}

/// The modification times of the certificate and key files.
type FileTimes = (Option<std::time::SystemTime>, Option<std::time::SystemTime>);

/// The certificate of [`tls_acceptor_from_files`], re-read when its files change.
#[derive(Debug)]
struct ReloadingCertificate {
    /// The PEM certificate chain.
    certificate_path: std::path::PathBuf,
    /// The PEM private key.
    key_path: std::path::PathBuf,
    /// The file times the current pair was read at, and the pair.
    current: std::sync::RwLock<(FileTimes, Arc<tokio_rustls::rustls::sign::CertifiedKey>)>,
}

impl ReloadingCertificate {
    /// Reads the pair for the first time.
    fn load(
        certificate_path: &std::path::Path,
        key_path: &std::path::Path,
    ) -> Result<ReloadingCertificate, ListenerError> {
        let times = Self::times(certificate_path, key_path);
        let key = Self::read(certificate_path, key_path)?;
        Ok(ReloadingCertificate {
            certificate_path: certificate_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: std::sync::RwLock::new((times, Arc::new(key))),
        })
    }

    /// The files' modification times (following symlinks, as Secret volumes swap them).
    fn times(certificate_path: &std::path::Path, key_path: &std::path::Path) -> FileTimes {
        let modified = |path: &std::path::Path| {
            std::fs::metadata(path)
                .and_then(|metadata| metadata.modified())
                .ok()
        };
        (modified(certificate_path), modified(key_path))
    }

    /// Reads and checks the pair.
    fn read(
        certificate_path: &std::path::Path,
        key_path: &std::path::Path,
    ) -> Result<tokio_rustls::rustls::sign::CertifiedKey, ListenerError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|error| ListenerError::Tls(format!("{}: {error}", path.display())))
        };
        certified_key(
            &read(certificate_path)?,
            &read(key_path)?,
            &crypto_provider(),
        )
    }
}

impl tokio_rustls::rustls::server::ResolvesServerCert for ReloadingCertificate {
    fn resolve(
        &self,
        _client_hello: tokio_rustls::rustls::server::ClientHello<'_>,
    ) -> Option<Arc<tokio_rustls::rustls::sign::CertifiedKey>> {
        let times = Self::times(&self.certificate_path, &self.key_path);
        {
            let current = self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if current.0 == times {
                return Some(current.1.clone());
            }
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match Self::read(&self.certificate_path, &self.key_path) {
            Ok(key) => {
                tracing::info!(certificate = %self.certificate_path.display(), "TLS certificate reloaded");
                *current = (times, Arc::new(key));
            }
            Err(error) => {
                tracing::warn!(%error, "the changed TLS certificate cannot be used; serving the previous one");
                // Do not retry on every handshake until the files change again.
                current.0 = times;
            }
        }
        Some(current.1.clone())
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// within `limits.drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenerError> {
    serve_with(listener, None, router, limits, shutdown).await
}

/// [`serve`] over TLS: each connection's handshake must finish within the header-read timeout.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenerError> {
    serve_with(listener, Some(acceptor), router, limits, shutdown).await
}

/// The accept loop of [`serve`] and [`serve_tls`].
async fn serve_with(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenerError> {
    if limits.max_connections == 0 {
        return Err(ListenerError::Limits("maxConnections must be at least 1"));
    }
    if limits.header_read_timeout.is_zero() {
        return Err(ListenerError::Limits("headerReadTimeout must be positive"));
    }
    let address = listener.local_addr().ok();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    let mut accept_errors: u32 = 0;
    loop {
        // Back-pressure: take a connection slot before accepting, so a flood of idle
        // connections waits in the kernel's backlog instead of exhausting descriptors.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors = 0;
                    accepted
                }
                Err(source) => {
                    // Per-connection errors (reset before accept, descriptor pressure) are
                    // transient; a listener that fails continuously is not.
                    accept_errors += 1;
                    tracing::warn!(?address, error = %source, "accept failed");
                    if accept_errors > 100 {
                        return Err(ListenerError::Accept { address, source });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Answers go out as soon as they are written, not held for the peer's delayed ACK
        // (Nagle's algorithm; Go servers, the Kubernetes API server among them, turn it off the
        // same way; decision 253).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY not set");
        }
        match &tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(%peer, %error, "connection closed with an error");
                    }
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let service = service.clone();
                let handshake_timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection =
                                builder.serve_connection(TokioIo::new(stream), service);
                            if let Err(error) = watcher.watch(connection).await {
                                tracing::debug!(%peer, %error, "connection closed with an error");
                            }
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?address,
            "connections still open after the drain timeout; closing them"
        );
    }
    Ok(())
}
