//! Approving from Slack through the real binary: Slack's signed `block_actions` interactions
//! (form-encoded `payload=`, `v0` HMAC-SHA256 signature) are posted by a real HTTP client to
//! `/slack/interactions` on the signals listener, and a local HTTP receiver plays Slack's
//! `response_url`. The controller serves its approval webhook too (the emulator calls it for every
//! approval written), maps Slack users to Kubernetes identities from its configuration, and asks
//! SubjectAccessReviews exactly as for kubectl: alice (approver) approves and is recorded as
//! herself, verified, then extends (verified) and releases; mallory (may patch, not approve) is
//! refused approve and release from Slack, and an unmapped user is refused, and
//! nothing changes; bad signatures, old timestamps, replays and oversized bodies are refused before
//! anything is read; a button that no longer applies says so; a `response_url` that is down does not
//! undo the action.

use super::approval_webhook::{
    ACCOUNT, API_KEY, NS, POLICIES, approvals_cluster, kubectl, ok, quarantine_of, status_of,
    tls_file, wait_phase, webhook_configuration,
};
use crate::support::binary::{free_port, metric_value, wait_for};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "e2e-signing-secret-0123456789";

/// Slack's `v0` signature, computed here independently of the controller's code.
fn sign(timestamp: i64, body: &str) -> String {
    sign_with(SECRET, timestamp, body)
}

/// The same with another secret.
fn sign_with(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("v0={hex}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `block_actions` payload as Slack documents it, form-encoded.
fn click(user: &str, verb: &str, quarantine: &Value, response_url: &str) -> String {
    let value = json!({
        "ns": quarantine["metadata"]["namespace"],
        "name": quarantine["metadata"]["name"],
        "uid": quarantine["metadata"]["uid"],
    })
    .to_string();
    // Every click Slack sends is different (trigger and action timestamps).
    static CLICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let serial = CLICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": format!("{user}-name"), "name": format!("{user}-name"), "team_id": "T0E2E"},
        "api_app_id": "A0E2E",
        "token": "verification-token-not-used",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0E2E", "is_ephemeral": false},
        "trigger_id": format!("123.{serial}.abc"),
        "team": {"id": "T0E2E", "domain": "example"},
        "channel": {"id": "C0E2E", "name": "guardrails"},
        "response_url": response_url,
        "actions": [{
            "action_id": format!("autoguardrails.{verb}"),
            "block_id": "autoguardrails-actions",
            "text": {"type": "plain_text", "text": verb, "emoji": true},
            "value": value,
            "type": "button",
            "action_ts": format!("1700000001.{serial:06}")
        }]
    });
    let mut form = String::from("payload=");
    for byte in payload.to_string().bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            form.push(byte as char);
        } else {
            form.push_str(&format!("%{byte:02X}"));
        }
    }
    form
}

/// POSTs a body with the given timestamp and signature; the HTTP status.
async fn post(
    http: &reqwest::Client,
    url: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> u16 {
    http.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// POSTs a correctly signed body now.
async fn post_signed(http: &reqwest::Client, url: &str, body: &str) -> u16 {
    let timestamp = now();
    post(http, url, timestamp, &sign(timestamp, body), body).await
}

/// Plays Slack's `response_url`: records every JSON body posted to `/answer`.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/answer",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/answer", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Plays Slack's Web API `users.info`: U0CAROL has a confirmed address, U0EVE an unconfirmed
/// one. Records each (user, Authorization header) asked.
async fn web_api() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let store = asked.clone();
    let app = axum::Router::new().route(
        "/api/users.info",
        axum::routing::get(
            move |headers: axum::http::HeaderMap,
                  axum::extract::Query(query): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| {
                let store = store.clone();
                async move {
                    let user = query.get("user").cloned().unwrap_or_default();
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    store.lock().unwrap().push((user.clone(), auth));
                    let (email, confirmed) = match user.as_str() {
                        "U0CAROL" => ("carol@example.com", true),
                        "U0EVE" => ("carol@example.com", false),
                        _ => return axum::Json(json!({"ok": false, "error": "user_not_found"})),
                    };
                    axum::Json(json!({"ok": true, "user": {
                        "id": user, "team_id": "T0E2E", "is_email_confirmed": confirmed,
                        "profile": {"email": email, "real_name": "someone"}
                    }}))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

/// Waits for an answer containing `text`, and returns it.
async fn answer_with(received: &Arc<Mutex<Vec<Value>>>, text: &str) -> Value {
    let mut found = Value::Null;
    wait_for(
        &format!("an answer with {text:?}"),
        Duration::from_secs(30),
        || {
            found = received
                .lock()
                .unwrap()
                .iter()
                .find(|answer| answer["text"].as_str().unwrap_or_default().contains(text))
                .cloned()
                .unwrap_or(Value::Null);
            let done = !found.is_null();
            async move { done }
        },
    )
    .await;
    found
}

fn write_config(
    dir: &Path,
    metrics_port: u16,
    signals_port: u16,
    webhook_port: u16,
    response_urls: &[String],
    api_base: &str,
) -> PathBuf {
    let secret = dir.join("signing-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let token = dir.join("bot-token");
    std::fs::write(&token, "xoxb-e2e-token\n").unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"clusterId: e2e
namespaces: [{NS}]
metricsAddr: 127.0.0.1:{metrics_port}
signalsAddr: 127.0.0.1:{signals_port}
aws:
  backend: memory
  memory:
    '{ACCOUNT}': {{roles: [dev-ci, etl, ops]}}
leaderElection:
  enabled: false
signals:
  events:
    apiKeySecret: {{ name: events-key, key: apiKey }}
notifications:
  enabled: false
approvalWebhook:
  enabled: true
  addr: 127.0.0.1:{webhook_port}
  certFile: {cert}
  keyFile: {key}
slack:
  interactions: true
  signingSecretFile: {secret}
  maxBodyBytes: 16384
  signingSecretGrace: 3s
  responseUrlPrefixes: {prefixes}
  users:
    - {{slackUserId: U0ALICE, username: alice, groups: [approvers]}}
    - {{slackUserId: U0MALLORY, username: mallory}}
    - {{email: carol@example.com, username: carol}}
  botTokenFile: {token}
  apiBaseUrl: {api_base}
  emailCacheTtl: 10m
audit:
  jsonLines: {audit}
  flushInterval: 200ms
"#,
            cert = tls_file("server.pem").display(),
            key = tls_file("server-key.pem").display(),
            secret = secret.display(),
            audit = dir.join("audit.jsonl").display(),
            prefixes = serde_json::to_string(response_urls).unwrap(),
            token = token.display(),
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_buttons_act_as_the_mapped_identity_and_refuse_everything_else() {
    let (_emulator, admin) = approvals_cluster(Vec::new()).await;

    let dir = std::env::temp_dir().join(format!("agr-slack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics_port, signals_port, webhook_port) = (free_port(), free_port(), free_port());
    // Slack's response_url is played by a local receiver; a second port stays closed (Slack
    // down). Only these two are allowed response_url prefixes.
    let (answer_url, received) = receiver().await;
    let down_port = free_port();
    let allowed = [
        answer_url.trim_end_matches("answer").to_string(),
        format!("http://127.0.0.1:{down_port}/"),
    ];
    let (api_base, asked) = web_api().await;
    let config = write_config(
        &dir,
        metrics_port,
        signals_port,
        webhook_port,
        &allowed,
        &api_base,
    );
    let controller =
        crate::support::binary::spawn_controller_with_env(&admin, &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let (applied, out, err) = kubectl(
        &admin,
        &["apply", "-f", "-"],
        Some(&webhook_configuration(webhook_port)),
    );
    assert!(applied, "{out}{err}");
    let (applied, out, err) = kubectl(&admin, &["apply", "-f", "-"], Some(POLICIES));
    assert!(applied, "{out}{err}");
    for policy in ["ci-a", "ci-b"] {
        ok(
            &admin,
            &[
                "wait",
                "-n",
                NS,
                "--for=condition=Ready",
                &format!("guardrailpolicy/{policy}"),
                "--timeout=60s",
            ],
        );
    }
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(ACCOUNT.into());
    let (status, outcome, reason) = crate::support::binary::post_event(
        &http,
        &format!("http://127.0.0.1:{signals_port}/events"),
        API_KEY,
        &event,
    )
    .await;
    assert!(status < 300, "{status} {outcome} {reason}");
    let mut first = String::new();
    let mut second = String::new();
    wait_for("two quarantines", Duration::from_secs(60), || {
        first = quarantine_of(&admin, "ci-a");
        second = quarantine_of(&admin, "ci-b");
        let both = !first.is_empty() && !second.is_empty();
        async move { both }
    })
    .await;
    wait_phase(&admin, &first, "PendingApproval").await;
    wait_phase(&admin, &second, "PendingApproval").await;
    let first_object = status_of(&admin, &first);
    let second_object = status_of(&admin, &second);

    let url = format!("http://127.0.0.1:{signals_port}/slack/interactions");
    let metric =
        |outcome: &str| format!("autoguardrails_slack_interactions_total{{outcome=\"{outcome}\"}}");

    // Refused before anything is read: wrong signature, missing headers, old timestamp, too big.
    let body = click("U0ALICE", "approve", &first_object, &answer_url);
    let timestamp = now();
    let forged = sign(timestamp, &body.replace("U0ALICE", "U0MALLORY"));
    assert_eq!(post(&http, &url, timestamp, &forged, &body).await, 401);
    assert_eq!(post(&http, &url, timestamp, "", &body).await, 401);
    let old = now() - 6 * 60;
    assert_eq!(post(&http, &url, old, &sign(old, &body), &body).await, 401);
    let huge = format!("{body}&padding={}", "x".repeat(32 * 1024));
    assert_eq!(post_signed(&http, &url, &huge).await, 413);
    assert_eq!(
        metric_value(&http, &ops, &metric("bad_signature")).await,
        2.0
    );
    assert_eq!(
        metric_value(&http, &ops, &metric("stale_timestamp")).await,
        1.0
    );
    assert_eq!(metric_value(&http, &ops, &metric("too_large")).await, 1.0);
    assert_eq!(
        status_of(&admin, &first)["status"]["phase"],
        "PendingApproval"
    );
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing answered to refused requests"
    );

    // A response_url that is not an allowed Slack address: refused whole, nothing posted.
    let elsewhere = click(
        "U0ALICE",
        "approve",
        &first_object,
        "http://127.0.0.1:9/elsewhere",
    );
    assert_eq!(post_signed(&http, &url, &elsewhere).await, 400);
    assert_eq!(
        metric_value(&http, &ops, &metric("bad_response_url")).await,
        1.0
    );

    // An unmapped Slack user: an ephemeral refusal, nothing changes.
    let unmapped = click("U0NOBODY", "approve", &first_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &unmapped).await, 200);
    let answer = answer_with(&received, "not mapped to a Kubernetes identity").await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert_eq!(answer["replace_original"], false);

    // mallory is mapped but may not approve (the SubjectAccessReview says no).
    let refused = click("U0MALLORY", "approve", &first_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &refused).await, 200);
    let answer = answer_with(&received, "user \"mallory\" may not approve").await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert_eq!(metric_value(&http, &ops, &metric("unmapped")).await, 1.0);
    assert_eq!(metric_value(&http, &ops, &metric("refused")).await, 1.0);
    let q = status_of(&admin, &first);
    assert_eq!(q["status"]["phase"], "PendingApproval");
    assert!(
        q["metadata"]["annotations"]["autoguardrails.io/approve"].is_null(),
        "{q}"
    );

    // alice approves: written with a stamp the webhook lets through, recorded as alice, verified.
    let approve = click("U0ALICE", "approve", &first_object, &answer_url);
    let timestamp = now();
    let signature = sign(timestamp, &approve);
    assert_eq!(
        post(&http, &url, timestamp, &signature, &approve).await,
        200
    );
    wait_phase(&admin, &first, "Active").await;
    let answer = answer_with(&received, "alice approved").await;
    assert_eq!(answer["response_type"], "in_channel");
    // The clicked message is replaced: no buttons, the new state and who did it.
    assert_eq!(answer["replace_original"], true);
    let blocks = answer["blocks"].to_string();
    assert!(blocks.contains("Approved"), "{blocks}");
    assert!(blocks.contains("by alice from Slack"), "{blocks}");
    assert!(!blocks.contains("\"button\""), "{blocks}");
    let q = status_of(&admin, &first);
    assert_eq!(q["status"]["approvedBy"], "alice", "{q}");
    let history = q["status"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|entry| entry["actor"] == "alice"
            && entry["message"]
                .as_str()
                .unwrap_or_default()
                .contains("from Slack")),
        "{history:?}"
    );
    assert!(
        !history.iter().any(|entry| entry["actor"]
            .as_str()
            .unwrap_or_default()
            .contains("unverified")),
        "{history:?}"
    );
    // The history names the channel of the decision (from the stamp only the controller signs).
    assert!(
        history
            .iter()
            .any(|entry| entry["event"] == "Approved" && entry["channel"] == "slack"),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .filter(|entry| entry["actor"] == "controller")
            .all(|entry| entry["channel"].is_null()),
        "{history:?}"
    );
    assert_eq!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_approvals_total{verb=\"approve\",verified=\"true\"}"
        )
        .await,
        1.0
    );
    // The same signed request again is a replay.
    assert_eq!(
        post(&http, &url, timestamp, &signature, &approve).await,
        401
    );
    assert_eq!(metric_value(&http, &ops, &metric("replayed")).await, 1.0);
    // Another click on the same (now Active) Quarantine's Approve button no longer applies.
    let again = click("U0ALICE", "approve", &first_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &again).await, 200);
    let answer = answer_with(&received, "approve no longer applies").await;
    assert_eq!(answer["response_type"], "ephemeral");

    // Extend on the Active Quarantine: stamped like approve, recorded as alice, verified.
    let extend = click("U0ALICE", "extend", &first_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &extend).await, 200);
    answer_with(&received, "alice extended").await;
    wait_for("the extension recorded", Duration::from_secs(30), || {
        let q = status_of(&admin, &first);
        let extended = q["status"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["event"] == "Extended" && entry["actor"] == "alice");
        async move { extended }
    })
    .await;
    assert_eq!(
        metric_value(
            &http,
            &ops,
            "autoguardrails_approvals_total{verb=\"extend\",verified=\"true\"}"
        )
        .await,
        1.0
    );
    // mallory may patch Quarantines (kubectl could release) but from Slack release needs approve.
    let release = click("U0MALLORY", "release", &first_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &release).await, 200);
    answer_with(&received, "user \"mallory\" may not release").await;
    assert_eq!(status_of(&admin, &first)["status"]["phase"], "Active");
    // alice releases.
    let release = click("U0ALICE", "release", &first_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &release).await, 200);
    wait_phase(&admin, &first, "Released").await;
    answer_with(&received, "alice asked to release").await;
    let q = status_of(&admin, &first);
    let history = q["status"]["history"].as_array().unwrap();
    for event in ["Extended", "ReleaseRequested"] {
        assert!(
            history.iter().any(|entry| entry["event"] == event
                && entry["actor"] == "alice"
                && entry["channel"] == "slack"),
            "{event}: {history:?}"
        );
    }

    // Slack's response_url is down: the rejection stands anyway.
    let down = format!("http://127.0.0.1:{down_port}/answer");
    let reject = click("U0ALICE", "reject", &second_object, &down);
    assert_eq!(post_signed(&http, &url, &reject).await, 200);
    wait_phase(&admin, &second, "Rejected").await;
    assert_eq!(status_of(&admin, &second)["status"]["rejectedBy"], "alice");
    wait_for("accepted four times", Duration::from_secs(30), || async {
        metric_value(&http, &ops, &metric("accepted")).await == 4.0
    })
    .await;

    // Refusals and acceptances are Events on the Quarantine.
    let events = ok(
        &admin,
        &[
            "get",
            "events",
            "-n",
            NS,
            "-o",
            "jsonpath={range .items[*]}{.reason}={.message}{\"\\n\"}{end}",
        ],
    );
    assert!(
        events
            .lines()
            .any(|line| line.starts_with("SlackActionRefused=") && line.contains("U0MALLORY")),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|line| line.starts_with("SlackUserUnmapped=") && line.contains("U0NOBODY")),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|line| line.starts_with("SlackActionAccepted=") && line.contains("alice")),
        "{events}"
    );
    // The audit trail: accepted clicks through the Quarantine's history (channel slack,
    // verified), refused ones through the controller's own outbox.
    let audit_file = dir.join("audit.jsonl");
    let records = || -> Vec<Value> {
        std::fs::read_to_string(&audit_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let has = |event: &str, actor: &str| {
        records().into_iter().find(|r| {
            r["event"] == event
                && r["actor"]["name"] == actor
                && r["quarantine"]["name"] == first_object["metadata"]["name"]
        })
    };
    wait_for(
        "the refusals in the audit trail",
        Duration::from_secs(30),
        || {
            let found = has("SlackUserUnmapped", "slack:U0NOBODY").is_some()
                && has("SlackActionRefused", "mallory").is_some()
                && has("ReleaseRequested", "alice").is_some();
            async move { found }
        },
    )
    .await;
    let refused = has("SlackActionRefused", "mallory").unwrap();
    assert_eq!(refused["actor"]["channel"], "slack");
    assert_eq!(refused["actor"]["verified"], false);
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("U0MALLORY"),
        "{refused}"
    );
    for event in ["Approved", "Extended", "ReleaseRequested"] {
        let record = has(event, "alice").unwrap_or_else(|| panic!("{event}: {:?}", records()));
        assert_eq!(record["actor"]["channel"], "slack", "{record}");
        assert_eq!(record["actor"]["verified"], true, "{record}");
    }
    // Mapped by confirmed e-mail (users.info through the bot token): carol is carol, so the
    // button's phase is what refuses her; eve's address is not confirmed, so she is unmapped.
    let carol = click("U0CAROL", "approve", &second_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &carol).await, 200);
    let answer = answer_with(&received, "is Rejected; approve no longer applies").await;
    assert_eq!(answer["response_type"], "ephemeral");
    let eve = click("U0EVE", "approve", &second_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &eve).await, 200);
    wait_for(
        "eve refused as unmapped",
        Duration::from_secs(30),
        || async { metric_value(&http, &ops, &metric("unmapped")).await == 2.0 },
    )
    .await;
    // Asked once per user (cached), with the bot token; never for mapped user ids.
    let again = click("U0CAROL", "approve", &second_object, &answer_url);
    assert_eq!(post_signed(&http, &url, &again).await, 200);
    wait_for(
        "carol's second click answered",
        Duration::from_secs(30),
        || {
            let count = received
                .lock()
                .unwrap()
                .iter()
                .filter(|a| {
                    a["text"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("is Rejected; approve no longer applies")
                })
                .count();
            async move { count == 2 }
        },
    )
    .await;
    let asked = asked.lock().unwrap().clone();
    let carol_asked = asked.iter().filter(|(user, _)| user == "U0CAROL").count();
    assert_eq!(carol_asked, 1, "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|(_, auth)| auth == "Bearer xoxb-e2e-token"),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|(user, _)| user == "U0ALICE"),
        "{asked:?}"
    );

    // The signing secret is rotated in its file: the new one is accepted at once, the old one
    // for the grace period (3 s here), then refused.
    const ROTATED: &str = "e2e-rotated-secret-9876543210";
    std::fs::write(dir.join("signing-secret"), format!("{ROTATED}\n")).unwrap();
    let signed_with = |secret: &'static str| {
        let body = click("U0NOBODY", "approve", &second_object, &answer_url);
        let timestamp = now();
        let signature = sign_with(secret, timestamp, &body);
        let http = http.clone();
        let url = url.clone();
        async move { post(&http, &url, timestamp, &signature, &body).await }
    };
    assert_eq!(signed_with(ROTATED).await, 200);
    assert_eq!(
        signed_with(SECRET).await,
        200,
        "the previous secret, within the grace"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        signed_with(SECRET).await,
        401,
        "the previous secret after the grace"
    );
    assert_eq!(signed_with(ROTATED).await, 200);
    let log = controller.log();
    assert!(log.contains("slack signing secret rotated"), "{log}");
    assert!(!log.contains(ROTATED), "the new secret is never logged");
    assert!(log.contains("slack interaction"), "{log}");
    assert!(!log.contains(SECRET), "the signing secret is never logged");
    drop(controller);

    // Without the approval webhook there is no stamp key: the controller refuses to start rather
    // than record Slack approvals as unverified.
    let without = dir.join("without-webhook");
    std::fs::create_dir_all(&without).unwrap();
    let config = std::fs::read_to_string(&config).unwrap();
    let start = config.find("approvalWebhook:").unwrap();
    let end = config.find("slack:").unwrap();
    let unwebhooked = without.join("config.yaml");
    std::fs::write(
        &unwebhooked,
        format!("{}{}", &config[..start], &config[end..]),
    )
    .unwrap();
    let mut refused = crate::support::binary::spawn_controller_with_env(
        &admin,
        &unwebhooked,
        NS,
        &without,
        &[],
        &[],
    );
    let status = refused.child.take().unwrap().wait().unwrap();
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("slack.interactions needs approvalWebhook.enabled"),
        "{log}"
    );
}

/// Plays Slack's Web API for a bot (`chat.postMessage`, `chat.update`, `views.open`): records
/// every call (method, Authorization, JSON body); posts to `C0GONE` answer `ok:false
/// channel_not_found`, posts to `C0DOWN` HTTP 500 `internal_error`; `chat.update` answers from `updates` first (status, Retry-After, body),
/// then `ok`; `views.open` with the trigger `expired` answers `ok:false expired_trigger_id`.
struct BotApi {
    url: String,
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
}

type UpdateScript = Arc<Mutex<std::collections::VecDeque<(u16, Option<u64>, Value)>>>;

async fn bot_api(updates: Vec<(u16, Option<u64>, Value)>) -> BotApi {
    use axum::response::IntoResponse;
    let calls: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let script: UpdateScript = Arc::new(Mutex::new(updates.into()));
    let serial = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let handler = {
        let calls = calls.clone();
        move |axum::extract::Path(method): axum::extract::Path<String>,
              headers: axum::http::HeaderMap,
              axum::Json(body): axum::Json<Value>| {
            let (calls, script, serial) = (calls.clone(), script.clone(), serial.clone());
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                calls
                    .lock()
                    .unwrap()
                    .push((method.clone(), auth, body.clone()));
                let ok = |value: Value| (axum::http::StatusCode::OK, axum::Json(value));
                match method.as_str() {
                    "chat.postMessage" if body["channel"] == "C0GONE" => {
                        ok(json!({"ok": false, "error": "channel_not_found"})).into_response()
                    }
                    "chat.postMessage" if body["channel"] == "C0DOWN" => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({"ok": false, "error": "internal_error"})),
                    )
                        .into_response(),
                    "chat.postMessage" => {
                        let n = serial.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        ok(json!({"ok": true, "channel": body["channel"], "ts": format!("1700000000.{n:06}")}))
                            .into_response()
                    }
                    "chat.update" => match script.lock().unwrap().pop_front() {
                        Some((status, retry_after, answer)) => {
                            let mut response = (
                                axum::http::StatusCode::from_u16(status).unwrap(),
                                axum::Json(answer),
                            )
                                .into_response();
                            if let Some(seconds) = retry_after {
                                response
                                    .headers_mut()
                                    .insert("retry-after", seconds.to_string().parse().unwrap());
                            }
                            response
                        }
                        None => {
                            ok(json!({"ok": true, "channel": body["channel"], "ts": body["ts"]}))
                                .into_response()
                        }
                    },
                    "views.open" if body["trigger_id"] == "expired" => {
                        ok(json!({"ok": false, "error": "expired_trigger_id"})).into_response()
                    }
                    "views.open" => {
                        ok(json!({"ok": true, "view": {"id": "V0E2E"}})).into_response()
                    }
                    _ => ok(json!({"ok": false, "error": "unknown_method"})).into_response(),
                }
            }
        }
    };
    let app = axum::Router::new().route("/api/{method}", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    BotApi { url, calls }
}

impl BotApi {
    fn calls(&self, method: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, _, body)| body.clone())
            .collect()
    }
}

const BOT_POLICIES: &str = r#"apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-bot
  namespace: autoguardrails
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/dev-ci" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    approvalTimeout: 1h
    cooldown: 30m
  notify:
    slack:
      webhookSecretRef: { name: unused-webhook, key: url }
---
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: ci-gone
  namespace: autoguardrails
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::123456789012:role/etl" }
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 2h
    approvalTimeout: 1h
    cooldown: 30m
  notify:
    slack:
      webhookSecretRef: { name: unused-webhook, key: url }
      channelHint: C0GONE
"#;

/// `BOT_POLICIES` as a bot set-up writes them (decision 238): ci-bot names no webhook and no
/// channel (the controller's `notifications.channel`), ci-gone only a channel; and three
/// `notifyOnly` policies for the same signal (decision 239): ci-watch names nothing, ci-watch-down
/// a channel the Web API answers 500 for, ci-watch-gone one it refuses (`ok:false`).
fn bot_policies() -> String {
    let watch = |name: &str, slack: &str| {
        format!(
            r#"---
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: {name}
  namespace: autoguardrails
spec:
  mode: Auto
  actions: [notifyOnly]
  match:
    sources: [CostAnomaly]
    accountIds: ["123456789012"]
    minImpactUsd: 100
  scope:
    principals:
      - {{ kind: IamRole, arn: "arn:aws:iam::123456789012:role/ops" }}
  deny:
    actions: ["ec2:RunInstances"]
  quarantine:
    ttl: 1h
    cooldown: 1h
  notify:
    slack: {slack}
"#
        )
    };
    let policies = BOT_POLICIES
        .replace(
            "      webhookSecretRef: { name: unused-webhook, key: url }\n      channelHint: C0GONE\n",
            "      channelHint: C0GONE\n",
        )
        .replace(
            "    slack:\n      webhookSecretRef: { name: unused-webhook, key: url }\n",
            "    slack: {}\n",
        );
    assert!(!policies.contains("webhookSecretRef"), "{policies}");
    format!(
        "{policies}{}{}{}",
        watch("ci-watch", "{}"),
        watch("ci-watch-down", "{ channelHint: C0DOWN }"),
        watch("ci-watch-gone", "{ channelHint: C0GONE }"),
    )
}

fn actions_block(message: &Value) -> Option<&Value> {
    message["blocks"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "actions"))
}

fn record_of<'a>(q: &'a Value, event: &str) -> &'a Value {
    q["status"]["notifications"]
        .as_array()
        .and_then(|records| records.iter().find(|r| r["event"] == event))
        .unwrap_or(&Value::Null)
}

/// A running binary with the approval webhook and Slack interactions on, its configuration
/// changed by `edit`, the Web API at `api_url`, `policies` applied and Ready, and one
/// PendingApproval Quarantine for each of ci-bot and ci-gone (`name`, `gone`).
struct BotCluster {
    _emulator: kube_emulator::Emulator,
    admin: PathBuf,
    alice: PathBuf,
    controller: crate::support::binary::ControllerProcess,
    http: reqwest::Client,
    ops: String,
    signals_port: u16,
    name: String,
    gone: String,
}

async fn bot_cluster(
    tag: &str,
    api_url: &str,
    response_url_prefixes: &[String],
    policies: &str,
    edit: impl Fn(String) -> String,
) -> BotCluster {
    let (emulator, admin) = approvals_cluster(vec![kube_emulator::TokenEntry::new(
        "token-alice",
        "alice",
        "uid-alice",
        &["approvers"],
    )])
    .await;
    let alice = emulator.kubeconfig_for("alice", "token-alice").unwrap();
    // The policies still name a webhook (the schema asks for one); with `postWith: bot` the
    // worker does not use it: it points at a closed port.
    ok(
        &admin,
        &[
            "create",
            "secret",
            "generic",
            "unused-webhook",
            "-n",
            NS,
            "--from-literal=url=http://127.0.0.1:9/hook",
        ],
    );
    let dir = std::env::temp_dir().join(format!("agr-slack-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics_port, signals_port, webhook_port) = (free_port(), free_port(), free_port());
    let config = write_config(
        &dir,
        metrics_port,
        signals_port,
        webhook_port,
        response_url_prefixes,
        api_url,
    );
    let text = edit(std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, text).unwrap();
    let controller =
        crate::support::binary::spawn_controller_with_env(&admin, &config, NS, &dir, &[], &[]);
    let http = crate::support::binary::http_client();
    let ops = format!("http://127.0.0.1:{metrics_port}");
    wait_for("/readyz", Duration::from_secs(60), || async {
        matches!(http.get(format!("{ops}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let (applied, out, err) = kubectl(
        &admin,
        &["apply", "-f", "-"],
        Some(&webhook_configuration(webhook_port)),
    );
    assert!(applied, "{out}{err}");
    let (applied, out, err) = kubectl(&admin, &["apply", "-f", "-"], Some(policies));
    assert!(applied, "{out}{err}");
    let names = policies
        .split("\nmetadata:\n  name: ")
        .skip(1)
        .filter_map(|rest| rest.lines().next());
    for policy in names {
        ok(
            &admin,
            &[
                "wait",
                "-n",
                NS,
                "--for=condition=Ready",
                &format!("guardrailpolicy/{policy}"),
                "--timeout=60s",
            ],
        );
    }
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/signals/eventbridge-anomaly.json")).unwrap();
    event["account"] = Value::String(ACCOUNT.into());
    event["detail"]["rootCauses"][0]["linkedAccount"] = Value::String(ACCOUNT.into());
    let (status, outcome, reason) = crate::support::binary::post_event(
        &http,
        &format!("http://127.0.0.1:{signals_port}/events"),
        API_KEY,
        &event,
    )
    .await;
    assert!(status < 300, "{status} {outcome} {reason}");
    let mut name = String::new();
    let mut gone = String::new();
    wait_for("two quarantines", Duration::from_secs(60), || {
        name = quarantine_of(&admin, "ci-bot");
        gone = quarantine_of(&admin, "ci-gone");
        let both = !name.is_empty() && !gone.is_empty();
        async move { both }
    })
    .await;
    wait_phase(&admin, &name, "PendingApproval").await;
    BotCluster {
        _emulator: emulator,
        admin,
        alice,
        controller,
        http,
        ops,
        signals_port,
        name,
        gone,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_posts_each_message_and_updates_the_earlier_ones_in_place_when_kubectl_acts() {
    // The first update after the approval meets a 429 and two 500s (the client's three tries),
    // so the worker retries it a round later; the one after the release is refused for good.
    let api = bot_api(vec![
        (429, Some(1), json!({"ok": false, "error": "ratelimited"})),
        (500, None, json!({"ok": false, "error": "internal_error"})),
        (500, None, json!({"ok": false, "error": "internal_error"})),
        (200, None, json!({"ok": true})),
        (
            200,
            None,
            json!({"ok": false, "error": "message_not_found"}),
        ),
    ])
    .await;
    let BotCluster {
        _emulator,
        admin,
        alice,
        controller,
        http,
        ops,
        name,
        gone,
        ..
    } = bot_cluster(
        "bot",
        &api.url,
        &["http://127.0.0.1:9/".to_string()],
        &bot_policies(),
        |text| {
        let text = text.replace(
            "notifications:\n  enabled: false\n",
            "notifications:\n  enabled: true\n  postWith: bot\n  channel: C0DEFAULT\n  initialBackoff: 1s\n  slack: {initialBackoff: 200ms, maxAttempts: 3}\n",
        );
        assert!(text.contains("postWith: bot"));
        text
    },
    )
    .await;

    // Posted with the bot token to the default channel, with the buttons; where it lives is kept.
    wait_for(
        "the posted message in status",
        Duration::from_secs(30),
        || {
            let q = status_of(&admin, &name);
            let done = record_of(&q, "PendingApproval")["message"]["ts"].is_string();
            async move { done }
        },
    )
    .await;
    let q = status_of(&admin, &name);
    let pending = record_of(&q, "PendingApproval")["message"].clone();
    assert_eq!(pending["channel"], "C0DEFAULT", "{q}");
    // ci-bot names no webhook and no channel (decision 238): the controller's channel.
    let posts = api.calls("chat.postMessage");
    let first = posts
        .iter()
        .find(|p| p["channel"] == "C0DEFAULT" && p.to_string().contains(name.as_str()))
        .unwrap()
        .clone();
    assert!(actions_block(&first).is_some(), "{first}");
    assert!(
        api.calls
            .lock()
            .unwrap()
            .iter()
            .all(|(_, auth, _)| auth == "Bearer xoxb-e2e-token")
    );
    // The channel Slack refuses: given up at once (ok:false is permanent), said in status.
    wait_for("the refused post recorded", Duration::from_secs(30), || {
        let q = status_of(&admin, &gone);
        let record = record_of(&q, "PendingApproval");
        let done = record["state"] == "Failed"
            && record["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("channel_not_found"));
        async move { done }
    })
    .await;
    assert!(record_of(&status_of(&admin, &gone), "PendingApproval")["message"].is_null());

    // notifyOnly with the bot (decision 239): ci-watch (no webhook, no channel) is posted to the
    // controller's channel with the bot token; ci-watch-down meets HTTP 500 on each of the
    // client's three tries and ci-watch-gone `ok:false channel_not_found` at once: both are
    // failures said in a Warning Event, the metric and the audit record, never a webhook post.
    let only = |policy: &str, outcome: &str| {
        format!(
            "autoguardrails_notify_only_total{{outcome=\"{outcome}\",policy=\"autoguardrails/{policy}\"}} "
        )
    };
    for (policy, outcome) in [
        ("ci-watch", "sent"),
        ("ci-watch-down", "failed"),
        ("ci-watch-gone", "failed"),
    ] {
        wait_for(
            &format!("the {policy} announcement"),
            Duration::from_secs(60),
            || {
                let (http, ops, line) = (http.clone(), ops.clone(), only(policy, outcome));
                async move { metric_value(&http, &ops, &line).await == 1.0 }
            },
        )
        .await;
    }
    let announced: Vec<Value> = api
        .calls("chat.postMessage")
        .into_iter()
        .filter(|p| p.to_string().contains("(notify only)"))
        .collect();
    let to = |channel: &str| announced.iter().filter(|p| p["channel"] == channel).count();
    assert_eq!(
        (to("C0DEFAULT"), to("C0DOWN"), to("C0GONE")),
        (1, 3, 1),
        "{announced:?}"
    );
    let watch = announced
        .iter()
        .find(|p| p["channel"] == "C0DEFAULT")
        .unwrap();
    assert!(
        watch["text"]
            .as_str()
            .is_some_and(|t| t.contains("autoguardrails/ci-watch") && t.contains("No quarantine")),
        "{watch}"
    );
    assert!(actions_block(watch).is_none(), "{watch}");
    let policy_events = |reason: &str, policy: &str| -> Vec<String> {
        let events: Value =
            serde_json::from_str(&ok(&admin, &["get", "events", "-n", NS, "-o", "json"])).unwrap();
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["reason"] == reason
                    && (e["regarding"]["name"] == policy || e["involvedObject"]["name"] == policy)
            })
            .map(|e| {
                format!(
                    "{} {}",
                    e["type"].as_str().unwrap_or_default(),
                    e["note"]
                        .as_str()
                        .or(e["message"].as_str())
                        .unwrap_or_default()
                )
            })
            .collect()
    };
    for (policy, reason, text) in [
        ("ci-watch", "NotifyOnly", "Slack message sent"),
        ("ci-watch-down", "NotifyOnlyFailed", "internal_error"),
        ("ci-watch-gone", "NotifyOnlyFailed", "channel_not_found"),
    ] {
        wait_for(
            &format!("the {reason} Event of {policy}"),
            Duration::from_secs(30),
            || {
                let found = policy_events(reason, policy)
                    .iter()
                    .any(|e| e.contains(text));
                async move { found }
            },
        )
        .await;
    }
    assert!(
        policy_events("NotifyOnlyFailed", "ci-watch-down")
            .iter()
            .all(|e| e.starts_with("Warning")),
        "failures are Warnings"
    );
    let audit_file = controller.log.parent().unwrap().join("audit.jsonl");
    for (policy, text) in [
        ("ci-watch", "Slack message sent"),
        ("ci-watch-down", "internal_error"),
        ("ci-watch-gone", "channel_not_found"),
    ] {
        wait_for(
            &format!("the notifyOnly audit record of {policy}"),
            Duration::from_secs(30),
            || {
                let found = std::fs::read_to_string(&audit_file).is_ok_and(|lines| {
                    lines.lines().any(|line| {
                        serde_json::from_str::<Value>(line).is_ok_and(|r| {
                            r["event"] == "NotifyOnly"
                                && r["policy"] == format!("autoguardrails/{policy}").as_str()
                                && r["message"].as_str().is_some_and(|m| m.contains(text))
                        })
                    })
                });
                async move { found }
            },
        )
        .await;
    }

    // alice approves with kubectl: the Activated message is posted, and the PendingApproval
    // message is updated in place without its buttons, after a 429 and two 500s.
    ok(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{name}"),
            "autoguardrails.io/approve=alice: runaway CI job",
        ],
    );
    wait_phase(&admin, &name, "Active").await;
    wait_for(
        "the update of the first message",
        Duration::from_secs(60),
        || {
            let q = status_of(&admin, &name);
            let done = record_of(&q, "PendingApproval")["message"]["updatedFor"].is_string();
            async move { done }
        },
    )
    .await;
    let updates = api.calls("chat.update");
    assert!(updates.len() >= 4, "{updates:?}");
    let last = updates.last().unwrap();
    assert_eq!(
        (&last["channel"], &last["ts"]),
        (&pending["channel"], &pending["ts"])
    );
    assert!(actions_block(last).is_none(), "buttons removed: {last}");
    assert!(
        last.to_string().contains("Since then: *Activated*"),
        "{last}"
    );
    let metric =
        |outcome: &str| format!("autoguardrails_slack_deliveries_total{{outcome=\"{outcome}\"}}");
    assert_eq!(
        metric_value(&http, &ops, &metric("update_retrying")).await,
        1.0
    );
    assert_eq!(metric_value(&http, &ops, &metric("updated")).await, 1.0);
    let q = status_of(&admin, &name);
    let activated = record_of(&q, "Activated")["message"].clone();
    assert!(
        activated["ts"].is_string() && activated["ts"] != pending["ts"],
        "{q}"
    );
    let posted_activated = api
        .calls("chat.postMessage")
        .into_iter()
        .find(|p| p["channel"] == "C0DEFAULT" && p.to_string().contains("Extend"))
        .unwrap();
    assert!(actions_block(&posted_activated).is_some());

    // Released by kubectl: the Activated message loses its Extend/Release buttons.
    ok(
        &alice,
        &[
            "annotate",
            "-n",
            NS,
            &format!("quarantine/{name}"),
            "autoguardrails.io/release=alice: fixed",
        ],
    );
    wait_phase(&admin, &name, "Released").await;
    wait_for(
        "the update of the Activated message",
        Duration::from_secs(60),
        || {
            let q = status_of(&admin, &name);
            let done = record_of(&q, "Activated")["message"]["updatedFor"].is_string();
            async move { done }
        },
    )
    .await;
    let update = api
        .calls("chat.update")
        .into_iter()
        .rfind(|u| u["ts"] == activated["ts"])
        .unwrap();
    assert!(actions_block(&update).is_none(), "{update}");
    assert!(
        update.to_string().contains("Since then: *Released*"),
        "{update}"
    );
    // That update was refused for good: given up, counted, an Event, an audit record.
    assert_eq!(
        metric_value(&http, &ops, &metric("update_failed")).await,
        1.0
    );
    let audit = controller.log.parent().unwrap().join("audit.jsonl");
    let audited = |event: &'static str, quarantine: String, text: &'static str| {
        let audit = audit.clone();
        move || {
            let found = std::fs::read_to_string(&audit).is_ok_and(|lines| {
                lines.lines().any(|line| {
                    serde_json::from_str::<Value>(line).is_ok_and(|r| {
                        r["event"] == event
                            && r["quarantine"]["name"] == quarantine.as_str()
                            && r["message"].as_str().is_some_and(|m| m.contains(text))
                    })
                })
            });
            async move { found }
        }
    };
    wait_for(
        "the given-up update in the audit trail",
        Duration::from_secs(30),
        audited(
            "SlackMessageUpdateFailed",
            name.clone(),
            "message_not_found",
        ),
    )
    .await;
    wait_for(
        "the given-up post in the audit trail",
        Duration::from_secs(30),
        audited("SlackMessageFailed", gone.clone(), "channel_not_found"),
    )
    .await;
    let events = ok(&admin, &["get", "events", "-n", NS, "-o", "json"]);
    assert!(events.contains("MessageUpdateFailed"), "{events}");
    // The PendingApproval message was updated once more for nothing: it was done already.
    assert_eq!(
        api.calls("chat.update")
            .iter()
            .filter(|u| u["ts"] == pending["ts"])
            .count(),
        4,
        "three failed tries and one update"
    );
    drop(controller);
}

/// Form-encodes a payload as Slack sends interactions.
fn form(payload: &Value) -> String {
    let mut form = String::from("payload=");
    for byte in payload.to_string().bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            form.push(byte as char);
        } else {
            form.push_str(&format!("%{byte:02X}"));
        }
    }
    form
}

/// A `block_actions` click with this `trigger_id`.
fn click_with_trigger(
    user: &str,
    verb: &str,
    quarantine: &Value,
    response_url: &str,
    trigger: &str,
) -> String {
    let value = json!({
        "ns": quarantine["metadata"]["namespace"],
        "name": quarantine["metadata"]["name"],
        "uid": quarantine["metadata"]["uid"],
    })
    .to_string();
    form(&json!({
        "type": "block_actions",
        "user": {"id": user, "username": format!("{user}-name"), "team_id": "T0E2E"},
        "team": {"id": "T0E2E", "domain": "example"},
        "trigger_id": trigger,
        "response_url": response_url,
        "actions": [{
            "action_id": format!("autoguardrails.{verb}"),
            "block_id": "autoguardrails-actions",
            "value": value,
            "type": "button",
            "action_ts": format!("1700000002.{}", trigger.len())
        }]
    }))
}

/// The `view_submission` Slack sends when `user` submits `view` (as opened) with `note`.
fn submission(user: &str, view: &Value, note: &str) -> String {
    form(&json!({
        "type": "view_submission",
        "team": {"id": "T0E2E", "domain": "example"},
        "user": {"id": user, "username": format!("{user}-name"), "team_id": "T0E2E"},
        "api_app_id": "A0E2E",
        "trigger_id": "456.789.def",
        "view": {
            "id": "V0E2E",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": {"note": {"note": {"type": "plain_text_input", "value": note}}}}
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_asks_for_a_note_in_a_modal_and_the_signed_submission_acts_with_it() {
    let api = bot_api(Vec::new()).await;
    let (answer_url, received) = receiver().await;
    let prefix = answer_url.trim_end_matches("answer").to_string();
    let cluster = bot_cluster("modal", &api.url, &[prefix], BOT_POLICIES, |text| {
        let text = text.replace(
            "  emailCacheTtl: 10m\n",
            "  emailCacheTtl: 10m\n  noteModal: true\n",
        );
        assert!(text.contains("noteModal: true"));
        text
    })
    .await;
    let (admin, http, ops) = (&cluster.admin, &cluster.http, &cluster.ops);
    let url = format!(
        "http://127.0.0.1:{}/slack/interactions",
        cluster.signals_port
    );
    let metric =
        |outcome: &str| format!("autoguardrails_slack_interactions_total{{outcome=\"{outcome}\"}}");
    let object = status_of(admin, &cluster.name);

    // The click opens the modal with its trigger and acts on nothing yet.
    let click = click_with_trigger("U0ALICE", "approve", &object, &answer_url, "123.1.abc");
    assert_eq!(post_signed(http, &url, &click).await, 200);
    let mut view = Value::Null;
    wait_for("views.open", Duration::from_secs(30), || {
        view = api
            .calls("views.open")
            .into_iter()
            .find(|call| call["trigger_id"] == "123.1.abc")
            .map(|call| call["view"].clone())
            .unwrap_or(Value::Null);
        let done = !view.is_null();
        async move { done }
    })
    .await;
    assert_eq!(view["callback_id"], "autoguardrails.note");
    assert!(
        api.calls
            .lock()
            .unwrap()
            .iter()
            .all(|(_, auth, _)| auth == "Bearer xoxb-e2e-token")
    );
    // The counter moves once views.open has answered, a moment after the receiver saw the call.
    let mut opened = 0.0;
    for _ in 0..300 {
        opened = metric_value(http, ops, &metric("modal_opened")).await;
        if opened != 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(opened, 1.0);
    assert_eq!(
        status_of(admin, &cluster.name)["status"]["phase"],
        "PendingApproval"
    );
    assert!(received.lock().unwrap().is_empty());

    // A submission signed with another secret, or replayed, is refused; nothing changes.
    let body = submission("U0ALICE", &view, "budget owner agreed\nsee INC-42");
    let timestamp = now();
    assert_eq!(
        post(
            http,
            &url,
            timestamp,
            &sign_with("not-the-secret", timestamp, &body),
            &body
        )
        .await,
        401
    );
    // The signed submission: acted on as alice, verified, with the note.
    let signature = sign(timestamp, &body);
    assert_eq!(post(http, &url, timestamp, &signature, &body).await, 200);
    assert_eq!(
        post(http, &url, timestamp, &signature, &body).await,
        401,
        "replay"
    );
    wait_phase(admin, &cluster.name, "Active").await;
    // (the handled annotation is removed; its value is in the history entry)
    let q = status_of(admin, &cluster.name);
    let approved = q["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "Approved")
        .unwrap()
        .clone();
    assert_eq!(approved["actor"], "alice", "{approved}");
    assert_eq!(approved["channel"], "slack", "{approved}");
    assert!(
        approved["message"]
            .as_str()
            .unwrap()
            .contains("budget owner agreed see INC-42"),
        "{approved}"
    );
    let answer = answer_with(&received, "approved Quarantine").await;
    assert_eq!(answer["replace_original"], true);
    // The audit record has the note, the verified actor and the channel.
    let audit = cluster.controller.log.parent().unwrap().join("audit.jsonl");
    wait_for("the audit record", Duration::from_secs(30), || {
        let found = std::fs::read_to_string(&audit).is_ok_and(|text| {
            text.lines().any(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|r| {
                    r["event"] == "Approved"
                        && r["actor"]["name"] == "alice"
                        && r["actor"]["verified"] == true
                        && r["actor"]["channel"] == "slack"
                        && r["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("budget owner agreed"))
                })
            })
        });
        async move { found }
    })
    .await;

    // The modal cannot be opened (the trigger expired): the click acts without a note.
    let other = status_of(admin, &cluster.gone);
    let click = click_with_trigger("U0ALICE", "reject", &other, &answer_url, "expired");
    assert_eq!(post_signed(http, &url, &click).await, 200);
    wait_phase(admin, &cluster.gone, "Rejected").await;
    let rejected = status_of(admin, &cluster.gone)["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "Rejected")
        .unwrap()
        .clone();
    assert_eq!(
        (&rejected["actor"], &rejected["channel"]),
        (&json!("alice"), &json!("slack")),
        "{rejected}"
    );
    assert!(
        rejected["message"]
            .as_str()
            .unwrap()
            .contains("reject from Slack"),
        "{rejected}"
    );
    assert_eq!(metric_value(http, ops, &metric("modal_failed")).await, 1.0);
    // An unknown user's note is refused like a click (this Web API has no users.info, so the
    // e-mail look-up fails closed), and nothing changes.
    let view_for_gone = json!({"callback_id": "autoguardrails.note", "private_metadata": json!({
        "verb": "release",
        "target": {"ns": NS, "name": cluster.name, "uid": q["metadata"]["uid"]},
        "response_url": answer_url,
    }).to_string()});
    let body = submission("U0NOBODY", &view_for_gone, "let me");
    assert_eq!(post_signed(http, &url, &body).await, 200);
    let refused = answer_with(&received, "Could not release").await;
    assert_eq!(refused["response_type"], "ephemeral", "{refused}");
    assert_eq!(status_of(admin, &cluster.name)["status"]["phase"], "Active");
}
