//! The anomaly poller through the real Cost Explorer SDK against a local stub that answers
//! `AWSInsightsIndexService.GetAnomalies` (moto lacks it) with the documented JSON: paging and
//! its bound, the request shape, request counting, de-duplication with earlier runs and pushes,
//! throttling, and the same normalisation as pushed alerts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use autoguardrails::aws::costexplorer::{CostExplorer, SdkCostExplorer};
use autoguardrails::aws::sdk::{SdkSettings, load_base_config};
use autoguardrails::controller::intake::{IntakeError, IntakeReport, SignalIntake};
use autoguardrails::controller::poller::{self, Poller, PollerSettings, SubmittedSignals};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::metrics::Metrics;
use axum::http::{HeaderMap, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const TARGET: &str = "AWSInsightsIndexService.GetAnomalies";
const MONITOR_A: &str =
    "arn:aws:ce::111111111111:anomalymonitor/aaaaaaaa-1111-4ea0-84cc-918a97d736ef";
const MONITOR_B: &str =
    "arn:aws:ce::333333333333:anomalymonitor/bbbbbbbb-2222-4ea0-84cc-918a97d736ef";
const NOW: &str = "2026-11-23T12:00:00Z";

/// The stub's state: pages per monitor, recorded requests, and a failure switch.
#[derive(Default)]
struct StubState {
    pages: HashMap<String, Vec<Vec<Value>>>,
    requests: Vec<Value>,
    targets: Vec<String>,
    throttle: bool,
}

type Shared = Arc<Mutex<StubState>>;

fn anomaly(id: &str, monitor: &str, account: &str, impact: f64) -> Value {
    json!({
        "AnomalyId": id,
        "AnomalyStartDate": "2026-11-21",
        "AnomalyEndDate": "2026-11-22",
        "DimensionValue": "Amazon Elastic Compute Cloud - Compute",
        "RootCauses": [{
            "Service": "Amazon Elastic Compute Cloud - Compute",
            "Region": "ap-northeast-1",
            "LinkedAccount": account,
            "LinkedAccountName": "dev",
            "UsageType": "APN1-BoxUsage:p4d.24xlarge",
            "Impact": { "Contribution": impact }
        }],
        "AnomalyScore": { "MaxScore": 0.91, "CurrentScore": 0.87 },
        "Impact": {
            "MaxImpact": impact / 2.0, "TotalImpact": impact,
            "TotalActualSpend": impact + 150.0, "TotalExpectedSpend": 150.0,
            "TotalImpactPercentage": 600.0
        },
        "MonitorArn": monitor
    })
}

async fn handle(
    state: Shared,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap, String) {
    let mut answer_headers = HeaderMap::new();
    answer_headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut state = state.lock().unwrap();
    state.targets.push(target.clone());
    state.requests.push(request.clone());
    if target != TARGET {
        return (
            StatusCode::BAD_REQUEST,
            answer_headers,
            json!({"__type": "UnknownOperationException", "message": target}).to_string(),
        );
    }
    if state.throttle {
        return (
            StatusCode::BAD_REQUEST,
            answer_headers,
            json!({"__type": "LimitExceededException", "message": "Rate exceeded"}).to_string(),
        );
    }
    let monitor = request["MonitorArn"].as_str().unwrap_or("");
    let Some(pages) = state.pages.get(monitor) else {
        return (
            StatusCode::BAD_REQUEST,
            answer_headers,
            json!({"__type": "UnknownMonitorException", "message": "no such monitor"}).to_string(),
        );
    };
    let index: usize = request["NextPageToken"]
        .as_str()
        .and_then(|t| t.strip_prefix("page-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let anomalies = pages.get(index).cloned().unwrap_or_default();
    let mut answer = json!({ "Anomalies": anomalies });
    if index + 1 < pages.len() {
        answer["NextPageToken"] = json!(format!("page-{}", index + 1));
    }
    (StatusCode::OK, answer_headers, answer.to_string())
}

async fn stub(state: Shared) -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            handle(state.clone(), headers, body)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn client(url: &str) -> Arc<dyn CostExplorer> {
    let config = load_base_config(&SdkSettings {
        endpoint_url: Some(url.to_string()),
        region: "us-east-1".into(),
        max_attempts: 0,
        rate_limit: None,
        static_credentials: Some(("testing".into(), "testing".into())),
    })
    .await;
    Arc::new(SdkCostExplorer::new(&config))
}

#[derive(Default)]
struct RecordingIntake {
    signals: Mutex<Vec<CostSignal>>,
    fail: Mutex<bool>,
}

#[async_trait]
impl SignalIntake for RecordingIntake {
    async fn submit(&self, signal: &CostSignal) -> Result<IntakeReport, IntakeError> {
        if *self.fail.lock().unwrap() {
            return Err(IntakeError::Unavailable("caches not synced".into()));
        }
        self.signals.lock().unwrap().push(signal.clone());
        Ok(IntakeReport::default())
    }
}

struct Setup {
    stub: Shared,
    intake: Arc<RecordingIntake>,
    metrics: Arc<Metrics>,
    submitted: Arc<SubmittedSignals>,
    poller: Poller,
}

async fn setup(pages: Vec<(&str, Vec<Vec<Value>>)>, settings: PollerSettings) -> Setup {
    let stub_state: Shared = Arc::new(Mutex::new(StubState::default()));
    stub_state.lock().unwrap().pages = pages
        .into_iter()
        .map(|(monitor, pages)| (monitor.to_string(), pages))
        .collect();
    let url = stub(stub_state.clone()).await;
    let intake = Arc::new(RecordingIntake::default());
    let metrics = Arc::new(Metrics::new().unwrap());
    let submitted = Arc::new(SubmittedSignals::new(1000));
    let poller = Poller::new(
        settings,
        client(&url).await,
        intake.clone(),
        metrics.clone(),
        submitted.clone(),
    );
    Setup {
        stub: stub_state,
        intake,
        metrics,
        submitted,
        poller,
    }
}

fn settings(monitors: &[&str]) -> PollerSettings {
    PollerSettings {
        monitor_arns: monitors.iter().map(|m| m.to_string()).collect(),
        max_pages_per_monitor: 3,
        ..PollerSettings::default()
    }
}

fn requests_counted(metrics: &Metrics, outcome: &str) -> u64 {
    metrics
        .cost_explorer_requests
        .with_label_values(&["GetAnomalies", outcome])
        .get()
}

#[tokio::test]
async fn polls_every_monitor_page_by_page_and_skips_what_was_submitted() {
    let s = setup(
        vec![
            (
                MONITOR_A,
                vec![
                    vec![
                        anomaly("a-1", MONITOR_A, "222222222222", 912.4),
                        anomaly("a-2", MONITOR_A, "222222222222", 50.0),
                    ],
                    vec![anomaly("a-3", MONITOR_A, "444444444444", 300.0)],
                ],
            ),
            (
                MONITOR_B,
                vec![vec![anomaly("b-1", MONITOR_B, "333333333333", 75.5)]],
            ),
        ],
        settings(&[MONITOR_A, MONITOR_B]),
    )
    .await;
    let now: Timestamp = NOW.parse().unwrap();
    let report = s.poller.poll_once(now).await;
    assert_eq!(report.requests, 3);
    assert_eq!(report.anomalies, 4);
    assert_eq!(report.accepted, 4);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(requests_counted(&s.metrics, "ok"), 3);
    let ids: Vec<String> = s
        .intake
        .signals
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.id.clone())
        .collect();
    assert_eq!(ids, ["a-1", "a-2", "a-3", "b-1"]);

    {
        let stub = s.stub.lock().unwrap();
        assert!(stub.targets.iter().all(|t| t == TARGET));
        let first = &stub.requests[0];
        assert_eq!(first["MonitorArn"], MONITOR_A);
        assert_eq!(first["DateInterval"]["StartDate"], "2026-11-20");
        assert_eq!(first["DateInterval"]["EndDate"], "2026-11-23");
        assert_eq!(first["MaxResults"], 100);
        assert!(first.get("NextPageToken").is_none());
        assert!(first.get("TotalImpact").is_none());
        assert_eq!(stub.requests[1]["NextPageToken"], "page-1");
        assert_eq!(stub.requests[2]["MonitorArn"], MONITOR_B);
    }

    // the next run costs the same requests but submits nothing again
    let report = s.poller.poll_once(now).await;
    assert_eq!(report.requests, 3);
    assert_eq!((report.accepted, report.skipped), (0, 4));
    assert_eq!(s.intake.signals.lock().unwrap().len(), 4);
    assert_eq!(requests_counted(&s.metrics, "ok"), 6);
    assert_eq!(
        s.metrics
            .signals
            .with_label_values(&["poller", "skipped"])
            .get(),
        4
    );

    // an anomaly whose impact grew is submitted again (it may now cross a policy's threshold)
    s.stub.lock().unwrap().pages.get_mut(MONITOR_B).unwrap()[0][0] =
        anomaly("b-1", MONITOR_B, "333333333333", 500.0);
    let report = s.poller.poll_once(now).await;
    assert_eq!((report.accepted, report.skipped), (1, 3));
    assert_eq!(
        s.intake.signals.lock().unwrap().last().unwrap().impact_usd,
        500.0
    );
}

#[tokio::test]
async fn pages_per_run_are_bounded_and_filters_are_sent() {
    let pages: Vec<Vec<Value>> = (0..5)
        .map(|i| {
            vec![anomaly(
                &format!("p-{i}"),
                MONITOR_A,
                "222222222222",
                10.0 + f64::from(i),
            )]
        })
        .collect();
    let mut bounded = settings(&[MONITOR_A]);
    bounded.max_pages_per_monitor = 2;
    bounded.page_size = 1;
    bounded.min_total_impact_usd = Some(5.0);
    bounded.lookback_days = 10;
    let s = setup(vec![(MONITOR_A, pages)], bounded).await;
    let report = s.poller.poll_once(NOW.parse().unwrap()).await;
    assert_eq!(report.requests, 2);
    assert_eq!(report.accepted, 2);
    assert_eq!(report.truncated_monitors, [MONITOR_A]);
    assert_eq!(requests_counted(&s.metrics, "ok"), 2);
    let stub = s.stub.lock().unwrap();
    assert_eq!(stub.requests.len(), 2);
    assert_eq!(stub.requests[0]["MaxResults"], 1);
    assert_eq!(stub.requests[0]["DateInterval"]["StartDate"], "2026-11-13");
    assert_eq!(
        stub.requests[0]["TotalImpact"]["NumericOperator"],
        "GREATER_THAN_OR_EQUAL"
    );
    assert_eq!(stub.requests[0]["TotalImpact"]["StartValue"], 5.0);
}

#[tokio::test]
async fn throttling_stops_the_run_and_is_counted() {
    let s = setup(
        vec![
            (
                MONITOR_A,
                vec![
                    vec![anomaly("a-1", MONITOR_A, "222222222222", 10.0)],
                    vec![],
                ],
            ),
            (
                MONITOR_B,
                vec![vec![anomaly("b-1", MONITOR_B, "333333333333", 10.0)]],
            ),
        ],
        settings(&[
            MONITOR_A,
            MONITOR_B,
            "arn:aws:ce::555555555555:anomalymonitor/unknown",
        ]),
    )
    .await;
    s.stub.lock().unwrap().throttle = true;
    let report = s.poller.poll_once(NOW.parse().unwrap()).await;
    assert_eq!(
        report.requests, 3,
        "one request per monitor, no retry within the run"
    );
    assert_eq!(report.errors.len(), 3);
    assert!(
        report.errors[0].contains("throttled"),
        "{:?}",
        report.errors
    );
    assert_eq!(requests_counted(&s.metrics, "throttled"), 3);
    assert!(s.intake.signals.lock().unwrap().is_empty());

    s.stub.lock().unwrap().throttle = false;
    let report = s.poller.poll_once(NOW.parse().unwrap()).await;
    assert_eq!(report.accepted, 2);
    assert_eq!(
        report.errors.len(),
        1,
        "the unknown monitor: {:?}",
        report.errors
    );
    assert_eq!(requests_counted(&s.metrics, "invalid"), 1);
}

#[tokio::test]
async fn pushed_signals_are_not_polled_again_and_intake_failures_retry_next_run() {
    let s = setup(
        vec![(
            MONITOR_A,
            vec![vec![
                anomaly("pushed", MONITOR_A, "222222222222", 100.0),
                anomaly("new", MONITOR_A, "222222222222", 100.0),
            ]],
        )],
        settings(&[MONITOR_A]),
    )
    .await;
    // what the /sns endpoint records after intake accepted the pushed alert
    s.submitted.record("pushed", 100.0);
    *s.intake.fail.lock().unwrap() = true;
    let report = s.poller.poll_once(NOW.parse().unwrap()).await;
    assert_eq!((report.skipped, report.retry_later), (1, 1));
    *s.intake.fail.lock().unwrap() = false;
    let report = s.poller.poll_once(NOW.parse().unwrap()).await;
    assert_eq!((report.skipped, report.accepted), (1, 1));
    let ids: Vec<String> = s
        .intake
        .signals
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.id.clone())
        .collect();
    assert_eq!(ids, ["new"]);
}

#[tokio::test]
async fn polled_anomalies_normalise_like_pushed_alerts() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/signals/anomaly-immediate.json")).unwrap();
    let pushed = autoguardrails::controller::signal::parse::parse(
        &fixture.to_string(),
        &autoguardrails::controller::signal::parse::Hint::default(),
    )
    .unwrap();
    let monitor = fixture["monitorArn"].as_str().unwrap();
    let mut polled_json = anomaly(&pushed.id, monitor, "222222222222", pushed.impact_usd);
    polled_json["AnomalyEndDate"] = json!("2026-11-20");
    let s = setup(
        vec![(monitor, vec![vec![polled_json]])],
        settings(&[monitor]),
    )
    .await;
    s.poller.poll_once(NOW.parse().unwrap()).await;
    let polled = s.intake.signals.lock().unwrap()[0].clone();
    assert_eq!(polled.id, pushed.id);
    assert_eq!(polled.source, pushed.source);
    assert_eq!(polled.account_id, pushed.account_id);
    assert_eq!(polled.impact_usd, pushed.impact_usd);
    assert_eq!(polled.service, pushed.service);
    assert_eq!(polled.region, pushed.region);
    assert_eq!(polled.observed_at, pushed.observed_at);
    assert_eq!(polled.details_url, pushed.details_url);

    // several linked accounts: the monitor's account is used
    let mut multi = anomaly("multi", MONITOR_B, "222222222222", 10.0);
    multi["RootCauses"].as_array_mut().unwrap().push(json!({
        "Service": "AWS Lambda", "LinkedAccount": "444444444444", "Impact": {"Contribution": 1.0}
    }));
    let s = setup(vec![(MONITOR_B, vec![vec![multi]])], settings(&[MONITOR_B])).await;
    s.poller.poll_once(NOW.parse().unwrap()).await;
    assert_eq!(
        s.intake.signals.lock().unwrap()[0].account_id,
        "333333333333"
    );
}

#[tokio::test]
async fn run_polls_after_the_initial_delay_and_stops_on_shutdown() {
    let stub_state: Shared = Arc::new(Mutex::new(StubState::default()));
    stub_state.lock().unwrap().pages.insert(
        MONITOR_A.to_string(),
        vec![vec![anomaly("r-1", MONITOR_A, "222222222222", 10.0)]],
    );
    let url = stub(stub_state.clone()).await;
    let intake = Arc::new(RecordingIntake::default());
    let metrics = Arc::new(Metrics::new().unwrap());
    let mut run_settings = settings(&[MONITOR_A]);
    run_settings.initial_delay = SignedDuration::from_millis(50);
    run_settings.interval = SignedDuration::from_hours(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(poller::run(
        run_settings,
        client(&url).await,
        intake.clone(),
        metrics.clone(),
        Arc::new(SubmittedSignals::new(10)),
        async move {
            let _ = stopped.await;
        },
    ));
    for _ in 0..200 {
        if !intake.signals.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("run returns on shutdown")
        .unwrap();
    assert_eq!(intake.signals.lock().unwrap().len(), 1);
    assert_eq!(
        stub_state.lock().unwrap().requests.len(),
        1,
        "one run within the hour"
    );
    assert_eq!(requests_counted(&metrics, "ok"), 1);

    // no monitors: returns at once, no request
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        poller::run(
            PollerSettings::default(),
            client(&url).await,
            intake.clone(),
            metrics.clone(),
            Arc::new(SubmittedSignals::new(10)),
            std::future::pending(),
        ),
    )
    .await
    .expect("disabled poller returns");
}
