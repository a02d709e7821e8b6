//! TLS for the emulator: the server side when it serves HTTPS (so kubectl sends bearer tokens),
//! and the client side of webhook calls, which trusts only a configuration's `caBundle`.
//! It must not fall back to system roots or skip verification.

use base64::Engine as _;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate and key the emulator serves HTTPS with, and the CA clients trust.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate chain of the server.
    pub certificate_pem: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// PEM of the CA written into kubeconfigs as `certificate-authority-data`.
    pub ca_pem: String,
}

/// The crypto provider used on both sides.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses PEM certificates; an empty list is an error.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("invalid PEM certificate: {error}"))?;
    if certificates.is_empty() {
        return Err("no PEM certificate found".to_string());
    }
    Ok(certificates)
}

/// The acceptor of the emulator's HTTPS listener.
pub fn acceptor(tls: &ServerTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    let chain = certificates(tls.certificate_pem.as_bytes())?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|error| format!("invalid PEM private key: {error}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| format!("unusable certificate or key: {error}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A connector trusting exactly the certificates of a base64 `caBundle` (PEM inside).
pub fn client_connector(ca_bundle: &str) -> Result<tokio_rustls::TlsConnector, String> {
    if ca_bundle.trim().is_empty() {
        return Err(
            "clientConfig.caBundle is empty: kube-emulator verifies webhook certificates only against it"
                .to_string(),
        );
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle.trim())
        .map_err(|error| format!("clientConfig.caBundle is not base64: {error}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(&pem)? {
        roots
            .add(certificate)
            .map_err(|error| format!("clientConfig.caBundle: {error}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Base64 of a PEM text (for `caBundle` and `certificate-authority-data`).
pub fn base64_of(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
}
