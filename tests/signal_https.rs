//! The production HTTPS certificate fetcher and subscription confirmer against a loopback TLS
//! server that serves `sns.us-east-1.amazonaws.com` with a test certificate the client trusts
//! (the production client builder plus that root and a loopback address): fetch, cache, no
//! redirects, size bound, status handling, and the confirmation answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use autoguardrails::controller::endpoints::certs::{
    CertificateError, CertificateFetcher, HttpsCertificates, HttpsSettings, https_client_builder,
};
use autoguardrails::controller::endpoints::confirm::{HttpsConfirmer, SubscriptionConfirmer};
use autoguardrails::controller::signal::sns::{ValidatedCertUrl, ValidatedSubscribeUrl};
use autoguardrails::metrics::Metrics;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const TLS_CERT: &str = include_str!("fixtures/signals/sns/tls-cert.pem");
const TLS_CA: &str = include_str!("fixtures/signals/sns/tls-ca.pem");
const TLS_KEY: &str = include_str!("fixtures/signals/sns/tls-key.pem");
const SIGNING_CERT: &str = include_str!("fixtures/signals/sns/test-cert.pem");
const HOST: &str = "sns.us-east-1.amazonaws.com";

struct TlsServer {
    address: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

fn answer(path: &str) -> Vec<u8> {
    let (status, headers, body): (&str, String, Vec<u8>) = match path {
        "/SimpleNotificationService-good.pem" => ("200 OK", String::new(), SIGNING_CERT.into()),
        "/SimpleNotificationService-redirect.pem" => (
            "302 Found",
            "Location: https://sns.us-east-1.amazonaws.com/SimpleNotificationService-good.pem\r\n"
                .into(),
            Vec::new(),
        ),
        "/SimpleNotificationService-huge.pem" => ("200 OK", String::new(), vec![b'A'; 200_000]),
        "/SimpleNotificationService-error.pem" => {
            ("503 Service Unavailable", String::new(), Vec::new())
        }
        p if p.starts_with("/?Action=ConfirmSubscription") => (
            "200 OK",
            String::new(),
            b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-east-1:111111111111:cost-alerts:sub-9</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>".to_vec(),
        ),
        _ => ("404 Not Found", String::new(), Vec::new()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn tls_server() -> TlsServer {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certificates = vec![CertificateDer::from_pem_slice(TLS_CERT.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(TLS_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path.clone());
                let _ = stream.write_all(&answer(&path)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    TlsServer { address, paths }
}

fn client(server: &TlsServer) -> reqwest::Client {
    https_client_builder(&HttpsSettings::default())
        .tls_certs_only([reqwest::Certificate::from_pem(TLS_CA.as_bytes()).unwrap()])
        .resolve(HOST, server.address)
        .build()
        .unwrap()
}

fn url(name: &str) -> ValidatedCertUrl {
    ValidatedCertUrl::parse(&format!("https://{HOST}/{name}")).unwrap()
}

#[tokio::test]
async fn fetches_over_https_caches_and_bounds() {
    let server = tls_server().await;
    let metrics = Arc::new(Metrics::new().unwrap());
    let fetcher = HttpsCertificates::with_client(
        client(&server),
        HttpsSettings::default(),
        Some(metrics.clone()),
    );
    let good = url("SimpleNotificationService-good.pem");
    let pem = fetcher.fetch(&good).await.unwrap();
    assert_eq!(pem.as_slice(), SIGNING_CERT.as_bytes());
    let again = fetcher.fetch(&good).await.unwrap();
    assert_eq!(again, pem);
    assert_eq!(
        server.paths.lock().unwrap().len(),
        1,
        "the second look-up is served from the cache"
    );
    let count = |outcome: &str| {
        metrics
            .sns_certificate_fetches
            .with_label_values(&[outcome])
            .get()
    };
    assert_eq!((count("fetched"), count("cached")), (1, 1));

    // a redirect is not followed, even to the same host
    let error = fetcher
        .fetch(&url("SimpleNotificationService-redirect.pem"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CertificateError::Status { status: 302, .. }),
        "{error}"
    );
    assert!(error.is_permanent());
    let error = fetcher
        .fetch(&url("SimpleNotificationService-huge.pem"))
        .await
        .unwrap_err();
    assert!(matches!(error, CertificateError::TooLarge(_)), "{error}");
    let error = fetcher
        .fetch(&url("SimpleNotificationService-missing.pem"))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        CertificateError::Status { status: 404, .. }
    ));
    assert!(error.is_permanent());
    let error = fetcher
        .fetch(&url("SimpleNotificationService-error.pem"))
        .await
        .unwrap_err();
    assert!(!error.is_permanent(), "5xx is worth a retry");
    assert_eq!(count("failed"), 4);
    let paths = server.paths.lock().unwrap().clone();
    assert!(
        !paths.iter().skip(1).any(|p| p.ends_with("good.pem")),
        "redirect target was not visited: {paths:?}"
    );
}

#[tokio::test]
async fn untrusted_server_certificate_fails() {
    let server = tls_server().await;
    // the production client trusts the platform roots, not the test certificate
    let production_like = HttpsCertificates::with_client(
        https_client_builder(&HttpsSettings::default())
            .resolve(HOST, server.address)
            .build()
            .unwrap(),
        HttpsSettings::default(),
        None,
    );
    let error = production_like
        .fetch(&url("SimpleNotificationService-good.pem"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CertificateError::Transport { .. }),
        "{error}"
    );
    assert!(server.paths.lock().unwrap().is_empty());
}

#[tokio::test]
async fn confirms_a_subscription_over_https() {
    let server = tls_server().await;
    let confirmer = HttpsConfirmer::with_client(client(&server));
    let subscribe = ValidatedSubscribeUrl::parse(&format!(
        "https://{HOST}/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:111111111111:cost-alerts&Token=abc"
    ))
    .unwrap();
    let arn = confirmer.confirm(&subscribe).await.unwrap();
    assert_eq!(
        arn.as_deref(),
        Some("arn:aws:sns:us-east-1:111111111111:cost-alerts:sub-9")
    );
    assert_eq!(server.paths.lock().unwrap().len(), 1);
    let missing = ValidatedSubscribeUrl::parse(&format!("https://{HOST}/nothing")).unwrap();
    assert!(confirmer.confirm(&missing).await.is_err());
}
