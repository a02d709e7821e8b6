//! Cost Explorer `GetCostAndUsage` through the real SDK against moto (results seeded with
//! `POST /moto-api/static/ce/cost-and-usage-results`), and an unreachable endpoint.

use std::sync::Mutex;

use autoguardrails::gate::config::{CostExplorerSettings, CostFilter, CostSettings};
use autoguardrails::gate::cost::{self, CostInput};
use autoguardrails::gate::costexplorer::{CostExplorerSource, CostSource, CostSourceError};
use autoguardrails::gate::inputs::InputState;
use jiff::civil::Date;

use super::moto::MotoServer;
use super::support::http;

/// moto hands queued results to whichever request comes first: seed and query under one lock.
pub static MOTO_CE: Mutex<()> = Mutex::new(());

/// Seeds moto with daily results for `amounts` ending the day before `today`.
pub fn seed(moto: &MotoServer, today: Date, amounts: &[f64], estimated_last: usize) {
    let n = amounts.len();
    let results: Vec<serde_json::Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let day = today.checked_sub(jiff::Span::new().days((n - i) as i64)).unwrap();
            serde_json::json!({
                "TimePeriod": {"Start": day.to_string(), "End": day.tomorrow().unwrap().to_string()},
                "Total": {"UnblendedCost": {"Amount": format!("{a}"), "Unit": "USD"}},
                "Groups": [],
                "Estimated": i + estimated_last >= n,
            })
        })
        .collect();
    let body = serde_json::json!({"results": [{"ResultsByTime": results, "DimensionValueAttributes": []}]});
    let port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, text) = http(
        port,
        "POST",
        "/moto-api/static/ce/cost-and-usage-results",
        &body.to_string(),
    )
    .unwrap();
    assert_eq!(status, 201, "{text}");
}

fn settings(url: &str) -> CostExplorerSettings {
    CostExplorerSettings {
        region: "us-east-1".to_string(),
        endpoint_url: Some(url.to_string()),
        metric: "UnblendedCost".to_string(),
        max_attempts: 0,
    }
}

fn creds() -> Option<(String, String)> {
    Some(("testing".to_string(), "testing".to_string()))
}

#[test]
fn daily_costs_come_through_the_sdk_with_estimated_days() {
    let moto = MotoServer::shared();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = runtime.block_on(CostExplorerSource::new(&settings(&moto.url), creds()));
    let today: Date = "2026-03-15".parse().unwrap();
    let mut amounts = vec![100.0; 7];
    amounts.extend([125.0; 7]);
    let filter = CostFilter {
        services: vec!["Amazon Elastic Compute Cloud - Compute".into()],
        linked_accounts: vec!["111122223333".into()],
        tags: [("team".to_string(), vec![super::moto::unique("payments")])].into(),
    };
    let days = {
        let _guard = MOTO_CE.lock().unwrap_or_else(|e| e.into_inner());
        seed(moto, today, &amounts, 2);
        let start = today.checked_sub(jiff::Span::new().days(14)).unwrap();
        runtime
            .block_on(source.daily_costs(&filter, start, today))
            .unwrap()
    };
    assert_eq!(days.len(), 14);
    assert_eq!(days.iter().filter(|d| d.estimated).count(), 2);
    let report = cost::evaluate(&CostInput::Days(days), today, &CostSettings::default());
    assert_eq!(report.wow_change_pct.state, InputState::Partial);
    assert!((report.wow_change_pct.value.unwrap() - 25.0).abs() < 1e-9);
    assert_eq!(report.trend.as_deref(), Some("rising"));
    assert_eq!(report.spike_detected, Some(true));
    assert_eq!(report.estimated_days, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_transport_error() {
    let port = super::support::free_port();
    let source =
        CostExplorerSource::new(&settings(&format!("http://127.0.0.1:{port}")), creds()).await;
    let today: Date = "2026-03-15".parse().unwrap();
    let err = source
        .daily_costs(&CostFilter::default(), "2026-03-01".parse().unwrap(), today)
        .await
        .unwrap_err();
    assert!(matches!(err, CostSourceError::Transport(_)), "{err:?}");
}
