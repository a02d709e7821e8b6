//! The gate against a real Prometheus: the scenarios (healthy, fast burn, slow burn, latency
//! breach, no traffic, counter reset, stale, missing metric), Prometheus down and hung, and the
//! client's handling of NaN/Inf, bad queries, HTTP errors, warnings and auth.

use std::collections::BTreeMap;
use std::time::Duration;

use autoguardrails::cli::gate_command::connect;
use autoguardrails::gate::collect::{Gate, answer_reading};
use autoguardrails::gate::config::PrometheusSettings;
use autoguardrails::gate::decide::Decision;
use autoguardrails::gate::files;
use autoguardrails::gate::inputs::{InputState, REASON_COULD_NOT_EVALUATE, Value};
use autoguardrails::gate::prometheus::{PromQl, PrometheusClient, PrometheusError};
use autoguardrails::gate::rules::{self, Action};
use jiff::Timestamp;

use super::support::{PrometheusServer, prometheus_config, silent_server, stub_server, temp_dir};

async fn gate_for(scenario: &str, url: &str, timeout: Option<f64>) -> Gate {
    let dir = temp_dir(scenario);
    let path = prometheus_config(&dir, url, scenario, "");
    let mut config = files::load_config(&path).unwrap();
    if let Some(t) = timeout {
        config.prometheus.as_mut().unwrap().timeout_seconds = t;
    }
    connect(config, rules::defaults().unwrap()).await.unwrap()
}

async fn decide(scenario: &str) -> Decision {
    let p = PrometheusServer::shared();
    let gate = gate_for(scenario, &p.url, None).await;
    gate.evaluate(
        None,
        Timestamp::from_second(p.now).unwrap(),
        &BTreeMap::new(),
    )
    .await
    .unwrap()
}

fn number(d: &Decision, name: &str) -> f64 {
    match d.signals[name].value {
        Some(Value::Number(n)) => n,
        ref other => panic!("{name} is {other:?} ({:?})", d.signals[name]),
    }
}

fn label(d: &Decision, name: &str) -> String {
    match &d.signals[name].value {
        Some(Value::Label(l)) => l.clone(),
        other => panic!("{name} is {other:?}"),
    }
}

fn expected_budget(p: &PrometheusServer, scenario: &str) -> f64 {
    let ratio = p.scenario(scenario).expected_ratio(30.0 * 1440.0);
    100.0 * (1.0 - ratio / 0.001)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_service_is_allowed_with_the_expected_numbers() {
    let d = decide("healthy").await;
    let p = PrometheusServer::shared();
    assert_eq!(d.verdict.action, Action::Allow, "{:#?}", d.verdict);
    assert_eq!(d.verdict.policy_id, "P008");
    let budget = number(&d, "error_budget_pct");
    assert!(
        (budget - expected_budget(p, "healthy")).abs() < 1.5,
        "budget {budget}"
    );
    assert_eq!(label(&d, "burn_rate"), "low");
    assert_eq!(label(&d, "burn_alert"), "none");
    let burn = number(&d, "burn_rate_value");
    assert!((burn - 0.5).abs() < 0.05, "burn {burn}");
    let p95 = number(&d, "p95_ms");
    assert!((p95 - 428.57).abs() < 5.0, "p95 {p95}");
    assert_eq!(
        d.signals["latency_compliant"].value,
        Some(Value::Bool(true))
    );
    for (name, s) in &d.signals {
        if !name.contains("cost") {
            assert_eq!(s.state, InputState::Ok, "{name}: {s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_burn_pages_and_delays() {
    let d = decide("fast_burn").await;
    assert_eq!(d.verdict.action, Action::Delay, "{:#?}", d.verdict);
    assert_eq!(d.verdict.policy_id, "P004");
    assert_eq!(d.verdict.delay_minutes, 30);
    assert_eq!(label(&d, "burn_rate"), "critical");
    assert_eq!(label(&d, "burn_alert"), "page");
    let pair = &d.slo.pairs[0];
    assert_eq!(pair.firing, Some(true));
    let long = pair.long_burn.value.unwrap();
    assert!((long - 50.0).abs() < 3.0, "1h burn {long}");
    let budget = number(&d, "error_budget_pct");
    let expected = expected_budget(PrometheusServer::shared(), "fast_burn");
    assert!(
        (budget - expected).abs() < 1.5,
        "budget {budget} vs {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_burn_opens_a_ticket_and_the_low_budget_delays() {
    let d = decide("slow_burn").await;
    let expected = expected_budget(PrometheusServer::shared(), "slow_burn");
    let budget = number(&d, "error_budget_pct");
    assert!(
        (budget - expected).abs() < 1.5,
        "budget {budget} vs {expected}"
    );
    assert_eq!(label(&d, "burn_alert"), "ticket");
    assert_eq!(label(&d, "burn_rate"), "medium");
    assert_eq!(
        d.slo.pairs[0].firing,
        Some(false),
        "no page for a slow burn"
    );
    assert_eq!(d.verdict.action, Action::Delay, "{:#?}", d.verdict);
    assert_eq!(d.verdict.policy_id, "P005");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_breach_delays_twenty_minutes() {
    let d = decide("latency").await;
    let p95 = number(&d, "p95_ms");
    assert!((p95 - 941.18).abs() < 10.0, "p95 {p95}");
    assert_eq!(
        d.signals["latency_compliant"].value,
        Some(Value::Bool(false))
    );
    assert_eq!(d.verdict.action, Action::Delay);
    assert_eq!(d.verdict.policy_id, "P007");
    assert_eq!(d.verdict.delay_minutes, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_could_not_evaluate_and_delays() {
    let d = decide("no_traffic").await;
    assert_eq!(d.verdict.action, Action::Delay, "{:#?}", d.verdict);
    assert_eq!(d.verdict.reason_code, REASON_COULD_NOT_EVALUATE);
    assert_eq!(d.verdict.policy_id, "P001");
    assert!(d.verdict.missing.contains(&"error_budget_pct".to_string()));
    let s = &d.signals["error_budget_pct"];
    assert_eq!(s.state, InputState::NoData);
    assert!(s.detail.contains("traffic floor"), "{}", s.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_reset_does_not_distort_the_budget() {
    let d = decide("counter_reset").await;
    let budget = number(&d, "error_budget_pct");
    assert!((budget - 50.0).abs() < 2.0, "budget {budget}");
    assert_eq!(d.verdict.action, Action::Allow, "{:#?}", d.verdict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data_is_not_trusted() {
    let d = decide("stale").await;
    assert_eq!(
        d.signals["error_budget_pct"].state,
        InputState::Stale,
        "{:?}",
        d.signals["error_budget_pct"]
    );
    assert_eq!(d.verdict.action, Action::Delay);
    assert_eq!(d.verdict.reason_code, REASON_COULD_NOT_EVALUATE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_that_does_not_exist_is_no_data() {
    let p = PrometheusServer::shared();
    let dir = temp_dir("missing");
    let path = prometheus_config(&dir, &p.url, "does_not_exist", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http_requests_total", "no_such_metric_total");
    std::fs::write(&path, text).unwrap();
    let gate = connect(
        files::load_config(&path).unwrap(),
        rules::defaults().unwrap(),
    )
    .await
    .unwrap();
    let d = gate
        .evaluate(
            None,
            Timestamp::from_second(p.now).unwrap(),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(d.signals["error_budget_pct"].state, InputState::NoData);
    assert_eq!(d.verdict.action, Action::Delay);
    assert_eq!(d.verdict.reason_code, REASON_COULD_NOT_EVALUATE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_is_an_error_and_delays() {
    let port = super::support::free_port();
    let gate = gate_for("healthy", &format!("http://127.0.0.1:{port}"), Some(2.0)).await;
    let d = gate
        .evaluate(None, Timestamp::now(), &BTreeMap::new())
        .await
        .unwrap();
    let s = &d.signals["error_budget_pct"];
    assert_eq!(s.state, InputState::Error);
    assert!(
        s.detail.contains("could not reach Prometheus"),
        "{}",
        s.detail
    );
    assert_eq!(d.verdict.action, Action::Delay);
    assert_eq!(d.verdict.reason_code, REASON_COULD_NOT_EVALUATE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_that_never_answers_times_out_and_delays() {
    let port = silent_server();
    let gate = gate_for("healthy", &format!("http://127.0.0.1:{port}"), Some(1.0)).await;
    let d = gate
        .evaluate(None, Timestamp::now(), &BTreeMap::new())
        .await
        .unwrap();
    let s = &d.signals["error_budget_pct"];
    assert_eq!(s.state, InputState::Error);
    assert!(s.detail.contains("did not answer within"), "{}", s.detail);
    assert_eq!(d.verdict.action, Action::Delay);
}

fn client(url: &str) -> PrometheusClient {
    PrometheusClient::new(
        &PrometheusSettings {
            url: url.to_string(),
            timeout_seconds: 5.0,
            bearer_token_env: None,
            basic_auth_username: None,
            basic_auth_password_env: None,
            ca_bundle: None,
        },
        &|_| None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reports_nan_inf_bad_queries_and_several_series() {
    let p = PrometheusServer::shared();
    let c = client(&p.url);
    let at = Timestamp::from_second(p.now).unwrap();
    let nan = answer_reading("0/0", c.instant("0/0", at).await);
    assert_eq!(nan.state, InputState::NaN);
    let inf = answer_reading("1/0", c.instant("1/0", at).await);
    assert_eq!(inf.state, InputState::NaN);
    let vector_nan = answer_reading("q", c.instant("vector(0) / vector(0)", at).await);
    assert_eq!(vector_nan.state, InputState::NaN);
    match c.instant("sum(", at).await {
        Err(PrometheusError::BadQuery { error_type, .. }) => assert_eq!(error_type, "bad_data"),
        other => panic!("expected a bad query, got {other:?}"),
    }
    let q = r#"increase(http_requests_total{scenario="healthy"}[1h])"#;
    let several = answer_reading(q, c.instant(q, at).await);
    assert_eq!(several.state, InputState::Error);
    assert!(several.detail.contains("2 series"), "{}", several.detail);
    let q = r#"sum(increase(http_requests_total{scenario="healthy"}[1h]))"#;
    let range = c
        .range(
            q,
            Timestamp::from_second(p.now - 3 * 3600).unwrap(),
            at,
            3600,
        )
        .await
        .unwrap();
    assert_eq!(range.points.len(), 4);
    assert!(
        range.points.iter().all(|(_, v)| (v - 6000.0).abs() < 200.0),
        "{:?}",
        range.points
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_maps_http_errors_keeps_warnings_and_sends_auth() {
    let (port, _) = stub_server(
        422,
        r#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#,
        Duration::ZERO,
    );
    match client(&format!("http://127.0.0.1:{port}"))
        .instant("up", Timestamp::now())
        .await
    {
        Err(PrometheusError::Execution { message, .. }) => assert!(message.contains("timed out")),
        other => panic!("expected 422, got {other:?}"),
    }
    let (port, _) = stub_server(
        503,
        r#"{"status":"error","errorType":"unavailable","error":"not ready"}"#,
        Duration::ZERO,
    );
    match client(&format!("http://127.0.0.1:{port}"))
        .instant("up", Timestamp::now())
        .await
    {
        Err(PrometheusError::Unavailable { status: 503, .. }) => {}
        other => panic!("expected 503, got {other:?}"),
    }
    let (port, seen) = stub_server(
        200,
        r#"{"status":"success","warnings":["PromQL info: metric might not be a counter"],"data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42"]}]}}"#,
        Duration::ZERO,
    );
    let settings = PrometheusSettings {
        url: format!("http://127.0.0.1:{port}/prefix"),
        timeout_seconds: 5.0,
        bearer_token_env: Some("PROM_TOKEN".into()),
        basic_auth_username: None,
        basic_auth_password_env: None,
        ca_bundle: None,
    };
    let c = PrometheusClient::new(&settings, &|k| {
        (k == "PROM_TOKEN").then(|| "s3cret".to_string())
    })
    .unwrap();
    let r = answer_reading("up", c.instant("up", Timestamp::now()).await);
    assert_eq!(r.value, Some(42.0));
    assert!(r.detail.contains("might not be a counter"), "{}", r.detail);
    let head = seen.lock().unwrap()[0].head.clone();
    assert!(
        head.starts_with("GET /prefix/api/v1/query?query=up&time="),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer s3cret"),
        "{head}"
    );
    let basic = PrometheusSettings {
        bearer_token_env: None,
        basic_auth_username: Some("gate".into()),
        basic_auth_password_env: Some("PROM_PASSWORD".into()),
        ..settings.clone()
    };
    let c = PrometheusClient::new(&basic, &|k| {
        (k == "PROM_PASSWORD").then(|| "pw".to_string())
    })
    .unwrap();
    c.instant("up", Timestamp::now()).await.unwrap();
    let head = seen.lock().unwrap()[1].head.clone();
    // base64("gate:pw") = Z2F0ZTpwdw==
    assert!(head.contains("Basic Z2F0ZTpwdw=="), "{head}");
    // Secrets named but not set, and an unreadable CA bundle, are settings errors.
    assert!(matches!(
        PrometheusClient::new(&settings, &|_| None),
        Err(PrometheusError::Settings(_))
    ));
    let bad_ca = PrometheusSettings {
        bearer_token_env: None,
        ca_bundle: Some("/nonexistent/ca.pem".into()),
        ..settings
    };
    assert!(matches!(
        PrometheusClient::new(&bad_ca, &|_| None),
        Err(PrometheusError::Settings(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_replays_the_past_from_range_queries() {
    let p = PrometheusServer::shared();
    let gate = gate_for("fast_burn", &p.url, None).await;
    let decisions = gate
        .backtest(
            None,
            Timestamp::from_second(p.now - 3 * 3600).unwrap(),
            Timestamp::from_second(p.now).unwrap(),
            3600,
        )
        .await
        .unwrap();
    let verdicts: Vec<Action> = decisions.iter().map(|d| d.verdict.action).collect();
    assert_eq!(
        verdicts,
        vec![Action::Allow, Action::Allow, Action::Allow, Action::Delay],
        "{:#?}",
        decisions.last().unwrap().verdict
    );
    // The last step equals the instant evaluation.
    let now = gate
        .evaluate(
            None,
            Timestamp::from_second(p.now).unwrap(),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(now.verdict.policy_id, decisions[3].verdict.policy_id);
}
