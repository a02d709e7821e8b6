//! The optional model call (Bedrock Runtime `Converse`) behind a narrow trait and its SDK
//! implementation. A failure is returned to the caller, which shows it and goes on without the
//! model. It must not interpret the answer (that is `reasoning`).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};

/// Why the model could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The call failed.
    #[error("Bedrock Converse with {model} failed: {message}")]
    Call {
        /// The model id.
        model: String,
        /// Why.
        message: String,
    },
}

impl ModelError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        "ModelUnavailable"
    }
}

/// A model that answers one prompt.
#[async_trait]
pub trait Model: Send + Sync {
    /// The text of the model's answer.
    async fn converse(&self, model: &str, prompt: &str) -> Result<String, ModelError>;
}

/// The SDK implementation.
pub struct SdkModel {
    client: aws_sdk_bedrockruntime::Client,
    timeout: Duration,
}

impl SdkModel {
    /// Over a client from the shared factory (`SdkClientFactory::bedrock_runtime`).
    pub fn new(client: aws_sdk_bedrockruntime::Client, timeout: Duration) -> SdkModel {
        SdkModel { client, timeout }
    }
}

#[async_trait]
impl Model for SdkModel {
    async fn converse(&self, model: &str, prompt: &str) -> Result<String, ModelError> {
        let failed = |message: String| ModelError::Call {
            model: model.to_string(),
            message,
        };
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(prompt.to_string()))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let call = self
            .client
            .converse()
            .model_id(model)
            .messages(message)
            .send();
        let out = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| failed(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| {
                failed(match e.code() {
                    Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
                    None => DisplayErrorContext(&e).to_string(),
                })
            })?;
        let text: Vec<String> = out
            .output()
            .and_then(|o| o.as_message().ok())
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|c| c.as_text().ok().cloned())
                    .collect()
            })
            .unwrap_or_default();
        if text.is_empty() {
            return Err(failed("the answer has no text".into()));
        }
        Ok(text.join("\n"))
    }
}
