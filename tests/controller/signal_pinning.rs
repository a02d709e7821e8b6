//! Pinned SNS signing certificates (decision 204): a directory of PEMs named as the
//! `SigningCertURL`s end (laid out as a mounted Secret: `..data` symlinks), never fetched from;
//! SHA-256 fingerprints that any certificate must match, pinned or fetched; and every way the
//! pinning set-up can be wrong refused at start with the reason.

use std::sync::Arc;

use autoguardrails::controller::endpoints::certs::{
    CertificateError, CertificateFetcher, FingerprintPinned, PinnedCertificates,
    StaticCertificates, certificate_fingerprint, parse_fingerprint,
};
use autoguardrails::controller::signal::sns::ValidatedCertUrl;

const CERT: &str = include_str!("../fixtures/signals/sns/test-cert.pem");
const OTHER_CERT: &str = include_str!("../fixtures/signals/sns/other-cert.pem");
/// `openssl x509 -in test-cert.pem -noout -fingerprint -sha256`.
const CERT_FINGERPRINT: &str = "16:2B:9C:DD:E0:9E:6B:39:AC:05:F6:A6:F9:53:77:0D:BC:11:21:FC:1C:B9:5B:4E:86:5D:A7:5B:9D:9B:37:52";
const PINNED_FILE: &str = "SimpleNotificationService-0000000000000000000000000000000a.pem";

fn url(region: &str, file: &str) -> ValidatedCertUrl {
    ValidatedCertUrl::parse(&format!("https://sns.{region}.amazonaws.com/{file}")).unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("agr-pin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory the way the kubelet mounts a Secret: files in a timestamped directory, `..data`
/// pointing at it, and each key a symlink through `..data`.
fn secret_volume(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let data = dir.join("..2026_12_05_21_00_00.000000001");
    std::fs::create_dir_all(&data).unwrap();
    for (file, text) in files {
        std::fs::write(data.join(file), text).unwrap();
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
    }
    std::os::unix::fs::symlink(data.file_name().unwrap(), dir.join("..data")).unwrap();
    dir
}

#[test]
fn fingerprints_are_what_openssl_shows() {
    assert_eq!(
        certificate_fingerprint(CERT.as_bytes()).unwrap(),
        CERT_FINGERPRINT.replace(':', "").to_ascii_lowercase()
    );
    assert_eq!(
        parse_fingerprint(CERT_FINGERPRINT).unwrap(),
        parse_fingerprint(&CERT_FINGERPRINT.replace(':', "").to_ascii_lowercase()).unwrap()
    );
    for bad in ["", "16:2B", "zz", &"0".repeat(63), &"0".repeat(65)] {
        assert!(parse_fingerprint(bad).is_err(), "{bad:?}");
    }
    assert!(certificate_fingerprint(b"not a certificate").is_err());
}

#[tokio::test]
async fn a_pinned_directory_answers_its_urls_and_refuses_every_other() {
    let dir = secret_volume("ok", &[(PINNED_FILE, CERT), ("README.txt", "ignored")]);
    let pinned = PinnedCertificates::load_dir(&dir).unwrap();
    assert_eq!(pinned.file_names().collect::<Vec<_>>(), vec![PINNED_FILE]);
    // Any region's SNS host names the certificate by the same file.
    for region in ["us-east-1", "eu-central-1"] {
        let pem = pinned.fetch(&url(region, PINNED_FILE)).await.unwrap();
        assert_eq!(pem.as_slice(), CERT.as_bytes());
    }
    let other = url(
        "us-east-1",
        "SimpleNotificationService-0000000000000000000000000000000b.pem",
    );
    let error = pinned.fetch(&other).await.unwrap_err();
    assert!(matches!(error, CertificateError::NotPinned(_)), "{error}");
    assert!(
        error.is_permanent(),
        "a message not pinned is refused, not retried"
    );
    assert!(
        error.to_string().contains("is not pinned") && error.to_string().contains("never fetches"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_pinning_is_refused_at_start() {
    let missing = std::env::temp_dir().join("agr-pin-does-not-exist");
    let error = PinnedCertificates::load_dir(&missing).unwrap_err();
    assert!(
        error.to_string().contains("cannot read directory"),
        "{error}"
    );

    let empty = secret_volume("empty", &[("notes.txt", "x")]);
    let error = PinnedCertificates::load_dir(&empty).unwrap_err();
    assert!(
        error.to_string().contains("holds no *.pem certificate"),
        "{error}"
    );

    let garbage = secret_volume(
        "garbage",
        &[(PINNED_FILE, "-----BEGIN CERTIFICATE-----\nxx\n")],
    );
    let error = PinnedCertificates::load_dir(&garbage).unwrap_err();
    assert!(
        error.to_string().contains("not a PEM X.509 certificate"),
        "{error}"
    );

    let error = FingerprintPinned::new(Arc::new(StaticCertificates::new()), ["12:34"])
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("not a SHA-256 fingerprint"),
        "{error}"
    );
    let error = FingerprintPinned::new(Arc::new(StaticCertificates::new()), Vec::<String>::new())
        .err()
        .unwrap();
    assert!(error.to_string().contains("no fingerprint"), "{error}");
    for dir in [empty, garbage] {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn fingerprints_admit_only_their_certificates() {
    let a = url("us-east-1", PINNED_FILE);
    let b = url(
        "us-east-1",
        "SimpleNotificationService-0000000000000000000000000000000b.pem",
    );
    let source = StaticCertificates::new()
        .with(&a, CERT.as_bytes())
        .with(&b, OTHER_CERT.as_bytes());
    let pinned = FingerprintPinned::new(Arc::new(source), [CERT_FINGERPRINT]).unwrap();
    assert_eq!(pinned.fetch(&a).await.unwrap().as_slice(), CERT.as_bytes());
    let error = pinned.fetch(&b).await.unwrap_err();
    assert!(
        matches!(error, CertificateError::FingerprintNotPinned { .. }) && error.is_permanent(),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("a478ea9f2c19fa44b6f40689caf2a145c9e826c782e9a7cea312865f5748c891"),
        "{error}"
    );
    // What the inner source cannot supply stays its own error.
    let unknown = url(
        "us-east-1",
        "SimpleNotificationService-0000000000000000000000000000000c.pem",
    );
    assert!(matches!(
        pinned.fetch(&unknown).await.unwrap_err(),
        CertificateError::Unknown(_)
    ));
}
