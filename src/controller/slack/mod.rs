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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_response_url_prefixes_are_allowed() {
        let slack = vec![DEFAULT_RESPONSE_URL_PREFIX.to_string()];
        assert!(response_url_allowed(
            "https://hooks.slack.com/actions/T1/1/x",
            &slack
        ));
        for refused in [
            "https://hooks.slack.com.evil.example/actions/x",
            "https://evil.example/https://hooks.slack.com/",
            "http://hooks.slack.com/actions/x",
            "https://user:pw@hooks.slack.com/actions/x",
            "https://HOOKS.slack.com:8443/actions/x",
            "not a url",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            assert!(!response_url_allowed(refused, &slack), "{refused}");
        }
        // Normalised before comparing: the host's case does not matter.
        assert!(response_url_allowed(
            "https://HOOKS.slack.com/actions/x",
            &slack
        ));
        // A prefix without its final slash never matches (it would allow other hosts).
        assert!(!response_url_allowed(
            "https://hooks.slack.com/actions/x",
            &["https://hooks.slack.com".to_string()]
        ));
        let local = vec!["http://127.0.0.1:4000/".to_string()];
        assert!(response_url_allowed("http://127.0.0.1:4000/answer", &local));
        assert!(!response_url_allowed(
            "http://127.0.0.1:4001/answer",
            &local
        ));
        assert_eq!(
            origin_of("https://hooks.slack.com/actions/T1/1/secret"),
            "https://hooks.slack.com"
        );
    }
}

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where Slack's `response_url`s point.
pub const DEFAULT_RESPONSE_URL_PREFIX: &str = "https://hooks.slack.com/";

/// Whether `url` starts with one of `prefixes`, compared on the parsed (normalised) URL, and
/// carries no user name or password.
pub fn response_url_allowed(url: &str, prefixes: &[String]) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    parsed.username().is_empty()
        && parsed.password().is_none()
        && prefixes
            .iter()
            .any(|prefix| prefix.ends_with('/') && parsed.as_str().starts_with(prefix.as_str()))
}

/// The origin of a URL for logs (its path holds a token).
pub fn origin_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "unparseable".into())
}

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
    /// How long a replaced signing secret is still accepted after the new one is read
    /// (decision 227).
    pub signing_secret_grace: String,
    /// How often the SSM parameter is read again.
    pub signing_secret_refresh: String,
    /// File holding a bot token (`xoxb-…`, a mounted Secret): needed to map users by e-mail
    /// (`users.info`, scopes `users:read` and `users:read.email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token_file: Option<PathBuf>,
    /// The Slack Web API base URL (ends with `/`).
    pub api_base_url: String,
    /// Ask for a note in a modal before acting (`views.open`, needs `botTokenFile`; decision
    /// 236). Off: buttons act at once with `<verb> from Slack`.
    pub note_modal: bool,
    /// How long a looked-up e-mail address is remembered.
    pub email_cache_ttl: String,
    /// Slack user id → Kubernetes user name and groups. Unlisted users are refused.
    pub users: Vec<intent::UserMapping>,
    /// What the Extend button adds.
    pub extend_by: String,
    /// The largest interaction body accepted, in bytes.
    pub max_body_bytes: usize,
    /// At most this many signatures are remembered for replay refusal (five minutes' worth).
    pub replay_capacity: usize,
    /// The only addresses a `response_url` may start with (each ends with `/` after the host).
    /// A click naming another is refused and logged (decision 226).
    pub response_url_prefixes: Vec<String>,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            interactions: false,
            signing_secret_file: None,
            signing_secret_ssm_parameter: None,
            signing_secret_grace: "5m".into(),
            bot_token_file: None,
            api_base_url: "https://slack.com/api/".into(),
            note_modal: false,
            email_cache_ttl: "10m".into(),
            signing_secret_refresh: "5m".into(),
            users: Vec::new(),
            extend_by: "2h".into(),
            max_body_bytes: 64 * 1024,
            replay_capacity: 10_000,
            response_url_prefixes: vec![DEFAULT_RESPONSE_URL_PREFIX.to_string()],
        }
    }
}
