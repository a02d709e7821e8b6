//! The approval webhook's adapters with real parts: the router served over TLS by the one
//! listener (`serve_tls`), called by reqwest trusting only the test CA, asking real
//! SubjectAccessReviews of the emulator's RBAC through the kube client. Allowed (stamped), refused
//! (403, nothing stamped), the SubjectAccessReview failing (503, fail closed), an unreadable
//! review, and a client that does not trust the certificate.

use std::sync::Arc;

use autoguardrails::controller::admission::StampKey;
use autoguardrails::controller::admission::server::{KubeAccessReviewer, WebhookState, router};
use autoguardrails::http::listener::{ListenerLimits, serve_tls, tls_acceptor};
use autoguardrails::metrics::Metrics;
use base64::Engine as _;
use serde_json::{Value, json};

const TLS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/kube-emulator/tests/fixtures/tls/"
);

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TLS}{name}")).unwrap()
}

const RBAC: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "autoguardrails:approver"
rules:
  - apiGroups: ["autoguardrails.io"]
    resources: ["quarantines"]
    verbs: ["get", "list", "watch", "patch", "approve"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-approves, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "autoguardrails:approver"}
subjects:
  - {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: approve-ci, namespace: default}
rules:
  - apiGroups: ["autoguardrails.io"]
    resources: ["guardrailpolicies"]
    resourceNames: ["ci"]
    verbs: ["approve"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-approves-ci, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: approve-ci}
subjects:
  - {kind: User, apiGroup: rbac.authorization.k8s.io, name: carol}
"#;

fn review(user: &str, policy: &str) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "review-1", "namespace": "default", "name": "q-1", "operation": "UPDATE",
        "userInfo": {"username": user, "uid": format!("uid-{user}"), "groups": ["system:authenticated"]},
        "oldObject": {"metadata": {"name": "q-1", "uid": "quid"}, "spec": {"policyRef": {"name": policy}}},
        "object": {"metadata": {"name": "q-1", "uid": "quid", "annotations": {"autoguardrails.io/approve": "ok"}},
                   "spec": {"policyRef": {"name": policy}}},
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_asks_the_api_server_and_fails_closed() {
    let emulator = kube_emulator::Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    let applied = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubectl"),
    )
    .arg("--kubeconfig")
    .arg(emulator.kubeconfig_path())
    .args(["apply", "-f", "-"])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .spawn()
    .map(|mut child| {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(RBAC.as_bytes())
            .unwrap();
        child.wait().unwrap()
    })
    .unwrap();
    assert!(applied.success());

    let key = StampKey::derive(&read("server-key.pem"));
    let metrics = Arc::new(Metrics::new().unwrap());
    let state = Arc::new(WebhookState {
        reviewer: Arc::new(KubeAccessReviewer { client }),
        key: key.clone(),
        metrics: metrics.clone(),
        controller_username: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        tls_acceptor(&read("server.pem"), &read("server-key.pem")).unwrap(),
        router(state),
        ListenerLimits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&read("test-ca.pem")).unwrap()])
        .build()
        .unwrap();
    let url = format!("https://{address}/approve");
    let ask = |body: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let response = http.post(&url).body(body).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["response"].clone()
        }
    };

    // alice holds approve on quarantines: allowed, and the stamp names her.
    let answer = ask(review("alice", "ci").to_string()).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(answer["uid"], "review-1");
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(answer["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let stamped = patch[0]["value"].as_str().unwrap();
    let identity = key
        .verify("quid", "autoguardrails.io/approve", "ok", stamped)
        .unwrap();
    assert_eq!(
        (identity.username.as_str(), identity.uid.as_str()),
        ("alice", "uid-alice")
    );

    // carol may approve the quarantines of policy "ci" only (approve on guardrailpolicies/ci).
    assert_eq!(
        ask(review("carol", "ci").to_string()).await["allowed"],
        true
    );
    let refused = ask(review("carol", "other").to_string()).await;
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["status"]["code"], 403);
    assert!(refused["patch"].is_null());

    // mallory holds nothing: refused with the reason.
    let refused = ask(review("mallory", "ci").to_string()).await;
    assert_eq!(refused["allowed"], false);
    assert!(
        refused["status"]["message"].as_str().unwrap().contains(
            "user \"mallory\" may not approve Quarantine \"q-1\" in namespace \"default\""
        ),
        "{refused}"
    );

    // The SubjectAccessReview fails: refused (503), never allowed.
    emulator
        .faults()
        .fail_next("create", "subjectaccessreviews", 2, 500);
    let failed = ask(review("alice", "ci").to_string()).await;
    assert_eq!(failed["allowed"], false);
    assert_eq!(failed["status"]["code"], 503);
    assert!(
        failed["status"]["message"]
            .as_str()
            .unwrap()
            .contains("fails closed")
    );

    // An unreadable review is refused.
    let garbage = ask("{not json".to_string()).await;
    assert_eq!(garbage["allowed"], false);
    assert_eq!(garbage["status"]["code"], 400);

    // A client trusting another CA does not get through the handshake.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&read("other-ca.pem")).unwrap()])
        .build()
        .unwrap();
    assert!(untrusting.post(&url).body("{}").send().await.is_err());

    let encoded = metrics.encode().unwrap();
    assert!(
        encoded.contains(
            "autoguardrails_approval_reviews_total{decision=\"refused\",verb=\"approve\"} 2"
        ),
        "{encoded}"
    );
    assert!(
        encoded.contains(
            "autoguardrails_approval_reviews_total{decision=\"error\",verb=\"approve\"} 1"
        )
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The reconcile with a stamp key (the webhook on): a valid stamp makes the stamped user the
/// approver whatever the value claims; a forged stamp counts as none (unverified); the stamp goes
/// with the annotation once handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_records_the_stamped_identity_and_ignores_a_forged_one() {
    use crate::support::controller::{Harness, anomaly, policy_yaml, test_settings};
    use autoguardrails::controller::admission::Identity;
    use autoguardrails::controller::crd::Phase;
    use autoguardrails::controller::lifecycle::{APPROVE_ANNOTATION, EXTEND_ANNOTATION};
    use kube::api::{Patch, PatchParams};

    let key = StampKey::derive(b"the controller's TLS key");
    let mut settings = test_settings();
    settings.approval_stamp_key = Some(key.clone());
    let h = Harness::start_with(settings).await;
    h.apply_policy(&policy_yaml("manual-ci", "Manual", "1h", &["dev-ci"]))
        .await;
    let report = h
        .submit(&anomaly(
            "stamp-1",
            crate::support::controller::ACCOUNT,
            500.0,
        ))
        .await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    let q = h.wait_phase(&name, Phase::PendingApproval).await;
    let uid = q.metadata.uid.clone().unwrap();
    let alice = Identity {
        username: "alice".into(),
        uid: "uid-alice".into(),
        groups: vec!["approvers".into()],
    };
    let value = "bob: runaway job";
    let stamp = key.sign(&uid, APPROVE_ANNOTATION, value, &alice);
    let annotate = |pairs: Value| {
        let quarantines = h.quarantines();
        let name = name.clone();
        async move {
            quarantines
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": pairs}})),
                )
                .await
                .unwrap();
        }
    };
    annotate(json!({APPROVE_ANNOTATION: value, format!("{APPROVE_ANNOTATION}-verified"): stamp}))
        .await;
    let q = h.wait_phase(&name, Phase::Active).await;
    assert_eq!(q.status.unwrap().approved_by.as_deref(), Some("alice"));
    h.eventually("the annotation and its stamp cleared", || async {
        let annotations = h
            .quarantine(&name)
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default();
        !annotations.contains_key(APPROVE_ANNOTATION)
            && !annotations.contains_key(&format!("{APPROVE_ANNOTATION}-verified"))
    })
    .await;

    // A stamp made with another key (or edited) is no stamp: the extension is unverified.
    let forged =
        StampKey::derive(b"someone else's key").sign(&uid, EXTEND_ANNOTATION, "3h", &alice);
    annotate(json!({EXTEND_ANNOTATION: "3h", format!("{EXTEND_ANNOTATION}-verified"): forged}))
        .await;
    h.eventually("the extension recorded as unverified", || async {
        h.quarantine(&name)
            .await
            .and_then(|q| q.status)
            .is_some_and(|status| {
                status
                    .history
                    .iter()
                    .any(|entry| entry.actor == "kubectl-annotate (unverified)")
            })
    })
    .await;
    let history = h.quarantine(&name).await.unwrap().status.unwrap().history;
    assert!(
        !history
            .iter()
            .skip_while(|entry| entry.event != "Activated")
            .skip(1)
            .any(|entry| entry.actor == "alice"),
        "{history:?}"
    );
    // The reconcile counts a handled annotation after its status write (just before it clears
    // the annotation), so the count may trail the history by a moment.
    let count = |verb: &'static str, verified: &'static str| {
        h.metrics
            .approvals
            .with_label_values(&[verb, verified])
            .get()
    };
    h.eventually("both approvals counted", || async {
        count("approve", "true") >= 1 && count("extend", "false") >= 1
    })
    .await;
    assert_eq!(count("approve", "true"), 1);
    assert_eq!(count("extend", "false"), 1);
    assert_eq!(count("approve", "false") + count("extend", "true"), 0);
}

/// The webhook's certificate files change (a renewed Secret): the next handshake serves the new
/// certificate without a restart; an unreadable renewal keeps the last good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    use autoguardrails::http::listener::tls_acceptor_from_files;
    let directory = std::env::temp_dir().join(format!("agr-tls-reload-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let certificate = directory.join("tls.crt");
    let key = directory.join("tls.key");
    // Like a Secret volume: new files are written aside and renamed into place.
    let install = |certificate_name: &str, key_name: &str| {
        std::fs::write(directory.join("new.crt"), read(certificate_name)).unwrap();
        std::fs::write(directory.join("new.key"), read(key_name)).unwrap();
        std::fs::rename(directory.join("new.crt"), &certificate).unwrap();
        std::fs::rename(directory.join("new.key"), &key).unwrap();
    };
    install("server.pem", "server-key.pem");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/approve", listener.local_addr().unwrap());
    let state = Arc::new(WebhookState {
        reviewer: Arc::new(KubeAccessReviewer {
            client: kube_emulator::Emulator::start()
                .await
                .unwrap()
                .client()
                .await
                .unwrap(),
        }),
        key: StampKey::derive(b"k"),
        metrics: Arc::new(Metrics::new().unwrap()),
        controller_username: None,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        tls_acceptor_from_files(&certificate, &key).unwrap(),
        router(state),
        ListenerLimits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let trusting = |ca: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&read(ca)).unwrap()])
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let answers = |ca: &'static str| {
        let client = trusting(ca);
        let url = url.clone();
        async move { client.post(&url).body("{}").send().await.is_ok() }
    };
    assert!(answers("test-ca.pem").await);
    assert!(!answers("rotated-ca.pem").await);

    install("rotated-server.pem", "rotated-server-key.pem");
    assert!(
        answers("rotated-ca.pem").await,
        "the renewed certificate is served"
    );
    assert!(!answers("test-ca.pem").await);

    // A broken renewal: the last good certificate stays.
    std::fs::write(directory.join("new.crt"), b"not a certificate").unwrap();
    std::fs::rename(directory.join("new.crt"), &certificate).unwrap();
    assert!(answers("rotated-ca.pem").await);

    // The first read must succeed.
    assert!(tls_acceptor_from_files(&directory.join("missing.crt"), &key).is_err());
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&directory).unwrap();
}
