//! Maps an AWS account id to the IAM client the engine must use for it. The trait and the
//! in-memory implementation live here; the SDK implementation (AssumeRole per account, ambient
//! credentials otherwise) is in `sdk`, with the builders of the other SDK clients; the DynamoDB
//! client of the audit table is built here ([`dynamodb_client`]). It must not decide anything
//! about enforcement.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::directory::{Directory, Organization};
use super::iam::{AwsError, ErrorCategory, Iam};

/// Why no client could be provided for an account.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FactoryError {
    /// No per-account configuration and the ambient identity is in another account.
    #[error(
        "unknown account {account_id}: no assume-role configured and the controller's own credentials belong to account {ambient_account}"
    )]
    UnknownAccount {
        /// The requested account.
        account_id: String,
        /// The ambient identity's account (empty when unknown).
        ambient_account: String,
    },
    /// Establishing credentials (AssumeRole, GetCallerIdentity) failed.
    #[error("failed to obtain credentials for account {account_id}")]
    Credentials {
        /// The requested account.
        account_id: String,
        /// The underlying call error.
        #[source]
        source: AwsError,
    },
    /// The configuration for the account is unusable.
    #[error("invalid AWS configuration for account {account_id}: {message}")]
    Config {
        /// The requested account.
        account_id: String,
        /// What is wrong.
        message: String,
    },
}

impl FactoryError {
    /// The category used for metric labels and Event reasons.
    pub fn category(&self) -> ErrorCategory {
        match self {
            FactoryError::UnknownAccount { .. } | FactoryError::Config { .. } => {
                ErrorCategory::Invalid
            }
            FactoryError::Credentials { source, .. } => source.category(),
        }
    }
}

/// Provides the IAM client for an account.
#[async_trait]
pub trait ClientFactory: Send + Sync {
    /// The IAM client to use for `account_id`.
    async fn iam_for(&self, account_id: &str) -> Result<Arc<dyn Iam>, FactoryError>;

    /// The IAM listing client of `account_id` (scope selectors), with the same credentials and
    /// rate limit as its [`ClientFactory::iam_for`] client. A factory that cannot list says so.
    async fn directory_for(&self, account_id: &str) -> Result<Arc<dyn Directory>, FactoryError> {
        Err(FactoryError::Config {
            account_id: account_id.to_string(),
            message: "this AWS backend cannot list roles and users (scope selectors)".into(),
        })
    }

    /// The Organizations client (the organization role) for selectors with an OU.
    async fn organization(&self) -> Result<Arc<dyn Organization>, FactoryError> {
        Err(FactoryError::Config {
            account_id: String::new(),
            message: "this AWS backend cannot read AWS Organizations (scope selectors)".into(),
        })
    }
}

/// A fixed map of account id → client (in-memory IAM in tests, benchmarks and the demo).
#[derive(Default, Clone)]
pub struct StaticClients {
    clients: BTreeMap<String, Arc<dyn Iam>>,
    directories: BTreeMap<String, Arc<dyn Directory>>,
    organization: Option<Arc<dyn Organization>>,
}

impl StaticClients {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a client for an account.
    pub fn with(mut self, account_id: impl Into<String>, iam: Arc<dyn Iam>) -> Self {
        self.clients.insert(account_id.into(), iam);
        self
    }
    /// Adds a listing client for an account.
    pub fn with_directory(
        mut self,
        account_id: impl Into<String>,
        directory: Arc<dyn Directory>,
    ) -> Self {
        self.directories.insert(account_id.into(), directory);
        self
    }
    /// Sets the Organizations client.
    pub fn with_organization(mut self, organization: Arc<dyn Organization>) -> Self {
        self.organization = Some(organization);
        self
    }
}

#[async_trait]
impl ClientFactory for StaticClients {
    async fn iam_for(&self, account_id: &str) -> Result<Arc<dyn Iam>, FactoryError> {
        self.clients
            .get(account_id)
            .cloned()
            .ok_or_else(|| FactoryError::UnknownAccount {
                account_id: account_id.to_string(),
                ambient_account: String::new(),
            })
    }

    async fn directory_for(&self, account_id: &str) -> Result<Arc<dyn Directory>, FactoryError> {
        self.directories
            .get(account_id)
            .cloned()
            .ok_or_else(|| FactoryError::UnknownAccount {
                account_id: account_id.to_string(),
                ambient_account: String::new(),
            })
    }

    async fn organization(&self) -> Result<Arc<dyn Organization>, FactoryError> {
        self.organization
            .clone()
            .ok_or_else(|| FactoryError::Config {
                account_id: String::new(),
                message: "no organization configured".into(),
            })
    }
}

/// The DynamoDB client of the audit table, from the base configuration (credentials, retries);
/// `region` and `endpoint_url` override the base's for this client only.
pub fn dynamodb_client(
    base: &aws_config::SdkConfig,
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(base);
    if let Some(region) = region {
        builder = builder.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}
