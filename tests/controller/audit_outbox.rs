//! The audit outbox on the real controllers (kube-runtime against the emulator, in-memory IAM)
//! with the real DynamoDB sink on moto: an Auto quarantine's transitions and a drift repair reach
//! the table and leave the status; while the table is unreachable the entries wait in status and
//! the backlog metrics show them; a deleted Quarantine whose records cannot be stored is released
//! anyway and let go after the bounded wait, with a Warning Event; dry-run records too.

use std::sync::Arc;
use std::time::Duration;

use crate::support::audit::{Switch, create_audit_table, dynamodb, port_of, primary_ids};
use crate::support::controller::{ACCOUNT, Harness, anomaly, policy_yaml, role_ref, test_settings};
use crate::support::moto::{MotoServer, unique};

use autoguardrails::audit::dynamodb::DynamoDbAudit;
use autoguardrails::audit::{AuditQuery, AuditReader};
use autoguardrails::controller::audit::AuditSettings;
use autoguardrails::controller::crd::Phase;
use autoguardrails::controller::reconcile::Settings;

fn audit_settings(sink: DynamoDbAudit, deletion_wait: Duration) -> Settings {
    let timings = AuditSettings {
        flush_interval: jiff::SignedDuration::from_millis(100),
        max_backoff: jiff::SignedDuration::from_millis(500),
        deletion_wait: jiff::SignedDuration::try_from(deletion_wait).unwrap(),
        ..AuditSettings::default()
    };
    Settings {
        audit: timings.outlet(Some(Arc::new(sink))),
        ..test_settings()
    }
}

async fn events_in_table(reader: &DynamoDbAudit, name: &str) -> Vec<String> {
    reader
        .query(&AuditQuery {
            quarantine: Some((crate::support::controller::NS.into(), name.into())),
            ..AuditQuery::default()
        })
        .await
        .map(|records| records.into_iter().map(|r| r.event).collect())
        .unwrap_or_default()
}

fn outbox(q: &autoguardrails::controller::crd::Quarantine) -> usize {
    q.status
        .as_ref()
        .and_then(|s| s.audit.as_ref())
        .map_or(0, |a| a.entries.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_and_drift_repairs_reach_the_table_and_leave_the_status() {
    let moto = MotoServer::shared();
    let client = dynamodb(moto).await;
    let table = unique("outbox");
    create_audit_table(&client, &table).await;
    let switch = Switch::start(port_of(&moto.url)).await;
    let config = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    let through_switch =
        autoguardrails::aws::factory::dynamodb_client(&config, None, Some(&switch.url));
    let sink = DynamoDbAudit::new(through_switch, &table, None);
    let reader = DynamoDbAudit::new(client.clone(), &table, None);
    let h = Harness::start_with(audit_settings(sink, Duration::from_secs(300))).await;
    h.apply_policy(&policy_yaml("auto-audit", "Auto", "1h", &["dev-ci"]))
        .await;
    let report = h.submit(&anomaly("audit-1", ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    h.eventually("the activation in the table", || async {
        events_in_table(&reader, &name).await == ["Activated"]
    })
    .await;
    h.eventually("an empty outbox", || async {
        h.quarantine(&name).await.is_some_and(|q| outbox(&q) == 0)
    })
    .await;
    let q = h.quarantine(&name).await.unwrap();
    assert_eq!(q.status.unwrap().audit.unwrap().flushed_below, 1);

    // The table goes away; a drift repair waits in status and shows in the backlog metrics.
    switch.set_up(false);
    let policy_arn = h.attached("dev-ci")[0].clone();
    h.iam
        .outside(|o| o.detach(&role_ref("dev-ci"), &policy_arn));
    h.eventually("the repair", || async { h.attached("dev-ci").len() == 1 })
        .await;
    h.eventually("the repair in the outbox", || async {
        h.quarantine(&name).await.is_some_and(|q| outbox(&q) >= 1)
    })
    .await;
    h.eventually("the backlog metric", || async {
        h.metrics.audit_backlog_records.get() >= 1
    })
    .await;
    // The round counts the backlog first, then (after a quiet moment, decision 253) tries.
    h.eventually("a failed store counted", || async {
        h.metrics.audit_records.with_label_values(&["failed"]).get() >= 1
    })
    .await;
    assert_eq!(events_in_table(&reader, &name).await, ["Activated"]);

    // Back: the repair arrives once, the outbox empties, the backlog is zero.
    switch.set_up(true);
    h.eventually("the repair in the table", || async {
        events_in_table(&reader, &name).await == ["Activated", "DriftRepaired"]
    })
    .await;
    h.eventually("an empty outbox and backlog", || async {
        h.quarantine(&name).await.is_some_and(|q| outbox(&q) == 0)
            && h.metrics.audit_backlog_records.get() == 0
    })
    .await;
    let ids = primary_ids(&client, &table).await;
    let mut unique_ids = ids.clone();
    unique_ids.dedup();
    assert_eq!(ids, unique_ids, "no record twice");

    // Each record names the request ids of the IAM writes it reports (decision 234): the
    // activation the first attach's, the repair the second's.
    let attaches: Vec<String> = h
        .iam
        .write_log()
        .into_iter()
        .filter(|w| w.operation == autoguardrails::aws::Operation::AttachRolePolicy)
        .map(|w| w.request_id.unwrap())
        .collect();
    assert_eq!(attaches.len(), 2);
    let records = reader
        .query(&AuditQuery {
            quarantine: Some((crate::support::controller::NS.into(), name.clone())),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        records[0].request_ids.contains(&attaches[0]),
        "{:?}",
        records[0]
    );
    assert!(!records[0].request_ids.contains(&attaches[1]));
    assert_eq!(records[1].request_ids, [attaches[1].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_quarantine_is_released_and_let_go_after_the_bounded_wait() {
    let moto = MotoServer::shared();
    let table = unique("outbox-gone");
    create_audit_table(&dynamodb(moto).await, &table).await;
    let switch = Switch::start(port_of(&moto.url)).await;
    let config = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    let client = autoguardrails::aws::factory::dynamodb_client(&config, None, Some(&switch.url));
    let h = Harness::start_with(audit_settings(
        DynamoDbAudit::new(client, &table, None),
        Duration::from_secs(2),
    ))
    .await;
    h.apply_policy(&policy_yaml("auto-gone", "Auto", "1h", &["batch"]))
        .await;
    let report = h.submit(&anomaly("audit-gone", ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::Active).await;
    switch.set_up(false);
    h.delete_quarantine(&name).await;
    // The release is not held by the audit: the deny goes, then the object after the wait.
    h.eventually("the deny released", || async {
        h.attached("batch").is_empty()
    })
    .await;
    h.eventually("the object gone", || async {
        h.quarantine(&name).await.is_none()
    })
    .await;
    let events = h.events(&name).await;
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "AuditFlushAbandoned"),
        "{events:?}"
    );
    assert!(
        h.metrics
            .audit_records
            .with_label_values(&["abandoned"])
            .get()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_decisions_are_recorded_without_any_iam_write() {
    let moto = MotoServer::shared();
    let client = dynamodb(moto).await;
    let table = unique("outbox-dry");
    create_audit_table(&client, &table).await;
    let reader = DynamoDbAudit::new(client.clone(), &table, None);
    let h = Harness::start_with(audit_settings(
        DynamoDbAudit::new(client, &table, None),
        Duration::from_secs(300),
    ))
    .await;
    h.apply_policy(&policy_yaml("dry-audit", "DryRun", "1h", &["etl"]))
        .await;
    let writes_before = h.iam.write_count();
    let report = h.submit(&anomaly("audit-dry", ACCOUNT, 500.0)).await;
    let name = report.created().next().unwrap().quarantine.clone().unwrap();
    h.wait_phase(&name, Phase::DryRun).await;
    h.eventually("the plan in the table", || async {
        events_in_table(&reader, &name).await == ["Planned"]
    })
    .await;
    let records = reader
        .query(&AuditQuery {
            principal: Some(crate::support::controller::role("etl")),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].mode.as_deref(), Some("DryRun"));
    assert_eq!(records[0].signal.as_ref().unwrap().id, "audit-dry");
    assert_eq!(h.iam.write_count(), writes_before, "no IAM write");
}

/// The controller's own outbox (decision 225) on the emulator: two replicas appending at once
/// lose nothing (resourceVersion conflicts are retried, every record numbered once), a flush
/// empties it into the store, and every call it makes is allowed by the chart's RBAC when an
/// audit store is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_outbox_takes_concurrent_appends_and_its_calls_are_allowed_by_the_chart() {
    use autoguardrails::audit::AuditSink;
    use autoguardrails::audit::jsonl::{Destination, JsonLinesSink};
    use autoguardrails::controller::audit::controller_outbox::{
        ControllerOutbox, controller_actor, record,
    };
    use axum::http::{HeaderValue, header::USER_AGENT};

    const AGENT: &str = "autoguardrails-outbox-under-test";
    let h = Harness::start().await;
    let start = h.emulator.requests().len();
    let mut config = h.emulator.config().await.unwrap();
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(AGENT)));
    let client = kube::Client::try_from(config).unwrap();
    let metrics = Arc::new(autoguardrails::metrics::Metrics::new().unwrap());
    let ns = crate::support::controller::NS;
    let a = ControllerOutbox::start(client.clone(), ns, "c", metrics.clone());
    let b = ControllerOutbox::start(client.clone(), ns, "c", metrics.clone());
    let batch = |who: &str| -> Vec<_> {
        (0..10)
            .map(|i| {
                record(
                    "c",
                    "SignalUnmatched",
                    controller_actor(),
                    format!("{who} {i}"),
                )
            })
            .collect()
    };
    let (x, y) = tokio::join!(
        async {
            for _ in 0..3 {
                a.append_now(batch("a")).await.unwrap();
            }
        },
        async {
            for _ in 0..3 {
                b.append_now(batch("b")).await.unwrap();
            }
        }
    );
    let _ = (x, y);
    // The queued path too: handed over without waiting, written by the writer task.
    a.append(record(
        "c",
        "SlackUserUnmapped",
        controller_actor(),
        "queued".into(),
    ));
    h.eventually("the queued record written", || async {
        a.pending().await.unwrap().len() == 61
    })
    .await;
    let pending = a.pending().await.unwrap();
    let mut sequences: Vec<u64> = pending.iter().map(|r| r.sequence).collect();
    sequences.sort();
    assert_eq!(
        sequences,
        (0..61).collect::<Vec<u64>>(),
        "each numbered once"
    );
    let mut ids: Vec<&str> = pending.iter().map(|r| r.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 61);

    let dir = std::env::temp_dir().join(format!("agr-own-outbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&file);
    let sink = JsonLinesSink::new(Destination::File(file.clone()));
    let (stored, left, _) = b.flush(&sink as &dyn AuditSink).await.unwrap();
    assert_eq!((stored, left), (61, 0));
    assert!(a.pending().await.unwrap().is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 61);
    assert_eq!(b.flush(&sink).await.unwrap().0, 0, "nothing twice");

    let ours: Vec<_> = h.emulator.requests()[start..]
        .iter()
        .filter(|r| r.user_agent == AGENT)
        .cloned()
        .collect();
    assert!(!ours.is_empty());
    let with_audit = crate::support::rbac::render_chart(
        r#"{"controller":{"config":{"audit":{"table":"autoguardrails-audit"}}}}"#,
    );
    let manifests = crate::support::rbac::parse_manifests(&with_audit);
    let rules = crate::support::rbac::Rbac::for_service_account(
        &manifests,
        crate::support::rbac::SERVICE_ACCOUNT.0,
        crate::support::rbac::SERVICE_ACCOUNT.1,
    );
    let denied = rules.check(&ours);
    assert!(
        denied.is_empty(),
        "chart RBAC refuses: {}",
        denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let without = crate::support::rbac::parse_manifests(&crate::support::rbac::render_chart("{}"));
    let rules = crate::support::rbac::Rbac::for_service_account(
        &without,
        crate::support::rbac::SERVICE_ACCOUNT.0,
        crate::support::rbac::SERVICE_ACCOUNT.1,
    );
    assert!(
        !rules.check(&ours).is_empty(),
        "without an audit store the chart grants no ConfigMap access"
    );
}

/// Decision 237: records handed to the queue are written before a stop (`drain`), also a burst
/// larger than one batch; when the API server cannot be reached, `drain` gives up after its
/// bound and counts what it could not write as dropped; `append_durably` writes at once, or
/// falls back to the queue when the write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_controller_records_are_written_before_a_stop_and_counted_when_they_cannot_be() {
    use autoguardrails::controller::audit::controller_outbox::{
        ControllerOutbox, controller_actor, record,
    };
    let h = Harness::start().await;
    let client = kube::Client::try_from(h.emulator.config().await.unwrap()).unwrap();
    let metrics = Arc::new(autoguardrails::metrics::Metrics::new().unwrap());
    let ns = crate::support::controller::NS;
    let outbox = ControllerOutbox::start(client, ns, "c", metrics.clone());
    for i in 0..250 {
        outbox.append(record(
            "c",
            "SignalUnmatched",
            controller_actor(),
            format!("q {i}"),
        ));
    }
    assert!(outbox.unwritten() > 0, "handed over, not written yet");
    assert_eq!(outbox.drain(Duration::from_secs(60)).await, 0);
    assert_eq!(outbox.unwritten(), 0);
    // The ConfigMap keeps at most 200 unflushed: the oldest 50 are dropped and counted there.
    let pending = outbox.pending().await.unwrap();
    assert_eq!(pending.len(), 200);
    assert!(pending.iter().any(|r| r.message == "q 249"));
    assert!(
        outbox
            .append_durably(
                record("c", "SlackUserUnmapped", controller_actor(), "now".into()),
                Duration::from_secs(10),
            )
            .await
    );
    assert!(
        outbox
            .pending()
            .await
            .unwrap()
            .iter()
            .any(|r| r.message == "now")
    );

    // No API server: nothing can be written; the stop waits its bound, then counts the loss.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    config.default_namespace = ns.to_string();
    let unreachable = kube::Client::try_from(config).unwrap();
    let lost = Arc::new(autoguardrails::metrics::Metrics::new().unwrap());
    let outbox = ControllerOutbox::start(unreachable, ns, "c", lost.clone());
    assert!(
        !outbox
            .append_durably(
                record("c", "SlackUserUnmapped", controller_actor(), "x".into()),
                Duration::from_secs(2),
            )
            .await,
        "not written: queued instead"
    );
    outbox.append(record(
        "c",
        "SignalUnmatched",
        controller_actor(),
        "y".into(),
    ));
    // A signal's answer waits its bound, is told "not written", and its records stay queued.
    assert!(
        !outbox
            .append_and_wait(
                vec![
                    record("c", "SignalNotActedOn", controller_actor(), "z1".into()),
                    record("c", "SignalNotActedOn", controller_actor(), "z2".into()),
                ],
                Duration::from_millis(300),
            )
            .await,
        "not written within the bound"
    );
    assert_eq!(outbox.unwritten(), 4);
    assert_eq!(outbox.drain(Duration::from_millis(300)).await, 4);
    assert_eq!(lost.audit_records.with_label_values(&["dropped"]).get(), 4);
}

/// A sink that records what it is handed and, on its first call, lets another replica append to
/// the outbox while the flush is storing (the flush's removal then meets a newer ConfigMap).
struct AppendDuringStore {
    seen: std::sync::Mutex<Vec<String>>,
    other: Arc<autoguardrails::controller::audit::controller_outbox::ControllerOutbox>,
    done: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl autoguardrails::audit::AuditSink for AppendDuringStore {
    async fn append(
        &self,
        records: &[autoguardrails::audit::AuditRecord],
    ) -> Result<autoguardrails::audit::Appended, autoguardrails::audit::AuditError> {
        use autoguardrails::controller::audit::controller_outbox::{controller_actor, record};
        self.seen
            .lock()
            .unwrap()
            .extend(records.iter().map(|r| r.message.clone()));
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let late = (0..5)
                .map(|i| {
                    record(
                        "c",
                        "SignalUnmatched",
                        controller_actor(),
                        format!("late {i}"),
                    )
                })
                .collect();
            self.other.append_now(late).await.unwrap();
        }
        Ok(autoguardrails::audit::Appended {
            written: records.len(),
            duplicates: 0,
        })
    }
    fn name(&self) -> &'static str {
        "test"
    }
}

/// Records appended while a flush is storing stay for the next flush, and the stored ones leave:
/// the removal reads the outbox again instead of giving up on the conflict (which used to store
/// the same records again every round while appends kept coming).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_meeting_a_concurrent_append_removes_what_it_stored_and_keeps_the_rest() {
    use autoguardrails::controller::audit::controller_outbox::{
        ControllerOutbox, controller_actor, record,
    };
    let h = Harness::start().await;
    let metrics = Arc::new(autoguardrails::metrics::Metrics::new().unwrap());
    let ns = crate::support::controller::NS;
    let flusher = ControllerOutbox::start(h.client.clone(), ns, "c", metrics.clone());
    let other = ControllerOutbox::start(h.client.clone(), ns, "c", metrics.clone());
    let first = (0..10)
        .map(|i| {
            record(
                "c",
                "SignalUnmatched",
                controller_actor(),
                format!("early {i}"),
            )
        })
        .collect();
    flusher.append_now(first).await.unwrap();
    let sink = AppendDuringStore {
        seen: Default::default(),
        other,
        done: Default::default(),
    };
    let (stored, left, _) = flusher.flush(&sink).await.unwrap();
    assert_eq!(
        (stored, left),
        (10, 5),
        "the ten stored, the five late ones left"
    );
    let pending: Vec<String> = flusher
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(
        pending,
        (0..5).map(|i| format!("late {i}")).collect::<Vec<_>>()
    );
    let (stored, left, _) = flusher.flush(&sink).await.unwrap();
    assert_eq!((stored, left), (5, 0));
    let seen = sink.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        15,
        "each record handed to the store once: {seen:?}"
    );
    assert!(flusher.pending().await.unwrap().is_empty());
}

/// Signals answered at the same time wait for their records together: every caller learns its
/// records are in the ConfigMap, and they share writes (group commit) instead of one guarded
/// read-modify-write each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_at_once_share_outbox_writes_and_each_learns_its_records_are_written() {
    use autoguardrails::controller::audit::controller_outbox::{
        ControllerOutbox, controller_actor, record,
    };
    let h = Harness::start().await;
    let metrics = Arc::new(autoguardrails::metrics::Metrics::new().unwrap());
    let ns = crate::support::controller::NS;
    let outbox = ControllerOutbox::start(h.client.clone(), ns, "c", metrics.clone());
    // Created first, so only the appends below write.
    outbox
        .append_now(vec![record(
            "c",
            "SignalUnmatched",
            controller_actor(),
            "first".into(),
        )])
        .await
        .unwrap();
    let before = h.emulator.requests().len();
    let callers = (0..40).map(|i| {
        let outbox = outbox.clone();
        async move {
            let records = (0..3)
                .map(|j| {
                    record(
                        "c",
                        "SignalNotActedOn",
                        controller_actor(),
                        format!("{i}-{j}"),
                    )
                })
                .collect();
            outbox
                .append_and_wait(records, Duration::from_secs(10))
                .await
        }
    });
    let told = futures::future::join_all(callers).await;
    assert!(
        told.iter().all(|t| *t),
        "every caller told written: {told:?}"
    );
    // Told means in the ConfigMap: read right away, no waiting.
    let pending = outbox.pending().await.unwrap();
    assert_eq!(pending.len(), 1 + 40 * 3);
    let writes = h.emulator.requests()[before..]
        .iter()
        .filter(|r| r.resource == "configmaps" && r.verb == "update")
        .count();
    assert!(
        (1..40).contains(&writes),
        "{writes} ConfigMap writes for 40 callers"
    );
    assert_eq!(outbox.unwritten(), 0);
    // Nothing to write is told at once.
    assert!(
        outbox
            .append_and_wait(Vec::new(), Duration::from_millis(1))
            .await
    );
}
