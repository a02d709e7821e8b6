//! The optional LLM explainer against a loopback stub: Anthropic and OpenAI answers are used;
//! errors, timeouts, empty answers and a missing key fall back to the rule-based text.

use std::time::Duration;

use autoguardrails::gate::config::ExplainerSettings;
use autoguardrails::gate::decide::Decision;
use autoguardrails::gate::llm::{self, SOURCE_LLM, SOURCE_RULES};
use autoguardrails::gate::{collect::Gate, files, rules};
use jiff::Timestamp;

use super::support::{root, stub_server};

async fn decision() -> Decision {
    let config = files::load_config(&root().join("examples/gate/gate.yaml")).unwrap();
    let gate = Gate {
        config,
        rules: rules::defaults().unwrap(),
        prometheus: None,
        cost_explorer: None,
    };
    gate.evaluate(
        None,
        "2026-02-21T00:00:00Z".parse::<Timestamp>().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap()
}

fn settings(backend: &str, port: u16, timeout: f64) -> ExplainerSettings {
    ExplainerSettings {
        backend: backend.to_string(),
        model: Some("test-model".to_string()),
        url: Some(format!("http://127.0.0.1:{port}")),
        api_key_env: Some("GATE_TEST_KEY".to_string()),
        timeout_seconds: timeout,
    }
}

fn key(name: &str) -> Option<String> {
    (name == "GATE_TEST_KEY").then(|| "k-123".to_string())
}

#[tokio::test]
async fn anthropic_and_openai_answers_are_used() {
    let d = decision().await;
    let (port, seen) = stub_server(
        200,
        r#"{"content":[{"type":"text","text":"Deploys wait 15 minutes: the error budget is low."}]}"#,
        Duration::ZERO,
    );
    let e = llm::explain(&settings("anthropic", port, 5.0), &d, "rule text", &key).await;
    assert_eq!(
        (e.source, e.text.as_str()),
        (
            SOURCE_LLM,
            "Deploys wait 15 minutes: the error budget is low."
        )
    );
    let request = seen.lock().unwrap()[0].clone();
    assert!(
        request.head.starts_with("POST /v1/messages"),
        "{}",
        request.head
    );
    assert!(
        request.head.contains("x-api-key: k-123"),
        "{}",
        request.head
    );
    assert!(
        request.body.contains("\"model\":\"test-model\"") && request.body.contains("rule text"),
        "{}",
        request.body
    );
    let (port, seen) = stub_server(
        200,
        r#"{"choices":[{"message":{"role":"assistant","content":"OpenAI says wait."}}]}"#,
        Duration::ZERO,
    );
    let e = llm::explain(&settings("openai", port, 5.0), &d, "rule text", &key).await;
    assert_eq!(
        (e.source, e.text.as_str()),
        (SOURCE_LLM, "OpenAI says wait.")
    );
    assert!(
        seen.lock().unwrap()[0]
            .head
            .to_ascii_lowercase()
            .contains("authorization: bearer k-123")
    );
}

#[tokio::test]
async fn every_failure_falls_back_to_the_rule_text() {
    let d = decision().await;
    let (error_port, _) = stub_server(500, r#"{"error":"overloaded"}"#, Duration::ZERO);
    let (empty_port, _) = stub_server(200, r#"{"content":[]}"#, Duration::ZERO);
    let (slow_port, _) = stub_server(
        200,
        r#"{"content":[{"text":"late"}]}"#,
        Duration::from_secs(5),
    );
    let closed = super::support::free_port();
    for (name, s, env) in [
        (
            "status",
            settings("anthropic", error_port, 5.0),
            key as fn(&str) -> Option<String>,
        ),
        ("empty", settings("anthropic", empty_port, 5.0), key),
        ("timeout", settings("anthropic", slow_port, 1.0), key),
        ("closed", settings("openai", closed, 2.0), key),
        (
            "no key",
            settings("anthropic", error_port, 5.0),
            |_: &str| None,
        ),
    ] {
        let e = llm::explain(&s, &d, "rule text", &env).await;
        assert_eq!(
            (e.source, e.text.as_str()),
            (SOURCE_RULES, "rule text"),
            "{name}"
        );
        assert!(e.fallback.is_some(), "{name}");
    }
    // Off by default: nothing is asked.
    let e = llm::explain(&ExplainerSettings::default(), &d, "rule text", &key).await;
    assert_eq!((e.source, e.fallback), (SOURCE_RULES, None));
}
