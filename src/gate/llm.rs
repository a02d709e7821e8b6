//! The optional LLM explainer: asks the Anthropic Messages API or the OpenAI Chat Completions
//! API to rephrase the rule-based explanation, with the key from the environment and a timeout.
//! Any error, timeout or empty answer falls back to the rule-based text. Off by default; it must
//! never change the verdict.

use std::time::Duration;

use serde_json::json;

use super::config::ExplainerSettings;
use super::decide::Decision;
use super::render;

/// Explanation source label: the rule-based text.
pub const SOURCE_RULES: &str = "rules";
/// Explanation source label: an LLM answer.
pub const SOURCE_LLM: &str = "llm";

/// Why the LLM was not used (the rule-based text is used instead).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// No key in the environment.
    #[error("{0} is not set")]
    MissingKey(String),
    /// No answer in time.
    #[error("the explainer did not answer within {0:.1} s")]
    Timeout(f64),
    /// Transport failure.
    #[error("explainer request failed: {0}")]
    Transport(String),
    /// Non-2xx.
    #[error("explainer answered HTTP {0}")]
    Status(u16),
    /// Answer without text.
    #[error("explainer answer has no text: {0}")]
    Malformed(String),
}

impl LlmError {
    /// A short label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            LlmError::MissingKey(_) => "missing_key",
            LlmError::Timeout(_) => "timeout",
            LlmError::Transport(_) => "transport",
            LlmError::Status(_) => "status",
            LlmError::Malformed(_) => "malformed",
        }
    }
}

/// The explanation used and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The text.
    pub text: String,
    /// `rules` or `llm`.
    pub source: &'static str,
    /// Why the LLM was not used, when it was asked.
    pub fallback: Option<String>,
}

fn prompt(decision: &Decision, rule_text: &str) -> String {
    format!(
        "You explain a deployment gate decision to engineers. Do not change the verdict. \
         Rephrase the explanation below in at most six short sentences: what was decided, why, \
         what to do, when to retry.\n\nDecision JSON:\n{}\n\nExplanation:\n{rule_text}",
        render::decision_data(decision)
    )
}

async fn ask(settings: &ExplainerSettings, key: &str, text: String) -> Result<String, LlmError> {
    let timeout = settings.timeout_seconds;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(timeout))
        .build()
        .map_err(|e| LlmError::Transport(e.to_string()))?;
    let map = |e: reqwest::Error| {
        if e.is_timeout() {
            LlmError::Timeout(timeout)
        } else {
            LlmError::Transport(e.to_string())
        }
    };
    let (request, pick): (
        reqwest::RequestBuilder,
        fn(&serde_json::Value) -> Option<String>,
    ) = if settings.backend == "openai" {
        let base = settings
            .url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com".to_string());
        (
            http.post(format!(
                "{}/v1/chat/completions",
                base.trim_end_matches('/')
            ))
            .bearer_auth(key)
            .json(&json!({
                "model": settings.model.clone().unwrap_or_else(|| "gpt-4o-mini".to_string()),
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 400,
            })),
            |v| {
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .map(str::to_string)
            },
        )
    } else {
        let base = settings
            .url
            .clone()
            .unwrap_or_else(|| "https://api.anthropic.com".to_string());
        (
                http.post(format!("{}/v1/messages", base.trim_end_matches('/')))
                    .header("x-api-key", key)
                    .header("anthropic-version", "2023-06-01")
                    .json(&json!({
                        "model": settings.model.clone().unwrap_or_else(|| "claude-3-5-haiku-latest".to_string()),
                        "max_tokens": 400,
                        "messages": [{"role": "user", "content": text}],
                    })),
                |v| v["content"][0]["text"].as_str().map(str::to_string),
            )
    };
    let response = request.send().await.map_err(map)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(LlmError::Status(status));
    }
    let body: serde_json::Value = response.json().await.map_err(map)?;
    match pick(&body) {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(LlmError::Malformed(
            body.to_string().chars().take(200).collect(),
        )),
    }
}

/// The explanation: the LLM's when configured and it answers, else the rule-based text.
pub async fn explain(
    settings: &ExplainerSettings,
    decision: &Decision,
    rule_text: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Explanation {
    if settings.backend == "rules" {
        return Explanation {
            text: rule_text.to_string(),
            source: SOURCE_RULES,
            fallback: None,
        };
    }
    let var = settings.api_key_env.clone().unwrap_or_else(|| {
        if settings.backend == "openai" {
            "OPENAI_API_KEY"
        } else {
            "ANTHROPIC_API_KEY"
        }
        .to_string()
    });
    let result = match env(&var) {
        Some(key) if !key.is_empty() => {
            // The outer timeout also bounds connection set-up and body reads.
            let limit = Duration::from_secs_f64(settings.timeout_seconds + 1.0);
            match tokio::time::timeout(limit, ask(settings, &key, prompt(decision, rule_text)))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(LlmError::Timeout(settings.timeout_seconds)),
            }
        }
        _ => Err(LlmError::MissingKey(var)),
    };
    match result {
        Ok(text) => Explanation {
            text,
            source: SOURCE_LLM,
            fallback: None,
        },
        Err(e) => Explanation {
            text: rule_text.to_string(),
            source: SOURCE_RULES,
            fallback: Some(e.to_string()),
        },
    }
}
