//! Payload parsers: a table over every fixture in tests/fixtures/signals, plus proptest.

use autoguardrails::controller::crd::SignalSource;
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::controller::signal::anomaly::render;
use autoguardrails::controller::signal::parse::{
    Format, Hint, MAX_PAYLOAD_BYTES, parse, parse_amount, parse_money, parse_value,
};
use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/signals/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Expected {
    source: SignalSource,
    id: &'static str,
    account: &'static str,
    impact: f64,
    service: Option<&'static str>,
    region: Option<&'static str>,
    budget: Option<&'static str>,
    observed_at: &'static str,
}

fn ok(
    source: SignalSource,
    id: &'static str,
    account: &'static str,
    impact: f64,
    observed_at: &'static str,
) -> Expected {
    Expected {
        source,
        id,
        account,
        impact,
        service: None,
        region: None,
        budget: None,
        observed_at,
    }
}

fn check(name: &str, signal: &CostSignal, e: &Expected) {
    assert_eq!(signal.source, e.source, "{name}");
    assert_eq!(signal.id, e.id, "{name}");
    assert_eq!(signal.account_id, e.account, "{name}");
    assert!(
        (signal.impact_usd - e.impact).abs() < 1e-9,
        "{name}: {}",
        signal.impact_usd
    );
    assert_eq!(signal.service.as_deref(), e.service, "{name}");
    assert_eq!(signal.region.as_deref(), e.region, "{name}");
    assert_eq!(signal.budget_name.as_deref(), e.budget, "{name}");
    assert_eq!(signal.observed_at.to_string(), e.observed_at, "{name}");
    assert!(signal.raw.is_some(), "{name}");
    assert!(signal.summary.is_some(), "{name}");
    signal.validate().unwrap();
}

#[test]
fn every_fixture_parses_to_the_expected_signal() {
    use SignalSource::*;
    let table: Vec<(&str, Expected)> = vec![
        (
            "budget-actual-usd.txt",
            Expected {
                budget: Some("data-export-monthly"),
                ..ok(
                    Budget,
                    "data-export-monthly/2026-11/ACTUAL/>$500.00",
                    "111111111111",
                    75.5,
                    "2026-11-20T00:00:00Z",
                )
            },
        ),
        (
            "budget-forecasted-percent.txt",
            Expected {
                budget: Some("ml-training"),
                ..ok(
                    Budget,
                    "ml-training/2026-11/FORECASTED/>80.00%",
                    "222222222222",
                    234.56,
                    "2026-11-03T00:00:00Z",
                )
            },
        ),
        (
            "budget-usd-code-under.txt",
            Expected {
                budget: Some("sandbox-quarterly"),
                ..ok(
                    Budget,
                    "sandbox-quarterly/2026-Q4/ACTUAL/>50.00%",
                    "111111111111",
                    0.0,
                    "2026-12-01T00:00:00Z",
                )
            },
        ),
        (
            "budget-action-executed.txt",
            Expected {
                budget: Some("data-export-monthly"),
                ..ok(
                    Budget,
                    "data-export-monthly/2026-11-21/ACTUAL/action/5a7c3e2b-1d4f-4c6a-9b8e-0f1e2d3c4b5a",
                    "111111111111",
                    112.4,
                    "2026-11-21T00:00:00Z",
                )
            },
        ),
        (
            "anomaly-immediate.json",
            Expected {
                service: Some("Amazon Elastic Compute Cloud - Compute"),
                region: Some("ap-northeast-1"),
                ..ok(
                    CostAnomaly,
                    "12345678-abcd-ef12-3456-987654321a12",
                    "222222222222",
                    912.4,
                    "2026-11-20T00:00:00Z",
                )
            },
        ),
        (
            "anomaly-multi-account.json",
            Expected {
                service: Some("Amazon SageMaker"),
                region: Some("us-west-2"),
                ..ok(
                    CostAnomaly,
                    "a-multi-0001",
                    "111111111111",
                    5200.0,
                    "2026-11-21T00:00:00Z",
                )
            },
        ),
        (
            "eventbridge-anomaly.json",
            Expected {
                service: Some("Amazon Virtual Private Cloud"),
                region: Some("eu-west-1"),
                ..ok(
                    CostAnomaly,
                    "eb-0000-1111-2222",
                    "111111111111",
                    360.0,
                    "2026-11-20T00:00:00Z",
                )
            },
        ),
    ];
    for (name, expected) in &table {
        let signal =
            parse(&fixture(name), &Hint::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(name, &signal, expected);
    }
    let details = parse(&fixture("budget-actual-usd.txt"), &Hint::default()).unwrap();
    assert_eq!(
        details.details_url.as_deref(),
        Some("https://console.aws.amazon.com/billing/home#/budgets")
    );
    let anomaly = parse(&fixture("anomaly-immediate.json"), &Hint::default()).unwrap();
    assert!(anomaly.details_url.unwrap().contains("/anomalies/12345678"));
    assert!(
        anomaly
            .summary
            .unwrap()
            .contains("APN1-BoxUsage:p4d.24xlarge")
    );
}

#[test]
fn every_rejected_fixture_says_why() {
    let table = [
        ("budget-jpy.txt", "UnsupportedCurrency"),
        ("budget-eur.txt", "UnsupportedCurrency"),
        ("budget-usage.txt", "UnsupportedBudgetType"),
        ("budget-action-pending.txt", "NoCostAmount"),
        ("eventbridge-iam-change.json", "UnsupportedEvent"),
        ("sns-envelope.json", "UnknownFormat"),
        ("unknown.txt", "UnknownFormat"),
    ];
    for (name, category) in table {
        let error = parse(&fixture(name), &Hint::default()).unwrap_err();
        assert_eq!(error.category(), category, "{name}: {error}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn the_delivery_time_wins_over_the_header_date_for_budgets() {
    let at: Timestamp = "2026-11-20T07:45:00Z".parse().unwrap();
    let hint = Hint {
        format: Format::Auto,
        delivered_at: Some(at),
    };
    let signal = parse(&fixture("budget-actual-usd.txt"), &hint).unwrap();
    assert_eq!(signal.observed_at, at);
    let padded = format!("\n\n  {}", fixture("budget-actual-usd.txt"));
    assert_eq!(parse(&padded, &Hint::default()).unwrap().id, signal.id);
    // redelivery yields the same id
    let again = parse(&fixture("budget-actual-usd.txt"), &Hint::default()).unwrap();
    assert_eq!(signal.id, again.id);
}

#[test]
fn explicit_format_hints_are_honoured() {
    let alert = fixture("budget-actual-usd.txt");
    let hint = |format| Hint {
        format,
        delivered_at: None,
    };
    assert!(parse(&alert, &hint(Format::BudgetAlert)).is_ok());
    assert_eq!(
        parse(&alert, &hint(Format::BudgetAction))
            .unwrap_err()
            .category(),
        "UnknownFormat"
    );
    assert_eq!(
        parse(&alert, &hint(Format::AnomalyJson))
            .unwrap_err()
            .category(),
        "UnknownFormat"
    );
    let anomaly = fixture("anomaly-immediate.json");
    assert!(parse(&anomaly, &hint(Format::AnomalyJson)).is_ok());
    assert_eq!(
        parse(&anomaly, &hint(Format::EventBridge))
            .unwrap_err()
            .category(),
        "UnsupportedEvent"
    );
    assert_eq!(
        parse(&anomaly, &hint(Format::BudgetAlert))
            .unwrap_err()
            .category(),
        "UnknownFormat"
    );
}

#[test]
fn invalid_fields_and_limits_are_rejected() {
    let mut value: Value = serde_json::from_str(&fixture("anomaly-immediate.json")).unwrap();
    value["rootCauses"][0]["linkedAccount"] = json!("12345");
    assert_eq!(
        parse_value(&value, &Hint::default())
            .unwrap_err()
            .category(),
        "InvalidSignal"
    );
    value["rootCauses"][0]["linkedAccount"] = json!("222222222222");
    value["impact"]["totalImpact"] = json!(-5);
    assert_eq!(
        parse_value(&value, &Hint::default())
            .unwrap_err()
            .category(),
        "InvalidSignal"
    );
    value["impact"]["totalImpact"] = json!("n/a");
    assert_eq!(
        parse_value(&value, &Hint::default())
            .unwrap_err()
            .category(),
        "Malformed"
    );
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_BYTES));
    assert_eq!(
        parse(&big, &Hint::default()).unwrap_err().category(),
        "TooLarge"
    );
    let no_account =
        fixture("budget-actual-usd.txt").replace("AWS Account 111111111111", "AWS Account");
    assert_eq!(
        parse(&no_account, &Hint::default()).unwrap_err().category(),
        "Malformed"
    );
    let no_amount = fixture("budget-actual-usd.txt").replace("ACTUAL Amount: $575.50", "");
    assert_eq!(
        parse(&no_amount, &Hint::default()).unwrap_err().category(),
        "Malformed"
    );
    let mixed = fixture("budget-actual-usd.txt")
        .replace("ACTUAL Amount: $575.50", "ACTUAL Amount: EUR 575.50");
    assert_eq!(
        parse(&mixed, &Hint::default()).unwrap_err().category(),
        "UnsupportedCurrency"
    );
    for text in ["", "   ", "{", "[1,2]", "null", "{\"anomalyId\":\"x\"}"] {
        assert_eq!(
            parse(text, &Hint::default()).unwrap_err().category(),
            "UnknownFormat",
            "{text:?}"
        );
    }
}

#[test]
fn money_and_amounts() {
    assert_eq!(parse_amount("1,234.56"), Some(1234.56));
    assert_eq!(parse_amount("1234.56"), Some(1234.56));
    assert_eq!(parse_amount("12,000"), Some(12000.0));
    for bad in [
        "1,23.4", ",123", "1.", ".5", "1,2345", "1e9", "-5", "NaN", "inf", "", "1,,234",
    ] {
        assert_eq!(parse_amount(bad), None, "{bad}");
    }
    assert_eq!(parse_money("$1,234.56").unwrap().currency, "USD");
    assert_eq!(parse_money("USD 10").unwrap().amount, 10.0);
    assert_eq!(parse_money("10.00 USD").unwrap().currency, "USD");
    assert_eq!(parse_money("JPY 5000").unwrap().currency, "JPY");
    assert_ne!(parse_money("¥5000").unwrap().currency, "USD");
    assert_eq!(parse_money("EUR 1,000.00").unwrap().currency, "EUR");
    assert_eq!(parse_money("1,000.00 Hrs"), None);
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "aws.ce",
            "Anomaly Detected",
            "111111111111",
            "2026-11-20T00:00:00Z",
            "2026-11-20",
            "https://x"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "anomalyId",
                    "impact",
                    "totalImpact",
                    "rootCauses",
                    "linkedAccount",
                    "accountId",
                    "service",
                    "region",
                    "usageType",
                    "anomalyEndDate",
                    "anomalyStartDate",
                    "detail-type",
                    "source",
                    "detail",
                    "account",
                    "time",
                    "contribution",
                    "anomalyDetailsLink"
                ]),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn budget_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("AWS Account 111111111111".to_string()),
        Just("Budget Type: Cost".to_string()),
        "Budget Name: .{0,30}",
        "Budgeted Amount: .{0,20}",
        prop::sample::select(vec![
            "Alert Type: ACTUAL",
            "Alert Type: FORECASTED",
            "Alert Type: x"
        ])
        .prop_map(String::from),
        "Alert Threshold: .{0,10}",
        "(ACTUAL|FORECASTED) Amount: [$¥€]?[0-9,.]{0,12}",
        "Action (Type|Status|Id): .{0,20}",
        ".{0,40}",
        Just("for the current month".to_string()),
        Just("[1] https://console.aws.amazon.com/billing/home#/budgets".to_string()),
    ];
    (
        prop::sample::select(vec![
            "AWS Budget Notification November 20, 2026",
            "AWS Budget Action Notification February 30, 2026",
            "AWS Budget Notification",
        ]),
        prop::collection::vec(line, 0..14),
    )
        .prop_map(|(header, lines)| format!("{header}\n{}", lines.join("\n")))
}

fn anomaly_signal() -> impl Strategy<Value = CostSignal> {
    (
        "[a-z0-9-]{1,40}",
        "[0-9]{12}",
        0u32..10_000_000,
        proptest::option::of("[A-Za-z ()-]{1,40}"),
        proptest::option::of(prop::sample::select(vec![
            "us-east-1",
            "ap-northeast-1",
            "eu-west-1",
            "cn-north-1",
        ])),
        0i64..4_000_000_000,
        proptest::option::of("https://console\\.aws\\.amazon\\.com/[a-z/#-]{0,30}"),
    )
        .prop_map(
            |(id, account, cents, service, region, seconds, url)| CostSignal {
                source: SignalSource::CostAnomaly,
                id,
                account_id: account,
                impact_usd: f64::from(cents) / 100.0,
                service: service
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
                region: region.map(String::from),
                budget_name: None,
                observed_at: Timestamp::from_second(seconds).unwrap(),
                details_url: url,
                summary: None,
                principal: None,
                raw: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(text in ".{0,400}") {
        let _ = parse(&text, &Hint::default());
        for format in [Format::BudgetAlert, Format::BudgetAction, Format::AnomalyJson, Format::EventBridge] {
            let _ = parse(&text, &Hint { format, delivered_at: None });
        }
    }

    #[test]
    fn parse_never_panics_on_budget_shaped_text(text in budget_text()) {
        if let Ok(signal) = parse(&text, &Hint::default()) {
            prop_assert!(signal.validate().is_ok());
            prop_assert!(signal.impact_usd >= 0.0);
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json(value in arbitrary_json()) {
        if let Ok(signal) = parse_value(&value, &Hint::default()) {
            prop_assert!(signal.validate().is_ok());
        }
        let _ = parse(&value.to_string(), &Hint::default());
        let wrapped = json!({"source": "aws.ce", "detail-type": "Anomaly Detected", "detail": value});
        let _ = parse_value(&wrapped, &Hint::default());
    }

    #[test]
    fn rendered_anomalies_round_trip(signal in anomaly_signal()) {
        let rendered = render(&signal);
        let parsed = parse(&rendered.to_string(), &Hint::default()).unwrap();
        prop_assert_eq!(&parsed.id, &signal.id);
        prop_assert_eq!(&parsed.account_id, &signal.account_id);
        prop_assert_eq!(parsed.impact_usd, signal.impact_usd);
        prop_assert_eq!(&parsed.service, &signal.service);
        prop_assert_eq!(&parsed.region, &signal.region);
        prop_assert_eq!(parsed.observed_at, signal.observed_at);
        prop_assert_eq!(&parsed.details_url, &signal.details_url);
        prop_assert_eq!(parsed.raw, Some(rendered));
    }
}

fn render_budget_alert(name: &str, budgeted: u32, amount: u32, forecast: bool) -> String {
    let kind = if forecast { "FORECASTED" } else { "ACTUAL" };
    let money = |cents: u32| {
        let whole = cents / 100;
        let mut digits = whole.to_string();
        let mut grouped = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        format!("${digits}{grouped}.{:02}", cents % 100)
    };
    format!(
        "AWS Budget Notification November 20, 2026\nAWS Account 111111111111\n\nDear AWS Customer,\n\n\
         You requested that we alert you when the {kind} Cost associated with your {name} budget is greater than {b} for the current month.\n\n\
         Budget Name: {name}\nBudget Type: Cost\nBudgeted Amount: {b}\nAlert Type: {kind}\nAlert Threshold: > {b}\n{kind} Amount: {a}\n",
        b = money(budgeted),
        a = money(amount),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rendered_budget_alerts_parse_to_the_amount_over(
        name in "[a-z0-9][a-z0-9_.-]{0,40}",
        budgeted in 0u32..2_000_000_000,
        amount in 0u32..2_000_000_000,
        forecast in any::<bool>(),
    ) {
        let text = render_budget_alert(&name, budgeted, amount, forecast);
        let signal = parse(&text, &Hint::default()).unwrap();
        let over = f64::from(amount.saturating_sub(budgeted)) / 100.0;
        prop_assert!((signal.impact_usd - over).abs() < 0.005, "{} vs {}", signal.impact_usd, over);
        prop_assert_eq!(signal.budget_name.as_deref(), Some(name.as_str()));
        let kind = if forecast { "FORECASTED" } else { "ACTUAL" };
        prop_assert!(signal.id.starts_with(&format!("{name}/2026-11/{kind}/>$")), "{}", signal.id);
    }
}
