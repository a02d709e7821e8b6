//! Approving from Slack (decisions 230-233): the buttons a Slack message carries come back as
//! signed `block_actions` interactions on `POST /slack/interactions`. `request` (signature,
//! timestamp window, replay cache) and `intent` (payload → who wants to do what to which
//! Quarantine, identity mapping, staleness) are the pure core; `server` holds the adapters (the
//! route, the SubjectAccessReview, the annotation write, the `response_url` answer). Whether the
//! mapped person may act is decided by the approval webhook's own `review::decide`; nothing here
//! decides it again.

pub mod intent;
pub mod request;
pub mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `slack:` in the configuration: the interactions endpoint and who the Slack users are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SlackSettings {
    /// Serve `POST /slack/interactions` on the signals listener. Needs the approval webhook
    /// (its stamp key and its check of every stamp written).
    pub interactions: bool,
    /// File holding the Slack app's signing secret (a mounted Secret). This or
    /// `signingSecretSsmParameter` is required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_file: Option<PathBuf>,
    /// SSM SecureString parameter holding the signing secret (read at start; `aws.backend: sdk`,
    /// region `notifications.ssmRegion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ssm_parameter: Option<String>,
    /// Slack user id → Kubernetes user name and groups. Unlisted users are refused.
    pub users: Vec<intent::UserMapping>,
    /// What the Extend button adds.
    pub extend_by: String,
    /// The largest interaction body accepted, in bytes.
    pub max_body_bytes: usize,
    /// At most this many signatures are remembered for replay refusal (five minutes' worth).
    pub replay_capacity: usize,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            interactions: false,
            signing_secret_file: None,
            signing_secret_ssm_parameter: None,
            users: Vec::new(),
            extend_by: "2h".into(),
            max_body_bytes: 64 * 1024,
            replay_capacity: 10_000,
        }
    }
}
