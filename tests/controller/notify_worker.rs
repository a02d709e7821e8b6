//! The notification worker with the real kube client and kube-runtime against the API emulator,
//! the real Slack webhook client against a loopback receiver, and status written the way the
//! lifecycle controller writes it (the real state machine, a resourceVersion-guarded merge patch of
//! its own fields). Checks: one delivery per entry, none again after a worker restart, old entries
//! skipped, Slack down → condition + Warning Event + metric while the controller's writes go on,
//! recovery in order, and a permanently bad webhook.

use crate::support::quarantines;
use crate::support::slack_receiver;

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::controller::crd::conditions::NOTIFIED;
use autoguardrails::controller::crd::{DeliveryState, Mode, Quarantine, QuarantineStatus};
use autoguardrails::controller::lifecycle::{self, Context, Event, State};
use autoguardrails::controller::notify::slack::SlackSettings;
use autoguardrails::controller::notify::worker::{
    NotifySettings, REASON_DELIVERED, REASON_DELIVERY_FAILED, REASON_DELIVERY_RETRYING,
    REASON_OLD_ENTRIES_SKIPPED, Worker,
};
use autoguardrails::metrics::Metrics;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::Emulator;
use quarantines::{NAMESPACE, spec};
use slack_receiver::{Reply, SlackReceiver};
use tokio::sync::oneshot;

const QUARANTINE_CRD: &str = include_str!("../../crds/quarantines.autoguardrails.io.yaml");
const WAIT: Duration = Duration::from_secs(30);

fn settings() -> NotifySettings {
    NotifySettings {
        namespaces: vec![NAMESPACE.into()],
        cluster: Some("test".into()),
        initial_backoff: Duration::from_millis(300),
        max_backoff: Duration::from_secs(1),
        webhook_cache_ttl: Duration::from_secs(1),
        slack: SlackSettings {
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(2),
        },
        ..NotifySettings::default()
    }
}

struct Setup {
    _emulator: Emulator,
    client: kube::Client,
    receiver: SlackReceiver,
}

async fn setup() -> Setup {
    let emulator = Emulator::start().await.unwrap();
    let client = emulator.client().await.unwrap();
    emulator.apply_crd_yaml(QUARANTINE_CRD).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();
    let receiver = SlackReceiver::start().await;
    put_secret(&client, &receiver.url).await;
    Setup {
        _emulator: emulator,
        client,
        receiver,
    }
}

async fn put_secret(client: &kube::Client, url: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "slack-webhook"},
        "stringData": {"url": url},
        "data": {"url": base64_encode(url)},
    }))
    .unwrap();
    secrets
        .patch(
            "slack-webhook",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A running worker; dropping the sender stops it.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

fn start_worker(client: &kube::Client, settings: NotifySettings) -> Running {
    let metrics = Arc::new(Metrics::new().unwrap());
    let worker = Worker::new(client.clone(), settings, metrics.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running {
        stop,
        task,
        metrics,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("worker stops on shutdown")
            .unwrap();
    }

    fn deliveries(&self, outcome: &str) -> u64 {
        self.metrics
            .slack_deliveries
            .with_label_values(&[outcome])
            .get()
    }
}

/// Creates a Quarantine and writes its first lifecycle status, as the controller does.
async fn create(client: &kube::Client, name: &str, mode: Mode, now: Timestamp) -> State {
    let api: Api<Quarantine> = Api::namespaced(client.clone(), NAMESPACE);
    let quarantine = Quarantine::new(name, spec(mode, now));
    api.create(&PostParams::default(), &quarantine)
        .await
        .unwrap();
    let context = Context::from_spec(&quarantine.spec, now, false).unwrap();
    let state = lifecycle::create(&context, now).state;
    controller_write(client, name, &state).await;
    state
}

/// Applies events with the state machine and writes the result as the controller would.
async fn controller_step(
    client: &kube::Client,
    name: &str,
    state: State,
    events: &[Event],
) -> State {
    let api: Api<Quarantine> = Api::namespaced(client.clone(), NAMESPACE);
    let object = api.get(name).await.unwrap();
    let context = Context::from_spec(&object.spec, Timestamp::now(), false).unwrap();
    let state = lifecycle::step_all(state, &context, events, Timestamp::now()).state;
    controller_write(client, name, &state).await;
    state
}

/// The controller's status write: only its own fields, guarded by resourceVersion, retried on 409.
/// Returns how long it took (it must never wait for Slack).
async fn controller_write(client: &kube::Client, name: &str, state: &State) -> Duration {
    let api: Api<Quarantine> = Api::namespaced(client.clone(), NAMESPACE);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let current = api.get(name).await.unwrap();
        let mut status = QuarantineStatus::default();
        state.apply_to_status(&mut status);
        let mut ours = serde_json::to_value(&status).unwrap();
        let object = ours.as_object_mut().unwrap();
        object.remove("notifications");
        object.remove("conditions");
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": ours,
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return started.elapsed(),
            Err(kube::Error::Api(response)) if response.code == 409 => continue,
            Err(error) => panic!("controller status write failed: {error}"),
        }
    }
    panic!("controller status write conflicted 10 times");
}

async fn get(client: &kube::Client, name: &str) -> Quarantine {
    Api::<Quarantine>::namespaced(client.clone(), NAMESPACE)
        .get(name)
        .await
        .unwrap()
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn headers(receiver: &SlackReceiver) -> Vec<String> {
    receiver
        .delivered()
        .iter()
        .map(|body| {
            body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn notified(quarantine: &Quarantine) -> Option<(String, String)> {
    quarantine
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == NOTIFIED)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn states(quarantine: &Quarantine) -> Vec<(String, DeliveryState)> {
    quarantine
        .status
        .as_ref()
        .map(|s| {
            s.notifications
                .iter()
                .map(|r| (r.event.clone(), r.state))
                .collect()
        })
        .unwrap_or_default()
}

fn approve() -> Event {
    Event::Approve {
        actor: "alice".into(),
        note: "confirmed".into(),
    }
}

fn release() -> Event {
    Event::Release {
        actor: "bob".into(),
        note: "fixed".into(),
    }
}

#[tokio::test]
async fn one_delivery_per_entry_and_none_again_after_a_restart() {
    let setup = setup().await;
    let client = &setup.client;
    let receiver = &setup.receiver;
    let worker = start_worker(client, settings());

    let state = create(client, "spike-a", Mode::Manual, Timestamp::now()).await;
    wait_for("the approval request", || async {
        receiver.delivered().len() == 1
            && states(&get(client, "spike-a").await)
                == [("PendingApproval".to_string(), DeliveryState::Delivered)]
    })
    .await;
    let quarantine = get(client, "spike-a").await;
    assert_eq!(
        notified(&quarantine),
        Some(("True".into(), REASON_DELIVERED.into()))
    );

    // Approve: the controller records Approved + Activated; only Activated warrants a message.
    let state = controller_step(client, "spike-a", state, &[approve()]).await;
    wait_for("the activation message", || async {
        receiver.delivered().len() == 2
    })
    .await;

    // Restart: a new worker (new metrics, no memory) sees both entries recorded as Delivered.
    worker.stop().await;
    let worker = start_worker(client, settings());
    // Give the new worker time to list, reconcile and (wrongly) send; then add an entry that it
    // must send, which proves it is running and caught up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 2, "no re-delivery after restart");
    let state = controller_step(client, "spike-a", state, &[release()]).await;
    controller_step(client, "spike-a", state, &[Event::ReleaseSucceeded]).await;
    wait_for("the release message", || async {
        receiver.delivered().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let headers = headers(receiver);
    assert_eq!(headers.len(), 3, "{headers:?}");
    assert!(headers[0].contains("Approval needed"), "{headers:?}");
    assert!(headers[1].contains("Deny enforced"), "{headers:?}");
    assert!(headers[2].contains("Deny released"), "{headers:?}");
    assert_eq!(
        receiver.received().len(),
        3,
        "exactly one request per entry"
    );
    assert_eq!(worker.deliveries("delivered"), 1);
    let quarantine = get(client, "spike-a").await;
    assert_eq!(
        states(&quarantine),
        [
            ("PendingApproval".to_string(), DeliveryState::Delivered),
            ("Activated".to_string(), DeliveryState::Delivered),
            ("Released".to_string(), DeliveryState::Delivered),
        ]
    );
    // The controller's fields survived every worker write.
    let status = quarantine.status.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Released"));
    assert_eq!(status.approved_by.as_deref(), Some("alice"));
    assert!(status.history.iter().any(|e| e.event == "ReleaseRequested"));
    // The channel hint rides along.
    assert_eq!(receiver.delivered()[0]["channel"], "#cost-alerts");
    worker.stop().await;
}

#[tokio::test]
async fn entries_already_old_when_first_seen_are_skipped_not_sent() {
    let setup = setup().await;
    let client = &setup.client;
    let an_hour_ago = Timestamp::now() - SignedDuration::from_hours(1);
    create(client, "old-one", Mode::Auto, an_hour_ago).await;
    let worker = start_worker(client, settings());
    wait_for("the skip record", || async {
        states(&get(client, "old-one").await) == [("Activated".to_string(), DeliveryState::Skipped)]
    })
    .await;
    let quarantine = get(client, "old-one").await;
    assert_eq!(
        notified(&quarantine),
        Some(("True".into(), REASON_OLD_ENTRIES_SKIPPED.into()))
    );
    assert!(setup.receiver.received().is_empty());
    assert_eq!(worker.deliveries("skipped"), 1);
    worker.stop().await;
}

#[tokio::test]
async fn slack_outage_shows_as_condition_event_and_metric_and_recovers_in_order() {
    let setup = setup().await;
    let client = &setup.client;
    let receiver = &setup.receiver;
    receiver.set_default(Some(Reply::ServerError));
    let worker = start_worker(client, settings());

    let state = create(client, "down", Mode::Auto, Timestamp::now()).await;
    wait_for("Notified=False DeliveryRetrying", || async {
        notified(&get(client, "down").await)
            == Some(("False".into(), REASON_DELIVERY_RETRYING.into()))
    })
    .await;
    assert!(worker.deliveries("retrying") >= 1);
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), NAMESPACE);
    let warnings: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(REASON_DELIVERY_RETRYING)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("down")
        })
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one Warning Event (a series when repeated)"
    );
    let note = warnings[0].note.clone().unwrap_or_default();
    assert!(note.contains("HTTP 500"), "{note}");
    assert!(!note.contains(receiver.secret()), "{note}");

    // Enforcement and release go on while Slack is down: the controller's writes are not held up.
    let mut slowest = Duration::ZERO;
    let state = {
        let api: Api<Quarantine> = Api::namespaced(client.clone(), NAMESPACE);
        let object = api.get("down").await.unwrap();
        let context = Context::from_spec(&object.spec, Timestamp::now(), false).unwrap();
        let next = lifecycle::step(state, &context, &release(), Timestamp::now()).state;
        slowest = slowest.max(controller_write(client, "down", &next).await);
        let done =
            lifecycle::step(next, &context, &Event::ReleaseSucceeded, Timestamp::now()).state;
        slowest = slowest.max(controller_write(client, "down", &done).await);
        done
    };
    println!("slowest controller status write while Slack was down: {slowest:?}");
    assert_eq!(
        get(client, "down")
            .await
            .status
            .unwrap()
            .phase
            .map(|p| p.as_str()),
        Some("Released")
    );
    let record = get(client, "down").await.status.unwrap().notifications;
    assert!(
        record.iter().all(|r| r.state == DeliveryState::Retrying),
        "{record:?}"
    );
    assert!(record.iter().all(|r| {
        !r.last_error
            .clone()
            .unwrap_or_default()
            .contains(receiver.secret())
    }));
    assert!(receiver.delivered().is_empty());

    // Slack recovers: both messages arrive, once each, in lifecycle order.
    receiver.set_default(None);
    wait_for("delivery after recovery", || async {
        let quarantine = get(client, "down").await;
        states(&quarantine)
            == [
                ("Activated".to_string(), DeliveryState::Delivered),
                ("Released".to_string(), DeliveryState::Delivered),
            ]
            && notified(&quarantine) == Some(("True".into(), REASON_DELIVERED.into()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let headers = headers(receiver);
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(headers[0].contains("Deny enforced"));
    assert!(headers[1].contains("Deny released"));
    assert_eq!(worker.deliveries("delivered"), 2);
    // The controller's history is intact (times are stored in whole seconds).
    let stored: Vec<(String, String, String)> = get(client, "down")
        .await
        .status
        .unwrap()
        .history
        .into_iter()
        .map(|e| (e.event, e.actor, e.message))
        .collect();
    let written: Vec<(String, String, String)> = state
        .history
        .into_iter()
        .map(|e| (e.event, e.actor, e.message))
        .collect();
    assert_eq!(stored, written);
    worker.stop().await;
}

#[tokio::test]
async fn a_bad_webhook_fails_permanently_and_is_not_retried() {
    let setup = setup().await;
    let client = &setup.client;
    let receiver = &setup.receiver;
    receiver.set_default(Some(Reply::Status(404, "no_service")));
    let worker = start_worker(client, settings());
    create(client, "bad-hook", Mode::Manual, Timestamp::now()).await;
    wait_for("Notified=False DeliveryFailed", || async {
        notified(&get(client, "bad-hook").await)
            == Some(("False".into(), REASON_DELIVERY_FAILED.into()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a permanent error is not retried"
    );
    let quarantine = get(client, "bad-hook").await;
    let records = quarantine.status.unwrap().notifications;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, DeliveryState::Failed);
    assert!(
        records[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no_service")
    );
    assert_eq!(worker.deliveries("failed"), 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_missing_secret_is_retried_until_it_appears() {
    let setup = setup().await;
    let client = &setup.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    secrets
        .delete("slack-webhook", &Default::default())
        .await
        .unwrap();
    let worker = start_worker(client, settings());
    create(client, "no-secret", Mode::DryRun, Timestamp::now()).await;
    wait_for("Notified=False for the missing Secret", || async {
        let quarantine = get(client, "no-secret").await;
        notified(&quarantine) == Some(("False".into(), REASON_DELIVERY_RETRYING.into()))
            && quarantine.status.unwrap().notifications[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("secret_not_found"))
    })
    .await;
    put_secret(client, &setup.receiver.url).await;
    wait_for("delivery once the Secret exists", || async {
        setup.receiver.delivered().len() == 1
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn the_release_of_a_deleted_quarantine_is_still_announced_once() {
    let setup = setup().await;
    let client = &setup.client;
    let receiver = &setup.receiver;
    // Retries of the reconcile path are a minute away: only the deletion path can deliver in time.
    let worker = start_worker(
        client,
        NotifySettings {
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
            ..settings()
        },
    );
    let api: Api<Quarantine> = Api::namespaced(client.clone(), NAMESPACE);
    let mut quarantine = Quarantine::new("deleted", spec(Mode::Auto, Timestamp::now()));
    quarantine.metadata.finalizers = Some(vec!["autoguardrails.io/release".into()]);
    api.create(&PostParams::default(), &quarantine)
        .await
        .unwrap();
    let context = Context::from_spec(&quarantine.spec, Timestamp::now(), false).unwrap();
    let state = lifecycle::create(&context, Timestamp::now()).state;
    controller_write(client, "deleted", &state).await;
    wait_for("the activation message", || async {
        receiver.delivered().len() == 1
    })
    .await;

    // Deletion: the finalizer holds the object while the controller releases.
    receiver.script([Reply::ServerError, Reply::ServerError]);
    api.delete("deleted", &Default::default()).await.unwrap();
    let state = controller_step(client, "deleted", state, &[Event::Deleted]).await;
    controller_step(client, "deleted", state, &[Event::ReleaseSucceeded]).await;
    wait_for("the failed first try of the release message", || async {
        states(&get(client, "deleted").await).last()
            == Some(&("Released".to_string(), DeliveryState::Retrying))
    })
    .await;
    // The controller drops its finalizer; the object is gone before the retry is due.
    api.patch(
        "deleted",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("the release message after deletion", || async {
        receiver.delivered().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let headers = headers(receiver);
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(headers[1].contains("Deny released"), "{headers:?}");
    assert!(api.get_opt("deleted").await.unwrap().is_none());
    worker.stop().await;
}

#[tokio::test]
async fn with_slack_interactions_the_message_carries_the_buttons_of_its_phase() {
    let setup = setup().await;
    let client = &setup.client;
    let receiver = &setup.receiver;
    let worker = start_worker(
        client,
        NotifySettings {
            buttons: true,
            ..settings()
        },
    );
    let state = create(client, "spike-buttons", Mode::Manual, Timestamp::now()).await;
    wait_for("the approval request", || async {
        receiver.delivered().len() == 1
    })
    .await;
    let uid = get(client, "spike-buttons").await.metadata.uid.unwrap();
    let buttons = |message: &serde_json::Value| -> Vec<(String, String)> {
        message["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|block| block["type"] == "actions")
            .flat_map(|block| block["elements"].as_array().unwrap().clone())
            .map(|button| {
                (
                    button["action_id"].as_str().unwrap().to_string(),
                    button["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let value = format!(r#"{{"ns":"{NAMESPACE}","name":"spike-buttons","uid":"{uid}"}}"#);
    assert_eq!(
        buttons(&receiver.delivered()[0]),
        [
            ("autoguardrails.approve".to_string(), value.clone()),
            ("autoguardrails.reject".to_string(), value.clone()),
        ]
    );
    controller_step(client, "spike-buttons", state, &[approve()]).await;
    wait_for("the activation message", || async {
        receiver.delivered().len() == 2
    })
    .await;
    assert_eq!(
        buttons(&receiver.delivered()[1]),
        [
            ("autoguardrails.extend".to_string(), value.clone()),
            ("autoguardrails.release".to_string(), value),
        ]
    );
    worker.stop().await;
}
